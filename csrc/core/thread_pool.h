// thread_pool.h — a persistent pool of kernel threads with one fork/join primitive.
//
// run(fn) calls fn(tid, nth) once for every tid in [0, nth) and returns when all have
// finished. tid 0 is the caller's; the others are claimed, not assigned: every awake worker
// takes the next unclaimed tid, and so does the caller once its own is done, until none is
// left — so a worker the OS has not scheduled (more threads than free cores: several models,
// or a busy machine) never holds the caller up. Partitions by tid are therefore unchanged,
// only who runs them varies (and the caller always runs tid 0's: see parallel_for_tid).
// Workers spin briefly before sleeping: a forward issues hundreds of short ops and a
// condition-variable wake costs tens of microseconds each time; spinning waits yield the core
// now and then, so an oversubscribed machine runs the thread being waited for. The first
// exception thrown by any participant is rethrown in the caller.
//
// parallel_for goes one step further: it cuts [0, n) into a few contiguous pieces per
// participant, each participant's pieces one contiguous share that it takes in order and the
// others take over when they run out, so a participant that loses its core in the middle of an
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
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif

namespace dvl {

// Step i of a spin-wait: PAUSE on x86 (frees the core's shared resources, saves power), and
// every 1024th step a yield of the core — a no-op on an idle machine (sched_yield returns at
// once); on a busy one it lets the thread being waited for (or the JS thread) run.
static inline void spin_step(int i) {
#if defined(__x86_64__) || defined(_M_X64)
  if ((i & 1023) != 1023) {
    _mm_pause();
    return;
  }
#endif
  std::this_thread::yield();
}

class ThreadPool {
 public:
  explicit ThreadPool(int nthreads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return nthreads_; }
  void run(const std::function<void(int tid, int nth)>& fn);
  // Gets sleeping workers up and keeps every worker spinning for at least `us` microseconds
  // from now, so that the next run() finds them awake. A sleeping worker takes 50-500 µs to
  // wake on a virtualised host (measured on the dev VM): without this the first parallel ops
  // after an idle spell (a request's picture and vision tower) ran on the caller alone. The
  // queue calls it when work arrives at an idle queue (queue.cpp).
  void wake(int64_t us);
  // Fork/joins run so far (runs with more than one thread) and how many of them a worker
  // took part in: a worker that is asleep or descheduled leaves the caller to do all of it.
  uint64_t forks() const { return forks_.load(std::memory_order_relaxed); }
  uint64_t forks_joined() const { return joined_.load(std::memory_order_relaxed); }

  // Calls f(b, e) on contiguous pieces covering [0, n) exactly once, boundaries at multiples
  // of `grain`: kPiecesPerThread pieces per participant (fewer when n is small), claimed in
  // order from a shared counter by whichever participant is free.
  static constexpr int64_t kPiecesPerThread = 4;
  template <class F>
  void parallel_for(int64_t n, int64_t grain, F&& f) {
    parallel_for_tid(n, grain, [&](int, int64_t b, int64_t e) { f(b, e); });
  }
  // parallel_for whose f(tid, b, e) also gets the participant's tid in [0, size()): pieces
  // with the same tid never run at the same time, so f may use per-tid scratch.
  //
  // Participant t owns the contiguous pieces [t·P/nth, (t+1)·P/nth) and takes them in order;
  // one that runs out takes the others' next unclaimed pieces, so a late or descheduled
  // participant's share is still done by whoever is free. Contiguous shares keep consecutive
  // ops' rows on one core: the queue thread (usually tid 0) produces rows [0, n/2) of a
  // matmul and the rms_norm, add or activation after it reads them from its own cache, where a
  // shared piece counter interleaved the rows of the two cores and every row-wise op pulled half
  // its input across (on the dev VM the vision tower's small ops ran slower on two threads than
  // on one: bench/RESULTS.md).
  template <class F>
  void parallel_for_tid(int64_t n, int64_t grain, F&& f) {
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    const int64_t grains = (n + grain - 1) / grain;
    if (grains <= 1 || nthreads_ <= 1) {
      f(0, int64_t(0), n);
      return;
    }
    const int64_t want = int64_t(nthreads_) * kPiecesPerThread;
    const int64_t pieces = grains < want ? grains : want;
    const auto piece = [&](int tid, int64_t p) {
      int64_t b = grains * p / pieces * grain, e = grains * (p + 1) / pieces * grain;
      if (e > n) e = n;
      f(tid, b, e);
    };
    if (nthreads_ > kMaxShares) {  // beyond the fixed table: one shared counter
      std::atomic<int64_t> next{0};
      run([&](int tid, int) {
        for (int64_t p = next.fetch_add(1, std::memory_order_relaxed); p < pieces; p = next.fetch_add(1, std::memory_order_relaxed)) piece(tid, p);
      });
      return;
    }
    struct alignas(64) Share {
      std::atomic<int64_t> next;
      int64_t end;
    };
    Share share[kMaxShares];
    const int nth = nthreads_;
    for (int t = 0; t < nth; ++t) {
      share[t].next.store(pieces * t / nth, std::memory_order_relaxed);
      share[t].end = pieces * (t + 1) / nth;
    }
    run([&](int tid, int) {
      for (int k = 0; k < nth; ++k) {
        Share& s = share[(tid + k) % nth];
        for (int64_t p = s.next.fetch_add(1, std::memory_order_relaxed); p < s.end; p = s.next.fetch_add(1, std::memory_order_relaxed)) piece(tid, p);
      }
    });
  }
  // Participants with their own share in parallel_for_tid (more threads share one counter).
  static constexpr int kMaxShares = 64;

 private:
  void worker_loop();
  // Claims and runs tids of run `gen` until none is left (or that run is over).
  void run_claims(uint64_t gen, bool worker);

  int nthreads_;
  std::vector<std::thread> workers_;
  const std::function<void(int, int)>* job_ = nullptr;
  std::atomic<uint64_t> generation_{0};
  // (run generation << 32) | next unclaimed tid: a claim is valid only for its own run.
  std::atomic<uint64_t> claim_{0};
  std::atomic<int> done_{0};  // tids finished in the current run
  std::atomic<bool> stop_{false};
  // wake(): sleeping workers leave their wait when wakes_ changes; spinning ones keep spinning
  // until spin_until_ns_ (steady clock) even past their usual spin budget.
  std::atomic<uint64_t> wakes_{0};
  std::atomic<int64_t> spin_until_ns_{0};
  std::atomic<uint64_t> forks_{0}, joined_{0}, joined_gen_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  std::mutex err_mu_;
  std::exception_ptr err_;
};

// Number of physical cores (SMT siblings counted once); falls back to hardware_concurrency.
int physical_cores();

}  // namespace dvl
