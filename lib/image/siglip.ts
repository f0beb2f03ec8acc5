// siglip.ts — LLaVA-OneVision "anyres_max_4" image preprocessing for the SigLIP route
// (DiffusionVL-Qwen2.5-7B), docs §3.5 steps 1-4 and 8.
//
// Legend: W, H input size; (tw, th) the chosen pinpoint; nW = tw/384 tile columns, nH = th/384
// tile rows; n = 1 + nW·nH crops (the global view first, then tiles row-major); S = 384.
//
//   pixelValues f32 [n, 3, S, S]   CHW, x/255 in float64 → float32, then (x − 0.5)/0.5 in float32
//
// The crops go to the SigLIP tower one by one; steps 5-7 (encoder, projector, unpad/merge) need
// `imageSize` [W, H] and `tiles` [nW, nH] from here. Resizes are Pillow-exact bicubic (native
// image_resize when a queue is given, else the TS twin).
import { ImageError, OptionError } from '../errors.js';
import type { Queue } from '../native/index.js';
import type { RgbImage } from './decode.js';
import { resizeRgb } from './qwen2vl.js';

/** Crop side of SigLIP2-so400m-patch14-384. */
export const SIGLIP_CROP = 384;

/** image_grid_pinpoints (§1.7): [384·i, 384·j] as [width, height], i outer, j inner, i, j = 1..6. */
export const SIGLIP_PINPOINTS: readonly (readonly [number, number])[] = Array.from({ length: 36 }, (_, k) => [
  SIGLIP_CROP * (Math.floor(k / 6) + 1),
  SIGLIP_CROP * ((k % 6) + 1),
] as const);

/** Multi-image prompts pad to a square with int(255·0.5) grey (§3.5 step 8). */
export const SIGLIP_SQUARE_PAD = [127, 127, 127] as const;

/**
 * §3.5 step 1: the pinpoint that keeps the most of the image after an aspect-preserving fit,
 * ties broken by the least wasted area, first in stored order otherwise.
 */
export function selectBestResolution(W: number, H: number, pinpoints: readonly (readonly [number, number])[] = SIGLIP_PINPOINTS): [number, number] {
  if (pinpoints.length === 0) throw new OptionError('pinpoints must not be empty', 'pinpoints');
  let best: [number, number] = [pinpoints[0][0], pinpoints[0][1]];
  let bestEff = 0;
  let bestWaste = Infinity;
  for (const [tw, th] of pinpoints) {
    const s = Math.min(tw / W, th / H);
    const eff = Math.min(Math.trunc(W * s) * Math.trunc(H * s), W * H);
    const waste = tw * th - eff;
    if (eff > bestEff || (eff === bestEff && waste < bestWaste)) {
      best = [tw, th];
      bestEff = eff;
      bestWaste = waste;
    }
  }
  return best;
}

/** Copies img onto a new (w, h) canvas of `fill` at (x0, y0). */
function paste(img: RgbImage, w: number, h: number, x0: number, y0: number, fill: readonly number[]): RgbImage {
  const out = new Uint8Array(w * h * 3);
  if (fill.some((v) => v !== 0)) for (let i = 0; i < w * h; i++) out.set(fill, i * 3);
  for (let y = 0; y < img.height; y++)
    out.set(img.data.subarray(y * img.width * 3, (y + 1) * img.width * 3), ((y0 + y) * w + x0) * 3);
  return { data: out, width: w, height: h };
}

function crop(img: RgbImage, x0: number, y0: number, S: number): RgbImage {
  const out = new Uint8Array(S * S * 3);
  for (let y = 0; y < S; y++) out.set(img.data.subarray(((y0 + y) * img.width + x0) * 3, ((y0 + y) * img.width + x0 + S) * 3), y * S * 3);
  return { data: out, width: S, height: S };
}

export interface AnyresCrops {
  /** u8 crops, each S×S: the global view, then tiles row-major. */
  crops: RgbImage[];
  /** The chosen pinpoint [tw, th]. */
  best: [number, number];
  /** The aspect-preserving size pasted on the black canvas [nw, nh]. */
  resized: [number, number];
  /** [nW, nH]: tile columns and rows. */
  tiles: [number, number];
}

