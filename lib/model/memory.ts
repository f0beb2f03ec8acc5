// memory.ts — what a load will need, estimated from config.json alone before anything is
// allocated, and the check of that estimate against what the machine has.
//
// Legend: L layers, H hidden, nh/nkv heads, hd head dim, I intermediate, V vocab, C context length.
//
//   weights      every expected tensor (names.ts): matrices in the load dtype, 1-D tensors f32
//   kvCache      K and V per layer and cache slot: 2 · L · nkv · C · hd · 4 bytes per slot (the
//                cache is f32; one slot per request decoded at once, maxBatch)
//   activations  the largest forward, a prefill of C positions: per position the hidden-size
//                tensors of one layer (x, norm, q/k/v, attention out, residual) and the MLP's
//                three I-wide ones, in f32; attention is flash-style (no C × C scores); plus
//                the logits of a decode step (2 blocks of rows × V, per slot)
//   vision       one decoded image at the per-image pixel limit (RGB u8) and the tower's
//                activations at the config's max_pixels (f32), when the tower is loaded
//
// The numbers are upper bounds of what is touched (the KV cache and the canvas are mapped
// lazily: a short conversation uses less), computed in float64 so an absurd config gives an
// absurd number, never an overflow or a 10^9-iteration loop: the per-layer part is measured on
// one layer and multiplied.
import { freemem, totalmem } from 'node:os';
import { MemoryError } from '../errors.js';
import type { ModelConfig } from '../weights/config.js';
import { expectedTensors } from '../weights/names.js';

export interface MemoryEstimate {
  weightsBytes: number;
  kvCacheBytes: number;
  activationBytes: number;
  visionBytes: number;
  /** The sum of the four. */
  totalBytes: number;
  /** KV cache bytes per context position (all slots). */
  kvBytesPerPosition: number;
  /** KV-cache slots counted (maxBatch). */
  slots: number;
  /** Activation bytes per position of a full-context prefill (the rest of activationBytes is
   *  the decode step's logits). Together with kvBytesPerPosition: what a position costs. */
  activationBytesPerPosition: number;
  contextLength: number;
  /** The dtype weight matrices are counted in. */
  weightDtype: string;
  /** 'cpu' (host memory) or 'cuda' (device memory). */
  device: 'cpu' | 'cuda';
}

export interface MemoryEstimateOptions {
  contextLength: number;
  /** Matrix dtype at load (default: config torch_dtype, else bf16). */
  dtype?: string;
  /** Whether the vision tower is loaded (default true when the config has one). */
  vision?: boolean;
  /** Largest single image in pixels (decoded RGB kept while it is preprocessed). */
  imagePixels?: number;
  device?: 'cpu' | 'cuda';
  /** KV-cache slots: requests decoded at once (loadModel's maxBatch; default 1). */
  slots?: number;
  /** bf16 / q8 matrices stored in 16-row panels (bf16p, q8p: csrc/core/dtype.h), as loadModel
   *  does where the CPU queue runs the panel kernels (precision 'fast': bf16p at avx512 and
   *  avx512_bf16, q8p at every level but scalar; see panelLayouts). */
  panels?: { bf16: boolean; q8: boolean };
}

/** Bytes per element of a weight matrix by load dtype (q8: 32 int8 + one bf16 scale per 32; rows padded to 64 bytes). */
export const DTYPE_BYTES: Readonly<Record<string, number>> = Object.freeze({ f32: 4, f16: 2, bf16: 2, bf16p: 2, q8: 34 / 32, q8p: 34 / 32 });

const TORCH_DTYPES: Readonly<Record<string, string>> = { float32: 'f32', float16: 'f16', bfloat16: 'bf16' };

function storedDtype(config: ModelConfig): string {
  const raw = config.raw as { torch_dtype?: unknown; text_config?: { torch_dtype?: unknown } };
  const t = raw.torch_dtype ?? raw.text_config?.torch_dtype;
  return (typeof t === 'string' && TORCH_DTYPES[t]) || 'bf16';
}

