// qwen25vl_vision.ts — the Qwen2.5-VL vision tower and PatchMerger over the op set (docs §1.3,
// §3.2–3.4): pixel_values rows → merged image tokens in the text model's hidden size.
//
// Legend: R patch rows (all images), C tower hidden (1280), nh heads (16), hd head dim (80),
// Iv MLP intermediate (3420), D = 3·tps·ps·ps values per row (1176), m = spatial merge (2),
// u = m² rows per merge unit (4), U = R/u merge units = image tokens, O out_hidden (text H).
//
// Flow (§3.3):
//   1. patch embed       e [R, C] = rows · Wpatchᵀ (the Conv3d with kernel = stride is a matmul)
//   2. rotary table      per patch (row r, col c): θ = [r·inv_freq, c·inv_freq], emb = [θ, θ] (hd)
//   3. window order      merge units regrouped window by window (windowLayout below); hidden rows
//                        and rotary rows permuted together, a unit's u rows staying together
//   4. blocks            pre-norm, window attention (segments = windows) or, for the
//                        fullatt_block_indexes, attention over each whole image frame
//   5. merger            RMSNorm ln_q per row, a unit's u rows concatenated (a reshape), Linear,
//                        exact GELU, Linear
//   6. unpermute         merged tokens back to row-major order over each image's merge grid
// Attention is bidirectional within a segment, so the window order only decides which rows
// share a segment; the float64 reference (test/model/vision_reference.ts) never permutes.
import { ShapeError } from '../errors.js';
import type { RgbImage } from '../image/decode.js';
import { CLIP_MEAN, CLIP_STD, QWEN_IMAGE_DEFAULTS, qwenResizeTarget, smartResize } from '../image/qwen2vl.js';
import { TensorScope, tensorFromArray, type OpSet, type Queue, type Tensor } from '../native/index.js';
import { eagerFromEnv, PlanCache, Recorder, type StepValues } from '../native/plan.js';
import type { QwenVisionConfig } from '../weights/config.js';
import type { LoadedWeights } from '../weights/load.js';
import type { VisionEncoder, VisionFeatures } from './vision.js';

/** RMSNorm epsilon everywhere in the ViT and the merger (docs §1.3; not in the config). */
export const VISION_RMS_EPS = 1e-6;
/** Rotary base of the 2-D table (docs §3.3 step 2). */
const ROPE_THETA = 10000;

/** One preprocessed image (lib/image/qwen2vl.ts `preprocessQwen2vl`). */
export interface VisionImage {
  /** f32 [t·gh·gw, D] in the §3.2 row order. */
  pixelValues: Float32Array;
  /** [t, gh, gw] in patches. */
  grid: readonly [number, number, number] | readonly number[];
}

/** Where the rows go and which rows attend to each other (all images of one call). */
export interface WindowLayout {
  /** Merge units in window order: unit ids (offset by the units of earlier images), U entries. */
  windowIndex: Int32Array;
  /** Window boundaries in patch rows over the window-ordered rows (cu_seqlens, deduplicated). */
  cuWindowSeqlens: number[];
  /** Whole-frame boundaries in patch rows (the full-attention blocks). */
  cuSeqlens: number[];
  /** Patch rows R. */
  rows: number;
}

/**
 * The window permutation of docs §3.3 step 3. Per image and frame: the (gh/m)×(gw/m) unit grid
 * padded to multiples of M = window/(m·ps) (the reference always appends M − n mod M, so an
 * exact multiple gets a whole empty window, which then vanishes), cut into M×M windows visited
 * row-major, units inside a window row-major, padding skipped.
 */
export function windowLayout(grids: readonly (readonly number[])[], cfg: Pick<QwenVisionConfig, 'windowSize' | 'spatialMergeSize' | 'patchSize'>): WindowLayout {
  const m = cfg.spatialMergeSize, u = m * m;
  const M = Math.floor(cfg.windowSize / m / cfg.patchSize);
  const windowIndex: number[] = [];
  const cuWindow = [0];
  const cuFull = [0];
  let unitBase = 0;
  for (const [t, gh, gw] of grids) {
    const lh = gh / m, lw = gw / m;
    const ph = lh + (M - (lh % M)), pw = lw + (M - (lw % M));
    const nwh = ph / M, nww = pw / M;
    for (let f = 0; f < t; f++) {
      for (let wy = 0; wy < nwh; wy++)
        for (let wx = 0; wx < nww; wx++) {
          let n = 0;
          for (let y = wy * M; y < Math.min((wy + 1) * M, lh); y++)
            for (let x = wx * M; x < Math.min((wx + 1) * M, lw); x++, n++) windowIndex.push(unitBase + f * lh * lw + y * lw + x);
          // Empty (all-padding) windows add no boundary: cu_seqlens are deduplicated.
          if (n > 0) cuWindow.push(cuWindow[cuWindow.length - 1] + n * u);
        }
      cuFull.push(cuFull[cuFull.length - 1] + gh * gw);
    }
    unitBase += t * lh * lw;
  }
  return { windowIndex: Int32Array.from(windowIndex), cuWindowSeqlens: cuWindow, cuSeqlens: cuFull, rows: unitBase * u };
}

