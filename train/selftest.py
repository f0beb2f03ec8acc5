# selftest.py — checks of the training pipeline's own math (float64, random tiny models, seconds):
#   1. train/infer consistency: the x_t-stream logits of the §6.3 2L forward for a block equal the
#      §5 decoder's pass over that block (prefix prefilled block-causally into the KV cache)
#   2. the 2L mask: x_t outputs of blocks ≤ k ignore the clean stream's block k, later ones do not
#   3. vision tower: window-permuted tower (§3.3) == a direct per-row-window-mask version
#   4. smart_resize reproduces the §3.4 examples (with the released bounds), §5.5 schedules
#   5. safetensors round trip and the §1.5 tensor names
# Run: /usr/bin/python3 train/selftest.py   (exit 1 on the first failure)
import math
import os
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import decode  # noqa: E402
import preprocess  # noqa: E402
from model import (DiffusionVL, ModelDims, load_safetensors, save_safetensors,  # noqa: E402
                   segment_layout, vision_rotary, window_layout)
from train_diffusion import bd3lm_mask  # noqa: E402

torch.manual_seed(0)
DIMS = ModelDims(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                 intermediate_size=48, vocab_size=64, v_depth=2, v_hidden=32, v_heads=2, v_intermediate=40,
                 v_window=56, v_fullatt=[1])


def fresh():
    m = DiffusionVL(DIMS).double().eval()
    with torch.no_grad():   # non-trivial norms and biases so every term is exercised
        for n, p in m.named_parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.3)
            else:
                p.mul_(20.0)
    return m


def check(ok, what):
    print(('ok   ' if ok else 'FAIL ') + what)
    if not ok:
        sys.exit(1)


def test_train_infer_consistency():
    m = fresh()
    bs, L, H = 8, 32, DIMS.hidden_size
    h0 = torch.randn(1, L, H, dtype=torch.float64)
    k = 2                                                    # the block being denoised
    xt = h0.clone()
    noisy = torch.tensor([1, 0, 1, 1, 0, 0, 1, 0], dtype=torch.bool)
    xt[0, k * bs:(k + 1) * bs][noisy] = m.model.embed_tokens.weight[5]
    x = torch.cat([xt, h0], 1)
    pos = torch.arange(L).repeat(2)[None]
    with torch.no_grad():
        hid, _ = m.forward_embeds(x, pos, bd3lm_mask(torch.ones(1, L, dtype=torch.bool), bs, x.dtype))
        train_logits = m.logits(hid[0, k * bs:(k + 1) * bs])
        # decoder view: prefill the clean prefix block-causally, then the noisy block over the cache
        Lp = k * bs
        blk = torch.arange(Lp) // bs
        pm = torch.zeros(Lp, Lp, dtype=torch.float64).masked_fill(blk[None] > blk[:, None], float('-inf'))
        _, kvs = m.forward_embeds(h0[:, :Lp], torch.arange(Lp)[None], pm[None, None])
        hid2, _ = m.forward_embeds(xt[:, Lp:Lp + bs], torch.arange(Lp, Lp + bs)[None], None, kvs)
        dec_logits = m.logits(hid2[0])
    err = float((train_logits - dec_logits).abs().max() / dec_logits.abs().max())
    check(err < 1e-12, f'2L training forward == decoder block pass (rel err {err:.1e}; f64 rounding only)')


def test_mask_locality():
    m = fresh()
    bs, L, H = 8, 24, DIMS.hidden_size
    x = torch.randn(1, 2 * L, H, dtype=torch.float64)
    pos = torch.arange(L).repeat(2)[None]
    mask = bd3lm_mask(torch.ones(1, L, dtype=torch.bool), bs, x.dtype)
    with torch.no_grad():
        a, _ = m.forward_embeds(x, pos, mask)
        y = x.clone()
        y[0, L + bs:L + 2 * bs] += 1.0                     # perturb clean block 1
        b, _ = m.forward_embeds(y, pos, mask)
    d = (a - b)[0, :L].abs().amax(-1)
    check(float(d[:2 * bs].max()) == 0.0 and float(d[2 * bs:].min()) > 0,
          'x_t blocks 0,1 ignore clean block 1; x_t block 2 sees it')


