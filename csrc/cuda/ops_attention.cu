// ops_attention.cu — flash-style scaled dot-product attention over a KV cache on the GPU
// (csrc/cpu/ops/attention.cpp, docs §2.5, §5.3, §3.3 item 4; docs/performance.md §c1).
//
// Legend: Tq query rows, nh query heads, nkv kv heads (GQA: head h reads kv head
// g = h / (nh/nkv)), hd head dim ≤ 512, cap cache capacity.
//   q f32 [Tq, nh, hd]; k, v f32|bf16|f16 [nkv, cap, hd] → o f32 [Tq, nh, hd]
// Masks are one visible key range [lo, hi) per query row i at absolute position p = qPos0 + i,
// exactly as the CPU op: causal [0, p+1), block [0, min(kvLen, (⌊p/bs⌋+1)·bs)), full
// [0, kvLen), segments [cu[s], cu[s+1]) for the segment holding i.
// Two kernels share one per-row step. attention_kernel (used when hd is too large for the
// other's shared memory): one warp per (query row, head) walks the visible keys 32 at a time,
// lane j scoring key j0 + j against the row's q (kept in shared memory), then the online-softmax
// update
//   m' = max(m, max s), p = e^(s − m'), l' = l·e^(m−m') + Σp, acc' = acc·e^(m−m') + Σ p·v
// with acc spread over the lanes (column d = lane + 32t). No [Tq, kvLen] matrix exists.
// Non-finite inputs as on the CPU: a NaN score (NaN in q or a visible key) makes the row NaN;
// only visible keys' values are read, so NaN in a masked value never leaks; a row whose
// visible scores are all −∞ is NaN, a row with no visible key is zeros. The CPU op's exp is a
// polynomial (1–2 ulp); this one is expf (≤ 2 ulp): results agree to a few ulp of the output.
// attention_tiled_kernel (the default, below): the same step for 8 rows of one kv head that
// share each K/V tile through shared memory, with a split of the key axis (flash-decoding) when
// the blocks alone would leave SMs idle.
// Throughput work left (docs/performance.md §c1): tensor-core Q·Kᵀ and P·V (mma.sync / wgmma), a
// 56–64-row GQA tile per block, exp2 with a pre-scaled log2 e, cp.async/TMA tile pipelining.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "dtype.cuh"
#include "plugin.h"

