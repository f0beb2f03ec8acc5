// profile.h — where a queue's time goes, op by op, when asked (queue.setProfiling(true)).
//
// The CPU op jobs time themselves (make_op_job) while their context carries a profile; the key
// is the op's name, and for a matmul also its weight dtype and row count ("matmul bf16p ×8"),
// since one forward runs the same op at very different costs. A matmul also counts its weight
// bytes, so the report can say how fast the weights streamed. CUDA jobs only enqueue work and are
// not timed. Written by the queue thread only; read from the JS thread under the lock.
#pragma once
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace dvl {

// The steady clock in nanoseconds (the op profile's and the queue's wake-up timings).
inline int64_t steady_now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

class OpProfile {
 public:
  struct Entry {
    uint64_t calls = 0, ns = 0, weight_bytes = 0;
  };
  void add(const std::string& key, uint64_t ns, uint64_t weight_bytes) {
    std::lock_guard<std::mutex> lk(mu_);
    Entry& e = entries_[key];
    e.calls += 1;
    e.ns += ns;
    e.weight_bytes += weight_bytes;
  }
  std::vector<std::pair<std::string, Entry>> snapshot() const {
    std::lock_guard<std::mutex> lk(mu_);
    return {entries_.begin(), entries_.end()};
  }
  void reset() {
    std::lock_guard<std::mutex> lk(mu_);
    entries_.clear();
  }

 private:
  mutable std::mutex mu_;
  std::map<std::string, Entry> entries_;
};

}  // namespace dvl
