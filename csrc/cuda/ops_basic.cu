// ops_basic.cu — the plugin's op table; today one op, `add`, proving the path end to end.
//
// add: f32 a [.., N] + f32 b of a's shape, or b [N] broadcast over the rows → f32 y, a's shape.
//      Same contract as csrc/cpu/ops/basic.cpp (the engine runs the CPU op's plan() to
//      validate and size the output; this file checks again what the kernel relies on).
// Later issues add the rest of the op set here and in sibling files, each listed in kOps.
#include <cstring>
#include <string>

#include "../core/attrs.h"
#include "../core/tensor.h"
#include "plugin.h"

namespace dvl_cuda {

using dvl::DType;
using dvl::Tensor;

static int64_t numel(const Tensor& t) {
  int64_t n = 1;
  for (int64_t d : t.shape) n *= d;
  return n;
}

// Grid-stride loop: one launch covers any n; memory-bound, so 256 threads and enough blocks to
// fill the SMs is all it needs. nb == n: same shape; else b is one row broadcast (i % nb).
__global__ void add_f32_kernel(const float* __restrict__ a, const float* __restrict__ b, float* __restrict__ y,
                               int64_t n, int64_t nb) {
  int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    y[i] = a[i] + b[nb == n ? i : i % nb];
}

static dvl_status add_run(int device, const Tensor* const* in, size_t n_in, Tensor* const* out, size_t n_out,
                          dvl_backend_error* err) {
  if (n_in != 2 || n_out != 1 || !in[0] || !in[1] || !out[0])
    return fail(err, "DVL_ARG", "cuda add: expected 2 inputs and 1 output");
  const Tensor &a = *in[0], &b = *in[1], &y = *out[0];
  if (a.dtype != DType::F32 || b.dtype != DType::F32 || y.dtype != DType::F32)
    return fail(err, "DVL_DTYPE", "cuda add: f32 only");
  for (const Tensor* t : {&a, &b, static_cast<const Tensor*>(&y)})
    if (!t->storage || t->storage->device != dvl::Device::Cuda)
      return fail(err, "DVL_BACKEND", "cuda add: every tensor must live on the device");
  int64_t n = numel(a), nb = numel(b);
  bool same = a.shape == b.shape;
  bool bcast = b.shape.size() == 1 && !a.shape.empty() && b.shape[0] == a.shape.back();
  if ((!same && !bcast) || y.shape != a.shape) return fail(err, "DVL_SHAPE", "cuda add: b must have a's shape or be [N]");
  cudaStream_t s = device_stream(device, err);
  if (!s) return 1;
  if (n == 0) return 0;
  if (nb == 0) return fail(err, "DVL_SHAPE", "cuda add: empty b with non-empty a");
  const int threads = 256;
  int64_t blocks64 = (n + threads - 1) / threads;
  int blocks = int(blocks64 < 65535 ? blocks64 : 65535);
  add_f32_kernel<<<blocks, threads, 0, s>>>(static_cast<const float*>(a.storage->data),
                                            static_cast<const float*>(b.storage->data),
                                            static_cast<float*>(y.storage->data), n, nb);
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return fail_cuda(err, e, "cuda add: launch");
  return 0;
}

struct OpEntry {
  const char* name;
  DType dtype;  // main-input dtype this entry implements
  dvl_status (*run)(int device, const Tensor* const* in, size_t n_in, Tensor* const* out, size_t n_out,
                    dvl_backend_error* err);
};

static const OpEntry kOps[] = {
    {"add", DType::F32, add_run},
};

int ops_supports(const char* op, int dtype) {
  if (!op) return 0;
  for (const OpEntry& e : kOps)
    if (std::strcmp(e.name, op) == 0 && int(e.dtype) == dtype) return 1;
  return 0;
}

dvl_status ops_run(int device, const char* op, const Tensor* const* in, size_t n_in, Tensor* const* out,
                   size_t n_out, const dvl::Attrs*, dvl_backend_error* err) {
  if (!op) return fail(err, "DVL_ARG", "cuda: op name missing");
  DType main = n_in && in[0] ? in[0]->dtype : DType::F32;
  for (const OpEntry& e : kOps)
    if (std::strcmp(e.name, op) == 0 && e.dtype == main) return e.run(device, in, n_in, out, n_out, err);
  return fail(err, "DVL_BACKEND", "cuda: op '%s' is not implemented for %s on the CUDA backend", op, dvl::dtype_name(main));
}

cudaError_t ops_kernel_image_check() {
  cudaFuncAttributes attr;
  return cudaFuncGetAttributes(&attr, add_f32_kernel);
}

}  // namespace dvl_cuda
