# export.py — what the package ships, written from a finished run (run_all.sh's last stages):
#
#   model    a trained folder (f32) → a bf16 copy with the same files: the weights rounded once to
#            bf16 (round to nearest even), config torch_dtype "bfloat16". Fixtures are computed
#            from this copy (upcast exactly to float64), so the engine is checked on the weights
#            it really loads.
#   heldout  the in-distribution held-out prompts eval.py scores (indices 0..n-1 of the 'heldout'
#            split) with their pictures, as heldout.json + images/: the engine's eval and bench
#            read them.
#   unseen   the unseen-renderer held-out set: the 'unseen' split's prompts, every picture drawn
#            by render_svg.mjs (node + sharp), the renderer training never used.
#   examples a few pictures for the README and the CLI.
import argparse
import json
import os
import shutil
import subprocess

import torch

import data
import render
from model import load_safetensors, save_safetensors

HERE = os.path.dirname(os.path.abspath(__file__))

SIDE_FILES = ('tokenizer.json', 'tokenizer_config.json', 'preprocessor_config.json',
              'generation_config.json', 'train_args.json')


def export_model(src, dst, dtype):
    os.makedirs(dst, exist_ok=True)
    sd = load_safetensors(os.path.join(src, 'model.safetensors'))
    td = {'bf16': torch.bfloat16, 'f16': torch.float16, 'f32': torch.float32}[dtype]
    name = {'bf16': 'bfloat16', 'f16': 'float16', 'f32': 'float32'}[dtype]
    save_safetensors({k: v.to(td) for k, v in sd.items()}, os.path.join(dst, 'model.safetensors'), {'format': 'pt'})
    with open(os.path.join(src, 'config.json')) as f:
        cfg = json.load(f)
    cfg['torch_dtype'] = name
    cfg['text_config']['torch_dtype'] = name
    with open(os.path.join(dst, 'config.json'), 'w') as f:
        json.dump(cfg, f, indent=2)
        f.write('\n')
    for n in SIDE_FILES:
        if os.path.exists(os.path.join(src, n)):
            shutil.copyfile(os.path.join(src, n), os.path.join(dst, n))
    print(f'export: {src} → {dst} ({dtype}, {sum(v.numel() for v in sd.values()):,} values)')


def _item(i, prefix, s):
    return {'id': f'{prefix}-{i:03d}', 'heldout_index': i, 'kind': s['kind'], 'question': s['question'],
            'answer': s['answer'], 'image': None}


def _write_set(dst, seed, split, items, generated_by, renderer):
    with open(os.path.join(dst, 'heldout.json'), 'w') as f:
        json.dump({'format': 'diffusionvl-heldout/1', 'seed': seed, 'split': split, 'renderer': renderer,
                   'generated_by': generated_by, 'items': items}, f, indent=1)
        f.write('\n')


def export_heldout(dst, seed, n):
    """The in-distribution set: the 'heldout' split, drawn by the training renderer (PIL). A
    picture with the JPEG effect is stored as that JPEG file, the others as PNG (lossless)."""
    os.makedirs(os.path.join(dst, 'images'), exist_ok=True)
    items = []
    for i in range(n):
        s = data.sample(seed, 'heldout', i, draw=False)
        it = _item(i, 'h', s)
        if s['spec'] is not None:
            blob, ext = render.encode_file(s['spec'])
            it['image'] = f'images/h-{i:03d}.{ext}'
            with open(os.path.join(dst, it['image']), 'wb') as f:
                f.write(blob)
        items.append(it)
    _write_set(dst, seed, 'heldout', items, 'train/export.py heldout (data.py, render.py)', 'pil')
    print(f'export: {n} held-out prompts → {dst}')