/**
 * cos/sin f32 [R, hd] of the 2-D rotary table: inv_freq[j] = 1/θ^(2j/(hd/2)) for j < hd/4; a
 * row's patch-row r fills the first hd/4 angles, its patch-col c the next hd/4; emb = [angles,
 * angles]. Angles are rounded to f32 as torch computes them; cos/sin in double, stored f32.
 * Row i of the table belongs to §3.2 row `order[i]` (default: the identity), so the window
 * permutation is applied while filling. cos/sin are computed once per (side index, j).
 */
export function visionRotaryTable(grids: readonly (readonly number[])[], headDim: number, merge: number, order?: Int32Array): { cos: Float32Array; sin: Float32Array } {
  const dim = headDim / 2, q = dim / 2, u = merge * merge;
  const inv = Float32Array.from({ length: q }, (_, j) => Math.fround(1 / Math.fround(ROPE_THETA ** Math.fround((2 * j) / dim))));
  // Per image: first row, frame size, units per row of the merge grid.
  const imgs: { base: number; frame: number; lw: number; rows: number }[] = [];
  let R = 0, side = 0;
  for (const [t, gh, gw] of grids) {
    imgs.push({ base: R, frame: gh * gw, lw: gw / merge, rows: t * gh * gw });
    R += t * gh * gw;
    side = Math.max(side, gh, gw);
  }
  const cp = new Float64Array(side * q), sp = new Float64Array(side * q);
  for (let p = 0; p < side; p++)
    for (let j = 0; j < q; j++) {
      const a = Math.fround(p * inv[j]);
      cp[p * q + j] = Math.cos(a);
      sp[p * q + j] = Math.sin(a);
    }
  const cos = new Float32Array(R * headDim), sin = new Float32Array(R * headDim);
  let k = 0;
  for (let i = 0; i < R; i++) {
    const x = order ? order[i] : i;
    while (k > 0 && x < imgs[k].base) k--;
    while (x >= imgs[k].base + imgs[k].rows) k++;
    const { base, frame, lw } = imgs[k];
    // §3.2: within a frame, unit (bh, bw) row-major, then (ih, iw) inside the unit.
    const local = (x - base) % frame, unit = Math.floor(local / u), w = local % u;
    const r = Math.floor(unit / lw) * merge + Math.floor(w / merge);
    const c = (unit % lw) * merge + (w % merge);
    const o = i * headDim;
    for (const half of [0, dim]) {
      for (let j = 0; j < q; j++) {
        cos[o + half + j] = cp[r * q + j]; sin[o + half + j] = sp[r * q + j];
        cos[o + half + q + j] = cp[c * q + j]; sin[o + half + q + j] = sp[c * q + j];
      }
    }
  }
  return { cos, sin };
}

interface BlockWeights {
  norm1: Tensor; norm2: Tensor;
  qkv: Tensor; qkvBias: Tensor; proj: Tensor; projBias: Tensor;
  gate: Tensor; gateBias: Tensor; up: Tensor; upBias: Tensor; down: Tensor; downBias: Tensor;
}

/** The nearest f16 value (ties to even), as a number; overflow → ±Infinity. */
function f16round(v: number): number {
  const a = Math.abs(v);
  if (!Number.isFinite(a) || a === 0) return v;
  if (a >= 65520) return Math.sign(v) * Infinity;
  let e = Math.max(Math.floor(Math.log2(a)), -14);   // below 2^-14: subnormal, fixed quantum 2^-24
  if (e > -14 && 2 ** e > a) e--;
  else if (2 ** (e + 1) <= a) e++;
  const quantum = 2 ** (e - 10);
  const x = a / quantum;   // exact: a power-of-two division
  let r = Math.round(x);
  if (r - x === 0.5 && r % 2 !== 0) r -= 1;
  return Math.sign(v) * r * quantum;
}

