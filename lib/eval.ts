// eval.ts — exact match on a held-out set (`diffusionvl eval`, benches, tests).
//
// The set is a folder with heldout.json and its images:
//   {"format": "diffusionvl-heldout/1", "seed": 0, "items": [
//     {"id": "h-000", "kind": "describe", "question": "Describe the image.",
//      "answer": "A red circle at the top left.", "image": "images/h-000.png"},
//     {"id": "h-001", "kind": "text_reverse", "question": "Reverse the letters: a b c", "answer": "c b a", "image": null}, …]}
//
// Each item is one user turn (the image part first, then the question, as training wrote it),
// generated greedily (temperature 0). Exact match, as train/eval.py scores it: the answer text
// (ids up to the first EOS, special tokens dropped — GenerateResult.text) with surrounding
// whitespace trimmed equals the expected answer character for character.
//
// Cost: forwards per answer token = Σ stats.forwards ÷ Σ stats.generatedTokens. stats.forwards
// counts every forward the decoder ran: the prompt prefill, each denoising iteration and each
// separate commit (a merged commit rides in the next block's first iteration, one forward);
// AR counts one per token, its first being the prefill. generatedTokens counts the answer ids
// up to and including the EOS (not the ids written after it in the last block, nor the unused
// part of maxTokens). Tokens/s is Σ answer tokens ÷ Σ wall time of generate (prefill and image
// encoding included).
import { readFile } from 'node:fs/promises';
import { isAbsolute, join, resolve } from 'node:path';
import { ConfigError, OptionError } from './errors.js';
import type { GenerateRequest, GenerateResult, GenerationMode, Model } from './model/model.js';
import type { ChatMessage, ContentPart } from './text/prompt.js';
import type { DecodeOptions } from './decode/options.js';

export const HELDOUT_FORMAT = 'diffusionvl-heldout/1';

export interface HeldoutItem {
  id: string;
  kind: string;
  question: string;
  answer: string;
  /** Image path (resolved against the set's folder by readHeldout), or null for text-only. */
  image: string | null;
}

export interface HeldoutSet {
  dir: string;
  format: string;
  seed: number | null;
  /** Which split the set was drawn from, when it says ('heldout', 'unseen'), else null. */
  split: string | null;
  items: HeldoutItem[];
}

/** Reads `<dir>/heldout.json`; image paths come back resolved against `dir`. */
export async function readHeldout(dir: string): Promise<HeldoutSet> {
  const file = join(dir, 'heldout.json');
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new OptionError(`${file}: cannot read the held-out set (${code === 'ENOENT' ? 'no such file' : (e as Error).message})`, 'heldout');
  }
  let j: unknown;
  try {
    j = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`${file}: not valid JSON (${(e as Error).message})`, { file });
  }
  const o = j as { format?: unknown; seed?: unknown; split?: unknown; items?: unknown };
  if (o === null || typeof o !== 'object' || o.format !== HELDOUT_FORMAT) {
    throw new ConfigError(`${file}: expected "format": "${HELDOUT_FORMAT}" but found ${JSON.stringify((o as { format?: unknown } | null)?.format)}`, { file, field: 'format' });
  }
  if (!Array.isArray(o.items)) throw new ConfigError(`${file}: "items" must be an array`, { file, field: 'items' });
  const items = o.items.map((it: unknown, i: number): HeldoutItem => {
    const x = it as Record<string, unknown>;
    const where = `items[${i}]`;
    for (const k of ['id', 'kind', 'question', 'answer'] as const) {
      if (typeof x?.[k] !== 'string') throw new ConfigError(`${file}: ${where}.${k} must be a string`, { file, field: `${where}.${k}` });
    }
    if (x.image !== null && x.image !== undefined && typeof x.image !== 'string') {
      throw new ConfigError(`${file}: ${where}.image must be a path or null`, { file, field: `${where}.image` });
    }
    const image = typeof x.image === 'string' ? (isAbsolute(x.image) ? x.image : resolve(dir, x.image)) : null;
    return { id: x.id as string, kind: x.kind as string, question: x.question as string, answer: x.answer as string, image };
  });
  return { dir, format: o.format, seed: typeof o.seed === 'number' ? o.seed : null, split: typeof o.split === 'string' ? o.split : null, items };
}

