// Small stride-1 convolutions on AVX-512 with 16 images per vector (contracts in flatenn/f32.h:
// conv2d_lanes_applies, conv2d_lanes_forward_avx512, conv2d_lanes_backward_avx512), used by
// conv2d's AVX-512 variant in place of im2col + sgemm (forward, dw) and sgemm + col2im (dx).
//
// Why: LeNet-5's convolutions are small (K = C*KH*KW = 25 and 150, O = 6 and 16). On the GEMM path
// most of their backward time went to writing column matrices (25 or 150 floats per output
// position) and reading them back, and `flatenn bench kernels --filter conv-bwd` measured 18% and
// 38% of the FMA peak. Vectorising over output columns instead wastes lanes on rows of 10 or 28.
// Here a vector holds one position of 16 images, so every lane is useful and no load is masked:
//
//   per block of 16 images (the last one may be partial; its missing images are zeros):
//     xT[c][hp][wp][l]  = x of image l at (hp - pad, wp - pad), the pad value outside the image
//     dyT[o][oh][ow][l] = dy of image l
//     dw  (block partial)[o][c][kh][kw] = lane sum of  sum over oh, ow of dyT[o][oh][ow] * xT[c][oh + kh][ow + kw]
//     dxT[c][ih][iw]    = sum over o, kh, kw (dy position inside the output) of dyT[o][ih + pad - kh][iw + pad - kw] * w[o][c][kh][kw]
//   dw = the block partials summed in block order; dx = dxT transposed back.
//   forward: yT[o][oh][ow] = (sum over c, kh, kw of w[o][c][kh][kw] * xT[c][oh + kh][ow + kw]) + bias[o];
//   y = yT transposed back.
//
// The forward keeps one accumulator per output channel of a group of up to 16 (per term one input
// vector and one FMA per channel with the weight broadcast): each output is one FMA chain over
// k = (c, kh, kw) in increasing order from +0, then + bias, which is exactly what im2col + the
// packed sgemm compute for K = C*KH*KW <= 256 (one K block): the same bits as the GEMM path
// (tested bit for bit). The backward's sums are its own:
//
// dw keeps one accumulator per (o, kw) of a group of up to 4 output channels through a (c, kh)
// pass over the output positions (per position: the group's dy vectors, KW input vectors and
// 4 * KW FMAs), then sums each accumulator's 16 lanes in a fixed order. dx keeps one accumulator
// per input channel of a group of up to 8 (per term: one dy vector and one FMA per channel with
// the weight broadcast); each dx element is one FMA chain over (o, kh, kw) in that order from +0.
// A task is one block of images (the images' gradients do not interact except in dw's block
// sum), so the bits do not depend on the thread count; they differ from the GEMM path's (another
// summation order), so AVX-512 training has its own weight bits, as scalar training already had
// (DESIGN §2; test/train/golden.test.ts).
#include "flatenn/core.h"  // FL_X86
#if FL_X86
#include <immintrin.h>
#endif

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "flatenn/f32.h"
#include "scratch.h"

namespace fl {

namespace {
constexpr int64_t kLanes = 16, kMaxK = 7, kDwGroup = 4, kDxGroup = 8, kFwdGroup = 16;
}  // namespace

bool conv2d_lanes_applies(const ConvShape& s) {
  // small layers: few channels either side (the GEMM path reuses each packed panel across many
  // rows once they grow), kernels up to 7x7, at least one full block of 16 images (a smaller batch
  // would leave most lanes empty); the 16-image gather offsets fit in 32 bits
  return s.stride == 1 && s.O >= 1 && s.O <= 32 && s.C >= 1 && s.C <= 32 && s.KH >= 1 && s.KH <= kMaxK && s.KW >= 1 &&
         s.KW <= kMaxK && s.OH() >= 1 && s.OW() >= 1 && s.N >= kLanes && s.H <= 256 && s.W <= 256;
}

bool conv2d_lanes_forward_applies(const ConvShape& s) {
  // one K block of the packed sgemm: the same FMA chain per output as the GEMM path
  return conv2d_lanes_applies(s) && s.CKK() <= 256;
}

#if FL_X86
// GCC 12's AVX-512 headers build unpack/shuffle results from an uninitialised vector, which
// -Wuninitialized reports once they are inlined (GCC PR 105593, fixed in 13).
#pragma GCC diagnostic ignored "-Wuninitialized"
namespace {
#define FL_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl")))

thread_local Scratch tl_xT, tl_dyT, tl_dxT;

struct Geo {
  int64_t C, H, W, O, OH, OW, KH, KW, pad, Hp, Wp;
};

// lane l: offset of image l (l * stride floats); lanes past nb are masked off
FL_AVX512 inline __m512i image_offsets(int64_t stride) {
  return _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), _mm512_set1_epi32(int32_t(stride)));
}

