// `diffusionvl serve` end to end: the real CLI in a child process, the official `openai` npm
// client as the client (plain, SSE with an image, abort), raw HTTP for every error case, the
// Prometheus text, and SIGTERM draining. Answers are checked against the library in this
// process (same bundled model, temperature 0).
import { readFileSync } from 'node:fs';
import { mkdtempSync, rmSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel, type ChatMessage, type Model, type StreamEvent } from '../../lib/index.js';
import { DiffusionVLServer } from '../../lib/server/app.js';
import { startServe, type ServeProcess } from '../helpers/serve.js';

// Requests that must still be running when a test acts on them (abort, disconnect, SIGTERM):
// static 8 steps make one token per forward, so 600-900 tokens take hundreds of forwards on any
// machine; the bundled child's own default (dynamic 0.9) can fill a block per forward.
const LONG = { steps: 8, remasking: 'static' };

const THREE = fileURLToPath(new URL('../../examples/three-shapes.png', import.meta.url));
const DATA_URL = `data:image/png;base64,${readFileSync(THREE).toString('base64')}`;
const KEY = 'test-key-123';

let srv: ServeProcess, model: Model, client: OpenAI, imageRoot: string;
beforeAll(async () => {
  imageRoot = mkdtempSync(join(tmpdir(), 'dvl-serve-images-'));
  copyFileSync(THREE, join(imageRoot, 'three.png'));
  [srv, model] = await Promise.all([
    startServe(['--threads', '1', '--api-key', KEY, '--max-body-mb', '1', '--max-batch', '1', '--max-queue', '1', '--image-root', imageRoot]),
    loadModel('shapes-diffusionvl', { threads: 1 }),
  ]);
  client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: KEY, maxRetries: 0 });
});
afterAll(async () => {
  await srv?.stop();
  model?.dispose();
  rmSync(imageRoot, { recursive: true, force: true });
});

const withImage = (text: string, image: unknown = THREE): ChatMessage[] =>
  [{ role: 'user', content: [{ type: 'image', image }, { type: 'text', text }] }];

