// loadWeights end to end on small random checkpoints: every stored layout × dtype (tied/untied,
// single/sharded, converted side files, SigLIP route) round-trips bit-exactly through the native
// `load` op; dtype rules (1-D → f32, matrices as stored or as asked); missing / wrong-shape /
// bad-dtype tensors are named; unused ones are listed; progress is monotone and ends at the
// total; abort and failure free everything allocated.
//
// Tolerance: none. Loading copies bits (same dtype) or widens exactly (bf16/f16 → f32); the only
// rounding is an explicit narrowing (f32 → bf16/f16, round to nearest even), which the reference
// reproduces bit for bit with test/helpers/random.ts.
import { truncateSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WeightsError } from '../../lib/errors.js';
import { Queue, TensorScope, type Tensor } from '../../lib/native/index.js';
import { loadWeights, type LoadProgress } from '../../lib/weights/load.js';
import {
  writeQwen2Checkpoint, writeSafetensors, type CheckpointLayout, type StEntry, type TinyQwen2Config, type WrittenCheckpoint,
} from '../helpers/checkpoint.js';
import { fromBf16, fromF16, toBf16, toF16 } from '../helpers/random.js';

let root: string;
let q: Queue;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'dvl-load-'));
  q = new Queue({ threads: 1 });
});
afterAll(async () => {
  q.dispose();
  await rm(root, { recursive: true, force: true });
});

let n = 0;
const dirFor = (tag: string) => join(root, `${tag}-${n++}`);

// Odd sizes on purpose: hidden 40 with head_dim 10, intermediate 67, vocab 301.
const text: TinyQwen2Config = { hiddenSize: 40, numLayers: 2, numHeads: 4, numKvHeads: 2, intermediateSize: 67, vocabSize: 301 };
const qwenVit = { kind: 'qwen2_5_vl' as const, depth: 3, hiddenSize: 24, numHeads: 3, intermediateSize: 37, patchSize: 2, temporalPatchSize: 2, spatialMergeSize: 2, fullAttBlockIndexes: [2] };
const siglip = { kind: 'siglip' as const, hiddenSize: 24, numLayers: 2, numHeads: 4, intermediateSize: 33, patchSize: 3, imageSize: 13 };

/** The loaded tensor's values as f32 (exact widening of bf16/f16 bits). */
async function values(t: Tensor): Promise<Float32Array> {
  const r = await q.read(t);
  if (t.dtype === 'f32') return r as Float32Array;
  if (t.dtype === 'bf16') return fromBf16(r as Uint16Array);
  if (t.dtype === 'f16') return fromF16(r as Uint16Array);
  throw new Error(`unexpected dtype ${t.dtype}`);
}

/** What a tensor stored as `w` must read back as after loading into `dtype`. */
function narrowed(w: Float32Array, dtype: string): Float32Array {
  if (dtype === 'bf16') return fromBf16(toBf16(w));
  if (dtype === 'f16') return fromF16(toF16(w));
  return w;
}

function expectBitEqual(got: Float32Array, ref: Float32Array, label: string): void {
  expect(got.length, label).toBe(ref.length);
  for (let i = 0; i < ref.length; i++) {
    if (!Object.is(got[i], ref[i])) throw new Error(`${label}: index ${i}: got ${got[i]}, stored ${ref[i]}`);
  }
}

/** Checks every loaded tensor against what the writer stored; returns the loaded names. */
async function checkAll(w: WrittenCheckpoint, loaded: Awaited<ReturnType<typeof loadWeights>>, matrixDtype: string | null): Promise<void> {
  for (const [name, ref] of w.weights) {
    if (name.startsWith('siglip.vision_model.post_layernorm')) {
      expect(loaded.has(name), name).toBe(false);
      continue;
    }
    const t = loaded.get(name);
    const st = w.stored.get(name)!;
    expect(t.shape, name).toEqual(st.shape);
    const storedDtype = st.dtype.toLowerCase();
    const want = st.shape.length === 1 ? 'f32' : matrixDtype ?? storedDtype;
    expect(t.dtype, name).toBe(want);
    expectBitEqual(await values(t), narrowed(ref, want), name);
  }
}

