// The addon as a whole: info, ISA selection and refusal, thread settings,
// invalid arguments, worker_threads, the portable binary (qemu without AVX),
// and loading from a prebuild when build/ is absent.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { Worker } from 'node:worker_threads';
import { addonPath, checkLevel, native, NATIVE_API_LEVEL, packageRoot, type NativeBinding } from '../../src/native/binding';
import { availableIsas, engineInfo, setIsa, setThreads, getThreads } from '../../src/native/info';

const pkg = JSON.parse(fs.readFileSync(path.join(packageRoot, 'package.json'), 'utf8')) as { version: string };

test('an addon built for another binding API level is refused with the way out (a stale build would misread arguments)', () => {
  assert.equal(native.apiLevel, NATIVE_API_LEVEL, 'the loaded addon is of this level');
  assert.equal(checkLevel(native, addonPath), native);
  const older = { ...native } as NativeBinding;
  delete older.apiLevel;  // addons before level 2 export none
  assert.throws(() => checkLevel(older, '/x/flatenn.node'), new RegExp(`/x/flatenn\\.node was built from another flatenn \\(binding API level 1; this code needs ${NATIVE_API_LEVEL}\\).*npm run build:native`));
  assert.throws(() => checkLevel({ ...native, apiLevel: NATIVE_API_LEVEL + 1 } as NativeBinding, 'f.node'), new RegExp(`API level ${NATIVE_API_LEVEL + 1}`));
});

