// attention_kernel.h — the inner loop of the flash-style attention op (attention.cpp), kept in
// a header so that attention.cpp (baseline flags), attention_avx2.cpp and attention_avx512.cpp
// compile the same code with their own ISA flags and vector width (DVL_ATTN_VW). Everything
// here is `static` on purpose: an inline symbol compiled with AVX flags must never be the copy
// the linker keeps for baseline code (see dtype.h).
//
// Legend: Tq query rows, nh query heads, nkv kv heads, group = nh / nkv, hd head dim (hdp: hd
// rounded up to 16), cap cache capacity. q f32 [Tq, nh, hd]; k, v [nkv, cap, hd]
// (f32|bf16|f16); o f32 [Tq, nh, hd].
//
// A work item is one kv head g and a run [r0, r1) of its Tq·group (query row, head) pairs,
// ordered query-major (r = i·group + hh, head h = g·group + hh). The item walks its keys in
// tiles of TILE = attn_tile(hd) positions aligned to absolute multiples of TILE; per tile it
//   1. copies K transposed (Kt [hd, TILE]) and V padded (Vb [TILE, hdp]) into f32 scratch, so
//      every query row of the item (up to 64: a whole GQA group of a block) reuses them;
//   2. per block of R rows (kAttnRB: 8 at head dims ≤ 32 with 512-bit vectors, else 4):
//      S = Q·Ktᵀ as an R×16·G register block, scaled, masked to each row's visible range
//      [lo, hi) (−∞ outside), then the online-softmax update m' = max(m, max S),
//      p = exp(S − m'), l' = l·e^(m−m') + Σp, acc' = acc·e^(m−m') + P·V with P·V as an R×16·G
//      register block.
// At head dims ≤ 32, items of more than 32 rows run attn_item_lanes_t instead: the same
// arithmetic with the query rows in the vector lanes (see its comment).
// Every row's arithmetic depends only on its own keys and the absolute tile grid, never on
// which rows share an item, so thread counts and prefill-vs-blockwise splits give identical
// bits (test/ops/attention.test.ts checks both).
// exp is expf_lanes.h's Cephes polynomial on vectors (≈ 1–2 ulp, 0 below −87.3, NaN kept);
// libm's expf is scalar.
// A V tile holding NaN/Inf takes a slower per-row path that skips keys a row cannot see, so
// 0 · NaN from a masked key never poisons a row (only the rows that see the key turn NaN).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "../../core/dtype.h"
#include "../expf_lanes.h"
#if defined(__AVX2__)
#include <immintrin.h>
#endif

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
  // K/V tiles converted once per call for all items (attn_fill_tiles), or null: each item
  // converts its own. Kv head g's tile ti (keys from (tile0 + ti)·T) is Kt at
  // tiles + (g·ntiles + ti)·attn_tile_floats(hd), its Vb right after; finite[g·span + j − key0]
  // says whether value row j is finite.
  const float* tiles = nullptr;
  const uint8_t* finite = nullptr;
  int64_t tile0 = 0, ntiles = 0, key0 = 0, span = 0;
  // attn_item_t even at head dims ≤ 32, where attn_item_lanes_t runs otherwise (the attention
  // op's rowKernel attribute: the test that the two kernels agree bit for bit).
  bool rows_kernel = false;
  // Products in bf16 (the op's bf16 attribute; only attention_avx512_bf16.cpp acts on it, at
  // even head dims): see "bf16 products" below.
  bool bf16 = false;
};

static const int64_t kAttnMaxRows = 64;  // query rows per work item

// Keys per tile, by head dim: 64, or 256 at head dims ≤ 32 (the bundled models' tower, 24, and
// decoder, 32), where each tile's softmax bookkeeping per row (max, sum, rescale) costs as much
// as its dot products: one 256-key tile took a 252-patch tower call from 0.40 to 0.32 ms on one
// Zen 5 core. At head dim 64-128 a 256-key tile (64-128 KB of K and V) leaves L1 and a block
// step's attention ran 2× slower (bench/RESULTS.md). A function of hd only, so every split of a
// call still sees the same tile grid.
static inline int64_t attn_tile(int64_t hd) { return hd <= 32 ? 256 : 64; }

static inline int64_t attn_round16(int64_t n) { return (n + 15) / 16 * 16; }

// Floats of one converted tile: Kt [hd, T] then Vb [T, hdp].
static inline int64_t attn_tile_floats(int64_t hd) { return hd * attn_tile(hd) + attn_tile(hd) * attn_round16(hd); }

// Scratch floats an item needs (see the carve-up at the top of attn_item).
static inline int64_t attn_scratch_floats(int64_t hd) {
  const int64_t hdp = attn_round16(hd), R = kAttnMaxRows, T = attn_tile(hd), hd2 = (hd + 1) / 2;
  // The bf16 products' pairs (32-bit words): queries [64, hd/2], K [hd/2, T], V [T/2, hdp], and
  // weights [8, T/2] (rows kernel) or [2, T/2, 16] (lanes kernel).
  const int64_t pairs = R * hd2 + hd2 * T + T / 2 * hdp + 2 * T / 2 * 16;
  const int64_t rows_kernel = R * hd + R * hdp + 2 * R + hd * T + T * hdp + 2 * 8 * T;  // S, P: [≤ 8, T]
  const int64_t lanes_kernel = 2 * R * hd + 2 * R + hd * T + T * hdp + 2 * T * 16;     // S: [2, T, ≤ 16 lanes]
  return std::max(rows_kernel, lanes_kernel) + pairs;
}

static inline float attn_max(float a, float b) {  // NaN-propagating
  return (a != a || b != b) ? std::numeric_limits<float>::quiet_NaN() : (b > a ? b : a);
}

// Vector width in floats: each including file defines DVL_ATTN_VW for its ISA (4 = SSE/NEON
// baseline, 8 = AVX2, 16 = AVX-512). GCC/Clang vector extensions: plain arithmetic on fixed-size
// vectors, no intrinsics, lowered to whatever the file's flags allow.
#ifndef DVL_ATTN_VW
#error "define DVL_ATTN_VW (4, 8 or 16) before including attention_kernel.h"
#endif
typedef float attn_fv __attribute__((vector_size(DVL_ATTN_VW * 4)));
typedef int32_t attn_iv __attribute__((vector_size(DVL_ATTN_VW * 4)));
static const int kAttnVW = DVL_ATTN_VW;
static const int kAttnNV = 16 / DVL_ATTN_VW;  // vectors per 16 columns

static inline attn_fv attn_ld(const float* p) {
  attn_fv v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
static inline void attn_st(float* p, attn_fv v) { std::memcpy(p, &v, sizeof v); }
static inline attn_fv attn_splat(float x) { return attn_fv{} + x; }
// x in every lane, exactly (−0 stays −0, which splat's + 0 would turn into +0): one broadcast,
// which an FMA can take straight from memory.
static inline attn_fv attn_bcast(float x) { return x - attn_fv{}; }
static inline attn_iv attn_iota() {
  attn_iv v;
  for (int i = 0; i < kAttnVW; ++i) v[i] = i;
  return v;
}
static inline bool attn_any(attn_iv m) {
  int32_t a = 0;
  for (int i = 0; i < kAttnVW; ++i) a |= m[i];
  return a != 0;
}
// Max of the lanes (no NaN in them: the caller tracks NaN apart).
static inline float attn_hmax(attn_fv v) {
  float r = v[0];
  for (int i = 1; i < kAttnVW; ++i) r = v[i] > r ? v[i] : r;
  return r;
}
// Sum of the lanes, pairwise: lane i += lane i + w for w = VW/2, …, 1 (lane order fixed: the
// result depends on the values only). In registers: through a stored array it cost a
// store-forwarding stall per row and tile (8 % of a block step's attention).
static inline float attn_hsum(attn_fv v) {
#if DVL_ATTN_VW == 16
  typedef float f8 __attribute__((vector_size(32)));
  const f8 a = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7) + __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
#elif DVL_ATTN_VW == 8
  typedef float f8 __attribute__((vector_size(32)));
  const f8 a = v;
#endif
#if DVL_ATTN_VW >= 8
  typedef float f4 __attribute__((vector_size(16)));
  const f4 b = __builtin_shufflevector(a, a, 0, 1, 2, 3) + __builtin_shufflevector(a, a, 4, 5, 6, 7);
#else
  typedef float f4 __attribute__((vector_size(16)));
  const f4 b = v;
#endif
  const float c0 = b[0] + b[2], c1 = b[1] + b[3];
  return c0 + c1;
}

