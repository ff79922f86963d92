// Direct fp32 weight gradient of small stride-1 convolutions on AVX-512 (contract:
// conv2d_dw_direct_applies / conv2d_dw_direct_avx512 in flatenn/f32.h), used by conv2d's AVX-512
// backward in place of im2col + sgemm.
//
// Why: LeNet-5's first convolution (1 -> 6 channels, 5x5, pad 2, 28x28) has K = 25: its dw GEMM
// is short and wide, and most of its time went to writing the im2col matrix (25 floats per output
// position, 10 MB per batch of 128) and reading it back. `flatenn bench kernels --filter conv-bwd`
// measured it at 18% of the FMA peak. Here the patch values are loaded straight from x.
//
//   dw[o][c][kh][kw] = sum over n, oh, ow of dy[n][o][oh][ow] * xpad[n][c][oh + kh - pad][ow + kw - pad]
//
// A task is (image block, 16-position column chunk, input channel c, group of up to OG output
// channels). It keeps one 16-lane accumulator per (o, kh, kw): lane l sums the terms of output
// column ow0 + l, over the block's images in order and, per image, over kh then oh. Per image and
// kh the OG x KW accumulators stay in registers through the output rows: per row, OG loads of dy
// (masked to the row's real columns), KW loads of the input row shifted by kw (lanes outside the
// row take the pad value) and OG * KW FMAs. Each accumulator's lanes are then summed in a fixed
// order into the task's partial. dw = the partials summed over blocks (in order), then chunks (in
// order) within each block. Block size, chunks and groups depend on the shape only: the bits do
// not depend on the thread count. They differ from the im2col + sgemm path's (another summation
// order), as the SIMD levels already do among themselves.
#include "flatenn/core.h"  // FL_X86
#if FL_X86
#include <immintrin.h>
#endif

#include <algorithm>
#include <cstdint>
#include <vector>

#include "flatenn/f32.h"
#include "lane_ptr.h"

