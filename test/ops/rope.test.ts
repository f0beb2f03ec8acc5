// rope_cos_sin (the f32 rotary table, docs §2.4) and rope (rotate-half application) against
// float64 references (test/ops/reference.ts) at every ISA level.
import { describe, expect, it } from 'vitest';
import { Queue, nativeInfo, tensorFromArray, type Isa } from '../../lib/native/index.js';
import { DTypeError, DisposedError, OutOfRangeError, ShapeError } from '../../lib/errors.js';
import { expectClose, expectSameBits } from '../helpers/compare.js';
import { normal, rng, uniform } from '../helpers/random.js';
import { ropeCosSinRef, ropeRef } from './reference.js';

// cos/sin: both sides round inv_freq and the angle to f32 identically (the reference mirrors the
// torch float32 steps), then take a double cos/sin of the same f32 angle and round once, so they
// agree to the last bit but for a libm last-bit difference at a rounding tie: abs 6e-8 (1 ulp
// of values in [0.5, 1)).
const TABLE_TOL = { abs: 6e-8 };
// rope: two f32 products and a sum; with |x| ≲ 4 each product rounds by ≤ ulp(4)/2 = 2.4e-7 and
// the sum may cancel to near 0 → abs 1e-6 (≈ 2 roundings of the largest terms), rel 2.5e-7.
const ROPE_TOL = { abs: 1e-6, rel: 2.5e-7 };

describe.each(nativeInfo().isaLevels)('rope at isa %s', (isa) => {
  it('rope_cos_sin reproduces the float32 table for text (θ 1e6, 128) and vision (θ 1e4, 40) dims', async () => {
    const q = new Queue({ isa, threads: 2 });
    const pos = new Int32Array([0, 1, 2, 7, 33, 127, 1000, 4095, 32767, 131071]);
    for (const [theta, dim] of [[1e6, 128], [1e4, 40], [1e4, 64], [1e6, 2], [10000, 6]]) {
      const [c, s] = q.ropeCosSin(tensorFromArray('i32', [pos.length], pos), theta, dim);
      expect(c.shape).toEqual([pos.length, dim]);
      const ref = ropeCosSinRef(pos, theta, dim);
      expectClose(await q.readF32(c), ref.cos, TABLE_TOL, `cos θ=${theta} dim=${dim}`);
      expectClose(await q.readF32(s), ref.sin, TABLE_TOL, `sin θ=${theta} dim=${dim}`);
    }
    // Position 0: cos = 1, sin = 0 exactly.
    const [c0, s0] = q.ropeCosSin(tensorFromArray('i32', [1], new Int32Array([0])), 1e6, 8);
    expect(Array.from(await q.readF32(c0))).toEqual(new Array(8).fill(1));
    expect(Array.from(await q.readF32(s0))).toEqual(new Array(8).fill(0));
    q.dispose();
  });

  it('rope applies x·cos + rotate_half(x)·sin on odd shapes', async () => {
    const q = new Queue({ isa, threads: 2 });
    const r = rng(6);
    for (const [T, nh, hd] of [[1, 1, 2], [3, 2, 6], [7, 7, 64], [33, 3, 80], [5, 14, 128], [127, 1, 64]]) {
      const pos = Int32Array.from({ length: T }, (_, i) => 3 * i + 11);
      const [c, s] = q.ropeCosSin(tensorFromArray('i32', [T], pos), 1e6, hd);
      const cos = await q.readF32(c), sin = await q.readF32(s);
      const x = normal(r, T * nh * hd);
      const y = q.rope(tensorFromArray('f32', [T, nh, hd], x), c, s);
      expect(y.shape).toEqual([T, nh, hd]);
      expectClose(await q.readF32(y), ropeRef(x, cos, sin, T, nh, hd), ROPE_TOL, `rope ${T}x${nh}x${hd}`);
    }
    q.dispose();
  });

  it('rope propagates NaN only within its head row', async () => {
    const q = new Queue({ isa, threads: 2 });
    const T = 2, nh = 2, hd = 4;
    const [c, s] = q.ropeCosSin(tensorFromArray('i32', [T], new Int32Array([5, 6])), 1e4, hd);
    const x = new Float32Array(T * nh * hd).fill(1);
    x[1] = NaN;  // head 0 of token 0, d = 1: reaches y[1] and, rotated, y[3]
    const y = await q.readF32(q.rope(tensorFromArray('f32', [T, nh, hd], x), c, s));
    expect([y[0], y[1], y[2], y[3]].map(Number.isNaN)).toEqual([false, true, false, true]);
    expect(y.slice(4).every(Number.isFinite)).toBe(true);
    q.dispose();
  });

  it('throws typed errors for bad calls', () => {
    const q = new Queue({ isa, threads: 1 });
    const pos = tensorFromArray('i32', [3], new Int32Array([0, 1, 2]));
    expect(() => q.ropeCosSin(pos, 1e4, 7)).toThrow(OutOfRangeError);
    expect(() => q.ropeCosSin(pos, 0, 8)).toThrow(OutOfRangeError);
    expect(() => q.ropeCosSin(tensorFromArray('f32', [3], new Float32Array(3)), 1e4, 8)).toThrow(DTypeError);
    const [c, s] = q.ropeCosSin(pos, 1e4, 8);
    expect(() => q.rope(tensorFromArray('f32', [3, 8], new Float32Array(24)), c, s)).toThrow(ShapeError);
    expect(() => q.rope(tensorFromArray('f32', [3, 2, 6], new Float32Array(36)), c, s)).toThrow(/rope: cos must be \[T, hd\] = \[3, 6\]/);
    expect(() => q.rope(tensorFromArray('f32', [2, 2, 8], new Float32Array(32)), c, s)).toThrow(ShapeError);
    c.dispose();
    expect(() => q.rope(tensorFromArray('f32', [3, 2, 8], new Float32Array(48)), c, s)).toThrow(DisposedError);
    q.dispose();
  });
});

