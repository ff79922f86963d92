// Node-API glue for the int4 engine kernels (native/kernels/qgemm.cc, qops.cc; contracts in
// flatenn/qengine.h). Validation only. Signatures (JS):
//   qweightsBytes(N, K): number
//   qweightsRepack(packed: U8, bits: 2|4|8, N, K, dst: U8): string      (the ISA whose layout it wrote)
//   qweightsFromCodes(codes: I8 [N*K], N, K, dst: U8): string
//   qgemm(A: U8 [M*lda], M, K, lda, qw: U8, N, mode: 'int32'|'float'|'codes', out: I32|F32|U8 [M*N],
//         layout: 'mn'|'nm', scale: F64|null, bias: F64|null, actBits, actRange, inBlocked?, outBlocked?): number (zero codes)
//   qconv2d(x: U8 [B*C*H*W], B, C, H, W, qw: U8, O, kh, kw, stride, pad, mode, out [B*O*OH*OW],
//           scale: F64|null, bias: F64|null, actBits, actRange, inBlocked?, outBlocked?, corr?: F64 [O*OH*OW]|null): number
//   (corr: a per-position term added after the affine, 'float' / 'codes' modes: the input layer's border correction)
//   (inBlocked / outBlocked: booleans, default false: the input / output in the blocked layout of
//   flatenn/qengine.h, [ceil(B/16)][elements][16], whose arrays hold ceil(B/16)*16 items)
//   qconv2dPool(x: U8 [B*C*H*W], B, C, H, W, qw: U8, O, kh, kw, stride, pad, poolK, poolStride,
//               out: U8 [B*O*PH*PW], scale: F64, bias: F64, actBits, actRange, inBlocked?, outBlocked?, corr?: F64 [O*OH*OW]|null): number
//               (zero codes before pooling)
//   maxpool2dU8(x: U8, planes, H, W, k, stride, y: U8): void
//   maxpool2dU8Blocked(x: U8 blocked [B][C][H][W], B, C, H, W, k, stride, y: U8 blocked [B][C][OH][OW]): void
//   globalSumU8(x: U8, planes, HW, sums: I32): void
//   requantU8(y: F64, actBits, actRange, q: U8): number
//   addRequantU8(a: U8|I32, sa, aScale: F64|null, aBias: F64|null, b: U8|I32, sb, bScale, bBias, C, P, actBits, actRange,
//                 q: U8): number   (planes [n][C][P]; codes dequantised as fl(code * s), int32 accumulators through their
//                 channel's scale / bias)
//   qgroupsEpilogue(acc: I32 [G*B*O*P], G, B, O, P, gscale: F64 [G*O], bias: F64 [O], corr: F64 [O*P]|null,
//                   mode: 'float'|'codes', out: F32|U8 [B*O*P], actBits, actRange): number
//   qlinearI32(A: I32 [M*K], M, K, W: I8 [N*K], N, mode: 'float'|'codes', out, scale: F64, bias: F64, actBits, actRange): number
//   qconvRunsDirect(qw: U8, O, C, H, W, k, stride, pad, poolK, poolStride, mode, dense: boolean): boolean
//   qgemmPeakProbe(iters): {macs, seconds, cpuSeconds}
// actBits in [1, 8], actRange r > 0: actScale = fl32(fl32(r) / (2^actBits - 1)) as in reluFakeQuant (the
// model's activation scale), then used in float64 by the epilogues; read (and must be valid) only in
// 'codes' mode. Scales, biases and per-position terms are float64 (qengine.h).
#include <napi.h>
#include <time.h>

#include <cfloat>
#include <chrono>
#include <cmath>
#include <string>

#include "args.h"
#include "flatenn/qengine.h"

