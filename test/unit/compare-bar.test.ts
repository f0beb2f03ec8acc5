// compare-bar.test.ts — the pieces of the parent-vs-child comparison that judge answers and rows
// (lib/eval.ts hasRepeatedWord, lib/cli/compare.ts countRepeats, defaultSetting, qualityBar) on
// hand-made inputs: which answers count as degenerate, which setting a generation_config names,
// and issue 16's bar on both kinds of held-out set.
import { describe, expect, it } from 'vitest';
import { countRepeats, defaultSetting, qualityBar, type CompareRow } from '../../lib/cli/compare.js';
import { hasRepeatedWord, type EvalItemResult, type EvalResult } from '../../lib/eval.js';

describe('hasRepeatedWord', () => {
  it('flags a word repeated back to back, case and punctuation aside', () => {
    expect(hasRepeatedWord('A triangle triangle the the top.')).toBe(true);
    expect(hasRepeatedWord('A red circle at the top left.')).toBe(false);
    expect(hasRepeatedWord('The the cat.')).toBe(true);
    expect(hasRepeatedWord('at the. The end')).toBe(true);
    expect(hasRepeatedWord('')).toBe(false);
  });

  it('not when the expected answer repeats the same word (a reversal "a a b")', () => {
    expect(hasRepeatedWord('Reversed: a a b', 'Reversed: a a b')).toBe(false);
    expect(hasRepeatedWord('Reversed: b b a', 'Reversed: b a a')).toBe(true);
  });
});

const item = (id: string, got: string, expected = 'A red circle.'): EvalItemResult =>
  ({ id, kind: 'describe', expected, got, ok: got === expected, forwards: 1, tokens: 1, finishReason: 'stop' });
const result = (items: EvalItemResult[]) => ({ items } as EvalResult);

describe('countRepeats', () => {
  it("counts the child's repeated-word answers only where the parent's answer is fluent", () => {
    const parent = result([item('a', 'A red circle.'), item('b', 'A red red circle.'), item('c', 'A blue square.')]);
    const child = result([item('a', 'A circle circle.'), item('b', 'A red red circle.'), item('c', 'A blue square.')]);
    expect(countRepeats(child, parent)).toBe(1);
    expect(countRepeats(parent)).toBe(1);
  });
});

describe('defaultSetting', () => {
  it("names the setting a model's generation_config.json makes its default", () => {
    expect(defaultSetting({ steps: 8, remasking: 'dynamic', threshold: 0.9 })).toMatchObject({
      name: 'child dynamic 0.9', request: { mode: 'diffusion', steps: 8, remasking: 'dynamic', threshold: 0.9 },
    });
    expect(defaultSetting({ steps: 4, remasking: 'dynamic', threshold: 0.85 }).name).toBe('child dynamic 0.85, 4 steps');
    expect(defaultSetting({}).name).toBe('child static 8');
    expect(defaultSetting({ steps: 2 }).request).toEqual({ mode: 'diffusion', steps: 2, remasking: 'static' });
  });
});

const row = (setting: string, exactMatch: number, perKind: Record<string, number>, forwardsPerToken = 1, repeats = 0): CompareRow =>
  ({ setting, exactMatch, perKind, forwardsPerToken, tokensPerSecond: 1, speedupVsParent: 1, n: 100, seconds: 1, repeats });

describe('qualityBar (issue 16)', () => {
  const child = 'child dynamic 0.9';
  it('in-distribution: 95 % each, every kind ≥ 90 %, ≤ 0.45 forwards per token, no repeats', () => {
    const good = [row('parent AR', 0.96, { where: 0.91, describe: 0.99 }), row(child, 0.95, { where: 0.9, describe: 1 }, 0.4)];
    expect(qualityBar(good, child).every((b) => b.pass)).toBe(true);
    const bad = [row('parent AR', 0.94, { where: 0.89 }), row(child, 0.96, { where: 0.95 }, 0.46, 2)];
    const failed = qualityBar(bad, child).filter((b) => !b.pass).map((b) => b.name);
    expect(failed).toEqual([
      'parent AR exact match ≥ 95 %', 'parent AR: every kind ≥ 90 %',
      `${child} is dynamic at ≤ 0.45 forwards per answer token`, `${child}: no repeated-word answer where the parent is fluent`,
    ]);
  });

  it('unseen renderer: parent ≥ 90 %, child ≥ 88 %, describe ≥ 85 % for both', () => {
    const rows = [row('parent AR', 0.9, { describe: 0.85, where: 0.5 }), row(child, 0.88, { describe: 0.84 }, 0.3)];
    const bar = qualityBar(rows, child, 'unseen');
    expect(bar.filter((b) => !b.pass).map((b) => b.name)).toEqual([`${child}: describe ≥ 85 %`]);
    expect(bar.some((b) => b.name.includes('every kind'))).toBe(false);
  });

  it('a static default never passes the dynamic budget', () => {
    const rows = [row('parent AR', 1, {}), row('child static 2', 1, {}, 0.3)];
    expect(qualityBar(rows, 'child static 2').find((b) => b.name.includes('forwards'))?.pass).toBe(false);
  });
});
