// What `npm pack` would publish (its --dry-run --json file list), checked: the entry points and
// the license are in it; every relative import of a shipped script resolves to a shipped file;
// every shipped source map either points at shipped sources or carries them inline; nothing
// from test/, train/, lib/ (TypeScript sources) or dev scripts; and package.json states the
// platform (os, cpu, libc) the prebuilt addon is for. Needs the built package (npm run build).
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join, normalize } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { packageRoot } from '../../lib/native/index.js';

const root = packageRoot();
let files: Set<string>;
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));

beforeAll(() => {
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  const out = execFileSync(npm, ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  files = new Set((JSON.parse(out) as [{ files: { path: string }[] }])[0].files.map((f) => f.path));
}, 120_000);

/** Relative specifiers a JS/TS/CJS file imports or requires. */
function relativeImports(source: string): string[] {
  const out: string[] = [];
  for (const m of source.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+|\brequire\s*\(\s*)['"](\.{1,2}\/[^'"]+)['"]/g)) out.push(m[1]);
  return out;
}

describe('npm pack contents', () => {
  it('holds the entry points, the CLI, the addon, the bundled models and the license', () => {
    for (const f of ['package.json', 'README.md', 'LICENSE', 'dist/index.js', 'dist/index.d.ts', 'dist/cli/main.js', 'prebuilds/linux-x64/diffusionvl.glibc.node',
      'models/shapes-diffusionvl/config.json', 'models/shapes-diffusionvl/model.safetensors', 'models/shapes-heldout/heldout.json']) {
      expect(files.has(f), f).toBe(true);
    }
    expect(files.has(pkg.main.replace(/^\.\//, ''))).toBe(true);
    expect(files.has(pkg.types.replace(/^\.\//, ''))).toBe(true);
    expect(files.has(pkg.bin.diffusionvl.replace(/^\.\//, ''))).toBe(true);
    expect(readFileSync(join(root, 'LICENSE'), 'utf8')).toMatch(/Apache License\s+Version 2\.0/);
    expect(pkg.license).toBe('Apache-2.0');
  });

  it('ships nothing that only development needs', () => {
    const bad = [...files].filter((f) => /^(test|train|lib|bench|scripts|\.ci|build)\//.test(f) || f.endsWith('.ts') && !f.endsWith('.d.ts'));
    expect(bad).toEqual([]);
  });

  it('every relative import of a shipped script resolves to a shipped file', () => {
    const missing: string[] = [];
    let checked = 0;
    for (const f of files) {
      if (!/\.(m?js|cjs)$/.test(f)) continue;
      for (const spec of relativeImports(readFileSync(join(root, f), 'utf8'))) {
        checked++;
        const target = normalize(join(dirname(f), spec));
        if (!files.has(target) && !files.has(`${target}.js`) && !files.has(join(target, 'index.js'))) missing.push(`${f} → ${spec}`);
      }
    }
    expect(checked).toBeGreaterThan(50);
    expect(missing).toEqual([]);
  });

  it('no dangling source maps: each map\'s sources are shipped or inline', () => {
    const dangling: string[] = [];
    let maps = 0;
    for (const f of files) {
      if (!f.endsWith('.map')) continue;
      maps++;
      const map = JSON.parse(readFileSync(join(root, f), 'utf8')) as { sources: string[]; sourcesContent?: (string | null)[] };
      map.sources.forEach((s, i) => {
        const inline = typeof map.sourcesContent?.[i] === 'string';
        if (!inline && !files.has(normalize(join(dirname(f), s)))) dangling.push(`${f} → ${s}`);
      });
    }
    expect(maps).toBeGreaterThan(10);
    expect(dangling).toEqual([]);
  });

  it('package.json states the platform the prebuilt addon is for', () => {
    expect(pkg.os).toEqual(['linux']);
    expect(pkg.cpu).toEqual(['x64']);
    expect(pkg.libc).toEqual(['glibc']);
    expect(pkg.engines.node).toMatch(/^>=20/);
  });
});
