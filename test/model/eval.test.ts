// evalHeldout / readHeldout (lib/eval.ts) on a tiny random vision checkpoint and a held-out set
// written here. The expected answers are taken from model.generate itself (half kept, half
// altered), so the exact-match counts, the per-kind split and the forward/token sums are known.
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, OptionError, evalHeldout, loadModel, readHeldout, type GenerateResult, type Model } from '../../lib/index.js';
import { mergeEvalResults, userMessage } from '../../lib/eval.js';
import { writeTinyModel, type TinyModel } from '../helpers/tinyModel.js';

const img = (name: string) => fileURLToPath(new URL(`../fixtures/images/inputs/${name}`, import.meta.url));
const VISION = { kind: 'qwen2_5_vl', depth: 2, hiddenSize: 32, numHeads: 2, intermediateSize: 48, patchSize: 14, temporalPatchSize: 2, spatialMergeSize: 2, fullAttBlockIndexes: [1] } as const;
const PIXELS = { min: 28 * 28 * 4, max: 28 * 28 * 16 };

interface Q { id: string; kind: string; question: string; image: string | null }
const QUESTIONS: Q[] = [
  { id: 'h-000', kind: 'describe', question: 'Describe the image.', image: 'images/a.png' },
  { id: 'h-001', kind: 'describe', question: 'Describe the image.', image: 'images/b.png' },
  { id: 'h-002', kind: 'count', question: 'How many shapes?', image: 'images/a.png' },
  { id: 'h-003', kind: 'text_reverse', question: 'Reverse the letters: a b c', image: null },
  { id: 'h-004', kind: 'text_reverse', question: 'Reverse the letters: x y', image: null },
  { id: 'h-005', kind: 'text_reverse', question: 'Reverse the letters: d e f g', image: null },
];
const GEN = { maxTokens: 12, steps: 4 };

let m: TinyModel, model: Model, dir: string;
const direct: GenerateResult[] = [];
beforeAll(async () => {
  m = await writeTinyModel({ diffusion: true, seed: 31, pixels: PIXELS, vision: VISION });
  model = await loadModel(m.dir, { threads: 1 });
  dir = mkdtempSync(join(tmpdir(), 'dvl-heldout-'));
  mkdirSync(join(dir, 'images'));
  copyFileSync(img('photo-256x193.png'), join(dir, 'images/a.png'));
  copyFileSync(img('noise-100x61.png'), join(dir, 'images/b.png'));
  // What the model answers, greedy, with the same messages the eval builds.
  for (const q of QUESTIONS) {
    direct.push(await model.generate({ ...GEN, temperature: 0, messages: userMessage(q.question, q.image ? [join(dir, q.image)] : []) }));
  }
  // Items 0, 3, 4 expect exactly what the model says (untrimmed text: the eval trims it);
  // 1, 2, 5 expect something else.
  const items = QUESTIONS.map((q, i) => ({ ...q, answer: [0, 3, 4].includes(i) ? direct[i].text.trim() : `${direct[i].text.trim()} (not this)` }));
  writeFileSync(join(dir, 'heldout.json'), JSON.stringify({ format: 'diffusionvl-heldout/1', seed: 0, items }));
});
afterAll(() => {
  model?.dispose();
  for (const d of [m?.dir, dir]) if (d) rmSync(d, { recursive: true, force: true });
});

