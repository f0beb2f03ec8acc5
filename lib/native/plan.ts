// plan.ts — record a pass once, replay it with one native call (csrc/core/plan.h).
//
// A Recorder is an OpSet: model code written for the eager Queue runs against it unchanged and
// every op is planned natively (validation, output shapes) into a plan instead of being run.
// What changes from one step to the next is declared by the model code itself:
//   ops.input(name, …)   a data input (ids, positions, row indices) → filled at each replay
//   ops.bind(name, t)    a caller-owned tensor (image features)     → bound at each replay
//   ops.param(name, v)   a number in op attributes (cache position) → patched at each replay
// A RecordedPlan remembers those names in order, so a replay takes the step's values as an
// object keyed by name. PlanCache keeps a model's plans by shape signature (LRU, bounded in
// count and arena bytes) and frees them on eviction, clear() and dispose().
import { OptionError } from '../errors.js';
import { OpSet, PlanParam, type Num, type NumArray, type OpAttrs, type Queue, type RemaskGroup, type RemaskResult } from './index.js';
import type { Attrs, DType, NativePlan, NativePlanBuilder, NativePlanInfo, NativeTensor } from './types.js';

/** One step's values for a replay: every input and param name the recording declared. */
export type StepValues = Record<string, ArrayBufferView | NativeTensor | number | readonly number[] | null | undefined>;

export class Recorder extends OpSet {
  private readonly b: NativePlanBuilder;
  private readonly inputs: string[] = [];
  /** Declared parameters in order: name and length (0: a number). */
  private readonly params: { name: string; length: number; index: number }[] = [];
  private nparams = 0;

  constructor(queue: Queue) {
    super();
    this.b = queue.record();
  }

  op(name: string, inputs: readonly (NativeTensor | null | undefined)[], attrs: OpAttrs = {}): NativeTensor[] {
    const plain: Attrs = {};
    const patches: [string, number, number, number][] = [];
    for (const k of Object.keys(attrs)) {
      const v = attrs[k];
      if (v instanceof PlanParam) {
        plain[k] = v.length ? v.values : v.value;
        patches.push([k, v.index, v.offset, v.length]);
      } else {
        plain[k] = v;
      }
    }
    const out = this.b.op(name, inputs, plain, patches);
    if (this.scope) for (const t of out) this.scope.track(t);
    return out;
  }

  input(name: string, dtype: DType, shape: readonly number[], _data: ArrayBufferView): NativeTensor {
    this.declare(name);
    const t = this.b.input(dtype, shape);
    return this.scope ? this.scope.track(t) : t;
  }

  bind(name: string, t: NativeTensor): NativeTensor {
    this.declare(name);
    if (!t.dtype || !t.shape) throw new OptionError(`plan input '${name}': the tensor was disposed`, name);
    const slot = this.b.bind(t.dtype, t.shape);
    return this.scope ? this.scope.track(slot) : slot;
  }

  param(name: string, value: number): Num {
    return new PlanParam(this.declareParam(name, 0), 0, value);
  }

  paramArray(name: string, values: readonly number[]): NumArray {
    if (values.length === 0) throw new OptionError(`plan parameter '${name}': an array parameter needs at least one number`, name);
    return new PlanParam(this.declareParam(name, values.length), 0, 0, values.length, values);
  }

  private declareParam(name: string, length: number): number {
    const p = this.params.find((x) => x.name === name);
    if (p) {
      if (p.length !== length) throw new OptionError(`plan parameter '${name}' declared with lengths ${p.length} and ${length}`, name);
      return p.index;
    }
    this.params.push({ name, length, index: this.nparams });
    this.nparams += Math.max(1, length);
    return this.nparams - Math.max(1, length);
  }

  /**
   * Seals the recording; `outputs` (placeholders this recorder returned) are what each replay
   * returns: views of the plan's arena, valid until its next replay — or, with `fresh`, new
   * tensors each replay that the caller owns (results kept across replays, like image features).
   */
  finish(outputs: readonly NativeTensor[], opts: { fresh?: boolean } = {}): RecordedPlan {
    return new RecordedPlan(this.b.finish(outputs, this.nparams, opts.fresh === true), this.inputs.slice(), this.params.map(({ name, length }) => ({ name, length })));
  }

  private declare(name: string): void {
    if (this.inputs.includes(name)) throw new OptionError(`plan input '${name}' declared twice`, name);
    this.inputs.push(name);
  }
}

export class RecordedPlan {
  constructor(readonly native: NativePlan, readonly inputNames: readonly string[], readonly paramSpecs: readonly { name: string; length: number }[]) {}

  get info(): NativePlanInfo | null { return this.native.info; }

  /** One replay on `queue`: one native call, one queued job. Outputs are valid until the next replay of this plan. */
  run(queue: Queue, step: StepValues): NativeTensor[] {
    const [values, params] = this.bindings(step);
    return queue.replay(this.native, values, params);
  }

