// queue.h — a per-model execution queue on its own native thread.
//
// TypeScript enqueues ops without waiting; the queue thread runs them in order, each using
// the queue's kernel thread pool. Long work never sits on the libuv pool (it would starve
// fs/dns). Errors are sticky like CUDA's: the first failing job records its error, later jobs
// are skipped (their inputs may be garbage) until the next sync point, which reports the
// error and clears it. cancel() makes every job already queued fail with DVL_ABORTED.
#pragma once
#include <atomic>
#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "profile.h"
#include "scratch.h"
#include "thread_pool.h"

namespace dvl {

struct CpuKernels;

// How the CPU matmuls treat activations (csrc/cpu/kernels.h): 'exact' keeps them f32;
// 'fast' rounds them once per op input (bf16 for bf16 weights, int8 blocks for q8 weights).
enum class Precision : int32_t { Exact = 0, Fast = 1 };

struct OpContext {
  ThreadPool& pool;
  const CpuKernels& k;
  Precision precision = Precision::Exact;
  // The queue's grow-only scratch; null in one-off contexts (tests, the CUDA self-test), where
  // an op that needs one makes its own.
  Scratch* scratch = nullptr;
  // Set while the queue is profiling: the op jobs add their time to it (profile.h).
  OpProfile* profile = nullptr;
  // This context with another pool (plans run small ops on a one-thread pool). Copies every
  // other field: extend it when adding one.
  OpContext on(ThreadPool& p) const { return OpContext{p, k, precision, scratch, profile}; }
};

class ExecQueue {
 public:
  using Job = std::function<void(OpContext&)>;
  // Called on the queue thread once all earlier jobs ran; err is the sticky error or null.
  using SyncFn = std::function<void(std::exception_ptr err)>;

  ExecQueue(int threads, const CpuKernels& kernels, Precision precision = Precision::Exact);
  ~ExecQueue();  // fails pending jobs with DVL_ABORTED, runs pending syncs, joins

  // wants_pool: the job may fork onto the pool's workers (an op or plan with work worth
  // splitting). Only such jobs keep the workers awake and spinning (ThreadPool::wake); a run of
  // one-thread jobs (a small model's decode steps) leaves them asleep, so they do not take a
  // core from the JS thread (2 cores: the queue thread, a spinning worker and JS competed).
  void push(Job job, bool wants_pool = true);
  void push_sync(SyncFn fn);
  void cancel();
  // Work is coming (a request has started, its first ops follow its host-side preparation):
  // the queue thread leaves its sleep now and spins until a job arrives or `us` µs pass, and
  // with `pool` the workers too (ThreadPool::wake), so the first job does not pay their wake-up
  // (50-500 µs each on the dev VM) after the preparation. Any thread may call it.
  void prewarm(int64_t us, bool pool);
  int threads() const { return pool_.size(); }
  // Jobs run so far, and the total time from push to start of those pushed onto an idle queue
  // (the wake-up of the queue thread: the host latency before a forward's first kernel).
  struct Stats {
    uint64_t jobs;
    uint64_t idle_starts;
    uint64_t idle_wait_ns;
    uint64_t forks, forks_joined;  // the pool's (ThreadPool::forks)
    uint64_t pool_wakes;           // ThreadPool::wake calls for jobs that may fork
  };
  Stats stats() const {
    return {jobs_.load(), idle_starts_.load(), idle_wait_ns_.load(), pool_.forks(), pool_.forks_joined(), pool_wakes_.load()};
  }
  const CpuKernels& kernels() const { return kernels_; }
  // Per-op times of the jobs that start from now on (on: the counts restart from zero).
  void set_profiling(bool on) {
    if (on) profile_.reset();
    profiling_.store(on, std::memory_order_relaxed);
  }
  const OpProfile& profile() const { return profile_; }
  Precision precision() const { return precision_; }

 private:
  struct Item {
    Job job;
    SyncFn sync;
    int64_t pushed_ns = 0;  // set when pushed onto an empty queue, else 0
    bool wants_pool = false;
  };
  void loop();

  ThreadPool pool_;
  const CpuKernels& kernels_;
  Precision precision_;
  Scratch scratch_;
  OpProfile profile_;
  std::atomic<bool> profiling_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Item> items_;
  bool stop_ = false;
  std::exception_ptr sticky_;
  std::atomic<uint64_t> cancel_epoch_{0};
  std::atomic<uint64_t> jobs_{0}, idle_starts_{0}, idle_wait_ns_{0}, pool_wakes_{0};
  int64_t last_wake_ns_ = INT64_MIN / 2;  // queue thread only: when it last woke the pool
  std::atomic<uint64_t> pushes_{0};  // items pushed so far: the idle spin watches it
  bool busy_ = false;  // the queue thread is running an item (guarded by mu_)
  int64_t spin_until_ns_ = 0;  // prewarm(): the idle spin lasts at least until then (guarded by mu_)
  std::thread thread_;
};

}  // namespace dvl
