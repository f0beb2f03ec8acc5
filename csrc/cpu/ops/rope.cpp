// rope.cpp — rotary position embedding, non-interleaved ("rotate-half") layout (docs §2.4;
// the vision tower's 2-D table of §3.3 is built elsewhere and applied with the same `rope`).
//
// rope_cos_sin: positions i32 [T]; attrs theta, dim (even) → cos, sin f32 [T, dim].
//   inv_freq[j] = fround(1 / fround(theta ^ fround(2j / dim)))  j < dim/2   (torch computes
//                 `1 / theta ** (arange(0, dim, 2).float() / dim)` in float32)
//   ang[t, j]   = fround(p_t · inv_freq[j])                                  (fp32 product)
//   cos[t]      = [cos(ang[t, 0..dim/2)), cos(ang[t, 0..dim/2))], sin likewise; cos/sin are
//                 evaluated in double and rounded once, i.e. correctly rounded f32 values.
// rope: x f32 [T, nh, hd], cos, sin f32 [T, hd] → y f32 [T, nh, hd] with
//   y = x·cos + rotate_half(x)·sin,  rotate_half(x) = [−x[hd/2:], x[:hd/2]]   (f32)
// qkv_rope_split: a fused Q | K | V product split, RoPE on Q and K (below, by
//   qkv_rope_split_run).
#include <cmath>
#include <cstring>
#include <vector>
#include <string>

#include "ops.h"

namespace dvl {

static void rope_cos_sin_parse(const Tensors& in, OpAttrs& a) {
  op_need_inputs("rope_cos_sin", in, 1, 1);
  op_need_dtype("rope_cos_sin", in, 0, {DType::I32});
  op_need_rank("rope_cos_sin", in, 0, 1);
  double theta = a.need("rope_cos_sin", "theta");
  int64_t dim = a.needi("rope_cos_sin", "dim");
  if (!(theta > 0) || !std::isfinite(theta)) op_fail(DVL_ERR_RANGE, "rope_cos_sin", "theta must be a finite number > 0", in);
  if (dim <= 0 || dim % 2) op_fail(DVL_ERR_RANGE, "rope_cos_sin", "dim must be even and > 0, got " + std::to_string(dim), in);
  a.rope = RopeAttrs{theta, dim};
}

static Tensors rope_cos_sin_plan(const Tensors& in, const OpAttrs& a) {
  const int64_t T = in[0]->dim(0), dim = a.rope.dim;
  return {Tensor::alloc(DType::F32, {T, dim}), Tensor::alloc(DType::F32, {T, dim})};
}

static void rope_cos_sin_run(OpContext& ctx, const Tensors& in, const Tensors& out, const OpAttrs& a) {
  const int32_t* pos = in[0]->data<int32_t>();
  const double theta = a.rope.theta;
  const int64_t dim = a.rope.dim, half = dim / 2, T = in[0]->dim(0);
  std::vector<float> inv_freq(static_cast<size_t>(half));
  for (int64_t j = 0; j < half; ++j) {
    const float e = float(2 * j) / float(dim);
    const float p = float(std::pow(theta, double(e)));
    inv_freq[j] = 1.f / p;
  }
  float* c = out[0]->data<float>();
  float* s = out[1]->data<float>();
  ctx.pool.parallel_for(T, 4, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const float p = float(pos[t]);
      float* cr = c + t * dim;
      float* sr = s + t * dim;
      for (int64_t j = 0; j < half; ++j) {
        const float ang = p * inv_freq[j];
        cr[j] = cr[j + half] = float(std::cos(double(ang)));
        sr[j] = sr[j + half] = float(std::sin(double(ang)));
      }
    }
  });
}

static Tensors rope_plan(const Tensors& in, const OpAttrs&) {
  op_need_inputs("rope", in, 3, 3);
  for (size_t i = 0; i < 3; ++i) op_need_dtype("rope", in, i, {DType::F32});
  op_need_rank("rope", in, 0, 3);
  const Tensor& x = *in[0];
  const int64_t T = x.dim(0), hd = x.dim(2);
  if (hd % 2) op_fail(DVL_ERR_SHAPE, "rope", "head dim must be even", in);
  for (size_t i = 1; i < 3; ++i)
    if (in[i]->rank() != 2 || in[i]->dim(0) != T || in[i]->dim(1) != hd)
      op_fail(DVL_ERR_SHAPE, "rope", std::string(i == 1 ? "cos" : "sin") + " must be [T, hd] = [" + std::to_string(T) + ", " +
                                         std::to_string(hd) + "]", in);
  return {Tensor::alloc(DType::F32, x.shape)};
}

