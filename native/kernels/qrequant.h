// The int4 engine's epilogue spec and its SIMD forms (internal to the kernels; the contract is in
// flatenn/qengine.h). Everything after the exact int32 accumulator is computed in float64:
//   y = fl(fl(scale * double(acc)) + bias)        two roundings, never fused into an FMA
//   y = fl(y + corr)                               where a per-position term is given
//   Float: float(y)                                (one rounding to float32, nearest even)
//   Codes: q = min(rhe(max(fl(y * inv), 0)), L)    inv = fl(1 / actScale); NaN -> 0
// Every constant is float64 and every step one IEEE operation, so the scalar reference, each SIMD
// variant and the JavaScript reference engine give the same bits. In float64 the codes agree with
// exact arithmetic except where a value lies within ~1e-15 (relative) of a rounding boundary,
// which is what makes the engine agree with a float64 evaluation of the same model (DESIGN §1).
#pragma once
#include "flatenn/core.h"  // FL_X86
#if FL_X86
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "flatenn/qengine.h"

namespace fl {
namespace qrq {

// y = fl(fl(s * double(acc)) + b), the product rounded on its own (no FMA contraction).
inline double affine_spec(int32_t acc, double s, double b) {
  double p = s * double(acc);
  __asm__("" : "+x"(p));
  return p + b;
}

// The code of y: min(rhe(max(fl(y * inv), 0)), levels) (NaN -> 0).
inline uint8_t code_of(double y, double inv, double levels) {
  const double t = y * inv;
  const double a = t > 0.0 ? t : 0.0;
  const double q = std::nearbyint(a);
  return uint8_t(q < levels ? q : levels);
}

inline double inv_of(const QOut& o) { return 1.0 / o.actScale; }

// For pooling before requantising (the code is monotone in acc for a fixed channel: non-decreasing
// if scale >= 0 or NaN, non-increasing if scale < 0, so with m = -1 for scale < 0 and 0 otherwise
// the code is non-decreasing in acc ^ m, and max over a window of codes(acc) = codes(max of acc ^ m)):
// Smallest acc' in [-amax - 1, amax] whose channel code is non-zero (acc = acc' ^ m), amax + 1 if
// none (the code is non-decreasing in acc'), by bisection with the spec itself.
inline int32_t zero_threshold(double s, double b, int32_t m, const QOut& o, int64_t amax) {
  const double inv = inv_of(o);
  auto nonzero = [&](int64_t accp) { return code_of(affine_spec(int32_t(accp) ^ m, s, b), inv, o.levels) >= 1; };
  int64_t lo = -amax - 1, hi = amax + 1;  // nonzero(hi) is taken as true
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (nonzero(mid)) hi = mid; else lo = mid + 1;
  }
  return int32_t(lo);
}

#if FL_X86
#define FL_QRQ_512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl")))
#define FL_QRQ_256 __attribute__((target("avx2,fma")))

// 16 lanes of y as two float64 vectors (lanes 0-7, 8-15).
struct Y16 { __m512d lo, hi; };

FL_QRQ_512 inline Y16 affine16(__m512i acc, double s, double b) {
  const __m512d vs = _mm512_set1_pd(s), vb = _mm512_set1_pd(b);
  __m512d lo = _mm512_mul_pd(vs, _mm512_cvtepi32_pd(_mm512_castsi512_si256(acc)));
  __m512d hi = _mm512_mul_pd(vs, _mm512_cvtepi32_pd(_mm512_extracti64x4_epi64(acc, 1)));
  __asm__("" : "+v"(lo), "+v"(hi));  // no FMA contraction
  return {_mm512_add_pd(lo, vb), _mm512_add_pd(hi, vb)};
}
// y + a per-lane term given as 16 floats64 at t (t[0..7], t[8..15]).
FL_QRQ_512 inline Y16 add16(Y16 y, const double* t) {
  __asm__("" : "+v"(y.lo), "+v"(y.hi));
  return {_mm512_add_pd(y.lo, _mm512_loadu_pd(t)), _mm512_add_pd(y.hi, _mm512_loadu_pd(t + 8))};
}
FL_QRQ_512 inline Y16 add16(Y16 y, double c) {
  __asm__("" : "+v"(y.lo), "+v"(y.hi));
  const __m512d vc = _mm512_set1_pd(c);
  return {_mm512_add_pd(y.lo, vc), _mm512_add_pd(y.hi, vc)};
}
// rhe(min(fl(y * inv), L)) as int32: NaN and values below -2^31 convert to INT_MIN, negative values
// to <= 0, so a final integer max with 0 gives min(rhe(max(fl(y * inv), 0)), L) exactly.
FL_QRQ_512 inline __m256i codes8pd(__m512d y, __m512d inv, __m512d L) {
  const __m512d t = _mm512_min_pd(L, _mm512_mul_pd(y, inv));  // (L < t ? L : t): NaN stays NaN
  return _mm512_cvt_roundpd_epi32(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
// The 16 codes (int32 lanes).
FL_QRQ_512 inline __m512i codes16(Y16 y, double inv, double levels) {
  const __m512d vi = _mm512_set1_pd(inv), vl = _mm512_set1_pd(levels);
  const __m512i q = _mm512_inserti64x4(_mm512_castsi256_si512(codes8pd(y.lo, vi, vl)), codes8pd(y.hi, vi, vl), 1);
  return _mm512_max_epi32(q, _mm512_setzero_si512());
}
// Lanes whose code is 0: !(fl(y * inv) > 0.5) (ties to even: 0.5 -> 0; NaN -> 0).
FL_QRQ_512 inline __mmask16 zero16(Y16 y, double inv) {
  const __m512d vi = _mm512_set1_pd(inv), h = _mm512_set1_pd(0.5);
  const __mmask8 lo = _mm512_cmp_pd_mask(_mm512_mul_pd(y.lo, vi), h, _CMP_NGT_UQ), hi = _mm512_cmp_pd_mask(_mm512_mul_pd(y.hi, vi), h, _CMP_NGT_UQ);
  return __mmask16(unsigned(lo) | unsigned(hi) << 8);
}
FL_QRQ_512 inline __m512 float16(Y16 y) {
  return _mm512_insertf32x8(_mm512_castps256_ps512(_mm512_cvtpd_ps(y.lo)), _mm512_cvtpd_ps(y.hi), 1);
}
FL_QRQ_512 inline Y16 max16(Y16 a, Y16 b) { return {_mm512_max_pd(a.lo, b.lo), _mm512_max_pd(a.hi, b.hi)}; }

// 8 lanes (AVX2).
struct Y8 { __m256d lo, hi; };
FL_QRQ_256 inline Y8 affine8(__m256i acc, double s, double b) {
  const __m256d vs = _mm256_set1_pd(s), vb = _mm256_set1_pd(b);
  __m256d lo = _mm256_mul_pd(vs, _mm256_cvtepi32_pd(_mm256_castsi256_si128(acc)));
  __m256d hi = _mm256_mul_pd(vs, _mm256_cvtepi32_pd(_mm256_extracti128_si256(acc, 1)));
  __asm__("" : "+x"(lo), "+x"(hi));  // no FMA contraction
  return {_mm256_add_pd(lo, vb), _mm256_add_pd(hi, vb)};
}
FL_QRQ_256 inline Y8 add8(Y8 y, const double* t) {
  __asm__("" : "+x"(y.lo), "+x"(y.hi));
  return {_mm256_add_pd(y.lo, _mm256_loadu_pd(t)), _mm256_add_pd(y.hi, _mm256_loadu_pd(t + 4))};
}
FL_QRQ_256 inline __m128i codes4pd(__m256d y, __m256d inv, __m256d L) {
  __m256d t = _mm256_min_pd(_mm256_max_pd(_mm256_mul_pd(y, inv), _mm256_setzero_pd()), L);  // NaN -> 0
  t = _mm256_round_pd(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  return _mm256_cvtpd_epi32(t);  // exact (integral values)
}
FL_QRQ_256 inline __m256i codes8(Y8 y, double inv, double levels) {
  const __m256d vi = _mm256_set1_pd(inv), vl = _mm256_set1_pd(levels);
  return _mm256_set_m128i(codes4pd(y.hi, vi, vl), codes4pd(y.lo, vi, vl));
}
FL_QRQ_256 inline __m256 float8(Y8 y) { return _mm256_set_m128(_mm256_cvtpd_ps(y.hi), _mm256_cvtpd_ps(y.lo)); }

#undef FL_QRQ_512
#undef FL_QRQ_256
#endif  // FL_X86
}  // namespace qrq
}  // namespace fl
