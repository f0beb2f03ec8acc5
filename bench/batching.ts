// batching.ts — `npm run bench:batching` (part of `npm run bench`): continuous batching on the
// Qwen2.5-0.5B-shaped random checkpoint (bench/seed.ts) and the bundled trained models, all
// figures from one run, ratios within it:
//
//   balance point   one forward of R rows (every row scored and its argmax taken natively, as AR
//                   batching does) for R = 1..64:
//                   ms and ms ÷ ms(R=1). The R where a forward's time doubles is where this
//                   machine turns compute-bound: below it, more requests per forward are nearly
//                   free; a bigger machine moves it up.
//   AR mode         1, 4 and 8 concurrent requests (64 tokens each): aggregate tokens/s ÷ one's
//   block 8         static 4 steps and dynamic 0.9, 1 vs 4 concurrent: aggregate ratio
//   arrival         time to first block of a request arriving while 3 others decode (as they start
//                   a forward, and at a random moment), p50 of 7 each,
//                   ÷ the same request unloaded
//   held-out        the bundled child's held-out set, 8 concurrent clients vs one at a time:
//                   aggregate tokens/s and exact match (must be equal)
//
// Writes bench/out/batching.json; prints the rows for bench/RESULTS.md. Flags: --threads N,
// --tokens N (per request, default 64), --n N (held-out items, default 100), --skip-heldout,
// --only balance|concurrent|arrival|heldout (one part), --max-rows N (loadModel's maxBatchRows:
// shorter forwards trade aggregate block throughput for a newcomer's wait; RESULTS.md).
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadModel, type GenerateRequest, type Model } from '../lib/model/model.js';
import { evalHeldout, readHeldout } from '../lib/eval.js';
import { bundledHeldoutDir, bundledModelDir } from '../lib/models.js';
import { nativeInfo, packageRoot } from '../lib/native/index.js';
import { QWEN25_05B, seedCheckpoint } from './seed.js';

const { values: v } = parseArgs({ options: {
  threads: { type: 'string' }, tokens: { type: 'string', default: '64' }, n: { type: 'string', default: '100' },
  'skip-heldout': { type: 'boolean', default: false },
  only: { type: 'string' }, 'max-rows': { type: 'string' },
} });
const threads = v.threads ? Number(v.threads) : undefined;
const tokens = Number(v.tokens);
const log = (s: string) => process.stdout.write(s + '\n');
const root = packageRoot();
const info = nativeInfo();
const machine = { cpu: cpus()[0]?.model ?? 'unknown', physicalCores: info.physicalCores, isa: info.isa, date: new Date().toISOString() };
log(`machine: ${machine.cpu}, ${machine.physicalCores} cores, ISA ${machine.isa}`);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const result: Record<string, unknown> = { machine };

const dir = await seedCheckpoint(join(root, '.cache', 'bench-qwen2.5-0.5b'), QWEN25_05B, log);
const model = await loadModel(dir, { threads, maxBatch: 8, memoryCheck: false, maxBatchRows: v['max-rows'] ? Number(v['max-rows']) : undefined });

