// The Qwen2 forward over the op set against the float64 reference (test/model/reference.ts).
//
// Tolerance: the engine runs in f32 (activations, accumulators) on the same stored weights the
// reference reads in f64. Each matmul sums K ≤ 96 products with relative error ~K·2^-24, RMSNorm
// and softmax add a few ulps, and the error compounds over 2-3 layers: |Δlogit| stays below
// ~1e-4 for these dims (logits of magnitude ~1). We allow abs 1e-3 + rel 1e-3: an order of
// magnitude of headroom over the f32 error, yet far below anything a real bug produces (a wrong
// position, mask, head mapping or bias gives errors of order 1e-1 to 1).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Queue, tensorFromArray, type Tensor } from '../../lib/native/index.js';
import { Qwen2Text } from '../../lib/model/qwen2.js';
import { loadWeights, type LoadedWeights } from '../../lib/weights/load.js';
import { writeQwen2Checkpoint, type TinyQwen2Config, type WrittenCheckpoint } from '../helpers/checkpoint.js';
import { expectClose, expectSameBits } from '../helpers/compare.js';
import { argmax, blockCausal, causal, referenceForward, type RefConfig, type Visible } from './reference.js';

const TOL = { abs: 1e-3, rel: 1e-3 };

interface Fixture { ck: WrittenCheckpoint; cfg: RefConfig; q: Queue; w: LoadedWeights; m: Qwen2Text }

const dirs: string[] = [];
async function fixture(tiny: TinyQwen2Config, dtype: 'f32' | 'bf16' | 'f16', tied: boolean, seed: number): Promise<Fixture> {
  const dir = mkdtempSync(join(tmpdir(), 'dvl-qwen2-'));
  dirs.push(dir);
  const ck = await writeQwen2Checkpoint(dir, tiny, { dtype, tied, shards: 1, layout: 'plain', seed });
  const q = new Queue({ threads: 2, precision: 'exact' });  // float64 references: the exact kernels
  const w = await loadWeights(dir, q);
  const t = w.config.text;
  const cfg: RefConfig = { ...t };
  const m = new Qwen2Text(q, w, t);
  m.allocateCache({ capacity: 128 });
  return { ck, cfg, q, w, m };
}

function close(f: Fixture) { f.m.dispose(); f.w.dispose(); f.q.dispose(); }

afterAll(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });

async function logitsOf(f: Fixture, t: ReturnType<Qwen2Text['forward']>): Promise<Float32Array> {
  const a = await f.q.readF32(t!);
  t!.dispose();
  return a;
}

function refRows(f: Fixture, ids: number[], vis: Visible, rows: number[]): Float64Array[] {
  return referenceForward(f.cfg, f.ck.weights, ids, vis, rows);
}

const configs: [string, TinyQwen2Config, 'f32' | 'bf16' | 'f16', boolean][] = [
  ['f32 untied, GQA 2', { hiddenSize: 48, numLayers: 2, numHeads: 4, numKvHeads: 2, intermediateSize: 80, vocabSize: 97 }, 'f32', false],
  ['bf16 tied, GQA 3', { hiddenSize: 60, numLayers: 3, numHeads: 6, numKvHeads: 2, intermediateSize: 70, vocabSize: 131 }, 'bf16', true],
  ['f16 untied, MHA, odd head dim', { hiddenSize: 42, numLayers: 2, numHeads: 3, numKvHeads: 3, intermediateSize: 33, vocabSize: 61, headDim: 14 }, 'f16', false],
];

