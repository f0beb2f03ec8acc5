// Images through the public API (docs §3.1–3.6) on a tiny random DiffusionVL-Qwen2.5VL
// checkpoint (released layout, bf16) with real PNG/JPEG fixtures: decode → preprocess with the
// model's min/max pixels → vision tower → −200 sentinels expanded and spliced → decode.
//
// The spliced forward is checked against float64: the tower reference (vision_reference.ts)
// gives the image features, which are appended to a copy of the embedding table so that the
// text reference (reference.ts, ids only) reads them through ids V + row; with tied embeddings
// its lm_head still scores only the first V rows.
//
// Tolerance for logits: f32 engine vs f64 reference, same stored weights. The features carry
// the tower's f32 error (~1e-6, see vision-tower.test.ts) and are rounded to f32 in the table;
// the text model adds its own (2 layers, K ≤ 96): measured max |Δlogit| ≈ 1e-6 on logits of
// magnitude ~1. abs 1e-4 + rel 1e-4 leaves ~100× margin, while a missing splice (tried) moves
// logits by 0.2–3.6.
import { readFileSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel, ImageError, OptionError, type ChatMessage } from '../../lib/index.js';
import { decodeImage } from '../../lib/image/decode.js';
import { preprocessQwen2vl, smartResize } from '../../lib/image/qwen2vl.js';
import { IMAGE_TOKEN_INDEX } from '../../lib/text/prompt.js';
import type { QwenVisionConfig, SiglipVisionConfig } from '../../lib/weights/config.js';
import { encodeSiglipImages, siglipTokenCount } from '../../lib/model/siglip.js';
import { Queue } from '../../lib/native/index.js';
import { loadWeights } from '../../lib/weights/load.js';
import { writeTinyModel, type TinyModel } from '../helpers/tinyModel.js';
import { expectClose } from '../helpers/compare.js';
import { fromBf16, toBf16 } from '../helpers/random.js';
import { referenceDecode, type DecodeModel } from '../../lib/decode/reference.js';
import { blockCausal, causal, referenceForward, type RefConfig, type Visible } from './reference.js';
import { referenceVision } from './vision_reference.js';

const img = (name: string) => fileURLToPath(new URL(`../fixtures/images/inputs/${name}`, import.meta.url));
const PHOTO = img('photo-256x193.png'), WIDE = img('wide-700x500.png'), SMALL = img('rgb-37x23.png'), JPEG = img('exif6-64x40.jpg');
const TOL = { abs: 1e-4, rel: 1e-4 };
// Small pixel bounds keep the float64 references quick: 4..30 merged tokens per image.
const PIXELS = { min: 28 * 28 * 4, max: 28 * 28 * 30 };

const VISION = { kind: 'qwen2_5_vl', depth: 3, hiddenSize: 32, numHeads: 2, intermediateSize: 48, patchSize: 14, temporalPatchSize: 2, spatialMergeSize: 2, fullAttBlockIndexes: [1] } as const;

let vlm: TinyModel, text: TinyModel;
beforeAll(async () => {
  vlm = await writeTinyModel({ diffusion: true, seed: 21, pixels: PIXELS, vision: { ...VISION, fullAttBlockIndexes: [1] } });
  text = await writeTinyModel({ diffusion: true, seed: 22 });
});
afterAll(() => { for (const m of [vlm, text]) rmSync(m.dir, { recursive: true, force: true }); });

const ask = (images: unknown[], q: string): ChatMessage[] =>
  [{ role: 'user', content: [...images.map((image) => ({ type: 'image' as const, image })), { type: 'text' as const, text: q }] }];

/** Merged tokens §3.4 predicts for an image file under PIXELS. */
async function expectedTokens(path: string): Promise<number> {
  const d = await decodeImage(path);
  const { height, width } = smartResize(d.height, d.width, { factor: 28, minPixels: PIXELS.min, maxPixels: PIXELS.max });
  return (height / 28) * (width / 28);
}

/**
 * Float64 logits of the expanded prompt `ids` for `rows`. `sentinels` are the −200 positions in
 * the unexpanded prompt: image k takes the expanded positions starting at its sentinel shifted
 * by the extra positions of the images before it.
 */
