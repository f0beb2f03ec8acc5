// ops_elementwise.cu — elementwise ops: mul, scale, convert (csrc/cpu/ops/basic.cpp) and the
// activations silu, swiglu, gelu, gelu_tanh (csrc/cpu/ops/act.cpp). Same contracts:
//   mul:       f32 a [.., N] ⊙ f32 b of a's shape or b [N] broadcast over the rows
//   scale:     f32 x · attr s (rounded to f32 first, as the CPU op does)
//   convert:   f32|bf16|f16 → attr dtype (the output's dtype), round to nearest even
//   silu(x) = x / (1 + e^−x); swiglu(g, u) = silu(g)·u; gelu(x) = x/2 · erfc(−x/√2);
//   gelu_tanh(x) = x / (1 + e^(−2u)), u = √(2/π)(x + 0.044715x³)
// The CPU op evaluates each step in f32 with libm's expf / erfcf (glibc: correctly rounded or
// within 1 ulp). Here the transcendental is evaluated in double and rounded once to f32 (so it
// is the correctly rounded value) and every other step is an explicit round-to-nearest f32
// operation (__fadd_rn etc., no FMA contraction): the result equals the CPU op's except where
// glibc's f32 function is not correctly rounded (≤ 1 ulp of the intermediate).
#include <cmath>
#include <string>

#include "dtype.cuh"
#include "plugin.h"

namespace dvl_cuda {

using dvl::DType;
using dvl::Tensor;

__global__ void mul_kernel(const float* __restrict__ a, const float* __restrict__ b, float* __restrict__ y, int64_t n,
                           int64_t nb) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = __fmul_rn(a[i], b[nb == n ? i : i % nb]);
}

__global__ void scale_kernel(const float* __restrict__ x, float s, float* __restrict__ y, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = __fmul_rn(x[i], s);
}

__global__ void convert_kernel(const void* __restrict__ x, int dx, void* __restrict__ y, int dy, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    d_store(y, dy, i, d_load(x, dx, i));
}

__device__ __forceinline__ float silu_d(float x) {
  const float e = float(exp(-double(x)));
  return __fdiv_rn(x, __fadd_rn(1.f, e));
}
__device__ __forceinline__ float gelu_d(float x) {
  const float a = __fmul_rn(-x, 0.70710678118654752f);
  return __fmul_rn(__fmul_rn(0.5f, x), float(erfc(double(a))));
}
__device__ __forceinline__ float gelu_tanh_d(float x) {
  // u2 = 2·0.79788456·(x + 0.044715·x·x·x), in the CPU op's f32 evaluation order.
  const float x3 = __fmul_rn(__fmul_rn(__fmul_rn(0.044715f, x), x), x);
  const float u2 = __fmul_rn(__fmul_rn(2.f, 0.79788456080286536f), __fadd_rn(x, x3));
  return __fdiv_rn(x, __fadd_rn(1.f, float(exp(-double(u2)))));
}

template <int KIND>  // 0 silu, 1 gelu, 2 gelu_tanh, 3 swiglu (u = second input)
__global__ void act_kernel(const float* __restrict__ x, const float* __restrict__ u, float* __restrict__ y, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const float v = x[i];
    float r;
    if (KIND == 0) r = silu_d(v);
    else if (KIND == 1) r = gelu_d(v);
    else if (KIND == 2) r = gelu_tanh_d(v);
    else r = __fmul_rn(silu_d(v), u[i]);
    y[i] = r;
  }
}

static dvl_status mul_run(const OpCall& c) {
  if (!check_io(c, 2, 2, 1)) return 1;
  const Tensor &a = *c.in[0], &b = *c.in[1], &y = *c.out[0];
  if (!need_dtype(c, a, kF32, "a") || !need_dtype(c, b, kF32, "b") || !need_dtype(c, y, kF32, "y")) return 1;
  const int64_t n = numel(a), nb = numel(b);
  const bool bcast = b.shape.size() == 1 && !a.shape.empty() && b.shape[0] == a.shape.back();
  if ((a.shape != b.shape && !bcast) || y.shape != a.shape) return fail(c.err, "DVL_SHAPE", "cuda mul: b must have a's shape or be [N]");
  if (n == 0) return 0;
  mul_kernel<<<grid_for(n, 256), 256, 0, c.stream>>>(dptr<const float>(a), dptr<const float>(b), dptr<float>(y), n, nb);
  return check_launch(c, "mul_kernel");
}

