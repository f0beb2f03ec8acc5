// compare.ts — checks a computed array against a reference: NaN first, then infinities, then
// max-abs / relative error against a stated tolerance. NaN never passes: a NaN where the
// reference has none is a failure even if the tolerance is huge. expectSameBits is the exact
// check (every f32 bit pattern equal, NaN payloads included) for the paths promised bit-identical.

export interface Tolerance {
  /** Absolute tolerance. */
  abs: number;
  /** Relative tolerance (scaled by |ref|). An element passes if |got-ref| ≤ abs + rel·|ref|. */
  rel?: number;
}

export interface CompareResult {
  ok: boolean;
  message: string;
  maxAbs: number;
  firstBad: number;
}

export function compareArrays(
  got: ArrayLike<number>, ref: ArrayLike<number>, tol: Tolerance, label = '',
): CompareResult {
  if (got.length !== ref.length) {
    return { ok: false, message: `${label}: length ${got.length} != reference ${ref.length}`, maxAbs: Infinity, firstBad: -1 };
  }
  let maxAbs = 0;
  let firstBad = -1;
  let why = '';
  for (let i = 0; i < got.length; i++) {
    const g = got[i], r = ref[i];
    if (Number.isNaN(g) || Number.isNaN(r)) {
      if (Number.isNaN(g) && Number.isNaN(r)) continue;  // both NaN: documented propagation
      if (firstBad < 0) { firstBad = i; why = `NaN mismatch (got ${g}, ref ${r})`; }
      continue;
    }
    if (!Number.isFinite(g) || !Number.isFinite(r)) {
      if (g === r) continue;
      if (firstBad < 0) { firstBad = i; why = `infinity mismatch (got ${g}, ref ${r})`; }
      continue;
    }
    const d = Math.abs(g - r);
    if (d > maxAbs) maxAbs = d;
    if (d > tol.abs + (tol.rel ?? 0) * Math.abs(r) && firstBad < 0) {
      firstBad = i;
      why = `|${g} - ${r}| = ${d.toExponential(3)} > tol (abs ${tol.abs}, rel ${tol.rel ?? 0})`;
    }
  }
  const ok = firstBad < 0;
  return { ok, maxAbs, firstBad, message: ok ? `${label}: ok (max abs ${maxAbs.toExponential(3)})` : `${label}: index ${firstBad}: ${why}; max abs ${maxAbs.toExponential(3)}` };
}

/** Throws (fails the test) with a message naming the label and first bad index. */
export function expectClose(got: ArrayLike<number>, ref: ArrayLike<number>, tol: Tolerance, label = ''): void {
  const r = compareArrays(got, ref, tol, label);
  if (!r.ok) throw new Error(r.message);
}

/**
 * Per-element bounds (matmul tests): NaN first (positions must match), then infinities (exactly),
 * then |got − ref| ≤ tol[i]. Throws naming the first bad index.
 */
export function checkBound(got: ArrayLike<number>, ref: ArrayLike<number>, tol: ArrayLike<number>, label: string): void {
  if (got.length !== ref.length) throw new Error(`${label}: length ${got.length} != reference ${ref.length}`);
  for (let i = 0; i < got.length; i++) {
    const g = got[i], r = ref[i];
    if (Number.isNaN(g) || Number.isNaN(r)) {
      if (Number.isNaN(g) !== Number.isNaN(r)) throw new Error(`${label}: index ${i}: NaN mismatch (got ${g}, ref ${r})`);
      continue;
    }
    if (!Number.isFinite(r)) {
      if (g !== r) throw new Error(`${label}: index ${i}: infinity mismatch (got ${g}, ref ${r})`);
      continue;
    }
    const d = Math.abs(g - r);
    if (!(d <= tol[i])) throw new Error(`${label}: index ${i}: |${g} - ${r}| = ${d.toExponential(3)} > ${tol[i].toExponential(3)}`);
  }
}

/**
 * Throws unless a and b hold the same f32 bit patterns (lengths included), naming the first index
 * that differs. anyNaN: a NaN matches any NaN. For two kernels that compute NaN in different
 * instruction forms: when several operands of an x86 op are NaN, which one's sign and payload
 * the result carries follows the operand order the compiler picked (an FMA's 132/213/231
 * forms), so those bits carry no meaning; every other value must still match exactly.
 */
export function expectSameBits(a: Float32Array, b: Float32Array, label = '', opts: { anyNaN?: boolean } = {}): void {
  if (a.length !== b.length) throw new Error(`${label}: ${a.length} values vs ${b.length}`);
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length), ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < ua.length; i++)
    if (ua[i] !== ub[i] && !(opts.anyNaN && Number.isNaN(a[i]) && Number.isNaN(b[i])))
      throw new Error(`${label}: index ${i}: 0x${ua[i].toString(16)} (${a[i]}) vs 0x${ub[i].toString(16)} (${b[i]})`);
}
