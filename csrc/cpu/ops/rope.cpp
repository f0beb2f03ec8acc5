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
// qkv_rope_split: the vision tower's Q | K | V split, RoPE on Q and K, K and V head-major
//   (below, by qkv_rope_split_run).
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

// qkv_rope_split: qkv f32 [R, 3·nh·hd] (Q | K | V, head h at columns h·hd within each), cos,
// sin f32 [R, hd], attr heads → q f32 [R, nh, hd] and k f32 [nh, R, hd] with RoPE, v f32
// [nh, R, hd]: k and v head-major, the layout `attention` takes as a cache of R positions. One
// pass for what the vision tower did in seven ops per block (three column slices, two ropes,
// two cache appends), with rope's arithmetic (kernels.h rope_rows, one row at a time): the
// same bits as those ops. A CPU op: a CUDA queue runs it through the CPU (the model does not).
static void qkv_rope_split_parse(const Tensors& in, OpAttrs& a) {
  const char* op = "qkv_rope_split";
  op_need_inputs(op, in, 3, 3);
  for (size_t i = 0; i < 3; ++i) op_need_dtype(op, in, i, {DType::F32});
  op_need_rank(op, in, 0, 2);
  const int64_t heads = a.needi(op, "heads");
  const int64_t R = in[0]->dim(0), cols = in[0]->dim(1);
  if (heads < 1 || cols % (3 * heads) != 0) op_fail(DVL_ERR_SHAPE, op, "qkv's columns must be 3 · heads · hd", in);
  const int64_t hd = cols / (3 * heads);
  if (hd < 2 || hd % 2) op_fail(DVL_ERR_SHAPE, op, "head dim must be even", in);
  for (size_t i = 1; i < 3; ++i)
    if (in[i]->rank() != 2 || in[i]->dim(0) != R || in[i]->dim(1) != hd)
      op_fail(DVL_ERR_SHAPE, op, std::string(i == 1 ? "cos" : "sin") + " must be [R, hd] = [" + std::to_string(R) + ", " + std::to_string(hd) + "]", in);
  a.heads = heads;
}

static Tensors qkv_rope_split_plan(const Tensors& in, const OpAttrs& a) {
  const int64_t R = in[0]->dim(0), nh = a.heads, hd = in[0]->dim(1) / (3 * nh);
  return {Tensor::alloc(DType::F32, {R, nh, hd}), Tensor::alloc(DType::F32, {nh, R, hd}), Tensor::alloc(DType::F32, {nh, R, hd})};
}

static void qkv_rope_split_run(OpContext& ctx, const Tensors& in, const Tensors& out, const OpAttrs& a) {
  const float* x = in[0]->data<float>();
  const float* c = in[1]->data<float>();
  const float* s = in[2]->data<float>();
  float* q = out[0]->data<float>();
  float* k = out[1]->data<float>();
  float* v = out[2]->data<float>();
  const int64_t R = in[0]->dim(0), nh = a.heads, hd = in[0]->dim(1) / (3 * nh), C = nh * hd;
  // Per position, one rope_rows call over its nh heads for Q (straight into q's row) and one
  // for K (into a row of scratch, then each head to its place in k): a call per (position,
  // head) was ≈ 2000 indirect calls per tower block. A row's arithmetic is the same either way.
  ctx.pool.parallel_for(R, 8, [&](int64_t t0, int64_t t1) {
    std::vector<float> kr(static_cast<size_t>(C));
    for (int64_t t = t0; t < t1; ++t) {
      const float* row = x + t * 3 * C;
      ctx.k.rope_rows(row, c + t * hd, s + t * hd, q + t * C, 0, nh, nh, hd);
      ctx.k.rope_rows(row + C, c + t * hd, s + t * hd, kr.data(), 0, nh, nh, hd);
      for (int64_t h = 0; h < nh; ++h) {
        std::memcpy(k + (h * R + t) * hd, kr.data() + h * hd, sizeof(float) * size_t(hd));
        std::memcpy(v + (h * R + t) * hd, row + 2 * C + h * hd, sizeof(float) * size_t(hd));
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
