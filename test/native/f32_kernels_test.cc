// fp32 training kernels: every variant the CPU has against float64 references (derived
// tolerances), SIMD variants against the scalar one, bit-identical results for 1, 2 and 3
// threads, and the exact kernels (im2col, col2im order, max-pool) bit for bit.
// Failures print kernel, ISA, shape, index, values and the seed.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "flatenn/f32.h"
#include "flatenn/quant.h"
#include "harness.h"

namespace {

using fl::Isa;

struct Rng {  // splitmix64
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed) {}
  uint64_t next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  float uniform(float lo, float hi) { return lo + (hi - lo) * float(next() >> 40) * (1.0f / 16777216.0f); }
  int small_int(int lo, int hi) { return lo + int(next() % uint64_t(hi - lo + 1)); }
};

std::vector<float> random_vec(size_t n, Rng& r, float lo = -1.0f, float hi = 1.0f) {
  std::vector<float> v(n);
  for (auto& x : v) x = r.uniform(lo, hi);
  return v;
}

const float kEps = std::numeric_limits<float>::epsilon();

std::vector<Isa> isas_here() {
  std::vector<Isa> v;
  for (int l = 0; l <= static_cast<int>(fl::best_isa()); ++l) v.push_back(static_cast<Isa>(l));
  return v;
}

// ============================== sgemm ===================================================
struct GemmCase {
  bool tA, tB;
  int64_t M, N, K, lda, ldb, ldc;
  float alpha, beta;
};

std::string describe(const GemmCase& g) {
  return "M=" + std::to_string(g.M) + " N=" + std::to_string(g.N) + " K=" + std::to_string(g.K) +
         " tA=" + std::to_string(g.tA) + " tB=" + std::to_string(g.tB) + " lda=" + std::to_string(g.lda) +
         " ldb=" + std::to_string(g.ldb) + " ldc=" + std::to_string(g.ldc) + " alpha=" + std::to_string(g.alpha) +
         " beta=" + std::to_string(g.beta);
}

// Runs one case on variant `isa`; checks every C element against a float64 reference with
// |err| <= 2 * (K + 2) * eps * (|alpha| * sum_k |a_ik b_kj| + |beta c_ij|) + tiny, and that the
// padding columns of C (j >= N) are untouched. Returns the output for further comparisons.
std::vector<float> check_gemm(const GemmCase& g, Isa isa, uint64_t seed, int* failures) {
  Rng r(seed);
  const int64_t arows = g.tA ? g.K : g.M, brows = g.tB ? g.N : g.K;
  std::vector<float> A = random_vec(size_t(arows * g.lda), r), B = random_vec(size_t(brows * g.ldb), r);
  std::vector<float> C0 = random_vec(size_t(g.M * g.ldc), r);
  if (g.beta == 0.0f)  // beta == 0 must ignore C: poison it
    for (int64_t i = 0; i < g.M; ++i)
      for (int64_t j = 0; j < g.N; ++j) C0[size_t(i * g.ldc + j)] = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> C = C0;
  fl::sgemm_kernel().variant(isa)(g.tA, g.tB, g.M, g.N, g.K, g.alpha, A.data(), g.lda, B.data(), g.ldb, g.beta,
                                  C.data(), g.ldc);
  for (int64_t i = 0; i < g.M; ++i) {
    for (int64_t j = 0; j < g.ldc; ++j) {
      const size_t ci = size_t(i * g.ldc + j);
      if (j >= g.N) {
        if (!(std::memcmp(&C[ci], &C0[ci], sizeof(float)) == 0) && (*failures)++ < 5)
          FL_CHECK(false) << "sgemm[" << fl::isa_name(isa) << "] wrote C padding at (" << i << "," << j << ") "
                          << describe(g) << " seed=" << seed;
        continue;
      }
      double ref = 0.0, mag = 0.0;
      for (int64_t k = 0; k < g.K; ++k) {
        const double a = g.tA ? A[size_t(k * g.lda + i)] : A[size_t(i * g.lda + k)];
        const double b = g.tB ? B[size_t(j * g.ldb + k)] : B[size_t(k * g.ldb + j)];
        ref += a * b;
        mag += std::fabs(a * b);
      }
      ref *= g.alpha;
      mag *= std::fabs(g.alpha);
      if (g.beta != 0.0f) {
        ref += double(g.beta) * C0[ci];
        mag += std::fabs(double(g.beta) * C0[ci]);
      }
      const double tol = 2.0 * double(g.K + 2) * kEps * mag + 1e-30;
      const double got = C[ci];
      if (!(std::fabs(got - ref) <= tol) && (*failures)++ < 5)
        FL_CHECK(false) << "sgemm[" << fl::isa_name(isa) << "] " << describe(g) << " at (" << i << "," << j
                        << "): got " << got << " want " << ref << " |err| " << std::fabs(got - ref) << " > tol "
                        << tol << " seed=" << seed;
    }
  }
  return C;
}

FL_TEST(sgemm_all_variants_awkward_shapes_vs_float64) {
  const int64_t sizes[] = {1, 3, 7, 15, 17, 31, 33, 63, 129};
  const float alphas[] = {1.0f, -0.5f, 2.0f};
  const float betas[] = {0.0f, 1.0f, -1.5f, 0.0f};
  fl::set_num_threads(2);
  int failures = 0;
  uint64_t seed = 1000;
  size_t n = 0;
  for (int64_t M : sizes)
    for (int64_t N : sizes)
      for (int64_t K : sizes) {
        ++n;
        for (int t = 0; t < 4; ++t) {
          GemmCase g{(t & 1) != 0, (t & 2) != 0, M, N, K, 0, 0, 0, alphas[(n + size_t(t)) % 3], betas[(n + size_t(t)) % 4]};
          // leading dimensions: minimal, or larger than minimal (every other case)
          const int64_t pad = ((n + size_t(t)) % 2) ? 3 : 0;
          g.lda = (g.tA ? M : K) + pad;
          g.ldb = (g.tB ? K : N) + pad;
          g.ldc = N + pad;
          for (Isa isa : isas_here()) check_gemm(g, isa, ++seed, &failures);
        }
      }
  FL_CHECK(failures == 0) << failures << " sgemm mismatches";
}

