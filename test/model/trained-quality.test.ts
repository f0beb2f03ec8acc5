// trained-quality.test.ts — the bundled model still answers: the engine runs the AR parent and
// the DiffusionVL child greedily on all 300 held-out prompts (models/shapes-heldout, drawn from
// the task's distribution by the same generator as training, never trained on) and must keep what
// they scored when they were installed (npm run bench:trained, bench/RESULTS.md): parent AR
// 284/300, child static 8 286/300, dynamic 0.9 286/300 at 0.356 forwards per answer token.
// Temperature 0 is deterministic, so these are fixed numbers for given weights; the floors sit 2
// items lower because another SIMD level (scalar / AVX-512) rounds f32 sums differently and may
// flip a near-tie or two. A larger drop means the engine changed what it computes.
//
// Issue 6's bar (parent ≥ 90 %, child static 8 ≥ 85 %, dynamic 0.9 within 3 points of static 8
// at ≤ 0.7 forwards per token) is met: 94.7 %, 95.3 %, 95.3 % at 0.356. The floors keep it met.
import { describe, expect, it } from 'vitest';
import { compareParentChild, COMPARE_SETTINGS } from '../../lib/cli/compare.js';

const FLOOR = { 'parent AR': 282, 'child static 8': 284, 'child dynamic 0.9': 284 } as Record<string, number>;

describe('bundled model quality on the 300 held-out prompts', () => {
  it('parent AR, child static 8 and dynamic 0.9 keep their installed scores', async () => {
    const settings = COMPARE_SETTINGS.filter((s) => s.name in FLOOR);
    const res = await compareParentChild({ threads: 2, settings, precision: 'exact' });  // the scores were installed with the exact kernels
    expect(res.n).toBe(300);
    for (const [name, r] of Object.entries(res.results)) {
      expect(r.correct, `${name}: ${r.correct}/300`).toBeGreaterThanOrEqual(FLOOR[name]);
      for (const it of r.items) expect(it.finishReason, `${name} ${it.id}`).toBe('stop');
    }
    // Dynamic remasking reveals several tokens per forward on this trained model.
    expect(res.results['child dynamic 0.9'].forwardsPerToken).toBeLessThanOrEqual(0.40);
    // The whole bar of issue 6.
    for (const b of res.bar) expect(b.pass, `${b.name}: ${b.detail}`).toBe(true);
  }, 600_000);  // 900 generations: ≈ 40 s on an idle 2-core machine, several times that when it is shared
});
