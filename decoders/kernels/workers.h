// The threads every matrix-product kernel of the library shares.
//
// Output rows are split into chunks that the calling thread and a few worker threads take from a
// shared counter, so a call finishes even if no worker ever runs. The workers spin for a short
// while after each call before they sleep: a decode step makes a call every few tens of
// microseconds, less than it takes to wake a sleeping thread (XLA's own pool, tried first, woke
// too late to help with all but the largest products). One pool serves every kernel (an inline
// function's static is one object across the library's translation units), so two kernels never
// compete with two sets of spinning threads.

#ifndef SHIELD_KERNELS_WORKERS_H_
#define SHIELD_KERNELS_WORKERS_H_

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <thread>

namespace shield_kernels {

constexpr int64_t kMaxWorkers = 7;  // threads besides the caller
constexpr int64_t kCacheLine = 64;
constexpr auto kSpinTime = std::chrono::milliseconds(2);  // busy wait before a worker sleeps

inline void relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// One parallel loop: chunk c of `chunks` is run(context, c).
struct Work {
  void (*run)(const void* context, int64_t chunk) = nullptr;
  const void* context = nullptr;
  int64_t chunks = 0;
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> done{0};

  void drain() {
    for (int64_t c = next.fetch_add(1); c < chunks; c = next.fetch_add(1)) {
      run(context, c);
      done.fetch_add(1, std::memory_order_release);
    }
  }
};

// The worker threads, created on first use and never destroyed (they may be blocked in a wait
// when the process exits, which is harmless for detached threads).
class Workers {
 public:
  static Workers& instance() {
    static Workers* workers = new Workers();
    return *workers;
  }

  // Offer `work` to the workers, do chunks until none is left, wait for the rest.
  void run(const std::shared_ptr<Work>& work) {
    if (count_ > 0 && work->chunks > 1) {
      {
        std::lock_guard<std::mutex> lock(mutex_);
        current_ = work;
        generation_.fetch_add(1, std::memory_order_release);
      }
      if (sleeping_.load(std::memory_order_acquire) > 0) wake_.notify_all();
    }
    work->drain();
    while (work->done.load(std::memory_order_acquire) < work->chunks) relax();
  }

 private:
  Workers() {
    // $SHIELD_KERNEL_THREADS caps the threads working on a product, the caller included.
    unsigned threads = std::thread::hardware_concurrency();
    if (const char* cap = std::getenv("SHIELD_KERNEL_THREADS")) {
      const long value = std::strtol(cap, nullptr, 10);
      if (value > 0) threads = std::min<unsigned>(threads, static_cast<unsigned>(value));
    }
    count_ = threads > 1 ? std::min<unsigned>(threads - 1, kMaxWorkers) : 0;
    for (unsigned i = 0; i < count_; ++i) std::thread([this] { loop(); }).detach();
  }

  void loop() {
    uint64_t seen = 0;
    for (;;) {
      seen = wait_for_new(seen);
      std::shared_ptr<Work> work;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        work = current_;
      }
      if (work) work->drain();
    }
  }

  uint64_t wait_for_new(uint64_t seen) {
    const auto deadline = std::chrono::steady_clock::now() + kSpinTime;
    for (int spins = 0;; ++spins) {
      const uint64_t generation = generation_.load(std::memory_order_acquire);
      if (generation != seen) return generation;
      // Yield rather than pause: a thread XLA needs may be waiting for this core.
      std::this_thread::yield();
      if ((spins & 255) == 255 && std::chrono::steady_clock::now() > deadline) break;
    }
    std::unique_lock<std::mutex> lock(mutex_);
    sleeping_.fetch_add(1, std::memory_order_acq_rel);
    wake_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
    sleeping_.fetch_sub(1, std::memory_order_acq_rel);
    return generation_.load(std::memory_order_acquire);
  }

  unsigned count_ = 0;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::shared_ptr<Work> current_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> sleeping_{0};
};

// Run body(context, c) for c in [0, chunks) on the caller and the workers; returns when all ran.
inline void parallel_for(int64_t chunks, void (*body)(const void*, int64_t), const void* context) {
  auto work = std::make_shared<Work>();
  work->run = body;
  work->context = context;
  work->chunks = chunks;
  Workers::instance().run(work);
}

}  // namespace shield_kernels

#endif  // SHIELD_KERNELS_WORKERS_H_
