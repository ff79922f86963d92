#include <cstring>

#include "harness.h"

namespace fltest {
std::vector<Case>& cases() { static std::vector<Case> c; return c; }
int g_failures = 0;
}  // namespace fltest

// Prints one line per case and a closing "N passed, N failed" line.
int main(int argc, char** argv) {
  int passed = 0, failed = 0;
  for (auto& c : fltest::cases()) {
    if (argc > 1 && std::strstr(c.name, argv[1]) == nullptr) continue;
    const int before = fltest::g_failures;
    c.fn();
    if (fltest::g_failures == before) { ++passed; std::printf("ok %s\n", c.name); }
    else { ++failed; std::printf("FAIL %s\n", c.name); }
  }
  std::printf("native: %d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