// y = e^x (expf_lanes.h) for x ≤ 0, −∞ or NaN, n a multiple of 16.
static inline void attn_exp(const float* x, float* y, int64_t n) {
  for (int64_t b = 0; b < n; b += kAttnVW) {
    attn_fv v = attn_ld(x + b);
    expf_lanes<attn_fv, attn_iv>(v);
    attn_st(y + b, v);
  }
}

static inline float attn_exp1(float x) {
  float in[16] = {x}, out[16];
  attn_exp(in, out, 16);
  return out[0];
}

// Column groups of 16 per register block: 2 with 512-bit vectors (4 rows × 2 groups = 8
// accumulator chains, enough to cover the FMA latency on two ports — 1 group left the AVX-512
// kernel latency-bound at half its FMA rate), 1 with narrower vectors (AVX2 already has 4 × 2
// vectors per group, and 16 registers). Each accumulator still sums in the same order.
static const int kAttnG = kAttnNV == 1 ? 2 : 1;

// Query rows per register block: 8 with 512-bit vectors (8 rows × 2 column vectors = 16
// accumulator chains: with 8, a 4-row block's chains sat right at the FMA latency × ports
// product and the products ran well under the FMA rate), 4 with narrower vectors (16 ymm
// registers hold 4 × 2 accumulators and their operands, not 8 × 2). A row's sums are the same
// sequence of FMAs in either, so the block size never changes a bit.
static const int kAttnRB = kAttnNV == 1 ? 8 : 4;

// S[R][16·G] = Q[R rows, hd] · Kt[hd, 16·G keys] (Kt and S row stride T, the tile's keys): a
// register block, one broadcast of q per row and column vector.
template <int R, int G, int64_t T>
static inline void attn_qk_block(const float* Q, int64_t hd, const float* Kt, float* S) {
  attn_fv a[R][G * kAttnNV] = {};
  for (int64_t d = 0; d < hd; ++d) {
    attn_fv k[G * kAttnNV];
    for (int c = 0; c < G * kAttnNV; ++c) k[c] = attn_ld(Kt + d * T + c * kAttnVW);
    for (int i = 0; i < R; ++i) {
      const float qv = Q[i * hd + d];
      for (int c = 0; c < G * kAttnNV; ++c) a[i][c] += qv * k[c];
    }
  }
  for (int i = 0; i < R; ++i)
    for (int c = 0; c < G * kAttnNV; ++c) attn_st(S + i * T + c * kAttnVW, a[i][c]);
}

// A[R rows, 16·G cols] += P[R rows, nj keys] · Vb[nj, 16·G cols] (A and Vb row stride hdp, P
// row stride T).
template <int R, int G, int64_t T>
static inline void attn_pv_block(const float* P, int64_t nj, const float* Vb, int64_t hdp, float* A) {
  attn_fv a[R][G * kAttnNV];
  for (int i = 0; i < R; ++i)
    for (int c = 0; c < G * kAttnNV; ++c) a[i][c] = attn_ld(A + i * hdp + c * kAttnVW);
  for (int64_t j = 0; j < nj; ++j) {
    attn_fv v[G * kAttnNV];
    for (int c = 0; c < G * kAttnNV; ++c) v[c] = attn_ld(Vb + j * hdp + c * kAttnVW);
    for (int i = 0; i < R; ++i) {
      const float pv = P[i * T + j];
      for (int c = 0; c < G * kAttnNV; ++c) a[i][c] += pv * v[c];
    }
  }
  for (int i = 0; i < R; ++i)
    for (int c = 0; c < G * kAttnNV; ++c) attn_st(A + i * hdp + c * kAttnVW, a[i][c]);
}

// The largest magnitude bits (sign cleared) of the value rows seen so far, per lane of the
// file's vector width (attn_value_row): an f32 is Inf or NaN iff its magnitude bits are ≥
// 0x7f800000, so one max per vector and one comparison per tile test every element (a
// compare-and-OR per vector and a reduction per row cost as much as the conversion; wider
// generic vectors were split into scalar code on AVX2). A bf16 element converts to the f32
// with the same upper half; every f16 Inf/NaN converts to an f32 Inf/NaN.
// Held as signed 32-bit lanes (magnitude bits are < 2³¹): SSE2 has a signed compare only.
typedef uint16_t attn_hv __attribute__((vector_size(DVL_ATTN_VW * 2)));
static const int32_t kAttnInfBits = 0x7f800000;

// mag = max(mag, a) per lane; on the 16-byte baseline a compare-and-OR (SSE2 has no 32-bit
// max: the emulated one made the fill 20 % slower), which keeps the test's outcome.
static inline void attn_fold_mag(attn_iv& mag, attn_iv a) {
#if DVL_ATTN_VW == 4
  mag |= (a > kAttnInfBits - 1) & kAttnInfBits;
#else
  mag = a > mag ? a : mag;
#endif
}

// The scalar tail's fold: a max into lane 0 (also right for the baseline's OR-ed flags).
static inline void attn_fold_mag1(attn_iv& mag, uint32_t bits) {
  const int32_t a = int32_t(bits & 0x7fffffffu);
  mag[0] = a > mag[0] ? a : mag[0];
}

// A value row of hd elements converted to f32 into vr (hdp floats, padding zeroed): bf16
// inline (a shift, exact), f16 through the dispatch table's converter, f32 copied; folds the
// row's magnitude bits into `mag`.
static inline void attn_value_row(const AttnArgs& A, const void* src, int64_t hd, int64_t hdp, float* vr, attn_iv& mag) {
  const attn_iv abs_bits = attn_iv{} + 0x7fffffff;
  int64_t d = 0;
  if (A.kv_dtype == DType::BF16) {
    const uint16_t* s = static_cast<const uint16_t*>(src);
    for (; d + kAttnVW <= hd; d += kAttnVW) {
      attn_hv h;
      std::memcpy(&h, s + d, sizeof h);
      const attn_iv w = __builtin_convertvector(h, attn_iv) << 16;
      std::memcpy(vr + d, &w, sizeof w);
      attn_fold_mag(mag, w & abs_bits);
    }
    for (; d < hd; ++d) {
      const uint32_t w = uint32_t(s[d]) << 16;
      std::memcpy(vr + d, &w, 4);
      attn_fold_mag1(mag, w);
    }
  } else {
    if (A.kv_dtype == DType::F32) std::memcpy(vr, src, sizeof(float) * size_t(hd));
    else A.cvt_f16(static_cast<const uint16_t*>(src), vr, hd);
    for (; d + kAttnVW <= hd; d += kAttnVW) {
      attn_iv w;
      std::memcpy(&w, vr + d, sizeof w);
      attn_fold_mag(mag, w & abs_bits);
    }
    for (; d < hd; ++d) {
      uint32_t w;
      std::memcpy(&w, vr + d, 4);
      attn_fold_mag1(mag, w);
    }
  }
  for (int64_t e = hd; e < hdp; ++e) vr[e] = 0.f;
}

// Whether every element folded into `mag` was finite.
static inline bool attn_all_finite(const attn_iv& mag) {
  int32_t m = 0;
  for (int i = 0; i < kAttnVW; ++i) m = mag[i] > m ? mag[i] : m;
  return m < kAttnInfBits;
}

