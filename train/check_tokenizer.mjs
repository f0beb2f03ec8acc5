// check_tokenizer.mjs — checks that the engine's tokenizer library (@huggingface/tokenizers, as
// lib/text/tokenizer.ts uses it) gives the same ids as tokenizer.py on a case file.
// Usage: node train/check_tokenizer.mjs <tokenizer dir> <cases.json: [{text, ids}]>
// Exit 1 with the first mismatches listed, else prints how many cases agreed.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';

const [dir, casesFile] = process.argv.slice(2);
const tj = JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8'));
const tc = JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8'));
const tok = new Tokenizer(tj, tc);
const cases = JSON.parse(readFileSync(casesFile, 'utf8'));
let bad = 0;
for (const c of cases) {
  const got = tok.encode(c.text, { add_special_tokens: false }).ids;
  const back = tok.decode(c.ids, { skip_special_tokens: false });
  if (JSON.stringify(got) !== JSON.stringify(c.ids) || back !== c.text) {
    if (bad++ < 5) console.error(`mismatch: ${JSON.stringify(c.text)}\n  py ${JSON.stringify(c.ids)}\n  js ${JSON.stringify(got)}\n  decoded ${JSON.stringify(back)}`);
  }
}
if (bad) { console.error(`${bad} of ${cases.length} cases differ`); process.exit(1); }
console.log(`tokenizer check: ${cases.length} cases identical (encode and decode)`);
