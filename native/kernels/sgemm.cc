// sgemm: C[M x N] = alpha * op(A)[M x K] * op(B)[K x N] + beta * C, row-major, op = optional
// transpose (contract in flatenn/f32.h).
//
// Variants:
//   scalar : the readable spec (row at a time, k in increasing order), and the fallback.
//   avx2   : packed, cache-blocked GEMM (BLIS/GotoBLAS structure) with a 6x16 FMA micro-kernel.
//   avx512 : the same driver with an 8x48 micro-kernel (24 zmm accumulators).
//
// Packed driver (one pass per K block of KC; both SIMD variants):
//   output tiles of MC rows x NP column panels, one parallel task each; per K block a task packs
//   A~ : the tile's rows of op(A) into MR-row panels, k-major;
//   B~ : the tile's columns of op(B) into NR-wide column panels, k-major, zero padded (skipped when
//        op(B) is B itself and only <= 2 row panels of A would reuse it: B is then read in place);
//   micro-kernel: C tile (m <= MR rows, NR columns) += A~ panel * B~ panel over one K block,
//        accumulators in registers; the first K block applies beta (beta == 0 never reads C).
// Each C element is therefore summed in K blocks of KC in increasing k, whatever the tiling,
// so threading over output tiles cannot change a bit.
// K split: when C has few micro-tiles and K is large (weight gradients: M=16, N=150, K=12800),
// K is cut into chunks whose size depends on (M, N, K) only; chunks run in parallel into private
// partial products that are then summed in chunk order: deterministic for any thread count.
#include "flatenn/core.h"  // FL_X86
#if FL_X86
#include <immintrin.h>
#endif

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>

#include "flatenn/f32.h"
#include "scratch.h"

#define FL_AVX2 __attribute__((target("avx2,fma")))
#define FL_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")))