/**
 * True when an answer repeats a word back to back ("A triangle triangle at the top.", "the
 * the") and the expected answer does not (a reversal like "Reversed: a a b" may legitimately):
 * the degenerate output a block-diffusion child can fall into where its AR parent stays fluent.
 * Words compare case-insensitively, without punctuation.
 */
export function hasRepeatedWord(answer: string, expected = ''): boolean {
  const pairs = (t: string) => {
    const w = t.toLowerCase().split(/[^a-z0-9]+/).filter(Boolean);
    return new Set(w.slice(1).map((x, i) => (x === w[i] ? x : '')).filter(Boolean));
  };
  const want = pairs(expected);
  for (const x of pairs(answer)) if (!want.has(x)) return true;
  return false;
}

/** One user turn: the images (in order) then the text, as the model was trained on them. */
export function userMessage(text: string, images: readonly unknown[] = []): ChatMessage[] {
  if (images.length === 0) return [{ role: 'user', content: text }];
  const content: ContentPart[] = [...images.map((image) => ({ type: 'image' as const, image })), { type: 'text', text }];
  return [{ role: 'user', content }];
}

export interface EvalRequest {
  mode?: GenerationMode;
  steps?: number;
  remasking?: DecodeOptions['remasking'];
  threshold?: number;
  /** Generation length G (default 64, as train/eval.py). */
  maxTokens?: number;
  blockSize?: number;
  /** Evaluate only the first n items. */
  n?: number;
  /** Called with a progress line every `progressEvery` items (default 25) and at the end. */
  log?: (line: string) => void;
  progressEvery?: number;
  /** Called after every item with the count done and the total (progress bars). */
  onItem?: (done: number, total: number) => void;
  /** Failures kept in the result (default 20). */
  maxFailures?: number;
  signal?: AbortSignal;
  /**
   * Clients generating at once (default 1): the model batches their steps (continuous
   * batching). Answers are scored in item order either way; tokens/s is then the aggregate
   * (Σ tokens ÷ the eval's wall time) rather than per request.
   */
  concurrency?: number;
}

export interface EvalItemResult {
  id: string;
  kind: string;
  expected: string;
  /** The answer text, trimmed. */
  got: string;
  ok: boolean;
  forwards: number;
  /** Answer tokens up to and including EOS. */
  tokens: number;
  /** The answer's token ids (what greedy agreement between two runs compares). */
  ids: number[];
  finishReason: 'stop' | 'length';
}

export interface KindScore { n: number; correct: number; exactMatch: number }

export interface EvalResult {
  n: number;
  correct: number;
  exactMatch: number;
  perKind: Record<string, KindScore>;
  mode: GenerationMode;
  /** Σ stats.forwards over items. */
  forwards: number;
  /** Σ answer tokens (up to and including EOS) over items. */
  answerTokens: number;
  forwardsPerToken: number;
  /** Σ answer tokens ÷ Σ generate wall time. */
  tokensPerSecond: number;
  /** Tokens decoded after the prefill ÷ their time (AR's first token comes with the prefill): the decoder alone. */
  decodeTokensPerSecond: number;
  /** Mean per-request fixed work (ms): template and tokenisation, images, tower, prefill. */
  fixedMs: { prompt: number; image: number; tower: number; prefill: number };
  /** The sums behind the rates: generate wall time, decode time and tokens (mergeEvalResults). */
  totals: { wallMs: number; decodeMs: number; decodeTokens: number };
  seconds: number;
  /** The settings the items were generated with (temperature 0). */
  settings: { mode: GenerationMode; maxTokens: number; steps?: number; remasking?: string; threshold?: number; blockSize?: number };
  items: EvalItemResult[];
  failures: EvalItemResult[];
}

