// cuda-model-check.ts — runs the bundled trained models on the CUDA backend and prints one JSON
// report on stdout; a child process of test/model/cuda-queue-host.test.ts (with the host-memory
// test backend) and test/gpu/model-cuda.test.ts (with the real plugin on a GPU).
//
//   node --import tsx test/helpers/cuda-model-check.ts [cases]     (default: every fixture case)
//
// The backend comes from the environment (DIFFUSIONVL_CUDA_PLUGIN, DIFFUSIONVL_CUDA_DRIVER);
// loadModel is asked for gpu: 'cuda', so an unusable backend is an error, never a silent CPU
// run. Per fixture case and setting it records whether the generated ids equal the PyTorch
// reference's (test/fixtures/trained) and where they first differ, with the fixture's smallest
// decision margins; the prompt-logit errors; and a few queue-level placement checks.
import { join } from 'node:path';
import { loadModel, type Model } from '../../lib/model/model.js';
import { packageRoot, Queue, tensorFromArray, type Tensor } from '../../lib/native/index.js';
import { caseMessages, promptLogitErrors, readFixtures, settingRequest } from './trained-fixtures.js';

interface RunReport { case: string; setting: string; image: boolean; match: boolean; firstDiff: number; margins: (number | null)[] }

const root = packageRoot();
const fixDir = join(root, 'test', 'fixtures', 'trained');
const fx = readFixtures(fixDir);
const nCases = Math.min(Number(process.argv[2] ?? fx.cases.length), fx.cases.length);

function firstDiff(a: readonly number[], b: readonly number[]): number {
  for (let i = 0; i < Math.max(a.length, b.length); i++) if (a[i] !== b[i]) return i;
  return -1;
}

/** The error code a call throws, or null when it does not throw. */
function codeOf(f: () => unknown): string | null {
  try {
    f();
    return null;
  } catch (e) {
    return (e as { code?: string }).code ?? String(e);
  }
}

async function queueChecks(): Promise<Record<string, unknown>> {
  const q = new Queue({ device: 'cuda' });
  const cpu = new Queue({ precision: 'exact' });
  const a = tensorFromArray('f32', [3, 5], Float32Array.from({ length: 15 }, (_, i) => i * 0.5 - 3));
  const b = tensorFromArray('f32', [3, 5], Float32Array.from({ length: 15 }, (_, i) => 1 / (i + 1)));
  // The f32 result of f on the f32 inputs: exact for + and × (one rounding), any backend.
  const want = (f: (x: number, y: number) => number) => Array.from({ length: 15 }, (_, i) => Math.fround(f(Math.fround(i * 0.5 - 3), Math.fround(1 / (i + 1)))));
  try {
    const sum = q.add(a, b);                      // an op the backend implements, host inputs uploaded
    const prod = q.mul(a, b);                     // any op: implemented, or the CPU op on copies
    const cache = q.empty('f32', [2, 4, 3]);      // [nkv, cap, hd], zero-filled on the device
    const x = tensorFromArray('f32', [1, 2, 3], Float32Array.from([1, 2, 3, 4, 5, 6]));
    q.kvCacheAppend(cache, x, 2);                 // in place into a device tensor
    const hostCache = tensorFromArray('f32', [2, 4, 3], new Float32Array(24));
    const [s, p, c] = await Promise.all([q.readF32(sum), q.readF32(prod), q.readF32(cache)]);
    const out = {
      queueDevice: q.device,
      outputDevice: sum.device,
      emptyDevice: cache.device,
      addOk: Array.from(s).every((v, i) => v === want((x, y) => x + y)[i]),
      mulOk: Array.from(p).every((v, i) => v === want((x, y) => x * y)[i]),
      kvOk: c[6] === 1 && c[8] === 3 && c[18] === 4 && c[20] === 6 && c[0] === 0,
      inPlaceOnHostInput: codeOf(() => q.kvCacheAppend(hostCache, x, 0)),
      deviceInputOnCpuQueue: codeOf(() => cpu.add(sum, sum)),
      deviceReadOnCpuQueue: codeOf(() => { void cpu.read(sum); }),
    };
    for (const t of [sum, prod, cache, x, hostCache] as Tensor[]) t.dispose();
    return out;
  } finally {
    a.dispose();
    b.dispose();
    q.dispose();
    cpu.dispose();
  }
}

async function main(): Promise<void> {
  let child: Model | undefined, parent: Model | undefined;
  try {
    child = await loadModel(join(root, 'models', 'shapes-diffusionvl'), { gpu: 'cuda', threads: 2 });
    parent = await loadModel(join(root, 'models', 'shapes-ar'), { gpu: 'cuda', threads: 2 });
    const runs: RunReport[] = [];
    let logitErr = 0;
    const t0 = performance.now();
    for (const c of fx.cases.slice(0, nCases)) {
      const messages = caseMessages(fixDir, c);
      for (const e of await promptLogitErrors(child, c, messages)) logitErr = Math.max(logitErr, e);
      for (const s of fx.settings) {
        const r = await child.generate(settingRequest(fx, s, messages));
        const want = c.runs[s.name];
        const d = firstDiff(r.raw, want.ids);
        runs.push({ case: c.id, setting: s.name, image: !!c.image, match: d < 0, firstDiff: d, margins: [want.min_argmax_gap, want.min_select_gap, want.min_threshold_gap] });
      }
      if (c.parent_ar) {
        const r = await parent.generate({ messages, maxTokens: fx.gen_length, temperature: 0 });
        const d = firstDiff(r.raw, c.parent_ar.ids);
        runs.push({ case: c.id, setting: 'parent-ar', image: !!c.image, match: d < 0, firstDiff: d, margins: [c.parent_ar.min_argmax_gap] });
      }
    }
    const report = {
      backend: child.backend.backend,
      device: child.backend.cuda.device?.name ?? null,
      weightBytes: child.weightBytes,
      cases: nCases,
      seconds: (performance.now() - t0) / 1000,
      logitErr,
      runs,
      queue: await queueChecks(),
    };
    process.stdout.write(JSON.stringify(report) + '\n');
  } finally {
    child?.dispose();
    parent?.dispose();
  }
}

main().catch((e) => {
  process.stderr.write(`cuda-model-check: ${(e as Error).stack ?? e}\n`);
  process.exit(1);
});
