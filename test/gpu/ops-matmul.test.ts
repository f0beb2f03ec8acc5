// CUDA matmul (csrc/cuda/ops_matmul.cu): y = x·Wᵀ (+ b) with f32 activations and f32/bf16/f16
// weights, against a float64 reference and the CPU op. Covers the small-M kernel (M ≤ 16:
// 16-byte weight loads when K % 8 == 0, scalar otherwise) and the tiled kernel (M > 16), odd
// M/K/N, bias or none, K = 0, NaN/Inf in x.
//
// Tolerance: both backends accumulate in f32 in their own order, so each output is within
// (K + 1)·2⁻²⁴·Σ_k|x·w| (+ the reference's own f32 rounding) of the float64 value; the GPU is
// held to that bound element by element.
import { describe, it } from 'vitest';
import { expectGpuMatchesCpu, gpuProbe, randTensor, runBoth, title } from './ops-helpers.js';

const p = gpuProbe();

function check(M: number, K: number, N: number, wt: 'f32' | 'bf16' | 'f16', bias: boolean, seed: number): Promise<void> {
  const x = randTensor('f32', [M, K], seed), w = randTensor(wt, [N, K], seed + 1), b = randTensor('f32', [N], seed + 2);
  return runBoth('matmul', bias ? [x.t, w.t, b.t] : [x.t, w.t]).then(({ gpu, cpu }) => {
    for (let m = 0; m < M; m++)
      for (let n = 0; n < N; n++) {
        let s = bias ? b.f32[n] : 0, sa = Math.abs(s);
        for (let k = 0; k < K; k++) {
          const t = x.f32[m * K + k] * w.f32[n * K + k];
          s += t;
          sa += Math.abs(t);
        }
        const bound = (K + 1) * 2 ** -24 * sa + 2 ** -24 * Math.abs(s) + 1e-30;
        for (const [name, got] of [['gpu', gpu[0][m * N + n]], ['cpu', cpu[0][m * N + n]]] as const)
          if (!(Math.abs(got - s) <= bound))
            throw new Error(`matmul M${M} K${K} N${N} ${wt}: ${name} y[${m}, ${n}] = ${got}, float64 ${s}, bound ${bound}`);
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

  it('NaN / ±Inf in x reach exactly the outputs they touch', async () => {
    // Every output of a row with a NaN is NaN on both; tolerance as above for the finite rest.
    const x = randTensor('f32', [3, 64], 302, -1, 1, true), w = randTensor('bf16', [33, 64], 303);
    await expectGpuMatchesCpu('matmul', [x.t, w.t], {}, { abs: 1e-5, rel: 1e-5 }, 'matmul NaN');
  });
});
