// Node-API glue for the fp32 training kernels (native/kernels/{sgemm,im2col,conv2d,maxpool,peak}.cc).
// Glue only: every argument is checked (type, integer range, buffer length against the dims and
// leading dimensions, size overflow, outputs not overlapping other buffers), then one kernel runs.
// Errors are TypeError (wrong type) or RangeError (bad value / length), naming the argument.
//
//   sgemm(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)
//   im2col(x, col, N, C, H, W, KH, KW, stride, pad, padValues|null)     x (N,C,H,W) -> col (N, C*KH*KW, OH*OW)
//   col2im(col, x, N, C, H, W, KH, KW, stride, pad)                     col -> x (overwritten)
//   conv2dForward(x, w, bias|null, y, N, C, H, W, O, KH, KW, stride, pad, padValues|null)
//   conv2dBackward(x, w, dy, dx|null, dw|null, db|null, N, C, H, W, O, KH, KW, stride, pad, padValues|null)
//   maxpool2dForward(x, y, argmax, N, C, H, W, k, stride)
//   maxpool2dBackward(dy, argmax, dx, N, C, H, W, k, stride)
//   bn2dSums / bn2dApply / bn2dBackwardSums / bn2dBackwardDx: BatchNorm2d in float64 (flatenn/f32.h)
//   sgdStep(w, g, buf|null, lr, wd, mu, started, nesterov) -> boolean  (SGD over the parameter arena; false: a non-finite weight)
//   maxF32(x) -> number                                   (max ignoring NaN, -0 < +0; -Infinity if none)
//   allFinite(x) -> boolean                               (no Inf / NaN: the trainer's gradient check)
//   normalizeU8(raw, y, B, C, HW, mean, inv)              (y = float((raw - mean[c]) * inv[c]) in float64)
//   peakProbe(kind: 'fma512'|'fma256'|'vnni512'|'int8avx2'|'int4avx2', iters, threads) -> {ops, wallSeconds, cpuSeconds}
#include <napi.h>

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <string>
#include <utility>
#include <vector>

#include "args.h"
#include "flatenn/f32.h"

namespace {

using namespace flb;

constexpr int64_t kDimMax = 2147483647;         // every dim / leading dimension fits int32
constexpr int64_t kElemMax = int64_t(1) << 50;  // any element count (< 2^53 and any TypedArray)

// a * b with overflow / limit checking; `what` names the product in the message.
int64_t mul(Napi::Env env, int64_t a, int64_t b, const std::string& what) {
  int64_t r;
  if (__builtin_mul_overflow(a, b, &r) || r > kElemMax) range_error(env, what + " is too large (size overflow)");
  return r;
}
int64_t add(Napi::Env env, int64_t a, int64_t b, const std::string& what) {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r) || r > kElemMax) range_error(env, what + " is too large (size overflow)");
  return r;
}

int64_t dim(const Napi::CallbackInfo& info, size_t i, const char* name) { return integer(info, i, name, 1, kDimMax); }

// A buffer's first `n` elements, for overlap checks.
struct Span {
  const char* name;
  uintptr_t lo, hi;
};
template <class V>
Span span(const V& v, int64_t n, const char* name) {
  const uintptr_t lo = reinterpret_cast<uintptr_t>(v.data);
  return Span{name, lo, lo + uintptr_t(n) * sizeof(*v.data)};
}
// Each output must not share memory with any other buffer of the call.
void no_overlap(Napi::Env env, const std::vector<Span>& outputs, const std::vector<Span>& all) {
  for (const Span& o : outputs)
    for (const Span& a : all) {
      if (&a == &o || (a.lo == o.lo && a.hi == o.hi && a.name == o.name)) continue;
      if (o.lo < a.hi && a.lo < o.hi && o.hi > o.lo && a.hi > a.lo)
        range_error(env, std::string(o.name) + " must not overlap " + a.name + " (they share memory)");
    }
}

