// schedule.ts — the transfer schedule: how many masks to reveal on each iteration of a block
// (docs §5.5, `get_bd3lm_num_transfer_tokens`).
//
// Legend: bs block size, S steps (denoising iterations planned per block).
//
// The schedule has S + 1 entries because the per-block loop runs S + 1 iterations: the first S
// reveal a whole block (their entries sum to bs), and iteration S is normally the one that finds
// no mask left and commits. Its entry only matters when masks survive (the model sampled the
// mask id, §5.12 #1). It is computed from bs, not from the masks actually present, so the
// straddling block (fewer masks) finishes early. S > bs gives zero entries (harmless, §5.12 #7).

import { OptionError } from '../errors.js';

/** [S + 1] counts: every entry floor(bs/S), the first bs mod S entries one more.
 *  Examples (bs 8): S 8 → [1×9]; S 4 → [2,2,2,2,2]; S 3 → [3,3,2,2]; S 10 → [1×8, 0, 0, 0]. */
export function transferSchedule(blockSize: number, steps: number): number[] {
  if (!Number.isInteger(blockSize) || blockSize < 1) {
    throw new OptionError(`Expected integer ≥ 1 for blockSize but received ${blockSize} (${typeof blockSize})`, 'blockSize');
  }
  if (!Number.isInteger(steps) || steps < 1) {
    // S = 0 crashes the reference (index error), so it is an option error here (§5.12 #7).
    throw new OptionError(`Expected integer ≥ 1 for steps but received ${steps} (${typeof steps})`, 'steps');
  }
  const base = Math.floor(blockSize / steps);
  const extra = blockSize % steps;
  const schedule = new Array<number>(steps + 1).fill(base);
  for (let i = 0; i < extra; i++) schedule[i] += 1;
  return schedule;
}