static dvl_status scale_run(const OpCall& c) {
  if (!check_io(c, 1, 1, 1)) return 1;
  const Tensor &x = *c.in[0], &y = *c.out[0];
  if (!need_dtype(c, x, kF32, "x") || !need_dtype(c, y, kF32, "y")) return 1;
  if (y.shape != x.shape) return fail(c.err, "DVL_SHAPE", "cuda scale: y must have x's shape");
  const int64_t n = numel(x);
  if (n == 0) return 0;
  scale_kernel<<<grid_for(n, 256), 256, 0, c.stream>>>(dptr<const float>(x), float(c.attrs.scale), dptr<float>(y), n);
  return check_launch(c, "scale_kernel");
}

static dvl_status convert_run(const OpCall& c) {
  if (!check_io(c, 1, 1, 1)) return 1;
  const Tensor &x = *c.in[0], &y = *c.out[0];
  if (!need_dtype(c, x, kFloats, "x") || !need_dtype(c, y, kFloats, "y")) return 1;
  if (y.shape != x.shape) return fail(c.err, "DVL_SHAPE", "cuda convert: y must have x's shape");
  const int64_t n = numel(x);
  if (n == 0) return 0;
  if (x.dtype == y.dtype) {
    cudaError_t e = cudaMemcpyAsync(y.storage->data, x.storage->data, size_t(n) * dvl::dtype_size(x.dtype),
                                    cudaMemcpyDeviceToDevice, c.stream);
    return e == cudaSuccess ? 0 : fail_cuda(c.err, e, "cuda convert: copy");
  }
  convert_kernel<<<grid_for(n, 256), 256, 0, c.stream>>>(x.storage->data, int(x.dtype), y.storage->data, int(y.dtype), n);
  return check_launch(c, "convert_kernel");
}

template <int KIND>
static dvl_status act_run(const OpCall& c) {
  const size_t nin = KIND == 3 ? 2 : 1;
  if (!check_io(c, nin, nin, 1)) return 1;
  const Tensor &x = *c.in[0], &y = *c.out[0];
  if (!need_dtype(c, x, kF32, "x") || !need_dtype(c, y, kF32, "y")) return 1;
  if (KIND == 3 && (!need_dtype(c, *c.in[1], kF32, "up") || c.in[1]->shape != x.shape))
    return fail(c.err, "DVL_SHAPE", "cuda swiglu: gate and up must have the same shape");
  if (y.shape != x.shape) return fail(c.err, "DVL_SHAPE", "cuda %s: y must have x's shape", c.op);
  const int64_t n = numel(x);
  if (n == 0) return 0;
  act_kernel<KIND><<<grid_for(n, 256), 256, 0, c.stream>>>(dptr<const float>(x), KIND == 3 ? dptr<const float>(*c.in[1]) : nullptr,
                                                           dptr<float>(y), n);
  return check_launch(c, "act_kernel");
}

void register_elementwise(std::vector<OpEntry>& t) {
  t.push_back({dvl::OpId::Mul, kF32, mul_run});
  t.push_back({dvl::OpId::Scale, kF32, scale_run});
  t.push_back({dvl::OpId::Convert, kFloats, convert_run});
  t.push_back({dvl::OpId::Silu, kF32, act_run<0>});
  t.push_back({dvl::OpId::Gelu, kF32, act_run<1>});
  t.push_back({dvl::OpId::GeluTanh, kF32, act_run<2>});
  t.push_back({dvl::OpId::Swiglu, kF32, act_run<3>});
}

}  // namespace dvl_cuda
