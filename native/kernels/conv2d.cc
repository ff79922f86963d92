// conv2d forward / backward (NCHW, contract in flatenn/f32.h) as im2col + sgemm.
//   x: (N, C, H, W)  w: (O, C, KH, KW) = matrix (O, CKK)  bias/db: (O)  y/dy: (N, O, OH, OW) = N x (O, P)
//   forward : y_n  = w * col(x_n)                    sgemm (O x P x CKK), + bias
//   dx      : dx_n = col2im(w^T * dy_n)               sgemm (CKK x P x O), transA
//   dw      : dw   = sum over image blocks of dy_blk * col(x_blk)^T   sgemm (O x CKK x G*P), transB
//             dy_blk (O, G*P): the block's dy side by side; col(x_blk) (CKK, G*P): im2col of its images
//             (an image larger than a block: its output rows in chunks, accumulated in order)
//   db      : db[o] = sum over n, p of dy[n][o][p] (float64 lanes)
// The forward im2col runs in blocks of output rows so that col stays about 1 MiB (in L2). On AVX2,
// small layers (conv2d_direct_applies) skip im2col: conv2d_direct.cc runs the same FMA chains
// straight from x (the same bits). On AVX-512, small stride-1 layers with a batch of 16 or more
// (conv2d_lanes_applies) run forward (the same bits), dx and dw 16 images per vector
// (conv2d_lanes.cc); their backward sums in its own order.
// Variant L (scalar / avx2 / avx512) runs the sgemm and im2col variants of level L (the highest
// one registered at or below L), so tests can compare every level with the scalar one.
// Threading and determinism: forward and dx are parallel over images (each image writes its
// own output). dw and db are batch sums: images are grouped in blocks whose size depends on the
// shape only, every block sums its images in order, and the blocks' partials are added in block
// order. No result depends on the thread count.
#include <algorithm>
#include <cstring>

#include "flatenn/core.h"  // FL_X86
#if FL_X86
#include <immintrin.h>
#endif
#include "flatenn/f32.h"
#include "scratch.h"

