// Int4 engine kernels: every ISA's GEMM gives exactly the int32 accumulators of a plain
// triple loop, and the float64 epilogue of the spec (qengine.h, written out below independently
// of the kernels) bit for bit, on the GEMM path and on the direct kernel (AVX-512 VNNI weights, and
// AVX2 weights with codes in [-8, 7]); conv equals a direct convolution; pooling, residual and
// requant ops equal their references.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "flatenn/core.h"
#include "flatenn/qengine.h"
#include "flatenn/quant.h"
#include "flatenn/rng.h"
#include "harness.h"

namespace {

std::vector<fl::Isa> gemm_isas() {
  std::vector<fl::Isa> v = {fl::Isa::Scalar};
  if (static_cast<int>(fl::best_isa()) >= 1) v.push_back(fl::Isa::Avx2);
  if (fl::best_isa() == fl::Isa::Avx512 && fl::cpu_features().avx512vnni) v.push_back(fl::Isa::Avx512);
  return v;
}

uint32_t rbits(uint64_t i, uint32_t stream) { return uint32_t(fl::rng_bits64(3, fl::RngPurpose::User, stream, i)); }

std::vector<uint8_t> rand_u8(size_t n, uint32_t stream, int maxv) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = uint8_t(rbits(i, stream) % uint32_t(maxv + 1));
  return v;
}
std::vector<int8_t> rand_codes(size_t n, uint32_t stream, int lo, int hi) {
  std::vector<int8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = int8_t(lo + int(rbits(i, stream) % uint32_t(hi - lo + 1)));
  return v;
}
uint32_t fbits(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }
// Against the spec: the same bits, or both NaN (the spec does not fix a NaN's payload / sign;
// kernel against kernel comparisons use fbits).
bool same_f(float a, float b) { return fbits(a) == fbits(b) || (std::isnan(a) && std::isnan(b)); }

// ---- the epilogue spec (qengine.h), written out here independently of native/kernels/qrequant.h ----
// y = fl(fl(s * double(acc)) + b): the product rounded on its own (volatile: never fused into an FMA).
double spec_affine(int64_t acc, double s, double b) {
  volatile double p = s * double(acc);
  return p + b;
}
// fl(y + t) of two rounded float64 values.
double spec_add(double y, double t) {
  volatile double v = t;
  return y + v;
}
// Codes: q = min(rhe(max(fl(y * inv), 0)), levels), NaN -> 0 (rhe: round half to even, the default
// rounding mode of nearbyint).
uint8_t spec_code(double y, double inv, double levels) {
  double t = y * inv;
  if (!(t > 0.0)) t = 0.0;  // max(., 0) with NaN -> 0
  t = std::nearbyint(t);
  return uint8_t(t < levels ? t : levels);
}
double spec_inv(double actScale) { return 1.0 / actScale; }

std::vector<uint8_t> make_weights(const std::vector<int8_t>& codes, size_t N, size_t K, fl::Isa isa) {
  std::vector<uint8_t> qw(fl::qweights_bytes(N, K));
  fl::qweights_from_codes(codes.data(), N, K, 8, isa, qw.data());
  return qw;
}
bool codes_in(const std::vector<int8_t>& w, int lo, int hi) {
  for (int8_t v : w)
    if (v < lo || v > hi) return false;
  return true;
}

// Row-major [M][N] output in each mode.
fl::QOut out_mn(fl::QOutMode mode, void* data, size_t M, size_t N, const double* scale, const double* bias, double as,
                double levels) {
  fl::QOut o{};
  o.mode = mode; o.data = data; o.P = int64_t(M); o.strideImg = 0; o.strideP = int64_t(N); o.strideN = 1;
  o.scale = scale; o.bias = bias; o.actScale = as; o.levels = levels;
  return o;
}

const char* path_name(fl::QConvPath p) {
  return p == fl::QConvPath::Gemm ? "gemm" : p == fl::QConvPath::Direct ? "direct" : "auto";
}

}  // namespace

FL_TEST(qgemm_int32_exact_every_isa_awkward_shapes) {
  // 8-bit weights (the direct kernel only with AVX-512 VNNI weights) and 4-bit weights (the
  // direct kernel with AVX2 weights too); Direct falls back to the GEMM path where it does not apply
  const size_t Ms[] = {1, 3, 15, 16, 17, 33, 47, 48, 49, 97, 130};
  const size_t Ns[] = {1, 3, 7, 8, 9, 17, 33};
  const size_t Ks[] = {1, 3, 4, 5, 31, 64, 129};
  uint32_t stream = 0;
  for (int wbits : {8, 4})
    for (size_t M : Ms)
      for (size_t N : Ns)
        for (size_t K : Ks) {
          ++stream;
          const auto A = rand_u8(M * K, stream, 255);
          const auto W = wbits == 8 ? rand_codes(N * K, stream + 1000, -128, 127) : rand_codes(N * K, stream + 1000, -8, 7);
          std::vector<int32_t> ref(M * N);
          for (size_t m = 0; m < M; ++m)
            for (size_t n = 0; n < N; ++n) {
              int32_t s = 0;
              for (size_t k = 0; k < K; ++k) s += int32_t(A[m * K + k]) * int32_t(W[n * K + k]);
              ref[m * N + n] = s;
            }
          for (fl::Isa isa : gemm_isas()) {
            const auto qw = make_weights(W, N, K, isa);
            FL_CHECK(fl::qweights_check(qw.data(), qw.size(), N, K) == nullptr);
            // the direct kernel: AVX-512 VNNI weights, or AVX2 weights whose codes lie in [-8, 7]
            const bool direct = isa == fl::Isa::Avx512 || (isa == fl::Isa::Avx2 && codes_in(W, -8, 7));
            FL_CHECK(fl::qconv_direct_applies(qw.data(), K, 1, 1, 1, 1, 1, 0, 1, 1, fl::QOutMode::Int32) == direct)
                << fl::isa_name(isa) << " wbits=" << wbits << " N=" << N << " K=" << K;
            FL_CHECK(fl::qconv_runs_direct(qw.data(), K, 1, 1, 1, 1, 1, 0, 1, 1, fl::QOutMode::Int32, true) == direct)
                << fl::isa_name(isa) << " wbits=" << wbits << " N=" << N << " K=" << K;
            for (fl::QConvPath path : {fl::QConvPath::Gemm, fl::QConvPath::Direct}) {
              std::vector<int32_t> out(M * N, 0x5a5a5a5a);
              fl::qgemm_u8s8(A.data(), M, K, K, qw.data(), out_mn(fl::QOutMode::Int32, out.data(), M, N, nullptr, nullptr, 1, 1), path);
              size_t bad = 0;
              while (bad < out.size() && out[bad] == ref[bad]) ++bad;
              FL_CHECK(bad == out.size()) << fl::isa_name(isa) << " " << path_name(path) << " wbits=" << wbits << " M=" << M
                                          << " N=" << N << " K=" << K << " at m=" << bad / N << " n=" << bad % N
                                          << " ref=" << ref[std::min(bad, out.size() - 1)] << " got=" << out[std::min(bad, out.size() - 1)];
            }
          }
        }
}

FL_TEST(qgemm_extreme_values_no_overflow) {
  // all 255 x all -128 at K = 4096: acc = -133693440, exact in int32 on every ISA; and all 255 x
  // all -8 (4-bit weights, the AVX2 direct kernel too); one channel at the positive bound
  const size_t M = 50, N = 9, K = 4096;
  std::vector<uint8_t> A(M * K, 255);
  for (int lo : {-128, -8}) {
    const int hi = -lo - 1;
    std::vector<int8_t> W(N * K, int8_t(lo));
    for (size_t k = 0; k < K; ++k) W[3 * K + k] = int8_t(hi);
    for (fl::Isa isa : gemm_isas()) {
      const auto qw = make_weights(W, N, K, isa);
      for (fl::QConvPath path : {fl::QConvPath::Gemm, fl::QConvPath::Direct}) {
        std::vector<int32_t> out(M * N);
        fl::qgemm_u8s8(A.data(), M, K, K, qw.data(), out_mn(fl::QOutMode::Int32, out.data(), M, N, nullptr, nullptr, 1, 1), path);
        bool ok = true;
        for (size_t m = 0; m < M; ++m)
          for (size_t n = 0; n < N; ++n) ok = ok && out[m * N + n] == (n == 3 ? 255 * hi * 4096 : 255 * lo * 4096);
        FL_CHECK(ok) << fl::isa_name(isa) << " " << path_name(path) << " lo=" << lo << " " << out[0];
      }
    }
  }
}

FL_TEST(qgemm_epilogues_bit_identical_to_spec) {
  // every ISA, GEMM path and direct kernel (AVX2 and AVX-512 VNNI weights), Float and Codes against
  // the float64 spec, and bit-identical to each other
  const size_t M = 101, N = 19, K = 75;
  const auto A = rand_u8(M * K, 77, 15);
  const auto W = rand_codes(N * K, 78, -8, 7);
  std::vector<double> scale(N), bias(N);
  for (size_t n = 0; n < N; ++n) {
    scale[n] = 0.0013 * double(n + 1);
    bias[n] = (double(rbits(n, 79) % 1000) - 500.0) * 0.003;
  }
  const double levels = 15.0, as = 2.2 / 15.0, inv = spec_inv(as);
  std::vector<float> fspec(M * N);
  std::vector<uint8_t> cspec(M * N);
  int64_t zspec = 0;
  for (size_t m = 0; m < M; ++m)
    for (size_t n = 0; n < N; ++n) {
      int32_t acc = 0;
      for (size_t k = 0; k < K; ++k) acc += int32_t(A[m * K + k]) * W[n * K + k];
      const double y = spec_affine(acc, scale[n], bias[n]);
      fspec[m * N + n] = float(y);
      cspec[m * N + n] = spec_code(y, inv, levels);
      zspec += cspec[m * N + n] == 0;
    }
  FL_CHECK(zspec > 0 && zspec < int64_t(M * N)) << "want a mix of zero and non-zero codes: " << zspec;
  std::vector<float> fref;
  std::vector<uint8_t> cref;
  for (fl::Isa isa : gemm_isas()) {
    const auto qw = make_weights(W, N, K, isa);
    FL_CHECK(fl::qconv_runs_direct(qw.data(), K, 1, 1, 1, 1, 1, 0, 1, 1, fl::QOutMode::Codes, true) == (isa != fl::Isa::Scalar))
        << fl::isa_name(isa);
    for (fl::QConvPath path : {fl::QConvPath::Gemm, fl::QConvPath::Direct}) {
      std::vector<float> f(M * N, -3.0f);
      std::vector<uint8_t> c(M * N, 99);
      fl::qgemm_u8s8(A.data(), M, K, K, qw.data(), out_mn(fl::QOutMode::Float, f.data(), M, N, scale.data(), bias.data(), as, levels), path);
      const int64_t z = fl::qgemm_u8s8(A.data(), M, K, K, qw.data(),
                                       out_mn(fl::QOutMode::Codes, c.data(), M, N, scale.data(), bias.data(), as, levels), path);
      size_t bad = 0;
      while (bad < f.size() && same_f(f[bad], fspec[bad])) ++bad;
      FL_CHECK(bad == f.size()) << fl::isa_name(isa) << " " << path_name(path) << " float epilogue at m=" << bad / N << " n=" << bad % N;
      bad = 0;
      while (bad < c.size() && c[bad] == cspec[bad]) ++bad;
      FL_CHECK(bad == c.size()) << fl::isa_name(isa) << " " << path_name(path) << " codes epilogue at m=" << bad / N << " n=" << bad % N
                                << " got " << int(c[std::min(bad, c.size() - 1)]) << " spec " << int(cspec[std::min(bad, c.size() - 1)]);
      FL_CHECK(z == zspec) << fl::isa_name(isa) << " " << path_name(path) << " zeros " << z << " vs " << zspec;
      if (fref.empty()) { fref = f; cref = c; continue; }
      bool same = true;
      for (size_t i = 0; i < f.size(); ++i) same = same && fbits(f[i]) == fbits(fref[i]);
      FL_CHECK(same && c == cref) << fl::isa_name(isa) << " " << path_name(path) << " bits differ from the scalar kernel's";
    }
  }
}

