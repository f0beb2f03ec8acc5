// `diffusionvl chat` (a session driven from stdin: /image, /stats, /reset), --version, help and
// --help, serve --help; progress bars stay off when stderr is not a terminal.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadModel } from '../../lib/index.js';
import { packageRoot } from '../../lib/native/index.js';

function cli(args: string[], input?: string) {
  return spawnSync(process.execPath, ['--import', 'tsx', 'lib/cli/main.ts', ...args], { cwd: packageRoot(), encoding: 'utf8', timeout: 120_000, input });
}

describe('diffusionvl chat', () => {
  it('keeps the conversation: turn 2 reuses the KV of turn 1; /stats, /reset; answers equal a session in the library', async () => {
    const r = cli(['chat', '--threads', '1', '--max-tokens', '48'], [
      '/image examples/three-shapes.png', 'Describe the image.', 'What is at the top left?', '/stats', '/reset', '/image nowhere.png', 'Reverse the letters: a b c', '/exit', 'never sent',
    ].join('\n') + '\n');
    expect(r.status, r.stderr).toBe(0);
    await using model = await loadModel('shapes-diffusionvl', { threads: 1 });
    await using chat = model.createSession({ defaults: { maxTokens: 48 } });
    const a1 = await chat.send('Describe the image.', { images: [join(packageRoot(), 'examples/three-shapes.png')] });
    const a2 = await chat.send('What is at the top left?');
    chat.reset();
    const a3 = await chat.send('Reverse the letters: a b c');
    // Each answer printed as it is, then a newline (an answer may hold a newline of its own).
    expect(r.stdout.trimEnd()).toBe([a1.text, a2.text, a3.text].join('\n').trimEnd());
    const turns = r.stderr.split('\n').filter((l) => l.startsWith('[diffusion]'));
    expect(turns).toHaveLength(3);
    expect(turns[1]).toMatch(/\((\d+) reused/);
    expect(Number(/\((\d+) reused/.exec(turns[1])![1])).toBe(a2.stats.cachedTokens);
    expect(Number(/\((\d+) reused/.exec(turns[2])![1])).toBe(0);   // after /reset
    expect(r.stderr).toMatch(/session: 2 turns;.*images 1 encoded, 1 reused/);
    expect(r.stderr).toMatch(/nowhere\.png: cannot read image file/);
    expect(r.stderr).not.toMatch(/[█░]/);   // no progress bar: stderr is a pipe
  });

  it('--json: one JSON line per turn and for /stats', () => {
    const r = cli(['chat', '--threads', '1', '--max-tokens', '16', '--json'], 'Reverse the letters: x y\n/stats\n');
    expect(r.status, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(lines[0]).toMatchObject({ mode: 'diffusion', finishReason: 'stop' });
    expect(lines[1].stats.turns).toBe(1);
  });
});

describe('help and version', () => {
  it('--version prints the package version; help, --help and serve --help exit 0', () => {
    const v = cli(['--version']);
    expect(v.status).toBe(0);
    const version = JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')).version as string;
    expect(v.stdout.startsWith(`diffusionvl ${version} `)).toBe(true);
    for (const args of [['help'], ['--help'], ['run', '--help']]) {
      const h = cli(args);
      expect(h.status, args.join(' ')).toBe(0);
      expect(h.stdout).toMatch(/diffusionvl chat/);
    }
    const s = cli(['serve', '--help']);
    expect(s.status).toBe(0);
    expect(s.stdout).toMatch(/--api-key/);
    expect(cli(['serve', '--no-such']).status).toBe(2);
    expect(cli([]).status).toBe(2);
  });
});
