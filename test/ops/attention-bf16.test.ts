// attention's bf16 products (the bf16 attribute; attention_kernel.h "bf16 products"): at
// avx512_bf16, q·k and p·v run on bf16-rounded operands through vdpbf16ps. Checked against the
// float64 reference (test/ops/reference.ts) evaluated on the same bf16-rounded q, k and v, so what
// remains is the kernel's own rounding:
//   the weights p are rounded to bf16 before P·V while their sum stays over the f32 weights:
//   o − o_ref = Σ p_j δ_j v_j / Σ p_j with |δ_j| ≤ 2⁻⁹ (half a bf16 ulp), so
//   |o − o_ref| ≤ 2⁻⁹ · max |v|; the f32 scores, exp and sums add the f32 kernel's bound (TOL of
//   attention.test.ts: abs 2e-5, rel 1e-5).
// Then what makes it usable in a plan and a batch: 1, 2 and 3 threads and both kernels (rows,
// lanes) agree bit for bit; attention_batch equals attention per sequence; an Inf/NaN value
// reaches only the rows that see it. At every other level, and at odd head dims, the attribute
// changes nothing: the f32 products' bits.
import { describe, expect, it } from 'vitest';
import { Queue, nativeInfo, tensorFromArray, type AttentionOptions, type Tensor } from '../../lib/native/index.js';
import { expectSameBits } from '../helpers/compare.js';
import { fromBf16, normal, rng, toBf16 } from '../helpers/random.js';
import { attentionRef, type MaskKind } from './reference.js';

const TOL = { abs: 2e-5, rel: 1e-5 };
const levels = nativeInfo().isaLevels;
const hasBf16 = levels.includes('avx512_bf16');

interface Case { name: string; Tq: number; nh: number; nkv: number; hd: number; kvLen: number; qPos0: number; mask: MaskKind; bs?: number; segments?: number[]; dtype: 'f32' | 'bf16' }

const CASES: Case[] = [
  { name: 'vision tower (252 patches, hd 24, lanes kernel)', Tq: 252, nh: 4, nkv: 4, hd: 24, kvLen: 252, qPos0: 0, mask: 'segments', segments: [0, 252], dtype: 'f32' },
  { name: 'windows crossing a 256-key tile', Tq: 300, nh: 2, nkv: 2, hd: 24, kvLen: 300, qPos0: 0, mask: 'segments', segments: [0, 5, 21, 37, 300], dtype: 'f32' },
  { name: 'block step (16 rows, hd 32, GQA 2, bf16 cache)', Tq: 16, nh: 4, nkv: 2, hd: 32, kvLen: 120, qPos0: 104, mask: 'block', bs: 8, dtype: 'bf16' },
  { name: 'block step over three 256-key tiles', Tq: 8, nh: 4, nkv: 2, hd: 32, kvLen: 530, qPos0: 522, mask: 'block', bs: 8, dtype: 'bf16' },
  { name: 'causal prefill (hd 64, GQA 7)', Tq: 150, nh: 14, nkv: 2, hd: 64, kvLen: 150, qPos0: 0, mask: 'causal', dtype: 'bf16' },
  { name: 'AR step (one row, hd 128)', Tq: 1, nh: 4, nkv: 2, hd: 128, kvLen: 333, qPos0: 332, mask: 'causal', dtype: 'bf16' },
  { name: 'full, hd 80 (a real tower head), odd kvLen', Tq: 37, nh: 3, nkv: 3, hd: 80, kvLen: 37, qPos0: 0, mask: 'full', dtype: 'f32' },
  { name: 'hd 8, keys not a multiple of 16', Tq: 5, nh: 2, nkv: 1, hd: 8, kvLen: 41, qPos0: 36, mask: 'causal', dtype: 'f32' },
];

function roundBf16(x: Float32Array): Float32Array { return fromBf16(toBf16(x)); }

