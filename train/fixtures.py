# fixtures.py — golden outputs the engine must reproduce: for held-out prompts (with and without
# images), the raw generated ids of the §5 decoder (decode.py, float64 weights) under
# static 8/4/2 steps and dynamic 0.85/0.9 (8 steps), with the decision margins of every run so a
# test can tell a real mismatch from an argmax flip at a near-tie.
#
# Writes <out>/fixtures.json and <out>/images/case-NN.png (the original, unresized pictures; PNG is
# lossless, so the engine's preprocessing starts from the same pixels).
import argparse
import json
import os
import time

import torch

import batching
import data
import decode
from model import load_model
import preprocess

SETTINGS = [
    {'name': 'static-8', 'strategy': 'low_confidence_static', 'steps': 8, 'threshold': None},
    {'name': 'static-4', 'strategy': 'low_confidence_static', 'steps': 4, 'threshold': None},
    {'name': 'static-2', 'strategy': 'low_confidence_static', 'steps': 2, 'threshold': None},
    {'name': 'dynamic-0.85', 'strategy': 'low_confidence_dynamic', 'steps': 8, 'threshold': 0.85},
    {'name': 'dynamic-0.9', 'strategy': 'low_confidence_dynamic', 'steps': 8, 'threshold': 0.9},
]
KINDS = [k for k, _ in data.TASK_WEIGHTS]


def default_setting(model_dir):
    """The model's own default decoder (generation_config.json, decode_choice.py) as a setting the
    engine runs with no decode options given, so the fixtures also check that generate() takes
    its defaults from that file."""
    with open(os.path.join(model_dir, 'generation_config.json')) as f:
        g = json.load(f)
    strategy = g.get('remasking_strategy', 'low_confidence_static')
    return {'name': 'default', 'strategy': strategy, 'steps': g.get('steps', 8),
            'threshold': g.get('confidence_threshold', 0.85) if strategy == 'low_confidence_dynamic' else None,
            'from_generation_config': True}
# Held-out indices for fixtures start here (eval.py uses the first few hundred).
FIXTURE_INDEX_BASE = 100_000


def pick_cases(seed, per_kind):
    """The first `per_kind` held-out samples of each kind, in index order."""
    got, i = {k: [] for k in KINDS}, FIXTURE_INDEX_BASE
    while any(len(v) < per_kind for v in got.values()):
        s = data.sample(seed, 'heldout', i)
        if len(got[s['kind']]) < per_kind:
            got[s['kind']].append((i, s))
        i += 1
    return sorted((x for v in got.values() for x in v), key=lambda x: x[0])


def prompt_logits(model, h, bs, ids):
    """Logits of one block-masked forward over the whole prompt (positions 0..P-1, §5.3 mask),
    at the last position and, with an image, at its first feature row: a continuous check of
    the tower, the splice and the decoder that does not hinge on argmax decisions."""
    P = h.shape[1]
    blk = torch.arange(P) // bs
    m = torch.zeros(P, P, dtype=h.dtype).masked_fill(blk[None] > blk[:, None], float('-inf'))
    with torch.no_grad():
        hid, _ = model.forward_embeds(h, torch.arange(P)[None], m[None, None])
    rows = [P - 1] + ([ids.index(data.IMAGE_TOKEN_INDEX)] if data.IMAGE_TOKEN_INDEX in ids else [])
    lg = model.logits(hid[0, rows])
    return {'rows': rows, 'block_size': bs, 'logits': [[float(x) for x in r] for r in lg]}


def _min(xs):
    xs = [x for x in xs if x is not None]
    return min(xs) if xs else None


