// prompt.ts — chat messages → prompt text → token ids, with the −200 image sentinels.
//
// Two formats:
//  'diffusionvl' (default): the trained and benchmarked `qwen_2_5` conversation of docs
//     §4.1 — Qwen's default system prompt unless a system message is given, each turn
//     `<|im_start|>{role}\n{text}<|im_end|>\n`, the generation prompt `<|im_start|>assistant\n`.
//     Image parts become `<image>` placeholders at the front of their turn (one image:
//     `<image>\n{text}`; several: `<image> <image>\n{text}`, as the eval wrappers write them).
//     The text is split on `<image>`, each chunk tokenized on its own (no BOS) and the sentinel
//     −200 put between chunks (§3.6); the model splices image i's features in at sentinel i.
//  'template': the model's own Jinja chat template (tokenizer_config.json / chat_template.*),
//     rendered with add_generation_prompt — for stock Qwen2 / Qwen2.5 text models. Text only.
//     It runs in a separate process with time and size limits (template.ts): renderPrompt and
//     buildPrompt wait for it synchronously, renderPromptAsync does not block.
//
// Everything is validated (roles, parts, image count against placeholders) before any tokenizing.
import { ConfigError, ImageError, OptionError } from '../errors.js';
import { checkTextBytes, encodeBounded, encodeBoundedSync, type EncodeLimits } from './encode.js';
import { renderTemplate, renderTemplateSync, type TemplateLimits } from './template.js';
import { tokenText, type TextTokenizer } from './tokenizer.js';

/** Limits of one template render unless PromptOptions.templateLimits says otherwise. */
export const TEMPLATE_LIMIT_DEFAULTS: Readonly<TemplateLimits> = Object.freeze({ timeMs: 2000, maxChars: 4 * 1024 * 1024 });

/** The placeholder the prompt text carries for one image (LLaVA convention, §3.6). */
export const IMAGE_PLACEHOLDER = '<image>';
/** The id put in place of each `<image>` (`IMAGE_TOKEN_INDEX`); never a real token. */
export const IMAGE_TOKEN_INDEX = -200;
/** The system prompt of the trained `qwen_2_5` conversation (§4.1). */
export const DEFAULT_SYSTEM_PROMPT = 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.';

export type ChatRole = 'system' | 'user' | 'assistant';

export interface TextPart { type: 'text'; text: string }
/** An image given as a value (path, Buffer, decoded image …); passed through to `Prompt.images`. */
export interface ImagePart { type: 'image'; image: unknown }
/** An image by URL (OpenAI style); its `url` string is passed through to `Prompt.images`. */
export interface ImageUrlPart { type: 'image_url'; image_url: { url: string } }
export type ContentPart = TextPart | ImagePart | ImageUrlPart;

export interface ChatMessage {
  role: ChatRole;
  content: string | readonly ContentPart[];
}

export type PromptFormat = 'diffusionvl' | 'template';

export interface PromptOptions {
  /** Default 'diffusionvl'. */
  format?: PromptFormat;
  /** 'diffusionvl': the system prompt when no system message is given; null = no system turn. */
  systemPrompt?: string | null;
  /**
   * Images for `<image>` placeholders written literally in the message text (LLaVA style), in
   * order. Not allowed together with image parts.
   */
  images?: readonly unknown[];
  /** Append the assistant turn opener (default true). */
  addGenerationPrompt?: boolean;
  /** 'template': extra variables for the Jinja template (e.g. `{ enable_thinking: false }`). */
  templateVariables?: Record<string, unknown>;
  /** 'template': wall time and output size of the render (default TEMPLATE_LIMIT_DEFAULTS). */
  templateLimits?: Partial<TemplateLimits>;
}

export interface RenderedPrompt {
  /** The full prompt string, `<image>` placeholders included. */
  text: string;
  /** One entry per placeholder, in order. */
  images: unknown[];
}

export interface Prompt extends RenderedPrompt {
  /** Token ids; each `<image>` is one IMAGE_TOKEN_INDEX (−200) entry. */
  ids: number[];
}

interface Turn { role: ChatRole; text: string; images: unknown[] }

const ROLES: ReadonlySet<string> = new Set(['system', 'user', 'assistant']);

