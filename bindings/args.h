// Argument extraction for the Node-API glue: every check throws a JavaScript
// TypeError / RangeError naming the argument; nothing from JS can crash the process.
#pragma once
#include <napi.h>

#include <cmath>
#include <cstdint>
#include <exception>
#include <new>
#include <string>

namespace flb {

inline std::string describe(const Napi::Value& v) {
  if (v.IsUndefined()) return "undefined";
  if (v.IsNull()) return "null";
  if (v.IsTypedArray()) {
    switch (v.As<Napi::TypedArray>().TypedArrayType()) {
      case napi_float32_array: return "Float32Array";
      case napi_float64_array: return "Float64Array";
      case napi_uint8_array: return "Uint8Array";
      case napi_int8_array: return "Int8Array";
      case napi_int32_array: return "Int32Array";
      case napi_uint32_array: return "Uint32Array";
      case napi_int16_array: return "Int16Array";
      case napi_uint16_array: return "Uint16Array";
      default: return "TypedArray";
    }
  }
  if (v.IsArray()) return "Array";
  if (v.IsNumber()) return "number " + std::to_string(v.As<Napi::Number>().DoubleValue());
  if (v.IsString()) return "string";
  if (v.IsBoolean()) return "boolean";
  if (v.IsFunction()) return "function";
  return "object";
}

[[noreturn]] inline void type_error(Napi::Env env, const char* name, const char* expected, const Napi::Value& got) {
  throw Napi::TypeError::New(env, std::string("Expected ") + expected + " for " + name + " but received " + describe(got));
}
[[noreturn]] inline void range_error(Napi::Env env, const std::string& msg) { throw Napi::RangeError::New(env, msg); }

inline Napi::Value arg(const Napi::CallbackInfo& info, size_t i) { return i < info.Length() ? info[i] : info.Env().Undefined(); }

template <class T, napi_typedarray_type kType>
struct TypedView {
  T* data;
  size_t length;
};

template <class T, napi_typedarray_type kType>
TypedView<T, kType> typed(const Napi::CallbackInfo& info, size_t i, const char* name, const char* tname) {
  Napi::Value v = arg(info, i);
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != kType) type_error(info.Env(), name, tname, v);
  auto a = v.As<Napi::TypedArrayOf<T>>();
  if (a.ArrayBuffer().IsDetached()) throw Napi::TypeError::New(info.Env(), std::string(name) + " is a detached buffer");
  return {a.Data(), a.ElementLength()};
}

using F32 = TypedView<float, napi_float32_array>;
using F64 = TypedView<double, napi_float64_array>;
using U8 = TypedView<uint8_t, napi_uint8_array>;
using I8 = TypedView<int8_t, napi_int8_array>;
using I32 = TypedView<int32_t, napi_int32_array>;
using U32 = TypedView<uint32_t, napi_uint32_array>;

inline F32 f32(const Napi::CallbackInfo& info, size_t i, const char* n) { return typed<float, napi_float32_array>(info, i, n, "Float32Array"); }
inline F64 f64(const Napi::CallbackInfo& info, size_t i, const char* n) { return typed<double, napi_float64_array>(info, i, n, "Float64Array"); }
inline U8 u8(const Napi::CallbackInfo& info, size_t i, const char* n) { return typed<uint8_t, napi_uint8_array>(info, i, n, "Uint8Array"); }
inline I8 i8(const Napi::CallbackInfo& info, size_t i, const char* n) { return typed<int8_t, napi_int8_array>(info, i, n, "Int8Array"); }
inline I32 i32(const Napi::CallbackInfo& info, size_t i, const char* n) { return typed<int32_t, napi_int32_array>(info, i, n, "Int32Array"); }
inline U32 u32(const Napi::CallbackInfo& info, size_t i, const char* n) { return typed<uint32_t, napi_uint32_array>(info, i, n, "Uint32Array"); }

inline bool is_nullish(const Napi::CallbackInfo& info, size_t i) {
  Napi::Value v = arg(info, i);
  return v.IsUndefined() || v.IsNull();
}

// An integer in [lo, hi]; TypeError for a non-number or non-integer, RangeError out of range.
inline int64_t integer(const Napi::CallbackInfo& info, size_t i, const char* name, int64_t lo, int64_t hi) {
  Napi::Value v = arg(info, i);
  if (!v.IsNumber()) type_error(info.Env(), name, "an integer", v);
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || d != std::floor(d)) type_error(info.Env(), name, "an integer", v);
  if (d < double(lo) || d > double(hi))
    range_error(info.Env(), std::string("Expected ") + name + " in [" + std::to_string(lo) + ", " + std::to_string(hi) +
                                "] but received " + std::to_string(d));
  return static_cast<int64_t>(d);
}

inline double number(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Value v = arg(info, i);
  if (!v.IsNumber()) type_error(info.Env(), name, "a number", v);
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d)) range_error(info.Env(), std::string("Expected a finite number for ") + name + " but received " + std::to_string(d));
  return d;
}

inline bool boolean(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Value v = arg(info, i);
  if (!v.IsBoolean()) type_error(info.Env(), name, "a boolean", v);
  return v.As<Napi::Boolean>().Value();
}

// A uint64 seed from a JS number (safe integer) or BigInt.
inline uint64_t seed(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Value v = arg(info, i);
  if (v.IsBigInt()) {
    bool lossless = false;
    uint64_t s = v.As<Napi::BigInt>().Uint64Value(&lossless);
    if (!lossless) range_error(info.Env(), std::string("Expected ") + name + " to fit in 64 unsigned bits");
    return s;
  }
  return static_cast<uint64_t>(integer(info, i, name, 0, 9007199254740991LL));
}

// Checks a buffer holds at least `need` elements.
template <class V>
inline void need(Napi::Env env, const V& v, size_t need, const char* name) {
  if (v.length < need)
    range_error(env, std::string("Expected ") + name + " to hold at least " + std::to_string(need) +
                         " elements but it has " + std::to_string(v.length));
}
template <class V>
inline void exact(Napi::Env env, const V& v, size_t n, const char* name) {
  if (v.length != n)
    range_error(env, std::string("Expected ") + name + " to hold exactly " + std::to_string(n) +
                         " elements but it has " + std::to_string(v.length));
}

// A JS function whose C++ body may throw anything: Napi errors pass through;
// std::bad_alloc and any other C++ exception (also from pool tasks, which
// rethrow on this thread) become a JavaScript Error naming the function,
// never a process abort.
using Body = Napi::Value (*)(const Napi::CallbackInfo&);
inline Napi::Function fn(Napi::Env env, Body body, const char* name) {
  return Napi::Function::New(
      env,
      [body, name](const Napi::CallbackInfo& info) -> Napi::Value {
        try {
          return body(info);
        } catch (const Napi::Error&) {
          throw;
        } catch (const std::bad_alloc&) {
          throw Napi::Error::New(info.Env(), std::string(name) + ": out of memory (a native allocation failed)");
        } catch (const std::exception& e) {
          throw Napi::Error::New(info.Env(), std::string(name) + ": native error: " + e.what());
        } catch (...) {
          throw Napi::Error::New(info.Env(), std::string(name) + ": unknown native error");
        }
      },
      name);
}

// Registration: each bindings/*.cc file adds its functions to the exports.
using Registrar = void (*)(Napi::Env, Napi::Object);
struct Register {
  explicit Register(Registrar r);
};

}  // namespace flb
