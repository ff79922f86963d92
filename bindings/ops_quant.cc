// Node-API glue for the quantisation and fault kernels (native/kernels/quant.cc,
// faults.cc). Validation only; every bad argument throws a TypeError/RangeError
// naming it. Signatures (JS):
//   fakeQuantWeight(w: F32, out: F32, codes: I8|null, scales: F32, bits: 2|4|8, channels): void
//   reluFakeQuant(x: F32, y: F32, mask: U8|null, bits: 0..16, r: number): number   (max of x)
//   maskedGrad(dy: F32, mask: U8, dx: F32): void
//   countZeros(x: F32): number
//   packInt(codes: I8, bits: 2|4|8, out: U8): void          (out.length = ceil(n*bits/8))
//   unpackInt(packed: U8, bits: 2|4|8, n, out: I8): void     (packed.length >= ceil(n*bits/8))
//   faultMaskApply(src: U8, flip: U8|null, sa0: U8|null, sa1: U8|null, dst: U8): void
//   faultOrder(seed, trial, cells, eligible: U8|null, kmax, out: U32): number
//   faultSelectBernoulli(seed, trial, cells, eligible: U8|null, p, out: U32): number (total; min(total, out.length) written)
//   faultOrderWeights(seed, trial, layerWeightStart: U32, layerBits: U8, layerEligibleBits: U8|null, kmax, out: U32): number
//   cellsToMask(cells: U32, count, layerCellStart: U32, layerByteStart: U32, mask: U8): void
#include <napi.h>

#include <cfloat>
#include <cmath>
#include <string>

#include "args.h"
#include "flatenn/quant.h"

namespace {

using namespace flb;

constexpr int64_t kMaxCells = 4294967296LL;  // cell indices are uint32

int weight_bits(const Napi::CallbackInfo& info, size_t i, const char* name) {
  const int b = int(integer(info, i, name, 2, 8));
  if (b != 2 && b != 4 && b != 8)
    range_error(info.Env(), std::string("Expected 2, 4 or 8 for ") + name + " but received " + std::to_string(b));
  return b;
}

Napi::Value FakeQuantWeight(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  F32 w = f32(info, 0, "w");
  F32 out = f32(info, 1, "out");
  I8 codes{nullptr, 0};
  if (!is_nullish(info, 2)) codes = i8(info, 2, "codes");
  F32 scales = f32(info, 3, "scales");
  const int bits = weight_bits(info, 4, "bits");
  const size_t channels = size_t(integer(info, 5, "channels", 1, std::max<int64_t>(1, int64_t(w.length))));
  if (w.length % channels != 0)
    range_error(env, "Expected channels to divide the weight count " + std::to_string(w.length) + " but received " +
                         std::to_string(channels));
  exact(env, out, w.length, "out");
  if (codes.data) exact(env, codes, w.length, "codes");
  exact(env, scales, channels, "scales");
  if (!fl::fake_quant_weight(w.data, out.data, codes.data, scales.data, w.length, bits, channels))
    range_error(env, "Expected finite values in w but it holds Inf or NaN");
  return env.Undefined();
}

Napi::Value ReluFakeQuant(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  F32 x = f32(info, 0, "x");
  F32 y = f32(info, 1, "y");
  U8 mask{nullptr, 0};
  if (!is_nullish(info, 2)) mask = u8(info, 2, "mask");
  const int bits = int(integer(info, 3, "bits", 0, 16));
  const double rd = number(info, 4, "r");
  const float r = float(rd);
  if (!(rd > 0) || !std::isfinite(r))
    range_error(env, "Expected a positive finite float32 for r but received " + std::to_string(rd));
  if (bits > 0 && !(r / float((1u << bits) - 1u) >= FLT_MIN))
    range_error(env, "Expected r / (2^bits - 1) to be a normal float32 but r = " + std::to_string(rd) + " is too small");
  exact(env, y, x.length, "y");
  if (mask.data) exact(env, mask, x.length, "mask");
  U8 codes{nullptr, 0};
  if (!is_nullish(info, 5)) {
    codes = u8(info, 5, "codes");
    if (bits < 1 || bits > 8) range_error(env, "Expected bits in [1, 8] with codes but received " + std::to_string(bits));
    exact(env, codes, x.length, "codes");
  }
  return Napi::Number::New(env, fl::relu_fake_quant(x.data, y.data, mask.data, codes.data, x.length, bits, r));
}

Napi::Value MaskedGrad(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  F32 dy = f32(info, 0, "dy");
  U8 mask = u8(info, 1, "mask");
  F32 dx = f32(info, 2, "dx");
  exact(env, mask, dy.length, "mask");
  exact(env, dx, dy.length, "dx");
  fl::masked_grad(dy.data, mask.data, dx.data, dy.length);
  return env.Undefined();
}

Napi::Value CountZeros(const Napi::CallbackInfo& info) {
  F32 x = f32(info, 0, "x");
  return Napi::Number::New(info.Env(), double(fl::count_zeros(x.data, x.length)));
}

Napi::Value PackInt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  I8 codes = i8(info, 0, "codes");
  const int bits = weight_bits(info, 1, "bits");
  U8 out = u8(info, 2, "out");
  exact(env, out, fl::packed_bytes(codes.length, bits), "out");
  const size_t bad = fl::pack_int(codes.data, codes.length, bits, out.data);
  if (bad != codes.length)
    range_error(env, "Expected codes in [" + std::to_string(-(1 << (bits - 1))) + ", " +
                         std::to_string((1 << (bits - 1)) - 1) + "] for " + std::to_string(bits) +
                         "-bit packing but codes[" + std::to_string(bad) + "] = " + std::to_string(int(codes.data[bad])));
  return env.Undefined();
}

