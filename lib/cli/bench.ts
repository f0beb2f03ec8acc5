// bench.ts — the decoding benchmark behind `diffusionvl bench` and `npm run bench`: on one model,
// in one run, AR (next-token mode, same weights) against block diffusion at several step
// counts, with and without the merged commit, for one or several precisions / weight dtypes
// (benchModels). Ratios are taken within the run (docs/performance.md §d).
import { loadModel, type GenerateRequest, type GenerateResult, type LoadModelOptions, type Model } from '../model/model.js';
import { backendName, type GpuOption } from '../native/backend.js';

export interface BenchModelOptions {
  maxTokens: number;
  steps: number[];
  prompt?: string;
  threads?: number;
  /** Backend choice, as loadModel's gpu option (default 'auto'). */
  gpu?: GpuOption;
  /** loadModel's contextLength (default: the model's). */
  contextLength?: number;
  /** loadModel's precision and dtype (defaults: 'fast', as stored). */
  precision?: LoadModelOptions['precision'];
  dtype?: LoadModelOptions['dtype'];
  /** Repetitions per setting; the median is reported (default 3). */
  repeat?: number;
  /** After the timed runs, run AR and each merged setting once more with every op timed
   *  (Model.profile) and report per forward where the time goes. */
  profile?: boolean;
  log?: (line: string) => void;
}

export interface BenchRow {
  setting: string;
  tokens: number;
  forwards: number;
  forwardsPerToken: number;
  msPerForward: number;
  tokensPerSecond: number;
  prefillMs: number;
  /** tokens/s ÷ AR tokens/s */
  speedupVsAr: number;
  /** ms per forward ÷ AR ms per forward */
  forwardCostVsAr: number;
  /** Host work per decode forward (ms): the decode loop's JS time between waits (stats.hostMs)
   *  plus the queue thread's wake-up after each push onto an idle queue. */
  hostMsPerForward: number;
  /** hostMsPerForward ÷ msPerForward, in percent. */
  hostPercent: number;
  /** Of the kernel pool's fork/joins in these runs, the percentage a worker thread took part in
   *  (null with one thread, or when no op split): low means the extra threads were asleep or
   *  had no core when the work came (QueueStats.forksJoined). */
  workersJoinedPercent: number | null;
}

export interface BenchModelResult {
  model: string;
  threads: number;
  /** 'cpu (avx2)' or 'cuda (NVIDIA H100 80GB HBM3)': where the numbers were taken. */
  backend: string;
  /** The CPU matmul kernels per weight dtype (CPU backend). */
  kernels?: Record<string, string>;
  /** Native bytes of the weights (what an AR forward streams). */
  weightBytes?: number;
  rows: BenchRow[];
  /** With the profile option: per setting, each op key's ms per forward (CPU backend). */
  profiles?: BenchProfile[];
}

export interface BenchProfile {
  setting: string;
  forwards: number;
  /** The timed ops' total per forward; the rest of ms/forward is host work and idle waits. */
  opMsPerForward: number;
  lines: { op: string; calls: number; msPerForward: number; share: number; weightGBps: number }[];
}

/** The upper median (the middle of an odd count). */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** The rows as an aligned text table (what `diffusionvl bench <model>` prints on stdout). */
export function benchTable(res: BenchModelResult): string {
  const lines = res.rows.map((r) =>
    `${r.setting.padEnd(34)} ${r.tokensPerSecond.toFixed(1).padStart(8)} tok/s  ${r.msPerForward.toFixed(2).padStart(8)} ms/fwd  ` +
    `${r.forwardsPerToken.toFixed(2)} fwd/tok  ×${r.speedupVsAr.toFixed(2)} vs AR  fwd cost ×${r.forwardCostVsAr.toFixed(2)}  ` +
    `host ${(r.hostMsPerForward * 1000).toFixed(0)} µs/fwd (${r.hostPercent.toFixed(1)} %)` +
    (r.workersJoinedPercent === null ? '' : `  workers joined ${r.workersJoinedPercent.toFixed(0)} % of forks`));
  const out = [`${res.model} on ${res.backend}`, ...lines];
  for (const p of res.profiles ?? []) {
    out.push('', `where a forward's time goes — ${p.setting}: ${p.opMsPerForward.toFixed(3)} ms of ops per forward (${p.forwards} forwards)`);
    out.push(...profileLinesText(p.lines.map((l) => ({ ...l, ms: l.msPerForward })), 14, false));
  }
  return out.join('\n');
}

/** The first `max` lines of a profile as text (bench --profile, run --profile), then how many were left out. */
export function profileLinesText(lines: readonly { op: string; ms: number; share: number; calls: number; weightGBps: number }[], max: number, calls: boolean): string[] {
  const out = lines.slice(0, max).map((l) =>
    `  ${l.op.padEnd(28)} ${l.ms.toFixed(3).padStart(9)} ms ${(l.share * 100).toFixed(1).padStart(5)} %` +
    (calls ? `  ${String(l.calls).padStart(5)} calls` : '') +
    (l.weightGBps > 0 ? `  weights at ${l.weightGBps.toFixed(1)} GB/s` : ''));
  if (lines.length > max) out.push(`  … ${lines.length - max} more (--json has them all)`);
  return out;
}