// xT[c][hp][wp][l] (padded by pad on every side with the pad value; 0 in lanes l >= nb)
FL_AVX512 void gather_x(const float* x, const Geo& g, const float* pv, int64_t nb, float* xT) {
  const int64_t HW = g.H * g.W;
  const __m512i off = image_offsets(g.C * HW);
  const __mmask16 m = __mmask16((1u << nb) - 1u);
  for (int64_t c = 0; c < g.C; ++c) {
    const __m512 padv = _mm512_maskz_mov_ps(m, _mm512_set1_ps(pv ? pv[c] : 0.0f));
    for (int64_t hp = 0; hp < g.Hp; ++hp) {
      const int64_t ih = hp - g.pad;
      float* d = xT + (c * g.Hp + hp) * g.Wp * kLanes;
      for (int64_t wp = 0; wp < g.Wp; ++wp, d += kLanes) {
        const int64_t iw = wp - g.pad;
        if (ih < 0 || ih >= g.H || iw < 0 || iw >= g.W) _mm512_store_ps(d, padv);
        else _mm512_store_ps(d, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, off, x + c * HW + ih * g.W + iw, 4));
      }
    }
  }
}

// dst row c (16 floats at dst + c * dstStride) = column c of the 16 x 16 matrix whose row r is
// the 16 floats at src + r * srcStride
FL_AVX512 void transpose16(const float* src, int64_t srcStride, float* dst, int64_t dstStride) {
  __m512 r[16], t[16];
#pragma GCC unroll 16
  for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(src + i * srcStride);
#pragma GCC unroll 8
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);      // per 128-bit lane: a0 b0 a1 b1
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);  // a2 b2 a3 b3
  }
#pragma GCC unroll 4
  for (int i = 0; i < 16; i += 4) {  // per lane: column j of rows i .. i+3
    r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
    r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
    r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
#pragma GCC unroll 4
  for (int j = 0; j < 4; ++j) {
    t[j] = _mm512_shuffle_f32x4(r[j], r[j + 4], 0x88);       // rows 0-7: columns j, j + 8
    t[j + 4] = _mm512_shuffle_f32x4(r[j], r[j + 4], 0xDD);   // rows 0-7: columns j + 4, j + 12
    t[j + 8] = _mm512_shuffle_f32x4(r[j + 8], r[j + 12], 0x88);
    t[j + 12] = _mm512_shuffle_f32x4(r[j + 8], r[j + 12], 0xDD);
  }
#pragma GCC unroll 8
  for (int j = 0; j < 8; ++j) {
    _mm512_storeu_ps(dst + j * dstStride, _mm512_shuffle_f32x4(t[j], t[j + 8], 0x88));
    _mm512_storeu_ps(dst + (j + 8) * dstStride, _mm512_shuffle_f32x4(t[j], t[j + 8], 0xDD));
  }
}

