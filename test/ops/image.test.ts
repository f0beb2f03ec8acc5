// image_resize (csrc/cpu/ops/image.cpp) against Pillow's own bytes and against the TypeScript
// twin (lib/image/resample.ts). Tolerance everywhere: none — the op must equal Pillow's
// Image.resize(BICUBIC) bit for bit (docs §3.1 step 2), so every comparison is exact u8 equality.
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DTypeError, OutOfRangeError, ShapeError } from '../../lib/errors.js';
import { decodeImage } from '../../lib/image/decode.js';
import { CLIP_MEAN, CLIP_STD, patchRows, preprocessQwen2vl } from '../../lib/image/qwen2vl.js';
import { resizeBicubicRef } from '../../lib/image/resample.js';
import { Queue, nativeInfo, tensorFromArray } from '../../lib/native/index.js';
import { FIXTURE_DIR, REGENERATE, diffU8, readBin, readManifest } from '../fixtures/images/fixtures.js';
import { fromF16, rng as makeRng, toF16 } from '../helpers/random.js';

const q = new Queue({ threads: 2 });
afterAll(() => q.dispose());

async function resizeNative(data: Uint8Array, W: number, H: number, C: number, w: number, h: number, on: Queue = q): Promise<Uint8Array> {
  const x = tensorFromArray('u8', [H, W, C], data);
  const y = on.imageResize(x, w, h);
  expect(y.shape).toEqual([h, w, C]);
  const out = (await on.read(y)) as Uint8Array;
  x.dispose();
  y.dispose();
  return out;
}

describe('image_resize vs Pillow fixtures', () => {
  const m = readManifest();
  const decoded = new Map<string, Promise<{ data: Uint8Array; width: number; height: number }>>();
  const input = (name: string) => {
    const e = m.inputs.find((i) => i.name === name)!;
    if (!decoded.has(name)) decoded.set(name, decodeImage(join(FIXTURE_DIR, e.file), { autoOrient: false }));
    return { e, img: decoded.get(name)! };
  };
  for (const c of m.resize) {
    it(`${c.input} → ${c.width}×${c.height} equals PIL ${m.pillow}`, async () => {
      const { e, img } = input(c.input);
      const src = await img;
      // The input itself must be Pillow's convert('RGB') bytes, or the comparison means nothing.
      expect(diffU8(src.data, e.rgb, `${c.input} decoded`)).toBeNull();
      const got = await resizeNative(src.data, src.width, src.height, 3, c.width, c.height);
      expect(diffU8(got, c.expected, `native image_resize ${c.input} → ${c.width}×${c.height}`)).toBeNull();
      const ref = resizeBicubicRef(src.data, src.width, src.height, 3, c.width, c.height);
      expect(diffU8(ref, c.expected, `resizeBicubicRef ${c.input} → ${c.width}×${c.height}`)).toBeNull();
    });
  }
});

describe('image_resize vs the TypeScript reference on random images', () => {
  const sizes = [1, 3, 7, 33, 127];
  const r = makeRng(20260);
  const cases: [number, number, number, number, number][] = [];
  for (const W of sizes)
    for (const H of [1, 7, 33])
      for (const C of [1, 3, 4]) {
        const w = sizes[Math.floor(r() * sizes.length)];
        const h = [1, 2, 13, 40][Math.floor(r() * 4)];
        cases.push([W, H, C, w, h]);
      }
  cases.push([5, 5, 3, 5, 5], [640, 3, 3, 17, 3], [3, 640, 3, 3, 17], [29, 31, 2, 1000, 2]);
  // Row counts around the horizontal pass's 16-row blocks, and a picture-sized case.
  cases.push([23, 15, 3, 17, 9], [23, 16, 3, 17, 16], [23, 17, 3, 11, 17], [41, 33, 4, 19, 33], [147, 275, 3, 112, 224]);
  // Every ISA level present: the passes are the level's vector kernels (kernels_generic.inc).
  const levels = nativeInfo().isaLevels;
  const queues = new Map(levels.map((isa) => [isa, new Queue({ isa, threads: 2 })]));
  afterAll(() => { for (const lq of queues.values()) lq.dispose(); });
  it.each(cases)('%i×%i×%i → %i×%i', async (W, H, C, w, h) => {
    const src = new Uint8Array(W * H * C);
    // Half noise, half extremes: 0/255 steps drive the negative lobes into clipping.
    for (let i = 0; i < src.length; i++) src[i] = r() < 0.5 ? Math.floor(r() * 256) : r() < 0.5 ? 0 : 255;
    const ref = resizeBicubicRef(src, W, H, C, w, h);
    for (const [isa, lq] of queues) {
      const got = await resizeNative(src, W, H, C, w, h, lq);
      const bad = got.findIndex((v, i) => v !== ref[i]);
      expect(bad, `${isa}: first mismatch at flat index ${bad}: native ${got[bad]}, reference ${ref[bad]}`).toBe(-1);
    }
  });
});

