// Direct fp32 convolution forward for small layers (contract: conv2d_direct_applies /
// conv2d_direct_forward_avx2 in flatenn/f32.h), used by conv2d's AVX2 forward in place of im2col + sgemm.
//
// Why: LeNet-5's convolutions (O = 6 and 16 output channels, C*KH*KW = 25 and 150) spend most of
// their forward time writing the im2col matrix and packing it; the GEMM itself is short. Here
// the patch values are loaded straight from x.
//
// Same bits as im2col + sgemm: for K = C*KH*KW <= 256 (one K block of the packed sgemm, alpha 1,
// beta 0) the GEMM computes every output as one FMA chain over k = (c, kh, kw) in increasing
// order, starting from +0, of w[o][k] * col[k][p] (col = the input or the pad value). This kernel
// runs that same chain per output, only laid out differently: a tile is MO <= 6 output channels x
// 16 consecutive positions of one output row (two 8-float vectors, 12 accumulators); per k, two
// loads of the input row segment (the pad value blended into the lanes outside the row), MO
// broadcasts of w and 2*MO FMAs. Lanes past the row's end compute junk that is never stored.
// Stride 1 only. The bias is added afterwards by the caller, as on the GEMM path.
#include "flatenn/core.h"  // FL_X86
#if FL_X86
#include <immintrin.h>
#endif

#include <algorithm>
#include <cstdint>

#include "flatenn/f32.h"
#include "lane_ptr.h"

namespace fl {

bool conv2d_direct_applies(const ConvShape& s) {
  // small layers only: few output channels (the GEMM reuses each col panel over many rows of w)
  // and one K block (so the chain above is the GEMM's); kernels up to 8 wide and rows up to 128
  // outputs (the masks below)
  return s.stride == 1 && s.O <= 32 && s.CKK() <= 256 && s.KW <= 8 && s.OW() >= 1 && s.OW() <= 128 && s.OH() >= 1;
}

#if FL_X86
namespace {
#define FL_AVX2 __attribute__((target("avx2,fma")))

constexpr int64_t kMaxChunks = 8;  // 16-position chunks per output row (OW <= 128)

struct Geo {
  int64_t C, H, W, KH, KW, pad, OH, OW, CKK, xn;
};

// One tile: channels [o0, o0 + MO) x positions [ow0, ow0 + n) of output row oh (n <= 16).
// inrow[kw][v]: lanes of vector v (positions ow0 + 8v + lane) whose input column ow + kw - pad
// lies in [0, W); pads[kw][v]: some lane at a real position (< OW) lies outside, so the pad value
// is blended in (junk lanes past OW may hold anything). INB: every 8-float load of the tile lies
// inside x (plain loads); otherwise loads are masked to the lanes inside the row.
template <int MO, bool INB>
FL_AVX2 void tile_avx2(const Geo& g, const float* x, const float* w, const float* pv, float* y, int64_t oh, int64_t ow0, int64_t n,
                       const __m256i (*inrow)[2], const bool (*pads)[2]) {
  __m256 acc[MO][2];
#pragma GCC unroll 6
  for (int o = 0; o < MO; ++o) acc[o][0] = acc[o][1] = _mm256_setzero_ps();
  const int64_t CKK = g.CKK, KW = g.KW;
  const float* wk = w;  // w[o][k] at wk + o * CKK, k advancing with the loops
  for (int64_t c = 0; c < g.C; ++c) {
    const __m256 padv = _mm256_set1_ps(pv ? pv[c] : 0.0f);
    for (int64_t kh = 0; kh < g.KH; ++kh) {
      const int64_t ih = oh - g.pad + kh;
      const bool rowIn = ih >= 0 && ih < g.H;
      const float* xr = lane0(x, (c * g.H + ih) * g.W + ow0 - g.pad);  // (ih, ow0 - pad); used only if rowIn
      for (int64_t kw = 0; kw < KW; ++kw, ++wk) {
        __m256 xv[2];
#pragma GCC unroll 2
        for (int v = 0; v < 2; ++v) {
          if (!rowIn) { xv[v] = padv; continue; }
          const float* src = xr + kw + 8 * v;
          const __m256 raw = INB ? _mm256_loadu_ps(src) : _mm256_maskload_ps(src, inrow[kw][v]);
          xv[v] = pads[kw][v] ? _mm256_blendv_ps(padv, raw, _mm256_castsi256_ps(inrow[kw][v])) : raw;
        }
#pragma GCC unroll 6
        for (int o = 0; o < MO; ++o) {
          const __m256 wv = _mm256_broadcast_ss(wk + o * CKK);
          acc[o][0] = _mm256_fmadd_ps(wv, xv[0], acc[o][0]);
          acc[o][1] = _mm256_fmadd_ps(wv, xv[1], acc[o][1]);
        }
      }
    }
  }
  // stores: plain where 16 floats fit in the channel's plane (a spill past the row lands on
  // positions written afterwards), masked otherwise
  const int64_t P = g.OH * g.OW, at = oh * g.OW + ow0;
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(int32_t(n)), idx), m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(int32_t(n - 8)), idx);
#pragma GCC unroll 6
  for (int o = 0; o < MO; ++o) {
    float* d = y + o * P + at;
    if (at + 16 <= P) {
      _mm256_storeu_ps(d, acc[o][0]);
      _mm256_storeu_ps(d + 8, acc[o][1]);
    } else {
      _mm256_maskstore_ps(d, m0, acc[o][0]);
      if (n > 8) _mm256_maskstore_ps(d + 8, m1, acc[o][1]);
    }
  }
}

