// The tokenizer loader: the real Qwen vocabulary (ids of §4.1/§4.2, round trips, MASK dropped on
// decode), the tiny test tokenizer (a real byte-level BPE file), template lookup, file errors.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../lib/errors.js';
import { loadTokenizer, type TextTokenizer } from '../../lib/text/tokenizer.js';
import { QWEN25_STYLE_TEMPLATE, QWEN_TOKENIZER_DIR, writeTinyTokenizer } from '../helpers/tokenizer.js';
import { rng } from '../helpers/random.js';

const MASK = 151671; // §4.2: an embedding row beyond the tokenizer

/** Random strings over ASCII, Latin-1, CJK, emoji (astral, ZWJ sequences), newlines. */
function randomText(r: () => number, n: number): string {
  const pools = ['abc xyz ', 'éüßñ', '你好世界中文字', '😀🎉👍🏽👨‍👩‍👧', '\n\t  ', '0123456789', '.,!?\'"'];
  let s = '';
  for (let i = 0; i < n; i++) {
    const p = Array.from(pools[Math.floor(r() * pools.length)]!);
    s += p[Math.floor(r() * p.length)];
  }
  return s;
}

describe('real Qwen tokenizer', () => {
  let tok: TextTokenizer;
  let loadMs = 0;
  beforeAll(async () => {
    const t0 = performance.now();
    tok = await loadTokenizer(QWEN_TOKENIZER_DIR);
    loadMs = performance.now() - t0;
    console.log(`loadTokenizer(real 151k-vocab tokenizer.json): ${loadMs.toFixed(0)} ms`);
  });

  it('knows its size and the chat-markup ids of §4.2', () => {
    // Qwen3's file = Qwen2.5's 151665 ids + <tool_response>, </tool_response>, <think>, </think>.
    expect(tok.size).toBe(151669);
    expect(tok.specialIds).toEqual({ imStart: 151644, imEnd: 151645, endOfText: 151643 });
    expect(tok.eosId).toBe(151645);
    expect(tok.tokenId('<|vision_start|>')).toBe(151652);
    expect(tok.tokenId('Ċ')).toBe(198);
    expect(tok.tokenId('no such token')).toBeUndefined();
    expect(tok.tokenString(77091)).toBe('assistant');
    expect(typeof tok.chatTemplate).toBe('string');
  });

  it('encodes the §4.1 system turn to the golden ids, special-token strings becoming ids, no BOS', () => {
    const s = '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n<|im_start|>user\n';
    expect(tok.encode(s)).toEqual([151644, 8948, 198, 2610, 525, 1207, 16948, 11, 3465, 553,
      54364, 14817, 13, 1446, 525, 264, 10950, 17847, 13, 151645, 198, 151644, 872, 198]);
    expect(tok.encode('<|im_end|>\n<|im_start|>assistant\n')).toEqual([151645, 198, 151644, 77091, 198]);
    expect(tok.encode('')).toEqual([]);
  });

  it('round-trips random UTF-8 text exactly', () => {
    const r = rng(7);
    for (let i = 0; i < 50; i++) {
      const s = randomText(r, 1 + Math.floor(r() * 60)).normalize('NFC'); // the normalizer is NFC
      expect(tok.decode(tok.encode(s), { skipSpecial: false })).toBe(s);
    }
    const fixed = 'Hello, 世界! 😀 naïve café — 👨‍👩‍👧 x²\n\n  end';
    expect(tok.decode(tok.encode(fixed))).toBe(fixed);
  });

  it('encodes a repeated text as a fresh one: kept encodings are copies, and eviction keeps working', async () => {
    // tokenizer.ts keeps recent encodings of short texts (a chat template's system turn comes
    // back in every request). Each call must return what a fresh tokenizer returns, as its own
    // array; texts past the memo's size or length limits still encode right.
    const fresh = await loadTokenizer(QWEN_TOKENIZER_DIR);
    const r = rng(21);
    const texts = Array.from({ length: 150 }, () => randomText(r, 1 + Math.floor(r() * 40)));
    texts.push('x'.repeat(5000) + ' long text past the memo limit');
    const want = texts.map((t) => fresh.encode(t));
    for (let round = 0; round < 3; round++) {
      texts.forEach((t, i) => {
        const ids = tok.encode(t);
        expect(ids, `round ${round} text ${i}`).toEqual(want[i]);
        ids.push(-1);   // the caller's array: must not leak into the next call
      });
    }
    const s = texts[7]!;
    for (let i = 0; i < 3; i++) expect(tok.encode(s)).toEqual(want[7]);
  });

  it("decode's byte-level fast path gives the library's text: every id alone, random runs, cut characters", () => {
    type Both = TextTokenizer & { decodeSlow: TextTokenizer['decode']; fastDecode: boolean };
    const t = tok as Both;
    expect(t.fastDecode).toBe(true);
    for (const skipSpecial of [true, false]) {
      for (let id = 0; id < tok.size; id++) {
        const fast = t.decode([id], { skipSpecial });
        if (fast !== t.decodeSlow([id], { skipSpecial })) expect(`${id}: ${JSON.stringify(fast)}`).toBe(`${id}: ${JSON.stringify(t.decodeSlow([id], { skipSpecial }))}`);
      }
    }
    // Runs of random ids (most are pieces of multi-byte characters when taken out of context)
    // with added and special tokens among them, and encodings of mixed text cut anywhere.
    const r = rng(5);
    const specials = [151643, 151644, 151645, 151646, 151652, 151653, 151655, 151657, 151660, 151664];
    for (let i = 0; i < 3000; i++) {
      const n = 1 + Math.floor(r() * 24);
      const ids: number[] = [];
      for (let j = 0; j < n; j++) ids.push(r() < 0.15 ? specials[Math.floor(r() * specials.length)]! : Math.floor(r() * tok.size));
      const skipSpecial = r() < 0.5;
      expect(t.decode(ids, { skipSpecial })).toBe(t.decodeSlow(ids, { skipSpecial }));
      const e = tok.encode(randomText(r, 1 + Math.floor(r() * 30)));
      const a = Math.floor(r() * e.length), b = a + Math.floor(r() * (e.length - a + 1));
      expect(t.decode(e.slice(a, b))).toBe(t.decodeSlow(e.slice(a, b)));
    }
  });

  it('drops MASK (151671), ids ≥ size, negative ids, and special tokens by default', () => {
    const hello = tok.encode('Hello world');
    const ids = [151644, ...hello, MASK, 151669, 151700, -200, 151645, MASK, MASK];
    expect(tok.decode(ids)).toBe('Hello world');
    expect(tok.decode(ids, { skipSpecial: false })).toBe('<|im_start|>Hello world<|im_end|>');
    expect(tok.decode([MASK, MASK])).toBe('');
    expect(tok.decode(Int32Array.from(hello))).toBe('Hello world');
  });
});

