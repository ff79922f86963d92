// Peak-throughput probes for the benchmarks (TOOLCHAIN.md §5, §9): independent accumulator
// chains, no memory traffic, so the loop runs at the core's FMA / VNNI issue rate.
//   fma512 : 16 zmm accumulators, vfmadd231ps;  ops = iters * 16 acc * 16 lanes * 2 FLOP
//   fma256 : 12 ymm accumulators, vfmadd231ps;  ops = iters * 12 acc * 8 lanes * 2 FLOP
//   vnni512: 16 zmm accumulators, vpdpbusd;     ops = iters * 16 acc * 16 lanes * 4 MAC
//   int8avx2: 8 ymm accumulators (asm), each step vpmaddubsw + vpmaddwd (x ones) + vpaddd;
//             ops = iters * 8 acc * 32 MAC (the AVX2 int8 peak without VNNI)
//   int4avx2: 8 ymm accumulators (asm), each step vpmaddubsw + vpaddw into int16 sums;
//             ops = iters * 8 acc * 32 MAC (the ceiling of the int4 x int4 kernels' inner loop,
//             which keep pair sums in int16 and widen once per run)
// Each probe is timed by the caller with the wall clock and CLOCK_THREAD_CPUTIME_ID: on a
// shared VM the CPU-time rate is the core's ceiling, the wall rate what was actually had.
#include "flatenn/core.h"  // FL_X86
#if FL_X86
#include <immintrin.h>
#endif
#include <time.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "flatenn/f32.h"

namespace fl {
namespace {

// The accumulators start at values that keep them finite for any iteration count
// (x * 1 + 0 stays x); the result goes to a volatile sink so no chain is dead.
volatile float g_sink_f;
volatile int32_t g_sink_i;

#if FL_X86
__attribute__((target("avx512f,fma"))) double probe_fma512(uint64_t iters) {
  const __m512 m = _mm512_set1_ps(1.0f), z = _mm512_set1_ps(0.0f);
  __m512 c0 = _mm512_set1_ps(0.5f), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0;
  __m512 c8 = c0, c9 = c0, c10 = c0, c11 = c0, c12 = c0, c13 = c0, c14 = c0, c15 = c0;
  for (uint64_t i = 0; i < iters; ++i) {
    // Compiler barrier: keeps the 16 chains as written (no folding of x*1+0).
    __asm__ volatile("" : "+v"(c0), "+v"(c1), "+v"(c2), "+v"(c3), "+v"(c4), "+v"(c5), "+v"(c6), "+v"(c7));
    __asm__ volatile("" : "+v"(c8), "+v"(c9), "+v"(c10), "+v"(c11), "+v"(c12), "+v"(c13), "+v"(c14), "+v"(c15));
    c0 = _mm512_fmadd_ps(c0, m, z); c1 = _mm512_fmadd_ps(c1, m, z); c2 = _mm512_fmadd_ps(c2, m, z);
    c3 = _mm512_fmadd_ps(c3, m, z); c4 = _mm512_fmadd_ps(c4, m, z); c5 = _mm512_fmadd_ps(c5, m, z);
    c6 = _mm512_fmadd_ps(c6, m, z); c7 = _mm512_fmadd_ps(c7, m, z); c8 = _mm512_fmadd_ps(c8, m, z);
    c9 = _mm512_fmadd_ps(c9, m, z); c10 = _mm512_fmadd_ps(c10, m, z); c11 = _mm512_fmadd_ps(c11, m, z);
    c12 = _mm512_fmadd_ps(c12, m, z); c13 = _mm512_fmadd_ps(c13, m, z); c14 = _mm512_fmadd_ps(c14, m, z);
    c15 = _mm512_fmadd_ps(c15, m, z);
  }
  const __m512 s = _mm512_add_ps(
      _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(c0, c1), _mm512_add_ps(c2, c3)),
                    _mm512_add_ps(_mm512_add_ps(c4, c5), _mm512_add_ps(c6, c7))),
      _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(c8, c9), _mm512_add_ps(c10, c11)),
                    _mm512_add_ps(_mm512_add_ps(c12, c13), _mm512_add_ps(c14, c15))));
  alignas(64) float lanes[16];  // (not _mm512_reduce_add_ps: GCC 12 warns inside it)
  _mm512_store_ps(lanes, s);
  g_sink_f = lanes[0] + lanes[15];
  return double(iters) * 16 * 16 * 2;
}

