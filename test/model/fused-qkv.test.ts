// The fused q|k|v product of the Qwen2 text layer (lib/model/qwen2.ts, TextDecoderOptions.fuseQkv):
// Wq | Wk | Wv concatenated at load, one product, one qkv_rope_split. It must give the logits of
// the three separate products and two ropes bit for bit — every pass kind of both decoding modes,
// eager and replayed, for every weight layout a CPU queue loads (bf16 rows, bf16p panels, q8 rows,
// q8p panels, f32), at every ISA level here. Exact comparisons (Uint32 views): no tolerance.
// It must also leave the loaded weights holding the fused tensors only (same bytes), fall back to
// the separate products where a panel layout cannot be concatenated, and free everything.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nativeInfo, nativeMemory, Queue, type Isa } from '../../lib/native/index.js';
import { Qwen2Text, type ForwardArgs } from '../../lib/model/qwen2.js';
import { loadWeights, type LoadOptions } from '../../lib/weights/load.js';
import { writeQwen2Checkpoint } from '../helpers/checkpoint.js';

const dirs: string[] = [];
afterAll(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });

function bits(a: Float32Array): Uint32Array { return new Uint32Array(a.buffer, a.byteOffset, a.length); }

/** A prefill, block steps (all rows, some rows, merged commit + step), a commit, AR prefill and steps. */
function passes(V: number): ForwardArgs[] {
  const ids = (n: number, s: number) => Int32Array.from({ length: n }, (_, i) => (i * 5 + s) % (V - 1));
  return [
    { ids: ids(24, 1), pos0: 0, n: 24, mask: 'block', blockSize: 8, logitsRows: [23] },
    { ids: ids(8, 2), pos0: 24, n: 8, mask: 'block', blockSize: 8, logitsRows: [0, 1, 2, 3, 4, 5, 6, 7] },
    { ids: ids(8, 3), pos0: 24, n: 8, mask: 'block', blockSize: 8, logitsRows: [1, 4, 6] },
    { ids: ids(16, 4), pos0: 24, n: 16, mask: 'block', blockSize: 8, logitsRows: [9, 10, 15] },
    { ids: ids(8, 5), pos0: 40, n: 8, mask: 'block', blockSize: 8 },
    { ids: ids(70, 6), pos0: 0, n: 70, mask: 'causal', logitsRows: [69] },   // ≥ 64 rows: plans' row segments
    { ids: ids(1, 7), pos0: 70, n: 1, mask: 'causal', logitsRows: [0] },
    { ids: ids(1, 8), pos0: 71, n: 1, mask: 'causal', logitsRows: [0] },
  ];
}

async function checkpoint(cfg: { hiddenSize: number; numHeads: number; numKvHeads: number }): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'dvl-fused-'));
  dirs.push(dir);
  await writeQwen2Checkpoint(dir, { ...cfg, numLayers: 2, intermediateSize: 72, vocabSize: 97 }, { dtype: 'bf16', tied: false, shards: 1, layout: 'plain', seed: 11 });
  return dir;
}

describe.each(nativeInfo().isaLevels as Isa[])('fused q|k|v at isa %s', (isa) => {
  let dir: string;   // hd 16, Wq 64 rows, Wk / Wv 32: whole 16-row panels
  beforeAll(async () => { dir = await checkpoint({ hiddenSize: 64, numHeads: 4, numKvHeads: 2 }); });

  // The layouts loadModel picks: bf16 as stored (packed to bf16p where the level has the
  // panel kernel), q8 (packed to q8p likewise), f32; both precisions.
  const layouts: { name: string; opts: (q: Queue) => LoadOptions; precision: 'fast' | 'exact' }[] = [
    { name: 'bf16 as loadModel packs it', opts: (q) => ({ packBf16: q.kernels?.bf16Packed === true }), precision: 'fast' },
    { name: 'bf16, exact', opts: () => ({}), precision: 'exact' },
    { name: 'q8 as loadModel packs it', opts: (q) => ({ dtype: 'q8', packQ8: q.kernels?.q8Packed === true }), precision: 'fast' },
    { name: 'f32', opts: () => ({ dtype: 'f32' }), precision: 'fast' },
  ];
  it.each(layouts)('$name: logits equal the separate products bit for bit, eager and replayed', async ({ opts, precision }) => {
    const q = new Queue({ threads: 2, isa, precision });
    const w1 = await loadWeights(dir, q, opts(q)), w2 = await loadWeights(dir, q, opts(q));
    const fused = new Qwen2Text(q, w1, w1.config.text), plain = new Qwen2Text(q, w2, w2.config.text, { fuseQkv: false });
    expect(w1.has('model.layers.1.self_attn.qkv_proj.weight')).toBe(true);
    expect(w1.has('model.layers.1.self_attn.q_proj.weight')).toBe(false);
    expect(w2.has('model.layers.1.self_attn.q_proj.weight')).toBe(true);
    expect(w1.get('model.layers.0.self_attn.qkv_proj.weight').shape).toEqual([128, 64]);
    for (const m of [fused, plain]) m.allocateCache({ capacity: 96 });
    for (const eager of [true, false]) {
      fused.eager = plain.eager = eager;
      for (let round = 0; round < (eager ? 1 : 3); round++) {   // replays: eager at first sight, recorded at the second
        for (const a of passes(97)) {
          const tf = fused.forward(a), tp = plain.forward(a);
          expect(tf === null).toBe(tp === null);
          if (!tf || !tp) continue;
          const [lf, lp] = [await q.readF32(tf), await q.readF32(tp)];
          tf.dispose(); tp.dispose();
          expect(lf.some(Number.isNaN)).toBe(false);
          expect(bits(lf), `${a.mask} n=${a.n} pos0=${a.pos0} eager=${eager}`).toEqual(bits(lp));
        }
      }
    }
    fused.dispose(); plain.dispose(); w1.dispose(); w2.dispose(); q.dispose();
  });
});

