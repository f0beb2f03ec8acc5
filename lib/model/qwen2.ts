// qwen2.ts — the Qwen2 / Qwen2.5 text decoder, written once as a sequence of ops (docs §2).
//
// Legend: n tokens in this forward, H hidden, nh / nkv query / key-value heads, hd head dim,
// I intermediate, V vocab rows, L layers, cap KV-cache capacity (positions).
//
// One entry point, `forward`, serves every pass the engine runs:
//   AR prefill        mask 'causal', pos0 = 0
//   AR decode step    mask 'causal', n = 1
//   diffusion prefill mask 'block' over the whole prompt blocks [0, Lpre) (docs §5.4)
//   block step        mask 'block' over one block [L, L + bs): bidirectional inside the block,
//                     the whole cache before it (docs §5.3: the mask is all zeros there)
//   commit            the same pass over the finished block; merged commit: 2·bs tokens, the
//                     finished block and the next block's first step (rows of the second block
//                     see the first; the block mask gives exactly that)
// Every pass writes its post-RoPE K/V at [pos0, pos0 + n) of the preallocated cache. Which of
// those positions count as committed is the caller's bookkeeping (the decoder advances its
// cache length only after a commit), so a denoising step's K/V are scratch that the next pass
// overwrites — no copy, no "store_kv" flag in the kernels.
//
// Positions are plain 1-D (docs §2.8): a DiffusionVL-Qwen2.5VL model's mRoPE with three equal
// position rows is exactly this RoPE.
import { ShapeError } from '../errors.js';
import { TensorScope, type OpSet, type Queue, type Tensor } from '../native/index.js';
import { eagerFromEnv, PlanCache, Recorder, type StepValues } from '../native/plan.js';
import type { TextConfig } from '../weights/config.js';
import type { LoadedWeights } from '../weights/load.js';

export type AttentionMask = 'causal' | 'block';

export interface ForwardArgs {
  /** Token ids at positions pos0..pos0+n-1 (i32). */
  ids: Int32Array;
  /** Image features f32 [F, H]: row featureRows[i] replaces the token embedding of row
   *  embedRows[i] of this forward (docs §3.6). */
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

/** One sequence's part of a batched forward (forwardBatch). */
export interface SeqPass extends ForwardArgs {
  /** Its KV-cache slot (0 .. slots − 1). */
  slot: number;
}

/** What decides a batched forward's plan: everything but the step's values. */
interface BatchShape {
  /** Rows per sequence, in order (their sum is the forward's rows). */
  n: number[];
  /** −1: logits for every row in order; 0: none; k: k gathered rows. */
  rows: number;
  /** Per sequence: rows of its bound image features and how many rows they replace (0, 0: none). */
  features: [number, number][];
}

export interface KvCacheOptions {
  /** Positions the cache holds per sequence (prompt + canvas); allocated once. */
  capacity: number;
  /**
   * Sequences that can decode at once, each in its own slot of `capacity` positions (default
   * 1). Host slots are reserved address space: a slot's memory is touched only once used.
   */
  slots?: number;
  /** Storage dtype of the cache (default f32). */
  dtype?: 'f32' | 'bf16' | 'f16';
}

export class Qwen2Text {
  readonly cfg: TextConfig;
  readonly embedTokens: Tensor;
  readonly lmHead: Tensor;
  readonly finalNorm: Tensor;
  private readonly layers: LayerWeights[];
  /** Per layer: K and V caches [slots, nkv, cap, hd]. */
  private kv: { k: Tensor; v: Tensor }[] = [];
  private cap = 0;
  private nslots = 0;
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
  get slots(): number { return this.nslots; }

  /** KV-cache bytes per position (all layers, K and V). */
  kvBytesPerPosition(dtype: 'f32' | 'bf16' | 'f16' = 'f32'): number {
    return this.cfg.numLayers * 2 * this.cfg.numKvHeads * this.cfg.headDim * (dtype === 'f32' ? 4 : 2);
  }

