// thread_pool.h — a persistent pool of kernel threads with one fork/join primitive.
//
// run(fn) calls fn(tid, nth) once for every tid in [0, nth) and returns when all have
// finished. The tids are claimed, not assigned: the caller and every awake worker take the
// next unclaimed tid until none is left, so a worker the OS has not scheduled (more threads
// than free cores: several models, or a busy machine) never holds the caller up — the caller
// runs its share itself. Partitions by tid are therefore unchanged, only who runs them varies.
// Workers spin briefly before sleeping: a forward issues hundreds of short ops and a
// condition-variable wake costs tens of microseconds each time. The first exception thrown by
// any participant is rethrown in the caller.
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

  // Splits [0, n) into contiguous chunks, one per participant, rounded to `grain`.
  template <class F>
  void parallel_for(int64_t n, int64_t grain, F&& f) {
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    int64_t chunks = (n + grain - 1) / grain;
    int nth = int(chunks < nthreads_ ? chunks : nthreads_);
    if (nth <= 1) {
      f(int64_t(0), n);
      return;
    }
    run([&](int tid, int) {
      if (tid >= nth) return;
      int64_t per = (chunks + nth - 1) / nth;
      int64_t b = tid * per * grain, e = (tid + 1) * per * grain;
      if (e > n) e = n;
      if (b < e) f(b, e);
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
