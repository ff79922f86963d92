// Builds and runs the C++ kernel tests (test/native/*.cc) against native/.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { packageRoot } from '../../src/native/binding';

test('native C++ tests (build + run)', { timeout: 600_000 }, () => {
  const build = path.join(packageRoot, process.env.FLATENN_SANITIZED ? 'build-native-tests-asan' : 'build-native-tests');
  const sanitize = process.env.FLATENN_SANITIZED ? 'ON' : 'OFF';
  const cfg = spawnSync('cmake', ['-S', packageRoot, '-B', build, '-DFLATENN_NATIVE_TESTS=ON', `-DFLATENN_SANITIZE=${sanitize}`, '-DCMAKE_BUILD_TYPE=Release'], { encoding: 'utf8' });
  assert.equal(cfg.status, 0, cfg.stdout + cfg.stderr);
  const mk = spawnSync('cmake', ['--build', build, '--target', 'flatenn_native_tests', '-j', '2'], { encoding: 'utf8' });
  assert.equal(mk.status, 0, mk.stdout + mk.stderr);
  const env = { ...process.env };
  delete env.LD_PRELOAD; // the test binary links the sanitizer runtime itself
  const run = spawnSync(path.join(build, 'flatenn_native_tests'), [], { encoding: 'utf8', env });
  process.stdout.write(run.stdout.split('\n').map((l) => '# ' + l).join('\n') + '\n');
  assert.equal(run.status, 0, run.stdout + run.stderr);
});