namespace fl {
namespace {

thread_local Scratch tl_apack, tl_bpack, tl_partial;

inline int64_t ceil_div(int64_t a, int64_t b) { return ceil_div64(a, b); }

// C = beta * C (beta == 0: C = 0 without reading it). Used when alpha == 0.
void scale_c(int64_t M, int64_t N, float beta, float* C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i) {
    float* c = C + i * ldc;
    if (beta == 0.0f) std::memset(c, 0, sizeof(float) * size_t(N));
    else for (int64_t j = 0; j < N; ++j) c[j] *= beta;
  }
}

// ============================================================================
// scalar: the specification.
// For each row i: acc[j] = sum_{k=0..K-1} op(A)(i,k) * op(B)(k,j) in increasing k (float),
// then C(i,j) = alpha * acc[j] + beta * C(i,j), or alpha * acc[j] when beta == 0.
// Rows are independent, so running row blocks in parallel changes nothing.
// ============================================================================
thread_local Scratch tl_row;

void sgemm_scalar(bool tA, bool tB, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                  const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (alpha == 0.0f || K == 0) { scale_c(M, N, beta, C, ldc); return; }
  constexpr int64_t kRows = 16;
  parallel_for(size_t(ceil_div(M, kRows)), [&](size_t blk) {
    float* acc = tl_row.get(size_t(N));
    const int64_t i1 = std::min(M, int64_t(blk + 1) * kRows);
    for (int64_t i = int64_t(blk) * kRows; i < i1; ++i) {
      for (int64_t j = 0; j < N; ++j) acc[j] = 0.0f;
      for (int64_t k = 0; k < K; ++k) {
        const float a = tA ? A[k * lda + i] : A[i * lda + k];
        if (tB) for (int64_t j = 0; j < N; ++j) acc[j] += a * B[j * ldb + k];
        else    for (int64_t j = 0; j < N; ++j) acc[j] += a * B[k * ldb + j];
      }
      float* c = C + i * ldc;
      if (beta == 0.0f) for (int64_t j = 0; j < N; ++j) c[j] = alpha * acc[j];
      else              for (int64_t j = 0; j < N; ++j) c[j] = alpha * acc[j] + beta * c[j];
    }
  });
}

// ============================================================================
#if FL_X86
// Packed driver, shared by the SIMD variants through a traits class Tr:
//   Tr::MR, Tr::NR (micro-tile), Tr::VL (floats per vector), Tr::KC (K block), Tr::MC (tile rows),
//   Tr::NP (tile column panels)
//   Tr::ukr(m, nv): micro-kernel for m rows and nv vectors of columns
//   Tr::pack_a / pack_b / pack_bt: packing routines compiled for the ISA
// ============================================================================
enum EpiMode : int { kStore = 0, kStoreBeta = 1, kAccum = 2 };

// kc: K-block length; a: A~ panel (a[k*MR + i]); b: B panel or B itself (b[k*ldb + j]);
// c: C tile; nlast: valid columns in the last vector (1..VL); only the last vector is masked.
using Ukr = void (*)(int64_t kc, const float* a, const float* b, int64_t ldb, float* c, int64_t ldc, int nlast,
                     float alpha, float beta, int mode);

struct Args {
  bool tA, tB;
  int64_t M, N, K;
  float alpha;
  const float* A;
  int64_t lda;
  const float* B;
  int64_t ldb;
  float beta;
  float* C;
  int64_t ldc;
  // op(A) packed beforehand (sgemm_packed): K blocks in order, each [Mp/MR row panels][kc][MR]
  // (Mp = M rounded up to MR), so block k0's panel of rows i0.. starts at apk + k0*Mp + i0*kc.
  // Null: each tile packs its rows of op(A) itself.
  const float* apk = nullptr;
};

// K split: K >= kSplitMinK and at most kSplitMaxTiles micro-tiles in C.
constexpr int64_t kSplitMinK = 4096, kSplitChunkMin = 1024, kSplitMaxChunks = 16, kSplitMaxTiles = 64;

template <class Tr>
struct Driver {
  static constexpr int64_t MR = Tr::MR, NR = Tr::NR, VL = Tr::VL, KC = Tr::KC, MC = Tr::MC;

  // One output tile: rows [i0, i0+mc) x column panels [q0, q1) (panel q = columns [q*NR, q*NR+NR)).
  // For each K block: pack the tile's rows of op(A) and (unless B is read in place) its panels of
  // op(B) into this thread's scratch, then run the micro-kernels, B panel outer, A panel inner.
  static void tile(const Args& g, bool pack, int64_t i0, int64_t mc, int64_t q0, int64_t q1) {
    float* own = g.apk ? nullptr : tl_apack.get(size_t(ceil_div(mc, MR) * MR * KC));
    float* bp = pack ? tl_bpack.get(size_t((q1 - q0) * NR * KC)) : nullptr;
    const int64_t Mp = ceil_div(g.M, MR) * MR;
    for (int64_t k0 = 0; k0 < g.K; k0 += KC) {
      const int64_t kc = std::min(KC, g.K - k0);
      const float* ap = g.apk ? g.apk + k0 * Mp + i0 * kc : own;
      if (!g.apk)
        for (int64_t r = 0; r < mc; r += MR) Tr::pack_a(g.tA, g.A, g.lda, i0 + r, std::min(MR, mc - r), k0, kc, own + r * kc);
      if (pack) {
        for (int64_t q = q0; q < q1; ++q) {
          const int64_t nr = std::min(NR, g.N - q * NR);
          float* dst = bp + (q - q0) * kc * NR;
          if (g.tB) Tr::pack_bt(g.B + q * NR * g.ldb + k0, g.ldb, kc, nr, dst);
          else Tr::pack_b(g.B + k0 * g.ldb + q * NR, g.ldb, kc, nr, dst);
        }
      }
      const int mode = k0 > 0 ? kAccum : (g.beta == 0.0f ? kStore : kStoreBeta);
      for (int64_t q = q0; q < q1; ++q) {
        const int64_t j = q * NR;
        const int64_t nr = std::min(NR, g.N - j);
        const int nv = int(ceil_div(nr, VL));
        const int nlast = int(nr - (nv - 1) * VL);
        const float* b = pack ? bp + (q - q0) * kc * NR : g.B + k0 * g.ldb + j;
        const int64_t ldb = pack ? NR : g.ldb;
        for (int64_t r = 0; r < mc; r += MR) {
          const int64_t m = std::min(MR, mc - r);
          Tr::ukr(int(m), nv)(kc, ap + r * kc, b, ldb, g.C + (i0 + r) * g.ldc + j, g.ldc, nlast, g.alpha, g.beta, mode);
        }
      }
    }
  }

