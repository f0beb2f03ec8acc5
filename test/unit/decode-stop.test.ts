// decode-stop.test.ts — lib/decode/stop.ts: the per-block stop rule over [max(P, start), end)
// and the output slice of docs §5.10 / §5.12 #5.
import { describe, expect, it } from 'vitest';
import { blockHasStop, finishOutput, firstStop } from '../../lib/decode/stop.js';

const EOS = 62, MASK = 63, PAD = 61;

describe('blockHasStop', () => {
  it('finds EOS at every position of a generated block', () => {
    const bs = 4, P = 8;
    for (let off = 0; off < bs; off++) {
      const ids = new Array(16).fill(7);
      ids[8 + off] = EOS;
      expect(blockHasStop(ids, P, { start: 8, end: 12 }, [EOS]), `offset ${off}`).toBe(true);
      expect(blockHasStop(ids, P, { start: 12, end: 16 }, [EOS]), `offset ${off}, next block`).toBe(false);
    }
  });

  it('ignores EOS at prompt positions of the straddling block', () => {
    // P = 6, bs = 4: block 1 = [4, 8) holds prompt 4, 5 and generated 6, 7.
    for (let off = 0; off < 4; off++) {
      const ids = [1, 2, 3, 4, 5, 6, 7, 7];
      ids[4 + off] = EOS;
      expect(blockHasStop(ids, 6, { start: 4, end: 8 }, [EOS]), `offset ${off}`).toBe(4 + off >= 6);
    }
  });

  it('stops on EOS beyond P + G in the last block (it is generated, only sliced away)', () => {
    // P = 2, G = 3, bs = 4: T = 8, last block [4, 8), output ends at 5.
    const ids = [1, 2, 7, 7, 7, 7, EOS, MASK];
    expect(blockHasStop(ids, 2, { start: 4, end: 8 }, [EOS])).toBe(true);
    expect(finishOutput(ids, 2, 3, [EOS])).toEqual({ ids: [7, 7, 7], raw: [7, 7, 7], finishReason: 'length' });
  });

  it('only the configured stop ids stop (pad is not a stop by default)', () => {
    const ids = [1, 1, PAD, 7];
    expect(blockHasStop(ids, 0, { start: 0, end: 4 }, [EOS])).toBe(false);
    expect(blockHasStop(ids, 0, { start: 0, end: 4 }, [EOS, PAD])).toBe(true);
    expect(blockHasStop(ids, 0, { start: 0, end: 4 }, [])).toBe(false);
  });
});

describe('finishOutput', () => {
  it('raw is ids[P : P + G]; ids is raw up to and including the first stop', () => {
    const P = 3;
    //           prompt   | generated: a  b  EOS junk | never generated
    const ids = [1, 2, 3, 10, 11, EOS, 12, MASK, MASK];
    expect(finishOutput(ids, P, 6, [EOS])).toEqual({
      ids: [10, 11, EOS], raw: [10, 11, EOS, 12, MASK, MASK], finishReason: 'stop',
    });
  });

  it('EOS at every output position', () => {
    for (let e = 0; e < 5; e++) {
      const raw = [10, 11, 12, 13, 14];
      raw[e] = EOS;
      const out = finishOutput([9, ...raw], 1, 5, [EOS]);
      expect(out.raw).toEqual(raw);
      expect(out.ids).toEqual(raw.slice(0, e + 1));
      expect(out.finishReason).toBe('stop');
    }
  });

  it('the first of several stop ids wins', () => {
    expect(finishOutput([5, PAD, EOS], 0, 3, [EOS, PAD]).ids).toEqual([5, PAD]);
    expect(firstStop([5, PAD, EOS], 0, 3, [EOS])).toBe(2);
    expect(firstStop([5, PAD, EOS], 0, 2, [EOS])).toBe(-1);
  });
});
