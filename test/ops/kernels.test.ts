// The per-level kernel table entries other than matmul, at every ISA level this machine has:
// - conversions bf16/f16 ↔ f32 (reached through the convert op): bit-identical to the rules of
//   csrc/core/dtype.h on every 16-bit pattern and on f32 edge values (±0, ±Inf, quiet and
//   signalling NaN with payloads, f32 and f16 subnormals, rounding ties both ways, the f16
//   overflow threshold) plus random bit patterns — no tolerance: these must be exact;
// - dot_f32 and axpy_f32 (through kernel_probe) against float64, tolerances stated below;
// - stream_read's checksum, which must not depend on the level or the thread count.
import { describe, expect, it } from 'vitest';
import { Queue, nativeInfo, tensorFromArray, type Isa } from '../../lib/native/index.js';
import { normal, rng, toBf16, toF16 } from '../helpers/random.js';

const levels: Isa[] = nativeInfo().isaLevels;

/** dtype.h f16_to_f32, as bits (NaN payload kept, quiet bit not forced). */
function f16ToF32Bits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >>> 10) & 0x1f;
  let man = h & 0x3ff;
  if (exp === 0) {
    if (man === 0) return sign >>> 0;
    let e = -1;
    do { man <<= 1; e++; } while (!(man & 0x400));
    return (sign | ((127 - 15 - e) << 23) | ((man & 0x3ff) << 13)) >>> 0;
  }
  if (exp === 31) return (sign | 0x7f800000 | (man << 13)) >>> 0;
  return (sign | ((exp + 112) << 23) | (man << 13)) >>> 0;
}

/** f32 inputs that probe every branch of the f32 → bf16 / f16 rules, as bit patterns. */
function edgeBits(): Uint32Array {
  const v: number[] = [
    0x00000000, 0x80000000, 0x7f800000, 0xff800000,          // ±0, ±Inf
    0x7fc00000, 0xffc00000, 0x7f800001, 0xff800001,          // quiet / signalling NaN
    0x7fbfffff, 0x7fffffff, 0x7fc0ffff, 0x7fa01234,          // NaN payloads
    0x00000001, 0x807fffff, 0x00400000, 0x00800000,          // f32 subnormals, smallest normal
    0x3f808000, 0x3f818000, 0x3f808001, 0x3f817fff,          // bf16 ties to even (down / up), just above / below
    0xbf808000, 0xbf818000,                                  // negative ties
    0x7f7fffff, 0xff7fffff, 0x7f7f8000, 0x7f7f7fff,          // bf16 rounding to ±Inf at FLT_MAX
    0x3f801000, 0x3f803000, 0x3f801001, 0x3f802fff,          // f16 ties (1 + 2^-11, 1 + 3·2^-11), neighbours
    0x477fe000, 0x477fefff, 0x477ff000, 0x477fffff, 0x47800000, // f16 max 65504, below / at overflow threshold
    0xc77ff000,
    0x33000000, 0x33000001, 0x32ffffff, 0x33800000,          // half the smallest f16 subnormal (tie → 0), above, below, 2^-24
    0x33c00000, 0x34200000, 0x387fc000, 0x387fe000,          // f16 subnormal ties (1.5·2^-24, 2.5·2^-24), near the smallest normal
    0x38800000, 0x387ff000, 0x38000000, 0xb8000000,          // smallest f16 normal, just below, 2^-15
    0x3f800000, 0x40490fdb, 0xc2f6e979, 0x4b000001,          // ordinary values
  ];
  // Random patterns: uniform bits cover every exponent, NaN and subnormal ranges.
  const r = rng(12345);
  for (let i = 0; i < 20000; i++) v.push(Math.floor(r() * 2 ** 32) >>> 0);
  // Then every rounding position around ties: mantissas ending in 0x8000 / 0x1000 ± 1.
  for (let e = 0; e < 256; e += 3)
    for (const low of [0x7fff, 0x8000, 0x8001, 0x18000, 0x0fff, 0x1000, 0x1001, 0x3000])
      v.push(((e << 23) | low) >>> 0, ((1 << 31) | (e << 23) | low) >>> 0);
  return Uint32Array.from(v);
}

const u32 = (a: Float32Array) => new Uint32Array(a.buffer, a.byteOffset, a.length);

function expectSameBits(got: ArrayLike<number>, want: ArrayLike<number>, input: ArrayLike<number>, label: string): void {
  expect(got.length, label).toBe(want.length);
  for (let i = 0; i < want.length; i++)
    if (got[i] !== want[i])
      throw new Error(`${label}: input 0x${input[i].toString(16)} → 0x${got[i].toString(16)}, dtype.h gives 0x${want[i].toString(16)} (index ${i})`);
}