const part = (name: string) => v.only === undefined || v.only === name;
// ---- balance point ------------------------------------------------------------------------
if (part('balance')) {
  const text = (model as unknown as { text: import('../lib/model/qwen2.js').Qwen2Text }).text;
  const q = (model as unknown as { queue: import('../lib/native/index.js').Queue }).queue;
  const Rs = [1, 2, 4, 8, 16, 32, 64];
  const pass = (R: number) => ({ slot: 0, ids: Int32Array.from({ length: R }, (_, i) => 1000 + i), pos0: 128, n: R, mask: 'causal' as const, logitsRows: Array.from({ length: R }, (_, i) => i) });
  const forward = async (R: number): Promise<number> => {
    const t0 = performance.now();
    // As the scheduler does: the rows' argmax natively, one small read (reading R × vocab
    // logits into JS would time the copy, not the forward).
    const l = text.forwardBatch([pass(R)])!;
    const outs = q.confidenceRemask(l, { temperature: 0, k: R, mode: 'static', confidence: 'modified' });
    await q.readMany([outs[0]]);
    for (const t of [l, ...outs]) t.dispose();
    return performance.now() - t0;
  };
  // Every size once to record its plan and warm the weights, then the sizes round-robin: a
  // machine that speeds up or slows down during the run moves every size alike (the first
  // size measured alone right after loading once read ×2 slow and skewed every ratio).
  for (const R of Rs) { await forward(R); await forward(R); }
  const times = new Map<number, number[]>(Rs.map((R) => [R, []]));
  for (let k = 0; k < 7; k++) for (const R of Rs) times.get(R)!.push(await forward(R));
  const rows: { R: number; ms: number; ratio: number }[] = [];
  for (const R of Rs) {
    const ms = median(times.get(R)!);
    rows.push({ R, ms, ratio: ms / (rows[0]?.ms ?? ms) });
  }
  const doubled = rows.find((r) => r.ratio >= 2)?.R ?? null;
  log(`balance point: forward ms by rows — ${rows.map((r) => `${r.R}: ${r.ms.toFixed(1)} (×${r.ratio.toFixed(2)})`).join(', ')}; time doubles at ${doubled ?? '> 64'} rows`);
  result.balance = { rows, doublesAt: doubled };
}

// ---- concurrent requests --------------------------------------------------------------------
async function aggregate(m: Model, req: GenerateRequest, n: number): Promise<{ tokS: number; tokens: number; ms: number }> {
  const prompts = Array.from({ length: n }, (_, i) => `Request ${i}: write a story about lighthouse number ${i * 7 + 3}.`);
  const t0 = performance.now();
  const rs = await Promise.all(prompts.map((prompt) => m.generate({ ...req, prompt })));
  const ms = performance.now() - t0;
  const t = rs.reduce((s, r) => s + r.stats.generatedTokens, 0);
  return { tokS: (t / ms) * 1000, tokens: t, ms };
}

const settings: [string, GenerateRequest, number[]][] = [
  ['ar', { mode: 'ar', maxTokens: tokens, stopTokens: [] }, [1, 4, 8]],
  ['block8 static 4', { mode: 'diffusion', blockSize: 8, steps: 4, maxTokens: tokens, stopTokens: [] }, [1, 4]],
  ['block8 dynamic 0.9', { mode: 'diffusion', blockSize: 8, remasking: 'dynamic', threshold: 0.9, maxTokens: tokens, stopTokens: [] }, [1, 4]],
];
const conc: Record<string, unknown>[] = [];
await model.generate({ prompt: 'warm up', maxTokens: 8, mode: 'ar' });
for (const [name, req, ns] of part('concurrent') ? settings : []) {
  // Round-robin repeats so a slow spell of the shared machine hits every count alike.
  const runs: Record<number, number[]> = {};
  for (let rep = 0; rep < 3; rep++) for (const n of ns) (runs[n] ??= []).push((await aggregate(model, req, n)).tokS);
  const base = median(runs[1]);
  for (const n of ns) {
    const tokS = median(runs[n]);
    conc.push({ setting: name, concurrent: n, tokensPerSecond: tokS, vsOne: tokS / base });
    log(`${name.padEnd(20)} ${String(n).padStart(2)} concurrent: ${tokS.toFixed(1).padStart(8)} tok/s aggregate  ×${(tokS / base).toFixed(2)} vs one`);
  }
}
if (conc.length) result.concurrent = conc;