describe('loadWeights: round trips', () => {
  const layouts: { layout: CheckpointLayout; cfg: TinyQwen2Config; diffusion: boolean; shards: number[] }[] = [
    { layout: 'plain', cfg: text, diffusion: false, shards: [1, 3] },
    { layout: 'plain', cfg: text, diffusion: true, shards: [2] },
    { layout: 'converted', cfg: { ...text, vision: qwenVit }, diffusion: true, shards: [1] },
    { layout: 'released', cfg: { ...text, vision: qwenVit }, diffusion: true, shards: [1, 4] },
    { layout: 'stock', cfg: { ...text, vision: qwenVit }, diffusion: false, shards: [2] },
    { layout: 'stock-new', cfg: { ...text, vision: qwenVit }, diffusion: false, shards: [1] },
    { layout: 'siglip', cfg: { ...text, vision: siglip }, diffusion: true, shards: [1, 2] },
  ];
  const cases: [string, CheckpointLayout, TinyQwen2Config, boolean, number, 'f32' | 'f16' | 'bf16', boolean][] = [];
  let k = 0;
  for (const l of layouts) {
    for (const shards of l.shards) {
      for (const dtype of ['f32', 'f16', 'bf16'] as const) {
        const tied = (k++ % 2) === 0;
        cases.push([`${l.layout}${l.diffusion ? '+bd3lm' : ''} ${dtype} ${tied ? 'tied' : 'untied'} ${shards} file(s)`, l.layout, l.cfg, l.diffusion, shards, dtype, tied]);
      }
    }
  }

  it.each(cases)('%s', async (_label, layout, cfg, diffusion, shards, dtype, tied) => {
    const dir = dirFor(layout);
    const w = await writeQwen2Checkpoint(dir, cfg, {
      dtype, tied, shards, layout, seed: 1000 + n, ...(diffusion ? { diffusion: { blockSize: 4, maskTokenId: 299 } } : {}),
    });
    const events: LoadProgress[] = [];
    const loaded = await loadWeights(dir, q, { onProgress: (p) => events.push(p) });
    try {
      expect(loaded.config.text.tieWordEmbeddings).toBe(tied);
      expect(loaded.config.diffusion).toEqual(diffusion ? { blockSize: 4, maskTokenId: 299 } : null);
      expect(loaded.config.vision?.kind ?? null).toBe(cfg.vision?.kind ?? null);
      const expectedNames = [...w.weights.keys()].filter((x) => !x.startsWith('siglip.vision_model.post_layernorm'));
      expect([...loaded.tensors.keys()].sort()).toEqual(expectedNames.sort());
      await checkAll(w, loaded, null);
      const unused = layout === 'siglip' ? ['model.vision_tower.vision_tower.vision_model.post_layernorm.bias', 'model.vision_tower.vision_tower.vision_model.post_layernorm.weight'] : [];
      expect(loaded.unused.slice().sort()).toEqual(unused);
      let nbytes = 0;
      for (const t of loaded.tensors.values()) nbytes += t.nbytes;
      expect(loaded.bytes).toBe(nbytes);
      expect(events.at(-1)!.loadedBytes).toBe(events.at(-1)!.totalBytes);
    } finally {
      loaded.dispose();
    }
    for (const t of loaded.tensors.values()) expect(t.disposed).toBe(true);
  });
});

const landedBf16 = (stored: string, asked: string | undefined) => (asked ?? stored) === 'bf16';

