// Quantisation, int packing and fault kernels (DESIGN §1, §2). No Node headers.
//
// Contracts (every ISA variant is bit-identical to the scalar reference):
//
// Weight fake-quant, b-bit symmetric (b in {2, 4, 8}), qmax = 2^(b-1) - 1:
//   s = max|w| / qmax                     (float32 division; s = 1 when it is 0)
//   q = clamp(round_half_even(w / s), -qmax - 1, qmax)   (float32 division)
//   out = s * q
//   Per tensor (channels = 1) or per output channel (w viewed as [channels][n / channels]).
//
// Activation ReLU + fake-quant, b-bit unsigned (b in [1, 16]; b = 0: plain ReLU):
//   relu(x) = x > 0 ? x : +0              (NaN -> 0, -0 -> +0)
//   s = r / (2^b - 1)                     (float32 division; r > 0)
//   q = min(round_half_even(relu(x) / s), 2^b - 1),   y = s * q
//   mask = (x > 0 && x <= r) ? 1 : 0      (b = 0: mask = x > 0)
//   The straight-through rule: dL/dx = dL/dy * mask.
//   Returns the batch maximum of x before clipping, in the total order of IEEE
//   floats (-0 < +0); any NaN in x makes the result NaN. -Infinity when n = 0.
//
// Int packing (DESIGN §2): b-bit two's complement codes, 8/b per byte, lowest
// bits first: element i at byte (i*b) >> 3, bit shift (i*b) & 7. For b = 4:
// byte i >> 1, low nibble for even i. Unused high bits of the last byte are 0.
//
// Fault masks on packed bytes: dst = ((src ^ flip) & ~sa0) | sa1 (a null mask
// reads as all zeros). A stuck-at-1 bit wins over stuck-at-0 on the same bit.
#pragma once
#include <cstddef>
#include <cstdint>

#include "flatenn/core.h"

