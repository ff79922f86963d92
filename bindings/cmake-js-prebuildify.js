#!/usr/bin/env node
// prebuildify has no cmake-js backend: it runs `<node-gyp> rebuild --target=V
// --devdir=D --arch=A --release`. cmake-js reads --target as a CMake target
// name, so translate the node-gyp style arguments and build with cmake-js.
//
// prebuildify MOVES build/Release/flatenn.node into prebuilds/, so it runs only
// in the staging copy made by scripts/prebuild.js (`npm run prebuilds`), never
// in a working tree. `compile` (not `rebuild`) keeps that copy incremental.
'use strict';
const { spawnSync } = require('node:child_process');
const path = require('node:path');

if (process.env.FLATENN_PREBUILD_STAGE !== '1') {
  console.error("flatenn: run 'npm run prebuilds' (it runs prebuildify in a staging copy under build-prebuild/); " +
    'prebuildify in the working tree would move build/Release/flatenn.node away.');
  process.exit(2);
}
const out = ['compile'];
let arch = process.arch;
for (const a of process.argv.slice(2)) {
  if (a.startsWith('--arch=')) arch = a.slice(7);
  else if (a === '--debug') out.push('--debug');
}
if (arch !== process.arch) {
  if (arch === 'arm64' && process.arch === 'x64') {
    // Debian's cross toolchain: apt-get install g++-aarch64-linux-gnu
    out.push('--CDCMAKE_TOOLCHAIN_FILE=' + path.join(__dirname, '..', 'cmake', 'aarch64-linux-gnu.cmake'));
  } else {
    console.error(`flatenn: no cross toolchain set up for ${process.arch} -> ${arch}`);
    process.exit(2);
  }
}
const bin = require.resolve('cmake-js/bin/cmake-js');
const r = spawnSync(process.execPath, [bin, ...out], { stdio: 'inherit' });
process.exit(r.status ?? 1);
