// CPU feature detection (cpuid + xgetbv) and the kernel dispatch level.
#include "flatenn/core.h"

#include <atomic>
#include <cstring>
#include <mutex>
#if FL_X86
#include <cpuid.h>
#endif

namespace fl {
namespace {

#if FL_X86

void cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4]) { __cpuid_count(leaf, sub, r[0], r[1], r[2], r[3]); }

uint64_t xgetbv0() {
  uint32_t lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (uint64_t(hi) << 32) | lo;
}

CpuFeatures detect() {
  CpuFeatures f;
  uint32_t r[4];
  cpuid(0, 0, r);
  const uint32_t max_leaf = r[0];
  char vendor[13] = {0};
  std::memcpy(vendor, &r[1], 4); std::memcpy(vendor + 4, &r[3], 4); std::memcpy(vendor + 8, &r[2], 4);
  f.vendor = vendor;
  cpuid(0x80000000u, 0, r);
  if (r[0] >= 0x80000004u) {
    char brand[49] = {0};
    for (uint32_t i = 0; i < 3; ++i) { cpuid(0x80000002u + i, 0, r); std::memcpy(brand + 16 * i, r, 16); }
    std::string b = brand;
    const auto s = b.find_first_not_of(' ');
    f.brand = s == std::string::npos ? "" : b.substr(s);
  }
  if (max_leaf < 1) return f;
  cpuid(1, 0, r);
  const bool osxsave = (r[2] >> 27) & 1;
  f.sse42 = (r[2] >> 20) & 1;
  f.fma = (r[2] >> 12) & 1;
  f.avx = (r[2] >> 28) & 1;
  f.f16c = (r[2] >> 29) & 1;
  if (osxsave) {
    const uint64_t xcr0 = xgetbv0();
    f.os_ymm = (xcr0 & 0x6) == 0x6;                // SSE + AVX state
    f.os_zmm = f.os_ymm && (xcr0 & 0xE0) == 0xE0;  // opmask + ZMM_Hi256 + Hi16_ZMM
  }
  if (max_leaf >= 7) {
    cpuid(7, 0, r);
    f.avx2 = (r[1] >> 5) & 1;
    f.avx512f = (r[1] >> 16) & 1;
    f.avx512dq = (r[1] >> 17) & 1;
    f.avx512bw = (r[1] >> 30) & 1;
    f.avx512vl = (r[1] >> 31) & 1;
    f.avx512vnni = (r[2] >> 11) & 1;
    f.avx512fp16 = (r[3] >> 23) & 1;
    cpuid(7, 1, r);
    f.avx_vnni = (r[0] >> 4) & 1;
    f.avx512bf16 = (r[0] >> 5) & 1;
  }
  // A feature the OS does not save state for is unusable.
  if (!f.os_ymm) f.avx = f.avx2 = f.fma = f.f16c = f.avx_vnni = false;
  if (!f.os_zmm) f.avx512f = f.avx512bw = f.avx512dq = f.avx512vl = f.avx512vnni = f.avx512bf16 = f.avx512fp16 = false;
  return f;
}
#else
CpuFeatures detect() {  // no x86 features; scalar kernels only
  CpuFeatures f;
#if defined(__aarch64__)
  f.vendor = "arm64";
#endif
  return f;
}
#endif

std::atomic<int> g_isa{-1};
std::mutex g_isa_mu;

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Avx512: return "avx512";
    case Isa::Avx2: return "avx2";
    default: return "scalar";
  }
}

bool isa_from_name(const std::string& name, Isa* out) {
  if (name == "scalar") { *out = Isa::Scalar; return true; }
  if (name == "avx2") { *out = Isa::Avx2; return true; }
  if (name == "avx512") { *out = Isa::Avx512; return true; }
  return false;
}

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = detect();
  return f;
}

Isa best_isa() {
  const CpuFeatures& f = cpu_features();
  if (f.avx512f && f.avx512bw && f.avx512dq && f.avx512vl && f.avx2 && f.fma) return Isa::Avx512;
  if (f.avx2 && f.fma) return Isa::Avx2;
  return Isa::Scalar;
}

Isa current_isa() {
  int v = g_isa.load(std::memory_order_acquire);
  if (v < 0) {
    std::lock_guard<std::mutex> lock(g_isa_mu);
    v = g_isa.load();
    if (v < 0) { v = static_cast<int>(best_isa()); g_isa.store(v); }
  }
  return static_cast<Isa>(v);
}

bool vnni_enabled() { return current_isa() == Isa::Avx512 && cpu_features().avx512vnni; }

bool set_isa(Isa isa) {
  if (static_cast<int>(isa) > static_cast<int>(best_isa())) return false;
  std::lock_guard<std::mutex> lock(g_isa_mu);
  g_isa.store(static_cast<int>(isa));
  for (KernelBase* k : kernel_registry()) k->select(isa);
  return true;
}

KernelBase::KernelBase(const char* n) : name(n) { kernel_registry().push_back(this); }

std::vector<KernelBase*>& kernel_registry() {
  static std::vector<KernelBase*> reg;
  return reg;
}

}  // namespace fl
