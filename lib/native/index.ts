// index.ts — typed wrappers over the addon: tensors, the per-model queue and its op set.
//
// Every op method validates and allocates now (shape errors throw here, naming the op and
// shapes) and computes later on the queue's native thread. Await `sync()` or `read()` to wait.
// Intermediate tensors should be disposed as soon as the last op that reads them is queued
// (`TensorScope` does it for a block of code); the queued op keeps its own reference.
import { loadAddon } from './load.js';
import type { Attrs, CpuKernelInfo, DType, Isa, NativeInfo, NativePlan, NativePlanBuilder, NativeQueue, NativeTensor, OpProfileEntry, Precision, QueueStats } from './types.js';

export type { CpuKernelInfo, DType, Isa, NativeInfo, NativePlan, NativeTensor as Tensor, OpProfileEntry, Precision, QueueStats } from './types.js';
export { addonPath, loadAddon, packageRoot } from './load.js';

export function nativeInfo(): NativeInfo {
  return loadAddon().info();
}

/** Copies a TypedArray into a new native tensor. */
export function tensorFromArray(dtype: DType, shape: readonly number[], data: ArrayBufferView | ArrayBuffer): NativeTensor {
  return loadAddon().Tensor.fromArray(dtype, shape, data);
}

/** Collects tensors created in a block and disposes them at the end, except those kept. */
export class TensorScope {
  private readonly owned: NativeTensor[] = [];
  track<T extends NativeTensor>(t: T): T {
    this.owned.push(t);
    return t;
  }
  dispose(keep: readonly NativeTensor[] = []): void {
    const k = new Set(keep);
    for (const t of this.owned) if (!k.has(t)) t.dispose();
    this.owned.length = 0;
  }
}

export interface QueueOptions {
  /** Kernel threads (default: physical cores). */
  threads?: number;
  /** Force a SIMD level (tests); default: best available or DIFFUSIONVL_CPU_ISA. */
  isa?: Isa;
  /**
   * 'cpu' (default) or 'cuda': tensors the queue's ops create live in GPU memory and the ops run
   * there (host tensors given as inputs are uploaded; ops without a CUDA kernel run on the CPU
   * on copies). Needs an available CUDA backend: call getBackendInfo first.
   */
  device?: 'cpu' | 'cuda';
  /**
   * CPU matmul precision (default 'fast'): 'exact' keeps activations f32 and every product
   * exact; 'fast' rounds activations once per matmul input — to bf16 for bf16 weights (the
   * vdpbf16ps kernel on AVX512_BF16; other levels run the exact kernel), to int8 blocks for q8
   * weights. f32 and f16 weights always run exact. README "Precision (CPU)" states the bounds.
   * A CUDA queue runs its CPU fallbacks exact.
   */
  precision?: Precision;
}

/**
 * A value an op attribute takes at each replay of a recorded plan: parameter `index` of the
 * replay plus `offset` (e.g. kvLen = pos0 + n). Only a Recorder hands these out; `value` is the
 * number the recording itself was made with.
 */
export class PlanParam {
  /** length 0: a number (value); length n: an array of n numbers (values) patched as a whole. */
  constructor(readonly index: number, readonly offset: number, readonly value: number, readonly length = 0, readonly values: readonly number[] = []) {}
}
/** A number, or (while recording a plan) a per-replay parameter. */
export type Num = number | PlanParam;
/** An array of numbers, or (while recording a plan) a per-replay array parameter. */
export type NumArray = readonly number[] | PlanParam;
/** a + k, keeping a recorded parameter symbolic. */
export function plus(a: Num, k: number): Num {
  return typeof a === 'number' ? a + k : new PlanParam(a.index, a.offset + k, a.value + k);
}
export type OpAttrs = Record<string, Attrs[string] | PlanParam>;

/**
 * The op set, written once for both ways of running it: a Queue runs each op (eager), a
 * Recorder (lib/native/plan.ts) records them into a plan replayed later with one call. Model
 * code takes an OpSet and declares its per-step values through input/bind/param, so the same
 * forward runs eagerly or records itself.
 */
export abstract class OpSet {
  /** When set, every tensor an op returns is tracked here (see TensorScope). */
  scope: TensorScope | undefined;

