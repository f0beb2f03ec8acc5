// template.ts — renders a model's Jinja chat template in a separate Node process, with limits.
//
// A chat template is code from the model folder. Rendered in-process it can loop for hours
// (`{% for i in range(10**10) %}`), exhaust V8's heap (range(10^9) builds a 10^9-element
// array: a fatal OOM that kills the whole process, worker threads included), or emit 20 MB of
// text. So rendering runs in a child `node` process (the same binary; ELECTRON_RUN_AS_NODE
// under Electron) with a small heap, a wall-clock limit and an output limit:
//   * renderTemplate (async): one long-lived child per process, started on first use, unref'd
//     so it never keeps the process alive; requests run one at a time; a timeout, an abort or
//     a crash kills it and the next request starts a fresh one.
//   * renderTemplateSync: one short-lived child per call (spawnSync, ~40 ms), for the
//     synchronous prompt API.
// Inside the child, `range()` is capped (RANGE_LIMIT elements) so the common runaway fails
// with a message rather than by the heap limit. Errors: a template that does not parse, fails,
// runs too long, uses too much memory or renders too much text is a ConfigError (field
// chat_template); raise_exception() in the template (its way to refuse the messages, e.g. a
// bad role order) is an OptionError on messages.
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createRequire } from 'node:module';
import { ConfigError, OptionError } from '../errors.js';

export interface TemplateLimits {
  /** Wall-clock milliseconds for one render. */
  timeMs: number;
  /** Largest rendered text in UTF-16 characters. */
  maxChars: number;
}

/** Largest list range() may build inside a template. */
export const RANGE_LIMIT = 1_000_000;
/** Heap of the rendering child, MiB. */
const CHILD_HEAP_MB = 256;

/** The child: JSON lines in ({ id, template, context, maxChars }), JSON lines out. */
const CHILD_CODE = String.raw`
'use strict';
const jinjaPath = process.argv[process.argv.length - 1];
let jinja, lastSrc, lastTpl;
const RANGE_LIMIT = ${RANGE_LIMIT};
function range(start, stop, step = 1) {
  if (stop === undefined) { stop = start; start = 0; }
  if (step === 0) throw new Error('range() step must not be zero');
  const n = Math.max(0, Math.ceil((stop - start) / step));
  if (!(n <= RANGE_LIMIT)) throw new Error('range() of ' + n + ' elements exceeds the limit of ' + RANGE_LIMIT);
  const out = [];
  for (let i = 0; i < n; i++) out.push(start + i * step);
  return out;
}
class Raised extends Error {}
async function handle(req) {
  if (!jinja) {
    jinja = require(jinjaPath);
    // Our range and raise_exception replace the library's globals of those names.
    const declare = jinja.Environment.prototype.declareVariable;
    jinja.Environment.prototype.declareVariable = function (name, value) {
      if ((name === 'range' || name === 'raise_exception') && this.variables.has(name)) { this.variables.set(name, value); return value; }
      return declare.call(this, name, value);
    };
  }
  let tpl;
  try {
    if (req.template !== lastSrc) { lastTpl = new jinja.Template(req.template); lastSrc = req.template; }
    tpl = lastTpl;
  } catch (e) { return { id: req.id, kind: 'parse', error: String(e && e.message || e) }; }
  try {
    const text = tpl.render({ ...req.context, range, raise_exception: (m) => { throw new Raised(String(m)); } });
    if (typeof text !== 'string') return { id: req.id, kind: 'render', error: 'the template did not render to text' };
    if (text.length > req.maxChars) return { id: req.id, kind: 'size', error: 'rendered ' + text.length + ' characters, more than the limit of ' + req.maxChars };
    return { id: req.id, text };
  } catch (e) {
    return { id: req.id, kind: e instanceof Raised ? 'raise' : 'render', error: String(e && e.message || e) };
  }
}
let buf = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', async (d) => {
  buf += d;
  let nl;
  while ((nl = buf.indexOf('\n')) >= 0) {
    const line = buf.slice(0, nl);
    buf = buf.slice(nl + 1);
    const res = await handle(JSON.parse(line));
    process.stdout.write(JSON.stringify(res) + '\n');
  }
});
process.stdin.on('end', () => process.exit(0));
`;

