// qwen3.ts — the Qwen3 text family (dense Qwen3ForCausalLM; docs §2.10): config fields, tensors
// and layer. It differs from Qwen2 (qwen2.ts) in the attention block only:
//   - q and k are RMS-normalised per head (weights q_norm, k_norm [hd], eps = rms_norm_eps)
//     after the projection and before RoPE;
//   - no biases on q, k, v or o (unless attention_bias: then all four have one);
//   - head_dim comes from the config (128 by default) and need not be H / nh.
// As block diffusion it takes the same config flags as Qwen2 (enable_bd3lm, bd3lm_block_size,
// mask_token_id; docs §1.1, §5.1) and decodes through the same decoder.
//
// Legend: n tokens in this forward, H hidden, nh / nkv query / key-value heads, hd head dim,
// I intermediate.
//
// One layer:
//   x = RMSNorm_in(h)
//   q = rope(RMSNorm_q(Wq·x)), k = rope(RMSNorm_k(Wk·x)), v = Wv·x    (norms per head of hd)
//   h = h + Wo·attention(q, k, v)
//   h = h + W_down·(silu(W_gate·m) ⊙ W_up·m),  m = RMSNorm_post(h)
import { ConfigError } from '../errors.js';
import type { OpSet, Queue, Tensor } from '../native/index.js';
import type { TextConfig } from '../weights/config.js';
import type { Fields } from '../weights/fields.js';
import type { LoadedWeights } from '../weights/load.js';
import { decoderTensors, readDecoderText, TextDecoder, type LayerContext, type TextFamily } from './decoder.js';

export interface Qwen3TextConfig extends TextConfig {
  /** attention_bias: biases on q, k, v and o (false in every released Qwen3). */
  attentionBias: boolean;
}

interface LayerWeights {
  inputNorm: Tensor;
  qProj: Tensor; kProj: Tensor; vProj: Tensor; oProj: Tensor;
  qBias?: Tensor; kBias?: Tensor; vBias?: Tensor; oBias?: Tensor;
  qNorm: Tensor; kNorm: Tensor;
  postNorm: Tensor;
  gateProj: Tensor; upProj: Tensor; downProj: Tensor;
}

export class Qwen3Text extends TextDecoder {
  private readonly layers: LayerWeights[] = [];

  constructor(q: Queue, weights: LoadedWeights, cfg: Qwen3TextConfig) {
    super(q, weights, cfg);
    const w = (n: string) => weights.get(n);
    const b = (n: string) => (cfg.attentionBias ? weights.get(n) : undefined);
    for (let i = 0; i < cfg.numLayers; i++) {
      const p = `model.layers.${i}.`;
      this.layers.push({
        inputNorm: w(p + 'input_layernorm.weight'),
        qProj: w(p + 'self_attn.q_proj.weight'), kProj: w(p + 'self_attn.k_proj.weight'),
        vProj: w(p + 'self_attn.v_proj.weight'), oProj: w(p + 'self_attn.o_proj.weight'),
        qBias: b(p + 'self_attn.q_proj.bias'), kBias: b(p + 'self_attn.k_proj.bias'),
        vBias: b(p + 'self_attn.v_proj.bias'), oBias: b(p + 'self_attn.o_proj.bias'),
        qNorm: w(p + 'self_attn.q_norm.weight'), kNorm: w(p + 'self_attn.k_norm.weight'),
        postNorm: w(p + 'post_attention_layernorm.weight'),
        gateProj: w(p + 'mlp.gate_proj.weight'), upProj: w(p + 'mlp.up_proj.weight'), downProj: w(p + 'mlp.down_proj.weight'),
      });
    }
  }

  protected layer(o: OpSet, l: number, h: Tensor, a: LayerContext): Tensor | null {
    const { cfg } = this;
    const { n, cos, sin } = a;
    const nh = cfg.numHeads, nkv = cfg.numKvHeads, hd = cfg.headDim, eps = cfg.rmsNormEps;
    const L = this.layers[l];
    const x = o.rmsNorm(h, L.inputNorm, eps);
    // rms_norm works on the last dim, so on [n, heads, hd] it normalises each head.
    const kh = o.rope(o.rmsNorm(o.reshape(o.matmul(x, L.kProj, L.kBias), [n, nkv, hd]), L.kNorm, eps), cos, sin);
    const vh = o.reshape(o.matmul(x, L.vProj, L.vBias), [n, nkv, hd]);
    this.storeKv(o, l, kh, vh, a);
    if (a.keep === null) return null;   // last layer of a pass without logits: K/V only
    const qh = o.rope(o.rmsNorm(o.reshape(o.matmul(x, L.qProj, L.qBias), [n, nh, hd]), L.qNorm, eps), cos, sin);
    const att = this.attend(o, l, qh, a);   // [kept rows, nh·hd]
    h = o.add(this.keep(o, h, a), o.matmul(att, L.oProj, L.oBias));
    const m = o.rmsNorm(h, L.postNorm, eps);
    const act = o.swiglu(o.matmul(m, L.gateProj), o.matmul(m, L.upProj));
    return o.add(h, o.matmul(act, L.downProj));
  }
}

