// Recorded plans (lib/native/plan.ts, csrc/core/plan.h): a replay must equal eager execution
// bit for bit — same kernels, same inputs, same order — for every pass kind the engine runs,
// at every CPU level this machine has; plans must free what they allocate; a shape never seen
// before records on the fly; bad replays are typed errors, never crashes.
//
// Bit-for-bit comparisons are exact (Uint32 views of the f32 logits): no tolerance applies.
// The arena starts filled with NaN bytes, so an op that read an intermediate before anything
// wrote it (a kernel relying on zero-filled outputs) would show up here as NaN.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel, type Model } from '../../lib/index.js';
import { nativeInfo, nativeMemory, Queue, tensorFromArray, type Isa, type Tensor } from '../../lib/native/index.js';
import { PlanCache, Recorder } from '../../lib/native/plan.js';
import { Qwen2Text, type ForwardArgs } from '../../lib/model/qwen2.js';
import { rowBucket, type TextDecoder } from '../../lib/model/decoder.js';
import { Qwen3Text, type Qwen3TextConfig } from '../../lib/model/qwen3.js';
import { loadWeights, type LoadedWeights } from '../../lib/weights/load.js';
import { writeQwen2Checkpoint, writeQwen3Checkpoint } from '../helpers/checkpoint.js';
import { writeTinyModel, type TinyModel } from '../helpers/tinyModel.js';

const dirs: string[] = [];
afterAll(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

function bits(a: Float32Array): Uint32Array { return new Uint32Array(a.buffer, a.byteOffset, a.length); }

/** Every pass kind of both decoding modes, in an order that exercises the cache like a decode. */
function passes(V: number): ForwardArgs[] {
  const ids = (n: number, s: number) => Int32Array.from({ length: n }, (_, i) => (i * 7 + s) % (V - 1));
  return [
    { ids: ids(16, 1), pos0: 0, n: 16, mask: 'block', blockSize: 8 },                                  // diffusion prefill
    { ids: ids(8, 2), pos0: 16, n: 8, mask: 'block', blockSize: 8, logitsRows: [0, 1, 2, 3, 4, 5, 6, 7] }, // block step, all rows
    { ids: ids(8, 3), pos0: 16, n: 8, mask: 'block', blockSize: 8, logitsRows: [1, 4, 6] },            // later step, 3 masked
    { ids: ids(8, 3), pos0: 16, n: 8, mask: 'block', blockSize: 8, logitsRows: [2, 5, 7] },            // same shape, other rows
    { ids: ids(16, 4), pos0: 16, n: 16, mask: 'block', blockSize: 8, logitsRows: [8, 9, 10, 11, 12, 13, 14, 15] }, // merged commit + step
    { ids: ids(8, 5), pos0: 24, n: 8, mask: 'block', blockSize: 8, logitsRows: [0, 3] },              // same shape, new position
    { ids: ids(8, 5), pos0: 32, n: 8, mask: 'block', blockSize: 8 },                                  // commit alone (no logits)
    { ids: ids(13, 6), pos0: 0, n: 13, mask: 'causal', logitsRows: [12] },                             // AR prefill
    { ids: ids(1, 7), pos0: 13, n: 1, mask: 'causal', logitsRows: [0] },                               // AR steps
    { ids: ids(1, 8), pos0: 14, n: 1, mask: 'causal', logitsRows: [0] },
    { ids: ids(1, 9), pos0: 15, n: 1, mask: 'causal', logitsRows: [0] },
  ];
}

describe.each(nativeInfo().isaLevels as Isa[])('Qwen2 forward at isa %s: replay = eager, bit for bit', (isa) => {
  let q: Queue, w: LoadedWeights, eager: Qwen2Text, planned: Qwen2Text;
  beforeAll(async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dvl-plan-'));
    dirs.push(dir);
    await writeQwen2Checkpoint(dir, { hiddenSize: 60, numLayers: 3, numHeads: 6, numKvHeads: 2, intermediateSize: 70, vocabSize: 131 },
      { dtype: 'bf16', tied: false, shards: 1, layout: 'plain', seed: 5 });
    q = new Queue({ threads: 2, isa });
    w = await loadWeights(dir, q);
    eager = new Qwen2Text(q, w, w.config.text);
    eager.eager = true;
    planned = new Qwen2Text(q, w, w.config.text);
    planned.eager = false;
    for (const m of [eager, planned]) m.allocateCache({ capacity: 64 });
  });
  afterAll(() => { eager.dispose(); planned.dispose(); w.dispose(); q.dispose(); });

  it('every pass kind, three times over (eager at first sight, recorded at the second, then replayed)', async () => {
    for (let round = 0; round < 3; round++) {
      for (const a of passes(131)) {
        const te = eager.forward(a), tp = planned.forward(a);
        expect(tp === null).toBe(te === null);
        if (!te || !tp) continue;
        const [le, lp] = [await q.readF32(te), await q.readF32(tp)];
        te.dispose(); tp.dispose();
        expect(lp.some(Number.isNaN)).toBe(false);
        expect(bits(lp)).toEqual(bits(le));
      }
    }
    const s = planned.plans.stats;
    expect(s.recorded).toBe(8);                       // distinct shapes among the 11 passes
    expect(s.eager).toBe(8);                          // each one's first sighting (PlanCache recordAt 2)
    expect(s.replays).toBe(33 - 8);
  });
});

