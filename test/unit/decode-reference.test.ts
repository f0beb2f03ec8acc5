// decode-reference.test.ts — lib/decode/reference.ts, the plain reference decoder (docs §5), on
// hand-traced cases (traces in the comments) and on random logits across option combinations.
import { describe, expect, it } from 'vitest';
import { OutOfRangeError, OptionError } from '../../lib/errors.js';
import { canvasGeometry } from '../../lib/decode/canvas.js';
import { referenceDecode, type DecodeModel, type LogitsSource } from '../../lib/decode/reference.js';
import { sampleRow } from '../../lib/decode/sample.js';
import { transferSchedule } from '../../lib/decode/schedule.js';
import { answerFor, maskingSource, randomSource, recording, scriptedConfidence, scriptedSource, tiedSource, withNaN } from '../helpers/logits.js';

// A toy vocabulary: V = 16, the last two ids play MASK and EOS.
const V = 16, MASK = 15, EOS = 14;
const model: DecodeModel = { maskId: MASK, eosId: EOS, blockSize: 4, vocabSize: V };
const M = MASK;

/** Scripted source from per-position answer and confidence tables (absolute positions). */
function script(answer: (pos: number, visible: readonly number[]) => number, conf: (pos: number, visible: readonly number[]) => number): LogitsSource {
  return scriptedSource({ vocabSize: V, answer, confidence: conf });
}
const table = (t: Record<number, number>, dflt = 0.5) => (pos: number) => t[pos] ?? dflt;
const c = (p: number, id: number) => scriptedConfidence(p, V, id);

