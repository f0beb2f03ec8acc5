// kernels_avx512_bf16.cpp — the avx512_bf16 level. Built with this level's flags only (see CMakeLists.txt);
// starts from the generic kernels vectorised by the compiler.
#include "kernels.h"

namespace dvl {
namespace {
#include "kernels_generic.inc"
}  // namespace

const CpuKernels kCpuKernelsAvx512Bf16 = {
    Isa::Avx512Bf16,
    gen_matmul_f32,
    gen_matmul_h16<bf16_to_f32>,
    gen_matmul_h16<f16_to_f32>,
    gen_cvt_bf16_to_f32,
    gen_cvt_f16_to_f32,
    gen_cvt_f32_to_bf16,
    gen_cvt_f32_to_f16,
    gen_dot_f32,
    gen_axpy_f32,
};

}  // namespace dvl
