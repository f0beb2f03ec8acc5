// tensor.h — a typed, shaped view of natively allocated storage.
//
// Storage is 64-byte aligned host memory (device memory belongs to the CUDA plugin and is
// tagged with Device::Cuda). Tensors are contiguous row-major; ops that need strides take
// them as explicit arguments. JS holds a shared_ptr to a Tensor through csrc/napi; pending
// queue jobs hold their own shared_ptrs, so disposing a handle never frees memory an
// enqueued op still reads or writes.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "dtype.h"

namespace dvl {

enum class Device : int32_t { Cpu = 0, Cuda = 1 };

struct Storage {
  void* data = nullptr;
  size_t bytes = 0;
  Device device = Device::Cpu;
  Storage(size_t nbytes, Device dev);  // zero-filled; throws Error(DVL_ALLOC)
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  // Large buffers ask for transparent huge pages when mapped (where the system grants them on
  // request): written whole, they take one page fault per 2 MiB. A buffer filled piecemeal — a
  // KV cache, written position by position — asks for small pages instead, or one touched byte
  // would make 2 MiB resident; the loader asks for huge pages again on the tensors it fills.
  void advise_huge_pages();
  void advise_small_pages();

  // A slot: `bytes` of memory it does not own, whose `data` is set later — by a recorded plan
  // (csrc/core/plan.h) to a place in its arena, or at each replay to a bound input. `base`
  // (may be null) is kept alive as long as the slot: the arena its data points into.
  static std::shared_ptr<Storage> slot(size_t nbytes, Device dev, std::shared_ptr<Storage> base = nullptr);
  bool owned() const { return owned_; }
  void set_base(std::shared_ptr<Storage> b) { base_ = std::move(b); }
  const std::shared_ptr<Storage>& base() const { return base_; }

 protected:
  struct SlotTag {};
  Storage(SlotTag, size_t nbytes, Device dev);

 private:
  size_t mapped_ = 0;  // bytes mapped when the buffer came from mmap, else 0
  size_t pooled_ = 0;  // capacity when the buffer came from (and returns to) the mid-size pool
  bool owned_ = true;
  std::shared_ptr<Storage> base_;
};

// Host storage the engine owns right now (tests count it to prove that plans and models free
// everything they allocated).
struct LiveStorage {
  int64_t count;
  int64_t bytes;
};
LiveStorage live_host_storage();

struct Tensor {
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  std::shared_ptr<Storage> storage;

  // Without a device: the calling thread's allocation device (DeviceAllocScope), else the CPU.
  static std::shared_ptr<Tensor> alloc(DType dt, std::vector<int64_t> shape);
  static std::shared_ptr<Tensor> alloc(DType dt, std::vector<int64_t> shape, Device dev);

  int64_t numel() const;
  size_t nbytes() const;
  int rank() const { return int(shape.size()); }
  int64_t dim(int i) const { return shape[i < 0 ? shape.size() + i : i]; }
  void* raw() const { return storage->data; }
  // Whether the storage is GPU memory of the CUDA backend (never dereference raw() then).
  bool on_cuda() const { return storage && storage->device == Device::Cuda; }
  template <class T> T* data() const { return static_cast<T*>(storage->data); }
  std::string describe() const;  // "bf16[896, 4864]"
};

using TensorP = std::shared_ptr<Tensor>;

// Rows [start, start + len) of x's dim 0 over the same memory (no copy); keeps x's storage
// alive. x must have its memory (not a plan's placeholder) and a byte-addressable dtype.
TensorP view_rows(const Tensor& x, int64_t start, int64_t len);

// While one lives, Tensor::alloc without a device allocates on `dev` on this thread: a CUDA
// queue runs the CPU ops' plan() (validation, output shapes) under it, so their outputs are
// born on the device. Device storage comes from the hook the CUDA loader installs.
class DeviceAllocScope {
 public:
  explicit DeviceAllocScope(Device dev);
  ~DeviceAllocScope();
  DeviceAllocScope(const DeviceAllocScope&) = delete;
  DeviceAllocScope& operator=(const DeviceAllocScope&) = delete;

 private:
  Device prev_;
};
using DeviceStorageFn = std::shared_ptr<Storage> (*)(size_t bytes);

// While one lives, Tensor::alloc gives new tensors slot storage (no memory yet) on this thread:
// a plan being recorded runs the ops' plan() under it, then places every intermediate in one
// arena (plan.cpp). Nests with DeviceAllocScope (the slot's device is the allocation device).
class DeferAllocScope {
 public:
  DeferAllocScope();
  ~DeferAllocScope();
  DeferAllocScope(const DeferAllocScope&) = delete;
  DeferAllocScope& operator=(const DeferAllocScope&) = delete;

 private:
  bool prev_;
};
void set_device_storage_fn(DeviceStorageFn fn);

std::string shape_str(const std::vector<int64_t>& s);

// The element count of `shape`, checked: a negative dimension is DVL_SHAPE, a product past
// 2^44 elements (or one that overflows int64) is DVL_ALLOC. Tensor::alloc calls it first.
int64_t checked_numel(const std::vector<int64_t>& shape);

}  // namespace dvl
