// Quantisation / packing / fault kernels: every SIMD variant equals the scalar
// reference bit for bit on awkward sizes, the scalar reference equals hand-worked
// values (round half to even, clips, STE mask), and the fault selection drivers
// equal a brute-force full sort for any thread count.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <vector>

#include "flatenn/core.h"
#include "flatenn/quant.h"
#include "flatenn/rng.h"
#include "harness.h"

namespace {

const size_t kSizes[] = {0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 1000, 4097};

std::vector<fl::Isa> simd_isas() {
  std::vector<fl::Isa> v;
  for (fl::Isa isa : {fl::Isa::Avx2, fl::Isa::Avx512})
    if (static_cast<int>(isa) <= static_cast<int>(fl::best_isa())) v.push_back(isa);
  return v;
}

float urand(uint64_t i, uint32_t stream = 0) { return float(fl::rng_uniform(7, fl::RngPurpose::User, stream, i)); }

uint32_t bits_of(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }

bool same_bits(const std::vector<float>& a, const std::vector<float>& b, size_t* at) {
  for (size_t i = 0; i < a.size(); ++i)
    if (bits_of(a[i]) != bits_of(b[i])) { *at = i; return false; }
  return true;
}

// Values with exact .5 ties at scale 1, clip values and random values.
std::vector<float> weights_with_ties(size_t n, uint32_t stream) {
  static const float special[] = {0.5f, -0.5f, 1.5f, -1.5f, 2.5f, -2.5f, 3.5f, -3.5f, 6.5f, -6.5f, 7.0f, -7.0f,
                                  7.49f, -7.5f, 8.5f, -8.5f, -9.0f, 100.0f, -0.0f, 0.0f, 1e-30f, -1e-40f};
  std::vector<float> w(n);
  for (size_t i = 0; i < n; ++i)
    w[i] = (i % 3 == 0) ? special[(i / 3) % (sizeof(special) / sizeof(float))] : (urand(i, stream) - 0.5f) * 20.0f;
  return w;
}

}  // namespace

FL_TEST(quant_round_half_even_and_clip_scalar) {
  // scale 1: ties go to the even neighbour; the clip is [-8, 7]
  const float w[] = {0.5f, 1.5f, 2.5f, -0.5f, -1.5f, -2.5f, 6.5f, 7.5f, -7.5f, -8.5f, -100.0f, 3.4999998f};
  const float want[] = {0.0f, 2.0f, 2.0f, -0.0f, -2.0f, -2.0f, 6.0f, 7.0f, -8.0f, -8.0f, -8.0f, 3.0f};
  const int8_t wantc[] = {0, 2, 2, 0, -2, -2, 6, 7, -8, -8, -8, 3};
  float out[12];
  int8_t codes[12];
  fl::kern::f32_quant_sym.variant(fl::Isa::Scalar)(w, out, codes, 12, 1.0f, -8.0f, 7.0f);
  for (int i = 0; i < 12; ++i) {
    FL_CHECK(bits_of(out[i]) == bits_of(want[i])) << "i=" << i << " w=" << w[i] << " out=" << out[i];
    FL_CHECK(codes[i] == wantc[i]) << "i=" << i << " code=" << int(codes[i]);
  }
}

FL_TEST(quant_sym_simd_equals_scalar) {
  for (fl::Isa isa : simd_isas())
    for (size_t n : kSizes)
      for (float s : {1.0f, 0.3f, 1.0f / 7.0f, 2.5e-3f}) {
        const std::vector<float> w = weights_with_ties(n, uint32_t(n));
        std::vector<float> o0(n), o1(n);
        std::vector<int8_t> c0(n, 99), c1(n, 99);
        fl::kern::f32_quant_sym.variant(fl::Isa::Scalar)(w.data(), o0.data(), c0.data(), n, s, -8.0f, 7.0f);
        fl::kern::f32_quant_sym.variant(isa)(w.data(), o1.data(), c1.data(), n, s, -8.0f, 7.0f);
        size_t at = 0;
        FL_CHECK(same_bits(o0, o1, &at)) << fl::isa_name(isa) << " n=" << n << " s=" << s << " i=" << at << " w=" << w[at]
                                         << " scalar=" << o0[at] << " simd=" << o1[at];
        FL_CHECK(c0 == c1) << fl::isa_name(isa) << " n=" << n << " s=" << s;
        // null codes: same dequantised values
        std::vector<float> o2(n);
        fl::kern::f32_quant_sym.variant(isa)(w.data(), o2.data(), nullptr, n, s, -8.0f, 7.0f);
        FL_CHECK(same_bits(o0, o2, &at)) << fl::isa_name(isa) << " codes=null n=" << n;
      }
}

