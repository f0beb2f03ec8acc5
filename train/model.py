# model.py — the small DiffusionVL (Qwen2.5-VL route) in plain PyTorch, with the released
# checkpoint's tensor names and config fields (docs §1.5), and a safetensors reader/writer.
#
# See docs §2 (text decoder: RMSNorm, GQA attention with q/k/v biases, rotate-half RoPE, SwiGLU, tied
# lm_head), §2.8 (1-D positions everywhere), §3.3 (vision tower: Conv3d patch embed as a matmul,
# 2-D rotary table, window reordering by merge units, windowed / full-attention blocks, merger).
#
# Legend: B batch, T sequence, H text hidden, nh/nkv heads/kv heads, hd head dim, I MLP width,
# V embedding rows; vision: R patch rows (all images), C tower hidden, vh heads, vd = C/vh,
# D = 3·2·14·14 = 1176 values per row, u = 4 rows per merge unit, U = R/u merged tokens.
#
# State dict names (what `save_checkpoint` writes, §1.5):
#   model.embed_tokens.weight [V, H]            (tied: no lm_head.weight)
#   model.layers.{i}.{input_layernorm, self_attn.{q,k,v,o}_proj, post_attention_layernorm,
#                     mlp.{gate,up,down}_proj}.*
#   model.norm.weight [H]
#   model.vision_tower.vision_tower.patch_embed.proj.weight [C, 3, 2, 14, 14]
#   model.vision_tower.vision_tower.blocks.{j}.{norm1, norm2, attn.qkv, attn.proj,
#                                              mlp.{gate,up,down}_proj}.*
#   model.mm_projector.merger.{ln_q.weight, mlp.0.*, mlp.2.*}
import json
import math
import struct
from dataclasses import dataclass, field, asdict

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class ModelDims:
    # text decoder (Qwen2)
    hidden_size: int = 128                 # H
    num_hidden_layers: int = 4
    num_attention_heads: int = 4           # nh
    num_key_value_heads: int = 2           # nkv (GQA group 2)
    head_dim: int = 32                     # hd
    intermediate_size: int = 384           # I
    vocab_size: int = 0                    # V: embedding rows (set from the tokenizer)
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-6
    # vision tower (Qwen2.5-VL ViT)
    v_depth: int = 4
    v_hidden: int = 96                     # C
    v_heads: int = 4                       # vd = 24 (divisible by 4 for the 2-D rotary table)
    v_intermediate: int = 192
    v_window: int = 112                    # px (as released); M = 4 merge units: the 6×6 grid has partial windows
    v_fullatt: list = field(default_factory=lambda: [1, 3])
    patch: int = 14
    temporal_patch: int = 2
    merge: int = 2


# ----------------------------------------------------------------------------- shared blocks