/**
 * A batched forward's logits: the passes' rows in order, bit for bit those of each pass alone,
 * then only padding rows (forwardBatch rounds the row count up to rowBucket), each a copy of the
 * last real row (one pass alone is never padded).
 */
function expectBatchedRows(got: Float32Array, want: Float32Array, rows: number, passes: number): void {
  if (rows === 0) { expect(got.length).toBe(0); return; }
  const V = want.length / rows;
  expect(got.length / V).toBe(passes > 1 ? rowBucket(rows) : rows);
  expect(bits(got.subarray(0, want.length))).toEqual(bits(want));
  for (let r = rows; r < got.length / V; r++) expect(bits(got.subarray(r * V, (r + 1) * V))).toEqual(bits(want.subarray(want.length - V)));
}

/**
 * Forward t of the batch takes pass t of every sequence still going (sequence i on slot
 * slotOf[i]); each batched forward's logits must be its passes' logits alone, bit for bit.
 */
async function expectBatchedEqualsAlone(q: Queue, batched: TextDecoder, alone: TextDecoder, seqs: ForwardArgs[][], slotOf: number[]): Promise<void> {
  for (let t = 0; t < Math.max(...seqs.map((x) => x.length)); t++) {
    const passes = seqs.map((p, i) => ({ p: p[t], i })).filter((x) => x.p);
    const rows = passes.reduce((n, x) => n + (x.p.logitsRows?.length ?? 0), 0);
    const lb = batched.forwardBatch(passes.map(({ p, i }) => ({ ...p, slot: slotOf[i] })));
    const got = lb ? await q.readF32(lb) : new Float32Array(0);
    const want: number[] = [];
    for (const { p, i } of passes) {
      const la = alone.forwardBatch([{ ...p, slot: slotOf[i] }]);
      if (la) want.push(...await q.readF32(la));
    }
    expect(got.some(Number.isNaN)).toBe(false);
    expectBatchedRows(got, Float32Array.from(want), rows, passes.length);
  }
}

describe.each(nativeInfo().isaLevels as Isa[])('batched forward at isa %s: each sequence = its forward alone, bit for bit', (isa) => {
  it('three sequences in different phases (prefill chunks, block steps, merged commits, AR steps), eager and planned', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dvl-batch-'));
    dirs.push(dir);
    await writeQwen2Checkpoint(dir, { hiddenSize: 60, numLayers: 2, numHeads: 6, numKvHeads: 2, intermediateSize: 70, vocabSize: 131 },
      { dtype: 'bf16', tied: true, shards: 1, layout: 'plain', seed: 17 });
    const q = new Queue({ threads: 2, isa });
    const w = await loadWeights(dir, q);
    const ids = (n: number, s: number) => Int32Array.from({ length: n }, (_, i) => (i * 11 + s) % 130);
    // Per sequence, its passes in order; a forward takes the next pass of each sequence still going.
    const seqs: ForwardArgs[][] = [
      [{ ids: ids(16, 1), pos0: 0, n: 16, mask: 'block', blockSize: 8 }, { ids: ids(8, 2), pos0: 16, n: 8, mask: 'block', blockSize: 8, logitsRows: [0, 1, 2, 3, 4, 5, 6, 7] },
        { ids: ids(8, 3), pos0: 16, n: 8, mask: 'block', blockSize: 8, logitsRows: [2, 6] }, { ids: ids(16, 4), pos0: 16, n: 16, mask: 'block', blockSize: 8, logitsRows: [9, 12] }],
      [{ ids: ids(5, 5), pos0: 0, n: 5, mask: 'causal' }, { ids: ids(6, 6), pos0: 5, n: 6, mask: 'causal', logitsRows: [5] },
        { ids: ids(1, 7), pos0: 11, n: 1, mask: 'causal', logitsRows: [0] }, { ids: ids(1, 8), pos0: 12, n: 1, mask: 'causal', logitsRows: [0] },
        { ids: ids(1, 9), pos0: 13, n: 1, mask: 'causal', logitsRows: [0] }],
      [{ ids: ids(8, 10), pos0: 0, n: 8, mask: 'block', blockSize: 4, logitsRows: [0, 7] }, { ids: ids(8, 11), pos0: 8, n: 8, mask: 'block', blockSize: 4, logitsRows: [1] }],
    ];
    for (const eager of [true, false]) {
      const batched = new Qwen2Text(q, w, w.config.text), alone = new Qwen2Text(q, w, w.config.text);
      for (const m of [batched, alone]) { m.eager = eager; m.allocateCache({ capacity: 48, slots: 3 }); }
      const slotOf = [2, 0, 1];
      await expectBatchedEqualsAlone(q, batched, alone, seqs, slotOf);
      batched.dispose(); alone.dispose();
    }
    w.dispose(); q.dispose();
  });
});

