// runner.ts — the block decoder that drives a real model through the native op set: docs §5
// with the output-preserving shortcuts of §5.12, each switchable so tests can compare it with
// lib/decode/reference.ts (the plain transcription) on the same logits.
//
// Legend: P prompt length, G = maxTokens, bs block size, S steps, L committed cache length.
//
// Per block: denoising iterations (one step: a forward over the block, logits only for the
// masked rows, confidence + remask in one native op, a single small read back: ids,
// confidences, reveal flags), then a commit forward that stores the clean block's K/V. A step
// goes through a Stepper: the model's batch scheduler (lib/model/scheduler.ts: the steps of
// every request in flight share forwards), or forwarderStepper over a plain forwarder (tests).
// Shortcuts:
//   - no prompt argmax (#3), no logits for unmasked rows (#6), no lm_head on the commit (#6)
//   - mergeCommit: the commit of block k rides in the first denoising forward of block k+1
//     (one forward of 2·bs tokens; the block mask makes block k's rows see only [0, L + bs),
//     exactly the standalone commit, and block k+1's rows see block k's clean K/V)
//   - the last block is never committed (nothing would read its K/V)
// Every forward writes its K/V at its own positions; only a commit advances L (in this file).
import { OptionError, OutOfRangeError } from '../errors.js';
import type { ConfidenceRemaskOptions, Queue, Tensor } from '../native/index.js';
import { canvasGeometry, scheduleLength, type CanvasBlock, type DecodeRoute } from './canvas.js';
import { validateDecodeOptions, type DecodeOptions, type ResolvedDecodeOptions } from './options.js';
import type { DecodeModel, RevealRecord } from './reference.js';
import { sampleCounter } from './rng.js';
import { transferSchedule } from './schedule.js';
import { blockHasStop, finishOutput, type FinishReason } from './stop.js';

/** One step of a decode: a forward over `ids` at [pos0, pos0 + n) and, for `rows`, the remask. */
export interface StepRequest {
  ids: Int32Array;
  pos0: number;
  /** Block size of the block mask; absent: the causal mask (AR). */
  blockSize?: number;
  /** Rows (indices into ids) to remask; empty: K/V only (a prefill or a commit). */
  rows: readonly number[];
  /** The prompt's prefill (may run in chunks beside other requests' steps). */
  prefill?: boolean;
  /** Before the request's first block (or token) is out: a scheduler may run it first. */
  first?: boolean;
  remask?: ConfidenceRemaskOptions;
}

/** Per remasked row: the token, its confidence and whether it is revealed now. */
export interface StepResult {
  ids: Int32Array;
  conf: Float32Array;
  reveal: Int32Array;
}

/** What the decoders need from a model: one step at a time, awaited. */
export interface Stepper {
  step(s: StepRequest): Promise<StepResult | null>;
}

/** A stepper over a forwarder that returns logits: forward, remask, one read (tests, single runs). */
export function forwarderStepper(fw: BlockForwarder | CausalForwarder): Stepper {
  return {
    async step(s) {
      const q = fw.queue;
      const logits = s.blockSize !== undefined
        ? (fw as BlockForwarder).forwardBlock(s.ids, s.pos0, s.blockSize, s.rows)
        : (fw as CausalForwarder).forwardCausal(s.ids, s.pos0, s.rows);
      if (!logits || s.rows.length === 0) {
        logits?.dispose();
        await q.sync();
        return null;
      }
      try {
        return (await q.remaskRead(logits, [{ row0: 0, rows: s.rows.length, options: s.remask! }]))[0];
      } finally {
        logits.dispose();
      }
    },
  };
}

/** What forwarderStepper needs for the block decoder: one forward with the block mask. */
export interface BlockForwarder {
  queue: Queue;
  /**
   * Enqueues a forward over `ids` at positions [pos0, pos0 + ids.length) with the block-causal
   * mask (block size bs) against the cache below pos0, storing K/V at those positions; returns
   * logits f32 [rows.length, V] for the given rows (indices into ids) or null when rows is empty.
   * `embedRows`/`embeds` splice image features (prefill only).
   */
  forwardBlock(ids: Int32Array, pos0: number, blockSize: number, rows: readonly number[]): Tensor | null;
}

