// lib/model/model-stream.ts without a model: a ModelStream over a plain generator holding a FIFO
// lock (test/helpers/fifo-lock.ts, checked first: arrival order, aborts of waiters, idempotent
// release) that records its clean-up.
import { describe, expect, it } from 'vitest';
import { ModelLock } from '../helpers/fifo-lock.js';
import { ModelStream } from '../../lib/model/model-stream.js';

const tick = () => new Promise((r) => setImmediate(r));

describe('ModelLock', () => {
  it('grants in arrival order, one holder at a time', async () => {
    const lock = new ModelLock();
    const order: number[] = [];
    const hold = async (k: number) => { const release = await lock.acquire(); order.push(k); await tick(); order.push(-k); release(); };
    await Promise.all([hold(1), hold(2), hold(3)]);
    expect(order).toEqual([1, -1, 2, -2, 3, -3]);
    expect(lock.locked).toBe(false);
  });

  it('a waiter whose signal aborts rejects at once and leaves the queue', async () => {
    const lock = new ModelLock();
    const release = await lock.acquire();
    const ac = new AbortController();
    const waiting = lock.acquire(ac.signal);
    const after = lock.acquire();
    expect(lock.queued).toBe(2);
    ac.abort(new Error('gone'));
    await expect(waiting).rejects.toThrow('gone');
    expect(lock.queued).toBe(1);
    release();
    const r2 = await after;   // the lock skipped the aborted waiter
    r2();
    expect(lock.locked).toBe(false);
  });

  it('an already-aborted signal rejects without queueing; release is idempotent', async () => {
    const lock = new ModelLock();
    await expect(lock.acquire(AbortSignal.abort(new Error('no')))).rejects.toThrow('no');
    const r = await lock.acquire();
    const next = lock.acquire();
    r(); r(); r();
    const r2 = await next;
    expect(lock.locked).toBe(true);   // the second release call did not free it under the next holder
    r2();
    expect(lock.locked).toBe(false);
  });
});

/** A generator that holds `lock` from its first step until it ends, like Model.stream. */
function holder(lock: ModelLock, log: string[], n = 5): AsyncGenerator<number, void, undefined> {
  return (async function* () {
    const release = await lock.acquire();
    try {
      for (let i = 0; i < n; i++) yield i;
    } finally {
      log.push('released');
      release();
    }
  })();
}

describe('ModelStream', () => {
  it('passes events through and ends normally', async () => {
    const lock = new ModelLock();
    const log: string[] = [];
    const got: number[] = [];
    for await (const x of new ModelStream(holder(lock, log), { idleMs: 0 })) got.push(x);
    expect(got).toEqual([0, 1, 2, 3, 4]);
    expect(log).toEqual(['released']);
  });

  it('closes itself after idleMs without a next() call: the lock comes back, the next next() rejects', async () => {
    const lock = new ModelLock();
    const log: string[] = [];
    const s = new ModelStream(holder(lock, log), { idleMs: 30 });
    await s.next();
    expect(lock.locked).toBe(true);
    const r = await lock.acquire();   // waits for the idle close
    expect(log).toEqual(['released']);
    r();
    await expect(s.next()).rejects.toMatchObject({ name: 'AbortError', code: 'DVL_STREAM_IDLE' });
    expect(await s.next()).toEqual({ done: true, value: undefined });
  });

  it('a signal that aborts while idle closes it with the reason', async () => {
    const lock = new ModelLock();
    const log: string[] = [];
    const ac = new AbortController();
    const s = new ModelStream(holder(lock, log), { idleMs: 0, signal: ac.signal });
    await s.next();
    ac.abort(new Error('client gone'));
    (await lock.acquire())();
    expect(log).toEqual(['released']);
    await expect(s.next()).rejects.toThrow('client gone');
  });

  it('return() runs the clean-up at once; later next() is done', async () => {
    const lock = new ModelLock();
    const log: string[] = [];
    const s = new ModelStream(holder(lock, log), { idleMs: 0 });
    await s.next();
    await s.return();
    expect(log).toEqual(['released']);
    expect(lock.locked).toBe(false);
    expect((await s.next()).done).toBe(true);
  });
});