  // The whole product without K split: one parallel region over output tiles (serial when
  // nested in another region). Each tile packs what it uses (one region per call: waking the
  // pool costs tens of microseconds on these VMs, more than re-packing a few panels).
  static void tiles(const Args& g) {
    const int64_t mp = ceil_div(g.M, MR), np = ceil_div(g.N, NR);
    const bool pack = g.tB || mp > 2;  // B panels reused by <= 2 row panels: read B in place
    const int64_t tm = ceil_div(g.M, MC);
    int64_t tn = ceil_div(np, Tr::NP);
    if (tm * tn < 8) tn = std::min(np, ceil_div(8, tm));
    const int64_t per = ceil_div(np, tn);
    tn = ceil_div(np, per);
    parallel_for(size_t(tm * tn), [&](size_t t) {
      const int64_t ti = int64_t(t) / tn, tj = int64_t(t) % tn;
      const int64_t i0 = ti * MC, mc = std::min(MC, g.M - i0);
      const int64_t q0 = tj * per, q1 = std::min(np, q0 + per);
      tile(g, pack, i0, mc, q0, q1);
    });
  }

  // op(A) (M x K) into the layout of Args::apk: one task per row panel.
  static size_t packed_size(int64_t M, int64_t K) { return size_t(ceil_div(M, MR) * MR * K); }
  static void pack_all(bool tA, int64_t M, int64_t K, const float* A, int64_t lda, float* dst) {
    const int64_t Mp = ceil_div(M, MR) * MR;
    parallel_for(size_t(Mp / MR), [&](size_t p) {
      const int64_t i0 = int64_t(p) * MR, m = std::min(MR, M - i0);
      for (int64_t k0 = 0; k0 < K; k0 += KC) {
        const int64_t kc = std::min(KC, K - k0);
        float* d = dst + k0 * Mp + i0 * kc;
        Tr::pack_a(tA, A, lda, i0, m, k0, kc, d);
        for (int64_t k = 0; k < kc && m < MR; ++k)  // rows past M: zeros (the kernels never store them)
          for (int64_t i = m; i < MR; ++i) d[k * MR + i] = 0.0f;
      }
    });
  }

