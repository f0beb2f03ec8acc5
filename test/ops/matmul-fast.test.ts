// Precision 'fast' and q8 weights (csrc/cpu/kernels.h, ops/matmul.cpp) at every ISA level this
// machine has, against float64 references built from the stated rounding rules
// (test/helpers/q8.ts mirrors csrc/core/dtype.h and kernels.h ActQ8).
//
// Bounds, per output element (U = 2⁻²⁴, never widened to pass):
// - bf16 'fast' on a level with a bf16 dot product (avx512_bf16): against float64 over the
//   ROUNDED activations x̂ = bf16_daz(x) and the weights as vdpbf16ps reads them (subnormal
//   bf16 → 0): (K + 2)·U·Σ|x̂·w| + U·|bias| + K·2⁻¹²⁶ (f32 accumulation, any order; the last
//   term covers partial sums flushed to zero). Against the unrounded product: plus
//   2⁻⁹·Σ|x·w| (RNE to bf16 has relative error ≤ 2⁻⁹) plus Σ|x·w| over flushed subnormal x.
//   Levels without one run the exact kernel: bit-identical to precision 'exact'.
// - q8 'fast': against Σ_b d_w·d_x·I_b over the quantised values (exact integer block sums):
//   (nb + 6)·U·Σ_b|d_w·d_x·I_b| (the f32 scale product, one FMA per block, the final lane sum).
//   Against the unquantised product: plus Σ_b (d_w/2·Σ_b|x| + d_x/2·Σ_b|ŵ|) — each value is
//   within half a step of its quant.
// - q8 'exact': against Σ x·ŵ (ŵ = dequantised weight, exact in f32): (K + 2)·U·Σ|x·ŵ|.
// Then the invariant every kernel keeps: y[m, n] is the same bits whatever M, the other rows
// and the thread split.
import { describe, expect, it } from 'vitest';
import { Queue, nativeInfo, tensorFromArray, type Isa, type Precision, type Tensor } from '../../lib/native/index.js';
import { DTypeError, ShapeError } from '../../lib/errors.js';
import { checkBound, expectSameBits } from '../helpers/compare.js';
import { fromBf16, fromF16, normal, rng, toBf16, toF16 } from '../helpers/random.js';
import {
  bf16Daz, bf16DazValue, dequantize, f32Bits, fromBits, q8Bytes, q8FastReference, q8RowBytes, quantizeActivations, quantizeWeights,
} from '../helpers/q8.js';

const levels: Isa[] = nativeInfo().isaLevels;
const U = 2 ** -24;
const hasDot = (isa: Isa) => isa === 'avx512_bf16';

async function matmul(q: Queue, x: Float32Array, M: number, K: number, w: Tensor, b: Float32Array | null): Promise<Float32Array> {
  const xt = tensorFromArray('f32', [M, K], x);
  const bt = b ? tensorFromArray('f32', [b.length], b) : null;
  const y = q.matmul(xt, w, bt);
  const out = await q.readF32(y);
  for (const t of [xt, bt, y]) t?.dispose();
  return out;
}



// Shapes: K around the 32-value blocks, the 16-block groups (512) and the 32-value bf16 chunks;
// M across every token tile; N odd so panels end in one-row tails.
const SHAPES: [number, number, number][] = [
  [1, 1, 1], [1, 31, 7], [2, 32, 13], [3, 33, 5], [4, 96, 25], [5, 511, 9], [7, 512, 11], [8, 513, 17],
  [9, 545, 6], [16, 1000, 13], [17, 64, 49], [33, 129, 19], [1, 4097, 5], [8, 896, 40],
];

interface Case { M: number; K: number; N: number; x: Float32Array; w: Float32Array; b: Float32Array | null }

function makeCase(M: number, K: number, N: number, seed: number): Case {
  const r = rng(seed);
  return { M, K, N, x: normal(r, M * K), w: normal(r, N * K, 0.5), b: seed % 2 ? normal(r, N) : null };
}
const CASES = SHAPES.map(([M, K, N], i) => makeCase(M, K, N, 100 + i));

