// Hostile use at run time: streams abandoned, aborted or collected while they hold the model,
// aborts of queued requests, dispose in the middle, and native allocations whose sizes
// overflow. The model lock must always come back; nothing may crash the process.
import { describe, it } from 'vitest';
import { hostileSuite, type HostileCase } from './harness.js';

const REQ = "{ prompt: 'Reverse the letters: a b c d e f g h i j', maxTokens: 64, stopTokens: [] }";
const withTimeout = (what: string, ms = 20_000) =>
  `await Promise.race([${what}, sleep(${ms}).then(() => { throw new Error('still waiting after ${ms} ms: the model lock was not released'); })])`;

const lockCases: HostileCase[] = [
  {
    name: 'stream: abandoned after one next() is closed by the idle timeout, and the model serves the next request',
    // One cache slot (maxBatch 1): the next request needs exactly the slot the abandoned stream holds.
    body: `const m = await dvl.loadModel(undefined, { threads: 1, maxBatch: 1, limits: { streamIdleMs: 300 } });
      const it = m.stream(${REQ}); await it.next();
      const r = ${withTimeout(`m.generate(${REQ})`)};
      await sleep(450);   // past the idle timeout even when the generate above was quicker than it
      let late; try { await it.next(); } catch (e) { late = e.code; }
      m.dispose(); return [r.stats.generatedTokens, late];`,
    check: (r) => { const [n, late] = r.value as [number, string]; if (!r.ok || n !== 64 || late !== 'DVL_STREAM_IDLE') throw new Error(JSON.stringify(r)); },
  },
  {
    name: 'stream: abandoned and garbage-collected releases the model (no idle timeout)',
    nodeArgs: ['--expose-gc'], alone: true,
    body: `const m = await dvl.loadModel(undefined, { threads: 1, maxBatch: 1, limits: { streamIdleMs: 0 } });
      await (async () => { const it = m.stream(${REQ}); await it.next(); })();
      const next = m.generate(${REQ});
      for (let i = 0; i < 40; i++) { globalThis.gc(); await sleep(25); }
      const r = ${withTimeout('next')};
      m.dispose(); return r.stats.generatedTokens;`,
    check: (r) => { if (!r.ok || r.value !== 64) throw new Error(JSON.stringify(r)); },
  },
  {
    name: 'stream: its signal aborting while it is idle releases the model',
    body: `const m = await dvl.loadModel(undefined, { threads: 1, maxBatch: 1, limits: { streamIdleMs: 0 } });
      const ac = new AbortController();
      const it = m.stream({ ...${REQ}, signal: ac.signal }); await it.next();
      ac.abort(new Error('client went away'));
      const r = ${withTimeout(`m.generate(${REQ})`)};
      let why; try { await it.next(); } catch (e) { why = e.message; }
      m.dispose(); return [r.stats.generatedTokens, why];`,
    check: (r) => { const [n, why] = r.value as [number, string]; if (n !== 64 || why !== 'client went away') throw new Error(JSON.stringify(r)); },
  },
  {
    name: 'stream: return() releases at once',
    body: `const m = await dvl.loadModel(undefined, { threads: 1, maxBatch: 1, limits: { streamIdleMs: 0 } });
      const it = m.stream(${REQ}); await it.next(); await it.return();
      const r = ${withTimeout(`m.generate(${REQ})`, 10_000)}; m.dispose(); return (await it.next()).done;`,
    check: (r) => { if (r.value !== true) throw new Error(JSON.stringify(r)); },
  },
  {
    name: 'stream: break out of for await releases at once',
    body: `const m = await dvl.loadModel(undefined, { threads: 1, maxBatch: 1, limits: { streamIdleMs: 0 } });
      for await (const ev of m.stream(${REQ})) break;
      const r = ${withTimeout(`m.generate(${REQ})`, 10_000)}; m.dispose(); return r.stats.generatedTokens;`,
  },
  {
    name: 'lock: a queued request whose signal aborts rejects at once, not when the one ahead ends',
    body: `const m = await dvl.loadModel(undefined, { threads: 1, maxBatch: 1 });
      let aDone = false;
      const a = m.generate({ ...${REQ}, maxTokens: 512, steps: 8, remasking: 'static' }).then(() => { aDone = true; });   // one token per forward: still running long after 15 ms
      await sleep(5);
      let doneWhenRejected;
      try { await m.generate({ ...${REQ}, signal: AbortSignal.timeout(10) }); } catch (e) { doneWhenRejected = aDone; if (e.name !== 'TimeoutError') throw e; }
      await a; m.dispose(); return doneWhenRejected;`,
    check: (r) => { if (!r.ok || r.value !== false) throw new Error(JSON.stringify(r)); },
  },
  {
    name: 'lock: an already-aborted signal rejects before queueing',
    body: `const m = await dvl.loadModel(undefined, { threads: 1 }); try { await m.generate({ ...${REQ}, signal: AbortSignal.abort(new Error('no')) }); } finally { m.dispose(); }`,
    throws: { name: 'Error', message: /^no$/ },
  },
  {
    name: 'lock: three concurrent generations all finish, in order (one slot: one after another)',
    body: `const m = await dvl.loadModel(undefined, { threads: 1, maxBatch: 1 }); const order = [];
      await Promise.all([1, 2, 3].map((k) => m.generate({ ...${REQ}, maxTokens: 16 }).then(() => order.push(k))));
      m.dispose(); return order;`,
    check: (r) => { if (JSON.stringify(r.value) !== '[1,2,3]') throw new Error(JSON.stringify(r)); },
  },
  {
    name: 'dispose: while a stream is suspended, its next() rejects with DisposedError',
    body: `const m = await dvl.loadModel(undefined, { threads: 1 }); const it = m.stream(${REQ}); await it.next(); m.dispose(); await it.next();`,
    throws: { name: 'DisposedError' },
  },
  {
    name: 'dispose: generate after dispose',
    body: `const m = await dvl.loadModel(undefined, { threads: 1 }); m.dispose(); await m.generate(${REQ});`,
    throws: { name: 'DisposedError' },
  },
  {
    name: 'load: an abort during the load frees what it allocated and rejects with the reason',
    body: `await dvl.loadModel(undefined, { threads: 1, signal: AbortSignal.abort(new Error('stop loading')) });`,
    throws: { name: 'Error', message: /stop loading/ },
  },
];