  /** (Re)allocates the KV cache: `slots` sequences of `capacity` positions; the old one is freed. */
  allocateCache(opts: KvCacheOptions): void {
    this.freeCache();
    const { numKvHeads: nkv, headDim: hd } = this.cfg;
    const dt = opts.dtype ?? 'f32';
    const slots = opts.slots ?? 1;
    if (!Number.isInteger(slots) || slots < 1) throw new ShapeError(`allocateCache: slots must be an integer ≥ 1, got ${slots}`);
    for (let l = 0; l < this.cfg.numLayers; l++) {
      this.kv.push({ k: this.q.empty(dt, [slots, nkv, opts.capacity, hd]), v: this.q.empty(dt, [slots, nkv, opts.capacity, hd]) });
    }
    this.cap = opts.capacity;
    this.nslots = slots;
  }

  freeCache(): void {
    this.plans.clear();
    for (const { k, v } of this.kv) { k.dispose(); v.dispose(); }
    this.kv = [];
    this.cap = 0;
    this.nslots = 0;
  }

  /**
   * Enqueues one forward pass of one sequence (slot 0); returns logits f32 [logitsRows.length, V]
   * or null. Nothing is awaited: read the logits (or sync) to wait. See forwardBatch.
   */
  forward(a: ForwardArgs): Tensor | null {
    return this.forwardBatch([{ ...a, slot: 0 }]);
  }

