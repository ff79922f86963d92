// version / CPU features / ISA / kernels / threads / RNG.
#include <napi.h>

#include <cstdlib>
#include <mutex>

#include "args.h"
#include "flatenn/core.h"
#include "flatenn/rng.h"

#ifndef FLATENN_VERSION
#define FLATENN_VERSION "0.0.0"
#endif
#ifndef FLATENN_BUILD_TYPE
#define FLATENN_BUILD_TYPE "Release"
#endif

namespace {

using namespace flb;

// FLATENN_ISA and FLATENN_THREADS are read once per process, when the first
// environment loads the addon. An ISA the CPU lacks fails the load.
void apply_env(Napi::Env env) {
  static std::once_flag once;
  static std::string error;
  std::call_once(once, [] {
    if (const char* s = std::getenv("FLATENN_ISA"); s && *s) {
      fl::Isa isa;
      if (!fl::isa_from_name(s, &isa)) error = std::string("FLATENN_ISA=") + s + " is not one of scalar, avx2, avx512";
      else if (!fl::set_isa(isa))
        error = std::string("FLATENN_ISA=") + s + " is not supported by this CPU (best: " + fl::isa_name(fl::best_isa()) + ")";
    }
    if (const char* s = std::getenv("FLATENN_THREADS"); s && *s) {
      char* end = nullptr;
      long n = std::strtol(s, &end, 10);
      if (*end || n < 1 || n > 1024) error = std::string("FLATENN_THREADS=") + s + " is not an integer in [1, 1024]";
      else fl::set_num_threads(static_cast<int>(n));
    }
  });
  if (!error.empty()) throw Napi::RangeError::New(env, error);
}

Napi::Value Version(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), FLATENN_VERSION); }

Napi::Value BuildType(const Napi::CallbackInfo& info) {
#ifdef FLATENN_SANITIZED
  return Napi::String::New(info.Env(), std::string(FLATENN_BUILD_TYPE) + "+asan+ubsan");
#else
  return Napi::String::New(info.Env(), FLATENN_BUILD_TYPE);
#endif
}

Napi::Value CpuFeatures(const Napi::CallbackInfo& info) {
  const fl::CpuFeatures& f = fl::cpu_features();
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("vendor", f.vendor);
  o.Set("brand", f.brand);
  auto flag = [&](const char* k, bool v) { o.Set(k, Napi::Boolean::New(info.Env(), v)); };
  flag("sse42", f.sse42); flag("avx", f.avx); flag("avx2", f.avx2); flag("fma", f.fma); flag("f16c", f.f16c);
  flag("avx512f", f.avx512f); flag("avx512bw", f.avx512bw); flag("avx512dq", f.avx512dq); flag("avx512vl", f.avx512vl);
  flag("avx512vnni", f.avx512vnni); flag("avxVnni", f.avx_vnni); flag("avx512bf16", f.avx512bf16);
  flag("avx512fp16", f.avx512fp16); flag("osYmm", f.os_ymm); flag("osZmm", f.os_zmm);
  return o;
}

Napi::Value GetIsa(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), fl::isa_name(fl::current_isa())); }
Napi::Value BestIsa(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), fl::isa_name(fl::best_isa())); }

Napi::Value SetIsa(const Napi::CallbackInfo& info) {
  Napi::Value v = arg(info, 0);
  if (!v.IsString()) type_error(info.Env(), "isa", "one of 'scalar', 'avx2', 'avx512'", v);
  fl::Isa isa;
  const std::string name = v.As<Napi::String>().Utf8Value();
  if (!fl::isa_from_name(name, &isa))
    range_error(info.Env(), "Expected one of 'scalar', 'avx2', 'avx512' for isa but received '" + name + "'");
  if (!fl::set_isa(isa))
    range_error(info.Env(), "isa '" + name + "' is not supported by this CPU (best: " + fl::isa_name(fl::best_isa()) + ")");
  return info.Env().Undefined();
}

Napi::Value Kernels(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto& reg = fl::kernel_registry();
  Napi::Array out = Napi::Array::New(env, reg.size());
  for (size_t i = 0; i < reg.size(); ++i) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", reg[i]->name);
    o.Set("isa", fl::isa_name(reg[i]->chosen()));
    Napi::Array v = Napi::Array::New(env);
    uint32_t n = 0;
    for (int l = 0; l < fl::kIsaCount; ++l)
      if (reg[i]->has(static_cast<fl::Isa>(l))) v.Set(n++, fl::isa_name(static_cast<fl::Isa>(l)));
    o.Set("variants", v);
    out.Set(uint32_t(i), o);
  }
  return out;
}

Napi::Value GetThreads(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), fl::num_threads()); }
Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  fl::set_num_threads(static_cast<int>(integer(info, 0, "threads", 1, 1024)));
  return info.Env().Undefined();
}

// rngUniform(seed, purpose, stream, start, out: Float64Array): out[i] = U(seed, purpose, stream, start + i)
Napi::Value RngUniform(const Napi::CallbackInfo& info) {
  const uint64_t seed = flb::seed(info, 0, "seed");
  const auto purpose = static_cast<fl::RngPurpose>(integer(info, 1, "purpose", 0, 0xFFFFFFFFLL));
  const auto stream = static_cast<uint32_t>(integer(info, 2, "stream", 0, 0xFFFFFFFFLL));
  const auto start = static_cast<uint64_t>(integer(info, 3, "start", 0, 9007199254740991LL));
  F64 out = f64(info, 4, "out");
  for (size_t i = 0; i < out.length; ++i) out.data[i] = fl::rng_uniform(seed, purpose, stream, start + i);
  return info.Env().Undefined();
}

// The binding surface's level: raised whenever an export's arguments or meaning change so that code
// written for another level would misread it (2: reluFakeQuant writes activation codes, the training
// forward's input; an older addon ignores that argument; 3: sumSquares, scaleToF32, addScaledF32 and
// addF32, which the autograd and SAQ call instead of JavaScript loops). src/native/binding.ts refuses
// another level.
constexpr int kApiLevel = 3;

void Init(Napi::Env env, Napi::Object exports) {
  apply_env(env);
  exports.Set("apiLevel", Napi::Number::New(env, kApiLevel));
  exports.Set("version", flb::fn(env, Version, "version"));
  exports.Set("buildType", flb::fn(env, BuildType, "buildType"));
  exports.Set("cpuFeatures", flb::fn(env, CpuFeatures, "cpuFeatures"));
  exports.Set("isa", flb::fn(env, GetIsa, "isa"));
  exports.Set("bestIsa", flb::fn(env, BestIsa, "bestIsa"));
  exports.Set("setIsa", flb::fn(env, SetIsa, "setIsa"));
  exports.Set("kernels", flb::fn(env, Kernels, "kernels"));
  exports.Set("threads", flb::fn(env, GetThreads, "threads"));
  exports.Set("setThreads", flb::fn(env, SetThreads, "setThreads"));
  exports.Set("rngUniform", flb::fn(env, RngUniform, "rngUniform"));
}

Register reg(Init);

}  // namespace
