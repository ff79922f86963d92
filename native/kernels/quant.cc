// Quantisation kernels: weight fake-quant, activation ReLU + fake-quant with the
// straight-through mask, masked gradient, zero count, int pack/unpack, fault-mask
// application. Contracts in flatenn/quant.h; the scalar functions are the spec,
// the AVX2 / AVX-512 variants perform the same IEEE operations in the same order
// (division, round-to-nearest-even, min/max, multiplication), so they are bit-identical.
#include "flatenn/core.h"  // FL_X86
#if FL_X86
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "flatenn/core.h"
#include "flatenn/quant.h"

namespace fl {
namespace {

#define FL_AVX2 __attribute__((target("avx2,fma")))
#define FL_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")))

inline uint32_t f2u(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }
inline float u2f(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }

// ============================== scalar (the spec) ============================

// max over i of |w[i]| as a bit pattern (see AbsMaxBitsFn).
uint32_t absmax_bits_scalar(const float* w, size_t n) {
  uint32_t m = 0;
  for (size_t i = 0; i < n; ++i) m = std::max(m, f2u(w[i]) & 0x7fffffffu);
  return m;
}

// One element of symmetric fake-quant. The clamp is written as max-then-min in
// the operand order of SSE maxps/minps (a > b ? a : b, a < b ? a : b).
inline float quant_sym_one(float w, float s, float lo, float hi) {
  float q = std::nearbyint(w / s);  // float32 division, then round half to even
  q = q > lo ? q : lo;
  q = q < hi ? q : hi;
  return q;
}

void quant_sym_scalar(const float* w, float* out, int8_t* codes, size_t n, float s, float lo, float hi) {
  for (size_t i = 0; i < n; ++i) {
    const float q = quant_sym_one(w[i], s, lo, hi);
    if (codes) codes[i] = static_cast<int8_t>(q);
    out[i] = s * q;  // dequantised value
  }
}

// One element of ReLU (+ fake-quant) with its straight-through mask.
inline void relu_fq_one(float x, float* y, uint8_t* mask, uint8_t* codes, size_t i, float s, float hi, float r, bool quant) {
  const float a = x > 0.0f ? x : 0.0f;  // ReLU; NaN and -0 become +0
  if (quant) {
    float q = std::nearbyint(a / s);  // a >= 0, so only the upper clip applies
    q = q < hi ? q : hi;
    y[i] = s * q;
    if (codes) codes[i] = static_cast<uint8_t>(q);
    if (mask) mask[i] = (x > 0.0f && x <= r) ? 1 : 0;  // gradient passes for 0 < x <= r
  } else {
    y[i] = a;
    if (mask) mask[i] = x > 0.0f ? 1 : 0;
  }
}

int32_t relu_fq_scalar(const float* x, float* y, uint8_t* mask, uint8_t* codes, size_t n, float s, float hi, float r,
                       bool quant) {
  int32_t kmax = INT32_MIN;
  for (size_t i = 0; i < n; ++i) {
    const float xi = x[i];  // read before y[i] is written (y may alias x)
    kmax = std::max(kmax, float_order_key(f2u(xi)));
    relu_fq_one(xi, y, mask, codes, i, s, hi, r, quant);
  }
  return kmax;
}

void masked_grad_scalar(const float* dy, const uint8_t* mask, float* dx, size_t n) {
  for (size_t i = 0; i < n; ++i) dx[i] = mask[i] ? dy[i] : 0.0f;
}

size_t count_zeros_scalar(const float* x, size_t n) {
  size_t c = 0;
  for (size_t i = 0; i < n; ++i) c += x[i] == 0.0f;
  return c;
}

size_t code_range_scalar(const int8_t* codes, size_t n, int lo, int hi) {
  for (size_t i = 0; i < n; ++i)
    if (codes[i] < lo || codes[i] > hi) return i;
  return n;
}

// Element i occupies bits [i*bits, (i+1)*bits) of the stream, lowest bits first.
void pack_int_scalar(const int8_t* codes, size_t n, int bits, uint8_t* out) {
  const size_t nb = packed_bytes(n, bits);
  if (nb) std::memset(out, 0, nb);
  const unsigned m = (1u << bits) - 1u;
  for (size_t i = 0; i < n; ++i) {
    const size_t bit = i * size_t(bits);
    out[bit >> 3] = uint8_t(out[bit >> 3] | ((unsigned(uint8_t(codes[i])) & m) << (bit & 7)));
  }
}

void unpack_int_scalar(const uint8_t* packed, size_t n, int bits, int8_t* out) {
  const unsigned m = (1u << bits) - 1u, sign = 1u << (bits - 1);
  for (size_t i = 0; i < n; ++i) {
    const size_t bit = i * size_t(bits);
    const unsigned v = (unsigned(packed[bit >> 3]) >> (bit & 7)) & m;
    out[i] = static_cast<int8_t>(int(v ^ sign) - int(sign));  // sign extension
  }
}

void fault_mask_scalar(const uint8_t* src, const uint8_t* flip, const uint8_t* sa0, const uint8_t* sa1, uint8_t* dst,
                       size_t n) {
  for (size_t i = 0; i < n; ++i) {
    unsigned b = src[i];
    if (flip) b ^= flip[i];
    if (sa0) b &= ~unsigned(sa0[i]);
    if (sa1) b |= sa1[i];
    dst[i] = uint8_t(b);
  }
}

#if FL_X86
// ================================== AVX2 =====================================

FL_AVX2 uint32_t absmax_bits_avx2(const float* w, size_t n) {
  const __m256i absm = _mm256_set1_epi32(0x7fffffff);
  __m256i m0 = _mm256_setzero_si256(), m1 = m0;
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    m0 = _mm256_max_epu32(m0, _mm256_and_si256(_mm256_loadu_si256((const __m256i*)(w + i)), absm));
    m1 = _mm256_max_epu32(m1, _mm256_and_si256(_mm256_loadu_si256((const __m256i*)(w + i + 8)), absm));
  }
  m0 = _mm256_max_epu32(m0, m1);
  alignas(32) uint32_t lanes[8];
  _mm256_store_si256((__m256i*)lanes, m0);
  uint32_t m = 0;
  for (uint32_t v : lanes) m = std::max(m, v);
  return std::max(m, absmax_bits_scalar(w + i, n - i));
}

FL_AVX2 void quant_sym_avx2(const float* w, float* out, int8_t* codes, size_t n, float s, float lo, float hi) {
  const __m256 vs = _mm256_set1_ps(s), vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 q = _mm256_round_ps(_mm256_div_ps(_mm256_loadu_ps(w + i), vs), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    q = _mm256_min_ps(_mm256_max_ps(q, vlo), vhi);
    if (codes) {
      const __m256i qi = _mm256_cvtps_epi32(q);  // exact: q is an integer in [-128, 127]
      const __m128i p16 = _mm_packs_epi32(_mm256_castsi256_si128(qi), _mm256_extracti128_si256(qi, 1));
      _mm_storel_epi64((__m128i*)(codes + i), _mm_packs_epi16(p16, p16));
    }
    _mm256_storeu_ps(out + i, _mm256_mul_ps(vs, q));
  }
  quant_sym_scalar(w + i, out + i, codes ? codes + i : nullptr, n - i, s, lo, hi);
}

// order key of 8 floats (see float_order_key)
FL_AVX2 inline __m256i order_key8(__m256 x) {
  const __m256i xi = _mm256_castps_si256(x);
  __m256i k = _mm256_xor_si256(xi, _mm256_and_si256(_mm256_srai_epi32(xi, 31), _mm256_set1_epi32(0x7fffffff)));
  const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(x, x, _CMP_UNORD_Q));
  return _mm256_blendv_epi8(k, _mm256_set1_epi32(INT32_MAX), nan);
}