describe('q8 format (dtype.h layout, quantisation rule)', () => {
  it('convert to q8 writes the documented bytes from f32, bf16 and f16, at every level', async () => {
    for (const isa of levels) {
      const q = new Queue({ isa, threads: 2 });
      for (const [K, rows] of [[1, 3], [31, 2], [32, 1], [545, 5], [1000, 3], [4097, 2]]) {
        const r = rng(K * 7 + rows);
        const w = normal(r, rows * K, 0.3);
        w[0] = 0;  // a zero, and a block holding a huge value next to tiny ones
        if (K > 40) { w[33] = 1e30; w[34] = 1e-30; }
        for (const dt of ['f32', 'bf16', 'f16'] as const) {
          const bitsIn = dt === 'f32' ? w : dt === 'bf16' ? toBf16(w) : toF16(w);
          const vals = dt === 'f32' ? w : dt === 'bf16' ? fromBf16(bitsIn as Uint16Array) : fromF16(bitsIn as Uint16Array);
          const src = tensorFromArray(dt, [rows, K], bitsIn);
          const t = q.convert(src, 'q8');
          expect(t.dtype).toBe('q8');
          expect(t.shape).toEqual([rows, K]);
          expect(t.nbytes).toBe(rows * q8RowBytes(K));
          const got = (await q.read(t)) as Uint8Array;
          const want = q8Bytes(quantizeWeights(Float32Array.from(vals), rows, K));
          for (let i = 0; i < want.length; i++)
            if (got[i] !== want[i]) throw new Error(`${isa} ${dt} K=${K}: byte ${i}: ${got[i]} vs ${want[i]}`);
          src.dispose(); t.dispose();
        }
      }
      q.dispose();
    }
  });

  it('q8 → f32 dequantises exactly, and the embedding op reads the same rows', async () => {
    const K = 545, rows = 9;
    const w = normal(rng(5), rows * K, 2);
    const want = dequantize(quantizeWeights(w, rows, K));
    for (const isa of levels) {
      const q = new Queue({ isa, threads: 2 });
      const t = q.convert(tensorFromArray('f32', [rows, K], w), 'q8');
      expectSameBits(await q.readF32(q.convert(t, 'f32')), want, `${isa} dequantise`);
      const ids = tensorFromArray('i32', [4], Int32Array.from([8, 0, 3, 8]));
      const e = await q.readF32(q.embedding(ids, t));
      for (const [i, row] of [8, 0, 3, 8].entries()) expectSameBits(e.subarray(i * K, (i + 1) * K), want.subarray(row * K, (row + 1) * K), `${isa} embedding row ${row}`);
      // bf16 and f16 out round the exact dequantised values once.
      const b = (await q.read(q.convert(t, 'bf16'))) as Uint16Array;
      expect(Array.from(b)).toEqual(Array.from(toBf16(want)));
      q.dispose();
    }
  });

  it('edge blocks: non-finite → scale NaN (every output it feeds is NaN), below 2^-96 → zero, quants clamp to ±127', async () => {
    const K = 96, rows = 1;
    const w = new Float32Array(K).fill(0.25);
    w[5] = Infinity;                                   // block 0: non-finite
    for (let k = 32; k < 64; k++) w[k] = 2 ** -97;     // block 1: tiny → zero
    w[64] = -3; w[65] = 3; w[66] = 3 * (1 - 2 ** -20);  // block 2: ±amax
    const ref = quantizeWeights(w, rows, K);
    expect(Number.isNaN(ref.scale[0])).toBe(true);
    expect(ref.scale[1]).toBe(0);
    expect(ref.quant[64]).toBe(-127);
    expect(ref.quant[65]).toBe(127);
    const q = new Queue({ threads: 1 });
    const t = q.convert(tensorFromArray('f32', [rows, K], w), 'q8');
    expect(Array.from((await q.read(t)) as Uint8Array)).toEqual(Array.from(q8Bytes(ref)));
    const back = await q.readF32(q.convert(t, 'f32'));
    for (let k = 0; k < 32; k++) expect(back[k]).toBeNaN();
    for (let k = 32; k < 64; k++) expect(back[k]).toBe(0);
    expect(back[64]).toBe(-127 * ref.scale[2]);
    q.dispose();
  });

  it('typed errors: no fromArray for q8, rank-0 convert, reshape that changes the row length, wrong K', () => {
    const q = new Queue({ threads: 1 });
    expect(() => tensorFromArray('q8', [2, 32], new Uint8Array(128))).toThrow(DTypeError);
    expect(() => q.convert(tensorFromArray('f32', [], new Float32Array(1)), 'q8')).toThrow(ShapeError);
    const t = q.convert(tensorFromArray('f32', [4, 64], new Float32Array(256)), 'q8');
    expect(() => q.reshape(t, [8, 32])).toThrow(DTypeError);
    expect(q.reshape(t, [2, 2, 64]).shape).toEqual([2, 2, 64]);
    expect(() => q.matmul(tensorFromArray('f32', [1, 63], new Float32Array(63)), t)).toThrow(ShapeError);
    expect(() => q.add(t, t)).toThrow(DTypeError);
    q.dispose();
  });
});

/** The embedding op reads rows `ids` of the panel tensor t exactly as `values` (f32, [N, K]) holds them. */
async function expectEmbeddingRows(q: Queue, t: Tensor, ids: number[], values: Float32Array, K: number, label: string): Promise<void> {
  const e = await q.readF32(q.embedding(tensorFromArray('i32', [ids.length], Int32Array.from(ids)), t));
  for (const [i, row] of ids.entries()) expectSameBits(e.subarray(i * K, (i + 1) * K), values.subarray(row * K, (row + 1) * K), `${label} embedding row ${row}`);
}

