// bytelevel.ts — ids → text for byte-level BPE tokenizers (Qwen's) without the per-token string
// work of @huggingface/tokenizers' decode: the same text, 5-10× faster on a decode step's few
// ids (the streaming decoder calls decode twice per block, so it was ≈ 0.1 ms of every request).
//
// What the library does, and this reproduces (test/unit/text-tokenizer.test.ts compares the two
// over the whole vocabulary and random id runs):
//   1. each id → its token string (vocab, added tokens overriding it; a hole → the model's
//      unk_token, which joins as '' when there is none);
//   2. skip_special_tokens drops the strings in its special-token list;
//   3. the ByteLevel decoder cuts the run at every added token's string: each added token is
//      its own text, verbatim; each run between them is joined, every character mapped back to
//      its byte through GPT-2's bytes↔unicode table (a character outside the table becomes byte
//      0), and the bytes decoded as UTF-8 (malformed sequences → U+FFFD, a BOM kept);
//   4. no clean-up of tokenization spaces (Qwen's tokenizer_config sets it false).
// Anything else — another decoder, clean-up on, an end-of-word suffix — keeps the library's path.

/** GPT-2's byte-level alphabet, inverted: code point → byte. */
function unicodeToByte(): Map<number, number> {
  const m = new Map<number, number>();
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    m.set(printable ? b : 256 + extra++, b);
  }
  return m;
}

/** What decides the fast path: the parsed tokenizer.json and tokenizer_config.json. */
export interface ByteLevelSource {
  decoder: unknown;
  model: { unk_token?: unknown; end_of_word_suffix?: unknown };
  addedTokens: unknown;
  config: Record<string, unknown>;
  /** id → token string as the library sees it (vocab with the added tokens in place). */
  piece: (id: number) => string | undefined;
  /** The library's special-token strings (skip_special_tokens drops them). */
  specialTokens: readonly string[];
}

const SKIP = 0, ADDED = 1;
type Entry = Uint8Array | typeof SKIP | typeof ADDED;

export class ByteLevelDecoder {
  private readonly byteOf = unicodeToByte();
  private readonly td = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });
  private readonly added: Set<string>;
  private readonly special: Set<string>;
  private readonly unk: string | undefined;
  /** Per id, filled on first use: its bytes, or SKIP / ADDED (see entry). Two tables: with and
   *  without skipSpecial. */
  private readonly cache: [Map<number, Entry>, Map<number, Entry>] = [new Map(), new Map()];
  private buf = new Uint8Array(256);

  private constructor(private readonly src: ByteLevelSource) {
    this.added = new Set(
      Array.isArray(src.addedTokens)
        ? (src.addedTokens as Array<{ content?: unknown }>).map((t) => t?.content).filter((c): c is string => typeof c === 'string')
        : [],
    );
    this.special = new Set(src.specialTokens);
    this.unk = typeof src.model.unk_token === 'string' ? src.model.unk_token : undefined;
  }

  /** The fast decoder when the tokenizer is one it reproduces exactly, else null. */
  static create(src: ByteLevelSource): ByteLevelDecoder | null {
    const d = src.decoder as { type?: unknown } | null | undefined;
    if (!d || d.type !== 'ByteLevel') return null;
    if (src.config.clean_up_tokenization_spaces !== false) return null;
    if (src.model.end_of_word_suffix != null && src.model.end_of_word_suffix !== '') return null;
    if (!Array.isArray(src.addedTokens)) return null;
    return new ByteLevelDecoder(src);
  }

  private entry(id: number, skipSpecial: boolean): Entry {
    const table = this.cache[skipSpecial ? 1 : 0];
    let e = table.get(id);
    if (e !== undefined) return e;
    const piece = this.src.piece(id) ?? this.unk;
    if (piece === undefined) e = new Uint8Array(0);
    else if (skipSpecial && this.special.has(piece)) e = SKIP;
    else if (this.added.has(piece)) e = ADDED;
    else {
      const bytes: number[] = [];
      for (const ch of piece) bytes.push(this.byteOf.get(ch.codePointAt(0)!) ?? 0);
      e = Uint8Array.from(bytes);
    }
    table.set(id, e);
    return e;
  }

  /** ids (each in the tokenizer's range) → text. */
  decode(ids: readonly number[], skipSpecial: boolean): string {
    let out = '', n = 0;
    for (const id of ids) {
      const e = this.entry(id, skipSpecial);
      if (e === SKIP) continue;
      if (e === ADDED) {
        if (n > 0) { out += this.td.decode(this.buf.subarray(0, n)); n = 0; }
        out += this.src.piece(id) ?? this.unk;
        continue;
      }
      if (n + e.length > this.buf.length) {
        const grown = new Uint8Array(Math.max(2 * this.buf.length, n + e.length));
        grown.set(this.buf.subarray(0, n));
        this.buf = grown;
      }
      this.buf.set(e, n);
      n += e.length;
    }
    if (n > 0) out += this.td.decode(this.buf.subarray(0, n));
    return out;
  }
}