FL_TEST(qgemm_output_layouts_and_requant_ties) {
  // acc chosen so that y / actScale hits .5 ties: scale = 1, bias = 0, actScale = 1 -> q = rhe(acc)
  // can only tie with a fractional bias: bias = 0.5 gives y = acc + 0.5 -> round half to even
  const size_t M = 40, N = 5, K = 2;
  std::vector<uint8_t> A(M * K);
  for (size_t m = 0; m < M; ++m) { A[m * K] = uint8_t(m % 20); A[m * K + 1] = 0; }
  std::vector<int8_t> W(N * K, 0);
  for (size_t n = 0; n < N; ++n) W[n * K] = 1;
  std::vector<double> scale(N, 1.0), bias(N, 0.5);
  for (fl::Isa isa : gemm_isas()) {
    const auto qw = make_weights(W, N, K, isa);
    // [N][M] layout
    std::vector<uint8_t> c(N * M);
    fl::QOut o{};
    o.mode = fl::QOutMode::Codes; o.data = c.data(); o.P = int64_t(M); o.strideImg = 0; o.strideP = 1; o.strideN = int64_t(M);
    o.scale = scale.data(); o.bias = bias.data(); o.actScale = 1.0; o.levels = 15.0;
    const int64_t z = fl::qgemm_u8s8(A.data(), M, K, K, qw.data(), o);
    bool ok = true;
    for (size_t n = 0; n < N; ++n)
      for (size_t m = 0; m < M; ++m) {
        const int a = int(m % 20);  // y = a + 0.5 -> even neighbour, clipped at 15
        int want = (a % 2 == 0) ? a : a + 1;
        want = std::min(want, 15);
        ok = ok && c[n * M + m] == want;
      }
    FL_CHECK(ok) << fl::isa_name(isa);
    FL_CHECK(z == int64_t(2 * N)) << z;  // m % 20 == 0 -> y = 0.5 -> 0
  }
}

namespace {

// Direct convolution reference: int32 accumulators [B][O][OH][OW].
std::vector<int32_t> conv_ref(const std::vector<uint8_t>& x, size_t B, size_t C, size_t H, size_t W,
                              const std::vector<int8_t>& w, size_t O, size_t kh, size_t kw, size_t s, size_t p) {
  const size_t OH = fl::conv_out(H, kh, s, p), OW = fl::conv_out(W, kw, s, p);
  std::vector<int32_t> y(B * O * OH * OW);
  for (size_t b = 0; b < B; ++b)
    for (size_t o = 0; o < O; ++o)
      for (size_t oh = 0; oh < OH; ++oh)
        for (size_t ow = 0; ow < OW; ++ow) {
          int32_t acc = 0;
          for (size_t c = 0; c < C; ++c)
            for (size_t i = 0; i < kh; ++i)
              for (size_t j = 0; j < kw; ++j) {
                const long ih = long(oh * s + i) - long(p), iw = long(ow * s + j) - long(p);
                if (ih < 0 || iw < 0 || ih >= long(H) || iw >= long(W)) continue;
                acc += int32_t(x[((b * C + c) * H + size_t(ih)) * W + size_t(iw)]) * w[((o * C + c) * kh + i) * kw + j];
              }
          y[((b * O + o) * OH + oh) * OW + ow] = acc;
        }
  return y;
}

// Plain max pool reference: [planes][H][W] -> [planes][OH][OW], k x k windows, no padding.
std::vector<uint8_t> maxpool_ref(const std::vector<uint8_t>& x, size_t planes, size_t H, size_t W, size_t k, size_t s) {
  const size_t OH = (H - k) / s + 1, OW = (W - k) / s + 1;
  std::vector<uint8_t> y(planes * OH * OW);
  for (size_t p = 0; p < planes; ++p)
    for (size_t a = 0; a < OH; ++a)
      for (size_t b = 0; b < OW; ++b) {
        uint8_t m = 0;
        for (size_t i = 0; i < k; ++i)
          for (size_t j = 0; j < k; ++j) m = std::max(m, x[(p * H + a * s + i) * W + b * s + j]);
        y[(p * OH + a) * OW + b] = m;
      }
  return y;
}

// The spec's codes of conv accumulators [B][O][P] with per-channel scale / bias (and an optional
// per-position term corr [O][P]).
std::vector<uint8_t> spec_codes(const std::vector<int32_t>& acc, size_t O, size_t P, const std::vector<double>& scale,
                                const std::vector<double>& bias, double as, double levels, const double* corr = nullptr) {
  std::vector<uint8_t> q(acc.size());
  const double inv = spec_inv(as);
  for (size_t i = 0; i < acc.size(); ++i) {
    const size_t o = (i / P) % O;
    double y = spec_affine(acc[i], scale[o], bias[o]);
    if (corr) y = spec_add(y, corr[o * P + i % P]);
    q[i] = spec_code(y, inv, levels);
  }
  return q;
}
int64_t zeros_of(const std::vector<uint8_t>& c) { return int64_t(std::count(c.begin(), c.end(), uint8_t(0))); }

}  // namespace

FL_TEST(qconv2d_equals_direct_convolution) {
  struct Case { size_t B, C, H, W, O, k, s, p; };
  const Case cases[] = {{3, 1, 28, 28, 6, 5, 1, 2},  {2, 6, 14, 14, 16, 5, 1, 0}, {2, 3, 32, 32, 16, 3, 1, 1},
                        {5, 16, 8, 8, 32, 3, 2, 1},  {7, 32, 4, 4, 24, 3, 1, 1},  {4, 16, 8, 8, 8, 1, 2, 0},
                        {1, 2, 5, 7, 3, 3, 2, 2},    {13, 4, 3, 3, 9, 3, 1, 1},   {3, 8, 8, 8, 16, 3, 1, 1},
                        {2, 5, 16, 16, 7, 3, 1, 1},  {3, 2, 6, 6, 4, 3, 1, 0}};
  uint32_t stream = 500;
  for (const Case& t : cases) {
    ++stream;
    const auto x = rand_u8(t.B * t.C * t.H * t.W, stream, stream % 2 ? 15 : 255);
    const auto w = rand_codes(t.O * t.C * t.k * t.k, stream + 7, -8, 7);
    const auto ref = conv_ref(x, t.B, t.C, t.H, t.W, w, t.O, t.k, t.k, t.s, t.p);
    const size_t K = t.C * t.k * t.k, P = fl::conv_out(t.H, t.k, t.s, t.p) * fl::conv_out(t.W, t.k, t.s, t.p);
    std::vector<double> scale(t.O), bias(t.O);
    for (size_t o = 0; o < t.O; ++o) { scale[o] = 0.01 + 0.001 * double(o); bias[o] = 0.1 * double(o % 3) - 0.1; }
    const auto cspec = spec_codes(ref, t.O, P, scale, bias, 1.0 / 15.0, 15.0);
    for (fl::Isa isa : gemm_isas()) {
      const auto qw = make_weights(w, t.O, K, isa);
      // 4-bit weights: the direct kernel applies with AVX2 and AVX-512 VNNI weights
      FL_CHECK(fl::qconv_direct_applies(qw.data(), t.C, t.H, t.W, t.k, t.k, t.s, t.p, 1, 1, fl::QOutMode::Codes) ==
               (isa != fl::Isa::Scalar)) << fl::isa_name(isa) << " C=" << t.C << " H=" << t.H;
      for (fl::QConvPath path : {fl::QConvPath::Gemm, fl::QConvPath::Direct})
        for (int threads : {1, 2}) {
          fl::set_num_threads(threads);
          std::vector<int32_t> acc(ref.size(), 0x11111111);
          fl::QOut o{};
          o.mode = fl::QOutMode::Int32; o.data = acc.data();
          fl::qconv2d_u8(x.data(), t.B, t.C, t.H, t.W, qw.data(), t.k, t.k, t.s, t.p, o, path);
          FL_CHECK(acc == ref) << fl::isa_name(isa) << " " << path_name(path) << " B=" << t.B << " C=" << t.C << " H=" << t.H
                               << " O=" << t.O << " k=" << t.k << " s=" << t.s << " p=" << t.p << " threads=" << threads;
          std::vector<uint8_t> codes(ref.size(), 77);
          o.mode = fl::QOutMode::Codes; o.data = codes.data(); o.scale = scale.data(); o.bias = bias.data();
          o.actScale = 1.0 / 15.0; o.levels = 15.0;
          const int64_t z = fl::qconv2d_u8(x.data(), t.B, t.C, t.H, t.W, qw.data(), t.k, t.k, t.s, t.p, o, path);
          FL_CHECK(codes == cspec) << fl::isa_name(isa) << " " << path_name(path) << " codes, case C=" << t.C << " H=" << t.H;
          FL_CHECK(z == zeros_of(cspec)) << z << " vs " << zeros_of(cspec);
        }
    }
  }
  fl::set_num_threads(2);
}

