// norm.cpp — rms_norm and layer_norm over the last dim (docs §2.2, §3.3 item 5).
//
// Legend: x f32 [.., H] (R rows after flattening the leading dims), w, b f32 [H].
//   rms_norm:   y = w ⊙ (x · r),  r = 1 / sqrt(mean(x²) + eps)
//   layer_norm: y = (x − μ) / sqrt(σ² + eps) ⊙ w + b   (biased variance, two passes)
// The row statistics (Σx², μ, σ²) accumulate in double in a fixed order (Σx² in eight
// interleaved partial sums), so the result does not depend on the thread split. rms_norm then
// works in f32 like the reference (`x * rsqrt(var+eps)` in fp32, weight multiply after),
// layer_norm evaluates the whole row expression in double.
// NaN anywhere in a row makes the whole row NaN (it enters the statistic); ±Inf in x gives NaN
// at that element and 0 elsewhere for rms_norm (x / inf), NaN for the whole layer_norm row.
#include <cmath>

#include "ops.h"

namespace dvl {

static void norm_parse(const char* op, const Tensors& in, size_t nin, OpAttrs& a) {
  op_need_inputs(op, in, nin, nin);
  for (size_t i = 0; i < nin; ++i) op_need_dtype(op, in, i, {DType::F32});
  const Tensor& x = *in[0];
  if (x.rank() < 1) op_fail(DVL_ERR_SHAPE, op, "x must have rank >= 1", in);
  for (size_t i = 1; i < nin; ++i)
    if (in[i]->rank() != 1 || in[i]->dim(0) != x.dim(-1))
      op_fail(DVL_ERR_SHAPE, op, std::string(i == 1 ? "w" : "b") + " must be [" + std::to_string(x.dim(-1)) + "] (x's last dim)", in);
  double eps = a.need(op, "eps");
  if (!(eps >= 0) || !std::isfinite(eps)) op_fail(DVL_ERR_RANGE, op, "eps must be a finite number >= 0", in);
  a.norm.eps = eps;
}

static void rms_norm_parse(const Tensors& in, OpAttrs& a) { norm_parse("rms_norm", in, 2, a); }
static void layer_norm_parse(const Tensors& in, OpAttrs& a) { norm_parse("layer_norm", in, 3, a); }
static Tensors norm_plan(const Tensors& in, const OpAttrs&) { return {Tensor::alloc(DType::F32, in[0]->shape)}; }

static void rms_norm_run(OpContext& ctx, const Tensors& in, const Tensors& out, const OpAttrs& a) {
  const float* x = in[0]->data<float>();
  const float* w = in[1]->data<float>();
  float* y = out[0]->data<float>();
  const int64_t R = rows_of(*in[0]), H = in[0]->dim(-1);
  const double eps = a.norm.eps;
  if (H == 0) return;
  // The level's kernel (kernels.h rms_norm_rows): Σx² in double in a fixed order (eight
  // interleaved partials, added pairwise), so the same bits for any level and thread split.
  ctx.pool.parallel_for(R, 1, [&](int64_t r0, int64_t r1) { ctx.k.rms_norm_rows(x + r0 * H, w, y + r0 * H, r1 - r0, H, eps); });
}

static void layer_norm_run(OpContext& ctx, const Tensors& in, const Tensors& out, const OpAttrs& a) {
  const float* x = in[0]->data<float>();
  const float* w = in[1]->data<float>();
  const float* b = in[2]->data<float>();
  float* y = out[0]->data<float>();
  const int64_t R = rows_of(*in[0]), H = in[0]->dim(-1);
  const double eps = a.norm.eps;
  if (H == 0) return;
  ctx.pool.parallel_for(R, 1, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * H;
      float* yr = y + r * H;
      double s = 0;
      for (int64_t i = 0; i < H; ++i) s += xr[i];
      const double mu = s / double(H);
      double v = 0;
      for (int64_t i = 0; i < H; ++i) v += (xr[i] - mu) * (xr[i] - mu);
      const double inv = 1.0 / std::sqrt(v / double(H) + eps);
      for (int64_t i = 0; i < H; ++i) yr[i] = float((xr[i] - mu) * inv * w[i] + b[i]);
    }
  });
}

void ops_register_norm(std::vector<OpDef>& t) {
  t.push_back({OpId::RmsNorm, norm_plan, rms_norm_run, rms_norm_parse});
  t.push_back({OpId::LayerNorm, norm_plan, layer_norm_run, layer_norm_parse});
}

}  // namespace dvl
