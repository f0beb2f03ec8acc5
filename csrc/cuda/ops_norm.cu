// ops_norm.cu — row ops over the last dim: rms_norm, layer_norm (csrc/cpu/ops/norm.cpp) and
// softmax (csrc/cpu/ops/act.cpp). Legend: x f32 [.., H] (R rows), w, b f32 [H].
//   rms_norm:   y = w ⊙ (x · r), r = f32(1 / sqrt(Σx²/H + eps)), Σ in double, products in f32
//   layer_norm: y = f32((x − μ) · inv · w + b) in double, μ and σ² (biased) from double sums
//   softmax:    e = f32 exp(x − max) (max NaN-propagating), y = f32(e / Σe), Σ in double
// One block per row. The double sums are a fixed tree instead of the CPU op's index-order
// loop: the doubles differ in the last bits, which the final f32 rounding almost always hides
// (the tests allow 1 ulp of f32 for that reason). exp is double exp rounded to f32 (the
// correctly rounded expf; glibc's expf is within 1 ulp of it). Non-finite inputs behave as on
// the CPU: NaN enters the statistic and spreads over the row.
#include <cmath>

#include "plugin.h"
#include "reduce.cuh"

namespace dvl_cuda {

using dvl::Tensor;

__global__ void rms_norm_kernel(const float* __restrict__ x, const float* __restrict__ w, float* __restrict__ y, int64_t H,
                                double eps) {
  const float* xr = x + int64_t(blockIdx.x) * H;
  float* yr = y + int64_t(blockIdx.x) * H;
  double ss = 0;
  for (int64_t i = threadIdx.x; i < H; i += blockDim.x) ss += double(xr[i]) * double(xr[i]);
  ss = block_sum(ss);
  const float inv = float(1.0 / sqrt(__dadd_rn(ss / double(H), eps)));
  for (int64_t i = threadIdx.x; i < H; i += blockDim.x) yr[i] = __fmul_rn(w[i], __fmul_rn(xr[i], inv));
}

__global__ void layer_norm_kernel(const float* __restrict__ x, const float* __restrict__ w, const float* __restrict__ b,
                                  float* __restrict__ y, int64_t H, double eps) {
  const float* xr = x + int64_t(blockIdx.x) * H;
  float* yr = y + int64_t(blockIdx.x) * H;
  double s = 0;
  for (int64_t i = threadIdx.x; i < H; i += blockDim.x) s += xr[i];
  const double mu = block_sum(s) / double(H);
  double v = 0;
  for (int64_t i = threadIdx.x; i < H; i += blockDim.x) {
    const double d = __dsub_rn(xr[i], mu);
    v = __dadd_rn(v, __dmul_rn(d, d));
  }
  v = block_sum(v);
  const double inv = 1.0 / sqrt(__dadd_rn(v / double(H), eps));
  for (int64_t i = threadIdx.x; i < H; i += blockDim.x)
    yr[i] = float(__dadd_rn(__dmul_rn(__dmul_rn(__dsub_rn(xr[i], mu), inv), w[i]), b[i]));
}

__global__ void softmax_kernel(const float* __restrict__ x, float* __restrict__ y, int64_t C) {
  const float* xr = x + int64_t(blockIdx.x) * C;
  float* yr = y + int64_t(blockIdx.x) * C;
  float m = -__int_as_float(0x7f800000);
  for (int64_t i = threadIdx.x; i < C; i += blockDim.x) m = nan_max(m, xr[i]);
  m = block_max_nan(m);
  double s = 0;
  for (int64_t i = threadIdx.x; i < C; i += blockDim.x) {
    const float e = float(exp(double(__fsub_rn(xr[i], m))));
    yr[i] = e;
    s += e;
  }
  s = block_sum(s);
  for (int64_t i = threadIdx.x; i < C; i += blockDim.x) yr[i] = float(double(yr[i]) / s);
}

static bool rows_fit(const OpCall& c, int64_t R) {
  if (R <= 0x7fffffff) return true;
  fail(c.err, "DVL_SHAPE", "cuda %s: %lld rows exceed one grid", c.op, (long long)R);
  return false;
}

template <int KIND>  // 0 rms_norm, 1 layer_norm
static dvl_status norm_run(const OpCall& c) {
  const size_t nin = KIND == 0 ? 2 : 3;
  if (!check_io(c, nin, nin, 1)) return 1;
  const Tensor &x = *c.in[0], &y = *c.out[0];
  for (size_t i = 0; i < nin; ++i)
    if (!need_dtype(c, *c.in[i], kF32, i == 0 ? "x" : i == 1 ? "w" : "b")) return 1;
  if (x.shape.empty() || y.shape != x.shape) return fail(c.err, "DVL_SHAPE", "cuda %s: x must have rank >= 1, y x's shape", c.op);
  const int64_t H = x.shape.back(), R = rows_of(x);
  for (size_t i = 1; i < nin; ++i)
    if (c.in[i]->shape.size() != 1 || c.in[i]->shape[0] != H) return fail(c.err, "DVL_SHAPE", "cuda %s: w, b must be [H]", c.op);
  if (H == 0 || R == 0) return 0;
  if (!rows_fit(c, R)) return 1;
  const double eps = c.attrs.norm.eps;
  const int threads = H >= 1024 ? 256 : 128;
  if (KIND == 0)
    rms_norm_kernel<<<unsigned(R), threads, 0, c.stream>>>(dptr<const float>(x), dptr<const float>(*c.in[1]), dptr<float>(y), H, eps);
  else
    layer_norm_kernel<<<unsigned(R), threads, 0, c.stream>>>(dptr<const float>(x), dptr<const float>(*c.in[1]),
                                                             dptr<const float>(*c.in[2]), dptr<float>(y), H, eps);
  return check_launch(c, KIND == 0 ? "rms_norm_kernel" : "layer_norm_kernel");
}

static dvl_status softmax_run(const OpCall& c) {
  if (!check_io(c, 1, 1, 1)) return 1;
  const Tensor &x = *c.in[0], &y = *c.out[0];
  if (!need_dtype(c, x, kF32, "x") || !need_dtype(c, y, kF32, "y")) return 1;
  if (x.shape.empty() || y.shape != x.shape) return fail(c.err, "DVL_SHAPE", "cuda softmax: x must have rank >= 1");
  const int64_t C = x.shape.back(), R = rows_of(x);
  if (C == 0 || R == 0) return 0;
  if (!rows_fit(c, R)) return 1;
  softmax_kernel<<<unsigned(R), C >= 4096 ? 512 : 128, 0, c.stream>>>(dptr<const float>(x), dptr<float>(y), C);
  return check_launch(c, "softmax_kernel");
}

void register_norm(std::vector<OpEntry>& t) {
  t.push_back({dvl::OpId::RmsNorm, kF32, norm_run<0>});
  t.push_back({dvl::OpId::LayerNorm, kF32, norm_run<1>});
  t.push_back({dvl::OpId::Softmax, kF32, softmax_run});
}

}  // namespace dvl_cuda