/** What both panel layouts refuse: no fromArray, rank 3, a reshape off [N, K], narrow, a concat after a part-filled panel, wrong K, elementwise ops. */
function expectPanelTypedErrors(q: Queue, dt: 'bf16p' | 'q8p', fromArrayBytes: Uint16Array | Uint8Array): Tensor {
  expect(() => tensorFromArray(dt, [2, 32], fromArrayBytes)).toThrow(DTypeError);
  expect(() => q.convert(tensorFromArray('f32', [2, 2, 32], new Float32Array(128)), dt)).toThrow(ShapeError);
  const t = q.convert(tensorFromArray('f32', [4, 64], new Float32Array(256)), dt);
  expect(() => q.reshape(t, [8, 32])).toThrow(DTypeError);
  expect(q.reshape(t, [4, 64]).shape).toEqual([4, 64]);
  expect(() => q.op('narrow_rows', [t], { start: 0, len: 2 })).toThrow(DTypeError);
  expect(() => q.op('concat_rows', [t, t])).toThrow(/a's rows \(4\) must fill whole panels of 16/);
  expect(() => q.op('concat_rows', [q.convert(tensorFromArray('f32', [16, 32], new Float32Array(512)), dt), t])).toThrow(ShapeError);   // other K
  expect(() => q.matmul(tensorFromArray('f32', [1, 63], new Float32Array(63)), t)).toThrow(ShapeError);
  expect(() => q.add(t, t)).toThrow(DTypeError);
  return t;
}

describe('bf16p layout (dtype.h: panels of 16 rows, K in pairs)', () => {
  const index = (K: number, n: number, k: number) => Math.floor(n / 16) * 16 * (K + (K % 2)) + Math.floor(k / 2) * 32 + (n % 16) * 2 + (k % 2);
  it('convert writes the documented bytes (zero padding), reads back exactly, and embedding reads the same rows', async () => {
    for (const isa of levels) {
      const q = new Queue({ isa, threads: 2 });
      for (const [N, K] of [[1, 1], [3, 5], [16, 2], [17, 33], [33, 96], [40, 897]]) {
        const w = normal(rng(N * 31 + K), N * K, 0.7);
        const bits = toBf16(w);
        const Kp = K + (K % 2), panels = Math.ceil(N / 16);
        for (const src of [tensorFromArray('bf16', [N, K], bits), tensorFromArray('f32', [N, K], w)]) {
          const t = q.convert(src, 'bf16p');
          expect(t.dtype).toBe('bf16p');
          expect(t.shape).toEqual([N, K]);
          expect(t.nbytes).toBe(panels * 16 * Kp * 2);
          const want = new Uint16Array(panels * 16 * Kp);
          for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) want[index(K, n, k)] = bits[n * K + k];
          expect(Array.from((await q.read(t)) as Uint16Array), `${isa} ${src.dtype} → bf16p N=${N} K=${K}`).toEqual(Array.from(want));
          expect(Array.from((await q.read(q.convert(t, 'bf16'))) as Uint16Array)).toEqual(Array.from(bits));
          expectSameBits(await q.readF32(q.convert(t, 'f32')), fromBf16(bits), `${isa} bf16p → f32`);
          await expectEmbeddingRows(q, t, [N - 1, 0, Math.floor(N / 2), N - 1], fromBf16(bits), K, isa);
          src.dispose();
        }
      }
      q.dispose();
    }
  });

  it('concat_rows of whole panels = the panels of the concatenated matrix, byte for byte (the fused q|k|v weight)', async () => {
    const q = new Queue({ threads: 2 });
    for (const [Na, Nb, K] of [[16, 1, 3], [32, 64, 128], [48, 17, 33], [16, 16, 897]]) {
      const a = normal(rng(Na + K), Na * K, 0.7), b = normal(rng(Nb + 7 * K), Nb * K, 0.7);
      const ab = new Float32Array(Na * K + Nb * K);
      ab.set(a);
      ab.set(b, Na * K);
      for (const dt of ['bf16p', 'q8p', 'q8'] as const) {
        const y = q.concatRows(q.convert(tensorFromArray('f32', [Na, K], a), dt), q.convert(tensorFromArray('f32', [Nb, K], b), dt));
        const want = q.convert(tensorFromArray('f32', [Na + Nb, K], ab), dt);
        expect([y.dtype, y.shape, y.nbytes]).toEqual([dt, [Na + Nb, K], want.nbytes]);
        expect(Array.from(await q.read(y)), `${dt} ${Na}+${Nb}x${K}`).toEqual(Array.from(await q.read(want)));
      }
    }
    // A q8 row is its own bytes: any row count concatenates.
    const y = q.concatRows(q.convert(tensorFromArray('f32', [3, 40], normal(rng(3), 120, 1)), 'q8'), q.convert(tensorFromArray('f32', [2, 40], normal(rng(4), 80, 1)), 'q8'));
    expect(y.shape).toEqual([5, 40]);
    q.dispose();
  });

  it('typed errors: no fromArray, rank other than 2, reshape, narrow and concat of the panels, wrong K', () => {
    const q = new Queue({ threads: 1 });
    const t = expectPanelTypedErrors(q, 'bf16p', new Uint16Array(64));
    expect(() => q.convert(tensorFromArray('f32', [2, 2, 4], new Float32Array(16)), 'bf16p')).toThrow(ShapeError);
    expect(() => q.convert(tensorFromArray('f32', [4], new Float32Array(4)), 'bf16p')).toThrow(ShapeError);
    expect(() => q.reshape(t, [1, 4, 64])).toThrow(DTypeError);
    q.dispose();
  });
});

