// request.ts — a generate/stream request read once, at the public edge: its own enumerable keys
// copied into a null-prototype object (nothing inherited; a "__proto__" key from JSON.parse is
// an unknown key, never a prototype), the request-level keys type-checked, and the ambiguous
// combinations refused. Decode options are checked by validateDecodeOptions afterwards.
import { OptionError } from '../errors.js';
import { invalidOption } from '../decode/options.js';
import { ownCopy } from './load-options.js';
import { stopStrings } from '../text/stream.js';

/** Keys of a request that are not decode options. */
export const REQUEST_KEYS: ReadonlySet<string> = new Set(['messages', 'prompt', 'promptIds', 'mode', 'format', 'systemPrompt', 'stepEvents', 'engine', 'stop', 'prefixCache']);
const ENGINE_KEYS: ReadonlySet<string> = new Set(['mergeCommit', 'mergePrefill', 'stepEvents']);

/** The checked own-keys copy of a request, and its decode options apart. */
export interface ReadRequest {
  req: Record<string, unknown>;
  decodeOptions: Record<string, unknown>;
}

export function readRequest(reqIn: unknown): ReadRequest {
  if (reqIn === null || typeof reqIn !== 'object' || Array.isArray(reqIn)) throw invalidOption('request', 'object', reqIn);
  const req = ownCopy(reqIn);
  const has = (k: string) => req[k] !== undefined;
  const given = ['messages', 'prompt', 'promptIds'].filter(has);
  if (given.length > 1) {
    throw new OptionError(`give one of messages, prompt or promptIds, not ${given.join(' and ')} (prompt is shorthand for messages: [{ role: 'user', content: prompt }])`, given[1]);
  }
  if (given.length === 0) throw new OptionError('generate: give messages, prompt or promptIds', 'messages');
  if (has('prompt') && typeof req.prompt !== 'string') throw invalidOption('prompt', 'string', req.prompt);
  if (has('messages') && !Array.isArray(req.messages)) throw invalidOption('messages', 'array of { role, content }', req.messages);
  if (has('promptIds') && !(Array.isArray(req.promptIds) || ArrayBuffer.isView(req.promptIds))) throw invalidOption('promptIds', 'array of token ids', req.promptIds);
  if (has('mode') && req.mode !== 'diffusion' && req.mode !== 'ar') throw invalidOption('mode', "'diffusion' or 'ar'", req.mode);
  if (has('format') && req.format !== 'diffusionvl' && req.format !== 'template') throw invalidOption('format', "'diffusionvl' or 'template'", req.format);
  if (has('systemPrompt') && req.systemPrompt !== null && typeof req.systemPrompt !== 'string') throw invalidOption('systemPrompt', 'string or null', req.systemPrompt);
  if (has('stepEvents') && typeof req.stepEvents !== 'boolean') throw invalidOption('stepEvents', 'boolean', req.stepEvents);
  if (has('stop')) stopStrings(req.stop);   // a string or up to 16 non-empty strings (text/stream.ts)
  if (has('engine')) {
    if (req.engine === null || typeof req.engine !== 'object' || Array.isArray(req.engine)) throw invalidOption('engine', 'object', req.engine);
    const engine = ownCopy(req.engine as object);
    for (const [k, v] of Object.entries(engine)) {
      if (!ENGINE_KEYS.has(k)) throw new OptionError(`Unknown option "engine.${k}" (known: ${[...ENGINE_KEYS].map((x) => `engine.${x}`).join(', ')})`, `engine.${k}`);
      if (v !== undefined && typeof v !== 'boolean') throw invalidOption(`engine.${k}`, 'boolean', v);
    }
    req.engine = engine;
  }
  const decodeOptions = Object.create(null) as Record<string, unknown>;
  for (const k of Object.keys(req)) if (!REQUEST_KEYS.has(k)) decodeOptions[k] = req[k];
  return { req, decodeOptions };
}
