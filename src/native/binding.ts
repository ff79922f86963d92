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

function resolveAddon(): string {
  const override = process.env.FLATENN_NATIVE;
  if (override) return path.resolve(override);
  const ngb = require('node-gyp-build') as { path(dir: string): string };
  try {
    return ngb.path(packageRoot);
  } catch (e) {
    throw new Error(
      `flatenn: the native addon was not found under ${packageRoot} (build/Release or prebuilds/). ` +
        `Build it with 'npm run build:native' (needs cmake and g++). Cause: ${(e as Error).message}`,
    );
  }
}

export const addonPath: string = resolveAddon();
export const native: NativeBinding = require(addonPath) as NativeBinding;

/** Typed access to a native function registered by one of the bindings/*.cc files. */
export function nativeFn<F extends (...args: never[]) => unknown>(name: string): F {
  const f = native[name];
  if (typeof f !== 'function') throw new Error(`flatenn: native function '${name}' is missing from ${addonPath}`);
  return f as F;
}
