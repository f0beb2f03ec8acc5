// Prompt building: the §4.1 'diffusionvl' format written out by hand (text-only, one image, two
// images, multi-turn), the golden ids with the −200 sentinel on the real Qwen vocabulary, the
// 'template' format through Jinja, and the typed errors raised before any tokenizing.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, ImageError, OptionError } from '../../lib/errors.js';
import {
  buildPrompt, renderPrompt, tokenizeWithImages, IMAGE_TOKEN_INDEX, type ChatMessage,
} from '../../lib/text/prompt.js';
import { loadTokenizer, type TextTokenizer } from '../../lib/text/tokenizer.js';
import { QWEN25_STYLE_TEMPLATE, QWEN_TOKENIZER_DIR, writeTinyTokenizer } from '../helpers/tokenizer.js';

const SYS = '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n';
// §4.1 chunk 1: system turn + `<|im_start|>user\n` (24 ids).
const CHUNK1 = [151644, 8948, 198, 2610, 525, 1207, 16948, 11, 3465, 553, 54364, 14817, 13, 1446,
  525, 264, 10950, 17847, 13, 151645, 198, 151644, 872, 198];
const TAIL = [151645, 198, 151644, 77091, 198]; // `<|im_end|>\n<|im_start|>assistant\n`

describe("'diffusionvl' prompt text (§4.1)", () => {
  it('text only: default system prompt, one user turn, generation prompt', () => {
    const r = renderPrompt([{ role: 'user', content: 'Hi there' }]);
    expect(r.text).toBe(
      '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n'
      + '<|im_start|>user\nHi there<|im_end|>\n'
      + '<|im_start|>assistant\n');
    expect(r.images).toEqual([]);
  });

  it('one image: moved to the front of its turn, followed by a newline', () => {
    const img = { tag: 'cat.png' };
    const r = renderPrompt([{ role: 'user', content: [{ type: 'text', text: 'What is this?' }, { type: 'image', image: img }] }]);
    expect(r.text).toBe(SYS + '<|im_start|>user\n<image>\nWhat is this?<|im_end|>\n<|im_start|>assistant\n');
    expect(r.images).toEqual([img]);
    expect(r.images[0]).toBe(img); // passed through, not copied
  });

  it('two images: `<image> <image>\\n` in front, images in order; image_url gives its url', () => {
    const r = renderPrompt([{
      role: 'user',
      content: [
        { type: 'image', image: 'a.png' },
        { type: 'text', text: 'Compare ' },
        { type: 'image_url', image_url: { url: 'https://x/b.jpg' } },
        { type: 'text', text: 'these.' },
      ],
    }]);
    expect(r.text).toBe(SYS + '<|im_start|>user\n<image> <image>\nCompare these.<|im_end|>\n<|im_start|>assistant\n');
    expect(r.images).toEqual(['a.png', 'https://x/b.jpg']);
  });

  it('multi-turn with a given system message; images of later turns keep their order', () => {
    const messages: ChatMessage[] = [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: [{ type: 'image', image: 1 }, { type: 'text', text: 'Describe it.' }] },
      { role: 'assistant', content: 'A red car.' },
      { role: 'user', content: [{ type: 'text', text: 'And this one?' }, { type: 'image', image: 2 }] },
    ];
    const r = renderPrompt(messages);
    expect(r.text).toBe(
      '<|im_start|>system\nBe brief.<|im_end|>\n'
      + '<|im_start|>user\n<image>\nDescribe it.<|im_end|>\n'
      + '<|im_start|>assistant\nA red car.<|im_end|>\n'
      + '<|im_start|>user\n<image>\nAnd this one?<|im_end|>\n'
      + '<|im_start|>assistant\n');
    expect(r.images).toEqual([1, 2]);
  });

  it('systemPrompt option, no system turn (null), no generation prompt', () => {
    expect(renderPrompt([{ role: 'user', content: 'x' }], { systemPrompt: 'S' }).text)
      .toBe('<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nx<|im_end|>\n<|im_start|>assistant\n');
    expect(renderPrompt([{ role: 'user', content: 'x' }], { systemPrompt: null, addGenerationPrompt: false }).text)
      .toBe('<|im_start|>user\nx<|im_end|>\n');
  });

  it('literal <image> placeholders take their images from options.images', () => {
    const r = renderPrompt([{ role: 'user', content: '<image>\nWhat is this?' }], { images: ['p.png'] });
    expect(r.text).toBe(SYS + '<|im_start|>user\n<image>\nWhat is this?<|im_end|>\n<|im_start|>assistant\n');
    expect(r.images).toEqual(['p.png']);
  });
});

