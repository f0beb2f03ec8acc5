// request.ts — POST /v1/chat/completions bodies: checked field by field (a 400 names the field)
// and turned into a GenerateRequest. OpenAI's fields, plus the diffusion knobs as extra fields:
//   steps, remasking ('static' | 'dynamic'), threshold, block_size, top_k, mode ('diffusion' | 'ar'),
//   ignore_eos (true: only max_tokens or a stop string ends the answer; for benchmarks),
//   diffusion_steps (true: the SSE stream also carries `event: step` canvas snapshots, for the playground).
// Fields OpenAI defines that change the output and are not supported here (n > 1, logprobs,
// tools, penalties ≠ 0, a non-text response_format) are refused rather than ignored.
import type { ChatMessage, ContentPart } from '../text/prompt.js';
import type { GenerateRequest } from '../model/model.js';
import { stopStrings } from '../text/stream.js';
import { badRequest } from './errors.js';

export interface ParsedChatRequest {
  model: string | undefined;
  /** Messages for the model; image parts carry the URL until images.ts resolves it. */
  messages: ChatMessage[];
  /** Every image_url in message order, with the field path that names it in errors. */
  images: { url: string; param: string; message: number; part: number }[];
  stream: boolean;
  includeUsage: boolean;
  stepEvents: boolean;
  /** Decode options for Model.stream (no messages, signal or cache yet). */
  options: Omit<GenerateRequest, 'messages'>;
}

const KNOWN = new Set([
  'model', 'messages', 'stream', 'stream_options', 'max_tokens', 'max_completion_tokens', 'temperature', 'top_p', 'seed',
  'stop', 'n', 'user', 'presence_penalty', 'frequency_penalty', 'logprobs', 'top_logprobs', 'response_format', 'metadata',
  'store', 'parallel_tool_calls', 'tools', 'tool_choice', 'logit_bias',
  'steps', 'remasking', 'threshold', 'block_size', 'top_k', 'mode', 'diffusion_steps', 'ignore_eos',
]);

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v);
const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const show = (v: unknown) => (typeof v === 'string' ? JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v) : JSON.stringify(v) ?? String(v));

