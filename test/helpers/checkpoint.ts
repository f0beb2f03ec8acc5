// checkpoint.ts (test helper) — writes safetensors files and small random Qwen2 / DiffusionVL
// checkpoints in every stored layout of docs §1.4–§1.7, and returns the stored values.
//
// writeSafetensors: the format as specified (u64 LE header length, JSON header padded with
// spaces so the data section starts 8-byte aligned, tensors back to back in the order given),
// streamed tensor by tensor through a file handle.
// writeQwen2Checkpoint: random weights (matrices std 0.08, embeddings 0.1, biases 0.02, norm
// weights 1 + 0.05·N(0,1): logits spread but not degenerate), config.json and
// generation_config.json. The returned Float32Arrays hold the values actually stored (after
// bf16/f16 rounding), keyed by canonical name (lib/weights/names.ts), for float64 reference
// forwards. The shape list here is written independently of lib/weights so the loader's
// expectations are checked, not copied. No tokenizer (see test/helpers/tokenizer.ts).
import { mkdir, open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fromBf16, fromF16, normal, rng, toBf16, toF16 } from './random.js';

export type StDType = 'F32' | 'F16' | 'BF16' | 'I32' | 'I64' | 'F64' | 'U8';
const SIZE: Record<StDType, number> = { F32: 4, F16: 2, BF16: 2, I32: 4, I64: 8, F64: 8, U8: 1 };

export interface StEntry {
  name: string;
  dtype: StDType;
  shape: number[];
  /** Raw little-endian element bytes (numel × size). */
  data: ArrayBufferView;
}

/** Writes a .safetensors file; returns each tensor's absolute [begin, end) byte span. */
export async function writeSafetensors(path: string, entries: readonly StEntry[], metadata?: Record<string, string>): Promise<Map<string, [number, number]>> {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let off = 0;
  const rel = new Map<string, [number, number]>();
  for (const e of entries) {
    const numel = e.shape.reduce((a, b) => a * b, 1);
    if (e.data.byteLength !== numel * SIZE[e.dtype]) throw new Error(`writeSafetensors: ${e.name}: ${e.data.byteLength} bytes for ${numel} × ${e.dtype}`);
    header[e.name] = { dtype: e.dtype, shape: e.shape, data_offsets: [off, off + e.data.byteLength] };
    rel.set(e.name, [off, off + e.data.byteLength]);
    off += e.data.byteLength;
  }
  let json = Buffer.from(JSON.stringify(header), 'utf8');
  const pad = (8 - ((8 + json.length) % 8)) % 8;
  if (pad) json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  const fh = await open(path, 'w');
  try {
    await fh.write(len);
    await fh.write(json);
    for (const e of entries) await fh.write(new Uint8Array(e.data.buffer, e.data.byteOffset, e.data.byteLength));
  } finally {
    await fh.close();
  }
  const abs = new Map<string, [number, number]>();
  for (const [k, [b, en]] of rel) abs.set(k, [8 + json.length + b, 8 + json.length + en]);
  return abs;
}

/** Writes a file of raw bytes: an 8-byte LE length `n` then `body` (for malformed-header tests). */
export async function writeRawSafetensors(path: string, n: bigint | number, body: Uint8Array | string): Promise<void> {
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(n));
  await writeFile(path, Buffer.concat([len, typeof body === 'string' ? Buffer.from(body, 'utf8') : Buffer.from(body)]));
}

// ---- random checkpoints ---------------------------------------------------------------------

export interface QwenVisionDims {
  kind: 'qwen2_5_vl';
  depth: number;
  hiddenSize: number;
  numHeads: number;
  intermediateSize: number;
  patchSize: number;
  temporalPatchSize: number;
  spatialMergeSize: number;
  fullAttBlockIndexes: number[];
}

export interface SiglipDims {
  kind: 'siglip';
  hiddenSize: number;
  /** Layers stored (= run); the config claims one more (select_layer −2). */
  numLayers: number;
  numHeads: number;
  intermediateSize: number;
  patchSize: number;
  imageSize: number;
}

export interface TinyQwen2Config {
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  intermediateSize: number;
  vocabSize: number;
  headDim?: number;
  ropeTheta?: number;
  rmsNormEps?: number;
  vision?: QwenVisionDims | SiglipDims;
}