// 8 comparison results (all-ones / zero lanes) -> 8 bytes of 1 / 0
FL_AVX2 inline uint64_t mask8_bytes(__m256 c) {
  const __m256i one = _mm256_srli_epi32(_mm256_castps_si256(c), 31);
  const __m128i p16 = _mm_packs_epi32(_mm256_castsi256_si128(one), _mm256_extracti128_si256(one, 1));
  return uint64_t(_mm_cvtsi128_si64(_mm_packus_epi16(p16, p16)));
}

FL_AVX2 int32_t relu_fq_avx2(const float* x, float* y, uint8_t* mask, uint8_t* codes, size_t n, float s, float hi, float r,
                             bool quant) {
  const __m256 vs = _mm256_set1_ps(s), vhi = _mm256_set1_ps(hi), vr = _mm256_set1_ps(r), zero = _mm256_setzero_ps();
  __m256i kmax = _mm256_set1_epi32(INT32_MIN);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 xv = _mm256_loadu_ps(x + i);
    kmax = _mm256_max_epi32(kmax, order_key8(xv));
    const __m256 a = _mm256_max_ps(xv, zero);  // x > 0 ? x : +0 (NaN -> 0)
    const __m256 pos = _mm256_cmp_ps(xv, zero, _CMP_GT_OQ);
    if (quant) {
      __m256 q = _mm256_round_ps(_mm256_div_ps(a, vs), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      q = _mm256_min_ps(q, vhi);
      _mm256_storeu_ps(y + i, _mm256_mul_ps(vs, q));
      if (codes) {  // q in [0, 255]: exact through the int32 and the two saturating packs
        const __m256i qi = _mm256_cvtps_epi32(q);
        const __m128i p16 = _mm_packs_epi32(_mm256_castsi256_si128(qi), _mm256_extracti128_si256(qi, 1));
        _mm_storel_epi64(reinterpret_cast<__m128i*>(codes + i), _mm_packus_epi16(p16, p16));
      }
      if (mask) {
        const uint64_t b = mask8_bytes(_mm256_and_ps(pos, _mm256_cmp_ps(xv, vr, _CMP_LE_OQ)));
        std::memcpy(mask + i, &b, 8);
      }
    } else {
      _mm256_storeu_ps(y + i, a);
      if (mask) {
        const uint64_t b = mask8_bytes(pos);
        std::memcpy(mask + i, &b, 8);
      }
    }
  }
  alignas(32) int32_t lanes[8];
  _mm256_store_si256((__m256i*)lanes, kmax);
  int32_t k = relu_fq_scalar(x + i, y + i, mask ? mask + i : nullptr, codes ? codes + i : nullptr, n - i, s, hi, r, quant);
  for (int32_t v : lanes) k = std::max(k, v);
  return k;
}

