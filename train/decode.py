# decode.py — the block-diffusion decoder of docs §5 (`generate_with_bd3lm`), written as a plain
# transcription with the clean choices of §5.12 (explicit mask booleans, a position re-marked as
# masked when MASK itself is revealed, always commit, lowest index wins ties), plus a greedy AR
# decoder for the AR parent. Used by eval.py and fixtures.py.
#
# Shapes: P prompt length (after splicing), G gen_length, bs block size, T = nb·bs canvas,
# H hidden, V rows. The KV cache is the per-layer list of (k, v) [1, nkv, Tc, hd] (post-RoPE).
import math

import torch


def transfer_schedule(bs, steps):
    """§5.5: S + 1 entries of floor(bs/S), the first bs mod S of them + 1."""
    if steps < 1:
        raise ValueError(f'decode: steps must be ≥ 1, got {steps}')
    base, extra = divmod(bs, steps)
    return [base + (1 if i < extra else 0) for i in range(steps + 1)]


def _cat_cache(cache, kvs):
    if cache is None:
        return [(k, v) for k, v in kvs]
    return [(torch.cat([c[0], k], 2), torch.cat([c[1], v], 2)) for c, (k, v) in zip(cache, kvs)]


@torch.no_grad()
def generate(model, prompt, *, steps, gen_length, block_size, mask_id, eos_id,
             strategy='low_confidence_static', threshold=0.85, trace=None, stats=None):
    """§5: greedy (temperature 0) block diffusion. prompt [1, P, H] (spliced embeddings, model
    dtype). Returns the raw G ids (ids[P : P+G], MASK where never generated). `trace`, if a
    list, receives one dict per denoising iteration with the decision margins (fixtures).
    `stats`, if a dict, gets 'forwards' counted as the engine counts them (lib/decode/runner.ts:
    the prefill, then one per denoising iteration; commits ride in the next block's first
    forward and the last block is not committed)."""
    E = model.model.embed_tokens.weight
    _, P, H = prompt.shape
    G, bs = gen_length, block_size
    if bs >= P + G:
        raise NotImplementedError('decode: full-diffusion ablation (bs ≥ P + G, §5.11) is not transcribed')
    nb = math.ceil((P + G) / bs)
    T = nb * bs
    ids = torch.full((T,), mask_id, dtype=torch.long)
    emb = E[mask_id].expand(T, H).clone()
    emb[:P] = prompt[0]
    masked = torch.zeros(T, dtype=torch.bool)
    masked[P:] = True

    # §5.4 prefill of the whole prompt blocks, block-causal (not causal) mask, stored.
    nfull = P // bs
    cache = None
    if nfull:
        Lpre = nfull * bs
        blk = torch.arange(Lpre) // bs
        m = torch.zeros(Lpre, Lpre, dtype=emb.dtype).masked_fill(blk[None, :] > blk[:, None], float('-inf'))
        _, kvs = model.forward_embeds(emb[None, :Lpre], torch.arange(Lpre)[None], m[None, None])
        cache = _cat_cache(None, kvs)

    sched = transfer_schedule(bs, steps)
    forwards = 1 if nfull else 0
    for k in range(nfull, nb):
        sl = slice(k * bs, (k + 1) * bs)
        cur_emb, cur_ids, cur_mask = emb[sl].clone(), ids[sl].clone(), masked[sl].clone()
        pos = torch.arange(k * bs, (k + 1) * bs)[None]
        for i in range(steps + 1):
            if not cur_mask.any():
                break
            # Denoising pass: attend cache + this block (mask all zeros, §5.3), do not store.
            hid, _ = model.forward_embeds(cur_emb[None], pos, None, cache)
            forwards += 1
            logits = model.logits(hid[0]).to(torch.float64 if hid.dtype == torch.float64 else torch.float32)
            probs = torch.softmax(logits, -1)
            x0 = torch.argmax(logits, -1)              # first index among equal maxima
            conf = probs.gather(1, x0[:, None])[:, 0]
            c = torch.where(cur_mask, conf, torch.full_like(conf, float('-inf')))
            n = sched[i]
            order = sorted(range(bs), key=lambda j: (-float(c[j]), j))          # ties: lowest index
            cand = [j for j in order if cur_mask[j]]
            if strategy == 'low_confidence_static':
                chosen = cand[:min(n, len(cand))]
            elif strategy == 'low_confidence_dynamic':
                high = [j for j in cand if float(c[j]) > threshold]
                chosen = high if len(high) >= n else cand[:min(n, len(cand))]
            else:
                raise ValueError(f'decode: unknown remasking strategy {strategy!r}')
            if trace is not None:
                top2 = torch.topk(logits, 2, -1).values
                gaps = (top2[:, 0] - top2[:, 1])[cur_mask]
                rest = [float(c[j]) for j in cand if j not in chosen]
                trace.append({
                    'block': k, 'iter': i, 'revealed': [k * bs + j for j in sorted(chosen)],
                    # smallest top-1 − top-2 logit gap among the masked positions (argmax flips)
                    'min_argmax_gap': float(gaps.min()),
                    # confidence gap between the last chosen and the best unchosen candidate
                    'select_gap': (min(float(c[j]) for j in chosen) - max(rest)) if chosen and rest else None,
                    # dynamic: distance of the nearest candidate confidence to the threshold
                    'threshold_gap': (min(abs(float(c[j]) - threshold) for j in cand)
                                      if strategy == 'low_confidence_dynamic' else None),
                })
            for j in chosen:
                cur_ids[j] = x0[j]
                cur_emb[j] = E[x0[j]]
                cur_mask[j] = bool(x0[j] == mask_id)   # §5.12 #1: a revealed MASK stays masked
        # Commit pass (§5.6): recompute the finished block and store its K/V; logits unused.
        # Always commit, even if masks remain after S + 1 iterations (§5.12 #2).
        _, kvs = model.forward_embeds(cur_emb[None], pos, None, cache)
        cache = _cat_cache(cache, kvs)
        emb[sl], ids[sl], masked[sl] = cur_emb, cur_ids, cur_mask
        if (ids[max(P, k * bs):(k + 1) * bs] == eos_id).any():      # §5.10
            break
    if stats is not None:
        stats['forwards'] = forwards
    return ids[P:P + G].tolist()