// ---- sgemm ------------------------------------------------------------------------------
Napi::Value Sgemm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const bool tA = boolean(info, 0, "transA"), tB = boolean(info, 1, "transB");
  const int64_t M = dim(info, 2, "M"), N = dim(info, 3, "N"), K = dim(info, 4, "K");
  const double alpha = number(info, 5, "alpha");
  F32 A = f32(info, 6, "A");
  const int64_t lda = dim(info, 7, "lda");
  F32 B = f32(info, 8, "B");
  const int64_t ldb = dim(info, 9, "ldb");
  const double beta = number(info, 10, "beta");
  F32 C = f32(info, 11, "C");
  const int64_t ldc = dim(info, 12, "ldc");
  // op(A) is M x K: stored K x M (lda >= M) when transposed, else M x K (lda >= K).
  const int64_t arows = tA ? K : M, acols = tA ? M : K, brows = tB ? N : K, bcols = tB ? K : N;
  if (lda < acols)
    range_error(env, "Expected lda >= " + std::to_string(acols) + (tA ? " (M, A transposed)" : " (K)") +
                         " but received " + std::to_string(lda));
  if (ldb < bcols)
    range_error(env, "Expected ldb >= " + std::to_string(bcols) + (tB ? " (K, B transposed)" : " (N)") +
                         " but received " + std::to_string(ldb));
  if (ldc < N) range_error(env, "Expected ldc >= " + std::to_string(N) + " (N) but received " + std::to_string(ldc));
  const int64_t na = add(env, mul(env, arows - 1, lda, "A"), acols, "A");
  const int64_t nb = add(env, mul(env, brows - 1, ldb, "B"), bcols, "B");
  const int64_t nc = add(env, mul(env, M - 1, ldc, "C"), N, "C");
  mul(env, mul(env, M, N, "M*N"), K, "M*N*K");
  need(env, A, size_t(na), "A");
  need(env, B, size_t(nb), "B");
  need(env, C, size_t(nc), "C");
  const std::vector<Span> all = {span(A, na, "A"), span(B, nb, "B"), span(C, nc, "C")};
  no_overlap(env, {all[2]}, all);
  fl::sgemm(tA, tB, M, N, K, float(alpha), A.data, lda, B.data, ldb, float(beta), C.data, ldc);
  return env.Undefined();
}

// ---- convolution geometry -----------------------------------------------------------------
struct Geo {
  fl::ConvShape s;
  int64_t nx, nw, ny, ncol;  // element counts of x, w, y, col
};

// Reads N, C, H, W, [O,] KH, KW, stride, pad starting at argument `i` and checks that the
// output is at least 1 x 1.
Geo geometry(const Napi::CallbackInfo& info, size_t i, bool has_o) {
  Napi::Env env = info.Env();
  fl::ConvShape s{};
  s.N = dim(info, i++, "N");
  s.C = dim(info, i++, "C");
  s.H = dim(info, i++, "H");
  s.W = dim(info, i++, "W");
  s.O = has_o ? dim(info, i++, "O") : 1;
  s.KH = dim(info, i++, "KH");
  s.KW = dim(info, i++, "KW");
  s.stride = integer(info, i++, "stride", 1, kDimMax);
  s.pad = integer(info, i++, "pad", 0, kDimMax);
  const int64_t ph = add(env, s.H, mul(env, 2, s.pad, "pad"), "H + 2*pad");
  const int64_t pw = add(env, s.W, mul(env, 2, s.pad, "pad"), "W + 2*pad");
  if (s.KH > ph)
    range_error(env, "Expected KH <= H + 2*pad (" + std::to_string(ph) + ") but received KH " + std::to_string(s.KH) +
                         ": the output would be empty");
  if (s.KW > pw)
    range_error(env, "Expected KW <= W + 2*pad (" + std::to_string(pw) + ") but received KW " + std::to_string(s.KW) +
                         ": the output would be empty");
  Geo g{s, 0, 0, 0, 0};
  g.nx = mul(env, mul(env, mul(env, s.N, s.C, "x"), s.H, "x"), s.W, "x");
  const int64_t ckk = mul(env, mul(env, s.C, s.KH, "w"), s.KW, "w");
  const int64_t p = mul(env, s.OH(), s.OW(), "OH*OW");
  g.nw = mul(env, s.O, ckk, "w");
  g.ny = mul(env, mul(env, s.N, s.O, "y"), p, "y");
  g.ncol = mul(env, mul(env, s.N, ckk, "col"), p, "col");
  // Per-image work buffers of the kernels (C*KH*KW x OH*OW floats) must be addressable too.
  mul(env, ckk, p, "C*KH*KW*OH*OW");
  return g;
}

