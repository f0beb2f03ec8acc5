# train_ar.py — stage 1: plain autoregressive next-token training of the AR parent (the Qwen2.5-VL
# style VLM the diffusion model is converted from). Also holds the loop shared with stage 2.
#
# Loss: mean cross-entropy of logits[:, i] against labels[:, i+1] over labelled positions (the
# usual causal-LM shift; labels from data.render: assistant turn + chat markup, §6.2).
# Attention: causal (right padding never reaches a real query). Positions 0..L-1 (§2.8).
#
# Writes <out>/ (released layout with enable_bd3lm false: the AR parent is not a diffusion model),
# <out>/train_log.jsonl (one line per logged step).
import argparse
import json
import math
import os
import time

import torch
import torch.nn.functional as F

import batching
import data
from model import DiffusionVL, ModelDims, config_json, load_model, num_params, save_model
import preprocess

PRESETS = {
    # ≈1.5 M parameters: the model the package ships. Every tower block attends over the whole
    # image: a token learns where it is from how its attention mass falls off towards the image
    # borders (the tower's 2-D rotary is relative), which windows of 8×8 patches would cut short.
    'full': ModelDims(v_fullatt=[0, 1, 2, 3]),
    # For smoke runs only: every code path, seconds per step.
    'tiny': ModelDims(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                      head_dim=16, intermediate_size=64, v_depth=2, v_hidden=32, v_heads=2,
                      v_intermediate=64, v_fullatt=[1]),
}

BLOCK_SIZE = 8
MODEL_MAX_LENGTH = 1024   # divisible by the block size (§6.5)


def lr_at(step, steps, lr, warmup, base_steps=0, extend_from=0):
    """Linear warmup, then cosine decay to 10 % of lr at `steps`. Extended schedule (base_steps,
    extend_from > 0): the cosine of a `base_steps` run up to step extend_from, then a cosine from
    that learning rate down to 10 % of lr at `steps` (a run lengthened midway, without a jump)."""
    if base_steps and step >= extend_from:
        a = lr_at(extend_from, base_steps, lr, warmup)
        p = (step - extend_from) / max(1, steps - extend_from)
        return 0.1 * lr + (a - 0.1 * lr) * 0.5 * (1 + math.cos(math.pi * p))
    if base_steps:
        steps = base_steps
    if step < warmup:
        return lr * (step + 1) / warmup
    p = (step - warmup) / max(1, steps - warmup)
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))


def batch_items(tok, seed, split, start, n):
    return [batching.prepare(tok, data.sample(seed, split, start + b)) for b in range(n)]


def train_loop(model, tok, args, loss_fn, index_base, out_dir, eval_fn=None):
    """Shared loop: AdamW, warmup + cosine, grad clip 1. loss_fn(model, items, gen) → (loss, stats).
    Sample indices start at index_base so the two stages see different samples. Every
    args.ckpt_every steps the whole state (weights, optimizer, noise generator, step) goes to
    <out>/resume.pt; --resume continues from it with the same samples and noise, so an
    interrupted run ends with the same weights. eval_fn(model) → dict, every args.eval_every."""
    # Two parameter groups: the vision tower and merger run at args.vision_lr_mult × the decoder's
    # learning rate (the schedule's shape is shared).
    vis = [p for n, p in model.named_parameters() if n.startswith(('model.vision_tower.', 'model.mm_projector.'))]
    txt = [p for n, p in model.named_parameters() if not n.startswith(('model.vision_tower.', 'model.mm_projector.'))]
    opt = torch.optim.AdamW([{'params': txt, 'mult': 1.0}, {'params': vis, 'mult': args.vision_lr_mult}],
                            lr=args.lr, betas=(0.9, 0.95), weight_decay=args.wd)
    gen = torch.Generator().manual_seed(args.seed * 1000 + 7)
    resume_path = os.path.join(out_dir, 'resume.pt')
    start = 0
    if args.resume and os.path.exists(resume_path):
        st = torch.load(resume_path)
        model.load_state_dict(st['model'])
        opt.load_state_dict(st['opt'])
        gen.set_state(st['gen'])
        start = st['step']
        print(f'resuming at step {start} from {resume_path}', flush=True)
    log = open(os.path.join(out_dir, 'train_log.jsonl'), 'a' if start else 'w')
    t0 = time.time()
    times = []
    for step in range(start, args.steps):
        ts = time.time()
        for g in opt.param_groups:
            g['lr'] = lr_at(step, args.steps, args.lr, args.warmup, args.schedule_base_steps, args.schedule_extend_from) * g['mult']
        items = batch_items(tok, args.seed, 'train', index_base + step * args.batch, args.batch)
        model.train()
        # bf16 autocast: matmuls in bf16 through oneDNN (≈2.5× an f32 OpenBLAS matmul on this
        # CPU), master weights, softmax, norms and the loss in f32.
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=bool(args.bf16)):
            loss, stats = loss_fn(model, items, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        times.append(time.time() - ts)
        if step % args.log_every == 0 or step == args.steps - 1:
            rec = {'step': step, 'loss': round(loss.item(), 5), 'grad_norm': round(float(gn), 4),
                   'lr': opt.param_groups[0]['lr'], 's_per_step': round(sum(times) / len(times), 4),
                   'elapsed_s': round(time.time() - t0, 1), **stats}
            times = []
            log.write(json.dumps(rec) + '\n')
            log.flush()
            print(json.dumps(rec), flush=True)
        done = step + 1
        if eval_fn and args.eval_every and (done % args.eval_every == 0 or done == args.steps):
            r = eval_fn(model)
            rec = {'step': step, 'eval_exact_match': r['exact_match'], 'eval_per_kind': r['per_kind'], 'eval_s': r['seconds']}
            log.write(json.dumps(rec) + '\n')
            log.flush()
            print(json.dumps(rec), flush=True)
        pause = args.stop_after and done == args.stop_after and done < args.steps
        if done < args.steps and (pause or (args.ckpt_every and done % args.ckpt_every == 0)):
            torch.save({'model': model.state_dict(), 'opt': opt.state_dict(), 'gen': gen.get_state(), 'step': done},
                       resume_path + '.tmp')
            os.replace(resume_path + '.tmp', resume_path)
        if pause:
            log.close()
            print(f'paused after step {done}: rerun with --resume to continue', flush=True)
            return False
    log.close()
    if os.path.exists(resume_path):
        os.remove(resume_path)
    return True


def ar_loss(model, items, gen):
    h, labels, valid, _ = batching.embed_batch(model, items, model.eos_id, model.pad_id)
    B, L, _ = h.shape
    causal = torch.full((L, L), torch.finfo(h.dtype).min).triu(1)[None, None]
    pos = torch.arange(L)[None].expand(B, L)
    hid, _ = model.forward_embeds(h, pos, causal)
    logits = model.logits(hid[:, :-1]).float()
    tgt = labels[:, 1:]
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), ignore_index=data.IGNORE)
    return loss, {'tokens': int((tgt != data.IGNORE).sum())}