__attribute__((target("avx2,fma"))) double probe_fma256(uint64_t iters) {
  const __m256 m = _mm256_set1_ps(1.0f), z = _mm256_set1_ps(0.0f);
  __m256 c0 = _mm256_set1_ps(0.5f), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0;
  __m256 c8 = c0, c9 = c0, c10 = c0, c11 = c0;
  for (uint64_t i = 0; i < iters; ++i) {
    __asm__ volatile("" : "+x"(c0), "+x"(c1), "+x"(c2), "+x"(c3), "+x"(c4), "+x"(c5));
    __asm__ volatile("" : "+x"(c6), "+x"(c7), "+x"(c8), "+x"(c9), "+x"(c10), "+x"(c11));
    c0 = _mm256_fmadd_ps(c0, m, z); c1 = _mm256_fmadd_ps(c1, m, z); c2 = _mm256_fmadd_ps(c2, m, z);
    c3 = _mm256_fmadd_ps(c3, m, z); c4 = _mm256_fmadd_ps(c4, m, z); c5 = _mm256_fmadd_ps(c5, m, z);
    c6 = _mm256_fmadd_ps(c6, m, z); c7 = _mm256_fmadd_ps(c7, m, z); c8 = _mm256_fmadd_ps(c8, m, z);
    c9 = _mm256_fmadd_ps(c9, m, z); c10 = _mm256_fmadd_ps(c10, m, z); c11 = _mm256_fmadd_ps(c11, m, z);
  }
  const __m256 s = _mm256_add_ps(
      _mm256_add_ps(_mm256_add_ps(c0, c1), _mm256_add_ps(c2, c3)),
      _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(c4, c5), _mm256_add_ps(c6, c7)),
                    _mm256_add_ps(_mm256_add_ps(c8, c9), _mm256_add_ps(c10, c11))));
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, s);
  g_sink_f = lanes[0] + lanes[7];
  return double(iters) * 12 * 8 * 2;
}

__attribute__((target("avx512f,avx512bw,avx512vnni"))) double probe_vnni512(uint64_t iters) {
  const __m512i x = _mm512_set1_epi8(1), y = _mm512_set1_epi8(0);  // + 0: accumulators stay put
  __m512i c0 = _mm512_set1_epi32(1), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0;
  __m512i c8 = c0, c9 = c0, c10 = c0, c11 = c0, c12 = c0, c13 = c0, c14 = c0, c15 = c0;
  for (uint64_t i = 0; i < iters; ++i) {
    __asm__ volatile("" : "+v"(c0), "+v"(c1), "+v"(c2), "+v"(c3), "+v"(c4), "+v"(c5), "+v"(c6), "+v"(c7));
    __asm__ volatile("" : "+v"(c8), "+v"(c9), "+v"(c10), "+v"(c11), "+v"(c12), "+v"(c13), "+v"(c14), "+v"(c15));
    c0 = _mm512_dpbusd_epi32(c0, x, y); c1 = _mm512_dpbusd_epi32(c1, x, y); c2 = _mm512_dpbusd_epi32(c2, x, y);
    c3 = _mm512_dpbusd_epi32(c3, x, y); c4 = _mm512_dpbusd_epi32(c4, x, y); c5 = _mm512_dpbusd_epi32(c5, x, y);
    c6 = _mm512_dpbusd_epi32(c6, x, y); c7 = _mm512_dpbusd_epi32(c7, x, y); c8 = _mm512_dpbusd_epi32(c8, x, y);
    c9 = _mm512_dpbusd_epi32(c9, x, y); c10 = _mm512_dpbusd_epi32(c10, x, y); c11 = _mm512_dpbusd_epi32(c11, x, y);
    c12 = _mm512_dpbusd_epi32(c12, x, y); c13 = _mm512_dpbusd_epi32(c13, x, y); c14 = _mm512_dpbusd_epi32(c14, x, y);
    c15 = _mm512_dpbusd_epi32(c15, x, y);
  }
  __m512i s = _mm512_add_epi32(_mm512_add_epi32(_mm512_add_epi32(c0, c1), _mm512_add_epi32(c2, c3)),
                               _mm512_add_epi32(_mm512_add_epi32(c4, c5), _mm512_add_epi32(c6, c7)));
  s = _mm512_add_epi32(s, _mm512_add_epi32(_mm512_add_epi32(_mm512_add_epi32(c8, c9), _mm512_add_epi32(c10, c11)),
                                           _mm512_add_epi32(_mm512_add_epi32(c12, c13), _mm512_add_epi32(c14, c15))));
  alignas(64) int32_t lanes[16];
  _mm512_store_si512(lanes, s);
  g_sink_i = lanes[0] + lanes[15];
  return double(iters) * 16 * 16 * 4;
}

