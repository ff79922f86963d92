// The trainer's loops over whole arrays (contracts in flatenn/f32.h): the SGD step over the flat
// parameter arena, the finiteness check of the gradients, the activation-range observer's maximum
// and the input normalisation. They replace JavaScript loops and
// compute the same bits: the SGD step rounds like the JavaScript it replaced (float64 arithmetic,
// one IEEE operation per step, never fused into an FMA), then stores float32.
//
// Variants: scalar (the spec), avx2, avx512: the same loop compiled for each ISA (the compiler
// vectorises it; no contraction is allowed in this file), so every variant gives the same bits.
#pragma GCC optimize("fp-contract=off")
#include <algorithm>
#include <cstring>
#include <vector>

#include "flatenn/f32.h"
#include "flatenn/quant.h"
#if FL_X86
#include <immintrin.h>
#endif

// GCC 12 warns inside avx512fintrin.h about the self-initialised "undefined" vectors of the
// masked intrinsics (GCC PR 105593, fixed in 13).
#pragma GCC diagnostic ignored "-Wuninitialized"

#define FL_AVX2 __attribute__((target("avx2,fma")))
#define FL_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")))

namespace fl {
namespace {

// One block of the SGD step; returns 1 if some updated weight is Inf or NaN.
__attribute__((always_inline)) inline int sgd_generic(float* w, const float* g, float* buf, size_t n, double lr, double wd,
                                                      double mu, bool started, bool nesterov) {
  uint32_t bad = 0;
  if (mu > 0.0) {
    for (size_t i = 0; i < n; ++i) {
      const double wi = double(w[i]);
      double d = double(g[i]) + wd * wi;
      const double b = started ? mu * double(buf[i]) + d : d;
      buf[i] = float(b);
      d = nesterov ? d + mu * b : b;
      const float nw = float(wi - lr * d);
      w[i] = nw;
      uint32_t u;
      std::memcpy(&u, &nw, 4);
      bad |= uint32_t((u & 0x7f800000u) == 0x7f800000u);
    }
  } else {
    for (size_t i = 0; i < n; ++i) {
      const double wi = double(w[i]);
      const double d = double(g[i]) + wd * wi;
      const float nw = float(wi - lr * d);
      w[i] = nw;
      uint32_t u;
      std::memcpy(&u, &nw, 4);
      bad |= uint32_t((u & 0x7f800000u) == 0x7f800000u);
    }
  }
  return int(bad);
}

// Largest total-order key (flatenn/quant.h's float_order_key: -0 < +0) over the non-NaN values of
// a block; INT32_MIN when there is none.
__attribute__((always_inline)) inline int32_t max_key_generic(const float* x, size_t n) {
  int32_t m = INT32_MIN;
  for (size_t i = 0; i < n; ++i) {
    int32_t k;
    std::memcpy(&k, x + i, 4);
    const bool nan = (k & 0x7fffffff) > 0x7f800000;
    k = k < 0 ? (k ^ 0x7fffffff) : k;
    m = std::max(m, nan ? INT32_MIN : k);
  }
  return m;
}

// y = float((double(x) - mean) * inv) for n bytes (one image channel): the bits of the JavaScript it replaced.
__attribute__((always_inline)) inline void normalize_generic(const uint8_t* x, float* y, size_t n, double mean, double inv) {
  for (size_t i = 0; i < n; ++i) y[i] = float((double(x[i]) - mean) * inv);
}

int sgd_scalar(float* w, const float* g, float* buf, size_t n, double lr, double wd, double mu, bool started, bool nesterov) {
  return sgd_generic(w, g, buf, n, lr, wd, mu, started, nesterov);
}
int32_t max_key_scalar(const float* x, size_t n) { return max_key_generic(x, n); }
void normalize_scalar(const uint8_t* x, float* y, size_t n, double mean, double inv) { normalize_generic(x, y, n, mean, inv); }
#if FL_X86
FL_AVX2 int sgd_avx2(float* w, const float* g, float* buf, size_t n, double lr, double wd, double mu, bool started, bool nesterov) {
  return sgd_generic(w, g, buf, n, lr, wd, mu, started, nesterov);
}
FL_AVX2 void normalize_avx2(const uint8_t* x, float* y, size_t n, double mean, double inv) { normalize_generic(x, y, n, mean, inv); }
FL_AVX512 void normalize_avx512(const uint8_t* x, float* y, size_t n, double mean, double inv) { normalize_generic(x, y, n, mean, inv); }
// key = bits ^ (0x7fffffff if negative); NaN -> INT32_MIN (never the maximum of a real value's key)
FL_AVX2 int32_t max_key_avx2(const float* x, size_t n) {
  const __m256i mag = _mm256_set1_epi32(0x7fffffff), inf = _mm256_set1_epi32(0x7f800000), lowest = _mm256_set1_epi32(INT32_MIN);
  __m256i m0 = lowest, m1 = lowest;
  size_t i = 0;
  const auto key = [&](__m256i b) {
    const __m256i k = _mm256_xor_si256(b, _mm256_and_si256(_mm256_srai_epi32(b, 31), mag));
    return _mm256_blendv_epi8(k, lowest, _mm256_cmpgt_epi32(_mm256_and_si256(b, mag), inf));
  };
  for (; i + 16 <= n; i += 16) {
    m0 = _mm256_max_epi32(m0, key(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i))));
    m1 = _mm256_max_epi32(m1, key(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i + 8))));
  }
  alignas(32) int32_t t[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(t), _mm256_max_epi32(m0, m1));
  int32_t m = max_key_generic(x + i, n - i);
  for (int j = 0; j < 8; ++j) m = std::max(m, t[j]);
  return m;
}
FL_AVX512 int sgd_avx512(float* w, const float* g, float* buf, size_t n, double lr, double wd, double mu, bool started,
                         bool nesterov) {
  return sgd_generic(w, g, buf, n, lr, wd, mu, started, nesterov);
}
FL_AVX512 int32_t max_key_avx512(const float* x, size_t n) {
  const __m512i mag = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000), lowest = _mm512_set1_epi32(INT32_MIN);
  __m512i m0 = lowest, m1 = lowest;
  const auto key = [&](__m512i b) {
    const __m512i k = _mm512_xor_si512(b, _mm512_and_si512(_mm512_srai_epi32(b, 31), mag));
    return _mm512_mask_mov_epi32(k, _mm512_cmpgt_epi32_mask(_mm512_and_si512(b, mag), inf), lowest);
  };
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    m0 = _mm512_max_epi32(m0, key(_mm512_loadu_si512(x + i)));
    m1 = _mm512_max_epi32(m1, key(_mm512_loadu_si512(x + i + 16)));
  }
  for (; i < n; i += 16) {
    const __mmask16 k = n - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - i)) - 1u);
    m0 = _mm512_mask_max_epi32(m0, k, m0, key(_mm512_maskz_loadu_epi32(k, x + i)));
  }
  return _mm512_reduce_max_epi32(_mm512_max_epi32(m0, m1));
}
#endif

