// harness.ts — runs hostile cases against the built package (dist/) in child `node` processes,
// each bounded by a watchdog: wall time per case and resident memory (polled from /proc), so
// a case that crashes, hangs or balloons fails its own test instead of taking the runner down.
//
// A case is the body of an async function, as JS source, run in the child with these in scope:
//   dvl     the package (dist/index.js)           native  dist/native/index.js
//   F       fixtures the test prepared (JSON)     S       an object shared by the batch
//   cpu()   CPU milliseconds this process used    sleep(ms)
// It returns a JSON-able value or throws. Cases of one batch run one after another in one
// child (cheap where nothing can crash); `alone: true` cases get a child each. The child
// prints a line per case: what it threw (name, code, message) or returned, its wall and CPU
// milliseconds and the RSS after it.
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface HostileCase {
  name: string;
  /** Async function body (JS). */
  body: string;
  /** Expected outcome: a typed error (class name, optional code and message), or success. */
  throws?: { name: string; code?: string; message?: RegExp };
  /** Extra checks on the outcome. */
  check?: (r: CaseResult) => void;
  /** Wall-clock bound for this case (default 30 s: a hang, not a slow machine, trips it). */
  timeoutMs?: number;
  /** Run in a child of its own (a crash is possible). */
  alone?: boolean;
  /** node flags for its child (alone cases only), e.g. ['--expose-gc']. */
  nodeArgs?: string[];
}

export interface CaseResult {
  name: string;
  ok: boolean;
  value?: unknown;
  error?: { name?: string; code?: string; message: string };
  wallMs: number;
  cpuMs: number;
  rssBytes: number;
  /** Set by the harness when the child died or was killed during this case. */
  died?: string;
}

const CHILD_PRELUDE = `
const dvl = await import(${JSON.stringify(join(ROOT, 'dist', 'index.js'))});
const native = await import(${JSON.stringify(join(ROOT, 'dist', 'native', 'index.js'))});
const F = JSON.parse(process.env.DVL_HOSTILE_FIXTURES || '{}');
const S = {};
const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const out = (o) => process.stdout.write(JSON.stringify(o) + '\\n');
const plain = (v) => { try { return JSON.parse(JSON.stringify(v ?? null)); } catch { return String(v); } };
async function runCase(name, fn) {
  out({ start: name });
  const t0 = performance.now(), c0 = cpu();
  let r;
  try {
    r = { ok: true, value: plain(await fn()) };
  } catch (e) {
    r = { ok: false, error: { name: e?.name, code: e?.code, message: String(e?.message ?? e).slice(0, 600) } };
  }
  out({ end: name, ...r, wallMs: performance.now() - t0, cpuMs: cpu() - c0, rssBytes: process.memoryUsage.rss() });
}
`;

function childSource(cases: HostileCase[]): string {
  const calls = cases.map((c) => `await runCase(${JSON.stringify(c.name)}, async () => {\n${c.body}\n});`).join('\n');
  return `${CHILD_PRELUDE}\n${calls}\nout({ done: true });\nprocess.exit(0);\n`;
}