FL_TEST(qweights_repack_from_packed_int4_and_checks) {
  const size_t N = 13, K = 27;  // odd N*K: rows start mid-byte
  const auto W = rand_codes(N * K, 900, -8, 7);
  std::vector<uint8_t> packed(fl::packed_bytes(N * K, 4));
  FL_CHECK(fl::pack_int(W.data(), N * K, 4, packed.data()) == N * K);
  for (fl::Isa isa : gemm_isas()) {
    std::vector<uint8_t> a(fl::qweights_bytes(N, K)), b(fl::qweights_bytes(N, K));
    fl::qweights_repack(packed.data(), 4, N, K, isa, a.data());
    fl::qweights_from_codes(W.data(), N, K, 4, isa, b.data());
    FL_CHECK(a == b) << fl::isa_name(isa);
    FL_CHECK(fl::qweights_check(a.data(), a.size(), N, K) == nullptr);
    FL_CHECK(fl::qweights_check(a.data(), a.size(), N + 1, K) != nullptr);
    FL_CHECK(fl::qweights_check(a.data(), 40, N, K) != nullptr);
    FL_CHECK(fl::qweights_check(a.data(), fl::kQwHeaderBytes + 10, N, K) != nullptr);
    a[0] ^= 1;
    FL_CHECK(fl::qweights_check(a.data(), a.size(), N, K) != nullptr);
  }
}

namespace {
std::vector<fl::Isa> all_isas() {
  std::vector<fl::Isa> v;
  for (int i = 0; i <= static_cast<int>(fl::best_isa()); ++i) v.push_back(static_cast<fl::Isa>(i));
  return v;
}

// One input of a residual join by the spec: fl(double(code) * s), or the channel's affine of the
// accumulator, c = (i / P) % C.
double join_spec(const fl::QJoinIn& in, size_t C, size_t P, size_t i) {
  if (in.codes) {
    volatile double v = double(in.codes[i]) * in.s;
    return v;
  }
  const size_t c = (i / P) % C;
  return spec_affine(in.acc[i], in.scale[c], in.bias[c]);
}
}  // namespace

FL_TEST(requant_and_add_requant_every_isa_equal_spec) {
  const fl::Isa best = fl::best_isa();
  const double levels = 15.0;
  // planes [B*C][P]: lengths 1, 7, 8, 15, 17, 33, 184, 1000, 70000; P across the vector widths
  struct Shape { size_t planes, C, P; };
  const Shape shapes[] = {{1, 1, 1},  {1, 1, 7},  {2, 2, 4},   {3, 3, 5},     {1, 1, 17},
                          {3, 1, 11}, {8, 4, 23}, {10, 5, 100}, {14, 7, 5000}};
  for (double as : {3.0 / 15.0, 0.25}) {  // 0.25: y * inv exact, so the ties below are exact ties
    const double inv = spec_inv(as);
    uint32_t stream = as == 0.25 ? 4500 : 4400;
    for (const Shape& sh : shapes) {
      stream += 10;
      const size_t n = sh.planes * sh.P;
      std::vector<double> y(n);
      std::vector<int32_t> acc1(n), acc2(n);
      const std::vector<uint8_t> c1 = rand_u8(n, stream, 15), c2 = rand_u8(n, stream + 1, 255);
      for (size_t i = 0; i < n; ++i) {
        y[i] = (double(rbits(i, stream + 2) % 4000) - 1000.0) * 0.001;
        if (i % 7 == 0) y[i] = (double(i % 17) + 0.5) * as;  // ties (and beyond levels)
        if (i % 11 == 0) y[i] = (i % 2) ? std::numeric_limits<double>::quiet_NaN() : -0.0;
        if (i % 13 == 0) y[i] = (i % 2) ? std::numeric_limits<double>::infinity() : -1e300;
        if (i % 19 == 0) y[i] = 1.7e308;  // fl(y * inv) overflows to inf
        acc1[i] = int32_t(rbits(i, stream + 3) % 6001) - 3000;
        acc2[i] = int32_t(rbits(i, stream + 4) % 40001) - 20000;
      }
      std::vector<double> s1(sh.C), b1(sh.C), s2(sh.C), b2(sh.C);
      for (size_t c = 0; c < sh.C; ++c) {
        s1[c] = (c % 2 ? -1.0 : 1.0) * (0.0004 + 0.0001 * double(rbits(c, stream + 5) % 8));
        b1[c] = (double(rbits(c, stream + 6) % 200) - 100.0) * 0.004;
        s2[c] = 0.25 / double(1 + c);  // dyadic for c = 0, 1, 3: exact ties with as = 0.25
        b2[c] = c == 2 ? 0.125 : -0.0625 * double(c);
        if (c == 3) s1[c] = -0.0;
        if (c == 4) b2[c] = std::numeric_limits<double>::quiet_NaN();
        if (c == 5) s2[c] = std::numeric_limits<double>::infinity();
      }
      // the spec's codes, once
      std::vector<uint8_t> rspec(n), aspec[4];
      for (size_t i = 0; i < n; ++i) rspec[i] = spec_code(y[i], inv, levels);
      fl::QJoinIn ins[4];  // a codes, a accumulators, b codes, b accumulators
      ins[0] = {c1.data(), nullptr, 0.2, nullptr, nullptr};
      ins[1] = {nullptr, acc1.data(), 0.0, s1.data(), b1.data()};
      ins[2] = {c2.data(), nullptr, 0.13, nullptr, nullptr};
      ins[3] = {nullptr, acc2.data(), 0.0, s2.data(), b2.data()};
      for (int combo = 0; combo < 4; ++combo) {
        const fl::QJoinIn &a = ins[combo & 1], &b = ins[2 + (combo >> 1)];
        aspec[combo].resize(n);
        for (size_t i = 0; i < n; ++i) {
          const double va = join_spec(a, sh.C, sh.P, i), vb = join_spec(b, sh.C, sh.P, i);
          aspec[combo][i] = spec_code(va + vb, inv, levels);
        }
      }
      const std::string what = " as=" + std::to_string(as) + " planes=" + std::to_string(sh.planes) + " C=" +
                               std::to_string(sh.C) + " P=" + std::to_string(sh.P);
      for (fl::Isa isa : all_isas()) {
        fl::set_isa(isa);
        std::vector<uint8_t> q(n, 99);
        const int64_t z = fl::requant_u8(y.data(), n, as, levels, q.data());
        size_t bad = 0;
        while (bad < n && q[bad] == rspec[bad]) ++bad;
        FL_CHECK(bad == n && z == zeros_of(rspec)) << fl::isa_name(isa) << " requant" << what << " at " << bad << " y="
                                                   << y[std::min(bad, n - 1)] << " zeros " << z << " vs " << zeros_of(rspec);
        // residual joins: codes+codes, acc+codes, codes+acc, acc+acc
        for (int combo = 0; combo < 4; ++combo) {
          std::vector<uint8_t> qa(n, 98);
          const int64_t za = fl::add_requant(ins[combo & 1], ins[2 + (combo >> 1)], sh.planes, sh.C, sh.P, as, levels, qa.data());
          bad = 0;
          while (bad < n && qa[bad] == aspec[combo][bad]) ++bad;
          FL_CHECK(bad == n && za == zeros_of(aspec[combo]))
              << fl::isa_name(isa) << " add combo " << combo << what << " at " << bad << " zeros " << za << " vs " << zeros_of(aspec[combo]);
        }
      }
      fl::set_isa(best);
      // both kinds of codes occur (the test is not vacuous)
      FL_CHECK(zeros_of(aspec[3]) > 0 || n < 8) << what;
    }
  }
  fl::set_isa(best);
}

FL_TEST(maxpool_and_global_sum_every_isa) {
  const fl::Isa best = fl::best_isa();
  struct Case { size_t planes, H, W, k, s; };
  for (const Case& t : {Case{6, 28, 28, 2, 2}, Case{3, 9, 67, 2, 2}, Case{2, 10, 10, 3, 2}, Case{5, 4, 4, 2, 1}, Case{1, 1, 1, 1, 1}}) {
    const auto x = rand_u8(t.planes * t.H * t.W, 61, 15);
    const auto ref = maxpool_ref(x, t.planes, t.H, t.W, t.k, t.s);
    for (fl::Isa isa : all_isas()) {
      fl::set_isa(isa);
      std::vector<uint8_t> y(ref.size(), 200);
      fl::maxpool2d_u8(x.data(), t.planes, t.H, t.W, t.k, t.s, y.data());
      FL_CHECK(y == ref) << fl::isa_name(isa) << " H=" << t.H << " W=" << t.W << " k=" << t.k << " s=" << t.s;
    }
  }
  fl::set_isa(best);
  // global sums (exact int32), several parallel tasks of 256 planes
  struct SumCase { size_t planes, HW; };
  for (const SumCase& t : {SumCase{7, 16}, SumCase{300, 49}, SumCase{1, 1}, SumCase{513, 3}}) {
    const auto x = rand_u8(t.planes * t.HW, 62 + uint32_t(t.planes), 255);
    std::vector<int32_t> sums(t.planes, -1);
    fl::global_sum_u8(x.data(), t.planes, t.HW, sums.data());
    bool ok = true;
    for (size_t p = 0; p < t.planes; ++p) {
      int32_t s = 0;
      for (size_t i = 0; i < t.HW; ++i) s += x[p * t.HW + i];
      ok = ok && sums[p] == s;
    }
    FL_CHECK(ok) << "global_sum planes=" << t.planes << " HW=" << t.HW;
  }
}

FL_TEST(qlinear_i32_matches_int64_reference) {
  const size_t M = 9, K = 70, N = 11;
  std::vector<int32_t> A(M * K);
  for (size_t i = 0; i < A.size(); ++i) A[i] = int32_t(rbits(i, 71) % 4000);
  const auto W = rand_codes(N * K, 72, -8, 7);
  std::vector<double> scale(N), bias(N);
  for (size_t n = 0; n < N; ++n) {
    scale[n] = (n % 3 == 1 ? -1.0 : 1.0) * (0.0007 + 0.0001 * double(n));
    bias[n] = -0.25 + 0.05 * double(n);
  }
  const double as = 0.37, levels = 15.0, inv = spec_inv(as);
  std::vector<float> y(M * N, -9.0f);
  std::vector<uint8_t> q(M * N, 99);
  fl::qlinear_i32(A.data(), M, K, W.data(), N, scale.data(), bias.data(), fl::QOutMode::Float, y.data(), as, levels);
  const int64_t z = fl::qlinear_i32(A.data(), M, K, W.data(), N, scale.data(), bias.data(), fl::QOutMode::Codes, q.data(), as, levels);
  int64_t zs = 0;
  for (size_t m = 0; m < M; ++m)
    for (size_t n = 0; n < N; ++n) {
      int64_t acc = 0;
      for (size_t k = 0; k < K; ++k) acc += int64_t(A[m * K + k]) * W[n * K + k];
      const double v = spec_affine(acc, scale[n], bias[n]);
      FL_CHECK(fbits(y[m * N + n]) == fbits(float(v))) << "float " << m << "," << n;
      FL_CHECK(q[m * N + n] == spec_code(v, inv, levels)) << "codes " << m << "," << n << " " << int(q[m * N + n]);
      zs += spec_code(v, inv, levels) == 0;
    }
  FL_CHECK(z == zs && zs > 0 && zs < int64_t(M * N)) << z << " vs " << zs;
}

