// Hostile options: loadModel's and generate's options, requests built to confuse, absurd sizes.
// Every case must end in a typed error naming the culprit (or succeed where the input is
// legal), quickly and within the RSS bound, never crash or hang (harness.ts).
import { describe, it } from 'vitest';
import { hostileSuite, type HostileCase } from './harness.js';

const LOAD = 'await dvl.loadModel(undefined, ';
const M = 'const m = S.m ??= await dvl.loadModel(undefined, { threads: 1 });';
const opt = (name: string, message?: RegExp) => ({ name: 'OptionError', code: 'DVL_OPTION', message });

const loadCases: HostileCase[] = [
  { name: 'load: thread (typo) gets a hint', body: `${LOAD}{ thread: 2 });`, throws: opt('', /Unknown option "thread": did you mean "threads"\?/) },
  { name: "load: threads '4' (string)", body: `${LOAD}{ threads: '4' });`, throws: opt('', /for threads but received "4" \(string\)/) },
  { name: 'load: threads 1024 (oversubscribed)', body: `${LOAD}{ threads: 1024 });`, throws: opt('', /Expected integer in \[1, \d+\] for threads but received 1024/) },
  { name: 'load: threads 0', body: `${LOAD}{ threads: 0 });`, throws: opt('', /threads/) },
  { name: 'load: threads 1.5', body: `${LOAD}{ threads: 1.5 });`, throws: opt('', /threads/) },
  { name: 'load: threads NaN', body: `${LOAD}{ threads: NaN });`, throws: opt('', /threads/) },
  { name: 'load: contextLength -1', body: `${LOAD}{ contextLength: -1 });`, throws: opt('', /contextLength/) },
  { name: "load: contextLength '8'", body: `${LOAD}{ contextLength: '8' });`, throws: opt('', /contextLength/) },
  { name: 'load: contextLength 2^40', body: `${LOAD}{ contextLength: 2 ** 40 });`, throws: opt('', /contextLength/) },
  {
    name: 'load: contextLength 2^24 on a small machine budget is a MemoryError naming the numbers',
    body: `const c0 = cpu(); try { ${LOAD}{ contextLength: 2 ** 24, limits: { imagePixels: 1 } }); } catch (e) { e.cpu = cpu() - c0; throw e; }`,
    // 2^24 positions of this model's KV cache alone are 16 GiB + activations: more than CI has free.
    throws: { name: 'MemoryError', code: 'DVL_MEMORY', message: /needs about .* KV cache .*16777216 positions.*lower contextLength to \d+/ },
  },
  { name: "load: dtype 'q4'", body: `${LOAD}{ dtype: 'q4' });`, throws: opt('', /one of 'bf16', 'f16', 'f32', 'q8' for dtype/) },
  { name: "load: dtype 'q8' is accepted", body: `const m = ${LOAD}{ dtype: 'q8', threads: 1 }); m.dispose(); return 'ok';` },
  { name: "load: precision 'fast' is accepted", body: `const m = ${LOAD}{ precision: 'fast', threads: 1 }); m.dispose(); return 'ok';` },
  { name: "load: precision 'exact' is accepted", body: `const m = ${LOAD}{ precision: 'exact', threads: 1 }); m.dispose(); return 'ok';` },
  { name: "load: precision 'turbo'", body: `${LOAD}{ precision: 'turbo' });`, throws: opt('', /one of 'exact', 'fast' for precision/) },
  { name: "load: gpu 'yes'", body: `${LOAD}{ gpu: 'yes' });`, throws: opt('', /for gpu/) },
  { name: 'load: device -1', body: `${LOAD}{ device: -1 });`, throws: opt('', /for device/) },
  { name: "load: isa 'avx9'", body: `${LOAD}{ isa: 'avx9' });`, throws: opt('', /for isa/) },
  { name: 'load: onProgress 5', body: `${LOAD}{ onProgress: 5 });`, throws: opt('', /function for onProgress/) },
  { name: 'load: signal {}', body: `${LOAD}{ signal: {} });`, throws: opt('', /AbortSignal for signal/) },
  { name: "load: vision 'no'", body: `${LOAD}{ vision: 'no' });`, throws: opt('', /boolean for vision/) },
  { name: "load: cudaPluginPaths 'x'", body: `${LOAD}{ cudaPluginPaths: 'x' });`, throws: opt('', /array of strings/) },
  { name: 'load: limits.foo', body: `${LOAD}{ limits: { streamIdleMS: 5 } });`, throws: opt('', /Unknown option "limits.streamIdleMS": did you mean "limits.streamIdleMs"\?/) },
  { name: 'load: limits.imagePixels 0', body: `${LOAD}{ limits: { imagePixels: 0 } });`, throws: opt('', /limits.imagePixels/) },
  { name: 'load: options null', body: `${LOAD}null);`, throws: opt('', /object for options/) },
  { name: 'load: options an array', body: `${LOAD}[1]);`, throws: opt('', /object for options/) },
  {
    name: 'load: __proto__ from JSON.parse is an unknown key, not a prototype',
    body: `${LOAD}JSON.parse('{"__proto__": {"threads": 1024}}'));`, throws: opt('', /Unknown option "__proto__"/),
  },
  { name: 'load: inherited options are ignored', body: `const m = ${LOAD}Object.create({ threads: 1024 })); const t = m.memory.contextLength; m.dispose(); return t;` },
];

