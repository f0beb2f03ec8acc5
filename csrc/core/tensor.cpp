// tensor.cpp — storage allocation and tensor bookkeeping.
#include "tensor.h"

#include <sys/mman.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>

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
  else if (l == "bf16p") *out = DType::BF16P;
  else if (l == "q8p") *out = DType::Q8P;
  else return false;
  return true;
}

// Large buffers come from anonymous mmap: the kernel hands out zero pages lazily, so allocating
// a multi-GB weight tensor on the JS thread costs nothing until the loader writes into it
// (a memset here blocked the event loop ~1 ms per MB). Small ones use the heap.
static constexpr size_t kMmapThreshold = size_t(1) << 20;

static std::atomic<int64_t> g_live_count{0}, g_live_bytes{0};

// Mid-size buffers (32 KiB up to the mmap threshold) are kept when freed and handed out again.
// Why: glibc returns the top of its heap to the system once more than 128 KiB is free there, so
// a transient tensor of 60-120 KB — a decoded picture, an eager op's output — could fault in
// every page on each allocation: ≈ 12 µs a page on a VM, 0.3 ms for one 121 KB picture, every
// request. A buffer is reused for a request up to 1.25× its size, and at most kPoolKeepBytes
// are kept (the smallest dropped first when a larger one needs room).
static constexpr size_t kPoolMin = size_t(32) << 10;
static constexpr size_t kPoolKeepBytes = size_t(16) << 20;

namespace {
struct MidPool {
  std::mutex mu;
  std::multimap<size_t, void*> free;  // capacity → buffer
  size_t kept = 0;
};
// Never destroyed: storages may be freed after static destructors ran at exit.
MidPool& mid_pool() {
  static MidPool* p = new MidPool;
  return *p;
}

void* pool_take(size_t want, size_t* cap) {
  MidPool& p = mid_pool();
  std::lock_guard<std::mutex> lock(p.mu);
  auto it = p.free.lower_bound(want);
  if (it == p.free.end() || it->first > want + want / 4) return nullptr;
  void* data = it->second;
  *cap = it->first;
  p.kept -= it->first;
  p.free.erase(it);
  return data;
}

void pool_give(void* data, size_t cap) {
  MidPool& p = mid_pool();
  std::vector<void*> drop;
  {
    std::lock_guard<std::mutex> lock(p.mu);
    while (p.kept + cap > kPoolKeepBytes && !p.free.empty()) {
      drop.push_back(p.free.begin()->second);
      p.kept -= p.free.begin()->first;
      p.free.erase(p.free.begin());
    }
    p.free.emplace(cap, data);
    p.kept += cap;
  }
  for (void* d : drop) std::free(d);
}
}  // namespace

LiveStorage live_host_storage() { return {g_live_count.load(), g_live_bytes.load()}; }

