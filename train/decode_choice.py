# decode_choice.py — picks the bundled child's default decoder setting from its own held-out
# scores and writes it into the model's generation_config.json (steps, remasking_strategy,
# confidence_threshold: the reference's keyword names, docs §5.1), which the engine's generate()
# and CLI use for what a call leaves out.
#
# Candidates: dynamic remasking (8 steps) at thresholds 0.8 … 0.95, and static 8 steps. The choice:
# the highest exact match on the first N in-distribution held-out prompts among the dynamic
# settings at ≤ 0.45 forwards per answer token (issue 16's budget), ties to fewer forwards; static 8
# only if no dynamic setting fits. Forwards are counted as the engine counts them (decode.py).
#
#   python3 decode_choice.py --model <child dir> --tok <tokenizer dir> [--n 300]
# Writes <model>/generation_config.json and <model>/decode_choice.json (every candidate's score).
import argparse
import json
import os

import batching
import eval as ev
from model import load_model

CANDIDATES = [
    {'remasking_strategy': 'low_confidence_dynamic', 'steps': 8, 'confidence_threshold': t} for t in (0.8, 0.85, 0.9, 0.95)
] + [{'remasking_strategy': 'low_confidence_static', 'steps': 8}]
MAX_FORWARDS_PER_TOKEN = 0.45


def main():
    ap = argparse.ArgumentParser(description="choose the child's default decoder setting")
    ap.add_argument('--model', required=True)
    ap.add_argument('--tok', required=True)
    ap.add_argument('--n', type=int, default=300)
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--threads', type=int, default=2)
    a = ap.parse_args()
    batching.setup_threads(a.threads)
    tok = batching.load_tokenizer(a.tok)
    model, cfg = load_model(a.model)
    rows = []
    for c in CANDIDATES:
        r = ev.evaluate(model, tok, 'diffusion', a.n, a.seed, steps=c['steps'], strategy=c['remasking_strategy'],
                        threshold=c.get('confidence_threshold', 0.85), mask_id=cfg['mask_token_id'],
                        block_size=cfg['bd3lm_block_size'])
        rows.append({**c, 'exact_match': r['exact_match'], 'forwards_per_token': r['forwards_per_token'],
                     'per_kind': r['per_kind']})
        print(json.dumps(rows[-1]), flush=True)
    fit = [r for r in rows if r['remasking_strategy'] == 'low_confidence_dynamic'
           and r['forwards_per_token'] <= MAX_FORWARDS_PER_TOKEN]
    best = max(fit or rows[-1:], key=lambda r: (r['exact_match'], -r['forwards_per_token']))
    path = os.path.join(a.model, 'generation_config.json')
    with open(path) as f:
        gen = json.load(f)
    for k in ('steps', 'remasking_strategy', 'confidence_threshold'):
        gen.pop(k, None)
        if k in best:
            gen[k] = best[k]
    batching.write_json(path, gen)
    batching.write_json(os.path.join(a.model, 'decode_choice.json'), {'n': a.n, 'chosen': best, 'candidates': rows})
    print(f"decode_choice: {best['remasking_strategy']} steps {best['steps']} threshold {best.get('confidence_threshold')} "
          f"→ exact match {best['exact_match']:.3f} at {best['forwards_per_token']:.3f} forwards/token; wrote {path}")


if __name__ == '__main__':
    main()
