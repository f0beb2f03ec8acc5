// decoder.ts — what every text family shares (docs §2.10): the KV cache in slots, the batched
// forward with its recorded plans, the copies of a committed prefix, and the skeleton of the
// forward around the layers. A family (qwen2.ts, qwen3.ts) subclasses TextDecoder with its
// layer weights and its per-layer build, and describes itself as a TextFamily (its config
// fields and tensor list); families.ts maps config.json's model_type to it.
//
// Legend: n tokens in this forward, H hidden, nh / nkv query / key-value heads, hd head dim,
// V vocab rows, L layers, S cache slots, cap KV-cache capacity (positions).
//
// One entry point, `forwardBatch` (and `forward` for one sequence), serves every pass the
// engine runs:
//   AR prefill        mask 'causal', pos0 = 0
//   AR decode step    mask 'causal', n = 1
//   diffusion prefill mask 'block' over the whole prompt blocks [0, Lpre) (docs §5.4)
//   block step        mask 'block' over one block [L, L + bs): bidirectional inside the block,
//                     the whole cache before it (docs §5.3: the mask is all zeros there)
//   commit            the same pass over the finished block; merged commit: 2·bs tokens, the
//                     finished block and the next block's first step (rows of the second block
//                     see the first; the block mask gives exactly that)
// Every pass writes its post-RoPE K/V at [pos0, pos0 + n) of its slot of the preallocated cache.
// Which of those positions count as committed is the caller's bookkeeping (the decoder advances
// its cache length only after a commit), so a denoising step's K/V are scratch that the next
// pass overwrites — no copy, no "store_kv" flag in the kernels.
//
// The forward skeleton (build): token embeddings [n, H] with image-feature rows spliced in
// (docs §3.6), the batch layout as one array parameter, the RoPE table of the rows' positions
// (plain 1-D, docs §2.8), then each layer as the family writes it (`layer`, which reaches the
// cache through `attend`), then the final RMSNorm and the lm_head on the rows asked for (§2.7).
import { ConfigError, ShapeError } from '../errors.js';
import { tensorFromArray, TensorScope, type NumArray, type OpSet, type Queue, type RemaskGroup, type RemaskResult, type Tensor } from '../native/index.js';
import { eagerFromEnv, PlanCache, Recorder, type RecordedPlan, type StepValues } from '../native/plan.js';
import type { TextConfig } from '../weights/config.js';
import type { Fields } from '../weights/fields.js';
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

