// thread_pool.cpp — see thread_pool.h.
#include "thread_pool.h"

#include <chrono>
#include <fstream>
#if defined(__linux__)
#include <sched.h>
#endif
#include <set>
#include <string>

namespace dvl {

// Spin iterations before a worker sleeps: ≈ 0.4 ms on the dev VM's Zen 5 cores (a PAUSE is
// tens of cycles there), longer than the gap between two consecutive ops of a forward, shorter
// than anything a user would notice.
static constexpr int kSpinIters = 20000;
// The clock is read once per this many spins past the spin budget (it costs more than a pause).
static constexpr int kClockEvery = 1024;

ThreadPool::ThreadPool(int nthreads) : nthreads_(nthreads < 1 ? 1 : nthreads) {
  for (int t = 1; t < nthreads_; ++t) workers_.emplace_back([this] { worker_loop(); });
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

void ThreadPool::run_claims(uint64_t gen, bool worker) {
  const uint64_t mine = gen << 32;
  for (;;) {
    uint64_t c = claim_.load(std::memory_order_acquire);
    if ((c & ~uint64_t(0xffffffff)) != mine) return;        // that run is over
    const int tid = int(c & 0xffffffff);
    if (tid >= nthreads_) return;                            // nothing left to claim
    if (!claim_.compare_exchange_weak(c, c + 1, std::memory_order_acq_rel)) continue;
    if (worker && joined_gen_.exchange(gen, std::memory_order_relaxed) != gen) joined_.fetch_add(1, std::memory_order_relaxed);
    // The run cannot finish before this tid is done, so job_ is still its job.
    try {
      (*job_)(tid, nthreads_);
    } catch (...) {
      std::lock_guard<std::mutex> lk(err_mu_);
      if (!err_) err_ = std::current_exception();
    }
    done_.fetch_add(1, std::memory_order_acq_rel);
  }
}

void ThreadPool::run(const std::function<void(int, int)>& fn) {
  if (nthreads_ == 1) {
    fn(0, 1);
    return;
  }
  err_ = nullptr;
  job_ = &fn;
  done_.store(0, std::memory_order_relaxed);
  uint64_t gen = (generation_.load(std::memory_order_relaxed) + 1) & 0xffffffff;
  if (gen == 0) gen = 1;   // claim_ == 0 means "no run"
  // tid 0 is the caller's own: the workers claim from 1 on. So the caller always runs the same
  // share of a parallel_for (the first rows of every row-wise op), and consecutive ops find
  // their rows in its cache; a worker that grabbed tid 0 first (it often did, spinning while
  // the caller was still notifying) flipped the shares between ops. The caller then claims
  // whatever the workers have not.
  claim_.store((gen << 32) | 1, std::memory_order_release);
  {
    std::lock_guard<std::mutex> lk(mu_);
    generation_.store(gen, std::memory_order_release);
  }
  cv_.notify_all();
  forks_.fetch_add(1, std::memory_order_relaxed);
  try {
    fn(0, nthreads_);
  } catch (...) {
    std::lock_guard<std::mutex> lk(err_mu_);
    if (!err_) err_ = std::current_exception();
  }
  done_.fetch_add(1, std::memory_order_acq_rel);
  run_claims(gen, false);
  // Spin, then yield: the tids still running belong to workers that may be descheduled.
  for (int i = 0; done_.load(std::memory_order_acquire) != nthreads_; ++i) {
    if (i < kSpinIters) spin_step(i);
    else std::this_thread::yield();
  }
  claim_.store(0, std::memory_order_release);   // late workers see a finished run
  job_ = nullptr;
  if (err_) {
    auto e = err_;
    err_ = nullptr;
    std::rethrow_exception(e);
  }
}

static int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void ThreadPool::wake(int64_t us) {
  if (nthreads_ == 1) return;
  const int64_t until = now_ns() + us * 1000;
  int64_t cur = spin_until_ns_.load(std::memory_order_relaxed);
  while (cur < until && !spin_until_ns_.compare_exchange_weak(cur, until, std::memory_order_relaxed)) {
  }
  {
    std::lock_guard<std::mutex> lk(mu_);
    wakes_.fetch_add(1, std::memory_order_release);
  }
  cv_.notify_all();
}

void ThreadPool::worker_loop() {
  uint64_t seen = 0;
  for (;;) {
    // A wake() from here on sends this worker round again instead of to sleep.
    const uint64_t w = wakes_.load(std::memory_order_acquire);
    uint64_t g = generation_.load(std::memory_order_acquire);
    for (int i = 0; g == seen; ++i) {
      // Past the spin budget, spin on only while a wake() deadline holds.
      if (i >= kSpinIters && (i & (kClockEvery - 1)) == 0 && now_ns() >= spin_until_ns_.load(std::memory_order_relaxed)) break;
      spin_step(i);
      g = generation_.load(std::memory_order_acquire);
    }
    if (g == seen) {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [&] { return generation_.load(std::memory_order_acquire) != seen || wakes_.load(std::memory_order_relaxed) != w; });
      g = generation_.load(std::memory_order_acquire);
      if (g == seen) continue;  // woken by wake(): spin again
    }
    seen = g;
    if (stop_.load()) return;
    run_claims(g, true);
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
