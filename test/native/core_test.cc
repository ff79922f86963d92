// Core: RNG is a pure function; the thread pool's results do not depend on the thread count.
#include <atomic>
#include <new>
#include <stdexcept>
#include <vector>

#include "flatenn/core.h"
#include "flatenn/quant.h"
#include "flatenn/rng.h"
#include <string>
#include "harness.h"

FL_TEST(philox_known_answer) {
  // Philox4x32-10 known-answer vectors from the Random123 distribution (kat_vectors).
  auto r = fl::philox4x32(0, 0, 0, 0, 0, 0);
  FL_CHECK(r.v[0] == 0x6627e8d5u && r.v[1] == 0xe169c58du && r.v[2] == 0xbc57ac4cu && r.v[3] == 0x9b00dbd8u)
      << std::hex << r.v[0] << " " << r.v[1] << " " << r.v[2] << " " << r.v[3];
  auto s = fl::philox4x32(0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu);
  FL_CHECK(s.v[0] == 0x408f276du && s.v[1] == 0x41c83b0eu && s.v[2] == 0xa20bc7c6u && s.v[3] == 0x6d5451fdu)
      << std::hex << s.v[0] << " " << s.v[1] << " " << s.v[2] << " " << s.v[3];
}

FL_TEST(rng_uniform_range_and_purity) {
  for (uint64_t i = 0; i < 10000; ++i) {
    const double u = fl::rng_uniform(42, fl::RngPurpose::FaultKey, 3, i);
    FL_CHECK(u >= 0.0 && u < 1.0) << u;
    FL_CHECK(u == fl::rng_uniform(42, fl::RngPurpose::FaultKey, 3, i));
  }
  FL_CHECK(fl::rng_bits64(1, fl::RngPurpose::Shuffle, 0, 0) != fl::rng_bits64(1, fl::RngPurpose::Init, 0, 0));
}

FL_TEST(thread_pool_every_task_once_any_thread_count) {
  for (int threads : {1, 2, 3, 8}) {
    fl::set_num_threads(threads);
    std::vector<std::atomic<int>> hits(1000);
    fl::parallel_for(hits.size(), [&](size_t i) { hits[i].fetch_add(1); });
    for (size_t i = 0; i < hits.size(); ++i) FL_CHECK(hits[i].load() == 1) << "threads=" << threads << " task=" << i;
    // nested regions run serially and still complete
    std::atomic<int> inner{0};
    fl::parallel_for(4, [&](size_t) { fl::parallel_for(5, [&](size_t) { inner.fetch_add(1); }); });
    FL_CHECK(inner.load() == 20) << inner.load();
  }
  fl::set_num_threads(2);
}

FL_TEST(thread_pool_task_exceptions_reach_the_caller) {
  // A throwing task (std::bad_alloc included) must not terminate the process:
  // run() rethrows the first exception on the calling thread, the pool stays usable.
  for (int threads : {1, 2, 4}) {
    fl::set_num_threads(threads);
    for (int which : {0, 1, 63}) {
      bool caught = false;
      try {
        fl::parallel_for(64, [&](size_t i) {
          if (int(i) == which) throw std::bad_alloc();
        });
      } catch (const std::bad_alloc&) {
        caught = true;
      }
      FL_CHECK(caught) << "threads=" << threads << " throwing task " << which;
    }
    bool caught = false;
    try {
      fl::parallel_for(1000, [&](size_t i) { if (i % 7 == 3) throw std::runtime_error("task failed"); });
    } catch (const std::runtime_error& e) {
      caught = std::string(e.what()) == "task failed";
    }
    FL_CHECK(caught) << "threads=" << threads << " runtime_error";
    std::atomic<int> after{0};
    fl::parallel_for(100, [&](size_t) { after.fetch_add(1); });
    FL_CHECK(after.load() == 100) << "pool usable after an exception, threads=" << threads;
  }
  fl::set_num_threads(2);
}

FL_TEST(bernoulli_selection_bounded_by_capacity) {
  // p = 1 selects every cell: only `cap` are written, the full count is returned,
  // and the same for any thread count.
  const uint64_t cells = (uint64_t(1) << 22) + 12345;
  std::vector<uint32_t> out(17, 0xFFFFFFFFu);
  for (int threads : {1, 2, 3}) {
    fl::set_num_threads(threads);
    std::fill(out.begin(), out.end(), 0xFFFFFFFFu);
    const size_t n = fl::fault_select_bernoulli(7, 3, cells, nullptr, 1.0, out.data(), 16);
    FL_CHECK(n == cells) << n;
    for (uint32_t i = 0; i < 16; ++i) FL_CHECK(out[i] == i) << i << " " << out[i];
    FL_CHECK(out[16] == 0xFFFFFFFFu) << "wrote past the capacity";
  }
  fl::set_num_threads(2);
}
