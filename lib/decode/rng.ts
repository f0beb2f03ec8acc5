// rng.ts — the counter-based random numbers of the sampling contract (docs §5.7; contract in
// csrc/cpu/ops/sample.cpp and lib/decode/sample.ts).
//
// Why counter-based: the CPU op, the CUDA op and this TypeScript reference must draw the same
// uniform for the same (seed, position, iteration) whatever order rows are processed in, so each
// draw is a pure function uniform(seed, counter) instead of the next value of a stream.
//
//   mix(z)  = SplitMix64 finaliser on uint64 (all arithmetic mod 2^64):
//             z += 0x9E3779B97F4A7C15; z = (z ^ z>>30)·0xBF58476D1CE4E5B9;
//             z = (z ^ z>>27)·0x94D049BB133111EB; return z ^ z>>31
//   uniform(seed, counter) = (mix(seed XOR mix(counter)) >> 11) · 2^−53   ∈ [0, 1)
//   counter = position · 64 + iteration   (position: absolute canvas index; iteration: 0..S)
//
// seed and counter are integers in [0, 2^53) so they travel through JS numbers exactly. The
// ·64 packing keeps counters distinct while iteration < 64, which always holds for blocks of
// ≤ 64 positions (every mask is revealed by iteration bs − 1, unless the model samples the mask
// id, §5.12 #1). Only S ≥ 64 with a block of more than 64 masks (full-diffusion ablation, huge
// bs) can reuse a counter: position j at iteration 64 + t draws the same u as position j + 1 at
// iteration t — correlated draws, not a wrong result, and identical on every backend.
// BigInt keeps this slow but obviously right; it is the reference, not the hot path.

import { OutOfRangeError } from '../errors.js';

const MASK64 = (1n << 64n) - 1n;
const GOLDEN = 0x9e3779b97f4a7c15n;
const MUL1 = 0xbf58476d1ce4e5b9n;
const MUL2 = 0x94d049bb133111ebn;
const TWO_POW_53 = 2 ** 53;

/** SplitMix64 finaliser: a bijection on uint64 with good avalanche. Equals the first output of
 *  a SplitMix64 stream whose state is `z`. */
export function mix64(z: bigint): bigint {
  z = (z + GOLDEN) & MASK64;
  z = ((z ^ (z >> 30n)) * MUL1) & MASK64;
  z = ((z ^ (z >> 27n)) * MUL2) & MASK64;
  return z ^ (z >> 31n);
}

function checkWord(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 0 || v >= TWO_POW_53) {
    throw new OutOfRangeError(`uniform: ${name} must be an integer in [0, 2^53), got ${v}`);
  }
}

/** uniform(seed, counter): a double in [0, 1) with 53 random bits; a pure function of its
 *  arguments. */
export function uniform(seed: number, counter: number): number {
  checkWord('seed', seed);
  checkWord('counter', counter);
  const r = mix64(BigInt(seed) ^ mix64(BigInt(counter)));
  return Number(r >> 11n) / TWO_POW_53;
}

/** Counter of the draw for canvas position `position` at iteration `iteration` of its block. */
export function sampleCounter(position: number, iteration: number): number {
  return position * 64 + iteration;
}
