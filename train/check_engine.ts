// check_engine.ts — runs the engine (lib/, the native addon) on fixtures.json and compares, per
// case and setting, the prompt ids and the raw G generated ids with what decode.py wrote.
// A mismatch in a run whose fixture margins are tiny (min_argmax_gap / select / threshold gap)
// can be an f32-vs-f64 near-tie; the report prints them so the reader can tell.
//
//   DIFFUSIONVL_ADDON=$PWD/build-<you>/Release/diffusionvl.node \
//     npx tsx train/check_engine.ts <model dir> <fixtures dir> [<AR parent dir>]   (exit 1 on any mismatch)
//
// With the parent dir, each case's greedy AR ids of the parent (fixtures.py --parent) are checked too.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadModel } from '../lib/index.js';
import type { ContentPart } from '../lib/text/prompt.js';

interface Run { ids: number[]; min_argmax_gap: number | null; min_select_gap: number | null; min_threshold_gap: number | null }
interface Case {
  id: string; question: string; image: string | null; prompt_ids: number[]; runs: Record<string, Run>;
  prompt_logits: { rows: number[]; block_size: number; logits: number[][] };
  parent_ar?: { ids: number[]; min_argmax_gap: number };
}
interface Setting { name: string; strategy: string; steps: number; threshold: number | null }
interface Fixtures { gen_length: number; block_size: number; settings: Setting[]; cases: Case[] }

const [modelDir, fixDir, parentDir] = process.argv.slice(2);
const fx = JSON.parse(readFileSync(join(fixDir, 'fixtures.json'), 'utf8')) as Fixtures;
const model = await loadModel(modelDir);
const parent = parentDir ? await loadModel(parentDir) : null;
let bad = 0, total = 0, maxLogitErr = 0;
for (const c of fx.cases) {
  const content: ContentPart[] = c.image ? [{ type: 'image', image: join(fixDir, c.image) }, { type: 'text', text: c.question }] : [{ type: 'text', text: c.question }];
  const messages = [{ role: 'user' as const, content }];
  const pids = model.promptIds({ messages });
  if (JSON.stringify(pids) !== JSON.stringify(c.prompt_ids)) {
    bad++;
    console.log(`${c.id}: prompt ids differ\n  fixture ${JSON.stringify(c.prompt_ids)}\n  engine  ${JSON.stringify(pids)}`);
    continue;
  }
  // Continuous check first: f32 engine vs f64 reference logits. Tolerance 1e-3 of the row's
  // largest |logit|: f32 rounding through a few layers is ~1e-6 relative; a wrong tower, splice
  // or mask moves logits by far more than 1e-3.
  const pl = c.prompt_logits;
  const got = await model.promptLogits({ messages }, { rows: pl.rows, mask: 'block', blockSize: pl.block_size });
  const V = pl.logits[0].length;
  for (let r = 0; r < pl.rows.length; r++) {
    const ref = pl.logits[r];
    const scale = Math.max(...ref.map(Math.abs));
    let worst = 0;
    for (let v = 0; v < V; v++) {
      const g = got.logits[r * V + v];
      worst = Number.isNaN(g) ? Infinity : Math.max(worst, Math.abs(g - ref[v]) / scale);
    }
    maxLogitErr = Math.max(maxLogitErr, worst);
    if (!(worst <= 1e-3)) {
      bad++;
      console.log(`${c.id}: prompt logits at row ${pl.rows[r]} differ (max rel err ${worst.toExponential(2)})`);
    }
  }
  for (const s of fx.settings) {
    total++;
    const r = await model.generate({
      messages, maxTokens: fx.gen_length, blockSize: fx.block_size, steps: s.steps, temperature: 0,
      remasking: s.strategy === 'low_confidence_dynamic' ? 'dynamic' : 'static', threshold: s.threshold ?? 0.85,
    });
    const want = c.runs[s.name];
    const same = JSON.stringify(r.raw) === JSON.stringify(want.ids);
    if (!same) {
      bad++;
      const at = want.ids.findIndex((x, j) => r.raw[j] !== x);
      console.log(`${c.id} ${s.name}: differs at ${at} (fixture margins: argmax ${want.min_argmax_gap}, select ${want.min_select_gap}, threshold ${want.min_threshold_gap})\n  fixture ${JSON.stringify(want.ids)}\n  engine  ${JSON.stringify(r.raw)}`);
    }
  }
  if (parent && c.parent_ar) {
    total++;
    const r = await parent.generate({ messages, maxTokens: fx.gen_length, temperature: 0, mode: 'ar' });
    if (JSON.stringify(r.raw) !== JSON.stringify(c.parent_ar.ids)) {
      bad++;
      console.log(`${c.id} parent AR: differs (fixture argmax margin ${c.parent_ar.min_argmax_gap})\n  fixture ${JSON.stringify(c.parent_ar.ids)}\n  engine  ${JSON.stringify(r.raw)}`);
    }
  }
}
model.dispose();
parent?.dispose();
console.log(`engine check: ${fx.cases.length} cases; ${bad} failures over ${total} decode runs and the prompt logits (max logit rel err ${maxLogitErr.toExponential(2)})`);
process.exitCode = bad ? 1 : 0;