describe('fused q|k|v: weights, fallback, memory', () => {
  it('the fused weights hold the bytes of the six they replace; a second decoder reuses them; all is freed', async () => {
    const dir = await checkpoint({ hiddenSize: 64, numHeads: 4, numKvHeads: 2 });
    const before = nativeMemory();
    const q = new Queue({ threads: 1 });
    const w = await loadWeights(dir, q, { packBf16: q.kernels?.bf16Packed === true });
    await q.sync();
    const loaded = nativeMemory();
    const m = new Qwen2Text(q, w, w.config.text);
    await q.sync();
    // Same bytes; per layer six storages in, two out.
    expect(nativeMemory().hostBytes).toBe(loaded.hostBytes);
    expect(nativeMemory().hostStorages).toBe(loaded.hostStorages - 2 * 4);
    const again = new Qwen2Text(q, w, w.config.text);
    for (const d of [m, again]) d.allocateCache({ capacity: 16 });
    const a: ForwardArgs = { ids: Int32Array.of(1, 2, 3, 4, 5), pos0: 0, n: 5, mask: 'causal', logitsRows: [4] };
    const t1 = m.forward(a)!, t2 = again.forward(a)!;
    expect(bits(await q.readF32(t2))).toEqual(bits(await q.readF32(t1)));
    t1.dispose(); t2.dispose();
    // Built without fusion over weights already fused: the missing tensor is named.
    expect(() => new Qwen2Text(q, w, w.config.text, { fuseQkv: false })).toThrow(/model\.layers\.0\.self_attn\.q_proj\.weight/);
    m.dispose(); again.dispose(); w.dispose(); q.dispose();
    expect(nativeMemory()).toEqual(before);
  }, 30_000);

  it('weights past 1 MiB stay three products (streamed from memory, fusing measured slower)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dvl-fused-'));
    dirs.push(dir);
    // Wq, Wk, Wv 512 × 512 bf16: 1.5 MB together.
    await writeQwen2Checkpoint(dir, { hiddenSize: 512, numLayers: 1, numHeads: 8, numKvHeads: 8, intermediateSize: 64, vocabSize: 97 }, { dtype: 'bf16', tied: true, shards: 1, layout: 'plain', seed: 3 });
    const q = new Queue({ threads: 1 });
    const w = await loadWeights(dir, q, { packBf16: q.kernels?.bf16Packed === true });
    const m = new Qwen2Text(q, w, w.config.text);
    expect(w.has('model.layers.0.self_attn.q_proj.weight')).toBe(true);
    expect(w.has('model.layers.0.self_attn.qkv_proj.weight')).toBe(false);
    m.dispose(); w.dispose(); q.dispose();
  }, 30_000);

  it('panels that a concatenation would misalign (Wq of 60 rows) keep the separate products', async () => {
    const dir = await checkpoint({ hiddenSize: 60, numHeads: 6, numKvHeads: 2 });   // hd 10: Wq 60 rows, Wk / Wv 20
    for (const isa of nativeInfo().isaLevels as Isa[]) {
      const q = new Queue({ threads: 2, isa });
      const packed = q.kernels?.bf16Packed === true;
      const w1 = await loadWeights(dir, q, { packBf16: packed }), w2 = await loadWeights(dir, q, { packBf16: packed });
      const fused = new Qwen2Text(q, w1, w1.config.text), plain = new Qwen2Text(q, w2, w2.config.text, { fuseQkv: false });
      // bf16p: not fused (60 is no multiple of 16); bf16 rows: fused.
      expect(w1.has('model.layers.0.self_attn.q_proj.weight'), isa).toBe(packed);
      for (const m of [fused, plain]) m.allocateCache({ capacity: 96 });
      for (const a of passes(97)) {
        const tf = fused.forward(a), tp = plain.forward(a);
        if (!tf || !tp) { expect(tf === null && tp === null).toBe(true); continue; }
        expect(bits(await q.readF32(tf)), `${isa} ${a.mask} n=${a.n}`).toEqual(bits(await q.readF32(tp)));
        tf.dispose(); tp.dispose();
      }
      fused.dispose(); plain.dispose(); w1.dispose(); w2.dispose(); q.dispose();
    }
  }, 60_000);
});
