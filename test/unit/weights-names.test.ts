// The name table (one prefix rewrite per stored layout, docs §1.4–§1.7), checkpoint folder
// resolution (single vs stale index vs shards, missing shard) and expectedTensors shapes at the
// real model sizes of §1.2–§1.4 and §1.7.
import { mkdtemp, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WeightsError } from '../../lib/errors.js';
import { openCheckpoint, resolveCheckpoint } from '../../lib/weights/checkpoint.js';
import type { ModelConfig } from '../../lib/weights/config.js';
import { canonicalName, expectedTensors } from '../../lib/weights/names.js';
import { writeQwen2Checkpoint, writeSafetensors } from '../helpers/checkpoint.js';

describe('canonicalName', () => {
  const cases: [Parameters<typeof canonicalName>[0], string, string | null][] = [
    // text: stock / converted / trained, and ≥ 4.52 stock
    ['model', 'model.embed_tokens.weight', 'model.embed_tokens.weight'],
    ['model', 'model.layers.3.self_attn.q_proj.bias', 'model.layers.3.self_attn.q_proj.bias'],
    ['model', 'model.language_model.layers.0.mlp.down_proj.weight', 'model.layers.0.mlp.down_proj.weight'],
    ['model', 'model.language_model.norm.weight', 'model.norm.weight'],
    ['model', 'lm_head.weight', 'lm_head.weight'],
    // Qwen2.5-VL ViT + merger: hub, ≥ 4.52, trained
    ['model', 'visual.blocks.31.attn.qkv.weight', 'visual.blocks.31.attn.qkv.weight'],
    ['model', 'visual.merger.mlp.2.bias', 'visual.merger.mlp.2.bias'],
    ['model', 'model.visual.patch_embed.proj.weight', 'visual.patch_embed.proj.weight'],
    ['model', 'model.visual.merger.ln_q.weight', 'visual.merger.ln_q.weight'],
    ['model', 'model.vision_tower.vision_tower.blocks.0.norm1.weight', 'visual.blocks.0.norm1.weight'],
    ['model', 'model.mm_projector.merger.mlp.0.weight', 'visual.merger.mlp.0.weight'],
    // converted side files
    ['vision_tower', 'patch_embed.proj.weight', 'visual.patch_embed.proj.weight'],
    ['vision_tower', 'blocks.7.mlp.up_proj.bias', 'visual.blocks.7.mlp.up_proj.bias'],
    ['vision_tower', 'visual.blocks.7.norm2.weight', 'visual.blocks.7.norm2.weight'],
    ['vision_tower', 'model.vision_tower.vision_tower.blocks.1.attn.proj.weight', 'visual.blocks.1.attn.proj.weight'],
    ['projector', 'ln_q.weight', 'visual.merger.ln_q.weight'],
    ['projector', 'mlp.2.weight', 'visual.merger.mlp.2.weight'],
    // AR-LM route (SigLIP + MLP projector)
    ['model', 'model.vision_tower.vision_tower.vision_model.encoder.layers.25.mlp.fc1.weight', 'siglip.vision_model.encoder.layers.25.mlp.fc1.weight'],
    ['model', 'model.vision_tower.vision_tower.vision_model.embeddings.position_embedding.weight', 'siglip.vision_model.embeddings.position_embedding.weight'],
    ['model', 'model.mm_projector.0.weight', 'mm_projector.0.weight'],
    ['model', 'model.mm_projector.2.bias', 'mm_projector.2.bias'],
    ['model', 'model.image_newline', 'image_newline'],
    // nothing maps these: they end up in `unused`
    ['model', 'transformer.h.0.attn.weight', null],
    ['model', 'model.image_newline_extra', 'model.image_newline_extra'],
  ];
  it.each(cases)('%s %s → %s', (role, stored, canon) => {
    expect(canonicalName(role, stored)).toBe(canon);
  });
});

function cfg(over: Partial<ModelConfig>): ModelConfig {
  return {
    dir: '/x', modelType: 'qwen2', family: 'qwen2', diffusion: null, vision: null, eosTokenId: 151645, raw: {},
    text: { hiddenSize: 2048, numLayers: 36, numHeads: 16, numKvHeads: 2, headDim: 128, intermediateSize: 11008, vocabSize: 151936, ropeTheta: 1e6, rmsNormEps: 1e-6, tieWordEmbeddings: true, maxPositionEmbeddings: 128000 },
    ...over,
  };
}

