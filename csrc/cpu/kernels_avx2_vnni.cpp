// kernels_avx2_vnni.cpp — the avx2_vnni level: avx2 plus AVX-VNNI (the VEX-encoded 256-bit
// vpdpbusd of Alder Lake and later, Zen 5), which only the q8 'fast' matmul uses
// (kernels_q8_v256.inc, Q8Ymm<true>). Built with the avx2 flags and -mavxvnni only
// (CMakeLists.txt); everything else is the avx2 level's code (kernels_avx2_level.inc),
// compiled again here.
#define DVL_LEVEL_VNNI true
#define DVL_LEVEL_ISA Isa::Avx2Vnni
#define DVL_LEVEL_TABLE kCpuKernelsAvx2Vnni
#define DVL_LEVEL_Q8 "vpdpbusd ymm (AVX-VNNI): int8 activations x int8 weights, int32 block sums"
#include "kernels_avx2_level.inc"
