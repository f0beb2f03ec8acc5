// session.ts — `npm run bench:session`: what a ChatSession saves over cold generate() calls in a
// multi-turn conversation, both decoding modes, all figures from one run on one machine.
//
// The model is the random checkpoint with Qwen2.5-0.5B's shapes that `npm run bench` seeds into
// .cache/ (or a model folder given with --model). A long system prompt and five short user turns,
// 32 tokens per reply (EOS ignored, so every run does the same work). Per turn: prompt positions,
// how many the session reused and prefilled, prefill ms and total ms for the session and for a
// cold generate() of the same messages, and whether their ids agree (they must). Writes
// bench/out/session.json and prints the table for bench/RESULTS.md.
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadModel } from '../lib/model/model.js';
import type { GenerateRequest, GenerateResult } from '../lib/model/model.js';
import type { ChatMessage } from '../lib/text/prompt.js';
import { nativeInfo, packageRoot } from '../lib/native/index.js';
import { QWEN25_05B, seedCheckpoint } from './seed.js';

const { values: v } = parseArgs({ options: {
  model: { type: 'string' }, threads: { type: 'string' }, 'max-tokens': { type: 'string', default: '32' },
} });
const log = (s: string) => process.stdout.write(s + '\n');
const root = packageRoot();
const dir = v.model ?? await seedCheckpoint(join(root, '.cache', 'bench-qwen2.5-0.5b'), QWEN25_05B, log);
const maxTokens = Number(v['max-tokens']);

const SYSTEM = 'You are a careful assistant for a small engineering team. ' + [
  'Answer in plain sentences, cite the file you are talking about, prefer short answers, say when you do not know,',
  'never invent numbers, keep units, and when asked for code give the smallest change that works and explain why it is safe.',
  'The team works on a block-diffusion inference engine: the answer is written in blocks of eight tokens, each block starts',
  'as mask tokens and is filled in a few parallel denoising steps against a key-value cache of all earlier blocks.',
].join(' ').repeat(3);
const TURNS = [
  'What does the prefill do?', 'And the straddling block?', 'Why is the commit pass needed?',
  'How many forwards does one block take with four steps?', 'Summarise the conversation in one line.',
];

interface Row { turn: number; promptTokens: number; reused: number; prefilled: number; sessionPrefillMs: number; coldPrefillMs: number; sessionMs: number; coldMs: number; same: boolean }

const info = nativeInfo();
const machine = { cpu: cpus()[0]?.model ?? 'unknown', physicalCores: info.physicalCores, isa: info.isa, date: new Date().toISOString() };
log(`machine: ${machine.cpu}, ${machine.physicalCores} cores, ISA ${machine.isa}; model ${dir}`);
await using model = await loadModel(dir, { threads: v.threads ? Number(v.threads) : undefined });

const results: Record<string, Row[]> = {};
for (const [label, opts] of [['ar', { mode: 'ar' }], ['diffusion bs 8, 4 steps', { mode: 'diffusion', blockSize: 8, steps: 4 }]] as [string, GenerateRequest][]) {
  const base: GenerateRequest = { ...opts, maxTokens, stopTokens: [], temperature: 0 };
  await using chat = model.createSession({ messages: [{ role: 'system', content: SYSTEM }], defaults: base });
  const rows: Row[] = [];
  for (let t = 0; t < TURNS.length; t++) {
    const history: ChatMessage[] = chat.messages;
    const warm: GenerateResult = await chat.send(TURNS[t]);
    const cold = await model.generate({ ...base, messages: [...history, { role: 'user', content: TURNS[t] }] });
    rows.push({
      turn: t + 1, promptTokens: warm.stats.promptTokens, reused: warm.stats.cachedTokens, prefilled: warm.stats.prefillTokens,
      sessionPrefillMs: warm.stats.prefillMs, coldPrefillMs: cold.stats.prefillMs, sessionMs: warm.stats.totalMs, coldMs: cold.stats.totalMs,
      same: warm.ids.join() === cold.ids.join(),
    });
    const r = rows.at(-1)!;
    log(`${label} turn ${r.turn}: P ${r.promptTokens}, reused ${r.reused}, prefilled ${r.prefilled}; prefill ${r.sessionPrefillMs.toFixed(0)} vs ${r.coldPrefillMs.toFixed(0)} ms cold; total ${r.sessionMs.toFixed(0)} vs ${r.coldMs.toFixed(0)} ms; ids ${r.same ? 'equal' : 'DIFFER'}`);
  }
  results[label] = rows;
}

const sum = (rows: Row[], k: keyof Row) => rows.reduce((a, r) => a + (r[k] as number), 0);
const lines = ['| mode | turn | prompt | reused | prefilled | prefill ms session / cold | turn ms session / cold | ids |', '|---|---|---|---|---|---|---|---|'];
for (const [label, rows] of Object.entries(results)) {
  for (const r of rows) {
    lines.push(`| ${label} | ${r.turn} | ${r.promptTokens} | ${r.reused} | ${r.prefilled} | ${r.sessionPrefillMs.toFixed(0)} / ${r.coldPrefillMs.toFixed(0)} | ${r.sessionMs.toFixed(0)} / ${r.coldMs.toFixed(0)} | ${r.same ? 'equal' : 'differ'} |`);
  }
  const later = rows.slice(1);
  lines.push(`| ${label} | 2–${rows.length} | ${sum(later, 'promptTokens')} | ${sum(later, 'reused')} | ${sum(later, 'prefilled')} | ${sum(later, 'sessionPrefillMs').toFixed(0)} / ${sum(later, 'coldPrefillMs').toFixed(0)} (${(sum(later, 'coldPrefillMs') / Math.max(1e-9, sum(later, 'sessionPrefillMs'))).toFixed(1)}×) | ${sum(later, 'sessionMs').toFixed(0)} / ${sum(later, 'coldMs').toFixed(0)} (${(sum(later, 'coldMs') / Math.max(1e-9, sum(later, 'sessionMs'))).toFixed(2)}×) | |`);
}
log('\n' + lines.join('\n'));
mkdirSync(join(root, 'bench', 'out'), { recursive: true });
writeFileSync(join(root, 'bench', 'out', 'session.json'), JSON.stringify({ machine, model: dir, maxTokens, threads: v.threads ?? 'default', results }, null, 2));
