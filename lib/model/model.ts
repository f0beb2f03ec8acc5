// model.ts — a loaded model: queue, weights, tokenizer, text decoder, KV cache, and the
// generate/stream entry points that pick the decoding mode.
//
// Generations run concurrently, up to maxBatch at once: each holds a KV-cache slot of the batch
// scheduler (scheduler.ts) from its prefill to its end, and every forward carries the steps of
// all of them (continuous batching; at temperature 0 each request's ids equal its run alone).
// Further calls wait for a slot in order; a waiting call whose signal aborts leaves at once.
// stream() returns a ModelStream (model-stream.ts) that releases the slot when the consumer
// returns, goes idle or drops it. dispose() frees native memory at once; a generation in
// flight rejects with DisposedError.
//
// Before any heavy work a request is read once (request.ts: own keys only, types, prompt and
// messages not both), its prompt rendered (a chat template in its own process, text/template.ts)
// and tokenized in pieces against the context (text/encode.ts), its images probed from their
// headers (size, pixels, the tokens they will take) and its decode options checked against the
// resulting prompt length; only then are images decoded, one at a time.
//
// Images (docs §3.6): the prompt carries one −200 sentinel per image. Before decoding, each
// image is decoded, preprocessed and encoded (Qwen2.5-VL tower, or the SigLIP route), and the
// prompt is expanded: each sentinel becomes N placeholder positions (id 0, a valid row for the
// embedding gather), N = the image's feature rows. `featureRow[p]` maps a prompt position to its
// feature row; every forward that covers prompt positions (the prefill, the straddling block on
// each step, the AR prefill) gathers those rows and scatters them over the token embeddings.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError, DisposedError, ImageError, OptionError } from '../errors.js';
import { Queue, nativeInfo, type Isa, type OpProfileEntry, type Precision, type QueueStats, type Tensor } from '../native/index.js';
import { PlanCache, type PlanCacheStats } from '../native/plan.js';
import { getBackendInfo, type BackendInfo, type GpuOption } from '../native/backend.js';
import { runAutoregressive, runBlockDiffusion, type DecodeEvent, type DecodeResult, type DecodeStats, type RunnerFlags, type Stepper } from '../decode/runner.js';
import { validateDecodeOptions, type DecodeOptions } from '../decode/options.js';
import type { DecodeModel } from '../decode/reference.js';
import { DEFAULT_MASK_TOKEN_ID, readConfig, type ModelConfig } from '../weights/config.js';
import { loadWeights, type LoadProgress, type LoadedWeights } from '../weights/load.js';
import { loadTokenizer, type TextTokenizer } from '../text/tokenizer.js';
import { buildPrompt, buildPromptAsync, IMAGE_TOKEN_INDEX, type ChatMessage, type PromptFormat, type PromptOptions } from '../text/prompt.js';
import type { EncodeLimits } from '../text/encode.js';
import { IncrementalDecoder, StopStringMatcher, stopAt, stopStrings, tokensCovering } from '../text/stream.js';
import { decodeImage, preloadImageDecoder, probeImageKeep, ProbedImage, type DecodeOptions as ImageDecodeOptions, type ImageInput } from '../image/decode.js';
import type { TextDecoder } from './decoder.js';
import { createTextDecoder } from './families.js';
import { createVisionEncoder, visionOutputSize, type VisionEncoder } from './vision.js';
import { resolveLimits, validateLoadOptions, type ModelLimits } from './load-options.js';
import { availableHostMemory, checkMemory, estimateMemory, panelLayouts, type MemoryEstimate } from './memory.js';
import { BatchScheduler, type SchedulerStats, type Sequence } from './scheduler.js';
import { ModelStream } from './model-stream.js';
import { readRequest } from './request.js';
import { checkModelDir } from '../models.js';
import { streamReusing, type KvTenant, type Prepared, type ReuseHost } from './kv-reuse.js';
import { ChatSession, type ChatSessionOptions } from './session.js';
import { PrefixCache, type PrefixCacheOptions } from './prefix-cache.js';

export type { ModelLimits } from './load-options.js';
export type { MemoryEstimate } from './memory.js';
export { ModelStream } from './model-stream.js';

/**
 * loadModel's options. Each is checked by the table in load-options.ts (unknown keys with a
 * hint, types, ranges) before anything is read.
 */
export interface LoadModelOptions {
  /** Kernel threads (default: physical cores; at most 2 × the logical CPUs, min 4). */
  threads?: number;
  /**
   * Dtype for weight matrices (default: as stored). 'q8': int8 with a bf16 scale per block of
   * 32, quantised while loading (2-D matrices; conv kernels and 1-D tensors keep theirs), about
   * half the bytes of bf16; CPU only (README "Precision (CPU)").
   */
  dtype?: 'bf16' | 'f16' | 'f32' | 'q8';
  /**
   * CPU matmul precision (default 'fast'): 'fast' rounds activations to bf16 for bf16 weights
   * (vdpbf16ps, on CPUs with AVX512_BF16) and to int8 blocks for q8 weights; 'exact' keeps them
   * f32 (the reference kernels). model.backend.cpu.kernels says what runs. No effect on CUDA.
   */
  precision?: Precision;
  /** Force a CPU SIMD level (default: best available, or DIFFUSIONVL_CPU_ISA). */
  isa?: Isa;
  /** KV-cache capacity in positions (default: min(max_position_embeddings, 8192)). */
  contextLength?: number;
  onProgress?: (p: LoadProgress) => void;
  signal?: AbortSignal;
  /** Load the vision tower when the checkpoint has one (default true; false: text-only prompts). */
  vision?: boolean;
  /**
   * 'auto' (default): the GPU when the CUDA backend is usable, else the CPU (model.backend says
   * why). 'cuda': the GPU or a BackendError. false / 'cpu': the CPU. DIFFUSIONVL_GPU overrides.
   */
  gpu?: GpuOption;
  /** CUDA device index (default 0). */
  device?: number;
  /** Extra places to look for libdiffusionvl_cuda.so (files or folders). */
  cudaPluginPaths?: readonly string[];
  /**
   * Run every forward op by op instead of recording each pass shape once and replaying it with
   * one native call (default false; DIFFUSIONVL_EAGER=1 does the same). Results are identical
   * bit for bit; eager is for debugging and tests.
   */
  eager?: boolean;
  /**
   * Refuse to load when the memory estimate (weights, KV cache at contextLength, activations,
   * vision; `model.memory`) exceeds the memory available (default true): a MemoryError says
   * what to change. false loads anyway.
   */
  memoryCheck?: boolean;
  /** Work limits for requests (stream idle time, template, prompt and image sizes). */
  limits?: ModelLimits;
  /**
   * Requests decoded together (continuous batching): each takes a KV-cache slot of
   * contextLength positions (default 4; host slots are memory only once used). Further
   * requests wait for a slot.
   */
  maxBatch?: number;
  /**
   * Rows per forward that prompt prefills may fill up to while other requests decode (default
   * 64 on the CPU, 512 on the GPU): a long prompt is prefilled in chunks between their steps.
   * Decode steps join a forward while they fit too, so this also bounds how long a newcomer
   * waits for the forward already running (bench/RESULTS.md: the trade on 2 cores).
   */
  maxBatchRows?: number;
  /**
   * While a short decode step runs (recent steps under 2 ms), keep the event loop polling
   * (setImmediate turns) instead of sleeping until its result arrives (default false). A
   * sleeping loop takes 50-150 µs to wake on a VM, about a small model's whole step: on the dev
   * VM polling cut the bundled child's decode phase by 13 % and its median request by 4-5 %,
   * but the slowest tenth of requests got 10-20 % slower (a busy core is one the VM's other
   * threads and neighbours wait for), and it keeps a core busy while such a model decodes.
   * I/O and timers still run meanwhile. For decode-rate benchmarks of small models.
   */
  pollSteps?: boolean;
}