export interface RunnerFlags {
  /** Merge each commit into the next block's first denoising forward (default true). */
  mergeCommit?: boolean;
  /**
   * Merge the prompt's prefill into the first block's first denoising forward (default true):
   * one forward over [L0, first block's end) with the block mask, K/V for the prompt's rows and
   * logits for the block's masked rows — exactly the prefill and the step run apart (the block
   * mask keeps the prompt's rows from seeing the block; the block's rows see the prompt's K/V
   * from the cache either way), one forward and one round trip fewer per request.
   */
  mergePrefill?: boolean;
  /** Emit a `step` event after every denoising iteration (canvas snapshot). */
  stepEvents?: boolean;
  /**
   * L0: the cache already holds the clean K/V of prompt positions [0, L0) (a chat session's
   * earlier turns, a prefix-cache hit); only [L0, …) is prefilled. Diffusion: a multiple of
   * the block size, at most the prefill length (whole blocks only, as training aligns them);
   * AR: below P (the last prompt token is always run, its logits pick the first token).
   */
  cachedLength?: number;
  /**
   * Asked after each `block` event has been consumed: true ends decoding there, as a stop token
   * would (finishReason 'stop'). The caller's stop strings use it.
   */
  stopRequested?: () => boolean;
}

export interface StepEvent {
  type: 'step';
  block: number;
  iteration: number;
  /** Canvas position of the block's first cell (ids[0]). */
  start: number;
  /** Canvas ids of the current block, the mask id where still masked. */
  ids: number[];
  masked: boolean[];
  /** Canvas positions revealed by this iteration, and the confidence of each (§5.7). */
  revealed: number[];
  confidence: number[];
}

export interface BlockEvent {
  type: 'block';
  block: number;
  /** The block's generated ids (prompt positions of a straddling block excluded), final. */
  ids: number[];
  /** Stopped in this block (a stop token appeared). */
  stop: boolean;
}

export interface DecodeStats {
  promptTokens: number;
  /** Prompt positions whose K/V came from the cache (RunnerFlags.cachedLength), not computed. */
  cachedTokens: number;
  /** Prompt positions run by the prefill forward (0 when everything was cached or P < bs). */
  prefillTokens: number;
  generatedTokens: number;
  /** Forward passes (NFE): prefill, denoising iterations and commits as run (a prefill merged
   *  with the first denoising iteration counts once). */
  forwards: number;
  /** Generated tokens per forward. */
  tokensPerForward: number;
  /** Wall time of the prefill forward (with RunnerFlags.mergePrefill: the first denoising
   *  iteration too, which rides in it). */
  prefillMs: number;
  /** Generated tokens the prefill forward already produced: AR's first token; diffusion's
   *  tokens revealed by a merged first iteration (RunnerFlags.mergePrefill); else 0. */
  prefillGenerated: number;
  /** Decode wall time (after prefill) per forward. */
  msPerForward: number;
  /** Generated tokens per second of decode wall time (prefill excluded; diffusion: without
   *  prefillGenerated, which came before that time). */
  tokensPerSecond: number;
  totalMs: number;
  /** Per generated token: the iteration at which it was revealed and its confidence. */
  steps: (RevealRecord | null)[];
  /** Denoising iterations per decoded block. */
  blockIterations: number[];
  /** JS time of the decode loop after the prefill, excluding waits for the native side and
   *  the consumer (building inputs, the replay calls, remask enqueue, bookkeeping): the host
   *  work that sits between forwards. */
  hostMs: number;
}

/** Accumulates the JS time of a loop between its waits (DecodeStats.hostMs). */
class HostClock {
  ms = 0;
  private t = -1;
  start(): void { this.t = performance.now(); }
  /** Before an await or a yield. */
  pause(): void { if (this.t >= 0) this.ms += performance.now() - this.t; this.t = -1; }
}

export interface DecodeResult {
  ids: number[];
  raw: number[];
  finishReason: FinishReason;
  /**
   * Canvas positions [0, committedLength) whose clean K/V the cache holds when decoding ends
   * (prompt + committed blocks; AR: every token fed): what a next turn may reuse.
   */
  committedLength: number;
  stats: DecodeStats;
  options: ResolvedDecodeOptions;
}

