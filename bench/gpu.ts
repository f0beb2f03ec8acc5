// gpu.ts — CUDA kernel micro-bench (`npx tsx bench/gpu.ts`; runs only where a GPU is; not a
// test). Prints a table and writes bench/out/gpu-bench.json (git-ignored).
//
// The kernels are timed in C++ on device-resident tensors by `dvl_cuda_selftest --bench`
// (csrc/cuda/selftest_bench.inc: method and shapes there): JS cannot time a kernel, because
// cudaRunOp uploads its inputs and downloads its outputs on every call. This script finds or
// builds that program, runs it and keeps its JSON:
//   copyGBps   device-to-device copy of 1 GiB (read + write) — the roofline
//   matmul     M = 1 / 8 / 16 on Qwen2.5 shapes, bf16 and f32 weights: µs, GB/s, % of copy
//   attention  8 queries (block mask) vs 1k / 4k cached keys, 28/4 heads, hd 128: µs, K/V GB/s
//   remask     confidence_remask over a 152064 vocabulary, 8 rows, greedy and sampling: µs
// Build folder: DIFFUSIONVL_GPU_BUILD_DIR, default build-gpu (what `npm run test:gpu` builds:
// cmake-js puts the plugin in Release/, a plain cmake build in csrc/cuda/).
// Exit: 0 when done or skipped (no GPU: the reason is printed and written), 1 on failure.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const outDir = join(root, 'bench', 'out');
const reportPath = join(outDir, 'gpu-bench.json');
const buildDir = resolve(root, process.env.DIFFUSIONVL_GPU_BUILD_DIR || 'build-gpu');
const exe = join(buildDir, 'csrc', 'cuda', 'dvl_cuda_selftest');

function write(report: Record<string, unknown>): void {
  mkdirSync(outDir, { recursive: true });
  writeFileSync(reportPath, JSON.stringify(report, null, 2) + '\n');
}

const report: Record<string, unknown> = { script: 'bench/gpu.ts', date: new Date().toISOString(), host: hostname(), buildDir };
if (!existsSync(exe)) {
  const b = spawnSync('cmake', ['--build', buildDir, '--target', 'dvl_cuda_selftest'], { cwd: root, encoding: 'utf8' });
  if (b.status !== 0 || !existsSync(exe)) {
    const reason = `no ${exe} and building it failed (exit ${b.status}); build the CUDA plugin first (npm run test:gpu, or cmake -DDIFFUSIONVL_CUDA=ON)`;
    console.log(`bench:gpu: skipped — ${reason}`);
    write({ ...report, skipped: true, reason });
    process.exit(0);
  }
}
const plugin = [join(buildDir, 'Release', 'libdiffusionvl_cuda.so'), join(buildDir, 'csrc', 'cuda', 'libdiffusionvl_cuda.so')].find(existsSync);
const r = spawnSync(exe, [...(plugin ? [plugin] : []), '--bench'], { encoding: 'utf8', maxBuffer: 16 << 20 });
const last = String(r.stdout || '').trim().split('\n').pop() || '';
let j: any;
try {
  j = JSON.parse(last);
} catch {
  console.log(`bench:gpu: FAILED — unreadable output (exit ${r.status}): ${last.slice(0, 200)} ${String(r.stderr).slice(0, 200)}`);
  write({ ...report, ok: false, exitCode: r.status, stdout: last.slice(0, 2000) });
  process.exit(1);
}
if (r.status === 2) {
  console.log(`bench:gpu: skipped — CUDA unavailable (${j.probe?.reason}: ${j.probe?.detail})`);
  write({ ...report, skipped: true, probe: j.probe });
  process.exit(0);
}
write({ ...report, ok: r.status === 0, exitCode: r.status, probe: j.probe, bench: j.bench, error: j.error });
if (r.status !== 0 || !j.bench) {
  console.log(`bench:gpu: FAILED — ${j.error ?? `exit ${r.status}`}`);
  process.exit(1);
}
const b = j.bench;
console.log(`device: ${j.probe?.device?.name ?? '?'}; device copy ${b.copyGBps.toFixed(0)} GB/s`);
console.log('matmul            w     M      µs     GB/s  % copy');
for (const m of b.matmul)
  console.log(`${m.shape.padEnd(16)} ${m.w.padEnd(5)} ${String(m.M).padStart(2)} ${m.us.toFixed(1).padStart(8)} ${m.GBps.toFixed(0).padStart(7)} ${m.pctCopy.toFixed(0).padStart(6)}`);
console.log('attention ctx  kv       µs   K/V GB/s');
for (const a of b.attention) console.log(`          ${String(a.context).padStart(4)} ${a.kv.padEnd(5)} ${a.us.toFixed(1).padStart(8)} ${a.kvGBps.toFixed(0).padStart(9)}`);
for (const m of b.remask) console.log(`remask ${m.mode}: ${m.us.toFixed(0)} µs (8 rows × 152064)`);
console.log(`report: ${reportPath}`);
