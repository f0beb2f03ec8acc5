// decode.ts — any accepted image input → interleaved RGB u8 [H, W, 3] (spec §3.1, before step 1).
//
// The reference opens images with PIL and calls `.convert('RGB')`; this file matches that:
//  * alpha is dropped, not composited (PIL's RGBA → RGB keeps the colour channels as stored;
//    transformers' white-background `convert_to_rgb` never runs because the image is RGB by then);
//  * greyscale is replicated to three channels, palette images are expanded;
//  * embedded ICC profiles are ignored (PIL does not colour-manage on convert);
//  * animated inputs give their first frame.
// One deliberate difference, an option: EXIF orientation is applied by default (`autoOrient`),
// as a user expects for phone photos; PIL's `Image.open` ignores it, so `autoOrient: false`
// reproduces the reference byte for byte. Known remaining gaps (rare inputs): CMYK JPEGs (sharp
// converts through an ICC profile, PIL with a naive formula) and 16-bit greyscale PNGs (PIL clips
// I;16 to 255 on convert, sharp rescales).
//
// Decoding is sharp's (libvips: libpng, mozjpeg, libwebp), checked against Pillow's bytes by
// test/unit/image-decode.test.ts. Every failure is an ImageError naming the input: the path,
// "Buffer of N bytes", "data: URL (…)" or "raw RGB W×H".
import { readFile } from 'node:fs/promises';
import { ImageError } from '../errors.js';

/** Raw pixels already decoded: interleaved RGB, row-major, width·height·3 bytes. */
export interface RawRgbImage {
  data: Uint8Array;
  width: number;
  height: number;
}

/** What a caller may pass as an image. */
export type ImageInput = string | Uint8Array | ArrayBuffer | RawRgbImage;

/** Decoded image: interleaved RGB u8 [height, width, 3]. */
export interface RgbImage {
  data: Uint8Array;
  width: number;
  height: number;
}

export interface DecodeOptions {
  /** Largest accepted width·height, checked from the header before decoding. Default 64 Mpx. */
  maxPixels?: number;
  /** Apply the EXIF orientation tag (default true; false = what PIL's Image.open gives). */
  autoOrient?: boolean;
}

export const DECODE_DEFAULTS = { maxPixels: 64 * 1024 * 1024, autoOrient: true } as const;

/** A short name for an input, used in every error about it. */
export function describeImageInput(input: unknown): string {
  if (typeof input === 'string') return input.startsWith('data:') ? dataUrlLabel(input) : input;
  if (input instanceof Uint8Array) return `Buffer of ${input.length} bytes`;
  if (input instanceof ArrayBuffer) return `ArrayBuffer of ${input.byteLength} bytes`;
  if (isRawShape(input)) return `raw RGB ${String(input.width)}×${String(input.height)}`;
  return `${input === null ? 'null' : typeof input} image input`;
}

function dataUrlLabel(s: string): string {
  const comma = s.indexOf(',');
  const head = comma < 0 ? s.slice(0, 40) : s.slice(0, Math.min(comma, 60));
  return `data: URL (${head}…, ${s.length} chars)`;
}

function isRawShape(x: unknown): x is RawRgbImage {
  return typeof x === 'object' && x !== null && !(x instanceof Uint8Array) && 'data' in x && 'width' in x && 'height' in x;
}

function checkOptions(o: DecodeOptions): Required<DecodeOptions> {
  const maxPixels = o.maxPixels ?? DECODE_DEFAULTS.maxPixels;
  if (!Number.isInteger(maxPixels) || maxPixels < 1)
    throw new ImageError(`Expected integer ≥ 1 for maxPixels but received ${String(maxPixels)} (${typeof maxPixels})`);
  const autoOrient = o.autoOrient ?? DECODE_DEFAULTS.autoOrient;
  if (typeof autoOrient !== 'boolean')
    throw new ImageError(`Expected boolean for autoOrient but received ${String(autoOrient)} (${typeof autoOrient})`);
  return { maxPixels, autoOrient };
}