describe('expectedTensors', () => {
  it('3B text (tied) and Qwen ViT shapes of §1.4', () => {
    const m = expectedTensors(cfg({
      vision: { kind: 'qwen2_5_vl', depth: 32, hiddenSize: 1280, numHeads: 16, intermediateSize: 3420, patchSize: 14, temporalPatchSize: 2, spatialMergeSize: 2, windowSize: 112, fullAttBlockIndexes: [7, 15, 23, 31], outHiddenSize: 2048, minPixels: 1, maxPixels: 2 },
    }));
    expect(m.get('model.embed_tokens.weight')).toEqual([151936, 2048]);
    expect(m.get('model.layers.35.self_attn.k_proj.weight')).toEqual([256, 2048]);
    expect(m.get('model.layers.35.self_attn.o_proj.weight')).toEqual([2048, 2048]);
    expect(m.get('model.layers.0.mlp.down_proj.weight')).toEqual([2048, 11008]);
    expect(m.has('lm_head.weight')).toBe(false);
    expect(m.has('model.layers.0.self_attn.o_proj.bias')).toBe(false);
    expect(m.get('visual.patch_embed.proj.weight')).toEqual([1280, 3, 2, 14, 14]);
    expect(m.get('visual.blocks.31.attn.qkv.weight')).toEqual([3840, 1280]);
    expect(m.get('visual.blocks.0.mlp.down_proj.bias')).toEqual([1280]);
    expect(m.get('visual.merger.mlp.0.weight')).toEqual([5120, 5120]);
    expect(m.get('visual.merger.mlp.2.weight')).toEqual([2048, 5120]);
    // 36 layers × 12 + embed + norm; 32 blocks × 12 + patch embed + 5 merger
    expect(m.size).toBe(36 * 12 + 2 + 32 * 12 + 1 + 5);
    expect(expectedTensors(cfg({ vision: cfg({}).vision }), { vision: false }).size).toBe(36 * 12 + 2);
  });

  it('7B AR-LM: untied head, SigLIP 26 layers and projector of §1.7', () => {
    const m = expectedTensors(cfg({
      text: { hiddenSize: 3584, numLayers: 28, numHeads: 28, numKvHeads: 4, headDim: 128, intermediateSize: 18944, vocabSize: 152064, ropeTheta: 1e6, rmsNormEps: 1e-6, tieWordEmbeddings: false, maxPositionEmbeddings: 32768 },
      vision: { kind: 'siglip', hiddenSize: 1152, numLayers: 26, numHeads: 16, headDim: 72, intermediateSize: 4304, patchSize: 14, imageSize: 384, layerNormEps: 1e-6, mmHiddenSize: 1152, projectorType: 'mlp2x_gelu', selectLayer: -2, selectFeature: 'patch', patchMergeType: 'spatial_unpad', imageAspectRatio: 'anyres_max_4', gridPinpoints: [], newlinePosition: 'grid' },
    }));
    expect(m.get('lm_head.weight')).toEqual([152064, 3584]);
    expect(m.get('model.layers.27.self_attn.v_proj.bias')).toEqual([512]);
    expect(m.get('siglip.vision_model.embeddings.patch_embedding.weight')).toEqual([1152, 3, 14, 14]);
    expect(m.get('siglip.vision_model.embeddings.position_embedding.weight')).toEqual([729, 1152]);
    expect(m.get('siglip.vision_model.encoder.layers.25.mlp.fc1.weight')).toEqual([4304, 1152]);
    expect(m.has('siglip.vision_model.encoder.layers.26.mlp.fc1.weight')).toBe(false);
    expect(m.has('siglip.vision_model.post_layernorm.weight')).toBe(false);
    expect(m.get('mm_projector.0.weight')).toEqual([3584, 1152]);
    expect(m.get('mm_projector.2.weight')).toEqual([3584, 3584]);
    expect(m.get('image_newline')).toEqual([3584]);
  });
});

