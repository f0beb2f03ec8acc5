// CUDA row movers (csrc/cuda/ops_shape.cu) against the CPU op: embedding, reshape, gather_rows,
// slice_cols, concat_rows (exact: no arithmetic), and the typed errors of bad indices.
// kv_cache_append and scatter_rows write into input 0: cudaRunOp copies the device result back
// into that tensor, so each is run on two copies of the same input (CPU op, GPU op) and the
// copies are compared exactly.
import { describe, expect, it } from 'vitest';
import { OutOfRangeError } from '../../lib/errors.js';
import { cudaRunOp } from '../../lib/native/backend.js';
import { EXACT, expectGpuMatchesCpu, expectSame, gpuProbe, i32, randTensor, title, values } from './ops-helpers.js';

const p = gpuProbe();
const dts = ['f32', 'bf16', 'f16'] as const;

describe.skipIf(!p.available)(title('shape ops and embedding', p), () => {
  it.each(dts)('embedding, gather_rows, slice_cols, concat_rows (%s): exact', async (dt) => {
    const tab = randTensor(dt, [127, 33], 31, -1, 1, true);
    const ids = i32([7], [0, 53, 106, 0, 85, 11, 126]);  // row 0 holds NaN/Inf; repeats allowed
    await expectGpuMatchesCpu('embedding', [ids, tab.t], {}, EXACT, `embedding ${dt}`);
    await expectGpuMatchesCpu('gather_rows', [tab.t, i32([9], [0, 31, 62, 93, 124, 28, 59, 90, 31])], {}, EXACT, `gather ${dt}`);
    await expectGpuMatchesCpu('slice_cols', [tab.t], { start: 3, len: 17 }, EXACT, `slice_cols ${dt}`);
    await expectGpuMatchesCpu('slice_cols', [tab.t], { start: 33, len: 0 }, EXACT, `slice_cols empty ${dt}`);
    const a = randTensor(dt, [3, 7], 32), b = randTensor(dt, [5, 7], 33);
    await expectGpuMatchesCpu('concat_rows', [a.t, b.t], {}, EXACT, `concat_rows ${dt}`);
  });

  it('gather_rows of i32 and of 3-byte u8 rows, reshape: exact', async () => {
    const x = randTensor('i32', [127, 5], 34, -1000, 1000);
    const idx = i32([5], [126, 109, 92, 75, 58]);
    await expectGpuMatchesCpu('gather_rows', [x.t, idx], {}, EXACT, 'gather i32');
    const { tensorFromArray } = await import('../../lib/native/index.js');
    const u8 = tensorFromArray('u8', [127, 3], Uint8Array.from({ length: 381 }, (_, i) => (i * 37) & 255));
    await expectGpuMatchesCpu('gather_rows', [u8, idx], {}, EXACT, 'gather u8');
    await expectGpuMatchesCpu('reshape', [x.t], { shape: [5, -1] }, EXACT, 'reshape');
  });

  it('bad ids / indices: OutOfRangeError naming the position, as on the CPU', () => {
    const tab = randTensor('f32', [11, 4], 35);
    expect(() => cudaRunOp('embedding', [i32([3], [0, 11, 2]), tab.t])).toThrow(OutOfRangeError);
    expect(() => cudaRunOp('embedding', [i32([3], [0, 11, 2]), tab.t])).toThrow(/id 11 at position 1/);
    expect(() => cudaRunOp('gather_rows', [tab.t, i32([2], [3, -1])])).toThrow(/idx\[1\] = -1/);
    expect(() => cudaRunOp('scatter_rows', [tab.t, randTensor('f32', [2, 4], 36).t, i32([2], [12, 0])])).toThrow(OutOfRangeError);
  });

  it.each(dts)('kv_cache_append (%s cache) and scatter_rows write the same bytes as the CPU op', async (dt) => {
    const { Queue } = await import('../../lib/native/index.js');
    const q = new Queue({ threads: 2 });
    try {
      // Two identical copies of each destination: convert to the same dtype copies.
      const cache = randTensor(dt, [2, 67, 64], 37);
      const cacheCpu = q.convert(cache.t, dt), cacheGpu = q.convert(cache.t, dt);
      const x = randTensor('f32', [7, 2, 64], 38).t;
      q.kvCacheAppend(cacheCpu, x, 13);
      await q.sync();
      expect(cudaRunOp('kv_cache_append', [cacheGpu, x], { pos0: 13 })).toEqual([]);
      expectSame(values(await q.read(cacheGpu), dt), values(await q.read(cacheCpu), dt), EXACT, `kv_cache_append ${dt}`);
      expect(() => cudaRunOp('kv_cache_append', [cacheGpu, x], { pos0: 61 })).toThrow(OutOfRangeError);
      const dst = randTensor('f32', [33, 7], 39);
      const dstCpu = q.convert(dst.t, 'f32'), dstGpu = q.convert(dst.t, 'f32');
      const src = randTensor('f32', [5, 7], 40).t, idx = i32([5], [4, 32, 4, 0, 17]);
      q.scatterRows(dstCpu, src, idx);
      await q.sync();
      expect(cudaRunOp('scatter_rows', [dstGpu, src, idx])).toEqual([]);
      expectSame(values(await q.read(dstGpu), 'f32'), values(await q.read(dstCpu), 'f32'), EXACT, 'scatter_rows');
    } finally {
      q.dispose();
    }
  });
});
