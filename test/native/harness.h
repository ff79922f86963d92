// Minimal C++ test harness for native kernel tests (no external deps).
// FL_TEST(name) { ... FL_CHECK(cond) << "context"; } ; main() in main.cc runs all.
#pragma once
#include <cstdio>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

namespace fltest {
struct Case { const char* name; std::function<void()> fn; };
std::vector<Case>& cases();
extern int g_failures;
struct Reg { Reg(const char* n, std::function<void()> f) { cases().push_back({n, std::move(f)}); } };
// Collects a failure message; printed when destroyed.
struct Failure {
  std::ostringstream os;
  Failure(const char* file, int line, const char* expr) { os << file << ":" << line << ": check failed: " << expr << " "; }
  ~Failure() { std::fprintf(stderr, "%s\n", os.str().c_str()); ++g_failures; }
  template <class T> Failure& operator<<(const T& v) { os << v; return *this; }
};
}  // namespace fltest

#define FL_TEST(name)                                              \
  static void name();                                              \
  static fltest::Reg name##_reg(#name, name);                      \
  static void name()
#define FL_CHECK(cond) \
  if (cond) {} else fltest::Failure(__FILE__, __LINE__, #cond)