describe('loadWeights: dtype option', () => {
  it.each([['f32', 'bf16'], ['f32', 'f16'], ['bf16', 'f32'], ['f16', 'bf16'], ['bf16', 'f16']] as const)('stored %s, asked %s: matrices converted, 1-D stays f32', async (stored, asked) => {
    const dir = dirFor('dtype');
    const w = await writeQwen2Checkpoint(dir, { ...text, vision: qwenVit }, { dtype: stored, tied: false, shards: 1, layout: 'converted', seed: 7, diffusion: { blockSize: 8, maskTokenId: 300 } });
    const loaded = await loadWeights(dir, q, { dtype: asked });
    try {
      await checkAll(w, loaded, asked);
      expect(loaded.get('visual.patch_embed.proj.weight').dtype).toBe(asked);  // 5-D counts as a matrix
    } finally {
      loaded.dispose();
    }
  });

  // The panel layout loadModel asks for on avx512_bf16 (csrc/core/dtype.h "bf16p layout"): every
  // matrix that lands as bf16 is stored in panels — same values, read back through convert —
  // and nothing else changes (1-D f32, 5-D conv kernels bf16, f32/f16 matrices as they were).
  it.each([['bf16', undefined], ['f32', 'bf16'], ['f16', 'bf16'], ['f32', undefined], ['bf16', 'f16']] as const)('packBf16, stored %s, asked %s: bf16 matrices load as bf16p panels of the same values', async (stored, asked) => {
    const dir = dirFor('bf16p');
    const w = await writeQwen2Checkpoint(dir, { ...text, vision: qwenVit }, { dtype: stored, tied: true, shards: 1, layout: 'converted', seed: 9, diffusion: { blockSize: 8, maskTokenId: 300 } });
    const loaded = await loadWeights(dir, q, { dtype: asked, packBf16: true });
    try {
      let packed = 0;
      for (const [name, ref] of w.weights) {
        const t = loaded.get(name), shape = w.stored.get(name)!.shape;
        const landed = shape.length === 1 ? 'f32' : asked ?? stored;
        const want = landed === 'bf16' && shape.length === 2 ? 'bf16p' : landed;
        expect(t.dtype, name).toBe(want);
        if (want !== 'bf16p') { expectBitEqual(await values(t), narrowed(ref, want), name); continue; }
        packed++;
        const back = q.convert(t, 'f32');
        expectBitEqual((await q.read(back)) as Float32Array, narrowed(ref, 'bf16'), name);
        back.dispose();
      }
      expect(packed > 0).toBe(landedBf16(stored, asked));
    } finally {
      loaded.dispose();
    }
  });

  it('packQ8 with dtype q8: matrices load as q8p panels holding the bytes a q8 load holds', async () => {
    const dir = dirFor('q8p');
    await writeQwen2Checkpoint(dir, { ...text, vision: qwenVit }, { dtype: 'bf16', tied: false, shards: 1, layout: 'converted', seed: 10, diffusion: { blockSize: 8, maskTokenId: 300 } });
    const plain = await loadWeights(dir, q, { dtype: 'q8' });
    const packed = await loadWeights(dir, q, { dtype: 'q8', packQ8: true, packBf16: true });
    try {
      let n2 = 0;
      for (const [name, t] of packed.tensors) {
        const p = plain.get(name);
        if (p.dtype !== 'q8' || p.shape.length !== 2) {
          expect(t.dtype, name).toBe(p.dtype);  // 1-D f32, the 5-D patch kernel as stored
          continue;
        }
        n2++;
        expect(t.dtype, name).toBe('q8p');
        const back = q.convert(t, 'q8');
        expect(Array.from((await q.read(back)) as Uint8Array), name).toEqual(Array.from((await q.read(p)) as Uint8Array));
        back.dispose();
      }
      expect(n2).toBeGreaterThan(10);
    } finally {
      plain.dispose(); packed.dispose();
    }
  });

  it('vision: false loads the text model only and lists the vision tensors as unused', async () => {
    const dir = dirFor('novision');
    await writeQwen2Checkpoint(dir, { ...text, vision: qwenVit }, { dtype: 'bf16', tied: true, shards: 1, layout: 'released', seed: 8, diffusion: { blockSize: 8, maskTokenId: 300 } });
    const loaded = await loadWeights(dir, q, { vision: false });
    try {
      expect([...loaded.tensors.keys()].some((x) => x.startsWith('visual.'))).toBe(false);
      expect(loaded.unused).toContain('model.vision_tower.vision_tower.patch_embed.proj.weight');
      expect(loaded.unused).toContain('model.mm_projector.merger.ln_q.weight');
    } finally {
      loaded.dispose();
    }
  });
});

/** Rewrites dir/model.safetensors (f32) from a written checkpoint, with edits. */
async function rewrite(w: WrittenCheckpoint, edit: (e: StEntry[]) => StEntry[]): Promise<void> {
  const entries: StEntry[] = [];
  for (const [name, st] of w.stored) entries.push({ name: st.name, dtype: 'F32', shape: st.shape, data: w.weights.get(name)! });
  await writeSafetensors(join(w.dir, 'model.safetensors'), edit(entries));
}

/** The canonical name of a stored name in `w`. */
function canonicalOf(w: WrittenCheckpoint, stored: string): string {
  for (const [c, st] of w.stored) if (st.name === stored) return c;
  return stored;
}

async function loadError(dir: string): Promise<WeightsError> {
  const e = await loadWeights(dir, q).then((l) => { l.dispose(); return null; }, (x: unknown) => x);
  expect(e).toBeInstanceOf(WeightsError);
  return e as WeightsError;
}

