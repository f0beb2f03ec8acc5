// index.ts — the text layer: tokenizer loading, prompt building (DiffusionVL `qwen_2_5` format
// with −200 image sentinels, or the model's Jinja template), streaming decode and stop strings.
export { loadTokenizer, createTokenizer, type TextTokenizer, type SpecialIds, type DecodeOptions } from './tokenizer.js';
export {
  buildPrompt, renderPrompt, tokenizeWithImages, IMAGE_PLACEHOLDER, IMAGE_TOKEN_INDEX, DEFAULT_SYSTEM_PROMPT,
  type ChatMessage, type ChatRole, type ContentPart, type TextPart, type ImagePart, type ImageUrlPart,
  type Prompt, type PromptFormat, type PromptOptions, type RenderedPrompt,
} from './prompt.js';
export { IncrementalDecoder, StopStringMatcher, stopAt, evalAnswer, type StopHit } from './stream.js';
