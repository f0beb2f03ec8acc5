// compare.ts — the paper's speed/quality trade-off, measured: an AR parent against its
// block-diffusion child on the same held-out prompts, in one run (`diffusionvl bench` without a
// model folder, `npm run bench:trained`). Per setting: exact match (overall and per kind),
// forwards per answer token (prefill, denoising and commit passes all counted; tokens up to and
// including EOS), answer tokens per second of generate() wall time, and the ratio to the parent.
//
// Defaults: the bundled pair (models/shapes-ar, models/shapes-diffusionvl) and held-out set.
import { OptionError } from '../errors.js';
import { loadModel, type LoadModelOptions, type Model } from '../model/model.js';
import { backendName, type GpuOption } from '../native/backend.js';
import { evalHeldout, readHeldout, type EvalRequest, type EvalResult } from '../eval.js';
import { bundledHeldoutDir, bundledModelDir } from '../models.js';

export interface CompareSetting {
  name: string;
  model: 'parent' | 'child';
  request: EvalRequest;
}

/** What the bench runs by default: the parent greedy AR, the child static 8/4/2 and dynamic. */
export const COMPARE_SETTINGS: CompareSetting[] = [
  { name: 'parent AR', model: 'parent', request: { mode: 'ar' } },
  { name: 'child static 8', model: 'child', request: { mode: 'diffusion', steps: 8, remasking: 'static' } },
  { name: 'child static 4', model: 'child', request: { mode: 'diffusion', steps: 4, remasking: 'static' } },
  { name: 'child static 2', model: 'child', request: { mode: 'diffusion', steps: 2, remasking: 'static' } },
  { name: 'child dynamic 0.85', model: 'child', request: { mode: 'diffusion', steps: 8, remasking: 'dynamic', threshold: 0.85 } },
  { name: 'child dynamic 0.9', model: 'child', request: { mode: 'diffusion', steps: 8, remasking: 'dynamic', threshold: 0.9 } },
];

export interface CompareRow {
  setting: string;
  exactMatch: number;
  perKind: Record<string, number>;
  forwardsPerToken: number;
  tokensPerSecond: number;
  /** tokens/s ÷ the parent's tokens/s (the first row). */
  speedupVsParent: number;
  /** The decoder alone (after each prefill): tokens/s and its ratio to the parent's. */
  decodeTokensPerSecond: number;
  decodeSpeedupVsParent: number;
  /** Mean fixed work per request (ms): template + tokenisation, images, tower, prefill. */
  fixedMs: { prompt: number; image: number; tower: number; prefill: number };
  n: number;
  seconds: number;
}

export interface CompareOptions {
  parentDir?: string;
  childDir?: string;
  heldoutDir?: string;
  n?: number;
  threads?: number;
  /** Backend choice for both models, as loadModel's gpu option (default 'auto'). */
  gpu?: GpuOption;
  /** loadModel's precision and dtype for both models (defaults: 'fast', as stored). */
  precision?: LoadModelOptions['precision'];
  dtype?: LoadModelOptions['dtype'];
  /**
   * Timed passes over the set per setting (default 1). Passes run round-robin over the settings,
   * so a slow spell of a shared machine hits every setting alike; tokens/s is the median pass.
   * Answers are deterministic (temperature 0): every pass must give the same ones.
   */
  repeat?: number;
  settings?: CompareSetting[];
  log?: (line: string) => void;
}

export interface CompareResult {
  parent: string;
  child: string;
  heldout: string;
  n: number;
  /** Where the numbers were taken: 'cpu (avx2)', 'cuda (NVIDIA H100 …)'. */
  backend: string;
  rows: CompareRow[];
  /** The quality bar of the bundled model (issue 6), evaluated on these rows. */
  bar: { name: string; pass: boolean; detail: string }[];
  results: Record<string, EvalResult>;
}

function row(name: string, r: EvalResult): CompareRow {
  const perKind: Record<string, number> = {};
  for (const [k, v] of Object.entries(r.perKind)) perKind[k] = v.exactMatch;
  return {
    setting: name, exactMatch: r.exactMatch, perKind, forwardsPerToken: r.forwardsPerToken, tokensPerSecond: r.tokensPerSecond, speedupVsParent: 0,
    decodeTokensPerSecond: r.decodeTokensPerSecond, decodeSpeedupVsParent: 0, fixedMs: r.fixedMs, n: r.n, seconds: r.seconds,
  };
}

/** The bar: parent ≥ 90 %, child static 8 ≥ 85 %, dynamic 0.9 within 3 points of static 8 at ≤ 0.7 forwards per token. */
export function qualityBar(rows: CompareRow[]): CompareResult['bar'] {
  const by = (s: string) => rows.find((r) => r.setting === s);
  const out: CompareResult['bar'] = [];
  const pct = (x: number) => `${(100 * x).toFixed(1)} %`;
  const p = by('parent AR'), s8 = by('child static 8'), d9 = by('child dynamic 0.9');
  if (p) out.push({ name: 'parent AR exact match ≥ 90 %', pass: p.exactMatch >= 0.9, detail: pct(p.exactMatch) });
  if (s8) out.push({ name: 'child static 8 exact match ≥ 85 %', pass: s8.exactMatch >= 0.85, detail: pct(s8.exactMatch) });
  if (s8 && d9) {
    out.push({ name: 'child dynamic 0.9 within 3 points of static 8', pass: d9.exactMatch >= s8.exactMatch - 0.03, detail: `${pct(d9.exactMatch)} vs ${pct(s8.exactMatch)}` });
    out.push({ name: 'child dynamic 0.9 ≤ 0.7 forwards per answer token', pass: d9.forwardsPerToken <= 0.7, detail: d9.forwardsPerToken.toFixed(3) });
  }
  return out;
}

