// Direct int4 convolution with 16 images in the vector lanes (AVX-512 VNNI, or AVX2 for weights
// of at most 4 bits), optionally fused with the max pool that follows it (contracts in
// flatenn/qengine.h).
//
// Why: LeNet-5's convolutions have few input taps (K = 25, 150) and few output channels (6, 16),
// so im2col + GEMM spends its time packing. Here lane i of every vector belongs to image i of a
// block of 16, so every operand is one aligned 64-byte load and nothing depends on the spatial
// shape (any stride, padding, kernel, pool).
//
// Layouts of one task (a block of 16 images; lanes of missing images hold zeros):
//   frame : uint8 [C][Hf][Wf][16]   zero-padded input (Hp = H + 2p, Wq = W + 2p, Hf = Hp + 3 if
//                                   a V plane is used, Wf = Wq + 3 if an H plane is: the extra
//                                   rows / columns are zeros read by groups of fewer than 4 taps)
//   plane : uint8 [Hp*Wq][16][4]    per position (R, C) and image, the 4 bytes one vpdpbusd
//                                   lane multiplies with 4 weight codes:
//             H  (channel c)        x[c][R][C..C+3]
//             V  (channel c)        x[c][R..R+3][C]
//             Cq (channels c..c+3)  x[c..c+3][R][C]      (channels past C: weight 0)
// A tap group is a plane + a kernel offset (i0, j0) + one dword of 4 weight codes per output
// channel (0 where the group has fewer than 4 taps). Every tap (c, i, j) lies in exactly one
// group, chosen by a cost model (planes cost shuffles, groups cost vpdpbusd), so
//   acc[n](pixel) = sum over groups g of dot4(plane_g[pos(pixel) + off_g], w_g[n])   (exact int32)
// is the convolution.
//
// Fused max pool (k x k windows, stride k, tiling the conv output exactly): the vectors of a
// tile are pool outputs, computed phase by phase (the k*k window positions). Requantisation is monotone in acc for a
// fixed channel (non-decreasing if scale >= 0 or NaN, non-increasing if scale < 0), so
//   max over the window of codes(acc) = codes(max over the window of acc ^ m)   (m = -1 if scale < 0)
// and only the pooled accumulator is requantised. Zero codes (sparsity counts every pre-pool
// code) are counted per phase with an integer threshold: code == 0  <=>  acc ^ m < Zt[n].
//
// Codes without a division: the thresholds of qrequant.h.
#include "flatenn/core.h"  // FL_X86
#if FL_X86
#include <immintrin.h>
#endif

#include <algorithm>
#include <array>
#include <memory>
#include <stdexcept>
#include <cmath>
#include <cstring>
#include <utility>
#include <vector>

#include "flatenn/core.h"
#include "flatenn/qengine.h"
#include "qrequant.h"

// GCC 12 warns inside avx512fintrin.h about the self-initialised "undefined" vectors of the
// masked intrinsics once they are inlined into partly unrolled loops (GCC PR 105593, fixed in 13).
#pragma GCC diagnostic ignored "-Wuninitialized"

