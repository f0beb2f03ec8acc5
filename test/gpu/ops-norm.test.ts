// CUDA row ops and rotary embedding (csrc/cuda/ops_norm.cu, ops_rope.cu) against the CPU op:
// rms_norm, layer_norm, softmax, rope_cos_sin, rope. Odd sizes, NaN/Inf rows.
import { describe, it } from 'vitest';
import { EXACT, ULP, expectGpuMatchesCpu, gpuProbe, i32, randTensor, title } from './ops-helpers.js';

const p = gpuProbe();

describe.skipIf(!p.available)(title('norm, softmax, rope', p), () => {
  // Same f32 formula on both sides; the double row statistics are a tree sum on the GPU and an
  // index-order sum on the CPU, which differ in the last bits of a double: after the f32
  // rounding that is at most 1 ulp (a rounding tie). layer_norm's output can cancel to ~0
  // (−μ·inv·w + b), so it also gets 1e-6 absolute (≈ 1 ulp of the row's scale).
  it.each([[1], [33], [4097]])('rms_norm / layer_norm [7, %i], NaN row: 1 ulp', async (H) => {
    const x = randTensor('f32', [7, H], 21, -4, 4), w = randTensor('f32', [H], 22), b = randTensor('f32', [H], 23);
    const xa = randTensor('f32', [7, H], 21, -4, 4, true);
    for (const xt of [x.t, xa.t]) {
      await expectGpuMatchesCpu('rms_norm', [xt, w.t], { eps: 1e-6 }, { abs: 0, rel: ULP }, `rms_norm H ${H}`);
      await expectGpuMatchesCpu('layer_norm', [xt, w.t, b.t], { eps: 1e-5 }, { abs: 1e-6, rel: ULP }, `layer_norm H ${H}`);
    }
  });

  it.each([[1], [151], [4099]])('softmax [5, %i] with NaN / −Inf / +Inf rows: 1 ulp', async (C) => {
    const x = randTensor('f32', [5, C], 24, -30, 30, true);  // row 0 holds NaN (and ±Inf when C > 9)
    await expectGpuMatchesCpu('softmax', [x.t], {}, { abs: 0, rel: ULP }, `softmax C ${C}`);
  });

  // rope_cos_sin: inv_freq is computed on the host with the CPU op's expression; cos/sin are
  // double functions rounded once on both sides (CUDA's within 2 ulp of a double): 1 ulp.
  // rope: x·cos ∓ x'·sin as separately rounded f32 operations on both sides: exact.
  it.each([[2], [64], [128]])('rope_cos_sin dim %i (positions up to 100032), then rope', async (dim) => {
    const pos = i32([33], Array.from({ length: 33 }, (_, i) => (i < 30 ? i * 37 : 100000 + i)));
    await expectGpuMatchesCpu('rope_cos_sin', [pos], { theta: 1e6, dim }, { abs: 0, rel: ULP }, `rope_cos_sin ${dim}`);
    const x = randTensor('f32', [33, 3, dim], 25, -2, 2, true);
    const c = randTensor('f32', [33, dim], 26), s = randTensor('f32', [33, dim], 27);
    await expectGpuMatchesCpu('rope', [x.t, c.t, s.t], {}, EXACT, `rope ${dim}`);
  });
});