/** Rounds f32 values in place to bf16 (nearest even) or f16 — torch's cast of the input to the weight dtype. */
function roundInPlace(dtype: string | null, x: Float32Array): void {
  if (dtype === 'bf16') {
    const u = new Uint32Array(x.buffer, x.byteOffset, x.length);
    for (let i = 0; i < u.length; i++) {
      const b = u[i];
      u[i] = ((b + 0x7fff + ((b >>> 16) & 1)) & 0xffff0000) >>> 0;
    }
  } else if (dtype === 'f16') {
    for (let i = 0; i < x.length; i++) x[i] = f16round(x[i]);
  }
}

export class Qwen25VisionTower {
  readonly cfg: QwenVisionConfig;
  /** Patch embedding as a matrix [C, D] (a view of the Conv3d weight [C, 3, tps, ps, ps]; its bf16p panels where the queue packs). */
  private readonly patch: Tensor;
  /** The rounding of the patch rows: the patch weight's stored dtype (bf16 | f16) or none. */
  private readonly patchRound: 'bf16' | 'f16' | 'none';
  private readonly blocks: BlockWeights[] = [];
  private readonly lnQ: Tensor;
  private readonly mlp0: Tensor; private readonly mlp0Bias: Tensor;
  private readonly mlp2: Tensor; private readonly mlp2Bias: Tensor;
  private readonly rowLength: number;
  /** Recorded towers by grid list (bounded: a stream of odd image sizes must not pin memory). */
  readonly plans = new PlanCache(16, 128 * 2 ** 20);
  /** Run op by op instead of through plans (DIFFUSIONVL_EAGER=1, or set by the model / tests). */
  eager = eagerFromEnv();

  constructor(private readonly q: Queue, weights: LoadedWeights, cfg: QwenVisionConfig) {
    this.cfg = cfg;
    const hd = cfg.hiddenSize / cfg.numHeads;
    // The 2-D table splits each half of the head into a row part and a column part.
    if (!Number.isInteger(hd) || hd % 4 !== 0) throw new ShapeError(`vision tower: head dim ${hd} (hidden ${cfg.hiddenSize} / ${cfg.numHeads} heads) must be a multiple of 4 for the 2-D rotary table`);
    const w = (n: string) => weights.get(n);
    this.rowLength = 3 * cfg.temporalPatchSize * cfg.patchSize * cfg.patchSize;
    const patch = q.reshape(w('visual.patch_embed.proj.weight'), [cfg.hiddenSize, this.rowLength]);
    // The rows are rounded to the stored weight dtype (the processor's dtype, as torch runs it).
    this.patchRound = patch.dtype === 'bf16' || patch.dtype === 'f16' ? patch.dtype : 'none';
    // Panels where the queue runs the panel kernel, as the loader stores every 2-D bf16 matrix:
    // this one is stored 5-D (a convolution), so the loader leaves it. The packed kernel reads
    // a 140-row tower input ≈ 2× faster than the row kernel.
    if (patch.dtype === 'bf16' && q.kernels?.bf16Packed === true) {
      this.patch = q.convert(patch, 'bf16p');
      patch.dispose();
    } else {
      this.patch = patch;
    }
    for (let j = 0; j < cfg.depth; j++) {
      const p = `visual.blocks.${j}.`;
      this.blocks.push({
        norm1: w(p + 'norm1.weight'), norm2: w(p + 'norm2.weight'),
        qkv: w(p + 'attn.qkv.weight'), qkvBias: w(p + 'attn.qkv.bias'),
        proj: w(p + 'attn.proj.weight'), projBias: w(p + 'attn.proj.bias'),
        gate: w(p + 'mlp.gate_proj.weight'), gateBias: w(p + 'mlp.gate_proj.bias'),
        up: w(p + 'mlp.up_proj.weight'), upBias: w(p + 'mlp.up_proj.bias'),
        down: w(p + 'mlp.down_proj.weight'), downBias: w(p + 'mlp.down_proj.bias'),
      });
    }
    this.lnQ = w('visual.merger.ln_q.weight');
    this.mlp0 = w('visual.merger.mlp.0.weight'); this.mlp0Bias = w('visual.merger.mlp.0.bias');
    this.mlp2 = w('visual.merger.mlp.2.weight'); this.mlp2Bias = w('visual.merger.mlp.2.bias');
  }

