// queue.cpp — see queue.h.
#include "queue.h"

#include <algorithm>

#include "error.h"

namespace dvl {

// How long the workers keep spinning after work that may fork starts (ThreadPool::wake):
// longer than the host gaps between a request's forking passes (its picture, tower and
// prefill), short enough that they stop soon after: a small model's decode steps never fork
// (plans keep them on this thread), and a worker spinning through them took a share of two
// vCPUs from the JS thread and this one (1000 → 300 µs: requests ×0.98-0.99, a text decode
// ×0.98, paired; bench/RESULTS.md).
static constexpr int64_t kWakeSpinUs = 300;
// How long the queue thread spins for the next job before it sleeps (loop()).
static constexpr int64_t kIdleSpinUs = 300;

ExecQueue::ExecQueue(int threads, const CpuKernels& kernels, Precision precision)
    : pool_(threads), kernels_(kernels), precision_(precision), thread_([this] { loop(); }) {}

ExecQueue::~ExecQueue() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
    pushes_.fetch_add(1, std::memory_order_release);   // ends an idle spin at once
  }
  cv_.notify_all();
  thread_.join();
}

void ExecQueue::push(Job job, bool wants_pool) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    items_.push_back(Item{std::move(job), nullptr, items_.empty() && !busy_ ? steady_now_ns() : 0, wants_pool});
    pushes_.fetch_add(1, std::memory_order_release);
  }
  cv_.notify_one();
}

void ExecQueue::push_sync(SyncFn fn) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    items_.push_back(Item{nullptr, std::move(fn)});
    pushes_.fetch_add(1, std::memory_order_release);
  }
  cv_.notify_one();
}

void ExecQueue::prewarm(int64_t us, bool pool) {
  if (us <= 0) return;
  {
    std::lock_guard<std::mutex> lk(mu_);
    spin_until_ns_ = std::max(spin_until_ns_, steady_now_ns() + us * 1000);
    pushes_.fetch_add(1, std::memory_order_release);  // ends a sleep (or a shorter spin)
  }
  cv_.notify_one();
  if (pool && pool_.size() > 1) pool_.wake(us);
}

void ExecQueue::cancel() {
  std::lock_guard<std::mutex> lk(mu_);
  // Every job queued now fails; syncs still run (and report the abort).
  for (auto& it : items_)
    if (it.job) it.job = [](OpContext&) { throw Error(DVL_ERR_ABORT, "the operation was aborted"); };
}

void ExecQueue::loop() {
  OpContext ctx{pool_, kernels_, precision_, &scratch_};
  for (;;) {
    Item item;
    {
      std::unique_lock<std::mutex> lk(mu_);
      busy_ = false;
      while (items_.empty() && !stop_) {
        // Spin a little before sleeping: the next job usually comes within a decode step's
        // host gap (the readback reaches JS, the remask picks tokens, the next step is pushed),
        // and a sleeping thread took ≈ 70 µs to wake on the dev VM — a third of a small
        // model's whole forward. A prewarm() may ask for a longer spin. Each turn yields the
        // core: the JS thread doing that host gap's work is runnable then, and with two vCPUs
        // it shared them with this thread and a pool worker (yielding each turn instead of each
        // 1024th: parent requests ×0.97, child ×0.98-0.99, paired; bench/RESULTS.md).
        const uint64_t seen = pushes_.load(std::memory_order_acquire);
        const int64_t until = std::max(steady_now_ns() + kIdleSpinUs * 1000, spin_until_ns_);
        lk.unlock();
        for (int i = 0; pushes_.load(std::memory_order_acquire) == seen; ++i) {
          if ((i & 255) == 255 && steady_now_ns() >= until) break;
          std::this_thread::yield();  // a syscall: the clock is read each 256th turn as before
        }
        lk.lock();
        if (!items_.empty() || stop_) break;
        if (pushes_.load(std::memory_order_relaxed) != seen) continue;  // a prewarm(): spin to its deadline
        cv_.wait(lk, [&] { return stop_ || !items_.empty() || pushes_.load(std::memory_order_relaxed) != seen; });
      }
      if (items_.empty()) return;  // stop_ and drained
      item = std::move(items_.front());
      items_.pop_front();
      busy_ = true;
      if (stop_ && item.job)
        item.job = [](OpContext&) { throw Error(DVL_ERR_DISPOSED, "the queue was disposed"); };
    }
    if (item.job) {
      jobs_.fetch_add(1, std::memory_order_relaxed);
      if (item.pushed_ns) {
        idle_starts_.fetch_add(1, std::memory_order_relaxed);
        idle_wait_ns_.fetch_add(uint64_t(steady_now_ns() - item.pushed_ns), std::memory_order_relaxed);
      }
      if (item.wants_pool && pool_.size() > 1) {
        // Work that may fork: get the workers up now (a sleeping one takes 50-500 µs on the dev
        // VM) and keep them spinning through the host gaps that follow, rather than letting the
        // first fork run on this thread alone while they wake. At most once per half spin
        // budget: a wake takes the pool's lock.
        const int64_t now = steady_now_ns();
        if (now - last_wake_ns_ >= kWakeSpinUs * 500) {
          pool_.wake(kWakeSpinUs);
          last_wake_ns_ = now;
          pool_wakes_.fetch_add(1, std::memory_order_relaxed);
        }
      }
      if (!sticky_) {
        ctx.profile = profiling_.load(std::memory_order_relaxed) ? &profile_ : nullptr;
        try {
          item.job(ctx);
        } catch (...) {
          sticky_ = std::current_exception();
        }
      }
    } else if (item.sync) {
      auto err = sticky_;
      sticky_ = nullptr;
      try {
        item.sync(err);
      } catch (...) {
      }
    }
  }
}

}  // namespace dvl
