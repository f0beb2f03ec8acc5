// CUDA attention (csrc/cuda/ops_attention.cu) against a float64 reference and the CPU op:
// GQA, masks causal / block / full / segments exactly as csrc/cpu/ops/attention.cpp, K/V cache
// f32/bf16/f16, odd head dims, an empty cache (zeros), NaN in a value no row can see (must not
// leak), NaN in q (its rows NaN); the tiled kernel with and without a split key axis, and the
// warp-per-row kernel (hd 200, 512).
//
// Tolerance abs 1e-4 + rel 1e-4: the f32 score error is ≈ hd·2⁻²⁴·scale·Σ|q·k| ≈ 2e-5 at these
// sizes (|q|, |k| ≤ 1, hd ≤ 128) and both backends exponentiate with 1–2 ulp approximations;
// outputs are O(1) averages of |v| ≤ 1.
import { describe, it } from 'vitest';
import { attentionRef } from '../helpers/attention-ref.js';
import { expectGpuMatchesCpu, expectSame, gpuProbe, randTensor, runBoth, title, values } from './ops-helpers.js';

const p = gpuProbe();
const TOL = { abs: 1e-4, rel: 1e-4 };

interface Case {
  mask: 'causal' | 'block' | 'full' | 'segments';
  Tq: number; nh: number; nkv: number; hd: number; cap: number; kvLen: number; qPos0: number;
  blockSize?: number; segments?: number[]; nanMasked?: boolean; nanQ?: boolean;
}

/** The shared float64 reference (test/helpers/attention-ref.ts) under this case's mask. */
function reference(c: Case, q: Float32Array, k: Float32Array, v: Float32Array): Float64Array {
  return attentionRef(q, k, v, c);
}

const cases: Case[] = [
  { mask: 'causal', Tq: 7, nh: 6, nkv: 2, hd: 64, cap: 40, kvLen: 27, qPos0: 20, nanMasked: true },
  { mask: 'block', Tq: 8, nh: 4, nkv: 4, hd: 128, cap: 40, kvLen: 24, qPos0: 16, blockSize: 8, nanMasked: true },
  { mask: 'block', Tq: 5, nh: 4, nkv: 1, hd: 33, cap: 40, kvLen: 39, qPos0: 31, blockSize: 4 },
  { mask: 'full', Tq: 3, nh: 3, nkv: 1, hd: 33, cap: 70, kvLen: 67, qPos0: 0 },
  { mask: 'segments', Tq: 33, nh: 2, nkv: 1, hd: 16, cap: 33, kvLen: 33, qPos0: 0, segments: [0, 7, 7, 20, 33] },
  { mask: 'full', Tq: 2, nh: 2, nkv: 2, hd: 8, cap: 5, kvLen: 0, qPos0: 0 },
  { mask: 'causal', Tq: 1, nh: 14, nkv: 2, hd: 64, cap: 1100, kvLen: 1029, qPos0: 1028 },
  { mask: 'full', Tq: 3, nh: 2, nkv: 1, hd: 7, cap: 9, kvLen: 9, qPos0: 0, nanQ: true },
  // few blocks, long context: the key axis is split and merged (flash-decoding)
  { mask: 'block', Tq: 8, nh: 4, nkv: 2, hd: 128, cap: 2048, kvLen: 2008, qPos0: 2000, blockSize: 8, nanMasked: true },
  // head dims too large for the tiled kernel's shared memory: the warp-per-row kernel
  { mask: 'causal', Tq: 5, nh: 4, nkv: 2, hd: 200, cap: 40, kvLen: 30, qPos0: 25, nanMasked: true },
  { mask: 'full', Tq: 3, nh: 2, nkv: 1, hd: 512, cap: 70, kvLen: 67, qPos0: 0 },
];

describe.skipIf(!p.available)(title('attention', p), () => {
  const dts = ['f32', 'bf16', 'f16'] as const;
  it.each(dts.flatMap((dt) => cases.map((c, ci) => [dt, ci] as const)))('%s K/V, case %i', async (dt, ci) => {
    const c = cases[ci];
    const q = randTensor('f32', [c.Tq, c.nh, c.hd], 400 + ci, -1, 1, !!c.nanQ);
    const k = randTensor(dt, [c.nkv, c.cap, c.hd], 500 + ci);
    let v = randTensor(dt, [c.nkv, c.cap, c.hd], 600 + ci);
    if (c.nanMasked) {
      // NaN in the value at position kvLen of every kv head: no row sees it.
      const f = Float32Array.from(v.f32);
      for (let g = 0; g < c.nkv; g++) f[(g * c.cap + c.kvLen) * c.hd] = NaN;
      const { tensorFromArray } = await import('../../lib/native/index.js');
      const { toBf16, toF16 } = await import('../helpers/random.js');
      v = { t: tensorFromArray(dt, v.t.shape!, dt === 'f32' ? f : dt === 'bf16' ? toBf16(f) : toF16(f)), f32: f };
    }
    const attrs = { kvLen: c.kvLen, qPos0: c.qPos0, mask: c.mask, ...(c.blockSize ? { blockSize: c.blockSize } : {}), ...(c.segments ? { segments: c.segments } : {}) };
    const label = `${c.mask} ${dt} Tq${c.Tq} nh${c.nh}/${c.nkv} hd${c.hd} kv${c.kvLen}`;
    const { gpu } = await runBoth('attention', [q.t, k.t, v.t], attrs);
    if (!c.nanQ) expectSame(gpu[0], reference(c, q.f32, k.f32, v.f32), TOL, `${label} vs float64`);
    await expectGpuMatchesCpu('attention', [q.t, k.t, v.t], attrs, TOL, `${label} vs CPU op`);
  });
});

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