  static void run(const Args& g) {
    if (g.alpha == 0.0f || g.K == 0) { scale_c(g.M, g.N, g.beta, g.C, g.ldc); return; }
    const int64_t micro_tiles = ceil_div(g.M, MR) * ceil_div(g.N, NR);
    if (g.K < kSplitMinK || micro_tiles > kSplitMaxTiles) { tiles(g); return; }
    // K split. Chunk size from the shape only (a multiple of KC).
    const int64_t want = std::min(kSplitMaxChunks, g.K / kSplitChunkMin);
    const int64_t chunk = ceil_div(ceil_div(g.K, want), KC) * KC;
    const int64_t nchunks = ceil_div(g.K, chunk);
    const int64_t MN = g.M * g.N;
    float* part = tl_partial.get(size_t(nchunks * MN));
    parallel_for(size_t(nchunks), [&](size_t c) {
      const int64_t k0 = int64_t(c) * chunk;
      Args s = g;
      s.K = std::min(chunk, g.K - k0);
      s.A = g.tA ? g.A + k0 * g.lda : g.A + k0;
      if (g.apk) s.apk = g.apk + k0 * (ceil_div(g.M, MR) * MR);  // chunks are whole K blocks
      s.B = g.tB ? g.B + k0 : g.B + k0 * g.ldb;
      s.alpha = 1.0f;
      s.beta = 0.0f;
      s.C = part + int64_t(c) * MN;
      s.ldc = g.N;
      tiles(s);
    });
    // C = alpha * (P_0 + P_1 + ... ) + beta * C, partials added in chunk order.
    // (Serial: at most kSplitMaxTiles micro-tiles x kSplitMaxChunks partials, cheaper than a region.)
    for (int64_t i = 0; i < g.M; ++i) Tr::reduce_row(part + i * g.N, MN, nchunks, g.N, g.alpha, g.beta, g.C + i * g.ldc);
  }
};

// Row reduction (generic; inlined into the ISA wrappers): c[j] = alpha*sum_c p[c*stride + j] + beta*c[j].
__attribute__((always_inline)) inline void reduce_row_generic(const float* p, int64_t stride, int64_t n, int64_t N,
                                                              float alpha, float beta, float* c) {
  for (int64_t j = 0; j < N; ++j) {
    float s = p[j];
    for (int64_t q = 1; q < n; ++q) s += p[q * stride + j];
    c[j] = beta == 0.0f ? alpha * s : alpha * s + beta * c[j];
  }
}

// Packing, generic loops (inlined into the ISA wrappers so they vectorise for that ISA).
// A~ panel: ap[k*MR + i] = op(A)(i0+i, k0+k) for i < m (rows >= m are never read).
template <int64_t MR>
__attribute__((always_inline)) inline void pack_a_generic(bool tA, const float* A, int64_t lda, int64_t i0, int64_t m,
                                                          int64_t k0, int64_t kc, float* ap) {
  if (tA) {
    for (int64_t k = 0; k < kc; ++k) {
      const float* src = A + (k0 + k) * lda + i0;
      for (int64_t i = 0; i < m; ++i) ap[k * MR + i] = src[i];
    }
  } else {
    for (int64_t i = 0; i < m; ++i) {
      const float* src = A + (i0 + i) * lda + k0;
      for (int64_t k = 0; k < kc; ++k) ap[k * MR + i] = src[k];
    }
  }
}
// B~ panel from B (not transposed): bp[k*NR + j] = B[k*ldb + j] for j < nr, 0 for j in [nr, NR).
template <int64_t NR>
__attribute__((always_inline)) inline void pack_b_generic(const float* B, int64_t ldb, int64_t kc, int64_t nr, float* bp) {
  for (int64_t k = 0; k < kc; ++k) {
    const float* src = B + k * ldb;
    float* dst = bp + k * NR;
    for (int64_t j = 0; j < nr; ++j) dst[j] = src[j];
    for (int64_t j = nr; j < NR; ++j) dst[j] = 0.0f;
  }
}
// B~ panel from B stored transposed (op(B)(k, j) = Bt[j*ldb + k]): bp[k*NR + j] = Bt[j*ldb + k].
template <int64_t NR>
__attribute__((always_inline)) inline void pack_bt_generic(const float* Bt, int64_t ldb, int64_t kc, int64_t nr, float* bp) {
  for (int64_t j = 0; j < nr; ++j) {
    const float* src = Bt + j * ldb;
    for (int64_t k = 0; k < kc; ++k) bp[k * NR + j] = src[k];
  }
  for (int64_t j = nr; j < NR; ++j)
    for (int64_t k = 0; k < kc; ++k) bp[k * NR + j] = 0.0f;
}

// 8x8 transpose (AVX): dst[c * ldd + r] = src[r * lds + c] for r, c < 8. The 128-bit halves
// are combined by the loads (vinsertf128 from memory), leaving 16 in-lane shuffles.
// 8x8 transpose (AVX) of 8 source rows given by pointers: dst[c * ldd + r] = rows[r][c], r, c < 8.
// The 128-bit halves are combined by the loads (vinsertf128 from memory), leaving 16 in-lane
// shuffles.
FL_AVX2 inline __m256 load_rows_r_r4(const float* const* rows, int r, int64_t c) {  // [row r | row r+4], cols c..c+3
  return _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(rows[r] + c)), _mm_loadu_ps(rows[r + 4] + c), 1);
}
FL_AVX2 inline void transpose8x8(const float* const* rows, int64_t k, float* dst, int64_t ldd) {
  const __m256 r0 = load_rows_r_r4(rows, 0, k), r1 = load_rows_r_r4(rows, 1, k);
  const __m256 r2 = load_rows_r_r4(rows, 2, k), r3 = load_rows_r_r4(rows, 3, k);
  const __m256 r4 = load_rows_r_r4(rows, 0, k + 4), r5 = load_rows_r_r4(rows, 1, k + 4);
  const __m256 r6 = load_rows_r_r4(rows, 2, k + 4), r7 = load_rows_r_r4(rows, 3, k + 4);
  const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
  const __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
  const __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
  const __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
  _mm256_storeu_ps(dst + 0 * ldd, _mm256_shuffle_ps(t0, t2, 0x44));
  _mm256_storeu_ps(dst + 1 * ldd, _mm256_shuffle_ps(t0, t2, 0xEE));
  _mm256_storeu_ps(dst + 2 * ldd, _mm256_shuffle_ps(t1, t3, 0x44));
  _mm256_storeu_ps(dst + 3 * ldd, _mm256_shuffle_ps(t1, t3, 0xEE));
  _mm256_storeu_ps(dst + 4 * ldd, _mm256_shuffle_ps(t4, t6, 0x44));
  _mm256_storeu_ps(dst + 5 * ldd, _mm256_shuffle_ps(t4, t6, 0xEE));
  _mm256_storeu_ps(dst + 6 * ldd, _mm256_shuffle_ps(t5, t7, 0x44));
  _mm256_storeu_ps(dst + 7 * ldd, _mm256_shuffle_ps(t5, t7, 0xEE));
}

