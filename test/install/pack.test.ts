// The package as a consumer gets it: `scripts/prebuild.js` runs prebuildify in a
// staging copy (never in this tree) and packs that copy; the tarball is installed
// into a fresh project whose PATH holds only node and npm (no compiler, no cmake),
// once with --ignore-scripts and once with the install script, and a small campaign
// runs through the installed library. Also: the prebuild's glibc floor, and what
// the tarball holds.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { runCampaign } from '../../src/campaign/campaign';
import { writeTinyModel } from '../helpers/tiny-model';
import { tmpDir, writeMnist } from '../data/fixtures';

const root = path.resolve(__dirname, '../../..');
const GLIBC_FLOOR = '2.28';

function versionKey(v: string): string { return v.split('.').map((x) => x.padStart(4, '0')).join('.'); }

function sh(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeout?: number } = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20, timeout: opts.timeout ?? 300_000, ...opts });
  return { code: r.status, out: r.stdout ?? '', err: r.stderr ?? '', all: `${r.stdout ?? ''}\n${r.stderr ?? ''}${r.error ? '\n' + r.error.message : ''}` };
}

/** A PATH with node, npm and sh only (npm runs scripts with sh): `command -v g++` etc. find nothing. */
function bareBin(dir: string): string {
  const bin = path.join(dir, 'bin');
  fs.mkdirSync(bin, { recursive: true });
  fs.symlinkSync(process.execPath, path.join(bin, 'node'));
  const npmCli = fs.realpathSync(sh('sh', ['-c', 'command -v npm']).out.trim());
  fs.symlinkSync(npmCli, path.join(bin, 'npm'));
  fs.symlinkSync('/bin/sh', path.join(bin, 'sh'));
  return bin;
}

let tarball = '';
let work = '';

test('prebuild: built in a staging copy, packed, and this tree is left alone', { timeout: 600_000 }, () => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'flatenn-pack-'));
  const live = path.join(root, 'build', 'Release', 'flatenn.node');
  const before = fs.existsSync(live) ? fs.statSync(live).mtimeMs : null;
  const prebuildsBefore = fs.existsSync(path.join(root, 'prebuilds'));
  const r = sh(process.execPath, [path.join(root, 'scripts', 'prebuild.js'), '--no-copy', '--pack', work], { cwd: root });
  assert.equal(r.code, 0, r.all);
  tarball = r.out.trim().split('\n').pop()!;
  assert.ok(fs.existsSync(tarball), r.all);
  assert.match(r.all, /needs GLIBC [0-9.]+, GLIBCXX none/);
  // prebuildify moves its build output: the working tree's build must still be there
  assert.equal(fs.existsSync(live) ? fs.statSync(live).mtimeMs : null, before, 'build/Release untouched');
  assert.equal(fs.existsSync(path.join(root, 'prebuilds')), prebuildsBefore, 'no prebuilds/ created here with --no-copy');
});

