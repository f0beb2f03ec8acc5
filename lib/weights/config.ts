// config.ts — reads a model folder's config.json (and generation_config.json, vision_config.json,
// preprocessor_config.json where they matter) into one checked ModelConfig.
//
// Model types (docs §1.1, §1.2, §1.4, §1.5, §1.7, §2.10; the registry is lib/model/families.ts,
// which also names each type's text family, whose file reads the text fields):
//   qwen2               stock Qwen2 / Qwen2.5 text model; block diffusion only if enable_bd3lm
//   qwen2_5_vl          stock Qwen2.5-VL: text fields flat (hub format) or in text_config (≥ 4.52)
//   diffusionvl_qwenvl  converted or released DiffusionVL-Qwen2.5VL: text_config authoritative,
//                       the top-level copies can be stale in the converter output (§1.4)
//   diffusionvl_qwen    DiffusionVL-Qwen2.5-7B (AR-LM route): Qwen2 text + SigLIP + MLP projector
//   qwen3               stock Qwen3 text model (q/k norms, no biases); block diffusion only if
//                       enable_bd3lm
// Every missing or ill-typed field raises ConfigError naming the file and the field path
// (e.g. `text_config.num_attention_heads`). Defaults are those of the HF config classes and are
// only used for fields real checkpoints may omit.
import { join, resolve } from 'node:path';
import { ConfigError } from '../errors.js';
import { MODEL_TYPES, modelTypeOf, type SupportedModelType } from '../model/families.js';
import { Fields, isObj, readJson, type Obj } from './fields.js';

/** model_type strings the loader accepts (the registry, lib/model/families.ts). */
export const SUPPORTED_MODEL_TYPES: readonly SupportedModelType[] = MODEL_TYPES.map((e) => e.modelType);
/** A config's model_type; its registry entry names the text family and vision route. */
export type ModelFamily = SupportedModelType;

/** MASK id when the config has no mask_token_id (docs §4.2; never looked up from a string). */
export const DEFAULT_MASK_TOKEN_ID = 151671;
/** `<|im_end|>`, the decoder's stop id (docs §4.2). */
export const DEFAULT_EOS_TOKEN_ID = 151645;
/** bd3lm_block_size when absent (every training and eval script uses 8; docs §5.1). */
export const DEFAULT_BLOCK_SIZE = 8;

export interface TextConfig {
  /** H */ hiddenSize: number;
  numLayers: number;
  /** nh */ numHeads: number;
  /** nkv; nh % nkv == 0 (GQA group nh/nkv) */ numKvHeads: number;
  /** hd (128 for every released model) */ headDim: number;
  /** I */ intermediateSize: number;
  /** V: embedding rows (151936 for 3B, 152064 for 7B; larger than the tokenizer) */ vocabSize: number;
  ropeTheta: number;
  rmsNormEps: number;
  /** true: no lm_head.weight, logits use embed_tokens (3B). */
  tieWordEmbeddings: boolean;
  maxPositionEmbeddings: number;
}

export interface DiffusionConfig {
  /** bs, the block size (bd3lm_block_size). */
  blockSize: number;
  maskTokenId: number;
}

/** Qwen2.5-VL ViT + PatchMerger (docs §1.3, §3.1, §3.3). */
export interface QwenVisionConfig {
  kind: 'qwen2_5_vl';
  depth: number;
  hiddenSize: number;
  numHeads: number;
  intermediateSize: number;
  patchSize: number;
  temporalPatchSize: number;
  spatialMergeSize: number;
  /** In pixels (112). */
  windowSize: number;
  /** 0-based blocks with whole-image attention ({7, 15, 23, 31}). */
  fullAttBlockIndexes: number[];
  /** Merger output = text hidden size. */
  outHiddenSize: number;
  minPixels: number;
  maxPixels: number;
}

/** SigLIP2-so400m tower + mlp2x_gelu projector, LLaVA-OneVision anyres (docs §1.7, §3.5). */
export interface SiglipVisionConfig {
  kind: 'siglip';
  hiddenSize: number;
  /** Encoder layers actually run and stored (26 of the tower's 27: select_layer −2). */
  numLayers: number;
  numHeads: number;
  headDim: number;
  intermediateSize: number;
  patchSize: number;
  imageSize: number;
  layerNormEps: number;
  /** mm_hidden_size: projector input (= hiddenSize). */
  mmHiddenSize: number;
  projectorType: string;
  selectLayer: number;
  selectFeature: string;
  patchMergeType: string;
  imageAspectRatio: string;
  /** [width, height] candidates, in stored order (order matters for ties, §3.5). */
  gridPinpoints: [number, number][];
  newlinePosition: string;
}