namespace fl {

// ---- kernel inner loops (arguments pre-validated by the drivers below) ------
// w: [n] f32 -> max over i of (bits(w[i]) & 0x7fffffff). For non-negative
// floats the bit patterns order like the values, so this is max|w| exactly;
// a result >= 0x7f800000 means an Inf or NaN was present.
using AbsMaxBitsFn = uint32_t (*)(const float* w, size_t n);
// w, out: [n] f32; codes: [n] s8 or null. q = clamp(nearbyint(w / s), lo, hi); out = s * q.
using QuantSymFn = void (*)(const float* w, float* out, int8_t* codes, size_t n, float s, float lo, float hi);
// x, y: [n] f32; mask: [n] u8 or null; codes: [n] u8 or null (quant only, hi <= 255): the code q
// of y = s * q. quant = false: plain ReLU (s, hi ignored, mask = x > 0, codes unused).
// Returns the max of order_key(x[i]) (INT32_MIN when n = 0).
using ReluFqFn = int32_t (*)(const float* x, float* y, uint8_t* mask, uint8_t* codes, size_t n, float s, float hi, float r,
                             bool quant);
// dy, dx: [n] f32; mask: [n] u8. dx = mask ? dy : +0.
using MaskedGradFn = void (*)(const float* dy, const uint8_t* mask, float* dx, size_t n);
// x: [n] f32 -> number of i with x[i] == 0 (either sign).
using CountZerosFn = size_t (*)(const float* x, size_t n);
// codes: [n] s8 -> index of the first code outside [lo, hi], or n.
using CodeRangeFn = size_t (*)(const int8_t* codes, size_t n, int lo, int hi);
// codes: [n] s8 (in range) -> out: [ceil(n*bits/8)] u8.
using PackIntFn = void (*)(const int8_t* codes, size_t n, int bits, uint8_t* out);
// packed: [ceil(n*bits/8)] u8 -> out: [n] s8, sign-extended.
using UnpackIntFn = void (*)(const uint8_t* packed, size_t n, int bits, int8_t* out);
// src, dst: [n] u8 (may alias); flip, sa0, sa1: [n] u8 or null.
using FaultMaskFn = void (*)(const uint8_t* src, const uint8_t* flip, const uint8_t* sa0, const uint8_t* sa1, uint8_t* dst,
                             size_t n);

namespace kern {
extern Kernel<AbsMaxBitsFn> f32_absmax_bits;
extern Kernel<QuantSymFn> f32_quant_sym;
extern Kernel<ReluFqFn> f32_relu_fakequant;
extern Kernel<MaskedGradFn> f32_masked_grad;
extern Kernel<CountZerosFn> f32_count_zeros;
extern Kernel<CodeRangeFn> s8_code_range;
extern Kernel<PackIntFn> s8_pack_int;
extern Kernel<UnpackIntFn> u8_unpack_int;
extern Kernel<FaultMaskFn> u8_fault_mask_apply;
}  // namespace kern

// Total-order key of a float (signed-integer comparable): -0 < +0, every NaN
// maps to INT32_MAX. key_to_float inverts it (a NaN comes back as a quiet NaN).
inline int32_t float_order_key(uint32_t bits) {
  if ((bits & 0x7fffffffu) > 0x7f800000u) return INT32_MAX;
  const int32_t i = static_cast<int32_t>(bits);
  return i < 0 ? (i ^ 0x7fffffff) : i;
}
float order_key_to_float(int32_t key);

// ---- drivers (parallel over shape-fixed blocks; same bits for any thread count) ----
// w, out: [n] (may alias); codes: [n] or null; scales: [channels]. n % channels == 0,
// bits in {2, 4, 8}. Returns false (and writes nothing) if some w is Inf or NaN.
bool fake_quant_weight(const float* w, float* out, int8_t* codes, float* scales, size_t n, int bits, size_t channels);
// x, y: [n] (may alias); mask: [n] or null; codes: [n] or null (bits in [1, 8] only). bits in [0, 16], r > 0 finite.
float relu_fake_quant(const float* x, float* y, uint8_t* mask, uint8_t* codes, size_t n, int bits, float r);
// dy, dx: [n] (may alias); mask: [n].
void masked_grad(const float* dy, const uint8_t* mask, float* dx, size_t n);
size_t count_zeros(const float* x, size_t n);
inline size_t packed_bytes(size_t n, int bits) { return (n * static_cast<size_t>(bits) + 7) / 8; }
// Returns n on success, else the index of the first code outside
// [-2^(bits-1), 2^(bits-1) - 1] (nothing written then). bits in {2, 4, 8}.
size_t pack_int(const int8_t* codes, size_t n, int bits, uint8_t* out);
void unpack_int(const uint8_t* packed, int bits, size_t n, int8_t* out);
void fault_mask_apply(const uint8_t* src, const uint8_t* flip, const uint8_t* sa0, const uint8_t* sa1, uint8_t* dst,
                      size_t n);

// ---- common-random-number fault selection (DESIGN §2) ----------------------
// Cell j of trial t has the key K(j) = rng_bits64(seed, FaultKey, t, j); the
// trial's order sorts the eligible cells by (K(j), j) ascending.
//
// fault_order: eligible: [cells] u8 (non-zero = eligible) or null (all).
// Writes the first min(kmax, eligible) cells of the order to out[0..) and
// returns how many it wrote. A rate p takes the prefix of length
// round(p * eligible): nested across rates, identical across fault types.
size_t fault_order(uint64_t seed, uint32_t trial, uint64_t cells, const uint8_t* eligible, size_t kmax, uint32_t* out);
// Number of eligible cells (non-zero bytes of eligible; cells when null).
uint64_t count_eligible(const uint8_t* eligible, uint64_t cells);
// Bernoulli sampling: every eligible cell with u(j) < p, u(j) = (K(j) >> 11) * 2^-53
// (= rng_uniform), in increasing cell order. Writes the first min(count, cap)
// of them to out and returns the full count.
size_t fault_select_bernoulli(uint64_t seed, uint32_t trial, uint64_t cells, const uint8_t* eligible, double p,
                              uint32_t* out, size_t cap);
// Weight unit (--rate-unit weight). The memory holds `layers` layers; layer l
// holds weights [weightStart[l], weightStart[l+1]) (weightStart: [layers+1],
// weightStart[0] = 0, non-decreasing) of layerBits[l] in {2, 4, 8} bits each;
// its cells start at cellStart(l) = sum_{m<l} layerBits[m] * (weightStart[m+1] - weightStart[m]),
// and weight w = weightStart[l] + i owns cells cellStart(l) + i*bits + b, b = 0..bits-1.
// layerEligibleBits: [layers] bitmask (bit b set: bit position b of that layer's
// codes may fail; 0 excludes the layer) or null (all bits of every layer).
// A weight is eligible when it has an eligible bit. Eligible weights are
// ordered by (rng_bits64(seed, FaultKey, t, w), w); the first min(kmax, eligible)
// are taken and each gets one faulty cell: its eligible bits in increasing
// position, the j-th with j = floor(rng_uniform(seed, FaultCell, t, w) * count).
// out: global cell indices, in the weights' order. Returns how many were written.
size_t fault_order_weights(uint64_t seed, uint32_t trial, const uint32_t* weightStart, const uint8_t* layerBits,
                           const uint8_t* layerEligibleBits, size_t layers, size_t kmax, uint32_t* out);
// Number of eligible weights for fault_order_weights.
uint64_t count_eligible_weights(const uint32_t* weightStart, const uint8_t* layerBits, const uint8_t* layerEligibleBits,
                                size_t layers);
// Sets, for each cell c = cells[i] (i < count), the bit at memory bit position
// 8 * layerByteStart[l] + (c - layerCellStart[l]), where l is the layer with
// layerCellStart[l] <= c < layerCellStart[l+1] (layerCellStart: [layers+1],
// non-decreasing). mask: [bytes], OR-ed into. Returns count on success, else the
// index of the first cell outside every layer or beyond the mask (the cells
// before it have been set).
size_t cells_to_mask(const uint32_t* cells, size_t count, const uint32_t* layerCellStart, const uint32_t* layerByteStart,
                     size_t layers, uint8_t* mask, size_t bytes);

}  // namespace fl
