// Per-thread scratch buffers and shared small helpers of the fp32 kernels (internal to native/kernels).
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>

#include "flatenn/core.h"  // parallel_for

namespace fl {

// A growable 64-byte aligned float buffer; thread_local instances are reused across calls
// (no allocation in steady state) and never shrink.
struct Scratch {
  float* p = nullptr;
  size_t cap = 0;
  Scratch() = default;
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  ~Scratch() { std::free(p); }
  float* get(size_t n) {
    if (n > cap) {
      std::free(p);
      p = nullptr;
      cap = 0;
      const size_t bytes = ((n * sizeof(float) + 63) / 64) * 64 + 64;  // + 64: slack for vector tails
      p = static_cast<float*>(std::aligned_alloc(64, bytes));
      if (!p) throw std::bad_alloc();
      cap = n;
    }
    return p;
  }
};

inline int64_t ceil_div64(int64_t a, int64_t b) { return (a + b - 1) / b; }

// out[i] = parts[0][i] + parts[1][i] + ... + parts[units-1][i] (float, in unit order) for i < n, where
// part u starts at parts + u * n: the block partials of a batch sum (conv dw). Element ranges run in
// parallel when the parts are large; each element's sum order is the same either way.
inline void sum_parts_in_order(const float* parts, int64_t units, int64_t n, float* out) {
  constexpr int64_t kEl = 16384;
  auto reduce = [&](size_t e) {
    const int64_t e0 = int64_t(e) * kEl, e1 = std::min(n, e0 + kEl);
    for (int64_t i = e0; i < e1; ++i) out[i] = parts[i];
    for (int64_t u = 1; u < units; ++u) {
      const float* pu = parts + u * n;
      for (int64_t i = e0; i < e1; ++i) out[i] += pu[i];
    }
  };
  const int64_t ne = ceil_div64(n, kEl);
  if (n * units >= (int64_t(1) << 20)) parallel_for(size_t(ne), reduce);
  else
    for (int64_t e = 0; e < ne; ++e) reduce(size_t(e));
}

}  // namespace fl
