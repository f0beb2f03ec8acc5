#!/usr/bin/env node
// main.ts — the `diffusionvl` command.
//
//   diffusionvl run [model] --prompt "…" [--image PATH …] [decode options]   one generation, streamed
//   diffusionvl eval [model] [--heldout DIR] [--n N] [decode options]        exact match on a held-out set
//   diffusionvl bench [--n N] [--heldout DIR] [--json]                         bundled AR parent vs diffusion child
//   diffusionvl bench <model> [--max-tokens N] [--steps 8,4,2]                AR vs block diffusion, same weights
//   diffusionvl inspect [model]                                              backend (CPU ISA, CUDA), model facts, memory estimate
//   diffusionvl chat [model] [--image PATH …] [decode options]               interactive chat on a session (chat.ts)
//   diffusionvl serve [model] [--port N …]                                   the OpenAI-compatible server (serve.ts)
//   diffusionvl help | --help | --version
//
// Exit codes: 0 success; 1 a typed error (the message names its class and code); 2 bad usage
// (unknown command or flag, with a did-you-mean); 3 a benchmark quality bar failed. Results and
// tables go to stdout, progress and stats lines to stderr.
//
// [model] is a model folder, or a bundled model's name (shapes-diffusionvl, shapes-ar); left
// out, the bundled DiffusionVL child (lib/models.ts).
// Decode options: --max-tokens --steps --block-size --remasking static|dynamic --threshold
// --temperature --top-k --top-p --seed --mode diffusion|ar --threads --json --show-steps
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { backendName, getBackendInfo, type GpuOption } from '../native/backend.js';
import { loadModel, type Model } from '../model/model.js';
import { readConfig } from '../weights/config.js';
import { ImageError, OptionError } from '../errors.js';
import { nearestKey } from '../decode/options.js';
import { availableHostMemory, describeEstimate, estimateMemory, formatBytes, panelLayouts } from '../model/memory.js';
import { bundledHeldoutDir, bundledModelDir, packageRootDir, resolveModelDir } from '../models.js';
import { evalHeldout, readHeldout, userMessage, type EvalResult } from '../eval.js';
import type { GenerateRequest, GenerateResult, LoadModelOptions, OpProfileLine } from '../model/model.js';
import { profileLinesText } from './bench.js';
import { Queue, nativeInfo } from '../native/index.js';
import { loadProgress, progressBar } from './progress.js';

