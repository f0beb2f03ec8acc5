// random.ts — seeded random inputs for tests (mulberry32: tiny, fast, reproducible).

export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** n uniform values in [lo, hi). */
export function uniform(r: () => number, n: number, lo = -1, hi = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = lo + (hi - lo) * r();
  return a;
}

/** n standard-normal values (Box-Muller) times `std`. */
export function normal(r: () => number, n: number, std = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const u = Math.max(r(), 1e-12), v = r();
    const m = Math.sqrt(-2 * Math.log(u));
    a[i] = std * m * Math.cos(2 * Math.PI * v);
    if (i + 1 < n) a[i + 1] = std * m * Math.sin(2 * Math.PI * v);
  }
  return a;
}

/** Rounds f32 values to bf16 (nearest even) and returns the bit patterns. */
export function toBf16(x: Float32Array): Uint16Array {
  const u = new Uint32Array(x.buffer, x.byteOffset, x.length);
  const out = new Uint16Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const v = u[i];
    if ((v & 0x7fffffff) > 0x7f800000) { out[i] = (v >>> 16) | 0x40; continue; }
    out[i] = ((v + 0x7fff + ((v >>> 16) & 1)) >>> 16) & 0xffff;
  }
  return out;
}

export function fromBf16(h: Uint16Array): Float32Array {
  const u = new Uint32Array(h.length);
  for (let i = 0; i < h.length; i++) u[i] = h[i] << 16;
  return new Float32Array(u.buffer);
}

const f16buf = new Float32Array(1);
const f16u = new Uint32Array(f16buf.buffer);
/** f32 → f16 bits, round to nearest even (same rule as csrc/core/dtype.h). */
export function toF16(x: Float32Array): Uint16Array {
  const out = new Uint16Array(x.length);
  for (let i = 0; i < x.length; i++) {
    f16buf[0] = x[i];
    const u = f16u[0];
    const sign = (u >>> 16) & 0x8000;
    const a = u & 0x7fffffff;
    if (a > 0x7f800000) { out[i] = sign | 0x7e00 | ((a >>> 13) & 0x3ff); continue; }
    if (a >= 0x477ff000) { out[i] = sign | 0x7c00; continue; }
    if (a < 0x38800000) {
      if (a < 0x33000000) { out[i] = sign; continue; }
      const e = a >>> 23;
      const man = (a & 0x7fffff) | 0x800000;
      const shift = 126 - e;
      let r = man >>> shift;
      const rem = man & ((1 << shift) - 1);
      const half = 1 << (shift - 1);
      if (rem > half || (rem === half && (r & 1))) r++;
      out[i] = sign | r;
      continue;
    }
    const r = a - 0x38000000;
    let o = r >>> 13;
    const rem = r & 0x1fff;
    if (rem > 0x1000 || (rem === 0x1000 && (o & 1))) o++;
    out[i] = sign | o;
  }
  return out;
}

export function fromF16(h: Uint16Array): Float32Array {
  const out = new Float32Array(h.length);
  for (let i = 0; i < h.length; i++) {
    const v = h[i];
    const s = v & 0x8000 ? -1 : 1;
    const e = (v >>> 10) & 0x1f;
    const m = v & 0x3ff;
    out[i] = e === 0 ? s * m * 2 ** -24 : e === 31 ? (m ? NaN : s * Infinity) : s * (1 + m / 1024) * 2 ** (e - 15);
  }
  return out;
}
