#!/usr/bin/env node
// Runs every compiled test file under dist/test (subfolders too) with node's
// test runner. The native C++ tests run from dist/test/native/cpp.test.js.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const root = path.resolve(__dirname, '..');
const dir = path.join(root, 'dist', 'test');
const files = [];
(function walk(d) {
  for (const e of fs.readdirSync(d, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
    const p = path.join(d, e.name);
    if (e.isDirectory()) walk(p);
    else if (e.name.endsWith('.test.js')) files.push(path.relative(root, p));
  }
})(dir);
const filter = process.argv.slice(2).filter((a) => !a.startsWith('--'));
const selected = filter.length ? files.filter((f) => filter.some((x) => f.includes(x))) : files;
if (selected.length === 0) {
  console.error('run-tests: no test files matched');
  process.exit(1);
}
const env = { ...process.env };
if (process.argv.includes('--asan')) {
  const lib = spawnSync('gcc', ['-print-file-name=libasan.so'], { encoding: 'utf8' }).stdout.trim();
  env.LD_PRELOAD = lib;
  env.ASAN_OPTIONS = 'detect_leaks=0';
  env.UBSAN_OPTIONS = 'halt_on_error=1:print_stacktrace=1';
}
const r = spawnSync(process.execPath, ['--test', '--test-concurrency=1', ...selected], { cwd: root, stdio: 'inherit', env });
process.exit(r.status ?? 1);