const USAGE = `usage:
  diffusionvl run [model] --prompt "text" [--image PATH ...] [options]
  diffusionvl eval [model] [--heldout DIR] [--n N] [--mode ar|diffusion] [--steps S]
                   [--remasking static|dynamic] [--threshold T] [--max-tokens G] [--json]
  diffusionvl bench [--n N] [--heldout DIR] [--repeat R] [--json]
  diffusionvl bench <model> [--max-tokens 64] [--steps 8,4,2] [--prompt "text"] [--profile] [--json]
  diffusionvl inspect [model] [--context-length N]
  diffusionvl chat [model] [--image PATH ...] [--system TEXT] [options]
  diffusionvl serve [model] [--port N] [--api-key KEY] ...   (diffusionvl serve --help)
  diffusionvl help | --help | --version

[model]: a model folder, or the name of a bundled model (shapes-diffusionvl, shapes-ar);
default: the bundled DiffusionVL child, shapes-diffusionvl.

options for run:
  --image PATH        an image for the prompt (repeatable; images go before the text)
  --max-tokens N      tokens to generate (default 128)
  --steps S           denoising iterations per block (default: the model's
                      generation_config.json, else 8)
  --block-size N      block size (default: the model's bd3lm_block_size)
  --remasking M       static | dynamic (default: generation_config.json, else static)
  --threshold T       dynamic remasking threshold (default: generation_config.json, else 0.85)
  --temperature T     0 = greedy (default), > 0 samples
  --top-k K, --top-p P, --seed N
  --mode M            diffusion | ar (default: diffusion for DiffusionVL checkpoints)
  --threads N         kernel threads (default: physical cores)
  --gpu G             auto (default: the GPU when the CUDA backend is usable) | cuda | cpu
  --context-length N  KV-cache positions (default: min(max_position_embeddings, 8192))
  --precision P       fast (default: bf16-rounded / int8 activations) | exact (f32 activations)
  --dtype D           weight dtype: as stored (default) | bf16 | f16 | f32 | q8 (int8, CPU only)
  --show-steps        print each denoising step's canvas (text; masked tokens as ▒)
  --profile           time every op of the request and print where its time went
  --json              print the result as JSON (no progress bars)

chat: an interactive conversation on a session that keeps its KV cache between turns (each
turn prefills only what is new). Lines starting with / are commands: /image PATH (attach to
the next message), /reset, /stats, /help, /exit. The run options above apply to every turn;
--system TEXT sets the system prompt.

eval: greedy (temperature 0) over the held-out set (default: the bundled one), exact match of
the trimmed answer text overall and per kind, forwards per answer token, tokens/s; progress on
stderr (a bar on a terminal, else a line every 25 items). --max-tokens defaults to 64 there.

bench without a model: the bundled AR parent (shapes-ar) against its DiffusionVL child
(shapes-diffusionvl) on the held-out set — exact match, forwards per answer token, tokens/s,
speed-up, and the model's quality bar; --repeat R times each setting R times, round-robin, and
reports the median tokens/s (answers must repeat exactly); exit code 3 when a quality bar
fails. With a model: AR vs block diffusion on that model's weights for one long generation
(speed only); --profile then reruns AR and each merged setting once with every op timed and
prints where a forward's time goes (ms per forward per op, matmuls by weight dtype and rows).

inspect: the backend, the model's config and its memory estimate (weights, KV cache at the
context length, activations, vision) against the memory available.

exit codes: 0 ok, 1 error (typed: OptionError, ConfigError, WeightsError, ImageError, ...),
2 bad usage, 3 a bench quality bar failed.`;

const COMMANDS = ['run', 'eval', 'bench', 'inspect', 'chat', 'serve', 'help'];