// padValues: null/undefined or a Float32Array of C elements.
const float* pad_values(const Napi::CallbackInfo& info, size_t i, int64_t C, std::vector<Span>* spans) {
  if (is_nullish(info, i)) return nullptr;
  Napi::Value v = arg(info, i);
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    type_error(info.Env(), "padValues", "a Float32Array or null", v);
  F32 pv = f32(info, i, "padValues");
  exact(info.Env(), pv, size_t(C), "padValues");
  spans->push_back(span(pv, C, "padValues"));
  return pv.data;
}

// An optional Float32Array output (null/undefined allowed) of at least n elements.
float* optional_out(const Napi::CallbackInfo& info, size_t i, const char* name, int64_t n, std::vector<Span>* outs) {
  if (is_nullish(info, i)) return nullptr;
  Napi::Value v = arg(info, i);
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    type_error(info.Env(), name, "a Float32Array or null", v);
  F32 a = f32(info, i, name);
  need(info.Env(), a, size_t(n), name);
  outs->push_back(span(a, n, name));
  return a.data;
}

// ---- im2col / col2im ----------------------------------------------------------------------
Napi::Value Im2col(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  F32 x = f32(info, 0, "x");
  F32 col = f32(info, 1, "col");
  const Geo g = geometry(info, 2, false);
  need(env, x, size_t(g.nx), "x");
  need(env, col, size_t(g.ncol), "col");
  std::vector<Span> all = {span(x, g.nx, "x"), span(col, g.ncol, "col")};
  const float* pv = pad_values(info, 10, g.s.C, &all);
  no_overlap(env, {all[1]}, all);
  const int64_t P = g.s.P(), CKK = g.s.CKK(), xs = g.s.C * g.s.H * g.s.W;
  for (int64_t n = 0; n < g.s.N; ++n) fl::im2col(x.data + n * xs, col.data + n * CKK * P, P, g.s, pv, 0, g.s.OH());
  return env.Undefined();
}

Napi::Value Col2im(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  F32 col = f32(info, 0, "col");
  F32 x = f32(info, 1, "x");
  const Geo g = geometry(info, 2, false);
  need(env, col, size_t(g.ncol), "col");
  need(env, x, size_t(g.nx), "x");
  const std::vector<Span> all = {span(col, g.ncol, "col"), span(x, g.nx, "x")};
  no_overlap(env, {all[1]}, all);
  const int64_t P = g.s.P(), CKK = g.s.CKK(), xs = g.s.C * g.s.H * g.s.W;
  for (int64_t n = 0; n < g.s.N; ++n) fl::col2im(col.data + n * CKK * P, P, x.data + n * xs, g.s);
  return env.Undefined();
}

// ---- conv2d -----------------------------------------------------------------------------------
Napi::Value Conv2dForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  F32 x = f32(info, 0, "x");
  F32 w = f32(info, 1, "w");
  const Geo g = geometry(info, 4, true);
  std::vector<Span> all = {span(x, g.nx, "x"), span(w, g.nw, "w")};
  const float* bias = nullptr;
  if (!is_nullish(info, 2)) {
    Napi::Value v = arg(info, 2);
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
      type_error(env, "bias", "a Float32Array or null", v);
    F32 b = f32(info, 2, "bias");
    need(env, b, size_t(g.s.O), "bias");
    all.push_back(span(b, g.s.O, "bias"));
    bias = b.data;
  }
  F32 y = f32(info, 3, "y");
  need(env, x, size_t(g.nx), "x");
  need(env, w, size_t(g.nw), "w");
  need(env, y, size_t(g.ny), "y");
  all.push_back(span(y, g.ny, "y"));
  const Span ys = all.back();
  const float* pv = pad_values(info, 13, g.s.C, &all);
  no_overlap(env, {ys}, all);
  fl::conv2d_forward(x.data, w.data, bias, y.data, g.s, pv);
  return env.Undefined();
}