// GCC 12 warns that its own AVX-512 intrinsics (unpack, shift) read an uninitialised
// pass-through operand: a false positive, silenced for the transposition code only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// Kt columns [c0, c1) (multiples of the vector width VW, relative to key j0) from the K rows
// of keys [j0 + max(c0, s0), j0 + min(c1, nj)), zeros in the rest of the range: VW keys at a
// time, each key's row read as 32-bit words (a bf16 pair or an f32) in blocks of VW words, the
// VW × VW block transposed in registers, then one vector store per dimension — instead of hd
// scattered scalar stores per key, which were two thirds of a decode step's attention
// (gathers were no better). Returns false where this ISA has no such path (the caller then
// copies per key).
#if defined(__AVX512F__) && DVL_ATTN_VW == 16
// r[i] = word row i → r[c] = word column c (16 × 16 32-bit words).
static inline void attn_transpose16(__m512i r[16]) {
  __m512i t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {  // r[i + k], 128-bit lane l: column 4l + k of rows i..i+3
    r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
    r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
    r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
    r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
  }
  for (int k = 0; k < 4; ++k) {  // the 4 × 4 transpose of 128-bit lanes across r[k], r[4+k], r[8+k], r[12+k]
    const __m512i x0 = _mm512_shuffle_i32x4(r[k], r[4 + k], 0x44), x1 = _mm512_shuffle_i32x4(r[k], r[4 + k], 0xee);
    const __m512i x2 = _mm512_shuffle_i32x4(r[8 + k], r[12 + k], 0x44), x3 = _mm512_shuffle_i32x4(r[8 + k], r[12 + k], 0xee);
    t[k] = _mm512_shuffle_i32x4(x0, x2, 0x88);
    t[4 + k] = _mm512_shuffle_i32x4(x0, x2, 0xdd);
    t[8 + k] = _mm512_shuffle_i32x4(x1, x3, 0x88);
    t[12 + k] = _mm512_shuffle_i32x4(x1, x3, 0xdd);
  }
  for (int i = 0; i < 16; ++i) r[i] = t[i];
}
#elif defined(__AVX2__) && DVL_ATTN_VW == 8
// r[i] = word row i → r[c] = word column c (8 × 8 32-bit words).
static inline void attn_transpose8(__m256i r[8]) {
  __m256i t[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_epi32(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    r[i] = _mm256_unpacklo_epi64(t[i], t[i + 2]);
    r[i + 1] = _mm256_unpackhi_epi64(t[i], t[i + 2]);
    r[i + 2] = _mm256_unpacklo_epi64(t[i + 1], t[i + 3]);
    r[i + 3] = _mm256_unpackhi_epi64(t[i + 1], t[i + 3]);
  }
  for (int k = 0; k < 4; ++k) {
    t[k] = _mm256_permute2x128_si256(r[k], r[4 + k], 0x20);
    t[4 + k] = _mm256_permute2x128_si256(r[k], r[4 + k], 0x31);
  }
  for (int i = 0; i < 8; ++i) r[i] = t[i];
}
#endif

static inline bool attn_transpose_kt(const AttnArgs& A, const char* kh, int64_t j0, int64_t s0, int64_t nj, int64_t c0, int64_t c1,
                                     float* Kt, int64_t T) {
#if (defined(__AVX512F__) && DVL_ATTN_VW == 16) || (defined(__AVX2__) && DVL_ATTN_VW == 8)
  const int64_t hd = A.hd;
  if (A.kv_dtype == DType::F16 || (A.kv_dtype == DType::BF16 && (hd & 1))) return false;
  constexpr int W = DVL_ATTN_VW;
  const bool bf16 = A.kv_dtype == DType::BF16;
  const int64_t words = bf16 ? hd / 2 : hd;  // 32-bit words per key row
  const uint32_t* kw = reinterpret_cast<const uint32_t*>(kh);
#if DVL_ATTN_VW == 16
  typedef __m512i vec;
#else
  typedef __m256i vec;
#endif
  for (int64_t c = c0; c < c1; c += W) {
    for (int64_t w0 = 0; w0 < words; w0 += W) {
      const int64_t nw = words - w0 < W ? words - w0 : W;
      vec r[W];
#if DVL_ATTN_VW == 16
      const __mmask16 wm = __mmask16((1u << nw) - 1);
      for (int i = 0; i < W; ++i)
        r[i] = c + i >= s0 && c + i < nj ? _mm512_maskz_loadu_epi32(wm, kw + (j0 + c + i) * words + w0) : _mm512_setzero_si512();
      attn_transpose16(r);
      const vec hi = _mm512_set1_epi32(int32_t(0xffff0000u));
#else
      int32_t mk[8];
      for (int i = 0; i < 8; ++i) mk[i] = i < nw ? -1 : 0;
      const __m256i wm = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(mk));
      for (int i = 0; i < W; ++i)
        r[i] = c + i >= s0 && c + i < nj ? _mm256_maskload_epi32(reinterpret_cast<const int*>(kw + (j0 + c + i) * words + w0), wm) : _mm256_setzero_si256();
      attn_transpose8(r);
      const vec hi = _mm256_set1_epi32(int32_t(0xffff0000u));
#endif
      for (int64_t x = 0; x < nw; ++x) {
        if (bf16) {
          const int64_t d = 2 * (w0 + x);
#if DVL_ATTN_VW == 16
          _mm512_storeu_si512(Kt + d * T + c, _mm512_slli_epi32(r[x], 16));
          _mm512_storeu_si512(Kt + (d + 1) * T + c, _mm512_and_si512(r[x], hi));
#else
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(Kt + d * T + c), _mm256_slli_epi32(r[x], 16));
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(Kt + (d + 1) * T + c), _mm256_and_si256(r[x], hi));
#endif
        } else {
#if DVL_ATTN_VW == 16
          _mm512_storeu_si512(Kt + (w0 + x) * T + c, r[x]);
#else
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(Kt + (w0 + x) * T + c), r[x]);
#endif
        }
      }
    }
  }
  return true;
#else
  (void)A, (void)kh, (void)j0, (void)s0, (void)nj, (void)c0, (void)c1, (void)Kt, (void)T;
  return false;
#endif
}

#pragma GCC diagnostic pop

// Kv head g's keys [j0, j1) as one tile: Kt [hd, T] transposed and Vb [T, hdp], f32. Only what
// attn_item_t reads is written: Kt's columns [0, round16(j1 − j0)) — keys before a0 and from j1
// on as zeros (never read from memory) — and Vb's rows [a0, j1) with their padding columns
// zeroed (a full clear of a 256-key tile was 64 KB of memset per kv head in every block step).
// Returns whether every value row of [a0, j1) is finite; `finite` (if given) gets one flag per
// key of [a0, j1). The values are exact conversions, so how the tile is filled (gathers or
// per key) never changes a bit of what the products read.
static bool attn_fill_tile(const AttnArgs& A, int64_t g, int64_t j0, int64_t a0, int64_t j1, float* Kt, float* Vb, uint8_t* finite) {
  const int64_t hd = A.hd, hdp = attn_round16(hd), T = attn_tile(hd), nj = j1 - j0;
  const size_t es = dtype_size(A.kv_dtype);
  const char* kh = static_cast<const char*>(A.k) + size_t(g * A.cap * hd) * es;
  const char* vh = static_cast<const char*>(A.v) + size_t(g * A.cap * hd) * es;
  const int64_t s0 = a0 - j0, njp = attn_round16(nj);
  // K: whole vectors before s0 are zeros; the gathered range [c0, njp) zeroes its own lanes.
  const int64_t c0 = s0 / kAttnVW * kAttnVW;
  if (attn_transpose_kt(A, kh, j0, s0, nj, c0, njp, Kt, T)) {
    for (int64_t d = 0; d < hd; ++d) std::memset(Kt + d * T, 0, sizeof(float) * size_t(c0));
  } else {
    float row[512];  // one converted K row (hd ≤ 512 is checked at plan time)
    for (int64_t d = 0; d < hd; ++d) {
      std::memset(Kt + d * T, 0, sizeof(float) * size_t(s0));
      std::memset(Kt + d * T + nj, 0, sizeof(float) * size_t(njp - nj));
    }
    for (int64_t j = s0; j < nj; ++j) {
      const size_t off = size_t((j0 + j) * hd);
      const float* kr;
      if (A.kv_dtype == DType::F32) {
        kr = reinterpret_cast<const float*>(kh) + off;
      } else {
        auto cvt = A.kv_dtype == DType::BF16 ? A.cvt_bf16 : A.cvt_f16;
        cvt(reinterpret_cast<const uint16_t*>(kh) + off, row, hd);
        kr = row;
      }
      for (int64_t d = 0; d < hd; ++d) Kt[d * T + j] = kr[d];
    }
  }
  // V: rows [s0, nj), converted and padded, tested for Inf/NaN as a whole; per row only when
  // something is not finite (the converted rows are exact, so testing them is the same test).
  attn_iv mag = {};
  for (int64_t j = s0; j < nj; ++j) attn_value_row(A, vh + size_t((j0 + j) * hd) * es, hd, hdp, Vb + j * hdp, mag);
  if (attn_all_finite(mag)) {
    if (finite) std::memset(finite, 1, size_t(nj - s0));
    return true;
  }
  if (finite)
    for (int64_t j = s0; j < nj; ++j) {
      bool ok = true;
      for (int64_t d = 0; d < hd; ++d) {
        uint32_t w;
        std::memcpy(&w, Vb + j * hdp + d, 4);
        ok = ok && int32_t(w & 0x7fffffffu) < kAttnInfBits;
      }
      finite[j - s0] = ok;
    }
  return false;
}

