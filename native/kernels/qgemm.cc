// u8 x s8 -> s32 GEMM with fused epilogue, weight repacking, activation packing and im2col, and
// the drivers that choose between this path and the direct kernel of qconv_direct.cc
// (contracts and layouts in flatenn/qengine.h).
//
// Kernels, one per ISA (the integer accumulators are exact, so every variant gives the same int32
// values; the epilogue performs the same IEEE operations in the same order):
//   scalar : plain triple loop over the panel layout (the readable spec)
//   avx2   : chosen by operand range (qgemm_avx2_run, the bound in flatenn/qengine.h):
//            4 channels x 16 rows per tile, vpmaddubsw pair sums kept in int16 over as many k
//            steps as cannot overflow, then vpmaddwd to int32; or (8-bit x 8-bit operands) the
//            widening kernel, u8 and s8 widened to int16 and multiplied with vpmaddwd (exact:
//            |255 * 128 * 2| < 2^31)
//   avx512 : AVX-512 VNNI, 8 channels x 16*MV rows (MV = 1..3) per tile, vpdpbusd
//            (u8 x s8 with an exact int32 sum of 4 products), 24 zmm accumulators
#include "flatenn/core.h"  // FL_X86
#if FL_X86
#include <immintrin.h>
#else
#include "sse2_portable.h"  // the SSE2 baseline code below
#endif

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include "flatenn/core.h"
#include "flatenn/qengine.h"
#include "flatenn/quant.h"
#include "qrequant.h"

namespace fl {
namespace {

#define FL_AVX2 __attribute__((target("avx2,fma")))
#define FL_VNNI __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma")))

inline size_t round_up(size_t x, size_t m) { return (x + m - 1) / m * m; }
inline int32_t load_i32(const void* p) { int32_t v; std::memcpy(&v, p, 4); return v; }
inline int64_t load_i64(const void* p) { int64_t v; std::memcpy(&v, p, 8); return v; }

// Element offset of output (m, n).
inline int64_t out_offset(const QOut& o, size_t m, size_t n) {
  return int64_t(m) / o.P * o.strideImg + int64_t(m) % o.P * o.strideP + int64_t(n) * o.strideN;
}

// ---- epilogue, scalar (the spec: qrequant.h) ------------------------------------
// The affine value with the optional per-position term: fl(affine + corr[n][m % P]).
inline double affine_at(int32_t acc, size_t m, size_t n, const QOut& o) {
  double y = qrq::affine_spec(acc, o.scale[n], o.bias[n]);
  if (!o.corr) return y;
  __asm__("" : "+x"(y));
  return y + o.corr[int64_t(n) * o.P + int64_t(m) % o.P];
}

void epi_scalar(int32_t acc, size_t m, size_t n, const QOut& o, int64_t* zeros) {
  const int64_t off = out_offset(o, m, n);
  switch (o.mode) {
    case QOutMode::Int32: static_cast<int32_t*>(o.data)[off] = acc; break;
    case QOutMode::Float: static_cast<float*>(o.data)[off] = float(affine_at(acc, m, n, o)); break;
    case QOutMode::Codes: {
      const uint8_t q = qrq::code_of(affine_at(acc, m, n, o), qrq::inv_of(o), o.levels);
      static_cast<uint8_t*>(o.data)[off] = q;
      *zeros += q == 0;
      break;
    }
  }
}

// Writes lanes [0, valid) of a computed vector one by one (non-contiguous outputs).
template <class T>
void scatter_lanes(const T* lanes, size_t valid, size_t m, size_t n, const QOut& o) {
  T* d = static_cast<T*>(o.data) + int64_t(n) * o.strideN;
  int64_t img = int64_t(m) / o.P, pix = int64_t(m) % o.P;  // one division per vector
  for (size_t l = 0; l < valid; ++l) {
    d[img * o.strideImg + pix * o.strideP] = lanes[l];
    if (++pix == o.P) { pix = 0; ++img; }
  }
}

// acc[m][n] = sum_k A(k, m) * W[n][k], with A(k, m) at panel[(k / 4) * Wp * 4 + (m - m0) * 4 + k % 4]
// (4 consecutive k of a row are adjacent) and the weights [N][Kp] row-major.
void panel_scalar(const uint8_t* panel, size_t Wp, size_t m0, size_t M, const QwHeader& h, const uint8_t* wdata, size_t n0,
                  size_t n1, const QOut& o, int64_t* zeros) {
  const int8_t* w = reinterpret_cast<const int8_t*>(wdata);
  const size_t mend = std::min(m0 + Wp, M), nend = std::min<size_t>(n1, h.N);
  for (size_t n = n0; n < nend; ++n)
    for (size_t m = m0; m < mend; ++m) {
      const uint8_t* a = panel + (m - m0) * 4;  // A(0..3, m)
      const int8_t* wn = w + n * h.Kp;          // W[n][0..Kp)
      int32_t acc = 0;
      for (size_t k4 = 0; k4 < h.Kp / 4; ++k4, a += Wp * 4, wn += 4)
        for (size_t j = 0; j < 4; ++j) acc += int32_t(a[j]) * int32_t(wn[j]);
      epi_scalar(acc, m, n, o, zeros);
    }
}

#if FL_X86
// ---- AVX2 -----------------------------------------------------------------------
// The per-position terms of lanes [0, valid) of rows m, m + 1, ... (zeros past valid).
inline void corr_lanes(const QOut& o, size_t m, size_t n, size_t valid, double* t) {
  int64_t pix = int64_t(m) % o.P;
  const double* c = o.corr + int64_t(n) * o.P;
  for (size_t l = 0; l < valid; ++l) {
    t[l] = c[pix];
    if (++pix == o.P) pix = 0;
  }
}

// Where the 8 rows m .. m + 7 of a vector go (the same for every channel): offset of (m, 0),
// rows valid, and whether they are 8 (or `valid`) consecutive elements. Computed once per row
// vector, not per channel (two 64-bit divisions).
struct RowVec { int64_t off, pix; size_t valid; bool contig, samePlane; };
inline RowVec row_vec(size_t m, size_t M, const QOut& o) {
  RowVec r;
  r.valid = std::min<size_t>(8, M - m);
  const int64_t img = int64_t(m) / o.P, mp = int64_t(m) % o.P;
  r.pix = mp;
  r.off = img * o.strideImg + mp * o.strideP;
  r.samePlane = mp + int64_t(r.valid) <= o.P;
  r.contig = o.strideP == 1 && r.samePlane;
  return r;
}

// inv = qrq::inv_of(o), found once per panel call by the caller (not a division per vector).
FL_AVX2 inline void epi_avx2_rv(__m256i acc, const RowVec& rv, size_t m, size_t n, const QOut& o, double inv, int64_t* zeros) {
  const size_t valid = rv.valid;
  const int64_t off = rv.off + int64_t(n) * o.strideN;
  const bool full = rv.contig && valid == 8;
  const __m256i lanemask = _mm256_cmpgt_epi32(_mm256_set1_epi32(int(valid)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  if (o.mode == QOutMode::Int32) {
    if (full) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(static_cast<int32_t*>(o.data) + off), acc); return; }
    if (rv.contig) { _mm256_maskstore_epi32(static_cast<int32_t*>(o.data) + off, lanemask, acc); return; }
    alignas(32) int32_t t[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(t), acc);
    scatter_lanes(t, valid, m, n, o);
    return;
  }
  qrq::Y8 y = qrq::affine8(acc, o.scale[n], o.bias[n]);
  if (o.corr) {
    if (rv.samePlane && rv.valid == 8) {
      y = qrq::add8(y, o.corr + int64_t(n) * o.P + rv.pix);
    } else {
      alignas(32) double t[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      corr_lanes(o, m, n, valid, t);
      y = qrq::add8(y, t);
    }
  }
  if (o.mode == QOutMode::Float) {
    const __m256 f = qrq::float8(y);
    if (full) { _mm256_storeu_ps(static_cast<float*>(o.data) + off, f); return; }
    if (rv.contig) { _mm256_maskstore_ps(static_cast<float*>(o.data) + off, lanemask, f); return; }
    alignas(32) float t[8];
    _mm256_store_ps(t, f);
    scatter_lanes(t, valid, m, n, o);
    return;
  }
  const __m256i qi = qrq::codes8(y, inv, o.levels);
  const unsigned z = unsigned(_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_and_si256(_mm256_cmpeq_epi32(qi, _mm256_setzero_si256()), lanemask))));
  *zeros += __builtin_popcount(z);
  const __m128i p16 = _mm_packs_epi32(_mm256_castsi256_si128(qi), _mm256_extracti128_si256(qi, 1));
  const __m128i p8 = _mm_packus_epi16(p16, p16);
  if (full) { _mm_storel_epi64(reinterpret_cast<__m128i*>(static_cast<uint8_t*>(o.data) + off), p8); return; }
  alignas(16) uint8_t t[16];
  _mm_store_si128(reinterpret_cast<__m128i*>(t), p8);
  scatter_lanes(t, valid, m, n, o);
}

FL_AVX2 void epi_avx2(__m256i acc, size_t m, size_t n, size_t M, const QOut& o, double inv, int64_t* zeros) {
  epi_avx2_rv(acc, row_vec(m, M, o), m, n, o, inv, zeros);
}

// Weights int8 [Np/4][K4][4][4] (16 bytes per k4: channel c's 4 codes at 4c).
//
// Widening kernel (any operands): tile = 4 channels x 8 rows. The 16 weight codes of a k4 step
// are widened to int16 once and each channel's 4 broadcast to every 64-bit group; vpmaddwd of
// (m, k0 k1 k2 k3) with (w0 w1 w2 w3) gives lanes (m, k0+k1), (m, k2+k3); the pairs are summed
// once after the k loop.
FL_AVX2 void panel_avx2_wide(const uint8_t* panel, size_t Wp, size_t m0, size_t M, const QwHeader& h, const uint8_t* wdata,
                             size_t n0, size_t n1, const QOut& o, int64_t* zeros) {
  const size_t K4 = h.Kp / 4;
  for (size_t nb = n0 / 4; nb < n1 / 4; ++nb) {
    const uint8_t* wblk = wdata + nb * K4 * 16;
    for (size_t s = 0; s < Wp / 8; ++s) {
      const size_t m = m0 + 8 * s;
      if (m >= M) break;
      __m256i lo0 = _mm256_setzero_si256(), lo1 = lo0, lo2 = lo0, lo3 = lo0, hi0 = lo0, hi1 = lo0, hi2 = lo0, hi3 = lo0;
      const uint8_t* a = panel + s * 32;
      const uint8_t* wb = wblk;
      for (size_t k4 = 0; k4 < K4; ++k4, a += Wp * 4, wb += 16) {
        const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a));
        const __m256i al = _mm256_cvtepu8_epi16(_mm256_castsi256_si128(av));
        const __m256i ah = _mm256_cvtepu8_epi16(_mm256_extracti128_si256(av, 1));
        const __m256i w16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wb)));
        __m256i w = _mm256_permute4x64_epi64(w16, 0x00);
        lo0 = _mm256_add_epi32(lo0, _mm256_madd_epi16(al, w));
        hi0 = _mm256_add_epi32(hi0, _mm256_madd_epi16(ah, w));
        w = _mm256_permute4x64_epi64(w16, 0x55);
        lo1 = _mm256_add_epi32(lo1, _mm256_madd_epi16(al, w));
        hi1 = _mm256_add_epi32(hi1, _mm256_madd_epi16(ah, w));
        w = _mm256_permute4x64_epi64(w16, 0xAA);
        lo2 = _mm256_add_epi32(lo2, _mm256_madd_epi16(al, w));
        hi2 = _mm256_add_epi32(hi2, _mm256_madd_epi16(ah, w));
        w = _mm256_permute4x64_epi64(w16, 0xFF);
        lo3 = _mm256_add_epi32(lo3, _mm256_madd_epi16(al, w));
        hi3 = _mm256_add_epi32(hi3, _mm256_madd_epi16(ah, w));
      }
      const __m256i acc[4] = {_mm256_permute4x64_epi64(_mm256_hadd_epi32(lo0, hi0), 0xD8),
                              _mm256_permute4x64_epi64(_mm256_hadd_epi32(lo1, hi1), 0xD8),
                              _mm256_permute4x64_epi64(_mm256_hadd_epi32(lo2, hi2), 0xD8),
                              _mm256_permute4x64_epi64(_mm256_hadd_epi32(lo3, hi3), 0xD8)};
      const double inv = qrq::inv_of(o);  // here, after the accumulation: no double live across its loop
      for (size_t c = 0; c < 4; ++c) {
        const size_t n = nb * 4 + c;
        if (n >= h.N) break;
        epi_avx2(acc[c], m, n, M, o, inv, zeros);
      }
    }
  }
}

