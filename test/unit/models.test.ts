// The bundled model folders (lib/models.ts): the package root, the checked paths, the typed
// error when a folder is missing, and the names the CLI and loadModel accept.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { OptionError, WeightsError, loadModel } from '../../lib/index.js';
import {
  DEFAULT_MODEL, MODEL_NOT_FOUND, bundledHeldoutDir, bundledModelDir, bundledModelsRoot, packageRootDir,
  resolveBundledHeldout, resolveBundledModel, resolveModelDir,
} from '../../lib/models.js';

const tmp = mkdtempSync(join(tmpdir(), 'dvl-models-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('bundled models', () => {
  it('finds the package root by its package.json name', () => {
    const root = packageRootDir();
    expect(JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).name).toBe('diffusionvl');
    expect(bundledModelsRoot()).toBe(join(root, 'models'));
    expect(DEFAULT_MODEL).toBe('shapes-diffusionvl');
  });

  it('a missing folder is a WeightsError (DVL_MODEL_NOT_FOUND) naming the path', () => {
    const err = (() => { try { resolveBundledModel(tmp, 'shapes-ar'); } catch (e) { return e; } })() as WeightsError;
    expect(err).toBeInstanceOf(WeightsError);
    expect(err.code).toBe(MODEL_NOT_FOUND);
    expect(err.file).toBe(join(tmp, 'shapes-ar'));
    expect(err.message).toContain(join(tmp, 'shapes-ar'));
    expect(() => resolveBundledModel(tmp)).toThrow(/shapes-diffusionvl/);
    expect(() => resolveBundledHeldout(tmp)).toThrow(expect.objectContaining({ code: MODEL_NOT_FOUND }));
    // A folder without config.json is not a model.
    mkdirSync(join(tmp, 'shapes-diffusionvl'));
    expect(() => resolveBundledModel(tmp)).toThrow(/has no config\.json/);
    expect(() => resolveBundledModel(tmp, 'gpt-5' as never)).toThrow(OptionError);
  });

  it('a present folder resolves to its path', () => {
    writeFileSync(join(tmp, 'shapes-diffusionvl', 'config.json'), '{}');
    expect(resolveBundledModel(tmp)).toBe(join(tmp, 'shapes-diffusionvl'));
    mkdirSync(join(tmp, 'shapes-heldout'));
    writeFileSync(join(tmp, 'shapes-heldout', 'heldout.json'), '{}');
    expect(resolveBundledHeldout(tmp)).toBe(join(tmp, 'shapes-heldout'));
  });

  it('bundledModelDir / bundledHeldoutDir: the folder when installed, else the typed error', async () => {
    const installed = existsSync(join(bundledModelsRoot(), 'shapes-diffusionvl', 'config.json'));
    if (installed) {
      expect(bundledModelDir()).toBe(join(bundledModelsRoot(), 'shapes-diffusionvl'));
      expect(resolveModelDir()).toBe(bundledModelDir());
    } else {
      expect(() => bundledModelDir()).toThrow(expect.objectContaining({ code: MODEL_NOT_FOUND }));
      // loadModel() with no folder means the bundled child: same error, before any work.
      await expect(loadModel()).rejects.toMatchObject({ code: MODEL_NOT_FOUND });
      await expect(loadModel(undefined, { threads: 1 })).rejects.toBeInstanceOf(WeightsError);
    }
    if (existsSync(join(bundledModelsRoot(), 'shapes-heldout', 'heldout.json'))) {
      expect(bundledHeldoutDir()).toBe(join(bundledModelsRoot(), 'shapes-heldout'));
    } else {
      expect(() => bundledHeldoutDir()).toThrow(expect.objectContaining({ code: MODEL_NOT_FOUND }));
    }
  });

  it('resolveModelDir: model folders as given, bundled names to their folder', () => {
    const dir = join(tmp, 'a-model');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'config.json'), '{}');
    expect(resolveModelDir(dir)).toBe(dir);
    if (existsSync(join(bundledModelsRoot(), 'shapes-ar', 'config.json'))) {
      expect(resolveModelDir('shapes-ar')).toBe(join(bundledModelsRoot(), 'shapes-ar'));
    } else {
      expect(() => resolveModelDir('shapes-ar')).toThrow(expect.objectContaining({ code: MODEL_NOT_FOUND }));
    }
  });

  it('a path that is no model folder, or a mistyped bundled name, is DVL_MODEL_NOT_FOUND with a hint (not a raw ENOENT)', () => {
    const typo = (() => { try { resolveModelDir('shapes-diffusion'); } catch (e) { return e; } })() as WeightsError;
    expect(typo).toBeInstanceOf(WeightsError);
    expect(typo.code).toBe(MODEL_NOT_FOUND);
    expect(typo.message).toMatch(/no model folder at shapes-diffusion\. Did you mean the bundled model 'shapes-diffusionvl'\?/);
    expect(() => resolveModelDir('/some/model')).toThrow(expect.objectContaining({ code: MODEL_NOT_FOUND, message: expect.stringMatching(/no model folder at \/some\/model/) }));
    expect(() => resolveModelDir(tmp)).toThrow(/has no config\.json/);
    expect(() => resolveModelDir('')).toThrow(OptionError);
  });

  it('loadModel with a mistyped bundled name rejects with the same typed error', async () => {
    await expect(loadModel('shapes-ar2')).rejects.toMatchObject({ name: 'WeightsError', code: MODEL_NOT_FOUND, message: expect.stringMatching(/shapes-ar/) });
  });
});
