// Counter-based RNG (Philox4x32-10, Salmon et al. 2011): a pure function of
// (seed, purpose, stream, index). DESIGN §2: nothing depends on thread count,
// shard or execution order.
#pragma once
#include <cstdint>

namespace fl {

// Purposes keep independent uses of one seed apart.
enum class RngPurpose : uint32_t {
  FaultKey = 1,      // stream = trial, index = cell (or weight, for --rate-unit weight)
  FaultCell = 2,     // stream = trial, index = weight: which bit of a weight (weight unit)
  Shuffle = 3,       // stream = epoch, index = position
  Init = 4,          // stream = parameter tensor, index = element
  Augment = 5,       // stream = step, index = sample
  Direction = 6,     // stream = direction, index = element
  Split = 7,
  User = 100,
};

struct Philox4 { uint32_t v[4]; };

inline Philox4 philox4x32(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1) {
  constexpr uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u, W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
  for (int r = 0; r < 10; ++r) {
    const uint64_t p0 = uint64_t(M0) * c0, p1 = uint64_t(M1) * c2;
    const uint32_t h0 = uint32_t(p0 >> 32), l0 = uint32_t(p0), h1 = uint32_t(p1 >> 32), l1 = uint32_t(p1);
    const uint32_t n0 = h1 ^ c1 ^ k0, n2 = h0 ^ c3 ^ k1;
    c0 = n0; c1 = l1; c2 = n2; c3 = l0;
    k0 += W0; k1 += W1;
  }
  return Philox4{{c0, c1, c2, c3}};
}

// 64 random bits for (seed, purpose, stream, index). The counter is
// (index lo, index hi, stream, purpose); the key is the 64-bit seed.
inline uint64_t rng_bits64(uint64_t seed, RngPurpose purpose, uint32_t stream, uint64_t index) {
  const Philox4 r = philox4x32(uint32_t(index), uint32_t(index >> 32), stream, uint32_t(purpose),
                               uint32_t(seed), uint32_t(seed >> 32));
  return (uint64_t(r.v[0]) << 32) | r.v[1];
}
// Uniform double in [0, 1) with 53 random bits.
inline double rng_uniform(uint64_t seed, RngPurpose purpose, uint32_t stream, uint64_t index) {
  return double(rng_bits64(seed, purpose, stream, index) >> 11) * (1.0 / 9007199254740992.0);
}

}  // namespace fl
