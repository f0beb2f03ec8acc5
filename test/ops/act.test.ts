// silu, swiglu, gelu (erf), gelu_tanh and the row softmax against float64 references
// (test/ops/reference.ts) at every ISA level, on odd sizes, with the non-finite rules of act.cpp.
import { describe, expect, it } from 'vitest';
import { Queue, nativeInfo, tensorFromArray } from '../../lib/native/index.js';
import { DTypeError, DisposedError, ShapeError } from '../../lib/errors.js';
import { expectClose } from '../helpers/compare.js';
import { normal, rng } from '../helpers/random.js';
import { geluRef, geluTanhRef, siluRef, softmaxRef } from './reference.js';

// silu: e^−x by the level's vector exp (kernels.h silu_mul, ≈ 1-2 ulp), 1 + e and the division:
// measured at most 2.9·2^-24 relative over 4 Mi values in [−90, 90] → rel 4e-7. abs 1e-30 so that
// x < −88 (e^−x overflows, f32 result −0, true value ≈ −1e-37) compares.
const SILU_TOL = { abs: 1e-30, rel: 4e-7 };
// swiglu: silu's error plus one product rounding → rel 5e-7.
const SWIGLU_TOL = { abs: 1e-30, rel: 5e-7 };
// gelu / gelu_tanh: the f32 argument (x/√2, or 2u with its cube) carries a few roundings and the
// tail amplifies an argument error by ~2u² (erfc) or |2u| (exp): ≤ 1e-6 relative for |x| ≤ 6,
// and where that amplification grows the values themselves are < 1e-7, hence abs 1e-7. gelu's
// vector erfc (kernels_generic.inc gelu_lanes) was measured at ≤ 0.33 of this bound over 2.4 M
// values in [−12, 12].
const GELU_TOL = { abs: 1e-7, rel: 1e-6 };
// softmax: x − max is rounded to f32 before expf, an absolute argument error of |x − max|·2^-24
// (≤ 20·6e-8 here) → rel ≤ 1.5e-6 on that term; the Σ and the division are double → rel 1.5e-6.
// abs 1e-12 for the tiny probabilities of far-below-max entries.
const SOFTMAX_TOL = { abs: 1e-12, rel: 1.5e-6 };

const SIZES = [1, 3, 7, 33, 127, 4097];
const SPECIAL = new Float32Array([NaN, Infinity, -Infinity, 0, -0, 100, -100, 1e-30, -1e-30, 20, -20, 3.5, -3.5, 6, -6]);

function map64(x: Float32Array, f: (v: number) => number): Float64Array { return Float64Array.from(x, f); }

describe.each(nativeInfo().isaLevels)('activations at isa %s', (isa) => {
  it('silu, gelu, gelu_tanh match float64 references on odd sizes', async () => {
    const q = new Queue({ isa, threads: 2 });
    const r = rng(3);
    for (const n of SIZES) {
      const x = normal(r, n, 3);
      const xt = tensorFromArray('f32', [n], x);
      expectClose(await q.readF32(q.silu(xt)), map64(x, siluRef), SILU_TOL, `silu ${n}`);
      expectClose(await q.readF32(q.gelu(xt)), map64(x, geluRef), GELU_TOL, `gelu ${n}`);
      expectClose(await q.readF32(q.geluTanh(xt)), map64(x, geluTanhRef), GELU_TOL, `gelu_tanh ${n}`);
    }
    q.dispose();
  });

  it('swiglu = silu(gate) · up', async () => {
    const q = new Queue({ isa, threads: 2 });
    const r = rng(4);
    for (const n of SIZES) {
      const g = normal(r, n, 3), u = normal(r, n, 2);
      const y = q.swiglu(tensorFromArray('f32', [1, n], g), tensorFromArray('f32', [1, n], u));
      expect(y.shape).toEqual([1, n]);
      expectClose(await q.readF32(y), Float64Array.from(g, (v, i) => siluRef(v) * u[i]), SWIGLU_TOL, `swiglu ${n}`);
    }
    q.dispose();
  });

  it('special values: NaN propagates; ±Inf as documented in act.cpp', async () => {
    const q = new Queue({ isa, threads: 2 });
    const xt = tensorFromArray('f32', [SPECIAL.length], SPECIAL);
    const silu = await q.readF32(q.silu(xt)), gelu = await q.readF32(q.gelu(xt)), gt = await q.readF32(q.geluTanh(xt));
    for (const y of [silu, gelu, gt]) {
      expect(y[0]).toBeNaN();             // NaN in, NaN out
      expect(y[1]).toBe(Infinity);        // +Inf · σ(+Inf) = +Inf
      expect(y[2]).toBeNaN();             // −Inf · 0, as torch computes it
      expect(Object.is(y[3], 0)).toBe(true);
    }
    // The finite specials (extremes and tails) against the references.
    const fin = SPECIAL.slice(3);
    expectClose(silu.slice(3), map64(fin, siluRef), SILU_TOL, 'silu specials');
    expectClose(gelu.slice(3), map64(fin, geluRef), GELU_TOL, 'gelu specials');
    expectClose(gt.slice(3), map64(fin, geluTanhRef), GELU_TOL, 'gelu_tanh specials');
    const sw = await q.readF32(q.swiglu(xt, tensorFromArray('f32', [SPECIAL.length], new Float32Array(SPECIAL.length).fill(2))));
    expect(sw[0]).toBeNaN();
    q.dispose();
  });

  it('softmax matches the float64 reference on odd row lengths', async () => {
    const q = new Queue({ isa, threads: 2 });
    const r = rng(5);
    for (const C of SIZES) {
      for (const R of [1, 3]) {
        const x = normal(r, R * C, 3);
        const y = q.softmax(tensorFromArray('f32', [R, C], x));
        const got = await q.readF32(y);
        expectClose(got, softmaxRef(x, C), SOFTMAX_TOL, `softmax ${R}x${C}`);
      }
    }
    q.dispose();
  });

  it('softmax: NaN or +Inf poisons its row, −Inf entries get 0, an all −Inf row is NaN', async () => {
    const q = new Queue({ isa, threads: 2 });
    const I = Infinity;
    const x = new Float32Array([1, NaN, 2, /**/ 1, I, 2, /**/ -I, -I, -I, /**/ 0, -I, 0, /**/ 1, 2, 3]);
    const y = await q.readF32(q.softmax(tensorFromArray('f32', [5, 3], x)));
    expectClose(y, softmaxRef(x, 3), SOFTMAX_TOL, 'softmax non-finite');
    expect(y.slice(0, 9).every(Number.isNaN)).toBe(true);
    expect(Array.from(y.slice(9, 12))).toEqual([0.5, 0, 0.5]);
    q.dispose();
  });

  it('throws typed errors for bad calls', () => {
    const q = new Queue({ isa, threads: 1 });
    const a = tensorFromArray('f32', [2, 3], new Float32Array(6));
    expect(() => q.swiglu(a, tensorFromArray('f32', [3, 2], new Float32Array(6)))).toThrow(ShapeError);
    expect(() => q.silu(tensorFromArray('i32', [2], new Int32Array(2)))).toThrow(DTypeError);
    expect(() => q.softmax(tensorFromArray('bf16', [2], new Uint16Array(2)))).toThrow(/softmax: input 0 must be f32/);
    a.dispose();
    expect(() => q.gelu(a)).toThrow(DisposedError);
    q.dispose();
  });
});
