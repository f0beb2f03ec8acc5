// README.md's JavaScript examples run as written: each ```js block that imports 'diffusionvl'
// (outside the Electron section, which needs Electron) is saved as an .mjs file inside the
// package folder — so 'diffusionvl' resolves to this package by its own name, as it would for
// a user who installed it — and run with plain `node` (Node 20: no TypeScript, no flags).
// Needs the built package (dist/, `npm run build`), as CI does before the tests.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { packageRoot } from '../../lib/native/index.js';

const root = packageRoot();
const readme = readFileSync(join(root, 'README.md'), 'utf8');
const beforeElectron = readme.slice(0, readme.indexOf('## Electron'));
const blocks = [...beforeElectron.matchAll(/```js\n([\s\S]*?)```/g)].map((m) => m[1]).filter((b) => b.includes("from 'diffusionvl'"));
const dir = join(root, '.cache', 'readme-examples');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('README examples', () => {
  it('there are runnable examples, and the Electron section shows main, utilityProcess and asarUnpack', () => {
    expect(blocks.length).toBeGreaterThanOrEqual(3);
    const electron = readme.slice(readme.indexOf('## Electron'));
    for (const s of ['utilityProcess', 'asarUnpack', 'prebuilds/**', 'models/**', 'sharp', 'main process']) expect(electron).toContain(s);
    expect(readme).not.toMatch(/^await using/m);   // not parseable by Node 20 outside TypeScript
    expect(existsSync(join(root, 'dist', 'index.js'))).toBe(true);
  });

  blocks.forEach((code, i) => {
    it(`example ${i + 1} runs with plain node`, () => {
      mkdirSync(dir, { recursive: true });
      const file = join(dir, `example-${i + 1}.mjs`);
      writeFileSync(file, code);
      const r = spawnSync(process.execPath, [file], { cwd: root, encoding: 'utf8', timeout: 120_000, env: { ...process.env, NODE_OPTIONS: '' } });
      expect(r.status, `${code}\n--- stderr:\n${r.stderr}`).toBe(0);
      expect(r.stdout.length).toBeGreaterThan(0);
    });
  });
});