namespace fl {
namespace {

#define FL_VNNI __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma")))

constexpr size_t kImg = 16;  // images per task = vector lanes
constexpr size_t kMaxNC = 8;  // output channels per register tile
enum PlaneType : int { kH = 0, kV = 1, kCq = 2 };

struct Plane { int type, ch; };
struct Group { int plane, i0, j0; int k[4]; };  // k: tap index (c * kh + i) * kw + j, or -1

// (the scalar spec of one code / one affine value: qrequant.h)

// ---- tap cover ---------------------------------------------------------------------------------
struct Cover {
  size_t C, kh, kw;
  std::vector<Plane> planes;
  std::vector<Group> groups;
  std::vector<int> index;  // [3][C]: plane of (type, channel), -1 if none yet
  int plane_of(int type, size_t ch) {
    if (index.empty()) index.assign(3 * C, -1);
    int& p = index[size_t(type) * C + ch];
    if (p < 0) {
      p = int(planes.size());
      planes.push_back({type, int(ch)});
    }
    return p;
  }
  int tap(size_t c, size_t i, size_t j) const { return int((c * kh + i) * kw + j); }
  void h(size_t c, size_t i, size_t j0, size_t n) {  // taps (c, i, j0 .. j0+n-1)
    Group g{plane_of(kH, c), int(i), int(j0), {-1, -1, -1, -1}};
    for (size_t t = 0; t < n; ++t) g.k[t] = tap(c, i, j0 + t);
    groups.push_back(g);
  }
  void v(size_t c, size_t i0, size_t j, size_t n) {  // taps (c, i0 .. i0+n-1, j)
    Group g{plane_of(kV, c), int(i0), int(j), {-1, -1, -1, -1}};
    for (size_t t = 0; t < n; ++t) g.k[t] = tap(c, i0 + t, j);
    groups.push_back(g);
  }
  void cq(size_t i, size_t j) {  // taps (c .. c+3, i, j) for every quad of channels
    for (size_t c0 = 0; c0 < C; c0 += 4) {
      Group g{plane_of(kCq, c0), int(i), int(j), {-1, -1, -1, -1}};
      for (size_t t = 0; t < 4 && c0 + t < C; ++t) g.k[t] = tap(c0 + t, i, j);
      groups.push_back(g);
    }
  }
};

// Strategies: full runs of 4 columns as H groups, the remaining columns by `rest`
// (0: V runs of 4 rows, leftover rows as Cq; 1: V runs, leftover as partial H; 2: Cq;
// 3: partial H; 4: partial V), or (5) everything as channel quads.
Cover make_cover(size_t C, size_t kh, size_t kw, int strategy) {
  Cover cv{C, kh, kw, {}, {}, {}};
  if (strategy == 5) {
    for (size_t i = 0; i < kh; ++i)
      for (size_t j = 0; j < kw; ++j) cv.cq(i, j);
    return cv;
  }
  const size_t kw4 = kw / 4 * 4, kh4 = kh / 4 * 4;
  for (size_t c = 0; c < C; ++c)
    for (size_t i = 0; i < kh; ++i)
      for (size_t j = 0; j < kw4; j += 4) cv.h(c, i, j, 4);
  if (kw4 == kw) return cv;
  switch (strategy) {
    case 0: case 1:
      for (size_t c = 0; c < C; ++c)
        for (size_t j = kw4; j < kw; ++j)
          for (size_t i = 0; i < kh4; i += 4) cv.v(c, i, j, 4);
      if (kh4 < kh) {
        if (strategy == 0) {
          for (size_t i = kh4; i < kh; ++i)
            for (size_t j = kw4; j < kw; ++j) cv.cq(i, j);
        } else {
          for (size_t c = 0; c < C; ++c)
            for (size_t i = kh4; i < kh; ++i) cv.h(c, i, kw4, kw - kw4);
        }
      }
      break;
    case 2:
      for (size_t i = 0; i < kh; ++i)
        for (size_t j = kw4; j < kw; ++j) cv.cq(i, j);
      break;
    case 3:
      for (size_t c = 0; c < C; ++c)
        for (size_t i = 0; i < kh; ++i) cv.h(c, i, kw4, kw - kw4);
      break;
    default:
      for (size_t c = 0; c < C; ++c)
        for (size_t j = kw4; j < kw; ++j)
          for (size_t i = 0; i < kh; i += 4) cv.v(c, i, j, std::min<size_t>(4, kh - i));
      break;
  }
  return cv;
}

// Groups and planes of each type that make_cover(C, kh, kw, strategy) produces.
struct CoverCounts { double groups, planesH, planesV, planesCq; };
CoverCounts cover_counts(size_t C, size_t kh, size_t kw, int strategy) {
  const double c = double(C), nq = double((C + 3) / 4);
  const size_t kw4 = kw / 4 * 4, kh4 = kh / 4 * 4, rw = kw - kw4, rh = kh - kh4;
  if (strategy == 5) return {double(kh * kw) * nq, 0, 0, nq};
  CoverCounts n{c * double(kh * (kw4 / 4)), kw4 ? c : 0, 0, 0};
  if (rw == 0) return n;
  switch (strategy) {
    case 0: case 1:
      n.groups += c * double(rw * (kh4 / 4));
      if (kh4) n.planesV = c;
      if (rh && strategy == 0) { n.groups += double(rh * rw) * nq; n.planesCq = nq; }
      if (rh && strategy == 1) { n.groups += c * double(rh); n.planesH = c; }
      break;
    case 2: n.groups += double(kh * rw) * nq; n.planesCq = nq; break;
    case 3: n.groups += c * double(kh); n.planesH = c; break;
    default: n.groups += c * double(rw * ((kh + 3) / 4)); n.planesV = c; break;
  }
  return n;
}

// Work per block of 16 images, in p0/p5 vector uops: building a position of an H plane takes one
// load and 2 shuffles, of a V / Cq plane 3 inserts and 2 shuffles; a group costs one vpdpbusd per
// output channel, pool phase and output position.
double cover_cost(const CoverCounts& n, size_t positions, size_t outputs, size_t O) {
  return double(positions) * (2 * n.planesH + 5 * (n.planesV + n.planesCq)) + n.groups * double(outputs) * double(O);
}

// ---- geometry and per-call constants -------------------------------------------------------------
struct Geo {
  size_t B, C, H, W, kh, kw, s, pad, pk, ps;
  size_t O, K, Hp, Wq, Hf, Wf, OH, OW, LH, LW, LP, Q;
};

struct Call {
  Geo g;
  QOut o;
  Cover cover;
  std::vector<int32_t> wg;      // [groups][O] dwords of 4 weight codes
  std::vector<int64_t> goff;    // [Q][groups] byte offsets in the plane buffer (plane + kernel offset + phase)
  std::vector<int64_t> lpoff;   // [LP] byte offsets of the output positions (phase 0, group offset 0)
  size_t planeBytes = 0;        // one plane: Hp * Wq * 64
  // codes
  std::vector<int32_t> zt;      // [O] zero thresholds (code == 0 <=> acc ^ m < zt)
  std::vector<int32_t> negm;    // [O] 0 or -1
  bool anyNeg = false;
  bool inBlocked = false, outBlocked = false;  // layouts (qengine.h): blocks of 16 images
  Isa isa = Isa::Avx512;        // the weights' layout: Avx512 (VNNI kernels) or Avx2
  int32_t wlo = 0, whi = 0;     // the weight codes' range (the AVX2 kernels' int16 run length)
  std::vector<uint8_t> termAt;  // [LP], with o.corr: 1 where a position of the window has a non-zero term
};

// zero_threshold: qrequant.h (shared with the pooled GEMM path of qgemm.cc).
using qrq::zero_threshold;

#if FL_X86
// ---- kernels ------------------------------------------------------------------------------------
alignas(64) const uint8_t kT44[64] = {0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15,  // per 128-bit lane
                                      0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15,
                                      0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15,
                                      0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15};

// 4x4 transpose of dwords (lane x dword) and of bytes within each lane.
FL_VNNI inline __m512i perm_t44() { return _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15); }
FL_VNNI inline __m512i shuf_t44() { return _mm512_load_si512(kT44); }

// F: lane t = 16 images' bytes of tap t  ->  lane q dword r byte t = byte (4q + r) of lane t
// (image 4q + r's 4 taps, the vpdpbusd operand).
FL_VNNI inline __m512i taps_to_dwords(__m512i F, __m512i pt, __m512i st) {
  return _mm512_shuffle_epi8(_mm512_permutexvar_epi32(pt, F), st);
}

// rows[r] (r < 16, nullptr = zeros): W bytes each -> frame positions dst + w * 16, byte r.
FL_VNNI void transpose_rows_in(const uint8_t* const* rows, size_t W, uint8_t* dst) {
  const __m512i pt = perm_t44(), st = shuf_t44();
  for (size_t w0 = 0; w0 < W; w0 += 16) {
    const size_t n = std::min<size_t>(16, W - w0);
    const __mmask16 lm = __mmask16((1u << n) - 1u);
    __m512i Z[4];
    for (int a = 0; a < 4; ++a) {
      __m128i r[4];
      for (int k = 0; k < 4; ++k) {
        const uint8_t* p = rows[4 * a + k];
        r[k] = p ? _mm_maskz_loadu_epi8(lm, p + w0) : _mm_setzero_si128();
      }
      __m512i z = _mm512_castsi128_si512(r[0]);
      z = _mm512_inserti32x4(z, r[1], 1);
      z = _mm512_inserti32x4(z, r[2], 2);
      z = _mm512_inserti32x4(z, r[3], 3);
      Z[a] = _mm512_permutexvar_epi32(pt, z);  // lane j dword k = row 4a+k, columns 4j..4j+3
    }
    const __m512i t0 = _mm512_shuffle_i32x4(Z[0], Z[1], 0x44), t1 = _mm512_shuffle_i32x4(Z[0], Z[1], 0xEE);
    const __m512i t2 = _mm512_shuffle_i32x4(Z[2], Z[3], 0x44), t3 = _mm512_shuffle_i32x4(Z[2], Z[3], 0xEE);
    const __m512i Y[4] = {_mm512_shuffle_i32x4(t0, t2, 0x88), _mm512_shuffle_i32x4(t0, t2, 0xDD),
                          _mm512_shuffle_i32x4(t1, t3, 0x88), _mm512_shuffle_i32x4(t1, t3, 0xDD)};
    for (size_t j = 0; 4 * j < n; ++j) {
      // Y[j] lane a dword k = row 4a+k, columns 4j..4j+3 -> lane t = column 4j+t, byte r = row r
      const __m512i T = _mm512_permutexvar_epi32(pt, _mm512_shuffle_epi8(Y[j], st));
      const size_t cols = std::min<size_t>(4, n - 4 * j);
      const __mmask16 sm = __mmask16((1u << (4 * cols)) - 1u);
      _mm512_mask_storeu_epi32(dst + (w0 + 4 * j) * 16, sm, T);
    }
  }
}

// Staging [16 elements][16 images] at src -> image rows: out[img][0 .. n) (n <= 16).
FL_VNNI void transpose_out16(const uint8_t* src, size_t n, uint8_t* const* out, size_t nimg) {
  const __m512i pt = perm_t44(), st = shuf_t44();
  __m512i Z[4];
  for (int a = 0; a < 4; ++a) Z[a] = _mm512_permutexvar_epi32(pt, _mm512_loadu_si512(src + 64 * a));
  const __m512i t0 = _mm512_shuffle_i32x4(Z[0], Z[1], 0x44), t1 = _mm512_shuffle_i32x4(Z[0], Z[1], 0xEE);
  const __m512i t2 = _mm512_shuffle_i32x4(Z[2], Z[3], 0x44), t3 = _mm512_shuffle_i32x4(Z[2], Z[3], 0xEE);
  const __m512i Y[4] = {_mm512_shuffle_i32x4(t0, t2, 0x88), _mm512_shuffle_i32x4(t0, t2, 0xDD),
                        _mm512_shuffle_i32x4(t1, t3, 0x88), _mm512_shuffle_i32x4(t1, t3, 0xDD)};
  alignas(64) uint8_t t[4][64];
  for (size_t j = 0; 4 * j < nimg; ++j) _mm512_store_si512(t[j], _mm512_permutexvar_epi32(pt, _mm512_shuffle_epi8(Y[j], st)));
  if (n == 16) {
    for (size_t i = 0; i < nimg; ++i) std::memcpy(out[i], &t[i / 4][16 * (i % 4)], 16);
  } else {
    const __mmask16 m = __mmask16((1u << n) - 1u);
    for (size_t i = 0; i < nimg; ++i) _mm_mask_storeu_epi8(out[i], m, _mm_load_si128(reinterpret_cast<const __m128i*>(&t[i / 4][16 * (i % 4)])));
  }
}

// Staging [n <= 16 elements][16 images] of int32 at src -> image rows out[img][0 .. n): a 16 x 16
// dword transpose (unpacks by 32 and 64 bits, then two rounds of 128-bit lane shuffles).
FL_VNNI void transpose_out32(const int32_t* src, size_t n, int32_t* const* out, size_t nimg) {
  __m512i r[16], u[16], v[16];
  for (size_t e = 0; e < 16; ++e) r[e] = e < n ? _mm512_loadu_si512(src + 16 * e) : _mm512_setzero_si512();
  for (int p = 0; p < 8; ++p) { u[2 * p] = _mm512_unpacklo_epi32(r[2 * p], r[2 * p + 1]); u[2 * p + 1] = _mm512_unpackhi_epi32(r[2 * p], r[2 * p + 1]); }
  for (int q = 0; q < 4; ++q) {  // v[4q + m], 128-bit lane L: image 4L + m, elements 4q .. 4q + 3
    v[4 * q] = _mm512_unpacklo_epi64(u[4 * q], u[4 * q + 2]);
    v[4 * q + 1] = _mm512_unpackhi_epi64(u[4 * q], u[4 * q + 2]);
    v[4 * q + 2] = _mm512_unpacklo_epi64(u[4 * q + 1], u[4 * q + 3]);
    v[4 * q + 3] = _mm512_unpackhi_epi64(u[4 * q + 1], u[4 * q + 3]);
  }
  const __mmask16 m = __mmask16((1u << n) - 1u);
  for (int mm = 0; mm < 4; ++mm) {
    const __m512i x = _mm512_shuffle_i32x4(v[mm], v[4 + mm], 0x88), y = _mm512_shuffle_i32x4(v[mm], v[4 + mm], 0xDD);
    const __m512i x2 = _mm512_shuffle_i32x4(v[8 + mm], v[12 + mm], 0x88), y2 = _mm512_shuffle_i32x4(v[8 + mm], v[12 + mm], 0xDD);
    const __m512i img[4] = {_mm512_shuffle_i32x4(x, x2, 0x88), _mm512_shuffle_i32x4(y, y2, 0x88), _mm512_shuffle_i32x4(x, x2, 0xDD),
                            _mm512_shuffle_i32x4(y, y2, 0xDD)};  // images mm, 4 + mm, 8 + mm, 12 + mm
    for (int L = 0; L < 4; ++L) {
      const size_t i = size_t(4 * L + mm);
      if (i < nimg) _mm512_mask_storeu_epi32(out[i], m, img[L]);
    }
  }
}

// One plane, all Hp x Wq positions.
FL_VNNI void build_plane(const Call& cl, const Plane& pl, const uint8_t* frame, uint8_t* dst) {
  const Geo& g = cl.g;
  const __m512i pt = perm_t44(), st = shuf_t44();
  const size_t rowB = g.Wf * 16, chB = g.Hf * rowB;
  if (pl.type == kH) {
    const uint8_t* src = frame + size_t(pl.ch) * chB;
    for (size_t R = 0; R < g.Hp; ++R)
      for (size_t C = 0; C < g.Wq; ++C, dst += 64)
        _mm512_store_si512(dst, taps_to_dwords(_mm512_loadu_si512(src + R * rowB + C * 16), pt, st));
    return;
  }
  if (pl.type == kCq && chB == 16 && size_t(pl.ch) + 4 <= g.C) {  // 1 x 1 frames: the 4 channels are adjacent
    _mm512_store_si512(dst, taps_to_dwords(_mm512_loadu_si512(frame + size_t(pl.ch) * 16), pt, st));
    return;
  }
  const uint8_t* s[4];
  for (size_t t = 0; t < 4; ++t)
    s[t] = pl.type == kV ? frame + size_t(pl.ch) * chB + t * rowB : frame + std::min<size_t>(size_t(pl.ch) + t, g.C - 1) * chB;
  for (size_t R = 0; R < g.Hp; ++R)
    for (size_t C = 0; C < g.Wq; ++C, dst += 64) {
      const size_t off = R * rowB + C * 16;
      __m512i F = _mm512_castsi128_si512(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s[0] + off)));
      F = _mm512_inserti32x4(F, _mm_loadu_si128(reinterpret_cast<const __m128i*>(s[1] + off)), 1);
      F = _mm512_inserti32x4(F, _mm_loadu_si128(reinterpret_cast<const __m128i*>(s[2] + off)), 2);
      F = _mm512_inserti32x4(F, _mm_loadu_si128(reinterpret_cast<const __m128i*>(s[3] + off)), 3);
      _mm512_store_si512(dst, taps_to_dwords(F, pt, st));
    }
}

