// tinyModel.ts — a complete small model folder for API tests: random Qwen2 weights (T2's
// writer), a real byte-level BPE tokenizer (T3's writer), and config.json / generation_config.json
// patched so the EOS id is the tokenizer's <|im_end|> and the mask id a row beyond the tokenizer
// (like the real 151671).
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeQwen2Checkpoint, type QwenVisionDims, type SiglipDims, type TinyQwen2Config, type WrittenCheckpoint } from './checkpoint.js';
import { writeTinyTokenizer, type TinyTokenizerIds } from './tokenizer.js';

export interface TinyModel {
  dir: string;
  ck: WrittenCheckpoint;
  tok: TinyTokenizerIds;
  maskId: number;
}

export interface TinyModelOptions {
  diffusion?: boolean;
  blockSize?: number;
  dtype?: 'f32' | 'bf16' | 'f16';
  seed?: number;
  dims?: Partial<TinyQwen2Config>;
  dir?: string;
  /** A vision tower: Qwen2.5-VL in the released layout (§1.5), or SigLIP in the AR-LM layout (§1.7). */
  vision?: QwenVisionDims | SiglipDims;
  /** Override config.json's min_pixels / max_pixels (vision models; small images keep tests fast). */
  pixels?: { min: number; max: number };
  /** Tied lm_head (default true). */
  tied?: boolean;
}

export async function writeTinyModel(opts: TinyModelOptions = {}): Promise<TinyModel> {
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'dvl-tiny-'));
  const tok = writeTinyTokenizer(dir, { vocabSize: 300 });
  const vocabSize = opts.dims?.vocabSize ?? 320;
  const maskId = vocabSize - 1;
  const dims: TinyQwen2Config = {
    hiddenSize: 64, numLayers: 2, numHeads: 4, numKvHeads: 2, intermediateSize: 96, vocabSize, ...opts.dims,
    ...(opts.vision ? { vision: opts.vision } : {}),
  };
  const diffusion = opts.diffusion ?? true;
  const ck = await writeQwen2Checkpoint(dir, dims, {
    dtype: opts.dtype ?? 'bf16', tied: opts.tied ?? true, shards: 1, layout: !opts.vision ? 'plain' : opts.vision.kind === 'siglip' ? 'siglip' : 'released', seed: opts.seed ?? 1,
    diffusion: diffusion ? { blockSize: opts.blockSize ?? 8, maskTokenId: maskId } : undefined,
  });
  for (const f of ['config.json', 'generation_config.json']) {
    const p = join(dir, f);
    const j = JSON.parse(readFileSync(p, 'utf8'));
    j.eos_token_id = tok.imEnd;
    if ('pad_token_id' in j) j.pad_token_id = tok.endOfText;
    if ('bos_token_id' in j) j.bos_token_id = tok.endOfText;
    if (f === 'config.json' && opts.pixels) { j.min_pixels = opts.pixels.min; j.max_pixels = opts.pixels.max; }
    writeFileSync(p, JSON.stringify(j, null, 2));
  }
  return { dir, ck, tok, maskId };
}
