// The queue's counters (model.execution.queue, csrc/core/queue.h) and the kernel pool's wake
// after an idle spell (ThreadPool::wake): the counters add up, a one-thread model never forks,
// and answers do not depend on whether the workers were asleep, spinning or woken early — nor
// on a request's prewarm of the queue thread (ExecQueue::prewarm) or on the event loop polling
// through decode steps (pollSteps).
// Nothing here is timed: whether a worker joins a given fork depends on the machine's load.
import { describe, expect, it } from 'vitest';
import { loadModel } from '../../lib/index.js';
import { Queue, tensorFromArray } from '../../lib/native/index.js';

const MODEL = 'models/shapes-diffusionvl';
const req = {
  messages: [{ role: 'user' as const, content: [{ type: 'image' as const, image: 'examples/three-shapes.png' }, { type: 'text' as const, text: 'Describe the image.' }] }],
  maxTokens: 24,
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('queue counters and the pool wake', () => {
  it('one thread: jobs and idle starts counted, no fork', async () => {
    await using m = await loadModel(MODEL, { threads: 1 });
    await m.generate(req);
    const q = m.execution.queue;
    expect(q.jobs).toBeGreaterThan(0);
    expect(q.idleStarts).toBeGreaterThan(0);
    expect(q.idleStarts).toBeLessThanOrEqual(q.jobs);
    expect(q.forks).toBe(0);
    expect(q.forksJoined).toBe(0);
  });

  it('two threads: the tower forks, joined ≤ forks, and answers equal one thread\'s after idle spells that put the workers to sleep', async () => {
    await using one = await loadModel(MODEL, { threads: 1 });
    const want = (await one.generate(req)).ids;
    await using m = await loadModel(MODEL, { threads: 2 });
    let forks = 0;
    for (const idleMs of [0, 30, 0, 30]) {
      await sleep(idleMs);   // 30 ms: far past the workers' spin budget, so they sleep and are woken
      expect((await m.generate(req)).ids).toEqual(want);
      const q = m.execution.queue;
      expect(q.forks).toBeGreaterThan(forks);   // every request's vision tower splits its attention
      expect(q.forksJoined).toBeGreaterThanOrEqual(0);
      expect(q.forksJoined).toBeLessThanOrEqual(q.forks);
      forks = q.forks;
    }
  });

  it('one-thread work leaves the workers asleep: a small model\'s text decode wakes the pool never, a picture does', async () => {
    // The bundled parent's decode steps are one-row forwards whose every op runs on the queue
    // thread (plan.cpp serial_op), so replaying them must not wake the workers (ExecQueue::push
    // wants_pool): on two cores a spinning worker took a core from the JS thread (the same
    // decode used 17 % less CPU time without it). The vision tower's attention and the
    // picture's resize do split, and do wake them.
    await using m = await loadModel('models/shapes-ar', { threads: 2 });
    const text = { prompt: 'Describe the image.', maxTokens: 16, stopTokens: [] as number[] };
    for (let i = 0; i < 3; i++) await m.generate(text);   // record the plans
    const a = m.execution.queue;
    for (let i = 0; i < 3; i++) await m.generate(text);
    const b = m.execution.queue;
    // 3 requests, each a prefill and ≥ 15 decode steps: at most one wake each (the prefill's
    // attention is judged worth splitting), none per step.
    expect(b.jobs - a.jobs).toBeGreaterThanOrEqual(3 * 16);
    expect(b.poolWakes - a.poolWakes).toBeLessThanOrEqual(3);
    await m.generate(req);
    const c = m.execution.queue;
    expect(c.poolWakes).toBeGreaterThan(b.poolWakes);
    expect(c.forks).toBeGreaterThan(b.forks);
  });

  it('prewarm: jobs pushed during, after and long after its spin run and give the same results; bad arguments and a disposed queue are ignored', async () => {
    // The queue thread's idle loop (queue.cpp): a prewarm ends its sleep or extends its spin,
    // and the loop must still pick up every job, sleep again after the deadline and stop on
    // dispose — a mistake there hangs (the test's timeout) or drops a job (a wrong sum).
    for (const threads of [1, 2]) {
      const q = new Queue({ threads });
      const x = tensorFromArray('f32', [3], new Float32Array([1, 2, 3]));
      const sum = async () => Array.from(await q.readF32(q.add(x, x)));
      q.prewarm(2000, threads > 1);
      expect(await sum()).toEqual([2, 4, 6]);                          // pushed while it spins
      for (let i = 0; i < 50; i++) q.prewarm(1000);                    // spins extended back to back
      expect(await sum()).toEqual([2, 4, 6]);
      q.prewarm(300);
      await sleep(10);                                                 // past the spin: asleep again
      expect(await sum()).toEqual([2, 4, 6]);
      const pending = q.add(x, x);
      q.prewarm(500);                                                  // while a job is queued
      expect(Array.from(await q.readF32(pending))).toEqual([2, 4, 6]);
      for (const bad of [-1, 0, Number.NaN, 1e12, 'x' as unknown as number]) q.prewarm(bad);
      expect(await sum()).toEqual([2, 4, 6]);
      q.prewarm(5000);
      q.dispose();                                                     // stops a prewarmed thread
      expect(() => q.prewarm(1000)).not.toThrow();
    }
  });

  it('a request\'s answer is the same with the event loop polling through its decode steps or sleeping (pollSteps)', async () => {
    await using polls = await loadModel(MODEL, { threads: 2, pollSteps: true });
    await using sleeps = await loadModel(MODEL, { threads: 2 });
    expect(polls.batching).toMatchObject({ pollSteps: true });
    expect(sleeps.batching).toMatchObject({ pollSteps: false });
    for (const r of [req, { ...req, remasking: 'static' as const, steps: 4 }, { ...req, mode: 'ar' as const }]) {
      const [a, b] = await Promise.all([polls.generate(r), sleeps.generate(r)]);
      expect(a.ids).toEqual(b.ids);
      expect(a.stats.forwards).toBe(b.stats.forwards);
    }
  });

  it('one thread: the pool is never woken', async () => {
    await using m = await loadModel(MODEL, { threads: 1 });
    await m.generate(req);
    expect(m.execution.queue.poolWakes).toBe(0);
  });
});