FL_AVX2 void masked_grad_avx2(const float* dy, const uint8_t* mask, float* dx, size_t n) {
  const __m256i zero = _mm256_setzero_si256();
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i m = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i*)(mask + i)));
    const __m256 off = _mm256_castsi256_ps(_mm256_cmpeq_epi32(m, zero));
    _mm256_storeu_ps(dx + i, _mm256_andnot_ps(off, _mm256_loadu_ps(dy + i)));
  }
  masked_grad_scalar(dy + i, mask + i, dx + i, n - i);
}

FL_AVX2 size_t count_zeros_avx2(const float* x, size_t n) {
  const __m256 zero = _mm256_setzero_ps();
  size_t c = 0, i = 0;
  for (; i + 8 <= n; i += 8)
    c += size_t(__builtin_popcount(unsigned(_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(x + i), zero, _CMP_EQ_OQ)))));
  return c + count_zeros_scalar(x + i, n - i);
}

FL_AVX2 size_t code_range_avx2(const int8_t* codes, size_t n, int lo, int hi) {
  const __m256i vlo = _mm256_set1_epi8(int8_t(lo)), vhi = _mm256_set1_epi8(int8_t(hi));
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256i v = _mm256_loadu_si256((const __m256i*)(codes + i));
    const __m256i bad = _mm256_or_si256(_mm256_cmpgt_epi8(v, vhi), _mm256_cmpgt_epi8(vlo, v));
    const unsigned m = unsigned(_mm256_movemask_epi8(bad));
    if (m) return i + size_t(__builtin_ctz(m));
  }
  return i + code_range_scalar(codes + i, n - i, lo, hi);
}

