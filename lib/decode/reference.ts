// reference.ts — the PLAIN REFERENCE DECODER: a direct, slow transcription of the reference's
// `generate_with_bd3lm` (docs §5) that reads logits from a function instead of a model. It is
// the yardstick for lib/decode/runner.ts: on the same logits source and options, the runner's
// ids must equal these. Keep it plain; speed lives in the runner.
//
// Legend: P prompt length, G = maxTokens, bs block size, S steps, T canvas length, V vocab,
// k block index, i iteration (0..S), j canvas position.
//
// Transcription of §5.6 with the clean choices of §5.12:
//   prefill [0, Lpre) if Lpre > 0 (one forward)                                          §5.4
//   for each block k = nfull .. nb − 1:
//     for i in 0 .. S:                                  (S + 1 iterations, schedule.ts)
//       masked positions of the block = the explicit booleans (not embedding equality);
//       none left → commit (one forward that stores K/V) and leave the loop
//       denoise (one forward): for every masked j, logits = source(ids[0, blockEnd), j),
//         (x0, conf) = sampleRow(logits, counter = j·64 + i)                           §5.7
//       reveal = selectReveal(conf of masked rows, schedule[i])                         §5.8
//       ids[j] = x0 for revealed j; j stays masked if x0 is the mask id                 #1
//     masks left after S + 1 iterations → commit anyway (the reference silently skips) #2
//     stop if a stop token lies in [max(P, start), end)                                §5.10
//   output ids[P, P + G), trimmed after the first stop token                            #5
// Never: the prompt argmax (#3, dead code); logits for unmasked positions or on the commit
// pass (#6, discarded by the reference). Ties: lowest index (#8).
//
// nfe counts forwards as the reference runs them: prefill 1 (if Lpre > 0), each denoising
// iteration 1, each commit 1.

import { OutOfRangeError, ShapeError } from '../errors.js';
import { canvasGeometry, scheduleLength, type DecodeRoute } from './canvas.js';
import { validateDecodeOptions, type DecodeLimits, type DecodeOptions, type ResolvedDecodeOptions } from './options.js';
import { selectReveal } from './remask.js';
import { sampleCounter } from './rng.js';
import { confidenceModeOf, sampleRow } from './sample.js';
import { transferSchedule } from './schedule.js';
import { blockHasStop, finishOutput, type FinishReason } from './stop.js';

/** Logits [V] for canvas position `pos`, given what a block-causal forward over the block
 *  containing `pos` sees: `visible` = canvas ids [0, blockEnd), masked positions holding the
 *  mask id. A pure function of its arguments (any decoder asking the same question gets the
 *  same answer); it must not keep or modify `visible`. */
export type LogitsSource = (visible: readonly number[], pos: number) => Float32Array;

/** The model facts the decoder needs (docs §5.1). */
export interface DecodeModel extends Omit<DecodeLimits, 'promptLength'> {
  /** MASK id (151671 for the released models). */
  maskId: number;
  /** Sampling confidence and full-diffusion schedule rules (default 'qwen2.5-vl'). */
  route?: DecodeRoute;
}

/** How one generated position was revealed. */
export interface RevealRecord {
  /** Block index k. */
  block: number;
  /** Iteration i (0..S) of that block on which the token was (last) revealed. */
  iteration: number;
  /** Its f32 confidence at that iteration. */
  confidence: number;
}

export interface ReferenceResult {
  /** Generated ids up to and including the first stop token. */
  ids: number[];
  /** ids[P : P + G] of the canvas, exactly G ids, as the reference returns them. */
  raw: number[];
  finishReason: FinishReason;
  /** Per output position (length G): how it was revealed, or null if its block never ran.
   *  A position the model kept filling with the mask id records its last reveal. */
  steps: (RevealRecord | null)[];
  /** Forward passes: prefill (1 if Lpre > 0) + denoising iterations + commits. */
  nfe: number;
  /** Denoising iterations per decoded block, in block order. */
  blockIterations: number[];
  /** The resolved options the decode ran with (seed included, for reproduction). */
  options: ResolvedDecodeOptions;
}

export function referenceDecode(
  promptIds: readonly number[], logitsFn: LogitsSource, options: DecodeOptions | undefined, model: DecodeModel,
): ReferenceResult {
  const P = promptIds.length;
  for (const [j, id] of promptIds.entries()) {
    if (!Number.isInteger(id) || id < 0 || (model.vocabSize !== undefined && id >= model.vocabSize)) {
      throw new OutOfRangeError(`referenceDecode: prompt id at position ${j} is ${id}, expected an integer in [0, ${model.vocabSize ?? '∞'})`);
    }
  }
  const o = validateDecodeOptions(options, { ...model, promptLength: P });
  const G = o.maxTokens;
  const geom = canvasGeometry(P, G, o.blockSize);
  const schedule = transferSchedule(scheduleLength(geom, model.route), o.steps);
  const confidenceMode = confidenceModeOf(model.route);
  const signal = o.signal;

  // Canvas: prompt ids, then the mask id; explicit masked flags (#1), prompt never masked.
  const T = geom.canvasLength;
  const ids: number[] = new Array<number>(T).fill(model.maskId);
  const masked: boolean[] = new Array<boolean>(T).fill(true);
  for (let j = 0; j < P; j++) { ids[j] = promptIds[j]; masked[j] = false; }
  const revealed: (RevealRecord | null)[] = new Array<RevealRecord | null>(T).fill(null);

  let nfe = 0;
  let V = model.vocabSize;
  const blockIterations: number[] = [];

  if (geom.prefillLength > 0) nfe++;   // prefill [0, Lpre), stores K/V (§5.4)

  for (const block of geom.blocks) {
    let committed = false;
    let iterations = 0;
    for (let i = 0; i <= o.steps; i++) {
      if (signal?.aborted) throw signal.reason;
      const rows: number[] = [];
      for (let j = block.start; j < block.end; j++) if (masked[j]) rows.push(j);
      if (rows.length === 0) { nfe++; committed = true; break; }   // commit pass

      nfe++;   // denoising pass (no K/V stored)
      iterations++;
      const visible = Object.freeze(ids.slice(0, block.end));
      const x0: number[] = [];
      const conf: number[] = [];
      for (const [r, j] of rows.entries()) {
        const logits = logitsFn(visible, j);
        if (V === undefined) V = logits.length;
        if (logits.length !== V) {
          throw new ShapeError(`referenceDecode: logits source returned ${logits.length} logits for position ${j}, expected V = ${V}`);
        }
        const s = sampleRow(logits, {
          temperature: o.temperature, topK: o.topK, topP: o.topP, confidence: confidenceMode,
          seed: o.seed, counter: sampleCounter(j, i), row: r,
        });
        x0.push(s.id);
        conf.push(s.confidence);
      }

      const reveal = selectReveal(conf, schedule[i], o.remasking, o.threshold);
      for (const [r, j] of rows.entries()) {
        if (!reveal[r]) continue;
        ids[j] = x0[r];
        masked[j] = x0[r] === model.maskId;   // #1: a revealed mask id is still a mask
        revealed[j] = { block: block.index, iteration: i, confidence: conf[r] };
      }
    }
    if (!committed) nfe++;   // #2: masks survived S + 1 iterations; commit anyway
    blockIterations.push(iterations);
    if (blockHasStop(ids, P, block, o.stopTokens)) break;
  }

  const out = finishOutput(ids, P, G, o.stopTokens);
  return {
    ...out,
    steps: revealed.slice(P, P + G),
    nfe,
    blockIterations,
    options: o,
  };
}
