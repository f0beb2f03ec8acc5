// ops_matmul.cu — y = x · Wᵀ (+ b) on the GPU (csrc/cpu/ops/matmul.cpp; docs/performance.md §c4).
//
// Legend: x f32 [.., K] (M rows after flattening), W f32|bf16|f16 [N, K] as stored in the
// checkpoint, b f32 [N] (optional) → y f32 [.., N]. Activations stay f32, weights are widened
// exactly, accumulation is f32, so the result differs from the CPU op only by rounding order:
// CUDA-core path |Δ| ≲ (K + 1)·2⁻²⁴·Σ|x·w|, tensor-core path (⌈K/8⌉ + 28)·2⁻²⁴·Σ|x·w| (derived
// below, "Tensor cores"); the tests hold each path to its bound (selftest_ops.inc,
// test/gpu/ops-matmul.test.ts).
//
// Tensor-core kernels (bf16/f16 weights on sm_80+, the default there):
//   small-M (M ≤ 16): one 16-row (8 when M ≤ 8) token tile; each warp streams 16 weight rows
//     (two n8 slices) with 16-byte loads, two 32-column steps (4 loads per lane) in flight,
//     the next step's weights loaded while this one multiplies; x is staged per 256-column
//     chunk in shared memory, already split into tf32 hi/lo; split-K over blockIdx.y with the
//     deterministic matmul_splitk_reduce when N alone gives < 2 blocks per SM.
//   tiled (M > 16, prefill): 64×64 output tile per 128-thread block (2×2 warps of 32×32), K in
//     steps of 32 through a 2-stage cp.async shared-memory pipeline (x f32, W as stored).
//   Both use mma.sync m16n8k8 tf32 with the split-activation trick; the layout, the k
//   permutation are in mma_tf32.cuh, the error bound at split_tf32 below.
//   DIFFUSIONVL_CUDA_MATMUL=simt forces the CUDA-core kernels (A/B in the bench), read per call.
//
// CUDA-core kernels (f32 weights, GPUs below sm_80, and K = 0):
//   small-M (M ≤ 16, decoding): all M tokens at once, so W — the whole cost at small M — is
//     streamed exactly once, with 16-byte loads (8 weights per lane per step); each warp owns
//     RW weight rows (4, or 2 at M > 8) and the block's 8 warps share one shared-memory copy of
//     the x chunk; split-K over blockIdx.y when N alone gives fewer than 2 blocks per SM, with
//     a deterministic second pass adding the splits in order. Templated on the token count
//     rounded up to 1/2/4/8/16 so the accumulators stay in registers. K not a multiple of 8
//     (no real layer) takes a scalar warp-per-row kernel.
//   tiled (M > 16, prefill): 64×64 output tile per 256-thread block, K in steps of 16 through
//     shared memory (weights converted to f32 on the way in), 4×4 outputs per thread.
// Not here yet (docs/performance.md §c4): fused epilogues (bias+activation, residual), wgmma (sm_90a)
// for large prefill, and f32 weights on tensor cores (they would need a 3-way split of W too).
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "dtype.cuh"
#include "mma_tf32.cuh"
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