FL_TEST(qgroups_epilogue_matches_spec) {
  // y = fl(fl(gscale[0][o] * acc_0) + bias[o]), y = fl(y + fl(gscale[g][o] * acc_g)) for g >= 1 in
  // order, y = fl(y + corr[o][p]) when given; Float and Codes, any thread count
  struct Case { size_t G, B, O, P; };
  uint32_t stream = 5000;
  for (const Case& t : {Case{1, 3, 5, 37}, Case{2, 2, 3, 49}, Case{3, 4, 6, 17}, Case{3, 1, 1, 1}, Case{2, 17, 2, 9}})
    for (bool withCorr : {false, true}) {
      stream += 10;
      const size_t n = t.B * t.O * t.P, stride = n;
      std::vector<int32_t> acc(t.G * n);
      for (size_t i = 0; i < acc.size(); ++i) acc[i] = int32_t(rbits(i, stream) % 40001) - 20000;
      std::vector<double> gs(t.G * t.O), bias(t.O), corr(t.O * t.P);
      for (size_t i = 0; i < gs.size(); ++i) gs[i] = (i % 3 == 1 ? -1.0 : 1.0) * (0.00003 + 0.00001 * double(rbits(i, stream + 1) % 16));
      for (size_t o = 0; o < t.O; ++o) bias[o] = (double(rbits(o, stream + 2) % 200) - 100.0) * 0.004;
      for (size_t i = 0; i < corr.size(); ++i) corr[i] = (double(rbits(i, stream + 3) % 2000) - 1000.0) * 0.0003;
      if (t.O > 4) { gs[4] = std::numeric_limits<double>::infinity(); bias[3] = std::numeric_limits<double>::quiet_NaN(); }
      const double* cp = withCorr ? corr.data() : nullptr;
      const double as = 0.6 / 15.0, levels = 15.0, inv = spec_inv(as);
      std::vector<float> fspec(n);
      std::vector<uint8_t> cspec(n);
      for (size_t i = 0; i < n; ++i) {
        const size_t o = (i / t.P) % t.O, p = i % t.P;
        double y = spec_affine(acc[i], gs[o], bias[o]);
        for (size_t g = 1; g < t.G; ++g) {
          volatile double pr = gs[g * t.O + o] * double(acc[g * stride + i]);
          y = y + pr;
        }
        if (cp) y = spec_add(y, cp[o * t.P + p]);
        fspec[i] = float(y);
        cspec[i] = spec_code(y, inv, levels);
      }
      for (int threads : {1, 2}) {
        fl::set_num_threads(threads);
        std::vector<float> f(n, -5.0f);
        std::vector<uint8_t> c(n, 99);
        fl::qgroups_epilogue(acc.data(), t.G, t.B, t.O, t.P, gs.data(), bias.data(), cp, fl::QOutMode::Float, f.data(), as, levels);
        const int64_t z =
            fl::qgroups_epilogue(acc.data(), t.G, t.B, t.O, t.P, gs.data(), bias.data(), cp, fl::QOutMode::Codes, c.data(), as, levels);
        size_t bad = 0;
        while (bad < n && same_f(f[bad], fspec[bad])) ++bad;
        FL_CHECK(bad == n) << "float G=" << t.G << " B=" << t.B << " O=" << t.O << " P=" << t.P << " corr=" << withCorr << " at " << bad;
        FL_CHECK(c == cspec && z == zeros_of(cspec)) << "codes G=" << t.G << " B=" << t.B << " O=" << t.O << " P=" << t.P
                                                     << " corr=" << withCorr << " zeros " << z << " vs " << zeros_of(cspec);
      }
      if (n > 100) FL_CHECK(zeros_of(cspec) > 0 && zeros_of(cspec) < int64_t(n)) << "want a mix of codes, G=" << t.G;
    }
  fl::set_num_threads(2);
}

// ---- direct convolution (images in lanes) and the fused conv + max pool ------------------------
namespace {

// The weight layouts the direct kernel runs on this CPU: AVX-512 VNNI, and AVX2 (codes in [-8, 7]).
std::vector<fl::Isa> direct_isas() {
  std::vector<fl::Isa> v;
  for (fl::Isa isa : gemm_isas())
    if (isa != fl::Isa::Scalar) v.push_back(isa);
  return v;
}

struct ConvCase { size_t B, C, H, W, O, kh, kw, s, p; };

// Per-channel scales and biases exercising both requant directions, NaN, infinities and zeros.
void conv_epilogue(size_t O, uint32_t stream, bool odd, std::vector<double>* scale, std::vector<double>* bias) {
  scale->resize(O);
  bias->resize(O);
  for (size_t o = 0; o < O; ++o) {
    const double mag = 0.0005 + 0.0004 * double(rbits(o, stream) % 16);
    (*scale)[o] = (o % 3 == 1) ? -mag : mag;
    (*bias)[o] = (double(rbits(o, stream + 1) % 200) - 100.0) * 0.004;
    if (odd) {
      if (o == 2) (*scale)[o] = -0.0;
      if (o == 4) (*scale)[o] = std::numeric_limits<double>::infinity();
      if (o == 5) (*scale)[o] = -std::numeric_limits<double>::infinity();
      if (o == 6) (*bias)[o] = std::numeric_limits<double>::quiet_NaN();
      if (o == 7) (*scale)[o] = 0.0;
    }
  }
}

}  // namespace

FL_TEST(qconv2d_direct_equals_gemm_path_every_mode) {
  // the direct kernel with AVX-512 VNNI and with AVX2 weights (codes in [-8, 7]) against the GEMM
  // path (bit for bit) and the spec, Int32 / Float / Codes
  const ConvCase cases[] = {{17, 1, 28, 28, 6, 5, 5, 1, 2},  {33, 6, 14, 14, 16, 5, 5, 1, 0}, {3, 3, 9, 11, 7, 3, 3, 1, 1},
                            {5, 5, 12, 10, 9, 3, 5, 2, 1},  {16, 2, 7, 7, 1, 7, 7, 1, 3},   {1, 9, 6, 5, 13, 4, 4, 1, 2},
                            {18, 4, 8, 8, 8, 1, 1, 1, 0},   {2, 7, 13, 6, 17, 6, 2, 3, 2},  {31, 1, 5, 5, 32, 5, 5, 1, 0},
                            {4, 3, 10, 10, 3, 2, 6, 2, 0}};
  FL_CHECK(!direct_isas().empty() || fl::best_isa() == fl::Isa::Scalar);
  uint32_t stream = 1300;
  for (const ConvCase& t : cases) {
    stream += 10;
    const size_t K = t.C * t.kh * t.kw, OH = fl::conv_out(t.H, t.kh, t.s, t.p), OW = fl::conv_out(t.W, t.kw, t.s, t.p);
    const size_t P = OH * OW, n = t.B * t.O * P;
    const auto x = rand_u8(t.B * t.C * t.H * t.W, stream, stream % 20 == 0 ? 15 : 255);
    const auto w = rand_codes(t.O * K, stream + 1, -8, 7);
    const auto ref = conv_ref(x, t.B, t.C, t.H, t.W, w, t.O, t.kh, t.kw, t.s, t.p);
    for (fl::Isa isa : direct_isas()) {
      const auto qw = make_weights(w, t.O, K, isa);
      FL_CHECK(fl::qconv_direct_applies(qw.data(), t.C, t.H, t.W, t.kh, t.kw, t.s, t.p, 1, 1, fl::QOutMode::Int32)) << fl::isa_name(isa);
      for (bool odd : {false, true}) {
        std::vector<double> scale, bias;
        conv_epilogue(t.O, stream + 2, odd, &scale, &bias);
        for (double levels : {15.0, 3.0, 255.0}) {
          const double as = levels == 255.0 ? 0.01 : 0.37 / levels, inv = spec_inv(as);
          std::vector<float> fspec(n);
          std::vector<uint8_t> cspec(n);
          for (size_t i = 0; i < n; ++i) {
            const size_t o = (i / P) % t.O;
            const double y = spec_affine(ref[i], scale[o], bias[o]);
            fspec[i] = float(y);
            cspec[i] = spec_code(y, inv, levels);
          }
          std::vector<int32_t> ai[2];
          std::vector<float> af[2];
          std::vector<uint8_t> ac[2];
          int64_t z[2] = {0, 0};
          for (int path = 0; path < 2; ++path) {
            const fl::QConvPath p = path == 0 ? fl::QConvPath::Gemm : fl::QConvPath::Direct;
            fl::set_num_threads(path == 0 ? 2 : 1 + int(stream % 2));
            fl::QOut o{};
            o.scale = scale.data(); o.bias = bias.data(); o.actScale = as; o.levels = levels;
            ai[path].assign(n, 0x22222222);
            o.mode = fl::QOutMode::Int32; o.data = ai[path].data();
            fl::qconv2d_u8(x.data(), t.B, t.C, t.H, t.W, qw.data(), t.kh, t.kw, t.s, t.p, o, p);
            af[path].assign(n, -1.0f);
            o.mode = fl::QOutMode::Float; o.data = af[path].data();
            fl::qconv2d_u8(x.data(), t.B, t.C, t.H, t.W, qw.data(), t.kh, t.kw, t.s, t.p, o, p);
            ac[path].assign(n, 222);
            o.mode = fl::QOutMode::Codes; o.data = ac[path].data();
            z[path] = fl::qconv2d_u8(x.data(), t.B, t.C, t.H, t.W, qw.data(), t.kh, t.kw, t.s, t.p, o, p);
          }
          const std::string what = std::string(" ") + fl::isa_name(isa) + " B=" + std::to_string(t.B) + " C=" + std::to_string(t.C) +
                                   " H=" + std::to_string(t.H) + " W=" + std::to_string(t.W) + " O=" + std::to_string(t.O) +
                                   " k=" + std::to_string(t.kh) + "x" + std::to_string(t.kw) + " s=" + std::to_string(t.s) +
                                   " p=" + std::to_string(t.p) + " levels=" + std::to_string(int(levels)) + (odd ? " odd scales" : "");
          FL_CHECK(ai[0] == ref) << "gemm int32" << what;
          size_t bad = 0;
          while (bad < n && ai[1][bad] == ref[bad]) ++bad;
          FL_CHECK(bad == n) << "direct int32" << what << " at " << bad << " ref=" << ref[std::min(bad, n - 1)]
                             << " got=" << ai[1][std::min(bad, n - 1)];
          bad = 0;
          while (bad < n && same_f(af[0][bad], fspec[bad])) ++bad;
          FL_CHECK(bad == n) << "gemm float vs spec" << what << " at " << bad;
          bad = 0;
          while (bad < n && fbits(af[1][bad]) == fbits(af[0][bad])) ++bad;
          FL_CHECK(bad == n) << "direct float" << what << " at " << bad;
          bad = 0;
          while (bad < n && ac[0][bad] == cspec[bad]) ++bad;
          FL_CHECK(bad == n) << "gemm codes vs spec" << what << " at " << bad;
          bad = 0;
          while (bad < n && ac[1][bad] == cspec[bad]) ++bad;
          FL_CHECK(bad == n) << "direct codes" << what << " at " << bad << " spec=" << int(cspec[std::min(bad, n - 1)])
                             << " direct=" << int(ac[1][std::min(bad, n - 1)]);
          FL_CHECK(z[0] == z[1] && z[0] == zeros_of(cspec)) << "zeros" << what << " gemm=" << z[0] << " direct=" << z[1]
                                                            << " spec=" << zeros_of(cspec);
        }
      }
    }
  }
  fl::set_num_threads(2);
}