// The Qwen3 family (lib/model/qwen3.ts) through the same shared forward (decoder.ts): its layer
// adds two rms_norm ops per layer on reshaped views, and drops the bias inputs.
describe.each(nativeInfo().isaLevels as Isa[])('Qwen3 forward at isa %s: replay = eager and batched = alone, bit for bit', (isa) => {
  let q: Queue, w: LoadedWeights;
  const make = (opts: { eager: boolean; slots?: number; capacity?: number }) => {
    const m = new Qwen3Text(q, w, w.config.text as Qwen3TextConfig);
    m.eager = opts.eager;
    m.allocateCache({ capacity: opts.capacity ?? 64, slots: opts.slots ?? 1 });
    return m;
  };
  beforeAll(async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dvl-plan-qwen3-'));
    dirs.push(dir);
    await writeQwen3Checkpoint(dir, { hiddenSize: 48, numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 16, intermediateSize: 64, vocabSize: 131 },
      { dtype: 'bf16', tied: false, shards: 1, layout: 'plain', seed: 41 });
    q = new Queue({ threads: 2, isa });
    w = await loadWeights(dir, q);
  });
  afterAll(() => { w.dispose(); q.dispose(); });

  it('every pass kind, three times over (eager at first sight, recorded at the second, then replayed)', async () => {
    const eager = make({ eager: true }), planned = make({ eager: false });
    for (let round = 0; round < 3; round++) {
      for (const a of passes(131)) {
        const te = eager.forward(a), tp = planned.forward(a);
        expect(tp === null).toBe(te === null);
        if (!te || !tp) continue;
        const [le, lp] = [await q.readF32(te), await q.readF32(tp)];
        te.dispose(); tp.dispose();
        expect(lp.some(Number.isNaN)).toBe(false);
        expect(bits(lp)).toEqual(bits(le));
      }
    }
    expect(planned.plans.stats).toMatchObject({ recorded: 8, eager: 8, replays: 33 - 8 });
    eager.dispose(); planned.dispose();
  });

  it('a diffusion, an AR and a block-4 sequence in shared forwards, eager and planned', async () => {
    const all = passes(131);
    const seqs: ForwardArgs[][] = [
      all.slice(0, 5),                                            // prefill, steps, merged commit
      all.slice(7, 11),                                           // AR prefill and steps
      [{ ids: Int32Array.from({ length: 8 }, (_, i) => (i * 5 + 2) % 130), pos0: 0, n: 8, mask: 'block', blockSize: 4, logitsRows: [0, 7] },
        { ids: Int32Array.from({ length: 8 }, (_, i) => (i * 3 + 9) % 130), pos0: 8, n: 8, mask: 'block', blockSize: 4, logitsRows: [5] }],
    ];
    const slotOf = [1, 2, 0];
    for (const eager of [true, false]) {
      const batched = make({ eager, slots: 3, capacity: 48 }), alone = make({ eager, slots: 3, capacity: 48 });
      await expectBatchedEqualsAlone(q, batched, alone, seqs, slotOf);
      batched.dispose(); alone.dispose();
    }
  });
});

