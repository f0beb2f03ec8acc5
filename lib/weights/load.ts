// load.ts — loadWeights: a model folder → native tensors under canonical names (names.ts).
//
// Flow: config.ts reads config.json; checkpoint.ts resolves the files and checks every header;
// names.ts maps stored names to canonical ones and says what the config needs (name → shape).
// Missing tensors and wrong shapes are WeightsErrors naming file and tensor; stored tensors
// nobody asked for are listed in `unused`. Then, per tensor in file order, `queue.empty`
// allocates natively and the `load` op preads the bytes straight into its storage (converting
// dtype there), so weights never pass through the JS heap (docs/architecture.md).
//
// Dtypes: matrices (2-D and up) keep the stored dtype unless `dtype` asks otherwise; 1-D tensors
// (norm weights, biases, image_newline) are always f32 because the ops take them in f32; 'q8'
// applies to 2-D matrices only (what the matmul and embedding ops read).
// The queue is synced every ~64 MB so progress and abort stay responsive; a failure or abort
// disposes everything allocated so far and leaves the queue with no pending error.
import { basename } from 'node:path';
import { OptionError, WeightsError } from '../errors.js';
import type { DType, Queue, Tensor } from '../native/index.js';
import { openCheckpoint, type StoredTensor } from './checkpoint.js';
import { readConfig, type ModelConfig } from './config.js';
import { canonicalName, expectedTensors } from './names.js';
import type { SafetensorsDType } from './safetensors.js';

export interface LoadProgress {
  /** Bytes read from disk so far (stored size) and in all. */
  loadedBytes: number;
  totalBytes: number;
  /** Canonical name of the last tensor in the batch just synced. */
  tensor: string;
}

export interface LoadOptions {
  /**
   * Dtype for 2-D+ weight matrices (default: as stored). 1-D tensors are always f32. 'q8'
   * (CPU queues only) quantises 2-D matrices while reading them (csrc/core/dtype.h; the load op
   * works through ~4 MiB chunks, so the full-precision tensor is never held); tensors of rank 3
   * and up (conv kernels) keep their stored dtype.
   */
  dtype?: 'bf16' | 'f16' | 'f32' | 'q8';
  /**
   * Store bf16 matrices (2-D, after `dtype`) as 'bf16p', the panel layout of the CPU's
   * vdpbf16ps kernel (csrc/core/dtype.h). The model sets it where its queue runs that kernel
   * (queue.kernels.bf16Packed); only matmul, embedding and convert read bf16p.
   */
  packBf16?: boolean;
  /** Store q8 matrices as 'q8p', the panel layout of the CPU's vpdpbusd kernel (queue.kernels.q8Packed). */
  packQ8?: boolean;
  /** Called after each sync (about every 64 MB) and once at the end with loadedBytes = totalBytes. */
  onProgress?: (p: LoadProgress) => void;
  /** Aborting rejects with signal.reason after freeing what was allocated. */
  signal?: AbortSignal;
  /** Load the vision tower and projector when the config has one (default true). */
  vision?: boolean;
  /** Bytes between syncs (default 64 MiB; tests use less). */
  syncBytes?: number;
  /** Test hook: called with each tensor right after it is allocated. */
  onAllocate?: (name: string, t: Tensor) => void;
}

export interface LoadedWeights {
  config: ModelConfig;
  /** The tensor under a canonical name; throws WeightsError naming it when absent. */
  get(name: string): Tensor;
  has(name: string): boolean;
  tensors: Map<string, Tensor>;
  /** Native bytes held (after any dtype conversion). */
  bytes: number;
  /** Stored names that no expected tensor maps to (not an error). */
  unused: string[];
  readonly disposed: boolean;
  dispose(): void;
}

const FLOAT_DTYPES: Partial<Record<SafetensorsDType, DType>> = { F32: 'f32', F16: 'f16', BF16: 'bf16' };
const DEFAULT_SYNC_BYTES = 64 * 1024 * 1024;

class Weights implements LoadedWeights {
  private _disposed = false;
  constructor(readonly config: ModelConfig, readonly tensors: Map<string, Tensor>, readonly bytes: number, readonly unused: string[]) {}
  get disposed(): boolean { return this._disposed; }
  get(name: string): Tensor {
    const t = this.tensors.get(name);
    if (!t) throw new WeightsError(`${this.config.dir}: no tensor ${name} was loaded`, { tensor: name });
    return t;
  }
  has(name: string): boolean { return this.tensors.has(name); }
  dispose(): void {
    if (this._disposed) return;
    this._disposed = true;
    for (const t of this.tensors.values()) t.dispose();
  }
  [Symbol.dispose](): void { this.dispose(); }
}

interface Plan { name: string; src: StoredTensor; dtype: DType }