// ---- Tensor cores: mma.sync m16n8k8 tf32 with split f32 activations (sm_80+) ----------------
//
// Fragment layout (Mma1688), the k permutation (perm_col, frag_a_half / frag_a_elem /
// frag_b_elem): mma_tf32.cuh, with the PTX table and where it was checked.
//
// Numerics (why the tensor-core path keeps the f32-activation contract). u = 2⁻²⁴.
//  1. split_tf32: x = hi + lo + r, hi = rna_tf32(x) (11 significant bits), x − hi is exact in f32
//     (Sterbenz) and |x − hi| ≤ 2⁻¹¹|x|, lo = rna_tf32(x − hi), so |r| ≤ 2⁻¹¹·|x − hi| ≤ 2⁻²²|x|
//     = 4u|x| (the overflow fallback below is within a factor 1 + 2⁻¹⁰ of that).
//  2. bf16 (8 significant bits) and f16 (11 bits, exponent inside f32's) weights are exact tf32
//     values, and hi·w, lo·w have ≤ 22 significant bits: every product is exact.
//  3. One mma instruction D = C + Σ_{8} p: the PTX ISA promises only "accumulation with at least
//     single precision; order, rounding and subnormal handling unspecified". Model (the reading
//     of "at least single precision" that allows the worst hardware behaviour reported, Fasi et
//     al. 2021 PeerJ CS 7:e330 for A100; Khattak & Mikaitis arXiv 2512.07004 model H100 too):
//     all addends (C included) aligned to the largest, each keeping ≥ 24 bits, the sum truncated
//     (not rounded) to f32, in up to two stages of 4 products: |err| ≤ (4+1)·2⁻²³·S per stage,
//     ≤ 20u·S per instruction, S = |C| + Σ|p|. Not measured on hardware here.
//  4. Per 8 columns: D = mma(lo, W, 0) then D = mma(hi, W, D) — the lo products (≤ 2⁻¹¹ of the
//     hi ones) go first so they ride in the same instruction: ≤ 20u·(1 + 2⁻¹⁰)·Σ_8|x·w|
//     (+ 0.01u from the lo pass) ≤ 21u·Σ_8|x·w|. That D is added to the running f32 accumulator
//     with an ordinary FADD (round to nearest), never chained through the tensor core, so the
//     truncation does not compound with K.
//  5. FADD chain over ⌈K/8⌉ groups, split-K partials added in split order (depth ≤ ⌈K/8⌉ + 1
//     for any split count ≤ ⌈K/8⌉), + bias: ≤ (⌈K/8⌉ + 1)·u·(1.001·Σ|x·w| + |b|).
//  Total: |y − y_exact| ≤ (4 + 21 + ⌈K/8⌉ + 1 + 2)·u·(Σ|x·w| + |b|) = (⌈K/8⌉ + 28)·2⁻²⁴·(Σ|x·w| + |b|)
//  (the +2 absorbs the 1.001 and (1 + 2⁻¹⁰) factors up to K = 16k), i.e. ~2⁻²² per product
//  plus f32 summation of K/8 group sums: below the CUDA-core path's (K + 1)·u once K ≥ 32. If
//  the hardware flushes subnormal tf32 inputs (unspecified), add 2⁻¹²⁶·Σ(|x| + |w|) absolute.
//  NaN: a NaN x or w reaches every output it touches (hi carries it, lo = 0); ±Inf in x gives
//  ±Inf·w as on the CPU. Known deviation: an infinite WEIGHT meets a tf32-exact activation's
//  lo = 0 (0·Inf = NaN) where the CPU gives ±Inf — checkpoints have no infinite weights.
__device__ __forceinline__ uint32_t tf32_rna(float x) {
  uint32_t r = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
#endif
  return r;
}

__device__ __forceinline__ void split_tf32(float x, uint32_t& hi, uint32_t& lo) {
  uint32_t h = tf32_rna(x);
  if (!isfinite(__uint_as_float(h))) {  // hi is ±Inf or NaN
    if (x != x) h = 0x7fffffffu;                            // canonical NaN: payload in the tf32 bits
    else if (fabsf(x) != __int_as_float(0x7f800000)) h = __float_as_uint(x) & 0xffffe000u;  // rna overflowed: truncate
    else h = __float_as_uint(x);                            // ±Inf
  }
  hi = h;
  const float hf = __uint_as_float(h);
  lo = isfinite(hf) ? tf32_rna(x - hf) : 0u;  // hi finite: x − hi exact; else hi carries it all
}

// d = a·b + c on one m16n8k8 tile (layout: Mma1688).
__device__ __forceinline__ void mma_tf32(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2], const float (&c)[4]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%11,%12,%13};"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
#endif
}

