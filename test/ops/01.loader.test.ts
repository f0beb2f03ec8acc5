// The loader: override, diagnosis on failure, and the addon in worker threads (context-aware).
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { Queue, addonPath, packageRoot, tensorFromArray } from '../../lib/native/index.js';

const root = packageRoot();

function runNode(code: string, env: Record<string, string>) {
  return spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
    cwd: root, env: { ...process.env, ...env }, encoding: 'utf8', timeout: 60_000,
  });
}

describe('addon loader', () => {
  it('explains a DIFFUSIONVL_ADDON that does not load', () => {
    const r = runNode(
      `import { loadAddon } from './lib/native/load.ts';
       try { loadAddon(); console.log('loaded'); } catch (e) { console.log(e.name + '|' + e.code + '|' + e.message); }`,
      { DIFFUSIONVL_ADDON: '/nonexistent/diffusionvl.node' },
    );
    expect(r.stdout).toContain('BackendError|DVL_ADDON_LOAD|');
    expect(r.stdout).toContain('/nonexistent/diffusionvl.node');
    expect(r.stdout).toContain('npm run build:native');
    expect(r.stdout).toContain(`${process.platform}-${process.arch}`);
  });

  it('loads in the main thread and in two worker threads at once', async () => {
    const q = new Queue({ threads: 1 });
    const a = tensorFromArray('f32', [4], new Float32Array([1, 2, 3, 4]));
    const workerCode = `
      const { parentPort } = require('node:worker_threads');
      const addon = require(${JSON.stringify(join(root, 'build', 'Release', 'diffusionvl.node'))});
      addon.init({ makeError: (c, m) => Object.assign(new Error(m), { code: c }) });
      const q = new addon.Queue({ threads: 1 });
      const x = addon.Tensor.fromArray('f32', [3], new Float32Array([1, 2, 3]));
      const [y] = q.op('scale', [x], { s: 2 });
      q.read(y).then((d) => { parentPort.postMessage(Array.from(d)); q.dispose(); });`;
    const code = workerCode.replace(JSON.stringify(join(root, 'build', 'Release', 'diffusionvl.node')), JSON.stringify(addonPath()));
    // Several rounds: each worker disposes its queue and is terminated right away, which is
    // when a napi call fails inside the addon (this used to abort the whole process).
    for (let round = 0; round < 4; round++) {
      const results = await Promise.all([0, 1].map(() => new Promise<number[]>((res, rej) => {
        const w = new Worker(code, { eval: true });
        w.once('message', (m) => { res(m as number[]); void w.terminate(); });
        w.once('error', rej);
      })));
      expect(results).toEqual([[2, 4, 6], [2, 4, 6]]);
    }
    await new Promise((r) => setTimeout(r, 200));
    expect(Array.from(await q.readF32(q.scale(a, 3)))).toEqual([3, 6, 9, 12]);
    q.dispose();
  });

  it('a worker that exits with a busy queue does not crash the process', async () => {
    const code = `
      const addon = require(${JSON.stringify(addonPath())});
      addon.init({ makeError: (c, m) => new Error(m) });
      const q = new addon.Queue({ threads: 2 });
      const x = addon.Tensor.fromArray('f32', [256, 256], new Float32Array(65536));
      for (let i = 0; i < 200; i++) q.op('matmul', [x, x], {});
      q.sync();
      require('node:worker_threads').parentPort.postMessage('queued');`;
    const w = new Worker(code, { eval: true });
    await new Promise((res) => w.once('message', res));
    const exit = await w.terminate();
    expect(typeof exit).toBe('number');
  });
});
