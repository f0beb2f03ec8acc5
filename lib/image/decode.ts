// decode.ts — any accepted image input → interleaved RGB u8 [H, W, 3] (docs §3.1, before step 1).
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
// test/unit/image-decode.test.ts; a small plain PNG is decoded in JS to the same bytes (png.ts).
// Every failure is an ImageError naming the input: the path, "Buffer of N bytes",
// "data: URL (…)" or "raw RGB W×H".
//
// Hostile inputs: a path must be a regular file (opened non-blocking and fstat'ed before a
// byte is read, so a FIFO, /dev/zero or a directory is refused at once, never read forever),
// no larger than `maxBytes`, read to its stat'ed size and no further (up to 1 MiB with
// synchronous calls: four thread-pool round trips cost more than the read — readImageFile).
// `probeImage` reads only the header (sharp's metadata: format, width, height, EXIF
// orientation), so a caller can check dimensions and token counts of every image before
// decoding any.
import { close as closeCb, closeSync, constants, fstatSync, openSync, read as readCb, readSync } from 'node:fs';
import { promisify } from 'node:util';
import { ImageError } from '../errors.js';
import { decodeJpegFast } from './jpeg.js';
import { decodePngFast } from './png.js';

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
  /** Largest accepted file or encoded buffer in bytes. Default 64 MiB. */
  maxBytes?: number;
  /** Apply the EXIF orientation tag (default true; false = what PIL's Image.open gives). */
  autoOrient?: boolean;
}

export const DECODE_DEFAULTS = { maxPixels: 64 * 1024 * 1024, maxBytes: 64 * 1024 * 1024, autoOrient: true } as const;

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
  const maxBytes = o.maxBytes ?? DECODE_DEFAULTS.maxBytes;
  if (!Number.isInteger(maxBytes) || maxBytes < 1)
    throw new ImageError(`Expected integer ≥ 1 for maxBytes but received ${String(maxBytes)} (${typeof maxBytes})`);
  const autoOrient = o.autoOrient ?? DECODE_DEFAULTS.autoOrient;
  if (typeof autoOrient !== 'boolean')
    throw new ImageError(`Expected boolean for autoOrient but received ${String(autoOrient)} (${typeof autoOrient})`);
  return { maxPixels, maxBytes, autoOrient };
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

/** Files up to this size are read with synchronous calls (readImageFile says why). */
export const SYNC_READ_MAX_BYTES = 1 << 20;

const readAsync = promisify(readCb);

/**
 * Reads an image file: opened read-only and non-blocking (opening a FIFO must not wait for a
 * writer), fstat'ed, refused unless a regular file of at most `maxBytes`, then read to its
 * stat'ed size. A file that shrinks meanwhile gives what is there. The open, the stat and the
 * reads of a file up to SYNC_READ_MAX_BYTES are synchronous calls: each asynchronous fs call is a
 * round trip through libuv's thread pool, and a picture took four (open, stat, read, close) —
 * ≈ 0.8 ms on a 2-core VM where the engine's threads share the cores, against ≈ 20 µs for the
 * direct calls on a file in the page cache. Larger files are read asynchronously.
 */
export async function readImageFile(path: string, maxBytes: number, label = path): Promise<Uint8Array> {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const why = err.code === 'ENOENT' ? 'no such file' : err.code === 'EISDIR' ? 'is a directory' : err.code === 'EACCES' ? 'permission denied' : err.message;
    throw new ImageError(`${label}: cannot read image file (${why})`, label);
  }
  let small = true;
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) {
      const kind = st.isDirectory() ? 'a directory' : st.isFIFO() ? 'a FIFO' : st.isCharacterDevice() ? 'a character device' :
        st.isBlockDevice() ? 'a block device' : st.isSocket() ? 'a socket' : 'not a regular file';
      throw new ImageError(`${label}: cannot read image file (is ${kind}; only regular files are read)`, label);
    }
    if (st.size > maxBytes) {
      throw new ImageError(`${label}: the file is ${st.size} bytes, more than the limit of ${maxBytes} (option maxBytes / limits.imageBytes)`, label);
    }
    small = st.size <= SYNC_READ_MAX_BYTES;
    const buf = new Uint8Array(st.size);
    let done = 0;
    while (done < buf.length) {
      const n = small ? readSync(fd, buf, done, buf.length - done, done) : (await readAsync(fd, buf, done, buf.length - done, done)).bytesRead;
      if (n === 0) break;
      done += n;
    }
    return done === buf.length ? buf : buf.subarray(0, done);
  } catch (e) {
    if (e instanceof ImageError) throw e;
    throw new ImageError(`${label}: cannot read image file (${(e as Error).message})`, label);
  } finally {
    // Not awaited for a large file: the bytes are read; waiting would add a round trip.
    if (small) closeSync(fd);
    else closeCb(fd, () => undefined);
  }
}

