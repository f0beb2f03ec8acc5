// Backend selection without a GPU (runs in CI): getBackendInfo reports CPU with a structured
// reason, an explicit CUDA request throws, DIFFUSIONVL_GPU overrides the option and 'cpu' skips
// probing, and the native loader (csrc/cuda/host/cuda_loader.cpp) names each failure it meets on
// the way to a device: missing plugin, a file that is not a plugin, a wrong API version, no
// device, a second plugin. Fake plugins are compiled here from csrc/core/backend.h with the
// system C++ compiler (skipped, with the reason, when there is none); the driver check is
// passed by pointing the loader's driver seam at libc.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { BackendError, OptionError } from '../../lib/errors.js';
import { type BackendAddon, cudaRunOp, getBackendInfo } from '../../lib/native/backend.js';
import { loadAddon, packageRoot, tensorFromArray } from '../../lib/native/index.js';
import { findCompiler } from '../helpers/compiler.js';

const ENV_KEYS = ['DIFFUSIONVL_GPU', 'DIFFUSIONVL_CUDA_PLUGIN'] as const;
const saved = Object.fromEntries(ENV_KEYS.map((k) => [k, process.env[k]]));
const restore = () => {
  for (const k of ENV_KEYS) {
    if (saved[k] === undefined) delete process.env[k];
    else process.env[k] = saved[k];
  }
};

/** Whether this host has the NVIDIA driver library (then 'no-driver' is not the answer). */
function hostHasDriver(): boolean {
  try {
    return /libcuda\.so\.1\b/.test(execFileSync('/sbin/ldconfig', ['-p'], { encoding: 'utf8' }));
  } catch {
    return false;
  }
}
const hasDriver = hostHasDriver();
const addon = () => loadAddon() as unknown as BackendAddon & {
  cudaArchsCover(archs: string, major: number, minor: number): { covered: boolean; known: boolean };
};