export async function compareParentChild(o: CompareOptions = {}): Promise<CompareResult> {
  const log = o.log ?? (() => undefined);
  const parentDir = o.parentDir ?? bundledModelDir('shapes-ar');
  const childDir = o.childDir ?? bundledModelDir('shapes-diffusionvl');
  const heldoutDir = o.heldoutDir ?? bundledHeldoutDir();
  const set = await readHeldout(heldoutDir);
  const n = Math.min(o.n ?? set.items.length, set.items.length);
  const models: Partial<Record<'parent' | 'child', Model>> = {};
  const rows: CompareRow[] = [];
  const results: Record<string, EvalResult> = {};
  let backend = '';
  try {
    const lo: LoadModelOptions = { threads: o.threads, gpu: o.gpu, precision: o.precision, dtype: o.dtype };
    models.parent = await loadModel(parentDir, lo);
    models.child = await loadModel(childDir, lo);
    backend = backendName(models.child.backend);
    // Warm-up (first-touch of the weights, thread pool start) outside the timed runs.
    for (const m of [models.parent, models.child]) await evalHeldout(m, set.items, { n: Math.min(2, n) });
    const settings = o.settings ?? COMPARE_SETTINGS;
    const repeat = o.repeat ?? 1;
    if (!Number.isInteger(repeat) || repeat < 1) throw new OptionError(`repeat must be an integer ≥ 1, got ${repeat}`, 'repeat');
    const passes: EvalResult[][] = settings.map(() => []);
    for (let k = 0; k < repeat; k++) {
      for (const [i, s] of settings.entries()) {
        const r = await evalHeldout(models[s.model]!, set.items, { ...s.request, n });
        const first = passes[i][0];
        if (first && first.correct !== r.correct) throw new Error(`${s.name}: pass ${k + 1} scored ${r.correct}, pass 1 ${first.correct} (temperature 0 must repeat)`);
        passes[i].push(r);
      }
    }
    for (const [i, s] of settings.entries()) {
      // The pass with the median tokens/s stands for the setting (its answers equal the others').
      const r = [...passes[i]].sort((a, b) => a.tokensPerSecond - b.tokensPerSecond)[Math.floor(repeat / 2)];
      results[s.name] = r;
      const x = row(s.name, r);
      x.decodeTokensPerSecond = [...passes[i]].map((p) => p.decodeTokensPerSecond).sort((a, b) => a - b)[Math.floor(repeat / 2)];
      rows.push(x);
      log(`${s.name.padEnd(20)} exact ${(100 * x.exactMatch).toFixed(1).padStart(5)} %  ${x.forwardsPerToken.toFixed(3)} fwd/tok  ${x.tokensPerSecond.toFixed(1).padStart(7)} tok/s` +
        (repeat > 1 ? ` (median of ${repeat}: ${passes[i].map((p) => p.tokensPerSecond.toFixed(0)).join(', ')})` : `  (${x.seconds.toFixed(1)} s)`));
    }
  } finally {
    models.parent?.dispose();
    models.child?.dispose();
  }
  const base = rows[0]?.tokensPerSecond ?? 0, baseDecode = rows[0]?.decodeTokensPerSecond ?? 0;
  for (const r of rows) {
    r.speedupVsParent = base > 0 ? r.tokensPerSecond / base : 0;
    r.decodeSpeedupVsParent = baseDecode > 0 ? r.decodeTokensPerSecond / baseDecode : 0;
  }
  return { parent: parentDir, child: childDir, heldout: heldoutDir, n, backend, rows, bar: qualityBar(rows), results };
}

/** The markdown table bench/RESULTS.md and the README carry. */
export function compareTable(res: CompareResult): string {
  const kinds = [...new Set(res.rows.flatMap((r) => Object.keys(r.perKind)))].sort();
  const head = `| setting | exact match | ${kinds.join(' | ')} | forwards / token | tokens/s | vs parent | decode tokens/s | vs parent (decode) | fixed ms / request (prompt + image + tower + prefill) |`;
  const sep = `|${'---|'.repeat(8 + kinds.length)}`;
  const f = (x: CompareRow['fixedMs']) => `${(x.prompt + x.image + x.tower + x.prefill).toFixed(2)} (${x.prompt.toFixed(2)} + ${x.image.toFixed(2)} + ${x.tower.toFixed(2)} + ${x.prefill.toFixed(2)})`;
  const lines = res.rows.map((r) => `| ${r.setting} | ${(100 * r.exactMatch).toFixed(1)} % | ${kinds.map((k) => r.perKind[k] === undefined ? '' : `${(100 * r.perKind[k]).toFixed(0)} %`).join(' | ')} | ` +
    `${r.forwardsPerToken.toFixed(3)} | ${r.tokensPerSecond.toFixed(0)} | ×${r.speedupVsParent.toFixed(2)} | ${r.decodeTokensPerSecond.toFixed(0)} | ×${r.decodeSpeedupVsParent.toFixed(2)} | ${f(r.fixedMs)} |`);
  return [head, sep, ...lines].join('\n');
}
