// CUDA confidence_remask (csrc/cuda/ops_sample.cu) against the CPU op and the TypeScript
// reference (lib/decode/sample.ts sampleRow, remask.ts selectReveal): greedy and sampling
// (top-k, top-p, temperature, 'modified' / 'raw' confidence), static and dynamic remasking,
// a 152k vocabulary, −Inf logits, and the typed error of a NaN row.
//
// ids and reveal: exact. confidence: 1 ulp of f32 — every float64 sum is in index order on
// both sides (one GPU thread walks the row), so only the double exp (CUDA's vs glibc's / V8's,
// each within 1 ulp of a double) can differ, which the f32 rounding hides except at a tie.
import { describe, expect, it } from 'vitest';
import { sampleRow } from '../../lib/decode/sample.js';
import { selectReveal } from '../../lib/decode/remask.js';
import { OutOfRangeError } from '../../lib/errors.js';
import { cudaRunOp } from '../../lib/native/backend.js';
import { tensorFromArray } from '../../lib/native/index.js';
import { rng, uniform } from '../helpers/random.js';
import { EXACT, ULP, expectSame, gpuProbe, runBoth, title } from './ops-helpers.js';

const p = gpuProbe();

interface Case {
  n: number; V: number; temperature: number; topK?: number; topP?: number;
  confidence: 'modified' | 'raw'; mode: 'static' | 'dynamic'; k: number; threshold: number;
}

const cases: Case[] = [
  { n: 5, V: 1000, temperature: 0, confidence: 'modified', mode: 'static', k: 2, threshold: 0.85 },
  { n: 3, V: 152064, temperature: 0, confidence: 'modified', mode: 'dynamic', k: 1, threshold: 1e-4 },
  { n: 6, V: 5003, temperature: 0.7, topK: 50, topP: 0.9, confidence: 'modified', mode: 'static', k: 3, threshold: 0.85 },
  { n: 4, V: 2049, temperature: 1, topP: 0.5, confidence: 'raw', mode: 'dynamic', k: 2, threshold: 1e-3 },
  { n: 3, V: 129, temperature: 1.3, topK: 7, confidence: 'modified', mode: 'static', k: 1, threshold: 0.85 },
  { n: 2, V: 152064, temperature: 0.8, topK: 0, topP: 0.95, confidence: 'modified', mode: 'static', k: 1, threshold: 0.85 },
  { n: 1, V: 1, temperature: 0, confidence: 'modified', mode: 'static', k: 1, threshold: 0.85 },
];

describe.skipIf(!p.available)(title('confidence_remask', p), () => {
  it.each(cases.map((c, i) => [i, c] as const))('case %i %j', async (i, c) => {
    const r = rng(700 + i);
    const logits = uniform(r, c.n * c.V, -8, 8);
    for (let row = 0; row < c.n; row++) if (c.V > 1) logits[row * c.V + ((row * 7919) % c.V)] = -Infinity;
    const counters = Array.from({ length: c.n }, (_, row) => (1000 + row) * 64 + 3);
    const seed = 987654321;
    const attrs = { temperature: c.temperature, topK: c.topK ?? 0, topP: c.topP ?? 1, seed, counters, k: c.k, mode: c.mode, threshold: c.threshold, confidence: c.confidence };
    const { gpu, cpu } = await runBoth('confidence_remask', [tensorFromArray('f32', [c.n, c.V], logits)], attrs);
    expectSame(gpu[0], cpu[0], EXACT, 'ids vs CPU op');
    expectSame(gpu[1], cpu[1], { abs: 0, rel: ULP }, 'confidence vs CPU op');
    expectSame(gpu[2], cpu[2], EXACT, 'reveal vs CPU op');
    // The TypeScript reference, row by row, then the reveal rule on the GPU's confidences.
    for (let row = 0; row < c.n; row++) {
      const ref = sampleRow(logits.subarray(row * c.V, (row + 1) * c.V), {
        temperature: c.temperature, topK: c.topK ?? 0, topP: c.topP ?? 1, confidence: c.confidence, seed, counter: counters[row], row,
      });
      expect(gpu[0][row], `row ${row} id`).toBe(ref.id);
      expectSame([gpu[1][row]], [ref.confidence], { abs: 0, rel: ULP }, `row ${row} confidence vs sample.ts`);
    }
    const reveal = selectReveal(gpu[1], c.k, c.mode, c.threshold).map((b) => (b ? 1 : 0));
    expectSame(gpu[2], reveal, EXACT, 'reveal vs remask.ts');
  });

  it('a NaN or +Inf logit, or an all −Inf row: OutOfRangeError naming the lowest row, as on the CPU', () => {
    const l = uniform(rng(800), 3 * 77, -8, 8);
    l[2 * 77 + 40] = NaN;
    l[1 * 77 + 60] = Infinity;
    const t = tensorFromArray('f32', [3, 77], l);
    expect(() => cudaRunOp('confidence_remask', [t], { temperature: 0, k: 1, mode: 'static' })).toThrow(OutOfRangeError);
    expect(() => cudaRunOp('confidence_remask', [t], { temperature: 0, k: 1, mode: 'static' })).toThrow(/row 1 contains \+Inf at index 60/);
    const inf = tensorFromArray('f32', [1, 5], new Float32Array(5).fill(-Infinity));
    expect(() => cudaRunOp('confidence_remask', [inf], { temperature: 0.5, counters: [1], k: 1, mode: 'static' })).toThrow(/all -Inf/);
  });
});