// Kv head g's tile of keys [j0, j1) (read from a0 on) for an item: the call's shared tile (Kt
// and Vb pointed into it), or this item's own copy filled into Kt and Vb. Returns whether the
// value rows of [a0, j1) are all finite.
static inline bool attn_tile_at(const AttnArgs& A, int64_t g, int64_t j0, int64_t a0, int64_t j1, int64_t T, float*& Kt, float*& Vb) {
  if (!A.tiles) return attn_fill_tile(A, g, j0, a0, j1, Kt, Vb, nullptr);
  const int64_t ti = j0 / T - A.tile0;
  Kt = const_cast<float*>(A.tiles) + (g * A.ntiles + ti) * attn_tile_floats(A.hd);
  Vb = Kt + A.hd * T;
  const uint8_t* fin = A.finite + g * A.span + (a0 - A.key0);
  bool finite = true;
  for (int64_t j = 0; j < j1 - a0; ++j) finite = finite && fin[j];
  return finite;
}

// ---- bf16 products (the op's bf16 attribute, avx512_bf16 only) -----------------------------
//
// Where the level has vdpbf16ps (attention_avx512_bf16.cpp) and the head dim is even, an op
// with the bf16 attribute (the models set it under precision 'fast') runs both products on
// bf16 pairs: q and k rounded to bf16 (round to nearest even, as the fast matmuls round their
// activations), each score one vdpbf16ps per pair of dimensions — two products added into the
// f32 score — and likewise the weights p (rounded to bf16 after the f32 softmax bookkeeping,
// which stays as above: max, exp, Σp over the f32 weights) and v, one vdpbf16ps per pair of keys.
// Half the multiply instructions of the f32 FMAs. The operands as 32-bit pair words:
//   QP   a query row's dims (2p, 2p + 1)            adjacent in the row: one conversion
//   KtP  [hd/2, T]: key j's dims (2p, 2p + 1)        from Kt's rows 2p, 2p + 1 (zipped)
//   VbP  [T/2, hdp]: keys (2q, 2q + 1)'s column      from Vb's rows 2q, 2q + 1 (zipped); a row
//                                                    outside the tile's read keys as zeros
//   PP   a row's weights of keys (2q, 2q + 1)        adjacent in the row (rows kernel); zipped
//                                                    from two keys' lane vectors (lanes kernel)
// Key pairs start at even keys of the absolute tile grid, so every item and both kernels pair
// alike; a pair holding a key a row does not see adds its 0 weight times a finite (or zero)
// value: exactly 0, so the two kernels and any split into items still agree bit for bit (a
// score or an accumulator takes the same sequence of vdpbf16ps in both). A tile whose values
// hold Inf/NaN takes the f32 P·V path of its kernel (only the rows that see them turn NaN).
// vdpbf16ps treats subnormal inputs as zero and flushes subnormal results.
#if defined(__AVX512BF16__) && DVL_ATTN_VW == 16
#define DVL_ATTN_BF16 1
// 16 pair words (a[k], b[k]), a in the low half.
static inline __m512i attn_bf16_zip(__m512 a, __m512 b) {
  alignas(64) static const uint16_t kZip[32] = {0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23,
                                                8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
  const __m512i x = (__m512i)_mm512_cvtne2ps_pbh(b, a);  // bf16 a[0..15], then b[0..15]
  return _mm512_permutexvar_epi16(_mm512_load_si512(kZip), x);
}

// n floats of x (n even) → n/2 words pairing adjacent elements (x[2k] in the low half).
static inline void attn_bf16_adjacent(const float* x, int64_t n, uint32_t* out) {
  int64_t i = 0;
  for (; i + 32 <= n; i += 32)
    _mm512_storeu_si512(out + i / 2, (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(x + i)));
  if (i < n) {
    const int64_t m = n - i;
    const __mmask16 ml = __mmask16(m >= 16 ? 0xffffu : (1u << m) - 1), mh = __mmask16(m > 16 ? (1u << (m - 16)) - 1 : 0);
    const __m512i w = (__m512i)_mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(mh, x + i + 16), _mm512_maskz_loadu_ps(ml, x + i));
    _mm512_mask_storeu_epi32(out + i / 2, __mmask16((1u << (m / 2)) - 1), w);
  }
}

// KtP columns [c0, c1) (multiples of 16) from Kt [hd, T].
static inline void attn_bf16_kt(const float* Kt, int64_t hd2, int64_t T, int64_t c0, int64_t c1, uint32_t* KtP) {
  for (int64_t p = 0; p < hd2; ++p)
    for (int64_t c = c0; c < c1; c += 16)
      _mm512_storeu_si512(KtP + p * T + c, attn_bf16_zip(_mm512_loadu_ps(Kt + 2 * p * T + c), _mm512_loadu_ps(Kt + (2 * p + 1) * T + c)));
}

// VbP pairs [q0, q1) from Vb [T, hdp]; Vb's rows outside [va, vb) (not filled) count as zeros.
static inline void attn_bf16_vb(const float* Vb, int64_t hdp, int64_t q0, int64_t q1, int64_t va, int64_t vb, uint32_t* VbP) {
  const __m512 z = _mm512_setzero_ps();
  for (int64_t q = q0; q < q1; ++q) {
    const bool in0 = 2 * q >= va && 2 * q < vb, in1 = 2 * q + 1 >= va && 2 * q + 1 < vb;
    for (int64_t c = 0; c < hdp; c += 16) {
      const __m512 a = in0 ? _mm512_loadu_ps(Vb + 2 * q * hdp + c) : z, b = in1 ? _mm512_loadu_ps(Vb + (2 * q + 1) * hdp + c) : z;
      _mm512_storeu_si512(VbP + q * hdp + c, attn_bf16_zip(a, b));
    }
  }
}

static inline __m512 attn_dp(__m512 acc, __m512i a, __m512i b) { return _mm512_dpbf16_ps(acc, (__m512bh)a, (__m512bh)b); }

// attn_qk_block on pairs: S[R][16·G] = Q · K, QP rows of hd2 words, KtP row stride T.
template <int R, int G, int64_t T>
static inline void attn_qk_block_bf16(const uint32_t* QP, int64_t hd2, const uint32_t* KtP, float* S) {
  __m512 a[R][G];
  for (int i = 0; i < R; ++i)
    for (int c = 0; c < G; ++c) a[i][c] = _mm512_setzero_ps();
  for (int64_t p = 0; p < hd2; ++p) {
    __m512i k[G];
    for (int c = 0; c < G; ++c) k[c] = _mm512_loadu_si512(KtP + p * T + 16 * c);
    for (int i = 0; i < R; ++i) {
      const __m512i q = _mm512_set1_epi32(int32_t(QP[i * hd2 + p]));
      for (int c = 0; c < G; ++c) a[i][c] = attn_dp(a[i][c], q, k[c]);
    }
  }
  for (int i = 0; i < R; ++i)
    for (int c = 0; c < G; ++c) _mm512_storeu_ps(S + i * T + 16 * c, a[i][c]);
}

// attn_pv_block on pairs: A[R][16·G] += Σ_{q ∈ [q0, q1)} PP[i][q] · VbP[q] (PP row stride T/2,
// A and VbP row stride hdp).
template <int R, int G, int64_t T>
static inline void attn_pv_block_bf16(const uint32_t* PP, int64_t q0, int64_t q1, const uint32_t* VbP, int64_t hdp, float* A) {
  __m512 a[R][G];
  for (int i = 0; i < R; ++i)
    for (int c = 0; c < G; ++c) a[i][c] = _mm512_loadu_ps(A + i * hdp + 16 * c);
  for (int64_t q = q0; q < q1; ++q) {
    __m512i v[G];
    for (int c = 0; c < G; ++c) v[c] = _mm512_loadu_si512(VbP + q * hdp + 16 * c);
    for (int i = 0; i < R; ++i) {
      const __m512i pp = _mm512_set1_epi32(int32_t(PP[i * (T / 2) + q]));
      for (int c = 0; c < G; ++c) a[i][c] = attn_dp(a[i][c], pp, v[c]);
    }
  }
  for (int i = 0; i < R; ++i)
    for (int c = 0; c < G; ++c) _mm512_storeu_ps(A + i * hdp + 16 * c, a[i][c]);
}