describe('conversion kernels are bit-identical to dtype.h', () => {
  const all16 = new Uint16Array(65536).map((_, i) => i);
  const edges = edgeBits();
  const edgesF = new Float32Array(edges.buffer);

  for (const isa of levels) {
    it(`${isa}: bf16 → f32 and f16 → f32 on all 65,536 patterns`, async () => {
      const q = new Queue({ isa, threads: 2 });
      for (const src of ['bf16', 'f16'] as const) {
        const t = tensorFromArray(src, [all16.length], all16);
        const got = u32(await q.readF32(q.convert(t, 'f32')));
        const want = Uint32Array.from(all16, (h) => (src === 'bf16' ? (h << 16) >>> 0 : f16ToF32Bits(h)));
        expectSameBits(got, want, all16, `${isa} ${src}→f32`);
        // The embedding op reads the same rows through the same kernel (odd row width: tails).
        const rows = 65536 / 256;
        const tab = tensorFromArray(src, [rows, 256], all16);
        const ids = tensorFromArray('i32', [3], new Int32Array([rows - 1, 0, 77]));
        const emb = u32(await q.readF32(q.embedding(ids, tab)));
        for (const [j, id] of [rows - 1, 0, 77].entries())
          expectSameBits(emb.subarray(j * 256, j * 256 + 256), want.subarray(id * 256, id * 256 + 256), all16.subarray(id * 256), `${isa} ${src} embedding`);
      }
      q.dispose();
    });

    it(`${isa}: f32 → bf16 and f32 → f16 on edge values, ties and random bits`, async () => {
      const q = new Queue({ isa, threads: 2 });
      // Odd lengths put values in the vector body and in the scalar tail.
      for (const n of [edges.length, 37, 1]) {
        const src = edgesF.slice(0, n);
        const t = tensorFromArray('f32', [n], src);
        const bf = (await q.read(q.convert(t, 'bf16'))) as Uint16Array;
        expectSameBits(bf, toBf16(src), edges, `${isa} f32→bf16 n=${n}`);
        const h = (await q.read(q.convert(t, 'f16'))) as Uint16Array;
        expectSameBits(h, toF16(src), edges, `${isa} f32→f16 n=${n}`);
      }
      q.dispose();
    });
  }
});

describe('dot_f32 and axpy_f32', () => {
  for (const isa of levels) {
    it(`${isa}: against float64`, async () => {
      const q = new Queue({ isa, threads: 1 });
      for (const n of [1, 3, 7, 13, 33, 127, 4097]) {
        const r = rng(n);
        const a = normal(r, n), b = normal(r, n);
        const ta = tensorFromArray('f32', [n], a), tb = tensorFromArray('f32', [n], b);
        // dot: f32 accumulation of n rounded products in any order: ≤ (n + 1)·2⁻²⁴·Σ|a·b|.
        let ref = 0, mag = 0;
        for (let i = 0; i < n; i++) { ref += a[i] * b[i]; mag += Math.abs(a[i] * b[i]); }
        const [dot] = q.op('kernel_probe', [ta, tb], { fn: 'dot' });
        const got = (await q.readF32(dot))[0];
        expect(Math.abs(got - ref), `${isa} dot n=${n}`).toBeLessThanOrEqual((n + 1) * 2 ** -24 * mag);
        // axpy: one product and one add, fused or not: ≤ 2·2⁻²⁴·(|α·a| + |b|) per element.
        const alpha = -1.75;
        const [ax] = q.op('kernel_probe', [ta, tb], { fn: 'axpy', alpha });
        const y = await q.readF32(ax);
        for (let i = 0; i < n; i++) {
          const want = b[i] + alpha * a[i];
          expect(Math.abs(y[i] - want), `${isa} axpy n=${n} i=${i}`).toBeLessThanOrEqual(2 * 2 ** -24 * (Math.abs(alpha * a[i]) + Math.abs(b[i])));
        }
        // NaN propagates: a NaN in a poisons the dot and exactly one axpy element.
        const an = a.slice();
        an[n - 1] = NaN;
        const tn = tensorFromArray('f32', [n], an);
        expect(Number.isNaN((await q.readF32(q.op('kernel_probe', [tn, tb], { fn: 'dot' })[0]))[0])).toBe(true);
        const yn = await q.readF32(q.op('kernel_probe', [tn, tb], { fn: 'axpy', alpha })[0]);
        for (let i = 0; i < n; i++) expect(Number.isNaN(yn[i])).toBe(i === n - 1);
      }
      q.dispose();
    });
  }
});

describe('stream_read', () => {
  /** The checksum probe.cpp documents, computed here with BigInt. */
  function checksum(bytes: Uint8Array, repeat: number): number {
    let pass = 0n;
    const words = Math.ceil(bytes.length / 8);
    for (let w = 0; w < words; w++) {
      let v = 0n;
      for (let j = 7; j >= 0; j--) v = (v << 8n) | BigInt(bytes[w * 8 + j] ?? 0);
      pass ^= v;
    }
    const M = (1n << 64n) - 1n;
    let s = 0n;
    for (let i = 0; i < repeat; i++) s = (((s << 1n) | (s >> 63n)) & M) ^ pass;
    return Number((s ^ (s >> 32n)) & 0xffffffn);
  }

  it('gives the documented checksum at every level and thread count', async () => {
    const r = rng(7);
    for (const n of [1, 13, 64, 1000, 4099, 100_003]) {
      const bytes = Uint8Array.from({ length: n }, () => Math.floor(r() * 256));
      const want = checksum(bytes, 3);
      for (const isa of levels)
        for (const threads of [1, 2, 3]) {
          const q = new Queue({ isa, threads });
          const t = tensorFromArray('u8', [n], bytes);
          const got = await q.readF32(q.streamRead(t, 3));
          expect(got[0], `${isa} threads=${threads} n=${n}`).toBe(want);
          q.dispose();
        }
    }
  });

  it('rejects repeat < 1', () => {
    const q = new Queue({ threads: 1 });
    const t = tensorFromArray('u8', [8], new Uint8Array(8));
    expect(() => q.streamRead(t, 0)).toThrow(/stream_read: repeat/);
    q.dispose();
  });
});