async function inputBytes(input: string | Uint8Array | ArrayBuffer, label: string, maxBytes: number): Promise<Uint8Array> {
  const checked = (b: Uint8Array) => {
    if (b.length > maxBytes) throw new ImageError(`${label}: ${b.length} bytes of encoded image, more than the limit of ${maxBytes} (option maxBytes / limits.imageBytes)`, label);
    return b;
  };
  if (input instanceof Uint8Array) return checked(input);
  if (input instanceof ArrayBuffer) return checked(new Uint8Array(input));
  if (input.startsWith('data:')) {
    // base64 holds 3 bytes per 4 chars: refuse before decoding a payload that cannot fit.
    if (input.length > maxBytes * 4 / 3 + 1024) throw new ImageError(`${label}: the data: URL is longer than an image of ${maxBytes} bytes (option maxBytes / limits.imageBytes)`, label);
    return checked(dataUrlBytes(input, label));
  }
  return readImageFile(input, maxBytes, label);
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

/** Raster formats Pillow (the reference) opens that sharp decodes. Vector formats (SVG), PDF and
 *  the rest sharp could read are refused: the reference never sees them, and rendering them is
 *  open-ended work. */
export const IMAGE_FORMATS: readonly string[] = ['png', 'jpeg', 'webp', 'gif', 'tiff'];

function checkFormat(format: string | undefined, label: string): void {
  if (format === undefined || !IMAGE_FORMATS.includes(format)) {
    throw new ImageError(`${label}: ${format ?? 'unknown'} images are not accepted (formats: ${IMAGE_FORMATS.join(', ')})`, label);
  }
}

/**
 * Starts loading the image decoder (sharp) in the background, so a model with a vision tower
 * does not pay for it on its first picture (≈ 150 ms). A failure is kept for that first use,
 * which reports it as an ImageError; nothing is thrown or logged here.
 */
export function preloadImageDecoder(): void {
  // Importing sharp is half of it; libvips starts its machinery on the first pipeline, so one
  // 1×1 PNG goes through an encode and the decode path too.
  loadSharp()
    .then(async (sharp) => {
      const png = await sharp({ create: { width: 1, height: 1, channels: 3, background: { r: 0, g: 0, b: 0 } } }).png().toBuffer();
      await sharp(png, { failOn: 'error', pages: 1 }).metadata();
      await sharp(png, { failOn: 'error', pages: 1 }).removeAlpha().toColourspace('srgb').raw({ depth: 'uchar' }).toBuffer();
    })
    .catch(() => undefined);
}

async function sharpOrError(label: string): Promise<SharpModule> {
  try {
    return await loadSharp();
  } catch (e) {
    throw new ImageError(`${label}: cannot decode: the 'sharp' package failed to load (${(e as Error).message.split('\n')[0]}); ` +
      'install it with: npm install sharp@0.35.5, or pass raw RGB { data, width, height }', label);
  }
}

/** The encoded bytes of a non-raw input, checked (type, size cap, not empty). */
async function encodedBytes(input: unknown, label: string, maxBytes: number): Promise<Uint8Array> {
  if (typeof input !== 'string' && !(input instanceof Uint8Array) && !(input instanceof ArrayBuffer))
    throw new ImageError(`Expected a path, data: URL, Buffer/Uint8Array or { data, width, height } but received ${label}`, label);
  const bytes = await inputBytes(input, label, maxBytes);
  if (bytes.length === 0) throw new ImageError(`${label}: the image is empty (0 bytes)`, label);
  return bytes;
}

/** What the header says: the size decodeImage will return (EXIF orientation applied when
 *  autoOrient is on), read without decoding any pixel. */
export interface ImageProbe {
  width: number;
  height: number;
  /** 'png', 'jpeg', 'webp', … or 'raw'. */
  format: string;
  label: string;
}

/**
 * Reads an image's header only and checks it: a supported, readable input within maxBytes and
 * maxPixels. Cheap (no pixel is decoded), so every image of a request can be probed before any
 * is decoded.
 */
export async function probeImage(input: ImageInput, options: DecodeOptions = {}): Promise<ImageProbe> {
  return (await probeImageKeep(input, options)).probe;
}

/**
 * An image probeImageKeep read and checked: its encoded bytes, kept so that decodeImage reads
 * the file (or data: URL) once per request and skips the header it already checked.
 */
export class ProbedImage {
  constructor(readonly bytes: Uint8Array, readonly probe: ImageProbe) {}
}

/**
 * A whole, plain PNG's size from its IHDR chunk, read in JS (sharp's metadata call costs ≈ 0.5 ms
 * of the probe): the signature, IHDR first, then the chunk list walked to IEND. Anything else —
 * another format, an eXIf chunk (an orientation sharp would apply), a truncated or malformed chunk
 * list — returns null, and sharp's metadata decides as before. The pixels are checked when the
 * image is decoded.
 */
function pngHeader(b: Uint8Array): { width: number; height: number; format: 'png' } | null {
  const sig = [137, 80, 78, 71, 13, 10, 26, 10];
  if (b.length < 45 || sig.some((v, i) => b[i] !== v)) return null;
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const type = (p: number) => String.fromCharCode(b[p], b[p + 1], b[p + 2], b[p + 3]);
  if (dv.getUint32(8) !== 13 || type(12) !== 'IHDR') return null;
  const width = dv.getUint32(16), height = dv.getUint32(20);
  if (width < 1 || height < 1 || width > 0x7fffffff || height > 0x7fffffff) return null;
  for (let p = 8; p + 12 <= b.length; ) {
    const len = dv.getUint32(p), t = type(p + 4);
    if (t === 'eXIf') return null;
    if (t === 'IEND') return { width, height, format: 'png' };
    p += 12 + len;
  }
  return null;
}

/**
 * A JPEG's size from its frame header (SOFn), read in JS: sharp's metadata call is ≈ 0.2 ms of
 * fixed cost (a libvips pipeline and a thread-pool trip) for a few header bytes. Null — sharp
 * decides — for anything this walk does not read exactly as sharp would: an APP1 Exif segment
 * anywhere before the scan (an orientation may swap the sides), a size given later by a DNL
 * marker (height 0), a second frame header, a truncated or malformed segment list.
 */
export function jpegHeader(b: Uint8Array): { width: number; height: number; format: 'jpeg' } | null {
  if (b.length < 4 || b[0] !== 0xff || b[1] !== 0xd8) return null;
  let frame: { width: number; height: number; format: 'jpeg' } | null = null;
  // Every segment up to the scan (SOS): the frame header, and no Exif anywhere before the data.
  for (let p = 2; p + 4 <= b.length; ) {
    if (b[p] !== 0xff) return null;
    const m = b[p + 1];
    if (m === 0xff) { p++; continue; }   // fill byte before a marker
    if (m === 0xda) return frame;
    if (m === 0xd8 || m === 0xd9 || (m >= 0xd0 && m <= 0xd7) || m === 0x01) return null;
    const len = (b[p + 2] << 8) | b[p + 3];
    if (len < 2 || p + 2 + len > b.length) return null;
    if (m === 0xe1 && len >= 8 && String.fromCharCode(b[p + 4], b[p + 5], b[p + 6], b[p + 7]) === 'Exif') return null;
    // SOF0-3, 5-7, 9-11, 13-15 (0xc4 DHT, 0xc8 JPG, 0xcc DAC are not frame headers); one per file.
    if (m >= 0xc0 && m <= 0xcf && m !== 0xc4 && m !== 0xc8 && m !== 0xcc) {
      if (frame || len < 8) return null;
      const height = (b[p + 5] << 8) | b[p + 6], width = (b[p + 7] << 8) | b[p + 8];
      if (width < 1 || height < 1) return null;
      frame = { width, height, format: 'jpeg' };
    }
    p += 2 + len;
  }
  return null;
}

/**
 * probeImage, also handing back what decodeImage needs next: a ProbedImage for encoded input
 * (file, data: URL, bytes), the input itself for raw RGB.
 */
export async function probeImageKeep(input: ImageInput, options: DecodeOptions = {}): Promise<{ probe: ImageProbe; image: ImageInput | ProbedImage }> {
  const label = describeImageInput(input);
  const { maxPixels, maxBytes, autoOrient } = checkOptions(options);
  if (isRawShape(input)) {
    const { width, height } = input;
    if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1)
      throw new ImageError(`${label}: width and height must be integers ≥ 1`, label);
    if (width * height > maxPixels)
      throw new ImageError(`${label}: ${width}×${height} exceeds the pixel limit of ${maxPixels} (option maxPixels)`, label);
    return { probe: { width, height, format: 'raw', label }, image: input };
  }
  const bytes = await encodedBytes(input, label, maxBytes);
  let meta: { width?: number; height?: number; format?: string; orientation?: number } | null = pngHeader(bytes) ?? jpegHeader(bytes);
  if (!meta) {
    const sharp = await sharpOrError(label);
    try {
      meta = await sharp(bytes, { limitInputPixels: false, pages: 1 }).metadata();
    } catch (e) {
      throw new ImageError(`${label}: cannot decode image (${(e as Error).message.split('\n')[0]})`, label);
    }
  }
  let { width, height } = meta;
  checkFormat(meta.format, label);
  if (!width || !height) throw new ImageError(`${label}: the image header gives no size`, label);
  if (autoOrient && (meta.orientation ?? 1) >= 5) [width, height] = [height, width];
  if (width * height > maxPixels)
    throw new ImageError(`${label}: ${width}×${height} exceeds the pixel limit of ${maxPixels} (option maxPixels / limits.imagePixels)`, label);
  const probe = { width, height, format: meta.format ?? 'unknown', label };
  return { probe, image: new ProbedImage(bytes, probe) };
}

