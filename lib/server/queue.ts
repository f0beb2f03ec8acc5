// queue.ts — admission for generations: `concurrency` run at once (1 while the model decodes one
// sequence at a time), up to `maxWaiting` wait in FIFO order, more get a 429. A waiting request
// whose client goes away leaves the queue at once (its signal aborts the wait).
import { ApiError } from './errors.js';

interface Waiter { resolve: (release: () => void) => void; reject: (e: unknown) => void; cleanup: () => void }

export class RequestQueue {
  private running = 0;
  private readonly waiting: Waiter[] = [];

  constructor(readonly maxWaiting: number, readonly concurrency = 1) {}

  /** Requests waiting for their turn. */
  get depth(): number { return this.waiting.length; }
  /** Requests generating now. */
  get active(): number { return this.running; }

  /** Resolves with the release function once it is this request's turn; 429 when the queue is full. */
  acquire(signal?: AbortSignal): Promise<() => void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.running < this.concurrency && this.waiting.length === 0) {
      this.running++;
      return Promise.resolve(this.releaser());
    }
    if (this.waiting.length >= this.maxWaiting) {
      return Promise.reject(new ApiError(429, `the server is busy: ${this.waiting.length} requests are already waiting (--max-queue ${this.maxWaiting}); retry later`, { type: 'rate_limit_error', code: 'queue_full' }));
    }
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        const i = this.waiting.indexOf(w);
        if (i >= 0) this.waiting.splice(i, 1);
        reject(signal!.reason);
      };
      const w: Waiter = { resolve, reject, cleanup: () => signal?.removeEventListener('abort', onAbort) };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiting.push(w);
    });
  }

  /** Rejects every waiting request (shutdown). */
  rejectWaiting(e: unknown): void {
    for (const w of this.waiting.splice(0)) { w.cleanup(); w.reject(e); }
  }

  private releaser(): () => void {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const next = this.waiting.shift();
      if (next) { next.cleanup(); next.resolve(this.releaser()); } else this.running--;
    };
  }
}
