// fifo-lock.ts — a FIFO lock for tests of resource release (test/unit/model-lock.test.ts): the
// held resource a ModelStream must give back. (The model itself hands out KV-cache slots:
// lib/model/scheduler.ts.) It is the server's admission queue (lib/server/queue.ts) with one
// slot and no waiting cap, so those tests check that queue's release rules too.
//
// acquire(signal) resolves with a release function once every earlier holder has released.
// A waiter whose signal aborts leaves the queue and rejects with signal.reason at once (not
// when the holder ahead finishes). release is idempotent, so a holder may call it from several
// clean-up paths (a generator's finally, an idle timer, a finalizer).
import { RequestQueue } from '../../lib/server/queue.js';

export class ModelLock extends RequestQueue {
  constructor() { super(Infinity, 1); }
  /** Whether someone holds the lock now. */
  get locked(): boolean { return this.active > 0; }
  /** Requests waiting for it. */
  get queued(): number { return this.depth; }
}