describe('referenceDecode: hand-traced cases', () => {
  it('A: P = 3, bs = 4, G = 6, S = 2, static, greedy (straddling block, no prefill)', () => {
    // Geometry: P + G = 9 → nb = 3, T = 12; nfull = 0, Lpre = 0 → no prefill.
    // schedule(4, 2) = [2, 2, 2]. Answers: position j answers id j + 1; confidences below.
    // Block 0 [0,4): masks {3}.  i0: denoise (nfe 1), k = min(2, 1) = 1 → reveal 3.
    //                            i1: no mask → commit (nfe 2). No EOS in [3, 4).
    // Block 1 [4,8): conf 4:.3 5:.9 6:.5 7:.7.  i0 (nfe 3): reveal 5, 7.  i1 (nfe 4): {4, 6} → both.
    //                            i2: commit (nfe 5).
    // Block 2 [8,12): conf 8:.8 9:.4 10:.95 11:.2.  i0 (nfe 6): reveal 10, 8.  i1 (nfe 7): 9, 11.
    //                            i2: commit (nfe 8).
    // Output: raw = ids[3:9] = [4..9] (positions 9–11 generated, sliced away); no EOS.
    const conf = table({ 3: 0.6, 4: 0.3, 5: 0.9, 6: 0.5, 7: 0.7, 8: 0.8, 9: 0.4, 10: 0.95, 11: 0.2 });
    const rec = recording(script((pos) => pos + 1, conf));
    const r = referenceDecode([1, 2, 3], rec.source, { maxTokens: 6, steps: 2 }, model);
    expect(r.raw).toEqual([4, 5, 6, 7, 8, 9]);
    expect(r.ids).toEqual([4, 5, 6, 7, 8, 9]);
    expect(r.finishReason).toBe('length');
    expect(r.nfe).toBe(8);
    expect(r.blockIterations).toEqual([1, 2, 2]);
    expect(r.steps.map((s) => s && [s.block, s.iteration])).toEqual([[0, 0], [1, 1], [1, 0], [1, 1], [1, 0], [2, 0]]);
    expect(r.steps[2]!.confidence).toBe(c(0.9, 6));
    // The questions: only masked positions, visible = canvas [0, blockEnd) with masks as MASK.
    expect(rec.calls.length).toBe(1 + 4 + 2 + 4 + 2);
    expect(rec.calls[0]).toEqual({ visible: [1, 2, 3, M], pos: 3 });
    expect(rec.calls.slice(1, 5).map((q) => q.pos)).toEqual([4, 5, 6, 7]);
    expect(rec.calls[1].visible).toEqual([1, 2, 3, 4, M, M, M, M]);
    expect(rec.calls[5]).toEqual({ visible: [1, 2, 3, 4, M, 6, M, 8], pos: 4 });
    expect(rec.calls[6].pos).toBe(6);
    expect(rec.calls[7].visible).toEqual([1, 2, 3, 4, 5, 6, 7, 8, M, M, M, M]);
  });

  it('B: P = 8, bs = 4, G = 8, S = 4: prefill, EOS mid-block stops after that block', () => {
    // nb = 4, T = 16, nfull = 2, Lpre = 8 → prefill (nfe 1). schedule(4, 4) = [1, 1, 1, 1, 1].
    // Block 2 [8,12): answers 4, 5, EOS, 6 with conf .5 .7 .9 .3 → one reveal per iteration in
    // confidence order: i0 → 10 (EOS), i1 → 9, i2 → 8, i3 → 11; i4 commit. nfe = 1 + 4 + 1 = 6.
    // EOS in [8, 12) → stop: block 3 never runs, its positions stay MASK in raw.
    const src = script(answerFor(8, [4, 5, EOS, 6], 7), table({ 8: 0.5, 9: 0.7, 10: 0.9, 11: 0.3 }));
    const r = referenceDecode([1, 2, 3, 4, 5, 6, 7, 8], src, { maxTokens: 8, steps: 4 }, model);
    expect(r.raw).toEqual([4, 5, EOS, 6, M, M, M, M]);
    expect(r.ids).toEqual([4, 5, EOS]);
    expect(r.finishReason).toBe('stop');
    expect(r.nfe).toBe(6);
    expect(r.blockIterations).toEqual([4]);
    expect(r.steps.map((s) => s && s.iteration)).toEqual([2, 1, 0, 3, null, null, null, null]);
  });

  it('C: P = 5, bs = 4, G = 3, S = 2: dynamic reveals every confident mask at once; static does not', () => {
    // nb = 2, T = 8, nfull = 1, Lpre = 4 → prefill. Block 1 [4,8) holds prompt position 4 and
    // masks 5, 6, 7; schedule(4, 2) = [2, 2, 2].
    // Dynamic, conf .9 .95 .99 (all > .85, 3 ≥ k = 2): i0 reveals all three; i1 commit → nfe 3.
    // Static: i0 reveals 7, 6; i1 reveals 5; i2 commit → nfe 4.
    const src = script((pos) => pos + 1, table({ 5: 0.9, 6: 0.95, 7: 0.99 }));
    const d = referenceDecode([1, 2, 3, 4, 5], src, { maxTokens: 3, steps: 2, remasking: 'dynamic' }, model);
    expect(d.raw).toEqual([6, 7, 8]);
    expect(d.nfe).toBe(3);
    expect(d.steps.map((s) => s!.iteration)).toEqual([0, 0, 0]);
    const s = referenceDecode([1, 2, 3, 4, 5], src, { maxTokens: 3, steps: 2, remasking: 'static' }, model);
    expect(s.raw).toEqual([6, 7, 8]);
    expect(s.nfe).toBe(4);
    expect(s.steps.map((x) => x!.iteration)).toEqual([1, 0, 0]);
  });

  it('C′: dynamic falls back to static top-k when fewer than k are confident', () => {
    // Same geometry; conf 5:.9 6:.5 7:.6. i0: high = {5}, 1 < 2 → top 2 = {5, 7}.
    // i1: masks {6}, .5 not high, k = min(2, 1) → reveal 6. i2: commit. nfe = 1 + 2 + 1 = 4.
    const src = script((pos) => pos + 1, table({ 5: 0.9, 6: 0.5, 7: 0.6 }));
    const d = referenceDecode([1, 2, 3, 4, 5], src, { maxTokens: 3, steps: 2, remasking: 'dynamic' }, model);
    expect(d.steps.map((s) => s!.iteration)).toEqual([0, 1, 0]);
    expect(d.nfe).toBe(4);
  });

  it('D: full diffusion (bs ≥ P + G): one block over [0, P + G), schedule by route', () => {
    // P = 2, G = 3, bs = 8: T = 5, no prefill; masks 2, 3, 4 with conf .5 .9 .7; S = 4.
    // Qwen2.5-VL route: schedule(8, 4) = [2,2,2,2,2]: i0 → 3, 4; i1 → 2; i2 commit. nfe 3.
    // AR-LM route: schedule(G = 3, 4) = [1,1,1,0,0]: i0 → 3, i1 → 4, i2 → 2, i3 commit. nfe 4.
    const rec = recording(script((pos) => pos + 1, table({ 2: 0.5, 3: 0.9, 4: 0.7 })));
    const q = referenceDecode([1, 2], rec.source, { maxTokens: 3, steps: 4, blockSize: 8 }, model);
    expect(q.raw).toEqual([3, 4, 5]);
    expect(q.nfe).toBe(3);
    expect(q.steps.map((s) => s!.iteration)).toEqual([1, 0, 0]);
    expect(rec.calls[0].visible).toEqual([1, 2, M, M, M]);
    const a = referenceDecode([1, 2], rec.source, { maxTokens: 3, steps: 4, blockSize: 8 }, { ...model, route: 'ar-lm' });
    expect(a.raw).toEqual([3, 4, 5]);
    expect(a.nfe).toBe(4);
    expect(a.steps.map((s) => s!.iteration)).toEqual([2, 0, 1]);
  });

  it('E: a revealed MASK id stays masked (§5.12 #1) and the block commits after the loop (#2)', () => {
    // P = 4, bs = 4, G = 4, S = 2: prefill [0,4); block 1 [4,8); schedule [2, 2, 2].
    // Position 5 answers MASK (conf .95) while position 4 is still masked, else 9 (conf .95);
    // others: 4 → 4 (.9), 6 → 6 (.5), 7 → 7 (.3).
    // i0: masks {4,5,6,7} → reveal 5 (MASK: stays masked) and 4.
    // i1: visible[4] = 4 now, so 5 answers 9: masks {5,6,7} → reveal 5, 6.
    // i2 (the last of S + 1): masks {7} → reveal 7. The loop ends without its commit check, so
    // the clean decoder commits after it: nfe = 1 + 3 + 1 = 5.
    const answer = (pos: number, vis: readonly number[]) => (pos === 5 ? (vis[4] === M ? M : 9) : pos);
    const src = script(answer, table({ 4: 0.9, 5: 0.95, 6: 0.5, 7: 0.3 }));
    const r = referenceDecode([1, 2, 3, 4], src, { maxTokens: 4, steps: 2 }, model);
    expect(r.raw).toEqual([4, 9, 6, 7]);
    expect(r.steps.map((s) => s!.iteration)).toEqual([0, 1, 1, 2]);
    expect(r.nfe).toBe(5);
    expect(r.blockIterations).toEqual([3]);
  });

  it('F: a position that always answers MASK is still MASK after S + 1 iterations', () => {
    // As E, but 5 always answers MASK: i0 → 5 (M), 4; i1 → 5 (M), 6; i2 → 5 (M), 7. Masks remain;
    // commit anyway (nfe = 1 + 3 + 1). The MASK id is in the output, as in the reference.
    const answer = (pos: number) => (pos === 5 ? M : pos);
    const r = referenceDecode([1, 2, 3, 4], script(answer, table({ 4: 0.9, 5: 0.95, 6: 0.5, 7: 0.3 })), { maxTokens: 4, steps: 2 }, model);
    expect(r.raw).toEqual([4, M, 6, 7]);
    expect(r.nfe).toBe(5);
    expect(r.steps[1]).toEqual({ block: 1, iteration: 2, confidence: c(0.95, M) });
  });

  it('G: ties are revealed lowest position first', () => {
    // All confidences equal, bs = 4 = S: one reveal per iteration, in position order.
    const r = referenceDecode([1, 2, 3, 4], tiedSource(V, (p) => p), { maxTokens: 4, steps: 4 }, model);
    expect(r.steps.map((s) => s!.iteration)).toEqual([0, 1, 2, 3]);
    expect(r.nfe).toBe(1 + 4 + 1);
  });

  it('H: only the model EOS stops by default; stopTokens can add or replace it', () => {
    // P = 4, G = 8, bs = 4: block 1 answers 4, 13, 6, 7 (13 is a "pad"); block 2 answers EOS first.
    const src = script(answerFor(4, [4, 13, 6, 7, EOS, 9, 10, 11], 12), () => 0.9);
    const a = referenceDecode([1, 2, 3, 4], src, { maxTokens: 8, steps: 4 }, model);
    expect(a.ids).toEqual([4, 13, 6, 7, EOS]);
    expect(a.raw).toEqual([4, 13, 6, 7, EOS, 9, 10, 11]);
    const b = referenceDecode([1, 2, 3, 4], src, { maxTokens: 8, steps: 4, stopTokens: [EOS, 13] }, model);
    expect(b.ids).toEqual([4, 13]);
    expect(b.raw).toEqual([4, 13, 6, 7, M, M, M, M]);
    const none = referenceDecode([1, 2, 3, 4], src, { maxTokens: 8, steps: 4, stopTokens: [] }, model);
    expect(none.finishReason).toBe('length');
  });
});

