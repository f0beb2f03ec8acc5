// scheduler.ts — continuous batching: the steps of every sequence in flight go through one
// batched forward (TextDecoder.forwardBatch, lib/model/decoder.ts), re-formed at every forward.
//
// A sequence is a KV-cache slot held from open() to close(). Its decode loop (lib/decode/runner)
// submits one step at a time — a prefill, a denoising iteration (with the remask of its masked
// rows), a commit, an AR token — and awaits its result. The scheduler runs a forward as soon as
// every open sequence has a step waiting, or on the next turn of the event loop otherwise, so a
// lone request never waits and a slow consumer never holds the others back. Each forward takes:
//   0. when newcomers are waiting for their first block (StepSpec.first): only their steps, so
//      time to first block stays close to an idle model's — and while a newcomer's runner is
//      between two of those steps (reading the last result), the others' forward waits for
//      its next step, HOLD_MS at most, instead of starting a forward it would queue behind;
//   1. the waiting decode steps, oldest first (a block step of 8 or 16 rows, an AR step of 1),
//   2. then prefill chunks in the rows left under maxRows (block-aligned for the block mask,
//      so every chunk is exactly a prefill of whole blocks); a long prompt is prefilled over
//      several forwards while the others keep decoding;
// at most maxBatch sequences. Each sequence's logit rows are remasked by their own op on a view
// of the forward's logits, with that sequence's options; one read brings every result back.
//
// Exactness: every row of a batched forward is computed as in a forward of its sequence alone
// (row-wise ops, attention per sequence on its slot: TextDecoder.forwardBatch), a prefill split
// at block boundaries gives the same K/V as one pass, and the remask is per sequence — so at
// temperature 0 a request's ids equal its unbatched run, whatever else shares its forwards.
// Isolation: a forward that fails is retried sequence by sequence, so only the sequence whose
// step fails gets the error.
import { AbortError, OptionError } from '../errors.js';
import type { ConfidenceRemaskOptions, Queue, RemaskGroup, RemaskResult, Tensor } from '../native/index.js';
import type { AttentionMask, SeqPass, TextDecoder } from './decoder.js';

export interface SchedulerOptions {
  /** Sequences decoded at once (cache slots). */
  maxBatch: number;
  /** Rows per forward that prefill chunks may fill up to (decode steps always go in whole). */
  maxRows: number;
  /** Poll the event loop while a short decode step runs (LoadModelOptions.pollSteps; default false). */
  pollSteps?: boolean;
}

/** One step of a sequence. */
export interface StepSpec {
  ids: Int32Array;
  pos0: number;
  mask: AttentionMask;
  blockSize?: number;
  /** Rows (0..n-1) to remask; empty: no logits (a prefill or a commit). */
  rows: readonly number[];
  /** A prompt prefill: may run in chunks over several forwards (its rows must be its last). */
  prefill?: boolean;
  /**
   * Before the sequence's first block (or token) is out. While such steps wait, a forward runs
   * only them: a request arriving while others decode gets its first block about as soon as
   * on an idle model (the others wait those few forwards), instead of sharing every forward.
   */
  first?: boolean;
  /** The remask of those rows (required when rows is non-empty). */
  remask?: ConfidenceRemaskOptions;
  /** Image features spliced into this step's rows (prompt positions): see ForwardArgs. */
  features?: Tensor;
  featureRows?: Int32Array;
  embedRows?: Int32Array;
}

/** What a step with rows returns: per row its token, confidence and reveal flag. */
export interface StepOut {
  ids: Int32Array;
  conf: Float32Array;
  reveal: Int32Array;
}

export interface SchedulerStats {
  /** Batched forwards run. */
  forwards: number;
  /** Rows and sequences over all forwards (÷ forwards: the mean batch). */
  rows: number;
  sequences: number;
  /** Sequences open now, and waiting for a slot. */
  open: number;
  waiting: number;
  /** Most sequences ever in one forward. */
  maxSequences: number;
  /** Prefill pieces run short of their whole remainder (a long prompt beside decodes). */
  prefillChunks: number;
  /** Rows whose remask ran in an op shared with other sequences' rows (single-row static steps, AR mostly). */
  sharedRemaskRows: number;
}