// 16-bit kernel (operands in range, qgemm_avx2_run): tile = 4 channels x 8V rows. Per k4 step:
// V loads of 8 rows x 4 k, 4 dword broadcasts, 4V vpmaddubsw + 4V vpaddw into int16 sums of
// lanes (m, k0+k1), (m, k2+k3); every `run` steps (the exact bound of qgemm_avx2_run) vpmaddwd
// with ones adds each lane pair into the int32 accumulator of row m. No horizontal step after.
// t += vpmaddubsw(a, w) with the sum updated in its own register (written as intrinsics, GCC 12
// rotated the sums through other registers and, for tiles of 3 row vectors, kept 9 of the 12 on
// the stack: a load and a store per vpmaddubsw).
FL_AVX2 inline void madd16(__m256i& t, __m256i a, __m256i w) {
  const __m256i p = _mm256_maddubs_epi16(a, w);
  __asm__("vpaddw %1, %0, %0" : "+x"(t) : "x"(p));
}

// The accumulation of one tile of 4 channels x 16 rows (2 row vectors) over K4 steps: int16 sums
// of `run` steps (8 registers, + 2 rows, 1 broadcast, 1 product: 12 of the 16), widened into the
// int32 accumulators out[2 c + v] (in memory, touched once per run). Not inlined, so that the
// register allocation of this loop stays its own.
FL_AVX2 __attribute__((noinline)) void acc_avx2_s16(const uint8_t* a, size_t Wp, const uint8_t* wb, size_t K4, size_t run,
                                                    __m256i* out) {
  const __m256i ones = _mm256_set1_epi16(1);
  // an opaque zero: GCC turns a loop of zero stores into `rep stos` (microcoded, slow to start)
  __m256i zero = _mm256_setzero_si256();
  __asm__("" : "+x"(zero));
  for (int i = 0; i < 8; ++i) out[i] = zero;
  for (size_t k0 = 0; k0 < K4; k0 += run) {
    const size_t k1 = std::min(K4, k0 + run);
    __m256i t00 = _mm256_setzero_si256(), t01 = t00, t10 = t00, t11 = t00, t20 = t00, t21 = t00, t30 = t00, t31 = t00;
    for (size_t k4 = k0; k4 < k1; ++k4, a += Wp * 4, wb += 16) {
      const __m256i a0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a));
      const __m256i a1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + 32));
      __m256i w = _mm256_set1_epi32(load_i32(wb));
      madd16(t00, a0, w);
      madd16(t01, a1, w);
      w = _mm256_set1_epi32(load_i32(wb + 4));
      madd16(t10, a0, w);
      madd16(t11, a1, w);
      w = _mm256_set1_epi32(load_i32(wb + 8));
      madd16(t20, a0, w);
      madd16(t21, a1, w);
      w = _mm256_set1_epi32(load_i32(wb + 12));
      madd16(t30, a0, w);
      madd16(t31, a1, w);
    }
    const __m256i t[8] = {t00, t01, t10, t11, t20, t21, t30, t31};
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) out[i] = _mm256_add_epi32(out[i], _mm256_madd_epi16(t[i], ones));
    __asm__ volatile("" : : "r"(out) : "memory");  // the accumulators stay in memory
  }
}