// Stand-in source row for the missing rows of a partial group of 8 (read, never written).
constexpr int64_t kMaxKC = 256;
alignas(64) const float kZeroRow[kMaxKC] = {};

// Transposes `n` (<= 8) source rows of kc elements (rows r at src + r*lds) into
// dst[k*ldd + r] for r < 8 (rows >= n give zeros), k < kc.
FL_AVX2 inline void transpose_rows(const float* src, int64_t lds, int64_t n, int64_t kc, float* dst, int64_t ldd) {
  const float* rows[8];
  for (int64_t r = 0; r < 8; ++r) rows[r] = r < n ? src + r * lds : kZeroRow;
  const int64_t k8 = kc / 8 * 8;
  for (int64_t k = 0; k < k8; k += 8) transpose8x8(rows, k, dst + k * ldd, ldd);
  for (int64_t k = k8; k < kc; ++k)
    for (int64_t r = 0; r < 8; ++r) dst[k * ldd + r] = rows[r][k];
}

// B~ panel from transposed storage: bp[k*NR + j] = Bt[j*ldb + k] for j < nr, 0 for j in [nr, NR).
template <int64_t NR>
FL_AVX2 inline void pack_bt_8x8(const float* Bt, int64_t ldb, int64_t kc, int64_t nr, float* bp) {
  static_assert(NR % 8 == 0, "panels are groups of 8 columns");
  for (int64_t j = 0; j < NR; j += 8) {
    if (j < nr) {
      transpose_rows(Bt + j * ldb, ldb, std::min<int64_t>(8, nr - j), kc, bp + j, NR);
    } else {
      const __m256 z = _mm256_setzero_ps();
      for (int64_t k = 0; k < kc; ++k) _mm256_storeu_ps(bp + k * NR + j, z);
    }
  }
}

