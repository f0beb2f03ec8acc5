// siglip.ts — the SigLIP route of DiffusionVL-Qwen2.5-7B (docs §1.7, §3.5 steps 5-8): the
// SigLIP2 encoder per crop, the mlp2x_gelu projector, and the LLaVA-OneVision anyres merge
// (spatial_unpad, anyres_max_N downsample, image_newline after every row).
//
// Legend: S crop side (384), p patch side (14), g = floor(S/p) patches per side (27),
// P = g² patches per crop (729), C tower hidden (1152), nh heads (16), hd = C/nh (72),
// I tower intermediate (4304), Ht text hidden (3584), n crops of one image (1 + nW·nH),
// (nW, nH) tile columns/rows, (W, H) the original image size.
//
//   pixels  [n, 3, S, S] f32  (lib/image/siglip.ts, steps 1-4)
//   patches [c·P, 3·p·p] f32  row (k, py, px) = crop k's patch at (py, px), channel-major
//                             (ch, ky, kx), the flattening of patch_embedding.weight [C, 3, p, p]
//   hidden  [c·P, C]           26 pre-LN layers, no post_layernorm (select_layer −2)
//   proj    [n·P, Ht]          Linear → exact GELU → Linear
//   merged  [729 + h'·(w'+1), Ht] per image; the multi-image square mode gives P + 1 rows.
//
// The crops of every image go through the encoder `cropsPerPass` at a time (default 1), one
// attention segment per crop (mask 'segments' = block-diagonal full attention); each layer's
// intermediates are disposed as soon as they are queued. The merge is one gather over
// [proj; image_newline; downsampled grids] whose index list comes from `anyresLayout`, plain
// numbers: `siglipTokenCount` uses the same function, so a prompt can be laid out before any
// encoding.
import { ConfigError, OptionError, ShapeError } from '../errors.js';
import type { RgbImage } from '../image/decode.js';
import { SIGLIP_CROP, preprocessSiglipAnyres, preprocessSiglipSingle, selectBestResolution, type SiglipPixelValues } from '../image/siglip.js';
import { TensorScope, tensorFromArray, type OpSet, type Queue, type Tensor } from '../native/index.js';
import { eagerFromEnv, PlanCache, Recorder, type StepValues } from '../native/plan.js';
import type { SiglipVisionConfig } from '../weights/config.js';
import type { LoadedWeights } from '../weights/load.js';
import type { EncodeImagesOptions, VisionEncoder, VisionFeatures } from './vision.js';

// ---- layout: pure numbers (§3.5 step 7) ------------------------------------------------------

/** Python's float `a // b` (CPython float_floor_div), for the τ downsample size. */
export function pyFloorDiv(a: number, b: number): number {
  let mod = a % b;  // C fmod
  let div = (a - mod) / b;
  if (mod !== 0) {
    if ((b < 0) !== (mod < 0)) { mod += b; div -= 1; }
  }
  if (div === 0) return Math.sign(a / b) * 0;
  let f = Math.floor(div);
  if (div - f > 0.5) f += 1;
  return f;
}

/** max_num_patches of "anyres_max_N"; null for plain "anyres" (no downsample). */
export function anyresMaxPatches(imageAspectRatio: string): number | null {
  const m = /^anyres_max_(\d+)$/.exec(imageAspectRatio);
  if (m) return Number(m[1]);
  if (imageAspectRatio === 'anyres') return null;
  throw new ConfigError(`image_aspect_ratio '${imageAspectRatio}' is not an anyres mode (expected 'anyres' or 'anyres_max_N')`, { field: 'image_aspect_ratio' });
}

export interface AnyresLayout {
  /** [nW, nH] tile columns and rows. */
  tiles: [number, number];
  /** The tile feature map before unpadding: nH·g rows, nW·g cols. */
  rows: number;
  cols: number;
  /** First kept row / col and the kept size (h, w) after unpadding. */
  top: number;
  left: number;
  h: number;
  w: number;
  /** Size after the anyres_max downsample: (int(h // τ), int(w // τ)) when τ > 1.1, else (h, w). */
  outH: number;
  outW: number;
  downsampled: boolean;
  /** g² + outH·(outW + 1). */
  tokens: number;
}

/**
 * §3.5 step 7 for one image: unpad the (nH·g)×(nW·g) tile map against the original (W, H), then
 * the τ rule. The float expressions keep the reference's operation order (float64, truncating).
 */
