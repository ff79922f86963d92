#!/usr/bin/env node
// prebuildify has no cmake-js backend: it runs `<node-gyp> rebuild --target=V
// --devdir=D --arch=A --release`. cmake-js reads --target as a CMake target
// name, so translate the node-gyp style arguments and build with cmake-js.
'use strict';
const { spawnSync } = require('node:child_process');
const out = ['rebuild'];
for (const a of process.argv.slice(2)) {
  if (a.startsWith('--arch=')) out.push('--arch', a.slice(7));
  else if (a === '--debug') out.push('--debug');
}
const bin = require.resolve('cmake-js/bin/cmake-js');
const r = spawnSync(process.execPath, [bin, ...out], { stdio: 'inherit' });
process.exit(r.status ?? 1);
