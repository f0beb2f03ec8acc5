# batching.py — samples → tensors: tokenize, preprocess images, splice image features at the −200
# sentinels (docs §3.6), block-aligned EOS padding (§6.5), right padding; shared by the training
# scripts, eval.py, decode.py and fixtures.py. Also the run-wide setup (threads, tokenizer sizes).
#
# Shapes: B samples, L padded length (a multiple of bs when aligning), H text hidden, V rows.
import json
import os

import torch

import data
import preprocess
import tokenizer as tkz

# MASK sits 6 ids past the tokenizer (as 151671 = 151665 + 6, §4.2); the embedding rows are padded
# to a multiple of 64 beyond it (untrained rows, like the released 151936 / 152064).
MASK_OFFSET = 6
ROW_MULTIPLE = 64


def mask_id_for(tok):
    return tok.size + MASK_OFFSET


def vocab_rows_for(tok):
    n = mask_id_for(tok) + 1
    return -(-n // ROW_MULTIPLE) * ROW_MULTIPLE


def setup_threads(n):
    torch.set_num_threads(n)
    torch.set_num_interop_threads(1)


def load_tokenizer(tok_dir):
    return tkz.from_tokenizer_json(os.path.join(tok_dir, 'tokenizer.json'))


def prepare(tok, s):
    """Sample → {'ids', 'labels', 'rows', 'grid'} (ids with −200; rows/grid None for text)."""
    ids, labels = data.render(tok, s)
    item = {'ids': ids, 'labels': labels, 'rows': None, 'grid': None}
    if s['image'] is not None:
        item['rows'], item['grid'] = preprocess.preprocess(s['image'])
    return item


def prepare_prompt(tok, question, image):
    """Prompt only (up to `<|im_start|>assistant\\n`) for decoding."""
    ids = data.encode_prompt(tok, data.prompt_text(question, image is not None))
    item = {'ids': ids, 'labels': [data.IGNORE] * len(ids), 'rows': None, 'grid': None}
    if image is not None:
        item['rows'], item['grid'] = preprocess.preprocess(image)
    return item


def image_features(model, items):
    """Runs the tower once over every image of the batch; returns one [N_i, H] tensor per item
    (None for text items)."""
    with_img = [it for it in items if it['rows'] is not None]
    if not with_img:
        return [None] * len(items)
    dtype = model.model.embed_tokens.weight.dtype
    rows = torch.cat([torch.from_numpy(it['rows']) for it in with_img]).to(dtype)
    feats = model.encode_images(rows, [it['grid'] for it in with_img])
    out, off = [], 0
    for it in items:
        if it['rows'] is None:
            out.append(None)
        else:
            n = preprocess.num_tokens(it['grid'])
            out.append(feats[off:off + n])
            off += n
    return out


def embed_batch(model, items, eos_id, pad_id, block_size=None):
    """Spliced, padded embeddings. Returns h [B, L, H], labels [B, L] (−100 on image rows and
    padding), valid [B, L] (False on right padding), real lengths. With block_size, each real
    length is first padded to a multiple of block_size with EOS embeddings labelled EOS (§6.5),
    and L is a multiple of block_size."""
    E = model.model.embed_tokens.weight
    feats = image_features(model, items)
    seqs, labs = [], []
    for it, f in zip(items, feats):
        parts, lab = [], []
        ids = it['ids']
        run = []
        for t, l in zip(ids, it['labels']):
            if t == data.IMAGE_TOKEN_INDEX:
                if run:
                    parts.append(E[torch.tensor(run)])
                    run = []
                parts.append(f)
                lab.extend([data.IGNORE] * f.shape[0])
            else:
                run.append(t)
                lab.append(l)
        n = len(lab)
        if block_size:
            extra = -n % block_size
            run.extend([eos_id] * extra)
            lab.extend([eos_id] * extra)
        if run:
            parts.append(E[torch.tensor(run)])
        seqs.append(torch.cat(parts))
        labs.append(lab)
    lengths = [s.shape[0] for s in seqs]
    L = max(lengths)
    if block_size:
        L = -(-L // block_size) * block_size
    B, H = len(seqs), E.shape[1]
    pad = E[pad_id]
    h = torch.stack([torch.cat([s, pad.expand(L - s.shape[0], H)]) for s in seqs])
    labels = torch.full((B, L), data.IGNORE, dtype=torch.long)
    valid = torch.zeros((B, L), dtype=torch.bool)
    for b, (lab, n) in enumerate(zip(labs, lengths)):
        labels[b, :n] = torch.tensor(lab)
        valid[b, :n] = True
    return h, labels, valid, lengths


def write_json(path, obj):
    with open(path, 'w') as f:
        json.dump(obj, f, indent=2)
        f.write('\n')


def copy_side_files(tok_dir, out_dir):
    """Tokenizer files and preprocessor_config.json next to the weights (a complete model folder)."""
    import shutil
    os.makedirs(out_dir, exist_ok=True)
    for name in ('tokenizer.json', 'tokenizer_config.json'):
        shutil.copyfile(os.path.join(tok_dir, name), os.path.join(out_dir, name))
    preprocess.write_preprocessor_config(os.path.join(out_dir, 'preprocessor_config.json'))


def generation_config(eos_id, pad_id):
    return {'eos_token_id': eos_id, 'pad_token_id': pad_id, 'do_sample': False, 'temperature': 0.0}