Kernel<SgdStepFn> k_sgd("f32_sgd_step", sgd_scalar, FL_X86_ONLY(sgd_avx2), FL_X86_ONLY(sgd_avx512));
Kernel<MaxKeyFn> k_max_key("f32_max_key", max_key_scalar, FL_X86_ONLY(max_key_avx2), FL_X86_ONLY(max_key_avx512));
Kernel<NormalizeU8Fn> k_normalize("u8_normalize", normalize_scalar, FL_X86_ONLY(normalize_avx2), FL_X86_ONLY(normalize_avx512));

constexpr size_t kBlock = size_t(1) << 16;  // elements per parallel task

}  // namespace

Kernel<SgdStepFn>& sgd_step_kernel() { return k_sgd; }
Kernel<MaxKeyFn>& max_key_kernel() { return k_max_key; }
Kernel<NormalizeU8Fn>& normalize_u8_kernel() { return k_normalize; }

// Every value finite <=> the largest |x| bit pattern is below Inf's (fake quantisation's kernel for max|w|).
bool all_finite(const float* x, size_t n) {
  const size_t tasks = (n + kBlock - 1) / kBlock;
  std::vector<uint32_t> part(tasks, 0);
  const AbsMaxBitsFn fn = kern::f32_absmax_bits.fn;
  parallel_for(tasks, [&](size_t t) { part[t] = fn(x + t * kBlock, std::min(kBlock, n - t * kBlock)); });
  return std::all_of(part.begin(), part.end(), [](uint32_t m) { return m < 0x7f800000u; });
}