def common_args(ap):
    ap.add_argument('--tok', required=True, help='folder with tokenizer.json (tokenizer.py --out)')
    ap.add_argument('--out', required=True)
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--steps', type=int, default=3000)
    ap.add_argument('--batch', type=int, default=32)
    ap.add_argument('--lr', type=float, default=2e-3)
    ap.add_argument('--wd', type=float, default=0.01)
    ap.add_argument('--warmup', type=int, default=100)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--log-every', type=int, default=25)
    ap.add_argument('--eval-every', type=int, default=500, help='held-out exact match every N steps (0: off)')
    ap.add_argument('--eval-n', type=int, default=60)
    ap.add_argument('--ckpt-every', type=int, default=250, help='resume state every N steps (0: off)')
    ap.add_argument('--resume', action='store_true', help='continue from <out>/resume.pt if present')
    ap.add_argument('--stop-after', type=int, default=0, help='pause after this step (state kept for --resume)')
    ap.add_argument('--bf16', type=int, default=1, help='1: bf16 autocast for the forward/backward matmuls')
    ap.add_argument('--schedule-base-steps', type=int, default=0,
                    help='extended schedule: the cosine of a run this long up to --schedule-extend-from, then decay to --steps')
    ap.add_argument('--schedule-extend-from', type=int, default=0)
    ap.add_argument('--vision-lr-mult', type=float, default=1.0, help="vision tower + merger learning rate ÷ the decoder's")


def model_config(model, tok, enable_bd3lm):
    d = model.dims
    return config_json(d, tok.size, batching.mask_id_for(tok), tok.im_end, tok.endoftext, enable_bd3lm,
                       BLOCK_SIZE, preprocess.MIN_PIXELS, preprocess.MAX_PIXELS, MODEL_MAX_LENGTH)


def main():
    ap = argparse.ArgumentParser(description='stage 1: AR next-token training of the parent')
    common_args(ap)
    ap.add_argument('--preset', choices=sorted(PRESETS), default='full')
    ap.add_argument('--dims', default='', help='overrides of the preset, e.g. "v_hidden=128,v_fullatt=0:1:2:3"')
    ap.add_argument('--init', default='', help='start from this trained parent folder (a later stage of stage 1) instead of a random init')
    ap.add_argument('--index-base', type=int, default=0, help='first training sample index (a later stage draws samples the earlier never saw)')
    args = ap.parse_args()
    batching.setup_threads(args.threads)
    torch.manual_seed(args.seed)
    tok = batching.load_tokenizer(args.tok)
    rows = batching.vocab_rows_for(tok)
    if args.init:
        # The dims are the trained parent's; a preset or overrides would be silently ignored.
        if args.dims:
            raise ValueError('--dims does not apply with --init (the dims come from the --init model)')
        model, _ = load_model(args.init)
        if model.dims.vocab_size != rows:
            raise ValueError(f'--init {args.init}: {model.dims.vocab_size} vocabulary rows, the tokenizer needs {rows}')
    else:
        d = PRESETS[args.preset]
        for kv in filter(None, args.dims.split(',')):
            k, v = kv.split('=')
            setattr(d, k, [int(x) for x in v.split(':')] if k == 'v_fullatt' else type(getattr(d, k))(v))
        d.vocab_size = rows
        model = DiffusionVL(d)
    model.eos_id, model.pad_id = tok.im_end, tok.endoftext
    os.makedirs(args.out, exist_ok=True)
    print(f'AR parent: {num_params(model)} parameters, vocab rows {rows}, tokenizer {tok.size}', flush=True)
    import eval as ev
    if not train_loop(model, tok, args, ar_loss, args.index_base, args.out,
                      lambda m: ev.evaluate(m, tok, 'ar', args.eval_n, args.seed, gen_length=64)):
        return
    save_model(model, args.out, model_config(model, tok, enable_bd3lm=False))
    batching.copy_side_files(args.tok, args.out)
    batching.write_json(os.path.join(args.out, 'generation_config.json'), batching.generation_config(tok.im_end, tok.endoftext))
    batching.write_json(os.path.join(args.out, 'train_args.json'), {**vars(args), 'params': num_params(model)})


if __name__ == '__main__':
    main()