export function anyresLayout(imageSize: readonly [number, number], tiles: readonly [number, number], g: number, maxPatches: number | null): AnyresLayout {
  const [W, H] = imageSize, [nW, nH] = tiles;
  const rows = nH * g, cols = nW * g;
  let top = 0, left = 0, h = rows, w = cols;
  if (W / H > cols / rows) {
    const newH = Math.trunc(H * (cols / W));
    top = Math.floor((rows - newH) / 2);
    h = rows - 2 * top;
  } else {
    const newW = Math.trunc(W * (rows / H));
    left = Math.floor((cols - newW) / 2);
    w = cols - 2 * left;
  }
  let outH = h, outW = w, downsampled = false;
  if (maxPatches !== null) {
    const tau = Math.sqrt((h * w) / (maxPatches * g * g));
    if (tau > 1.1) {
      outH = Math.trunc(pyFloorDiv(h, tau));
      outW = Math.trunc(pyFloorDiv(w, tau));
      downsampled = true;
    }
  }
  return { tiles: [nW, nH], rows, cols, top, left, h, w, outH, outW, downsampled, tokens: g * g + outH * (outW + 1) };
}

/** Patches per side g = floor(S/p): the "valid" conv drops the last S mod p pixel rows/cols. */
export function siglipGridSide(cfg: Pick<SiglipVisionConfig, 'imageSize' | 'patchSize'>): number {
  return Math.floor(cfg.imageSize / cfg.patchSize);
}

/** Tokens one image becomes (§3.5 steps 7-8), from its size alone: for laying out a prompt. */
export function siglipTokenCount(cfg: SiglipVisionConfig, imageSize: readonly [number, number], opts: { multiImage: boolean }): number {
  const g = siglipGridSide(cfg);
  if (opts.multiImage) return g * g + 1;
  const [tw, th] = selectBestResolution(imageSize[0], imageSize[1], cfg.gridPinpoints);
  return anyresLayout(imageSize, [tw / cfg.imageSize, th / cfg.imageSize], g, anyresMaxPatches(cfg.imageAspectRatio)).tokens;
}

// ---- encoder + projector (§3.5 steps 5-6) ----------------------------------------------------

interface LayerWeights {
  layerNorm1: [Tensor, Tensor];
  qProj: [Tensor, Tensor]; kProj: [Tensor, Tensor]; vProj: [Tensor, Tensor]; outProj: [Tensor, Tensor];
  layerNorm2: [Tensor, Tensor];
  fc1: [Tensor, Tensor]; fc2: [Tensor, Tensor];
}

interface TowerWeights {
  patchWeight: Tensor; patchBias: Tensor; positionEmbedding: Tensor;
  layers: LayerWeights[];
  projector0: [Tensor, Tensor]; projector2: [Tensor, Tensor];
  imageNewline: Tensor;
}

function towerWeights(weights: LoadedWeights, cfg: SiglipVisionConfig): TowerWeights {
  const w = (n: string) => weights.get(n);
  const wb = (n: string): [Tensor, Tensor] => [w(`${n}.weight`), w(`${n}.bias`)];
  const e = 'siglip.vision_model.embeddings.';
  const layers: LayerWeights[] = [];
  for (let k = 0; k < cfg.numLayers; k++) {
    const p = `siglip.vision_model.encoder.layers.${k}.`;
    layers.push({
      layerNorm1: wb(p + 'layer_norm1'),
      qProj: wb(p + 'self_attn.q_proj'), kProj: wb(p + 'self_attn.k_proj'), vProj: wb(p + 'self_attn.v_proj'), outProj: wb(p + 'self_attn.out_proj'),
      layerNorm2: wb(p + 'layer_norm2'),
      fc1: wb(p + 'mlp.fc1'), fc2: wb(p + 'mlp.fc2'),
    });
  }
  return {
    patchWeight: w(`${e}patch_embedding.weight`), patchBias: w(`${e}patch_embedding.bias`), positionEmbedding: w(`${e}position_embedding.weight`),
    layers, projector0: wb('mm_projector.0'), projector2: wb('mm_projector.2'), imageNewline: w('image_newline'),
  };
}

