// sample.ts — one masked position's logits → (token, confidence): the plain float64 reference of
// the sampling contract (docs §5.7). The native op confidence_remask (csrc/cpu/ops/sample.cpp,
// and its CUDA twin) is tested against this file, so it states the contract literally.
//
// Legend: V vocabulary size; l[j] the f32 logits of one row (one still-masked position), held
// in JS numbers, so every sum below is float64; r the row index (messages only).
//
// Contract (all arithmetic float64, sums in index order j = 0..V−1):
//   Validation: a NaN or +Inf logit → OutOfRangeError "logits row r contains NaN at index j";
//     −Inf is allowed (probability 0); a row that is all −Inf is an error too.
//   Greedy (temperature === 0 exactly; topK/topP ignored):
//     token = first index of the maximum (lowest index on ties, §5.12 #8);
//     Z = Σ_j exp(l[j] − max); confidence = fround(1 / Z)   (= softmax(l)[token] as an f32).
//   Sampling (temperature > 0):
//     z[j] = l[j] / temperature.
//     top-k (0 < topK < V): thr = the topK-th largest z counting duplicates; z[j] = −Inf where
//       z[j] < thr (ties at the threshold survive, like torch's `logits < values[-1]`).
//     top-p (topP < 1): m = max z; p[j] = exp(z[j] − m) / Σ exp(z − m). Visit indices by z
//       descending (ties: lower index first) with cum = 0: for the i-th visited index, if i > 0
//       and cum > topP, set its z = −Inf; then cum += its p (computed before any removal).
//       So the top token always survives and a token goes once the tokens before it already
//       exceed topP (the reference's mask "shifted right by one").
//     π[j] = exp(z[j] − m) / S' with S' = Σ over survivors (π = 0 for −Inf), m = max z.
//     u = uniform(seed, counter) (rng.ts); token = first j with c[j] > u where c[j] = Σ_{i≤j} π[i];
//       if none (rounding at the top end), the largest j with π[j] > 0.
//     confidence = fround(π[token]) for 'modified' (Qwen2.5-VL route), or
//       fround(exp(l[tok] − max l) / Σ_j exp(l[j] − max l)) for 'raw' (AR-LM route: the
//       unscaled, unfiltered softmax).
//   A temperature so small that some l/temperature overflows to ±Inf is rejected (the reference
//   would produce NaN probabilities).
//
// Agreement with C++: Math.exp (V8's fdlibm port) and glibc exp can differ in the last bit of a
// double; the f32 rounding of the confidences hides that except at exact f32 rounding ties, and
// a sampled token can only flip if u lands within an ulp of a cumulative sum. Tests that compare
// the two should treat such flips as impossible in practice, not as a tolerance to widen.

import { OptionError, OutOfRangeError } from '../errors.js';
import type { DecodeRoute } from './canvas.js';
import { uniform } from './rng.js';

export type ConfidenceMode = 'modified' | 'raw';

/** The confidence each route reports (§5.7): Qwen2.5-VL 'modified', AR-LM 'raw'. */
export function confidenceModeOf(route: DecodeRoute | undefined): ConfidenceMode {
  return route === 'ar-lm' ? 'raw' : 'modified';
}

export interface SampleOptions {
  /** 0 = greedy (exactly), > 0 = sample from softmax(l / temperature). */
  temperature: number;
  /** Keep the topK largest (ties at the threshold kept); 0 or ≥ V = off. Sampling only. */
  topK?: number;
  /** Nucleus mass; 1 = off. Sampling only. */
  topP?: number;
  /** Which probability is reported as the confidence when sampling (see header). */
  confidence?: ConfidenceMode;
  /** RNG seed and counter (rng.ts); required when temperature > 0. */
  seed?: number;
  counter?: number;
  /** Row index, used in error messages only. */
  row?: number;
}

export interface SampleResult {
  /** Chosen token id in [0, V). */
  id: number;
  /** Its confidence, an f32 value (Math.fround). */
  confidence: number;
}

/** Checks one row and returns its maximum and the first index holding it. */
export function checkLogitsRow(logits: ArrayLike<number>, row = 0): { max: number; argmax: number } {
  const V = logits.length;
  if (V === 0) throw new OutOfRangeError(`sampleRow: logits row ${row} is empty`);
  let max = -Infinity;
  let argmax = -1;
  for (let j = 0; j < V; j++) {
    const v = logits[j];
    if (Number.isNaN(v)) throw new OutOfRangeError(`sampleRow: logits row ${row} contains NaN at index ${j}`);
    if (v === Infinity) throw new OutOfRangeError(`sampleRow: logits row ${row} contains +Inf at index ${j}`);
    if (v > max) { max = v; argmax = j; }
  }
  if (argmax < 0) throw new OutOfRangeError(`sampleRow: logits row ${row} is all -Inf`);
  return { max, argmax };
}

