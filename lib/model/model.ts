// model.ts — a loaded model: queue, weights, tokenizer, text decoder, KV cache, and the
// generate/stream entry points that pick the decoding mode.
//
// One generation runs at a time per model (they share the KV cache): calls queue up in order.
// dispose() frees native memory at once; a generation in flight rejects with DisposedError.
//
// Images (spec §3.6): the prompt carries one −200 sentinel per image. Before decoding, each
// image is decoded, preprocessed and encoded (Qwen2.5-VL tower, or the SigLIP route), and the
// prompt is expanded: each sentinel becomes N placeholder positions (id 0, a valid row for the
// embedding gather), N = the image's feature rows. `featureRow[p]` maps a prompt position to its
// feature row; every forward that covers prompt positions (the prefill, the straddling block on
// each step, the AR prefill) gathers those rows and scatters them over the token embeddings.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError, DisposedError, OptionError } from '../errors.js';
import { Queue, tensorFromArray, type Isa, type Tensor } from '../native/index.js';
import { getBackendInfo, type BackendInfo, type GpuOption } from '../native/backend.js';
import { runAutoregressive, runBlockDiffusion, type DecodeEvent, type DecodeResult, type DecodeStats, type RunnerFlags } from '../decode/runner.js';
import type { DecodeOptions } from '../decode/options.js';
import type { DecodeModel } from '../decode/reference.js';
import { readConfig, type ModelConfig } from '../weights/config.js';
import { loadWeights, type LoadProgress, type LoadedWeights } from '../weights/load.js';
import { loadTokenizer, type TextTokenizer } from '../text/tokenizer.js';
import { buildPrompt, IMAGE_TOKEN_INDEX, type ChatMessage, type PromptFormat } from '../text/prompt.js';
import { IncrementalDecoder } from '../text/stream.js';
import { decodeImage, type ImageInput, type RgbImage } from '../image/decode.js';
import { preprocessQwen2vl } from '../image/qwen2vl.js';
import { Qwen2Text } from './qwen2.js';
import { Qwen25VisionTower } from './qwen25vl_vision.js';
import { encodeSiglipImages } from './siglip.js';

export interface LoadModelOptions {
  /** Kernel threads (default: physical cores). */
  threads?: number;
  /** Dtype for weight matrices (default: as stored). */
  dtype?: 'bf16' | 'f16' | 'f32';
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
}

export type GenerationMode = 'diffusion' | 'ar';

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
  engine?: RunnerFlags;
}

export interface GenerateStats extends DecodeStats {
  /** Milliseconds spent on images: decode, preprocess, vision tower (0 without images). */
  visionMs: number;
  /** Prompt positions taken by each image's features, in image order. */
  imageTokens: number[];
}

export interface GenerateResult extends DecodeResult {
  text: string;
  mode: GenerationMode;
  stats: GenerateStats;
}

/** A prompt with its images encoded: ids expanded to one position per feature row. */
interface EncodedPrompt {
  /** Token ids; image positions hold 0 (overridden by the features). */
  ids: number[];
  /** Per prompt position: its feature row, or −1 for a text token. */
  featureRow: Int32Array;
  /** f32 [Σ tokens, H], or null without images. */
  features: Tensor | null;
  imageTokens: number[];
  visionMs: number;
}

export type StreamEvent =
  | { type: 'block'; text: string; ids: number[]; block: number }
  | { type: 'step'; block: number; iteration: number; ids: number[]; masked: boolean[]; revealed: number[] }
  | { type: 'done'; result: GenerateResult };

const REQUEST_KEYS = new Set(['messages', 'prompt', 'promptIds', 'mode', 'format', 'systemPrompt', 'stepEvents', 'engine']);

