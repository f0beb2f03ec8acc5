// cuda-session-check.ts — chat sessions on the CUDA backend (the KV copies out and back are
// gather_rows / kv_cache_append on the device queue); prints one JSON report on stdout. A child
// process of test/model/session-cuda-host.test.ts (host-memory test backend, CPU kernels: ids
// must equal the cold runs exactly).
//
//   node --import tsx test/helpers/cuda-session-check.ts
import { join } from 'node:path';
import { loadModel } from '../../lib/model/model.js';
import type { ChatMessage } from '../../lib/text/prompt.js';
import { packageRoot } from '../../lib/native/index.js';

const root = packageRoot();
const image = join(root, 'examples', 'three-shapes.png');
const model = await loadModel(join(root, 'models', 'shapes-diffusionvl'), { gpu: 'cuda', threads: 1 });
const turns: { session: 0 | 1; text: string; images?: string[] }[] = [
  { session: 0, text: 'Describe the image.', images: [image] },
  { session: 1, text: 'Reverse the letters: a b c' },
  { session: 0, text: 'What is at the top left?' },   // session 0's K/V were copied out by session 1: restored here
  { session: 1, text: 'How many letters are in: x y?' },
  { session: 0, text: 'How many shapes are there?' },
];
const sessions = [model.createSession(), model.createSession()];
const report: { backend: string; turns: { session: number; same: boolean; cached: number; prefilled: number; text: string }[] } = { backend: model.backend.backend, turns: [] };
for (const t of turns) {
  const chat = sessions[t.session];
  const before: ChatMessage[] = chat.messages;
  const warm = await chat.send(t.text, { images: t.images, maxTokens: 32 });
  const user: ChatMessage = t.images ? { role: 'user', content: [...t.images.map((im) => ({ type: 'image' as const, image: im })), { type: 'text', text: t.text }] } : { role: 'user', content: t.text };
  const cold = await model.generate({ messages: [...before, user], maxTokens: 32 });
  report.turns.push({ session: t.session, same: warm.ids.join() === cold.ids.join(), cached: warm.stats.cachedTokens, prefilled: warm.stats.prefillTokens, text: warm.text });
}
model.dispose();
process.stdout.write(JSON.stringify(report) + '\n');
