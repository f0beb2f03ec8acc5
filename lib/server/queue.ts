// queue.ts — admission for generations: up to `slots` run at once (the model batches them:
// continuous batching, lib/model/scheduler.ts), up to `maxWaiting` more wait in arrival order,
// any beyond get a 429. A waiter whose signal aborts (its client went away) leaves at once.
import { ApiError } from './errors.js';

interface Waiter { grant: () => void; signal?: AbortSignal; onAbort?: () => void }

export class RequestQueue {
  private running = 0;
  private readonly waiters: Waiter[] = [];

  /** Requests generating at once: the model's maxBatch, set once it is loaded. */
  slots: number;

  constructor(readonly maxWaiting: number, slots = 1) {
    this.slots = slots;
  }

  /** Requests waiting for their turn. */
  get depth(): number { return this.waiters.length; }
  /** Requests generating now. */
  get active(): number { return this.running; }

  /** Resolves with the release function once this request may run; 429 when the queue is full. */
  acquire(signal?: AbortSignal): Promise<() => void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.running < this.slots) {
      this.running++;
      return Promise.resolve(this.releaser());
    }
    if (this.waiters.length >= this.maxWaiting) {
      return Promise.reject(new ApiError(429, `the server is busy: ${this.running} requests are generating and ${this.waiters.length} waiting (--max-queue ${this.maxWaiting}); retry later`, { type: 'rate_limit_error', code: 'queue_full' }));
    }
    return new Promise((resolve, reject) => {
      const w: Waiter = { grant: () => resolve(this.releaser()), signal };
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
      if (!next) { this.running--; return; }
      if (next.onAbort) next.signal!.removeEventListener('abort', next.onAbort);
      next.grant();   // the slot passes straight to the next waiter
    };
  }
}
