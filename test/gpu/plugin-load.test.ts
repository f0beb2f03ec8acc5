// The real CUDA plugin loads into this process and answers the handshake even without a GPU:
// dlopen with every symbol resolved (-z now), static cudart, the API version, the arch list.
// Runs wherever the plugin was built next to the addon (npm run build:native:cuda, or the
// build test:gpu makes); skipped with the reason otherwise. The driver seam points at libc, so
// the loader gets past its own driver check and the plugin's runtime reports what it sees.
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { BackendAddon } from '../../lib/native/backend.js';
import { loadAddon, packageRoot } from '../../lib/native/index.js';

const addonFile = process.env.DIFFUSIONVL_ADDON
  ? resolve(process.env.DIFFUSIONVL_ADDON)
  : join(packageRoot(), 'build', 'Release', 'diffusionvl.node');
const plugin = process.env.DIFFUSIONVL_CUDA_PLUGIN || join(dirname(addonFile), 'libdiffusionvl_cuda.so');
const built = existsSync(plugin);

describe.skipIf(!built)(`CUDA plugin handshake${built ? '' : ` (skipped: no plugin at ${plugin})`}`, () => {
  it('loads, speaks this API version and reports its runtime and archs', () => {
    const p = (loadAddon() as unknown as BackendAddon).backendProbe({ pluginPath: plugin, driverPath: 'libc.so.6' });
    expect(p.pluginPath).toBe(plugin);
    expect(p.pluginApiVersion).toBe(p.apiVersion);
    expect(p.runtimeVersion).toBeGreaterThanOrEqual(12000);
    expect(p.archs).toMatch(/^\d/);
    // No GPU here: the plugin's runtime finds no driver. On a GPU host it finds the real one.
    if (!p.available) expect(['no-driver', 'no-device', 'driver-too-old', 'arch-unsupported']).toContain(p.reason);
  });
});
