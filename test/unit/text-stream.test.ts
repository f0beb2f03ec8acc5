// Streaming decode: multi-byte characters split at every byte boundary across pushes come out
// exactly, never as U+FFFD; special and MASK ids vanish; stop strings across pieces; §4.3 clean-up.
import { beforeAll, describe, expect, it } from 'vitest';
import { IncrementalDecoder, StopStringMatcher, evalAnswer, stopAt } from '../../lib/text/stream.js';
import { loadTokenizer, type TextTokenizer } from '../../lib/text/tokenizer.js';
import { rng } from '../helpers/random.js';
import { QWEN_TOKENIZER_DIR, byteLevelSymbols } from '../helpers/tokenizer.js';

const MASK = 151671;
const SAMPLES = ['😀', '你好', 'a😀b', '👨‍👩‍👧 家族', 'naïve 日本語 🎉🎉 x', '€𝄞\u{10FFFF}'];

/** Streams `pieces` through a decoder; returns the pieces it emitted, then the flush. */
function stream(tok: TextTokenizer, pieces: number[][]): string[] {
  const d = new IncrementalDecoder(tok);
  const out = pieces.map((p) => d.push(p));
  out.push(d.flush());
  expect(out.join('')).toBe(d.text);
  return out;
}

describe('IncrementalDecoder on the real Qwen vocabulary', () => {
  let tok: TextTokenizer;
  let byteIds: number[]; // byte value → id of its one-byte token
  beforeAll(async () => {
    tok = await loadTokenizer(QWEN_TOKENIZER_DIR);
    byteIds = byteLevelSymbols().map((s) => tok.tokenId(s)!);
  });

  const bytesOf = (s: string): number[] => Array.from(new TextEncoder().encode(s), (b) => byteIds[b]!);

  it('one byte token per push: exact text, no U+FFFD ever', () => {
    for (const s of SAMPLES) {
      const out = stream(tok, bytesOf(s).map((id) => [id]));
      expect(out.join('')).toBe(s);
      for (const piece of out) expect(piece).not.toContain('\uFFFD');
    }
  });

  it('split into two pushes at every byte boundary (and three at every pair)', () => {
    for (const s of SAMPLES) {
      const ids = bytesOf(s);
      for (let i = 0; i <= ids.length; i++) {
        const out = stream(tok, [ids.slice(0, i), ids.slice(i)]);
        expect(out.join('')).toBe(s);
        for (const piece of out) expect(piece).not.toContain('\uFFFD');
        for (let j = i; j <= ids.length; j++) {
          const out3 = stream(tok, [ids.slice(0, i), ids.slice(i, j), ids.slice(j)]);
          expect(out3.join('')).toBe(s);
          expect(out3.join('')).not.toContain('\uFFFD');
        }
      }
    }
  });

  it('emits complete characters as soon as they are final', () => {
    const ids = bytesOf('ab😀c');
    const d = new IncrementalDecoder(tok);
    expect(d.push(ids.slice(0, 3))).toBe('ab'); // 'a', 'b', first emoji byte: 'ab' is final
    expect(d.push(ids.slice(3, 5))).toBe('');   // still 3 of 4 bytes
    expect(d.push(ids.slice(5, 6))).toBe('😀');
    expect(d.push(ids.slice(6))).toBe('c');
    expect(d.flush()).toBe('');
  });

  it('real tokenizer ids in random groups, with special and MASK ids mixed in', () => {
    const r = rng(3);
    const text = 'Hello 世界! 👍🏽 naïve café — 日本語のテキスト 🎉 end';
    const ids = tok.encode(text);
    const noisy = [...ids, 151645, MASK, MASK]; // EOS then never-generated MASK ids (§4.3)
    for (let trial = 0; trial < 30; trial++) {
      const pieces: number[][] = [];
      for (let i = 0; i < noisy.length;) {
        const n = Math.floor(r() * 4); // empty pushes included
        pieces.push(noisy.slice(i, i + n));
        i += n;
      }
      const out = stream(tok, pieces);
      expect(out.join('')).toBe(text);
      expect(out.join('')).not.toContain('\uFFFD');
    }
  });

  it('a character that never completes comes out as U+FFFD at flush', () => {
    const ids = bytesOf('ok😀').slice(0, -1);
    const d = new IncrementalDecoder(tok);
    expect(d.push(ids)).toBe('ok');
    expect(d.flush()).toBe('\uFFFD');
  });

  it('a long stream keeps its window short (output equals a one-shot decode)', () => {
    const text = '长文本测试 😀 '.repeat(200);
    const ids = tok.encode(text);
    const d = new IncrementalDecoder(tok);
    const window = (): number => (d as unknown as { ids: number[] }).ids.length;
    let out = '';
    let widest = 0;
    for (const id of ids) {
      out += d.push([id]);
      widest = Math.max(widest, window());
    }
    out += d.flush();
    expect(out).toBe(text);
    // The window is the last emitted piece + ids held for an incomplete character: a few ids.
    expect(widest).toBeLessThanOrEqual(6);
  });
});

describe('stop strings', () => {
  it('stopAt cuts at the earliest stop string', () => {
    expect(stopAt('abc\ndef', ['\n'])).toEqual({ text: 'abc', stop: '\n' });
    expect(stopAt('one. two', ['two', '.'])).toEqual({ text: 'one', stop: '.' });
    expect(stopAt('none', ['x', ''])).toEqual({ text: 'none', stop: undefined });
  });

  it('StopStringMatcher holds back a possible stop prefix across pieces', () => {
    const m = new StopStringMatcher(['</answer>', 'STOP']);
    expect(m.push('The cat</')).toBe('The cat');
    expect(m.push('ans')).toBe('');
    expect(m.push('wer> junk')).toBe('');
    expect(m.stopped).toBe('</answer>');
    expect(m.push('more')).toBe('');
    expect(m.flush()).toBe('');

    const n = new StopStringMatcher(['STOP']);
    expect(n.push('ST')).toBe('');
    expect(n.push('ART')).toBe('START');
    expect(n.push('S')).toBe('');
    expect(n.flush()).toBe('S');
    expect(n.stopped).toBeUndefined();
  });

  it('matches stopAt for every split of a string into two pieces', () => {
    const s = 'abcSTOPdefST';
    for (let i = 0; i <= s.length; i++) {
      const m = new StopStringMatcher(['STOP', 'cS']);
      const got = m.push(s.slice(0, i)) + m.push(s.slice(i)) + m.flush();
      expect(got).toBe(stopAt(s, ['STOP', 'cS']).text);
    }
  });

  it('evalAnswer: first line, stripped, one trailing "." dropped (§4.3)', () => {
    expect(evalAnswer('  A red car..  \nsecond line')).toBe('A red car.');
    expect(evalAnswer('Yes.')).toBe('Yes');
    expect(evalAnswer('B) blue<|im_end|>junk')).toBe('B) blue');
    expect(evalAnswer('answer: 42 ### more', ['###'])).toBe('answer: 42');
  });
});
