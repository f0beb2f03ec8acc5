// attention_kernel.h — the inner loop of the flash-style attention op (attention.cpp), kept in
// a header so that attention.cpp (baseline flags), attention_avx2.cpp and attention_avx512.cpp
// compile the same plain C++ with their own ISA flags (the compiler vectorises the 16-lane
// accumulators below). Everything here is `static` on purpose: an inline symbol compiled with
// AVX flags must never be the copy the linker keeps for baseline code (see dtype.h).
//
// Legend: Tq query rows, nh query heads, nkv kv heads, group = nh / nkv, hd head dim,
// cap cache capacity. q f32 [Tq, nh, hd]; k, v [nkv, cap, hd] (f32|bf16|f16); o f32 [Tq, nh, hd].
// A work item is one kv head g and a run [r0, r1) of its Tq·group (query row, head) pairs,
// ordered query-major (r = i·group + hh, head h = g·group + hh), so a run shares K/V tiles.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "../../core/dtype.h"

namespace dvl {

struct AttnArgs {
  const float* q;
  const void* k;
  const void* v;
  float* o;
  DType kv_dtype;
  int64_t nh, nkv, group, hd, cap;
  float scale;
  const int64_t* lo;  // [Tq]: first visible key of query row i
  const int64_t* hi;  // [Tq]: one past the last visible key
  void (*cvt_bf16)(const uint16_t*, float*, int64_t);
  void (*cvt_f16)(const uint16_t*, float*, int64_t);
};

// Keys per tile: K and V tiles of about 16 KiB each stay in L1/L2 while every row of the run
// reads them.
static inline int64_t attn_tile(int64_t hd) { return hd >= 256 ? 16 : 4096 / hd; }

// Scratch floats an item needs: per row acc[hd] + m + l, the K/V tile copies, the scores.
static inline int64_t attn_scratch_floats(int64_t rows, int64_t hd) {
  const int64_t tile = attn_tile(hd);
  return rows * (hd + 2) + 2 * tile * hd + tile;
}

// NaN-propagating max: a NaN score must reach the output, never be skipped by a comparison.
static inline float attn_max(float a, float b) { return (a != a || b != b) ? std::numeric_limits<float>::quiet_NaN() : (b > a ? b : a); }

static inline float attn_dot(const float* a, const float* b, int64_t n) {
  float acc[16] = {0};
  int64_t d = 0;
  for (; d + 16 <= n; d += 16)
    for (int l = 0; l < 16; ++l) acc[l] += a[d + l] * b[d + l];
  float s = 0;
  for (; d < n; ++d) s += a[d] * b[d];
  for (int l = 0; l < 16; ++l) s += acc[l];
  return s;
}

static void attn_item(const AttnArgs& A, int64_t g, int64_t r0, int64_t r1, float* scratch) {
  const int64_t hd = A.hd, tile = attn_tile(hd), rows = r1 - r0;
  float* acc = scratch;            // [rows, hd]
  float* m = acc + rows * hd;      // [rows] running max (scaled scores)
  float* l = m + rows;             // [rows] running Σ exp(s − m)
  float* kbuf = l + rows;          // [tile, hd]
  float* vbuf = kbuf + tile * hd;  // [tile, hd]
  float* s = vbuf + tile * hd;     // [tile]
  std::memset(acc, 0, sizeof(float) * size_t(rows * hd));
  int64_t LO = INT64_MAX, HI = 0;
  for (int64_t r = 0; r < rows; ++r) {
    m[r] = -std::numeric_limits<float>::infinity();
    l[r] = 0;
    const int64_t i = (r0 + r) / A.group;
    if (A.lo[i] < A.hi[i]) {
      LO = A.lo[i] < LO ? A.lo[i] : LO;
      HI = A.hi[i] > HI ? A.hi[i] : HI;
    }
  }
  const size_t es = dtype_size(A.kv_dtype);
  const char* kh = static_cast<const char*>(A.k) + size_t(g * A.cap * hd) * es;
  const char* vh = static_cast<const char*>(A.v) + size_t(g * A.cap * hd) * es;
  for (int64_t j0 = LO; j0 < HI; j0 += tile) {
    const int64_t j1 = j0 + tile < HI ? j0 + tile : HI, nj = j1 - j0;
    const float *kt, *vt;
    if (A.kv_dtype == DType::F32) {
      kt = reinterpret_cast<const float*>(kh) + j0 * hd;
      vt = reinterpret_cast<const float*>(vh) + j0 * hd;
    } else {
      auto cvt = A.kv_dtype == DType::BF16 ? A.cvt_bf16 : A.cvt_f16;
      cvt(reinterpret_cast<const uint16_t*>(kh) + j0 * hd, kbuf, nj * hd);
      cvt(reinterpret_cast<const uint16_t*>(vh) + j0 * hd, vbuf, nj * hd);
      kt = kbuf;
      vt = vbuf;
    }
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t i = (r0 + r) / A.group, h = g * A.group + (r0 + r) % A.group;
      const int64_t a = A.lo[i] > j0 ? A.lo[i] : j0, b = A.hi[i] < j1 ? A.hi[i] : j1;
      if (a >= b) continue;
      const float* qr = A.q + (i * A.nh + h) * hd;
      float mt = -std::numeric_limits<float>::infinity();
      for (int64_t j = a; j < b; ++j) {
        s[j - j0] = attn_dot(qr, kt + (j - j0) * hd, hd) * A.scale;
        mt = attn_max(mt, s[j - j0]);
      }
      const float mn = attn_max(m[r], mt);
      // All scores so far −∞ (only with infinite inputs): nothing to add yet; a later finite
      // score takes over, and if none comes the row ends with l = 0 and becomes NaN below.
      if (mn == -std::numeric_limits<float>::infinity()) continue;
      const float corr = std::exp(m[r] - mn);
      float* ar = acc + r * hd;
      if (corr != 1.f)
        for (int64_t d = 0; d < hd; ++d) ar[d] *= corr;
      float ls = 0;
      for (int64_t j = a; j < b; ++j) {
        const float p = std::exp(s[j - j0] - mn);
        ls += p;
        const float* vr = vt + (j - j0) * hd;
        for (int64_t d = 0; d < hd; ++d) ar[d] += p * vr[d];
      }
      l[r] = l[r] * corr + ls;
      m[r] = mn;
    }
  }
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t i = (r0 + r) / A.group, h = g * A.group + (r0 + r) % A.group;
    float* orow = A.o + (i * A.nh + h) * hd;
    const float* ar = acc + r * hd;
    if (A.lo[i] >= A.hi[i]) {  // no visible key: zeros by contract
      std::memset(orow, 0, sizeof(float) * size_t(hd));
      continue;
    }
    const float inv = l[r] > 0 ? 1.f / l[r] : std::numeric_limits<float>::quiet_NaN();
    for (int64_t d = 0; d < hd; ++d) orow[d] = ar[d] * inv;
  }
}

}  // namespace dvl
