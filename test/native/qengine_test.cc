// Int4 engine kernels: every ISA's GEMM gives exactly the int32 accumulators of a plain
// triple loop, and the same float / code epilogue bits as the scalar kernel; conv equals
// a direct convolution; pooling, residual and requant ops equal their scalar references.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
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
          std::vector<int32_t> out(M * N, 0x5a5a5a5a);
          fl::qgemm_u8s8(A.data(), M, K, K, qw.data(), out_mn(fl::QOutMode::Int32, out.data(), M, N, nullptr, nullptr, 1, 1));
          size_t bad = 0;
          while (bad < out.size() && out[bad] == ref[bad]) ++bad;
          FL_CHECK(bad == out.size()) << fl::isa_name(isa) << " M=" << M << " N=" << N << " K=" << K << " at m="
                                      << bad / N << " n=" << bad % N << " ref=" << ref[bad] << " got=" << out[bad];
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
  for (fl::Isa isa : gemm_isas()) {
    const auto qw = make_weights(W, N, K, isa);
    std::vector<float> f(M * N);
    std::vector<uint8_t> c(M * N, 99);
    fl::qgemm_u8s8(A.data(), M, K, K, qw.data(), out_mn(fl::QOutMode::Float, f.data(), M, N, scale.data(), bias.data(), as, levels));
    const int64_t z =
        fl::qgemm_u8s8(A.data(), M, K, K, qw.data(), out_mn(fl::QOutMode::Codes, c.data(), M, N, scale.data(), bias.data(), as, levels));
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
    FL_CHECK(same) << fl::isa_name(isa) << " float epilogue";
    FL_CHECK(c == cref && z == zref) << fl::isa_name(isa) << " codes epilogue";
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
