// ops_basic.cu — the plugin's op table (every op file registers into it), the helpers the op
// files share, and `add`, the first op.
//
// add: f32 a [.., N] + f32 b of a's shape, or b [N] broadcast over the rows → f32 y, a's shape.
//      Same contract as csrc/cpu/ops/basic.cpp (the engine runs the CPU op's plan() to
//      validate and size the output; this file checks again what the kernel relies on).
#include <cstring>
#include <mutex>
#include <string>

#include "plugin.h"

namespace dvl_cuda {

using dvl::DType;
using dvl::Tensor;

// ---- helpers (plugin.h) ---------------------------------------------------------------------

int64_t numel(const Tensor& t) {
  int64_t n = 1;
  for (int64_t d : t.shape) n *= d;
  return n;
}

int64_t rows_of(const Tensor& t) {
  int64_t n = 1;
  for (size_t i = 0; i + 1 < t.shape.size(); ++i) n *= t.shape[i];
  return n;
}

bool check_io(const OpCall& c, size_t n_in_min, size_t n_in_max, size_t n_out) {
  if (c.n_in < n_in_min || c.n_in > n_in_max || c.n_out != n_out) {
    fail(c.err, "DVL_ARG", "cuda %s: expected %zu..%zu inputs and %zu outputs, got %zu and %zu", c.op, n_in_min, n_in_max,
         n_out, c.n_in, c.n_out);
    return false;
  }
  for (size_t i = 0; i < c.n_in + c.n_out; ++i) {
    const Tensor* t = i < c.n_in ? c.in[i] : c.out[i - c.n_in];
    if (!t) {
      // An optional input (matmul's bias) may be null; required ones are checked by count.
      if (i < c.n_in && i >= n_in_min) continue;
      fail(c.err, "DVL_ARG", "cuda %s: %s %zu is missing", c.op, i < c.n_in ? "input" : "output", i < c.n_in ? i : i - c.n_in);
      return false;
    }
    if (!t->storage || t->storage->device != dvl::Device::Cuda) {
      fail(c.err, "DVL_BACKEND", "cuda %s: every tensor must live on the device (%s %zu does not)", c.op,
           i < c.n_in ? "input" : "output", i < c.n_in ? i : i - c.n_in);
      return false;
    }
  }
  return true;
}

bool need_dtype(const OpCall& c, const Tensor& t, uint32_t ok, const char* role) {
  if (dt_bit(t.dtype) & ok) return true;
  fail(c.err, "DVL_DTYPE", "cuda %s: %s has dtype %s, which this op does not take", c.op, role, dvl::dtype_name(t.dtype));
  return false;
}

dvl_status check_launch(const OpCall& c, const char* kernel) {
  cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess) return 0;
  return fail(c.err, "cuda", "cuda %s: launching %s: %s (%s)", c.op, kernel, cudaGetErrorString(e), cudaGetErrorName(e));
}

int grid_for(int64_t n, int threads) {
  int64_t b = (n + threads - 1) / threads;
  // 65535 blocks × 256 threads fill any current GPU many times over; the loops are grid-stride.
  return int(b < 1 ? 1 : b < 65535 ? b : 65535);
}

// ---- add ------------------------------------------------------------------------------------

// Grid-stride loop: one launch covers any n; memory-bound, so 256 threads and enough blocks to
// fill the SMs is all it needs. nb == n: same shape; else b is one row broadcast (i % nb).
__global__ void add_f32_kernel(const float* __restrict__ a, const float* __restrict__ b, float* __restrict__ y,
                               int64_t n, int64_t nb) {
  int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    y[i] = a[i] + b[nb == n ? i : i % nb];
}

static dvl_status add_run(const OpCall& c) {
  if (!check_io(c, 2, 2, 1)) return 1;
  const Tensor &a = *c.in[0], &b = *c.in[1], &y = *c.out[0];
  if (!need_dtype(c, a, kF32, "a") || !need_dtype(c, b, kF32, "b") || !need_dtype(c, y, kF32, "y")) return 1;
  int64_t n = numel(a), nb = numel(b);
  bool same = a.shape == b.shape;
  bool bcast = b.shape.size() == 1 && !a.shape.empty() && b.shape[0] == a.shape.back();
  if ((!same && !bcast) || y.shape != a.shape) return fail(c.err, "DVL_SHAPE", "cuda add: b must have a's shape or be [N]");
  if (n == 0) return 0;
  if (nb == 0) return fail(c.err, "DVL_SHAPE", "cuda add: empty b with non-empty a");
  add_f32_kernel<<<grid_for(n, 256), 256, 0, c.stream>>>(dptr<const float>(a), dptr<const float>(b), dptr<float>(y), n, nb);
  return check_launch(c, "add_f32_kernel");
}

void register_basic(std::vector<OpEntry>& t) { t.push_back({dvl::OpId::Add, kF32, add_run}); }

// ---- the table --------------------------------------------------------------------------------

static const std::vector<OpEntry>& table() {
  static std::vector<OpEntry> t;
  static std::once_flag once;
  std::call_once(once, [] {
    register_basic(t);
    register_elementwise(t);
    register_norm(t);
    register_rope(t);
    register_shape(t);
    register_matmul(t);
    register_attention(t);
    register_sample(t);
  });
  return t;
}

int ops_supports(int op, int dtype) {
  if (op < 0 || op >= dvl::kOpCount || dtype < 0 || dtype > 31) return 0;
  for (const OpEntry& e : table())
    if (int(e.id) == op && (e.dtypes & (1u << dtype))) return 1;
  return 0;
}

dvl_status ops_run(int device, int op, const Tensor* const* in, size_t n_in, Tensor* const* out, size_t n_out,
                   const dvl::OpAttrs* attrs, dvl_backend_error* err) {
  if (op < 0 || op >= dvl::kOpCount) return fail(err, "DVL_ARG", "cuda: unknown op id %d", op);
  const dvl::OpId id = dvl::OpId(op);
  const char* name = dvl::op_name(id);
  DType main = n_in && in[0] ? in[0]->dtype : DType::F32;
  for (const OpEntry& e : table()) {
    if (e.id != id || !(e.dtypes & dt_bit(main))) continue;
    cudaStream_t s = device_stream(device, err);
    if (!s) return 1;
    static const dvl::OpAttrs kNone;
    OpCall c{id, name, device, s, in, n_in, out, n_out, attrs ? *attrs : kNone, err};
    return e.run(c);
  }
  return fail(err, "DVL_BACKEND", "cuda: op '%s' is not implemented for %s on the CUDA backend", name, dvl::dtype_name(main));
}

cudaError_t ops_kernel_image_check() {
  cudaFuncAttributes attr;
  return cudaFuncGetAttributes(&attr, add_f32_kernel);
}

}  // namespace dvl_cuda
