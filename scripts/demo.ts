// demo.ts — `npm run demo`: the first generation on a fresh clone, before a trained model ships.
// Writes a small random DiffusionVL-layout checkpoint with a real byte-level BPE tokenizer to
// .cache/demo-model (once), then runs `diffusionvl run` on it. The weights are random, so the
// text is gibberish; the point is the whole path: files → loader → block decoder → streamed text
// and stats. Extra arguments go to `diffusionvl run` (e.g. -- --steps 2 --show-steps).
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { main } from '../lib/cli/main.js';
import { packageRoot } from '../lib/native/index.js';
import { writeTinyModel } from '../test/helpers/tinyModel.js';

const dir = join(packageRoot(), '.cache', 'demo-model');
if (!existsSync(join(dir, 'config.json'))) {
  process.stderr.write(`writing a random demo checkpoint to ${dir}\n`);
  await writeTinyModel({ dir, diffusion: true, seed: 7, dtype: 'bf16', dims: { hiddenSize: 128, numLayers: 4, numHeads: 4, numKvHeads: 2, intermediateSize: 352, vocabSize: 320 } });
}
const extra = process.argv.slice(2);
const args = ['run', dir, '--prompt', 'Describe the image.', '--max-tokens', '32', '--steps', '4', ...extra];
process.exitCode = await main(args);
