// models.ts — the model folders that ship with the package, under <package root>/models/:
//
//   models/shapes-diffusionvl/   the DiffusionVL child (block diffusion): the default model
//   models/shapes-ar/            its autoregressive parent (generates in 'ar' mode)
//   models/shapes-heldout/       held-out prompts: heldout.json + images/ (see lib/eval.ts), drawn
//                                by the renderer the models were trained on (in-distribution)
//   models/shapes-heldout-unseen/  held-out prompts whose pictures come from a second renderer
//                                (SVG through librsvg) that training never used
//
// The package root is found by walking up from this file to the folder whose package.json is
// named "diffusionvl", so it works from lib/ (tsx, tests) and from dist/ (the built package).
import { existsSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { OptionError, WeightsError } from './errors.js';
import { nearestKey } from './decode/options.js';

export type BundledModelName = 'shapes-diffusionvl' | 'shapes-ar';

/** The bundled model `loadModel()` and the CLI use when no folder is given. */
export const DEFAULT_MODEL: BundledModelName = 'shapes-diffusionvl';
export const BUNDLED_MODELS: readonly BundledModelName[] = ['shapes-diffusionvl', 'shapes-ar'];
/** The held-out sets' folder names under models/: in-distribution, and the unseen renderer's. */
export const HELDOUT_NAME = 'shapes-heldout';
export const UNSEEN_HELDOUT_NAME = 'shapes-heldout-unseen';
export type HeldoutName = typeof HELDOUT_NAME | typeof UNSEEN_HELDOUT_NAME;
/** The code of the error thrown when a bundled folder is not there. */
export const MODEL_NOT_FOUND = 'DVL_MODEL_NOT_FOUND';

let root: string | undefined;

/** The folder holding this package's package.json (name "diffusionvl"). */
export function packageRootDir(): string {
  if (root) return root;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pj = join(dir, 'package.json');
    if (existsSync(pj)) {
      try {
        if ((JSON.parse(readFileSync(pj, 'utf8')) as { name?: unknown }).name === 'diffusionvl') return (root = dir);
      } catch { /* not ours: keep walking */ }
    }
    const up = dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  throw new WeightsError(`cannot find the diffusionvl package root above ${fileURLToPath(import.meta.url)}`, { code: MODEL_NOT_FOUND });
}

/** <package root>/models */
export function bundledModelsRoot(): string {
  return join(packageRootDir(), 'models');
}

function isBundledName(name: unknown): name is BundledModelName {
  return typeof name === 'string' && (BUNDLED_MODELS as readonly string[]).includes(name);
}

/**
 * `name`'s folder under `modelsRoot`, checked: it must hold config.json. Throws WeightsError
 * (code DVL_MODEL_NOT_FOUND) naming the path otherwise. `bundledModelDir` with the root given.
 */
export function resolveBundledModel(modelsRoot: string, name: BundledModelName = DEFAULT_MODEL): string {
  if (!isBundledName(name)) {
    throw new OptionError(`Expected one of ${BUNDLED_MODELS.map((n) => `'${n}'`).join(', ')} for the bundled model name but received ${JSON.stringify(name)}`, 'name');
  }
  const dir = join(modelsRoot, name);
  if (!existsSync(join(dir, 'config.json'))) {
    throw new WeightsError(
      `the bundled model '${name}' is not installed: ${dir} ${existsSync(dir) ? 'has no config.json' : 'does not exist'}. ` +
      'It ships in the package\'s models/ folder (a git checkout gets it once the model is trained, see train/README.md); ' +
      'or pass the path of a model folder instead.',
      { file: dir, code: MODEL_NOT_FOUND });
  }
  return dir;
}

/** `heldout.json`'s folder under `modelsRoot`, checked. `bundledHeldoutDir` with the root given. */
export function resolveBundledHeldout(modelsRoot: string, name: HeldoutName = HELDOUT_NAME): string {
  const dir = join(modelsRoot, name);
  if (!existsSync(join(dir, 'heldout.json'))) {
    throw new WeightsError(
      `the bundled held-out set is not installed: ${join(dir, 'heldout.json')} does not exist. ` +
      'It ships in the package\'s models/ folder next to the bundled models; or pass --heldout <dir> (a folder with heldout.json).',
      { file: dir, code: MODEL_NOT_FOUND });
  }
  return dir;
}

/** Absolute path of a bundled model folder (default: the DiffusionVL child). */
export function bundledModelDir(name: BundledModelName = DEFAULT_MODEL): string {
  return resolveBundledModel(bundledModelsRoot(), name);
}

/** Absolute path of a bundled held-out set (the folder holding heldout.json and images/);
 *  default: the in-distribution one. */
export function bundledHeldoutDir(name: HeldoutName = HELDOUT_NAME): string {
  return resolveBundledHeldout(bundledModelsRoot(), name);
}

/**
 * A model folder from what a user gave: undefined → the bundled default; a bundled name
 * ('shapes-diffusionvl', 'shapes-ar') that is not an existing path → that bundled model;
 * anything else is returned as given.
 */
export function resolveModelDir(dirOrName?: string): string {
  if (dirOrName === undefined) return bundledModelDir();
  if (typeof dirOrName !== 'string' || dirOrName === '') {
    throw new OptionError(`Expected a model folder path or a bundled model name (${BUNDLED_MODELS.join(', ')}) but received ${JSON.stringify(dirOrName)}`, 'dir');
  }
  if (isBundledName(dirOrName) && !existsSync(dirOrName)) return bundledModelDir(dirOrName);
  checkModelDir(dirOrName);
  return dirOrName;
}

/**
 * Throws WeightsError (code DVL_MODEL_NOT_FOUND) unless `dir` is a folder holding config.json;
 * a name close to a bundled model's gets "did you mean".
 */
export function checkModelDir(dir: string): void {
  let isDir = false;
  try { isDir = statSync(dir).isDirectory(); } catch { /* missing: below */ }
  if (isDir && existsSync(join(dir, 'config.json'))) return;
  const near = nearestKey(basename(dir), BUNDLED_MODELS);
  const hint = near ? ` Did you mean the bundled model '${near}'?` : ` Give a model folder (config.json, tokenizer.json, *.safetensors) or a bundled model name: ${BUNDLED_MODELS.join(', ')}.`;
  const what = isDir ? `${dir} has no config.json (not a model folder)` : existsSync(dir) ? `${dir} is not a folder` : `no model folder at ${dir}`;
  throw new WeightsError(`${what}.${hint}`, { file: dir, code: MODEL_NOT_FOUND });
}