// The AVX2 probes' shared asm: ymm0..7 (the accumulators) zeroed, ymm12 = bytes 1 (u8),
// ymm13 = 0 (s8); after the loop, a reduction into %1 so no chain is dead.
#define FL_AVX2_PROBE_SETUP                                                                                        \
  "vpxor %%ymm0, %%ymm0, %%ymm0\n\tvpxor %%ymm1, %%ymm1, %%ymm1\n\tvpxor %%ymm2, %%ymm2, %%ymm2\n\t"            \
  "vpxor %%ymm3, %%ymm3, %%ymm3\n\tvpxor %%ymm4, %%ymm4, %%ymm4\n\tvpxor %%ymm5, %%ymm5, %%ymm5\n\t"            \
  "vpxor %%ymm6, %%ymm6, %%ymm6\n\tvpxor %%ymm7, %%ymm7, %%ymm7\n\t"                                            \
  "vpcmpeqb %%ymm12, %%ymm12, %%ymm12\n\tvpabsb %%ymm12, %%ymm12\n\tvpxor %%ymm13, %%ymm13, %%ymm13\n\t"
#define FL_AVX2_PROBE_END(add) \
  "dec %0\n\tjnz 1b\n\t" add " %%ymm1, %%ymm0, %%ymm0\n\t" add " %%ymm7, %%ymm0, %%ymm0\n\tvmovd %%xmm0, %1\n\tvzeroupper\n\t"

// Written in asm: the 8 chains share their operands, so in C++ the compiler would compute one
// vpmaddubsw + vpmaddwd per iteration and add it 8 times. ymm0..7 accumulators, ymm8..11
// temporaries (renamed: no false dependence), ymm12 = 1 (u8), ymm13 = 0 (s8), ymm14 = ones (s16).
__attribute__((target("avx2,fma"))) double probe_int8avx2(uint64_t iters) {
  if (iters == 0) return 0.0;
  uint64_t n = iters;
  int32_t out;
#define FL_I8STEP(c, t) "vpmaddubsw %%ymm13, %%ymm12, %%ymm" #t "\n\tvpmaddwd %%ymm14, %%ymm" #t ", %%ymm" #t "\n\tvpaddd %%ymm" #t ", %%ymm" #c ", %%ymm" #c "\n\t"
  __asm__ volatile(
      FL_AVX2_PROBE_SETUP
      "vpcmpeqw %%ymm14, %%ymm14, %%ymm14\n\t"
      "vpabsw %%ymm14, %%ymm14\n\t"  // words 1
      "1:\n\t"
      FL_I8STEP(0, 8) FL_I8STEP(1, 9) FL_I8STEP(2, 10) FL_I8STEP(3, 11)
      FL_I8STEP(4, 8) FL_I8STEP(5, 9) FL_I8STEP(6, 10) FL_I8STEP(7, 11)
      FL_AVX2_PROBE_END("vpaddd")
      : "+r"(n), "=r"(out)
      :
      : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13",
        "xmm14", "cc");
#undef FL_I8STEP
  g_sink_i = out;
  return double(iters) * 8 * 32;
}