Napi::Value Conv2dBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  F32 x = f32(info, 0, "x");
  F32 w = f32(info, 1, "w");
  F32 dy = f32(info, 2, "dy");
  const Geo g = geometry(info, 6, true);
  need(env, x, size_t(g.nx), "x");
  need(env, w, size_t(g.nw), "w");
  need(env, dy, size_t(g.ny), "dy");
  std::vector<Span> outs;
  float* dx = optional_out(info, 3, "dx", g.nx, &outs);
  float* dw = optional_out(info, 4, "dw", g.nw, &outs);
  float* db = optional_out(info, 5, "db", g.s.O, &outs);
  std::vector<Span> all = {span(x, g.nx, "x"), span(w, g.nw, "w"), span(dy, g.ny, "dy")};
  const float* pv = pad_values(info, 15, g.s.C, &all);
  all.insert(all.end(), outs.begin(), outs.end());
  no_overlap(env, outs, all);
  if (dx || dw || db) fl::conv2d_backward(x.data, w.data, dy.data, dx, dw, db, g.s, pv);
  return env.Undefined();
}

// ---- max pooling --------------------------------------------------------------------------
struct PoolGeo {
  int64_t N, C, H, W, k, s, nx, ny;
};
PoolGeo pool_geometry(const Napi::CallbackInfo& info, size_t i) {
  Napi::Env env = info.Env();
  PoolGeo p{};
  p.N = dim(info, i, "N");
  p.C = dim(info, i + 1, "C");
  p.H = dim(info, i + 2, "H");
  p.W = dim(info, i + 3, "W");
  p.k = dim(info, i + 4, "k");
  p.s = integer(info, i + 5, "stride", 1, kDimMax);
  if (p.k > p.H || p.k > p.W)
    range_error(env, "Expected k <= H and k <= W (no padding) but received k " + std::to_string(p.k) + " for " +
                         std::to_string(p.H) + "x" + std::to_string(p.W) + ": the output would be empty");
  const int64_t hw = mul(env, p.H, p.W, "H*W");
  if (hw > kDimMax) range_error(env, "H*W must be below 2^31 (argmax indices are Int32) but is " + std::to_string(hw));
  p.nx = mul(env, mul(env, p.N, p.C, "x"), hw, "x");
  p.ny = mul(env, mul(env, p.N, p.C, "y"), ((p.H - p.k) / p.s + 1) * ((p.W - p.k) / p.s + 1), "y");
  return p;
}

// ---- BatchNorm2d ---------------------------------------------------------------------
// Shapes (N, C, HW) from args i..i+2; every buffer's length is checked against them.
struct BnGeo {
  int64_t N, C, HW, n;
};
BnGeo bn_geometry(const Napi::CallbackInfo& info, size_t i) {
  BnGeo g{dim(info, i, "N"), dim(info, i + 1, "C"), dim(info, i + 2, "HW"), 0};
  g.n = mul(info.Env(), mul(info.Env(), g.N, g.C, "x"), g.HW, "x");
  return g;
}

//   bn2dSums(x, N, C, HW, sum: F64[C], sumsq: F64[C])
Napi::Value Bn2dSums(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  F32 x = f32(info, 0, "x");
  const BnGeo g = bn_geometry(info, 1);
  F64 sum = f64(info, 4, "sum"), sq = f64(info, 5, "sumsq");
  need(env, x, size_t(g.n), "x");
  need(env, sum, size_t(g.C), "sum");
  need(env, sq, size_t(g.C), "sumsq");
  const std::vector<Span> all = {span(x, g.n, "x"), span(sum, g.C, "sum"), span(sq, g.C, "sumsq")};
  no_overlap(env, {all[1], all[2]}, all);
  fl::bn2d_sums(x.data, g.N, g.C, g.HW, sum.data, sq.data);
  return env.Undefined();
}

