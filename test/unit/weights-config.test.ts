// config.json reading: every supported family, the defaults and precedence rules of docs §1
// (text_config authoritative for the converted layout, eos / mask / block-size defaults), and a
// ConfigError naming file and field for every bad input.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../lib/errors.js';
import { readConfig, SUPPORTED_MODEL_TYPES } from '../../lib/weights/config.js';

let root: string;
beforeAll(async () => { root = await mkdtemp(join(tmpdir(), 'dvl-cfg-')); });
afterAll(async () => { await rm(root, { recursive: true, force: true }); });

let n = 0;
/** A folder holding the given JSON files (strings are written verbatim). */
async function folder(files: Record<string, unknown>): Promise<string> {
  const d = join(root, `m${n++}`);
  await mkdir(d);
  for (const [name, v] of Object.entries(files)) await writeFile(join(d, name), typeof v === 'string' ? v : JSON.stringify(v));
  return d;
}

// The 3B text dims (§1.2).
const qwen3b = {
  hidden_size: 2048, num_hidden_layers: 36, num_attention_heads: 16, num_key_value_heads: 2, intermediate_size: 11008,
  vocab_size: 151936, rope_theta: 1000000, rms_norm_eps: 1e-6, tie_word_embeddings: true, max_position_embeddings: 128000,
};
const vit = {
  depth: 32, hidden_size: 1280, num_heads: 16, intermediate_size: 3420, patch_size: 14, temporal_patch_size: 2,
  spatial_merge_size: 2, window_size: 112, fullatt_block_indexes: [7, 15, 23, 31], out_hidden_size: 2048, in_chans: 3,
};

async function refused(dir: string, re: RegExp, field?: string, file = 'config.json'): Promise<ConfigError> {
  const e = await readConfig(dir).then(() => null, (x: unknown) => x);
  expect(e).toBeInstanceOf(ConfigError);
  const c = e as ConfigError;
  expect(c.message).toMatch(re);
  expect(c.file).toBe(join(dir, file));
  if (field !== undefined) expect(c.field).toBe(field);
  return c;
}

