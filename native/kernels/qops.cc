// Simple ops of the int4 engine on uint8 activation codes (contracts in flatenn/qengine.h):
// max pooling, global sum / average pooling, ReLU + requantise, residual add + requantise,
// and the linear layer on int32 activations. Scalar reference + SIMD where it pays off; the
// SIMD variants perform the same IEEE operations (exact conversions, one multiply, one add,
// one division, round-to-nearest-even, min/max), so results are bit-identical.
#include "flatenn/core.h"  // FL_X86
#if FL_X86
#include <immintrin.h>
#else
#include "sse2_portable.h"  // the SSE2 baseline code below
#endif

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "flatenn/core.h"
#include "flatenn/qengine.h"

namespace fl {
namespace {

#define FL_AVX2 __attribute__((target("avx2,fma")))
#define FL_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")))

constexpr size_t kBlock = size_t(1) << 16;  // elements per parallel task (shape-fixed)

// ---- scalar (the spec) ------------------------------------------------------------
inline uint8_t requant_one(float y, float actScale, float levels) {
  const float a = y > 0.0f ? y : 0.0f;  // ReLU (NaN -> 0)
  float q = std::nearbyint(a / actScale);
  q = q < levels ? q : levels;
  return uint8_t(q);
}

int64_t requant_scalar(const float* y, size_t n, float as, float levels, uint8_t* q) {
  int64_t z = 0;
  for (size_t i = 0; i < n; ++i) {
    q[i] = requant_one(y[i], as, levels);
    z += q[i] == 0;
  }
  return z;
}

// Residual join of two inputs, each uint8 codes (dequantised as fl(code * s)) or float.
struct AddIn {
  const uint8_t* c;
  const float* f;
  float s;
};
inline float deq(const AddIn& in, size_t i) { return in.c ? float(in.c[i]) * in.s : in.f[i]; }

int64_t add_requant_scalar(AddIn a, AddIn b, size_t n, float as, float levels, uint8_t* q) {
  int64_t z = 0;
  for (size_t i = 0; i < n; ++i) {
    const float y = deq(a, i) + deq(b, i);
    q[i] = requant_one(y, as, levels);
    z += q[i] == 0;
  }
  return z;
}

void maxpool_scalar(const uint8_t* x, size_t H, size_t W, size_t k, size_t s, uint8_t* y) {  // one plane
  const size_t OH = (H - k) / s + 1, OW = (W - k) / s + 1;
  for (size_t oh = 0; oh < OH; ++oh)
    for (size_t ow = 0; ow < OW; ++ow) {
      uint8_t m = 0;
      for (size_t i = 0; i < k; ++i)
        for (size_t j = 0; j < k; ++j) m = std::max(m, x[(oh * s + i) * W + ow * s + j]);
      y[oh * OW + ow] = m;
    }
}

#if FL_X86
// ---- AVX2 -------------------------------------------------------------------------------
FL_AVX2 inline __m256i requant8_avx2(__m256 y, __m256 vas, __m256 vl) {
  const __m256 a = _mm256_max_ps(y, _mm256_setzero_ps());
  const __m256 q = _mm256_round_ps(_mm256_div_ps(a, vas), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  return _mm256_cvtps_epi32(_mm256_min_ps(q, vl));
}
// 8 int32 codes in [0, 255] -> 8 bytes, plus their zero count
FL_AVX2 inline uint64_t codes8(__m256i qi, int64_t* z) {
  *z += __builtin_popcount(unsigned(_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(qi, _mm256_setzero_si256())))));
  const __m128i p16 = _mm_packs_epi32(_mm256_castsi256_si128(qi), _mm256_extracti128_si256(qi, 1));
  return uint64_t(_mm_cvtsi128_si64(_mm_packus_epi16(p16, p16)));
}

FL_AVX2 int64_t requant_avx2(const float* y, size_t n, float as, float levels, uint8_t* q) {
  const __m256 vas = _mm256_set1_ps(as), vl = _mm256_set1_ps(levels);
  int64_t z = 0;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const uint64_t b = codes8(requant8_avx2(_mm256_loadu_ps(y + i), vas, vl), &z);
    std::memcpy(q + i, &b, 8);
  }
  return z + requant_scalar(y + i, n - i, as, levels, q + i);
}

