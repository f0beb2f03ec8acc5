// errors.ts — the typed errors every layer throws. Each carries a stable `code`.
//
// Native failures arrive with a DVL_* code (csrc/core/error.h) and are mapped here once, by
// makeNativeError, which lib/native registers with the addon at load time.

export class DiffusionVLError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** A tensor shape (or count) does not match what an op or a model expects. */
export class ShapeError extends DiffusionVLError {
  constructor(message: string, code = 'DVL_SHAPE') { super(code, message); }
}

/** A dtype the op or file cannot handle. */
export class DTypeError extends DiffusionVLError {
  constructor(message: string, code = 'DVL_DTYPE') { super(code, message); }
}

/** An index, id or argument outside its valid range. */
export class OutOfRangeError extends DiffusionVLError {
  constructor(message: string, code = 'DVL_RANGE') { super(code, message); }
}

/** A bad option passed to a public function. */
export class OptionError extends DiffusionVLError {
  readonly option?: string;
  constructor(message: string, option?: string) {
    super('DVL_OPTION', message);
    this.option = option;
  }
}

/** A checkpoint file is missing, corrupt, truncated or inconsistent. */
export class WeightsError extends DiffusionVLError {
  readonly file?: string;
  readonly tensor?: string;
  constructor(message: string, opts: { file?: string; tensor?: string; code?: string; cause?: unknown } = {}) {
    super(opts.code ?? 'DVL_WEIGHTS', message, { cause: opts.cause });
    this.file = opts.file;
    this.tensor = opts.tensor;
  }
}

/** config.json (or another model config file) is missing a field or holds a bad value. */
export class ConfigError extends DiffusionVLError {
  readonly file?: string;
  readonly field?: string;
  constructor(message: string, opts: { file?: string; field?: string } = {}) {
    super('DVL_CONFIG', message);
    this.file = opts.file;
    this.field = opts.field;
  }
}

/** An image could not be read, decoded or accepted. */
export class ImageError extends DiffusionVLError {
  readonly input?: string;
  constructor(message: string, input?: string, code = 'DVL_IMAGE') {
    super(code, message);
    this.input = input;
  }
}

/** The native addon or a backend (CUDA) is unavailable or does not support an op. */
export class BackendError extends DiffusionVLError {
  readonly backend?: string;
  readonly reason?: string;
  constructor(message: string, opts: { backend?: string; reason?: string; code?: string } = {}) {
    super(opts.code ?? 'DVL_BACKEND', message);
    this.backend = opts.backend;
    this.reason = opts.reason;
  }
}

/** A model, queue or tensor was used after dispose(). */
export class DisposedError extends DiffusionVLError {
  constructor(message = 'the object was disposed', code = 'DVL_DISPOSED') { super(code, message); }
}

/**
 * Not enough memory: the load-time estimate (weights, KV cache, activations, vision) exceeds
 * what the machine has available (code DVL_MEMORY, with the numbers), or a native allocation
 * failed or was refused as impossibly large (code DVL_ALLOC).
 */
export class MemoryError extends DiffusionVLError {
  /** Bytes the estimate says the load needs (DVL_MEMORY only). */
  readonly requiredBytes?: number;
  /** Bytes available when the estimate was taken (DVL_MEMORY only). */
  readonly availableBytes?: number;
  constructor(message: string, opts: { code?: string; requiredBytes?: number; availableBytes?: number } = {}) {
    super(opts.code ?? 'DVL_MEMORY', message);
    this.requiredBytes = opts.requiredBytes;
    this.availableBytes = opts.availableBytes;
  }
}

/** Native file I/O failed. */
export class IOError extends DiffusionVLError {
  constructor(message: string, code = 'DVL_IO') { super(code, message); }
}

/** Work was cancelled (the native side's view of an abort; public APIs reject with signal.reason). */
export class AbortError extends DiffusionVLError {
  constructor(message = 'the operation was aborted', code = 'DVL_ABORTED') { super(code, message); }
}

/** Maps a native DVL_* code and message to the matching typed error. */
export function makeNativeError(code: string, message: string): DiffusionVLError {
  switch (code) {
    case 'DVL_SHAPE': return new ShapeError(message, code);
    case 'DVL_DTYPE': return new DTypeError(message, code);
    case 'DVL_RANGE': return new OutOfRangeError(message, code);
    case 'DVL_DISPOSED': return new DisposedError(message, code);
    case 'DVL_IO': return new IOError(message, code);
    case 'DVL_ABORTED': return new AbortError(message, code);
    case 'DVL_BACKEND': return new BackendError(message, { code });
    case 'DVL_ALLOC': return new MemoryError(message, { code });
    default: return new DiffusionVLError(code, message);
  }
}
