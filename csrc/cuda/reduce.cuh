// reduce.cuh — block-wide reductions shared by the row kernels of the CUDA plugin.
// Every thread of the block must call them (they use __syncthreads); blockDim.x is a multiple of
// 32 and at most 1024. The result is returned to every thread.
#pragma once
#include <cuda_runtime.h>

namespace dvl_cuda {

template <class T>
__device__ __forceinline__ T warp_sum(T v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Sum over the block (tree order: fixed for a given blockDim, so deterministic run to run).
template <class T>
__device__ T block_sum(T v) {
  __shared__ T part[32];
  __shared__ T total;
  v = warp_sum(v);
  const int w = threadIdx.x >> 5, lane = threadIdx.x & 31, nw = (blockDim.x + 31) >> 5;
  __syncthreads();  // part/total may still be read by a previous call
  if (lane == 0) part[w] = v;
  __syncthreads();
  if (w == 0) {
    T s = lane < nw ? part[lane] : T(0);
    s = warp_sum(s);
    if (lane == 0) total = s;
  }
  __syncthreads();
  return total;
}

// NaN-propagating max of floats over the block (a NaN anywhere gives NaN).
__device__ __forceinline__ float nan_max(float a, float b) { return (a != a || b != b) ? __int_as_float(0x7fc00000) : fmaxf(a, b); }

__device__ float block_max_nan(float v) {
  __shared__ float part[32];
  __shared__ float total;
  for (int o = 16; o > 0; o >>= 1) v = nan_max(v, __shfl_xor_sync(0xffffffffu, v, o));
  const int w = threadIdx.x >> 5, lane = threadIdx.x & 31, nw = (blockDim.x + 31) >> 5;
  __syncthreads();
  if (lane == 0) part[w] = v;
  __syncthreads();
  if (w == 0) {
    float s = lane < nw ? part[lane] : -__int_as_float(0x7f800000);
    for (int o = 16; o > 0; o >>= 1) s = nan_max(s, __shfl_xor_sync(0xffffffffu, s, o));
    if (lane == 0) total = s;
  }
  __syncthreads();
  return total;
}

}  // namespace dvl_cuda