namespace dvl_cuda {

using dvl::DType;
using dvl::MaskKind;
using dvl::Tensor;

struct AttnParams {
  const float* q;
  const void* k;
  const void* v;
  float* o;
  int kv_dtype;
  int64_t Tq, nh, nkv, group, hd, cap, kvLen, qPos0, bs;
  MaskKind mask;       // parsed once by the CPU op (csrc/core/op_attrs.h)
  const int64_t* cu;   // segments: [nseg + 1] on the device
  int64_t nseg;
  float scale;
};

static const int kWarps = 4;  // warps (rows) per block
static const int kMaxT = 16;  // 512 / 32 columns per lane

__device__ __forceinline__ float nanmax(float a, float b) { return (a != a || b != b) ? __int_as_float(0x7fc00000) : fmaxf(a, b); }

// Visible key range [lo, hi) of query row i (the masks of the header).
// Start of KV head g in a cache [nkv, cap, hd] of P.kv_dtype (f32, or 2-byte bf16/f16).
__device__ __forceinline__ const char* kv_head(const AttnParams& P, const void* cache, int64_t g) {
  const size_t es = P.kv_dtype == int(DType::F32) ? 4 : 2;
  return static_cast<const char*>(cache) + size_t(g * P.cap * P.hd) * es;
}

__device__ __forceinline__ void row_range(const AttnParams& P, int64_t i, int64_t* lo, int64_t* hi) {
  *lo = 0;
  *hi = P.kvLen;
  const int64_t p = P.qPos0 + i;
  if (P.mask == MaskKind::Causal) *hi = p + 1;
  else if (P.mask == MaskKind::Block) *hi = min(P.kvLen, (p / P.bs + 1) * P.bs);
  else if (P.mask == MaskKind::Segments) {
    int64_t a = 0, b = P.nseg;  // the last s with cu[s] <= i (segments are non-decreasing)
    while (b - a > 1) {
      const int64_t mid = (a + b) / 2;
      if (P.cu[mid] <= i) a = mid;
      else b = mid;
    }
    *lo = P.cu[a];
    *hi = P.cu[a + 1];
  }
}

__global__ void __launch_bounds__(kWarps * 32) attention_kernel(const AttnParams P) {
  __shared__ float qs[kWarps][512];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t row = int64_t(blockIdx.x) * kWarps + warp;  // (i, h) = (row / nh, row % nh)
  if (row >= P.Tq * P.nh) return;  // whole warps leave together; no block barrier below
  const int64_t i = row / P.nh, h = row % P.nh, g = h / P.group, hd = P.hd;
  int64_t lo, hi;
  row_range(P, i, &lo, &hi);
  float* orow = P.o + row * hd;
  if (lo >= hi) {
    for (int64_t d = lane; d < hd; d += 32) orow[d] = 0.f;
    return;
  }
  const float* qrow = P.q + row * hd;
  for (int64_t d = lane; d < hd; d += 32) qs[warp][d] = qrow[d];
  __syncwarp();
  const char* kh = kv_head(P, P.k, g);
  const char* vh = kv_head(P, P.v, g);
  const float kNegInf = -__int_as_float(0x7f800000);
  float m = kNegInf, l = 0.f, acc[kMaxT];
#pragma unroll
  for (int t = 0; t < kMaxT; ++t) acc[t] = 0.f;
  for (int64_t j0 = lo; j0 < hi; j0 += 32) {
    const int64_t j = j0 + lane, nj = hi - j0 < 32 ? hi - j0 : 32;
    float s = kNegInf;
    if (lane < nj) {
      float dot = 0.f;
      for (int64_t d = 0; d < hd; ++d) dot = fmaf(qs[warp][d], d_load(kh, P.kv_dtype, j * hd + d), dot);
      s = dot * P.scale;
    }
    float mt = s;
    for (int o = 16; o > 0; o >>= 1) mt = nanmax(mt, __shfl_xor_sync(0xffffffffu, mt, o));
    const float mn = nanmax(m, mt);
    if (mn == kNegInf) continue;  // nothing finite seen yet: weights 0, state unchanged
    const float pj = lane < nj ? expf(s - mn) : 0.f;
    const float corr = expf(m - mn);
    float ps = pj;
    for (int o = 16; o > 0; o >>= 1) ps += __shfl_xor_sync(0xffffffffu, ps, o);
    l = l * corr + ps;
    m = mn;
#pragma unroll
    for (int t = 0; t < kMaxT; ++t) acc[t] *= corr;
    for (int jj = 0; jj < nj; ++jj) {  // only visible keys: a masked NaN value never enters
      const float pv = __shfl_sync(0xffffffffu, pj, jj);
      const int64_t base = (j0 + jj) * hd;
#pragma unroll
      for (int t = 0; t < kMaxT; ++t) {
        const int64_t d = lane + 32 * t;
        if (d < hd) acc[t] = fmaf(pv, d_load(vh, P.kv_dtype, base + d), acc[t]);
      }
    }
  }
  // l = 0 only when every visible score was −∞ (infinite inputs): NaN, as softmax would give.
  const float inv = l > 0.f ? 1.f / l : __int_as_float(0x7fc00000);
#pragma unroll
  for (int t = 0; t < kMaxT; ++t) {
    const int64_t d = lane + 32 * t;
    if (d < hd) orow[d] = acc[t] * inv;
  }
}

// ---- tiled kernel (the default when its shared memory fits: hd ≤ 128 or so) ------------------
//
// A block is one kv head g (blockIdx.y), a run of kTW consecutive rows of that head's Tq·group
// (query row, head) rows — query-major, so a decode block's GQA group shares it (docs/performance.md
// §c1) — and one split of the key axis (blockIdx.z). Its 8 warps walk the union of their rows'
// visible ranges in tiles of 32 keys; each tile of K and V is loaded ONCE per block into shared
// memory (coalesced, converted to f32), then every warp does the warp-per-row step above from
// shared memory. With several splits (few blocks, long context: flash-decoding) each split
// writes its rows' partial (m, l, acc) and attention_merge_kernel combines them per row:
//   M = max m_s, L = Σ l_s·e^(m_s − M), o = Σ acc_s·e^(m_s − M) / L   (in split order).
static const int kTW = 8;  // warps (rows) per block

__global__ void __launch_bounds__(kTW * 32) attention_tiled_kernel(const AttnParams P, int64_t chunk, float* __restrict__ pm,
                                                                   float* __restrict__ pl, float* __restrict__ pacc) {
  extern __shared__ float sm[];
  __shared__ int64_t s_lo[kTW], s_hi[kTW];
  const int64_t hd = P.hd, ldk = hd + 1;  // +1: lane-strided K rows hit distinct banks
  float* Ks = sm;              // [32][hd + 1]
  float* Vs = Ks + 32 * ldk;   // [32][hd]
  float* Qs = Vs + 32 * hd;    // [kTW][hd]
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t g = blockIdx.y, split = blockIdx.z, rows = P.Tq * P.group;
  const int64_t r = int64_t(blockIdx.x) * kTW + warp;
  const bool active = r < rows;
  int64_t i = 0, h = 0, lo = 0, hi = 0, a_s = 0, b_s = 0;
  if (active) {
    i = r / P.group;
    h = g * P.group + r % P.group;
    row_range(P, i, &lo, &hi);
    const int64_t c0 = split * chunk, c1 = c0 + chunk;
    a_s = lo > c0 ? lo : c0;
    b_s = hi < c1 ? hi : c1;
    for (int64_t d = lane; d < hd; d += 32) Qs[warp * hd + d] = P.q[(i * P.nh + h) * hd + d];
  }
  if (lane == 0) {
    const bool any = active && a_s < b_s;
    s_lo[warp] = any ? a_s : INT64_MAX;
    s_hi[warp] = any ? b_s : 0;
  }
  __syncthreads();
  int64_t LO = INT64_MAX, HI = 0;
  for (int w = 0; w < kTW; ++w) {
    LO = s_lo[w] < LO ? s_lo[w] : LO;
    HI = s_hi[w] > HI ? s_hi[w] : HI;
  }
  const char* kh = kv_head(P, P.k, g);
  const char* vh = kv_head(P, P.v, g);
  const float kNegInf = -__int_as_float(0x7f800000);
  float m = kNegInf, l = 0.f, acc[kMaxT];
#pragma unroll
  for (int t = 0; t < kMaxT; ++t) acc[t] = 0.f;
  for (int64_t j0 = LO; j0 < HI; j0 += 32) {  // block-uniform bounds: every thread reaches the barriers
    const int64_t nt = HI - j0 < 32 ? HI - j0 : 32;
    __syncthreads();  // the previous tile is consumed
    for (int64_t e = threadIdx.x; e < nt * hd; e += kTW * 32) {
      const int64_t kk = e / hd, d = e % hd;
      Ks[kk * ldk + d] = d_load(kh, P.kv_dtype, j0 * hd + e);
      Vs[kk * hd + d] = d_load(vh, P.kv_dtype, j0 * hd + e);
    }
    __syncthreads();
    const int64_t a = a_s > j0 ? a_s : j0, b = b_s < j0 + nt ? b_s : j0 + nt;
    if (!active || a >= b) continue;  // warp-uniform
    const int64_t j = j0 + lane;
    float sc = kNegInf;
    if (j >= a && j < b) {
      float dot = 0.f;
      for (int64_t d = 0; d < hd; ++d) dot = fmaf(Qs[warp * hd + d], Ks[lane * ldk + d], dot);
      sc = dot * P.scale;
    }
    float mt = sc;
    for (int o = 16; o > 0; o >>= 1) mt = nanmax(mt, __shfl_xor_sync(0xffffffffu, mt, o));
    const float mn = nanmax(m, mt);
    if (mn == kNegInf) continue;  // nothing finite seen yet: weights 0, state unchanged
    const float pj = (j >= a && j < b) ? expf(sc - mn) : 0.f;
    const float corr = expf(m - mn);
    float ps = pj;
    for (int o = 16; o > 0; o >>= 1) ps += __shfl_xor_sync(0xffffffffu, ps, o);
    l = l * corr + ps;
    m = mn;
#pragma unroll
    for (int t = 0; t < kMaxT; ++t) acc[t] *= corr;
    for (int64_t jj = a - j0; jj < b - j0; ++jj) {  // only visible keys: a masked NaN value never enters
      const float pv = __shfl_sync(0xffffffffu, pj, int(jj));
#pragma unroll
      for (int t = 0; t < kMaxT; ++t) {
        const int64_t d = lane + 32 * t;
        if (d < hd) acc[t] = fmaf(pv, Vs[jj * hd + d], acc[t]);
      }
    }
  }
  if (!active) return;
  if (!pm) {  // one split: the final row
    float* orow = P.o + (i * P.nh + h) * hd;
    const float inv = lo >= hi ? 0.f : l > 0.f ? 1.f / l : __int_as_float(0x7fc00000);
#pragma unroll
    for (int t = 0; t < kMaxT; ++t) {
      const int64_t d = lane + 32 * t;
      if (d < hd) orow[d] = lo >= hi ? 0.f : acc[t] * inv;
    }
    return;
  }
  const int64_t idx = split * (P.nkv * rows) + g * rows + r;
  if (lane == 0) pm[idx] = m, pl[idx] = l;
#pragma unroll
  for (int t = 0; t < kMaxT; ++t) {
    const int64_t d = lane + 32 * t;
    if (d < hd) pacc[idx * hd + d] = acc[t];
  }
}

// One warp per (kv head, row): merges the splits' partial states (see above).
__global__ void attention_merge_kernel(const AttnParams P, int splits, const float* __restrict__ pm, const float* __restrict__ pl,
                                       const float* __restrict__ pacc) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t rows = P.Tq * P.group, R = int64_t(blockIdx.x) * 4 + warp;
  if (R >= P.nkv * rows) return;
  const int64_t g = R / rows, r = R % rows, i = r / P.group, h = g * P.group + r % P.group, hd = P.hd;
  float* orow = P.o + (i * P.nh + h) * hd;
  int64_t lo, hi;
  row_range(P, i, &lo, &hi);
  if (lo >= hi) {  // no visible key: zeros by contract
    for (int64_t d = lane; d < hd; d += 32) orow[d] = 0.f;
    return;
  }
  const int64_t stride = P.nkv * rows;
  float M = -__int_as_float(0x7f800000);
  for (int s = 0; s < splits; ++s) M = nanmax(M, pm[s * stride + R]);
  float L = 0.f;
  for (int s = 0; s < splits; ++s) L += pl[s * stride + R] * expf(pm[s * stride + R] - M);
  // M = −∞: every visible score was −∞ → L is NaN or 0 → NaN, as the one-split path gives.
  const float inv = L > 0.f ? 1.f / L : __int_as_float(0x7fc00000);
  for (int64_t d = lane; d < hd; d += 32) {
    float o = 0.f;
    for (int s = 0; s < splits; ++s) o = fmaf(pacc[(s * stride + R) * hd + d], expf(pm[s * stride + R] - M), o);
    orow[d] = o * inv;
  }
}