//   bn2dApply(x, y, N, C, HW, mean: F64[C], invstd: F64[C], gamma: F32[C], beta: F32[C])
Napi::Value Bn2dApply(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  F32 x = f32(info, 0, "x"), y = f32(info, 1, "y");
  const BnGeo g = bn_geometry(info, 2);
  F64 mean = f64(info, 5, "mean"), is = f64(info, 6, "invstd");
  F32 gamma = f32(info, 7, "gamma"), beta = f32(info, 8, "beta");
  need(env, x, size_t(g.n), "x");
  need(env, y, size_t(g.n), "y");
  need(env, mean, size_t(g.C), "mean");
  need(env, is, size_t(g.C), "invstd");
  need(env, gamma, size_t(g.C), "gamma");
  need(env, beta, size_t(g.C), "beta");
  const std::vector<Span> all = {span(y, g.n, "y"), span(x, g.n, "x"), span(mean, g.C, "mean"), span(is, g.C, "invstd"), span(gamma, g.C, "gamma"), span(beta, g.C, "beta")};
  no_overlap(env, {all[0]}, all);
  fl::bn2d_apply(x.data, y.data, g.N, g.C, g.HW, mean.data, is.data, gamma.data, beta.data);
  return env.Undefined();
}

//   bn2dBackwardSums(x, dy, N, C, HW, mean, invstd, sumdy: F64[C], sumdyxhat: F64[C])
Napi::Value Bn2dBackwardSums(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  F32 x = f32(info, 0, "x"), dy = f32(info, 1, "dy");
  const BnGeo g = bn_geometry(info, 2);
  F64 mean = f64(info, 5, "mean"), is = f64(info, 6, "invstd"), sa = f64(info, 7, "sumdy"), sb = f64(info, 8, "sumdyxhat");
  need(env, x, size_t(g.n), "x");
  need(env, dy, size_t(g.n), "dy");
  need(env, mean, size_t(g.C), "mean");
  need(env, is, size_t(g.C), "invstd");
  need(env, sa, size_t(g.C), "sumdy");
  need(env, sb, size_t(g.C), "sumdyxhat");
  const std::vector<Span> all = {span(sa, g.C, "sumdy"), span(sb, g.C, "sumdyxhat"), span(x, g.n, "x"), span(dy, g.n, "dy"), span(mean, g.C, "mean"), span(is, g.C, "invstd")};
  no_overlap(env, {all[0], all[1]}, all);
  fl::bn2d_backward_sums(x.data, dy.data, g.N, g.C, g.HW, mean.data, is.data, sa.data, sb.data);
  return env.Undefined();
}

//   bn2dBackwardDx(x, dy, dx, N, C, HW, mean, invstd, gamma, sumdy, sumdyxhat, training)
Napi::Value Bn2dBackwardDx(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  F32 x = f32(info, 0, "x"), dy = f32(info, 1, "dy"), dx = f32(info, 2, "dx");
  const BnGeo g = bn_geometry(info, 3);
  F64 mean = f64(info, 6, "mean"), is = f64(info, 7, "invstd");
  F32 gamma = f32(info, 8, "gamma");
  F64 sa = f64(info, 9, "sumdy"), sb = f64(info, 10, "sumdyxhat");
  const bool training = boolean(info, 11, "training");
  need(env, x, size_t(g.n), "x");
  need(env, dy, size_t(g.n), "dy");
  need(env, dx, size_t(g.n), "dx");
  need(env, mean, size_t(g.C), "mean");
  need(env, is, size_t(g.C), "invstd");
  need(env, gamma, size_t(g.C), "gamma");
  need(env, sa, size_t(g.C), "sumdy");
  need(env, sb, size_t(g.C), "sumdyxhat");
  const std::vector<Span> all = {span(dx, g.n, "dx"), span(x, g.n, "x"), span(dy, g.n, "dy"), span(mean, g.C, "mean"), span(is, g.C, "invstd"), span(gamma, g.C, "gamma"), span(sa, g.C, "sumdy"), span(sb, g.C, "sumdyxhat")};
  no_overlap(env, {all[0]}, all);
  fl::bn2d_backward_dx(x.data, dy.data, dx.data, g.N, g.C, g.HW, mean.data, is.data, gamma.data, sa.data, sb.data, training);
  return env.Undefined();
}

