// The continuous-batching scheduler (lib/model/scheduler.ts) on a random checkpoint: sequences
// stepping concurrently (prefills chunked between decode steps, block steps, AR steps, slots
// reused) get exactly the results of each sequence run alone; slots are waited for in order;
// aborts reject at once; a failing step fails only its own sequence.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Queue } from '../../lib/native/index.js';
import { Qwen2Text } from '../../lib/model/qwen2.js';
import { Qwen3Text, type Qwen3TextConfig } from '../../lib/model/qwen3.js';
import type { TextDecoder } from '../../lib/model/decoder.js';
import { BatchScheduler, type Sequence, type StepOut } from '../../lib/model/scheduler.js';
import { loadWeights, type LoadedWeights } from '../../lib/weights/load.js';
import { writeQwen2Checkpoint, writeQwen3Checkpoint } from '../helpers/checkpoint.js';

const V = 131;
let dir: string, q: Queue, w: LoadedWeights;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'dvl-sched-'));
  await writeQwen2Checkpoint(dir, { hiddenSize: 48, numLayers: 2, numHeads: 4, numKvHeads: 2, intermediateSize: 64, vocabSize: V },
    { dtype: 'bf16', tied: true, shards: 1, layout: 'plain', seed: 29 });
  q = new Queue({ threads: 2 });
  w = await loadWeights(dir, q);
});
afterAll(() => { w.dispose(); q.dispose(); rmSync(dir, { recursive: true, force: true }); });

function model(slots: number): Qwen2Text {
  const m = new Qwen2Text(q, w, w.config.text);
  m.allocateCache({ capacity: 96, slots });
  return m;
}

/**
 * A small decode loop: prefill `P` tokens (chunkable), then `blocks` blocks of 4 denoising steps
 * (block mask, bs 8, all rows remasked, the revealed ids fed back) or `blocks` AR steps.
 * Returns every step's outputs.
 */
async function decode(s: BatchScheduler, seq: Sequence, kind: 'block' | 'ar', P: number, blocks: number, seed: number): Promise<number[][]> {
  const got: number[][] = [];
  const prompt = Int32Array.from({ length: P }, (_, i) => (i * 13 + seed) % (V - 1));
  const remask = { temperature: 0, k: 2, mode: 'static' as const };
  if (kind === 'ar') {
    let out = await s.step(seq, { ids: prompt, pos0: 0, mask: 'causal', rows: [P - 1], prefill: true, remask: { ...remask, k: 1 } });
    got.push(Array.from(out!.ids));
    for (let t = 0; t < blocks; t++) {
      out = await s.step(seq, { ids: Int32Array.of(out!.ids[0]), pos0: P + t, mask: 'causal', rows: [0], remask: { ...remask, k: 1 } });
      got.push(Array.from(out!.ids));
    }
    return got;
  }
  await s.step(seq, { ids: prompt, pos0: 0, mask: 'block', blockSize: 8, rows: [], prefill: true });
  for (let b = 0; b < blocks; b++) {
    const ids = new Int32Array(8).fill(V - 1);
    for (let it = 0; it < 4; it++) {
      const out: StepOut | null = await s.step(seq, { ids: ids.slice(), pos0: P + 8 * b, mask: 'block', blockSize: 8, rows: [0, 1, 2, 3, 4, 5, 6, 7], remask });
      got.push(Array.from(out!.ids), Array.from(out!.reveal));
      for (let r = 0; r < 8; r++) if (out!.reveal[r]) ids[r] = out!.ids[r];
    }
    await s.step(seq, { ids, pos0: P + 8 * b, mask: 'block', blockSize: 8, rows: [] });   // commit
  }
  return got;
}

const JOBS: { kind: 'block' | 'ar'; P: number; blocks: number; seed: number }[] = [
  { kind: 'block', P: 48, blocks: 3, seed: 1 },
  { kind: 'ar', P: 29, blocks: 12, seed: 2 },
  { kind: 'block', P: 8, blocks: 4, seed: 3 },
  { kind: 'ar', P: 5, blocks: 20, seed: 4 },
  { kind: 'block', P: 64, blocks: 2, seed: 5 },
];