describe('image_resize errors and speed', () => {
  it('rejects bad inputs with typed errors naming the op', () => {
    const img = tensorFromArray('u8', [4, 5, 3], new Uint8Array(60));
    expect(() => q.imageResize(img, 0, 3)).toThrow(OutOfRangeError);
    expect(() => q.imageResize(img, 3, 100000)).toThrow(/image_resize: width and height/);
    expect(() => q.imageResize(img, 2.5, 3)).toThrow(/image_resize: attribute 'width' must be an integer/);
    const f = tensorFromArray('f32', [4, 5, 3], new Float32Array(60));
    expect(() => q.imageResize(f, 3, 3)).toThrow(DTypeError);
    const flat = tensorFromArray('u8', [60], new Uint8Array(60));
    expect(() => q.imageResize(flat, 3, 3)).toThrow(ShapeError);
    const five = tensorFromArray('u8', [2, 3, 5], new Uint8Array(30));
    expect(() => q.imageResize(five, 3, 3)).toThrow(/1\.\.4 interleaved channels/);
    const empty = tensorFromArray('u8', [0, 3, 3], new Uint8Array(0));
    expect(() => q.imageResize(empty, 3, 3)).toThrow(/at least 1×1/);
  });

  it('resizes 1920×1080 → 672×364 (the §3.4 example) quickly on 2 threads', async () => {
    const W = 1920, H = 1080;
    const src = new Uint8Array(W * H * 3);
    for (let i = 0; i < src.length; i++) src[i] = (i * 2654435761) >>> 24;
    const x = tensorFromArray('u8', [H, W, 3], src);
    await q.read(q.imageResize(x, 672, 364)); // warm-up
    const t0 = performance.now();
    const n = 5;
    for (let i = 0; i < n; i++) q.imageResize(x, 672, 364);
    await q.sync();
    const ms = (performance.now() - t0) / n;
    // Reported, not asserted: the machine is shared, so a time bound would be flaky. Target: ≪ 100 ms.
    console.log(`image_resize 1920×1080 → 672×364, ${q.threads} threads: ${ms.toFixed(1)} ms`);
    expect(ms).toBeGreaterThan(0);
  });
});

describe('Qwen2.5-VL preprocessing through the native resize', () => {
  const m = readManifest();
  for (const p of m.patches) {
    it(`${p.input}: pixel_values rows equal numpy's and the TS-resize path`, async () => {
      const e = m.inputs.find((i) => i.name === p.input)!;
      const img = await decodeImage(join(FIXTURE_DIR, e.file));
      const opts = { minPixels: p.minPixels, maxPixels: p.maxPixels };
      const native = await preprocessQwen2vl(img, { ...opts, queue: q });
      const plain = await preprocessQwen2vl(img, opts);
      expect(native.grid).toEqual(p.grid);
      // Exact: same bytes out of the resize, same f32 arithmetic after it.
      expect(native.pixelValues.findIndex((v, i) => v !== plain.pixelValues[i])).toBe(-1);
      const rows = readBin(p.rows).data;
      const bad = native.pixelValues.subarray(0, rows.length).findIndex((v, i) => v !== rows[i]);
      expect(bad, `row ${Math.floor(bad / 1176)} col ${bad % 1176} differs from numpy; regenerate: ${REGENERATE}`).toBe(-1);
    });
  }
});