// 4-bit: 64 codes -> 32 bytes per step; other widths use the scalar loop.
FL_AVX2 void pack_int_avx2(const int8_t* codes, size_t n, int bits, uint8_t* out) {
  if (bits == 8) { if (n) std::memcpy(out, codes, n); return; }
  if (bits != 4) { pack_int_scalar(codes, n, bits, out); return; }
  const __m256i lo4 = _mm256_set1_epi16(0x000F), hi4 = _mm256_set1_epi16(0x00F0);
  size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    // 16-bit lane = c[2j] | c[2j+1] << 8  ->  (c[2j] & 0xF) | (c[2j+1] & 0xF) << 4
    const __m256i a = _mm256_loadu_si256((const __m256i*)(codes + i));
    const __m256i b = _mm256_loadu_si256((const __m256i*)(codes + i + 32));
    const __m256i pa = _mm256_or_si256(_mm256_and_si256(a, lo4), _mm256_and_si256(_mm256_srli_epi16(a, 4), hi4));
    const __m256i pb = _mm256_or_si256(_mm256_and_si256(b, lo4), _mm256_and_si256(_mm256_srli_epi16(b, 4), hi4));
    const __m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi16(pa, pb), 0xD8);
    _mm256_storeu_si256((__m256i*)(out + i / 2), p);
  }
  pack_int_scalar(codes + i, n - i, bits, out + i / 2);
}

FL_AVX2 void unpack_int_avx2(const uint8_t* packed, size_t n, int bits, int8_t* out) {
  if (bits == 8) { if (n) std::memcpy(out, packed, n); return; }
  if (bits != 4) { unpack_int_scalar(packed, n, bits, out); return; }
  const __m128i m4 = _mm_set1_epi8(0x0F), eight = _mm_set1_epi8(8);
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m128i b = _mm_loadu_si128((const __m128i*)(packed + i / 2));
    const __m128i lo = _mm_and_si128(b, m4), hi = _mm_and_si128(_mm_srli_epi16(b, 4), m4);
    // interleave: element 2j = low nibble of byte j, 2j+1 = high nibble; then (v ^ 8) - 8 sign-extends
    const __m128i e0 = _mm_sub_epi8(_mm_xor_si128(_mm_unpacklo_epi8(lo, hi), eight), eight);
    const __m128i e1 = _mm_sub_epi8(_mm_xor_si128(_mm_unpackhi_epi8(lo, hi), eight), eight);
    _mm_storeu_si128((__m128i*)(out + i), e0);
    _mm_storeu_si128((__m128i*)(out + i + 16), e1);
  }
  unpack_int_scalar(packed + i / 2, n - i, bits, out + i);
}

FL_AVX2 void fault_mask_avx2(const uint8_t* src, const uint8_t* flip, const uint8_t* sa0, const uint8_t* sa1,
                             uint8_t* dst, size_t n) {
  const __m256i zero = _mm256_setzero_si256();
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256i f = flip ? _mm256_loadu_si256((const __m256i*)(flip + i)) : zero;
    const __m256i a = sa0 ? _mm256_loadu_si256((const __m256i*)(sa0 + i)) : zero;
    const __m256i b = sa1 ? _mm256_loadu_si256((const __m256i*)(sa1 + i)) : zero;
    const __m256i x = _mm256_xor_si256(_mm256_loadu_si256((const __m256i*)(src + i)), f);
    _mm256_storeu_si256((__m256i*)(dst + i), _mm256_or_si256(_mm256_andnot_si256(a, x), b));
  }
  fault_mask_scalar(src + i, flip ? flip + i : nullptr, sa0 ? sa0 + i : nullptr, sa1 ? sa1 + i : nullptr, dst + i, n - i);
}

// ================================= AVX-512 ===================================
// Tails use masked loads/stores, so every element goes through the same instructions.

inline __mmask16 tail16(size_t left) { return left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1u); }

// Horizontal reductions through memory (GCC 12's _mm512_reduce_* trip -Wuninitialized).
FL_AVX512 inline uint32_t hmax_epu32(__m512i v) {
  alignas(64) uint32_t l[16];
  _mm512_store_si512(l, v);
  uint32_t m = 0;
  for (uint32_t x : l) m = std::max(m, x);
  return m;
}
FL_AVX512 inline int32_t hmax_epi32(__m512i v) {
  alignas(64) int32_t l[16];
  _mm512_store_si512(l, v);
  int32_t m = INT32_MIN;
  for (int32_t x : l) m = std::max(m, x);
  return m;
}

FL_AVX512 uint32_t absmax_bits_avx512(const float* w, size_t n) {
  const __m512i absm = _mm512_set1_epi32(0x7fffffff);
  __m512i m = _mm512_setzero_si512();
  for (size_t i = 0; i < n; i += 16) {
    const __m512i v = _mm512_maskz_loadu_epi32(tail16(n - i), w + i);
    m = _mm512_max_epu32(m, _mm512_and_si512(v, absm));
  }
  return hmax_epu32(m);
}

