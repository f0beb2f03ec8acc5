// The `diffusionvl` command: run (JSON output), inspect, and the errors a user sees.
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packageRoot } from '../../lib/native/index.js';
import { writeTinyModel, type TinyModel } from '../helpers/tinyModel.js';

let m: TinyModel;
beforeAll(async () => { m = await writeTinyModel({ diffusion: true, seed: 11 }); });
afterAll(() => rmSync(m.dir, { recursive: true, force: true }));

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
});