namespace {

using namespace flb;

constexpr int64_t kMaxDim = int64_t(1) << 30;
constexpr int64_t kMaxK = 65536;  // keeps |acc| < 2^31

size_t mul_checked(Napi::Env env, std::initializer_list<size_t> xs, const char* what) {
  size_t p = 1;
  for (size_t x : xs) {
    if (x != 0 && p > (size_t(1) << 53) / x) range_error(env, std::string(what) + " is too large");
    p *= x;
  }
  return p;
}

fl::QOutMode parse_mode(const Napi::CallbackInfo& info, size_t i, bool allowInt32) {
  Napi::Value v = arg(info, i);
  const char* expected = allowInt32 ? "one of 'int32', 'float', 'codes'" : "one of 'float', 'codes'";
  if (!v.IsString()) type_error(info.Env(), "mode", expected, v);
  const std::string s = v.As<Napi::String>().Utf8Value();
  if (s == "float") return fl::QOutMode::Float;
  if (s == "codes") return fl::QOutMode::Codes;
  if (s == "int32" && allowInt32) return fl::QOutMode::Int32;
  range_error(info.Env(), std::string("Expected ") + expected + " for mode but received '" + s + "'");
}

// actScale / levels for codes mode (read from info[i], info[i+1]).
void act_params(const Napi::CallbackInfo& info, size_t i, double* actScale, double* levels) {
  const int bits = int(integer(info, i, "actBits", 1, 8));
  const double r = number(info, i + 1, "actRange");
  const float rf = float(r);
  const float L = float((1u << bits) - 1u), as = rf / L;
  *levels = double(L);
  *actScale = double(as);
  if (!(r > 0) || !std::isfinite(rf) || !(as >= FLT_MIN))
    range_error(info.Env(), "Expected a positive finite float32 for actRange (with actRange / (2^actBits - 1) normal) but received " +
                                std::to_string(r));
}

// Output buffer of the mode's element type holding exactly n elements.
void* out_buffer(const Napi::CallbackInfo& info, size_t i, fl::QOutMode mode, size_t n) {
  Napi::Env env = info.Env();
  switch (mode) {
    case fl::QOutMode::Int32: { I32 o = i32(info, i, "out"); exact(env, o, n, "out"); return o.data; }
    case fl::QOutMode::Float: { F32 o = f32(info, i, "out"); exact(env, o, n, "out"); return o.data; }
    default: { U8 o = u8(info, i, "out"); exact(env, o, n, "out"); return o.data; }
  }
}

// scale / bias ([N] each) for float and codes modes.
void scale_bias(const Napi::CallbackInfo& info, size_t i, fl::QOutMode mode, size_t N, fl::QOut* o) {
  if (mode == fl::QOutMode::Int32) return;
  F64 s = f64(info, i, "scale");
  F64 b = f64(info, i + 1, "bias");
  exact(info.Env(), s, N, "scale");
  exact(info.Env(), b, N, "bias");
  o->scale = s.data;
  o->bias = b.data;
}

// Optional layout flags at info[i], info[i + 1] (undefined / null: false): blocked input / output.
fl::QBlocked blocked_flags(const Napi::CallbackInfo& info, size_t i) {
  fl::QBlocked b;
  if (!is_nullish(info, i)) b.in = boolean(info, i, "inBlocked");
  if (!is_nullish(info, i + 1)) b.out = boolean(info, i + 1, "outBlocked");
  return b;
}
// Optional per-position term at info[i] (undefined / null: none): F64 of exactly n, 'float' / 'codes' only.
const double* corr_arg(const Napi::CallbackInfo& info, size_t i, fl::QOutMode mode, size_t n) {
  if (is_nullish(info, i)) return nullptr;
  F64 c = f64(info, i, "corr");
  exact(info.Env(), c, n, "corr");
  if (mode == fl::QOutMode::Int32) range_error(info.Env(), "Expected mode 'float' or 'codes' with corr but received 'int32'");
  return c.data;
}
// Items a batch of B occupies: B, or whole blocks of 16 in the blocked layout.
size_t items(size_t B, bool blocked) { return blocked ? fl::qblocked_items(B) : B; }

const uint8_t* weights(const Napi::CallbackInfo& info, size_t i, size_t N, size_t K) {
  U8 qw = u8(info, i, "qw");
  if (const char* err = fl::qweights_check(qw.data, qw.length, N, K))
    range_error(info.Env(), std::string("Invalid qw for N = ") + std::to_string(N) + ", K = " + std::to_string(K) + ": " + err +
                                " (repack it with qweightsRepack)");
  return qw.data;
}

Napi::Value QweightsBytes(const Napi::CallbackInfo& info) {
  const size_t N = size_t(integer(info, 0, "N", 1, kMaxDim)), K = size_t(integer(info, 1, "K", 1, kMaxK));
  mul_checked(info.Env(), {N, K, 2}, "N * K");
  return Napi::Number::New(info.Env(), double(fl::qweights_bytes(N, K)));
}

Napi::Value QweightsRepack(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  U8 packed = u8(info, 0, "packed");
  const int bits = int(integer(info, 1, "bits", 2, 8));
  if (bits != 2 && bits != 4 && bits != 8) range_error(env, "Expected 2, 4 or 8 for bits but received " + std::to_string(bits));
  const size_t N = size_t(integer(info, 2, "N", 1, kMaxDim)), K = size_t(integer(info, 3, "K", 1, kMaxK));
  const size_t nk = mul_checked(env, {N, K, 2}, "N * K") / 2;
  need(env, packed, (nk * size_t(bits) + 7) / 8, "packed");
  U8 dst = u8(info, 4, "dst");
  need(env, dst, fl::qweights_bytes(N, K), "dst");
  const fl::Isa isa = fl::qgemm_isa();
  fl::qweights_repack(packed.data, bits, N, K, isa, dst.data);
  return Napi::String::New(env, fl::isa_name(isa));
}

Napi::Value QweightsFromCodes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  I8 codes = i8(info, 0, "codes");
  const size_t N = size_t(integer(info, 1, "N", 1, kMaxDim)), K = size_t(integer(info, 2, "K", 1, kMaxK));
  exact(env, codes, mul_checked(env, {N, K, 2}, "N * K") / 2, "codes");
  U8 dst = u8(info, 3, "dst");
  need(env, dst, fl::qweights_bytes(N, K), "dst");
  const fl::Isa isa = fl::qgemm_isa();
  fl::qweights_from_codes(codes.data, N, K, 8, isa, dst.data);
  return Napi::String::New(env, fl::isa_name(isa));
}

