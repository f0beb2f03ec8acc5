// queue.cpp — see queue.h.
#include "queue.h"

#include "error.h"

namespace dvl {

ExecQueue::ExecQueue(int threads, const CpuKernels& kernels, Precision precision)
    : pool_(threads), kernels_(kernels), precision_(precision), thread_([this] { loop(); }) {}

ExecQueue::~ExecQueue() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void ExecQueue::push(Job job) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    items_.push_back(Item{std::move(job), nullptr, items_.empty() && !busy_ ? steady_now_ns() : 0});
  }
  cv_.notify_one();
}

void ExecQueue::push_sync(SyncFn fn) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    items_.push_back(Item{nullptr, std::move(fn)});
  }
  cv_.notify_one();
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
      cv_.wait(lk, [&] { return stop_ || !items_.empty(); });
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