describe('rope: the same bits at every level', () => {
  // kernels_generic.inc rope_rows keeps contraction out (each product rounded, then the sum),
  // steps eight and four lanes along the half head then single values, and walks (position,
  // head) without a division: every level, width and thread split (pieces that start inside a
  // position's heads) must give the scalar level's bits, NaN and Inf where they fall.
  it('equals the scalar level bit for bit on odd head dims, many heads and split rows', async () => {
    const r = rng(12);
    const shapes: [number, number, number][] = [[1, 1, 2], [7, 3, 6], [5, 4, 24], [9, 3, 18], [3, 2, 34], [4, 14, 64], [2, 2, 128], [11, 5, 30]];
    const inputs = shapes.map(([T, nh, hd]) => {
      const x = normal(r, T * nh * hd, 4), c = uniform(r, T * hd, -1, 1), s = uniform(r, T * hd, -1, 1);
      if (T > 3) { x[hd + 3] = NaN; c[2 * hd - 1] = Infinity; }
      return { T, nh, hd, x, c, s };
    });
    const run = async (isa: Isa, threads: number) => {
      const q = new Queue({ isa, threads });
      const out: Float32Array[] = [];
      for (const a of inputs) {
        out.push(await q.readF32(q.rope(tensorFromArray('f32', [a.T, a.nh, a.hd], a.x), tensorFromArray('f32', [a.T, a.hd], a.c), tensorFromArray('f32', [a.T, a.hd], a.s))));
      }
      q.dispose();
      return out;
    };
    const ref = await run('scalar', 1);
    // The scalar level is the formula with every operation rounded to f32 (Math.fround), exactly.
    inputs.forEach(({ T, nh, hd, x, c, s }, i) => {
      const half = hd / 2, want = new Float32Array(T * nh * hd), f = Math.fround;
      for (let row = 0; row < T * nh; row++) {
        const t = Math.floor(row / nh), o = row * hd, p = t * hd;
        for (let d = 0; d < half; d++) {
          want[o + d] = f(f(x[o + d] * c[p + d]) - f(x[o + d + half] * s[p + d]));
          want[o + d + half] = f(f(x[o + d + half] * c[p + d + half]) + f(x[o + d] * s[p + d + half]));
        }
      }
      expectSameBits(ref[i], want, `scalar = rounded formula ${shapes[i].join('x')}`);
    });
    for (const isa of nativeInfo().isaLevels) {
      for (const threads of [1, 3]) {
        (await run(isa, threads)).forEach((y, i) => expectSameBits(y, ref[i], `${isa} threads ${threads} ${shapes[i].join('x')}`));
      }
    }
  });
});

