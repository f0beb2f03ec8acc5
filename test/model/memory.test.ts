// lib/model/memory.ts: the load-time estimate. Its weight bytes must equal what the loader then
// holds (same dtype rules), the KV cache follows its formula, and the check names the numbers
// and what to change.
import { describe, expect, it } from 'vitest';
import { MemoryError } from '../../lib/errors.js';
import { loadModel } from '../../lib/index.js';
import { checkMemory, estimateMemory, formatBytes } from '../../lib/model/memory.js';
import { readConfig } from '../../lib/weights/config.js';
import { bundledModelDir } from '../../lib/models.js';
import { writeTinyModel } from '../helpers/tinyModel.js';

describe('memory estimate', () => {
  it('weights: equal to the bytes the loader holds (bundled VLM, bf16 as stored, f32 and q8)', async () => {
    for (const dtype of [undefined, 'f32', 'q8'] as const) {
      const m = await loadModel(undefined, { threads: 1, dtype });
      try {
        expect(m.memory.weightsBytes, String(dtype)).toBe(m.weightBytes);
        expect(m.memory.weightDtype).toBe(dtype ?? 'bf16');
      } finally {
        m.dispose();
      }
    }
    const text = await writeTinyModel({ diffusion: true, dtype: 'f16', seed: 4 });
    const m = await loadModel(text.dir, { threads: 1 });
    try {
      // tinyModel's config has no torch_dtype, so the estimate assumes bf16 = f16's size.
      expect(m.memory.weightsBytes).toBe(m.weightBytes);
    } finally {
      m.dispose();
    }
  });

  it('KV cache: 2 · layers · kv heads · context · head dim · 4 bytes; vision counted only when loaded', async () => {
    const cfg = await readConfig(bundledModelDir());
    const t = cfg.text;
    const e = estimateMemory(cfg, { contextLength: 1000 });
    expect(e.kvCacheBytes).toBe(2 * t.numLayers * t.numKvHeads * 1000 * t.headDim * 4);
    expect(e.kvBytesPerPosition * 1000).toBe(e.kvCacheBytes);
    expect(e.visionBytes).toBeGreaterThan(0);
    expect(estimateMemory(cfg, { contextLength: 1000, vision: false }).visionBytes).toBe(0);
    expect(e.totalBytes).toBe(e.weightsBytes + e.kvCacheBytes + e.activationBytes + e.visionBytes);
  });

  it('an absurd config gives a finite, huge estimate at once (no per-layer loop)', async () => {
    const cfg = await readConfig(bundledModelDir());
    const absurd = { ...cfg, text: { ...cfg.text, numLayers: 1e9 } };
    const e = estimateMemory(absurd, { contextLength: 1024 });
    expect(Number.isFinite(e.totalBytes)).toBe(true);
    expect(e.weightsBytes).toBeGreaterThan(1e14);
  });

  it('the check names the parts and the context length that would fit', async () => {
    const cfg = await readConfig(bundledModelDir());
    const e = estimateMemory(cfg, { contextLength: 1 << 20 });
    const available = e.totalBytes / 4;
    let err: MemoryError | undefined;
    try { checkMemory(e, available, 'here'); } catch (x) { err = x as MemoryError; }
    expect(err).toBeInstanceOf(MemoryError);
    expect(err!.code).toBe('DVL_MEMORY');
    expect(err!.requiredBytes).toBe(e.totalBytes);
    expect(err!.availableBytes).toBe(available);
    expect(err!.message).toMatch(new RegExp(`^here: the load needs about ${formatBytes(e.totalBytes).replace('.', '\\.')} of host memory`));
    const fit = Number(/lower contextLength to (\d+) or less/.exec(err!.message)![1]);
    expect(fit).toBeGreaterThan(0);
    expect(estimateMemory(cfg, { contextLength: fit }).totalBytes).toBeLessThanOrEqual(available);
    expect(() => checkMemory(e, e.totalBytes, 'here')).not.toThrow();
  });

  it('loadModel refuses before allocating; memoryCheck: false loads anyway', async () => {
    const e = await loadModel(undefined, { threads: 1, contextLength: 1 << 24 }).catch((x) => x);
    expect(e).toBeInstanceOf(MemoryError);
    const m = await loadModel(undefined, { threads: 1, contextLength: 2048, memoryCheck: false });
    expect(m.contextLength).toBe(2048);
    m.dispose();
  });
});
