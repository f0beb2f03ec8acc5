// CUDA matmul (csrc/cuda/ops_matmul.cu): y = x·Wᵀ (+ b) with f32 activations and f32/bf16/f16
// weights, against a float64 reference and the CPU op. Covers the small-M kernels (M ≤ 16) and
// the tiled kernels (M > 16) of both paths — tensor cores (bf16/f16 weights on sm_80+: mma.sync
// tf32 with x split into hi + lo) and CUDA cores (f32 weights, older GPUs,
// DIFFUSIONVL_CUDA_MATMUL=simt) — with odd M/K/N (K not a multiple of 8, partial n8 slices,
// split-K), bias or none, K = 0, NaN/±Inf in x and NaN in W.
//
// Tolerance, derived in ops_matmul.cu (not fitted): each output is within
// T·2⁻²⁴·(Σ_k|x·w| + |b|) + 2⁻²⁴·|y| (the reference's own f32 rounding) of the float64 value, with
// T = K + 1 for CUDA-core f32 accumulation and T = ⌈K/8⌉ + 28 for the tensor-core path (split
// residual 4, one mma pair per 8 columns ≤ 21, f32 adds of the ⌈K/8⌉ group sums + bias, 2 of
// slack). JS cannot see which path ran, so bf16/f16 weights get the larger of the two; f32
// weights always take the CUDA cores. Non-finite references must be met exactly (NaN by NaN).
import { describe, it } from 'vitest';
import { tensorFromArray } from '../../lib/native/index.js';
import { toBf16, toF16 } from '../helpers/random.js';
import { gpuProbe, randTensor, runBoth, title } from './ops-helpers.js';

const p = gpuProbe();

/** Bound factor T above for weights of dtype wt. */
function terms(K: number, wt: 'f32' | 'bf16' | 'f16'): number {
  return wt === 'f32' ? K + 1 : Math.max(K + 1, Math.ceil(K / 8) + 28);
}

function check(
  M: number, K: number, N: number, wt: 'f32' | 'bf16' | 'f16', bias: boolean, seed: number, plant = false,
): Promise<void> {
  const x = randTensor('f32', [M, K], seed), w = randTensor(wt, [N, K], seed + 1), b = randTensor('f32', [N], seed + 2);
  if (plant && K > 0) {
    // NaN in x row 0, +Inf in row 1, −Inf in row 2 (column 3 or the last); NaN in W row 2.
    const c3 = Math.min(3, K - 1), c5 = Math.min(5, K - 1);
    x.f32[0] = NaN;
    if (M > 1) x.f32[K + c3] = Infinity;
    if (M > 2) x.f32[2 * K + c3] = -Infinity;
    x.t = tensorFromArray('f32', [M, K], x.f32);
    if (N > 2) {
      w.f32[2 * K + c5] = NaN;
      w.t = tensorFromArray(wt, [N, K], wt === 'f32' ? w.f32 : wt === 'bf16' ? toBf16(w.f32) : toF16(w.f32));
    }
  }
  return runBoth('matmul', bias ? [x.t, w.t, b.t] : [x.t, w.t]).then(({ gpu, cpu }) => {
    for (let m = 0; m < M; m++)
      for (let n = 0; n < N; n++) {
        let s = bias ? b.f32[n] : 0, sa = Math.abs(s);
        for (let k = 0; k < K; k++) {
          const t = x.f32[m * K + k] * w.f32[n * K + k];
          s += t;
          sa += Math.abs(t);
        }
        const fs = Math.fround(s);
        for (const [name, got, T] of [['gpu', gpu[0][m * N + n], terms(K, wt)], ['cpu', cpu[0][m * N + n], K + 1]] as const) {
          const bound = T * 2 ** -24 * sa + 2 ** -24 * Math.abs(s) + 1e-30;
          const ok = Number.isFinite(fs) ? Math.abs(got - s) <= bound : Number.isNaN(fs) ? Number.isNaN(got) : got === fs;
          if (!ok)
            throw new Error(`matmul M${M} K${K} N${N} ${wt}: ${name} y[${m}, ${n}] = ${got}, float64 ${s}, bound ${bound}`);
        }
      }
  });
}

describe.skipIf(!p.available)(title('matmul', p), () => {
  const dts = ['f32', 'bf16', 'f16'] as const;
  it.each(dts)('small-M and tiled kernels, %s weights, odd sizes, vs float64', async (wt) => {
    let seed = 100;
    for (const M of [1, 3, 8, 16, 17, 33])
      for (const K of [1, 7, 64, 896]) await check(M, K, M === 17 ? 127 : 33, wt, M % 2 === 1, seed++);
    await check(130, 200, 70, wt, true, seed++);
  });

  it('K = 0 gives the bias (or zeros)', async () => {
    await check(5, 0, 9, 'bf16', true, 300);
    await check(17, 0, 9, 'f32', false, 301);
  });

  it.each(['bf16', 'f16'] as const)('tensor-core shapes, %s weights: K 200 / 1001, N 1 / 7 / 130, vs float64', async (wt) => {
    let seed = 400;
    for (const M of [1, 3, 8, 16, 17, 33])
      for (const K of [200, 1001])
        for (const N of [1, 7, 130]) await check(M, K, N, wt, M % 2 === 1, seed++);
  });

  it('NaN / ±Inf in x and NaN in W reach exactly the outputs they touch', async () => {
    let seed = 302;
    for (const wt of ['f32', 'bf16', 'f16'] as const) await check(3, 64, 33, wt, false, seed++, true);
    for (const wt of ['bf16', 'f16'] as const) {
      await check(3, 200, 130, wt, true, seed++, true);
      await check(16, 1001, 7, wt, false, seed++, true);
      await check(33, 200, 70, wt, true, seed++, true);
      await check(40, 1001, 9, wt, false, seed++, true);
    }
  });
});
