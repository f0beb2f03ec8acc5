// fifo-lock.ts — a FIFO lock for tests of resource release (test/unit/model-lock.test.ts): the
// held resource a ModelStream must give back. (The model itself hands out KV-cache slots:
// lib/model/scheduler.ts.)
//
// acquire(signal) resolves with a release function once every earlier holder has released.
// A waiter whose signal aborts leaves the queue and rejects with signal.reason at once (not
// when the holder ahead finishes). release is idempotent, so a holder may call it from several
// clean-up paths (a generator's finally, an idle timer, a finalizer).

export class ModelLock {
  private held = false;
  private readonly waiters: { grant: () => void; signal?: AbortSignal; onAbort?: () => void }[] = [];

  /** Whether someone holds the lock now. */
  get locked(): boolean { return this.held; }
  /** Requests waiting for it. */
  get queued(): number { return this.waiters.length; }

  acquire(signal?: AbortSignal): Promise<() => void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (!this.held) {
      this.held = true;
      return Promise.resolve(this.releaser());
    }
    return new Promise((resolve, reject) => {
      const w: { grant: () => void; signal?: AbortSignal; onAbort?: () => void } = {
        grant: () => resolve(this.releaser()),
        signal,
      };
      if (signal) {
        w.onAbort = () => {
          const i = this.waiters.indexOf(w);
          if (i >= 0) this.waiters.splice(i, 1);
          reject(signal.reason);
        };
        signal.addEventListener('abort', w.onAbort, { once: true });
      }
      this.waiters.push(w);
    });
  }

  private releaser(): () => void {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const next = this.waiters.shift();
      if (!next) { this.held = false; return; }
      if (next.onAbort) next.signal!.removeEventListener('abort', next.onAbort);
      next.grant();   // the lock passes straight to the next waiter: held stays true
    };
  }
}
