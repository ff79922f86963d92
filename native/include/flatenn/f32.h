// flatenn fp32 training kernels: GEMM, im2col/col2im, conv2d forward/backward,
// max-pooling, and the peak-throughput probes used by the benchmarks.
//
// Every entry point assumes validated arguments (the bindings validate); none of
// them allocates per element or throws. Determinism: every kernel splits its
// work by problem shape only, so results are bit-identical for any thread count.
#pragma once
#include <cstdint>

#include "flatenn/core.h"

namespace fl {

// ---- sgemm -----------------------------------------------------------------
// C[M x N] = alpha * op(A)[M x K] * op(B)[K x N] + beta * C, all row-major.
//   op(A)(i, k) = transA ? A[k * lda + i] : A[i * lda + k]   (lda >= transA ? M : K)
//   op(B)(k, j) = transB ? B[j * ldb + k] : B[k * ldb + j]   (ldb >= transB ? K : N)
//   C(i, j)     = C[i * ldc + j]                             (ldc >= N)
// beta == 0 ignores C's previous contents (NaN-safe); alpha == 0 reads neither A nor B.
// Summation over K for one C element happens in an order fixed by (M, N, K) only.
using SgemmFn = void (*)(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                         int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);
void sgemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
           const float* B, int64_t ldb, float beta, float* C, int64_t ldc);
Kernel<SgemmFn>& sgemm_kernel();

// The same product for many calls that share A (a convolution's weights, image after image):
// op(A) is packed once (`pack`, into `size(M, K)` floats; it may run on the pool), then `run`
// computes C = alpha * op(A) * op(B) + beta * C from it. Every C element gets exactly the bits
// that sgemm of the same level gives (the same K blocks, in the same order).
struct SgemmPacked {
  size_t (*size)(int64_t M, int64_t K);
  void (*pack)(bool transA, int64_t M, int64_t K, const float* A, int64_t lda, float* dst);
  void (*run)(const float* apk, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* B, int64_t ldb,
              float beta, float* C, int64_t ldc);
};
// The variant of sgemm_kernel()'s level `level` (scalar off x86).
const SgemmPacked& sgemm_packed(Isa level);

// ---- convolution geometry ------------------------------------------------------
// x: (N, C, H, W); w: (O, C, KH, KW); y: (N, O, OH, OW) with
//   OH = (H + 2 pad - KH) / stride + 1, OW = (W + 2 pad - KW) / stride + 1.
// pad_values (optional, C floats): the value a padded input position holds, per
// input channel (null: 0). Lets the first layer pad in raw pixel space.
struct ConvShape {
  int64_t N, C, H, W, O, KH, KW, stride, pad;
  int64_t OH() const { return (H + 2 * pad - KH) / stride + 1; }
  int64_t OW() const { return (W + 2 * pad - KW) / stride + 1; }
  int64_t P() const { return OH() * OW(); }   // output pixels per image
  int64_t CKK() const { return C * KH * KW; } // patch length
};

// ---- direct forward of small convolutions (one image; conv2d_direct.cc) -----------
// conv2d_direct_applies: stride 1, O <= 32, C*KH*KW <= 256 (one K block), KW <= 8, OW <= 128.
// conv2d_direct_forward_avx2 (x86): y = w * col(x) without the bias, the same bits as im2col +
// the packed sgemm (each output one FMA chain over k in increasing order from +0).
bool conv2d_direct_applies(const ConvShape& s);
void conv2d_direct_forward_avx2(const float* x, const float* w, float* y, const ConvShape& s, const float* pad_values);

// ---- small convolutions, 16 images per vector (conv2d_lanes.cc) ------------------
// conv2d_lanes_applies: stride 1, O <= 32, C <= 32, KH, KW <= 7, N >= 16, H, W <= 256;
// conv2d_lanes_forward_applies: also C*KH*KW <= 256.
// conv2d_lanes_forward_avx512 (x86): y = w * col(x) + bias, the same bits as im2col + the packed
// sgemm (each output one FMA chain over k in increasing order from +0) then the bias.
// conv2d_lanes_backward_avx512 (x86): dx (N, C, H, W) and/or dw (O, C, KH, KW) (either may be null)
// without column matrices; its own fixed summation order (independent of the thread count).
bool conv2d_lanes_applies(const ConvShape& s);
bool conv2d_lanes_forward_applies(const ConvShape& s);
void conv2d_lanes_forward_avx512(const float* x, const float* w, const float* bias, float* y, const ConvShape& s,
                                 const float* pad_values);
