// Module entry: collects the functions every bindings/*.cc file registers.
#include <napi.h>

#include <vector>

#include "args.h"

namespace flb {
static std::vector<Registrar>& registrars() {
  static std::vector<Registrar> r;
  return r;
}
Register::Register(Registrar r) { registrars().push_back(r); }
}  // namespace flb

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  for (flb::Registrar r : flb::registrars()) r(env, exports);
  return exports;
}

NODE_API_MODULE(flatenn, Init)
