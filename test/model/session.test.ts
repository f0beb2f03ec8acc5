// Chat sessions and the prefix cache (lib/model/session.ts, prefix-cache.ts, kv-reuse.ts): every
// turn's ids equal a cold generate() of the same conversation (temperature 0, and sampled with
// a seed), while turn N prefills only what is new and images are encoded once. Both decoding
// modes (the bundled DiffusionVL child and its AR parent), both vision routes (Qwen2.5-VL on the
// bundled model, SigLIP on a tiny random checkpoint), sessions interleaved with each other and
// with plain generate() (the K/V copied out and back), aborts, and the prefix cache's LRU.
import { rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel, DisposedError, OptionError, type ChatMessage, type ContentPart, type GenerateRequest, type GenerateResult, type Model } from '../../lib/index.js';
import { writeTinyModel, type TinyModel } from '../helpers/tinyModel.js';

const example = (name: string) => fileURLToPath(new URL(`../../examples/${name}`, import.meta.url));
const THREE = example('three-shapes.png'), TWO = example('two-shapes.png'), ONE = example('one-shape.jpg');
const SMALL = fileURLToPath(new URL('../fixtures/images/inputs/rgb-37x23.png', import.meta.url));

type Turn = { text: string; images?: string[] };

const userMessage = (t: Turn): ChatMessage => (t.images?.length
  ? { role: 'user', content: [...t.images.map((image): ContentPart => ({ type: 'image', image })), { type: 'text', text: t.text }] }
  : { role: 'user', content: t.text });

/**
 * Runs `turns` on a fresh session and, after each, a cold generate() of the same conversation
 * (the session's own history, so both see the same earlier replies); returns both results.
 */
async function converse(model: Model, turns: Turn[], opts: Omit<GenerateRequest, 'messages'> = {}): Promise<{ warm: GenerateResult; cold: GenerateResult }[]> {
  const chat = model.createSession();
  const out = [];
  try {
    for (const t of turns) {
      const before = chat.messages;
      const warm = await chat.send(t.text, { ...opts, images: t.images });
      const cold = await model.generate({ ...opts, messages: [...before, userMessage(t)] });
      out.push({ warm, cold });
    }
  } finally {
    chat.dispose();
  }
  return out;
}

/** Every turn equals its cold twin; turn ≥ 2 reuses the whole previous prompt (block-aligned) and encodes no image. */
function expectReuse(runs: { warm: GenerateResult; cold: GenerateResult }[], blockSize: number | 'ar'): void {
  runs.forEach(({ warm, cold }, i) => {
    const label = `turn ${i + 1}`;
    expect(warm.ids, label).toEqual(cold.ids);
    expect(warm.text, label).toBe(cold.text);
    expect(warm.finishReason, label).toBe(cold.finishReason);
    expect(warm.stats.promptTokens, label).toBe(cold.stats.promptTokens);
    expect(cold.stats.cachedTokens, label).toBe(0);
    const P = warm.stats.promptTokens, L0 = warm.stats.cachedTokens;
    // Prefill covers exactly the uncached whole blocks (diffusion) or the uncached tokens (AR).
    expect(warm.stats.prefillTokens, label).toBe(blockSize === 'ar' ? P - L0 : Math.floor(P / blockSize) * blockSize - L0);
    if (i === 0) { expect(L0, label).toBe(0); return; }
    const prevP = runs[i - 1].warm.stats.promptTokens;
    expect(L0, label).toBeGreaterThanOrEqual(blockSize === 'ar' ? prevP : Math.floor(prevP / blockSize) * blockSize);
    expect(warm.stats.forwards, label).toBeLessThanOrEqual(cold.stats.forwards);
  });
}

