// qwen2.ts — the Qwen2 / Qwen2.5 text decoder, written once as a sequence of ops (spec §2).
//
// Legend: n tokens in this forward, H hidden, nh / nkv query / key-value heads, hd head dim,
// I intermediate, V vocab rows, L layers, cap KV-cache capacity (positions).
//
// One entry point, `forward`, serves every pass the engine runs:
//   AR prefill        mask 'causal', pos0 = 0
//   AR decode step    mask 'causal', n = 1
//   diffusion prefill mask 'block' over the whole prompt blocks [0, Lpre) (spec §5.4)
//   block step        mask 'block' over one block [L, L + bs): bidirectional inside the block,
//                     the whole cache before it (spec §5.3: the mask is all zeros there)
//   commit            the same pass over the finished block; merged commit: 2·bs tokens, the
//                     finished block and the next block's first step (rows of the second block
//                     see the first; the block mask gives exactly that)
// Every pass writes its post-RoPE K/V at [pos0, pos0 + n) of the preallocated cache. Which of
// those positions count as committed is the caller's bookkeeping (the decoder advances its
// cache length only after a commit), so a denoising step's K/V are scratch that the next pass
// overwrites — no copy, no "store_kv" flag in the kernels.
//
// Positions are plain 1-D (spec §2.8): a DiffusionVL-Qwen2.5VL model's mRoPE with three equal
// position rows is exactly this RoPE.
import { ShapeError } from '../errors.js';
import { plus, tensorFromArray, TensorScope, type OpSet, type Queue, type Tensor } from '../native/index.js';
import { eagerFromEnv, PlanCache, Recorder, type StepValues } from '../native/plan.js';
import type { TextConfig } from '../weights/config.js';
import type { LoadedWeights } from '../weights/load.js';

export type AttentionMask = 'causal' | 'block';

export interface ForwardArgs {
  /** Token ids at positions pos0..pos0+n-1 (i32). */
  ids: Int32Array;
  /** Image features f32 [F, H]: row featureRows[i] replaces the token embedding of row
   *  embedRows[i] of this forward (spec §3.6). */
  features?: Tensor;
  featureRows?: Int32Array;
  embedRows?: Int32Array;
  /** Absolute position of the first token; keys [0, pos0) come from the cache. */
  pos0: number;
  n: number;
  mask: AttentionMask;
  /** Block size for the 'block' mask. */
  blockSize?: number;
  /** Rows (0..n-1) whose logits to compute; empty or absent: no lm_head at all. */
  logitsRows?: readonly number[];
}

interface LayerWeights {
  inputNorm: Tensor;
  qProj: Tensor; qBias: Tensor; kProj: Tensor; kBias: Tensor; vProj: Tensor; vBias: Tensor;
  oProj: Tensor;
  postNorm: Tensor;
  gateProj: Tensor; upProj: Tensor; downProj: Tensor;
}

/** What decides a forward's plan: everything but the step's values. */
interface ForwardShape {
  n: number;
  mask: AttentionMask;
  blockSize: number;
  /** −1: logits for every row in order; 0: none; k: k gathered rows. */
  rows: number;
  /** Rows of the bound image features (0: none) and how many rows they replace. */
  features: number;
  embedRows: number;
}

export interface KvCacheOptions {
  /** Positions the cache holds (prompt + canvas); allocated once. */
  capacity: number;
  /** Storage dtype of the cache (default f32). */
  dtype?: 'f32' | 'bf16' | 'f16';
}

export class Qwen2Text {
  readonly cfg: TextConfig;
  readonly embedTokens: Tensor;
  readonly lmHead: Tensor;
  readonly finalNorm: Tensor;
  private readonly layers: LayerWeights[];
  /** Per layer: K and V caches [nkv, cap, hd]. */
  private kv: { k: Tensor; v: Tensor }[] = [];
  private cap = 0;
  /** Recorded forwards by shape signature; they point at the KV cache, so they go with it. */
  plans = new PlanCache();
  /** Run op by op instead of through plans (DIFFUSIONVL_EAGER=1, or set by tests). */
  eager = eagerFromEnv();

  constructor(private readonly q: Queue, weights: LoadedWeights, cfg: TextConfig) {
    this.cfg = cfg;
    const w = (n: string) => weights.get(n);
    this.embedTokens = w('model.embed_tokens.weight');
    this.lmHead = cfg.tieWordEmbeddings ? this.embedTokens : w('lm_head.weight');
    this.finalNorm = w('model.norm.weight');
    this.layers = [];
    for (let i = 0; i < cfg.numLayers; i++) {
      const p = `model.layers.${i}.`;
      this.layers.push({
        inputNorm: w(p + 'input_layernorm.weight'),
        qProj: w(p + 'self_attn.q_proj.weight'), qBias: w(p + 'self_attn.q_proj.bias'),
        kProj: w(p + 'self_attn.k_proj.weight'), kBias: w(p + 'self_attn.k_proj.bias'),
        vProj: w(p + 'self_attn.v_proj.weight'), vBias: w(p + 'self_attn.v_proj.bias'),
        oProj: w(p + 'self_attn.o_proj.weight'),
        postNorm: w(p + 'post_attention_layernorm.weight'),
        gateProj: w(p + 'mlp.gate_proj.weight'), upProj: w(p + 'mlp.up_proj.weight'), downProj: w(p + 'mlp.down_proj.weight'),
      });
    }
  }

