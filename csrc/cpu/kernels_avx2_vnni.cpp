// kernels_avx2_vnni.cpp — the avx2_vnni level: avx2 plus AVX-VNNI (the VEX-encoded 256-bit
// vpdpbusd of Alder Lake and later, Zen 5), which only the q8 'fast' matmul uses
// (kernels_q8_v256.inc, Q8Ymm<true>). Built with the avx2 flags and -mavxvnni only
// (CMakeLists.txt); everything else is the avx2 level's code, compiled again here.
#include <immintrin.h>

#include "kernels.h"

namespace dvl {
namespace {
#include "kernels_generic.inc"
#include "kernels_q8_generic.inc"
#include "kernels_v256.inc"
#include "kernels_simd.inc"
#include "kernels_drive.inc"
#include "kernels_q8_v256.inc"

double avx2_vnni_compute_peak(char kind, int64_t iters) {
  if (kind == 'q') return q8ymm_compute_peak<true>(iters);
  return simd_compute_peak(kind, iters);
}
}  // namespace

const CpuKernels kCpuKernelsAvx2Vnni = {
    Isa::Avx2Vnni,
    simd_matmul<kWF32>,
    simd_matmul<kWBF16>,
    simd_matmul<kWF16>,
    gen_matmul_q8,
    nullptr,
    q8ymm_matmul<true>,
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
    avx2_vnni_compute_peak,
    nullptr,
    "vpdpbusd ymm (AVX-VNNI): int8 activations x int8 weights, int32 block sums",
};

}  // namespace dvl