FL_AVX2 inline __m256 deq8_avx2(const AddIn& in, size_t i) {
  if (!in.c) return _mm256_loadu_ps(in.f + i);
  const __m256i c = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(in.c + i)));
  return _mm256_mul_ps(_mm256_cvtepi32_ps(c), _mm256_set1_ps(in.s));
}

FL_AVX2 int64_t add_requant_avx2(AddIn a, AddIn b, size_t n, float as, float levels, uint8_t* q) {
  const __m256 vas = _mm256_set1_ps(as), vl = _mm256_set1_ps(levels);
  int64_t z = 0;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 da = deq8_avx2(a, i);
    __asm__("" : "+x"(da));  // keep the products rounded (no FMA contraction into the add)
    __m256 db = deq8_avx2(b, i);
    __asm__("" : "+x"(db));
    const uint64_t bytes = codes8(requant8_avx2(_mm256_add_ps(da, db), vas, vl), &z);
    std::memcpy(q + i, &bytes, 8);
  }
  AddIn ta{a.c ? a.c + i : nullptr, a.f ? a.f + i : nullptr, a.s}, tb{b.c ? b.c + i : nullptr, b.f ? b.f + i : nullptr, b.s};
  return z + add_requant_scalar(ta, tb, n - i, as, levels, q + i);
}

// 2x2 windows with stride 2 vectorised (LeNet); other shapes use the scalar loop.
FL_AVX2 void maxpool_avx2(const uint8_t* x, size_t H, size_t W, size_t k, size_t s, uint8_t* y) {
  if (k != 2 || s != 2) { maxpool_scalar(x, H, W, k, s, y); return; }
  const size_t OH = H / 2, OW = W / 2;
  const __m256i lo = _mm256_set1_epi16(0x00FF);
  for (size_t oh = 0; oh < OH; ++oh) {
    const uint8_t* r0 = x + 2 * oh * W;
    const uint8_t* r1 = r0 + W;
    uint8_t* d = y + oh * OW;
    size_t ow = 0;
    for (; ow + 16 <= OW; ow += 16) {
      const __m256i v = _mm256_max_epu8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(r0 + 2 * ow)),
                                        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(r1 + 2 * ow)));
      // byte pairs (2j, 2j+1) -> max in the low byte of each 16-bit lane
      const __m256i m = _mm256_and_si256(_mm256_max_epu8(v, _mm256_srli_epi16(v, 8)), lo);
      const __m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi16(m, m), 0xD8);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(d + ow), _mm256_castsi256_si128(p));
    }
    for (; ow < OW; ++ow) d[ow] = std::max(std::max(r0[2 * ow], r0[2 * ow + 1]), std::max(r1[2 * ow], r1[2 * ow + 1]));
  }
}

// ---- AVX-512 ---------------------------------------------------------------------------
inline __mmask16 tail16(size_t left) { return left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1u); }

FL_AVX512 inline __m512i requant16_avx512(__m512 y, __m512 vas, __m512 vl) {
  const __m512 a = _mm512_max_ps(y, _mm512_setzero_ps());
  const __m512 q = _mm512_roundscale_ps(_mm512_div_ps(a, vas), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  return _mm512_cvtps_epi32(_mm512_min_ps(q, vl));
}

FL_AVX512 int64_t requant_avx512(const float* y, size_t n, float as, float levels, uint8_t* q) {
  const __m512 vas = _mm512_set1_ps(as), vl = _mm512_set1_ps(levels);
  int64_t z = 0;
  for (size_t i = 0; i < n; i += 16) {
    const __mmask16 k = tail16(n - i);
    const __m512i qi = requant16_avx512(_mm512_maskz_loadu_ps(k, y + i), vas, vl);
    z += __builtin_popcount(unsigned(_mm512_mask_cmpeq_epi32_mask(k, qi, _mm512_setzero_si512())));
    _mm_mask_storeu_epi8(q + i, k, _mm512_cvtepi32_epi8(qi));
  }
  return z;
}

FL_AVX512 inline __m512 deq16_avx512(const AddIn& in, size_t i, __mmask16 k) {
  if (!in.c) return _mm512_maskz_loadu_ps(k, in.f + i);
  const __m512i c = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(k, in.c + i));
  return _mm512_mul_ps(_mm512_cvtepi32_ps(c), _mm512_set1_ps(in.s));
}