// 16-bit kernel (operands in range, qgemm_avx2_run): tiles of 4 channels x 16 rows. Per k4 step:
// 2 loads of 8 rows x 4 k, 4 dword broadcasts, 8 vpmaddubsw + 8 vpaddw into int16 sums of lanes
// (m, k0+k1), (m, k2+k3); every `run` steps (the exact bound of qgemm_avx2_run) vpmaddwd with ones
// adds each lane pair into the int32 accumulator of row m. No horizontal step after.
FL_AVX2 void panel_avx2_s16(const uint8_t* panel, size_t Wp, size_t m0, size_t M, const QwHeader& h, const uint8_t* wdata,
                            size_t n0, size_t n1, const QOut& o, int64_t* zeros, size_t run) {
  const size_t K4 = h.Kp / 4;
  const double inv = qrq::inv_of(o);
  alignas(32) __m256i acc[8];
  for (size_t nb = n0 / 4; nb < n1 / 4; ++nb) {
    const uint8_t* wblk = wdata + nb * K4 * 16;
    for (size_t s = 0; s < Wp / 8; s += 2) {
      const size_t m = m0 + 8 * s;
      if (m >= M) break;
      acc_avx2_s16(panel + s * 32, Wp, wblk, K4, run, acc);
      for (size_t v = 0; v < 2; ++v) {
        const size_t mv = m + 8 * v;
        if (mv >= M) break;
        const RowVec rv = row_vec(mv, M, o);
        for (size_t c = 0; c < 4 && nb * 4 + c < h.N; ++c) epi_avx2_rv(acc[2 * c + v], rv, mv, nb * 4 + c, o, inv, zeros);
      }
    }
  }
}

FL_AVX2 void panel_avx2(const uint8_t* panel, size_t Wp, size_t m0, size_t M, const QwHeader& h, const uint8_t* wdata,
                        size_t n0, size_t n1, const QOut& o, int64_t* zeros) {
  const int run = qgemm_avx2_run(o.aMax, h.wlo, h.whi);
  if (run == 0) return panel_avx2_wide(panel, Wp, m0, M, h, wdata, n0, n1, o, zeros);
  // Wp / 8 is 2, 4 or 6 row vectors: tiles of 2
  panel_avx2_s16(panel, Wp, m0, M, h, wdata, n0, n1, o, zeros, size_t(run));
}

FL_AVX2 uint8_t max_u8_avx2(const uint8_t* x, size_t n) {
  __m256i m = _mm256_setzero_si256();
  size_t i = 0;
  for (; i + 32 <= n; i += 32) m = _mm256_max_epu8(m, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i)));
  alignas(32) uint8_t t[32];
  _mm256_store_si256(reinterpret_cast<__m256i*>(t), m);
  uint8_t r = 0;
  for (uint8_t v : t) r = std::max(r, v);
  for (; i < n; ++i) r = std::max(r, x[i]);
  return r;
}

// ---- AVX-512 VNNI -----------------------------------------------------------------
inline __mmask16 tail16(size_t left) { return left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1u); }

FL_VNNI void epi_avx512(__m512i acc, size_t m, size_t n, size_t M, const QOut& o, double inv, int64_t* zeros) {
  const size_t valid = std::min<size_t>(16, M - m);
  const __mmask16 k = tail16(valid);
  const int64_t mp = int64_t(m) % o.P;
  const bool contig = o.strideP == 1 && mp + int64_t(valid) <= o.P;
  const int64_t off = out_offset(o, m, n);
  if (o.mode == QOutMode::Int32) {
    if (contig) { _mm512_mask_storeu_epi32(static_cast<int32_t*>(o.data) + off, k, acc); return; }
    alignas(64) int32_t t[16];
    _mm512_store_si512(t, acc);
    scatter_lanes(t, valid, m, n, o);
    return;
  }
  qrq::Y16 y = qrq::affine16(acc, o.scale[n], o.bias[n]);
  if (o.corr) {  // the per-position term (lanes past valid: 0)
    alignas(64) double t[16] = {};
    corr_lanes(o, m, n, valid, t);
    y = qrq::add16(y, t);
  }
  if (o.mode == QOutMode::Float) {
    const __m512 f = qrq::float16(y);
    if (contig) { _mm512_mask_storeu_ps(static_cast<float*>(o.data) + off, k, f); return; }
    alignas(64) float t[16];
    _mm512_store_ps(t, f);
    scatter_lanes(t, valid, m, n, o);
    return;
  }
  const __m512i qi = qrq::codes16(y, inv, o.levels);
  *zeros += __builtin_popcount(unsigned(_mm512_mask_cmpeq_epi32_mask(k, qi, _mm512_setzero_si512())));
  const __m128i b = _mm512_cvtepi32_epi8(qi);
  if (contig) { _mm_mask_storeu_epi8(static_cast<uint8_t*>(o.data) + off, k, b); return; }
  alignas(16) uint8_t t[16];
  _mm_store_si128(reinterpret_cast<__m128i*>(t), b);
  scatter_lanes(t, valid, m, n, o);
}

// Weights int8 [Np/8][K4][8][4]; tile = 8 channels x (16 * MV) rows; per k4 step: MV panel loads,
// 8 dword broadcasts, 8 * MV vpdpbusd.
// acc_avx512_mv: the accumulation of one such tile, stored to out[c * MV + v]. Not inlined:
// with the epilogue's calls in the same function GCC 12 kept the 24 accumulators on the stack
// (a load and a store around every vpdpbusd; int4 GEMM 1024^3 on AVX-512 fell from 183 to 96 GMAC/s).
template <int MV>
FL_VNNI __attribute__((noinline)) void acc_avx512_mv(const uint8_t* panel, const uint8_t* wb, size_t K4, __m512i* out) {
  constexpr size_t Wp = 16 * MV;
  __m512i acc[8][MV];
#pragma GCC unroll 8
  for (int c = 0; c < 8; ++c)
#pragma GCC unroll 3
    for (int v = 0; v < MV; ++v) acc[c][v] = _mm512_setzero_si512();
  const uint8_t* a = panel;
  for (size_t k4 = 0; k4 < K4; ++k4, a += Wp * 4, wb += 32) {
    __m512i av[MV];
#pragma GCC unroll 3
    for (int v = 0; v < MV; ++v) av[v] = _mm512_loadu_si512(a + 64 * v);
#pragma GCC unroll 8
    for (int c = 0; c < 8; ++c) {
      const __m512i w = _mm512_set1_epi32(load_i32(wb + 4 * c));
#pragma GCC unroll 3
      for (int v = 0; v < MV; ++v) acc[c][v] = _mm512_dpbusd_epi32(acc[c][v], av[v], w);
    }
  }
#pragma GCC unroll 8
  for (int c = 0; c < 8; ++c)
#pragma GCC unroll 3
    for (int v = 0; v < MV; ++v) _mm512_store_si512(out + c * MV + v, acc[c][v]);
}

template <int MV>
FL_VNNI void panel_avx512_mv(const uint8_t* panel, size_t m0, size_t M, const QwHeader& h, const uint8_t* wdata,
                             size_t n0, size_t n1, const QOut& o, int64_t* zeros) {
  const size_t K4 = h.Kp / 4;
  const double inv = qrq::inv_of(o);
  alignas(64) __m512i acc[8 * MV];
  for (size_t nb = n0 / 8; nb < n1 / 8; ++nb) {
    acc_avx512_mv<MV>(panel, wdata + nb * K4 * 32, K4, acc);
    for (int c = 0; c < 8; ++c) {
      const size_t n = nb * 8 + size_t(c);
      if (n >= h.N) break;
      for (int v = 0; v < MV; ++v) {
        const size_t m = m0 + 16 * size_t(v);
        if (m < M) epi_avx512(acc[c * MV + v], m, n, M, o, inv, zeros);
      }
    }
  }
}