// One 8-column group: acc += (lo·W) + (hi·W), lo first (numerics, item 4).
__device__ __forceinline__ void mma_split_acc(float (&acc)[4], const uint32_t (&ahi)[4], const uint32_t (&alo)[4],
                                              const uint32_t (&b)[2]) {
  const float zero[4] = {0.f, 0.f, 0.f, 0.f};
  float d[4];
  mma_tf32(d, alo, b, zero);
  mma_tf32(d, ahi, b, d);
#pragma unroll
  for (int i = 0; i < 4; ++i) acc[i] += d[i];
}

// 8 weights as stored (a uint4 of 16-bit values, element e in half e & 1 of word e >> 1) →
// their exact tf32 bit patterns.
template <int DT>
__device__ __forceinline__ void w8_to_tf32(const uint4 v, uint32_t (&o)[8]) {
  const uint32_t u[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    if (DT == int(DType::BF16)) {
      o[2 * i] = u[i] << 16;
      o[2 * i + 1] = u[i] & 0xffff0000u;
    } else {
      o[2 * i] = __float_as_uint(__half2float(__ushort_as_half(uint16_t(u[i] & 0xffffu))));
      o[2 * i + 1] = __float_as_uint(__half2float(__ushort_as_half(uint16_t(u[i] >> 16))));
    }
  }
}

// 16 bytes of a weight row, streamed: not kept in L1, the 256-byte L2 line around it prefetched.
__device__ __forceinline__ uint4 ld_stream16(const void* p) {
  uint4 v;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0,%1,%2,%3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
#else
  v = make_uint4(0, 0, 0, 0);
#endif
  return v;
}

// W[row][k .. k+8) as stored, zeros where the row is past N or a column is at or past ke.
// VEC: K % 8 == 0 and 16-byte-aligned storage, so the 8 columns are all in or all out.
template <bool VEC>
__device__ __forceinline__ uint4 load_w8(const uint16_t* __restrict__ w, int64_t row, int64_t N, int64_t K, int64_t k,
                                         int64_t ke) {
  if (row >= N) return make_uint4(0, 0, 0, 0);
  const uint16_t* p = w + row * K + k;
  uint4 v = make_uint4(0, 0, 0, 0);
  if (VEC) {
    if (k < ke) v = ld_stream16(p);
  } else {
    uint32_t h[8];
#pragma unroll
    for (int e = 0; e < 8; ++e) h[e] = k + e < ke ? uint32_t(__ldg(p + e)) : 0u;
    v = make_uint4(h[0] | h[1] << 16, h[2] | h[3] << 16, h[4] | h[5] << 16, h[6] | h[7] << 16);
  }
  return v;
}

namespace tc {
constexpr int kChunk = 256;                 // x columns per shared-memory chunk
constexpr int kNS = 2;                      // n8 slices per warp: 16 weight rows
constexpr int kU = 2;                       // 32-column steps per super-step: kNS·kU loads in flight
constexpr int kStep = 32 * kU;              // columns per super-step
constexpr int kSPC = kChunk / kStep;        // super-steps per chunk
constexpr int kRowsPerBlock = 8 * 8 * kNS;  // 8 warps
constexpr int kPad = 4;                     // row pad (words): the 16-byte fragment reads are conflict-free
static_assert(kSPC * kStep == kChunk && kPad % 4 == 0, "a chunk is whole super-steps (so split starts are multiples of 8), rows stay 16-byte aligned");
}  // namespace tc