Napi::Value UnpackInt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  U8 packed = u8(info, 0, "packed");
  const int bits = weight_bits(info, 1, "bits");
  const size_t n = size_t(integer(info, 2, "n", 0, 9007199254740991LL / 8));
  I8 out = i8(info, 3, "out");
  need(env, packed, fl::packed_bytes(n, bits), "packed");
  exact(env, out, n, "out");
  fl::unpack_int(packed.data, bits, n, out.data);
  return env.Undefined();
}

Napi::Value FaultMaskApply(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  U8 src = u8(info, 0, "src");
  const char* names[3] = {"flip", "sa0", "sa1"};
  U8 m[3] = {{nullptr, 0}, {nullptr, 0}, {nullptr, 0}};
  for (int k = 0; k < 3; ++k)
    if (!is_nullish(info, size_t(1 + k))) {
      m[k] = u8(info, size_t(1 + k), names[k]);
      exact(env, m[k], src.length, names[k]);
    }
  U8 dst = u8(info, 4, "dst");
  exact(env, dst, src.length, "dst");
  fl::fault_mask_apply(src.data, m[0].data, m[1].data, m[2].data, dst.data, src.length);
  return env.Undefined();
}

struct OrderArgs {
  uint64_t seed;
  uint32_t trial;
  uint64_t cells;
  const uint8_t* eligible;
};

OrderArgs order_args(const Napi::CallbackInfo& info) {
  OrderArgs a;
  a.seed = seed(info, 0, "seed");
  a.trial = uint32_t(integer(info, 1, "trial", 0, 0xFFFFFFFFLL));
  a.cells = uint64_t(integer(info, 2, "cells", 0, kMaxCells));
  a.eligible = nullptr;
  if (!is_nullish(info, 3)) {
    U8 e = u8(info, 3, "eligible");
    exact(info.Env(), e, size_t(a.cells), "eligible");
    a.eligible = e.data;
  }
  return a;
}

Napi::Value FaultOrder(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const OrderArgs a = order_args(info);
  const size_t kmax = size_t(integer(info, 4, "kmax", 0, kMaxCells));
  U32 out = u32(info, 5, "out");
  need(env, out, kmax, "out");
  return Napi::Number::New(env, double(fl::fault_order(a.seed, a.trial, a.cells, a.eligible, kmax, out.data)));
}

Napi::Value FaultSelectBernoulli(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const OrderArgs a = order_args(info);
  const double p = number(info, 4, "p");
  if (p < 0 || p > 1) range_error(env, "Expected p in [0, 1] but received " + std::to_string(p));
  U32 out = u32(info, 5, "out");
  return Napi::Number::New(
      env, double(fl::fault_select_bernoulli(a.seed, a.trial, a.cells, a.eligible, p, out.data, out.length)));
}