FL_AVX512 void quant_sym_avx512(const float* w, float* out, int8_t* codes, size_t n, float s, float lo, float hi) {
  const __m512 vs = _mm512_set1_ps(s), vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);
  for (size_t i = 0; i < n; i += 16) {
    const __mmask16 k = tail16(n - i);
    __m512 q = _mm512_roundscale_ps(_mm512_div_ps(_mm512_maskz_loadu_ps(k, w + i), vs),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    q = _mm512_min_ps(_mm512_max_ps(q, vlo), vhi);
    if (codes) _mm512_mask_cvtepi32_storeu_epi8(codes + i, k, _mm512_cvtps_epi32(q));
    _mm512_mask_storeu_ps(out + i, k, _mm512_mul_ps(vs, q));
  }
}

FL_AVX512 int32_t relu_fq_avx512(const float* x, float* y, uint8_t* mask, uint8_t* codes, size_t n, float s, float hi,
                                 float r, bool quant) {
  const __m512 vs = _mm512_set1_ps(s), vhi = _mm512_set1_ps(hi), vr = _mm512_set1_ps(r), zero = _mm512_setzero_ps();
  const __m512i kmaxv = _mm512_set1_epi32(INT32_MAX), sgn = _mm512_set1_epi32(0x7fffffff);
  const __m128i one = _mm_set1_epi8(1);
  __m512i kmax = _mm512_set1_epi32(INT32_MIN);
  for (size_t i = 0; i < n; i += 16) {
    const __mmask16 k = tail16(n - i);
    const __m512 xv = _mm512_maskz_loadu_ps(k, x + i);
    const __m512i xi = _mm512_castps_si512(xv);
    __m512i key = _mm512_xor_si512(xi, _mm512_and_si512(_mm512_srai_epi32(xi, 31), sgn));
    key = _mm512_mask_mov_epi32(key, _mm512_cmp_ps_mask(xv, xv, _CMP_UNORD_Q), kmaxv);
    kmax = _mm512_mask_max_epi32(kmax, k, kmax, key);
    const __m512 a = _mm512_max_ps(xv, zero);
    const __mmask16 pos = _mm512_cmp_ps_mask(xv, zero, _CMP_GT_OQ);
    if (quant) {
      __m512 q = _mm512_roundscale_ps(_mm512_div_ps(a, vs), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      q = _mm512_min_ps(q, vhi);
      _mm512_mask_storeu_ps(y + i, k, _mm512_mul_ps(vs, q));
      if (codes) _mm512_mask_cvtepi32_storeu_epi8(codes + i, k, _mm512_cvtps_epi32(q));
      if (mask) _mm_mask_storeu_epi8(mask + i, k, _mm_maskz_mov_epi8(pos & _mm512_cmp_ps_mask(xv, vr, _CMP_LE_OQ), one));
    } else {
      _mm512_mask_storeu_ps(y + i, k, a);
      if (mask) _mm_mask_storeu_epi8(mask + i, k, _mm_maskz_mov_epi8(pos, one));
    }
  }
  return hmax_epi32(kmax);
}

FL_AVX512 void masked_grad_avx512(const float* dy, const uint8_t* mask, float* dx, size_t n) {
  for (size_t i = 0; i < n; i += 16) {
    const __mmask16 k = tail16(n - i);
    const __m128i m = _mm_maskz_loadu_epi8(k, mask + i);
    const __mmask16 on = _mm_test_epi8_mask(m, m);
    _mm512_mask_storeu_ps(dx + i, k, _mm512_maskz_mov_ps(on, _mm512_maskz_loadu_ps(k, dy + i)));
  }
}

FL_AVX512 size_t count_zeros_avx512(const float* x, size_t n) {
  const __m512 zero = _mm512_setzero_ps();
  size_t c = 0;
  for (size_t i = 0; i < n; i += 16) {
    const __mmask16 k = tail16(n - i);
    c += size_t(__builtin_popcount(unsigned(_mm512_mask_cmp_ps_mask(k, _mm512_maskz_loadu_ps(k, x + i), zero, _CMP_EQ_OQ))));
  }
  return c;
}

FL_AVX512 void fault_mask_avx512(const uint8_t* src, const uint8_t* flip, const uint8_t* sa0, const uint8_t* sa1,
                                 uint8_t* dst, size_t n) {
  for (size_t i = 0; i < n; i += 64) {
    const __mmask64 k = n - i >= 64 ? ~__mmask64(0) : ((__mmask64(1) << (n - i)) - 1);
    const __m512i x = _mm512_maskz_loadu_epi8(k, src + i);
    const __m512i f = flip ? _mm512_maskz_loadu_epi8(k, flip + i) : _mm512_setzero_si512();
    const __m512i a = sa0 ? _mm512_maskz_loadu_epi8(k, sa0 + i) : _mm512_setzero_si512();
    const __m512i b = sa1 ? _mm512_maskz_loadu_epi8(k, sa1 + i) : _mm512_setzero_si512();
    // ternary logic 0xBA: (A & ~B) | C with A = src ^ flip, B = sa0, C = sa1
    _mm512_mask_storeu_epi8(dst + i, k, _mm512_ternarylogic_epi64(_mm512_xor_si512(x, f), a, b, 0xBA));
  }
}

#endif  // FL_X86
#undef FL_AVX2
#undef FL_AVX512

constexpr size_t kBlock = size_t(1) << 16;  // elements per parallel task (shape-fixed)

}  // namespace