// dyT[o][p][l] (0 in lanes l >= nb): 16 x 16 transposes for a full block, gathers otherwise
FL_AVX512 void gather_dy(const float* dy, const Geo& g, int64_t nb, float* dyT) {
  const int64_t P = g.OH * g.OW, items = g.O * P;
  int64_t i = 0;
  if (nb == kLanes)
    for (; i + 16 <= items; i += 16) transpose16(dy + i, items, dyT + i * kLanes, kLanes);
  const __m512i off = image_offsets(items);
  const __mmask16 m = __mmask16((1u << nb) - 1u);
  for (; i < items; ++i) _mm512_store_ps(dyT + i * kLanes, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, off, dy + i, 4));
}

// part[o][c][kh][kw] for o in [o0, o0 + OG): one block's dw
template <int OG, int KW>
FL_AVX512 void dw_group(const float* xT, const float* dyT, const Geo& g, int64_t c, int64_t o0, float* part) {
  const int64_t P = g.OH * g.OW, CKK = g.C * g.KH * KW;
  const float* xc = xT + c * g.Hp * g.Wp * kLanes;
  for (int64_t kh = 0; kh < g.KH; ++kh) {
    __m512 a[OG][KW];
#pragma GCC unroll 4
    for (int j = 0; j < OG; ++j)
#pragma GCC unroll 7
      for (int kw = 0; kw < KW; ++kw) a[j][kw] = _mm512_setzero_ps();
    for (int64_t oh = 0; oh < g.OH; ++oh) {
      const float* xr = xc + (oh + kh) * g.Wp * kLanes;
      const float* dr = dyT + (o0 * P + oh * g.OW) * kLanes;
      for (int64_t ow = 0; ow < g.OW; ++ow) {
        __m512 d[OG];
#pragma GCC unroll 4
        for (int j = 0; j < OG; ++j) d[j] = _mm512_load_ps(dr + (j * P + ow) * kLanes);
#pragma GCC unroll 7
        for (int kw = 0; kw < KW; ++kw) {
          const __m512 xv = _mm512_load_ps(xr + (ow + kw) * kLanes);
#pragma GCC unroll 4
          for (int j = 0; j < OG; ++j) a[j][kw] = _mm512_fmadd_ps(d[j], xv, a[j][kw]);
        }
      }
    }
    for (int j = 0; j < OG; ++j)
      for (int kw = 0; kw < KW; ++kw) part[(o0 + j) * CKK + (c * g.KH + kh) * KW + kw] = _mm512_reduce_add_ps(a[j][kw]);
  }
}

using DwFn = void (*)(const float*, const float*, const Geo&, int64_t, int64_t, float*);

template <int OG>
DwFn dw_for_kw(int64_t kw) {
  switch (kw) {
    case 1: return dw_group<OG, 1>;
    case 2: return dw_group<OG, 2>;
    case 3: return dw_group<OG, 3>;
    case 4: return dw_group<OG, 4>;
    case 5: return dw_group<OG, 5>;
    case 6: return dw_group<OG, 6>;
    default: return dw_group<OG, 7>;
  }
}

DwFn dw_fn(int64_t og, int64_t kw) {
  switch (og) {
    case 1: return dw_for_kw<1>(kw);
    case 2: return dw_for_kw<2>(kw);
    case 3: return dw_for_kw<3>(kw);
    default: return dw_for_kw<4>(kw);
  }
}

