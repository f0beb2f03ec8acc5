// trained.ts — `npm run bench:trained`: the bundled AR parent against its DiffusionVL child on
// the held-out set (lib/cli/compare.ts), all settings in one run on this machine. Prints the
// table for bench/RESULTS.md and the README, the quality bar, and writes bench/out/trained.json
// (per-item answers included). Flags: --n N (default: all held-out prompts), --threads N,
// --repeat R (timed passes per setting, round-robin, median tokens/s; default 3).
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { compareParentChild, compareTable } from '../lib/cli/compare.js';
import { nativeInfo, packageRoot } from '../lib/native/index.js';

const { values: v } = parseArgs({ options: { n: { type: 'string' }, threads: { type: 'string' }, repeat: { type: 'string' } } });
const log = (s: string) => process.stdout.write(s + '\n');
const info = nativeInfo();
const machine = { cpu: cpus()[0]?.model ?? 'unknown', logicalCpus: cpus().length, physicalCores: info.physicalCores, isa: info.isa, date: new Date().toISOString() };
log(`machine: ${machine.cpu}, ${machine.physicalCores} cores, ISA ${machine.isa}`);
const res = await compareParentChild({ n: v.n ? Number(v.n) : undefined, threads: v.threads ? Number(v.threads) : undefined, repeat: v.repeat ? Number(v.repeat) : 3, log });
log('');
log(compareTable(res));
log('');
for (const b of res.bar) log(`${b.pass ? 'PASS' : 'FAIL'}  ${b.name}: ${b.detail}`);
const outDir = join(packageRoot(), 'bench', 'out');
mkdirSync(outDir, { recursive: true });
writeFileSync(join(outDir, 'trained.json'), JSON.stringify({ machine, ...res }, null, 1) + '\n');
log(`\nwrote ${join(outDir, 'trained.json')}`);