describe('q8p layout (dtype.h: panels of 16 rows, blocks in pairs of 1088-byte records)', () => {
  // Byte of a q8p tensor holding row n's quad j of block b (4 bytes), and its scale (2 bytes).
  const panelBytes = (K: number) => Math.ceil(Math.ceil(K / 32) / 2) * 1088;
  const quadAt = (K: number, n: number, b: number, j: number) => Math.floor(n / 16) * panelBytes(K) + Math.floor(b / 2) * 1088 + (b % 2) * 512 + j * 64 + 4 * (n % 16);
  const scaleAt = (K: number, n: number, b: number) => Math.floor(n / 16) * panelBytes(K) + Math.floor(b / 2) * 1088 + 1024 + (b % 2) * 32 + 2 * (n % 16);
  it('convert writes the q8 quants and scales at the documented places (zero padding), reads back exactly, and embedding reads the same rows', async () => {
    for (const isa of levels) {
      const q = new Queue({ isa, threads: 2 });
      for (const [N, K] of [[1, 1], [3, 31], [16, 32], [17, 33], [33, 96], [20, 545], [5, 1000]]) {
        const w = normal(rng(N * 131 + K), N * K, 0.7);
        const src = tensorFromArray('f32', [N, K], w);
        const t = q.convert(src, 'q8p');
        expect(t.dtype).toBe('q8p');
        expect(t.shape).toEqual([N, K]);
        expect(t.nbytes).toBe(Math.ceil(N / 16) * panelBytes(K));
        const ref = quantizeWeights(w, N, K), nb = Math.ceil(K / 32);
        const want = new Uint8Array(t.nbytes);
        for (let n = 0; n < N; n++)
          for (let b = 0; b < nb; b++) {
            for (let j = 0; j < 8; j++)
              for (let u = 0; u < 4; u++) want[quadAt(K, n, b, j) + u] = ref.quant[n * nb * 32 + b * 32 + 4 * j + u] + 128;
            const bits = toBf16(Float32Array.of(ref.scale[n * nb + b]))[0];
            want[scaleAt(K, n, b)] = bits & 0xff;
            want[scaleAt(K, n, b) + 1] = bits >> 8;
          }
        expect(Array.from((await q.read(t)) as Uint8Array), `${isa} q8p N=${N} K=${K}`).toEqual(Array.from(want));
        // Back to q8 rows: the bytes convert to q8 writes directly.
        expect(Array.from((await q.read(q.convert(t, 'q8'))) as Uint8Array)).toEqual(Array.from((await q.read(q.convert(src, 'q8'))) as Uint8Array));
        const deq = dequantize(ref);
        expectSameBits(await q.readF32(q.convert(t, 'f32')), deq, `${isa} q8p → f32`);
        await expectEmbeddingRows(q, t, [N - 1, 0, Math.floor(N / 2)], deq, K, isa);
        src.dispose();
      }
      q.dispose();
    }
  });

  it('typed errors: no fromArray, rank other than 2, reshape, narrow and concat of the panels, wrong K', () => {
    const q = new Queue({ threads: 1 });
    expectPanelTypedErrors(q, 'q8p', new Uint8Array(2176));
    q.dispose();
  });
});