/** Generates every item greedily and scores exact match overall and per kind. */
export async function evalHeldout(model: Model, items: readonly HeldoutItem[], request: EvalRequest = {}): Promise<EvalResult> {
  const n = request.n ?? items.length;
  if (!Number.isInteger(n) || n < 0) throw new OptionError(`Expected integer ≥ 0 for n but received ${String(n)}`, 'n');
  const todo = items.slice(0, n);
  const every = request.progressEvery ?? 25;
  const maxFailures = request.maxFailures ?? 20;
  const log = request.log ?? (() => undefined);
  const base: GenerateRequest = { temperature: 0, maxTokens: request.maxTokens ?? 64, signal: request.signal };
  if (request.mode !== undefined) base.mode = request.mode;
  if (request.steps !== undefined) base.steps = request.steps;
  if (request.remasking !== undefined) base.remasking = request.remasking;
  if (request.threshold !== undefined) base.threshold = request.threshold;
  if (request.blockSize !== undefined) base.blockSize = request.blockSize;

  const results: EvalItemResult[] = [];
  const failures: EvalItemResult[] = [];
  const perKind: Record<string, KindScore> = {};
  let correct = 0, forwards = 0, tokens = 0, ms = 0, decodeMs = 0, decodeTokens = 0;
  const fixed = { prompt: 0, image: 0, tower: 0, prefill: 0 };
  let last: GenerateResult | undefined;
  const concurrency = request.concurrency ?? 1;
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new OptionError(`Expected integer ≥ 1 for concurrency but received ${String(concurrency)}`, 'concurrency');
  const t0 = performance.now();
  // Answers in item order: `concurrency` clients take the next item each; results are kept by
  // index and scored in order as they complete.
  const answers: (GenerateResult | undefined)[] = new Array(todo.length);
  const wall = new Float64Array(todo.length);
  const waiters: (() => void)[] = [];
  let nextItem = 0, failed: unknown;
  const client = async () => {
    while (nextItem < todo.length && failed === undefined) {
      const i = nextItem++;
      const it = todo[i];
      try {
        const t = performance.now();
        answers[i] = await model.generate({ ...base, messages: userMessage(it.question, it.image === null ? [] : [it.image]) });
        wall[i] = performance.now() - t;
      } catch (e) {
        failed ??= e;
      }
      waiters.splice(0).forEach((w) => w());
    }
  };
  const clients = Array.from({ length: Math.min(concurrency, Math.max(1, todo.length)) }, client);
  for (let i = 0; i < todo.length; i++) {
    const it = todo[i];
    while (answers[i] === undefined && failed === undefined) await new Promise<void>((r) => waiters.push(r));
    if (failed !== undefined) { await Promise.allSettled(clients); throw failed; }
    const r = answers[i]!;
    answers[i] = undefined;
    if (concurrency === 1) ms += wall[i];
    decodeMs += r.stats.timings.decodeMs;
    decodeTokens += r.stats.timings.decodeTokens;
    fixed.prompt += r.stats.timings.promptMs;
    fixed.image += r.stats.timings.imageMs;
    fixed.tower += r.stats.timings.towerMs;
    fixed.prefill += r.stats.timings.prefillMs;
    last = r;
    const got = r.text.trim();
    const ok = got === it.answer;
    const row: EvalItemResult = {
      id: it.id, kind: it.kind, expected: it.answer, got, ok,
      forwards: r.stats.forwards, tokens: r.stats.generatedTokens, ids: r.ids, finishReason: r.finishReason,
    };
    results.push(row);
    if (!ok && failures.length < maxFailures) failures.push(row);
    const k = (perKind[it.kind] ??= { n: 0, correct: 0, exactMatch: 0 });
    k.n++;
    if (ok) { k.correct++; correct++; }
    forwards += r.stats.forwards;
    tokens += r.stats.generatedTokens;
    const done = results.length;
    if (concurrency > 1) ms = performance.now() - t0;
    request.onItem?.(done, todo.length);
    if ((every > 0 && done % every === 0) || done === todo.length) {
      log(`eval ${done}/${todo.length}: exact match ${(correct / done * 100).toFixed(1)}%, ` +
        `${tokens ? (forwards / tokens).toFixed(3) : '-'} fwd/tok, ${ms > 0 ? (tokens / ms * 1000).toFixed(1) : '-'} tok/s`);
    }
  }
  await Promise.all(clients);
  for (const k of Object.values(perKind)) k.exactMatch = k.n ? k.correct / k.n : 0;
  const sortedKinds = Object.fromEntries(Object.entries(perKind).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  // The settings as the decoder resolved them (defaults filled in), from the last generation.
  const finalMode = last?.mode ?? request.mode ?? model.config.defaultMode;
  const o = last?.options;
  const settings: EvalResult['settings'] = { mode: finalMode, maxTokens: o?.maxTokens ?? base.maxTokens! };
  if (finalMode === 'diffusion') {
    settings.steps = o?.steps ?? base.steps;
    settings.remasking = o?.remasking ?? base.remasking;
    if (settings.remasking === 'dynamic') settings.threshold = o?.threshold ?? base.threshold;
    settings.blockSize = o?.blockSize ?? base.blockSize;
  }
  return {
    n: results.length, correct, exactMatch: results.length ? correct / results.length : 0,
    perKind: sortedKinds, mode: finalMode, forwards, answerTokens: tokens,
    forwardsPerToken: tokens ? forwards / tokens : 0,
    tokensPerSecond: ms > 0 ? (tokens / ms) * 1000 : 0,
    decodeTokensPerSecond: decodeMs > 0 ? (decodeTokens / decodeMs) * 1000 : 0,
    fixedMs: {
      prompt: fixed.prompt / Math.max(1, results.length), image: fixed.image / Math.max(1, results.length),
      tower: fixed.tower / Math.max(1, results.length), prefill: fixed.prefill / Math.max(1, results.length),
    },
    totals: { wallMs: ms, decodeMs, decodeTokens },
    seconds: (performance.now() - t0) / 1000,
    settings, items: results, failures,
  };
}

/**
 * One result from results over consecutive slices of a set (with the same settings), as if the
 * whole set had run in one call: items in order, counts and times summed, rates recomputed.
 * (lib/cli/compare.ts interleaves the settings slice by slice.)
 */
export function mergeEvalResults(parts: readonly EvalResult[]): EvalResult {
  if (parts.length === 0) throw new OptionError('mergeEvalResults: no results', 'parts');
  const sum = (f: (r: EvalResult) => number) => parts.reduce((a, r) => a + f(r), 0);
  const n = sum((r) => r.n), correct = sum((r) => r.correct), forwards = sum((r) => r.forwards), tokens = sum((r) => r.answerTokens);
  const wallMs = sum((r) => r.totals.wallMs), decodeMs = sum((r) => r.totals.decodeMs), decodeTokens = sum((r) => r.totals.decodeTokens);
  const perKind: Record<string, KindScore> = {};
  for (const r of parts) {
    for (const [k, v] of Object.entries(r.perKind)) {
      const m = (perKind[k] ??= { n: 0, correct: 0, exactMatch: 0 });
      m.n += v.n;
      m.correct += v.correct;
    }
  }
  for (const v of Object.values(perKind)) v.exactMatch = v.n ? v.correct / v.n : 0;
  const mean = (f: (r: EvalResult) => number) => (n ? sum((r) => f(r) * r.n) / n : 0);
  return {
    n, correct, exactMatch: n ? correct / n : 0,
    perKind: Object.fromEntries(Object.entries(perKind).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))),
    mode: parts[parts.length - 1].mode, forwards, answerTokens: tokens,
    forwardsPerToken: tokens ? forwards / tokens : 0,
    tokensPerSecond: wallMs > 0 ? (tokens / wallMs) * 1000 : 0,
    decodeTokensPerSecond: decodeMs > 0 ? (decodeTokens / decodeMs) * 1000 : 0,
    fixedMs: {
      prompt: mean((r) => r.fixedMs.prompt), image: mean((r) => r.fixedMs.image),
      tower: mean((r) => r.fixedMs.tower), prefill: mean((r) => r.fixedMs.prefill),
    },
    totals: { wallMs, decodeMs, decodeTokens },
    seconds: sum((r) => r.seconds),
    settings: parts[parts.length - 1].settings,
    items: parts.flatMap((r) => r.items),
    failures: parts.flatMap((r) => r.failures),
  };
}
