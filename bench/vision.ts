// vision.ts — `npx tsx bench/vision.ts`: the vision section of the benchmark (issue: images in).
//   preprocessing  decode + smart_resize + Pillow-exact bicubic + normalise + patch rows, for a
//                  640×480 and a 1920×1080 photo-like PNG (ms, tokens)
//   tower          one 448×448 image (256 tokens, 1024 patches) through a random tower with the
//                  real Qwen2.5-VL shape (hidden 1280, 32 layers, 16 heads, MLP 3420, merger
//                  5120 → 2048): bf16 at precision 'exact' and 'fast', and q8 ('fast'), run
//                  round-robin (3 passes, median), with the speed-up over 'exact'
//   tokens         tokens per image for the docs §3.4 examples
// Writes bench/out/vision.json. The tower checkpoint (1.3 GB) is generated once into .cache/.
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { Queue, nativeInfo, packageRoot } from '../lib/native/index.js';
import { decodeImage } from '../lib/image/decode.js';
import { preprocessQwen2vl, smartResize } from '../lib/image/qwen2vl.js';
import { Qwen25VisionTower } from '../lib/model/qwen25vl_vision.js';
import { loadWeights } from '../lib/weights/load.js';
import type { QwenVisionConfig } from '../lib/weights/config.js';
import { copyQwenTokenizer, qwenVisionTensors, textTensors, writeRandomSafetensors } from './seed.js';

const log = (s: string) => process.stdout.write(s + '\n');
const root = packageRoot();
const info = nativeInfo();
log(`machine: ${cpus()[0]?.model}, ${info.physicalCores} cores, ISA ${info.isa}`);

async function photo(w: number, h: number): Promise<Buffer> {
  const raw = Buffer.alloc(w * h * 3);
  let x = 12345;
  for (let i = 0; i < raw.length; i++) { x = (x * 1103515245 + 12345) >>> 0; raw[i] = ((i % (w * 3)) * 255 / (w * 3) + (x >>> 24) / 4) & 255; }
  return sharp(raw, { raw: { width: w, height: h, channels: 3 } }).png().toBuffer();
}

const q = new Queue();
const pre: Record<string, unknown>[] = [];
for (const [w, h] of [[640, 480], [1920, 1080]]) {
  const png = await photo(w, h);
  const times: number[] = [];
  let tokens = 0;
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    const img = await decodeImage(png);
    const p = await preprocessQwen2vl(img, { queue: q });
    times.push(performance.now() - t0);
    tokens = p.tokens;
  }
  times.sort((a, b) => a - b);
  log(`preprocess ${w}×${h} PNG: ${times[2].toFixed(1)} ms (median of 5; decode + resize + patch rows), ${tokens} tokens`);
  pre.push({ width: w, height: h, ms: times[2], tokens });
}

// The tower at its real shape (the text part is a 1-layer stub with the 3B hidden size).
const dir = join(root, '.cache', 'bench-vision-tower');
if (!existsSync(join(dir, 'model.safetensors'))) {
  mkdirSync(dir, { recursive: true });
  const text = { name: 'stub', hidden: 2048, layers: 1, heads: 16, kvHeads: 2, intermediate: 1024, vocab: 1024, tied: true };
  await writeRandomSafetensors(join(dir, 'model.safetensors'), [...textTensors(text), ...qwenVisionTensors(2048)], log);
  const t = { hidden_size: 2048, num_hidden_layers: 1, num_attention_heads: 16, num_key_value_heads: 2, intermediate_size: 1024,
    vocab_size: 1024, tie_word_embeddings: true, rope_theta: 1e6, rms_norm_eps: 1e-6, max_position_embeddings: 32768 };
  writeFileSync(join(dir, 'config.json'), JSON.stringify({
    model_type: 'diffusionvl_qwenvl', ...t, text_config: t, enable_bd3lm: true, bd3lm_block_size: 8, mask_token_id: 1000, eos_token_id: 999,
    vision_config: { depth: 32, hidden_size: 1280, num_heads: 16, intermediate_size: 3420, patch_size: 14, temporal_patch_size: 2,
      spatial_merge_size: 2, window_size: 112, fullatt_block_indexes: [7, 15, 23, 31], out_hidden_size: 2048, in_chans: 3 },
  }, null, 2));
  copyQwenTokenizer(dir);
}
const towers: { name: string; q: Queue; w: Awaited<ReturnType<typeof loadWeights>>; t: Qwen25VisionTower; runs: number[] }[] = [];
for (const [name, precision, dtype] of [['exact', 'exact', undefined], ['fast', 'fast', undefined], ['q8', 'fast', 'q8']] as const) {
  const tq = new Queue({ precision });
  const w = await loadWeights(dir, tq, { vision: true, dtype });
  towers.push({ name, q: tq, w, t: new Qwen25VisionTower(tq, w, w.config.vision as QwenVisionConfig), runs: [] });
}
const vcfg = towers[0].w.config.vision as QwenVisionConfig;
const img448 = await preprocessQwen2vl(await decodeImage(await photo(448, 448)), { queue: q, minPixels: vcfg.minPixels, maxPixels: vcfg.maxPixels });
for (let i = 0; i < 3; i++)
  for (const tw of towers) {
    const t0 = performance.now();
    const f = tw.t.encode([img448]);
    await tw.q.sync();
    tw.runs.push(performance.now() - t0);
    f.dispose();
  }
const towerMs: Record<string, number> = {};
for (const tw of towers) {
  towerMs[tw.name] = [...tw.runs].sort((a, b) => a - b)[1];
  tw.t.dispose(); tw.w.dispose(); tw.q.dispose();
}
for (const tw of towers) {
  log(`tower encode 448×448 (${img448.tokens} tokens, ${img448.pixelValues.length / 1176} patches), real 3B/7B tower shape, ${tw.name}: ${towerMs[tw.name].toFixed(0)} ms (median of 3), ×${(towerMs.exact / towerMs[tw.name]).toFixed(2)} vs exact`);
}
q.dispose();

const examples = [[448, 448], [640, 480], [800, 600], [1024, 768], [1920, 1080], [224, 224], [512, 512], [100, 1000]].map(([W, H]) => {
  const r = smartResize(H, W, { minPixels: 147456, maxPixels: 262144 });
  return { input: `${W}×${H}`, resized: `${r.width}×${r.height}`, tokens: (r.width / 28) * (r.height / 28) };
});
log(`tokens per image (docs §3.4): ${examples.map((e) => `${e.input} → ${e.tokens}`).join(', ')}`);
mkdirSync(join(root, 'bench', 'out'), { recursive: true });
writeFileSync(join(root, 'bench', 'out', 'vision.json'), JSON.stringify({ machine: { cpu: cpus()[0]?.model, isa: info.isa, cores: info.physicalCores }, preprocess: pre, tower: { image: '448×448', tokens: img448.tokens, ms: towerMs }, tokens: examples }, null, 2));