export class Model {
  readonly config: ModelConfig;
  readonly tokenizer: TextTokenizer;
  /** Bytes of weights held natively (in GPU memory when backend.backend is 'cuda'). */
  readonly weightBytes: number;
  /** Where the model runs, and when not on the GPU, why (see getBackendInfo). */
  readonly backend: BackendInfo;
  private readonly queue: Queue;
  private readonly weights: LoadedWeights;
  private readonly text: Qwen2Text;
  /** The Qwen2.5-VL tower (null for text-only loads and the SigLIP route). */
  private readonly tower: Qwen25VisionTower | null;
  /** The prompt of the generation in flight (its image positions), or null. */
  private active: EncodedPrompt | null = null;
  private _disposed = false;
  private chain: Promise<unknown> = Promise.resolve();

  private constructor(queue: Queue, weights: LoadedWeights, tokenizer: TextTokenizer, contextLength: number, backend: BackendInfo) {
    this.queue = queue;
    this.backend = backend;
    this.weights = weights;
    this.config = weights.config;
    this.tokenizer = tokenizer;
    this.weightBytes = weights.bytes;
    this.text = new Qwen2Text(queue, weights, weights.config.text);
    const v = weights.config.vision;
    this.tower = v?.kind === 'qwen2_5_vl' && weights.has('visual.patch_embed.proj.weight') ? new Qwen25VisionTower(queue, weights, v) : null;
    this.text.allocateCache({ capacity: contextLength });
  }

