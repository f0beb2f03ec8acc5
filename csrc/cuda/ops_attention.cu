// ops_attention.cu — flash-style scaled dot-product attention over a KV cache on the GPU
// (csrc/cpu/ops/attention.cpp, spec §2.5, §5.3, §3.3 item 4; PERFORMANCE.md §c1).
//
// Legend: Tq query rows, nh query heads, nkv kv heads (GQA: head h reads kv head
// g = h / (nh/nkv)), hd head dim ≤ 512, cap cache capacity.
//   q f32 [Tq, nh, hd]; k, v f32|bf16|f16 [nkv, cap, hd] → o f32 [Tq, nh, hd]
// Masks are one visible key range [lo, hi) per query row i at absolute position p = qPos0 + i,
// exactly as the CPU op: causal [0, p+1), block [0, min(kvLen, (⌊p/bs⌋+1)·bs)), full
// [0, kvLen), segments [cu[s], cu[s+1]) for the segment holding i.
// One warp per (query row, head): the warp walks the visible keys 32 at a time, lane j scoring
// key j0 + j against the row's q (kept in shared memory), then the online-softmax update
//   m' = max(m, max s), p = e^(s − m'), l' = l·e^(m−m') + Σp, acc' = acc·e^(m−m') + Σ p·v
// with acc spread over the lanes (column d = lane + 32t). No [Tq, kvLen] matrix exists.
// Non-finite inputs as on the CPU: a NaN score (NaN in q or a visible key) makes the row NaN;
// only visible keys' values are read, so NaN in a masked value never leaks; a row whose
// visible scores are all −∞ is NaN, a row with no visible key is zeros. The CPU op's exp is a
// polynomial (1–2 ulp); this one is expf (≤ 2 ulp): results agree to a few ulp of the output.
// Throughput work left (PERFORMANCE.md §c1): K/V tiles in shared memory shared by the rows of
// a GQA group and a block, tensor-core Q·Kᵀ and P·V.
#include <cmath>
#include <string>
#include <vector>

#include "dtype.cuh"
#include "plugin.h"

namespace dvl_cuda {

using dvl::DType;
using dvl::Tensor;

struct AttnParams {
  const float* q;
  const void* k;
  const void* v;
  float* o;
  int kv_dtype;
  int64_t Tq, nh, nkv, group, hd, cap, kvLen, qPos0, bs;
  int mask;            // 0 full, 1 causal, 2 block, 3 segments
  const int64_t* cu;   // segments: [nseg + 1] on the device
  int64_t nseg;
  float scale;
};

static const int kWarps = 4;  // warps (rows) per block
static const int kMaxT = 16;  // 512 / 32 columns per lane

__device__ __forceinline__ float nanmax(float a, float b) { return (a != a || b != b) ? __int_as_float(0x7fc00000) : fmaxf(a, b); }

__global__ void __launch_bounds__(kWarps * 32) attention_kernel(const AttnParams P) {
  __shared__ float qs[kWarps][512];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t row = int64_t(blockIdx.x) * kWarps + warp;  // (i, h) = (row / nh, row % nh)
  if (row >= P.Tq * P.nh) return;  // whole warps leave together; no block barrier below
  const int64_t i = row / P.nh, h = row % P.nh, g = h / P.group, hd = P.hd;
  // Visible range of query row i.
  int64_t lo = 0, hi = P.kvLen;
  const int64_t p = P.qPos0 + i;
  if (P.mask == 1) hi = p + 1;
  else if (P.mask == 2) hi = min(P.kvLen, (p / P.bs + 1) * P.bs);
  else if (P.mask == 3) {
    int64_t a = 0, b = P.nseg;  // last s with cu[s] <= i (segments are non-decreasing)
    while (b - a > 1) {
      const int64_t mid = (a + b) / 2;
      if (P.cu[mid] <= i) a = mid;
      else b = mid;
    }
    lo = P.cu[a];
    hi = P.cu[a + 1];
  }
  float* orow = P.o + row * hd;
  if (lo >= hi) {
    for (int64_t d = lane; d < hd; d += 32) orow[d] = 0.f;
    return;
  }
  const float* qrow = P.q + row * hd;
  for (int64_t d = lane; d < hd; d += 32) qs[warp][d] = qrow[d];
  __syncwarp();
  const size_t es = P.kv_dtype == int(DType::F32) ? 4 : 2;
  const char* kh = static_cast<const char*>(P.k) + size_t(g * P.cap * hd) * es;
  const char* vh = static_cast<const char*>(P.v) + size_t(g * P.cap * hd) * es;
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
  P.kvLen = c.attrs.geti("kvLen", 0);
  P.qPos0 = c.attrs.geti("qPos0", 0);
  if (P.kvLen < 0 || P.kvLen > P.cap || P.qPos0 < 0) return fail(c.err, "DVL_RANGE", "cuda attention: kvLen / qPos0 out of range");
  P.scale = float(c.attrs.has("scale") ? c.attrs.get("scale", 1) : 1.0 / std::sqrt(double(P.hd)));
  const std::string mask = c.attrs.gets("mask", "");
  std::vector<int64_t> cu;
  if (mask == "full") P.mask = 0;
  else if (mask == "causal") P.mask = 1;
  else if (mask == "block") {
    P.mask = 2;
    P.bs = c.attrs.geti("blockSize", 1);
    if (P.bs < 1) return fail(c.err, "DVL_RANGE", "cuda attention: blockSize must be >= 1");
  } else if (mask == "segments") {
    P.mask = 3;
    const std::vector<double>* s = c.attrs.geta("segments");
    if (!s || s->size() < 2) return fail(c.err, "DVL_ARG", "cuda attention: segments missing");
    for (double d : *s) cu.push_back(int64_t(d));
    P.nseg = int64_t(cu.size()) - 1;
  } else {
    return fail(c.err, "DVL_ARG", "cuda attention: unknown mask '%s'", mask.c_str());
  }
  if ((P.mask == 1 || P.mask == 2) && P.qPos0 + P.Tq > P.kvLen)
    return fail(c.err, "DVL_RANGE", "cuda attention: query positions exceed kvLen");
  const int64_t rows = P.Tq * P.nh;
  if (rows == 0 || P.hd == 0) return 0;
  if ((rows + kWarps - 1) / kWarps > 0x7fffffff) return fail(c.err, "DVL_SHAPE", "cuda attention: too many rows for one grid");
  P.q = dptr<const float>(q), P.k = k.storage->data, P.v = v.storage->data, P.o = dptr<float>(o), P.kv_dtype = int(k.dtype);
  int64_t* dcu = nullptr;
  if (P.mask == 3) {
    // The boundaries go up through a stream-ordered allocation freed after the kernel.
    cudaError_t e = cudaMallocAsync(&dcu, cu.size() * 8, c.stream);
    if (e == cudaSuccess) e = cudaMemcpyAsync(dcu, cu.data(), cu.size() * 8, cudaMemcpyHostToDevice, c.stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize(c.stream);  // the host vector dies on return
    if (e != cudaSuccess) {
      if (dcu) cudaFreeAsync(dcu, c.stream);
      return fail_cuda(c.err, e, "cuda attention: uploading segments");
    }
    P.cu = dcu;
  }
  attention_kernel<<<unsigned((rows + kWarps - 1) / kWarps), kWarps * 32, 0, c.stream>>>(P);
  dvl_status st = check_launch(c, "attention_kernel");
  if (dcu) cudaFreeAsync(dcu, c.stream);
  return st;
}

void register_attention(std::vector<OpEntry>& t) { t.push_back({"attention", kF32, attention_run}); }

}  // namespace dvl_cuda