async function referenceLogits(ids: readonly number[], sentinels: number[], images: string[], rows: number[], visible: Visible, cfgText: RefConfig, cfgVision: QwenVisionConfig): Promise<Float64Array> {
  const { refIds, w } = await referenceInputs(vlm, ids, sentinels, images, cfgText, cfgVision);
  const out = referenceForward(cfgText, w, refIds, visible, rows);
  const flat = new Float64Array(rows.length * cfgText.vocabSize);
  out.forEach((r, i) => flat.set(r, i * cfgText.vocabSize));
  return flat;
}

/** The reference's view of an expanded prompt: ids with image positions → V + feature row, and the extended table. */
async function referenceInputs(m: TinyModel, ids: readonly number[], sentinels: number[], images: string[], cfgText: RefConfig, cfgVision: QwenVisionConfig): Promise<{ refIds: number[]; w: Map<string, Float32Array> }> {
  const pre = [];
  for (const p of images) pre.push(await preprocessQwen2vl(await decodeImage(p), { minPixels: PIXELS.min, maxPixels: PIXELS.max }));
  const bf16 = (x: number) => fromBf16(toBf16(Float32Array.of(x)))[0];   // the tower casts input to the weight dtype
  const feats = referenceVision(cfgVision, m.ck.weights, pre, bf16);
  const H = cfgText.hiddenSize, V = cfgText.vocabSize;
  const emb = m.ck.weights.get('model.embed_tokens.weight')!;
  const table = new Float32Array((V + feats.length) * H);
  table.set(emb);
  feats.forEach((f, i) => table.set(f, (V + i) * H));
  const w = new Map(m.ck.weights);
  w.set('model.embed_tokens.weight', table);
  const refIds = Array.from(ids);
  let row = 0, shift = 0;
  sentinels.forEach((s, k) => {
    for (let i = 0; i < pre[k].tokens; i++) {
      expect(ids[s + shift + i]).toBe(0);   // placeholder id in the expanded prompt
      refIds[s + shift + i] = V + row++;
    }
    shift += pre[k].tokens - 1;
  });
  return { refIds, w };
}

