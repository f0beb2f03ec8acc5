// thread_pool.h — a persistent pool of kernel threads with one fork/join primitive.
//
// run(fn) calls fn(tid, nth) once for every tid in [0, nth) and returns when all have
// finished. The tids are claimed, not assigned: the caller and every awake worker take the
// next unclaimed tid until none is left, so a worker the OS has not scheduled (more threads
// than free cores: several models, or a busy machine) never holds the caller up — the caller
// runs its share itself. Partitions by tid are therefore unchanged, only who runs them varies.
// Workers spin briefly before sleeping: a forward issues hundreds of short ops and a
// condition-variable wake costs tens of microseconds each time; spinning waits yield the core
// now and then, so an oversubscribed machine runs the thread being waited for. The first
// exception thrown by any participant is rethrown in the caller.
//
// parallel_for goes one step further: it hands out [0, n) in a few contiguous pieces per
// participant from a shared counter, so a participant that loses its core in the middle of an
// op holds one small piece, not a fixed share. The ops' results do not depend on how the range
// is cut (csrc/cpu/kernels.h: every element is computed on its own), only on n.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace dvl {

class ThreadPool {
 public:
  explicit ThreadPool(int nthreads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return nthreads_; }
  void run(const std::function<void(int tid, int nth)>& fn);

  // Calls f(b, e) on contiguous pieces covering [0, n) exactly once, boundaries at multiples
  // of `grain`: kPiecesPerThread pieces per participant (fewer when n is small), claimed in
  // order from a shared counter by whichever participant is free.
  static constexpr int64_t kPiecesPerThread = 4;
  template <class F>
  void parallel_for(int64_t n, int64_t grain, F&& f) {
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    const int64_t grains = (n + grain - 1) / grain;
    if (grains <= 1 || nthreads_ <= 1) {
      f(int64_t(0), n);
      return;
    }
    const int64_t want = int64_t(nthreads_) * kPiecesPerThread;
    const int64_t pieces = grains < want ? grains : want;
    std::atomic<int64_t> next{0};
    run([&](int, int) {
      for (int64_t p = next.fetch_add(1, std::memory_order_relaxed); p < pieces; p = next.fetch_add(1, std::memory_order_relaxed)) {
        int64_t b = grains * p / pieces * grain, e = grains * (p + 1) / pieces * grain;
        if (e > n) e = n;
        f(b, e);
      }
    });
  }

 private:
  void worker_loop();
  // Claims and runs tids of run `gen` until none is left (or that run is over).
  void run_claims(uint64_t gen);

  int nthreads_;
  std::vector<std::thread> workers_;
  const std::function<void(int, int)>* job_ = nullptr;
  std::atomic<uint64_t> generation_{0};
  // (run generation << 32) | next unclaimed tid: a claim is valid only for its own run.
  std::atomic<uint64_t> claim_{0};
  std::atomic<int> done_{0};  // tids finished in the current run
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  std::mutex err_mu_;
  std::exception_ptr err_;
};

// Number of physical cores (SMT siblings counted once); falls back to hardware_concurrency.
int physical_cores();

}  // namespace dvl
