// png.ts — a small-PNG fast path for decodeImage: the common 8-bit, non-interlaced PNG decoded
// without sharp (node's zlib inflates, the scanline filters are undone by the addon —
// csrc/napi/png_wrap.cpp — or here when it is missing), with sharp's exact bytes.
//
// Why: for a picture of a few hundred pixels a side, sharp's decode is mostly fixed cost — a
// libvips pipeline built and a trip through the libuv thread pool, ≈ 1-2 ms — and for the bundled
// model that was the largest single item of a request (larger than its vision tower). Inflating
// and unfiltering 90 KB on the main thread costs ≈ 0.15 ms (0.44 ms with the unfilter in JS).
//
// Scope, deliberately narrow: for anything this file might not read exactly as sharp (+ removeAlpha,
// ignoreIcc, toColourspace('srgb')) does, it returns null and sharp decides — so an error message, a
// colour conversion or an orientation is never decided here. Accepted: bit depth 8; colour types
// grey, RGB, palette, grey+alpha, RGBA; no interlace; at most FAST_PNG_MAX_PIXELS pixels (above
// that sharp's fixed cost no longer matters and a synchronous decode would hold the event loop);
// every chunk's CRC correct; only the chunks in PLAIN_CHUNKS (no gamma, colour-profile, EXIF or
// significant-bits chunks); one consecutive run of IDAT chunks whose zlib stream inflates to
// exactly height·(1 + width·channels) bytes; filter bytes 0-4; palette indices inside the PLTE.
// Alpha and tRNS are dropped, grey is replicated, palettes are expanded — what PIL's
// convert('RGB') and the sharp pipeline both do. test/unit/png-fast.test.ts checks it byte for
// byte against sharp, filter by filter and colour type by colour type, and every refusal.
import * as zlib from 'node:zlib';
import { loadAddon } from '../native/load.js';
import type { RgbImage } from './decode.js';

/** Largest width·height decoded here (≈ 1 ms of main-thread work); larger images go to sharp. */
export const FAST_PNG_MAX_PIXELS = 128 * 1024;

const SIGNATURE = [137, 80, 78, 71, 13, 10, 26, 10];
/** Chunks that change nothing in the RGB bytes (tRNS and bKGD only matter for alpha, which is dropped). */
const PLAIN_CHUNKS = new Set(['IHDR', 'PLTE', 'IDAT', 'IEND', 'tRNS', 'bKGD', 'pHYs', 'tEXt', 'zTXt', 'iTXt', 'tIME']);
/** Channels per pixel for each colour type at bit depth 8. */
const CHANNELS: Record<number, number> = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 };

/** The fast path's decode of `b`, or null when sharp must decode it (see the file comment). */
export function decodePngFast(b: Uint8Array, maxPixels: number): RgbImage | null {
  // zlib.crc32 arrived in Node 20.15; before it, sharp decodes every PNG.
  if (typeof zlib.crc32 !== 'function' || b.length < 57 || SIGNATURE.some((v, i) => b[i] !== v)) return null;
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const type = (p: number) => String.fromCharCode(b[p], b[p + 1], b[p + 2], b[p + 3]);
  if (dv.getUint32(8) !== 13 || type(12) !== 'IHDR') return null;
  const width = dv.getUint32(16), height = dv.getUint32(20);
  const depth = b[24], colour = b[25], method = b[26], filterMethod = b[27], interlace = b[28];
  const channels = CHANNELS[colour];
  if (depth !== 8 || channels === undefined || method !== 0 || filterMethod !== 0 || interlace !== 0) return null;
  if (width < 1 || height < 1 || width * height > Math.min(FAST_PNG_MAX_PIXELS, maxPixels)) return null;

  // Walk the chunks: CRCs, the allowed set, one run of IDATs, the palette.
  const idat: Uint8Array[] = [];
  let palette: Uint8Array | null = null, idatDone = false, ended = false;
  for (let p = 8; p + 12 <= b.length; ) {
    const len = dv.getUint32(p), t = type(p + 4), end = p + 12 + len;
    if (len > 0x7fffffff || end > b.length) return null;
    if (zlib.crc32(b.subarray(p + 4, p + 8 + len)) !== dv.getUint32(p + 8 + len)) return null;
    if (!PLAIN_CHUNKS.has(t) || (t === 'IHDR' && p !== 8) || (t === 'IEND' && len !== 0)) return null;
    if (t === 'IDAT') {
      if (idatDone) return null;
      idat.push(b.subarray(p + 8, p + 8 + len));
    } else if (idat.length > 0) {
      idatDone = true;
    }
    if (t === 'PLTE') {
      if (palette || idat.length > 0 || len === 0 || len % 3 !== 0 || len > 768) return null;
      palette = b.subarray(p + 8, p + 8 + len);
    }
    if (t === 'IEND') { ended = true; break; }
    p = end;
  }
  if (!ended || idat.length === 0 || (colour === 3 && !palette)) return null;

  const stride = width * channels, expected = height * (stride + 1);
  let raw: Uint8Array;
  try {
    // Bounded: a small IDAT that inflates to gigabytes stops one byte past the picture's size.
    // One output chunk of that size: with the default 16 KB chunks zlib allocated the picture
    // twice over (its chunks, then their concatenation) — per request, external memory that V8
    // answers with full collections (bench/RESULTS.md).
    const bound = expected + 1;
    raw = zlib.inflateSync(idat.length === 1 ? idat[0] : Buffer.concat(idat), { maxOutputLength: bound, chunkSize: Math.max(bound, zlib.constants.Z_MIN_CHUNK) });
  } catch {
    return null;
  }
  if (raw.length !== expected) return null;
  const px = unfilterFast(raw, stride, height, channels);
  const data = px && toRgb(px, width * height, colour, palette);
  return data ? { data, width, height } : null;
}