describe('images in generate()', () => {
  it('one image: prompt = text ids + image tokens; spliced prefill logits match float64', async () => {
    await using model = await loadModel(vlm.dir, { threads: 2, precision: 'exact' });
    const v = model.config.vision as QwenVisionConfig;
    expect(v.kind).toBe('qwen2_5_vl');
    expect([v.minPixels, v.maxPixels]).toEqual([PIXELS.min, PIXELS.max]);
    const messages = ask([PHOTO], 'What is in the picture?');
    const withSentinel = model.promptIds({ messages });
    expect(withSentinel.filter((t) => t === IMAGE_TOKEN_INDEX)).toHaveLength(1);
    const N = await expectedTokens(PHOTO);

    const r = await model.generate({ messages, maxTokens: 16, steps: 4 });
    expect(r.stats.promptTokens).toBe(withSentinel.length - 1 + N);
    expect(r.stats.imageTokens).toEqual([N]);
    expect(r.stats.visionMs).toBeGreaterThan(0);
    expect(r.raw).toHaveLength(16);
    expect(typeof r.text).toBe('string');

    // Block mask (the diffusion prefill) over the whole prompt; rows: text before the image,
    // image rows, the text after it and the last position.
    const bs = model.config.diffusion!.blockSize;
    const s = withSentinel.indexOf(IMAGE_TOKEN_INDEX);
    const P = withSentinel.length - 1 + N;
    const rows = [...new Set([0, s - 1, s, s + 1, s + N - 1, s + N, P - 1])].filter((x) => x >= 0 && x < P).sort((a, b) => a - b);
    const got = await model.promptLogits({ messages }, { rows, mask: 'block' });
    expect(got.ids).toHaveLength(P);
    expect(got.imageTokens).toEqual([N]);
    const ref = await referenceLogits(got.ids, [s], [PHOTO], rows, blockCausal(bs), { ...model.config.text }, v);
    expectClose(got.logits, ref, TOL, 'one image, block mask');

    // The same prompt with the image as a Buffer gives the same features.
    const again = await model.promptLogits({ messages: ask([readFileSync(PHOTO)], 'What is in the picture?') }, { rows, mask: 'block' });
    expect(Array.from(again.logits)).toEqual(Array.from(got.logits));
  }, 120_000);

  it('two images in one prompt (and a causal AR prefill): each sentinel gets its own features', async () => {
    await using model = await loadModel(vlm.dir, { threads: 2, precision: 'exact' });
    const v = model.config.vision as QwenVisionConfig;
    const images = [WIDE, SMALL];
    const messages = ask(images, 'Compare them.');
    const withSentinel = model.promptIds({ messages });
    const sentinelAt = withSentinel.flatMap((t, j) => (t === IMAGE_TOKEN_INDEX ? [j] : []));
    expect(sentinelAt).toHaveLength(2);
    const Ns = [await expectedTokens(WIDE), await expectedTokens(SMALL)];
    const P = withSentinel.length - 2 + Ns[0] + Ns[1];

    const r = await model.generate({ messages, maxTokens: 16, steps: 8 });
    expect(r.stats.promptTokens).toBe(P);
    expect(r.stats.imageTokens).toEqual(Ns);

    const s1 = sentinelAt[1] + Ns[0] - 1;   // second image's first expanded position
    const rows = [sentinelAt[0], sentinelAt[0] + Ns[0] - 1, sentinelAt[0] + Ns[0], s1, s1 + Ns[1] - 1, P - 1];
    for (const [mask, vis] of [['block', blockCausal(model.config.diffusion!.blockSize)], ['causal', causal]] as const) {
      const got = await model.promptLogits({ messages }, { rows, mask });
      const ref = await referenceLogits(got.ids, sentinelAt, images, rows, vis, { ...model.config.text }, v);
      expectClose(got.logits, ref, TOL, `two images, ${mask} mask`);
    }

    // AR decoding splices too (the causal prefill covers the prompt).
    const ar = await model.generate({ messages, mode: 'ar', maxTokens: 4 });
    expect(ar.stats.promptTokens).toBe(P);
    // Greedy AR's first token is the argmax of the causal prefill's last row.
    const last = await model.promptLogits({ messages }, { mask: 'causal' });
    let best = 0;
    for (let i = 1; i < last.logits.length; i++) if (last.logits[i] > last.logits[best]) best = i;
    expect(ar.raw[0]).toBe(best);
  }, 180_000);

  it('decoding with an image split between the prefill and the straddling block equals the plain reference decoder on float64 logits', async () => {
    // Pick a block size whose prefill boundary floor(P/bs)·bs cuts through the image rows, so
    // the prefill splices the first part and every step of the straddling block the rest.
    const messages = ask([PHOTO], 'Hi');
    let s: number, P: number, N: number;
    {
      await using probe = await loadModel(vlm.dir, { threads: 1 });
      const withSentinel = probe.promptIds({ messages });
      s = withSentinel.indexOf(IMAGE_TOKEN_INDEX);
      N = await expectedTokens(PHOTO);
      P = withSentinel.length - 1 + N;
    }
    let bs = 0;
    for (let b = 4; b < P && !bs; b++) { const L = Math.floor(P / b) * b; if (L > s + 1 && L < s + N - 1) bs = b; }
    expect(bs).toBeGreaterThan(0);
    const m2 = await writeTinyModel({ diffusion: true, seed: 21, blockSize: bs, pixels: PIXELS, vision: { ...VISION, fullAttBlockIndexes: [1] } });
    try {
      await using model = await loadModel(m2.dir, { threads: 2, precision: 'exact' });
      const opts = { maxTokens: 24, steps: 4, stopTokens: [] as number[] };
      const r = await model.generate({ messages, ...opts });
      expect(r.stats.promptTokens).toBe(P);

      const cfgText: RefConfig = { ...model.config.text };
      const got = await model.promptLogits({ messages }, { rows: [0] });   // the expanded ids
      const { refIds, w } = await referenceInputs(m2, got.ids, [s], [PHOTO], cfgText, model.config.vision as QwenVisionConfig);
      // Logits source: one float64 forward per distinct canvas view (block-causal), rounded to f32.
      let lastView: readonly number[] | null = null;
      let cache = new Map<number, Float32Array>();
      const source = (visible: readonly number[], pos: number): Float32Array => {
        if (visible !== lastView) {
          const start = Math.floor(pos / bs) * bs;
          const rows = Array.from({ length: visible.length - start }, (_, i) => start + i);
          const out = referenceForward(cfgText, w, Array.from(visible), blockCausal(bs), rows);
          cache = new Map(rows.map((j, i) => [j, Float32Array.from(out[i])]));
          lastView = visible;
        }
        return cache.get(pos)!;
      };
      const dm: DecodeModel = { maskId: m2.maskId, blockSize: bs, eosId: model.config.eosTokenId, route: 'qwen2.5-vl' };
      const ref = referenceDecode(refIds, source, opts, dm);
      expect(r.raw).toEqual(ref.raw);
      expect(r.ids).toEqual(ref.ids);
    } finally {
      rmSync(m2.dir, { recursive: true, force: true });
    }
  }, 180_000);

  it('stream() with an image yields blocks then done; a JPEG with EXIF orientation works', async () => {
    await using model = await loadModel(vlm.dir, { threads: 2 });
    const events = [];
    for await (const ev of model.stream({ messages: ask([JPEG], 'Describe.'), maxTokens: 16, steps: 4 })) events.push(ev.type);
    expect(events.at(-1)).toBe('done');
    expect(events).toContain('block');
  }, 60_000);

  it("DiffusionVL's default pixel bounds (147456..262144): a 256×193 photo becomes 336×448 → 192 tokens", async () => {
    const m = await writeTinyModel({ diffusion: true, seed: 23, vision: { ...VISION, fullAttBlockIndexes: [0, 2] } });
    try {
      await using model = await loadModel(m.dir, { threads: 2 });
      const v = model.config.vision as QwenVisionConfig;
      expect([v.minPixels, v.maxPixels]).toEqual([147456, 262144]);
      const r = await model.generate({ messages: ask([PHOTO], 'What is it?'), maxTokens: 8, steps: 2 });
      expect(r.stats.imageTokens).toEqual([192]);
      expect(r.stats.promptTokens).toBe(model.promptIds({ messages: ask([PHOTO], 'What is it?') }).length - 1 + 192);
    } finally {
      rmSync(m.dir, { recursive: true, force: true });
    }
  }, 120_000);

  it('SigLIP route (AR-LM layout): the sentinel expands to the anyres token count and the spliced rows are the encoder\'s', async () => {
    const m = await writeTinyModel({ diffusion: true, seed: 24, vision: { kind: 'siglip', hiddenSize: 32, numLayers: 1, numHeads: 2, intermediateSize: 48, patchSize: 14, imageSize: 384 } });
    try {
      await using model = await loadModel(m.dir, { threads: 2, precision: 'exact' });
      const v = model.config.vision as SiglipVisionConfig;
      expect(v.kind).toBe('siglip');
      const messages = ask([SMALL], 'What?');
      const withSentinel = model.promptIds({ messages });
      const s = withSentinel.indexOf(IMAGE_TOKEN_INDEX);
      const N = siglipTokenCount(v, [37, 23], { multiImage: false });
      const r = await model.generate({ messages, maxTokens: 8, steps: 2 });
      expect(r.stats.imageTokens).toEqual([N]);
      expect(r.stats.promptTokens).toBe(withSentinel.length - 1 + N);
      const two = await model.generate({ messages: ask([SMALL, PHOTO], 'Both?'), maxTokens: 8, steps: 2 });
      expect(two.stats.imageTokens).toEqual([730, 730]);   // multi-image: one square crop + newline each (§3.5 step 8)

      // Splice check with the engine's own SigLIP features (the encoder itself is tested in
      // siglip-encoder.test.ts): float64 text reference over the table extended by those rows.
      const P = withSentinel.length - 1 + N;
      const rows = [s - 1, s, s + N - 1, s + N, P - 1];
      const got = await model.promptLogits({ messages }, { rows, mask: 'block' });
      const q = new Queue({ threads: 2, precision: 'exact' });
      const w = await loadWeights(m.dir, q, { vision: true });
      let feats: Float32Array;
      try {
        const f = await encodeSiglipImages(q, w, v, [await decodeImage(SMALL)], { multiImage: false });
        feats = await q.readF32(f.features);
        f.features.dispose();
      } finally { w.dispose(); q.dispose(); }
      const cfgText: RefConfig = { ...model.config.text };
      const H = cfgText.hiddenSize, V = cfgText.vocabSize;
      const table = new Float32Array((V + N) * H);
      table.set(m.ck.weights.get('model.embed_tokens.weight')!);
      table.set(feats, V * H);
      const wr = new Map(m.ck.weights);
      wr.set('model.embed_tokens.weight', table);
      const refIds = got.ids.map((t, j) => (j >= s && j < s + N ? V + j - s : t));
      const ref = referenceForward(cfgText, wr, refIds, blockCausal(model.config.diffusion!.blockSize), rows);
      const flat = new Float64Array(rows.length * V);
      ref.forEach((x, i) => flat.set(x, i * V));
      expectClose(got.logits, flat, TOL, 'siglip splice');
    } finally {
      rmSync(m.dir, { recursive: true, force: true });
    }
  }, 180_000);

  it('the first forward queues behind the tower (pipelined); a tower that fails fails its request only, the next one is clean', async () => {
    await using model = await loadModel(vlm.dir, { threads: 2 });
    const req = { messages: ask([SMALL], 'Describe.'), maxTokens: 16, steps: 4 };
    const t0 = performance.now();
    const clean = await model.generate(req);
    const wall = performance.now() - t0;
    const t = clean.stats.timings!;
    expect(t.towerMs).toBeGreaterThan(0);
    expect(t.prefillMs).toBeGreaterThanOrEqual(0);
    // The parts are disjoint spans of the call: the tower's tail, which the decoder's start
    // overlapped, is not counted again as prefill.
    expect(t.promptMs + t.imageMs + t.towerMs + t.prefillMs + t.decodeMs).toBeLessThanOrEqual(wall);
    expect(clean.stats.prefillMs).toBe(t.prefillMs);
    // Cancel the tower's queued ops at the sync the encode queues right behind them: the decoder's
    // first forward is already queued after that and runs (the sync took the sticky error), on
    // features that were never computed. The request must fail with the tower's error instead of
    // answering from them.
    // A long probe op first, so the tower's ops are still waiting in the queue at that sync.
    const q = (model as unknown as { queue: Queue }).queue;
    const sync = q.sync;
    q.sync = function (this: Queue) { q.sync = sync; this.cancel(); return sync.call(this); };
    const busy = q.computePeak('f32', 3e7);   // ≈ 50-100 ms of both threads
    await expect(model.generate(req)).rejects.toMatchObject({ code: 'DVL_ABORTED' });
    busy.dispose();
    expect(q.sync).toBe(sync);
    const again = await model.generate(req);
    expect(again.ids).toEqual(clean.ids);
    expect(again.text).toBe(clean.text);
  }, 60_000);

  it('typed errors: image count vs placeholders, text-only model, bad image, vision: false', async () => {
    await using model = await loadModel(vlm.dir, { threads: 1 });
    // A literal <image> with no image given.
    await expect(model.generate({ messages: [{ role: 'user', content: '<image>\nWhat?' }] })).rejects.toThrow(ImageError);
    // A sentinel in raw ids without images.
    await expect(model.generate({ promptIds: [1, IMAGE_TOKEN_INDEX, 2] })).rejects.toThrow(OptionError);
    // An undecodable image.
    await expect(model.generate({ messages: ask([Buffer.from('not an image')], 'x'), maxTokens: 8 })).rejects.toThrow(ImageError);
    // Abort before and right after the call: rejects with the reason, nothing leaks into the next call.
    const reason = new Error('stop');
    await expect(model.generate({ messages: ask([SMALL], 'x'), signal: AbortSignal.abort(reason) })).rejects.toBe(reason);
    const ac = new AbortController();
    const p = model.generate({ messages: ask([WIDE], 'x'), maxTokens: 8, signal: ac.signal });
    ac.abort(reason);
    await expect(p).rejects.toBe(reason);
    // The model still works afterwards.
    expect((await model.generate({ messages: ask([SMALL], 'x'), maxTokens: 8 })).raw).toHaveLength(8);

    await using plain = await loadModel(text.dir, { threads: 1 });
    await expect(plain.generate({ messages: ask([SMALL], 'x') })).rejects.toThrow(/no vision tower/);
    await using noVision = await loadModel(vlm.dir, { threads: 1, vision: false });
    await expect(noVision.generate({ messages: ask([SMALL], 'x') })).rejects.toThrow(/vision: false/);
    expect((await noVision.generate({ prompt: 'text only', maxTokens: 8 })).raw).toHaveLength(8);
  }, 60_000);
});