describe('bf16 weights, precision fast', () => {
  // 'bf16p' is the same weights in the panel layout (dtype.h) that loadModel uses at avx512 and
  // avx512_bf16: its own vdpbf16ps kernel at avx512_bf16 (kernels_bf16p.inc), f32 FMA panels
  // at avx2, avx2_vnni and avx512 (kernels_bf16p_fma.inc), the plain kernel at scalar — the
  // last two with f32 activations and k in order, so within the exact bound, in both precisions.
  for (const isa of levels) for (const layout of ['bf16', 'bf16p'] as const) {
    const what = hasDot(isa) ? 'vdpbf16ps within the stated bounds' : layout === 'bf16' ? 'the exact kernel, bit for bit' : 'f32 activations, within the exact bound';
    it(`${isa} ${layout}: ${what}`, async () => {
      const qf = new Queue({ isa, threads: 2, precision: 'fast' });
      const qe = new Queue({ isa, threads: 2, precision: 'exact' });
      expect(qf.precision).toBe('fast');
      expect(qf.kernels!.bf16).toMatch(hasDot(isa) ? /vdpbf16ps/ : /exact products/);
      expect(qf.kernels!.bf16Packed).toBe(isa === 'avx512' || isa === 'avx512_bf16');
      expect(qe.kernels!.bf16Packed).toBe(false);
      for (const c of CASES) {
        const bits = toBf16(c.w);
        const src = tensorFromArray('bf16', [c.N, c.K], bits);
        const wt = layout === 'bf16' ? src : qf.convert(src, 'bf16p');
        const got = await matmul(qf, c.x, c.M, c.K, wt, c.b);
        const label = `${isa} ${layout} fast M=${c.M} K=${c.K} N=${c.N}`;
        if (!hasDot(isa) && layout === 'bf16') {
          expectSameBits(got, await matmul(qe, c.x, c.M, c.K, wt, c.b), label);
        } else if (!hasDot(isa)) {
          const wv = fromBf16(bits);
          const ref = new Float64Array(c.M * c.N), tol = new Float64Array(c.M * c.N);
          for (let m = 0; m < c.M; m++)
            for (let n = 0; n < c.N; n++) {
              let s = 0, a = 0;
              for (let k = 0; k < c.K; k++) { const p = c.x[m * c.K + k] * wv[n * c.K + k]; s += p; a += Math.abs(p); }
              const bv = c.b ? c.b[n] : 0, i = m * c.N + n;
              ref[i] = s + bv; tol[i] = (c.K + 2) * U * a + U * Math.abs(bv);
            }
          checkBound(got, ref, tol, label);
          expectSameBits(await matmul(qe, c.x, c.M, c.K, wt, c.b), got, label + ' (exact queue: the same plain kernel)');
        } else {
          const wv = Float64Array.from(bits, bf16DazValue);
          const ref = new Float64Array(c.M * c.N), tol = new Float64Array(c.M * c.N);
          const ref0 = new Float64Array(c.M * c.N), tol0 = new Float64Array(c.M * c.N);
          for (let m = 0; m < c.M; m++)
            for (let n = 0; n < c.N; n++) {
              let s = 0, a = 0, s0 = 0, a0 = 0;
              for (let k = 0; k < c.K; k++) {
                const xv = c.x[m * c.K + k], w = wv[n * c.K + k];
                const p = bf16Daz(xv) * w;
                s += p; a += Math.abs(p);
                s0 += xv * w; a0 += Math.abs(xv * w);
              }
              const bv = c.b ? c.b[n] : 0, i = m * c.N + n;
              ref[i] = s + bv; tol[i] = (c.K + 2) * U * a + U * Math.abs(bv) + c.K * 2 ** -126;
              ref0[i] = s0 + bv; tol0[i] = tol[i] + 2 ** -9 * a0;
            }
          checkBound(got, ref, tol, label + ' (vs rounded activations)');
          checkBound(got, ref0, tol0, label + ' (vs f32 activations)');
        }
        wt.dispose(); src.dispose();
      }
      qf.dispose(); qe.dispose();
    });
  }

  const dot = levels.find(hasDot);
  it.skipIf(!dot)('activations round by f32_to_bf16_daz: ties to even, NaN stays NaN, subnormals → 0, overflow → Inf', async () => {
    // W = identity (K = 48: one full 32-chunk and a masked tail): y[m, n] = x̂[m, n] exactly.
    const K = 48;
    const vals: number[] = [
      0, -0, 1, -1, Infinity, -Infinity, NaN, 2 ** -126, -(2 ** -126), 2 ** -127, 2 ** -149, -(2 ** -140),
      fromBits(0x3f808000), fromBits(0x3f818000), fromBits(0x3f808001), fromBits(0xbf808000),  // ties both ways
      fromBits(0x7f7fffff), fromBits(0x7f7f8000), fromBits(0x7f7f7fff), fromBits(0xff7fffff),  // to ±Inf at FLT_MAX
      fromBits(0x7fa01234), fromBits(0xffc00001),                                              // NaN payloads
    ];
    const r = rng(77);
    for (let i = 0; i < 3000; i++) vals.push(fromBits(Math.floor(r() * 2 ** 32)));
    const M = vals.length, x = new Float32Array(M * K);
    vals.forEach((v, m) => { x[m * K + (m % K)] = v; });
    const eye = new Uint16Array(K * K);
    for (let k = 0; k < K; k++) eye[k * K + k] = 0x3f80;
    const q = new Queue({ isa: dot, threads: 2, precision: 'fast' });
    const w = tensorFromArray('bf16', [K, K], eye);
    const y = await matmul(q, x, M, K, w, null);
    for (let m = 0; m < M; m++) {
      const g = y[m * K + (m % K)], want = bf16Daz(Math.fround(vals[m]));
      if (Number.isNaN(want)) { expect(g, `x = 0x${f32Bits(vals[m]).toString(16)}`).toBeNaN(); continue; }
      // +0 + (−0) = +0 in the accumulator: only the sign of zero may differ.
      if (want === 0) { expect(g, `x = 0x${f32Bits(vals[m]).toString(16)}`).toBe(0); continue; }
      expect(f32Bits(g), `x = 0x${f32Bits(vals[m]).toString(16)}`).toBe(f32Bits(want));
    }
    q.dispose();
  });

  it.skipIf(!dot)('subnormals: weights and activations below 2^-126 count as zero, results below it flush to zero', async () => {
    const q = new Queue({ isa: dot, threads: 1, precision: 'fast' });
    const qe = new Queue({ isa: dot, threads: 1, precision: 'exact' });
    const K = 4;
    // Row 0: a subnormal weight times 1; row 1: 2^-100 · 2^-30 (a subnormal product); row 2:
    // a subnormal activation times 2^100; row 3: normal values (control).
    const w = tensorFromArray('bf16', [1, K], Uint16Array.from([0x0001, 0x3f80 - (30 << 7), 0x3f80 + (100 << 7), 0x3f80]));
    const x = new Float32Array(4 * K);
    x[0] = 1;
    x[K + 1] = 2 ** -100;
    x[2 * K + 2] = 2 ** -130;
    x[3 * K + 3] = 3;
    const fast = await matmul(q, x, 4, K, w, null);
    const exact = await matmul(qe, x, 4, K, w, null);
    expect(Array.from(fast)).toEqual([0, 0, 0, 3]);
    expect(exact[0]).toBe(fromBf16(Uint16Array.from([1]))[0]);
    expect(exact[1]).toBe(2 ** -130);
    expect(exact[2]).toBe(2 ** -30);
    q.dispose(); qe.dispose();
  });

  it('NaN and Inf: a NaN activation poisons its row, a NaN weight its column; Inf stays Inf', async () => {
    for (const isa of levels) {
      const q = new Queue({ isa, threads: 2, precision: 'fast' });
      const M = 9, K = 70, N = 11;
      const x = normal(rng(3), M * K), w = Float32Array.from(normal(rng(4), N * K), Math.abs);
      x[4 * K + 69] = NaN;
      w[2 * K + 7] = NaN;
      x[6 * K + 3] = Infinity;
      const wb = tensorFromArray('bf16', [N, K], toBf16(w));
      for (const wt of [wb, q.convert(wb, 'bf16p')]) {
        const y = await matmul(q, x, M, K, wt, null);
        for (let m = 0; m < M; m++)
          for (let n = 0; n < N; n++) {
            const v = y[m * N + n];
            if (m === 4 || n === 2) expect(v, `${isa} ${wt.dtype} ${m},${n}`).toBeNaN();
            else if (m === 6) expect(v, `${isa} ${wt.dtype} ${m},${n}`).toBe(Infinity);
            else expect(Number.isFinite(v), `${isa} ${wt.dtype} ${m},${n}`).toBe(true);
          }
      }
      q.dispose();
    }
  });
});

