// decode-schedule.test.ts — lib/decode/schedule.ts against the examples of docs §5.5.
import { describe, expect, it } from 'vitest';
import { OptionError } from '../../lib/errors.js';
import { transferSchedule } from '../../lib/decode/schedule.js';

describe('transferSchedule', () => {
  it('reproduces the docs §5.5 examples (bs 8)', () => {
    expect(transferSchedule(8, 8)).toEqual(new Array(9).fill(1));
    expect(transferSchedule(8, 4)).toEqual([2, 2, 2, 2, 2]);
    expect(transferSchedule(8, 3)).toEqual([3, 3, 2, 2]);
    expect(transferSchedule(8, 10)).toEqual([1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0]);
  });

  it('has S + 1 entries whose first S sum to bs, for every bs, S ≤ 40', () => {
    for (let bs = 1; bs <= 40; bs++) {
      for (let S = 1; S <= 40; S++) {
        const s = transferSchedule(bs, S);
        expect(s.length).toBe(S + 1);
        expect(s.slice(0, S).reduce((a, b) => a + b, 0)).toBe(bs);
        // non-increasing, and the extra entry equals floor(bs / S)
        for (let i = 1; i <= S; i++) expect(s[i]).toBeLessThanOrEqual(s[i - 1]);
        expect(s[S]).toBe(Math.floor(bs / S));
      }
    }
  });

  it('rejects S = 0 (the reference crashes) and non-integers', () => {
    expect(() => transferSchedule(8, 0)).toThrow(OptionError);
    expect(() => transferSchedule(8, 0)).toThrow('Expected integer ≥ 1 for steps but received 0 (number)');
    expect(() => transferSchedule(8, 2.5)).toThrow(/steps/);
    expect(() => transferSchedule(0, 2)).toThrow(/blockSize/);
  });
});
