// qwen2vl.ts — Qwen2.5-VL image preprocessing: RGB u8 → pixel_values rows (docs §3.1, §3.2, §3.4).
//
// Legend: H, W input size; h, w resized size (multiples of factor = patchSize·mergeSize = 28);
// gt = 1 (one image = one temporal group), gh = h/14, gw = w/14 patch rows/cols;
// tps = temporal patch size (2); ps = patch size (14); row length D = 3·tps·ps·ps = 1176.
//
//   pixelValues f32 [gt·gh·gw, D]    rows in merge-unit order (§3.2), values (c, tp, py, px)
//   grid        [gt, gh, gw]         image_grid_thw
//   tokens      gh·gw / mergeSize²   merged image tokens the text sequence receives (§3.4)
//
// What the reference does, reproduced exactly (transformers Qwen2VLImageProcessor, slow):
// smart_resize in float64 with Python's round-half-to-even; Pillow BICUBIC resize (native
// image_resize, or the TS twin when no queue is given); rescale float32(float64(u8)·(1/255));
// normalise in float32 against float32 mean/std; the single frame duplicated to tps frames.
// Pixel limits: DiffusionVL's 147456..262144 unless the model config says otherwise — pass
// `config.vision` (lib/weights/config.ts resolves min_pixels/max_pixels) as the options.
import { ImageError, OptionError } from '../errors.js';
import type { Queue } from '../native/index.js';
import { tensorFromArray } from '../native/index.js';
import type { RgbImage } from './decode.js';
import { resizeBicubicRef } from './resample.js';

/** CLIP normalisation constants used by Qwen2.5-VL's preprocessor_config.json. */
export const CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073] as const;
export const CLIP_STD = [0.26862954, 0.26130258, 0.27577711] as const;

/** Defaults: DiffusionVL's pixel limits (qwen_vision_tower.py, §3.1) and the Qwen2.5-VL geometry. */
export const QWEN_IMAGE_DEFAULTS = {
  minPixels: 384 * 384, // 147456
  maxPixels: 512 * 512, // 262144
  patchSize: 14,
  spatialMergeSize: 2,
  temporalPatchSize: 2,
  /** Training-time square padding (§3.1): off, as in the reference eval. */
  pad: false,
} as const;

/** int(255·mean): the training-time pad colour (§3.1). */
export const PAD_COLOR = [122, 116, 104] as const;

/** The largest aspect ratio smart_resize accepts (§3.1). */
export const MAX_ASPECT_RATIO = 200;

export interface SmartResizeOptions {
  factor?: number;
  minPixels?: number;
  maxPixels?: number;
}

/** Python's round() on a float64: nearest integer, ties to even. */
export function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f; // exact for doubles
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

function needInt(name: string, v: unknown, min: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min)
    throw new OptionError(`Expected integer ≥ ${min} for ${name} but received ${String(v)} (${typeof v})`, name);
  return v;
}

/**
 * smart_resize (§3.1 step 1): the (height, width), multiples of `factor`, closest to (H, W)
 * with minPixels ≤ h·w ≤ maxPixels (up to rounding). Throws ImageError for an aspect ratio over
 * 200 or a zero side.
 */
