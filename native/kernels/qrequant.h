// Exact, division-free requantisation of float values to activation codes (internal to the int4
// engine kernels; the contract is in flatenn/qengine.h).
//
// The spec: q(a) = min(rhe(fl(a / actScale)), L) for a = max(y, 0) (NaN -> 0). It is a
// non-decreasing step function of the float a, so q(a) = #{k in 1..L : a >= T[k]} with exact
// thresholds T[k] = the least float a >= 0 with q(a) >= k (bisection over float bit patterns with
// the scalar formula itself). A kernel takes q0 = rhe(min(a * fl(1 / actScale), L)), which is
// within 1 of q(a) because the product is within 2 ulp of the quotient (|a / actScale| matters only
// up to L + 1 <= 16), and corrects it with two lookups:
//   q = q0 + [a >= hi[q0]] - [a < lo[q0]],   lo[k] = T[k] (T[0] = 0), hi[k] = T[k + 1] (hi[L] = NaN).
// Bit-identical to the division by construction. Only for L <= 15 (one 16-entry vpermps) and
// actScale in [2^-100, 2^100] (1 / actScale normal, the product never overflows before clipping).
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

// The spec on one float (the scalar reference kernels use the same expression).
inline float code_of(float y, float actScale, float levels) {
  const float a = y > 0.0f ? y : 0.0f;
  const float q = std::nearbyint(a / actScale);
  return q < levels ? q : levels;
}

// y = fl(fl(s * float(acc)) + b), the product rounded on its own (no FMA contraction).
inline float affine_spec(int32_t acc, float s, float b) {
  float p = s * float(acc);
  __asm__("" : "+x"(p));
  return p + b;
}

// For pooling before requantising (the code is monotone in acc for a fixed channel: non-decreasing
// if scale >= 0 or NaN, non-increasing if scale < 0, so with m = -1 for scale < 0 and 0 otherwise
// the code is non-decreasing in acc ^ m, and max over a window of codes(acc) = codes(max of acc ^ m)):
// Smallest acc' in [-amax - 1, amax] whose channel code is non-zero (acc = acc' ^ m), amax + 1 if
// none (the code is non-decreasing in acc'). With a code table, code >= 1 <=> y >= lo[1], which
// gives a guess to bisect around; the full range is the fallback.
inline int32_t zero_threshold(float s, float b, int32_t m, const QOut& o, int64_t amax, const QCodeTable* t) {
  auto nonzero = [&](int64_t accp) { return code_of(affine_spec(int32_t(accp) ^ m, s, b), o.actScale, o.levels) >= 1.0f; };
  int64_t lo = -amax - 1, hi = amax + 1;  // nonzero(hi) is taken as true
  if (t && std::isfinite(s) && s != 0.0f && std::isfinite(b)) {
    const double est = (double(t->lo[1]) - double(b)) / double(s);  // acc where y crosses lo[1]
    if (std::fabs(est) < double(amax)) {
      const int64_t e = m ? -int64_t(std::floor(est)) - 1 : int64_t(std::floor(est));
      const int64_t a = std::max(lo, e - 64), z = std::min(hi, e + 64);
      if ((a == lo || !nonzero(a)) && (z == hi || nonzero(z))) { lo = a; hi = z; }
    }
  }
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (nonzero(mid)) hi = mid; else lo = mid + 1;
  }
  return int32_t(lo);
}

#if FL_X86
// 16 codes from 16 floats y with the table (AVX-512).
__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl"))) inline __m512i codes16(__m512 y, const QCodeTable& t, float levels) {
  const __m512 a = _mm512_max_ps(y, _mm512_setzero_ps());  // NaN, -0 -> +0 (second operand)
  const __m512 s = _mm512_min_ps(_mm512_mul_ps(a, _mm512_set1_ps(t.inv)), _mm512_set1_ps(levels));
  __m512i q = _mm512_cvt_roundps_epi32(s, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __mmask16 up = _mm512_cmp_ps_mask(a, _mm512_permutexvar_ps(q, _mm512_load_ps(t.hi)), _CMP_GE_OQ);
  const __mmask16 dn = _mm512_cmp_ps_mask(a, _mm512_permutexvar_ps(q, _mm512_load_ps(t.lo)), _CMP_LT_OQ);
  const __m512i one = _mm512_set1_epi32(1);
  q = _mm512_mask_add_epi32(q, up, q, one);
  return _mm512_mask_sub_epi32(q, dn, q, one);
}

// 8 codes from 8 floats y with the table (AVX2): the 16-entry lookups as two 8-entry vpermps and
// a blend on q > 7.
__attribute__((target("avx2,fma"))) inline __m256i codes8(__m256 y, const QCodeTable& t, float levels) {
  const __m256 a = _mm256_max_ps(y, _mm256_setzero_ps());  // NaN, -0 -> +0 (second operand)
  const __m256 s = _mm256_min_ps(_mm256_mul_ps(a, _mm256_set1_ps(t.inv)), _mm256_set1_ps(levels));
  const __m256i q = _mm256_cvtps_epi32(_mm256_round_ps(s, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  const __m256 upper = _mm256_castsi256_ps(_mm256_cmpgt_epi32(q, _mm256_set1_epi32(7)));
  const __m256 hi = _mm256_blendv_ps(_mm256_permutevar8x32_ps(_mm256_load_ps(t.hi), q), _mm256_permutevar8x32_ps(_mm256_load_ps(t.hi + 8), q), upper);
  const __m256 lo = _mm256_blendv_ps(_mm256_permutevar8x32_ps(_mm256_load_ps(t.lo), q), _mm256_permutevar8x32_ps(_mm256_load_ps(t.lo + 8), q), upper);
  const __m256i up = _mm256_castps_si256(_mm256_cmp_ps(a, hi, _CMP_GE_OQ));  // -1 where the code is one more
  const __m256i dn = _mm256_castps_si256(_mm256_cmp_ps(a, lo, _CMP_LT_OQ));  // -1 where it is one less
  return _mm256_add_epi32(_mm256_sub_epi32(q, up), dn);
}

// 16 codes by the division (any L, any actScale).
__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl"))) inline __m512i codes16_div(__m512 y, float actScale, float levels) {
  const __m512 a = _mm512_max_ps(y, _mm512_setzero_ps());
  const __m512 q = _mm512_roundscale_ps(_mm512_div_ps(a, _mm512_set1_ps(actScale)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  return _mm512_cvtps_epi32(_mm512_min_ps(q, _mm512_set1_ps(levels)));
}

#endif  // FL_X86
}  // namespace qrq
}  // namespace fl
