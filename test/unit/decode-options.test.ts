// decode-options.test.ts — lib/decode/options.ts: defaults, resolution, and the OptionError
// raised for each absurd value before any work.
import { describe, expect, it } from 'vitest';
import { OptionError } from '../../lib/errors.js';
import { DEFAULTS, nearestOption, validateDecodeOptions, type DecodeOptions } from '../../lib/decode/options.js';

const limits = { blockSize: 8, eosId: 151645, contextLength: 4096, vocabSize: 151936 };

function errorOf(opts: unknown, lim: typeof limits & { promptLength?: number } = limits): OptionError {
  try {
    validateDecodeOptions(opts as DecodeOptions, lim);
  } catch (e) {
    expect(e).toBeInstanceOf(OptionError);
    return e as OptionError;
  }
  throw new Error(`no error for ${JSON.stringify(opts)}`);
}

describe('defaults', () => {
  it('resolve to the benchmark settings (docs §7.2) with the model block size and EOS', () => {
    expect(validateDecodeOptions(undefined, limits)).toEqual({
      maxTokens: 128, blockSize: 8, steps: 8, remasking: 'static', threshold: 0.85,
      temperature: 0, topK: 0, topP: 1, seed: 0, stopTokens: [151645], signal: undefined,
    });
    expect(DEFAULTS.steps).toBe(8);
    expect(Object.isFrozen(DEFAULTS)).toBe(true);
  });

  it('keeps given values, accepts the reference remasking names, treats undefined as absent', () => {
    const r = validateDecodeOptions({
      maxTokens: 5, blockSize: 4, steps: 3, remasking: 'low_confidence_dynamic', threshold: 0.5,
      temperature: 0.7, topK: 3, topP: 0.9, seed: 42, stopTokens: [1, 2],
    }, limits);
    expect(r).toMatchObject({ maxTokens: 5, blockSize: 4, steps: 3, remasking: 'dynamic', threshold: 0.5, seed: 42, stopTokens: [1, 2] });
    expect(validateDecodeOptions({ steps: undefined }, limits).steps).toBe(8);
  });

  it("the model's own defaults (generation_config.json) come before DEFAULTS, the call's values before both", () => {
    const own = { ...limits, defaults: { steps: 4, remasking: 'dynamic' as const, threshold: 0.9 } };
    expect(validateDecodeOptions(undefined, own)).toMatchObject({ steps: 4, remasking: 'dynamic', threshold: 0.9 });
    expect(validateDecodeOptions({ steps: 2, remasking: 'static', threshold: 0.5 }, own)).toMatchObject({ steps: 2, remasking: 'static', threshold: 0.5 });
    expect(validateDecodeOptions({ steps: undefined }, { ...limits, defaults: { steps: 3 } })).toMatchObject({ steps: 3, remasking: 'static', threshold: 0.85 });
  });

  it('draws a random seed when sampling without one', () => {
    const r = validateDecodeOptions({ temperature: 1 }, limits);
    expect(Number.isInteger(r.seed) && r.seed >= 0 && r.seed < 2 ** 53).toBe(true);
  });

  it('bounds steps by the block size: S > bs is refused when given, and the default shrinks to bs', () => {
    expect(validateDecodeOptions({ steps: 4, blockSize: 4 }, limits).steps).toBe(4);
    expect(errorOf({ steps: 100, blockSize: 4 }).message).toMatch(/^Expected integer ≤ 4 \(the block size.*for steps but received 100/);
    expect(errorOf({ steps: 1e9 }).option).toBe('steps');
    expect(errorOf({ steps: 2 ** 32 }).option).toBe('steps');
    expect(validateDecodeOptions({ blockSize: 4 }, limits).steps).toBe(4);
    expect(validateDecodeOptions({ blockSize: 16 }, limits).steps).toBe(8);
    // AR decoding uses neither: steps stays as given (bounded only by the generic cap).
    expect(validateDecodeOptions({ steps: 8 }, { ...limits, blockSize: 1, autoregressive: true }).steps).toBe(8);
  });

  it('reads own keys only: an inherited or __proto__ value is never an option', () => {
    const inherited = Object.create({ maxTokens: 1e9 }) as DecodeOptions;
    expect(validateDecodeOptions(inherited, limits).maxTokens).toBe(128);
    const parsed = JSON.parse('{"__proto__": {"maxTokens": 1000000000}}') as DecodeOptions;
    expect(errorOf(parsed).message).toMatch(/^Unknown option "__proto__"/);
  });
});

describe('errors', () => {
  it('steps', () => {
    const e = errorOf({ steps: 0 });
    expect(e.message).toBe('Expected integer ≥ 1 for steps but received 0 (number)');
    expect(e.option).toBe('steps');
    expect(e.code).toBe('DVL_OPTION');
    expect(errorOf({ steps: 2.5 }).message).toBe('Expected integer ≥ 1 for steps but received 2.5 (number)');
    expect(errorOf({ steps: '8' }).message).toBe('Expected integer ≥ 1 for steps but received "8" (string)');
    expect(errorOf({ steps: NaN }).message).toMatch(/received NaN \(number\)/);
  });

  it('threshold outside (0, 1)', () => {
    for (const t of [0, 1, -0.5, 1.5, NaN]) expect(errorOf({ threshold: t }).option).toBe('threshold');
    expect(errorOf({ threshold: 1 }).message).toBe('Expected number in (0, 1) for threshold but received 1 (number)');
  });

  it('temperature negative, NaN or infinite', () => {
    for (const t of [-0.1, NaN, Infinity]) expect(errorOf({ temperature: t }).option).toBe('temperature');
    expect(errorOf({ temperature: -1 }).message).toBe('Expected finite number ≥ 0 for temperature but received -1 (number)');
  });

  it('topK negative or fractional, topP outside (0, 1]', () => {
    expect(errorOf({ topK: -1 }).option).toBe('topK');
    expect(errorOf({ topK: 1.5 }).option).toBe('topK');
    for (const p of [0, -0.2, 1.01, NaN]) expect(errorOf({ topP: p }).option).toBe('topP');
    expect(validateDecodeOptions({ topP: 1 }, limits).topP).toBe(1);
  });

  it('maxTokens < 1 or beyond the context limit', () => {
    expect(errorOf({ maxTokens: 0 }).message).toBe('Expected integer ≥ 1 for maxTokens but received 0 (number)');
    const e = errorOf({ maxTokens: 4000 }, { ...limits, promptLength: 100 });
    expect(e.message).toBe('Expected integer ≤ 3996 (context length 4096 minus prompt length 100) for maxTokens but received 4000 (number)');
    expect(validateDecodeOptions({ maxTokens: 3996 }, { ...limits, promptLength: 100 }).maxTokens).toBe(3996);
    expect(errorOf({ maxTokens: 1 }, { ...limits, promptLength: 4096 }).message).toMatch(/prompt length is 4096/);
  });

  it('the canvas (whole blocks) must fit the context, and sizes have upper bounds', () => {
    // P 100 + G 3990 = 4090 → 512 blocks of 8 = 4096 fits; bs 7: 585 blocks = 4095 fits; bs 9 → 4095; bs 1000 → 5000 does not.
    expect(validateDecodeOptions({ maxTokens: 3990 }, { ...limits, promptLength: 100 }).maxTokens).toBe(3990);
    const e = errorOf({ maxTokens: 3990, blockSize: 1000 }, { ...limits, promptLength: 100 });
    expect(e.message).toMatch(/^Expected integer ≤ 3900 \(the canvas is padded to whole blocks of 1000/);
    expect(errorOf({ blockSize: 5000 }).message).toMatch(/integer in \[1, 4096\] \(the context length\) for blockSize/);
    expect(errorOf({ maxTokens: 2 ** 32 }, { blockSize: 8, eosId: 1 }).message).toMatch(/integer in \[1, 1048576\] for maxTokens/);
    expect(errorOf({ topK: 2 ** 40 }).option).toBe('topK');
  });

  it('blockSize, remasking, seed, stopTokens, signal', () => {
    expect(errorOf({ blockSize: 0 }).option).toBe('blockSize');
    expect(errorOf({ remasking: 'low_confidence' }).message).toMatch(/for remasking but received "low_confidence" \(string\)/);
    expect(errorOf({ seed: -1 }).option).toBe('seed');
    expect(errorOf({ seed: 2 ** 53 }).option).toBe('seed');
    expect(errorOf({ stopTokens: 151645 }).message).toBe('Expected array of token ids for stopTokens but received 151645 (number)');
    expect(errorOf({ stopTokens: [1, -2] }).message).toBe('Expected integer token id ≥ 0 < 151936 for stopTokens[1] but received -2 (number)');
    expect(errorOf({ stopTokens: [200000] }).option).toBe('stopTokens[0]');
    expect(errorOf({ signal: 'stop' }).option).toBe('signal');
    expect(validateDecodeOptions({ signal: new AbortController().signal }, limits).signal).toBeDefined();
    expect(validateDecodeOptions({ stopTokens: [] }, limits).stopTokens).toEqual([]);
  });

  it('options must be an object', () => {
    expect(errorOf(null).message).toBe('Expected object for options but received null (null)');
    expect(errorOf([1]).message).toMatch(/received \[1\] \(array\)/);
  });

  it('unknown keys get a near-miss hint', () => {
    expect(errorOf({ blocksize: 4 }).message).toMatch(/^Unknown option "blocksize": did you mean "blockSize"\?/);
    expect(errorOf({ blocksize: 4 }).option).toBe('blocksize');
    expect(errorOf({ setps: 4 }).message).toMatch(/did you mean "steps"/);
    expect(errorOf({ gen_length: 4 }).message).toMatch(/did you mean "maxTokens"/);
    expect(errorOf({ remasking_strategy: 'static' }).message).toMatch(/did you mean "remasking"/);
    expect(errorOf({ top_p: 0.5 }).message).toMatch(/did you mean "topP"/);
    expect(errorOf({ confidence_threshold: 0.9 }).message).toMatch(/did you mean "threshold"/);
    expect(errorOf({ zzzzzz: 1 }).message).not.toMatch(/did you mean/);
    expect(nearestOption('temprature')).toBe('temperature');
    expect(nearestOption('stop_tokens')).toBe('stopTokens');
  });
});