export interface SiglipOptions {
  pinpoints?: readonly (readonly [number, number])[];
  queue?: Queue;
}

/** §3.5 steps 1-3 on u8: pick the pinpoint, resize-and-pad on black, cut tiles, add the global view. */
export async function anyresCrops(img: RgbImage, options: SiglipOptions = {}): Promise<AnyresCrops> {
  const S = SIGLIP_CROP;
  const { width: W, height: H } = img;
  const [tw, th] = selectBestResolution(W, H, options.pinpoints);
  if (tw % S !== 0 || th % S !== 0) throw new OptionError(`pinpoint ${tw}×${th} is not a multiple of ${S}`, 'pinpoints');
  // Step 2: fit inside (tw, th) keeping the aspect, the long side exact, the other ceil'd.
  const [nw, nh] = tw / W < th / H ? [tw, Math.min(Math.ceil(H * (tw / W)), th)] : [Math.min(Math.ceil(W * (th / H)), tw), th];
  const fitted = await resizeRgb(img, nw, nh, options.queue);
  const canvas = paste(fitted, tw, th, Math.floor((tw - nw) / 2), Math.floor((th - nh) / 2), [0, 0, 0]);
  const tiles: RgbImage[] = [];
  for (let y = 0; y < th; y += S) for (let x = 0; x < tw; x += S) tiles.push(crop(canvas, x, y, S));
  // Step 3: the unpadded original, aspect-distorted to S×S.
  const global = await resizeRgb(img, S, S, options.queue);
  return { crops: [global, ...tiles], best: [tw, th], resized: [nw, nh], tiles: [tw / S, th / S] };
}

/** §3.5 step 4: u8 S×S crops → f32 [n, 3, S, S], x/255 (float64 → float32) then (x − 0.5)/0.5 in float32. */
export function siglipNormalise(crops: readonly RgbImage[]): Float32Array {
  const S = SIGLIP_CROP;
  const lut = new Float32Array(256);
  for (let v = 0; v < 256; v++) lut[v] = Math.fround(Math.fround(Math.fround(v * (1 / 255)) - 0.5) / 0.5);
  const out = new Float32Array(crops.length * 3 * S * S);
  crops.forEach((c, k) => {
    if (c.width !== S || c.height !== S) throw new ImageError(`crop ${k} is ${c.width}×${c.height}, expected ${S}×${S}`, `crop ${k}`);
    for (let ch = 0; ch < 3; ch++) {
      const base = (k * 3 + ch) * S * S;
      for (let i = 0; i < S * S; i++) out[base + i] = lut[c.data[i * 3 + ch]];
    }
  });
  return out;
}

export interface SiglipPixelValues {
  /** f32 [n, 3, S, S]. */
  pixelValues: Float32Array;
  numCrops: number;
  /** [nW, nH] (1×1 and no tiles for the single-crop multi-image mode: tiles = [0, 0]). */
  tiles: [number, number];
  /** The original [W, H], needed for the unpad of step 7. */
  imageSize: [number, number];
  best?: [number, number];
}

/** §3.5 steps 1-4 for a single-image prompt. */
export async function preprocessSiglipAnyres(img: RgbImage, options: SiglipOptions = {}): Promise<SiglipPixelValues> {
  const a = await anyresCrops(img, options);
  return { pixelValues: siglipNormalise(a.crops), numCrops: a.crops.length, tiles: a.tiles, imageSize: [img.width, img.height], best: a.best };
}

/** §3.5 step 8 (multi-image prompts): pad to a square with grey 127, resize to S×S, one crop. */
export async function siglipSquareCrop(img: RgbImage, queue?: Queue): Promise<RgbImage> {
  const side = Math.max(img.width, img.height);
  const sq = paste(img, side, side, Math.floor((side - img.width) / 2), Math.floor((side - img.height) / 2), SIGLIP_SQUARE_PAD);
  return resizeRgb(sq, SIGLIP_CROP, SIGLIP_CROP, queue);
}

export async function preprocessSiglipSingle(img: RgbImage, options: { queue?: Queue } = {}): Promise<SiglipPixelValues> {
  const c = await siglipSquareCrop(img, options.queue);
  return { pixelValues: siglipNormalise([c]), numCrops: 1, tiles: [0, 0], imageSize: [img.width, img.height] };
}
