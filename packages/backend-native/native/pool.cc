// A persistent pool of worker threads for ParallelFor. Starting and joining std::threads per call
// cost tens of microseconds each (more on a busy machine); a parked worker wakes in a few.
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "common.h"

namespace sprout {
namespace {

class Pool {
 public:
  ~Pool() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    for (auto& w : workers_) w.join();
  }

  // Runs fn(ctx, b, e) for `threads` equal chunks of [0, n): chunk 0 on the caller, the others on
  // workers. Returns false (nothing run) if another call holds the pool: from another JS thread
  // (worker_threads share the addon) or from inside a task; the caller then runs serially.
  bool Run(int64_t threads, int64_t n, void (*fn)(void*, int64_t, int64_t), void* ctx) {
    bool idle = false;
    if (!busy_.compare_exchange_strong(idle, true)) return false;
    Grow(threads - 1);
    const int64_t chunk = (n + threads - 1) / threads;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      fn_ = fn;
      ctx_ = ctx;
      n_ = n;
      chunk_ = chunk;
      active_ = threads - 1;
      pending_ = threads - 1;
      generation_++;
    }
    wake_.notify_all();
    fn(ctx, 0, chunk < n ? chunk : n);
    {
      std::unique_lock<std::mutex> lock(mutex_);
      done_.wait(lock, [&] { return pending_ == 0; });
    }
    busy_.store(false);
    return true;
  }

 private:
  void Grow(int64_t want) {
    while (static_cast<int64_t>(workers_.size()) < want) {
      const int64_t index = static_cast<int64_t>(workers_.size()) + 1;  // chunk index
      int64_t now;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        now = generation_;  // a new worker waits for the next job, not the last one
      }
      workers_.emplace_back([this, index, now] { Work(index, now); });
    }
  }

  void Work(int64_t index, int64_t seen) {
    for (;;) {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      if (index > active_) continue;
      const int64_t b = index * chunk_, e = b + chunk_ < n_ ? b + chunk_ : n_;
      auto* fn = fn_;
      void* ctx = ctx_;
      lock.unlock();
      if (b < e) fn(ctx, b, e);
      lock.lock();
      if (--pending_ == 0) done_.notify_one();
    }
  }

  std::atomic<bool> busy_{false};  // one Run at a time (a nested or concurrent call runs serially)
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  std::vector<std::thread> workers_;
  void (*fn_)(void*, int64_t, int64_t) = nullptr;
  void* ctx_ = nullptr;
  int64_t n_ = 0, chunk_ = 0, active_ = 0, pending_ = 0, generation_ = 0;
  bool stop_ = false;
};

Pool& GetPool() {
  static Pool pool;
  return pool;
}

}  // namespace

bool RunOnPool(int64_t threads, int64_t n, void (*fn)(void*, int64_t, int64_t), void* ctx) {
  return GetPool().Run(threads, n, fn, ctx);
}

}  // namespace sprout
