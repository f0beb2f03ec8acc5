#!/usr/bin/env node
// check-doc-refs.mjs — every documentation citation in the repository resolves inside it.
//
//   node scripts/check-doc-refs.mjs            check; exit 1 naming each bad citation
//   node scripts/check-doc-refs.mjs --list     also print every citation found, one per line
//   node scripts/check-doc-refs.mjs --fix      first rewrite the old citation forms (below), then check
//   node scripts/check-doc-refs.mjs --root DIR run on another tree (tests)
//
// What it reads: the headings of docs/*.md. A heading's id is its first word when that word is
// a section number (`## 5.4 Prefill` → 5.4) or one letter with an optional number
// (`### c1 Attention` → c1, `## A4 …` → A4, `### d.8 …` → d.8). Files named `<digit>-*.md` share
// one numbered namespace (`docs §5.4` needs no file name); every other file has its own.
//
// What it checks, in lib/ csrc/ test/ bench/ scripts/ train/ README.md and docs/:
//   docs/<file>.md §X        X must be an id of that file (and the file must exist);
//   docs/<path>              the path must exist;
//   docs §X, and any bare §X a numbered id must exist in files 1-7 (ranges such as §5.7–5.8
//                            check both ends); a lettered one in some other docs file;
// and, outside docs/, that nothing still cites a document outside the repository: the old
// forms `spec §…`, `spec/…`, `spec 1.4`, REFERENCE.md, PERFORMANCE.md, DESIGN.md,
// ECOSYSTEM.md, STYLE.md. A § number that follows "PTX" on its line or the line before is a
// citation of NVIDIA's PTX ISA manual, not of docs, and is skipped.
//
// --fix applies REWRITES (in order, to every scanned file outside docs/) and reports what it
// changed; rerun it after merging a branch written against the old forms. Plain Node, no
// dependencies.
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const args = process.argv.slice(2);
const flag = (f) => args.includes(f);
const rootArg = args.indexOf('--root');
const ROOT = rootArg >= 0 ? resolve(args[rootArg + 1]) : resolve(dirname(fileURLToPath(import.meta.url)), '..');
const SELF = ['scripts/check-doc-refs.mjs', 'test/unit/doc-refs.test.ts'];

const SCAN = ['lib', 'csrc', 'test', 'bench', 'scripts', 'train', 'docs', 'README.md'];
const SKIP_DIRS = new Set(['node_modules', 'dist', 'build', 'prebuilds', '.cache', 'out', '.git', '__pycache__']);
const BINARY_EXT = /\.(png|jpe?g|webp|gif|bin|node|so|safetensors|gz|zip|pt|npy|ico)$/i;

