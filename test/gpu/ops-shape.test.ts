// CUDA row movers (csrc/cuda/ops_shape.cu): the typed errors of bad indices and positions, as on
// the CPU. Their values against the CPU op (embedding, reshape, gather_rows, slice_cols,
// concat_rows, kv_cache_append, scatter_rows) are cases of the shared table, op-cases.json.
import { describe, expect, it } from 'vitest';
import { OutOfRangeError } from '../../lib/errors.js';
import { cudaRunOp } from '../../lib/native/backend.js';
import { gpuProbe, i32, randTensor, title } from './ops-helpers.js';

const p = gpuProbe();

describe.skipIf(!p.available)(title('shape ops: typed errors', p), () => {
  it('bad ids / indices: OutOfRangeError naming the position, as on the CPU', () => {
    const tab = randTensor('f32', [11, 4], 35);
    expect(() => cudaRunOp('embedding', [i32([3], [0, 11, 2]), tab.t])).toThrow(OutOfRangeError);
    expect(() => cudaRunOp('embedding', [i32([3], [0, 11, 2]), tab.t])).toThrow(/id 11 at position 1/);
    expect(() => cudaRunOp('gather_rows', [tab.t, i32([2], [3, -1])])).toThrow(/idx\[1\] = -1/);
    expect(() => cudaRunOp('scatter_rows', [tab.t, randTensor('f32', [2, 4], 36).t, i32([2], [12, 0])])).toThrow(OutOfRangeError);
  });

  it('kv_cache_append past the capacity: OutOfRangeError, as on the CPU', () => {
    const cache = randTensor('f32', [2, 67, 64], 37), x = randTensor('f32', [7, 2, 64], 38);
    expect(() => cudaRunOp('kv_cache_append', [cache.t, x.t], { pos0: 61 })).toThrow(OutOfRangeError);
  });
});