export function smartResize(height: number, width: number, options: SmartResizeOptions = {}): { height: number; width: number } {
  const factor = needInt('factor', options.factor ?? 28, 1);
  const minPixels = needInt('minPixels', options.minPixels ?? QWEN_IMAGE_DEFAULTS.minPixels, 1);
  const maxPixels = needInt('maxPixels', options.maxPixels ?? QWEN_IMAGE_DEFAULTS.maxPixels, 1);
  if (minPixels > maxPixels) throw new OptionError(`minPixels ${minPixels} exceeds maxPixels ${maxPixels}`, 'minPixels');
  const label = `${width}×${height} image`;
  if (!Number.isInteger(height) || !Number.isInteger(width) || height < 1 || width < 1)
    throw new ImageError(`${label}: width and height must be integers ≥ 1`, label);
  const ratio = Math.max(height, width) / Math.min(height, width);
  if (ratio > MAX_ASPECT_RATIO)
    throw new ImageError(`${label}: aspect ratio ${ratio.toFixed(1)} exceeds ${MAX_ASPECT_RATIO} (smart_resize, §3.1)`, label);
  let h = roundHalfEven(height / factor) * factor;
  let w = roundHalfEven(width / factor) * factor;
  if (h * w > maxPixels) {
    const beta = Math.sqrt((height * width) / maxPixels);
    h = Math.max(factor, Math.floor(height / beta / factor) * factor);
    w = Math.max(factor, Math.floor(width / beta / factor) * factor);
  } else if (h * w < minPixels) {
    const beta = Math.sqrt(minPixels / (height * width));
    h = Math.ceil((height * beta) / factor) * factor;
    w = Math.ceil((width * beta) / factor) * factor;
  }
  return { height: h, width: w };
}

/**
 * Training-time "pad" mode (§3.1): centre the image on a square of side max(W, H) filled with
 * PAD_COLOR; the short axis is offset by (long − short) // 2.
 */
export function padToSquare(img: RgbImage): RgbImage {
  const { width: W, height: H } = img;
  const S = Math.max(W, H);
  if (S === W && S === H) return img;
  const out = new Uint8Array(S * S * 3);
  // One pixel written, then doubled with copyWithin (a per-pixel set() took ≈ 2 ms at 275²).
  out.set(PAD_COLOR, 0);
  for (let n = 3; n < out.length; n *= 2) out.copyWithin(n, 0, Math.min(n, out.length - n));
  const x0 = W < S ? (S - W) >> 1 : 0;
  const y0 = H < S ? (S - H) >> 1 : 0;
  for (let y = 0; y < H; y++) out.set(img.data.subarray(y * W * 3, (y + 1) * W * 3), ((y0 + y) * S + x0) * 3);
  return { data: out, width: S, height: S };
}

export interface QwenPreprocessOptions {
  minPixels?: number;
  maxPixels?: number;
  patchSize?: number;
  spatialMergeSize?: number;
  temporalPatchSize?: number;
  pad?: boolean;
  /** Runs the resize natively (image_resize); without one the TS twin does it (same bytes, slower). */
  queue?: Queue;
}

export interface QwenPixelValues {
  /** f32 [gt·gh·gw, 3·tps·ps·ps]. */
  pixelValues: Float32Array;
  /** [gt, gh, gw] (image_grid_thw row). */
  grid: [number, number, number];
  /** Merged tokens for this image: gh·gw / mergeSize². */
  tokens: number;
  /** Row length 3·tps·ps·ps (1176). */
  rowLength: number;
  /** The resized image size (multiples of ps·mergeSize). */
  width: number;
  height: number;
}

/** Pillow-exact bicubic resize of RGB u8, natively when a queue is given. */
export async function resizeRgb(img: RgbImage, width: number, height: number, queue?: Queue): Promise<RgbImage> {
  if (width === img.width && height === img.height) return img;
  if (!queue) return { data: resizeBicubicRef(img.data, img.width, img.height, 3, width, height), width, height };
  const x = tensorFromArray('u8', [img.height, img.width, 3], img.data);
  try {
    const y = queue.imageResize(x, width, height);
    try {
      return { data: (await queue.read(y)) as Uint8Array, width, height };
    } finally {
      y.dispose();
    }
  } finally {
    x.dispose();
  }
}

/** Per channel and byte value: float32((float32(v·(1/255)) − mean_c) / std_c), as the processor computes. */
function normaliseTable(): Float32Array[] {
  return [0, 1, 2].map((c) => {
    const mean = Math.fround(CLIP_MEAN[c]);
    const std = Math.fround(CLIP_STD[c]);
    const t = new Float32Array(256);
    for (let v = 0; v < 256; v++) {
      const x = Math.fround(v * (1 / 255));
      t[v] = Math.fround(Math.fround(x - mean) / std);
    }
    return t;
  });
}
let lut: Float32Array[] | undefined;