class RMSNorm(nn.Module):
    def __init__(self, n, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.eps = eps

    def forward(self, x):
        # §2.2: normalise in fp32, cast back, then multiply by the weight.
        xf = acc(x)
        r = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * r.to(x.dtype)


def acc(x):
    """The fp32 accumulation the reference uses (RMSNorm, softmax, vision RoPE: docs §2.2, §2.5, §3.3) — but never a
    down-cast: float64 runs (fixtures) stay float64."""
    return x if x.dtype == torch.float64 else x.float()


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


# ----------------------------------------------------------------------------- text decoder

class Attention(nn.Module):
    def __init__(self, d: ModelDims):
        super().__init__()
        self.nh, self.nkv, self.hd = d.num_attention_heads, d.num_key_value_heads, d.head_dim
        self.q_proj = nn.Linear(d.hidden_size, self.nh * self.hd, bias=True)
        self.k_proj = nn.Linear(d.hidden_size, self.nkv * self.hd, bias=True)
        self.v_proj = nn.Linear(d.hidden_size, self.nkv * self.hd, bias=True)
        self.o_proj = nn.Linear(self.nh * self.hd, d.hidden_size, bias=False)

    def forward(self, x, cos, sin, mask, past=None):
        """x [B, T, H]; cos/sin [B, T, hd]; mask additive [B, 1, T, Tpast+T] or None;
        past: (k, v) [B, nkv, Tpast, hd] post-RoPE. Returns (y, (k, v) of this pass)."""
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.nh, self.hd).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.nkv, self.hd).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.nkv, self.hd).transpose(1, 2)
        c, s = cos[:, None], sin[:, None]
        q = q * c + rotate_half(q) * s
        k = k * c + rotate_half(k) * s
        kk, vv = (k, v) if past is None else (torch.cat([past[0], k], 2), torch.cat([past[1], v], 2))
        g = self.nh // self.nkv          # query head h reads kv head h // g (§2.5)
        kr, vr = kk.repeat_interleave(g, 1), vv.repeat_interleave(g, 1)
        att = (q @ kr.transpose(-1, -2)) / math.sqrt(self.hd)
        if mask is not None:
            att = att + mask
        att = torch.softmax(acc(att), -1).to(q.dtype)
        o = (att @ vr).transpose(1, 2).reshape(B, T, self.nh * self.hd)
        return self.o_proj(o), (k, v)


class MLP(nn.Module):
    def __init__(self, h, i, bias):
        super().__init__()
        self.gate_proj = nn.Linear(h, i, bias=bias)
        self.up_proj = nn.Linear(h, i, bias=bias)
        self.down_proj = nn.Linear(i, h, bias=bias)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, d: ModelDims):
        super().__init__()
        self.input_layernorm = RMSNorm(d.hidden_size, d.rms_norm_eps)
        self.self_attn = Attention(d)
        self.post_attention_layernorm = RMSNorm(d.hidden_size, d.rms_norm_eps)
        self.mlp = MLP(d.hidden_size, d.intermediate_size, bias=False)

    def forward(self, h, cos, sin, mask, past=None):
        y, kv = self.self_attn(self.input_layernorm(h), cos, sin, mask, past)
        h = h + y
        return h + self.mlp(self.post_attention_layernorm(h)), kv


# ----------------------------------------------------------------------------- vision tower

class PatchEmbed(nn.Module):
    def __init__(self, d: ModelDims):
        super().__init__()
        self.proj = nn.Module()
        self.proj.weight = nn.Parameter(torch.empty(d.v_hidden, 3, d.temporal_patch, d.patch, d.patch))
        # The dtype the checkpoint stores this weight in (load_model sets it). The reference casts
        # pixel_values to the weight's dtype before the Conv3d, so a bf16 checkpoint sees pixels
        # rounded to bf16 even when this copy computes in float64 (the fixtures).
        self.input_dtype = None

    def forward(self, rows):
        # §3.3 step 1: Conv3d with kernel = stride = (2, 14, 14) is e = W·row, W as [C, 1176].
        w = self.proj.weight
        if self.input_dtype is not None:
            rows = rows.to(self.input_dtype)
        return rows.to(w.dtype) @ w.reshape(w.shape[0], -1).t()


class VisionAttention(nn.Module):
    def __init__(self, d: ModelDims):
        super().__init__()
        self.nh, self.hd = d.v_heads, d.v_hidden // d.v_heads
        self.qkv = nn.Linear(d.v_hidden, 3 * d.v_hidden, bias=True)
        self.proj = nn.Linear(d.v_hidden, d.v_hidden, bias=True)

    def forward(self, x, cos, sin, seg):
        R, C = x.shape
        q, k, v = self.qkv(x).view(R, 3, self.nh, self.hd).unbind(1)   # rows Q, K, V; head-major
        # 2-D rotary in fp32, then cast back (§3.3 step 2).
        c, s = cos[:, None], sin[:, None]
        q = (acc(q) * c + rotate_half(acc(q)) * s).to(x.dtype)
        k = (acc(k) * c + rotate_half(acc(k)) * s).to(x.dtype)
        return self.proj(segment_attention(q, k, v, seg).reshape(R, C))