describe('tiny test tokenizer', () => {
  let dir: string;
  beforeAll(() => { dir = mkdtempSync(join(tmpdir(), 'dvl-tok-')); });
  afterAll(() => { rmSync(dir, { recursive: true, force: true }); });

  it('is a real byte-level BPE file that round-trips arbitrary UTF-8', async () => {
    const ids = writeTinyTokenizer(dir, { vocabSize: 300 });
    expect(ids).toEqual({ size: 300, endOfText: 297, imStart: 298, imEnd: 299 });
    const tok = await loadTokenizer(dir);
    expect(tok.size).toBe(300);
    expect(tok.specialIds).toEqual({ imStart: 298, imEnd: 299, endOfText: 297 });
    expect(tok.chatTemplate).toBe(QWEN25_STYLE_TEMPLATE);
    // Merges are used: a corpus word is fewer tokens than bytes.
    expect(tok.encode(' the answer').length).toBeLessThan(' the answer'.length);
    const r = rng(11);
    for (let i = 0; i < 100; i++) {
      const s = randomText(r, 1 + Math.floor(r() * 40)).normalize('NFC');
      const e = tok.encode(s);
      for (const id of e) expect(id).toBeLessThan(297); // text never yields a special id
      expect(tok.decode(e)).toBe(s);
    }
    const markup = tok.encode('<|im_start|>user\nhi 😀<|im_end|>\n');
    expect(markup[0]).toBe(298);
    expect(markup).toContain(299);
    expect(tok.decode(markup)).toBe('user\nhi 😀\n');
    expect(tok.decode([...markup, 300, 301])).toBe('user\nhi 😀\n'); // ids past the tokenizer (a tiny model's MASK row) vanish
  });

  it("takes the library's decode where the fast path would not reproduce it (clean-up of spaces on)", async () => {
    const d = join(dir, 'cleanup');
    writeTinyTokenizer(d, { vocabSize: 300 });
    type Both = TextTokenizer & { decodeSlow: TextTokenizer['decode']; fastDecode: boolean };
    expect(((await loadTokenizer(d)) as Both).fastDecode).toBe(true);
    const cfgFile = join(d, 'tokenizer_config.json');
    writeFileSync(cfgFile, JSON.stringify({ ...JSON.parse(readFileSync(cfgFile, 'utf8')), clean_up_tokenization_spaces: true }));
    const tok = (await loadTokenizer(d)) as Both;
    expect(tok.fastDecode).toBe(false);
    const ids = tok.encode('a , b . c !');
    expect(tok.decode(ids)).toBe('a, b. c!');   // the library's clean-up ran
    expect(tok.decode(ids)).toBe(tok.decodeSlow(ids));
  });

  it('sizes to vocabSize', async () => {
    const d = join(dir, 'small');
    expect(writeTinyTokenizer(d, { vocabSize: 259 })).toEqual({ size: 259, endOfText: 256, imStart: 257, imEnd: 258 });
    const tok = await loadTokenizer(d);
    expect(tok.size).toBe(259);
    expect(tok.decode(tok.encode('你好 😀'))).toBe('你好 😀');
  });

  it('finds the chat template in chat_template.jinja, chat_template.json or tokenizer_config.json', async () => {
    for (const templateFile of ['chat_template.json', 'chat_template.jinja'] as const) {
      const d = join(dir, templateFile);
      writeTinyTokenizer(d, { templateFile, chatTemplate: `{{ '${templateFile}' }}` });
      expect((await loadTokenizer(d)).chatTemplate).toBe(`{{ '${templateFile}' }}`);
    }
    const d = join(dir, 'none');
    writeTinyTokenizer(d, { chatTemplate: null });
    expect((await loadTokenizer(d)).chatTemplate).toBeUndefined();
  });

  it('names the missing or corrupt file in a ConfigError', async () => {
    const missing = join(dir, 'nothing-here');
    await expect(loadTokenizer(missing)).rejects.toThrow(ConfigError);
    await expect(loadTokenizer(missing)).rejects.toMatchObject({ file: join(missing, 'tokenizer.json') });

    const d = join(dir, 'corrupt');
    writeTinyTokenizer(d);
    writeFileSync(join(d, 'tokenizer_config.json'), '{ "eos_token": ');
    await expect(loadTokenizer(d)).rejects.toMatchObject({ name: 'ConfigError', file: join(d, 'tokenizer_config.json') });

    rmSync(join(d, 'tokenizer_config.json'));
    await expect(loadTokenizer(d)).rejects.toMatchObject({ name: 'ConfigError', file: join(d, 'tokenizer_config.json') });

    writeTinyTokenizer(d);
    writeFileSync(join(d, 'tokenizer.json'), JSON.stringify({ version: '1.0', added_tokens: [] }));
    await expect(loadTokenizer(d)).rejects.toThrow(/tokenizer\.json.*"model"/);

    writeTinyTokenizer(d);
    writeFileSync(join(d, 'chat_template.json'), 'not json');
    await expect(loadTokenizer(d)).rejects.toMatchObject({ name: 'ConfigError', file: join(d, 'chat_template.json') });
  });

  it('rejects a tokenizer without the Qwen chat-markup tokens', async () => {
    const d = join(dir, 'nospecial');
    writeTinyTokenizer(d);
    const { readFileSync } = await import('node:fs');
    const tj = JSON.parse(readFileSync(join(d, 'tokenizer.json'), 'utf8'));
    tj.added_tokens = tj.added_tokens.filter((t: { content: string }) => t.content !== '<|im_end|>');
    writeFileSync(join(d, 'tokenizer.json'), JSON.stringify(tj));
    await expect(loadTokenizer(d)).rejects.toThrow(/<\|im_end\|>/);
  });
});