/** Decodes an image to RGB u8 [H, W, 3] the way the reference's PIL `.convert('RGB')` sees it. */
export async function decodeImage(input: ImageInput | ProbedImage, options: DecodeOptions = {}): Promise<RgbImage> {
  const probed = input instanceof ProbedImage ? input : undefined;
  const label = probed ? probed.probe.label : describeImageInput(input as ImageInput);
  const { maxPixels, maxBytes, autoOrient } = checkOptions(options);
  if (!probed && isRawShape(input)) return rawImage(input, label, maxPixels);
  const bytes = probed ? probed.bytes : await encodedBytes(input, label, maxBytes);
  // A small plain PNG is decoded in JS and a small baseline JPEG by the addon, byte for byte what
  // sharp gives (png.ts, jpeg.ts); the rest goes to sharp.
  const fast = decodePngFast(bytes, maxPixels) ?? decodeJpegFast(bytes, maxPixels);
  if (fast) return fast;
  const sharp = await sharpOrError(label);
  try {
    const pipeline = sharp(bytes, {
      failOn: 'error', // like PIL: corrupt or truncated data is an error, harmless warnings are not
      limitInputPixels: maxPixels,
      autoOrient,
      ignoreIcc: true,
      pages: 1,
    });
    if (!probed) checkFormat((await pipeline.metadata()).format, label);  // a probe checked these bytes already
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