describe('referenceDecode: errors and abort', () => {
  const src = randomSource({ vocabSize: V, seed: 3 });

  it('NaN logits at a masked position raise OutOfRangeError', () => {
    expect(() => referenceDecode([1, 2, 3], withNaN(src, 5, 7), { maxTokens: 6, steps: 2 }, model)).toThrow(OutOfRangeError);
    expect(() => referenceDecode([1, 2, 3], withNaN(src, 5, 7), { maxTokens: 6, steps: 2 }, model)).toThrow(/NaN at index 7/);
    expect(() => referenceDecode([1, 2, 3], withNaN(src, 3, 0, Infinity), { maxTokens: 6 }, model)).toThrow(/\+Inf/);
  });

  it('positions never asked about cannot poison the run (prompt positions, sliced-away blocks)', () => {
    // position 1 is prompt: the decoder never asks for its logits
    expect(referenceDecode([1, 2, 3], withNaN(src, 1), { maxTokens: 6, steps: 2 }, model).raw.length).toBe(6);
  });

  it('bad options and logits of the wrong length are typed errors', () => {
    expect(() => referenceDecode([1, 2, 3], src, { steps: 0 }, model)).toThrow(OptionError);
    expect(() => referenceDecode([1, 2, 3], src, { blocksize: 4 } as never, model)).toThrow(/did you mean "blockSize"/);
    expect(() => referenceDecode([1, 2, 3], src, {}, { ...model, vocabSize: 17 })).toThrow(/V = 17/);
  });

  it('an aborted signal rejects with its reason, between iterations', () => {
    const pre = new AbortController();
    pre.abort(new Error('stop now'));
    expect(() => referenceDecode([1, 2, 3], src, { signal: pre.signal }, model)).toThrow('stop now');
    const mid = new AbortController();
    let calls = 0;
    const counting: LogitsSource = (v, p) => { if (++calls === 5) mid.abort(new Error('mid-run')); return src(v, p); };
    expect(() => referenceDecode([1, 2, 3], counting, { maxTokens: 12, steps: 2, signal: mid.signal }, model)).toThrow('mid-run');
    // it stopped at the next iteration boundary: at most one block's worth of questions more
    expect(calls).toBeLessThanOrEqual(5 + 4);
  });
});

