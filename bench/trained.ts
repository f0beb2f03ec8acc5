// trained.ts — `npm run bench:trained`: the bundled AR parent against its DiffusionVL child on
// both bundled held-out sets (lib/cli/compare.ts), all settings in one run on this machine:
// models/shapes-heldout (in-distribution: the training renderer, unseen prompts) and
// models/shapes-heldout-unseen (pictures from a second renderer training never used). Prints the
// tables for bench/RESULTS.md and the README, issue 16's quality bar for each set, and writes
// bench/out/trained.json (per-item answers included). Flags: --n N (default: every prompt),
// --threads N, --repeat R (timed passes per setting, round-robin, median tokens/s; default 3),
// --chunk C (items per interleaved slice: every setting runs a slice before the next; default 80).
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { compareParentChild, compareTable, type CompareResult } from '../lib/cli/compare.js';
import { bundledHeldoutDir, HELDOUT_NAME, UNSEEN_HELDOUT_NAME } from '../lib/models.js';
import { nativeInfo, packageRoot } from '../lib/native/index.js';

const { values: v } = parseArgs({ options: { n: { type: 'string' }, threads: { type: 'string' }, repeat: { type: 'string' }, chunk: { type: 'string' } } });
const log = (s: string) => process.stdout.write(s + '\n');
const info = nativeInfo();
const machine = { cpu: cpus()[0]?.model ?? 'unknown', logicalCpus: cpus().length, physicalCores: info.physicalCores, isa: info.isa, date: new Date().toISOString() };
log(`machine: ${machine.cpu}, ${machine.physicalCores} cores, ISA ${machine.isa}`);
const sets: Record<string, CompareResult> = {};
for (const name of [HELDOUT_NAME, UNSEEN_HELDOUT_NAME] as const) {
  log(`\n== ${name}`);
  const res = await compareParentChild({
    heldoutDir: bundledHeldoutDir(name), n: v.n ? Number(v.n) : undefined,
    threads: v.threads ? Number(v.threads) : undefined, repeat: v.repeat ? Number(v.repeat) : 3, chunk: v.chunk ? Number(v.chunk) : undefined, log,
  });
  sets[name] = res;
  log('');
  log(compareTable(res));
  log('');
  for (const b of res.bar) log(`${b.pass ? 'PASS' : 'FAIL'}  [${res.barSet}] ${b.name}: ${b.detail}`);
}
const outDir = join(packageRoot(), 'bench', 'out');
mkdirSync(outDir, { recursive: true });
writeFileSync(join(outDir, 'trained.json'), JSON.stringify({ machine, sets }, null, 1) + '\n');
log(`\nwrote ${join(outDir, 'trained.json')}`);