FL_TEST(sgemm_large_blocks_tiles_and_k_split) {
  // Shapes crossing the K block (256), the row tile (128), several column tiles, and the K-split
  // path (K >= 4096 with few output tiles), with every transpose.
  const GemmCase base[] = {
      {false, false, 257, 301, 517, 0, 0, 0, -0.75f, 0.5f}, {false, false, 65, 97, 1000, 0, 0, 0, 1.25f, 0.0f},
      {false, false, 16, 150, 12800, 0, 0, 0, 1.0f, 0.0f},
      {false, false, 6, 25, 9000, 0, 0, 0, 0.5f, 1.0f},    {false, false, 3, 17, 4097, 0, 0, 0, 1.0f, -1.0f},
      {false, false, 1, 1, 5000, 0, 0, 0, 1.0f, 0.0f},     {false, false, 40, 200, 4500, 0, 0, 0, -2.0f, 0.25f},
  };
  fl::set_num_threads(2);
  int failures = 0;
  uint64_t seed = 5000;
  for (const GemmCase& b : base)
    for (int t = 0; t < 4; ++t) {
      GemmCase g = b;
      g.tA = (t & 1) != 0;
      g.tB = (t & 2) != 0;
      g.lda = (g.tA ? g.M : g.K) + 1;
      g.ldb = (g.tB ? g.K : g.N) + 2;
      g.ldc = g.N + 1;
      for (Isa isa : isas_here()) {
        if (isa == Isa::Scalar && g.M * g.N * g.K > 20000000) continue;  // slow reference path: skip the biggest
        check_gemm(g, isa, ++seed, &failures);
      }
    }
  FL_CHECK(failures == 0) << failures << " sgemm mismatches";
}

FL_TEST(sgemm_simd_matches_scalar_reference) {
  // Every SIMD variant against the scalar variant directly (the readable spec), same inputs.
  fl::set_num_threads(2);
  Rng r(77);
  const int64_t M = 33, N = 65, K = 300;
  std::vector<float> A = random_vec(size_t(M * K), r), B = random_vec(size_t(K * N), r);
  std::vector<float> ref(size_t(M * N), 0.0f);
  fl::sgemm_kernel().variant(Isa::Scalar)(false, false, M, N, K, 1.0f, A.data(), K, B.data(), N, 0.0f, ref.data(), N);
  for (Isa isa : isas_here()) {
    if (isa == Isa::Scalar) continue;
    std::vector<float> C(size_t(M * N), 0.0f);
    fl::sgemm_kernel().variant(isa)(false, false, M, N, K, 1.0f, A.data(), K, B.data(), N, 0.0f, C.data(), N);
    for (int64_t i = 0; i < M * N; ++i) {
      double mag = 0.0;
      for (int64_t k = 0; k < K; ++k) mag += std::fabs(double(A[size_t(i / N * K + k)]) * B[size_t(k * N + i % N)]);
      const double tol = 4.0 * double(K) * kEps * mag;
      if (!(std::fabs(double(C[size_t(i)]) - ref[size_t(i)]) <= tol)) {
        FL_CHECK(false) << "sgemm[" << fl::isa_name(isa) << "] vs scalar M=33 N=65 K=300 at " << i << ": " << C[size_t(i)]
                        << " vs " << ref[size_t(i)] << " seed=77";
        break;
      }
    }
  }
}

FL_TEST(sgemm_alpha_zero_reads_neither_a_nor_b) {
  for (Isa isa : isas_here()) {
    std::vector<float> A(12, std::numeric_limits<float>::quiet_NaN()), B(12, std::numeric_limits<float>::infinity());
    std::vector<float> C = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    fl::sgemm_kernel().variant(isa)(false, false, 3, 3, 4, 0.0f, A.data(), 4, B.data(), 3, 2.0f, C.data(), 3);
    for (int i = 0; i < 9; ++i) FL_CHECK(C[size_t(i)] == 2.0f * float(i + 1)) << fl::isa_name(isa) << " i=" << i << " " << C[size_t(i)];
    fl::sgemm_kernel().variant(isa)(false, false, 3, 3, 4, 0.0f, A.data(), 4, B.data(), 3, 0.0f, C.data(), 3);
    for (int i = 0; i < 9; ++i) FL_CHECK(C[size_t(i)] == 0.0f) << fl::isa_name(isa) << " i=" << i << " " << C[size_t(i)];
  }
}

// Bit-identical output for 1, 2 and 3 threads (tile path and K-split path).
FL_TEST(sgemm_bit_identical_for_any_thread_count) {
  const GemmCase cases[] = {{false, false, 200, 300, 600, 600, 300, 300, 1.0f, 0.0f},
                            {false, true, 16, 150, 12800, 12800, 12800, 150, 1.0f, 0.0f},
                            {true, false, 150, 100, 16, 150, 100, 100, 1.0f, 0.5f},
                            {false, false, 6, 784, 25, 25, 784, 784, 1.0f, 0.0f}};
  for (const GemmCase& g : cases) {
    Rng r(9);
    const int64_t arows = g.tA ? g.K : g.M, brows = g.tB ? g.N : g.K;
    std::vector<float> A = random_vec(size_t(arows * g.lda), r), B = random_vec(size_t(brows * g.ldb), r);
    std::vector<float> C0 = random_vec(size_t(g.M * g.ldc), r);
    for (Isa isa : isas_here()) {
      std::vector<float> first;
      for (int threads : {1, 2, 3}) {
        fl::set_num_threads(threads);
        std::vector<float> C = C0;
        fl::sgemm_kernel().variant(isa)(g.tA, g.tB, g.M, g.N, g.K, g.alpha, A.data(), g.lda, B.data(), g.ldb, g.beta,
                                        C.data(), g.ldc);
        if (first.empty()) first = C;
        else
          FL_CHECK(std::memcmp(first.data(), C.data(), C.size() * sizeof(float)) == 0)
              << "sgemm[" << fl::isa_name(isa) << "] " << describe(g) << ": threads=" << threads << " differs from threads=1";
      }
    }
  }
  fl::set_num_threads(2);
}

// ============================== im2col / col2im ===========================================
// The value im2col puts at (r, p), straight from the definition.
float patch_value(const std::vector<float>& x, const fl::ConvShape& s, const float* pv, int64_t r, int64_t p) {
  const int64_t c = r / (s.KH * s.KW), kh = r / s.KW % s.KH, kw = r % s.KW;
  const int64_t oh = p / s.OW(), ow = p % s.OW();
  const int64_t ih = oh * s.stride - s.pad + kh, iw = ow * s.stride - s.pad + kw;
  if (ih < 0 || ih >= s.H || iw < 0 || iw >= s.W) return pv ? pv[c] : 0.0f;
  return x[size_t((c * s.H + ih) * s.W + iw)];
}