// dxT[c][ih][iw][l] for c in [c0, c0 + CG): one block's dx
template <int CG>
FL_AVX512 void dx_group(const float* dyT, const float* w, const Geo& g, int64_t c0, float* dxT) {
  const int64_t P = g.OH * g.OW, KK = g.KH * g.KW, HW = g.H * g.W;
  for (int64_t ih = 0; ih < g.H; ++ih) {
    // kh with 0 <= oh = ih + pad - kh < OH
    const int64_t kh0 = std::max<int64_t>(0, ih + g.pad - g.OH + 1), kh1 = std::min(g.KH, ih + g.pad + 1);
    for (int64_t iw = 0; iw < g.W; ++iw) {
      const int64_t kw0 = std::max<int64_t>(0, iw + g.pad - g.OW + 1), kw1 = std::min(g.KW, iw + g.pad + 1);
      __m512 acc[CG];
#pragma GCC unroll 8
      for (int j = 0; j < CG; ++j) acc[j] = _mm512_setzero_ps();
      for (int64_t o = 0; o < g.O; ++o) {
        const float* wo = w + (o * g.C + c0) * KK;
        const float* dyo = dyT + o * P * kLanes;
        for (int64_t kh = kh0; kh < kh1; ++kh) {
          const float* dr = dyo + ((ih + g.pad - kh) * g.OW + iw + g.pad) * kLanes;
          const float* wk = wo + kh * g.KW;
          for (int64_t kw = kw0; kw < kw1; ++kw) {
            const __m512 dv = _mm512_load_ps(dr - kw * kLanes);
#pragma GCC unroll 8
            for (int j = 0; j < CG; ++j) acc[j] = _mm512_fmadd_ps(dv, _mm512_set1_ps(wk[j * KK + kw]), acc[j]);
          }
        }
      }
#pragma GCC unroll 8
      for (int j = 0; j < CG; ++j) _mm512_store_ps(dxT + ((c0 + j) * HW + ih * g.W + iw) * kLanes, acc[j]);
    }
  }
}

using DxFn = void (*)(const float*, const float*, const Geo&, int64_t, float*);
DxFn dx_fn(int64_t cg) {
  switch (cg) {
    case 1: return dx_group<1>;
    case 2: return dx_group<2>;
    case 3: return dx_group<3>;
    case 4: return dx_group<4>;
    case 5: return dx_group<5>;
    case 6: return dx_group<6>;
    case 7: return dx_group<7>;
    default: return dx_group<8>;
  }
}

// dst[l][i] = T[i][l] for i < items, l < nb (images l of a block, each `items` floats)
FL_AVX512 void untranspose(const float* T, int64_t items, int64_t nb, float* dst) {
  int64_t i = 0;
  if (nb == kLanes)
    for (; i + 16 <= items; i += 16) transpose16(T + i * kLanes, kLanes, dst + i, items);
  const __m512i off = image_offsets(items);
  const __mmask16 m = __mmask16((1u << nb) - 1u);
  for (; i < items; ++i) _mm512_mask_i32scatter_ps(dst + i, m, off, _mm512_load_ps(T + i * kLanes), 4);
}

// yT[o][p][l] for o in [o0, o0 + OG): one block's forward, + bias[o] (one more rounding) if given
template <int OG>
FL_AVX512 void fwd_group(const float* xT, const float* w, const float* bias, const Geo& g, int64_t o0, float* yT) {
  const int64_t CKK = g.C * g.KH * g.KW, P = g.OH * g.OW;
  const float* wg = w + o0 * CKK;
  for (int64_t oh = 0; oh < g.OH; ++oh)
    for (int64_t ow = 0; ow < g.OW; ++ow) {
      __m512 acc[OG];
#pragma GCC unroll 16
      for (int j = 0; j < OG; ++j) acc[j] = _mm512_setzero_ps();
      for (int64_t c = 0; c < g.C; ++c)
        for (int64_t kh = 0; kh < g.KH; ++kh) {
          const float* xr = xT + ((c * g.Hp + oh + kh) * g.Wp + ow) * kLanes;
          const float* wk = wg + (c * g.KH + kh) * g.KW;
          for (int64_t kw = 0; kw < g.KW; ++kw) {
            const __m512 xv = _mm512_load_ps(xr + kw * kLanes);
#pragma GCC unroll 16
            for (int j = 0; j < OG; ++j) acc[j] = _mm512_fmadd_ps(_mm512_set1_ps(wk[j * CKK + kw]), xv, acc[j]);
          }
        }
      if (bias)
#pragma GCC unroll 16
        for (int j = 0; j < OG; ++j) acc[j] = _mm512_add_ps(acc[j], _mm512_set1_ps(bias[o0 + j]));
#pragma GCC unroll 16
      for (int j = 0; j < OG; ++j) _mm512_store_ps(yT + ((o0 + j) * P + oh * g.OW + ow) * kLanes, acc[j]);
    }
}