  /** Enqueues (or records) a raw op by name (see csrc/cpu/ops). */
  abstract op(name: string, inputs: readonly (NativeTensor | null | undefined)[], attrs?: OpAttrs): NativeTensor[];
  /**
   * A per-step data input (ids, positions, row indices): a new tensor holding `data` when
   * eager; a plan input filled at each replay from the step's value of that name when recording.
   */
  abstract input(name: string, dtype: DType, shape: readonly number[], data: ArrayBufferView): NativeTensor;
  /** A per-step tensor the caller owns (image features): itself when eager; a bound plan input when recording. */
  abstract bind(name: string, t: NativeTensor): NativeTensor;
  /** A per-step number used in op attributes (a cache position): itself when eager; a plan parameter when recording. */
  abstract param(name: string, value: number): Num;
  /** A per-step array of numbers used as one op attribute (a batch layout): as param. */
  abstract paramArray(name: string, values: readonly number[]): NumArray;

  protected one(name: string, inputs: readonly (NativeTensor | null | undefined)[], attrs: OpAttrs = {}): NativeTensor {
    return this.op(name, inputs, attrs)[0];
  }

  // ---- op set -------------------------------------------------------------------------------

  /** A new zero-filled tensor (allocated now, natively; in a recorded plan: scratch of undefined contents). */
  empty(dtype: DType, shape: readonly number[]): NativeTensor { return this.one('empty', [], { dtype, shape }); }
  /** ids i32 [T], table [V, H] → f32 [T, H]. */
  embedding(ids: NativeTensor, table: NativeTensor): NativeTensor { return this.one('embedding', [ids, table]); }
  /** x f32 [.., K] · W[N, K]ᵀ (+ bias f32 [N]) → f32 [.., N]; W f32, bf16, f16 or q8 (and the panel layouts); x may be bf16 with bf16 weights (matmul.cpp); the queue's precision picks the kernel. */
  matmul(x: NativeTensor, w: NativeTensor, bias?: NativeTensor | null): NativeTensor {
    return this.one('matmul', bias ? [x, w, bias] : [x, w]);
  }
  add(a: NativeTensor, b: NativeTensor): NativeTensor { return this.one('add', [a, b]); }
  mul(a: NativeTensor, b: NativeTensor): NativeTensor { return this.one('mul', [a, b]); }
  scale(x: NativeTensor, s: number): NativeTensor { return this.one('scale', [x], { s }); }
  /** To another float dtype (round to nearest even), to/from q8 (rows of the last dim quantised; dequantised exactly), to/from bf16p and q8p (a matrix rounded to bf16 or quantised, in panels; read back exactly). */
  convert(x: NativeTensor, dtype: 'f32' | 'bf16' | 'f16' | 'q8' | 'bf16p' | 'q8p'): NativeTensor { return this.one('convert', [x], { dtype }); }
  /** Reads `bytes` at `offset` of `path` (stored as `src`) into `dst`, converting if needed. */
  load(dst: NativeTensor, path: string, offset: number, bytes: number, src: DType): void {
    this.op('load', [dst], { path, offset, bytes, src });
  }

  // The ops below are implemented in csrc/cpu/ops/<file>.cpp as named; attrs are passed as-is.

