// dtype.h — element types the engine stores, their sizes and scalar conversions.
//
// All helpers are `static inline` on purpose: the per-ISA kernel files include this header
// with -mavx512* flags, and a weak inline symbol compiled there could be the copy the linker
// keeps for baseline code (SIGILL on older CPUs).
//
// bf16 and f16 are stored as raw 16-bit patterns; conversions here are the plain
// reference (round-to-nearest-even, NaN kept quiet). SIMD kernels convert in bulk
// with their own instructions and must agree with these bit for bit.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>

// The conversions compile for the GPU too (csrc/cuda/dtype.cuh uses them in kernels), so the
// CPU and CUDA backends share one definition of every rounding rule.
#if defined(__CUDACC__)
#define DVL_HOST_DEVICE __host__ __device__
#else
#define DVL_HOST_DEVICE
#endif

namespace dvl {

enum class DType : int32_t {
  F32 = 0,
  F16 = 1,
  BF16 = 2,
  I32 = 3,
  U8 = 4,
  // Block-quantized int8 weights, CPU only: see "q8 layout" below. Not ggml's q8_0.
  Q8 = 16,
  // bf16 weights rearranged in panels of 16 rows, CPU only: see "bf16p layout" below.
  BF16P = 17,
  // q8 weights rearranged in panels of 16 rows, CPU only: see "q8p layout" below.
  Q8P = 18,
};

static inline size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32: return 4;
    case DType::F16: return 2;
    case DType::BF16: return 2;
    case DType::I32: return 4;
    case DType::U8: return 1;
    case DType::Q8: return 0;  // block type: use q8_row_bytes
    case DType::BF16P: return 0;  // block type: use bf16p_elems
    case DType::Q8P: return 0;  // block type: use q8p_bytes
  }
  return 0;
}

// Block types: their bytes are not numel · dtype_size, and only the ops that know the layout
// (matmul, embedding, convert, load) read them.
static inline bool dtype_is_block(DType t) { return t == DType::Q8 || t == DType::BF16P || t == DType::Q8P; }

static inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "f32";
    case DType::F16: return "f16";
    case DType::BF16: return "bf16";
    case DType::I32: return "i32";
    case DType::U8: return "u8";
    case DType::Q8: return "q8";
    case DType::BF16P: return "bf16p";
    case DType::Q8P: return "q8p";
  }
  return "?";
}

// Parses the names used by the TS layer and safetensors ("F32", "bf16", ...). Returns false
// for an unknown name.
bool dtype_parse(const std::string& s, DType* out);

DVL_HOST_DEVICE static inline float bf16_to_f32(uint16_t h) {
  uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

DVL_HOST_DEVICE static inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
  return uint16_t(u >> 16);
}

// f32 → bf16 as the fast matmul rounds its activations (precision 'fast', bf16 weights): the
// rule of vcvtneps2bf16, which that kernel uses. NaN → quiet NaN (as f32_to_bf16), f32
// subnormals (|f| < 2^-126) → ±0, everything else rounds to nearest even (|f| ≥ 0x7f7f8000's
// value, i.e. above the largest bf16 by half an ulp or more, becomes ±Inf).
DVL_HOST_DEVICE static inline uint16_t f32_to_bf16_daz(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7f800000u) == 0) return uint16_t((u >> 16) & 0x8000u);  // ±0 and subnormals
  return f32_to_bf16(f);
}

DVL_HOST_DEVICE static inline float f16_to_f32(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t man = h & 0x3ffu;
  uint32_t u;
  if (exp == 0) {
    if (man == 0) {
      u = sign;
    } else {  // subnormal: normalise
      int e = -1;
      do { man <<= 1; ++e; } while (!(man & 0x400u));
      u = sign | uint32_t(127 - 15 - e) << 23 | (man & 0x3ffu) << 13;
    }
  } else if (exp == 31) {
    u = sign | 0x7f800000u | man << 13;
  } else {
    u = sign | (exp + 112) << 23 | man << 13;
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

DVL_HOST_DEVICE static inline uint16_t f32_to_f16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  uint32_t sign = (u >> 16) & 0x8000u;
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return uint16_t(sign | 0x7e00u | ((a >> 13) & 0x3ffu));  // NaN
  if (a >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // overflow (incl. inf) after rounding
  if (a < 0x38800000u) {  // subnormal or zero in f16
    if (a < 0x33000000u) return uint16_t(sign);  // < half of the smallest subnormal
    uint32_t e = a >> 23;
    uint32_t man = (a & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126 - e;  // 14 + (112 - (e - 127)) ... yields subnormal mantissa
    uint32_t r = man >> shift;
    uint32_t rem = man & ((1u << shift) - 1);
    uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (r & 1u))) ++r;
    return uint16_t(sign | r);
  }
  uint32_t r = a - 0x38000000u;  // rebias exponent 127 -> 15
  uint32_t out = r >> 13;
  uint32_t rem = r & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (out & 1u))) ++out;
  return uint16_t(sign | out);
}