/** q, k, v of a case; k and v [nkv, kvLen, hd] in the case's dtype, plus their values as f32. */
function inputs(c: Case, seed: number) {
  const r = rng(seed);
  const qv = normal(r, c.Tq * c.nh * c.hd), kv = normal(r, c.nkv * c.kvLen * c.hd), vv = normal(r, c.nkv * c.kvLen * c.hd);
  const mk = (x: Float32Array) => (c.dtype === 'f32' ? tensorFromArray('f32', [c.nkv, c.kvLen, c.hd], x) : tensorFromArray('bf16', [c.nkv, c.kvLen, c.hd], toBf16(x)));
  const kVal = c.dtype === 'f32' ? kv : roundBf16(kv), vVal = c.dtype === 'f32' ? vv : roundBf16(vv);
  return { qv, kVal, vVal, q: tensorFromArray('f32', [c.Tq, c.nh, c.hd], qv), k: mk(kv), v: mk(vv) };
}

function opts(c: Case, extra: Partial<AttentionOptions> = {}): AttentionOptions {
  return { kvLen: c.kvLen, qPos0: c.qPos0, mask: c.mask, blockSize: c.bs, segments: c.segments, ...extra };
}

async function run(q: Queue, c: Case, x: ReturnType<typeof inputs>, extra: Partial<AttentionOptions>): Promise<Float32Array> {
  const o = q.attention(x.q, x.k, x.v, opts(c, extra));
  const r = await q.readF32(o);
  o.dispose();
  return r;
}

