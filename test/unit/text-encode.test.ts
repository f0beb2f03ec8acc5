// lib/text/encode.ts: long prompts tokenized in pieces. The pieces are cut only where Qwen's
// pre-tokenizer splits anyway, so the ids must equal one encode of the whole text — checked
// on the real Qwen vocabulary with texts built to stress the cut points (contractions,
// numbers, punctuation runs, newlines, CJK, emoji, combining marks, special tokens).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { OptionError } from '../../lib/errors.js';
import { checkTextBytes, encodeBounded, encodeBoundedSync, splitForEncode } from '../../lib/text/encode.js';
import { createTokenizer, loadTokenizer, type TextTokenizer } from '../../lib/text/tokenizer.js';
import { bundledModelDir } from '../../lib/models.js';
import { QWEN_TOKENIZER_DIR } from '../helpers/tokenizer.js';
import { rng } from '../helpers/random.js';

let qwen: TextTokenizer;
beforeAll(async () => { qwen = await loadTokenizer(QWEN_TOKENIZER_DIR); });

const PIECES = [
  'the', 'The', 'cat', "it's", "they'll", "I'M", 'x', 'élan', 'naïve', 'e\u0301', '中文', '字', 'Ωμέγα', '🙂', '👍🏽',
  '42', '2025', '3.14', '...', '!!', '—', '(', ')', '"', "'", '-', '_', '\t', '\n', '\n\n', '\r\n', '  ', '   ',
  '<|im_start|>', '<|im_end|>', 'user', 'ab\u00a0cd', '\u200b', 'zz',
];

function randomText(seed: number, n: number): string {
  const r = rng(seed);
  let s = '';
  for (let i = 0; i < n; i++) {
    s += PIECES[Math.floor(r() * PIECES.length)];
    if (r() < 0.6) s += ' ';
  }
  return s;
}

describe('splitForEncode', () => {
  it('cuts only before a space between two letters, and the pieces join back to the text', () => {
    for (let seed = 0; seed < 50; seed++) {
      const t = randomText(seed, 300);
      const parts = splitForEncode(t, 17);
      expect(parts.join('')).toBe(t);
      for (let i = 1; i < parts.length; i++) {
        expect(parts[i][0]).toBe(' ');
        expect(/\p{L}/u.test(parts[i][1])).toBe(true);
        expect(/\p{L}/u.test(parts[i - 1].at(-1)!)).toBe(true);
      }
    }
    expect(splitForEncode('a'.repeat(100), 10)).toEqual(['a'.repeat(100)]);   // no cut point: one piece
  });
});

describe('encodeBounded', () => {
  it('Qwen and the bundled tokenizer are chunkable; other pre-tokenizers are not', async () => {
    expect(qwen.chunkable).toBe(true);
    expect(qwen.maxTokenBytes).toBe(128);
    expect((await loadTokenizer(bundledModelDir())).chunkable).toBe(true);
    const tj = JSON.parse(readFileSync(join(QWEN_TOKENIZER_DIR, 'tokenizer.json'), 'utf8'));
    tj.pre_tokenizer.pretokenizers[0].pattern.Regex = '\\s+|\\S+';
    expect(createTokenizer(tj, {}).chunkable).toBe(false);
  });

  it('gives exactly the ids of one encode of the whole text (real Qwen vocabulary, pieces of 7..400 chars)', async () => {
    let cuts = 0;
    for (let seed = 0; seed < 60; seed++) {
      const t = randomText(1000 + seed, 400);
      const whole = qwen.encode(t);
      for (const chunkChars of [7, 31, 400]) {
        cuts += splitForEncode(t, chunkChars).length - 1;
        expect(await encodeBounded(qwen, t, { maxTokens: 1e6, chunkChars }), `seed ${seed} chunk ${chunkChars}`).toEqual(whole);
      }
    }
    expect(cuts).toBeGreaterThan(1000);
  });

  it('yields to the event loop between pieces', async () => {
    const t = randomText(7, 20_000);
    let turns = 0;
    let stop = false;
    const spin = () => { if (stop) return; turns++; setImmediate(spin); };
    setImmediate(spin);
    const ids = await encodeBounded(qwen, t, { maxTokens: 1e6, chunkChars: 4096 });
    stop = true;
    expect(ids.length).toBeGreaterThan(1000);
    expect(turns).toBeGreaterThanOrEqual(splitForEncode(t, 4096).length - 1);
  });

  it('refuses by bytes before tokenizing, and stops at the first piece past the token limit', async () => {
    const big = 'word '.repeat(100_000);
    expect(() => checkTextBytes(qwen, big, { maxTokens: 1000 })).toThrow(/the prompt is 500000 bytes, more than the 128000 that can fit in 1000 tokens/);
    let encoded = 0;
    const counting = { ...qwen, chunkable: true, maxTokenBytes: qwen.maxTokenBytes, encode: (s: string) => { encoded += s.length; return qwen.encode(s); } };
    const err = await encodeBounded(counting, big, { maxTokens: 20_000, chunkChars: 1000 }).catch((e) => e);
    expect(err).toBeInstanceOf(OptionError);
    expect(err.message).toMatch(/takes more than 20000 tokens/);
    expect(encoded).toBeLessThan(big.length / 2);   // stopped early, not after the whole text
    expect(() => encodeBoundedSync(qwen, 'a b c', { maxTokens: 2 })).toThrow(/more than 2 tokens/);
    expect(() => encodeBoundedSync(qwen, 'a b c', { maxTokens: 100, maxBytes: 3 })).toThrow(/limits\.promptBytes/);
  });

  it('an abort between pieces rejects with the reason', async () => {
    const ac = new AbortController();
    const p = encodeBounded(qwen, randomText(9, 20_000), { maxTokens: 1e6, chunkChars: 1000, signal: ac.signal });
    ac.abort(new Error('stop'));
    await expect(p).rejects.toThrow('stop');
  });
});
