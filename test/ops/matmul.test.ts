// matmul, precision 'exact' (the default is 'fast': test/ops/matmul-fast.test.ts): y = x · Wᵀ (+ bias),
// x f32 [.., K], W f32|bf16|f16 [N, K] (HF layout), bias f32 [N].
// Every ISA level this machine has (nativeInfo().isaLevels, one Queue({ isa }) each) against a
// float64 reference on the exact values the kernel sees (W decoded from its stored bits).
//
// Tolerance, per output element: |y - ref| ≤ (K + 2)·2⁻²⁴·Σ_k|x·w| + 2⁻²⁴·|bias| + 2⁻¹⁴⁹.
// Why: every level accumulates in f32 (bf16/f16 weights are widened exactly, activations stay
// f32), the products and partial sums each round with relative error ≤ 2⁻²⁴, and the standard
// bound for a sum of K rounded products in any order is ≈ K·2⁻²⁴·Σ|x·w|; +2 covers the product
// rounding and the bias add, the last term the underflow floor. It is the same bound for
// every level and summation order (lanes, tiles), never widened to pass.
import { describe, expect, it } from 'vitest';
import { Queue, nativeInfo, tensorFromArray, type DType, type Isa } from '../../lib/native/index.js';
import { DTypeError, ShapeError } from '../../lib/errors.js';
import { checkBound } from '../helpers/compare.js';
import { fromBf16, fromF16, normal, rng, toBf16, toF16 } from '../helpers/random.js';

type WType = 'f32' | 'bf16' | 'f16';
const U = 2 ** -24;

interface Case { M: number; K: number; N: number; wt: WType; bias: boolean; seed: number; shape?: number[] }

/** Weights as stored (bits) and as the float64 values those bits mean. */
function makeWeights(wt: WType, w: Float32Array): { data: ArrayBufferView; vals: Float64Array } {
  if (wt === 'f32') return { data: w, vals: Float64Array.from(w) };
  const bits = wt === 'bf16' ? toBf16(w) : toF16(w);
  return { data: bits, vals: Float64Array.from(wt === 'bf16' ? fromBf16(bits) : fromF16(bits)) };
}

/** float64 reference and the per-element bound stated at the top of the file. */
function reference(x: Float32Array, w: Float64Array, b: Float32Array | null, M: number, K: number, N: number) {
  const ref = new Float64Array(M * N), tol = new Float64Array(M * N);
  for (let m = 0; m < M; m++)
    for (let n = 0; n < N; n++) {
      let s = 0, a = 0;
      for (let k = 0; k < K; k++) {
        const p = x[m * K + k] * w[n * K + k];
        s += p;
        a += Math.abs(p);
      }
      const bv = b ? b[n] : 0;
      ref[m * N + n] = s + bv;
      tol[m * N + n] = (K + 2) * U * a + U * Math.abs(bv) + 2 ** -149;
    }
  return { ref, tol };
}


const levels: Isa[] = nativeInfo().isaLevels;
const Ms = [1, 2, 3, 7, 8, 9, 16, 33];
const Ks = [1, 3, 7, 13, 33, 127, 4097];
const Ns = [1, 3, 7, 13, 33, 127];
const wtypes: WType[] = ['f32', 'bf16', 'f16'];

function cases(): Case[] {
  const out: Case[] = [];
  let seed = 1;
  Ms.forEach((M, i) =>
    Ks.forEach((K, j) => {
      const N = Ns[(i + 2 * j) % Ns.length];
      for (const wt of wtypes) out.push({ M, K, N, wt, bias: (i + j) % 2 === 0, seed: seed++ });
    }));
  // Wider panels (every thread gets several row groups plus a tail), leading dims, no bias/bias.
  for (const wt of wtypes) {
    out.push({ M: 8, K: 33, N: 4099, wt, bias: true, seed: seed++ });
    out.push({ M: 1, K: 896, N: 1001, wt, bias: false, seed: seed++ });
    out.push({ M: 16, K: 129, N: 67, wt, bias: false, seed: seed++, shape: [2, 8, 129] });
    out.push({ M: 33, K: 65, N: 35, wt, bias: true, seed: seed++, shape: [3, 11, 65] });
    out.push({ M: 300, K: 1100, N: 19, wt, bias: true, seed: seed++ });  // several token blocks
  }
  return out;
}

interface Prepared extends Case { x: Float32Array; wData: ArrayBufferView; b: Float32Array | null; ref: Float64Array; tol: Float64Array }

function prepare(c: Case): Prepared {
  const r = rng(c.seed);
  const x = normal(r, c.M * c.K);
  const w = normal(r, c.N * c.K, 0.5);
  const b = c.bias ? normal(r, c.N) : null;
  const { data, vals } = makeWeights(c.wt, w);
  return { ...c, x, wData: data, b, ...reference(x, vals, b, c.M, c.K, c.N) };
}

async function run(q: Queue, p: Prepared): Promise<Float32Array> {
  const xt = tensorFromArray('f32', p.shape ?? [p.M, p.K], p.x);
  const wt = tensorFromArray(p.wt as DType, [p.N, p.K], p.wData);
  const bt = p.b ? tensorFromArray('f32', [p.N], p.b) : null;
  const y = q.matmul(xt, wt, bt);
  expect(y.shape).toEqual([...(p.shape ?? [p.M, p.K]).slice(0, -1), p.N]);
  const out = await q.readF32(y);
  for (const t of [xt, wt, bt, y]) t?.dispose();
  return out;
}

