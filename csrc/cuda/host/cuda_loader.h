// cuda_loader.h — finds, loads and checks the CUDA plugin at run time; device tensors.
//
// docs/packaging.md §B4.4: the addon never links CUDA. cuda_probe() dlopens libcuda.so.1 (the
// driver), then libdiffusionvl_cuda.so (the plugin, csrc/cuda), checks its API version
// (csrc/core/backend.h), the devices and the compute capability, and reports either
// "available" or one structured reason:
//   plugin-missing              no plugin file where we looked (an explicit
//                               DIFFUSIONVL_CUDA_PLUGIN that does not exist is reported first)
//   no-driver                   libcuda.so.1 does not load (no NVIDIA driver)
//   plugin-load-failed: <why>   dlopen/dlsym of the plugin failed (dlerror text)
//   version-mismatch            the plugin was built for another DVL_BACKEND_API_VERSION
//   driver-too-old              the driver is older than the plugin's CUDA runtime
//   no-device                   the driver sees no GPU (or not the one asked for)
//   arch-unsupported            the GPU's compute capability is not covered by the build
//   cuda-error                  any other CUDA failure while probing (detail says which)
//   plugin-conflict             another plugin file is already loaded in this process
// Nothing here prints or aborts. Results are cached per process (per set of options): the
// driver and the plugin are process-wide, and a loaded plugin is never unloaded.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "../../core/op_attrs.h"
#include "../../core/backend.h"
#include "../../core/ops.h"
#include "../../core/tensor.h"

namespace dvl {

struct CudaProbeOptions {
  // DIFFUSIONVL_CUDA_PLUGIN: the plugin file to use and nothing else. lib/native passes the
  // JS-side environment (a worker's process.env is not the C environment) and clears
  // read_c_env; C++ callers leave it set and the C environment is consulted.
  bool plugin_override_set = false;
  std::string plugin_override;
  bool read_c_env = true;
  // Tried after "next to the addon file": files, or folders that hold libdiffusionvl_cuda.so
  // (e.g. an installed CUDA package's prebuilds folder).
  std::vector<std::string> search_paths;
  // The driver library; empty = "libcuda.so.1" (a test seam and an escape hatch).
  std::string driver_path;
  int device = 0;  // CUDA device index to use
};

struct CudaProbe {
  bool available = false;
  std::string reason;   // one of the tokens above; empty when available
  std::string detail;   // one human sentence: what failed and what to do
  std::string plugin_path;             // the plugin file loaded (or the one that failed)
  std::vector<std::string> tried;      // plugin paths looked at, in order
  int driver_version = 0;              // cuDriverGetVersion, e.g. 12080; 0 = unknown
  int runtime_version = 0;             // the plugin's static CUDA runtime, e.g. 13000
  int plugin_api_version = 0;          // what the plugin reported (even on mismatch)
  std::string archs;                   // the plugin's build archs, "75-real,...,90-virtual"
  int device_count = 0;
  int device = 0;
  bool has_props = false;
  dvl_device_props props{};
};

// Probes once per distinct options (thread-safe); later calls return the cached result.
CudaProbe cuda_probe(const CudaProbeOptions& opts);

// The plugin of the last available probe, or nullptr.
const dvl_backend_api* cuda_api();
// The device index of that probe (the one device ops, copies and allocations address).
int cuda_probe_device();

// Whether compute capability cc_major.cc_minor can run a build for `archs` (the
// CMAKE_CUDA_ARCHITECTURES list joined with ',' or ';'). Sets *known = false when the list
// cannot be read ("native", "all"): then only the plugin's device_check can tell.
bool cuda_archs_cover(const std::string& archs, int cc_major, int cc_minor, bool* known);

// ---- device memory and ops (need an available probe; else Error(DVL_BACKEND)) -------------

// Zero-filled device memory owned by the plugin, freed through it; storage->device == Cuda.
std::shared_ptr<Storage> make_device_storage(size_t bytes);
// A device tensor of dtype/shape.
TensorP cuda_tensor(DType dt, const std::vector<int64_t>& shape);
// Copies a host tensor to a new device tensor, and a device tensor into a host tensor of the
// same dtype and shape (blocking; ordered after pending device work).
TensorP cuda_upload(const Tensor& host);
void cuda_download(const Tensor& dev, Tensor& host);
// Enqueues op `op` on the device with its parsed attributes (OpDef::parse); outputs are device
// tensors the caller allocated.
void cuda_run(OpId op, const std::vector<TensorP>& in, const std::vector<TensorP>& out, const OpAttrs& attrs);
// Whether the plugin implements op `op` for main-input dtype `dt`.
bool cuda_supports(OpId op, DType dt);
void cuda_synchronize();

}  // namespace dvl