  /** rms_norm: x f32 [.., H], w f32 [H] → f32; y = w ⊙ x / sqrt(mean(x²) + eps). (norm.cpp) */
  rmsNorm(x: NativeTensor, w: NativeTensor, eps: number): NativeTensor { return this.one('rms_norm', [x, w], { eps }); }
  /** layer_norm: x f32 [.., H], w, b f32 [H] → f32. (norm.cpp) */
  layerNorm(x: NativeTensor, w: NativeTensor, b: NativeTensor, eps: number): NativeTensor {
    return this.one('layer_norm', [x, w, b], { eps });
  }
  /**
   * rope_cos_sin: positions i32 [T] → [cos, sin] f32 [T, dim], rotate-half layout:
   * inv_freq[j] = 1 / theta^(2j/dim) (f32), ang = p · inv_freq[j] (f32), cos = [cos(ang), cos(ang)].
   * (rope.cpp; docs §2.4)
   */
  ropeCosSin(positions: NativeTensor, theta: number, dim: number): [NativeTensor, NativeTensor] {
    const [c, s] = this.op('rope_cos_sin', [positions], { theta, dim });
    return [c, s];
  }
  /** rope: x f32 [T, nh, hd] with cos/sin f32 [T, hd] → f32, x·cos + rotate_half(x)·sin. (rope.cpp) */
  rope(x: NativeTensor, cos: NativeTensor, sin: NativeTensor): NativeTensor { return this.one('rope', [x, cos, sin]); }
  /**
   * qkv_rope_split: qkv f32 [R, (heads + 2·kvHeads)·hd] (Q | K | V) and cos, sin [R, hd] → q f32
   * [R, heads, hd] and k with RoPE, v: head-major [kvHeads, R, hd] (`attention`'s cache layout of
   * R positions; the vision tower), or with kvRows [R, kvHeads, hd] (kv_cache_append_batch's
   * rows; the text decoder). kvHeads defaults to heads. The bits of three slice_cols and two
   * ropes (and, head-major, two kv_cache_appends). CPU op. (rope.cpp)
   */
  qkvRopeSplit(qkv: NativeTensor, cos: NativeTensor, sin: NativeTensor, heads: number, o: { kvHeads?: number; kvRows?: boolean } = {}): [NativeTensor, NativeTensor, NativeTensor] {
    const attrs: OpAttrs = { heads };
    if (o.kvHeads !== undefined) attrs.kvHeads = o.kvHeads;
    if (o.kvRows) attrs.kvRows = 1;
    const [q, k, v] = this.op('qkv_rope_split', [qkv, cos, sin], attrs);
    return [q, k, v];
  }
  /**
   * qkv_rope_split that stores k and v straight into a layer's caches [S, kvHeads, cap, hd]
   * (f32|bf16|f16), rows placed by `seqs` as kv_cache_append_batch places them; returns q f32
   * [R, heads, hd]. The bits of the split, two ropes and two appends. CPU op. (rope.cpp)
   */
  qkvRopeSplitStore(qkv: NativeTensor, cos: NativeTensor, sin: NativeTensor, heads: number, kvHeads: number, kCache: NativeTensor, vCache: NativeTensor, seqs: NumArray): NativeTensor {
    return this.one('qkv_rope_split', [qkv, cos, sin, kCache, vCache], { heads, kvHeads, kvRows: 1, seqs });
  }
  /** silu(x) = x·σ(x). (act.cpp) */
  silu(x: NativeTensor): NativeTensor { return this.one('silu', [x]); }
  /** swiglu(gate, up) = silu(gate) ⊙ up, same shapes. (act.cpp) */
  swiglu(gate: NativeTensor, up: NativeTensor): NativeTensor { return this.one('swiglu', [gate, up]); }
  /** Exact (erf) GELU. (act.cpp) */
  gelu(x: NativeTensor): NativeTensor { return this.one('gelu', [x]); }
  /** tanh-approximated GELU ("gelu_pytorch_tanh"). (act.cpp) */
  geluTanh(x: NativeTensor): NativeTensor { return this.one('gelu_tanh', [x]); }
  /** Row softmax over the last dim. (act.cpp) */
  softmax(x: NativeTensor): NativeTensor { return this.one('softmax', [x]); }
  /**
   * attention: q f32 [Tq, nh, hd]; k, v [nkv, cap, hd] (f32, or bf16/f16) holding keys at
   * absolute positions 0..kvLen-1 → f32 [Tq, nh, hd]. Query i sits at position qPos0 + i;
   * GQA: head h reads kv head floor(h / (nh / nkv)). Masks: 'causal' (k ≤ q), 'block'
   * (floor(k/blockSize) ≤ floor(q/blockSize)), 'full' (every k < kvLen), 'segments'
   * (q and k in the same [segments[s], segments[s+1]) range, cu_seqlens style). scale
   * defaults to 1/sqrt(hd). (attention.cpp)
   */
  attention(q: NativeTensor, k: NativeTensor, v: NativeTensor, o: AttentionOptions): NativeTensor {
    return this.one('attention', [q, k, v], {
      kvLen: o.kvLen, qPos0: o.qPos0 ?? 0, mask: o.mask, blockSize: o.blockSize, segments: o.segments, scale: o.scale,
      ...(o.bf16 ? { bf16: 1 } : {}),
    });
  }
  /**
   * attention_batch: the rows of several sequences in one op. q f32 [T, nh, hd]; k, v
   * [S, nkv, cap, hd] (S cache slots); seqs = 6 numbers per sequence: row0, row1 (its rows of q,
   * in order, covering [0, T)), slot, pos0 (position of row0), mask (0 causal, 1 block, 2 full),
   * bs. Each sequence equals one `attention` on its slot with kvLen = pos0 + n, qPos0 = pos0,
   * bit for bit. `rows` (i32 [Tq], CPU queues): q holds only these rows of the layout, each
   * sequence's after the previous one's (repeats allowed) — each the bits of that row in the
   * full call; the layout then covers its own rows. bf16: as AttentionOptions.bf16. (attention.cpp)
   */
  attentionBatch(q: NativeTensor, k: NativeTensor, v: NativeTensor, seqs: NumArray, scale?: number, rows?: NativeTensor, bf16 = false): NativeTensor {
    return this.one('attention_batch', rows ? [q, k, v, rows] : [q, k, v], bf16 ? { seqs, scale, bf16: 1 } : { seqs, scale });
  }
  /** kv_cache_append_batch: x f32 [T, nkv, hd] rows of each sequence (seqs as attentionBatch) into its slot of cache [S, nkv, cap, hd]. (kv_cache.cpp) */
  kvCacheAppendBatch(cache: NativeTensor, x: NativeTensor, seqs: NumArray): void { this.op('kv_cache_append_batch', [cache, x], { seqs }); }
  /** kv_cache_append: writes x f32 [T, nkv, hd] into cache [nkv, cap, hd] rows pos0..pos0+T-1 (in place). (kv_cache.cpp) */
  kvCacheAppend(cache: NativeTensor, x: NativeTensor, pos0: Num): void { this.op('kv_cache_append', [cache, x], { pos0 }); }
  /** reshape: same storage, new shape (numel must match). (shape.cpp) */
  reshape(x: NativeTensor, shape: readonly number[]): NativeTensor { return this.one('reshape', [x], { shape }); }
  /** narrow_rows: x [R, ...] → a view [len, ...] of rows start..start+len-1, same memory (eager only). (shape.cpp) */
  narrowRows(x: NativeTensor, start: number, len: number): NativeTensor { return this.one('narrow_rows', [x], { start, len }); }
  /** gather_rows: x [R, C] (any dtype), idx i32 [n] → [n, C]. (shape.cpp) */
  gatherRows(x: NativeTensor, idx: NativeTensor): NativeTensor { return this.one('gather_rows', [x, idx]); }
  /** scatter_rows: dst [R, C] f32 (in place) rows idx[i] ← src [n, C] row i. (shape.cpp) */
  scatterRows(dst: NativeTensor, src: NativeTensor, idx: NativeTensor): void { this.op('scatter_rows', [dst, src, idx]); }
  /** slice_cols: x f32 [R, C] → [R, len] columns start..start+len-1. (shape.cpp) */
  sliceCols(x: NativeTensor, start: number, len: number): NativeTensor { return this.one('slice_cols', [x], { start, len }); }
  /** concat_rows: [a; b] along dim 0 (same trailing dims and dtype; q8 matrices, and bf16p / q8p when a's rows fill whole 16-row panels). (shape.cpp) */
  concatRows(a: NativeTensor, b: NativeTensor): NativeTensor { return this.one('concat_rows', [a, b]); }
  /**
   * confidence_remask (docs §5.7-5.8): logits f32 [n, V] of the still-masked positions →
   * [ids i32 [n], confidence f32 [n], reveal i32 [n] (1 = reveal now)]. (sample.cpp; the TS
   * reference is lib/decode/sample.ts + remask.ts and must agree exactly.)
   */
  confidenceRemask(logits: NativeTensor, o: ConfidenceRemaskOptions): [NativeTensor, NativeTensor, NativeTensor] {
    const [ids, conf, reveal] = this.op('confidence_remask', [logits], remaskAttrs(o));
    return [ids, conf, reveal];
  }
  /** stream_read: reads `bytes` of a scratch buffer `repeat` times (bandwidth probe); returns f32 [1] checksum. (probe.cpp) */
  streamRead(buf: NativeTensor, repeat: number): NativeTensor { return this.one('stream_read', [buf], { repeat }); }
  /** compute_peak: every kernel thread runs `iters` rounds of the level's register-only multiply-add loop for `kind`; f32 [2] = [multiply-adds, seconds]. (probe.cpp) */
  computePeak(kind: 'f32' | 'bf16' | 'q8', iters: number): NativeTensor { return this.one('compute_peak', [], { kind, iters }); }
  /** image_resize: u8 [H, W, 3] → u8 [h, w, 3], Pillow-exact bicubic (docs §3.1). (image.cpp) */
  imageResize(img: NativeTensor, width: number, height: number): NativeTensor {
    return this.one('image_resize', [img], { width, height });
  }
  /**
   * patch_rows: a resized RGB u8 image [H, W, 3] → f32 [(H/ps)·(W/ps), 3·tps·ps·ps], the Qwen2-VL
   * pixel_values rows normalised by mean/std and rounded to `round` (the tower's weight dtype);
   * the same bits as lib/image/qwen2vl.ts patchRows + that rounding. dtype 'bf16' (with round
   * 'bf16'): the same values stored as bf16, which a matmul with bf16/bf16p weights takes as
   * activations. (image.cpp)
   */
  patchRows(img: NativeTensor, o: { patch: number; merge: number; temporal: number; mean: readonly number[]; std: readonly number[]; round?: 'none' | 'bf16' | 'f16'; dtype?: 'f32' | 'bf16' }): NativeTensor {
    return this.one('patch_rows', [img], { patch: o.patch, merge: o.merge, temporal: o.temporal, mean: [...o.mean], std: [...o.std], round: o.round ?? 'none', dtype: o.dtype ?? 'f32' });
  }
  /**
   * resize_bilinear: x f32 [h, w, C] → f32 [height, width, C], torch interpolate
   * mode 'bilinear', align_corners = false, no antialias (docs §3.5 step 7). (bilinear.cpp)
   */
  resizeBilinear(x: NativeTensor, height: number, width: number): NativeTensor {
    return this.one('resize_bilinear', [x], { height, width });
  }
}