/** One sequence's part of a batched forward (forwardBatch). */
export interface SeqPass extends ForwardArgs {
  /** Its KV-cache slot (0 .. slots − 1). */
  slot: number;
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

/** What decides a batched forward's plan: everything but the step's values. */
interface BatchShape {
  /** Rows per sequence, in order (their sum is the forward's rows). */
  n: number[];
  /** −1: logits for every row in order; 0: none; k: k gathered rows. */
  rows: number;
  /** Per sequence: rows of its bound image features and how many rows they replace (0, 0: none). */
  features: [number, number][];
}

/** What a family's layer build gets besides the hidden rows: the forward's shared tensors. */
export interface LayerContext {
  /** Rows of this forward (all sequences). */
  n: number;
  /** RoPE table f32 [n, hd] of the rows' positions (rotate-half layout, docs §2.4). */
  cos: Tensor;
  sin: Tensor;
  /** The batch layout (6 numbers per sequence, see OpSet.attentionBatch). */
  seqs: NumArray;
  /**
   * The last layer only: which rows go on past the K/V append. Absent: every row; a tensor of
   * row indices: those rows (their queries gathered for attention on a CPU queue, its output
   * after it elsewhere: `attend`; the layer returns [keep rows, H]); null: none (the layer
   * stores K/V and returns null). No later op reads the other rows' output, and
   * every op is row-wise (a row's bits do not depend on the rows beside it), so the rows kept
   * are the bits of the full layer's.
   */
  keep?: Tensor | null;
}

/**
 * A text family: its config.json fields, its tensors and its decoder. Registered by model_type
 * in families.ts; lib/weights asks it for the text config (readConfig) and the text tensors
 * (expectedTensors), the model for the decoder.
 */
export interface TextFamily<C extends TextConfig = TextConfig> {
  /** 'qwen2', 'qwen3'. */
  readonly name: string;
  /**
   * The text fields of config.json. `tf` searches text_config first, then the top level;
   * `tie` is where tie_word_embeddings is read (the top level first for stock Qwen2.5-VL).
   */
  readText(tf: Fields, tie: Fields, file: string): C;
  /** Canonical name → shape of every text tensor (the table of docs §1.4 for Qwen2). */
  tensors(cfg: C): Map<string, number[]>;
  /** The decoder over loaded weights. */
  create(q: Queue, weights: LoadedWeights, cfg: C, opts?: TextDecoderOptions): TextDecoder;
}

export interface TextDecoderOptions {
  /**
   * The q, k and v projections as one product over weights concatenated at load, its output
   * split (with RoPE) by one qkv_rope_split (default true on CPU queues; a family without the
   * fusion ignores it). The three weights are replaced by the fused one in the loaded weights,
   * so a second decoder over them sees only that. Same bits either way: a product's output
   * column depends on its own weight row alone, the split has rope's arithmetic.
   */
  fuseQkv?: boolean;
}

/**
 * The text fields every family here reads alike (docs §1.2), with the HF config classes'
 * defaults. `headDim`: the default head dim when config.json has none (Qwen2: H / nh, which
 * must then divide; Qwen3's config class: 128).
 */
export function readDecoderText(tf: Fields, tieFields: Fields, file: string, opts: { headDim?: number } = {}): TextConfig {
  const hiddenSize = tf.int('hidden_size');
  const numHeads = tf.int('num_attention_heads');
  const numKvHeads = tf.int('num_key_value_heads', numHeads);
  const prefix = (name: string) => (tf.sources.find((s) => Object.hasOwn(s.obj, name))?.prefix ?? '') + name;
  if (numHeads % numKvHeads !== 0) {
    throw new ConfigError(`${file}: num_attention_heads ${numHeads} is not a multiple of num_key_value_heads ${numKvHeads}`, { file, field: prefix('num_key_value_heads') });
  }
  if (opts.headDim === undefined && !tf.has('head_dim') && hiddenSize % numHeads !== 0) {
    throw new ConfigError(`${file}: hidden_size ${hiddenSize} is not a multiple of num_attention_heads ${numHeads} and no head_dim is given`, { file, field: prefix('num_attention_heads') });
  }
  return {
    hiddenSize,
    numLayers: tf.int('num_hidden_layers'),
    numHeads,
    numKvHeads,
    headDim: tf.int('head_dim', opts.headDim ?? hiddenSize / numHeads),
    intermediateSize: tf.int('intermediate_size'),
    vocabSize: tf.int('vocab_size'),
    ropeTheta: tf.num('rope_theta', 10000),
    rmsNormEps: tf.num('rms_norm_eps', 1e-6),
    tieWordEmbeddings: tieFields.bool('tie_word_embeddings', false),
    maxPositionEmbeddings: tf.int('max_position_embeddings', 32768),
  };
}

/**
 * The tensor list of a decoder: embed_tokens, the layers (each family names its own: `layer`
 * gets the prefix `model.layers.{i}.` and the map), the final norm, lm_head unless tied.
 */
export function decoderTensors(t: TextConfig, layer: (prefix: string, m: Map<string, number[]>) => void): Map<string, number[]> {
  const m = new Map<string, number[]>();
  m.set('model.embed_tokens.weight', [t.vocabSize, t.hiddenSize]);
  for (let i = 0; i < t.numLayers; i++) layer(`model.layers.${i}.`, m);
  m.set('model.norm.weight', [t.hiddenSize]);
  if (!t.tieWordEmbeddings) m.set('lm_head.weight', [t.vocabSize, t.hiddenSize]);
  return m;
}

export abstract class TextDecoder {
  readonly cfg: TextConfig;
  readonly embedTokens: Tensor;
  readonly lmHead: Tensor;
  readonly finalNorm: Tensor;
  /** Per layer: K and V caches [slots, nkv, cap, hd]. */
  private kv: { k: Tensor; v: Tensor }[] = [];
  private cap = 0;
  /**
   * The RoPE table f32 [len, hd] of positions [0, len) (rope_cos_sin's rows), grown as forwards
   * reach further (ropeTable): a forward gathers its rows' cos/sin instead of calling libm's
   * cos and sin for each (position, frequency) again — the same bits, since a row of
   * rope_cos_sin depends on its position only.
   */
  private rope: { cos: Tensor; sin: Tensor; len: number } | null = null;
  private nslots = 0;
  /** Recorded forwards by shape signature; they point at the KV cache, so they go with it. */
  plans = new PlanCache(96);
  /** Run op by op instead of through plans (DIFFUSIONVL_EAGER=1, or set by tests). */
  eager = eagerFromEnv();