void conv2d_lanes_backward_avx512(const float* x, const float* w, const float* dy, float* dx, float* dw, const ConvShape& s,
                                  const float* pad_values);

// ---- im2col / col2im (one image) -------------------------------------------------
// im2col: x (C, H, W) -> col (C*KH*KW, OH*OW), col row r = (c, kh, kw), column p = (oh, ow),
// for the output rows oh in [oh0, oh1) (all: 0, OH):
//   col[r * ldcol + (oh - oh0)*OW + ow] = x[c][oh*stride - pad + kh][ow*stride - pad + kw],
//   or pad_values[c] (0) outside the image.   (ldcol >= (oh1 - oh0)*OW; N and O are ignored.)
using Im2colFn = void (*)(const float* x, float* col, int64_t ldcol, const ConvShape& s, const float* pad_values,
                          int64_t oh0, int64_t oh1);
void im2col(const float* x, float* col, int64_t ldcol, const ConvShape& s, const float* pad_values, int64_t oh0,
            int64_t oh1);
Kernel<Im2colFn>& im2col_kernel();
// col2im: the adjoint of im2col: x (C, H, W) is overwritten with the sum of every
// col entry at the position it was copied from (padded positions are dropped).
using Col2imFn = void (*)(const float* col, int64_t ldcol, float* x, const ConvShape& s);
void col2im(const float* col, int64_t ldcol, float* x, const ConvShape& s);
Kernel<Col2imFn>& col2im_kernel();

// ---- conv2d --------------------------------------------------------------------
// Forward: y[n][o][p] = bias[o] + sum_{c,kh,kw} w[o][c][kh][kw] * xpad[n][c][...]; bias may be null.
using Conv2dForwardFn = void (*)(const float* x, const float* w, const float* bias, float* y, const ConvShape& s,
                                 const float* pad_values);
void conv2d_forward(const float* x, const float* w, const float* bias, float* y, const ConvShape& s,
                    const float* pad_values);
Kernel<Conv2dForwardFn>& conv2d_forward_kernel();
// Backward given dy (N, O, OH, OW): each of dx (N,C,H,W), dw (O,C,KH,KW), db (O) may be
// null; the non-null ones are overwritten. dw and db are sums over the batch, reduced in
// fixed image blocks in block order (bit-identical for any thread count).
using Conv2dBackwardFn = void (*)(const float* x, const float* w, const float* dy, float* dx, float* dw, float* db,
                                  const ConvShape& s, const float* pad_values);
void conv2d_backward(const float* x, const float* w, const float* dy, float* dx, float* dw, float* db,
                     const ConvShape& s, const float* pad_values);
Kernel<Conv2dBackwardFn>& conv2d_backward_kernel();

// ---- optimiser and observer loops over flat arrays ----------------------------------
// SGD with momentum and weight decay, PyTorch's rule, in float64 then rounded to float32:
//   d = g + wd*w; if mu > 0: b = started ? mu*buf + d : d; buf = float(b); d = nesterov ? d + mu*b : b
//   w = float(w - lr*d)
// (one IEEE double operation per step, in this order: the bits of the JavaScript loop it replaced).
// buf may be null when mu <= 0. Returns false if some updated weight is Inf or NaN.
using SgdStepFn = int (*)(float* w, const float* g, float* buf, size_t n, double lr, double wd, double mu, bool started,
                          bool nesterov);
bool sgd_step(float* w, const float* g, float* buf, size_t n, double lr, double wd, double mu, bool started, bool nesterov);
Kernel<SgdStepFn>& sgd_step_kernel();
// SAQ's perturbation (DESIGN §3), the bits of the JavaScript loops these replaced (double arithmetic,
// -ffp-contract=off): sum_squares_f64 = start + sum of double(x[i])^2 as one chain in index order;
// scale_to_f32: out[i] = float(s * double(g[i])); add_scaled_f32: d[i] = float(double(d[i]) + s * double(g[i])).
double sum_squares_f64(const float* x, size_t n, double start);
void scale_to_f32(const float* g, size_t n, double s, float* out);
void add_scaled_f32(float* d, const float* g, size_t n, double s);
// out[i] = a[i] + b[i] (float32; out may be a or b): residual joins and gradient accumulation.
void add_f32(const float* a, const float* b, size_t n, float* out);
// The largest value ignoring NaN (-0 < +0), -Inf when there is none: the activation observer's max.
using MaxKeyFn = int32_t (*)(const float* x, size_t n);
float max_ignoring_nan(const float* x, size_t n);
Kernel<MaxKeyFn>& max_key_kernel();
// true if no value is Inf or NaN (the trainer's gradient check; quant.h's f32_absmax_bits kernel).
bool all_finite(const float* x, size_t n);
// Input normalisation of raw images (B, C, HW): y = float((double(x) - mean[c]) * inv[c]), double arithmetic.
using NormalizeU8Fn = void (*)(const uint8_t* x, float* y, size_t n, double mean, double inv);
void normalize_u8(const uint8_t* x, float* y, size_t images, size_t C, size_t HW, const double* mean, const double* inv);
Kernel<NormalizeU8Fn>& normalize_u8_kernel();

