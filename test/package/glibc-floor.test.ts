// The glibc floor of the native addon (README "Requirements"): every dynamic symbol version it
// imports, read with `objdump -T`, must be at most GLIBC_2.17; nothing from libstdc++
// (GLIBCXX_*, CXXABI_*: it is linked in) and libgcc_s at most GCC_4.2.0. Checks the local build
// and the prebuild that ships. How the floor is kept: csrc/compat/glibc_compat.{h,cpp}, CMakeLists.txt.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { packageRoot } from '../../lib/native/index.js';

const root = packageRoot();
const FLOOR = [2, 17];
const haveObjdump = spawnSync('objdump', ['--version']).status === 0;
const binaries = ['build/Release/diffusionvl.node', 'prebuilds/linux-x64/diffusionvl.glibc.node'].map((f) => join(root, f)).filter((f) => existsSync(f));

function versions(file: string): Map<string, string[]> {
  const out = execFileSync('objdump', ['-T', file], { encoding: 'utf8', maxBuffer: 64 << 20 });
  const by = new Map<string, string[]>();
  for (const line of out.split('\n')) {
    const m = /\*UND\*\s+\S+\s+\(?([A-Z_]+_[\d.]+)\)?\s+(\S+)$/.exec(line);
    if (!m) continue;
    by.set(m[1], [...(by.get(m[1]) ?? []), m[2]]);
  }
  return by;
}

const cmp = (a: number[], b: number[]) => { for (let i = 0; i < Math.max(a.length, b.length); i++) { const d = (a[i] ?? 0) - (b[i] ?? 0); if (d) return d; } return 0; };

describe.skipIf(!haveObjdump || process.platform !== 'linux' || process.arch !== 'x64')('glibc floor', () => {
  it('there is an addon to check', () => expect(binaries.length).toBeGreaterThan(0));

  for (const file of binaries) {
    it(`${file.slice(root.length + 1)}: GLIBC ≤ ${FLOOR.join('.')}, no GLIBCXX/CXXABI, GCC ≤ 4.2.0`, () => {
      const v = versions(file);
      expect(v.size).toBeGreaterThan(0);
      const tooNew: string[] = [];
      for (const [ver, syms] of v) {
        const [lib, num] = [ver.slice(0, ver.lastIndexOf('_')), ver.slice(ver.lastIndexOf('_') + 1).split('.').map(Number)];
        const bad = lib === 'GLIBC' ? cmp(num, FLOOR) > 0 : lib === 'GCC' ? cmp(num, [4, 2, 0]) > 0 : true;
        if (bad) tooNew.push(`${ver}: ${syms.join(', ')}`);
      }
      expect(tooNew).toEqual([]);
    });
  }

  it('README states the same floor', () => {
    expect(readFileSync(join(root, 'README.md'), 'utf8')).toContain(`glibc ≥ ${FLOOR.join('.')}`);
  });
});