describe('getBackendInfo', () => {
  beforeEach(() => {
    for (const k of ENV_KEYS) delete process.env[k];
  });
  afterEach(restore);

  it('reports the CPU and, with no NVIDIA driver, CUDA unavailable for reason no-driver', () => {
    const info = getBackendInfo();
    expect(info.cpu.isaLevels).toContain(info.cpu.isa);
    expect(info.cpu.physicalCores).toBeGreaterThanOrEqual(1);
    if (hasDriver) {
      // A GPU host: the GPU suite checks this path; here only the shape of the answer.
      expect(info.backend).toBe(info.cuda.available ? 'cuda' : 'cpu');
      return;
    }
    expect(info.backend).toBe('cpu');
    expect(info.cuda.available).toBe(false);
    expect(info.cuda.reason).toBe('no-driver');
    expect(info.cuda.detail).toMatch(/libcuda\.so\.1/);
    expect(info.cuda.device).toBeUndefined();
  });

  it("throws a BackendError carrying the reason when gpu: 'cuda' is unavailable", () => {
    if (hasDriver && getBackendInfo().cuda.available) return;  // nothing to refuse on this host
    let err: unknown;
    try {
      getBackendInfo({ gpu: 'cuda' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(BackendError);
    const be = err as BackendError;
    expect(be.backend).toBe('cuda');
    expect(be.reason).toBe(getBackendInfo().cuda.reason);
    expect(be.message).toMatch(/CUDA was requested \(gpu: 'cuda'\) but is unavailable/);
  });

  it('DIFFUSIONVL_GPU=cpu skips probing and wins over the option', () => {
    process.env.DIFFUSIONVL_GPU = 'cpu';
    process.env.DIFFUSIONVL_CUDA_PLUGIN = '/nonexistent/would-be-plugin-missing.so';
    const spy = vi.spyOn(addon(), 'backendProbe');
    try {
      const info = getBackendInfo({ gpu: 'cuda' });
      expect(info.backend).toBe('cpu');
      expect(info.cuda).toEqual({ available: false, reason: 'disabled', detail: 'GPU disabled by DIFFUSIONVL_GPU=cpu' });
      expect(spy).not.toHaveBeenCalled();
    } finally {
      spy.mockRestore();
    }
  });

  it('gpu: false skips probing too', () => {
    const spy = vi.spyOn(addon(), 'backendProbe');
    try {
      expect(getBackendInfo({ gpu: false }).cuda.reason).toBe('disabled');
      expect(spy).not.toHaveBeenCalled();
    } finally {
      spy.mockRestore();
    }
  });

  it('DIFFUSIONVL_GPU=cuda turns gpu: false into an explicit request', () => {
    if (hasDriver) return;
    process.env.DIFFUSIONVL_GPU = 'cuda';
    expect(() => getBackendInfo({ gpu: false })).toThrow(BackendError);
  });

  it('rejects a bad DIFFUSIONVL_GPU or gpu option with an OptionError naming it', () => {
    process.env.DIFFUSIONVL_GPU = 'metal';
    expect(() => getBackendInfo()).toThrow(OptionError);
    expect(() => getBackendInfo()).toThrow(/DIFFUSIONVL_GPU must be cpu, cuda or auto, got 'metal'/);
    delete process.env.DIFFUSIONVL_GPU;
    expect(() => getBackendInfo({ gpu: 'vulkan' as never })).toThrow(/gpu must be/);
    expect(() => getBackendInfo({ device: -1 })).toThrow(/device must be/);
  });

  it('device ops refuse to run while the CUDA backend is unavailable', () => {
    if (getBackendInfo().cuda.available) return;
    const a = tensorFromArray('f32', [3], new Float32Array(3));
    expect(() => cudaRunOp('add', [a, a])).toThrow(BackendError);
    expect(() => cudaRunOp('add', [a, a])).toThrow(/CUDA backend is not available/);
  });

  it('a DIFFUSIONVL_CUDA_PLUGIN that does not exist gives plugin-missing, whatever the host', () => {
    const fake = '/nonexistent/dir/libdiffusionvl_cuda.so';
    process.env.DIFFUSIONVL_CUDA_PLUGIN = fake;
    const info = getBackendInfo();
    expect(info.backend).toBe('cpu');
    expect(info.cuda.reason).toBe('plugin-missing');
    expect(info.cuda.pluginPath).toBe(fake);
    expect(info.cuda.detail).toContain(`DIFFUSIONVL_CUDA_PLUGIN=${fake} is not a file`);
    expect(() => getBackendInfo({ gpu: 'cuda' })).toThrow(/plugin-missing/);
  });
});

describe('the arch rule (which builds a compute capability can run)', () => {
  const cover = (a: string, maj: number, min: number) => addon().cudaArchsCover(a, maj, min);
  const dflt = '75-real,80-real,86-real,89-real,90-real,90-virtual';
  it.each([
    // [archs, cc, covered, why]
    [dflt, '7.5', true, 'sm_75 SASS'],
    [dflt, '8.7', true, 'sm_86 SASS runs on a newer minor of major 8'],
    [dflt, '9.0', true, 'H100/H200: sm_90 SASS'],
    [dflt, '10.0', true, 'Blackwell: JIT from compute_90 PTX'],
    [dflt, '7.0', false, 'Volta: below every arch (CUDA 13 dropped it)'],
    ['90-real', '10.0', false, 'SASS does not cross majors and there is no PTX'],
    ['90-real', '8.9', false, 'SASS does not run on an older device'],
    ['90a-real', '9.0', true, 'arch-specific SASS on its exact device'],
    ['86', '8.9', true, 'a plain number is SASS and PTX'],
    ['80-virtual', '7.5', false, 'PTX does not run on an older device'],
  ])('%s on %s → %s (%s)', (archs, cc, covered) => {
    const [maj, min] = (cc as string).split('.').map(Number);
    expect(cover(archs as string, maj, min)).toEqual({ covered, known: true });
  });
  it('does not judge lists it cannot read', () => {
    expect(cover('native', 9, 0)).toEqual({ covered: false, known: false });
    expect(cover('all-major', 9, 0).known).toBe(false);
  });
});

// ---- the loader past the driver, with fake plugins ---------------------------------------

const cxx = findCompiler();
const work = mkdtempSync(join(tmpdir(), 'dvl-fake-plugin-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

// A plugin with the real entry point whose device query reports no GPU (or, with
// FAKE_API_VERSION, an API version this addon does not speak; with FAKE_STORAGE_GROWTH, a
// Storage layout that differs from this build).
const FAKE_SRC = String.raw`
#include <cstdio>
#include "core/backend.h"
#include "core/tensor.h"
#ifndef FAKE_STORAGE_GROWTH
#define FAKE_STORAGE_GROWTH 0
#endif
#ifndef FAKE_API_VERSION
#define FAKE_API_VERSION DVL_BACKEND_API_VERSION
#endif
static dvl_status count(int* n, dvl_backend_error* e) {
  *n = 0;
  std::snprintf(e->code, sizeof e->code, "no-device");
  std::snprintf(e->message, sizeof e->message, "fake plugin: no device");
  return 1;
}
extern "C" __attribute__((visibility("default"))) int dvl_cuda_plugin_init(int v, dvl_backend_api* out) {
  out->api_version = FAKE_API_VERSION;
  out->struct_size = sizeof(dvl_backend_api);
  out->tensor_size = sizeof(dvl::Tensor);
  out->storage_size = sizeof(dvl::Storage) + FAKE_STORAGE_GROWTH;
  out->name = "fake";
  out->archs = "90-real";
  out->runtime_version = 13000;
  if (v != FAKE_API_VERSION) return 1;
  out->device_count = count;
  return 0;
}
`;

function buildFake(name: string, defines: string[] = [], source = FAKE_SRC): string {
  const src = join(work, `${name}.cpp`);
  const out = join(work, `${name}.so`);
  writeFileSync(src, source);
  execFileSync(cxx!, ['-std=c++17', '-shared', '-fPIC', '-fvisibility=hidden', `-I${join(packageRoot(), 'csrc')}`, ...defines, src, '-o', out]);
  return out;
}

const probe = (pluginPath: string) => addon().backendProbe({ pluginPath, driverPath: 'libc.so.6' });

describe.skipIf(!cxx)(`native loader with fake plugins${cxx ? '' : ' (skipped: no C++ compiler on PATH)'}`, () => {
  // Order matters: the last test loads a plugin for good (the loader never unloads one).
  it('a file that is not a shared library: plugin-load-failed with the dlerror text', () => {
    const junk = join(work, 'junk.so');
    writeFileSync(junk, 'not an ELF file\n');
    const p = probe(junk);
    expect(p.available).toBe(false);
    expect(p.reason).toMatch(/^plugin-load-failed: .*junk\.so/);
  });

  it('a shared library without dvl_cuda_plugin_init: plugin-load-failed naming the symbol', () => {
    const lib = buildFake('noentry', [], 'extern "C" int something_else() { return 1; }\n');
    expect(probe(lib).reason).toBe('plugin-load-failed: no dvl_cuda_plugin_init');
  });

  it('a plugin built for another API version: version-mismatch, both versions named', () => {
    const lib = buildFake('v999', ['-DFAKE_API_VERSION=999']);
    const p = probe(lib);
    expect(p.reason).toBe('version-mismatch');
    expect(p.pluginApiVersion).toBe(999);
    expect(p.detail).toContain(`implements backend API 999, this addon needs ${p.apiVersion}`);
  });

  it('a plugin built from another Storage layout under the same version: version-mismatch', () => {
    const lib = buildFake('layout', ['-DFAKE_STORAGE_GROWTH=8']);
    const p = probe(lib);
    expect(p.reason).toBe('version-mismatch');
    expect(p.detail).toMatch(/different tensor layout/);
  });

  it('a matching plugin whose driver sees no GPU: no-device; then a second plugin is refused', () => {
    const lib = buildFake('nodev');
    const p = probe(lib);
    expect(p.reason).toBe('no-device');
    expect(p.runtimeVersion).toBe(13000);
    expect(p.archs).toBe('90-real');
    const other = buildFake('nodev2');
    expect(probe(other).reason).toBe('plugin-conflict');
    expect(probe(lib).reason).toBe('no-device');  // cached, same answer
  });
});
