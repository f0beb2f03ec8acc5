// confidence_remask (csrc/cpu/ops/sample.cpp) against the TypeScript reference of the sampling
// contract — lib/decode/sample.ts (sampleRow), remask.ts (selectReveal), rng.ts (uniform) — on
// random logits, greedy and sampled, every option, at every ISA level. The contract says the two
// agree bit for bit, so ids, f32 confidences and reveal flags are compared exactly (no tolerance;
// see the note in lib/decode/sample.ts on why libm last-bit differences cannot show here).
import { describe, expect, it } from 'vitest';
import { Queue, nativeInfo, tensorFromArray } from '../../lib/native/index.js';
import { Recorder } from '../../lib/native/plan.js';
import type { ConfidenceRemaskOptions } from '../../lib/native/index.js';
import { DTypeError, DiffusionVLError, DisposedError, OutOfRangeError, ShapeError } from '../../lib/errors.js';
import { sampleRow } from '../../lib/decode/sample.js';
import { selectReveal } from '../../lib/decode/remask.js';
import { normal, rng } from '../helpers/random.js';

/** The TS reference for a whole op call: one sampleRow per row, then selectReveal. */
function reference(logits: Float32Array, n: number, V: number, o: ConfidenceRemaskOptions) {
  const ids: number[] = [], conf: number[] = [];
  for (let r = 0; r < n; r++) {
    const s = sampleRow(logits.subarray(r * V, (r + 1) * V), {
      temperature: o.temperature, topK: o.topK, topP: o.topP, confidence: o.confidence,
      seed: o.seed, counter: o.counters?.[r], row: r,
    });
    ids.push(s.id);
    conf.push(s.confidence);
  }
  const reveal = selectReveal(conf, o.k, o.mode, o.threshold ?? 0.85).map((b) => (b ? 1 : 0));
  return { ids, conf, reveal };
}

/** Random logits: normal·3, optionally quantised to create exact ties, with some −Inf. */
function makeLogits(r: () => number, n: number, V: number, ties: boolean, negInf: boolean): Float32Array {
  const l = normal(r, n * V, 3);
  for (let i = 0; i < l.length; i++) {
    if (ties) l[i] = Math.round(l[i] * 2) / 2;
    if (negInf && V > 1 && r() < 0.1) l[i] = -Infinity;
  }
  for (let row = 0; row < n; row++) l[row * V + Math.floor(r() * V)] = ties ? 4 : 6 * r() - 3;  // a finite entry per row
  return l;
}

async function runBoth(q: Queue, logits: Float32Array, n: number, V: number, o: ConfidenceRemaskOptions, label: string) {
  const [ids, conf, reveal] = q.confidenceRemask(tensorFromArray('f32', [n, V], logits), o);
  const got = { ids: Array.from(await q.readI32(ids)), conf: Array.from(await q.readF32(conf)), reveal: Array.from(await q.readI32(reveal)) };
  expect(got, label).toEqual(reference(logits, n, V, o));
  return got;
}

