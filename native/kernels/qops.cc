// Simple ops of the int4 engine on uint8 activation codes (contracts in flatenn/qengine.h):
// max pooling, global sum pooling, ReLU + requantise, residual add + requantise, the input layer's
// channel-group epilogue and the linear layer on int32 activations. Scalar reference + SIMD where
// it pays off; the SIMD variants perform the same float64 IEEE operations (qrequant.h: exact
// conversions, multiplies and adds never fused, round-to-nearest-even, min/max), so results are
// bit-identical.
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
#include "qrequant.h"

namespace fl {
namespace {

#define FL_AVX2 __attribute__((target("avx2,fma")))
#define FL_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")))

constexpr size_t kBlock = size_t(1) << 16;  // elements per parallel task (shape-fixed)

// ---- scalar (the spec) ------------------------------------------------------------
int64_t requant_scalar(const double* y, size_t n, double inv, double levels, uint8_t* q) {
  int64_t z = 0;
  for (size_t i = 0; i < n; ++i) {
    q[i] = qrq::code_of(y[i], inv, levels);
    z += q[i] == 0;
  }
  return z;
}

// Residual join of one plane (P elements of channel c): each input codes (fl(code * s)) or
// int32 accumulators with the channel's affine.
inline double join_in(const QJoinIn& in, size_t c, size_t i) {
  return in.codes ? double(in.codes[i]) * in.s : qrq::affine_spec(in.acc[i], in.scale[c], in.bias[c]);
}

int64_t add_requant_scalar(const QJoinIn& a, const QJoinIn& b, size_t c, size_t P, double inv, double levels, uint8_t* q) {
  int64_t z = 0;
  for (size_t i = 0; i < P; ++i) {
    double va = join_in(a, c, i), vb = join_in(b, c, i);
    __asm__("" : "+x"(va), "+x"(vb));  // (no contraction of a product into the add)
    q[i] = qrq::code_of(va + vb, inv, levels);
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
// 8 int32 codes in [0, 255] -> 8 bytes, plus their zero count
FL_AVX2 inline uint64_t codes8(__m256i qi, int64_t* z) {
  *z += __builtin_popcount(unsigned(_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(qi, _mm256_setzero_si256())))));
  const __m128i p16 = _mm_packs_epi32(_mm256_castsi256_si128(qi), _mm256_extracti128_si256(qi, 1));
  return uint64_t(_mm_cvtsi128_si64(_mm_packus_epi16(p16, p16)));
}

FL_AVX2 int64_t requant_avx2(const double* y, size_t n, double inv, double levels, uint8_t* q) {
  int64_t z = 0;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const qrq::Y8 v{_mm256_loadu_pd(y + i), _mm256_loadu_pd(y + i + 4)};
    const uint64_t b = codes8(qrq::codes8(v, inv, levels), &z);
    std::memcpy(q + i, &b, 8);
  }
  return z + requant_scalar(y + i, n - i, inv, levels, q + i);
}

FL_AVX2 inline qrq::Y8 join8_avx2(const QJoinIn& in, size_t c, size_t i) {
  if (in.acc) return qrq::affine8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(in.acc + i)), in.scale[c], in.bias[c]);
  const __m128i c8 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(in.codes + i));
  const __m256d vs = _mm256_set1_pd(in.s);
  return {_mm256_mul_pd(_mm256_cvtepi32_pd(_mm_cvtepu8_epi32(c8)), vs), _mm256_mul_pd(_mm256_cvtepi32_pd(_mm_cvtepu8_epi32(_mm_srli_si128(c8, 4))), vs)};
}

