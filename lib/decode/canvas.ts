// canvas.ts — canvas geometry of block-diffusion decoding (docs §5.2, §5.4, §5.11).
//
// Legend: P prompt length (embedding positions after image splicing), G generation length
// (maxTokens), bs block size, nb number of blocks, T canvas length, nfull whole prompt blocks,
// Lpre = nfull·bs prefilled positions.
//
// Blocks are aligned to absolute position 0 (block k covers [k·bs, (k+1)·bs)), as in training,
// so the prompt's last partial block — the straddling block — is decoded together with the
// first masks: its P − Lpre prompt positions are re-run on every iteration and never masked.
// Positions of the last block beyond P + G are generated too (they interact with the block)
// but are sliced away from the output (stop.ts).
//
// Full-diffusion ablation (§5.11, bs ≥ P + G): one block covering the whole canvas [0, P + G),
// no prefill, the prompt attends to the masks. The same per-block loop runs on it; only the
// schedule differs by route (scheduleLength below).

import { OptionError, OutOfRangeError } from '../errors.js';

/** Which reference model family's decoding rules apply (docs §5.7, §5.11):
 *  'qwen2.5-vl' (DiffusionVL-Qwen2.5VL-3B/7B) or 'ar-lm' (DiffusionVL-Qwen2.5-7B, SigLIP). */
export type DecodeRoute = 'qwen2.5-vl' | 'ar-lm';

export interface CanvasBlock {
  /** Block index k. */
  index: number;
  /** Canvas range [start, end) of the block; end − start = bs except in full diffusion. */
  start: number;
  end: number;
  /** First non-prompt position, max(P, start): where generation and the EOS check begin. */
  genStart: number;
  /** Masked positions when the block starts: end − genStart. */
  masks: number;
}

export interface CanvasGeometry {
  promptLength: number;   // P
  genLength: number;      // G
  blockSize: number;      // bs
  /** bs ≥ P + G: the §5.11 ablation, a single block over [0, P + G). */
  fullDiffusion: boolean;
  numBlocks: number;      // nb = ceil((P + G) / bs), or 1 in full diffusion
  canvasLength: number;   // T = nb·bs, or P + G in full diffusion
  fullPromptBlocks: number; // nfull = floor(P / bs), 0 in full diffusion
  prefillLength: number;  // Lpre = nfull·bs: prefilled (stored) once, if > 0
  /** The blocks the decoding loop runs, k = nfull .. nb − 1, in order. */
  blocks: CanvasBlock[];
  /** The first decoded block when it also holds prompt positions (P − Lpre > 0), else null. */
  straddling: CanvasBlock | null;
}

export function canvasGeometry(promptLength: number, genLength: number, blockSize: number): CanvasGeometry {
  const P = promptLength, G = genLength, bs = blockSize;
  if (!Number.isInteger(P) || P < 0) throw new OutOfRangeError(`canvasGeometry: prompt length must be an integer ≥ 0, got ${P}`);
  if (!Number.isInteger(G) || G < 1) throw new OptionError(`Expected integer ≥ 1 for maxTokens but received ${G} (${typeof G})`, 'maxTokens');
  if (!Number.isInteger(bs) || bs < 1) throw new OptionError(`Expected integer ≥ 1 for blockSize but received ${bs} (${typeof bs})`, 'blockSize');

  const block = (k: number, start: number, end: number): CanvasBlock => {
    const genStart = Math.max(P, start);
    return { index: k, start, end, genStart, masks: end - genStart };
  };

  if (bs >= P + G) {
    const only = block(0, 0, P + G);
    return {
      promptLength: P, genLength: G, blockSize: bs, fullDiffusion: true,
      numBlocks: 1, canvasLength: P + G, fullPromptBlocks: 0, prefillLength: 0,
      blocks: [only], straddling: P > 0 ? only : null,
    };
  }

  const nb = Math.ceil((P + G) / bs);
  const nfull = Math.floor(P / bs);
  const blocks: CanvasBlock[] = [];
  for (let k = nfull; k < nb; k++) blocks.push(block(k, k * bs, (k + 1) * bs));
  return {
    promptLength: P, genLength: G, blockSize: bs, fullDiffusion: false,
    numBlocks: nb, canvasLength: nb * bs, fullPromptBlocks: nfull, prefillLength: nfull * bs,
    blocks, straddling: P > nfull * bs ? blocks[0] : null,
  };
}

/** The length the transfer schedule is computed from (schedule.ts): bs, except in full
 *  diffusion on the AR-LM route, which uses G (§5.11). */
export function scheduleLength(geom: CanvasGeometry, route: DecodeRoute = 'qwen2.5-vl'): number {
  return geom.fullDiffusion && route === 'ar-lm' ? geom.genLength : geom.blockSize;
}
