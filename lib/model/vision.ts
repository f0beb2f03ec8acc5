// vision.ts — the one interface Model uses for images (docs §3, §3.6), whatever the route:
// the Qwen2.5-VL tower (qwen25vl_vision.ts) or SigLIP with its projector and anyres merge
// (siglip.ts). An encoder turns decoded images into the feature rows that replace each image's
// placeholder positions, says from an image's size alone how many rows that will be, records
// its passes into its own plan cache, and frees them on dispose.
//
// Per request, Model decodes the images one at a time and hands each to `prepare` at once
// (Qwen2.5-VL: resize and patch rows, so the decoded pixels can go), then `encode`s them all in
// one call.
import type { RgbImage } from '../image/decode.js';
import type { Queue, Tensor } from '../native/index.js';
import type { PlanCache } from '../native/plan.js';
import type { ModelConfig, VisionConfig } from '../weights/config.js';
import type { LoadedWeights } from '../weights/load.js';
import { QwenVisionEncoder } from './qwen25vl_vision.js';
import { SiglipVisionEncoder } from './siglip.js';

export interface VisionFeatures {
  /** f32 [Σ tokensPerImage, H]: every image's rows, image after image. Enqueued: sync or read to wait. */
  features: Tensor;
  tokensPerImage: number[];
}

export interface EncodeImagesOptions {
  /** The prompt holds several images (SigLIP then encodes each as one padded square, docs §3.5 step 8). */
  multiImage: boolean;
}

/** A vision route over loaded weights. P: one image after `prepare`. */
export interface VisionEncoder<P = unknown> {
  readonly kind: VisionConfig['kind'];
  /** Whether an image's rows depend on how many images the prompt holds (SigLIP's square mode). */
  readonly countSensitive: boolean;
  /** Recorded passes of this encoder (bounded; freed by dispose). */
  readonly plans: PlanCache;
  /** Run op by op instead of through plans (DIFFUSIONVL_EAGER=1, or loadModel's eager). */
  eager: boolean;
  /** Rows an image of this size becomes: its header is enough, nothing is decoded (docs §3.4, §3.5 step 7). */
  tokenCount(width: number, height: number, opts: EncodeImagesOptions): number;
  /** Per-image work right after decoding (preprocessing where it does not depend on the other images). */
  prepare(image: RgbImage, opts: EncodeImagesOptions): Promise<P>;
  /** The prepared images of one prompt, in order, through the encoder. */
  encode(images: readonly P[], opts: EncodeImagesOptions): Promise<VisionFeatures>;
  /** Frees what prepare() holds (native tensors), once the image is encoded or dropped; work already queued keeps what it reads. */
  discard?(p: P): void;
  dispose(): void;
}

/** The width of the rows an encoder of `config` produces (must equal the text hidden size). */
export function visionOutputSize(config: Pick<ModelConfig, 'vision' | 'text'>): number {
  const v = config.vision;
  return v?.kind === 'qwen2_5_vl' ? v.outHiddenSize : config.text.hiddenSize;
}

/** The encoder of a loaded checkpoint, or null when it has no vision route or its weights were not loaded (vision: false). */
export function createVisionEncoder(q: Queue, weights: LoadedWeights): VisionEncoder | null {
  const v = weights.config.vision;
  if (!v) return null;
  if (v.kind === 'qwen2_5_vl') return weights.has('visual.patch_embed.proj.weight') ? new QwenVisionEncoder(q, weights, v) : null;
  return weights.has('image_newline') ? new SiglipVisionEncoder(q, weights, v) : null;
}
