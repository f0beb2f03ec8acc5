// CUDA elementwise ops (csrc/cuda/ops_elementwise.cu) against the CPU op: mul, scale, convert,
// silu, swiglu, gelu, gelu_tanh. Odd sizes, NaN/±Inf/−0 planted first, every dtype convert takes.
// Skipped with the reason where CUDA is unavailable (failing under DIFFUSIONVL_GPU=cuda).
import { describe, it } from 'vitest';
import { EXACT, expectGpuMatchesCpu, gpuProbe, randTensor, title } from './ops-helpers.js';

const p = gpuProbe();

describe.skipIf(!p.available)(title('elementwise ops', p), () => {
  // mul and scale are one correctly rounded f32 multiply on both sides (no FMA can form):
  // tolerance 0. convert is the same round-to-nearest-even bit recipe (dtype.h / dtype.cuh): 0.
  it.each([[[1], [1]], [[7, 33], [33]], [[127, 33], [127, 33]]])('mul %j * %j: exact', async (sa, sb) => {
    const a = randTensor('f32', sa, 11, -4, 4, true), b = randTensor('f32', sb, 12, -4, 4);
    await expectGpuMatchesCpu('mul', [a.t, b.t], {}, EXACT, `mul ${JSON.stringify(sa)}`);
  });

  it.each([[[1]], [[3, 5, 7]], [[0, 3]]])('scale %j: exact', async (s) => {
    const x = randTensor('f32', s, 13, -4, 4, true);
    await expectGpuMatchesCpu('scale', [x.t], { s: 0.37 }, EXACT, `scale ${JSON.stringify(s)}`);
  });

  const dts = ['f32', 'bf16', 'f16'] as const;
  it.each(dts.flatMap((a) => dts.map((b) => [a, b])))('convert %s -> %s: bit for bit', async (from, to) => {
    // ±70000 overflows f16 (→ ±Inf); 1e-6-sized values land in f16's subnormals.
    const x = randTensor(from, [33, 7], 14, -70000, 70000, true);
    const small = randTensor(from, [33, 7], 15, -1e-6, 1e-6);
    await expectGpuMatchesCpu('convert', [x.t], { dtype: to }, EXACT, `convert ${from}->${to}`);
    await expectGpuMatchesCpu('convert', [small.t], { dtype: to }, EXACT, `convert small ${from}->${to}`);
  });

  // Activations: the CPU op uses glibc's f32 expf/erfcf (≤ 1 ulp), the GPU a correctly rounded
  // one (double, rounded once), each followed by up to three f32 roundings: 5 ulp (rel 6e-7).
  const ACT = { abs: 0, rel: 6e-7 };
  it.each([['silu'], ['gelu'], ['gelu_tanh']])('%s over [-20, 20] with NaN/Inf: 5 ulp', async (op) => {
    for (const s of [[1], [3], [127, 33]]) {
      const x = randTensor('f32', s, 16, -20, 20, true);
      await expectGpuMatchesCpu(op, [x.t], {}, ACT, `${op} ${JSON.stringify(s)}`);
    }
  });

  it('swiglu [7, 33]: 5 ulp', async () => {
    const g = randTensor('f32', [7, 33], 17, -20, 20, true), u = randTensor('f32', [7, 33], 18, -3, 3);
    await expectGpuMatchesCpu('swiglu', [g.t, u.t], {}, ACT, 'swiglu');
  });
});