export interface DoneEvent { type: 'done'; result: DecodeResult }
export type DecodeEvent = StepEvent | BlockEvent | DoneEvent;

/** −200: an image placeholder the model's forwarder replaces with feature rows (docs §3.6). */
const IMAGE_SENTINEL = -200;

/** Prompt ids must be token rows of the model (or image sentinels): a typed error before any work. */
function checkPromptIds(ids: readonly number[], vocabSize: number | undefined): void {
  for (let j = 0; j < ids.length; j++) {
    const id = ids[j];
    if (id === IMAGE_SENTINEL) continue;
    if (!Number.isInteger(id) || id < 0 || (vocabSize !== undefined && id >= vocabSize)) {
      throw new OutOfRangeError(`prompt id ${id} at position ${j} is outside the model's ${vocabSize ?? '?'} embedding rows`);
    }
  }
}

/** Block diffusion decoding (docs §5), as an async generator of events ending with `done`. */
export async function* runBlockDiffusion(
  fw: Stepper, promptIds: readonly number[], options: DecodeOptions | undefined, model: DecodeModel,
  flags: RunnerFlags = {},
): AsyncGenerator<DecodeEvent, DecodeResult> {
  const t0 = performance.now();
  const P = promptIds.length;
  const o = validateDecodeOptions(options, { ...model, promptLength: P });
  checkPromptIds(promptIds, model.vocabSize);
  const G = o.maxTokens, bs = o.blockSize;
  const geom = canvasGeometry(P, G, bs);
  const route: DecodeRoute = model.route ?? 'qwen2.5-vl';
  const schedule = transferSchedule(scheduleLength(geom, route), o.steps);
  const confidence = route === 'ar-lm' ? 'raw' : 'modified';
  const merge = flags.mergeCommit ?? true;
  const signal = o.signal;
  const checkAbort = () => { if (signal?.aborted) throw signal.reason; };

  const L0 = flags.cachedLength ?? 0;
  if (!Number.isInteger(L0) || L0 < 0 || L0 % bs !== 0 || L0 > geom.prefillLength) {
    throw new OptionError(`cachedLength ${L0} must be a multiple of the block size ${bs} within the prefill length ${geom.prefillLength}`, 'cachedLength');
  }

  const T = geom.canvasLength;
  const ids = new Int32Array(T).fill(model.maskId);
  const masked = new Uint8Array(T).fill(1);
  for (let j = 0; j < P; j++) { ids[j] = promptIds[j]; masked[j] = 0; }
  const revealed: (RevealRecord | null)[] = new Array(T).fill(null);
  const blockIterations: number[] = [];
  let forwards = 0;

  // Prefill the whole prompt blocks (§5.4), those the cache does not hold already.
  checkAbort();
  const prefillTokens = geom.prefillLength - L0;
  // Merged into the first forward of the first block (the prompt's blocks end where it starts),
  // unless there is no block to decode: the prefill alone still fills the cache (sessions).
  const mergePrefill = prefillTokens > 0 && (flags.mergePrefill ?? true) && geom.blocks.length > 0;
  let prefillPending = mergePrefill;   // until the first forward has run it
  if (prefillTokens > 0 && !mergePrefill) {
    await fw.step({ ids: ids.subarray(L0, geom.prefillLength), pos0: L0, blockSize: bs, rows: [], prefill: true, first: true });
    forwards++;
  }
  let committedLength = geom.prefillLength;
  let tPrefill = performance.now();
  const host = new HostClock();
  if (!mergePrefill) host.start();

  let pending: CanvasBlock | null = null;   // finished block whose commit is deferred (merge)
  let stopped = false;
  let stopRequested = 0;   // > 0: the caller ended decoding after the block ending there
  for (const block of geom.blocks) {
    let iterations = 0;
    for (let i = 0; i <= o.steps; i++) {
      checkAbort();
      const rows: number[] = [];
      for (let j = block.start; j < block.end; j++) if (masked[j]) rows.push(j);
      if (rows.length === 0) break;
      iterations++;

      // One forward: this block, or the deferred commit of the previous one plus this block, or
      // the prompt's prefill plus this (first) block.
      const merged = prefillPending;
      const start = merged ? L0 : pending ? pending.start : block.start;
      pending = null;
      prefillPending = false;
      const remask: ConfidenceRemaskOptions = {
        temperature: o.temperature, topK: o.topK, topP: o.topP, seed: o.seed,
        counters: o.temperature > 0 ? rows.map((j) => sampleCounter(j, i)) : undefined,
        k: schedule[i], mode: o.remasking, threshold: o.threshold, confidence,
      };
      if (!merged) host.pause();
      const res = (await fw.step({
        ids: ids.slice(start, block.end), pos0: start, blockSize: bs, rows: rows.map((j) => j - start), remask,
        first: block === geom.blocks[0], ...(merged ? { prefill: true } : {}),
      }))!;
      if (merged) tPrefill = performance.now();
      host.start();
      forwards++;
      const x0 = res.ids, conf = res.conf, reveal = res.reveal;
      const newly: number[] = [];
      for (let r = 0; r < rows.length; r++) {
        if (!reveal[r]) continue;
        const j = rows[r];
        ids[j] = x0[r];
        masked[j] = x0[r] === model.maskId ? 1 : 0;   // §5.12 #1
        revealed[j] = { block: block.index, iteration: i, confidence: conf[r] };
        newly.push(j);
      }
      if (flags.stepEvents) {
        host.pause();
        yield {
          type: 'step', block: block.index, iteration: i, start: block.start,
          ids: Array.from(ids.subarray(block.start, block.end)),
          masked: Array.from(masked.subarray(block.start, block.end), (m) => m === 1),
          revealed: newly, confidence: newly.map((j) => revealed[j]!.confidence),
        };
        host.start();
      }
    }
    blockIterations.push(iterations);
    stopped = blockHasStop(ids, P, block, o.stopTokens);
    host.pause();
    yield { type: 'block', block: block.index, ids: Array.from(ids.subarray(block.genStart, Math.min(block.end, P + G))), stop: stopped };
    host.start();
    const requested = !stopped && (flags.stopRequested?.() ?? false);
    if (stopped || requested || block === geom.blocks[geom.blocks.length - 1]) {
      if (requested) stopRequested = Math.min(block.end, P + G);
      break;
    }
    committedLength = block.end;   // its commit runs now, or in the next forward (merge)
    // Commit (§5.6): store the clean block's K/V; deferred into the next forward when merging.
    if (merge) {
      pending = block;
    } else {
      checkAbort();
      host.pause();
      await fw.step({ ids: ids.slice(block.start, block.end), pos0: block.start, blockSize: bs, rows: [] });
      host.start();
      forwards++;
    }
  }

  host.pause();
  const out = finishOutput(ids, P, G, o.stopTokens);
  if (stopRequested > 0) {
    // Ended by the caller (stop strings): the output is what was decoded, nothing after.
    out.ids = out.ids.slice(0, stopRequested - P);
    out.finishReason = 'stop';
  }
  const tEnd = performance.now();
  const generated = out.ids.length;
  const decodeMs = tEnd - tPrefill;
  const decodeForwards = forwards - (prefillTokens > 0 ? 1 : 0);
  // Returned tokens the merged prefill forward revealed for good (first block, iteration 0):
  // that forward is always the first block's first iteration, which always has masked rows.
  const first = geom.blocks[0];
  const prefillGenerated = mergePrefill ? revealed.slice(P, P + generated).filter((r) => r !== null && r.block === first.index && r.iteration === 0).length : 0;
  const result: DecodeResult = {
    ...out,
    committedLength,
    options: o,
    stats: {
      promptTokens: P,
      cachedTokens: L0,
      prefillTokens,
      generatedTokens: generated,
      forwards,
      tokensPerForward: forwards ? generated / forwards : 0,
      prefillMs: tPrefill - t0,
      prefillGenerated,
      msPerForward: decodeForwards ? decodeMs / decodeForwards : 0,
      tokensPerSecond: decodeMs > 0 ? ((generated - prefillGenerated) / decodeMs) * 1000 : 0,
      totalMs: tEnd - t0,
      steps: revealed.slice(P, P + generated),   // one record per returned token
      blockIterations,
      hostMs: host.ms,
    },
  };
  yield { type: 'done', result };
  return result;
}