std::string describe(const fl::ConvShape& s) {
  return "N=" + std::to_string(s.N) + " C=" + std::to_string(s.C) + " H=" + std::to_string(s.H) + " W=" +
         std::to_string(s.W) + " O=" + std::to_string(s.O) + " K=" + std::to_string(s.KH) + "x" + std::to_string(s.KW) +
         " stride=" + std::to_string(s.stride) + " pad=" + std::to_string(s.pad);
}

std::vector<fl::ConvShape> conv_shapes() {
  // N, C, H, W, O, KH, KW, stride, pad
  return {{2, 1, 28, 28, 6, 5, 5, 1, 2},   {3, 6, 14, 14, 16, 5, 5, 1, 0}, {2, 3, 9, 11, 5, 3, 3, 2, 1},
          {2, 4, 8, 8, 7, 1, 1, 1, 0},     {1, 2, 7, 5, 3, 3, 2, 1, 2},    {5, 3, 6, 6, 4, 3, 3, 3, 0},
          {2, 17, 5, 5, 9, 3, 3, 1, 1},    {1, 1, 1, 1, 1, 1, 1, 1, 0},    {9, 2, 10, 10, 3, 4, 4, 2, 3},
          {2, 5, 12, 12, 20, 1, 1, 2, 0},  {3, 2, 6, 7, 3, 6, 7, 1, 0},    {2, 3, 20, 20, 4, 17, 17, 1, 0},
          // C*KH*KW = 576: more pixels per image than one dw GEMM takes (output rows in chunks)
          {3, 64, 24, 24, 5, 3, 3, 1, 1},
          // the direct dw (AVX-512): several 16-image blocks, rows of 34 and 33 outputs (a 2- and a
          // 1-lane last chunk), output channel groups of 4, 4, 4, 1 and 3, 2, KH up to 7, pad 3
          {19, 2, 9, 37, 13, 3, 6, 1, 1}, {17, 3, 5, 33, 5, 7, 7, 1, 3}};
}

FL_TEST(im2col_exact_and_col2im_adjoint_every_isa) {
  uint64_t seed = 300;
  for (const fl::ConvShape& s : conv_shapes()) {
    Rng r(++seed);
    std::vector<float> x = random_vec(size_t(s.C * s.H * s.W), r), pvv = random_vec(size_t(s.C), r, 0.5f, 2.0f);
    const int64_t P = s.P(), CKK = s.CKK();
    for (const float* pv : {static_cast<const float*>(nullptr), static_cast<const float*>(pvv.data())}) {
      // whole image, and a block of output rows [oh0, oh1) (the conv kernels work in such blocks)
      const int64_t OH = s.OH(), OW = s.OW();
      const int64_t ranges[2][2] = {{0, OH}, {OH / 3, std::max(OH / 3 + 1, 2 * OH / 3)}};
      for (Isa isa : isas_here())
        for (const auto& rg : ranges) {
          const int64_t oh0 = rg[0], oh1 = std::min(OH, rg[1]), nb = (oh1 - oh0) * OW;
          const int64_t ldcol = nb + 3;
          std::vector<float> col(size_t(CKK * ldcol), -7.0f);
          fl::im2col_kernel().variant(isa)(x.data(), col.data(), ldcol, s, pv, oh0, oh1);
          bool ok = true;
          for (int64_t rr = 0; rr < CKK && ok; ++rr)
            for (int64_t q = 0; q < ldcol && ok; ++q) {
              const float want = q < nb ? patch_value(x, s, pv, rr, oh0 * OW + q) : -7.0f;
              const float got = col[size_t(rr * ldcol + q)];
              if (std::memcmp(&want, &got, sizeof(float)) != 0) {
                ok = false;
                FL_CHECK(false) << "im2col[" << fl::isa_name(isa) << "] " << describe(s) << " pv=" << (pv != nullptr)
                                << " rows [" << oh0 << "," << oh1 << ") at (" << rr << "," << q << "): " << got << " want "
                                << want << " seed=" << seed;
              }
            }
        }
    }
    // col2im is the adjoint of im2col (pad 0): <col2im(c), x> == <c, im2col(x)>; and on
    // small-integer data the sums are exact, so compare element-wise with a float64 scatter.
    std::vector<float> c(size_t(CKK * P));
    for (auto& v : c) v = float(r.small_int(-8, 8));
    std::vector<double> ref(size_t(s.C * s.H * s.W), 0.0);
    for (int64_t rr = 0; rr < CKK; ++rr)
      for (int64_t p = 0; p < P; ++p) {
        const int64_t ch = rr / (s.KH * s.KW), kh = rr / s.KW % s.KH, kw = rr % s.KW;
        const int64_t ih = p / s.OW() * s.stride - s.pad + kh, iw = p % s.OW() * s.stride - s.pad + kw;
        if (ih >= 0 && ih < s.H && iw >= 0 && iw < s.W) ref[size_t((ch * s.H + ih) * s.W + iw)] += c[size_t(rr * P + p)];
      }
    std::vector<float> dx0, cr = random_vec(c.size(), r);
    for (Isa isa : isas_here()) {
      std::vector<float> dx(size_t(s.C * s.H * s.W), 123.0f);
      fl::col2im_kernel().variant(isa)(c.data(), P, dx.data(), s);
      for (size_t i = 0; i < dx.size(); ++i)
        if (double(dx[i]) != ref[i]) {
          FL_CHECK(false) << "col2im[" << fl::isa_name(isa) << "] " << describe(s) << " at " << i << ": " << dx[i]
                          << " want " << ref[i] << " seed=" << seed;
          break;
        }
      // random (non-integer) data: every variant adds in the scalar order, so the bits agree
      std::vector<float> d(dx.size());
      fl::col2im_kernel().variant(isa)(cr.data(), P, d.data(), s);
      if (isa == Isa::Scalar) dx0 = d;
      else FL_CHECK(std::memcmp(d.data(), dx0.data(), d.size() * 4) == 0) << "col2im[" << fl::isa_name(isa) << "] != scalar " << describe(s);
    }
  }
}

// ============================== conv2d ======================================================
struct ConvRef {
  std::vector<double> y, dx, dw, db;
  std::vector<double> ymag, dxmag, dwmag, dbmag;  // sums of |terms| for the tolerances
};

double xpad(const std::vector<float>& x, const fl::ConvShape& s, const float* pv, int64_t n, int64_t c, int64_t ih,
            int64_t iw) {
  if (ih < 0 || ih >= s.H || iw < 0 || iw >= s.W) return pv ? pv[c] : 0.0;
  return x[size_t(((n * s.C + c) * s.H + ih) * s.W + iw)];
}