describe('q8 weights', () => {
  // 'q8p' is the same quants in the panel layout (dtype.h) loadModel uses at every level but
  // scalar: zmm vpdpbusd at avx512_bf16 (kernels_q8p.inc), ymm AVX-VNNI or vpmaddubsw at avx2_vnni,
  // avx2 and avx512 (kernels_q8p_v256.inc); at scalar the plain exact kernel in both precisions.
  for (const isa of levels) for (const layout of ['q8', 'q8p'] as const) {
    const fastKernel = layout === 'q8' || isa !== 'scalar';
    it(`${isa} ${layout}: ${fastKernel ? 'fast within the bound over the quantised values and the quantisation bound; ' : 'fast = exact; '}exact within (K + 2)·U`, async () => {
      const qf = new Queue({ isa, threads: 2, precision: 'fast' });
      const qe = new Queue({ isa, threads: 2, precision: 'exact' });
      expect(qf.kernels!.q8Packed).toBe(isa !== 'scalar');
      for (const c of CASES) {
        const wt = qf.convert(tensorFromArray('f32', [c.N, c.K], c.w), layout);
        const wq = quantizeWeights(c.w, c.N, c.K), xq = quantizeActivations(c.x, c.M, c.K);
        const label = `${isa} ${layout} M=${c.M} K=${c.K} N=${c.N}`;
        const fast = await matmul(qf, c.x, c.M, c.K, wt, c.b);
        if (!fastKernel) {
          expectSameBits(fast, await matmul(qe, c.x, c.M, c.K, wt, c.b), label + ' fast = exact');
        }
        const { ref, tol } = q8FastReference(xq, wq, c.b, c.M, c.N);
        const nb = Math.ceil(c.K / 32), wd = dequantize(wq);
        if (fastKernel) {
        checkBound(fast, ref, tol, label + ' fast (vs quantised values)');
        // Against the unquantised product: each value within half a step of its quant.
        const ref0 = new Float64Array(c.M * c.N), tol0 = new Float64Array(c.M * c.N);
        for (let m = 0; m < c.M; m++)
          for (let n = 0; n < c.N; n++) {
            let s = 0, e = 0;
            for (let k = 0; k < c.K; k++) {
              const b = Math.floor(k / 32);
              s += c.x[m * c.K + k] * c.w[n * c.K + k];
              e += (wq.scale[n * nb + b] / 2) * Math.abs(c.x[m * c.K + k]) + (xq.scale[m * nb + b] / 2) * Math.abs(wd[n * c.K + k]);
            }
            const i = m * c.N + n;
            ref0[i] = s + (c.b ? c.b[n] : 0);
            tol0[i] = tol[i] + e * (1 + 2 ** -20);
          }
        checkBound(fast, ref0, tol0, label + ' fast (vs f32 values)');
        }
        // exact: f32 activations times the dequantised weights.
        const exact = await matmul(qe, c.x, c.M, c.K, wt, c.b);
        const refE = new Float64Array(c.M * c.N), tolE = new Float64Array(c.M * c.N);
        for (let m = 0; m < c.M; m++)
          for (let n = 0; n < c.N; n++) {
            let s = 0, a = 0;
            for (let k = 0; k < c.K; k++) { const p = c.x[m * c.K + k] * wd[n * c.K + k]; s += p; a += Math.abs(p); }
            const bv = c.b ? c.b[n] : 0;
            refE[m * c.N + n] = s + bv;
            tolE[m * c.N + n] = (c.K + 2) * U * a + U * Math.abs(bv) + 2 ** -149;
          }
        checkBound(exact, refE, tolE, label + ' exact');
        wt.dispose();
      }
      expect(qf.kernels!.q8).toMatch(/int8/);
      qf.dispose(); qe.dispose();
    });
  }

  it('NaN / Inf: a non-finite activation makes its row NaN (fast), a NaN weight its column, at every level', async () => {
    for (const isa of levels)
      for (const layout of ['q8', 'q8p'] as const)
      for (const precision of ['fast', 'exact'] as const) {
        const quantised = precision === 'fast' && (layout === 'q8' || isa !== 'scalar');
        const q = new Queue({ isa, threads: 2, precision });
        const M = 6, K = 100, N = 9;
        const x = normal(rng(8), M * K), w = normal(rng(9), N * K);
        x[1 * K + 99] = NaN;
        x[3 * K + 40] = -Infinity;
        w[5 * K + 64] = NaN;
        const wt = q.convert(tensorFromArray('f32', [N, K], w), layout);
        const y = await matmul(q, x, M, K, wt, null);
        for (let m = 0; m < M; m++)
          for (let n = 0; n < N; n++) {
            const v = y[m * N + n], l = `${isa} ${layout} ${precision} ${m},${n}`;
            // exact: −Inf times the finite dequantised weights of both signs sums to NaN or ±Inf.
            if (m === 1 || n === 5 || (m === 3 && quantised)) expect(v, l).toBeNaN();
            else if (m === 3) expect(Number.isFinite(v), l).toBe(false);
            else expect(Number.isFinite(v), l).toBe(true);
          }
        q.dispose();
      }
  });

  it('activation blocks below 2^-96 quantise to zero (their products are dropped)', async () => {
    const q = new Queue({ threads: 1, precision: 'fast' });
    const K = 64;
    const x = new Float32Array(K).fill(2 ** -97);
    x[40] = 1;  // block 1 normal
    const w = new Float32Array(K).fill(1);
    for (const layout of ['q8', 'q8p'] as const) {
      const wt = q.convert(tensorFromArray('f32', [1, K], w), layout);
      const y = await matmul(q, x, 1, K, wt, null);
      // Bit for bit what block 0 left at exactly zero gives (block 1's tiny values also vanish:
      // they are below half a step of its scale).
      const x0 = new Float32Array(K);
      x0[40] = 1;
      expect(y[0], layout).toBe((await matmul(q, x0, 1, K, wt, null))[0]);
      if (layout === 'q8' || q.kernels!.q8Packed) expect(Math.abs(y[0] - 1), layout).toBeLessThan(2 ** -8);
    }
    q.dispose();
  });
});

