// fields.ts — typed reading of config.json-style JSON objects: every missing or ill-typed field
// raises ConfigError naming the file and the field path (e.g. `text_config.num_attention_heads`).
// Shared by readConfig (config.ts) and the text families, which read their own fields
// (lib/model/families.ts, docs §2.10).
import { readFile } from 'node:fs/promises';
import { ConfigError } from '../errors.js';

export type Obj = Record<string, unknown>;
export const isObj = (v: unknown): v is Obj => v !== null && typeof v === 'object' && !Array.isArray(v);

/** Typed field access over one or more JSON objects searched in order (first hit wins). */
export class Fields {
  constructor(readonly file: string, readonly sources: { obj: Obj; prefix: string }[]) {}

  private find(name: string): { value: unknown; path: string } | undefined {
    for (const s of this.sources) {
      if (Object.hasOwn(s.obj, name) && s.obj[name] !== null) return { value: s.obj[name], path: s.prefix + name };
    }
    return undefined;
  }

  private bad(path: string, expected: string, v: unknown): never {
    throw new ConfigError(`${this.file}: expected ${expected} for ${path} but got ${JSON.stringify(v)}`, { file: this.file, field: path });
  }

  has(name: string): boolean { return this.find(name) !== undefined; }

  /** Where a field was found (`text_config.x`), or where it would be reported when absent. */
  path(name: string): string {
    return this.find(name)?.path ?? (this.sources[0]?.prefix ?? '') + name;
  }

  /** A positive integer (or ≥ min). */
  int(name: string, dflt?: number, min = 1): number {
    const f = this.find(name);
    if (!f) {
      const path = (this.sources[0]?.prefix ?? '') + name;
      if (dflt === undefined) throw new ConfigError(`${this.file}: missing field ${path}`, { file: this.file, field: path });
      return dflt;
    }
    if (!Number.isSafeInteger(f.value) || (f.value as number) < min) this.bad(f.path, `an integer ≥ ${min}`, f.value);
    return f.value as number;
  }

  /** A finite positive number. */
  num(name: string, dflt: number): number {
    const f = this.find(name);
    if (!f) return dflt;
    if (typeof f.value !== 'number' || !Number.isFinite(f.value) || f.value <= 0) this.bad(f.path, 'a positive number', f.value);
    return f.value;
  }

  bool(name: string, dflt: boolean): boolean {
    const f = this.find(name);
    if (!f) return dflt;
    if (typeof f.value !== 'boolean') this.bad(f.path, 'true or false', f.value);
    return f.value;
  }

  str(name: string, dflt: string): string {
    const f = this.find(name);
    if (!f) return dflt;
    if (typeof f.value !== 'string') this.bad(f.path, 'a string', f.value);
    return f.value;
  }

  intList(name: string, dflt: number[]): number[] {
    const f = this.find(name);
    if (!f) return dflt;
    if (!Array.isArray(f.value) || !f.value.every((x) => Number.isSafeInteger(x) && x >= 0)) this.bad(f.path, 'a list of integers ≥ 0', f.value);
    return (f.value as number[]).slice();
  }

  /** A list of strings, or absent. */
  strList(name: string): string[] | undefined {
    const f = this.find(name);
    if (!f) return undefined;
    if (!Array.isArray(f.value) || !f.value.every((x) => typeof x === 'string')) this.bad(f.path, 'a list of strings', f.value);
    return (f.value as string[]).slice();
  }

  /** A nested object as Fields of its own (paths `parent.name.`), or undefined when absent. */
  sub(name: string): Fields | undefined {
    const f = this.find(name);
    if (!f) return undefined;
    if (!isObj(f.value)) this.bad(f.path, 'an object', f.value);
    return new Fields(this.file, [{ obj: f.value, prefix: `${f.path}.` }]);
  }

  /** An integer id, or a list of them (first is used: the stop id), or absent. */
  tokenId(name: string): number | undefined {
    const f = this.find(name);
    if (!f) return undefined;
    const v = Array.isArray(f.value) ? f.value[0] : f.value;
    if (!Number.isSafeInteger(v) || (v as number) < 0) this.bad(f.path, 'a token id (integer ≥ 0) or a list of them', f.value);
    return v as number;
  }
}

export async function readJson(file: string, required: boolean): Promise<Obj | null> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if (!required && (e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new ConfigError(`${file}: cannot read: ${(e as Error).message}`, { file });
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`${file}: not valid JSON: ${(e as Error).message}`, { file });
  }
  if (!isObj(v)) throw new ConfigError(`${file}: expected a JSON object`, { file });
  return v;
}
