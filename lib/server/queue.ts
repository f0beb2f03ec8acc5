// queue.ts — admission for generations: one runs at a time (the model decodes one sequence), up
// to `maxWaiting` wait in arrival order, more get a 429. The waiting itself is the model lock's
// (ModelLock: FIFO, and a waiter whose signal aborts — its client went away — leaves at once).
import { ModelLock } from '../model/lock.js';
import { ApiError } from './errors.js';

export class RequestQueue {
  private readonly lock = new ModelLock();

  constructor(readonly maxWaiting: number) {}

  /** Requests waiting for their turn. */
  get depth(): number { return this.lock.queued; }
  /** Requests generating now. */
  get active(): number { return this.lock.locked ? 1 : 0; }

  /** Resolves with the release function once it is this request's turn; 429 when the queue is full. */
  acquire(signal?: AbortSignal): Promise<() => void> {
    if (this.lock.locked && this.lock.queued >= this.maxWaiting) {
      return Promise.reject(new ApiError(429, `the server is busy: ${this.lock.queued} requests are already waiting (--max-queue ${this.maxWaiting}); retry later`, { type: 'rate_limit_error', code: 'queue_full' }));
    }
    return this.lock.acquire(signal);
  }
}
