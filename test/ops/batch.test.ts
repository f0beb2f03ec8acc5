// attention_batch and kv_cache_append_batch: several sequences in one op (continuous batching).
// The contract is exactness, not closeness: each sequence's rows must equal, bit for bit, the
// unbatched op on that sequence alone (attention on its slot with kvLen = pos0 + n, qPos0 = pos0;
// kv_cache_append at pos0) — that is what makes a batched request's tokens equal its
// unbatched run. One case is also held against the float64 reference (tolerance as in
// attention.test.ts). Every ISA level this machine has; odd sizes; f32/bf16/f16 caches; NaN
// sentinels in every cache position no sequence may read.
import { describe, expect, it } from 'vitest';
import { Queue, nativeInfo, tensorFromArray, type Tensor } from '../../lib/native/index.js';
import { OutOfRangeError, ShapeError } from '../../lib/errors.js';
import { expectClose } from '../helpers/compare.js';
import { normal, rng, toBf16, toF16 } from '../helpers/random.js';
import { attentionRef } from './reference.js';

type KvDtype = 'f32' | 'bf16' | 'f16';
interface Seq { n: number; slot: number; pos0: number; mask: 0 | 1 | 2; bs: number }

function bits(a: Float32Array): Uint32Array { return new Uint32Array(a.buffer, a.byteOffset, a.length); }

function seqsAttr(seqs: readonly Seq[]): number[] {
  const out: number[] = [];
  let row = 0;
  for (const s of seqs) { out.push(row, row + s.n, s.slot, s.pos0, s.mask, s.bs); row += s.n; }
  return out;
}

/** S slots of [nkv, cap, hd] values; positions ≥ valid[slot] hold NaN (must never be read). */
function slotValues(r: () => number, S: number, nkv: number, cap: number, hd: number, valid: number[]): Float32Array {
  const x = normal(r, S * nkv * cap * hd);
  for (let s = 0; s < S; s++) for (let g = 0; g < nkv; g++) for (let j = valid[s]; j < cap; j++) {
    for (let d = 0; d < hd; d++) x[((s * nkv + g) * cap + j) * hd + d] = NaN;
  }
  return x;
}

function asDtype(dtype: KvDtype, shape: number[], x: Float32Array): Tensor {
  if (dtype === 'f32') return tensorFromArray('f32', shape, x);
  return tensorFromArray(dtype, shape, dtype === 'bf16' ? toBf16(x) : toF16(x));
}

const LAYOUTS: { name: string; nkv: number; group: number; hd: number; cap: number; S: number; seqs: Seq[] }[] = [
  { name: 'decode mix: block steps, a merged commit, an AR step', nkv: 2, group: 7, hd: 64, cap: 96, S: 4, seqs: [
    { n: 8, slot: 2, pos0: 40, mask: 1, bs: 8 }, { n: 16, slot: 0, pos0: 16, mask: 1, bs: 8 }, { n: 1, slot: 3, pos0: 77, mask: 0, bs: 0 },
    { n: 8, slot: 1, pos0: 8, mask: 1, bs: 8 },
  ] },
  { name: 'prefill chunks beside decodes, odd sizes', nkv: 3, group: 2, hd: 33, cap: 70, S: 3, seqs: [
    { n: 13, slot: 1, pos0: 0, mask: 0, bs: 0 }, { n: 5, slot: 0, pos0: 21, mask: 1, bs: 7 }, { n: 21, slot: 2, pos0: 14, mask: 1, bs: 7 },
  ] },
  { name: 'one sequence, full mask, MHA', nkv: 4, group: 1, hd: 80, cap: 40, S: 2, seqs: [{ n: 9, slot: 1, pos0: 30, mask: 2, bs: 0 }] },
];

