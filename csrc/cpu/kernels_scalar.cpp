// kernels_scalar.cpp — the scalar level: the generic kernels (kernels_generic.inc) built with
// baseline flags. It is the reference order every SIMD level is tested against, and the level
// DIFFUSIONVL_CPU_ISA=scalar or Queue({ isa: 'scalar' }) forces.
#include "kernels.h"

namespace dvl {
namespace {
#include "kernels_generic.inc"
}  // namespace

const CpuKernels kCpuKernelsScalar = {
    Isa::Scalar,
    gen_matmul_f32,
    gen_matmul_h16<bf16_to_f32>,
    gen_matmul_h16<f16_to_f32>,
    gen_cvt_bf16_to_f32,
    gen_cvt_f16_to_f32,
    gen_cvt_f32_to_bf16,
    gen_cvt_f32_to_f16,
    gen_dot_f32,
    gen_axpy_f32,
    gen_stream_sum,
};

}  // namespace dvl