  /** Merged tokens an image of this grid becomes: t·gh·gw / m². */
  tokensFor(grid: readonly number[]): number {
    return (grid[0] * grid[1] * grid[2]) / this.cfg.spatialMergeSize ** 2;
  }

  private check(images: readonly VisionImage[]): void {
    const m = this.cfg.spatialMergeSize;
    if (images.length === 0) throw new ShapeError('vision encode: no images');
    images.forEach((im, i) => {
      const g = im.grid;
      if (g.length !== 3 || !g.every((v) => Number.isInteger(v) && v >= 1)) {
        throw new ShapeError(`vision encode: image ${i}: grid must be 3 positive integers [t, gh, gw], got [${Array.from(g).join(', ')}]`);
      }
      if (g[1] % m !== 0 || g[2] % m !== 0) throw new ShapeError(`vision encode: image ${i}: grid [${g.join(', ')}] is not a multiple of the merge size ${m}`);
      const want = g[0] * g[1] * g[2] * this.rowLength;
      if (im.pixelValues.length !== want) {
        throw new ShapeError(`vision encode: image ${i}: pixelValues has ${im.pixelValues.length} values, grid [${g.join(', ')}] needs ${want} (rows of ${this.rowLength})`);
      }
    });
  }

  /**
   * Enqueues the tower for all images (each with its own windows and frames); returns f32
   * [Σ tokens, O], image after image, tokens row-major over each merge grid. Nothing is awaited.
   * The tower for a list of grids is recorded once into a plan (its window layout, rotary table
   * and permutations are constants of the grids); each later image list of the same grids is one
   * replay binding the new pixels. The result is the caller's own tensor (not the plan's arena).
   */
  encode(images: readonly VisionImage[]): Tensor {
    this.check(images);
    return this.run(images.map((im) => Array.from(im.grid)), {
      rows: (out) => {
        let off = 0;
        for (const im of images) {
          out.set(im.pixelValues, off);
          roundInPlace(this.patchRound, out.subarray(off, off + im.pixelValues.length));
          off += im.pixelValues.length;
        }
      },
    });
  }

  /**
   * encode() for images resized but not yet cut into rows: each a u8 [h, w, 3] tensor (the
   * image_resize op's output, never read back to JS) that the plan binds and cuts into rows with
   * the patch_rows op, rounded to the weight dtype — the rows encode() would get, bit for bit.
   */
  encodeImages(images: readonly { image: Tensor; grid: readonly number[] }[]): Tensor {
    if (images.length === 0) throw new ShapeError('vision encode: no images');
    const ps = this.cfg.patchSize;
    for (const [i, im] of images.entries()) {
      const [h, w, c] = im.image.shape ?? [];
      if (im.image.dtype !== 'u8' || c !== 3 || w !== im.grid[2] * ps || h !== im.grid[1] * ps || im.grid[0] !== 1)
        throw new ShapeError(`vision encode: image ${i}: a u8 [${h}, ${w}, ${c}] tensor does not match grid [${im.grid.join(', ')}] of ${ps}-pixel patches`);
    }
    const grids = images.map((im) => Array.from(im.grid));
    return this.run(grids, { images: images.map((im) => im.image) });
  }

  /**
   * The tower on the images of `grids`, from patch rows (`rows`, R rows of rowLength, already
   * rounded: encode) or from resized u8 images (`images`, cut into rows in the plan:
   * encodeImages, what requests use).
   */
  private run(grids: number[][], input: { rows: (out: Float32Array) => void } | { images: readonly Tensor[] }): Tensor {
    const R = grids.reduce((n, g) => n + g[0] * g[1] * g[2], 0);
    let src: TowerInput;
    if ('rows' in input) {
      const pixels = new Float32Array(R * this.rowLength);
      input.rows(pixels);
      src = { rows: pixels };
    } else {
      src = { images: input.images };
    }
    if (this.eager) return this.build(this.q, grids, R, src);
    const key = `${'rows' in src ? 'rows' : 'images'}:${JSON.stringify(grids)}`;
    const plan = this.plans.get(key, () => {
      const rec = new Recorder(this.q);
      const out = this.build(rec, grids, R, src);
      try {
        return rec.finish([out], { fresh: true });
      } finally {
        out.dispose();
      }
    });
    if (!plan) return this.build(this.q, grids, R, src);
    const step: StepValues = 'rows' in src ? { pixels: src.rows } : Object.fromEntries(src.images.map((t, i) => [`image${i}`, t]));
    return plan.run(this.q, step)[0];
  }