describe('qkv_rope_split = slice_cols + rope + kv_cache_append, bit for bit', () => {
  // The vision tower's one op per block on CPU queues (lib/model/qwen25vl_vision.ts): Q | K | V
  // split, RoPE on Q and K (rope_rows' arithmetic), K and V laid out head-major.
  it.each(nativeInfo().isaLevels)('at isa %s, odd row counts and head dims, one and three threads', async (isa) => {
    const r = rng(31);
    for (const threads of [1, 3]) {
      const q = new Queue({ isa, threads });
      for (const [R, nh, hd] of [[1, 1, 2], [7, 3, 6], [17, 4, 24], [9, 2, 34], [5, 16, 80]] as const) {
        const C = nh * hd;
        const x = normal(r, R * 3 * C, 3), c = uniform(r, R * hd, -1, 1), s = uniform(r, R * hd, -1, 1);
        x[5] = NaN;
        const qkv = tensorFromArray('f32', [R, 3 * C], x), cos = tensorFromArray('f32', [R, hd], c), sin = tensorFromArray('f32', [R, hd], s);
        const [qf, kf, vf] = q.qkvRopeSplit(qkv, cos, sin, nh);
        expect([qf.shape, kf.shape, vf.shape]).toEqual([[R, nh, hd], [nh, R, hd], [nh, R, hd]]);
        const qw = q.rope(q.reshape(q.sliceCols(qkv, 0, C), [R, nh, hd]), cos, sin);
        const kc = q.empty('f32', [nh, R, hd]), vc = q.empty('f32', [nh, R, hd]);
        q.kvCacheAppend(kc, q.rope(q.reshape(q.sliceCols(qkv, C, C), [R, nh, hd]), cos, sin), 0);
        q.kvCacheAppend(vc, q.reshape(q.sliceCols(qkv, 2 * C, C), [R, nh, hd]), 0);
        const [a, b, e, f, g, h] = await q.readMany([qf, qw, kf, kc, vf, vc]) as Float32Array[];
        expectSameBits(a, b, `q ${R}x${nh}x${hd}`);
        expectSameBits(e, f, `k ${R}x${nh}x${hd}`);
        expectSameBits(g, h, `v ${R}x${nh}x${hd}`);
      }
      q.dispose();
    }
  });

  // The text decoder's fused q|k|v product (lib/model/qwen2.ts): GQA (kvHeads < heads) and K, V
  // as rows [R, kvHeads, hd], the bits of slice_cols + rope + reshape.
  it.each(nativeInfo().isaLevels)('kvHeads and kvRows at isa %s: the text layout, GQA', async (isa) => {
    const r = rng(37);
    for (const threads of [1, 3]) {
      const q = new Queue({ isa, threads });
      for (const [R, nh, nkv, hd] of [[1, 2, 1, 2], [16, 4, 2, 32], [13, 6, 2, 10], [9, 14, 2, 64], [3, 3, 3, 6]] as const) {
        const Cq = nh * hd, Ckv = nkv * hd;
        const x = normal(r, R * (Cq + 2 * Ckv), 3), c = uniform(r, R * hd, -1, 1), s = uniform(r, R * hd, -1, 1);
        x[Cq + 1] = NaN;
        const qkv = tensorFromArray('f32', [R, Cq + 2 * Ckv], x), cos = tensorFromArray('f32', [R, hd], c), sin = tensorFromArray('f32', [R, hd], s);
        const [qf, kf, vf] = q.qkvRopeSplit(qkv, cos, sin, nh, { kvHeads: nkv, kvRows: true });
        expect([qf.shape, kf.shape, vf.shape]).toEqual([[R, nh, hd], [R, nkv, hd], [R, nkv, hd]]);
        const qw = q.rope(q.reshape(q.sliceCols(qkv, 0, Cq), [R, nh, hd]), cos, sin);
        const kw = q.rope(q.reshape(q.sliceCols(qkv, Cq, Ckv), [R, nkv, hd]), cos, sin);
        const vw = q.sliceCols(qkv, Cq + Ckv, Ckv);
        const [a, b, e, f, g, h] = await q.readMany([qf, qw, kf, kw, vf, vw]) as Float32Array[];
        const at = `${isa} ${R}x${nh}/${nkv}x${hd} threads ${threads}`;
        expectSameBits(a, b, `q ${at}`);
        expectSameBits(e, f, `k ${at}`);
        expectSameBits(g, h, `v ${at}`);
        // Head-major with kvHeads: each kv head's rows in order.
        const [, kh] = q.qkvRopeSplit(qkv, cos, sin, nh, { kvHeads: nkv });
        expect(kh.shape).toEqual([nkv, R, hd]);
        const khm = await q.readF32(kh);
        for (let t = 0; t < R; t++) for (let g2 = 0; g2 < nkv; g2++) expectSameBits(khm.subarray((g2 * R + t) * hd, (g2 * R + t + 1) * hd), f.subarray((t * nkv + g2) * hd, (t * nkv + g2 + 1) * hd), `k head-major ${at}`);
      }
      q.dispose();
    }
  });

  // With the caches (the text decoder's fused path): k and v stored as kv_cache_append_batch
  // stores them, two sequences in two slots, for every cache dtype.
  it.each(nativeInfo().isaLevels)('with caches at isa %s: q, and K/V in the caches = split + kv_cache_append_batch', async (isa) => {
    const r = rng(41);
    const q = new Queue({ isa, threads: 2 });
    const [R, nh, nkv, hd, S, cap] = [11, 4, 2, 16, 3, 20];
    const Cq = nh * hd, Ckv = nkv * hd;
    const x = normal(r, R * (Cq + 2 * Ckv), 2), c = uniform(r, R * hd, -1, 1), s = uniform(r, R * hd, -1, 1);
    const qkv = tensorFromArray('f32', [R, Cq + 2 * Ckv], x), cos = tensorFromArray('f32', [R, hd], c), sin = tensorFromArray('f32', [R, hd], s);
    const seqs = [0, 8, 2, 4, 1, 8, 8, 11, 0, 17, 0, 0];   // rows 0-7 → slot 2 at 4.., rows 8-10 → slot 0 at 17..
    for (const dtype of ['f32', 'bf16', 'f16'] as const) {
      const everySlot = Array.from({ length: S }, (_, i) => [i * cap, (i + 1) * cap, i, 0, 0, 0]).flat();
      const fill = () => { const t = q.empty(dtype, [S, nkv, cap, hd]); q.kvCacheAppendBatch(t, tensorFromArray('f32', [S * cap, nkv, hd], normal(r, S * cap * nkv * hd)), everySlot); return t; };
      // Two identical cache pairs (their prior contents must survive where nothing is written).
      const base = [fill(), fill()];
      const [kb, vb] = await q.readMany(base);
      const copy = (b: ArrayBufferView) => { const t = q.empty(dtype, [S, nkv, cap, hd]); q.write(t, b); return t; };
      const kA = copy(kb), vA = copy(vb), kB = copy(kb), vB = copy(vb);
      const qf = q.qkvRopeSplitStore(qkv, cos, sin, nh, nkv, kA, vA, seqs);
      expect(qf.shape).toEqual([R, nh, hd]);
      const [qw, kw, vw] = q.qkvRopeSplit(qkv, cos, sin, nh, { kvHeads: nkv, kvRows: true });
      q.kvCacheAppendBatch(kB, kw, seqs);
      q.kvCacheAppendBatch(vB, vw, seqs);
      const [a, b, e, f, g, h] = await q.readMany([qf, qw, kA, kB, vA, vB]);
      expectSameBits(a as Float32Array, b as Float32Array, `q ${isa} ${dtype}`);
      expect(Array.from(e), `k cache ${isa} ${dtype}`).toEqual(Array.from(f));
      expect(Array.from(g), `v cache ${isa} ${dtype}`).toEqual(Array.from(h));
    }
    // Typed errors: one cache only, mismatched caches, positions past the capacity.
    const kc = q.empty('bf16', [S, nkv, cap, hd]), vc = q.empty('bf16', [S, nkv, cap, hd]);
    expect(() => q.op('qkv_rope_split', [qkv, cos, sin, kc], { heads: nh, kvHeads: nkv, kvRows: 1, seqs })).toThrow(/caches come together/);
    expect(() => q.qkvRopeSplitStore(qkv, cos, sin, nh, nkv, kc, q.empty('f32', [S, nkv, cap, hd]), seqs)).toThrow(/same dtype and shape/);
    expect(() => q.qkvRopeSplitStore(qkv, cos, sin, nh, nkv, kc, vc, [0, 11, 1, 15, 0, 0])).toThrow(/positions 15..26 exceed the cache capacity 20/);
    expect(() => q.qkvRopeSplitStore(qkv, cos, sin, nh, 1, kc, vc, seqs)).toThrow(ShapeError);
    q.dispose();
  });

  it('throws typed errors for bad shapes', () => {
    const q = new Queue({ threads: 1 });
    const t = (shape: number[]) => tensorFromArray('f32', shape, new Float32Array(shape.reduce((a, b) => a * b, 1)));
    expect(() => q.qkvRopeSplit(t([4, 5 * 8]), t([4, 8]), t([4, 8]), 2, { kvHeads: 2 })).toThrow(/\(heads \+ 2 · kvHeads\) · hd/);   // 40 ≠ 6·hd
    expect(() => q.qkvRopeSplit(t([4, 4 * 8]), t([4, 8]), t([4, 8]), 2, { kvHeads: 0 })).toThrow(ShapeError);
    expect(q.qkvRopeSplit(t([4, 4 * 8]), t([4, 8]), t([4, 8]), 2, { kvHeads: 1, kvRows: true })[2].shape).toEqual([4, 1, 8]);
    expect(q.qkvRopeSplit(t([4, 3 * 2 * 8]), t([4, 8]), t([4, 8]), 2)[0].shape).toEqual([4, 2, 8]);
    expect(() => q.qkvRopeSplit(t([4, 47]), t([4, 8]), t([4, 8]), 2)).toThrow(ShapeError);                  // not 3·heads·hd
    expect(() => q.qkvRopeSplit(t([4, 3 * 2 * 7]), t([4, 7]), t([4, 7]), 2)).toThrow(/head dim must be even/);
    expect(() => q.qkvRopeSplit(t([4, 48]), t([3, 8]), t([4, 8]), 2)).toThrow(/cos must be \[R, hd\] = \[4, 8\]/);
    expect(() => q.qkvRopeSplit(t([4, 48]), t([4, 8]), t([4, 8]), 0)).toThrow(ShapeError);
    expect(() => q.qkvRopeSplit(tensorFromArray('i32', [4, 48], new Int32Array(192)), t([4, 8]), t([4, 8]), 2)).toThrow(DTypeError);
    q.dispose();
  });
});
