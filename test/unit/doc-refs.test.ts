// doc-refs.test.ts — every documentation citation in the repository resolves inside it
// (scripts/check-doc-refs.mjs), and the checker itself catches what it claims to: an unknown
// section, a missing docs file, a citation of a document outside the repository, and that its
// --fix turns the old forms into resolving ones.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const script = join(root, 'scripts', 'check-doc-refs.mjs');

function check(...args: string[]): { status: number | null; out: string } {
  const r = spawnSync(process.execPath, [script, ...args], { encoding: 'utf8' });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

describe('documentation citations', () => {
  it('all resolve inside the repository', () => {
    const r = check();
    expect(r.out).toContain('every citation resolves inside the repository');
    expect(r.status, r.out).toBe(0);
  });
});

describe('check-doc-refs.mjs on a small tree', () => {
  const dirs: string[] = [];
  afterAll(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });

  /** A tree with two docs files and one source file holding `source`. */
  function tree(source: string): string {
    const d = mkdtempSync(join(tmpdir(), 'dvl-docrefs-'));
    dirs.push(d);
    mkdirSync(join(d, 'docs'));
    mkdirSync(join(d, 'lib'));
    writeFileSync(join(d, 'docs', '5-decoder.md'), '# 5 Decoder\n\n## 5.4 Prefill\n\n```\n## 5.9 not a heading (fenced)\n```\n\n## 5.12 Quirks\n');
    writeFileSync(join(d, 'docs', 'performance.md'), '# Performance\n\n### c1 Attention\n');
    writeFileSync(join(d, 'lib', 'a.ts'), source);
    return d;
  }

  it('accepts resolving citations, ranges and PTX section numbers', () => {
    const d = tree([
      '// prefill (docs §5.4, §5.12 #1); range §5.4–5.12',
      '// attention: docs/performance.md §c1, and the file docs/performance.md',
      '// PTX ISA 9.0 §9.7.14.5.7 is NVIDIA\'s, not ours',
    ].join('\n'));
    const r = check('--root', d, '--list');
    expect(r.status, r.out).toBe(0);
    expect(r.out).toContain('lib/a.ts:1: docs §5.12');
    expect(r.out).toContain('lib/a.ts:2: docs/performance.md §c1');
  });

  it('names an unknown section, a heading missing from the cited file and a missing file', () => {
    const d = tree([
      '// docs §5.5',
      '// docs/performance.md §c2',
      '// docs/precision.md',
      '// §5.9 (only inside a code fence in the docs)',
    ].join('\n'));
    const r = check('--root', d);
    expect(r.status).toBe(1);
    expect(r.out).toContain('lib/a.ts:1: docs §5.5 is not a section heading');
    expect(r.out).toContain('lib/a.ts:2: docs/performance.md has no heading §c2');
    expect(r.out).toContain('lib/a.ts:3: docs/precision.md does not exist');
    expect(r.out).toContain('lib/a.ts:4: docs §5.9 is not a section heading');
  });

  it('fails on citations of documents outside the repository, and --fix rewrites them', () => {
    const old = '// spec §5.4, REFERENCE.md §5.12 #1; PERFORMANCE.md §c1; spec/PERFORMANCE.md (d) 5 and DESIGN.md\n';
    const d = tree(old);
    const r = check('--root', d);
    expect(r.status).toBe(1);
    for (const what of ["'spec §'", 'REFERENCE.md', 'PERFORMANCE.md', 'DESIGN.md']) expect(r.out).toContain(`cites ${what}`);

    // §d.5 does not exist in this small tree: --fix rewrites, then the check names it.
    writeFileSync(join(d, 'docs', 'performance.md'), '# Performance\n\n### c1 Attention\n\n### d.5 Bandwidth\n');
    writeFileSync(join(d, 'docs', 'architecture.md'), '# Architecture\n');
    const f = check('--root', d, '--fix');
    expect(f.status, f.out).toBe(0);
    expect(readFileSync(join(d, 'lib', 'a.ts'), 'utf8')).toBe(
      '// docs §5.4, docs §5.12 #1; docs/performance.md §c1; docs/performance.md §d.5 and docs/architecture.md\n',
    );
  });

  it('refuses a section number used twice or filed in the wrong file', () => {
    const d = tree('// docs §5.4\n');
    writeFileSync(join(d, 'docs', '6-training.md'), '# 6 Training\n\n## 5.4 Prefill again\n');
    const r = check('--root', d);
    expect(r.status).toBe(1);
    expect(r.out).toContain('section 5.4 is also a heading of docs/5-decoder.md');
    expect(r.out).toContain('section 5.4 does not belong in 6-training.md');
  });
});
