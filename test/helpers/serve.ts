// serve.ts — runs `diffusionvl serve` as a child process (the real CLI, through tsx) and waits
// for its `--json` "ready" line; the tests talk to it over HTTP like any client.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { packageRoot } from '../../lib/native/index.js';

export interface ServeProcess {
  url: string;
  proc: ChildProcessWithoutNullStreams;
  /** Every JSON line the server printed on stdout so far. */
  events: Record<string, unknown>[];
  stderr: () => string;
  /** Resolves with the exit code. */
  exited: Promise<number | null>;
  /** SIGTERM (if still running), then the exit code. */
  stop: () => Promise<number | null>;
}

export async function startServe(args: string[], timeoutMs = 60_000): Promise<ServeProcess> {
  const proc = spawn(process.execPath, ['--import', 'tsx', 'lib/cli/main.ts', 'serve', '--port', '0', '--json', ...args], {
    cwd: packageRoot(), stdio: ['pipe', 'pipe', 'pipe'],
  });
  const events: Record<string, unknown>[] = [];
  let err = '', out = '';
  const exited = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
  const ready = new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve did not get ready in ${timeoutMs} ms; stderr:\n${err}`)), timeoutMs);
    proc.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      let nl;
      while ((nl = out.indexOf('\n')) >= 0) {
        const line = out.slice(0, nl);
        out = out.slice(nl + 1);
        try { events.push(JSON.parse(line)); } catch { continue; }
        const ev = events.at(-1)!;
        if (ev.event === 'ready') { clearTimeout(timer); resolve(ev.url as string); }
        if (ev.event === 'load_failed') { clearTimeout(timer); reject(new Error(`load failed: ${String(ev.error)}`)); }
      }
    });
    proc.stderr.on('data', (d: Buffer) => { err += d.toString(); });
    void exited.then((code) => { clearTimeout(timer); reject(new Error(`serve exited with ${code} before it was ready; stderr:\n${err}`)); });
  });
  const url = await ready;
  return {
    url, proc, events, exited, stderr: () => err,
    stop: async () => { if (proc.exitCode === null) proc.kill('SIGTERM'); return exited; },
  };
}
