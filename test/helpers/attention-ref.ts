// attention-ref.ts — the one float64 attention reference of the test suite: the CPU op tests
// (test/ops/attention, batch), the CUDA op case table (test/gpu/op-cases.test.ts) and the model reference
// forward (test/model/reference.ts) all compute softmax(QKᵀ·scale + mask)V here.
//
// Legend: Tq query rows, nh query heads, nkv kv heads (GQA: head h reads kv head ⌊h / (nh/nkv)⌋),
// hd head dim, cap cache capacity, kvLen keys present. q [Tq, nh, hd]; k, v [nkv, cap, hd].

export type MaskKind = 'causal' | 'block' | 'full' | 'segments';

export interface AttentionRefOptions {
  Tq: number; nh: number; nkv: number; hd: number; cap: number;
  kvLen: number; qPos0: number; mask: MaskKind; blockSize?: number; segments?: readonly number[]; scale?: number;
}

/** Explicit mask predicate of csrc/cpu/ops/attention.cpp: may query row i (absolute position qPos0 + i) see key j? */
export function visible(o: AttentionRefOptions, i: number, j: number): boolean {
  if (j >= o.kvLen) return false;
  const p = o.qPos0 + i;
  switch (o.mask) {
    case 'full': return true;
    case 'causal': return j <= p;
    case 'block': return Math.floor(j / o.blockSize!) <= Math.floor(p / o.blockSize!);
    case 'segments': {
      const cu = o.segments!;
      for (let s = 0; s + 1 < cu.length; s++) if (i >= cu[s] && i < cu[s + 1]) return j >= cu[s] && j < cu[s + 1];
      return false;
    }
  }
}

/** The shapes of one attention: see the legend. scale defaults to 1/√hd. */
export interface AttendDims { Tq: number; nh: number; nkv: number; hd: number; cap: number; kvLen: number; scale?: number }

/**
 * Plain softmax(QKᵀ·scale)V in float64 over the keys j < kvLen that `see(i, j)` allows, in key
 * order. A row with no visible key is 0; a NaN score makes its row NaN (as the kernels do).
 */
export function attendRef(q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>, d: AttendDims, see: (i: number, j: number) => boolean): Float64Array {
  const { Tq, nh, nkv, hd, cap } = d;
  const scale = d.scale ?? 1 / Math.sqrt(hd);
  const group = nh / nkv;
  const out = new Float64Array(Tq * nh * hd);
  const s = new Float64Array(d.kvLen);
  for (let i = 0; i < Tq; i++)
    for (let h = 0; h < nh; h++) {
      const g = Math.floor(h / group), qo = (i * nh + h) * hd;
      let m = -Infinity, any = false;
      for (let j = 0; j < d.kvLen; j++) {
        if (!see(i, j)) { s[j] = NaN; continue; }
        let dot = 0;
        const ko = (g * cap + j) * hd;
        for (let e = 0; e < hd; e++) dot += q[qo + e] * k[ko + e];
        s[j] = dot * scale;
        if (Number.isNaN(s[j])) m = NaN; else if (s[j] > m) m = s[j];
        any = true;
      }
      if (!any) continue;
      let Z = 0;
      for (let j = 0; j < d.kvLen; j++) if (see(i, j)) Z += Math.exp(s[j] - m);
      for (let j = 0; j < d.kvLen; j++) {
        if (!see(i, j)) continue;
        const p = Math.exp(s[j] - m) / Z, vo = (g * cap + j) * hd;
        for (let e = 0; e < hd; e++) out[qo + e] += p * v[vo + e];
      }
    }
  return out;
}

/** attendRef under one of the op's mask kinds (attention's attrs). */
export function attentionRef(q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>, o: AttentionRefOptions): Float64Array {
  return attendRef(q, k, v, o, (i, j) => visible(o, i, j));
}