function checkConfig(cfg: SiglipVisionConfig): void {
  if (cfg.projectorType !== 'mlp2x_gelu') throw new ConfigError(`mm_projector_type '${cfg.projectorType}' is not supported (only 'mlp2x_gelu')`, { field: 'mm_projector_type' });
  if (cfg.selectFeature !== 'patch') throw new ConfigError(`mm_vision_select_feature '${cfg.selectFeature}' is not supported (only 'patch')`, { field: 'mm_vision_select_feature' });
  if (cfg.patchMergeType !== 'spatial_unpad') throw new ConfigError(`mm_patch_merge_type '${cfg.patchMergeType}' is not supported (only 'spatial_unpad')`, { field: 'mm_patch_merge_type' });
  if (cfg.newlinePosition !== 'grid') throw new ConfigError(`mm_newline_position '${cfg.newlinePosition}' is not supported (only 'grid')`, { field: 'mm_newline_position' });
  if (cfg.headDim * cfg.numHeads !== cfg.hiddenSize) throw new ConfigError(`SigLIP heads ${cfg.numHeads} × head dim ${cfg.headDim} ≠ hidden ${cfg.hiddenSize}`, { field: 'num_attention_heads' });
}

/** Crops [n, 3, S, S] → patch rows [n·P, 3·p·p] (the conv as a matmul, "valid": g·p ≤ S pixels used). */
export function siglipPatchRows(pixels: Float32Array, n: number, S: number, p: number): Float32Array {
  const g = Math.floor(S / p), K = 3 * p * p;
  if (pixels.length !== n * 3 * S * S) throw new ShapeError(`siglip: ${pixels.length} pixel values for ${n} crops of 3×${S}×${S}`);
  const out = new Float32Array(n * g * g * K);
  let o = 0;
  for (let k = 0; k < n; k++)
    for (let py = 0; py < g; py++)
      for (let px = 0; px < g; px++)
        for (let ch = 0; ch < 3; ch++) {
          const plane = (k * 3 + ch) * S * S;
          for (let ky = 0; ky < p; ky++) {
            const row = plane + (py * p + ky) * S + px * p;
            out.set(pixels.subarray(row, row + p), o);
            o += p;
          }
        }
  return out;
}

export interface EncodeCropsOptions {
  /**
   * Crops per encoder pass (default 1). The CPU matmul streams W once per 16-row block whatever
   * the pass size, so larger passes save only per-op overhead while holding c× the activations
   * (c·P·I·4 bytes for fc1 alone); measured no faster on the CPU. A GPU backend may want more.
   */
  cropsPerPass?: number;
  /**
   * Where to keep the recorded crop pass (one plan per pass size; the model keeps one cache).
   * Without it, or with `eager`, every op runs eagerly.
   */
  plans?: PlanCache;
  eager?: boolean;
}

/**
 * Steps 5-6 for `n` crops: pixels f32 [n, 3, S, S] (S = cfg.imageSize) → projected features
 * f32 [n·P, Ht], crop-major. Enqueued only; read or sync to wait.
 */
export function encodeSiglipCrops(queue: Queue, weights: LoadedWeights, cfg: SiglipVisionConfig, pixels: Float32Array, n: number, opts: EncodeCropsOptions = {}): Tensor {
  checkConfig(cfg);
  if (!Number.isInteger(n) || n < 1) throw new ShapeError(`encodeSiglipCrops: expected an integer ≥ 1 crops, got ${n}`);
  const per = opts.cropsPerPass ?? 1;
  if (!Number.isInteger(per) || per < 1) throw new OptionError(`Expected integer ≥ 1 for cropsPerPass but received ${String(per)} (${typeof per})`, 'cropsPerPass');
  const tw = towerWeights(weights, cfg);
  const S = cfg.imageSize, p = cfg.patchSize, g = siglipGridSide(cfg), P = g * g, C = cfg.hiddenSize;
  const nh = cfg.numHeads, hd = cfg.headDim, eps = cfg.layerNormEps, K = 3 * p * p;
  const Ht = tw.projector2[0].shape![0];
  if (pixels.length !== n * 3 * S * S) throw new ShapeError(`encodeSiglipCrops: ${pixels.length} pixel values for ${n} crops of 3×${S}×${S}`);

  const q = queue;
  const proj = q.empty('f32', [n * P, Ht]);
  const outer = new TensorScope();
  try {
    const patchW = withScope(q, outer, () => q.reshape(tw.patchWeight, [C, K]));
    // Position embedding in f32 (the add op takes f32), repeated per crop of a pass by a gather.
    const pos = tw.positionEmbedding.dtype === 'f32' ? tw.positionEmbedding : withScope(q, outer, () => q.convert(tw.positionEmbedding, 'f32'));
    // Precision 'fast' on a CPU queue: the attention's products in bf16 (as the Qwen2.5-VL tower's).
    const dims = { T: 0, c: 0, P, C, K, nh, hd, eps, bf16: q.device === 'cpu' && q.precision === 'fast' };
    for (let k0 = 0; k0 < n; k0 += per) {
      const c = Math.min(per, n - k0), T = c * P;
      const pass = new TensorScope();
      try {
        // Patch rows are built per pass, so the JS heap holds one pass of them, not the image's.
        const x = pass.track(tensorFromArray('f32', [T, K], siglipPatchRows(pixels.subarray(k0 * 3 * S * S, (k0 + c) * 3 * S * S), c, S, p)));
        const step: StepValues = { x, proj, projRows: Int32Array.from({ length: T }, (_, i) => k0 * P + i) };
        const d = { ...dims, T, c };
        if (!opts.plans || opts.eager || eagerFromEnv()) {
          cropPass(q, tw, patchW, pos, d, step);
        } else {
          // One plan per pass size (and output rows: proj is bound, so its size is part of the shape).
          const plan = opts.plans.get(`${c}:${n * P}`, () => {
            const rec = new Recorder(q);
            cropPass(rec, tw, patchW, pos, d, step);
            return rec.finish([]);
          });
          if (plan) plan.run(q, step);
          else cropPass(q, tw, patchW, pos, d, step);
        }
      } finally {
        pass.dispose();
      }
    }
    return proj;
  } catch (e) {
    proj.dispose();
    throw e;
  } finally {
    outer.dispose();
  }
}

