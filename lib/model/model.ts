// model.ts — a loaded model: queue, weights, tokenizer, text decoder, KV cache, and the
// generate/stream entry points that pick the decoding mode.
//
// One generation runs at a time per model (they share the KV cache): calls queue up in order.
// dispose() frees native memory at once; a generation in flight rejects with DisposedError.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { DisposedError, OptionError } from '../errors.js';
import { Queue, type Isa, type Tensor } from '../native/index.js';
import { runAutoregressive, runBlockDiffusion, type DecodeEvent, type DecodeResult, type RunnerFlags } from '../decode/runner.js';
import type { DecodeOptions } from '../decode/options.js';
import type { DecodeModel } from '../decode/reference.js';
import { readConfig, type ModelConfig } from '../weights/config.js';
import { loadWeights, type LoadProgress, type LoadedWeights } from '../weights/load.js';
import { loadTokenizer, type TextTokenizer } from '../text/tokenizer.js';
import { buildPrompt, IMAGE_TOKEN_INDEX, type ChatMessage, type PromptFormat } from '../text/prompt.js';
import { IncrementalDecoder } from '../text/stream.js';
import { Qwen2Text } from './qwen2.js';

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

export interface GenerateResult extends DecodeResult {
  text: string;
  mode: GenerationMode;
}

export type StreamEvent =
  | { type: 'block'; text: string; ids: number[]; block: number }
  | { type: 'step'; block: number; iteration: number; ids: number[]; masked: boolean[]; revealed: number[] }
  | { type: 'done'; result: GenerateResult };

const REQUEST_KEYS = new Set(['messages', 'prompt', 'promptIds', 'mode', 'format', 'systemPrompt', 'stepEvents', 'engine']);

export class Model {
  readonly config: ModelConfig;
  readonly tokenizer: TextTokenizer;
  /** Bytes of weights held natively. */
  readonly weightBytes: number;
  private readonly queue: Queue;
  private readonly weights: LoadedWeights;
  private readonly text: Qwen2Text;
  private _disposed = false;
  private chain: Promise<unknown> = Promise.resolve();

  private constructor(queue: Queue, weights: LoadedWeights, tokenizer: TextTokenizer, contextLength: number) {
    this.queue = queue;
    this.weights = weights;
    this.config = weights.config;
    this.tokenizer = tokenizer;
    this.weightBytes = weights.bytes;
    this.text = new Qwen2Text(queue, weights, weights.config.text);
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
    const queue = new Queue({ threads: opts.threads, isa: opts.isa });
    let weights: LoadedWeights | undefined;
    try {
      weights = await loadWeights(dir, queue, { dtype: opts.dtype, onProgress: opts.onProgress, signal: opts.signal, vision: false });
      const m = new Model(queue, weights, tokenizer, contextLength);
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

  /** Token ids of the request's prompt. */
  promptIds(req: GenerateRequest): number[] {
    if (req.promptIds) return Array.from(req.promptIds);
    const messages: readonly ChatMessage[] | undefined = req.messages ?? (req.prompt !== undefined ? [{ role: 'user', content: req.prompt }] : undefined);
    if (!messages) throw new OptionError('generate: give messages, prompt or promptIds', 'messages');
    const format = req.format ?? (this.isDiffusion ? 'diffusionvl' : (this.tokenizer.chatTemplate ? 'template' : 'diffusionvl'));
    const p = buildPrompt(this.tokenizer, messages, { format, systemPrompt: req.systemPrompt });
    if (p.ids.includes(IMAGE_TOKEN_INDEX)) {
      throw new OptionError('this build cannot run images yet: the vision tower is not wired into generate()', 'messages');
    }
    return p.ids;
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
    const ids = this.promptIds(req);
    // One generation at a time per model: wait for the previous one.
    const prev = this.chain;
    let release!: () => void;
    this.chain = new Promise<void>((r) => { release = r; });
    try {
      await prev.catch(() => undefined);
      this.ensureAlive();
      yield* this.run(ids, decodeOptions, mode, req);
    } finally {
      release();
    }
  }

  private splitRequest(req: GenerateRequest): { decodeOptions: DecodeOptions; mode: GenerationMode } {
    if (req === null || typeof req !== 'object') throw new OptionError('generate: expected a request object', 'request');
    const decodeOptions: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(req)) if (!REQUEST_KEYS.has(k)) decodeOptions[k] = v;
    const mode = req.mode ?? (this.isDiffusion ? 'diffusion' : 'ar');
    if (mode !== 'diffusion' && mode !== 'ar') throw new OptionError(`Expected 'diffusion' or 'ar' for mode but received ${JSON.stringify(mode)}`, 'mode');
    if (mode === 'diffusion' && !this.isDiffusion && req.blockSize === undefined) {
      throw new OptionError('this checkpoint is autoregressive (no bd3lm_block_size in its config): use mode \'ar\', or give blockSize to run it as block diffusion', 'mode');
    }
    return { decodeOptions: decodeOptions as DecodeOptions, mode };
  }

  private async *run(ids: number[], opts: DecodeOptions, mode: GenerationMode, req: GenerateRequest): AsyncGenerator<StreamEvent, void> {
    const cfg = this.config;
    const dec = new IncrementalDecoder(this.tokenizer);
    const eosId = cfg.eosTokenId;
    let gen: AsyncGenerator<DecodeEvent, DecodeResult>;
    if (mode === 'diffusion') {
      const dm: DecodeModel = {
        maskId: cfg.diffusion?.maskTokenId ?? cfg.text.vocabSize - 1,
        blockSize: cfg.diffusion?.blockSize ?? opts.blockSize ?? 8,
        eosId, vocabSize: cfg.text.vocabSize, contextLength: this.contextLength,
        route: cfg.family === 'diffusionvl_qwen' ? 'ar-lm' : 'qwen2.5-vl',
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
        yield { type: 'done', result: { ...r, mode, text: this.tokenizer.decode(textIds) } };
      }
    }
  }

  /** Block-mask forward (diffusion): see BlockForwarder. */
  private forwardBlock(ids: Int32Array, pos0: number, blockSize: number, rows: readonly number[]): Tensor | null {
    this.ensureAlive();
    return this.text.forward({ ids, pos0, n: ids.length, mask: 'block', blockSize, logitsRows: rows });
  }

  /** Causal forward (AR): see CausalForwarder. */
  private forwardCausal(ids: Int32Array, pos0: number, rows: readonly number[]): Tensor | null {
    this.ensureAlive();
    return this.text.forward({ ids, pos0, n: ids.length, mask: 'causal', logitsRows: rows });
  }

  /** Frees every native resource now. Idempotent. */
  dispose(): void {
    if (this._disposed) return;
    this._disposed = true;
    this.text.dispose();
    this.weights.dispose();
    this.queue.dispose();
  }

  async [Symbol.asyncDispose](): Promise<void> { this.dispose(); }
}

/** Loads a model folder (config.json, tokenizer files, safetensors weights). */
export function loadModel(dir: string, opts: LoadModelOptions = {}): Promise<Model> {
  return Model.load(dir, opts);
}
