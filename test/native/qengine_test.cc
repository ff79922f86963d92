// Int4 engine kernels: every ISA's GEMM gives exactly the int32 accumulators of a plain
// triple loop, and the same float / code epilogue bits as the scalar kernel; conv equals
// a direct convolution; pooling, residual and requant ops equal their scalar references.
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

std::vector<uint8_t> make_weights(const std::vector<int8_t>& codes, size_t N, size_t K, fl::Isa isa) {
  std::vector<uint8_t> qw(fl::qweights_bytes(N, K));
  fl::qweights_from_codes(codes.data(), N, K, 8, isa, qw.data());
  return qw;
}

// Row-major [M][N] output in each mode.
fl::QOut out_mn(fl::QOutMode mode, void* data, size_t M, size_t N, const float* scale, const float* bias, float as,
                float levels) {
  fl::QOut o{};
  o.mode = mode; o.data = data; o.P = int64_t(M); o.strideImg = 0; o.strideP = int64_t(N); o.strideN = 1;
  o.scale = scale; o.bias = bias; o.actScale = as; o.levels = levels;
  return o;
}

}  // namespace

FL_TEST(qgemm_int32_exact_every_isa_awkward_shapes) {
  const size_t Ms[] = {1, 3, 15, 16, 17, 33, 47, 48, 49, 97, 130};
  const size_t Ns[] = {1, 3, 7, 8, 9, 17, 33};
  const size_t Ks[] = {1, 3, 4, 5, 31, 64, 129};
  uint32_t stream = 0;
  for (size_t M : Ms)
    for (size_t N : Ns)
      for (size_t K : Ks) {
        ++stream;
        const auto A = rand_u8(M * K, stream, 255);
        const auto W = rand_codes(N * K, stream + 1000, -128, 127);
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
          for (fl::QConvPath path : {fl::QConvPath::Gemm, fl::QConvPath::Direct}) {  // Direct: AVX-512 VNNI only
            std::vector<int32_t> out(M * N, 0x5a5a5a5a);
            fl::qgemm_u8s8(A.data(), M, K, K, qw.data(), out_mn(fl::QOutMode::Int32, out.data(), M, N, nullptr, nullptr, 1, 1), path);
            size_t bad = 0;
            while (bad < out.size() && out[bad] == ref[bad]) ++bad;
            FL_CHECK(bad == out.size()) << fl::isa_name(isa) << (path == fl::QConvPath::Gemm ? " gemm" : " direct") << " M=" << M
                                        << " N=" << N << " K=" << K << " at m=" << bad / N << " n=" << bad % N
                                        << " ref=" << ref[std::min(bad, out.size() - 1)] << " got=" << out[std::min(bad, out.size() - 1)];
          }
        }
      }
}

FL_TEST(qgemm_extreme_values_no_overflow) {
  // all 255 x all -128 at K = 4096: acc = -133693440, exact in int32 on every ISA
  const size_t M = 50, N = 9, K = 4096;
  std::vector<uint8_t> A(M * K, 255);
  std::vector<int8_t> W(N * K, -128);
  for (size_t k = 0; k < K; ++k) W[3 * K + k] = 127;
  for (fl::Isa isa : gemm_isas()) {
    const auto qw = make_weights(W, N, K, isa);
    std::vector<int32_t> out(M * N);
    fl::qgemm_u8s8(A.data(), M, K, K, qw.data(), out_mn(fl::QOutMode::Int32, out.data(), M, N, nullptr, nullptr, 1, 1));
    bool ok = true;
    for (size_t m = 0; m < M; ++m)
      for (size_t n = 0; n < N; ++n) ok = ok && out[m * N + n] == (n == 3 ? 255 * 127 * 4096 : -255 * 128 * 4096);
    FL_CHECK(ok) << fl::isa_name(isa) << " " << out[0];
  }
}