  /** Loads the shared tensors (embedding, final norm, lm_head or the tied embedding); the family loads its layers. */
  constructor(protected readonly q: Queue, weights: LoadedWeights, cfg: TextConfig) {
    this.cfg = cfg;
    this.embedTokens = weights.get('model.embed_tokens.weight');
    this.lmHead = cfg.tieWordEmbeddings ? this.embedTokens : weights.get('lm_head.weight');
    this.finalNorm = weights.get('model.norm.weight');
  }

  /**
   * One layer of the forward as ops: hidden rows f32 [n, H] in, f32 [n, H] out. Its attention
   * goes through `storeKv` and `attend` (the KV cache of layer `l`); on the last layer it
   * honours `a.keep` (rows kept past attention, through `keep`; null: K/V only, returns null).
   */
  protected abstract layer(o: OpSet, l: number, h: Tensor, a: LayerContext): Tensor | null;

  /**
   * Writes the rows' post-RoPE K and V (f32 [n, nkv, hd]) of layer `l` into each sequence's
   * slot of the cache at its positions.
   */
  protected storeKv(o: OpSet, l: number, k: Tensor, v: Tensor, a: LayerContext): void {
    const { k: kCache, v: vCache } = this.kv[l];
    o.kvCacheAppendBatch(kCache, k, a.seqs);
    o.kvCacheAppendBatch(vCache, v, a.seqs);
  }

  /**
   * A fused q|k|v product's rows [n, (nh + 2·nkv)·hd] → q [n, nh, hd] with RoPE, K (with RoPE)
   * and V stored into layer `l`'s cache as storeKv stores them: one op (CPU queues).
   */
  protected splitStoreQkv(o: OpSet, l: number, qkv: Tensor, a: LayerContext): Tensor {
    const { k: kCache, v: vCache } = this.kv[l];
    return o.qkvRopeSplitStore(qkv, a.cos, a.sin, this.cfg.numHeads, this.cfg.numKvHeads, kCache, vCache, a.seqs);
  }

  /**
   * Layer `l`'s attention after storeKv: q f32 [n, nh, hd] attends to every visible key of its
   * sequence's slot (mask per sequence); returns f32 [m, nh·hd] for the rows the layer keeps
   * (a.keep: m of them; else all n). On a CPU queue only the kept rows attend (their queries
   * gathered; attention_batch's rows input places them); the CUDA plugin takes no such input,
   * so there every row attends and the kept ones are gathered after.
   */
  protected attend(o: OpSet, l: number, q: Tensor, a: LayerContext): Tensor {
    const { k: kCache, v: vCache } = this.kv[l];
    const [n, nh, hd] = q.shape!;
    if (a.keep && this.q.device === 'cpu') {
      const m = a.keep.shape![0];
      const qk = o.reshape(o.gatherRows(o.reshape(q, [n, nh * hd]), a.keep), [m, nh, hd]);
      return o.reshape(o.attentionBatch(qk, kCache, vCache, a.seqs, undefined, a.keep), [m, nh * hd]);
    }
    return this.keep(o, o.reshape(o.attentionBatch(q, kCache, vCache, a.seqs), [n, nh * hd]), a);
  }

  /** Rows `a.keep` of t [n, …] on the last layer (all of t elsewhere). */
  protected keep(o: OpSet, t: Tensor, a: LayerContext): Tensor {
    return a.keep ? o.gatherRows(t, a.keep) : t;
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
    this.freeRope();
    for (const { k, v } of this.kv) { k.dispose(); v.dispose(); }
    this.kv = [];
    this.cap = 0;
    this.nslots = 0;
  }

  /**
   * Makes the RoPE table cover positions [0, end): rebuilt at twice its length (at least 1024
   * positions, at most the cache capacity). The plans bind the table, so they go with the old one.
   */
  private ropeTable(end: number): { cos: Tensor; sin: Tensor } {
    if (this.rope && this.rope.len >= end) return this.rope;
    if (end > this.cap) throw new ShapeError(`RoPE table: position ${end - 1} is beyond the KV cache of ${this.cap} positions`);
    const len = Math.min(this.cap, Math.max(end, 1024, 2 * (this.rope?.len ?? 0)));
    this.plans.clear();
    this.freeRope();
    const pos = tensorFromArray('i32', [len], Int32Array.from({ length: len }, (_, i) => i));
    try {
      const [cos, sin] = this.q.ropeCosSin(pos, this.cfg.ropeTheta, this.cfg.headDim);
      this.rope = { cos, sin, len };
    } finally {
      pos.dispose();
    }
    return this.rope;
  }

