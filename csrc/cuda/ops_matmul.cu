// ops_matmul.cu — y = x · Wᵀ (+ b) on the GPU (csrc/cpu/ops/matmul.cpp; spec PERFORMANCE.md §c4).
//
// Legend: x f32 [.., K] (M rows after flattening), W f32|bf16|f16 [N, K] as stored in the
// checkpoint, b f32 [N] (optional) → y f32 [.., N]. Activations stay f32, weights are widened
// exactly, accumulation is f32 (FMA), so the result differs from the CPU op only by summation
// order: |Δ| ≲ K·2⁻²⁴·Σ|x·w| (the tests' tolerance, see test/gpu/ops-matmul.test.ts).
//
// Two kernels:
//   small-M (M ≤ 16, decoding): all M tokens at once, so W — the whole cost at small M — is
//     streamed exactly once, with 16-byte loads (8 weights per lane per step); each warp owns
//     RW weight rows (4, or 2 at M > 8) and the block's 8 warps share one shared-memory copy of
//     the x chunk; split-K over blockIdx.y when N alone gives fewer than 2 blocks per SM, with
//     a deterministic second pass adding the splits in order. Templated on the token count
//     rounded up to 1/2/4/8/16 so the accumulators stay in registers. K not a multiple of 8
//     (no real layer) takes a scalar warp-per-row kernel.
//   tiled (M > 16, prefill): 64×64 output tile per 256-thread block, K in steps of 16 through
//     shared memory (weights converted to f32 on the way in), 4×4 outputs per thread.
// Not here yet (PERFORMANCE.md §c4): tensor cores (mma.sync m16n8k16 with the tokens on the n8
// side) for the small-M kernel, and a tensor-core / cp.async tiled kernel for prefill.
#include <algorithm>
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

// Small-M, K % 8 == 0 (every real layer): a block of 8 warps owns 8·RW consecutive weight rows
// and one K range (split-K: blockIdx.y). Per chunk of kKC columns the block stages x[0..M, chunk]
// in shared memory once (so x is read from L2 once per block, not once per row); each lane then
// takes 8 consecutive columns per step, loads them for all RW rows (RW independent 16-byte
// loads in flight) and accumulates RW × MT dot products in registers. Lanes are reduced with
// shuffles at the end; with split-K the partial sums go to `part` [splits, M, N] and
// matmul_splitk_reduce adds them in split order (deterministic) plus the bias.
static const int kKC = 512;  // columns per shared-memory chunk (MT·kKC·4 bytes: 32 KiB at MT 16)

template <int MT, int RW, int DT>
__global__ void __launch_bounds__(256) matmul_small_vec_kernel(const float* __restrict__ x, const void* __restrict__ w,
                                                               const float* __restrict__ bias, float* __restrict__ y,
                                                               float* __restrict__ part, int M, int64_t K, int64_t N,
                                                               int64_t ksplit) {
  __shared__ __align__(16) float xs[MT][kKC];
  const int lane = threadIdx.x & 31;
  const int64_t n0 = (int64_t(blockIdx.x) * 8 + (threadIdx.x >> 5)) * RW;
  const int64_t kb = int64_t(blockIdx.y) * ksplit, ke = kb + ksplit < K ? kb + ksplit : K;
  const size_t es = DT == int(DType::F32) ? 4 : 2;
  float acc[RW][MT];
#pragma unroll
  for (int r = 0; r < RW; ++r)
#pragma unroll
    for (int m = 0; m < MT; ++m) acc[r][m] = 0.f;
  for (int64_t kc = kb; kc < ke; kc += kKC) {
    const int len = int(ke - kc < kKC ? ke - kc : kKC);  // a multiple of 8
    __syncthreads();  // the previous chunk is consumed
    for (int e = threadIdx.x; e < MT * (kKC / 4); e += 256) {
      const int m = e / (kKC / 4), q4 = (e % (kKC / 4)) * 4;
      float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
      if (m < M && q4 < len) v = *reinterpret_cast<const float4*>(x + int64_t(m) * K + kc + q4);
      *reinterpret_cast<float4*>(&xs[m][q4]) = v;
    }
    __syncthreads();
    for (int kk = lane * 8; kk < len; kk += 256) {
      float wv[RW][8];
#pragma unroll
      for (int r = 0; r < RW; ++r) {
        if (n0 + r < N) {
          load8<DT>(static_cast<const char*>(w) + size_t(n0 + r) * size_t(K) * es, kc + kk, wv[r]);
        } else {
#pragma unroll
          for (int i = 0; i < 8; ++i) wv[r][i] = 0.f;
        }
      }
#pragma unroll
      for (int m = 0; m < MT; ++m) {
        if (m < M) {
          const float4 a = *reinterpret_cast<const float4*>(&xs[m][kk]), b = *reinterpret_cast<const float4*>(&xs[m][kk + 4]);
#pragma unroll
          for (int r = 0; r < RW; ++r) {
            float t = acc[r][m];
            t = fmaf(a.x, wv[r][0], t);
            t = fmaf(a.y, wv[r][1], t);
            t = fmaf(a.z, wv[r][2], t);
            t = fmaf(a.w, wv[r][3], t);
            t = fmaf(b.x, wv[r][4], t);
            t = fmaf(b.y, wv[r][5], t);
            t = fmaf(b.z, wv[r][6], t);
            t = fmaf(b.w, wv[r][7], t);
            acc[r][m] = t;
          }
        }
      }
    }
  }
#pragma unroll
  for (int r = 0; r < RW; ++r)
#pragma unroll
    for (int m = 0; m < MT; ++m) {
      float v = acc[r][m];
      for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
      const int64_t n = n0 + r;
      if (lane == 0 && m < M && n < N) {
        if (part) part[(int64_t(blockIdx.y) * M + m) * N + n] = v;
        else y[int64_t(m) * N + n] = bias ? v + bias[n] : v;
      }
    }
}

