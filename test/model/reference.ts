// reference.ts — a float64 forward of the Qwen2 and Qwen3 text families over a whole sequence,
// no KV cache: the yardstick for lib/model/qwen2.ts and lib/model/qwen3.ts. Plain loops straight
// from docs §2 (Qwen3's differences: docs §2.10); the attention mask is a predicate (query
// position, key position) → visible, so one function covers causal, block-causal and the
// merged-commit pattern.
//
// Legend: T tokens, H hidden, nh/nkv heads, hd head dim, I intermediate, V vocab.

import { attendRef } from '../helpers/attention-ref.js';

export interface RefConfig {
  hiddenSize: number; numLayers: number; numHeads: number; numKvHeads: number; headDim: number;
  intermediateSize: number; vocabSize: number; ropeTheta: number; rmsNormEps: number; tieWordEmbeddings: boolean;
  /**
   * 'qwen2' (default): biases on q, k, v. 'qwen3': q and k RMS-normalised per head (q_norm,
   * k_norm) between the projection and RoPE; biases on q, k, v and o only with attentionBias.
   */
  family?: 'qwen2' | 'qwen3';
  attentionBias?: boolean;
  /** Sensitivity checks only: where Qwen3's q/k norms go ('none' drops them). */
  qkNorm?: 'before-rope' | 'after-rope' | 'none';
}

export type Visible = (q: number, k: number) => boolean;
export const causal: Visible = (q, k) => k <= q;
export const blockCausal = (bs: number): Visible => (q, k) => Math.floor(k / bs) <= Math.floor(q / bs);

type W = Map<string, Float32Array>;

function rmsNorm(x: Float64Array, w: Float32Array, eps: number): Float64Array {
  let ss = 0;
  for (const v of x) ss += v * v;
  const r = 1 / Math.sqrt(ss / x.length + eps);
  return x.map((v, i) => v * r * w[i]);
}

/** y[N] = W[N, K] · x[K] + b. */
function linear(x: Float64Array, w: Float32Array, N: number, b?: Float32Array): Float64Array {
  const K = x.length;
  const y = new Float64Array(N);
  for (let n = 0; n < N; n++) {
    let acc = b ? b[n] : 0;
    const o = n * K;
    for (let k = 0; k < K; k++) acc += w[o + k] * x[k];
    y[n] = acc;
  }
  return y;
}

/** RMSNorm of each of `heads` head vectors of hd values, in place (Qwen3's q_norm / k_norm). */
function headNorm(x: Float64Array, heads: number, hd: number, w: Float32Array, eps: number): void {
  for (let h = 0; h < heads; h++) x.set(rmsNorm(x.subarray(h * hd, (h + 1) * hd), w, eps), h * hd);
}

/** RoPE as docs §2.4: inv_freq and the angle rounded to f32 like torch, cos/sin in double. */
function rope(x: Float64Array, heads: number, hd: number, pos: number, theta: number): void {
  const half = hd / 2;
  for (let j = 0; j < half; j++) {
    const inv = Math.fround(1 / Math.fround(theta ** Math.fround((2 * j) / hd)));
    const ang = Math.fround(pos * inv);
    const c = Math.cos(ang), s = Math.sin(ang);
    for (let h = 0; h < heads; h++) {
      const o = h * hd;
      const a = x[o + j], b = x[o + j + half];
      x[o + j] = a * c - b * s;
      x[o + j + half] = b * c + a * s;
    }
  }
}

export interface ReferenceOptions {
  /**
   * Applied to the input of every linear layer (q/k/v, o, gate/up, down, lm_head) before the
   * product: a model of the fast precisions' activation rounding (test/model/precision.test.ts).
   */
  linearInput?: (x: Float64Array) => Float64Array;
}

/**
 * Logits [T][V] (as Float64Array rows) for every position of `ids` at positions 0..T-1 under
 * the visibility predicate.
 */
