// attention (flash-style, online softmax over KV tiles) against a plain float64
// softmax(QKᵀ·scale + mask)V with an explicit mask predicate (test/ops/reference.ts), at every
// ISA level: every mask, GQA ratios 1/2/3/7, hd 24/32 (256-key tiles) and 8/64/72/80/128 and odd 33
// (64-key tiles), Tq 1/8/16/300, kvLen up to 600,
// qPos0 offsets, f32/bf16/f16 caches. Then the property the decoder relies on: a block-causal
// prefill equals running the same blocks one at a time against a cache filled by
// kv_cache_append.
import { describe, expect, it } from 'vitest';
import { Queue, nativeInfo, tensorFromArray, type AttentionOptions } from '../../lib/native/index.js';
import type { Tensor } from '../../lib/native/index.js';
import { DTypeError, DiffusionVLError, DisposedError, OutOfRangeError, ShapeError } from '../../lib/errors.js';
import { compareArrays, expectClose, expectSameBits } from '../helpers/compare.js';
import { fromBf16, fromF16, normal, rng, toBf16, toF16 } from '../helpers/random.js';
import { attentionRef, type AttentionRefOptions, type MaskKind } from './reference.js';

// Tolerance: each score is an f32 dot of length hd (error ≲ √hd·2^-24·Σ|q·k|·scale ≈ 1e-6 for
// unit-normal q, k), which moves each probability by that much relatively; the output is an f32
// running sum of ≤ 600 terms p·v with |v| ≲ 4, rescaled a few times (online softmax), each step
// rounding by 2^-24 of the running value: ≤ ~1e-5 absolute in the worst case seen by the bound,
// far less in practice. abs 2e-5 + rel 1e-5 states that bound with no extra slack.
const TOL = { abs: 2e-5, rel: 1e-5 };

type KvDtype = 'f32' | 'bf16' | 'f16';

interface Case { nkv: number; group: number; hd: number; Tq: number; kvLen: number; cap: number; qPos0: number; bs: number }

const CASES: Case[] = [
  { nkv: 2, group: 7, hd: 64, Tq: 8, kvLen: 600, cap: 600, qPos0: 592, bs: 8 },  // Qwen2.5-0.5B decode step
  { nkv: 1, group: 1, hd: 80, Tq: 16, kvLen: 16, cap: 20, qPos0: 0, bs: 8 },     // MHA, whole context in the queries
  { nkv: 2, group: 2, hd: 128, Tq: 1, kvLen: 333, cap: 340, qPos0: 332, bs: 8 },  // one query row at the end
  { nkv: 3, group: 7, hd: 33, Tq: 16, kvLen: 127, cap: 130, qPos0: 50, bs: 7 },   // odd hd, blocks not aligned to Tq
  { nkv: 4, group: 2, hd: 64, Tq: 8, kvLen: 257, cap: 300, qPos0: 100, bs: 5 },   // queries in the middle of the cache
  { nkv: 4, group: 1, hd: 24, Tq: 300, kvLen: 300, cap: 300, qPos0: 0, bs: 8 },    // a vision tower's call: items share 256-key tiles, one partial
  { nkv: 2, group: 2, hd: 32, Tq: 8, kvLen: 530, cap: 540, qPos0: 522, bs: 8 },    // the bundled decoder's step over three 256-key tiles
  { nkv: 1, group: 3, hd: 72, Tq: 8, kvLen: 90, cap: 96, qPos0: 82, bs: 8 },       // SigLIP's head dim: a half-empty last 16-column group
  { nkv: 2, group: 1, hd: 8, Tq: 5, kvLen: 40, cap: 40, qPos0: 35, bs: 4 },         // a head dim below one 16-column group
];

/** Cache [nkv, cap, hd] in the given dtype; slots ≥ kvLen hold NaN sentinels that must never be read. */
function makeCache(r: () => number, c: { nkv: number; cap: number; hd: number; kvLen: number }, dtype: KvDtype): { t: Tensor; values: Float32Array } {
  const n = c.nkv * c.cap * c.hd;
  const x = normal(r, n);
  for (let g = 0; g < c.nkv; g++) for (let j = c.kvLen; j < c.cap; j++) for (let d = 0; d < c.hd; d++) x[(g * c.cap + j) * c.hd + d] = NaN;
  if (dtype === 'f32') return { t: tensorFromArray('f32', [c.nkv, c.cap, c.hd], x), values: x };
  const bits = dtype === 'bf16' ? toBf16(x) : toF16(x);
  return { t: tensorFromArray(dtype, [c.nkv, c.cap, c.hd], bits), values: dtype === 'bf16' ? fromBf16(bits) : fromF16(bits) };
}

