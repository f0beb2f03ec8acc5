// decode-rng.test.ts — lib/decode/rng.ts: SplitMix64 finaliser and the counter-based uniform.
import { describe, expect, it } from 'vitest';
import { OutOfRangeError } from '../../lib/errors.js';
import { mix64, sampleCounter, uniform } from '../../lib/decode/rng.js';

describe('rng', () => {
  it('mix64 equals the published SplitMix64 stream seeded with 0', () => {
    // mix64(state) is the first output of a SplitMix64 generator with that state, so
    // mix64(n·golden) is output n + 1 of the seed-0 stream: e220a8397b1dcdaf, 6e789e6aa1b965f4, 06c45d188009454f.
    const golden = 0x9e3779b97f4a7c15n;
    expect(mix64(0n)).toBe(0xe220a8397b1dcdafn);
    expect(mix64(golden)).toBe(0x6e789e6aa1b965f4n);
    expect(mix64((2n * golden) & ((1n << 64n) - 1n))).toBe(0x06c45d188009454fn);
  });

  it('uniform matches an independent Python transcription of the contract', () => {
    // Values from: (mix(s ^ mix(c)) >> 11) / 2**53 in Python integers (exact).
    expect(uniform(0, 0)).toBe(0.6524484863740322);
    expect(uniform(42, 7)).toBe(0.4323047487697754);
    expect(uniform(2 ** 53 - 1, 2 ** 53 - 1)).toBe(0.09161639954553791);
    expect(uniform(12345, sampleCounter(3, 2))).toBe(0.6956462579212523);
  });

  it('is in [0, 1) and roughly uniform', () => {
    const bins = new Array(10).fill(0);
    const n = 20000;
    for (let c = 0; c < n; c++) {
      const u = uniform(7, c);
      expect(u >= 0 && u < 1).toBe(true);
      bins[Math.floor(u * 10)]++;
    }
    // Each bin ~ Binomial(20000, 0.1): sd ≈ 42; 6 sd keeps the test deterministic-safe.
    for (const b of bins) expect(Math.abs(b - n / 10)).toBeLessThan(6 * 42);
  });

  it('counter = position·64 + iteration', () => {
    expect(sampleCounter(0, 0)).toBe(0);
    expect(sampleCounter(5, 3)).toBe(323);
  });

  it('rejects seeds and counters outside [0, 2^53) or non-integers', () => {
    expect(() => uniform(-1, 0)).toThrow(OutOfRangeError);
    expect(() => uniform(0, 2 ** 53)).toThrow(/counter/);
    expect(() => uniform(0.5, 0)).toThrow(/seed/);
    expect(() => uniform(NaN, 0)).toThrow(OutOfRangeError);
  });
});
