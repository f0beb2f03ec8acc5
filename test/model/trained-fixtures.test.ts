// trained-fixtures.test.ts — the bundled trained model (models/shapes-diffusionvl and its AR
// parent models/shapes-ar) against an independent implementation: train/fixtures.py, a plain
// PyTorch transcription of REFERENCE.md §5 run in float64 on the same bf16 weights, wrote
// test/fixtures/trained/fixtures.json. For each held-out case (pictures and text-only):
//   - the prompt ids (§4.1 format, §3.6 image split) are identical;
//   - the prompt's block-masked logits agree to 1e-3 of the row's largest |logit|: the engine
//     computes in f32 from the same bf16 values the reference upcasts exactly to f64, so the only
//     difference is f32 rounding through 4 + 4 layers (~1e-6 relative); a wrong tower, splice,
//     window order or mask moves logits by far more than 1e-3;
//   - at temperature 0 the raw generated ids are identical, token for token, under static 8/4/2
//     steps and dynamic 0.85/0.9 (the parent: greedy AR). The fixture also records each run's
//     smallest decision margins (argmax gap in logits, selection and threshold gaps in
//     probability); a mismatch message prints them, to tell a real bug from an f32 near-tie.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel, type Model } from '../../lib/model/model.js';
import type { ContentPart } from '../../lib/text/prompt.js';
import { packageRoot } from '../../lib/native/index.js';

interface Run { ids: number[]; text: string; exact_match: boolean; min_argmax_gap: number | null; min_select_gap: number | null; min_threshold_gap: number | null }
interface Case {
  id: string; kind: string; question: string; expected_answer: string; image: string | null; prompt_ids: number[];
  runs: Record<string, Run>; prompt_logits: { rows: number[]; block_size: number; logits: number[][] };
  parent_ar?: { ids: number[]; text: string; min_argmax_gap: number };
}
interface Setting { name: string; strategy: string; steps: number; threshold: number | null }
interface Fixtures { gen_length: number; block_size: number; settings: Setting[]; cases: Case[] }

const root = packageRoot();
const childDir = join(root, 'models', 'shapes-diffusionvl');
const parentDir = join(root, 'models', 'shapes-ar');
const fixDir = join(root, 'test', 'fixtures', 'trained');

const fx = JSON.parse(readFileSync(join(fixDir, 'fixtures.json'), 'utf8')) as Fixtures;

function messagesOf(c: Case) {
  const content: ContentPart[] = c.image
    ? [{ type: 'image', image: join(fixDir, c.image) }, { type: 'text', text: c.question }]
    : [{ type: 'text', text: c.question }];
  return [{ role: 'user' as const, content }];
}

describe('bundled trained model vs the PyTorch reference decoder (train/fixtures.py)', () => {
  let child: Model;
  let parent: Model;
  beforeAll(async () => {
    expect(existsSync(childDir), `${childDir} missing: regenerate with train/run_all.sh`).toBe(true);
    child = await loadModel(childDir, { threads: 2 });
    parent = await loadModel(parentDir, { threads: 2 });
  });
  afterAll(() => { child?.dispose(); parent?.dispose(); });

  it('fixtures cover images and text-only prompts and every setting', () => {
    expect(fx.cases.length).toBeGreaterThanOrEqual(30);
    expect(fx.cases.some((c) => c.image)).toBe(true);
    expect(fx.cases.some((c) => !c.image)).toBe(true);
    expect(fx.settings.map((s) => s.name)).toEqual(['static-8', 'static-4', 'static-2', 'dynamic-0.85', 'dynamic-0.9']);
    for (const c of fx.cases) expect(c.parent_ar, c.id).toBeDefined();
  });

  it('the loaded models: child decodes by block diffusion, parent autoregressively', () => {
    expect(child.config.defaultMode).toBe('diffusion');
    expect(parent.config.defaultMode).toBe('ar');
    expect(child.config.diffusion?.blockSize).toBe(fx.block_size);
  });

  it('prompt ids and block-masked prompt logits', async () => {
    let worstSeen = 0;
    for (const c of fx.cases) {
      const messages = messagesOf(c);
      expect(child.promptIds({ messages }), c.id).toEqual(c.prompt_ids);
      const pl = c.prompt_logits;
      const got = await child.promptLogits({ messages }, { rows: pl.rows, mask: 'block', blockSize: pl.block_size });
      const V = pl.logits[0].length;
      for (let r = 0; r < pl.rows.length; r++) {
        const ref = pl.logits[r];
        const scale = Math.max(...ref.map(Math.abs));
        let worst = 0;
        for (let v = 0; v < V; v++) {
          const g = got.logits[r * V + v];
          worst = Number.isNaN(g) ? Infinity : Math.max(worst, Math.abs(g - ref[v]) / scale);
        }
        expect(worst, `${c.id} row ${pl.rows[r]}`).toBeLessThanOrEqual(1e-3);
        worstSeen = Math.max(worstSeen, worst);
      }
    }
    expect(worstSeen).toBeLessThan(1e-3);
  });

  for (const s of fx.settings) {
    it(`child, ${s.name}: generated ids identical for every case`, async () => {
      for (const c of fx.cases) {
        const r = await child.generate({
          messages: messagesOf(c), maxTokens: fx.gen_length, blockSize: fx.block_size, steps: s.steps, temperature: 0,
          remasking: s.strategy === 'low_confidence_dynamic' ? 'dynamic' : 'static', threshold: s.threshold ?? 0.85,
        });
        const w = c.runs[s.name];
        expect(r.raw, `${c.id} ${s.name} (fixture margins: argmax ${w.min_argmax_gap}, select ${w.min_select_gap}, threshold ${w.min_threshold_gap})`).toEqual(w.ids);
      }
    });
  }

  it('parent, greedy AR: generated ids identical for every case', async () => {
    for (const c of fx.cases) {
      const r = await parent.generate({ messages: messagesOf(c), maxTokens: fx.gen_length, temperature: 0 });
      expect(r.mode, c.id).toBe('ar');
      expect(r.raw, `${c.id} (fixture argmax margin ${c.parent_ar!.min_argmax_gap})`).toEqual(c.parent_ar!.ids);
    }
  });
});