Napi::Value Qgemm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  U8 A = u8(info, 0, "A");
  const size_t M = size_t(integer(info, 1, "M", 0, kMaxDim));
  const size_t K = size_t(integer(info, 2, "K", 1, kMaxK));
  const size_t lda = size_t(integer(info, 3, "lda", int64_t(K), kMaxDim));
  const size_t N = size_t(integer(info, 5, "N", 1, kMaxDim));
  const uint8_t* qw = weights(info, 4, N, K);
  const fl::QBlocked bl = blocked_flags(info, 13);
  if (bl.in && lda != K) range_error(env, "Expected lda == K for a blocked A but received lda = " + std::to_string(lda));
  if (bl.in) exact(env, A, mul_checked(env, {items(M, true), K}, "M * K"), "A");
  else if (M > 0) need(env, A, mul_checked(env, {M - 1, lda}, "M * lda") + K, "A");
  const fl::QOutMode mode = parse_mode(info, 6, true);
  void* out = out_buffer(info, 7, mode, mul_checked(env, {items(M, bl.out), N}, "M * N"));
  Napi::Value lv = arg(info, 8);
  if (!lv.IsString()) type_error(env, "layout", "'mn' or 'nm'", lv);
  const std::string layout = lv.As<Napi::String>().Utf8Value();
  if (layout != "mn" && layout != "nm") range_error(env, "Expected 'mn' or 'nm' for layout but received '" + layout + "'");
  if (bl.out && layout != "mn") range_error(env, "Expected layout 'mn' for a blocked output but received '" + layout + "'");
  fl::QOut o{};
  o.mode = mode;
  o.data = out;
  o.P = int64_t(std::max<size_t>(M, 1));
  o.strideImg = 0;
  o.strideP = layout == "mn" ? int64_t(N) : 1;
  o.strideN = layout == "mn" ? 1 : int64_t(M);
  scale_bias(info, 9, mode, N, &o);
  if (mode == fl::QOutMode::Codes) act_params(info, 11, &o.actScale, &o.levels);
  if (M == 0) return Napi::Number::New(env, 0);
  return Napi::Number::New(env, double(fl::qgemm_u8s8(A.data, M, K, lda, qw, o, fl::QConvPath::Auto, bl)));
}