describe('plans through the public API', () => {
  let text: TinyModel, vlm: TinyModel;
  beforeAll(async () => {
    text = await writeTinyModel({ diffusion: true, seed: 31 });
    vlm = await writeTinyModel({
      diffusion: true, seed: 32, pixels: { min: 28 * 28 * 4, max: 28 * 28 * 12 },
      vision: { kind: 'qwen2_5_vl', depth: 2, hiddenSize: 32, numHeads: 2, intermediateSize: 48, patchSize: 14, temporalPatchSize: 2, spatialMergeSize: 2, fullAttBlockIndexes: [1] },
    });
    dirs.push(text.dir, vlm.dir);
  });

  const settings = [
    { mode: 'diffusion' as const, steps: 8, remasking: 'static' as const },
    { mode: 'diffusion' as const, steps: 4, remasking: 'dynamic' as const, threshold: 0.3 },
    { mode: 'diffusion' as const, steps: 2, remasking: 'static' as const, engine: { mergeCommit: false } },
    { mode: 'ar' as const },
  ];

  it.each(settings)('generate() ids equal eager: %o', async (opts) => {
    const runs: number[][][] = [];
    for (const eager of [true, false]) {
      const m = await loadModel(text.dir, { threads: 2, eager });
      expect(m.execution.mode).toBe(eager ? 'eager' : 'plan');
      const out: number[][] = [];
      for (const prompt of ['hello there', 'a much longer prompt that straddles a block or two of eight']) {
        out.push((await m.generate({ prompt, maxTokens: 21, blockSize: 8, ...opts })).ids);
      }
      if (!eager) expect(m.execution.plans.recorded).toBeGreaterThan(0);
      m.dispose();
      runs.push(out);
    }
    expect(runs[1]).toEqual(runs[0]);
  });

  it('with an image (features bound into the prefill and the straddling block): logits and ids equal eager', async () => {
    const image = { data: new Uint8Array(60 * 44 * 3).map((_, i) => (i * 37) % 251), width: 60, height: 44 };
    const messages = [{ role: 'user' as const, content: [{ type: 'image' as const, image }, { type: 'text' as const, text: 'what is it' }] }];
    const got: { ids: number[]; logits: Uint32Array }[] = [];
    for (const eager of [true, false]) {
      const m = await loadModel(vlm.dir, { threads: 2, eager });
      const pl = await m.promptLogits({ messages }, { rows: [0, 3, 5] });
      const r = await m.generate({ messages, maxTokens: 12, steps: 4 });
      const r2 = await m.generate({ messages, maxTokens: 12, steps: 4 });   // replays of recorded shapes
      expect(r2.ids).toEqual(r.ids);
      got.push({ ids: r.ids, logits: new Uint32Array(pl.logits.buffer.slice(0)) });
      m.dispose();
    }
    expect(got[1].logits).toEqual(got[0].logits);
    expect(got[1].ids).toEqual(got[0].ids);
  });

  it('dispose and eviction free every native buffer a model and its plans allocated', async () => {
    gc();
    const before = nativeMemory();
    const m = await loadModel(text.dir, { threads: 2 });
    for (const maxTokens of [5, 13, 30]) await m.generate({ prompt: 'count the blocks', maxTokens, blockSize: 8, steps: 4 });
    await m.generate({ prompt: 'count', maxTokens: 9, mode: 'ar' });
    const loaded = nativeMemory();
    expect(loaded.hostBytes).toBeGreaterThan(before.hostBytes);
    expect(m.execution.plans.plans).toBeGreaterThan(2);
    m.dispose();
    gc();
    await new Promise((r) => setTimeout(r, 10));
    gc();
    expect(nativeMemory()).toEqual(before);
  });
});