describe('loadWeights: bad checkpoints', () => {
  it('a missing tensor is named', async () => {
    const w = await writeQwen2Checkpoint(dirFor('missing'), text, { dtype: 'f32', tied: true, shards: 1, layout: 'plain', seed: 9 });
    await rewrite(w, (es) => es.filter((e) => e.name !== 'model.layers.1.self_attn.k_proj.bias'));
    const e = await loadError(w.dir);
    expect(e.tensor).toBe('model.layers.1.self_attn.k_proj.bias');
    expect(e.message).toMatch(/missing tensor model\.layers\.1\.self_attn\.k_proj\.bias \(searched model\.safetensors\)/);
  });

  it('a missing lm_head says the config is untied', async () => {
    const w = await writeQwen2Checkpoint(dirFor('nohead'), text, { dtype: 'f32', tied: false, shards: 1, layout: 'plain', seed: 10 });
    await rewrite(w, (es) => es.filter((e) => e.name !== 'lm_head.weight'));
    const e = await loadError(w.dir);
    expect(e.tensor).toBe('lm_head.weight');
    expect(e.message).toMatch(/tie_word_embeddings is false/);
  });

  it('a wrong shape names file, tensor, expected and got', async () => {
    const w = await writeQwen2Checkpoint(dirFor('shape'), text, { dtype: 'f32', tied: true, shards: 1, layout: 'plain', seed: 11 });
    await rewrite(w, (es) => es.map((e) => (e.name === 'model.layers.0.mlp.down_proj.weight' ? { ...e, shape: [67, 40] } : e)));
    const e = await loadError(w.dir);
    expect(e.tensor).toBe('model.layers.0.mlp.down_proj.weight');
    expect(e.file).toBe(join(w.dir, 'model.safetensors'));
    expect(e.message).toMatch(/has shape \[67, 40\] but the config expects \[40, 67\]/);
  });

  it('a weight stored as an integer dtype is refused, naming the dtype', async () => {
    const w = await writeQwen2Checkpoint(dirFor('int'), text, { dtype: 'f32', tied: true, shards: 1, layout: 'plain', seed: 12 });
    await rewrite(w, (es) => es.map((e) => (e.name === 'model.norm.weight' ? { ...e, dtype: 'I32', data: new Int32Array(40) } : e)));
    const e = await loadError(w.dir);
    expect(e.tensor).toBe('model.norm.weight');
    expect(e.message).toMatch(/stored as I32/);
  });

  it('a converted side file wins over a copy inside model.safetensors; two names for one tensor in one file are refused', async () => {
    const w = await writeQwen2Checkpoint(dirFor('both'), { ...text, vision: qwenVit }, { dtype: 'f32', tied: true, shards: 1, layout: 'converted', seed: 16, diffusion: { blockSize: 8, maskTokenId: 300 } });
    const textOnly = (es: StEntry[]) => es.filter((e) => w.stored.get(canonicalOf(w, e.name))?.file.endsWith('model.safetensors'));
    // A stale, zeroed copy of a ViT tensor in the model file (as the reference would ignore it).
    await rewrite(w, (es) => [...textOnly(es), { name: 'visual.patch_embed.proj.weight', dtype: 'F32', shape: [24, 3, 2, 2, 2], data: new Float32Array(24 * 24) }]);
    const loaded = await loadWeights(w.dir, q);
    try {
      expect(loaded.unused).toEqual(['visual.patch_embed.proj.weight']);
      expectBitEqual(await values(loaded.get('visual.patch_embed.proj.weight')), w.weights.get('visual.patch_embed.proj.weight')!, 'patch_embed');
    } finally {
      loaded.dispose();
    }
    await rewrite(w, (es) => [...textOnly(es),
      { name: 'model.language_model.embed_tokens.weight', dtype: 'F32', shape: [301, 40], data: new Float32Array(301 * 40) }]);
    const e = await loadError(w.dir);
    expect(e.message).toMatch(/model\.embed_tokens\.weight is stored twice: as model\.embed_tokens\.weight .* and as model\.language_model\.embed_tokens\.weight/);
  });

  it('extra tensors (and lm_head of a tied model) are listed as unused, not errors', async () => {
    const w = await writeQwen2Checkpoint(dirFor('extra'), text, { dtype: 'f32', tied: true, shards: 1, layout: 'plain', seed: 13 });
    await rewrite(w, (es) => [...es,
      { name: 'model.layers.0.self_attn.rotary_emb.inv_freq', dtype: 'F32', shape: [5], data: new Float32Array(5) },
      { name: 'lm_head.weight', dtype: 'F32', shape: [301, 40], data: new Float32Array(301 * 40) },
      { name: 'position_ids', dtype: 'I64', shape: [2], data: new BigInt64Array(2) },
    ]);
    const loaded = await loadWeights(w.dir, q);
    try {
      expect(loaded.unused.sort()).toEqual(['lm_head.weight', 'model.layers.0.self_attn.rotary_emb.inv_freq', 'position_ids']);
      expect(loaded.has('lm_head.weight')).toBe(false);
      expect(() => loaded.get('lm_head.weight')).toThrow(WeightsError);
      expect(() => loaded.get('lm_head.weight')).toThrow(/no tensor lm_head\.weight/);
    } finally {
      loaded.dispose();
      loaded.dispose();  // idempotent
    }
    expect(loaded.disposed).toBe(true);
  });
});