// ---- BatchNorm2d (float64 arithmetic, bit-identical for any thread count) ---------------
// x, y, dy, dx: (N, C, HW) planes; mean, invstd, sums: [C] doubles; gamma, beta: [C] floats.
// sum[c] = sum of x, sumsq[c] = sum of x*x (order: n, then the plane), in double.
void bn2d_sums(const float* x, int64_t N, int64_t C, int64_t HW, double* sum, double* sumsq);
// y = float(((x - mean) * invstd) * gamma + beta), in double.
void bn2d_apply(const float* x, float* y, int64_t N, int64_t C, int64_t HW, const double* mean, const double* invstd,
                const float* gamma, const float* beta);
// sumdy[c] = sum over n of (sum of the plane's dy); sumdyxhat[c] likewise of dy * (x - mean) * invstd.
void bn2d_backward_sums(const float* x, const float* dy, int64_t N, int64_t C, int64_t HW, const double* mean,
                        const double* invstd, double* sumdy, double* sumdyxhat);
// training: dx = float(gamma * invstd * (dy - sumdy / m - (x - mean) * invstd * (sumdyxhat / m))), m = N * HW;
// eval: dx = float(gamma * invstd * dy). dx is overwritten.
void bn2d_backward_dx(const float* x, const float* dy, float* dx, int64_t N, int64_t C, int64_t HW, const double* mean,
                      const double* invstd, const float* gamma, const double* sumdy, const double* sumdyxhat, bool training);

// ---- max pooling (kernel k, stride s, no padding) --------------------------------
// x: (N, C, H, W) -> y: (N, C, OH, OW), OH = (H - k) / s + 1, OW = (W - k) / s + 1.
// argmax[n][c][oh][ow] = h * W + w (index inside the (n, c) plane) of the first maximum in
// row-major window order; a NaN in the window wins (the last NaN), as in PyTorch.
using MaxpoolForwardFn = void (*)(const float* x, float* y, int32_t* argmax, int64_t N, int64_t C, int64_t H,
                                  int64_t W, int64_t k, int64_t s);
void maxpool2d_forward(const float* x, float* y, int32_t* argmax, int64_t N, int64_t C, int64_t H, int64_t W,
                       int64_t k, int64_t s);
Kernel<MaxpoolForwardFn>& maxpool2d_forward_kernel();
// dx (N, C, H, W) is overwritten: zero, then dx[plane][argmax] += dy in output order. An entry
// outside [0, H*W) is skipped and the call returns false (the binding turns that into an error).
bool maxpool2d_backward(const float* dy, const int32_t* argmax, float* dx, int64_t N, int64_t C, int64_t H,
                        int64_t W, int64_t k, int64_t s);

// ---- peak probes ------------------------------------------------------------------
// Independent-accumulator loops with no memory traffic; return the operations done
// (FLOPs for FMA probes: 2 per lane per FMA; MACs for VNNI: 4 per 32-bit lane per vpdpbusd).
// int8avx2: the AVX2 int8 rate without VNNI (what oneDNN's AVX2 int8 kernels run): chains of
// vpmaddubsw (u8 x s8 -> 16 s16 pair sums, 32 MAC) + vpmaddwd with ones + vpaddd; MACs returned.
// int4avx2: the int4 x int4 kernels' inner step (vpmaddubsw + vpaddw into int16 sums, widened once
// per run): their ceiling on AVX2; MACs returned.
enum class PeakKind { Fma512 = 0, Fma256 = 1, Vnni512 = 2, Int8Avx2 = 3, Int4Avx2 = 4 };
bool peak_supported(PeakKind kind);
struct PeakResult {
  double ops;          // total over all threads
  double wall_seconds; // from the common start to the last thread's end
  double cpu_seconds;  // sum of the threads' CLOCK_THREAD_CPUTIME_ID
};
// Runs the probe on `threads` std::threads at once (not the pool), each `iters` iterations.
PeakResult peak_probe(PeakKind kind, uint64_t iters, int threads);

}  // namespace fl
