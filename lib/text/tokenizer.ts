// tokenizer.ts — a model's tokenizer: HF `tokenizer.json` (byte-level BPE for Qwen) through
// @huggingface/tokenizers, plus the chat template and the ids the decoder needs.
//
// See docs §4.2 (special tokens; MASK 151671 is an embedding row beyond the tokenizer),
// §3.6 (no BOS for Qwen), docs/packaging.md §B7 (the library is I/O-free: we read the files).
//
// The tokenizer's `size` is one past its highest id (151665 for Qwen2.5, 151669 for Qwen3). Ids at
// or beyond it (MASK, the untrained padding rows of the embedding) and negative ids (the −200 image
// sentinel) have no text: `decode` drops them, as the HF fast tokenizer does silently.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { ConfigError } from '../errors.js';
import { ByteLevelDecoder, type ByteLevelSource } from './bytelevel.js';

/** The chat-markup ids of a Qwen-family tokenizer (§4.2). */
export interface SpecialIds {
  /** `<|im_start|>` (151644): turn start. */
  readonly imStart: number;
  /** `<|im_end|>` (151645): end of turn; the decoder's EOS (§5.10). */
  readonly imEnd: number;
  /** `<|endoftext|>` (151643): the pad token; not a stop token for the decoder. */
  readonly endOfText: number;
}

export interface DecodeOptions {
  /** Drop special tokens (`<|im_end|>` …) from the text (default true, as the reference eval). */
  skipSpecial?: boolean;
}

export interface TextTokenizer {
  /** One past the highest id with a string; ids ≥ size have no text. */
  readonly size: number;
  readonly specialIds: SpecialIds;
  /** Id of tokenizer_config.json's `eos_token` (falls back to `<|im_end|>`). */
  readonly eosId: number;
  /** The model's own Jinja chat template, if the directory has one. */
  readonly chatTemplate: string | undefined;
  /** tokenizer_config.json as read (bos/eos/pad token strings for templates). */
  readonly config: Readonly<Record<string, unknown>>;
  /** UTF-8 bytes of the longest token (at least 4): a text of N bytes has ≥ N / maxTokenBytes
   *  tokens, so a prompt can be refused as too long before it is tokenized. */
  readonly maxTokenBytes: number;
  /** Whether `encode` may be run on pieces split at safe boundaries (see splitForEncode) and
   *  give the same ids as on the whole text: true for Qwen's pre-tokenizer. */
  readonly chunkable: boolean;
  /** Text → ids. Never adds BOS/EOS; special-token strings in the text become their ids. */
  encode(text: string): number[];
  /** Forgets the encodings encode() keeps of recent short texts (benchmarks that run several
   *  settings over the same texts clear it so each setting starts alike). */
  clearEncodeMemo(): void;
  /** Ids → text. Ids outside [0, size) are dropped (MASK 151671, −200, padding rows). */
  decode(ids: ArrayLike<number>, options?: DecodeOptions): string;
  /** Id of a token string (`'<|im_end|>'`, `'Ġthe'`), or undefined if it has none. */
  tokenId(token: string): number | undefined;
  /** Token string of an id, or undefined. */
  tokenString(id: number): string | undefined;
}

const TOKENIZER_JSON = 'tokenizer.json';
const TOKENIZER_CONFIG_JSON = 'tokenizer_config.json';
const CHAT_TEMPLATE_JSON = 'chat_template.json';
const CHAT_TEMPLATE_JINJA = 'chat_template.jinja';

/**
 * Reads `tokenizer.json` and `tokenizer_config.json` from a model directory. The chat template is
 * taken from `chat_template.jinja`, else `chat_template.json`, else `tokenizer_config.json`
 * (the precedence transformers uses; Qwen2.5-VL repos keep it in chat_template.json).
 * Missing or corrupt files → ConfigError naming the file.
 */
