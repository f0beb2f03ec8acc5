// types.ts — the typed view of the addon's surface (csrc/napi). Public code never sees these
// directly; lib/native/index.ts wraps them.

/** 'q8': int8 blocks; 'bf16p' / 'q8p': bf16 / q8 matrices in 16-row panels (csrc/core/dtype.h) — CPU weights only. */
export type DType = 'f32' | 'f16' | 'bf16' | 'i32' | 'u8' | 'q8' | 'bf16p' | 'q8p';
/** CPU matmul precision (csrc/cpu/kernels.h): 'exact' keeps f32 activations, 'fast' rounds them. */
export type Precision = 'exact' | 'fast';
export type Isa = 'scalar' | 'avx2' | 'avx2_vnni' | 'avx512' | 'avx512_bf16';
export type AttrValue = number | boolean | string | readonly number[] | undefined;
export type Attrs = Record<string, AttrValue>;

export interface NativeTensor {
  readonly dtype: DType | null;
  readonly shape: number[] | null;
  readonly nbytes: number;
  readonly disposed: boolean;
  /** Where the storage lives: 'cpu' (host) or 'cuda' (GPU memory of the CUDA backend). */
  readonly device: 'cpu' | 'cuda' | null;
  dispose(): void;
}

export interface NativeTensorClass {
  fromArray(dtype: DType, shape: readonly number[], data: ArrayBufferView | ArrayBuffer): NativeTensor;
  prototype: NativeTensor;
}

export interface NativePlanInfo {
  ops: number;
  inputs: number;
  params: number;
  /** Bytes of the one arena all intermediates share. */
  arenaBytes: number;
  /** Σ intermediate sizes before reuse (arenaBytes / this = what lifetime packing saved). */
  intermediateBytes: number;
  /** Row segments: chains of row-local ops run in one fork per replay (csrc/core/plan.cpp). */
  segments: number;
  device: 'cpu' | 'cuda';
}

/** A recorded plan (csrc/core/plan.h). */
export interface NativePlan {
  readonly info: NativePlanInfo | null;
  readonly disposed: boolean;
  dispose(): void;
}

/** Records ops into a plan: placeholders out, nothing runs (csrc/napi/plan_wrap.cpp). */
export interface NativePlanBuilder {
  op(name: string, inputs: readonly (NativeTensor | null | undefined)[], attrs?: Attrs, patches?: readonly (readonly [string, number, number, number?])[]): NativeTensor[];
  input(dtype: DType, shape: readonly number[]): NativeTensor;
  bind(dtype: DType, shape: readonly number[]): NativeTensor;
  finish(outputs: readonly NativeTensor[], nparams: number, freshOutputs?: boolean): NativePlan;
}

/** One line of a queue's op profile: every timed job with this key. */
export interface OpProfileEntry {
  /** The op's name; a matmul adds its weight dtype and row count ('matmul q8p ×8'). */
  op: string;
  calls: number;
  /** Wall time inside the op's kernels, all threads together counted once. */
  ms: number;
  /** A matmul's weight bytes, summed over calls (0 for other ops): with ms, how fast they streamed. */
  weightBytes: number;
}

/**
 * A queue's counters. jobs: jobs run; idleStarts / idleWaitMs: those pushed onto an idle queue
 * and their push-to-start wait (the queue thread's wake-up); forks / forksJoined: the kernel
 * pool's fork/joins (ops split across threads) and how many a worker thread took part in — a
 * low share means the extra threads were asleep or had no core when work came; poolWakes: how
 * often work that may fork (an op or a plan with something worth splitting) got the workers
 * up and spinning — one-thread work (a small model's decode steps) does not, so the workers
 * sleep and leave the cores to the queue and JS threads.
 */
export interface QueueStats {
  jobs: number;
  idleStarts: number;
  idleWaitMs: number;
  forks: number;
  forksJoined: number;
  poolWakes: number;
}