describe('readConfig: families', () => {
  it('qwen2: text fields, HF defaults, no diffusion, eos from config (array → first)', async () => {
    const d = await folder({ 'config.json': { model_type: 'qwen2', hidden_size: 96, num_hidden_layers: 3, num_attention_heads: 4, intermediate_size: 200, vocab_size: 301, eos_token_id: [151645, 151643], pad_token_id: 151643 } });
    const c = await readConfig(d);
    expect(c.family).toBe('qwen2');
    expect(c.dir).toBe(d);
    expect(c.text).toEqual({
      hiddenSize: 96, numLayers: 3, numHeads: 4, numKvHeads: 4, headDim: 24, intermediateSize: 200, vocabSize: 301,
      ropeTheta: 10000, rmsNormEps: 1e-6, tieWordEmbeddings: false, maxPositionEmbeddings: 32768,
    });
    expect(c.diffusion).toBeNull();
    expect(c.vision).toBeNull();
    expect(c.eosTokenId).toBe(151645);
    expect(c.padTokenId).toBe(151643);
    expect(c.raw.model_type).toBe('qwen2');
  });

  it('head_dim overrides hidden/heads; eos falls back to generation_config.json, then 151645', async () => {
    const base = { model_type: 'qwen2', hidden_size: 64, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, intermediate_size: 100, vocab_size: 300, head_dim: 32 };
    const c = await readConfig(await folder({ 'config.json': base, 'generation_config.json': { eos_token_id: [7, 8], pad_token_id: 3 } }));
    expect(c.text.headDim).toBe(32);
    expect(c.eosTokenId).toBe(7);
    expect(c.padTokenId).toBe(3);
    const c2 = await readConfig(await folder({ 'config.json': base }));
    expect(c2.eosTokenId).toBe(151645);
    expect(c2.padTokenId).toBeUndefined();
  });

  it('decode defaults from generation_config.json (steps, remasking_strategy, confidence_threshold); bad ones named', async () => {
    const base = { model_type: 'qwen2', hidden_size: 64, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, intermediate_size: 100, vocab_size: 300 };
    const c = await readConfig(await folder({ 'config.json': base, 'generation_config.json': { steps: 4, remasking_strategy: 'low_confidence_dynamic', confidence_threshold: 0.9 } }));
    expect(c.generationDefaults).toEqual({ steps: 4, remasking: 'dynamic', threshold: 0.9 });
    expect((await readConfig(await folder({ 'config.json': base, 'generation_config.json': { eos_token_id: 7 } }))).generationDefaults).toEqual({});
    expect((await readConfig(await folder({ 'config.json': base }))).generationDefaults).toEqual({});
    const gen = 'generation_config.json';
    await refused(await folder({ 'config.json': base, [gen]: { steps: 0 } }), /integer ≥ 1 for steps/, 'steps', gen);
    await refused(await folder({ 'config.json': base, [gen]: { remasking_strategy: 'random' } }), /low_confidence_static.*"random"/, 'remasking_strategy', gen);
    await refused(await folder({ 'config.json': base, [gen]: { confidence_threshold: 1 } }), /\(0, 1\) for confidence_threshold/, 'confidence_threshold', gen);
    await refused(await folder({ 'config.json': base, [gen]: { confidence_threshold: -0.5 } }), /positive number for confidence_threshold/, 'confidence_threshold', gen);
  });

  it('qwen2 with enable_bd3lm gets block diffusion: defaults bs 8, MASK 151671', async () => {
    const base = { model_type: 'qwen2', ...qwen3b, enable_bd3lm: true };
    expect((await readConfig(await folder({ 'config.json': base }))).diffusion).toEqual({ blockSize: 8, maskTokenId: 151671 });
    const c = await readConfig(await folder({ 'config.json': { ...base, bd3lm_block_size: 4, mask_token_id: 151670 } }));
    expect(c.diffusion).toEqual({ blockSize: 4, maskTokenId: 151670 });
    const off = await readConfig(await folder({ 'config.json': { ...base, enable_bd3lm: false } }));
    expect(off.diffusion).toBeNull();
  });

  it('diffusionvl_qwenvl (converted): text_config wins over stale top-level copies; vision and DiffusionVL pixel defaults', async () => {
    const d = await folder({
      'config.json': {
        model_type: 'diffusionvl_qwenvl', hidden_size: 3584, num_hidden_layers: 28, num_attention_heads: 28, num_key_value_heads: 4,
        vocab_size: 152064, intermediate_size: 18944, tie_word_embeddings: false,
        text_config: qwen3b, vision_config: vit, enable_bd3lm: false, bd3lm_block_size: 4, image_token_id: 151655,
      },
      // A preprocessor with stock limits must not override DiffusionVL's defaults (§3.1).
      'preprocessor_config.json': { min_pixels: 3136, max_pixels: 12845056 },
    });
    const c = await readConfig(d);
    expect(c.family).toBe('diffusionvl_qwenvl');
    expect(c.text).toMatchObject({ hiddenSize: 2048, numLayers: 36, numHeads: 16, numKvHeads: 2, headDim: 128, vocabSize: 151936, tieWordEmbeddings: true, maxPositionEmbeddings: 128000, ropeTheta: 1e6 });
    expect(c.diffusion).toEqual({ blockSize: 4, maskTokenId: 151671 });
    // The converter's output is the AR parent until block-diffusion training sets enable_bd3lm.
    expect(c.defaultMode).toBe('ar');
    expect(c.vision).toEqual({
      kind: 'qwen2_5_vl', depth: 32, hiddenSize: 1280, numHeads: 16, intermediateSize: 3420, patchSize: 14, temporalPatchSize: 2,
      spatialMergeSize: 2, windowSize: 112, fullAttBlockIndexes: [7, 15, 23, 31], outHiddenSize: 2048, minPixels: 147456, maxPixels: 262144,
    });
  });

  it('diffusionvl_qwenvl (released): trained bd3lm fields and config pixel limits; vision_config.json fallback', async () => {
    const c = await readConfig(await folder({
      'config.json': { model_type: 'diffusionvl_qwenvl', ...qwen3b, text_config: qwen3b, enable_bd3lm: true, bd3lm_block_size: 8, min_pixels: 200704, max_pixels: 401408 },
      'vision_config.json': vit,
    }));
    expect(c.diffusion).toEqual({ blockSize: 8, maskTokenId: 151671 });
    expect(c.defaultMode).toBe('diffusion');
    expect(c.vision).toMatchObject({ kind: 'qwen2_5_vl', depth: 32, minPixels: 200704, maxPixels: 401408 });
  });

  it('qwen2_5_vl stock (hub flat format): tie from top level, pixel limits from preprocessor_config.json', async () => {
    const c = await readConfig(await folder({
      'config.json': { model_type: 'qwen2_5_vl', ...qwen3b, vision_config: vit },
      'preprocessor_config.json': { min_pixels: 3136, max_pixels: 12845056 },
    }));
    expect(c.text.tieWordEmbeddings).toBe(true);
    expect(c.diffusion).toBeNull();
    expect(c.vision).toMatchObject({ minPixels: 3136, maxPixels: 12845056, outHiddenSize: 2048 });
    // ≥ 4.52 format: text fields in text_config, tie stays top-level.
    const c2 = await readConfig(await folder({
      'config.json': { model_type: 'qwen2_5_vl', tie_word_embeddings: true, text_config: { ...qwen3b, tie_word_embeddings: false }, vision_config: vit },
      'preprocessor_config.json': { size: { shortest_edge: 56 * 56, longest_edge: 28 * 28 * 1280 } },
    }));
    expect(c2.text.tieWordEmbeddings).toBe(true);
    expect(c2.text.hiddenSize).toBe(2048);
    expect(c2.vision).toMatchObject({ minPixels: 3136, maxPixels: 1003520 });
  });

  it('diffusionvl_qwen (AR-LM route): SigLIP defaults, 26 of 27 layers, the 36 pinpoints in stored order', async () => {
    const c = await readConfig(await folder({
      'config.json': {
        model_type: 'diffusionvl_qwen', hidden_size: 3584, num_hidden_layers: 28, num_attention_heads: 28, num_key_value_heads: 4,
        intermediate_size: 18944, vocab_size: 152064, rope_scaling: null, max_position_embeddings: 32768,
        mm_vision_tower: 'google/siglip2-so400m-patch14-384', mm_projector_type: 'mlp2x_gelu', mm_hidden_size: 1152,
        mm_vision_select_layer: -2, mm_vision_select_feature: 'patch', mm_patch_merge_type: 'spatial_unpad',
        image_aspect_ratio: 'anyres_max_4', mm_newline_position: 'grid', enable_bd3lm: true, bd3lm_block_size: 8,
      },
    }));
    expect(c.family).toBe('diffusionvl_qwen');
    expect(c.diffusion).toEqual({ blockSize: 8, maskTokenId: 151671 });
    const v = c.vision!;
    expect(v.kind).toBe('siglip');
    if (v.kind !== 'siglip') return;
    expect(v).toMatchObject({ hiddenSize: 1152, numLayers: 26, numHeads: 16, headDim: 72, intermediateSize: 4304, patchSize: 14, imageSize: 384, mmHiddenSize: 1152, selectLayer: -2 });
    expect(v.gridPinpoints).toHaveLength(36);
    expect(v.gridPinpoints.slice(0, 3)).toEqual([[384, 384], [384, 768], [384, 1152]]);
    expect(v.gridPinpoints[6]).toEqual([768, 384]);
    // The LLaVA range string expands to the same list.
    const c2 = await readConfig(await folder({ 'config.json': { ...c.raw, image_grid_pinpoints: '(1x1),...,(6x6)' } }));
    expect((c2.vision as typeof v).gridPinpoints).toEqual(v.gridPinpoints);
  });
});