describe('bf16 activations (patch rows stored as bf16): the bits of an f32 x holding the same values', () => {
  // matmul.cpp: a bf16 dot kernel takes them as they are (no rounding: they are bf16 values),
  // every other kernel widens them exactly — so each level and precision gives what it gives
  // for the f32 x. Shapes: the tower's patch embedding (K 1176, not a multiple of 32), the row
  // split (≥ 48 rows, a small weight), few rows, a weight past the row-split bound.
  it.each(levels)('at isa %s, both precisions, bf16 and bf16p weights', async (isa) => {
    for (const precision of ['fast', 'exact'] as Precision[]) {
      const q = new Queue({ isa, threads: 2, precision });
      for (const [M, K, N] of [[252, 1176, 96], [3, 1176, 96], [60, 40, 33], [50, 512, 600]]) {
        const r = rng(M + K + N);
        const xv = fromBf16(toBf16(normal(r, M * K)));
        xv[7] = 2 ** -130;   // a subnormal: the dot kernels read it as 0, as the f32 path's rounding writes it
        const xb = toBf16(xv);
        const wv = toBf16(normal(r, N * K, 0.1));
        const bias = normal(r, N, 0.1);
        for (const layout of ['bf16', 'bf16p'] as const) {
          let w: Tensor = tensorFromArray('bf16', [N, K], wv);
          if (layout === 'bf16p') w = q.convert(w, 'bf16p');
          const b = tensorFromArray('f32', [N], bias);
          const y32 = await q.readF32(q.matmul(tensorFromArray('f32', [M, K], fromBf16(xb)), w, b));
          const y16 = await q.readF32(q.matmul(tensorFromArray('bf16', [M, K], xb), w, b));
          expectSameBits(y16, y32, `${isa} ${precision} ${layout} ${M}x${K}x${N}`);
        }
      }
      expect(() => q.matmul(tensorFromArray('bf16', [2, 4], new Uint16Array(8)), tensorFromArray('f32', [3, 4], new Float32Array(12)))).toThrow(/bf16 activations need bf16 or bf16p weights/);
      q.dispose();
    }
  });
});

describe('invariant: y[m, n] is the same bits whatever M, the other rows and the thread split', () => {
  const K = 545, N = 517, R = 16;
  const x = normal(rng(11), R * K), w = normal(rng(12), N * K, 0.3), b = normal(rng(13), N);
  const kinds: [Precision, 'f32' | 'bf16' | 'f16' | 'q8' | 'bf16p' | 'q8p'][] = [
    ['exact', 'f32'], ['exact', 'bf16'], ['exact', 'f16'], ['exact', 'q8'], ['exact', 'bf16p'], ['exact', 'q8p'],
    ['fast', 'bf16'], ['fast', 'q8'], ['fast', 'bf16p'], ['fast', 'q8p'],
  ];
  for (const isa of levels) {
    it(isa, async () => {
      for (const [precision, wdt] of kinds) {
        const q1 = new Queue({ isa, threads: 1, precision }), q2 = new Queue({ isa, threads: 2, precision }), q3 = new Queue({ isa, threads: 3, precision });
        const src = wdt === 'f32' ? tensorFromArray('f32', [N, K], w) : tensorFromArray(wdt === 'f16' ? 'f16' : 'bf16', [N, K], wdt === 'f16' ? toF16(w) : toBf16(w));
        const wt = wdt === 'q8' || wdt === 'bf16p' || wdt === 'q8p' ? q1.convert(src, wdt) : src;
        await q1.sync();  // the other queues read it
        const label = `${isa} ${precision} ${wdt}`;
        const all = await matmul(q2, x, R, K, wt, b);
        // Each row alone, on one thread.
        for (let m = 0; m < R; m += 5) expectSameBits(await matmul(q1, x.subarray(m * K, (m + 1) * K), 1, K, wt, b), all.subarray(m * N, (m + 1) * N), `${label} row ${m} alone`);
        // Rows 3..9 (M = 7: other tiles) on three threads.
        expectSameBits(await matmul(q3, x.subarray(3 * K, 10 * K), 7, K, wt, b), all.subarray(3 * N, 10 * N), `${label} rows 3..9`);
        // The 16 rows reversed and followed by 17 more (M = 33: prefill-sized, other neighbours).
        const big = new Float32Array(33 * K);
        for (let m = 0; m < R; m++) big.set(x.subarray((R - 1 - m) * K, (R - m) * K), m * K);
        big.set(normal(rng(14), 17 * K), R * K);
        const yb = await matmul(q1, big, 33, K, wt, b);
        for (let m = 0; m < R; m++) expectSameBits(yb.subarray(m * N, (m + 1) * N), all.subarray((R - 1 - m) * N, (R - m) * N), `${label} row ${R - 1 - m} in M=33`);
        wt.dispose(); src.dispose();
        q1.dispose(); q2.dispose(); q3.dispose();
      }
    });
  }
});