const q = "const q = new native.Queue({ threads: 1 });";
const nativeCases: HostileCase[] = [
  { name: 'native: empty [2^31, 2^31, 2^31] (product past int64)', alone: true, body: `${q} q.empty('f32', [2 ** 31, 2 ** 31, 2 ** 31]);`, throws: { name: 'MemoryError', code: 'DVL_ALLOC', message: /more than 2\^44 elements/ } },
  { name: 'native: empty [10^15, 10^15]', alone: true, body: `${q} q.empty('bf16', [1e15, 1e15]);`, throws: { name: 'MemoryError', code: 'DVL_ALLOC' } },
  { name: 'native: empty [2^62, 4]', alone: true, body: `${q} q.empty('f32', [2 ** 62, 4]);`, throws: { name: 'ShapeError' } },
  { name: 'native: empty [2^22, 2^22, 2] (2^45 elements: refused, not mapped)', alone: true, body: `${q} q.empty('f32', [2 ** 22, 2 ** 22, 2]);`, throws: { name: 'MemoryError', code: 'DVL_ALLOC' } },
  { name: 'native: empty [-1, 4]', body: `${q} q.empty('f32', [-1, 4]);`, throws: { name: 'ShapeError' } },
  { name: 'native: empty with a 0 dimension is a valid empty tensor', body: `${q} const t = q.empty('f32', [0, 2 ** 40]); const n = t.nbytes; t.dispose(); q.dispose(); return n;`, check: (r) => { if (r.value !== 0) throw new Error(JSON.stringify(r)); } },
  { name: 'native: Queue threads 10^6', body: 'new native.Queue({ threads: 1e6 });', throws: { name: 'DiffusionVLError', code: 'DVL_ARG' } },
];

describe('hostile run time', () => {
  hostileSuite(it, [...lockCases, ...nativeCases]);
});