export type GenerationMode = 'diffusion' | 'ar';

/** How long a request's prewarm keeps the queue thread spinning for its first op (µs): longer
 *  than a small picture's decode and the prompt's tokenizing, short enough not to hold a core. */
const PREWARM_US = 2000;

export interface GenerateRequest extends DecodeOptions {
  /** Chat messages (OpenAI / HF style). */
  messages?: readonly ChatMessage[];
  /** A single user message (shorthand for messages: [{ role: 'user', content: prompt }]). */
  prompt?: string;
  /** Prompt token ids, used as they are (no template). */
  promptIds?: readonly number[];
  /** 'diffusion' (default for DiffusionVL models) or 'ar' (stock checkpoints). */
  mode?: GenerationMode;
  /** Prompt format (default: 'diffusionvl' for DiffusionVL models, 'template' otherwise). */
  format?: PromptFormat;
  /** System prompt for the 'diffusionvl' format (null: none). */
  systemPrompt?: string | null;
  /** Emit `step` events (canvas snapshots) from stream(). */
  stepEvents?: boolean;
  /** Engine switches for tests and benchmarks. */
  engine?: Pick<RunnerFlags, 'mergeCommit' | 'mergePrefill' | 'stepEvents'>;
  /**
   * Stop strings: decoding ends after the block where one appears; the text ends before it
   * (finishReason 'stop'). Streamed text never shows a stop string, even one split across blocks.
   */
  stop?: string | readonly string[];
  /** Reuse K/V of earlier requests with the same prefix (Model.createPrefixCache). */
  prefixCache?: PrefixCache;
}

export interface GenerateStats extends DecodeStats {
  /** Milliseconds spent on images in all: imageMs + the vision tower (0 without images). */
  visionMs: number;
  /** Where a request's fixed work went, in milliseconds (wall clock, this request only):
   *  prompt = chat template and tokenisation; image = decoding and preprocessing the images;
   *  tower = the vision encoder; prefill = the prompt's forward (as DecodeStats.prefillMs; in AR
   *  mode it yields the first token); decode = the rest, which yields decodeTokens. The spans
   *  are disjoint: the first forward is queued behind the tower, so the tower ends and the
   *  prefill starts when the tower's ops have run (the decoder's set-up overlaps the tower). */
  timings: { promptMs: number; imageMs: number; towerMs: number; prefillMs: number; decodeMs: number; decodeTokens: number };
  /** Prompt positions taken by each image's features, in image order. */
  imageTokens: number[];
}

export interface GenerateResult extends DecodeResult {
  text: string;
  mode: GenerationMode;
  stats: GenerateStats;
  /** The stop string that ended the text, when one did. */
  stopString?: string;
}

/** What a prompt costs in positions, without running the model (Model.countTokens). */
export interface TokenCount {
  /** Positions the prompt takes: text tokens plus every image's feature rows (stats.promptTokens of a run). */
  promptTokens: number;
  textTokens: number;
  /** Feature rows per image, in prompt order. */
  imageTokens: number[];
  /** The prompt's ids with one −200 per image (Model.promptIds). */
  ids: number[];
}

/** A prompt with its images encoded: ids expanded to one position per feature row. */
export interface EncodedPrompt {
  /** Token ids; image positions hold 0 (overridden by the features). */
  ids: number[];
  /** Per prompt position: its feature row, or −1 for a text token. */
  featureRow: Int32Array;
  /** f32 [Σ tokens, H], or null without images. */
  features: Tensor | null;
  imageTokens: number[];
  visionMs: number;
  imageMs: number;
  towerMs: number;
  /**
   * Pipelined encodes only (encodePrompt's `pipelined`): settles (never rejects) once the tower's
   * ops ran, after setting towerMs, visionMs, towerEnd and, if the tower failed, towerError.
   */
  towerDone?: Promise<void>;
  /** performance.now() when the tower's ops had run (pipelined: once towerDone settled). */
  towerEnd?: number;
  towerError?: unknown;
}

export type StreamEvent =
  | { type: 'block'; text: string; ids: number[]; block: number }
  | { type: 'step'; block: number; iteration: number; start: number; ids: number[]; masked: boolean[]; revealed: number[]; confidence: number[] }
  | { type: 'done'; result: GenerateResult };

/** Key of the model's engine lent to sessions and prefix caches (kv-reuse.ts); not public API. */
export const REUSE_HOST = Symbol('diffusionvl.reuseHost');

/** One line of Model.profile(): the jobs of one op key. */
export interface OpProfileLine extends OpProfileEntry {
  /** ms ÷ the profile's total ms. */
  share: number;
  /** Matmuls: weight bytes ÷ time, in GB/s (what the weights streamed at); else 0. */
  weightGBps: number;
}