  /** run() and a remaskRead of its first output (the logits) in one native call: a decode step. */
  runRemaskRead(queue: Queue, step: StepValues, groups: readonly RemaskGroup[]): Promise<RemaskResult[]> {
    const [values, params] = this.bindings(step);
    return queue.replayRemaskRead(this.native, values, params, groups);
  }

  /** The replay's input values and parameters from a step's named values. */
  private bindings(step: StepValues): [(ArrayBufferView | NativeTensor)[], number[]] {
    const values = this.inputNames.map((n) => {
      const v = step[n];
      if (v === undefined || v === null || typeof v === 'number' || Array.isArray(v)) throw new OptionError(`plan replay: no value for input '${n}'`, n);
      return v as ArrayBufferView | NativeTensor;
    });
    const params: number[] = [];
    for (const { name, length } of this.paramSpecs) {
      const v = step[name];
      if (length === 0) {
        if (typeof v !== 'number') throw new OptionError(`plan replay: no number for parameter '${name}'`, name);
        params.push(v);
      } else {
        if (!Array.isArray(v) || v.length !== length) throw new OptionError(`plan replay: parameter '${name}' needs ${length} numbers`, name);
        for (const x of v as number[]) params.push(x);
      }
    }
    return [values, params];
  }

  dispose(): void { this.native.dispose(); }
}

export interface PlanCacheStats {
  plans: number;
  arenaBytes: number;
  recorded: number;
  replays: number;
  evicted: number;
  /** Calls run op by op because their shape was new (see PlanCache's recordAt). */
  eager: number;
}

/**
 * A model's plans by shape signature, least recently used first out. Bounded by count and by
 * the sum of arena bytes: a plan whose arena alone exceeds the byte cap is used for its call
 * and freed at the next one (a one-off prompt length must not pin its activations).
 *
 * `recordAt`: the sighting of a shape that records it. Recording costs more than running the
 * ops eagerly once (it runs them and builds the plan), and many shapes are seen once (a prompt
 * length, a picture size, the logit-row count of one denoising step): with 2, the first
 * sighting runs op by op and the second records — a one-shot CLI run pays no recording at
 * all for its one-off shapes. Replay = eager bit for bit, so the choice never changes results.
 */
export class PlanCache {
  private readonly plans = new Map<string, RecordedPlan>();
  /** Shapes seen but not yet recorded (bounded: the oldest are forgotten). */
  private readonly seen = new Map<string, number>();
  private bytes = 0;
  private oneOff: RecordedPlan | null = null;
  readonly stats: PlanCacheStats = { plans: 0, arenaBytes: 0, recorded: 0, replays: 0, evicted: 0, eager: 0 };

  constructor(readonly maxPlans = 48, readonly maxBytes = 256 * 2 ** 20, readonly recordAt = 2) {}

  /**
   * The plan for `key`, recorded by `record` when absent — or null while `key` has been seen
   * fewer than `recordAt` times: the caller runs that call op by op.
   */
  get(key: string, record: () => RecordedPlan): RecordedPlan | null {
    this.oneOff?.dispose();
    this.oneOff = null;
    const hit = this.plans.get(key);
    if (hit) {
      this.plans.delete(key);   // re-insert: most recently used last
      this.plans.set(key, hit);
      this.stats.replays++;
      return hit;
    }
    const sightings = (this.seen.get(key) ?? 0) + 1;
    this.seen.delete(key);
    if (sightings < this.recordAt) {
      this.seen.set(key, sightings);
      if (this.seen.size > 4 * this.maxPlans) this.seen.delete(this.seen.keys().next().value!);
      this.stats.eager++;
      return null;
    }
    const plan = record();
    this.stats.recorded++;
    this.stats.replays++;
    const size = plan.info?.arenaBytes ?? 0;
    if (size > this.maxBytes) {
      this.oneOff = plan;
      return plan;
    }
    this.plans.set(key, plan);
    this.bytes += size;
    for (const [k, p] of this.plans) {
      if (this.plans.size <= this.maxPlans && this.bytes <= this.maxBytes) break;
      if (p === plan) continue;
      this.plans.delete(k);
      this.bytes -= p.info?.arenaBytes ?? 0;
      p.dispose();
      this.stats.evicted++;
    }
    this.stats.plans = this.plans.size;
    this.stats.arenaBytes = this.bytes;
    return plan;
  }

  get size(): number { return this.plans.size; }

  /** Frees every plan (the KV cache they point at is being replaced, or the model is going away). */
  clear(): void {
    for (const p of this.plans.values()) p.dispose();
    this.plans.clear();
    this.seen.clear();
    this.oneOff?.dispose();
    this.oneOff = null;
    this.bytes = 0;
    this.stats.plans = 0;
    this.stats.arenaBytes = 0;
  }
}

/** True when DIFFUSIONVL_EAGER=1 asks every model to run op by op (tests, debugging). */
export function eagerFromEnv(): boolean {
  const v = process.env.DIFFUSIONVL_EAGER;
  return v !== undefined && v !== '' && v !== '0' && v !== 'false';
}
