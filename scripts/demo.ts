// demo.ts — `npm run demo`: the first generation on a fresh clone. The bundled DiffusionVL child
// (models/shapes-diffusionvl, trained by train/run_all.sh) describes examples/two-shapes.png by
// block diffusion, streamed, with its stats line; then its AR parent (models/shapes-ar) answers
// the same question token by token, so the two forward counts sit side by side.
// Extra arguments go to the child's `diffusionvl run` (e.g. -- --steps 2 --show-steps,
// -- --image examples/three-shapes.png, -- --prompt "How many shapes are there?").
import { join } from 'node:path';
import { main } from '../lib/cli/main.js';
import { packageRoot } from '../lib/native/index.js';

const root = packageRoot();
const extra = process.argv.slice(2);
const image = extra.includes('--image') ? [] : ['--image', join(root, 'examples', 'two-shapes.png')];
const prompt = extra.includes('--prompt') ? [] : ['--prompt', 'Describe the image.'];
// Dynamic remasking at 0.9 (the paper's fast setting) unless the caller picks a decoder.
const decoder = extra.some((a) => a === '--remasking' || a === '--steps') ? [] : ['--remasking', 'dynamic', '--threshold', '0.9'];
const pick = (flag: string) => { const i = extra.indexOf(flag); return i >= 0 ? [flag, extra[i + 1]] : []; };

process.stderr.write('DiffusionVL child (block diffusion, 8 tokens per block, dynamic remasking 0.9):\n');
let code = await main(['run', 'shapes-diffusionvl', ...image, ...prompt, ...decoder, ...extra]);
if (code === 0) {
  process.stderr.write('\nits AR parent (one token per forward):\n');
  code = await main(['run', 'shapes-ar', ...image, ...prompt, ...pick('--image'), ...pick('--prompt')]);
  // One cold run each: the child's few forwards have different shapes, each run op by op until its
  // plan is recorded, while the parent's seventeen repeat one shape — so compare forwards here,
  // and speed warm: `npm run cli -- bench`.
  if (code === 0) process.stderr.write('\n(one cold run each — compare the forward counts here; `npm run cli -- bench` times both warm, on 300 prompts)\n');
}
process.exitCode = code;