  private freeRope(): void {
    this.rope?.cos.dispose();
    this.rope?.sin.dispose();
    this.rope = null;
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
   * sequence (with several sequences, possibly followed by a few padding rows to ignore), or
   * null when no sequence asks for any. Every row is computed exactly as in a
   * forward of its sequence alone (row-wise ops; attention per sequence), so batching never
   * changes a bit of anyone's logits. The second forward of each shape (row counts, logit rows,
   * image features) is recorded into a plan (the first runs op by op: PlanCache recordAt); it
   * and every later one of that shape is one replay call. A replay's logits are valid until the next forward of the same shape.
   */
  forwardBatch(passes: readonly SeqPass[]): Tensor | null {
    const f = this.prepareBatch(passes);
    if (this.eager) return this.build(this.q, f.shape, f.step, f.rope);
    const plan = this.planFor(f);
    if (!plan) return this.build(this.q, f.shape, f.step, f.rope);
    return plan.run(this.q, f.step)[0] ?? null;
  }

  /**
   * forwardBatch and the remask of its logits (Queue.remaskRead's groups) read back together:
   * with a plan, one native call (the logits stay native); else the forward op by op, then the
   * remaskRead. Resolves with each group's ids, confidences and reveal flags.
   */
  forwardBatchRead(passes: readonly SeqPass[], groups: readonly RemaskGroup[]): Promise<RemaskResult[]> {
    // Not async: a bad pass throws here, before anything is queued, as forwardBatch's does.
    const f = this.prepareBatch(passes);
    const plan = this.eager ? null : this.planFor(f);
    if (plan) return plan.runRemaskRead(this.q, f.step, groups);
    const logits = this.build(this.q, f.shape, f.step, f.rope);
    if (!logits) throw new ShapeError('forward: the remask needs logit rows');
    return this.q.remaskRead(logits, groups).finally(() => logits.dispose());
  }

  /** The plan of this batch's shape (recorded at its second sight), or null: run it op by op. */
  private planFor(f: PreparedBatch): RecordedPlan | null {
    // The layout (rows per sequence, slots, positions, masks) is the seqs parameter: one plan
    // serves every batch of these totals.
    const { shape } = f;
    const key = `${f.T}:${shape.n.length}:${shape.rows}:${shape.features.map((x, b) => (x[1] ? `${b}=${x.join('x')}` : '')).join(',')}`;
    return this.plans.get(key, () => {
      const rec = new Recorder(this.q);
      const out = this.build(rec, shape, f.step, f.rope);
      try {
        return rec.finish(out ? [out] : []);
      } finally {
        out?.dispose();
      }
    });
  }