/** Bytes of one stored weight: 1-D f32; q8 quantises 2-D matrices only (rows of 34 bytes per 32
 *  values padded to 64, csrc/core/dtype.h) and leaves conv kernels in the stored dtype; with
 *  `panels`, 2-D bf16 and q8 matrices take the bf16p / q8p sizes (rows padded to 16, bf16p's K to
 *  even, q8p's blocks to pairs of 1088-byte records). */
function bytesOf(shape: number[], dtype: string, stored: string, panels: { bf16: boolean; q8: boolean }): number {
  const n = shape.reduce((a, d) => a * d, 1);
  if (shape.length === 1) return n * 4;
  const [N, K] = shape;
  if (dtype !== 'q8') {
    if (panels.bf16 && shape.length === 2 && dtype === 'bf16') return Math.ceil(N / 16) * 16 * (K + (K % 2)) * 2;
    return n * (DTYPE_BYTES[dtype] ?? 4);
  }
  if (shape.length !== 2) return n * (DTYPE_BYTES[stored] ?? 4);
  if (panels.q8) return Math.ceil(N / 16) * Math.ceil(Math.ceil(K / 32) / 2) * 1088;
  return N * Math.ceil((Math.ceil(K / 32) * 34) / 64) * 64;
}

function tensorBytes(shapes: Map<string, number[]>, dtype: string, stored: string, panels: { bf16: boolean; q8: boolean }): number {
  let b = 0;
  for (const s of shapes.values()) b += bytesOf(s, dtype, stored, panels);
  return b;
}

/** Weight bytes: measured with 0 and 1 layers (text, vision), then scaled to the real counts. */
function weightBytes(config: ModelConfig, dtype: string, vision: boolean, panels: { bf16: boolean; q8: boolean }): number {
  const withLayers = (text: number, vis: number): ModelConfig => {
    const v = config.vision;
    const vc = !v ? v : v.kind === 'qwen2_5_vl' ? { ...v, depth: vis, fullAttBlockIndexes: [] } : { ...v, numLayers: vis };
    return { ...config, text: { ...config.text, numLayers: text }, vision: vc };
  };
  const stored = storedDtype(config);
  const size = (text: number, vis: number) => tensorBytes(expectedTensors(withLayers(text, vis), { vision }), dtype, stored, panels);
  const base = size(0, 0);
  const perText = size(1, 0) - base;
  const perVision = size(0, 1) - base;
  const v = config.vision;
  const visionLayers = !v || !vision ? 0 : v.kind === 'qwen2_5_vl' ? v.depth : v.numLayers;
  return base + config.text.numLayers * perText + visionLayers * perVision;
}

/** Which panel layouts a CPU queue of this level and precision loads (csrc/cpu/kernels.h
 *  bf16p_pack, matmul_q8p_fast): what queue.kernels.bf16Packed / q8Packed will say. */
export function panelLayouts(isa: string, precision: string, device: string): { bf16: boolean; q8: boolean } {
  const fast = device === 'cpu' && precision === 'fast';
  return { bf16: fast && (isa === 'avx512' || isa === 'avx512_bf16'), q8: fast && isa !== 'scalar' };
}

