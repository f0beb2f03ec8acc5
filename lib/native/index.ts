// index.ts — typed wrappers over the addon: tensors, the per-model queue and its op set.
//
// Every op method validates and allocates now (shape errors throw here, naming the op and
// shapes) and computes later on the queue's native thread. Await `sync()` or `read()` to wait.
// Intermediate tensors should be disposed as soon as the last op that reads them is queued
// (`TensorScope` does it for a block of code); the queued op keeps its own reference.
import { loadAddon } from './load.js';
import type { Attrs, DType, Isa, NativeInfo, NativeQueue, NativeTensor } from './types.js';

export type { DType, Isa, NativeInfo, NativeTensor as Tensor } from './types.js';
export { loadAddon, packageRoot } from './load.js';

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
}

/** A per-model execution queue with the op set as methods. */
export class Queue {
  readonly native: NativeQueue;
  /** When set, every tensor an op returns is tracked here (see TensorScope). */
  scope: TensorScope | undefined;

  constructor(opts: QueueOptions = {}) {
    const addon = loadAddon();
    this.native = new addon.Queue(opts);
  }

  get threads(): number { return this.native.threads; }
  get isa(): Isa | null { return this.native.isa; }
  get disposed(): boolean { return this.native.disposed; }

  /** Enqueues a raw op by name (see csrc/cpu/ops). */
  op(name: string, inputs: readonly (NativeTensor | null | undefined)[], attrs: Attrs = {}): NativeTensor[] {
    const out = this.native.op(name, inputs, attrs);
    if (this.scope) for (const t of out) this.scope.track(t);
    return out;
  }

  private one(name: string, inputs: readonly (NativeTensor | null | undefined)[], attrs: Attrs = {}): NativeTensor {
    return this.op(name, inputs, attrs)[0];
  }

  sync(): Promise<void> { return this.native.sync(); }
  read(t: NativeTensor): Promise<Float32Array | Int32Array | Uint16Array | Uint8Array> { return this.native.read(t); }
  async readF32(t: NativeTensor): Promise<Float32Array> { return (await this.native.read(t)) as Float32Array; }
  async readI32(t: NativeTensor): Promise<Int32Array> { return (await this.native.read(t)) as Int32Array; }
  write(t: NativeTensor, data: ArrayBufferView): void { this.native.write(t, data); }
  cancel(): void { this.native.cancel(); }
  dispose(): void { this.native.dispose(); }

  // ---- op set -------------------------------------------------------------------------------

  /** ids i32 [T], table [V, H] → f32 [T, H]. */
  embedding(ids: NativeTensor, table: NativeTensor): NativeTensor { return this.one('embedding', [ids, table]); }
  /** x f32 [.., K] · W[N, K]ᵀ (+ bias f32 [N]) → f32 [.., N]. */
  matmul(x: NativeTensor, w: NativeTensor, bias?: NativeTensor | null): NativeTensor {
    return this.one('matmul', bias ? [x, w, bias] : [x, w]);
  }
  add(a: NativeTensor, b: NativeTensor): NativeTensor { return this.one('add', [a, b]); }
  mul(a: NativeTensor, b: NativeTensor): NativeTensor { return this.one('mul', [a, b]); }
  scale(x: NativeTensor, s: number): NativeTensor { return this.one('scale', [x], { s }); }
  convert(x: NativeTensor, dtype: 'f32' | 'bf16' | 'f16'): NativeTensor { return this.one('convert', [x], { dtype }); }
  /** Reads `bytes` at `offset` of `path` (stored as `src`) into `dst`, converting if needed. */
  load(dst: NativeTensor, path: string, offset: number, bytes: number, src: DType): void {
    this.op('load', [dst], { path, offset, bytes, src });
  }
}