// Direct float64 convolution and its gradients, straight from the definitions.
ConvRef conv_reference(const std::vector<float>& x, const std::vector<float>& w, const std::vector<float>* bias,
                       const std::vector<float>& dy, const fl::ConvShape& s, const float* pv) {
  const int64_t OH = s.OH(), OW = s.OW();
  ConvRef R;
  R.y.assign(size_t(s.N * s.O * OH * OW), 0.0);
  R.ymag = R.y;
  R.dx.assign(size_t(s.N * s.C * s.H * s.W), 0.0);
  R.dxmag = R.dx;
  R.dw.assign(size_t(s.O * s.C * s.KH * s.KW), 0.0);
  R.dwmag = R.dw;
  R.db.assign(size_t(s.O), 0.0);
  R.dbmag = R.db;
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t o = 0; o < s.O; ++o)
      for (int64_t oh = 0; oh < OH; ++oh)
        for (int64_t ow = 0; ow < OW; ++ow) {
          const size_t yi = size_t(((n * s.O + o) * OH + oh) * OW + ow);
          double acc = bias ? double((*bias)[size_t(o)]) : 0.0, mag = std::fabs(acc);
          const double g = dy[yi];
          R.db[size_t(o)] += g;
          R.dbmag[size_t(o)] += std::fabs(g);
          for (int64_t c = 0; c < s.C; ++c)
            for (int64_t kh = 0; kh < s.KH; ++kh)
              for (int64_t kw = 0; kw < s.KW; ++kw) {
                const int64_t ih = oh * s.stride - s.pad + kh, iw = ow * s.stride - s.pad + kw;
                const size_t wi = size_t(((o * s.C + c) * s.KH + kh) * s.KW + kw);
                const double xv = xpad(x, s, pv, n, c, ih, iw);
                acc += w[wi] * xv;
                mag += std::fabs(w[wi] * xv);
                R.dw[wi] += g * xv;
                R.dwmag[wi] += std::fabs(g * xv);
                if (ih >= 0 && ih < s.H && iw >= 0 && iw < s.W) {
                  const size_t xi = size_t(((n * s.C + c) * s.H + ih) * s.W + iw);
                  R.dx[xi] += g * w[wi];
                  R.dxmag[xi] += std::fabs(g * w[wi]);
                }
              }
          R.y[yi] = acc;
          R.ymag[yi] = mag;
        }
  return R;
}

bool close_all(const char* what, Isa isa, const fl::ConvShape& s, uint64_t seed, const std::vector<float>& got,
               const std::vector<double>& ref, const std::vector<double>& mag, int64_t terms) {
  for (size_t i = 0; i < got.size(); ++i) {
    const double tol = 2.0 * double(terms + 2) * kEps * mag[i] + 1e-30;
    if (!(std::fabs(double(got[i]) - ref[i]) <= tol)) {
      FL_CHECK(false) << what << "[" << fl::isa_name(isa) << "] " << describe(s) << " at " << i << ": got " << got[i]
                      << " want " << ref[i] << " tol " << tol << " seed=" << seed;
      return false;
    }
  }
  return true;
}

FL_TEST(conv2d_forward_backward_all_variants_vs_float64) {
  fl::set_num_threads(2);
  uint64_t seed = 700;
  for (const fl::ConvShape& s : conv_shapes()) {
    for (int use_pv = 0; use_pv < 2; ++use_pv) {
      Rng r(++seed);
      std::vector<float> x = random_vec(size_t(s.N * s.C * s.H * s.W), r), w = random_vec(size_t(s.O * s.CKK()), r);
      std::vector<float> bias = random_vec(size_t(s.O), r), pvv = random_vec(size_t(s.C), r, -2.0f, 2.0f);
      std::vector<float> dy = random_vec(size_t(s.N * s.O * s.P()), r);
      const float* pv = use_pv ? pvv.data() : nullptr;
      const ConvRef R = conv_reference(x, w, use_pv ? &bias : nullptr, dy, s, pv);
      for (Isa isa : isas_here()) {
        std::vector<float> y(R.y.size(), std::numeric_limits<float>::quiet_NaN());
        fl::conv2d_forward_kernel().variant(isa)(x.data(), w.data(), use_pv ? bias.data() : nullptr, y.data(), s, pv);
        close_all("conv2d_forward", isa, s, seed, y, R.y, R.ymag, s.CKK() + 1);
        // outputs start as NaN: they must be overwritten, never accumulated into
        std::vector<float> dx(R.dx.size(), std::numeric_limits<float>::quiet_NaN());
        std::vector<float> dw(R.dw.size(), std::numeric_limits<float>::quiet_NaN());
        std::vector<float> db(R.db.size(), std::numeric_limits<float>::quiet_NaN());
        fl::conv2d_backward_kernel().variant(isa)(x.data(), w.data(), dy.data(), dx.data(), dw.data(), db.data(), s, pv);
        close_all("conv2d_backward.dx", isa, s, seed, dx, R.dx, R.dxmag, s.O * s.KH * s.KW);
        close_all("conv2d_backward.dw", isa, s, seed, dw, R.dw, R.dwmag, s.N * s.P());
        close_all("conv2d_backward.db", isa, s, seed, db, R.db, R.dbmag, s.N * s.P());
        // each output alone (the others null) gives the same bits
        std::vector<float> dw2(R.dw.size(), 0.0f), db2(R.db.size(), 0.0f);
        fl::conv2d_backward_kernel().variant(isa)(x.data(), w.data(), dy.data(), nullptr, dw2.data(), nullptr, s, pv);
        fl::conv2d_backward_kernel().variant(isa)(x.data(), w.data(), dy.data(), nullptr, nullptr, db2.data(), s, pv);
        FL_CHECK(std::memcmp(dw.data(), dw2.data(), dw.size() * 4) == 0 && std::memcmp(db.data(), db2.data(), db.size() * 4) == 0)
            << "conv2d_backward[" << fl::isa_name(isa) << "] " << describe(s) << ": dw/db alone differ";
      }
    }
  }
}

