// bench.ts — the decoding benchmark behind `diffusionvl bench` and `npm run bench`: on one model,
// in one run, AR (next-token mode, same weights) against block diffusion at several step
// counts, with and without the merged commit. Ratios are taken within the run (PERFORMANCE.md §d).
import { loadModel, type GenerateRequest, type GenerateResult } from '../model/model.js';
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
  /** Repetitions per setting; the median is reported (default 3). */
  repeat?: number;
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
}

export interface BenchModelResult {
  model: string;
  threads: number;
  /** 'cpu (avx2)' or 'cuda (NVIDIA H100 80GB HBM3)': where the numbers were taken. */
  backend: string;
  rows: BenchRow[];
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** The rows as an aligned text table (what `diffusionvl bench <model>` prints on stdout). */
export function benchTable(res: BenchModelResult): string {
  const lines = res.rows.map((r) =>
    `${r.setting.padEnd(34)} ${r.tokensPerSecond.toFixed(1).padStart(8)} tok/s  ${r.msPerForward.toFixed(2).padStart(8)} ms/fwd  ` +
    `${r.forwardsPerToken.toFixed(2)} fwd/tok  ×${r.speedupVsAr.toFixed(2)} vs AR  fwd cost ×${r.forwardCostVsAr.toFixed(2)}  ` +
    `host ${(r.hostMsPerForward * 1000).toFixed(0)} µs/fwd (${r.hostPercent.toFixed(1)} %)`);
  return [`${res.model} on ${res.backend}`, ...lines].join('\n');
}

export async function benchModel(dir: string, o: BenchModelOptions): Promise<BenchModelResult> {
  const model = await loadModel(dir, { threads: o.threads, gpu: o.gpu, contextLength: o.contextLength });
  const log = o.log ?? (() => undefined);
  const repeat = o.repeat ?? 3;
  const base: GenerateRequest = { prompt: o.prompt ?? 'Write a short story about a lighthouse keeper who finds a message in a bottle.', maxTokens: o.maxTokens, stopTokens: [] };
  const settings: [string, GenerateRequest][] = [['ar', { ...base, mode: 'ar' }]];
  for (const s of o.steps) {
    settings.push([`block${model.config.diffusion?.blockSize ?? 8} steps ${s} merged`, { ...base, mode: 'diffusion', steps: s, blockSize: model.config.diffusion?.blockSize ?? 8 }]);
    settings.push([`block${model.config.diffusion?.blockSize ?? 8} steps ${s} separate commit`, { ...base, mode: 'diffusion', steps: s, blockSize: model.config.diffusion?.blockSize ?? 8, engine: { mergeCommit: false } }]);
  }
  const rows: BenchRow[] = [];
  try {
    await model.generate({ ...base, maxTokens: 8, mode: 'ar' });   // warm-up
    for (const [name, req] of settings) {
      const runs: GenerateResult[] = [];
      const wakes: number[] = [];
      for (let i = 0; i < repeat; i++) {
        const q0 = model.execution.queue;
        runs.push(await model.generate(req));
        const q1 = model.execution.queue;
        const decodeForwards = Math.max(1, runs[i].stats.forwards - 1);
        wakes.push((q1.idleWaitMs - q0.idleWaitMs) / decodeForwards);
      }
      const r = runs[0];
      const host = median(runs.map((x) => x.stats.hostMs / Math.max(1, x.stats.forwards - 1))) + median(wakes);
      const msPerForward = median(runs.map((x) => x.stats.msPerForward));
      const row: BenchRow = {
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
      };
      rows.push(row);
    }
    const ar = rows[0];
    for (const r of rows) {
      r.speedupVsAr = r.tokensPerSecond / ar.tokensPerSecond;
      r.forwardCostVsAr = r.msPerForward / ar.msPerForward;
    }
    log(`${rows.length} settings measured`);
    return { model: dir, threads: o.threads ?? 0, backend: backendName(model.backend), rows };
  } finally {
    model.dispose();
  }
}