function refOpts(c: Case, mask: MaskKind, extra: Partial<AttentionRefOptions> = {}): AttentionRefOptions {
  return { Tq: c.Tq, nh: c.nkv * c.group, nkv: c.nkv, hd: c.hd, cap: c.cap, kvLen: c.kvLen, qPos0: c.qPos0, mask, blockSize: c.bs, ...extra };
}

/**
 * Attention of q against caches of `dtype` written from K rows kt f32 [L, nkv, hd] and value
 * rows `vals` (the same layout), as the decoder's kv_cache_append stores them.
 */
async function attendWithValues(q: Queue, dtype: KvDtype, qt: Tensor, kt: Tensor, vals: Float32Array, o: AttentionOptions): Promise<Float32Array> {
  const [L, nkv, hd] = kt.shape!;
  const kc = q.empty(dtype, [nkv, L, hd]), vc = q.empty(dtype, [nkv, L, hd]);
  q.kvCacheAppend(kc, kt, 0);
  q.kvCacheAppend(vc, tensorFromArray('f32', [L, nkv, hd], vals), 0);
  return q.readF32(q.attention(qt, kc, vc, o));
}

describe.each(nativeInfo().isaLevels)('attention at isa %s', (isa) => {
  it.each(['causal', 'block', 'full'] as const)('mask %s matches the explicit-mask float64 reference', async (mask) => {
    const q = new Queue({ isa, threads: 2 });
    const r = rng(7);
    for (const c of CASES) {
      for (const dtype of ['f32', 'bf16', 'f16'] as const) {
        if (dtype !== 'f32' && c.hd === 33) continue;  // one odd-hd run per mask is enough
        const nh = c.nkv * c.group;
        const qv = normal(r, c.Tq * nh * c.hd);
        const k = makeCache(r, c, dtype), v = makeCache(r, c, dtype);
        const o = q.attention(tensorFromArray('f32', [c.Tq, nh, c.hd], qv), k.t, v.t,
          { kvLen: c.kvLen, qPos0: c.qPos0, mask, blockSize: c.bs });
        expect(o.shape).toEqual([c.Tq, nh, c.hd]);
        const ref = attentionRef(qv, k.values, v.values, refOpts(c, mask));
        expectClose(await q.readF32(o), ref, TOL, `${mask} ${dtype} ${JSON.stringify(c)}`);
      }
    }
    q.dispose();
  });

  it('explicit scale and the segments mask (vision windows, with an empty window)', async () => {
    const q = new Queue({ isa, threads: 2 });
    const r = rng(8);
    // Windows that start mid-vector and mid-tile (5, 21, 37; 300 keys cross a 256-key tile):
    // the K tile's transposition starts at a key that is not a multiple of the vector width.
    const cases = [[16, 1, 80, [0, 16, 16, 48, 64, 69]], [2, 2, 64, [0, 1, 2, 3, 40]], [1, 7, 33, [0, 37]], [2, 2, 24, [0, 5, 21, 37, 300]], [1, 4, 32, [0, 3, 19, 40, 41, 70]]] as const;
    for (const [nkv, group, hd, segments] of cases)
      for (const dtype of ['f32', 'bf16'] as const) {
        const kvLen = segments[segments.length - 1], nh = nkv * group;
        const c = { nkv, cap: kvLen, hd, kvLen };
        const qv = normal(r, kvLen * nh * hd);
        const k = makeCache(r, c, dtype), v = makeCache(r, c, dtype);
        const o = q.attention(tensorFromArray('f32', [kvLen, nh, hd], qv), k.t, v.t, { kvLen, mask: 'segments', segments, scale: 0.3 });
        const ref = attentionRef(qv, k.values, v.values, { Tq: kvLen, nh, nkv, hd, cap: kvLen, kvLen, qPos0: 0, mask: 'segments', segments, scale: 0.3 });
        expectClose(await q.readF32(o), ref, TOL, `segments ${segments} ${dtype}`);
      }
    q.dispose();
  });

  it.each([3, 5])('threads do not change the result (1, 2, 3 threads agree bit for bit; case %i)', async (ci) => {
    const c = CASES[ci];
    const r = rng(9);
    const nh = c.nkv * c.group;
    const qv = normal(r, c.Tq * nh * c.hd);
    const k = makeCache(r, c, 'bf16'), v = makeCache(r, c, 'bf16');
    const outs: Float32Array[] = [];
    for (const threads of [1, 2, 3]) {
      const q = new Queue({ isa, threads });
      outs.push(await q.readF32(q.attention(tensorFromArray('f32', [c.Tq, nh, c.hd], qv), k.t, v.t, { kvLen: c.kvLen, qPos0: c.qPos0, mask: 'causal' })));
      q.dispose();
    }
    expect(outs[1]).toEqual(outs[0]);
    expect(outs[2]).toEqual(outs[0]);
  });

  // hd 64: 64-key tiles, 5 blocks; hd 32: 256-key tiles, 40 blocks (the prefill crosses a tile).
  it.each([['f32', 64, 5], ['bf16', 64, 5], ['bf16', 32, 40]] as const)('block-causal prefill equals the blocks run one at a time against the cache (%s cache, hd %i, %i blocks)', async (dtype, hd, nb) => {
    const q = new Queue({ isa, threads: 2 });
    const r = rng(10);
    const nkv = 2, group = 7, nh = 14, bs = 8, L = nb * bs, cap = L + 3;
    const qv = normal(r, L * nh * hd), kx = normal(r, L * nkv * hd), vx = normal(r, L * nkv * hd);
    // Prefill: the whole prompt's K/V appended at once, one block-causal attention call.
    const kc = q.empty(dtype, [nkv, cap, hd]), vc = q.empty(dtype, [nkv, cap, hd]);
    q.kvCacheAppend(kc, tensorFromArray('f32', [L, nkv, hd], kx), 0);
    q.kvCacheAppend(vc, tensorFromArray('f32', [L, nkv, hd], vx), 0);
    const pre = await q.readF32(q.attention(tensorFromArray('f32', [L, nh, hd], qv), kc, vc, { kvLen: L, qPos0: 0, mask: 'block', blockSize: bs }));
    // Block by block: append the block's K/V at [b·bs, (b+1)·bs) of a fresh cache, attend with
    // the block mask (the block sees the cache plus itself) and with 'full' (the same thing).
    const kc2 = q.empty(dtype, [nkv, cap, hd]), vc2 = q.empty(dtype, [nkv, cap, hd]);
    for (let b = 0; b < nb; b++) {
      const rows = (a: Float32Array, w: number) => a.slice(b * bs * w, (b + 1) * bs * w);
      q.kvCacheAppend(kc2, tensorFromArray('f32', [bs, nkv, hd], rows(kx, nkv * hd)), b * bs);
      q.kvCacheAppend(vc2, tensorFromArray('f32', [bs, nkv, hd], rows(vx, nkv * hd)), b * bs);
      const qb = tensorFromArray('f32', [bs, nh, hd], rows(qv, nh * hd));
      const step = await q.readF32(q.attention(qb, kc2, vc2, { kvLen: (b + 1) * bs, qPos0: b * bs, mask: 'block', blockSize: bs }));
      const full = await q.readF32(q.attention(qb, kc2, vc2, { kvLen: (b + 1) * bs, qPos0: b * bs, mask: 'full' }));
      // Same keys, same tiles, same order per row: bit-identical, not merely close.
      expect(step).toEqual(pre.slice(b * bs * nh * hd, (b + 1) * bs * nh * hd));
      expect(full).toEqual(step);
    }
    q.dispose();
  });

  it('NaN in q or in a visible key reaches exactly the rows that see it', async () => {
    const q = new Queue({ isa, threads: 2 });
    const r = rng(11);
    const nkv = 2, group = 2, nh = 4, hd = 16, Tq = 8, kvLen = 8;
    const qv = normal(r, Tq * nh * hd);
    qv[(1 * nh + 3) * hd + 5] = NaN;  // query row 1, head 3
    const kv = normal(r, nkv * kvLen * hd);
    kv[(0 * kvLen + 4) * hd + 2] = NaN;  // kv head 0, key 4: seen (causally) by rows 4..7 of heads 0, 1
    const k = tensorFromArray('f32', [nkv, kvLen, hd], kv), v = tensorFromArray('f32', [nkv, kvLen, hd], normal(r, nkv * kvLen * hd));
    const o = await q.readF32(q.attention(tensorFromArray('f32', [Tq, nh, hd], qv), k, v, { kvLen, mask: 'causal' }));
    for (let i = 0; i < Tq; i++)
      for (let h = 0; h < nh; h++) {
        const row = o.slice((i * nh + h) * hd, (i * nh + h + 1) * hd);
        const poisoned = (i === 1 && h === 3) || (i >= 4 && h < 2);
        expect(row.every(poisoned ? Number.isNaN : Number.isFinite), `row ${i} head ${h}`).toBe(true);
      }
    q.dispose();
  });

  it.each([['f32', 64], ['bf16', 64], ['f32', 24]] as const)('a NaN value row changes nothing for rows that cannot see it, also when a prefill shares its K/V tiles between items (%s, head dim %i)', async (dtype, hd) => {
    // 100 causal rows × 7 heads per kv head: several items per kv head, which convert each K/V
    // tile once and share it (attention.cpp run_items). The NaN key sits inside a shared tile
    // that items ending before it also hold: their rows must not change by a bit. Head dim 24
    // takes 256-key tiles and 8-row register blocks where the level has 512-bit vectors.
    const q = new Queue({ isa, threads: 2 });
    const r = rng(12);
    const nkv = 2, group = 7, nh = 14, T = 100, bad = 37;
    const qt = tensorFromArray('f32', [T, nh, hd], normal(r, T * nh * hd));
    const kt = tensorFromArray('f32', [T, nkv, hd], normal(r, T * nkv * hd));
    const vx = normal(r, T * nkv * hd);
    const run = (vals: Float32Array) => attendWithValues(q, dtype, qt, kt, vals, { kvLen: T, mask: 'causal' });
    const clean = await run(vx);
    const poisoned = vx.slice();
    poisoned[(bad * nkv + 0) * hd + 9] = NaN;  // key 37 of kv head 0 (query heads 0..6)
    const out = await run(poisoned);
    for (let i = 0; i < T; i++)
      for (let h = 0; h < nh; h++) {
        const a = out.slice((i * nh + h) * hd, (i * nh + h + 1) * hd), b = clean.slice((i * nh + h) * hd, (i * nh + h + 1) * hd);
        if (h < group && i >= bad) expect(Number.isNaN(a[9]) && a.every((x, d) => d === 9 || Number.isFinite(x)), `row ${i} head ${h}`).toBe(true);
        else expect(a, `row ${i} head ${h}`).toEqual(b);
      }
    q.dispose();
  });

  it.each([['bf16', 32, Infinity], ['bf16', 32, NaN], ['f32', 24, -Infinity], ['f16', 64, NaN]] as const)('a block step with a non-finite value in its own block: the earlier block\'s rows keep every bit (%s, head dim %i, %s)', async (dtype, hd, bad) => {
    // A merged commit + step pass: 16 rows, the first 8 (the committed block) see keys < 88,
    // the next 8 also see their own block's keys 88..95. A non-finite value at key 90 must not
    // reach the first 8 rows through a zero weight (0 · Inf is NaN): few rows, so each item
    // fills its own tile — the path the shared-tile test does not take. One thread, so that one
    // item per kv head holds both blocks' rows (two threads split them at the block boundary).
    const q = new Queue({ isa, threads: 1 });
    const r = rng(13);
    const nkv = 2, group = 2, nh = 4, L = 96, Tq = 16, key = 90;
    const qt = tensorFromArray('f32', [Tq, nh, hd], normal(r, Tq * nh * hd));
    const kt = tensorFromArray('f32', [L, nkv, hd], normal(r, L * nkv * hd));
    const vx = normal(r, L * nkv * hd);
    const run = (vals: Float32Array) => attendWithValues(q, dtype, qt, kt, vals, { kvLen: L, qPos0: L - Tq, mask: 'block', blockSize: 8 });
    const clean = await run(vx);
    const poisoned = vx.slice();
    poisoned[(key * nkv + 1) * hd + 3] = bad;  // kv head 1 (query heads 2, 3), dim 3
    const out = await run(poisoned);
    for (let i = 0; i < Tq; i++)
      for (let h = 0; h < nh; h++) {
        const a = out.slice((i * nh + h) * hd, (i * nh + h + 1) * hd), b = clean.slice((i * nh + h) * hd, (i * nh + h + 1) * hd);
        if (i >= 8 && h >= 2) expect(!Number.isFinite(a[3]) && a.every((x, d) => d === 3 || Number.isFinite(x)), `row ${i} head ${h}`).toBe(true);
        else expect(a, `row ${i} head ${h}`).toEqual(b);
      }
    q.dispose();
  });

  // Head dims ≤ 32 in items of more than 32 rows run attention_kernel.h's lanes kernel (query
  // rows in vector lanes); the op's rowKernel attribute forces the row kernel. The two must agree
  // bit for bit (NaN for NaN: see expectSameBits) over masks, tiles crossed, GQA groups, odd head dims
  // (a bf16 cache at an odd head dim fills its K tile key by key), rows padding the last lane
  // group, rows that see nothing, and non-finite queries, keys and values (a non-finite value
  // tile masks lane by lane; 1e4-scaled queries drive weights to 0 and single rows to one key).
  // Every case's items hold more than 32 rows (attention.cpp item_rows), so the lanes kernel runs.
  interface LaneCase { nkv: number; group: number; hd: number; Tq: number; kvLen: number; qPos0: number; mask: MaskKind; bs?: number; segments?: number[]; dtype: KvDtype; threads: number; poison?: boolean; qScale?: number }
  const LANE_CASES: LaneCase[] = [
    { nkv: 4, group: 1, hd: 24, Tq: 252, kvLen: 252, qPos0: 0, mask: 'full', dtype: 'f32', threads: 2 },      // the bundled tower's call
    { nkv: 4, group: 1, hd: 24, Tq: 252, kvLen: 252, qPos0: 0, mask: 'full', dtype: 'f32', threads: 1 },
    { nkv: 2, group: 2, hd: 24, Tq: 300, kvLen: 300, qPos0: 0, mask: 'segments', segments: [0, 5, 21, 37, 300], dtype: 'bf16', threads: 3 },
    { nkv: 2, group: 7, hd: 32, Tq: 100, kvLen: 300, qPos0: 200, mask: 'causal', dtype: 'f16', threads: 2 },  // crosses a 256-key tile
    { nkv: 1, group: 3, hd: 16, Tq: 40, kvLen: 600, qPos0: 560, mask: 'block', bs: 8, dtype: 'bf16', threads: 1 },   // two 60-row items
    { nkv: 2, group: 1, hd: 27, Tq: 70, kvLen: 70, qPos0: 0, mask: 'full', dtype: 'bf16', threads: 2 },
    { nkv: 1, group: 2, hd: 8, Tq: 77, kvLen: 90, qPos0: 13, mask: 'causal', dtype: 'f32', threads: 2 },
    { nkv: 2, group: 1, hd: 20, Tq: 65, kvLen: 65, qPos0: 0, mask: 'segments', segments: [0, 0, 33, 65], dtype: 'f32', threads: 1, poison: true },
    { nkv: 2, group: 2, hd: 32, Tq: 48, kvLen: 48, qPos0: 0, mask: 'causal', dtype: 'bf16', threads: 2, poison: true },
    { nkv: 1, group: 4, hd: 24, Tq: 50, kvLen: 50, qPos0: 0, mask: 'full', dtype: 'f32', threads: 2, qScale: 1e4 },
    { nkv: 1, group: 1, hd: 24, Tq: 120, kvLen: 0, qPos0: 0, mask: 'full', dtype: 'f32', threads: 1 },          // no key at all: zeros
  ];
  it.each(LANE_CASES.map((c, i) => [i, c] as const))('the lanes kernel (head dim <= 32) equals the row kernel bit for bit (case %i)', async (_i, c) => {
    const q = new Queue({ isa, threads: c.threads });
    const r = rng(30 + _i);
    const nh = c.nkv * c.group, cap = Math.max(c.kvLen, 1);
    const qv = normal(r, c.Tq * nh * c.hd).map((x) => x * (c.qScale ?? 1));
    const kx = normal(r, c.nkv * cap * c.hd), vx = normal(r, c.nkv * cap * c.hd);
    if (c.poison) {
      qv[(3 * nh + 0) * c.hd + 1] = NaN;                 // query row 3, head 0
      kx[(0 * cap + 40) * c.hd + 2] = Infinity;         // kv head 0, key 40
      vx[(1 * cap + 20) * c.hd + 5] = NaN;              // kv head 1, key 20
      vx[(1 * cap + 44) * c.hd + 0] = -Infinity;        // kv head 1, key 44
    }
    const cache = (x: Float32Array) => c.dtype === 'f32' ? tensorFromArray('f32', [c.nkv, cap, c.hd], x)
      : tensorFromArray(c.dtype, [c.nkv, cap, c.hd], c.dtype === 'bf16' ? toBf16(x) : toF16(x));
    const qt = tensorFromArray('f32', [c.Tq, nh, c.hd], qv), k = cache(kx), v = cache(vx);
    const attrs = { kvLen: c.kvLen, qPos0: c.qPos0, mask: c.mask, ...(c.bs ? { blockSize: c.bs } : {}), ...(c.segments ? { segments: c.segments } : {}) };
    const lanes = await q.readF32(q.op('attention', [qt, k, v], attrs)[0]);
    const rows = await q.readF32(q.op('attention', [qt, k, v], { ...attrs, rowKernel: 1 })[0]);
    expectSameBits(lanes, rows, `lanes vs rows ${JSON.stringify(c)}`, { anyNaN: true });
    if (c.poison) expect(lanes.some(Number.isNaN) && lanes.some(Number.isFinite)).toBe(true);
    if (c.kvLen === 0) expect(lanes.every((x) => x === 0)).toBe(true);
    q.dispose();
  });

  it('a row with no visible key is zeros, never NaN (full mask over an empty cache)', async () => {
    const q = new Queue({ isa, threads: 2 });
    const k = tensorFromArray('f32', [1, 4, 8], new Float32Array(32).fill(NaN));  // never read
    const o = q.attention(tensorFromArray('f32', [3, 2, 8], normal(rng(12), 48)), k, k, { kvLen: 0, mask: 'full' });
    expect(Array.from(await q.readF32(o))).toEqual(new Array(48).fill(0));
    q.dispose();
  });

  it('throws typed errors for bad calls', () => {
    const q = new Queue({ isa, threads: 1 });
    const qt = tensorFromArray('f32', [2, 4, 8], new Float32Array(64));
    const k = tensorFromArray('f32', [2, 10, 8], new Float32Array(160));
    const v = tensorFromArray('f32', [2, 10, 8], new Float32Array(160));
    expect(() => q.attention(qt, k, v, { kvLen: 11, mask: 'full' })).toThrow(OutOfRangeError);
    expect(() => q.attention(qt, k, v, { kvLen: 11, mask: 'full' })).toThrow(/kvLen 11 is outside the cache capacity/);
    expect(() => q.attention(qt, k, v, { kvLen: 5, qPos0: 4, mask: 'causal' })).toThrow(/qPos0 \+ Tq = 6 exceed kvLen 5/);
    expect(() => q.attention(qt, k, v, { kvLen: 5, qPos0: 4, mask: 'block', blockSize: 4 })).toThrow(OutOfRangeError);
    expect(() => q.attention(qt, k, v, { kvLen: 5, mask: 'block', blockSize: 0 })).toThrow(OutOfRangeError);
    expect(() => q.attention(qt, k, v, { kvLen: 2, mask: 'segments', segments: [0, 1] })).toThrow(OutOfRangeError);
    expect(() => q.attention(qt, k, v, { kvLen: 2, mask: 'segments', segments: [0, 2, 1, 2] })).toThrow(/non-decreasing/);
    expect(() => q.attention(qt, k, v, { kvLen: 3, mask: 'segments', segments: [0, 3] })).toThrow(/Tq = kvLen/);
    expect(() => q.attention(qt, k, v, { kvLen: 2, mask: 'nope' as never })).toThrow(DiffusionVLError);
    const k3 = tensorFromArray('f32', [3, 10, 8], new Float32Array(240));
    expect(() => q.attention(qt, k3, k3, { kvLen: 2, mask: 'full' })).toThrow(/query heads 4 must be a multiple of kv heads 3/);
    const k7 = tensorFromArray('f32', [2, 10, 7], new Float32Array(140));
    expect(() => q.attention(qt, k7, k7, { kvLen: 2, mask: 'full' })).toThrow(ShapeError);
    const kb = tensorFromArray('bf16', [2, 10, 8], new Uint16Array(160));
    expect(() => q.attention(qt, kb, v, { kvLen: 2, mask: 'full' })).toThrow(DTypeError);
    expect(() => q.attention(tensorFromArray('i32', [2, 4, 8], new Int32Array(64)), k, v, { kvLen: 2, mask: 'full' })).toThrow(DTypeError);
    k.dispose();
    expect(() => q.attention(qt, k, v, { kvLen: 2, mask: 'full' })).toThrow(DisposedError);
    q.dispose();
  });
});

// Keeps `compareArrays` available for ad-hoc error printing when a tolerance is revisited.
void compareArrays;
