// backend.h — the interface between the engine and a compute backend loaded at run time
// (today: the CUDA plugin, libdiffusionvl_cuda.so). docs/packaging.md §B1.3, §B4.
//
// The plugin exports one C symbol, dvl_cuda_plugin_init(api_version, out), which fills a
// dvl_backend_api: a plain struct of function pointers. No C++ exception, allocation or
// std:: object crosses the boundary by value: every fallible entry returns a dvl_status and,
// on failure, fills a caller-owned dvl_backend_error (a stable short code and a message).
// Tensors are passed as `const dvl::Tensor*` (the plugin is built from this same source tree;
// tensor_size / storage_size below catch a layout drift that forgot to bump the version); the
// plugin reads only dtype, shape and storage->data and never calls Tensor's out-of-line
// methods (it is not linked against the engine).
//
// Rules for changing this file: any change to the struct, the meaning of a member or the
// tensor layout bumps DVL_BACKEND_API_VERSION; the loader refuses a plugin whose version
// differs ('version-mismatch') instead of calling through a wrong layout.
//
// Devices are addressed by the index the CUDA runtime uses (after CUDA_VISIBLE_DEVICES).
// Copies are synchronous for now; `run` enqueues on the plugin's stream for that device and
// `synchronize` waits for it (streams per queue come with the queue integration).
#pragma once
#include <stddef.h>
#include <stdint.h>

#define DVL_BACKEND_API_VERSION 4  // 3: ops are dvl::OpId values, not names; 4: attrs are dvl::OpAttrs (op_attrs.h)

namespace dvl {
struct Tensor;
struct Storage;
struct OpAttrs;
}  // namespace dvl

extern "C" {

typedef int dvl_status;  // 0 = success; anything else = failure, described in the dvl_backend_error

// Failure description filled by the plugin. `code` is a stable token the loader maps:
//   "no-device", "no-driver", "driver-too-old", "arch-unsupported"   (probe failures: the reason)
//   "DVL_SHAPE", "DVL_DTYPE", "DVL_ALLOC", "DVL_BACKEND", "DVL_ARG" (op/memory failures,
//   become a dvl::Error with that code), "cuda" (any other CUDA runtime error; the message
//   names it).
struct dvl_backend_error {
  char code[48];
  char message[464];
};

// What the loader reports about a device (cudaGetDeviceProperties subset).
struct dvl_device_props {
  char name[256];               // "NVIDIA H100 80GB HBM3"
  int cc_major;                 // compute capability, 9 for Hopper
  int cc_minor;                 // 0 for Hopper
  uint64_t memory_bytes;        // total global memory
  int multiprocessors;          // SM count
  int l2_bytes;                 // L2 cache size
  int smem_per_block_optin;     // max dynamic shared memory per block after cudaFuncSetAttribute
};

struct dvl_backend_api {
  // ---- identity: a prefix every API version keeps unchanged; filled even when init refuses
  //      the version, so the loader can say which version the plugin has ------------------
  int api_version;              // DVL_BACKEND_API_VERSION the plugin was built with
  int struct_size;              // sizeof(dvl_backend_api) on the plugin side
  int tensor_size;              // sizeof(dvl::Tensor) on the plugin side (layout guard)
  int storage_size;             // sizeof(dvl::Storage) on the plugin side (layout guard)
  const char* name;             // "cuda"
  const char* archs;            // CMAKE_CUDA_ARCHITECTURES it was built for, "75-real;...;90-virtual"
  int runtime_version;          // CUDA runtime linked in (static cudart), e.g. 13000

  // ---- devices -------------------------------------------------------------------------
  // Number of devices. Maps cudaErrorInsufficientDriver to "driver-too-old" (or "no-driver"
  // when the runtime sees no driver at all) and cudaErrorNoDevice / 0 devices to "no-device".
  dvl_status (*device_count)(int* n, dvl_backend_error* err);
  // Properties of one device.
  dvl_status (*device_props)(int device, dvl_device_props* out, dvl_backend_error* err);
  // Optional (NULL = assume usable): makes the device current, creates its context and checks
  // that the plugin holds a kernel image it can run ("arch-unsupported" otherwise).
  dvl_status (*device_check)(int device, dvl_backend_error* err);
  // Optional (NULL = 0): the driver's CUDA version (cudaDriverGetVersion), e.g. 12080.
  int (*driver_version)(void);

  // ---- memory --------------------------------------------------------------------------
  // Allocates `bytes` of zero-filled device memory (bytes 0 gives a valid unique pointer).
  dvl_status (*alloc)(int device, size_t bytes, void** out, dvl_backend_error* err);
  // Frees memory from alloc once the work already enqueued for the device is done (stream-ordered
  // where the device has memory pools, so it does not stall the caller); NULL is ignored. Never fails.
  void (*free)(int device, void* ptr);
  // Host → device copy, blocking until done (waits for the device's pending work first).
  dvl_status (*copy_h2d)(int device, void* dst, const void* src, size_t bytes, dvl_backend_error* err);
  // Device → host copy, blocking until done (waits for the device's pending work first).
  dvl_status (*copy_d2h)(int device, void* dst, const void* src, size_t bytes, dvl_backend_error* err);
  // Optional (NULL = copy through host): device → device copy, ordered on the device's stream.
  dvl_status (*copy_d2d)(int device, void* dst, const void* src, size_t bytes, dvl_backend_error* err);
  // Waits until all work enqueued on the device has finished; reports asynchronous errors.
  dvl_status (*synchronize)(int device, dvl_backend_error* err);

  // ---- ops -----------------------------------------------------------------------------
  // Ops are named by their dvl::OpId value (csrc/core/ops.h), dtypes by their dvl::DType value.
  // 1 when `run` implements op `op` for main-input dtype `dtype`, else 0.
  int (*supports)(int op, int dtype);
  // Enqueues op `op` on the device's stream. Inputs and outputs are device tensors allocated
  // by the engine with the shapes the CPU op's plan() produced; attrs (csrc/core/op_attrs.h) are
  // the CPU op's parse() result — typed families read their struct — and may be NULL. Validates
  // what it relies on ("DVL_SHAPE"/"DVL_DTYPE") and refuses unsupported ops ("DVL_BACKEND").
  dvl_status (*run)(int device, int op, const dvl::Tensor* const* inputs, size_t n_inputs,
                    dvl::Tensor* const* outputs, size_t n_outputs, const dvl::OpAttrs* attrs,
                    dvl_backend_error* err);

  // ---- host staging (API 2) ----------------------------------------------------------------
  // Optional (NULL = plain heap memory): page-locked host memory for staging weight uploads,
  // so copy_h2d from it runs at full PCIe speed without the driver's own bounce buffer.
  dvl_status (*host_alloc)(size_t bytes, void** out, dvl_backend_error* err);
  void (*host_free)(void* ptr);

  // Optional (NULL = nothing): releases plugin-wide resources. The loader never calls it
  // while tensors may live (today: never; the plugin stays loaded for the process).
  void (*shutdown)(void);
};

// The one exported entry. Fills *out (identity fields always); returns 0 when api_version
// equals the plugin's DVL_BACKEND_API_VERSION, nonzero otherwise (then only identity is valid).
typedef int (*dvl_cuda_plugin_init_fn)(int api_version, dvl_backend_api* out);

}  // extern "C"
