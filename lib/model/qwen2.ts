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
import type { OpSet, Queue, Tensor } from '../native/index.js';
import type { TextConfig } from '../weights/config.js';
import type { LoadedWeights } from '../weights/load.js';
import { decoderTensors, readDecoderText, TextDecoder, type LayerContext, type TextFamily } from './decoder.js';

export type { AttentionMask, ForwardArgs, KvCacheOptions, SeqPass } from './decoder.js';

interface LayerWeights {
  inputNorm: Tensor;
  qProj: Tensor; qBias: Tensor; kProj: Tensor; kBias: Tensor; vProj: Tensor; vBias: Tensor;
  oProj: Tensor;
  postNorm: Tensor;
  gateProj: Tensor; upProj: Tensor; downProj: Tensor;
}

export class Qwen2Text extends TextDecoder {
  private readonly layers: LayerWeights[] = [];

  constructor(q: Queue, weights: LoadedWeights, cfg: TextConfig) {
    super(q, weights, cfg);
    const w = (n: string) => weights.get(n);
    for (let i = 0; i < cfg.numLayers; i++) {
      const p = `model.layers.${i}.`;
      this.layers.push({
        inputNorm: w(p + 'input_layernorm.weight'),
        qProj: w(p + 'self_attn.q_proj.weight'), qBias: w(p + 'self_attn.q_proj.bias'),
        kProj: w(p + 'self_attn.k_proj.weight'), kBias: w(p + 'self_attn.k_proj.bias'),
        vProj: w(p + 'self_attn.v_proj.weight'), vBias: w(p + 'self_attn.v_proj.bias'),
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
    const kh = o.rope(o.reshape(o.matmul(x, L.kProj, L.kBias), [n, nkv, hd]), cos, sin);
    const vh = o.reshape(o.matmul(x, L.vProj, L.vBias), [n, nkv, hd]);
    this.storeKv(o, l, kh, vh, a);
    if (a.keep === null) return null;   // last layer of a pass without logits: K/V only
    const qh = o.rope(o.reshape(o.matmul(x, L.qProj, L.qBias), [n, nh, hd]), cos, sin);
    const att = this.attend(o, l, qh, a);   // [kept rows, nh·hd]
    h = o.add(this.keep(o, h, a), o.matmul(att, L.oProj));
    // MLP (docs §2.6).
    const m = o.rmsNorm(h, L.postNorm, cfg.rmsNormEps);
    const act = o.swiglu(o.matmul(m, L.gateProj), o.matmul(m, L.upProj));
    return o.add(h, o.matmul(act, L.downProj));
  }
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
  create: (q, weights, cfg) => new Qwen2Text(q, weights, cfg),
};