describe('ChatSession on the bundled models', () => {
  let child: Model, parent: Model;
  beforeAll(async () => {
    child = await loadModel('shapes-diffusionvl', { threads: 1 });
    parent = await loadModel('shapes-ar', { threads: 1 });
  });
  afterAll(() => { child?.dispose(); parent?.dispose(); });

  const TURNS: Turn[] = [
    { text: 'Describe the image.', images: [THREE] },
    { text: 'What is at the top left?' },
    { text: 'How many shapes are there?', images: [TWO] },
    { text: 'Reverse the letters: k e y' },
  ];

  it('diffusion: every turn equals a cold generate(); turn 2+ prefills only the new blocks, images encoded once', async () => {
    const runs = await converse(child, TURNS, { maxTokens: 48 });
    expectReuse(runs, 8);
    expect(runs[0].warm.text).toBe(runs[0].cold.text);
    expect(runs[0].warm.stats.timings.towerMs).toBeGreaterThan(0);
    expect(runs[1].warm.stats.timings.towerMs).toBe(0);   // no image encoded again
    expect(runs[3].warm.stats.timings.towerMs).toBe(0);
    // Turn 2 computes (prefill + forwards) far fewer prompt positions than its cold twin.
    expect(runs[1].warm.stats.prefillTokens).toBeLessThan(runs[1].cold.stats.prefillTokens / 3);
  });

  it('diffusion: dynamic remasking, other steps, a non-default block size, and seeded sampling', async () => {
    expectReuse(await converse(child, TURNS.slice(0, 3), { maxTokens: 32, remasking: 'dynamic', threshold: 0.7, steps: 4 }), 8);
    expectReuse(await converse(child, TURNS.slice(0, 2), { maxTokens: 24, blockSize: 4, steps: 4 }), 4);
    expectReuse(await converse(child, TURNS.slice(0, 3), { maxTokens: 32, temperature: 0.8, topP: 0.9, seed: 7 }), 8);
  });

  it('a reused prefix that ends inside a picture: the rest of its rows come from the kept features', async () => {
    // Block size 40: the answer ends in the straddling block [40, 80), which is never committed,
    // so turn 2 reuses [0, 40) and the picture spans [23, 59).
    const turn1: Turn = { text: 'What is at the top left?', images: [THREE] };
    const count = await child.countTokens({ messages: [userMessage(turn1)] });
    const start = count.ids.indexOf(-200), end = start + count.imageTokens[0];
    // Questions about the bottom of the picture (its later feature rows): tried, the answers
    // change when those rows are not spliced.
    for (const q of ['What is at the bottom right?', 'What is at the bottom left?']) {
      const runs = await converse(child, [turn1, { text: q }], { maxTokens: 24, blockSize: 40, steps: 40 });
      expectReuse(runs, 40);
      const L0 = runs[1].warm.stats.cachedTokens;
      expect(L0).toBeGreaterThan(start);
      expect(L0).toBeLessThan(end);
      expect(runs[1].warm.stats.timings.towerMs).toBe(0);
    }
  });

  it('AR: every turn equals a cold generate(); turn 2+ prefills only the new tokens', async () => {
    const runs = await converse(parent, TURNS, { maxTokens: 48 });
    expectReuse(runs, 'ar');
    expect(runs.every((r) => r.warm.mode === 'ar')).toBe(true);
    expect(runs[1].warm.stats.timings.towerMs).toBe(0);
  });

  it('stats count turns, reused positions and images; reset starts over', async () => {
    await using chat = child.createSession({ defaults: { maxTokens: 24 } });
    await chat.send('Describe the image.', { images: [THREE] });
    await chat.send('What is at the bottom right?');
    const s = chat.stats;
    expect(s.turns).toBe(2);
    expect(s.imagesEncoded).toBe(1);
    expect(s.imagesReused).toBe(1);
    expect(s.cachedTokens).toBeGreaterThan(0);
    expect(s.kvTokens).toBeGreaterThan(0);
    expect(chat.messages.map((m) => m.role)).toEqual(['user', 'assistant', 'user', 'assistant']);
    chat.reset();
    expect(chat.messages).toEqual([]);
    expect(chat.stats.kvTokens).toBe(0);
    const r = await chat.send('Reverse the letters: a b');
    expect(r.stats.cachedTokens).toBe(0);
  });

  it('sessions interleaved with each other and with generate(): K/V copied out and back, ids still exact', async () => {
    const a = child.createSession(), b = child.createSession();
    try {
      const msgsA: ChatMessage[] = [], msgsB: ChatMessage[] = [];
      const step = async (chat: typeof a, msgs: ChatMessage[], t: Turn) => {
        const warm = await chat.send(t.text, { images: t.images, maxTokens: 32 });
        msgs.push(userMessage(t));
        const cold = await child.generate({ messages: msgs, maxTokens: 32 });
        msgs.push({ role: 'assistant', content: cold.text });
        expect(warm.ids).toEqual(cold.ids);
        return warm;
      };
      await step(a, msgsA, { text: 'Describe the image.', images: [THREE] });
      await step(b, msgsB, { text: 'Describe the image.', images: [ONE] });
      const a2 = await step(a, msgsA, { text: 'What is at the top right?' });   // a's K/V were copied out by b, restored now
      expect(a2.stats.cachedTokens).toBeGreaterThan(0);
      await child.generate({ prompt: 'Reverse the letters: x y', maxTokens: 16 });   // a plain run in between
      const b2 = await step(b, msgsB, { text: 'What is at the top right?' });
      expect(b2.stats.cachedTokens).toBeGreaterThan(0);
      const a3 = await step(a, msgsA, { text: 'How many shapes are there?' });
      expect(a3.stats.cachedTokens).toBeGreaterThan(a2.stats.cachedTokens);
      expect(a.stats.bytes).toBeGreaterThan(0);   // its image features (and a copy when not resident)
    } finally {
      a.dispose(); b.dispose();
    }
  });

  it('turns of one session queue up in order; a failed or aborted turn leaves the conversation as it was', async () => {
    await using chat = child.createSession({ defaults: { maxTokens: 24 } });
    const [r1, r2] = await Promise.all([chat.send('Describe the image.', { images: [THREE] }), chat.send('What is at the top left?')]);
    expect(chat.messages).toHaveLength(4);
    expect(chat.messages[3]).toEqual({ role: 'assistant', content: r2.text });
    expect(chat.messages[1]).toEqual({ role: 'assistant', content: r1.text });

    const reason = new Error('user cancelled');
    const ac = new AbortController();
    const p = (async () => {
      for await (const ev of chat.stream('Count the shapes.', { maxTokens: 64, stopTokens: [], signal: ac.signal })) if (ev.type === 'block') ac.abort(reason);
    })();
    await expect(p).rejects.toBe(reason);
    await expect(chat.send('x', { steps: 0 })).rejects.toThrow(OptionError);
    expect(chat.messages).toHaveLength(4);
    const before = chat.messages;
    const r3 = await chat.send('How many shapes are there?');
    const cold = await child.generate({ messages: [...before, { role: 'user', content: 'How many shapes are there?' }], maxTokens: 24 });
    expect(r3.ids).toEqual(cold.ids);
    expect(r3.stats.cachedTokens).toBeGreaterThan(0);   // what the aborted turn did not touch is still there
  });

  it('dispose: a disposed session throws DisposedError; disposing the model disposes its sessions', async () => {
    const m = await loadModel('shapes-diffusionvl', { threads: 1 });
    const s = m.createSession();
    await s.send('Reverse the letters: a b', { maxTokens: 16 });
    s.dispose();
    s.dispose();
    await expect(s.send('again')).rejects.toThrow(DisposedError);
    const t = m.createSession();
    m.dispose();
    expect(t.disposed).toBe(true);
    expect(() => m.createSession()).toThrow(DisposedError);
  });
});

