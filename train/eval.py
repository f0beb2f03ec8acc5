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
from PIL import Image

import batching
import data
import decode
from model import load_model


def generator_items(seed, n, split='heldout'):
    """Held-out samples 0..n-1 of a split, drawn on the fly (the in-distribution set)."""
    for i in range(n):
        s = data.sample(seed, split, i)
        yield {'kind': s['kind'], 'question': s['question'], 'answer': s['answer'], 'image': s['image']}


def folder_items(folder, n=None):
    """The items of an exported set (heldout.json + images/), pictures read with PIL."""
    with open(os.path.join(folder, 'heldout.json')) as f:
        items = json.load(f)['items'][:n]
    for it in items:
        img = Image.open(os.path.join(folder, it['image'])).convert('RGB') if it['image'] else None
        yield {'kind': it['kind'], 'question': it['question'], 'answer': it['answer'], 'image': img}


def evaluate(model, tok, mode, n, seed, steps=8, strategy='low_confidence_static', threshold=0.85, gen_length=64,
             mask_id=None, block_size=8, items=None):
    """Exact match of an in-memory model on held-out samples 0..n-1 (also used during training),
    or on `items` (folder_items) when given."""
    eos = tok.im_end
    per, fails = {}, []
    t0 = time.time()
    was_training = model.training
    model.eval()
    count = fwd = toks = 0
    for i, s in enumerate(items if items is not None else generator_items(seed, n)):
        count += 1
        item = batching.prepare_prompt(tok, s['question'], s['image'])
        with torch.no_grad():
            h, _, _, _ = batching.embed_batch(model, [item], eos, tok.endoftext)
        st = {}
        if mode == 'ar':
            ids = decode.generate_ar(model, h, max_new=gen_length, eos_id=eos)
            st['forwards'] = len(ids)
        else:
            ids = decode.generate(model, h, steps=steps, gen_length=gen_length, block_size=block_size, mask_id=mask_id,
                                  eos_id=eos, strategy=strategy, threshold=threshold, stats=st)
        fwd += st['forwards']
        toks += ids.index(eos) + 1 if eos in ids else len(ids)   # answer tokens up to and including EOS
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
        'mode': mode, 'n': count, 'seed': seed,
        'decoder': None if mode == 'ar' else {'steps': steps, 'strategy': strategy, 'threshold': threshold},
        'gen_length': gen_length, 'exact_match': total / max(1, count),
        'forwards_per_token': round(fwd / max(1, toks), 4),
        'per_kind': {k: round(v[0] / v[1], 4) for k, v in sorted(per.items())},
        'seconds': round(time.time() - t0, 1), 'failures': fails,
    }


def run(model_dir, tok_dir, mode, n, seed, steps, strategy, threshold, gen_length, dtype=torch.float32, folder=None):
    tok = batching.load_tokenizer(tok_dir)
    model, cfg = load_model(model_dir, dtype)
    r = evaluate(model, tok, mode, n, seed, steps, strategy, threshold, gen_length,
                 mask_id=cfg['mask_token_id'], block_size=cfg['bd3lm_block_size'],
                 items=folder_items(folder, n) if folder else None)
    return {'model': model_dir, 'set': folder or 'heldout (generated)', **r}


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
    ap.add_argument('--decoder-from-config', action='store_true',
                    help="diffusion: steps / strategy / threshold from the model's generation_config.json (decode_choice.py)")
    ap.add_argument('--set', help='an exported set folder (heldout.json + images/) instead of the generated held-out split')
    ap.add_argument('--out', help='result file (default <model>/eval_<mode>.json)')
    a = ap.parse_args()
    batching.setup_threads(a.threads)
    if a.decoder_from_config:
        with open(os.path.join(a.model, 'generation_config.json')) as f:
            g = json.load(f)
        a.steps = g.get('steps', a.steps)
        a.strategy = g.get('remasking_strategy', a.strategy)
        a.threshold = g.get('confidence_threshold', a.threshold)
    r = run(a.model, a.tok, a.mode, a.n, a.seed, a.steps, a.strategy, a.threshold, a.gen_length, folder=a.set)
    batching.write_json(a.out or os.path.join(a.model, f'eval_{a.mode}.json'), r)
    print(json.dumps({k: r[k] for k in ('mode', 'n', 'exact_match', 'forwards_per_token', 'per_kind', 'seconds')}))


if __name__ == '__main__':
    main()