describe('invariant, many rows and a small bf16p weight (the threads split the rows: ops/matmul.cpp)', () => {
  // M ≥ 48 with a weight ≤ 512 KiB takes the row split on two or more threads; every row must
  // still be the bits of that row computed alone, and of the one-thread (panel) split.
  const K = 97, N = 130, M = 101;
  const x = normal(rng(21), M * K), w = normal(rng(22), N * K, 0.3), b = normal(rng(23), N);
  for (const isa of levels) {
    it(isa, async () => {
      for (const precision of ['fast', 'exact'] as const) {
        const q1 = new Queue({ isa, threads: 1, precision }), q2 = new Queue({ isa, threads: 2, precision }), q3 = new Queue({ isa, threads: 3, precision });
        const src = tensorFromArray('bf16', [N, K], toBf16(w));
        const wt = q1.convert(src, 'bf16p');
        await q1.sync();
        const label = `${isa} ${precision}`;
        const one = await matmul(q1, x, M, K, wt, b);
        expectSameBits(await matmul(q2, x, M, K, wt, b), one, `${label} 2 threads`);
        expectSameBits(await matmul(q3, x, M, K, wt, b), one, `${label} 3 threads`);
        for (const m of [0, 23, 24, 70, 100]) expectSameBits(await matmul(q1, x.subarray(m * K, (m + 1) * K), 1, K, wt, b), one.subarray(m * N, (m + 1) * N), `${label} row ${m} alone`);
        expect(one.every(Number.isFinite)).toBe(true);
        wt.dispose(); src.dispose();
        q1.dispose(); q2.dispose(); q3.dispose();
      }
    });
  }
});

describe('queue options and probes', () => {
  it('precision defaults to fast, takes exact, rejects anything else; kernels say what runs', () => {
    const q = new Queue({ threads: 1 });
    expect(q.precision).toBe('fast');
    expect(q.kernels!.isa).toBe(q.isa);
    q.dispose();
    expect(q.kernels).toBeNull();
    const e = new Queue({ threads: 1, precision: 'exact' });
    expect(e.precision).toBe('exact');
    expect(e.kernels!.bf16).toMatch(/exact products/);
    expect(e.kernels!.q8).toMatch(/dequantised exactly/);
    e.dispose();
    expect(() => new Queue({ precision: 'fastest' as Precision })).toThrow(/precision must be 'exact' or 'fast'/);
  });

  it('compute_peak runs the level loop on every thread', async () => {
    for (const isa of levels) {
      const q = new Queue({ isa, threads: 2 });
      for (const kind of ['f32', 'bf16', 'q8'] as const) {
        const [macs, sec] = await q.readF32(q.computePeak(kind, 1000));
        expect(macs, `${isa} ${kind}`).toBeGreaterThan(0);
        expect(sec).toBeGreaterThan(0);
      }
      expect(() => q.op('compute_peak', [], { kind: 'f64', iters: 1 })).toThrow(/kind/);
      q.dispose();
    }
  });
});

describe('q8p fast: the zmm and ymm kernels give the same bits', () => {
  // Each lane's block sum is an exact int32 and the f32 steps after it are the same operations
  // (kernels_q8p.inc, kernels_q8p_v256.inc), so every level with a q8p kernel agrees exactly.
  it('on random shapes, every token tile', async () => {
    const withKernel = levels.filter((isa) => isa !== 'scalar');
    if (withKernel.length < 2) return;
    for (const [M, K, N] of [[1, 33, 17], [3, 545, 40], [8, 896, 48], [13, 1000, 33]]) {
      const r = rng(M * 7 + K + N);
      const x = normal(r, M * K), w = normal(r, N * K, 0.5), b = normal(r, N);
      let first: Float32Array | null = null;
      for (const isa of withKernel) {
        const q = new Queue({ isa, threads: 2, precision: 'fast' });
        const wt = q.convert(tensorFromArray('f32', [N, K], w), 'q8p');
        const y = await matmul(q, x, M, K, wt, b);
        if (first) expectSameBits(y, first, `${isa} M=${M} K=${K} N=${N}`);
        else first = y;
        wt.dispose(); q.dispose();
      }
    }
  });
});

describe('panel layouts at the edges: K = 0, M = 0, N = 0, one value', () => {
  it('y = x·Wᵀ + b exactly where every product is exact, at every level and precision', async () => {
    for (const isa of levels)
      for (const precision of ['fast', 'exact'] as const) {
        const q = new Queue({ isa, threads: 2, precision });
        for (const [M, K, N] of [[1, 0, 5], [0, 4, 5], [2, 4, 0], [3, 1, 1], [1, 2, 17], [9, 3, 33]]) {
          for (const dt of ['bf16p', 'q8p'] as const) {
            // W = 0.5, x = 2, bias 1: y = 1 + K. Exact for bf16p (every value and product is
            // exact in bf16/f32); q8 rounds its scale up from amax/127, so each weight is within
            // half a step (≤ 2⁻⁸ relative) of 0.5 and y within K·2⁻⁶ of 1 + K.
            const w = q.convert(tensorFromArray('f32', [N, K], new Float32Array(N * K).fill(0.5)), dt);
            const y = await matmul(q, new Float32Array(M * K).fill(2), M, K, w, new Float32Array(N).fill(1));
            expect(y.length, `${isa} ${precision} ${dt} ${M}×${K}×${N}`).toBe(M * N);
            for (const v of y) {
              if (dt === 'bf16p') expect(v, `${isa} ${precision} ${dt} ${M}×${K}×${N}`).toBe(1 + K);
              else expect(Math.abs(v - (1 + K)), `${isa} ${precision} ${dt} ${M}×${K}×${N}`).toBeLessThan(K * 2 ** -6 + 1e-6);
            }
            w.dispose();
          }
        }
        q.dispose();
      }
  });
});