/** JOBS one after another on a one-slot scheduler over `m`. */
async function runAlone(m: TextDecoder): Promise<number[][][]> {
  const s = new BatchScheduler(m, q, { maxBatch: 1, maxRows: 1024 });
  const out: number[][][] = [];
  for (const j of JOBS) {
    const seq = await s.open();
    out.push(await decode(s, seq, j.kind, j.P, j.blocks, j.seed));
    s.close(seq);
  }
  return out;
}

/** JOBS all at once on a three-slot scheduler over `m` (24 rows per forward: prefills go in chunks). */
async function runTogether(m: TextDecoder): Promise<{ results: number[][][]; s: BatchScheduler }> {
  const s = new BatchScheduler(m, q, { maxBatch: 3, maxRows: 24 });
  const results = await Promise.all(JOBS.map(async (j) => {
    const seq = await s.open();
    try {
      return await decode(s, seq, j.kind, j.P, j.blocks, j.seed);
    } finally {
      s.close(seq);
    }
  }));
  return { results, s };
}

describe('BatchScheduler', () => {
  it('concurrent sequences (chunked prefills, block and AR steps, more jobs than slots) = each alone, exactly', async () => {
    const m1 = model(1);
    const alone = await runAlone(m1);
    m1.dispose();
    for (const eager of [true, false]) {
      const m = model(3);
      m.eager = eager;
      const { results: together, s } = await runTogether(m);
      expect(together).toEqual(alone);
      expect(s.stats.maxSequences).toBe(3);                 // they did share forwards
      expect(s.stats.prefillChunks).toBeGreaterThan(0);     // and long prompts went in pieces
      expect(s.stats.rows / s.stats.forwards).toBeGreaterThan(4);
      expect(s.stats.open).toBe(0);
      m.dispose();
    }
  });

  /** Two sequences on a 2-slot scheduler recording each forward's slots, and a block step of 8 rows. */
  async function newcomerSetup() {
    const m = model(2);
    const s = new BatchScheduler(m, q, { maxBatch: 2, maxRows: 64 });
    const forwards: number[][] = [];
    s.onForward = (slots) => forwards.push(slots);
    const [a, b] = [await s.open(), await s.open()];
    const remask = { temperature: 0, k: 2, mode: 'static' as const };
    const step = (seq: Sequence, pos0: number, first: boolean) =>
      s.step(seq, { ids: new Int32Array(8).fill(V - 1), pos0, mask: 'block', blockSize: 8, rows: [0, 1, 2, 3, 4, 5, 6, 7], remask, first });
    return { m, s, forwards, a, b, step };
  }

  it("a newcomer's steps before its first block run in forwards of their own", async () => {
    const { m, s, forwards, a, b, step } = await newcomerSetup();
    await s.step(a, { ids: new Int32Array(8).fill(5), pos0: 0, mask: 'block', blockSize: 8, rows: [], prefill: true, first: true });
    // a decodes (past its first block); b arrives with its prefill and first-block steps.
    const aSteps = (async () => { for (let i = 0; i < 6; i++) await step(a, 16, false); })();
    await s.step(b, { ids: new Int32Array(8).fill(7), pos0: 0, mask: 'block', blockSize: 8, rows: [], prefill: true, first: true });
    for (let i = 0; i < 3; i++) await step(b, 8, true);
    await aSteps;
    for (let i = 0; i < 3; i++) await step(b, 16, false);
    // Every forward that ran a step of b's first phase ran nothing else; later ones are shared.
    const bSlot = b.slot;
    const firstPhase = forwards.filter((f) => f.includes(bSlot)).slice(0, 4);
    expect(firstPhase).toHaveLength(4);
    expect(firstPhase.every((f) => f.length === 1)).toBe(true);
    s.close(a); s.close(b);
    m.dispose();
  });

  it("a newcomer whose runner takes a while between its first-block steps is waited for, not queued behind the others", async () => {
    const { m, s, forwards, a, b, step } = await newcomerSetup();
    const pause = () => new Promise((r) => setTimeout(r, 1));   // a runner reading its result, emitting events
    await s.step(a, { ids: new Int32Array(8).fill(5), pos0: 0, mask: 'block', blockSize: 8, rows: [], prefill: true, first: true });
    let aRunning = true;
    const aSteps = (async () => { while (aRunning) await step(a, 16, false); })();
    await s.step(b, { ids: new Int32Array(8).fill(7), pos0: 0, mask: 'block', blockSize: 8, rows: [], prefill: true, first: true });
    const from = forwards.length - 1;
    for (let i = 0; i < 3; i++) { await pause(); await step(b, 8, true); }
    const to = forwards.length;
    await pause();
    await step(b, 16, false);
    aRunning = false;
    await aSteps;
    // From b's prefill to its last first-block step: b's forwards only, none of a's in between.
    expect(forwards.slice(from, to)).toEqual(Array.from({ length: to - from }, () => [b.slot]));
    expect(to - from).toBe(4);
    // a was not starved: it ran before and after.
    expect(forwards.slice(to).some((f) => f.includes(a.slot))).toBe(true);
    s.close(a); s.close(b);
    m.dispose();
  });

  it('waits for a free slot in order; aborts reject at once, waiting or stepping', async () => {
    const m = model(1);
    const s = new BatchScheduler(m, q, { maxBatch: 1, maxRows: 64 });
    const a = await s.open();
    const order: string[] = [];
    const b = s.open().then((x) => { order.push('b'); return x; });
    const ac = new AbortController();
    const c = s.open(ac.signal);
    expect(s.stats.waiting).toBe(2);
    ac.abort(new Error('gone'));
    await expect(c).rejects.toThrow('gone');
    expect(s.stats.waiting).toBe(1);
    s.close(a);
    const bs = await b;
    expect(order).toEqual(['b']);
    const ac2 = new AbortController();
    ac2.abort(new Error('before'));
    await expect(s.step(bs, { ids: Int32Array.of(1), pos0: 0, mask: 'causal', rows: [] }, ac2.signal)).rejects.toThrow('before');
    s.close(bs);
    await expect(s.step(bs, { ids: Int32Array.of(1), pos0: 0, mask: 'causal', rows: [] })).rejects.toThrow(/closed/);
    m.dispose();
  });

  it('a step that fails fails only its own sequence', async () => {
    const m = model(2);
    const s = new BatchScheduler(m, q, { maxBatch: 2, maxRows: 64 });
    const [x, y] = [await s.open(), await s.open()];
    const remask = { temperature: 0, k: 1, mode: 'static' as const };
    const good = s.step(x, { ids: Int32Array.of(3, 4), pos0: 0, mask: 'causal', rows: [1], remask });
    const bad = s.step(y, { ids: Int32Array.of(3, 4), pos0: 95, mask: 'causal', rows: [1], remask });   // past the cache
    await expect(bad).rejects.toThrow(/exceed the KV cache/);
    const r = await good;
    expect(r!.ids.length).toBe(1);
    s.close(x); s.close(y);
    m.dispose();
  });
});

