// tensor.cpp — storage allocation and tensor bookkeeping.
#include "tensor.h"

#include <sys/mman.h>

#include <cstdlib>
#include <cstring>

#include "error.h"

namespace dvl {

bool dtype_parse(const std::string& s, DType* out) {
  std::string l;
  for (char c : s) l += char(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  if (l == "f32" || l == "float32") *out = DType::F32;
  else if (l == "f16" || l == "float16") *out = DType::F16;
  else if (l == "bf16" || l == "bfloat16") *out = DType::BF16;
  else if (l == "i32" || l == "int32") *out = DType::I32;
  else if (l == "u8" || l == "uint8") *out = DType::U8;
  else if (l == "q8") *out = DType::Q8;
  else return false;
  return true;
}

// Large buffers come from anonymous mmap: the kernel hands out zero pages lazily, so allocating
// a multi-GB weight tensor on the JS thread costs nothing until the loader writes into it
// (a memset here blocked the event loop ~1 ms per MB). Small ones use the heap.
static constexpr size_t kMmapThreshold = size_t(1) << 20;

Storage::Storage(size_t nbytes, Device dev) : bytes(nbytes), device(dev) {
  if (dev != Device::Cpu) throw Error(DVL_ERR_BACKEND, "device storage is owned by the CUDA plugin");
  size_t rounded = (nbytes + 63) / 64 * 64;
  if (rounded == 0) rounded = 64;
  if (rounded >= kMmapThreshold) {
    void* p = mmap(nullptr, rounded, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw Error(DVL_ERR_ALLOC, "out of memory allocating " + std::to_string(nbytes) + " bytes");
    data = p;
    mapped_ = rounded;
    return;
  }
  data = std::aligned_alloc(64, rounded);
  if (!data) throw Error(DVL_ERR_ALLOC, "out of memory allocating " + std::to_string(nbytes) + " bytes");
  std::memset(data, 0, rounded);
}

void Storage::advise_huge_pages() {
#if defined(MADV_HUGEPAGE)
  // Advice only; failure is harmless.
  if (mapped_) madvise(data, mapped_, MADV_HUGEPAGE);
#endif
}

Storage::~Storage() {
  if (mapped_) munmap(data, mapped_);
  else std::free(data);
}

static thread_local Device t_alloc_device = Device::Cpu;
static DeviceStorageFn g_device_storage = nullptr;

DeviceAllocScope::DeviceAllocScope(Device dev) : prev_(t_alloc_device) { t_alloc_device = dev; }
DeviceAllocScope::~DeviceAllocScope() { t_alloc_device = prev_; }
void set_device_storage_fn(DeviceStorageFn fn) { g_device_storage = fn; }

TensorP Tensor::alloc(DType dt, std::vector<int64_t> shape) { return alloc(dt, std::move(shape), t_alloc_device); }

TensorP Tensor::alloc(DType dt, std::vector<int64_t> shape, Device dev) {
  for (int64_t d : shape)
    if (d < 0) throw Error(DVL_ERR_SHAPE, "negative dimension in shape " + shape_str(shape));
  auto t = std::make_shared<Tensor>();
  t->dtype = dt;
  t->shape = std::move(shape);
  if (dt == DType::Q8 && t->shape.empty()) throw Error(DVL_ERR_SHAPE, "a q8 tensor needs rank ≥ 1 (rows of K values)");
  if (dt == DType::Q8 && dev != Device::Cpu) throw Error(DVL_ERR_DTYPE, "q8 tensors live on the CPU only (no CUDA kernel reads them)");
  if (dev == Device::Cpu) {
    t->storage = std::make_shared<Storage>(t->nbytes(), dev);
  } else {
    if (!g_device_storage) throw Error(DVL_ERR_BACKEND, "no CUDA backend is loaded to allocate " + t->describe());
    t->storage = g_device_storage(t->nbytes());
  }
  return t;
}

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

size_t Tensor::nbytes() const {
  if (dtype == DType::Q8) {
    const int64_t K = shape.empty() ? 1 : shape.back();
    return K == 0 ? 0 : size_t(numel() / K) * size_t(q8_row_bytes(K));
  }
  return size_t(numel()) * dtype_size(dtype);
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i) r += ", ";
    r += std::to_string(s[i]);
  }
  return r + "]";
}

std::string Tensor::describe() const { return std::string(dtype_name(dtype)) + shape_str(shape); }

}  // namespace dvl
