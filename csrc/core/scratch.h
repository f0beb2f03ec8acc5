// scratch.h — a grow-only working buffer owned by one queue.
//
// Ops that need a temporary copy of an input (the fast matmuls' rounded or quantised
// activations) take it from here instead of allocating per op: the buffer only grows, so after
// the first forward of each shape no op allocates. One queue thread uses it at a time (jobs
// run in order); an op's kernel threads may read and write what the op got.
#pragma once
#include <cstddef>

namespace dvl {

class Scratch {
 public:
  Scratch() = default;
  ~Scratch();
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;

  // At least `bytes` bytes, 64-byte aligned, contents undefined; valid until the next get().
  // Throws Error(DVL_ALLOC) when memory runs out.
  void* get(size_t bytes);
  size_t capacity() const { return cap_; }

 private:
  void* p_ = nullptr;
  size_t cap_ = 0;
};

}  // namespace dvl
