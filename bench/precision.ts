// precision.ts — `npm run bench:precision`: what the CPU precisions cost in answers, on the
// bundled trained pair (models/shapes-ar, models/shapes-diffusionvl) and its 300 held-out
// prompts. For each variant — precision 'exact' (the reference kernels), 'fast' (bf16-rounded
// activations), q8 'fast' (int8 weights and activations) and q8 'exact' (int8 weights only) —
// the parent greedy AR, the child static 8 and the child dynamic 0.9: exact match (and its change
// from 'exact'), and the greedy-id agreement with 'exact' (the share of answers whose token ids
// are identical, and the share of answer tokens equal position by position). Prints the table for
// bench/RESULTS.md and writes bench/out/precision.json. Flags: --n N, --threads N.
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadModel, type LoadModelOptions, type Model } from '../lib/model/model.js';
import { evalHeldout, readHeldout, type EvalRequest, type EvalResult } from '../lib/eval.js';
import { bundledHeldoutDir, bundledModelDir } from '../lib/models.js';
import { nativeInfo, packageRoot } from '../lib/native/index.js';

const { values: v } = parseArgs({ options: { n: { type: 'string' }, threads: { type: 'string' } } });
const log = (s: string) => process.stdout.write(s + '\n');
const threads = v.threads ? Number(v.threads) : undefined;

const VARIANTS: { name: string; opts: LoadModelOptions }[] = [
  { name: 'exact', opts: { precision: 'exact' } },
  { name: 'fast', opts: { precision: 'fast' } },
  { name: 'q8 fast', opts: { precision: 'fast', dtype: 'q8' } },
  { name: 'q8 exact', opts: { precision: 'exact', dtype: 'q8' } },
];
const SETTINGS: { name: string; model: 'parent' | 'child'; request: EvalRequest }[] = [
  { name: 'parent AR', model: 'parent', request: { mode: 'ar' } },
  { name: 'child static 8', model: 'child', request: { mode: 'diffusion', steps: 8, remasking: 'static' } },
  { name: 'child dynamic 0.9', model: 'child', request: { mode: 'diffusion', steps: 8, remasking: 'dynamic', threshold: 0.9 } },
];

const info = nativeInfo();
const machine = { cpu: cpus()[0]?.model ?? 'unknown', physicalCores: info.physicalCores, isa: info.isa, date: new Date().toISOString(), loadavgStart: loadavg() };
log(`machine: ${machine.cpu}, ${machine.physicalCores} cores, ISA ${machine.isa}, load average ${machine.loadavgStart.map((x) => x.toFixed(2)).join(' ')}`);
const set = await readHeldout(bundledHeldoutDir());
const n = Math.min(v.n ? Number(v.n) : set.items.length, set.items.length);

const results: Record<string, Record<string, EvalResult>> = {};
const kernels: Record<string, unknown> = {};
for (const vr of VARIANTS) {
  const models: Record<'parent' | 'child', Model> = {
    parent: await loadModel(bundledModelDir('shapes-ar'), { threads, ...vr.opts }),
    child: await loadModel(bundledModelDir('shapes-diffusionvl'), { threads, ...vr.opts }),
  };
  kernels[vr.name] = models.child.backend.cpu.kernels;
  results[vr.name] = {};
  try {
    for (const s of SETTINGS) {
      results[vr.name][s.name] = await evalHeldout(models[s.model], set.items, { ...s.request, n });
      const r = results[vr.name][s.name];
      log(`${vr.name.padEnd(9)} ${s.name.padEnd(18)} ${(r.exactMatch * 100).toFixed(1)} % (${r.correct}/${r.n})`);
    }
  } finally {
    models.parent.dispose();
    models.child.dispose();
  }
}

/** Share of answers with identical ids, and of answer tokens equal position by position. */
function agreement(a: EvalResult, b: EvalResult): { answers: number; tokens: number } {
  let same = 0, eq = 0, total = 0;
  a.items.forEach((x, i) => {
    const y = b.items[i].ids;
    if (x.ids.length === y.length && x.ids.every((t, j) => t === y[j])) same++;
    for (let j = 0; j < x.ids.length; j++) if (y[j] === x.ids[j]) eq++;
    total += x.ids.length;
  });
  return { answers: same / a.items.length, tokens: eq / total };
}

const rows: Record<string, unknown>[] = [];
log(`\n${n} held-out prompts, temperature 0, ${threads ?? info.physicalCores} threads, ISA ${info.isa}`);
log('| setting | variant | exact match | vs exact | identical answers (ids) | equal answer tokens |');
log('|---|---|---|---|---|---|');
for (const s of SETTINGS) {
  const base = results.exact[s.name];
  for (const vr of VARIANTS) {
    const r = results[vr.name][s.name];
    const ag = agreement(base, r);
    const d = (r.exactMatch - base.exactMatch) * 100;
    rows.push({ setting: s.name, variant: vr.name, exactMatch: r.exactMatch, deltaPoints: d, identicalAnswers: ag.answers, equalTokens: ag.tokens });
    log(`| ${s.name} | ${vr.name} | ${(r.exactMatch * 100).toFixed(1)} % | ${d >= 0 ? '+' : ''}${d.toFixed(1)} | ${(ag.answers * 100).toFixed(1)} % | ${(ag.tokens * 100).toFixed(1)} % |`);
  }
}
const outDir = join(packageRoot(), 'bench', 'out');
mkdirSync(outDir, { recursive: true });
const strip = (r: EvalResult) => ({ ...r, items: r.items.map(({ id, ok, ids }) => ({ id, ok, ids })) });
writeFileSync(join(outDir, 'precision.json'), JSON.stringify({ machine: { ...machine, loadavgEnd: loadavg() }, n, kernels, rows,
  results: Object.fromEntries(Object.entries(results).map(([k, x]) => [k, Object.fromEntries(Object.entries(x).map(([s, r]) => [s, strip(r)]))])) }, null, 1) + '\n');
log(`\nwrote ${join(outDir, 'precision.json')}`);
