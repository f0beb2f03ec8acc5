// Model.profile() and `bench --profile` (csrc/core/profile.h): every CPU op job times itself
// while a profile runs. What can be checked without timing anything: the call counts follow
// the model's structure (each forward embeds once and runs 2·layers + 1 RMSNorms, 2·layers − 1
// when it only writes the cache), matmul lines carry their weight dtype, row count and weight
// bytes, the counts restart with each profile and stop when it ends, and misuse is a typed
// error. No test reads a duration's value beyond "finite and not negative" (the machine may be
// shared).
import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel, OptionError, DiffusionVLError, type Model } from '../../lib/index.js';
import { Queue } from '../../lib/native/index.js';
import { benchModel } from '../../lib/cli/bench.js';
import { writeTinyModel, type TinyModel } from '../helpers/tinyModel.js';

const LAYERS = 2;
let tiny: TinyModel;
let model: Model;
beforeAll(async () => {
  tiny = await writeTinyModel({ dims: { numLayers: LAYERS } });
  model = await loadModel(tiny.dir, { threads: 2 });
});
afterAll(() => { model?.dispose(); rmSync(tiny.dir, { recursive: true, force: true }); });

// Calls of an op over all its keys ('rms_norm ×8', 'rms_norm ×1', …).
const callsOf = (ops: { op: string; calls: number }[], op: string) =>
  ops.filter((l) => l.op === op || l.op.startsWith(op + ' ')).reduce((a, l) => a + l.calls, 0);

describe('Model.profile', () => {
  for (const [mode, mergePrefill] of [['ar', true], ['diffusion', true], ['diffusion', false]] as const) {
    it(`counts ${mode} ops by the model's structure${mergePrefill ? '' : ' (prefill apart)'}`, async () => {
      const { result, ops, totalMs } = await model.profile(() => model.generate({ prompt: 'hello there', maxTokens: 12, mode, stopTokens: [], engine: { mergePrefill } }));
      expect(result.stats.generatedTokens).toBe(12);
      const passes = callsOf(ops, 'embedding');
      // The prefill is one forward more than stats.forwards counts as decode forwards, at most.
      expect(passes).toBeGreaterThanOrEqual(result.stats.forwards);
      expect(passes).toBeLessThanOrEqual(result.stats.forwards + 1);
      // A pass that computes logits: 2 RMSNorms per layer and the final one, 5 products per
      // layer (q|k|v fused on a CPU queue: lib/model/qwen2.ts; o, gate, up, down) and the
      // lm_head. A pass that only writes the cache (a diffusion prefill run apart from the first
      // denoising iteration) stops after the last layer's K/V: that layer runs one RMSNorm and
      // the q|k|v product.
      const kvOnly = (passes * (2 * LAYERS + 1) - callsOf(ops, 'rms_norm')) / 2;
      expect(kvOnly).toBe(mode === 'diffusion' && !mergePrefill ? 1 : 0);
      const mm = ops.filter((l) => l.op.startsWith('matmul'));
      expect(mm.length).toBeGreaterThan(0);
      for (const l of mm) {
        expect(l.op).toMatch(/^matmul (bf16|bf16p|f32|f16|q8|q8p) ×\d+$/);
        expect(l.weightBytes).toBeGreaterThan(0);
        expect(l.weightGBps).toBeGreaterThan(0);
      }
      expect(mm.reduce((a, l) => a + l.calls, 0)).toBe(passes * (5 * LAYERS + 1) - 5 * kvOnly);
      if (mode === 'ar') expect(mm.some((l) => l.op.endsWith(' ×1'))).toBe(true);
      // Ops with rows say how many: a prefill's lines stand apart from a step's.
      expect(ops.some((l) => /^rms_norm ×\d+$/.test(l.op))).toBe(true);
      for (const l of ops) {
        expect(Number.isFinite(l.ms) && l.ms >= 0).toBe(true);
        expect(l.weightBytes === 0 || l.op.startsWith('matmul')).toBe(true);
      }
      expect(totalMs).toBeGreaterThan(0);
      expect(ops.reduce((a, l) => a + l.share, 0)).toBeCloseTo(1, 9);
      for (let i = 1; i < ops.length; i++) expect(ops[i - 1].ms).toBeGreaterThanOrEqual(ops[i].ms);
    });
  }

  it('restarts the counts with each profile and stops timing when it ends', async () => {
    const req = { prompt: 'count me', maxTokens: 8, mode: 'ar' as const, stopTokens: [] };
    await model.generate(req);  // records the plans: a recording runs ops a replay does not (reshape)
    const a = await model.profile(() => model.generate(req));
    await model.generate(req);  // not profiled: must not show up below
    const b = await model.profile(() => model.generate(req));
    const key = (ops: { op: string; calls: number }[]) => ops.map((l) => `${l.op}:${l.calls}`).sort();
    expect(key(b.ops)).toEqual(key(a.ops));
  });

  it('refuses a second profile while one runs, and recovers from a failing fn', async () => {
    const first = model.profile(() => model.generate({ prompt: 'one', maxTokens: 4, stopTokens: [] }));
    await expect(model.profile(async () => 1)).rejects.toBeInstanceOf(OptionError);
    await first;
    await expect(model.profile(async () => { throw new Error('boom'); })).rejects.toThrow('boom');
    const after = await model.profile(async () => 7);
    expect(after.result).toBe(7);
    expect(after.ops).toEqual([]);
  });

  it('rejects a bad setProfiling argument with a typed error', () => {
    const q = new Queue({ threads: 1 });
    try {
      expect(() => (q as unknown as { setProfiling(v: unknown): void }).setProfiling('yes')).toThrow(DiffusionVLError);
      q.setProfiling(true);
      expect(q.profile()).toEqual([]);
    } finally { q.dispose(); }
  });
});

describe('bench --profile', () => {
  it('reports per-forward op lines for AR and each merged setting', async () => {
    const res = await benchModel(tiny.dir, { maxTokens: 16, steps: [4], repeat: 1, threads: 2, profile: true });
    expect(res.profiles?.map((p) => p.setting)).toEqual(['ar', 'block8 steps 4 merged']);
    for (const p of res.profiles!) {
      expect(p.forwards).toBeGreaterThan(0);
      expect(p.lines.length).toBeGreaterThan(0);
      expect(p.opMsPerForward).toBeCloseTo(p.lines.reduce((a, l) => a + l.msPerForward, 0), 9);
    }
    // The workers' share of the fork/joins: a percentage where ops split, null where none did.
    for (const r of res.rows) {
      if (r.workersJoinedPercent === null) continue;
      expect(r.workersJoinedPercent).toBeGreaterThanOrEqual(0);
      expect(r.workersJoinedPercent).toBeLessThanOrEqual(100);
    }
  });

  it('one thread: no fork/join, so no workers\' share is reported', async () => {
    const res = await benchModel(tiny.dir, { maxTokens: 8, steps: [4], repeat: 1, threads: 1 });
    expect(res.rows.map((r) => r.workersJoinedPercent)).toEqual(res.rows.map(() => null));
  });
});