/** The estimate for loading `config` with these options (see the file header). */
export function estimateMemory(config: ModelConfig, o: MemoryEstimateOptions): MemoryEstimate {
  const t = config.text;
  const weightDtype = o.dtype ?? storedDtype(config);
  const vision = o.vision !== false && config.vision !== null;
  const C = o.contextLength;
  const kvBytesPerPosition = 2 * t.numLayers * t.numKvHeads * t.headDim * 4;
  const slots = o.slots ?? 1;
  const kvCacheBytes = kvBytesPerPosition * C * slots;
  const Hq = t.numHeads * t.headDim, Hkv = t.numKvHeads * t.headDim;
  // Activations of one position, plus its row of the RoPE table (cos and sin, f32 [hd] each;
  // decoder.ts keeps the table for the positions forwards have reached).
  const perPosition = (4 * t.hiddenSize + 2 * Hq + 2 * Hkv + 3 * t.intermediateSize + 2 * t.headDim) * 4;
  const blockRows = 2 * (config.diffusion?.blockSize ?? 8);
  const activationBytes = C * perPosition + slots * blockRows * t.vocabSize * 4;
  let visionBytes = 0;
  const v = config.vision;
  if (vision && v) {
    if (v.kind === 'qwen2_5_vl') {
      const patches = v.maxPixels / (v.patchSize * v.patchSize);
      visionBytes = patches * (3 * v.temporalPatchSize * v.patchSize * v.patchSize + 6 * v.hiddenSize + 3 * v.intermediateSize) * 4;
    } else {
      // anyres_max_4: up to 36 crops of (imageSize / patchSize)² patches before the downsample.
      const patches = 36 * (v.imageSize / v.patchSize) ** 2;
      visionBytes = patches * (3 * v.patchSize * v.patchSize + 6 * v.hiddenSize + 3 * v.intermediateSize) * 4;
    }
    visionBytes += (o.imagePixels ?? 0) * 3;
  }
  const weightsBytes = weightBytes(config, weightDtype, vision, o.panels ?? { bf16: false, q8: false });
  return {
    weightsBytes, kvCacheBytes, activationBytes, visionBytes,
    totalBytes: weightsBytes + kvCacheBytes + activationBytes + visionBytes,
    kvBytesPerPosition: kvBytesPerPosition * slots, activationBytesPerPosition: perPosition, contextLength: C, weightDtype, device: o.device ?? 'cpu',
    slots,
  };
}

/** "1.5 GiB", "640 MiB", "3.2 KiB" */
export function formatBytes(b: number): string {
  if (!Number.isFinite(b)) return `${b} bytes`;
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];
  let i = 0;
  while (b >= 1024 && i < units.length - 1) { b /= 1024; i++; }
  return i === 0 ? `${b} bytes` : `${b.toFixed(b < 10 ? 2 : 1)} ${units[i]}`;
}

/** Host memory this process can still use: MemAvailable, and the cgroup limit when one is set. */
export function availableHostMemory(): number {
  let avail = freemem();
  const limit = typeof process.constrainedMemory === 'function' ? process.constrainedMemory() : undefined;
  if (limit && limit > 0 && limit < totalmem()) avail = Math.min(avail, Math.max(0, limit - process.memoryUsage.rss()));
  return avail;
}

/** One line per part, for `inspect` and the error. */
export function describeEstimate(e: MemoryEstimate): string {
  return `weights ${formatBytes(e.weightsBytes)} (${e.weightDtype} matrices), KV cache ${formatBytes(e.kvCacheBytes)} ` +
    `(${e.contextLength} positions × ${formatBytes(e.kvBytesPerPosition)}${e.slots > 1 ? ` for ${e.slots} requests at once` : ''}), activations ${formatBytes(e.activationBytes)}, ` +
    `vision ${formatBytes(e.visionBytes)}`;
}

/**
 * Throws MemoryError when the estimate exceeds `available` bytes, naming the parts and what to
 * change: a smaller contextLength (with the one that would fit, when one does) and a narrower dtype.
 */
export function checkMemory(e: MemoryEstimate, available: number, where: string): void {
  if (Number.isFinite(e.totalBytes) && e.totalBytes <= available) return;
  const perPos = e.kvBytesPerPosition + e.activationBytesPerPosition;
  const fixed = e.totalBytes - perPos * e.contextLength;
  const fitCtx = Math.floor((available - fixed) / perPos);
  const hints: string[] = [];
  if (fitCtx >= 1 && fitCtx < e.contextLength) hints.push(`lower contextLength to ${Math.min(fitCtx, 2 ** 24)} or less`);
  else hints.push('lower contextLength');
  if (e.slots > 1) hints.push(`lower maxBatch (${e.slots} KV-cache slots counted)`);
  if (e.weightDtype === 'f32') hints.push("load with dtype: 'bf16' (halves the weights)");
  if (e.visionBytes > 0) hints.push('load with vision: false if no prompt has images');
  hints.push('free memory, or pass memoryCheck: false to load anyway');
  throw new MemoryError(
    `${where}: the load needs about ${formatBytes(e.totalBytes)} of ${e.device === 'cuda' ? 'GPU' : 'host'} memory but ` +
    `${formatBytes(available)} is available — ${describeEstimate(e)}. To fit: ${hints.join('; ')}.`,
    { requiredBytes: e.totalBytes, availableBytes: available });
}
