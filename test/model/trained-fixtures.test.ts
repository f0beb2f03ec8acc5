// trained-fixtures.test.ts — the bundled trained model (models/shapes-diffusionvl and its AR
// parent models/shapes-ar) against an independent implementation: train/fixtures.py, a plain
// PyTorch transcription of docs §5 run in float64 on the same bf16 weights, wrote
// test/fixtures/trained/fixtures.json. For each held-out case (pictures and text-only):
//   - the prompt ids (§4.1 format, §3.6 image split) are identical;
//   - the prompt's block-masked logits agree to 1e-5 of the row's largest |logit| (the engine in
//     f32 from the same bf16 values the reference upcasts exactly to f64; the measured errors
//     and why the bound is tight: LOGIT_TOLERANCE in test/helpers/trained-fixtures.ts);
//   - at temperature 0 the raw generated ids are identical, token for token, under static 8/4/2
//     steps, dynamic 0.85/0.9 and the child's own default (generation_config.json, no decode
//     options in the request) (the parent: greedy AR). The fixture also records each run's
//     smallest decision margins (argmax gap in logits, selection and threshold gaps in
//     probability); a mismatch message prints them, to tell a real bug from an f32 near-tie.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel, type Model } from '../../lib/model/model.js';
import { packageRoot } from '../../lib/native/index.js';
import { caseMessages, LOGIT_TOLERANCE, promptLogitErrors, readFixtures, settingRequest, type FixtureCase } from '../helpers/trained-fixtures.js';

const root = packageRoot();
const childDir = join(root, 'models', 'shapes-diffusionvl');
const parentDir = join(root, 'models', 'shapes-ar');
const fixDir = join(root, 'test', 'fixtures', 'trained');
const fx = readFixtures(fixDir);
const messagesOf = (c: FixtureCase) => caseMessages(fixDir, c);

describe('bundled trained model vs the PyTorch reference decoder (train/fixtures.py)', () => {
  let child: Model;
  let parent: Model;
  beforeAll(async () => {
    expect(existsSync(childDir), `${childDir} missing: regenerate with train/run_all.sh`).toBe(true);
    // Token-for-token against PyTorch: the exact kernels (the default precision is 'fast').
    child = await loadModel(childDir, { threads: 2, precision: 'exact' });
    parent = await loadModel(parentDir, { threads: 2, precision: 'exact' });
  });
  afterAll(() => { child?.dispose(); parent?.dispose(); });

  it('fixtures cover images and text-only prompts and every setting', () => {
    expect(fx.cases.length).toBeGreaterThanOrEqual(30);
    expect(fx.cases.some((c) => c.image)).toBe(true);
    expect(fx.cases.some((c) => !c.image)).toBe(true);
    expect(fx.settings.map((s) => s.name)).toEqual(['static-8', 'static-4', 'static-2', 'dynamic-0.85', 'dynamic-0.9', 'default']);
    for (const c of fx.cases) expect(c.parent_ar, c.id).toBeDefined();
  });

  it('the loaded models: child decodes by block diffusion, parent autoregressively', () => {
    expect(child.config.defaultMode).toBe('diffusion');
    expect(parent.config.defaultMode).toBe('ar');
    expect(child.config.diffusion?.blockSize).toBe(fx.block_size);
  });

  it("the child's default decoder is its generation_config.json's (dynamic remasking), as the fixtures' 'default' setting", async () => {
    const d = fx.settings.find((s) => s.name === 'default')!;
    expect(d.from_generation_config).toBe(true);
    expect(d.strategy).toBe('low_confidence_dynamic');
    expect(child.config.generationDefaults).toEqual({ steps: d.steps, remasking: 'dynamic', threshold: d.threshold });
    const c = fx.cases.find((x) => x.image)!;
    const r = await child.generate({ messages: messagesOf(c), maxTokens: 8 });
    expect(r.options).toMatchObject({ steps: d.steps, remasking: 'dynamic', threshold: d.threshold });
  });

  it('prompt ids and block-masked prompt logits', async () => {
    let worstSeen = 0;
    for (const c of fx.cases) {
      const messages = messagesOf(c);
      expect(child.promptIds({ messages }), c.id).toEqual(c.prompt_ids);
      const errs = await promptLogitErrors(child, c, messages);
      errs.forEach((worst, r) => {
        expect(worst, `${c.id} row ${c.prompt_logits.rows[r]}`).toBeLessThanOrEqual(LOGIT_TOLERANCE);
        worstSeen = Math.max(worstSeen, worst);
      });
    }
    expect(worstSeen).toBeLessThan(LOGIT_TOLERANCE);
  });

  for (const s of fx.settings) {
    it(`child, ${s.name}: generated ids identical for every case`, async () => {
      for (const c of fx.cases) {
        const r = await child.generate(settingRequest(fx, s, messagesOf(c)));
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
