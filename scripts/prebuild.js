#!/usr/bin/env node
// Release helper (repo only, not shipped): builds the prebuilt addon that `npm pack` ships.
//
//   node scripts/prebuild.js                 sync a staging copy, run `npm run prebuildify` there,
//                                            check its glibc floor, copy prebuilds/ into this tree;
//                                            x64, plus arm64 when aarch64-linux-gnu-g++ is installed
//   node scripts/prebuild.js --arch arm64    one architecture only (x64 or arm64, cross-compiled)
//   node scripts/prebuild.js --pack <dir>    also `npm pack` the staging copy into <dir> (prints the path)
//   node scripts/prebuild.js --no-copy       leave this tree's prebuilds/ alone
//   node scripts/prebuild.js --check <file>  only print the GLIBC/GLIBCXX versions <file> requires
//
// prebuildify moves build/Release/flatenn.node into prebuilds/, so it never runs in the working
// tree: the staging copy (build-prebuild/stage-<arch>, git-ignored) gets the tracked and untracked
// non-ignored files, a link to node_modules, and keeps its own CMake build for incremental builds.
// The prepack script runs this, so `npm pack` / `npm publish` always ship a fresh prebuild.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync, execFileSync } = require('node:child_process');

const root = path.resolve(__dirname, '..');
/** Highest glibc version a prebuild may require (README, "Install"). */
const GLIBC_MAX = '2.28';

function versionKey(v) { return v.split('.').map((x) => x.padStart(4, '0')).join('.'); }

/** Highest GLIBC_x.y and GLIBCXX_x.y.z versions the dynamic symbols of `file` need (null: none). */
function requiredVersions(file) {
  const out = execFileSync('objdump', ['-T', file], { encoding: 'utf8', maxBuffer: 64 << 20 });
  const max = { GLIBC: null, GLIBCXX: null, CXXABI: null };
  for (const m of out.matchAll(/\b(GLIBC|GLIBCXX|CXXABI)_([0-9][0-9.]*)/g)) {
    const [, kind, v] = m;
    if (max[kind] === null || versionKey(v) > versionKey(max[kind])) max[kind] = v;
  }
  const needed = execFileSync('readelf', ['-d', file], { encoding: 'utf8' })
    .split('\n').map((l) => /NEEDED.*\[(.*)\]/.exec(l)).filter(Boolean).map((m) => m[1]);
  return { glibc: max.GLIBC, glibcxx: max.GLIBCXX, cxxabi: max.CXXABI, needed };
}

function run(cmd, args, opts = {}) {
  // build logs to stderr: stdout stays for results (`npm pack --json` runs this as prepack)
  const r = spawnSync(cmd, args, { stdio: ['ignore', 2, 2], ...opts });
  if (r.status !== 0) {
    console.error(`prebuild: '${cmd} ${args.join(' ')}' failed (exit ${r.status ?? r.signal})`);
    process.exit(1);
  }
}

/** Make `stage` hold exactly the project's non-ignored files (mtimes kept, so the build stays incremental). */
function syncStage(stage) {
  const list = execFileSync('git', ['ls-files', '-z', '-co', '--exclude-standard'], { cwd: root, encoding: 'utf8' })
    .split('\0').filter((f) => f && fs.existsSync(path.join(root, f)));
  const want = new Set(list);
  for (const f of list) {
    const src = path.join(root, f), dst = path.join(stage, f);
    const s = fs.statSync(src);
    if (!s.isFile()) continue;
    let d = null;
    try { d = fs.statSync(dst); } catch { /* new file */ }
    if (d && d.size === s.size && d.mtimeMs === s.mtimeMs) continue;
    fs.mkdirSync(path.dirname(dst), { recursive: true });
    fs.copyFileSync(src, dst);
    fs.utimesSync(dst, s.atime, s.mtime);
  }
  // drop files deleted from the project (CMake globs the source folders)
  const keep = new Set(['node_modules', 'build', 'prebuilds', 'dist']);
  (function walk(dir, rel) {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (!rel && keep.has(e.name)) continue;
      if (e.isDirectory()) walk(path.join(dir, e.name), r);
      else if (!want.has(r)) fs.rmSync(path.join(dir, e.name));
    }
  })(stage, '');
  const nm = path.join(stage, 'node_modules');
  if (!fs.existsSync(nm)) fs.symlinkSync(path.join(root, 'node_modules'), nm, 'dir');
}