FL_TEST(qconv2d_pool_equals_conv_then_maxpool_every_isa) {
  struct PoolCase { ConvCase c; size_t pk, ps; };
  const PoolCase cases[] = {{{21, 1, 28, 28, 6, 5, 5, 1, 2}, 2, 2}, {{35, 6, 14, 14, 16, 5, 5, 1, 0}, 2, 2},
                            {{3, 2, 11, 9, 5, 3, 3, 1, 1}, 3, 2},   {{16, 3, 9, 9, 12, 3, 3, 2, 1}, 2, 1},
                            {{2, 4, 7, 6, 9, 2, 3, 1, 0}, 2, 2},     {{5, 1, 6, 6, 3, 3, 3, 1, 1}, 6, 6},
                            // 2x2 pools over odd widths / heights (the vector pool needs an even width)
                            {{3, 2, 9, 11, 5, 3, 3, 1, 0}, 2, 2},    {{4, 3, 12, 10, 7, 2, 1, 1, 0}, 2, 2},
                            {{2, 5, 20, 37, 11, 3, 3, 1, 1}, 2, 2}};
  uint32_t stream = 1700;
  for (const PoolCase& pc : cases) {
    const ConvCase& t = pc.c;
    stream += 10;
    const size_t K = t.C * t.kh * t.kw, OH = fl::conv_out(t.H, t.kh, t.s, t.p), OW = fl::conv_out(t.W, t.kw, t.s, t.p);
    const auto x = rand_u8(t.B * t.C * t.H * t.W, stream, 255);
    const auto w = rand_codes(t.O * K, stream + 1, -8, 7);
    std::vector<double> scale, bias;
    conv_epilogue(t.O, stream + 2, stream % 20 == 0, &scale, &bias);
    const double as = 0.41 / 15.0, levels = 15.0;
    // reference: the spec's codes of the exact convolution, then a plain max pool
    const auto conv = spec_codes(conv_ref(x, t.B, t.C, t.H, t.W, w, t.O, t.kh, t.kw, t.s, t.p), t.O, OH * OW, scale, bias, as, levels);
    const auto ref = maxpool_ref(conv, t.B * t.O, OH, OW, pc.pk, pc.ps);
    const int64_t zref = zeros_of(conv);
    FL_CHECK(zref > 0 && zref < int64_t(conv.size())) << "want a mix of zero and non-zero codes: " << zref;
    // the fused direct kernel pools where the windows tile the output
    const bool tiles = pc.pk == pc.ps && OH % pc.pk == 0 && OW % pc.pk == 0;
    const fl::Isa best = fl::best_isa();
    for (fl::Isa isa : gemm_isas()) {
      fl::set_isa(isa);
      const auto qw = make_weights(w, t.O, K, isa);
      FL_CHECK(fl::qconv_direct_applies(qw.data(), t.C, t.H, t.W, t.kh, t.kw, t.s, t.p, pc.pk, pc.ps, fl::QOutMode::Codes) ==
               (isa != fl::Isa::Scalar && tiles)) << fl::isa_name(isa) << " C=" << t.C << " H=" << t.H << " pool " << pc.pk;
      FL_CHECK(!fl::qconv_direct_applies(qw.data(), t.C, t.H, t.W, t.kh, t.kw, t.s, t.p, pc.pk, pc.ps, fl::QOutMode::Float) || pc.pk == 1);
      for (fl::QConvPath path : {fl::QConvPath::Gemm, fl::QConvPath::Auto, fl::QConvPath::Direct})
        for (int threads : {1, 2}) {
          fl::set_num_threads(threads);
          fl::QOut o{};
          o.mode = fl::QOutMode::Codes; o.scale = scale.data(); o.bias = bias.data(); o.actScale = as; o.levels = levels;
          std::vector<uint8_t> y(ref.size(), 99);
          o.data = y.data();
          const int64_t z = fl::qconv2d_pool_u8(x.data(), t.B, t.C, t.H, t.W, qw.data(), t.kh, t.kw, t.s, t.p, pc.pk, pc.ps, o, path);
          size_t bad = 0;
          while (bad < y.size() && y[bad] == ref[bad]) ++bad;
          FL_CHECK(bad == y.size() && z == zref) << fl::isa_name(isa) << " " << path_name(path) << " threads=" << threads << " C=" << t.C
                                                 << " H=" << t.H << " O=" << t.O << " pool " << pc.pk << "/" << pc.ps << " at " << bad
                                                 << " zeros " << z << " vs " << zref;
        }
    }
    fl::set_isa(best);
  }
  fl::set_num_threads(2);
}

FL_TEST(qconv2d_direct_requant_ties_and_extreme_values) {
  // 1x1 conv, one input channel: acc = x * w exactly, so y = acc * scale + bias can be put on
  // every tie of the requantiser (y / actScale = k + 0.5) and at the accumulator extremes
  // (8-bit weights with AVX-512 VNNI, 4-bit weights with AVX2, where 8-bit weights stay on the GEMM path).
  const size_t B = 20, H = 16, W = 16, O = 3;
  std::vector<uint8_t> x(B * H * W);
  for (size_t i = 0; i < x.size(); ++i) x[i] = uint8_t(i % 256);
  for (fl::Isa isa : direct_isas()) {
    const int wmax = isa == fl::Isa::Avx512 ? 127 : 7;
    const std::vector<int8_t> w = {1, int8_t(-wmax - 1), int8_t(wmax)};
    const auto qw = make_weights(w, O, 1, isa);
    FL_CHECK(fl::qconv_direct_applies(qw.data(), 1, H, W, 1, 1, 1, 0, 1, 1, fl::QOutMode::Codes)) << fl::isa_name(isa);
    if (isa == fl::Isa::Avx2) {
      const auto q8 = make_weights({1, -128, 127}, O, 1, isa);  // outside [-8, 7]: GEMM path only
      FL_CHECK(!fl::qconv_direct_applies(q8.data(), 1, H, W, 1, 1, 1, 0, 1, 1, fl::QOutMode::Codes));
      FL_CHECK(!fl::qconv_runs_direct(q8.data(), 1, H, W, 1, 1, 1, 0, 1, 1, fl::QOutMode::Codes, false));
      const auto q9 = make_weights({1, -9, 7}, O, 1, isa);
      FL_CHECK(!fl::qconv_direct_applies(q9.data(), 1, H, W, 1, 1, 1, 0, 1, 1, fl::QOutMode::Codes));
      const auto q8p = make_weights({1, -8, 8}, O, 1, isa);
      FL_CHECK(!fl::qconv_direct_applies(q8p.data(), 1, H, W, 1, 1, 1, 0, 1, 1, fl::QOutMode::Codes));
    }
    const std::vector<double> scale = {0.5, -1.0 / double(wmax + 1), 1.0 / double(wmax)}, bias = {0.25, 0.0, -0.5};
    for (double as : {0.5, 1.0, 0.1, 3.0 / 7.0}) {
      fl::QOut o{};
      o.mode = fl::QOutMode::Codes; o.scale = scale.data(); o.bias = bias.data(); o.actScale = as; o.levels = 15.0;
      std::vector<uint8_t> c0(x.size() * O), c1(x.size() * O);
      o.data = c0.data();
      const int64_t z0 = fl::qconv2d_u8(x.data(), B, 1, H, W, qw.data(), 1, 1, 1, 0, o, fl::QConvPath::Gemm);
      o.data = c1.data();
      const int64_t z1 = fl::qconv2d_u8(x.data(), B, 1, H, W, qw.data(), 1, 1, 1, 0, o, fl::QConvPath::Direct);
      std::vector<float> f0(x.size() * O), f1(x.size() * O);
      o.mode = fl::QOutMode::Float; o.data = f0.data();
      fl::qconv2d_u8(x.data(), B, 1, H, W, qw.data(), 1, 1, 1, 0, o, fl::QConvPath::Gemm);
      o.data = f1.data();
      fl::qconv2d_u8(x.data(), B, 1, H, W, qw.data(), 1, 1, 1, 0, o, fl::QConvPath::Direct);
      bool fsame = true;
      for (size_t i = 0; i < f0.size(); ++i) fsame = fsame && fbits(f0[i]) == fbits(f1[i]);
      FL_CHECK(c0 == c1 && z0 == z1 && fsame) << fl::isa_name(isa) << " actScale " << as;
      int64_t zs = 0;
      size_t bad = 0;
      for (size_t i = 0; i < x.size(); ++i)
        for (size_t ch = 0; ch < O; ++ch) {
          const double y = spec_affine(int32_t(x[i]) * w[ch], scale[ch], bias[ch]);
          const uint8_t q = spec_code(y, spec_inv(as), 15.0);
          const size_t at = (i / (H * W)) * O * H * W + ch * H * W + i % (H * W);
          zs += q == 0;
          if (c1[at] != q || fbits(f1[at]) != fbits(float(y))) ++bad;
        }
      FL_CHECK(bad == 0 && z1 == zs) << fl::isa_name(isa) << " actScale " << as << ": " << bad << " differ from the spec; zeros "
                                     << z1 << " vs " << zs;
    }
  }
}

FL_TEST(qconv_runs_direct_rules) {
  // where qconv2d_u8 / qconv2d_pool_u8 (Auto) and dense qgemm_u8s8 take the direct kernel
  const size_t C = 3, H = 12, W = 12, k = 3, K = C * k * k;
  const auto w4 = rand_codes(33 * K, 5101, -8, 7), w8 = rand_codes(33 * K, 5102, -128, 127);
  for (fl::Isa isa : gemm_isas()) {
    const bool d4 = isa != fl::Isa::Scalar, d8 = isa == fl::Isa::Avx512;
    for (int bits : {4, 8}) {
      const bool d = bits == 4 ? d4 : d8;
      const auto& ww = bits == 4 ? w4 : w8;
      const auto q32 = make_weights(std::vector<int8_t>(ww.begin(), ww.begin() + long(32 * K)), 32, K, isa);
      const auto q33 = make_weights(ww, 33, K, isa);
      const std::string what = std::string(fl::isa_name(isa)) + " bits=" + std::to_string(bits);
      FL_CHECK(fl::qconv_runs_direct(q32.data(), C, H, W, k, k, 1, 1, 1, 1, fl::QOutMode::Codes, false) == d) << what;
      FL_CHECK(fl::qconv_runs_direct(q32.data(), C, H, W, k, k, 1, 1, 2, 2, fl::QOutMode::Codes, false) == d) << what;
      FL_CHECK(!fl::qconv_runs_direct(q32.data(), C, H, W, k, k, 1, 1, 2, 2, fl::QOutMode::Float, false)) << what;  // pooling: codes only
      FL_CHECK(!fl::qconv_runs_direct(q32.data(), C, H, W, k, k, 1, 1, 3, 2, fl::QOutMode::Codes, false)) << what;  // windows overlap
      FL_CHECK(fl::qconv_runs_direct(q33.data(), C, H, W, k, k, 1, 1, 1, 1, fl::QOutMode::Codes, false) == d) << what;  // Auto: any channel count
      FL_CHECK(fl::qconv_runs_direct(q33.data(), K, 1, 1, 1, 1, 1, 0, 1, 1, fl::QOutMode::Codes, true) == d) << what;  // dense
    }
  }
}