FL_VNNI void panel_avx512(const uint8_t* panel, size_t Wp, size_t m0, size_t M, const QwHeader& h, const uint8_t* wdata,
                          size_t n0, size_t n1, const QOut& o, int64_t* zeros) {
  switch (Wp / 16) {
    case 1: panel_avx512_mv<1>(panel, m0, M, h, wdata, n0, n1, o, zeros); break;
    case 2: panel_avx512_mv<2>(panel, m0, M, h, wdata, n0, n1, o, zeros); break;
    default: panel_avx512_mv<3>(panel, m0, M, h, wdata, n0, n1, o, zeros); break;
  }
}

// Issue-rate probe: 24 independent vpdpbusd chains in zmm0..zmm23 (the GEMM tile's shape), no
// memory traffic. Written in asm so that no compiler can spill, fold or drop a chain.
FL_VNNI double vnni_probe(uint64_t iters) {
  if (iters == 0) return 0.0;
  uint64_t n = iters;
  __asm__ volatile(
      "vpxord %%zmm0, %%zmm0, %%zmm0\n\t"
      "vpxord %%zmm1, %%zmm1, %%zmm1\n\t"
      "vpxord %%zmm2, %%zmm2, %%zmm2\n\t"
      "vpxord %%zmm3, %%zmm3, %%zmm3\n\t"
      "vpxord %%zmm4, %%zmm4, %%zmm4\n\t"
      "vpxord %%zmm5, %%zmm5, %%zmm5\n\t"
      "vpxord %%zmm6, %%zmm6, %%zmm6\n\t"
      "vpxord %%zmm7, %%zmm7, %%zmm7\n\t"
      "vpxord %%zmm8, %%zmm8, %%zmm8\n\t"
      "vpxord %%zmm9, %%zmm9, %%zmm9\n\t"
      "vpxord %%zmm10, %%zmm10, %%zmm10\n\t"
      "vpxord %%zmm11, %%zmm11, %%zmm11\n\t"
      "vpxord %%zmm12, %%zmm12, %%zmm12\n\t"
      "vpxord %%zmm13, %%zmm13, %%zmm13\n\t"
      "vpxord %%zmm14, %%zmm14, %%zmm14\n\t"
      "vpxord %%zmm15, %%zmm15, %%zmm15\n\t"
      "vpxord %%zmm16, %%zmm16, %%zmm16\n\t"
      "vpxord %%zmm17, %%zmm17, %%zmm17\n\t"
      "vpxord %%zmm18, %%zmm18, %%zmm18\n\t"
      "vpxord %%zmm19, %%zmm19, %%zmm19\n\t"
      "vpxord %%zmm20, %%zmm20, %%zmm20\n\t"
      "vpxord %%zmm21, %%zmm21, %%zmm21\n\t"
      "vpxord %%zmm22, %%zmm22, %%zmm22\n\t"
      "vpxord %%zmm23, %%zmm23, %%zmm23\n\t"
      "vpternlogd $0xff, %%zmm24, %%zmm24, %%zmm24\n\t"
      "vpxord %%zmm25, %%zmm25, %%zmm25\n\t"
      "1:\n\t"
      "vpdpbusd %%zmm25, %%zmm24, %%zmm0\n\t"
      "vpdpbusd %%zmm25, %%zmm24, %%zmm1\n\t"
      "vpdpbusd %%zmm25, %%zmm24, %%zmm2\n\t"
      "vpdpbusd %%zmm25, %%zmm24, %%zmm3\n\t"
      "vpdpbusd %%zmm25, %%zmm24, %%zmm4\n\t"
      "vpdpbusd %%zmm25, %%zmm24, %%zmm5\n\t"
      "vpdpbusd %%zmm25, %%zmm24, %%zmm6\n\t"
      "vpdpbusd %%zmm25, %%zmm24, %%zmm7\n\t"
      "vpdpbusd %%zmm25, %%zmm24, %%zmm8\n\t"
      "vpdpbusd %%zmm25, %%zmm24, %%zmm9\n\t"
      "vpdpbusd %%zmm25, %%zmm24, %%zmm10\n\t"
      "vpdpbusd %%zmm25, %%zmm24, %%zmm11\n\t"
      "vpdpbusd %%zmm25, %%zmm24, %%zmm12\n\t"
      "vpdpbusd %%zmm25, %%zmm24, %%zmm13\n\t"
      "vpdpbusd %%zmm25, %%zmm24, %%zmm14\n\t"
      "vpdpbusd %%zmm25, %%zmm24, %%zmm15\n\t"
      "vpdpbusd %%zmm25, %%zmm24, %%zmm16\n\t"
      "vpdpbusd %%zmm25, %%zmm24, %%zmm17\n\t"
      "vpdpbusd %%zmm25, %%zmm24, %%zmm18\n\t"
      "vpdpbusd %%zmm25, %%zmm24, %%zmm19\n\t"
      "vpdpbusd %%zmm25, %%zmm24, %%zmm20\n\t"
      "vpdpbusd %%zmm25, %%zmm24, %%zmm21\n\t"
      "vpdpbusd %%zmm25, %%zmm24, %%zmm22\n\t"
      "vpdpbusd %%zmm25, %%zmm24, %%zmm23\n\t"
      "dec %0\n\t"
      "jnz 1b\n\t"
      : "+r"(n)
      :
      : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23", "xmm24", "xmm25", "cc");
  return double(iters) * 24 * 64;
}

#endif  // FL_X86

// ---- pooled requantisation (conv + max pool on the GEMM path) ----------------------------------
// One channel plane of int32 accumulators acc [OH][OW] -> y [PH][PW] codes of the max pool of the
// codes, pooling before requantising (qrequant.h: x = acc ^ m is what the code is monotone in),
// so k*k fewer requantisations; zero codes of the whole plane (before pooling) counted as
// x < zt. pooled: scratch of PH * PW int32.
struct PoolRq { size_t OH, OW, k, s, PH, PW; int32_t m, zt; double scale, bias, inv, levels; };

void pool_max_x(const int32_t* acc, const PoolRq& r, int32_t* pooled) {
  if (r.k == 2 && r.s == 2) {  // LeNet's pools: no inner loops
    for (size_t oh = 0; oh < r.PH; ++oh) {
      const int32_t* r0 = acc + 2 * oh * r.OW;
      const int32_t* r1 = r0 + r.OW;
      int32_t* d = pooled + oh * r.PW;
      for (size_t ow = 0; ow < r.PW; ++ow)
        d[ow] = std::max(std::max(r0[2 * ow] ^ r.m, r0[2 * ow + 1] ^ r.m), std::max(r1[2 * ow] ^ r.m, r1[2 * ow + 1] ^ r.m));
    }
    return;
  }
  for (size_t oh = 0; oh < r.PH; ++oh)
    for (size_t ow = 0; ow < r.PW; ++ow) {
      int32_t best = INT32_MIN;
      for (size_t i = 0; i < r.k; ++i)
        for (size_t j = 0; j < r.k; ++j) best = std::max(best, acc[(oh * r.s + i) * r.OW + ow * r.s + j] ^ r.m);
      pooled[oh * r.PW + ow] = best;
    }
}

int64_t pool_requant_scalar(const int32_t* acc, const PoolRq& r, int32_t* pooled, uint8_t* y) {
  int64_t z = 0;
  for (size_t i = 0; i < r.OH * r.OW; ++i) z += (acc[i] ^ r.m) < r.zt;
  pool_max_x(acc, r, pooled);
  for (size_t i = 0; i < r.PH * r.PW; ++i)
    y[i] = qrq::code_of(qrq::affine_spec(pooled[i] ^ r.m, r.scale, r.bias), r.inv, r.levels);
  return z;
}

#if FL_X86
FL_AVX2 int64_t pool_requant_avx2(const int32_t* acc, const PoolRq& r, int32_t* pooled, uint8_t* y) {
  const size_t n = r.OH * r.OW, np = r.PH * r.PW;
  const __m256i vm = _mm256_set1_epi32(r.m), vzt = _mm256_set1_epi32(r.zt);
  int64_t z = 0;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i x = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc + i)), vm);
    z += __builtin_popcount(unsigned(_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(vzt, x)))));
  }
  for (; i < n; ++i) z += (acc[i] ^ r.m) < r.zt;
  if (r.k == 2 && r.s == 2 && r.OW % 2 == 0) {
    // vertical max of each row pair into pooled [PH][OW] (pooled has room: pool_scratch), then
    // the horizontal pairs of that flat array (OW even: no pair spans two rows) in place
    for (size_t oh = 0; oh < r.PH; ++oh) {
      const int32_t* r0 = acc + 2 * oh * r.OW;
      const int32_t* r1 = r0 + r.OW;
      int32_t* d = pooled + oh * r.OW;
      size_t w = 0;
      for (; w + 8 <= r.OW; w += 8) {
        const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(r0 + w)), b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(r1 + w));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + w), _mm256_max_epi32(_mm256_xor_si256(a, vm), _mm256_xor_si256(b, vm)));
      }
      for (; w < r.OW; ++w) d[w] = std::max(r0[w] ^ r.m, r1[w] ^ r.m);
    }
    const size_t flat = r.PH * r.OW;  // = 2 * np
    size_t j = 0;
    for (; 2 * j + 16 <= flat; j += 8) {  // writes j .. j+7 after reading 2j .. 2j+15 (j <= 2j: in place is safe)
      const __m256 a = _mm256_castsi256_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(pooled + 2 * j)));
      const __m256 b = _mm256_castsi256_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(pooled + 2 * j + 8)));
      const __m256i e = _mm256_castps_si256(_mm256_shuffle_ps(a, b, 0x88)), od = _mm256_castps_si256(_mm256_shuffle_ps(a, b, 0xDD));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(pooled + j), _mm256_permute4x64_epi64(_mm256_max_epi32(e, od), 0xD8));
    }
    for (; j < np; ++j) pooled[j] = std::max(pooled[2 * j], pooled[2 * j + 1]);
  } else {
    pool_max_x(acc, r, pooled);
  }
  for (i = 0; i + 8 <= np; i += 8) {
    const __m256i a = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(pooled + i)), vm);
    const __m256i qi = qrq::codes8(qrq::affine8(a, r.scale, r.bias), r.inv, r.levels);
    const __m128i p16 = _mm_packs_epi32(_mm256_castsi256_si128(qi), _mm256_extracti128_si256(qi, 1));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(y + i), _mm_packus_epi16(p16, p16));
  }
  for (; i < np; ++i) y[i] = qrq::code_of(qrq::affine_spec(pooled[i] ^ r.m, r.scale, r.bias), r.inv, r.levels);
  return z;
}
#endif  // FL_X86