// acc[c][v] = sum over groups of dot4(pb[v][go[g]], w[g * O + c]): NV aligned loads, NC
// broadcasts and NC * NV vpdpbusd per group, the accumulators in registers (every loop over them
// unrolled; not inlined, so the register allocation of this loop stays clean), stored to `out`.
template <int NC, int NV>
FL_VNNI __attribute__((noinline)) void mac_tile(const uint8_t* const* pb, const int64_t* go, const int32_t* w, size_t ng,
                                                size_t O, __m512i* out) {
  __m512i acc[NC][NV];
#pragma GCC unroll 16
  for (int c = 0; c < NC; ++c)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[c][v] = _mm512_setzero_si512();
  for (size_t gi = 0; gi < ng; ++gi, w += O) {
    const int64_t off = go[gi];
    __m512i a[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) a[v] = _mm512_load_si512(pb[v] + off);
#pragma GCC unroll 16
    for (int c = 0; c < NC; ++c) {
      const __m512i wv = _mm512_set1_epi32(w[c]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[c][v] = _mm512_dpbusd_epi32(acc[c][v], a[v], wv);
    }
  }
#pragma GCC unroll 16
  for (int c = 0; c < NC; ++c)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) _mm512_store_si512(out + c * NV + v, acc[c][v]);
}

// One codes tile: channels [n0, n0 + NC) x NV output positions (pb), every pool phase:
// accumulate (registers), then per lane x = acc ^ m (m = -1 for channels with a negative scale,
// only if NEG), count x < zt (the zero codes), best = max(best, x) (best in memory); finally the
// codes of best, the NV positions of a channel packed into one store at dst + c * LP * 16.
template <int NC, int NV, bool NEG>
FL_VNNI __attribute__((noinline)) void codes_tile(const Call& cl, const uint8_t* const* pb, size_t n0, const __mmask16* real,
                                                  size_t nvalid, __m512i* best, __m512i* cnt, uint8_t* dst) {
  const Geo& g = cl.g;
  const size_t ng = cl.cover.groups.size(), O = g.O;
  const int32_t* negm = cl.negm.data() + n0;
  const int32_t* zt = cl.zt.data() + n0;
  const __m512i ones = _mm512_set1_epi32(-1);
  alignas(64) __m512i acc[NC * NV];
  for (size_t q = 0; q < g.Q; ++q) {
    mac_tile<NC, NV>(pb, cl.goff.data() + q * ng, cl.wg.data() + n0, ng, O, acc);
    __m512i cv = *cnt;
#pragma GCC unroll 16
    for (int c = 0; c < NC; ++c) {
      const __m512i z = _mm512_set1_epi32(zt[c]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        const __m512i x = NEG ? _mm512_xor_si512(acc[c * NV + v], _mm512_set1_epi32(negm[c])) : acc[c * NV + v];
        cv = _mm512_mask_sub_epi32(cv, _mm512_mask_cmplt_epi32_mask(real[v], x, z), cv, ones);
        best[c * NV + v] = q == 0 ? x : _mm512_max_epi32(best[c * NV + v], x);
      }
    }
    *cnt = cv;
  }
  const __m512i pt = perm_t44();
  const __mmask16 keep = __mmask16((1u << (4 * nvalid)) - 1u);
  const double inv = qrq::inv_of(cl.o);
  for (int c = 0; c < NC; ++c) {
    const double s = cl.o.scale[n0 + c], bi = cl.o.bias[n0 + c];
    __m512i qv[4] = {_mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512()};
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      __m512i b = best[c * NV + v];
      if (NEG) b = _mm512_xor_si512(b, _mm512_set1_epi32(negm[c]));
      qv[v] = qrq::codes16(qrq::affine16(b, s, bi), inv, cl.o.levels);
    }
    // 128-bit lane l of the packed bytes: images 4l..4l+3 of positions 0..3 (a dword each);
    // the 4x4 dword transpose puts position v's 16 images at bytes 16 v .. 16 v + 15
    const __m512i packed = _mm512_packus_epi16(_mm512_packus_epi32(qv[0], qv[1]), _mm512_packus_epi32(qv[2], qv[3]));
    _mm512_mask_storeu_epi32(dst + size_t(c) * g.LP * kImg, keep, _mm512_permutexvar_epi32(pt, packed));
  }
}

// The same with a per-position term (o.corr: the input layer's border correction, DESIGN §1):
// y = fl(fl(fl(scale * acc) + bias) + corr[n][p]) for each conv position p of each phase; the
// term differs within a pool window, so the window's maximum is taken over y (codes are
// non-decreasing in y for every scale sign) and zero codes are counted per phase from the codes.
template <int NC, int NV>
FL_VNNI __attribute__((noinline)) void codes_tile_corr(const Call& cl, const uint8_t* const* pb, size_t n0, const __mmask16* real,
                                                       size_t nvalid, size_t l0, __m512i* cnt, uint8_t* dst) {
  const Geo& g = cl.g;
  const size_t ng = cl.cover.groups.size(), O = g.O, P = g.OH * g.OW;
  const __m512i ones = _mm512_set1_epi32(-1);
  alignas(64) __m512i acc[NC * NV];
  qrq::Y16 best[NC * NV];
  const double inv = qrq::inv_of(cl.o);
  size_t base[NV];  // conv position of phase 0 of each tile position
  for (int v = 0; v < NV; ++v) {
    const size_t lp = l0 + size_t(v) < g.LP ? l0 + size_t(v) : g.LP - 1;
    base[v] = (lp / g.LW) * g.ps * g.OW + (lp % g.LW) * g.ps;
  }
  for (size_t q = 0; q < g.Q; ++q) {
    const size_t off = (q / g.pk) * g.OW + q % g.pk;
    mac_tile<NC, NV>(pb, cl.goff.data() + q * ng, cl.wg.data() + n0, ng, O, acc);
    __m512i cv = *cnt;
    for (int c = 0; c < NC; ++c) {
      const double s = cl.o.scale[n0 + c], bi = cl.o.bias[n0 + c];
      const double* corr = cl.o.corr + (n0 + size_t(c)) * P;
      for (int v = 0; v < NV; ++v) {
        const qrq::Y16 y = qrq::add16(qrq::affine16(acc[c * NV + v], s, bi), corr[base[v] + off]);
        cv = _mm512_mask_sub_epi32(cv, real[v] & qrq::zero16(y, inv), cv, ones);
        best[c * NV + v] = q == 0 ? y : qrq::max16(best[c * NV + v], y);  // (codes are non-decreasing in y; NaN: code 0)
      }
    }
    *cnt = cv;
  }
  const __m512i pt = perm_t44();
  const __mmask16 keep = __mmask16((1u << (4 * nvalid)) - 1u);
  for (int c = 0; c < NC; ++c) {
    __m512i qv[4] = {_mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512()};
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v)
      qv[v] = qrq::codes16(best[c * NV + v], inv, cl.o.levels);
    const __m512i packed = _mm512_packus_epi16(_mm512_packus_epi32(qv[0], qv[1]), _mm512_packus_epi32(qv[2], qv[3]));
    _mm512_mask_storeu_epi32(dst + size_t(c) * g.LP * kImg, keep, _mm512_permutexvar_epi32(pt, packed));
  }
}