/** Sorts a queue's profile by time and adds each line's share and weight bandwidth. */
export function profileLines(entries: readonly OpProfileEntry[]): { ops: OpProfileLine[]; totalMs: number } {
  const totalMs = entries.reduce((a, e) => a + e.ms, 0);
  const ops = entries
    .map((e) => ({ ...e, share: totalMs > 0 ? e.ms / totalMs : 0, weightGBps: e.ms > 0 ? e.weightBytes / (e.ms * 1e6) : 0 }))
    .sort((a, b) => b.ms - a.ms);
  return { ops, totalMs };
}

export class Model {
  readonly config: ModelConfig;
  readonly tokenizer: TextTokenizer;
  /** Bytes of weights held natively (in GPU memory when backend.backend is 'cuda'). */
  readonly weightBytes: number;
  /** Where the model runs, and when not on the GPU, why (see getBackendInfo). */
  readonly backend: BackendInfo;
  /** The load-time memory estimate (memory.ts) the load was checked against. */
  readonly memory: MemoryEstimate;
  /** The work limits in force (LoadModelOptions.limits with defaults). */
  readonly limits: Readonly<ReturnType<typeof resolveLimits>>;
  private readonly queue: Queue;
  private readonly weights: LoadedWeights;
  /** The text decoder of the checkpoint's family (families.ts). */
  private readonly text: TextDecoder;
  /** The vision route (vision.ts): null without one, or for a load with vision: false. */
  private readonly vision: VisionEncoder | null;
  /** Continuous batching: the cache slots and the batched forwards of all requests in flight. */
  private readonly sched: BatchScheduler;
  private _disposed = false;
  private profiling = false;
  /** Per cache slot: whose committed prefix it holds between runs (a session, a prefix cache), or null. */
  private readonly tenants: (KvTenant | null)[] = [];
  /** Sessions and prefix caches made by this model: disposed with it. */
  private readonly children = new Set<{ dispose(): void }>();

  private constructor(queue: Queue, weights: LoadedWeights, tokenizer: TextTokenizer, contextLength: number, backend: BackendInfo,
    memory: MemoryEstimate, limits: ReturnType<typeof resolveLimits>, batch: { maxBatch: number; maxRows: number; pollSteps: boolean }) {
    this.queue = queue;
    this.backend = backend;
    this.memory = memory;
    this.limits = Object.freeze({ ...limits });
    this.weights = weights;
    this.config = weights.config;
    this.tokenizer = tokenizer;
    this.weightBytes = weights.bytes;
    this.text = createTextDecoder(queue, weights);
    this.vision = createVisionEncoder(queue, weights);
    this.text.allocateCache({ capacity: contextLength, slots: batch.maxBatch });
    this.sched = new BatchScheduler(this.text, queue, batch);
  }

  /** Continuous batching counters: forwards, rows and sequences per forward, open and waiting requests; the settings (maxBatch, maxRows, pollSteps). */
  get batching(): SchedulerStats & { maxBatch: number; maxRows: number; pollSteps: boolean } {
    return { ...this.sched.stats, ...this.sched.opts, pollSteps: this.sched.opts.pollSteps === true };
  }

  /** How forwards run: recorded plans (with their cache counters) or op by op, and the queue's job counters. */
  get execution(): { mode: 'plan' | 'eager'; plans: PlanCacheStats; queue: QueueStats } {
    return { mode: this.text.eager ? 'eager' : 'plan', plans: { ...this.text.plans.stats }, queue: this.queue.stats() };
  }

  /**
   * Runs `fn` (usually a generate() or two) with every CPU op timed, and returns its result with
   * where the time went: one line per op, a matmul split by weight dtype and row count, the
   * costliest first, with its share of the timed total and, for matmuls, the weights' GB/s. Ops
   * of other requests running meanwhile are counted too. On a CUDA backend the ops only enqueue
   * device work, so the lines are empty. Timing adds ≈ 50 ns per op; the kernels are unchanged.
   */
  async profile<T>(fn: () => Promise<T>): Promise<{ result: T; ops: OpProfileLine[]; totalMs: number }> {
    this.ensureAlive();
    if (this.profiling) throw new OptionError('profile(): a profile is already running on this model', 'profile');
    this.profiling = true;
    this.queue.setProfiling(true);
    try {
      const result = await fn();
      await this.queue.sync();
      return { result, ...profileLines(this.queue.profile()) };
    } finally {
      this.profiling = false;
      if (!this._disposed) this.queue.setProfiling(false);
    }
  }

  /** Loads config, tokenizer and weights from a model folder (see loadModel). */
  static async load(dir: string, optsIn: LoadModelOptions = {}): Promise<Model> {
    const opts = validateLoadOptions(optsIn) as LoadModelOptions;
    const limits = resolveLimits(opts.limits);
    checkModelDir(dir);
    const config = await readConfig(dir);
    if (!existsSync(join(dir, 'tokenizer.json'))) {
      throw new OptionError(`${dir}: no tokenizer.json (a model folder needs its tokenizer files)`, 'dir');
    }
    const contextLength = opts.contextLength ?? Math.min(config.text.maxPositionEmbeddings, 8192);
    if (config.vision && opts.vision !== false) preloadImageDecoder();   // meanwhile: the weights load
    let backend = getBackendInfo({ gpu: opts.gpu, device: opts.device, cudaPluginPaths: opts.cudaPluginPaths });
    if (opts.dtype === 'q8' && backend.backend === 'cuda') backend = q8OnCpu(backend, opts.gpu);
    // The estimate comes from config.json alone, before the tokenizer, the queue or any tensor:
    // an absurd config or contextLength fails here in milliseconds.
    const batch = { maxBatch: opts.maxBatch ?? 4, maxRows: opts.maxBatchRows ?? (backend.backend === 'cuda' ? 512 : 64), pollSteps: opts.pollSteps ?? false };
    // The panel layouts (bf16p, q8p) the queue will pick (checked against queue.kernels below).
    const panels = panelLayouts(opts.isa ?? nativeInfo().isa, opts.precision ?? 'fast', backend.backend);
    const memory = estimateMemory(config, {
      contextLength, dtype: opts.dtype, vision: opts.vision, imagePixels: limits.imagePixels, device: backend.backend, slots: batch.maxBatch, panels,
    });
    if (opts.memoryCheck !== false) {
      const gpuBytes = backend.cuda.device?.memoryBytes;
      checkMemory(memory, backend.backend === 'cuda' && gpuBytes ? gpuBytes : availableHostMemory(), dir);
    }
    const tokenizer = await loadTokenizer(dir);
    const queue = new Queue({ threads: opts.threads, isa: opts.isa, device: backend.backend, precision: opts.precision });
    if (backend.backend === 'cpu') backend = { ...backend, cpu: { ...backend.cpu, kernels: queue.kernels ?? undefined } };
    let weights: LoadedWeights | undefined;
    try {
      const v = config.vision;
      if (v && opts.vision !== false) {
        const out = visionOutputSize(config);
        if (out !== config.text.hiddenSize) {
          throw new ConfigError(`${dir}: vision out_hidden_size ${out} differs from the text hidden size ${config.text.hiddenSize}`, { field: 'vision_config.out_hidden_size' });
        }
      }
      const packBf16 = backend.backend === 'cpu' && queue.kernels?.bf16Packed === true;
      const packQ8 = backend.backend === 'cpu' && queue.kernels?.q8Packed === true;
      weights = await loadWeights(dir, queue, { dtype: opts.dtype, packBf16, packQ8, onProgress: opts.onProgress, signal: opts.signal, vision: opts.vision ?? true });
      const m = new Model(queue, weights, tokenizer, contextLength, backend, memory, limits, batch);
      if (opts.eager !== undefined) {
        m.text.eager = opts.eager === true;
        if (m.vision) m.vision.eager = opts.eager === true;
      }
      await queue.sync();
      if (opts.signal?.aborted) { m.dispose(); throw opts.signal.reason; }
      return m;
    } catch (e) {
      weights?.dispose();
      queue.dispose();
      throw e;
    }
  }