FL_TEST(conv2d_bit_identical_for_any_thread_count) {
  const fl::ConvShape shapes[] = {{37, 6, 14, 14, 16, 5, 5, 1, 0}, {20, 1, 28, 28, 6, 5, 5, 1, 2}, {3, 16, 16, 16, 16, 3, 3, 1, 1},
                                  {1, 8, 30, 30, 8, 3, 3, 2, 1}};
  for (const fl::ConvShape& s : shapes) {
    Rng r(31);
    std::vector<float> x = random_vec(size_t(s.N * s.C * s.H * s.W), r), w = random_vec(size_t(s.O * s.CKK()), r);
    std::vector<float> b = random_vec(size_t(s.O), r), dy = random_vec(size_t(s.N * s.O * s.P()), r);
    std::vector<float> pv = random_vec(size_t(s.C), r);
    for (Isa isa : isas_here()) {
      std::vector<float> y1, dx1, dw1, db1;
      for (int threads : {1, 2, 3}) {
        fl::set_num_threads(threads);
        std::vector<float> y(size_t(s.N * s.O * s.P())), dx(x.size()), dw(w.size()), db(b.size());
        fl::conv2d_forward_kernel().variant(isa)(x.data(), w.data(), b.data(), y.data(), s, pv.data());
        fl::conv2d_backward_kernel().variant(isa)(x.data(), w.data(), dy.data(), dx.data(), dw.data(), db.data(), s, pv.data());
        if (threads == 1) { y1 = y; dx1 = dx; dw1 = dw; db1 = db; continue; }
        FL_CHECK(std::memcmp(y.data(), y1.data(), y.size() * 4) == 0) << "conv2d_forward[" << fl::isa_name(isa) << "] " << describe(s) << " threads=" << threads;
        FL_CHECK(std::memcmp(dx.data(), dx1.data(), dx.size() * 4) == 0) << "conv dx[" << fl::isa_name(isa) << "] " << describe(s) << " threads=" << threads;
        FL_CHECK(std::memcmp(dw.data(), dw1.data(), dw.size() * 4) == 0) << "conv dw[" << fl::isa_name(isa) << "] " << describe(s) << " threads=" << threads;
        FL_CHECK(std::memcmp(db.data(), db1.data(), db.size() * 4) == 0) << "conv db[" << fl::isa_name(isa) << "] " << describe(s) << " threads=" << threads;
      }
    }
  }
  fl::set_num_threads(2);
}

// The direct forwards of small convolutions (conv2d_direct.cc on AVX2; conv2d_lanes.cc, 16 images
// per vector, on AVX-512 for batches of 16 or more) must give the bits of the im2col + sgemm path
// they replace: per image, im2col then the ISA's sgemm (alpha 1, beta 0), then the bias. Shapes
// where they apply, with awkward rows (OW 1 .. 33), channel counts (1 .. 32), padding with pad
// values, inputs smaller than the kernel, K up to 256, and batches of 16 .. 35 (partial blocks).
FL_TEST(conv2d_direct_forward_equals_im2col_sgemm_bitwise) {
  const fl::ConvShape shapes[] = {{19, 1, 28, 28, 6, 5, 5, 1, 2}, {16, 6, 14, 14, 16, 5, 5, 1, 0}, {35, 3, 9, 11, 7, 3, 3, 1, 1},
                                  {17, 2, 5, 33, 13, 3, 3, 1, 0}, {21, 10, 12, 17, 5, 5, 5, 1, 1}, {18, 28, 6, 6, 11, 3, 3, 1, 1},
                                  {5, 1, 28, 28, 6, 5, 5, 1, 2},  {3, 6, 14, 14, 16, 5, 5, 1, 0}, {2, 3, 9, 11, 7, 3, 3, 1, 1},{5, 1, 28, 28, 6, 5, 5, 1, 2},  {3, 6, 14, 14, 16, 5, 5, 1, 0}, {2, 3, 9, 11, 7, 3, 3, 1, 1},
                                  {2, 2, 5, 33, 13, 3, 3, 1, 0},  {3, 1, 1, 1, 1, 1, 1, 1, 0},   {2, 4, 3, 3, 32, 3, 3, 1, 2},
                                  {2, 10, 12, 17, 5, 5, 5, 1, 1}, {1, 4, 8, 8, 9, 8, 8, 1, 3},   {2, 1, 4, 40, 6, 2, 8, 1, 0},
                                  {2, 28, 6, 6, 11, 3, 3, 1, 1},  {1, 16, 16, 16, 24, 4, 4, 1, 0}};
  uint64_t seed = 700;
  for (const fl::ConvShape& s : shapes) {
    FL_CHECK(fl::conv2d_direct_applies(s)) << describe(s) << ": the direct path should apply";
    Rng r(++seed);
    const int64_t P = s.P(), CKK = s.CKK(), xs = s.C * s.H * s.W;
    std::vector<float> x = random_vec(size_t(s.N * xs), r), w = random_vec(size_t(s.O * CKK), r), b = random_vec(size_t(s.O), r);
    std::vector<float> pvv = random_vec(size_t(s.C), r);
    x[0] = -0.0f;  // signed zeros and zero weights: the chain starts from +0 on both paths
    w[1] = 0.0f;
    for (const float* pv : {static_cast<const float*>(nullptr), static_cast<const float*>(pvv.data())})
      for (Isa isa : isas_here()) {
        if (isa == Isa::Scalar) continue;
        std::vector<float> want(size_t(s.N * s.O * P)), col(size_t(CKK * P));
        for (int64_t n = 0; n < s.N; ++n) {
          fl::im2col_kernel().variant(isa)(x.data() + n * xs, col.data(), P, s, pv, 0, s.OH());
          fl::sgemm_kernel().variant(isa)(false, false, s.O, P, CKK, 1.0f, w.data(), CKK, col.data(), P, 0.0f, want.data() + n * s.O * P, P);
          for (int64_t o = 0; o < s.O; ++o)
            for (int64_t q = 0; q < P; ++q) want[size_t((n * s.O + o) * P + q)] += b[size_t(o)];
        }
        std::vector<float> got(want.size(), std::numeric_limits<float>::quiet_NaN());
        fl::conv2d_forward_kernel().variant(isa)(x.data(), w.data(), b.data(), got.data(), s, pv);
        for (size_t i = 0; i < got.size(); ++i)
          if (std::memcmp(&got[i], &want[i], 4) != 0) {
            FL_CHECK(false) << "conv2d_forward[" << fl::isa_name(isa) << "] direct " << describe(s) << " pv=" << (pv != nullptr)
                            << " at " << i << ": " << got[i] << " want " << want[i] << " seed=" << seed;
            break;
          }
      }
  }
}