  /** The tower as ops on a Queue (eager) or a Recorder; `src` (patch rows, or resized images) is the one per-call input. */
  private build(o: OpSet, grids: number[][], R0: number, src: TowerInput): Tensor {
    const { cfg } = this;
    const C = cfg.hiddenSize, nh = cfg.numHeads, hd = C / nh, m = cfg.spatialMergeSize, u = m * m;
    const lay = windowLayout(grids, cfg);
    const R = lay.rows, U = R / u;
    const fullAtt = new Set(cfg.fullAttBlockIndexes);

    // Row permutation: unit windowIndex[i] → rows u·i..u·i+u-1; its inverse for the merged tokens.
    const rowPerm = new Int32Array(R);
    for (let i = 0; i < U; i++) for (let k = 0; k < u; k++) rowPerm[i * u + k] = lay.windowIndex[i] * u + k;
    const unitInv = new Int32Array(U);
    for (let i = 0; i < U; i++) unitInv[lay.windowIndex[i]] = i;
    const { cos: cosW, sin: sinW } = visionRotaryTable(grids, hd, m, rowPerm);

    const scope = new TensorScope();
    const prev = o.scope;
    o.scope = scope;
    let out: Tensor | undefined;
    try {
      // Constants of the grids: in a recorded plan they are the plan's own tensors.
      const t = <T extends Tensor>(x: T) => scope.track(x);
      const cos = t(tensorFromArray('f32', [R, hd], cosW));
      const sin = t(tensorFromArray('f32', [R, hd], sinW));
      let px: Tensor;
      if ('rows' in src) px = o.input('pixels', 'f32', [R0, this.rowLength], src.rows);
      else {
        const round = this.patchRound;
        const { patchSize: patch, spatialMergeSize: merge, temporalPatchSize: temporal } = cfg;
        // Where the patch embedding's product reads bf16 activations as they are (bf16p weights,
        // precision 'fast'), the rows are stored as bf16 — they hold bf16 values already: half
        // the bytes and no second rounding pass, same bits.
        const dtype = round === 'bf16' && this.q.kernels?.bf16Packed === true && this.q.precision === 'fast' ? 'bf16' as const : 'f32' as const;
        const parts = src.images.map((im, i) => o.patchRows(o.bind(`image${i}`, im), { patch, merge, temporal, mean: CLIP_MEAN, std: CLIP_STD, round, dtype }));
        px = parts.reduce((a, b) => o.concatRows(a, b));
      }
      // Patch embed, then window order (the embed is per row, so permuting after it is the same).
      let h = o.gatherRows(o.matmul(px, this.patch), t(tensorFromArray('i32', [R], rowPerm)));
      // Head-major K/V for the attention op. On a CPU queue one op splits Q | K | V, applies
      // RoPE and lays K and V out head-major (qkv_rope_split: the bits of the slices, ropes and
      // appends it replaces); the CUDA plugin has no such op, so there they stay separate ops.
      const fused = this.q.device === 'cpu';
      const kS = fused ? null : o.empty('f32', [nh, R, hd]), vS = fused ? null : o.empty('f32', [nh, R, hd]);
      // Precision 'fast' on a CPU queue: the attention's products in bf16 too (the tower's
      // matmuls already round their activations), where the level has vdpbf16ps.
      const bf16 = fused && this.q.precision === 'fast';
      for (let j = 0; j < cfg.depth; j++) {
        const B = this.blocks[j];
        const x = o.rmsNorm(h, B.norm1, VISION_RMS_EPS);
        const qkv = o.matmul(x, B.qkv, B.qkvBias);   // [R, 3C]: Q | K | V, head h at cols h·hd.. within each
        let qh: Tensor, kh: Tensor, vh: Tensor;
        if (fused) {
          [qh, kh, vh] = o.qkvRopeSplit(qkv, cos, sin, nh);
        } else {
          qh = o.rope(o.reshape(o.sliceCols(qkv, 0, C), [R, nh, hd]), cos, sin);
          o.kvCacheAppend(kS!, o.rope(o.reshape(o.sliceCols(qkv, C, C), [R, nh, hd]), cos, sin), 0);
          o.kvCacheAppend(vS!, o.reshape(o.sliceCols(qkv, 2 * C, C), [R, nh, hd]), 0);
          kh = kS!; vh = vS!;
        }
        const segments = fullAtt.has(j) ? lay.cuSeqlens : lay.cuWindowSeqlens;
        const att = o.attention(qh, kh, vh, { kvLen: R, mask: 'segments', segments, bf16 });
        h = o.add(h, o.matmul(o.reshape(att, [R, C]), B.proj, B.projBias));
        const z = o.rmsNorm(h, B.norm2, VISION_RMS_EPS);
        const a = o.swiglu(o.matmul(z, B.gate, B.gateBias), o.matmul(z, B.up, B.upBias));
        h = o.add(h, o.matmul(a, B.down, B.downBias));
      }
      // Merger on window-ordered rows: a unit's u rows are consecutive, so the concat is a reshape.
      const n = o.reshape(o.rmsNorm(h, this.lnQ, VISION_RMS_EPS), [U, u * C]);
      const y = o.matmul(o.gelu(o.matmul(n, this.mlp0, this.mlp0Bias)), this.mlp2, this.mlp2Bias);
      out = o.gatherRows(y, t(tensorFromArray('i32', [U], unitInv)));
      return out;
    } finally {
      o.scope = prev;
      scope.dispose(out ? [out] : []);
    }
  }

