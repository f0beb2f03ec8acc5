// kernels_avx512.cpp — the avx512 level (AVX-512 F/BW/DQ/VL + FMA + F16C, 16 f32 lanes, 32 zmm).
// Built with this level's flags only (CMakeLists.txt); everything here has internal linkage.
// The exact kernels are kernels_simd.inc over the 16-lane interface in kernels_v512.inc. This
// level does not require VNNI, so q8 runs the AVX2 vpmaddubsw kernel (kernels_q8_v256.inc);
// bf16 weights have no faster path than the exact kernel (kernels.h matmul_bf16_dot).
#include <immintrin.h>

#include "kernels.h"

namespace dvl {
namespace {
#include "kernels_generic.inc"
#include "kernels_q8_generic.inc"
#include "kernels_v512.inc"
#include "kernels_simd.inc"
#include "kernels_drive.inc"
#include "kernels_bf16p_fma.inc"
#include "kernels_q8_v256.inc"
#include "kernels_q8p_v256.inc"

double avx512_compute_peak(char kind, int64_t iters) {
  if (kind == 'q') return q8ymm_compute_peak<false>(iters);
  return simd_compute_peak(kind, iters);
}
}  // namespace

const CpuKernels kCpuKernelsAvx512 = {
    Isa::Avx512,
    simd_matmul<kWF32>,
    simd_matmul<kWBF16>,
    simd_matmul<kWF16>,
    gen_matmul_q8,
    nullptr,
    q8ymm_matmul<false>,
    gen_cvt_f32_to_bf16_daz,
    q8ymm_quantize_act,
    q8ymm_quantize_rows,
    gen_dequantize_rows_q8,
    simd_cvt_bf16_to_f32,
    simd_cvt_f16_to_f32,
    simd_cvt_f32_to_bf16,
    simd_cvt_f32_to_f16,
    simd_dot_f32,
    simd_axpy_f32,
    simd_stream_sum,
    avx512_compute_peak,
    nullptr,
    "vpmaddubsw ymm (AVX2): int8 activations x int8 weights, int32 block sums",
    bf16p_fma_matmul,
    nullptr,
    nullptr,
    gen_matmul_q8p,
    q8p_ymm_matmul<false>,
    drive_grain<Q8pYmm<false>>,
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