// ============================================================================
// AVX2 + FMA: 6x16 micro-kernel (12 ymm accumulators, 2 B vectors, 1 broadcast).
// ============================================================================
FL_AVX2 inline __m256i avx2_mask(int n) {  // first n lanes set (n in 1..8)
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), idx);
}

template <int M, int NV>
FL_AVX2 void ukr_avx2(int64_t kc, const float* __restrict a, const float* __restrict b, int64_t ldb, float* c,
                      int64_t ldc, int nlast, float alpha, float beta, int mode) {
  constexpr int MR = 6;
  const __m256i lm = avx2_mask(nlast);
  __m256 acc[M][NV];
#pragma GCC unroll 16
  for (int i = 0; i < M; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm256_setzero_ps();
#pragma GCC unroll 2
  for (int64_t k = 0; k < kc; ++k) {
    __m256 bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v)
      bv[v] = v == NV - 1 ? _mm256_maskload_ps(b + v * 8, lm) : _mm256_loadu_ps(b + v * 8);
#pragma GCC unroll 16
    for (int i = 0; i < M; ++i) {
      const __m256 av = _mm256_broadcast_ss(a + i);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm256_fmadd_ps(av, bv[v], acc[i][v]);
    }
    a += MR;
    b += ldb;
  }
  const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
#pragma GCC unroll 16
  for (int i = 0; i < M; ++i) {
    float* ci = c + i * ldc;
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      __m256 r;
      const bool masked = v == NV - 1 && nlast < 8;
      if (mode == kStore) {
        r = _mm256_mul_ps(va, acc[i][v]);
      } else {
        const __m256 old = masked ? _mm256_maskload_ps(ci + v * 8, lm) : _mm256_loadu_ps(ci + v * 8);
        r = mode == kAccum ? _mm256_fmadd_ps(va, acc[i][v], old) : _mm256_fmadd_ps(va, acc[i][v], _mm256_mul_ps(vb, old));
      }
      if (masked) _mm256_maskstore_ps(ci + v * 8, lm, r);
      else _mm256_storeu_ps(ci + v * 8, r);
    }
  }
}

struct TrAvx2 {
  static constexpr int64_t MR = 6, NR = 16, VL = 8, KC = 256, MC = 72, NP = 16;
  static_assert(KC <= kMaxKC, "kZeroRow covers a K block");
  static Ukr ukr(int m, int nv) {
    static const Ukr t[6][2] = {
        {ukr_avx2<1, 1>, ukr_avx2<1, 2>}, {ukr_avx2<2, 1>, ukr_avx2<2, 2>}, {ukr_avx2<3, 1>, ukr_avx2<3, 2>},
        {ukr_avx2<4, 1>, ukr_avx2<4, 2>}, {ukr_avx2<5, 1>, ukr_avx2<5, 2>}, {ukr_avx2<6, 1>, ukr_avx2<6, 2>}};
    return t[m - 1][nv - 1];
  }
  // op(A) = A: 8x8 transposes of the m rows (zero rows past m), 6 floats of each 8-float column
  // kept: the stores run in increasing k, each overwriting the 2 extra floats of the one before;
  // the columns whose last store would run past the panel are copied element by element.
  FL_AVX2 static void pack_a(bool tA, const float* A, int64_t lda, int64_t i0, int64_t m, int64_t k0, int64_t kc, float* ap) {
    if (tA) { pack_a_generic<MR>(tA, A, lda, i0, m, k0, kc, ap); return; }
    const float* rows[8];
    for (int64_t r = 0; r < 8; ++r) rows[r] = r < m ? A + (i0 + r) * lda + k0 : kZeroRow;
    int64_t k = 0;
    for (; k + 9 <= kc; k += 8) transpose8x8(rows, k, ap + k * MR, MR);
    for (; k < kc; ++k)
      for (int64_t i = 0; i < m; ++i) ap[k * MR + i] = rows[i][k];
  }
  FL_AVX2 static void pack_b(const float* B, int64_t ldb, int64_t kc, int64_t nr, float* bp) {
    pack_b_generic<NR>(B, ldb, kc, nr, bp);
  }
  FL_AVX2 static void pack_bt(const float* Bt, int64_t ldb, int64_t kc, int64_t nr, float* bp) {
    pack_bt_8x8<NR>(Bt, ldb, kc, nr, bp);
  }
  FL_AVX2 static void reduce_row(const float* p, int64_t stride, int64_t n, int64_t N, float alpha, float beta, float* c) {
    reduce_row_generic(p, stride, n, N, alpha, beta, c);
  }
};