// attn_lanes_qk on pairs: S[g][j][16] for NG lane groups and NK keys from j; QPL [groups][hd2][16].
template <int NG, int NK>
static inline void attn_lanes_qk_bf16(const uint32_t* QPL, int64_t qs, int64_t hd2, const uint32_t* KtP, int64_t T, int64_t j, float* S, int64_t ss) {
  __m512 a[NG][NK];
  for (int g = 0; g < NG; ++g)
    for (int k = 0; k < NK; ++k) a[g][k] = _mm512_setzero_ps();
  for (int64_t p = 0; p < hd2; ++p) {
    __m512i qv[NG];
    for (int g = 0; g < NG; ++g) qv[g] = _mm512_loadu_si512(QPL + g * qs + p * 16);
#pragma GCC unroll 16
    for (int k = 0; k < NK; ++k) {
      const __m512i kv = _mm512_set1_epi32(int32_t(KtP[p * T + j + k]));
      for (int g = 0; g < NG; ++g) a[g][k] = attn_dp(a[g][k], qv[g], kv);
    }
  }
  for (int g = 0; g < NG; ++g)
    for (int k = 0; k < NK; ++k) _mm512_storeu_ps(S + g * ss + (j + k) * 16, a[g][k]);
}

// attn_lanes_pv on pairs: acc[d0 .. d0 + DC) += PPL[q] · VbP[q][d] for pairs q of [q0, q1).
template <int DC>
static inline void attn_lanes_pv_bf16(const uint32_t* PPL, int64_t q0, int64_t q1, const uint32_t* VbP, int64_t hdp, int64_t d0, float* acc) {
  __m512 a[DC];
#pragma GCC unroll 32
  for (int c = 0; c < DC; ++c) a[c] = _mm512_loadu_ps(acc + (d0 + c) * 16);
  for (int64_t q = q0; q < q1; ++q) {
    const __m512i pp = _mm512_loadu_si512(PPL + q * 16);
    const uint32_t* vr = VbP + q * hdp + d0;
#pragma GCC unroll 32
    for (int c = 0; c < DC; ++c) a[c] = attn_dp(a[c], pp, _mm512_set1_epi32(int32_t(vr[c])));
  }
#pragma GCC unroll 32
  for (int c = 0; c < DC; ++c) _mm512_storeu_ps(acc + (d0 + c) * 16, a[c]);
}
#else
#define DVL_ATTN_BF16 0
#endif

// T = attn_tile(A.hd) as a constant: with a run-time tile the 64-key loops at head dim 64 ran
// 12 % slower. BF16: the bf16 products (above; only where DVL_ATTN_BF16).
template <int64_t T, bool BF16 = false>
static void attn_item_t(const AttnArgs& A, int64_t g, int64_t r0, int64_t r1, float* scratch) {
  const float kNegInf = -std::numeric_limits<float>::infinity();
  const int64_t hd = A.hd, hdp = attn_round16(hd), rows = r1 - r0, rows4 = (rows + 3) / 4 * 4;
  float* Q = scratch;                    // [64, hd]   the item's query rows (zero rows pad to 4)
  float* acc = Q + kAttnMaxRows * hd;    // [64, hdp]  running Σ p·v
  float* m = acc + kAttnMaxRows * hdp;   // [64]       running max of the scores
  float* l = m + kAttnMaxRows;           // [64]       running Σ p
  float* Kt = l + kAttnMaxRows;          // [hd, T]    K tile transposed
  float* Vb = Kt + hd * T;               // [T, hdp]   V tile, zero-padded columns
  float* S = Vb + T * hdp;               // [8, T]     scores of a row block (≤ 8 rows)
  float* P = S + 8 * T;                  // [8, T]     their exp
  const int64_t hd2 = (hd + 1) / 2;      // bf16 products only (pair words):
  uint32_t* QP = reinterpret_cast<uint32_t*>(P + 8 * T);  // [64, hd/2]  the query rows
  uint32_t* KtP = QP + kAttnMaxRows * hd2;                 // [hd/2, T]   the K tile
  uint32_t* VbP = KtP + hd2 * T;                           // [T/2, hdp]  the V tile
  uint32_t* PP = VbP + T / 2 * hdp;                        // [8, T/2]    a row block's weights
  (void)QP, (void)KtP, (void)VbP, (void)PP;
  int64_t lo[kAttnMaxRows], hi[kAttnMaxRows];

  std::memset(Q, 0, sizeof(float) * size_t(rows4 * hd));
  std::memset(acc, 0, sizeof(float) * size_t(rows4 * hdp));
  int64_t LO = INT64_MAX, HI = 0;
  for (int64_t r = 0; r < rows4; ++r) {
    m[r] = kNegInf;
    l[r] = 0;
    lo[r] = 0;
    hi[r] = 0;  // padding rows see nothing
    if (r >= rows) continue;
    const int64_t i = (r0 + r) / A.group, h = g * A.group + (r0 + r) % A.group;
    std::memcpy(Q + r * hd, A.q + (i * A.nh + h) * hd, sizeof(float) * size_t(hd));
    lo[r] = A.lo[i];
    hi[r] = A.hi[i];
    if (lo[r] < hi[r]) {
      LO = lo[r] < LO ? lo[r] : LO;
      HI = hi[r] > HI ? hi[r] : HI;
    }
  }
#if DVL_ATTN_BF16
  if constexpr (BF16)
    for (int64_t r = 0; r < rows4; ++r) attn_bf16_adjacent(Q + r * hd, hd, QP + r * hd2);
#endif

  for (int64_t j0 = HI > LO ? LO / T * T : HI; j0 < HI; j0 += T) {
    const int64_t a0 = j0 > LO ? j0 : LO;  // keys [a0, j1) of this tile are read
    const int64_t j1 = j0 + T < HI ? j0 + T : HI;
    // 1. K transposed and V padded, f32: this item's own copy, or the call's shared one. The
    //    products below never touch a key outside [a0, j1) (scores masked, P·V over a block's
    //    visible keys), so a shared tile's other keys cannot change a bit of this item's rows.
    const bool v_finite = attn_tile_at(A, g, j0, a0, j1, T, Kt, Vb);
#if DVL_ATTN_BF16
    if constexpr (BF16) {  // the tile's pairs: every 16-key group a block may read
      const int64_t c0 = (a0 - j0) / 16 * 16, c1 = attn_round16(j1 - j0);
      attn_bf16_kt(Kt, hd2, T, c0, c1, KtP);
      if (v_finite) attn_bf16_vb(Vb, hdp, c0 / 2, c1 / 2, a0 - j0, j1 - j0, VbP);
    }
#endif

    // One block of R query rows [rb, rb + R) against this tile (R a compile-time constant).
    auto block = [&](auto rows_c, int64_t rb) {
      constexpr int R = decltype(rows_c)::value;
      // Rows of this block that see any key of the tile.
      // Their visible keys' union [ua, ub) inside the tile bounds every product and pass below:
      // in a causal or block-causal prefill a row block sees only part of a tile (columns
      // [ca, cb), whole 16-key groups, so each key keeps its vector lane). Skipped keys are ones
      // no row of the block sees — scores −∞, weights 0 — so no row's bits change.
      int64_t ua = j1, ub = j0;
      for (int i = 0; i < R; ++i)
        if (lo[rb + i] < j1 && hi[rb + i] > j0 && lo[rb + i] < hi[rb + i]) {
          ua = std::min(ua, std::max(lo[rb + i], j0));
          ub = std::max(ub, std::min(hi[rb + i], j1));
        }
      if (ub <= ua) return;
      const int64_t ca = (ua - j0) / 16 * 16, cb = attn_round16(ub - j0), pa = ua - j0, pb = ub - j0;
      // 2. scores.
#if DVL_ATTN_BF16
      if constexpr (BF16) {
        int64_t jb = ca;
        for (; jb + 16 * kAttnG <= cb; jb += 16 * kAttnG) attn_qk_block_bf16<R, kAttnG, T>(QP + rb * hd2, hd2, KtP + jb, S + jb);
        for (; jb < cb; jb += 16) attn_qk_block_bf16<R, 1, T>(QP + rb * hd2, hd2, KtP + jb, S + jb);
      } else
#endif
      {
        int64_t jb = ca;
        for (; jb + 16 * kAttnG <= cb; jb += 16 * kAttnG) attn_qk_block<R, kAttnG, T>(Q + rb * hd, hd, Kt + jb, S + jb);
        for (; jb < cb; jb += 16) attn_qk_block<R, 1, T>(Q + rb * hd, hd, Kt + jb, S + jb);
      }
      // Per row: scale and mask the scores, a vector of keys at a time (this bookkeeping, not
      // the dot products, was most of the time at small head dims), then p = exp(s − max) and
      // its sum in one pass. Only vectors that straddle the row's visible range [a, b) are
      // masked (−∞ outside); the row's max is NaN if any score is (tracked apart: a vector max
      // would drop it). Only columns [ca, cb) are written and read.
      for (int i = 0; i < R; ++i) {
        const int64_t r = rb + i;
        const int64_t a = (lo[r] > j0 ? lo[r] : j0) - j0, b = (hi[r] < j1 ? hi[r] : j1) - j0;
        float* s = S + i * T;
        float* p = P + i * T;
        const attn_fv ninf = attn_splat(kNegInf);
        attn_fv mv = ninf;
        attn_iv nan = {};
        for (int64_t j = ca; j < cb; j += kAttnVW) {
          attn_fv sv = attn_ld(s + j) * A.scale;
          if (j < a || j + kAttnVW > b) {
            const attn_iv jv = attn_iota() + int32_t(j);
            const attn_iv vis = (jv >= int32_t(a)) & (jv < int32_t(b));
            sv = vis ? sv : ninf;
          }
          attn_st(s + j, sv);
          nan |= sv != sv;
          mv = sv > mv ? sv : mv;
        }
        const float mt = attn_any(nan) ? std::numeric_limits<float>::quiet_NaN() : attn_hmax(mv);
        const float mn = attn_max(m[r], mt);
        float ls = 0.f, corr = 1.f;
        if (mn == kNegInf) {  // nothing finite seen yet: weights 0, state unchanged
          for (int64_t j = ca; j < cb; ++j) p[j] = 0.f;
        } else {
          corr = attn_exp1(m[r] - mn);
          m[r] = mn;
          attn_fv lv = {};
          for (int64_t j = ca; j < cb; j += kAttnVW) {
            attn_fv v = attn_ld(s + j) - mn;
            expf_lanes<attn_fv, attn_iv, false>(v);   // arguments ≤ 0, −∞ or NaN
            attn_st(p + j, v);
            lv += v;
          }
          ls = attn_hsum(lv);
        }
        l[r] = l[r] * corr + ls;
        float* ar = acc + r * hdp;
        if (corr != 1.f)
          for (int64_t d = 0; d < hdp; ++d) ar[d] *= corr;
      }
      // 3. acc += P·V.
#if DVL_ATTN_BF16
      if constexpr (BF16) {
        if (v_finite) {  // every pair of [ca, cb): keys no row sees weigh exactly 0
          for (int i = 0; i < R; ++i) attn_bf16_adjacent(P + i * T + ca, cb - ca, PP + i * (T / 2) + ca / 2);
          int64_t d0 = 0;
          for (; d0 + 16 * kAttnG <= hdp; d0 += 16 * kAttnG)
            attn_pv_block_bf16<R, kAttnG, T>(PP, ca / 2, cb / 2, VbP + d0, hdp, acc + rb * hdp + d0);
          for (; d0 < hdp; d0 += 16) attn_pv_block_bf16<R, 1, T>(PP, ca / 2, cb / 2, VbP + d0, hdp, acc + rb * hdp + d0);
          return;
        }
      }
#endif
      if (v_finite) {
        int64_t d0 = 0;
        for (; d0 + 16 * kAttnG <= hdp; d0 += 16 * kAttnG) attn_pv_block<R, kAttnG, T>(P + pa, pb - pa, Vb + pa * hdp + d0, hdp, acc + rb * hdp + d0);
        for (; d0 < hdp; d0 += 16) attn_pv_block<R, 1, T>(P + pa, pb - pa, Vb + pa * hdp + d0, hdp, acc + rb * hdp + d0);
      } else {
        for (int i = 0; i < R; ++i) {
          float* ar = acc + (rb + i) * hdp;
          const int64_t a = (lo[rb + i] > j0 ? lo[rb + i] : j0) - j0, b = (hi[rb + i] < j1 ? hi[rb + i] : j1) - j0;
          for (int64_t j = a; j < b; ++j) {
            const float pv = P[i * T + j];
            const float* vr = Vb + j * hdp;
            for (int64_t d = 0; d < hdp; ++d) ar[d] += pv * vr[d];
          }
        }
      }
    };
    // Blocks of kAttnRB rows while they hold real rows, the rest in blocks of 4 (rows are
    // padded to 4 with rows that see nothing: a decode step's 2 rows cost a 4-row block, not 8).
    // 8-row blocks only at head dims ≤ 32: at 64 a 512-row causal prefill ran 15 % slower with
    // them (bench/RESULTS.md), at 24 the tower's calls 6 % faster.
    int64_t rb = 0;
    if constexpr (kAttnRB == 8)
      if (hd <= 32)
        for (; rb + 8 <= rows4; rb += 8) block(std::integral_constant<int, 8>{}, rb);
    for (; rb < rows4; rb += 4) block(std::integral_constant<int, 4>{}, rb);
  }

  for (int64_t r = 0; r < rows; ++r) {
    const int64_t i = (r0 + r) / A.group, h = g * A.group + (r0 + r) % A.group;
    float* orow = A.o + (i * A.nh + h) * hd;
    const float* ar = acc + r * hdp;
    if (lo[r] >= hi[r]) {  // no visible key: zeros by contract
      std::memset(orow, 0, sizeof(float) * size_t(hd));
      continue;
    }
    // l = 0 only when every visible score was −∞ (infinite inputs): NaN, as softmax would give.
    const float inv = l[r] > 0 ? 1.f / l[r] : std::numeric_limits<float>::quiet_NaN();
    for (int64_t d = 0; d < hd; ++d) orow[d] = ar[d] * inv;
  }
}

