// kernels_avx512_bf16.cpp — the avx512_bf16 level (adds AVX512_BF16 + VNNI).
// Built with this level's flags only (CMakeLists.txt); everything here has internal linkage.
// The kernels are kernels_simd.inc over the 16-lane interface in kernels_v512.inc.
//
// Matmul here is the avx512 algorithm (activations kept in f32, bf16 weights widened
// exactly), not vdpbf16ps: that instruction rounds the activations to bf16 (relative error
// up to 2^-9 per product, i.e. a K-independent bound ≈ 2^-8·Σ|x·w| instead of K·2^-24·Σ|x·w|)
// and flushes subnormals, so it would need its own opt-in op/dtype and tolerance — and the dev
// VM this was written on has no AVX-512 to test it. vcvtneps2bf16 is not used for the same
// reason: it treats subnormal inputs as zero, which dtype.h does not.
#include <immintrin.h>

#include "kernels.h"

namespace dvl {
namespace {
#include "kernels_generic.inc"
#include "kernels_v512.inc"
#include "kernels_simd.inc"
}  // namespace

const CpuKernels kCpuKernelsAvx512Bf16 = {
    Isa::Avx512Bf16,
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