export async function loadTokenizer(dir: string): Promise<TextTokenizer> {
  const tokenizerJson = await readJson(join(dir, TOKENIZER_JSON), true);
  const config = await readJson(join(dir, TOKENIZER_CONFIG_JSON), true);

  let chatTemplate: string | undefined;
  const jinja = await readText(join(dir, CHAT_TEMPLATE_JINJA));
  if (jinja !== undefined) {
    chatTemplate = jinja;
  } else {
    const file = join(dir, CHAT_TEMPLATE_JSON);
    const ct = await readJson(file, false);
    chatTemplate = (ct !== undefined ? pickTemplate(ct.chat_template, file, 'chat_template') : undefined)
      ?? pickTemplate(config.chat_template, join(dir, TOKENIZER_CONFIG_JSON), 'chat_template');
  }
  return createTokenizer(tokenizerJson, config, { chatTemplate, file: join(dir, TOKENIZER_JSON) });
}

/**
 * Builds a tokenizer from already-parsed `tokenizer.json` and `tokenizer_config.json` objects.
 * `file` names the source in errors.
 */
export function createTokenizer(
  tokenizerJson: unknown,
  config: Record<string, unknown>,
  opts: { chatTemplate?: string; file?: string } = {},
): TextTokenizer {
  const file = opts.file ?? TOKENIZER_JSON;
  const tj = tokenizerJson as { model?: { vocab?: unknown }; added_tokens?: unknown };
  if (typeof tj !== 'object' || tj === null || typeof tj.model !== 'object' || tj.model === null) {
    throw new ConfigError(`${file}: no "model" object; not a Hugging Face tokenizer.json`, { file, field: 'model' });
  }
  if (typeof tj.model.vocab !== 'object' || tj.model.vocab === null || Array.isArray(tj.model.vocab)) {
    // BPE / WordPiece keep a token→id map; Unigram (a list) is not a Qwen tokenizer.
    throw new ConfigError(`${file}: "model.vocab" is not a token→id map (only BPE/WordPiece tokenizers are supported)`, { file, field: 'model.vocab' });
  }
  let tok: Tokenizer;
  try {
    tok = new Tokenizer(tj, config);
  } catch (e) {
    throw new ConfigError(`${file}: cannot build the tokenizer: ${(e as Error).message}`, { file });
  }
  // The library's special-token strings (flagged added tokens plus the config's
  // additional_special_tokens): an internal field, so the fast decoder is only used when it is there.
  const specials = (tok as unknown as { special_tokens?: unknown }).special_tokens;
  const fast = Array.isArray(specials) && specials.every((x) => typeof x === 'string')
    ? ByteLevelDecoder.create({
      decoder: (tokenizerJson as { decoder?: unknown }).decoder, model: tj.model as ByteLevelSource['model'], addedTokens: tj.added_tokens,
      config, piece: (id) => tok.id_to_token(id), specialTokens: specials as string[],
    })
    : null;
  return new HFTextTokenizer(tok, tj.model.vocab as Record<string, number>, tj.added_tokens, config, file, opts.chatTemplate,
    isChunkable(tokenizerJson), JSON.stringify((tokenizerJson as { pre_tokenizer?: unknown }).pre_tokenizer ?? null).includes('"ByteLevel"'), fast);
}

/** Qwen's pre-tokenizer split pattern (Qwen2, Qwen2.5, Qwen3 tokenizer.json). */
const QWEN_SPLIT =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/**
 * True when the tokenizer splits text into pre-tokens with exactly Qwen's pattern (then byte-level
 * BPE inside each), normalizes with NFC at most, and has no added token holding "letter space
 * letter". Then a space between two letters always starts a new pre-token (no alternative of
 * the pattern matches a letter followed by a space), and encoding the text in pieces cut before
 * such spaces gives the same ids as encoding it whole.
 */
