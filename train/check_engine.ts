// check_engine.ts — runs the engine (lib/, the native addon) on fixtures.json and compares, per
// case and setting, the prompt ids and the raw G generated ids with what decode.py wrote.
// A mismatch in a run whose fixture margins are tiny (min_argmax_gap / select / threshold gap)
// can be an f32-vs-f64 near-tie; the report prints them so the reader can tell.
//
//   DIFFUSIONVL_ADDON=$PWD/build-<you>/Release/diffusionvl.node \
//     npx tsx train/check_engine.ts <model dir> <fixtures dir> [<AR parent dir>]   (exit 1 on any mismatch)
//
// With the parent dir, each case's greedy AR ids of the parent (fixtures.py --parent) are checked too.
import { loadModel } from '../lib/index.js';
import { caseMessages, LOGIT_TOLERANCE, promptLogitErrors, readFixtures, settingRequest } from '../test/helpers/trained-fixtures.js';

const [modelDir, fixDir, parentDir] = process.argv.slice(2);
const fx = readFixtures(fixDir);
// The exact kernels, as test/model/trained-fixtures.test.ts: the default precision ('fast') rounds
// activations to bf16 and is not held to the float64 fixtures' tolerance.
const model = await loadModel(modelDir, { precision: 'exact' });
const parent = parentDir ? await loadModel(parentDir, { precision: 'exact' }) : null;
let bad = 0, total = 0, maxLogitErr = 0;
for (const c of fx.cases) {
  const messages = caseMessages(fixDir, c);
  const pids = model.promptIds({ messages });
  if (JSON.stringify(pids) !== JSON.stringify(c.prompt_ids)) {
    bad++;
    console.log(`${c.id}: prompt ids differ\n  fixture ${JSON.stringify(c.prompt_ids)}\n  engine  ${JSON.stringify(pids)}`);
    continue;
  }
  // Continuous check first (no argmax decisions involved).
  const errs = await promptLogitErrors(model, c, messages);
  errs.forEach((worst, r) => {
    maxLogitErr = Math.max(maxLogitErr, worst);
    if (process.env.DVL_VERBOSE) console.log(`${c.id} row ${c.prompt_logits.rows[r]} ${c.image ? "image" : "text"} ${worst.toExponential(2)}`);
    if (!(worst <= LOGIT_TOLERANCE)) {
      bad++;
      console.log(`${c.id}: prompt logits at row ${c.prompt_logits.rows[r]} differ (max rel err ${worst.toExponential(2)})`);
    }
  });
  for (const s of fx.settings) {
    total++;
    const r = await model.generate(settingRequest(fx, s, messages));
    const want = c.runs[s.name];
    const same = JSON.stringify(r.raw) === JSON.stringify(want.ids);
    if (!same) {
      bad++;
      const at = want.ids.findIndex((x, j) => r.raw[j] !== x);
      console.log(`${c.id} ${s.name}: differs at ${at} (fixture margins: argmax ${want.min_argmax_gap}, select ${want.min_select_gap}, threshold ${want.min_threshold_gap})\n  fixture ${JSON.stringify(want.ids)}\n  engine  ${JSON.stringify(r.raw)}`);
    }
  }
  if (parent && c.parent_ar) {
    total++;
    const r = await parent.generate({ messages, maxTokens: fx.gen_length, temperature: 0, mode: 'ar' });
    if (JSON.stringify(r.raw) !== JSON.stringify(c.parent_ar.ids)) {
      bad++;
      console.log(`${c.id} parent AR: differs (fixture argmax margin ${c.parent_ar.min_argmax_gap})\n  fixture ${JSON.stringify(c.parent_ar.ids)}\n  engine  ${JSON.stringify(r.raw)}`);
    }
  }
}
model.dispose();
parent?.dispose();
console.log(`engine check: ${fx.cases.length} cases; ${bad} failures over ${total} decode runs and the prompt logits (max logit rel err ${maxLogitErr.toExponential(2)})`);
process.exitCode = bad ? 1 : 0;