void sgemm_avx2(bool tA, bool tB, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  Driver<TrAvx2>::run(Args{tA, tB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc});
}
void sgemm_pa_avx2(const float* apk, bool tB, int64_t M, int64_t N, int64_t K, float alpha, const float* B, int64_t ldb,
                   float beta, float* C, int64_t ldc) {
  Driver<TrAvx2>::run(Args{false, tB, M, N, K, alpha, nullptr, 0, B, ldb, beta, C, ldc, apk});
}
const SgemmPacked kPackedAvx2{Driver<TrAvx2>::packed_size, Driver<TrAvx2>::pack_all, sgemm_pa_avx2};

// ============================================================================
// AVX-512: 8x48 micro-kernel (24 zmm accumulators, 3 B vectors, broadcast A from memory).
// ============================================================================
template <int M, int NV>
FL_AVX512 void ukr_avx512(int64_t kc, const float* __restrict a, const float* __restrict b, int64_t ldb, float* c,
                          int64_t ldc, int nlast, float alpha, float beta, int mode) {
  constexpr int MR = 8;
  const __mmask16 lm = __mmask16((1u << nlast) - 1u);
  __m512 acc[M][NV];
#pragma GCC unroll 16
  for (int i = 0; i < M; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_ps();
#pragma GCC unroll 2
  for (int64_t k = 0; k < kc; ++k) {
    __m512 bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) bv[v] = v == NV - 1 ? _mm512_maskz_loadu_ps(lm, b + v * 16) : _mm512_loadu_ps(b + v * 16);
#pragma GCC unroll 16
    for (int i = 0; i < M; ++i) {
      const __m512 av = _mm512_set1_ps(a[i]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_fmadd_ps(av, bv[v], acc[i][v]);
    }
    a += MR;
    b += ldb;
  }
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 16
  for (int i = 0; i < M; ++i) {
    float* ci = c + i * ldc;
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      const __mmask16 mk = v == NV - 1 ? lm : __mmask16(0xFFFF);
      __m512 r;
      if (mode == kStore) {
        r = _mm512_mul_ps(va, acc[i][v]);
      } else {
        const __m512 old = _mm512_maskz_loadu_ps(mk, ci + v * 16);
        r = mode == kAccum ? _mm512_fmadd_ps(va, acc[i][v], old) : _mm512_fmadd_ps(va, acc[i][v], _mm512_mul_ps(vb, old));
      }
      _mm512_mask_storeu_ps(ci + v * 16, mk, r);
    }
  }
}

