// stop.ts — the stop rule and the output slice (docs §5.10, §5.12 #5 and #9).
//
// Legend: ids the canvas ids [T]; P prompt length; G generation length; a block [start, end).
//
// The stop check runs once per finished (committed) block, over [max(P, start), end): the
// prompt positions of the straddling block never stop decoding, and positions beyond P + G in
// the last block do (they are generated, merely sliced away). The reference checks only EOS
// (151645, `<|im_end|>`); `stopTokens` lets a caller add ids such as 151643 (a documented
// deviation, §5.12 #9), and defaults to the model's EOS.
//
// Output: the reference returns exactly ids[P : P + G] (the raw array: EOS, whatever the model
// wrote after it in the same block, mask ids for blocks never generated). The clean result is
// that array up to and including its first stop id; it is a prefix of raw, so both agree
// wherever the caller stops reading at EOS.

import type { CanvasBlock } from './canvas.js';

/** Index of the first id in ids[from, to) that is a stop token, or −1. */
export function firstStop(ids: ArrayLike<number>, from: number, to: number, stopTokens: readonly number[]): number {
  for (let j = from; j < to; j++) if (stopTokens.includes(ids[j])) return j;
  return -1;
}

/** True when the finished block holds a stop token at a generated position. */
export function blockHasStop(
  ids: ArrayLike<number>, promptLength: number, block: Pick<CanvasBlock, 'start' | 'end'>, stopTokens: readonly number[],
): boolean {
  return firstStop(ids, Math.max(promptLength, block.start), block.end, stopTokens) >= 0;
}

export type FinishReason = 'stop' | 'length';

export interface DecodeOutput {
  /** raw up to and including the first stop token (all of raw when there is none). */
  ids: number[];
  /** ids[P : P + G] of the canvas: exactly G ids, as the reference returns them. */
  raw: number[];
  /** 'stop' when raw holds a stop token, else 'length'. */
  finishReason: FinishReason;
}

export function finishOutput(
  ids: ArrayLike<number>, promptLength: number, genLength: number, stopTokens: readonly number[],
): DecodeOutput {
  const raw = Array.from({ length: genLength }, (_, j) => ids[promptLength + j]);
  const s = firstStop(raw, 0, genLength, stopTokens);
  return s < 0
    ? { ids: raw.slice(), raw, finishReason: 'length' }
    : { ids: raw.slice(0, s + 1), raw, finishReason: 'stop' };
}