export type VisionConfig = QwenVisionConfig | SiglipVisionConfig;

/**
 * A model's own block-diffusion defaults, from generation_config.json under the reference's
 * keyword names (docs §5.1): `steps`, `remasking_strategy`, `confidence_threshold`. generate()
 * and the CLI use them for whatever the request leaves out; absent fields fall back to the
 * library defaults (lib/decode/options.ts).
 */
export interface GenerationDefaults {
  steps?: number;
  remasking?: 'static' | 'dynamic';
  threshold?: number;
}

export interface ModelConfig {
  dir: string;
  modelType: string;
  family: ModelFamily;
  text: TextConfig;
  diffusion: DiffusionConfig | null;
  /** How generate() decodes by default: 'ar' for autoregressive checkpoints, including a
   *  DiffusionVL-layout parent whose config says `enable_bd3lm: false` (the converter's output,
   *  §1.5, before block-diffusion training); 'diffusion' for trained DiffusionVL models. */
  defaultMode: 'diffusion' | 'ar';
  vision: VisionConfig | null;
  eosTokenId: number;
  padTokenId?: number;
  /** Decode defaults from generation_config.json ({} when it sets none). */
  generationDefaults: GenerationDefaults;
  /** config.json as parsed. */
  raw: Record<string, unknown>;
}

/** Reads and checks `dir/config.json` (plus the side files it needs). */
export async function readConfig(dirIn: string): Promise<ModelConfig> {
  const dir = resolve(dirIn);
  const file = join(dir, 'config.json');
  const raw = (await readJson(file, true))!;
  const entry = modelTypeOf(file, raw.model_type, raw.architectures);
  const modelType = entry.modelType;
  const family = modelType as ModelFamily;

  // Where text fields live. text_config first when it exists (authoritative for the converted
  // layout, identical to the flat copies in the ≥ 4.52 stock format), then the top level.
  let textConfig: Obj | undefined;
  if (Object.hasOwn(raw, 'text_config') && raw.text_config !== null) {
    if (!isObj(raw.text_config)) throw new ConfigError(`${file}: expected an object for text_config`, { file, field: 'text_config' });
    textConfig = raw.text_config;
  }
  const top = { obj: raw, prefix: '' };
  const tc = textConfig ? [{ obj: textConfig, prefix: 'text_config.' }] : [];
  const tf = new Fields(file, [...tc, top]);
  // Stock Qwen2.5-VL keeps tie_word_embeddings on the top-level config (3B hub config: true);
  // the converted layout's text_config is authoritative there too.
  const tieFields = entry.tieAtTop ? new Fields(file, [top, ...tc]) : tf;

  const text = entry.text.readText(tf, tieFields, file);

  const f = new Fields(file, [top, ...tc]);
  let diffusion: DiffusionConfig | null = null;
  const isDvlFamily = entry.diffusionvl === true;
  if (isDvlFamily || f.bool('enable_bd3lm', false)) {
    diffusion = {
      blockSize: f.int('bd3lm_block_size', DEFAULT_BLOCK_SIZE),
      maskTokenId: f.int('mask_token_id', DEFAULT_MASK_TOKEN_ID, 0),
    };
    if (diffusion.maskTokenId >= text.vocabSize) {
      throw new ConfigError(`${file}: mask token id ${diffusion.maskTokenId} is not below the ${text.vocabSize} embedding rows (vocab_size)`, { file, field: 'mask_token_id' });
    }
  }

  const gen = await readJson(join(dir, 'generation_config.json'), false);
  const genFields = gen ? new Fields(join(dir, 'generation_config.json'), [{ obj: gen, prefix: '' }]) : null;
  const eosTokenId = f.tokenId('eos_token_id') ?? genFields?.tokenId('eos_token_id') ?? DEFAULT_EOS_TOKEN_ID;
  const padTokenId = f.tokenId('pad_token_id') ?? genFields?.tokenId('pad_token_id');

  let vision: VisionConfig | null = null;
  if (entry.vision === 'qwen2_5_vl') vision = await readQwenVision(dir, file, raw, f, isDvlFamily, text);
  else if (entry.vision === 'siglip') vision = readSiglip(file, raw, f);

  const defaultMode = diffusion !== null && f.bool('enable_bd3lm', isDvlFamily) ? 'diffusion' : 'ar';
  const generationDefaults = genFields ? readGenerationDefaults(genFields) : {};
  const cfg: ModelConfig = { dir, modelType, family, text, diffusion, defaultMode, vision, eosTokenId, generationDefaults, raw };
  if (padTokenId !== undefined) cfg.padTokenId = padTokenId;
  return cfg;
}

