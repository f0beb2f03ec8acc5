// session.ts — ChatSession: a conversation with a model that keeps its committed KV prefix
// between turns (the pipeline is kv-reuse.ts).
//
//   await using chat = model.createSession();
//   const a = await chat.send('What is at the top left?', { images: ['shapes.png'] });
//   const b = await chat.send('And at the bottom right?');   // prefills only this turn's tokens
//
// Each turn's prompt is the whole conversation, built exactly as generate() builds it, so at
// temperature 0 every turn's ids equal a cold generate() of the same messages. What is not
// recomputed: positions whose K/V the session still holds (the earlier prompt and the committed
// reply blocks, up to the first difference — re-tokenizing a reply's text can differ from the
// ids the model wrote — rounded down to a whole block for diffusion), and images: each picture
// of the conversation is encoded once and its feature rows kept. One exception, by design of
// the SigLIP route (§3.5): a conversation going from one image to several re-encodes the first
// (a cold prompt encodes it differently then too).
//
// Turns of one session run in order; a failed or aborted turn leaves the conversation as it
// was. While another session or generate() uses the model, this session's K/V are copied out
// (evict) and copied back on its next turn.
import { DisposedError, OptionError } from '../errors.js';
import type { ChatMessage, ContentPart, PromptFormat } from '../text/prompt.js';
import type { GenerateRequest, GenerateResult, StreamEvent } from './model.js';
import { commonPrefix, streamReusing, type ImageRecord, type KvReuser, type ReuseHost, type SavedKv } from './kv-reuse.js';
import type { ModelStream } from './model-stream.js';
import { readRequest } from './request.js';

/** A turn's options: decode options and engine switches, plus images for this message. */
export type TurnOptions = Omit<GenerateRequest, 'messages' | 'prompt' | 'promptIds' | 'prefixCache' | 'format' | 'systemPrompt'> & {
  /** Images to put in front of this message's text (paths, Buffers, data: URLs, raw RGB). */
  images?: readonly unknown[];
};

export interface ChatSessionOptions {
  /** Earlier messages to continue from (system, user, assistant …). */
  messages?: readonly ChatMessage[];
  /** System prompt when `messages` has no system message (null: none; default: the format's). */
  systemPrompt?: string | null;
  /** Prompt format (default: the model's, as generate()). */
  format?: PromptFormat;
  /** Options every turn starts from; a turn's own options override them. */
  defaults?: TurnOptions;
}

export interface SessionStats {
  /** Turns completed. */
  turns: number;
  /** Prompt positions over all turns (images expanded), and how many came from kept K/V. */
  promptTokens: number;
  cachedTokens: number;
  /** Prompt positions computed by prefill forwards. */
  prefillTokens: number;
  generatedTokens: number;
  imagesEncoded: number;
  imagesReused: number;
  /** Positions of the conversation whose K/V the session holds now. */
  kvTokens: number;
  /** Bytes of the session's own copies: K/V copied out while another user had the model, and image features. */
  bytes: number;
}

export class ChatSession implements KvReuser {
  private readonly host: ReuseHost;
  private readonly onDispose: (s: ChatSession) => void;
  private readonly opts: ChatSessionOptions;
  private history: ChatMessage[];
  /** The committed prefix: its keys, signature, and a copy when it is not resident. */
  private kv: { keys: number[]; sig: string; saved: SavedKv | null } | null = null;
  private images = new Map<string, ImageRecord>();
  private imageIds = new Map<string, number>();
  private chain: Promise<unknown> = Promise.resolve();
  private _disposed = false;
  private counters = { turns: 0, promptTokens: 0, cachedTokens: 0, prefillTokens: 0, generatedTokens: 0, imagesEncoded: 0, imagesReused: 0 };

  /** Made by Model.createSession. */
  constructor(host: ReuseHost, opts: ChatSessionOptions, onDispose: (s: ChatSession) => void) {
    if (opts === null || typeof opts !== 'object') throw new OptionError('createSession: expected an options object', 'options');
    if (opts.messages !== undefined && !Array.isArray(opts.messages)) throw new OptionError('createSession: messages must be an array of { role, content }', 'messages');
    this.host = host;
    this.opts = opts;
    this.onDispose = onDispose;
    this.history = [...(opts.messages ?? [])];
  }

  get disposed(): boolean { return this._disposed; }
  /** The conversation so far (a copy). */
  get messages(): ChatMessage[] { return [...this.history]; }

  get stats(): SessionStats {
    let bytes = 0;
    for (const r of this.images.values()) bytes += r.tokens * this.host.hiddenSize * 4;
    if (this.kv?.saved) bytes += this.kv.keys.length * this.host.text.kvBytesPerPosition();
    return { ...this.counters, kvTokens: this.kv?.keys.length ?? 0, bytes };
  }

  private ensureAlive(): void {
    if (this._disposed) throw new DisposedError('the chat session was disposed');
    this.host.ensureAlive();
  }

  /** Sends a user message; resolves with the reply (text, ids, stats) once it is complete. */
  async send(content: string | readonly ContentPart[], options: TurnOptions = {}): Promise<GenerateResult> {
    let result: GenerateResult | undefined;
    for await (const ev of this.stream(content, options)) if (ev.type === 'done') result = ev.result;
    return result!;
  }

  /**
   * Sends a user message; yields the reply as Model.stream() does, and like it releases the
   * model (and this session's turn) when the consumer returns, goes idle or drops the stream.
   */
  stream(content: string | readonly ContentPart[], options: TurnOptions = {}): ModelStream<StreamEvent> {
    const signal = (options as { signal?: unknown } | null)?.signal;
    return this.host.stream(this.turn(content, options), signal instanceof AbortSignal ? signal : undefined);
  }