describe.each(nativeInfo().isaLevels)('batched ops at isa %s', (isa) => {
  it.each(LAYOUTS)('attention_batch = attention per sequence, bit for bit: $name', async (L) => {
    const q = new Queue({ isa, threads: 2 });
    const r = rng(L.hd + L.S);
    const nh = L.nkv * L.group, T = L.seqs.reduce((n, s) => n + s.n, 0);
    const valid = Array.from({ length: L.S }, (_, s) => Math.max(0, ...L.seqs.filter((x) => x.slot === s).map((x) => x.pos0 + x.n)));
    for (const dtype of ['f32', 'bf16', 'f16'] as KvDtype[]) {
      const kv = slotValues(r, L.S, L.nkv, L.cap, L.hd, valid), vv = slotValues(r, L.S, L.nkv, L.cap, L.hd, valid);
      const qv = normal(r, T * nh * L.hd);
      const shape = [L.S, L.nkv, L.cap, L.hd];
      const o = q.attentionBatch(tensorFromArray('f32', [T, nh, L.hd], qv), asDtype(dtype, shape, kv), asDtype(dtype, shape, vv), seqsAttr(L.seqs));
      const got = await q.readF32(o);
      expect(got.some(Number.isNaN)).toBe(false);
      let row = 0;
      const slotLen = L.nkv * L.cap * L.hd, rowLen = nh * L.hd;
      for (const s of L.seqs) {
        const k1 = asDtype(dtype, [L.nkv, L.cap, L.hd], kv.subarray(s.slot * slotLen, (s.slot + 1) * slotLen));
        const v1 = asDtype(dtype, [L.nkv, L.cap, L.hd], vv.subarray(s.slot * slotLen, (s.slot + 1) * slotLen));
        const mask = (['causal', 'block', 'full'] as const)[s.mask];
        const one = q.attention(tensorFromArray('f32', [s.n, nh, L.hd], qv.subarray(row * rowLen, (row + s.n) * rowLen)), k1, v1,
          { kvLen: s.pos0 + s.n, qPos0: s.pos0, mask, blockSize: s.bs || undefined });
        const want = await q.readF32(one);
        expect(bits(got.subarray(row * rowLen, (row + s.n) * rowLen))).toEqual(bits(want));
        row += s.n;
      }
    }
    q.dispose();
  });

  it.each(LAYOUTS)('attention_batch over picked rows (input rows) = those rows of the full call, bit for bit: $name', async (L) => {
    // The last layer of a forward attends only the rows it keeps (decoder.ts attend): q holds
    // rows gathered from the layout, in sequence order, out of order inside a sequence and
    // repeated (a batch pads its logit rows by repeating the last).
    const q = new Queue({ isa, threads: 2 });
    const r = rng(L.hd + 3 * L.S);
    const nh = L.nkv * L.group, T = L.seqs.reduce((n, s) => n + s.n, 0), rowLen = nh * L.hd;
    const valid = Array.from({ length: L.S }, (_, s) => Math.max(0, ...L.seqs.filter((x) => x.slot === s).map((x) => x.pos0 + x.n)));
    const picks: number[] = [];
    let row0 = 0;
    for (const s of L.seqs) {
      const mine = [s.n - 1, 0, Math.floor(s.n / 2)].filter((x, i, a) => a.indexOf(x) === i).map((x) => row0 + x);
      picks.push(...mine);
      row0 += s.n;
    }
    picks.push(picks[picks.length - 1]!);
    for (const dtype of ['f32', 'bf16'] as KvDtype[]) {
      const shape = [L.S, L.nkv, L.cap, L.hd];
      const k = asDtype(dtype, shape, slotValues(r, L.S, L.nkv, L.cap, L.hd, valid)), v = asDtype(dtype, shape, slotValues(r, L.S, L.nkv, L.cap, L.hd, valid));
      const qv = normal(r, T * rowLen);
      const full = await q.readF32(q.attentionBatch(tensorFromArray('f32', [T, nh, L.hd], qv), k, v, seqsAttr(L.seqs)));
      const qp = new Float32Array(picks.length * rowLen);
      picks.forEach((p, i) => qp.set(qv.subarray(p * rowLen, (p + 1) * rowLen), i * rowLen));
      const got = await q.readF32(q.attentionBatch(tensorFromArray('f32', [picks.length, nh, L.hd], qp), k, v, seqsAttr(L.seqs), undefined,
        tensorFromArray('i32', [picks.length], Int32Array.from(picks))));
      picks.forEach((p, i) => expect(bits(got.subarray(i * rowLen, (i + 1) * rowLen)), `${dtype} pick ${i} (row ${p})`).toEqual(bits(full.subarray(p * rowLen, (p + 1) * rowLen))));
    }
    q.dispose();
  });

  it('kv_cache_append_batch = kv_cache_append per sequence, bit for bit', async () => {
    const q = new Queue({ isa, threads: 2 });
    const r = rng(3);
    const L = LAYOUTS[1], T = L.seqs.reduce((n, s) => n + s.n, 0);
    for (const dtype of ['f32', 'bf16', 'f16'] as KvDtype[]) {
      const x = normal(r, T * L.nkv * L.hd);
      const batched = q.empty(dtype, [L.S, L.nkv, L.cap, L.hd]);
      q.kvCacheAppendBatch(batched, tensorFromArray('f32', [T, L.nkv, L.hd], x), seqsAttr(L.seqs));
      const all = await q.read(batched);
      let row = 0;
      const slotLen = L.nkv * L.cap * L.hd;
      for (const s of L.seqs) {
        const one = q.empty(dtype, [L.nkv, L.cap, L.hd]);
        q.kvCacheAppend(one, tensorFromArray('f32', [s.n, L.nkv, L.hd], x.subarray(row * L.nkv * L.hd, (row + s.n) * L.nkv * L.hd)), s.pos0);
        expect(Array.from(all.subarray(s.slot * slotLen, (s.slot + 1) * slotLen))).toEqual(Array.from(await q.read(one)));
        row += s.n;
      }
    }
    q.dispose();
  });
});