/**
 * Stored naming:
 *   'plain'      model.*, lm_head.* (stock Qwen2; the text file of the converted layout)
 *   'converted'  model.safetensors (text) + vision_tower.safetensors + projector.safetensors (§1.4)
 *   'released'   one state dict, model.vision_tower.vision_tower.*, model.mm_projector.merger.* (§1.5)
 *   'stock'      Qwen2.5-VL < 4.52: model.*, visual.* (flat config)
 *   'stock-new'  Qwen2.5-VL ≥ 4.52: model.language_model.*, model.visual.* (text_config)
 *   'siglip'     AR-LM route: model.vision_tower.vision_tower.vision_model.*, model.mm_projector.{0,2}.*,
 *                model.image_newline (§1.7; model_type diffusionvl_qwen)
 */
export type CheckpointLayout = 'plain' | 'converted' | 'released' | 'stock' | 'stock-new' | 'siglip';

export interface WriteCheckpointOptions {
  dtype: 'f32' | 'f16' | 'bf16';
  tied: boolean;
  /** Number of model files (1 = model.safetensors; n > 1 = n shards + index). */
  shards: number;
  layout: CheckpointLayout;
  seed: number;
  diffusion?: { blockSize: number; maskTokenId: number };
  /** Also write a stale model.safetensors.index.json naming absent shards (§1.4 quirk). */
  staleIndex?: boolean;
}

export interface WrittenCheckpoint {
  dir: string;
  /** Canonical name → the values stored (after dtype rounding), row-major. */
  weights: Map<string, Float32Array>;
  /** Canonical name → where it was stored. */
  stored: Map<string, { file: string; name: string; dtype: StDType; shape: number[] }>;
  /** The config.json written. */
  config: Record<string, unknown>;
}

interface Spec { name: string; shape: number[]; init: 'matrix' | 'embed' | 'bias' | 'norm' }

function textSpecs(c: TinyQwen2Config, tied: boolean): Spec[] {
  const hd = c.headDim ?? c.hiddenSize / c.numHeads;
  const H = c.hiddenSize, Hq = c.numHeads * hd, Hkv = c.numKvHeads * hd, I = c.intermediateSize, V = c.vocabSize;
  const s: Spec[] = [{ name: 'model.embed_tokens.weight', shape: [V, H], init: 'embed' }];
  for (let i = 0; i < c.numLayers; i++) {
    const p = `model.layers.${i}.`;
    s.push(
      { name: `${p}input_layernorm.weight`, shape: [H], init: 'norm' },
      { name: `${p}self_attn.q_proj.weight`, shape: [Hq, H], init: 'matrix' },
      { name: `${p}self_attn.q_proj.bias`, shape: [Hq], init: 'bias' },
      { name: `${p}self_attn.k_proj.weight`, shape: [Hkv, H], init: 'matrix' },
      { name: `${p}self_attn.k_proj.bias`, shape: [Hkv], init: 'bias' },
      { name: `${p}self_attn.v_proj.weight`, shape: [Hkv, H], init: 'matrix' },
      { name: `${p}self_attn.v_proj.bias`, shape: [Hkv], init: 'bias' },
      { name: `${p}self_attn.o_proj.weight`, shape: [H, Hq], init: 'matrix' },
      { name: `${p}post_attention_layernorm.weight`, shape: [H], init: 'norm' },
      { name: `${p}mlp.gate_proj.weight`, shape: [I, H], init: 'matrix' },
      { name: `${p}mlp.up_proj.weight`, shape: [I, H], init: 'matrix' },
      { name: `${p}mlp.down_proj.weight`, shape: [H, I], init: 'matrix' },
    );
  }
  s.push({ name: 'model.norm.weight', shape: [H], init: 'norm' });
  if (!tied) s.push({ name: 'lm_head.weight', shape: [V, H], init: 'matrix' });
  return s;
}

