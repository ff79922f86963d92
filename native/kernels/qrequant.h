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

// 16 codes by the division (any L, any actScale).
__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl"))) inline __m512i codes16_div(__m512 y, float actScale, float levels) {
  const __m512 a = _mm512_max_ps(y, _mm512_setzero_ps());
  const __m512 q = _mm512_roundscale_ps(_mm512_div_ps(a, _mm512_set1_ps(actScale)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  return _mm512_cvtps_epi32(_mm512_min_ps(q, _mm512_set1_ps(levels)));
}

#endif  // FL_X86
}  // namespace qrq
}  // namespace fl