function isChunkable(tj: unknown): boolean {
  const j = tj as { pre_tokenizer?: unknown; normalizer?: unknown; added_tokens?: unknown };
  const norm = j.normalizer as { type?: unknown } | null | undefined;
  if (norm != null && norm.type !== 'NFC') return false;
  const pre = j.pre_tokenizer as { type?: unknown; pretokenizers?: unknown } | null | undefined;
  if (!pre || pre.type !== 'Sequence' || !Array.isArray(pre.pretokenizers) || pre.pretokenizers.length !== 2) return false;
  const [split, bl] = pre.pretokenizers as Array<Record<string, unknown>>;
  if (split?.type !== 'Split' || split.behavior !== 'Isolated' || split.invert !== false) return false;
  if ((split.pattern as { Regex?: unknown } | undefined)?.Regex !== QWEN_SPLIT) return false;
  if (bl?.type !== 'ByteLevel' || bl.use_regex !== false) return false;
  if (Array.isArray(j.added_tokens)) {
    for (const t of j.added_tokens as Array<{ content?: unknown }>) {
      if (typeof t?.content === 'string' && /\p{L} \p{L}/u.test(t.content)) return false;
    }
  }
  return true;
}

/** encode() keeps the ids of texts up to this many UTF-16 units, this many of them. */
const ENCODE_MEMO_CHARS = 4096;
const ENCODE_MEMO_ENTRIES = 64;

class HFTextTokenizer implements TextTokenizer {
  readonly size: number;
  readonly specialIds: SpecialIds;
  readonly eosId: number;
  readonly chatTemplate: string | undefined;
  readonly config: Readonly<Record<string, unknown>>;
  readonly maxTokenBytes: number;
  readonly chunkable: boolean;
  private readonly tok: Tokenizer;
  /** Recent encodings of short texts (encode), least recently used first. */
  private readonly memo = new Map<string, number[]>();

  constructor(tok: Tokenizer, vocab: Record<string, number>, addedTokens: unknown,
    config: Record<string, unknown>, file: string, chatTemplate: string | undefined, chunkable: boolean, byteLevel: boolean,
    private readonly fast: ByteLevelDecoder | null = null) {
    this.tok = tok;
    this.config = config;
    this.chatTemplate = chatTemplate;
    this.chunkable = chunkable;

    // A byte-level key has one char per byte of its text; any other key is at least as long in
    // UTF-8 as its text (word-piece markers only add). Either way it bounds the token's bytes.
    let maxBytes = 4;
    for (const k of Object.keys(vocab)) maxBytes = Math.max(maxBytes, byteLevel ? k.length : Buffer.byteLength(k));
    if (Array.isArray(addedTokens)) {
      for (const t of addedTokens as Array<{ content?: unknown }>) {
        if (typeof t?.content === 'string') maxBytes = Math.max(maxBytes, Buffer.byteLength(t.content));
      }
    }
    this.maxTokenBytes = maxBytes;

    // size = max id + 1 over the base vocab and the added tokens (ids need not be dense).
    let maxId = -1;
    for (const id of Object.values(vocab)) if (Number.isInteger(id) && id > maxId) maxId = id;
    if (Array.isArray(addedTokens)) {
      for (const t of addedTokens as Array<{ id?: unknown }>) {
        if (typeof t?.id === 'number' && Number.isInteger(t.id) && t.id > maxId) maxId = t.id;
      }
    }
    if (maxId < 0) throw new ConfigError(`${file}: empty vocabulary`, { file, field: 'model.vocab' });
    this.size = maxId + 1;

    const need = (s: string): number => {
      const id = tok.token_to_id(s);
      if (id === undefined) {
        throw new ConfigError(`${file}: no ${s} token; DiffusionVL needs a Qwen-family tokenizer (§4.2)`, { file, field: 'added_tokens' });
      }
      return id;
    };
    this.specialIds = Object.freeze({
      imStart: need('<|im_start|>'),
      imEnd: need('<|im_end|>'),
      endOfText: need('<|endoftext|>'),
    });
    const eos = tokenText(config.eos_token);
    this.eosId = (eos !== undefined ? tok.token_to_id(eos) : undefined) ?? this.specialIds.imEnd;
  }

