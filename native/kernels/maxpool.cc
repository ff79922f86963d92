// Max pooling, kernel k x k, stride s, no padding (contract in flatenn/f32.h).
//   x: (N, C, H, W) -> y, argmax: (N, C, OH, OW), OH = (H - k) / s + 1, OW = (W - k) / s + 1
//   argmax = h * W + w inside the (n, c) plane.
// Window order is row-major (kh, then kw). The running maximum starts at the first element and
// is replaced by an element v when v > best or v is NaN, so ties keep the first maximum and a
// NaN wins (the last NaN of the window), as in PyTorch. Every variant follows exactly this
// sequence of comparisons, so all variants agree bit for bit (values and indices).
//
// Variants: scalar (any k, s); avx2 / avx512 vectorise over 8 / 16 output columns for the
// common k = 2, s = 2 (even and odd input columns split with permutes) and fall back to scalar
// otherwise. Backward is one plain loop for every ISA (below).
#include "flatenn/core.h"  // FL_X86
#if FL_X86
#include <immintrin.h>
#endif

#include <algorithm>
#include <cstring>
#include <vector>

#include "flatenn/f32.h"
#include "scratch.h"

namespace fl {
namespace {

// One plane: x (H, W) -> y, am (OH, OW).
void pool_plane_scalar(const float* x, float* y, int32_t* am, int64_t H, int64_t W, int64_t k, int64_t s) {
  const int64_t OH = (H - k) / s + 1, OW = (W - k) / s + 1;
  for (int64_t oh = 0; oh < OH; ++oh) {
    for (int64_t ow = 0; ow < OW; ++ow) {
      const int64_t h0 = oh * s, w0 = ow * s;
      float best = x[h0 * W + w0];
      int64_t bi = h0 * W + w0;
      for (int64_t kh = 0; kh < k; ++kh) {
        for (int64_t kw = 0; kw < k; ++kw) {
          if (kh == 0 && kw == 0) continue;
          const int64_t i = (h0 + kh) * W + w0 + kw;
          const float v = x[i];
          if (v > best || v != v) { best = v; bi = i; }
        }
      }
      y[oh * OW + ow] = best;
      am[oh * OW + ow] = int32_t(bi);
    }
  }
}

void maxpool2d_forward_scalar(const float* x, float* y, int32_t* argmax, int64_t N, int64_t C, int64_t H, int64_t W,
                              int64_t k, int64_t s) {
  const int64_t OH = (H - k) / s + 1, OW = (W - k) / s + 1, planes = N * C;
  parallel_for(size_t(ceil_div64(planes, 8)), [&](size_t blk) {
    const int64_t p1 = std::min(planes, int64_t(blk + 1) * 8);
    for (int64_t p = int64_t(blk) * 8; p < p1; ++p)
      pool_plane_scalar(x + p * H * W, y + p * OH * OW, argmax + p * OH * OW, H, W, k, s);
  });
}

#if FL_X86
// ---- AVX-512, k = s = 2: 16 output columns per step ----------------------------------------
#define FL_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl")))

FL_AVX512 inline void step512(__m512& best, __m512i& bi, __m512 v, __m512i i) {
  const __mmask16 upd = _mm512_cmp_ps_mask(v, best, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  best = _mm512_mask_mov_ps(best, upd, v);
  bi = _mm512_mask_mov_epi32(bi, upd, i);
}

// Loads 2*cnt consecutive floats from p (cnt <= 16) and splits them into even / odd elements.
FL_AVX512 inline void load_split512(const float* p, int64_t cnt, __m512& even, __m512& odd) {
  const int64_t n = 2 * cnt;
  const __mmask16 m0 = n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1u);
  const __mmask16 m1 = n >= 32 ? __mmask16(0xFFFF) : (n <= 16 ? __mmask16(0) : __mmask16((1u << (n - 16)) - 1u));
  const __m512 a = _mm512_maskz_loadu_ps(m0, p), b = _mm512_maskz_loadu_ps(m1, p + 16);
  const __m512i ie = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i io = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  even = _mm512_permutex2var_ps(a, ie, b);
  odd = _mm512_permutex2var_ps(a, io, b);
}

FL_AVX512 void pool_plane_2x2_avx512(const float* x, float* y, int32_t* am, int64_t H, int64_t W) {
  const int64_t OH = (H - 2) / 2 + 1, OW = (W - 2) / 2 + 1;
  const __m512i lane2 = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  for (int64_t oh = 0; oh < OH; ++oh) {
    const float* r0 = x + (2 * oh) * W;
    const float* r1 = r0 + W;
    for (int64_t ow = 0; ow < OW; ow += 16) {
      const int64_t cnt = std::min<int64_t>(16, OW - ow);
      __m512 e0, o0, e1, o1;
      load_split512(r0 + 2 * ow, cnt, e0, o0);
      load_split512(r1 + 2 * ow, cnt, e1, o1);
      // index of window element (0, 0) per lane: 2*oh*W + 2*(ow + lane)
      const __m512i i00 = _mm512_add_epi32(_mm512_set1_epi32(int32_t(2 * oh * W + 2 * ow)), lane2);
      const __m512i one = _mm512_set1_epi32(1), rowW = _mm512_set1_epi32(int32_t(W));
      __m512 best = e0;
      __m512i bi = i00;
      step512(best, bi, o0, _mm512_add_epi32(i00, one));
      step512(best, bi, e1, _mm512_add_epi32(i00, rowW));
      step512(best, bi, o1, _mm512_add_epi32(_mm512_add_epi32(i00, rowW), one));
      const __mmask16 m = __mmask16((1u << cnt) - 1u);
      _mm512_mask_storeu_ps(y + oh * OW + ow, m, best);
      _mm512_mask_storeu_epi32(am + oh * OW + ow, m, bi);
    }
  }
}

void maxpool2d_forward_avx512(const float* x, float* y, int32_t* argmax, int64_t N, int64_t C, int64_t H, int64_t W,
                              int64_t k, int64_t s) {
  if (k != 2 || s != 2) { maxpool2d_forward_scalar(x, y, argmax, N, C, H, W, k, s); return; }
  const int64_t OH = (H - 2) / 2 + 1, OW = (W - 2) / 2 + 1, planes = N * C;
  parallel_for(size_t(ceil_div64(planes, 8)), [&](size_t blk) {
    const int64_t p1 = std::min(planes, int64_t(blk + 1) * 8);
    for (int64_t p = int64_t(blk) * 8; p < p1; ++p)
      pool_plane_2x2_avx512(x + p * H * W, y + p * OH * OW, argmax + p * OH * OW, H, W);
  });
}

// ---- AVX2, k = s = 2: 8 output columns per step ---------------------------------------------
#define FL_AVX2 __attribute__((target("avx2,fma")))

FL_AVX2 inline void step256(__m256& best, __m256i& bi, __m256 v, __m256i i) {
  const __m256 upd = _mm256_or_ps(_mm256_cmp_ps(v, best, _CMP_GT_OQ), _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
  best = _mm256_blendv_ps(best, v, upd);
  bi = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(bi), _mm256_castsi256_ps(i), upd));
}

FL_AVX2 inline __m256i first_lanes(int64_t n) {  // lanes < n set (n in 0..8)
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(int32_t(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// Loads 2*cnt consecutive floats (cnt <= 8) and splits them into even / odd elements; `full`:
// all 16 floats may be read (plain loads; lanes past cnt then hold whatever follows).
FL_AVX2 inline void load_split256(const float* p, int64_t cnt, bool full, __m256& even, __m256& odd) {
  const int64_t n = 2 * cnt;
  const __m256 a = full ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, first_lanes(std::min<int64_t>(8, n)));
  const __m256 b = full ? _mm256_loadu_ps(p + 8) : n > 8 ? _mm256_maskload_ps(p + 8, first_lanes(n - 8)) : _mm256_setzero_ps();
  // a = a0..a7, b = b0..b7; lo = a0 a1 a2 a3 | b0 b1 b2 b3, hi = a4 a5 a6 a7 | b4 b5 b6 b7
  const __m256 lo = _mm256_permute2f128_ps(a, b, 0x20), hi = _mm256_permute2f128_ps(a, b, 0x31);
  even = _mm256_shuffle_ps(lo, hi, 0x88);  // a0 a2 a4 a6 | b0 b2 b4 b6
  odd = _mm256_shuffle_ps(lo, hi, 0xDD);   // a1 a3 a5 a7 | b1 b3 b5 b7
}

// Plain loads and stores where they stay inside the plane (vmaskmovps stores are slow on AMD): a
// full store of a partial chunk spills onto the plane's next row, written afterwards; the lanes
// past cnt are never kept. Planes are split between threads, so nothing spills past a plane.
FL_AVX2 void pool_plane_2x2_avx2(const float* x, float* y, int32_t* am, int64_t H, int64_t W) {
  const int64_t OH = (H - 2) / 2 + 1, OW = (W - 2) / 2 + 1, HW = H * W, P = OH * OW;
  const __m256i lane2 = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
  for (int64_t oh = 0; oh < OH; ++oh) {
    const float* r0 = x + (2 * oh) * W;
    const float* r1 = r0 + W;
    for (int64_t ow = 0; ow < OW; ow += 8) {
      const int64_t cnt = std::min<int64_t>(8, OW - ow);
      const bool fullLoad = (2 * oh + 1) * W + 2 * ow + 16 <= HW;
      __m256 e0, o0, e1, o1;
      load_split256(r0 + 2 * ow, cnt, fullLoad, e0, o0);
      load_split256(r1 + 2 * ow, cnt, fullLoad, e1, o1);
      const __m256i i00 = _mm256_add_epi32(_mm256_set1_epi32(int32_t(2 * oh * W + 2 * ow)), lane2);
      const __m256i one = _mm256_set1_epi32(1), rowW = _mm256_set1_epi32(int32_t(W));
      __m256 best = e0;
      __m256i bi = i00;
      step256(best, bi, o0, _mm256_add_epi32(i00, one));
      step256(best, bi, e1, _mm256_add_epi32(i00, rowW));
      step256(best, bi, o1, _mm256_add_epi32(_mm256_add_epi32(i00, rowW), one));
      if (oh * OW + ow + 8 <= P) {
        _mm256_storeu_ps(y + oh * OW + ow, best);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(am + oh * OW + ow), bi);
      } else {
        const __m256i m = first_lanes(cnt);
        _mm256_maskstore_ps(y + oh * OW + ow, m, best);
        _mm256_maskstore_epi32(am + oh * OW + ow, m, bi);
      }
    }
  }
}

void maxpool2d_forward_avx2(const float* x, float* y, int32_t* argmax, int64_t N, int64_t C, int64_t H, int64_t W,
                            int64_t k, int64_t s) {
  if (k != 2 || s != 2) { maxpool2d_forward_scalar(x, y, argmax, N, C, H, W, k, s); return; }
  const int64_t OH = (H - 2) / 2 + 1, OW = (W - 2) / 2 + 1, planes = N * C;
  parallel_for(size_t(ceil_div64(planes, 8)), [&](size_t blk) {
    const int64_t p1 = std::min(planes, int64_t(blk + 1) * 8);
    for (int64_t p = int64_t(blk) * 8; p < p1; ++p)
      pool_plane_2x2_avx2(x + p * H * W, y + p * OH * OW, argmax + p * OH * OW, H, W);
  });
}

#endif  // FL_X86
// ---- backward: dx = 0, then dx[plane][argmax] += dy in output order (per plane) ----------------
// An argmax outside [0, H*W) is skipped and makes the call return false (the binding reports it:
// checking here, in parallel, instead of in a loop on the calling thread before the call).
bool pool_plane_backward_scatter(const float* g, const int32_t* a, float* d, int64_t HW, int64_t P) {
  std::memset(d, 0, sizeof(float) * size_t(HW));
  bool ok = true;
  for (int64_t i = 0; i < P; ++i) {
    const int32_t ai = a[i];
    if (ai < 0 || ai >= HW) { ok = false; continue; }
    d[ai] += g[i];
  }
  return ok;
}

bool maxpool2d_backward_impl(const float* dy, const int32_t* argmax, float* dx, int64_t N, int64_t C, int64_t H,
                             int64_t W, int64_t k, int64_t s) {
  const int64_t OH = (H - k) / s + 1, OW = (W - k) / s + 1, planes = N * C, HW = H * W, P = OH * OW;
  const int64_t nblk = ceil_div64(planes, 8);
  std::vector<char> bad(size_t(nblk), 0);
  parallel_for(size_t(nblk), [&](size_t blk) {
    const int64_t p1 = std::min(planes, int64_t(blk + 1) * 8);
    for (int64_t p = int64_t(blk) * 8; p < p1; ++p) {
      float* d = dx + p * HW;
      const float* g = dy + p * P;
      const int32_t* a = argmax + p * P;
      if (!pool_plane_backward_scatter(g, a, d, HW, P)) bad[blk] = 1;
    }
  });
  for (char b : bad)
    if (b) return false;
  return true;
}

Kernel<MaxpoolForwardFn> k_maxpool2d_forward("maxpool2d_forward", maxpool2d_forward_scalar, FL_X86_ONLY(maxpool2d_forward_avx2),
                                             FL_X86_ONLY(maxpool2d_forward_avx512));

}  // namespace

Kernel<MaxpoolForwardFn>& maxpool2d_forward_kernel() { return k_maxpool2d_forward; }

void maxpool2d_forward(const float* x, float* y, int32_t* argmax, int64_t N, int64_t C, int64_t H, int64_t W, int64_t k,
                       int64_t s) {
  k_maxpool2d_forward.fn(x, y, argmax, N, C, H, W, k, s);
}
bool maxpool2d_backward(const float* dy, const int32_t* argmax, float* dx, int64_t N, int64_t C, int64_t H, int64_t W,
                        int64_t k, int64_t s) {
  return maxpool2d_backward_impl(dy, argmax, dx, N, C, H, W, k, s);
}

}  // namespace fl
