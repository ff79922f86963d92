// flatenn native core: CPU features, ISA dispatch, kernel registry, thread pool.
// No Node headers here: bindings/ includes this, native/ never includes Node.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

// x86 SIMD code (intrinsics, target attributes, cpuid) is compiled only on x86;
// elsewhere (arm64) every kernel has its scalar variant only.
#if defined(__x86_64__) || defined(__i386__)
#define FL_X86 1
#define FL_X86_ONLY(f) (f)
#else
#define FL_X86 0
#define FL_X86_ONLY(f) nullptr
#endif

namespace fl {

// Instruction-set levels, ordered: a higher level implies every lower one.
//   scalar : baseline x86-64 (SSE2), plain C++ loops; the readable reference
//   avx2   : AVX2 + FMA (+ F16C), OS-enabled YMM state
//   avx512 : AVX-512 F/BW/DQ/VL, OS-enabled ZMM + opmask state
// VNNI (AVX-512 VNNI) is a feature flag inside avx512 used by integer kernels.
enum class Isa : int { Scalar = 0, Avx2 = 1, Avx512 = 2 };
constexpr int kIsaCount = 3;
const char* isa_name(Isa isa);
bool isa_from_name(const std::string& name, Isa* out);

struct CpuFeatures {
  bool sse42 = false, avx = false, avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512dq = false, avx512vl = false, avx512vnni = false;
  bool avx_vnni = false, avx512bf16 = false, avx512fp16 = false;
  bool os_ymm = false, os_zmm = false;  // XCR0 says the OS saves the vector state
  std::string vendor, brand;
};
const CpuFeatures& cpu_features();
Isa best_isa();                 // the highest level this CPU and OS support
Isa current_isa();              // the level kernels are dispatched to now
bool vnni_enabled();            // current_isa() == Avx512 && CPU has AVX-512 VNNI
// Sets the dispatch level. Returns false (and changes nothing) if the CPU lacks it.
bool set_isa(Isa isa);

// ---- kernel registry ------------------------------------------------------
// Each kernel registers its variants once; dispatch picks, per kernel, the
// highest variant <= current_isa(). Calls go through Kernel<F>::fn.
struct KernelBase {
  const char* name;
  explicit KernelBase(const char* n);
  virtual ~KernelBase() = default;
  virtual void select(Isa isa) = 0;
  virtual Isa chosen() const = 0;
  virtual bool has(Isa isa) const = 0;
};
std::vector<KernelBase*>& kernel_registry();

template <class F>
struct Kernel final : KernelBase {
  F variants[kIsaCount];
  F fn;
  Isa sel = Isa::Scalar;
  Kernel(const char* n, F scalar, F avx2, F avx512) : KernelBase(n), variants{scalar, avx2, avx512}, fn(scalar) {
    select(current_isa());
  }
  void select(Isa isa) override {
    for (int l = static_cast<int>(isa); l >= 0; --l)
      if (variants[l]) { fn = variants[l]; sel = static_cast<Isa>(l); return; }
  }
  Isa chosen() const override { return sel; }
  bool has(Isa isa) const override { return variants[static_cast<int>(isa)] != nullptr; }
  // Run one specific variant (tests compare each with the scalar reference).
  F variant(Isa isa) const { return variants[static_cast<int>(isa)]; }
};

// ---- thread pool ------------------------------------------------------------
// A persistent pool with blocking waits. Work is split into tasks by the caller
// (by problem shape, never by thread count), and each task writes its own
// output: results are identical whatever the number of threads.
void set_num_threads(int n);    // >= 1
int num_threads();
// Runs fn(task) for task in [0, ntasks). Re-entrant calls (from inside a task,
// or while another caller holds the pool) run serially on the calling thread.
void parallel_for(size_t ntasks, const std::function<void(size_t)>& fn);

}  // namespace fl