// Small-M tensor-core kernel: block = 8 warps = 128 weight rows, one K range (blockIdx.y);
// MT = 8 (M ≤ 8: A rows g + 8 are zero and never read) or 16. Shared memory: the x chunk as
// tf32 hi and lo, [MT][kChunk + kPad] each (33 KiB at MT 16).
template <int DT, bool VEC, int MT>
__global__ void __launch_bounds__(256) matmul_tc_small_kernel(const float* __restrict__ x, const uint16_t* __restrict__ w,
                                                              const float* __restrict__ bias, float* __restrict__ y,
                                                              float* __restrict__ part, int M, int64_t K, int64_t N,
                                                              int64_t ksplit) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  using namespace tc;
  __shared__ __align__(16) uint32_t xh[MT][kChunk + kPad];
  __shared__ __align__(16) uint32_t xl[MT][kChunk + kPad];
  const int lane = threadIdx.x & 31, t = lane & 3;
  const int64_t nw = (int64_t(blockIdx.x) * 8 + (threadIdx.x >> 5)) * (8 * kNS);  // the warp's first row
  const int64_t kb = int64_t(blockIdx.y) * ksplit, ke = kb + ksplit < K ? kb + ksplit : K;
  const int nsteps = int((ke - kb + kStep - 1) / kStep);
  float acc[kNS][4];
#pragma unroll
  for (int i = 0; i < kNS; ++i)
#pragma unroll
    for (int c = 0; c < 4; ++c) acc[i][c] = 0.f;

  // Lane (g, t) streams rows nw + 8i + b_col(lane) (i < kNS), columns k0 + 32u + 8t .. +8.
  uint4 wc[kU][kNS], wn[kU][kNS];
  auto load_step = [&](uint4 (&dst)[kU][kNS], int64_t k0) {
#pragma unroll
    for (int u = 0; u < kU; ++u)
#pragma unroll
      for (int i = 0; i < kNS; ++i)
        dst[u][i] = load_w8<VEC>(w, nw + 8 * i + Mma1688::b_col(lane, 0), N, K, k0 + 32 * u + 8 * t, ke);
  };
  load_step(wc, kb);
  for (int s = 0; s < nsteps; ++s) {
    const int64_t k0 = kb + int64_t(s) * kStep;
    if (s % kSPC == 0) {  // stage x[0..MT, k0 .. k0 + kChunk) ∩ [.., ke), split; zeros elsewhere
      __syncthreads();    // the previous chunk is consumed
      for (int e = threadIdx.x; e < MT * (kChunk / 4); e += 256) {
        const int m = e / (kChunk / 4), c4 = (e % (kChunk / 4)) * 4;
        const int64_t k = k0 + c4;
        float v[4] = {0.f, 0.f, 0.f, 0.f};
        if (m < M) {
          if (VEC) {
            if (k < ke) {
              const float4 q = __ldg(reinterpret_cast<const float4*>(x + int64_t(m) * K + k));
              v[0] = q.x, v[1] = q.y, v[2] = q.z, v[3] = q.w;
            }
          } else {
#pragma unroll
            for (int q = 0; q < 4; ++q)
              if (k + q < ke) v[q] = __ldg(x + int64_t(m) * K + k + q);
          }
        }
        uint4 h, l;
        split_tf32(v[0], h.x, l.x);
        split_tf32(v[1], h.y, l.y);
        split_tf32(v[2], h.z, l.z);
        split_tf32(v[3], h.w, l.w);
        *reinterpret_cast<uint4*>(&xh[m][c4]) = h;
        *reinterpret_cast<uint4*>(&xl[m][c4]) = l;
      }
      __syncthreads();
    }
    if (s + 1 < nsteps) load_step(wn, k0 + kStep);
    const int cc = (s % kSPC) * kStep;  // column of this super-step inside the chunk
#pragma unroll
    for (int u = 0; u < kU; ++u) {
      // The lane's 8 columns of token rows g and g + 8 (hi and lo).
      uint32_t ah[2][8], al[2][8];
#pragma unroll
      for (int hh = 0; hh < 2; ++hh) {
        if (hh == 1 && MT == 8) {
#pragma unroll
          for (int e = 0; e < 8; ++e) ah[1][e] = al[1][e] = 0u;
          continue;
        }
        const int r = Mma1688::a_row(lane, hh);
        const uint32_t* ph = &xh[r][cc + 32 * u + 8 * t];
        const uint32_t* pl = &xl[r][cc + 32 * u + 8 * t];
        const uint4 h0 = *reinterpret_cast<const uint4*>(ph), h1 = *reinterpret_cast<const uint4*>(ph + 4);
        const uint4 l0 = *reinterpret_cast<const uint4*>(pl), l1 = *reinterpret_cast<const uint4*>(pl + 4);
        ah[hh][0] = h0.x, ah[hh][1] = h0.y, ah[hh][2] = h0.z, ah[hh][3] = h0.w;
        ah[hh][4] = h1.x, ah[hh][5] = h1.y, ah[hh][6] = h1.z, ah[hh][7] = h1.w;
        al[hh][0] = l0.x, al[hh][1] = l0.y, al[hh][2] = l0.z, al[hh][3] = l0.w;
        al[hh][4] = l1.x, al[hh][5] = l1.y, al[hh][6] = l1.z, al[hh][7] = l1.w;
      }
      uint32_t wf[kNS][8];
#pragma unroll
      for (int i = 0; i < kNS; ++i) w8_to_tf32<DT>(wc[u][i], wf[i]);
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        uint32_t fh[4], fl[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          fh[i] = ah[frag_a_half(i)][frag_a_elem(i, j)];
          fl[i] = al[frag_a_half(i)][frag_a_elem(i, j)];
        }
#pragma unroll
        for (int i = 0; i < kNS; ++i) {
          const uint32_t fb[2] = {wf[i][frag_b_elem(0, j)], wf[i][frag_b_elem(1, j)]};
          mma_split_acc(acc[i], fh, fl, fb);
        }
      }
    }
