#!/usr/bin/env node
// test-gpu.mjs — `npm run test:gpu`: the one command a machine with an NVIDIA GPU runs.
//
// 1. Asks nvidia-smi for the GPUs (name, compute capability, driver, memory). None → prints
//    one line saying why everything is skipped and exits 0 (CPU-only machines, CI).
// 2. Builds the addon and the CUDA plugin for exactly the cards present
//    (CMAKE_CUDA_ARCHITECTURES = "<cc>-real", e.g. 90-real on H100/H200) into build-gpu/;
//    DIFFUSIONVL_CUDA_ARCHS overrides the list, DIFFUSIONVL_GPU_BUILD_DIR the folder, and
//    DIFFUSIONVL_GPU_SKIP_BUILD=1 reuses an existing build there.
// 3. Builds and runs the C++ self-test (dvl_cuda_selftest: loader, copies, add vs CPU, add
//    bandwidth, then every op vs the CPU op and float64 references, one JSON line per case),
//    then `vitest run test/gpu` against that build with DIFFUSIONVL_GPU=cuda, so an unusable
//    CUDA backend fails the suite instead of skipping it, then the kernel micro-bench
//    (bench/gpu.ts → dvl_cuda_selftest --bench), then the bundled models' bench on the GPU and
//    on the CPU (parent vs child on 100 held-out prompts).
// 4. Writes bench/out/gpu-report.json: device, driver, backend probe, build, self-test (with
//    every op case), tests, bench.
// Exit code: 0 when skipped or all tests passed; 1 otherwise.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { hostname } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const outDir = join(root, 'bench', 'out');
const reportPath = join(outDir, 'gpu-report.json');
const buildDir = resolve(root, process.env.DIFFUSIONVL_GPU_BUILD_DIR || 'build-gpu');
const log = (s) => process.stderr.write(`test:gpu: ${s}\n`);

function writeReport(report) {
  mkdirSync(outDir, { recursive: true });
  writeFileSync(reportPath, JSON.stringify(report, null, 2) + '\n');
}

/** The GPUs nvidia-smi lists, or the reason there are none. */
function queryGpus() {
  const fields = ['index', 'name', 'compute_cap', 'driver_version', 'memory.total'];
  let out;
  try {
    out = execFileSync('nvidia-smi', [`--query-gpu=${fields.join(',')}`, '--format=csv,noheader,nounits'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  } catch (e) {
    if (e.code === 'ENOENT') return { reason: 'nvidia-smi not found (no NVIDIA driver on this machine)' };
    const msg = String(e.stderr || e.stdout || e.message).trim().split('\n')[0];
    return { reason: `nvidia-smi failed: ${msg}` };
  }
  const gpus = out
    .trim()
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => {
      const [index, name, cc, driver, mem] = l.split(',').map((s) => s.trim());
      return { index: Number(index), name, computeCapability: cc, driver, memoryMiB: Number(mem) };
    });
  if (!gpus.length) return { reason: 'nvidia-smi lists no GPU' };
  return { gpus };
}

function findNvcc() {
  for (const c of ['nvcc', '/usr/local/cuda/bin/nvcc']) {
    try {
      const v = execFileSync(c, ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
      return { path: c, version: (v.match(/release ([\d.]+)/) || [])[1] };
    } catch {
      /* next */
    }
  }
  return undefined;
}

const started = new Date();
const report = { script: 'scripts/test-gpu.mjs', date: started.toISOString(), host: hostname(), node: process.version };

if ((process.env.DIFFUSIONVL_GPU || '').toLowerCase() === 'cpu') {
  console.log('test:gpu: skipped — DIFFUSIONVL_GPU=cpu disables the GPU; nothing was built or run.');
  writeReport({ ...report, skipped: true, reason: 'DIFFUSIONVL_GPU=cpu' });
  process.exit(0);
}
const q = queryGpus();
if (!q.gpus) {
  console.log(`test:gpu: skipped — no NVIDIA GPU here (${q.reason}); nothing was built or run.`);
  writeReport({ ...report, skipped: true, reason: q.reason });
  process.exit(0);
}
report.devices = q.gpus;
report.driver = q.gpus[0].driver;
log(`GPUs: ${q.gpus.map((g) => `${g.name} (cc ${g.computeCapability}, ${g.memoryMiB} MiB)`).join('; ')}; driver ${report.driver}`);

// ---- build ----------------------------------------------------------------------------------
const archs =
  process.env.DIFFUSIONVL_CUDA_ARCHS ||
  [...new Set(q.gpus.map((g) => `${g.computeCapability.replace('.', '')}-real`))].join(';');
const addonPath = join(buildDir, 'Release', 'diffusionvl.node');
const pluginPath = join(buildDir, 'Release', 'libdiffusionvl_cuda.so');
report.build = { dir: buildDir, archs };
if (process.env.DIFFUSIONVL_GPU_SKIP_BUILD === '1') {
  report.build.skipped = true;
} else {
  const nvcc = findNvcc();
  if (!nvcc) {
    const reason = 'a GPU is present but nvcc (the CUDA toolkit) is not on PATH or in /usr/local/cuda/bin';
    console.log(`test:gpu: FAILED — ${reason}; install the toolkit or set DIFFUSIONVL_GPU_SKIP_BUILD=1 with a build in ${buildDir}.`);
    writeReport({ ...report, ok: false, reason });
    process.exit(1);
  }
  report.build.nvcc = nvcc.version;
  const env = { ...process.env, PATH: `${dirname(nvcc.path) === '.' ? '' : dirname(nvcc.path) + ':'}${process.env.PATH}` };
  const args = ['cmake-js', 'compile', '--out', buildDir, '--CDDIFFUSIONVL_CUDA=ON', `--CDCMAKE_CUDA_ARCHITECTURES=${archs}`];
  log(`building addon + plugin for ${archs}: npx ${args.join(' ')}`);
  const t0 = Date.now();
  const b = spawnSync('npx', args, { cwd: root, env, encoding: 'utf8', maxBuffer: 64 << 20 });
  report.build.seconds = (Date.now() - t0) / 1000;
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, 'gpu-build.log'), `${b.stdout || ''}\n${b.stderr || ''}`);
  report.build.log = join(outDir, 'gpu-build.log');
  report.build.ok = b.status === 0 && existsSync(addonPath) && existsSync(pluginPath);
  if (!report.build.ok) {
    console.log(`test:gpu: FAILED — the build failed (exit ${b.status}); see ${report.build.log}`);
    writeReport({ ...report, ok: false });
    process.exit(1);
  }
  log(`built in ${report.build.seconds.toFixed(1)} s`);
}

