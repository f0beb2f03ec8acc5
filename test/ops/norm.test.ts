// rms_norm and layer_norm against their float64 references (test/ops/reference.ts) at every ISA
// level, on odd sizes, with NaN/Inf behaviour and the typed errors for bad calls.
import { describe, expect, it } from 'vitest';
import { Queue, nativeInfo, tensorFromArray, type Isa } from '../../lib/native/index.js';
import { DTypeError, DisposedError, ShapeError, DiffusionVLError } from '../../lib/errors.js';
import { expectClose, expectSameBits } from '../helpers/compare.js';
import { normal, rng, uniform } from '../helpers/random.js';
import { layerNormRef, rmsNormRef } from './reference.js';

// rms_norm: Σx² in double, then 1/sqrt rounded to f32, x·r and w·(x·r) each rounded once: at
// most ~3 roundings of 2^-24 → relative 3·6e-8 ≈ 1.8e-7; stated as rel 4e-7 (a little slack for
// the double statistic's own rounding), abs 1e-30 only so exact zeros compare.
const RMS_TOL = { abs: 1e-30, rel: 4e-7 };
// layer_norm: the whole row expression in double, one final f32 rounding → rel 2^-24 ≈ 6e-8;
// stated as rel 1.2e-7 (2 ulp) plus abs 1e-7 for outputs that cancel near 0 (b ≈ −(x−μ)·r·w).
const LN_TOL = { abs: 1e-7, rel: 1.2e-7 };

describe.each(nativeInfo().isaLevels)('norms at isa %s', (isa) => {
  it('rms_norm matches the float64 reference on odd sizes', async () => {
    const q = new Queue({ isa, threads: 2 });
    const r = rng(1);
    for (const [R, H] of [[1, 1], [3, 7], [7, 33], [5, 127], [2, 896], [33, 64]]) {
      const x = normal(r, R * H, 3), w = uniform(r, H, -2, 2);
      const y = q.rmsNorm(tensorFromArray('f32', [R, H], x), tensorFromArray('f32', [H], w), 1e-6);
      expect(y.shape).toEqual([R, H]);
      expectClose(await q.readF32(y), rmsNormRef(x, w, 1e-6), RMS_TOL, `rms_norm ${R}x${H}`);
    }
    // Leading dims are flattened: [2, 3, 7] behaves like [6, 7].
    const x = normal(r, 42), w = uniform(r, 7);
    const y = q.rmsNorm(tensorFromArray('f32', [2, 3, 7], x), tensorFromArray('f32', [7], w), 1e-5);
    expect(y.shape).toEqual([2, 3, 7]);
    expectClose(await q.readF32(y), rmsNormRef(x, w, 1e-5), RMS_TOL, 'rms_norm rank 3');
    q.dispose();
  });

  it('layer_norm matches the float64 reference on odd sizes', async () => {
    const q = new Queue({ isa, threads: 2 });
    const r = rng(2);
    for (const [R, H] of [[1, 1], [3, 7], [7, 33], [5, 127], [3, 1152]]) {
      // An offset mean checks the two-pass variance (one pass would cancel catastrophically).
      const x = normal(r, R * H, 2).map((v) => v + 100);
      const w = uniform(r, H, -2, 2), b = uniform(r, H, -1, 1);
      const y = q.layerNorm(tensorFromArray('f32', [R, H], x), tensorFromArray('f32', [H], w), tensorFromArray('f32', [H], b), 1e-6);
      expectClose(await q.readF32(y), layerNormRef(x, w, b, 1e-6), LN_TOL, `layer_norm ${R}x${H}`);
    }
    q.dispose();
  });

  it('propagates NaN through the row and documents Inf', async () => {
    const q = new Queue({ isa, threads: 2 });
    const x = new Float32Array([1, NaN, 2, 3, /* row 2 */ 1, Infinity, 2, 3, /* row 3 */ 1, 2, 3, 4]);
    const w = new Float32Array([1, 1, 1, 1]), b = new Float32Array(4);
    const xt = tensorFromArray('f32', [3, 4], x), wt = tensorFromArray('f32', [4], w);
    const y = await q.readF32(q.rmsNorm(xt, wt, 1e-6));
    // NaN row: all NaN. Inf row: x/∞ = 0 except ∞/∞ = NaN (the reference agrees). Clean row: finite.
    expectClose(y, rmsNormRef(x, w, 1e-6), RMS_TOL, 'rms_norm non-finite');
    expect(y.slice(0, 4).every(Number.isNaN)).toBe(true);
    expect(Array.from(y.slice(4, 8))).toEqual([0, NaN, 0, 0]);
    const z = await q.readF32(q.layerNorm(xt, wt, tensorFromArray('f32', [4], b), 1e-6));
    expect(z.slice(0, 8).every(Number.isNaN)).toBe(true);  // NaN and ∞ − ∞ in the statistics
    expect(z.slice(8).every(Number.isFinite)).toBe(true);
    q.dispose();
  });

  it('throws typed errors for bad calls', () => {
    const q = new Queue({ isa, threads: 1 });
    const x = tensorFromArray('f32', [2, 4], new Float32Array(8));
    expect(() => q.rmsNorm(x, tensorFromArray('f32', [3], new Float32Array(3)), 1e-6)).toThrow(ShapeError);
    expect(() => q.rmsNorm(x, tensorFromArray('f32', [3], new Float32Array(3)), 1e-6)).toThrow(/rms_norm: w must be \[4\]/);
    expect(() => q.rmsNorm(x, tensorFromArray('bf16', [4], new Uint16Array(4)), 1e-6)).toThrow(DTypeError);
    expect(() => q.layerNorm(x, tensorFromArray('f32', [4], new Float32Array(4)), tensorFromArray('f32', [5], new Float32Array(5)), 1e-6))
      .toThrow(/layer_norm: b must be \[4\]/);
    expect(() => q.rmsNorm(x, tensorFromArray('f32', [4], new Float32Array(4)), -1)).toThrow(DiffusionVLError);
    x.dispose();
    expect(() => q.rmsNorm(x, tensorFromArray('f32', [4], new Float32Array(4)), 1e-6)).toThrow(DisposedError);
    q.dispose();
  });
});