  get disposed(): boolean { return this._disposed; }
  /** True for DiffusionVL (block-diffusion) checkpoints. */
  get isDiffusion(): boolean { return this.config.diffusion !== null; }
  get contextLength(): number { return this.text.capacity; }

  private ensureAlive(): void {
    if (this._disposed) throw new DisposedError('the model was disposed');
  }

  /** Token ids of the request's prompt; each image is one IMAGE_TOKEN_INDEX (−200) sentinel. */
  promptIds(req: GenerateRequest): number[] {
    const { req: r } = readRequest(req);
    const prep = this.promptSource(r);
    if ('ids' in prep) return prep.ids;
    return buildPrompt(this.tokenizer, prep.messages, prep.options, this.encodeLimits()).ids;
  }

  /** What the text prompt must fit: the context (one position left to generate) and the byte cap. */
  private encodeLimits(signal?: AbortSignal): EncodeLimits {
    return { maxTokens: this.contextLength - 1, maxBytes: this.limits.promptBytes, signal };
  }

  /** promptIds as given (checked), or the messages and prompt options to render. */
  private promptSource(r: Record<string, unknown>): { ids: number[] } | { messages: readonly ChatMessage[]; options: PromptOptions } {
    if (r.promptIds !== undefined) {
      const given = r.promptIds as ArrayLike<number>;
      if (given.length > this.contextLength) {
        throw new OptionError(`promptIds holds ${given.length} ids, more than the context length ${this.contextLength}`, 'promptIds');
      }
      return { ids: Array.from(given) };
    }
    const messages: readonly ChatMessage[] = (r.messages as readonly ChatMessage[] | undefined) ?? [{ role: 'user', content: r.prompt as string }];
    // DiffusionVL-layout checkpoints (child or AR parent) use the §4.1 format; others their template.
    const dvlLayout = this.isDiffusion || this.config.family === 'diffusionvl_qwenvl' || this.config.family === 'diffusionvl_qwen';
    const format = (r.format as PromptFormat | undefined) ?? (dvlLayout ? 'diffusionvl' : (this.tokenizer.chatTemplate ? 'template' : 'diffusionvl'));
    return {
      messages,
      options: {
        format, systemPrompt: r.systemPrompt as string | null | undefined,
        templateLimits: { timeMs: this.limits.templateMs, maxChars: this.limits.templateChars },
      },
    };
  }

  /**
   * The prompt's ids (with sentinels) and its images in sentinel order, without blocking the
   * event loop: a template renders in its own process, the text is tokenized in pieces against
   * the context. Then the cheap checks on images (sentinel count, a tower loaded).
   */
  private async prompt(r: Record<string, unknown>, signal?: AbortSignal): Promise<{ ids: number[]; images: unknown[] }> {
    const prep = this.promptSource(r);
    let ids: number[], images: unknown[];
    if ('ids' in prep) {
      ids = prep.ids;
      images = [];
    } else {
      ({ ids, images } = await buildPromptAsync(this.tokenizer, prep.messages, prep.options, this.encodeLimits(signal)));
    }
    const sentinels = ids.reduce((n, t) => n + (t === IMAGE_TOKEN_INDEX ? 1 : 0), 0);
    if (sentinels !== images.length) {
      throw new OptionError(`the prompt has ${sentinels} image sentinel(s) (${IMAGE_TOKEN_INDEX}) but ${images.length} image(s) were given`, r.promptIds ? 'promptIds' : 'messages');
    }
    if (sentinels > 0) {
      const v = this.config.vision;
      if (!v) throw new OptionError(`this model (${this.config.modelType}) has no vision tower: remove the images from the prompt`, 'messages');
      if (!this.vision) throw new OptionError('the model was loaded with vision: false: load it again without that option to use images', 'messages');
    }
    return { ids, images };
  }

  /** The decodeImage options of this model's limits. */
  private imageOptions(): ImageDecodeOptions {
    return { maxPixels: this.limits.imagePixels, maxBytes: this.limits.imageBytes };
  }

  /**
   * Header-first image checks (no pixel decoded): each image readable, a regular file within
   * the byte and pixel limits, all of them within the request's pixel budget; returns the
   * prompt positions each will take (the same numbers preprocessing gives).
   */
  private async probeImages(images: readonly unknown[], signal?: AbortSignal): Promise<{ tokens: number[]; kept: unknown[] }> {
    const v = this.vision;
    if (images.length === 0 || !v) return { tokens: [], kept: [...images] };
    const tokens: number[] = [];
    // What encodePrompt decodes: each image as read here (its encoded bytes and checked header),
    // so a file is read once per request and its header parsed once.
    const kept: unknown[] = [];
    let pixels = 0;
    for (const im of images) {
      if (signal?.aborted) throw signal.reason;
      const { probe: p, image } = await probeImageKeep(im as ImageInput, this.imageOptions());
      kept.push(image);
      pixels += p.width * p.height;
      if (pixels > this.limits.requestPixels) {
        throw new ImageError(`the request's images hold more than ${this.limits.requestPixels} pixels in all (limits.requestPixels; ` +
          `${images.length} image(s), ${p.label} is ${p.width}×${p.height}); send fewer or smaller images`, p.label);
      }
      tokens.push(v.tokenCount(p.width, p.height, { multiImage: images.length > 1 }));
    }
    return { tokens, kept };
  }

