// kernels_avx2.cpp — the avx2 level (AVX2 + FMA + F16C, 8 f32 lanes, 16 ymm registers).
// Built with -mavx2 -mfma -mf16c only (CMakeLists.txt); everything here has internal linkage.
// The kernels are kernels_simd.inc over the vector interface V below.
//
// Register tiles (R weight rows × MT tokens, R·MT accumulators + R weight vectors ≤ 16 ymm):
//   MT 1 → R 8 (eight independent FMA chains cover the 4-cycle FMA latency at M = 1),
//   MT 2 → R 4, MT 3-4 → R 3 (12 accumulators + 3 weights; x comes from L1 as a memory operand).
#include <immintrin.h>

#include "kernels.h"

namespace dvl {
namespace {
#include "kernels_generic.inc"

struct V {
  using F = __m256;
  using I = __m256i;
  static constexpr int kW = 8;
  static constexpr int kVecBytes = 32;
  static constexpr int kMaxMt = 4;
  static constexpr int rows_for_mt(int mt) { return mt <= 1 ? 8 : mt == 2 ? 4 : 3; }

  static inline F zero() { return _mm256_setzero_ps(); }
  static inline F set1(float a) { return _mm256_set1_ps(a); }
  static inline F load(const float* p) { return _mm256_loadu_ps(p); }
  static inline void store(float* p, F v) { _mm256_storeu_ps(p, v); }
  static inline F fmadd(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
  static inline F add(F a, F b) { return _mm256_add_ps(a, b); }
  static inline float hsum(F v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }

  // bf16 → f32 is exact: the 16 bits become the high half of the f32 pattern.
  static inline F load_bf16(const uint16_t* p) {
    __m256i u = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(u, 16));
  }
  // f16 → f32 with F16C (exact for every finite value and subnormal); NaN lanes are rebuilt
  // as dtype.h does (payload kept, signalling bit NOT set), since vcvtph2ps quiets them.
  static inline F load_f16(const uint16_t* p) {
    __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    F f = _mm256_cvtph_ps(h);
    __m256i u = _mm256_cvtepu16_epi32(h);
    __m256i mag = _mm256_and_si256(u, _mm256_set1_epi32(0x7fff));
    __m256i nan = _mm256_cmpgt_epi32(mag, _mm256_set1_epi32(0x7c00));
    __m256i bits = _mm256_or_si256(
        _mm256_or_si256(_mm256_slli_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x8000)), 16),
                        _mm256_set1_epi32(0x7f800000)),
        _mm256_slli_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x3ff)), 13));
    return _mm256_blendv_ps(f, _mm256_castsi256_ps(bits), _mm256_castsi256_ps(nan));
  }
  // f32 → bf16, dtype.h's rule in integer lanes: NaN → (u >> 16) | 0x40, else round to
  // nearest even by adding 0x7fff + lsb.
  static inline __m256i bf16_bits(F v) {
    __m256i u = _mm256_castps_si256(v);
    __m256i mag = _mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff));
    __m256i nan = _mm256_cmpgt_epi32(mag, _mm256_set1_epi32(0x7f800000));
    __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), lsb), 16);
    __m256i quiet = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
    return _mm256_blendv_epi8(rounded, quiet, nan);
  }
  static inline void store_as_bf16(uint16_t* p, F v) {
    __m256i b = bf16_bits(v);  // 8 values < 2^16 in 32-bit lanes
    __m128i packed = _mm_packus_epi32(_mm256_castsi256_si128(b), _mm256_extracti128_si256(b, 1));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), packed);
  }
  // vcvtps2ph with round-to-nearest-even matches dtype.h on every input, NaN included
  // (quiet bit set, top 10 payload bits kept); checked by test/ops/kernels.test.ts.
  static inline void store_as_f16(uint16_t* p, F v) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }

  static inline I izero() { return _mm256_setzero_si256(); }
  static inline I iload(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
  static inline I ixor(I a, I b) { return _mm256_xor_si256(a, b); }
  static inline uint64_t ifold(I v) {
    __m128i s = _mm_xor_si128(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    return uint64_t(_mm_cvtsi128_si64(s)) ^ uint64_t(_mm_extract_epi64(s, 1));
  }
};

#include "kernels_simd.inc"
}  // namespace

const CpuKernels kCpuKernelsAvx2 = {
    Isa::Avx2,
    simd_matmul<kWF32>,
    simd_matmul<kWBF16>,
    simd_matmul<kWF16>,
    simd_cvt_bf16_to_f32,
    simd_cvt_f16_to_f32,
    simd_cvt_f32_to_bf16,
    simd_cvt_f32_to_f16,
    simd_dot_f32,
    simd_axpy_f32,
    simd_stream_sum,
};

}  // namespace dvl