describe('the Qwen2.5-VL tower through plans', () => {
  it('equals eager bit for bit per grid list; each replay returns its own tensor', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dvl-plan-tower-'));
    dirs.push(dir);
    const vis = { kind: 'qwen2_5_vl' as const, depth: 3, hiddenSize: 32, numHeads: 2, intermediateSize: 48, patchSize: 14, temporalPatchSize: 2, spatialMergeSize: 2, fullAttBlockIndexes: [1] };
    await writeQwen2Checkpoint(dir, { hiddenSize: 48, numLayers: 1, numHeads: 4, numKvHeads: 2, intermediateSize: 40, vocabSize: 50, vision: vis },
      { dtype: 'bf16', tied: true, shards: 1, layout: 'released', seed: 13 });
    const q = new Queue({ threads: 2 });
    const w = await loadWeights(dir, q);
    const { Qwen25VisionTower } = await import('../../lib/model/qwen25vl_vision.js');
    const cfg = w.config.vision as import('../../lib/weights/config.js').QwenVisionConfig;
    const eager = new Qwen25VisionTower(q, w, cfg), planned = new Qwen25VisionTower(q, w, cfg);
    eager.eager = true;
    planned.eager = false;
    const row = 3 * 2 * 14 * 14;
    const image = (grid: number[], seed: number) => ({
      grid, pixelValues: Float32Array.from({ length: grid[0] * grid[1] * grid[2] * row }, (_, i) => Math.sin(i * 0.37 + seed)),
    });
    // Two grid lists, three times each: eager at first sight, recorded at the second, replayed.
    const cases = [[image([1, 4, 6], 1)], [image([1, 6, 2], 2), image([1, 2, 2], 3)], [image([1, 4, 6], 4)], [image([1, 6, 2], 5), image([1, 2, 2], 6)],
      [image([1, 4, 6], 7)], [image([1, 6, 2], 8), image([1, 2, 2], 9)]];
    const kept: { t: import('../../lib/native/index.js').Tensor; want: Uint32Array }[] = [];
    for (const c of cases) {
      const te = eager.encode(c), tp = planned.encode(c);
      const [fe, fp] = [await q.readF32(te), await q.readF32(tp)];
      expect(fp.some(Number.isNaN)).toBe(false);
      expect(bits(fp)).toEqual(bits(fe));
      te.dispose();
      kept.push({ t: tp, want: bits(fp).slice() });
    }
    expect(planned.plans.stats).toMatchObject({ recorded: 2, eager: 2, replays: 4 });
    // Calls 5 and 6 reused the plans of 3 and 4: the earlier results are untouched.
    for (const k of kept) { expect(bits(await q.readF32(k.t))).toEqual(k.want); k.t.dispose(); }
    eager.dispose(); planned.dispose(); w.dispose(); q.dispose();
  });
});

describe('SigLIP crop passes through plans', () => {
  it('equal eager bit for bit for passes of 2 and 1 crops; the plan is reused by the next image', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dvl-plan-siglip-'));
    dirs.push(dir);
    await writeQwen2Checkpoint(dir, { hiddenSize: 20, numLayers: 1, numHeads: 1, numKvHeads: 1, intermediateSize: 24, vocabSize: 50,
      vision: { kind: 'siglip', hiddenSize: 24, numLayers: 2, numHeads: 2, intermediateSize: 19, patchSize: 14, imageSize: 384 } },
    { dtype: 'bf16', tied: true, shards: 1, layout: 'siglip', seed: 23, diffusion: { blockSize: 4, maskTokenId: 49 } });
    const q = new Queue({ threads: 2 });
    const w = await loadWeights(dir, q);
    const cfg = w.config.vision as import('../../lib/weights/config.js').SiglipVisionConfig;
    const { encodeSiglipCrops } = await import('../../lib/model/siglip.js');
    const plans = new PlanCache(4);
    for (const seed of [1, 2, 3]) {   // eager at first sight, recorded at the second, replayed
      const n = 3, S = cfg.imageSize;
      const pixels = Float32Array.from({ length: n * 3 * S * S }, (_, i) => Math.sin(i * 0.011 + seed));
      const eager = encodeSiglipCrops(q, w, cfg, pixels, n, { cropsPerPass: 2 });
      const planned = encodeSiglipCrops(q, w, cfg, pixels, n, { cropsPerPass: 2, plans });
      const [a, b] = [await q.readF32(eager), await q.readF32(planned)];
      expect(b.some(Number.isNaN)).toBe(false);
      expect(bits(b)).toEqual(bits(a));
      eager.dispose(); planned.dispose();
    }
    expect(plans.stats).toMatchObject({ recorded: 2, eager: 2, replays: 4 });
    plans.clear(); w.dispose(); q.dispose();
  });
});

