// chat.ts — `diffusionvl chat [model]`: an interactive conversation on a ChatSession, so every
// turn prefills only what is new. Reads lines from stdin (a terminal or a pipe); lines starting
// with / are commands:
//   /image PATH   attach an image to the next message (repeatable)
//   /reset        forget the conversation (and its KV cache)
//   /stats        the session's counters: turns, reused and prefilled positions, images
//   /help, /exit  (Ctrl-D also ends)
// Answers stream to stdout; after each, a stats line goes to stderr (with --json: one JSON line
// per turn on stdout instead of the streamed text).
import { existsSync, statSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { ImageError } from '../errors.js';
import type { ChatSession, TurnOptions } from '../model/session.js';
import type { GenerateResult } from '../model/model.js';
import { backendName } from '../native/backend.js';
import { decodeOptions, loadWithProgress, type Values } from './main.js';

const HELP = 'commands: /image PATH (attach to the next message), /reset, /stats, /help, /exit';

function turnLine(r: GenerateResult): string {
  const s = r.stats;
  return `[${r.mode}] ${r.ids.length} tokens, prompt ${s.promptTokens} (${s.cachedTokens} reused, ${s.prefillTokens} prefilled), ` +
    `${s.forwards} forwards (${s.tokensPerForward.toFixed(2)} tok/fwd), ${s.tokensPerSecond.toFixed(1)} tok/s, vision ${s.visionMs.toFixed(0)} ms, finish: ${r.finishReason}`;
}

function statsText(chat: ChatSession): string {
  const s = chat.stats;
  return `session: ${s.turns} turns; prompt positions ${s.promptTokens} (${s.cachedTokens} reused, ${s.prefillTokens} prefilled); ` +
    `${s.generatedTokens} generated; images ${s.imagesEncoded} encoded, ${s.imagesReused} reused; KV held for ${s.kvTokens} positions; ${(s.bytes / 1024).toFixed(0)} KiB copies`;
}

function checkImage(p: string): void {
  if (!existsSync(p)) throw new ImageError(`${p}: cannot read image file (no such file)`, p);
  if (statSync(p).isDirectory()) throw new ImageError(`${p}: cannot read image file (is a directory)`, p);
}

export async function cmdChat(dir: string, v: Values): Promise<void> {
  const json = v.json ?? false;
  let pending: string[] = [...(v.image ?? [])];
  pending.forEach(checkImage);
  const defaults: TurnOptions = decodeOptions(v);
  const model = await loadWithProgress(dir, v);
  const chat = model.createSession({ defaults, ...(v.system !== undefined ? { systemPrompt: v.system } : {}) });
  const tty = process.stdin.isTTY === true;
  const err = (s: string) => process.stderr.write(s + '\n');
  if (tty && !json) err(`diffusionvl chat: ${dir} on ${backendName(model.backend)}. ${HELP}`);
  const rl = createInterface({ input: process.stdin, output: tty ? process.stdout : undefined, terminal: tty });
  const ask = () => { if (tty) rl.prompt(); };
  rl.setPrompt('> ');
  ask();
  try {
    for await (const raw of rl) {
      const line = raw.trim();
      if (line === '') { ask(); continue; }
      if (line.startsWith('/')) {
        const [cmd, ...rest] = line.split(/\s+/);
        const arg = line.slice(cmd.length).trim();
        if (cmd === '/exit' || cmd === '/quit') break;
        else if (cmd === '/help') err(HELP);
        else if (cmd === '/reset') { chat.reset(); pending = []; err('conversation reset'); }
        else if (cmd === '/stats') {
          if (json) process.stdout.write(JSON.stringify({ stats: chat.stats }) + '\n');
          else err(statsText(chat));
        } else if (cmd === '/image') {
          if (!arg) err('usage: /image PATH');
          else {
            try { checkImage(arg); pending.push(arg); err(`image attached to the next message: ${arg}`); } catch (e) { err((e as Error).message); }
          }
        } else err(`unknown command ${cmd}; ${HELP}`);
        void rest;
        ask();
        continue;
      }
      try {
        let result: GenerateResult | undefined;
        for await (const ev of chat.stream(line, { images: pending })) {
          if (ev.type === 'block' && !json) process.stdout.write(ev.text);
          else if (ev.type === 'done') result = ev.result;
        }
        pending = [];
        if (json) process.stdout.write(JSON.stringify({ text: result!.text, ids: result!.ids, finishReason: result!.finishReason, mode: result!.mode, stats: result!.stats }) + '\n');
        else { process.stdout.write('\n'); err(turnLine(result!)); }
      } catch (e) {
        const x = e as Error & { code?: string };
        err(`diffusionvl chat: ${x.name}${x.code ? ` (${x.code})` : ''}: ${x.message}`);
      }
      ask();
    }
  } finally {
    rl.close();
    chat.dispose();
    model.dispose();
  }
}
