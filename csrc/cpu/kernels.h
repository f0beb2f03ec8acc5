// kernels.h — the CPU kernel table: one row of function pointers per ISA level.
//
// Legend: M rows of activations (tokens), K reduction length, N output features.
// Weights are stored as in HF checkpoints: W [N, K] row-major, y = x · Wᵀ + b (q8 weights:
// the same rows, quantised; layout in csrc/core/dtype.h).
//
// csrc/cpu/dispatch.cpp (built with baseline flags, no LTO) picks the best level this CPU and
// OS support, once; DIFFUSIONVL_CPU_ISA=scalar|avx2|avx2_vnni|avx512|avx512_bf16 forces a
// lower one. Levels in rank order: scalar < avx2 < avx2_vnni (AVX2 + AVX-VNNI, e.g. Alder
// Lake, Zen 5) < avx512 < avx512_bf16 (+ AVX512_BF16 and AVX512_VNNI); a CPU may have a level
// without the one below it (Ice Lake: avx512 without AVX-VNNI), so each is checked on its own.
// Each level's kernels live in files built with that level's flags only (*_avx2.cpp,
// *_avx2_vnni.cpp, *_avx512.cpp, *_avx512_bf16.cpp: separate translation units, so a node-gyp
// build can give each its flags the same way); every pointer is filled for every level
// (falling back to a lower level's kernel where a level has nothing better), so callers never
// test for null — except matmul_bf16_dot, see there.
//
// Precision (csrc/core/queue.h, OpContext::precision) picks between two kernels per weight
// dtype: 'exact' keeps activations f32 and every product exact (matmul_f32/bf16/f16/q8);
// 'fast' rounds the activations once per op input, to bf16 for bf16 weights
// (matmul_bf16_dot) and to int8 blocks for q8 weights (matmul_q8_fast). f32 and f16 weights
// always run exact.
//
// Invariant of every matmul kernel here (forward-plan replay and batching rely on it): the
// value of y[m, n] depends only on x[m, :], W[n, :] and K — bit for bit, whatever M is,
// whichever other rows share the call, whatever [n0, n1) the thread got and whichever
// register tile covered it. Each element's operations (and their order) are a function of K
// alone; tiles only change how many elements run side by side. test/ops/matmul-fast.test.ts
// checks it for every kernel at every level.
#pragma once
#include <cmath>
#include <cstdint>

#include "../core/dtype.h"
#include "expf_lanes.h"

