// CUDA attention_batch and kv_cache_append_batch (csrc/cuda/ops_attention.cu, ops_shape.cu)
// against the CPU op. The single-sequence attention cases (GQA, every mask, f32/bf16/f16 caches,
// odd head dims, an empty cache, NaN in a value no row sees, NaN in q, split key axis, the
// warp-per-row kernel) are in the shared table, op-cases.json, against the CPU op and float64.
import { describe, it } from 'vitest';
import { expectGpuMatchesCpu, expectSame, gpuProbe, randTensor, title, values } from './ops-helpers.js';

const p = gpuProbe();
const TOL = { abs: 1e-4, rel: 1e-4 };  // op-cases.json's "attention" tolerance: the reason is there

// The batched ops of continuous batching (attention_batch, kv_cache_append_batch): several
// sequences on their own cache slots in one op, against the CPU op (itself equal to per-sequence
// attention bit for bit, test/ops/batch.test.ts). Same tolerance as above.
describe.skipIf(!p.available)(title('attention_batch / kv_cache_append_batch', p), () => {
  // row0, row1, slot, pos0, mask (0 causal, 1 block, 2 full), bs
  const seqs = [0, 8, 2, 40, 1, 8, 8, 24, 0, 16, 1, 8, 24, 25, 3, 77, 0, 0, 25, 34, 1, 30, 2, 0];
  it.each(['f32', 'bf16', 'f16'] as const)('%s caches: 4 sequences, 4 slots', async (dt) => {
    const q = randTensor('f32', [34, 6, 64], 900);
    const k = randTensor(dt, [4, 2, 96, 64], 901), v = randTensor(dt, [4, 2, 96, 64], 902);
    await expectGpuMatchesCpu('attention_batch', [q.t, k.t, v.t], { seqs }, TOL, `attention_batch ${dt}`);
    // In place: two identical copies of the cache, one per backend, compared exactly.
    const { Queue } = await import('../../lib/native/index.js');
    const { cudaRunOp } = await import('../../lib/native/backend.js');
    const cq = new Queue({ threads: 2 });
    try {
      const cpuCache = cq.convert(k.t, dt), gpuCache = cq.convert(k.t, dt);
      const x = randTensor('f32', [34, 2, 64], 903).t;
      cq.kvCacheAppendBatch(cpuCache, x, seqs);
      await cq.sync();
      cudaRunOp('kv_cache_append_batch', [gpuCache, x], { seqs });
      expectSame(values(await cq.read(gpuCache), dt), values(await cq.read(cpuCache), dt), { abs: 0, rel: 0 }, `kv_cache_append_batch ${dt}`);
    } finally {
      cq.dispose();
    }
  });
});
