// encode.ts — tokenizing long prompts without blocking the event loop or doing unbounded work.
//
// The tokenizer is synchronous JS (about 1 s per MB). A prompt is therefore checked twice
// before its cost can grow: its UTF-8 size against a byte cap (the context length × the longest
// token's bytes: anything larger cannot fit), then, while it is encoded in pieces of
// `chunkChars` with a turn of the event loop between pieces, its token count against the
// context, stopping at the first piece that goes over. Pieces are cut only where the
// tokenizer's pre-tokenizer must split anyway (a space between two letters for Qwen's
// pattern, see TextTokenizer.chunkable), so the ids equal those of one encode of the whole text.
import { OptionError } from '../errors.js';
import type { TextTokenizer } from './tokenizer.js';

/** Characters per piece: ~15-30 ms of encoding. */
export const ENCODE_CHUNK_CHARS = 16 * 1024;

const SAFE_CUT = /(?<=\p{L}) (?=\p{L})/gu;

/** `text` in pieces of about `chunkChars`, each cut before a space between two letters. */
export function splitForEncode(text: string, chunkChars = ENCODE_CHUNK_CHARS): string[] {
  const out: string[] = [];
  let pos = 0;
  while (text.length - pos > chunkChars) {
    SAFE_CUT.lastIndex = pos + chunkChars;
    const m = SAFE_CUT.exec(text);
    if (!m) break;
    out.push(text.slice(pos, m.index));
    pos = m.index;
  }
  out.push(text.slice(pos));
  return out;
}

export interface EncodeLimits {
  /** Refuse texts that would give more tokens than this (the room left in the context). */
  maxTokens: number;
  /** UTF-8 bytes accepted before tokenizing (default maxTokens × tok.maxTokenBytes). */
  maxBytes?: number;
  /** Checked between pieces: rejects with signal.reason. */
  signal?: AbortSignal;
  /** What to call the text in errors ("the prompt"). */
  what?: string;
  chunkChars?: number;
}

/** The byte-cap check alone (cheap: no tokenizing). Throws OptionError naming both numbers. */
export function checkTextBytes(tok: Pick<TextTokenizer, 'maxTokenBytes'>, text: string, l: EncodeLimits): void {
  const cap = l.maxBytes ?? l.maxTokens * tok.maxTokenBytes;
  const bytes = Buffer.byteLength(text, 'utf8');
  if (bytes > cap) {
    throw new OptionError(`${l.what ?? 'the prompt'} is ${bytes} bytes, more than the ${cap} that can fit in ${l.maxTokens} tokens ` +
      `(${l.maxBytes !== undefined ? 'limits.promptBytes' : `the context room × ${tok.maxTokenBytes} bytes per token at most`}); shorten it or raise contextLength`, 'prompt');
  }
}

function tooMany(l: EncodeLimits, atLeast: number): OptionError {
  return new OptionError(`${l.what ?? 'the prompt'} takes more than ${l.maxTokens} tokens (at least ${atLeast}), more than the context has room for; shorten it or raise contextLength`, 'prompt');
}

/** Encodes `text` in pieces, yielding to the event loop between them; see the file header. */
export async function encodeBounded(tok: Pick<TextTokenizer, 'encode' | 'maxTokenBytes' | 'chunkable'>, text: string, l: EncodeLimits): Promise<number[]> {
  checkTextBytes(tok, text, l);
  const pieces = tok.chunkable ? splitForEncode(text, l.chunkChars) : [text];
  const ids: number[] = [];
  for (let i = 0; i < pieces.length; i++) {
    if (i > 0) {
      await new Promise<void>((r) => setImmediate(r));
      if (l.signal?.aborted) throw l.signal.reason;
    }
    for (const id of tok.encode(pieces[i])) ids.push(id);
    if (ids.length > l.maxTokens) throw tooMany(l, ids.length);
  }
  return ids;
}

/** The synchronous version (one encode, after the byte cap): for the synchronous prompt API. */
export function encodeBoundedSync(tok: Pick<TextTokenizer, 'encode' | 'maxTokenBytes'>, text: string, l: EncodeLimits): number[] {
  checkTextBytes(tok, text, l);
  const ids = tok.encode(text);
  if (ids.length > l.maxTokens) throw tooMany(l, ids.length);
  return ids;
}
