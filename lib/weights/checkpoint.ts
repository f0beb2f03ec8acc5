// checkpoint.ts — resolves a model folder into its safetensors files and reads their headers.
//
// Layouts (docs §1.4, §1.5, §1.7):
//   single    model.safetensors                         (converted text model; small checkpoints)
//   sharded   model.safetensors.index.json → weight_map { tensor name → shard file }
//   converted extras: vision_tower.safetensors (ViT, unprefixed names) and projector.safetensors
//             (merger, `merger.` stripped) beside model.safetensors.
// Quirk (§1.4): the converter copies the source model's index next to its own single
// model.safetensors, so a real model.safetensors wins over an index; the stale index is ignored.
// Each tensor is tagged with the file role it came from; names.ts maps (role, name) to one
// canonical name.
import { readFile, stat } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { WeightsError } from '../errors.js';
import { readSafetensorsHeader, type SafetensorsEntry, type SafetensorsHeader } from './safetensors.js';

/** Which file a tensor came from: the model file(s), or a converted-layout side file. */
export type FileRole = 'model' | 'vision_tower' | 'projector';

export interface CheckpointFiles {
  dir: string;
  layout: 'single' | 'sharded';
  /** model.safetensors, or the shards in index order. */
  modelFiles: string[];
  /** Converted layout only (absent otherwise). */
  visionTowerFile?: string;
  projectorFile?: string;
  /** The index file when layout is 'sharded'. */
  indexFile?: string;
  /** Sharded only: tensor name → shard path, from weight_map. */
  weightMap?: Map<string, string>;
}

export interface StoredTensor extends SafetensorsEntry {
  file: string;
  role: FileRole;
}

export interface Checkpoint {
  files: CheckpointFiles;
  headers: SafetensorsHeader[];
  /** Every stored tensor with its file and role (a stored name is unique within a role). */
  tensors: StoredTensor[];
}

async function isFile(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isFile();
  } catch {
    return false;
  }
}

/** Finds the checkpoint files of `dir` (no header reads beyond the index JSON). */
export async function resolveCheckpoint(dirIn: string): Promise<CheckpointFiles> {
  const dir = resolve(dirIn);
  const single = join(dir, 'model.safetensors');
  const index = join(dir, 'model.safetensors.index.json');
  const extras: Pick<CheckpointFiles, 'visionTowerFile' | 'projectorFile'> = {};
  if (await isFile(join(dir, 'vision_tower.safetensors'))) extras.visionTowerFile = join(dir, 'vision_tower.safetensors');
  if (await isFile(join(dir, 'projector.safetensors'))) extras.projectorFile = join(dir, 'projector.safetensors');

  if (await isFile(single)) return { dir, layout: 'single', modelFiles: [single], ...extras };
  if (await isFile(index)) {
    const weightMap = await readIndex(index);
    const shards = [...new Set(weightMap.values())];
    for (const s of shards) {
      if (!(await isFile(s))) {
        const tensor = [...weightMap].find(([, f]) => f === s)?.[0];
        throw new WeightsError(`${index}: shard ${basename(s)} (holding ${tensor}) is missing from ${dir}`, { file: s, tensor });
      }
    }
    return { dir, layout: 'sharded', modelFiles: shards, indexFile: index, weightMap, ...extras };
  }
  const hint = (await isFile(join(dir, 'pytorch_model.bin'))) || (await isFile(join(dir, 'pytorch_model.bin.index.json')))
    ? ' (only safetensors checkpoints are supported; convert the .bin weights first)' : '';
  throw new WeightsError(`${dir}: no model.safetensors or model.safetensors.index.json${hint}`, { file: dir });
}

/** Reads an index file's weight_map, resolving shard names inside the folder. */
async function readIndex(index: string): Promise<Map<string, string>> {
  let j: unknown;
  try {
    j = JSON.parse(await readFile(index, 'utf8'));
  } catch (e) {
    throw new WeightsError(`${index}: not valid JSON: ${(e as Error).message}`, { file: index, cause: e });
  }
  const wm = (j as { weight_map?: unknown } | null)?.weight_map;
  if (wm === null || typeof wm !== 'object' || Array.isArray(wm)) {
    throw new WeightsError(`${index}: weight_map is missing or not an object`, { file: index });
  }
  const dir = resolve(index, '..');
  const out = new Map<string, string>();
  for (const [name, shard] of Object.entries(wm as Record<string, unknown>)) {
    // A shard is a plain file name in the same folder; anything else (paths, '..') is refused.
    if (typeof shard !== 'string' || shard === '' || shard !== basename(shard) || shard === '.' || shard === '..') {
      throw new WeightsError(`${index}: weight_map entry for ${name} is not a file name in the model folder: ${JSON.stringify(shard)}`, { file: index, tensor: name });
    }
    out.set(name, join(dir, shard));
  }
  if (out.size === 0) throw new WeightsError(`${index}: weight_map is empty`, { file: index });
  return out;
}

/** Resolves `dir` and reads every header; checks the index against the shards. */
export async function openCheckpoint(dir: string): Promise<Checkpoint> {
  const files = await resolveCheckpoint(dir);
  const headers: SafetensorsHeader[] = [];
  const tensors: StoredTensor[] = [];
  const seen = new Map<string, string>();
  const add = (h: SafetensorsHeader, role: FileRole) => {
    headers.push(h);
    for (const e of h.tensors.values()) {
      const key = `${role}:${e.name}`;
      const other = seen.get(key);
      if (other) throw new WeightsError(`tensor ${e.name} is stored twice: in ${other} and ${h.file}`, { file: h.file, tensor: e.name });
      seen.set(key, h.file);
      tensors.push({ ...e, file: h.file, role });
    }
  };
  for (const f of files.modelFiles) add(await readSafetensorsHeader(f), 'model');
  if (files.weightMap) {
    for (const [name, shard] of files.weightMap) {
      if (seen.get(`model:${name}`) !== shard) {
        throw new WeightsError(`${files.indexFile}: weight_map puts ${name} in ${basename(shard)}, which does not hold it`, { file: shard, tensor: name });
      }
    }
  }
  if (files.visionTowerFile) add(await readSafetensorsHeader(files.visionTowerFile), 'vision_tower');
  if (files.projectorFile) add(await readSafetensorsHeader(files.projectorFile), 'projector');
  return { files, headers, tensors };
}