describe('plan cache and replay errors', () => {
  let q: Queue, w: LoadedWeights, m: Qwen2Text;
  beforeAll(async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dvl-plan-'));
    dirs.push(dir);
    await writeQwen2Checkpoint(dir, { hiddenSize: 32, numLayers: 2, numHeads: 4, numKvHeads: 2, intermediateSize: 40, vocabSize: 50 },
      { dtype: 'f32', tied: true, shards: 1, layout: 'plain', seed: 9 });
    q = new Queue({ threads: 1 });
    w = await loadWeights(dir, q);
    m = new Qwen2Text(q, w, w.config.text);
    m.eager = false;
    m.allocateCache({ capacity: 40 });
  });
  afterAll(() => { m.dispose(); w.dispose(); q.dispose(); });

  it('evicts the least recently used plan past its count and frees it', async () => {
    m.plans = new PlanCache(2, undefined, 1);   // record at first sight: this test is about eviction
    gc();
    const ids = (n: number) => new Int32Array(n).fill(3);
    m.forward({ ids: ids(2), pos0: 0, n: 2, mask: 'causal', logitsRows: [1] })!.dispose();
    m.forward({ ids: ids(1), pos0: 0, n: 1, mask: 'causal', logitsRows: [0] })!.dispose();
    await q.sync();
    const two = nativeMemory();
    m.forward({ ids: ids(3), pos0: 0, n: 3, mask: 'causal', logitsRows: [2] })!.dispose();
    await q.sync();
    expect(m.plans.size).toBe(2);
    expect(m.plans.stats.evicted).toBe(1);
    gc();
    await new Promise((r) => setTimeout(r, 10));
    gc();
    // The n = 2 plan's arena and input tensors went; the n = 3 plan's (as many) came.
    expect(nativeMemory().hostStorages).toBe(two.hostStorages);
  });

  it('a plan packs its intermediates into an arena smaller than their sum', () => {
    const p = [...(m.plans as unknown as { plans: Map<string, { info: { arenaBytes: number; intermediateBytes: number } }> }).plans.values()][0];
    expect(p.info.arenaBytes).toBeGreaterThan(0);
    expect(p.info.arenaBytes).toBeLessThan(p.info.intermediateBytes / 3);
  });

  it('rejects replays with wrong values, and placeholders used eagerly, with typed errors', () => {
    const rec = new Recorder(q);
    const x = rec.input('x', 'f32', [2, 32], new Float32Array(64));
    const pos0 = rec.param('pos0', 0);
    const [y] = rec.op('rms_norm', [x, w.get('model.norm.weight')], { eps: 1e-6 });
    expect(() => q.rmsNorm(y, w.get('model.norm.weight'), 1e-6)).toThrow(/placeholder of a recorded plan/);
    const plan = rec.finish([y]);
    expect(plan.info!.params).toBe(1);
    expect(() => plan.run(q, { x: new Float32Array(63), pos0: 1 })).toThrow(/needs 256 bytes/);
    expect(() => plan.run(q, { x: new Float32Array(64) })).toThrow(/no number for parameter 'pos0'/);
    expect(() => plan.run(q, { x: tensorFromArray('f32', [2, 32], new Float32Array(64)), pos0: 0 })).toThrow(/needs 256 bytes/);
    plan.dispose();
    expect(() => q.replay(plan.native, [new Float32Array(64)], [0])).toThrow(/disposed/);
    void pos0;
  });

  it('a patched cache position outside the cache fails at the replay call, naming the op', () => {
    const a: ForwardArgs = { ids: Int32Array.of(1, 2), pos0: 0, n: 2, mask: 'causal', logitsRows: [1] };
    m.forward(a)!.dispose();
    const cache = m.plans as unknown as { plans: Map<string, import('../../lib/native/plan.js').RecordedPlan> };
    const plan = cache.plans.get([...cache.plans.keys()].find((k) => k.startsWith('2:1:'))!)!;
    const step = { ids: Int32Array.of(1, 2), positions: Int32Array.of(39, 40), rows: Int32Array.of(1) };
    // The first op that takes the cache positions: the fused q|k|v split that stores K and V
    // (lib/model/qwen2.ts, CPU queues), else kv_cache_append_batch.
    expect(() => plan.run(q, { ...step, seqs: [0, 2, 0, 39, 0, 0] })).toThrow(/(qkv_rope_split|kv_cache_append_batch): sequence 0: positions 39..41 exceed the cache capacity 40/);
    expect(() => plan.run(q, { ...step, seqs: [0, 2, 1, 0, 0, 0] })).toThrow(/slot 1 of 1/);
    expect(() => plan.run(q, { ...step, seqs: [0, 2, 0, 0] })).toThrow(/parameter 'seqs' needs 6 numbers/);
  });
});

let _unused: Model | undefined;
void _unused;