// Launches the tiled kernel (and the merge when the key axis is split). Returns -1 when its
// shared memory does not fit the default 48 KiB (large hd): the caller uses the warp kernel.
static int attention_tiled(const OpCall& c, const AttnParams& P) {
  const size_t smem = size_t(32 * (P.hd + 1) + 32 * P.hd + kTW * P.hd) * 4;
  if (smem + 256 > 48 * 1024) return -1;  // + the static s_lo / s_hi
  const int64_t rows = P.Tq * P.group, bx = (rows + kTW - 1) / kTW;
  if (bx > 0x7fffffff || P.nkv > 65535) return -1;
  // Split the key axis when the blocks alone leave SMs idle and the context is long (≥ 1024):
  // ≥ 256 keys per split, at most 64 splits.
  int64_t splits = 1, chunk = P.kvLen + 32;
  const int64_t blocks = bx * P.nkv, sms = sm_count(c.device);
  if (blocks < sms && P.kvLen >= 1024) {
    splits = std::min<int64_t>({(sms + blocks - 1) / blocks, (P.kvLen + 255) / 256, 64});
    chunk = ((P.kvLen + splits - 1) / splits + 31) / 32 * 32;
    splits = (P.kvLen + chunk - 1) / chunk;
  }
  float* scratch = nullptr;
  float *pm = nullptr, *pl = nullptr, *pacc = nullptr;
  if (splits > 1) {
    const size_t n = size_t(splits * P.nkv * rows);
    cudaError_t e = cudaMallocAsync(reinterpret_cast<void**>(&scratch), n * (2 + size_t(P.hd)) * 4, c.stream);
    if (e != cudaSuccess) return fail_cuda(c.err, e, "cuda attention: split scratch");
    pm = scratch, pl = scratch + n, pacc = scratch + 2 * n;
  }
  attention_tiled_kernel<<<dim3(unsigned(bx), unsigned(P.nkv), unsigned(splits)), kTW * 32, smem, c.stream>>>(P, chunk, pm, pl, pacc);
  int st = check_launch(c, "attention_tiled_kernel");
  if (!st && splits > 1) {
    const int64_t warps = P.nkv * rows;
    attention_merge_kernel<<<unsigned((warps + 3) / 4), 128, 0, c.stream>>>(P, int(splits), pm, pl, pacc);
    st = check_launch(c, "attention_merge_kernel");
  }
  if (scratch) cudaFreeAsync(scratch, c.stream);
  return st;
}

