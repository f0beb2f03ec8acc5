// kernels_avx512.cpp — the avx512 level (AVX-512 F/BW/DQ/VL + FMA + F16C, 16 f32 lanes, 32 zmm).
// Built with this level's flags only (CMakeLists.txt); everything here has internal linkage.
// The kernels are kernels_simd.inc over the 16-lane interface in kernels_v512.inc.
#include <immintrin.h>

#include "kernels.h"

namespace dvl {
namespace {
#include "kernels_generic.inc"
#include "kernels_v512.inc"
#include "kernels_simd.inc"
}  // namespace

const CpuKernels kCpuKernelsAvx512 = {
    Isa::Avx512,
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