static void rope_run(OpContext& ctx, const Tensors& in, const Tensors& out, const OpAttrs&) {
  const float* x = in[0]->data<float>();
  const float* c = in[1]->data<float>();
  const float* s = in[2]->data<float>();
  float* y = out[0]->data<float>();
  const int64_t T = in[0]->dim(0), nh = in[0]->dim(1), hd = in[0]->dim(2);
  // The level's kernel (kernels.h rope_rows): each product rounded, then the sum, at every level.
  ctx.pool.parallel_for(T * nh, 8, [&](int64_t r0, int64_t r1) { ctx.k.rope_rows(x, c, s, y, r0, r1, nh, hd); });
}

// qkv_rope_split: qkv f32 [R, (nh + 2·nkv)·hd] (Q | K | V, head h at columns h·hd within each),
// cos, sin f32 [R, hd], attrs heads (nh), kvHeads (nkv, default nh), kvRows (default 0) → q f32
// [R, nh, hd] and k with RoPE, v as stored; k and v head-major [nkv, R, hd] (the layout
// `attention` takes as a cache of R positions: the vision tower) or with kvRows [R, nkv, hd]
// (what kv_cache_append_batch takes). With inputs 3 and 4, the layer's K and V caches
// [S, nkv, cap, hd] (f32|bf16|f16, written in place), and attr seqs (attention_batch's layout),
// k and v go straight into the caches as kv_cache_append_batch would put them (the text
// decoder's fused q|k|v product) and q is the only output. One pass for what took three column
// slices and two ropes (and two cache appends), with rope's arithmetic (kernels.h rope_rows, one
// row at a time) and the appends' rounding (cvt_f32_to_bf16 / _f16): the same bits as those ops.
// A CPU op: a CUDA queue runs it through the CPU (the models do not).
static void qkv_rope_split_parse(const Tensors& in, OpAttrs& a) {
  const char* op = "qkv_rope_split";
  op_need_inputs(op, in, 3, 5);
  for (size_t i = 0; i < 3; ++i) op_need_dtype(op, in, i, {DType::F32});
  op_need_rank(op, in, 0, 2);
  const int64_t heads = a.needi(op, "heads");
  const int64_t kv_heads = a.has("kvHeads") ? a.needi(op, "kvHeads") : heads;
  const int64_t R = in[0]->dim(0), cols = in[0]->dim(1);
  if (heads < 1 || kv_heads < 1 || cols % (heads + 2 * kv_heads) != 0)
    op_fail(DVL_ERR_SHAPE, op, "qkv's columns must be (heads + 2 · kvHeads) · hd", in);
  const int64_t hd = cols / (heads + 2 * kv_heads);
  if (hd < 2 || hd % 2) op_fail(DVL_ERR_SHAPE, op, "head dim must be even", in);
  for (size_t i = 1; i < 3; ++i)
    if (in[i]->rank() != 2 || in[i]->dim(0) != R || in[i]->dim(1) != hd)
      op_fail(DVL_ERR_SHAPE, op, std::string(i == 1 ? "cos" : "sin") + " must be [R, hd] = [" + std::to_string(R) + ", " + std::to_string(hd) + "]", in);
  a.heads = heads;
  a.kv_heads = kv_heads;
  a.kv_rows = a.geti("kvRows", 0) != 0;
  a.kv.seqs.clear();
  if (in.size() > 3) {
    if (in.size() != 5 || !in[3] || !in[4]) op_fail(DVL_ERR_ARG, op, "the K and V caches come together (inputs 3 and 4)", in);
    for (size_t i = 3; i < 5; ++i) {
      op_need_dtype(op, in, i, {DType::F32, DType::BF16, DType::F16});
      op_need_rank(op, in, i, 4);
    }
    const Tensor &kc = *in[3], &vc = *in[4];
    if (kc.dtype != vc.dtype || kc.shape != vc.shape) op_fail(DVL_ERR_SHAPE, op, "the K and V caches must have the same dtype and shape [S, nkv, cap, hd]", in);
    if (kc.dim(1) != kv_heads || kc.dim(3) != hd) op_fail(DVL_ERR_SHAPE, op, "the caches must be [S, kvHeads, cap, hd]", in);
    a.kv.seqs = batch_seqs(op, in, a, R, kc.dim(0), kc.dim(2));
  }
}

