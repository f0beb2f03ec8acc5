#!/usr/bin/env node
// main.ts — the `diffusionvl` command.
//
//   diffusionvl run [model] --prompt "…" [--image PATH …] [decode options]   one generation, streamed
//   diffusionvl eval [model] [--heldout DIR] [--n N] [decode options]        exact match on a held-out set
//   diffusionvl bench [--n N] [--heldout DIR] [--json]                         bundled AR parent vs diffusion child
//   diffusionvl bench <model> [--max-tokens N] [--steps 8,4,2]                AR vs block diffusion, same weights
//   diffusionvl inspect [model]                                              backend (CPU ISA, CUDA) and model facts
//
// [model] is a model folder, or a bundled model's name (shapes-diffusionvl, shapes-ar); left
// out, the bundled DiffusionVL child (lib/models.ts).
// Decode options: --max-tokens --steps --block-size --remasking static|dynamic --threshold
// --temperature --top-k --top-p --seed --mode diffusion|ar --threads --json --show-steps
import { existsSync, statSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { backendName, getBackendInfo, type GpuOption } from '../native/backend.js';
import { loadModel } from '../model/model.js';
import { readConfig } from '../weights/config.js';
import { DiffusionVLError, ImageError } from '../errors.js';
import { bundledHeldoutDir, bundledModelDir, resolveModelDir } from '../models.js';
import { evalHeldout, readHeldout, userMessage, type EvalResult } from '../eval.js';
import type { GenerateRequest, GenerateResult } from '../model/model.js';

const USAGE = `usage:
  diffusionvl run [model] --prompt "text" [--image PATH ...] [options]
  diffusionvl eval [model] [--heldout DIR] [--n N] [--mode ar|diffusion] [--steps S]
                   [--remasking static|dynamic] [--threshold T] [--max-tokens G] [--json]
  diffusionvl bench [--n N] [--heldout DIR] [--repeat R] [--json]
  diffusionvl bench <model> [--max-tokens 64] [--steps 8,4,2] [--prompt "text"] [--json]
  diffusionvl inspect [model]

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
  --show-steps        print each denoising step's canvas
  --json              print the result as JSON

eval: greedy (temperature 0) over the held-out set (default: the bundled one), exact match of
the trimmed answer text overall and per kind, forwards per answer token, tokens/s; progress on
stderr every 25 items. --max-tokens defaults to 64 there.

bench without a model: the bundled AR parent (shapes-ar) against its DiffusionVL child
(shapes-diffusionvl) on the held-out set — exact match, forwards per answer token, tokens/s,
speed-up, and the model's quality bar; --repeat R times each setting R times, round-robin, and
reports the median tokens/s (answers must repeat exactly). With a model: AR vs block diffusion
on that model's weights for one long generation (speed only).`;

const OPTIONS = {
  prompt: { type: 'string' }, 'max-tokens': { type: 'string' }, steps: { type: 'string' },
  'block-size': { type: 'string' }, remasking: { type: 'string' }, threshold: { type: 'string' },
  temperature: { type: 'string' }, 'top-k': { type: 'string' }, 'top-p': { type: 'string' },
  seed: { type: 'string' }, mode: { type: 'string' }, threads: { type: 'string' },
  json: { type: 'boolean' }, 'show-steps': { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
  image: { type: 'string', multiple: true }, heldout: { type: 'string' }, n: { type: 'string' },
  gpu: { type: 'string' }, repeat: { type: 'string' },
} as const;

type Values = ReturnType<typeof parse>['values'];
function parse(argv: string[]) {
  return parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
}

function num(v: string | undefined, name: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new DiffusionVLError('DVL_OPTION', `--${name}: expected a number, got '${v}'`);
  return n;
}

/** --gpu auto|cuda|cpu (run, eval, bench); left out: loadModel's default, 'auto'. */
function gpuOpt(v: Values): GpuOption | undefined {
  const g = v.gpu;
  if (g === undefined) return undefined;
  if (g !== 'auto' && g !== 'cuda' && g !== 'cpu') throw new DiffusionVLError('DVL_OPTION', `--gpu: expected auto, cuda or cpu, got '${g}'`);
  return g;
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
  const r: GenerateRequest = images.length ? { messages: userMessage(text, images) } : { prompt: text };
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

async function cmdRun(dir: string, v: Values): Promise<void> {
  const req = { ...request(v), stepEvents: v['show-steps'] ?? false };
  const model = await loadModel(dir, { threads: num(v.threads, 'threads'), gpu: gpuOpt(v) });
  try {
    let result: GenerateResult | undefined;
    for await (const ev of model.stream(req)) {
      if (ev.type === 'block' && !v.json) process.stdout.write(ev.text);
      else if (ev.type === 'step' && !v.json) {
        process.stderr.write(`\n  block ${ev.block} step ${ev.iteration}: ${ev.ids.map((id, i) => (ev.masked[i] ? '_' : String(id))).join(' ')}`);
      } else if (ev.type === 'done') result = ev.result;
    }
    if (v.json) {
      process.stdout.write(JSON.stringify({ text: result!.text, ids: result!.ids, finishReason: result!.finishReason, mode: result!.mode, stats: result!.stats }, null, 2) + '\n');
    } else {
      process.stdout.write('\n');
      process.stderr.write(`${statsLine(result!)}, on ${backendName(model.backend)}\n`);
    }
  } finally {
    model.dispose();
  }
}

async function cmdInspect(arg: string | undefined): Promise<void> {
  const info = getBackendInfo({ gpu: 'auto' });
  const out: Record<string, unknown> = { backend: info };
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
  }
  process.stdout.write(JSON.stringify(out, null, 2) + '\n');
}

async function cmdBench(dir: string, v: Values): Promise<void> {
  const { benchModel } = await import('./bench.js');
  const stepsList = (v.steps ?? '8,4,2').split(',').map((s) => Number(s));
  const res = await benchModel(dir, {
    maxTokens: num(v['max-tokens'], 'max-tokens') ?? 64, steps: stepsList, prompt: v.prompt, threads: num(v.threads, 'threads'), gpu: gpuOpt(v),
    log: v.json ? () => undefined : (s: string) => process.stderr.write(s + '\n'),
  });
  if (v.json) process.stdout.write(JSON.stringify(res, null, 2) + '\n');
}

async function cmdCompare(v: Values): Promise<void> {
  const { compareParentChild, compareTable } = await import('./compare.js');
  const log = v.json ? () => undefined : (s: string) => process.stderr.write(s + '\n');
  const res = await compareParentChild({ heldoutDir: v.heldout, n: num(v.n, 'n'), threads: num(v.threads, 'threads'), gpu: gpuOpt(v), repeat: num(v.repeat, 'repeat'), log });
  if (v.json) {
    const { results: _items, ...summary } = res;
    process.stdout.write(JSON.stringify(summary, null, 2) + '\n');
    return;
  }
  process.stdout.write(`${compareTable(res)}\n\n${res.n} held-out prompts (${res.heldout}); temperature 0; forwards count prefill, denoising and commit passes; ${res.backend}.\n`);
  for (const b of res.bar) process.stdout.write(`${b.pass ? 'PASS' : 'FAIL'}  ${b.name}: ${b.detail}\n`);
}

async function cmdEval(dir: string, v: Values): Promise<void> {
  const heldoutDir = v.heldout ?? bundledHeldoutDir();
  const set = await readHeldout(heldoutDir);
  const n = num(v.n, 'n');
  const mode = v.mode as GenerateRequest['mode'];
  const remasking = v.remasking as GenerateRequest['remasking'];
  const model = await loadModel(dir, { threads: num(v.threads, 'threads'), gpu: gpuOpt(v) });
  let res: EvalResult;
  try {
    res = await evalHeldout(model, set.items, {
      n: n === undefined ? undefined : Math.min(n, set.items.length), mode, remasking,
      steps: num(v.steps, 'steps'), threshold: num(v.threshold, 'threshold'),
      maxTokens: num(v['max-tokens'], 'max-tokens'), blockSize: num(v['block-size'], 'block-size'),
      log: (s) => process.stderr.write(s + '\n'),
    });
  } finally {
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

export async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parse(argv);
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n\n${USAGE}\n`);
    return 2;
  }
  const { values: v, positionals: [cmd, dir] } = parsed;
  if (v.help || !cmd) { process.stdout.write(USAGE + '\n'); return cmd ? 0 : 2; }
  try {
    if (cmd === 'run') {
      await cmdRun(resolveModelDir(dir), v);
    } else if (cmd === 'eval') {
      await cmdEval(resolveModelDir(dir), v);
    } else if (cmd === 'inspect') {
      await cmdInspect(dir);
    } else if (cmd === 'bench') {
      if (dir === undefined) await cmdCompare(v);
      else await cmdBench(resolveModelDir(dir), v);
    } else {
      process.stderr.write(`unknown command '${cmd}'\n\n${USAGE}\n`);
      return 2;
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