FL_AVX512 int64_t add_requant_avx512(AddIn a, AddIn b, size_t n, float as, float levels, uint8_t* q) {
  const __m512 vas = _mm512_set1_ps(as), vl = _mm512_set1_ps(levels);
  int64_t z = 0;
  for (size_t i = 0; i < n; i += 16) {
    const __mmask16 k = tail16(n - i);
    __m512 da = deq16_avx512(a, i, k);
    __asm__("" : "+v"(da));  // keep the products rounded (no FMA contraction into the add)
    __m512 db = deq16_avx512(b, i, k);
    __asm__("" : "+v"(db));
    const __m512i qi = requant16_avx512(_mm512_add_ps(da, db), vas, vl);
    z += __builtin_popcount(unsigned(_mm512_mask_cmpeq_epi32_mask(k, qi, _mm512_setzero_si512())));
    _mm_mask_storeu_epi8(q + i, k, _mm512_cvtepi32_epi8(qi));
  }
  return z;
}

#endif  // FL_X86
#undef FL_AVX2
#undef FL_AVX512

using RequantFn = int64_t (*)(const float*, size_t, float, float, uint8_t*);
using AddRequantFn = int64_t (*)(AddIn, AddIn, size_t, float, float, uint8_t*);
using MaxpoolFn = void (*)(const uint8_t*, size_t, size_t, size_t, size_t, uint8_t*);

Kernel<RequantFn> k_requant("f32_u8_requant", requant_scalar, FL_X86_ONLY(requant_avx2), FL_X86_ONLY(requant_avx512));
Kernel<AddRequantFn> k_add_requant("u8_add_requant", add_requant_scalar, FL_X86_ONLY(add_requant_avx2), FL_X86_ONLY(add_requant_avx512));
Kernel<MaxpoolFn> k_maxpool("u8_maxpool2d", maxpool_scalar, FL_X86_ONLY(maxpool_avx2), nullptr);

int64_t sum_parts(const std::vector<int64_t>& v) {
  int64_t s = 0;
  for (int64_t x : v) s += x;
  return s;
}

}  // namespace

// Blocked layout (qengine.h): item b, element e at ((b / 16) * E + e) * 16 + b % 16.
void qblock(const void* rows, size_t B, size_t E, size_t elem, void* blocked) {
  const uint8_t* src = static_cast<const uint8_t*>(rows);
  uint8_t* dst = static_cast<uint8_t*>(blocked);
  const size_t nb = (B + 15) / 16;
  parallel_for(nb, [&](size_t t) {
    uint8_t* d = dst + t * E * 16 * elem;
    for (size_t i = 0; i < 16; ++i) {
      const size_t b = t * 16 + i;
      for (size_t e = 0; e < E; ++e) {
        if (b < B) std::memcpy(d + (e * 16 + i) * elem, src + (b * E + e) * elem, elem);
        else std::memset(d + (e * 16 + i) * elem, 0, elem);
      }
    }
  });
}

void qunblock(const void* blocked, size_t B, size_t E, size_t elem, void* rows) {
  const uint8_t* src = static_cast<const uint8_t*>(blocked);
  uint8_t* dst = static_cast<uint8_t*>(rows);
  const size_t nb = (B + 15) / 16;
  parallel_for(nb, [&](size_t t) {
    const uint8_t* s = src + t * E * 16 * elem;
    for (size_t i = 0; i < 16 && t * 16 + i < B; ++i)
      for (size_t e = 0; e < E; ++e) std::memcpy(dst + ((t * 16 + i) * E + e) * elem, s + (e * 16 + i) * elem, elem);
  });
}

// 16 images per SSE2 vector (baseline x86-64): every ISA runs the same exact max.
void maxpool2d_u8_blocked(const uint8_t* x, size_t B, size_t C, size_t H, size_t W, size_t k, size_t stride, uint8_t* y) {
  const size_t OH = (H - k) / stride + 1, OW = (W - k) / stride + 1;
  const size_t nb = (B + 15) / 16;
  parallel_for(nb * C, [&](size_t t) {  // one plane of one block
    const uint8_t* xp = x + t * H * W * 16;
    uint8_t* yp = y + t * OH * OW * 16;
    for (size_t oh = 0; oh < OH; ++oh)
      for (size_t ow = 0; ow < OW; ++ow) {
        __m128i m = _mm_setzero_si128();
        for (size_t i = 0; i < k; ++i)
          for (size_t j = 0; j < k; ++j)
            m = _mm_max_epu8(m, _mm_loadu_si128(reinterpret_cast<const __m128i*>(xp + ((oh * stride + i) * W + ow * stride + j) * 16)));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(yp + (oh * OW + ow) * 16), m);
      }
  });
}