  /**
   * Decodes, preprocesses and encodes the images, and expands each sentinel into one position
   * per feature row (docs §3.6). Runs on the model's queue; the caller holds a slot. An abort
   * rejects with signal.reason once the queued tower work ran (other requests share the queue). Images are decoded one
   * at a time, each dropped once preprocessed, so at most one full-size image is in memory.
   *
   * `pipelined`: return as soon as the tower's ops are queued, without waiting for them; the
   * caller's first forward then queues right behind the tower (its host preparation overlaps the
   * tower's work, and one round trip to the event loop goes). The caller must not trust anything
   * computed from the features before `towerDone` settled without `towerError` (checkTower).
   */
  private async encodePrompt(ids: readonly number[], images: readonly unknown[], signal?: AbortSignal, multiImage?: boolean, pipelined = false): Promise<EncodedPrompt> {
    if (images.length === 0) return { ids: Array.from(ids), featureRow: new Int32Array(ids.length).fill(-1), features: null, imageTokens: [], visionMs: 0, imageMs: 0, towerMs: 0 };
    const t0 = performance.now();
    const checkAbort = () => { this.ensureAlive(); if (signal?.aborted) throw signal.reason; };
    checkAbort();
    // Each image is decoded, then prepared at once (so at most one decoded image is held where
    // the route allows), then all go through the encoder. On the SigLIP route (§3.5) several
    // images in one prompt are each padded to a square and take one crop (step 8).
    const enc = this.vision!;
    const opts = { multiImage: multiImage ?? images.length > 1 };
    const prepared: unknown[] = [];
    let tTower: number, features: Tensor, imageTokens: number[];
    try {
      for (const im of images) {
        const img = await decodeImage(im as ImageInput | ProbedImage, this.imageOptions());
        checkAbort();
        prepared.push(await enc.prepare(img, opts));
      }
      checkAbort();
      tTower = performance.now();
      ({ features, tokensPerImage: imageTokens } = await enc.encode(prepared, opts));
    } finally {
      for (const p of prepared) enc.discard?.(p);   // queued work keeps what it reads
    }
    // Expand: sentinel k → imageTokens[k] positions holding feature rows off_k .. off_k + N_k − 1.
    const out: number[] = [];
    const rows: number[] = [];
    let k = 0, off = 0;
    for (const t of ids) {
      if (t !== IMAGE_TOKEN_INDEX) { out.push(t); rows.push(-1); continue; }
      for (let i = 0; i < imageTokens[k]; i++) { out.push(0); rows.push(off + i); }
      off += imageTokens[k++];
    }
    const p: EncodedPrompt = { ids: out, featureRow: Int32Array.from(rows), features, imageTokens, visionMs: 0, imageMs: tTower - t0, towerMs: 0 };
    const ran = (): void => { p.towerEnd = performance.now(); p.towerMs = p.towerEnd - tTower; p.visionMs = p.towerEnd - t0; };
    if (pipelined) {
      // The sync is queued right behind the tower's ops (encode queues them all without an
      // await), so the sticky error it reports, if any, is the tower's own.
      p.towerDone = this.queue.sync().then(ran, (e) => { ran(); p.towerError = e; });
      return p;
    }
    // The tower's ops are queued among other requests' steps (the queue is shared), so an
    // abort cannot cancel them: it takes effect once they ran.
    try {
      await this.queue.sync();
      checkAbort();
    } catch (e) {
      features.dispose();
      if (signal?.aborted) throw signal.reason;
      throw e;
    }
    ran();
    return p;
  }

  /**
   * A pipelined encode (encodePrompt): waits until its tower ran (settled before any later read
   * on the queue resolves, so normally at once) and throws the tower's error, if any.
   */
  private async checkTower(p: EncodedPrompt): Promise<void> {
    if (!p.towerDone) return;
    await p.towerDone;
    if (p.towerError !== undefined) throw p.towerError;
  }

  /** Generates a reply; resolves with text, ids, finish reason and stats. */
  async generate(req: GenerateRequest): Promise<GenerateResult> {
    let result: GenerateResult | undefined;
    for await (const ev of this.stream(req)) if (ev.type === 'done') result = ev.result;
    return result!;
  }

  /**
   * Generates a reply as events: `block` (newly final text), optional `step`, then `done`.
   * The model is held from the first next() until the stream ends; call `return()` (or
   * `break` out of `for await`) to stop early and release it at once. A stream left idle for
   * limits.streamIdleMs (default 60 s), one whose signal aborts while idle, or one dropped and
   * garbage-collected is closed and releases the model too (model-stream.ts).
   */
  stream(req: GenerateRequest): ModelStream<StreamEvent> {
    // Read now, so a caller changing the object afterwards changes nothing; errors surface at
    // the first next(), as they did from the plain generator.
    let read: ReturnType<typeof readRequest> | undefined, err: unknown;
    try { read = readRequest(req); } catch (e) { err = e; }
    const signal = read?.decodeOptions.signal as AbortSignal | undefined;
    // With a prefix cache the reuse pipeline (kv-reuse.ts) runs the request instead.
    const cache = read?.req.prefixCache;
    const events = cache !== undefined ? this.reuseEvents(read!, cache) : this.generateEvents(read, err);
    return new ModelStream(events, { idleMs: this.limits.streamIdleMs, signal: isSignal(signal) ? signal : undefined });
  }

  private async *reuseEvents(read: ReturnType<typeof readRequest>, cache: unknown): AsyncGenerator<StreamEvent, void, undefined> {
    yield* streamReusing(this[REUSE_HOST](), read, this.checkPrefixCache(cache));
  }