Napi::Value MaxpoolForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  F32 x = f32(info, 0, "x");
  F32 y = f32(info, 1, "y");
  I32 am = i32(info, 2, "argmax");
  const PoolGeo p = pool_geometry(info, 3);
  need(env, x, size_t(p.nx), "x");
  need(env, y, size_t(p.ny), "y");
  need(env, am, size_t(p.ny), "argmax");
  const std::vector<Span> all = {span(x, p.nx, "x"), span(y, p.ny, "y"), span(am, p.ny, "argmax")};
  no_overlap(env, {all[1], all[2]}, all);
  fl::maxpool2d_forward(x.data, y.data, am.data, p.N, p.C, p.H, p.W, p.k, p.s);
  return env.Undefined();
}

Napi::Value MaxpoolBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  F32 dy = f32(info, 0, "dy");
  I32 am = i32(info, 1, "argmax");
  F32 dx = f32(info, 2, "dx");
  const PoolGeo p = pool_geometry(info, 3);
  need(env, dy, size_t(p.ny), "dy");
  need(env, am, size_t(p.ny), "argmax");
  need(env, dx, size_t(p.nx), "dx");
  const std::vector<Span> all = {span(dy, p.ny, "dy"), span(am, p.ny, "argmax"), span(dx, p.nx, "dx")};
  no_overlap(env, {all[2]}, all);
  if (!fl::maxpool2d_backward(dy.data, am.data, dx.data, p.N, p.C, p.H, p.W, p.k, p.s)) {
    const int64_t hw = p.H * p.W;
    for (int64_t i = 0; i < p.ny; ++i)
      if (am.data[i] < 0 || am.data[i] >= hw)
        range_error(env, "Expected every argmax entry in [0, H*W = " + std::to_string(hw) + ") but argmax[" +
                             std::to_string(i) + "] is " + std::to_string(am.data[i]) + " (dx is incomplete)");
  }
  return env.Undefined();
}

// ---- peak probes ----------------------------------------------------------------------------
Napi::Value PeakProbe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  static const std::pair<const char*, fl::PeakKind> kKinds[] = {{"fma512", fl::PeakKind::Fma512}, {"fma256", fl::PeakKind::Fma256},
                                                                 {"vnni512", fl::PeakKind::Vnni512}, {"int8avx2", fl::PeakKind::Int8Avx2},
                                                                 {"int4avx2", fl::PeakKind::Int4Avx2}};
  std::string names;
  for (const auto& kk : kKinds) names += std::string(names.empty() ? "" : ", ") + "'" + kk.first + "'";
  Napi::Value k = arg(info, 0);
  if (!k.IsString()) type_error(env, "kind", ("one of " + names).c_str(), k);
  const std::string name = k.As<Napi::String>().Utf8Value();
  const auto* hit = std::find_if(std::begin(kKinds), std::end(kKinds), [&](const auto& kk) { return name == kk.first; });
  if (hit == std::end(kKinds)) range_error(env, "Expected one of " + names + " for kind but received '" + name + "'");
  const fl::PeakKind kind = hit->second;
  const int64_t iters = integer(info, 1, "iters", 1, int64_t(1) << 40);
  const int64_t threads = integer(info, 2, "threads", 1, 256);
  if (!fl::peak_supported(kind)) range_error(env, "kind '" + name + "' is not supported by this CPU");
  const fl::PeakResult r = fl::peak_probe(kind, uint64_t(iters), int(threads));
  Napi::Object o = Napi::Object::New(env);
  o.Set("ops", Napi::Number::New(env, r.ops));
  o.Set("wallSeconds", Napi::Number::New(env, r.wall_seconds));
  o.Set("cpuSeconds", Napi::Number::New(env, r.cpu_seconds));
  return o;
}