void maxpool2d_u8(const uint8_t* x, size_t planes, size_t H, size_t W, size_t k, size_t stride, uint8_t* y) {
  const size_t OH = (H - k) / stride + 1, OW = (W - k) / stride + 1;
  const MaxpoolFn fn = k_maxpool.fn;
  parallel_for(planes, [&](size_t p) { fn(x + p * H * W, H, W, k, stride, y + p * OH * OW); });
}

void global_sum_u8(const uint8_t* x, size_t planes, size_t HW, int32_t* sums) {
  parallel_for((planes + 255) / 256, [&](size_t t) {
    for (size_t p = t * 256; p < std::min(planes, (t + 1) * 256); ++p) {
      int32_t s = 0;
      for (size_t i = 0; i < HW; ++i) s += x[p * HW + i];
      sums[p] = s;
    }
  });
}

int64_t global_avgpool_u8(const uint8_t* x, size_t planes, size_t HW, float mul, float* yf, uint8_t* codes, float actScale,
                          float levels) {
  std::vector<int32_t> sums(planes);
  global_sum_u8(x, planes, HW, sums.data());
  int64_t z = 0;
  for (size_t p = 0; p < planes; ++p) {
    const float y = float(sums[p]) * mul;  // exact sum, one rounding
    if (yf) yf[p] = y;
    if (codes) {
      codes[p] = requant_one(y, actScale, levels);
      z += codes[p] == 0;
    }
  }
  return z;
}

int64_t requant_u8(const float* y, size_t n, float actScale, float levels, uint8_t* q) {
  const size_t tasks = (n + kBlock - 1) / kBlock;
  std::vector<int64_t> z(tasks, 0);
  const RequantFn fn = k_requant.fn;
  parallel_for(tasks, [&](size_t t) {
    const size_t off = t * kBlock;
    z[t] = fn(y + off, std::min(kBlock, n - off), actScale, levels, q + off);
  });
  return sum_parts(z);
}

void add_periodic_f32(float* y, size_t n, const float* x, size_t period) {
  if (period == 0) return;
  const size_t reps = n / period;
  parallel_for(reps, [&](size_t r) {
    float* yr = y + r * period;
    for (size_t j = 0; j < period; ++j) yr[j] += x[j];
  });
}

int64_t add_requant(const uint8_t* a8, const float* af, float sa, const uint8_t* b8, const float* bf, float sb, size_t n,
                    float actScale, float levels, uint8_t* q) {
  const size_t tasks = (n + kBlock - 1) / kBlock;
  std::vector<int64_t> z(tasks, 0);
  const AddRequantFn fn = k_add_requant.fn;
  parallel_for(tasks, [&](size_t t) {
    const size_t off = t * kBlock;
    const AddIn a{a8 ? a8 + off : nullptr, af ? af + off : nullptr, sa}, b{b8 ? b8 + off : nullptr, bf ? bf + off : nullptr, sb};
    z[t] = fn(a, b, std::min(kBlock, n - off), actScale, levels, q + off);
  });
  return sum_parts(z);
}

int64_t qlinear_i32(const int32_t* A, size_t M, size_t K, const int8_t* W, size_t N, const float* scale, const float* bias,
                    QOutMode mode, void* out, float actScale, float levels) {
  std::vector<int64_t> z(M, 0);
  parallel_for(M, [&](size_t m) {
    for (size_t n = 0; n < N; ++n) {
      int64_t acc = 0;
      for (size_t k = 0; k < K; ++k) acc += int64_t(A[m * K + k]) * W[n * K + k];
      float p = scale[n] * float(acc);  // float(acc): round to nearest even, exact below 2^24
      __asm__("" : "+x"(p));            // no FMA contraction
      const float y = p + bias[n];
      if (mode == QOutMode::Float) {
        static_cast<float*>(out)[m * N + n] = y;
      } else {
        const uint8_t q = requant_one(y, actScale, levels);
        static_cast<uint8_t*>(out)[m * N + n] = q;
        z[m] += q == 0;
      }
    }
  });
  return sum_parts(z);
}

}  // namespace fl