  get capacity(): number { return this.cap; }

  /** KV-cache bytes per position (all layers, K and V). */
  kvBytesPerPosition(dtype: 'f32' | 'bf16' | 'f16' = 'f32'): number {
    return this.cfg.numLayers * 2 * this.cfg.numKvHeads * this.cfg.headDim * (dtype === 'f32' ? 4 : 2);
  }

  /** (Re)allocates the KV cache for `capacity` positions; the old one is freed. */
  allocateCache(opts: KvCacheOptions): void {
    this.freeCache();
    const { numKvHeads: nkv, headDim: hd } = this.cfg;
    const dt = opts.dtype ?? 'f32';
    for (let l = 0; l < this.cfg.numLayers; l++) {
      this.kv.push({ k: this.q.empty(dt, [nkv, opts.capacity, hd]), v: this.q.empty(dt, [nkv, opts.capacity, hd]) });
    }
    this.cap = opts.capacity;
  }

  freeCache(): void {
    this.plans.clear();
    for (const { k, v } of this.kv) { k.dispose(); v.dispose(); }
    this.kv = [];
    this.cap = 0;
  }

  /**
   * Enqueues one forward pass; returns logits f32 [logitsRows.length, V] or null. Nothing is
   * awaited: read the logits (or sync) to wait. The first forward of each shape signature is
   * recorded into a plan; it and every later one of that shape is one replay call. The logits
   * of a replay are valid until the next forward of the same shape (read them first).
   */
  forward(a: ForwardArgs): Tensor | null {
    const { n, pos0 } = a;
    if (!Number.isInteger(n) || n < 1) throw new ShapeError(`forward: n must be an integer ≥ 1, got ${n}`);
    if (!Number.isInteger(pos0) || pos0 < 0) throw new ShapeError(`forward: pos0 must be an integer ≥ 0, got ${pos0}`);
    if (pos0 + n > this.cap) {
      throw new ShapeError(`forward: positions ${pos0}..${pos0 + n - 1} exceed the KV cache of ${this.cap} positions`);
    }
    if (a.ids.length !== n) throw new ShapeError(`forward: ${a.ids.length} ids for n = ${n}`);
    if (a.mask === 'block' && !(a.blockSize && a.blockSize >= 1)) throw new ShapeError('forward: the block mask needs blockSize');
    const rows = a.logitsRows ?? [];
    for (const r of rows) {
      if (!Number.isInteger(r) || r < 0 || r >= n) throw new ShapeError(`forward: logits row ${r} outside 0..${n - 1}`);
    }
    const spliced = a.features && a.embedRows && a.embedRows.length > 0;
    if (spliced && a.featureRows?.length !== a.embedRows!.length) {
      throw new ShapeError(`forward: ${a.featureRows?.length ?? 0} feature rows for ${a.embedRows!.length} embedding rows`);
    }
    const allRows = rows.length === n && rows.every((r, i) => r === i);
    const step: StepValues = {
      ids: a.ids,
      positions: Int32Array.from({ length: n }, (_, i) => pos0 + i),
      pos0,
      rows: allRows || rows.length === 0 ? undefined : Int32Array.from(rows),
      features: spliced ? a.features : undefined,
      featureRows: spliced ? a.featureRows : undefined,
      embedRows: spliced ? a.embedRows : undefined,
    };
    const shape: ForwardShape = {
      n, mask: a.mask, blockSize: a.blockSize ?? 0, rows: allRows ? -1 : rows.length,
      features: spliced ? a.features!.shape![0] : 0, embedRows: spliced ? a.embedRows!.length : 0,
    };
    if (this.eager) return this.build(this.q, shape, step);
    const key = `${shape.mask}:${n}:${shape.blockSize}:${shape.rows}:${shape.features}:${shape.embedRows}`;
    const plan = this.plans.get(key, () => {
      const rec = new Recorder(this.q);
      const out = this.build(rec, shape, step);
      try {
        return rec.finish(out ? [out] : []);
      } finally {
        out?.dispose();
      }
    });
    return plan.run(this.q, step)[0] ?? null;
  }