  dispose(): void {
    this.plans.clear();
    this.patch.dispose();
  }
}

/** A picture prepared for the tower: resized, as a native u8 [h, w, 3] tensor, with its grid. */
export interface QwenPrepared {
  image: Tensor;
  grid: [number, number, number];
  tokens: number;
}

/** What one tower call starts from: patch rows (rounded), or resized u8 images. */
type TowerInput = { rows: Float32Array } | { images: readonly Tensor[] };

/**
 * The Qwen2.5-VL route behind the VisionEncoder interface (vision.ts): each image preprocessed
 * with the model's pixel limits as soon as it is decoded (docs §3.1, §3.2), all of a prompt's
 * images through the tower in one call.
 */
export class QwenVisionEncoder implements VisionEncoder<QwenPrepared> {
  readonly kind = 'qwen2_5_vl';
  readonly countSensitive = false;
  private readonly tower: Qwen25VisionTower;

  constructor(private readonly q: Queue, weights: LoadedWeights, readonly cfg: QwenVisionConfig) {
    this.tower = new Qwen25VisionTower(q, weights, cfg);
  }

  get plans(): PlanCache { return this.tower.plans; }
  get eager(): boolean { return this.tower.eager; }
  set eager(v: boolean) { this.tower.eager = v; }

  /** Merged tokens of an image of this size: the §3.4 count of its smart-resized (padded) size. */
  tokenCount(width: number, height: number): number {
    const v = this.cfg;
    const side = QWEN_IMAGE_DEFAULTS.pad ? Math.max(width, height) : 0;
    const size = smartResize(side || height, side || width, { factor: v.patchSize * v.spatialMergeSize, minPixels: v.minPixels, maxPixels: v.maxPixels });
    return (size.height / v.patchSize) * (size.width / v.patchSize) / (v.spatialMergeSize * v.spatialMergeSize);
  }

  /**
   * §3.1 pad and resize, queued on the model's queue: the resized picture stays a native u8
   * tensor (nothing read back), cut into rows inside the tower's plan (encodeImages). The caller
   * discards it once encoded.
   */
  async prepare(image: RgbImage): Promise<QwenPrepared> {
    const v = this.cfg;
    const t = qwenResizeTarget(image, { minPixels: v.minPixels, maxPixels: v.maxPixels, patchSize: v.patchSize, spatialMergeSize: v.spatialMergeSize });
    const x = tensorFromArray('u8', [t.src.height, t.src.width, 3], t.src.data);
    if (t.width === t.src.width && t.height === t.src.height) return { image: x, grid: t.grid, tokens: t.tokens };
    try {
      return { image: this.q.imageResize(x, t.width, t.height), grid: t.grid, tokens: t.tokens };
    } finally {
      x.dispose();   // the queued resize holds it
    }
  }

  async encode(images: readonly QwenPrepared[]): Promise<VisionFeatures> {
    return { features: this.tower.encodeImages(images), tokensPerImage: images.map((p) => p.tokens) };
  }

  discard(p: QwenPrepared): void { p.image.dispose(); }

  dispose(): void { this.tower.dispose(); }
}