/**
 * Qwen3's config.json: the shared decoder fields with Qwen3Config's head_dim default (128), the
 * RoPE base from rope_theta or (transformers ≥ 5) rope_parameters.rope_theta, attention_bias.
 * What this decoder does not implement is refused by name: RoPE scaling (YaRN and the like),
 * sliding-window layers, an activation other than SiLU.
 */
function readQwen3Text(tf: Fields, tie: Fields, file: string): Qwen3TextConfig {
  const base = readDecoderText(tf, tie, file, { headDim: 128 });
  const params = tf.sub('rope_parameters');
  for (const f of [params, tf.sub('rope_scaling')]) {
    if (!f) continue;
    const at = f.sources[0].prefix;
    const kind = f.has('rope_type') ? f.str('rope_type', 'default') : f.str('type', 'default');
    if (kind !== 'default') {
      throw new ConfigError(`${file}: RoPE scaling '${kind}' (${at.slice(0, -1)}) is not supported: the Qwen3 decoder runs plain RoPE (remove it to run within the trained context)`,
        { file, field: `${at}${f.has('rope_type') ? 'rope_type' : 'type'}` });
    }
  }
  const ropeTheta = !tf.has('rope_theta') && params ? params.num('rope_theta', 10000) : base.ropeTheta;
  if (tf.bool('use_sliding_window', false)) {
    throw new ConfigError(`${file}: use_sliding_window is true: sliding-window attention is not supported for qwen3`, { file, field: tf.path('use_sliding_window') });
  }
  const windowed = (tf.strList('layer_types') ?? []).findIndex((t) => t !== 'full_attention');
  if (windowed >= 0) {
    throw new ConfigError(`${file}: layer_types[${windowed}] is '${tf.strList('layer_types')![windowed]}': only full_attention layers are supported for qwen3`, { file, field: tf.path('layer_types') });
  }
  const act = tf.str('hidden_act', 'silu');
  if (act !== 'silu') throw new ConfigError(`${file}: hidden_act '${act}' is not supported for qwen3 (SiLU only)`, { file, field: tf.path('hidden_act') });
  return { ...base, ropeTheta, attentionBias: tf.bool('attention_bias', false) };
}

/** The Qwen3 family: config fields above, tensors with q_norm / k_norm and without biases, Qwen3Text. */
export const QWEN3: TextFamily<Qwen3TextConfig> = {
  name: 'qwen3',
  readText: readQwen3Text,
  tensors: (t) => {
    const H = t.hiddenSize, hd = t.headDim, Hq = t.numHeads * hd, Hkv = t.numKvHeads * hd, I = t.intermediateSize;
    return decoderTensors(t, (p, m) => {
      m.set(`${p}input_layernorm.weight`, [H]);
      m.set(`${p}self_attn.q_proj.weight`, [Hq, H]);
      m.set(`${p}self_attn.k_proj.weight`, [Hkv, H]);
      m.set(`${p}self_attn.v_proj.weight`, [Hkv, H]);
      m.set(`${p}self_attn.o_proj.weight`, [H, Hq]);
      if (t.attentionBias) {
        m.set(`${p}self_attn.q_proj.bias`, [Hq]);
        m.set(`${p}self_attn.k_proj.bias`, [Hkv]);
        m.set(`${p}self_attn.v_proj.bias`, [Hkv]);
        m.set(`${p}self_attn.o_proj.bias`, [H]);
      }
      m.set(`${p}self_attn.q_norm.weight`, [hd]);
      m.set(`${p}self_attn.k_norm.weight`, [hd]);
      m.set(`${p}post_attention_layernorm.weight`, [H]);
      m.set(`${p}mlp.gate_proj.weight`, [I, H]);
      m.set(`${p}mlp.up_proj.weight`, [I, H]);
      m.set(`${p}mlp.down_proj.weight`, [H, I]);
    });
  },
  create: (q, weights, cfg) => new Qwen3Text(q, weights, cfg),
};