// Positions [lp0, lp1) of channels [n0, n0 + NC), NV at a time ((lp1 - lp0) % NV == 0).
// Staging: element (n, lp) of image i at (n * LP + lp) * 16 + i.
template <int NC, int NV, bool NEG>
FL_VNNI void run_tiles(const Call& cl, const uint8_t* planes, size_t n0, __mmask16 valid, size_t lp0, size_t lp1, uint8_t* st8,
                       int32_t* st32, __m512i* cnt) {
  const size_t ng = cl.cover.groups.size(), O = cl.g.O, LP = cl.g.LP;
  if (cl.o.mode != QOutMode::Codes) {  // Int32 / Float: no pooling
    for (size_t l = lp0; l < lp1; l += NV) {
      const uint8_t* pb[NV];
      for (int v = 0; v < NV; ++v) pb[v] = planes + cl.lpoff[l + size_t(v)];
      alignas(64) __m512i acc[NC * NV];
      mac_tile<NC, NV>(pb, cl.goff.data(), cl.wg.data() + n0, ng, O, acc);
      for (int c = 0; c < NC; ++c)
        for (int v = 0; v < NV; ++v) {
          int32_t* d = st32 + ((n0 + size_t(c)) * LP + l + size_t(v)) * kImg;
          if (cl.o.mode == QOutMode::Int32) { _mm512_storeu_si512(d, acc[c * NV + v]); continue; }
          qrq::Y16 y = qrq::affine16(acc[c * NV + v], cl.o.scale[n0 + c], cl.o.bias[n0 + c]);
          if (cl.o.corr)  // per-position term (no pooling here: position = l + v)
            y = qrq::add16(y, cl.o.corr[(n0 + size_t(c)) * cl.g.OH * cl.g.OW + l + size_t(v)]);
          _mm512_storeu_ps(reinterpret_cast<float*>(d), qrq::float16(y));
        }
    }
    return;
  }
  alignas(64) __m512i best[NC * NV];
  __mmask16 real[NV];
  for (int v = 0; v < NV; ++v) real[v] = valid;
  const auto tile = codes_tile<NC, NV, NEG>;
  const auto tileCorr = codes_tile_corr<NC, NV>;
  for (size_t l = lp0; l < lp1; l += NV) {
    const uint8_t* pb[NV];
    for (int v = 0; v < NV; ++v) pb[v] = planes + cl.lpoff[l + size_t(v)];
    // a per-position term that is zero over the whole tile (inside the image) changes nothing:
    // fl(y + 0) == y, so the integer path gives the same bits
    bool term = false;
    if (cl.o.corr) for (int v = 0; v < NV; ++v) term = term || cl.termAt[l + size_t(v)];
    if (term) tileCorr(cl, pb, n0, real, NV, l, cnt, st8 + (n0 * LP + l) * kImg);
    else tile(cl, pb, n0, real, NV, best, cnt, st8 + (n0 * LP + l) * kImg);
  }
}

// Channels [n0, n0 + NC) of one task over all output positions: tiles of NV positions, the
// remainder as one narrower tile.
template <int NC, int NV, bool NEG>
FL_VNNI void run_block(const Call& cl, const uint8_t* planes, size_t n0, __mmask16 valid, uint8_t* st8, int32_t* st32,
                       int64_t* zeros) {
  const size_t LP = cl.g.LP, full = LP / NV * NV;
  __m512i cnt = _mm512_setzero_si512();
  run_tiles<NC, NV, NEG>(cl, planes, n0, valid, 0, full, st8, st32, &cnt);
  switch (LP - full) {
    case 1: if constexpr (NV > 1) run_tiles<NC, 1, NEG>(cl, planes, n0, valid, full, LP, st8, st32, &cnt); break;
    case 2: if constexpr (NV > 2) run_tiles<NC, 2, NEG>(cl, planes, n0, valid, full, LP, st8, st32, &cnt); break;
    case 3: if constexpr (NV > 3) run_tiles<NC, 3, NEG>(cl, planes, n0, valid, full, LP, st8, st32, &cnt); break;
    default: break;
  }
  *zeros += _mm512_reduce_add_epi32(cnt);
}

using BlockFn = void (*)(const Call&, const uint8_t*, size_t, __mmask16, uint8_t*, int32_t*, int64_t*);
// Register tiles: NC <= 8 channels x NV(NC) positions (24 accumulators at most), or, for outputs
// with fewer positions than that (fully connected layers: one), NC <= 16 channels x 1 position.
constexpr int nv_of(int nc) { return nc <= 6 ? 4 : 3; }
template <bool NEG, int... NC>
constexpr std::array<BlockFn, sizeof...(NC) + 1> narrow_fns(std::integer_sequence<int, NC...>) {
  return {nullptr, run_block<NC + 1, nv_of(NC + 1), NEG>...};
}
template <bool NEG, int... NC>
constexpr std::array<BlockFn, sizeof...(NC) + 1> wide_fns(std::integer_sequence<int, NC...>) {
  return {nullptr, run_block<NC + 1, 1, NEG>...};
}
constexpr size_t kWideNC = 16;
const std::array<BlockFn, kMaxNC + 1> kNarrow[2] = {narrow_fns<false>(std::make_integer_sequence<int, kMaxNC>()),
                                                    narrow_fns<true>(std::make_integer_sequence<int, kMaxNC>())};
const std::array<BlockFn, kWideNC + 1> kWide[2] = {wide_fns<false>(std::make_integer_sequence<int, kWideNC>()),
                                                   wide_fns<true>(std::make_integer_sequence<int, kWideNC>())};

uint8_t* tls_bytes(int which, size_t bytes) {
  thread_local std::vector<uint8_t> buf[4];
  // 64 bytes of alignment slack
  if (buf[which].size() < bytes + 64) buf[which].resize(bytes + 64);
  uint8_t* p = buf[which].data();
  return p + (64 - reinterpret_cast<uintptr_t>(p) % 64) % 64;
}

// The steps of one task that do not depend on the ISA's kernels (the transposes are passed in).
using RowsInFn = void (*)(const uint8_t* const* rows, size_t W, uint8_t* dst);
using Out16Fn = void (*)(const uint8_t* src, size_t n, uint8_t* const* out, size_t nimg);
using Out32Fn = void (*)(const int32_t* src, size_t n, int32_t* const* out, size_t nimg);

// 1. The zero-padded frame of block t, images in lanes (the input itself when blocked and unpadded).
const uint8_t* task_frame(const Call& cl, const uint8_t* x, size_t t, size_t nimg, RowsInFn rowsIn) {
  const Geo& g = cl.g;
  const size_t b0 = t * kImg, frameBytes = g.C * g.Hf * g.Wf * kImg;
  const size_t img = g.C * g.H * g.W;
  const bool flat = g.Hf == g.H && g.Wf == g.W;  // no padding, no margins: the frame is the block itself
  if (cl.inBlocked && flat) return x + t * img * kImg;
  uint8_t* f = tls_bytes(0, frameBytes);
  const uint8_t* rows[kImg];
  if (cl.inBlocked) {
    const uint8_t* src = x + t * img * kImg;
    std::memset(f, 0, frameBytes);
    for (size_t c = 0; c < g.C; ++c)
      for (size_t h = 0; h < g.H; ++h)
        std::memcpy(f + ((c * g.Hf + g.pad + h) * g.Wf + g.pad) * kImg, src + (c * g.H + h) * g.W * kImg, g.W * kImg);
  } else if (flat) {
    for (size_t i = 0; i < kImg; ++i) rows[i] = i < nimg ? x + (b0 + i) * img : nullptr;
    rowsIn(rows, img, f);
  } else {
    std::memset(f, 0, frameBytes);
    for (size_t c = 0; c < g.C; ++c)
      for (size_t h = 0; h < g.H; ++h) {
        for (size_t i = 0; i < kImg; ++i) rows[i] = i < nimg ? x + (b0 + i) * img + (c * g.H + h) * g.W : nullptr;
        rowsIn(rows, g.W, f + ((c * g.Hf + g.pad + h) * g.Wf + g.pad) * kImg);
      }
  }
  return f;
}
size_t task_frame_bytes(const Call& cl) {  // bytes of the frame task_frame returns
  const Geo& g = cl.g;
  return cl.inBlocked && g.Hf == g.H && g.Wf == g.W ? g.C * g.H * g.W * kImg : g.C * g.Hf * g.Wf * kImg;
}