// ---- blocked layout (16 images in the lanes) ---------------------------------------------------
namespace {

// x [B][E] -> blocked, with junk in the lanes past B (they must never reach real lanes)
std::vector<uint8_t> blocked_with_junk(const std::vector<uint8_t>& x, size_t B, size_t E) {
  std::vector<uint8_t> b(fl::qblocked_items(B) * E);
  fl::qblock(x.data(), B, E, 1, b.data());
  for (size_t e = 0; e < E; ++e)
    for (size_t i = B % 16 ? B % 16 : 16; i < 16; ++i) b[((B / 16) * E + e) * 16 + i] = uint8_t(0xA7 + 13 * e);
  return b;
}

}  // namespace

FL_TEST(blocked_layout_every_driver_every_isa) {
  // conv (+ pool) and GEMM drivers with blocked inputs and / or outputs equal the plain ones;
  // B = 21: one full block and one partial
  const size_t B = 21;
  const size_t C = 3, H = 10, W = 10, O = 7, k = 3, s = 1, p = 1, K = C * k * k;
  const auto x = rand_u8(B * C * H * W, 2101, 255);
  const auto w = rand_codes(O * K, 2102, -8, 7);
  std::vector<double> scale, bias;
  conv_epilogue(O, 2103, false, &scale, &bias);
  const size_t OH = fl::conv_out(H, k, s, p), OW = fl::conv_out(W, k, s, p), E = O * OH * OW, PE = O * (OH / 2) * (OW / 2);
  const size_t GK = 37, GN = 19;  // GEMM [B][GK] x [GN][GK]
  const auto A = rand_u8(B * GK, 2104, 15);
  const auto gw = rand_codes(GN * GK, 2105, -8, 7);
  std::vector<double> gs, gb;
  conv_epilogue(GN, 2106, false, &gs, &gb);
  const auto xb = blocked_with_junk(x, B, C * H * W), Ab = blocked_with_junk(A, B, GK);
  // the plain results by the spec (every blocked variant must equal them)
  const auto convSpec = spec_codes(conv_ref(x, B, C, H, W, w, O, k, k, s, p), O, OH * OW, scale, bias, 0.3 / 15.0, 15.0);
  const auto poolSpec = maxpool_ref(convSpec, B * O, OH, OW, 2, 2);
  std::vector<int32_t> gacc(B * GN);
  for (size_t m = 0; m < B; ++m)
    for (size_t nn = 0; nn < GN; ++nn) {
      int32_t a = 0;
      for (size_t kk = 0; kk < GK; ++kk) a += int32_t(A[m * GK + kk]) * gw[nn * GK + kk];
      gacc[m * GN + nn] = a;
    }
  const auto gemmSpec = spec_codes(gacc, GN, 1, gs, gb, 0.9 / 15.0, 15.0);
  for (fl::Isa isa : gemm_isas()) {
    const auto qw = make_weights(w, O, K, isa), gq = make_weights(gw, GN, GK, isa);
    for (fl::QConvPath path : {fl::QConvPath::Gemm, fl::QConvPath::Auto}) {
      fl::QOut o{};
      o.mode = fl::QOutMode::Codes; o.scale = scale.data(); o.bias = bias.data(); o.actScale = 0.3 / 15.0; o.levels = 15.0;
      fl::QOut go = out_mn(fl::QOutMode::Codes, nullptr, B, GN, gs.data(), gb.data(), 0.9 / 15.0, 15.0);
      std::vector<uint8_t> conv(B * E), pool(B * PE), gemm(B * GN);
      o.data = conv.data();
      const int64_t zc = fl::qconv2d_u8(x.data(), B, C, H, W, qw.data(), k, k, s, p, o, path);
      o.data = pool.data();
      const int64_t zp = fl::qconv2d_pool_u8(x.data(), B, C, H, W, qw.data(), k, k, s, p, 2, 2, o, path);
      go.data = gemm.data();
      const int64_t zg = fl::qgemm_u8s8(A.data(), B, GK, GK, gq.data(), go, path);
      FL_CHECK(conv == convSpec && zc == zeros_of(convSpec)) << fl::isa_name(isa) << " " << path_name(path) << " conv vs spec";
      FL_CHECK(pool == poolSpec && zp == zeros_of(convSpec)) << fl::isa_name(isa) << " " << path_name(path) << " conv+pool vs spec";
      FL_CHECK(gemm == gemmSpec && zg == zeros_of(gemmSpec)) << fl::isa_name(isa) << " " << path_name(path) << " gemm vs spec";
      for (int bits = 1; bits < 4; ++bits) {
        const fl::QBlocked bl{(bits & 1) != 0, (bits & 2) != 0};
        const std::string what = std::string(fl::isa_name(isa)) + (path == fl::QConvPath::Gemm ? " gemm" : " auto") +
                                 " in=" + std::to_string(bl.in) + " out=" + std::to_string(bl.out);
        auto run = [&](auto fn, size_t items, size_t per, const std::vector<uint8_t>& want, int64_t zwant, const char* name) {
          std::vector<uint8_t> y(bl.out ? fl::qblocked_items(items) * per : items * per, 0x55);
          const int64_t z = fn(y.data());
          std::vector<uint8_t> plain(items * per);
          if (bl.out) fl::qunblock(y.data(), items, per, 1, plain.data());
          else plain = y;
          FL_CHECK(plain == want && z == zwant) << name << " " << what << " zeros " << z << " vs " << zwant;
        };
        run([&](uint8_t* y) { fl::QOut q = o; q.data = y;
              return fl::qconv2d_u8(bl.in ? xb.data() : x.data(), B, C, H, W, qw.data(), k, k, s, p, q, path, bl); },
            B, E, conv, zc, "conv");
        run([&](uint8_t* y) { fl::QOut q = o; q.data = y;
              return fl::qconv2d_pool_u8(bl.in ? xb.data() : x.data(), B, C, H, W, qw.data(), k, k, s, p, 2, 2, q, path, bl); },
            B, PE, pool, zp, "conv+pool");
        run([&](uint8_t* y) { fl::QOut q = go; q.data = y;
              return fl::qgemm_u8s8(bl.in ? Ab.data() : A.data(), B, GK, GK, gq.data(), q, path, bl); },
            B, GN, gemm, zg, "gemm");
      }
      // int32 outputs through the blocked layout (4-byte elements)
      std::vector<int32_t> acc(B * E), accb(fl::qblocked_items(B) * E), accp(B * E);
      fl::QOut oi{};
      oi.mode = fl::QOutMode::Int32; oi.data = acc.data();
      fl::qconv2d_u8(x.data(), B, C, H, W, qw.data(), k, k, s, p, oi, path);
      oi.data = accb.data();
      fl::qconv2d_u8(xb.data(), B, C, H, W, qw.data(), k, k, s, p, oi, path, {true, true});
      fl::qunblock(accb.data(), B, E, 4, accp.data());
      FL_CHECK(acc == accp) << fl::isa_name(isa) << " int32 blocked";
    }
  }
  // the pool on blocked data
  std::vector<uint8_t> y(B * C * 5 * 5), yb(fl::qblocked_items(B) * C * 5 * 5), yp(B * C * 5 * 5);
  fl::maxpool2d_u8(x.data(), B * C, H, W, 2, 2, y.data());
  fl::maxpool2d_u8_blocked(xb.data(), B, C, H, W, 2, 2, yb.data());
  fl::qunblock(yb.data(), B, C * 25, 1, yp.data());
  FL_CHECK(y == yp) << "maxpool blocked";
}

FL_TEST(qconv2d_direct_repeated_calls_see_new_weights_and_scales) {
  // the direct kernel keeps the prepared constants of recent calls: changing the weights in the
  // same buffer (a new fault map), a scale, a bias or the activation range must be seen (AVX-512
  // VNNI and AVX2 weights; codes stay in [-8, 7])
  // (10 x 10 -> 8 x 8: the 2 x 2 pool windows tile the output, so the direct kernel applies)
  const size_t B = 17, C = 2, H = 10, W = 10, O = 5, k = 3, K = C * k * k, OH = H - k + 1, OW = W - k + 1;
  const auto x = rand_u8(B * C * H * W, 2201, 255);
  for (fl::Isa isa : direct_isas()) {
    auto w = rand_codes(O * K, 2202, -8, 7);
    std::vector<double> scale, bias;
    conv_epilogue(O, 2203, false, &scale, &bias);
    std::vector<uint8_t> qw(fl::qweights_bytes(O, K));
    fl::QOut o{};
    o.mode = fl::QOutMode::Codes; o.scale = scale.data(); o.bias = bias.data(); o.actScale = 0.4 / 15.0; o.levels = 15.0;
    for (int round = 0; round < 6; ++round) {
      if (round == 1) w[7] = int8_t(-w[7] - 1);  // one changed code (stays in [-8, 7])
      if (round == 2) scale[3] *= -1.5;
      if (round == 3) bias[0] += 0.25;
      if (round == 4) o.actScale *= 1.5;
      if (round == 5) o.levels = 3.0;
      fl::qweights_from_codes(w.data(), O, K, 4, isa, qw.data());
      FL_CHECK(fl::qconv_direct_applies(qw.data(), C, H, W, k, k, 1, 0, 2, 2, fl::QOutMode::Codes)) << fl::isa_name(isa);
      const auto conv = spec_codes(conv_ref(x, B, C, H, W, w, O, k, k, 1, 0), O, OH * OW, scale, bias, o.actScale, o.levels);
      const auto ref = maxpool_ref(conv, B * O, OH, OW, 2, 2);
      std::vector<uint8_t> a(ref.size(), 99), b(ref.size(), 99);
      o.data = a.data();
      const int64_t za = fl::qconv2d_pool_u8(x.data(), B, C, H, W, qw.data(), k, k, 1, 0, 2, 2, o, fl::QConvPath::Gemm);
      o.data = b.data();
      const int64_t zb = fl::qconv2d_pool_u8(x.data(), B, C, H, W, qw.data(), k, k, 1, 0, 2, 2, o, fl::QConvPath::Direct);
      FL_CHECK(a == ref && za == zeros_of(conv)) << fl::isa_name(isa) << " gemm round " << round;
      FL_CHECK(b == ref && zb == zeros_of(conv)) << fl::isa_name(isa) << " direct round " << round;
    }
  }
}