test('info: version, CPU features, a chosen ISA per kernel, threads, build type', () => {
  const i = engineInfo();
  assert.equal(i.version, pkg.version);
  assert.ok(['scalar', 'avx2', 'avx512'].includes(i.isa));
  assert.ok(i.threads >= 1);
  assert.match(i.buildType, /Release|Debug|RelWithDebInfo/);
  const names = i.kernels.map((k) => k.name);
  for (const n of ['quant_sym', 'fault_mask_apply', 'pack_int', 'sgemm']) assert.ok(names.some((x) => x.includes(n)), `kernel ${n} registered (have ${names.join(', ')})`);
  for (const k of i.kernels) { assert.ok(k.variants.includes('scalar'), `${k.name} has a scalar reference`); assert.ok(k.variants.includes(k.isa), `${k.name} runs a variant it has`); }
  const r = spawnSync(process.execPath, [path.join(packageRoot, 'dist/src/cli/main.js'), 'info'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /isa:\s+(scalar|avx2|avx512)/);
});

test('ISA selection: each available ISA can be chosen; unknown names are refused; kernels follow', () => {
  const prev = native.isa();
  for (const isa of availableIsas()) {
    setIsa(isa);
    assert.equal(native.isa(), isa);
    for (const k of native.kernels()) assert.ok(['scalar', 'avx2', 'avx512'].indexOf(k.isa) <= ['scalar', 'avx2', 'avx512'].indexOf(isa), `${k.name} runs ${k.isa} under ${isa}`);
  }
  setIsa(prev);
  assert.throws(() => setIsa('sse9'), RangeError);
  assert.throws(() => native.setIsa('avx3' as never), /isa/);
  assert.throws(() => native.setIsa(3 as never), TypeError);
});

test('threads: settable, validated; FLATENN_ISA / FLATENN_THREADS validated at load', () => {
  const prev = getThreads();
  setThreads(1); assert.equal(getThreads(), 1);
  setThreads(prev);
  assert.throws(() => setThreads(0), RangeError);
  assert.throws(() => native.setThreads(1.5), TypeError);
  assert.throws(() => native.setThreads(-1), RangeError);
  const run = (env: Record<string, string>) => spawnSync(process.execPath, ['-e', `require(${JSON.stringify(addonPath)})`], { encoding: 'utf8', env: { ...process.env, ...env } });
  let r = run({ FLATENN_ISA: 'bogus' });
  assert.notEqual(r.status, 0); assert.match(r.stderr, /FLATENN_ISA=bogus is not one of scalar, avx2, avx512/);
  r = run({ FLATENN_THREADS: '0' });
  assert.notEqual(r.status, 0); assert.match(r.stderr, /FLATENN_THREADS=0/);
  r = run({ FLATENN_ISA: 'scalar', FLATENN_THREADS: '1' });
  assert.equal(r.status, 0, r.stderr);
});

test('invalid arguments raise TypeError/RangeError naming the argument, never crash', () => {
  assert.throws(() => native.rngUniform(1, 1, 0, 0, new Float32Array(4) as never), (e: Error) => e instanceof TypeError && /Float64Array for out/.test(e.message));
  assert.throws(() => native.rngUniform(-1, 1, 0, 0, new Float64Array(4)), (e: Error) => e instanceof RangeError && /seed/.test(e.message));
  assert.throws(() => native.rngUniform(1, 1, 2 ** 33, 0, new Float64Array(4)), /stream/);
  assert.throws(() => (native.rngUniform as (...a: unknown[]) => void)(), TypeError);
  const buf = new Float64Array(8);
  native.rngUniform(7n, 3, 1, 0, buf);
  const again = new Float64Array(8);
  native.rngUniform(7, 3, 1, 0, again);
  assert.deepEqual(buf, again, 'BigInt and number seeds agree');
});

test('the addon loads and works in worker_threads (context-aware)', async () => {
  const code = `
    const { parentPort, workerData } = require('node:worker_threads');
    const n = require(workerData);
    const out = new Float64Array(16); n.rngUniform(5, 3, 2, 0, out);
    parentPort.postMessage({ isa: n.isa(), out: Array.from(out) });`;
  const runOne = () => new Promise<{ isa: string; out: number[] }>((resolve, reject) => {
    const w = new Worker(code, { eval: true, workerData: addonPath });
    w.once('message', resolve); w.once('error', reject);
  });
  const [a, b] = await Promise.all([runOne(), runOne()]);
  const local = new Float64Array(16); native.rngUniform(5, 3, 2, 0, local);
  assert.deepEqual(a.out, Array.from(local));
  assert.deepEqual(b.out, Array.from(local));
});

const qemu = spawnSync('sh', ['-c', 'command -v qemu-x86_64'], { encoding: 'utf8' }).stdout.trim();
test('one binary for any x86-64: under qemu without AVX it picks scalar and refuses avx2', { skip: process.env.FLATENN_SANITIZED ? 'the sanitizer build is not the portable artifact (and ASan under qemu is too slow)' : !qemu && process.env.CI !== 'true' ? 'qemu-user not installed' : false, timeout: 300_000 }, () => {
  assert.ok(qemu, 'qemu-x86_64 is required under CI (scripts/setup.sh installs qemu-user)');
  const script = `const n = require(${JSON.stringify(addonPath)}); const o = new Float64Array(4); n.rngUniform(5, 3, 2, 0, o); console.log(JSON.stringify({ isa: n.isa(), best: n.bestIsa(), o: Array.from(o) }));
    try { n.setIsa('avx2'); console.log('accepted'); } catch (e) { console.log('refused: ' + e.message); }`;
  const r = spawnSync(qemu, ['-cpu', 'Nehalem', process.execPath, '-e', script], { encoding: 'utf8', timeout: 240_000 });
  assert.equal(r.status, 0, r.stderr);
  const first = JSON.parse(r.stdout.split('\n')[0]!) as { isa: string; best: string; o: number[] };
  assert.equal(first.isa, 'scalar'); assert.equal(first.best, 'scalar');
  const o = new Float64Array(4); native.rngUniform(5, 3, 2, 0, o);
  assert.deepEqual(first.o, Array.from(o));
  assert.match(r.stdout, /refused: isa 'avx2' is not supported by this CPU/);
  const env = spawnSync(qemu, ['-cpu', 'Nehalem', process.execPath, '-e', `require(${JSON.stringify(addonPath)})`], { encoding: 'utf8', env: { ...process.env, FLATENN_ISA: 'avx512' }, timeout: 240_000 });
  assert.notEqual(env.status, 0);
  assert.match(env.stderr, /FLATENN_ISA=avx512 is not supported by this CPU/);
});

// Loading from prebuilds/ (made by prebuildify in a staging copy) is tested by test/install/pack.test.ts.
