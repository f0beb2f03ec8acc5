// options.ts — the user-facing decode options: their defaults (one object, each entry citing
// docs §5.1), and validateDecodeOptions, which rejects absurd values with an OptionError before
// any work starts and returns the resolved options the decoders read.
//
// Legend: P prompt length, G = maxTokens, bs = blockSize, S = steps, V vocabulary size.
//
// Names follow the docs §5 / paper vocabulary in camelCase. The reference's own keyword names
// (gen_length, remasking_strategy, confidence_threshold, top_k, …) are not accepted as keys but
// get a "did you mean" hint; its remasking values `low_confidence_static` /
// `low_confidence_dynamic` are accepted as synonyms of 'static' / 'dynamic'.

import { OptionError } from '../errors.js';
import type { RemaskingMode } from './remask.js';

export type RemaskingOption = RemaskingMode | 'low_confidence_static' | 'low_confidence_dynamic';

export interface DecodeOptions {
  /** G: tokens to generate (the output is at most this long). */
  maxTokens?: number;
  /** bs: block size; defaults to the model config's `bd3lm_block_size`. */
  blockSize?: number;
  /** S: denoising iterations planned per block (the loop runs at most S + 1, §5.5). */
  steps?: number;
  /** Which masks to reveal each iteration (§5.8). */
  remasking?: RemaskingOption;
  /** τ for 'dynamic' remasking: confidences strictly above it are revealed (§5.8). */
  threshold?: number;
  /** 0 = greedy (exact parity target); > 0 = sampling (§5.7). */
  temperature?: number;
  /** Sampling only: keep the topK largest logits (ties at the threshold kept); 0 = off. */
  topK?: number;
  /** Sampling only: nucleus mass in (0, 1]; 1 = off. */
  topP?: number;
  /** Sampling seed, integer in [0, 2^53); absent = a fresh random seed per call (reported back). */
  seed?: number;
  /** Ids that end decoding after the block holding one; default [the model's EOS] (§5.10). */
  stopTokens?: readonly number[];
  /** Aborts between denoising iterations; the decode rejects with signal.reason. */
  signal?: AbortSignal;
}

export interface ResolvedDecodeOptions {
  maxTokens: number;
  blockSize: number;
  steps: number;
  remasking: RemaskingMode;
  threshold: number;
  temperature: number;
  topK: number;
  topP: number;
  seed: number;
  stopTokens: number[];
  signal?: AbortSignal;
}

/** What the model and the call impose on the options. */
export interface DecodeLimits {
  /** The model config's block size (`bd3lm_block_size`), the default for blockSize. */
  blockSize: number;
  /** The model's EOS id (151645 for the released models), the default stop token. */
  eosId: number;
  /** Context limit (max positions); P + maxTokens must not exceed it. */
  contextLength?: number;
  /** P, when known, for the context check. */
  promptLength?: number;
  /** V, when known: stop tokens must be < V. */
  vocabSize?: number;
  /** Autoregressive decoding: blockSize and steps are not used, so they are not bounded by each other. */
  autoregressive?: boolean;
  /** The model's own defaults (its generation_config.json), used before DEFAULTS for what the
   *  call leaves out. */
  defaults?: ModelDecodeDefaults;
}

/** The options a model folder may set its own default for (steps, remasking, threshold). */
export type ModelDecodeDefaults = Partial<Pick<DecodeOptions, 'steps' | 'remasking' | 'threshold'>>;

/**
 * Upper bounds for options when the model does not impose a tighter one (no contextLength
 * given): far above any real use, low enough that the arrays sized by them (canvas, schedule)
 * stay small. With a model, maxTokens and the canvas are bounded by its context length and
 * steps by the block size.
 */
export const OPTION_LIMITS = Object.freeze({
  /** G and bs without a context length: 2^20 positions. */
  positions: 1 << 20,
  /** topK is an int32 natively. */
  topK: 2 ** 31 - 1,
});

