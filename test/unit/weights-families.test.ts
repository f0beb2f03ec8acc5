// The model-type registry (lib/model/families.ts, docs §2.10) and the Qwen3 family's config
// fields and tensor list (lib/model/qwen3.ts): readConfig and expectedTensors as a Qwen3
// checkpoint meets them, the defaults of Qwen3's config class, and a ConfigError naming the field
// for everything the Qwen3 decoder does not implement.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../lib/errors.js';
import { MODEL_TYPES, textFamilyOf } from '../../lib/model/families.js';
import { QWEN2 } from '../../lib/model/qwen2.js';
import { QWEN3, type Qwen3TextConfig } from '../../lib/model/qwen3.js';
import { estimateMemory } from '../../lib/model/memory.js';
import { readConfig, SUPPORTED_MODEL_TYPES } from '../../lib/weights/config.js';
import { expectedTensors } from '../../lib/weights/names.js';

let root: string;
beforeAll(async () => { root = await mkdtemp(join(tmpdir(), 'dvl-fam-')); });
afterAll(async () => { await rm(root, { recursive: true, force: true }); });

let n = 0;
async function folder(config: Record<string, unknown>): Promise<string> {
  const d = join(root, `m${n++}`);
  await mkdir(d);
  await writeFile(join(d, 'config.json'), JSON.stringify(config));
  return d;
}

async function refused(config: Record<string, unknown>, re: RegExp, field: string): Promise<void> {
  const e = await readConfig(await folder(config)).then(() => null, (x: unknown) => x);
  expect(e).toBeInstanceOf(ConfigError);
  expect((e as ConfigError).message).toMatch(re);
  expect((e as ConfigError).field).toBe(field);
}

// Qwen3-0.6B's config.json (the fields that matter here).
const qwen3_06b = {
  architectures: ['Qwen3ForCausalLM'], model_type: 'qwen3', hidden_size: 1024, num_hidden_layers: 28, num_attention_heads: 16,
  num_key_value_heads: 8, head_dim: 128, intermediate_size: 3072, vocab_size: 151936, rope_theta: 1000000, rms_norm_eps: 1e-6,
  tie_word_embeddings: true, max_position_embeddings: 40960, attention_bias: false, attention_dropout: 0, hidden_act: 'silu',
  use_sliding_window: false, sliding_window: null, max_window_layers: 28, rope_scaling: null, bos_token_id: 151643, eos_token_id: 151645,
};

describe('the registry', () => {
  it('every supported model_type has one entry and a text family; qwen3 is the Qwen3 family, the rest Qwen2', () => {
    expect(SUPPORTED_MODEL_TYPES).toEqual(MODEL_TYPES.map((e) => e.modelType));
    expect(new Set(SUPPORTED_MODEL_TYPES).size).toBe(SUPPORTED_MODEL_TYPES.length);
    for (const t of SUPPORTED_MODEL_TYPES) expect(textFamilyOf({ family: t, dir: '/x' })).toBe(t === 'qwen3' ? QWEN3 : QWEN2);
    expect(() => textFamilyOf({ family: 'llama' as never, dir: '/x' })).toThrow(ConfigError);
  });

  it('architectures naming another text family contradict model_type; an unknown model_type gets a hint', async () => {
    await refused({ ...qwen3_06b, model_type: 'qwen2' }, /model_type qwen2 \(a qwen2 decoder\) contradicts architectures Qwen3ForCausalLM \(a qwen3 decoder\)/, 'architectures');
    await refused({ ...qwen3_06b, architectures: ['Qwen2ForCausalLM'] }, /contradicts architectures Qwen2ForCausalLM/, 'architectures');
    await refused({ ...qwen3_06b, model_type: 'qwen3_custom' }, /unsupported model_type "qwen3_custom" \(supported: .*qwen3\); architectures names Qwen3ForCausalLM, a qwen3 model/, 'model_type');
    // Names of the same text family, or unregistered ones, are fine.
    expect((await readConfig(await folder({ ...qwen3_06b, architectures: ['DiffusionVLQwen3ForCausalLM'] }))).family).toBe('qwen3');
  });
});

