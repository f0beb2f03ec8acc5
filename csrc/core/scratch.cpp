// scratch.cpp — see scratch.h.
#include "scratch.h"

#include <cstdlib>
#include <string>

#include "error.h"

namespace dvl {

Scratch::~Scratch() { std::free(p_); }

void* Scratch::get(size_t bytes) {
  if (bytes <= cap_) return p_;
  // Grow by at least half again, so a sequence of slightly larger requests reallocates rarely.
  size_t want = bytes > cap_ + cap_ / 2 ? bytes : cap_ + cap_ / 2;
  want = (want + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, want);
  if (!p) throw Error(DVL_ERR_ALLOC, "out of memory allocating " + std::to_string(want) + " bytes of op scratch");
  std::free(p_);
  p_ = p;
  cap_ = want;
  return p_;
}

}  // namespace dvl