FL_TEST(absmax_bits_simd_equals_scalar) {
  for (fl::Isa isa : simd_isas())
    for (size_t n : kSizes) {
      std::vector<float> w = weights_with_ties(n, 3);
      const uint32_t a = fl::kern::f32_absmax_bits.variant(fl::Isa::Scalar)(w.data(), n);
      FL_CHECK(a == fl::kern::f32_absmax_bits.variant(isa)(w.data(), n)) << fl::isa_name(isa) << " n=" << n;
      if (n) {  // the maximum in the tail, and an infinity
        w[n - 1] = -1e6f;
        FL_CHECK(fl::kern::f32_absmax_bits.variant(isa)(w.data(), n) == bits_of(1e6f)) << fl::isa_name(isa) << " n=" << n;
        w[n / 2] = -INFINITY;
        FL_CHECK(fl::kern::f32_absmax_bits.variant(isa)(w.data(), n) >= 0x7f800000u) << fl::isa_name(isa) << " n=" << n;
      }
    }
}

FL_TEST(fake_quant_weight_driver) {
  // per tensor: max|w| = 7 -> s = 1 exactly; ties at .5 go to even
  {
    const float w[] = {7.0f, -2.5f, 3.5f, 0.49f, -7.0f, 0.5f};
    float out[6], scale;
    int8_t codes[6];
    FL_CHECK(fl::fake_quant_weight(w, out, codes, &scale, 6, 4, 1));
    FL_CHECK(scale == 1.0f) << scale;
    const int8_t want[] = {7, -2, 4, 0, -7, 0};
    for (int i = 0; i < 6; ++i) FL_CHECK(codes[i] == want[i]) << i << ": " << int(codes[i]);
  }
  // per channel: each row gets its own scale; all-zero row -> scale 1
  {
    const float w[] = {3.5f, -1.75f, 0.0f, 0.0f, 14.0f, 3.0f};
    float out[6], scales[3];
    int8_t codes[6];
    FL_CHECK(fl::fake_quant_weight(w, out, codes, scales, 6, 4, 3));
    FL_CHECK(scales[0] == 0.5f && scales[1] == 1.0f && scales[2] == 2.0f)
        << scales[0] << " " << scales[1] << " " << scales[2];
    const int8_t want[] = {7, -4, 0, 0, 7, 2};  // -1.75/0.5 = -3.5 -> -4 (even); 3/2 = 1.5 -> 2
    for (int i = 0; i < 6; ++i) FL_CHECK(codes[i] == want[i]) << i << ": " << int(codes[i]);
    FL_CHECK(out[1] == -2.0f && out[5] == 4.0f) << out[1] << " " << out[5];
  }
  // 2-bit and 8-bit widths; non-finite input is refused
  {
    const float w[] = {1.0f, -1.0f, 0.5f, -0.5f};
    float out[4], s;
    int8_t c[4];
    FL_CHECK(fl::fake_quant_weight(w, out, c, &s, 4, 2, 1));  // qmax = 1
    FL_CHECK(c[0] == 1 && c[1] == -1 && c[2] == 0 && c[3] == 0) << int(c[0]) << int(c[1]) << int(c[2]) << int(c[3]);
    FL_CHECK(fl::fake_quant_weight(w, out, c, &s, 4, 8, 1));  // qmax = 127
    FL_CHECK(c[0] == 127 && c[1] == -127 && c[2] == 64 && c[3] == -64) << int(c[2]);  // 63.5 -> 64 (even)
    const float bad[] = {1.0f, NAN};
    FL_CHECK(!fl::fake_quant_weight(bad, out, c, &s, 2, 4, 1));
  }
  // every ISA and thread count: identical bits on a large multi-block tensor
  const size_t n = 3 * 70001;
  std::vector<float> w(n);
  for (size_t i = 0; i < n; ++i) w[i] = (urand(i, 11) - 0.5f) * 3.0f;
  std::vector<float> ref(n), sref(3);
  std::vector<int8_t> cref(n);
  const fl::Isa best = fl::best_isa();
  fl::set_isa(fl::Isa::Scalar);
  fl::set_num_threads(1);
  fl::fake_quant_weight(w.data(), ref.data(), cref.data(), sref.data(), n, 4, 3);
  for (int c = 0; c < 3; ++c)
    for (size_t i = 0; i < n / 3; ++i) {
      const int8_t q = cref[c * (n / 3) + i];
      FL_CHECK(q >= -7 && q <= 7) << "code " << int(q) << " outside [-7, 7]";
    }
  for (int isa = 0; isa <= static_cast<int>(best); ++isa)
    for (int th : {1, 2, 3}) {
      fl::set_isa(static_cast<fl::Isa>(isa));
      fl::set_num_threads(th);
      std::vector<float> o(n), s(3);
      std::vector<int8_t> c(n);
      FL_CHECK(fl::fake_quant_weight(w.data(), o.data(), c.data(), s.data(), n, 4, 3));
      size_t at = 0;
      FL_CHECK(same_bits(o, ref, &at) && c == cref && s == sref) << "isa=" << isa << " threads=" << th << " i=" << at;
    }
  fl::set_isa(best);
  fl::set_num_threads(2);
}

