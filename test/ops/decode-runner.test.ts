// The native-backed runner (lib/decode/runner.ts) against the plain reference decoder
// (lib/decode/reference.ts) on the same logits sources: identical ids, finish reasons, reveal
// steps and confidences for every option combination, with and without the merged commit and
// the merged prefill.
// The runner's sampling and remasking run in the native op confidence_remask; the reference's in
// TypeScript — so this is also the end-to-end check that both agree.
import { describe, expect, it } from 'vitest';
import { Queue, tensorFromArray, type Tensor } from '../../lib/native/index.js';
import { referenceDecode, type DecodeModel, type LogitsSource } from '../../lib/decode/reference.js';
import { forwarderStepper, runBlockDiffusion, type BlockForwarder, type DecodeResult } from '../../lib/decode/runner.js';
import type { DecodeOptions } from '../../lib/decode/options.js';
import { randomSource, scriptedSource } from '../helpers/logits.js';

/** A "model" whose logits come from a LogitsSource: it remembers the ids each forward wrote
 *  (its KV cache) and answers a row at position pos with source(cache[0, blockEnd), pos). */
class SourceForwarder implements BlockForwarder {
  readonly cache: number[] = [];
  forwards = 0;
  constructor(readonly queue: Queue, private readonly src: LogitsSource, private readonly V: number) {}
  forwardBlock(ids: Int32Array, pos0: number, bs: number, rows: readonly number[]): Tensor | null {
    this.forwards++;
    for (let i = 0; i < ids.length; i++) this.cache[pos0 + i] = ids[i];
    if (rows.length === 0) return null;
    const out = new Float32Array(rows.length * this.V);
    rows.forEach((r, k) => {
      const pos = pos0 + r;
      const blockEnd = (Math.floor(pos / bs) + 1) * bs;
      out.set(this.src(Object.freeze(this.cache.slice(0, Math.min(blockEnd, pos0 + ids.length))), pos), k * this.V);
    });
    return tensorFromArray('f32', [rows.length, this.V], out);
  }
}

const V = 64;
const MASK = 63;
const EOS = 5;
const q = new Queue({ threads: 2 });

async function runner(prompt: number[], src: LogitsSource, opts: DecodeOptions, model: DecodeModel, merge: boolean, mergePrefill = true): Promise<{ r: DecodeResult; fw: SourceForwarder }> {
  const fw = new SourceForwarder(q, src, V);
  let res: DecodeResult | undefined;
  for await (const ev of runBlockDiffusion(forwarderStepper(fw), prompt, opts, model, { mergeCommit: merge, mergePrefill })) if (ev.type === 'done') res = ev.result;
  return { r: res!, fw };
}

function expectSame(r: DecodeResult, ref: ReturnType<typeof referenceDecode>, label: string) {
  expect(r.ids, label).toEqual(ref.ids);
  expect(r.raw, label).toEqual(ref.raw);
  expect(r.finishReason, label).toBe(ref.finishReason);
  // The reference reports a record per canvas position of G; the runner one per returned token.
  expect(r.stats.steps, label).toEqual(ref.steps.slice(0, r.ids.length));
  expect(r.stats.steps.length, label).toBe(r.ids.length);
  expect(r.stats.blockIterations, label).toEqual(ref.blockIterations);
}

const model = (bs: number): DecodeModel => ({ maskId: MASK, eosId: EOS, blockSize: bs, vocabSize: V });
const promptOf = (P: number, s: number) => Array.from({ length: P }, (_, i) => (i * 7 + s) % 50 + 6);

