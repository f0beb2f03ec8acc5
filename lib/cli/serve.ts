// serve.ts — `diffusionvl serve [model] [options]`: the OpenAI-compatible server (lib/server/app.ts).
//
// Listens at once, loads the model behind it (/health is 503 until then), and on SIGTERM or
// SIGINT drains: no new requests, in-flight ones finish for up to --drain-timeout seconds and
// are aborted after that, the model is freed, the process exits 0. A second signal aborts at once.
import { parseArgs } from 'node:util';
import { resolve } from 'node:path';
import { realpathSync } from 'node:fs';
import { DiffusionVLError } from '../errors.js';
import { resolveModelDir } from '../models.js';
import type { GpuOption } from '../native/backend.js';
import { DiffusionVLServer } from '../server/app.js';
import { loadProgress } from './progress.js';

export const SERVE_USAGE = `usage: diffusionvl serve [model] [options]

An OpenAI-compatible HTTP server: POST /v1/chat/completions (plain and SSE), GET /v1/models,
GET /health, GET /metrics (Prometheus), and the playground at GET /.

  --host H               address to listen on (default 127.0.0.1; 0.0.0.0 for all)
  --port N               port (default 8080; 0 picks a free one)
  --api-key KEY          require Authorization: Bearer KEY on /v1/* (or DIFFUSIONVL_API_KEY)
  --model-name NAME      the model id clients use (default: the model folder's name)
  --max-tokens N         max_tokens when a request gives none (default 512)
  --max-batch N          requests decoded together, batched in every forward (default 4)
  --max-queue N          requests that may wait beyond those; more get 429 (default 16)
  --max-body-mb N        request body cap; larger bodies get 413 (default 32)
  --prefix-cache-mb N    memory for reused conversation prefixes (default 256; 0 = off)
  --image-root DIR       allow file: image URLs for files under DIR
  --allow-http-images    allow http(s) image URLs (fetched by the server)
  --image-max-mb N       cap for a file or fetched image (default 20)
  --image-timeout-ms N   time cap for fetching one image (default 10000)
  --drain-timeout S      on SIGTERM, seconds in-flight requests may take before being aborted (default 30)
  --threads N            kernel threads (default: physical cores)
  --gpu auto|cuda|cpu    where the model runs (default auto)
  --log                  request log on stderr
  --json                 machine-readable lines on stdout (listening, ready, stopped); no progress bar

Exit status: 0 after a signal-initiated shutdown, 1 when the model fails to load, 2 for bad usage.`;

const OPTIONS = {
  host: { type: 'string' }, port: { type: 'string' }, 'api-key': { type: 'string' }, 'model-name': { type: 'string' },
  'max-tokens': { type: 'string' }, 'max-queue': { type: 'string' }, 'max-batch': { type: 'string' }, 'max-body-mb': { type: 'string' },
  'prefix-cache-mb': { type: 'string' }, 'image-root': { type: 'string' }, 'allow-http-images': { type: 'boolean' },
  'image-max-mb': { type: 'string' }, 'image-timeout-ms': { type: 'string' }, 'drain-timeout': { type: 'string' },
  threads: { type: 'string' }, gpu: { type: 'string' }, log: { type: 'boolean' }, json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

function num(v: string | undefined, name: string, min: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n < min) throw new DiffusionVLError('DVL_OPTION', `--${name}: expected a number ≥ ${min}, got '${v}'`);
  return n;
}