FL_TEST(relu_fakequant_scalar_hand_values) {
  // r = 15, 4 bits -> s = 1 exactly
  const float x[] = {-1.0f, -0.0f, 0.0f, 0.5f, 1.5f, 2.5f, 14.5f, 15.0f, 15.25f, 15.5f, 100.0f, NAN, INFINITY, -INFINITY};
  const float wy[] = {0, 0, 0, 0, 2, 2, 14, 15, 15, 15, 15, 0, 15, 0};
  const uint8_t wm[] = {0, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0};
  float y[14];
  uint8_t m[14], c[14];
  const int32_t key = fl::kern::f32_relu_fakequant.variant(fl::Isa::Scalar)(x, y, m, c, 14, 1.0f, 15.0f, 15.0f, true);
  for (int i = 0; i < 14; ++i) {
    FL_CHECK(float(c[i]) == wy[i]) << "i=" << i << " x=" << x[i] << " code=" << int(c[i]);
    FL_CHECK(bits_of(y[i]) == bits_of(wy[i])) << "i=" << i << " x=" << x[i] << " y=" << y[i];
    FL_CHECK(m[i] == wm[i]) << "i=" << i << " x=" << x[i] << " mask=" << int(m[i]);
  }
  FL_CHECK(std::isnan(fl::order_key_to_float(key)));  // NaN input -> NaN max
  // max before clipping, -0 < +0, plain ReLU mode
  const float x2[] = {-3.0f, 42.0f, -0.0f};
  const int32_t k2 = fl::kern::f32_relu_fakequant.variant(fl::Isa::Scalar)(x2, y, m, nullptr, 3, 1.0f, 15.0f, 15.0f, false);
  FL_CHECK(fl::order_key_to_float(k2) == 42.0f);
  FL_CHECK(y[0] == 0.0f && y[1] == 42.0f && bits_of(y[2]) == 0u && m[0] == 0 && m[1] == 1 && m[2] == 0);
  const float x3[] = {-0.0f, -5.0f};
  FL_CHECK(bits_of(fl::relu_fake_quant(x3, y, m, nullptr, 2, 4, 1.0f)) == bits_of(-0.0f));
  const float x4[] = {-0.0f, 0.0f};
  FL_CHECK(bits_of(fl::relu_fake_quant(x4, y, m, nullptr, 2, 4, 1.0f)) == 0u);
  FL_CHECK(fl::relu_fake_quant(x4, y, m, nullptr, 0, 4, 1.0f) == -INFINITY);
}

