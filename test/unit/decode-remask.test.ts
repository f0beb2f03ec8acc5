// decode-remask.test.ts — lib/decode/remask.ts: static / dynamic selection of docs §5.8 with the
// lowest-index tie rule (§5.12 #8) and the dynamic → static fallback.
import { describe, expect, it } from 'vitest';
import { OptionError, OutOfRangeError } from '../../lib/errors.js';
import { selectReveal } from '../../lib/decode/remask.js';

const chosen = (r: boolean[]) => r.flatMap((x, i) => (x ? [i] : []));

describe('selectReveal static', () => {
  it('reveals the k most confident rows', () => {
    expect(chosen(selectReveal([0.1, 0.9, 0.5, 0.7], 2, 'static', 0.85))).toEqual([1, 3]);
    expect(chosen(selectReveal([0.1, 0.9, 0.5, 0.7], 1, 'static', 0.85))).toEqual([1]);
  });

  it('breaks ties by lowest row index', () => {
    expect(chosen(selectReveal([0.5, 0.5, 0.5, 0.5], 2, 'static', 0.85))).toEqual([0, 1]);
    expect(chosen(selectReveal([0.2, 0.9, 0.5, 0.9, 0.5], 3, 'static', 0.85))).toEqual([1, 2, 3]);
    // exact 1.0 confidences (fp32 softmax saturates) tie too
    expect(chosen(selectReveal([0.3, 1, 1, 1], 2, 'static', 0.85))).toEqual([1, 2]);
  });

  it('k ≥ n reveals all, k = 0 reveals none', () => {
    expect(chosen(selectReveal([0.1, 0.2], 5, 'static', 0.85))).toEqual([0, 1]);
    expect(chosen(selectReveal([0.1, 0.2], 0, 'static', 0.85))).toEqual([]);
    expect(selectReveal([], 3, 'static', 0.85)).toEqual([]);
  });

  it('handles zero confidences (underflowed probabilities) like any value', () => {
    expect(chosen(selectReveal([0, 0, 1e-30], 1, 'static', 0.85))).toEqual([2]);
    expect(chosen(selectReveal([0, 0, 0], 2, 'static', 0.85))).toEqual([0, 1]);
  });
});

describe('selectReveal dynamic', () => {
  it('reveals every row above the threshold when there are at least k, even more than k', () => {
    expect(chosen(selectReveal([0.9, 0.95, 0.99, 0.1], 2, 'dynamic', 0.85))).toEqual([0, 1, 2]);
    expect(chosen(selectReveal([0.9, 0.95, 0.5], 2, 'dynamic', 0.85))).toEqual([0, 1]);
  });

  it('falls back to static top-k when fewer than k are above the threshold', () => {
    // one high row, k = 2: static picks the top 2 (0.9 and 0.6)
    expect(chosen(selectReveal([0.6, 0.9, 0.5, 0.1], 2, 'dynamic', 0.85))).toEqual([0, 1]);
    // none high: static, ties by index
    expect(chosen(selectReveal([0.5, 0.5, 0.5], 1, 'dynamic', 0.85))).toEqual([0]);
  });

  it('is strict, comparing the f32 confidence with the double threshold', () => {
    // 0.85 exactly is not above 0.85 …
    expect(chosen(selectReveal([0.85, 0.85], 1, 'dynamic', 0.85))).toEqual([0]);
    expect(chosen(selectReveal([0.85, 0.85], 0, 'dynamic', 0.85))).toEqual([]);
    // … but fround(0.85) = 0.8500000238… is, so an f32 confidence of "0.85" counts as high.
    const c = Math.fround(0.85);
    expect(chosen(selectReveal([c, c, 0.1], 1, 'dynamic', 0.85))).toEqual([0, 1]);
  });

  it('k = 0 reveals exactly the high rows (|high| ≥ 0 always holds)', () => {
    expect(chosen(selectReveal([0.9, 0.2, 0.99], 0, 'dynamic', 0.85))).toEqual([0, 2]);
    expect(chosen(selectReveal([0.2, 0.3], 0, 'dynamic', 0.85))).toEqual([]);
  });

  it('never reveals fewer rows than static', () => {
    let seed = 12345;
    const next = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    for (let t = 0; t < 500; t++) {
      const n = 1 + Math.floor(next() * 9);
      const conf = Array.from({ length: n }, () => Math.fround(next()));
      const k = Math.floor(next() * 4);
      const d = selectReveal(conf, k, 'dynamic', 0.85);
      const s = selectReveal(conf, k, 'static', 0.85);
      expect(chosen(d).length).toBeGreaterThanOrEqual(chosen(s).length);
    }
  });
});

describe('selectReveal errors', () => {
  it('rejects NaN confidences, bad k and unknown modes', () => {
    expect(() => selectReveal([0.5, NaN], 1, 'static', 0.85)).toThrow(OutOfRangeError);
    expect(() => selectReveal([0.5], -1, 'static', 0.85)).toThrow(OptionError);
    expect(() => selectReveal([0.5], 1.5, 'static', 0.85)).toThrow(OptionError);
    expect(() => selectReveal([0.5], 1, 'greedy' as never, 0.85)).toThrow(/static.*dynamic/);
  });
});
