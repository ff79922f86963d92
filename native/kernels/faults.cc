// Common-random-number fault selection (DESIGN §2) and cell -> memory-bit masks.
// Contracts in flatenn/quant.h.
//
// The order of a trial is the eligible cells sorted by (K(j), j) with
// K(j) = rng_bits64(seed, FaultKey, trial, j). Only a prefix of length kmax is
// ever needed, so instead of sorting every cell the selection keeps the cells
// whose key lies below a threshold chosen so that, with overwhelming
// probability, at least kmax eligible cells fall under it (and retries with a
// higher threshold when they do not). Every cell under the threshold precedes
// every cell above it, so the prefix is exactly that of the full sort. Keys are
// generated in parallel over fixed blocks, candidates are concatenated in block
// order, and (key, index) is a total order: the result is the same for any
// thread count.
#include <algorithm>
#include <cmath>
#include <vector>

#include "flatenn/core.h"
#include "flatenn/quant.h"
#include "flatenn/rng.h"

namespace fl {
namespace {

constexpr size_t kKeyBlock = size_t(1) << 16;  // cells per parallel task

struct Cand {
  uint64_t key;
  uint32_t idx;
};
inline bool cand_less(const Cand& a, const Cand& b) { return a.key != b.key ? a.key < b.key : a.idx < b.idx; }

// Inclusive key threshold below which about `target` of `eligible` uniform keys fall.
uint64_t threshold_for(double target, uint64_t eligible) {
  const double frac = target / double(eligible);
  if (frac >= 1.0) return UINT64_MAX;
  const double t = std::ldexp(frac, 64);
  return t >= 18446744073709551615.0 ? UINT64_MAX : uint64_t(t);
}

// items: the index range [0, items) split into fixed blocks; gen(begin, end, thr, out)
// appends every eligible item of [begin, end) with key <= thr. Writes the `want`
// smallest (key, idx) items' indices to out in increasing order.
template <class Gen>
size_t smallest_keys(uint64_t items, uint64_t eligible, size_t want, const Gen& gen, uint32_t* out) {
  if (want == 0) return 0;
  const size_t blocks = size_t((items + kKeyBlock - 1) / kKeyBlock);
  double slack = 4.0 * std::sqrt(double(want)) + 64.0;
  std::vector<Cand> all;
  for (;;) {
    const uint64_t thr = want >= eligible ? UINT64_MAX : threshold_for(double(want) + slack, eligible);
    std::vector<std::vector<Cand>> part(blocks);
    parallel_for(blocks, [&](size_t b) {
      const uint64_t begin = uint64_t(b) * kKeyBlock, end = std::min<uint64_t>(items, begin + kKeyBlock);
      gen(begin, end, thr, part[b]);
    });
    size_t total = 0;
    for (auto& p : part) total += p.size();
    if (total >= want || thr == UINT64_MAX) {
      all.reserve(total);
      for (auto& p : part) all.insert(all.end(), p.begin(), p.end());
      break;
    }
    slack *= 4.0;  // too few under the threshold (rare): raise it and redo
  }
  const size_t k = std::min(want, all.size());
  std::nth_element(all.begin(), all.begin() + std::ptrdiff_t(k), all.end(), cand_less);
  std::sort(all.begin(), all.begin() + std::ptrdiff_t(k), cand_less);
  for (size_t i = 0; i < k; ++i) out[i] = all[i].idx;
  return k;
}

// Layer of global item x given non-decreasing starts[0..layers]: the l with starts[l] <= x < starts[l+1].
inline size_t layer_of(const uint32_t* starts, size_t layers, uint64_t x) {
  return size_t(std::upper_bound(starts, starts + layers + 1, x) - starts) - 1;
}

inline uint8_t eligible_bits(const uint8_t* layerBits, const uint8_t* layerEligibleBits, size_t l) {
  const uint8_t all = uint8_t((1u << layerBits[l]) - 1u);
  return layerEligibleBits ? uint8_t(layerEligibleBits[l] & all) : all;
}

}  // namespace

uint64_t count_eligible(const uint8_t* eligible, uint64_t cells) {
  if (!eligible) return cells;
  const size_t blocks = size_t((cells + kKeyBlock - 1) / kKeyBlock);
  std::vector<uint64_t> part(blocks, 0);
  parallel_for(blocks, [&](size_t b) {
    const uint64_t begin = uint64_t(b) * kKeyBlock, end = std::min<uint64_t>(cells, begin + kKeyBlock);
    uint64_t c = 0;
    for (uint64_t j = begin; j < end; ++j) c += eligible[j] != 0;
    part[b] = c;
  });
  uint64_t c = 0;
  for (uint64_t v : part) c += v;
  return c;
}

size_t fault_order(uint64_t seed, uint32_t trial, uint64_t cells, const uint8_t* eligible, size_t kmax, uint32_t* out) {
  const uint64_t e = count_eligible(eligible, cells);
  const size_t want = size_t(std::min<uint64_t>(kmax, e));
  auto gen = [&](uint64_t begin, uint64_t end, uint64_t thr, std::vector<Cand>& o) {
    for (uint64_t j = begin; j < end; ++j) {
      if (eligible && !eligible[j]) continue;
      const uint64_t key = rng_bits64(seed, RngPurpose::FaultKey, trial, j);
      if (key <= thr) o.push_back({key, uint32_t(j)});
    }
  };
  return smallest_keys(cells, e, want, gen, out);
}

size_t fault_select_bernoulli(uint64_t seed, uint32_t trial, uint64_t cells, const uint8_t* eligible, double p,
                              uint32_t* out, size_t cap) {
  // Blocks are processed in waves of kWave: memory is bounded (kWave blocks of
  // selected cells at most) whatever the cell count and p. Within a wave the
  // blocks run in parallel; their cells are concatenated in block order, so the
  // result does not depend on the thread count. Once `out` is full the rest are
  // only counted.
  constexpr size_t kWave = 64;
  const size_t blocks = size_t((cells + kKeyBlock - 1) / kKeyBlock);
  std::vector<std::vector<uint32_t>> part(std::min(blocks, kWave));
  std::vector<uint64_t> counts(part.size());
  uint64_t total = 0;   // every selected cell
  size_t written = 0;   // those stored in out (at most cap)
  for (size_t w0 = 0; w0 < blocks; w0 += kWave) {
    const size_t nb = std::min(kWave, blocks - w0);
    const bool store = written < cap;
    parallel_for(nb, [&](size_t i) {
      const size_t b = w0 + i;
      const uint64_t begin = uint64_t(b) * kKeyBlock, end = std::min<uint64_t>(cells, begin + kKeyBlock);
      std::vector<uint32_t>& v = part[i];
      v.clear();
      uint64_t c = 0;
      for (uint64_t j = begin; j < end; ++j) {
        if (eligible && !eligible[j]) continue;
        if (rng_uniform(seed, RngPurpose::FaultKey, trial, j) < p) {
          ++c;
          if (store) v.push_back(uint32_t(j));
        }
      }
      counts[i] = c;
    });
    for (size_t i = 0; i < nb; ++i) {
      total += counts[i];
      for (uint32_t j : part[i]) {
        if (written >= cap) break;
        out[written++] = j;
      }
    }
  }
  return size_t(total);
}

uint64_t count_eligible_weights(const uint32_t* weightStart, const uint8_t* layerBits, const uint8_t* layerEligibleBits,
                                size_t layers) {
  uint64_t e = 0;
  for (size_t l = 0; l < layers; ++l)
    if (eligible_bits(layerBits, layerEligibleBits, l)) e += weightStart[l + 1] - weightStart[l];
  return e;
}

size_t fault_order_weights(uint64_t seed, uint32_t trial, const uint32_t* weightStart, const uint8_t* layerBits,
                           const uint8_t* layerEligibleBits, size_t layers, size_t kmax, uint32_t* out) {
  const uint64_t weights = weightStart[layers];
  const uint64_t e = count_eligible_weights(weightStart, layerBits, layerEligibleBits, layers);
  const size_t want = size_t(std::min<uint64_t>(kmax, e));
  auto gen = [&](uint64_t begin, uint64_t end, uint64_t thr, std::vector<Cand>& o) {
    size_t l = layer_of(weightStart, layers, begin);
    for (uint64_t w = begin; w < end; ++w) {
      while (w >= weightStart[l + 1]) ++l;
      if (!eligible_bits(layerBits, layerEligibleBits, l)) continue;
      const uint64_t key = rng_bits64(seed, RngPurpose::FaultKey, trial, w);
      if (key <= thr) o.push_back({key, uint32_t(w)});
    }
  };
  const size_t k = smallest_keys(weights, e, want, gen, out);
  // Each chosen weight -> one of its eligible bits, uniformly, then -> its global cell.
  std::vector<uint64_t> cellStart(layers + 1, 0);
  for (size_t l = 0; l < layers; ++l)
    cellStart[l + 1] = cellStart[l] + uint64_t(layerBits[l]) * (weightStart[l + 1] - weightStart[l]);
  for (size_t i = 0; i < k; ++i) {
    const uint32_t w = out[i];
    const size_t l = layer_of(weightStart, layers, w);
    const unsigned eb = eligible_bits(layerBits, layerEligibleBits, l);
    const unsigned count = unsigned(__builtin_popcount(eb));
    unsigned j = unsigned(rng_uniform(seed, RngPurpose::FaultCell, trial, w) * count);
    if (j >= count) j = count - 1;
    unsigned bit = 0;
    for (unsigned b = 0, seen = 0; b < 8; ++b)
      if ((eb >> b) & 1u) {
        if (seen == j) { bit = b; break; }
        ++seen;
      }
    out[i] = uint32_t(cellStart[l] + uint64_t(w - weightStart[l]) * layerBits[l] + bit);
  }
  return k;
}

size_t cells_to_mask(const uint32_t* cells, size_t count, const uint32_t* layerCellStart, const uint32_t* layerByteStart,
                     size_t layers, uint8_t* mask, size_t bytes) {
  for (size_t i = 0; i < count; ++i) {
    const uint32_t c = cells[i];
    if (layers == 0 || c < layerCellStart[0] || c >= layerCellStart[layers]) return i;
    const size_t l = layer_of(layerCellStart, layers, c);
    const uint64_t pos = 8 * uint64_t(layerByteStart[l]) + (c - layerCellStart[l]);
    if (pos >= 8 * uint64_t(bytes)) return i;
    mask[pos >> 3] = uint8_t(mask[pos >> 3] | (1u << (pos & 7)));
  }
  return count;
}

}  // namespace fl