#pragma unroll
    for (int u = 0; u < kU; ++u)
#pragma unroll
      for (int i = 0; i < kNS; ++i) wc[u][i] = wn[u][i];
  }
#pragma unroll
  for (int i = 0; i < kNS; ++i)
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      const int m = Mma1688::c_row(lane, c);
      const int64_t n = nw + 8 * i + Mma1688::c_col(lane, c);
      if (m < M && n < N) {
        if (part) part[(int64_t(blockIdx.y) * M + m) * N + n] = acc[i][c];
        else y[int64_t(m) * N + n] = bias ? acc[i][c] + bias[n] : acc[i][c];
      }
    }
#endif
}

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool ok) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const uint32_t s = uint32_t(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(s), "l"(gmem), "r"(ok ? 16 : 0));
#endif
}
__device__ __forceinline__ void cp_async_commit() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;");
#endif
}
__device__ __forceinline__ void cp_async_wait1() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_group 1;" ::: "memory");
#endif
}

// Prefill tensor-core kernel: block (bn, bm) computes y[bm·64 .. +64, bn·64 .. +64]; warp
// (wm, wn) = (warp >> 1, warp & 1) owns rows wm·32 .. +32 (two m16 tiles) and columns
// wn·32 .. +32 (four n8 tiles). Per 32-column K step the tiles are x [64][32] f32 (rows padded
// to 36 words) and W [64][32] as stored (64-byte rows: the 16-byte fragment reads of a quarter
// warp hit 32 distinct banks); VEC (K % 8 == 0, aligned) streams them with cp.async, zero-filled
// past M / N / K, two stages deep; otherwise predicated scalar loads, one stage. x is split into
// tf32 hi/lo as fragments are read (each warp splits its 32 rows).
template <int DT, bool VEC>
__global__ void __launch_bounds__(128) matmul_tc_tiled_kernel(const float* __restrict__ x, const uint16_t* __restrict__ w,
                                                              const float* __restrict__ bias, float* __restrict__ y, int64_t M,
                                                              int64_t K, int64_t N) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  __shared__ __align__(16) float xs[2][64][36];
  __shared__ __align__(16) uint16_t ws[2][64][32];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, t = lane & 3;
  const int wm = warp >> 1, wn = warp & 1;
  const int64_t m0 = int64_t(blockIdx.y) * 64, n0 = int64_t(blockIdx.x) * 64;
  const int64_t KT = (K + 31) / 32;
  float acc[2][4][4];
