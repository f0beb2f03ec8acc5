// Stop strings (GenerateRequest.stop) and the token API (tokenize, detokenize, countTokens) on
// the bundled DiffusionVL child and its AR parent.
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel, OptionError, type ChatMessage, type GenerateRequest, type Model, type StreamEvent } from '../../lib/index.js';

const THREE = fileURLToPath(new URL('../../examples/three-shapes.png', import.meta.url));
const describeImage: ChatMessage[] = [{ role: 'user', content: [{ type: 'image', image: THREE }, { type: 'text', text: 'Describe the image.' }] }];

async function collect(model: Model, req: GenerateRequest): Promise<{ blocks: string[]; done: Extract<StreamEvent, { type: 'done' }>['result'] }> {
  const blocks: string[] = [];
  let done: Extract<StreamEvent, { type: 'done' }>['result'] | undefined;
  for await (const ev of model.stream(req)) {
    if (ev.type === 'block') blocks.push(ev.text);
    else if (ev.type === 'done') done = ev.result;
  }
  return { blocks, done: done! };
}

let child: Model, parent: Model;
beforeAll(async () => {
  child = await loadModel('shapes-diffusionvl', { threads: 1 });
  parent = await loadModel('shapes-ar', { threads: 1 });
});
afterAll(() => { child?.dispose(); parent?.dispose(); });

describe('stop strings', () => {
  for (const which of ['diffusion', 'ar'] as const) {
    it(`${which}: a stop string split across two blocks ends the text before it, streamed and final alike`, async () => {
      const model = which === 'diffusion' ? child : parent;
      const base = await collect(model, { messages: describeImage, maxTokens: 64 });
      const full = base.done.text;
      expect(base.blocks.join('')).toBe(full);
      // A stop string made of the end of one block's text and the start of a later one's.
      let at = 0, k = 0;
      while (k < base.blocks.length - 1 && !(base.blocks[k].length >= 2 && at + base.blocks[k].length > 10)) at += base.blocks[k++].length;
      const cut = at + base.blocks[k].length;
      const stop = full.slice(cut - 2, cut + 2);
      expect(stop).toHaveLength(4);
      const first = full.indexOf(stop);

      const r = await collect(model, { messages: describeImage, maxTokens: 64, stop: ['never appears', stop] });
      expect(r.done.finishReason).toBe('stop');
      expect(r.done.stopString).toBe(stop);
      expect(r.done.text).toBe(full.slice(0, first));
      expect(r.blocks.join('')).toBe(r.done.text);
      for (const b of r.blocks) expect(b).not.toContain(stop.slice(0, 3));   // nothing of the stop string was shown
      // The ids end with the token that completed the stop string: a prefix of the plain run's.
      expect(base.done.ids.slice(0, r.done.ids.length)).toEqual(r.done.ids);
      expect(child.detokenize(r.done.ids).length).toBeGreaterThanOrEqual(first + stop.length);
      expect(r.done.stats.forwards).toBeLessThan(base.done.stats.forwards);   // decoding stopped there
    });
  }

  it('a single string works; no match leaves the run as it was; bad values are OptionErrors', async () => {
    const plain = await child.generate({ messages: describeImage, maxTokens: 64 });
    const one = await child.generate({ messages: describeImage, maxTokens: 64, stop: ' at' });
    expect(one.text).toBe(plain.text.slice(0, plain.text.indexOf(' at')));
    const none = await child.generate({ messages: describeImage, maxTokens: 64, stop: ['zzz'] });
    expect(none.ids).toEqual(plain.ids);
    expect(none.finishReason).toBe(plain.finishReason);
    expect(none.stopString).toBeUndefined();
    for (const bad of ['', [''], [1], 5, Array(17).fill('x')]) {
      await expect(child.generate({ prompt: 'x', stop: bad as never })).rejects.toThrow(OptionError);
    }
  });
});

describe('tokens', () => {
  it('tokenize / detokenize round-trip; special tokens kept on request', () => {
    const ids = child.tokenize('Describe the image.');
    expect(ids.length).toBeGreaterThan(1);
    expect(child.detokenize(ids)).toBe('Describe the image.');
    const withEnd = child.tokenize('Hi<|im_end|>');
    expect(withEnd.at(-1)).toBe(child.config.eosTokenId);
    expect(child.detokenize(withEnd)).toBe('Hi');
    expect(child.detokenize(withEnd, { skipSpecial: false })).toBe('Hi<|im_end|>');
    expect(() => child.tokenize(5 as never)).toThrow(OptionError);
  });

  it('countTokens lays the prompt out as generate() does, images included, without running the tower', async () => {
    const c = await child.countTokens({ messages: describeImage });
    const r = await child.generate({ messages: describeImage, maxTokens: 8 });
    expect(c.promptTokens).toBe(r.stats.promptTokens);
    expect(c.imageTokens).toEqual(r.stats.imageTokens);
    expect(c.textTokens + c.imageTokens[0]).toBe(c.promptTokens);
    expect(c.ids).toEqual(child.promptIds({ messages: describeImage }));
    const t = await parent.countTokens({ prompt: 'Reverse the letters: a b' });
    expect(t.imageTokens).toEqual([]);
    expect(t.promptTokens).toBe((await parent.generate({ prompt: 'Reverse the letters: a b', maxTokens: 4 })).stats.promptTokens);
  });
});
