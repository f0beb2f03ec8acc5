// attention.ts — CPU attention timing for the kernel bench (bench/kernels.ts calls
// benchAttention(); `npx tsx bench/attention.ts` runs it alone and prints a table). Not a test.
//
// The decode step of the block decoder (docs §5.6, docs/performance.md §c1): 8 query rows (one block)
// against a cache of ctx = 1k and 4k positions, mask 'full' (cache + own block, no masking
// needed), for the Qwen2.5-0.5B layout (14 heads, 2 kv heads, hd 64; the brief's target) and the
// 7B layout (28 heads, 4 kv heads, hd 128), with f32 and bf16 caches; plus one prefill row (a
// 512-token prompt, block-causal mask, 0.5B layout, bf16 cache). Per row: ms per call,
// the K/V bytes streamed per call ÷ time (GB/s), and GFLOP/s (2 matmuls: 4·Tq·nh·ctx·hd flops).
//
// Method (as bench/kernels.ts): a batch of the same op enqueued `reps` times (≈ 0.2 s per batch),
// timed around `await q.sync()`; one warm-up batch, then the median of `runs` timed batches.
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Queue, nativeInfo, tensorFromArray, type Isa, type Tensor } from '../lib/native/index.js';
import { normal, rng, toBf16 } from '../test/helpers/random.js';

export interface AttentionBenchOptions {
  isa?: Isa;
  threads?: number;
  runs?: number;
  contexts?: number[];
}

export interface AttentionBenchRow {
  model: string; pass: 'decode' | 'prefill'; nh: number; nkv: number; hd: number; Tq: number; ctx: number; kv: 'f32' | 'bf16';
  ms: number; kvGBs: number; gflops: number;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

async function timeOp(q: Queue, enqueue: () => Tensor, runs: number): Promise<number> {
  const batch = async (reps: number): Promise<number> => {
    const outs: Tensor[] = [];
    const t0 = performance.now();
    for (let i = 0; i < reps; i++) outs.push(enqueue());
    await q.sync();
    const dt = (performance.now() - t0) / 1000;
    for (const t of outs) t.dispose();
    return dt / reps;
  };
  const once = await batch(1);
  const reps = Math.max(1, Math.min(1000, Math.round(0.2 / Math.max(once, 1e-6))));
  await batch(reps);
  const times: number[] = [];
  for (let r = 0; r < runs; r++) times.push(await batch(reps));
  return median(times);
}

export async function benchAttention(opts: AttentionBenchOptions = {}): Promise<object> {
  const info = nativeInfo();
  const isa = opts.isa ?? info.isa, threads = opts.threads ?? info.physicalCores, runs = Math.max(3, opts.runs ?? 5);
  const contexts = opts.contexts ?? [1024, 4096];
  const q = new Queue({ isa, threads });
  const r = rng(42);
  const rows: AttentionBenchRow[] = [];
  const layouts = [
    { model: 'Qwen2.5-0.5B', nh: 14, nkv: 2, hd: 64 },
    { model: 'Qwen2.5-7B', nh: 28, nkv: 4, hd: 128 },
  ];
  const Tq = 8;
  for (const L of layouts)
    for (const ctx of contexts)
      for (const kv of ['f32', 'bf16'] as const) {
        const n = L.nkv * ctx * L.hd;
        const mk = () => (kv === 'f32' ? tensorFromArray('f32', [L.nkv, ctx, L.hd], normal(r, n)) : tensorFromArray('bf16', [L.nkv, ctx, L.hd], toBf16(normal(r, n))));
        const k = mk(), v = mk();
        const qt = tensorFromArray('f32', [Tq, L.nh, L.hd], normal(r, Tq * L.nh * L.hd));
        const s = await timeOp(q, () => q.attention(qt, k, v, { kvLen: ctx, qPos0: ctx - Tq, mask: 'full' }), runs);
        const bytes = 2 * n * (kv === 'f32' ? 4 : 2);
        rows.push({ ...L, pass: 'decode', Tq, ctx, kv, ms: s * 1e3, kvGBs: bytes / s / 1e9, gflops: (4 * Tq * L.nh * ctx * L.hd) / s / 1e9 });
        k.dispose(); v.dispose(); qt.dispose();
      }
  // Prefill of a 512-token prompt (block-causal, bs 8): every query row attends to ≈ half the
  // prompt on average, so the useful flops are ≈ 4·T·nh·(T/2)·hd.
  {
    const L = layouts[0], T = 512, n = L.nkv * T * L.hd;
    const k = tensorFromArray('bf16', [L.nkv, T, L.hd], toBf16(normal(r, n))), v = tensorFromArray('bf16', [L.nkv, T, L.hd], toBf16(normal(r, n)));
    const qt = tensorFromArray('f32', [T, L.nh, L.hd], normal(r, T * L.nh * L.hd));
    const s = await timeOp(q, () => q.attention(qt, k, v, { kvLen: T, qPos0: 0, mask: 'block', blockSize: 8 }), runs);
    rows.push({ ...L, pass: 'prefill', Tq: T, ctx: T, kv: 'bf16', ms: s * 1e3, kvGBs: (2 * n * 2) / s / 1e9, gflops: (4 * T * L.nh * (T / 2) * L.hd) / s / 1e9 });
    k.dispose(); v.dispose(); qt.dispose();
  }
  q.dispose();
  return { isa, threads, method: { batchSeconds: 0.2, timedRuns: runs, statistic: 'median', mask: 'full', Tq }, rows };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = new Map(process.argv.slice(2).map((a) => a.replace(/^--/, '').split('=') as [string, string]));
  const res = (await benchAttention({
    isa: args.get('isa') as Isa | undefined,
    threads: args.has('threads') ? Number(args.get('threads')) : undefined,
    runs: args.has('runs') ? Number(args.get('runs')) : undefined,
  })) as { isa: string; threads: number; rows: AttentionBenchRow[] };
  console.log(`attention — isa ${res.isa}, ${res.threads} threads`);
  console.log('model          pass       Tq   ctx  kv     ms/call   KV GB/s  GFLOP/s');
  for (const x of res.rows)
    console.log(`${x.model.padEnd(14)} ${x.pass.padEnd(8)} ${String(x.Tq).padStart(4)} ${String(x.ctx).padStart(5)}  ${x.kv.padEnd(5)} ${x.ms.toFixed(3).padStart(9)} ${x.kvGBs.toFixed(2).padStart(9)} ${x.gflops.toFixed(2).padStart(8)}`);
}