interface RenderReply { id: number; text?: string; kind?: 'parse' | 'render' | 'raise' | 'size'; error?: string }

let jinjaPath: string | undefined;

function childArgs(): string[] {
  jinjaPath ??= createRequire(import.meta.url).resolve('@huggingface/jinja');
  return [`--max-old-space-size=${CHILD_HEAP_MB}`, '--no-warnings', '-e', CHILD_CODE, '--', jinjaPath];
}

function childEnv(): NodeJS.ProcessEnv {
  // Under Electron process.execPath is the app binary: this makes it a plain Node.
  return { ...process.env, ELECTRON_RUN_AS_NODE: '1', NODE_OPTIONS: '' };
}

/** The rendering context as JSON, or an OptionError naming what cannot be sent. */
function serialise(context: Record<string, unknown>): string {
  try {
    return JSON.stringify(context);
  } catch (e) {
    throw new OptionError(`templateVariables must be JSON values: ${(e as Error).message}`, 'templateVariables');
  }
}

function toError(r: RenderReply | undefined, limits: TemplateLimits, why?: string): Error {
  if (!r || r.text === undefined) {
    if (r?.kind === 'raise') return new OptionError(`chat_template refused the messages: ${r.error}`, 'messages');
    const what = r?.kind === 'parse' ? 'does not parse' : r?.kind === 'size' ? 'renders too much text' : 'failed';
    return new ConfigError(`chat_template ${what}: ${r?.error ?? why ?? 'no result'}`, { field: 'chat_template' });
  }
  return new ConfigError(`chat_template: ${why}`, { field: 'chat_template' });
}

function crashReason(status: number | null, signal: string | null, timedOut: boolean, limits: TemplateLimits): string {
  if (timedOut) return `rendering took longer than ${limits.timeMs} ms (limits.templateMs); a template that loops this long is refused`;
  return `the rendering process ended (${signal ?? `exit code ${status}`}): the template used more than ${CHILD_HEAP_MB} MiB or crashed`;
}

/** Renders synchronously (a child per call). Throws ConfigError / OptionError as above. */
export function renderTemplateSync(template: string, context: Record<string, unknown>, limits: TemplateLimits): string {
  const line = JSON.stringify({ id: 0, template, context: JSON.parse(serialise(context)), maxChars: limits.maxChars }) + '\n';
  const r = spawnSync(process.execPath, childArgs(), {
    input: line, encoding: 'utf8', timeout: limits.timeMs, killSignal: 'SIGKILL', env: childEnv(),
    maxBuffer: limits.maxChars * 6 + 4096, windowsHide: true,
  });
  const timedOut = (r.error as NodeJS.ErrnoException | undefined)?.code === 'ETIMEDOUT';
  const out = typeof r.stdout === 'string' ? r.stdout.split('\n')[0] : '';
  let reply: RenderReply | undefined;
  try { reply = out ? JSON.parse(out) as RenderReply : undefined; } catch { reply = undefined; }
  if (reply?.text !== undefined) return reply.text;
  if (reply) throw toError(reply, limits);
  throw toError(undefined, limits, crashReason(r.status, r.signal, timedOut, limits));
}

// ---- the long-lived child ---------------------------------------------------------------------

interface Job { line: string; resolve: (r: RenderReply) => void; reject: (e: Error) => void; limits: TemplateLimits; signal?: AbortSignal }

class TemplateHost {
  private child: ChildProcessWithoutNullStreams | null = null;
  private queue: Job[] = [];
  private current: { job: Job; timer: NodeJS.Timeout; onAbort?: () => void } | null = null;
  private out = '';
  private nextId = 1;

  render(template: string, context: Record<string, unknown>, limits: TemplateLimits, signal?: AbortSignal): Promise<string> {
    const id = this.nextId++;
    const line = JSON.stringify({ id, template, context: JSON.parse(serialise(context)), maxChars: limits.maxChars }) + '\n';
    return new Promise<RenderReply>((resolve, reject) => {
      if (signal?.aborted) { reject(signal.reason); return; }
      this.queue.push({ line, resolve, reject, limits, signal });
      this.pump();
    }).then((r) => {
      if (r.text !== undefined) return r.text;
      throw toError(r, limits);
    });
  }