describe('rms_norm: one order of sums at every level', () => {
  // kernels_generic.inc sums four rows at a time (four independent chains) and the rest one by
  // one; each row's Σx² keeps the order of the scalar level's loop (eight interleaved partials,
  // added pairwise), so every level, every row count and every thread split give the scalar
  // level's bits — the batched forward relies on a row's bits not depending on its neighbours.
  it('equals the scalar level bit for bit: row counts around the group of four, odd widths, non-finite rows', async () => {
    const r = rng(9);
    const cases: [number, number][] = [[1, 96], [3, 7], [4, 9], [5, 96], [7, 33], [9, 127], [13, 896], [6, 8], [11, 15]];
    const inputs = cases.map(([R, H]) => {
      const x = normal(r, R * H, 3);
      if (R > 4) { x[4 * H + 2] = NaN; x[2 * H + 1] = Infinity; }   // a non-finite row inside a group and in the rest
      return { R, H, x, w: uniform(r, H, -2, 2) };
    });
    const run = async (isa: Isa, threads: number) => {
      const q = new Queue({ isa, threads });
      const out: Float32Array[] = [];
      for (const c of inputs) out.push(await q.readF32(q.rmsNorm(tensorFromArray('f32', [c.R, c.H], c.x), tensorFromArray('f32', [c.H], c.w), 1e-6)));
      q.dispose();
      return out;
    };
    const ref = await run('scalar', 1);
    for (const isa of nativeInfo().isaLevels) {
      for (const threads of [1, 3]) {
        const got = await run(isa, threads);
        got.forEach((y, i) => expectSameBits(y, ref[i], `${isa} threads ${threads} ${cases[i].join('x')}`));
      }
    }
    // And each row alone is the row inside the batch.
    const q = new Queue({ threads: 1 });
    const { R, H, x, w } = inputs[5];
    for (let i = 0; i < R; i++) {
      const one = await q.readF32(q.rmsNorm(tensorFromArray('f32', [1, H], x.subarray(i * H, (i + 1) * H)), tensorFromArray('f32', [H], w), 1e-6));
      expectSameBits(one, ref[5].subarray(i * H, (i + 1) * H), `row ${i} alone`);
    }
    q.dispose();
  });
});