// ============================== max pooling ==================================================
FL_TEST(maxpool_all_variants_exact_ties_and_nan) {
  struct P { int64_t N, C, H, W, k, s; };
  const P shapes[] = {{2, 3, 28, 28, 2, 2}, {1, 2, 9, 37, 2, 2}, {3, 1, 5, 4, 2, 2}, {1, 1, 2, 2, 2, 2}, {2, 2, 11, 13, 3, 2},
                      {1, 3, 7, 7, 2, 1}, {1, 1, 10, 67, 2, 2}, {2, 2, 6, 6, 3, 3}};
  uint64_t seed = 900;
  for (const P& p : shapes) {
    for (int variant = 0; variant < 3; ++variant) {  // 0: random, 1: small integers (ties), 2: with NaNs
      Rng r(++seed);
      std::vector<float> x(size_t(p.N * p.C * p.H * p.W));
      for (auto& v : x) v = variant == 0 ? r.uniform(-1, 1) : float(r.small_int(-2, 2));
      if (variant == 2)
        for (size_t i = 0; i < x.size(); i += 1 + r.next() % 7) x[i] = std::numeric_limits<float>::quiet_NaN();
      const int64_t OH = (p.H - p.k) / p.s + 1, OW = (p.W - p.k) / p.s + 1, ny = p.N * p.C * OH * OW;
      // naive reference of the documented rule
      std::vector<float> yref(static_cast<size_t>(ny));
      std::vector<int32_t> aref(static_cast<size_t>(ny));
      for (int64_t pl = 0; pl < p.N * p.C; ++pl)
        for (int64_t oh = 0; oh < OH; ++oh)
          for (int64_t ow = 0; ow < OW; ++ow) {
            int64_t bi = -1;
            float best = 0;
            for (int64_t kh = 0; kh < p.k; ++kh)
              for (int64_t kw = 0; kw < p.k; ++kw) {
                const int64_t idx = (oh * p.s + kh) * p.W + ow * p.s + kw;
                const float v = x[size_t(pl * p.H * p.W + idx)];
                if (bi < 0 || v > best || std::isnan(v)) { best = v; bi = idx; }
              }
            yref[size_t((pl * OH + oh) * OW + ow)] = best;
            aref[size_t((pl * OH + oh) * OW + ow)] = int32_t(bi);
          }
      for (Isa isa : isas_here()) {
        auto fn = fl::maxpool2d_forward_kernel().variant(isa);
        if (!fn) continue;
        std::vector<float> y(size_t(ny), -99.0f);
        std::vector<int32_t> am(size_t(ny), -1);
        fn(x.data(), y.data(), am.data(), p.N, p.C, p.H, p.W, p.k, p.s);
        for (int64_t i = 0; i < ny; ++i)
          if (std::memcmp(&y[size_t(i)], &yref[size_t(i)], 4) != 0 || am[size_t(i)] != aref[size_t(i)]) {
            FL_CHECK(false) << "maxpool2d_forward[" << fl::isa_name(isa) << "] N=" << p.N << " C=" << p.C << " H=" << p.H
                            << " W=" << p.W << " k=" << p.k << " s=" << p.s << " data=" << variant << " at " << i
                            << ": got (" << y[size_t(i)] << ", " << am[size_t(i)] << ") want (" << yref[size_t(i)] << ", "
                            << aref[size_t(i)] << ") seed=" << seed;
            break;
          }
      }
      // backward: dx = 0 then scatter-add dy at argmax, in output order
      std::vector<float> dy = random_vec(size_t(ny), r);
      std::vector<float> dxref(x.size(), 0.0f);
      for (int64_t pl = 0; pl < p.N * p.C; ++pl)
        for (int64_t i = 0; i < OH * OW; ++i)
          dxref[size_t(pl * p.H * p.W + aref[size_t(pl * OH * OW + i)])] += dy[size_t(pl * OH * OW + i)];
      std::vector<float> dx(x.size(), std::numeric_limits<float>::quiet_NaN());
      FL_CHECK(fl::maxpool2d_backward(dy.data(), aref.data(), dx.data(), p.N, p.C, p.H, p.W, p.k, p.s));
      FL_CHECK(std::memcmp(dx.data(), dxref.data(), dx.size() * 4) == 0)
          << "maxpool2d_backward k=" << p.k << " s=" << p.s << " H=" << p.H << " W=" << p.W << " seed=" << seed;
      // an argmax inside the plane but outside its window is scattered there; one outside the
      // plane is skipped, and the call says so
      std::vector<int32_t> moved = aref;
      moved[0] = int32_t(p.H * p.W - 1);
      std::fill(dxref.begin(), dxref.end(), 0.0f);
      for (int64_t pl = 0; pl < p.N * p.C; ++pl)
        for (int64_t i = 0; i < OH * OW; ++i)
          dxref[size_t(pl * p.H * p.W + moved[size_t(pl * OH * OW + i)])] += dy[size_t(pl * OH * OW + i)];
      std::fill(dx.begin(), dx.end(), std::numeric_limits<float>::quiet_NaN());
      FL_CHECK(fl::maxpool2d_backward(dy.data(), moved.data(), dx.data(), p.N, p.C, p.H, p.W, p.k, p.s));
      FL_CHECK(std::memcmp(dx.data(), dxref.data(), dx.size() * 4) == 0)
          << "maxpool2d_backward (argmax outside its window) k=" << p.k << " s=" << p.s << " H=" << p.H << " W=" << p.W;
      moved[size_t(ny - 1)] = int32_t(p.H * p.W);
      FL_CHECK(!fl::maxpool2d_backward(dy.data(), moved.data(), dx.data(), p.N, p.C, p.H, p.W, p.k, p.s))
          << "maxpool2d_backward accepted an argmax outside the plane";
    }
  }
}