// ---- q8 layout --------------------------------------------------------------------------------
//
// A q8 tensor [.., K] stores each of its rows of K values on its own (rows = numel / K), in
// q8_row_bytes(K) bytes, a multiple of 64, so every row starts 64-byte aligned:
//
//   quants  nb·32 bytes, nb = ceil(K / 32) blocks of 32 values (the last zero-padded)
//   scales  nb bf16, block b's scale d_b
//   padding to the next multiple of 64 bytes
//
// Value k of the row is (quant − 128) · d_{k/32}: quants are stored offset by 128 (u8, 1..255
// for −127..127; −128 is never produced), the operand order vpdpbusd needs (u8 · s8) without
// a per-load conversion. Blocks go in groups of 16 (the last group holds nb mod 16 when that
// is not 0); inside a group of g blocks the quants are interleaved by quads: value t
// (0..31) of the group's block i sits at byte (t/4)·4g + 4i + t%4 of the group's g·32 bytes.
// So the 4g bytes of quad j hold quad j of every block: one 64-byte load feeds 16 int32
// lanes of vpdpbusd, lane i summing block i only, and 8 loads give 16 whole block dot
// products with no horizontal sums (csrc/cpu/kernels_q8_*.inc). Weights are quantised once,
// at load (kernels.h quantize_rows_q8, the rule below); activations at run time into the
// same layout with f32 scales (kernels.h ActQ8).
//
// Weight quantisation, per block: amax = max |w|. Non-finite values → scale NaN, quants 0
// (every output the block feeds becomes NaN). amax < 2^-96 → scale 0, quants 0. Otherwise
// d = amax / 127 rounded UP to bf16 (so |w / d| ≤ 127), q = round-to-nearest-even(w · (1/d))
// clamped to ±127 (1/d in f32). Dequantised, (q − 128 offset removed)·d is exact in f32.

constexpr int64_t kQ8Block = 32;   // values per block (one scale)
constexpr int64_t kQ8Group = 16;   // blocks per interleaved group
constexpr float kQ8TinyAmax = 1.2621774e-29f;  // 2^-96: blocks below it quantise to zero

DVL_HOST_DEVICE static inline int64_t q8_blocks(int64_t K) { return (K + kQ8Block - 1) / kQ8Block; }
DVL_HOST_DEVICE static inline int64_t q8_row_bytes(int64_t K) {
  return (q8_blocks(K) * (kQ8Block + 2) + 63) / 64 * 64;
}
// Byte offset of value k inside a row's quants.
DVL_HOST_DEVICE static inline int64_t q8_quant_offset(int64_t K, int64_t k) {
  const int64_t nb = q8_blocks(K), b = k / kQ8Block, t = k % kQ8Block;
  const int64_t g0 = b / kQ8Group * kQ8Group, g = nb - g0 < kQ8Group ? nb - g0 : kQ8Group;
  return g0 * kQ8Block + (t / 4) * 4 * g + 4 * (b - g0) + t % 4;
}
// The bf16 weight scale of a block whose largest magnitude is amax (finite, ≥ 2^-96).
DVL_HOST_DEVICE static inline uint16_t q8_weight_scale(float amax) {
  float d = amax / 127.0f;
  uint32_t u;
  std::memcpy(&u, &d, 4);
  if (u & 0xffffu) u = (u + 0x10000u) & 0xffff0000u;  // round up (d > 0)
  return uint16_t(u >> 16);
}

// ---- bf16p layout ------------------------------------------------------------------------------
//
// A bf16p tensor is a bf16 matrix [N, K] rearranged for vdpbf16ps with the OUTPUT rows in the
// vector lanes (csrc/cpu/kernels_bf16p.inc): rows go in panels of 16 (N rounded up to a
// multiple of 16), K in pairs (rounded up to even); panel p holds, for each pair j, 16 × 2
// values — row 16p + i's values 2j and 2j + 1 at [i·2, i·2 + 1] of those 32. So element
// (n, k) sits at (n/16)·16·Kp + (k/2)·32 + (n%16)·2 + k%2, Kp = K rounded up to even, and the
// padding is zero. One 64-byte load gives a pair of K for 16 rows; the matching activation
// pair is a broadcast; the 16 lanes of the accumulator are 16 outputs, so no horizontal sums.
// A panel is one contiguous stream of 32·Kp bytes: the weights stream in long sequential runs.
// Made at load (the load op, precision 'fast' on AVX512_BF16 machines) or by convert.

constexpr int64_t kBf16pRows = 16;