/** Decodes a data: URL's payload (base64 or percent-encoded). */
function dataUrlBytes(s: string, label: string): Uint8Array {
  const comma = s.indexOf(',');
  if (comma < 0) throw new ImageError(`${label}: malformed data: URL (no comma before the payload)`, label);
  const meta = s.slice(5, comma);
  const payload = s.slice(comma + 1);
  if (/;base64$/i.test(meta)) {
    const clean = payload.replace(/\s+/g, '');
    if (!/^[A-Za-z0-9+/_-]*={0,2}$/.test(clean)) throw new ImageError(`${label}: payload is not valid base64`, label);
    return new Uint8Array(Buffer.from(clean, 'base64'));
  }
  // Percent-encoding is byte-wise (RFC 2397), so decodeURIComponent (UTF-8) cannot be used.
  const out: number[] = [];
  for (let i = 0; i < payload.length; i++) {
    if (payload[i] === '%') {
      const hex = payload.slice(i + 1, i + 3);
      if (!/^[0-9a-fA-F]{2}$/.test(hex)) throw new ImageError(`${label}: payload is not valid percent-encoding at char ${i}`, label);
      out.push(parseInt(hex, 16));
      i += 2;
    } else {
      for (const b of Buffer.from(payload[i], 'utf8')) out.push(b);
    }
  }
  return new Uint8Array(out);
}

async function inputBytes(input: string | Uint8Array | ArrayBuffer, label: string): Promise<Uint8Array> {
  if (input instanceof Uint8Array) return input;
  if (input instanceof ArrayBuffer) return new Uint8Array(input);
  if (input.startsWith('data:')) return dataUrlBytes(input, label);
  try {
    return await readFile(input);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const why = err.code === 'ENOENT' ? 'no such file' : err.code === 'EISDIR' ? 'is a directory' : err.message;
    throw new ImageError(`${label}: cannot read image file (${why})`, label);
  }
}

function rawImage(input: RawRgbImage, label: string, maxPixels: number): RgbImage {
  const { data, width, height } = input;
  if (!(data instanceof Uint8Array)) throw new ImageError(`${label}: data must be a Uint8Array of RGB bytes`, label);
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1)
    throw new ImageError(`${label}: width and height must be integers ≥ 1`, label);
  if (width * height > maxPixels)
    throw new ImageError(`${label}: ${width}×${height} exceeds the pixel limit of ${maxPixels} (option maxPixels)`, label);
  if (data.length !== width * height * 3)
    throw new ImageError(`${label}: expected ${width * height * 3} bytes (width·height·3), got ${data.length}`, label);
  return { data: new Uint8Array(data), width, height };
}

type SharpModule = typeof import('sharp').default;
let sharpModule: Promise<SharpModule> | undefined;
function loadSharp(): Promise<SharpModule> {
  // Loaded on first use so the rest of the library works where sharp's binary is missing.
  sharpModule ??= import('sharp').then((m) => m.default);
  return sharpModule;
}

/** Decodes an image to RGB u8 [H, W, 3] the way the reference's PIL `.convert('RGB')` sees it. */
export async function decodeImage(input: ImageInput, options: DecodeOptions = {}): Promise<RgbImage> {
  const label = describeImageInput(input);
  const { maxPixels, autoOrient } = checkOptions(options);
  if (isRawShape(input)) return rawImage(input, label, maxPixels);
  if (typeof input !== 'string' && !(input instanceof Uint8Array) && !(input instanceof ArrayBuffer))
    throw new ImageError(`Expected a path, data: URL, Buffer/Uint8Array or { data, width, height } but received ${label}`, label);
  const bytes = await inputBytes(input, label);
  if (bytes.length === 0) throw new ImageError(`${label}: the image is empty (0 bytes)`, label);

  let sharp: SharpModule;
  try {
    sharp = await loadSharp();
  } catch (e) {
    throw new ImageError(`${label}: cannot decode: the 'sharp' package failed to load (${(e as Error).message.split('\n')[0]}); ` +
      'install it with: npm install sharp@0.35.5, or pass raw RGB { data, width, height }', label);
  }
  try {
    const pipeline = sharp(bytes, {
      failOn: 'error', // like PIL: corrupt or truncated data is an error, harmless warnings are not
      limitInputPixels: maxPixels,
      autoOrient,
      ignoreIcc: true,
      pages: 1,
    });
    const { data, info } = await pipeline.removeAlpha().toColourspace('srgb').raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
    if (info.channels !== 3 || data.length !== info.width * info.height * 3)
      throw new ImageError(`${label}: decoder returned ${info.channels} channels, expected RGB`, label);
    if (info.width < 1 || info.height < 1) throw new ImageError(`${label}: the image has zero size`, label);
    return { data: new Uint8Array(data.buffer, data.byteOffset, data.length), width: info.width, height: info.height };
  } catch (e) {
    if (e instanceof ImageError) throw e;
    const msg = (e as Error).message.split('\n')[0];
    if (/pixel limit/i.test(msg))
      throw new ImageError(`${label}: image exceeds the pixel limit of ${maxPixels} (option maxPixels)`, label);
    throw new ImageError(`${label}: cannot decode image (${msg})`, label);
  }
}
