#!/usr/bin/env bash
# One-time set-up on a fresh Debian machine: system packages, npm deps, the
# addon build (npm ci runs cmake-js) and the TypeScript build. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v cmake >/dev/null || need_apt+=(cmake)
command -v g++ >/dev/null || need_apt+=(g++)
command -v ninja >/dev/null || need_apt+=(ninja-build)
command -v qemu-x86_64 >/dev/null || need_apt+=(qemu-user)
# arm64 prebuild (cross-compiled) and its smoke test under qemu-aarch64
command -v aarch64-linux-gnu-g++ >/dev/null || need_apt+=(g++-aarch64-linux-gnu)
[ -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ] || need_apt+=(dataset-fashion-mnist)
/usr/bin/python3 -c 'import numpy' 2>/dev/null || need_apt+=(python3-numpy)
# the report test opens the HTML report in a real headless browser (driven by puppeteer-core from npm)
command -v chromium >/dev/null || [ "${FLATENN_SETUP_BROWSER:-1}" = 0 ] || need_apt+=(chromium)
command -v redis-server >/dev/null || need_apt+=(redis-server) # queue-mode tests (test/queue) start their own
if [ "${FLATENN_SETUP_TORCH:-0}" = 1 ]; then
  /usr/bin/python3 -c 'import torch' 2>/dev/null || need_apt+=(python3-torch)
  # the benchmark's fair peer: PyTorch with OpenBLAS (picked per PyTorch process with
  # LD_LIBRARY_PATH by bench/common.ts; netlib's libblas3, which python3-torch pulls in, stays too)
  [ -f /usr/lib/x86_64-linux-gnu/openblas-openmp/libblas.so.3 ] || need_apt+=(libopenblas0-openmp)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: apt-get install ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "setup: missing system packages (${need_apt[*]}); install them with: sudo apt-get install -y ${need_apt[*]}" >&2
  fi
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
# The install script (node-gyp-build-test || cmake-js compile) skips the build when a binary already loads,
# so compile here too: incremental, a no-op when build/ is up to date with the C++ sources.
npx cmake-js compile
npx tsc -p tsconfig.json