#pragma unroll
  for (int a = 0; a < 2; ++a)
#pragma unroll
    for (int b = 0; b < 4; ++b)
#pragma unroll
      for (int c = 0; c < 4; ++c) acc[a][b][c] = 0.f;

  auto load_tile = [&](int64_t kt, int st) {
    const int64_t k0 = kt * 32;
    if (VEC) {
#pragma unroll
      for (int r = 0; r < 4; ++r) {  // x: 64 rows × 8 pieces of 4 floats
        const int e = tid + 128 * r, row = e >> 3, c = (e & 7) * 4;
        const int64_t m = m0 + row, k = k0 + c;
        const bool ok = m < M && k < K;
        cp_async16(&xs[st][row][c], ok ? static_cast<const void*>(x + m * K + k) : static_cast<const void*>(x), ok);
      }
#pragma unroll
      for (int r = 0; r < 2; ++r) {  // W: 64 rows × 4 pieces of 8 weights
        const int e = tid + 128 * r, row = e >> 2, c = (e & 3) * 8;
        const int64_t n = n0 + row, k = k0 + c;
        const bool ok = n < N && k < K;
        cp_async16(&ws[st][row][c], ok ? static_cast<const void*>(w + n * K + k) : static_cast<const void*>(w), ok);
      }
    } else {
      for (int e = tid; e < 64 * 32; e += 128) {
        const int row = e >> 5, c = e & 31;
        const int64_t k = k0 + c, m = m0 + row, n = n0 + row;
        xs[st][row][c] = m < M && k < K ? __ldg(x + m * K + k) : 0.f;
        ws[st][row][c] = n < N && k < K ? __ldg(w + n * K + k) : uint16_t(0);
      }
    }
  };

  if (VEC) {
    load_tile(0, 0);
    cp_async_commit();
  }
  for (int64_t kt = 0; kt < KT; ++kt) {
    const int st = VEC ? int(kt & 1) : 0;
    if (VEC) {
      if (kt + 1 < KT) load_tile(kt + 1, st ^ 1);
      cp_async_commit();  // possibly empty: keeps "wait for all but the newest group" uniform
      cp_async_wait1();
    } else {
      load_tile(kt, 0);
    }
    __syncthreads();
    // Fragments: x rows (two m16 tiles × rows g, g + 8), 8 columns each → hi/lo; W rows (four n8
    // tiles), 8 columns each → tf32.
    uint32_t ah[2][2][8], al[2][2][8], wf[4][8];
#pragma unroll
    for (int mi = 0; mi < 2; ++mi)
#pragma unroll
      for (int hh = 0; hh < 2; ++hh) {
        const float* p = &xs[st][wm * 32 + mi * 16 + Mma1688::a_row(lane, hh)][8 * t];
        const float4 q0 = *reinterpret_cast<const float4*>(p), q1 = *reinterpret_cast<const float4*>(p + 4);
        const float v[8] = {q0.x, q0.y, q0.z, q0.w, q1.x, q1.y, q1.z, q1.w};
#pragma unroll
        for (int e = 0; e < 8; ++e) split_tf32(v[e], ah[mi][hh][e], al[mi][hh][e]);
      }
#pragma unroll
    for (int ni = 0; ni < 4; ++ni)
      w8_to_tf32<DT>(*reinterpret_cast<const uint4*>(&ws[st][wn * 32 + ni * 8 + Mma1688::b_col(lane, 0)][8 * t]), wf[ni]);
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int mi = 0; mi < 2; ++mi) {
        uint32_t fh[4], fl[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          fh[i] = ah[mi][frag_a_half(i)][frag_a_elem(i, j)];
          fl[i] = al[mi][frag_a_half(i)][frag_a_elem(i, j)];
        }
#pragma unroll
        for (int ni = 0; ni < 4; ++ni) {
          const uint32_t fb[2] = {wf[ni][frag_b_elem(0, j)], wf[ni][frag_b_elem(1, j)]};
          mma_split_acc(acc[mi][ni], fh, fl, fb);
        }
      }
    __syncthreads();  // the stage is consumed before it is refilled
  }