def segment_layout(cu, R, device):
    """Gather plan for attention restricted to the row segments [cu[s], cu[s+1]): index [S, Lmax]
    into rows (R = a zero pad row), key validity [S, Lmax], and the flat positions of real rows."""
    lens = [b - a for a, b in zip(cu, cu[1:])]
    Lmax = max(lens)
    idx = torch.full((len(lens), Lmax), R, dtype=torch.long)
    for s_, (a, n) in enumerate(zip(cu, lens)):
        idx[s_, :n] = torch.arange(a, a + n)
    valid = idx < R
    return idx.to(device), valid.to(device)


def segment_attention(q, k, v, seg):
    """Bidirectional attention within segments. q/k/v [R, nh, hd] → [R, nh, hd]."""
    idx, valid = seg
    R, nh, hd = q.shape

    def pack(t):
        t = torch.cat([t, t.new_zeros(1, nh, hd)], 0)
        return t[idx].permute(0, 2, 1, 3)                                      # [S, nh, Lmax, hd]

    qs, ks, vs = pack(q), pack(k), pack(v)
    att = (qs @ ks.transpose(-1, -2)) / math.sqrt(hd)
    att = att.masked_fill(~valid[:, None, None, :], float('-inf'))
    att = torch.softmax(acc(att), -1).to(q.dtype)
    o = (att @ vs).permute(0, 2, 1, 3)                                         # [S, Lmax, nh, hd]
    return o[valid]                                                            # rows in cu order


class VisionBlock(nn.Module):
    def __init__(self, d: ModelDims):
        super().__init__()
        self.norm1 = RMSNorm(d.v_hidden, 1e-6)
        self.norm2 = RMSNorm(d.v_hidden, 1e-6)
        self.attn = VisionAttention(d)
        self.mlp = MLP(d.v_hidden, d.v_intermediate, bias=True)

    def forward(self, x, cos, sin, seg):
        x = x + self.attn(self.norm1(x), cos, sin, seg)
        return x + self.mlp(self.norm2(x))


class Merger(nn.Module):
    def __init__(self, d: ModelDims):
        super().__init__()
        w = d.v_hidden * d.merge * d.merge
        self.ln_q = RMSNorm(d.v_hidden, 1e-6)
        self.mlp = nn.Sequential(nn.Linear(w, w), nn.GELU(), nn.Linear(w, d.hidden_size))  # exact GELU

    def forward(self, x):
        return self.mlp(self.ln_q(x).reshape(-1, self.mlp[0].in_features))


def window_layout(grids, window, merge, patch):
    """§3.3 step 3: unit ids in window order, window boundaries in rows (deduplicated), and the
    whole-frame boundaries in rows (full-attention blocks)."""
    M = window // merge // patch
    u = merge * merge
    index, cu_win, cu_full, base = [], [0], [0], 0
    for t, gh, gw in grids:
        lh, lw = gh // merge, gw // merge
        nwh, nww = (lh + M - lh % M) // M, (lw + M - lw % M) // M   # always appends M - n mod M
        for f in range(t):
            for wy in range(nwh):
                for wx in range(nww):
                    n = 0
                    for y in range(wy * M, min((wy + 1) * M, lh)):
                        for x in range(wx * M, min((wx + 1) * M, lw)):
                            index.append(base + f * lh * lw + y * lw + x)
                            n += 1
                    if n:
                        cu_win.append(cu_win[-1] + n * u)
            cu_full.append(cu_full[-1] + lh * lw * u)
        base += t * lh * lw
    return index, cu_win, cu_full