describe('matmul', () => {
  const all = cases().map(prepare);

  for (const isa of levels) {
    it(`${isa}: every weight dtype, odd M, K, N, with and without bias`, async () => {
      const q = new Queue({ isa, threads: 2, precision: 'exact' });
      expect(q.isa).toBe(isa);
      for (const p of all) {
        const got = await run(q, p);
        checkBound(got, p.ref, p.tol, `${isa} ${p.wt} M=${p.M} K=${p.K} N=${p.N} bias=${p.bias}`);
      }
      q.dispose();
    });

    it(`${isa}: NaN in x or W reaches exactly the outputs it feeds`, async () => {
      const q = new Queue({ isa, threads: 2, precision: 'exact' });
      for (const wt of wtypes)
        for (const [M, K, N] of [[8, 37, 21], [1, 20, 9], [9, 4097, 5]]) {
          const r = rng(M * 1000 + K);
          const x = normal(r, M * K);
          const w = normal(r, N * K);
          const mNan = M - 1, nNan = Math.min(2, N - 1);
          x[mNan * K + (K >> 1)] = NaN;       // poisons row mNan of y
          w[nNan * K + K - 1] = NaN;          // poisons column nNan of y (the K tail when K % 8 ≠ 0)
          const { data, vals } = makeWeights(wt, w);
          const { ref, tol } = reference(x, vals, null, M, K, N);
          for (let m = 0; m < M; m++)
            for (let n = 0; n < N; n++) expect(Number.isNaN(ref[m * N + n])).toBe(m === mNan || n === nNan);
          const got = await run(q, { M, K, N, wt, bias: false, seed: 0, x, wData: data, b: null, ref, tol });
          checkBound(got, ref, tol, `${isa} ${wt} NaN M=${M} K=${K} N=${N}`);
        }
      q.dispose();
    });
  }

  it('extreme magnitudes (2^60 · 2^-70 products) stay exact at every level', async () => {
    // Huge activations times tiny weights: products are exact powers of two, no level may lose them.
    const M = 3, K = 19, N = 5;
    const x = new Float32Array(M * K).fill(2 ** 60);
    const w = new Float32Array(N * K).fill(2 ** -70);
    const { ref, tol } = reference(x, Float64Array.from(w), null, M, K, N);
    for (const isa of levels) {
      const q = new Queue({ isa, threads: 1, precision: 'exact' });
      const got = await run(q, { M, K, N, wt: 'f32', bias: false, seed: 0, x, wData: w, b: null, ref, tol });
      checkBound(got, ref, tol, `${isa} large`);
      q.dispose();
    }
  });

  it('throws typed errors naming the op for bad shapes and dtypes', () => {
    const q = new Queue({ threads: 1, precision: 'exact' });
    const x = tensorFromArray('f32', [2, 3], new Float32Array(6));
    const w = tensorFromArray('f32', [4, 3], new Float32Array(12));
    const wBadK = tensorFromArray('f32', [4, 5], new Float32Array(20));
    const w1 = tensorFromArray('f32', [3], new Float32Array(3));
    const wI = tensorFromArray('i32', [4, 3], new Int32Array(12));
    const xB = tensorFromArray('bf16', [2, 3], new Uint16Array(6));
    const b5 = tensorFromArray('f32', [5], new Float32Array(5));
    const bB = tensorFromArray('bf16', [4], new Uint16Array(4));
    expect(() => q.matmul(x, wBadK)).toThrow(ShapeError);
    expect(() => q.matmul(x, wBadK)).toThrow(/matmul: .*f32\[2, 3\], f32\[4, 5\]/);
    expect(() => q.matmul(x, w1)).toThrow(ShapeError);
    expect(() => q.matmul(x, wI)).toThrow(DTypeError);
    expect(() => q.matmul(xB, w)).toThrow(DTypeError);
    expect(() => q.matmul(x, w, b5)).toThrow(ShapeError);
    expect(() => q.matmul(x, w, bB)).toThrow(DTypeError);
    q.dispose();
  });

  it('K = 0: every output is its bias (or 0), at every level', async () => {
    for (const isa of levels) {
      const q = new Queue({ isa, threads: 2, precision: 'exact' });
      for (const wt of wtypes) {
        const x = tensorFromArray('f32', [3, 0], new Float32Array(0));
        const w = tensorFromArray(wt, [5, 0], wt === 'f32' ? new Float32Array(0) : new Uint16Array(0));
        const b = tensorFromArray('f32', [5], new Float32Array([1, -2, 3, -4, 5]));
        expect(Array.from(await q.readF32(q.matmul(x, w, b)))).toEqual([1, -2, 3, -4, 5, 1, -2, 3, -4, 5, 1, -2, 3, -4, 5]);
        expect(Array.from(await q.readF32(q.matmul(x, w)))).toEqual(new Array(15).fill(0));
      }
      q.dispose();
    }
  });

  it('handles M = 0 rows and returns an empty result', async () => {
    const q = new Queue({ threads: 2, precision: 'exact' });
    const x = tensorFromArray('f32', [0, 7], new Float32Array(0));
    const w = tensorFromArray('bf16', [5, 7], new Uint16Array(35));
    const y = q.matmul(x, w);
    expect(y.shape).toEqual([0, 5]);
    expect((await q.readF32(y)).length).toBe(0);
    q.dispose();
  });
});
