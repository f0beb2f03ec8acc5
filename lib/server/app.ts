// app.ts — `diffusionvl serve`: an OpenAI-compatible HTTP server over one model, on Fastify
// (maintained, fast JSON parsing with a body cap, hooks for auth, and raw access to the socket
// for SSE and disconnect detection; see README "Server").
//
//   POST /v1/chat/completions   OpenAI chat completions, plain or SSE (one chunk per block)
//   GET  /v1/models             the served model
//   GET  /health                200 once the model is loaded; 503 while loading or draining
//   GET  /metrics               Prometheus text (metrics.ts)
//   GET  /                      the playground (web/playground/index.html)
//
// The server listens at once and loads the model behind it (503 + Retry-After until ready).
// Generations run up to the model's maxBatch at once (continuous batching) through RequestQueue
// (429 when too many wait); every request
// uses the server's PrefixCache, so clients that resend the whole conversation reuse its K/V.
// A client that disconnects aborts its generation (the decoder checks between denoising
// iterations, so within one block). shutdown() drains: no new requests, in-flight ones finish
// (or are aborted after the drain timeout), then the model is freed.
import { randomUUID, createHash, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { loadModel, type GenerateResult, type LoadModelOptions, type Model, type StreamEvent } from '../model/model.js';
import type { PrefixCache } from '../model/prefix-cache.js';
import { packageRootDir, resolveModelDir } from '../models.js';
import { backendName } from '../native/backend.js';
import type { ChatMessage, ContentPart } from '../text/prompt.js';
import { ApiError, toApiError } from './errors.js';
import { resolveImageUrl, type ImagePolicy } from './images.js';
import { ServerMetrics } from './metrics.js';
import { RequestQueue } from './queue.js';
import { parseChatRequest, type ParsedChatRequest } from './request.js';

export interface ServeOptions {
  /** Model folder or bundled name (default: the bundled DiffusionVL child). */
  model?: string;
  /** Or a model already loaded (the caller keeps ownership; shutdown does not dispose it). */
  loadedModel?: Model;
  loadOptions?: LoadModelOptions;
  /** The id /v1/models reports and requests may name (default: the folder's name). */
  modelName?: string;
  /** Require `Authorization: Bearer <key>` on /v1/*. */
  apiKey?: string;
  /** Request body cap in bytes (default 32 MiB): over it → 413. */
  maxBodyBytes?: number;
  /** Requests that may wait for the model (default 16): more → 429. */
  maxQueue?: number;
  /** Prefix cache memory in bytes (default 256 MiB; 0: no prefix cache). */
  prefixCacheBytes?: number;
  /** max_tokens when a request gives none (default 512). */
  defaultMaxTokens?: number;
  images?: Partial<ImagePolicy>;
  /** Fastify's request log (pino) on stderr. */
  log?: boolean;
}

export type ServerState = 'loading' | 'ready' | 'draining' | 'failed';

const VERSION = '0.1.0';

/**
 * A request's stats as the response's `timings` object: llama-server's keys (prompt_n/_ms/
 * _per_second for the prefill, predicted_* for the decode, cache_n reused positions; what
 * local tooling already scrapes, docs/packaging.md §B8), then ours (vision, forwards, …).
 */
function timings(r: GenerateResult, queueMs: number) {
  const s = r.stats;
  const decodeMs = s.timings.decodeMs;
  return {
    prompt_n: s.prefillTokens, prompt_ms: round(s.prefillMs), prompt_per_second: s.prefillMs > 0 ? round((s.prefillTokens / s.prefillMs) * 1000, 2) : 0,
    predicted_n: r.ids.length, predicted_ms: round(decodeMs), predicted_per_second: decodeMs > 0 ? round((s.timings.decodeTokens / decodeMs) * 1000, 2) : 0,
    cache_n: s.cachedTokens,
    queue_ms: round(queueMs), prompt_tokens: s.promptTokens, cached_tokens: s.cachedTokens, prefill_tokens: s.prefillTokens,
    vision_ms: round(s.visionMs), image_ms: round(s.timings.imageMs), tower_ms: round(s.timings.towerMs), prefill_ms: round(s.prefillMs), decode_ms: round(s.totalMs - s.prefillMs), total_ms: round(s.totalMs),
    forwards: s.forwards, tokens_per_forward: round(s.tokensPerForward, 3), ms_per_forward: round(s.msPerForward, 3),
    tokens_per_second: round(s.tokensPerSecond, 2), completion_tokens: r.ids.length, mode: r.mode,
    steps: r.options.steps, block_size: r.mode === 'ar' ? 1 : r.options.blockSize, remasking: r.options.remasking,
  };
}
/** Bounds on reading an unwanted request body before an error reply (see the error handler). */
const DRAIN_MAX_BYTES = 256 * 1024 * 1024, DRAIN_MAX_MS = 5000;

/** Reads and drops what is left of a request body: until its end, a close, or the bounds above. */
function drainBody(raw: FastifyRequest['raw']): Promise<void> {
  return new Promise((resolve) => {
    let seen = 0;
    const done = () => {
      clearTimeout(timer);
      raw.off('data', onData); raw.off('end', done); raw.off('close', done); raw.off('error', done);
      resolve();
    };
    const onData = (chunk: Buffer) => { seen += chunk.length; if (seen > DRAIN_MAX_BYTES) done(); };
    const timer = setTimeout(done, DRAIN_MAX_MS);
    raw.on('data', onData); raw.once('end', done); raw.once('close', done); raw.once('error', done);
    raw.resume();
  });
}

const round = (x: number, d = 1) => Math.round(x * 10 ** d) / 10 ** d;

function usage(r: GenerateResult) {
  return {
    prompt_tokens: r.stats.promptTokens, completion_tokens: r.ids.length, total_tokens: r.stats.promptTokens + r.ids.length,
    prompt_tokens_details: { cached_tokens: r.stats.cachedTokens },
  };
}

const finishReason = (r: GenerateResult) => r.finishReason;

export class DiffusionVLServer {
  readonly app: FastifyInstance;
  readonly metrics: ServerMetrics;
  private _state: ServerState = 'loading';
  private model: Model | null = null;
  private cache: PrefixCache | null = null;
  private loadError: Error | null = null;
  private loadProgress = 0;
  private readonly queue: RequestQueue;
  private readonly inflight = new Set<AbortController>();
  /** Those of them still waiting for the model (shutdown turns them away at once). */
  private readonly waiting = new Set<AbortController>();
  /** Called when the last request in flight ends (shutdown waits on it). */
  private onIdle: (() => void) | null = null;
  private readonly opts: ServeOptions;
  private readonly modelId: string;
  private readonly images: ImagePolicy;
  private readonly keyHash: Buffer | null;
  private playground: Promise<string> | undefined;
  /** Resolves when the model is loaded (rejects when loading fails). */
  readonly ready: Promise<void>;
  private resolveReady!: () => void;
  private rejectReady!: (e: Error) => void;

  constructor(opts: ServeOptions = {}) {
    this.opts = opts;
    this.modelId = opts.modelName ?? (opts.loadedModel ? 'model' : basename(resolveModelDir(opts.model)));
    this.images = { fileRoot: null, allowHttp: false, maxBytes: 20 * 1024 * 1024, timeoutMs: 10_000, ...opts.images };
    this.queue = new RequestQueue(opts.maxQueue ?? 16);
    this.keyHash = opts.apiKey ? createHash('sha256').update(opts.apiKey).digest() : null;
    this.ready = new Promise<void>((res, rej) => { this.resolveReady = res; this.rejectReady = rej; });
    this.ready.catch(() => undefined);
    this.metrics = new ServerMetrics({ queueDepth: () => this.queue.depth, inFlight: () => this.queue.active, loaded: () => this._state === 'ready' });
    // return503OnClosing off: a request arriving on a kept-alive connection while draining gets
    // our own 503 (OpenAI's error shape) from the onRequest hook.
    this.app = Fastify({ bodyLimit: opts.maxBodyBytes ?? 32 * 1024 * 1024, logger: opts.log ? { level: 'info' } : false, forceCloseConnections: 'idle', return503OnClosing: false });
    this.routes();
  }

  get state(): ServerState { return this._state; }

  /** Starts listening, then loads the model (see `ready`); resolves with the server's URL. */
  async listen(port = 8080, host = '127.0.0.1'): Promise<string> {
    const url = await this.app.listen({ port, host });
    void this.load();
    return url;
  }

  /** Loads the model (listen() calls it; tests on app.inject() may call it directly). */
  async load(): Promise<void> {
    try {
      const m = this.opts.loadedModel ?? await loadModel(this.opts.model, {
        ...this.opts.loadOptions,
        onProgress: (p) => { this.loadProgress = p.totalBytes ? p.loadedBytes / p.totalBytes : 0; this.opts.loadOptions?.onProgress?.(p); },
      });
      if (this._state === 'draining') { if (!this.opts.loadedModel) m.dispose(); return; }
      this.model = m;
      this.queue.slots = m.batching.maxBatch;   // that many generate at once, batched by the model
      const bytes = this.opts.prefixCacheBytes ?? 256 * 1024 * 1024;
      this.cache = bytes > 0 ? m.createPrefixCache({ maxBytes: bytes }) : null;
      this._state = 'ready';
      this.resolveReady();
    } catch (e) {
      this._state = 'failed';
      this.loadError = e as Error;
      this.rejectReady(e as Error);
    }
  }

  /**
   * Stops taking requests and waits up to `drainMs` for those in flight; then aborts the rest,
   * closes the listener and frees the model. Idempotent.
   */
  async shutdown(drainMs = 30_000): Promise<void> {
    if (this._state === 'draining') return this.closing;
    this._state = 'draining';
    this.closing = (async () => {
      for (const ac of this.waiting) ac.abort(new ApiError(503, 'the server is shutting down', { code: 'shutting_down' }));
      const closed = this.app.close();   // stops accepting; resolves once every connection is closed
      const timer = setTimeout(() => { for (const ac of this.inflight) ac.abort(new ApiError(503, 'the server is shutting down', { code: 'shutting_down' })); }, drainMs);
      try {
        if (this.inflight.size > 0) await new Promise<void>((r) => { this.onIdle = r; });
        // Every generation has ended: keep-alive connections that went idle during the drain
        // would otherwise hold the close until their timeout.
        this.app.server.closeAllConnections();
        await closed;
      } finally {
        clearTimeout(timer);
        this.cache?.dispose();
        if (!this.opts.loadedModel) this.model?.dispose();
        this.model = null;
      }
    })();
    return this.closing;
  }
  private closing: Promise<void> = Promise.resolve();

  // ---- routes ---------------------------------------------------------------------------------

  private routes(): void {
    const app = this.app;

    app.setErrorHandler(async (err: Error & { statusCode?: number; code?: string }, req, reply) => {
      let e: ApiError;
      if (err instanceof ApiError) e = err;
      else if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') e = new ApiError(413, `the request body is over the ${this.app.initialConfig.bodyLimit}-byte cap (--max-body-mb)`, { code: 'request_too_large' });
      else if (err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') e = new ApiError(415, 'send the body as application/json', { code: 'unsupported_media_type' });
      else if (err.statusCode && err.statusCode >= 400 && err.statusCode < 500) e = new ApiError(err.statusCode, err.message.replace(/^Body is not valid JSON but content-type is set to 'application\/json'$/, 'the request body is not valid JSON'), { param: 'body', code: 'invalid_body' });
      else e = toApiError(err);
      // A reply sent while the client is still writing its body (over the cap: refused on its
      // Content-Length before a byte is read) closes the socket under the client's write, and the
      // client sees EPIPE instead of this error. Read the rest first, within bounds.
      if (!req.raw.complete) await drainBody(req.raw);
      return reply.code(e.status).send(e.body);
    });
    app.setNotFoundHandler((req, reply) => {
      const e = new ApiError(404, `no route ${req.method} ${req.url.split('?')[0]}`, { type: 'not_found_error', code: 'not_found' });
      void reply.code(404).send(e.body);
    });
    app.addHook('onResponse', async (req, reply) => {
      const path = req.routeOptions.url ?? 'unmatched';
      this.metrics.requests.inc({ endpoint: path, status: String(reply.statusCode) });
    });
    // /v1: the API key, then "not ready yet".
    app.addHook('onRequest', async (req, reply) => {
      if (!req.url.startsWith('/v1/')) return;
      if (this.keyHash && !this.authorized(req)) {
        reply.header('www-authenticate', 'Bearer');
        throw new ApiError(401, 'Incorrect or missing API key: send Authorization: Bearer <key> (the server was started with --api-key)', { type: 'authentication_error', code: 'invalid_api_key' });
      }
      if (this._state !== 'ready') {
        reply.header('retry-after', '5');
        throw this.notReady();
      }
    });

    app.get('/health', async (_req, reply) => {
      if (this._state === 'ready') return { status: 'ok', model: this.modelId, backend: backendName(this.model!.backend), queue_depth: this.queue.depth, in_flight: this.queue.active };
      reply.code(503).header('retry-after', '5');
      return this._state === 'loading' ? { status: 'loading', progress: round(this.loadProgress, 3) } : { status: this._state, ...(this.loadError ? { error: this.loadError.message } : {}) };
    });

    app.get('/metrics', async (_req, reply) => {
      reply.header('content-type', this.metrics.registry.contentType);
      return this.metrics.registry.metrics();
    });

    app.get('/v1/models', async () => ({ object: 'list', data: [this.modelCard()] }));
    app.get('/v1/models/:id', async (req) => {
      const id = (req.params as { id: string }).id;
      if (id !== this.modelId) throw new ApiError(404, `The model '${id}' does not exist (this server serves '${this.modelId}')`, { param: 'model', code: 'model_not_found' });
      return this.modelCard();
    });

    app.get('/', async (_req, reply) => {
      this.playground ??= readFile(join(packageRootDir(), 'web', 'playground', 'index.html'), 'utf8');
      reply.header('content-type', 'text/html; charset=utf-8').header('cache-control', 'no-cache');
      return this.playground;
    });

    app.post('/v1/chat/completions', (req, reply) => this.chatCompletions(req, reply));
  }

  private authorized(req: FastifyRequest): boolean {
    const h = req.headers.authorization;
    const m = typeof h === 'string' ? /^Bearer\s+(.+)$/i.exec(h.trim()) : null;
    if (!m) return false;
    return timingSafeEqual(createHash('sha256').update(m[1]).digest(), this.keyHash!);
  }

  private notReady(): ApiError {
    if (this._state === 'loading') return new ApiError(503, `the model is loading (${Math.round(this.loadProgress * 100)} %); retry shortly`, { code: 'model_loading' });
    if (this._state === 'failed') return new ApiError(503, `the model failed to load: ${this.loadError?.message}`, { code: 'model_load_failed' });
    return new ApiError(503, 'the server is shutting down', { code: 'shutting_down' });
  }

  private modelCard() {
    const m = this.model!;
    return {
      id: this.modelId, object: 'model', created: 0, owned_by: 'diffusionvl',
      mode: m.config.defaultMode, block_size: m.config.diffusion?.blockSize ?? null, context_length: m.contextLength,
      vision: m.config.vision !== null, backend: backendName(m.backend),
    };
  }

  // ---- POST /v1/chat/completions ----------------------------------------------------------------

  private async chatCompletions(req: FastifyRequest, reply: FastifyReply): Promise<unknown> {
    const t0 = performance.now();
    const parsed = parseChatRequest(req.body);
    if (parsed.model !== undefined && parsed.model !== this.modelId) {
      throw new ApiError(404, `The model '${parsed.model}' does not exist (this server serves '${this.modelId}')`, { param: 'model', code: 'model_not_found' });
    }
    // The client going away aborts everything below: image fetches, the queue wait, the decode.
    const ac = new AbortController();
    const onClose = () => { if (!reply.raw.writableEnded) ac.abort(new ApiError(499, 'the client closed the connection', { code: 'client_closed' })); };
    reply.raw.on('close', onClose);
    this.inflight.add(ac);
    try {
      const messages = await this.resolveImages(parsed, ac.signal);
      const tq = performance.now();
      this.waiting.add(ac);
      let release: () => void;
      try {
        release = await this.queue.acquire(ac.signal);
      } finally {
        this.waiting.delete(ac);
      }
      const queueMs = performance.now() - tq;
      this.metrics.queueSeconds.observe(queueMs / 1000);
      try {
        const model = this.model;
        if (!model || this._state === 'failed') throw this.notReady();
        const events = model.stream({
          ...parsed.options, maxTokens: parsed.options.maxTokens ?? this.opts.defaultMaxTokens ?? 512,
          messages, signal: ac.signal, stepEvents: parsed.stepEvents, ...(this.cache ? { prefixCache: this.cache } : {}),
        });
        const meta = { id: `chatcmpl-${randomUUID()}`, created: Math.floor(Date.now() / 1000), model: this.modelId, system_fingerprint: `diffusionvl-${VERSION}` };
        const onFirstBlock = () => this.metrics.firstBlockSeconds.observe((performance.now() - t0) / 1000);
        const result = parsed.stream
          ? await this.sendStream(reply, events, parsed, meta, queueMs, onFirstBlock, model)
          : await this.collect(events, onFirstBlock);
        this.metrics.observeResult(result);
        this.metrics.prefixLookups.inc({ result: result.stats.cachedTokens > 0 ? 'hit' : 'miss' });
        this.metrics.requestSeconds.observe({ stream: String(parsed.stream) }, (performance.now() - t0) / 1000);
        if (parsed.stream) return reply;
        return {
          ...meta, object: 'chat.completion',
          choices: [{ index: 0, message: { role: 'assistant', content: result.text, refusal: null }, logprobs: null, finish_reason: finishReason(result) }],
          usage: usage(result), timings: timings(result, queueMs),
        };
      } finally {
        release();
      }
    } catch (e) {
      if (ac.signal.aborted && ac.signal.reason instanceof ApiError && ac.signal.reason.status === 499) this.metrics.cancelled.inc();
      if (reply.sent || reply.raw.headersSent) {
        // Mid-stream: the error goes in the stream (openai clients raise it), then the end.
        if (!reply.raw.writableEnded && !reply.raw.destroyed) {
          reply.raw.write(`data: ${JSON.stringify(toApiError(e).body)}\n\ndata: [DONE]\n\n`);
          reply.raw.end();
        }
        return reply;
      }
      throw e;
    } finally {
      this.inflight.delete(ac);
      if (this.inflight.size === 0) this.onIdle?.();
      reply.raw.off('close', onClose);
    }
  }

  /** Image URLs → bytes (or the data: URL), all before queueing: a bad one is a 400 right away. */
  private async resolveImages(p: ParsedChatRequest, signal: AbortSignal): Promise<ChatMessage[]> {
    if (p.images.length === 0) return p.messages;
    const out = p.messages.map((m) => ({ ...m, content: Array.isArray(m.content) ? [...m.content as ContentPart[]] : m.content }));
    for (const im of p.images) {
      const value = await resolveImageUrl(im.url, im.param, this.images, signal);
      (out[im.message].content as ContentPart[])[im.part] = { type: 'image', image: value };
    }
    return out;
  }

  private async collect(events: AsyncGenerator<StreamEvent, void>, onFirstBlock: () => void): Promise<GenerateResult> {
    let first = true;
    for await (const ev of events) {
      if (ev.type === 'block' && first) { first = false; onFirstBlock(); }
      if (ev.type === 'done') return ev.result;
    }
    throw new ApiError(500, 'the generation ended without a result');
  }

  /** SSE: one chunk per committed block, the finish chunk (with timings), usage if asked, [DONE]. */
  private async sendStream(reply: FastifyReply, events: AsyncGenerator<StreamEvent, void>, p: ParsedChatRequest, meta: Record<string, unknown>, queueMs: number, onFirstBlock: () => void, model: Model): Promise<GenerateResult> {
    const res = reply.raw;
    // The first event before the headers: what fails early (options, images, the context
    // length) stays a plain HTTP error with its status.
    const it = events[Symbol.asyncIterator]();
    try {
      let next = await it.next();
      reply.hijack();
      res.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache, no-transform',
        connection: 'keep-alive', 'x-accel-buffering': 'no',
      });
      const send = (data: unknown, event?: string) => { if (!res.writableEnded && !res.destroyed) res.write(`${event ? `event: ${event}\n` : ''}data: ${JSON.stringify(data)}\n\n`); };
      const chunk = (delta: Record<string, unknown>, finish: string | null, extra: Record<string, unknown> = {}) =>
        ({ ...meta, object: 'chat.completion.chunk', choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }], ...extra });
      let first = true;
      for (; !next.done; next = await it.next()) {
        const ev = next.value;
        if (ev.type === 'block') {
          if (first) onFirstBlock();
          send(chunk(first ? { role: 'assistant', content: ev.text } : { content: ev.text }, null, { diffusion: { block: ev.block } }));
          first = false;
        } else if (ev.type === 'step') {
          send({
            block: ev.block, iteration: ev.iteration, start: ev.start,
            cells: ev.ids.map((id, i) => (ev.masked[i] ? null : { id, text: model.detokenize([id], { skipSpecial: false }) })),
            revealed: ev.revealed.map((j) => j - ev.start), confidence: ev.confidence,
          }, 'step');
        } else {
          const r = ev.result;
          if (first) send(chunk({ role: 'assistant', content: '' }, null));
          send(chunk({}, finishReason(r), { timings: timings(r, queueMs) }));
          if (p.includeUsage) send({ ...meta, object: 'chat.completion.chunk', choices: [], usage: usage(r) });
          res.write('data: [DONE]\n\n');
          res.end();
          return r;
        }
      }
      throw new ApiError(500, 'the generation ended without a result');
    } finally {
      await it.return(undefined);   // a generator left at its `done` yield still holds the model
    }
  }
}

/** Creates the server and starts listening (the model loads behind it). */
export async function startServer(opts: ServeOptions & { port?: number; host?: string } = {}): Promise<{ server: DiffusionVLServer; url: string }> {
  const server = new DiffusionVLServer(opts);
  const url = await server.listen(opts.port ?? 8080, opts.host ?? '127.0.0.1');
  return { server, url };
}
