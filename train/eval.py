# eval.py — exact-match accuracy on held-out samples: the AR parent with greedy next-token
# decoding, or the DiffusionVL child with the §5 decoder (static, 8 steps by default).
# Exact match: the answer text (ids up to the first EOS, special tokens dropped, stripped) equals
# the reference sentence character for character, final "." included.
#
# Writes <model>/eval_<mode>.json: overall and per-kind accuracy plus the first failures.
import argparse
import json
import os
import time

import torch

import batching
import data
import decode
from model import load_model


def evaluate(model, tok, mode, n, seed, steps=8, strategy='low_confidence_static', threshold=0.85, gen_length=64,
             mask_id=None, block_size=8):
    """Exact match of an in-memory model on held-out samples 0..n-1 (also used during training)."""
    eos = tok.im_end
    per, fails = {}, []
    t0 = time.time()
    was_training = model.training
    model.eval()
    for i in range(n):
        s = data.sample(seed, 'heldout', i)
        item = batching.prepare_prompt(tok, s['question'], s['image'])
        with torch.no_grad():
            h, _, _, _ = batching.embed_batch(model, [item], eos, tok.endoftext)
        if mode == 'ar':
            ids = decode.generate_ar(model, h, max_new=gen_length, eos_id=eos)
        else:
            ids = decode.generate(model, h, steps=steps, gen_length=gen_length, block_size=block_size, mask_id=mask_id,
                                  eos_id=eos, strategy=strategy, threshold=threshold)
        got = decode.answer_text(tok, ids, eos)
        ok = got == s['answer']
        c = per.setdefault(s['kind'], [0, 0])
        c[0] += ok
        c[1] += 1
        if not ok and len(fails) < 20:
            fails.append({'i': i, 'kind': s['kind'], 'question': s['question'], 'expected': s['answer'], 'got': got})
    model.train(was_training)
    total = sum(v[0] for v in per.values())
    return {
        'mode': mode, 'n': n, 'seed': seed,
        'decoder': None if mode == 'ar' else {'steps': steps, 'strategy': strategy, 'threshold': threshold},
        'gen_length': gen_length, 'exact_match': total / max(1, n),
        'per_kind': {k: round(v[0] / v[1], 4) for k, v in sorted(per.items())},
        'seconds': round(time.time() - t0, 1), 'failures': fails,
    }


def run(model_dir, tok_dir, mode, n, seed, steps, strategy, threshold, gen_length, dtype=torch.float32):
    tok = batching.load_tokenizer(tok_dir)
    model, cfg = load_model(model_dir, dtype)
    r = evaluate(model, tok, mode, n, seed, steps, strategy, threshold, gen_length,
                 mask_id=cfg['mask_token_id'], block_size=cfg['bd3lm_block_size'])
    return {'model': model_dir, **r}


def main():
    ap = argparse.ArgumentParser(description='held-out exact match')
    ap.add_argument('--model', required=True)
    ap.add_argument('--tok', required=True)
    ap.add_argument('--mode', choices=['ar', 'diffusion'], required=True)
    ap.add_argument('--n', type=int, default=300)
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--steps', type=int, default=8)
    ap.add_argument('--strategy', default='low_confidence_static')
    ap.add_argument('--threshold', type=float, default=0.85)
    ap.add_argument('--gen-length', type=int, default=64)
    ap.add_argument('--threads', type=int, default=2)
    a = ap.parse_args()
    batching.setup_threads(a.threads)
    r = run(a.model, a.tok, a.mode, a.n, a.seed, a.steps, a.strategy, a.threshold, a.gen_length)
    batching.write_json(os.path.join(a.model, f'eval_{a.mode}.json'), r)
    print(json.dumps({k: r[k] for k in ('mode', 'n', 'exact_match', 'per_kind', 'seconds')}))


if __name__ == '__main__':
    main()
