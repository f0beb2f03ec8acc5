// thread_pool.cpp — see thread_pool.h.
#include "thread_pool.h"

#include <fstream>
#if defined(__linux__)
#include <sched.h>
#endif
#include <set>
#include <string>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define DVL_PAUSE() _mm_pause()
#else
#define DVL_PAUSE() std::this_thread::yield()
#endif

namespace dvl {

// Spin iterations before a worker sleeps: about 50-100 µs on current cores, longer than the
// gap between two consecutive ops of a forward, shorter than anything a user would notice.
static constexpr int kSpinIters = 20000;
// Every this many spins a waiter yields its core: a no-op on an idle machine (sched_yield
// returns at once), and on a shared one it lets the thread being waited for run.
static constexpr int kYieldEvery = 1024;

static inline void spin_pause(int i) {
  if ((i & (kYieldEvery - 1)) == kYieldEvery - 1) std::this_thread::yield();
  else DVL_PAUSE();
}

ThreadPool::ThreadPool(int nthreads) : nthreads_(nthreads < 1 ? 1 : nthreads) {
  for (int t = 1; t < nthreads_; ++t) workers_.emplace_back([this, t] { worker_loop(t); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_.store(true);
    generation_.fetch_add(1);
  }
  cv_.notify_all();
  for (auto& w : workers_) w.join();
}

void ThreadPool::run(const std::function<void(int, int)>& fn) {
  if (nthreads_ == 1) {
    fn(0, 1);
    return;
  }
  err_ = nullptr;
  job_ = &fn;
  pending_.store(nthreads_ - 1, std::memory_order_relaxed);
  {
    std::lock_guard<std::mutex> lk(mu_);
    generation_.fetch_add(1, std::memory_order_release);
  }
  cv_.notify_all();
  try {
    fn(0, nthreads_);
  } catch (...) {
    std::lock_guard<std::mutex> lk(err_mu_);
    if (!err_) err_ = std::current_exception();
  }
  for (int i = 0; pending_.load(std::memory_order_acquire) != 0; ++i) spin_pause(i);
  job_ = nullptr;
  if (err_) {
    auto e = err_;
    err_ = nullptr;
    std::rethrow_exception(e);
  }
}

void ThreadPool::worker_loop(int tid) {
  uint64_t seen = 0;
  for (;;) {
    uint64_t g = generation_.load(std::memory_order_acquire);
    for (int i = 0; g == seen && i < kSpinIters; ++i) {
      spin_pause(i);
      g = generation_.load(std::memory_order_acquire);
    }
    if (g == seen) {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [&] { return generation_.load(std::memory_order_acquire) != seen; });
      g = generation_.load(std::memory_order_acquire);
    }
    seen = g;
    if (stop_.load()) return;
    try {
      (*job_)(tid, nthreads_);
    } catch (...) {
      std::lock_guard<std::mutex> lk(err_mu_);
      if (!err_) err_ = std::current_exception();
    }
    pending_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

int physical_cores() {
  // Count the SMT sibling groups among the CPUs this process may run on (a container may be
  // limited to a few of the host's CPUs).
  std::set<std::string> cores;
#if defined(__linux__)
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
      if (!CPU_ISSET(cpu, &set)) continue;
      std::ifstream f("/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/thread_siblings_list");
      std::string s = "cpu" + std::to_string(cpu);
      if (f) std::getline(f, s);
      cores.insert(s);
    }
  }
#endif
  if (!cores.empty()) return int(cores.size());
  unsigned h = std::thread::hardware_concurrency();
  return h ? int(h) : 1;
}

}  // namespace dvl