function intField(b: Record<string, unknown>, name: string, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined {
  const v = b[name];
  if (v === undefined || v === null) return undefined;
  if (!isInt(v) || v < min || v > max) throw badRequest(name, `${name} must be an integer in [${min}, ${max === Number.MAX_SAFE_INTEGER ? '∞' : max}], got ${show(v)}`);
  return v;
}

function numField(b: Record<string, unknown>, name: string, ok: (x: number) => boolean, range: string): number | undefined {
  const v = b[name];
  if (v === undefined || v === null) return undefined;
  if (!isNum(v) || !ok(v)) throw badRequest(name, `${name} must be a number in ${range}, got ${show(v)}`);
  return v;
}

function boolField(b: Record<string, unknown>, name: string): boolean | undefined {
  const v = b[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') throw badRequest(name, `${name} must be a boolean, got ${show(v)}`);
  return v;
}

function readMessages(raw: unknown, images: ParsedChatRequest['images']): ChatMessage[] {
  if (!Array.isArray(raw) || raw.length === 0) throw badRequest('messages', 'messages must be a non-empty array of { role, content }');
  return raw.map((m: unknown, i): ChatMessage => {
    const at = `messages[${i}]`;
    if (!isObj(m)) throw badRequest(at, `${at} must be an object { role, content }`);
    let role = m.role;
    if (role === 'developer') role = 'system';
    if (role !== 'system' && role !== 'user' && role !== 'assistant') {
      throw badRequest(`${at}.role`, `${at}.role must be one of system, developer, user, assistant (tools are not supported), got ${show(m.role)}`);
    }
    if (m.tool_calls !== undefined || m.function_call !== undefined) throw badRequest(`${at}.tool_calls`, 'tool calls are not supported');
    const c = m.content;
    if (typeof c === 'string') return { role, content: c };
    if (c === null || c === undefined) {
      if (role === 'assistant') return { role, content: '' };
      throw badRequest(`${at}.content`, `${at}.content is required`);
    }
    if (!Array.isArray(c)) throw badRequest(`${at}.content`, `${at}.content must be a string or an array of content parts`);
    const parts: ContentPart[] = c.map((p: unknown, j): ContentPart => {
      const pat = `${at}.content[${j}]`;
      if (!isObj(p)) throw badRequest(pat, `${pat} must be an object with a type`);
      if (p.type === 'text') {
        if (typeof p.text !== 'string') throw badRequest(`${pat}.text`, `${pat}.text must be a string`);
        return { type: 'text', text: p.text };
      }
      if (p.type === 'image_url') {
        const url = isObj(p.image_url) ? p.image_url.url : undefined;
        if (typeof url !== 'string' || url.length === 0) throw badRequest(`${pat}.image_url.url`, `${pat}.image_url.url must be a non-empty string`);
        if (role !== 'user') throw badRequest(pat, `${pat}: images are only accepted in user messages`);
        images.push({ url, param: `${pat}.image_url.url`, message: i, part: j });
        return { type: 'image', image: url };
      }
      throw badRequest(`${pat}.type`, `${pat}.type must be 'text' or 'image_url', got ${show(p.type)}`);
    });
    return { role, content: parts };
  });
}

/** Checks a chat-completions body; throws ApiError 400 naming the first bad field. */
export function parseChatRequest(body: unknown): ParsedChatRequest {
  if (!isObj(body)) throw badRequest('body', 'the request body must be a JSON object');
  for (const k of Object.keys(body)) {
    if (!KNOWN.has(k)) throw badRequest(k, `Unrecognized request argument supplied: ${k}`);
  }
  const model = body.model;
  if (model !== undefined && typeof model !== 'string') throw badRequest('model', 'model must be a string');
  const images: ParsedChatRequest['images'] = [];
  const messages = readMessages(body.messages, images);

  const stream = boolField(body, 'stream') ?? false;
  let includeUsage = false;
  if (body.stream_options !== undefined && body.stream_options !== null) {
    if (!isObj(body.stream_options)) throw badRequest('stream_options', 'stream_options must be an object');
    if (!stream) throw badRequest('stream_options', 'stream_options is only allowed with stream: true');
    const iu = body.stream_options.include_usage;
    if (iu !== undefined && typeof iu !== 'boolean') throw badRequest('stream_options.include_usage', 'stream_options.include_usage must be a boolean');
    includeUsage = iu === true;
  }
  const stepEvents = boolField(body, 'diffusion_steps') ?? false;
  if (stepEvents && !stream) throw badRequest('diffusion_steps', 'diffusion_steps needs stream: true');

  // Refused: they would change the answer and are not implemented.
  if (body.n !== undefined && body.n !== null && body.n !== 1) throw badRequest('n', 'only n = 1 is supported');
  if (body.logprobs === true || (body.top_logprobs !== undefined && body.top_logprobs !== null)) throw badRequest(body.logprobs === true ? 'logprobs' : 'top_logprobs', 'logprobs are not supported');
  for (const k of ['presence_penalty', 'frequency_penalty'] as const) {
    if (body[k] !== undefined && body[k] !== null && body[k] !== 0) throw badRequest(k, `${k} is not supported (only 0)`);
  }
  if (body.logit_bias !== undefined && body.logit_bias !== null && !(isObj(body.logit_bias) && Object.keys(body.logit_bias).length === 0)) throw badRequest('logit_bias', 'logit_bias is not supported');
  if (Array.isArray(body.tools) ? body.tools.length > 0 : body.tools !== undefined && body.tools !== null) throw badRequest('tools', 'tools are not supported');
  if (body.response_format !== undefined && body.response_format !== null && !(isObj(body.response_format) && body.response_format.type === 'text')) {
    throw badRequest('response_format', "only response_format { type: 'text' } is supported");
  }

  const options: ParsedChatRequest['options'] = {};
  const maxTokens = intField(body, 'max_completion_tokens', 1) ?? intField(body, 'max_tokens', 1);
  if (maxTokens !== undefined) options.maxTokens = maxTokens;
  const temperature = numField(body, 'temperature', (x) => x >= 0 && x <= 2, '[0, 2]');
  if (temperature !== undefined) options.temperature = temperature;
  const topP = numField(body, 'top_p', (x) => x > 0 && x <= 1, '(0, 1]');
  if (topP !== undefined) options.topP = topP;
  const topK = intField(body, 'top_k', 0);
  if (topK !== undefined) options.topK = topK;
  const seed = intField(body, 'seed', 0, 2 ** 53 - 1);
  if (seed !== undefined) options.seed = seed;
  const stop = stopStrings(body.stop);   // an OptionError naming 'stop' → 400 with param 'stop'
  if (stop.length > 0) options.stop = stop;
  const steps = intField(body, 'steps', 1, 1024);
  if (steps !== undefined) options.steps = steps;
  const blockSize = intField(body, 'block_size', 1, 4096);
  if (blockSize !== undefined) options.blockSize = blockSize;
  const threshold = numField(body, 'threshold', (x) => x > 0 && x < 1, '(0, 1)');
  if (threshold !== undefined) options.threshold = threshold;
  if (body.remasking !== undefined && body.remasking !== null) {
    const r = body.remasking;
    if (r !== 'static' && r !== 'dynamic' && r !== 'low_confidence_static' && r !== 'low_confidence_dynamic') {
      throw badRequest('remasking', `remasking must be 'static' or 'dynamic', got ${show(r)}`);
    }
    options.remasking = r;
  }
  if (boolField(body, 'ignore_eos')) options.stopTokens = [];
  if (body.mode !== undefined && body.mode !== null) {
    if (body.mode !== 'diffusion' && body.mode !== 'ar') throw badRequest('mode', `mode must be 'diffusion' or 'ar', got ${show(body.mode)}`);
    options.mode = body.mode;
  }
  return { model, messages, images, stream, includeUsage, stepEvents, options };
}
