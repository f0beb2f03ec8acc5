// host-backend.cpp — a backend plugin whose "device memory" is host memory, for testing the
// engine's CUDA queue (csrc/cuda/host/cuda_queue.cpp) on machines without a GPU.
//
// It implements the backend contract of csrc/core/backend.h faithfully for memory (alloc is
// zero-filled, copies are ordered, pinned staging is offered) and implements exactly one op,
// `add` on equal f32 shapes, so both queue paths run: ops the backend implements (with host
// inputs uploaded first) and ops it does not (device inputs copied to the host, the CPU op,
// outputs copied back). It checks that every pointer it is handed is one it allocated, so a
// host pointer passed where device memory belongs fails loudly instead of working by accident.
// At exit it prints what it saw to stderr for the test to check. Not part of the package.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>

#include "core/backend.h"
#include "core/ops.h"
#include "core/tensor.h"

namespace {

std::mutex mu;
std::map<const char*, size_t, std::less<>> blocks;  // device allocations: start → size
int n_alloc = 0, n_free = 0, n_h2d = 0, n_d2h = 0, n_run_add = 0, n_host_alloc = 0;

int fail(dvl_backend_error* e, const char* code, const char* msg) {
  std::snprintf(e->code, sizeof e->code, "%s", code);
  std::snprintf(e->message, sizeof e->message, "%s", msg);
  return 1;
}

// Whether [p, p + n) lies inside one block this backend allocated.
bool is_device(const void* p, size_t n) {
  std::lock_guard<std::mutex> lock(mu);
  const char* c = static_cast<const char*>(p);
  auto it = blocks.upper_bound(c);
  if (it == blocks.begin()) return false;
  --it;
  return c >= it->first && c + n <= it->first + (it->second ? it->second : 1);
}

dvl_status count(int* n, dvl_backend_error*) {
  *n = 1;
  return 0;
}

dvl_status props(int, dvl_device_props* p, dvl_backend_error*) {
  std::memset(p, 0, sizeof *p);
  std::snprintf(p->name, sizeof p->name, "host-memory test backend");
  p->cc_major = 9;
  p->cc_minor = 0;
  p->memory_bytes = uint64_t(1) << 30;
  p->multiprocessors = 1;
  p->l2_bytes = 1 << 20;
  p->smem_per_block_optin = 1 << 16;
  return 0;
}

dvl_status dalloc(int, size_t bytes, void** out, dvl_backend_error* e) {
  void* p = std::calloc(bytes ? bytes : 1, 1);
  if (!p) return fail(e, "DVL_ALLOC", "host-backend: out of memory");
  std::lock_guard<std::mutex> lock(mu);
  blocks[static_cast<const char*>(p)] = bytes;
  ++n_alloc;
  *out = p;
  return 0;
}

void dfree(int, void* p) {
  if (!p) return;
  {
    std::lock_guard<std::mutex> lock(mu);
    blocks.erase(static_cast<const char*>(p));
    ++n_free;
  }
  std::free(p);
}

dvl_status h2d(int, void* dst, const void* src, size_t n, dvl_backend_error* e) {
  if (n && !is_device(dst, n)) return fail(e, "DVL_ARG", "host-backend: copy_h2d destination is not device memory");
  if (n && is_device(src, n)) return fail(e, "DVL_ARG", "host-backend: copy_h2d source is device memory");
  std::memcpy(dst, src, n);
  ++n_h2d;
  return 0;
}

dvl_status d2h(int, void* dst, const void* src, size_t n, dvl_backend_error* e) {
  if (n && !is_device(src, n)) return fail(e, "DVL_ARG", "host-backend: copy_d2h source is not device memory");
  if (n && is_device(dst, n)) return fail(e, "DVL_ARG", "host-backend: copy_d2h destination is device memory");
  std::memcpy(dst, src, n);
  ++n_d2h;
  return 0;
}

dvl_status sync(int, dvl_backend_error*) { return 0; }

dvl_status halloc(size_t bytes, void** out, dvl_backend_error* e) {
  *out = std::malloc(bytes ? bytes : 1);
  if (!*out) return fail(e, "DVL_ALLOC", "host-backend: out of pinned memory");
  ++n_host_alloc;
  return 0;
}

void hfree(void* p) { std::free(p); }

int supports(int op, int dtype) { return op == int(dvl::OpId::Add) && dtype == int(dvl::DType::F32); }

dvl_status run(int, int op, const dvl::Tensor* const* in, size_t n_in, dvl::Tensor* const* out, size_t n_out,
               const dvl::OpAttrs*, dvl_backend_error* e) {
  if (op != int(dvl::OpId::Add)) return fail(e, "DVL_BACKEND", "host-backend: only add is implemented");
  if (n_in != 2 || n_out != 1) return fail(e, "DVL_ARG", "host-backend: add takes 2 inputs and 1 output");
  const dvl::Tensor &a = *in[0], &b = *in[1];
  dvl::Tensor& y = *out[0];
  if (a.shape != b.shape || a.shape != y.shape) return fail(e, "DVL_SHAPE", "host-backend: add needs equal shapes");
  size_t n = 4;  // bytes; Tensor's out-of-line methods live in the engine, not here
  for (int64_t d : y.shape) n *= size_t(d);
  if (!is_device(a.storage->data, n) || !is_device(b.storage->data, n) || !is_device(y.storage->data, n))
    return fail(e, "DVL_ARG", "host-backend: add given a pointer that is not device memory");
  const float* pa = static_cast<const float*>(a.storage->data);
  const float* pb = static_cast<const float*>(b.storage->data);
  float* py = static_cast<float*>(y.storage->data);
  for (size_t i = 0; i < n / 4; ++i) py[i] = pa[i] + pb[i];
  ++n_run_add;
  return 0;
}

struct Report {
  ~Report() {
    std::fprintf(stderr, "host-backend: alloc=%d free=%d h2d=%d d2h=%d add=%d host_alloc=%d live=%zu\n", n_alloc, n_free, n_h2d,
                 n_d2h, n_run_add, n_host_alloc, blocks.size());
  }
} report;

}  // namespace

extern "C" __attribute__((visibility("default"))) int dvl_cuda_plugin_init(int v, dvl_backend_api* out) {
  out->api_version = DVL_BACKEND_API_VERSION;
  out->struct_size = sizeof(dvl_backend_api);
  out->tensor_size = sizeof(dvl::Tensor);
  out->storage_size = sizeof(dvl::Storage);
  out->name = "host";
  out->archs = "90-real";
  out->runtime_version = 13000;
  if (v != DVL_BACKEND_API_VERSION) return 1;
  out->device_count = count;
  out->device_props = props;
  out->alloc = dalloc;
  out->free = dfree;
  out->copy_h2d = h2d;
  out->copy_d2h = d2h;
  out->synchronize = sync;
  out->host_alloc = halloc;
  out->host_free = hfree;
  out->supports = supports;
  out->run = run;
  return 0;
}
