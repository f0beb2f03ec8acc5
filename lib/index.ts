// index.ts — the public API of diffusionvl.
//
//   import { loadModel } from 'diffusionvl';
//   await using model = await loadModel();            // the bundled DiffusionVL child (models/); TS (Node 20 JS: try/finally + dispose())
//   await using model = await loadModel('./my-model');
//   await using model = await loadModel('./my-model', { gpu: 'cuda' });   // model.backend says where it runs
//   const { text, stats } = await model.generate({ prompt: 'Hello', steps: 4 });
//   for await (const ev of model.stream({ messages })) if (ev.type === 'block') process.stdout.write(ev.text);
//   await using chat = model.createSession();         // keeps its KV cache between turns
//   await chat.send('What is at the top left?', { images: ['shapes.png'] });
//   The OpenAI-compatible server: import { startServer } from 'diffusionvl/server'.
export { loadModel, Model, ModelStream } from './model/model.js';
export type { GenerateRequest, GenerateResult, GenerateStats, GenerationMode, LoadModelOptions, MemoryEstimate, ModelLimits, OpProfileLine, StreamEvent, TokenCount } from './model/model.js';
export { LIMIT_DEFAULTS, LOAD_OPTIONS } from './model/load-options.js';
export { estimateMemory } from './model/memory.js';
export { ChatSession } from './model/session.js';
export type { ChatSessionOptions, SessionStats, TurnOptions } from './model/session.js';
export { PrefixCache, PREFIX_CACHE_DEFAULT_BYTES } from './model/prefix-cache.js';
export type { PrefixCacheOptions, PrefixCacheStats } from './model/prefix-cache.js';
export type { DecodeOptions } from './decode/options.js';
export type { DecodeStats } from './decode/runner.js';
export type { ChatMessage, ContentPart } from './text/prompt.js';
export type { ModelConfig } from './weights/config.js';
export { bundledModelDir, bundledHeldoutDir, resolveModelDir, DEFAULT_MODEL, BUNDLED_MODELS, MODEL_NOT_FOUND } from './models.js';
export type { BundledModelName } from './models.js';
export { evalHeldout, readHeldout, HELDOUT_FORMAT } from './eval.js';
export type { EvalRequest, EvalResult, EvalItemResult, HeldoutItem, HeldoutSet, KindScore } from './eval.js';
export { nativeInfo } from './native/index.js';
export { backendName, getBackendInfo } from './native/backend.js';
export type { BackendInfo, BackendOptions, CudaReason, GpuOption } from './native/backend.js';
export * from './errors.js';