// 3. Where the kernels write block t's [O * LP][16] outputs: the blocked output itself, or a staging buffer.
uint8_t* task_stage(const Call& cl, size_t t) {
  const size_t row = cl.g.O * cl.g.LP, elem = cl.o.mode == QOutMode::Codes ? 1 : 4;
  return cl.outBlocked ? static_cast<uint8_t*>(cl.o.data) + t * row * kImg * elem
                       : tls_bytes(2, (row + 16) * kImg * elem);  // + a chunk of slack for the transposes
}

// 4. Staging [O * LP][16] -> out [B][O * LP] (plain output): image i's output is one run of O * LP elements.
void task_unstage(const Call& cl, const uint8_t* stage, size_t t, size_t nimg, Out16Fn out16, Out32Fn out32) {
  if (cl.outBlocked) return;
  const size_t row = cl.g.O * cl.g.LP, b0 = t * kImg;
  if (cl.o.mode == QOutMode::Codes) {
    uint8_t* out = static_cast<uint8_t*>(cl.o.data) + b0 * row;
    for (size_t j0 = 0; j0 < row; j0 += 16) {
      uint8_t* dst[kImg];
      for (size_t i = 0; i < nimg; ++i) dst[i] = out + i * row + j0;
      out16(stage + j0 * kImg, std::min<size_t>(16, row - j0), dst, nimg);
    }
  } else {
    const int32_t* st32 = reinterpret_cast<const int32_t*>(stage);
    int32_t* out = static_cast<int32_t*>(cl.o.data) + b0 * row;  // float bits travel as int32
    for (size_t j0 = 0; j0 < row; j0 += 16) {
      int32_t* dst[kImg];
      for (size_t i = 0; i < nimg; ++i) dst[i] = out + i * row + j0;
      out32(st32 + j0 * kImg, std::min<size_t>(16, row - j0), dst, nimg);
    }
  }
}

// Block t: images [16 t, 16 t + nimg).
FL_VNNI void run_task(const Call& cl, const uint8_t* x, size_t t, size_t nimg, int64_t* zeros) {
  const Geo& g = cl.g;
  uint8_t* planes = tls_bytes(1, cl.planeBytes * cl.cover.planes.size());
  const uint8_t* frame = task_frame(cl, x, t, nimg, transpose_rows_in);
  // 2. planes
  for (size_t p = 0; p < cl.cover.planes.size(); ++p) build_plane(cl, cl.cover.planes[p], frame, planes + p * cl.planeBytes);
  // 3. channel blocks as even as possible
  const __mmask16 valid = __mmask16((1u << nimg) - 1u);
  const bool wide = g.LP < 3;
  const size_t maxNC = wide ? kWideNC : kMaxNC, nb = (g.O + maxNC - 1) / maxNC, per = (g.O + nb - 1) / nb;
  uint8_t* stage = task_stage(cl, t);
  for (size_t n0 = 0; n0 < g.O; n0 += per) {
    const size_t nc = std::min(per, g.O - n0);
    (wide ? kWide[cl.anyNeg][nc] : kNarrow[cl.anyNeg][nc])(cl, planes, n0, valid, stage, reinterpret_cast<int32_t*>(stage), zeros);
  }
  task_unstage(cl, stage, t, nimg, transpose_out16, transpose_out32);
}


// ---- AVX2 (no VNNI): the same planes and tap groups, 8 images per ymm ---------------------------
// A plane position is the same 64 bytes (image i's 4 taps at bytes 4i..4i+3), read as two ymm
// (images 0-7, 8-15). vpmaddubsw (u8 x s8) gives each image's two pair sums in int16; `run` groups
// (qgemm_avx2_run: the exact bound for the block's activation maximum and the weights' range) are
// summed in int16 before vpmaddwd widens them into the int32 accumulators, which live in memory
// (touched once per run). Tiles: NC <= 6 channels x 1 position (12 int16 sums, the 2 activation
// vectors and one weight broadcast: 15 of the 16 registers, no spill in the loop): six channels
// per pair of activation loads instead of four (fewer loads and calls per multiply-add). Same
// bits as the scalar spec (integer sums are exact).
#define FL_A2 __attribute__((target("avx2,fma")))

constexpr size_t kA2MaxNC = 6;

// 16 x 16 byte transpose (SSE2 unpacks): x[r] byte c -> x[c] byte r.
FL_A2 inline void transpose16(__m128i* x) {
  __m128i t[16], u[16];
  for (int i = 0; i < 8; ++i) { t[2 * i] = _mm_unpacklo_epi8(x[2 * i], x[2 * i + 1]); t[2 * i + 1] = _mm_unpackhi_epi8(x[2 * i], x[2 * i + 1]); }
  for (int q = 0; q < 4; ++q) {
    u[4 * q] = _mm_unpacklo_epi16(t[4 * q], t[4 * q + 2]);
    u[4 * q + 1] = _mm_unpackhi_epi16(t[4 * q], t[4 * q + 2]);
    u[4 * q + 2] = _mm_unpacklo_epi16(t[4 * q + 1], t[4 * q + 3]);
    u[4 * q + 3] = _mm_unpackhi_epi16(t[4 * q + 1], t[4 * q + 3]);
  }
  for (int o = 0; o < 2; ++o)
    for (int k = 0; k < 4; ++k) {
      t[8 * o + 2 * k] = _mm_unpacklo_epi32(u[8 * o + k], u[8 * o + 4 + k]);
      t[8 * o + 2 * k + 1] = _mm_unpackhi_epi32(u[8 * o + k], u[8 * o + 4 + k]);
    }
  for (int j = 0; j < 8; ++j) { x[2 * j] = _mm_unpacklo_epi64(t[j], t[8 + j]); x[2 * j + 1] = _mm_unpackhi_epi64(t[j], t[8 + j]); }
}

// rows[r] (r < 16, nullptr = zeros): W bytes each -> frame positions dst + w * 16, byte r.
FL_A2 void transpose_rows_in_a2(const uint8_t* const* rows, size_t W, uint8_t* dst) {
  for (size_t w0 = 0; w0 < W; w0 += 16) {
    const size_t n = std::min<size_t>(16, W - w0);
    __m128i x[16];
    for (int r = 0; r < 16; ++r) {
      if (!rows[r]) { x[r] = _mm_setzero_si128(); continue; }
      if (n == 16) { x[r] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[r] + w0)); continue; }
      alignas(16) uint8_t t[16] = {};
      std::memcpy(t, rows[r] + w0, n);
      x[r] = _mm_load_si128(reinterpret_cast<const __m128i*>(t));
    }
    transpose16(x);
    for (size_t c = 0; c < n; ++c) _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + (w0 + c) * 16), x[c]);
  }
}

// Staging [n <= 16 elements][16 images] at src -> image rows out[img][0 .. n).
FL_A2 void transpose_out16_a2(const uint8_t* src, size_t n, uint8_t* const* out, size_t nimg) {
  __m128i x[16];
  for (size_t e = 0; e < 16; ++e) x[e] = e < n ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 16 * e)) : _mm_setzero_si128();
  transpose16(x);
  for (size_t i = 0; i < nimg; ++i) {
    if (n == 16) { _mm_storeu_si128(reinterpret_cast<__m128i*>(out[i]), x[i]); continue; }
    alignas(16) uint8_t t[16];
    _mm_store_si128(reinterpret_cast<__m128i*>(t), x[i]);
    std::memcpy(out[i], t, n);
  }
}

