// Addresses for masked vector loads (internal to native/kernels).
#pragma once
#include <cstdint>

namespace fl {

// &p[i] computed as an integer, so no out-of-range pointer is formed when i lies before or past
// the buffer: a masked load from it never touches its masked-off lanes (they suppress faults).
inline const float* lane0(const float* p, int64_t i) {
  return reinterpret_cast<const float*>(reinterpret_cast<uintptr_t>(p) + uintptr_t(i * int64_t(sizeof(float))));
}

}  // namespace fl
