// kernels_scalar.cpp — the scalar level: the generic kernels (kernels_generic.inc,
// kernels_q8_generic.inc) built with baseline flags. It is the reference order every SIMD
// level is tested against, and the level DIFFUSIONVL_CPU_ISA=scalar or
// Queue({ isa: 'scalar' }) forces.
#include "kernels.h"

namespace dvl {
namespace {
#include "kernels_generic.inc"
#include "kernels_q8_generic.inc"
}  // namespace

const CpuKernels kCpuKernelsScalar = {
    Isa::Scalar,
    gen_matmul_f32,
    gen_matmul_h16<bf16_to_f32>,
    gen_matmul_h16<f16_to_f32>,
    gen_matmul_q8,
    nullptr,
    gen_matmul_q8_fast,
    gen_cvt_f32_to_bf16_daz,
    gen_quantize_act_q8,
    gen_quantize_rows_q8,
    gen_dequantize_rows_q8,
    gen_cvt_bf16_to_f32,
    gen_cvt_f16_to_f32,
    gen_cvt_f32_to_bf16,
    gen_cvt_f32_to_f16,
    gen_dot_f32,
    gen_axpy_f32,
    gen_stream_sum,
    gen_compute_peak,
    nullptr,
    "scalar: int8 activations x int8 weights, int32 block sums",
    gen_matmul_bf16p,
    nullptr,
    nullptr,
    gen_matmul_q8p,
    nullptr,
    nullptr,
    false,
    gen_exp_shift_f64,
    gen_silu_mul,
    gen_gelu,
    gen_resample_v_row,
    gen_resample_h_rows,
    gen_rms_norm_rows,
    gen_rope_rows,
};

}  // namespace dvl
