// lib/text/template.ts: chat templates render in a child process with limits. The hostile
// corpus (test/hostile/inputs.test.ts) runs the runaway templates through a model; these
// check the renderer itself: output, the typed errors, and recovery after a kill.
import { describe, expect, it } from 'vitest';
import { ConfigError, OptionError } from '../../lib/errors.js';
import { RANGE_LIMIT, renderTemplate, renderTemplateSync } from '../../lib/text/template.js';

const L = { timeMs: 5000, maxChars: 1000 };
const ctx = { messages: [{ role: 'user', content: 'Hi' }], add_generation_prompt: true };
const CHAT = '{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}';

describe('chat template renderer', () => {
  it('renders the same text synchronously and asynchronously', async () => {
    const want = '<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n';
    expect(renderTemplateSync(CHAT, ctx, L)).toBe(want);
    expect(await renderTemplate(CHAT, ctx, L)).toBe(want);
    expect(await renderTemplate('{% for i in range(3) %}{{ i }}{% endfor %}', {}, L)).toBe('012');
  });

  it('typed errors: parse, runtime, range cap, output cap → ConfigError; raise_exception → OptionError', async () => {
    await expect(renderTemplate('{% for', {}, L)).rejects.toMatchObject({ name: 'ConfigError', field: 'chat_template', message: expect.stringMatching(/does not parse/) });
    await expect(renderTemplate('{{ nope() }}', {}, L)).rejects.toBeInstanceOf(ConfigError);
    await expect(renderTemplate(`{% for i in range(${RANGE_LIMIT + 1}) %}{% endfor %}`, {}, L)).rejects.toThrow(/exceeds the limit/);
    await expect(renderTemplate('{% for i in range(2000) %}x{% endfor %}', {}, L)).rejects.toThrow(/renders too much text: rendered 2000 characters, more than the limit of 1000/);
    await expect(renderTemplate("{{ raise_exception('bad order') }}", {}, L)).rejects.toMatchObject({ name: 'OptionError', option: 'messages' });
    expect(() => renderTemplateSync('{% for', {}, L)).toThrow(ConfigError);
    expect(() => renderTemplateSync('x', { v: 1n }, L)).toThrow(OptionError);
  });

  it('a render past the time limit is killed; the next render starts a fresh renderer', async () => {
    const loop = '{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}';
    await expect(renderTemplate(loop, {}, { ...L, timeMs: 300 })).rejects.toThrow(/took longer than 300 ms/);
    expect(() => renderTemplateSync(loop, {}, { ...L, timeMs: 300 })).toThrow(/took longer than 300 ms/);
    expect(await renderTemplate('ok', {}, L)).toBe('ok');
  });

  it('an abort kills the render and rejects with the reason; queued renders still run', async () => {
    const ac = new AbortController();
    const slow = renderTemplate('{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}', {}, L, ac.signal);
    const after = renderTemplate('after', {}, L);
    setTimeout(() => ac.abort(new Error('client gone')), 50);
    await expect(slow).rejects.toThrow('client gone');
    expect(await after).toBe('after');
    await expect(renderTemplate('x', {}, L, AbortSignal.abort(new Error('before')))).rejects.toThrow('before');
  });
});