Storage::Storage(size_t nbytes, Device dev) : bytes(nbytes), device(dev) {
  if (dev != Device::Cpu) throw Error(DVL_ERR_BACKEND, "device storage is owned by the CUDA plugin");
  size_t rounded = (nbytes + 63) / 64 * 64;
  if (rounded == 0) rounded = 64;
  if (rounded >= kMmapThreshold) {
    void* p = mmap(nullptr, rounded, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw Error(DVL_ERR_ALLOC, "out of memory allocating " + std::to_string(nbytes) + " bytes");
#if defined(MADV_HUGEPAGE)
    // Transparent huge pages where the system grants them on request: an op's output is
    // written whole (2 MiB pages cut the page faults — dear on a VM — and the TLB misses), and
    // so is a weight matrix, streamed end to end every forward. Buffers filled piecemeal ask
    // for small pages again (advise_small_pages). Advice only; failure is harmless.
    madvise(p, rounded, MADV_HUGEPAGE);
#endif
    data = p;
    mapped_ = rounded;
  } else {
    size_t cap = 0;
    if (rounded >= kPoolMin && (data = pool_take(rounded, &cap)) != nullptr) {
      pooled_ = cap;
    } else {
      // posix_memalign, not aligned_alloc: the same, and in every glibc (aligned_alloc needs 2.16).
      if (posix_memalign(&data, 64, rounded) != 0) data = nullptr;
      if (!data) throw Error(DVL_ERR_ALLOC, "out of memory allocating " + std::to_string(nbytes) + " bytes");
      if (rounded >= kPoolMin) pooled_ = rounded;
    }
    std::memset(data, 0, rounded);
  }
  g_live_count.fetch_add(1, std::memory_order_relaxed);
  g_live_bytes.fetch_add(int64_t(nbytes), std::memory_order_relaxed);
}

Storage::Storage(SlotTag, size_t nbytes, Device dev) : bytes(nbytes), device(dev), owned_(false) {}

std::shared_ptr<Storage> Storage::slot(size_t nbytes, Device dev, std::shared_ptr<Storage> base) {
  struct Slot : Storage {
    Slot(size_t n, Device d) : Storage(SlotTag{}, n, d) {}
  };
  auto s = std::make_shared<Slot>(nbytes, dev);
  s->base_ = std::move(base);
  return s;
}

void Storage::advise_huge_pages() {
#if defined(MADV_HUGEPAGE)
  if (mapped_) madvise(data, mapped_, MADV_HUGEPAGE);
#endif
}

void Storage::advise_small_pages() {
#if defined(MADV_NOHUGEPAGE)
  if (mapped_) madvise(data, mapped_, MADV_NOHUGEPAGE);
#endif
}

Storage::~Storage() {
  if (!owned_) return;
  if (mapped_) munmap(data, mapped_);
  else if (pooled_) pool_give(data, pooled_);
  else std::free(data);
  g_live_count.fetch_sub(1, std::memory_order_relaxed);
  g_live_bytes.fetch_sub(int64_t(bytes), std::memory_order_relaxed);
}

static thread_local Device t_alloc_device = Device::Cpu;
static thread_local bool t_defer_alloc = false;

DeferAllocScope::DeferAllocScope() : prev_(t_defer_alloc) { t_defer_alloc = true; }
DeferAllocScope::~DeferAllocScope() { t_defer_alloc = prev_; }
static DeviceStorageFn g_device_storage = nullptr;

DeviceAllocScope::DeviceAllocScope(Device dev) : prev_(t_alloc_device) { t_alloc_device = dev; }
DeviceAllocScope::~DeviceAllocScope() { t_alloc_device = prev_; }
void set_device_storage_fn(DeviceStorageFn fn) { g_device_storage = fn; }

TensorP Tensor::alloc(DType dt, std::vector<int64_t> shape) { return alloc(dt, std::move(shape), t_alloc_device); }

// The largest tensor alloc accepts: 2^44 elements (64 TiB of f32). Far beyond any machine, but
// small enough that element counts, byte counts and the 64-byte rounding below can never wrap:
// a shape whose product overflows must fail here, not become a tiny buffer that ops then
// write past.
static constexpr int64_t kMaxTensorElements = int64_t(1) << 44;

int64_t checked_numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) throw Error(DVL_ERR_SHAPE, "negative dimension in shape " + shape_str(shape));
    if (d == 0) return 0;
  }
  for (int64_t d : shape) {
    if (__builtin_mul_overflow(n, d, &n) || n > kMaxTensorElements)
      throw Error(DVL_ERR_ALLOC, "tensor of shape " + shape_str(shape) + " has more than 2^44 elements (" +
                                     "the sizes multiply past any memory; a config or option value is too large)");
  }
  return n;
}

TensorP Tensor::alloc(DType dt, std::vector<int64_t> shape, Device dev) {
  checked_numel(shape);
  auto t = std::make_shared<Tensor>();
  t->dtype = dt;
  t->shape = std::move(shape);
  if (dt == DType::Q8 && t->shape.empty()) throw Error(DVL_ERR_SHAPE, "a q8 tensor needs rank ≥ 1 (rows of K values)");
  if (dt == DType::Q8 && dev != Device::Cpu) throw Error(DVL_ERR_DTYPE, "q8 tensors live on the CPU only (no CUDA kernel reads them)");
  if (dt == DType::BF16P && t->shape.size() != 2) throw Error(DVL_ERR_SHAPE, "a bf16p tensor is a matrix [N, K] (rank 2), got " + shape_str(t->shape));
  if (dt == DType::Q8P && t->shape.size() != 2) throw Error(DVL_ERR_SHAPE, "a q8p tensor is a matrix [N, K] (rank 2), got " + shape_str(t->shape));
  if (dt == DType::Q8P && dev != Device::Cpu) throw Error(DVL_ERR_DTYPE, "q8p tensors live on the CPU only (no CUDA kernel reads them)");
  if (dt == DType::BF16P && dev != Device::Cpu) throw Error(DVL_ERR_DTYPE, "bf16p tensors live on the CPU only (the CUDA kernels read plain bf16)");
  if (t_defer_alloc) {
    t->storage = Storage::slot(t->nbytes(), dev);
  } else if (dev == Device::Cpu) {
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
  if (dtype == DType::Q8P) return shape.size() == 2 && numel() ? size_t(q8p_bytes(shape[0], shape[1])) : 0;
  if (dtype == DType::BF16P) return shape.size() == 2 && numel() ? size_t(bf16p_elems(shape[0], shape[1])) * 2 : 0;
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

TensorP view_rows(const Tensor& x, int64_t start, int64_t len) {
  size_t row = dtype_size(x.dtype);
  for (int i = 1; i < x.rank(); ++i) row *= size_t(x.shape[i]);
  auto t = std::make_shared<Tensor>(x);
  t->shape[0] = len;
  t->storage = Storage::slot(row * size_t(len), x.storage->device, x.storage);
  t->storage->data = static_cast<char*>(x.storage->data) + row * size_t(start);
  return t;
}

}  // namespace dvl
