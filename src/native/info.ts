import { addonPath, native, type IsaName, type KernelInfo, type CpuFeatureFlags, ISAS } from './binding';

export interface EngineInfo {
  version: string;
  buildType: string;
  addonPath: string;
  cpu: CpuFeatureFlags;
  bestIsa: IsaName;
  isa: IsaName;
  threads: number;
  kernels: KernelInfo[];
  node: string;
}

export function engineInfo(): EngineInfo {
  return {
    version: native.version(),
    buildType: native.buildType(),
    addonPath,
    cpu: native.cpuFeatures(),
    bestIsa: native.bestIsa(),
    isa: native.isa(),
    threads: native.threads(),
    kernels: native.kernels(),
    node: process.version,
  };
}

/** Pick the dispatch level; throws RangeError for an unknown name or one this CPU lacks. */
export function setIsa(isa: string): void {
  if (!(ISAS as readonly string[]).includes(isa)) {
    throw new RangeError(`Expected one of ${ISAS.join(', ')} for isa but received '${isa}'`);
  }
  native.setIsa(isa as IsaName);
}
export function getIsa(): IsaName { return native.isa(); }
export function bestIsa(): IsaName { return native.bestIsa(); }
export function availableIsas(): IsaName[] { return ISAS.slice(0, ISAS.indexOf(native.bestIsa()) + 1); }

/** Number of native threads (>= 1). Results never depend on it. */
export function setThreads(n: number): void {
  if (!Number.isInteger(n) || n < 1 || n > 1024) throw new RangeError(`Expected an integer in [1, 1024] for threads but received ${n}`);
  native.setThreads(n);
}
export function getThreads(): number { return native.threads(); }

/** Run fn under a given ISA, restoring the previous one after. */
export function withIsa<T>(isa: IsaName, fn: () => T): T {
  const prev = native.isa();
  native.setIsa(isa);
  try { return fn(); } finally { native.setIsa(prev); }
}
