// load.ts — find and load the native addon, explaining every failure.
//
// Order (docs/packaging.md §B4): DIFFUSIONVL_ADDON=/abs/file.node, then a local build
// (build/Release), then prebuilds/<platform>-<arch> through node-gyp-build. Each attempt's
// error is kept; if none loads, one BackendError lists the platform, what was tried and the
// command that fixes the failure seen.
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BackendError, makeNativeError } from '../errors.js';
import type { NativeAddon } from './types.js';

const require = createRequire(import.meta.url);

/** The package root: the folder holding package.json, from lib/native or dist/native. */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'CMakeLists.txt'))) return dir;
    dir = dirname(dir);
  }
  return resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
}

let cached: NativeAddon | undefined;
let cachedPath: string | undefined;

/** The file the addon was loaded from (loads it if needed). */
export function addonPath(): string {
  loadAddon();
  return cachedPath!;
}

export interface LoadAttempt {
  source: string;
  path: string;
  error: string;
}

/** Loads the addon once per process (per worker) and registers the error factory. */
export function loadAddon(): NativeAddon {
  if (cached) return cached;
  const root = packageRoot();
  const attempts: LoadAttempt[] = [];
  const tryLoad = (source: string, path: string): NativeAddon | undefined => {
    try {
      const addon = require(path) as NativeAddon;
      addon.init({ makeError: makeNativeError });
      cachedPath = path;
      return addon;
    } catch (e) {
      attempts.push({ source, path, error: (e as Error).message.split('\n')[0] });
      return undefined;
    }
  };

  const override = process.env.DIFFUSIONVL_ADDON;
  let addon: NativeAddon | undefined;
  if (override) {
    addon = tryLoad('DIFFUSIONVL_ADDON', resolve(override));
    if (!addon) throw diagnose(attempts, root, true);
  }
  for (const p of [join(root, 'build', 'Release', 'diffusionvl.node'), join(root, 'build', 'Debug', 'diffusionvl.node')]) {
    if (addon) break;
    if (existsSync(p)) addon = tryLoad('local build', p);
  }
  if (!addon) {
    try {
      const ngb = require('node-gyp-build') as { resolve?: (dir: string) => string } & ((dir: string) => unknown);
      const path = ngb.resolve ? ngb.resolve(root) : undefined;
      if (path) addon = tryLoad('prebuild', path);
    } catch (e) {
      attempts.push({ source: 'prebuild', path: join(root, 'prebuilds', `${process.platform}-${process.arch}`), error: (e as Error).message.split('\n')[0] });
    }
  }
  if (!addon) throw diagnose(attempts, root, false);
  cached = addon;
  return addon;
}

function diagnose(attempts: LoadAttempt[], root: string, overrideOnly: boolean): BackendError {
  const tuple = `${process.platform}-${process.arch}`;
  const lines = [
    `diffusionvl: could not load the native addon for ${tuple} (Node ${process.versions.node}, N-API ${process.versions.napi}).`,
    'Tried:',
    ...(attempts.length ? attempts.map((a) => `  - ${a.source}: ${a.path}\n      ${a.error}`) : ['  - nothing: no local build and no prebuild for this platform']),
    'Possible solutions:',
  ];
  if (overrideOnly) lines.push(`  - DIFFUSIONVL_ADDON points at a file that does not load; unset it or fix the path.`);
  const sawSigill = attempts.some((a) => /illegal instruction/i.test(a.error));
  const sawGlibc = attempts.some((a) => /GLIBC|GLIBCXX/.test(a.error));
  if (sawGlibc) lines.push('  - The binary needs a newer glibc/libstdc++ than this system has: build from source (below).');
  if (sawSigill) lines.push('  - This CPU lacks an instruction the binary uses: report it, and build from source (below).');
  if (!['linux-x64'].includes(tuple)) lines.push(`  - No prebuild ships for ${tuple}: build from source (below).`);
  lines.push(`  - Build from source (needs a C++17 compiler and CMake ≥ 3.18): cd ${root} && npm run build:native`);
  return new BackendError(lines.join('\n'), { backend: 'cpu', reason: 'addon-not-loaded', code: 'DVL_ADDON_LOAD' });
}