// ---- Lanes = query rows (head dims ≤ 32) ---------------------------------------------------
//
// The same arithmetic as attn_item_t, laid out the other way round: each vector lane holds one
// query row of the item (W = kAttnVW rows per lane group), and a key's score, weight and value
// products are one vector op for W rows at once. At head dim 24 (the vision tower) the row
// layout spends most of its time on per-row bookkeeping — a horizontal max and sum, one exp
// call for the rescale factor and a 32-column rescale per row and tile — and pads P·V from 24 to
// 32 columns; here the max, the sums and the rescale are vertical, and P·V runs exactly hd
// columns. Every row still takes the same sequence of roundings as in attn_item_t, so the two
// kernels agree bit for bit (test/ops/attention.test.ts runs both through the op's rowKernel
// attribute, at every level):
//   score     Σ_d q_d·k_d, FMAs in d order from 0 (q·k commutes exactly), then × scale; −∞
//             outside the row's [lo, hi)
//   max       over the tile's visible scores (exact in any order), NaN if any score is NaN
//   weights   p = exp(s − m') by the same expf_lanes; a row that has seen nothing finite gets 0
//   Σp        attn_item_t sums a tile's weights in VW lanes, key j into lane j mod VW (tiles and
//             its 16-key column groups start at multiples of 16), then folds the lanes with
//             attn_hsum: here VW partial-sum vectors take the keys j ≡ k (mod VW) in the same
//             order, and the same fold runs across them (adding the zero weight of a masked key
//             is exact, so sweeping whole 16-key groups changes nothing)
//   l, acc    l' = l·c + Σp and acc·c (c = 1 multiplies exactly), then acc += p·v key by key in
//             key order: the same FMA per element (a masked key adds 0·v = 0 exactly, finite v)
// A tile with an Inf/NaN value row masks per lane instead, so a row never adds a key it cannot
// see (as attn_item_t's per-row path). Lanes are independent: which rows share a group never
// changes a bit.

// S[g][j][W] = Q(g)·K[j] for NG lane groups and NK keys from j: the K element broadcast, one FMA
// per (group, key, d). QT is [groups][hd][W] (group stride qs), S [T][W] per group (stride ss).
template <int NG, int NK>
static inline void attn_lanes_qk(const float* QT, int64_t qs, int64_t hd, const float* Kt, int64_t T, int64_t j, float* S, int64_t ss) {
  attn_fv a[NG][NK] = {};
  for (int64_t d = 0; d < hd; ++d) {
    attn_fv qv[NG];
    for (int g = 0; g < NG; ++g) qv[g] = attn_ld(QT + g * qs + d * kAttnVW);
#pragma GCC unroll 16
    for (int k = 0; k < NK; ++k) {
      const attn_fv kv = attn_bcast(Kt[d * T + j + k]);
#pragma GCC unroll 4
      for (int g = 0; g < NG; ++g) a[g][k] += qv[g] * kv;
    }
  }
  for (int g = 0; g < NG; ++g)
    for (int k = 0; k < NK; ++k) attn_st(S + g * ss + (j + k) * kAttnVW, a[g][k]);
}