// ---- what the backend probe says (the same answer the tests will get) -------------------------
try {
  const addon = createRequire(import.meta.url)(addonPath);
  report.probe = addon.backendProbe({ pluginPath });
  report.cpu = (({ isa, isaLevels, physicalCores }) => ({ isa, isaLevels, physicalCores }))(addon.info());
} catch (e) {
  report.probe = { error: String(e && e.message) };
}

// ---- the C++ self-test (csrc/cuda/selftest.cpp): same checks without Node, plus bandwidth -------
{
  const b = spawnSync('cmake', ['--build', buildDir, '--target', 'dvl_cuda_selftest'], { cwd: root, encoding: 'utf8' });
  const exe = join(buildDir, 'csrc', 'cuda', 'dvl_cuda_selftest');
  if (b.status !== 0 || !existsSync(exe)) {
    report.selftest = { error: `build failed (exit ${b.status}): ${String(b.stderr || b.stdout).trim().split('\n').slice(-3).join(' | ')}` };
  } else {
    const r = spawnSync(exe, [pluginPath], { encoding: 'utf8', maxBuffer: 64 << 20 });
    try {
      // One JSON line per op case, then the summary object as the last line.
      const lines = String(r.stdout).trim().split('\n').filter((l) => l.trim());
      const ops = lines.slice(0, -1).map((l) => JSON.parse(l));
      report.selftest = { exitCode: r.status, ...JSON.parse(lines[lines.length - 1]), ops, opsFailed: ops.filter((o) => !o.ok) };
      if (report.selftest.opsFailed.length) log(`selftest: ${report.selftest.opsFailed.length} op case(s) failed, first: ${JSON.stringify(report.selftest.opsFailed[0])}`);
    } catch {
      report.selftest = { exitCode: r.status, error: `unreadable output: ${String(r.stdout).slice(0, 200)} ${String(r.stderr).slice(0, 200)}` };
    }
    log(`selftest: exit ${r.status}${report.selftest.addGBps ? `, add ${report.selftest.addGBps.toFixed(0)} GB/s` : ''}`);
  }
}