FL_AVX2 int64_t add_requant_avx2(const QJoinIn& a, const QJoinIn& b, size_t c, size_t P, double inv, double levels, uint8_t* q) {
  int64_t z = 0;
  size_t i = 0;
  for (; i + 8 <= P; i += 8) {
    qrq::Y8 va = join8_avx2(a, c, i), vb = join8_avx2(b, c, i);
    __asm__("" : "+x"(va.lo), "+x"(va.hi), "+x"(vb.lo), "+x"(vb.hi));  // keep the products rounded
    const qrq::Y8 y{_mm256_add_pd(va.lo, vb.lo), _mm256_add_pd(va.hi, vb.hi)};
    const uint64_t bytes = codes8(qrq::codes8(y, inv, levels), &z);
    std::memcpy(q + i, &bytes, 8);
  }
  const QJoinIn ta{a.codes ? a.codes + i : nullptr, a.acc ? a.acc + i : nullptr, a.s, a.scale, a.bias};
  const QJoinIn tb{b.codes ? b.codes + i : nullptr, b.acc ? b.acc + i : nullptr, b.s, b.scale, b.bias};
  return z + add_requant_scalar(ta, tb, c, P - i, inv, levels, q + i);
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

FL_AVX512 int64_t requant_avx512(const double* y, size_t n, double inv, double levels, uint8_t* q) {
  int64_t z = 0;
  for (size_t i = 0; i < n; i += 16) {
    const __mmask16 k = tail16(n - i);
    const qrq::Y16 v{_mm512_maskz_loadu_pd(__mmask8(k), y + i), _mm512_maskz_loadu_pd(__mmask8(k >> 8), y + i + 8)};
    const __m512i qi = qrq::codes16(v, inv, levels);
    z += __builtin_popcount(unsigned(_mm512_mask_cmpeq_epi32_mask(k, qi, _mm512_setzero_si512())));
    _mm_mask_storeu_epi8(q + i, k, _mm512_cvtepi32_epi8(qi));
  }
  return z;
}

FL_AVX512 inline qrq::Y16 join16_avx512(const QJoinIn& in, size_t c, size_t i, __mmask16 k) {
  if (in.acc) return qrq::affine16(_mm512_maskz_loadu_epi32(k, in.acc + i), in.scale[c], in.bias[c]);
  const __m512i ci = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(k, in.codes + i));
  const __m512d vs = _mm512_set1_pd(in.s);
  return {_mm512_mul_pd(_mm512_cvtepi32_pd(_mm512_castsi512_si256(ci)), vs), _mm512_mul_pd(_mm512_cvtepi32_pd(_mm512_extracti64x4_epi64(ci, 1)), vs)};
}

FL_AVX512 int64_t add_requant_avx512(const QJoinIn& a, const QJoinIn& b, size_t c, size_t P, double inv, double levels, uint8_t* q) {
  int64_t z = 0;
  for (size_t i = 0; i < P; i += 16) {
    const __mmask16 k = tail16(P - i);
    qrq::Y16 va = join16_avx512(a, c, i, k), vb = join16_avx512(b, c, i, k);
    __asm__("" : "+v"(va.lo), "+v"(va.hi), "+v"(vb.lo), "+v"(vb.hi));  // keep the products rounded
    const __m512i qi = qrq::codes16({_mm512_add_pd(va.lo, vb.lo), _mm512_add_pd(va.hi, vb.hi)}, inv, levels);
    z += __builtin_popcount(unsigned(_mm512_mask_cmpeq_epi32_mask(k, qi, _mm512_setzero_si512())));
    _mm_mask_storeu_epi8(q + i, k, _mm512_cvtepi32_epi8(qi));
  }
  return z;
}

#endif  // FL_X86
#undef FL_AVX2
#undef FL_AVX512

using RequantFn = int64_t (*)(const double*, size_t, double, double, uint8_t*);
using AddRequantFn = int64_t (*)(const QJoinIn&, const QJoinIn&, size_t, size_t, double, double, uint8_t*);
using MaxpoolFn = void (*)(const uint8_t*, size_t, size_t, size_t, size_t, uint8_t*);

Kernel<RequantFn> k_requant("f64_u8_requant", requant_scalar, FL_X86_ONLY(requant_avx2), FL_X86_ONLY(requant_avx512));
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