static Tensors qkv_rope_split_plan(const Tensors& in, const OpAttrs& a) {
  const int64_t R = in[0]->dim(0), nh = a.heads, nkv = a.kv_heads, hd = in[0]->dim(1) / (nh + 2 * nkv);
  TensorP q = Tensor::alloc(DType::F32, {R, nh, hd});
  if (in.size() > 3) return {q};  // k and v go to the caches
  const std::vector<int64_t> kv = a.kv_rows ? std::vector<int64_t>{R, nkv, hd} : std::vector<int64_t>{nkv, R, hd};
  return {q, Tensor::alloc(DType::F32, kv), Tensor::alloc(DType::F32, kv)};
}

static void qkv_rope_split_run(OpContext& ctx, const Tensors& in, const Tensors& out, const OpAttrs& a) {
  const float* x = in[0]->data<float>();
  const float* c = in[1]->data<float>();
  const float* s = in[2]->data<float>();
  float* q = out[0]->data<float>();
  const bool cached = in.size() > 3;
  float* k = cached ? nullptr : out[1]->data<float>();
  float* v = cached ? nullptr : out[2]->data<float>();
  const int64_t R = in[0]->dim(0), nh = a.heads, nkv = a.kv_heads, hd = in[0]->dim(1) / (nh + 2 * nkv);
  const int64_t Cq = nh * hd, Ckv = nkv * hd, C = Cq + 2 * Ckv;
  // Cached: row t's cache offset (slot, position) for kv head 0; head g adds g·cap·hd.
  std::vector<int64_t> dst;
  int64_t head_stride = 0;
  if (cached) {
    const int64_t cap = in[3]->dim(2);
    head_stride = cap * hd;
    dst.resize(size_t(R));
    for (const BatchSeq& b : a.kv.seqs)
      for (int64_t t = b.row0; t < b.row1; ++t) dst[size_t(t)] = (b.slot * nkv * cap + b.pos0 + t - b.row0) * hd;
  }
  // Per position, one rope_rows call over its nh heads for Q (straight into q's row) and one
  // over its nkv heads for K (straight into k's row, or into a row of scratch and then each
  // head to its place): a call per (position, head) was ≈ 2000 indirect calls per tower block.
  // A row's arithmetic is the same either way.
  ctx.pool.parallel_for(R, 8, [&](int64_t t0, int64_t t1) {
    std::vector<float> kr(a.kv_rows && !cached ? 0 : static_cast<size_t>(Ckv));
    for (int64_t t = t0; t < t1; ++t) {
      const float* row = x + t * C;
      ctx.k.rope_rows(row, c + t * hd, s + t * hd, q + t * Cq, 0, nh, nh, hd);
      if (cached) {
        ctx.k.rope_rows(row + Cq, c + t * hd, s + t * hd, kr.data(), 0, nkv, nkv, hd);
        for (int64_t g = 0; g < nkv; ++g) {
          kv_store_row(ctx, kr.data() + g * hd, *in[3], dst[size_t(t)] + g * head_stride, hd);
          kv_store_row(ctx, row + Cq + Ckv + g * hd, *in[4], dst[size_t(t)] + g * head_stride, hd);
        }
        continue;
      }
      if (a.kv_rows) {
        ctx.k.rope_rows(row + Cq, c + t * hd, s + t * hd, k + t * Ckv, 0, nkv, nkv, hd);
        std::memcpy(v + t * Ckv, row + Cq + Ckv, sizeof(float) * size_t(Ckv));
        continue;
      }
      ctx.k.rope_rows(row + Cq, c + t * hd, s + t * hd, kr.data(), 0, nkv, nkv, hd);
      for (int64_t h = 0; h < nkv; ++h) {
        std::memcpy(k + (h * R + t) * hd, kr.data() + h * hd, sizeof(float) * size_t(hd));
        std::memcpy(v + (h * R + t) * hd, row + Cq + Ckv + h * hd, sizeof(float) * size_t(hd));
      }
    }
  });
}

void ops_register_rope(std::vector<OpDef>& t) {
  t.push_back({OpId::RopeCosSin, rope_cos_sin_plan, rope_cos_sin_run, rope_cos_sin_parse});
  t.push_back({OpId::Rope, rope_plan, rope_run});
  t.push_back({OpId::QkvRopeSplit, qkv_rope_split_plan, qkv_rope_split_run, qkv_rope_split_parse});
}

}  // namespace dvl