def vision_rotary(grids, vd, merge, dtype=torch.float32):
    """§3.3 step 2: cos/sin [R, vd] for the rows in §3.2 order."""
    dim = vd // 2
    inv = 1.0 / (10000 ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))     # dim/2 values
    rs, cs = [], []
    for t, gh, gw in grids:
        r = torch.arange(gh).view(gh // merge, merge, 1, 1).expand(gh // merge, merge, gw // merge, merge)
        c = torch.arange(gw).view(1, 1, gw // merge, merge).expand(gh // merge, merge, gw // merge, merge)
        # row order: bh, bw, ih, iw
        rs.append(r.permute(0, 2, 1, 3).reshape(-1).repeat(t))
        cs.append(c.permute(0, 2, 1, 3).reshape(-1).repeat(t))
    r, c = torch.cat(rs).float(), torch.cat(cs).float()
    theta = torch.cat([r[:, None] * inv, c[:, None] * inv], 1)                    # [R, dim]
    emb = torch.cat([theta, theta], 1)                                            # [R, vd]
    return emb.cos().to(dtype), emb.sin().to(dtype)


class VisionTransformer(nn.Module):
    def __init__(self, d: ModelDims):
        super().__init__()
        self.d = d
        self.patch_embed = PatchEmbed(d)
        self.blocks = nn.ModuleList(VisionBlock(d) for _ in range(d.v_depth))

    def forward(self, rows, grids, merger):
        """rows [R, D] (all images, §3.2 order), grids [(t, gh, gw)] → merged tokens [U, H] in
        row-major order per image, images in order."""
        d = self.d
        u = d.merge * d.merge
        x = self.patch_embed(rows)
        cos, sin = vision_rotary(grids, d.v_hidden // d.v_heads, d.merge)
        index, cu_win, cu_full = window_layout(grids, d.v_window, d.merge, d.patch)
        wi = torch.tensor(index)
        perm = (wi[:, None] * u + torch.arange(u)).reshape(-1)                     # unit → its u rows
        x, cos, sin = x[perm], cos[perm], sin[perm]
        R = x.shape[0]
        seg_win, seg_full = segment_layout(cu_win, R, x.device), segment_layout(cu_full, R, x.device)
        for j, blk in enumerate(self.blocks):
            x = blk(x, cos, sin, seg_full if j in d.v_fullatt else seg_win)
        y = merger(x)                                                              # [U, H] window order
        return y[torch.argsort(wi)]


# ----------------------------------------------------------------------------- the whole model

class DiffusionVL(nn.Module):
    def __init__(self, d: ModelDims):
        super().__init__()
        self.dims = d
        self.model = nn.Module()
        m = self.model
        m.embed_tokens = nn.Embedding(d.vocab_size, d.hidden_size)
        m.layers = nn.ModuleList(DecoderLayer(d) for _ in range(d.num_hidden_layers))
        m.norm = RMSNorm(d.hidden_size, d.rms_norm_eps)
        m.vision_tower = nn.Module()
        m.vision_tower.vision_tower = VisionTransformer(d)
        m.mm_projector = nn.Module()
        m.mm_projector.merger = Merger(d)
        self.apply(self._init)

    @staticmethod
    def _init(mod):
        if isinstance(mod, (nn.Linear, nn.Embedding)):
            nn.init.normal_(mod.weight, std=0.02)
            if getattr(mod, 'bias', None) is not None:
                nn.init.zeros_(mod.bias)
        elif isinstance(mod, PatchEmbed):
            nn.init.normal_(mod.proj.weight, std=0.02)

    def encode_images(self, rows, grids):
        """Image features [U, H] for all images (the merger output, §3.3)."""
        vt = self.model.vision_tower.vision_tower
        return vt(rows, grids, self.model.mm_projector.merger)

    def rope(self, positions, dtype):
        """§2.4: cos/sin [B, T, hd] for positions [B, T] (angles in fp32, cast to model dtype)."""
        d = self.dims
        inv = 1.0 / (d.rope_theta ** (torch.arange(0, d.head_dim, 2, dtype=torch.int64).float() / d.head_dim))
        ang = positions.float()[..., None] * inv
        emb = torch.cat([ang, ang], -1)
        return emb.cos().to(dtype), emb.sin().to(dtype)

    def forward_embeds(self, h, positions, mask, past=None):
        """Decoder over embeddings h [B, T, H] → (final hidden [B, T, H], [(k, v)] per layer of
        this pass). past: per layer (k, v) to attend over before this pass's keys."""
        cos, sin = self.rope(positions, h.dtype)
        kvs = []
        for i, layer in enumerate(self.model.layers):
            h, kv = layer(h, cos, sin, mask, None if past is None else past[i])
            kvs.append(kv)
        return self.model.norm(h), kvs

    def logits(self, hidden):
        return hidden @ self.model.embed_tokens.weight.t()    # tied lm_head (§1.2, 3B layout)


def num_params(model):
    return sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------- files

_DT = {torch.float32: 'F32', torch.float64: 'F64', torch.bfloat16: 'BF16', torch.float16: 'F16'}
_TD = {v: k for k, v in _DT.items()}


def save_safetensors(tensors, path, metadata=None):
    """The safetensors format: u64 LE header length, JSON header (offsets relative to the data
    start, padded with spaces to 8 bytes), then the raw little-endian tensors in header order."""
    header, off, blobs = {}, 0, []
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        b = t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.view(torch.int16).numpy().tobytes()
        header[name] = {'dtype': _DT[t.dtype], 'shape': list(t.shape), 'data_offsets': [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    if metadata:
        header['__metadata__'] = metadata
    hj = json.dumps(header, separators=(',', ':')).encode()
    hj += b' ' * (-len(hj) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(hj)))
        f.write(hj)
        for b in blobs:
            f.write(b)


def load_safetensors(path):
    with open(path, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, h in header.items():
        if name == '__metadata__':
            continue
        a, b = h['data_offsets']
        dt = _TD[h['dtype']]
        raw = bytearray(data[a:b])
        if dt == torch.bfloat16:
            t = torch.frombuffer(raw, dtype=torch.int16).view(torch.bfloat16)
        else:
            t = torch.frombuffer(raw, dtype=dt)
        out[name] = t.reshape(h['shape']).clone()
    return out


def config_json(d: ModelDims, tok_size, mask_id, eos_id, pad_id, enable_bd3lm, block_size,
                min_pixels, max_pixels, model_max_length):
    """config.json with the released fields of §1.5 (text_config authoritative, flat copies too)."""
    text = {
        'model_type': 'qwen2_5_vl_text',
        'hidden_size': d.hidden_size, 'num_hidden_layers': d.num_hidden_layers,
        'num_attention_heads': d.num_attention_heads, 'num_key_value_heads': d.num_key_value_heads,
        'head_dim': d.head_dim, 'intermediate_size': d.intermediate_size, 'vocab_size': d.vocab_size,
        'rope_theta': d.rope_theta, 'rms_norm_eps': d.rms_norm_eps, 'tie_word_embeddings': True,
        'max_position_embeddings': model_max_length, 'hidden_act': 'silu', 'use_sliding_window': False,
        'rope_scaling': None, 'attention_dropout': 0.0, 'torch_dtype': 'float32',
        'bos_token_id': pad_id, 'eos_token_id': eos_id,
    }
    vision = {
        'model_type': 'qwen2_5_vl', 'depth': d.v_depth, 'hidden_size': d.v_hidden,
        'num_heads': d.v_heads, 'intermediate_size': d.v_intermediate, 'hidden_act': 'silu',
        'in_channels': 3, 'in_chans': 3, 'patch_size': d.patch, 'temporal_patch_size': d.temporal_patch,
        'spatial_merge_size': d.merge, 'window_size': d.v_window, 'fullatt_block_indexes': list(d.v_fullatt),
        'out_hidden_size': d.hidden_size, 'tokens_per_second': 2,
    }
    cfg = {
        'architectures': ['DiffusionVLQwenVLForCausalLM'],
        'model_type': 'diffusionvl_qwenvl',
        'text_config': text,
        'vision_config': vision,
        'image_token_id': None, 'video_token_id': None,   # unused: images are spliced at −200 (§3.6)
        'mask_token_id': mask_id,                          # beyond the tokenizer (like 151671, §4.2)
        'eos_token_id': eos_id, 'pad_token_id': pad_id, 'bos_token_id': pad_id,
        'enable_bd3lm': enable_bd3lm,
        'bd3lm_block_size': block_size,
        'bd3lm_block_aligned_eos': True,
        'bd3lm_sampling_eps_min': 0.001,
        'bd3lm_sampling_eps_max': 1.0,
        'bd3lm_antithetic_sampling': True,
        'model_max_length': model_max_length,
        'tokenizer_model_max_length': model_max_length,
        'tokenizer_padding_side': 'right',
        'min_pixels': min_pixels,
        'max_pixels': max_pixels,
        'mm_projector_type': 'qwen_merger',
        # Training fed unpadded images (as the reference eval does, §3.1), not the "pad" mode.
        'image_aspect_ratio': 'original',
        'mm_use_im_patch_token': False,
        'mm_use_im_start_end': False,
        'mm_tunable_parts': 'mm_vision_tower,mm_mlp_adapter,mm_language_model',
        'tie_word_embeddings': True,
        'torch_dtype': 'float32',
        'tokenizer_size': tok_size,
    }
    # Flat copies of the text fields at the top level, identical to text_config.
    for k in ('hidden_size', 'num_hidden_layers', 'num_attention_heads', 'num_key_value_heads',
              'head_dim', 'intermediate_size', 'vocab_size', 'rope_theta', 'rms_norm_eps',
              'max_position_embeddings', 'hidden_act', 'use_sliding_window', 'rope_scaling'):
        cfg[k] = text[k]
    return cfg


def dims_from_config(cfg):
    t, v = cfg['text_config'], cfg['vision_config']
    return ModelDims(
        hidden_size=t['hidden_size'], num_hidden_layers=t['num_hidden_layers'],
        num_attention_heads=t['num_attention_heads'], num_key_value_heads=t['num_key_value_heads'],
        head_dim=t['head_dim'], intermediate_size=t['intermediate_size'], vocab_size=t['vocab_size'],
        rope_theta=t['rope_theta'], rms_norm_eps=t['rms_norm_eps'],
        v_depth=v['depth'], v_hidden=v['hidden_size'], v_heads=v['num_heads'],
        v_intermediate=v['intermediate_size'], v_window=v['window_size'],
        v_fullatt=list(v['fullatt_block_indexes']), patch=v['patch_size'],
        temporal_patch=v['temporal_patch_size'], merge=v['spatial_merge_size'])


def save_model(model, out_dir, cfg):
    import os
    os.makedirs(out_dir, exist_ok=True)
    sd = {k: v.float() for k, v in model.state_dict().items()}
    save_safetensors(sd, os.path.join(out_dir, 'model.safetensors'), {'format': 'pt'})
    with open(os.path.join(out_dir, 'config.json'), 'w') as f:
        json.dump(cfg, f, indent=2)
        f.write('\n')


def load_model(model_dir, dtype=torch.float32):
    import os
    with open(os.path.join(model_dir, 'config.json')) as f:
        cfg = json.load(f)
    model = DiffusionVL(dims_from_config(cfg))
    sd = load_safetensors(os.path.join(model_dir, 'model.safetensors'))
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise ValueError(f'{model_dir}: missing {missing}, unexpected {unexpected}')
    pe = model.model.vision_tower.vision_tower.patch_embed
    pe.input_dtype = sd['model.vision_tower.vision_tower.patch_embed.proj.weight'].dtype
    return model.to(dtype).eval(), cfg