/** softmax(l)[token] in float64, index-order sum, rounded to f32. */
function softmaxAt(logits: ArrayLike<number>, max: number, token: number): number {
  let Z = 0;
  for (let j = 0; j < logits.length; j++) Z += Math.exp(logits[j] - max);
  return Math.fround(Math.exp(logits[token] - max) / Z);
}

/** π: the sampling distribution after temperature, top-k and top-p (float64, length V). */
export function samplingDistribution(
  logits: ArrayLike<number>,
  opts: { temperature: number; topK?: number; topP?: number; row?: number },
): Float64Array {
  const row = opts.row ?? 0;
  const { temperature } = opts;
  const topK = opts.topK ?? 0;
  const topP = opts.topP ?? 1;
  if (!(temperature > 0) || !Number.isFinite(temperature)) {
    throw new OptionError(`samplingDistribution: expected finite number > 0 for temperature but received ${temperature}`, 'temperature');
  }
  if (!Number.isInteger(topK) || topK < 0) throw new OptionError(`sampleRow: expected integer ≥ 0 for topK but received ${topK}`, 'topK');
  if (!(topP > 0 && topP <= 1)) throw new OptionError(`sampleRow: expected number in (0, 1] for topP but received ${topP}`, 'topP');
  checkLogitsRow(logits, row);
  const V = logits.length;

  const z = new Float64Array(V);
  for (let j = 0; j < V; j++) {
    z[j] = logits[j] / temperature;
    if (z[j] === Infinity || (z[j] === -Infinity && logits[j] !== -Infinity)) {
      throw new OutOfRangeError(`sampleRow: temperature ${temperature} is too small: logits row ${row} index ${j} overflows when scaled`);
    }
  }

  if (topK > 0 && topK < V) {
    const sorted = Float64Array.from(z).sort();   // ascending, −Inf first
    const thr = sorted[V - topK];                 // the topK-th largest, duplicates counted
    for (let j = 0; j < V; j++) if (z[j] < thr) z[j] = -Infinity;
  }

  let m = -Infinity;
  for (let j = 0; j < V; j++) if (z[j] > m) m = z[j];

  if (topP < 1) {
    const p = new Float64Array(V);
    let S = 0;
    for (let j = 0; j < V; j++) { p[j] = Math.exp(z[j] - m); S += p[j]; }
    for (let j = 0; j < V; j++) p[j] /= S;
    const order = Array.from({ length: V }, (_, j) => j);
    // z descending, ties by lower index; two −Inf give NaN, which is falsy, so they fall
    // through to the index order too.
    order.sort((a, b) => (z[b] - z[a]) || (a - b));
    let cum = 0;
    for (let i = 0; i < V; i++) {
      const j = order[i];
      if (i > 0 && cum > topP) z[j] = -Infinity;
      cum += p[j];
    }
  }

  const pi = new Float64Array(V);
  let S2 = 0;
  for (let j = 0; j < V; j++) { pi[j] = Math.exp(z[j] - m); S2 += pi[j]; }
  for (let j = 0; j < V; j++) pi[j] /= S2;
  return pi;
}

/** One row → (token, confidence) per the contract in the header. */
export function sampleRow(logits: ArrayLike<number>, opts: SampleOptions): SampleResult {
  const row = opts.row ?? 0;
  const { temperature } = opts;
  if (!(temperature >= 0)) {
    throw new OptionError(`sampleRow: expected number ≥ 0 for temperature but received ${temperature}`, 'temperature');
  }
  if (temperature === 0) {
    const { max, argmax } = checkLogitsRow(logits, row);
    let Z = 0;
    for (let j = 0; j < logits.length; j++) Z += Math.exp(logits[j] - max);
    return { id: argmax, confidence: Math.fround(1 / Z) };
  }

  const pi = samplingDistribution(logits, opts);
  const { seed, counter } = opts;
  if (seed === undefined || counter === undefined) {
    throw new OptionError('sampleRow: seed and counter are required when temperature > 0', 'seed');
  }
  const u = uniform(seed, counter);
  let id = -1;
  let c = 0;
  for (let j = 0; j < pi.length; j++) {
    c += pi[j];
    if (c > u) { id = j; break; }
  }
  if (id < 0) {
    for (let j = pi.length - 1; j >= 0; j--) if (pi[j] > 0) { id = j; break; }
  }

  if ((opts.confidence ?? 'modified') === 'raw') {
    const { max } = checkLogitsRow(logits, row);
    return { id, confidence: softmaxAt(logits, max, id) };
  }
  return { id, confidence: Math.fround(pi[id]) };
}
