// run.ts — `npm run bench`: the model and decoding benchmark on a random checkpoint with
// Qwen2.5-0.5B's shapes (bf16, generated once into .cache/), all figures from one run:
//
//   machine   read bandwidth (stream_read probe), CPU ISA level, threads
//   model     load GB/s and peak RSS; prefill tokens/s for a 512-token prompt; AR decode
//             tokens/s for 128 tokens and as % of the memory roofline (weight bytes per
//             forward ÷ measured bandwidth)
//   decoding  AR vs block-8 static with steps 8, 4, 2 (merged and separate commit): forwards per
//             token, ms per forward, tokens/s, ratio to AR, block forward / AR forward cost
//
// Writes bench/out/bench.json; the table for bench/RESULTS.md is printed. Flags: --max-tokens N,
// --threads N, --repeat N, --skip-prefill.
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadModel } from '../lib/model/model.js';
import { loadWeights } from '../lib/weights/load.js';
import { benchModel, benchTable } from '../lib/cli/bench.js';
import { Queue, nativeInfo, packageRoot, tensorFromArray } from '../lib/native/index.js';
import { QWEN25_05B, seedCheckpoint } from './seed.js';

const { values: v } = parseArgs({ options: {
  'max-tokens': { type: 'string', default: '128' }, threads: { type: 'string' }, repeat: { type: 'string', default: '3' },
  'skip-prefill': { type: 'boolean', default: false },
} });
const maxTokens = Number(v['max-tokens']);
const threads = v.threads ? Number(v.threads) : undefined;
const log = (s: string) => process.stdout.write(s + '\n');
const root = packageRoot();

async function readBandwidth(nthreads: number | undefined): Promise<number> {
  const bytes = 512 << 20;
  const fill = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i += 4096) fill[i] = 1;   // touch every page (no shared zero page)
  const q = new Queue({ threads: nthreads });
  const buf = tensorFromArray('u8', [bytes], fill);
  const times: number[] = [];
  for (let i = 0; i < 7; i++) {
    const t0 = performance.now();
    q.streamRead(buf, 4).dispose();
    await q.sync();
    times.push(performance.now() - t0);
  }
  buf.dispose(); q.dispose();
  times.sort((a, b) => a - b);
  return (4 * bytes) / (times[3] / 1000) / 1e9;
}

const info = nativeInfo();
const machine = { cpu: cpus()[0]?.model ?? 'unknown', logicalCpus: cpus().length, physicalCores: info.physicalCores, isa: info.isa, date: new Date().toISOString() };
log(`machine: ${machine.cpu}, ${machine.physicalCores} cores, ISA ${machine.isa}`);
const dir = await seedCheckpoint(join(root, '.cache', 'bench-qwen2.5-0.5b'), QWEN25_05B, log);
const weightsLoad: { pass: string; bytes: number; ms: number; gbs: number }[] = [];

// Model: the weights alone (GB/s of loadWeights into native tensors), then the whole loadModel
// (config, the 151k-entry tokenizer, weights, KV cache) for the peak RSS.
const rss0 = process.memoryUsage().rss;
// Twice: the first load in a process pays for first-touch page faults (on a VM, the host backs
// each new page), the second shows the loader itself; the file is in the page cache for both.
for (const pass of ['first', 'second'] as const) {
  const q = new Queue({ threads });
  const t = performance.now();
  const w = await loadWeights(dir, q);
  await q.sync();
  const ms = performance.now() - t;
  log(`weights (${pass} load in this process): ${(w.bytes / 1e9).toFixed(2)} GB in ${ms.toFixed(0)} ms (${(w.bytes / 1e6 / ms).toFixed(2)} GB/s)`);
  weightsLoad.push({ pass, bytes: w.bytes, ms, gbs: w.bytes / 1e6 / ms });
  w.dispose(); q.dispose();
}
const tLoad = performance.now();
const model = await loadModel(dir, { threads });
const loadMs = performance.now() - tLoad;
const rssPeak = process.resourceUsage().maxRSS * 1024;
const weightBytes = model.weightBytes;
log(`loadModel: ${loadMs.toFixed(0)} ms in all (tokenizer included), peak RSS ${(rssPeak / 1e9).toFixed(2)} GB (baseline ${(rss0 / 1e9).toFixed(2)} GB; bar: baseline + weights + 10% + 100 MB = ${((weightBytes * 1.1 + 100e6 + rss0) / 1e9).toFixed(2)} GB)`);

let prefill: { tokens: number; ms: number; tokensPerSecond: number } | null = null;
if (!v['skip-prefill']) {
  const ids = Array.from({ length: 512 }, (_, i) => 1000 + ((i * 7919) % 50000));
  await model.generate({ promptIds: ids.slice(0, 64), mode: 'ar', maxTokens: 1 });   // warm-up
  const r = await model.generate({ promptIds: ids, mode: 'ar', maxTokens: 1 });
  prefill = { tokens: 512, ms: r.stats.prefillMs, tokensPerSecond: 512 / (r.stats.prefillMs / 1000) };
  log(`prefill: 512 tokens in ${prefill.ms.toFixed(0)} ms (${prefill.tokensPerSecond.toFixed(0)} tok/s, causal)`);
}
// The bandwidth probe runs after the load so its 512 MB buffer does not count in the load's RSS.
const bw = await readBandwidth(threads);
log(`read bandwidth: ${bw.toFixed(1)} GB/s (stream_read, ${threads ?? info.physicalCores} threads)`);
// Bytes streamed per AR forward: every weight matrix once (embedding rows are gathered, the
// tied lm_head reads the whole table).
const bytesPerForward = weightBytes;
model.dispose();

const dec = await benchModel(dir, { maxTokens, steps: [8, 4, 2], threads, repeat: Number(v.repeat), log });
log(benchTable(dec));
const ar = dec.rows[0];
const rooflineMs = (bytesPerForward / 1e9 / bw) * 1000;
log(`AR forward ${ar.msPerForward.toFixed(2)} ms vs roofline ${rooflineMs.toFixed(2)} ms (${bytesPerForward / 1e9 > 0 ? ((rooflineMs / ar.msPerForward) * 100).toFixed(0) : '?'}% of the memory roofline)`);

const result = { machine, readBandwidthGBs: bw, model: { shape: QWEN25_05B, weightBytes, weightsLoad, loadModelMs: loadMs, peakRssBytes: rssPeak, baselineRssBytes: rss0 }, prefill, roofline: { bytesPerForward, rooflineMs, arForwardMs: ar.msPerForward, percent: (rooflineMs / ar.msPerForward) * 100 }, decoding: dec.rows };
mkdirSync(join(root, 'bench', 'out'), { recursive: true });
writeFileSync(join(root, 'bench', 'out', 'bench.json'), JSON.stringify(result, null, 2));
log(`\nwrote bench/out/bench.json`);