/** Raw POST to the chat endpoint. */
function post(body: unknown, headers: Record<string, string> = { authorization: `Bearer ${KEY}` }): Promise<Response> {
  return fetch(`${srv.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: typeof body === 'string' ? body : JSON.stringify(body) });
}

async function expectError(res: Response, status: number, param?: string | null): Promise<{ message: string; type: string; param: string | null; code: string | null }> {
  const j = await res.json() as { error: { message: string; type: string; param: string | null; code: string | null } };
  expect(res.status, JSON.stringify(j)).toBe(status);
  expect(Object.keys(j.error).sort()).toEqual(['code', 'message', 'param', 'type']);
  expect(typeof j.error.message).toBe('string');
  if (param !== undefined) expect(j.error.param).toBe(param);
  return j.error;
}

async function metric(name: string): Promise<number> {
  const text = await (await fetch(`${srv.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(name + ' ') || l.startsWith(name + '{'));
  return line ? Number(line.split(' ').at(-1)) : NaN;
}

describe('the openai client against serve', () => {
  it('lists the model', async () => {
    const list = await client.models.list();
    expect(list.data.map((m) => m.id)).toEqual(['shapes-diffusionvl']);
  });

  it('non-streaming: the answer the library gives, usage and timings', async () => {
    const r = await client.chat.completions.create({ model: 'shapes-diffusionvl', messages: [{ role: 'user', content: 'Reverse the letters: k e y' }], max_tokens: 32 });
    const ref = await model.generate({ prompt: 'Reverse the letters: k e y', maxTokens: 32 });
    expect(r.object).toBe('chat.completion');
    expect(r.choices[0].message.content).toBe(ref.text);
    expect(r.choices[0].finish_reason).toBe(ref.finishReason);
    expect(r.usage).toMatchObject({ prompt_tokens: ref.stats.promptTokens, completion_tokens: ref.ids.length, total_tokens: ref.stats.promptTokens + ref.ids.length });
    const t = (r as unknown as { timings: Record<string, number> }).timings;
    expect(t.forwards).toBe(ref.stats.forwards);
    expect(t.tokens_per_forward).toBeCloseTo(ref.stats.tokensPerForward, 2);
    expect(t.prompt_tokens).toBe(ref.stats.promptTokens);
    for (const k of ['prefill_ms', 'vision_ms', 'decode_ms', 'tokens_per_second', 'queue_ms', 'prompt_ms', 'prompt_per_second', 'predicted_ms', 'predicted_per_second']) expect(typeof t[k]).toBe('number');
    expect(t.predicted_n).toBe(ref.ids.length);
    expect(t.prompt_n).toBe(ref.stats.prefillTokens);
    expect(t.cache_n).toBe(0);
  });

  it('streaming with an image (data URL): one chunk per committed block, the same text, usage at the end', async () => {
    const stream = await client.chat.completions.create({
      model: 'shapes-diffusionvl', stream: true, stream_options: { include_usage: true }, max_tokens: 64,
      messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: DATA_URL } }, { type: 'text', text: 'Describe the image.' }] }],
    });
    const chunks = [];
    for await (const c of stream) chunks.push(c);
    const refEvents: StreamEvent[] = [];
    for await (const ev of model.stream({ messages: withImage('Describe the image.', readFileSync(THREE)), maxTokens: 64 })) refEvents.push(ev);
    const ref = (refEvents.at(-1) as Extract<StreamEvent, { type: 'done' }>).result;
    const content = chunks.filter((c) => c.choices.length > 0 && c.choices[0].finish_reason === null);
    expect(content).toHaveLength(refEvents.filter((e) => e.type === 'block').length);
    expect(content[0].choices[0].delta.role).toBe('assistant');
    expect(content.map((c) => c.choices[0].delta.content).join('')).toBe(ref.text);
    expect(ref.text.length).toBeGreaterThan(10);
    const finish = chunks.find((c) => c.choices[0]?.finish_reason);
    expect(finish?.choices[0].finish_reason).toBe('stop');
    expect(chunks.at(-1)!.usage).toMatchObject({ prompt_tokens: ref.stats.promptTokens, completion_tokens: ref.ids.length });
    expect((finish as unknown as { timings: { vision_ms: number } }).timings.vision_ms).toBeGreaterThan(0);
  });

  it('a resent conversation hits the prefix cache (cached_tokens > 0), same answer as the library', async () => {
    const first = await client.chat.completions.create({ model: 'shapes-diffusionvl', max_tokens: 48, messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: DATA_URL } }, { type: 'text', text: 'What is at the top left?' }] }] });
    const messages = [
      { role: 'user' as const, content: [{ type: 'image_url' as const, image_url: { url: DATA_URL } }, { type: 'text' as const, text: 'What is at the top left?' }] },
      { role: 'assistant' as const, content: first.choices[0].message.content },
      { role: 'user' as const, content: 'How many shapes are there?' },
    ];
    const second = await client.chat.completions.create({ model: 'shapes-diffusionvl', max_tokens: 48, messages });
    const cached = (second.usage as unknown as { prompt_tokens_details: { cached_tokens: number } }).prompt_tokens_details.cached_tokens;
    expect(cached).toBeGreaterThan(second.usage!.prompt_tokens / 2);
    const ref = await model.generate({ maxTokens: 48, messages: [...withImage('What is at the top left?'), { role: 'assistant', content: first.choices[0].message.content! }, { role: 'user', content: 'How many shapes are there?' }] });
    expect(second.choices[0].message.content).toBe(ref.text);
    expect(await metric('diffusionvl_prefix_cache_lookups_total{result="hit"}')).toBeGreaterThanOrEqual(1);
  });

  it('abort: the client going away cancels the generation', async () => {
    const before = await metric('diffusionvl_cancelled_requests_total');
    const ac = new AbortController();
    const stream = await client.chat.completions.create(
      { model: 'shapes-diffusionvl', stream: true, max_tokens: 600, messages: [{ role: 'user', content: 'Describe the image.' }], ignore_eos: true, ...LONG } as never,
      { signal: ac.signal },
    ) as unknown as AsyncIterable<unknown>;
    let n = 0;
    // The openai client ends the iteration quietly when its own signal aborts (or throws an abort error).
    // Stop reading at the abort: chunks already parsed before it may still be handed out, and how many
    // depends on how fast the server writes (a third one arrived in one CI run).
    await (async () => { for await (const _ of stream) if (++n === 2) { ac.abort(); break; } })().catch((e: Error) => expect(e instanceof OpenAI.APIUserAbortError || e.name === 'AbortError', String(e)).toBe(true));
    expect(n).toBe(2);
    // The server notices, aborts the decode and frees the model.
    for (let i = 0; i < 100 && (await metric('diffusionvl_cancelled_requests_total')) === before; i++) await new Promise((r) => setTimeout(r, 50));
    expect(await metric('diffusionvl_cancelled_requests_total')).toBe(before + 1);
    const health = await (await fetch(`${srv.url}/health`)).json() as { in_flight: number };
    expect(health.in_flight).toBe(0);

    // A non-streaming request whose client gives up is cancelled too.
    const ac2 = new AbortController();
    const p = post({ max_tokens: 600, ignore_eos: true, ...LONG, messages: [{ role: 'user', content: 'Describe the image.' }] }, { authorization: `Bearer ${KEY}` });
    void p.catch(() => undefined);
    const posted = fetch(`${srv.url}/v1/chat/completions`, { method: 'POST', signal: ac2.signal, headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` }, body: JSON.stringify({ max_tokens: 600, ignore_eos: true, ...LONG, messages: [{ role: 'user', content: 'Reverse the letters: a b' }] }) });
    for (let i = 0; i < 100 && (await metric('diffusionvl_queue_depth')) < 1; i++) await new Promise((r) => setTimeout(r, 20));
    ac2.abort();   // while it waits behind the first: it leaves the queue
    await expect(posted).rejects.toThrow();
    expect((await p).status).toBe(200);
    for (let i = 0; i < 100 && (await metric('diffusionvl_cancelled_requests_total')) < before + 2; i++) await new Promise((r) => setTimeout(r, 50));
    expect(await metric('diffusionvl_cancelled_requests_total')).toBe(before + 2);
    expect(await metric('diffusionvl_queue_depth')).toBe(0);
  });

  it('stop strings and the diffusion knobs as extra fields', async () => {
    const plain = await client.chat.completions.create({ model: 'shapes-diffusionvl', max_tokens: 64, messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: DATA_URL } }, { type: 'text', text: 'Describe the image.' }] }] });
    const text = plain.choices[0].message.content!;
    const r = await client.chat.completions.create({ model: 'shapes-diffusionvl', max_tokens: 64, stop: [' at'], messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: DATA_URL } }, { type: 'text', text: 'Describe the image.' }] }] });
    expect(r.choices[0].message.content).toBe(text.slice(0, text.indexOf(' at')));
    expect(r.choices[0].finish_reason).toBe('stop');
    const knobs = await client.chat.completions.create({ model: 'shapes-diffusionvl', max_tokens: 32, messages: [{ role: 'user', content: 'Reverse the letters: a b' }], steps: 4, remasking: 'dynamic', threshold: 0.6, block_size: 8 } as never) as unknown as { timings: { steps: number; remasking: string } };
    expect(knobs.timings).toMatchObject({ steps: 4, remasking: 'dynamic' });
    const ref = await model.generate({ prompt: 'Reverse the letters: a b', maxTokens: 32, steps: 4, remasking: 'dynamic', threshold: 0.6 });
    expect((knobs as unknown as { choices: { message: { content: string } }[] }).choices[0].message.content).toBe(ref.text);
  });
});

describe('errors over raw HTTP, in OpenAI\'s shape', () => {
  it('401 without or with a wrong key; /health and /metrics stay open', async () => {
    expect((await expectError(await post({ messages: [{ role: 'user', content: 'x' }] }, {}), 401)).code).toBe('invalid_api_key');
    await expectError(await post({ messages: [{ role: 'user', content: 'x' }] }, { authorization: 'Bearer nope' }), 401);
    await expectError(await fetch(`${srv.url}/v1/models`), 401);
    expect((await fetch(`${srv.url}/health`)).status).toBe(200);
    expect((await fetch(`${srv.url}/metrics`)).status).toBe(200);
  });

  it('400 names the field', async () => {
    const m = [{ role: 'user', content: 'x' }];
    await expectError(await post({ messages: m, max_tokens: -1 }), 400, 'max_tokens');
    await expectError(await post({ messages: m, max_tokens: 100_000 }), 400, 'max_tokens');   // over the context: the library's check
    await expectError(await post({ messages: m, max_tokens: 100_000, stream: true }), 400, 'max_tokens');   // streaming too: no 200 before the first block
    await expectError(await post({ messages: m, temperature: 5 }), 400, 'temperature');
    await expectError(await post({ messages: m, steps: 0 }), 400, 'steps');
    await expectError(await post({ messages: m, remasking: 'sideways' }), 400, 'remasking');
    await expectError(await post({ messages: m, blocksize: 8 }), 400, 'blocksize');
    await expectError(await post({ messages: m, n: 2 }), 400, 'n');
    await expectError(await post({ messages: m, stop: [''] }), 400, 'stop');
    await expectError(await post({ messages: [] }), 400, 'messages');
    await expectError(await post({ messages: [{ role: 'tool', content: 'x' }] }), 400, 'messages[0].role');
    await expectError(await post({ messages: [{ role: 'user', content: [{ type: 'input_audio' }] }] }), 400, 'messages[0].content[0].type');
    await expectError(await post('{"messages": [oops'), 400);
    const bad = await expectError(await post({ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'data:image/png;base64,AAAA' } }, { type: 'text', text: 'x' }] }] }), 400, 'messages');
    expect(bad.code).toBe('invalid_image');
  });

  it('image URLs: file: only under --image-root, http(s) only with its flag', async () => {
    const ask = (url: string) => post({ max_tokens: 8, messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url } }, { type: 'text', text: 'Describe the image.' }] }] });
    const ok = await ask(pathToFileURL(join(imageRoot, 'three.png')).href);
    expect(ok.status).toBe(200);
    expect((await expectError(await ask(pathToFileURL(THREE).href), 400, 'messages[0].content[0].image_url.url')).code).toBe('image_url_not_allowed');
    expect((await expectError(await ask('https://example.com/cat.png'), 400, 'messages[0].content[0].image_url.url')).code).toBe('image_url_not_allowed');
    await expectError(await ask('ftp://example.com/cat.png'), 400, 'messages[0].content[0].image_url.url');
  });

  it('404 for an unknown model or route, 413 over the body cap', async () => {
    expect((await expectError(await post({ model: 'gpt-4o', messages: [{ role: 'user', content: 'x' }] }), 404, 'model')).code).toBe('model_not_found');
    await expectError(await fetch(`${srv.url}/v2/nothing`), 404);
    // The server reads the rest of an over-cap body before it answers: without that the reply
    // closed the socket under the client's write and about one post in fifteen failed with EPIPE.
    const big = JSON.stringify({ messages: [{ role: 'user', content: 'x'.repeat(1_200_000) }] });
    for (let i = 0; i < 60; i++) expect((await expectError(await post(big), 413)).code).toBe('request_too_large');
  });

  it('429 when the queue is full (--max-batch 1 --max-queue 1: one running, one waiting)', async () => {
    const long = { stream: true, max_tokens: 600, ignore_eos: true, ...LONG, messages: [{ role: 'user', content: 'Describe the image.' }] };
    const a1 = new AbortController(), a2 = new AbortController();
    const r1 = await fetch(`${srv.url}/v1/chat/completions`, { method: 'POST', signal: a1.signal, headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` }, body: JSON.stringify(long) });
    const reader = r1.body!.getReader();
    await reader.read();   // the first block: r1 is running
    const p2 = fetch(`${srv.url}/v1/chat/completions`, { method: 'POST', signal: a2.signal, headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` }, body: JSON.stringify(long) }).catch(() => undefined);
    for (let i = 0; i < 100 && (await metric('diffusionvl_queue_depth')) < 1; i++) await new Promise((r) => setTimeout(r, 20));
    expect(await metric('diffusionvl_queue_depth')).toBe(1);
    const e = await expectError(await post({ messages: [{ role: 'user', content: 'x' }] }), 429);
    expect(e.type).toBe('rate_limit_error');
    a2.abort(); a1.abort();
    await p2;
    for (let i = 0; i < 100 && (await metric('diffusionvl_requests_in_flight')) > 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(await metric('diffusionvl_queue_depth')).toBe(0);
  });

  it('/metrics is Prometheus text with requests, tokens, forwards, queue depth and latency histograms', async () => {
    const text = await (await fetch(`${srv.url}/metrics`)).text();
    for (const name of ['diffusionvl_requests_total', 'diffusionvl_prompt_tokens_total', 'diffusionvl_completion_tokens_total', 'diffusionvl_forwards_total', 'diffusionvl_queue_depth', 'diffusionvl_request_duration_seconds_bucket', 'diffusionvl_time_to_first_block_seconds_bucket', 'diffusionvl_queue_wait_seconds_bucket', 'diffusionvl_model_loaded 1']) {
      expect(text).toContain(name);
    }
    expect(text).toMatch(/diffusionvl_requests_total\{endpoint="\/v1\/chat\/completions",status="200"\} \d+/);
    expect(await metric('diffusionvl_forwards_total')).toBeGreaterThan(10);
  });
});

describe('lifecycle', () => {
  it('503 while the model loads, /health ready only after', async () => {
    const s = new DiffusionVLServer({ model: 'shapes-diffusionvl', loadOptions: { threads: 1 } });
    try {
      const h = await s.app.inject({ url: '/health' });
      expect(h.statusCode).toBe(503);
      expect(h.json()).toMatchObject({ status: 'loading' });
      const m = await s.app.inject({ url: '/v1/models' });
      expect(m.statusCode).toBe(503);
      expect(m.headers['retry-after']).toBe('5');
      expect(m.json().error.code).toBe('model_loading');
      await s.load();
      expect((await s.app.inject({ url: '/health' })).statusCode).toBe(200);
      expect((await s.app.inject({ url: '/v1/models' })).json().data[0].id).toBe('shapes-diffusionvl');
      const page = await s.app.inject({ url: '/' });
      expect(page.headers['content-type']).toMatch(/text\/html/);
      expect(page.body).toContain('<canvas id="canvas"');
    } finally {
      await s.shutdown(0);
    }
    expect(s.state).toBe('draining');
  });

  /** Starts a long stream on `s`, sends SIGTERM after its first block, and returns the rest of the stream. */
  async function sigtermDuringStream(s: ServeProcess, maxTokens: number, extra: Record<string, unknown> = {}): Promise<string> {
    const res = await fetch(`${s.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ stream: true, max_tokens: maxTokens, ignore_eos: true, messages: [{ role: 'user', content: 'Describe the image.' }], ...extra }) });
    const reader = res.body!.getReader();
    await reader.read();
    s.proc.kill('SIGTERM');
    let text = '';
    for (;;) { const { value, done } = await reader.read(); if (done) break; text += new TextDecoder().decode(value); }
    return text;
  }

  it('SIGTERM drains: the request in flight completes, then the process exits 0', async () => {
    const s = await startServe(['--threads', '1']);
    const text = await sigtermDuringStream(s, 120);
    expect(text).toContain('"finish_reason":"length"');
    expect(text.trimEnd().endsWith('data: [DONE]')).toBe(true);
    expect(await s.exited).toBe(0);
    expect(s.events.map((e) => e.event)).toEqual(['listening', 'ready', 'draining', 'stopped']);
  });

  it('SIGTERM with a short --drain-timeout aborts what is still running and exits 0', async () => {
    // Static 8 steps: one token per forward, ≈ 900 forwards (hundreds of ms on any machine),
    // far past the 50 ms drain; the bundled child's own default (dynamic) can fill a block per
    // forward and finish first.
    const s = await startServe(['--threads', '1', '--drain-timeout', '0.05']);
    expect(await sigtermDuringStream(s, 900, LONG)).toContain('shutting_down');
    expect(await s.exited).toBe(0);
  });
});
