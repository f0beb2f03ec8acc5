// decode-canvas.test.ts — lib/decode/canvas.ts: geometry of docs §5.2, §5.4, §5.11 for prompts
// of 0..3 whole blocks with every remainder.
import { describe, expect, it } from 'vitest';
import { OptionError, OutOfRangeError } from '../../lib/errors.js';
import { canvasGeometry, scheduleLength } from '../../lib/decode/canvas.js';

describe('canvasGeometry', () => {
  it('hand example: P = 3, G = 6, bs = 4', () => {
    // P + G = 9 → nb = 3, T = 12; no whole prompt block, block 0 straddles (3 prompt + 1 mask).
    const g = canvasGeometry(3, 6, 4);
    expect(g).toMatchObject({ fullDiffusion: false, numBlocks: 3, canvasLength: 12, fullPromptBlocks: 0, prefillLength: 0 });
    expect(g.blocks).toEqual([
      { index: 0, start: 0, end: 4, genStart: 3, masks: 1 },
      { index: 1, start: 4, end: 8, genStart: 4, masks: 4 },
      { index: 2, start: 8, end: 12, genStart: 8, masks: 4 },
    ]);
    expect(g.straddling).toBe(g.blocks[0]);
  });

  it('hand example: P = 16, G = 128, bs = 8 (prompt ends on a block boundary)', () => {
    const g = canvasGeometry(16, 128, 8);
    expect(g).toMatchObject({ numBlocks: 18, canvasLength: 144, fullPromptBlocks: 2, prefillLength: 16, straddling: null });
    expect(g.blocks.length).toBe(16);
    expect(g.blocks[0]).toEqual({ index: 2, start: 16, end: 24, genStart: 16, masks: 8 });
  });

  it('invariants for P = 0 .. 3 blocks + every remainder, several bs and G', () => {
    for (const bs of [1, 2, 3, 4, 8]) {
      for (let P = 0; P < 4 * bs; P++) {
        for (const G of [1, 2, bs - 1, bs, bs + 1, 3 * bs + 2, 17].filter((x) => x >= 1)) {
          const g = canvasGeometry(P, G, bs);
          const label = `P=${P} G=${G} bs=${bs}`;
          if (bs >= P + G) {
            // §5.11: one block over [0, P + G), no prefill.
            expect(g.fullDiffusion, label).toBe(true);
            expect(g.canvasLength, label).toBe(P + G);
            expect(g.blocks, label).toEqual([{ index: 0, start: 0, end: P + G, genStart: P, masks: G }]);
            expect(g.prefillLength, label).toBe(0);
            expect(g.straddling, label).toBe(P > 0 ? g.blocks[0] : null);
            continue;
          }
          expect(g.fullDiffusion, label).toBe(false);
          const nb = Math.ceil((P + G) / bs);
          expect(g.numBlocks, label).toBe(nb);
          expect(g.canvasLength, label).toBe(nb * bs);
          expect(g.canvasLength - bs < P + G && g.canvasLength >= P + G, label).toBe(true);
          expect(g.fullPromptBlocks, label).toBe(Math.floor(P / bs));
          expect(g.prefillLength, label).toBe(Math.floor(P / bs) * bs);
          // blocks tile [Lpre, T) in order; masks = positions ≥ P
          let next = g.prefillLength;
          let masks = 0;
          for (const b of g.blocks) {
            expect(b.start, label).toBe(next);
            expect(b.end - b.start, label).toBe(bs);
            expect(b.index, label).toBe(b.start / bs);
            expect(b.genStart, label).toBe(Math.max(P, b.start));
            masks += b.masks;
            next = b.end;
          }
          expect(next, label).toBe(g.canvasLength);
          expect(masks, label).toBe(g.canvasLength - P);
          // straddling block iff the prompt does not end on a block boundary
          if (P % bs === 0) expect(g.straddling, label).toBeNull();
          else {
            expect(g.straddling, label).toBe(g.blocks[0]);
            expect(g.straddling!.masks, label).toBe(bs - (P % bs));
          }
        }
      }
    }
  });

  it('schedule length: bs, except full diffusion on the AR-LM route (G)', () => {
    const full = canvasGeometry(2, 3, 8);
    expect(scheduleLength(full)).toBe(8);
    expect(scheduleLength(full, 'qwen2.5-vl')).toBe(8);
    expect(scheduleLength(full, 'ar-lm')).toBe(3);
    expect(scheduleLength(canvasGeometry(20, 3, 8), 'ar-lm')).toBe(8);
  });

  it('rejects bad sizes with typed errors', () => {
    expect(() => canvasGeometry(-1, 4, 4)).toThrow(OutOfRangeError);
    expect(() => canvasGeometry(3, 0, 4)).toThrow(OptionError);
    expect(() => canvasGeometry(3, 4, 0)).toThrow(/blockSize/);
  });
});