// The int4 kernels' step: vpmaddubsw then vpaddw into an int16 accumulator (ymm0..7; the
// temporaries ymm8..11 renamed; operands as in probe_int8avx2).
__attribute__((target("avx2,fma"))) double probe_int4avx2(uint64_t iters) {
  if (iters == 0) return 0.0;
  uint64_t n = iters;
  int32_t out;
#define FL_I4STEP(c, t) "vpmaddubsw %%ymm13, %%ymm12, %%ymm" #t "\n\tvpaddw %%ymm" #t ", %%ymm" #c ", %%ymm" #c "\n\t"
  __asm__ volatile(
      FL_AVX2_PROBE_SETUP
      "1:\n\t"
      FL_I4STEP(0, 8) FL_I4STEP(1, 9) FL_I4STEP(2, 10) FL_I4STEP(3, 11)
      FL_I4STEP(4, 8) FL_I4STEP(5, 9) FL_I4STEP(6, 10) FL_I4STEP(7, 11)
      FL_AVX2_PROBE_END("vpaddw")
      : "+r"(n), "=r"(out)
      :
      : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "cc");
#undef FL_I4STEP
  g_sink_i = out;
  return double(iters) * 8 * 32;
}

#undef FL_AVX2_PROBE_SETUP
#undef FL_AVX2_PROBE_END
#endif  // FL_X86
double thread_cpu_seconds() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

double run_probe(PeakKind kind, uint64_t iters) {
#if !FL_X86
  (void)kind; (void)iters;  // no x86 probes here: peak_supported() is false for every kind
#else
  switch (kind) {
    case PeakKind::Fma512: return probe_fma512(iters);
    case PeakKind::Fma256: return probe_fma256(iters);
    case PeakKind::Vnni512: return probe_vnni512(iters);
    case PeakKind::Int8Avx2: return probe_int8avx2(iters);
    case PeakKind::Int4Avx2: return probe_int4avx2(iters);
  }
#endif
  return 0.0;
}

}  // namespace

bool peak_supported(PeakKind kind) {
  const CpuFeatures& f = cpu_features();
  switch (kind) {
    case PeakKind::Fma512: return f.avx512f && f.fma;
    case PeakKind::Fma256: return f.avx2 && f.fma;
    case PeakKind::Vnni512: return f.avx512f && f.avx512bw && f.avx512vnni;
    case PeakKind::Int8Avx2: return f.avx2;
    case PeakKind::Int4Avx2: return f.avx2;
  }
  return false;
}

PeakResult peak_probe(PeakKind kind, uint64_t iters, int threads) {
  if (threads < 1) threads = 1;
  std::vector<double> ops(size_t(threads), 0.0), cpu(size_t(threads), 0.0);
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  auto body = [&](int t) {
    ready.fetch_add(1);
    while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
    const double c0 = thread_cpu_seconds();
    ops[size_t(t)] = run_probe(kind, iters);
    cpu[size_t(t)] = thread_cpu_seconds() - c0;
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(body, t);
  while (ready.load() < threads - 1) std::this_thread::yield();
  const auto w0 = std::chrono::steady_clock::now();
  go.store(true, std::memory_order_release);
  body(0);
  for (auto& th : pool) th.join();
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - w0).count();
  PeakResult r{0.0, wall, 0.0};
  for (int t = 0; t < threads; ++t) { r.ops += ops[size_t(t)]; r.cpu_seconds += cpu[size_t(t)]; }
  return r;
}

}  // namespace fl
