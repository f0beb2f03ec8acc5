// The addon loads, reports its ISA levels, runs ops off the JS thread and turns native
// failures into typed errors.
import { describe, expect, it } from 'vitest';
import { Queue, nativeInfo, nativeMemory, tensorFromArray } from '../../lib/native/index.js';
import { DTypeError, DisposedError, OutOfRangeError, ShapeError } from '../../lib/errors.js';

describe('addon', () => {
  it('reports its build and the ISA levels of this machine', () => {
    const info = nativeInfo();
    expect(info.isaLevels).toContain('scalar');
    expect(info.isaLevels).toContain(info.isa);
    expect(info.physicalCores).toBeGreaterThanOrEqual(1);
    expect(info.ops).toContain('matmul');
  });

  it('round-trips a tensor through the queue', async () => {
    const q = new Queue({ threads: 2 });
    const a = tensorFromArray('f32', [2, 3], new Float32Array([1, 2, 3, 4, 5, 6]));
    const b = tensorFromArray('f32', [3], new Float32Array([10, 20, 30]));
    const y = q.add(a, b);
    expect(y.shape).toEqual([2, 3]);
    expect(Array.from(await q.readF32(y))).toEqual([11, 22, 33, 14, 25, 36]);
    q.dispose();
  });

  it('reads several tensors in one settle, each with its own type', async () => {
    const q = new Queue({ threads: 1 });
    const a = tensorFromArray('f32', [2], new Float32Array([1.5, -2]));
    const b = tensorFromArray('i32', [3], new Int32Array([7, 8, 9]));
    const e = tensorFromArray('u8', [0], new Uint8Array(0));
    const [ra, rb, re] = await q.readMany([q.scale(a, 2), b, e]);
    expect(ra).toBeInstanceOf(Float32Array);
    expect(Array.from(ra)).toEqual([3, -4]);
    expect(rb).toBeInstanceOf(Int32Array);
    expect(Array.from(rb)).toEqual([7, 8, 9]);
    expect(re.length).toBe(0);
    expect(await q.readMany([])).toEqual([]);
    expect(() => q.readMany([a, 3 as never])).toThrow(/Queue.read: element is not a Tensor/);
    q.dispose();
  });

  it('throws typed errors synchronously for bad shapes and dtypes', () => {
    const q = new Queue({ threads: 1 });
    const a = tensorFromArray('f32', [2, 3], new Float32Array(6));
    const b = tensorFromArray('f32', [4], new Float32Array(4));
    expect(() => q.add(a, b)).toThrow(ShapeError);
    expect(() => q.add(a, b)).toThrow(/add: .*f32\[2, 3\], f32\[4\]/);
    const ids = tensorFromArray('i32', [2], new Int32Array([0, 1]));
    expect(() => q.matmul(ids, a)).toThrow(DTypeError);
    a.dispose();
    expect(() => q.scale(a, 2)).toThrow(DisposedError);
    q.dispose();
    expect(() => q.scale(b, 2)).toThrow(DisposedError);
  });

  it('reports data-dependent failures at the next sync, then recovers', async () => {
    const q = new Queue({ threads: 1 });
    const table = tensorFromArray('f32', [4, 2], new Float32Array(8));
    const ids = tensorFromArray('i32', [3], new Int32Array([0, 7, 1]));
    const e = q.embedding(ids, table);
    await expect(q.sync()).rejects.toThrow(OutOfRangeError);
    await expect(q.read(e)).resolves.toBeInstanceOf(Float32Array);  // the queue recovered
    q.dispose();
  });

  it('rejects a tensor of the wrong byte size', () => {
    expect(() => tensorFromArray('f32', [3], new Float32Array(4))).toThrow(ShapeError);
  });

  it('Queue.write copies the caller\'s bytes at the call, through reused staging buffers of any size', async () => {
    // Large writes go through pooled buffers (csrc/core/staging.h): a later, smaller write that
    // reuses a larger buffer must carry exactly its own bytes, and changing the source array
    // right after the call must not reach the tensor.
    const q = new Queue({ threads: 1 });
    const sizes = [100_000, 300_000, 100_000, 17, 250_000, 300_000];
    const ts = sizes.map((n) => q.empty('f32', [n]));
    const want: Float32Array[] = [];
    for (const [i, n] of sizes.entries()) {
      const src = Float32Array.from({ length: n }, (_, j) => i * 1e6 + j);
      q.write(ts[i], src);
      want.push(src.slice());
      src.fill(-1);   // after the call: must not matter
    }
    for (const [i, t] of ts.entries()) expect(await q.readF32(t), `write ${i}`).toEqual(want[i]);
    q.dispose();
  });

  it('a mid-size host buffer handed out again (the pool in csrc/core/tensor.cpp) is zero-filled and counted', async () => {
    // 32 KiB … 1 MiB buffers are kept when freed and reused for a request up to 1.25× smaller:
    // each reuse must start at zero like a fresh allocation, and live counts must not drift.
    const q = new Queue({ threads: 1 });
    const before = nativeMemory();
    for (const n of [10_000, 9_000, 60_000, 50_000, 200_000, 170_000, 10_000]) {
      const t = q.empty('f32', [n]);
      expect((await q.readF32(t)).every((v) => v === 0), `empty(${n}) reads zeros`).toBe(true);
      q.write(t, new Float32Array(n).fill(7));
      expect((await q.readF32(t))[n - 1]).toBe(7);
      t.dispose();
      await q.sync();
    }
    // Earlier tests' tensors may be collected meanwhile (GC), so the counts can only have dropped.
    const after = nativeMemory();
    expect(after.hostStorages).toBeLessThanOrEqual(before.hostStorages);
    expect(after.hostBytes).toBeLessThanOrEqual(before.hostBytes);
    q.dispose();
  });
});