// ---- AVX2 kernels chosen by operand range (qgemm_avx2_run) -------------------------------------
FL_TEST(qgemm_avx2_run_bound_is_exact) {
  // the run length n is the largest with n * (pair bound) inside int16, on each side
  FL_CHECK(fl::qgemm_avx2_run(15, -8, 7) == 136);   // 136 * 240 = 32640 <= 32768 < 137 * 240
  FL_CHECK(fl::qgemm_avx2_run(255, -8, 7) == 8);    // 8 * 4080 = 32640
  FL_CHECK(fl::qgemm_avx2_run(15, -128, 127) == 8); // 8 * 3840 = 30720 < 9 * 3840
  FL_CHECK(fl::qgemm_avx2_run(255, -128, 127) == 0);  // one pair may saturate: widening kernel
  FL_CHECK(fl::qgemm_avx2_run(255, -64, 63) == 1);  // 2 * 255 * 64 = 32640 <= 32768
  FL_CHECK(fl::qgemm_avx2_run(255, -65, 0) == 0);   // 33150 > 32768
  FL_CHECK(fl::qgemm_avx2_run(255, 0, 64) == 1 && fl::qgemm_avx2_run(255, 0, 65) == 0);  // 32640 / 33150 vs 32767
  FL_CHECK(fl::qgemm_avx2_run(15, 0, 7) == 156);    // positive side only: 156 * 210 = 32760
  for (int a : {1, 3, 15, 100, 255})
    for (int lo : {-128, -64, -8, -1, 0})
      for (int hi : {0, 1, 7, 63, 127}) {
        const int n = fl::qgemm_avx2_run(a, lo, hi);
        const int64_t neg = 2 * int64_t(a) * -lo, pos = 2 * int64_t(a) * hi;
        FL_CHECK(n >= 0 && int64_t(n) * neg <= 32768 && int64_t(n) * pos <= 32767) << a << " " << lo << " " << hi;
        if (n > 0 && n < (1 << 20)) FL_CHECK(int64_t(n + 1) * neg > 32768 || int64_t(n + 1) * pos > 32767);
        if (n == 0) FL_CHECK(neg > 32768 || pos > 32767);
      }
}

FL_TEST(qgemm_every_operand_range_equals_triple_loop) {
  // activations up to 15 / 255, weights 4-bit / 8-bit / one-signed, K across the 16-bit run
  // lengths (136 * 4 = 544 taps, 8 * 4 = 32): every AVX2 kernel against the integer triple loop,
  // plus the extremes (every product at the most negative / positive bound) where the int16 sums
  // sit exactly at the edge of their range before widening
  struct Range { int amax, wlo, whi; };
  const Range ranges[] = {{15, -8, 7}, {255, -8, 7}, {15, -128, 127}, {255, -128, 127}, {7, -2, 1}, {255, -64, 63}, {15, 0, 7}};
  const size_t Ms[] = {1, 17, 48, 50, 97};
  const size_t Ns[] = {1, 6, 16, 19};
  const size_t Ks[] = {3, 25, 33, 150, 545, 1100};
  uint32_t stream = 3000;
  for (const Range& r : ranges)
    for (int extreme = 0; extreme < 3; ++extreme)
      for (size_t M : Ms)
        for (size_t N : Ns)
          for (size_t K : Ks) {
            if (extreme && (M != 50 || N != 6)) continue;
            ++stream;
            auto A = rand_u8(M * K, stream, r.amax);
            auto W = rand_codes(N * K, stream + 1, r.wlo, r.whi);
            if (extreme) {  // 1: a = amax, w = wlo everywhere; 2: a = amax, w = whi
              std::fill(A.begin(), A.end(), uint8_t(r.amax));
              std::fill(W.begin(), W.end(), int8_t(extreme == 1 ? r.wlo : r.whi));
            }
            std::vector<int32_t> ref(M * N);
            for (size_t m = 0; m < M; ++m)
              for (size_t n = 0; n < N; ++n) {
                int64_t s = 0;
                for (size_t k = 0; k < K; ++k) s += int32_t(A[m * K + k]) * int32_t(W[n * K + k]);
                ref[m * N + n] = int32_t(s);
              }
            for (fl::Isa isa : gemm_isas()) {
              const auto qw = make_weights(W, N, K, isa);
              for (int threads : {1, 2}) {
                fl::set_num_threads(threads);
                std::vector<int32_t> out(M * N, 0x5a5a5a5a);
                fl::qgemm_u8s8(A.data(), M, K, K, qw.data(), out_mn(fl::QOutMode::Int32, out.data(), M, N, nullptr, nullptr, 1, 1),
                               fl::QConvPath::Gemm);
                size_t bad = 0;
                while (bad < out.size() && out[bad] == ref[bad]) ++bad;
                FL_CHECK(bad == out.size()) << fl::isa_name(isa) << " amax=" << r.amax << " w=[" << r.wlo << "," << r.whi
                                            << "] run=" << fl::qgemm_avx2_run(r.amax, r.wlo, r.whi) << " extreme=" << extreme
                                            << " M=" << M << " N=" << N << " K=" << K << " threads=" << threads << " at " << bad;
              }
            }
          }
  // one call whose panels / images differ in range (rows >= 60 raw uint8, the rest 4-bit codes;
  // 8-bit weights): each task picks its kernel, the results are the triple loop's
  {
    const size_t M = 150, N = 9, K = 77;
    auto A = rand_u8(M * K, 3901, 15);
    const auto hiA = rand_u8(M * K, 3902, 255);
    for (size_t i = 60 * K; i < M * K; ++i) A[i] = hiA[i];
    const auto W = rand_codes(N * K, 3903, -128, 127);
    std::vector<int32_t> ref(M * N);
    for (size_t m = 0; m < M; ++m)
      for (size_t n = 0; n < N; ++n) {
        int32_t acc = 0;
        for (size_t k = 0; k < K; ++k) acc += int32_t(A[m * K + k]) * W[n * K + k];
        ref[m * N + n] = acc;
      }
    for (fl::Isa isa : gemm_isas()) {
      const auto qw = make_weights(W, N, K, isa);
      std::vector<int32_t> out(M * N);
      fl::qgemm_u8s8(A.data(), M, K, K, qw.data(), out_mn(fl::QOutMode::Int32, out.data(), M, N, nullptr, nullptr, 1, 1), fl::QConvPath::Gemm);
      FL_CHECK(out == ref) << fl::isa_name(isa) << " mixed ranges";
      // as a 1x1 convolution of M images (tasks = image groups)
      std::vector<int32_t> conv(M * N);
      fl::QOut o{};
      o.mode = fl::QOutMode::Int32; o.data = conv.data();
      fl::qconv2d_u8(A.data(), M, K, 1, 1, qw.data(), 1, 1, 1, 0, o, fl::QConvPath::Gemm);
      FL_CHECK(conv == ref) << fl::isa_name(isa) << " mixed ranges (conv)";
    }
  }
  fl::set_num_threads(2);
}

FL_TEST(qgemm_every_operand_range_epilogues_equal_spec) {
  // the Float and Codes epilogues of each AVX2 kernel (and the direct kernel where it applies) give
  // the spec's bits, and the scalar kernel's
  struct Range { int amax, wlo, whi; };
  const Range ranges[] = {{15, -8, 7}, {255, -8, 7}, {15, -128, 127}, {255, -128, 127}};
  const size_t M = 61, N = 11, K = 150;
  uint32_t stream = 3500;
  for (const Range& r : ranges) {
    stream += 3;
    const auto A = rand_u8(M * K, stream, r.amax);
    const auto W = rand_codes(N * K, stream + 1, r.wlo, r.whi);
    std::vector<double> scale(N), bias(N);
    for (size_t n = 0; n < N; ++n) {
      scale[n] = (n % 4 == 1 ? -1.0 : 1.0) * 0.3 / double(r.amax * std::max(-r.wlo, r.whi) * 12);
      bias[n] = (double(rbits(n, stream + 2) % 200) - 100.0) * 0.004;
    }
    const double as = 0.02, levels = 15.0, inv = spec_inv(as);
    std::vector<float> fspec(M * N);
    std::vector<uint8_t> cspec(M * N);
    for (size_t m = 0; m < M; ++m)
      for (size_t n = 0; n < N; ++n) {
        int32_t acc = 0;
        for (size_t k = 0; k < K; ++k) acc += int32_t(A[m * K + k]) * W[n * K + k];
        const double y = spec_affine(acc, scale[n], bias[n]);
        fspec[m * N + n] = float(y);
        cspec[m * N + n] = spec_code(y, inv, levels);
      }
    const int64_t zspec = zeros_of(cspec);
    FL_CHECK(zspec > 0 && zspec < int64_t(M * N)) << "want a mix of zero and non-zero codes: " << zspec;
    std::vector<float> fref;
    std::vector<uint8_t> cref;
    for (fl::Isa isa : gemm_isas()) {
      const auto qw = make_weights(W, N, K, isa);
      for (fl::QConvPath path : {fl::QConvPath::Gemm, fl::QConvPath::Direct}) {
        std::vector<float> f(M * N, -2.0f);
        std::vector<uint8_t> c(M * N, 99);
        fl::qgemm_u8s8(A.data(), M, K, K, qw.data(), out_mn(fl::QOutMode::Float, f.data(), M, N, scale.data(), bias.data(), as, levels), path);
        const int64_t z = fl::qgemm_u8s8(A.data(), M, K, K, qw.data(),
                                         out_mn(fl::QOutMode::Codes, c.data(), M, N, scale.data(), bias.data(), as, levels), path);
        bool spec = true;
        for (size_t i = 0; i < f.size(); ++i) spec = spec && same_f(f[i], fspec[i]);
        FL_CHECK(spec && c == cspec && z == zspec) << fl::isa_name(isa) << " " << path_name(path) << " amax=" << r.amax << " w=[" << r.wlo
                                                   << "," << r.whi << "] float " << spec << " codes " << (c == cspec) << " zeros " << z
                                                   << " vs " << zspec;
        if (fref.empty()) { fref = f; cref = c; continue; }
        bool same = true;
        for (size_t i = 0; i < f.size(); ++i) same = same && fbits(f[i]) == fbits(fref[i]);
        FL_CHECK(same && c == cref) << fl::isa_name(isa) << " " << path_name(path) << " amax=" << r.amax << " w=[" << r.wlo << ","
                                    << r.whi << "] differs from the scalar kernel";
      }
    }
  }
}

