// seed-models.ts — the three released DiffusionVL models at their real shapes, with random
// weights (real weights cannot be downloaded here): writes each checkpoint with the exact
// released layout, config fields and tensor shapes (docs §1.2-1.7), bf16, streamed to disk
// (8-17 GB each), then loads it in a fresh process and runs one image + text generation on the
// CPU, reporting load time, peak RSS, vision ms and ms per block forward. Not a test.
//
//   npx tsx bench/seed-models.ts [3b|7b|7b-siglip|all] [--dir .cache/seed-models] [--delete] [--image 640x480]
//                                [--dtype q8] [--precision exact|fast] [--variants exact,fast,q8] [--write-only]
//
// --delete removes each checkpoint after its run (they are large). --dtype / --precision are
// loadModel's (q8: the weights quantised while loading; the peak RSS is the figure to watch).
// --variants runs one child per variant in turn (exact: bf16 at precision 'exact'; fast: bf16 at
// 'fast'; q8: q8 at 'fast') and prints each one's time to the first block against exact's.
// --write-only writes the checkpoints and runs nothing.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { packageRoot } from '../lib/native/index.js';
import { copyQwenTokenizer, qwenVisionTensors, siglipTensors, textTensors, writeRandomSafetensors, type TextShape } from './seed.js';

const TEXT_3B: TextShape = { name: '3b', hidden: 2048, layers: 36, heads: 16, kvHeads: 2, intermediate: 11008, vocab: 151936, tied: true };
const TEXT_7B: TextShape = { name: '7b', hidden: 3584, layers: 28, heads: 28, kvHeads: 4, intermediate: 18944, vocab: 152064, tied: false };

function textConfig(s: TextShape): Record<string, unknown> {
  return {
    hidden_size: s.hidden, num_hidden_layers: s.layers, num_attention_heads: s.heads, num_key_value_heads: s.kvHeads,
    intermediate_size: s.intermediate, vocab_size: s.vocab, tie_word_embeddings: s.tied, rope_theta: 1000000,
    rms_norm_eps: 1e-6, hidden_act: 'silu', torch_dtype: 'bfloat16',
  };
}

const BD3LM = { enable_bd3lm: true, bd3lm_block_size: 8, bd3lm_block_aligned_eos: true, bd3lm_sampling_eps_min: 0.001, bd3lm_sampling_eps_max: 1.0, bd3lm_antithetic_sampling: true };

interface SeedModel { name: string; tensors: () => [string, number[]][]; config: () => Record<string, unknown> }

const MODELS: SeedModel[] = [
  ...([TEXT_3B, TEXT_7B] as const).map((t): SeedModel => ({
    name: `DiffusionVL-Qwen2.5VL-${t.name.toUpperCase()}`,
    tensors: () => [...textTensors(t), ...qwenVisionTensors(t.hidden)],
    config: () => ({
      model_type: 'diffusionvl_qwenvl', architectures: ['LlavaDiffusionVLQwenVLForCausalLM'], ...textConfig(t),
      text_config: { ...textConfig(t), model_type: 'qwen2_5_vl_text', max_position_embeddings: 128000,
        rope_scaling: { type: 'mrope', mrope_section: [16, 24, 24] } },
      vision_config: { depth: 32, hidden_size: 1280, num_heads: 16, intermediate_size: 3420, patch_size: 14, temporal_patch_size: 2,
        spatial_merge_size: 2, window_size: 112, fullatt_block_indexes: [7, 15, 23, 31], out_hidden_size: t.hidden, in_chans: 3, hidden_act: 'silu' },
      image_token_id: 151655, video_token_id: null, ...BD3LM, model_max_length: 8192, min_pixels: 147456, max_pixels: 262144,
      mm_projector_type: 'qwen_merger', image_aspect_ratio: 'pad', mm_use_im_patch_token: false, mm_use_im_start_end: false,
      tokenizer_padding_side: 'right', tokenizer_model_max_length: 8192, eos_token_id: 151645, max_position_embeddings: 128000,
    }),
  })),
  {
    name: 'DiffusionVL-Qwen2.5-7B',
    tensors: () => [...textTensors(TEXT_7B), ...siglipTensors(TEXT_7B.hidden)],
    config: () => {
      const pinpoints: number[][] = [];
      for (let i = 1; i <= 6; i++) for (let j = 1; j <= 6; j++) pinpoints.push([384 * i, 384 * j]);
      return {
        model_type: 'diffusionvl_qwen', architectures: ['LlavaDiffusionVLQwenForCausalLM'], ...textConfig(TEXT_7B),
        max_position_embeddings: 32768, rope_scaling: null, mm_vision_tower: 'google/siglip2-so400m-patch14-384',
        mm_projector_type: 'mlp2x_gelu', mm_hidden_size: 1152, mm_vision_select_layer: -2, mm_vision_select_feature: 'patch',
        mm_patch_merge_type: 'spatial_unpad', image_aspect_ratio: 'anyres_max_4', image_grid_pinpoints: pinpoints,
        mm_newline_position: 'grid', mm_use_im_start_end: false, mm_use_im_patch_token: false,
        tokenizer_model_max_length: 8192, tokenizer_padding_side: 'right', ...BD3LM, eos_token_id: 151645,
      };
    },
  },
];