Napi::Value FaultOrderWeights(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const uint64_t sd = seed(info, 0, "seed");
  const uint32_t trial = uint32_t(integer(info, 1, "trial", 0, 0xFFFFFFFFLL));
  U32 ws = u32(info, 2, "layerWeightStart");
  if (ws.length < 1) range_error(env, "Expected layerWeightStart to hold at least 1 element (layers + 1)");
  const size_t layers = ws.length - 1;
  U8 lb = u8(info, 3, "layerBits");
  exact(env, lb, layers, "layerBits");
  const uint8_t* le = nullptr;
  if (!is_nullish(info, 4)) {
    U8 e = u8(info, 4, "layerEligibleBits");
    exact(env, e, layers, "layerEligibleBits");
    le = e.data;
  }
  const size_t kmax = size_t(integer(info, 5, "kmax", 0, kMaxCells));
  U32 out = u32(info, 6, "out");
  need(env, out, kmax, "out");
  if (ws.data[0] != 0) range_error(env, "Expected layerWeightStart[0] = 0 but received " + std::to_string(ws.data[0]));
  uint64_t cells = 0;
  for (size_t l = 0; l < layers; ++l) {
    if (ws.data[l + 1] < ws.data[l])
      range_error(env, "Expected layerWeightStart to be non-decreasing but it decreases at index " + std::to_string(l + 1));
    if (lb.data[l] != 2 && lb.data[l] != 4 && lb.data[l] != 8)
      range_error(env, "Expected layerBits[" + std::to_string(l) + "] to be 2, 4 or 8 but received " +
                           std::to_string(int(lb.data[l])));
    cells += uint64_t(lb.data[l]) * (ws.data[l + 1] - ws.data[l]);
  }
  if (cells > uint64_t(kMaxCells))
    range_error(env, "The layers hold " + std::to_string(cells) + " cells; at most 2^32 are supported");
  return Napi::Number::New(env, double(fl::fault_order_weights(sd, trial, ws.data, lb.data, le, layers, kmax, out.data)));
}

Napi::Value CellsToMask(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  U32 cells = u32(info, 0, "cells");
  const size_t count = size_t(integer(info, 1, "count", 0, int64_t(cells.length)));
  U32 cs = u32(info, 2, "layerCellStart");
  if (cs.length < 1) range_error(env, "Expected layerCellStart to hold at least 1 element (layers + 1)");
  const size_t layers = cs.length - 1;
  U32 bs = u32(info, 3, "layerByteStart");
  exact(env, bs, layers, "layerByteStart");
  U8 mask = u8(info, 4, "mask");
  for (size_t l = 0; l < layers; ++l) {
    if (cs.data[l + 1] < cs.data[l])
      range_error(env, "Expected layerCellStart to be non-decreasing but it decreases at index " + std::to_string(l + 1));
    const uint64_t end = 8 * uint64_t(bs.data[l]) + (cs.data[l + 1] - cs.data[l]);
    if (end > 8 * uint64_t(mask.length))
      range_error(env, "Expected layer " + std::to_string(l) + " (layerByteStart " + std::to_string(bs.data[l]) + ", " +
                           std::to_string(cs.data[l + 1] - cs.data[l]) + " cells) to fit in mask of " +
                           std::to_string(mask.length) + " bytes");
  }
  const size_t done = fl::cells_to_mask(cells.data, count, cs.data, bs.data, layers, mask.data, mask.length);
  if (done != count)
    range_error(env, "Expected every cell inside a layer but cells[" + std::to_string(done) +
                         "] = " + std::to_string(cells.data[done]) + " is outside [" +
                         std::to_string(layers ? cs.data[0] : 0) + ", " + std::to_string(cs.data[layers]) + ")");
  return env.Undefined();
}

void Init(Napi::Env env, Napi::Object exports) {
  exports.Set("fakeQuantWeight", flb::fn(env, FakeQuantWeight, "fakeQuantWeight"));
  exports.Set("reluFakeQuant", flb::fn(env, ReluFakeQuant, "reluFakeQuant"));
  exports.Set("maskedGrad", flb::fn(env, MaskedGrad, "maskedGrad"));
  exports.Set("countZeros", flb::fn(env, CountZeros, "countZeros"));
  exports.Set("packInt", flb::fn(env, PackInt, "packInt"));
  exports.Set("unpackInt", flb::fn(env, UnpackInt, "unpackInt"));
  exports.Set("faultMaskApply", flb::fn(env, FaultMaskApply, "faultMaskApply"));
  exports.Set("faultOrder", flb::fn(env, FaultOrder, "faultOrder"));
  exports.Set("faultSelectBernoulli", flb::fn(env, FaultSelectBernoulli, "faultSelectBernoulli"));
  exports.Set("faultOrderWeights", flb::fn(env, FaultOrderWeights, "faultOrderWeights"));
  exports.Set("cellsToMask", flb::fn(env, CellsToMask, "cellsToMask"));
}

Register reg(Init);

}  // namespace