  /** A batch's checked layout: its shape (what a plan is keyed by) and its per-step values. */
  private prepareBatch(passes: readonly SeqPass[]): PreparedBatch {
    if (passes.length === 0) throw new ShapeError('forward: no sequences');
    const slotsUsed = new Set<number>();
    const ids: Int32Array[] = [], positions: number[] = [], rows: number[] = [], seqs: number[] = [];
    const step: StepValues = {};
    const shape: BatchShape = { n: [], rows: 0, features: [] };
    let T = 0, end = 0;   // end: one past the furthest position of the forward
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
      end = Math.max(end, pos0 + n);
    });
    const rope = this.ropeTable(end);
    const allRows = rows.length === T && rows.every((r, i) => r === i);
    // Batched forwards: the logit row count is padded (repeating the last row) to a bucket, so
    // the mix of requests does not make a new plan for every count; callers read their rows by
    // offset and never see the extras.
    if (passes.length > 1 && !allRows && rows.length > 0) {
      for (let want = rowBucket(rows.length), last = rows[rows.length - 1]; rows.length < want;) rows.push(last);
    }
    shape.rows = allRows ? -1 : rows.length;
    const idsAll = new Int32Array(T);
    let off = 0;
    for (const x of ids) { idsAll.set(x, off); off += x.length; }
    Object.assign(step, {
      ids: idsAll, positions: Int32Array.from(positions), seqs,
      rows: shape.rows > 0 ? Int32Array.from(rows) : undefined,
    });
    return { T, shape, step, rope };
  }

  /**
   * The forward as ops (docs §2), on a Queue (eager) or a Recorder. Everything that changes
   * between two forwards of one shape comes from `step` through o.input / o.bind / o.param.
   */
  private build(o: OpSet, s: BatchShape, step: StepValues, rope: { cos: Tensor; sin: Tensor }): Tensor | null {
    const { cfg } = this;
    const n = s.n.reduce((a, b) => a + b, 0);
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
      // The RoPE table's rows at the rows' positions (docs §2.4).
      const positions = o.input('positions', 'i32', [n], step.positions as Int32Array);
      const cos = o.gatherRows(rope.cos, positions), sin = o.gatherRows(rope.sin, positions);
      const a: LayerContext = { n, cos, sin, seqs };
      for (let l = 0; l < cfg.numLayers; l++) {
        // The last layer carries on past the K/V append only with the rows we score: a
        // prefill or a commit stores K/V and stops; a step's unmasked rows and the merged
        // commit's rows skip o_proj and the MLP.
        if (l === cfg.numLayers - 1 && s.rows >= 0) {
          a.keep = s.rows === 0 ? null : o.input('rows', 'i32', [s.rows], step.rows as Int32Array);
        }
        const out = this.layer(o, l, h, a);
        if (!out) return null;
        h = out;
      }
      // h holds the rows we score: the final norm (per row) and the lm_head (docs §2.7).
      logits = o.matmul(o.rmsNorm(h, this.finalNorm, cfg.rmsNormEps), this.lmHead);
      return logits;
    } finally {
      o.scope = prev;
      scope.dispose(logits ? [logits] : []);
    }
  }

  // ---- copies of the committed prefix (chat sessions, prefix cache: lib/model/kv-reuse.ts) ----

  /**
   * Copies the K/V of positions [0, length) of `slot` out of the cache (queued like any op):
   * per layer k, v f32 [length, nkv, hd], the row layout kv_cache_append_batch takes back
   * (restoreCache).
   */
  saveCache(length: number, slot = 0): { k: Tensor; v: Tensor }[] {
    const { numKvHeads: nkv, headDim: hd } = this.cfg;
    if (!Number.isInteger(length) || length < 1 || length > this.cap) {
      throw new ShapeError(`saveCache: length ${length} outside 1..${this.cap}`);
    }
    if (!Number.isInteger(slot) || slot < 0 || slot >= this.nslots) throw new ShapeError(`saveCache: slot ${slot} outside 0..${this.nslots - 1}`);
    // Row (p, h) of the copy is row (slot·nkv + h)·cap + p of the cache seen as [S·nkv·cap, hd].
    const rows = new Int32Array(length * nkv);
    for (let p = 0; p < length; p++) for (let h = 0; h < nkv; h++) rows[p * nkv + h] = (slot * nkv + h) * this.cap + p;
    const scope = new TensorScope();
    const out: { k: Tensor; v: Tensor }[] = [];
    try {
      const idx = scope.track(tensorFromArray('i32', [rows.length], rows));
      const copy = (c: Tensor) => {
        const flat = scope.track(this.q.reshape(c, [this.nslots * nkv * this.cap, hd]));
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

  /** Writes a saveCache copy back into `slot` at positions [0, its length). */
  restoreCache(saved: readonly { k: Tensor; v: Tensor }[], slot = 0): void {
    if (saved.length !== this.kv.length) throw new ShapeError(`restoreCache: ${saved.length} layers saved, the model has ${this.kv.length}`);
    this.kv.forEach(({ k, v }, l) => {
      // One sequence: rows [0, n) to `slot` from position 0 (the mask fields are unused by the append).
      const seqs = [0, saved[l].k.shape![0], slot, 0, 0, 0];
      this.q.kvCacheAppendBatch(k, saved[l].k, seqs);
      this.q.kvCacheAppendBatch(v, saved[l].v, seqs);
    });
  }

  dispose(): void {
    this.freeCache();
  }
}

/** forwardBatch's checked batch (TextDecoder.prepareBatch). */
interface PreparedBatch {
  T: number;
  shape: BatchShape;
  step: StepValues;
  rope: { cos: Tensor; sin: Tensor };
}

/** Logit rows of a batched forward, rounded up: exact to 4, then to a multiple of 4 (to 32), 8 (to 64), 16. */
export function rowBucket(n: number): number {
  const step = n <= 4 ? 1 : n <= 32 ? 4 : n <= 64 ? 8 : 16;
  return Math.ceil(n / step) * step;
}