describe('held-out eval', () => {
  it('readHeldout resolves image paths against the set folder', async () => {
    const set = await readHeldout(dir);
    expect(set.format).toBe('diffusionvl-heldout/1');
    expect(set.items).toHaveLength(QUESTIONS.length);
    expect(set.items[0].image).toBe(join(dir, 'images/a.png'));
    expect(set.items[3].image).toBeNull();
  });

  it('scores exact match overall and per kind, and sums forwards and answer tokens', async () => {
    const set = await readHeldout(dir);
    const lines: string[] = [];
    const r = await evalHeldout(model, set.items, { ...GEN, log: (s) => lines.push(s), progressEvery: 4 });
    expect(r.mode).toBe('diffusion');
    expect(r.n).toBe(6);
    expect(r.correct).toBe(3);
    expect(r.exactMatch).toBeCloseTo(0.5, 12);
    expect(r.perKind).toEqual({
      count: { n: 1, correct: 0, exactMatch: 0 },
      describe: { n: 2, correct: 1, exactMatch: 0.5 },
      text_reverse: { n: 3, correct: 2, exactMatch: 2 / 3 },
    });
    expect(r.items.map((x) => x.ok)).toEqual([true, false, false, true, true, false]);
    expect(r.items.map((x) => x.got)).toEqual(direct.map((d) => d.text.trim()));
    expect(r.failures.map((x) => x.id)).toEqual(['h-001', 'h-002', 'h-005']);
    // Forwards: the decoder's own count per item (prefill, denoising, commits); tokens up to and including EOS.
    const fw = direct.reduce((s, d) => s + d.stats.forwards, 0);
    const tok = direct.reduce((s, d) => s + d.ids.length, 0);
    expect(r.forwards).toBe(fw);
    expect(r.answerTokens).toBe(tok);
    expect(r.forwardsPerToken).toBeCloseTo(fw / tok, 12);
    expect(r.tokensPerSecond).toBeGreaterThan(0);
    // The decoder alone is faster than the whole request (the prefill and the prompt are out).
    expect(r.decodeTokensPerSecond).toBeGreaterThan(r.tokensPerSecond);
    expect(r.fixedMs.prefill).toBeGreaterThan(0);
    expect(r.fixedMs.prompt).toBeGreaterThan(0);
    expect(r.settings).toEqual({ mode: 'diffusion', maxTokens: 12, steps: 4, remasking: 'static', blockSize: 8 });
    expect(lines).toHaveLength(2);   // after item 4 and at the end
    expect(lines[1]).toMatch(/^eval 6\/6: exact match 50\.0%/);
  });

  it('concurrent clients (batched) give the same answers, in item order', async () => {
    const set = await readHeldout(dir);
    const one = await evalHeldout(model, set.items, { maxTokens: 12, steps: 4 });
    const four = await evalHeldout(model, set.items, { maxTokens: 12, steps: 4, concurrency: 4 });
    expect(four.items).toEqual(one.items);
    expect(four.correct).toBe(one.correct);
    expect(four.tokensPerSecond).toBeGreaterThan(0);
    await expect(evalHeldout(model, set.items, { concurrency: 0 })).rejects.toThrow(/concurrency/);
  });

  it('slices merged (mergeEvalResults) give what one call over the whole set gives', async () => {
    const set = await readHeldout(dir);
    const whole = await evalHeldout(model, set.items, GEN);
    const parts = [set.items.slice(0, 2), set.items.slice(2, 3), set.items.slice(3)];
    const merged = mergeEvalResults(await Promise.all(parts.map((p) => evalHeldout(model, p, GEN))));
    for (const k of ['n', 'correct', 'exactMatch', 'perKind', 'mode', 'forwards', 'answerTokens', 'forwardsPerToken', 'settings', 'items', 'failures'] as const) {
      expect(merged[k], k).toEqual(whole[k]);
    }
    // Rates from the summed times; means weighted by each slice's items.
    expect(merged.tokensPerSecond).toBeCloseTo(merged.answerTokens / merged.totals.wallMs * 1000, 9);
    expect(merged.decodeTokensPerSecond).toBeCloseTo(merged.totals.decodeTokens / merged.totals.decodeMs * 1000, 9);
    expect(merged.totals.decodeTokens).toBe(whole.totals.decodeTokens);
    expect(merged.fixedMs.prefill).toBeGreaterThan(0);
    expect(() => mergeEvalResults([])).toThrow(OptionError);
  });

  it('n takes the first items; ar mode counts one forward per token', async () => {
    const set = await readHeldout(dir);
    const r = await evalHeldout(model, set.items, { n: 2, mode: 'ar', maxTokens: 6 });
    expect(r.n).toBe(2);
    expect(r.mode).toBe('ar');
    expect(r.forwards).toBe(r.answerTokens);
    expect(r.settings).toEqual({ mode: 'ar', maxTokens: 6 });
  });

  it('a missing or malformed set is a typed error', async () => {
    await expect(readHeldout(join(dir, 'nope'))).rejects.toBeInstanceOf(OptionError);
    const bad = mkdtempSync(join(tmpdir(), 'dvl-heldout-bad-'));
    try {
      writeFileSync(join(bad, 'heldout.json'), JSON.stringify({ format: 'other', items: [] }));
      await expect(readHeldout(bad)).rejects.toBeInstanceOf(ConfigError);
      writeFileSync(join(bad, 'heldout.json'), JSON.stringify({ format: 'diffusionvl-heldout/1', items: [{ id: 'x', kind: 'k', question: 'q' }] }));
      await expect(readHeldout(bad)).rejects.toThrow(/items\[0\]\.answer/);
    } finally {
      rmSync(bad, { recursive: true, force: true });
    }
  });
});