FL_TEST(relu_fakequant_simd_equals_scalar) {
  static const float special[] = {NAN, -NAN, INFINITY, -INFINITY, -0.0f, 0.0f, 1.5f, 2.5f, 15.0f, 15.5f, 1e-42f, -1e-42f};
  for (fl::Isa isa : simd_isas())
    for (size_t n : kSizes)
      for (int bits : {0, 1, 4, 8}) {
        for (float r : {15.0f, 2.7f, 6.0f}) {
          std::vector<float> x(n);
          for (size_t i = 0; i < n; ++i)
            x[i] = (i % 5 == 2) ? special[(i / 5) % 12] : (urand(i, uint32_t(n + bits)) - 0.4f) * 2.5f * r;
          if (n > 4 && r == 6.0f)  // ties at .5 of the step s = 6/15 = 0.4f: x = (k + 0.5) * s
            for (size_t i = 0; i < n; i += 4) x[i] = (float(i % 15) + 0.5f) * (6.0f / 15.0f);
          const float levels = bits ? float((1u << bits) - 1u) : 1.0f, s = bits ? r / levels : 1.0f;
          std::vector<float> y0(n), y1(n);
          std::vector<uint8_t> m0(n, 7), m1(n, 9), c0(n, 3), c1(n, 5);
          uint8_t* cp0 = bits > 0 ? c0.data() : nullptr;
          uint8_t* cp1 = bits > 0 ? c1.data() : nullptr;
          const int32_t k0 = fl::kern::f32_relu_fakequant.variant(fl::Isa::Scalar)(x.data(), y0.data(), m0.data(), cp0, n,
                                                                                  s, levels, r, bits > 0);
          const int32_t k1 =
              fl::kern::f32_relu_fakequant.variant(isa)(x.data(), y1.data(), m1.data(), cp1, n, s, levels, r, bits > 0);
          size_t at = 0;
          FL_CHECK(same_bits(y0, y1, &at)) << fl::isa_name(isa) << " n=" << n << " bits=" << bits << " r=" << r
                                           << " i=" << at << " x=" << x[at] << " " << y0[at] << " vs " << y1[at];
          FL_CHECK(m0 == m1) << fl::isa_name(isa) << " n=" << n << " bits=" << bits;
          FL_CHECK(k0 == k1) << fl::isa_name(isa) << " n=" << n << " key " << k0 << " vs " << k1;
          if (bits > 0) {
            FL_CHECK(c0 == c1) << fl::isa_name(isa) << " codes n=" << n << " bits=" << bits;
            for (size_t i = 0; i < n; ++i)  // the code is the quantised value's multiple of s
              FL_CHECK(bits_of(y0[i]) == bits_of(s * float(c0[i]))) << "n=" << n << " bits=" << bits << " i=" << i;
          }
          // in place (y aliases x), no mask
          std::vector<float> xy = x;
          fl::kern::f32_relu_fakequant.variant(isa)(xy.data(), xy.data(), nullptr, nullptr, n, s, levels, r, bits > 0);
          FL_CHECK(same_bits(y0, xy, &at)) << fl::isa_name(isa) << " in place n=" << n;
        }
      }
}

FL_TEST(masked_grad_and_count_zeros_simd_equal_scalar) {
  for (fl::Isa isa : simd_isas())
    for (size_t n : kSizes) {
      std::vector<float> dy(n), x(n);
      std::vector<uint8_t> m(n);
      for (size_t i = 0; i < n; ++i) {
        dy[i] = urand(i, 21) - 0.5f;
        m[i] = uint8_t(i % 3 == 0 ? 0 : (i % 3 == 1 ? 1 : 200));
        x[i] = (i % 4 == 0) ? 0.0f : (i % 7 == 0 ? -0.0f : urand(i, 22));
      }
      std::vector<float> d0(n), d1(n);
      fl::kern::f32_masked_grad.variant(fl::Isa::Scalar)(dy.data(), m.data(), d0.data(), n);
      fl::kern::f32_masked_grad.variant(isa)(dy.data(), m.data(), d1.data(), n);
      size_t at = 0;
      FL_CHECK(same_bits(d0, d1, &at)) << fl::isa_name(isa) << " n=" << n << " i=" << at;
      for (size_t i = 0; i < n; ++i) FL_CHECK(d0[i] == (m[i] ? dy[i] : 0.0f)) << i;
      const size_t z = fl::kern::f32_count_zeros.variant(fl::Isa::Scalar)(x.data(), n);
      FL_CHECK(z == fl::kern::f32_count_zeros.variant(isa)(x.data(), n)) << fl::isa_name(isa) << " n=" << n;
      FL_CHECK(z == size_t(std::count(x.begin(), x.end(), 0.0f))) << n;
    }
}