export function referenceForward(cfg: RefConfig, w: W, ids: readonly number[], visible: Visible, rows?: readonly number[], opts: ReferenceOptions = {}): Float64Array[] {
  const lin = opts.linearInput ? (x: Float64Array, wt: Float32Array, N: number, b?: Float32Array) => linear(opts.linearInput!(x), wt, N, b) : linear;
  const T = ids.length, H = cfg.hiddenSize, nh = cfg.numHeads, nkv = cfg.numKvHeads, hd = cfg.headDim;
  const I = cfg.intermediateSize, V = cfg.vocabSize;
  const get = (n: string) => {
    const t = w.get(n);
    if (!t) throw new Error(`reference: missing ${n}`);
    return t;
  };
  const emb = get('model.embed_tokens.weight');
  const qwen3 = cfg.family === 'qwen3';
  const qkvBias = !qwen3 || cfg.attentionBias === true, oBias = qwen3 && cfg.attentionBias === true;
  const qkNorm = qwen3 ? cfg.qkNorm ?? 'before-rope' : 'none';
  const bias = (n: string, on: boolean) => (on ? get(n) : undefined);
  let h: Float64Array[] = ids.map((id) => Float64Array.from(emb.subarray(id * H, (id + 1) * H)));
  for (let l = 0; l < cfg.numLayers; l++) {
    const p = `model.layers.${l}.`;
    const Q: Float64Array[] = [], K: Float64Array[] = [], Vv: Float64Array[] = [];
    for (let t = 0; t < T; t++) {
      const x = rmsNorm(h[t], get(p + 'input_layernorm.weight'), cfg.rmsNormEps);
      const q = lin(x, get(p + 'self_attn.q_proj.weight'), nh * hd, bias(p + 'self_attn.q_proj.bias', qkvBias));
      const k = lin(x, get(p + 'self_attn.k_proj.weight'), nkv * hd, bias(p + 'self_attn.k_proj.bias', qkvBias));
      const v = lin(x, get(p + 'self_attn.v_proj.weight'), nkv * hd, bias(p + 'self_attn.v_proj.bias', qkvBias));
      const norms = () => {
        headNorm(q, nh, hd, get(p + 'self_attn.q_norm.weight'), cfg.rmsNormEps);
        headNorm(k, nkv, hd, get(p + 'self_attn.k_norm.weight'), cfg.rmsNormEps);
      };
      if (qkNorm === 'before-rope') norms();
      rope(q, nh, hd, t, cfg.ropeTheta);
      rope(k, nkv, hd, t, cfg.ropeTheta);
      if (qkNorm === 'after-rope') norms();
      Q.push(q); K.push(k); Vv.push(v);
    }
    // Q as [T, nh, hd], K and V as caches [nkv, T, hd]: the shared reference (test/helpers/attention-ref.ts).
    const q = new Float64Array(T * nh * hd), kc = new Float64Array(nkv * T * hd), vc = new Float64Array(nkv * T * hd);
    for (let t = 0; t < T; t++) {
      q.set(Q[t], t * nh * hd);
      for (let g = 0; g < nkv; g++) {
        kc.set(K[t].subarray(g * hd, (g + 1) * hd), (g * T + t) * hd);
        vc.set(Vv[t].subarray(g * hd, (g + 1) * hd), (g * T + t) * hd);
      }
    }
    const att = attendRef(q, kc, vc, { Tq: T, nh, nkv, hd, cap: T, kvLen: T }, visible);
    const next: Float64Array[] = [];
    for (let t = 0; t < T; t++) {
      const o = att.subarray(t * nh * hd, (t + 1) * nh * hd);
      const y = lin(o, get(p + 'self_attn.o_proj.weight'), H, bias(p + 'self_attn.o_proj.bias', oBias));
      const h1 = h[t].map((v, i) => v + y[i]);
      const m = rmsNorm(h1, get(p + 'post_attention_layernorm.weight'), cfg.rmsNormEps);
      const g = lin(m, get(p + 'mlp.gate_proj.weight'), I);
      const u = lin(m, get(p + 'mlp.up_proj.weight'), I);
      const a = g.map((gv, i) => (gv / (1 + Math.exp(-gv))) * u[i]);
      const d = lin(a, get(p + 'mlp.down_proj.weight'), H);
      next.push(h1.map((v, i) => v + d[i]));
    }
    h = next;
  }
  const head = cfg.tieWordEmbeddings ? emb : get('lm_head.weight');
  const want = rows ?? ids.map((_, i) => i);
  return want.map((t) => lin(rmsNorm(h[t], get('model.norm.weight'), cfg.rmsNormEps), head, V));
}

/** Index of the largest value (first on ties). */
export function argmax(x: ArrayLike<number>): number {
  let b = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[b]) b = i;
  return b;
}
