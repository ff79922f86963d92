// BatchNorm2d over (N, C, H*W) planes in float64 arithmetic (contract in flatenn/f32.h). Each
// sum runs in one fixed order (n, then the plane's elements) on one thread, and every expression
// is the one written here, evaluated in double without fused multiply-adds, so the results are
// bit-identical for any thread count and equal to the same loops written in JavaScript.
// Scalar only: a channel's reductions are sequential by contract; the elementwise passes are
// split over planes.
#include <cstdint>

#include "flatenn/core.h"
#include "flatenn/f32.h"

// No a * b + c -> fma contraction in this file, whatever the target: the loops' rounding is the contract.
#pragma GCC optimize("fp-contract=off")

namespace fl {

void bn2d_sums(const float* x, int64_t N, int64_t C, int64_t HW, double* sum, double* sumsq) {
  parallel_for(size_t(C), [&](size_t c) {
    double s = 0, s2 = 0;
    for (int64_t n = 0; n < N; ++n) {
      const float* p = x + (n * C + int64_t(c)) * HW;
      for (int64_t j = 0; j < HW; ++j) {
        const double v = p[j];
        s += v;
        s2 += v * v;
      }
    }
    sum[c] = s;
    sumsq[c] = s2;
  });
}

void bn2d_apply(const float* x, float* y, int64_t N, int64_t C, int64_t HW, const double* mean, const double* invstd,
                const float* gamma, const float* beta) {
  parallel_for(size_t(N * C), [&](size_t t) {
    const int64_t c = int64_t(t) % C;
    const double mu = mean[c], is = invstd[c], g = gamma[c], b = beta[c];
    const float* p = x + int64_t(t) * HW;
    float* q = y + int64_t(t) * HW;
    for (int64_t j = 0; j < HW; ++j) q[j] = float((double(p[j]) - mu) * is * g + b);
  });
}

void bn2d_backward_sums(const float* x, const float* dy, int64_t N, int64_t C, int64_t HW, const double* mean,
                        const double* invstd, double* sumdy, double* sumdyxhat) {
  parallel_for(size_t(C), [&](size_t c) {
    const double mu = mean[c], is = invstd[c];
    double sa = 0, sb = 0;
    for (int64_t n = 0; n < N; ++n) {
      const int64_t o = (n * C + int64_t(c)) * HW;
      double a = 0, b2 = 0;
      for (int64_t j = 0; j < HW; ++j) {
        const double g = dy[o + j];
        a += g;
        b2 += g * (double(x[o + j]) - mu) * is;
      }
      sa += a;
      sb += b2;
    }
    sumdy[c] = sa;
    sumdyxhat[c] = sb;
  });
}

void bn2d_backward_dx(const float* x, const float* dy, float* dx, int64_t N, int64_t C, int64_t HW, const double* mean,
                      const double* invstd, const float* gamma, const double* sumdy, const double* sumdyxhat, bool training) {
  const double m = double(N) * double(HW);
  parallel_for(size_t(N * C), [&](size_t t) {
    const int64_t c = int64_t(t) % C;
    const double mu = mean[c], is = invstd[c], g = gamma[c];
    const float* px = x + int64_t(t) * HW;
    const float* pd = dy + int64_t(t) * HW;
    float* q = dx + int64_t(t) * HW;
    if (training) {
      const double a = sumdy[c] / m, b2 = sumdyxhat[c] / m;
      for (int64_t j = 0; j < HW; ++j) q[j] = float(g * is * (double(pd[j]) - a - (double(px[j]) - mu) * is * b2));
    } else {
      for (int64_t j = 0; j < HW; ++j) q[j] = float(g * is * double(pd[j]));
    }
  });
}

}  // namespace fl