Napi::Value Qconv2d(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  U8 x = u8(info, 0, "x");
  const size_t B = size_t(integer(info, 1, "B", 0, kMaxDim)), C = size_t(integer(info, 2, "C", 1, kMaxDim));
  const size_t H = size_t(integer(info, 3, "H", 1, kMaxDim)), W = size_t(integer(info, 4, "W", 1, kMaxDim));
  const size_t O = size_t(integer(info, 6, "O", 1, kMaxDim));
  const size_t kh = size_t(integer(info, 7, "kh", 1, 64)), kw = size_t(integer(info, 8, "kw", 1, 64));
  const size_t stride = size_t(integer(info, 9, "stride", 1, 64)), pad = size_t(integer(info, 10, "pad", 0, 64));
  if (H + 2 * pad < kh || W + 2 * pad < kw)
    range_error(env, "The kernel (" + std::to_string(kh) + "x" + std::to_string(kw) + ") is larger than the padded input (" +
                         std::to_string(H + 2 * pad) + "x" + std::to_string(W + 2 * pad) + ")");
  const size_t K = mul_checked(env, {C, kh, kw}, "C * kh * kw");
  if (K > size_t(kMaxK)) range_error(env, "Expected C * kh * kw <= 65536 but it is " + std::to_string(K));
  const uint8_t* qw = weights(info, 5, O, K);
  const fl::QBlocked bl = blocked_flags(info, 17);
  exact(env, x, mul_checked(env, {items(B, bl.in), C, H, W}, "B * C * H * W"), "x");
  const size_t OH = fl::conv_out(H, kh, stride, pad), OW = fl::conv_out(W, kw, stride, pad);
  const fl::QOutMode mode = parse_mode(info, 11, true);
  fl::QOut o{};
  o.mode = mode;
  o.data = out_buffer(info, 12, mode, mul_checked(env, {items(B, bl.out), O, OH, OW}, "B * O * OH * OW"));
  scale_bias(info, 13, mode, O, &o);
  if (mode == fl::QOutMode::Codes) act_params(info, 15, &o.actScale, &o.levels);
  o.corr = corr_arg(info, 19, mode, O * OH * OW);
  if (B == 0) return Napi::Number::New(env, 0);
  return Napi::Number::New(env, double(fl::qconv2d_u8(x.data, B, C, H, W, qw, kh, kw, stride, pad, o, fl::QConvPath::Auto, bl)));
}

// qconv2dPool(x, B, C, H, W, qw, O, kh, kw, stride, pad, poolK, poolStride, out: U8 [B*O*PH*PW], scale, bias,
//             actBits, actRange): conv + ReLU/requantise + max pool; returns the zero codes before pooling.
Napi::Value Qconv2dPool(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  U8 x = u8(info, 0, "x");
  const size_t B = size_t(integer(info, 1, "B", 0, kMaxDim)), C = size_t(integer(info, 2, "C", 1, kMaxDim));
  const size_t H = size_t(integer(info, 3, "H", 1, kMaxDim)), W = size_t(integer(info, 4, "W", 1, kMaxDim));
  const size_t O = size_t(integer(info, 6, "O", 1, kMaxDim));
  const size_t kh = size_t(integer(info, 7, "kh", 1, 64)), kw = size_t(integer(info, 8, "kw", 1, 64));
  const size_t stride = size_t(integer(info, 9, "stride", 1, 64)), pad = size_t(integer(info, 10, "pad", 0, 64));
  const size_t pk = size_t(integer(info, 11, "poolK", 1, 64)), ps = size_t(integer(info, 12, "poolStride", 1, 64));
  if (H + 2 * pad < kh || W + 2 * pad < kw)
    range_error(env, "The kernel (" + std::to_string(kh) + "x" + std::to_string(kw) + ") is larger than the padded input (" +
                         std::to_string(H + 2 * pad) + "x" + std::to_string(W + 2 * pad) + ")");
  const size_t K = mul_checked(env, {C, kh, kw}, "C * kh * kw");
  if (K > size_t(kMaxK)) range_error(env, "Expected C * kh * kw <= 65536 but it is " + std::to_string(K));
  const uint8_t* qw = weights(info, 5, O, K);
  const fl::QBlocked bl = blocked_flags(info, 18);
  exact(env, x, mul_checked(env, {items(B, bl.in), C, H, W}, "B * C * H * W"), "x");
  const size_t OH = fl::conv_out(H, kh, stride, pad), OW = fl::conv_out(W, kw, stride, pad);
  if (pk > OH || pk > OW)
    range_error(env, "Expected poolK <= the conv output (" + std::to_string(OH) + "x" + std::to_string(OW) + ") but received " +
                         std::to_string(pk));
  const size_t PH = (OH - pk) / ps + 1, PW = (OW - pk) / ps + 1;
  fl::QOut o{};
  o.mode = fl::QOutMode::Codes;
  o.data = out_buffer(info, 13, o.mode, mul_checked(env, {items(B, bl.out), O, PH, PW}, "B * O * PH * PW"));
  scale_bias(info, 14, o.mode, O, &o);
  act_params(info, 16, &o.actScale, &o.levels);
  o.corr = corr_arg(info, 20, o.mode, O * OH * OW);
  if (B == 0) return Napi::Number::New(env, 0);
  return Napi::Number::New(env, double(fl::qconv2d_pool_u8(x.data, B, C, H, W, qw, kh, kw, stride, pad, pk, ps, o,
                                                            fl::QConvPath::Auto, bl)));
}

