// remask.ts — which still-masked positions of a block to reveal on one iteration (docs §5.8,
// `low_confidence_static` / `low_confidence_dynamic`; contract shared with the native op
// confidence_remask, see lib/decode/sample.ts).
//
// Legend: n rows = the masked positions of the block in increasing position order; c[r] their
// f32 confidences (sample.ts); k = schedule[i] (schedule.ts).
//
//   static : reveal the min(k, n) rows with the largest c; ties → lowest row index (§5.12 #8:
//            torch.topk leaves tie order unspecified, and fp32 probabilities of exactly 1.0 do
//            occur, so the clean rule must be written down). k = 0 reveals nothing.
//   dynamic: high = { r : c[r] > threshold } (strict; c[r] is an f32 value compared with the
//            double threshold, so fround(0.85) = 0.85000002… counts as high at τ = 0.85).
//            |high| ≥ k → reveal exactly high (possibly more than k, possibly all);
//            otherwise fall back to static with the same k. Dynamic never reveals fewer rows
//            than static would.
//
// Only masked positions are rows, which is how the reference's `conf = −inf where unmasked`
// restricts the choice to masked positions.

import { OptionError, OutOfRangeError } from '../errors.js';

export type RemaskingMode = 'static' | 'dynamic';

/** Rows to reveal: reveal[r] is true for a chosen row. */
export function selectReveal(conf: ArrayLike<number>, k: number, mode: RemaskingMode, threshold: number): boolean[] {
  const n = conf.length;
  if (!Number.isInteger(k) || k < 0) {
    throw new OptionError(`selectReveal: expected integer ≥ 0 for k but received ${k} (${typeof k})`, 'k');
  }
  for (let r = 0; r < n; r++) {
    if (Number.isNaN(conf[r])) throw new OutOfRangeError(`selectReveal: confidence of row ${r} is NaN`);
  }
  if (mode === 'dynamic') {
    const high = new Array<boolean>(n);
    let count = 0;
    for (let r = 0; r < n; r++) {
      high[r] = conf[r] > threshold;
      if (high[r]) count++;
    }
    if (count >= k) return high;
  } else if (mode !== 'static') {
    throw new OptionError(`selectReveal: expected 'static' or 'dynamic' for mode but received ${String(mode)}`, 'remasking');
  }
  return topByConfidence(conf, Math.min(k, n));
}

/** The m rows with the largest confidence, ties broken by lowest row index. */
function topByConfidence(conf: ArrayLike<number>, m: number): boolean[] {
  const n = conf.length;
  const reveal = new Array<boolean>(n).fill(false);
  if (m === 0) return reveal;
  const order = Array.from({ length: n }, (_, r) => r);
  // Array.prototype.sort is stable, and the comparator also orders equal values by index.
  order.sort((a, b) => (conf[b] - conf[a]) || (a - b));
  for (let i = 0; i < m; i++) reveal[order[i]] = true;
  return reveal;
}