static dvl_status attention_run(const OpCall& c) {
  if (!check_io(c, 3, 3, 1)) return 1;
  const Tensor &q = *c.in[0], &k = *c.in[1], &v = *c.in[2], &o = *c.out[0];
  if (!need_dtype(c, q, kF32, "q") || !need_dtype(c, k, kFloats, "k") || !need_dtype(c, o, kF32, "o")) return 1;
  if (k.dtype != v.dtype) return fail(c.err, "DVL_DTYPE", "cuda attention: k and v must have the same dtype");
  if (q.shape.size() != 3 || k.shape.size() != 3 || k.shape != v.shape || o.shape != q.shape || k.shape[2] != q.shape[2])
    return fail(c.err, "DVL_SHAPE", "cuda attention: q [Tq, nh, hd], k = v [nkv, cap, hd], o q's shape");
  AttnParams P{};
  P.Tq = q.shape[0], P.nh = q.shape[1], P.hd = q.shape[2], P.nkv = k.shape[0], P.cap = k.shape[1];
  if (P.hd > 512 || P.nkv < 1 || P.nh % P.nkv) return fail(c.err, "DVL_SHAPE", "cuda attention: hd <= 512, nh a multiple of nkv");
  P.group = P.nh / P.nkv;
  // The CPU op's parse validated these against the same shapes; the checks below guard what the
  // kernels index with, should an engine skip it.
  const dvl::AttentionAttrs& a = c.attrs.attention;
  P.kvLen = a.kvLen;
  P.qPos0 = a.qPos0;
  if (P.kvLen < 0 || P.kvLen > P.cap || P.qPos0 < 0) return fail(c.err, "DVL_RANGE", "cuda attention: kvLen / qPos0 out of range");
  P.scale = float(a.has_scale ? a.scale : 1.0 / std::sqrt(double(P.hd)));
  P.mask = a.mask;
  P.bs = a.blockSize;
  const std::vector<int64_t>& cu = a.segments;
  if (P.mask == MaskKind::Block && P.bs < 1) return fail(c.err, "DVL_RANGE", "cuda attention: blockSize must be >= 1");
  if (P.mask == MaskKind::Segments) {
    if (cu.size() < 2 || cu.front() != 0 || cu.back() != P.kvLen || P.Tq != P.kvLen)
      return fail(c.err, "DVL_ARG", "cuda attention: segments missing or not [0, ..., kvLen]");
    P.nseg = int64_t(cu.size()) - 1;
  }
  if ((P.mask == MaskKind::Causal || P.mask == MaskKind::Block) && P.qPos0 + P.Tq > P.kvLen)
    return fail(c.err, "DVL_RANGE", "cuda attention: query positions exceed kvLen");
  const int64_t rows = P.Tq * P.nh;
  if (rows == 0 || P.hd == 0) return 0;
  if ((rows + kWarps - 1) / kWarps > 0x7fffffff) return fail(c.err, "DVL_SHAPE", "cuda attention: too many rows for one grid");
  P.q = dptr<const float>(q), P.k = k.storage->data, P.v = v.storage->data, P.o = dptr<float>(o), P.kv_dtype = int(k.dtype);
  int64_t* dcu = nullptr;
  if (P.mask == MaskKind::Segments) {
    // The boundaries go up through a stream-ordered allocation freed after the kernel.
    cudaError_t e = cudaMallocAsync(&dcu, cu.size() * 8, c.stream);
    if (e == cudaSuccess) e = cudaMemcpyAsync(dcu, cu.data(), cu.size() * 8, cudaMemcpyHostToDevice, c.stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize(c.stream);  // the engine may free the attributes on return
    if (e != cudaSuccess) {
      if (dcu) cudaFreeAsync(dcu, c.stream);
      return fail_cuda(c.err, e, "cuda attention: uploading segments");
    }
    P.cu = dcu;
  }
  int st = attention_tiled(c, P);
  if (st < 0) {  // head dim too large for the tiled kernel's shared memory: one warp per row
    attention_kernel<<<unsigned((rows + kWarps - 1) / kWarps), kWarps * 32, 0, c.stream>>>(P);
    st = check_launch(c, "attention_kernel");
  }
  if (dcu) cudaFreeAsync(dcu, c.stream);
  return st;
}

// The launch shared by attention and each sequence of attention_batch (P filled but for q/k/v/o).
static dvl_status attention_launch(const OpCall& c, AttnParams& P) {
  const int64_t rows = P.Tq * P.nh;
  if (rows == 0 || P.hd == 0) return 0;
  if ((rows + kWarps - 1) / kWarps > 0x7fffffff) return fail(c.err, "DVL_SHAPE", "cuda attention: too many rows for one grid");
  int st = attention_tiled(c, P);
  if (st < 0) {
    attention_kernel<<<unsigned((rows + kWarps - 1) / kWarps), kWarps * 32, 0, c.stream>>>(P);
    st = check_launch(c, "attention_kernel");
  }
  return st;
}

// attention_batch (csrc/cpu/ops/attention.cpp): per sequence of attr seqs (row0, row1, slot,
// pos0, mask, bs; parsed into BatchSeq by the CPU op), the attention launch above on its rows of q/o and
// its slot of the [S, nkv, cap, hd] caches — the same kernels as an unbatched call. (One launch
// per sequence; a fused varlen kernel is the next step for large batches.)
static dvl_status attention_batch_run(const OpCall& c) {
  if (!check_io(c, 3, 3, 1)) return 1;
  const Tensor &q = *c.in[0], &k = *c.in[1], &v = *c.in[2], &o = *c.out[0];
  if (!need_dtype(c, q, kF32, "q") || !need_dtype(c, k, kFloats, "k") || !need_dtype(c, o, kF32, "o")) return 1;
  if (k.dtype != v.dtype) return fail(c.err, "DVL_DTYPE", "cuda attention_batch: k and v must have the same dtype");
  if (q.shape.size() != 3 || k.shape.size() != 4 || k.shape != v.shape || o.shape != q.shape || k.shape[3] != q.shape[2])
    return fail(c.err, "DVL_SHAPE", "cuda attention_batch: q [T, nh, hd], k = v [S, nkv, cap, hd], o q's shape");
  const std::vector<dvl::BatchSeq>& seqs = c.attrs.attention_batch.seqs;
  if (seqs.empty()) return fail(c.err, "DVL_ARG", "cuda attention_batch: no sequences (attr seqs)");
  const int64_t S = k.shape[0], T = q.shape[0], nh = q.shape[1], hd = q.shape[2], nkv = k.shape[1], cap = k.shape[2];
  if (hd > 512 || nkv < 1 || nh % nkv) return fail(c.err, "DVL_SHAPE", "cuda attention_batch: hd <= 512, nh a multiple of nkv");
  const size_t slot_bytes = size_t(nkv * cap * hd) * (k.dtype == DType::F32 ? 4 : 2);
  const dvl::AttentionBatchAttrs& a = c.attrs.attention_batch;
  const float scale = float(a.has_scale ? a.scale : 1.0 / std::sqrt(double(hd)));
  int64_t next = 0;
  for (size_t i = 0; i < seqs.size(); ++i) {
    const int64_t row0 = seqs[i].row0, row1 = seqs[i].row1, slot = seqs[i].slot, pos0 = seqs[i].pos0, bs = seqs[i].bs;
    const MaskKind mask = seqs[i].mask;
    if (row0 != next || row1 <= row0 || row1 > T || slot < 0 || slot >= S || pos0 < 0 || pos0 + (row1 - row0) > cap ||
        mask == MaskKind::Segments || (mask == MaskKind::Block && bs < 1))
      return fail(c.err, "DVL_RANGE", "cuda attention_batch: sequence %d has a bad layout", int(i));
    next = row1;
    AttnParams P{};
    P.Tq = row1 - row0, P.nh = nh, P.hd = hd, P.nkv = nkv, P.cap = cap, P.group = nh / nkv;
    P.kvLen = pos0 + P.Tq, P.qPos0 = pos0, P.scale = scale;
    P.mask = mask;
    P.bs = bs;
    P.q = dptr<const float>(q) + row0 * nh * hd;
    P.o = dptr<float>(o) + row0 * nh * hd;
    P.k = static_cast<const char*>(k.storage->data) + size_t(slot) * slot_bytes;
    P.v = static_cast<const char*>(v.storage->data) + size_t(slot) * slot_bytes;
    P.kv_dtype = int(k.dtype);
    if (dvl_status st = attention_launch(c, P)) return st;
  }
  if (next != T) return fail(c.err, "DVL_SHAPE", "cuda attention_batch: seqs do not cover q's rows");
  return 0;
}

void register_attention(std::vector<OpEntry>& t) {
  t.push_back({dvl::OpId::Attention, kF32, attention_run});
  t.push_back({dvl::OpId::AttentionBatch, kF32, attention_batch_run});
}

}  // namespace dvl_cuda