def export_unseen(dst, seed, n):
    """The unseen-renderer set: the 'unseen' split (picture kinds only, equal shares), every
    picture drawn by render_svg.mjs (SVG → librsvg through sharp), a renderer training never used."""
    os.makedirs(os.path.join(dst, 'images'), exist_ok=True)
    items, jobs = [], []
    for i in range(n):
        s = data.sample(seed, 'unseen', i, draw=False)
        it = _item(i, 'u', s)
        it['image'] = f"images/u-{i:03d}.{'jpg' if s['spec']['jpeg'] else 'png'}"
        jobs.append({'out': os.path.abspath(os.path.join(dst, it['image'])), 'spec': s['spec']})
        items.append(it)
    jobs_file = os.path.abspath(os.path.join(dst, 'jobs.json'))
    with open(jobs_file, 'w') as f:
        json.dump(jobs, f)
    subprocess.run(['node', os.path.join(HERE, 'render_svg.mjs'), jobs_file], check=True, cwd=os.path.dirname(HERE))
    os.remove(jobs_file)
    _write_set(dst, seed, 'unseen', items, 'train/export.py unseen (data.py specs, render_svg.mjs)', 'svg-librsvg')
    print(f'export: {n} unseen-renderer prompts → {dst}')


# Pictures for the README and the CLI, drawn by the training renderer (render.py) from explicit
# specs: a white wide canvas, a tall gradient one, and a small JPEG on a dark background.
def _shape(quad, color, shape, box, outline=None):
    return {'quad': quad, 'color': color, 'shape': shape, 'rgb': list(render.COLORS[color]), 'box': box, 'outline': outline}


EXAMPLES = [
    ('two-shapes.png', {
        'width': 240, 'height': 160, 'background': {'kind': 'solid', 'rgb': [255, 255, 255]},
        'shapes': [_shape(0, 'red', 'circle', [30, 20, 80, 70]), _shape(3, 'blue', 'square', [160, 96, 204, 140])],
        'antialias': True, 'jpeg': None, 'noise': None, 'noise_seed': 0}),
    ('three-shapes.png', {
        'width': 150, 'height': 200,
        'background': {'kind': 'linear', 'rgb': [236, 240, 250], 'rgb2': [250, 236, 226], 'angle': 60.0},
        'shapes': [_shape(1, 'yellow', 'triangle', [92, 22, 136, 62], {'rgb': [0, 0, 0], 'width': 2}),
                   _shape(2, 'green', 'circle', [12, 118, 60, 166], {'rgb': [0, 0, 0], 'width': 2}),
                   _shape(3, 'purple', 'square', [96, 140, 126, 170], {'rgb': [0, 0, 0], 'width': 2})],
        'antialias': True, 'jpeg': None, 'noise': None, 'noise_seed': 0}),
    ('one-shape.jpg', {
        'width': 120, 'height': 90, 'background': {'kind': 'solid', 'rgb': [40, 44, 52]},
        'shapes': [_shape(2, 'yellow', 'triangle', [16, 52, 46, 80])],
        'antialias': False, 'jpeg': 85, 'noise': None, 'noise_seed': 0}),
]


def example_answer(spec):
    return data.describe([{'quad': s['quad'], 'color': s['color'], 'shape': s['shape']} for s in spec['shapes']])


def export_examples(dst):
    os.makedirs(dst, exist_ok=True)
    for name, spec in EXAMPLES:
        blob, ext = render.encode_file(spec)
        assert name.endswith('.' + ext), (name, ext)
        path = os.path.join(dst, name)
        with open(path, 'wb') as f:
            f.write(blob)
        print(f'export: {path}  ({example_answer(spec)})')


def main():
    ap = argparse.ArgumentParser(description='write the shipped model folders, held-out set and examples')
    sub = ap.add_subparsers(dest='what', required=True)
    m = sub.add_parser('model')
    m.add_argument('--src', required=True)
    m.add_argument('--dst', required=True)
    m.add_argument('--dtype', choices=['bf16', 'f16', 'f32'], default='bf16')
    h = sub.add_parser('heldout')
    h.add_argument('--dst', required=True)
    h.add_argument('--seed', type=int, default=0)
    h.add_argument('--n', type=int, default=300)
    u = sub.add_parser('unseen')
    u.add_argument('--dst', required=True)
    u.add_argument('--seed', type=int, default=0)
    u.add_argument('--n', type=int, default=400)
    e = sub.add_parser('examples')
    e.add_argument('--dst', required=True)
    a = ap.parse_args()
    if a.what == 'model':
        export_model(a.src, a.dst, a.dtype)
    elif a.what == 'heldout':
        export_heldout(a.dst, a.seed, a.n)
    elif a.what == 'unseen':
        export_unseen(a.dst, a.seed, a.n)
    else:
        export_examples(a.dst)


if __name__ == '__main__':
    main()
