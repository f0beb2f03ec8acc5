// The public API's guards on a real model: the MASK default for block diffusion on a checkpoint
// without a diffusion config, option checks before any image is read, the prompt byte cap on
// the synchronous path, and stats sized to the output. (The process-isolated hostile corpus is
// test/hostile/; these are the in-process checks of the same rules.)
import { rmSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { OptionError } from '../../lib/errors.js';
import { loadModel } from '../../lib/index.js';
import { DEFAULT_MASK_TOKEN_ID } from '../../lib/weights/config.js';
import { writeTinyModel, type TinyModel } from '../helpers/tinyModel.js';

const made: TinyModel[] = [];
afterAll(() => { for (const m of made) rmSync(m.dir, { recursive: true, force: true }); });

describe('API guards', () => {
  it('block diffusion on a checkpoint without a diffusion config masks with 151671, as the loader does everywhere', async () => {
    // A stock Qwen2-layout model with an embedding large enough to hold row 151671.
    const big = await writeTinyModel({ diffusion: false, seed: 8, dims: { hiddenSize: 16, numLayers: 1, numHeads: 2, numKvHeads: 1, intermediateSize: 16, vocabSize: 151680 } });
    made.push(big);
    const model = await loadModel(big.dir, { threads: 1 });
    try {
      expect(model.config.diffusion).toBeNull();
      const maskedIds = new Set<number>();
      for await (const ev of model.stream({ promptIds: [1, 2, 3], mode: 'diffusion', blockSize: 4, steps: 4, maxTokens: 8, stopTokens: [], stepEvents: true })) {
        if (ev.type === 'step') ev.ids.forEach((id, i) => { if (ev.masked[i]) maskedIds.add(id); });
      }
      expect([...maskedIds]).toEqual([DEFAULT_MASK_TOKEN_ID]);
    } finally {
      model.dispose();
    }
    // A vocabulary without that row: a typed error naming the id, not a silent vocab_size − 1.
    const small = await writeTinyModel({ diffusion: false, seed: 9 });
    made.push(small);
    const m2 = await loadModel(small.dir, { threads: 1 });
    try {
      await expect(m2.generate({ promptIds: [1, 2], mode: 'diffusion', blockSize: 4, maxTokens: 4 }))
        .rejects.toThrow(/do not include the default MASK id 151671/);
    } finally {
      m2.dispose();
    }
  });

  it('decode options are checked before any image is read', async () => {
    const model = await loadModel(undefined, { threads: 1 });
    try {
      const req = { messages: [{ role: 'user' as const, content: [{ type: 'image' as const, image: '/no/such/image.png' }, { type: 'text' as const, text: 'Hi' }] }] };
      await expect(model.generate({ ...req, steps: 1e9 })).rejects.toMatchObject({ name: 'OptionError', option: 'steps' });
      await expect(model.generate(req)).rejects.toMatchObject({ name: 'ImageError' });
    } finally {
      model.dispose();
    }
  });

  it('promptIds() (synchronous) refuses an oversized prompt by its bytes, before tokenizing', async () => {
    const model = await loadModel(undefined, { threads: 1 });
    try {
      expect(() => model.promptIds({ prompt: 'abc '.repeat(2_000_000) })).toThrow(OptionError);
      expect(() => model.promptIds({ prompt: 'abc '.repeat(2_000_000) })).toThrow(/bytes, more than the \d+ that can fit in 1023 tokens/);
      expect(model.promptIds({ prompt: 'Hi' }).length).toBeGreaterThan(0);
    } finally {
      model.dispose();
    }
  });

  it('stats.steps holds one record per returned token; options report the steps used', async () => {
    const model = await loadModel(undefined, { threads: 1 });
    try {
      const r = await model.generate({ prompt: 'Reverse the letters: a b', maxTokens: 64, blockSize: 4 });
      expect(r.finishReason).toBe('stop');
      expect(r.stats.steps).toHaveLength(r.ids.length);
      expect(r.stats.steps.every((s) => s !== null)).toBe(true);
      expect(r.options.steps).toBe(4);   // default min(8, bs)
    } finally {
      model.dispose();
    }
  });
});