  /** Loads config, tokenizer and weights from a model folder (see loadModel). */
  static async load(dir: string, opts: LoadModelOptions = {}): Promise<Model> {
    const config = await readConfig(dir);
    if (!existsSync(join(dir, 'tokenizer.json'))) {
      throw new OptionError(`${dir}: no tokenizer.json (a model folder needs its tokenizer files)`, 'dir');
    }
    const tokenizer = await loadTokenizer(dir);
    const contextLength = opts.contextLength ?? Math.min(config.text.maxPositionEmbeddings, 8192);
    if (!Number.isInteger(contextLength) || contextLength < 1) {
      throw new OptionError(`Expected integer ≥ 1 for contextLength but received ${contextLength}`, 'contextLength');
    }
    const backend = getBackendInfo({ gpu: opts.gpu, device: opts.device, cudaPluginPaths: opts.cudaPluginPaths });
    const queue = new Queue({ threads: opts.threads, isa: opts.isa, device: backend.backend });
    let weights: LoadedWeights | undefined;
    try {
      const v = config.vision;
      if (v && opts.vision !== false) {
        const out = v.kind === 'qwen2_5_vl' ? v.outHiddenSize : config.text.hiddenSize;
        if (out !== config.text.hiddenSize) {
          throw new ConfigError(`${dir}: vision out_hidden_size ${out} differs from the text hidden size ${config.text.hiddenSize}`, { field: 'vision_config.out_hidden_size' });
        }
      }
      weights = await loadWeights(dir, queue, { dtype: opts.dtype, onProgress: opts.onProgress, signal: opts.signal, vision: opts.vision ?? true });
      const m = new Model(queue, weights, tokenizer, contextLength, backend);
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
    return this.prompt(req).ids;
  }

  /** The prompt's ids (with sentinels) and its images in sentinel order; checks everything cheap. */
  private prompt(req: GenerateRequest): { ids: number[]; images: unknown[] } {
    let ids: number[], images: unknown[];
    if (req.promptIds) {
      ids = Array.from(req.promptIds);
      images = [];
    } else {
      const messages: readonly ChatMessage[] | undefined = req.messages ?? (req.prompt !== undefined ? [{ role: 'user', content: req.prompt }] : undefined);
      if (!messages) throw new OptionError('generate: give messages, prompt or promptIds', 'messages');
      // DiffusionVL-layout checkpoints (child or AR parent) use the §4.1 format; others their template.
      const dvlLayout = this.isDiffusion || this.config.family === 'diffusionvl_qwenvl' || this.config.family === 'diffusionvl_qwen';
      const format = req.format ?? (dvlLayout ? 'diffusionvl' : (this.tokenizer.chatTemplate ? 'template' : 'diffusionvl'));
      const p = buildPrompt(this.tokenizer, messages, { format, systemPrompt: req.systemPrompt });
      ids = p.ids;
      images = p.images;
    }
    const sentinels = ids.reduce((n, t) => n + (t === IMAGE_TOKEN_INDEX ? 1 : 0), 0);
    if (sentinels !== images.length) {
      throw new OptionError(`the prompt has ${sentinels} image sentinel(s) (${IMAGE_TOKEN_INDEX}) but ${images.length} image(s) were given`, req.promptIds ? 'promptIds' : 'messages');
    }
    if (sentinels > 0) {
      const v = this.config.vision;
      if (!v) throw new OptionError(`this model (${this.config.modelType}) has no vision tower: remove the images from the prompt`, 'messages');
      const loaded = v.kind === 'qwen2_5_vl' ? this.tower !== null : this.weights.has('image_newline');
      if (!loaded) throw new OptionError('the model was loaded with vision: false: load it again without that option to use images', 'messages');
    }
    return { ids, images };
  }

  /**
   * Decodes, preprocesses and encodes the images, and expands each sentinel into one position
   * per feature row (spec §3.6). Runs on the model's queue; the caller holds the model. An
   * abort cancels the queued tower work and rejects with signal.reason.
   */
  private async encodePrompt(ids: readonly number[], images: readonly unknown[], signal?: AbortSignal): Promise<EncodedPrompt> {
    if (images.length === 0) return { ids: Array.from(ids), featureRow: new Int32Array(ids.length).fill(-1), features: null, imageTokens: [], visionMs: 0 };
    const t0 = performance.now();
    const checkAbort = () => { this.ensureAlive(); if (signal?.aborted) throw signal.reason; };
    checkAbort();
    const decoded: RgbImage[] = [];
    for (const im of images) decoded.push(await decodeImage(im as ImageInput));
    checkAbort();
    let features: Tensor, imageTokens: number[];
    const v = this.config.vision!;
    if (v.kind === 'qwen2_5_vl') {
      const pre = [];
      for (const img of decoded) {
        pre.push(await preprocessQwen2vl(img, {
          minPixels: v.minPixels, maxPixels: v.maxPixels, patchSize: v.patchSize,
          spatialMergeSize: v.spatialMergeSize, temporalPatchSize: v.temporalPatchSize, queue: this.queue,
        }));
      }
      checkAbort();
      features = this.tower!.encode(pre);
      imageTokens = pre.map((p) => p.tokens);
    } else {
      // SigLIP route (DiffusionVL-Qwen2.5-7B, §3.5): several images in one prompt are each
      // padded to a square and take one crop (step 8).
      ({ features, tokensPerImage: imageTokens } = await encodeSiglipImages(this.queue, this.weights, v, decoded, { multiImage: decoded.length > 1 }));
    }
    // The tower is one long batch of queued ops: an abort cancels what has not run yet.
    const onAbort = () => this.queue.cancel();
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      if (signal?.aborted) onAbort();
      await this.queue.sync();
      checkAbort();
    } catch (e) {
      features.dispose();
      if (signal?.aborted) throw signal.reason;
      throw e;
    } finally {
      signal?.removeEventListener('abort', onAbort);
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
    return { ids: out, featureRow: Int32Array.from(rows), features, imageTokens, visionMs: performance.now() - t0 };
  }

  /**
   * One user of the KV cache at a time: waits until the previous generation (or scoring) has
   * finished and returns the function that lets the next one in. The chain is extended
   * synchronously, so calls keep their order.
   */
  private async acquire(): Promise<() => void> {
    const prev = this.chain;
    let release!: () => void;
    this.chain = new Promise<void>((r) => { release = r; });
    await prev.catch(() => undefined);
    return release;
  }

  /** Generates a reply; resolves with text, ids, finish reason and stats. */
  async generate(req: GenerateRequest): Promise<GenerateResult> {
    let result: GenerateResult | undefined;
    for await (const ev of this.stream(req)) if (ev.type === 'done') result = ev.result;
    return result!;
  }

  /** Generates a reply as events: `block` (newly final text), optional `step`, then `done`. */
  async *stream(req: GenerateRequest): AsyncGenerator<StreamEvent, void> {
    this.ensureAlive();
    const { decodeOptions, mode } = this.splitRequest(req);
    const { ids, images } = this.prompt(req);
    const release = await this.acquire();
    try {
      this.ensureAlive();
      const p = await this.encodePrompt(ids, images, req.signal);
      this.active = p;
      try {
        yield* this.run(p, decodeOptions, mode, req);
      } finally {
        this.active = null;
        p.features?.dispose();
      }
    } finally {
      release();
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
    const { ids, images } = this.prompt(req);
    const release = await this.acquire();
    try {
      this.ensureAlive();
      const p = await this.encodePrompt(ids, images);
      this.active = p;
      try {
        const n = p.ids.length;
        if (n > this.contextLength) throw new OptionError(`the prompt takes ${n} positions, more than the context length ${this.contextLength}`, 'contextLength');
        const rows = opts.rows ?? [n - 1];
        const x = Int32Array.from(p.ids);
        const mask = opts.mask ?? 'block';
        const bs = opts.blockSize ?? this.config.diffusion?.blockSize ?? 8;
        const t = mask === 'block' ? this.forwardBlock(x, 0, bs, rows) : this.forwardCausal(x, 0, rows);
        if (!t) return { logits: new Float32Array(0), ids: p.ids, imageTokens: p.imageTokens };
        try {
          return { logits: await this.queue.readF32(t), ids: p.ids, imageTokens: p.imageTokens };
        } finally {
          t.dispose();
        }
      } finally {
        this.active = null;
        p.features?.dispose();
      }
    } finally {
      release();
    }
  }

  private splitRequest(req: GenerateRequest): { decodeOptions: DecodeOptions; mode: GenerationMode } {
    if (req === null || typeof req !== 'object') throw new OptionError('generate: expected a request object', 'request');
    const decodeOptions: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(req)) if (!REQUEST_KEYS.has(k)) decodeOptions[k] = v;
    const mode = req.mode ?? this.config.defaultMode;
    if (mode !== 'diffusion' && mode !== 'ar') throw new OptionError(`Expected 'diffusion' or 'ar' for mode but received ${JSON.stringify(mode)}`, 'mode');
    if (mode === 'diffusion' && !this.isDiffusion && req.blockSize === undefined) {
      throw new OptionError('this checkpoint is autoregressive (no bd3lm_block_size in its config): use mode \'ar\', or give blockSize to run it as block diffusion', 'mode');
    }
    return { decodeOptions: decodeOptions as DecodeOptions, mode };
  }

  private async *run(p: EncodedPrompt, opts: DecodeOptions, mode: GenerationMode, req: GenerateRequest): AsyncGenerator<StreamEvent, void> {
    const cfg = this.config;
    const ids = p.ids;
    const dec = new IncrementalDecoder(this.tokenizer);
    const eosId = cfg.eosTokenId;
    let gen: AsyncGenerator<DecodeEvent, DecodeResult>;
    if (mode === 'diffusion') {
      const dm: DecodeModel = {
        maskId: cfg.diffusion?.maskTokenId ?? cfg.text.vocabSize - 1,
        blockSize: cfg.diffusion?.blockSize ?? opts.blockSize ?? 8,
        eosId, vocabSize: cfg.text.vocabSize, contextLength: this.contextLength,
        route: cfg.family === 'diffusionvl_qwen' ? 'ar-lm' : 'qwen2.5-vl',
        defaults: cfg.generationDefaults,   // generation_config.json: steps, remasking, threshold
      };
      gen = runBlockDiffusion({ queue: this.queue, forwardBlock: (x, pos0, bs, rows) => this.forwardBlock(x, pos0, bs, rows) },
        ids, opts, dm, { ...req.engine, stepEvents: req.stepEvents });
    } else {
      gen = runAutoregressive({ queue: this.queue, forwardCausal: (x, pos0, rows) => this.forwardCausal(x, pos0, rows) },
        ids, opts, { eosId, vocabSize: cfg.text.vocabSize, contextLength: this.contextLength });
    }
    const stopTokens = new Set(opts.stopTokens ?? [eosId]);
    for await (const ev of gen) {
      this.ensureAlive();
      if (ev.type === 'block') {
        // Text up to (not including) a stop token; ids after it in the block are dropped.
        let keep = ev.ids;
        const s = keep.findIndex((t) => stopTokens.has(t));
        if (s >= 0) keep = keep.slice(0, s);
        const text = dec.push(keep);
        yield { type: 'block', text: ev.stop ? text + dec.flush() : text, ids: ev.ids, block: ev.block };
      } else if (ev.type === 'step') {
        yield ev;
      } else {
        const r = ev.result;
        const textIds = r.finishReason === 'stop' ? r.ids.slice(0, -1) : r.ids;
        const stats: GenerateStats = { ...r.stats, visionMs: p.visionMs, imageTokens: p.imageTokens };
        yield { type: 'done', result: { ...r, mode, text: this.tokenizer.decode(textIds), stats } };
      }
    }
  }

  /** Block-mask forward (diffusion): see BlockForwarder. */
  private forwardBlock(ids: Int32Array, pos0: number, blockSize: number, rows: readonly number[]): Tensor | null {
    this.ensureAlive();
    return this.spliced(pos0, ids.length, (embeds, embedRows) =>
      this.text.forward({ ids, pos0, n: ids.length, mask: 'block', blockSize, logitsRows: rows, embeds, embedRows }));
  }

  /** Causal forward (AR): see CausalForwarder. */
  private forwardCausal(ids: Int32Array, pos0: number, rows: readonly number[]): Tensor | null {
    this.ensureAlive();
    return this.spliced(pos0, ids.length, (embeds, embedRows) =>
      this.text.forward({ ids, pos0, n: ids.length, mask: 'causal', logitsRows: rows, embeds, embedRows }));
  }

  /**
   * Runs `fwd` with the image feature rows of positions [pos0, pos0 + n), if any: the rows are
   * gathered from the features (in the order of their positions) and handed over with their
   * offsets in the forward. The forward's ops hold their own references, so the gathered
   * tensor is released as soon as it is queued.
   */
  private spliced(pos0: number, n: number, fwd: (embeds?: Tensor, embedRows?: Int32Array) => Tensor | null): Tensor | null {
    const p = this.active;
    if (!p?.features || pos0 >= p.featureRow.length) return fwd();
    const at: number[] = [], src: number[] = [];
    const end = Math.min(pos0 + n, p.featureRow.length);
    for (let j = pos0; j < end; j++) if (p.featureRow[j] >= 0) { at.push(j - pos0); src.push(p.featureRow[j]); }
    if (at.length === 0) return fwd();
    const idx = tensorFromArray('i32', [src.length], Int32Array.from(src));
    let embeds: Tensor | undefined;
    try {
      embeds = this.queue.gatherRows(p.features, idx);
      return fwd(embeds, Int32Array.from(at));
    } finally {
      embeds?.dispose();
      idx.dispose();
    }
  }

  /** Frees every native resource now. Idempotent. */
  dispose(): void {
    if (this._disposed) return;
    this._disposed = true;
    this.text.dispose();
    this.tower?.dispose();
    this.weights.dispose();
    this.queue.dispose();
  }

  async [Symbol.asyncDispose](): Promise<void> { this.dispose(); }
}

/**
 * Loads a model folder (config.json, tokenizer files, safetensors weights). No folder (or
 * undefined): the bundled DiffusionVL child; 'shapes-diffusionvl' / 'shapes-ar': that bundled
 * model (lib/models.ts).
 */
export async function loadModel(dir?: string, opts: LoadModelOptions = {}): Promise<Model> {
  return Model.load((await import('../models.js')).resolveModelDir(dir), opts);
}
