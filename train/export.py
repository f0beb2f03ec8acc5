# export.py — what the package ships, written from a finished run (run_all.sh's last stages):
#
#   model    a trained folder (f32) → a bf16 copy with the same files: the weights rounded once to
#            bf16 (round to nearest even), config torch_dtype "bfloat16". Fixtures are computed
#            from this copy (upcast exactly to float64), so the engine is checked on the weights
#            it really loads.
#   heldout  the held-out prompts eval.py scores (indices 0..n-1 of the 'heldout' split) with
#            their pictures, as heldout.json + images/: the engine's eval and bench read them.
#   examples a few pictures for the README and the CLI.
import argparse
import json
import os
import random
import shutil

import torch

import data
from model import load_safetensors, save_safetensors

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


def export_heldout(dst, seed, n):
    os.makedirs(os.path.join(dst, 'images'), exist_ok=True)
    items = []
    for i in range(n):
        s = data.sample(seed, 'heldout', i)
        it = {'id': f'h-{i:03d}', 'heldout_index': i, 'kind': s['kind'], 'question': s['question'],
              'answer': s['answer'], 'image': None}
        if s['image'] is not None:
            it['image'] = f'images/h-{i:03d}.png'
            s['image'].save(os.path.join(dst, it['image']), optimize=True)
        items.append(it)
    with open(os.path.join(dst, 'heldout.json'), 'w') as f:
        json.dump({'format': 'diffusionvl-heldout/1', 'seed': seed, 'split': 'heldout',
                   'generated_by': 'train/export.py heldout (data.py)', 'items': items}, f, indent=1)
        f.write('\n')
    print(f'export: {n} held-out prompts → {dst}')


# Hand-picked scenes for the README: (file, size, scene); drawn with data.draw_scene.
EXAMPLES = [
    ('two-shapes.png', 200, [{'quad': 0, 'color': 'red', 'shape': 'circle'}, {'quad': 3, 'color': 'blue', 'shape': 'square'}]),
    ('three-shapes.png', 160, [{'quad': 1, 'color': 'yellow', 'shape': 'triangle'}, {'quad': 2, 'color': 'green', 'shape': 'circle'},
                               {'quad': 3, 'color': 'purple', 'shape': 'square'}]),
    ('one-shape.jpg', 120, [{'quad': 2, 'color': 'red', 'shape': 'triangle'}]),
]


def export_examples(dst, seed):
    os.makedirs(dst, exist_ok=True)
    for k, (name, size, scene) in enumerate(EXAMPLES):
        rng = random.Random(f'{seed}/examples/{k}')
        img = data.draw_scene(rng, scene, size=size)
        path = os.path.join(dst, name)
        if name.endswith('.jpg'):
            img.save(path, quality=90)
        else:
            img.save(path, optimize=True)
        print(f'export: {path}  ({data.describe(scene)})')


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
    e = sub.add_parser('examples')
    e.add_argument('--dst', required=True)
    e.add_argument('--seed', type=int, default=0)
    a = ap.parse_args()
    if a.what == 'model':
        export_model(a.src, a.dst, a.dtype)
    elif a.what == 'heldout':
        export_heldout(a.dst, a.seed, a.n)
    else:
        export_examples(a.dst, a.seed)


if __name__ == '__main__':
    main()