/** Runs prebuildify for `arch` in its staging copy; returns the staging folder. */
function buildArch(arch, argv) {
  const stage = path.join(root, 'build-prebuild', `stage-${arch}`);
  fs.mkdirSync(stage, { recursive: true });
  syncStage(stage);
  const env = { ...process.env, FLATENN_PREBUILD_STAGE: '1', PREBUILD_ARCH: arch };
  if (arch === 'arm64') env.PREBUILD_STRIP_BIN = 'aarch64-linux-gnu-strip';
  fs.rmSync(path.join(stage, 'prebuilds'), { recursive: true, force: true });
  run('npm', ['run', '--silent', 'prebuildify'], { cwd: stage, env });

  const dir = path.join(stage, 'prebuilds', `linux-${arch}`);
  const built = fs.readdirSync(dir).filter((f) => f.endsWith('.node'));
  if (built.length !== 1) { console.error(`prebuild: expected one .node in ${dir}, found ${built.join(', ') || 'none'}`); process.exit(1); }
  const req = requiredVersions(path.join(dir, built[0]));
  console.error(`prebuild: prebuilds/linux-${arch}/${built[0]} needs GLIBC ${req.glibc}, GLIBCXX ${req.glibcxx ?? 'none'}, libraries ${req.needed.join(' ')}`);
  if (req.glibcxx !== null || req.cxxabi !== null) { console.error('prebuild: the prebuild needs libstdc++ (it should link it statically)'); process.exit(1); }
  if (req.glibc !== null && versionKey(req.glibc) > versionKey(GLIBC_MAX)) {
    console.error(`prebuild: the prebuild needs GLIBC_${req.glibc} > ${GLIBC_MAX}; see native/compat/glibc_compat.cc`);
    process.exit(1);
  }
  if (!argv.includes('--no-copy')) {
    const dst = path.join(root, 'prebuilds', `linux-${arch}`);
    fs.rmSync(dst, { recursive: true, force: true });
    fs.mkdirSync(dst, { recursive: true });
    fs.copyFileSync(path.join(dir, built[0]), path.join(dst, built[0]));
  }
  return stage;
}

function main() {
  const argv = process.argv.slice(2);
  const checkAt = argv.indexOf('--check');
  if (checkAt >= 0) {
    const file = argv[checkAt + 1];
    if (!file || !fs.existsSync(file)) { console.error(`prebuild: --check needs an existing .node file`); process.exit(2); }
    console.log(JSON.stringify(requiredVersions(file)));
    return;
  }
  if (process.platform !== 'linux') { console.error('prebuild: Linux only'); process.exit(1); }
  const packAt = argv.indexOf('--pack');
  const packDir = packAt >= 0 ? path.resolve(argv[packAt + 1] ?? '') : null;
  if (packAt >= 0 && !argv[packAt + 1]) { console.error('prebuild: --pack needs a folder'); process.exit(2); }

  const archAt = argv.indexOf('--arch');
  let arches;
  if (archAt >= 0) {
    arches = [argv[archAt + 1]];
    if (!['x64', 'arm64'].includes(arches[0])) { console.error('prebuild: --arch x64|arm64'); process.exit(2); }
  } else {
    arches = ['x64'];
    if (spawnSync('sh', ['-c', 'command -v aarch64-linux-gnu-g++']).status === 0) arches.push('arm64');
    else console.warn('prebuild: aarch64-linux-gnu-g++ not found: no linux-arm64 prebuild (apt-get install g++-aarch64-linux-gnu)');
  }
  if (process.arch !== 'x64') { console.error('prebuild: run on x64 Linux (arm64 is cross-compiled)'); process.exit(1); }
  let packStage = null;
  for (const arch of arches) {
    const stage = buildArch(arch, argv);
    if (arch === 'x64') packStage = stage;
  }
  if (packDir) {
    if (!packStage) { console.error('prebuild: --pack needs the x64 build'); process.exit(2); }
    const stage = packStage;
    // the tarball gets every prebuild made now (the x64 stage holds only its own)
    for (const arch of arches.filter((a) => a !== 'x64')) {
      const src = path.join(root, 'build-prebuild', `stage-${arch}`, 'prebuilds', `linux-${arch}`);
      fs.cpSync(src, path.join(stage, 'prebuilds', `linux-${arch}`), { recursive: true });
    }
    run(path.join(root, 'node_modules', '.bin', 'tsc'), ['-p', 'tsconfig.json'], { cwd: stage });
    fs.mkdirSync(packDir, { recursive: true });
    const r = spawnSync('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', packDir], { cwd: stage, encoding: 'utf8' });
    if (r.status !== 0) { console.error(r.stderr); process.exit(1); }
    console.log(path.join(packDir, JSON.parse(r.stdout)[0].filename));
  }
}

main();
