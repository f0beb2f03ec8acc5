// The `diffusionvl` command: run (JSON output, images), eval, inspect, the bundled default
// model, and the errors a user sees.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel } from '../../lib/index.js';
import { userMessage } from '../../lib/eval.js';
import { bundledModelsRoot } from '../../lib/models.js';
import { packageRoot } from '../../lib/native/index.js';
import { writeTinyModel, type TinyModel } from '../helpers/tinyModel.js';

const PHOTO = fileURLToPath(new URL('../fixtures/images/inputs/photo-256x193.png', import.meta.url));
const VISION = { kind: 'qwen2_5_vl', depth: 2, hiddenSize: 32, numHeads: 2, intermediateSize: 48, patchSize: 14, temporalPatchSize: 2, spatialMergeSize: 2, fullAttBlockIndexes: [1] } as const;

let m: TinyModel, vlm: TinyModel, scratch: string;
beforeAll(async () => {
  m = await writeTinyModel({ diffusion: true, seed: 11 });
  vlm = await writeTinyModel({ diffusion: true, seed: 12, pixels: { min: 28 * 28 * 4, max: 28 * 28 * 16 }, vision: VISION });
  scratch = mkdtempSync(join(tmpdir(), 'dvl-cli-'));
});
afterAll(() => { for (const d of [m.dir, vlm.dir, scratch]) rmSync(d, { recursive: true, force: true }); });

function cli(...args: string[]) {
  return spawnSync(process.execPath, ['--import', 'tsx', 'lib/cli/main.ts', ...args], { cwd: packageRoot(), encoding: 'utf8', timeout: 120_000 });
}

