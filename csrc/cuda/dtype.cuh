// dtype.cuh — device names for csrc/core/dtype.h's scalar conversions (the same functions,
// compiled host + device under nvcc), plus a typed load of one float element from f32 / bf16 /
// f16 storage. Included by the op files of the CUDA plugin.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "../core/dtype.h"

namespace dvl_cuda {

// The scalar rules live once, in csrc/core/dtype.h (host + device there under nvcc).
__device__ __forceinline__ float d_bf16_to_f32(uint16_t h) { return dvl::bf16_to_f32(h); }
__device__ __forceinline__ uint16_t d_f32_to_bf16(float f) { return dvl::f32_to_bf16(f); }
__device__ __forceinline__ float d_f16_to_f32(uint16_t h) { return dvl::f16_to_f32(h); }
__device__ __forceinline__ uint16_t d_f32_to_f16(float f) { return dvl::f32_to_f16(f); }

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