export interface BenchVariant {
  /** A label for the tables ('exact', 'fast', 'q8'). */
  name: string;
  precision?: LoadModelOptions['precision'];
  dtype?: LoadModelOptions['dtype'];
}

export async function benchModel(dir: string, o: BenchModelOptions): Promise<BenchModelResult> {
  const [r] = await benchModels(dir, [{ name: o.precision ?? 'fast', precision: o.precision, dtype: o.dtype }], o);
  return r;
}

/**
 * benchModel for several precisions / dtypes of the same checkpoint in one run: every variant is
 * loaded first, then the (variant, setting) pairs run round-robin `repeat` times, so the load of
 * a shared machine lands on all of them alike and their ratios stay comparable.
 */
export async function benchModels(dir: string, variants: readonly BenchVariant[], o: BenchModelOptions): Promise<(BenchModelResult & { variant: string })[]> {
  const log = o.log ?? (() => undefined);
  const repeat = o.repeat ?? 3;
  const models: Model[] = [];
  try {
    for (const v of variants) models.push(await loadModel(dir, { threads: o.threads, gpu: o.gpu, contextLength: o.contextLength, precision: v.precision, dtype: v.dtype }));
    const bs = models[0].config.diffusion?.blockSize ?? 8;
    const base: GenerateRequest = { prompt: o.prompt ?? 'Write a short story about a lighthouse keeper who finds a message in a bottle.', maxTokens: o.maxTokens, stopTokens: [] };
    const settings: [string, GenerateRequest][] = [['ar', { ...base, mode: 'ar' }]];
    for (const s of o.steps) {
      settings.push([`block${bs} steps ${s} merged`, { ...base, mode: 'diffusion', steps: s, blockSize: bs }]);
      settings.push([`block${bs} steps ${s} separate commit`, { ...base, mode: 'diffusion', steps: s, blockSize: bs, engine: { mergeCommit: false } }]);
    }
    for (const m of models) await m.generate({ ...base, maxTokens: 8, mode: 'ar' });   // warm-up
    // Round-robin over variants and settings, `repeat` times.
    const runsOf = models.map(() => settings.map((): GenerateResult[] => []));
    const wakesOf = models.map(() => settings.map((): number[] => []));
    const forksOf = models.map(() => settings.map(() => ({ forks: 0, joined: 0 })));
    for (let i = 0; i < repeat; i++)
      for (const [vi, m] of models.entries())
        for (const [j, [, req]] of settings.entries()) {
          const q0 = m.execution.queue;
          const r = await m.generate(req);
          const q1 = m.execution.queue;
          runsOf[vi][j].push(r);
          wakesOf[vi][j].push((q1.idleWaitMs - q0.idleWaitMs) / Math.max(1, r.stats.forwards - 1));
          forksOf[vi][j].forks += q1.forks - q0.forks;
          forksOf[vi][j].joined += q1.forksJoined - q0.forksJoined;
        }
    const profilesOf = await Promise.all(models.map(async (m) => {
      if (!o.profile) return undefined;
      const profiles: BenchProfile[] = [];
      for (const [name, req] of settings) {
        if (name.endsWith('separate commit')) continue;
        const { result, ops, totalMs } = await m.profile(() => m.generate(req));
        const f = Math.max(1, result.stats.forwards);
        profiles.push({
          setting: name, forwards: result.stats.forwards, opMsPerForward: totalMs / f,
          lines: ops.map((l) => ({ op: l.op, calls: l.calls, msPerForward: l.ms / f, share: l.share, weightGBps: l.weightGBps })),
        });
      }
      return profiles;
    }));
    return models.map((model, vi) => {
      const rows: BenchRow[] = settings.map(([name], j) => {
        const runs = runsOf[vi][j];
        const r = runs[0];
        const host = median(runs.map((x) => x.stats.hostMs / Math.max(1, x.stats.forwards - 1))) + median(wakesOf[vi][j]);
        const msPerForward = median(runs.map((x) => x.stats.msPerForward));
        return {
          setting: name,
          tokens: r.stats.generatedTokens,
          forwards: r.stats.forwards,
          forwardsPerToken: r.stats.forwards / r.stats.generatedTokens,
          msPerForward,
          tokensPerSecond: median(runs.map((x) => x.stats.tokensPerSecond)),
          prefillMs: median(runs.map((x) => x.stats.prefillMs)),
          speedupVsAr: 0,
          forwardCostVsAr: 0,
          hostMsPerForward: host,
          hostPercent: (host / msPerForward) * 100,
          workersJoinedPercent: forksOf[vi][j].forks > 0 ? (100 * forksOf[vi][j].joined) / forksOf[vi][j].forks : null,
        };
      });
      const ar = rows[0];
      for (const r of rows) {
        r.speedupVsAr = r.tokensPerSecond / ar.tokensPerSecond;
        r.forwardCostVsAr = r.msPerForward / ar.msPerForward;
      }
      log(`${variants[vi].name}: ${rows.length} settings measured`);
      const kernels = model.backend.cpu.kernels as Record<string, string> | undefined;
      return { variant: variants[vi].name, model: dir, threads: o.threads ?? 0, backend: backendName(model.backend), kernels, weightBytes: model.weightBytes, rows, ...(profilesOf[vi] ? { profiles: profilesOf[vi] } : {}) };
    });
  } finally {
    for (const m of models) m.dispose();
  }
}