describe('runner vs plain reference', () => {
  it('greedy, static and dynamic, every steps value, prompt lengths 0..3 blocks (bs 8), merged and not', async () => {
    const bs = 8;
    let runs = 0, revealedInPrefill = 0;
    for (let P = 0; P <= 3 * bs; P += (P < 10 ? 1 : 3)) {
      for (let S = 1; S <= bs; S++) {
        for (const remasking of ['static', 'dynamic'] as const) {
          const src = randomSource({ vocabSize: V, seed: P * 31 + S, bias: { [EOS]: -1.5, [MASK]: -8 } });
          const opts: DecodeOptions = { maxTokens: 13 + (P % 5), steps: S, remasking, threshold: 0.6 };
          const ref = referenceDecode(promptOf(P, S), src, opts, model(bs));
          for (const merge of [true, false]) {
            const { r } = await runner(promptOf(P, S), src, opts, model(bs), merge);
            expectSame(r, ref, `P=${P} S=${S} ${remasking} merge=${merge}`);
            // The prefill apart from the first iteration: the same decode, one forward more
            // whenever the prompt holds a whole block, and nothing revealed before the decode.
            const { r: apart } = await runner(promptOf(P, S), src, opts, model(bs), merge, false);
            expectSame(apart, ref, `P=${P} S=${S} ${remasking} merge=${merge} prefill apart`);
            expect(apart.stats.forwards - r.stats.forwards, `P=${P}`).toBe(P >= bs ? 1 : 0);
            expect(apart.stats.prefillGenerated).toBe(0);
            const firstBlock = Math.floor(P / bs);   // the block holding the prompt's end
            expect(r.stats.prefillGenerated, `P=${P}`).toBe(P >= bs ? r.stats.steps.filter((x) => x?.block === firstBlock && x.iteration === 0).length : 0);
            revealedInPrefill += r.stats.prefillGenerated;
            runs++;
          }
        }
      }
    }
    expect(runs).toBeGreaterThan(300);
    expect(revealedInPrefill).toBeGreaterThan(0);
  });

  it('block sizes 1, 4 and 16; maxTokens not a multiple of the block', async () => {
    for (const bs of [1, 4, 16]) {
      for (const P of [0, 1, bs - 1, bs, bs + 3, 2 * bs + 1]) {
        if (P < 0) continue;
        for (const S of new Set([1, Math.min(2, bs), Math.max(1, bs >> 1), bs])) {   // S ≤ bs (options.ts)
          const src = randomSource({ vocabSize: V, seed: bs * 1000 + P * 10 + S, bias: { [EOS]: -2, [MASK]: -8 } });
          const opts: DecodeOptions = { maxTokens: 11, steps: S, remasking: S % 2 ? 'static' : 'dynamic', blockSize: bs, threshold: 0.7 };
          const ref = referenceDecode(promptOf(P, 1), src, opts, model(bs));
          for (const merge of [true, false]) {
            const { r } = await runner(promptOf(P, 1), src, opts, model(bs), merge);
            expectSame(r, ref, `bs=${bs} P=${P} S=${S} merge=${merge}`);
          }
        }
      }
    }
  });

  it('EOS in every position of a block stops after that block', async () => {
    const bs = 8, P = 5;
    for (let e = 0; e < 3 * bs; e++) {
      const gen = Array.from({ length: 40 }, (_, i) => (i === e ? EOS : 10 + (i % 40)));
      const src = scriptedSource({ vocabSize: V, answer: (pos) => (pos < P ? 0 : gen[pos - P] ?? 7), confidence: (pos) => 0.5 + ((pos * 13) % 40) / 100 });
      const opts: DecodeOptions = { maxTokens: 30, steps: 4 };
      const ref = referenceDecode(promptOf(P, 2), src, opts, model(bs));
      const { r } = await runner(promptOf(P, 2), src, opts, model(bs), true);
      expectSame(r, ref, `EOS at ${e}`);
      expect(r.finishReason).toBe(e < 30 ? 'stop' : 'length');
    }
  });

  it('sampling with a fixed seed (temperature, top-k, top-p) gives identical ids', async () => {
    const bs = 8;
    for (const [temperature, topK, topP] of [[1, 0, 1], [0.7, 0, 1], [1.3, 5, 1], [0.8, 0, 0.9], [1, 8, 0.8]] as const) {
      for (const seed of [1, 42, 2 ** 40 + 3]) {
        const src = randomSource({ vocabSize: V, seed: seed % 1000, bias: { [EOS]: -3, [MASK]: -8 } });
        const opts: DecodeOptions = { maxTokens: 20, steps: 4, temperature, topK, topP, seed, remasking: 'dynamic', threshold: 0.5 };
        const ref = referenceDecode(promptOf(11, 3), src, opts, model(bs));
        const { r } = await runner(promptOf(11, 3), src, opts, model(bs), true);
        expectSame(r, ref, `T=${temperature} k=${topK} p=${topP} seed=${seed}`);
      }
    }
  });

  it('merging the commit saves one forward per finished block', async () => {
    const bs = 8, P = 10;
    const src = randomSource({ vocabSize: V, seed: 9, bias: { [EOS]: -8, [MASK]: -8 } });
    const opts: DecodeOptions = { maxTokens: 32, steps: 4 };
    const a = await runner(promptOf(P, 4), src, opts, model(bs), true);
    const b = await runner(promptOf(P, 4), src, opts, model(bs), false);
    expect(a.r.ids).toEqual(b.r.ids);
    const blocks = a.r.stats.blockIterations.length;
    expect(b.fw.forwards - a.fw.forwards).toBe(blocks - 1);
    expect(a.r.stats.forwards).toBe(a.fw.forwards);
  });

  it('aborts between forwards with signal.reason', async () => {
    const ac = new AbortController();
    const src = randomSource({ vocabSize: V, seed: 3, bias: { [EOS]: -8 } });
    const fw = new SourceForwarder(q, src, V);
    const reason = new Error('stop now');
    const gen = runBlockDiffusion(forwarderStepper(fw), promptOf(4, 1), { maxTokens: 64, steps: 8, signal: ac.signal }, model(8));
    let n = 0;
    await expect((async () => {
      for await (const ev of gen) {
        if (ev.type === 'block' && ++n === 2) ac.abort(reason);
      }
    })()).rejects.toBe(reason);
    expect(n).toBe(2);
  });
});