/** What AR decoding needs: a causal forward (next-token convention). */
export interface CausalForwarder {
  queue: Queue;
  /** Causal forward over ids at [pos0, pos0 + n); logits for the given rows or null. */
  forwardCausal(ids: Int32Array, pos0: number, rows: readonly number[]): Tensor | null;
}

/**
 * Autoregressive decoding for stock (parent) checkpoints: causal prefill, then one token per
 * forward, the logits at position t scoring token t+1. Greedy or sampled with the same rules
 * and RNG as the diffusion decoder (counter = position of the new token · 64).
 */
export async function* runAutoregressive(
  fw: Stepper, promptIds: readonly number[], options: DecodeOptions | undefined,
  model: { eosId: number; vocabSize?: number; contextLength?: number },
  flags: Pick<RunnerFlags, 'cachedLength' | 'stopRequested'> = {},
): AsyncGenerator<DecodeEvent, DecodeResult> {
  const t0 = performance.now();
  const P = promptIds.length;
  if (P < 1) throw new OptionError('autoregressive decoding needs a prompt of at least one token', 'prompt');
  const L0 = flags.cachedLength ?? 0;
  if (!Number.isInteger(L0) || L0 < 0 || L0 >= P) throw new OptionError(`cachedLength ${L0} must be an integer in [0, ${P}) (the prompt length)`, 'cachedLength');
  const o = validateDecodeOptions(options, { blockSize: 1, eosId: model.eosId, vocabSize: model.vocabSize, contextLength: model.contextLength, promptLength: P, autoregressive: true });
  checkPromptIds(promptIds, model.vocabSize);
  const signal = o.signal;
  const out: number[] = [];
  const steps: (RevealRecord | null)[] = [];
  let forwards = 0;
  let tPrefill = 0;
  let finishReason: FinishReason = 'length';
  let input = Int32Array.from(promptIds.slice(L0));
  let pos0 = L0;
  let fed = L0;   // positions whose K/V the cache holds
  const host = new HostClock();
  for (let t = 0; t < o.maxTokens; t++) {
    if (signal?.aborted) throw signal.reason;
    const pos = pos0 + input.length;   // position of the token being chosen
    fed = pos;
    host.pause();
    const r = (await fw.step({
      ids: input, pos0, rows: [input.length - 1], prefill: t === 0, first: t === 0,
      remask: {
        temperature: o.temperature, topK: o.topK, topP: o.topP, seed: o.seed,
        counters: o.temperature > 0 ? [sampleCounter(pos, 0)] : undefined, k: 1, mode: 'static', confidence: 'modified',
      },
    }))!;
    forwards++;
    const x = r.ids, c = r.conf;
    if (t === 0) tPrefill = performance.now();
    host.start();   // from the first token on: the prefill's own JS is not per-forward host work
    out.push(x[0]);
    steps.push({ block: t, iteration: 0, confidence: c[0] });
    const stop = o.stopTokens.includes(x[0]);
    host.pause();
    yield { type: 'block', block: t, ids: [x[0]], stop };
    host.start();
    if (stop || (flags.stopRequested?.() ?? false)) { finishReason = 'stop'; break; }
    pos0 = pos;
    input = Int32Array.of(x[0]);
  }
  host.pause();
  const tEnd = performance.now();
  const decodeMs = tEnd - tPrefill;
  const result: DecodeResult = {
    ids: out, raw: out.slice(), finishReason, options: o, committedLength: fed,
    stats: {
      promptTokens: P, cachedTokens: L0, prefillTokens: P - L0, generatedTokens: out.length, forwards,
      tokensPerForward: forwards ? out.length / forwards : 0,
      prefillMs: tPrefill - t0,
      prefillGenerated: out.length > 0 ? 1 : 0,
      msPerForward: forwards > 1 ? decodeMs / (forwards - 1) : 0,
      tokensPerSecond: decodeMs > 0 ? ((out.length - 1) / decodeMs) * 1000 : 0,
      totalMs: tEnd - t0, steps, blockIterations: [], hostMs: host.ms,
    },
  };
  yield { type: 'done', result };
  return result;
}