/** Old citation forms → docs ones. Order matters: specific forms before the general ones. */
export const REWRITES = [
  // PERFORMANCE.md (roofline, kernel designs, benchmark method) → docs/performance.md
  [/(?:spec\/|spec )?PERFORMANCE\.md \(([a-d])\) (\d+)/g, 'docs/performance.md §$1.$2'],
  [/(?:spec\/|spec )?PERFORMANCE\.md §/g, 'docs/performance.md §'],
  [/(?:spec\/|spec )?PERFORMANCE\.md ([a-d]\d*)\b/g, 'docs/performance.md §$1'],
  [/(?:spec\/|spec )?PERFORMANCE\.md/g, 'docs/performance.md'],
  [/\bspec ([a-d]\d)\b/g, 'docs/performance.md §$1'],
  // ECOSYSTEM.md (packaging, loader, CUDA plugin) → docs/packaging.md
  [/(?:spec\/|spec )?ECOSYSTEM\.md \(d\) ?(10|11)\b/g, (_, n) => `docs/packaging.md §${{ 10: 'B7', 11: 'B8' }[n]}`],
  [/(?:spec\/|spec )?ECOSYSTEM\.md (B\d(?:\.\d)?(?:, B\d(?:\.\d)?)*)/g, (_, ids) => `docs/packaging.md ${ids.split(', ').map((i) => `§${i}`).join(', ')}`],
  [/(?:spec\/|spec )?ECOSYSTEM\.md/g, 'docs/packaging.md'],
  // STYLE.md items 3 (versioned backend struct) and 13 (the loader explains itself): already
  // cited through docs/packaging.md §B1.3 / §B4 on the same lines.
  [/;\s*STYLE\.md 3 and 13/g, ''],
  [/;\s*STYLE\.md 3\b/g, ''],
  [/STYLE\.md/g, 'docs/architecture.md'],
  // DESIGN.md → docs/architecture.md
  [/DESIGN\.md "A forward is planned/g, 'docs/architecture.md §A4 "A forward is planned'],
  [/(?:spec\/)?DESIGN\.md/g, 'docs/architecture.md'],
  // REFERENCE.md (the reference's behaviour, sections 1-7) → docs §N.M
  [/Spec: REFERENCE\.md §/g, 'See docs §'],
  [/(?:spec\/|spec )?REFERENCE\.md \\u00a7/g, 'docs \\u00a7'],
  [/(?:spec\/|spec )?REFERENCE\.md §/g, 'docs §'],
  [/(?:spec\/|spec )?REFERENCE\.md/g, 'docs'],
  [/\bspec's §/g, 'docs §'],
  [/\bSpec: §/g, 'See docs §'],
  // Sentences that said "the spec" for the old reference document.
  [/The spec's quiet-VM figure/g, 'The quiet-VM figure of docs/performance.md §b5'],
  [/the spec's quiet 65 GB\/s/g, 'the quiet 65 GB/s of docs/performance.md §b5'],
  [/machine the spec describes/g, 'machine docs/performance.md §b5 describes'],
  [/the spec's worked examples/g, 'the worked examples of docs §3.5'],
  [/against the spec's examples/g, 'against the examples of docs §3.5'],
  [/the spec gives the downsampled size only/g, 'the upstream worked example gives only the downsampled size'],
  [/straight from the spec and/g, 'straight from docs §3.5 and'],
  [/each entry citing\n\/\/ the spec\)/g, 'each entry citing\n// docs §5.1)'],
  [/The fp32 accumulation the spec asks for \(RMSNorm, softmax, vision RoPE\)/g,
    'The fp32 accumulation the reference uses (RMSNorm, softmax, vision RoPE: docs §2.2, §2.5, §3.3)'],
  [/\bspec §/g, 'docs §'],
  [/\bspec (\d+(?:\.\d+)*)\b/g, 'docs §$1'],
];

/** Citations of documents outside the repository (checked outside docs/ only). */
const FORBIDDEN = [
  [/\bspec\s*§/, "'spec §' (write 'docs §')"],
  [/\bspec\//, "'spec/…' (a file outside the repository)"],
  [/\bspec (\d|[a-d]\d\b)/, "'spec <section>' (write 'docs §…')"],
  [/REFERENCE\.md/, 'REFERENCE.md (write docs §N.M)'],
  [/PERFORMANCE\.md/, 'PERFORMANCE.md (write docs/performance.md §…)'],
  [/DESIGN\.md/, 'DESIGN.md (write docs/architecture.md §…)'],
  [/ECOSYSTEM\.md/, 'ECOSYSTEM.md (write docs/packaging.md §…)'],
  [/STYLE\.md/, 'STYLE.md (outside the repository)'],
];

const NUM_ID = /^\d+(?:\.\d+)*$/;
const LETTER_ID = /^[A-Za-z]\d*(?:\.\d+)*$/;

function walk(rel, out) {
  const abs = join(ROOT, rel);
  if (!existsSync(abs)) return;
  const st = statSync(abs);
  if (st.isFile()) {
    if (!BINARY_EXT.test(rel)) out.push(rel);
    return;
  }
  for (const name of readdirSync(abs).sort()) {
    if (SKIP_DIRS.has(name) || name.startsWith('build-')) continue;
    walk(rel ? `${rel}/${name}` : name, out);
  }
}

function readText(rel) {
  const buf = readFileSync(join(ROOT, rel));
  if (buf.subarray(0, 8192).includes(0)) return null;   // binary
  return buf.toString('utf8');
}

/** Heading ids of every docs file: { numbered: Map(id → file), files: Map(file → Set(id)), letters: Map(id → file) }. */
function readDocs(problems) {
  const numbered = new Map();
  const files = new Map();
  const letters = new Map();
  const dir = join(ROOT, 'docs');
  if (!existsSync(dir)) {
    problems.push('docs/: missing');
    return { numbered, files, letters };
  }
  for (const name of readdirSync(dir).filter((n) => n.endsWith('.md')).sort()) {
    const rel = `docs/${name}`;
    const ids = new Set();
    files.set(rel, ids);
    const isNumbered = /^\d+-/.test(name);
    let fence = false;
    readFileSync(join(dir, name), 'utf8').split('\n').forEach((line, i) => {
      if (/^\s*```/.test(line)) fence = !fence;
      const m = !fence && /^#{1,6}\s+(\S+)/.exec(line);
      if (!m) return;
      const id = m[1];
      const isNum = NUM_ID.test(id);
      if (!isNum && !LETTER_ID.test(id)) return;
      if (ids.has(id)) problems.push(`${rel}:${i + 1}: heading id ${id} appears twice in the file`);
      ids.add(id);
      if (isNumbered && isNum) {
        if (numbered.has(id) && numbered.get(id) !== rel) problems.push(`${rel}:${i + 1}: section ${id} is also a heading of ${numbered.get(id)}`);
        numbered.set(id, rel);
        if (!id.startsWith(name.split('-')[0])) problems.push(`${rel}:${i + 1}: section ${id} does not belong in ${name}`);
      } else if (!isNumbered) {
        if (letters.has(id) && letters.get(id) !== rel) problems.push(`${rel}:${i + 1}: id ${id} is also a heading of ${letters.get(id)} (bare §${id} would be ambiguous)`);
        letters.set(id, rel);
      }
    });
  }
  return { numbered, files, letters };
}

// A citation token: docs/<path>, `docs §`, or §<id> with an optional range end.
const TOKEN = /(?<![\w:/.@-])docs\/([\w./-]*[\w-])|\bdocs\s+(?=§)|§\s?(\d+(?:\.\d+)*|[A-Za-z]\d*(?:\.\d+)*)(?:\s?[-–]\s?§?\s?(\d+(?:\.\d+)*))?/g;

function checkCitations(rel, text, docs, refs, problems) {
  const lines = text.split('\n');
  lines.forEach((line, i) => {
    let fileCtx = null;   // docs/<file>.md whose § ids follow on this line
    const prev = i > 0 ? lines[i - 1] : '';
    TOKEN.lastIndex = 0;
    let m;
    while ((m = TOKEN.exec(line))) {
      const where = `${rel}:${i + 1}`;
      if (m[1] !== undefined) {
        const path = `docs/${m[1]}`.replace(/[.]+$/, '');
        refs.push(`${where}: ${path}`);
        if (!existsSync(join(ROOT, path))) problems.push(`${where}: ${path} does not exist`);
        fileCtx = path.endsWith('.md') && docs.files.has(path) ? path : null;
        continue;
      }
      if (m[2] === undefined) { fileCtx = null; continue; }   // `docs §`: the numbered files
      if (/PTX/.test(line.slice(0, m.index)) || /PTX/.test(prev)) continue;   // NVIDIA's PTX ISA manual
      for (const id of [m[2], m[3]].filter((x) => x !== undefined)) {
        const target = fileCtx ?? 'docs';
        refs.push(`${where}: ${target} §${id}`);
        if (fileCtx) {
          if (!docs.files.get(fileCtx).has(id)) problems.push(`${where}: ${fileCtx} has no heading §${id}`);
        } else if (NUM_ID.test(id)) {
          if (!docs.numbered.has(id)) problems.push(`${where}: docs §${id} is not a section heading of docs/1-…7-*.md`);
        } else if (!docs.letters.has(id)) {
          problems.push(`${where}: §${id} is not a heading id of any docs file`);
        }
      }
    }
  });
}

function main() {
  const problems = [];
  const files = [];
  for (const s of SCAN) walk(s, files);

  if (flag('--fix')) {
    let changed = 0;
    for (const rel of files) {
      if (rel.startsWith('docs/') || SELF.includes(rel)) continue;
      const text = readText(rel);
      if (text === null) continue;
      let out = text;
      for (const [re, to] of REWRITES) out = out.replace(re, to);
      if (out !== text) {
        writeFileSync(join(ROOT, rel), out);
        changed++;
        console.log(`fixed ${rel}`);
      }
    }
    console.log(`--fix: rewrote ${changed} file(s)`);
  }

  const docs = readDocs(problems);
  const refs = [];
  for (const rel of files) {
    if (SELF.includes(rel)) continue;
    const text = readText(rel);
    if (text === null) continue;
    checkCitations(rel, text, docs, refs, problems);
    if (rel.startsWith('docs/')) continue;
    text.split('\n').forEach((line, i) => {
      for (const [re, what] of FORBIDDEN) if (re.test(line)) problems.push(`${rel}:${i + 1}: cites ${what}: ${line.trim().slice(0, 120)}`);
    });
  }

  if (flag('--list')) for (const r of refs) console.log(r);
  const nFiles = new Set(refs.map((r) => r.split(':')[0])).size;
  console.log(`${refs.length} citation(s) in ${nFiles} file(s); ${docs.numbered.size} numbered sections, ${docs.files.size} docs files`);
  if (problems.length) {
    console.error(`${problems.length} problem(s):`);
    for (const p of problems) console.error(`  ${p}`);
    process.exit(1);
  }
  console.log('every citation resolves inside the repository');
}

main();