export async function serveMain(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n\n${SERVE_USAGE}\n`);
    return 2;
  }
  const { values: v, positionals } = parsed;
  if (v.help) { process.stdout.write(SERVE_USAGE + '\n'); return 0; }
  if (positionals.length > 1) { process.stderr.write(`serve takes one model, got ${positionals.join(' ')}\n\n${SERVE_USAGE}\n`); return 2; }
  const json = v.json ?? false;
  const say = (event: Record<string, unknown>, line: string) => {
    if (json) process.stdout.write(JSON.stringify(event) + '\n');
    else process.stderr.write(`diffusionvl serve: ${line}\n`);
  };

  let server: DiffusionVLServer;
  let progress: ReturnType<typeof loadProgress> | undefined;
  try {
    const gpu = v.gpu as GpuOption | undefined;
    if (gpu !== undefined && gpu !== 'auto' && gpu !== 'cuda' && gpu !== 'cpu') throw new DiffusionVLError('DVL_OPTION', `--gpu: expected auto, cuda or cpu, got '${gpu}'`);
    const dir = resolveModelDir(positionals[0]);
    const mb = (x: number | undefined) => (x === undefined ? undefined : Math.floor(x * 1024 * 1024));
    let imageRoot: string | null = null;
    if (v['image-root'] !== undefined) {
      try { imageRoot = realpathSync(resolve(v['image-root'])); } catch { throw new DiffusionVLError('DVL_OPTION', `--image-root: no such directory '${v['image-root']}'`); }
    }
    progress = loadProgress(json);
    server = new DiffusionVLServer({
      model: dir,
      modelName: v['model-name'],
      apiKey: v['api-key'] ?? process.env.DIFFUSIONVL_API_KEY ?? undefined,
      maxBodyBytes: mb(num(v['max-body-mb'], 'max-body-mb', 0.001)),
      maxQueue: num(v['max-queue'], 'max-queue', 0),
      prefixCacheBytes: mb(num(v['prefix-cache-mb'], 'prefix-cache-mb', 0)),
      defaultMaxTokens: num(v['max-tokens'], 'max-tokens', 1),
      images: {
        fileRoot: imageRoot, allowHttp: v['allow-http-images'] ?? false,
        ...(v['image-max-mb'] !== undefined ? { maxBytes: mb(num(v['image-max-mb'], 'image-max-mb', 0.001)) } : {}),
        ...(v['image-timeout-ms'] !== undefined ? { timeoutMs: num(v['image-timeout-ms'], 'image-timeout-ms', 1) } : {}),
      },
      loadOptions: { threads: num(v.threads, 'threads', 1), maxBatch: num(v['max-batch'], 'max-batch', 1), gpu, onProgress: progress.onProgress },
      log: v.log ?? false,
    });
    const drainMs = (num(v['drain-timeout'], 'drain-timeout', 0) ?? 30) * 1000;
    const port = num(v.port, 'port', 0) ?? 8080;
    const t0 = performance.now();
    const url = await server.listen(port, v.host ?? '127.0.0.1');
    say({ event: 'listening', url }, `listening on ${url} (loading the model from ${dir}; /health is 503 until it is ready)`);

    let exit!: (code: number) => void;
    const stopped = new Promise<number>((done) => {
      exit = done;
      let signals = 0;
      const onSignal = (sig: NodeJS.Signals) => {
        if (++signals > 1) { say({ event: 'aborted', signal: sig }, `${sig} again: stopping now`); done(0); return; }
        say({ event: 'draining', signal: sig }, `${sig}: draining (up to ${drainMs / 1000} s for requests in flight)`);
        server.shutdown(drainMs).then(() => { say({ event: 'stopped' }, 'stopped'); done(0); }, (e) => { process.stderr.write(`diffusionvl serve: shutdown failed: ${(e as Error).message}\n`); done(1); });
      };
      process.on('SIGTERM', onSignal);
      process.on('SIGINT', onSignal);
    });
    server.ready.then(() => {
      progress?.done();
      const health = { event: 'ready', url, model: dir, seconds: round((performance.now() - t0) / 1000) };
      say(health, `model ready in ${health.seconds} s; OpenAI base URL ${url}/v1, playground ${url}/`);
    }, (e: Error & { code?: string }) => {
      progress?.done();
      say({ event: 'load_failed', error: e.message }, `the model failed to load: ${e.name}${e.code ? ` (${e.code})` : ''}: ${e.message}`);
      void server.shutdown(0).finally(() => exit(1));
    });
    return await stopped;
  } catch (e) {
    progress?.done();
    const err = e as Error & { code?: string };
    process.stderr.write(`diffusionvl serve: ${err.name}${err.code ? ` (${err.code})` : ''}: ${err.message}\n`);
    return 1;
  }
}

const round = (x: number) => Math.round(x * 100) / 100;
