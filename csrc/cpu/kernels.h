// kernels.h — the CPU kernel table: one row of function pointers per ISA level.
//
// Legend: M rows of activations (tokens), K reduction length, N output features.
// Weights are stored as in HF checkpoints: W [N, K] row-major, y = x · Wᵀ + b.
//
// csrc/cpu/dispatch.cpp (built with baseline flags, no LTO) picks the best level this CPU and
// OS support, once; DIFFUSIONVL_CPU_ISA=scalar|avx2|avx512|avx512_bf16 forces a lower one.
// Each level's kernels live in files built with that level's flags only (*_avx2.cpp,
// *_avx512.cpp, *_avx512_bf16.cpp: separate translation units, so a node-gyp build can give
// each its flags the same way); every pointer is filled for every level (falling back to a lower level's
// kernel where a level has nothing better), so callers never test for null.
#pragma once
#include <cstdint>

#include "../core/dtype.h"

namespace dvl {

enum class Isa : int32_t { Scalar = 0, Avx2 = 1, Avx512 = 2, Avx512Bf16 = 3 };
const char* isa_name(Isa isa);
bool isa_parse(const char* s, Isa* out);

// y[m, n] = Σ_k x[m, k] · w[n, k] (+ bias[n]) for m in [0, M), n in [n0, n1).
// x: f32, row stride K. y: f32, row stride ldy. bias may be null. Accumulation in f32.
using MatmulFn = void (*)(const float* x, int64_t M, int64_t K, const void* w, int64_t n0, int64_t n1,
                          const float* bias, float* y, int64_t ldy);

struct CpuKernels {
  Isa isa;
  MatmulFn matmul_f32;   // w is float*
  MatmulFn matmul_bf16;  // w is uint16_t* (bf16)
  MatmulFn matmul_f16;   // w is uint16_t* (f16)
  // Bulk conversions (n elements).
  void (*cvt_bf16_to_f32)(const uint16_t* src, float* dst, int64_t n);
  void (*cvt_f16_to_f32)(const uint16_t* src, float* dst, int64_t n);
  void (*cvt_f32_to_bf16)(const float* src, uint16_t* dst, int64_t n);
  void (*cvt_f32_to_f16)(const float* src, uint16_t* dst, int64_t n);
  float (*dot_f32)(const float* a, const float* b, int64_t n);
  // y[i] += a * x[i]
  void (*axpy_f32)(float a, const float* x, float* y, int64_t n);
  // Reads `bytes` bytes at p with the widest loads of the level and returns a checksum of
  // them (the bandwidth probe, ops/probe.cpp; the checksum keeps the reads alive).
  uint64_t (*stream_sum)(const void* p, int64_t bytes);
};

// The table for the best level available (or the forced one). Never null.
const CpuKernels& cpu_kernels();
// The table for a given level, or null when this CPU/OS or this build lacks it.
const CpuKernels* cpu_kernels_for(Isa isa);
// Highest level this CPU and OS support (ignores the env override).
Isa cpu_isa_detected();
// Which matmul dtypes/levels were compiled in, for diagnostics.
const char* cpu_build_info();

// Per-level tables, defined in the files built with that level's flags.
extern const CpuKernels kCpuKernelsScalar;
#if defined(DVL_HAVE_X86_KERNELS)
extern const CpuKernels kCpuKernelsAvx2;
extern const CpuKernels kCpuKernelsAvx512;
extern const CpuKernels kCpuKernelsAvx512Bf16;
#endif

}  // namespace dvl
