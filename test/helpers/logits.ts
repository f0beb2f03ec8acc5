// logits.ts — logits sources for decoder tests (type LogitsSource, lib/decode/reference.ts).
//
// A source answers "logits [V] for canvas position pos, given the visible ids [0, blockEnd)".
// Every source here is a pure function of (visible, pos), so the plain reference decoder and the
// native-backed runner, asked the same question, get bit-identical logits.
//
//   randomSource   logits hashed from (seed, visible, pos): varied confidences, some above the
//                  dynamic threshold, optional per-id bias (e.g. make EOS likelier)
//   scriptedSource "position j answers id a(j) with confidence p(j)": logits 0 except the answer
//                  at log(p·(V−1)/(1−p)), so greedy confidence ≈ p (exactly softmax of that row)
//   answerFor      a generation script → canvas-indexed answers (EOS wherever you put it)
//   tiedSource     every position equally confident (tie rule)
//   maskingSource  chosen positions answer the mask id (§5.12 #1), always or while a condition holds
//   withNaN        wraps a source, poisoning one position's logits (decoders must raise)
//   recording      wraps a source and records the questions asked

import type { LogitsSource } from '../../lib/decode/reference.js';
import { normal, rng } from './random.js';

/** 32-bit FNV-1a over the words, then a murmur3 finaliser. */
function hashWords(words: Iterable<number>): number {
  let h = 0x811c9dc5;
  for (const w of words) {
    let x = w | 0;
    for (let b = 0; b < 4; b++) {
      h ^= x & 0xff;
      h = Math.imul(h, 0x01000193);
      x >>>= 8;
    }
  }
  h ^= h >>> 16; h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13; h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

export interface RandomSourceOptions {
  vocabSize: number;
  seed?: number;
  /** Logit standard deviation before the per-question sharpness (default 4). Measured with
   *  V = 64, greedy: spread 2 → 2.5 % of confidences above 0.85, 3 → 11 %, 4 → 20 % (and a
   *  near-uniform spread of confidences over (0, 1)), 6 → 34 %. */
  spread?: number;
  /** Added to the logits of these ids, e.g. { [eos]: 2 } or { [mask]: -6 }. */
  bias?: Record<number, number>;
}

/** Deterministic pseudo-random logits: a pure function of (seed, visible, pos). Each question
 *  also draws a sharpness factor in [0.25, 1.75) so confidences range from flat to peaked. */
export function randomSource(opts: RandomSourceOptions): LogitsSource {
  const V = opts.vocabSize, spread = opts.spread ?? 4, seed = opts.seed ?? 1;
  const bias = Object.entries(opts.bias ?? {}).map(([id, b]) => [Number(id), b] as const);
  return (visible, pos) => {
    const r = rng(hashWords([seed, pos, visible.length, ...visible]));
    const sharp = 0.25 + 1.5 * r();
    const l = normal(r, V, spread * sharp);
    for (const [id, b] of bias) if (id < V) l[id] += b;
    return l;
  };
}

type PerPosition<T> = readonly T[] | ((pos: number, visible: readonly number[]) => T);
const at = <T>(x: PerPosition<T>, pos: number, visible: readonly number[]): T =>
  typeof x === 'function' ? x(pos, visible) : (x as readonly T[])[pos];

export interface ScriptedSourceOptions {
  vocabSize: number;
  /** The id each canvas position answers (array indexed by absolute position, or a function). */
  answer: PerPosition<number>;
  /** Target softmax probability of the answer, in (1/V, 1] (default 0.9); 1 means a logit of
   *  60 above the rest, whose f32 softmax rounds to exactly 1. */
  confidence?: PerPosition<number> | number;
}

/** The logit margin m for which e^m / (e^m + V − 1) = p. */
export function marginFor(p: number, V: number): number {
  if (!(p > 1 / V && p <= 1)) throw new Error(`marginFor: p must be in (1/V, 1], got ${p}`);
  return p === 1 ? 60 : Math.log((p * (V - 1)) / (1 - p));
}

/** Logits that are 0 except the scripted answer (see marginFor). */
export function scriptedSource(opts: ScriptedSourceOptions): LogitsSource {
  const V = opts.vocabSize;
  const conf = opts.confidence ?? 0.9;
  return (visible, pos) => {
    const id = at(opts.answer, pos, visible);
    const p = typeof conf === 'number' ? conf : at(conf, pos, visible);
    if (!(Number.isInteger(id) && id >= 0 && id < V)) throw new Error(`scriptedSource: no answer in [0, V) for position ${pos}: ${id}`);
    const l = new Float32Array(V);
    l[id] = marginFor(p, V);
    return l;
  };
}

/** The greedy confidence a scripted row yields: 1 / Σ_j exp(l_j − max) summed in index order
 *  (the contract's order, so the result is bit-exact), rounded to f32. */
export function scriptedConfidence(p: number, V: number, id = 0): number {
  const m = Math.fround(marginFor(p, V));   // the logit as stored in the Float32Array
  let Z = 0;
  for (let j = 0; j < V; j++) Z += j === id ? 1 : Math.exp(-m);
  return Math.fround(1 / Z);
}

/** Every position answers `answer(pos)` with the same confidence p: all ties, so reveal order
 *  falls to the lowest-index rule. */
export function tiedSource(vocabSize: number, answer: (pos: number) => number, p = 0.5): LogitsSource {
  return scriptedSource({ vocabSize, answer: (pos) => answer(pos), confidence: p });
}

/** Positions in `positions` answer the mask id (with confidence p) while `when(visible)` holds
 *  (default: always); others answer as `inner` does. Exercises docs §5.12 #1. */
export function maskingSource(
  inner: LogitsSource, vocabSize: number, maskId: number, positions: readonly number[],
  p = 0.99, when: (visible: readonly number[]) => boolean = () => true,
): LogitsSource {
  const mask = scriptedSource({ vocabSize, answer: () => maskId, confidence: p });
  return (visible, pos) => (positions.includes(pos) && when(visible) ? mask(visible, pos) : inner(visible, pos));
}

/** Canvas-indexed answers: positions P.. answer gen[0], gen[1], …; others answer `filler`. */
export function answerFor(P: number, gen: readonly number[], filler: number): (pos: number) => number {
  return (pos) => (pos >= P && pos - P < gen.length ? gen[pos - P] : filler);
}

/** Wraps a source so position `pos` gets NaN (or another value) at vocabulary index `index`. */
export function withNaN(inner: LogitsSource, pos: number, index = 0, value = NaN): LogitsSource {
  return (visible, p) => {
    const l = inner(visible, p);
    if (p !== pos) return l;
    const out = Float32Array.from(l);
    out[index] = value;
    return out;
  };
}

export interface Question { visible: number[]; pos: number }

/** Wraps a source and records every question (visible copied). */
export function recording(inner: LogitsSource): { source: LogitsSource; calls: Question[] } {
  const calls: Question[] = [];
  return {
    calls,
    source: (visible, pos) => {
      calls.push({ visible: [...visible], pos });
      return inner(visible, pos);
    },
  };
}