#undef FL_AVX2
#undef FL_VNNI

size_t layout_block(Isa isa) { return isa == Isa::Avx512 ? 8 : isa == Isa::Avx2 ? 4 : 1; }
size_t layout_data_bytes(Isa isa, size_t N, size_t K) {
  const size_t Kp = round_up(K, 4), Np = round_up(N, layout_block(isa));
  return Np * Kp;
}

// Rows [48p, 48p + Wp) of A into panel p.
void pack_panel(const uint8_t* A, size_t M, size_t K, size_t lda, size_t p, uint8_t* panels) {
  const size_t Kp = round_up(K, 4), Mp = round_up(M, 16), m0 = p * kPanel, Wp = std::min(kPanel, Mp - m0);
  uint8_t* base = panels + m0 * Kp;
  for (size_t r = 0; r < Wp; ++r) {
    const size_t m = m0 + r;
    uint8_t* d = base + r * 4;
    if (m >= M) {
      for (size_t k4 = 0; k4 < Kp / 4; ++k4) std::memset(d + k4 * Wp * 4, 0, 4);
      continue;
    }
    const uint8_t* src = A + m * lda;
    size_t k4 = 0;
    for (; 4 * k4 + 4 <= K; ++k4) std::memcpy(d + k4 * Wp * 4, src + 4 * k4, 4);
    if (k4 < Kp / 4) {
      uint8_t t[4] = {0, 0, 0, 0};
      for (size_t j = 0; 4 * k4 + j < K; ++j) t[j] = src[4 * k4 + j];
      std::memcpy(d + k4 * Wp * 4, t, 4);
    }
  }
}

// Reusable per-thread scratch (the pool's threads live for the process).
uint8_t* tls_buffer(int which, size_t bytes) {
  thread_local std::vector<uint8_t> buf[3];
  if (buf[which].size() < bytes) buf[which].resize(bytes);
  return buf[which].data();
}

size_t elem_bytes(QOutMode m) { return m == QOutMode::Codes ? 1 : 4; }

}  // namespace

namespace kern {
Kernel<QPanelFn> u8s8_qgemm_panel("u8s8_qgemm_panel", panel_scalar, FL_X86_ONLY(panel_avx2), FL_X86_ONLY(panel_avx512));
}


double qgemm_peak_probe(uint64_t iters) {
#if FL_X86
  if (!(best_isa() == Isa::Avx512 && cpu_features().avx512vnni)) return 0.0;
  return vnni_probe(iters);
#else
  (void)iters;
  return 0.0;
#endif
}

Isa qgemm_isa() {
  const Isa isa = current_isa();
  if (isa == Isa::Avx512 && !cpu_features().avx512vnni) return Isa::Avx2;
  return isa;
}

size_t qweights_block(Isa isa) { return layout_block(isa); }

int qgemm_avx2_run(int aMax, int wlo, int whi) {
  const int64_t a2 = 2 * int64_t(std::max(aMax, 0));
  const int64_t neg = a2 * std::max(-int64_t(wlo), int64_t(0)), pos = a2 * std::max(int64_t(whi), int64_t(0));
  int64_t n = 1 << 20;  // all products zero: any run length (capped)
  if (neg > 0) n = std::min(n, int64_t(32768) / neg);
  if (pos > 0) n = std::min(n, int64_t(32767) / pos);
  return int(std::min<int64_t>(n, 1 << 20));
}

uint8_t max_u8(const uint8_t* x, size_t n) {
#if FL_X86
  if (current_isa() != Isa::Scalar) return max_u8_avx2(x, n);
#endif
  uint8_t r = 0;
  for (size_t i = 0; i < n; ++i) r = std::max(r, x[i]);
  return r;
}

size_t qweights_bytes(size_t N, size_t K) { return kQwHeaderBytes + round_up(N, 8) * round_up(K, 4) * 2; }

void qweights_from_codes(const int8_t* codes, size_t N, size_t K, int bits, Isa isa, uint8_t* dst) {
  const size_t Kp = round_up(K, 4), B = layout_block(isa), Np = round_up(N, B);
  QwHeader h{};
  h.magic = kQwMagic;
  h.isa = uint32_t(isa);
  h.N = uint32_t(N); h.K = uint32_t(K); h.Np = uint32_t(Np); h.Kp = uint32_t(Kp);
  h.bits = uint32_t(bits);
  h.wlo = 0; h.whi = 0;
  for (size_t i = 0; i < N * K; ++i) { h.wlo = std::min<int32_t>(h.wlo, codes[i]); h.whi = std::max<int32_t>(h.whi, codes[i]); }
  std::memcpy(dst, &h, sizeof h);
  uint8_t* data = dst + kQwHeaderBytes;
  const size_t nblocks = Np / B;
  // parallel over channel blocks; each block's bytes are contiguous in every layout
  const size_t per = layout_data_bytes(isa, N, K) / (nblocks ? nblocks : 1);
  parallel_for(nblocks, [&](size_t nb) {
    uint8_t* blk = data + nb * per;
    std::memset(blk, 0, per);
    for (size_t c = 0; c < B; ++c) {
      const size_t n = nb * B + c;
      if (n >= N) break;
      const int8_t* row = codes + n * K;
      for (size_t k = 0; k < K; ++k) {
        const size_t k4 = k / 4, kk = k % 4;
        switch (isa) {
          case Isa::Scalar: reinterpret_cast<int8_t*>(blk)[k] = row[k]; break;
          case Isa::Avx2: reinterpret_cast<int8_t*>(blk)[(k4 * 4 + c) * 4 + kk] = row[k]; break;
          case Isa::Avx512: reinterpret_cast<int8_t*>(blk)[(k4 * 8 + c) * 4 + kk] = row[k]; break;
        }
      }
    }
  });
}