describe.runIf(hasBf16)('attention bf16 products at avx512_bf16', () => {
  it.each(CASES)('$name: within 2⁻⁹·max|v| of the float64 reference on the rounded inputs', async (c) => {
    const q = new Queue({ isa: 'avx512_bf16', threads: 2 });
    const x = inputs(c, c.Tq * 31 + c.hd);
    const got = await run(q, c, x, { bf16: true });
    const f32 = await run(q, c, x, {});
    const ref = attentionRef(roundBf16(x.qv), roundBf16(x.kVal), roundBf16(x.vVal),
      { Tq: c.Tq, nh: c.nh, nkv: c.nkv, hd: c.hd, cap: c.kvLen, kvLen: c.kvLen, qPos0: c.qPos0, mask: c.mask, blockSize: c.bs, segments: c.segments });
    const vmax = x.vVal.reduce((a, b) => Math.max(a, Math.abs(b)), 0);
    let worst = 0, differs = 0;
    for (let i = 0; i < got.length; i++) {
      expect(Number.isNaN(got[i]), `NaN at ${i}`).toBe(false);
      const bound = 2 ** -9 * vmax + TOL.abs + TOL.rel * Math.abs(ref[i]);
      const err = Math.abs(got[i] - ref[i]);
      worst = Math.max(worst, err / bound);
      if (err > bound) expect.fail(`${c.name}: element ${i} = ${got[i]}, reference ${ref[i]}, error ${err} > bound ${bound}`);
      if (got[i] !== f32[i]) differs++;
    }
    expect(worst).toBeLessThanOrEqual(1);
    // The bf16 path really ran (its bits are not the f32 products').
    expect(differs).toBeGreaterThan(got.length / 4);
    q.dispose();
  });

  it.each([0, 1, 2, 4])('threads 1, 2, 3 and the rows / lanes kernels agree bit for bit (case %i)', async (ci) => {
    const c = CASES[ci];
    const x = inputs(c, 77 + ci);
    const outs: [string, Float32Array][] = [];
    for (const threads of [1, 2, 3]) {
      const q = new Queue({ isa: 'avx512_bf16', threads });
      outs.push([`threads ${threads}`, await run(q, c, x, { bf16: true })]);
      if (threads === 2 && c.hd <= 32) {
        // rowKernel: the row layout at every item size (the lanes kernel otherwise takes items of > 32 rows).
        const o = q.op('attention', [x.q, x.k, x.v], { kvLen: c.kvLen, qPos0: c.qPos0, mask: c.mask, blockSize: c.bs, segments: c.segments, bf16: 1, rowKernel: 1 });
        outs.push(['rows kernel', await q.readF32(o[0])]);
      }
      q.dispose();
    }
    for (const [name, o] of outs.slice(1)) expectSameBits(o, outs[0][1], `${c.name}: ${name} vs ${outs[0][0]}`);
  });

  it('attention_batch with bf16 = attention with bf16 per sequence, bit for bit', async () => {
    const q = new Queue({ isa: 'avx512_bf16', threads: 2 });
    const nh = 4, nkv = 2, hd = 32, cap = 64, S = 2;
    const r = rng(5);
    const kAll = toBf16(normal(r, S * nkv * cap * hd)), vAll = toBf16(normal(r, S * nkv * cap * hd));
    const kc = tensorFromArray('bf16', [S, nkv, cap, hd], kAll), vc = tensorFromArray('bf16', [S, nkv, cap, hd], vAll);
    // Sequence 0: 16 rows at 24 (block mask, bs 8) on slot 1; sequence 1: one AR row at 40 on slot 0.
    const qv = normal(r, 17 * nh * hd);
    const seqs = [0, 16, 1, 24, 1, 8, 16, 17, 0, 40, 0, 0];
    const batch = await q.readF32(q.attentionBatch(tensorFromArray('f32', [17, nh, hd], qv), kc, vc, seqs, undefined, undefined, true));
    const slot = (a: Uint16Array, s: number) => tensorFromArray('bf16', [nkv, cap, hd], a.subarray(s * nkv * cap * hd, (s + 1) * nkv * cap * hd));
    const one = await q.readF32(q.attention(tensorFromArray('f32', [16, nh, hd], qv.subarray(0, 16 * nh * hd)), slot(kAll, 1), slot(vAll, 1),
      { kvLen: 40, qPos0: 24, mask: 'block', blockSize: 8, bf16: true }));
    const two = await q.readF32(q.attention(tensorFromArray('f32', [1, nh, hd], qv.subarray(16 * nh * hd)), slot(kAll, 0), slot(vAll, 0),
      { kvLen: 41, qPos0: 40, mask: 'causal', bf16: true }));
    expectSameBits(batch.subarray(0, 16 * nh * hd), one, 'sequence 0');
    expectSameBits(batch.subarray(16 * nh * hd), two, 'sequence 1');
    q.dispose();
  });

  it('an Inf or NaN value makes only the rows that see it non-finite', async () => {
    const q = new Queue({ isa: 'avx512_bf16', threads: 2 });
    for (const [Tq, hd] of [[40, 24], [12, 32], [20, 64]] as const) {
      const c: Case = { name: 'nan', Tq, nh: 2, nkv: 2, hd, kvLen: Tq, qPos0: 0, mask: 'causal', dtype: 'f32' };
      const x = inputs(c, Tq);
      const bad = 7;   // key 7 of kv head 1: rows ≥ 7 of heads mapped to kv head 1 see it
      x.vVal[(1 * Tq + bad) * hd + 3] = NaN;
      x.vVal[(0 * Tq + bad + 2) * hd] = Infinity;   // kv head 0, key 9
      const v = tensorFromArray('f32', [2, Tq, hd], x.vVal);
      const o = await q.readF32(q.attention(x.q, x.k, v, { kvLen: Tq, qPos0: 0, mask: 'causal', bf16: true }));
      for (let i = 0; i < Tq; i++)
        for (let h = 0; h < 2; h++) {
          const row = o.subarray((i * 2 + h) * hd, (i * 2 + h + 1) * hd);
          const sees = h === 1 ? i >= bad : i >= bad + 2;
          expect(row.some((e) => !Number.isFinite(e)), `hd ${hd} row ${i} head ${h}`).toBe(sees);
          if (h === 1 && sees) expect(row.some(Number.isNaN)).toBe(true);
        }
    }
    q.dispose();
  });
});

describe.each(levels)('attention bf16 attribute at isa %s: the f32 bits where it does not apply', (isa) => {
  it('other levels, and odd head dims at every level, give the f32 products bit for bit', async () => {
    const q = new Queue({ isa, threads: 2 });
    const odd: Case = { name: 'odd hd', Tq: 20, nh: 2, nkv: 1, hd: 33, kvLen: 60, qPos0: 40, mask: 'block', bs: 8, dtype: 'bf16' };
    for (const c of isa === 'avx512_bf16' ? [odd] : [CASES[0], CASES[2], odd]) {
      const x = inputs(c, 9 + c.hd);
      expectSameBits(await run(q, c, x, { bf16: true }), await run(q, c, x, {}), `${isa} ${c.name}`);
    }
    q.dispose();
  });
});

// Keep the Tensor type import used (the inputs hold tensors).
export type { Tensor };