/**
 * One encoder + projector pass over c crops (T = c·P rows) on a Queue (eager) or a Recorder:
 * step.x f32 [T, K] patch rows in, the projected rows scattered into step.proj at step.projRows.
 */
function cropPass(o: OpSet, tw: TowerWeights, patchW: Tensor, pos: Tensor,
  d: { T: number; c: number; P: number; C: number; K: number; nh: number; hd: number; eps: number; bf16: boolean }, step: StepValues): void {
  const { T, c, P, C, K, nh, hd, eps, bf16 } = d;
  const scope = new TensorScope(), prev = o.scope;
  o.scope = scope;
  try {
    const x = o.bind('x', step.x as Tensor);
    const posIdx = scope.track(tensorFromArray('i32', [T], Int32Array.from({ length: T }, (_, i) => i % P)));
    // K/V scratch [nh, T, hd], rewritten by every layer (the queue runs a layer's attention
    // before the next layer's append, so one buffer serves all layers).
    const kS = o.empty('f32', [nh, T, hd]), vS = o.empty('f32', [nh, T, hd]);
    const segments = Array.from({ length: c + 1 }, (_, i) => i * P);
    let h = o.add(o.matmul(x, patchW, tw.patchBias), o.gatherRows(pos, posIdx));
    void K;
    for (const L of tw.layers) {
      // Eagerly, each layer's intermediates are released once queued (large tensors are lazily
      // committed pages, so the physical peak is about one layer); in a plan they share its arena.
      const hIn = h;
      const a = o.layerNorm(hIn, L.layerNorm1[0], L.layerNorm1[1], eps);
      const qh = o.reshape(o.matmul(a, L.qProj[0], L.qProj[1]), [T, nh, hd]);
      o.kvCacheAppend(kS, o.reshape(o.matmul(a, L.kProj[0], L.kProj[1]), [T, nh, hd]), 0);
      o.kvCacheAppend(vS, o.reshape(o.matmul(a, L.vProj[0], L.vProj[1]), [T, nh, hd]), 0);
      const att = o.attention(qh, kS, vS, { kvLen: T, qPos0: 0, mask: 'segments', segments, scale: 1 / Math.sqrt(hd), bf16 });
      const r = o.add(hIn, o.matmul(o.reshape(att, [T, C]), L.outProj[0], L.outProj[1]));
      const m = o.layerNorm(r, L.layerNorm2[0], L.layerNorm2[1], eps);
      h = o.add(r, o.matmul(o.geluTanh(o.matmul(m, L.fc1[0], L.fc1[1])), L.fc2[0], L.fc2[1]));
      scope.dispose([h, kS, vS]);
      scope.track(h);
      scope.track(kS);
      scope.track(vS);
    }
    // Projector (step 6) straight after the tower: mlp2x_gelu = Linear, exact GELU, Linear.
    const y = o.matmul(o.gelu(o.matmul(h, tw.projector0[0], tw.projector0[1])), tw.projector2[0], tw.projector2[1]);
    o.scatterRows(o.bind('proj', step.proj as Tensor), y, o.input('projRows', 'i32', [T], step.projRows as Int32Array));
  } finally {
    o.scope = prev;
    scope.dispose();
  }
}