/** Defaults of every option, in one place. */
export const DEFAULTS = Object.freeze({
  /** §5.1 and §7.2: gen_length 128 in the reference default and in every benchmark. */
  maxTokens: 128,
  /** §5.1: from the model config (`bd3lm_block_size`, 8 in every released model); undefined here. */
  blockSize: undefined as number | undefined,
  /** §7.2: the benchmarks use 8 (the reference's own keyword default is 4, §5.1). With bs = 8
   *  this reveals one token per iteration, the setting the published scores were measured with,
   *  so 8 is the default that reproduces them. */
  steps: 8,
  /** §5.1 / §7.2: `low_confidence_static`, the reference default and the benchmark setting. */
  remasking: 'static' as RemaskingMode,
  /** §5.1 / §5.8: `confidence_threshold` 0.85 (dynamic remasking only). */
  threshold: 0.85,
  /** §5.1 / §7.2: 0, greedy. */
  temperature: 0,
  /** §5.1: top_k 0 = off. */
  topK: 0,
  /** §5.1: top_p 1.0 = off. */
  topP: 1,
  /** Not in the reference (torch RNG); absent = random per call, see rng.ts. */
  seed: undefined as number | undefined,
  /** §5.10: only EOS (the model's `eosId`) stops. */
  stopTokens: undefined as readonly number[] | undefined,
  /** Not in the reference: cancellation between iterations. */
  signal: undefined as AbortSignal | undefined,
});

const KNOWN_KEYS = Object.keys(DEFAULTS) as (keyof DecodeOptions)[];

/** Reference keyword names and other common spellings → our key (hints only). */
const ALIASES: Record<string, keyof DecodeOptions> = {
  gen_length: 'maxTokens', max_new_tokens: 'maxTokens', maxNewTokens: 'maxTokens', max_tokens: 'maxTokens',
  genLength: 'maxTokens', block_size: 'blockSize', bd3lm_block_size: 'blockSize', block_length: 'blockSize',
  remasking_strategy: 'remasking', confidence_threshold: 'threshold', top_k: 'topK', top_p: 'topP',
  stop: 'stopTokens', stop_token_ids: 'stopTokens', stopTokenIds: 'stopTokens', eos_token_id: 'stopTokens',
};

const REMASKING: Record<string, RemaskingMode> = {
  static: 'static', dynamic: 'dynamic', low_confidence_static: 'static', low_confidence_dynamic: 'dynamic',
};

// --- messages ---------------------------------------------------------------------------------

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'bigint') return `${v}n`;
  if (Array.isArray(v)) return `[${v.map(describe).join(', ')}]`;
  if (typeof v === 'object') return Object.prototype.toString.call(v);
  if (typeof v === 'function') return 'a function';
  return String(v);
}

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  return typeof v;
}

/** OptionError "Expected <what> for <name> but received <value> (<type>)". */
export function invalidOption(name: string, expected: string, actual: unknown): OptionError {
  return new OptionError(`Expected ${expected} for ${name} but received ${describe(actual)} (${typeName(actual)})`, name);
}

/** Optimal-string-alignment distance: insertions, deletions, substitutions, adjacent swaps. */
function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
      // a swapped pair of letters ("setps") is one typo, not two
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.length][b.length];
}

/** The known key an unknown one most likely meant, if any. */
export function nearestOption(key: string): string | undefined {
  return nearestKey(key, KNOWN_KEYS, ALIASES);
}

/**
 * The entry of `known` that `key` most likely misspells (an alias first, then the closest by
 * edit distance, case and separators ignored), or undefined when none is close. Shared by every
 * option table (decode options here, loadModel's in lib/model/load-options.ts, the CLI's flags).
 */
export function nearestKey(key: string, known: readonly string[], aliases: Readonly<Record<string, string>> = {}): string | undefined {
  if (Object.hasOwn(aliases, key)) return aliases[key];
  const flat = (s: string) => s.toLowerCase().replace(/[_\-\s]/g, '');
  let best: string | undefined;
  let bestD = Infinity;
  for (const k of known) {
    const d = flat(k) === flat(key) ? 0 : editDistance(key.toLowerCase(), k.toLowerCase());
    if (d < bestD) { bestD = d; best = k; }
  }
  return bestD <= Math.max(1, Math.min(2, Math.floor(key.length / 3))) ? best : undefined;
}

