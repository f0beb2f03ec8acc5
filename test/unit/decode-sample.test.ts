// decode-sample.test.ts — lib/decode/sample.ts on hand-checked rows: greedy ties, −Inf, NaN /
// +Inf rejected, top-k ties at the threshold, the top-p shift rule, the inverse-CDF draw, and
// the 'modified' / 'raw' confidence of docs §5.7.
import { describe, expect, it } from 'vitest';
import { OptionError, OutOfRangeError } from '../../lib/errors.js';
import { uniform } from '../../lib/decode/rng.js';
import { sampleRow, samplingDistribution } from '../../lib/decode/sample.js';

const f32 = (a: number[]) => Float32Array.from(a);

/** softmax of small hand rows in float64, index-order sum, as the contract states it. */
function softmax(l: number[]): number[] {
  const m = Math.max(...l);
  const e = l.map((x) => Math.exp(x - m));
  let S = 0;
  for (const x of e) S += x;
  return e.map((x) => x / S);
}

// Tolerance for π computed by hand from log-probabilities: log/exp round trips lose a few ulps
// (relative 1e-15 each); 1e-12 absolute is far below any probability that matters here.
const PI_TOL = 12;

describe('greedy (temperature 0)', () => {
  it('picks the first index of the maximum; confidence = fround(1 / Σ exp(l − max))', () => {
    const r = sampleRow(f32([1, 3, 3, 0]), { temperature: 0 });
    expect(r.id).toBe(1);
    expect(r.confidence).toBe(Math.fround(1 / (Math.exp(1 - 3) + Math.exp(0) + Math.exp(0) + Math.exp(0 - 3))));
  });

  it('ignores topK and topP', () => {
    const a = sampleRow(f32([0.5, 2, -1, 1.5]), { temperature: 0 });
    const b = sampleRow(f32([0.5, 2, -1, 1.5]), { temperature: 0, topK: 1, topP: 0.1 });
    expect(b).toEqual(a);
    expect(a.id).toBe(1);
  });

  it('treats −Inf as probability 0', () => {
    expect(sampleRow(f32([-Infinity, 0, 0, -Infinity]), { temperature: 0 })).toEqual({ id: 1, confidence: 0.5 });
    expect(sampleRow(f32([-Infinity, -Infinity, 4]), { temperature: 0 })).toEqual({ id: 2, confidence: 1 });
  });

  it('a saturated row gives confidence exactly 1 (as fp32 softmax does)', () => {
    expect(sampleRow(f32([0, 200, 0]), { temperature: 0 }).confidence).toBe(1);
  });

  it('a single-entry row', () => {
    expect(sampleRow(f32([-3]), { temperature: 0 })).toEqual({ id: 0, confidence: 1 });
  });
});

describe('validation', () => {
  it('rejects NaN, naming row and index', () => {
    expect(() => sampleRow(f32([0, 1, NaN, 2]), { temperature: 0, row: 3 })).toThrow(OutOfRangeError);
    expect(() => sampleRow(f32([0, 1, NaN, 2]), { temperature: 0, row: 3 })).toThrow('logits row 3 contains NaN at index 2');
    expect(() => sampleRow(f32([NaN]), { temperature: 0.7, seed: 1, counter: 0 })).toThrow(/NaN at index 0/);
    expect(() => sampleRow(f32([0, NaN]), { temperature: 1, seed: 1, counter: 0, confidence: 'raw' })).toThrow(OutOfRangeError);
  });

  it('rejects +Inf and all −Inf rows, and empty rows', () => {
    expect(() => sampleRow(f32([0, Infinity]), { temperature: 0 })).toThrow('contains +Inf at index 1');
    expect(() => sampleRow(f32([-Infinity, -Infinity]), { temperature: 0 })).toThrow(/all -Inf/);
    expect(() => sampleRow(f32([-Infinity, -Infinity]), { temperature: 1, seed: 0, counter: 0 })).toThrow(/all -Inf/);
    expect(() => sampleRow(f32([]), { temperature: 0 })).toThrow(OutOfRangeError);
  });

  it('rejects bad temperatures and sampling without seed/counter', () => {
    expect(() => sampleRow(f32([0, 1]), { temperature: -1 })).toThrow(OptionError);
    expect(() => sampleRow(f32([0, 1]), { temperature: NaN })).toThrow(OptionError);
    expect(() => sampleRow(f32([0, 1]), { temperature: 1 })).toThrow(/seed/);
    // l / temperature overflowing to Inf would make NaN probabilities
    expect(() => sampleRow(f32([3e38, 0]), { temperature: 1e-300, seed: 0, counter: 0 })).toThrow(/too small/);
  });
});