describe('attention_batch', () => {
  it('matches the float64 reference (one mixed layout)', async () => {
    const q = new Queue({ threads: 2 });
    const r = rng(11);
    const L = LAYOUTS[1], nh = L.nkv * L.group, T = L.seqs.reduce((n, s) => n + s.n, 0);
    const valid = [L.cap, L.cap, L.cap];
    const kv = slotValues(r, L.S, L.nkv, L.cap, L.hd, valid), vv = slotValues(r, L.S, L.nkv, L.cap, L.hd, valid);
    const qv = normal(r, T * nh * L.hd);
    const shape = [L.S, L.nkv, L.cap, L.hd];
    const got = await q.readF32(q.attentionBatch(tensorFromArray('f32', [T, nh, L.hd], qv), tensorFromArray('f32', shape, kv), tensorFromArray('f32', shape, vv), seqsAttr(L.seqs)));
    let row = 0;
    const slotLen = L.nkv * L.cap * L.hd, rowLen = nh * L.hd;
    for (const s of L.seqs) {
      const want = attentionRef(qv.subarray(row * rowLen, (row + s.n) * rowLen), kv.subarray(s.slot * slotLen, (s.slot + 1) * slotLen),
        vv.subarray(s.slot * slotLen, (s.slot + 1) * slotLen),
        { Tq: s.n, nh, nkv: L.nkv, hd: L.hd, cap: L.cap, kvLen: s.pos0 + s.n, qPos0: s.pos0, mask: (['causal', 'block', 'full'] as const)[s.mask], blockSize: s.bs || 1 });
      expectClose(got.subarray(row * rowLen, (row + s.n) * rowLen), want, { abs: 2e-5, rel: 1e-5 });
      row += s.n;
    }
    q.dispose();
  });

  it('rejects bad layouts with typed errors naming the sequence', () => {
    const q = new Queue({ threads: 1 });
    const qt = tensorFromArray('f32', [10, 2, 4], new Float32Array(80));
    const k = q.empty('f32', [2, 1, 16, 4]);
    const ok = [0, 6, 0, 0, 1, 4, 6, 10, 1, 3, 0, 0];
    expect(q.attentionBatch(qt, k, k, ok).shape).toEqual([10, 2, 4]);
    expect(() => q.attentionBatch(qt, k, k, [0, 6, 0, 0, 1, 4, 7, 10, 1, 3, 0, 0])).toThrow(/sequence 1: rows must follow/);
    expect(() => q.attentionBatch(qt, k, k, [0, 6, 0, 0, 1, 4, 6, 9, 1, 3, 0, 0])).toThrow(ShapeError);
    expect(() => q.attentionBatch(qt, k, k, [0, 10, 2, 0, 1, 4])).toThrow(/slot 2 of 2/);
    expect(() => q.attentionBatch(qt, k, k, [0, 10, 1, 7, 1, 4])).toThrow(OutOfRangeError);
    expect(() => q.attentionBatch(qt, k, k, [0, 10, 1, 0, 1, 0])).toThrow(/needs bs >= 1/);
    expect(() => q.attentionBatch(qt, k, k, [0, 10, 1, 0, 1])).toThrow(/6 numbers per sequence/);
    expect(() => q.kvCacheAppendBatch(k, tensorFromArray('f32', [10, 1, 4], new Float32Array(40)), [0, 10, 0, 7, 0, 0])).toThrow(/exceed the cache capacity 16/);
    q.dispose();
  });

  it('rejects bad picked rows with typed errors', async () => {
    const q = new Queue({ threads: 1 });
    const k = q.empty('f32', [2, 1, 16, 4]);
    const seqs = [0, 6, 0, 0, 1, 4, 6, 10, 1, 3, 0, 0];
    const q3 = tensorFromArray('f32', [3, 2, 4], new Float32Array(24));
    const rows = (...r: number[]) => tensorFromArray('i32', [r.length], Int32Array.from(r));
    expect(q.attentionBatch(q3, k, k, seqs, undefined, rows(5, 1, 9)).shape).toEqual([3, 2, 4]);
    expect(() => q.attentionBatch(q3, k, k, seqs, undefined, rows(1, 2))).toThrow(ShapeError);   // one per q row
    expect(() => q.attentionBatch(q3, k, k, seqs, undefined, tensorFromArray('f32', [3], new Float32Array(3)))).toThrow(/attention_batch/);
    // Values are read when the op runs (they may come from an earlier op): the error comes with the result.
    await expect(q.readF32(q.attentionBatch(q3, k, k, seqs, undefined, rows(1, 10, 2)))).rejects.toThrow(/rows\[1\] = 10 is outside the layout's 10 rows/);
    await expect(q.readF32(q.attentionBatch(q3, k, k, seqs, undefined, rows(7, 2, 8)))).rejects.toThrow(OutOfRangeError);
    await expect(q.readF32(q.attentionBatch(q3, k, k, seqs, undefined, rows(-1, 2, 8)))).rejects.toThrow(OutOfRangeError);
    q.dispose();
  });
});
