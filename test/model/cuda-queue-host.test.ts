// cuda-queue-host.test.ts — the engine's CUDA execution path (a queue with device 'cuda':
// csrc/cuda/host/cuda_queue.cpp, loadModel's gpu option) without a GPU, through a backend plugin whose
// device memory is host memory (test/helpers/host-backend.cpp, compiled here). That backend
// rejects any pointer it did not allocate, so a host pointer where device memory belongs fails
// instead of working by accident; it implements one op (add), so both queue paths run: ops the
// backend has (host inputs uploaded first) and ops it lacks (the CPU op on copies). What this
// cannot check — the CUDA kernels themselves — test/gpu/model-cuda.test.ts does on a GPU.
//
// The trained models run in a child process (test/helpers/cuda-model-check.ts): the loader keeps
// one plugin per process, and this one must not meet the fake plugins of test/ops/backend.test.ts.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BackendError, OptionError } from '../../lib/errors.js';
import { loadModel } from '../../lib/model/model.js';
import { getBackendInfo } from '../../lib/native/backend.js';
import { packageRoot, Queue } from '../../lib/native/index.js';
import { findCompiler } from '../helpers/compiler.js';
import { buildHostBackend, runOnHostBackend } from '../helpers/host-backend.js';
import { LOGIT_TOLERANCE, readFixtures } from '../helpers/trained-fixtures.js';

const root = packageRoot();
const childDir = join(root, 'models', 'shapes-diffusionvl');
const cxx = findCompiler();
const work = mkdtempSync(join(tmpdir(), 'dvl-host-backend-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('loadModel gpu option on a machine without a usable CUDA backend', () => {
  const cudaHere = getBackendInfo({ gpu: 'auto' }).cuda.available;
  it.skipIf(cudaHere)("'auto' runs on the CPU and says why; 'cuda' is a BackendError; bad values are OptionErrors", async () => {
    const m = await loadModel(childDir, { threads: 1 });
    try {
      expect(m.backend.backend).toBe('cpu');
      expect(m.backend.cuda.available).toBe(false);
      expect(m.backend.cuda.reason).toBeTruthy();
      const r = await m.generate({ prompt: 'How many letters are in "abc"?', maxTokens: 8 });
      expect(r.text.length).toBeGreaterThan(0);
    } finally {
      m.dispose();
    }
    await expect(loadModel(childDir, { gpu: 'cuda' })).rejects.toBeInstanceOf(BackendError);
    await expect(loadModel(childDir, { gpu: 'gpu0' as never })).rejects.toBeInstanceOf(OptionError);
    expect(() => new Queue({ device: 'cuda' })).toThrow(/needs an available CUDA backend/);
    expect(() => new Queue({ device: 'tpu' as never })).toThrow(/device must be 'cpu' or 'cuda'/);
  });
});

describe.skipIf(!cxx)(`the trained models on the host-memory test backend${cxx ? '' : ' (skipped: no C++ compiler on PATH)'}`, () => {
  it('reproduce the PyTorch reference ids, logits within the CPU bound, no device memory left', () => {
    const r = runOnHostBackend(buildHostBackend(cxx!, work), 'cuda-model-check.ts', 280_000);
    expect(r.status, r.stderr).toBe(0);
    const rep = JSON.parse(r.stdout);
    expect(rep.backend).toBe('cuda');
    expect(rep.device).toBe('host-memory test backend');
    const fx = readFixtures(join(root, 'test', 'fixtures', 'trained'));
    expect(rep.cases).toBe(fx.cases.length);
    expect(rep.runs.length).toBe(fx.cases.length * (fx.settings.length + 1));
    // Same CPU kernels behind the copies: the ids must be the reference's, every one.
    expect(rep.runs.filter((x: { match: boolean }) => !x.match)).toEqual([]);
    expect(rep.logitErr).toBeLessThanOrEqual(LOGIT_TOLERANCE);
    expect(rep.queue).toEqual({
      queueDevice: 'cuda', outputDevice: 'cuda', emptyDevice: 'cuda', addOk: true, mulOk: true, kvOk: true,
      inPlaceOnHostInput: 'DVL_ARG', deviceInputOnCpuQueue: 'DVL_ARG', deviceReadOnCpuQueue: 'DVL_ARG',
    });
    // What the backend saw: both op paths, pinned staging for the weights, nothing leaked.
    const m = /host-backend: alloc=(\d+) free=(\d+) h2d=(\d+) d2h=(\d+) add=(\d+) host_alloc=(\d+) live=(\d+)/.exec(r.stderr);
    expect(m, r.stderr).not.toBeNull();
    const [alloc, free, h2d, d2h, add, hostAlloc, live] = m!.slice(1).map(Number);
    expect(alloc).toBeGreaterThan(0);
    expect(free).toBe(alloc);
    expect(live).toBe(0);
    expect(h2d).toBeGreaterThan(0);
    expect(d2h).toBeGreaterThan(0);
    expect(add).toBeGreaterThan(0);
    expect(hostAlloc).toBeGreaterThan(0);
    expect(hostAlloc).toBeLessThanOrEqual(2);   // the two staging buffers, shared by every weight load
  }, 300_000);  // ≈ 6 s alone; 60 s in CI beside the quality test (2 shared cores)
});
