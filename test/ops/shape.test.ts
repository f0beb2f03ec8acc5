// reshape (a view on the same storage), gather_rows, scatter_rows, slice_cols, concat_rows:
// exact data movement against plain references, at every ISA level, with typed errors.
import { describe, expect, it } from 'vitest';
import { Queue, nativeInfo, tensorFromArray } from '../../lib/native/index.js';
import { DTypeError, DiffusionVLError, DisposedError, OutOfRangeError, ShapeError } from '../../lib/errors.js';
import { normal, rng, toBf16 } from '../helpers/random.js';
import { gatherRowsRef, scatterRowsRef, sliceColsRef } from './reference.js';

describe.each(nativeInfo().isaLevels)('shape ops at isa %s', (isa) => {
  it('reshape shares storage (writes through the original show in the view), infers one -1', async () => {
    const q = new Queue({ isa, threads: 2 });
    const x = tensorFromArray('f32', [2, 3, 4], Float32Array.from({ length: 24 }, (_, i) => i));
    const v = q.reshape(x, [6, 4]);
    expect(v.shape).toEqual([6, 4]);
    expect(q.reshape(x, [-1, 8]).shape).toEqual([3, 8]);
    expect(q.reshape(x, [24]).shape).toEqual([24]);
    expect(q.reshape(tensorFromArray('f32', [0, 5], new Float32Array(0)), [5, 0]).shape).toEqual([5, 0]);
    q.scatterRows(v, tensorFromArray('f32', [1, 4], new Float32Array([-1, -2, -3, -4])), tensorFromArray('i32', [1], new Int32Array([5])));
    const back = await q.readF32(x);  // the original sees the scatter done through the view
    expect(Array.from(back.slice(20))).toEqual([-1, -2, -3, -4]);
    x.dispose();  // the view keeps the storage alive
    expect(Array.from((await q.readF32(v)).slice(0, 4))).toEqual([0, 1, 2, 3]);
    q.dispose();
  });

  it('narrow_rows views rows in place (writes through the view show in the original); bad ranges are typed', async () => {
    const q = new Queue({ isa, threads: 2 });
    const x = tensorFromArray('f32', [5, 3], Float32Array.from({ length: 15 }, (_, i) => i));
    const v = q.narrowRows(x, 1, 3);
    expect(v.shape).toEqual([3, 3]);
    expect(Array.from(await q.readF32(v))).toEqual([3, 4, 5, 6, 7, 8, 9, 10, 11]);
    q.scatterRows(v, tensorFromArray('f32', [1, 3], Float32Array.of(-1, -2, -3)), tensorFromArray('i32', [1], Int32Array.of(2)));
    expect(Array.from(await q.readF32(x)).slice(9, 12)).toEqual([-1, -2, -3]);
    x.dispose();   // the view keeps the memory alive
    expect(Array.from(await q.readF32(v)).slice(6)).toEqual([-1, -2, -3]);
    expect(q.narrowRows(v, 3, 0).shape).toEqual([0, 3]);
    expect(() => q.narrowRows(v, 2, 2)).toThrow(OutOfRangeError);
    expect(() => q.narrowRows(v, -1, 1)).toThrow(OutOfRangeError);
    const b = q.narrowRows(tensorFromArray('bf16', [4, 2], toBf16(Float32Array.of(1, 2, 3, 4, 5, 6, 7, 8))), 3, 1);
    expect(Array.from(await q.read(b))).toEqual(Array.from(toBf16(Float32Array.of(7, 8))));
    q.dispose();
  });

  it('gather_rows copies rows of any dtype exactly', async () => {
    const q = new Queue({ isa, threads: 2 });
    const r = rng(13);
    for (const [R, C, n] of [[1, 1, 1], [7, 3, 33], [127, 33, 7], [33, 896, 127]]) {
      const idx = Int32Array.from({ length: n }, () => Math.floor(r() * R));
      const it = tensorFromArray('i32', [n], idx);
      const x = normal(r, R * C);
      expect(Array.from(await q.readF32(q.gatherRows(tensorFromArray('f32', [R, C], x), it)))).toEqual(gatherRowsRef(x, C, idx));
      const xb = toBf16(x);
      const gb = q.gatherRows(tensorFromArray('bf16', [R, C], xb), it);
      expect(gb.dtype).toBe('bf16');
      expect(Array.from((await q.read(gb)) as Uint16Array)).toEqual(gatherRowsRef(xb, C, idx));
      const xi = Int32Array.from(x, (v) => Math.round(v * 1000));
      expect(Array.from(await q.readI32(q.gatherRows(tensorFromArray('i32', [R, C], xi), it)))).toEqual(gatherRowsRef(xi, C, idx));
    }
    // Rank 3: rows are dim 0.
    const x3 = Float32Array.from({ length: 24 }, (_, i) => i);
    const g3 = q.gatherRows(tensorFromArray('f32', [3, 2, 4], x3), tensorFromArray('i32', [2], new Int32Array([2, 0])));
    expect(g3.shape).toEqual([2, 2, 4]);
    expect(Array.from(await q.readF32(g3))).toEqual(gatherRowsRef(x3, 8, [2, 0]));
    q.dispose();
  });

  it('scatter_rows writes in index order (a repeated index keeps the last row)', async () => {
    const q = new Queue({ isa, threads: 2 });
    const r = rng(14);
    for (const [R, C, n] of [[1, 1, 1], [7, 3, 3], [127, 33, 7], [33, 64, 33]]) {
      const idx = Int32Array.from({ length: n }, () => Math.floor(r() * R));
      const dst = normal(r, R * C), src = normal(r, n * C);
      const d = tensorFromArray('f32', [R, C], dst);
      q.scatterRows(d, tensorFromArray('f32', [n, C], src), tensorFromArray('i32', [n], idx));
      expect(Array.from(await q.readF32(d))).toEqual(scatterRowsRef(dst, src, C, idx));
    }
    q.dispose();
  });

  it('slice_cols and concat_rows', async () => {
    const q = new Queue({ isa, threads: 2 });
    const r = rng(15);
    for (const [R, C, start, len] of [[1, 1, 0, 1], [3, 7, 2, 5], [33, 127, 100, 27], [7, 33, 33, 0], [127, 3, 1, 1]]) {
      const x = normal(r, R * C);
      const y = q.sliceCols(tensorFromArray('f32', [R, C], x), start, len);
      expect(y.shape).toEqual([R, len]);
      expect(Array.from(await q.readF32(y))).toEqual(sliceColsRef(x, C, start, len));
    }
    for (const [Ra, Rb, C] of [[1, 1, 1], [3, 7, 33], [0, 5, 4], [127, 0, 3]]) {
      const a = normal(r, Ra * C), b = normal(r, Rb * C);
      const y = q.concatRows(tensorFromArray('f32', [Ra, C], a), tensorFromArray('f32', [Rb, C], b));
      expect(y.shape).toEqual([Ra + Rb, C]);
      expect(Array.from(await q.readF32(y))).toEqual([...a, ...b]);
    }
    const ib = q.concatRows(tensorFromArray('i32', [1, 2], new Int32Array([1, 2])), tensorFromArray('i32', [1, 2], new Int32Array([3, 4])));
    expect(Array.from(await q.readI32(ib))).toEqual([1, 2, 3, 4]);
    // NaN is data here: moved, never altered.
    const nan = q.sliceCols(tensorFromArray('f32', [1, 3], new Float32Array([1, NaN, 2])), 1, 2);
    expect(Array.from(await q.readF32(nan))).toEqual([NaN, 2]);
    q.dispose();
  });

  it('out-of-range indices fail at the next sync naming index and value; the queue recovers', async () => {
    const q = new Queue({ isa, threads: 2 });
    const x = tensorFromArray('f32', [4, 2], new Float32Array(8));
    q.gatherRows(x, tensorFromArray('i32', [3], new Int32Array([0, 4, 1])));
    await expect(q.sync()).rejects.toThrow(OutOfRangeError);
    q.gatherRows(x, tensorFromArray('i32', [2], new Int32Array([1, -1])));
    await expect(q.sync()).rejects.toThrow(/gather_rows: idx\[1\] = -1 is outside the 4 rows/);
    q.scatterRows(x, tensorFromArray('f32', [1, 2], new Float32Array(2)), tensorFromArray('i32', [1], new Int32Array([9])));
    await expect(q.sync()).rejects.toThrow(/scatter_rows: idx\[0\] = 9/);
    await expect(q.readF32(x)).resolves.toEqual(new Float32Array(8));  // nothing written, queue usable
    q.dispose();
  });

  it('throws typed errors for bad calls', () => {
    const q = new Queue({ isa, threads: 1 });
    const x = tensorFromArray('f32', [4, 3], new Float32Array(12));
    const idx = tensorFromArray('i32', [2], new Int32Array([0, 1]));
    expect(() => q.reshape(x, [5, 2])).toThrow(ShapeError);
    expect(() => q.reshape(x, [5, 2])).toThrow(/reshape: shape \[5, 2\] holds 10 elements, x has 12/);
    expect(() => q.reshape(x, [-1, 5])).toThrow(ShapeError);
    expect(() => q.reshape(x, [2.5, 4])).toThrow(ShapeError);
    expect(() => q.gatherRows(x, tensorFromArray('f32', [2], new Float32Array(2)))).toThrow(DTypeError);
    expect(() => q.scatterRows(x, tensorFromArray('f32', [2, 4], new Float32Array(8)), idx)).toThrow(ShapeError);
    expect(() => q.scatterRows(x, tensorFromArray('f32', [3, 3], new Float32Array(9)), idx)).toThrow(/one entry per src row/);
    expect(() => q.scatterRows(tensorFromArray('i32', [4, 3], new Int32Array(12)), x, idx)).toThrow(DTypeError);
    expect(() => q.sliceCols(x, 2, 2)).toThrow(OutOfRangeError);
    expect(() => q.sliceCols(x, -1, 1)).toThrow(OutOfRangeError);
    expect(() => q.sliceCols(x, 0.5, 1)).toThrow(DiffusionVLError);
    expect(() => q.concatRows(x, tensorFromArray('f32', [1, 2], new Float32Array(2)))).toThrow(ShapeError);
    expect(() => q.concatRows(x, tensorFromArray('i32', [1, 3], new Int32Array(3)))).toThrow(DTypeError);
    idx.dispose();
    expect(() => q.gatherRows(x, idx)).toThrow(DisposedError);
    q.dispose();
  });
});
