// kv_cache_append: token-major rows written head-major into the cache in place, rounded to the
// cache dtype, at every ISA level; overwrites allowed, out-of-range positions refused at plan time.
import { describe, expect, it } from 'vitest';
import { Queue, nativeInfo, tensorFromArray } from '../../lib/native/index.js';
import { DTypeError, DisposedError, OutOfRangeError, ShapeError } from '../../lib/errors.js';
import { fromBf16, fromF16, normal, rng, toBf16, toF16 } from '../helpers/random.js';
import { kvAppendRef } from './reference.js';

describe.each(nativeInfo().isaLevels)('kv_cache_append at isa %s', (isa) => {
  it.each(['f32', 'bf16', 'f16'] as const)('writes x [T, nkv, hd] at pos0.. of a %s cache, exactly', async (dtype) => {
    const q = new Queue({ isa, threads: 2 });
    const r = rng(12);
    for (const [nkv, cap, hd, T, pos0] of [[1, 1, 1, 1, 0], [2, 33, 64, 8, 25], [3, 127, 7, 33, 0], [4, 40, 128, 16, 24], [2, 600, 80, 127, 473]]) {
      const cache = q.empty(dtype, [nkv, cap, hd]);
      const x = normal(r, T * nkv * hd);
      q.kvCacheAppend(cache, tensorFromArray('f32', [T, nkv, hd], x), pos0);
      const raw = await q.read(cache);
      // Exact: the cache holds the round-to-nearest-even value of x (same rule as random.ts).
      const want = dtype === 'f32' ? x : dtype === 'bf16' ? fromBf16(toBf16(x)) : fromF16(toF16(x));
      const got = dtype === 'f32' ? (raw as Float32Array) : dtype === 'bf16' ? fromBf16(raw as Uint16Array) : fromF16(raw as Uint16Array);
      expect(Array.from(got)).toEqual(Array.from(kvAppendRef(new Float64Array(nkv * cap * hd), want, nkv, cap, hd, pos0)));
    }
    q.dispose();
  });

  it('overwrites the same slots on every denoising step (the decoder does not advance)', async () => {
    const q = new Queue({ isa, threads: 2 });
    const nkv = 2, cap = 16, hd = 4, T = 8;
    const cache = q.empty('f32', [nkv, cap, hd]);
    for (let step = 1; step <= 3; step++) q.kvCacheAppend(cache, tensorFromArray('f32', [T, nkv, hd], new Float32Array(T * nkv * hd).fill(step)), 8);
    const got = await q.readF32(cache);
    expect(Array.from(got)).toEqual(Array.from(kvAppendRef(new Float64Array(nkv * cap * hd), new Float32Array(T * nkv * hd).fill(3), nkv, cap, hd, 8)));
    q.dispose();
  });

  it('NaN is stored as NaN (bf16/f16 keep it quiet), never turned into a number', async () => {
    const q = new Queue({ isa, threads: 1 });
    for (const dtype of ['f32', 'bf16', 'f16'] as const) {
      const cache = q.empty(dtype, [1, 2, 2]);
      q.kvCacheAppend(cache, tensorFromArray('f32', [1, 1, 2], new Float32Array([NaN, Infinity])), 1);
      const raw = await q.read(cache);
      const got = dtype === 'f32' ? (raw as Float32Array) : dtype === 'bf16' ? fromBf16(raw as Uint16Array) : fromF16(raw as Uint16Array);
      expect(Array.from(got)).toEqual([0, 0, NaN, Infinity]);
    }
    q.dispose();
  });

  it('throws typed errors for bad calls', () => {
    const q = new Queue({ isa, threads: 1 });
    const cache = q.empty('bf16', [2, 10, 8]);
    const x = tensorFromArray('f32', [4, 2, 8], new Float32Array(64));
    expect(() => q.kvCacheAppend(cache, x, 7)).toThrow(OutOfRangeError);
    expect(() => q.kvCacheAppend(cache, x, 7)).toThrow(/pos0 = 7 .. pos0 \+ T = 11 do not fit the cache capacity 10/);
    expect(() => q.kvCacheAppend(cache, x, -1)).toThrow(OutOfRangeError);
    expect(() => q.kvCacheAppend(cache, tensorFromArray('f32', [4, 3, 8], new Float32Array(96)), 0)).toThrow(ShapeError);
    expect(() => q.kvCacheAppend(cache, tensorFromArray('bf16', [4, 2, 8], new Uint16Array(64)), 0)).toThrow(DTypeError);
    expect(() => q.kvCacheAppend(q.empty('i32', [2, 10, 8]), x, 0)).toThrow(DTypeError);
    x.dispose();
    expect(() => q.kvCacheAppend(cache, x, 0)).toThrow(DisposedError);
    q.dispose();
  });
});