describe('loadWeights: progress, abort, cleanup', () => {
  let w: WrittenCheckpoint;
  beforeAll(async () => {
    w = await writeQwen2Checkpoint(dirFor('big'), { hiddenSize: 96, numLayers: 3, numHeads: 4, numKvHeads: 2, intermediateSize: 160, vocabSize: 300 },
      { dtype: 'f32', tied: false, shards: 2, layout: 'plain', seed: 14 });
  });

  it('progress events are monotone and end at totalBytes', async () => {
    const events: LoadProgress[] = [];
    const loaded = await loadWeights(w.dir, q, { syncBytes: 20_000, onProgress: (p) => events.push({ ...p }) });
    try {
      let stored = 0;
      for (const x of w.weights.values()) stored += x.length * 4;
      expect(events.length).toBeGreaterThan(5);
      for (const e of events) expect(e.totalBytes).toBe(stored);
      for (let i = 1; i < events.length; i++) expect(events[i].loadedBytes).toBeGreaterThan(events[i - 1].loadedBytes);
      expect(events.at(-1)!.loadedBytes).toBe(stored);
      expect(loaded.tensors.has(events.at(-1)!.tensor)).toBe(true);
    } finally {
      loaded.dispose();
    }
  });

  it('abort mid-load rejects with signal.reason and disposes every tensor allocated', async () => {
    const ac = new AbortController();
    const reason = new Error('user stopped');
    const allocated: Tensor[] = [];
    let events = 0;
    const p = loadWeights(w.dir, q, {
      syncBytes: 20_000,
      onAllocate: (_n, t) => allocated.push(t),
      onProgress: () => { if (++events === 2) ac.abort(reason); },
      signal: ac.signal,
    });
    await expect(p).rejects.toBe(reason);
    expect(allocated.length).toBeGreaterThan(0);
    expect(allocated.length).toBeLessThan(w.weights.size);
    for (const t of allocated) expect(t.disposed).toBe(true);
    // The queue has no leftover error and still works.
    await expect(q.sync()).resolves.toBeUndefined();
    const again = await loadWeights(w.dir, q);
    expect(again.tensors.size).toBe(w.weights.size);
    again.dispose();
  });

  it('an already-aborted signal rejects before allocating anything', async () => {
    const ac = new AbortController();
    ac.abort(new Error('early'));
    const allocated: Tensor[] = [];
    await expect(loadWeights(w.dir, q, { signal: ac.signal, onAllocate: (_n, t) => allocated.push(t) })).rejects.toThrow('early');
    expect(allocated).toEqual([]);
  });

  it('abort between allocations (no sync yet) also frees everything', async () => {
    const ac = new AbortController();
    const allocated: Tensor[] = [];
    const p = loadWeights(w.dir, q, {
      signal: ac.signal,
      onAllocate: (_n, t) => { allocated.push(t); if (allocated.length === 5) ac.abort(); },
    });
    await expect(p).rejects.toMatchObject({ name: 'AbortError' });
    expect(allocated.length).toBe(5);
    for (const t of allocated) expect(t.disposed).toBe(true);
    await expect(q.sync()).resolves.toBeUndefined();
  });

  it('a native read failure (file cut after the header check) frees everything and names the file', async () => {
    const v = await writeQwen2Checkpoint(dirFor('cut'), text, { dtype: 'f32', tied: true, shards: 1, layout: 'plain', seed: 15 });
    const file = join(v.dir, 'model.safetensors');
    const allocated: Tensor[] = [];
    const p = loadWeights(v.dir, q, {
      onAllocate: (_n, t) => { if (allocated.push(t) === 1) truncateSync(file, 100); },
    });
    const e = await p.then(() => null, (x: unknown) => x) as WeightsError;
    expect(e).toBeInstanceOf(WeightsError);
    expect(e.message).toMatch(/loading weights failed: .*model\.safetensors/);
    expect(allocated.length).toBe(v.weights.size);
    for (const t of allocated) expect(t.disposed).toBe(true);
    await expect(q.sync()).resolves.toBeUndefined();
  });

  it('weights outlive a TensorScope open on the queue', async () => {
    const scope = new TensorScope();
    q.scope = scope;
    const loaded = await loadWeights(w.dir, q);
    expect(q.scope).toBe(scope);
    q.scope = undefined;
    scope.dispose();
    for (const t of loaded.tensors.values()) expect(t.disposed).toBe(false);
    loaded.dispose();
  });
});