namespace fl {

namespace {
constexpr int64_t kMaxKH = 7, kMaxKW = 7, kBlockImages = 16;
}  // namespace

bool conv2d_dw_direct_applies(const ConvShape& s) {
  // small layers: few output channels (the GEMM path reuses each im2col panel across many rows of
  // dy) and short patches; kernels up to 7x7
  return s.stride == 1 && s.O <= 32 && s.CKK() <= 512 && s.KH <= kMaxKH && s.KW <= kMaxKW && s.KH >= 1 && s.KW >= 1 &&
         s.OH() >= 1 && s.OW() >= 1 && s.N >= 1;
}

#if FL_X86
namespace {
#define FL_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl")))

struct Task {
  int64_t n0, n1, ow0, c, o0;
};

// acc[kh][g][kw] for the task; out[(g * KH + kh) * KW + kw] (g < OG) receives the lane sums.
template <int OG, int KW>
FL_AVX512 void dw_task(const float* x, const float* dy, const ConvShape& s, const float* pv, const Task& t, float* out) {
  const int64_t H = s.H, W = s.W, OH = s.OH(), OW = s.OW(), P = OH * OW, KH = s.KH, pad = s.pad;
  const int64_t live = std::min<int64_t>(16, OW - t.ow0);
  const __mmask16 mow = __mmask16((1u << live) - 1u);
  // lanes whose input column ow0 + l + kw - pad lies in [0, W) (and whose output column is real)
  __mmask16 mx[KW];
  for (int kw = 0; kw < KW; ++kw) {
    uint32_t m = 0;
    for (int64_t l = 0; l < live; ++l) {
      const int64_t iw = t.ow0 + l + kw - pad;
      if (iw >= 0 && iw < W) m |= 1u << l;
    }
    mx[kw] = __mmask16(m);
  }
  // the pad value in the real lanes, 0 past the row's end (there dy is 0 too)
  const __m512 base = _mm512_maskz_mov_ps(mow, _mm512_set1_ps(pv ? pv[t.c] : 0.0f));
  alignas(64) __m512 acc[kMaxKH][OG][KW];
  for (int64_t kh = 0; kh < KH; ++kh)
    for (int g = 0; g < OG; ++g)
      for (int kw = 0; kw < KW; ++kw) acc[kh][g][kw] = _mm512_setzero_ps();
  for (int64_t n = t.n0; n < t.n1; ++n) {
    const float* xc = x + (n * s.C + t.c) * H * W;
    const float* dyn = dy + (n * s.O + t.o0) * P + t.ow0;
    for (int64_t kh = 0; kh < KH; ++kh) {
      __m512 a[OG][KW];
#pragma GCC unroll 4
      for (int g = 0; g < OG; ++g)
#pragma GCC unroll 7
        for (int kw = 0; kw < KW; ++kw) a[g][kw] = acc[kh][g][kw];
      for (int64_t oh = 0; oh < OH; ++oh) {
        __m512 d[OG];
#pragma GCC unroll 4
        for (int g = 0; g < OG; ++g) d[g] = _mm512_maskz_loadu_ps(mow, dyn + g * P + oh * OW);
        const int64_t ih = oh + kh - pad;
        if (ih >= 0 && ih < H) {
          const float* row = lane0(xc, ih * W + t.ow0 - pad);
#pragma GCC unroll 7
          for (int kw = 0; kw < KW; ++kw) {
            const __m512 xv = _mm512_mask_loadu_ps(base, mx[kw], lane0(row, kw));
#pragma GCC unroll 4
            for (int g = 0; g < OG; ++g) a[g][kw] = _mm512_fmadd_ps(d[g], xv, a[g][kw]);
          }
        } else {
#pragma GCC unroll 7
          for (int kw = 0; kw < KW; ++kw)
#pragma GCC unroll 4
            for (int g = 0; g < OG; ++g) a[g][kw] = _mm512_fmadd_ps(d[g], base, a[g][kw]);
        }
      }
#pragma GCC unroll 4
      for (int g = 0; g < OG; ++g)
#pragma GCC unroll 7
        for (int kw = 0; kw < KW; ++kw) acc[kh][g][kw] = a[g][kw];
    }
  }
  for (int64_t kh = 0; kh < KH; ++kh)
    for (int g = 0; g < OG; ++g)
      for (int kw = 0; kw < KW; ++kw) out[(g * KH + kh) * KW + kw] = _mm512_reduce_add_ps(acc[kh][g][kw]);
}

using TaskFn = void (*)(const float*, const float*, const ConvShape&, const float*, const Task&, float*);

template <int OG>
constexpr TaskFn task_for(int64_t kw) {
  return kw == 1 ? dw_task<OG, 1> : kw == 2 ? dw_task<OG, 2> : kw == 3 ? dw_task<OG, 3> : kw == 4 ? dw_task<OG, 4>
       : kw == 5 ? dw_task<OG, 5> : kw == 6 ? dw_task<OG, 6> : dw_task<OG, 7>;
}

TaskFn task_fn(int og, int64_t kw) {
  switch (og) {
    case 1: return task_for<1>(kw);
    case 2: return task_for<2>(kw);
    case 3: return task_for<3>(kw);
    default: return task_for<4>(kw);
  }
}

}  // namespace

void conv2d_dw_direct_avx512(const float* x, const float* dy, float* dw, const ConvShape& s, const float* pv) {
  const int64_t OW = s.OW(), KK = s.KH * s.KW, CKK = s.CKK(), WN = s.O * CKK;
  // output channels per group: the OG x KW accumulators, OG dy rows, the input row and the pad
  // vector within the 32 registers
  const int64_t ogMax = s.KW <= 5 ? 4 : 3;
  const int64_t groups = (s.O + ogMax - 1) / ogMax, chunks = (OW + 15) / 16, blocks = (s.N + kBlockImages - 1) / kBlockImages;
  const int64_t units = blocks * chunks;  // partial dw per (block, chunk)
  std::vector<float> parts(size_t(units * WN));
  const int64_t ntask = units * s.C * groups;
  parallel_for(size_t(ntask), [&](size_t i) {
    int64_t r = int64_t(i);
    const int64_t grp = r % groups; r /= groups;
    const int64_t c = r % s.C; r /= s.C;
    const int64_t ch = r % chunks, blk = r / chunks;
    const int64_t o0 = grp * ogMax, og = std::min(ogMax, s.O - o0);
    const Task t{blk * kBlockImages, std::min(s.N, (blk + 1) * kBlockImages), ch * 16, c, o0};
    float out[4 * kMaxKH * kMaxKW];
    task_fn(int(og), s.KW)(x, dy, s, pv, t, out);
    float* part = parts.data() + (blk * chunks + ch) * WN;
    for (int64_t g = 0; g < og; ++g)
      for (int64_t k = 0; k < KK; ++k) part[(o0 + g) * CKK + c * KK + k] = out[g * KK + k];
  });
  // dw = parts summed over units in (block, chunk) order (element ranges in parallel)
  constexpr int64_t kEl = 4096;
  const int64_t ne = (WN + kEl - 1) / kEl;
  auto reduce = [&](size_t e) {
    const int64_t e0 = int64_t(e) * kEl, e1 = std::min(WN, e0 + kEl);
    for (int64_t j = e0; j < e1; ++j) dw[j] = parts[size_t(j)];
    for (int64_t u = 1; u < units; ++u) {
      const float* pu = parts.data() + u * WN;
      for (int64_t j = e0; j < e1; ++j) dw[j] += pu[j];
    }
  };
  for (int64_t e = 0; e < ne; ++e) reduce(size_t(e));
}
#endif

}  // namespace fl
