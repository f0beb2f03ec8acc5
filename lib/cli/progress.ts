// progress.ts — progress bars on stderr for the CLI (cli-progress): model loading (bytes) and
// long runs (items). Silent when stderr is not a terminal, or with --json: piped output and
// logs stay clean, and the callers keep their plain progress lines there instead.
import cliProgress from 'cli-progress';
import type { LoadProgress } from '../weights/load.js';

export interface Bar {
  update(done: number, total?: number): void;
  stop(): void;
  /** Whether a bar is drawn at all (false: the caller may log lines instead). */
  readonly active: boolean;
}

const NONE: Bar = { update: () => undefined, stop: () => undefined, active: false };

/** A bar on stderr labelled `label`, or a silent stand-in when stderr is not a TTY or `quiet`. */
export function progressBar(label: string, opts: { quiet?: boolean; unit?: 'bytes' | 'items' } = {}): Bar {
  if (opts.quiet || !process.stderr.isTTY) return NONE;
  const bytes = opts.unit === 'bytes';
  const bar = new cliProgress.SingleBar({
    stream: process.stderr,
    format: `${label.padEnd(12)} {bar} {percentage}% | {shown} | {duration_formatted}`,
    hideCursor: true, clearOnComplete: true, etaBuffer: 20, fps: 10,
  }, cliProgress.Presets.shades_classic);
  const shown = (v: number, t: number) => (bytes ? `${mib(v)}/${mib(t)} MiB` : `${v}/${t}`);
  let started = false, total = 0;
  return {
    active: true,
    update(done: number, t?: number) {
      if (t !== undefined) total = t;
      if (!started) { bar.start(Math.max(total, 1), done, { shown: shown(done, total) }); started = true; }
      if (t !== undefined) bar.setTotal(Math.max(total, 1));
      bar.update(done, { shown: shown(done, total) });
    },
    stop() { if (started) bar.stop(); },
  };
}

const mib = (b: number) => (b / 1024 / 1024).toFixed(1);

/** loadModel's onProgress, drawing a bytes bar (call `done` after the load, success or not). */
export function loadProgress(quiet: boolean): { onProgress: (p: LoadProgress) => void; done: () => void } {
  const bar = progressBar('loading', { quiet, unit: 'bytes' });
  return { onProgress: (p) => bar.update(p.loadedBytes, p.totalBytes), done: () => bar.stop() };
}