Napi::Value Maxpool2dU8(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  U8 x = u8(info, 0, "x");
  const size_t planes = size_t(integer(info, 1, "planes", 0, kMaxDim));
  const size_t H = size_t(integer(info, 2, "H", 1, kMaxDim)), W = size_t(integer(info, 3, "W", 1, kMaxDim));
  const size_t k = size_t(integer(info, 4, "k", 1, 64)), s = size_t(integer(info, 5, "stride", 1, 64));
  if (k > H || k > W) range_error(env, "Expected k <= H and k <= W but received k = " + std::to_string(k));
  exact(env, x, mul_checked(env, {planes, H, W}, "planes * H * W"), "x");
  U8 y = u8(info, 6, "y");
  exact(env, y, planes * ((H - k) / s + 1) * ((W - k) / s + 1), "y");
  fl::maxpool2d_u8(x.data, planes, H, W, k, s, y.data);
  return env.Undefined();
}

Napi::Value Maxpool2dU8Blocked(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  U8 x = u8(info, 0, "x");
  const size_t B = size_t(integer(info, 1, "B", 0, kMaxDim)), C = size_t(integer(info, 2, "C", 1, kMaxDim));
  const size_t H = size_t(integer(info, 3, "H", 1, kMaxDim)), W = size_t(integer(info, 4, "W", 1, kMaxDim));
  const size_t k = size_t(integer(info, 5, "k", 1, 64)), s = size_t(integer(info, 6, "stride", 1, 64));
  if (k > H || k > W) range_error(env, "Expected k <= H and k <= W but received k = " + std::to_string(k));
  exact(env, x, mul_checked(env, {items(B, true), C, H, W}, "B * C * H * W"), "x");
  U8 y = u8(info, 7, "y");
  exact(env, y, items(B, true) * C * ((H - k) / s + 1) * ((W - k) / s + 1), "y");
  fl::maxpool2d_u8_blocked(x.data, B, C, H, W, k, s, y.data);
  return env.Undefined();
}

Napi::Value GlobalSumU8(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  U8 x = u8(info, 0, "x");
  const size_t planes = size_t(integer(info, 1, "planes", 0, kMaxDim));
  const size_t HW = size_t(integer(info, 2, "HW", 1, 1 << 23));  // 255 * 2^23 < 2^31
  exact(env, x, mul_checked(env, {planes, HW}, "planes * HW"), "x");
  I32 s = i32(info, 3, "sums");
  exact(env, s, planes, "sums");
  fl::global_sum_u8(x.data, planes, HW, s.data);
  return env.Undefined();
}

Napi::Value RequantU8(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  F64 y = f64(info, 0, "y");
  double as, levels;
  act_params(info, 1, &as, &levels);
  U8 q = u8(info, 3, "q");
  exact(env, q, y.length, "q");
  return Napi::Number::New(env, double(fl::requant_u8(y.data, y.length, as, levels, q.data)));
}