void qweights_repack(const uint8_t* packed, int bits, size_t N, size_t K, Isa isa, uint8_t* dst) {
  std::vector<int8_t> codes(N * K);
  unpack_int(packed, bits, N * K, codes.data());
  qweights_from_codes(codes.data(), N, K, bits, isa, dst);
}

const char* qweights_check(const uint8_t* buf, size_t bytes, size_t N, size_t K) {
  if (bytes < kQwHeaderBytes) return "the weight buffer is shorter than its header";
  QwHeader h;
  std::memcpy(&h, buf, sizeof h);
  if (h.magic != kQwMagic) return "the weight buffer was not made by qweightsRepack";
  if (h.isa > uint32_t(Isa::Avx512)) return "the weight buffer names an unknown ISA";
  const Isa isa = static_cast<Isa>(h.isa);
  if (static_cast<int>(isa) > static_cast<int>(best_isa()) || (isa == Isa::Avx512 && !cpu_features().avx512vnni))
    return "the weight buffer was packed for an ISA this CPU lacks";
  if (h.N != N || h.K != K) return "the weight buffer holds another shape";
  if (h.Kp != round_up(K, 4) || h.Np != round_up(N, layout_block(isa))) return "the weight buffer header is corrupt";
  if (bytes < kQwHeaderBytes + layout_data_bytes(isa, N, K)) return "the weight buffer is truncated";
  if (!(h.wlo >= -128 && h.wlo <= 0 && h.whi >= 0 && h.whi <= 127)) return "the weight buffer header is corrupt";
  return nullptr;
}

size_t qpanels_bytes(size_t M, size_t K) { return round_up(K, 4) * round_up(M, 16); }

void qpack_rows(const uint8_t* A, size_t M, size_t K, size_t lda, uint8_t* panels) {
  const size_t np = (round_up(M, 16) + kPanel - 1) / kPanel;
  for (size_t p = 0; p < np; ++p) pack_panel(A, M, K, lda, p, panels);
}

// Writes one 16-row chunk of every k4 group: load(k) gives the 16 bytes of tap k (k < K);
// taps k >= K are zeros. Output: 64 bytes [16 rows][4 taps] per k4, k4 groups step apart.
template <class Load>
inline void interleave_chunk(uint8_t* dst, size_t step, size_t K, size_t Kp, const Load& load) {
  const size_t full = K / 4;
  auto put = [&](uint8_t* d, __m128i r0, __m128i r1, __m128i r2, __m128i r3) {
    const __m128i t0 = _mm_unpacklo_epi8(r0, r1), t1 = _mm_unpackhi_epi8(r0, r1);
    const __m128i t2 = _mm_unpacklo_epi8(r2, r3), t3 = _mm_unpackhi_epi8(r2, r3);
    __m128i* o = reinterpret_cast<__m128i*>(d);
    _mm_storeu_si128(o + 0, _mm_unpacklo_epi16(t0, t2));
    _mm_storeu_si128(o + 1, _mm_unpackhi_epi16(t0, t2));
    _mm_storeu_si128(o + 2, _mm_unpacklo_epi16(t1, t3));
    _mm_storeu_si128(o + 3, _mm_unpackhi_epi16(t1, t3));
  };
  for (size_t k4 = 0; k4 < full; ++k4) put(dst + k4 * step, load(4 * k4), load(4 * k4 + 1), load(4 * k4 + 2), load(4 * k4 + 3));
  if (full < Kp / 4) {
    __m128i r[4];
    for (size_t t = 0; t < 4; ++t) r[t] = 4 * full + t < K ? load(4 * full + t) : _mm_setzero_si128();
    put(dst + full * step, r[0], r[1], r[2], r[3]);
  }
}

size_t qim2col_scratch_bytes(size_t G, size_t C, size_t H, size_t W, size_t kh, size_t kw, size_t stride, size_t pad) {
  const size_t OH = conv_out(H, kh, stride, pad), OW = conv_out(W, kw, stride, pad);
  const size_t K = C * kh * kw, M = G * OH * OW;
  // 16 bytes of slack, padded planes + 8-byte offsets of the K taps and the M output pixels
  return 16 + G * C * (H + 2 * pad) * (W + 2 * pad) + 16 + 8 * (K + M);
}

void qim2col(const uint8_t* x, size_t G, size_t C, size_t H, size_t W, size_t kh, size_t kw, size_t stride, size_t pad,
             uint8_t* panels, uint8_t* scratch) {
  const size_t OH = conv_out(H, kh, stride, pad), OW = conv_out(W, kw, stride, pad), P = OH * OW;
  const size_t K = C * kh * kw, Kp = round_up(K, 4), M = G * P, Mp = round_up(M, 16);
  const size_t Hp = H + 2 * pad, Wq = W + 2 * pad, plane = Hp * Wq;
  // 1. zero-padded copies of the input planes: A(k = (c, i, j), m = (g, oh, ow)) is then
  //    xp[moff[m] + koff[k]] with moff = offset of (g, oh*s, ow*s), koff = offset of (c, i, j)
  uint8_t* xp = scratch + 16;  // the row-segment loads below may start up to 15 bytes early (masked off)
  for (size_t gc = 0; gc < G * C; ++gc) {
    uint8_t* d = xp + gc * plane;
    const uint8_t* src = x + gc * H * W;
    std::memset(d, 0, pad * Wq);
    for (size_t h = 0; h < H; ++h) {
      uint8_t* row = d + (pad + h) * Wq;
      std::memset(row, 0, pad);
      std::memcpy(row + pad, src + h * W, W);
      std::memset(row + pad + W, 0, pad);
    }
    std::memset(d + (pad + H) * Wq, 0, pad * Wq);
  }
  uint8_t* tail = xp + G * C * plane;
  int64_t* koff = reinterpret_cast<int64_t*>(tail + (16 - reinterpret_cast<uintptr_t>(tail) % 16) % 16);
  int64_t* moff = koff + K;
  for (size_t c = 0, k = 0; c < C; ++c)
    for (size_t i = 0; i < kh; ++i)
      for (size_t j = 0; j < kw; ++j) koff[k++] = int64_t((c * Hp + i) * Wq + j);
  for (size_t g = 0, m = 0; g < G; ++g)
    for (size_t oh = 0; oh < OH; ++oh)
      for (size_t ow = 0; ow < OW; ++ow) moff[m++] = int64_t(g * C * plane + oh * stride * Wq + ow * stride);
  // 2. panels [Kp/4][Wp][4]: for 16 rows m at a time and 4 taps k, interleave the 4 x 16 bytes
  //    (SSE2 byte/word unpacks). 16 consecutive m in one output row (stride 1) are one 16-byte
  //    load; output rows of 8 or 4 pixels are loaded as 8- or 4-byte runs; anything else is gathered.
  for (size_t m0 = 0; m0 < Mp; m0 += kPanel) {
    const size_t Wp = std::min(kPanel, Mp - m0);
    uint8_t* base = panels + m0 * Kp;
    for (size_t q = 0; q < Wp; q += 16) {
      const size_t m = m0 + q, valid = m < M ? std::min<size_t>(16, M - m) : 0;
      uint8_t* dst = base + q * 4;
      const size_t stepk4 = Wp * 4;
      if (valid == 16 && moff[m + 15] - moff[m] == 15) {
        const uint8_t* b = xp + moff[m];
        interleave_chunk(dst, stepk4, K, Kp, [&](size_t k) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + koff[k])); });
      } else if (valid == 16 && stride == 1 && OW == 8) {
        const uint8_t* b0 = xp + moff[m];
        const uint8_t* b1 = xp + moff[m + 8];
        interleave_chunk(dst, stepk4, K, Kp, [&](size_t k) {
          return _mm_unpacklo_epi64(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(b0 + koff[k])),
                                    _mm_loadl_epi64(reinterpret_cast<const __m128i*>(b1 + koff[k])));
        });
      } else if (valid == 16 && stride == 1 && OW == 4) {
        const uint8_t* b[4] = {xp + moff[m], xp + moff[m + 4], xp + moff[m + 8], xp + moff[m + 12]};
        interleave_chunk(dst, stepk4, K, Kp, [&](size_t k) {
          const __m128i a0 = _mm_cvtsi32_si128(load_i32(b[0] + koff[k])), a1 = _mm_cvtsi32_si128(load_i32(b[1] + koff[k]));
          const __m128i a2 = _mm_cvtsi32_si128(load_i32(b[2] + koff[k])), a3 = _mm_cvtsi32_si128(load_i32(b[3] + koff[k]));
          return _mm_unpacklo_epi64(_mm_unpacklo_epi32(a0, a1), _mm_unpacklo_epi32(a2, a3));
        });
      } else if (valid == 16 && stride == 1) {
        // 16 pixels over several output rows: each row segment [l0, l1) reads consecutive bytes,
        // loaded so that lane l reads base + l, and kept where its mask is set
        int64_t base[16];
        __m128i keep[16];
        size_t ns = 0;
        for (size_t l = 0; l < 16; ++ns) {
          size_t e = l + 1;
          while (e < 16 && moff[m + e] == moff[m + e - 1] + 1) ++e;
          alignas(16) uint8_t mb[16];
          for (size_t t = 0; t < 16; ++t) mb[t] = t >= l && t < e ? 0xFF : 0;
          base[ns] = moff[m + l] - int64_t(l);
          keep[ns] = _mm_load_si128(reinterpret_cast<const __m128i*>(mb));
          l = e;
        }
        interleave_chunk(dst, stepk4, K, Kp, [&](size_t k) {
          __m128i r = _mm_setzero_si128();
          for (size_t q = 0; q < ns; ++q)
            r = _mm_or_si128(r, _mm_and_si128(keep[q], _mm_loadu_si128(reinterpret_cast<const __m128i*>(xp + base[q] + koff[k]))));
          return r;
        });
      } else {
        interleave_chunk(dst, stepk4, K, Kp, [&](size_t k) {
          alignas(16) uint8_t t[16];
          for (size_t l = 0; l < 16; ++l) t[l] = l < valid ? xp[moff[m + l] + koff[k]] : 0;
          return _mm_load_si128(reinterpret_cast<const __m128i*>(t));
        });
      }
    }
  }
}

