// dtype.cuh — device versions of csrc/core/dtype.h's scalar conversions, bit for bit the same
// (round to nearest even, NaN kept quiet with the same payload rule), plus a typed load of one
// float element from f32 / bf16 / f16 storage. Included by the op files of the CUDA plugin.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "../core/dtype.h"

namespace dvl_cuda {

__device__ __forceinline__ float d_bf16_to_f32(uint16_t h) { return __uint_as_float(uint32_t(h) << 16); }

__device__ __forceinline__ uint16_t d_f32_to_bf16(float f) {
  uint32_t u = __float_as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

__device__ __forceinline__ float d_f16_to_f32(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, u;
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
  return __uint_as_float(u);
}

__device__ __forceinline__ uint16_t d_f32_to_f16(float f) {
  uint32_t u = __float_as_uint(f), sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return uint16_t(sign | 0x7e00u | ((a >> 13) & 0x3ffu));  // NaN
  if (a >= 0x477ff000u) return uint16_t(sign | 0x7c00u);                         // overflow, inf
  if (a < 0x38800000u) {                                                         // subnormal / zero
    if (a < 0x33000000u) return uint16_t(sign);
    uint32_t e = a >> 23, man = (a & 0x7fffffu) | 0x800000u, shift = 126 - e;
    uint32_t r = man >> shift, rem = man & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (r & 1u))) ++r;
    return uint16_t(sign | r);
  }
  uint32_t r = a - 0x38000000u, out = r >> 13, rem = r & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (out & 1u))) ++out;
  return uint16_t(sign | out);
}

// Element i of storage p holding dtype dt (F32, BF16 or F16), as f32 (exact widening).
__device__ __forceinline__ float d_load(const void* p, int dt, int64_t i) {
  if (dt == int(dvl::DType::F32)) return static_cast<const float*>(p)[i];
  uint16_t h = static_cast<const uint16_t*>(p)[i];
  return dt == int(dvl::DType::BF16) ? d_bf16_to_f32(h) : d_f16_to_f32(h);
}

__device__ __forceinline__ void d_store(void* p, int dt, int64_t i, float v) {
  if (dt == int(dvl::DType::F32)) static_cast<float*>(p)[i] = v;
  else if (dt == int(dvl::DType::BF16)) static_cast<uint16_t*>(p)[i] = d_f32_to_bf16(v);
  else static_cast<uint16_t*>(p)[i] = d_f32_to_f16(v);
}

}  // namespace dvl_cuda
