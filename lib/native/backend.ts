// backend.ts — which backend runs the model: CPU always, CUDA when the plugin, the driver and
// a usable GPU are all there (docs/packaging.md §B4).
//
// getBackendInfo({ gpu }) decides once per call from, in order:
//   DIFFUSIONVL_GPU=cpu|cuda|auto   (environment; overrides the option, so a user can force CPU
//                                    without touching code — and 'cpu' skips all probing)
//   gpu: 'auto' (default) | 'cuda' | false
// 'auto' falls back to CPU and says why (cuda.reason); 'cuda' is an explicit request, so an
// unavailable CUDA throws a BackendError carrying that reason. The native probe
// (csrc/cuda/host/cuda_loader.cpp) finds the plugin via DIFFUSIONVL_CUDA_PLUGIN, else next to the
// addon, else `cudaPluginPaths`, and caches its answer per process. DIFFUSIONVL_CUDA_DRIVER names
// the driver library when libcuda.so.1 is not on the loader's path.
import { BackendError, OptionError } from '../errors.js';
import { loadAddon } from './load.js';
import type { Attrs, CpuKernelInfo, Isa, NativeTensor } from './types.js';

export type GpuOption = 'auto' | 'cuda' | 'cpu' | false;

export interface BackendOptions {
  /** 'auto' (default): CUDA when usable, else CPU. 'cuda': CUDA or a BackendError. false/'cpu': CPU, no probing. */
  gpu?: GpuOption;
  /** Files, or folders holding libdiffusionvl_cuda.so, tried after the addon's own folder. */
  cudaPluginPaths?: readonly string[];
  /** CUDA device index (default 0). */
  device?: number;
}

/** Why CUDA is not used, as a stable token (see csrc/cuda/host/cuda_loader.h). */
export type CudaReason =
  | 'disabled'
  | 'no-driver'
  | 'plugin-missing'
  | 'version-mismatch'
  | 'driver-too-old'
  | 'no-device'
  | 'arch-unsupported'
  | 'cuda-error'
  | 'plugin-conflict'
  | 'dtype-cpu-only'
  | `plugin-load-failed: ${string}`;

export interface CudaDeviceInfo {
  index: number;
  name: string;
  /** "9.0" for Hopper (H100/H200). */
  computeCapability: string;
  memoryBytes: number;
  multiprocessors: number;
  l2Bytes: number;
}

export interface BackendInfo {
  backend: 'cpu' | 'cuda';
  cpu: {
    isa: Isa; isaLevels: Isa[]; physicalCores: number;
    /** On a loaded model's backend (CPU): the matmul kernels per weight dtype at its precision. */
    kernels?: CpuKernelInfo;
  };
  cuda: {
    available: boolean;
    reason?: CudaReason;
    /** One sentence: what failed and what to do. */
    detail?: string;
    device?: CudaDeviceInfo;
    deviceCount?: number;
    pluginPath?: string;
    /** Plugin paths looked at, in order. */
    tried?: string[];
    /** CUDA version the driver supports, e.g. "12.8". */
    driverVersion?: string;
    /** CUDA runtime the plugin was built with (linked statically), e.g. "13.0". */
    runtimeVersion?: string;
    /** CMAKE_CUDA_ARCHITECTURES of the plugin. */
    archs?: string;
  };
}

/** What csrc/napi/backend_wrap.cpp returns. */
interface NativeProbe {
  available: boolean;
  reason?: string;
  detail?: string;
  pluginPath?: string;
  tried: string[];
  apiVersion: number;
  pluginApiVersion?: number;
  driverVersion?: number;
  runtimeVersion?: number;
  archs?: string;
  deviceCount: number;
  device?: CudaDeviceInfo & { sharedMemPerBlockOptin: number };
}

/** The part of the addon this file uses (declared here; types.ts describes the rest). */
export interface BackendAddon {
  backendProbe(opts: { pluginPath?: string; searchPaths?: readonly string[]; device?: number; driverPath?: string }): NativeProbe;
  cudaRunOp(name: string, inputs: readonly NativeTensor[], attrs?: Attrs): NativeTensor[];
}

function backendAddon(): BackendAddon {
  return loadAddon() as unknown as BackendAddon;
}

function cudaVersion(v: number | undefined): string | undefined {
  return v ? `${Math.floor(v / 1000)}.${Math.floor((v % 1000) / 10)}` : undefined;
}