int64_t qgemm_panels(const uint8_t* panels, size_t M, const uint8_t* qw, const QOut& oin) {
  QOut o = oin;
  QwHeader h;
  std::memcpy(&h, qw, sizeof h);
  const QPanelFn fn = kern::u8s8_qgemm_panel.variant(static_cast<Isa>(h.isa));
  const size_t Mp = round_up(M, 16);
  int64_t zeros = 0;
  for (size_t m0 = 0; m0 < Mp; m0 += kPanel) {
    o.aMax = max_u8(panels + m0 * h.Kp, std::min(kPanel, Mp - m0) * h.Kp);  // this panel's operand range
    fn(panels + m0 * h.Kp, std::min(kPanel, Mp - m0), m0, M, h, qw + kQwHeaderBytes, 0, h.Np, o, &zeros);
  }
  return zeros;
}

int64_t qgemm_u8s8(const uint8_t* A, size_t M, size_t K, size_t lda, const uint8_t* qw, const QOut& oin, QConvPath path,
                   QBlocked bl) {
  QwHeader h;
  std::memcpy(&h, qw, sizeof h);
  // Row-major [M][N] output of dense rows, or blocked: a 1 x 1 convolution of M images of K
  // channels, which the direct kernel runs without packing (16 rows in the vector lanes)
  const bool mn = bl.out || (oin.strideN == 1 && oin.strideImg == 0 && oin.P >= int64_t(M) && oin.strideP == int64_t(h.N));
  if (path != QConvPath::Gemm && !oin.corr && lda == K && mn && qconv_direct_applies(qw, K, 1, 1, 1, 1, 1, 0, 1, 1, oin.mode))
    return qconv2d_direct_u8(A, M, K, 1, 1, qw, 1, 1, 1, 0, 1, 1, oin, bl.in, bl.out);
  if (bl.in || bl.out) {  // convert around the panel GEMM
    std::vector<uint8_t> rows, outRows;
    if (bl.in) {
      rows.resize(M * K);
      qunblock(A, M, K, 1, rows.data());
    }
    QOut o = oin;
    const size_t elem = oin.mode == QOutMode::Codes ? 1 : 4;
    if (bl.out) {
      outRows.resize(M * h.N * elem);
      o.data = outRows.data();
      o.P = int64_t(std::max<size_t>(M, 1)); o.strideImg = 0; o.strideP = int64_t(h.N); o.strideN = 1;
    }
    const int64_t z = qgemm_u8s8(bl.in ? rows.data() : A, M, K, bl.in ? K : lda, qw, o, QConvPath::Gemm);
    if (bl.out) qblock(outRows.data(), M, h.N, elem, oin.data);
    return z;
  }
  QOut o = oin;
  const QPanelFn fn = kern::u8s8_qgemm_panel.variant(static_cast<Isa>(h.isa));
  const size_t Mp = round_up(M, 16), np = (Mp + kPanel - 1) / kPanel;
  std::unique_ptr<uint8_t[]> panels(new uint8_t[qpanels_bytes(M, K)]);  // every byte is written by pack_panel
  parallel_for(np, [&](size_t p) { pack_panel(A, M, K, lda, p, panels.get()); });
  // tasks: panel x chunk of 128 channels (a multiple of every layout block)
  constexpr size_t kChunk = 128;
  const size_t nc = (h.Np + kChunk - 1) / kChunk;
  std::vector<int64_t> zeros(np * nc, 0);
  parallel_for(np * nc, [&](size_t t) {
    const size_t p = t / nc, c = t % nc, m0 = p * kPanel, Wp = std::min(kPanel, Mp - m0);
    QOut op = o;
    op.aMax = max_u8(panels.get() + m0 * h.Kp, Wp * h.Kp);  // this panel's operand range (kernel choice)
    fn(panels.get() + m0 * h.Kp, Wp, m0, M, h, qw + kQwHeaderBytes, c * kChunk, std::min<size_t>(h.Np, (c + 1) * kChunk), op,
       &zeros[t]);
  });
  int64_t z = 0;
  for (int64_t v : zeros) z += v;
  return z;
}

