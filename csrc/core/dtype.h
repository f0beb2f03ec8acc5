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
  // Room for block-quantized weights (q8_0: 32 int8 + one f16 scale per block).
  Q8_0 = 16,
};

static inline size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32: return 4;
    case DType::F16: return 2;
    case DType::BF16: return 2;
    case DType::I32: return 4;
    case DType::U8: return 1;
    case DType::Q8_0: return 0;  // block type: use dtype_row_bytes
  }
  return 0;
}

static inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "f32";
    case DType::F16: return "f16";
    case DType::BF16: return "bf16";
    case DType::I32: return "i32";
    case DType::U8: return "u8";
    case DType::Q8_0: return "q8_0";
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

}  // namespace dvl
