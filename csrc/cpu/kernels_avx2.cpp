// kernels_avx2.cpp — the avx2 level (AVX2 + FMA + F16C, 8 f32 lanes, 16 ymm registers).
// Built with -mavx2 -mfma -mf16c only (CMakeLists.txt); everything here has internal linkage.
// The exact kernels are kernels_simd.inc over the vector interface of kernels_v256.inc; q8 runs
// on vpmaddubsw (kernels_q8_v256.inc); bf16 weights have no faster path than the exact
// kernel here (kernels.h matmul_bf16_dot).
#define DVL_LEVEL_VNNI false
#define DVL_LEVEL_ISA Isa::Avx2
#define DVL_LEVEL_TABLE kCpuKernelsAvx2
#define DVL_LEVEL_Q8 "vpmaddubsw ymm (AVX2): int8 activations x int8 weights, int32 block sums"
#include "kernels_avx2_level.inc"