function visionSpecs(v: QwenVisionDims | SiglipDims, textHidden: number): Spec[] {
  const s: Spec[] = [];
  if (v.kind === 'qwen2_5_vl') {
    const C = v.hiddenSize, I = v.intermediateSize, M = C * v.spatialMergeSize ** 2;
    s.push({ name: 'visual.patch_embed.proj.weight', shape: [C, 3, v.temporalPatchSize, v.patchSize, v.patchSize], init: 'matrix' });
    for (let j = 0; j < v.depth; j++) {
      const p = `visual.blocks.${j}.`;
      s.push(
        { name: `${p}norm1.weight`, shape: [C], init: 'norm' },
        { name: `${p}norm2.weight`, shape: [C], init: 'norm' },
        { name: `${p}attn.qkv.weight`, shape: [3 * C, C], init: 'matrix' },
        { name: `${p}attn.qkv.bias`, shape: [3 * C], init: 'bias' },
        { name: `${p}attn.proj.weight`, shape: [C, C], init: 'matrix' },
        { name: `${p}attn.proj.bias`, shape: [C], init: 'bias' },
        { name: `${p}mlp.gate_proj.weight`, shape: [I, C], init: 'matrix' },
        { name: `${p}mlp.gate_proj.bias`, shape: [I], init: 'bias' },
        { name: `${p}mlp.up_proj.weight`, shape: [I, C], init: 'matrix' },
        { name: `${p}mlp.up_proj.bias`, shape: [I], init: 'bias' },
        { name: `${p}mlp.down_proj.weight`, shape: [C, I], init: 'matrix' },
        { name: `${p}mlp.down_proj.bias`, shape: [C], init: 'bias' },
      );
    }
    s.push(
      { name: 'visual.merger.ln_q.weight', shape: [C], init: 'norm' },
      { name: 'visual.merger.mlp.0.weight', shape: [M, M], init: 'matrix' },
      { name: 'visual.merger.mlp.0.bias', shape: [M], init: 'bias' },
      { name: 'visual.merger.mlp.2.weight', shape: [textHidden, M], init: 'matrix' },
      { name: 'visual.merger.mlp.2.bias', shape: [textHidden], init: 'bias' },
    );
  } else {
    const C = v.hiddenSize, I = v.intermediateSize, n = Math.floor(v.imageSize / v.patchSize), H = textHidden;
    const e = 'siglip.vision_model.embeddings.';
    s.push(
      { name: `${e}patch_embedding.weight`, shape: [C, 3, v.patchSize, v.patchSize], init: 'matrix' },
      { name: `${e}patch_embedding.bias`, shape: [C], init: 'bias' },
      { name: `${e}position_embedding.weight`, shape: [n * n, C], init: 'embed' },
    );
    for (let k = 0; k < v.numLayers; k++) {
      const p = `siglip.vision_model.encoder.layers.${k}.`;
      for (const q of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) {
        s.push({ name: `${p}self_attn.${q}.weight`, shape: [C, C], init: 'matrix' }, { name: `${p}self_attn.${q}.bias`, shape: [C], init: 'bias' });
      }
      s.push(
        { name: `${p}layer_norm1.weight`, shape: [C], init: 'norm' },
        { name: `${p}layer_norm1.bias`, shape: [C], init: 'bias' },
        { name: `${p}mlp.fc1.weight`, shape: [I, C], init: 'matrix' },
        { name: `${p}mlp.fc1.bias`, shape: [I], init: 'bias' },
        { name: `${p}mlp.fc2.weight`, shape: [C, I], init: 'matrix' },
        { name: `${p}mlp.fc2.bias`, shape: [C], init: 'bias' },
        { name: `${p}layer_norm2.weight`, shape: [C], init: 'norm' },
        { name: `${p}layer_norm2.bias`, shape: [C], init: 'bias' },
      );
    }
    s.push(
      // Stored but unused by the model (§3.5): the loader must list it as unused.
      { name: 'siglip.vision_model.post_layernorm.weight', shape: [C], init: 'norm' },
      { name: 'siglip.vision_model.post_layernorm.bias', shape: [C], init: 'bias' },
      { name: 'mm_projector.0.weight', shape: [H, C], init: 'matrix' },
      { name: 'mm_projector.0.bias', shape: [H], init: 'bias' },
      { name: 'mm_projector.2.weight', shape: [H, H], init: 'matrix' },
      { name: 'mm_projector.2.bias', shape: [H], init: 'bias' },
      { name: 'image_newline', shape: [H], init: 'bias' },
    );
  }
  return s;
}