/** A per-model execution queue: the op set run eagerly on a native thread, plus sync/read/write and plan replay. */
export class Queue extends OpSet {
  readonly native: NativeQueue;

  constructor(opts: QueueOptions = {}) {
    super();
    const addon = loadAddon();
    this.native = new addon.Queue(opts);
  }

  get threads(): number { return this.native.threads; }
  get isa(): Isa | null { return this.native.isa; }
  get disposed(): boolean { return this.native.disposed; }
  get device(): 'cpu' | 'cuda' { return this.native.device; }
  get precision(): Precision | null { return this.native.precision; }
  /** What the CPU matmul runs for each weight dtype (null once disposed). */
  get kernels(): CpuKernelInfo | null { return this.native.kernels; }

  op(name: string, inputs: readonly (NativeTensor | null | undefined)[], attrs: OpAttrs = {}): NativeTensor[] {
    // A PlanParam here is a bug (only a Recorder hands them out): the addon rejects it as an
    // attribute of unsupported type, naming the op and key.
    const out = this.native.op(name, inputs, attrs as Attrs);
    if (this.scope) for (const t of out) this.scope.track(t);
    return out;
  }
  input(_name: string, dtype: DType, shape: readonly number[], data: ArrayBufferView): NativeTensor {
    const t = tensorFromArray(dtype, shape, data);
    return this.scope ? this.scope.track(t) : t;
  }
  bind(_name: string, t: NativeTensor): NativeTensor { return t; }
  param(_name: string, value: number): number { return value; }
  paramArray(_name: string, values: readonly number[]): readonly number[] { return values; }