describe('checkpoint folders', () => {
  let root: string;
  beforeAll(async () => { root = await mkdtemp(join(tmpdir(), 'dvl-ckpt-')); });
  afterAll(async () => { await rm(root, { recursive: true, force: true }); });
  const tiny = { hiddenSize: 32, numLayers: 2, numHeads: 4, numKvHeads: 2, intermediateSize: 40, vocabSize: 50 };

  it('prefers model.safetensors over a stale index (§1.4 quirk)', async () => {
    const d = join(root, 'stale');
    await writeQwen2Checkpoint(d, tiny, { dtype: 'f32', tied: true, shards: 1, layout: 'plain', seed: 1, staleIndex: true });
    const f = await resolveCheckpoint(d);
    expect(f.layout).toBe('single');
    expect(f.modelFiles).toEqual([join(d, 'model.safetensors')]);
    expect((await openCheckpoint(d)).tensors.length).toBe(2 * 12 + 2);
  });

  it('resolves shards through the index, in order', async () => {
    const d = join(root, 'sharded');
    await writeQwen2Checkpoint(d, tiny, { dtype: 'bf16', tied: false, shards: 3, layout: 'plain', seed: 2 });
    const f = await resolveCheckpoint(d);
    expect(f.layout).toBe('sharded');
    expect(f.modelFiles).toEqual([1, 2, 3].map((k) => join(d, `model-0000${k}-of-00003.safetensors`)));
    expect(f.weightMap!.get('lm_head.weight')).toBe(join(d, 'model-00003-of-00003.safetensors'));
    const c = await openCheckpoint(d);
    expect(c.tensors.length).toBe(2 * 12 + 3);
    expect(new Set(c.tensors.map((t) => t.role))).toEqual(new Set(['model']));
  });

  it('finds the converted side files and tags their role', async () => {
    const d = join(root, 'converted');
    await writeQwen2Checkpoint(d, { ...tiny, vision: { kind: 'qwen2_5_vl', depth: 2, hiddenSize: 16, numHeads: 2, intermediateSize: 24, patchSize: 2, temporalPatchSize: 2, spatialMergeSize: 2, fullAttBlockIndexes: [1] } },
      { dtype: 'f32', tied: true, shards: 1, layout: 'converted', seed: 3, diffusion: { blockSize: 8, maskTokenId: 45 } });
    const f = await resolveCheckpoint(d);
    expect(f.visionTowerFile).toBe(join(d, 'vision_tower.safetensors'));
    expect(f.projectorFile).toBe(join(d, 'projector.safetensors'));
    const c = await openCheckpoint(d);
    const roles = new Map(c.tensors.map((t) => [`${t.role}:${t.name}`, t.file]));
    expect(roles.get('vision_tower:patch_embed.proj.weight')).toBe(f.visionTowerFile);
    expect(roles.get('projector:ln_q.weight')).toBe(f.projectorFile);
  });

  it('a missing shard is named', async () => {
    const d = join(root, 'noshard');
    await writeQwen2Checkpoint(d, tiny, { dtype: 'f16', tied: true, shards: 2, layout: 'plain', seed: 4 });
    await unlink(join(d, 'model-00002-of-00002.safetensors'));
    const e = await resolveCheckpoint(d).catch((x: unknown) => x) as WeightsError;
    expect(e).toBeInstanceOf(WeightsError);
    expect(e.message).toMatch(/shard model-00002-of-00002\.safetensors .* is missing/);
    expect(e.file).toBe(join(d, 'model-00002-of-00002.safetensors'));
    expect(e.tensor).toBeTruthy();
  });

  it('refuses an index that names a tensor its shard lacks, a bad index, path escapes, no model file', async () => {
    const d = join(root, 'badindex');
    await writeQwen2Checkpoint(d, tiny, { dtype: 'f32', tied: true, shards: 2, layout: 'plain', seed: 5 });
    const idx = join(d, 'model.safetensors.index.json');
    const wm = JSON.parse(await (await import('node:fs/promises')).readFile(idx, 'utf8'));
    wm.weight_map['model.norm.weight'] = 'model-00001-of-00002.safetensors';
    await writeFile(idx, JSON.stringify(wm));
    await expect(openCheckpoint(d)).rejects.toThrow(/puts model\.norm\.weight in model-00001-of-00002\.safetensors, which does not hold it/);
    await writeFile(idx, JSON.stringify({ weight_map: { a: '../x.safetensors' } }));
    await expect(resolveCheckpoint(d)).rejects.toThrow(/not a file name in the model folder/);
    await writeFile(idx, '{"weight_map": ');
    await expect(resolveCheckpoint(d)).rejects.toThrow(WeightsError);
    await writeFile(idx, '{"metadata": {}}');
    await expect(resolveCheckpoint(d)).rejects.toThrow(/weight_map is missing/);
    await expect(resolveCheckpoint(join(root))).rejects.toThrow(/no model\.safetensors or model\.safetensors\.index\.json/);
  });

  it('refuses the same tensor stored in two shards', async () => {
    const d = join(root, 'dup');
    await writeQwen2Checkpoint(d, tiny, { dtype: 'f32', tied: true, shards: 2, layout: 'plain', seed: 6 });
    await writeSafetensors(join(d, 'model-00002-of-00002.safetensors'), [{ name: 'model.embed_tokens.weight', dtype: 'F32', shape: [1], data: new Float32Array(1) }]);
    await expect(openCheckpoint(d)).rejects.toThrow(/model\.embed_tokens\.weight is stored twice/);
  });
});