/** Stored name and file role for a canonical name under `layout`. */
function storedName(layout: CheckpointLayout, canonical: string): { name: string; file: 'model' | 'vision_tower' | 'projector' } {
  const swap = (from: string, to: string) => (canonical.startsWith(from) ? to + canonical.slice(from.length) : null);
  switch (layout) {
    case 'plain':
    case 'stock':
      return { name: canonical, file: 'model' };
    case 'stock-new':
      return { name: swap('model.', 'model.language_model.') ?? swap('visual.', 'model.visual.') ?? canonical, file: 'model' };
    case 'released':
      return { name: swap('visual.merger.', 'model.mm_projector.merger.') ?? swap('visual.', 'model.vision_tower.vision_tower.') ?? canonical, file: 'model' };
    case 'converted': {
      const m = swap('visual.merger.', '');
      if (m !== null) return { name: m, file: 'projector' };
      const v = swap('visual.', '');
      if (v !== null) return { name: v, file: 'vision_tower' };
      return { name: canonical, file: 'model' };
    }
    case 'siglip':
      return {
        name: swap('siglip.', 'model.vision_tower.vision_tower.') ?? swap('mm_projector.', 'model.mm_projector.') ??
          (canonical === 'image_newline' ? 'model.image_newline' : canonical),
        file: 'model',
      };
  }
}

const ST_DTYPE = { f32: 'F32', f16: 'F16', bf16: 'BF16' } as const;

/** Writes a random checkpoint into `dir` (created if needed). */
export async function writeQwen2Checkpoint(dir: string, cfg: TinyQwen2Config, opts: WriteCheckpointOptions): Promise<WrittenCheckpoint> {
  await mkdir(dir, { recursive: true });
  const r = rng(opts.seed);
  const specs = [...textSpecs(cfg, opts.tied), ...(cfg.vision ? visionSpecs(cfg.vision, cfg.hiddenSize) : [])];
  const weights = new Map<string, Float32Array>();
  const groups: Record<'model' | 'vision_tower' | 'projector', StEntry[]> = { model: [], vision_tower: [], projector: [] };
  const where = new Map<string, { role: 'model' | 'vision_tower' | 'projector'; name: string; shape: number[] }>();
  for (const s of specs) {
    const n = s.shape.reduce((a, b) => a * b, 1);
    let x: Float32Array;
    if (s.init === 'norm') { x = normal(r, n, 0.05); for (let i = 0; i < n; i++) x[i] += 1; }
    else x = normal(r, n, s.init === 'matrix' ? 0.08 : s.init === 'embed' ? 0.1 : 0.02);
    let data: ArrayBufferView;
    if (opts.dtype === 'bf16') { const h = toBf16(x); data = h; x = fromBf16(h); }
    else if (opts.dtype === 'f16') { const h = toF16(x); data = h; x = fromF16(h); }
    else data = x;
    weights.set(s.name, x);
    const st = storedName(opts.layout, s.name);
    groups[st.file].push({ name: st.name, dtype: ST_DTYPE[opts.dtype], shape: s.shape, data });
    where.set(s.name, { role: st.file, name: st.name, shape: s.shape });
  }

  const stored = new Map<string, { file: string; name: string; dtype: StDType; shape: number[] }>();
  const fileOf = new Map<string, string>();
  const meta = { format: 'pt' };
  if (opts.shards <= 1) {
    const f = join(dir, 'model.safetensors');
    await writeSafetensors(f, groups.model, meta);
    for (const e of groups.model) fileOf.set(`model:${e.name}`, f);
    if (opts.staleIndex) {
      const stale = { metadata: { total_size: 1 }, weight_map: Object.fromEntries(groups.model.map((e) => [e.name, 'model-00001-of-00009.safetensors'])) };
      await writeFile(join(dir, 'model.safetensors.index.json'), JSON.stringify(stale));
    }
  } else {
    // Contiguous runs of tensors per shard, like HF's size-based split.
    const n = opts.shards;
    const per = Math.ceil(groups.model.length / n);
    const weightMap: Record<string, string> = {};
    let total = 0;
    for (let k = 0; k < n; k++) {
      const name = `model-${String(k + 1).padStart(5, '0')}-of-${String(n).padStart(5, '0')}.safetensors`;
      const part = groups.model.slice(k * per, (k + 1) * per);
      await writeSafetensors(join(dir, name), part, meta);
      for (const e of part) { weightMap[e.name] = name; fileOf.set(`model:${e.name}`, join(dir, name)); total += e.data.byteLength; }
    }
    await writeFile(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2));
  }
  for (const role of ['vision_tower', 'projector'] as const) {
    if (!groups[role].length) continue;
    const f = join(dir, `${role}.safetensors`);
    await writeSafetensors(f, groups[role]);
    for (const e of groups[role]) fileOf.set(`${role}:${e.name}`, f);
  }
  for (const [canon, w] of where) stored.set(canon, { file: fileOf.get(`${w.role}:${w.name}`)!, name: w.name, dtype: ST_DTYPE[opts.dtype], shape: w.shape });

  const config = configJson(cfg, opts);
  await writeFile(join(dir, 'config.json'), JSON.stringify(config, null, 2));
  await writeFile(join(dir, 'generation_config.json'), JSON.stringify({ bos_token_id: 151643, eos_token_id: [151645, 151643], pad_token_id: 151643 }, null, 2));
  return { dir, weights, stored, config };
}