const OPTIONS = {
  prompt: { type: 'string' }, 'max-tokens': { type: 'string' }, steps: { type: 'string' },
  'block-size': { type: 'string' }, remasking: { type: 'string' }, threshold: { type: 'string' },
  temperature: { type: 'string' }, 'top-k': { type: 'string' }, 'top-p': { type: 'string' },
  seed: { type: 'string' }, mode: { type: 'string' }, threads: { type: 'string' },
  json: { type: 'boolean' }, 'show-steps': { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
  image: { type: 'string', multiple: true }, heldout: { type: 'string' }, n: { type: 'string' },
  gpu: { type: 'string' }, repeat: { type: 'string' }, 'context-length': { type: 'string' },
  system: { type: 'string' }, version: { type: 'boolean', short: 'v' }, precision: { type: 'string' }, dtype: { type: 'string' },
  profile: { type: 'boolean' },
} as const;

export type Values = ReturnType<typeof parse>['values'];
function parse(argv: string[]) {
  return parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
}

function num(v: string | undefined, name: string): number | undefined {
  if (v === undefined) return undefined;
  const n = v.trim() === '' ? NaN : Number(v);
  if (!Number.isFinite(n)) throw new OptionError(`--${name}: expected a number, got '${v}'`, name);
  return n;
}

/** --gpu auto|cuda|cpu (run, eval, bench); left out: loadModel's default, 'auto'. */
function gpuOpt(v: Values): GpuOption | undefined {
  const g = v.gpu;
  if (g === undefined) return undefined;
  if (g !== 'auto' && g !== 'cuda' && g !== 'cpu') throw new OptionError(`--gpu: expected auto, cuda or cpu, got '${g}'`, 'gpu');
  return g;
}

/** loadModel options from the flags every loading command shares. */
function loadOpts(v: Values): Pick<LoadModelOptions, 'threads' | 'gpu' | 'contextLength' | 'precision' | 'dtype'> {
  const o: Pick<LoadModelOptions, 'threads' | 'gpu' | 'contextLength' | 'precision' | 'dtype'> = {};
  const threads = num(v.threads, 'threads');
  if (threads !== undefined) o.threads = threads;
  const gpu = gpuOpt(v);
  if (gpu !== undefined) o.gpu = gpu;
  const ctx = num(v['context-length'], 'context-length');
  if (ctx !== undefined) o.contextLength = ctx;
  if (v.precision !== undefined) {
    if (v.precision !== 'exact' && v.precision !== 'fast') throw new OptionError(`--precision: expected exact or fast, got '${v.precision}'`, 'precision');
    o.precision = v.precision;
  }
  if (v.dtype !== undefined) {
    if (!['bf16', 'f16', 'f32', 'q8'].includes(v.dtype)) throw new OptionError(`--dtype: expected bf16, f16, f32 or q8, got '${v.dtype}'`, 'dtype');
    o.dtype = v.dtype as LoadModelOptions['dtype'];
  }
  return o;
}

/** One token's text for the canvas display (newlines and tabs visible). */
function tokenText(model: Model, id: number): string {
  return model.tokenizer.decode([id], { skipSpecial: false }).replace(/\n/g, '⏎').replace(/\t/g, '⇥');
}

/** The --image files, checked before the model loads: a missing one is an ImageError naming it. */
function imagePaths(v: Values): string[] {
  const paths = v.image ?? [];
  for (const p of paths) {
    if (!existsSync(p)) throw new ImageError(`${p}: cannot read image file (no such file)`, p);
    if (statSync(p).isDirectory()) throw new ImageError(`${p}: cannot read image file (is a directory)`, p);
  }
  return paths;
}

function request(v: Values): GenerateRequest {
  const images = imagePaths(v);
  const text = v.prompt ?? (images.length ? 'Describe the image.' : 'Hello!');
  return { ...(images.length ? { messages: userMessage(text, images) } : { prompt: text }), ...decodeOptions(v) };
}

/** The decode options and mode given on the command line (run, chat). */
export function decodeOptions(v: Values): GenerateRequest {
  const r: GenerateRequest = {};
  const set = <K extends keyof GenerateRequest>(k: K, x: GenerateRequest[K] | undefined) => { if (x !== undefined) r[k] = x; };
  set('maxTokens', num(v['max-tokens'], 'max-tokens'));
  set('steps', num(v.steps, 'steps'));
  set('blockSize', num(v['block-size'], 'block-size'));
  set('remasking', v.remasking as GenerateRequest['remasking']);
  set('threshold', num(v.threshold, 'threshold'));
  set('temperature', num(v.temperature, 'temperature'));
  set('topK', num(v['top-k'], 'top-k'));
  set('topP', num(v['top-p'], 'top-p'));
  set('seed', num(v.seed, 'seed'));
  set('mode', v.mode as GenerateRequest['mode']);
  return r;
}

function statsLine(r: GenerateResult): string {
  const s = r.stats;
  return `[${r.mode}] ${s.generatedTokens} tokens, ${s.forwards} forwards (${s.tokensPerForward.toFixed(2)} tok/fwd), ` +
    `prefill ${s.prefillMs.toFixed(0)} ms, ${s.msPerForward.toFixed(1)} ms/forward, ${s.tokensPerSecond.toFixed(1)} tok/s, finish: ${r.finishReason}`;
}

/** `run --profile`: where the request's time went — its phases, then the costliest ops. */
function profileText(r: GenerateResult, p: { totalMs: number; ops: OpProfileLine[] }): string {
  const t = r.stats.timings;
  const lines = [
    `time: prompt ${t.promptMs.toFixed(2)} ms, images ${t.imageMs.toFixed(2)} ms, vision tower ${t.towerMs.toFixed(2)} ms, ` +
      `prefill ${t.prefillMs.toFixed(2)} ms, decoding ${t.decodeMs.toFixed(2)} ms (${t.decodeTokens} tokens); ` +
      `${p.totalMs.toFixed(2)} ms inside the ops`,
  ];
  lines.push(...profileLinesText(p.ops, 12, true));
  return lines.join('\n');
}

/** loadModel with the shared flags and a progress bar on stderr (a terminal only, not with --json). */
export async function loadWithProgress(dir: string, v: Values): Promise<Model> {
  const bar = loadProgress(v.json ?? false);
  try {
    return await loadModel(dir, { ...loadOpts(v), onProgress: bar.onProgress });
  } finally {
    bar.done();
  }
}

async function cmdRun(dir: string, v: Values): Promise<void> {
  const req = { ...request(v), stepEvents: v['show-steps'] ?? false };
  const model = await loadWithProgress(dir, v);
  try {
    const generate = async (): Promise<GenerateResult> => {
      let result: GenerateResult | undefined;
      for await (const ev of model.stream(req)) {
        if (ev.type === 'block' && !v.json) process.stdout.write(ev.text);
        else if (ev.type === 'step' && !v.json) {
          const canvas = ev.ids.map((id, i) => (ev.masked[i] ? '▒' : tokenText(model, id))).join('');
          process.stderr.write(`\n  block ${ev.block} step ${ev.iteration}: ${canvas}`);
        } else if (ev.type === 'done') result = ev.result;
      }
      return result!;
    };
    const profiled = v.profile ? await model.profile(generate) : undefined;
    const result = profiled ? profiled.result : await generate();
    const profile = profiled ? { totalMs: profiled.totalMs, ops: profiled.ops } : undefined;
    if (v.json) {
      process.stdout.write(JSON.stringify({ text: result.text, ids: result.ids, finishReason: result.finishReason, mode: result.mode, stats: result.stats, ...(profile ? { profile } : {}) }, null, 2) + '\n');
    } else {
      process.stdout.write('\n');
      // The step lines start with a newline and leave the last one open: close it first.
      process.stderr.write(`${v['show-steps'] ? '\n' : ''}${statsLine(result)}, on ${backendName(model.backend)}\n`);
      if (profile) process.stderr.write(profileText(result, profile) + '\n');
    }
  } finally {
    model.dispose();
  }
}

async function cmdInspect(arg: string | undefined, v: Values): Promise<void> {
  const info = getBackendInfo({ gpu: 'auto' });
  // The CPU matmul kernels per weight dtype, for each precision (loadModel's default: fast).
  const kernels: Record<string, unknown> = {};
  for (const precision of ['fast', 'exact'] as const) {
    const q = new Queue({ threads: 1, precision });
    kernels[precision] = q.kernels;
    q.dispose();
  }
  const out: Record<string, unknown> = { backend: info, cpuKernels: kernels };
  // No folder given: the bundled child when it is installed, else the backend alone.
  let dir = arg;
  if (dir === undefined) {
    try { dir = bundledModelDir(); } catch { dir = undefined; }
  } else {
    dir = resolveModelDir(dir);
  }
  if (dir) {
    const c = await readConfig(dir);
    out.model = {
      dir, modelType: c.modelType, family: c.family, text: c.text, diffusion: c.diffusion,
      vision: c.vision ? { kind: c.vision.kind } : null, eosTokenId: c.eosTokenId,
    };
    const contextLength = num(v['context-length'], 'context-length') ?? Math.min(c.text.maxPositionEmbeddings, 8192);
    const lo = loadOpts(v);
    const panels = panelLayouts(nativeInfo().isa, lo.precision ?? 'fast', info.backend);
    const est = estimateMemory(c, { contextLength, device: info.backend, dtype: lo.dtype, panels });
    const available = info.backend === 'cuda' && info.cuda.device ? info.cuda.device.memoryBytes : availableHostMemory();
    out.memory = { ...est, availableBytes: available, fits: est.totalBytes <= available, summary: `${formatBytes(est.totalBytes)} of ${formatBytes(available)} available: ${describeEstimate(est)}` };
  }
  process.stdout.write(JSON.stringify(out, null, 2) + '\n');
}

async function cmdBench(dir: string, v: Values): Promise<void> {
  const { benchModel } = await import('./bench.js');
  const stepsList = (v.steps ?? '8,4,2').split(',').map((s) => Number(s));
  for (const s of stepsList) if (!Number.isInteger(s) || s < 1) throw new OptionError(`--steps: expected a comma-separated list of integers ≥ 1, got '${v.steps}'`, 'steps');
  const { benchTable } = await import('./bench.js');
  const res = await benchModel(dir, {
    maxTokens: num(v['max-tokens'], 'max-tokens') ?? 64, steps: stepsList, prompt: v.prompt, ...loadOpts(v), profile: v.profile ?? false,
    log: v.json ? () => undefined : (s: string) => process.stderr.write(s + '\n'),
  });
  process.stdout.write(v.json ? JSON.stringify(res, null, 2) + '\n' : benchTable(res) + '\n');
}

/** Returns 3 when a quality bar failed (the exit code), else 0. */
async function cmdCompare(v: Values): Promise<number> {
  const { compareParentChild, compareTable } = await import('./compare.js');
  const log = v.json ? () => undefined : (s: string) => process.stderr.write(s + '\n');
  const lo = loadOpts(v);
  const res = await compareParentChild({ heldoutDir: v.heldout, n: num(v.n, 'n'), threads: lo.threads, gpu: lo.gpu, precision: lo.precision, dtype: lo.dtype, repeat: num(v.repeat, 'repeat'), log });
  if (v.json) {
    const { results: _items, ...summary } = res;
    process.stdout.write(JSON.stringify(summary, null, 2) + '\n');
  } else {
    process.stdout.write(`${compareTable(res)}\n\n${res.n} held-out prompts (${res.heldout}); temperature 0; forwards count prefill, denoising and commit passes; ${res.backend}.\n`);
    for (const b of res.bar) process.stdout.write(`${b.pass ? 'PASS' : 'FAIL'}  ${b.name}: ${b.detail}\n`);
  }
  return res.bar.every((b) => b.pass) ? 0 : 3;
}

async function cmdEval(dir: string, v: Values): Promise<void> {
  const heldoutDir = v.heldout ?? bundledHeldoutDir();
  const set = await readHeldout(heldoutDir);
  const n = num(v.n, 'n');
  const mode = v.mode as GenerateRequest['mode'];
  const remasking = v.remasking as GenerateRequest['remasking'];
  const model = await loadWithProgress(dir, v);
  const bar = progressBar('eval', { quiet: v.json });
  let res: EvalResult;
  try {
    res = await evalHeldout(model, set.items, {
      n: n === undefined ? undefined : Math.min(n, set.items.length), mode, remasking,
      steps: num(v.steps, 'steps'), threshold: num(v.threshold, 'threshold'),
      maxTokens: num(v['max-tokens'], 'max-tokens'), blockSize: num(v['block-size'], 'block-size'),
      log: bar.active ? undefined : (s) => process.stderr.write(s + '\n'),
      onItem: (done, total) => bar.update(done, total),
    });
  } finally {
    bar.stop();
    model.dispose();
  }
  if (v.json) {
    const { items: _items, ...summary } = res;
    process.stdout.write(JSON.stringify({ model: dir, heldout: heldoutDir, ...summary }, null, 2) + '\n');
    return;
  }
  const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
  const s = res.settings;
  const how = s.mode === 'ar' ? 'ar' : `diffusion, ${s.steps} steps, ${s.remasking}${s.threshold !== undefined ? ` ${s.threshold}` : ''}, block ${s.blockSize}`;
  const lines = [
    `model ${dir}`,
    `held-out ${heldoutDir}: ${res.n} items (${how}, max ${s.maxTokens} tokens, temperature 0)`,
    `exact match ${pct(res.exactMatch)} (${res.correct}/${res.n})`,
    ...Object.entries(res.perKind).map(([k, x]) => `  ${k.padEnd(20)} ${pct(x.exactMatch).padStart(6)} (${x.correct}/${x.n})`),
    `${res.forwardsPerToken.toFixed(3)} forwards per answer token (${res.forwards} forwards, ${res.answerTokens} answer tokens, EOS included), ` +
      `${res.tokensPerSecond.toFixed(1)} tok/s, ${res.seconds.toFixed(1)} s`,
  ];
  for (const f of res.failures.slice(0, 5)) lines.push(`  miss ${f.id} [${f.kind}]: expected ${JSON.stringify(f.expected)}, got ${JSON.stringify(f.got)}`);
  process.stdout.write(lines.join('\n') + '\n');
}

/** "Unknown option '--stpes'" → the same with a did-you-mean from the flag table. */
function usageError(e: Error & { code?: string }): string {
  const m = /option '(-{1,2})([^'=]+)'/.exec(e.message);
  if (e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && m) {
    const near = nearestKey(m[2], Object.keys(OPTIONS));
    return `diffusionvl: unknown option ${m[1]}${m[2]}${near ? ` (did you mean --${near}?)` : ''}`;
  }
  return `diffusionvl: ${e.message}`;
}

