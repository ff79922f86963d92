// `npm run bench` housekeeping: results go to a git-ignored path unless --out asks
// otherwise, a heartbeat line appears at the interval even while a benchmark keeps
// the main thread busy, and goals needing CPU features the machine lacks read
// "n/a on this CPU" instead of a failure.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { DEFAULT_OUT, markGoalApplicability } from '../../bench/run';
import type { Row } from '../../bench/common';

const root = path.resolve(__dirname, '../../..');

test('the default results file is git-ignored and untracked', () => {
  assert.equal(path.relative(root, DEFAULT_OUT), path.join('bench', 'results', 'local', 'latest.json'));
  assert.equal(spawnSync('git', ['check-ignore', '-q', DEFAULT_OUT], { cwd: root }).status, 0, 'ignored');
  assert.equal(spawnSync('git', ['ls-files', '--error-unmatch', DEFAULT_OUT], { cwd: root, stdio: 'ignore' }).status, 1, 'not tracked');
});

test('a heartbeat line per interval while the main thread is blocked', () => {
  const hb = path.resolve(__dirname, '../../bench/heartbeat.js');
  const script = `const { startHeartbeat } = require(${JSON.stringify(hb)});
    const b = startHeartbeat(100); b.set('qgemm');
    setTimeout(() => { const t = Date.now(); while (Date.now() - t < 650) {} b.stop(); }, 50);`;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stderr.split('\n').filter((l) => /^\d\d:\d\d:\d\d bench: qgemm running for \d+ s \(total \d+ s\)$/.test(l));
  assert.ok(lines.length >= 3, `heartbeat lines during a 650 ms block at 100 ms: ${JSON.stringify(r.stderr)}`);
});

test('goals that need a feature the CPU lacks are "n/a on this CPU", not failures', () => {
  const rows = (): Row[] => [
    { bench: 'qgemm', case: 'u8s8', metric: 'GMAC/s', goal: '>= 50% of the VNNI peak per core', pass: false },
    { bench: 'gemm', case: 'sgemm', metric: 'GFLOP/s', goal: '>= 60% of the AVX-512 FMA peak', pass: true },
    { bench: 'train', case: 'step', metric: 'images/s', goal: '>= 2x PyTorch', pass: false },
  ];
  const avx2Only = markGoalApplicability(rows(), { avx2: true, avx512f: false, avx512vnni: false });
  assert.deepEqual(avx2Only.map((r) => [r.goalStatus, r.pass]), [['n/a on this CPU', undefined], ['n/a on this CPU', undefined], [undefined, false]]);
  assert.match(String(avx2Only[0]!.notes), /^n\/a on this CPU \(no AVX-512 VNNI\)/);
  const zen5 = markGoalApplicability(rows(), { avx2: true, avx512f: true, avx512vnni: true });
  assert.deepEqual(zen5.map((r) => [r.goalStatus, r.pass]), [[undefined, false], [undefined, true], [undefined, false]]);
});