describe('readConfig: qwen3', () => {
  it('Qwen3-0.6B: head_dim 128 ≠ H/nh, tied, no biases, AR', async () => {
    const c = await readConfig(await folder(qwen3_06b));
    expect(c.family).toBe('qwen3');
    expect(c.text).toEqual({
      hiddenSize: 1024, numLayers: 28, numHeads: 16, numKvHeads: 8, headDim: 128, intermediateSize: 3072, vocabSize: 151936,
      ropeTheta: 1e6, rmsNormEps: 1e-6, tieWordEmbeddings: true, maxPositionEmbeddings: 40960, attentionBias: false,
    });
    expect(c.diffusion).toBeNull();
    expect(c.defaultMode).toBe('ar');
    expect(c.vision).toBeNull();
  });

  it('defaults of Qwen3Config: head_dim 128 when absent (even where H/nh differs), attention_bias false', async () => {
    const { head_dim: _h, attention_bias: _b, ...rest } = qwen3_06b;
    const c = await readConfig(await folder({ ...rest, hidden_size: 1000 }));   // 1000 / 16 is no integer: no error, head_dim is 128
    expect(c.text.headDim).toBe(128);
    expect((c.text as Qwen3TextConfig).attentionBias).toBe(false);
  });

  it('enable_bd3lm: block diffusion with the flags of Qwen2 (bs, MASK id, default mode)', async () => {
    const c = await readConfig(await folder({ ...qwen3_06b, enable_bd3lm: true, bd3lm_block_size: 4, mask_token_id: 151669 }));
    expect(c.diffusion).toEqual({ blockSize: 4, maskTokenId: 151669 });
    expect(c.defaultMode).toBe('diffusion');
    expect((await readConfig(await folder({ ...qwen3_06b, enable_bd3lm: true }))).diffusion).toEqual({ blockSize: 8, maskTokenId: 151671 });
  });

  it('rope_parameters (transformers ≥ 5) carries the RoPE base when rope_theta is absent', async () => {
    const { rope_theta: _t, ...rest } = qwen3_06b;
    const c = await readConfig(await folder({ ...rest, rope_parameters: { rope_type: 'default', rope_theta: 5e6 } }));
    expect(c.text.ropeTheta).toBe(5e6);
  });

  it('what the decoder does not implement is refused by field', async () => {
    await refused({ ...qwen3_06b, rope_scaling: { rope_type: 'yarn', factor: 4, original_max_position_embeddings: 32768 } }, /RoPE scaling 'yarn'/, 'rope_scaling.rope_type');
    await refused({ ...qwen3_06b, rope_scaling: { type: 'linear', factor: 2 } }, /RoPE scaling 'linear'/, 'rope_scaling.type');
    await refused({ ...qwen3_06b, rope_parameters: { rope_type: 'dynamic', rope_theta: 1e6 } }, /RoPE scaling 'dynamic'/, 'rope_parameters.rope_type');
    await refused({ ...qwen3_06b, use_sliding_window: true }, /sliding-window attention is not supported/, 'use_sliding_window');
    await refused({ ...qwen3_06b, layer_types: ['full_attention', 'sliding_attention'] }, /layer_types\[1\] is 'sliding_attention'/, 'layer_types');
    await refused({ ...qwen3_06b, hidden_act: 'gelu' }, /hidden_act 'gelu'/, 'hidden_act');
    await refused({ ...qwen3_06b, attention_bias: 'no' }, /true or false for attention_bias/, 'attention_bias');
    await refused({ ...qwen3_06b, num_key_value_heads: 5 }, /16 is not a multiple of num_key_value_heads 5/, 'num_key_value_heads');
  });
});

describe('expectedTensors: qwen3', () => {
  it('q_norm / k_norm [hd], projections at nh·hd, no biases, no lm_head when tied', async () => {
    const c = await readConfig(await folder(qwen3_06b));
    const m = expectedTensors(c);
    expect(m.get('model.layers.27.self_attn.q_proj.weight')).toEqual([2048, 1024]);
    expect(m.get('model.layers.27.self_attn.k_proj.weight')).toEqual([1024, 1024]);
    expect(m.get('model.layers.0.self_attn.o_proj.weight')).toEqual([1024, 2048]);
    expect(m.get('model.layers.0.self_attn.q_norm.weight')).toEqual([128]);
    expect(m.get('model.layers.0.self_attn.k_norm.weight')).toEqual([128]);
    expect(m.has('model.layers.0.self_attn.q_proj.bias')).toBe(false);
    expect(m.has('lm_head.weight')).toBe(false);
    expect(m.size).toBe(28 * 11 + 2);
    const untiedBiased = expectedTensors({ ...c, text: { ...c.text, tieWordEmbeddings: false, attentionBias: true } as Qwen3TextConfig });
    expect(untiedBiased.get('model.layers.3.self_attn.o_proj.bias')).toEqual([1024]);
    expect(untiedBiased.get('model.layers.3.self_attn.v_proj.bias')).toEqual([1024]);
    expect(untiedBiased.size).toBe(28 * 15 + 3);
  });

  it('the memory estimate counts the Qwen3 tensors', async () => {
    const c = await readConfig(await folder(qwen3_06b));
    let f32 = 0;
    for (const s of expectedTensors(c).values()) f32 += s.reduce((a, d) => a * d, 1) * 4;
    expect(estimateMemory(c, { contextLength: 4096, dtype: 'f32' }).weightsBytes).toBe(f32);
    // 0.6B parameters: ~2.4 GB in f32 (the tied embedding counted once).
    expect(f32 / 4 / 1e9).toBeCloseTo(0.596, 2);
  });
});