  /** Runs a recorded plan with one step's values (see lib/native/plan.ts); returns its outputs. */
  replay(plan: NativePlan, values: readonly (ArrayBufferView | NativeTensor)[], params: readonly number[]): NativeTensor[] {
    return this.native.replay(plan, values, params);
  }
  /** Counters since the queue was made: jobs, the queue thread's wake-ups, the pool's fork/joins (QueueStats). */
  stats(): QueueStats { return this.native.stats(); }
  /** Time every CPU op job from now on (true restarts the counts). */
  setProfiling(on: boolean): void { this.native.setProfiling(on); }
  /** What the jobs timed since setProfiling(true) cost, per op key (read it after a sync). */
  profile(): OpProfileEntry[] { return this.native.profile(); }
  /** A builder recording a plan for this queue's device (use lib/native/plan.ts's Recorder). */
  record(): NativePlanBuilder { return this.native.record(); }

  sync(): Promise<void> { return this.native.sync(); }
  read(t: NativeTensor): Promise<Float32Array | Int32Array | Uint16Array | Uint8Array> { return this.native.read(t); }
  async readF32(t: NativeTensor): Promise<Float32Array> { return (await this.native.read(t)) as Float32Array; }
  async readI32(t: NativeTensor): Promise<Int32Array> { return (await this.native.read(t)) as Int32Array; }
  /** Copies of several tensors after queued ops ran, in one settle. */
  readMany(ts: readonly NativeTensor[]): Promise<(Float32Array | Int32Array | Uint16Array | Uint8Array)[]> { return this.native.read(ts); }
  /**
   * confidence_remask on row ranges of `logits`, each with its own options, and one read of every
   * result: per group its token ids, confidences and reveal flags, as confidenceRemask + readMany
   * would give, with no output tensors made (a decode step's remask in one call).
   */
  async remaskRead(logits: NativeTensor, groups: readonly RemaskGroup[]): Promise<RemaskResult[]> {
    return remaskResults(groups, await this.native.remaskRead(logits, groups.map(remaskGroup)));
  }
  /**
   * A plan replay and a remaskRead over its first output (the logits) in one call: a decode
   * step's whole host side, the logits never wrapped as a JS tensor. The groups are checked
   * before anything is queued. (lib/native/plan.ts RecordedPlan.runRemaskRead)
   */
  replayRemaskRead(plan: NativePlan, values: readonly (ArrayBufferView | NativeTensor)[], params: readonly number[], groups: readonly RemaskGroup[]): Promise<RemaskResult[]> {
    // Not async: a bad argument throws here, as replay's does, before anything is queued.
    return this.native.replayRemaskRead(plan, values, params, groups.map(remaskGroup)).then((d) => remaskResults(groups, d));
  }
  write(t: NativeTensor, data: ArrayBufferView): void { this.native.write(t, data); }
  cancel(): void { this.native.cancel(); }
  /**
   * A hint that work follows within `us` µs (a request has started): the queue thread leaves its
   * sleep now and spins until the work comes, and with `pool` the kernel workers too, so the
   * first op does not wait for their wake-up (50-500 µs each on a VM). Does nothing once disposed.
   */
  prewarm(us: number, pool = false): void { this.native.prewarm(us, pool); }
  dispose(): void { this.native.dispose(); }
}