describe('diffusionvl CLI', () => {
  it('run --json prints the result with stats', () => {
    const r = cli('run', m.dir, '--prompt', 'Hello there', '--max-tokens', '16', '--steps', '4', '--json');
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.mode).toBe('diffusion');
    expect(out.ids.length).toBeLessThanOrEqual(16);
    expect(out.stats.forwards).toBeGreaterThan(0);
  });

  it('run streams text and prints a stats line', () => {
    const r = cli('run', m.dir, '--prompt', 'Hi', '--max-tokens', '8', '--mode', 'diffusion');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/\[diffusion\] \d+ tokens, \d+ forwards/);
  });

  it('run --profile says where the request went: its phases and the ops, in text and in --json', () => {
    const t = cli('run', m.dir, '--prompt', 'Hi', '--max-tokens', '8', '--steps', '4', '--profile');
    expect(t.status, t.stderr).toBe(0);
    expect(t.stderr).toMatch(/time: prompt [\d.]+ ms, images [\d.]+ ms, vision tower [\d.]+ ms, prefill [\d.]+ ms, decoding [\d.]+ ms \(\d+ tokens\); [\d.]+ ms inside the ops/);
    expect(t.stderr).toMatch(/ {2}matmul \w+ ×\d+ +[\d.]+ ms/);
    const j = cli('run', m.dir, '--prompt', 'Hi', '--max-tokens', '8', '--steps', '4', '--profile', '--json');
    expect(j.status, j.stderr).toBe(0);
    const out = JSON.parse(j.stdout);
    expect(out.profile.totalMs).toBeGreaterThan(0);
    expect(out.profile.ops.some((l: { op: string; calls: number }) => l.op.startsWith('rms_norm') && l.calls > 0)).toBe(true);
    expect(JSON.parse(cli('run', m.dir, '--prompt', 'Hi', '--max-tokens', '4', '--json').stdout).profile).toBeUndefined();
  });

  it('inspect reports the backend and the model config', () => {
    const r = cli('inspect', m.dir);
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.backend.cpu.isaLevels).toContain('scalar');
    expect(out.model.diffusion.maskTokenId).toBe(m.maskId);
  });

  it('bad usage and bad input give a message and a non-zero exit code', () => {
    expect(cli('frobnicate').status).toBe(2);
    expect(cli('run', m.dir, '--no-such-flag').status).toBe(2);
    const missing = cli('run', '/nonexistent/model');
    expect(missing.status).toBe(1);
    expect(missing.stderr).toMatch(/ConfigError|config\.json/);
    const bad = cli('run', m.dir, '--steps', '0');
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/OptionError.*steps/);
  });

  it('run --image: the image goes into the prompt (same ids as the library with that message)', async () => {
    const r = cli('run', vlm.dir, '--image', PHOTO, '--prompt', 'Describe the image.', '--max-tokens', '8', '--steps', '4', '--json');
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.stats.imageTokens).toHaveLength(1);
    expect(out.stats.imageTokens[0]).toBeGreaterThan(0);
    const model = await loadModel(vlm.dir, { threads: 1 });
    try {
      const want = await model.generate({ messages: userMessage('Describe the image.', [PHOTO]), maxTokens: 8, steps: 4 });
      expect(out.ids).toEqual(want.ids);
    } finally {
      model.dispose();
    }
  });

  it('run --image with a missing or undecodable file: ImageError naming the file, exit 1', () => {
    const missing = join(scratch, 'no-such-image.png');
    const r = cli('run', vlm.dir, '--image', PHOTO, '--image', missing, '--prompt', 'x');
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`ImageError (DVL_IMAGE): ${missing}: cannot read image file (no such file)`);
    const junk = join(scratch, 'junk.png');
    writeFileSync(junk, 'not an image');
    const r2 = cli('run', vlm.dir, '--image', junk, '--max-tokens', '4');
    expect(r2.status).toBe(1);
    expect(r2.stderr).toMatch(new RegExp(`ImageError \\(DVL_IMAGE\\): ${junk.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: cannot decode image`));
  });

  it('eval --json: exact match over a held-out folder', () => {
    const dir = join(scratch, 'heldout');
    mkdirSync(join(dir, 'images'), { recursive: true });
    copyFileSync(PHOTO, join(dir, 'images', 'h-000.png'));
    writeFileSync(join(dir, 'heldout.json'), JSON.stringify({ format: 'diffusionvl-heldout/1', seed: 0, items: [
      { id: 'h-000', kind: 'describe', question: 'Describe the image.', answer: 'A red circle at the top left.', image: 'images/h-000.png' },
      { id: 'h-001', kind: 'text_reverse', question: 'Reverse the letters: a b c', answer: 'c b a', image: null },
      { id: 'h-002', kind: 'text_reverse', question: 'Reverse the letters: x y', answer: 'y x', image: null },
    ] }));
    const r = cli('eval', vlm.dir, '--heldout', dir, '--n', '2', '--max-tokens', '8', '--steps', '4', '--json');
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.n).toBe(2);
    expect(Object.keys(out.perKind)).toEqual(['describe', 'text_reverse']);
    expect(out.perKind.describe.n + out.perKind.text_reverse.n).toBe(2);
    expect(out.forwardsPerToken).toBeCloseTo(out.forwards / out.answerTokens, 12);
    expect(out.settings).toMatchObject({ mode: 'diffusion', steps: 4, maxTokens: 8 });
    expect(r.stderr).toMatch(/eval 2\/2: exact match/);
  });

  it('no model folder: the bundled child (or, when not installed, a typed error)', () => {
    const installed = existsSync(join(bundledModelsRoot(), 'shapes-diffusionvl', 'config.json'));
    const r = cli('run', '--prompt', 'Hi', '--max-tokens', '8', '--json');
    if (installed) {
      expect(r.status, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout).mode).toBe('diffusion');
    } else {
      console.log('models/shapes-diffusionvl is not installed: checking the error instead of a run');
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/WeightsError \(DVL_MODEL_NOT_FOUND\): the bundled model 'shapes-diffusionvl' is not installed/);
    }
  });

  it('help, --help and --version exit 0 on stdout; no command is bad usage', () => {
    for (const args of [['help'], ['--help'], ['-h'], ['run', '--help']]) {
      const r = cli(...args);
      expect(r.status, args.join(' ')).toBe(0);
      expect(r.stdout).toMatch(/^usage:\n  diffusionvl run/);
    }
    const v = cli('--version');
    expect(v.status).toBe(0);
    expect(v.stdout).toMatch(/^diffusionvl \d+\.\d+\.\d+ \(node v\d+/);
    const none = cli();
    expect(none.status).toBe(2);
    expect(none.stderr).toMatch(/no command given/);
  });

  it('unknown flags and commands get a did-you-mean (exit 2); a mistyped model name a typed error (exit 1)', () => {
    const flag = cli('run', m.dir, '--stpes', '4');
    expect(flag.status).toBe(2);
    expect(flag.stderr).toMatch(/unknown option --stpes \(did you mean --steps\?\)/);
    const cmd = cli('rnu');
    expect(cmd.status).toBe(2);
    expect(cmd.stderr).toMatch(/unknown command 'rnu' \(did you mean 'run'\?\)/);
    const name = cli('run', 'shapes-diffusion', '--prompt', 'x');
    expect(name.status).toBe(1);
    expect(name.stderr).toMatch(/WeightsError \(DVL_MODEL_NOT_FOUND\): no model folder at shapes-diffusion\. Did you mean the bundled model 'shapes-diffusionvl'\?/);
    const num = cli('run', m.dir, '--max-tokens', 'lots');
    expect(num.status).toBe(1);
    expect(num.stderr).toMatch(/OptionError \(DVL_OPTION\): --max-tokens: expected a number, got 'lots'/);
    const thr = cli('run', m.dir, '--threads', '1024');
    expect(thr.status).toBe(1);
    expect(thr.stderr).toMatch(/OptionError \(DVL_OPTION\): Expected integer in \[1, \d+\] for threads/);
  });

  it('--show-steps prints each step\'s canvas as text, masked tokens as ▒', () => {
    // Static steps pinned: the bundled child's own default (dynamic 0.9) may fill a block in one step.
    const r = cli('run', '--prompt', 'Reverse the letters: a b', '--max-tokens', '8', '--steps', '8', '--remasking', 'static', '--show-steps');
    expect(r.status, r.stderr).toBe(0);
    const steps = r.stderr.split('\n').filter((l) => /^  block \d+ step \d+: /.test(l));
    expect(steps.length).toBeGreaterThan(1);
    expect(steps[0]).toContain('▒');
    expect(steps.some((l) => /Reversed|b|a/.test(l.replace(/^  block \d+ step \d+: /, '')))).toBe(true);
    expect(steps.every((l) => !/\b\d{3}\b/.test(l.replace(/^  block \d+ step \d+: /, '')))).toBe(true);   // no raw ids
    expect(r.stderr).toMatch(/\n\[diffusion\] \d+ tokens/);   // the stats line on a line of its own
  });

  it('inspect prints the memory estimate against the memory available', () => {
    const r = cli('inspect', m.dir, '--context-length', '4096');
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.memory.contextLength).toBe(4096);
    expect(out.memory.totalBytes).toBe(out.memory.weightsBytes + out.memory.kvCacheBytes + out.memory.activationBytes + out.memory.visionBytes);
    expect(out.memory.availableBytes).toBeGreaterThan(0);
    expect(out.memory.summary).toMatch(/KV cache .* \(4096 positions/);
  });

  it('bench <model> prints its table on stdout; bench exits 3 when a quality bar fails', () => {
    const b = cli('bench', m.dir, '--max-tokens', '8', '--steps', '4');
    expect(b.status, b.stderr).toBe(0);
    expect(b.stdout).toMatch(/^ar +[\d.]+ tok\/s/m);
    expect(b.stdout).toMatch(/^block8 steps 4 merged/m);
    // A held-out set whose answers no model gives: every exact-match bar fails.
    const dir = join(scratch, 'heldout-wrong');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'heldout.json'), JSON.stringify({ format: 'diffusionvl-heldout/1', seed: 0, items: [
      { id: 'w-0', kind: 'text_reverse', question: 'Reverse the letters: a b', answer: 'no model says this', image: null },
      { id: 'w-1', kind: 'text_count', question: 'How many letters are in: a b?', answer: 'nor this', image: null },
    ] }));
    const c = cli('bench', '--heldout', dir, '--n', '2');
    expect(c.status, c.stderr).toBe(3);
    expect(c.stdout).toMatch(/^FAIL /m);
  });
});
