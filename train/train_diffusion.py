# train_diffusion.py — stage 2: continue from the AR parent's weights with the block-diffusion
# (BD3-LM) objective of docs §6, giving the DiffusionVL child.
#
# Per batch (B samples, L = padded length, a multiple of bs = 8; nb = L / bs blocks):
#   §6.5  each sample's real length padded to a multiple of bs with EOS labelled EOS
#   §6.1  u ~ U[0,1) [B, nb]; antithetic: flattened row-major, u_i ← (u_i/n + i/n) mod 1;
#         t = u·(1 − 1e-3) + 1e-3 per (sample, block), broadcast over the block
#   §6.2  masked = (r ≤ t) ∧ (label ≠ −100), r ~ U[0,1) [B, L]; x_t = E[MASK] where masked
#   §6.3  input concat(x_t, x_0) [B, 2L, H], positions [0..L−1, 0..L−1], mask = M_BD ∪ M_OBC ∪
#         M_BC restricted to valid q and k, additive finfo.min; logits from the first L outputs
#   §6.4  loss = mean_b (1/N_b) Σ_{masked l} CE(logits[b,l], label[b,l]) / t[b,l],
#         N_b = max(1, #labels ≠ −100 in b); same-position targets (no shift)
#
# Writes <out>/ (the released layout, enable_bd3lm true) and <out>/train_log.jsonl.
import argparse
import os

import torch
import torch.nn.functional as F

import batching
import data
from model import load_model, num_params, save_model
from train_ar import BLOCK_SIZE, common_args, model_config, train_loop

EPS_MIN, EPS_MAX = 1e-3, 1.0
# Stage 2 reads samples from here on, never the ones stage 1 saw.
INDEX_BASE = 10_000_000


def block_times(B, nb, gen, antithetic=True):
    """§6.1: t [B, nb]."""
    u = torch.rand(B, nb, generator=gen, dtype=torch.float64)
    if antithetic:
        n = B * nb
        i = torch.arange(n, dtype=torch.float64)
        u = ((u.reshape(-1) / n + i / n) % 1).reshape(B, nb)
    return u * (EPS_MAX - EPS_MIN) + EPS_MIN


def bd3lm_mask(valid, bs, dtype):
    """§6.3: additive [B, 1, 2L, 2L] mask over concat(x_t, x_0)."""
    B, L = valid.shape
    i = torch.arange(2 * L)
    half = i >= L
    blk = (i % L) // bs
    hq, hk = half[:, None], half[None, :]
    bq, bk = blk[:, None], blk[None, :]
    m_bd = (bq == bk) & (hq == hk)              # block-diagonal, within x_t or within x_0
    m_obc = ~hq & hk & (bq > bk)                # x_t block sees strictly earlier clean blocks
    m_bc = hq & hk & (bq >= bk)                 # x_0 is block-causal over itself
    allowed = (m_bd | m_obc | m_bc)[None]
    v2 = torch.cat([valid, valid], 1)           # validity repeated for both halves
    allowed = allowed & v2[:, :, None] & v2[:, None, :]
    mask = torch.zeros(B, 1, 2 * L, 2 * L, dtype=dtype)
    return mask.masked_fill(~allowed[:, None], torch.finfo(dtype).min)


def diffusion_loss(model, items, gen):
    bs = BLOCK_SIZE
    h0, labels, valid, _ = batching.embed_batch(model, items, model.eos_id, model.pad_id, block_size=bs)
    B, L, H = h0.shape
    nb = L // bs
    t = block_times(B, nb, gen).repeat_interleave(bs, 1)                       # [B, L]
    r = torch.rand(B, L, generator=gen, dtype=torch.float64)
    masked = (r <= t) & (labels != data.IGNORE)
    e_mask = model.model.embed_tokens.weight[model.mask_id]
    xt = torch.where(masked[..., None], e_mask.expand(B, L, H), h0)
    x = torch.cat([xt, h0], 1)
    pos = torch.arange(L).repeat(2)[None].expand(B, 2 * L)
    hid, _ = model.forward_embeds(x, pos, bd3lm_mask(valid, bs, x.dtype))
    logits = model.logits(hid[:, :L]).float()
    n_b = (labels != data.IGNORE).sum(1).clamp(min=1)
    if not masked.any():
        return logits.sum() * 0, {'masked': 0}
    ce = F.cross_entropy(logits[masked], labels[masked], reduction='none')    # fp32
    w = (1 / t[masked]).float()
    per_b = torch.zeros(B).index_add(0, masked.nonzero()[:, 0], ce * w)
    loss = (per_b / n_b).mean()
    return loss, {'masked': int(masked.sum()), 'ce_unweighted': round(ce.mean().item(), 5)}


def main():
    ap = argparse.ArgumentParser(description='stage 2: block-diffusion training from the AR parent')
    common_args(ap)
    ap.add_argument('--init', required=True, help='AR parent folder (train_ar.py --out)')
    ap.set_defaults(lr=1e-3, steps=4000)
    args = ap.parse_args()
    batching.setup_threads(args.threads)
    torch.manual_seed(args.seed + 1)
    tok = batching.load_tokenizer(args.tok)
    model, _ = load_model(args.init)
    model.eos_id, model.pad_id, model.mask_id = tok.im_end, tok.endoftext, batching.mask_id_for(tok)
    os.makedirs(args.out, exist_ok=True)
    print(f'DiffusionVL child: {num_params(model)} parameters, from {args.init}', flush=True)
    import eval as ev
    if not train_loop(model, tok, args, diffusion_loss, INDEX_BASE, args.out,
                      lambda m: ev.evaluate(m, tok, 'diffusion', args.eval_n, args.seed, steps=8, gen_length=64,
                                            mask_id=m.mask_id, block_size=BLOCK_SIZE)):
        return
    save_model(model, args.out, model_config(model, tok, enable_bd3lm=True))
    batching.copy_side_files(args.tok, args.out)
    batching.write_json(os.path.join(args.out, 'generation_config.json'), batching.generation_config(tok.im_end, tok.endoftext))
    batching.write_json(os.path.join(args.out, 'train_args.json'), {**vars(args), 'params': num_params(model)})


if __name__ == '__main__':
    main()