  encode(text: string): number[] {
    if (text.length === 0) return [];
    // The chat template's fixed parts (the system turn above all) come back in every request;
    // their encoding (90 µs for the default system prompt) is kept. Encoding is deterministic,
    // so a kept result is exactly a fresh one; callers get their own copy.
    const kept = text.length <= ENCODE_MEMO_CHARS ? this.memo.get(text) : undefined;
    if (kept) {
      this.memo.delete(text);   // most recent last: the first key is the least recently used
      this.memo.set(text, kept);
      return kept.slice();
    }
    // add_special_tokens: false — Qwen adds nothing anyway; this makes "no BOS" hold for any file.
    const ids = this.tok.encode(text, { add_special_tokens: false }).ids;
    if (text.length <= ENCODE_MEMO_CHARS) {
      this.memo.set(text, ids.slice());
      if (this.memo.size > ENCODE_MEMO_ENTRIES) this.memo.delete(this.memo.keys().next().value!);
    }
    return ids;
  }

  clearEncodeMemo(): void {
    this.memo.clear();
  }

  decode(ids: ArrayLike<number>, options: DecodeOptions = {}): string {
    const kept = this.inRange(ids);
    if (kept.length === 0) return '';
    if (this.fast) return this.fast.decode(kept, options.skipSpecial ?? true);
    return this.tok.decode(kept, { skip_special_tokens: options.skipSpecial ?? true });
  }

  /** The library's own decode (tests compare the fast byte-level path with it). */
  decodeSlow(ids: ArrayLike<number>, options: DecodeOptions = {}): string {
    const kept = this.inRange(ids);
    return kept.length === 0 ? '' : this.tok.decode(kept, { skip_special_tokens: options.skipSpecial ?? true });
  }

  /** The ids that have text: those in [0, size). */
  private inRange(ids: ArrayLike<number>): number[] {
    const kept: number[] = [];
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      if (Number.isInteger(id) && id >= 0 && id < this.size) kept.push(id);
    }
    return kept;
  }

  /** Whether decode takes the fast byte-level path (lib/text/bytelevel.ts). */
  get fastDecode(): boolean {
    return this.fast !== null;
  }

  tokenId(token: string): number | undefined {
    return this.tok.token_to_id(token);
  }

  tokenString(id: number): string | undefined {
    return this.tok.id_to_token(id);
  }
}

/** A token field of tokenizer_config.json: a string or an AddedToken object `{ content }`. */
export function tokenText(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (typeof v === 'object' && v !== null && typeof (v as { content?: unknown }).content === 'string') {
    return (v as { content: string }).content;
  }
  return undefined;
}

/** chat_template may be a string or a list of `{ name, template }` (the "default" one is used). */
function pickTemplate(v: unknown, file: string, field: string): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'string') return v;
  if (Array.isArray(v)) {
    const named = v as Array<{ name?: unknown; template?: unknown }>;
    const t = named.find((x) => x?.name === 'default') ?? named[0];
    if (t && typeof t.template === 'string') return t.template;
  }
  throw new ConfigError(`${file}: "${field}" is neither a string nor a list of {name, template}`, { file, field });
}

async function readText(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new ConfigError(`${file}: cannot read: ${(e as Error).message}`, { file });
  }
}

async function readJson(file: string, required: true): Promise<Record<string, unknown>>;
async function readJson(file: string, required: false): Promise<Record<string, unknown> | undefined>;
async function readJson(file: string, required: boolean): Promise<Record<string, unknown> | undefined> {
  const text = await readText(file);
  if (text === undefined) {
    if (required) throw new ConfigError(`${file}: file not found`, { file });
    return undefined;
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`${file}: not valid JSON: ${(e as Error).message}`, { file });
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    throw new ConfigError(`${file}: expected a JSON object`, { file });
  }
  return v as Record<string, unknown>;
}