namespace kern {
Kernel<AbsMaxBitsFn> f32_absmax_bits("f32_absmax_bits", absmax_bits_scalar, FL_X86_ONLY(absmax_bits_avx2), FL_X86_ONLY(absmax_bits_avx512));
Kernel<QuantSymFn> f32_quant_sym("f32_quant_sym", quant_sym_scalar, FL_X86_ONLY(quant_sym_avx2), FL_X86_ONLY(quant_sym_avx512));
Kernel<ReluFqFn> f32_relu_fakequant("f32_relu_fakequant", relu_fq_scalar, FL_X86_ONLY(relu_fq_avx2), FL_X86_ONLY(relu_fq_avx512));
Kernel<MaskedGradFn> f32_masked_grad("f32_masked_grad", masked_grad_scalar, FL_X86_ONLY(masked_grad_avx2), FL_X86_ONLY(masked_grad_avx512));
Kernel<CountZerosFn> f32_count_zeros("f32_count_zeros", count_zeros_scalar, FL_X86_ONLY(count_zeros_avx2), FL_X86_ONLY(count_zeros_avx512));
Kernel<CodeRangeFn> s8_code_range("s8_code_range", code_range_scalar, FL_X86_ONLY(code_range_avx2), nullptr);
Kernel<PackIntFn> s8_pack_int("s8_pack_int", pack_int_scalar, FL_X86_ONLY(pack_int_avx2), nullptr);
Kernel<UnpackIntFn> u8_unpack_int("u8_unpack_int", unpack_int_scalar, FL_X86_ONLY(unpack_int_avx2), nullptr);
Kernel<FaultMaskFn> u8_fault_mask_apply("u8_fault_mask_apply", fault_mask_scalar, FL_X86_ONLY(fault_mask_avx2), FL_X86_ONLY(fault_mask_avx512));
}  // namespace kern

float order_key_to_float(int32_t key) {
  const uint32_t bits = key < 0 ? uint32_t(key ^ 0x7fffffff) : uint32_t(key);
  return u2f(bits);
}

bool fake_quant_weight(const float* w, float* out, int8_t* codes, float* scales, size_t n, int bits, size_t channels) {
  const size_t per = n / channels;
  const float qmax = float((1 << (bits - 1)) - 1);
  const size_t nb = (per + kBlock - 1) / kBlock;  // blocks per channel
  const size_t tasks = channels * nb;
  // Pass 1: max|w| per channel (integer max of bit patterns: order-independent).
  std::vector<uint32_t> part(tasks, 0);
  const AbsMaxBitsFn absmax = kern::f32_absmax_bits.fn;
  parallel_for(tasks, [&](size_t t) {
    const size_t c = t / nb, b = t % nb, off = c * per + b * kBlock;
    part[t] = absmax(w + off, std::min(kBlock, per - b * kBlock));
  });
  std::vector<float> s(channels);
  for (size_t c = 0; c < channels; ++c) {
    uint32_t m = 0;
    for (size_t b = 0; b < nb; ++b) m = std::max(m, part[c * nb + b]);
    if (m >= 0x7f800000u) return false;  // Inf or NaN weight
    s[c] = u2f(m) / qmax;
    if (s[c] == 0.0f) s[c] = 1.0f;  // all zero (or so small that the division underflows)
  }
  // Pass 2: quantise-dequantise.
  const QuantSymFn quant = kern::f32_quant_sym.fn;
  parallel_for(tasks, [&](size_t t) {
    const size_t c = t / nb, b = t % nb, off = c * per + b * kBlock;
    quant(w + off, out + off, codes ? codes + off : nullptr, std::min(kBlock, per - b * kBlock), s[c], -qmax - 1.0f, qmax);
  });
  for (size_t c = 0; c < channels; ++c) scales[c] = s[c];
  return true;
}

