// Portable stand-ins for the few SSE2 intrinsics that flatenn's baseline
// (every-ISA) code uses, for builds on non-x86 CPUs (arm64). Same results byte
// for byte; plain loops that the compiler vectorises for the target.
#pragma once
#include "flatenn/core.h"
#if !FL_X86
#include <cstdint>
#include <cstring>

struct alignas(16) __m128i { uint8_t b[16]; };

namespace fl_sse2 {
// Interleave the low (hi = false) or high halves of a and b in elements of E bytes.
template <int E>
inline __m128i unpack(const __m128i& a, const __m128i& b, bool hi) {
  __m128i r;
  const int n = 8 / E, off = hi ? n : 0;
  for (int i = 0; i < n; ++i) {
    std::memcpy(r.b + (2 * i) * E, a.b + (i + off) * E, E);
    std::memcpy(r.b + (2 * i + 1) * E, b.b + (i + off) * E, E);
  }
  return r;
}
}  // namespace fl_sse2

inline __m128i _mm_setzero_si128() { return __m128i{}; }
inline __m128i _mm_loadu_si128(const __m128i* p) { __m128i r; std::memcpy(r.b, p, 16); return r; }
inline __m128i _mm_load_si128(const __m128i* p) { return _mm_loadu_si128(p); }
inline void _mm_storeu_si128(__m128i* p, __m128i v) { std::memcpy(p, v.b, 16); }
inline __m128i _mm_loadl_epi64(const __m128i* p) { __m128i r{}; std::memcpy(r.b, p, 8); return r; }
inline __m128i _mm_cvtsi32_si128(int v) { __m128i r{}; std::memcpy(r.b, &v, 4); return r; }
inline __m128i _mm_unpacklo_epi8(__m128i a, __m128i b) { return fl_sse2::unpack<1>(a, b, false); }
inline __m128i _mm_unpackhi_epi8(__m128i a, __m128i b) { return fl_sse2::unpack<1>(a, b, true); }
inline __m128i _mm_unpacklo_epi16(__m128i a, __m128i b) { return fl_sse2::unpack<2>(a, b, false); }
inline __m128i _mm_unpackhi_epi16(__m128i a, __m128i b) { return fl_sse2::unpack<2>(a, b, true); }
inline __m128i _mm_unpacklo_epi32(__m128i a, __m128i b) { return fl_sse2::unpack<4>(a, b, false); }
inline __m128i _mm_unpacklo_epi64(__m128i a, __m128i b) { return fl_sse2::unpack<8>(a, b, false); }
inline __m128i _mm_or_si128(__m128i a, __m128i b) { for (int i = 0; i < 16; ++i) a.b[i] |= b.b[i]; return a; }
inline __m128i _mm_and_si128(__m128i a, __m128i b) { for (int i = 0; i < 16; ++i) a.b[i] &= b.b[i]; return a; }
inline __m128i _mm_max_epu8(__m128i a, __m128i b) { for (int i = 0; i < 16; ++i) a.b[i] = a.b[i] > b.b[i] ? a.b[i] : b.b[i]; return a; }
#endif