  /**
   * Everything before the model lock: the request's prompt rendered and tokenized, every
   * option checked against the text alone and then against the prompt's real length (image
   * tokens from the headers), so nothing heavy starts for a request that would fail.
   */
  private async prepare(read: ReturnType<typeof readRequest>): Promise<Prepared> {
    this.ensureAlive();
    // The request's first ops follow its prompt and image preparation here: wake the queue
    // thread now, in parallel with it (a sleeping one took 50-150 µs to wake on the dev VM).
    // Not the kernel workers: spinning beside this preparation on 2 cores slowed it more than
    // their wake-up costs (the queue thread wakes them with the first op that forks).
    this.queue.prewarm(PREWARM_US);
    const { req: r, decodeOptions } = read;
    const mode = this.modeOf(r, decodeOptions);
    const signal = isSignal(decodeOptions.signal) ? decodeOptions.signal as AbortSignal : undefined;
    const tPrompt = performance.now();
    const { ids, images: given } = await this.prompt(r, signal);
    let images = given;
    const promptMs = performance.now() - tPrompt;
    const dm = mode === 'diffusion' ? this.decodeModel(decodeOptions) : undefined;
    const check = (P: number) => validateDecodeOptions(decodeOptions as DecodeOptions, dm
      ? { ...dm, promptLength: P }
      : { blockSize: 1, eosId: this.config.eosTokenId, vocabSize: this.config.text.vocabSize, contextLength: this.contextLength, promptLength: P, autoregressive: true });
    const resolved = check(ids.length - images.length);
    const tProbe = performance.now();
    let imageTokens: number[] = [];
    if (images.length > 0) {
      ({ tokens: imageTokens, kept: images } = await this.probeImages(images, signal));
      check(ids.length - images.length + imageTokens.reduce((a, b) => a + b, 0));
    }
    const probeMs = images.length > 0 ? performance.now() - tProbe : 0;
    return { r, decodeOptions: decodeOptions as DecodeOptions, mode, dm, ids, images, imageTokens, promptMs, probeMs, signal, blockSize: resolved.blockSize, maxTokens: resolved.maxTokens };
  }

  private async *generateEvents(read: ReturnType<typeof readRequest> | undefined, err: unknown): AsyncGenerator<StreamEvent, void, undefined> {
    if (!read) throw err;
    const { r, decodeOptions, mode, dm, ids, images, promptMs, probeMs, signal } = await this.prepare(read);
    const seq = await this.sched.open(signal);
    try {
      this.ensureAlive();
      this.evictTenant(seq.slot);
      const p = await this.encodePrompt(ids, images, signal, undefined, true);
      try {
        p.imageMs += probeMs;   // reading the image headers counts as image work
        yield* this.run(p, seq, decodeOptions, mode, r as GenerateRequest, dm, promptMs, {}, probeMs);
      } finally {
        p.features?.dispose();
      }
    } finally {
      this.sched.close(seq);
    }
  }

  /**
   * Scores a prompt without generating: logits f32 [rows.length, V] of one forward over the
   * whole prompt (images spliced) at positions 0..P-1, with the block mask (block size of the
   * model, or `blockSize`) or the causal one. `rows` index the expanded prompt (default: the
   * last position). For tests and likelihood scoring; shares the KV cache, so it queues behind
   * generations like one.
   */
  async promptLogits(req: GenerateRequest, opts: { rows?: readonly number[]; mask?: 'block' | 'causal'; blockSize?: number } = {}): Promise<{ logits: Float32Array; ids: number[]; imageTokens: number[] }> {
    this.ensureAlive();
    const { req: r, decodeOptions } = readRequest(req);
    const signal = isSignal(decodeOptions.signal) ? decodeOptions.signal as AbortSignal : undefined;
    const { ids, images: given } = await this.prompt(r, signal);
    const { kept: images } = await this.probeImages(given, signal);
    const seq = await this.sched.open(signal);
    try {
      this.ensureAlive();
      this.evictTenant(seq.slot);
      const p = await this.encodePrompt(ids, images, signal);
      try {
        const n = p.ids.length;
        if (n > this.contextLength) throw new OptionError(`the prompt takes ${n} positions, more than the context length ${this.contextLength}`, 'contextLength');
        const rows = opts.rows ?? [n - 1];
        const mask = opts.mask ?? 'block';
        const bs = opts.blockSize ?? this.config.diffusion?.blockSize ?? 8;
        // One forward of its own (not through the scheduler: it reads raw logits), on its own slot.
        const t = this.text.forwardBatch([{
          slot: seq.slot, ids: Int32Array.from(p.ids), pos0: 0, n, mask, blockSize: mask === 'block' ? bs : undefined, logitsRows: rows,
          ...this.spliced(p, 0, n),
        }]);
        if (!t) return { logits: new Float32Array(0), ids: p.ids, imageTokens: p.imageTokens };
        try {
          return { logits: await this.queue.readF32(t), ids: p.ids, imageTokens: p.imageTokens };
        } finally {
          t.dispose();
        }
      } finally {
        p.features?.dispose();
      }
    } finally {
      this.sched.close(seq);
    }
  }

  private modeOf(r: Record<string, unknown>, decodeOptions: Record<string, unknown>): GenerationMode {
    const mode = (r.mode as GenerationMode | undefined) ?? this.config.defaultMode;
    if (mode === 'diffusion' && !this.isDiffusion && decodeOptions.blockSize === undefined) {
      throw new OptionError('this checkpoint is autoregressive (no bd3lm_block_size in its config): use mode \'ar\', or give blockSize to run it as block diffusion', 'mode');
    }
    return mode;
  }

  /**
   * The decoder's view of the model in diffusion mode. MASK: the config's mask token, or for a
   * checkpoint without a diffusion config (run as block diffusion with an explicit blockSize)
   * the same default the loader uses everywhere, 151671 (docs §4.2), which must be an
   * embedding row of this model.
   */
  private decodeModel(decodeOptions: Record<string, unknown>): DecodeModel {
    const cfg = this.config;
    let maskId = cfg.diffusion?.maskTokenId;
    if (maskId === undefined) {
      maskId = DEFAULT_MASK_TOKEN_ID;
      if (maskId >= cfg.text.vocabSize) {
        throw new OptionError(`block diffusion needs a MASK token: this checkpoint has no diffusion config and its ${cfg.text.vocabSize} embedding rows ` +
          `do not include the default MASK id ${DEFAULT_MASK_TOKEN_ID} (add mask_token_id and enable_bd3lm to config.json, or use mode 'ar')`, 'blockSize');
      }
    }
    const bs = decodeOptions.blockSize;
    return {
      maskId,
      blockSize: cfg.diffusion?.blockSize ?? (typeof bs === 'number' ? bs : 8),
      eosId: cfg.eosTokenId, vocabSize: cfg.text.vocabSize, contextLength: this.contextLength,
      route: cfg.family === 'diffusionvl_qwen' ? 'ar-lm' : 'qwen2.5-vl',
      defaults: cfg.generationDefaults,   // generation_config.json: steps, remasking, threshold
    };
  }