describe.each(configs)('Qwen2 forward (%s)', (_name, tiny, dtype, tied) => {
  let f: Fixture;
  beforeAll(async () => { f = await fixture(tiny, dtype, tied, 7 + tiny.hiddenSize); });
  afterAll(() => close(f));

  const rnd = (n: number, V: number, s: number) => Array.from({ length: n }, (_, i) => (i * 37 + s * 11 + 5) % V);

  it('causal prefill: logits at every position match the float64 reference', async () => {
    const V = f.cfg.vocabSize;
    const ids = rnd(13, V, 1);
    const got = await logitsOf(f, f.m.forward({ ids: Int32Array.from(ids), pos0: 0, n: ids.length, mask: 'causal', logitsRows: ids.map((_, i) => i) }));
    const ref = refRows(f, ids, causal, ids.map((_, i) => i));
    ids.forEach((_, r) => expectClose(got.subarray(r * V, (r + 1) * V), ref[r], TOL, `row ${r}`));
  });

  it('block-causal prefill + block step (+ commit) equal a full block-causal recomputation', async () => {
    const V = f.cfg.vocabSize, bs = 4;
    const ids = rnd(15, V, 2);   // blocks [0,4) [4,8) [8,12) [12,15)+1 pad
    const full = refRows(f, ids.slice(0, 12), blockCausal(bs), [8, 9, 10, 11]);
    f.m.forward({ ids: Int32Array.from(ids.slice(0, 8)), pos0: 0, n: 8, mask: 'block', blockSize: bs });
    // A step over block 2 (writes scratch K/V at 8..11), then the same block again (the commit).
    const step = await logitsOf(f, f.m.forward({ ids: Int32Array.from(ids.slice(8, 12)), pos0: 8, n: 4, mask: 'block', blockSize: bs, logitsRows: [0, 1, 2, 3] }));
    for (let r = 0; r < 4; r++) expectClose(step.subarray(r * V, (r + 1) * V), full[r], TOL, `step row ${r}`);
    // Logits for a subset of rows only (the masked ones) are the same rows.
    const sub = await logitsOf(f, f.m.forward({ ids: Int32Array.from(ids.slice(8, 12)), pos0: 8, n: 4, mask: 'block', blockSize: bs, logitsRows: [3, 1] }));
    expectClose(sub.subarray(0, V), full[3], TOL, 'subset row 3');
    expectClose(sub.subarray(V, 2 * V), full[1], TOL, 'subset row 1');
    // Next block after that commit sees block 2's clean K/V.
    const next = [...ids.slice(12, 15), 0];
    const ref3 = refRows(f, [...ids.slice(0, 12), ...next], blockCausal(bs), [12, 13, 14, 15]);
    const got3 = await logitsOf(f, f.m.forward({ ids: Int32Array.from(next), pos0: 12, n: 4, mask: 'block', blockSize: bs, logitsRows: [0, 1, 2, 3] }));
    for (let r = 0; r < 4; r++) expectClose(got3.subarray(r * V, (r + 1) * V), ref3[r], TOL, `next block row ${r}`);
  });

  it('merged commit: one 2-block forward equals commit then step', async () => {
    const V = f.cfg.vocabSize, bs = 4;
    const ids = rnd(16, V, 3);
    f.m.forward({ ids: Int32Array.from(ids.slice(0, 8)), pos0: 0, n: 8, mask: 'block', blockSize: bs });
    // Blocks 2 (clean, committing) and 3 (first step) in one forward; logits of block 3 only.
    const merged = await logitsOf(f, f.m.forward({ ids: Int32Array.from(ids.slice(8, 16)), pos0: 8, n: 8, mask: 'block', blockSize: bs, logitsRows: [4, 5, 6, 7] }));
    const ref = refRows(f, ids, blockCausal(bs), [12, 13, 14, 15]);
    for (let r = 0; r < 4; r++) expectClose(merged.subarray(r * V, (r + 1) * V), ref[r], TOL, `merged row ${r}`);
  });

  it('the last layer runs past the K/V append only for the rows scored: their bits equal an all-rows forward, and a pass without logits stores the same K/V', async () => {
    // decoder.ts gathers the scored rows after the last layer's attention (LayerContext.keep)
    // and stops a pass without logits after its K/V append. Every op is row-wise, so this must
    // be bit-identical, not merely close: a wrong gather, a skipped row or K/V not stored fails.
    const V = f.cfg.vocabSize, bs = 4, n = 11;
    const ids = Int32Array.from(rnd(n, V, 5));
    const next = Int32Array.from(rnd(bs, V, 6));
    const all = Array.from({ length: n }, (_, i) => i);
    const picks = [9, 2, 2, 0];   // out of order, repeated (a batched forward pads by repeating)
    const stepAfter = () => logitsOf(f, f.m.forward({ ids: next, pos0: 12, n: bs, mask: 'block', blockSize: bs, logitsRows: [0, 1, 2, 3] }));
    // Three rounds: eager at first sight, recorded at the second, replayed at the third.
    for (let round = 0; round < 3; round++) {
      const full = await logitsOf(f, f.m.forward({ ids, pos0: 1, n, mask: 'block', blockSize: bs, logitsRows: all }));
      const afterFull = await stepAfter();
      const some = await logitsOf(f, f.m.forward({ ids, pos0: 1, n, mask: 'block', blockSize: bs, logitsRows: picks }));
      picks.forEach((r, i) => expectSameBits(some.subarray(i * V, (i + 1) * V), full.subarray(r * V, (r + 1) * V), `round ${round}: row ${r}`));
      // The same K/V through a pass with no logits: the next step reads identical keys.
      f.m.forward({ ids: Int32Array.from(ids, (x) => (x + 1) % V), pos0: 1, n, mask: 'block', blockSize: bs, logitsRows: [0] })!.dispose();   // other K/V, every layer
      expect(f.m.forward({ ids, pos0: 1, n, mask: 'block', blockSize: bs })).toBeNull();
      const afterKv = await stepAfter();
      expectSameBits(afterKv, afterFull, `round ${round}: step after a K/V-only pass`);
      for (const x of [...full, ...afterKv]) expect(Number.isFinite(x)).toBe(true);
    }
  });

  it('the RoPE table (rows gathered by position) equals rope_cos_sin bit for bit as it grows; a forward keeps its bits across a regrowth', async () => {
    // decoder.ts keeps cos/sin of positions [0, len) and gathers a forward's rows from it; the
    // table doubles (≥ 1024 positions, ≤ the capacity) when a forward reaches past it and the
    // plans, which bind the old table, are dropped.
    const m = new Qwen2Text(f.q, f.w, f.w.config.text);
    m.allocateCache({ capacity: 2500 });
    try {
      const V = f.cfg.vocabSize, ids = Int32Array.from(rnd(6, V, 7));
      const table = (end: number) => (m as unknown as { ropeTable(e: number): { cos: Tensor; sin: Tensor; len: number } }).ropeTable(end);
      const pass = async () => logitsOf(f, m.forward({ ids, pos0: 0, n: 6, mask: 'causal', logitsRows: [5] }));
      const before = [await pass(), await pass(), await pass()];   // eager, recorded, replayed
      expect(m.plans.size).toBeGreaterThan(0);
      for (const [end, len] of [[10, 1024], [1025, 2048], [2049, 2500], [2500, 2500]] as const) {
        const t = table(end);
        expect(t.len).toBe(len);
        const pos = tensorFromArray('i32', [len], Int32Array.from({ length: len }, (_, i) => i));
        const [c, s] = f.q.ropeCosSin(pos, f.cfg.ropeTheta, f.cfg.headDim);
        for (const [a, b] of [[t.cos, c], [t.sin, s]]) {
          expectSameBits(await f.q.readF32(a), await f.q.readF32(b), `table of ${len}`);
        }
        pos.dispose(); c.dispose(); s.dispose();
      }
      expect(m.plans.size).toBe(0);   // dropped with the 1024-row table
      for (let round = 0; round < 3; round++) {
        const again = await pass();
        expectSameBits(again, before[round], `round ${round} after the regrowth`);
      }
      expect(() => table(2501)).toThrow();   // past the capacity: forward() refuses such positions first
    } finally {
      m.dispose();
    }
  });

  it('AR greedy decoding: 64 tokens equal the float64 reference', async () => {
    const V = f.cfg.vocabSize;
    const prompt = rnd(5, V, 4);
    const seq = [...prompt];
    // Engine: causal prefill, then one token per forward against the cache.
    let logits = await logitsOf(f, f.m.forward({ ids: Int32Array.from(prompt), pos0: 0, n: prompt.length, mask: 'causal', logitsRows: [prompt.length - 1] }));
    const got: number[] = [];
    for (let t = 0; t < 64; t++) {
      const next = argmax(logits);
      got.push(next);
      seq.push(next);
      logits = await logitsOf(f, f.m.forward({ ids: Int32Array.of(next), pos0: seq.length - 1, n: 1, mask: 'causal', logitsRows: [0] }));
    }
    // Reference: recompute the whole sequence each step (no cache) in float64.
    const ref: number[] = [];
    const rseq = [...prompt];
    for (let t = 0; t < 64; t++) {
      const [row] = referenceForward(f.cfg, f.ck.weights, rseq, causal, [rseq.length - 1]);
      const next = argmax(row);
      ref.push(next);
      rseq.push(next);
    }
    expect(got).toEqual(ref);
  });

  it('rejects positions beyond the cache and bad logits rows', () => {
    expect(() => f.m.forward({ ids: Int32Array.of(1), pos0: 128, n: 1, mask: 'causal' })).toThrow(/exceed the KV cache/);
    expect(() => f.m.forward({ ids: Int32Array.of(1, 2), pos0: 0, n: 2, mask: 'causal', logitsRows: [2] })).toThrow(/logits row 2/);
  });
});
