// The native PNG unfilter (csrc/napi/png_wrap.cpp) against the JS reference (lib/image/png.ts
// `unfilter`), into a new array and in place: byte for byte on random rows of every filter type, for 1-4 bytes per pixel (bit
// depth 8: grey, grey+alpha, RGB, RGBA), odd widths, one-row and one-pixel pictures, and the
// refusal of a filter byte above 4. Random bytes exercise Paeth's three choices and its ties.
import { describe, expect, it } from 'vitest';
import { unfilter } from '../../lib/image/png.js';
import { loadAddon } from '../../lib/native/index.js';

function rng(seed: number) {
  let s = seed >>> 0;
  return () => { s = (s * 1664525 + 1013904223) >>> 0; return s; };
}

/** height rows of (filter byte + stride bytes); filters drawn from `filters`. */
function rawRows(r: () => number, stride: number, height: number, filters: readonly number[], flat = false): Uint8Array {
  const raw = new Uint8Array((stride + 1) * height);
  for (let y = 0; y < height; y++) {
    raw[y * (stride + 1)] = filters[r() % filters.length];
    // flat: a few distinct values, so neighbours tie often (Paeth's tie rules)
    for (let x = 1; x <= stride; x++) raw[y * (stride + 1) + x] = flat ? (r() % 3) * 7 : r() & 255;
  }
  return raw;
}

describe('PNG unfilter: native = JS reference', () => {
  const addon = loadAddon();
  it('the addon has it', () => expect(typeof addon.pngUnfilter).toBe('function'));

  const shapes: [number, number][] = [[1, 1], [1, 5], [7, 1], [13, 9], [64, 33], [151, 20]];
  for (const bpp of [1, 2, 3, 4])
    for (const filter of [[0], [1], [2], [3], [4], [0, 1, 2, 3, 4]])
      it(`bpp ${bpp}, filters ${filter.join(',')}`, () => {
        const r = rng(bpp * 100 + filter.length * 10 + filter[0]);
        for (const [w, h] of shapes)
          for (const flat of [false, true]) {
            const stride = w * bpp, raw = rawRows(r, stride, h, filter, flat);
            const want = unfilter(raw, stride, h, bpp);
            const got = addon.pngUnfilter!(raw, stride, h, bpp);
            expect(want).not.toBeNull();
            expect(got, `${w}×${h}`).toEqual(want);
            // In place (what png.ts asks): the same pixels in raw's own first bytes.
            const buf = new Uint8Array(raw.length + 7);
            const view = buf.subarray(5, 5 + raw.length);   // at an offset inside a larger buffer
            view.set(raw);
            const inPlace = addon.pngUnfilter!(view, stride, h, bpp, true)!;
            expect(inPlace.buffer).toBe(buf.buffer);
            expect(inPlace.byteOffset).toBe(5);
            expect(inPlace, `${w}×${h} in place`).toEqual(want);
            expect(buf[5 + raw.length + 1]).toBe(0);   // nothing written past raw
          }
      });

  it('a filter byte above 4 gives null in both', () => {
    const r = rng(5);
    const raw = rawRows(r, 12, 4, [4]);
    raw[2 * 13] = 5;
    expect(unfilter(raw, 12, 4, 3)).toBeNull();
    expect(addon.pngUnfilter!(raw, 12, 4, 3)).toBeNull();
    expect(addon.pngUnfilter!(raw, 12, 4, 3, true)).toBeNull();
  });

  it('arguments that do not fit together throw, naming the call', () => {
    const raw = new Uint8Array(13 * 4);
    expect(() => addon.pngUnfilter!(raw, 12, 5, 3)).toThrow(/pngUnfilter/);                 // wrong length
    expect(() => addon.pngUnfilter!(raw, 12, 4, 0)).toThrow(/pngUnfilter/);                 // bpp 0
    expect(() => addon.pngUnfilter!(new Uint16Array(26) as unknown as Uint8Array, 12, 4, 3)).toThrow(/pngUnfilter/);
    expect(() => addon.pngUnfilter!(raw, 12.5, 4, 3)).toThrow(/pngUnfilter/);
  });
});
