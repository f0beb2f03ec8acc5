// run.ts — `npm run bench`: the model and decoding benchmark on a random checkpoint with
// Qwen2.5-0.5B's shapes (bf16, generated once into .cache/), all figures from one run, for three
// variants of the same weights: precision 'exact' (bf16, the reference kernels), 'fast' (bf16,
// bf16-rounded activations) and q8 ('fast': int8 weights and activations):
//
//   machine   read bandwidth (stream_read probe), compute peaks (compute_peak), CPU ISA, threads
//   model     load GB/s and peak RSS; per variant prefill tokens/s for a 512-token prompt and its
//             GMAC/s as % of the peak of the kernel's instruction; AR decode tokens/s for 128
//             tokens and as % of the memory roofline (the variant's weight bytes per forward ÷
//             measured bandwidth)
//   decoding  per variant AR vs block-8 static with steps 8, 4, 2 (merged and separate commit):
//             forwards per token, ms per forward, tokens/s, ratio to AR, block forward / AR
//             forward cost; the variants run round-robin (lib/cli/bench.ts benchModels), so the
//             load of a shared machine hits all of them alike
//
// Writes bench/out/bench.json; the summary for bench/RESULTS.md is printed. Flags: --max-tokens N,
// --threads N, --repeat N, --skip-prefill, --variants exact,fast,q8.
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadModel } from '../lib/model/model.js';
import { loadWeights } from '../lib/weights/load.js';
import { benchModels, benchTable, type BenchVariant } from '../lib/cli/bench.js';
import { Queue, nativeInfo, packageRoot, tensorFromArray } from '../lib/native/index.js';
import { QWEN25_05B, seedCheckpoint } from './seed.js';

const { values: v } = parseArgs({ options: {
  'max-tokens': { type: 'string', default: '128' }, threads: { type: 'string' }, repeat: { type: 'string', default: '3' },
  'skip-prefill': { type: 'boolean', default: false }, variants: { type: 'string', default: 'exact,fast,q8' },
} });
const VARIANTS: Record<string, BenchVariant> = {
  exact: { name: 'exact', precision: 'exact' }, fast: { name: 'fast', precision: 'fast' }, q8: { name: 'q8', precision: 'fast', dtype: 'q8' },
};
const variants = v.variants!.split(',').map((n) => {
  if (!VARIANTS[n]) throw new Error(`--variants: unknown '${n}' (exact, fast, q8)`);
  return VARIANTS[n];
});
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
const machine = { cpu: cpus()[0]?.model ?? 'unknown', logicalCpus: cpus().length, physicalCores: info.physicalCores, isa: info.isa, date: new Date().toISOString(), loadavgStart: loadavg() };
log(`machine: ${machine.cpu}, ${machine.physicalCores} cores, ISA ${machine.isa}, load average ${machine.loadavgStart.map((x) => x.toFixed(2)).join(' ')}`);
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
const model = await loadModel(dir, { threads });   // the default: precision 'fast', bf16 as stored
const loadMs = performance.now() - tLoad;
const rssPeak = process.resourceUsage().maxRSS * 1024;
const weightBytes = model.weightBytes;
log(`loadModel: ${loadMs.toFixed(0)} ms in all (tokenizer included), peak RSS ${(rssPeak / 1e9).toFixed(2)} GB (baseline ${(rss0 / 1e9).toFixed(2)} GB; bar: baseline + weights + 10% + 100 MB = ${((weightBytes * 1.1 + 100e6 + rss0) / 1e9).toFixed(2)} GB)`);

// Compute peaks of the kernels' instructions on all threads (median of 5 runs of ≈ 0.1 s).
const peaks: Record<string, number> = {};
{
  const q = new Queue({ threads });
  for (const kind of ['f32', 'bf16', 'q8'] as const) {
    const g: number[] = [];
    for (let i = 0; i < 5; i++) { const [macs, sec] = await q.readF32(q.computePeak(kind, 2_000_000)); g.push(macs / sec / 1e9); }
    g.sort((a, b) => a - b);
    peaks[kind] = g[2];
  }
  q.dispose();
  log(`compute peaks (${threads ?? info.physicalCores} threads): f32 FMA ${peaks.f32.toFixed(0)}, bf16 kernel ${peaks.bf16.toFixed(0)}, q8 kernel ${peaks.q8.toFixed(0)} GMAC/s`);
}
const peakOf = (vr: BenchVariant) => (vr.dtype === 'q8' ? peaks.q8 : vr.precision === 'fast' && info.isa === 'avx512_bf16' ? peaks.bf16 : peaks.f32);

// Multiply-adds of a 512-token causal prefill: every layer matrix once per token, attention's two
// products over the causal triangle, the lm_head for the last row only.
const S = QWEN25_05B, hd = S.hidden / S.heads;
const layerParams = S.hidden * S.hidden * 2 + 2 * S.hidden * S.kvHeads * hd + 3 * S.hidden * S.intermediate;
const prefillMacs = 512 * S.layers * layerParams + S.layers * S.heads * hd * 512 * 513 + S.vocab * S.hidden;