function version(): string {
  return (JSON.parse(readFileSync(join(packageRootDir(), 'package.json'), 'utf8')) as { version: string }).version;
}

export async function main(argv: string[]): Promise<number> {
  // serve has options of its own (serve.ts).
  if (argv[0] === 'serve') return (await import('./serve.js')).serveMain(argv.slice(1));
  let parsed;
  try {
    parsed = parse(argv);
  } catch (e) {
    process.stderr.write(`${usageError(e as Error)}\n\n${USAGE}\n`);
    return 2;
  }
  const { values: v, positionals: [cmd, dir] } = parsed;
  if (v.version) { process.stdout.write(`diffusionvl ${version()} (node ${process.version})\n`); return 0; }
  if (v.help || cmd === 'help') { process.stdout.write(USAGE + '\n'); return 0; }
  if (!cmd) { process.stderr.write(`diffusionvl: no command given\n\n${USAGE}\n`); return 2; }
  if (!COMMANDS.includes(cmd)) {
    const near = nearestKey(cmd, COMMANDS);
    process.stderr.write(`diffusionvl: unknown command '${cmd}'${near ? ` (did you mean '${near}'?)` : ''}; commands: ${COMMANDS.join(', ')}\n\n${USAGE}\n`);
    return 2;
  }
  try {
    if (cmd === 'run') {
      await cmdRun(resolveModelDir(dir), v);
    } else if (cmd === 'eval') {
      await cmdEval(resolveModelDir(dir), v);
    } else if (cmd === 'inspect') {
      await cmdInspect(dir, v);
    } else if (cmd === 'chat') {
      const { cmdChat } = await import('./chat.js');
      await cmdChat(resolveModelDir(dir), v);
    } else if (dir === undefined) {
      return await cmdCompare(v);
    } else {
      await cmdBench(resolveModelDir(dir), v);
    }
    return 0;
  } catch (e) {
    const err = e as Error & { code?: string };
    process.stderr.write(`diffusionvl: ${err.name}${err.code ? ` (${err.code})` : ''}: ${err.message}\n`);
    return 1;
  }
}

const invokedDirectly = process.argv[1] && /(?:^|[\\/])(?:main\.(?:ts|js)|diffusionvl)$/.test(process.argv[1]);
if (invokedDirectly) {
  main(process.argv.slice(2)).then((code) => { process.exitCode = code; });
}