#pragma unroll
  for (int mi = 0; mi < 2; ++mi)
#pragma unroll
    for (int ni = 0; ni < 4; ++ni)
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const int64_t m = m0 + wm * 32 + mi * 16 + Mma1688::c_row(lane, c);
        const int64_t n = n0 + wn * 32 + ni * 8 + Mma1688::c_col(lane, c);
        if (m < M && n < N) y[m * N + n] = bias ? acc[mi][ni][c] + bias[n] : acc[mi][ni][c];
      }
#endif
}

// Whether this call takes the tensor-core path: bf16/f16 weights, a device of compute
// capability ≥ 8.0 whose kernel image was compiled for ≥ compute_80 (a build carrying only
// compute_75 PTX would JIT the empty pre-sm_80 bodies), and DIFFUSIONVL_CUDA_MATMUL ≠ "simt"
// (read on every call so one process can A/B both paths).
static bool tc_path(int device) {
  const char* env = std::getenv("DIFFUSIONVL_CUDA_MATMUL");
  if (env && std::strcmp(env, "simt") == 0) return false;
  static signed char cache[64];  // 0 unknown, 1 yes, -1 no
  if (device < 0 || device >= 64) return false;
  if (!cache[device]) {
    int major = 0;
    cudaFuncAttributes a{};
    const cudaError_t e1 = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device);
    const cudaError_t e2 = e1 == cudaSuccess && major >= 8
                               ? cudaFuncGetAttributes(&a, matmul_tc_small_kernel<int(DType::BF16), true, 16>)
                               : cudaErrorNotSupported;
    if (e1 != cudaSuccess || (major >= 8 && e2 != cudaSuccess)) {
      // A failed query means "not now", not a pending error, and not "never": this call takes
      // the SIMT path and the next one asks again (only an answer is cached).
      cudaGetLastError();
      return false;
    }
    cache[device] = e2 == cudaSuccess && a.ptxVersion >= 80 ? 1 : -1;
  }
  return cache[device] > 0;
}

// Split-K for the small-M kernels: split K until there are ≥ 2 blocks per SM (a small N alone
// cannot keep HBM busy), each split ≥ min_split columns, ≤ 32 splits, rounded to whole `chunk`s so
// every split starts aligned. launch(part, ksplit, splits) starts the kernel over bx × splits
// blocks (part: null without a split); matmul_splitk_reduce then adds the parts in split order
// (deterministic) plus the bias.
template <class Launch>
static dvl_status launch_split_k(const OpCall& c, const float* b, float* y, int M, int64_t K, int64_t N, int64_t bx,
                                 int64_t chunk, int64_t min_split, const char* kernel, Launch launch) {
  int64_t splits = 1;
  const int64_t want = 2 * int64_t(sm_count(c.device));
  if (bx < want) splits = std::min<int64_t>({(want + bx - 1) / bx, std::max<int64_t>(1, K / min_split), 32});
  int64_t ksplit = (K + splits - 1) / splits;
  ksplit = (ksplit + chunk - 1) / chunk * chunk;
  splits = (K + ksplit - 1) / ksplit;
  if (bx > 0x7fffffff) return fail(c.err, "DVL_SHAPE", "cuda matmul: N too large for one grid");
  float* part = nullptr;
  if (splits > 1) {
    cudaError_t e = cudaMallocAsync(reinterpret_cast<void**>(&part), size_t(splits * M * N) * 4, c.stream);
    if (e != cudaSuccess) return fail_cuda(c.err, e, "cuda matmul: split-K scratch");
  }
  launch(part, ksplit, splits);
  dvl_status st = check_launch(c, kernel);
  if (!st && part) {
    matmul_splitk_reduce<<<grid_for(int64_t(M) * N, 256), 256, 0, c.stream>>>(part, b, y, M, N, int(splits));
    st = check_launch(c, "matmul_splitk_reduce");
  }
  if (part) cudaFreeAsync(part, c.stream);
  return st;
}