// One input of addRequantU8 at info[i .. i+3]: codes (U8) with scale s, or int32 accumulators (I32)
// with per-channel scale / bias (F64 [C]).
fl::QJoinIn join_arg(const Napi::CallbackInfo& info, size_t i, const char* name, size_t C, size_t* len) {
  Napi::Env env = info.Env();
  Napi::Value v = arg(info, i);
  fl::QJoinIn in{nullptr, nullptr, 0.0, nullptr, nullptr};
  const std::string n(name);
  if (v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_uint8_array) {
    U8 a = u8(info, i, name);
    in.codes = a.data; *len = a.length;
    in.s = number(info, i + 1, (n + "s").c_str());
    if (!std::isfinite(in.s)) range_error(env, "Expected a finite number for s" + n + " but received " + std::to_string(in.s));
  } else if (v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_int32_array) {
    I32 a = i32(info, i, name);
    in.acc = a.data; *len = a.length;
    F64 s = f64(info, i + 2, (n + "Scale").c_str());
    F64 b = f64(info, i + 3, (n + "Bias").c_str());
    exact(env, s, C, (n + "Scale").c_str());
    exact(env, b, C, (n + "Bias").c_str());
    in.scale = s.data; in.bias = b.data;
  } else {
    type_error(env, name, "Uint8Array (codes) or Int32Array (accumulators)", v);
  }
  return in;
}

Napi::Value AddRequantU8(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const size_t C = size_t(integer(info, 8, "C", 1, kMaxDim)), P = size_t(integer(info, 9, "P", 1, kMaxDim));
  size_t la = 0, lb = 0;
  const fl::QJoinIn a = join_arg(info, 0, "a", C, &la), b = join_arg(info, 4, "b", C, &lb);
  if (la % (C * P) != 0) range_error(env, "Expected a to hold whole planes of C * P = " + std::to_string(C * P) + " elements but it has " + std::to_string(la));
  if (lb != la) range_error(env, "Expected b to hold exactly " + std::to_string(la) + " elements but it has " + std::to_string(lb));
  double as, levels;
  act_params(info, 10, &as, &levels);
  U8 q = u8(info, 12, "q");
  exact(env, q, la, "q");
  return Napi::Number::New(env, double(fl::add_requant(a, b, la / P, C, P, as, levels, q.data)));
}

Napi::Value QgroupsEpilogue(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  I32 acc = i32(info, 0, "acc");
  const size_t G = size_t(integer(info, 1, "G", 1, 4096)), B = size_t(integer(info, 2, "B", 0, kMaxDim));
  const size_t O = size_t(integer(info, 3, "O", 1, kMaxDim)), P = size_t(integer(info, 4, "P", 1, kMaxDim));
  exact(env, acc, mul_checked(env, {G, B, O, P}, "G * B * O * P"), "acc");
  F64 gs = f64(info, 5, "gscale");
  exact(env, gs, G * O, "gscale");
  F64 bias = f64(info, 6, "bias");
  exact(env, bias, O, "bias");
  const double* corr = nullptr;
  if (!is_nullish(info, 7)) {
    F64 c = f64(info, 7, "corr");
    exact(env, c, O * P, "corr");
    corr = c.data;
  }
  const fl::QOutMode mode = parse_mode(info, 8, false);
  void* out = out_buffer(info, 9, mode, B * O * P);
  double as = 1, levels = 1;
  if (mode == fl::QOutMode::Codes) act_params(info, 10, &as, &levels);
  return Napi::Number::New(env, double(fl::qgroups_epilogue(acc.data, G, B, O, P, gs.data, bias.data, corr, mode, out, as, levels)));
}

Napi::Value QlinearI32(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  I32 A = i32(info, 0, "A");
  const size_t M = size_t(integer(info, 1, "M", 0, kMaxDim)), K = size_t(integer(info, 2, "K", 1, kMaxDim));
  exact(env, A, mul_checked(env, {M, K}, "M * K"), "A");
  I8 W = i8(info, 3, "W");
  const size_t N = size_t(integer(info, 4, "N", 1, kMaxDim));
  exact(env, W, mul_checked(env, {N, K}, "N * K"), "W");
  const fl::QOutMode mode = parse_mode(info, 5, false);
  fl::QOut o{};
  void* out = out_buffer(info, 6, mode, mul_checked(env, {M, N}, "M * N"));
  scale_bias(info, 7, mode, N, &o);
  double as = 1, levels = 1;
  if (mode == fl::QOutMode::Codes) act_params(info, 9, &as, &levels);
  return Napi::Number::New(env, double(fl::qlinear_i32(A.data, M, K, W.data, N, o.scale, o.bias, mode, out, as, levels)));
}

