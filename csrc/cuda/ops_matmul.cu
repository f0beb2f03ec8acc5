// ops_matmul.cu — y = x · Wᵀ (+ b) on the GPU (csrc/cpu/ops/matmul.cpp; spec PERFORMANCE.md §c4).
//
// Legend: x f32 [.., K] (M rows after flattening), W f32|bf16|f16 [N, K] as stored in the
// checkpoint, b f32 [N] (optional) → y f32 [.., N]. Activations stay f32, weights are widened
// exactly, accumulation is f32 (FMA), so the result differs from the CPU op only by summation
// order: |Δ| ≲ K·2⁻²⁴·Σ|x·w| (the tests' tolerance, see test/gpu/ops-matmul.test.ts).
//
// Two kernels:
//   small-M (M ≤ 16, decoding): warp per weight row n, all M tokens at once, so W — the whole
//     cost at small M — is streamed exactly once, with 16-byte loads (8 weights per lane per
//     step) when K is a multiple of 8, scalar loads otherwise. x (M·K floats) is re-read by
//     every warp from L1/L2. Templated on the token count rounded up to 1/2/4/8/16 so the
//     accumulators stay in registers.
//   tiled (M > 16, prefill): 64×64 output tile per 256-thread block, K in steps of 16 through
//     shared memory (weights converted to f32 on the way in), 4×4 outputs per thread.
// Not here yet (PERFORMANCE.md §c4): split-K for small N, tensor cores (mma.sync m16n8k16 with
// the tokens on the n8 side) — both are throughput work on top of these correct kernels.
#include <cstdint>

#include "dtype.cuh"
#include "plugin.h"