// ============================== sgemm with op(A) packed once ==================================
// sgemm_packed(level) must give exactly the bits of sgemm_kernel().variant(level) (the conv kernels
// rely on it), for every transpose, awkward shapes, the K block (256), the row tile and the K split.
FL_TEST(sgemm_packed_equals_sgemm_bit_for_bit) {
  const GemmCase cases[] = {
      {false, false, 1, 1, 1, 0, 0, 0, 1.0f, 0.0f},      {false, false, 7, 13, 5, 0, 0, 0, -0.5f, 1.0f},
      {false, false, 17, 33, 257, 0, 0, 0, 1.0f, 0.0f},  {false, false, 129, 47, 300, 0, 0, 0, 2.0f, -1.5f},
      {false, false, 64, 16, 4608, 0, 0, 0, 1.0f, 0.0f}, {false, false, 6, 25, 9000, 0, 0, 0, 0.5f, 1.0f},
      {false, false, 150, 100, 16, 0, 0, 0, 1.0f, 0.0f}, {false, false, 577, 31, 64, 0, 0, 0, 1.0f, 0.0f},
  };
  fl::set_num_threads(2);
  int failures = 0;
  uint64_t seed = 9100;
  for (const GemmCase& b : cases)
    for (int t = 0; t < 4; ++t) {
      GemmCase g = b;
      g.tA = (t & 1) != 0;
      g.tB = (t & 2) != 0;
      g.lda = (g.tA ? g.M : g.K) + (t == 3 ? 2 : 0);
      g.ldb = (g.tB ? g.K : g.N) + (t == 2 ? 1 : 0);
      g.ldc = g.N + (t == 1 ? 3 : 0);
      for (Isa isa : isas_here()) {
        if (isa == Isa::Scalar && g.M * g.N * g.K > 20000000) continue;
        Rng r(++seed);
        const std::vector<float> A = random_vec(size_t((g.tA ? g.K : g.M) * g.lda), r), B = random_vec(size_t((g.tB ? g.N : g.K) * g.ldb), r);
        const std::vector<float> C0 = random_vec(size_t(g.M * g.ldc), r);
        std::vector<float> want = C0, got = C0;
        fl::sgemm_kernel().variant(isa)(g.tA, g.tB, g.M, g.N, g.K, g.alpha, A.data(), g.lda, B.data(), g.ldb, g.beta, want.data(), g.ldc);
        const fl::SgemmPacked& pk = fl::sgemm_packed(isa);
        std::vector<float> ap(pk.size(g.M, g.K) + 16, std::numeric_limits<float>::quiet_NaN());
        pk.pack(g.tA, g.M, g.K, A.data(), g.lda, ap.data());
        pk.run(ap.data(), g.tB, g.M, g.N, g.K, g.alpha, B.data(), g.ldb, g.beta, got.data(), g.ldc);
        if (std::memcmp(want.data(), got.data(), want.size() * 4) != 0) {
          ++failures;
          FL_CHECK(false) << "sgemm_packed[" << fl::isa_name(isa) << "] " << describe(g) << " differs from sgemm";
        }
      }
    }
  FL_CHECK(failures == 0) << failures << " sgemm_packed mismatches";
}

// ============================== SGD step and observer max =====================================
// The spec, written out: PyTorch's SGD rule in float64, one operation at a time (the JavaScript
// loop it replaced).
bool sgd_reference(std::vector<float>& w, const std::vector<float>& g, std::vector<float>& buf, double lr, double wd, double mu,
                   bool started, bool nesterov) {
  bool finite = true;
  for (size_t i = 0; i < w.size(); ++i) {
    volatile double d = double(g[i]) + wd * double(w[i]);
    if (mu > 0) {
      volatile double b = started ? mu * double(buf[i]) + d : double(d);
      buf[i] = float(b);
      d = nesterov ? d + mu * b : double(b);
    }
    volatile double prod = lr * d;
    w[i] = float(double(w[i]) - prod);
    finite = finite && std::isfinite(w[i]);
  }
  return finite;
}

// SAQ's perturbation loops: the float64 rules of their contract, bit for bit, over several parallel
// blocks (65,536 elements each) and a ragged end; the norm continues a chain across calls.
FL_TEST(saq_perturbation_loops_equal_the_float64_rules) {
  Rng r(4242);
  const size_t n = (size_t(1) << 17) + 77;
  std::vector<float> g = random_vec(n, r, -3.0f, 3.0f), d = random_vec(n, r);
  g[5] = 1e-30f;
  g[6] = -0.0f;
  double want = 0.25;
  for (size_t i = 0; i < n; ++i) want += double(g[i]) * double(g[i]);
  const double half = fl::sum_squares_f64(g.data(), n / 2, 0.25);
  FL_CHECK(fl::sum_squares_f64(g.data() + n / 2, n - n / 2, half) == want) << "sum_squares_f64 chain";
  const double sc = 0.1 / std::sqrt(want);
  std::vector<float> eps(n, std::numeric_limits<float>::quiet_NaN()), dd = d;
  fl::scale_to_f32(g.data(), n, sc, eps.data());
  fl::add_scaled_f32(dd.data(), g.data(), n, sc);
  for (size_t i = 0; i < n; ++i) {
    const float e = float(sc * double(g[i])), a = float(double(d[i]) + sc * double(g[i]));
    if (std::memcmp(&eps[i], &e, 4) != 0 || std::memcmp(&dd[i], &a, 4) != 0) {
      FL_CHECK(false) << "SAQ loops at " << i << ": eps " << eps[i] << " want " << e << ", d " << dd[i] << " want " << a;
      break;
    }
  }
}

FL_TEST(sgd_step_every_variant_equals_the_float64_rule) {
  fl::set_num_threads(2);
  const size_t sizes[] = {1, 15, 17, 65537, 200003};
  uint64_t seed = 4400;
  for (size_t n : sizes)
    for (int mode = 0; mode < 5; ++mode) {
      const double mu = mode == 4 ? 0.0 : 0.9, wd = mode == 2 ? 0.0 : 5e-4, lr = 0.05 + 0.01 * mode;
      const bool started = mode != 0, nesterov = mode == 3;
      Rng r(++seed);
      const std::vector<float> w0 = random_vec(n, r, -2, 2), g = random_vec(n, r, -1, 1), b0 = random_vec(n, r, -1, 1);
      std::vector<float> wr = w0, br = b0;
      const bool fr = sgd_reference(wr, g, br, lr, wd, mu, started, nesterov);
      for (Isa isa : isas_here()) {
        std::vector<float> w = w0, b = b0;
        const int bad = fl::sgd_step_kernel().variant(isa)(w.data(), g.data(), b.data(), n, lr, wd, mu, started, nesterov);
        FL_CHECK(std::memcmp(w.data(), wr.data(), n * 4) == 0) << "sgd w [" << fl::isa_name(isa) << "] n=" << n << " mode=" << mode;
        FL_CHECK(std::memcmp(b.data(), br.data(), n * 4) == 0) << "sgd buf [" << fl::isa_name(isa) << "] n=" << n << " mode=" << mode;
        FL_CHECK((bad == 0) == fr) << "sgd finiteness [" << fl::isa_name(isa) << "]";
      }
      std::vector<float> w = w0, b = b0;  // the threaded driver
      FL_CHECK(fl::sgd_step(w.data(), g.data(), b.data(), n, lr, wd, mu, started, nesterov) == fr);
      FL_CHECK(std::memcmp(w.data(), wr.data(), n * 4) == 0) << "sgd_step driver n=" << n << " mode=" << mode;
    }
  // a weight that overflows, and a NaN gradient, are reported
  for (Isa isa : isas_here()) {
    std::vector<float> w = {1.0f, 3e38f, 2.0f}, g = {0.0f, -3e38f, 0.0f}, b = {0, 0, 0};
    FL_CHECK(fl::sgd_step_kernel().variant(isa)(w.data(), g.data(), b.data(), 3, 1.0, 0.0, 0.0, false, false) != 0) << "overflow";
    std::vector<float> w2(40, 1.0f), g2(40, 0.0f), b2(40, 0.0f);
    g2[37] = std::numeric_limits<float>::quiet_NaN();
    FL_CHECK(fl::sgd_step_kernel().variant(isa)(w2.data(), g2.data(), b2.data(), 40, 0.1, 0.0, 0.9, true, false) != 0) << "NaN";
  }
}