describe('a plan\'s attention splits over the pool by the keys it has at each replay', () => {
  it('short: on the queue thread, no pool wake; long: split, and the answers equal a one-thread queue\'s', async () => {
    // One attention op whose kvLen and qPos0 are patched per replay, as a decode step's are.
    // 2·rows·heads·hd·keys = 2·8·4·64·keys: 100 keys ≈ 0.4 M multiply-adds (under plan.cpp's
    // 2^20: one thread), 3000 keys ≈ 12 M (split). Decided at every replay, not at record time.
    const r = (n: number, s: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37 + s));
    const run = async (threads: number) => {
      const q = new Queue({ threads });
      const qt = tensorFromArray('f32', [8, 4, 64], r(8 * 4 * 64, 1));
      const k = tensorFromArray('f32', [2, 3000, 64], r(2 * 3000 * 64, 2)), v = tensorFromArray('f32', [2, 3000, 64], r(2 * 3000 * 64, 3));
      const rec = new Recorder(q);
      const out = rec.attention(rec.bind('q', qt), k, v, { kvLen: rec.param('kvLen', 100), qPos0: rec.param('qPos0', 92), mask: 'causal' });
      const plan = rec.finish([out], { fresh: true });
      const res: Float32Array[] = [];
      const s0 = q.stats();
      res.push(await q.readF32(plan.run(q, { q: qt, kvLen: 100, qPos0: 92 })[0]));
      const s1 = q.stats();
      res.push(await q.readF32(plan.run(q, { q: qt, kvLen: 3000, qPos0: 2992 })[0]));
      const s2 = q.stats();
      plan.dispose();
      q.dispose();
      return { res, short: { forks: s1.forks - s0.forks, wakes: s1.poolWakes - s0.poolWakes }, long: { forks: s2.forks - s1.forks, wakes: s2.poolWakes - s1.poolWakes } };
    };
    const two = await run(2), one = await run(1);
    expect(two.short).toEqual({ forks: 0, wakes: 0 });
    expect(two.long.forks).toBeGreaterThan(0);
    expect(two.long.wakes).toBe(1);
    expect(two.res[0]).toEqual(one.res[0]);
    expect(two.res[1]).toEqual(one.res[1]);
    expect(two.res[0].every(Number.isFinite) && two.res[1].every(Number.isFinite)).toBe(true);
  });
});

describe('a replay parses the patched attributes once for ops that share them', () => {
  // plan.cpp: patched ops with the same op, recorded attributes, patches and input dtypes and
  // shapes take one parse per replay (every layer's attention and cache appends); any
  // difference in those keeps a parse of its own, with its own checks.
  it('shares between identical ops, and still checks an op whose input differs in shape', async () => {
    const q = new Queue({ threads: 1 });
    const r = (n: number, s: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37 + s));
    const k = tensorFromArray('f32', [2, 40, 16], r(2 * 40 * 16, 2)), v = tensorFromArray('f32', [2, 40, 16], r(2 * 40 * 16, 3));
    const q6 = tensorFromArray('f32', [6, 4, 16], r(6 * 4 * 16, 1)), q8 = tensorFromArray('f32', [8, 4, 16], r(8 * 4 * 16, 4));
    const rec = new Recorder(q);
    const kv = { kvLen: rec.param('kvLen', 8), qPos0: rec.param('qPos0', 0), mask: 'causal' as const };
    const a = rec.attention(rec.bind('a', q6), k, v, kv);
    const b = rec.attention(rec.bind('b', q6), k, v, kv);   // same shapes and attributes as a: shares a's parse
    const c = rec.attention(rec.bind('c', q8), k, v, kv);   // 8 rows: its own parse and checks
    const plan = rec.finish([a, b, c], { fresh: true });
    const eager = async (qt: Tensor, kvLen: number, qPos0: number) => q.readF32(q.attention(qt, k, v, { kvLen, qPos0, mask: 'causal' }));
    for (const [kvLen, qPos0] of [[8, 0], [30, 22], [40, 32]]) {
      const [ra, rb, rc] = await q.readMany(plan.run(q, { a: q6, b: q6, c: q8, kvLen, qPos0 })) as Float32Array[];
      expect(ra).toEqual(await eager(q6, kvLen, qPos0));
      expect(rb).toEqual(ra);
      expect(rc).toEqual(await eager(q8, kvLen, qPos0));
    }
    // kvLen 36 with qPos0 30 fits 6 rows (30..35) but not 8: a and b accept it, c must refuse it
    // (were c to take a's parse, nothing would check its rows against the cache).
    await q.readF32(q.attention(q6, k, v, { kvLen: 36, qPos0: 30, mask: 'causal' }));
    expect(() => q.attention(q8, k, v, { kvLen: 36, qPos0: 30, mask: 'causal' })).toThrow();
    expect(() => plan.run(q, { a: q6, b: q6, c: q8, kvLen: 36, qPos0: 30 })).toThrow();
    plan.dispose();
    q.dispose();
  });
});

