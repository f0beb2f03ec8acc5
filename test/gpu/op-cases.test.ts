// op-cases.test.ts — the CPU-vs-CUDA conformance table, test/gpu/op-cases.json (its "about" says
// what a case holds), run from TypeScript. dvl_cuda_selftest runs the same table from C++
// (csrc/cuda/selftest_cases.inc) on GPU machines without Node.
//
// Here, always (no GPU needed): every case reads, its inputs and attributes pass the CPU op, and
// the CPU op meets the float64 reference a case names — so a malformed case fails on every
// machine, not first on a GPU. With a GPU: every case on both backends, compared as the table
// says (skipped with the reason without one; failing under DIFFUSIONVL_GPU=cuda).
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { cudaRunOp } from '../../lib/native/backend.js';
import { Queue, type Tensor, tensorFromArray } from '../../lib/native/index.js';
import type { Attrs, DType } from '../../lib/native/types.js';
import { type AttentionRefOptions, attentionRef } from '../helpers/attention-ref.js';
import type { Tolerance } from '../helpers/compare.js';
import { toBf16, toF16 } from '../helpers/random.js';
import { expectSame, gpuProbe, randTensor, title, values } from './ops-helpers.js';

interface InputSpec {
  dtype: string; shape: number[]; values?: number[]; lo?: number; hi?: number; plant?: boolean;
  set?: [number, 'nan' | 'inf' | '-inf'][];
}
interface CaseSpec {
  op: string; name: string; each?: Record<string, string[]>; inputs: InputSpec[]; attrs?: Attrs;
  tol: string; inPlace?: boolean; reference?: 'attention'; why?: string;
}
interface Table { tolerances: Record<string, Tolerance & { why: string }>; cases: CaseSpec[] }

const table: Table = JSON.parse(readFileSync(join(dirname(fileURLToPath(import.meta.url)), 'op-cases.json'), 'utf8'));

/** A copy of v with every "$var" in its strings replaced. */
function substitute<T>(v: T, vars: Record<string, string>): T {
  if (typeof v === 'string') return Object.entries(vars).reduce((s, [k, x]) => s.split(`$${k}`).join(x), v as string) as T;
  if (Array.isArray(v)) return v.map((e) => substitute(e, vars)) as T;
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, e]) => [k, substitute(e, vars)])) as T;
  return v;
}

/** Every case once per combination of its "each" variables, in table order. */
function expand(cases: CaseSpec[]): CaseSpec[] {
  return cases.flatMap((c) => {
    let combos: Record<string, string>[] = [{}];
    for (const [k, vals] of Object.entries(c.each ?? {})) combos = combos.flatMap((p) => vals.map((x) => ({ ...p, [k]: x })));
    return combos.map((vars) => { const { each: _, ...rest } = substitute(c, vars); return rest; });
  });
}

const cases = expand(table.cases);

/** The host tensor of an input spec (seeded by its case and position) and its values as f32. */
function makeInput(s: InputSpec, seed: number): { t: Tensor; f32: Float32Array } {
  const dt = s.dtype as DType;
  if (s.values) {
    const f = Float32Array.from(s.values);
    const data = dt === 'i32' ? Int32Array.from(s.values) : dt === 'bf16' ? toBf16(f) : dt === 'f16' ? toF16(f) : dt === 'u8' ? Uint8Array.from(s.values) : f;
    return { t: tensorFromArray(dt, s.shape, data), f32: f };
  }
  const r = randTensor(dt, s.shape, seed, s.lo ?? -1, s.hi ?? 1, !!s.plant);
  if (!s.set?.length) return r;
  const f = Float32Array.from(r.f32);
  for (const [i, what] of s.set) if (i < f.length) f[i] = what === 'nan' ? NaN : what === 'inf' ? Infinity : -Infinity;
  return { t: tensorFromArray(dt, s.shape, dt === 'bf16' ? toBf16(f) : dt === 'f16' ? toF16(f) : f), f32: f };
}