const REMASKING_NAMES: Record<string, 'static' | 'dynamic'> = {
  low_confidence_static: 'static', low_confidence_dynamic: 'dynamic', static: 'static', dynamic: 'dynamic',
};

function readGenerationDefaults(g: Fields): GenerationDefaults {
  const out: GenerationDefaults = {};
  if (g.has('steps')) out.steps = g.int('steps');
  if (g.has('remasking_strategy')) {
    const name = g.str('remasking_strategy', '');
    const m = REMASKING_NAMES[name];
    if (!m) {
      throw new ConfigError(`${g.file}: expected 'low_confidence_static' or 'low_confidence_dynamic' for remasking_strategy but got ${JSON.stringify(name)}`,
        { file: g.file, field: 'remasking_strategy' });
    }
    out.remasking = m;
  }
  if (g.has('confidence_threshold')) {
    const t = g.num('confidence_threshold', 0.85);
    if (!(t < 1)) throw new ConfigError(`${g.file}: expected a number in (0, 1) for confidence_threshold but got ${t}`, { file: g.file, field: 'confidence_threshold' });
    out.threshold = t;
  }
  return out;
}

async function readQwenVision(dir: string, file: string, raw: Obj, f: Fields, diffusionvl: boolean, text: TextConfig): Promise<QwenVisionConfig | null> {
  // config.json's vision_config; the converted layout also writes vision_config.json (§1.4).
  let vc: Obj | null = null;
  let vfile = file;
  let prefix = 'vision_config.';
  if (Object.hasOwn(raw, 'vision_config') && raw.vision_config !== null) {
    if (!isObj(raw.vision_config)) throw new ConfigError(`${file}: expected an object for vision_config`, { file, field: 'vision_config' });
    vc = raw.vision_config;
  } else {
    vfile = join(dir, 'vision_config.json');
    vc = await readJson(vfile, false);
    prefix = '';
  }
  if (!vc) return null;
  const v = new Fields(vfile, [{ obj: vc, prefix }]);
  const hiddenSize = v.int('hidden_size', 1280);
  const numHeads = v.int('num_heads', 16);
  if (hiddenSize % numHeads !== 0) {
    throw new ConfigError(`${vfile}: vision hidden_size ${hiddenSize} is not a multiple of num_heads ${numHeads}`, { file: vfile, field: `${prefix}num_heads` });
  }
  const depth = v.int('depth', 32);
  const fullAttBlockIndexes = v.intList('fullatt_block_indexes', [7, 15, 23, 31]);
  const badIdx = fullAttBlockIndexes.find((j) => j >= depth);
  if (badIdx !== undefined) {
    throw new ConfigError(`${vfile}: fullatt_block_indexes holds ${badIdx}, past depth ${depth}`, { file: vfile, field: `${prefix}fullatt_block_indexes` });
  }
  // Pixel limits: the model config, else DiffusionVL's defaults (§3.1) for DiffusionVL, else the
  // stock preprocessor's.
  let minPixels: number, maxPixels: number;
  if (diffusionvl) {
    minPixels = f.int('min_pixels', 147456);
    maxPixels = f.int('max_pixels', 262144);
  } else {
    const pfile = join(dir, 'preprocessor_config.json');
    const pre = await readJson(pfile, false);
    const size = pre && isObj(pre.size) ? pre.size : {};
    const p = new Fields(pfile, pre ? [{ obj: pre, prefix: '' }, { obj: size, prefix: 'size.' }] : []);
    minPixels = f.has('min_pixels') ? f.int('min_pixels') : p.has('min_pixels') ? p.int('min_pixels') : p.int('shortest_edge', 3136);
    maxPixels = f.has('max_pixels') ? f.int('max_pixels') : p.has('max_pixels') ? p.int('max_pixels') : p.int('longest_edge', 12845056);
  }
  if (minPixels > maxPixels) throw new ConfigError(`${file}: min_pixels ${minPixels} exceeds max_pixels ${maxPixels}`, { file, field: 'min_pixels' });
  return {
    kind: 'qwen2_5_vl',
    depth,
    hiddenSize,
    numHeads,
    intermediateSize: v.int('intermediate_size', 3420),
    patchSize: v.int('patch_size', 14),
    temporalPatchSize: v.int('temporal_patch_size', 2),
    spatialMergeSize: v.int('spatial_merge_size', 2),
    windowSize: v.int('window_size', 112),
    fullAttBlockIndexes,
    outHiddenSize: v.int('out_hidden_size', text.hiddenSize),
    minPixels,
    maxPixels,
  };
}

