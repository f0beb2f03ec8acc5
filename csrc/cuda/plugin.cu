// plugin.cu — the CUDA plugin's entry point and its device, memory and copy functions
// (csrc/core/backend.h, docs/packaging.md §B1.3).
//
// Built into libdiffusionvl_cuda.so with the CUDA runtime linked statically, so a user needs
// only the NVIDIA driver (libcuda.so.1). The engine dlopens this file at run time
// (csrc/cuda/host/cuda_loader.cpp); nothing here prints, aborts or lets an exception escape.
#include <cstdarg>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <mutex>

#include "../core/tensor.h"
#include "plugin.h"

#ifndef DVL_CUDA_ARCHS
#define DVL_CUDA_ARCHS "unknown"
#endif

namespace dvl_cuda {

int fail(dvl_backend_error* err, const char* code, const char* fmt, ...) {
  if (!err) return 1;
  std::snprintf(err->code, sizeof err->code, "%s", code);
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(err->message, sizeof err->message, fmt, ap);
  va_end(ap);
  return 1;
}

int fail_cuda(dvl_backend_error* err, cudaError_t e, const char* what) {
  // Reset the runtime's last-error slot: a failed call leaves its error there, and the next
  // op's launch check (cudaGetLastError) would report this failure again as its own.
  cudaGetLastError();
  return fail(err, "cuda", "%s: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
}

// One stream per device for the process. 64 covers any real node; larger indices fail.
static constexpr int kMaxDevices = 64;
static std::mutex g_stream_mu;
static cudaStream_t g_streams[kMaxDevices];
// Whether the device's default memory pool serves alloc/free (stream-ordered, cached), set
// when its stream is created. A queue allocates every op's outputs and frees the intermediates
// moments later: cudaMalloc/cudaFree would cost a driver call each and cudaFree waits for the
// whole device, stalling the pipeline on every op; the pool reuses blocks in stream order.
static bool g_pool[kMaxDevices];

cudaStream_t device_stream(int device, dvl_backend_error* err) {
  if (device < 0 || device >= kMaxDevices) {
    fail(err, "DVL_RANGE", "cuda: device index %d out of range", device);
    return nullptr;
  }
  cudaError_t e = cudaSetDevice(device);
  if (e != cudaSuccess) {
    fail_cuda(err, e, "cudaSetDevice");
    return nullptr;
  }
  std::lock_guard<std::mutex> lock(g_stream_mu);
  if (!g_streams[device]) {
    e = cudaStreamCreateWithFlags(&g_streams[device], cudaStreamNonBlocking);
    if (e != cudaSuccess) {
      g_streams[device] = nullptr;
      fail_cuda(err, e, "cudaStreamCreate");
      return nullptr;
    }
    int pools = 0;
    cudaMemPool_t pool;
    if (cudaDeviceGetAttribute(&pools, cudaDevAttrMemoryPoolsSupported, device) == cudaSuccess && pools &&
        cudaDeviceGetDefaultMemPool(&pool, device) == cudaSuccess) {
      // Keep freed blocks cached instead of returning them to the driver at each synchronize.
      uint64_t keep = UINT64_MAX;
      g_pool[device] = cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep) == cudaSuccess;
    }
    cudaGetLastError();  // a device without pools is not an error: plain cudaMalloc serves it
  }
  return g_streams[device];
}

static bool uses_pool(int device) {
  std::lock_guard<std::mutex> lock(g_stream_mu);
  return device >= 0 && device < kMaxDevices && g_pool[device];
}

// ---- devices ----------------------------------------------------------------------------

static dvl_status device_count(int* n, dvl_backend_error* err) {
  *n = 0;
  cudaError_t e = cudaGetDeviceCount(n);
  if (e == cudaErrorInsufficientDriver) {
    int drv = 0;
    cudaDriverGetVersion(&drv);
    // Static cudart says "insufficient driver" also when it finds no libcuda at all.
    if (drv == 0) return fail(err, "no-driver", "the CUDA runtime finds no usable NVIDIA driver (libcuda.so.1)");
    return fail(err, "driver-too-old", "the NVIDIA driver supports CUDA %d.%d; this plugin needs CUDA %d.%d or newer",
                drv / 1000, drv % 1000 / 10, CUDART_VERSION / 1000, CUDART_VERSION % 1000 / 10);
  }
  if (e == cudaErrorNoDevice || (e == cudaSuccess && *n == 0))
    return fail(err, "no-device", "the CUDA driver reports no device");
  if (e != cudaSuccess) return fail_cuda(err, e, "cudaGetDeviceCount");
  return 0;
}

static dvl_status device_props(int device, dvl_device_props* out, dvl_backend_error* err) {
  cudaDeviceProp p;
  cudaError_t e = cudaGetDeviceProperties(&p, device);
  if (e != cudaSuccess) return fail_cuda(err, e, "cudaGetDeviceProperties");
  std::memset(out, 0, sizeof *out);
  std::snprintf(out->name, sizeof out->name, "%s", p.name);
  out->cc_major = p.major;
  out->cc_minor = p.minor;
  out->memory_bytes = uint64_t(p.totalGlobalMem);
  out->multiprocessors = p.multiProcessorCount;
  out->l2_bytes = p.l2CacheSize;
  out->smem_per_block_optin = int(p.sharedMemPerBlockOptin);
  return 0;
}

static dvl_status device_check(int device, dvl_backend_error* err) {
  if (!device_stream(device, err)) return 1;  // creates the context on this device
  cudaError_t e = ops_kernel_image_check();
  if (e == cudaErrorNoKernelImageForDevice || e == cudaErrorInvalidDeviceFunction ||
      e == cudaErrorUnsupportedPtxVersion) {
    cudaGetLastError();  // clear the sticky-free error so later calls start clean
    return fail(err, "arch-unsupported", "this build (archs %s) has no kernel image for device %d: %s", DVL_CUDA_ARCHS,
                device, cudaGetErrorName(e));
  }
  if (e != cudaSuccess) return fail_cuda(err, e, "cudaFuncGetAttributes");
  return 0;
}

static int driver_version() {
  int v = 0;
  if (cudaDriverGetVersion(&v) != cudaSuccess) return 0;
  return v;
}

// ---- memory -----------------------------------------------------------------------------

static dvl_status mem_alloc(int device, size_t bytes, void** out, dvl_backend_error* err) {
  *out = nullptr;
  cudaStream_t s = device_stream(device, err);
  if (!s) return 1;
  size_t n = bytes ? bytes : 1;
  cudaError_t e = uses_pool(device) ? cudaMallocAsync(out, n, s) : cudaMalloc(out, n);
  if (e == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    return fail(err, "DVL_ALLOC", "cuda: out of device memory allocating %zu bytes on device %d (%zu of %zu free)", bytes,
                device, free_b, total_b);
  }
  if (e != cudaSuccess) return fail_cuda(err, e, "cudaMalloc");
  // Zero-filled like host Storage; ordered before any op or copy on this stream.
  e = cudaMemsetAsync(*out, 0, n, s);
  if (e != cudaSuccess) {
    if (uses_pool(device)) cudaFreeAsync(*out, s);
    else cudaFree(*out);
    *out = nullptr;
    return fail_cuda(err, e, "cudaMemsetAsync");
  }
  return 0;
}

static void mem_free(int device, void* ptr) {
  if (!ptr) return;
  dvl_backend_error err{};
  cudaStream_t s = device_stream(device, &err);
  if (!s) return;
  // Pool: freed in stream order, after every op already enqueued that may use ptr (all of a
  // device's work is on this one stream). Without: cudaFree waits for the device.
  if (uses_pool(device)) cudaFreeAsync(ptr, s);
  else cudaFree(ptr);
}

static dvl_status copy(int device, void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, const char* what,
                       dvl_backend_error* err) {
  cudaStream_t s = device_stream(device, err);
  if (!s) return 1;
  if (!bytes) return 0;
  cudaError_t e = cudaMemcpyAsync(dst, src, bytes, kind, s);
  if (e == cudaSuccess && kind != cudaMemcpyDeviceToDevice) e = cudaStreamSynchronize(s);
  if (e != cudaSuccess) return fail_cuda(err, e, what);
  return 0;
}

static dvl_status copy_h2d(int device, void* dst, const void* src, size_t bytes, dvl_backend_error* err) {
  return copy(device, dst, src, bytes, cudaMemcpyHostToDevice, "copy host to device", err);
}
static dvl_status copy_d2h(int device, void* dst, const void* src, size_t bytes, dvl_backend_error* err) {
  return copy(device, dst, src, bytes, cudaMemcpyDeviceToHost, "copy device to host", err);
}
static dvl_status copy_d2d(int device, void* dst, const void* src, size_t bytes, dvl_backend_error* err) {
  return copy(device, dst, src, bytes, cudaMemcpyDeviceToDevice, "copy device to device", err);
}

static dvl_status host_alloc(size_t bytes, void** out, dvl_backend_error* err) {
  *out = nullptr;
  cudaError_t e = cudaMallocHost(out, bytes ? bytes : 1);
  if (e != cudaSuccess) return fail_cuda(err, e, "cudaMallocHost (pinned staging buffer)");
  return 0;
}

static void host_free(void* ptr) {
  if (ptr) cudaFreeHost(ptr);
}

static dvl_status synchronize(int device, dvl_backend_error* err) {
  cudaStream_t s = device_stream(device, err);
  if (!s) return 1;
  cudaError_t e = cudaStreamSynchronize(s);
  if (e != cudaSuccess) return fail_cuda(err, e, "cudaStreamSynchronize");
  return 0;
}

static dvl_status run(int device, int op, const dvl::Tensor* const* in, size_t n_in, dvl::Tensor* const* out,
                      size_t n_out, const dvl::OpAttrs* attrs, dvl_backend_error* err) {
  try {
    return ops_run(device, op, in, n_in, out, n_out, attrs, err);
  } catch (...) {  // nothing may unwind into the engine through a C boundary
    return fail(err, "DVL_INTERNAL", "cuda: %s: unexpected C++ exception in the plugin", dvl::op_name(dvl::OpId(op)));
  }
}

}  // namespace dvl_cuda