/** Checks the messages and flattens each to text + its image parts (in order). */
function readTurns(messages: readonly ChatMessage[]): Turn[] {
  if (!Array.isArray(messages) || messages.length === 0) {
    throw new OptionError('messages: expected a non-empty array of { role, content }', 'messages');
  }
  return messages.map((m, i) => {
    const where = `messages[${i}]`;
    if (typeof m !== 'object' || m === null) throw new OptionError(`${where}: expected { role, content }`, 'messages');
    if (!ROLES.has(m.role)) {
      throw new OptionError(`${where}.role: ${JSON.stringify(m.role)} is not one of system, user, assistant`, 'messages');
    }
    if (typeof m.content === 'string') return { role: m.role, text: m.content, images: [] };
    if (!Array.isArray(m.content)) {
      throw new OptionError(`${where}.content: expected a string or an array of parts`, 'messages');
    }
    let text = '';
    const images: unknown[] = [];
    m.content.forEach((p: ContentPart, j: number) => {
      const pw = `${where}.content[${j}]`;
      const type = (p as { type?: unknown } | null)?.type;
      if (type === 'text' && typeof (p as TextPart).text === 'string') {
        text += (p as TextPart).text; // parts concatenate with no separator, as HF chat templates do
      } else if (type === 'image') {
        images.push((p as ImagePart).image);
      } else if (type === 'image_url' && typeof (p as ImageUrlPart).image_url?.url === 'string') {
        images.push((p as ImageUrlPart).image_url.url);
      } else {
        throw new OptionError(`${pw}: expected { type: 'text', text } | { type: 'image', image } | { type: 'image_url', image_url: { url } }`, 'messages');
      }
    });
    if (images.length > 0 && m.role !== 'user') {
      throw new OptionError(`${where}: images are only accepted in user messages (role here: ${m.role})`, 'messages');
    }
    return { role: m.role, text, images };
  });
}

/** Occurrences of `<image>` in a string. */
function countPlaceholders(s: string): number {
  return s.split(IMAGE_PLACEHOLDER).length - 1;
}

/** A user turn's text with its image parts in front (§4.1). */
function turnText(t: Turn): string {
  const k = t.images.length;
  if (k === 0) return t.text;
  return Array(k).fill(IMAGE_PLACEHOLDER).join(' ') + '\n' + t.text;
}

function renderDiffusionVL(turns: Turn[], opts: PromptOptions): string {
  let out = '';
  let rest = turns;
  const system = turns[0]!.role === 'system' ? turns[0]!.text : opts.systemPrompt === undefined ? DEFAULT_SYSTEM_PROMPT : opts.systemPrompt;
  if (turns[0]!.role === 'system') rest = turns.slice(1);
  if (system !== null) out += `<|im_start|>system\n${system}<|im_end|>\n`;
  for (const t of rest) out += `<|im_start|>${t.role}\n${turnText(t)}<|im_end|>\n`;
  if (opts.addGenerationPrompt ?? true) out += '<|im_start|>assistant\n';
  return out;
}

/** What a template render needs: the source, the variables (JSON) and the limits. */
interface TemplateJob { source: string; context: Record<string, unknown>; limits: TemplateLimits }

function templateJob(turns: Turn[], tok: Pick<TextTokenizer, 'chatTemplate' | 'config'>, opts: PromptOptions): TemplateJob {
  if (tok.chatTemplate === undefined) {
    throw new ConfigError("format 'template': the tokenizer has no chat template (tokenizer_config.json, chat_template.json or chat_template.jinja); use format 'diffusionvl'", { field: 'chat_template' });
  }
  const cfg = tok.config;
  const vars = opts.templateVariables;
  if (vars !== undefined && (vars === null || typeof vars !== 'object' || Array.isArray(vars))) {
    throw new OptionError('templateVariables: expected an object of JSON values', 'templateVariables');
  }
  return {
    source: tok.chatTemplate,
    context: {
      bos_token: tokenText(cfg.bos_token) ?? '',
      eos_token: tokenText(cfg.eos_token) ?? '',
      pad_token: tokenText(cfg.pad_token) ?? '',
      unk_token: tokenText(cfg.unk_token) ?? '',
      ...vars,
      messages: turns.map((t) => ({ role: t.role, content: t.text })),
      add_generation_prompt: opts.addGenerationPrompt ?? true,
    },
    limits: { ...TEMPLATE_LIMIT_DEFAULTS, ...opts.templateLimits },
  };
}

/** A rendered prompt, or the template job still to run ('template' format). */
type Prepared = RenderedPrompt | TemplateJob;

/** Everything up to the template render: checks, and the 'diffusionvl' text. */
function preparePrompt(messages: readonly ChatMessage[], opts: PromptOptions, tok?: Pick<TextTokenizer, 'chatTemplate' | 'config'>): Prepared {
  const format = opts.format ?? 'diffusionvl';
  if (format !== 'diffusionvl' && format !== 'template') {
    throw new OptionError(`format: ${JSON.stringify(format)} is not 'diffusionvl' or 'template'`, 'format');
  }
  const turns = readTurns(messages);
  const partImages = turns.flatMap((t) => t.images);
  const extra = opts.images ?? [];
  if (!Array.isArray(extra)) throw new OptionError('images: expected an array', 'images');
  if (partImages.length > 0 && extra.length > 0) {
    throw new OptionError('images: give images either as message parts or as options.images, not both', 'images');
  }
  if (format === 'template') {
    if (partImages.length + extra.length > 0) {
      throw new OptionError("format 'template' is text-only (stock Qwen2/Qwen2.5 models); use format 'diffusionvl' for images", 'format');
    }
    if (!tok) throw new OptionError("format 'template' needs the tokenizer (its chat template)", 'format');
    return templateJob(turns, tok, opts);
  }
  // Rendering is string work only; the count check still comes before any tokenizing or image work.
  const text = renderDiffusionVL(turns, opts);
  const placeholders = countPlaceholders(text);
  const images = partImages.length > 0 ? partImages : [...extra];
  if (placeholders !== images.length) {
    const literal = placeholders - partImages.length;
    throw new ImageError(
      `the prompt has ${placeholders} ${IMAGE_PLACEHOLDER} placeholder(s) but ${images.length} image(s) were given`
      + (literal > 0 && partImages.length > 0 ? ` (${literal} written literally in the text)` : ''),
    );
  }
  return { text, images };
}

