// plugin.h — shared internals of the CUDA plugin (csrc/cuda/*.cu): error helpers, the
// per-device stream, and the op entry points each op file provides.
//
// Everything here has hidden visibility; only dvl_cuda_plugin_init (plugin.cu) is exported.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>

#include "../core/backend.h"

namespace dvl_cuda {

// Fills err with code and a printf-style message; returns 1 (a failed dvl_status).
int fail(dvl_backend_error* err, const char* code, const char* fmt, ...);
// Turns a CUDA runtime error into code "cuda" with `what` and the CUDA error name.
int fail_cuda(dvl_backend_error* err, cudaError_t e, const char* what);

// The plugin's stream for `device` (created on first use, non-blocking, lives for the
// process). Also makes `device` current on the calling thread. nullptr + err on failure.
cudaStream_t device_stream(int device, dvl_backend_error* err);

// ---- ops (ops_basic.cu) ---------------------------------------------------------------------
int ops_supports(const char* op, int dtype);
dvl_status ops_run(int device, const char* op, const dvl::Tensor* const* in, size_t n_in,
                   dvl::Tensor* const* out, size_t n_out, const dvl::Attrs* attrs, dvl_backend_error* err);
// cudaFuncGetAttributes on one of the plugin's kernels: cudaSuccess when this build holds a
// kernel image (SASS or PTX) the current device can run.
cudaError_t ops_kernel_image_check();

}  // namespace dvl_cuda