// acc[d0 .. d0 + DC) += P[j]·V[j][d] for keys j of [ja, jb), in key order; with `vis` (a tile
// holding Inf/NaN values) a lane adds only the keys in its [lo, hi) (absolute key = kbase + j).
template <int DC>
static inline void attn_lanes_pv(const float* P, int64_t ja, int64_t jb, const float* Vb, int64_t hdp, int64_t d0, float* acc,
                                 const attn_iv* vis_lo, const attn_iv* vis_hi, int64_t kbase) {
  attn_fv a[DC];
#pragma GCC unroll 32
  for (int c = 0; c < DC; ++c) a[c] = attn_ld(acc + (d0 + c) * kAttnVW);
  if (!vis_lo) {
    for (int64_t j = ja; j < jb; ++j) {
      const attn_fv p = attn_ld(P + j * kAttnVW);
      const float* vr = Vb + j * hdp + d0;
#pragma GCC unroll 32
      for (int c = 0; c < DC; ++c) a[c] += p * attn_bcast(vr[c]);
    }
  } else {
    for (int64_t j = ja; j < jb; ++j) {
      const attn_fv p = attn_ld(P + j * kAttnVW);
      const attn_iv see = (*vis_lo <= int32_t(kbase + j)) & (*vis_hi > int32_t(kbase + j));
      const float* vr = Vb + j * hdp + d0;
#pragma GCC unroll 32
      for (int c = 0; c < DC; ++c) {
        const attn_fv t = a[c] + p * attn_bcast(vr[c]);
        a[c] = see ? t : a[c];
      }
    }
  }
#pragma GCC unroll 32
  for (int c = 0; c < DC; ++c) attn_st(acc + (d0 + c) * kAttnVW, a[c]);
}

// attn_hsum's fold, lane by lane: part[k] holds lane k's sums.
static inline attn_fv attn_lanes_fold(const attn_fv* part) {
#if DVL_ATTN_VW == 16
  attn_fv a[8], b[4];
  for (int i = 0; i < 8; ++i) a[i] = part[i] + part[i + 8];
  for (int i = 0; i < 4; ++i) b[i] = a[i] + a[i + 4];
#elif DVL_ATTN_VW == 8
  attn_fv b[4];
  for (int i = 0; i < 4; ++i) b[i] = part[i] + part[i + 4];
#else
  const attn_fv* b = part;
#endif
  const attn_fv c0 = b[0] + b[2], c1 = b[1] + b[3];
  return c0 + c1;
}

// Lane groups whose scores one pass computes together (they share each K broadcast), and keys
// per register block: 2 × 8 accumulators with 512-bit vectors, 2 × 4 with 16 registers.
static const int kLanesNG = 2;
static const int kLanesNK = kAttnVW == 16 ? 8 : 4;
// Value columns per P·V register block: 24 accumulators (+ P) fit 32 zmm registers; 12 fit 16.
static const int kLanesDC = kAttnVW == 16 ? 24 : 12;

