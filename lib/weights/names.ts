// names.ts — the one table that maps every stored tensor naming to the canonical one, and the
// list of tensors (with shapes) a config expects.
//
// Canonical names (what lib/model asks for):
//   text      model.embed_tokens.weight [V, H]; model.layers.{i}.… ; model.norm.weight [H];
//             lm_head.weight [V, H] (absent when tied)
//   Qwen ViT  visual.patch_embed.proj.weight, visual.blocks.{j}.…, visual.merger.{ln_q, mlp.0, mlp.2}.*
//   SigLIP    siglip.vision_model.…, projector mm_projector.{0,2}.*, image_newline
// Stored layouts (docs §1.4–§1.7): the suffix below a prefix is the same everywhere, so each
// layout is a prefix rewrite (role = which file the name came from, see checkpoint.ts):
//   stock < 4.52     model.*, visual.*, lm_head.*
//   stock ≥ 4.52     model.language_model.*, model.visual.*
//   trained/released model.vision_tower.vision_tower.*, model.mm_projector.merger.*
//   converted        vision_tower.safetensors (unprefixed), projector.safetensors (merger. stripped)
//   AR-LM (SigLIP)   model.vision_tower.vision_tower.vision_model.*, model.mm_projector.{0,2}.*,
//                    model.image_newline
import type { FileRole } from './checkpoint.js';
import type { ModelConfig } from './config.js';

interface Rule {
  role: FileRole;
  /** Stored-name prefix (or the exact name when `exact`). */
  from: string;
  to: string;
  exact?: boolean;
}

/** First matching rule wins, so longer prefixes come before the prefixes they extend. */
export const NAME_RULES: readonly Rule[] = [
  // model files
  { role: 'model', from: 'model.language_model.', to: 'model.' },
  { role: 'model', from: 'model.visual.', to: 'visual.' },
  { role: 'model', from: 'model.vision_tower.vision_tower.vision_model.', to: 'siglip.vision_model.' },
  { role: 'model', from: 'model.vision_tower.vision_tower.', to: 'visual.' },
  { role: 'model', from: 'model.mm_projector.merger.', to: 'visual.merger.' },
  { role: 'model', from: 'model.mm_projector.', to: 'mm_projector.' },
  { role: 'model', from: 'model.image_newline', to: 'image_newline', exact: true },
  { role: 'model', from: 'visual.', to: 'visual.' },
  { role: 'model', from: 'lm_head.', to: 'lm_head.' },
  { role: 'model', from: 'model.', to: 'model.' },
  // converted vision_tower.safetensors: the reference loader strips the first of these prefixes
  { role: 'vision_tower', from: 'model.vision_tower.vision_tower.', to: 'visual.' },
  { role: 'vision_tower', from: 'visual.', to: 'visual.' },
  { role: 'vision_tower', from: 'vision_tower.', to: 'visual.' },
  { role: 'vision_tower', from: '', to: 'visual.' },
  // converted projector.safetensors: merger tensors with `merger.` stripped
  { role: 'projector', from: 'merger.', to: 'visual.merger.' },
  { role: 'projector', from: '', to: 'visual.merger.' },
];

/** The canonical name of a stored tensor, or null when no rule applies (reported as unused). */
export function canonicalName(role: FileRole, stored: string): string | null {
  for (const r of NAME_RULES) {
    if (r.role !== role) continue;
    if (r.exact ? stored === r.from : stored.startsWith(r.from)) return r.to + stored.slice(r.from.length);
  }
  return null;
}

/** Canonical name → shape, for everything `config` needs (vision only when `vision`). */
export function expectedTensors(config: ModelConfig, opts: { vision?: boolean } = {}): Map<string, number[]> {
  const m = new Map<string, number[]>();
  const t = config.text;
  const H = t.hiddenSize, Hq = t.numHeads * t.headDim, Hkv = t.numKvHeads * t.headDim, I = t.intermediateSize, V = t.vocabSize;
  m.set('model.embed_tokens.weight', [V, H]);
  for (let i = 0; i < t.numLayers; i++) {
    const p = `model.layers.${i}.`;
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
  }
  m.set('model.norm.weight', [H]);
  if (!t.tieWordEmbeddings) m.set('lm_head.weight', [V, H]);

  const v = config.vision;
  if (!v || opts.vision === false) return m;
  if (v.kind === 'qwen2_5_vl') {
    const C = v.hiddenSize, Iv = v.intermediateSize, M = C * v.spatialMergeSize ** 2;
    m.set('visual.patch_embed.proj.weight', [C, 3, v.temporalPatchSize, v.patchSize, v.patchSize]);
    for (let j = 0; j < v.depth; j++) {
      const p = `visual.blocks.${j}.`;
      m.set(`${p}norm1.weight`, [C]);
      m.set(`${p}norm2.weight`, [C]);
      m.set(`${p}attn.qkv.weight`, [3 * C, C]);
      m.set(`${p}attn.qkv.bias`, [3 * C]);
      m.set(`${p}attn.proj.weight`, [C, C]);
      m.set(`${p}attn.proj.bias`, [C]);
      m.set(`${p}mlp.gate_proj.weight`, [Iv, C]);
      m.set(`${p}mlp.gate_proj.bias`, [Iv]);
      m.set(`${p}mlp.up_proj.weight`, [Iv, C]);
      m.set(`${p}mlp.up_proj.bias`, [Iv]);
      m.set(`${p}mlp.down_proj.weight`, [C, Iv]);
      m.set(`${p}mlp.down_proj.bias`, [C]);
    }
    m.set('visual.merger.ln_q.weight', [C]);
    m.set('visual.merger.mlp.0.weight', [M, M]);
    m.set('visual.merger.mlp.0.bias', [M]);
    m.set('visual.merger.mlp.2.weight', [v.outHiddenSize, M]);
    m.set('visual.merger.mlp.2.bias', [v.outHiddenSize]);
  } else {
    const C = v.hiddenSize, Iv = v.intermediateSize, n = (v.imageSize / v.patchSize) | 0;
    const e = 'siglip.vision_model.embeddings.';
    m.set(`${e}patch_embedding.weight`, [C, 3, v.patchSize, v.patchSize]);
    m.set(`${e}patch_embedding.bias`, [C]);
    m.set(`${e}position_embedding.weight`, [n * n, C]);
    for (let k = 0; k < v.numLayers; k++) {
      const p = `siglip.vision_model.encoder.layers.${k}.`;
      for (const proj of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) {
        m.set(`${p}self_attn.${proj}.weight`, [C, C]);
        m.set(`${p}self_attn.${proj}.bias`, [C]);
      }
      for (const ln of ['layer_norm1', 'layer_norm2']) {
        m.set(`${p}${ln}.weight`, [C]);
        m.set(`${p}${ln}.bias`, [C]);
      }
      m.set(`${p}mlp.fc1.weight`, [Iv, C]);
      m.set(`${p}mlp.fc1.bias`, [Iv]);
      m.set(`${p}mlp.fc2.weight`, [C, Iv]);
      m.set(`${p}mlp.fc2.bias`, [C]);
    }
    // post_layernorm is stored but unused (§3.5 step 5): it lands in `unused`.
    m.set('mm_projector.0.weight', [H, v.mmHiddenSize]);
    m.set('mm_projector.0.bias', [H]);
    m.set('mm_projector.2.weight', [H, H]);
    m.set('mm_projector.2.bias', [H]);
    m.set('image_newline', [H]);
  }
  return m;
}
