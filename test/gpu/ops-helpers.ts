// ops-helpers.ts — shared plumbing of test/gpu/ops-*.test.ts: the CUDA probe (skip with the
// reason where there is no usable GPU; fail under DIFFUSIONVL_GPU=cuda, as `npm run test:gpu`
// sets), one op run on both backends, and the comparisons.
//
// Every case runs the op through the CPU op (Queue.op: the contract, itself tested against
// float64 references in test/ops) and through the plugin (cudaRunOp: the CPU op's plan()
// validates, then upload, run, download) on the same host tensors, and compares the outputs
// NaN first (NaN must meet NaN, any payload), then infinities, then the stated tolerance.
import { type BackendInfo, cudaRunOp, getBackendInfo } from '../../lib/native/backend.js';
import { Queue, type Tensor, tensorFromArray } from '../../lib/native/index.js';
import type { Attrs, DType } from '../../lib/native/types.js';
import { type Tolerance, compareArrays } from '../helpers/compare.js';
import { fromBf16, fromF16, rng, toBf16, toF16, uniform } from '../helpers/random.js';

export function gpuProbe(): { available: boolean; why: string; info?: BackendInfo } {
  if (process.env.DIFFUSIONVL_GPU === 'cuda') {
    const info = getBackendInfo({ gpu: 'cuda' });  // throws with the reason
    return { available: true, why: '', info };
  }
  const info = getBackendInfo({ gpu: 'auto' });
  return { available: info.cuda.available, why: info.cuda.available ? '' : `${info.cuda.reason}: ${info.cuda.detail}`, info };
}

/** Suite title: the op family, plus why it is skipped. */
export function title(what: string, p: { available: boolean; why: string }): string {
  return `CUDA ${what}${p.available ? '' : ` (skipped: ${p.why})`}`;
}

/** 1 ulp of f32 relative to the value (2⁻²³). */
export const ULP = 2 ** -23;
export const EXACT: Tolerance = { abs: 0, rel: 0 };

/** Values of a tensor read back, as numbers (bf16/f16 decoded to f32 values). */
export function values(data: Float32Array | Int32Array | Uint16Array | Uint8Array, dtype: DType): ArrayLike<number> {
  if (dtype === 'bf16') return fromBf16(data as Uint16Array);
  if (dtype === 'f16') return fromF16(data as Uint16Array);
  return data;
}

/** A host tensor of dtype with values uniform in [lo, hi) (rounded for bf16/f16; i32 floored;
 *  u8 any byte); `plant`
 *  writes NaN, +Inf, −Inf, −0 at elements 0, 5, 9, 12 (where they exist). */
export function randTensor(
  dtype: DType, shape: readonly number[], seed: number, lo = -1, hi = 1, plant = false,
): { t: Tensor; f32: Float32Array } {
  const n = shape.reduce((a, b) => a * b, 1);
  const r = rng(seed);
  if (dtype === 'u8') {
    const a = Uint8Array.from({ length: n }, () => Math.floor(256 * r()));
    return { t: tensorFromArray('u8', shape, a), f32: Float32Array.from(a) };
  }
  if (dtype === 'i32') {
    const a = new Int32Array(n);
    for (let i = 0; i < n; i++) a[i] = Math.floor(lo + (hi - lo) * r());
    return { t: tensorFromArray('i32', shape, a), f32: Float32Array.from(a) };
  }
  const f = uniform(r, n, lo, hi);
  if (plant) [[0, NaN], [5, Infinity], [9, -Infinity], [12, -0]].forEach(([i, v]) => { if (i < n) f[i] = v; });
  if (dtype === 'f32') return { t: tensorFromArray('f32', shape, f), f32: f };
  const h = dtype === 'bf16' ? toBf16(f) : toF16(f);
  return { t: tensorFromArray(dtype, shape, h), f32: Float32Array.from(dtype === 'bf16' ? fromBf16(h) : fromF16(h)) };
}

export function i32(shape: readonly number[], v: ArrayLike<number>): Tensor {
  return tensorFromArray('i32', shape, Int32Array.from(v));
}

export interface Both {
  cpu: ArrayLike<number>[];
  gpu: ArrayLike<number>[];
  shapes: (number[] | null)[];
}

/** Runs op on the CPU (a fresh 2-thread queue) and the GPU with the same inputs and attrs. */
export async function runBoth(name: string, inputs: readonly (Tensor | null)[], attrs: Attrs = {}): Promise<Both> {
  const q = new Queue({ threads: 2 });
  try {
    const gpuT = cudaRunOp(name, inputs as Tensor[], attrs);
    const cpuT = q.op(name, inputs, attrs);
    const out: Both = { cpu: [], gpu: [], shapes: [] };
    for (let i = 0; i < cpuT.length; i++) {
      const dt = cpuT[i].dtype as DType;
      out.cpu.push(values(await q.read(cpuT[i]), dt));
      out.gpu.push(values(await q.read(gpuT[i]), gpuT[i].dtype as DType));
      out.shapes.push(gpuT[i].shape);
      if (JSON.stringify(gpuT[i].shape) !== JSON.stringify(cpuT[i].shape) || gpuT[i].dtype !== dt)
        throw new Error(`${name}: output ${i} is ${gpuT[i].dtype}${JSON.stringify(gpuT[i].shape)} on the GPU, ${dt}${JSON.stringify(cpuT[i].shape)} on the CPU`);
    }
    return out;
  } finally {
    q.dispose();
  }
}

/** Throws naming the first bad element (NaN first, then infinities, then tol). */
export function expectSame(got: ArrayLike<number>, ref: ArrayLike<number>, tol: Tolerance, label: string): void {
  const r = compareArrays(got, ref, tol, label);
  if (!r.ok) throw new Error(r.message);
}

/** GPU vs CPU op on every output. */
export async function expectGpuMatchesCpu(
  name: string, inputs: readonly (Tensor | null)[], attrs: Attrs, tol: Tolerance | Tolerance[], label: string,
): Promise<Both> {
  const b = await runBoth(name, inputs, attrs);
  b.cpu.forEach((ref, i) => expectSame(b.gpu[i], ref, Array.isArray(tol) ? tol[i] : tol, `${label} output ${i}`));
  return b;
}