// ---- optimiser / observer loops -------------------------------------------------------------
// sgdStep(w, g, buf|null, lr, wd, mu, started, nesterov) -> true if every updated weight is finite
Napi::Value SgdStep(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  F32 w = f32(info, 0, "w");
  F32 g = f32(info, 1, "g");
  F32 buf{nullptr, 0};
  if (!is_nullish(info, 2)) buf = f32(info, 2, "buf");
  const double lr = number(info, 3, "lr"), wd = number(info, 4, "wd"), mu = number(info, 5, "mu");
  const bool started = boolean(info, 6, "started"), nesterov = boolean(info, 7, "nesterov");
  exact(env, g, w.length, "g");
  if (mu > 0.0 && !buf.data) range_error(env, "Expected a momentum buffer (buf) when mu > 0");
  const int64_t n = int64_t(w.length);
  std::vector<Span> all = {span(w, n, "w"), span(g, n, "g")};
  if (buf.data) {
    exact(env, buf, w.length, "buf");
    all.push_back(span(buf, n, "buf"));
  }
  no_overlap(env, buf.data ? std::vector<Span>{all[0], all[2]} : std::vector<Span>{all[0]}, all);
  return Napi::Boolean::New(env, fl::sgd_step(w.data, g.data, buf.data, w.length, lr, wd, mu, started, nesterov));
}

// sumSquares(x, start) -> start + sum of x[i]^2 in double, one chain in index order
Napi::Value SumSquares(const Napi::CallbackInfo& info) {
  F32 x = f32(info, 0, "x");
  const double start = number(info, 1, "start");
  return Napi::Number::New(info.Env(), fl::sum_squares_f64(x.data, x.length, start));
}

// scaleToF32(g, s, out): out[i] = float(s * g[i]) (double product)
Napi::Value ScaleToF32(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  F32 g = f32(info, 0, "g");
  const double sc = number(info, 1, "s");
  F32 out = f32(info, 2, "out");
  exact(env, out, g.length, "out");
  const int64_t n = int64_t(g.length);
  const std::vector<Span> all = {span(g, n, "g"), span(out, n, "out")};
  no_overlap(env, {all[1]}, all);
  fl::scale_to_f32(g.data, g.length, sc, out.data);
  return env.Undefined();
}

// addScaledF32(d, g, s): d[i] = float(d[i] + s * g[i]) (double arithmetic)
Napi::Value AddScaledF32(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  F32 d = f32(info, 0, "d");
  F32 g = f32(info, 1, "g");
  const double sc = number(info, 2, "s");
  exact(env, g, d.length, "g");
  const int64_t n = int64_t(d.length);
  const std::vector<Span> all = {span(d, n, "d"), span(g, n, "g")};
  no_overlap(env, {all[0]}, all);
  fl::add_scaled_f32(d.data, g.data, d.length, sc);
  return env.Undefined();
}

// addF32(a, b, out): out[i] = a[i] + b[i] (float32); out may be a or b, nothing else may overlap
Napi::Value AddF32(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  F32 a = f32(info, 0, "a");
  F32 b = f32(info, 1, "b");
  F32 out = f32(info, 2, "out");
  exact(env, b, a.length, "b");
  exact(env, out, a.length, "out");
  const int64_t n = int64_t(a.length);
  const Span sa = span(a, n, "a"), sb = span(b, n, "b"), so = span(out, n, "out");
  // elementwise: out may alias an input exactly, but must not overlap one partly
  for (const Span& in : {sa, sb})
    if (in.lo != so.lo) no_overlap(env, {so}, {in, so});
  fl::add_f32(a.data, b.data, a.length, out.data);
  return env.Undefined();
}