const { values: v, positionals } = parseArgs({ allowPositionals: true, options: {
  dir: { type: 'string', default: join(packageRoot(), '.cache', 'seed-models') }, delete: { type: 'boolean', default: false },
  child: { type: 'string' }, image: { type: 'string', default: '640x480' },
  dtype: { type: 'string' }, precision: { type: 'string' }, 'write-only': { type: 'boolean', default: false },
  variants: { type: 'string' },
} });
const VARIANT_ARGS: Record<string, string[]> = { exact: ['--precision', 'exact'], fast: ['--precision', 'fast'], q8: ['--precision', 'fast', '--dtype', 'q8'] };
const loadOpts = { dtype: v.dtype as 'q8' | 'bf16' | undefined, precision: v.precision as 'exact' | 'fast' | undefined };

// Child mode: load one model and run one image + text generation, print JSON.
if (v.child) {
  const { loadModel } = await import('../lib/model/model.js');
  const sharp = (await import('sharp')).default;
  const [iw, ih] = v.image!.split('x').map(Number);
  const img = await sharp({ create: { width: iw, height: ih, channels: 3, background: { r: 200, g: 60, b: 40 } } }).png().toBuffer();
  const t0 = performance.now();
  const model = await loadModel(v.child, loadOpts);
  const loadMs = performance.now() - t0;
  // Time to the first block: from the call to the first block event (image decode, vision
  // tower, prefill and the block's denoising steps).
  const t1 = performance.now();
  let firstBlockMs = 0;
  let r: Awaited<ReturnType<typeof model.generate>> | undefined;
  for await (const ev of model.stream({ messages: [{ role: 'user', content: [{ type: 'image', image: img }, { type: 'text', text: 'Describe the image.' }] }], maxTokens: 8, steps: 8, stopTokens: [] })) {
    if (ev.type === 'block' && !firstBlockMs) firstBlockMs = performance.now() - t1;
    if (ev.type === 'done') r = ev.result;
  }
  if (!r) throw new Error('no result');
  const rss = process.resourceUsage().maxRSS * 1024;
  process.stdout.write(JSON.stringify({ image: v.image, ...loadOpts, kernels: model.backend.cpu.kernels, loadMs, peakRssBytes: rss, weightBytes: model.weightBytes, promptTokens: r.stats.promptTokens,
    visionMs: (r.stats as { visionMs?: number }).visionMs, prefillMs: r.stats.prefillMs, firstBlockMs, msPerForward: r.stats.msPerForward, forwards: r.stats.forwards }) + '\n');
  model.dispose();
  process.exit(0);
}

const which = (positionals[0] ?? 'all').toLowerCase();
const chosen = MODELS.filter((m) => which === 'all' || m.name.toLowerCase().endsWith(which.replace('-siglip', '')) && (which.includes('siglip') === (m.name === 'DiffusionVL-Qwen2.5-7B')));
const results: Record<string, unknown> = {};
for (const m of chosen) {
  const dir = join(v.dir!, m.name);
  if (!existsSync(join(dir, 'model.safetensors'))) {
    mkdirSync(dir, { recursive: true });
    await writeRandomSafetensors(join(dir, 'model.safetensors'), m.tensors(), (s) => process.stderr.write(s + '\n'));
    writeFileSync(join(dir, 'config.json'), JSON.stringify(m.config(), null, 2));
    copyQwenTokenizer(dir);
  }
  if (v['write-only']) continue;
  const runs: [string, string[]][] = v.variants
    ? v.variants.split(',').map((n) => [n, VARIANT_ARGS[n] ?? (() => { throw new Error(`--variants: unknown '${n}'`); })()])
    : [['', [...(v.dtype ? ['--dtype', v.dtype] : []), ...(v.precision ? ['--precision', v.precision] : [])]]];
  const out: Record<string, Record<string, unknown>> = {};
  for (const [variant, pass] of runs) {
    process.stderr.write(`running ${m.name}${variant ? ` (${variant})` : ''} …\n`);
    const r = spawnSync(process.execPath, ['--import', 'tsx', new URL(import.meta.url).pathname, '--child', dir, '--image', v.image!, ...pass], { encoding: 'utf8', maxBuffer: 1 << 24 });
    const line = r.stdout.trim().split('\n').pop() ?? '';
    try { out[variant] = JSON.parse(line); } catch { out[variant] = { error: (r.stderr || r.stdout).slice(-2000) }; }
    process.stderr.write(`${m.name}${variant ? ` (${variant})` : ''}: ${JSON.stringify(out[variant])}\n`);
  }
  results[m.name] = v.variants ? out : out[''];
  if (v.variants && out.exact && typeof out.exact.firstBlockMs === 'number') {
    for (const [name, o] of Object.entries(out)) {
      if (typeof o.firstBlockMs !== 'number') continue;
      process.stderr.write(`${m.name} ${name}: first block after ${(o.firstBlockMs / 1000).toFixed(1)} s (vision ${((o.visionMs as number) / 1000).toFixed(1)} s, ` +
        `prefill ${((o.prefillMs as number) / 1000).toFixed(1)} s), ${(o.msPerForward as number).toFixed(0)} ms per forward, peak RSS ${((o.peakRssBytes as number) / 1e9).toFixed(2)} GB; ` +
        `${((o.firstBlockMs as number) / (out.exact.firstBlockMs as number)).toFixed(2)}× exact's time to the first block\n`);
    }
  }
  if (v.delete) rmSync(dir, { recursive: true, force: true });
}
mkdirSync(join(packageRoot(), 'bench', 'out'), { recursive: true });
writeFileSync(join(packageRoot(), 'bench', 'out', 'seed-models.json'), JSON.stringify(results, null, 2));