__global__ void matmul_splitk_reduce(const float* __restrict__ part, const float* __restrict__ bias, float* __restrict__ y,
                                     int64_t M, int64_t N, int splits) {
  const int64_t MN = M * N;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < MN; i += int64_t(gridDim.x) * blockDim.x) {
    float v = 0.f;
    for (int s = 0; s < splits; ++s) v += part[int64_t(s) * MN + i];
    y[i] = bias ? v + bias[i % N] : v;
  }
}

// Small-M, K not a multiple of 8 (odd test shapes only): warp per weight row, scalar loads.
template <int MT, int DT>
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
  for (int64_t k = lane; k < K; k += 32) {
    const float wv = d_load(wr, DT, k);
#pragma unroll
    for (int m = 0; m < MT; ++m)
      if (m < M) acc[m] = fmaf(x[int64_t(m) * K + k], wv, acc[m]);
  }
#pragma unroll
  for (int m = 0; m < MT; ++m) {
    float v = acc[m];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    acc[m] = v;
  }
  if (lane == 0) {
#pragma unroll
    for (int m = 0; m < MT; ++m)
      if (m < M) y[int64_t(m) * N + n] = bias ? acc[m] + bias[n] : acc[m];
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


template <int MT, int RW, int DT>
static dvl_status launch_small_vec(const OpCall& c, const float* x, const void* w, const float* b, float* y, int M, int64_t K,
                                   int64_t N) {
  const int64_t bx = (N + 8 * RW - 1) / (8 * RW);
  // Split K until there are ≥ 2 blocks per SM (a small N alone cannot keep HBM busy), keeping
  // each split ≥ 2 chunks and the count ≤ 32; splits are whole chunks so the x tiles stay aligned.
  int64_t splits = 1;
  const int64_t want = 2 * int64_t(sm_count(c.device));
  if (bx < want) splits = std::min<int64_t>({(want + bx - 1) / bx, std::max<int64_t>(1, K / (2 * kKC)), 32});
  int64_t ksplit = (K + splits - 1) / splits;
  ksplit = (ksplit + kKC - 1) / kKC * kKC;
  splits = (K + ksplit - 1) / ksplit;
  if (bx > 0x7fffffff) return fail(c.err, "DVL_SHAPE", "cuda matmul: N too large for one grid");
  float* part = nullptr;
  if (splits > 1) {
    cudaError_t e = cudaMallocAsync(reinterpret_cast<void**>(&part), size_t(splits * M * N) * 4, c.stream);
    if (e != cudaSuccess) return fail_cuda(c.err, e, "cuda matmul: split-K scratch");
  }
  matmul_small_vec_kernel<MT, RW, DT><<<dim3(unsigned(bx), unsigned(splits)), 256, 0, c.stream>>>(x, w, b, y, part, M, K, N, ksplit);
  dvl_status st = check_launch(c, "matmul_small_vec_kernel");
  if (!st && part) {
    matmul_splitk_reduce<<<grid_for(int64_t(M) * N, 256), 256, 0, c.stream>>>(part, b, y, M, N, int(splits));
    st = check_launch(c, "matmul_splitk_reduce");
  }
  if (part) cudaFreeAsync(part, c.stream);
  return st;
}

template <int DT>
static dvl_status launch_small(const OpCall& c, const float* x, const void* w, const float* b, float* y, int M, int64_t K,
                               int64_t N) {
  if (K % 8 == 0) {
    if (M <= 1) return launch_small_vec<1, 4, DT>(c, x, w, b, y, M, K, N);
    if (M <= 2) return launch_small_vec<2, 4, DT>(c, x, w, b, y, M, K, N);
    if (M <= 4) return launch_small_vec<4, 4, DT>(c, x, w, b, y, M, K, N);
    if (M <= 8) return launch_small_vec<8, 4, DT>(c, x, w, b, y, M, K, N);
    return launch_small_vec<16, 2, DT>(c, x, w, b, y, M, K, N);
  }
  const unsigned blocks = unsigned((N + 7) / 8);
  if (M <= 1) matmul_small_kernel<1, DT><<<blocks, 256, 0, c.stream>>>(x, w, b, y, M, K, N);
  else if (M <= 2) matmul_small_kernel<2, DT><<<blocks, 256, 0, c.stream>>>(x, w, b, y, M, K, N);
  else if (M <= 4) matmul_small_kernel<4, DT><<<blocks, 256, 0, c.stream>>>(x, w, b, y, M, K, N);
  else if (M <= 8) matmul_small_kernel<8, DT><<<blocks, 256, 0, c.stream>>>(x, w, b, y, M, K, N);
  else matmul_small_kernel<16, DT><<<blocks, 256, 0, c.stream>>>(x, w, b, y, M, K, N);
  return check_launch(c, "matmul_small_kernel");
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
    if (w.dtype == DType::F32) return launch_small<int(DType::F32)>(c, xp, wp, bp, yp, int(M), K, N);
    if (w.dtype == DType::BF16) return launch_small<int(DType::BF16)>(c, xp, wp, bp, yp, int(M), K, N);
    return launch_small<int(DType::F16)>(c, xp, wp, bp, yp, int(M), K, N);
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
