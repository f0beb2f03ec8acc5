// kernels.ts — CPU kernel bench (`npm run bench:kernels`; not a test). Prints a table and writes
// bench/out/kernels.json (git-ignored).
//
// 1. Read bandwidth: stream_read over a 1 GiB buffer, 1 thread and all physical cores — the
//    roofline every memory-bound kernel below is judged against (docs/performance.md §d.5).
// 2. Compute peaks: compute_peak (every kernel thread runs a register-only loop of the
//    instruction a matmul kind uses: f32 FMA, the bf16 kernel's, the q8 kernel's) — what the
//    GMAC/s of the matmuls below are judged against ("% peak").
// 3. matmul (y = x·Wᵀ), M = 1, 8 and 16 tokens (and 512 for prefill), on the Qwen2.5-0.5B
//    shapes W [4864, 896] (gate/up), [896, 4864] (down), [151936, 896] (lm_head) and the 7B FFN
//    W [18944, 3584], per kind: f32 and bf16 weights at precision 'exact', bf16 at 'fast', q8 at
//    'fast': ms per op, GB/s (W + x + y bytes per op ÷ time), % of the measured all-thread
//    bandwidth, GMAC/s and % of the kind's peak, and the M / M=1 time ratio. Because a shared
//    machine's bandwidth drifts from minute to minute, each weight matrix is also read with
//    stream_read right before its matmuls ("W read"), and "% of W read" compares the two
//    under the same load. The load average at start and end is recorded with the machine.
// 3. Attention: a placeholder section (see ATTENTION below) for whoever writes the attention op.
//
// Method: each measurement is a batch of the same op enqueued `reps` times (reps sized so a
// batch takes ≈ 0.2 s), timed around `await q.sync()`; one warm-up batch, then the median of
// ≥ 5 timed batches. Inputs are filled with normal-range values (no subnormals, no NaN).
//
// Options: --isa=<level> (default: the best this CPU has), --threads=<n> (default: physical
// cores), --runs=<n> (timed batches, default 5), --quick (smaller bandwidth buffer, no 7B
// shape, no prefill rows), --no-attention.
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Queue, nativeInfo, tensorFromArray, type Isa, type Tensor } from '../lib/native/index.js';

const args = new Map(process.argv.slice(2).map((a) => {
  const [k, v] = a.replace(/^--/, '').split('=');
  return [k, v ?? 'true'] as [string, string];
}));
const info = nativeInfo();
const isa = (args.get('isa') ?? info.isa) as Isa;
const threads = Number(args.get('threads') ?? info.physicalCores);
const runs = Math.max(5, Number(args.get('runs') ?? 5));
const quick = args.has('quick');
const BATCH_S = 0.2;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** Seconds per op of `enqueue` (which queues one op and returns its outputs): the median of
 * the timed batches; the fastest batch goes to `lastMin` (the least disturbed run on a shared
 * machine, recorded beside the median). */
let lastMin = 0;
async function timeOp(q: Queue, enqueue: () => Tensor[]): Promise<number> {
  const batch = async (reps: number): Promise<number> => {
    const outs: Tensor[] = [];
    const t0 = performance.now();
    for (let i = 0; i < reps; i++) outs.push(...enqueue());
    await q.sync();
    const dt = (performance.now() - t0) / 1000;
    for (const t of outs) t.dispose();
    return dt / reps;
  };
  const once = await batch(1);  // warm-up and size estimate
  const reps = Math.max(1, Math.min(1000, Math.round(BATCH_S / Math.max(once, 1e-6))));
  await batch(reps);
  const times: number[] = [];
  for (let r = 0; r < runs; r++) times.push(await batch(reps));
  lastMin = Math.min(...times);
  return median(times);
}

// ---- 1. read bandwidth ----------------------------------------------------------------------

interface Bandwidth { threads: number; bytes: number; ms: number; gbps: number; gbpsMax: number }

async function bandwidth(): Promise<Bandwidth[]> {
  const bytes = quick ? 256 * 2 ** 20 : 2 ** 30;
  // Fill with non-zero bytes so every page is a real, distinct page (not the shared zero page).
  const fill = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i += 4096) fill[i] = (i >>> 12) & 0xff;
  const buf = tensorFromArray('u8', [bytes], fill);
  const out: Bandwidth[] = [];
  for (const th of [...new Set([1, threads])]) {
    const q = new Queue({ isa, threads: th });
    const s = await timeOp(q, () => [q.streamRead(buf, 1)]);
    out.push({ threads: th, bytes, ms: s * 1e3, gbps: bytes / s / 1e9, gbpsMax: bytes / lastMin / 1e9 });
    q.dispose();
  }
  buf.dispose();
  return out;
}

// ---- 2. matmul --------------------------------------------------------------------------------