/**
 * Runs `fn` with a fresh TensorScope on the queue. Every tensor an op returns inside is disposed
 * at the end except those `fn` returns, which go to `into` (or to the caller when null).
 */
function withScope<R extends Tensor | Tensor[]>(q: Queue, into: TensorScope | null, fn: () => R): R {
  const s = new TensorScope(), prev = q.scope;
  q.scope = s;
  let out: R | undefined;
  try {
    out = fn();
    return out;
  } finally {
    q.scope = prev;
    const keep: Tensor[] = out === undefined ? [] : Array.isArray(out) ? (out as Tensor[]) : [out as Tensor];
    s.dispose(keep);
    if (into) for (const t of keep) into.track(t);
  }
}

// ---- merge (§3.5 steps 7-8) ------------------------------------------------------------------

/** Per image, how its crops become tokens. */
export type MergePlan =
  | { kind: 'anyres'; crop0: number; layout: AnyresLayout }
  | { kind: 'square'; crop0: number };

/** Source row of tile-map position (r, c) in crop-major features whose first crop is `crop0`. */
function tileRow(crop0: number, nW: number, g: number, r: number, c: number): number {
  const t = Math.floor(r / g) * nW + Math.floor(c / g);
  return (crop0 + 1 + t) * g * g + (r % g) * g + (c % g);
}

/**
 * Step 7/8 over projected features proj f32 [Ncrops·P, Ht] (crop-major, as encodeSiglipCrops
 * returns) and image_newline f32 [Ht] → [Σ tokens, Ht], images in order. The downsampled grids
 * are made first (gather the kept map, resize_bilinear); then one gather picks every output row
 * from [proj; newline; grids].
 */
export function mergeSiglipFeatures(queue: Queue, proj: Tensor, imageNewline: Tensor, plans: readonly MergePlan[], g: number): Tensor {
  const q = queue;
  const P = g * g, [R, Ht] = proj.shape!;
  const nl = imageNewline.shape!;
  if (nl.length !== 1 || nl[0] !== Ht) throw new ShapeError(`mergeSiglipFeatures: image_newline is [${nl.join(', ')}], features have ${Ht} columns`);
  plans.forEach((plan, i) => {
    const need = plan.kind === 'square' ? 1 : 1 + plan.layout.tiles[0] * plan.layout.tiles[1];
    if ((plan.crop0 + need) * P > R) throw new ShapeError(`mergeSiglipFeatures: image ${i} needs ${need} crops from crop ${plan.crop0}, only ${R / P} given`);
  });
  const scope = new TensorScope();
  const prev = q.scope;
  q.scope = scope;
  let out: Tensor | undefined;
  try {
    const newlineRow = R;
    let src = q.concatRows(proj, q.reshape(imageNewline, [1, Ht]));
    let next = R + 1;
    const gridBase: number[] = [];
    for (const plan of plans) {
      gridBase.push(-1);
      if (plan.kind !== 'anyres' || !plan.layout.downsampled) continue;
      const L = plan.layout;
      const idx = new Int32Array(L.h * L.w);
      for (let y = 0; y < L.h; y++) for (let x = 0; x < L.w; x++) idx[y * L.w + x] = tileRow(plan.crop0, L.tiles[0], g, L.top + y, L.left + x);
      const kept = q.reshape(q.gatherRows(proj, scope.track(tensorFromArray('i32', [idx.length], idx))), [L.h, L.w, Ht]);
      const small = q.reshape(q.resizeBilinear(kept, L.outH, L.outW), [L.outH * L.outW, Ht]);
      src = q.concatRows(src, small);
      gridBase[gridBase.length - 1] = next;
      next += L.outH * L.outW;
    }
    const index: number[] = [];
    plans.forEach((plan, i) => {
      const base = plan.crop0 * P;
      for (let j = 0; j < P; j++) index.push(base + j);
      if (plan.kind === 'square') { index.push(newlineRow); return; }
      const L = plan.layout;
      for (let y = 0; y < L.outH; y++) {
        for (let x = 0; x < L.outW; x++) index.push(L.downsampled ? gridBase[i] + y * L.outW + x : tileRow(plan.crop0, L.tiles[0], g, L.top + y, L.left + x));
        index.push(newlineRow);
      }
    });
    out = q.gatherRows(src, scope.track(tensorFromArray('i32', [index.length], Int32Array.from(index))));
    return out;
  } finally {
    q.scope = prev;
    scope.dispose(out ? [out] : []);
  }
}