FL_TEST(qgemm_epilogues_bit_identical_to_scalar) {
  const size_t M = 101, N = 19, K = 75;
  const auto A = rand_u8(M * K, 77, 15);
  const auto W = rand_codes(N * K, 78, -8, 7);
  std::vector<float> scale(N), bias(N);
  for (size_t n = 0; n < N; ++n) {
    scale[n] = 0.0013f * float(n + 1);
    bias[n] = (float(rbits(n, 79) % 1000) - 500.0f) * 0.003f;
  }
  const float levels = 15.0f, as = 2.2f / 15.0f;
  std::vector<float> fref(M * N);
  std::vector<uint8_t> cref(M * N);
  int64_t zref = 0;
  bool first = true;
  for (int variant = 0; variant < 2 * int(gemm_isas().size()); ++variant) {
    const fl::Isa isa = gemm_isas()[size_t(variant / 2)];
    const fl::QConvPath path = variant % 2 ? fl::QConvPath::Direct : fl::QConvPath::Gemm;  // Direct: AVX-512 VNNI only
    const auto qw = make_weights(W, N, K, isa);
    std::vector<float> f(M * N);
    std::vector<uint8_t> c(M * N, 99);
    fl::qgemm_u8s8(A.data(), M, K, K, qw.data(), out_mn(fl::QOutMode::Float, f.data(), M, N, scale.data(), bias.data(), as, levels), path);
    const int64_t z = fl::qgemm_u8s8(A.data(), M, K, K, qw.data(),
                                     out_mn(fl::QOutMode::Codes, c.data(), M, N, scale.data(), bias.data(), as, levels), path);
    if (first) {
      fref = f; cref = c; zref = z; first = false;
      // scalar against the formulas, with float(acc) exact here
      for (size_t m = 0; m < M; ++m)
        for (size_t n = 0; n < N; ++n) {
          int32_t acc = 0;
          for (size_t k = 0; k < K; ++k) acc += int32_t(A[m * K + k]) * W[n * K + k];
          const float p = scale[n] * float(acc);
          const float y = p + bias[n];
          FL_CHECK(fbits(f[m * N + n]) == fbits(y)) << m << "," << n;
          float q = std::nearbyint((y > 0 ? y : 0.0f) / as);
          q = std::min(q, levels);
          FL_CHECK(c[m * N + n] == uint8_t(q)) << m << "," << n << " " << int(c[m * N + n]) << " vs " << q;
        }
      int64_t zc = 0;
      for (uint8_t v : c) zc += v == 0;
      FL_CHECK(zc == z) << zc << " vs " << z;
      FL_CHECK(z > 0 && z < int64_t(M * N)) << "want a mix of zero and non-zero codes: " << z;
      continue;
    }
    bool same = true;
    for (size_t i = 0; i < f.size(); ++i) same = same && fbits(f[i]) == fbits(fref[i]);
    FL_CHECK(same) << fl::isa_name(isa) << " path " << variant % 2 << " float epilogue";
    FL_CHECK(c == cref && z == zref) << fl::isa_name(isa) << " path " << variant % 2 << " codes epilogue";
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
  std::vector<float> scale(N, 1.0f), bias(N, 0.5f);
  for (fl::Isa isa : gemm_isas()) {
    const auto qw = make_weights(W, N, K, isa);
    // [N][M] layout
    std::vector<uint8_t> c(N * M);
    fl::QOut o{};
    o.mode = fl::QOutMode::Codes; o.data = c.data(); o.P = int64_t(M); o.strideImg = 0; o.strideP = 1; o.strideN = int64_t(M);
    o.scale = scale.data(); o.bias = bias.data(); o.actScale = 1.0f; o.levels = 15.0f;
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
    const size_t K = t.C * t.k * t.k;
    std::vector<float> scale(t.O), bias(t.O);
    for (size_t o = 0; o < t.O; ++o) { scale[o] = 0.01f + 0.001f * float(o); bias[o] = 0.1f * float(o % 3) - 0.1f; }
    std::vector<uint8_t> cref;
    for (fl::Isa isa : gemm_isas()) {
      const auto qw = make_weights(w, t.O, K, isa);
      for (int threads : {1, 2}) {
        fl::set_num_threads(threads);
        std::vector<int32_t> acc(ref.size(), 0x11111111);
        fl::QOut o{};
        o.mode = fl::QOutMode::Int32; o.data = acc.data();
        fl::qconv2d_u8(x.data(), t.B, t.C, t.H, t.W, qw.data(), t.k, t.k, t.s, t.p, o);
        FL_CHECK(acc == ref) << fl::isa_name(isa) << " B=" << t.B << " C=" << t.C << " H=" << t.H << " O=" << t.O << " k=" << t.k
                             << " s=" << t.s << " p=" << t.p << " threads=" << threads;
        std::vector<uint8_t> codes(ref.size(), 77);
        o.mode = fl::QOutMode::Codes; o.data = codes.data(); o.scale = scale.data(); o.bias = bias.data();
        o.actScale = 1.0f / 15.0f; o.levels = 15.0f;
        const int64_t z = fl::qconv2d_u8(x.data(), t.B, t.C, t.H, t.W, qw.data(), t.k, t.k, t.s, t.p, o);
        if (cref.empty()) cref = codes;
        FL_CHECK(codes == cref) << fl::isa_name(isa) << " codes, case C=" << t.C << " H=" << t.H;
        FL_CHECK(z == int64_t(std::count(codes.begin(), codes.end(), uint8_t(0)))) << z;
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
}  // namespace

FL_TEST(requant_and_add_requant_every_isa_equal_scalar) {
  const fl::Isa best = fl::best_isa();
  const float levels = 15.0f, as = 3.0f / 15.0f;
  for (size_t n : {size_t(1), size_t(7), size_t(8), size_t(15), size_t(17), size_t(33), size_t(1000), size_t(70000)}) {
    std::vector<float> y(n), f2(n);
    std::vector<uint8_t> c1 = rand_u8(n, 41, 15), c2 = rand_u8(n, 42, 15);
    for (size_t i = 0; i < n; ++i) {
      y[i] = (float(rbits(i, 43) % 4000) - 1000.0f) * 0.001f;
      if (i % 7 == 0) y[i] = (float(i % 17) + 0.5f) * as;  // ties
      if (i % 11 == 0) y[i] = (i % 2) ? NAN : -0.0f;
      f2[i] = (float(rbits(i, 44) % 4000) - 2000.0f) * 0.001f;
    }
    std::vector<uint8_t> r0, ar[4];
    int64_t z0 = 0, az[4] = {0, 0, 0, 0};
    for (fl::Isa isa : all_isas()) {
      fl::set_isa(isa);
      std::vector<uint8_t> q(n, 99);
      const int64_t z = fl::requant_u8(y.data(), n, as, levels, q.data());
      if (isa == fl::Isa::Scalar) {
        r0 = q; z0 = z;
        for (size_t i = 0; i < n; ++i) {
          float want = std::nearbyint((y[i] > 0 ? y[i] : 0.0f) / as);
          want = std::min(want, levels);
          FL_CHECK(q[i] == uint8_t(want)) << i << " y=" << y[i];
        }
      } else {
        FL_CHECK(q == r0 && z == z0) << fl::isa_name(isa) << " requant n=" << n;
      }
      // residual joins: codes+codes, codes+float, float+codes, float+float
      for (int combo = 0; combo < 4; ++combo) {
        const uint8_t* a8 = combo & 1 ? nullptr : c1.data();
        const float* af = combo & 1 ? y.data() : nullptr;
        const uint8_t* b8 = combo & 2 ? nullptr : c2.data();
        const float* bf = combo & 2 ? f2.data() : nullptr;
        std::vector<uint8_t> qa(n, 98);
        const int64_t za = fl::add_requant(a8, af, 0.2f, b8, bf, 0.13f, n, as, levels, qa.data());
        if (isa == fl::Isa::Scalar) {
          ar[combo] = qa; az[combo] = za;
          for (size_t i = 0; i < n; ++i) {
            const float da = a8 ? float(a8[i]) * 0.2f : af[i], db = b8 ? float(b8[i]) * 0.13f : bf[i];
            const float s = da + db;
            float want = std::nearbyint((s > 0 ? s : 0.0f) / as);
            want = std::min(want, levels);
            FL_CHECK(qa[i] == uint8_t(want)) << "combo " << combo << " i=" << i;
          }
        } else {
          FL_CHECK(qa == ar[combo] && za == az[combo]) << fl::isa_name(isa) << " add combo " << combo << " n=" << n;
        }
      }
    }
    fl::set_isa(best);
  }
}

FL_TEST(maxpool_and_global_pool_every_isa) {
  const fl::Isa best = fl::best_isa();
  struct Case { size_t planes, H, W, k, s; };
  for (const Case& t : {Case{6, 28, 28, 2, 2}, Case{3, 9, 67, 2, 2}, Case{2, 10, 10, 3, 2}, Case{5, 4, 4, 2, 1}, Case{1, 1, 1, 1, 1}}) {
    const auto x = rand_u8(t.planes * t.H * t.W, 61, 15);
    const size_t OH = (t.H - t.k) / t.s + 1, OW = (t.W - t.k) / t.s + 1;
    std::vector<uint8_t> ref(t.planes * OH * OW);
    for (size_t p = 0; p < t.planes; ++p)
      for (size_t a = 0; a < OH; ++a)
        for (size_t b = 0; b < OW; ++b) {
          uint8_t m = 0;
          for (size_t i = 0; i < t.k; ++i)
            for (size_t j = 0; j < t.k; ++j) m = std::max(m, x[(p * t.H + a * t.s + i) * t.W + b * t.s + j]);
          ref[(p * OH + a) * OW + b] = m;
        }
    for (fl::Isa isa : all_isas()) {
      fl::set_isa(isa);
      std::vector<uint8_t> y(ref.size(), 200);
      fl::maxpool2d_u8(x.data(), t.planes, t.H, t.W, t.k, t.s, y.data());
      FL_CHECK(y == ref) << fl::isa_name(isa) << " H=" << t.H << " W=" << t.W << " k=" << t.k << " s=" << t.s;
    }
  }
  fl::set_isa(best);
  const auto x = rand_u8(7 * 16, 62, 15);
  std::vector<int32_t> sums(7);
  fl::global_sum_u8(x.data(), 7, 16, sums.data());
  std::vector<float> yf(7);
  std::vector<uint8_t> codes(7);
  const int64_t z = fl::global_avgpool_u8(x.data(), 7, 16, 0.1f / 16.0f, yf.data(), codes.data(), 0.1f, 15.0f);
  int64_t zc = 0;
  for (size_t p = 0; p < 7; ++p) {
    int32_t s = 0;
    for (size_t i = 0; i < 16; ++i) s += x[p * 16 + i];
    FL_CHECK(sums[p] == s);
    FL_CHECK(fbits(yf[p]) == fbits(float(s) * (0.1f / 16.0f)));
    float q = std::nearbyint(yf[p] / 0.1f);
    FL_CHECK(codes[p] == uint8_t(std::min(q, 15.0f)));
    zc += codes[p] == 0;
  }
  FL_CHECK(z == zc);
}

FL_TEST(qlinear_i32_matches_int64_reference) {
  const size_t M = 9, K = 70, N = 11;
  std::vector<int32_t> A(M * K);
  for (size_t i = 0; i < A.size(); ++i) A[i] = int32_t(rbits(i, 71) % 4000);
  const auto W = rand_codes(N * K, 72, -8, 7);
  std::vector<float> scale(N, 0.001f), bias(N, -0.25f), y(M * N);
  fl::qlinear_i32(A.data(), M, K, W.data(), N, scale.data(), bias.data(), fl::QOutMode::Float, y.data(), 1, 1);
  for (size_t m = 0; m < M; ++m)
    for (size_t n = 0; n < N; ++n) {
      int64_t acc = 0;
      for (size_t k = 0; k < K; ++k) acc += int64_t(A[m * K + k]) * W[n * K + k];
      const float p = 0.001f * float(acc);
      FL_CHECK(fbits(y[m * N + n]) == fbits(p + -0.25f)) << m << "," << n;
    }
}

// ---- direct convolution (images in lanes) and the fused conv + max pool ------------------------
namespace {

bool direct_available() { return fl::best_isa() == fl::Isa::Avx512 && fl::cpu_features().avx512vnni; }

struct ConvCase { size_t B, C, H, W, O, kh, kw, s, p; };

// Per-channel scales and biases exercising both requant directions, NaN, infinities and zeros.
void conv_epilogue(size_t O, uint32_t stream, bool odd, std::vector<float>* scale, std::vector<float>* bias) {
  scale->resize(O);
  bias->resize(O);
  for (size_t o = 0; o < O; ++o) {
    const float mag = 0.0005f + 0.0004f * float(rbits(o, stream) % 16);
    (*scale)[o] = (o % 3 == 1) ? -mag : mag;
    (*bias)[o] = (float(rbits(o, stream + 1) % 200) - 100.0f) * 0.004f;
    if (odd) {
      if (o == 2) (*scale)[o] = -0.0f;
      if (o == 4) (*scale)[o] = std::numeric_limits<float>::infinity();
      if (o == 5) (*scale)[o] = -std::numeric_limits<float>::infinity();
      if (o == 6) (*bias)[o] = NAN;
      if (o == 7) (*scale)[o] = 0.0f;
    }
  }
}

}  // namespace

FL_TEST(qconv2d_direct_equals_gemm_path_every_mode) {
  if (!direct_available()) return;
  const ConvCase cases[] = {{17, 1, 28, 28, 6, 5, 5, 1, 2},  {33, 6, 14, 14, 16, 5, 5, 1, 0}, {3, 3, 9, 11, 7, 3, 3, 1, 1},
                            {5, 5, 12, 10, 9, 3, 5, 2, 1},  {16, 2, 7, 7, 1, 7, 7, 1, 3},   {1, 9, 6, 5, 13, 4, 4, 1, 2},
                            {18, 4, 8, 8, 8, 1, 1, 1, 0},   {2, 7, 13, 6, 17, 6, 2, 3, 2},  {31, 1, 5, 5, 32, 5, 5, 1, 0},
                            {4, 3, 10, 10, 3, 2, 6, 2, 0}};
  uint32_t stream = 1300;
  for (const ConvCase& t : cases) {
    stream += 10;
    const size_t K = t.C * t.kh * t.kw, OH = fl::conv_out(t.H, t.kh, t.s, t.p), OW = fl::conv_out(t.W, t.kw, t.s, t.p);
    const size_t n = t.B * t.O * OH * OW;
    const auto x = rand_u8(t.B * t.C * t.H * t.W, stream, stream % 20 == 0 ? 15 : 255);
    const auto w = rand_codes(t.O * K, stream + 1, -8, 7);
    const auto ref = conv_ref(x, t.B, t.C, t.H, t.W, w, t.O, t.kh, t.kw, t.s, t.p);
    const auto qw = make_weights(w, t.O, K, fl::Isa::Avx512);
    FL_CHECK(fl::qconv_direct_applies(qw.data(), t.C, t.H, t.W, t.kh, t.kw, t.s, t.p, 1, 1, fl::QOutMode::Int32));
    for (bool odd : {false, true}) {
      std::vector<float> scale, bias;
      conv_epilogue(t.O, stream + 2, odd, &scale, &bias);
      for (float levels : {15.0f, 3.0f, 255.0f}) {
        const float as = levels == 255.0f ? 0.01f : 0.37f / levels;
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
        const std::string what = " B=" + std::to_string(t.B) + " C=" + std::to_string(t.C) + " H=" + std::to_string(t.H) +
                                 " W=" + std::to_string(t.W) + " O=" + std::to_string(t.O) + " k=" + std::to_string(t.kh) + "x" +
                                 std::to_string(t.kw) + " s=" + std::to_string(t.s) + " p=" + std::to_string(t.p) +
                                 " levels=" + std::to_string(int(levels)) + (odd ? " odd scales" : "");
        FL_CHECK(ai[0] == ref) << "gemm int32" << what;
        size_t bad = 0;
        while (bad < n && ai[1][bad] == ref[bad]) ++bad;
        FL_CHECK(bad == n) << "direct int32" << what << " at " << bad << " ref=" << ref[std::min(bad, n - 1)]
                           << " got=" << ai[1][std::min(bad, n - 1)];
        bad = 0;
        while (bad < n && fbits(af[1][bad]) == fbits(af[0][bad])) ++bad;
        FL_CHECK(bad == n) << "direct float" << what << " at " << bad;
        bad = 0;
        while (bad < n && ac[1][bad] == ac[0][bad]) ++bad;
        FL_CHECK(bad == n) << "direct codes" << what << " at " << bad << " gemm=" << int(ac[0][std::min(bad, n - 1)])
                           << " direct=" << int(ac[1][std::min(bad, n - 1)]);
        FL_CHECK(z[0] == z[1] && z[0] == int64_t(std::count(ac[0].begin(), ac[0].end(), uint8_t(0))))
            << "zeros" << what << " gemm=" << z[0] << " direct=" << z[1];
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
    const size_t PH = (OH - pc.pk) / pc.ps + 1, PW = (OW - pc.pk) / pc.ps + 1;
    const auto x = rand_u8(t.B * t.C * t.H * t.W, stream, 255);
    const auto w = rand_codes(t.O * K, stream + 1, -8, 7);
    std::vector<float> scale, bias;
    conv_epilogue(t.O, stream + 2, stream % 20 == 0, &scale, &bias);
    // reference: scalar GEMM path conv codes, then the scalar max pool
    const fl::Isa best = fl::best_isa();
    fl::set_isa(fl::Isa::Scalar);
    const auto qs = make_weights(w, t.O, K, fl::Isa::Scalar);
    std::vector<uint8_t> conv(t.B * t.O * OH * OW), ref(t.B * t.O * PH * PW);
    fl::QOut o{};
    o.mode = fl::QOutMode::Codes; o.data = conv.data(); o.scale = scale.data(); o.bias = bias.data();
    o.actScale = 0.41f / 15.0f; o.levels = 15.0f;
    const int64_t zref = fl::qconv2d_u8(x.data(), t.B, t.C, t.H, t.W, qs.data(), t.kh, t.kw, t.s, t.p, o);
    fl::maxpool2d_u8(conv.data(), t.B * t.O, OH, OW, pc.pk, pc.ps, ref.data());
    FL_CHECK(zref == int64_t(std::count(conv.begin(), conv.end(), uint8_t(0))));
    FL_CHECK(zref > 0 && zref < int64_t(conv.size())) << "want a mix of zero and non-zero codes: " << zref;
    for (fl::Isa isa : gemm_isas()) {
      fl::set_isa(isa);
      const auto qw = make_weights(w, t.O, K, isa);
      for (int threads : {1, 2}) {
        fl::set_num_threads(threads);
        std::vector<uint8_t> y(ref.size(), 99);
        o.data = y.data();
        const int64_t z = fl::qconv2d_pool_u8(x.data(), t.B, t.C, t.H, t.W, qw.data(), t.kh, t.kw, t.s, t.p, pc.pk, pc.ps, o);
        size_t bad = 0;
        while (bad < y.size() && y[bad] == ref[bad]) ++bad;
        FL_CHECK(bad == y.size() && z == zref) << fl::isa_name(isa) << " threads=" << threads << " C=" << t.C << " H=" << t.H
                                               << " O=" << t.O << " pool " << pc.pk << "/" << pc.ps << " at " << bad
                                               << " zeros " << z << " vs " << zref;
      }
    }
    fl::set_isa(best);
  }
  fl::set_num_threads(2);
}

FL_TEST(qconv2d_direct_requant_ties_and_extreme_values) {
  if (!direct_available()) return;
  // 1x1 conv, one input channel: acc = x * w exactly, so y = acc * scale + bias can be put on
  // every tie of the requantiser (y / actScale = k + 0.5) and at the accumulator extremes.
  const size_t B = 20, H = 16, W = 16, O = 3;
  std::vector<uint8_t> x(B * H * W);
  for (size_t i = 0; i < x.size(); ++i) x[i] = uint8_t(i % 256);
  std::vector<int8_t> w = {1, -128, 127};
  const auto qw = make_weights(w, O, 1, fl::Isa::Avx512);
  std::vector<float> scale = {0.5f, -1.0f / 128.0f, 1.0f / 127.0f}, bias = {0.25f, 0.0f, -0.5f};
  for (float as : {0.5f, 1.0f, 0.1f, 3.0f / 7.0f}) {
    fl::QOut o{};
    o.mode = fl::QOutMode::Codes; o.scale = scale.data(); o.bias = bias.data(); o.actScale = as; o.levels = 15.0f;
    std::vector<uint8_t> c0(x.size() * O), c1(x.size() * O);
    o.data = c0.data();
    const int64_t z0 = fl::qconv2d_u8(x.data(), B, 1, H, W, qw.data(), 1, 1, 1, 0, o, fl::QConvPath::Gemm);
    o.data = c1.data();
    const int64_t z1 = fl::qconv2d_u8(x.data(), B, 1, H, W, qw.data(), 1, 1, 1, 0, o, fl::QConvPath::Direct);
    FL_CHECK(c0 == c1 && z0 == z1) << "actScale " << as;
    for (size_t i = 0; i < x.size(); ++i) {
      const float y = 0.5f * float(x[i]) + 0.25f;
      float q = std::nearbyint(y / as);
      FL_CHECK(c1[(i / (H * W)) * O * H * W + i % (H * W)] == uint8_t(std::min(q, 15.0f))) << i;
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
  std::vector<float> scale, bias;
  conv_epilogue(O, 2103, false, &scale, &bias);
  const size_t OH = fl::conv_out(H, k, s, p), OW = fl::conv_out(W, k, s, p), E = O * OH * OW, PE = O * (OH / 2) * (OW / 2);
  const size_t GK = 37, GN = 19;  // GEMM [B][GK] x [GN][GK]
  const auto A = rand_u8(B * GK, 2104, 15);
  const auto gw = rand_codes(GN * GK, 2105, -8, 7);
  std::vector<float> gs, gb;
  conv_epilogue(GN, 2106, false, &gs, &gb);
  const auto xb = blocked_with_junk(x, B, C * H * W), Ab = blocked_with_junk(A, B, GK);
  for (fl::Isa isa : gemm_isas()) {
    const auto qw = make_weights(w, O, K, isa), gq = make_weights(gw, GN, GK, isa);
    for (fl::QConvPath path : {fl::QConvPath::Gemm, fl::QConvPath::Auto}) {
      fl::QOut o{};
      o.mode = fl::QOutMode::Codes; o.scale = scale.data(); o.bias = bias.data(); o.actScale = 0.3f / 15.0f; o.levels = 15.0f;
      fl::QOut go = out_mn(fl::QOutMode::Codes, nullptr, B, GN, gs.data(), gb.data(), 0.9f / 15.0f, 15.0f);
      std::vector<uint8_t> conv(B * E), pool(B * PE), gemm(B * GN);
      o.data = conv.data();
      const int64_t zc = fl::qconv2d_u8(x.data(), B, C, H, W, qw.data(), k, k, s, p, o, path);
      o.data = pool.data();
      const int64_t zp = fl::qconv2d_pool_u8(x.data(), B, C, H, W, qw.data(), k, k, s, p, 2, 2, o, path);
      go.data = gemm.data();
      const int64_t zg = fl::qgemm_u8s8(A.data(), B, GK, GK, gq.data(), go, path);
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
  // same buffer (a new fault map), a scale, a bias or the activation range must be seen
  if (!direct_available()) return;
  const size_t B = 17, C = 2, H = 9, W = 9, O = 5, k = 3, K = C * k * k;
  const auto x = rand_u8(B * C * H * W, 2201, 255);
  auto w = rand_codes(O * K, 2202, -8, 7);
  std::vector<float> scale, bias;
  conv_epilogue(O, 2203, false, &scale, &bias);
  std::vector<uint8_t> qw(fl::qweights_bytes(O, K));
  fl::QOut o{};
  o.mode = fl::QOutMode::Codes; o.scale = scale.data(); o.bias = bias.data(); o.actScale = 0.4f / 15.0f; o.levels = 15.0f;
  for (int round = 0; round < 6; ++round) {
    if (round == 1) w[7] = int8_t(-w[7] - 1);  // one changed code
    if (round == 2) scale[3] *= -1.5f;
    if (round == 3) bias[0] += 0.25f;
    if (round == 4) o.actScale *= 1.5f;
    if (round == 5) o.levels = 3.0f;
    fl::qweights_from_codes(w.data(), O, K, 4, fl::Isa::Avx512, qw.data());
    std::vector<uint8_t> a(B * O * 16), b(B * O * 16);
    o.data = a.data();
    const int64_t za = fl::qconv2d_pool_u8(x.data(), B, C, H, W, qw.data(), k, k, 1, 0, 2, 2, o, fl::QConvPath::Gemm);
    o.data = b.data();
    const int64_t zb = fl::qconv2d_pool_u8(x.data(), B, C, H, W, qw.data(), k, k, 1, 0, 2, 2, o, fl::QConvPath::Direct);
    FL_CHECK(a == b && za == zb) << "round " << round;
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

FL_TEST(qgemm_every_operand_range_epilogues_equal_scalar) {
  // the Float and Codes epilogues of each AVX2 kernel give the scalar kernel's bits
  struct Range { int amax, wlo, whi; };
  const Range ranges[] = {{15, -8, 7}, {255, -8, 7}, {15, -128, 127}, {255, -128, 127}};
  const size_t M = 61, N = 11, K = 150;
  uint32_t stream = 3500;
  for (const Range& r : ranges) {
    stream += 3;
    const auto A = rand_u8(M * K, stream, r.amax);
    const auto W = rand_codes(N * K, stream + 1, r.wlo, r.whi);
    std::vector<float> scale(N), bias(N);
    for (size_t n = 0; n < N; ++n) {
      scale[n] = (n % 4 == 1 ? -1.0f : 1.0f) * 0.3f / float(r.amax * std::max(-r.wlo, r.whi) * 12);
      bias[n] = (float(rbits(n, stream + 2) % 200) - 100.0f) * 0.004f;
    }
    std::vector<float> fref;
    std::vector<uint8_t> cref;
    int64_t zref = -1;
    for (fl::Isa isa : gemm_isas()) {
      const auto qw = make_weights(W, N, K, isa);
      std::vector<float> f(M * N);
      std::vector<uint8_t> c(M * N, 99);
      fl::qgemm_u8s8(A.data(), M, K, K, qw.data(), out_mn(fl::QOutMode::Float, f.data(), M, N, scale.data(), bias.data(), 0.02f, 15.0f),
                     fl::QConvPath::Gemm);
      const int64_t z = fl::qgemm_u8s8(A.data(), M, K, K, qw.data(),
                                       out_mn(fl::QOutMode::Codes, c.data(), M, N, scale.data(), bias.data(), 0.02f, 15.0f), fl::QConvPath::Gemm);
      if (zref < 0) {
        fref = f; cref = c; zref = z;
        FL_CHECK(z > 0 && z < int64_t(M * N)) << "want a mix of zero and non-zero codes: " << z;
        continue;
      }
      bool same = true;
      for (size_t i = 0; i < f.size(); ++i) same = same && fbits(f[i]) == fbits(fref[i]);
      FL_CHECK(same && c == cref && z == zref) << fl::isa_name(isa) << " amax=" << r.amax << " w=[" << r.wlo << "," << r.whi << "]";
    }
  }
}

FL_TEST(qconv2d_per_position_term_every_isa) {
  // y = fl(fl(fl(s * acc) + b) + corr[o][p]) then codes (and a max pool of the codes): the input
  // layer's border correction; every ISA's GEMM path (the direct kernel is not used with a term)
  struct PoolCase { ConvCase c; size_t pk, ps; };
  const PoolCase cases[] = {{{21, 1, 28, 28, 6, 5, 5, 1, 2}, 2, 2}, {{5, 3, 9, 11, 7, 3, 3, 1, 1}, 2, 2},
                            {{3, 2, 10, 7, 5, 3, 3, 2, 2}, 3, 2},   {{17, 1, 6, 6, 9, 5, 5, 1, 2}, 1, 1}};
  uint32_t stream = 4100;
  for (const PoolCase& pc : cases) {
    const ConvCase& t = pc.c;
    stream += 10;
    const size_t K = t.C * t.kh * t.kw, OH = fl::conv_out(t.H, t.kh, t.s, t.p), OW = fl::conv_out(t.W, t.kw, t.s, t.p), P = OH * OW;
    const size_t PH = (OH - pc.pk) / pc.ps + 1, PW = (OW - pc.pk) / pc.ps + 1;
    const auto x = rand_u8(t.B * t.C * t.H * t.W, stream, 255);
    const auto w = rand_codes(t.O * K, stream + 1, -8, 7);
    std::vector<float> scale, bias, corr(t.O * P);
    conv_epilogue(t.O, stream + 2, false, &scale, &bias);
    for (size_t i = 0; i < corr.size(); ++i) corr[i] = (float(rbits(i, stream + 3) % 2000) - 1000.0f) * 0.0007f;
    const auto acc = conv_ref(x, t.B, t.C, t.H, t.W, w, t.O, t.kh, t.kw, t.s, t.p);
    const float as = 0.4f / 15.0f, levels = 15.0f;
    std::vector<float> fref(acc.size());
    std::vector<uint8_t> cref(acc.size()), pref(t.B * t.O * PH * PW);
    int64_t zref = 0;
    for (size_t i = 0; i < acc.size(); ++i) {
      const size_t o = (i / P) % t.O, p = i % P;
      float pr = scale[o] * float(acc[i]);
      const float y = (pr + bias[o]) + corr[o * P + p];
      fref[i] = y;
      float q = std::nearbyint((y > 0 ? y : 0.0f) / as);
      cref[i] = uint8_t(std::min(q, levels));
      zref += cref[i] == 0;
    }
    fl::maxpool2d_u8(cref.data(), t.B * t.O, OH, OW, pc.pk, pc.ps, pref.data());
    for (fl::Isa isa : gemm_isas()) {
      const auto qw = make_weights(w, t.O, K, isa);
      for (int threads : {1, 2}) {
        fl::set_num_threads(threads);
        fl::QOut o{};
        o.scale = scale.data(); o.bias = bias.data(); o.actScale = as; o.levels = levels; o.corr = corr.data();
        std::vector<float> f(acc.size(), -7.0f);
        o.mode = fl::QOutMode::Float; o.data = f.data();
        fl::qconv2d_u8(x.data(), t.B, t.C, t.H, t.W, qw.data(), t.kh, t.kw, t.s, t.p, o);
        bool same = true;
        for (size_t i = 0; i < f.size(); ++i) same = same && fbits(f[i]) == fbits(fref[i]);
        std::vector<uint8_t> c(acc.size(), 99), pooled(pref.size(), 99);
        o.mode = fl::QOutMode::Codes; o.data = c.data();
        const int64_t z = fl::qconv2d_u8(x.data(), t.B, t.C, t.H, t.W, qw.data(), t.kh, t.kw, t.s, t.p, o);
        o.data = pooled.data();
        const int64_t zp = fl::qconv2d_pool_u8(x.data(), t.B, t.C, t.H, t.W, qw.data(), t.kh, t.kw, t.s, t.p, pc.pk, pc.ps, o);
        FL_CHECK(same && c == cref && z == zref && pooled == pref && zp == zref)
            << fl::isa_name(isa) << " threads=" << threads << " C=" << t.C << " H=" << t.H << " pool " << pc.pk << " float " << same
            << " codes " << (c == cref) << " pooled " << (pooled == pref) << " zeros " << z << "/" << zp << " vs " << zref;
      }
    }
  }
  fl::set_num_threads(2);
}

FL_TEST(qgemm_codes_thresholds_ties_and_odd_scales_every_isa) {
  // the division-free codes of the SIMD epilogues (qrequant.h tables) against the scalar division:
  // y / actScale on every tie (scale = actScale / 2: acc odd gives k + 0.5), just beside them, and
  // channels with -0, +-inf scales and a NaN bias; several actScales and levels
  const size_t M = 67, K = 3, N = 9;
  std::vector<uint8_t> A(M * K);
  for (size_t m = 0; m < M; ++m) { A[m * K] = uint8_t(m % 40); A[m * K + 1] = uint8_t((m * 7) % 3); A[m * K + 2] = 0; }
  std::vector<int8_t> W(N * K, 0);
  for (size_t n = 0; n < N; ++n) { W[n * K] = int8_t(n % 3 == 2 ? -1 : 1); W[n * K + 1] = int8_t(n % 2); }
  for (float as : {1.0f, 0.1f, 3.0f / 7.0f, 0.37f / 15.0f, 0.9f / 15.0f, 0.41f / 15.0f})  // (the last two: q0 one too high at some thresholds)
    for (float levels : {15.0f, 7.0f, 3.0f, 1.0f}) {
      std::vector<float> scale(N), bias(N);
      for (size_t n = 0; n < N; ++n) {
        scale[n] = as * 0.5f * (n % 2 ? 1.0f : std::nextafter(1.0f, 2.0f));
        bias[n] = n % 3 == 1 ? as * 0.25f : 0.0f;
      }
      scale[4] = -0.0f; scale[5] = std::numeric_limits<float>::infinity(); scale[6] = -std::numeric_limits<float>::infinity();
      bias[7] = NAN; scale[8] = std::nextafter(as, 0.0f);
      std::vector<uint8_t> ref;
      int64_t zref = -1;
      for (fl::Isa isa : gemm_isas()) {
        const auto qw = make_weights(W, N, K, isa);
        std::vector<uint8_t> c(M * N, 99);
        const int64_t z = fl::qgemm_u8s8(A.data(), M, K, K, qw.data(), out_mn(fl::QOutMode::Codes, c.data(), M, N, scale.data(), bias.data(), as, levels),
                                         fl::QConvPath::Gemm);
        if (zref < 0) {
          ref = c; zref = z;
          for (size_t m = 0; m < M; ++m)  // the scalar kernel against the formula
            for (size_t n = 0; n < N; ++n) {
              int32_t acc = 0;
              for (size_t k = 0; k < K; ++k) acc += int32_t(A[m * K + k]) * W[n * K + k];
              float p = scale[n] * float(acc);
              const float y = p + bias[n];
              float q = std::nearbyint((y > 0 ? y : 0.0f) / as);
              FL_CHECK(c[m * N + n] == uint8_t(std::min(q, levels))) << "scalar m=" << m << " n=" << n;
            }
          continue;
        }
        FL_CHECK(c == ref && z == zref) << fl::isa_name(isa) << " as=" << as << " levels=" << levels;
      }
      // y exactly at each code's threshold and one ulp either side (scale 0: y = bias per channel)
      fl::QCodeTable tab;
      if (!fl::qcode_table(as, levels, &tab)) continue;
      std::vector<float> b2, s2;
      for (int k = 1; k <= int(levels); ++k)
        for (float v : {tab.lo[k], std::nextafter(tab.lo[k], 0.0f), std::nextafter(tab.lo[k], 1e30f), tab.lo[k] * 0.999f})
          b2.push_back(v);
      s2.assign(b2.size(), 0.0f);
      const size_t N2 = b2.size(), M2 = 19;
      std::vector<uint8_t> A2(M2, 1);
      std::vector<int8_t> W2(N2, 1);
      std::vector<uint8_t> r2;
      for (fl::Isa isa : gemm_isas()) {
        const auto qw = make_weights(W2, N2, 1, isa);
        std::vector<uint8_t> c(M2 * N2, 99);
        fl::qgemm_u8s8(A2.data(), M2, 1, 1, qw.data(), out_mn(fl::QOutMode::Codes, c.data(), M2, N2, s2.data(), b2.data(), as, levels), fl::QConvPath::Gemm);
        if (r2.empty()) {
          r2 = c;
          for (size_t n = 0; n < N2; ++n) {
            float q = std::nearbyint((b2[n] > 0 ? b2[n] : 0.0f) / as);
            FL_CHECK(c[n] == uint8_t(std::min(q, levels))) << "threshold " << n;
          }
        } else {
          FL_CHECK(c == r2) << fl::isa_name(isa) << " thresholds as=" << as << " levels=" << levels;
        }
      }
    }
}