FL_TEST(max_ignoring_nan_every_variant) {
  fl::set_num_threads(2);
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  auto spec = [](const std::vector<float>& x) {  // the largest non-NaN value, -0 < +0; -Inf if none
    float m = -std::numeric_limits<float>::infinity();
    bool any = false;
    for (float v : x) {
      if (std::isnan(v)) continue;
      if (!any || v > m || (v == 0 && m == 0 && !std::signbit(v) && std::signbit(m))) m = v;
      any = true;
    }
    return m;
  };
  std::vector<std::vector<float>> cases = {{}, {nan}, {nan, nan, nan}, {-0.0f}, {-0.0f, 0.0f}, {0.0f, -0.0f, -1.0f},
                                           {-inf, nan}, {-3.0f, -2.0f, nan, -5.0f}, {inf, 1.0f}, {1e-45f, -1e-45f, 0.0f}};
  Rng r(31);
  for (size_t n : {size_t(15), size_t(16), size_t(17), size_t(70001)}) {
    std::vector<float> v = random_vec(n, r, -3, 2);
    for (size_t i = 0; i < n; i += 7) v[i] = nan;
    cases.push_back(v);
  }
  for (const auto& x : cases) {
    const float want = spec(x);
    for (Isa isa : isas_here()) {
      const int32_t k = fl::max_key_kernel().variant(isa)(x.data(), x.size());
      float got = -inf;
      if (k != INT32_MIN) {
        const uint32_t u = uint32_t(k < 0 ? (k ^ 0x7fffffff) : k);
        std::memcpy(&got, &u, 4);
      }
      FL_CHECK(std::memcmp(&got, &want, 4) == 0) << "max [" << fl::isa_name(isa) << "] n=" << x.size() << ": " << got << " vs " << want;
    }
    const float d = fl::max_ignoring_nan(x.data(), x.size());
    FL_CHECK(std::memcmp(&d, &want, 4) == 0) << "max_ignoring_nan n=" << x.size() << ": " << d << " vs " << want;
  }
}

FL_TEST(all_finite_and_normalize_every_variant) {
  fl::set_num_threads(2);
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  Rng r(57);
  for (size_t n : {size_t(0), size_t(1), size_t(17), size_t(70001)}) {
    std::vector<float> x = random_vec(n, r, -1e30f, 1e30f);
    for (int bad = 0; bad < 4; ++bad) {
      std::vector<float> y = x;
      if (bad > 0 && n > 0) y[(n * size_t(bad)) / 4] = bad == 1 ? nan : bad == 2 ? inf : -inf;
      const bool want = !(bad > 0 && n > 0);
      for (Isa isa : isas_here()) {
        fl::kern::f32_absmax_bits.select(isa);
        FL_CHECK(fl::all_finite(y.data(), n) == want) << "all_finite [" << fl::isa_name(isa) << "] n=" << n << " bad=" << bad;
      }
      fl::kern::f32_absmax_bits.select(fl::current_isa());
    }
  }
  // normalisation: float((double(x) - mean) * inv), every byte value, per channel
  const size_t B = 3, C = 2, HW = 300;
  std::vector<uint8_t> raw(B * C * HW);
  for (size_t i = 0; i < raw.size(); ++i) raw[i] = uint8_t((i * 37 + 11) % 256);
  const double mean[2] = {72.93, 0.4914 * 255}, inv[2] = {1 / 90.0, 1 / (0.247 * 255)};
  std::vector<float> want(raw.size());
  for (size_t b = 0; b < B; ++b)
    for (size_t c = 0; c < C; ++c)
      for (size_t j = 0; j < HW; ++j) {
        volatile double d = double(raw[(b * C + c) * HW + j]) - mean[c];
        want[(b * C + c) * HW + j] = float(d * inv[c]);
      }
  for (Isa isa : isas_here()) {
    std::vector<float> y(raw.size(), nan);
    for (size_t b = 0; b < B; ++b)
      for (size_t c = 0; c < C; ++c)
        fl::normalize_u8_kernel().variant(isa)(raw.data() + (b * C + c) * HW, y.data() + (b * C + c) * HW, HW, mean[c], inv[c]);
    FL_CHECK(std::memcmp(y.data(), want.data(), y.size() * 4) == 0) << "normalize [" << fl::isa_name(isa) << "]";
  }
  std::vector<float> y(raw.size(), nan);
  fl::normalize_u8(raw.data(), y.data(), B, C, HW, mean, inv);
  FL_CHECK(std::memcmp(y.data(), want.data(), y.size() * 4) == 0) << "normalize_u8 driver";
}

// ============================== peak probes ==================================================
FL_TEST(peak_probes_count_ops) {
  const struct { fl::PeakKind k; double per_iter; } kinds[] = {
      {fl::PeakKind::Fma512, 16 * 16 * 2}, {fl::PeakKind::Fma256, 12 * 8 * 2}, {fl::PeakKind::Vnni512, 16 * 16 * 4},
      {fl::PeakKind::Int8Avx2, 8 * 32}, {fl::PeakKind::Int4Avx2, 8 * 32}};
  for (const auto& k : kinds) {
    if (!fl::peak_supported(k.k)) continue;
    const fl::PeakResult r = fl::peak_probe(k.k, 1000, 2);
    FL_CHECK(r.ops == 2 * 1000 * k.per_iter) << "kind " << int(k.k) << " ops " << r.ops;
    FL_CHECK(r.wall_seconds > 0 && r.cpu_seconds > 0) << "kind " << int(k.k) << " " << r.wall_seconds << " " << r.cpu_seconds;
  }
}

}  // namespace