test('tarball: LICENSE, prebuild, sources for every source map; no repo-only scripts, tests or benchmarks', () => {
  assert.ok(tarball, 'packed');
  const files = sh('tar', ['tzf', tarball]).out.trim().split('\n').map((f) => f.replace(/^package\//, ''));
  const set = new Set(files);
  for (const f of ['LICENSE', 'package.json', 'README.md', 'CMakeLists.txt', 'prebuilds/linux-x64/flatenn.glibc.node', 'dist/src/index.js', 'dist/src/index.d.ts', 'dist/src/cli/main.js']) {
    assert.ok(set.has(f), `${f} is in the tarball`);
  }
  const cross = sh('sh', ['-c', 'command -v aarch64-linux-gnu-g++']).code === 0;
  if (cross) assert.ok(set.has('prebuilds/linux-arm64/flatenn.glibc.node'), 'arm64 prebuild shipped');
  for (const f of files) {
    assert.ok(!/^(scripts|test|bench|dist\/test|dist\/bench|build|build-[^/]*|node_modules)\//.test(f), `${f} should not be shipped`);
  }
  const x = path.join(work, 'x');
  fs.mkdirSync(x);
  assert.equal(sh('tar', ['xzf', tarball, '-C', x]).code, 0);
  const pkgDir = path.join(x, 'package');
  let maps = 0;
  for (const f of files.filter((n) => n.endsWith('.map'))) {
    const m = JSON.parse(fs.readFileSync(path.join(pkgDir, f), 'utf8')) as { sources: string[] };
    for (const s of m.sources) assert.ok(fs.existsSync(path.resolve(path.dirname(path.join(pkgDir, f)), s)), `${f} points at ${s}, which is shipped`);
    maps++;
  }
  assert.ok(maps > 10, 'source maps checked');
  const pkg = JSON.parse(fs.readFileSync(path.join(pkgDir, 'package.json'), 'utf8')) as Record<string, unknown>;
  assert.equal(pkg.license, 'MIT');
  assert.match(fs.readFileSync(path.join(pkgDir, 'LICENSE'), 'utf8'), /MIT License/);
  assert.deepEqual(pkg.os, ['linux']);
  assert.deepEqual(pkg.cpu, ['x64', 'arm64']);
  assert.equal((pkg.scripts as Record<string, string>).install, 'node-gyp-build-test || cmake-js compile');
  assert.equal(pkg.repository, undefined, 'no repository URL (there is no public repository)');
});

test('prebuild: highest GLIBC version <= 2.28, no GLIBCXX/CXXABI, only libc/libm/ld.so needed', () => {
  assert.ok(tarball, 'packed');
  const node = path.join(work, 'x', 'package', 'prebuilds', 'linux-x64', 'flatenn.glibc.node');
  const r = sh(process.execPath, [path.join(root, 'scripts', 'prebuild.js'), '--check', node]);
  assert.equal(r.code, 0, r.all);
  const v = JSON.parse(r.out) as { glibc: string | null; glibcxx: string | null; cxxabi: string | null; needed: string[] };
  assert.ok(v.glibc !== null && versionKey(v.glibc) <= versionKey(GLIBC_FLOOR), `needs GLIBC_${v.glibc}`);
  assert.equal(v.glibcxx, null, 'libstdc++ linked statically');
  assert.equal(v.cxxabi, null);
  for (const lib of v.needed) assert.match(lib, /^(libc\.so\.6|libm\.so\.6|ld-linux-x86-64\.so\.2|libpthread\.so\.0|libdl\.so\.2)$/, `needs ${lib}`);
  // the symbols really are the old ones, not just absent version tags
  const t = sh('objdump', ['-T', node]).out;
  assert.match(t, /\(GLIBC_2\.2\.5\)\s+pthread_create/);
  assert.doesNotMatch(t, /GLIBC_2\.(29|3\d)\b/);
});

test('consumer without a compiler: --ignore-scripts install loads the prebuild; the install script compiles nothing; a campaign runs', { timeout: 600_000 }, async () => {
  assert.ok(tarball, 'packed');
  const consumer = path.join(work, 'consumer');
  fs.mkdirSync(consumer);
  fs.writeFileSync(path.join(consumer, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true }));
  const bin = bareBin(work);
  const env: NodeJS.ProcessEnv = { HOME: process.env.HOME, PATH: bin, npm_config_cache: process.env.npm_config_cache, TMPDIR: os.tmpdir() };
  for (const k of Object.keys(env)) if (env[k] === undefined) delete env[k];
  const probe = sh('/bin/sh', ['-c', 'for c in cc gcc g++ c++ clang cmake make ninja; do command -v $c; done; true'], { env });
  assert.equal(probe.out.trim(), '', `compilers hidden from PATH: ${probe.out}`);

  const npm = (args: string[]) => sh(path.join(bin, 'npm'), args, { cwd: consumer, env });
  let r = npm(['install', '--ignore-scripts', '--no-audit', '--no-fund', '--prefer-offline', tarball]);
  assert.equal(r.code, 0, r.all);
  const pkgDir = path.join(consumer, 'node_modules', 'flatenn');
  assert.ok(!fs.existsSync(path.join(pkgDir, 'build')), 'nothing built');

  // the data and model the campaign uses; the same campaign in this tree gives the reference
  const dataDir = tmpDir('pack-data');
  writeMnist(dataDir, 'test', 40, true);
  const model = path.join(work, 'tiny.safetensors');
  await writeTinyModel(model);
  const opts = { model, faults: ['bitflip' as const, 'sa1' as const], rates: [0, 0.02], trials: 2, seed: 5, dataDir, quiet: true };
  const ref = await runCampaign({ ...opts, out: path.join(work, 'ref.jsonl') });

  fs.writeFileSync(path.join(consumer, 'run.js'), `
const f = require('flatenn');
f.runCampaign({ ...JSON.parse(process.argv[2]), out: process.argv[3] })
  .then((r) => console.log(JSON.stringify({ acc: r.records.map((x) => [x.fault, x.rate, x.trial, x.accuracy]).sort(), isa: f.getIsa() })))
  .catch((e) => { console.error(e); process.exit(1); });
`);
  fs.writeFileSync(path.join(consumer, 'esm.mjs'), `import { Engine, runCampaign, engineInfo } from 'flatenn';\nconsole.log(typeof Engine, typeof runCampaign, engineInfo().version);\n`);
  const expect = ref.records.map((x) => [x.fault, x.rate, x.trial, x.accuracy]).sort();
  const check = (tag: string) => {
    const c = sh(path.join(bin, 'node'), ['run.js', JSON.stringify(opts), path.join(work, `${tag}.jsonl`)], { cwd: consumer, env });
    assert.equal(c.code, 0, c.all);
    const got = JSON.parse(c.out) as { acc: unknown[] };
    assert.deepEqual(got.acc, JSON.parse(JSON.stringify(expect)), `${tag}: same accuracies as this tree's build`);
    const m = sh(path.join(bin, 'node'), ['esm.mjs'], { cwd: consumer, env });
    assert.equal(m.code, 0, m.all);
    assert.match(m.out, /^function function \d+\.\d+\.\d+/);
  };
  check('ignore-scripts');

  // from a worker_thread: the addon loads there too and gives the main thread's answer
  fs.writeFileSync(path.join(consumer, 'worker.js'), `
const { Worker, isMainThread, parentPort, workerData } = require('node:worker_threads');
const f = require('flatenn');
async function acc(model) {
  const m = await f.readDeployed(model);
  const images = Uint8Array.from({ length: 64 * 784 }, (_, i) => (i * 13) & 255), labels = Uint8Array.from({ length: 64 }, (_, i) => i % 10);
  return Array.from(new f.Engine(m).evaluateSync({ images, labels, count: 64 }).predictions);
}
if (isMainThread) {
  const w = new Worker(__filename, { workerData: process.argv[2] });
  w.once('message', async (p) => { const mine = await acc(process.argv[2]); console.log(JSON.stringify({ same: JSON.stringify(p) === JSON.stringify(mine), n: mine.length })); });
  w.once('error', (e) => { console.error(e); process.exit(1); });
} else acc(workerData).then((p) => parentPort.postMessage(p));
`);
  const wk = sh(path.join(bin, 'node'), ['worker.js', model], { cwd: consumer, env });
  assert.equal(wk.code, 0, wk.all);
  assert.deepEqual(JSON.parse(wk.out), { same: true, n: 64 });

  // a strict TypeScript consumer (with @types/node, as any Node project) compiles against the shipped .d.ts (node16 resolution, the "exports" map)
  fs.writeFileSync(path.join(consumer, 'tsconfig.json'), JSON.stringify({ compilerOptions: { strict: true, module: 'node16', moduleResolution: 'node16', target: 'es2022', noEmit: true, typeRoots: [path.join(root, 'node_modules', '@types')], types: ['node'], skipLibCheck: false, lib: ['es2022'] }, files: ['use.ts'] }));
  fs.writeFileSync(path.join(consumer, 'use.ts'), [
    "import { runCampaign, trainModel, defaultConfig, type CampaignOptions, type TrainProgress } from 'flatenn';",
    "const o: CampaignOptions = { model: 'm.safetensors', faults: ['bitflip'], rates: [0, 0.01], trials: 2, out: 'r.jsonl', signal: new AbortController().signal };",
    "const cb = (p: TrainProgress): number => (p.kind === 'epoch' ? p.stats.epoch : 'done' in p ? p.done : 0);",
    "export const f = async () => { await runCampaign(o); await trainModel(defaultConfig('lenet5'), { out: 'x.safetensors', onProgress: (p) => { cb(p); } }); };",
  ].join('\n') + '\n');
  const tsc = sh(process.execPath, [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', consumer], { cwd: consumer, env });
  assert.equal(tsc.code, 0, `strict tsc in the consumer: ${tsc.all}`);

  // now with the install script (node-gyp-build-test || cmake-js compile): the prebuild loads, cmake is never needed
  r = npm(['rebuild', 'flatenn', '--foreground-scripts']);
  assert.equal(r.code, 0, r.all);
  assert.doesNotMatch(r.all, /info (TOOL|CMD)|Configuring done|cmake: not found|ERR!/, 'no source build attempted');
  assert.ok(!fs.existsSync(path.join(pkgDir, 'build')), 'nothing built');
  check('with-scripts');

  // the installed CLI: works, and has no bench command (the benchmarks are not shipped)
  const help = sh(path.join(bin, 'node'), [path.join(pkgDir, 'dist', 'src', 'cli', 'main.js'), '--help'], { env });
  assert.equal(help.code, 0, help.all);
  assert.match(help.out, /\n {2}inject /);
  assert.doesNotMatch(help.out, /\n {2}bench {2,}/, "no source-checkout bench command");
  assert.match(help.out, /\n {2}bench kernels /, "bench kernels works from an installation");
  const bk = sh(path.join(bin, 'node'), [path.join(pkgDir, 'dist', 'src', 'cli', 'main.js'), 'bench', 'kernels', '--help'], { env });
  assert.equal(bk.code, 0, bk.all);
  const nob = sh(path.join(bin, 'node'), [path.join(pkgDir, 'dist', 'src', 'cli', 'main.js'), 'bench'], { env });
  assert.equal(nob.code, 2, 'no bench command in an installed package');
  const info = sh(path.join(bin, 'node'), [path.join(pkgDir, 'dist', 'src', 'cli', 'main.js'), 'info'], { env });
  assert.equal(info.code, 0, info.all);
  assert.match(info.out, /prebuilds\/linux-x64\/flatenn\.glibc\.node/);

  // nothing fits (prebuild removed, no compiler): the error says what to do in the consumer project
  fs.rmSync(path.join(pkgDir, 'prebuilds'), { recursive: true });
  const bad = sh(path.join(bin, 'node'), ['-e', "require('flatenn')"], { cwd: consumer, env });
  assert.notEqual(bad.code, 0);
  assert.match(bad.err, /no native addon for this system/);
  assert.match(bad.err, /npm rebuild flatenn/);
  assert.match(bad.err, /apt-get install cmake g\+\+/);
  assert.doesNotMatch(bad.err, /npm run build:native|scripts\/setup\.sh/, 'no advice that only works in the repo');
  fs.rmSync(work, { recursive: true, force: true });
});