describe('readConfig: bad input', () => {
  it('missing config.json', async () => {
    await refused(await folder({}), /cannot read/);
  });

  it('bad JSON in config.json and generation_config.json', async () => {
    await refused(await folder({ 'config.json': '{"model_type": "qwen2",' }), /not valid JSON/);
    await refused(await folder({ 'config.json': '[1]' }), /expected a JSON object/);
    const d = await folder({ 'config.json': { model_type: 'qwen2', ...qwen3b }, 'generation_config.json': '{eos' });
    await refused(d, /not valid JSON/, undefined, 'generation_config.json');
  });

  it('unknown model_type lists the supported ones', async () => {
    const e = await refused(await folder({ 'config.json': { model_type: 'llama', ...qwen3b } }), /unsupported model_type "llama"/, 'model_type');
    for (const t of SUPPORTED_MODEL_TYPES) expect(e.message).toContain(t);
    await refused(await folder({ 'config.json': { ...qwen3b } }), /unsupported model_type undefined/, 'model_type');
  });

  it('missing and ill-typed fields are named (with the text_config. path when there)', async () => {
    const { hidden_size: _h, ...noHidden } = qwen3b;
    await refused(await folder({ 'config.json': { model_type: 'qwen2', ...noHidden } }), /missing field hidden_size/, 'hidden_size');
    await refused(await folder({ 'config.json': { model_type: 'qwen2', ...qwen3b, num_attention_heads: '16' } }), /expected an integer ≥ 1 for num_attention_heads but got "16"/, 'num_attention_heads');
    await refused(await folder({ 'config.json': { model_type: 'qwen2', ...qwen3b, vocab_size: 0 } }), /vocab_size/, 'vocab_size');
    await refused(await folder({ 'config.json': { model_type: 'qwen2', ...qwen3b, rms_norm_eps: 'x' } }), /positive number for rms_norm_eps/, 'rms_norm_eps');
    await refused(await folder({ 'config.json': { model_type: 'qwen2', ...qwen3b, tie_word_embeddings: 'yes' } }), /true or false for tie_word_embeddings/, 'tie_word_embeddings');
    await refused(await folder({ 'config.json': { model_type: 'qwen2', ...qwen3b, enable_bd3lm: true, bd3lm_block_size: 2.5 } }), /bd3lm_block_size/, 'bd3lm_block_size');
    await refused(await folder({ 'config.json': { model_type: 'qwen2', ...qwen3b, eos_token_id: 'x' } }), /token id/, 'eos_token_id');
    await refused(await folder({ 'config.json': { model_type: 'diffusionvl_qwenvl', text_config: { ...qwen3b, num_hidden_layers: -1 } } }), /text_config\.num_hidden_layers/, 'text_config.num_hidden_layers');
    await refused(await folder({ 'config.json': { model_type: 'diffusionvl_qwenvl', text_config: [1] } }), /object for text_config/, 'text_config');
    await refused(await folder({ 'config.json': { model_type: 'qwen2_5_vl', ...qwen3b, vision_config: { ...vit, depth: 'x' } } }), /vision_config\.depth/, 'vision_config.depth');
    await refused(await folder({ 'config.json': { model_type: 'qwen2_5_vl', ...qwen3b, vision_config: { ...vit, fullatt_block_indexes: [7, 40] } } }), /past depth 32/, 'vision_config.fullatt_block_indexes');
  });

  it('heads not a multiple of kv heads; hidden not a multiple of heads without head_dim', async () => {
    await refused(await folder({ 'config.json': { model_type: 'qwen2', ...qwen3b, num_key_value_heads: 3 } }), /16 is not a multiple of num_key_value_heads 3/, 'num_key_value_heads');
    await refused(await folder({ 'config.json': { model_type: 'qwen2', ...qwen3b, hidden_size: 100 } }), /hidden_size 100 is not a multiple/);
  });

  it('mask id must be below the embedding rows', async () => {
    await refused(await folder({ 'config.json': { model_type: 'qwen2', ...qwen3b, vocab_size: 151665, enable_bd3lm: true } }), /mask token id 151671 is not below the 151665/, 'mask_token_id');
  });

  it('SigLIP: mm_hidden_size must match the tower', async () => {
    await refused(await folder({ 'config.json': { model_type: 'diffusionvl_qwen', ...qwen3b, mm_hidden_size: 1024, mm_vision_tower: 'x' } }), /mm_hidden_size 1024 differs/, 'mm_hidden_size');
  });
});