function inputsOf(c: CaseSpec, ci: number) {
  return c.inputs.map((s, i) => makeInput(s, 7000 + 16 * ci + i));
}

/** The float64 reference a case names, or null (none, or a planted input makes rows NaN by design). */
function referenceOf(c: CaseSpec, ins: { f32: Float32Array }[]): Float64Array | null {
  if (c.reference !== 'attention' || c.inputs.some((s) => s.plant)) return null;
  const [q, k] = c.inputs;
  const a = c.attrs as unknown as AttentionRefOptions;
  const o: AttentionRefOptions = {
    Tq: q.shape[0], nh: q.shape[1], hd: q.shape[2], nkv: k.shape[0], cap: k.shape[1],
    kvLen: a.kvLen, qPos0: a.qPos0 ?? 0, mask: a.mask, blockSize: a.blockSize, segments: a.segments, scale: a.scale,
  };
  return attentionRef(ins[0].f32, ins[1].f32, ins[2].f32, o);
}

const label = (c: CaseSpec) => `${c.op} ${c.name}`;

describe('the CPU-vs-CUDA case table (test/gpu/op-cases.json)', () => {
  it('reads, names known tolerances, and every case passes the CPU op (and its float64 reference)', async () => {
    expect(cases.length).toBeGreaterThan(50);
    const q = new Queue({ threads: 2 });
    try {
      for (const [ci, c] of cases.entries()) {
        expect(table.tolerances[c.tol], `${label(c)}: tolerance '${c.tol}'`).toBeDefined();
        const ins = inputsOf(c, ci);
        const out = q.op(c.op, ins.map((x) => x.t), c.attrs ?? {});
        expect(out.length === 0, `${label(c)}: inPlace must say whether the op writes input 0`).toBe(!!c.inPlace);
        const ref = referenceOf(c, ins);
        if (ref) expectSame(values(await q.read(out[0]), 'f32'), ref, table.tolerances[c.tol], `${label(c)}: CPU op vs float64`);
      }
      await q.sync();
    } finally {
      q.dispose();
    }
  });
});

const p = gpuProbe();

describe.skipIf(!p.available)(title('op case table', p), () => {
  it.each(cases.map((c, ci) => [label(c), ci] as const))('%s', async (_, ci) => {
    const c = cases[ci];
    const tol = table.tolerances[c.tol];
    const ins = inputsOf(c, ci);
    const q = new Queue({ threads: 2 });
    try {
      let inputs = ins.map((x) => x.t);
      let gpuInputs = inputs;
      if (c.inPlace) {
        // The op writes input 0: one identical copy per backend (convert to its own dtype copies).
        const dt = inputs[0].dtype as DType;
        inputs = [q.convert(inputs[0], dt), ...inputs.slice(1)];
        gpuInputs = [q.convert(ins[0].t, dt), ...inputs.slice(1)];
        await q.sync();
      }
      const gpu = cudaRunOp(c.op, gpuInputs, c.attrs ?? {});
      const cpu = q.op(c.op, inputs, c.attrs ?? {});
      const pairs: [Tensor, Tensor][] = c.inPlace ? [[gpuInputs[0], inputs[0]]] : cpu.map((t, i) => [gpu[i], t]);
      expect(gpu.length).toBe(cpu.length);
      for (const [i, [g, r]] of pairs.entries()) {
        expect(g.shape, `${label(c)} output ${i} shape`).toEqual(r.shape);
        expect(g.dtype, `${label(c)} output ${i} dtype`).toBe(r.dtype);
        expectSame(values(await q.read(g), g.dtype as DType), values(await q.read(r), r.dtype as DType), tol, `${label(c)} output ${i} vs CPU op`);
      }
      const ref = referenceOf(c, ins);
      if (ref) expectSame(values(await q.read(gpu[0]), 'f32'), ref, tol, `${label(c)} vs float64`);
    } finally {
      q.dispose();
    }
  });
});