namespace dvl_cuda {

using dvl::DType;
using dvl::Tensor;

// 8 consecutive weights starting at element k of row w (16-byte aligned for 16-bit types,
// 32-byte for f32), widened to f32.
template <int DT>
__device__ __forceinline__ void load8(const void* w, int64_t k, float* o) {
  if (DT == int(DType::F32)) {
    const float4* p = reinterpret_cast<const float4*>(static_cast<const float*>(w) + k);
    float4 a = __ldg(p), b = __ldg(p + 1);
    o[0] = a.x, o[1] = a.y, o[2] = a.z, o[3] = a.w, o[4] = b.x, o[5] = b.y, o[6] = b.z, o[7] = b.w;
  } else {
    uint4 v = __ldg(reinterpret_cast<const uint4*>(static_cast<const uint16_t*>(w) + k));
    const uint32_t u[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const uint16_t lo = uint16_t(u[i] & 0xffffu), hi = uint16_t(u[i] >> 16);
      o[2 * i] = DT == int(DType::BF16) ? d_bf16_to_f32(lo) : d_f16_to_f32(lo);
      o[2 * i + 1] = DT == int(DType::BF16) ? d_bf16_to_f32(hi) : d_f16_to_f32(hi);
    }
  }
}

template <int MT, int DT, bool VEC>
__global__ void __launch_bounds__(256) matmul_small_kernel(const float* __restrict__ x, const void* __restrict__ w,
                                                           const float* __restrict__ bias, float* __restrict__ y, int M,
                                                           int64_t K, int64_t N) {
  const int lane = threadIdx.x & 31;
  const int64_t n = int64_t(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (n >= N) return;
  const size_t es = DT == int(DType::F32) ? 4 : 2;
  const void* wr = static_cast<const char*>(w) + size_t(n) * size_t(K) * es;
  float acc[MT];
#pragma unroll
  for (int m = 0; m < MT; ++m) acc[m] = 0.f;
  if (VEC) {
    for (int64_t k = int64_t(lane) * 8; k < K; k += 256) {
      float wv[8];
      load8<DT>(wr, k, wv);
#pragma unroll
      for (int m = 0; m < MT; ++m) {
        if (m < M) {
          const float4* xp = reinterpret_cast<const float4*>(x + int64_t(m) * K + k);
          const float4 a = xp[0], b = xp[1];
          acc[m] = fmaf(a.x, wv[0], acc[m]);
          acc[m] = fmaf(a.y, wv[1], acc[m]);
          acc[m] = fmaf(a.z, wv[2], acc[m]);
          acc[m] = fmaf(a.w, wv[3], acc[m]);
          acc[m] = fmaf(b.x, wv[4], acc[m]);
          acc[m] = fmaf(b.y, wv[5], acc[m]);
          acc[m] = fmaf(b.z, wv[6], acc[m]);
          acc[m] = fmaf(b.w, wv[7], acc[m]);
        }
      }
    }
  } else {
    for (int64_t k = lane; k < K; k += 32) {
      const float wv = d_load(wr, DT, k);
#pragma unroll
      for (int m = 0; m < MT; ++m)
        if (m < M) acc[m] = fmaf(x[int64_t(m) * K + k], wv, acc[m]);
    }
  }
#pragma unroll
  for (int m = 0; m < MT; ++m) {
    float v = acc[m];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    acc[m] = v;
  }
  if (lane == 0) {
    const float bv = bias ? bias[n] : 0.f;
#pragma unroll
    for (int m = 0; m < MT; ++m)
      if (m < M) y[int64_t(m) * N + n] = bias ? acc[m] + bv : acc[m];
  }
}

// Tiled kernel: block (bm, bn) computes y[bm·64 .. +64, bn·64 .. +64]; thread (ty, tx) of 16×16
// owns rows ty + 16i and columns tx + 16j (i, j < 4), so shared-memory reads are conflict-free.
template <int DT>
__global__ void __launch_bounds__(256) matmul_tiled_kernel(const float* __restrict__ x, const void* __restrict__ w,
                                                           const float* __restrict__ bias, float* __restrict__ y, int64_t M,
                                                           int64_t K, int64_t N) {
  __shared__ float xs[16][64 + 1];  // [k][m]
  __shared__ float ws[16][64 + 1];  // [k][n]
  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
  const int64_t m0 = int64_t(blockIdx.y) * 64, n0 = int64_t(blockIdx.x) * 64;
  float acc[4][4] = {};
  for (int64_t k0 = 0; k0 < K; k0 += 16) {
    // 64 rows × 16 k of x and of W: 1024 values each, 4 per thread; k fastest for coalescing.
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const int e = threadIdx.x + r * 256, kk = e & 15, rr = e >> 4;
      const int64_t k = k0 + kk, m = m0 + rr, n = n0 + rr;
      xs[kk][rr] = (m < M && k < K) ? x[m * K + k] : 0.f;
      ws[kk][rr] = (n < N && k < K) ? d_load(w, DT, n * K + k) : 0.f;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < 16; ++kk) {
      float a[4], b[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) a[i] = xs[kk][ty + 16 * i];
#pragma unroll
      for (int j = 0; j < 4; ++j) b[j] = ws[kk][tx + 16 * j];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t m = m0 + ty + 16 * i;
    if (m >= M) continue;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t n = n0 + tx + 16 * j;
      if (n < N) y[m * N + n] = bias ? acc[i][j] + bias[n] : acc[i][j];
    }
  }
}

template <int DT>
static void launch_small(cudaStream_t s, const float* x, const void* w, const float* b, float* y, int M, int64_t K, int64_t N) {
  const bool vec = K % 8 == 0;
  const unsigned blocks = unsigned((N + 7) / 8);
#define DVL_SMALL(MT)                                                                                          \
  (vec ? matmul_small_kernel<MT, DT, true><<<blocks, 256, 0, s>>>(x, w, b, y, M, K, N)                         \
       : matmul_small_kernel<MT, DT, false><<<blocks, 256, 0, s>>>(x, w, b, y, M, K, N))
  if (M <= 1) DVL_SMALL(1);
  else if (M <= 2) DVL_SMALL(2);
  else if (M <= 4) DVL_SMALL(4);
  else if (M <= 8) DVL_SMALL(8);
  else DVL_SMALL(16);
#undef DVL_SMALL
}

static dvl_status matmul_run(const OpCall& c) {
  if (!check_io(c, 2, 3, 1)) return 1;
  const Tensor &x = *c.in[0], &w = *c.in[1], &y = *c.out[0];
  const Tensor* b = c.n_in == 3 ? c.in[2] : nullptr;
  if (!need_dtype(c, x, kF32, "x") || !need_dtype(c, w, kFloats, "W") || !need_dtype(c, y, kF32, "y")) return 1;
  if (b && !need_dtype(c, *b, kF32, "bias")) return 1;
  if (x.shape.empty() || w.shape.size() != 2 || x.shape.back() != w.shape[1])
    return fail(c.err, "DVL_SHAPE", "cuda matmul: x [.., K], W [N, K]");
  const int64_t M = rows_of(x), K = w.shape[1], N = w.shape[0];
  if (y.shape.size() != x.shape.size() || y.shape.back() != N || rows_of(y) != M) return fail(c.err, "DVL_SHAPE", "cuda matmul: y [.., N]");
  if (b && (b->shape.size() != 1 || b->shape[0] != N)) return fail(c.err, "DVL_SHAPE", "cuda matmul: bias [N]");
  if (M == 0 || N == 0) return 0;
  if (K == 0) {  // empty sum: y = bias or 0
    cudaError_t e = cudaMemsetAsync(y.storage->data, 0, size_t(M * N) * 4, c.stream);
    if (e != cudaSuccess) return fail_cuda(c.err, e, "cuda matmul: memset");
    if (!b) return 0;
    // add the bias row to each of the M rows through the tiled kernel with K = 0 (acc = 0).
  }
  const float* xp = dptr<const float>(x);
  const float* bp = b ? dptr<const float>(*b) : nullptr;
  float* yp = dptr<float>(y);
  const void* wp = w.storage->data;
  if (M <= 16 && K > 0) {
    if (w.dtype == DType::F32) launch_small<int(DType::F32)>(c.stream, xp, wp, bp, yp, int(M), K, N);
    else if (w.dtype == DType::BF16) launch_small<int(DType::BF16)>(c.stream, xp, wp, bp, yp, int(M), K, N);
    else launch_small<int(DType::F16)>(c.stream, xp, wp, bp, yp, int(M), K, N);
    return check_launch(c, "matmul_small_kernel");
  }
  if ((M + 63) / 64 > 65535) return fail(c.err, "DVL_SHAPE", "cuda matmul: M = %lld is above one grid's 65535·64 rows", (long long)M);
  dim3 grid(unsigned((N + 63) / 64), unsigned((M + 63) / 64));
  if (w.dtype == DType::F32) matmul_tiled_kernel<int(DType::F32)><<<grid, 256, 0, c.stream>>>(xp, wp, bp, yp, M, K, N);
  else if (w.dtype == DType::BF16) matmul_tiled_kernel<int(DType::BF16)><<<grid, 256, 0, c.stream>>>(xp, wp, bp, yp, M, K, N);
  else matmul_tiled_kernel<int(DType::F16)><<<grid, 256, 0, c.stream>>>(xp, wp, bp, yp, M, K, N);
  return check_launch(c, "matmul_tiled_kernel");
}

void register_matmul(std::vector<OpEntry>& t) { t.push_back({"matmul", kF32, matmul_run}); }

}  // namespace dvl_cuda