interface Shape { name: string; N: number; K: number }
const SHAPES: Shape[] = [
  { name: '0.5B gate/up', N: 4864, K: 896 },
  { name: '0.5B down', N: 896, K: 4864 },
  { name: '0.5B lm_head', N: 151936, K: 896 },
  { name: '7B FFN', N: 18944, K: 3584 },
];

/** A weight dtype with the precision it runs at. */
// 'bf16p fast' / 'q8p fast': the same weights in the panel layouts loadModel uses where the
// level has the panel kernels (csrc/core/dtype.h "bf16p layout", "q8p layout"); 'bf16 fast' and
// 'q8 fast' are the row-layout kernels.
type Kind = 'f32 exact' | 'bf16 exact' | 'bf16 fast' | 'bf16p fast' | 'q8 fast' | 'q8p fast';
const KINDS: Kind[] = ['bf16 exact', 'bf16 fast', 'bf16p fast', 'q8 fast', 'q8p fast', 'f32 exact'];
const peakKind = (k: Kind): 'f32' | 'bf16' | 'q8' => (k.startsWith('q8') ? 'q8' : k.startsWith('bf16') && k.endsWith('fast') ? 'bf16' : 'f32');

interface MatmulRow {
  shape: string; N: number; K: number; kind: Kind; M: number;
  ms: number; msMin: number; gbps: number; pctBw: number; gmacs: number;
  /** GMAC/s as % of the measured peak of the kind's instruction (compute_peak). */
  pctPeak: number;
  /** stream_read of the same W just before, GB/s, and this row's GB/s as % of it. */
  wReadGbps: number; pctWRead: number;
  /** This row's time ÷ the M = 1 row's of the same shape and kind. */
  ratioToM1?: number;
}

function weights(wdtype: 'bf16' | 'f32', N: number, K: number): Tensor {
  const n = N * K;
  if (wdtype === 'bf16') {
    // bf16 patterns 0x3c00..0x3fff and their negatives: |w| in [2^-7, 2), never subnormal.
    const a = new Uint16Array(n);
    for (let i = 0; i < n; i++) a[i] = 0x3c00 | (Math.imul(i, 0x9e3779b1) >>> 22) | ((i & 1) << 15);
    return tensorFromArray('bf16', [N, K], a);
  }
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = ((Math.imul(i, 0x9e3779b1) >>> 20) - 2048) / 4096 + 1e-3;
  return tensorFromArray('f32', [N, K], a);
}

async function matmuls(bw: number, peaks: Record<string, number>): Promise<MatmulRow[]> {
  const rows: MatmulRow[] = [];
  const queues = { exact: new Queue({ isa, threads, precision: 'exact' }), fast: new Queue({ isa, threads, precision: 'fast' }) };
  for (const s of SHAPES) {
    if (quick && s.K > 2000) continue;
    const w16 = weights('bf16', s.N, s.K);
    const w32 = weights('f32', s.N, s.K);
    const wq = queues.fast.convert(w16, 'q8');
    const packed = queues.fast.kernels?.bf16Packed === true;
    const wp = packed ? queues.fast.convert(w16, 'bf16p') : null;
    const q8packed = queues.fast.kernels?.q8Packed === true;
    const wqp = q8packed ? queues.fast.convert(wq, 'q8p') : null;
    await queues.fast.sync();
    const wOf = (k: Kind) => (k === 'q8p fast' ? wqp! : k.startsWith('q8') ? wq : k === 'bf16p fast' ? wp! : k.startsWith('bf16') ? w16 : w32);
    for (const kind of KINDS) {
      if ((kind === 'bf16p fast' && !packed) || (kind === 'q8p fast' && !q8packed)) continue;
      const w = wOf(kind);
      const q = kind.endsWith('fast') ? queues.fast : queues.exact;
      const wRead = w.nbytes / (await timeOp(q, () => [q.streamRead(w, 1)])) / 1e9;
      let t1 = 0;
      const Ms = quick || s.N > 100000 ? [1, 8, 16] : [1, 8, 16, 512];
      for (const M of Ms) {
        if (kind === 'f32 exact' && M > 16) continue;
        const xs = new Float32Array(M * s.K);
        for (let i = 0; i < xs.length; i++) xs[i] = Math.sin(i) + 0.5;
        const x = tensorFromArray('f32', [M, s.K], xs);
        const sec = await timeOp(q, () => [q.matmul(x, w)]);
        x.dispose();
        const bytes = w.nbytes + M * s.K * 4 + M * s.N * 4;
        const gmacs = (M * s.N * s.K) / sec / 1e9;
        const row: MatmulRow = {
          shape: s.name, N: s.N, K: s.K, kind, M, ms: sec * 1e3, msMin: lastMin * 1e3, gbps: bytes / sec / 1e9,
          pctBw: (100 * bytes) / sec / 1e9 / bw, gmacs, pctPeak: (100 * gmacs) / peaks[peakKind(kind)],
          wReadGbps: wRead, pctWRead: (100 * bytes) / sec / 1e9 / wRead,
        };
        if (M === 1) t1 = sec;
        else row.ratioToM1 = sec / t1;
        rows.push(row);
        print(row);
      }
    }
    for (const t of [w16, w32, wq, wp, wqp]) t?.dispose();
  }
  queues.exact.dispose(); queues.fast.dispose();
  return rows;
}