// Staging [n <= 16 elements][16 images] of int32 at src -> image rows out[img][0 .. n): 8 x 8
// dword transposes per 8 elements and 8 images.
FL_A2 void transpose_out32_a2(const int32_t* src, size_t n, int32_t* const* out, size_t nimg) {
  for (size_t e0 = 0; e0 < n; e0 += 8) {
    const size_t ne = std::min<size_t>(8, n - e0);
    const __m256i keep = _mm256_cmpgt_epi32(_mm256_set1_epi32(int32_t(ne)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    for (size_t h = 0; h < 2 && 8 * h < nimg; ++h) {
      __m256 r[8];
      for (size_t e = 0; e < 8; ++e)
        r[e] = e < ne ? _mm256_loadu_ps(reinterpret_cast<const float*>(src + 16 * (e0 + e) + 8 * h)) : _mm256_setzero_ps();
      const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
      const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
      const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
      const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
      const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
      const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
      const __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
      const __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
      // image 8h + k: elements e0 .. e0 + 7
      const __m256 img[8] = {_mm256_permute2f128_ps(s0, s4, 0x20), _mm256_permute2f128_ps(s1, s5, 0x20),
                             _mm256_permute2f128_ps(s2, s6, 0x20), _mm256_permute2f128_ps(s3, s7, 0x20),
                             _mm256_permute2f128_ps(s0, s4, 0x31), _mm256_permute2f128_ps(s1, s5, 0x31),
                             _mm256_permute2f128_ps(s2, s6, 0x31), _mm256_permute2f128_ps(s3, s7, 0x31)};
      for (size_t k = 0; k < 8 && 8 * h + k < nimg; ++k) {
        float* d = reinterpret_cast<float*>(out[8 * h + k] + e0);
        if (ne == 8) _mm256_storeu_ps(d, img[k]);
        else _mm256_maskstore_ps(d, keep, img[k]);
      }
    }
  }
}

// 4 taps x 16 images (one 16-byte vector per tap) -> 64 bytes, image i's 4 taps at 4i.
FL_A2 inline void taps_store_a2(__m128i t0, __m128i t1, __m128i t2, __m128i t3, uint8_t* dst) {
  const __m128i a = _mm_unpacklo_epi8(t0, t1), b = _mm_unpackhi_epi8(t0, t1);
  const __m128i c = _mm_unpacklo_epi8(t2, t3), d = _mm_unpackhi_epi8(t2, t3);
  _mm_store_si128(reinterpret_cast<__m128i*>(dst), _mm_unpacklo_epi16(a, c));
  _mm_store_si128(reinterpret_cast<__m128i*>(dst + 16), _mm_unpackhi_epi16(a, c));
  _mm_store_si128(reinterpret_cast<__m128i*>(dst + 32), _mm_unpacklo_epi16(b, d));
  _mm_store_si128(reinterpret_cast<__m128i*>(dst + 48), _mm_unpackhi_epi16(b, d));
}

FL_A2 void build_plane_a2(const Call& cl, const Plane& pl, const uint8_t* frame, uint8_t* dst) {
  const Geo& g = cl.g;
  const size_t rowB = g.Wf * 16, chB = g.Hf * rowB;
  const uint8_t* s[4];
  for (size_t t = 0; t < 4; ++t)
    s[t] = pl.type == kH ? frame + size_t(pl.ch) * chB + t * 16
         : pl.type == kV ? frame + size_t(pl.ch) * chB + t * rowB
                         : frame + std::min<size_t>(size_t(pl.ch) + t, g.C - 1) * chB;
  const auto ld = [](const uint8_t* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); };
  for (size_t R = 0; R < g.Hp; ++R)
    for (size_t C = 0; C < g.Wq; ++C, dst += 64) {
      const size_t off = R * rowB + C * 16;
      taps_store_a2(ld(s[0] + off), ld(s[1] + off), ld(s[2] + off), ld(s[3] + off), dst);
    }
}

// t += vpmaddubsw(a, w), the sum updated in its own register (written as intrinsics, GCC 12 put
// each new sum in another register and copied it back: 8 moves and a stack store per group).
FL_A2 inline void madd16_a2(__m256i& t, __m256i a, __m256i w) {
  const __m256i p = _mm256_maddubs_epi16(a, w);
  __asm__("vpaddw %1, %0, %0" : "+x"(t) : "x"(p));
}

// acc[c][h] (images 8h .. 8h+7) += sum over groups of dot4(pb[go[g]], w[g * O + c]), int16 runs.
template <int NC>
FL_A2 __attribute__((noinline)) void mac_tile_a2(const uint8_t* pb, const int64_t* go, const int32_t* w, size_t ng, size_t O, size_t run,
                                                  __m256i* acc) {
  static_assert(NC >= 1 && NC <= 6, "at most 6 channels per tile");
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i zero = _mm256_setzero_si256();  // opaque, so no `rep stos` (see acc_avx2_s16 in qgemm.cc)
  __asm__("" : "+x"(zero));
  for (int i = 0; i < 2 * NC; ++i) acc[i] = zero;
  for (size_t g0 = 0; g0 < ng; g0 += run) {
    const size_t g1 = std::min(ng, g0 + run);
    __m256i t00 = _mm256_setzero_si256(), t01 = t00, t10 = t00, t11 = t00, t20 = t00, t21 = t00, t30 = t00, t31 = t00;
    __m256i t40 = t00, t41 = t00, t50 = t00, t51 = t00;
    const int32_t* wp = w + g0 * O;
    for (size_t gi = g0; gi < g1; ++gi, wp += O) {
      const uint8_t* a = pb + go[gi];
      const __m256i a0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(a)), a1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(a + 32));
      __m256i wv = _mm256_set1_epi32(wp[0]);
      madd16_a2(t00, a0, wv);
      madd16_a2(t01, a1, wv);
      if constexpr (NC > 1) { wv = _mm256_set1_epi32(wp[1]); madd16_a2(t10, a0, wv); madd16_a2(t11, a1, wv); }
      if constexpr (NC > 2) { wv = _mm256_set1_epi32(wp[2]); madd16_a2(t20, a0, wv); madd16_a2(t21, a1, wv); }
      if constexpr (NC > 3) { wv = _mm256_set1_epi32(wp[3]); madd16_a2(t30, a0, wv); madd16_a2(t31, a1, wv); }
      if constexpr (NC > 4) { wv = _mm256_set1_epi32(wp[4]); madd16_a2(t40, a0, wv); madd16_a2(t41, a1, wv); }
      if constexpr (NC > 5) { wv = _mm256_set1_epi32(wp[5]); madd16_a2(t50, a0, wv); madd16_a2(t51, a1, wv); }
    }
    const __m256i t[12] = {t00, t01, t10, t11, t20, t21, t30, t31, t40, t41, t50, t51};
#pragma GCC unroll 12
    for (int i = 0; i < 2 * NC; ++i) acc[i] = _mm256_add_epi32(acc[i], _mm256_madd_epi16(t[i], ones));
    __asm__ volatile("" : : "r"(acc) : "memory");  // the accumulators stay in memory
  }
}

// 16 codes (int32 in two ymm) -> 16 bytes at dst.
FL_A2 inline void store_codes16_a2(__m256i lo, __m256i hi, uint8_t* dst) {
  const __m256i p = _mm256_permute4x64_epi64(_mm256_packs_epi32(lo, hi), 0xD8);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), _mm_packus_epi16(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1)));
}

// One position (lp) of channels [n0, n0 + NC), every pool phase, codes (qrequant.h) into dst + c * LP * 16.
template <int NC, bool NEG>
FL_A2 __attribute__((noinline)) void codes_tile_a2(const Call& cl, const uint8_t* pb, size_t n0, const __m256i* vm, size_t run,
                                                    __m256i* cnt, uint8_t* dst) {
  const Geo& g = cl.g;
  const size_t ng = cl.cover.groups.size(), O = g.O;
  alignas(32) __m256i acc[2 * NC], best[2 * NC];
  for (size_t q = 0; q < g.Q; ++q) {
    mac_tile_a2<NC>(pb, cl.goff.data() + q * ng, cl.wg.data() + n0, ng, O, run, acc);
    for (int c = 0; c < NC; ++c) {
      const __m256i z = _mm256_set1_epi32(cl.zt[n0 + c]), m = _mm256_set1_epi32(cl.negm[n0 + c]);
      for (int h = 0; h < 2; ++h) {
        const __m256i x = NEG ? _mm256_xor_si256(acc[2 * c + h], m) : acc[2 * c + h];
        *cnt = _mm256_sub_epi32(*cnt, _mm256_and_si256(_mm256_cmpgt_epi32(z, x), vm[h]));  // -1 per zero code
        best[2 * c + h] = q == 0 ? x : _mm256_max_epi32(best[2 * c + h], x);
      }
    }
  }
  const double inv = qrq::inv_of(cl.o);
  for (int c = 0; c < NC; ++c) {
    const double s = cl.o.scale[n0 + c], bi = cl.o.bias[n0 + c];
    const __m256i m = _mm256_set1_epi32(NEG ? cl.negm[n0 + c] : 0);
    const __m256i lo = qrq::codes8(qrq::affine8(_mm256_xor_si256(best[2 * c], m), s, bi), inv, cl.o.levels);
    const __m256i hi = qrq::codes8(qrq::affine8(_mm256_xor_si256(best[2 * c + 1], m), s, bi), inv, cl.o.levels);
    store_codes16_a2(lo, hi, dst + size_t(c) * g.LP * kImg);
  }
}