using TileFn = void (*)(const Geo&, const float*, const float*, const float*, float*, int64_t, int64_t, int64_t, const __m256i (*)[2],
                        const bool (*)[2]);
const TileFn kTiles[2][7] = {
    {nullptr, tile_avx2<1, false>, tile_avx2<2, false>, tile_avx2<3, false>, tile_avx2<4, false>, tile_avx2<5, false>, tile_avx2<6, false>},
    {nullptr, tile_avx2<1, true>, tile_avx2<2, true>, tile_avx2<3, true>, tile_avx2<4, true>, tile_avx2<5, true>, tile_avx2<6, true>}};

}  // namespace

FL_AVX2 void conv2d_direct_forward_avx2(const float* x, const float* w, float* y, const ConvShape& s, const float* pv) {
  const Geo g{s.C, s.H, s.W, s.KH, s.KW, s.pad, s.OH(), s.OW(), s.CKK(), s.C * s.H * s.W};
  // channel blocks as even as possible, at most 6 each
  const int64_t nb = (s.O + 5) / 6, per = (s.O + nb - 1) / nb, P = g.OH * g.OW, nchunk = (g.OW + 15) / 16;
  // per (position chunk, kw, vector): the lanes whose input column lies in the row, and whether
  // a real output position needs the pad value
  __m256i inrow[kMaxChunks][8][2];
  bool pads[kMaxChunks][8][2];
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (int64_t ch = 0; ch < nchunk; ++ch)
    for (int64_t kw = 0; kw < g.KW; ++kw)
      for (int v = 0; v < 2; ++v) {
        const int64_t ow = ch * 16 + 8 * v, iw0 = ow + kw - g.pad;  // position and input column of lane 0
        const __m256i iw = _mm256_add_epi32(_mm256_set1_epi32(int32_t(iw0)), idx);
        inrow[ch][kw][v] = _mm256_andnot_si256(_mm256_cmpgt_epi32(_mm256_setzero_si256(), iw), _mm256_cmpgt_epi32(_mm256_set1_epi32(int32_t(g.W)), iw));
        const int64_t real = std::max<int64_t>(0, std::min<int64_t>(8, g.OW - ow));  // lanes at positions < OW
        pads[ch][kw][v] = real > 0 && (iw0 < 0 || iw0 + real > g.W);
      }
  // rows in order, position chunks in order within a row: a tile's full store only spills onto
  // positions written afterwards (see tile_avx2)
  for (int64_t oh = 0; oh < g.OH; ++oh)
    for (int64_t ch = 0; ch < nchunk; ++ch) {
      const int64_t ow0 = ch * 16, n = std::min<int64_t>(16, g.OW - ow0);
      // every load of the tile inside x: rows oh - pad .. oh - pad + KH - 1 of every channel,
      // columns ow0 - pad .. ow0 - pad + KW - 1 + 16
      const int64_t lo = (oh - g.pad) * g.W + ow0 - g.pad;
      const int64_t hi = ((g.C - 1) * g.H + oh - g.pad + g.KH - 1) * g.W + ow0 - g.pad + g.KW - 1 + 16;
      const bool inb = oh - g.pad >= 0 && oh - g.pad + g.KH <= g.H && lo >= 0 && hi <= g.xn;
      for (int64_t o0 = 0; o0 < s.O; o0 += per)
        kTiles[inb][std::min(per, s.O - o0)](g, x, w + o0 * g.CKK, pv, y + o0 * P, oh, ow0, n, inrow[ch], pads[ch]);
    }
}
#undef FL_AVX2
#endif  // FL_X86

}  // namespace fl