  private async *run(p: EncodedPrompt, seq: Sequence, opts: DecodeOptions, mode: GenerationMode, req: GenerateRequest, dm: DecodeModel | undefined, promptMs: number,
    reuse: Pick<RunnerFlags, 'cachedLength'> = {}, probeMs = 0): AsyncGenerator<StreamEvent, void> {
    const tRun = performance.now();
    const cfg = this.config;
    const ids = p.ids;
    const dec = new IncrementalDecoder(this.tokenizer);
    const eosId = cfg.eosTokenId;
    const stops = stopStrings(req.stop);
    const matcher = stops.length > 0 ? new StopStringMatcher(stops) : null;
    const flags: RunnerFlags = { cachedLength: reuse.cachedLength, stopRequested: matcher ? () => matcher.stopped !== undefined : undefined };
    let gen: AsyncGenerator<DecodeEvent, DecodeResult>;
    if (mode === 'diffusion') {
      gen = runBlockDiffusion(this.stepper(p, seq, opts.signal), ids, opts, dm!, { ...req.engine, stepEvents: req.stepEvents, ...flags });
    } else {
      gen = runAutoregressive(this.stepper(p, seq, opts.signal), ids, opts, { eosId, vocabSize: cfg.text.vocabSize, contextLength: this.contextLength }, flags);
    }
    const stopTokens = new Set(opts.stopTokens ?? [eosId]);
    for await (const ev of gen) {
      this.ensureAlive();
      if (ev.type === 'block') {
        // Text up to (not including) a stop token; ids after it in the block are dropped.
        let keep = ev.ids;
        const s = keep.findIndex((t) => stopTokens.has(t));
        if (s >= 0) keep = keep.slice(0, s);
        let text = dec.push(keep);
        if (ev.stop) text += dec.flush();
        if (matcher) text = matcher.push(text) + (ev.stop ? matcher.flush() : '');
        yield { type: 'block', text, ids: ev.ids, block: ev.block };
      } else if (ev.type === 'step') {
        yield ev;
      } else {
        const r = ev.result;
        let ids = r.ids;
        let text = this.tokenizer.decode(r.finishReason === 'stop' && stopTokens.has(ids[ids.length - 1]) ? ids.slice(0, -1) : ids);
        let stopString: string | undefined;
        const hit = matcher?.stopped !== undefined ? stopAt(text, stops) : undefined;
        if (hit?.stop !== undefined) {
          // The text ends before the stop string; the ids end with the token that completed it.
          text = hit.text;
          stopString = hit.stop;
          ids = ids.slice(0, tokensCovering(this.tokenizer, ids, hit.text.length + hit.stop.length));
        }
        // AR's first token comes out of the prefill forward, and so do the tokens of a diffusion
        // prefill merged with the first denoising iteration (RunnerFlags.mergePrefill).
        const decodeTokens = Math.max(0, r.stats.generatedTokens - r.stats.prefillGenerated);
        // A pipelined tower was still running when the decoder started: that time is the
        // tower's, not the prefill's.
        await this.checkTower(p);
        const overlap = Math.max(0, Math.min((p.towerEnd ?? tRun) - tRun, r.stats.prefillMs));
        const prefillMs = r.stats.prefillMs - overlap;
        const timings = { promptMs, imageMs: p.imageMs, towerMs: p.towerMs, prefillMs, decodeMs: r.stats.totalMs - r.stats.prefillMs, decodeTokens };
        const stats: GenerateStats = { ...r.stats, prefillMs, totalMs: r.stats.totalMs - overlap, visionMs: p.visionMs + probeMs, imageTokens: p.imageTokens, timings };
        yield { type: 'done', result: { ...r, ids, mode, text, stats, ...(stopString !== undefined ? { stopString } : {}) } };
      }
    }
  }

  /** A request's steps, through the batch scheduler on its slot, with its image rows spliced. */
  private stepper(p: EncodedPrompt, seq: Sequence, signal: AbortSignal | undefined): Stepper {
    let towerChecked = !p.towerDone;
    return {
      step: async (s) => {
        this.ensureAlive();
        const out = await this.sched.step(seq, {
          ids: s.ids, pos0: s.pos0, mask: s.blockSize !== undefined ? 'block' : 'causal', blockSize: s.blockSize,
          rows: s.rows, prefill: s.prefill, first: s.first, remask: s.remask, ...this.spliced(p, s.pos0, s.ids.length),
        }, isSignal(signal) ? signal : undefined);
        // A step that read a pipelined tower's features counts only if the tower ran clean.
        if (!towerChecked) { await this.checkTower(p); towerChecked = true; }
        return out;
      },
    };
  }

  /**
   * The image feature rows of positions [pos0, pos0 + n), if any: which rows of the features
   * (in the order of their positions) replace which rows of the forward. The forward gathers
   * and scatters them itself, inside its plan.
   */
  private spliced(p: EncodedPrompt, pos0: number, n: number): { features?: Tensor; featureRows?: Int32Array; embedRows?: Int32Array } {
    if (!p.features || pos0 >= p.featureRow.length) return {};
    const at: number[] = [], src: number[] = [];
    const end = Math.min(pos0 + n, p.featureRow.length);
    for (let j = pos0; j < end; j++) if (p.featureRow[j] >= 0) { at.push(j - pos0); src.push(p.featureRow[j]); }
    if (at.length === 0) return {};
    return { features: p.features, featureRows: Int32Array.from(src), embedRows: Int32Array.from(at) };
  }

  // ---- tokens ------------------------------------------------------------------------------------

  /** Text → token ids (no BOS/EOS added; special-token strings such as `<|im_end|>` become their ids). */
  tokenize(text: string): number[] {
    this.ensureAlive();
    if (typeof text !== 'string') throw new OptionError(`Expected string for text but received ${typeof text}`, 'text');
    return this.tokenizer.encode(text);
  }