// ---- tests ------------------------------------------------------------------------------------
const vitestJson = join(outDir, 'gpu-vitest.json');
const env = {
  ...process.env,
  DIFFUSIONVL_ADDON: addonPath,
  DIFFUSIONVL_CUDA_PLUGIN: pluginPath,
  DIFFUSIONVL_GPU: 'cuda',
};
const t = spawnSync(
  'npx',
  ['vitest', 'run', 'test/gpu', '--reporter=default', '--reporter=json', `--outputFile.json=${vitestJson}`],
  { cwd: root, env, stdio: ['ignore', 'inherit', 'inherit'] },
);
let tests = { exitCode: t.status };
if (existsSync(vitestJson)) {
  const j = JSON.parse(readFileSync(vitestJson, 'utf8'));
  tests = {
    exitCode: t.status,
    total: j.numTotalTests,
    passed: j.numPassedTests,
    failed: j.numFailedTests,
    skipped: j.numPendingTests,
    results: (j.testResults || []).flatMap((f) =>
      (f.assertionResults || []).map((a) => ({
        file: f.name.replace(root + '/', ''),
        name: a.fullName,
        status: a.status,
        ms: a.duration,
        ...(a.failureMessages && a.failureMessages.length ? { failure: a.failureMessages[0].split('\n')[0] } : {}),
      })),
    ),
    // A file that throws while loading (e.g. the probe under DIFFUSIONVL_GPU=cuda) has no tests.
    fileErrors: (j.testResults || [])
      .filter((f) => f.status === 'failed' && !(f.assertionResults || []).length)
      .map((f) => `${f.name.replace(root + '/', '')}: ${(f.message || '').split('\n')[0]}`),
  };
}
report.tests = tests;

// ---- kernel micro-bench (bench/gpu.ts runs dvl_cuda_selftest --bench) ---------------------------
{
  const b = spawnSync('npx', ['tsx', 'bench/gpu.ts'], {
    cwd: root,
    env: { ...process.env, DIFFUSIONVL_GPU_BUILD_DIR: buildDir },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const benchPath = join(outDir, 'gpu-bench.json');
  try {
    report.bench = { exitCode: b.status, ...JSON.parse(readFileSync(benchPath, 'utf8')) };
  } catch {
    report.bench = { exitCode: b.status, error: `no readable ${benchPath}` };
  }
}
// ---- the bundled models on the GPU vs on the CPU, same held-out set, same run -----------------
// (`diffusionvl bench`: AR parent vs DiffusionVL child; exact match, forwards/token, tokens/s.)
// The models are tiny (1.5 M parameters), so GPU numbers measure launch overhead, not bandwidth.
{
  const benchEnv = { ...env, DIFFUSIONVL_GPU: '' };
  const one = (gpu) => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'lib/cli/main.ts', 'bench', '--gpu', gpu, '--n', '100', '--json'], {
      cwd: root, env: benchEnv, encoding: 'utf8', maxBuffer: 64 << 20, timeout: 600_000,
    });
    try {
      return { exitCode: r.status, ...JSON.parse(r.stdout) };
    } catch {
      return { exitCode: r.status, error: String(r.stderr).trim().split('\n').slice(-3).join(' | ') };
    }
  };
  report.modelBench = { cuda: one('cuda'), cpu: one('cpu') };
  for (const [k, v] of Object.entries(report.modelBench))
    log(`model bench ${k}: ${(v.rows || []).map((r) => `${r.setting} ${(100 * r.exactMatch).toFixed(1)} % ${r.tokensPerSecond.toFixed(0)} tok/s`).join('; ') || v.error}`);
}

report.ok = t.status === 0 && report.selftest?.exitCode === 0 && report.bench?.exitCode === 0 && report.modelBench?.cuda?.exitCode === 0;
report.seconds = (Date.now() - started.getTime()) / 1000;
writeReport(report);
console.log(
  `test:gpu: ${report.ok ? 'passed' : 'FAILED'} — ${tests.passed ?? '?'} passed, ${tests.failed ?? '?'} failed, ` +
    `${tests.skipped ?? '?'} skipped` +
    (tests.fileErrors && tests.fileErrors.length ? `, ${tests.fileErrors.length} test file(s) failed to load` : '') +
    ` on ${q.gpus[0].name}; report: ${reportPath}`,
);
process.exit(report.ok ? 0 : 1);