describe('patch_rows = patchRows + the tower\'s rounding, bit for bit', () => {
  const bf16 = (x: Float32Array) => { const u = new Uint32Array(x.buffer, x.byteOffset, x.length); for (let i = 0; i < u.length; i++) u[i] = (u[i] + 0x7fff + ((u[i] >>> 16) & 1)) & 0xffff0000; };
  const f16 = (x: Float32Array) => x.set(fromF16(toF16(x)));
  const opts = (round: 'none' | 'bf16' | 'f16', patch = 14, merge = 2, temporal = 2) => ({ patch, merge, temporal, mean: [...CLIP_MEAN], std: [...CLIP_STD], round });
  const bits = (a: Float32Array) => new Uint32Array(a.buffer, a.byteOffset, a.length);

  it.each(['none', 'bf16', 'f16'] as const)('round %s, odd unit grids and other geometries', async (round) => {
    const r = makeRng(21);
    for (const [w, h, ps, m, tps] of [[28, 28, 14, 2, 2], [84, 56, 14, 2, 2], [140, 196, 14, 2, 2], [28, 308, 14, 2, 2], [48, 32, 8, 2, 1], [45, 30, 5, 3, 3]]) {
      const data = Uint8Array.from({ length: w * h * 3 }, () => Math.floor(r() * 256));
      const want = patchRows({ data, width: w, height: h }, ps, m, tps).pixelValues;
      if (round === 'bf16') bf16(want);
      if (round === 'f16') f16(want);
      const t = q.patchRows(tensorFromArray('u8', [h, w, 3], data), opts(round, ps, m, tps));
      expect(t.shape).toEqual([(w / ps) * (h / ps), 3 * tps * ps * ps]);
      const got = (await q.read(t)) as Float32Array;
      expect(got.some(Number.isNaN)).toBe(false);
      expect(bits(got), `${w}×${h} ps ${ps} merge ${m} tps ${tps}`).toEqual(bits(want));
      t.dispose();
    }
  });

  it('dtype bf16: the same values stored as bf16 (the upper halves of the f32 rows)', async () => {
    const r = makeRng(22);
    for (const [w, h, ps, m, tps] of [[84, 56, 14, 2, 2], [45, 30, 5, 3, 3]]) {
      const data = Uint8Array.from({ length: w * h * 3 }, () => Math.floor(r() * 256));
      const img = tensorFromArray('u8', [h, w, 3], data);
      const f = (await q.read(q.patchRows(img, opts('bf16', ps, m, tps)))) as Float32Array;
      const t = q.patchRows(img, { ...opts('bf16', ps, m, tps), dtype: 'bf16' });
      expect([t.dtype, t.shape]).toEqual(['bf16', [(w / ps) * (h / ps), 3 * tps * ps * ps]]);
      const b = (await q.read(t)) as Uint16Array;
      expect(Array.from(b)).toEqual(Array.from(bits(f), (u) => u >>> 16));
      expect(Array.from(bits(f), (u) => u & 0xffff).every((x) => x === 0)).toBe(true);   // the f32 rows are bf16 values
    }
    const img = tensorFromArray('u8', [28, 28, 3], new Uint8Array(28 * 28 * 3));
    expect(() => q.patchRows(img, { ...opts('none'), dtype: 'bf16' })).toThrow(/dtype 'bf16' needs round 'bf16'/);
    expect(() => q.patchRows(img, { ...opts('bf16'), dtype: 'f16' as 'bf16' })).toThrow(/dtype must be 'f32' or 'bf16'/);
  });

  it('rejects bad inputs with typed errors naming the op', () => {
    const img = tensorFromArray('u8', [28, 28, 3], new Uint8Array(28 * 28 * 3));
    expect(() => q.patchRows(tensorFromArray('u8', [30, 28, 3], new Uint8Array(30 * 28 * 3)), opts('none'))).toThrow(/patch_rows: image sides must be positive multiples of patch·merge = 28/);
    expect(() => q.patchRows(tensorFromArray('u8', [28, 28, 4], new Uint8Array(28 * 28 * 4)), opts('none'))).toThrow(ShapeError);
    expect(() => q.patchRows(tensorFromArray('f32', [28, 28, 3], new Float32Array(28 * 28 * 3)), opts('none'))).toThrow(DTypeError);
    expect(() => q.patchRows(img, { ...opts('none'), round: 'f32' as 'none' })).toThrow(/round must be 'none', 'bf16' or 'f16'/);
    expect(() => q.patchRows(img, { ...opts('none'), std: [1, 0, 1] })).toThrow(/std finite and non-zero/);
    expect(() => q.patchRows(img, { ...opts('none'), mean: [0.5] })).toThrow(/mean and std must hold 3 numbers/);
    expect(() => q.patchRows(img, opts('none', 0))).toThrow(OutOfRangeError);
  });
});