  /** Token ids → text; special tokens are dropped unless `skipSpecial` is false. Ids without text (MASK) vanish. */
  detokenize(ids: ArrayLike<number>, opts: { skipSpecial?: boolean } = {}): string {
    this.ensureAlive();
    if (ids === null || typeof ids !== 'object' || typeof ids.length !== 'number') throw new OptionError('Expected an array of token ids for ids', 'ids');
    return this.tokenizer.decode(ids, { skipSpecial: opts.skipSpecial ?? true });
  }

  /**
   * Positions a request's prompt takes, as generate() lays it out: text tokens plus each
   * image's feature rows (from the image headers; nothing is decoded, the tower does not run).
   */
  async countTokens(req: Pick<GenerateRequest, 'messages' | 'prompt' | 'promptIds' | 'format' | 'systemPrompt'>): Promise<TokenCount> {
    this.ensureAlive();
    const { req: r } = readRequest(req);
    const { ids, images } = await this.prompt(r);
    const { tokens: imageTokens } = await this.probeImages(images);
    const textTokens = ids.length - images.length;
    return { promptTokens: textTokens + imageTokens.reduce((a, b) => a + b, 0), textTokens, imageTokens, ids };
  }

  // ---- sessions and the prefix cache (lib/model/session.ts, prefix-cache.ts, kv-reuse.ts) -------

  /**
   * A chat session: a conversation that keeps its committed K/V between turns, so each turn
   * prefills only its new tokens and images are encoded once (see ChatSession).
   */
  createSession(opts: ChatSessionOptions = {}): ChatSession {
    this.ensureAlive();
    const s = new ChatSession(this[REUSE_HOST](), opts, (x) => this.children.delete(x));
    this.children.add(s);
    return s;
  }

  /** A cache of K/V prefixes across requests: pass it as `prefixCache` to generate()/stream(). */
  createPrefixCache(opts: PrefixCacheOptions = {}): PrefixCache {
    this.ensureAlive();
    const c = new PrefixCache(this, this[REUSE_HOST](), opts, (x) => this.children.delete(x));
    this.children.add(c);
    return c;
  }

  private checkPrefixCache(c: unknown): PrefixCache {
    if (!(c instanceof PrefixCache)) throw new OptionError('prefixCache: expected a PrefixCache from model.createPrefixCache()', 'prefixCache');
    if (c.owner !== this) throw new OptionError('prefixCache: this cache belongs to another model', 'prefixCache');
    c.ensureAlive();
    return c;
  }

  /** The slot's tenant copies out what it keeps before another run overwrites that slot. */
  private evictTenant(slot: number): void {
    const t = this.tenants[slot] ?? null;
    this.tenants[slot] = null;
    t?.evict(slot);
  }

  /** The engine lent to ChatSession and PrefixCache. */
  [REUSE_HOST](): ReuseHost {
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const m = this;
    return {
      queue: this.queue,
      text: this.text,
      hiddenSize: this.config.text.hiddenSize,
      tenantOf: (slot) => m.tenants[slot] ?? null,
      setTenant: (slot, t) => { m.tenants[slot] = t; },
      slotOf: (t) => m.tenants.indexOf(t),
      evictTenant: (slot) => this.evictTenant(slot),
      ensureAlive: () => this.ensureAlive(),
      prepare: (read) => this.prepare(read),
      acquire: async (signal, prefer) => {
        const seq = await this.sched.open(signal, prefer);
        return { slot: seq.slot, seq, release: () => this.sched.close(seq) };
      },
      encodeImages: async (images, signal, multiImage) => {
        const p = await this.encodePrompt(images.map(() => IMAGE_TOKEN_INDEX), images, signal, this.vision?.countSensitive ? multiImage : undefined);
        return { features: p.features!, imageTokens: p.imageTokens, visionMs: p.visionMs, imageMs: p.imageMs, towerMs: p.towerMs };
      },
      imageVariant: (total) => (this.vision?.countSensitive ? (total > 1 ? 'multi' : 'one') : ''),
      run: (p, seq, prep, flags) => this.run(p, seq as Sequence, prep.decodeOptions, prep.mode, prep.r as GenerateRequest, prep.dm, prep.promptMs, flags),
      stream: (gen, signal) => new ModelStream(gen, { idleMs: this.limits.streamIdleMs, signal }),
    };
  }

  /** Frees every native resource now. Idempotent. */
  dispose(): void {
    if (this._disposed) return;
    this._disposed = true;
    this.sched.shutdown(new DisposedError('the model was disposed'));
    for (const c of [...this.children]) c.dispose();
    this.tenants.fill(null);
    this.text.dispose();
    this.vision?.dispose();
    this.weights.dispose();
    this.queue.dispose();
  }

  async [Symbol.asyncDispose](): Promise<void> { this.dispose(); }
}

/**
 * q8 weights have no CUDA kernels: an explicit CUDA request is an OptionError; 'auto' stays on
 * the CPU and says why in backend.cuda.
 */
function q8OnCpu(backend: BackendInfo, gpu: GpuOption | undefined): BackendInfo {
  const env = process.env.DIFFUSIONVL_GPU?.trim().toLowerCase();
  if (env === 'cuda' || (!env && gpu === 'cuda')) {
    throw new OptionError("dtype 'q8' runs on the CPU only (no CUDA kernel reads int8 weights): load with gpu: false, or with another dtype on the GPU", 'dtype');
  }
  return { ...backend, backend: 'cpu', cuda: { ...backend.cuda, reason: 'dtype-cpu-only', detail: "dtype 'q8' runs on the CPU only; load without it to use the GPU" } };
}

/**
 * Loads a model folder (config.json, tokenizer files, safetensors weights). No folder (or
 * undefined): the bundled DiffusionVL child; 'shapes-diffusionvl' / 'shapes-ar': that bundled
 * model (lib/models.ts).
 */
export async function loadModel(dir?: string, opts: LoadModelOptions = {}): Promise<Model> {
  validateLoadOptions(opts);
  return Model.load((await import('../models.js')).resolveModelDir(dir), opts);
}

function isSignal(v: unknown): v is AbortSignal {
  return typeof v === 'object' && v !== null && typeof (v as AbortSignal).aborted === 'boolean' && typeof (v as AbortSignal).addEventListener === 'function';
}