describe('BatchScheduler on a Qwen3 checkpoint', () => {
  it('concurrent sequences = each alone, exactly (eager and planned)', async () => {
    const d3 = mkdtempSync(join(tmpdir(), 'dvl-sched-qwen3-'));
    await writeQwen3Checkpoint(d3, { hiddenSize: 48, numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 16, intermediateSize: 64, vocabSize: V },
      { dtype: 'bf16', tied: true, shards: 1, layout: 'plain', seed: 31 });
    const w3 = await loadWeights(d3, q);
    const make = (slots: number, eager: boolean) => {
      const m = new Qwen3Text(q, w3, w3.config.text as Qwen3TextConfig);
      m.eager = eager;
      m.allocateCache({ capacity: 96, slots });
      return m;
    };
    try {
      const m1 = make(1, false);
      const alone = await runAlone(m1);
      m1.dispose();
      for (const eager of [true, false]) {
        const m = make(3, eager);
        const { results: together, s } = await runTogether(m);
        expect(together).toEqual(alone);
        expect(s.stats.maxSequences).toBe(3);
        expect(s.stats.prefillChunks).toBeGreaterThan(0);
        m.dispose();
      }
    } finally {
      w3.dispose();
      rmSync(d3, { recursive: true, force: true });
    }
  });
});
