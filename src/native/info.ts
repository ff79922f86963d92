import { isMainThread } from 'node:worker_threads';
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

/** Version, build type, addon path, CPU features, ISA (best and current), thread count and the variant each kernel runs. */
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

/**
 * The ISA and the thread count are PROCESS-WIDE: one native kernel table and one thread pool serve the main
 * thread and every worker_thread. So that a worker never silently changes what the main thread runs, the
 * setters work only on the main thread and throw elsewhere (read them anywhere with getIsa()/getThreads()).
 */
function mainThreadOnly(what: string): void {
  if (!isMainThread) throw new Error(`flatenn: ${what} is process-wide (shared by all threads); call it from the main thread, not from a worker_thread`);
}

/**
 * Picks the SIMD dispatch level for the whole process (default: FLATENN_ISA, else the best this CPU has).
 * Results do not depend on it. Throws RangeError for an unknown name or one this CPU lacks, and Error when
 * called from a worker_thread (see mainThreadOnly).
 */
export function setIsa(isa: string): void {
  mainThreadOnly('setIsa()');
  if (!(ISAS as readonly string[]).includes(isa)) {
    throw new RangeError(`Expected one of ${ISAS.join(', ')} for isa but received '${isa}'`);
  }
  native.setIsa(isa as IsaName);
}
/** The SIMD level kernels are dispatched to now (process-wide). */
export function getIsa(): IsaName { return native.isa(); }
/** The highest SIMD level this CPU and OS support. */
export function bestIsa(): IsaName { return native.bestIsa(); }
/** The levels setIsa() accepts on this CPU, lowest first. */
export function availableIsas(): IsaName[] { return ISAS.slice(0, ISAS.indexOf(native.bestIsa()) + 1); }

/**
 * Number of native threads, 1..1024, for the whole process (default: FLATENN_THREADS, else the CPU count).
 * Results never depend on it. Throws Error when called from a worker_thread (process-wide, see setIsa).
 */
export function setThreads(n: number): void {
  mainThreadOnly('setThreads()');
  if (!Number.isInteger(n) || n < 1 || n > 1024) throw new RangeError(`Expected an integer in [1, 1024] for threads but received ${n}`);
  native.setThreads(n);
}
/** The native thread count now (process-wide). */
export function getThreads(): number { return native.threads(); }

/** Runs fn (synchronously) under a given ISA, restoring the previous one after. Main thread only, like setIsa. */
export function withIsa<T>(isa: IsaName, fn: () => T): T {
  mainThreadOnly('withIsa()');
  const prev = native.isa();
  native.setIsa(isa);
  try { return fn(); } finally { native.setIsa(prev); }
}