describe('samplingDistribution', () => {
  it('temperature scales the logits', () => {
    const pi = samplingDistribution(f32([0, 1, 2]), { temperature: 2 });
    const want = softmax([0, 0.5, 1]);
    for (let j = 0; j < 3; j++) expect(pi[j]).toBeCloseTo(want[j], PI_TOL);
  });

  it('top-k keeps ties at the threshold', () => {
    const l = f32([1, 2, 2, 3, 0]);
    const support = (topK: number) => [...samplingDistribution(l, { temperature: 1, topK })].flatMap((p, j) => (p > 0 ? [j] : []));
    expect(support(1)).toEqual([3]);
    expect(support(2)).toEqual([1, 2, 3]);   // 2nd largest is 2, and both 2s survive
    expect(support(3)).toEqual([1, 2, 3]);
    expect(support(4)).toEqual([0, 1, 2, 3]);
    expect(support(5)).toEqual([0, 1, 2, 3, 4]);   // topK ≥ V is off
    expect(support(0)).toEqual([0, 1, 2, 3, 4]);   // 0 is off
    const pi = samplingDistribution(l, { temperature: 1, topK: 2 });
    const want = softmax([2, 2, 3]);
    expect(pi[1]).toBeCloseTo(want[0], PI_TOL);
    expect(pi[3]).toBeCloseTo(want[2], PI_TOL);
  });

  it('top-p: shift rule — a token goes once the tokens before it already exceed topP', () => {
    // p = [0.2, 0.5, 0.3] (unsorted on purpose): visiting order 1, 2, 0; cum before each: 0, 0.5, 0.8.
    const l = f32([Math.log(0.2), Math.log(0.5), Math.log(0.3)]);
    const pi = (topP: number) => [...samplingDistribution(l, { temperature: 1, topP })];
    // topP 0.6: 1 kept (first), 2 kept (0.5 ≤ 0.6), 0 removed (0.8 > 0.6)
    // (the logits are f32, so the probabilities are 0.2/0.5/0.3 only to ~1e-8: expected values
    // come from the stored logits; the survivor decisions have margins of 0.05 and more)
    let got = pi(0.6);
    const two = softmax([l[1], l[2]]);
    expect(got[0]).toBe(0);
    expect(got[1]).toBeCloseTo(two[0], PI_TOL);
    expect(got[2]).toBeCloseTo(two[1], PI_TOL);
    // topP 0.4: the top token alone (0.5 > 0.4 removes the rest)
    expect(pi(0.4)).toEqual([0, 1, 0]);
    // a tiny topP still keeps the top token
    expect(pi(1e-9)).toEqual([0, 1, 0]);
    // topP 0.85: 0.8 ≤ 0.85, so all three survive
    got = pi(0.85);
    const all = softmax([...l]);
    for (let j = 0; j < 3; j++) expect(got[j]).toBeCloseTo(all[j], PI_TOL);
  });

  it('top-p visits ties lowest index first', () => {
    // four equal tokens, p = 0.25 each; topP 0.3: visits 0 (cum 0), 1 (0.25 ≤ 0.3), 2 removed (0.5), 3 removed.
    expect([...samplingDistribution(f32([0, 0, 0, 0]), { temperature: 1, topP: 0.3 })]).toEqual([0.5, 0.5, 0, 0]);
  });

  it('top-k then top-p, with −Inf entries sorted last', () => {
    // after top-k 3: z = [−Inf, 2, 2, 3, −Inf] → p ≈ [0, .212, .212, .576, 0];
    // topP 0.7: visit 3 (cum 0), 1 (0.576 ≤ 0.7 kept), 2 (0.788 > 0.7 removed).
    const pi = samplingDistribution(f32([1, 2, 2, 3, -Infinity]), { temperature: 1, topK: 3, topP: 0.7 });
    const want = softmax([2, 3]);
    expect(pi[0]).toBe(0);
    expect(pi[1]).toBeCloseTo(want[0], PI_TOL);
    expect(pi[2]).toBe(0);
    expect(pi[3]).toBeCloseTo(want[1], PI_TOL);
    expect(pi[4]).toBe(0);
  });
});

describe('sampling draw', () => {
  const l = f32([0.3, -1.2, 2.0, 0.9, -Infinity, 1.1, 0.0]);

  it('token = first j with cumulative π > uniform(seed, counter); confidences per mode', () => {
    const opts = { temperature: 0.8, topK: 5, topP: 0.95 };
    const pi = samplingDistribution(l, opts);
    const raw = softmax([...l]);
    for (let counter = 0; counter < 300; counter++) {
      const u = uniform(99, counter);
      let want = -1, c = 0;
      for (let j = 0; j < pi.length; j++) { c += pi[j]; if (c > u) { want = j; break; } }
      const m = sampleRow(l, { ...opts, seed: 99, counter });
      expect(m.id, `counter ${counter}`).toBe(want);
      expect(pi[m.id]).toBeGreaterThan(0);
      expect(m.confidence).toBe(Math.fround(pi[m.id]));
      const r = sampleRow(l, { ...opts, seed: 99, counter, confidence: 'raw' });
      expect(r.id).toBe(want);
      // 'raw': softmax of the unscaled, unfiltered logits (same index-order sum as softmax() above)
      expect(r.confidence).toBe(Math.fround(raw[want]));
    }
  });

  it('is deterministic in (seed, counter) and varies with them', () => {
    const a = sampleRow(l, { temperature: 1, seed: 5, counter: 17 });
    expect(sampleRow(l, { temperature: 1, seed: 5, counter: 17 })).toEqual(a);
    const ids = new Set<number>();
    for (let c = 0; c < 50; c++) ids.add(sampleRow(l, { temperature: 1, seed: 5, counter: c }).id);
    expect(ids.size).toBeGreaterThan(2);
    expect(ids.has(4)).toBe(false);   // −Inf is never drawn
  });

  it('draw frequencies follow π', () => {
    const n = 20000;
    const opts = { temperature: 1.3, topP: 0.9 };
    const pi = samplingDistribution(l, opts);
    const counts = new Array(l.length).fill(0);
    for (let c = 0; c < n; c++) counts[sampleRow(l, { ...opts, seed: 3, counter: c }).id]++;
    for (let j = 0; j < l.length; j++) {
      // binomial sd = sqrt(n π (1 − π)); 6 sd (plus 1 count) is a bound no correct draw misses
      const sd = Math.sqrt(n * pi[j] * (1 - pi[j]));
      expect(Math.abs(counts[j] - n * pi[j]), `token ${j}`).toBeLessThanOrEqual(6 * sd + 1);
    }
  });
});