function configJson(cfg: TinyQwen2Config, opts: WriteCheckpointOptions): Record<string, unknown> {
  const text: Record<string, unknown> = {
    hidden_size: cfg.hiddenSize,
    num_hidden_layers: cfg.numLayers,
    num_attention_heads: cfg.numHeads,
    num_key_value_heads: cfg.numKvHeads,
    intermediate_size: cfg.intermediateSize,
    vocab_size: cfg.vocabSize,
    rope_theta: cfg.ropeTheta ?? 1000000,
    rms_norm_eps: cfg.rmsNormEps ?? 1e-6,
    max_position_embeddings: 32768,
    tie_word_embeddings: opts.tied,
    hidden_act: 'silu',
    torch_dtype: { f32: 'float32', f16: 'float16', bf16: 'bfloat16' }[opts.dtype],
  };
  if (cfg.headDim !== undefined) text.head_dim = cfg.headDim;
  const bd3lm = opts.diffusion ? { enable_bd3lm: true, bd3lm_block_size: opts.diffusion.blockSize, mask_token_id: opts.diffusion.maskTokenId } : {};
  const v = cfg.vision;
  if (v?.kind === 'siglip') {
    return {
      model_type: 'diffusionvl_qwen', architectures: ['LlavaDiffusionVLQwenForCausalLM'], ...text, ...bd3lm, eos_token_id: 151645,
      rope_scaling: null, mm_vision_tower: 'siglip2-so400m-patch14-384', mm_projector_type: 'mlp2x_gelu',
      mm_hidden_size: v.hiddenSize, mm_vision_select_layer: -2, mm_vision_select_feature: 'patch',
      mm_patch_merge_type: 'spatial_unpad', image_aspect_ratio: 'anyres_max_4', mm_newline_position: 'grid',
      // The tower's own dims, as some LLaVA configs embed them (our tiny tower is not SigLIP2-so400m).
      mm_vision_config: {
        hidden_size: v.hiddenSize, num_hidden_layers: v.numLayers + 1, num_attention_heads: v.numHeads,
        intermediate_size: v.intermediateSize, patch_size: v.patchSize, image_size: v.imageSize, layer_norm_eps: 1e-6,
      },
    };
  }
  const vision = v ? {
    depth: v.depth, hidden_size: v.hiddenSize, num_heads: v.numHeads, intermediate_size: v.intermediateSize,
    patch_size: v.patchSize, temporal_patch_size: v.temporalPatchSize, spatial_merge_size: v.spatialMergeSize,
    window_size: 112, fullatt_block_indexes: v.fullAttBlockIndexes, out_hidden_size: cfg.hiddenSize, in_chans: 3, hidden_act: 'silu',
  } : undefined;
  if (opts.diffusion) {
    // Converted/released DiffusionVL: text_config authoritative; the top-level copies are stale
    // defaults as the converter can leave them (§1.4), so a loader reading them fails loudly.
    return {
      model_type: 'diffusionvl_qwenvl', architectures: ['LlavaDiffusionVLQwenVLForCausalLM'],
      hidden_size: 3584, num_hidden_layers: 28, num_attention_heads: 28, num_key_value_heads: 4, intermediate_size: 18944,
      vocab_size: 152064, tie_word_embeddings: !opts.tied,
      text_config: { ...text, model_type: 'qwen2_5_vl_text' }, ...(vision ? { vision_config: vision } : {}),
      image_token_id: 151655, video_token_id: 151656, ...bd3lm, eos_token_id: 151645,
      min_pixels: 147456, max_pixels: 262144,
    };
  }
  if (vision) {
    if (opts.layout === 'stock-new') {
      return { model_type: 'qwen2_5_vl', ...text, text_config: { ...text, model_type: 'qwen2_5_vl_text' }, vision_config: vision, eos_token_id: 151645 };
    }
    return { model_type: 'qwen2_5_vl', ...text, vision_config: vision, eos_token_id: 151645 };
  }
  return { model_type: 'qwen2', architectures: ['Qwen2ForCausalLM'], ...text, eos_token_id: 151645 };
}