// The same with a per-position term (o.corr): the window's maximum over y (codes are non-decreasing
// in y), zero codes counted per phase as !(fl(y * inv) > 0.5).
template <int NC>
FL_A2 __attribute__((noinline)) void codes_tile_corr_a2(const Call& cl, const uint8_t* pb, size_t n0, const __m256i* vm, size_t run,
                                                         size_t lp, __m256i* cnt, uint8_t* dst) {
  const Geo& g = cl.g;
  const size_t ng = cl.cover.groups.size(), O = g.O, P = g.OH * g.OW;
  const size_t base = (lp / g.LW) * g.ps * g.OW + (lp % g.LW) * g.ps;
  alignas(32) __m256i acc[2 * NC];
  qrq::Y8 best[2 * NC];
  const double inv = qrq::inv_of(cl.o);
  const __m256d vi = _mm256_set1_pd(inv), half = _mm256_set1_pd(0.5);
  for (size_t q = 0; q < g.Q; ++q) {
    const size_t off = (q / g.pk) * g.OW + q % g.pk;
    mac_tile_a2<NC>(pb, cl.goff.data() + q * ng, cl.wg.data() + n0, ng, O, run, acc);
    for (int c = 0; c < NC; ++c) {
      const double s = cl.o.scale[n0 + c], bi = cl.o.bias[n0 + c], cv = cl.o.corr[(n0 + size_t(c)) * P + base + off];
      for (int h = 0; h < 2; ++h) {
        qrq::Y8 y = qrq::affine8(acc[2 * c + h], s, bi);
        __asm__("" : "+x"(y.lo), "+x"(y.hi));
        y = {_mm256_add_pd(y.lo, _mm256_set1_pd(cv)), _mm256_add_pd(y.hi, _mm256_set1_pd(cv))};
        const __m256d zl = _mm256_cmp_pd(_mm256_mul_pd(y.lo, vi), half, _CMP_NGT_UQ), zh = _mm256_cmp_pd(_mm256_mul_pd(y.hi, vi), half, _CMP_NGT_UQ);
        // the two 4 x 64-bit masks as one 8 x 32-bit mask in lane order (low dword of each qword)
        const __m256i z32 = _mm256_permute4x64_epi64(_mm256_castps_si256(_mm256_shuffle_ps(_mm256_castpd_ps(zl), _mm256_castpd_ps(zh), 0x88)), 0xD8);
        *cnt = _mm256_sub_epi32(*cnt, _mm256_and_si256(z32, vm[h]));
        best[2 * c + h] = q == 0 ? y : qrq::Y8{_mm256_max_pd(best[2 * c + h].lo, y.lo), _mm256_max_pd(best[2 * c + h].hi, y.hi)};
      }
    }
  }
  for (int c = 0; c < NC; ++c)
    store_codes16_a2(qrq::codes8(best[2 * c], inv, cl.o.levels), qrq::codes8(best[2 * c + 1], inv, cl.o.levels), dst + size_t(c) * g.LP * kImg);
}

// Channels [n0, n0 + NC) of one task over all output positions.
template <int NC, bool NEG>
FL_A2 void run_block_a2(const Call& cl, const uint8_t* planes, size_t n0, size_t nimg, size_t run, uint8_t* st8, int32_t* st32,
                        int64_t* zeros) {
  const Geo& g = cl.g;
  const size_t ng = cl.cover.groups.size(), LP = g.LP;
  const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i vm[2] = {_mm256_cmpgt_epi32(_mm256_set1_epi32(int(nimg)), iota), _mm256_cmpgt_epi32(_mm256_set1_epi32(int(nimg) - 8), iota)};
  alignas(32) __m256i acc[2 * NC];
  __m256i cnt = _mm256_setzero_si256();  // zero codes per lane (exact: fewer than 2^31 per call)
  for (size_t l = 0; l < LP; ++l) {
    const uint8_t* pb = planes + cl.lpoff[l];
    if (cl.o.mode != QOutMode::Codes) {  // Int32 / Float: no pooling
      mac_tile_a2<NC>(pb, cl.goff.data(), cl.wg.data() + n0, ng, g.O, run, acc);
      for (int c = 0; c < NC; ++c) {
        int32_t* d = st32 + ((n0 + size_t(c)) * LP + l) * kImg;
        if (cl.o.mode == QOutMode::Int32) {
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(d), acc[2 * c]);
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + 8), acc[2 * c + 1]);
          continue;
        }
        const double s = cl.o.scale[n0 + c], bi = cl.o.bias[n0 + c];
        for (int h = 0; h < 2; ++h) {
          qrq::Y8 y = qrq::affine8(acc[2 * c + h], s, bi);
          if (cl.o.corr) {
            const double cv = cl.o.corr[(n0 + size_t(c)) * g.OH * g.OW + l];
            __asm__("" : "+x"(y.lo), "+x"(y.hi));
            y = {_mm256_add_pd(y.lo, _mm256_set1_pd(cv)), _mm256_add_pd(y.hi, _mm256_set1_pd(cv))};
          }
          _mm256_storeu_ps(reinterpret_cast<float*>(d + 8 * h), qrq::float8(y));
        }
      }
      continue;
    }
    uint8_t* dst = st8 + (n0 * LP + l) * kImg;
    if (cl.o.corr && cl.termAt[l]) codes_tile_corr_a2<NC>(cl, pb, n0, vm, run, l, &cnt, dst);
    else codes_tile_a2<NC, NEG>(cl, pb, n0, vm, run, &cnt, dst);
  }
  alignas(32) int32_t c[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(c), cnt);
  for (int i = 0; i < 8; ++i) *zeros += c[i];
}

using BlockFnA2 = void (*)(const Call&, const uint8_t*, size_t, size_t, size_t, uint8_t*, int32_t*, int64_t*);
template <bool NEG, int... NC>
constexpr std::array<BlockFnA2, sizeof...(NC) + 1> a2_fns(std::integer_sequence<int, NC...>) {
  return {nullptr, run_block_a2<NC + 1, NEG>...};
}
const std::array<BlockFnA2, kA2MaxNC + 1> kA2Blocks[2] = {a2_fns<false>(std::make_integer_sequence<int, kA2MaxNC>()),
                                                          a2_fns<true>(std::make_integer_sequence<int, kA2MaxNC>())};

// Block t: images [16 t, 16 t + nimg) (run_task's steps with the AVX2 kernels).
FL_A2 void run_task_a2(const Call& cl, const uint8_t* x, size_t t, size_t nimg, int64_t* zeros) {
  const Geo& g = cl.g;
  uint8_t* planes = tls_bytes(1, cl.planeBytes * cl.cover.planes.size());
  const uint8_t* frame = task_frame(cl, x, t, nimg, transpose_rows_in_a2);
  // the int16 run length for this block's activations (lanes past nimg hold zeros, or junk in a
  // blocked input: the maximum covers them too, so the bound holds for every lane)
  const int aMax = int(max_u8(frame, task_frame_bytes(cl)));
  const size_t run = size_t(std::max(1, qgemm_avx2_run(std::max(aMax, 1), cl.wlo, cl.whi)));
  for (size_t p = 0; p < cl.cover.planes.size(); ++p) build_plane_a2(cl, cl.cover.planes[p], frame, planes + p * cl.planeBytes);
  const size_t nb = (g.O + kA2MaxNC - 1) / kA2MaxNC, per = (g.O + nb - 1) / nb;
  uint8_t* stage = task_stage(cl, t);
  for (size_t n0 = 0; n0 < g.O; n0 += per) {
    const size_t nc = std::min(per, g.O - n0);
    kA2Blocks[cl.anyNeg][nc](cl, planes, n0, nimg, run, stage, reinterpret_cast<int32_t*>(stage), zeros);
  }
  task_unstage(cl, stage, t, nimg, transpose_out16_a2, transpose_out32_a2);
}
#undef FL_A2
#endif  // FL_X86
}  // namespace

bool qconv_direct_applies(const uint8_t* qw, size_t C, size_t H, size_t W, size_t kh, size_t kw, size_t stride, size_t pad,
                          size_t poolK, size_t poolStride, QOutMode mode) {
  QwHeader h;
  std::memcpy(&h, qw, sizeof h);
  // AVX-512 VNNI, or AVX2 with weights in [-8, 7] (so vpmaddubsw runs of at least 8 groups never
  // leave int16 for any uint8 activations: qgemm_avx2_run)
  const bool vnni = static_cast<Isa>(h.isa) == Isa::Avx512 && cpu_features().avx512vnni;
  const bool avx2 = static_cast<Isa>(h.isa) == Isa::Avx2 && cpu_features().avx2 && h.wlo >= -8 && h.whi <= 7;
  if (!vnni && !avx2) return false;
  if (poolK > 1 && mode != QOutMode::Codes) return false;
  const size_t Hp = H + 2 * pad, Wq = W + 2 * pad;
  if (Hp < kh || Wq < kw) return false;
  const size_t OH = conv_out(H, kh, stride, pad), OW = conv_out(W, kw, stride, pad);
  // fused pooling counts every conv output once: windows must tile the output exactly
  if (poolK > 1 && (poolStride != poolK || OH % poolK != 0 || OW % poolK != 0)) return false;
  // per-thread buffers: frame, at most C * kh * kw planes, staging
  const double planes = double(std::min<size_t>(C * kh * kw, 4 * C)) * double(Hp * Wq) * 64.0;
  const double frame = double(C) * double(Hp + 3) * double(Wq + 3) * 16.0;
  const double stage = double(h.N) * double(OH * OW + 16) * 64.0;
  return planes + frame + stage <= double(64u << 20);
}