struct TrAvx512 {
  static constexpr int64_t MR = 8, NR = 48, VL = 16, KC = 256, MC = 128, NP = 6;
  static_assert(KC <= kMaxKC, "kZeroRow covers a K block");
  static Ukr ukr(int m, int nv) {
#define FL_ROW(m) {ukr_avx512<m, 1>, ukr_avx512<m, 2>, ukr_avx512<m, 3>}
    static const Ukr t[8][3] = {FL_ROW(1), FL_ROW(2), FL_ROW(3), FL_ROW(4), FL_ROW(5), FL_ROW(6), FL_ROW(7), FL_ROW(8)};
#undef FL_ROW
    return t[m - 1][nv - 1];
  }
  // Full panels of op(A) = A: 8x8 transposes (ap[k*8 + i] = A[(i0+i)*lda + k0+k]).
  // op(A) = A: 8x8 transposes (ap[k*8 + i] = A[(i0+i)*lda + k0+k]; rows >= m become zeros).
  FL_AVX512 static void pack_a(bool tA, const float* A, int64_t lda, int64_t i0, int64_t m, int64_t k0, int64_t kc, float* ap) {
    if (tA) { pack_a_generic<MR>(tA, A, lda, i0, m, k0, kc, ap); return; }
    transpose_rows(A + i0 * lda + k0, lda, m, kc, ap, MR);
  }
  FL_AVX512 static void pack_b(const float* B, int64_t ldb, int64_t kc, int64_t nr, float* bp) {
    pack_b_generic<NR>(B, ldb, kc, nr, bp);
  }
  FL_AVX512 static void pack_bt(const float* Bt, int64_t ldb, int64_t kc, int64_t nr, float* bp) {
    pack_bt_8x8<NR>(Bt, ldb, kc, nr, bp);
  }
  FL_AVX512 static void reduce_row(const float* p, int64_t stride, int64_t n, int64_t N, float alpha, float beta, float* c) {
    reduce_row_generic(p, stride, n, N, alpha, beta, c);
  }
};

void sgemm_avx512(bool tA, bool tB, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                  const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  Driver<TrAvx512>::run(Args{tA, tB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc});
}
void sgemm_pa_avx512(const float* apk, bool tB, int64_t M, int64_t N, int64_t K, float alpha, const float* B, int64_t ldb,
                     float beta, float* C, int64_t ldc) {
  Driver<TrAvx512>::run(Args{false, tB, M, N, K, alpha, nullptr, 0, B, ldb, beta, C, ldc, apk});
}
const SgemmPacked kPackedAvx512{Driver<TrAvx512>::packed_size, Driver<TrAvx512>::pack_all, sgemm_pa_avx512};

#endif  // FL_X86
Kernel<SgemmFn> k_sgemm("sgemm", sgemm_scalar, FL_X86_ONLY(sgemm_avx2), FL_X86_ONLY(sgemm_avx512));

// scalar: the packed form of op(A) is op(A) itself, row-major (M x K).
size_t packed_size_scalar(int64_t M, int64_t K) { return size_t(M * K); }
void pack_all_scalar(bool tA, int64_t M, int64_t K, const float* A, int64_t lda, float* dst) {
  for (int64_t i = 0; i < M; ++i)
    for (int64_t k = 0; k < K; ++k) dst[i * K + k] = tA ? A[k * lda + i] : A[i * lda + k];
}
void sgemm_pa_scalar(const float* apk, bool tB, int64_t M, int64_t N, int64_t K, float alpha, const float* B, int64_t ldb,
                     float beta, float* C, int64_t ldc) {
  sgemm_scalar(false, tB, M, N, K, alpha, apk, K, B, ldb, beta, C, ldc);
}
const SgemmPacked kPackedScalar{packed_size_scalar, pack_all_scalar, sgemm_pa_scalar};

}  // namespace

Kernel<SgemmFn>& sgemm_kernel() { return k_sgemm; }

const SgemmPacked& sgemm_packed(Isa level) {
#if FL_X86
  if (level == Isa::Avx512) return kPackedAvx512;
  if (level == Isa::Avx2) return kPackedAvx2;
#endif
  (void)level;
  return kPackedScalar;
}

void sgemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
           const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  k_sgemm.fn(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

}  // namespace fl