namespace dvl {

// Rank order (see above). Values are internal; JS sees the names.
enum class Isa : int32_t { Scalar = 0, Avx2 = 1, Avx2Vnni = 2, Avx512 = 3, Avx512Bf16 = 4 };
constexpr int kIsaCount = 5;
const char* isa_name(Isa isa);
bool isa_parse(const char* s, Isa* out);

// y[m, n] = Σ_k x[m, k] · w[n, k] (+ bias[n]) for m in [0, M), n in [n0, n1).
// x: f32, row stride K. y: f32, row stride ldy. bias may be null. Accumulation in f32.
using MatmulFn = void (*)(const float* x, int64_t M, int64_t K, const void* w, int64_t n0, int64_t n1,
                          const float* bias, float* y, int64_t ldy);

// Activations of a q8 matmul, quantised per block of 32 (q8 layout of dtype.h, quants signed
// and not offset): row m's quants at q + m·row_q (row_q = nb·32 rounded up to 64 bytes), its
// nb f32 block scales at d + m·nb, and corr[m·nb + b] = −128 · Σ quants of block b — the
// start value of a vpdpbusd accumulator, since the weights' quants are stored offset by 128.
// Quantisation of one block: amax = max |x|; a non-finite value → scale NaN, quants 0 (the
// row's outputs become NaN); amax < 2^-96 → scale 0, quants 0; else id = 127 / amax (f32),
// q = round-to-nearest-even(x · id) clamped to ±127, scale = amax / 127 (f32). The same
// arithmetic at every level, so every level quantises bit-identically.
struct ActQ8 {
  int8_t* q;
  float* d;
  int32_t* corr;
  int64_t nb;
  int64_t row_q;
};

// y[m, n] for m in [0, M), n in [n0, n1) from bf16 activations xb (row stride ldx, a multiple
// of 32, zero-padded from K to ldx) and bf16 weights; f32 accumulation.
using MatmulBf16DotFn = void (*)(const uint16_t* xb, int64_t M, int64_t K, int64_t ldx, const void* w, int64_t n0,
                                 int64_t n1, const float* bias, float* y, int64_t ldy);
// The same from quantised activations and q8 weights (rows of q8_row_bytes(K)).
using MatmulQ8FastFn = void (*)(const ActQ8& xq, int64_t M, int64_t K, const void* w, int64_t n0, int64_t n1,
                                const float* bias, float* y, int64_t ldy);

// Fractional bits of the resize weights (ops/image.cpp): 32 − 8 of pixel − 2 of headroom.
static constexpr int kResampleBits = 22;

struct CpuKernels {
  Isa isa;
  MatmulFn matmul_f32;   // w is float*
  MatmulFn matmul_bf16;  // w is uint16_t* (bf16)
  MatmulFn matmul_f16;   // w is uint16_t* (f16)
  MatmulFn matmul_q8;    // w is q8 rows; f32 activations, exact products of the dequantised weights
  // Precision 'fast'. Null where the level has no bf16 dot product (every level but
  // avx512_bf16): there bf16 weights run matmul_bf16 in both precisions, because a bf16 path
  // built from f32 FMAs costs the same multiply-adds plus the rounding (bench/RESULTS.md).
  MatmulBf16DotFn matmul_bf16_dot;
  MatmulQ8FastFn matmul_q8_fast;
  // Activation rounding for matmul_bf16_dot: f32_to_bf16_daz (dtype.h) over n values.
  void (*cvt_f32_to_bf16_daz)(const float* src, uint16_t* dst, int64_t n);
  // Quantises activation rows [m0, m1) of x (row stride K) into xq (see ActQ8).
  void (*quantize_act_q8)(const float* x, int64_t m0, int64_t m1, int64_t K, const ActQ8& xq);
  // Weight rows ↔ q8 rows (dtype.h): `rows` rows of K values, dst/src rows of q8_row_bytes(K).
  void (*quantize_rows_q8)(const float* src, int64_t rows, int64_t K, uint8_t* dst);
  void (*dequantize_rows_q8)(const uint8_t* src, int64_t rows, int64_t K, float* dst);
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
  // A register-only loop of the level's multiply-add for `kind` ('f32' FMA, 'bf16' the bf16
  // matmul's instruction, 'q8' the q8 fast matmul's) run `iters` times; returns the
  // multiply-adds it did (the compute peak probe, ops/probe.cpp), 0 for an unknown kind.
  double (*compute_peak)(char kind, int64_t iters);
  // What the matmuls of this level compute with, for model.backend / inspect.
  const char* bf16_fast_kernel;
  const char* q8_fast_kernel;
  // bf16p weights (dtype.h "bf16p layout"): matmul_bf16p over f32 activations (precision
  // 'exact', and 'fast' where the level has no bf16 dot product: the f32 FMA panel kernel at
  // avx2 / avx2_vnni / avx512, kernels_bf16p_fma.inc; the plain kernel at scalar and
  // avx512_bf16, kernels_generic.inc); matmul_bf16p_dot at 'fast', over activations
  // rounded by cvt_f32_to_bf16_daz — null where the level has no bf16 dot product (every level
  // but avx512_bf16). Its [n0, n1): n0 a multiple of 16, n1 too or N.
  MatmulFn matmul_bf16p;
  MatmulBf16DotFn matmul_bf16p_dot;
  // The thread grain of matmul_bf16p_dot, in panels, for M tokens: its widest register tile
  // (kernels_drive.inc drive_grain), so only a thread piece's last tile is narrower. Null with it.
  int64_t (*bf16p_dot_grain)(int64_t M);
  // q8p weights (dtype.h "q8p layout"), the same way: matmul_q8p exact at every level (the
  // plain kernel), matmul_q8p_fast over ActQ8 activations where the level has one (zmm
  // vpdpbusd at avx512_bf16, kernels_q8p.inc; ymm AVX-VNNI at avx2_vnni, ymm vpmaddubsw at avx2
  // and avx512, kernels_q8p_v256.inc — all bit-identical), else null (scalar).
  MatmulFn matmul_q8p;
  MatmulQ8FastFn matmul_q8p_fast;
  int64_t (*q8p_fast_grain)(int64_t M);  // as bf16p_dot_grain, for matmul_q8p_fast
  // Whether loadModel should store bf16 matrices as bf16p for precision 'fast' at this level:
  // where a panel kernel beats the row kernels (vdpbf16ps at avx512_bf16, f32 FMA panels at
  // avx512; kernels_bf16p*.inc). False at scalar, and at avx2 / avx2_vnni, where the 256-bit
  // FMA panels only tie the row kernel (8-token blocks are FMA-bound there either way).
  bool bf16p_pack;
  // e[j] = exp(double(l[j]) − double(shift)), l[j] ≤ shift or −Inf: the greedy confidence's
  // numerators (ops/sample.cpp), within about an ulp of exp (kernels_generic.inc).
  void (*exp_shift_f64)(const float* l, int64_t n, float shift, double* e);
  // y = silu(g) ⊙ u over n values (u null: silu alone), vectorised exp (kernels_generic.inc).
  void (*silu_mul)(const float* g, const float* u, float* y, int64_t n);
  // y = gelu(x) = x/2 · erfc(−x/√2) over n values, vectorised erfc (kernels_generic.inc).
  void (*gelu)(const float* x, float* y, int64_t n);
  // Pillow's BICUBIC resize passes, exact integer arithmetic (ops/image.cpp; kernels_generic.inc):
  // one output row of the vertical pass (src: its first tap row, `stride` bytes between rows),
  // and the horizontal pass over rows ≤ 16 rows (scratch: W·C·16 bytes).
  void (*resample_v_row)(const uint8_t* src, int64_t stride, const int32_t* k, int n, int64_t len, uint8_t* dst);
  void (*resample_h_rows)(const uint8_t* src, int64_t W, int C, int rows, const int* lo, const int* n, const int32_t* k, int ksize,
                          int64_t w, uint8_t* dst, uint8_t* scratch);
  // RMSNorm over `rows` rows of H values, Σx² in double in a fixed order (ops/norm.cpp;
  // kernels_generic.inc): the same bits at every level.
  void (*rms_norm_rows)(const float* x, const float* w, float* y, int64_t rows, int64_t H, double eps);
  // RoPE (rotate-half) over rows [r0, r1) of x [T·nh, hd] with tables [T, hd] (ops/rope.cpp;
  // kernels_generic.inc): each product rounded, no fused multiply-add — the same bits at every level.
  void (*rope_rows)(const float* x, const float* c, const float* s, float* y, int64_t r0, int64_t r1, int64_t nh, int64_t hd);
};

// The table for the best level available (or the forced one). Never null.
const CpuKernels& cpu_kernels();
// The table for a given level, or null when this CPU/OS or this build lacks it.
const CpuKernels* cpu_kernels_for(Isa isa);
// Highest level this CPU and OS support (ignores the env override).
Isa cpu_isa_detected();
// Whether this CPU and OS support a level (a build may still lack it: see cpu_kernels_for).
bool cpu_isa_supported(Isa isa);
// Which matmul dtypes/levels were compiled in, for diagnostics.
const char* cpu_build_info();

// Per-level tables, defined in the files built with that level's flags.
extern const CpuKernels kCpuKernelsScalar;
#if defined(DVL_HAVE_X86_KERNELS)
extern const CpuKernels kCpuKernelsAvx2;
extern const CpuKernels kCpuKernelsAvx2Vnni;
extern const CpuKernels kCpuKernelsAvx512;
extern const CpuKernels kCpuKernelsAvx512Bf16;
#endif

}  // namespace dvl
