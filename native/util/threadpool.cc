// Persistent thread pool. Waits spin briefly, then block: a futex wake-up costs 40-95 us per
// parallel region on the 2-vCPU machines this runs on, more than a small layer's work, while
// layers follow each other within microseconds to a few hundred (the autograd's JavaScript runs
// between them). kSpinUs = 300 covers most of those gaps: `perf stat -e
// syscalls:sys_enter_futex,context-switches node dist/bench/train.js --threads 2 --no-torch`
// (160 LeNet-5 steps, data loading included) counted 25.6k futex calls and 16.0k context
// switches with a 50 us spin, 16.3k and 12.1k with 300 us; OpenMP runtimes spin longer still.
// Beyond that an idle worker gives its core back (machines are often shared). An exception
// thrown by a task (std::bad_alloc included) never escapes a worker thread (that would
// std::terminate the process): the first one is kept, the remaining tasks are skipped, and run()
// rethrows it on the calling thread once every worker is idle, where the Node-API glue turns it
// into a JavaScript error.
#include "flatenn/core.h"  // FL_X86
#if FL_X86
#include <immintrin.h>
#endif

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "flatenn/core.h"

namespace fl {
namespace {

constexpr int64_t kSpinUs = 300;

// Spins until pred() or kSpinUs have passed; returns pred().
template <class Pred>
bool spin_until(const Pred& pred) {
  const auto t0 = std::chrono::steady_clock::now();
  for (unsigned i = 1;; ++i) {
    if (pred()) return true;
#if FL_X86
    _mm_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
    if (i % 64 == 0 && std::chrono::steady_clock::now() - t0 > std::chrono::microseconds(kSpinUs)) return pred();
  }
}

class Pool {
 public:
  ~Pool() { resize(0); }

  int size() const { return nthreads_; }

  void resize(int n) {  // n = total threads including the caller
    std::lock_guard<std::mutex> run_lock(run_mu_);
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
      ++generation_;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
    stop_ = false;
    nthreads_ = n < 1 ? 1 : n;
    const uint64_t gen = generation_.load();
    for (int i = 1; i < nthreads_; ++i) workers_.emplace_back([this, gen] { worker(gen); });
  }

  void run(size_t ntasks, const std::function<void(size_t)>& fn) {
    if (ntasks == 0) return;
    if (in_task_ || nthreads_ <= 1 || ntasks == 1) { for (size_t i = 0; i < ntasks; ++i) fn(i); return; }
    std::unique_lock<std::mutex> run_lock(run_mu_, std::try_to_lock);
    if (!run_lock.owns_lock()) { for (size_t i = 0; i < ntasks; ++i) fn(i); return; }
    {
      std::lock_guard<std::mutex> lock(mu_);
      fn_ = &fn;
      ntasks_ = ntasks;
      next_.store(0);
      active_ = static_cast<int>(workers_.size());
      error_ = nullptr;
      ++generation_;
    }
    cv_.notify_all();
    in_task_ = true;
    drain();
    in_task_ = false;
    spin_until([this] { return active_.load(std::memory_order_acquire) == 0; });
    std::exception_ptr err;
    {
      std::unique_lock<std::mutex> lock(mu_);
      done_cv_.wait(lock, [this] { return active_.load() == 0; });
      fn_ = nullptr;
      err = error_;
      error_ = nullptr;
    }
    if (err) std::rethrow_exception(err);
  }

 private:
  void drain() {
    for (;;) {
      const size_t i = next_.fetch_add(1);
      if (i >= ntasks_) break;
      try {
        (*fn_)(i);
      } catch (...) {
        std::lock_guard<std::mutex> lock(err_mu_);
        if (!error_) error_ = std::current_exception();
        next_.store(ntasks_);  // skip the tasks not yet started
      }
    }
  }

  void worker(uint64_t seen) {
    for (;;) {
      spin_until([&] { return generation_.load(std::memory_order_acquire) != seen; });
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return generation_.load() != seen; });
        seen = generation_.load();
        if (stop_) return;
      }
      in_task_ = true;
      drain();
      in_task_ = false;
      std::lock_guard<std::mutex> lock(mu_);
      if (active_.fetch_sub(1) == 1) done_cv_.notify_one();
    }
  }

  std::mutex run_mu_;  // one parallel region at a time
  std::mutex mu_;
  std::condition_variable cv_, done_cv_;
  std::vector<std::thread> workers_;
  const std::function<void(size_t)>* fn_ = nullptr;
  size_t ntasks_ = 0;
  std::atomic<size_t> next_{0};
  std::atomic<int> active_{0};            // written under mu_, read by spinning waiters
  std::atomic<uint64_t> generation_{0};   // likewise
  bool stop_ = false;
  int nthreads_ = 1;
  std::mutex err_mu_;
  std::exception_ptr error_;  // first exception of the current region
  static thread_local bool in_task_;
};

thread_local bool Pool::in_task_ = false;

Pool& pool() {
  static Pool* p = [] {
    auto* q = new Pool();  // leaked on purpose: no join during static destruction
    unsigned hc = std::thread::hardware_concurrency();
    q->resize(hc == 0 ? 1 : static_cast<int>(hc));
    return q;
  }();
  return *p;
}

}  // namespace

void set_num_threads(int n) { pool().resize(n); }
int num_threads() { return pool().size(); }
void parallel_for(size_t ntasks, const std::function<void(size_t)>& fn) { pool().run(ntasks, fn); }

}  // namespace fl