describe('referenceDecode: random logits, option combinations', () => {
  // V ≈ 64 as the runner comparison will use; MASK and EOS are the last two ids.
  const V64 = 64, MASK64 = 63, EOS64 = 62;
  const m64: DecodeModel = { maskId: MASK64, eosId: EOS64, blockSize: 8, vocabSize: V64 };

  it('invariants hold for every combination (and decoding is deterministic)', () => {
    let runs = 0;
    let dynamicEarly = 0;
    const t0 = performance.now();
    for (const bs of [1, 3, 4, 8]) {
      for (const P of [0, 1, bs, 2 * bs + 1, 11]) {
        for (const G of [1, 5, 13]) {
          // S ≤ bs: more steps than the block size are refused (options.ts, §5.12 #7)
          for (const steps of [...new Set([1, Math.min(2, bs), bs])]) {
            for (const [remasking, temperature, topK, topP] of [
              ['static', 0, 0, 1], ['dynamic', 0, 0, 1], ['static', 0.8, 5, 0.9], ['dynamic', 1.2, 0, 0.95],
            ] as const) {
              const route = runs % 3 === 0 ? 'ar-lm' as const : 'qwen2.5-vl' as const;
              // the MASK id gets a large negative bias (no §5.12 #1 here), EOS a small positive one
              const src = randomSource({ vocabSize: V64, seed: runs, bias: { [MASK64]: -40, [EOS64]: 0.5 } });
              const prompt = Array.from({ length: P }, (_, j) => (j * 7) % 60);
              const opts = { maxTokens: G, blockSize: bs, steps, remasking, temperature, topK, topP, seed: 1000 + runs };
              const model = { ...m64, route };
              const r = referenceDecode(prompt, src, opts, model);
              runs++;
              const label = JSON.stringify({ bs, P, G, steps, remasking, temperature, route });
              expect(referenceDecode(prompt, src, opts, model), label).toEqual(r);

              const geom = canvasGeometry(P, G, bs);
              const schedLen = geom.fullDiffusion && route === 'ar-lm' ? G : bs;
              const sched = transferSchedule(schedLen, steps);
              const ran = r.blockIterations.length;
              expect(r.raw.length, label).toBe(G);
              expect(r.raw.slice(0, r.ids.length), label).toEqual(r.ids);
              expect(r.nfe, label).toBe((geom.prefillLength > 0 ? 1 : 0) + r.blockIterations.reduce((a, b) => a + b, 0) + ran);
              for (let b = 0; b < ran; b++) {
                const block = geom.blocks[b];
                // static needs exactly the first i entries reaching the block's masks; dynamic at most that
                let need = 0, sum = 0;
                while (sum < block.masks) sum += sched[need++];
                if (remasking === 'static') expect(r.blockIterations[b], label).toBe(need);
                else expect(r.blockIterations[b], label).toBeLessThanOrEqual(need);
                if (remasking === 'dynamic' && r.blockIterations[b] < need) dynamicEarly++;
                // the stop rule: no block before the last one run holds EOS at a generated position
                const holdsEos = Array.from({ length: block.end - block.genStart }, (_, o) => block.genStart + o)
                  .some((j) => j - P < G ? r.raw[j - P] === EOS64 : false);
                if (b < ran - 1) expect(holdsEos, label).toBe(false);
              }
              // blocks that ran are fully revealed (no MASK), the rest are MASK with no record
              const ranEnd = geom.blocks[ran - 1].end;
              for (let g = 0; g < G; g++) {
                const j = P + g;
                if (j < ranEnd) {
                  expect(r.raw[g], label).not.toBe(MASK64);
                  expect(r.steps[g], label).not.toBeNull();
                  const bi = geom.blocks.findIndex((bl) => j >= bl.start && j < bl.end);
                  expect(r.steps[g]!.block, label).toBe(geom.blocks[bi].index);
                  expect(r.steps[g]!.iteration, label).toBeLessThan(r.blockIterations[bi]);
                  expect(r.steps[g]!.confidence, label).toBe(Math.fround(r.steps[g]!.confidence));
                } else {
                  expect(r.raw[g], label).toBe(MASK64);
                  expect(r.steps[g], label).toBeNull();
                }
              }
              if (ran < geom.blocks.length) expect(r.finishReason, label).toBe('stop');
            }
          }
        }
      }
    }
    const ms = performance.now() - t0;
    expect(runs).toBe((1 + 3 + 3 + 3) * 5 * 3 * 4);   // step counts per bs: {1}, {1,2,3}, {1,2,4}, {1,2,8}
    // the random source must exercise the dynamic threshold (early finishes) for this test to mean anything
    expect(dynamicEarly).toBeGreaterThan(20);
    console.log(`referenceDecode: ${runs} random runs ×2 in ${ms.toFixed(0)} ms, ${dynamicEarly} dynamic early finishes`);
  });

  it('the random source spreads confidences so the dynamic threshold triggers sometimes', () => {
    const src = randomSource({ vocabSize: V64, seed: 1 });
    let high = 0;
    const n = 2000;
    for (let i = 0; i < n; i++) if (sampleRow(src([i % 50, i], i), { temperature: 0 }).confidence > 0.85) high++;
    // measured ≈ 20 % at the default spread; the bounds only guard against a broken source
    expect(high / n).toBeGreaterThan(0.1);
    expect(high / n).toBeLessThan(0.35);
  });

  it('sources that answer the mask id: blocks still commit, MASK may reach the output', () => {
    let withMask = 0;
    for (let t = 0; t < 60; t++) {
      const inner = randomSource({ vocabSize: V64, seed: 500 + t, bias: { [MASK64]: -40 } });
      const positions = [3 + (t % 7), 9 + (t % 5)];
      // half the cases answer MASK only while the first canvas position after the prompt is masked
      const when = t % 2 === 0 ? () => true : (vis: readonly number[]) => vis[3] === MASK64;
      const src = maskingSource(inner, V64, MASK64, positions, 0.99, when);
      const opts = { maxTokens: 12, blockSize: 4, steps: 1 + (t % 4), remasking: t % 3 ? 'static' as const : 'dynamic' as const, temperature: t % 4 ? 0 : 0.9, seed: t };
      const r = referenceDecode([1, 2, 3], src, opts, m64);
      const geom = canvasGeometry(3, 12, 4);
      const ran = r.blockIterations.length;
      expect(r.nfe).toBe(r.blockIterations.reduce((a, b) => a + b, 0) + ran);   // no prefill (P < bs); every block commits once
      for (const it of r.blockIterations) expect(it).toBeLessThanOrEqual(opts.steps + 1);
      if (r.raw.slice(0, geom.blocks[ran - 1].end - 3).includes(MASK64)) withMask++;
    }
    expect(withMask).toBeGreaterThan(0);
  });

  it('rejects prompt ids outside the vocabulary', () => {
    const src = randomSource({ vocabSize: V64 });
    expect(() => referenceDecode([1, 64], src, {}, m64)).toThrow(/prompt id at position 1 is 64/);
    expect(() => referenceDecode([-1], src, {}, m64)).toThrow(OutOfRangeError);
  });

  it('greedy ignores the seed; sampling depends on it', () => {
    const src = randomSource({ vocabSize: V64, seed: 9, bias: { [MASK64]: -40 } });
    const g1 = referenceDecode([5, 6, 7], src, { maxTokens: 16, seed: 1 }, m64);
    const g2 = referenceDecode([5, 6, 7], src, { maxTokens: 16, seed: 2 }, m64);
    expect(g1.raw).toEqual(g2.raw);
    const s1 = referenceDecode([5, 6, 7], src, { maxTokens: 16, temperature: 1, seed: 1 }, m64);
    const s2 = referenceDecode([5, 6, 7], src, { maxTokens: 16, temperature: 1, seed: 2 }, m64);
    expect(s1.raw).not.toEqual(s2.raw);
    expect(s1.options.seed).toBe(1);
  });
});
