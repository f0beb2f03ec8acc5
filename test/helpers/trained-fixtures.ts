// trained-fixtures.ts — the fixture format train/fixtures.py writes (fixtures.json: held-out
// cases with the PyTorch reference decoder's ids) and the engine-side steps both of its readers
// take: test/model/trained-fixtures.test.ts (CI) and train/check_engine.ts (end of a training run).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { userMessage } from '../../lib/eval.js';
import type { ChatMessage } from '../../lib/text/prompt.js';
import type { GenerateRequest, Model } from '../../lib/model/model.js';

export interface FixtureRun { ids: number[]; text: string; exact_match: boolean; min_argmax_gap: number | null; min_select_gap: number | null; min_threshold_gap: number | null }
export interface FixtureCase {
  id: string; kind: string; question: string; expected_answer: string; image: string | null; prompt_ids: number[];
  runs: Record<string, FixtureRun>; prompt_logits: { rows: number[]; block_size: number; logits: number[][] };
  parent_ar?: { ids: number[]; text: string; min_argmax_gap: number };
}
/** A decoder setting of the fixtures; `from_generation_config`: the model's own default (its
 *  generation_config.json), so the request leaves steps, remasking and threshold out. */
export interface FixtureSetting { name: string; strategy: string; steps: number; threshold: number | null; from_generation_config?: boolean }
export interface Fixtures { gen_length: number; block_size: number; settings: FixtureSetting[]; cases: FixtureCase[] }

/** Prompt logits: f32 engine vs f64 reference, error relative to the row's largest |logit|.
 *  Measured on the bundled model (2026-11-25, AVX2): at most 4.5e-7 over all 30 cases, text and
 *  pictures alike — f32 rounding through the tower and decoder. 1e-5 leaves 20× for other SIMD
 *  levels' summation orders, and stays 50× below the 5e-4 that one real mismatch caused (the f64
 *  reference skipped the bf16 rounding of pixel_values that a bf16 checkpoint's patch embed does). */
export const LOGIT_TOLERANCE = 1e-5;

export function readFixtures(dir: string): Fixtures {
  return JSON.parse(readFileSync(join(dir, 'fixtures.json'), 'utf8')) as Fixtures;
}

/** The case's user turn: its picture (a path in the fixtures folder) first, then the question. */
export function caseMessages(dir: string, c: FixtureCase): ChatMessage[] {
  return userMessage(c.question, c.image ? [join(dir, c.image)] : []);
}

/** The generate() request that reproduces one fixture setting at temperature 0. */
export function settingRequest(fx: Fixtures, s: FixtureSetting, messages: ChatMessage[]): GenerateRequest {
  if (s.from_generation_config) return { messages, maxTokens: fx.gen_length, temperature: 0 };
  return {
    messages, maxTokens: fx.gen_length, blockSize: fx.block_size, steps: s.steps, temperature: 0,
    remasking: s.strategy === 'low_confidence_dynamic' ? 'dynamic' : 'static', threshold: s.threshold ?? 0.85,
  };
}

/** Per fixture row of the block-masked prompt logits: the engine's largest relative error (Infinity for NaN). */
export async function promptLogitErrors(model: Model, c: FixtureCase, messages: ChatMessage[]): Promise<number[]> {
  const pl = c.prompt_logits;
  const got = await model.promptLogits({ messages }, { rows: pl.rows, mask: 'block', blockSize: pl.block_size });
  const V = pl.logits[0].length;
  return pl.logits.map((ref, r) => {
    const scale = Math.max(...ref.map(Math.abs));
    let worst = 0;
    for (let v = 0; v < V; v++) {
      const g = got.logits[r * V + v];
      worst = Number.isNaN(g) ? Infinity : Math.max(worst, Math.abs(g - ref[v]) / scale);
    }
    return worst;
  });
}