  private async *turn(content: string | readonly ContentPart[], options: TurnOptions): AsyncGenerator<StreamEvent, void, undefined> {
    this.ensureAlive();
    if (options === null || typeof options !== 'object') throw new OptionError('session turn: expected an options object', 'options');
    const { images, ...decode } = { ...this.opts.defaults, ...options };
    const user = userTurn(content, images);
    const prev = this.chain;
    let done!: () => void;
    this.chain = new Promise<void>((r) => { done = r; });
    try {
      await prev.catch(() => undefined);
      this.ensureAlive();
      const req: GenerateRequest = { ...decode, messages: [...this.history, user] };
      if (this.opts.format !== undefined) req.format = this.opts.format;
      if (this.opts.systemPrompt !== undefined) req.systemPrompt = this.opts.systemPrompt;
      const gen = streamReusing(this.host, readRequest(req), this, (encoded, reused) => {
        this.counters.imagesEncoded += encoded;
        this.counters.imagesReused += reused;
      });
      for await (const ev of gen) {
        if (ev.type === 'done') {
          // The conversation grows only by turns that completed.
          const r = ev.result;
          this.history.push(user, { role: 'assistant', content: r.text });
          const c = this.counters;
          c.turns++;
          c.promptTokens += r.stats.promptTokens;
          c.cachedTokens += r.stats.cachedTokens;
          c.prefillTokens += r.stats.prefillTokens;
          c.generatedTokens += r.stats.generatedTokens;
        }
        yield ev;
      }
    } finally {
      done();
    }
  }

  /** Starts over (from `messages`, or empty): kept K/V and image features are freed. */
  reset(messages: readonly ChatMessage[] = []): void {
    this.ensureAlive();
    if (!Array.isArray(messages)) throw new OptionError('reset: messages must be an array of { role, content }', 'messages');
    this.history = [...messages];
    this.dropKv();
    for (const r of this.images.values()) r.features.dispose();
    this.images.clear();
    this.imageIds.clear();
  }

  /** Frees the session's copies; the model stays usable. Idempotent. */
  dispose(): void {
    if (this._disposed) return;
    this._disposed = true;
    this.dropKv();
    for (const r of this.images.values()) r.features.dispose();
    this.images.clear();
    this.onDispose(this);
  }

  async [Symbol.asyncDispose](): Promise<void> { this.dispose(); }

  private dropKv(): void {
    const slot = this.host.slotOf(this);
    if (slot >= 0) this.host.setTenant(slot, null);
    this.freeSaved();
    this.kv = null;
  }

  private freeSaved(): void {
    if (!this.kv?.saved) return;
    for (const t of this.kv.saved) { t.k.dispose(); t.v.dispose(); }
    this.kv.saved = null;
  }

  // ---- KvReuser (called by kv-reuse.ts under the model lock) ----------------------------------

  /** Image k of the conversation: its position names it (the history only ever grows). */
  async imageKey(k: number): Promise<string> { return `#${k}`; }
  image(key: string): ImageRecord | undefined { return this.images.get(key); }
  addImage(key: string, rec: ImageRecord): void {
    this.images.get(key)?.features.dispose();
    this.images.set(key, rec);
  }
  imageId(key: string): number {
    let id = this.imageIds.get(key);
    if (id === undefined) { id = this.imageIds.size; this.imageIds.set(key, id); }
    return id;
  }

  claim(host: ReuseHost, slot: number, keys: readonly number[], sig: string, limit: (common: number) => number): number {
    const kv = this.kv;
    let L0 = kv && kv.sig === sig ? limit(commonPrefix(kv.keys, keys)) : 0;
    if (host.tenantOf(slot) !== this) {
      // Resident in another slot (free, yet not the one this run got): copy it out of there first.
      const elsewhere = host.slotOf(this);
      if (elsewhere >= 0) host.evictTenant(elsewhere);
      host.evictTenant(slot);   // someone else's prefix: they copy it out
      if (L0 > 0 && this.kv?.saved) host.text.restoreCache(this.kv.saved, slot);
      else L0 = 0;
    }
    // The run rewrites the cache from L0 on; the copy is superseded by what stays resident.
    this.freeSaved();
    this.kv = null;
    return L0;
  }

  commit(host: ReuseHost, slot: number, keys: number[], sig: string): void {
    if (this._disposed || keys.length === 0) return;
    this.kv = { keys, sig, saved: null };
    host.setTenant(slot, this);
  }

  evict(slot: number): void {
    const kv = this.kv;
    if (!kv || kv.saved || kv.keys.length === 0) return;
    try {
      kv.saved = this.host.text.saveCache(kv.keys.length, slot);
    } catch {
      this.kv = null;   // nothing kept: the next turn runs cold
    }
  }
}

/** The user message of a turn: text or parts, with `images` in front as image parts. */
function userTurn(content: string | readonly ContentPart[], images: readonly unknown[] | undefined): ChatMessage {
  if (typeof content !== 'string' && !Array.isArray(content)) throw new OptionError('session turn: content must be a string or an array of parts', 'content');
  if (images !== undefined && !Array.isArray(images)) throw new OptionError('session turn: images must be an array', 'images');
  if (!images || images.length === 0) return { role: 'user', content };
  const parts: ContentPart[] = images.map((image) => ({ type: 'image' as const, image }));
  if (typeof content === 'string') parts.push({ type: 'text', text: content });
  else parts.push(...content);
  return { role: 'user', content: parts };
}
