// qwen2.ts — the Qwen2 / Qwen2.5 text family (docs §2, §2.10): its config fields, its tensors
// and its layer, written once as ops. Every DiffusionVL model decodes with it (the text parts of
// Qwen2.5-VL and Qwen2.5-7B are Qwen2 stacks); the cache, the batched forward and its plans are
// TextDecoder's (decoder.ts).
//
// Legend: n tokens in this forward, H hidden, nh / nkv query / key-value heads, hd head dim,
// I intermediate, V vocab rows.
//
// One layer (docs §2.2–§2.6):
//   x = RMSNorm_in(h)
//   q = rope(Wq·x + bq), k = rope(Wk·x + bk), v = Wv·x + bv      (biases on q, k, v)
//   h = h + Wo·attention(q, k, v)                                 (no bias on o)
//   h = h + W_down·(silu(W_gate·m) ⊙ W_up·m),  m = RMSNorm_post(h)
//
// Positions are plain 1-D (docs §2.8): a DiffusionVL-Qwen2.5VL model's mRoPE with three equal
// position rows is exactly this RoPE.
//
// On a CPU queue a small model's Wq | Wk | Wv (and biases) are concatenated at load into one
// product whose output one qkv_rope_split cuts into q, k (both roped) and v, storing k and v in
// the cache: one product and one op where there were three products, two ropes and two cache
// appends — ops that small cost mostly their call (FUSE_QKV_MAX_BYTES). The bits are those of the
// separate ops (test/model/fused-qkv.test.ts).
import type { OpSet, Queue, Tensor } from '../native/index.js';
import type { TextConfig } from '../weights/config.js';
import type { LoadedWeights } from '../weights/load.js';
import { decoderTensors, readDecoderText, TextDecoder, type LayerContext, type TextDecoderOptions, type TextFamily } from './decoder.js';

export type { AttentionMask, ForwardArgs, KvCacheOptions, SeqPass } from './decoder.js';

interface LayerWeights {
  inputNorm: Tensor;
  /** The fused Wq | Wk | Wv and its bias (TextDecoderOptions.fuseQkv), or null: the three below. */
  qkv: { w: Tensor; b: Tensor } | null;
  qProj: Tensor | null; qBias: Tensor | null; kProj: Tensor | null; kBias: Tensor | null; vProj: Tensor | null; vBias: Tensor | null;
  oProj: Tensor;
  postNorm: Tensor;
  gateProj: Tensor; upProj: Tensor; downProj: Tensor;
}

export class Qwen2Text extends TextDecoder {
  private readonly layers: LayerWeights[] = [];

  constructor(q: Queue, weights: LoadedWeights, cfg: TextConfig, opts: TextDecoderOptions = {}) {
    super(q, weights, cfg);
    const w = (n: string) => weights.get(n);
    const fuse = (opts.fuseQkv ?? true) && q.device === 'cpu';
    for (let i = 0; i < cfg.numLayers; i++) {
      const p = `model.layers.${i}.`;
      const qkv = fuse ? fuseQkv(q, weights, p) : null;
      const sep = (n: string) => (qkv ? null : w(n));
      this.layers.push({
        inputNorm: w(p + 'input_layernorm.weight'),
        qkv,
        qProj: sep(p + 'self_attn.q_proj.weight'), qBias: sep(p + 'self_attn.q_proj.bias'),
        kProj: sep(p + 'self_attn.k_proj.weight'), kBias: sep(p + 'self_attn.k_proj.bias'),
        vProj: sep(p + 'self_attn.v_proj.weight'), vBias: sep(p + 'self_attn.v_proj.bias'),
        oProj: w(p + 'self_attn.o_proj.weight'),
        postNorm: w(p + 'post_attention_layernorm.weight'),
        gateProj: w(p + 'mlp.gate_proj.weight'), upProj: w(p + 'mlp.up_proj.weight'), downProj: w(p + 'mlp.down_proj.weight'),
      });
    }
  }

  protected layer(o: OpSet, l: number, h: Tensor, a: LayerContext): Tensor | null {
    const { cfg } = this;
    const { n, cos, sin } = a;
    const nh = cfg.numHeads, nkv = cfg.numKvHeads, hd = cfg.headDim;
    const L = this.layers[l];
    // Attention block (docs §2.3-2.5).
    const x = o.rmsNorm(h, L.inputNorm, cfg.rmsNormEps);
    let qh: Tensor;
    if (L.qkv) {
      // One product, one op that ropes q and k and stores k and v in the cache (a pass without
      // logits computes its last layer's q for nothing: cheaper than a second copy of Wk, Wv).
      qh = this.splitStoreQkv(o, l, o.matmul(x, L.qkv.w, L.qkv.b), a);
      if (a.keep === null) return null;
    } else {
      const kh = o.rope(o.reshape(o.matmul(x, L.kProj!, L.kBias), [n, nkv, hd]), cos, sin);
      const vh = o.reshape(o.matmul(x, L.vProj!, L.vBias), [n, nkv, hd]);
      this.storeKv(o, l, kh, vh, a);
      if (a.keep === null) return null;   // last layer of a pass without logits: K/V only
      qh = o.rope(o.reshape(o.matmul(x, L.qProj!, L.qBias), [n, nh, hd]), cos, sin);
    }
    const att = this.attend(o, l, qh, a);   // [kept rows, nh·hd]
    h = o.add(this.keep(o, h, a), o.matmul(att, L.oProj));
    // MLP (docs §2.6).
    const m = o.rmsNorm(h, L.postNorm, cfg.rmsNormEps);
    const act = o.swiglu(o.matmul(m, L.gateProj), o.matmul(m, L.upProj));
    return o.add(h, o.matmul(act, L.downProj));
  }
}