FL_TEST(pack_unpack_simd_equal_scalar_and_layout) {
  // layout: element i at byte i >> 1, low nibble for even i
  const int8_t c4[] = {-8, 7, 1, -1, 0, 5, -3};
  uint8_t p[4];
  fl::kern::s8_pack_int.variant(fl::Isa::Scalar)(c4, 7, 4, p);
  FL_CHECK(p[0] == 0x78 && p[1] == 0xF1 && p[2] == 0x50 && p[3] == 0x0D)
      << std::hex << int(p[0]) << " " << int(p[1]) << " " << int(p[2]) << " " << int(p[3]);
  const int8_t c2[] = {-2, 1, 0, -1, 1};
  fl::kern::s8_pack_int.variant(fl::Isa::Scalar)(c2, 5, 2, p);
  FL_CHECK(p[0] == (2 | 1 << 2 | 0 << 4 | 3 << 6) && p[1] == 1) << std::hex << int(p[0]) << " " << int(p[1]);
  for (int bits : {2, 4, 8}) {
    const int lo = -(1 << (bits - 1)), hi = (1 << (bits - 1)) - 1;
    for (size_t n : kSizes) {
      std::vector<int8_t> codes(n);
      for (size_t i = 0; i < n; ++i) codes[i] = int8_t(lo + int(urand(i, uint32_t(bits)) * float(hi - lo + 1)) % (hi - lo + 1));
      if (n > 1) { codes[0] = int8_t(lo); codes[n - 1] = int8_t(hi); }
      const size_t nb = fl::packed_bytes(n, bits);
      std::vector<uint8_t> p0(nb + 1, 0xAA), p1(nb + 1, 0x55);
      fl::kern::s8_pack_int.variant(fl::Isa::Scalar)(codes.data(), n, bits, p0.data());
      std::vector<int8_t> u0(n);
      fl::kern::u8_unpack_int.variant(fl::Isa::Scalar)(p0.data(), n, bits, u0.data());
      FL_CHECK(u0 == codes) << "scalar round trip bits=" << bits << " n=" << n;
      FL_CHECK(p0[nb] == 0xAA) << "wrote past the end bits=" << bits << " n=" << n;
      for (fl::Isa isa : simd_isas()) {
        if (!fl::kern::s8_pack_int.variant(isa)) continue;
        fl::kern::s8_pack_int.variant(isa)(codes.data(), n, bits, p1.data());
        FL_CHECK(std::equal(p0.begin(), p0.begin() + std::ptrdiff_t(nb), p1.begin()))
            << fl::isa_name(isa) << " pack bits=" << bits << " n=" << n;
        FL_CHECK(p1[nb] == 0x55) << "wrote past the end " << fl::isa_name(isa);
        std::vector<int8_t> u1(n + 1, 33);
        fl::kern::u8_unpack_int.variant(isa)(p0.data(), n, bits, u1.data());
        FL_CHECK(std::equal(u0.begin(), u0.end(), u1.begin()) && u1[n] == 33)
            << fl::isa_name(isa) << " unpack bits=" << bits << " n=" << n;
      }
      // range check: every variant finds the first offending code
      for (size_t bad : {size_t(0), n / 2, n ? n - 1 : 0}) {
        if (n == 0 || bits == 8) break;
        std::vector<int8_t> cb = codes;
        cb[bad] = int8_t(bad % 2 ? hi + 1 : lo - 1);
        FL_CHECK(fl::kern::s8_code_range.variant(fl::Isa::Scalar)(cb.data(), n, lo, hi) == bad);
        for (fl::Isa isa : simd_isas())
          if (fl::kern::s8_code_range.variant(isa))
            FL_CHECK(fl::kern::s8_code_range.variant(isa)(cb.data(), n, lo, hi) == bad)
                << fl::isa_name(isa) << " bits=" << bits << " n=" << n << " bad=" << bad;
        FL_CHECK(fl::pack_int(cb.data(), n, bits, p1.data()) == bad);
      }
    }
  }
}

