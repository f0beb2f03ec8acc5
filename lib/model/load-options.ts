// load-options.ts — loadModel's options, checked like generate's: one table row per key (its
// expected type and range, a check, and the work that implements it), unknown keys refused
// with a did-you-mean hint, values read from the object's own enumerable keys only.
//
// To add an option: add its field to LoadModelOptions (model.ts) and one row to LOAD_OPTIONS
// below. A row with `available` accepts only those values until the work named in
// `implementedBy` lands; that work deletes `available`.
import { availableParallelism } from 'node:os';
import { OptionError } from '../errors.js';
import { invalidOption, nearestKey } from '../decode/options.js';

/** Work limits of a loaded model; each has a default (LIMIT_DEFAULTS) and can be raised. */
export interface ModelLimits {
  /** Milliseconds a stream() may sit between two next() calls before it is abandoned and the
   *  model released (default 60 000; 0 = never). See Model.stream. */
  streamIdleMs?: number;
  /** Wall-clock milliseconds a chat template may render for (default 2000). */
  templateMs?: number;
  /** Largest rendered chat template, in UTF-16 characters (default 4 MiB). */
  templateChars?: number;
  /** Largest prompt text accepted before tokenizing, in UTF-8 bytes (default: the context length
   *  × the tokenizer's longest token, the most that could still fit the context). */
  promptBytes?: number;
  /** Largest image file or encoded buffer, in bytes (default 64 MiB). */
  imageBytes?: number;
  /** Largest single image, width·height from its header (default 64 Mpx). */
  imagePixels?: number;
  /** Largest total width·height of the images of one request (default 128 Mpx). */
  requestPixels?: number;
}

export const LIMIT_DEFAULTS: Readonly<Required<Omit<ModelLimits, 'promptBytes'>>> = Object.freeze({
  streamIdleMs: 60_000,
  templateMs: 2000,
  templateChars: 4 * 1024 * 1024,
  imageBytes: 64 * 1024 * 1024,
  imagePixels: 64 * 1024 * 1024,
  requestPixels: 128 * 1024 * 1024,
});

/** The most kernel threads accepted: more than twice the logical CPUs only makes threads wait
 *  for each other (a pool of 1024 on 2 cores took 33 s for 8 tokens). At least 4. */
export function maxThreads(): number {
  return Math.max(4, 2 * availableParallelism());
}

/** One row of an option table. */
export interface OptionSpec {
  /** What a valid value is, for the message: "integer in [1, 4]". */
  expected: () => string;
  check: (v: unknown) => boolean;
  /** The work that implements the option (an issue), when it is not this file's. */
  implementedBy?: string;
  /** Until that work lands: the only values accepted (others get an OptionError naming it). */
  available?: readonly unknown[];
  /** A nested table (checked the same way) for object-valued options. */
  fields?: Readonly<Record<string, OptionSpec>>;
}

const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v);
const intIn = (lo: number, hi: () => number): Pick<OptionSpec, 'expected' | 'check'> => ({
  expected: () => `integer in [${lo}, ${hi()}]`,
  check: (v) => isInt(v) && v >= lo && v <= hi(),
});
const oneOf = (values: readonly unknown[]): Pick<OptionSpec, 'expected' | 'check'> => ({
  expected: () => `one of ${values.map((x) => (typeof x === 'string' ? `'${x}'` : String(x))).join(', ')}`,
  check: (v) => values.includes(v),
});
const bool: Pick<OptionSpec, 'expected' | 'check'> = { expected: () => 'boolean', check: (v) => typeof v === 'boolean' };
const fn: Pick<OptionSpec, 'expected' | 'check'> = { expected: () => 'function', check: (v) => typeof v === 'function' };

/** Limit rows: integers from 0 or 1 up to a bound far past real use (2^31 ms, 2^40 bytes). */
export const LIMIT_OPTIONS: Readonly<Record<keyof ModelLimits, OptionSpec>> = Object.freeze({
  streamIdleMs: intIn(0, () => 2 ** 31 - 1),
  templateMs: intIn(1, () => 2 ** 31 - 1),
  templateChars: intIn(1, () => 2 ** 29),
  promptBytes: intIn(1, () => 2 ** 40),
  imageBytes: intIn(1, () => 2 ** 40),
  imagePixels: intIn(1, () => 2 ** 40),
  requestPixels: intIn(1, () => 2 ** 40),
});