namespace fl {
namespace {

thread_local Scratch tl_col, tl_dyblk, tl_colblk, tl_parts, tl_wpack;

template <class F>
F pick(Kernel<F>& k, Isa level) {
  for (int l = static_cast<int>(level); l >= 0; --l)
    if (F f = k.variant(static_cast<Isa>(l))) return f;
  return k.variant(Isa::Scalar);
}

inline bool is_pointwise(const ConvShape& s) { return s.KH == 1 && s.KW == 1 && s.stride == 1 && s.pad == 0; }

// Working buffers (col blocks) stay near this many floats (1 MiB), to stay in L2.
constexpr int64_t kBufFloats = int64_t(1) << 18;

template <Isa L>
void conv2d_forward_impl(const float* x, const float* w, const float* bias, float* y, const ConvShape& s,
                         const float* pv) {
  const SgemmPacked& gemm = sgemm_packed(L);
  const Im2colFn to_col = pick(im2col_kernel(), L);
  const int64_t OH = s.OH(), OW = s.OW(), P = s.P(), CKK = s.CKK(), xs = s.C * s.H * s.W, ys = s.O * P;
  const bool direct = is_pointwise(s);
#if FL_X86
  // small stride-1 layers on AVX-512 (a batch of 16 or more): 16 images per vector, no column
  // matrix (conv2d_lanes.cc; the same bits)
  if (L == Isa::Avx512 && conv2d_lanes_forward_applies(s)) {
    conv2d_lanes_forward_avx512(x, w, bias, y, s, pv);
    return;
  }
#endif
#if FL_X86
  // small layers on AVX2: patch values loaded straight from x (conv2d_direct.cc; the same bits).
  // Not on AVX-512 (where the lanes kernel above does not apply), whose 8x48 GEMM tile runs LeNet-5's conv 2 forward faster than this 8-float
  // kernel (`flatenn bench kernels --filter conv-fwd`, 2 threads: 114-120 GFLOP/s against 91).
  const bool small = L == Isa::Avx2 && conv2d_direct_applies(s);
#else
  const bool small = false;
#endif
  // w packed once for every image's product (the same bits as packing it per product)
  float* wp = small ? nullptr : tl_wpack.get(gemm.size(s.O, CKK));
  if (!small) gemm.pack(false, s.O, CKK, w, CKK, wp);
  // output rows per im2col block (shape only)
  const int64_t ohb = std::max<int64_t>(1, std::min(OH, kBufFloats / (CKK * OW)));
  parallel_for(size_t(s.N), [&](size_t n) {
    const float* xn = x + int64_t(n) * xs;
    float* yn = y + int64_t(n) * ys;
    if (small) {
#if FL_X86
      conv2d_direct_forward_avx2(xn, w, yn, s, pv);
#endif
    } else if (direct) {
      gemm.run(wp, false, s.O, P, CKK, 1.0f, xn, P, 0.0f, yn, P);
    } else {
      float* buf = tl_col.get(size_t(CKK * ohb * OW));
      for (int64_t oh0 = 0; oh0 < OH; oh0 += ohb) {
        const int64_t oh1 = std::min(OH, oh0 + ohb), nb = (oh1 - oh0) * OW;
        to_col(xn, buf, nb, s, pv, oh0, oh1);
        gemm.run(wp, false, s.O, nb, CKK, 1.0f, buf, nb, 0.0f, yn + oh0 * OW, P);
      }
    }
    if (bias)
      for (int64_t o = 0; o < s.O; ++o) {
        float* yo = yn + o * P;
        const float b = bias[o];
        for (int64_t p = 0; p < P; ++p) yo[p] += b;
      }
  });
}

// lanes[l] += double(d[p + l]) for l < 8 over the whole 8-float groups of d[0, P); returns the
// first position not added (every variant adds in the same per-lane order: the same bits).
using DbLanesFn = int64_t (*)(const float* d, int64_t P, double* lanes);
int64_t db_lanes_scalar(const float* d, int64_t P, double* lanes) {
  int64_t p = 0;
  for (; p + 8 <= P; p += 8)
    for (int l = 0; l < 8; ++l) lanes[l] += double(d[p + l]);
  return p;
}
#if FL_X86
__attribute__((target("avx2,fma"))) int64_t db_lanes_avx2(const float* d, int64_t P, double* lanes) {
  __m256d lo = _mm256_load_pd(lanes), hi = _mm256_load_pd(lanes + 4);
  int64_t p = 0;
  for (; p + 8 <= P; p += 8) {
    lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm_loadu_ps(d + p)));
    hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm_loadu_ps(d + p + 4)));
  }
  _mm256_store_pd(lanes, lo);
  _mm256_store_pd(lanes + 4, hi);
  return p;
}
__attribute__((target("avx512f,avx512vl"))) int64_t db_lanes_avx512(const float* d, int64_t P, double* lanes) {
  __m512d acc = _mm512_load_pd(lanes);
  int64_t p = 0;
  for (; p + 8 <= P; p += 8) acc = _mm512_add_pd(acc, _mm512_cvtps_pd(_mm256_loadu_ps(d + p)));
  _mm512_store_pd(lanes, acc);
  return p;
}
#endif
inline DbLanesFn db_lanes_for(Isa L) {
#if FL_X86
  if (L == Isa::Avx512) return db_lanes_avx512;
  if (L == Isa::Avx2) return db_lanes_avx2;
#endif
  (void)L;
  return db_lanes_scalar;
}