/**
 * Lays a resized RGB u8 image out as pixel_values rows (§3.2): for bh, bw over merge units,
 * ih, iw inside the unit → patch (2bh+ih, 2bw+iw); inside a row (c, tp, py, px), the tps
 * frames identical. (The engine's requests run the patch_rows op instead, its bit-exact twin.)
 */
export function patchRows(img: RgbImage, ps = 14, merge = 2, tps = 2): QwenPixelValues {
  const { width: w, height: h, data } = img;
  const unit = ps * merge;
  if (w % unit !== 0 || h % unit !== 0)
    throw new ImageError(`${w}×${h} image: sides must be multiples of ${unit} to cut into patches`, `${w}×${h} image`);
  lut ??= normaliseTable();
  const gh = h / ps, gw = w / ps;
  const D = 3 * tps * ps * ps;
  const out = new Float32Array(gh * gw * D);
  let row = 0;
  for (let bh = 0; bh < gh / merge; bh++)
    for (let bw = 0; bw < gw / merge; bw++)
      for (let ih = 0; ih < merge; ih++)
        for (let iw = 0; iw < merge; iw++, row++) {
          const y0 = (bh * merge + ih) * ps, x0 = (bw * merge + iw) * ps;
          const base = row * D;
          for (let c = 0; c < 3; c++) {
            const t = lut[c];
            const first = base + c * tps * ps * ps;
            for (let py = 0; py < ps; py++)
              for (let px = 0; px < ps; px++) out[first + py * ps + px] = t[data[((y0 + py) * w + x0 + px) * 3 + c]];
            // Frames 1..tps-1 repeat frame 0 (a still image fills the temporal patch).
            for (let tp = 1; tp < tps; tp++) out.copyWithin(first + tp * ps * ps, first, first + ps * ps);
          }
        }
  return { pixelValues: out, grid: [1, gh, gw], tokens: (gh * gw) / (merge * merge), rowLength: D, width: w, height: h };
}

/** Where §3.1 takes one decoded image: the (padded) source, the smart-resized size, its grid. */
export function qwenResizeTarget(img: RgbImage, options: QwenPreprocessOptions = {}): { src: RgbImage; width: number; height: number; grid: [number, number, number]; tokens: number } {
  const ps = needInt('patchSize', options.patchSize ?? QWEN_IMAGE_DEFAULTS.patchSize, 1);
  const merge = needInt('spatialMergeSize', options.spatialMergeSize ?? QWEN_IMAGE_DEFAULTS.spatialMergeSize, 1);
  const pad = options.pad ?? QWEN_IMAGE_DEFAULTS.pad;
  if (typeof pad !== 'boolean') throw new OptionError(`Expected boolean for pad but received ${String(pad)} (${typeof pad})`, 'pad');
  const src = pad ? padToSquare(img) : img;
  const size = smartResize(src.height, src.width, { factor: ps * merge, minPixels: options.minPixels, maxPixels: options.maxPixels });
  const gh = size.height / ps, gw = size.width / ps;
  return { src, width: size.width, height: size.height, grid: [1, gh, gw], tokens: (gh * gw) / (merge * merge) };
}

/** The whole §3.1 path for one decoded image. */
export async function preprocessQwen2vl(img: RgbImage, options: QwenPreprocessOptions = {}): Promise<QwenPixelValues> {
  const tps = needInt('temporalPatchSize', options.temporalPatchSize ?? QWEN_IMAGE_DEFAULTS.temporalPatchSize, 1);
  const t = qwenResizeTarget(img, options);
  const resized = await resizeRgb(t.src, t.width, t.height, options.queue);
  return patchRows(resized, options.patchSize ?? QWEN_IMAGE_DEFAULTS.patchSize, options.spatialMergeSize ?? QWEN_IMAGE_DEFAULTS.spatialMergeSize, tps);
}
