// host-backend.ts — builds the host-memory CUDA test backend (host-backend.cpp) and runs a
// check script in a child process against it (the loader keeps one plugin per process).
import { execFileSync, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { join } from 'node:path';
import { packageRoot } from '../../lib/native/index.js';

/** Compiles host-backend.cpp into `dir` with `cxx`; returns the plugin's path. */
export function buildHostBackend(cxx: string, dir: string): string {
  const root = packageRoot();
  const lib = join(dir, 'host-backend.so');
  execFileSync(cxx, ['-std=c++17', '-O1', '-shared', '-fPIC', '-fvisibility=hidden', `-I${join(root, 'csrc')}`,
    join(root, 'test', 'helpers', 'host-backend.cpp'), '-o', lib]);
  return lib;
}

/** Runs test/helpers/<script> (tsx) with `lib` as the CUDA plugin. */
export function runOnHostBackend(lib: string, script: string, timeoutMs: number): SpawnSyncReturns<string> {
  return spawnSync(process.execPath, ['--import', 'tsx', join('test', 'helpers', script)], {
    cwd: packageRoot(), encoding: 'utf8', timeout: timeoutMs,
    env: { ...process.env, DIFFUSIONVL_CUDA_PLUGIN: lib, DIFFUSIONVL_CUDA_DRIVER: 'libc.so.6', DIFFUSIONVL_GPU: '' },
  });
}