static inline int64_t bf16p_k_padded(int64_t K) { return (K + 1) / 2 * 2; }
static inline int64_t bf16p_panels(int64_t N) { return (N + kBf16pRows - 1) / kBf16pRows; }
// Elements (uint16) of a bf16p [N, K] tensor, padding included.
static inline int64_t bf16p_elems(int64_t N, int64_t K) { return bf16p_panels(N) * kBf16pRows * bf16p_k_padded(K); }
// Offset of value k of a row from the row's value 0 (the pairs of one row are 32 values apart).
static inline int64_t bf16p_k_offset(int64_t k) { return (k / 2) * 2 * kBf16pRows + k % 2; }
static inline int64_t bf16p_index(int64_t K, int64_t n, int64_t k) {
  return (n / kBf16pRows) * kBf16pRows * bf16p_k_padded(K) + (n % kBf16pRows) * 2 + bf16p_k_offset(k);
}
// Writes `rows` bf16 rows of K values (row stride K), which are rows n0 .. n0 + rows − 1 of the
// matrix, into the bf16p storage p. Rows of a panel not written keep what p had (zero).
static inline void bf16p_put_rows(uint16_t* p, int64_t K, int64_t n0, int64_t rows, const uint16_t* src) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t k = 0; k < K; ++k) p[bf16p_index(K, n0 + r, k)] = src[r * K + k];
}

// ---- q8p layout --------------------------------------------------------------------------------
//
// A q8p tensor is a q8 matrix [N, K] — the same quants and bf16 scales, quantised by the rule
// above — rearranged like bf16p, with the OUTPUT rows in the vector lanes
// (csrc/cpu/kernels_q8p.inc): rows in panels of 16 (N rounded up to 16), blocks in pairs
// (nb rounded up to even). Panel p is nb2 = ceil(nb/2) pair records of kQ8pPairBytes = 1088
// bytes (17 cache lines); pair record h holds blocks 2h and 2h + 1:
//
//   quants   2 × 8 × 64 bytes: block b's quad j (its values 4j .. 4j + 3) for rows 0..15,
//            4 bytes per row (row i at 4i), offset by 128 as in q8
//   scales   2 × 16 bf16: block 2h's 16 row scales, then block 2h + 1's
//
// So one 64-byte load is a quad of one block for 16 rows, the activations' matching quad is a
// 32-bit broadcast, and vpdpbusd leaves each row's block sum in its own lane: no horizontal
// sums, no per-group masking, one sequential stream per panel. Padding (rows ≥ N, the pad
// block of an odd nb) is zero bytes: scale 0, so it contributes nothing.

constexpr int64_t kQ8pPairBytes = 2 * 8 * 64 + 2 * 16 * 2;

static inline int64_t q8p_pairs(int64_t K) { return (q8_blocks(K) + 1) / 2; }
static inline int64_t q8p_panel_bytes(int64_t K) { return q8p_pairs(K) * kQ8pPairBytes; }
static inline int64_t q8p_bytes(int64_t N, int64_t K) { return (N + 15) / 16 * q8p_panel_bytes(K); }
// The q8 row (q8_row_bytes(K) bytes, dtype.h q8 layout) of row n ↔ its place in a q8p tensor.
static inline void q8p_put_row(uint8_t* p, int64_t K, int64_t n, const uint8_t* row) {
  const int64_t nb = q8_blocks(K);
  uint8_t* panel = p + (n / 16) * q8p_panel_bytes(K);
  const int64_t i = n % 16;
  for (int64_t b = 0; b < nb; ++b) {
    uint8_t* rec = panel + (b / 2) * kQ8pPairBytes;
    for (int64_t t = 0; t < kQ8Block; t += 4) {
      const uint8_t* src = row + q8_quant_offset(K, b * kQ8Block + t);  // a quad is 4 contiguous bytes
      std::memcpy(rec + (b % 2) * 512 + (t / 4) * 64 + 4 * i, src, 4);
    }
    std::memcpy(rec + 1024 + (b % 2) * 32 + 2 * i, row + nb * kQ8Block + 2 * b, 2);
  }
}
static inline void q8p_get_row(const uint8_t* p, int64_t K, int64_t n, uint8_t* row) {
  const int64_t nb = q8_blocks(K);
  const uint8_t* panel = p + (n / 16) * q8p_panel_bytes(K);
  const int64_t i = n % 16;
  std::memset(row, 0, size_t(q8_row_bytes(K)));
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* rec = panel + (b / 2) * kQ8pPairBytes;
    for (int64_t t = 0; t < kQ8Block; t += 4)
      std::memcpy(row + q8_quant_offset(K, b * kQ8Block + t), rec + (b % 2) * 512 + (t / 4) * 64 + 4 * i, 4);
    std::memcpy(row + nb * kQ8Block + 2 * b, rec + 1024 + (b % 2) * 32 + 2 * i, 2);
  }
}

}  // namespace dvl