const prefill: Record<string, { tokens: number; ms: number; tokensPerSecond: number; gmacs: number; pctPeak: number }> = {};
if (!v['skip-prefill']) {
  const ids = Array.from({ length: 512 }, (_, i) => 1000 + ((i * 7919) % 50000));
  for (const vr of variants) {
    const m = await loadModel(dir, { threads, precision: vr.precision, dtype: vr.dtype });
    // Warm-up on the same 512 tokens: it records the pass's plan and faults its arena in (≈ 40 MB
    // of activations at this size), one-time costs that are not the prefill's throughput.
    await m.generate({ promptIds: ids, mode: 'ar', maxTokens: 1 });
    const ms: number[] = [];
    for (let i = 0; i < 5; i++) ms.push((await m.generate({ promptIds: ids, mode: 'ar', maxTokens: 1 })).stats.prefillMs);
    m.dispose();
    ms.sort((a, b) => a - b);
    const gmacs = prefillMacs / (ms[2] / 1000) / 1e9;
    prefill[vr.name] = { tokens: 512, ms: ms[2], tokensPerSecond: 512 / (ms[2] / 1000), gmacs, pctPeak: (100 * gmacs) / peakOf(vr) };
    log(`prefill ${vr.name}: 512 tokens in ${ms[2].toFixed(0)} ms (${prefill[vr.name].tokensPerSecond.toFixed(0)} tok/s, ${gmacs.toFixed(0)} GMAC/s = ${prefill[vr.name].pctPeak.toFixed(0)}% of the kernel's peak; median of 5, ${ms[0].toFixed(0)}-${ms[4].toFixed(0)} ms)`);
  }
}
// The bandwidth probe runs after the load so its 512 MB buffer does not count in the load's RSS.
const bw = await readBandwidth(threads);
log(`read bandwidth: ${bw.toFixed(1)} GB/s (stream_read, ${threads ?? info.physicalCores} threads)`);
model.dispose();

const results = await benchModels(dir, variants, { maxTokens, steps: [8, 4, 2], threads, repeat: Number(v.repeat), log });
for (const r of results) log(`-- ${r.variant}\n${benchTable(r)}`);
const arExact = results.find((r) => r.variant === 'exact')?.rows[0];
const summary = results.map((r) => {
  const row = (name: string) => r.rows.find((x) => x.setting === name)!;
  const ar = r.rows[0];
  // An AR forward streams every weight once (embedding rows are gathered; the tied lm_head
  // reads the whole table).
  const rooflineMs = (r.weightBytes / 1e9 / bw) * 1000;
  return {
    variant: r.variant, kernels: r.kernels, weightBytes: r.weightBytes,
    arTokensPerSecond: ar.tokensPerSecond, arMsPerForward: ar.msPerForward, rooflineMs, pctRoofline: (100 * rooflineMs) / ar.msPerForward,
    // Every forward of the separate-commit run is an 8-token block (denoising steps and commit).
    block8ForwardVsAr: row('block8 steps 8 separate commit').forwardCostVsAr,
    static4MergedVsAr: row('block8 steps 4 merged').speedupVsAr,
    static8MergedVsAr: row('block8 steps 8 merged').speedupVsAr,
    static4MergedVsExactAr: arExact ? row('block8 steps 4 merged').tokensPerSecond / arExact.tokensPerSecond : undefined,
    prefill: prefill[r.variant],
  };
});
log('\nvariant | AR tok/s | ms/fwd | % roofline | block-8 fwd / AR fwd | static 4 merged vs AR | static 8 merged vs AR | static 4 vs exact AR | prefill tok/s (% peak)');
for (const x of summary) {
  log(`${x.variant} | ${x.arTokensPerSecond.toFixed(1)} | ${x.arMsPerForward.toFixed(2)} | ${x.pctRoofline.toFixed(0)}% | ${x.block8ForwardVsAr.toFixed(2)}× | ` +
    `${x.static4MergedVsAr.toFixed(2)}× | ${x.static8MergedVsAr.toFixed(2)}× | ${x.static4MergedVsExactAr?.toFixed(2) ?? '-'}× | ` +
    `${x.prefill ? `${x.prefill.tokensPerSecond.toFixed(0)} (${x.prefill.pctPeak.toFixed(0)}%)` : '-'}`);
}

const result = { machine: { ...machine, loadavgEnd: loadavg() }, readBandwidthGBs: bw, peaksGmacs: peaks, model: { shape: QWEN25_05B, weightBytes, weightsLoad, loadModelMs: loadMs, peakRssBytes: rssPeak, baselineRssBytes: rss0 }, prefillMacs, summary, decoding: results };
mkdirSync(join(root, 'bench', 'out'), { recursive: true });
writeFileSync(join(root, 'bench', 'out', 'bench.json'), JSON.stringify(result, null, 2));
log(`\nwrote bench/out/bench.json`);