int64_t requant_u8(const double* y, size_t n, double actScale, double levels, uint8_t* q) {
  const size_t tasks = (n + kBlock - 1) / kBlock;
  std::vector<int64_t> z(tasks, 0);
  const RequantFn fn = k_requant.fn;
  const double inv = 1.0 / actScale;
  parallel_for(tasks, [&](size_t t) {
    const size_t off = t * kBlock;
    z[t] = fn(y + off, std::min(kBlock, n - off), inv, levels, q + off);
  });
  return sum_parts(z);
}

int64_t add_requant(const QJoinIn& a, const QJoinIn& b, size_t planes, size_t C, size_t P, double actScale, double levels,
                    uint8_t* q) {
  // tasks of whole planes, about kBlock elements each (shape-fixed)
  const size_t per = std::max<size_t>(1, kBlock / std::max<size_t>(P, 1)), tasks = (planes + per - 1) / per;
  std::vector<int64_t> z(tasks, 0);
  const AddRequantFn fn = k_add_requant.fn;
  const double inv = 1.0 / actScale;
  parallel_for(tasks, [&](size_t t) {
    for (size_t pl = t * per; pl < std::min(planes, (t + 1) * per); ++pl) {
      const size_t off = pl * P, c = pl % C;
      const QJoinIn ta{a.codes ? a.codes + off : nullptr, a.acc ? a.acc + off : nullptr, a.s, a.scale, a.bias};
      const QJoinIn tb{b.codes ? b.codes + off : nullptr, b.acc ? b.acc + off : nullptr, b.s, b.scale, b.bias};
      z[t] += fn(ta, tb, c, P, inv, levels, q + off);
    }
  });
  return sum_parts(z);
}

int64_t qgroups_epilogue(const int32_t* acc, size_t G, size_t B, size_t O, size_t P, const double* gscale, const double* bias,
                         const double* corr, QOutMode mode, void* out, double actScale, double levels) {
  const size_t planes = B * O, stride = planes * P;
  std::vector<int64_t> z(planes, 0);
  const double inv = 1.0 / actScale;
  parallel_for(planes, [&](size_t pl) {
    const size_t o = pl % O;
    for (size_t p = 0; p < P; ++p) {
      const size_t i = pl * P + p;
      double y = qrq::affine_spec(acc[i], gscale[o], bias[o]);
      for (size_t g = 1; g < G; ++g) {
        double t = gscale[g * O + o] * double(acc[g * stride + i]);
        __asm__("" : "+x"(t), "+x"(y));  // the product rounded on its own
        y = y + t;
      }
      if (corr) {
        __asm__("" : "+x"(y));
        y = y + corr[o * P + p];
      }
      if (mode == QOutMode::Float) {
        static_cast<float*>(out)[i] = float(y);
      } else {
        const uint8_t q = qrq::code_of(y, inv, levels);
        static_cast<uint8_t*>(out)[i] = q;
        z[pl] += q == 0;
      }
    }
  });
  return sum_parts(z);
}

int64_t qlinear_i32(const int32_t* A, size_t M, size_t K, const int8_t* W, size_t N, const double* scale, const double* bias,
                    QOutMode mode, void* out, double actScale, double levels) {
  std::vector<int64_t> z(M, 0);
  const double inv = 1.0 / actScale;
  parallel_for(M, [&](size_t m) {
    for (size_t n = 0; n < N; ++n) {
      int64_t acc = 0;
      for (size_t k = 0; k < K; ++k) acc += int64_t(A[m * K + k]) * W[n * K + k];
      double p = scale[n] * double(acc);  // double(acc): exact (|acc| < 2^53)
      __asm__("" : "+x"(p));              // no FMA contraction
      const double y = p + bias[n];
      if (mode == QOutMode::Float) {
        static_cast<float*>(out)[m * N + n] = float(y);
      } else {
        const uint8_t q = qrq::code_of(y, inv, levels);
        static_cast<uint8_t*>(out)[m * N + n] = q;
        z[m] += q == 0;
      }
    }
  });
  return sum_parts(z);
}

}  // namespace fl