  private start(): ChildProcessWithoutNullStreams {
    const c = spawn(process.execPath, childArgs(), { env: childEnv(), stdio: ['pipe', 'pipe', 'pipe'], windowsHide: true });
    c.stdout.setEncoding('utf8');
    c.stdout.on('data', (d: string) => this.onData(d));
    c.stderr.resume();
    c.stdin.on('error', () => undefined);   // EPIPE when it dies mid-write: handled by 'exit'
    c.on('error', (e) => this.onExit(c, null, null, e));
    c.on('exit', (code, sig) => this.onExit(c, code, sig));
    this.unref(c);
    this.out = '';
    return c;
  }

  /** An idle child must not keep the process alive; a busy one must (a render is pending). */
  private unref(c: ChildProcessWithoutNullStreams): void {
    c.unref();
    (c.stdin as unknown as { unref?: () => void }).unref?.();
    (c.stdout as unknown as { unref?: () => void }).unref?.();
    (c.stderr as unknown as { unref?: () => void }).unref?.();
  }

  private ref(c: ChildProcessWithoutNullStreams): void {
    c.ref();
    (c.stdout as unknown as { ref?: () => void }).ref?.();
  }

  private pump(): void {
    if (this.current || this.queue.length === 0) return;
    const job = this.queue.shift()!;
    if (job.signal?.aborted) { job.reject(job.signal.reason); this.pump(); return; }
    const c = this.child ?? (this.child = this.start());
    this.ref(c);
    const timer = setTimeout(() => this.fail(new ConfigError(`chat_template: ${crashReason(null, null, true, job.limits)}`, { field: 'chat_template' })), job.limits.timeMs);
    const onAbort = job.signal ? () => this.fail(job.signal!.reason as Error) : undefined;
    if (onAbort) job.signal!.addEventListener('abort', onAbort, { once: true });
    this.current = { job, timer, onAbort };
    c.stdin.write(job.line);
  }

  private finish(): Job | null {
    const cur = this.current;
    if (!cur) return null;
    clearTimeout(cur.timer);
    if (cur.onAbort) cur.job.signal!.removeEventListener('abort', cur.onAbort);
    this.current = null;
    if (this.child) this.unref(this.child);
    return cur.job;
  }

  /** Ends the job in flight with `err` and kills the child (it may still be looping). */
  private fail(err: Error): void {
    const job = this.finish();
    const c = this.child;
    this.child = null;
    c?.kill('SIGKILL');
    job?.reject(err);
    this.pump();
  }

  private onData(d: string): void {
    this.out += d;
    let nl;
    while ((nl = this.out.indexOf('\n')) >= 0) {
      const line = this.out.slice(0, nl);
      this.out = this.out.slice(nl + 1);
      const job = this.finish();
      let reply: RenderReply;
      try { reply = JSON.parse(line) as RenderReply; } catch { reply = { id: -1, kind: 'render', error: 'unreadable reply' }; }
      job?.resolve(reply);
    }
    this.pump();
  }

  private onExit(c: ChildProcessWithoutNullStreams, code: number | null, sig: NodeJS.Signals | null, e?: Error): void {
    if (this.child !== c) return;   // an old child we killed
    this.child = null;
    if (this.current) {
      const limits = this.current.job.limits;
      this.fail(new ConfigError(`chat_template: ${e ? `cannot start the rendering process (${e.message})` : crashReason(code, sig, false, limits)}`, { field: 'chat_template' }));
    }
  }
}

let host: TemplateHost | undefined;

/** Renders in the shared long-lived child. Rejects with ConfigError / OptionError as above, or
 *  with signal.reason when aborted (the child is killed). */
export function renderTemplate(template: string, context: Record<string, unknown>, limits: TemplateLimits, signal?: AbortSignal): Promise<string> {
  host ??= new TemplateHost();
  return host.render(template, context, limits, signal);
}
