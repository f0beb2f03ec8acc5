// The CUDA path end to end on a real GPU: probe, device memory, host↔device copies, one op
// (`add`, f32) compared with the CPU op and a plain reference. Skipped, with the reason in the
// suite name, where CUDA is unavailable; `npm run test:gpu` sets DIFFUSIONVL_GPU=cuda so that on
// a GPU machine an unavailable backend fails here instead of skipping.
import { describe, expect, it } from 'vitest';
import { BackendError, DTypeError, ShapeError } from '../../lib/errors.js';
import { type BackendInfo, cudaRunOp, getBackendInfo } from '../../lib/native/backend.js';
import { Queue, tensorFromArray } from '../../lib/native/index.js';
import { normal, rng } from '../helpers/random.js';

function probe(): { info?: BackendInfo; why: string } {
  if (process.env.DIFFUSIONVL_GPU === 'cuda') return { info: getBackendInfo({ gpu: 'cuda' }), why: '' };  // throws with the reason
  const info = getBackendInfo({ gpu: 'auto' });
  return { info, why: info.cuda.available ? '' : `${info.cuda.reason}: ${info.cuda.detail}` };
}
const { info, why } = probe();
const available = !!info?.cuda.available;

/** Element-wise equality where NaN matches NaN (any payload) and nothing else. */
function expectSameF32(got: Float32Array, ref: Float32Array, label: string): void {
  expect(got.length, label).toBe(ref.length);
  for (let i = 0; i < ref.length; i++) {
    const g = got[i], r = ref[i];
    if (Number.isNaN(r) ? !Number.isNaN(g) : g !== r) throw new Error(`${label}: element ${i}: got ${g}, expected ${r}`);
  }
}

describe.skipIf(!available)(`CUDA add${available ? '' : ` (skipped: ${why})`}`, () => {
  it('reports the device it will use', () => {
    const d = info!.cuda.device!;
    expect(info!.backend).toBe('cuda');
    expect(d.name.length).toBeGreaterThan(0);
    expect(d.computeCapability).toMatch(/^\d+\.\d+$/);
    expect(d.memoryBytes).toBeGreaterThan(0);
    expect(info!.cuda.runtimeVersion).toMatch(/^\d+\.\d+$/);
  });

  // f32 add is one correctly rounded IEEE operation on both sides (no FMA can form), and the
  // float64 sum of two f32 values whose exponents differ by < 29 is exact, so fround(a + b) is
  // the exact expected result: tolerance 0.
  const shapes: [number[], number[]][] = [
    [[1], [1]],
    [[3], [3]],
    [[7, 33], [7, 33]],
    [[127, 33], [33]],  // b broadcast over the rows
    [[3, 5, 7], [7]],
    [[1, (1 << 24) + 5], [(1 << 24) + 5]],  // more than one grid-stride pass (65535 blocks × 256)
  ];
  it.each(shapes)('a %j + b %j equals the CPU op and the reference exactly', async (sa, sb) => {
    const r = rng(sa.reduce((x, y) => x * 31 + y, 7));
    const na = sa.reduce((x, y) => x * y, 1), nb = sb.reduce((x, y) => x * y, 1);
    const a = normal(r, na), b = normal(r, nb, 3);
    if (na > 4) {
      a[1] = NaN;
      a[2] = Infinity;
      b[2 % nb] = -Infinity;  // inf + -inf = NaN
      b[3 % nb] = -0;
    }
    const ta = tensorFromArray('f32', sa, a), tb = tensorFromArray('f32', sb, b);
    const [y] = cudaRunOp('add', [ta, tb]);
    expect(y.shape).toEqual(sa);
    const q = new Queue({ threads: 2 });
    try {
      const gpu = await q.readF32(y);
      const cpu = await q.readF32(q.add(ta, tb));
      const ref = new Float32Array(na);
      for (let i = 0; i < na; i++) ref[i] = Math.fround(a[i] + b[nb === na ? i : i % nb]);
      expectSameF32(gpu, ref, `cuda add ${JSON.stringify(sa)}`);
      expectSameF32(cpu, gpu, `cpu vs cuda add ${JSON.stringify(sa)}`);
    } finally {
      q.dispose();
    }
  });

  it('an empty tensor goes through without a launch', () => {
    const [y] = cudaRunOp('add', [tensorFromArray('f32', [0, 4], new Float32Array(0)), tensorFromArray('f32', [4], new Float32Array(4))]);
    expect(y.shape).toEqual([0, 4]);
  });

  it('uses the CPU op validation (typed errors) and refuses ops the plugin lacks', () => {
    const a = tensorFromArray('f32', [2, 3], new Float32Array(6));
    expect(() => cudaRunOp('add', [a, tensorFromArray('f32', [4], new Float32Array(4))])).toThrow(ShapeError);
    const ids = tensorFromArray('i32', [6], new Int32Array(6));
    expect(() => cudaRunOp('add', [ids, ids])).toThrow(DTypeError);
    // stream_read (the CPU bandwidth probe) has no CUDA version.
    expect(() => cudaRunOp('stream_read', [a], { repeat: 1 })).toThrow(BackendError);
    expect(() => cudaRunOp('stream_read', [a], { repeat: 1 })).toThrow(/not implemented for f32 on the CUDA backend/);
  });

  it('frees device memory: twice the card\'s memory goes through the allocator', () => {
    // Each call allocates 3 × 64 MiB on the device (two inputs, one output) and frees them on
    // return; if any leaked, the card would run out before the loop ends.
    const n = 16 << 20;
    const rounds = Math.ceil((2 * info!.cuda.device!.memoryBytes) / (3 * 4 * n));
    const a = tensorFromArray('f32', [n], new Float32Array(n)), b = tensorFromArray('f32', [n], new Float32Array(n));
    for (let i = 0; i < rounds; i++) cudaRunOp('add', [a, b])[0].dispose();
  });
});
