// kernels_avx512_bf16.cpp — the avx512_bf16 level (adds AVX512_BF16 + AVX512_VNNI).
// Built with this level's flags only (CMakeLists.txt); everything here has internal linkage.
//
// Precision 'exact': the avx512 algorithm (kernels_simd.inc over kernels_v512.inc):
// activations kept in f32, bf16 weights widened exactly, error ≈ K·2⁻²⁴·Σ|x·w|.
// Precision 'fast': vdpbf16ps over activations rounded to bf16 (kernels_bf16dot.inc; relative
// error of each product up to 2⁻⁹ from the rounding, subnormals flushed) and 512-bit vpdpbusd
// for q8 weights (kernels_q8_v512.inc).
#include <immintrin.h>

#include "kernels.h"

namespace dvl {
namespace {
#include "kernels_generic.inc"
#include "kernels_q8_generic.inc"
#include "kernels_v512.inc"
#include "kernels_simd.inc"
#include "kernels_drive.inc"
#include "kernels_bf16dot.inc"
#include "kernels_bf16p.inc"
#include "kernels_bf16p_fma.inc"
#include "kernels_q8_v512.inc"
#include "kernels_q8p.inc"
}  // namespace

const CpuKernels kCpuKernelsAvx512Bf16 = {
    Isa::Avx512Bf16,
    simd_matmul<kWF32>,
    simd_matmul<kWBF16>,
    simd_matmul<kWF16>,
    gen_matmul_q8,
    bf16dot_matmul,
    q8zmm_matmul,
    bf16dot_round,
    q8zmm_quantize_act,
    q8zmm_quantize_rows,
    gen_dequantize_rows_q8,
    simd_cvt_bf16_to_f32,
    simd_cvt_f16_to_f32,
    simd_cvt_f32_to_bf16,
    simd_cvt_f32_to_f16,
    simd_dot_f32,
    simd_axpy_f32,
    simd_stream_sum,
    v512_compute_peak,
    "vdpbf16ps zmm (AVX512_BF16): activations rounded to bf16, f32 accumulation",
    "vpdpbusd zmm (AVX512_VNNI): int8 activations x int8 weights, int32 block sums",
    bf16p_fma_matmul,
    bf16p_dot_matmul,
    drive_grain<Bf16pDot>,
    gen_matmul_q8p,
    q8p_zmm_matmul,
    drive_grain<Q8pZmm>,
    true,
    gen_exp_shift_f64,
    gen_silu_mul,
    gen_gelu,
    gen_resample_v_row,
    gen_resample_h_rows,
    gen_rms_norm_rows,
    gen_rope_rows,
};

}  // namespace dvl