void normalize_u8(const uint8_t* x, float* y, size_t images, size_t C, size_t HW, const double* mean, const double* inv) {
  const NormalizeU8Fn fn = k_normalize.fn;
  const size_t per = std::max<size_t>(1, kBlock / std::max<size_t>(1, C * HW));  // images per task
  parallel_for((images + per - 1) / per, [&](size_t t) {
    for (size_t b = t * per; b < std::min(images, (t + 1) * per); ++b)
      for (size_t c = 0; c < C; ++c) fn(x + (b * C + c) * HW, y + (b * C + c) * HW, HW, mean[c], inv[c]);
  });
}

bool sgd_step(float* w, const float* g, float* buf, size_t n, double lr, double wd, double mu, bool started, bool nesterov) {
  const size_t tasks = (n + kBlock - 1) / kBlock;
  std::vector<int> bad(tasks, 0);
  const SgdStepFn fn = k_sgd.fn;
  parallel_for(tasks, [&](size_t t) {
    const size_t off = t * kBlock;
    bad[t] = fn(w + off, g + off, buf ? buf + off : nullptr, std::min(kBlock, n - off), lr, wd, mu, started, nesterov);
  });
  return std::none_of(bad.begin(), bad.end(), [](int b) { return b != 0; });
}

double sum_squares_f64(const float* x, size_t n, double start) {
  // one chain in index order (the JavaScript loop's bits; the product of two floats is exact in
  // double, so a fused multiply-add would not change it either)
  double s = start;
  for (size_t i = 0; i < n; ++i) s += double(x[i]) * double(x[i]);
  return s;
}

void scale_to_f32(const float* g, size_t n, double s, float* out) {
  parallel_for((n + kBlock - 1) / kBlock, [&](size_t t) {
    const size_t e = std::min(n, (t + 1) * kBlock);
    for (size_t i = t * kBlock; i < e; ++i) out[i] = float(s * double(g[i]));
  });
}

void add_scaled_f32(float* d, const float* g, size_t n, double s) {
  parallel_for((n + kBlock - 1) / kBlock, [&](size_t t) {
    const size_t e = std::min(n, (t + 1) * kBlock);
    for (size_t i = t * kBlock; i < e; ++i) d[i] = float(double(d[i]) + s * double(g[i]));
  });
}

void add_f32(const float* a, const float* b, size_t n, float* out) {
  parallel_for((n + kBlock - 1) / kBlock, [&](size_t t) {
    const size_t e = std::min(n, (t + 1) * kBlock);
    for (size_t i = t * kBlock; i < e; ++i) out[i] = a[i] + b[i];
  });
}

float max_ignoring_nan(const float* x, size_t n) {
  const size_t tasks = (n + kBlock - 1) / kBlock;
  std::vector<int32_t> part(tasks, INT32_MIN);
  const MaxKeyFn fn = k_max_key.fn;
  parallel_for(tasks, [&](size_t t) { part[t] = fn(x + t * kBlock, std::min(kBlock, n - t * kBlock)); });
  int32_t m = INT32_MIN;
  for (int32_t v : part) m = std::max(m, v);
  if (m == INT32_MIN) return -__builtin_inff();  // empty, or NaN only (INT32_MIN is no float's key)
  const uint32_t u = uint32_t(m < 0 ? (m ^ 0x7fffffff) : m);
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

}  // namespace fl