def direct_tower(m, rows, grids):
    """The tower without the window permutation: attention restricted by a per-row window id."""
    d = m.dims
    vt = m.model.vision_tower.vision_tower
    M = d.v_window // d.merge // d.patch
    x = vt.patch_embed(rows)
    cos, sin = vision_rotary(grids, d.v_hidden // d.v_heads, d.merge, torch.float64)
    win, img = [], []
    for g, (t, gh, gw) in enumerate(grids):
        for bh in range(gh // 2):
            for bw in range(gw // 2):
                for _ in range(4):
                    win.append((g, bh // M, bw // M))
                    img.append(g)
    R = x.shape[0]
    same_win = torch.tensor([[win[i] == win[j] for j in range(R)] for i in range(R)])
    same_img = torch.tensor([[img[i] == img[j] for j in range(R)] for i in range(R)])
    for j, blk in enumerate(vt.blocks):
        allow = same_img if j in d.v_fullatt else same_win
        a = blk.attn
        z = blk.norm1(x)
        q, k, v = a.qkv(z).view(R, 3, a.nh, a.hd).unbind(1)
        rot = lambda t: torch.cat([-t[..., t.shape[-1] // 2:], t[..., :t.shape[-1] // 2]], -1)  # noqa: E731
        q = q * cos[:, None] + rot(q) * sin[:, None]
        k = k * cos[:, None] + rot(k) * sin[:, None]
        s = torch.einsum('qhd,khd->hqk', q, k) / math.sqrt(a.hd)
        s = s.masked_fill(~allow[None], float('-inf'))
        o = torch.einsum('hqk,khd->qhd', torch.softmax(s, -1), v).reshape(R, -1)
        x = x + a.proj(o)
        x = x + blk.mlp(blk.norm2(x))
    return m.model.mm_projector.merger(x)


def test_vision_tower():
    m = fresh()
    grids = [(1, 12, 8), (1, 6, 6), (1, 4, 10)]              # 6×4, 3×3 (partial windows), 2×5 units
    rows = torch.randn(sum(t * h * w for t, h, w in grids), 1176, dtype=torch.float64)
    with torch.no_grad():
        a = m.encode_images(rows, grids)
        b = direct_tower(m, rows, grids)
    err = float((a - b).abs().max() / b.abs().max())
    check(a.shape == (24 + 9 + 10, DIMS.hidden_size) and err < 1e-12,
          f'windowed tower (permuted) == direct window-mask tower (rel err {err:.1e})')
    idx, cu_win, cu_full = window_layout([(1, 8, 12)], 112, 2, 14)   # Qwen defaults: M = 4
    check(idx[:16] == [y * 6 + x for y in range(4) for x in range(4)] and cu_win == [0, 64, 96] and cu_full == [0, 96],
          'window_layout on a 4×6 unit grid with M = 4 (whole empty window appended and skipped)')
    seg = segment_layout([0, 3, 7], 7, 'cpu')
    check(seg[0].tolist() == [[0, 1, 2, 7], [3, 4, 5, 6]], 'segment_layout gather plan')


def test_resize_and_schedule():
    big = dict(min_pixels=147456, max_pixels=262144)
    cases = {(448, 448): (448, 448), (640, 480): (588, 420), (1920, 1080): (672, 364), (224, 224): (392, 392),
             (512, 512): (504, 504), (100, 1000): (140, 1232)}
    got = {wh: tuple(reversed(preprocess.smart_resize(wh[1], wh[0], **big))) for wh in cases}
    check(got == cases, f'smart_resize reproduces §3.4 ({got})')
    check(decode.transfer_schedule(8, 8) == [1] * 9 and decode.transfer_schedule(8, 3) == [3, 3, 2, 2]
          and decode.transfer_schedule(8, 10) == [1] * 8 + [0] * 3, '§5.5 transfer schedules')


def test_safetensors():
    m = DiffusionVL(DIMS)
    sd = m.state_dict()
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, 'model.safetensors')
        save_safetensors(sd, p, {'format': 'pt'})
        back = load_safetensors(p)
    check(set(back) == set(sd) and all(torch.equal(back[k], sd[k]) for k in sd), 'safetensors round trip')
    names = set(sd)
    need = {'model.embed_tokens.weight', 'model.norm.weight', 'model.layers.0.self_attn.q_proj.bias',
            'model.vision_tower.vision_tower.patch_embed.proj.weight',
            'model.vision_tower.vision_tower.blocks.0.attn.qkv.weight', 'model.vision_tower.vision_tower.blocks.1.mlp.down_proj.bias',
            'model.mm_projector.merger.ln_q.weight', 'model.mm_projector.merger.mlp.0.weight', 'model.mm_projector.merger.mlp.2.bias'}
    check(need <= names and 'lm_head.weight' not in names and not any('o_proj.bias' in n for n in names)
          and sd['model.vision_tower.vision_tower.patch_embed.proj.weight'].shape == (32, 3, 2, 14, 14),
          '§1.5 tensor names (tied: no lm_head; o_proj without bias; Conv3d patch weight)')


if __name__ == '__main__':
    torch.set_num_threads(1)
    test_train_infer_consistency()
    test_mask_locality()
    test_vision_tower()
    test_resize_and_schedule()
    test_safetensors()
    print('selftest: all passed')
