// stream.ts — turning ids into text while they are being generated, and stop strings.
//
// Byte-level BPE tokens are byte strings: one multi-byte UTF-8 character (CJK, emoji) can be
// split across tokens, and so across decoder blocks. Decoding such a prefix yields U+FFFD for the
// incomplete tail. IncrementalDecoder emits only text that is final: it re-decodes a short window
// of ids (the last emitted chunk + the ids since) and holds back a trailing run of U+FFFD until
// more ids complete it, or flush() ends the stream.
//
// See docs §4.3 (the eval keeps the text before the first "\n" or stop string, strips
// it and drops one trailing "."; the decode skips special tokens and MASK ids).
import type { DecodeOptions, TextTokenizer } from './tokenizer.js';

const REPLACEMENT = 0xfffd;

export class IncrementalDecoder {
  private readonly tok: Pick<TextTokenizer, 'decode'>;
  private readonly opts: DecodeOptions;
  // Window of ids: ids[0, read) decode to `prefix`, text already emitted (it starts at a
  // character boundary); ids[read, …) are newer. `held` = chars of the newer part already emitted
  // while a trailing incomplete character was held back.
  private ids: number[] = [];
  private read = 0;
  private prefix = '';
  private held = 0;
  private all = '';

  constructor(tok: Pick<TextTokenizer, 'decode'>, opts: DecodeOptions = {}) {
    this.tok = tok;
    this.opts = opts;
  }

  /** All text emitted so far. */
  get text(): string {
    return this.all;
  }

  /** Adds ids; returns the text that became final (possibly ''). */
  push(ids: ArrayLike<number>): string {
    for (let i = 0; i < ids.length; i++) this.ids.push(ids[i]!);
    const full = this.tok.decode(this.ids, this.opts);
    // Byte-level decoding is concatenation, so `full` extends `prefix`; ids added later can only
    // change the trailing U+FFFD run (an incomplete character), never the text before it.
    let end = full.length;
    while (end > 0 && full.charCodeAt(end - 1) === REPLACEMENT) end--;
    const start = this.prefix.length + this.held;
    const out = end > start ? full.slice(start, end) : '';
    if (end === full.length && full.length >= this.prefix.length) {
      // Nothing held back: slide the window so it stays short (last chunk + new ids).
      this.ids = this.ids.slice(this.read);
      this.read = this.ids.length;
      this.prefix = this.tok.decode(this.ids, this.opts);
      this.held = 0;
    } else {
      this.held += out.length;
    }
    this.all += out;
    return out;
  }

  /** Ends the stream: returns what was held back (an incomplete character decodes as U+FFFD). */
  flush(): string {
    const full = this.tok.decode(this.ids, this.opts);
    const start = this.prefix.length + this.held;
    const out = full.length > start ? full.slice(start) : '';
    this.ids = [];
    this.read = 0;
    this.prefix = '';
    this.held = 0;
    this.all += out;
    return out;
  }
}

export interface StopHit {
  /** The text before the first stop string (all of it if none occurs). */
  text: string;
  /** The stop string found, if any. */
  stop: string | undefined;
}

/** Cuts `text` at the earliest occurrence of any stop string. Empty stop strings are ignored. */
export function stopAt(text: string, stops: readonly string[]): StopHit {
  let at = -1;
  let stop: string | undefined;
  for (const s of stops) {
    if (s.length === 0) continue;
    const i = text.indexOf(s);
    if (i >= 0 && (at < 0 || i < at)) { at = i; stop = s; }
  }
  return at < 0 ? { text, stop: undefined } : { text: text.slice(0, at), stop };
}

/**
 * Streaming stop strings: push text pieces, get back what is safe to show. A tail that could be
 * the start of a stop string is held back until the next piece decides it.
 */
export class StopStringMatcher {
  private readonly stops: string[];
  private buf = '';
  private done: string | undefined;

  constructor(stops: readonly string[]) {
    this.stops = stops.filter((s) => s.length > 0);
  }

  /** The stop string that ended the stream, once one has. */
  get stopped(): string | undefined {
    return this.done;
  }

  push(text: string): string {
    if (this.done !== undefined) return '';
    this.buf += text;
    const hit = stopAt(this.buf, this.stops);
    if (hit.stop !== undefined) {
      this.done = hit.stop;
      this.buf = '';
      return hit.text;
    }
    // Hold back the longest suffix of buf that is a proper prefix of some stop string.
    let keep = 0;
    for (const s of this.stops) {
      for (let k = Math.min(s.length - 1, this.buf.length); k > keep; k--) {
        if (this.buf.endsWith(s.slice(0, k))) { keep = k; break; }
      }
    }
    const out = this.buf.slice(0, this.buf.length - keep);
    this.buf = this.buf.slice(this.buf.length - keep);
    return out;
  }

  /** Ends the stream: the held-back tail was not a stop string after all. */
  flush(): string {
    const out = this.done === undefined ? this.buf : '';
    this.buf = '';
    return out;
  }
}

/**
 * The reference eval's answer clean-up (§4.3): keep the text before the first "\n" or task stop
 * string (or `<|im_end|>`, for text decoded with specials), strip whitespace, drop one trailing ".".
 */
export function evalAnswer(text: string, stops: readonly string[] = []): string {
  let t = stopAt(text, ['<|im_end|>', '\n', ...stops]).text.trim();
  if (t.endsWith('.')) t = t.slice(0, -1);
  return t;
}