def _top2_gap(logits):
    t = torch.topk(logits, 2).values
    return float(t[0] - t[1])


@torch.no_grad()
def generate_ar(model, prompt, *, max_new, eos_id, gaps=None):
    """Greedy next-token decoding for the AR parent (causal mask, KV cache). `gaps`, if a list,
    receives each step's top-1 − top-2 logit margin."""
    _, P, _ = prompt.shape
    E = model.model.embed_tokens.weight
    m = torch.full((P, P), float('-inf'), dtype=prompt.dtype).triu(1)
    hid, kvs = model.forward_embeds(prompt, torch.arange(P)[None], m[None, None])
    cache = _cat_cache(None, kvs)
    out = []
    lg = model.logits(hid[0, -1])
    nxt = int(torch.argmax(lg))
    if gaps is not None:
        gaps.append(_top2_gap(lg))
    for n in range(max_new):
        out.append(nxt)
        if nxt == eos_id:
            break
        hid, kvs = model.forward_embeds(E[nxt][None, None], torch.tensor([[P + n]]), None, cache)
        cache = _cat_cache(cache, kvs)
        lg = model.logits(hid[0, -1])
        nxt = int(torch.argmax(lg))
        if gaps is not None:
            gaps.append(_top2_gap(lg))
    return out


def answer_text(tok, ids, eos_id):
    """Ids up to the first EOS, decoded without special tokens, stripped (§4.3 minus the `.` drop:
    exact match here compares the full sentence)."""
    if eos_id in ids:
        ids = ids[:ids.index(eos_id)]
    return tok.decode(ids, skip_special=True).strip()