// --- predicates -------------------------------------------------------------------------------

const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v);
const isNum = (v: unknown): v is number => typeof v === 'number' && !Number.isNaN(v);
const MAX_SEED = 2 ** 53;

function randomSeed(): number {
  // 53 random bits from two Math.random draws; reproducibility comes from reporting it back.
  return Math.floor(Math.random() * 2 ** 32) * 2 ** 21 + Math.floor(Math.random() * 2 ** 21);
}

// --- validation -------------------------------------------------------------------------------

/** Checks every option against its domain and the limits, fills the defaults, and returns the
 *  resolved options. Throws OptionError (with `.option` = the key) on the first bad value. */
export function validateDecodeOptions(opts: DecodeOptions | undefined, limits: DecodeLimits): ResolvedDecodeOptions {
  if (opts === undefined) opts = {};
  if (opts === null || typeof opts !== 'object' || Array.isArray(opts)) throw invalidOption('options', 'object', opts);

  for (const key of Object.keys(opts)) {
    if ((KNOWN_KEYS as string[]).includes(key)) continue;
    const hint = nearestOption(key);
    throw new OptionError(`Unknown option ${JSON.stringify(key)}${hint ? `: did you mean ${JSON.stringify(hint)}?` : ''}` +
      ` (known options: ${KNOWN_KEYS.join(', ')})`, key);
  }
  const o = opts as Record<string, unknown>;
  // Own properties only: an inherited value (a prototype set by JSON.parse's "__proto__" key or
  // by Object.create) is never an option. Then the model's own defaults (generation_config.json),
  // then DEFAULTS.
  const own = (limits.defaults ?? {}) as Record<string, unknown>;
  const get = (k: keyof DecodeOptions) => (Object.hasOwn(o, k) && o[k] !== undefined ? o[k] : own[k] !== undefined ? own[k] : DEFAULTS[k]);

  // G, and the context it has to fit in.
  const maxTokens = get('maxTokens');
  const P = limits.promptLength ?? 0;
  if (!isInt(maxTokens) || maxTokens < 1) throw invalidOption('maxTokens', 'integer ≥ 1', maxTokens);
  if (limits.contextLength === undefined && maxTokens > OPTION_LIMITS.positions) throw invalidOption('maxTokens', `integer in [1, ${OPTION_LIMITS.positions}]`, maxTokens);
  if (limits.contextLength !== undefined && P + maxTokens > limits.contextLength) {
    const room = limits.contextLength - P;
    throw invalidOption('maxTokens', room >= 1
      ? `integer ≤ ${room} (context length ${limits.contextLength} minus prompt length ${P})`
      : `a prompt shorter than the context length ${limits.contextLength} (prompt length is ${P}), and maxTokens ≥ 1`, maxTokens);
  }

  const blockSize = get('blockSize') ?? limits.blockSize;
  const maxBlock = limits.contextLength ?? OPTION_LIMITS.positions;
  if (!isInt(blockSize) || blockSize < 1 || blockSize > maxBlock) {
    throw invalidOption('blockSize', `integer in [1, ${maxBlock}]${limits.contextLength !== undefined ? ' (the context length)' : ''}`, blockSize);
  }
  // The canvas is whole blocks (§5.2): its last block must fit the KV cache too, or the final
  // forward would run past it after all the work before it.
  if (!limits.autoregressive && limits.contextLength !== undefined && blockSize < P + maxTokens) {
    const canvas = Math.ceil((P + maxTokens) / blockSize) * blockSize;
    if (canvas > limits.contextLength) {
      const room = Math.floor(limits.contextLength / blockSize) * blockSize - P;
      throw invalidOption('maxTokens', room >= 1
        ? `integer ≤ ${room} (the canvas is padded to whole blocks of ${blockSize}: prompt ${P} + maxTokens must end by position ${Math.floor(limits.contextLength / blockSize) * blockSize} of the context length ${limits.contextLength})`
        : `a shorter prompt: prompt length ${P} leaves no whole block of ${blockSize} in the context length ${limits.contextLength}`, maxTokens);
    }
  }

  // 1 ≤ S ≤ bs. S = 0 crashes the reference; S > bs only appends zero entries to the schedule
  // (§5.12 #7: iterations that reveal nothing), so it is refused rather than run (S = 10^9 would
  // allocate a 10^9-entry schedule). Left out, S is min(8, bs): the same
  // reveals as 8 unless the model samples MASK itself (§5.12 #1).
  const stepsIn = get('steps');
  const explicitSteps = Object.hasOwn(o, 'steps') && o.steps !== undefined;
  const maxSteps = limits.autoregressive ? OPTION_LIMITS.positions : blockSize;
  const steps = explicitSteps || limits.autoregressive ? stepsIn : Math.min(stepsIn as number, blockSize);
  if (!isInt(steps) || steps < 1) throw invalidOption('steps', 'integer ≥ 1', steps);
  if (steps > maxSteps) {
    throw invalidOption('steps', `integer ≤ ${maxSteps}${limits.autoregressive ? '' : ` (the block size: steps beyond it reveal nothing, §5.12 #7)`}`, steps);
  }

  const remaskingIn = get('remasking');
  const remasking = typeof remaskingIn === 'string' ? REMASKING[remaskingIn] : undefined;
  if (remasking === undefined) {
    throw invalidOption('remasking', `one of 'static', 'dynamic' (or 'low_confidence_static', 'low_confidence_dynamic')`, remaskingIn);
  }

  // τ in (0, 1): τ ≥ 1 never reveals by threshold, τ ≤ 0 reveals every mask at once.
  const threshold = get('threshold');
  if (!isNum(threshold) || !(threshold > 0 && threshold < 1)) throw invalidOption('threshold', 'number in (0, 1)', threshold);

  const temperature = get('temperature');
  if (!isNum(temperature) || !(temperature >= 0) || !Number.isFinite(temperature)) {
    throw invalidOption('temperature', 'finite number ≥ 0', temperature);
  }

  const topK = get('topK');
  if (!isInt(topK) || topK < 0 || topK > OPTION_LIMITS.topK) throw invalidOption('topK', `integer in [0, ${OPTION_LIMITS.topK}] (0 = off)`, topK);

  const topP = get('topP');
  if (!isNum(topP) || !(topP > 0 && topP <= 1)) throw invalidOption('topP', 'number in (0, 1] (1 = off)', topP);

  const seedIn = get('seed');
  if (seedIn !== undefined && (!isInt(seedIn) || seedIn < 0 || seedIn >= MAX_SEED)) {
    throw invalidOption('seed', 'integer in [0, 2^53)', seedIn);
  }
  const seed = seedIn ?? (temperature > 0 ? randomSeed() : 0);

  const stopIn = get('stopTokens') ?? [limits.eosId];
  if (!Array.isArray(stopIn)) throw invalidOption('stopTokens', 'array of token ids', stopIn);
  const vocabNote = limits.vocabSize !== undefined ? ` < ${limits.vocabSize}` : '';
  for (const [i, t] of stopIn.entries()) {
    if (!isInt(t) || t < 0 || (limits.vocabSize !== undefined && t >= limits.vocabSize)) {
      throw invalidOption(`stopTokens[${i}]`, `integer token id ≥ 0${vocabNote}`, t);
    }
  }

  const signal = get('signal');
  if (signal !== undefined && (typeof signal !== 'object' || signal === null || typeof (signal as AbortSignal).aborted !== 'boolean')) {
    throw invalidOption('signal', 'AbortSignal', signal);
  }

  return {
    maxTokens, blockSize, steps, remasking, threshold, temperature, topK, topP, seed,
    stopTokens: [...stopIn] as number[], signal: signal as AbortSignal | undefined,
  };
}