Napi::Value QconvRunsDirect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const size_t O = size_t(integer(info, 1, "O", 1, kMaxDim)), C = size_t(integer(info, 2, "C", 1, kMaxDim));
  const size_t H = size_t(integer(info, 3, "H", 1, kMaxDim)), W = size_t(integer(info, 4, "W", 1, kMaxDim));
  const size_t k = size_t(integer(info, 5, "k", 1, 64)), stride = size_t(integer(info, 6, "stride", 1, 64));
  const size_t pad = size_t(integer(info, 7, "pad", 0, 64));
  const size_t pk = size_t(integer(info, 8, "poolK", 1, 64)), ps = size_t(integer(info, 9, "poolStride", 1, 64));
  const fl::QOutMode mode = parse_mode(info, 10, true);
  const bool dense = boolean(info, 11, "dense");
  const size_t K = dense ? C : mul_checked(env, {C, k, k}, "C * k * k");
  if (K > size_t(kMaxK)) range_error(env, "Expected C * k * k <= 65536 but it is " + std::to_string(K));
  const uint8_t* qw = weights(info, 0, O, K);
  if (!dense && (H + 2 * pad < k || W + 2 * pad < k)) return Napi::Boolean::New(env, false);
  return Napi::Boolean::New(env, fl::qconv_runs_direct(qw, C, H, W, k, k, stride, pad, pk, ps, mode, dense));
}

// qgemmPeakProbe(iters): {macs, seconds, cpuSeconds} of the VNNI issue-rate loop on this thread
// (macs = 0 without AVX-512 VNNI). The CPU-time rate is the core's ceiling on a shared machine.
Napi::Value QgemmPeakProbe(const Napi::CallbackInfo& info) {
  const uint64_t iters = uint64_t(integer(info, 0, "iters", 1, int64_t(1) << 40));
  timespec c0{}, c1{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
  const auto t0 = std::chrono::steady_clock::now();
  const double macs = fl::qgemm_peak_probe(iters);
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("macs", macs);
  o.Set("seconds", wall);
  o.Set("cpuSeconds", double(c1.tv_sec - c0.tv_sec) + 1e-9 * double(c1.tv_nsec - c0.tv_nsec));
  return o;
}

void Init(Napi::Env env, Napi::Object exports) {
  exports.Set("qgemmPeakProbe", flb::fn(env, QgemmPeakProbe, "qgemmPeakProbe"));
  exports.Set("qconvRunsDirect", flb::fn(env, QconvRunsDirect, "qconvRunsDirect"));
  exports.Set("qweightsBytes", flb::fn(env, QweightsBytes, "qweightsBytes"));
  exports.Set("qweightsRepack", flb::fn(env, QweightsRepack, "qweightsRepack"));
  exports.Set("qweightsFromCodes", flb::fn(env, QweightsFromCodes, "qweightsFromCodes"));
  exports.Set("qgemm", flb::fn(env, Qgemm, "qgemm"));
  exports.Set("qconv2d", flb::fn(env, Qconv2d, "qconv2d"));
  exports.Set("qconv2dPool", flb::fn(env, Qconv2dPool, "qconv2dPool"));
  exports.Set("maxpool2dU8", flb::fn(env, Maxpool2dU8, "maxpool2dU8"));
  exports.Set("maxpool2dU8Blocked", flb::fn(env, Maxpool2dU8Blocked, "maxpool2dU8Blocked"));
  exports.Set("globalSumU8", flb::fn(env, GlobalSumU8, "globalSumU8"));
  exports.Set("requantU8", flb::fn(env, RequantU8, "requantU8"));
  exports.Set("addRequantU8", flb::fn(env, AddRequantU8, "addRequantU8"));
  exports.Set("qgroupsEpilogue", flb::fn(env, QgroupsEpilogue, "qgroupsEpilogue"));
  exports.Set("qlinearI32", flb::fn(env, QlinearI32, "qlinearI32"));
}

Register reg(Init);

}  // namespace