describe('row segments: a chain of row-local ops between attentions runs in one fork (plan.cpp find_segments)', () => {
  // One block's chain as a small model has it (hidden 128, MLP 384: products of 2-6 M
  // multiply-adds at ≥ 64 rows, weights well under 512 KiB), bf16 weights under 'fast' and f32
  // ones, then a product whose weight the chain itself computes (a whole input made inside a
  // segment must end it).
  const H = 128, I = 384;
  const rnd = (n: number, seed: number, s = 0.2) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.731 + seed * 1.7) * s);
  const toBf16 = (a: Float32Array) => { const u = new Uint32Array(a.buffer.slice(0)); return Uint16Array.from(u, (x) => (x + 0x7fff + ((x >> 16) & 1)) >>> 16); };
  function weights(dtype: 'f32' | 'bf16') {
    const t = (name: string, r: number, c: number, seed: number) => ({ [name]: dtype === 'f32' ? tensorFromArray('f32', [r, c], rnd(r * c, seed)) : tensorFromArray('bf16', [r, c], toBf16(rnd(r * c, seed))) });
    return {
      ...t('o', H, H, 1), ...t('gate', I, H, 2), ...t('up', I, H, 3), ...t('down', H, I, 4), ...t('q', H, H, 5),
      bo: tensorFromArray('f32', [H], rnd(H, 6)), g1: tensorFromArray('f32', [H], rnd(H, 7, 1)), g2: tensorFromArray('f32', [H], rnd(H, 8, 1)),
    } as Record<string, Tensor>;
  }
  // o: a Queue (eager) or a Recorder; x [n, H] and a [n, H] (the attention's output stand-in).
  function chain(o: Queue | Recorder, W: Record<string, Tensor>, x: Tensor, a: Tensor, n: number): Tensor[] {
    const op = (name: string, ins: Tensor[], attrs: Record<string, unknown> = {}) => (o.op(name, ins, attrs as never) as Tensor[])[0];
    const h = op('add', [x, op('matmul', [a, W.o, W.bo])]);
    const z = op('rms_norm', [h, W.g1], { eps: 1e-6 });
    const act = op('swiglu', [op('matmul', [z, W.gate]), op('matmul', [z, W.up])]);
    const h2 = op('add', [h, op('matmul', [act, W.down])]);
    const q = op('matmul', [op('rms_norm', [h2, W.g2], { eps: 1e-6 }), W.q]);
    // A whole input made inside (n = H only): h2 + h2 as the weight of a product of q.
    const out = n === H ? op('matmul', [q, op('add', [h2, h2])]) : op('gelu', [q]);
    return [h2, out];
  }

  async function check(dtype: 'bf16' | 'f32', n: number, isa?: Isa): Promise<void> {
    const got: Uint32Array[][] = [];
    let segments = -1;
    for (const threads of [2, 1]) {
      const q = new Queue({ threads, isa });
      const W = weights(dtype);
      const xs = rnd(n * H, n), as = rnd(n * H, n + 1, 1);
      const x = tensorFromArray('f32', [n, H], xs), a = tensorFromArray('f32', [n, H], as);
      const eager = chain(q, W, x, a, n);
      const rec = new Recorder(q);
      const rx = rec.input('x', 'f32', [n, H], xs), ra = rec.input('a', 'f32', [n, H], as);
      const plan = rec.finish(chain(rec, W, rx, ra, n));
      if (threads === 2) segments = plan.info!.segments;
      for (let rep = 0; rep < 2; rep++) {
        const outs = plan.run(q, { x: xs, a: as });
        const e = await Promise.all(eager.map((t) => q.readF32(t)));
        const p = await Promise.all(outs.map((t) => q.readF32(t)));
        for (const v of p) expect(v.some(Number.isNaN), `${dtype} n=${n}`).toBe(false);
        expect(p.map(bits), `${dtype} n=${n} threads=${threads} replay ${rep}`).toEqual(e.map(bits));
        if (rep === 1) got.push(p.map((v) => bits(v).slice()));
      }
      plan.dispose();
      for (const t of [...eager, x, a, ...Object.values(W)]) t.dispose();
      q.dispose();
    }
    expect(got[0], `${dtype} n=${n}: two threads equal one`).toEqual(got[1]);
    // 40 rows: below kSegmentMinRows. From 64 rows the block's chain is one segment (with
    // gelu); at 128 the product reading the weight made inside it ends it.
    expect(segments, `${dtype} n=${n}`).toBe(n < 64 ? 0 : 1);
  }

  it('plans with segments equal eager and a one-thread queue bit for bit, odd row counts included; short chains form none', async () => {
    for (const dtype of ['bf16', 'f32'] as const) for (const n of [40, 64, 100, 128, 131, 252]) await check(dtype, n);
  }, 120_000);

  it.each(nativeInfo().isaLevels)('the same at isa %s (bf16, 100 and 131 rows)', async (isa) => {
    for (const n of [100, 131]) await check('bf16', n, isa);
  }, 60_000);
});
