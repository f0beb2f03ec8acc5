// plugin.h — shared internals of the CUDA plugin (csrc/cuda/*.cu): error helpers, the
// per-device stream, the op table and the helpers every op file uses.
//
// Each op family lives in its own file (ops_basic.cu: add; ops_elementwise.cu; ops_norm.cu;
// ops_rope.cu; ops_shape.cu; ops_matmul.cu; ops_attention.cu; ops_sample.cu) and contributes
// its entries through one register_* function listed below, called from ops_basic.cu's table.
// Contract of every op: the same OpId (csrc/core/ops.h), inputs, attrs and outputs as the CPU op in
// csrc/cpu/ops/*.cpp (the engine runs the CPU op's plan() first, so the shapes are valid; the
// op re-checks what its kernel relies on). Every launch is checked (cudaGetLastError) and a
// failure comes back as a dvl_backend_error; nothing aborts or throws across the boundary.
//
// Everything here has hidden visibility; only dvl_cuda_plugin_init (plugin.cu) is exported.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "../core/op_attrs.h"
#include "../core/backend.h"
#include "../core/ops.h"
#include "../core/tensor.h"

namespace dvl_cuda {

// Fills err with code and a printf-style message; returns 1 (a failed dvl_status).
int fail(dvl_backend_error* err, const char* code, const char* fmt, ...);
// Turns a CUDA runtime error into code "cuda" with `what` and the CUDA error name.
int fail_cuda(dvl_backend_error* err, cudaError_t e, const char* what);

// The plugin's stream for `device` (created on first use, non-blocking, lives for the
// process). Also makes `device` current on the calling thread. nullptr + err on failure.
cudaStream_t device_stream(int device, dvl_backend_error* err);

// ---- the op table ---------------------------------------------------------------------------

// One call of an op: what ops_run hands to an entry (the stream is already current).
struct OpCall {
  dvl::OpId id;
  const char* op;  // its name, for messages
  int device;
  cudaStream_t stream;
  const dvl::Tensor* const* in;
  size_t n_in;
  dvl::Tensor* const* out;
  size_t n_out;
  const dvl::OpAttrs& attrs;  // parsed by the CPU op (csrc/core/op_attrs.h); empty when the engine passed none
  dvl_backend_error* err;
};

using OpRunFn = dvl_status (*)(const OpCall& c);

struct OpEntry {
  dvl::OpId id;
  uint32_t dtypes;  // bit (1 << int(DType)) per main-input (input 0) dtype this entry implements
  OpRunFn run;
};

constexpr uint32_t dt_bit(dvl::DType d) { return 1u << uint32_t(d); }
constexpr uint32_t kF32 = 1u << 0, kF16 = 1u << 1, kBF16 = 1u << 2, kI32 = 1u << 3, kU8 = 1u << 4;
constexpr uint32_t kFloats = kF32 | kF16 | kBF16;

void register_basic(std::vector<OpEntry>& t);        // add                                  (ops_basic.cu)
void register_elementwise(std::vector<OpEntry>& t);  // mul scale convert silu swiglu gelu gelu_tanh (ops_elementwise.cu)
void register_norm(std::vector<OpEntry>& t);         // rms_norm layer_norm softmax          (ops_norm.cu)
void register_rope(std::vector<OpEntry>& t);         // rope_cos_sin rope                    (ops_rope.cu)
void register_shape(std::vector<OpEntry>& t);        // embedding reshape gather_rows scatter_rows slice_cols
                                                     // concat_rows kv_cache_append           (ops_shape.cu)
void register_matmul(std::vector<OpEntry>& t);       // matmul                               (ops_matmul.cu)
void register_attention(std::vector<OpEntry>& t);    // attention                            (ops_attention.cu)
void register_sample(std::vector<OpEntry>& t);       // confidence_remask                    (ops_sample.cu)

int ops_supports(int op, int dtype);
dvl_status ops_run(int device, int op, const dvl::Tensor* const* in, size_t n_in,
                   dvl::Tensor* const* out, size_t n_out, const dvl::OpAttrs* attrs, dvl_backend_error* err);
// cudaFuncGetAttributes on one of the plugin's kernels: cudaSuccess when this build holds a
// kernel image (SASS or PTX) the current device can run.
cudaError_t ops_kernel_image_check();

// ---- helpers for op files -------------------------------------------------------------------

int64_t numel(const dvl::Tensor& t);
int64_t rows_of(const dvl::Tensor& t);  // product of all dims but the last (1 for rank 0)
// Checks counts, non-null and that every tensor lives on the device; fills err ("DVL_ARG" /
// "DVL_BACKEND") and returns false otherwise.
bool check_io(const OpCall& c, size_t n_in_min, size_t n_in_max, size_t n_out);
// Checks the dtype of a tensor ("DVL_DTYPE" naming op and role otherwise).
bool need_dtype(const OpCall& c, const dvl::Tensor& t, uint32_t ok, const char* role);
// cudaGetLastError after a launch; fills err naming op and kernel.
dvl_status check_launch(const OpCall& c, const char* kernel);
// A grid for a grid-stride loop over n items with `threads` threads per block.
int grid_for(int64_t n, int threads);

template <class T> T* dptr(const dvl::Tensor& t) { return static_cast<T*>(t.storage->data); }

// SM count per device (cached; 132 = H100 SXM when the query fails): split-K and split-key
// choices in the matmul and attention kernels need it.
inline int sm_count(int device) {
  static int cache[64];
  if (device < 0 || device >= 64) return 132;
  if (!cache[device]) {
    int v = 0;
    if (cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, device) != cudaSuccess || v <= 0) v = 132;
    cache[device] = v;
  }
  return cache[device];
}

}  // namespace dvl_cuda