describe('PrefixCache', () => {
  let child: Model;
  beforeAll(async () => { child = await loadModel('shapes-diffusionvl', { threads: 1 }); });
  afterAll(() => child?.dispose());

  it('a resent conversation reuses its prefix (hit), ids equal a cold run; the image is not encoded again', async () => {
    await using cache = child.createPrefixCache({ maxBytes: 64 << 20 });
    const m1: ChatMessage[] = [userMessage({ text: 'Describe the image.', images: [THREE] })];
    const r1 = await child.generate({ messages: m1, maxTokens: 48, prefixCache: cache });
    expect(r1.stats.cachedTokens).toBe(0);
    expect(cache.stats).toMatchObject({ hits: 0, misses: 1, entries: 1, images: 1 });
    const m2: ChatMessage[] = [...m1, { role: 'assistant', content: r1.text }, { role: 'user', content: 'What is at the top left?' }];
    const r2 = await child.generate({ messages: m2, maxTokens: 48, prefixCache: cache });
    const cold2 = await child.generate({ messages: m2, maxTokens: 48 });
    expect(r2.ids).toEqual(cold2.ids);
    expect(r2.stats.cachedTokens).toBeGreaterThanOrEqual(Math.floor(r1.stats.promptTokens / 8) * 8);
    expect(r2.stats.timings.towerMs).toBe(0);
    // cold2 took the model cache, so the entry was copied out; a third request restores it.
    expect(cache.stats.bytes).toBeGreaterThan(0);
    const m3: ChatMessage[] = [...m2, { role: 'assistant', content: r2.text }, { role: 'user', content: 'How many shapes are there?' }];
    const r3 = await child.generate({ messages: m3, maxTokens: 48, prefixCache: cache });
    expect(r3.ids).toEqual((await child.generate({ messages: m3, maxTokens: 48 })).ids);
    const s = cache.stats;
    expect(s.hits).toBe(2);
    expect(s.hitTokens).toBe(r2.stats.cachedTokens + r3.stats.cachedTokens);
    // An edited earlier turn branches: it still reuses the common part, the old branch stays.
    const edited: ChatMessage[] = [...m1, { role: 'assistant', content: r1.text }, { role: 'user', content: 'What is at the bottom right?' }];
    const r4 = await child.generate({ messages: edited, maxTokens: 48, prefixCache: cache });
    expect(r4.ids).toEqual((await child.generate({ messages: edited, maxTokens: 48 })).ids);
    expect(r4.stats.cachedTokens).toBeGreaterThan(0);
    expect(cache.stats.entries).toBeGreaterThanOrEqual(2);
  });

  it('the byte cap: entries and images are dropped least recently used first; 0 bytes keeps only the resident prefix', async () => {
    await using small = child.createPrefixCache({ maxBytes: 0 });
    const q = (text: string): ChatMessage[] => [userMessage({ text, images: [TWO] })];
    await child.generate({ messages: q('Describe the image.'), maxTokens: 16, prefixCache: small });
    await child.generate({ prompt: 'Reverse the letters: a b', maxTokens: 8 });   // takes the cache: the copy does not fit
    expect(small.stats.bytes).toBe(0);
    expect(small.stats.evictions).toBeGreaterThan(0);
    const r = await child.generate({ messages: q('What is at the top left?'), maxTokens: 16, prefixCache: small });
    expect(r.stats.cachedTokens).toBe(0);
    expect(small.stats.misses).toBe(2);

    expect(() => child.createPrefixCache({ maxBytes: -1 })).toThrow(/maxBytes/);
    await expect(child.generate({ prompt: 'x', prefixCache: {} as never })).rejects.toThrow(/prefixCache/);
  });
});

