// act.cpp — elementwise activations and the row softmax, all f32 in / f32 out.
//
//   silu(x)      = x · σ(x) = x / (1 + e^−x)                    (Qwen2 MLP, docs §2.6; the
//                  level's vector kernel, kernels.h silu_mul)
//   swiglu(g, u) = silu(g) ⊙ u, g and u of the same shape        (fused gate of the MLP)
//   gelu(x)      = x/2 · (1 + erf(x/√2)), evaluated as x/2 · erfc(−x/√2) so that the
//                  negative tail keeps its relative accuracy (no 1 − 0.99997 cancellation)
//                  (vision merger, docs §3.3 item 5; the level's vector kernel, kernels.h gelu)
//   gelu_tanh(x) = x/2 · (1 + tanh(u)), u = √(2/π)(x + 0.044715x³), evaluated as
//                  x · σ(2u) (the same identity, again without cancellation) ("gelu_pytorch_tanh")
//   softmax(x)   = e^(x − max) / Σ e^(x − max) over the last dim, Σ in double.
//
// Non-finite inputs: NaN propagates (softmax: a NaN anywhere makes its whole row NaN). +Inf
// gives +Inf for silu, gelu and gelu_tanh; −Inf gives NaN for all three (−∞ · 0, exactly what
// torch's x·σ(x) and x/2·(1 + erf) produce). softmax: a row holding +Inf, or only −Inf, is NaN
// (∞ − ∞), as in torch.
#include <cmath>

#include "ops.h"

namespace dvl {

static inline float gelu_tanh_f(float x) {
  const float u2 = 2.f * 0.79788456080286536f * (x + 0.044715f * x * x * x);
  return x / (1.f + std::exp(-u2));
}

static Tensors unary_plan(const char* op, const Tensors& in) {
  op_need_inputs(op, in, 1, 1);
  op_need_dtype(op, in, 0, {DType::F32});
  return {Tensor::alloc(DType::F32, in[0]->shape)};
}

template <float (*F)(float)>
static void unary_run(OpContext& ctx, const Tensors& in, const Tensors& out, const OpAttrs&) {
  const float* x = in[0]->data<float>();
  float* y = out[0]->data<float>();
  ctx.pool.parallel_for(in[0]->numel(), 4096, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) y[i] = F(x[i]);
  });
}

// gelu runs the level's vector kernel (kernels.h gelu: erfc by a Chebyshev fit and the vector
// exp, within a third of the op's tolerance — libm's erfc cost ≈ 15 ns a value, the whole merger
// MLP of the bundled model's tower).
static void gelu_run(OpContext& ctx, const Tensors& in, const Tensors& out, const OpAttrs&) {
  const float* x = in[0]->data<float>();
  float* y = out[0]->data<float>();
  ctx.pool.parallel_for(in[0]->numel(), 4096, [&](int64_t b, int64_t e) { ctx.k.gelu(x + b, y + b, e - b); });
}

static Tensors silu_plan(const Tensors& in, const OpAttrs&) { return unary_plan("silu", in); }
static Tensors gelu_plan(const Tensors& in, const OpAttrs&) { return unary_plan("gelu", in); }
static Tensors gelu_tanh_plan(const Tensors& in, const OpAttrs&) { return unary_plan("gelu_tanh", in); }

static Tensors swiglu_plan(const Tensors& in, const OpAttrs&) {
  op_need_inputs("swiglu", in, 2, 2);
  op_need_dtype("swiglu", in, 0, {DType::F32});
  op_need_dtype("swiglu", in, 1, {DType::F32});
  if (in[0]->shape != in[1]->shape) op_fail(DVL_ERR_SHAPE, "swiglu", "gate and up must have the same shape", in);
  return {Tensor::alloc(DType::F32, in[0]->shape)};
}

// silu and swiglu run the level's vector kernel (kernels.h silu_mul: about 1-2 ulp of e^−x,
// where libm's expf made swiglu ≈ 8 ns a value — 4-7 % of a 0.5B forward).
static void silu_run(OpContext& ctx, const Tensors& in, const Tensors& out, const OpAttrs&) {
  const float* x = in[0]->data<float>();
  float* y = out[0]->data<float>();
  ctx.pool.parallel_for(in[0]->numel(), 4096, [&](int64_t b, int64_t e) { ctx.k.silu_mul(x + b, nullptr, y + b, e - b); });
}

static void swiglu_run(OpContext& ctx, const Tensors& in, const Tensors& out, const OpAttrs&) {
  const float* g = in[0]->data<float>();
  const float* u = in[1]->data<float>();
  float* y = out[0]->data<float>();
  ctx.pool.parallel_for(in[0]->numel(), 4096, [&](int64_t b, int64_t e) { ctx.k.silu_mul(g + b, u + b, y + b, e - b); });
}

static Tensors softmax_plan(const Tensors& in, const OpAttrs&) {
  op_need_inputs("softmax", in, 1, 1);
  op_need_dtype("softmax", in, 0, {DType::F32});
  if (in[0]->rank() < 1) op_fail(DVL_ERR_SHAPE, "softmax", "x must have rank >= 1", in);
  return {Tensor::alloc(DType::F32, in[0]->shape)};
}

static void softmax_run(OpContext& ctx, const Tensors& in, const Tensors& out, const OpAttrs&) {
  const float* x = in[0]->data<float>();
  float* y = out[0]->data<float>();
  const int64_t R = rows_of(*in[0]), C = in[0]->dim(-1);
  if (C == 0) return;
  ctx.pool.parallel_for(R, 1, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * C;
      float* yr = y + r * C;
      // max that does not skip NaN: NaN must reach every output of the row.
      float m = xr[0];
      for (int64_t i = 1; i < C; ++i)
        if (xr[i] > m || std::isnan(xr[i])) m = std::isnan(m) ? m : xr[i];
      double s = 0;
      for (int64_t i = 0; i < C; ++i) {
        yr[i] = std::exp(xr[i] - m);
        s += yr[i];
      }
      for (int64_t i = 0; i < C; ++i) yr[i] = float(yr[i] / s);
    }
  });
}

void ops_register_act(std::vector<OpDef>& t) {
  t.push_back({OpId::Silu, silu_plan, silu_run});
  t.push_back({OpId::Swiglu, swiglu_plan, swiglu_run});
  t.push_back({OpId::Gelu, gelu_plan, gelu_run});
  t.push_back({OpId::GeluTanh, gelu_tanh_plan, unary_run<gelu_tanh_f>});
  t.push_back({OpId::Softmax, softmax_plan, softmax_run});
}

}  // namespace dvl