  /**
   * Enqueues one forward over the rows of several sequences, each against its own cache slot
   * and with its own positions and mask; returns logits f32 [Σ logitsRows, V], sequence after
   * sequence, or null when no sequence asks for any. Every row is computed exactly as in a
   * forward of its sequence alone (row-wise ops; attention per sequence), so batching never
   * changes a bit of anyone's logits. The first forward of each shape (row counts, logit rows,
   * image features) is recorded into a plan; it and every later one of that shape is one
   * replay call. A replay's logits are valid until the next forward of the same shape.
   */
  forwardBatch(passes: readonly SeqPass[]): Tensor | null {
    if (passes.length === 0) throw new ShapeError('forward: no sequences');
    const slotsUsed = new Set<number>();
    const ids: Int32Array[] = [], positions: number[] = [], rows: number[] = [], seqs: number[] = [];
    const step: StepValues = {};
    const shape: BatchShape = { n: [], rows: 0, features: [] };
    let T = 0;
    passes.forEach((a, b) => {
      const { n, pos0 } = a;
      const at = passes.length > 1 ? `forward (sequence ${b})` : 'forward';
      if (!Number.isInteger(n) || n < 1) throw new ShapeError(`${at}: n must be an integer ≥ 1, got ${n}`);
      if (!Number.isInteger(pos0) || pos0 < 0) throw new ShapeError(`${at}: pos0 must be an integer ≥ 0, got ${pos0}`);
      if (pos0 + n > this.cap) throw new ShapeError(`${at}: positions ${pos0}..${pos0 + n - 1} exceed the KV cache of ${this.cap} positions`);
      if (!Number.isInteger(a.slot) || a.slot < 0 || a.slot >= this.nslots) throw new ShapeError(`${at}: slot ${a.slot} outside 0..${this.nslots - 1}`);
      if (slotsUsed.has(a.slot)) throw new ShapeError(`${at}: slot ${a.slot} appears twice in one forward`);
      slotsUsed.add(a.slot);
      if (a.ids.length !== n) throw new ShapeError(`${at}: ${a.ids.length} ids for n = ${n}`);
      if (a.mask === 'block' && !(a.blockSize && a.blockSize >= 1)) throw new ShapeError(`${at}: the block mask needs blockSize`);
      for (const r of a.logitsRows ?? []) {
        if (!Number.isInteger(r) || r < 0 || r >= n) throw new ShapeError(`${at}: logits row ${r} outside 0..${n - 1}`);
        rows.push(T + r);
      }
      const spliced = a.features && a.embedRows && a.embedRows.length > 0;
      if (spliced) {
        if (a.featureRows?.length !== a.embedRows!.length) {
          throw new ShapeError(`${at}: ${a.featureRows?.length ?? 0} feature rows for ${a.embedRows!.length} embedding rows`);
        }
        step[`features${b}`] = a.features;
        step[`featureRows${b}`] = a.featureRows;
        step[`embedRows${b}`] = Int32Array.from(a.embedRows!, (r) => T + r);
      }
      shape.features.push(spliced ? [a.features!.shape![0], a.embedRows!.length] : [0, 0]);
      ids.push(a.ids);
      for (let i = 0; i < n; i++) positions.push(pos0 + i);
      seqs.push(T, T + n, a.slot, pos0, a.mask === 'causal' ? 0 : 1, a.mask === 'block' ? a.blockSize! : 0);
      shape.n.push(n);
      T += n;
    });
    const allRows = rows.length === T && rows.every((r, i) => r === i);
    shape.rows = allRows ? -1 : rows.length;
    const idsAll = new Int32Array(T);
    let off = 0;
    for (const x of ids) { idsAll.set(x, off); off += x.length; }
    Object.assign(step, {
      ids: idsAll, positions: Int32Array.from(positions), seqs,
      rows: shape.rows > 0 ? Int32Array.from(rows) : undefined,
    });
    if (this.eager) return this.build(this.q, shape, step);
    // The layout (rows per sequence, slots, positions, masks) is the seqs parameter: one plan
    // serves every batch of these totals.
    const key = `${T}:${passes.length}:${shape.rows}:${shape.features.map((f, b) => (f[1] ? `${b}=${f.join('x')}` : '')).join(',')}`;
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
   * The forward as ops (docs §2), on a Queue (eager) or a Recorder. Everything that changes
   * between two forwards of one shape comes from `step` through o.input / o.bind / o.param.
   */
  private build(o: OpSet, s: BatchShape, step: StepValues): Tensor | null {
    const { cfg } = this;
    const n = s.n.reduce((a, b) => a + b, 0);
    const nh = cfg.numHeads, nkv = cfg.numKvHeads, hd = cfg.headDim;
    const scope = new TensorScope();
    const prev = o.scope;
    o.scope = scope;
    let logits: Tensor | null = null;
    try {
      // Embeddings [n, H], with image-feature rows spliced in where asked.
      const h0 = o.embedding(o.input('ids', 'i32', [n], step.ids as Int32Array), this.embedTokens);
      s.features.forEach(([, e], b) => {
        if (e === 0) return;
        const feats = o.bind(`features${b}`, step[`features${b}`] as Tensor);
        const src = o.input(`featureRows${b}`, 'i32', [e], step[`featureRows${b}`] as Int32Array);
        o.scatterRows(h0, o.gatherRows(feats, src), o.input(`embedRows${b}`, 'i32', [e], step[`embedRows${b}`] as Int32Array));
      });
      let h = h0;
      // The batch layout (rows, slot, position, mask per sequence): one array parameter.
      const seqs = o.paramArray('seqs', step.seqs as number[]);
      const [cos, sin] = o.ropeCosSin(o.input('positions', 'i32', [n], step.positions as Int32Array), cfg.ropeTheta, hd);

      for (let l = 0; l < cfg.numLayers; l++) {
        const L = this.layers[l];
        const { k: kCache, v: vCache } = this.kv[l];
        // Attention block (docs §2.3-2.5).
        const x = o.rmsNorm(h, L.inputNorm, cfg.rmsNormEps);
        const qh = o.rope(o.reshape(o.matmul(x, L.qProj, L.qBias), [n, nh, hd]), cos, sin);
        const kh = o.rope(o.reshape(o.matmul(x, L.kProj, L.kBias), [n, nkv, hd]), cos, sin);
        const vh = o.reshape(o.matmul(x, L.vProj, L.vBias), [n, nkv, hd]);
        o.kvCacheAppendBatch(kCache, kh, seqs);
        o.kvCacheAppendBatch(vCache, vh, seqs);
        const att = o.attentionBatch(qh, kCache, vCache, seqs);
        h = o.add(h, o.matmul(o.reshape(att, [n, nh * hd]), L.oProj));
        // MLP (docs §2.6).
        const m = o.rmsNorm(h, L.postNorm, cfg.rmsNormEps);
        const act = o.swiglu(o.matmul(m, L.gateProj), o.matmul(m, L.upProj));
        h = o.add(h, o.matmul(act, L.downProj));
      }

      if (s.rows !== 0) {
        // Norm only the rows we score (RMSNorm is per row), then the lm_head (docs §2.7).
        const picked = s.rows < 0 ? h : o.gatherRows(h, o.input('rows', 'i32', [s.rows], step.rows as Int32Array));
        logits = o.matmul(o.rmsNorm(picked, this.finalNorm, cfg.rmsNormEps), this.lmHead);
      }
      return logits;
    } finally {
      o.scope = prev;
      scope.dispose(logits ? [logits] : []);
    }
  }

  dispose(): void {
    this.freeCache();
  }
}