/**
 * The largest fused q|k|v weight built. A small model's products sit in cache and cost mostly
 * their call (the bundled model's 64 KB: child ×0.977, parent ×0.968 per request); a weight
 * streamed from memory gains nothing and on Qwen2.5-0.5B's shapes (2 MB) the fused model ran
 * ×1.09 slower, paired in one process on the dev VM (bench/RESULTS.md), for a reason not
 * pinned down (the fused product alone measured no slower; the layer's o_proj after it did).
 */
const FUSE_QKV_MAX_BYTES = 1 << 20;

/**
 * Layer prefix p's q, k, v weights and biases concatenated (rows: Wq, then Wk, then Wv), put in
 * the loaded weights as p + 'self_attn.qkv_proj.weight' / '.bias' in place of the six (taken as
 * they are when a decoder built before fused them); null (the six stay) where the weights differ
 * in dtype, a panel layout's rows do not fill whole panels, or they are larger than
 * FUSE_QKV_MAX_BYTES.
 */
function fuseQkv(q: Queue, weights: LoadedWeights, p: string): { w: Tensor; b: Tensor } | null {
  const fw = `${p}self_attn.qkv_proj.weight`, fb = `${p}self_attn.qkv_proj.bias`;
  if (weights.has(fw)) return { w: weights.get(fw), b: weights.get(fb) };   // a second decoder over these weights
  const names = ['q', 'k', 'v'].map((x) => `${p}self_attn.${x}_proj`);
  const ws = names.map((n) => weights.get(`${n}.weight`)), bs = names.map((n) => weights.get(`${n}.bias`));
  const dt = ws[0].dtype;
  if (ws.some((t) => t.dtype !== dt) || bs.some((t) => t.dtype !== bs[0].dtype)) return null;
  if ((dt === 'bf16p' || dt === 'q8p') && (ws[0].shape![0] % 16 !== 0 || ws[1].shape![0] % 16 !== 0)) return null;
  if (ws.reduce((a, t) => a + t.nbytes, 0) > FUSE_QKV_MAX_BYTES) return null;
  const cat = (t: Tensor[]): Tensor => {
    const ab = q.concatRows(t[0], t[1]);
    try { return q.concatRows(ab, t[2]); } finally { ab.dispose(); }
  };
  const w = cat(ws);
  let b: Tensor;
  try { b = cat(bs); } catch (e) { w.dispose(); throw e; }
  for (const n of names) {
    for (const s of ['.weight', '.bias']) { weights.get(n + s).dispose(); weights.tensors.delete(n + s); }
  }
  weights.tensors.set(fw, w);
  weights.tensors.set(fb, b);
  return { w, b };
}

/** The Qwen2 family: config.json fields of docs §1.2, the tensors of docs §1.6, Qwen2Text. */
export const QWEN2: TextFamily = {
  name: 'qwen2',
  readText: (tf, tie, file) => readDecoderText(tf, tie, file),
  tensors: (t) => {
    const H = t.hiddenSize, Hq = t.numHeads * t.headDim, Hkv = t.numKvHeads * t.headDim, I = t.intermediateSize;
    return decoderTensors(t, (p, m) => {
      m.set(`${p}input_layernorm.weight`, [H]);
      m.set(`${p}self_attn.q_proj.weight`, [Hq, H]);
      m.set(`${p}self_attn.q_proj.bias`, [Hq]);
      m.set(`${p}self_attn.k_proj.weight`, [Hkv, H]);
      m.set(`${p}self_attn.k_proj.bias`, [Hkv]);
      m.set(`${p}self_attn.v_proj.weight`, [Hkv, H]);
      m.set(`${p}self_attn.v_proj.bias`, [Hkv]);
      m.set(`${p}self_attn.o_proj.weight`, [H, Hq]);
      m.set(`${p}post_attention_layernorm.weight`, [H]);
      m.set(`${p}mlp.gate_proj.weight`, [I, H]);
      m.set(`${p}mlp.up_proj.weight`, [I, H]);
      m.set(`${p}mlp.down_proj.weight`, [H, I]);
    });
  },
  create: (q, weights, cfg, opts) => new Qwen2Text(q, weights, cfg, opts),
};