extern "C" __attribute__((visibility("default"))) int dvl_cuda_plugin_init(int api_version, dvl_backend_api* out) {
  using namespace dvl_cuda;
  if (!out) return 1;
  // The identity prefix is the same in every API version; write only it until the caller's
  // version is known to match (its struct may be shorter than ours).
  out->api_version = DVL_BACKEND_API_VERSION;
  out->struct_size = int(sizeof(dvl_backend_api));
  out->tensor_size = int(sizeof(dvl::Tensor));
  out->storage_size = int(sizeof(dvl::Storage));
  out->name = "cuda";
  out->archs = DVL_CUDA_ARCHS;
  out->runtime_version = CUDART_VERSION;
  if (api_version != DVL_BACKEND_API_VERSION) return 1;  // the caller's layout may differ: fill nothing else
  std::memset(reinterpret_cast<char*>(out) + offsetof(dvl_backend_api, device_count), 0,
              sizeof *out - offsetof(dvl_backend_api, device_count));
  out->device_count = device_count;
  out->device_props = device_props;
  out->device_check = device_check;
  out->driver_version = driver_version;
  out->alloc = mem_alloc;
  out->free = mem_free;
  out->copy_h2d = copy_h2d;
  out->copy_d2h = copy_d2h;
  out->copy_d2d = copy_d2d;
  out->synchronize = synchronize;
  out->host_alloc = host_alloc;
  out->host_free = host_free;
  out->supports = ops_supports;
  out->run = run;
  out->shutdown = nullptr;
  return 0;
}
