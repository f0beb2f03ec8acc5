// ops_rope.cu — rotary position embedding, rotate-half layout (csrc/cpu/ops/rope.cpp, docs §2.4).
//
// rope_cos_sin: positions i32 [T]; attrs theta, dim → cos, sin f32 [T, dim].
//   inv_freq[j] is computed on the host exactly as the CPU op does (same expression, same libm)
//   and passed by value; ang = f32(p · inv_freq[j]); cos/sin are double cos/sin of ang rounded
//   once to f32 (CUDA's double cos/sin are within 2 ulp of a double, so the f32 values equal
//   the CPU op's correctly rounded ones except in astronomically rare ties).
// rope: x f32 [T, nh, hd], cos, sin f32 [T, hd] → y = x·cos + rotate_half(x)·sin, each product
//   and sum a separately rounded f32 operation (no FMA), i.e. bit for bit the CPU op.
#include <cmath>
#include <vector>

#include "plugin.h"

namespace dvl_cuda {

using dvl::Tensor;

static const int kMaxHalf = 512;  // dim ≤ 1024: the table travels as a kernel parameter
struct InvFreq {
  float v[kMaxHalf];
};

__global__ void rope_cos_sin_kernel(const int32_t* __restrict__ pos, const InvFreq f, float* __restrict__ c,
                                    float* __restrict__ s, int64_t T, int64_t half) {
  const int64_t n = T * half;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = i / half, j = i % half;
    const float ang = __fmul_rn(float(pos[t]), f.v[j]);
    double sn, cs;
    sincos(double(ang), &sn, &cs);
    float* cr = c + t * 2 * half;
    float* sr = s + t * 2 * half;
    cr[j] = cr[j + half] = float(cs);
    sr[j] = sr[j + half] = float(sn);
  }
}

__global__ void rope_kernel(const float* __restrict__ x, const float* __restrict__ c, const float* __restrict__ s,
                            float* __restrict__ y, int64_t T, int64_t nh, int64_t hd) {
  const int64_t n = T * nh * hd, half = hd / 2;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t d = i % hd, r = i / hd, t = r / nh;
    const float* xr = x + r * hd;
    const float cv = c[t * hd + d], sv = s[t * hd + d];
    y[i] = d < half ? __fsub_rn(__fmul_rn(xr[d], cv), __fmul_rn(xr[d + half], sv))
                    : __fadd_rn(__fmul_rn(xr[d], cv), __fmul_rn(xr[d - half], sv));
  }
}

static dvl_status rope_cos_sin_run(const OpCall& c) {
  if (!check_io(c, 1, 1, 2)) return 1;
  const Tensor &p = *c.in[0], &co = *c.out[0], &si = *c.out[1];
  if (!need_dtype(c, p, kI32, "positions") || !need_dtype(c, co, kF32, "cos") || !need_dtype(c, si, kF32, "sin")) return 1;
  const double theta = c.attrs.rope.theta;
  const int64_t dim = c.attrs.rope.dim, half = dim / 2;
  if (p.shape.size() != 1 || dim <= 0 || dim % 2) return fail(c.err, "DVL_SHAPE", "cuda rope_cos_sin: positions [T], even dim");
  const int64_t T = p.shape[0];
  if (co.shape != std::vector<int64_t>{T, dim} || si.shape != co.shape)
    return fail(c.err, "DVL_SHAPE", "cuda rope_cos_sin: outputs must be [T, dim]");
  if (half > kMaxHalf) return fail(c.err, "DVL_BACKEND", "cuda rope_cos_sin: dim %lld is above the supported %d", (long long)dim, 2 * kMaxHalf);
  InvFreq f{};
  for (int64_t j = 0; j < half; ++j) {  // the CPU op's expression, evaluated on the host
    const float e = float(2 * j) / float(dim);
    const float pw = float(std::pow(theta, double(e)));
    f.v[j] = 1.f / pw;
  }
  if (T == 0) return 0;
  rope_cos_sin_kernel<<<grid_for(T * half, 256), 256, 0, c.stream>>>(dptr<const int32_t>(p), f, dptr<float>(co), dptr<float>(si), T, half);
  return check_launch(c, "rope_cos_sin_kernel");
}

static dvl_status rope_run(const OpCall& c) {
  if (!check_io(c, 3, 3, 1)) return 1;
  const Tensor &x = *c.in[0], &co = *c.in[1], &si = *c.in[2], &y = *c.out[0];
  for (const Tensor* t : {&x, &co, &si, static_cast<const Tensor*>(&y)})
    if (!need_dtype(c, *t, kF32, "x/cos/sin/y")) return 1;
  if (x.shape.size() != 3 || y.shape != x.shape) return fail(c.err, "DVL_SHAPE", "cuda rope: x must be [T, nh, hd]");
  const int64_t T = x.shape[0], nh = x.shape[1], hd = x.shape[2];
  if (hd % 2 || co.shape != std::vector<int64_t>{T, hd} || si.shape != co.shape)
    return fail(c.err, "DVL_SHAPE", "cuda rope: cos, sin must be [T, hd] with hd even");
  const int64_t n = T * nh * hd;
  if (n == 0) return 0;
  rope_kernel<<<grid_for(n, 256), 256, 0, c.stream>>>(dptr<const float>(x), dptr<const float>(co), dptr<const float>(si), dptr<float>(y), T,
                                                      nh, hd);
  return check_launch(c, "rope_kernel");
}

void register_rope(std::vector<OpEntry>& t) {
  t.push_back({dvl::OpId::RopeCosSin, kI32, rope_cos_sin_run});
  t.push_back({dvl::OpId::Rope, kF32, rope_run});
}

}  // namespace dvl_cuda