/** Host buffers the engine owns now, process-wide (tests: dispose frees everything). */
export function nativeMemory(): { hostStorages: number; hostBytes: number } {
  return loadAddon().memory();
}

export interface AttentionOptions {
  kvLen: Num;
  qPos0?: Num;
  mask: 'causal' | 'block' | 'full' | 'segments';
  blockSize?: number;
  segments?: readonly number[];
  scale?: number;
  /**
   * Both products (q·k and p·v) on bf16-rounded operands, two products per vdpbf16ps, where the
   * queue's level has it (avx512_bf16) and the head dim is even; the f32 products elsewhere. The
   * models ask for it under precision 'fast' on CPU queues (docs/precision.md).
   */
  bf16?: boolean;
}

/** One group's remask outputs (Queue.remaskRead): per row its token, confidence and reveal flag (0/1). */
export interface RemaskResult {
  ids: Int32Array;
  conf: Float32Array;
  reveal: Int32Array;
}

/** Logit rows [row0, row0 + rows) remasked with `options` (Queue.remaskRead). */
export interface RemaskGroup { row0: number; rows: number; options: ConfidenceRemaskOptions }

function remaskGroup(g: RemaskGroup): readonly [number, number, Attrs] { return [g.row0, g.rows, remaskAttrs(g.options)]; }

function remaskResults(groups: readonly RemaskGroup[], data: readonly (Float32Array | Int32Array | Uint16Array | Uint8Array)[]): RemaskResult[] {
  return groups.map((_, i) => ({ ids: data[3 * i] as Int32Array, conf: data[3 * i + 1] as Float32Array, reveal: data[3 * i + 2] as Int32Array }));
}

/** The confidence_remask op's attributes for these options (defaults filled in). */
function remaskAttrs(o: ConfidenceRemaskOptions): Attrs {
  return {
    temperature: o.temperature, topK: o.topK ?? 0, topP: o.topP ?? 1, seed: o.seed ?? 0, counters: o.counters,
    k: o.k, mode: o.mode, threshold: o.threshold ?? 0.85, confidence: o.confidence ?? 'modified',
  };
}

export interface ConfidenceRemaskOptions {
  /** 0 = greedy (argmax, first index on ties). */
  temperature: number;
  topK?: number;
  topP?: number;
  seed?: number;
  /** One RNG counter per row (sampling only); see lib/decode/rng.ts. */
  counters?: readonly number[];
  /** The schedule entry: how many to reveal (static), or the minimum (dynamic). */
  k: number;
  mode: 'static' | 'dynamic';
  threshold?: number;
  /** 'modified': π[token] under the filtered, tempered distribution (Qwen2.5-VL route); 'raw': softmax(raw logits)[token] (AR-LM route). */
  confidence?: 'modified' | 'raw';
}
