// attrs.test.ts — how op attributes cross from JS into the addon (csrc/napi/addon.cpp
// attrs_from_js): numbers, booleans, strings, plain arrays and typed arrays of numbers; anything
// else is a typed error naming the op and the key.
import { describe, expect, it } from 'vitest';
import { ArgumentError } from '../../lib/errors.js';
import { Queue, tensorFromArray } from '../../lib/native/index.js';
import { normal, rng } from '../helpers/random.js';

describe('op attributes', () => {
  it('an array attribute reads the same from a plain array, a Float64Array and an Int32Array', async () => {
    // Vision-window segments (attention mask 'segments'): three spellings of the same cu_seqlens.
    const q = new Queue({ threads: 1 });
    const r = rng(21);
    const T = 40, nh = 2, hd = 16;
    const qt = tensorFromArray('f32', [T, nh, hd], normal(r, T * nh * hd));
    const k = tensorFromArray('f32', [nh, T, hd], normal(r, nh * T * hd));
    const v = tensorFromArray('f32', [nh, T, hd], normal(r, nh * T * hd));
    const cu = [0, 7, 7, 29, 40];
    const outs = [];
    for (const segments of [cu, Float64Array.from(cu), Int32Array.from(cu)]) {
      outs.push(await q.readF32(q.op('attention', [qt, k, v], { kvLen: T, mask: 'segments', segments: segments as unknown as number[] })[0]));
    }
    expect(outs[1]).toEqual(outs[0]);
    expect(outs[2]).toEqual(outs[0]);
    // And a different segmentation gives a different answer: the attribute is really read.
    const other = await q.readF32(q.op('attention', [qt, k, v], { kvLen: T, mask: 'segments', segments: Float64Array.from([0, 20, 40]) as unknown as number[] })[0]);
    expect(other).not.toEqual(outs[0]);
    q.dispose();
  });

  it('refuses attributes that are not numbers, strings or arrays of numbers, naming op and key', () => {
    const q = new Queue({ threads: 1 });
    const x = tensorFromArray('f32', [2, 4], new Float32Array(8));
    const w = tensorFromArray('f32', [4], new Float32Array(4).fill(1));
    expect(() => q.op('rms_norm', [x, w], { eps: { value: 1 } as unknown as number })).toThrow(ArgumentError);
    expect(() => q.op('rms_norm', [x, w], { eps: { value: 1 } as unknown as number })).toThrow(/rms_norm: attribute 'eps' has an unsupported type/);
    expect(() => q.op('attention', [tensorFromArray('f32', [2, 1, 4], new Float32Array(8)), x, x], { kvLen: 2, mask: 'segments', segments: [0, 'x', 2] as unknown as number[] }))
      .toThrow(/attention: attribute 'segments' must hold only numbers/);
    q.dispose();
  });
});