describe('both vision routes, random tiny checkpoints', () => {
  let siglip: TinyModel, qwen: TinyModel;
  beforeAll(async () => {
    siglip = await writeTinyModel({ diffusion: true, seed: 31, vision: { kind: 'siglip', hiddenSize: 32, numLayers: 1, numHeads: 2, intermediateSize: 48, patchSize: 14, imageSize: 384 } });
    qwen = await writeTinyModel({ diffusion: true, seed: 32, pixels: { min: 28 * 28 * 4, max: 28 * 28 * 16 }, vision: { kind: 'qwen2_5_vl', depth: 2, hiddenSize: 32, numHeads: 2, intermediateSize: 48, patchSize: 14, temporalPatchSize: 2, spatialMergeSize: 2, fullAttBlockIndexes: [1] } });
  });
  afterAll(() => { for (const m of [siglip, qwen]) if (m) rmSync(m.dir, { recursive: true, force: true }); });

  const TURNS: Turn[] = [{ text: 'What is it?', images: [SMALL] }, { text: 'And now?' }, { text: 'Compare.', images: [THREE] }, { text: 'Done?' }];

  it('SigLIP route (ar-lm): exact turns; going from one image to two re-encodes the first, as a cold prompt does', async () => {
    await using model = await loadModel(siglip.dir, { threads: 1 });
    const runs = await converse(model, TURNS, { maxTokens: 16, steps: 4 });
    expectReuse(runs.slice(0, 2), 8);
    runs.forEach(({ warm, cold }, i) => expect(warm.ids, `turn ${i + 1}`).toEqual(cold.ids));
    expect(runs[1].warm.stats.timings.towerMs).toBe(0);
    expect(runs[2].warm.stats.imageTokens).toEqual([730, 730]);
    expect(runs[3].warm.stats.timings.towerMs).toBe(0);
    expect(runs[3].warm.stats.cachedTokens).toBeGreaterThan(1460);
  });

  it('Qwen2.5-VL route, both modes on one random checkpoint', async () => {
    await using model = await loadModel(qwen.dir, { threads: 1 });
    expectReuse(await converse(model, TURNS, { maxTokens: 16, steps: 4 }), 8);
    expectReuse(await converse(model, TURNS, { maxTokens: 12, mode: 'ar' }), 'ar');
  });
});
