// im2col / col2im for NCHW convolutions (one image; contract in flatenn/f32.h).
//   x   : (C, H, W)
//   col : (C*KH*KW, OH*OW), row r = (c*KH + kh)*KW + kw, column p = oh*OW + ow, row stride ldcol
//         (im2col may produce a block of output rows [oh0, oh1) only)
// A padded position (ih or iw outside the image) holds pad_values[c] (0 when pad_values is null).
//
// Scalar variants are the spec. SIMD variants (AVX2, AVX-512) handle stride 1 (other strides use
// the scalar code):
//   im2col: each segment (r, oh) of a col row is the input row ih shifted by kw - pad: vector
//           loads with the pad value blended into the lanes outside the image, stores per chunk;
//   col2im: each x row is accumulated in a register over (kh, kw) (the scalar order of
//           additions, so the result is bit-identical).
#include "flatenn/core.h"  // FL_X86
#if FL_X86
#include <immintrin.h>
#endif

#include <algorithm>
#include <cstring>

#include "flatenn/f32.h"
#include "lane_ptr.h"

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

void im2col_scalar(const float* x, float* col, int64_t ldcol, const ConvShape& s, const float* pv, int64_t oh0, int64_t oh1) {
  const int64_t OW = s.OW();
  for (int64_t c = 0; c < s.C; ++c) {
    const float padv = pv ? pv[c] : 0.0f;
    for (int64_t kh = 0; kh < s.KH; ++kh) {
      for (int64_t kw = 0; kw < s.KW; ++kw) {
        float* dst = col + ((c * s.KH + kh) * s.KW + kw) * ldcol;
        int64_t lo, hi;
        valid_range(kw, s.stride, s.pad, s.W, OW, &lo, &hi);
        for (int64_t oh = oh0; oh < oh1; ++oh) {
          float* d = dst + (oh - oh0) * OW;
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

// Lanes kw in [0, KW) with 0 <= iw0 + kw < W, as a bit mask.
inline uint32_t valid_lanes(int64_t iw0, int64_t KW, int64_t W) {
  const int64_t lo = std::max<int64_t>(0, -iw0), hi = std::min<int64_t>(KW, W - iw0);
  if (hi <= lo) return 0;
  return uint32_t(((uint64_t(1) << hi) - 1) & ~((uint64_t(1) << lo) - 1));
}

// Lanes l in [0, cnt) with 0 <= iw0 + l < W (cnt <= 16), as a bit mask.
inline uint32_t segment_lanes(int64_t iw0, int64_t cnt, int64_t W) { return valid_lanes(iw0, cnt, W); }


#if FL_X86
// Lane l of the result is all ones when bit l of bits is set.
__attribute__((target("avx2,fma"))) inline __m256i bits_to_mask(uint32_t bits) {
  const __m256i b = _mm256_set1_epi32(int(bits));
  const __m256i sel = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
  return _mm256_cmpeq_epi32(_mm256_and_si256(b, sel), sel);
}

__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl"))) inline void put512(float* d, __m512 v, bool full, __mmask16 tail) {
  if (full) _mm512_storeu_ps(d, v);
  else _mm512_mask_storeu_ps(d, tail, v);
}

// Loads are full 16-lane loads where the 16 floats lie inside the image (x, C*H*W floats) and
// masked loads otherwise (a masked load costs several times a plain one here); lanes outside the
// input row get the pad value by a blend. Stores are full 16-lane stores where the spill lands
// on segments of the same col row written afterwards, masked otherwise. The masks depend on
// (kw, chunk) only and are hoisted out of the oh loop.
__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl"))) void im2col_avx512(const float* x, float* col, int64_t ldcol,
                                                                                 const ConvShape& s, const float* pv,
                                                                                 int64_t oh0, int64_t oh1) {
  if (s.stride != 1) { im2col_scalar(x, col, ldcol, s, pv, oh0, oh1); return; }
  // the shape in locals: the vector stores may alias anything, so fields of `s` would be reloaded
  const int64_t C = s.C, H = s.H, W = s.W, KH = s.KH, KW = s.KW, pad = s.pad;
  const int64_t OW = s.OW(), xn = C * H * W, nb = (oh1 - oh0) * OW;
  for (int64_t c = 0; c < C; ++c) {
    const __m512 padv = _mm512_set1_ps(pv ? pv[c] : 0.0f);
    for (int64_t kh = 0; kh < KH; ++kh) {
      // rows oh in [oh0, oh1) with 0 <= ih = oh - pad + kh < H are [lo, hi)
      const int64_t lo = std::min(oh1, std::max(oh0, pad - kh));
      const int64_t hi = std::max(lo, std::min(oh1, H + pad - kh));
      for (int64_t kw = 0; kw < KW; ++kw) {
        float* dst = col + ((c * KH + kh) * KW + kw) * ldcol;
        for (int64_t ow = 0; ow < OW; ow += 16) {
          const int64_t cnt = std::min<int64_t>(16, OW - ow), iw0 = ow - pad + kw;
          const __mmask16 valid = __mmask16(segment_lanes(iw0, cnt, W));
          const __mmask16 tail = __mmask16((1u << cnt) - 1u);
          // a full store of a partial chunk spills onto the following rows' segments, which are
          // written afterwards only when the row has one chunk; never past the end of the col row
          const int64_t full_until = cnt == 16 ? oh1 : (OW <= 16 && nb >= 16 ? oh0 + (nb - 16) / OW + 1 : oh0);
          float* d = dst + ow;
          for (int64_t oh = oh0; oh < lo; ++oh) put512(d + (oh - oh0) * OW, padv, oh < full_until, tail);
          int64_t at = (c * H + lo - pad + kh) * W + iw0;  // x offset of lane 0 for row oh
          for (int64_t oh = lo; oh < hi; ++oh, at += W) {
            const __m512 v = (at >= 0 && at + 16 <= xn) ? _mm512_mask_mov_ps(padv, valid, _mm512_loadu_ps(x + at))
                                                        : _mm512_mask_loadu_ps(padv, valid, lane0(x, at));
            put512(d + (oh - oh0) * OW, v, oh < full_until, tail);
          }
          for (int64_t oh = hi; oh < oh1; ++oh) put512(d + (oh - oh0) * OW, padv, oh < full_until, tail);
        }
      }
    }
  }
}

// Per x row (c, ih) and chunk of 16 columns, the row is accumulated in a register: for kh (the
// col row oh = ih + pad - kh), for kw: acc[iw] += col[(c,kh,kw)][oh][iw + pad - kw] where that
// column lies in [0, OW). This is the scalar order of additions for every x element (kh, then
// kw; starting from 0), so the result is bit-identical to the scalar variant. col is only read
// (full loads inside the col buffer, masked loads at its end), x written once.
__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl"))) void col2im_avx512(const float* col, int64_t ldcol, float* x,
                                                                                 const ConvShape& s) {
  constexpr int64_t kMaxMasks = 512;
  const int64_t nchunk = (s.W + 15) / 16;
  if (s.stride != 1 || nchunk * s.KW > kMaxMasks) { col2im_scalar(col, ldcol, x, s); return; }
  const int64_t OH = s.OH(), OW = s.OW();
  const int64_t col_end = (s.CKK() - 1) * ldcol + OH * OW;  // readable col elements
  // mk[chunk * KW + kw], lane l: x column iw0 + l, col column ow = iw0 + l + pad - kw in [0, OW)
  __mmask16 mk[kMaxMasks];
  for (int64_t ch = 0; ch < nchunk; ++ch)
    for (int64_t kw = 0; kw < s.KW; ++kw)
      mk[ch * s.KW + kw] = __mmask16(segment_lanes(ch * 16 + s.pad - kw, std::min<int64_t>(16, s.W - ch * 16), OW));
  for (int64_t c = 0; c < s.C; ++c)
    for (int64_t ih = 0; ih < s.H; ++ih)
      for (int64_t ch = 0; ch < nchunk; ++ch) {
        const int64_t iw0 = ch * 16, cnt = std::min<int64_t>(16, s.W - iw0);
        const __mmask16* m = mk + ch * s.KW;
        __m512 acc = _mm512_setzero_ps();
        for (int64_t kh = 0; kh < s.KH; ++kh) {
          const int64_t oh = ih + s.pad - kh;
          if (oh < 0 || oh >= OH) continue;
          int64_t at = (c * s.KH + kh) * s.KW * ldcol + oh * OW + iw0 + s.pad;  // kw = 0
          for (int64_t kw = 0; kw < s.KW; ++kw, at += ldcol - 1) {
            const __m512 v = (at >= 0 && at + 16 <= col_end) ? _mm512_loadu_ps(col + at) : _mm512_maskz_loadu_ps(m[kw], lane0(col, at));
            acc = _mm512_mask_add_ps(acc, m[kw], acc, v);
          }
        }
        _mm512_mask_storeu_ps(x + (c * s.H + ih) * s.W + iw0, __mmask16((1u << cnt) - 1u), acc);
      }
}

// AVX2 (8 lanes): the AVX-512 variants' plan, with plain loads and stores wherever they are safe,
// since vmaskmovps is slow on AMD (a masked store is microcoded there). im2col walks each col row
// segment in memory order (oh, then chunk), so a full store of a partial chunk only spills onto
// positions written afterwards; the segment's last chunk stores masked.
constexpr int64_t kA2MaxChunks = 64;  // chunks of 8 per row (OW or W <= 512); wider rows: scalar

__attribute__((target("avx2,fma"))) void im2col_avx2(const float* x, float* col, int64_t ldcol, const ConvShape& s,
                                                     const float* pv, int64_t oh0, int64_t oh1) {
  const int64_t OW = s.OW(), nchunk = (OW + 7) / 8;
  if (s.stride != 1 || nchunk > kA2MaxChunks) { im2col_scalar(x, col, ldcol, s, pv, oh0, oh1); return; }
  // the shape in locals: the vector stores may alias anything, so fields of `s` would be reloaded
  const int64_t C = s.C, H = s.H, W = s.W, KH = s.KH, KW = s.KW, pad = s.pad;
  const int64_t xn = C * H * W, nb = (oh1 - oh0) * OW, tail = OW - (nchunk - 1) * 8;
  const __m256i tailm = bits_to_mask((1u << tail) - 1u);
  __m256i valid[kA2MaxChunks];
  for (int64_t c = 0; c < C; ++c) {
    const __m256 padv = _mm256_set1_ps(pv ? pv[c] : 0.0f);
    for (int64_t kh = 0; kh < KH; ++kh) {
      // rows oh in [oh0, oh1) with 0 <= ih = oh - pad + kh < H are [lo, hi)
      const int64_t lo = std::min(oh1, std::max(oh0, pad - kh));
      const int64_t hi = std::max(lo, std::min(oh1, H + pad - kh));
      for (int64_t kw = 0; kw < KW; ++kw) {
        float* d = col + ((c * KH + kh) * KW + kw) * ldcol;
        for (int64_t ch = 0; ch < nchunk; ++ch)
          valid[ch] = bits_to_mask(segment_lanes(ch * 8 - pad + kw, std::min<int64_t>(8, OW - ch * 8), W));
        int64_t at = (c * H + oh0 - pad + kh) * W - pad + kw;  // x offset of (oh, ow = 0)
        for (int64_t oh = oh0; oh < oh1; ++oh, at += W, d += OW) {
          const bool inside = oh >= lo && oh < hi;
          // the row's last chunk may store in full when its spill stays inside the segment
          const bool lastFull = tail == 8 || (oh - oh0 + 1) * OW + 8 - tail <= nb;
          for (int64_t ch = 0; ch < nchunk; ++ch) {
            const int64_t ow = ch * 8, p = at + ow;
            __m256 v = padv;
            if (inside)
              v = _mm256_blendv_ps(padv, (p >= 0 && p + 8 <= xn) ? _mm256_loadu_ps(x + p) : _mm256_maskload_ps(lane0(x, p), valid[ch]),
                                   _mm256_castsi256_ps(valid[ch]));
            if (ch + 1 < nchunk || lastFull) _mm256_storeu_ps(d + ow, v);
            else _mm256_maskstore_ps(d + ow, tailm, v);
          }
        }
      }
    }
  }
}

// Per x row (c, ih) and chunk of 8 columns, accumulated in a register in the scalar order of
// additions (kh, then kw, from +0; a lane without a col element adds +0, which leaves any sum
// other than -0 unchanged, and a sum that starts at +0 never becomes -0): bit-identical to the
// scalar variant. col is read with plain loads inside the buffer; x written once, the spill of a
// partial chunk landing on elements written afterwards (masked at the very end of x).
__attribute__((target("avx2,fma"))) void col2im_avx2(const float* col, int64_t ldcol, float* x, const ConvShape& s) {
  constexpr int64_t kMaxMasks = 512;
  const int64_t nchunk = (s.W + 7) / 8;
  if (s.stride != 1 || nchunk * s.KW > kMaxMasks) { col2im_scalar(col, ldcol, x, s); return; }
  const int64_t OH = s.OH(), OW = s.OW(), xn = s.C * s.H * s.W;
  const int64_t col_end = (s.CKK() - 1) * ldcol + OH * OW;  // readable col elements
  // mk[chunk * KW + kw], lane l: x column iw0 + l, col column ow = iw0 + l + pad - kw in [0, OW)
  __m256i mk[kMaxMasks];
  for (int64_t ch = 0; ch < nchunk; ++ch)
    for (int64_t kw = 0; kw < s.KW; ++kw)
      mk[ch * s.KW + kw] = bits_to_mask(segment_lanes(ch * 8 + s.pad - kw, std::min<int64_t>(8, s.W - ch * 8), OW));
  for (int64_t c = 0; c < s.C; ++c)
    for (int64_t ih = 0; ih < s.H; ++ih)
      for (int64_t ch = 0; ch < nchunk; ++ch) {
        const int64_t iw0 = ch * 8, cnt = std::min<int64_t>(8, s.W - iw0);
        const __m256i* m = mk + ch * s.KW;
        __m256 acc = _mm256_setzero_ps();
        for (int64_t kh = 0; kh < s.KH; ++kh) {
          const int64_t oh = ih + s.pad - kh;
          if (oh < 0 || oh >= OH) continue;
          int64_t at = (c * s.KH + kh) * s.KW * ldcol + oh * OW + iw0 + s.pad;  // kw = 0
          for (int64_t kw = 0; kw < s.KW; ++kw, at += ldcol - 1) {
            const __m256 v = (at >= 0 && at + 8 <= col_end) ? _mm256_loadu_ps(col + at) : _mm256_maskload_ps(lane0(col, at), m[kw]);
            acc = _mm256_add_ps(acc, _mm256_and_ps(v, _mm256_castsi256_ps(m[kw])));
          }
        }
        const int64_t off = (c * s.H + ih) * s.W + iw0;
        if (off + 8 <= xn) _mm256_storeu_ps(x + off, acc);
        else _mm256_maskstore_ps(x + off, bits_to_mask((1u << cnt) - 1u), acc);
      }
}

#endif  // FL_X86
Kernel<Im2colFn> k_im2col("im2col", im2col_scalar, FL_X86_ONLY(im2col_avx2), FL_X86_ONLY(im2col_avx512));
Kernel<Col2imFn> k_col2im("col2im", col2im_scalar, FL_X86_ONLY(col2im_avx2), FL_X86_ONLY(col2im_avx512));

}  // namespace

Kernel<Im2colFn>& im2col_kernel() { return k_im2col; }
Kernel<Col2imFn>& col2im_kernel() { return k_col2im; }

void im2col(const float* x, float* col, int64_t ldcol, const ConvShape& s, const float* pad_values, int64_t oh0,
            int64_t oh1) {
  k_im2col.fn(x, col, ldcol, s, pad_values, oh0, oh1);
}
void col2im(const float* col, int64_t ldcol, float* x, const ConvShape& s) { k_col2im.fn(col, ldcol, x, s); }

}  // namespace fl