/** Resolves the effective mode: DIFFUSIONVL_GPU wins over the option. */
function gpuMode(opt: GpuOption | undefined): { mode: 'cpu' | 'cuda' | 'auto'; source: string } {
  const env = process.env.DIFFUSIONVL_GPU?.trim().toLowerCase();
  if (env) {
    if (env !== 'cpu' && env !== 'cuda' && env !== 'auto')
      throw new OptionError(`DIFFUSIONVL_GPU must be cpu, cuda or auto, got '${process.env.DIFFUSIONVL_GPU}'`, 'DIFFUSIONVL_GPU');
    return { mode: env, source: `DIFFUSIONVL_GPU=${env}` };
  }
  const g = opt ?? 'auto';
  if (g === false || g === 'cpu') return { mode: 'cpu', source: `gpu: ${JSON.stringify(g)}` };
  if (g === 'auto' || g === 'cuda') return { mode: g, source: `gpu: '${g}'` };
  throw new OptionError(`gpu must be 'auto', 'cuda' or false, got ${JSON.stringify(g)}`, 'gpu');
}

/**
 * Reports the CPU's capabilities and whether CUDA is used, with a structured reason when not.
 * Throws BackendError only when CUDA was asked for explicitly (gpu: 'cuda' or DIFFUSIONVL_GPU=cuda)
 * and is unavailable.
 */
export function getBackendInfo(opts: BackendOptions = {}): BackendInfo {
  const { mode, source } = gpuMode(opts.gpu);
  if (opts.device !== undefined && !(Number.isInteger(opts.device) && opts.device >= 0))
    throw new OptionError(`device must be a non-negative integer, got ${opts.device}`, 'device');
  const addon = loadAddon();
  const info = addon.info();
  const cpu = { isa: info.isa, isaLevels: info.isaLevels, physicalCores: info.physicalCores };
  if (mode === 'cpu') {
    return { backend: 'cpu', cpu, cuda: { available: false, reason: 'disabled', detail: `GPU disabled by ${source}` } };
  }
  const plugin = process.env.DIFFUSIONVL_CUDA_PLUGIN;
  const driver = process.env.DIFFUSIONVL_CUDA_DRIVER;
  const p = backendAddon().backendProbe({
    pluginPath: plugin ? plugin : undefined,
    searchPaths: opts.cudaPluginPaths ?? [],
    device: opts.device ?? 0,
    driverPath: driver ? driver : undefined,
  });
  const cuda: BackendInfo['cuda'] = { available: p.available };
  if (!p.available) {
    cuda.reason = p.reason as CudaReason;
    cuda.detail = p.detail;
  }
  if (p.device) {
    const { index, name, computeCapability, memoryBytes, multiprocessors, l2Bytes } = p.device;
    cuda.device = { index, name, computeCapability, memoryBytes, multiprocessors, l2Bytes };
  }
  if (p.deviceCount) cuda.deviceCount = p.deviceCount;
  if (p.pluginPath) cuda.pluginPath = p.pluginPath;
  if (p.tried.length) cuda.tried = p.tried;
  const drv = cudaVersion(p.driverVersion);
  if (drv) cuda.driverVersion = drv;
  const rt = cudaVersion(p.runtimeVersion);
  if (rt) cuda.runtimeVersion = rt;
  if (p.archs) cuda.archs = p.archs;
  if (!p.available && mode === 'cuda') {
    throw new BackendError(
      `CUDA was requested (${source}) but is unavailable: ${p.reason}${p.detail ? ` — ${p.detail}` : ''}. ` +
        `Use gpu: 'auto' to fall back to the CPU.`,
      { backend: 'cuda', reason: p.reason },
    );
  }
  return { backend: p.available ? 'cuda' : 'cpu', cpu, cuda };
}

/**
 * Diagnostic: runs one op on the GPU with host tensors in and out (upload, run, download),
 * using the CPU op's validation and output shapes. For test/gpu; needs an available CUDA
 * backend (call getBackendInfo first) and inputs that are not pending in a queue.
 */
export function cudaRunOp(name: string, inputs: readonly NativeTensor[], attrs: Attrs = {}): NativeTensor[] {
  return backendAddon().cudaRunOp(name, inputs, attrs);
}

/** One line for reports: 'cpu (avx2)' or 'cuda (NVIDIA H100 80GB HBM3, sm 9.0)'. */
export function backendName(info: BackendInfo): string {
  if (info.backend === 'cuda' && info.cuda.device) return `cuda (${info.cuda.device.name}, sm ${info.cuda.device.computeCapability})`;
  return `cpu (${info.cpu.isa})`;
}