template <int DT, bool VEC, int MT>
static dvl_status launch_tc_small(const OpCall& c, const float* x, const uint16_t* w, const float* b, float* y, int M,
                                  int64_t K, int64_t N) {
  const int64_t bx = (N + tc::kRowsPerBlock - 1) / tc::kRowsPerBlock;
  // Splits are whole chunks so every lane's 8 columns start at a multiple of 8.
  return launch_split_k(c, b, y, M, K, N, bx, tc::kChunk, tc::kChunk, "matmul_tc_small_kernel",
                        [&](float* part, int64_t ksplit, int64_t splits) {
                          matmul_tc_small_kernel<DT, VEC, MT><<<dim3(unsigned(bx), unsigned(splits)), 256, 0, c.stream>>>(
                              x, w, b, y, part, M, K, N, ksplit);
                        });
}

template <int DT>
static dvl_status launch_tc(const OpCall& c, const float* x, const void* wv, const float* b, float* y, int64_t M, int64_t K,
                            int64_t N) {
  const uint16_t* w = static_cast<const uint16_t*>(wv);
  const bool vec = K % 8 == 0 && (reinterpret_cast<uintptr_t>(x) | reinterpret_cast<uintptr_t>(w)) % 16 == 0;
  if (M <= 16) {
    if (M <= 8) return vec ? launch_tc_small<DT, true, 8>(c, x, w, b, y, int(M), K, N) : launch_tc_small<DT, false, 8>(c, x, w, b, y, int(M), K, N);
    return vec ? launch_tc_small<DT, true, 16>(c, x, w, b, y, int(M), K, N) : launch_tc_small<DT, false, 16>(c, x, w, b, y, int(M), K, N);
  }
  if ((M + 63) / 64 > 65535) return fail(c.err, "DVL_SHAPE", "cuda matmul: M = %lld is above one grid's 65535·64 rows", (long long)M);
  dim3 grid(unsigned((N + 63) / 64), unsigned((M + 63) / 64));
  if (vec) matmul_tc_tiled_kernel<DT, true><<<grid, 128, 0, c.stream>>>(x, w, b, y, M, K, N);
  else matmul_tc_tiled_kernel<DT, false><<<grid, 128, 0, c.stream>>>(x, w, b, y, M, K, N);
  return check_launch(c, "matmul_tc_tiled_kernel");
}

template <int MT, int RW, int DT>
static dvl_status launch_small_vec(const OpCall& c, const float* x, const void* w, const float* b, float* y, int M, int64_t K,
                                   int64_t N) {
  const int64_t bx = (N + 8 * RW - 1) / (8 * RW);
  // Each split ≥ 2 chunks; whole chunks keep the x tiles aligned.
  return launch_split_k(c, b, y, M, K, N, bx, kKC, 2 * kKC, "matmul_small_vec_kernel",
                        [&](float* part, int64_t ksplit, int64_t splits) {
                          matmul_small_vec_kernel<MT, RW, DT><<<dim3(unsigned(bx), unsigned(splits)), 256, 0, c.stream>>>(
                              x, w, b, y, part, M, K, N, ksplit);
                        });
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
  if (K > 0 && w.dtype != DType::F32 && tc_path(c.device)) {
    if (w.dtype == DType::BF16) return launch_tc<int(DType::BF16)>(c, xp, wp, bp, yp, M, K, N);
    return launch_tc<int(DType::F16)>(c, xp, wp, bp, yp, M, K, N);
  }
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

void register_matmul(std::vector<OpEntry>& t) { t.push_back({dvl::OpId::Matmul, kF32, matmul_run}); }

}  // namespace dvl_cuda