/** A sequence's hold on a cache slot, from open() to close(). */
export class Sequence {
  closed = false;
  constructor(readonly slot: number) {}
}

interface Pending {
  seq: Sequence;
  spec: StepSpec;
  /** Rows of spec.ids already run (prefill chunks). */
  done: number;
  /** In the forward running now: an abort waits for its result (the runner checks the signal). */
  running: boolean;
  resolve: (v: StepOut | null) => void;
  reject: (e: unknown) => void;
  signal?: AbortSignal;
  onAbort?: () => void;
}

/** How long the others' forward waits for a newcomer's next first-block step (see kick). */
const HOLD_MS = 10;

export class BatchScheduler {
  readonly stats: SchedulerStats = { forwards: 0, rows: 0, sequences: 0, open: 0, waiting: 0, maxSequences: 0, prefillChunks: 0, sharedRemaskRows: 0 };
  private readonly free: number[] = [];
  private readonly waiters: { resolve: (s: Sequence) => void; reject: (e: unknown) => void; signal?: AbortSignal; onAbort?: () => void }[] = [];
  private pending: Pending[] = [];
  private busy = false;
  private flushScheduled = false;
  /** Open sequences whose last step was a first-block step (StepSpec.first). */
  private readonly newcomers = new Set<Sequence>();
  private holdTimer: ReturnType<typeof setTimeout> | null = null;
  /** Called with the slots of every forward, in batch order (tests and tracing). */
  onForward: ((slots: number[]) => void) | null = null;
  /** Recent decode step time, push to result (ms; an exponential average): how long to poll. */
  private stepMs = 0;

  constructor(private readonly text: TextDecoder, private readonly queue: Queue, readonly opts: SchedulerOptions) {
    if (!Number.isInteger(opts.maxBatch) || opts.maxBatch < 1) throw new OptionError(`maxBatch must be an integer ≥ 1, got ${opts.maxBatch}`, 'maxBatch');
    if (!Number.isInteger(opts.maxRows) || opts.maxRows < 1) throw new OptionError(`maxRows must be an integer ≥ 1, got ${opts.maxRows}`, 'maxRows');
    if (text.slots < opts.maxBatch) throw new OptionError(`the KV cache has ${text.slots} slots for maxBatch ${opts.maxBatch}`, 'maxBatch');
    for (let s = opts.maxBatch - 1; s >= 0; s--) this.free.push(s);
  }