using FwdFn = void (*)(const float*, const float*, const float*, const Geo&, int64_t, float*);
template <int... I>
constexpr FwdFn fwd_fn_of(int64_t og, std::integer_sequence<int, I...>) {
  FwdFn f = nullptr;
  ((f = og == I + 1 ? fwd_group<I + 1> : f), ...);
  return f;
}
FwdFn fwd_fn(int64_t og) { return fwd_fn_of(og, std::make_integer_sequence<int, int(kFwdGroup)>{}); }

}  // namespace

Geo geo_of(const ConvShape& s) { return Geo{s.C, s.H, s.W, s.O, s.OH(), s.OW(), s.KH, s.KW, s.pad, s.H + 2 * s.pad, s.W + 2 * s.pad}; }

void conv2d_lanes_forward_avx512(const float* x, const float* w, const float* bias, float* y, const ConvShape& s, const float* pv) {
  const Geo g = geo_of(s);
  const int64_t blocks = (s.N + kLanes - 1) / kLanes, P = g.OH * g.OW, xs = s.C * s.H * s.W, ys = s.O * P;
  const int64_t groups = (s.O + kFwdGroup - 1) / kFwdGroup, per = (s.O + groups - 1) / groups;
  parallel_for(size_t(blocks), [&](size_t b) {
    const int64_t n0 = int64_t(b) * kLanes, nb = std::min(kLanes, s.N - n0);
    float* xT = tl_xT.get(size_t(s.C * g.Hp * g.Wp * kLanes));
    gather_x(x + n0 * xs, g, pv, nb, xT);
    float* yT = tl_dyT.get(size_t(ys * kLanes));
    for (int64_t o0 = 0; o0 < s.O; o0 += per) fwd_fn(std::min(per, s.O - o0))(xT, w, bias, g, o0, yT);
    untranspose(yT, ys, nb, y + n0 * ys);
  });
}

void conv2d_lanes_backward_avx512(const float* x, const float* w, const float* dy, float* dx, float* dw, const ConvShape& s,
                              const float* pv) {
  const Geo g = geo_of(s);
  const int64_t blocks = (s.N + kLanes - 1) / kLanes, WN = s.O * s.CKK(), P = g.OH * g.OW;
  const int64_t xs = s.C * s.H * s.W, ys = s.O * P;
  // channel groups as even as possible
  const int64_t dwGroups = (s.O + kDwGroup - 1) / kDwGroup, dwPer = (s.O + dwGroups - 1) / dwGroups;
  const int64_t dxGroups = (s.C + kDxGroup - 1) / kDxGroup, dxPer = (s.C + dxGroups - 1) / dxGroups;
  std::vector<float> parts(dw ? size_t(blocks * WN) : 0);
  parallel_for(size_t(blocks), [&](size_t b) {
    const int64_t n0 = int64_t(b) * kLanes, nb = std::min(kLanes, s.N - n0);
    float* dyT = tl_dyT.get(size_t(ys * kLanes));
    gather_dy(dy + n0 * ys, g, nb, dyT);
    if (dw) {
      float* xT = tl_xT.get(size_t(s.C * g.Hp * g.Wp * kLanes));
      gather_x(x + n0 * xs, g, pv, nb, xT);
      float* part = parts.data() + int64_t(b) * WN;
      for (int64_t c = 0; c < s.C; ++c)
        for (int64_t o0 = 0; o0 < s.O; o0 += dwPer) dw_fn(std::min(dwPer, s.O - o0), s.KW)(xT, dyT, g, c, o0, part);
    }
    if (dx) {
      float* dxT = tl_dxT.get(size_t(xs * kLanes));
      for (int64_t c0 = 0; c0 < s.C; c0 += dxPer) dx_fn(std::min(dxPer, s.C - c0))(dyT, w, g, c0, dxT);
      untranspose(dxT, xs, nb, dx + n0 * xs);
    }
  });
  // dw = the block partials in block order
  if (dw) sum_parts_in_order(parts.data(), blocks, WN, dw);
}
#endif

}  // namespace fl
