// model-stream.ts — the iterator Model.stream returns: an async generator that cannot strand
// the model lock.
//
// A generation holds the model while its generator is suspended between events. A consumer
// that stops pulling without calling return() (an HTTP client that disconnected, a `for await`
// left by an exception outside it in older code, an iterator dropped after one next()) would
// keep the lock forever and every later request would queue behind it. So the stream closes
// itself — runs the generator's clean-up, which releases the model — when
//   * return() or throw() is called (`break` in a `for await` calls return()),
//   * it sits idle longer than `idleMs` between a yielded event and the next next() call
//     (then the next next() rejects with an AbortError, code DVL_STREAM_IDLE),
//   * the request's signal aborts while it is idle (the next next() rejects with signal.reason),
//   * the iterator is garbage-collected (FinalizationRegistry; a safety net, timing is V8's).
// The state the timer, the listener and the finalizer touch is a separate object that does not
// reference the iterator, so dropping the iterator really lets it be collected.
import { AbortError } from '../errors.js';

interface StreamState<T> {
  inner: AsyncGenerator<T, void, undefined>;
  idleMs: number;
  signal?: AbortSignal;
  timer: NodeJS.Timeout | null;
  /** A next() is in flight (the generator is running, not suspended at a yield). */
  busy: boolean;
  closed: boolean;
  /** Why it was closed from outside, thrown by the next next() once. */
  reason: unknown;
  onAbort?: () => void;
}

function disarm<T>(s: StreamState<T>): void {
  if (s.timer) { clearTimeout(s.timer); s.timer = null; }
}

/** Closes from outside (timer, abort, finalizer): the generator's finally blocks run now. */
function closeIdle<T>(s: StreamState<T>, reason: unknown): void {
  if (s.closed || s.busy) return;
  s.closed = true;
  s.reason = reason;
  disarm(s);
  if (s.onAbort) s.signal?.removeEventListener('abort', s.onAbort);
  s.inner.return(undefined).catch(() => undefined);
}

function finish<T>(s: StreamState<T>): void {
  s.closed = true;
  disarm(s);
  if (s.onAbort) s.signal?.removeEventListener('abort', s.onAbort);
}

const abandoned = new FinalizationRegistry<StreamState<unknown>>((s) => closeIdle(s, undefined));

export class ModelStream<T> implements AsyncGenerator<T, void, undefined> {
  private readonly s: StreamState<T>;

  constructor(inner: AsyncGenerator<T, void, undefined>, opts: { idleMs: number; signal?: AbortSignal }) {
    const s: StreamState<T> = { inner, idleMs: opts.idleMs, signal: opts.signal, timer: null, busy: false, closed: false, reason: undefined };
    if (opts.signal) {
      s.onAbort = () => closeIdle(s, opts.signal!.reason);
      opts.signal.addEventListener('abort', s.onAbort, { once: true });
    }
    this.s = s;
    abandoned.register(this, s as StreamState<unknown>, this);
  }

  async next(): Promise<IteratorResult<T, void>> {
    const s = this.s;
    if (s.closed) {
      if (s.reason !== undefined) { const r = s.reason; s.reason = undefined; throw r; }
      return { done: true, value: undefined };
    }
    disarm(s);
    s.busy = true;
    let r: IteratorResult<T, void>;
    try {
      r = await s.inner.next();
    } catch (e) {
      s.busy = false;
      finish(s);
      abandoned.unregister(this);
      throw e;
    }
    s.busy = false;
    if (r.done) {
      finish(s);
      abandoned.unregister(this);
    } else if (s.signal?.aborted) {
      closeIdle(s, s.signal.reason);
    } else if (s.idleMs > 0) {
      s.timer = setTimeout(() => closeIdle(s, new AbortError(
        `the stream was left idle for ${s.idleMs} ms (limits.streamIdleMs) and closed, releasing the model; ` +
        'call return() (or break out of for await) to release it at once', 'DVL_STREAM_IDLE')), s.idleMs);
      s.timer.unref();
    }
    return r;
  }

  /** Ends the generation now and releases the model; later next() calls report done. */
  async return(): Promise<IteratorResult<T, void>> {
    const s = this.s;
    finish(s);
    s.reason = undefined;
    abandoned.unregister(this);
    await s.inner.return(undefined);
    return { done: true, value: undefined };
  }

  async throw(e: unknown): Promise<IteratorResult<T, void>> {
    const s = this.s;
    finish(s);
    abandoned.unregister(this);
    return s.inner.throw(e);
  }

  [Symbol.asyncIterator](): this { return this; }

  async [Symbol.asyncDispose](): Promise<void> { await this.return(); }
}
