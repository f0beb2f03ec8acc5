// The queue's counters (model.execution.queue, csrc/core/queue.h) and the kernel pool's wake
// after an idle spell (ThreadPool::wake): the counters add up, a one-thread model never forks,
// and answers do not depend on whether the workers were asleep, spinning or woken early.
// Nothing here is timed: whether a worker joins a given fork depends on the machine's load.
import { describe, expect, it } from 'vitest';
import { loadModel } from '../../lib/index.js';

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
});
