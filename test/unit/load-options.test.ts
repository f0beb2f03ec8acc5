// lib/model/load-options.ts: the loadModel option table — unknown keys with hints, types,
// ranges, options that another piece of work implements, nested limits, own keys only.
import { availableParallelism } from 'node:os';
import { describe, expect, it } from 'vitest';
import { OptionError } from '../../lib/errors.js';
import { LOAD_OPTIONS, LIMIT_DEFAULTS, maxThreads, ownCopy, resolveLimits, validateLoadOptions } from '../../lib/model/load-options.js';

function errorOf(opts: unknown): OptionError {
  try {
    validateLoadOptions(opts);
  } catch (e) {
    expect(e).toBeInstanceOf(OptionError);
    return e as OptionError;
  }
  throw new Error(`no error for ${JSON.stringify(opts)}`);
}

describe('loadModel options', () => {
  it('accepts every documented key with a valid value', () => {
    const ok = validateLoadOptions({
      threads: 1, dtype: 'bf16', precision: 'exact', isa: 'scalar', contextLength: 64, onProgress: () => undefined,
      signal: new AbortController().signal, vision: false, gpu: false, device: 0, cudaPluginPaths: ['/x'], memoryCheck: false, pollSteps: false,
      limits: { streamIdleMs: 0, templateMs: 10, imageBytes: 1 },
    });
    expect(ok.threads).toBe(1);
    expect(Object.getPrototypeOf(ok)).toBe(null);
    expect(validateLoadOptions(undefined)).toEqual({});
  });

  it('unknown keys get a did-you-mean, including common spellings from other libraries', () => {
    expect(errorOf({ thread: 2 }).message).toMatch(/^Unknown option "thread": did you mean "threads"\?/);
    expect(errorOf({ n_ctx: 2 }).message).toMatch(/did you mean "contextLength"/);
    expect(errorOf({ contextlength: 2 }).message).toMatch(/did you mean "contextLength"/);
    expect(errorOf({ wibble: 2 }).message).toMatch(/^Unknown option "wibble" \(known options: threads, /);
    expect(errorOf({ thread: 2 }).option).toBe('thread');
  });

  it('types and ranges, in the decode options\' wording', () => {
    expect(errorOf({ threads: '4' }).message).toBe(`Expected integer in [1, ${maxThreads()}] for threads but received "4" (string)`);
    expect(errorOf({ threads: 1024 }).option).toBe('threads');
    expect(maxThreads()).toBe(Math.max(4, 2 * availableParallelism()));
    expect(errorOf({ contextLength: 0 }).option).toBe('contextLength');
    expect(errorOf({ gpu: true }).message).toMatch(/one of 'auto', 'cuda', 'cpu', false for gpu/);
    expect(errorOf({ signal: { aborted: false } }).message).toMatch(/AbortSignal for signal/);
    expect(errorOf({ cudaPluginPaths: [1] }).option).toBe('cudaPluginPaths');
    expect(errorOf({ pollSteps: 'yes' }).message).toBe('Expected boolean for pollSteps but received "yes" (string)');
  });

  it('precision and dtype (issue 13): every listed value accepted, others named', () => {
    expect(LOAD_OPTIONS.precision.available).toBeUndefined();
    expect(LOAD_OPTIONS.dtype.available).toBeUndefined();
    for (const precision of ['exact', 'fast']) expect(() => validateLoadOptions({ precision } as never)).not.toThrow();
    for (const dtype of ['bf16', 'f16', 'f32', 'q8']) expect(() => validateLoadOptions({ dtype } as never)).not.toThrow();
    expect(() => validateLoadOptions({ isa: 'avx2_vnni' } as never)).not.toThrow();
    expect(errorOf({ precision: 'turbo' }).message).toMatch(/one of 'exact', 'fast' for precision/);
    expect(errorOf({ dtype: 'int4' }).message).toMatch(/one of 'bf16', 'f16', 'f32', 'q8' for dtype/);
  });

  it('limits: nested keys checked the same way, defaults filled in', () => {
    expect(errorOf({ limits: { templateMS: 1 } }).message).toMatch(/^Unknown option "limits.templateMS": did you mean "limits.templateMs"\?/);
    expect(errorOf({ limits: { imagePixels: -1 } }).option).toBe('limits.imagePixels');
    expect(errorOf({ limits: 5 }).option).toBe('limits');
    expect(resolveLimits(undefined)).toEqual(LIMIT_DEFAULTS);
    expect(resolveLimits({ templateMs: 5, imageBytes: undefined })).toEqual({ ...LIMIT_DEFAULTS, templateMs: 5 });
  });

  it('reads own enumerable keys only: __proto__ from JSON.parse is an unknown key, inherited values are ignored', () => {
    expect(errorOf(JSON.parse('{"__proto__": {"threads": 1024}}')).message).toMatch(/^Unknown option "__proto__"/);
    expect(validateLoadOptions(Object.create({ threads: 1024 }))).toEqual({});
    const copy = ownCopy(JSON.parse('{"__proto__": {"x": 1}, "a": 2}'));
    expect(Object.getPrototypeOf(copy)).toBe(null);
    expect(Object.keys(copy)).toEqual(['__proto__', 'a']);
    expect(errorOf(null).message).toMatch(/object for options/);
    expect(errorOf([]).message).toMatch(/object for options/);
  });
});
