// Event-loop responsiveness during generation. Timing-sensitive, so it runs in its own vitest
// pass with no other test file in parallel (vitest.timing.config.ts, second half of npm test):
// what it measures is our synchronous JS work per forward, not another fork's CPU use.
import { rmSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { loadModel, type Model } from '../../lib/index.js';
import { writeTinyModel } from '../helpers/tinyModel.js';

describe('event loop', () => {
  it('generation never blocks the event loop (p99 timer lag < 20 ms)', async () => {
    // A mid-size model: each forward is a few ms of native work.
    const mid = await writeTinyModel({ diffusion: true, seed: 5, dims: { hiddenSize: 256, numLayers: 4, numHeads: 8, numKvHeads: 2, intermediateSize: 640, vocabSize: 2048 } });
    // One kernel thread: on a 2-core machine that leaves a core for the event loop, so what the
    // test measures is our own synchronous JS work per forward, not CPU oversubscription.
    const model: Model = await loadModel(mid.dir, { threads: 1 });
    const lags: number[] = [];
    let last = performance.now();
    const timer = setInterval(() => { const now = performance.now(); lags.push(now - last - 5); last = now; }, 5);
    const r = await model.generate({ prompt: 'Tell me a story about a robot.', maxTokens: 96, steps: 4, stopTokens: [] });
    clearInterval(timer);
    model.dispose();
    rmSync(mid.dir, { recursive: true, force: true });
    lags.sort((x, y) => x - y);
    const p99 = lags[Math.floor(lags.length * 0.99)];
    expect(r.stats.forwards).toBeGreaterThan(20);
    expect(lags.length).toBeGreaterThan(10);
    expect(p99).toBeLessThan(20);
  });
});