FL_TEST(fault_mask_simd_equals_scalar) {
  for (fl::Isa isa : simd_isas())
    for (size_t n : kSizes)
      for (int which = 0; which < 8; ++which) {  // every null / non-null combination of the masks
        std::vector<uint8_t> src(n), f(n), a(n), b(n);
        for (size_t i = 0; i < n; ++i) {
          src[i] = uint8_t(urand(i, 31) * 256);
          f[i] = uint8_t(urand(i, 32) * 256);
          a[i] = uint8_t(urand(i, 33) * 256);
          b[i] = uint8_t(urand(i, 34) * 256);
        }
        const uint8_t* F = which & 1 ? f.data() : nullptr;
        const uint8_t* A = which & 2 ? a.data() : nullptr;
        const uint8_t* B = which & 4 ? b.data() : nullptr;
        std::vector<uint8_t> d0(n + 1, 1), d1(n + 1, 2);
        fl::kern::u8_fault_mask_apply.variant(fl::Isa::Scalar)(src.data(), F, A, B, d0.data(), n);
        fl::kern::u8_fault_mask_apply.variant(isa)(src.data(), F, A, B, d1.data(), n);
        FL_CHECK(std::equal(d0.begin(), d0.begin() + std::ptrdiff_t(n), d1.begin()) && d1[n] == 2)
            << fl::isa_name(isa) << " n=" << n << " masks=" << which;
        for (size_t i = 0; i < n; ++i) {
          const unsigned want = ((src[i] ^ (F ? f[i] : 0u)) & ~unsigned(A ? a[i] : 0u)) | (B ? b[i] : 0u);
          FL_CHECK(d0[i] == uint8_t(want)) << i;
        }
        std::vector<uint8_t> inplace = src;  // dst aliases src
        fl::kern::u8_fault_mask_apply.variant(isa)(inplace.data(), F, A, B, inplace.data(), n);
        FL_CHECK(std::equal(d0.begin(), d0.begin() + std::ptrdiff_t(n), inplace.begin())) << "in place n=" << n;
      }
}

namespace {

// Brute force: every eligible cell sorted by (key, index).
std::vector<uint32_t> brute_order(uint64_t seed, uint32_t trial, uint64_t cells, const uint8_t* eligible) {
  std::vector<std::pair<uint64_t, uint32_t>> v;
  for (uint64_t j = 0; j < cells; ++j)
    if (!eligible || eligible[j]) v.push_back({fl::rng_bits64(seed, fl::RngPurpose::FaultKey, trial, j), uint32_t(j)});
  std::sort(v.begin(), v.end());
  std::vector<uint32_t> o;
  for (auto& e : v) o.push_back(e.second);
  return o;
}

}  // namespace

FL_TEST(fault_order_equals_full_sort_any_threads) {
  for (uint64_t cells : {uint64_t(0), uint64_t(1), uint64_t(5), uint64_t(1000), uint64_t(200003)}) {
    std::vector<uint8_t> elig(cells);
    for (uint64_t j = 0; j < cells; ++j) elig[j] = (j % 4 == 1 || j % 7 == 0) ? 1 : 0;
    for (const uint8_t* e : {static_cast<const uint8_t*>(nullptr), static_cast<const uint8_t*>(elig.data())}) {
      const std::vector<uint32_t> full = brute_order(99, 3, cells, e);
      for (size_t kmax : {size_t(0), size_t(1), size_t(17), size_t(cells / 100), size_t(cells), size_t(cells + 5)})
        for (int th : {1, 2, 3}) {
          fl::set_num_threads(th);
          std::vector<uint32_t> out(kmax + 1, 0xDEADBEEF);
          const size_t k = fl::fault_order(99, 3, cells, e, kmax, out.data());
          FL_CHECK(k == std::min(kmax, full.size())) << "cells=" << cells << " kmax=" << kmax << " k=" << k;
          FL_CHECK(std::equal(out.begin(), out.begin() + std::ptrdiff_t(k), full.begin()))
              << "cells=" << cells << " kmax=" << kmax << " threads=" << th << " eligible=" << (e != nullptr);
          FL_CHECK(out[k] == 0xDEADBEEF) << "wrote past k";
        }
    }
  }
  fl::set_num_threads(2);
}

