// im2col / col2im / im2row for NCHW convolutions (one image; contract in flatenn/f32.h).
//   x   : (C, H, W)
//   col : (C*KH*KW, OH*OW), row r = (c*KH + kh)*KW + kw, column p = oh*OW + ow, row stride ldcol
//   row : (OH*OW, C*KH*KW), the transpose of col, row stride ldrow
// A padded position (ih or iw outside the image) holds pad_values[c] (0 when pad_values is null).
//
// im2col and col2im are scalar: their inner loops are contiguous runs over ow that the compiler
// vectorises at any ISA. im2row copies KW consecutive input pixels per (p, c, kh): the AVX2 and
// AVX-512 variants do that with one masked load (pad value in the masked-off lanes) and one
// masked store.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "flatenn/f32.h"

namespace fl {
namespace {

// Output columns ow whose input column iw = ow*stride - pad + kw lies inside [0, W): [lo, hi).
inline void valid_range(int64_t k, int64_t stride, int64_t pad, int64_t in, int64_t out, int64_t* lo, int64_t* hi) {
  // iw >= 0  <=>  ow >= (pad - k) / stride (rounded up);  iw < in  <=>  ow <= (in - 1 + pad - k) / stride
  const int64_t a = pad - k;
  *lo = a <= 0 ? 0 : (a + stride - 1) / stride;
  const int64_t b = in - 1 + pad - k;
  *hi = b < 0 ? 0 : std::min(out, b / stride + 1);
  if (*lo > *hi) *lo = *hi;
}

void im2col_scalar(const float* x, float* col, int64_t ldcol, const ConvShape& s, const float* pv) {
  const int64_t OH = s.OH(), OW = s.OW();
  for (int64_t c = 0; c < s.C; ++c) {
    const float padv = pv ? pv[c] : 0.0f;
    for (int64_t kh = 0; kh < s.KH; ++kh) {
      for (int64_t kw = 0; kw < s.KW; ++kw) {
        float* dst = col + ((c * s.KH + kh) * s.KW + kw) * ldcol;
        int64_t lo, hi;
        valid_range(kw, s.stride, s.pad, s.W, OW, &lo, &hi);
        for (int64_t oh = 0; oh < OH; ++oh) {
          float* d = dst + oh * OW;
          const int64_t ih = oh * s.stride - s.pad + kh;
          if (ih < 0 || ih >= s.H) {
            for (int64_t ow = 0; ow < OW; ++ow) d[ow] = padv;
            continue;
          }
          const float* src = x + (c * s.H + ih) * s.W - s.pad + kw;  // src[ow*stride] = x[c][ih][iw]
          for (int64_t ow = 0; ow < lo; ++ow) d[ow] = padv;
          if (s.stride == 1) std::memcpy(d + lo, src + lo, sizeof(float) * size_t(hi - lo));
          else for (int64_t ow = lo; ow < hi; ++ow) d[ow] = src[ow * s.stride];
          for (int64_t ow = hi; ow < OW; ++ow) d[ow] = padv;
        }
      }
    }
  }
}

// x = 0, then x[c][ih][iw] += col[r][p] for every valid (r, p), in (c, kh, kw, oh, ow) order.
void col2im_scalar(const float* col, int64_t ldcol, float* x, const ConvShape& s) {
  const int64_t OH = s.OH(), OW = s.OW();
  std::memset(x, 0, sizeof(float) * size_t(s.C * s.H * s.W));
  for (int64_t c = 0; c < s.C; ++c) {
    for (int64_t kh = 0; kh < s.KH; ++kh) {
      for (int64_t kw = 0; kw < s.KW; ++kw) {
        const float* src = col + ((c * s.KH + kh) * s.KW + kw) * ldcol;
        int64_t lo, hi;
        valid_range(kw, s.stride, s.pad, s.W, OW, &lo, &hi);
        for (int64_t oh = 0; oh < OH; ++oh) {
          const int64_t ih = oh * s.stride - s.pad + kh;
          if (ih < 0 || ih >= s.H) continue;
          float* d = x + (c * s.H + ih) * s.W - s.pad + kw;
          const float* sp = src + oh * OW;
          if (s.stride == 1) for (int64_t ow = lo; ow < hi; ++ow) d[ow] += sp[ow];
          else for (int64_t ow = lo; ow < hi; ++ow) d[ow * s.stride] += sp[ow];
        }
      }
    }
  }
}

void im2row_scalar(const float* x, float* row, int64_t ldrow, const ConvShape& s, const float* pv) {
  const int64_t OH = s.OH(), OW = s.OW();
  for (int64_t oh = 0; oh < OH; ++oh) {
    for (int64_t ow = 0; ow < OW; ++ow) {
      float* d = row + (oh * OW + ow) * ldrow;
      for (int64_t c = 0; c < s.C; ++c) {
        const float padv = pv ? pv[c] : 0.0f;
        for (int64_t kh = 0; kh < s.KH; ++kh) {
          const int64_t ih = oh * s.stride - s.pad + kh;
          for (int64_t kw = 0; kw < s.KW; ++kw) {
            const int64_t iw = ow * s.stride - s.pad + kw;
            const bool in = ih >= 0 && ih < s.H && iw >= 0 && iw < s.W;
            *d++ = in ? x[(c * s.H + ih) * s.W + iw] : padv;
          }
        }
      }
    }
  }
}

// Lanes kw in [0, KW) with 0 <= iw0 + kw < W, as a bit mask.
inline uint32_t valid_lanes(int64_t iw0, int64_t KW, int64_t W) {
  const int64_t lo = std::max<int64_t>(0, -iw0), hi = std::min<int64_t>(KW, W - iw0);
  if (hi <= lo) return 0;
  return uint32_t(((uint64_t(1) << hi) - 1) & ~((uint64_t(1) << lo) - 1));
}

// Source pointer for lane 0; computed as an integer so no out-of-range pointer is formed
// (masked-off lanes are never read: masked loads suppress faults).
inline const float* lane0(const float* rowp, int64_t iw0) {
  return reinterpret_cast<const float*>(reinterpret_cast<uintptr_t>(rowp) + uintptr_t(iw0 * int64_t(sizeof(float))));
}

// Lane l of the result is all ones when bit l of bits is set.
__attribute__((target("avx2,fma"))) inline __m256i bits_to_mask(uint32_t bits) {
  const __m256i b = _mm256_set1_epi32(int(bits));
  const __m256i sel = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
  return _mm256_cmpeq_epi32(_mm256_and_si256(b, sel), sel);
}

__attribute__((target("avx2,fma"))) void im2row_avx2(const float* x, float* row, int64_t ldrow, const ConvShape& s,
                                                     const float* pv) {
  if (s.KW > 8) { im2row_scalar(x, row, ldrow, s, pv); return; }
  const int64_t OH = s.OH(), OW = s.OW(), KW = s.KW;
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i store_mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(int(KW)), lane);
  for (int64_t oh = 0; oh < OH; ++oh) {
    for (int64_t ow = 0; ow < OW; ++ow) {
      float* d = row + (oh * OW + ow) * ldrow;
      const int64_t iw0 = ow * s.stride - s.pad;
      const __m256i vmask = bits_to_mask(valid_lanes(iw0, KW, s.W));
      for (int64_t c = 0; c < s.C; ++c) {
        const __m256 padv = _mm256_set1_ps(pv ? pv[c] : 0.0f);
        for (int64_t kh = 0; kh < s.KH; ++kh, d += KW) {
          const int64_t ih = oh * s.stride - s.pad + kh;
          __m256 v = padv;
          if (ih >= 0 && ih < s.H) {
            const __m256 ld = _mm256_maskload_ps(lane0(x + (c * s.H + ih) * s.W, iw0), vmask);
            v = _mm256_blendv_ps(padv, ld, _mm256_castsi256_ps(vmask));
          }
          _mm256_maskstore_ps(d, store_mask, v);
        }
      }
    }
  }
}

__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl"))) void im2row_avx512(const float* x, float* row,
                                                                                 int64_t ldrow, const ConvShape& s,
                                                                                 const float* pv) {
  if (s.KW > 16) { im2row_scalar(x, row, ldrow, s, pv); return; }
  const int64_t OH = s.OH(), OW = s.OW(), KW = s.KW;
  const __mmask16 store_mask = __mmask16((1u << KW) - 1u);
  for (int64_t oh = 0; oh < OH; ++oh) {
    for (int64_t ow = 0; ow < OW; ++ow) {
      float* d = row + (oh * OW + ow) * ldrow;
      const int64_t iw0 = ow * s.stride - s.pad;
      const __mmask16 vmask = __mmask16(valid_lanes(iw0, KW, s.W));
      for (int64_t c = 0; c < s.C; ++c) {
        const __m512 padv = _mm512_set1_ps(pv ? pv[c] : 0.0f);
        for (int64_t kh = 0; kh < s.KH; ++kh, d += KW) {
          const int64_t ih = oh * s.stride - s.pad + kh;
          const __m512 v = (ih >= 0 && ih < s.H) ? _mm512_mask_loadu_ps(padv, vmask, lane0(x + (c * s.H + ih) * s.W, iw0))
                                                 : padv;
          _mm512_mask_storeu_ps(d, store_mask, v);
        }
      }
    }
  }
}

Kernel<Im2colFn> k_im2col("im2col", im2col_scalar, nullptr, nullptr);
Kernel<Col2imFn> k_col2im("col2im", col2im_scalar, nullptr, nullptr);
Kernel<Im2rowFn> k_im2row("im2row", im2row_scalar, im2row_avx2, im2row_avx512);

}  // namespace

Kernel<Im2colFn>& im2col_kernel() { return k_im2col; }
Kernel<Col2imFn>& col2im_kernel() { return k_col2im; }
Kernel<Im2rowFn>& im2row_kernel() { return k_im2row; }

void im2col(const float* x, float* col, int64_t ldcol, const ConvShape& s, const float* pad_values) {
  k_im2col.fn(x, col, ldcol, s, pad_values);
}
void col2im(const float* col, int64_t ldcol, float* x, const ConvShape& s) { k_col2im.fn(col, ldcol, x, s); }
void im2row(const float* x, float* row, int64_t ldrow, const ConvShape& s, const float* pad_values) {
  k_im2row.fn(x, row, ldrow, s, pad_values);
}

}  // namespace fl