function print(r: MatmulRow): void {
  const cells = [
    r.shape.padEnd(14), `W[${r.N}, ${r.K}]`.padEnd(15), r.kind.padEnd(10), `M=${r.M}`.padEnd(6),
    `${r.ms.toFixed(3)} ms`.padStart(11), `(min ${r.msMin.toFixed(3)})`.padStart(13), `${r.gbps.toFixed(1)} GB/s`.padStart(12), `${r.pctBw.toFixed(0)}%`.padStart(5),
    `${r.gmacs.toFixed(1)} GMAC/s`.padStart(14), `${r.pctPeak.toFixed(0)}% peak`.padStart(10), `W read ${r.wReadGbps.toFixed(1)} GB/s`.padStart(19),
    `${r.pctWRead.toFixed(0)}%`.padStart(5), r.ratioToM1 ? `M${r.M}/M1 ${r.ratioToM1.toFixed(2)}×` : '',
  ];
  console.log(cells.join(' '));
}

// ---- compute peaks ------------------------------------------------------------------------------

async function computePeaks(): Promise<Record<string, number>> {
  const q = new Queue({ isa, threads });
  const out: Record<string, number> = {};
  for (const kind of ['f32', 'bf16', 'q8'] as const) {
    const gmacs: number[] = [];
    for (let r = 0; r < runs; r++) {
      const [macs, sec] = await q.readF32(q.computePeak(kind, 2_000_000));
      gmacs.push(macs / sec / 1e9);
    }
    out[kind] = median(gmacs);
    console.log(`compute peak ${kind} (${threads} threads, ${kind === 'f32' ? 'FMA' : kind === 'bf16' ? 'the bf16 kernel\'s instruction' : 'the q8 kernel\'s instruction'}): ${out[kind].toFixed(1)} GMAC/s median of ${runs} (best ${Math.max(...gmacs).toFixed(1)})`);
  }
  q.dispose();
  return out;
}

// ---- 3. attention -----------------------------------------------------------------------------
// Decode step (8 queries against a cache of 1k/4k positions) and a block-causal prefill, on the
// 0.5B and 7B head layouts: bench/attention.ts (the attention op's own bench) does the timing.
async function attention(): Promise<unknown[] | null> {
  const { benchAttention } = await import('./attention.js');
  const res = (await benchAttention({ isa, threads, runs })) as { rows?: Record<string, number | string>[] };
  for (const r of res.rows ?? []) {
    console.log(`attention ${r.model} ${r.pass} Tq ${r.Tq} ctx ${r.ctx} kv ${r.kv}: ${Number(r.ms).toFixed(3)} ms, ${Number(r.gflops).toFixed(1)} GFLOP/s`);
  }
  return res.rows ?? null;
}

// ---- main -------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const machine = {
    cpu: cpus()[0]?.model ?? 'unknown', logicalCpus: cpus().length, physicalCores: info.physicalCores,
    memGiB: Math.round(totalmem() / 2 ** 30), isa, isaDetected: info.isaDetected, isaLevels: info.isaLevels,
    threads, node: process.version, date: new Date().toISOString(), build: info.build,
    loadavgStart: loadavg(), loadavgEnd: [] as number[],
  };
  console.log(`diffusionvl kernel bench — ${machine.cpu}, ${machine.physicalCores} cores, isa ${isa} (detected ${info.isaDetected}), ${threads} threads`);
  const bw = await bandwidth();
  for (const b of bw) console.log(`read bandwidth, ${b.threads} thread(s): ${b.gbps.toFixed(1)} GB/s median, ${b.gbpsMax.toFixed(1)} best batch (${(b.bytes / 2 ** 30).toFixed(2)} GiB in ${b.ms.toFixed(2)} ms)`);
  const bwAll = bw[bw.length - 1].gbps;
  const peaks = await computePeaks();
  const mm = await matmuls(bwAll, peaks);
  const att = args.has('no-attention') ? null : await attention();
  machine.loadavgEnd = loadavg();
  console.log(`load average: start ${machine.loadavgStart.map((v) => v.toFixed(2)).join(' ')}, end ${machine.loadavgEnd.map((v) => v.toFixed(2)).join(' ')}`);
  const out = { machine, method: { batchSeconds: BATCH_S, timedRuns: runs, statistic: 'median' }, bandwidth: bw, peaks, matmul: mm, attention: att };
  const file = join(dirname(fileURLToPath(import.meta.url)), 'out', 'kernels.json');
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, JSON.stringify(out, null, 2) + '\n');
  console.log(`wrote ${file}`);
}

await main();
