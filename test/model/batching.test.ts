// Continuous batching through the public API: concurrent generate() calls share forwards
// (lib/model/scheduler.ts) and each returns exactly what it returns alone — on the bundled
// trained child (images, static and dynamic remasking, AR mode on the same weights) and on a
// random checkpoint (sampling with a seed, separate commits), mixed in one batch. The rule that
// makes this hold: every row of a batched forward is computed as in its sequence's own forward
// (row-wise kernels whose per-element result depends only on that row; attention per sequence
// on its own cache slot), prefills split only at block boundaries, remask per sequence.
import { rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel, type GenerateRequest, type Model } from '../../lib/index.js';
import { writeTinyModel, type TinyModel } from '../helpers/tinyModel.js';

const example = (name: string) => fileURLToPath(new URL(`../../examples/${name}`, import.meta.url));
const ask = (image: string | null, text: string): GenerateRequest['messages'] =>
  [{ role: 'user', content: image ? [{ type: 'image', image: example(image) }, { type: 'text', text }] : text }];

async function alone(m: Model, reqs: readonly GenerateRequest[]): Promise<number[][]> {
  const out: number[][] = [];
  for (const r of reqs) out.push((await m.generate(r)).ids);
  return out;
}

describe('concurrent requests = each alone', () => {
  let tiny: TinyModel;
  beforeAll(async () => { tiny = await writeTinyModel({ diffusion: true, seed: 41 }); });
  afterAll(() => rmSync(tiny.dir, { recursive: true, force: true }));

  it('bundled child: images, static / dynamic / AR mode, more requests than slots', async () => {
    const reqs: GenerateRequest[] = [
      { messages: ask('three-shapes.png', 'Describe the image.'), steps: 8, remasking: 'static' },
      { messages: ask('two-shapes.png', 'How many shapes are there?'), remasking: 'dynamic', threshold: 0.9 },
      { messages: ask(null, 'Reverse the word: shape') },
      { messages: ask('one-shape.jpg', 'What is at the top left?'), steps: 4 },
      { messages: ask('three-shapes.png', 'Describe the image.'), mode: 'ar', maxTokens: 12 },
      { messages: ask(null, 'Count the letters in: circle'), remasking: 'dynamic', threshold: 0.85 },
    ];
    const m = await loadModel(undefined, { threads: 2, maxBatch: 4, precision: 'exact' } as never);
    try {
      const want = await alone(m, reqs);
      const sequential = m.batching.forwards;
      const got = await Promise.all(reqs.map((r) => m.generate(r).then((x) => x.ids)));
      expect(got).toEqual(want);
      const b = m.batching;
      expect(b.maxSequences).toBeGreaterThan(1);                // they did share forwards:
      expect(b.forwards - sequential).toBeLessThan(sequential);  // fewer than one after another
      expect(b.open).toBe(0);
    } finally {
      m.dispose();
    }
  }, 120_000);

  it("a request arriving while others decode: its prefill and first block run in forwards of their own", async () => {
    const m = await loadModel(tiny.dir, { threads: 2, maxBatch: 4 });
    const sched = (m as unknown as { sched: { onForward: ((slots: number[]) => void) | null } }).sched;
    const forwards: number[][] = [];
    try {
      // Three requests decoding (each past its first block), then the newcomer.
      const started: Promise<void>[] = [];
      const others = [0, 1, 2].map((i) => {
        const s = m.stream({ prompt: `background request number ${i}`, maxTokens: 96, stopTokens: [], steps: 4 });
        let first!: () => void;
        started.push(new Promise<void>((r) => { first = r; }));
        return (async () => { for await (const ev of s) if (ev.type === 'block') first(); first(); })();
      });
      await Promise.all(started);
      sched.onForward = (slots) => forwards.push(slots);
      const s = m.stream({ prompt: 'the newcomer asks a longer question of its own, with words enough for a prefill', maxTokens: 16, stopTokens: [], steps: 4 });
      for await (const ev of s) if (ev.type === 'block') break;
      const upTo = forwards.length;
      sched.onForward = null;
      await Promise.all(others);
      // The others' slots are those of their shared forwards; the newcomer has the fourth.
      const theirs = new Set(forwards.filter((f) => f.length > 1).flat());
      expect(theirs.size).toBe(3);
      const mine = [0, 1, 2, 3].find((x) => !theirs.has(x))!;
      const seen = forwards.slice(0, upTo);
      const from = seen.findIndex((f) => f.includes(mine)), to = seen.findLastIndex((f) => f.includes(mine)) + 1;
      // Its prefill and every denoising step of its first block, none shared with the others.
      expect(to - from).toBeGreaterThanOrEqual(3);
      expect(seen.slice(from, to)).toEqual(Array.from({ length: to - from }, () => [mine]));
    } finally {
      m.dispose();
    }
  }, 120_000);

  it('random checkpoint: sampling with seeds, separate commits, long prompts chunked beside decodes', async () => {
    const long = 'a long prompt '.repeat(20);
    const reqs: GenerateRequest[] = [
      { prompt: long, maxTokens: 24, temperature: 0.8, seed: 7, steps: 4 },
      { prompt: 'short', maxTokens: 17, engine: { mergeCommit: false }, steps: 2 },
      { prompt: long + long, maxTokens: 9, mode: 'ar', temperature: 1, topK: 20, seed: 3 },
      { prompt: 'mid length prompt here', maxTokens: 30, remasking: 'dynamic', threshold: 0.2 },
    ];
    const m = await loadModel(tiny.dir, { threads: 2, maxBatch: 3, maxBatchRows: 16, precision: 'exact' } as never);
    try {
      const want = await alone(m, reqs);
      const got = await Promise.all(reqs.map((r) => m.generate(r).then((x) => x.ids)));
      expect(got).toEqual(want);
      expect(m.batching.prefillChunks).toBeGreaterThan(0);
    } finally {
      m.dispose();
    }
  }, 120_000);

  it('AR requests decoding side by side share one remask op per forward and still get their own tokens', async () => {
    // Greedy ones and seeded samplers with equal settings merge (their rows' ids and confidences
    // are row-wise in the op); a different seed or temperature keeps its own op.
    const reqs: GenerateRequest[] = [
      { prompt: 'first greedy', maxTokens: 14, mode: 'ar' },
      { prompt: 'second greedy request', maxTokens: 11, mode: 'ar' },
      { prompt: 'a sampler', maxTokens: 13, mode: 'ar', temperature: 0.9, topK: 30, seed: 5 },
      { prompt: 'another sampler, same settings', maxTokens: 12, mode: 'ar', temperature: 0.9, topK: 30, seed: 5 },
      { prompt: 'a sampler with its own seed', maxTokens: 10, mode: 'ar', temperature: 0.9, topK: 30, seed: 6 },
      { prompt: 'third greedy', maxTokens: 9, mode: 'ar' },
    ];
    const m = await loadModel(tiny.dir, { threads: 2, maxBatch: 6, precision: 'exact' } as never);
    try {
      const want = await alone(m, reqs);
      expect(m.batching.sharedRemaskRows).toBe(0);
      const got = await Promise.all(reqs.map((r) => m.generate(r).then((x) => x.ids)));
      expect(got).toEqual(want);
      expect(m.batching.sharedRemaskRows).toBeGreaterThan(0);
    } finally {
      m.dispose();
    }
  }, 120_000);

  it('an aborted request leaves the others untouched; a waiting one rejects at once', async () => {
    const m = await loadModel(tiny.dir, { threads: 2, maxBatch: 2, precision: 'exact' } as never);
    try {
      const solo = (await m.generate({ prompt: 'keep going', maxTokens: 40 })).ids;
      const ac = new AbortController();
      const a = m.generate({ prompt: 'to be aborted', maxTokens: 64, signal: ac.signal });
      const b = m.generate({ prompt: 'keep going', maxTokens: 40 });
      const ac2 = new AbortController();
      const c = m.generate({ prompt: 'waits for a slot', maxTokens: 8, signal: ac2.signal });
      await new Promise((r) => setTimeout(r, 5));
      ac2.abort(new Error('not waiting'));
      ac.abort(new Error('stop it'));
      await expect(c).rejects.toThrow('not waiting');
      await expect(a).rejects.toThrow('stop it');
      expect((await b).ids).toEqual(solo);
      expect(m.batching.open).toBe(0);
    } finally {
      m.dispose();
    }
  }, 60_000);
});