type Unfilter = (raw: Uint8Array, stride: number, height: number, bpp: number, inPlace?: boolean) => Uint8Array | null;
let nativeUnfilter: Unfilter | null | undefined;

/** unfilter, natively when the addon has it (csrc/napi/png_wrap.cpp: the same bytes, ≈ 0.39 ms
 *  less of a 150×200 RGB picture on the JS thread; in place, raw's bytes become the pixels), else
 *  in JS. */
function unfilterFast(raw: Uint8Array, stride: number, height: number, bpp: number): Uint8Array | null {
  if (nativeUnfilter === undefined) {
    try {
      const addon = loadAddon();
      nativeUnfilter = addon.pngUnfilter ? addon.pngUnfilter.bind(addon) : null;
    } catch {
      nativeUnfilter = null;   // no addon here: decoding still works, in JS
    }
  }
  return nativeUnfilter ? nativeUnfilter(raw, stride, height, bpp, true) : unfilter(raw, stride, height, bpp);
}

/**
 * Undoes the per-scanline filters (section 9 of the PNG spec: None, Sub, Up, Average, Paeth; `bpp` bytes per pixel at
 * depth 8) into width·channels bytes per row. Null on a filter byte outside 0-4. The reference the
 * native copy is tested against (test/unit/png-unfilter.test.ts).
 */
export function unfilter(raw: Uint8Array, stride: number, height: number, bpp: number): Uint8Array | null {
  const out = new Uint8Array(stride * height);
  for (let y = 0; y < height; y++) {
    const s = y * (stride + 1) + 1, d = y * stride, u = d - stride;
    const filter = raw[s - 1];
    // Row 0 has a zero row above it: Up is None, Average halves the left byte, Paeth is Sub.
    const first = y === 0;
    switch (filter) {
      case 0:
        out.set(raw.subarray(s, s + stride), d);
        break;
      case 1:
        for (let x = 0; x < bpp; x++) out[d + x] = raw[s + x];
        for (let x = bpp; x < stride; x++) out[d + x] = (raw[s + x] + out[d + x - bpp]) & 255;
        break;
      case 2:
        if (first) out.set(raw.subarray(s, s + stride), d);
        else for (let x = 0; x < stride; x++) out[d + x] = (raw[s + x] + out[u + x]) & 255;
        break;
      case 3:
        if (first) {
          for (let x = 0; x < bpp; x++) out[d + x] = raw[s + x];
          for (let x = bpp; x < stride; x++) out[d + x] = (raw[s + x] + (out[d + x - bpp] >> 1)) & 255;
        } else {
          for (let x = 0; x < bpp; x++) out[d + x] = (raw[s + x] + (out[u + x] >> 1)) & 255;
          for (let x = bpp; x < stride; x++) out[d + x] = (raw[s + x] + ((out[d + x - bpp] + out[u + x]) >> 1)) & 255;
        }
        break;
      case 4:
        if (first) {
          for (let x = 0; x < bpp; x++) out[d + x] = raw[s + x];
          for (let x = bpp; x < stride; x++) out[d + x] = (raw[s + x] + out[d + x - bpp]) & 255;
        } else {
          for (let x = 0; x < bpp; x++) out[d + x] = (raw[s + x] + out[u + x]) & 255;
          for (let x = bpp; x < stride; x++) {
            // Paeth: the neighbour (left a, up b, up-left c) closest to a + b − c, ties a, b, c.
            const a = out[d + x - bpp], up = out[u + x], c = out[u + x - bpp];
            const pa = Math.abs(up - c), pb = Math.abs(a - c), pc = Math.abs(a + up - 2 * c);
            out[d + x] = (raw[s + x] + (pa <= pb && pa <= pc ? a : pb <= pc ? up : c)) & 255;
          }
        }
        break;
      default:
        return null;
    }
  }
  return out;
}

/** Unfiltered pixels of `colour` → interleaved RGB; null on a palette index past the PLTE. */
function toRgb(px: Uint8Array, n: number, colour: number, palette: Uint8Array | null): Uint8Array | null {
  if (colour === 2) return px;
  const rgb = new Uint8Array(n * 3);
  if (colour === 0 || colour === 4) {
    const step = colour === 0 ? 1 : 2;
    for (let i = 0, j = 0; i < n; i++, j += step) rgb[3 * i] = rgb[3 * i + 1] = rgb[3 * i + 2] = px[j];
  } else if (colour === 6) {
    for (let i = 0; i < n; i++) {
      rgb[3 * i] = px[4 * i]; rgb[3 * i + 1] = px[4 * i + 1]; rgb[3 * i + 2] = px[4 * i + 2];
    }
  } else {
    const entries = palette!.length / 3;
    for (let i = 0; i < n; i++) {
      const k = px[i];
      if (k >= entries) return null;
      rgb[3 * i] = palette![3 * k]; rgb[3 * i + 1] = palette![3 * k + 1]; rgb[3 * i + 2] = palette![3 * k + 2];
    }
  }
  return rgb;
}