describe.each(nativeInfo().isaLevels)('confidence_remask at isa %s', (isa) => {
  it('greedy: argmax (first on ties), fround(1/Σexp), static and dynamic reveal', async () => {
    const q = new Queue({ isa, threads: 2 });
    const r = rng(16);
    for (const [n, V] of [[1, 1], [3, 3], [7, 33], [8, 127], [8, 4097], [5, 151936]]) {
      for (const ties of [false, true]) {
        const logits = makeLogits(r, n, V, ties, !ties);
        for (const [mode, k, threshold] of [['static', 0, 0.85], ['static', 1, 0.85], ['static', 3, 0.85], ['static', n + 2, 0.85],
          ['dynamic', 2, 0.85], ['dynamic', 2, 0.01], ['dynamic', n, 0], ['dynamic', 0, 1]] as const) {
          await runBoth(q, logits, n, V, { temperature: 0, k, mode, threshold }, `greedy n=${n} V=${V} ties=${ties} ${mode} k=${k} τ=${threshold}`);
        }
      }
    }
    q.dispose();
  });

  it('sampling: temperature, top-k, top-p, both confidence routes, counters per row', async () => {
    const q = new Queue({ isa, threads: 2 });
    const r = rng(17);
    let draws = 0;
    const seen = new Set<number>();
    for (const [n, V] of [[1, 3], [3, 7], [7, 33], [8, 127], [8, 1000]]) {
      for (const ties of [false, true]) {
        const logits = makeLogits(r, n, V, ties, !ties);
        for (const temperature of [0.3, 1, 1.7])
          for (const topK of [0, 1, 5, V - 1, V])
            for (const topP of [1, 0.9, 0.3, 1e-9])
              for (const confidence of ['modified', 'raw'] as const) {
                const seed = Math.floor(r() * 2 ** 53);
                const counters = Array.from({ length: n }, (_, i) => (100 + i) * 64 + Math.floor(r() * 8));
                const k = Math.floor(r() * (n + 1));
                const mode = r() < 0.5 ? 'static' : 'dynamic';
                const got = await runBoth(q, logits, n, V,
                  { temperature, topK, topP, seed, counters, k, mode, threshold: 0.5, confidence },
                  `sample n=${n} V=${V} ties=${ties} T=${temperature} topK=${topK} topP=${topP} ${confidence}`);
                draws += n;
                for (const id of got.ids) seen.add(id);
              }
      }
    }
    expect(draws).toBeGreaterThan(2000);
    expect(seen.size).toBeGreaterThan(100);  // the draws really are spread, not one argmax
    q.dispose();
  });

  it('sampling on a full Qwen vocabulary row (151936) with top-k and top-p', async () => {
    const q = new Queue({ isa, threads: 2 });
    const r = rng(18);
    const n = 3, V = 151936;
    const logits = makeLogits(r, n, V, false, false);
    for (const [topK, topP, confidence] of [[0, 1, 'modified'], [50, 0.95, 'modified'], [0, 0.9, 'raw']] as const) {
      await runBoth(q, logits, n, V, { temperature: 0.8, topK, topP, seed: 12345, counters: [640, 705, 770], k: 1, mode: 'static', confidence },
        `V=${V} topK=${topK} topP=${topP}`);
    }
    q.dispose();
  });

  it('greedy scans (vector lanes, then the first index of the maximum): ±0 ties, −Inf, the first NaN or +Inf named', async () => {
    // The maximum is found over 8 interleaved lanes and then its first index; these rows put
    // the ties, zeros of both signs and infinities in every lane position and the tail.
    const q = new Queue({ isa, threads: 2 });
    const rows: number[][] = [
      [-0, 0, -1],
      [0, -0, -Infinity, 0],
      [-Infinity, -Infinity, -Infinity, -Infinity, -Infinity, -Infinity, -Infinity, -Infinity, -Infinity, 2, 2],
      [1, 3, 2, 3, 3, 0, 0, 0, 3, 3, 3, 3, 3, 3, 3, 3, 3],
      [-5, -Infinity, -4, -4, -Infinity, -Infinity, -Infinity, -4.5, -4, -4, -4],
    ];
    for (const [i, row] of rows.entries())
      await runBoth(q, Float32Array.from(row), 1, row.length, { temperature: 0, k: 1, mode: 'static' }, `row ${i}: ${row.join(', ')}`);
    for (const [row, msg] of [
      [[1, 2, NaN, Infinity, 3], 'contains NaN at index 2'],
      [[1, -Infinity, 2, 3, 4, 5, 6, 7, 8, Infinity, NaN], 'contains +Inf at index 9'],
      [[-Infinity, -Infinity, -Infinity], 'is all -Inf'],
    ] as [number[], string][]) {
      q.confidenceRemask(tensorFromArray('f32', [1, row.length], Float32Array.from(row)), { temperature: 0, k: 1, mode: 'static' });
      await expect(q.sync()).rejects.toThrow(`confidence_remask: logits row 0 ${msg}`);
    }
    q.dispose();
  });

  it('greedy with fewer rows than threads splits the vocabulary and still agrees exactly', async () => {
    const q = new Queue({ isa, threads: 3 });
    const r = rng(21);
    const V = 40000;
    for (const n of [1, 2]) {
      for (const ties of [false, true]) {
        const logits = makeLogits(r, n, V, ties, !ties);
        if (ties) logits[V - 1] = 9;  // the maximum in the last chunk
        await runBoth(q, logits, n, V, { temperature: 0, k: 1, mode: 'dynamic', threshold: 0.2 }, `split n=${n} ties=${ties}`);
      }
    }
    // Errors found by any chunk name the lowest bad index, as the serial path does.
    const l = normal(r, V);
    l[35000] = NaN;
    l[20001] = Infinity;
    q.confidenceRemask(tensorFromArray('f32', [1, V], l), { temperature: 0, k: 1, mode: 'static' });
    await expect(q.sync()).rejects.toThrow('confidence_remask: logits row 0 contains +Inf at index 20001');
    q.confidenceRemask(tensorFromArray('f32', [1, V], new Float32Array(V).fill(-Infinity)), { temperature: 0, k: 1, mode: 'static' });
    await expect(q.sync()).rejects.toThrow('confidence_remask: logits row 0 is all -Inf');
    q.dispose();
  });

  it('the same (seed, counter) draws the same token whatever the row order or thread count', async () => {
    const r = rng(19);
    const V = 257, logits = makeLogits(r, 4, V, false, false);
    const o = { temperature: 1, seed: 7, counters: [64, 129, 194, 259], k: 2, mode: 'static' as const };
    const q1 = new Queue({ isa, threads: 1 }), q3 = new Queue({ isa, threads: 3 });
    const a = await runBoth(q1, logits, 4, V, o, 'threads 1');
    const b = await runBoth(q3, logits, 4, V, o, 'threads 3');
    expect(b).toEqual(a);
    // Row 2 alone with its own counter draws the same token as inside the batch.
    const c = await runBoth(q1, logits.slice(2 * V, 3 * V), 1, V, { ...o, counters: [194], k: 1 }, 'row 2 alone');
    expect(c.ids[0]).toBe(a.ids[2]);
    q1.dispose();
    q3.dispose();
  });

  it('data errors (NaN, +Inf, all −Inf, overflowing temperature) fail at sync naming the lowest row', async () => {
    const q = new Queue({ isa, threads: 2 });
    const V = 9;
    const bad = (fill: (l: Float32Array) => void, o: Partial<ConfidenceRemaskOptions> = {}) => {
      const l = normal(rng(20), 4 * V);
      fill(l);
      q.confidenceRemask(tensorFromArray('f32', [4, V], l), { temperature: 0, k: 1, mode: 'static', counters: [0, 1, 2, 3], ...o });
      return q.sync();
    };
    await expect(bad((l) => { l[2 * V + 5] = NaN; })).rejects.toThrow(OutOfRangeError);
    await expect(bad((l) => { l[3 * V + 1] = NaN; l[1 * V + 8] = NaN; })).rejects.toThrow('confidence_remask: logits row 1 contains NaN at index 8');
    await expect(bad((l) => { l[0 * V + 3] = Infinity; })).rejects.toThrow('confidence_remask: logits row 0 contains +Inf at index 3');
    await expect(bad((l) => { l.fill(-Infinity, 2 * V, 3 * V); })).rejects.toThrow('confidence_remask: logits row 2 is all -Inf');
    await expect(bad((l) => { l[V] = 1e30; }, { temperature: 1e-300 })).rejects.toThrow(/temperature .* is too small/);
    // −Inf entries are fine, and the queue recovered after the failures.
    await runBoth(q, new Float32Array([-Infinity, 1, -Infinity, 0]), 1, 4, { temperature: 0, k: 1, mode: 'static' }, 'after errors');
    q.dispose();
  });

  it('no masked rows (n = 0) gives empty outputs', async () => {
    const q = new Queue({ isa, threads: 2 });
    const [ids, conf, reveal] = q.confidenceRemask(tensorFromArray('f32', [0, 5], new Float32Array(0)), { temperature: 1, counters: [], k: 2, mode: 'dynamic' });
    expect([ids.shape, conf.shape, reveal.shape]).toEqual([[0], [0], [0]]);
    expect((await q.readI32(reveal)).length).toBe(0);
    q.dispose();
  });

  it('throws typed errors for bad calls', () => {
    const q = new Queue({ isa, threads: 1 });
    const l = tensorFromArray('f32', [2, 5], new Float32Array(10));
    const base = { temperature: 0, k: 1, mode: 'static' as const };
    expect(() => q.confidenceRemask(tensorFromArray('f32', [10], new Float32Array(10)), base)).toThrow(ShapeError);
    expect(() => q.confidenceRemask(tensorFromArray('f32', [2, 0], new Float32Array(0)), base)).toThrow(ShapeError);
    expect(() => q.confidenceRemask(tensorFromArray('bf16', [2, 5], new Uint16Array(10)), base)).toThrow(DTypeError);
    expect(() => q.confidenceRemask(l, { ...base, temperature: -1 })).toThrow(OutOfRangeError);
    expect(() => q.confidenceRemask(l, { ...base, temperature: 1 })).toThrow(/needs counters, one per row \(2\)/);
    expect(() => q.confidenceRemask(l, { ...base, temperature: 1, counters: [1] })).toThrow(DiffusionVLError);
    expect(() => q.confidenceRemask(l, { ...base, temperature: 1, counters: [1, 2 ** 53] })).toThrow(OutOfRangeError);
    expect(() => q.confidenceRemask(l, { ...base, temperature: 1, counters: [1, 2], topP: 0 })).toThrow(OutOfRangeError);
    expect(() => q.confidenceRemask(l, { ...base, temperature: 1, counters: [1, 2], topK: 1.5 })).toThrow(OutOfRangeError);
    expect(() => q.confidenceRemask(l, { ...base, temperature: 1, counters: [1, 2], seed: -1 })).toThrow(OutOfRangeError);
    expect(() => q.confidenceRemask(l, { ...base, k: -1 })).toThrow(OutOfRangeError);
    expect(() => q.confidenceRemask(l, { ...base, mode: 'greedy' as never })).toThrow(/mode must be 'static' or 'dynamic'/);
    expect(() => q.confidenceRemask(l, { ...base, confidence: 'both' as never })).toThrow(DiffusionVLError);
    l.dispose();
    expect(() => q.confidenceRemask(l, base)).toThrow(DisposedError);
    q.dispose();
  });
});