  /**
   * The forward as ops (spec §2), on a Queue (eager) or a Recorder. Everything that changes
   * between two forwards of one shape comes from `step` through o.input / o.bind / o.param.
   */
  private build(o: OpSet, s: ForwardShape, step: StepValues): Tensor | null {
    const { cfg } = this;
    const { n } = s;
    const nh = cfg.numHeads, nkv = cfg.numKvHeads, hd = cfg.headDim;
    const scope = new TensorScope();
    const prev = o.scope;
    o.scope = scope;
    let logits: Tensor | null = null;
    try {
      // Embeddings [n, H], with image-feature rows spliced in where asked.
      const h0 = o.embedding(o.input('ids', 'i32', [n], step.ids as Int32Array), this.embedTokens);
      if (s.embedRows > 0) {
        const feats = o.bind('features', step.features as Tensor);
        const src = o.input('featureRows', 'i32', [s.embedRows], step.featureRows as Int32Array);
        o.scatterRows(h0, o.gatherRows(feats, src), o.input('embedRows', 'i32', [s.embedRows], step.embedRows as Int32Array));
      }
      let h = h0;
      const pos0 = o.param('pos0', step.pos0 as number);
      const [cos, sin] = o.ropeCosSin(o.input('positions', 'i32', [n], step.positions as Int32Array), cfg.ropeTheta, hd);
      const kvLen = plus(pos0, n);

      for (let l = 0; l < cfg.numLayers; l++) {
        const L = this.layers[l];
        const { k: kCache, v: vCache } = this.kv[l];
        // Attention block (spec §2.3-2.5).
        const x = o.rmsNorm(h, L.inputNorm, cfg.rmsNormEps);
        const qh = o.rope(o.reshape(o.matmul(x, L.qProj, L.qBias), [n, nh, hd]), cos, sin);
        const kh = o.rope(o.reshape(o.matmul(x, L.kProj, L.kBias), [n, nkv, hd]), cos, sin);
        const vh = o.reshape(o.matmul(x, L.vProj, L.vBias), [n, nkv, hd]);
        o.kvCacheAppend(kCache, kh, pos0);
        o.kvCacheAppend(vCache, vh, pos0);
        const att = o.attention(qh, kCache, vCache, { kvLen, qPos0: pos0, mask: s.mask, blockSize: s.blockSize || undefined });
        h = o.add(h, o.matmul(o.reshape(att, [n, nh * hd]), L.oProj));
        // MLP (spec §2.6).
        const m = o.rmsNorm(h, L.postNorm, cfg.rmsNormEps);
        const act = o.swiglu(o.matmul(m, L.gateProj), o.matmul(m, L.upProj));
        h = o.add(h, o.matmul(act, L.downProj));
      }

      if (s.rows !== 0) {
        // Norm only the rows we score (RMSNorm is per row), then the lm_head (spec §2.7).
        const picked = s.rows < 0 ? h : o.gatherRows(h, o.input('rows', 'i32', [s.rows], step.rows as Int32Array));
        logits = o.matmul(o.rmsNorm(picked, this.finalNorm, cfg.rmsNormEps), this.lmHead);
      }
      return logits;
    } finally {
      o.scope = prev;
      scope.dispose(logits ? [logits] : []);
    }
  }

  // ---- copies of the committed prefix (chat sessions, prefix cache: lib/model/kv-reuse.ts) ----

  /**
   * Copies the K/V of positions [0, length) out of the cache (queued like any op): per layer
   * k, v f32 [length, nkv, hd], the layout kv_cache_append takes back (restoreCache).
   */
  saveCache(length: number): { k: Tensor; v: Tensor }[] {
    const { numKvHeads: nkv, headDim: hd } = this.cfg;
    if (!Number.isInteger(length) || length < 1 || length > this.cap) {
      throw new ShapeError(`saveCache: length ${length} outside 1..${this.cap}`);
    }
    // Row (p, h) of the copy is row h·cap + p of the cache seen as [nkv·cap, hd].
    const rows = new Int32Array(length * nkv);
    for (let p = 0; p < length; p++) for (let h = 0; h < nkv; h++) rows[p * nkv + h] = h * this.cap + p;
    const scope = new TensorScope();
    const out: { k: Tensor; v: Tensor }[] = [];
    try {
      const idx = scope.track(tensorFromArray('i32', [rows.length], rows));
      const copy = (c: Tensor) => {
        const flat = scope.track(this.q.reshape(c, [nkv * this.cap, hd]));
        const g = scope.track(this.q.gatherRows(flat, idx));
        return this.q.reshape(g, [length, nkv, hd]);
      };
      for (const { k, v } of this.kv) out.push({ k: copy(k), v: copy(v) });
      return out;
    } catch (e) {
      for (const t of out) { t.k.dispose(); t.v.dispose(); }
      throw e;
    } finally {
      scope.dispose();
    }
  }

  /** Writes a saveCache copy back at positions [0, its length). */
  restoreCache(saved: readonly { k: Tensor; v: Tensor }[]): void {
    if (saved.length !== this.kv.length) throw new ShapeError(`restoreCache: ${saved.length} layers saved, the model has ${this.kv.length}`);
    this.kv.forEach(({ k, v }, l) => {
      this.q.kvCacheAppend(k, saved[l].k, 0);
      this.q.kvCacheAppend(v, saved[l].v, 0);
    });
  }

  dispose(): void {
    this.freeCache();
  }
}
