// families.ts — the registry of model types (docs §2.10): config.json's model_type (and its
// architectures) → the text family that decodes it (its config fields, tensors and layer live in
// one file: qwen2.ts, qwen3.ts), the vision route, and the checkpoint traits readConfig needs.
//
// Adding a text family is one file (see qwen3.ts) plus one line here. readConfig (lib/weights)
// asks this table for the model type and the text fields, expectedTensors for the text tensors,
// Model for the decoder.
import { ConfigError } from '../errors.js';
import type { Queue } from '../native/index.js';
import type { ModelConfig, VisionConfig } from '../weights/config.js';
import type { LoadedWeights } from '../weights/load.js';
import type { TextDecoder, TextDecoderOptions, TextFamily } from './decoder.js';
import { QWEN2 } from './qwen2.js';
import { QWEN3 } from './qwen3.js';

export interface ModelTypeEntry {
  /** config.json's model_type. */
  readonly modelType: string;
  /** Class names config.json's architectures lists for this type (a cross-check, see modelTypeOf). */
  readonly architectures: readonly string[];
  readonly text: TextFamily;
  /** The vision route (docs §3): the Qwen2.5-VL tower or SigLIP + projector; absent: text only. */
  readonly vision?: VisionConfig['kind'];
  /** DiffusionVL layout (docs §1.4, §1.5, §1.7): block diffusion unless enable_bd3lm is false,
   *  text_config authoritative, DiffusionVL's pixel limits. */
  readonly diffusionvl?: boolean;
  /** tie_word_embeddings is read at the top level before text_config (stock Qwen2.5-VL, docs §1.6). */
  readonly tieAtTop?: boolean;
}

export const MODEL_TYPES = [
  { modelType: 'qwen2', architectures: ['Qwen2ForCausalLM'], text: QWEN2 },
  { modelType: 'qwen2_5_vl', architectures: ['Qwen2_5_VLForConditionalGeneration'], text: QWEN2, vision: 'qwen2_5_vl', tieAtTop: true },
  {
    modelType: 'diffusionvl_qwenvl', text: QWEN2, vision: 'qwen2_5_vl', diffusionvl: true,
    architectures: ['DiffusionVLQwenVLForCausalLM', 'LlavaDiffusionVLQwenVLForCausalLM', 'DiffusionVL_Qwen2_5_VL_ForConditionalGeneration'],
  },
  { modelType: 'diffusionvl_qwen', architectures: ['LlavaDiffusionVLQwenForCausalLM'], text: QWEN2, vision: 'siglip', diffusionvl: true },
  { modelType: 'qwen3', architectures: ['Qwen3ForCausalLM'], text: QWEN3 },
] as const satisfies readonly ModelTypeEntry[];

/** model_type strings the loader accepts. */
export type SupportedModelType = (typeof MODEL_TYPES)[number]['modelType'];

const byType = new Map<string, ModelTypeEntry>(MODEL_TYPES.map((e) => [e.modelType, e]));

/**
 * The registry entry of a config.json: by model_type; its architectures, where they name a
 * class registered to another text family, are a contradiction (say a Qwen3 checkpoint labelled
 * qwen2) refused here rather than as a missing tensor later.
 */
export function modelTypeOf(file: string, modelType: unknown, architectures: unknown): ModelTypeEntry {
  const archs = Array.isArray(architectures) ? architectures.filter((a): a is string => typeof a === 'string') : [];
  const owner = (a: string) => MODEL_TYPES.find((e) => (e.architectures as readonly string[]).includes(a));
  const entry = typeof modelType === 'string' ? byType.get(modelType) : undefined;
  if (!entry) {
    const known = archs.map(owner).find((e) => e !== undefined);
    const hint = known ? `; architectures names ${archs.find((a) => owner(a) === known)}, a ${known.modelType} model` : '';
    throw new ConfigError(`${file}: unsupported model_type ${JSON.stringify(modelType)} (supported: ${MODEL_TYPES.map((e) => e.modelType).join(', ')})${hint}`, { file, field: 'model_type' });
  }
  for (const a of archs) {
    const other = owner(a);
    if (other && other.text !== entry.text) {
      throw new ConfigError(`${file}: model_type ${entry.modelType} (a ${entry.text.name} decoder) contradicts architectures ${a} (a ${other.text.name} decoder)`, { file, field: 'architectures' });
    }
  }
  return entry;
}

/** The text family of a read config (ModelConfig.family is its model_type). */
export function textFamilyOf(config: Pick<ModelConfig, 'family' | 'dir'>): TextFamily {
  const e = byType.get(config.family);
  if (!e) throw new ConfigError(`${config.dir}: no text family for model_type ${JSON.stringify(config.family)}`, { field: 'model_type' });
  return e.text;
}

/** The text decoder of a loaded checkpoint. */
export function createTextDecoder(q: Queue, weights: LoadedWeights, opts?: TextDecoderOptions): TextDecoder {
  return textFamilyOf(weights.config).create(q, weights, weights.config.text, opts);
}