describe('Queue.remaskRead (a decode step: the remask of each sequence and one read, in one call)', () => {
  it('gives, per group of rows with its own options, what confidence_remask and a read give on those rows', async () => {
    const q = new Queue({ threads: 2 });
    const r = rng(23);
    const n = 11, V = 97;
    const logits = makeLogits(r, n, V, false, true);
    const t = tensorFromArray('f32', [n, V], logits);
    const groups: { row0: number; rows: number; options: ConfidenceRemaskOptions }[] = [
      { row0: 0, rows: 3, options: { temperature: 0, k: 1, mode: 'static' } },
      { row0: 3, rows: 1, options: { temperature: 0.7, topK: 20, topP: 0.9, seed: 5, counters: [77], k: 1, mode: 'static' } },
      { row0: 4, rows: 7, options: { temperature: 0, k: 2, mode: 'dynamic', threshold: 0.3 } },
    ];
    const got = await q.remaskRead(t, groups);
    expect(got).toHaveLength(3);
    groups.forEach((g, i) => {
      const ref = reference(logits.subarray(g.row0 * V, (g.row0 + g.rows) * V), g.rows, V, g.options);
      expect({ ids: Array.from(got[i].ids), conf: Array.from(got[i].conf), reveal: Array.from(got[i].reveal) }, `group ${i}`).toEqual(ref);
      expect(got[i].ids).toBeInstanceOf(Int32Array);
      expect(got[i].conf).toBeInstanceOf(Float32Array);
    });
    // The whole tensor as one group (no view): the same as the op on it.
    const whole = { temperature: 0, k: 3, mode: 'static' as const };
    const [w] = await q.remaskRead(t, [{ row0: 0, rows: n, options: whole }]);
    expect({ ids: Array.from(w.ids), conf: Array.from(w.conf), reveal: Array.from(w.reveal) }).toEqual(await runBoth(q, logits, n, V, whole, 'whole'));
    q.dispose();
  });

  it('checks every group before it queues anything: typed errors name the group or the op', async () => {
    const q = new Queue({ threads: 1 });
    const t = tensorFromArray('f32', [4, 5], new Float32Array(20));
    const ok = { temperature: 0, k: 1, mode: 'static' as const };
    await q.sync();
    const jobs = q.stats().jobs;
    await expect(q.remaskRead(t, [{ row0: 0, rows: 2, options: ok }, { row0: 3, rows: 2, options: ok }])).rejects.toThrow(/narrow_rows/);
    await expect(q.remaskRead(t, [{ row0: 0, rows: 2, options: ok }, { row0: 2, rows: 2, options: { ...ok, temperature: -1 } }])).rejects.toThrow(OutOfRangeError);
    await expect(q.remaskRead(t, [{ row0: 0, rows: 2, options: { ...ok, temperature: 1 } }])).rejects.toThrow(/needs counters/);
    await expect(q.remaskRead(t, [])).rejects.toThrow(/no groups/);
    await q.sync();
    expect(q.stats().jobs).toBe(jobs);   // nothing of the failed calls ran
    t.dispose();
    await expect(q.remaskRead(t, [{ row0: 0, rows: 4, options: ok }])).rejects.toThrow(DisposedError);
    q.dispose();
  });

  it('replayRemaskRead: a plan replay and the remask of its logits in one call = replay + remaskRead; bad groups queue no remask', async () => {
    const q = new Queue({ threads: 2 });
    const r = rng(29);
    const n = 9, V = 61;
    // A plan that scales its input logits: its output is the remask's input.
    const rec = new Recorder(q);
    const x = rec.input('x', 'f32', [n, V], new Float32Array(n * V));
    const plan = rec.finish([rec.scale(x, 1.5)]);
    const groups = [
      { row0: 0, rows: 4, options: { temperature: 0, k: 2, mode: 'static' as const } },
      { row0: 4, rows: 5, options: { temperature: 0.8, seed: 3, counters: [1, 2, 3, 4, 5], k: 1, mode: 'dynamic' as const, threshold: 0.5 } },
    ];
    for (let round = 0; round < 3; round++) {
      const logits = makeLogits(r, n, V, false, true);
      const got = await plan.runRemaskRead(q, { x: logits }, groups);
      const [out] = plan.run(q, { x: logits });
      const want = await q.remaskRead(out, groups);
      expect(got.map((g) => [Array.from(g.ids), Array.from(g.conf), Array.from(g.reveal)])).toEqual(want.map((g) => [Array.from(g.ids), Array.from(g.conf), Array.from(g.reveal)]));
    }
    // Checked before the replay is queued: the groups' presence and the replay's own values.
    await q.sync();
    let jobs = q.stats().jobs;
    const ok = { temperature: 0, k: 1, mode: 'static' as const };
    expect(() => plan.runRemaskRead(q, { x: new Float32Array(n * V) }, [])).toThrow(/no groups/);
    expect(() => plan.runRemaskRead(q, { x: new Float32Array(5) }, [{ row0: 0, rows: 3, options: ok }])).toThrow(ShapeError);
    await q.sync();
    expect(q.stats().jobs).toBe(jobs);
    // A bad group: the forward was queued first (it starts at once), no remask is.
    expect(() => plan.runRemaskRead(q, { x: new Float32Array(n * V) }, [{ row0: 0, rows: 3, options: { ...ok, temperature: -1 } }])).toThrow(OutOfRangeError);
    expect(() => plan.runRemaskRead(q, { x: new Float32Array(n * V) }, [{ row0: 0, rows: 3, options: ok }, { row0: 7, rows: 3, options: ok }])).toThrow(/narrow_rows/);
    await q.sync();
    expect(q.stats().jobs).toBe(jobs + 2);
    jobs = q.stats().jobs;
    // And the queue goes on: a good call after them.
    const [g] = await plan.runRemaskRead(q, { x: makeLogits(r, n, V, false, true) }, [{ row0: 0, rows: n, options: ok }]);
    expect(g.ids).toHaveLength(n);
    plan.dispose();
    q.dispose();
  });
});