namespace {

// The per-call constants of a layer: cover, regrouped weights, offsets, zero thresholds.
void prepare(Call& cl, size_t C, size_t H, size_t W, const uint8_t* qw, size_t kh, size_t kw, size_t stride, size_t pad,
             size_t poolK, size_t poolStride, const QOut& o) {
  QwHeader h;
  std::memcpy(&h, qw, sizeof h);
  const uint8_t* wdata = qw + kQwHeaderBytes;
  Geo& g = cl.g;
  g.C = C; g.H = H; g.W = W; g.kh = kh; g.kw = kw; g.s = stride; g.pad = pad;
  g.pk = std::max<size_t>(1, poolK); g.ps = std::max<size_t>(1, poolStride);
  g.O = h.N; g.K = C * kh * kw;
  g.Hp = H + 2 * pad; g.Wq = W + 2 * pad;
  g.OH = conv_out(H, kh, stride, pad); g.OW = conv_out(W, kw, stride, pad);
  g.LH = (g.OH - g.pk) / g.ps + 1; g.LW = (g.OW - g.pk) / g.ps + 1;
  g.LP = g.LH * g.LW; g.Q = g.pk * g.pk;
  cl.o = o;
  // tap cover with the least work
  double bestCost = 0;
  int bestS = 0;
  for (int s = 0; s <= 5; ++s) {
    const double cost = cover_cost(cover_counts(C, kh, kw, s), g.Hp * g.Wq, g.LP * g.Q, g.O);
    if (s == 0 || cost < bestCost) { bestCost = cost; bestS = s; }
  }
  cl.cover = make_cover(C, kh, kw, bestS);
  const size_t ng = cl.cover.groups.size();
  // 3 zero rows / columns past the padded input for V / H planes (taps of partial groups)
  bool anyH = false, anyV = false;
  for (const Plane& pl : cl.cover.planes) { anyH = anyH || pl.type == kH; anyV = anyV || pl.type == kV; }
  g.Hf = g.Hp + (anyV ? 3 : 0); g.Wf = g.Wq + (anyH ? 3 : 0);
  cl.planeBytes = g.Hp * g.Wq * 64;
  // weight codes transposed, [K + 1][O] (row K: zeros, for the missing taps of a group), out of
  // the AVX-512 layout [Np/8][Kp/4][8][4] or the AVX2 one [Np/4][Kp/4][4][4]; then one dword of 4
  // codes per group and channel
  const size_t O = g.O, K = g.K, K4 = h.Kp / 4, blk = static_cast<Isa>(h.isa) == Isa::Avx2 ? 4 : 8;
  cl.isa = static_cast<Isa>(h.isa);
  cl.wlo = h.wlo; cl.whi = h.whi;
  std::vector<uint8_t> codesT((K + 1) * O, 0);
  for (size_t nb = 0; nb < h.Np / blk; ++nb)
    for (size_t k4 = 0; k4 < K4; ++k4) {
      const uint8_t* src = wdata + (nb * K4 + k4) * 4 * blk;
      for (size_t c = 0; c < blk && nb * blk + c < O; ++c)
        for (size_t t = 0; t < 4 && 4 * k4 + t < K; ++t) codesT[(4 * k4 + t) * O + nb * blk + c] = src[4 * c + t];
    }
  cl.wg.resize(ng * O);
  for (size_t gi = 0; gi < ng; ++gi) {
    const int* k = cl.cover.groups[gi].k;
    const uint8_t* r[4];
    for (int t = 0; t < 4; ++t) r[t] = codesT.data() + (k[t] >= 0 ? size_t(k[t]) : K) * O;
    int32_t* d = cl.wg.data() + gi * O;
    for (size_t n = 0; n < O; ++n)
      d[n] = int32_t(uint32_t(r[0][n]) | uint32_t(r[1][n]) << 8 | uint32_t(r[2][n]) << 16 | uint32_t(r[3][n]) << 24);
  }
  cl.goff.resize(g.Q * ng);
  for (size_t di = 0; di < g.pk; ++di)
    for (size_t dj = 0; dj < g.pk; ++dj)
      for (size_t gi = 0; gi < ng; ++gi) {
        const Group& gr = cl.cover.groups[gi];
        const size_t R = di * stride + size_t(gr.i0), Cc = dj * stride + size_t(gr.j0);
        cl.goff[(di * g.pk + dj) * ng + gi] = int64_t(size_t(gr.plane) * cl.planeBytes + (R * g.Wq + Cc) * 64);
      }
  cl.lpoff.resize(g.LP);
  for (size_t u = 0; u < g.LH; ++u)
    for (size_t v = 0; v < g.LW; ++v) cl.lpoff[u * g.LW + v] = int64_t((u * g.ps * stride * g.Wq + v * g.ps * stride) * 64);
  if (o.mode == QOutMode::Codes) {
    const int64_t amax = int64_t(g.K) * 255 * 128;
    cl.zt.resize(g.O);
    cl.negm.resize(g.O);
    for (size_t n = 0; n < g.O; ++n) {
      cl.negm[n] = o.scale[n] < 0.0 ? -1 : 0;
      cl.anyNeg = cl.anyNeg || cl.negm[n] != 0;
      cl.zt[n] = zero_threshold(o.scale[n], o.bias[n], cl.negm[n], o, amax);
    }
  }
}

// Calls repeat with the same weights, scales and shapes (every batch of a trial, every trial of a
// campaign for the scales): the prepared constants of the last few layers are kept per thread,
// keyed on everything they depend on, compared byte for byte.
struct Prepared {
  size_t dims[9];
  QOutMode mode;
  uint64_t act[2];
  std::vector<uint8_t> qw;
  std::vector<uint64_t> sb;  // scale and bias bits
  Call call;
};

Call& prepared(size_t C, size_t H, size_t W, const uint8_t* qw, size_t kh, size_t kw, size_t stride, size_t pad,
                     size_t poolK, size_t poolStride, const QOut& o) {
  thread_local std::vector<std::unique_ptr<Prepared>> cache;
  QwHeader h;
  std::memcpy(&h, qw, sizeof h);
  const size_t qwBytes = kQwHeaderBytes + size_t(h.Np) * h.Kp;
  const size_t dims[9] = {C, H, W, kh, kw, stride, pad, poolK, poolStride};
  uint64_t act[2] = {0, 0};
  std::vector<uint64_t> sb;
  if (o.mode != QOutMode::Int32) {
    sb.resize(2 * size_t(h.N));
    std::memcpy(sb.data(), o.scale, 8 * size_t(h.N));
    std::memcpy(sb.data() + h.N, o.bias, 8 * size_t(h.N));
  }
  if (o.mode == QOutMode::Codes) { std::memcpy(&act[0], &o.actScale, 8); std::memcpy(&act[1], &o.levels, 8); }
  for (size_t i = 0; i < cache.size(); ++i) {
    Prepared& e = *cache[i];
    if (std::memcmp(e.dims, dims, sizeof dims) != 0 || e.mode != o.mode || e.act[0] != act[0] || e.act[1] != act[1] ||
        e.qw.size() != qwBytes || e.sb != sb || std::memcmp(e.qw.data(), qw, qwBytes) != 0)
      continue;
    std::rotate(cache.begin(), cache.begin() + long(i), cache.begin() + long(i) + 1);  // most recent first
    return cache.front()->call;
  }
  auto e = std::make_unique<Prepared>();
  std::memcpy(e->dims, dims, sizeof dims);
  e->mode = o.mode;
  e->act[0] = act[0]; e->act[1] = act[1];
  e->qw.assign(qw, qw + qwBytes);
  e->sb = std::move(sb);
  prepare(e->call, C, H, W, qw, kh, kw, stride, pad, poolK, poolStride, o);
  cache.insert(cache.begin(), std::move(e));
  if (cache.size() > 8) cache.pop_back();
  return cache.front()->call;
}

}  // namespace

int64_t qconv2d_direct_u8(const uint8_t* x, size_t B, size_t C, size_t H, size_t W, const uint8_t* qw, size_t kh, size_t kw,
                          size_t stride, size_t pad, size_t poolK, size_t poolStride, QOut o, bool inBlocked, bool outBlocked) {
  // the cached constants, with this call's pointers (this thread's cache: nothing else touches it)
  Call& cl = prepared(C, H, W, qw, kh, kw, stride, pad, poolK, poolStride, o);
  cl.g.B = B;
  cl.o = o;
  if (o.corr) {
    const Geo& g = cl.g;
    cl.termAt.assign(g.LP, 0);
    for (size_t lp = 0; lp < g.LP; ++lp)
      for (size_t q = 0; q < g.Q && !cl.termAt[lp]; ++q) {
        const size_t p = ((lp / g.LW) * g.ps + q / g.pk) * g.OW + (lp % g.LW) * g.ps + q % g.pk;
        for (size_t n = 0; n < g.O; ++n)
          if (o.corr[n * g.OH * g.OW + p] != 0.0) { cl.termAt[lp] = 1; break; }
      }
  }
  cl.inBlocked = inBlocked;
  cl.outBlocked = outBlocked;
  const size_t tasks = (B + kImg - 1) / kImg;
  std::vector<int64_t> zeros(tasks, 0);
#if FL_X86
  if (cl.isa == Isa::Avx2) parallel_for(tasks, [&](size_t t) { run_task_a2(cl, x, t, std::min(kImg, B - t * kImg), &zeros[t]); });
  else parallel_for(tasks, [&](size_t t) { run_task(cl, x, t, std::min(kImg, B - t * kImg), &zeros[t]); });
#else
  (void)x;
  throw std::logic_error("qconv2d_direct_u8: the direct kernel needs AVX-512 VNNI (qconv_direct_applies() is false here)");
#endif
  int64_t z = 0;
  for (int64_t v : zeros) z += v;
  return z;
}

#undef FL_VNNI

}  // namespace fl