export interface NativeQueue {
  op(name: string, inputs: readonly (NativeTensor | null | undefined)[], attrs?: Attrs): NativeTensor[];
  record(): NativePlanBuilder;
  /** Counters since the queue was made (QueueStats). */
  stats(): QueueStats;
  /** Time every CPU op job from now on (true restarts the counts); csrc/core/profile.h. */
  setProfiling(on: boolean): void;
  /** The timed jobs, keyed by op (a matmul also by weight dtype and rows: 'matmul bf16p ×8'). */
  profile(): OpProfileEntry[];
  replay(plan: NativePlan, values: readonly (ArrayBufferView | NativeTensor)[], params: readonly number[]): NativeTensor[];
  sync(): Promise<void>;
  read(t: NativeTensor): Promise<Float32Array | Int32Array | Uint16Array | Uint8Array>;
  read(ts: readonly NativeTensor[]): Promise<(Float32Array | Int32Array | Uint16Array | Uint8Array)[]>;
  /** Per group [row0, rows, attrs]: confidence_remask on those logit rows; then one read of every group's three outputs. */
  remaskRead(logits: NativeTensor, groups: readonly (readonly [number, number, Attrs])[]): Promise<(Float32Array | Int32Array | Uint16Array | Uint8Array)[]>;
  /** replay, then remaskRead over its first output, in one call (a decode step). */
  replayRemaskRead(plan: NativePlan, values: readonly (ArrayBufferView | NativeTensor)[], params: readonly number[],
    groups: readonly (readonly [number, number, Attrs])[]): Promise<(Float32Array | Int32Array | Uint16Array | Uint8Array)[]>;
  write(t: NativeTensor, data: ArrayBufferView): void;
  cancel(): void;
  /** Work is coming: the queue thread (and with pool, the kernel workers) spin up now, for at most us µs (queue.cpp prewarm). */
  prewarm(us: number, pool: boolean): void;
  dispose(): void;
  readonly threads: number;
  readonly isa: Isa | null;
  readonly disposed: boolean;
  readonly device: 'cpu' | 'cuda';
  readonly precision: Precision | null;
  readonly kernels: CpuKernelInfo | null;
}

/** What the CPU matmul computes with, per weight dtype, at a queue's level and precision. */
export interface CpuKernelInfo {
  isa: Isa;
  precision: Precision;
  f32: string;
  f16: string;
  bf16: string;
  q8: string;
  /** Whether bf16 weight matrices are loaded as 'bf16p' (panels for the vdpbf16ps kernel): precision 'fast' at avx512_bf16. */
  bf16Packed: boolean;
  /** Whether q8 weight matrices are loaded as 'q8p' (panels for the vpdpbusd kernel): precision 'fast' at avx512_bf16. */
  q8Packed: boolean;
}

export interface NativeInfo {
  isa: Isa;
  isaDetected: Isa;
  isaLevels: Isa[];
  physicalCores: number;
  build: string;
  ops: string[];
  napiVersion: number;
}

export interface NativeAddon {
  init(opts: { makeError: (code: string, message: string) => Error }): void;
  info(): NativeInfo;
  memory(): { hostStorages: number; hostBytes: number };
  /** PNG scanline unfilter (lib/image/png.ts); null on a filter byte above 4. Absent in addons built before it. */
  /** inPlace: the pixels overwrite raw (the result is a view of its first stride × height bytes). */
  pngUnfilter?(raw: Uint8Array, stride: number, height: number, bpp: number, inPlace?: boolean): Uint8Array | null;
  /** A small baseline JPEG decoded to RGB, or null where sharp must decide (csrc/napi/jpeg_wrap.cpp). */
  jpegDecode?(bytes: Uint8Array, maxPixels: number): { data: Uint8Array; width: number; height: number } | null;
  Tensor: NativeTensorClass;
  Queue: new (opts?: { threads?: number; isa?: Isa; device?: 'cpu' | 'cuda'; precision?: Precision }) => NativeQueue;
}
