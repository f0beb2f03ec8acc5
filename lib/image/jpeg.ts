// jpeg.ts — a small-JPEG fast path for decodeImage: baseline JPEGs decoded by the addon
// (csrc/napi/jpeg_wrap.cpp) on the JS thread, with sharp's exact bytes.
//
// Why: for a picture of a few hundred pixels a side, sharp's decode is mostly fixed cost — a
// libvips pipeline built and a trip through the libuv thread pool, ≈ 0.85 ms for 200 × 150 on
// the dev VM — where the addon decodes it in ≈ 0.3-0.5 ms; a quarter of the bundled held-out
// pictures are such JPEGs.
//
// Scope, as narrow as png.ts's: the addon returns null for anything it might not read exactly
// as sharp (+ removeAlpha, ignoreIcc, toColourspace('srgb')) does — progressive or arithmetic
// coding, 12-bit samples, CMYK or Adobe-transformed colour, an Exif segment (it may rotate the
// picture), an ICC profile, sampling other than 1×1 / 2×1 / 2×2 luma over 1×1 chroma, or any
// data error — and sharp decides, so an error message or an orientation is never decided here.
// Pictures above FAST_JPEG_MAX_PIXELS go to sharp too (its SIMD decoder wins there, and a
// synchronous decode would hold the event loop). test/unit/jpeg-fast.test.ts checks it byte for
// byte against sharp and checks the refusals.
import { loadAddon } from '../native/load.js';
import type { NativeAddon } from '../native/types.js';
import type { RgbImage } from './decode.js';

/** Largest width·height decoded here (≈ 1-2 ms of main-thread work); larger images go to sharp. */
export const FAST_JPEG_MAX_PIXELS = 128 * 1024;

type JpegDecode = NonNullable<NativeAddon['jpegDecode']>;
let native: JpegDecode | null | undefined;

export function decodeJpegFast(b: Uint8Array, maxPixels: number): RgbImage | null {
  if (b.length < 4 || b[0] !== 0xff || b[1] !== 0xd8 || b[2] !== 0xff) return null;
  if (native === undefined) {
    try {
      const addon = loadAddon();
      native = addon.jpegDecode ? addon.jpegDecode.bind(addon) : null;
    } catch {
      native = null;   // no addon here: sharp decodes every JPEG
    }
  }
  if (!native) return null;
  const r = native(b, Math.min(FAST_JPEG_MAX_PIXELS, maxPixels));
  return r ? { data: r.data, width: r.width, height: r.height } : null;
}