/** Every loadModel option. */
export const LOAD_OPTIONS: Readonly<Record<string, OptionSpec>> = Object.freeze({
  threads: intIn(1, maxThreads),
  dtype: oneOf(['bf16', 'f16', 'f32', 'q8']),
  precision: oneOf(['exact', 'fast']),
  isa: oneOf(['scalar', 'avx2', 'avx2_vnni', 'avx512', 'avx512_bf16']),
  contextLength: intIn(1, () => 1 << 24),
  onProgress: fn,
  signal: {
    expected: () => 'AbortSignal',
    check: (v) => typeof v === 'object' && v !== null && typeof (v as AbortSignal).aborted === 'boolean' && typeof (v as AbortSignal).addEventListener === 'function',
  },
  vision: bool,
  gpu: oneOf(['auto', 'cuda', 'cpu', false]),
  device: intIn(0, () => 1023),
  cudaPluginPaths: {
    expected: () => 'array of strings',
    check: (v) => Array.isArray(v) && v.every((x) => typeof x === 'string'),
  },
  eager: bool,
  memoryCheck: bool,
  maxBatch: intIn(1, () => 256),
  maxBatchRows: intIn(1, () => 1 << 16),
  pollSteps: bool,
  limits: {
    expected: () => `object with ${Object.keys(LIMIT_OPTIONS).join(', ')}`,
    check: (v) => typeof v === 'object' && v !== null && !Array.isArray(v),
    fields: LIMIT_OPTIONS,
  },
});

/** Other spellings users reach for → the key (hints only). */
const LOAD_ALIASES: Readonly<Record<string, string>> = Object.freeze({
  thread: 'threads', numThreads: 'threads', num_threads: 'threads', nThreads: 'threads', n_threads: 'threads',
  ctx: 'contextLength', contextSize: 'contextLength', context_length: 'contextLength', maxContext: 'contextLength',
  n_ctx: 'contextLength', cuda: 'gpu', useGpu: 'gpu', deviceIndex: 'device', onprogress: 'onProgress',
  progress: 'onProgress', abortSignal: 'signal', weightDtype: 'dtype', weightsDtype: 'dtype', type: 'dtype',
  batchSize: 'maxBatch', batch: 'maxBatch', concurrency: 'maxBatch', parallel: 'maxBatch', n_parallel: 'maxBatch',
});

/** A copy of `obj`'s own enumerable string keys in a null-prototype object: nothing inherited,
 *  and a "__proto__" key from JSON.parse stays a plain (unknown) key, never a prototype. */
export function ownCopy(obj: object): Record<string, unknown> {
  const out = Object.create(null) as Record<string, unknown>;
  for (const k of Object.keys(obj)) out[k] = (obj as Record<string, unknown>)[k];
  return out;
}

/** Checks `opts` against `table`: unknown keys (with a hint), types, ranges, pending values.
 *  `where` prefixes nested names ("limits."). Returns an own-keys copy. */
export function validateTable(opts: unknown, table: Readonly<Record<string, OptionSpec>>, where = '', aliases: Readonly<Record<string, string>> = {}): Record<string, unknown> {
  if (opts === undefined) return Object.create(null) as Record<string, unknown>;
  if (opts === null || typeof opts !== 'object' || Array.isArray(opts)) throw invalidOption(where ? where.slice(0, -1) : 'options', 'object', opts);
  const o = ownCopy(opts);
  const known = Object.keys(table);
  for (const key of Object.keys(o)) {
    if (Object.hasOwn(table, key)) continue;
    const hint = nearestKey(key, known, aliases);
    throw new OptionError(`Unknown option ${JSON.stringify(where + key)}${hint ? `: did you mean ${JSON.stringify(where + hint)}?` : ''}` +
      ` (known options: ${known.map((k) => where + k).join(', ')})`, where + key);
  }
  for (const key of known) {
    const v = o[key];
    if (v === undefined) continue;
    const spec = table[key];
    if (!spec.check(v)) throw invalidOption(where + key, spec.expected(), v);
    if (spec.available && !spec.available.includes(v)) {
      throw new OptionError(`${where + key} ${JSON.stringify(v)} is not available in this build yet (it comes with ${spec.implementedBy}); ` +
        `available: ${spec.available.map((x) => JSON.stringify(x)).join(', ')}`, where + key);
    }
    if (spec.fields) o[key] = validateTable(v, spec.fields, `${where + key}.`);
  }
  return o;
}

/** loadModel's options checked (OptionError on the first bad one), as an own-keys copy. */
export function validateLoadOptions(opts: unknown): Record<string, unknown> {
  return validateTable(opts, LOAD_OPTIONS, '', LOAD_ALIASES);
}

/** The limits of a load, defaults filled in (promptBytes stays undefined: it needs the tokenizer). */
export function resolveLimits(l: ModelLimits | undefined): Required<Omit<ModelLimits, 'promptBytes'>> & Pick<ModelLimits, 'promptBytes'> {
  const out: Required<Omit<ModelLimits, 'promptBytes'>> & Pick<ModelLimits, 'promptBytes'> = { ...LIMIT_DEFAULTS };
  for (const [k, v] of Object.entries(l ?? {})) if (v !== undefined) (out as Record<string, number>)[k] = v as number;
  return out;
}