const genCases: HostileCase[] = [
  { name: 'generate: steps 1e9', body: `${M} await m.generate({ prompt: 'x', steps: 1e9 });`, throws: opt('', /Expected integer ≤ 8 .*for steps but received 1000000000/) },
  { name: 'generate: steps 2^32', body: `${M} await m.generate({ prompt: 'x', steps: 2 ** 32 });`, throws: opt('', /for steps/) },
  { name: 'generate: steps 0', body: `${M} await m.generate({ prompt: 'x', steps: 0 });`, throws: opt('', /integer ≥ 1 for steps/) },
  { name: 'generate: blockSize 1e9', body: `${M} await m.generate({ prompt: 'x', blockSize: 1e9 });`, throws: opt('', /for blockSize/) },
  { name: 'generate: blockSize past the context', body: `${M} await m.generate({ prompt: 'x', blockSize: 2048 });`, throws: opt('', /integer in \[1, 1024\] \(the context length\) for blockSize/) },
  { name: 'generate: maxTokens 1e9', body: `${M} await m.generate({ prompt: 'x', maxTokens: 1e9 });`, throws: opt('', /for maxTokens/) },
  { name: 'generate: maxTokens -1', body: `${M} await m.generate({ prompt: 'x', maxTokens: -1 });`, throws: opt('', /for maxTokens/) },
  { name: 'generate: maxTokens Infinity', body: `${M} await m.generate({ prompt: 'x', maxTokens: Infinity });`, throws: opt('', /for maxTokens/) },
  { name: 'generate: temperature NaN', body: `${M} await m.generate({ prompt: 'x', temperature: NaN });`, throws: opt('', /for temperature/) },
  { name: 'generate: topK 1e12', body: `${M} await m.generate({ prompt: 'x', topK: 1e12 });`, throws: opt('', /for topK/) },
  { name: 'generate: seed -1', body: `${M} await m.generate({ prompt: 'x', temperature: 1, seed: -1 });`, throws: opt('', /for seed/) },
  { name: "generate: stopTokens 'x'", body: `${M} await m.generate({ prompt: 'x', stopTokens: 'x' });`, throws: opt('', /for stopTokens/) },
  { name: 'generate: stopTokens past the vocabulary', body: `${M} await m.generate({ prompt: 'x', stopTokens: [1e9] });`, throws: opt('', /stopTokens\[0\]/) },
  { name: 'generate: unknown key with a hint', body: `${M} await m.generate({ prompt: 'x', stesp: 2 });`, throws: opt('', /did you mean "steps"/) },
  {
    name: 'generate: __proto__ request from JSON.parse is refused, not applied',
    body: `${M} await m.generate(JSON.parse('{"prompt": "x", "__proto__": {"steps": 1000000000, "maxTokens": 4}}'));`,
    throws: opt('', /Unknown option "__proto__"/),
  },
  {
    name: 'generate: inherited request fields are not read',
    body: `${M} const r = await m.generate(Object.assign(Object.create({ maxTokens: 1e9, steps: 1e9 }), { prompt: 'Reverse the letters: a b', maxTokens: 8 })); return r.stats.generatedTokens;`,
    check: (r) => { if (!r.ok || typeof r.value !== 'number' || r.value > 8) throw new Error(JSON.stringify(r)); },
  },
  { name: 'generate: prompt and messages together', body: `${M} await m.generate({ prompt: 'x', messages: [{ role: 'user', content: 'y' }] });`, throws: opt('', /give one of messages, prompt or promptIds, not messages and prompt/) },
  { name: 'generate: promptIds and prompt together', body: `${M} await m.generate({ prompt: 'x', promptIds: [1, 2] });`, throws: opt('', /not prompt and promptIds/) },
  { name: 'generate: no prompt at all', body: `${M} await m.generate({ maxTokens: 4 });`, throws: opt('', /give messages, prompt or promptIds/) },
  { name: 'generate: prompt not a string', body: `${M} await m.generate({ prompt: 42 });`, throws: opt('', /string for prompt/) },
  { name: 'generate: messages not an array', body: `${M} await m.generate({ messages: 'hi' });`, throws: opt('', /for messages/) },
  { name: "generate: mode 'fast'", body: `${M} await m.generate({ prompt: 'x', mode: 'fast' });`, throws: opt('', /for mode/) },
  { name: 'generate: engine with an unknown switch', body: `${M} await m.generate({ prompt: 'x', engine: { turbo: true } });`, throws: opt('', /engine.turbo/) },
  { name: 'generate: request null', body: `${M} await m.generate(null);`, throws: opt('', /object for request/) },
  { name: 'generate: request an array', body: `${M} await m.generate([]);`, throws: opt('', /object for request/) },
  { name: 'generate: 10^7 promptIds', body: `${M} await m.generate({ promptIds: new Array(1e7).fill(1) });`, throws: opt('', /promptIds holds 10000000 ids, more than the context length 1024/) },
  { name: 'generate: promptIds with -5', body: `${M} await m.generate({ promptIds: [1, -5, 2], maxTokens: 4 });`, throws: { name: 'OutOfRangeError', message: /prompt id -5 at position 1/ } },
  { name: 'generate: promptIds with NaN', body: `${M} await m.generate({ promptIds: [1, NaN], maxTokens: 4 });`, throws: { name: 'OutOfRangeError' } },
  {
    name: 'generate: a prompt that leaves no room is refused before decoding',
    body: `${M} await m.generate({ prompt: 'a '.repeat(2000), maxTokens: 4 });`, throws: opt('', /prompt/),
  },
  {
    name: 'generate: a 10 MB prompt fails at once, without tokenizing (CPU ms reported)',
    body: `${M} const c0 = cpu(); try { await m.generate({ prompt: 'word '.repeat(2_000_000) }); } catch (e) { e.message += ' cpu=' + (cpu() - c0).toFixed(0); throw e; }`,
    throws: opt('', /the prompt is \d+ bytes, more than the \d+ that can fit in 1023 tokens.* cpu=(\d{1,3}|1\d{3})$/),
  },
  {
    name: 'generate: stats.steps has one record per returned token',
    body: `${M} const r = await m.generate({ prompt: 'Reverse the letters: a b', maxTokens: 64 }); return [r.stats.steps.length, r.ids.length, r.finishReason];`,
    check: (r) => { const [s, n, f] = r.value as [number, number, string]; if (s !== n || f !== 'stop') throw new Error(JSON.stringify(r)); },
  },
  {
    name: 'generate: the model still works after all of the above',
    body: `${M} const r = await m.generate({ prompt: 'How many letters are in: a b c?', maxTokens: 32 }); return r.text;`,
    check: (r) => { if (!r.ok || !/3/.test(String(r.value))) throw new Error(JSON.stringify(r)); },
  },
];

describe('hostile options', () => {
  hostileSuite(it, [...loadCases, ...genCases]);
});