/**
 * Messages → prompt text and the images in placeholder order. Needs the tokenizer only for the
 * 'template' format (rendered in a child process, waited for synchronously). Throws
 * OptionError / ImageError / ConfigError before rendering anything.
 */
export function renderPrompt(
  messages: readonly ChatMessage[],
  opts: PromptOptions = {},
  tok?: Pick<TextTokenizer, 'chatTemplate' | 'config'>,
): RenderedPrompt {
  const p = preparePrompt(messages, opts, tok);
  if ('text' in p) return p;
  return { text: renderTemplateSync(p.source, p.context, p.limits), images: [] };
}

/** renderPrompt without blocking: the template renders while the event loop runs; `signal`
 *  aborts it (rejecting with signal.reason). */
export async function renderPromptAsync(
  messages: readonly ChatMessage[],
  opts: PromptOptions = {},
  tok?: Pick<TextTokenizer, 'chatTemplate' | 'config'>,
  signal?: AbortSignal,
): Promise<RenderedPrompt> {
  const p = preparePrompt(messages, opts, tok);
  if ('text' in p) return p;
  return { text: await renderTemplate(p.source, p.context, p.limits, signal), images: [] };
}

/**
 * Prompt text → ids: split on `<image>`, tokenize each chunk separately, −200 between chunks
 * (§3.6). Splitting first keeps a chunk's boundary tokens from merging across an image.
 */
export function tokenizeWithImages(tok: Pick<TextTokenizer, 'encode'>, text: string): number[] {
  const chunks = text.split(IMAGE_PLACEHOLDER);
  const ids: number[] = [];
  chunks.forEach((c, i) => {
    if (i > 0) ids.push(IMAGE_TOKEN_INDEX);
    for (const id of tok.encode(c)) ids.push(id);
  });
  return ids;
}

/** The parts tokenized separately: the text split on `<image>` ('diffusionvl'), or all of it. */
function promptParts(text: string, opts: PromptOptions): string[] {
  return (opts.format ?? 'diffusionvl') === 'template' ? [text] : text.split(IMAGE_PLACEHOLDER);
}

/** Messages → { text, ids (with −200 sentinels), images }. With `bounds`, the text is refused
 *  (OptionError) when its bytes or tokens exceed them (encode.ts). */
export function buildPrompt(tok: TextTokenizer, messages: readonly ChatMessage[], opts: PromptOptions = {}, bounds?: EncodeLimits): Prompt {
  const r = renderPrompt(messages, opts, tok);
  if (bounds) checkTextBytes(tok, r.text, bounds);
  const ids: number[] = [];
  promptParts(r.text, opts).forEach((c, i) => {
    if (i > 0) ids.push(IMAGE_TOKEN_INDEX);
    // ids.length − i: the text tokens so far (ids holds i sentinels).
    const part = bounds ? encodeBoundedSync(tok, c, { ...bounds, maxBytes: Infinity, maxTokens: bounds.maxTokens - (ids.length - i) }) : tok.encode(c);
    for (const id of part) ids.push(id);
  });
  return { ...r, ids };
}

/** buildPrompt without blocking the event loop: the template renders in its process and the
 *  text is tokenized in pieces with turns of the event loop between them, stopping as soon as
 *  it exceeds `bounds.maxTokens` (encode.ts). */
export async function buildPromptAsync(tok: TextTokenizer, messages: readonly ChatMessage[], opts: PromptOptions, bounds: EncodeLimits): Promise<Prompt> {
  const r = await renderPromptAsync(messages, opts, tok, bounds.signal);
  checkTextBytes(tok, r.text, bounds);
  const parts = promptParts(r.text, opts);
  const ids: number[] = [];
  for (let i = 0; i < parts.length; i++) {
    if (i > 0) ids.push(IMAGE_TOKEN_INDEX);
    for (const id of await encodeBounded(tok, parts[i], { ...bounds, maxBytes: Infinity, maxTokens: bounds.maxTokens - (ids.length - i) })) ids.push(id);
  }
  return { ...r, ids };
}
