// The one place that loads the addon. Nothing outside src/native/ imports it raw.
import * as fs from 'node:fs';
import * as path from 'node:path';

export type IsaName = 'scalar' | 'avx2' | 'avx512';
export const ISAS: readonly IsaName[] = ['scalar', 'avx2', 'avx512'];

export interface KernelInfo { name: string; isa: IsaName; variants: IsaName[] }

export interface CpuFeatureFlags {
  vendor: string; brand: string;
  sse42: boolean; avx: boolean; avx2: boolean; fma: boolean; f16c: boolean;
  avx512f: boolean; avx512bw: boolean; avx512dq: boolean; avx512vl: boolean; avx512vnni: boolean;
  avxVnni: boolean; avx512bf16: boolean; avx512fp16: boolean; osYmm: boolean; osZmm: boolean;
}

/** The whole native surface. Arguments are validated again in C++; TS callers validate first. */
export interface NativeBinding {
  /** The binding surface's level (NATIVE_API_LEVEL); absent before level 2. */
  apiLevel?: number;
  version(): string;
  buildType(): string;
  cpuFeatures(): CpuFeatureFlags;
  isa(): IsaName;
  bestIsa(): IsaName;
  setIsa(isa: IsaName): void;
  kernels(): KernelInfo[];
  threads(): number;
  setThreads(n: number): void;
  rngUniform(seed: number | bigint, purpose: number, stream: number, start: number, out: Float64Array): void;
  [name: string]: unknown;
}

function findRoot(dir: string): string {
  for (let d = dir; ; d = path.dirname(d)) {
    if (fs.existsSync(path.join(d, 'package.json')) && fs.existsSync(path.join(d, 'CMakeLists.txt'))) return d;
    if (path.dirname(d) === d) throw new Error('flatenn: package root not found above ' + dir);
  }
}

export const packageRoot = findRoot(__dirname);

/** What a consumer project can do when no binary fits (shown in the load error). */
function loadHelp(): string {
  let shipped: string[] = [];
  try {
    shipped = fs.readdirSync(path.join(packageRoot, 'prebuilds'));
  } catch {
    /* none shipped */
  }
  const libc = process.report?.getReport ? ((process.report.getReport() as { header?: { glibcVersionRuntime?: string } }).header?.glibcVersionRuntime ?? 'not glibc') : 'unknown';
  return [
    `flatenn: no native addon for this system (${process.platform}-${process.arch}, glibc ${libc}, Node ${process.version}).`,
    `Shipped prebuilds: ${shipped.length ? shipped.join(', ') + ' (glibc >= 2.18)' : 'none'}; no local build in ${path.join(packageRoot, 'build', 'Release')}.`,
    'To build it from source in your project: install CMake >= 3.15 and a C++17 compiler',
    "(Debian/Ubuntu: 'sudo apt-get install cmake g++'), then run 'npm rebuild flatenn'",
    "(pnpm: 'pnpm rebuild flatenn'; installs made with --ignore-scripts skip the build: rebuild as above).",
    'Or set FLATENN_NATIVE=/path/to/flatenn.node to use a binary built elsewhere.',
  ].join('\n');
}

function resolveAddon(): string {
  const override = process.env.FLATENN_NATIVE;
  if (override) return path.resolve(override);
  const ngb = require('node-gyp-build') as { path(dir: string): string };
  try {
    return ngb.path(packageRoot);
  } catch (e) {
    throw new Error(`${loadHelp()}\nCause: ${(e as Error).message}`);
  }
}

function loadAddon(file: string): NativeBinding {
  try {
    return require(file) as NativeBinding;
  } catch (e) {
    // found but not loadable (e.g. a prebuild needing a newer glibc than this system has)
    throw new Error(`${loadHelp()}\nCause: loading ${file} failed: ${(e as Error).message}`);
  }
}

/**
 * The binding surface this code is written for (bindings/info.cc, kApiLevel). An addon of another
 * level (a build left over from an older checkout, a FLATENN_NATIVE binary of another version) is
 * refused: its functions would take the same arguments and mean something else.
 */
export const NATIVE_API_LEVEL = 3;

export function checkLevel(b: NativeBinding, file: string): NativeBinding {
  const level = typeof b.apiLevel === 'number' ? b.apiLevel : 1;
  if (level !== NATIVE_API_LEVEL) {
    throw new Error(`flatenn: the native addon ${file} was built from another flatenn (binding API level ${level}; this code needs ` +
      `${NATIVE_API_LEVEL}). Rebuild it: 'npm run build:native' in a checkout, 'npm rebuild flatenn' in a project` +
      (process.env.FLATENN_NATIVE ? ', or point FLATENN_NATIVE at a binary of this version.' : '.'));
  }
  return b;
}

export const addonPath: string = resolveAddon();
export const native: NativeBinding = checkLevel(loadAddon(addonPath), addonPath);

/** Typed access to a native function registered by one of the bindings/*.cc files. */
export function nativeFn<F extends (...args: never[]) => unknown>(name: string): F {
  const f = native[name];
  if (typeof f !== 'function') throw new Error(`flatenn: native function '${name}' is missing from ${addonPath}`);
  return f as F;
}
