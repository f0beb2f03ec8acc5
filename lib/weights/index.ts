// index.ts — the weights layer's public surface: config.json → ModelConfig, a model folder →
// native tensors under canonical names. See load.ts for the flow, names.ts for the naming.
export { loadWeights, type LoadedWeights, type LoadOptions, type LoadProgress } from './load.js';
export {
  readConfig, SUPPORTED_MODEL_TYPES, DEFAULT_BLOCK_SIZE, DEFAULT_EOS_TOKEN_ID, DEFAULT_MASK_TOKEN_ID,
  type ModelConfig, type ModelFamily, type TextConfig, type DiffusionConfig, type VisionConfig,
  type QwenVisionConfig, type SiglipVisionConfig,
} from './config.js';
export { canonicalName, expectedTensors, NAME_RULES } from './names.js';
export { openCheckpoint, resolveCheckpoint, type Checkpoint, type CheckpointFiles, type FileRole, type StoredTensor } from './checkpoint.js';
export { readSafetensorsHeader, MAX_HEADER_BYTES, SAFETENSORS_DTYPE_SIZE, type SafetensorsDType, type SafetensorsEntry, type SafetensorsHeader } from './safetensors.js';