def main():
    ap = argparse.ArgumentParser(description='write decoder fixtures for the engine')
    ap.add_argument('--model', required=True, help='the DiffusionVL folder (train_diffusion.py --out)')
    ap.add_argument('--parent', help='the AR parent folder: adds its greedy AR ids per case')
    ap.add_argument('--tok', required=True)
    ap.add_argument('--out', required=True)
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--per-kind', type=int, default=5)
    ap.add_argument('--gen-length', type=int, default=64)
    ap.add_argument('--threads', type=int, default=2)
    a = ap.parse_args()
    batching.setup_threads(a.threads)
    tok = batching.load_tokenizer(a.tok)
    model, cfg = load_model(a.model, torch.float64)
    parent = load_model(a.parent, torch.float64)[0] if a.parent else None
    eos, mask_id, bs = tok.im_end, cfg['mask_token_id'], cfg['bd3lm_block_size']
    os.makedirs(os.path.join(a.out, 'images'), exist_ok=True)
    settings = SETTINGS + [default_setting(a.model)]
    t0 = time.time()
    cases = []
    for n, (i, s) in enumerate(pick_cases(a.seed, a.per_kind)):
        case = {'id': f'case-{n:02d}', 'heldout_index': i, 'kind': s['kind'], 'question': s['question'],
                'expected_answer': s['answer'], 'image': None}
        item = batching.prepare_prompt(tok, s['question'], s['image'])
        if s['image'] is not None:
            rel = f"images/{case['id']}.png"
            s['image'].save(os.path.join(a.out, rel))
            case.update({'image': rel, 'image_size': list(s['image'].size), 'grid_thw': list(item['grid']),
                         'image_tokens': preprocess.num_tokens(item['grid'])})
        with torch.no_grad():
            h, _, _, _ = batching.embed_batch(model, [item], eos, tok.endoftext)
            if s['image'] is not None:
                f = batching.image_features(model, [item])[0]
                case['image_features'] = {'rows': f.shape[0], 'sum': float(f.sum()), 'abs_sum': float(f.abs().sum()),
                                          'row0_head': [float(x) for x in f[0, :8]]}
        case.update({'prompt_text': data.prompt_text(s['question'], s['image'] is not None),
                     'prompt_ids': item['ids'], 'prompt_length': h.shape[1]})
        case['prompt_logits'] = prompt_logits(model, h, bs, item['ids'])
        runs = {}
        for st in settings:
            trace = []
            ids = decode.generate(model, h, steps=st['steps'], gen_length=a.gen_length, block_size=bs,
                                  mask_id=mask_id, eos_id=eos, strategy=st['strategy'],
                                  threshold=st['threshold'] or 0.85, trace=trace)
            text = decode.answer_text(tok, ids, eos)
            runs[st['name']] = {
                'ids': ids, 'text': text, 'exact_match': text == s['answer'],
                'iterations': len(trace),
                'min_argmax_gap': _min(t['min_argmax_gap'] for t in trace),
                'min_select_gap': _min(t['select_gap'] for t in trace),
                'min_threshold_gap': _min(t['threshold_gap'] for t in trace),
            }
        case['runs'] = runs
        if parent is not None:
            with torch.no_grad():
                hp, _, _, _ = batching.embed_batch(parent, [item], eos, tok.endoftext)
            gaps = []
            ids = decode.generate_ar(parent, hp, max_new=a.gen_length, eos_id=eos, gaps=gaps)
            text = decode.answer_text(tok, ids, eos)
            case['parent_ar'] = {'ids': ids, 'text': text, 'exact_match': text == s['answer'],
                                 'min_argmax_gap': min(gaps)}
        cases.append(case)
        print(f"{case['id']} {s['kind']:12s} " + ' '.join(f"{k}={'ok' if r['exact_match'] else 'x'}" for k, r in runs.items())
              + (f" parent-ar={'ok' if case['parent_ar']['exact_match'] else 'x'}" if parent is not None else ''), flush=True)
    out = {
        'format': 'diffusionvl-fixtures/1',
        'generated_by': 'train/fixtures.py (decode.py, a transcription of docs §5)',
        'model_dir': os.path.abspath(a.model), 'dtype': 'float64', 'temperature': 0.0,
        'seed': a.seed, 'block_size': bs, 'mask_token_id': mask_id, 'eos_token_id': eos,
        'gen_length': a.gen_length, 'system_prompt': data.SYSTEM_PROMPT,
        'notes': ('ids are the raw G-length output ids[P:P+G] (EOS, post-EOS tokens of the last block '
                  'and MASK for never-generated blocks included); ties broken by lowest position; '
                  'min_*_gap: smallest decision margin over the run (logit units for argmax, '
                  'probability units for selection/threshold): near 0 means an f32 engine may '
                  'legitimately differ.'),
        'settings': settings,
        'parent_dir': os.path.abspath(a.parent) if a.parent else None,
        'cases': cases,
        'seconds': round(time.time() - t0, 1),
    }
    batching.write_json(os.path.join(a.out, 'fixtures.json'), out)
    em = {st['name']: sum(c['runs'][st['name']]['exact_match'] for c in cases) / len(cases) for st in settings}
    print(f'fixtures: {len(cases)} cases, exact match per setting {em}')


if __name__ == '__main__':
    main()