describe('prompt errors, before any work', () => {
  const tokCalls: string[] = [];
  const spy = { encode: (s: string) => { tokCalls.push(s); return []; }, chatTemplate: undefined, config: {} } as unknown as TextTokenizer;

  it('image count ≠ placeholders → ImageError', () => {
    expect(() => buildPrompt(spy, [{ role: 'user', content: '<image>\nWhat?' }])).toThrow(ImageError);
    expect(() => buildPrompt(spy, [{ role: 'user', content: 'What?' }], { images: ['a'] })).toThrow(/0 <image> placeholder\(s\) but 1 image/);
    expect(() => buildPrompt(spy, [{ role: 'user', content: [{ type: 'image', image: 1 }, { type: 'text', text: '<image> again' }] }]))
      .toThrow(/2 <image> placeholder\(s\) but 1 image\(s\) were given \(1 written literally/);
    expect(tokCalls).toEqual([]);
  });

  it('bad messages, roles, parts, formats → OptionError naming the culprit', () => {
    expect(() => buildPrompt(spy, [])).toThrow(OptionError);
    expect(() => buildPrompt(spy, [{ role: 'tool' as never, content: 'x' }])).toThrow(/messages\[0\]\.role/);
    expect(() => buildPrompt(spy, [{ role: 'user', content: [{ type: 'audio' } as never] }])).toThrow(/messages\[0\]\.content\[0\]/);
    expect(() => buildPrompt(spy, [{ role: 'assistant', content: [{ type: 'image', image: 1 }] }])).toThrow(/only accepted in user/);
    expect(() => buildPrompt(spy, [{ role: 'user', content: [{ type: 'image', image: 1 }] }], { images: [2] })).toThrow(/not both/);
    expect(() => buildPrompt(spy, [{ role: 'user', content: 'x' }], { format: 'chatml' as never })).toThrow(OptionError);
    expect(() => buildPrompt(spy, [{ role: 'user', content: [{ type: 'image', image: 1 }] }], { format: 'template' })).toThrow(/text-only/);
    expect(() => buildPrompt(spy, [{ role: 'user', content: 'x' }], { format: 'template' })).toThrow(ConfigError);
    expect(tokCalls).toEqual([]);
  });
});

describe('prompt ids on the real Qwen vocabulary', () => {
  let tok: TextTokenizer;
  beforeAll(async () => { tok = await loadTokenizer(QWEN_TOKENIZER_DIR); });

  it('one image: the §4.1 golden ids — chunk 1, −200, 198 + question + tail', () => {
    const q = 'What is shown in this image?';
    const p = buildPrompt(tok, [{ role: 'user', content: [{ type: 'image', image: 'x' }, { type: 'text', text: q }] }]);
    const qIds = tok.encode(q);
    expect(qIds.length).toBeGreaterThan(0);
    expect(p.ids).toEqual([...CHUNK1, IMAGE_TOKEN_INDEX, 198, ...qIds, ...TAIL]);
    expect(p.images).toEqual(['x']);
    expect(tok.decode(p.ids, { skipSpecial: false })).toBe(p.text.replace('<image>', '')); // −200 has no text
  });

  it('two images: chunk 1, −200, " " (220), −200, 198 + question + tail', () => {
    const p = buildPrompt(tok, [{ role: 'user', content: [{ type: 'image', image: 1 }, { type: 'image', image: 2 }, { type: 'text', text: 'Same?' }] }]);
    expect(p.ids).toEqual([...CHUNK1, IMAGE_TOKEN_INDEX, 220, IMAGE_TOKEN_INDEX, 198, ...tok.encode('Same?'), ...TAIL]);
  });

  it('text only: one chunk, no sentinel', () => {
    const p = buildPrompt(tok, [{ role: 'user', content: 'Hello' }]);
    expect(p.ids).toEqual([...CHUNK1, ...tok.encode('Hello'), ...TAIL]);
    expect(p.ids).not.toContain(IMAGE_TOKEN_INDEX);
  });

  it('adjacent placeholders give no empty-chunk ids', () => {
    expect(tokenizeWithImages(tok, '<image><image>')).toEqual([IMAGE_TOKEN_INDEX, IMAGE_TOKEN_INDEX]);
  });

  it("'template' renders the model's own Jinja template (Qwen3's here) with the generation prompt", () => {
    const p = buildPrompt(tok, [{ role: 'system', content: 'S' }, { role: 'user', content: [{ type: 'text', text: 'Hi' }] }], { format: 'template' });
    expect(p.text).toBe('<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n');
    expect(p.ids).toEqual(tok.encode(p.text));
    const noThink = buildPrompt(tok, [{ role: 'user', content: 'Hi' }], { format: 'template', templateVariables: { enable_thinking: false } });
    expect(noThink.text).toBe('<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n');
  });

  it("a Qwen2.5-style template renders exactly the 'diffusionvl' text for text-only chats", () => {
    const t = { ...tok, chatTemplate: QWEN25_STYLE_TEMPLATE, config: tok.config, encode: tok.encode.bind(tok) } as TextTokenizer;
    const msgs: ChatMessage[] = [{ role: 'user', content: 'a' }, { role: 'assistant', content: 'b' }, { role: 'user', content: 'c' }];
    expect(buildPrompt(t, msgs, { format: 'template' }).text).toBe(renderPrompt(msgs).text);
  });
});

describe('prompt ids on the tiny tokenizer', () => {
  let dir: string;
  beforeAll(() => { dir = mkdtempSync(join(tmpdir(), 'dvl-prompt-')); });
  afterAll(() => { rmSync(dir, { recursive: true, force: true }); });

  it('keeps every id below the tokenizer size, markup as special ids', async () => {
    const ids = writeTinyTokenizer(dir, { vocabSize: 300 });
    const tok = await loadTokenizer(dir);
    const p = buildPrompt(tok, [{ role: 'user', content: [{ type: 'image', image: 0 }, { type: 'text', text: 'What is in the image?' }] }]);
    for (const id of p.ids) expect(id === IMAGE_TOKEN_INDEX || (id >= 0 && id < ids.size)).toBe(true);
    expect(p.ids[0]).toBe(ids.imStart);
    expect(p.ids.slice(-3)).toEqual(tok.encode('<|im_start|>assistant\n').slice(-3));
    expect(p.ids.filter((x) => x === IMAGE_TOKEN_INDEX)).toHaveLength(1);
    expect(tok.decode(p.ids, { skipSpecial: false })).toBe(p.text.replace('<image>', ''));
    expect(buildPrompt(tok, [{ role: 'user', content: 'a' }], { format: 'template' }).text).toBe(renderPrompt([{ role: 'user', content: 'a' }]).text);
  });
});