// ---- time to first block of a request arriving while 3 others decode -------------------------
if (part('arrival')) {
  const req: GenerateRequest = { mode: 'diffusion', blockSize: 8, steps: 4, maxTokens: tokens, stopTokens: [] };
  const firstBlock = async (m: Model): Promise<number> => {
    const t0 = performance.now();
    const s = m.stream({ ...req, prompt: 'The newcomer asks a question of its own.' });
    for await (const ev of s) if (ev.type === 'block') { await s.return(undefined); break; }
    return performance.now() - t0;
  };
  // Two arrival phases, 7 repetitions each: right after the others' first blocks (they have just
  // started a batched forward: the longest wait, the figure the issue first measured), and at a
  // moment drawn uniformly from the next 0-120 ms (about two of their forwards; a fixed-seed
  // LCG, so runs repeat) — what a request arriving at a random time sees.
  let seed = 12345;
  const uniform = () => { seed = (Math.imul(seed, 1103515245) + 12345) >>> 0; return seed / 2 ** 32; };
  const unloaded: number[] = [], locked: number[] = [], random: number[] = [];
  for (let rep = 0; rep < 14; rep++) {
    const phaseLocked = rep % 2 === 0;
    unloaded.push(await firstBlock(model));
    // The others are decoding once each has its own first block out (before that they are
    // newcomers too, and share the newcomers' priority).
    const started: Promise<void>[] = [];
    const others = Array.from({ length: 3 }, (_, i) => {
      const s = model.stream({ ...req, maxTokens: tokens * 2, prompt: `Background request ${i}.` });
      let first!: () => void;
      started.push(new Promise<void>((r) => { first = r; }));
      return (async () => { for await (const ev of s) if (ev.type === 'block') first(); first(); })();
    });
    await Promise.all(started);
    if (!phaseLocked) await new Promise((r) => setTimeout(r, uniform() * 120));
    (phaseLocked ? locked : random).push(await firstBlock(model));
    await Promise.all(others);
  }
  const u = median(unloaded), l = median(locked), r = median(random);
  log(`time to first block: ${u.toFixed(0)} ms unloaded (p50 of ${unloaded.length}); while 3 others decode: ${l.toFixed(0)} ms arriving as they start a forward (×${(l / u).toFixed(2)}), ` +
    `${r.toFixed(0)} ms arriving at a random moment (×${(r / u).toFixed(2)}), p50 of ${locked.length} each`);
  result.arrival = { unloadedMs: u, loadedMs: l, ratio: l / u, randomArrivalMs: r, randomRatio: r / u };
}
model.dispose();

// ---- the held-out set, 8 concurrent clients -------------------------------------------------
if (!v['skip-heldout'] && part('heldout')) {
  const child = await loadModel(bundledModelDir('shapes-diffusionvl'), { threads, maxBatch: 8 });
  const set = await readHeldout(bundledHeldoutDir());
  const n = Math.min(Number(v.n), set.items.length);
  const req = { n, remasking: 'dynamic' as const, threshold: 0.9 };
  await evalHeldout(child, set.items, { ...req, n: 2 });
  const one = await evalHeldout(child, set.items, req);
  const eight = await evalHeldout(child, set.items, { ...req, concurrency: 8 });
  const same = eight.items.every((x, i) => x.got === one.items[i].got);
  log(`held-out (child dynamic 0.9, ${n} prompts): sequential ${one.tokensPerSecond.toFixed(0)} tok/s, 8 clients ${eight.tokensPerSecond.toFixed(0)} tok/s aggregate ` +
    `(×${(eight.tokensPerSecond / one.tokensPerSecond).toFixed(2)}); exact match ${(100 * one.exactMatch).toFixed(1)} % vs ${(100 * eight.exactMatch).toFixed(1)} %, answers ${same ? 'identical' : 'DIFFER'}`);
  result.heldout = { n, sequential: one.tokensPerSecond, concurrent8: eight.tokensPerSecond, exactMatch: [one.exactMatch, eight.exactMatch], identical: same };
  child.dispose();
  if (!same) process.exitCode = 3;
}

mkdirSync(join(root, 'bench', 'out'), { recursive: true });
writeFileSync(join(root, 'bench', 'out', v.only ? `batching-${v.only}.json` : 'batching.json'), JSON.stringify(result, null, 2));
log('\nwrote bench/out/batching.json');