FL_TEST(fault_bernoulli_equals_brute_force) {
  const uint64_t cells = 150001;
  std::vector<uint8_t> elig(cells);
  for (uint64_t j = 0; j < cells; ++j) elig[j] = uint8_t(j % 3 != 0);
  for (double p : {0.0, 1e-4, 0.01, 0.5, 1.0})
    for (int th : {1, 2}) {
      fl::set_num_threads(th);
      std::vector<uint32_t> want;
      for (uint64_t j = 0; j < cells; ++j)
        if (elig[j] && fl::rng_uniform(5, fl::RngPurpose::FaultKey, 2, j) < p) want.push_back(uint32_t(j));
      std::vector<uint32_t> out(cells);
      const size_t k = fl::fault_select_bernoulli(5, 2, cells, elig.data(), p, out.data(), out.size());
      out.resize(k);
      FL_CHECK(out == want) << "p=" << p << " threads=" << th << " k=" << k << " want=" << want.size();
      // a short buffer still returns the full count and holds the prefix
      std::vector<uint32_t> small(3);
      FL_CHECK(fl::fault_select_bernoulli(5, 2, cells, elig.data(), p, small.data(), 3) == k);
      for (size_t i = 0; i < std::min<size_t>(3, k); ++i) FL_CHECK(small[i] == want[i]);
    }
  fl::set_num_threads(2);
}

FL_TEST(fault_order_weights_equals_brute_force) {
  // three layers: 4-bit (bits 0 and 3 eligible), 2-bit (excluded), 8-bit (all bits)
  const uint32_t ws[] = {0, 1000, 1300, 1800};
  const uint8_t lb[] = {4, 2, 8};
  const uint8_t le[] = {0x9, 0x0, 0xFF};
  const uint64_t cellStart[] = {0, 4000, 4600};
  std::vector<std::pair<uint64_t, uint32_t>> v;
  for (uint32_t w = 0; w < 1800; ++w)
    if (w < 1000 || w >= 1300) v.push_back({fl::rng_bits64(8, fl::RngPurpose::FaultKey, 4, w), w});
  std::sort(v.begin(), v.end());
  for (size_t kmax : {size_t(0), size_t(10), size_t(1500), size_t(2000)})
    for (int th : {1, 2}) {
      fl::set_num_threads(th);
      std::vector<uint32_t> out(kmax);
      const size_t k = fl::fault_order_weights(8, 4, ws, lb, le, 3, kmax, out.data());
      FL_CHECK(k == std::min(kmax, v.size())) << k;
      for (size_t i = 0; i < k; ++i) {
        const uint32_t w = v[i].second;
        const size_t l = w < 1000 ? 0 : 2;
        const double u = fl::rng_uniform(8, fl::RngPurpose::FaultCell, 4, w);
        const unsigned bit = l == 0 ? (u < 0.5 ? 0u : 3u) : unsigned(u * 8);
        const uint64_t cell = cellStart[l] + uint64_t(w - ws[l]) * lb[l] + bit;
        FL_CHECK(out[i] == cell) << "i=" << i << " w=" << w << " got " << out[i] << " want " << cell;
      }
    }
  FL_CHECK(fl::count_eligible_weights(ws, lb, le, 3) == 1500);
  FL_CHECK(fl::count_eligible_weights(ws, lb, nullptr, 3) == 1800);
  fl::set_num_threads(2);
}

FL_TEST(cells_to_mask_positions) {
  // layer 0: 3 4-bit codes = 12 cells at byte 0; layer 1: 5 2-bit codes = 10 cells at byte 2 (byte aligned)
  const uint32_t cs[] = {0, 12, 22};
  const uint32_t bs[] = {0, 2};
  uint8_t mask[5] = {0, 0, 0, 0, 0};
  const uint32_t cells[] = {0, 5, 11, 12, 21, 13};
  FL_CHECK(fl::cells_to_mask(cells, 6, cs, bs, 2, mask, 5) == 6);
  FL_CHECK(mask[0] == 0x21 && mask[1] == 0x08 && mask[2] == 0x03 && mask[3] == 0x02 && mask[4] == 0)
      << std::hex << int(mask[0]) << " " << int(mask[1]) << " " << int(mask[2]) << " " << int(mask[3]);
  const uint32_t bad[] = {3, 22};
  FL_CHECK(fl::cells_to_mask(bad, 2, cs, bs, 2, mask, 5) == 1);
}