function rssOf(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

export interface BatchOptions {
  /** JSON handed to the child as F (a function: evaluated when the batch starts). */
  fixtures?: unknown;
  /** Kill the child when its RSS passes this (default 1.5 GiB). */
  maxRssBytes?: number;
  nodeArgs?: string[];
}

/** Runs cases in one child; resolves with one result per case (died ones marked). */
export async function runBatch(cases: HostileCase[], o: BatchOptions = {}): Promise<CaseResult[]> {
  const dir = join(ROOT, '.cache', 'hostile');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `batch-${process.pid}-${Math.random().toString(36).slice(2)}.mjs`);
  writeFileSync(file, childSource(cases));
  const maxRss = o.maxRssBytes ?? 1.5 * 2 ** 30;
  const child = spawn(process.execPath, [...(o.nodeArgs ?? []), file], {
    env: { ...process.env, DVL_HOSTILE_FIXTURES: JSON.stringify((typeof o.fixtures === 'function' ? (o.fixtures as () => unknown)() : o.fixtures) ?? {}), NODE_OPTIONS: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const results = new Map<string, CaseResult>();
  let current: string | null = null;
  let deadline = 0;
  let killedFor: string | null = null;
  let buf = '', stderr = '';
  const timeoutOf = (name: string) => cases.find((c) => c.name === name)?.timeoutMs ?? 30_000;
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (d: string) => {
    buf += d;
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      let m: Record<string, unknown>;
      try { m = JSON.parse(line) as Record<string, unknown>; } catch { continue; }
      if (typeof m.start === 'string') { current = m.start; deadline = Date.now() + timeoutOf(current); }
      if (typeof m.end === 'string') {
        const { end, ...rest } = m;
        results.set(end, { name: end, ...(rest as Omit<CaseResult, 'name'>) });
        current = null;
      }
    }
  });
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d: string) => { stderr = (stderr + d).slice(-4000); });
  const watchdog = setInterval(() => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const rss = rssOf(child.pid!);
    if (rss > maxRss) { killedFor = `RSS ${(rss / 2 ** 20).toFixed(0)} MiB over the ${(maxRss / 2 ** 20).toFixed(0)} MiB bound`; child.kill('SIGKILL'); }
    else if (current && Date.now() > deadline) { killedFor = `no result within ${timeoutOf(current)} ms (hang)`; child.kill('SIGKILL'); }
  }, 100);
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((r) => child.on('exit', (c, s) => r([c, s])));
  clearInterval(watchdog);
  rmSync(file, { force: true });
  return cases.map((c) => results.get(c.name) ?? {
    name: c.name, ok: false, wallMs: 0, cpuMs: 0, rssBytes: 0,
    died: current === c.name
      ? `the child ${killedFor ? `was killed: ${killedFor}` : `died (${signal ?? `exit ${code}`})`} during this case; stderr: ${stderr.slice(-800)}`
      : `not run: the child ended (${signal ?? `exit ${code}`}) during ${current ?? 'an earlier case'}`,
  });
}

/** Asserts a result against its case. */
export function expectOutcome(c: HostileCase, r: CaseResult, maxRssBytes = 1.5 * 2 ** 30): void {
  const label = `${c.name}: ${JSON.stringify(r).slice(0, 900)}`;
  expect(r.died, label).toBeUndefined();
  if (c.throws) {
    expect(r.ok, label).toBe(false);
    expect(r.error?.name, label).toBe(c.throws.name);
    if (c.throws.code) expect(r.error?.code, label).toBe(c.throws.code);
    if (c.throws.message) expect(r.error?.message, label).toMatch(c.throws.message);
  } else if (!c.check) {
    expect(r.ok, label).toBe(true);
  }
  expect(r.rssBytes, label).toBeLessThan(maxRssBytes);
  c.check?.(r);
}

/** Runs the non-alone cases in one child and each alone case in its own (at most two at a
 *  time); resolves with the results by case name. */
export async function runCases(cases: HostileCase[], o: BatchOptions = {}): Promise<Map<string, CaseResult>> {
  const batch = cases.filter((c) => !c.alone);
  const alone = cases.filter((c) => c.alone);
  const out = new Map<string, CaseResult>();
  const runs: Promise<void>[] = [];
  if (batch.length) runs.push(runBatch(batch, o).then((rs) => { for (const r of rs) out.set(r.name, r); }));
  let next = 0;
  const lane = async () => {
    while (next < alone.length) {
      const c = alone[next++];
      const [r] = await runBatch([c], { ...o, nodeArgs: c.nodeArgs });
      out.set(r.name, r);
    }
  };
  runs.push(lane());
  await Promise.all(runs);
  return out;
}

/** One vitest test per case, all fed by one runCases call. */
export function hostileSuite(it: (name: string, fn: () => Promise<void>, timeout?: number) => void, cases: HostileCase[], o: BatchOptions = {}): void {
  const names = new Set<string>();
  for (const c of cases) {
    if (names.has(c.name)) throw new Error(`duplicate hostile case name ${c.name}`);
    names.add(c.name);
  }
  let results: Promise<Map<string, CaseResult>> | undefined;
  for (const c of cases) {
    it(c.name, async () => {
      results ??= runCases(cases, o);
      expectOutcome(c, (await results).get(c.name)!, o.maxRssBytes);
    }, 600_000);
  }
}