// maxF32(x) -> the largest value ignoring NaN (-0 < +0), -Infinity when there is none
Napi::Value MaxF32(const Napi::CallbackInfo& info) {
  F32 x = f32(info, 0, "x");
  return Napi::Number::New(info.Env(), double(fl::max_ignoring_nan(x.data, x.length)));
}

// allFinite(x) -> true if no element is Inf or NaN
Napi::Value AllFinite(const Napi::CallbackInfo& info) {
  F32 x = f32(info, 0, "x");
  return Napi::Boolean::New(info.Env(), fl::all_finite(x.data, x.length));
}

// normalizeU8(raw, y, B, C, HW, mean: F64[C], inv: F64[C]): y = float((raw - mean[c]) * inv[c]) in double
Napi::Value NormalizeU8(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  U8 raw = u8(info, 0, "raw");
  F32 y = f32(info, 1, "y");
  const int64_t B = integer(info, 2, "B", 0, kDimMax), C = dim(info, 3, "C"), HW = dim(info, 4, "HW");
  F64 mean = f64(info, 5, "mean"), inv = f64(info, 6, "inv");
  const int64_t n = mul(env, mul(env, B, C, "B*C*HW"), HW, "B*C*HW");
  need(env, raw, size_t(n), "raw");
  exact(env, y, size_t(n), "y");
  exact(env, mean, size_t(C), "mean");
  exact(env, inv, size_t(C), "inv");
  const std::vector<Span> all = {span(raw, n, "raw"), span(y, n, "y")};
  no_overlap(env, {all[1]}, all);
  fl::normalize_u8(raw.data, y.data, size_t(B), size_t(C), size_t(HW), mean.data, inv.data);
  return env.Undefined();
}

void Init(Napi::Env env, Napi::Object exports) {
  exports.Set("sgemm", flb::fn(env, Sgemm, "sgemm"));
  exports.Set("im2col", flb::fn(env, Im2col, "im2col"));
  exports.Set("col2im", flb::fn(env, Col2im, "col2im"));
  exports.Set("conv2dForward", flb::fn(env, Conv2dForward, "conv2dForward"));
  exports.Set("conv2dBackward", flb::fn(env, Conv2dBackward, "conv2dBackward"));
  exports.Set("maxpool2dForward", flb::fn(env, MaxpoolForward, "maxpool2dForward"));
  exports.Set("bn2dSums", flb::fn(env, Bn2dSums, "bn2dSums"));
  exports.Set("bn2dApply", flb::fn(env, Bn2dApply, "bn2dApply"));
  exports.Set("bn2dBackwardSums", flb::fn(env, Bn2dBackwardSums, "bn2dBackwardSums"));
  exports.Set("bn2dBackwardDx", flb::fn(env, Bn2dBackwardDx, "bn2dBackwardDx"));
  exports.Set("maxpool2dBackward", flb::fn(env, MaxpoolBackward, "maxpool2dBackward"));
  exports.Set("peakProbe", flb::fn(env, PeakProbe, "peakProbe"));
  exports.Set("sgdStep", flb::fn(env, SgdStep, "sgdStep"));
  exports.Set("sumSquares", flb::fn(env, SumSquares, "sumSquares"));
  exports.Set("scaleToF32", flb::fn(env, ScaleToF32, "scaleToF32"));
  exports.Set("addScaledF32", flb::fn(env, AddScaledF32, "addScaledF32"));
  exports.Set("addF32", flb::fn(env, AddF32, "addF32"));
  exports.Set("maxF32", flb::fn(env, MaxF32, "maxF32"));
  exports.Set("allFinite", flb::fn(env, AllFinite, "allFinite"));
  exports.Set("normalizeU8", flb::fn(env, NormalizeU8, "normalizeU8"));
}

Register reg(Init);

}  // namespace