FL_TEST(qconv2d_per_position_term_every_isa) {
  // y = fl(fl(fl(s * acc) + b) + corr[o][p]) then codes (and a max pool of the codes): the input
  // layer's border correction; every ISA's GEMM path and the direct kernel (AVX2 / AVX-512 VNNI
  // weights; with pooling where the windows tile the output, else the GEMM path runs)
  struct PoolCase { ConvCase c; size_t pk, ps; };
  const PoolCase cases[] = {{{21, 1, 28, 28, 6, 5, 5, 1, 2}, 2, 2}, {{5, 3, 9, 11, 7, 3, 3, 1, 1}, 2, 2},
                            {{3, 2, 10, 7, 5, 3, 3, 2, 2}, 3, 2},   {{17, 1, 6, 6, 9, 5, 5, 1, 2}, 1, 1},
                            {{18, 2, 8, 8, 8, 3, 3, 1, 1}, 2, 2}};
  uint32_t stream = 4100;
  for (const PoolCase& pc : cases) {
    const ConvCase& t = pc.c;
    stream += 10;
    const size_t K = t.C * t.kh * t.kw, OH = fl::conv_out(t.H, t.kh, t.s, t.p), OW = fl::conv_out(t.W, t.kw, t.s, t.p), P = OH * OW;
    const auto x = rand_u8(t.B * t.C * t.H * t.W, stream, 255);
    const auto w = rand_codes(t.O * K, stream + 1, -8, 7);
    std::vector<double> scale, bias, corr(t.O * P);
    conv_epilogue(t.O, stream + 2, false, &scale, &bias);
    for (size_t i = 0; i < corr.size(); ++i) corr[i] = (double(rbits(i, stream + 3) % 2000) - 1000.0) * 0.0007;
    const auto acc = conv_ref(x, t.B, t.C, t.H, t.W, w, t.O, t.kh, t.kw, t.s, t.p);
    const double as = 0.4 / 15.0, levels = 15.0, inv = spec_inv(as);
    std::vector<float> fref(acc.size());
    std::vector<uint8_t> cref(acc.size());
    for (size_t i = 0; i < acc.size(); ++i) {
      const size_t o = (i / P) % t.O, p = i % P;
      const double y = spec_add(spec_affine(acc[i], scale[o], bias[o]), corr[o * P + p]);
      fref[i] = float(y);
      cref[i] = spec_code(y, inv, levels);
    }
    const int64_t zref = zeros_of(cref);
    const auto pref = maxpool_ref(cref, t.B * t.O, OH, OW, pc.pk, pc.ps);
    for (fl::Isa isa : gemm_isas()) {
      const auto qw = make_weights(w, t.O, K, isa);
      for (fl::QConvPath path : {fl::QConvPath::Gemm, fl::QConvPath::Direct})
        for (int threads : {1, 2}) {
          fl::set_num_threads(threads);
          fl::QOut o{};
          o.scale = scale.data(); o.bias = bias.data(); o.actScale = as; o.levels = levels; o.corr = corr.data();
          std::vector<float> f(acc.size(), -7.0f);
          o.mode = fl::QOutMode::Float; o.data = f.data();
          fl::qconv2d_u8(x.data(), t.B, t.C, t.H, t.W, qw.data(), t.kh, t.kw, t.s, t.p, o, path);
          bool same = true;
          for (size_t i = 0; i < f.size(); ++i) same = same && fbits(f[i]) == fbits(fref[i]);
          std::vector<uint8_t> c(acc.size(), 99), pooled(pref.size(), 99);
          o.mode = fl::QOutMode::Codes; o.data = c.data();
          const int64_t z = fl::qconv2d_u8(x.data(), t.B, t.C, t.H, t.W, qw.data(), t.kh, t.kw, t.s, t.p, o, path);
          o.data = pooled.data();
          const int64_t zp = fl::qconv2d_pool_u8(x.data(), t.B, t.C, t.H, t.W, qw.data(), t.kh, t.kw, t.s, t.p, pc.pk, pc.ps, o, path);
          FL_CHECK(same && c == cref && z == zref && pooled == pref && zp == zref)
              << fl::isa_name(isa) << " " << path_name(path) << " threads=" << threads << " C=" << t.C << " H=" << t.H << " pool "
              << pc.pk << " float " << same << " codes " << (c == cref) << " pooled " << (pooled == pref) << " zeros " << z << "/"
              << zp << " vs " << zref;
        }
    }
  }
  fl::set_num_threads(2);
}

FL_TEST(qgemm_codes_ties_boundaries_and_odd_scales_every_isa) {
  // the float64 codes and float stores of every ISA's epilogue (GEMM path and the direct kernel)
  // against the spec: y * inv on every tie (scale = actScale / 2: acc odd gives k + 0.5), just
  // beside them, channels with -0, +-inf scales and a NaN bias; several actScales and levels
  const size_t M = 67, K = 3, N = 9;
  std::vector<uint8_t> A(M * K);
  for (size_t m = 0; m < M; ++m) { A[m * K] = uint8_t(m % 40); A[m * K + 1] = uint8_t((m * 7) % 3); A[m * K + 2] = 0; }
  std::vector<int8_t> W(N * K, 0);
  for (size_t n = 0; n < N; ++n) { W[n * K] = int8_t(n % 3 == 2 ? -1 : 1); W[n * K + 1] = int8_t(n % 2); }
  for (double as : {1.0, 0.1, 3.0 / 7.0, 0.37 / 15.0, 0.9 / 15.0, 0.41 / 15.0, 0.25})
    for (double levels : {15.0, 7.0, 3.0, 1.0, 255.0}) {
      const double inv = spec_inv(as);
      std::vector<double> scale(N), bias(N);
      for (size_t n = 0; n < N; ++n) {
        scale[n] = as * 0.5 * (n % 2 ? 1.0 : std::nextafter(1.0, 2.0));
        bias[n] = n % 3 == 1 ? as * 0.25 : 0.0;
      }
      scale[4] = -0.0; scale[5] = std::numeric_limits<double>::infinity(); scale[6] = -std::numeric_limits<double>::infinity();
      bias[7] = std::numeric_limits<double>::quiet_NaN(); scale[8] = std::nextafter(as, 0.0);
      std::vector<uint8_t> cspec(M * N);
      for (size_t m = 0; m < M; ++m)
        for (size_t n = 0; n < N; ++n) {
          int32_t acc = 0;
          for (size_t k = 0; k < K; ++k) acc += int32_t(A[m * K + k]) * W[n * K + k];
          cspec[m * N + n] = spec_code(spec_affine(acc, scale[n], bias[n]), inv, levels);
        }
      std::vector<uint8_t> ref;
      for (fl::Isa isa : gemm_isas()) {
        const auto qw = make_weights(W, N, K, isa);
        for (fl::QConvPath path : {fl::QConvPath::Gemm, fl::QConvPath::Direct}) {
          std::vector<uint8_t> c(M * N, 99);
          const int64_t z = fl::qgemm_u8s8(A.data(), M, K, K, qw.data(),
                                           out_mn(fl::QOutMode::Codes, c.data(), M, N, scale.data(), bias.data(), as, levels), path);
          size_t bad = 0;
          while (bad < c.size() && c[bad] == cspec[bad]) ++bad;
          FL_CHECK(bad == c.size() && z == zeros_of(cspec))
              << fl::isa_name(isa) << " " << path_name(path) << " as=" << as << " levels=" << levels << " at m=" << bad / N
              << " n=" << bad % N << " zeros " << z << " vs " << zeros_of(cspec);
          if (ref.empty()) ref = c;
          else FL_CHECK(c == ref) << fl::isa_name(isa) << " " << path_name(path) << " differs from the scalar kernel";
        }
      }
      // y at each code boundary and a few ulps either side (scale 0: y = bias per channel): the
      // boundaries k - 0.5 of fl(y * inv) as (k - 0.5) * as and (k - 0.5) / inv (exact ties where
      // the product rounds onto them), and float32 round-to-even midpoints for the Float store
      std::vector<double> b2;
      const int kmax = int(std::min(levels, 20.0));
      for (int k = 0; k <= kmax + 1; ++k)
        for (double v0 : {(double(k) - 0.5) * as, (double(k) - 0.5) / inv, (double(k) + 0.5) * as}) {
          double lo = v0, hi = v0;
          b2.push_back(v0);
          for (int u = 0; u < 3; ++u) {
            lo = std::nextafter(lo, -1e300); hi = std::nextafter(hi, 1e300);
            b2.push_back(lo); b2.push_back(hi);
          }
        }
      for (int k = 1; k <= 6; ++k) {  // halfway between two floats (ties to even), and beside
        const float f = float(k) * float(as) + 0.1f * float(k);
        const double mid = (double(f) + double(std::nextafter(f, 1e30f))) * 0.5;
        b2.push_back(mid); b2.push_back(std::nextafter(mid, 0.0)); b2.push_back(std::nextafter(mid, 1e300));
      }
      b2.push_back(-0.0); b2.push_back(std::numeric_limits<double>::denorm_min()); b2.push_back(1e300);
      const std::vector<double> s2(b2.size(), 0.0);
      const size_t N2 = b2.size(), M2 = 19;
      std::vector<uint8_t> A2(M2, 1);
      std::vector<int8_t> W2(N2, 1);
      std::vector<uint8_t> c2spec(N2);
      for (size_t n = 0; n < N2; ++n) c2spec[n] = spec_code(spec_affine(1, 0.0, b2[n]), inv, levels);
      for (fl::Isa isa : gemm_isas()) {
        const auto qw = make_weights(W2, N2, 1, isa);
        for (fl::QConvPath path : {fl::QConvPath::Gemm, fl::QConvPath::Direct}) {
          std::vector<uint8_t> c(M2 * N2, 99);
          std::vector<float> f(M2 * N2, -1.0f);
          const int64_t z = fl::qgemm_u8s8(A2.data(), M2, 1, 1, qw.data(),
                                           out_mn(fl::QOutMode::Codes, c.data(), M2, N2, s2.data(), b2.data(), as, levels), path);
          fl::qgemm_u8s8(A2.data(), M2, 1, 1, qw.data(), out_mn(fl::QOutMode::Float, f.data(), M2, N2, s2.data(), b2.data(), as, levels), path);
          size_t bad = 0, fbad = 0;
          int64_t zs = 0;
          for (size_t m = 0; m < M2; ++m)
            for (size_t n = 0; n < N2; ++n) {
              bad += c[m * N2 + n] != c2spec[n];
              fbad += fbits(f[m * N2 + n]) != fbits(float(spec_affine(1, 0.0, b2[n])));  // (0 + -0 = +0)
              zs += c2spec[n] == 0;
            }
          FL_CHECK(bad == 0 && fbad == 0 && z == zs) << fl::isa_name(isa) << " " << path_name(path) << " boundaries as=" << as
                                                     << " levels=" << levels << ": " << bad << " codes, " << fbad << " floats differ";
        }
      }
    }
}
