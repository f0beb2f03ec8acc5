// rss.ts — `npm run bench:rss`: does memory level off under repetition? Resident set size
// (and the JS heap) sampled while the bundled DiffusionVL model is loaded and disposed 200
// times, then while one loaded model runs 1000 generations (text and image prompts, streamed
// and not, some abandoned with return()). A leak shows as RSS that keeps climbing after the
// first tens of iterations; a healthy run levels off. Writes bench/out/rss.json.
//
//   npm run bench:rss [-- --cycles 200 --generations 1000 --threads 1]
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadModel } from '../lib/index.js';
import { packageRoot } from '../lib/native/index.js';

const { values: v } = parseArgs({ options: { cycles: { type: 'string', default: '200' }, generations: { type: 'string', default: '1000' }, threads: { type: 'string', default: '1' } } });
const cycles = Number(v.cycles), generations = Number(v.generations), threads = Number(v.threads);
const root = packageRoot();
const photo = join(root, 'examples', 'two-shapes.png');
const mib = (b: number) => b / 2 ** 20;
const log = (s: string) => process.stderr.write(s + '\n');

interface Sample { i: number; rssMiB: number; heapMiB: number }
const sample = (i: number): Sample => ({ i, rssMiB: mib(process.memoryUsage.rss()), heapMiB: mib(process.memoryUsage().heapUsed) });

/** Samples at these iterations: the first few, then evenly spaced. */
function marks(n: number): Set<number> {
  const s = new Set([0, 1, 2, 5, 10, 20, 50]);
  for (let k = 1; k <= 10; k++) s.add(Math.round((n * k) / 10));
  return new Set([...s].filter((x) => x <= n));
}

/** Growth after the warm-up: RSS at the end minus at 10 % of the run (MiB). */
const growth = (xs: Sample[], n: number) => xs.at(-1)!.rssMiB - (xs.find((s) => s.i >= n / 10) ?? xs[0]).rssMiB;

const base = sample(0);
log(`baseline RSS ${base.rssMiB.toFixed(1)} MiB`);

// 1. load + dispose cycles
const loadSamples: Sample[] = [];
const lm = marks(cycles);
const tLoad = performance.now();
for (let i = 1; i <= cycles; i++) {
  const m = await loadModel(undefined, { threads });
  await m.generate({ prompt: 'Hi', maxTokens: 8 });
  m.dispose();
  if (lm.has(i)) { loadSamples.push(sample(i)); log(`load/dispose ${i}: RSS ${loadSamples.at(-1)!.rssMiB.toFixed(1)} MiB`); }
}
const loadMs = performance.now() - tLoad;

// 2. generations on one model
const model = await loadModel(undefined, { threads });
const genSamples: Sample[] = [];
const gm = marks(generations);
const tGen = performance.now();
let tokens = 0;
for (let i = 1; i <= generations; i++) {
  const kind = i % 4;
  if (kind === 0) {
    const r = await model.generate({ messages: [{ role: 'user', content: [{ type: 'image', image: photo }, { type: 'text', text: 'Describe the image.' }] }], maxTokens: 32 });
    tokens += r.stats.generatedTokens;
  } else if (kind === 1) {
    const r = await model.generate({ prompt: 'Reverse the letters: a b c d e', maxTokens: 32, remasking: 'dynamic', threshold: 0.9 });
    tokens += r.stats.generatedTokens;
  } else if (kind === 2) {
    for await (const ev of model.stream({ prompt: 'How many letters are in: a b c?', maxTokens: 32 })) if (ev.type === 'done') tokens += ev.result.stats.generatedTokens;
  } else {
    const it = model.stream({ prompt: 'Reverse the letters: x y z', maxTokens: 64, stopTokens: [] });
    await it.next();
    await it.return();   // abandoned after the first block
  }
  if (gm.has(i)) { genSamples.push(sample(i)); log(`generation ${i}: RSS ${genSamples.at(-1)!.rssMiB.toFixed(1)} MiB`); }
}
const genMs = performance.now() - tGen;
model.dispose();

const result = {
  machine: { cpu: cpus()[0]?.model, cores: cpus().length, memGiB: totalmem() / 2 ** 30, node: process.version, date: new Date().toISOString() },
  threads, baselineRssMiB: base.rssMiB,
  loadDispose: { cycles, ms: loadMs, samples: loadSamples, growthAfterWarmupMiB: growth(loadSamples, cycles) },
  generations: { n: generations, tokens, ms: genMs, samples: genSamples, growthAfterWarmupMiB: growth(genSamples, generations) },
};
mkdirSync(join(root, 'bench', 'out'), { recursive: true });
writeFileSync(join(root, 'bench', 'out', 'rss.json'), JSON.stringify(result, null, 2));
const row = (s: Sample) => `| ${s.i} | ${s.rssMiB.toFixed(1)} | ${s.heapMiB.toFixed(1)} |`;
process.stdout.write([
  `load/dispose × ${cycles} (${(loadMs / 1000).toFixed(1)} s): RSS growth after the first 10 %: ${result.loadDispose.growthAfterWarmupMiB.toFixed(1)} MiB`,
  '| cycle | RSS MiB | heap MiB |', '|---|---|---|', ...loadSamples.map(row), '',
  `generations × ${generations} (${(genMs / 1000).toFixed(1)} s, ${tokens} tokens): RSS growth after the first 10 %: ${result.generations.growthAfterWarmupMiB.toFixed(1)} MiB`,
  '| generation | RSS MiB | heap MiB |', '|---|---|---|', ...genSamples.map(row), '',
].join('\n'));
