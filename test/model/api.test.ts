// The public API end to end on small random checkpoints with a real tokenizer: generate and
// stream in both modes, stats, abort, dispose, concurrency, event-loop responsiveness, options.
import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel, DisposedError, OptionError, type Model, type StreamEvent } from '../../lib/index.js';
import { writeTinyModel, type TinyModel } from '../helpers/tinyModel.js';

let diff: TinyModel, ar: TinyModel;
beforeAll(async () => {
  diff = await writeTinyModel({ diffusion: true, seed: 3 });
  ar = await writeTinyModel({ diffusion: false, seed: 4 });
});
afterAll(() => { for (const m of [diff, ar]) rmSync(m.dir, { recursive: true, force: true }); });

describe('loadModel + generate', () => {
  it('diffusion: generates, reports stats, and streaming yields the same text block by block', async () => {
    await using model = await loadModel(diff.dir, { threads: 2 });
    expect(model.isDiffusion).toBe(true);
    const req = { prompt: 'Describe the image.', maxTokens: 24, steps: 4 };
    const r = await model.generate(req);
    expect(r.mode).toBe('diffusion');
    expect(r.ids.length).toBeGreaterThan(0);
    expect(r.ids.length).toBeLessThanOrEqual(24);
    expect(r.raw).toHaveLength(24);
    expect(typeof r.text).toBe('string');
    const s = r.stats;
    expect(s.promptTokens).toBeGreaterThan(8);
    expect(s.generatedTokens).toBe(r.ids.length);
    expect(s.forwards).toBeGreaterThan(1);
    expect(s.tokensPerForward).toBeCloseTo(s.generatedTokens / s.forwards, 10);
    expect(s.steps.filter(Boolean).length).toBeGreaterThan(0);
    for (const st of s.steps) if (st) expect(st.confidence).toBeGreaterThan(0);

    const events: StreamEvent[] = [];
    for await (const ev of model.stream(req)) events.push(ev);
    const done = events.at(-1)!;
    expect(done.type).toBe('done');
    if (done.type !== 'done') return;
    expect(done.result.ids).toEqual(r.ids);   // greedy: deterministic
    const blocks = events.filter((e) => e.type === 'block') as Extract<StreamEvent, { type: 'block' }>[];
    expect(blocks.length).toBeGreaterThan(0);
    expect(blocks.map((b) => b.text).join('')).toBe(r.text);
    for (const b of blocks) expect(b.text).not.toContain('\uFFFD');
  });

  it('diffusion: step events show the canvas filling in', async () => {
    await using model = await loadModel(diff.dir, { threads: 2 });
    const steps = [];
    for await (const ev of model.stream({ prompt: 'Hi', maxTokens: 16, steps: 8, stepEvents: true })) if (ev.type === 'step') steps.push(ev);
    expect(steps.length).toBeGreaterThan(2);
    const first = steps[0];
    expect(first.masked.some(Boolean)).toBe(true);
    expect(first.revealed.length).toBe(1);   // static, bs 8, S 8: one token per step
  });

  it('the merged commit gives the same ids with fewer forwards', async () => {
    await using model = await loadModel(diff.dir, { threads: 2 });
    const a = await model.generate({ prompt: 'Count to ten.', maxTokens: 32, steps: 2, stopTokens: [] });
    const b = await model.generate({ prompt: 'Count to ten.', maxTokens: 32, steps: 2, stopTokens: [], engine: { mergeCommit: false } });
    expect(a.ids).toEqual(b.ids);
    expect(b.stats.forwards - a.stats.forwards).toBe(a.stats.blockIterations.length - 1);
  });

  it('the prefill merged into the first denoising forward gives the same ids, one forward fewer, and the tokens it revealed are not decode-phase tokens', async () => {
    // The bundled child with a picture: the merged forward also splices the image features.
    await using model = await loadModel(undefined, { threads: 2 });
    const req = {
      messages: [{ role: 'user' as const, content: [{ type: 'image' as const, image: 'examples/three-shapes.png' }, { type: 'text' as const, text: 'Describe the image.' }] }],
      maxTokens: 32,
    };
    for (const extra of [{}, { remasking: 'static' as const, steps: 4 }, { engine: { mergeCommit: false } }]) {
      const a = await model.generate({ ...req, ...extra });
      const b = await model.generate({ ...req, ...extra, engine: { ...(extra as { engine?: object }).engine, mergePrefill: false } });
      expect(a.ids).toEqual(b.ids);
      expect(a.stats.steps).toEqual(b.stats.steps);
      expect(b.stats.forwards - a.stats.forwards).toBe(1);
      expect(b.stats.prefillGenerated).toBe(0);
      expect(a.stats.prefillGenerated).toBeGreaterThan(0);
      expect(a.stats.timings.decodeTokens).toBe(a.stats.generatedTokens - a.stats.prefillGenerated);
      expect(b.stats.timings.decodeTokens).toBe(b.stats.generatedTokens);
    }
  });

  it('AR mode on a stock (non-diffusion) checkpoint uses its chat template', async () => {
    await using model = await loadModel(ar.dir, { threads: 2 });
    expect(model.isDiffusion).toBe(false);
    const r = await model.generate({ prompt: 'Hello', maxTokens: 12 });
    expect(r.mode).toBe('ar');
    expect(r.stats.forwards).toBe(r.ids.length);
    await expect(model.generate({ prompt: 'x', mode: 'diffusion' })).rejects.toThrow(OptionError);
  });

  it('bad options are rejected before any work, with hints', async () => {
    await using model = await loadModel(diff.dir, { threads: 1 });
    await expect(model.generate({ prompt: 'x', steps: 0 })).rejects.toThrow(/steps/);
    await expect(model.generate({ prompt: 'x', threshold: 1.5, remasking: 'dynamic' })).rejects.toThrow(/threshold/);
    await expect(model.generate({ prompt: 'x', temperature: -1 })).rejects.toThrow(OptionError);
    await expect(model.generate({ prompt: 'x', blocksize: 8 } as never)).rejects.toThrow(/blockSize/);
    await expect(model.generate({ prompt: 'x', maxTokens: 100_000 })).rejects.toThrow(/maxTokens|context/);
    await expect(model.generate({} as never)).rejects.toThrow(OptionError);
    await expect(model.generate({ promptIds: [1, 2, 5000], maxTokens: 8 })).rejects.toThrow(/prompt id 5000 at position 2/);
    await expect(model.generate({ promptIds: [1, 2, 3], mode: 'ar', maxTokens: 8 })).resolves.toBeTruthy();
  });

  it('abort stops within a forward and rejects with signal.reason', async () => {
    await using model = await loadModel(diff.dir, { threads: 2 });
    const ac = new AbortController();
    const reason = new Error('user cancelled');
    let blocks = 0;
    const p = (async () => {
      for await (const ev of model.stream({ prompt: 'Go', maxTokens: 200, steps: 8, stopTokens: [], signal: ac.signal })) {
        if (ev.type === 'block' && ++blocks === 1) ac.abort(reason);
      }
    })();
    await expect(p).rejects.toBe(reason);
    expect(blocks).toBe(1);
    // The model is still usable afterwards.
    const r = await model.generate({ prompt: 'Again', maxTokens: 8 });
    expect(r.raw).toHaveLength(8);
  });

  it('dispose during a generation rejects it with DisposedError; later calls throw', async () => {
    const model = await loadModel(diff.dir, { threads: 2 });
    const p = model.generate({ prompt: 'Long one', maxTokens: 400, steps: 8, stopTokens: [] });
    await new Promise((r) => setTimeout(r, 30));
    model.dispose();
    await expect(p).rejects.toThrow(DisposedError);
    expect(model.disposed).toBe(true);
    await expect(model.generate({ prompt: 'x' })).rejects.toThrow(DisposedError);
    model.dispose();   // idempotent
  });

  it('two models generate concurrently; calls on one model queue up', async () => {
    const [a, b] = await Promise.all([loadModel(diff.dir, { threads: 1 }), loadModel(diff.dir, { threads: 1 })]);
    const req = { prompt: 'Same prompt', maxTokens: 24, steps: 4 };
    const [ra, rb, ra2] = await Promise.all([a.generate(req), b.generate(req), a.generate(req)]);
    expect(ra.ids).toEqual(rb.ids);
    expect(ra2.ids).toEqual(ra.ids);
    a.dispose(); b.dispose();
  });

});