namespace {
// The im2col + panel GEMM path of a convolution over plain [B][C][H][W] input, parallel over
// groups of images; with pooling (Codes), each task pools its group's int32 accumulators (still
// in cache, in a per-thread buffer) and requantises only the pooled values (pool_requant_*) into
// out [B][O][PH][PW]: k*k fewer requantisations, no pass over memory and no parallel region of
// its own. Returns the zero codes before pooling.
int64_t conv_gemm(const uint8_t* x, size_t B, size_t C, size_t H, size_t W, const uint8_t* qw, size_t kh, size_t kw,
                  size_t stride, size_t pad, size_t poolK, size_t poolStride, QOut o) {
  QwHeader h;
  std::memcpy(&h, qw, sizeof h);
  const QPanelFn fn = kern::u8s8_qgemm_panel.variant(static_cast<Isa>(h.isa));
  const size_t OH = conv_out(H, kh, stride, pad), OW = conv_out(W, kw, stride, pad), P = OH * OW;
  const size_t K = C * kh * kw, N = h.N;
  // images per task: enough rows for a few panels, at most ~4 MB of im2col per task
  size_t G = std::max<size_t>(1, std::min<size_t>(B, (192 + P - 1) / P));
  while (G > 1 && round_up(G * P, 16) * round_up(K, 4) > (size_t(4) << 20)) --G;
  const size_t groups = (B + G - 1) / G;
  o.P = int64_t(P);
  o.strideImg = int64_t(N * P);
  o.strideP = 1;
  o.strideN = int64_t(P);
  std::vector<int64_t> zeros(groups, 0);
  const bool pool = o.mode == QOutMode::Codes && (poolK > 1 || poolStride > 1);  // (contract: pooling takes Codes)
  const size_t PH = (OH - poolK) / poolStride + 1, PW = (OW - poolK) / poolStride + 1, PP = pool ? PH * PW : 0;
  // pooling: the tasks write int32 accumulators and pool before requantising (pool_requant_*),
  // with the per-channel sign masks and zero thresholds found once here
  // (with a per-position term the code is not monotone in acc across positions: requantise every
  // output, then max-pool the group's codes)
  const bool poolCodes = pool && o.corr;
  std::vector<int32_t> negm(pool && !poolCodes ? N : 0), zt(pool && !poolCodes ? N : 0);
  for (size_t n = 0; n < negm.size(); ++n) {
    negm[n] = o.scale[n] < 0.0 ? -1 : 0;
    zt[n] = qrq::zero_threshold(o.scale[n], o.bias[n], negm[n], o, int64_t(K) * 255 * 128);
  }
  const double inv = qrq::inv_of(o);
#if FL_X86
  const auto poolFn = static_cast<Isa>(h.isa) == Isa::Scalar ? pool_requant_scalar : pool_requant_avx2;
#else
  const auto poolFn = pool_requant_scalar;  // weights packed for the scalar layout (the only one off x86)
#endif
  parallel_for(groups, [&](size_t t) {
    const size_t g0 = t * G, gi = std::min(G, B - g0), M = gi * P, Mp = round_up(M, 16);
    uint8_t* panels = tls_buffer(0, qpanels_bytes(M, K));
    uint8_t* scratch = tls_buffer(1, qim2col_scratch_bytes(gi, C, H, W, kh, kw, stride, pad));
    qim2col(x + g0 * C * H * W, gi, C, H, W, kh, kw, stride, pad, panels, scratch);
    QOut og = o;
    og.aMax = max_u8(x + g0 * C * H * W, gi * C * H * W);  // this task's operand range (kernel choice)
    if (poolCodes) og.data = tls_buffer(2, gi * N * P);
    else if (pool) { og.mode = QOutMode::Int32; og.data = tls_buffer(2, (gi * N * P + PH * OW) * 4); }  // + pooled scratch (>= PP)
    else og.data = static_cast<uint8_t*>(o.data) + g0 * N * P * elem_bytes(o.mode);
    for (size_t m0 = 0; m0 < Mp; m0 += kPanel)
      fn(panels + m0 * h.Kp, std::min(kPanel, Mp - m0), m0, M, h, qw + kQwHeaderBytes, 0, h.Np, og, &zeros[t]);
    if (!pool) return;
    if (poolCodes) {  // (inside a task the pool's parallel_for runs on this thread)
      maxpool2d_u8(static_cast<uint8_t*>(og.data), gi * N, OH, OW, poolK, poolStride, static_cast<uint8_t*>(o.data) + g0 * N * PP);
      return;
    }
    const int32_t* acc = static_cast<const int32_t*>(og.data);
    int32_t* pooled = static_cast<int32_t*>(og.data) + gi * N * P;
    for (size_t j = 0; j < gi * N; ++j) {
      const size_t n = j % N;
      const PoolRq r{OH, OW, poolK, poolStride, PH, PW, negm[n], zt[n], o.scale[n], o.bias[n], inv, o.levels};
      zeros[t] += poolFn(acc + j * P, r, pooled, static_cast<uint8_t*>(o.data) + (g0 * N + j) * PP);
    }
  });
  int64_t z = 0;
  for (int64_t v : zeros) z += v;
  return z;
}

}  // namespace

namespace {
bool use_direct(const uint8_t* qw, size_t C, size_t H, size_t W, size_t kh, size_t kw, size_t stride, size_t pad, size_t pk,
                size_t ps, QOutMode mode, QConvPath path, const double* corr) {
  (void)corr;  // the direct kernel takes the per-position term too
  // wherever it applies (measured faster than im2col + GEMM for LeNet-5's layers and for every
  // ResNet-18 layer, 16 to 512 channels, on AVX-512 VNNI and AVX2)
  return path != QConvPath::Gemm && qconv_direct_applies(qw, C, H, W, kh, kw, stride, pad, pk, ps, mode);
}
}  // namespace

bool qconv_runs_direct(const uint8_t* qw, size_t C, size_t H, size_t W, size_t kh, size_t kw, size_t stride, size_t pad,
                       size_t poolK, size_t poolStride, QOutMode mode, bool dense) {
  if (dense) return qconv_direct_applies(qw, C, 1, 1, 1, 1, 1, 0, 1, 1, mode);  // qgemm_u8s8's rule (dense rows, no corr)
  return use_direct(qw, C, H, W, kh, kw, stride, pad, poolK, poolStride, mode, QConvPath::Auto, nullptr);
}

int64_t qconv2d_pool_u8(const uint8_t* x, size_t B, size_t C, size_t H, size_t W, const uint8_t* qw, size_t kh, size_t kw,
                        size_t stride, size_t pad, size_t poolK, size_t poolStride, QOut o, QConvPath path, QBlocked bl) {
  if (use_direct(qw, C, H, W, kh, kw, stride, pad, poolK, poolStride, o.mode, path, o.corr))
    return qconv2d_direct_u8(x, B, C, H, W, qw, kh, kw, stride, pad, poolK, poolStride, o, bl.in, bl.out);
  QwHeader h;
  std::memcpy(&h, qw, sizeof h);
  const size_t OH = conv_out(H, kh, stride, pad), OW = conv_out(W, kw, stride, pad);
  const size_t PH = (OH - poolK) / poolStride + 1, PW = (OW - poolK) / poolStride + 1;
  if (bl.in || bl.out) {  // convert around the plain fused path
    std::vector<uint8_t> rows(bl.in ? B * C * H * W : 0), p(bl.out ? B * h.N * PH * PW : 0);
    if (bl.in) qunblock(x, B, C * H * W, 1, rows.data());
    QOut oc = o;
    if (bl.out) oc.data = p.data();
    const int64_t z = conv_gemm(bl.in ? rows.data() : x, B, C, H, W, qw, kh, kw, stride, pad, poolK, poolStride, oc);
    if (bl.out) qblock(p.data(), B, h.N * PH * PW, 1, o.data);
    return z;
  }
  return conv_gemm(x, B, C, H, W, qw, kh, kw, stride, pad, poolK, poolStride, o);
}

int64_t qconv2d_u8(const uint8_t* x, size_t B, size_t C, size_t H, size_t W, const uint8_t* qw, size_t kh, size_t kw,
                   size_t stride, size_t pad, QOut o, QConvPath path, QBlocked bl) {
  if (use_direct(qw, C, H, W, kh, kw, stride, pad, 1, 1, o.mode, path, o.corr))
    return qconv2d_direct_u8(x, B, C, H, W, qw, kh, kw, stride, pad, 1, 1, o, bl.in, bl.out);
  if (bl.in || bl.out) {  // convert around the im2col path
    QwHeader h;
    std::memcpy(&h, qw, sizeof h);
    const size_t E = h.N * conv_out(H, kh, stride, pad) * conv_out(W, kw, stride, pad);
    const size_t elem = o.mode == QOutMode::Codes ? 1 : 4;
    std::vector<uint8_t> rows(bl.in ? B * C * H * W : 0), outRows(bl.out ? B * E * elem : 0);
    if (bl.in) qunblock(x, B, C * H * W, 1, rows.data());
    QOut oc = o;
    if (bl.out) oc.data = outRows.data();
    const int64_t z = qconv2d_u8(bl.in ? rows.data() : x, B, C, H, W, qw, kh, kw, stride, pad, oc, QConvPath::Gemm);
    if (bl.out) qblock(outRows.data(), B, E, elem, o.data);
    return z;
  }
  return conv_gemm(x, B, C, H, W, qw, kh, kw, stride, pad, 1, 1, o);
}

}  // namespace fl