template <int64_t T, bool BF16 = false>
static void attn_item_lanes_t(const AttnArgs& A, int64_t g, int64_t r0, int64_t r1, float* scratch) {
  constexpr int W = kAttnVW;
  const float kNegInf = -std::numeric_limits<float>::infinity();
  const int64_t hd = A.hd, hdp = attn_round16(hd), rows = r1 - r0, ng = (rows + W - 1) / W;
  // Scratch, as floats (attn_scratch_floats counts it; ≤ 64 rows): QT [ng][hd][W] the queries
  // transposed, acc [ng][hd][W], m and l [ng][W], then the tile Kt [hd, T] and Vb [T, hdp], then
  // S [2][T][W] the scores and weights of a pair of lane groups.
  float* QT = scratch;
  float* acc = QT + kAttnMaxRows * hd;
  float* mS = QT + 2 * kAttnMaxRows * hd;
  float* lS = mS + kAttnMaxRows;
  float* Kt = lS + kAttnMaxRows;
  float* Vb = Kt + hd * T;
  float* S = Vb + T * hdp;
  const int64_t hd2 = (hd + 1) / 2;  // bf16 products only (pair words):
  uint32_t* QPL = reinterpret_cast<uint32_t*>(S + 2 * T * W);  // [groups][hd/2][W]  the queries
  uint32_t* KtP = QPL + kAttnMaxRows * hd2;                     // [hd/2, T]          the K tile
  uint32_t* VbP = KtP + hd2 * T;                                // [T/2, hdp]         the V tile
  uint32_t* PPL = VbP + T / 2 * hdp;                            // [T/2][W]           a group's weights
  (void)QPL, (void)KtP, (void)VbP, (void)PPL;
  attn_iv lo[kAttnMaxRows / W], hi[kAttnMaxRows / W];
  int64_t glo[kAttnMaxRows / W], ghi[kAttnMaxRows / W];  // per group: the union of its lanes' ranges
  int64_t gmaxlo[kAttnMaxRows / W], gminhi[kAttnMaxRows / W];  // and their intersection (no mask inside)

  int64_t LO = INT64_MAX, HI = 0;
  for (int64_t gi = 0; gi < ng; ++gi) {
    glo[gi] = INT64_MAX, ghi[gi] = 0, gmaxlo[gi] = 0, gminhi[gi] = INT64_MAX;
    for (int w = 0; w < W; ++w) {
      const int64_t r = gi * W + w;
      int64_t a = 0, b = 0;  // padding lanes see nothing
      if (r < rows) {
        const int64_t i = (r0 + r) / A.group, h = g * A.group + (r0 + r) % A.group;
        const float* qr = A.q + (i * A.nh + h) * hd;
        for (int64_t d = 0; d < hd; ++d) QT[(gi * hd + d) * W + w] = qr[d];
        a = A.lo[i], b = A.hi[i];
      } else {
        for (int64_t d = 0; d < hd; ++d) QT[(gi * hd + d) * W + w] = 0.f;
      }
      lo[gi][w] = int32_t(a), hi[gi][w] = int32_t(b);
      gmaxlo[gi] = std::max(gmaxlo[gi], a), gminhi[gi] = std::min(gminhi[gi], b);
      if (a < b) glo[gi] = std::min(glo[gi], a), ghi[gi] = std::max(ghi[gi], b);
    }
    if (glo[gi] < ghi[gi]) LO = std::min(LO, glo[gi]), HI = std::max(HI, ghi[gi]);
    std::memset(acc + gi * hd * W, 0, sizeof(float) * size_t(hd * W));
    attn_st(mS + gi * W, attn_splat(kNegInf));
    attn_st(lS + gi * W, attn_fv{});
#if DVL_ATTN_BF16
    if constexpr (BF16)
      for (int64_t p = 0; p < hd2; ++p)
        _mm512_storeu_si512(QPL + (gi * hd2 + p) * W, attn_bf16_zip(_mm512_loadu_ps(QT + (gi * hd + 2 * p) * W), _mm512_loadu_ps(QT + (gi * hd + 2 * p + 1) * W)));
#endif
  }

  for (int64_t j0 = HI > LO ? LO / T * T : HI; j0 < HI; j0 += T) {
    const int64_t a0 = j0 > LO ? j0 : LO, j1 = j0 + T < HI ? j0 + T : HI;
    const bool v_finite = attn_tile_at(A, g, j0, a0, j1, T, Kt, Vb);
#if DVL_ATTN_BF16
    if constexpr (BF16) {  // the tile's pairs, as attn_item_t's
      const int64_t c0 = (a0 - j0) / 16 * 16, c1 = attn_round16(j1 - j0);
      attn_bf16_kt(Kt, hd2, T, c0, c1, KtP);
      if (v_finite) attn_bf16_vb(Vb, hdp, c0 / 2, c1 / 2, a0 - j0, j1 - j0, VbP);
    }
#endif
    for (int64_t g0 = 0; g0 < ng; g0 += kLanesNG) {
      const int64_t n = std::min<int64_t>(kLanesNG, ng - g0);
      // Keys of the tile any lane of the pair sees, [ua, ub) relative to j0; scores over whole
      // 16-key groups [ca, cb) (Kt is written, zeros past the keys, up to the 16-key round-up).
      int64_t ua = T, ub = 0;
      bool sees[kLanesNG] = {};
      for (int64_t x = 0; x < n; ++x) {
        const int64_t gi = g0 + x;
        if (glo[gi] >= j1 || ghi[gi] <= j0 || glo[gi] >= ghi[gi]) continue;
        sees[x] = true;
        ua = std::min(ua, std::max(glo[gi], j0) - j0);
        ub = std::max(ub, std::min(ghi[gi], j1) - j0);
      }
      if (ub <= ua) continue;
      const int64_t ca = ua / 16 * 16, cb = attn_round16(ub);
      const float* Q0 = QT + g0 * hd * W;
#if DVL_ATTN_BF16
      if constexpr (BF16) {
        const uint32_t* QP0 = QPL + g0 * hd2 * W;
        if (n == 2) {
          for (int64_t j = ca; j < cb; j += kLanesNK) attn_lanes_qk_bf16<2, kLanesNK>(QP0, hd2 * W, hd2, KtP, T, j, S, T * W);
        } else {
          for (int64_t j = ca; j < cb; j += kLanesNK) attn_lanes_qk_bf16<1, kLanesNK>(QP0, hd2 * W, hd2, KtP, T, j, S, T * W);
        }
      } else
#endif
      if (n == 2) {
        for (int64_t j = ca; j < cb; j += kLanesNK) attn_lanes_qk<2, kLanesNK>(Q0, hd * W, hd, Kt, T, j, S, T * W);
      } else {
        for (int64_t j = ca; j < cb; j += kLanesNK) attn_lanes_qk<1, kLanesNK>(Q0, hd * W, hd, Kt, T, j, S, T * W);
      }
      for (int64_t x = 0; x < n; ++x) {
        if (!sees[x]) continue;  // no lane of this group sees the tile: nothing changes
        const int64_t gi = g0 + x;
        float* s = S + x * T * W;
        // Scale, mask, max (NaN tracked apart, as attn_item_t).
        const attn_fv ninf = attn_splat(kNegInf);
        attn_fv mv = ninf;
        attn_iv nan = {};
        const int64_t free_a = gmaxlo[gi] - j0, free_b = gminhi[gi] - j0;  // every lane sees [free_a, free_b)
        for (int64_t j = ca; j < cb; ++j) {
          attn_fv sv = attn_ld(s + j * W) * A.scale;
          if (j < free_a || j >= free_b) {
            const attn_iv vis = (lo[gi] <= int32_t(j0 + j)) & (hi[gi] > int32_t(j0 + j));
            sv = vis ? sv : ninf;
          }
          attn_st(s + j * W, sv);
          nan |= sv != sv;
          mv = sv > mv ? sv : mv;
        }
        const attn_fv qnan = attn_splat(std::numeric_limits<float>::quiet_NaN());
        const attn_fv mt = nan ? qnan : mv;
        const attn_fv m = attn_ld(mS + gi * W);
        const attn_fv mn = ((m != m) | (mt != mt)) ? qnan : (mt > m ? mt : m);
        const attn_iv dead = mn == ninf;  // nothing finite seen yet: weights 0, state unchanged
        attn_fv corr = m - mn;
        expf_lanes<attn_fv, attn_iv>(corr);
        corr = dead ? attn_splat(1.f) : corr;
        attn_st(mS + gi * W, dead ? m : mn);
        // Weights in place of the scores, and their sums in W partial-sum vectors.
        attn_fv part[W] = {};
        for (int64_t j = ca; j < cb; j += W)
          for (int k = 0; k < W; ++k) {
            attn_fv v = attn_ld(s + (j + k) * W) - mn;
            expf_lanes<attn_fv, attn_iv, false>(v);  // arguments ≤ 0, −∞ or NaN
            v = dead ? attn_fv{} : v;
            attn_st(s + (j + k) * W, v);
            part[k] += v;
          }
        const attn_fv ls = attn_lanes_fold(part);
        attn_st(lS + gi * W, attn_ld(lS + gi * W) * corr + ls);
        float* ag = acc + gi * hd * W;
        for (int64_t d = 0; d < hd; ++d) attn_st(ag + d * W, attn_ld(ag + d * W) * corr);
        // acc += P·V over the keys some lane sees (Vb holds only those rows).
        const int64_t pa = std::max(glo[gi], j0) - j0, pb = std::min(ghi[gi], j1) - j0;
#if DVL_ATTN_BF16
        if constexpr (BF16) {
          if (v_finite) {  // the pairs covering [pa, pb): a key outside weighs exactly 0
            const int64_t q0 = pa / 2, q1 = (pb + 1) / 2;
            for (int64_t q = q0; q < q1; ++q)
              _mm512_storeu_si512(PPL + q * W, attn_bf16_zip(_mm512_loadu_ps(s + 2 * q * W), _mm512_loadu_ps(s + (2 * q + 1) * W)));
            int64_t d0 = 0;
            for (; d0 + kLanesDC <= hd; d0 += kLanesDC) attn_lanes_pv_bf16<kLanesDC>(PPL, q0, q1, VbP, hdp, d0, ag);
            for (; d0 + 8 <= hd; d0 += 8) attn_lanes_pv_bf16<8>(PPL, q0, q1, VbP, hdp, d0, ag);
            for (; d0 + 4 <= hd; d0 += 4) attn_lanes_pv_bf16<4>(PPL, q0, q1, VbP, hdp, d0, ag);
            for (; d0 < hd; ++d0) attn_lanes_pv_bf16<1>(PPL, q0, q1, VbP, hdp, d0, ag);
            continue;
          }
        }
#endif
        const attn_iv* vl = v_finite ? nullptr : &lo[gi];
        const attn_iv* vh = v_finite ? nullptr : &hi[gi];
        int64_t d0 = 0;
        for (; d0 + kLanesDC <= hd; d0 += kLanesDC) attn_lanes_pv<kLanesDC>(s, pa, pb, Vb, hdp, d0, ag, vl, vh, j0);
        for (; d0 + 8 <= hd; d0 += 8) attn_lanes_pv<8>(s, pa, pb, Vb, hdp, d0, ag, vl, vh, j0);
        for (; d0 + 4 <= hd; d0 += 4) attn_lanes_pv<4>(s, pa, pb, Vb, hdp, d0, ag, vl, vh, j0);
        for (; d0 < hd; ++d0) attn_lanes_pv<1>(s, pa, pb, Vb, hdp, d0, ag, vl, vh, j0);
      }
    }
  }

  for (int64_t gi = 0; gi < ng; ++gi) {
    const attn_fv l = attn_ld(lS + gi * W);
    // l = 0 only when every visible score was −∞ (infinite inputs): NaN, as softmax would give.
    const attn_fv inv = l > 0 ? attn_splat(1.f) / l : attn_splat(std::numeric_limits<float>::quiet_NaN());
    for (int w = 0; w < W; ++w) {
      const int64_t r = gi * W + w;
      if (r >= rows) break;
      const int64_t i = (r0 + r) / A.group, h = g * A.group + (r0 + r) % A.group;
      float* orow = A.o + (i * A.nh + h) * hd;
      if (lo[gi][w] >= hi[gi][w]) {  // no visible key: zeros by contract
        std::memset(orow, 0, sizeof(float) * size_t(hd));
        continue;
      }
      for (int64_t d = 0; d < hd; ++d) orow[d] = acc[(gi * hd + d) * W + w] * inv[w];
    }
  }
}

// The lanes kernel where it pays: head dims ≤ 32 and items of more than 32 rows (a tower's or a
// prefill's 64-row items: 4-12 % faster). A decode step's 16-32 rows per kv head fill only one or
// two lane groups and ran 1-3 % slower that way (bench/RESULTS.md). Either kernel gives the
// same bits, so the choice may follow the item size (which follows the thread count).
static void attn_item(const AttnArgs& A, int64_t g, int64_t r0, int64_t r1, float* scratch) {
  if (attn_tile(A.hd) == 256) {
    if (A.rows_kernel || r1 - r0 <= 32) attn_item_t<256>(A, g, r0, r1, scratch);
    else attn_item_lanes_t<256>(A, g, r0, r1, scratch);
  } else {
    attn_item_t<64>(A, g, r0, r1, scratch);
  }
}

#if DVL_ATTN_BF16
// attn_item with the bf16 products where the op asks for them and the head dim is even (pairs
// of dimensions); the same choice of kernel by item size (both give the same bits).
static void attn_item_bf16(const AttnArgs& A, int64_t g, int64_t r0, int64_t r1, float* scratch) {
  if (!A.bf16 || A.hd % 2) return attn_item(A, g, r0, r1, scratch);
  if (attn_tile(A.hd) == 256) {
    if (A.rows_kernel || r1 - r0 <= 32) attn_item_t<256, true>(A, g, r0, r1, scratch);
    else attn_item_lanes_t<256, true>(A, g, r0, r1, scratch);
  } else {
    attn_item_t<64, true>(A, g, r0, r1, scratch);
  }
}
#endif

}  // namespace dvl