/** The 36 anyres_max_4 pinpoints of §1.7: [384·i, 384·j], i outer, j inner, 1..6. */
function defaultPinpoints(): [number, number][] {
  const out: [number, number][] = [];
  for (let i = 1; i <= 6; i++) for (let j = 1; j <= 6; j++) out.push([384 * i, 384 * j]);
  return out;
}

function readSiglip(file: string, raw: Obj, f: Fields): SiglipVisionConfig | null {
  if (!['mm_vision_tower', 'mm_hidden_size', 'mm_projector_type'].some((k) => Object.hasOwn(raw, k))) return null;
  // The SigLIP2-so400m-patch14-384 dimensions, unless the config embeds the tower's config.
  const key = isObj(raw.mm_vision_config) ? 'mm_vision_config' : isObj(raw.vision_config) ? 'vision_config' : null;
  const v = new Fields(file, key ? [{ obj: raw[key] as Obj, prefix: `${key}.` }] : []);
  const hiddenSize = v.int('hidden_size', 1152);
  const numHeads = v.int('num_attention_heads', 16);
  if (hiddenSize % numHeads !== 0) {
    throw new ConfigError(`${file}: SigLIP hidden_size ${hiddenSize} is not a multiple of num_attention_heads ${numHeads}`, { file, field: `${key ?? 'vision_config'}.num_attention_heads` });
  }
  const towerLayers = v.int('num_hidden_layers', 27);
  const selectLayer = intAny(f, file, 'mm_vision_select_layer', -2);
  // hidden_states[select] of a tower with N layers: negative → N + select + 1 layers run.
  const numLayers = selectLayer < 0 ? towerLayers + selectLayer + 1 : selectLayer;
  if (numLayers < 1 || numLayers > towerLayers) {
    throw new ConfigError(`${file}: mm_vision_select_layer ${selectLayer} selects no layer of a ${towerLayers}-layer tower`, { file, field: 'mm_vision_select_layer' });
  }
  const mmHiddenSize = f.int('mm_hidden_size', hiddenSize);
  if (mmHiddenSize !== hiddenSize) {
    throw new ConfigError(`${file}: mm_hidden_size ${mmHiddenSize} differs from the SigLIP hidden size ${hiddenSize}`, { file, field: 'mm_hidden_size' });
  }
  return {
    kind: 'siglip',
    hiddenSize,
    numLayers,
    numHeads,
    headDim: hiddenSize / numHeads,
    intermediateSize: v.int('intermediate_size', 4304),
    patchSize: v.int('patch_size', 14),
    imageSize: v.int('image_size', 384),
    layerNormEps: v.num('layer_norm_eps', 1e-6),
    mmHiddenSize,
    projectorType: f.str('mm_projector_type', 'mlp2x_gelu'),
    selectLayer,
    selectFeature: f.str('mm_vision_select_feature', 'patch'),
    patchMergeType: f.str('mm_patch_merge_type', 'spatial_unpad'),
    imageAspectRatio: f.str('image_aspect_ratio', 'anyres_max_4'),
    gridPinpoints: readPinpoints(file, raw.image_grid_pinpoints),
    newlinePosition: f.str('mm_newline_position', 'grid'),
  };
}

function intAny(f: Fields, file: string, name: string, dflt: number): number {
  const v = f.sources.map((s) => s.obj[name]).find((x) => x !== undefined && x !== null);
  if (v === undefined) return dflt;
  if (!Number.isSafeInteger(v)) throw new ConfigError(`${file}: expected an integer for ${name} but got ${JSON.stringify(v)}`, { file, field: name });
  return v as number;
}

/** A list of [w, h] pairs, or the LLaVA "(1x1),...,(6x6)" range string, or absent (§1.7). */
function readPinpoints(file: string, v: unknown): [number, number][] {
  if (v === undefined || v === null) return defaultPinpoints();
  if (typeof v === 'string') {
    const m = [...v.matchAll(/\((\d+)x(\d+)\)/g)].map((x) => [Number(x[1]), Number(x[2])]);
    if (m.length >= 2) {
      const out: [number, number][] = [];
      const [[i0, j0], [i1, j1]] = [m[0], m[m.length - 1]];
      for (let i = i0; i <= i1; i++) for (let j = j0; j <= j1; j++) out.push([384 * i, 384 * j]);
      if (out.length) return out;
    }
  } else if (Array.isArray(v) && v.length > 0 && v.every((p) => Array.isArray(p) && p.length === 2 && p.every((d) => Number.isSafeInteger(d) && d > 0))) {
    return v.map((p) => [p[0], p[1]] as [number, number]);
  }
  throw new ConfigError(`${file}: expected a list of [width, height] pairs for image_grid_pinpoints but got ${JSON.stringify(v)}`, { file, field: 'image_grid_pinpoints' });
}