  /**
   * A cache slot for a new sequence; waits (first come, first served) while all are taken.
   * `prefer`: the slot to take if it is free (a session's prefix is resident there).
   */
  open(signal?: AbortSignal, prefer?: number): Promise<Sequence> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    const at = prefer !== undefined && prefer >= 0 ? this.free.indexOf(prefer) : -1;
    const slot = at >= 0 ? this.free.splice(at, 1)[0] : this.free.pop();
    if (slot !== undefined) {
      this.stats.open++;
      return Promise.resolve(new Sequence(slot));
    }
    return new Promise<Sequence>((resolve, reject) => {
      const w: (typeof this.waiters)[number] = { resolve, reject, signal };
      if (signal) {
        w.onAbort = () => {
          const i = this.waiters.indexOf(w);
          if (i >= 0) this.waiters.splice(i, 1);
          this.stats.waiting = this.waiters.length;
          reject(signal.reason);
        };
        signal.addEventListener('abort', w.onAbort, { once: true });
      }
      this.waiters.push(w);
      this.stats.waiting = this.waiters.length;
    });
  }

  /** Gives the slot back (to the first waiter, if any). A step still waiting is rejected. */
  close(seq: Sequence): void {
    if (seq.closed) return;
    seq.closed = true;
    this.newcomers.delete(seq);
    this.stats.open--;
    this.pending = this.pending.filter((p) => {
      if (p.seq !== seq) return true;
      this.settle(p, () => p.reject(new AbortError('the sequence was closed')));
      return p.running;   // a running step stays until its forward ends (flush drops it then)
    });
    const w = this.waiters.shift();
    this.stats.waiting = this.waiters.length;
    if (w) {
      if (w.onAbort) w.signal!.removeEventListener('abort', w.onAbort);
      this.stats.open++;
      w.resolve(new Sequence(seq.slot));
    } else {
      this.free.push(seq.slot);
    }
    this.kick();
  }

  /** Rejects everyone: waiting steps and slot waiters (the model is going away). */
  shutdown(reason: unknown): void {
    if (this.holdTimer) { clearTimeout(this.holdTimer); this.holdTimer = null; }
    this.newcomers.clear();
    for (const p of this.pending) this.settle(p, () => p.reject(reason));
    this.pending = [];
    for (const w of this.waiters.splice(0)) {
      if (w.onAbort) w.signal!.removeEventListener('abort', w.onAbort);
      w.reject(reason);
    }
    this.stats.waiting = 0;
  }

  /**
   * Submits the next step of `seq`; resolves with its remask outputs (null without rows) once
   * the forward that ran it has been read back. An abort rejects at once while the step waits.
   */
  step(seq: Sequence, spec: StepSpec, signal?: AbortSignal): Promise<StepOut | null> {
    if (seq.closed) return Promise.reject(new AbortError('the sequence was closed'));
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (spec.rows.length > 0 && !spec.remask) return Promise.reject(new OptionError('a step with rows needs remask options', 'remask'));
    if (this.pending.some((p) => p.seq === seq)) return Promise.reject(new OptionError('a sequence has one step in flight at a time', 'step'));
    return new Promise<StepOut | null>((resolve, reject) => {
      const p: Pending = { seq, spec, done: 0, running: false, resolve, reject, signal };
      if (signal) {
        p.onAbort = () => {
          if (p.running) return;   // in the forward running now: its result comes, the runner checks the signal
          this.remove(p);
          reject(signal.reason);
          this.kick();
        };
        signal.addEventListener('abort', p.onAbort, { once: true });
      }
      if (spec.first) this.newcomers.add(seq);
      else this.newcomers.delete(seq);
      this.pending.push(p);
      this.kick();
    });
  }

  private remove(p: Pending): void {
    const i = this.pending.indexOf(p);
    if (i >= 0) this.pending.splice(i, 1);
  }

  private settle(p: Pending, f: () => void): void {
    if (p.onAbort) p.signal!.removeEventListener('abort', p.onAbort);
    f();
  }

  /**
   * Runs a forward now when every open sequence is waiting, else on the next turn — unless a
   * newcomer is between two first-block steps and no first-block step waits: then the others
   * wait for it, HOLD_MS at most (a newcomer that does not come back within that, e.g. a
   * stream nobody reads, is no longer waited for).
   */
  private kick(): void {
    if (this.busy || this.pending.length === 0 || this.hold()) return;
    if (this.pending.length >= this.stats.open) {
      void this.flush();
    } else if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => { this.flushScheduled = false; if (!this.busy && this.pending.length > 0 && !this.hold()) void this.flush(); });
    }
  }

  /** True, with a timer set, while the others' forward waits for a newcomer between first-block steps. */
  private hold(): boolean {
    const between = [...this.newcomers].some((s) => !this.pending.some((p) => p.seq === s));
    if (between && !this.pending.some((p) => p.spec.first && !p.seq.closed)) {
      this.holdTimer ??= setTimeout(() => {
        this.holdTimer = null;
        for (const s of this.newcomers) if (!this.pending.some((p) => p.seq === s)) this.newcomers.delete(s);
        this.kick();
      }, HOLD_MS);
      return true;
    }
    if (this.holdTimer) { clearTimeout(this.holdTimer); this.holdTimer = null; }
    return false;
  }

  /** Picks this forward's passes: decode steps first, oldest first, then prefill chunks. */
  private form(): { p: Pending; n: number }[] {
    const { maxBatch, maxRows } = this.opts;
    const picked: { p: Pending; n: number }[] = [];
    let rows = 0;
    const isPrefill = (p: Pending) => p.spec.prefill === true;
    const urgent = this.pending.some((p) => p.spec.first && !p.seq.closed);
    const skip = (p: Pending) => p.seq.closed || (urgent && !p.spec.first);
    for (const p of this.pending) {
      if (picked.length >= maxBatch || isPrefill(p) || skip(p)) continue;
      const n = p.spec.ids.length;
      if (picked.length > 0 && rows + n > maxRows) continue;
      picked.push({ p, n });
      rows += n;
    }
    // A prefill runs whole when no other sequence is open (nobody to stall) or the others are
    // held back for newcomers anyway, else in chunks.
    const alone = this.stats.open <= 1 || (urgent && this.pending.every((p) => p.spec.first || p.seq.closed));
    for (const p of this.pending) {
      if (picked.length >= maxBatch || !isPrefill(p) || skip(p)) continue;
      const left = p.spec.ids.length - p.done;
      let n = alone ? left : Math.min(left, Math.max(0, maxRows - rows));
      if (n < left && p.spec.mask === 'block') {
        // Chunks end on block boundaries (absolute positions): a block's rows see one another.
        const bs = p.spec.blockSize!, end = p.spec.pos0 + p.done + n;
        n -= end % bs;
      }
      if (n <= 0) {
        if (picked.length > 0) continue;
        n = Math.min(left, p.spec.mask === 'block' ? p.spec.blockSize! : 1);   // always progress
      }
      if (n < left) this.stats.prefillChunks++;
      picked.push({ p, n });
      rows += n;
    }
    return picked;
  }

  private async flush(): Promise<void> {
    if (this.busy || this.pending.length === 0) return;
    this.busy = true;
    try {
      const picked = this.form();
      for (const x of picked) x.p.running = true;
      let results: (StepOut | null | { error: unknown })[];
      try {
        results = await this.run(picked);
      } catch {
        // Isolation: one bad step must not fail the others. Run each alone; each gets its own outcome.
        results = [];
        for (const x of picked) {
          try {
            results.push((await this.run([x]))[0]);
          } catch (e) {
            results.push({ error: e });
          }
        }
      }
      picked.forEach(({ p, n }, i) => {
        p.running = false;
        const r = results[i];
        if (r && typeof r === 'object' && 'error' in r) {
          this.remove(p);
          this.settle(p, () => p.reject(r.error));
          return;
        }
        p.done += n;
        if (p.seq.closed) { this.remove(p); return; }   // closed meanwhile: close() rejected it
        if (p.done < p.spec.ids.length) {
          // More prefill chunks to go — unless it was aborted meanwhile.
          if (p.signal?.aborted) { this.remove(p); this.settle(p, () => p.reject(p.signal!.reason)); }
          return;
        }
        this.remove(p);
        this.settle(p, () => p.resolve(r as StepOut | null));
      });
    } finally {
      this.busy = false;
    }
    this.kick();
  }

  /**
   * Awaits a decode step's read back with the event loop polling (STEP_POLL_MAX_MS) when
   * LoadModelOptions.pollSteps allows and recent steps were short; records the step's time.
   */
  private async pollWhile<T>(read: Promise<T>): Promise<T> {
    const t0 = performance.now();
    let polling = this.opts.pollSteps === true && this.stepMs < STEP_POLL_MAX_MS;
    if (polling) {
      const end = t0 + Math.max(0.2, 2 * this.stepMs);
      const turn = (): void => { if (polling && performance.now() < end) setImmediate(turn); };
      setImmediate(turn);
    }
    try {
      return await read;
    } finally {
      polling = false;
      const ms = performance.now() - t0;
      this.stepMs = this.stepMs === 0 ? ms : 0.8 * this.stepMs + 0.2 * ms;
    }
  }

  /** One batched forward of these chunks, the remask of each one's rows, one read back. */
  private async run(picked: readonly { p: Pending; n: number }[]): Promise<(StepOut | null)[]> {
    const q = this.queue;
    const passes: SeqPass[] = picked.map(({ p, n }) => {
      const s = p.spec, a = p.done, last = a + n === s.ids.length;
      const pass: SeqPass = {
        slot: p.seq.slot, ids: s.ids.subarray(a, a + n), pos0: s.pos0 + a, n, mask: s.mask, blockSize: s.blockSize,
        logitsRows: last ? s.rows.map((r) => r - a) : [],
      };
      if (s.features && s.embedRows && s.featureRows) {
        const at: number[] = [], src: number[] = [];
        for (let i = 0; i < s.embedRows.length; i++) {
          const r = s.embedRows[i];
          if (r >= a && r < a + n) { at.push(r - a); src.push(s.featureRows[i]); }
        }
        if (at.length) Object.assign(pass, { features: s.features, featureRows: Int32Array.from(src), embedRows: Int32Array.from(at) });
      }
      return pass;
    });
    for (const x of passes) for (const r of x.logitsRows!) if (r < 0) throw new OptionError('logit rows must lie in the last prefill chunk', 'rows');
    // One remask op per sequence, except that neighbouring single-row static steps with the same
    // sampling settings (AR steps, mostly) share one op over their rows: each row's id and
    // confidence are computed on their own either way (the op is row-wise; with k = rows a
    // static remask reveals every row), and one op over 8 rows costs ≈ 4 ms where 8 ops cost
    // ≈ 6 ms on 2 cores (a row's exps are 151 936 double exps).
    const groups: RemaskGroup[] = [];
    const at: ({ g: number; off: number; n: number } | null)[] = [];
    let r0 = 0;
    for (let i = 0; i < passes.length;) {
      const k = passes[i].logitsRows!.length;
      if (k === 0) { at.push(null); i++; continue; }
      const spec = picked[i].p.spec.remask!;
      let j = i + 1;
      if (k === 1 && spec.mode === 'static' && spec.k === 1) {
        while (j < passes.length && passes[j].logitsRows!.length === 1 && sameSampling(spec, picked[j].p.spec.remask!)) j++;
      }
      const n = j - i === 1 ? k : j - i;
      const merged: ConfidenceRemaskOptions = j - i === 1 ? spec
        : { ...spec, k: n, counters: spec.counters ? picked.slice(i, j).flatMap((x) => Array.from(x.p.spec.remask!.counters!)) : undefined };
      // Rows [r0, r0 + n) of the logits (the native side takes a view only when the forward
      // holds other rows too).
      groups.push({ row0: r0, rows: n, options: merged });
      if (j - i > 1) this.stats.sharedRemaskRows += j - i;
      for (let t = i; t < j; t++) at.push({ g: groups.length - 1, off: j - i === 1 ? 0 : t - i, n: j - i === 1 ? k : 1 });
      r0 += n;
      i = j;
    }
    // The forward, every group's remask and one read back: one native call when the forward
    // replays a plan (TextDecoder.forwardBatchRead).
    let read: Promise<RemaskResult[]>;
    if (groups.length) {
      read = this.text.forwardBatchRead(passes, groups);
    } else {
      this.text.forwardBatch(passes)?.dispose();
      read = q.sync().then(() => []);
    }
    this.onForward?.(passes.map((x) => x.slot));
    this.stats.forwards++;
    this.stats.sequences += passes.length;
    this.stats.rows += passes.reduce((s, x) => s + x.n, 0);
    this.stats.maxSequences = Math.max(this.stats.maxSequences, passes.length);
    const data = picked.some((x) => x.p.spec.prefill) ? await read : await this.pollWhile(read);
    return at.map((x) => {
      if (!x) return null;
      const d = data[x.g];
      return { ids: d.ids.subarray(x.off, x.off + x.n), conf: d.conf.subarray(x.off, x.off + x.n), reveal: d.reveal.subarray(x.off, x.off + x.n) };
    });
  }
}

/**
 * How a decode step's result is awaited with LoadModelOptions.pollSteps. Its forward is short
 * (the bundled model's: ≈ 0.1 ms) and the wait ends when the queue thread's read back wakes the
 * event loop; an event loop asleep in the kernel takes 50-150 µs to wake on a VM, as long as the
 * forward itself. While the steps stay short, the loop polls instead (setImmediate turns: I/O
 * and timers still run between them), for at most twice the recent step time: the bundled
 * child's decode phase ×0.87, but the slowest tenth of requests 10-20 % slower (bench/
 * RESULTS.md), hence opt-in. Polling keeps a core busy, which a forward spread over every core
 * would miss: from STEP_POLL_MAX_MS per step on, the loop sleeps.
 */
const STEP_POLL_MAX_MS = 2;

/** Whether two single-row static remasks sample alike (so one op can serve both rows). */
function sameSampling(a: ConfidenceRemaskOptions, b: ConfidenceRemaskOptions): boolean {
  return b.mode === 'static' && b.k === 1 && a.temperature === b.temperature && a.topK === b.topK && a.topP === b.topP &&
    a.seed === b.seed && (a.confidence ?? 'modified') === (b.confidence ?? 'modified') && (a.counters === undefined) === (b.counters === undefined);
}