// ---- the route -------------------------------------------------------------------------------

export interface EncodeSiglipOptions extends EncodeCropsOptions {
  /** Multi-image prompt: every image square-padded (grey 127) to one crop, P + 1 tokens (step 8). */
  multiImage: boolean;
}

export interface SiglipFeatures {
  /** f32 [N, Ht], the images' token rows in order (N = Σ tokensPerImage). */
  features: Tensor;
  tokensPerImage: number[];
}

/**
 * Decoded RGB images → the rows that replace each image's placeholder in the prompt (§3.5,
 * §3.6). Preprocessing (steps 1-4) runs here; the result is enqueued, read or sync to wait.
 */
export async function encodeSiglipImages(queue: Queue, weights: LoadedWeights, cfg: SiglipVisionConfig, images: readonly RgbImage[], opts: EncodeSiglipOptions): Promise<SiglipFeatures> {
  checkConfig(cfg);
  if (images.length === 0) throw new OptionError('encodeSiglipImages: no images given', 'images');
  if (cfg.imageSize !== SIGLIP_CROP) {
    throw new ConfigError(`SigLIP image_size ${cfg.imageSize} is not supported: the anyres preprocessing cuts ${SIGLIP_CROP}-pixel crops`, { field: 'image_size' });
  }
  const g = siglipGridSide(cfg);
  const maxPatches = opts.multiImage ? null : anyresMaxPatches(cfg.imageAspectRatio);
  const pre: SiglipPixelValues[] = [];
  for (const img of images) {
    pre.push(opts.multiImage
      ? await preprocessSiglipSingle(img, { queue })
      : await preprocessSiglipAnyres(img, { queue, pinpoints: cfg.gridPinpoints }));
  }
  const plans: MergePlan[] = [];
  let crops = 0;
  for (const v of pre) {
    plans.push(opts.multiImage ? { kind: 'square', crop0: crops } : { kind: 'anyres', crop0: crops, layout: anyresLayout(v.imageSize, v.tiles, g, maxPatches) });
    crops += v.numCrops;
  }
  const pixels = pre.length === 1 ? pre[0].pixelValues : concatF32(pre.map((v) => v.pixelValues));
  const proj = encodeSiglipCrops(queue, weights, cfg, pixels, crops, opts);
  try {
    const features = mergeSiglipFeatures(queue, proj, weights.get('image_newline'), plans, g);
    return { features, tokensPerImage: plans.map((pl) => (pl.kind === 'square' ? g * g + 1 : pl.layout.tokens)) };
  } finally {
    proj.dispose();
  }
}

function concatF32(parts: readonly Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((s, a) => s + a.length, 0));
  let o = 0;
  for (const a of parts) { out.set(a, o); o += a.length; }
  return out;
}

/**
 * The SigLIP route behind the VisionEncoder interface (vision.ts). Preprocessing depends on
 * whether the prompt holds several images (§3.5 step 8), so `prepare` keeps the decoded image
 * and `encode` runs steps 1-8 for all of them; the crop passes are recorded in its own plans.
 */
export class SiglipVisionEncoder implements VisionEncoder<RgbImage> {
  readonly kind = 'siglip';
  readonly countSensitive = true;
  /** Recorded crop passes (one per pass size). */
  readonly plans = new PlanCache(4, 512 * 2 ** 20);
  eager = eagerFromEnv();

  constructor(private readonly q: Queue, private readonly weights: LoadedWeights, readonly cfg: SiglipVisionConfig) {}

  tokenCount(width: number, height: number, opts: EncodeImagesOptions): number {
    return siglipTokenCount(this.cfg, [width, height], opts);
  }

  async prepare(image: RgbImage): Promise<RgbImage> { return image; }

  encode(images: readonly RgbImage[], opts: EncodeImagesOptions): Promise<VisionFeatures> {
    return encodeSiglipImages(this.q, this.weights, this.cfg, images, { multiImage: opts.multiImage, plans: this.plans, eager: this.eager });
  }

  dispose(): void { this.plans.clear(); }
}
