// expf_lanes.h — e^t on every lane of a GCC float vector, the Cephes single-precision scheme:
// n = round(t·log₂e) by the 1.5·2²³ trick, r = t − n·ln2 in two parts, a degree-6 polynomial,
// times 2ⁿ built from the exponent bits (with AVX-512 at 16 lanes one vscalefps, the same bits:
// the tower's attention call ×0.965); about 1-2 ulp. 0 below −87.3 (where 2ⁿ would go
// subnormal), +Inf above 88.3, NaN kept. One definition for the activation kernels
// (kernels_generic.inc: silu, gelu) and attention's softmax (ops/attention_kernel.h), which
// include it under their own ISA flags and vector widths: `static` for the reason dtype.h gives
// (an inline copy built with AVX flags must never serve baseline code).
#pragma once
#include <cstring>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace dvl {

// VF: float lanes, VI: int32 lanes of the same width. In place, not returned: a 64-byte vector
// return trips GCC's ABI warning at baseline flags. kUpper = false: the caller guarantees no
// lane is above 0 (softmax arguments x − max: ≤ 0, −∞ or NaN), so the upper clamp and the +Inf
// select — no-ops for such lanes — are left out (the same bits, four fewer vector ops).
template <class VF, class VI, bool kUpper = true>
static inline void expf_lanes(VF& t) {
  const VF zero = {};
  VF tc = t < -87.3f ? zero - 87.3f : t;
  if constexpr (kUpper) tc = tc > 88.3f ? zero + 88.3f : tc;
  const VF nf = (tc * 1.44269504088896341f + 12582912.f) - 12582912.f;
  VF r = tc - nf * 0.693359375f;
  r = r - nf * -2.12194440e-4f;
  VF q = r * 1.9875691500e-4f + 1.3981999507e-3f;
  q = q * r + 8.3334519073e-3f;
  q = q * r + 4.1665795894e-2f;
  q = q * r + 1.6666665459e-1f;
  q = q * r + 5.0000001201e-1f;
  const VF p = q * r * r + r + 1.f;
  VF e;
#if defined(__AVX512F__)
  if constexpr (sizeof(VF) == 64) {
    // p·2ⁿ in one instruction: the same single rounding of the same exact product as p × 2ⁿ
    // below (n ∈ [−126, 127] after the clamps; a NaN n gives NaN either way).
    __m512 pv, nv;
    std::memcpy(&pv, &p, 64);
    std::memcpy(&nv, &nf, 64);
    const __m512 ev = _mm512_mask_scalef_ps(pv, __mmask16(0xFFFF), pv, nv);  // (the unmasked form trips -Wmaybe-uninitialized in GCC 12's header)
    std::memcpy(&e, &ev, 64);
  } else
#endif
  {
    const VI bits = (__builtin_convertvector(nf == nf ? nf : zero, VI) + 127) << 23;
    VF two_n;
    std::memcpy(&two_n, &bits, sizeof two_n);
    e = p * two_n;
  }
  if constexpr (kUpper) t = t < -87.3f ? zero : (t > 88.3f ? zero + __builtin_inff() : e);
  else t = t < -87.3f ? zero : e;
}

}  // namespace dvl