// dw plan (shape only). Each GEMM call takes about kBufFloats / CKK im2col columns (its K):
// `sub` images side by side, or, for an image with more pixels than that, its output rows in
// chunks. Images are grouped in blocks of G: every block sums its GEMM calls in order into its
// own partial dw, and the partials are added in block order. At least 8 blocks when N allows,
// at most kPartFloats / (O*CKK) partials (a single block then runs its GEMMs on all threads).
constexpr int64_t kPartFloats = int64_t(1) << 22;
struct DwPlan {
  int64_t cols;  // target im2col columns per GEMM call
  int64_t sub;   // images per GEMM call (1 when an image has more than `cols` pixels)
  int64_t G;     // images per block
};
inline DwPlan dw_plan(const ConvShape& s) {
  const int64_t cols = std::max<int64_t>(64, kBufFloats / s.CKK());
  const int64_t sub = s.P() > cols ? 1 : std::max<int64_t>(1, cols / s.P());
  const int64_t max_parts = std::max<int64_t>(1, kPartFloats / (s.O * s.CKK()));
  const int64_t G = std::max(ceil_div64(s.N, max_parts), std::min(sub, ceil_div64(s.N, 8)));
  return {cols, sub, G};
}

template <Isa L>
void conv2d_backward_impl(const float* x, const float* w, const float* dy, float* dx, float* dw, float* db,
                          const ConvShape& s, const float* pv) {
  const SgemmFn gemm = pick(sgemm_kernel(), L);
  const Col2imFn from_col = pick(col2im_kernel(), L);
  const Im2colFn to_col = pick(im2col_kernel(), L);
  const int64_t P = s.P(), CKK = s.CKK(), xs = s.C * s.H * s.W, ys = s.O * P;

  if (db) {
    // db[o] = sum_n sum_p dy[n][o][p]: double accumulators in 8 fixed lanes (p mod 8), then lanes in order.
    const DbLanesFn lanes_fn = db_lanes_for(L);
    parallel_for(size_t(ceil_div64(s.O, 4)), [&](size_t blk) {
      const int64_t o1 = std::min(s.O, int64_t(blk + 1) * 4);
      for (int64_t o = int64_t(blk) * 4; o < o1; ++o) {
        alignas(64) double lanes[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        for (int64_t n = 0; n < s.N; ++n) {
          const float* d = dy + n * ys + o * P;
          const int64_t p = lanes_fn(d, P, lanes);
          for (int64_t q = p, l = 0; q < P; ++q, ++l) lanes[l] += double(d[q]);
        }
        double t = 0.0;
        for (int l = 0; l < 8; ++l) t += lanes[l];
        db[o] = float(t);
      }
    });
  }

#if FL_X86
  // small stride-1 layers on AVX-512: 16 images per vector, no column matrices (conv2d_lanes.cc).
  // dx only with 4 or more input channels: with fewer its kernel does 1-3 FMAs per load of dy and
  // the GEMM path was faster (3 -> 16 channels, 3x3 on 32x32, batch 64: 0.47 against 0.72 ms).
  if ((dx || dw) && L == Isa::Avx512 && conv2d_lanes_applies(s)) {
    const bool withDx = dx && s.C >= 4;
    if (withDx || dw) conv2d_lanes_backward_avx512(x, w, dy, withDx ? dx : nullptr, dw, s, pv);
    if (withDx) dx = nullptr;
    dw = nullptr;
  }
#endif
  if (dx) {
    const bool direct = is_pointwise(s);
    // w^T packed once for every image's product
    const SgemmPacked& pg = sgemm_packed(L);
    float* wp = tl_wpack.get(pg.size(CKK, s.O));
    pg.pack(true, CKK, s.O, w, CKK, wp);
    parallel_for(size_t(s.N), [&](size_t n) {
      const float* dyn = dy + int64_t(n) * ys;
      float* dxn = dx + int64_t(n) * xs;
      if (direct) { pg.run(wp, false, CKK, P, s.O, 1.0f, dyn, P, 0.0f, dxn, P); return; }
      float* dcol = tl_col.get(size_t(CKK * P));
      pg.run(wp, false, CKK, P, s.O, 1.0f, dyn, P, 0.0f, dcol, P);
      from_col(dcol, P, dxn, s);
    });
  }

  if (dw) {
    // dw_blk = sum of dy_grp (O, cols) * col_grp^T, col_grp (CKK, cols) = im2col, read transposed (transB)
    const DwPlan plan = dw_plan(s);
    const int64_t G = plan.G, nblk = ceil_div64(s.N, G), WN = s.O * CKK, OH = s.OH(), OW = s.OW();
    float* parts = nblk > 1 ? tl_parts.get(size_t(nblk * WN)) : dw;
    parallel_for(size_t(nblk), [&](size_t b) {
      const int64_t n0 = int64_t(b) * G, n1 = std::min(s.N, n0 + G);
      float* part = parts + int64_t(b) * WN;
      bool first = true;
      if (plan.sub == 1) {
        // image by image, output rows in chunks: part (+)= dy_n[:, p0:p1] * col(x_n)[:, p0:p1]^T
        const int64_t ohb = std::max<int64_t>(1, std::min(OH, plan.cols / OW));
        float* c = tl_colblk.get(size_t(CKK * ohb * OW));
        for (int64_t n = n0; n < n1; ++n)
          for (int64_t oh0 = 0; oh0 < OH; oh0 += ohb, first = false) {
            const int64_t oh1 = std::min(OH, oh0 + ohb), nb = (oh1 - oh0) * OW;
            to_col(x + n * xs, c, nb, s, pv, oh0, oh1);
            gemm(false, true, s.O, CKK, nb, 1.0f, dy + n * ys + oh0 * OW, P, c, nb, first ? 0.0f : 1.0f, part, CKK);
          }
        return;
      }
      // groups of up to `sub` images side by side: dy_grp (O, g*P), col_grp (CKK, g*P)
      float* a = tl_dyblk.get(size_t(s.O * plan.sub * P));
      float* c = tl_colblk.get(size_t(CKK * plan.sub * P));
      for (int64_t g0 = n0; g0 < n1; g0 += plan.sub, first = false) {
        const int64_t g = std::min(plan.sub, n1 - g0), cols = g * P;
        for (int64_t i = 0; i < g; ++i) {
          const float* dyn = dy + (g0 + i) * ys;
          for (int64_t o = 0; o < s.O; ++o) std::memcpy(a + o * cols + i * P, dyn + o * P, sizeof(float) * size_t(P));
          to_col(x + (g0 + i) * xs, c + i * P, cols, s, pv, 0, OH);
        }
        gemm(false, true, s.O, CKK, cols, 1.0f, a, cols, c, cols, first ? 0.0f : 1.0f, part, CKK);
      }
    });
    // dw = parts[0] + parts[1] + ... in block order
    if (nblk > 1) sum_parts_in_order(parts, nblk, WN, dw);
  }
}

Kernel<Conv2dForwardFn> k_conv2d_forward("conv2d_forward", conv2d_forward_impl<Isa::Scalar>,
                                         FL_X86_ONLY((conv2d_forward_impl<Isa::Avx2>)), FL_X86_ONLY((conv2d_forward_impl<Isa::Avx512>)));
Kernel<Conv2dBackwardFn> k_conv2d_backward("conv2d_backward", conv2d_backward_impl<Isa::Scalar>,
                                           FL_X86_ONLY((conv2d_backward_impl<Isa::Avx2>)), FL_X86_ONLY((conv2d_backward_impl<Isa::Avx512>)));

}  // namespace

Kernel<Conv2dForwardFn>& conv2d_forward_kernel() { return k_conv2d_forward; }
Kernel<Conv2dBackwardFn>& conv2d_backward_kernel() { return k_conv2d_backward; }

void conv2d_forward(const float* x, const float* w, const float* bias, float* y, const ConvShape& s,
                    const float* pad_values) {
  k_conv2d_forward.fn(x, w, bias, y, s, pad_values);
}
void conv2d_backward(const float* x, const float* w, const float* dy, float* dx, float* dw, float* db,
                     const ConvShape& s, const float* pad_values) {
  k_conv2d_backward.fn(x, w, dy, dx, dw, db, s, pad_values);
}

}  // namespace fl