float relu_fake_quant(const float* x, float* y, uint8_t* mask, uint8_t* codes, size_t n, int bits, float r) {
  const bool quant = bits > 0;
  const float levels = quant ? float((1u << bits) - 1u) : 1.0f;
  const float s = quant ? r / levels : 1.0f;
  const size_t tasks = (n + kBlock - 1) / kBlock;
  std::vector<int32_t> part(tasks, INT32_MIN);
  const ReluFqFn fn = kern::f32_relu_fakequant.fn;
  parallel_for(tasks, [&](size_t t) {
    const size_t off = t * kBlock;
    part[t] = fn(x + off, y + off, mask ? mask + off : nullptr, quant && codes ? codes + off : nullptr, std::min(kBlock, n - off), s,
                 levels, r, quant);
  });
  int32_t k = INT32_MIN;
  for (int32_t v : part) k = std::max(k, v);
  return n == 0 ? -INFINITY : order_key_to_float(k);
}

void masked_grad(const float* dy, const uint8_t* mask, float* dx, size_t n) {
  const MaskedGradFn fn = kern::f32_masked_grad.fn;
  parallel_for((n + kBlock - 1) / kBlock, [&](size_t t) {
    const size_t off = t * kBlock;
    fn(dy + off, mask + off, dx + off, std::min(kBlock, n - off));
  });
}

size_t count_zeros(const float* x, size_t n) {
  const size_t tasks = (n + kBlock - 1) / kBlock;
  std::vector<size_t> part(tasks, 0);
  const CountZerosFn fn = kern::f32_count_zeros.fn;
  parallel_for(tasks, [&](size_t t) { part[t] = fn(x + t * kBlock, std::min(kBlock, n - t * kBlock)); });
  size_t c = 0;
  for (size_t v : part) c += v;
  return c;
}

size_t pack_int(const int8_t* codes, size_t n, int bits, uint8_t* out) {
  const int lo = -(1 << (bits - 1)), hi = (1 << (bits - 1)) - 1;
  const size_t bad = kern::s8_code_range.fn(codes, n, lo, hi);
  if (bad != n) return bad;
  // kBlock codes start on a byte boundary for every width (kBlock * bits % 8 == 0)
  const PackIntFn fn = kern::s8_pack_int.fn;
  parallel_for((n + kBlock - 1) / kBlock, [&](size_t t) {
    const size_t off = t * kBlock;
    fn(codes + off, std::min(kBlock, n - off), bits, out + off * size_t(bits) / 8);
  });
  return n;
}

void unpack_int(const uint8_t* packed, int bits, size_t n, int8_t* out) {
  const UnpackIntFn fn = kern::u8_unpack_int.fn;
  parallel_for((n + kBlock - 1) / kBlock, [&](size_t t) {
    const size_t off = t * kBlock;
    fn(packed + off * size_t(bits) / 8, std::min(kBlock, n - off), bits, out + off);
  });
}

void fault_mask_apply(const uint8_t* src, const uint8_t* flip, const uint8_t* sa0, const uint8_t* sa1, uint8_t* dst,
                      size_t n) {
  constexpr size_t kBytes = size_t(1) << 18;
  const FaultMaskFn fn = kern::u8_fault_mask_apply.fn;
  parallel_for((n + kBytes - 1) / kBytes, [&](size_t t) {
    const size_t off = t * kBytes;
    fn(src + off, flip ? flip + off : nullptr, sa0 ? sa0 + off : nullptr, sa1 ? sa1 + off : nullptr, dst + off,
       std::min(kBytes, n - off));
  });
}

}  // namespace fl