/** Picks, for each expected canonical name, the stored tensor that provides it. */
function planTensors(config: ModelConfig, stored: StoredTensor[], opts: LoadOptions): { plan: Plan[]; unused: string[] } {
  const expected = expectedTensors(config, { vision: opts.vision });
  const byName = new Map<string, StoredTensor>();
  const unused: string[] = [];
  for (const s of stored) {
    const name = canonicalName(s.role, s.name);
    if (name === null || !expected.has(name)) { unused.push(s.name); continue; }
    const prev = byName.get(name);
    if (!prev) { byName.set(name, s); continue; }
    // A dedicated side file (converted layout) wins over the same tensor inside the model file,
    // as in the reference vision-tower loader (§1.5); two sources of one kind are ambiguous.
    if (prev.role === s.role) {
      throw new WeightsError(`${name} is stored twice: as ${prev.name} in ${prev.file} and as ${s.name} in ${s.file}`, { file: s.file, tensor: s.name });
    }
    const [keep, drop] = s.role !== 'model' ? [s, prev] : [prev, s];
    byName.set(name, keep);
    unused.push(drop.name);
  }

  const missing = [...expected.keys()].filter((n) => !byName.has(n));
  if (missing.length) {
    const files = [...new Set(stored.map((s) => basename(s.file)))].join(', ');
    let hint = '';
    if (missing.includes('lm_head.weight')) hint = '; config says tie_word_embeddings is false, a checkpoint without lm_head.weight needs it true';
    const list = missing.slice(0, 5).join(', ') + (missing.length > 5 ? ` and ${missing.length - 5} more` : '');
    throw new WeightsError(`${config.dir}: missing tensor${missing.length > 1 ? 's' : ''} ${list} (searched ${files || 'no files'})${hint}`, { file: config.dir, tensor: missing[0] });
  }

  const plan: Plan[] = [];
  for (const [name, shape] of expected) {
    const s = byName.get(name)!;
    if (s.shape.length !== shape.length || s.shape.some((d, i) => d !== shape[i])) {
      throw new WeightsError(`${s.file}: tensor ${s.name} (${name}) has shape [${s.shape.join(', ')}] but the config expects [${shape.join(', ')}]`, { file: s.file, tensor: s.name });
    }
    const stored = FLOAT_DTYPES[s.dtype];
    if (!stored) {
      throw new WeightsError(`${s.file}: tensor ${s.name} is stored as ${s.dtype}; weights must be F32, F16 or BF16`, { file: s.file, tensor: s.name });
    }
    const want = opts.dtype === 'q8' && shape.length !== 2 ? stored : opts.dtype ?? stored;
    let dtype: DType = shape.length === 1 ? 'f32' : want;
    if (shape.length === 2 && dtype === 'bf16' && opts.packBf16) dtype = 'bf16p';
    if (shape.length === 2 && dtype === 'q8' && opts.packQ8) dtype = 'q8p';
    plan.push({ name, src: s, dtype });
  }
  // File order, then offset order: sequential reads.
  const fileRank = new Map<string, number>();
  for (const s of stored) if (!fileRank.has(s.file)) fileRank.set(s.file, fileRank.size);
  plan.sort((a, b) => fileRank.get(a.src.file)! - fileRank.get(b.src.file)! || a.src.offset - b.src.offset);
  return { plan, unused };
}

/** Loads the checkpoint in `dir` onto `queue`'s device. */
export async function loadWeights(dir: string, queue: Queue, opts: LoadOptions = {}): Promise<LoadedWeights> {
  const { signal } = opts;
  signal?.throwIfAborted();
  if (opts.dtype === 'q8' && queue.device === 'cuda') {
    throw new OptionError("dtype 'q8' runs on the CPU only: load it with a CPU queue", 'dtype');
  }
  if (opts.packBf16 && queue.device === 'cuda') throw new OptionError('packBf16 is a CPU layout: load it with a CPU queue', 'packBf16');
  if (opts.packQ8 && queue.device === 'cuda') throw new OptionError('packQ8 is a CPU layout: load it with a CPU queue', 'packQ8');
  const config = await readConfig(dir);
  const ckpt = await openCheckpoint(dir);
  signal?.throwIfAborted();
  const { plan, unused } = planTensors(config, ckpt.tensors, opts);

  const totalBytes = plan.reduce((a, p) => a + p.src.bytes, 0);
  const syncBytes = opts.syncBytes ?? DEFAULT_SYNC_BYTES;
  const tensors = new Map<string, Tensor>();
  let loadedBytes = 0, pending = 0, pendingOps = false;
  // The weights outlive any TensorScope the caller has open on this queue.
  const scope = queue.scope;
  queue.scope = undefined;
  try {
    const flush = async (name: string) => {
      await queue.sync();
      pendingOps = false;
      loadedBytes += pending;
      pending = 0;
      signal?.throwIfAborted();
      opts.onProgress?.({ loadedBytes, totalBytes, tensor: name });
    };
    for (const p of plan) {
      signal?.throwIfAborted();
      const t = queue.empty(p.dtype, p.src.shape);
      tensors.set(p.name, t);
      opts.onAllocate?.(p.name, t);
      queue.load(t, p.src.file, p.src.offset, p.src.bytes, FLOAT_DTYPES[p.src.dtype]!);
      pendingOps = true;
      pending += p.src.bytes;
      if (pending >= syncBytes) await flush(p.name);
    }
    if (pendingOps || plan.length === 0) await flush(plan.at(-1)?.name ?? '');
  } catch (e) {
    if (pendingOps) {
      // Drop the queued reads and clear the queue's pending error so the next user starts clean.
      queue.cancel();
      await queue.sync().catch(() => {});
    }
    for (const t of tensors.values()) t.dispose();
    if (signal?.aborted && e === signal.reason) throw e;
    if (e instanceof WeightsError) throw e;
    throw new WeightsError(`${config.dir}: loading weights failed: ${(e as Error).message}`, { file: config.dir, cause: e });
  } finally {
    queue.scope = scope;
  }
  let bytes = 0;
  for (const t of tensors.values()) bytes += t.nbytes;
  return new Weights(config, tensors, bytes, unused);
}
