// Measured peak throughput of each ISA, the yardstick of every benchmark row ("% of peak").
// The probes (native/kernels/peak.cc, and qgemm's own VNNI loop) run independent FMA / dot-product
// chains with no memory traffic, so they go at the core's issue rate. Each is timed by the wall
// clock (what the run actually got: the rate the kernels' wall-clock rates are set against) and by
// the threads' CPU time (the core's ceiling, which a busy shared machine does not lower).
import type { IsaName } from '../native/binding';
import { PEAK_KINDS, peakProbe, type PeakKind } from '../native/kernels-f32';
import { qgemmPeakProbe } from '../native/kernels-qengine';

/** What a kernel's work is counted in: fp32 FLOPs (2 per FMA) or integer multiply-accumulates. */
export type Arith = 'f32' | 'int8';

export const ARITH_UNIT: Record<Arith, 'GFLOP/s' | 'GMAC/s'> = { f32: 'GFLOP/s', int8: 'GMAC/s' };

/**
 * The probe of each ISA and arithmetic; null for scalar code (n/a). A kind this build of the addon
 * lacks (PEAK_KINDS) also gives n/a: 'int8avx2' (vpmaddubsw + vpmaddwd chains) comes with the AVX2
 * int8 kernels.
 */
const PEAK_KIND: Record<IsaName, Record<Arith, string | null>> = {
  scalar: { f32: null, int8: null },
  avx2: { f32: 'fma256', int8: 'int8avx2' },
  avx512: { f32: 'fma512', int8: 'vnni512' },
};

/** The probe kind for an ISA and arithmetic, or null when this build has none. */
export function peakKindFor(isa: IsaName, arith: Arith): PeakKind | null {
  const k = PEAK_KIND[isa][arith];
  return k !== null && (PEAK_KINDS as readonly string[]).includes(k) ? (k as PeakKind) : null;
}

/** Why there is no peak for an ISA and arithmetic (for the n/a notes). */
export function noPeakReason(isa: IsaName, arith: Arith): string {
  if (isa === 'scalar') return 'no peak probe for scalar code';
  return `this build has no ${isa} ${arith === 'f32' ? 'FMA' : 'integer dot-product'} peak probe`;
}

export interface PeakRate {
  kind: string;
  threads: number;
  /** G ops per wall-clock second, all threads together (best of the repeats). */
  wall: number;
  /** G ops per CPU-second of one thread (best of the repeats): the core's ceiling. */
  perCpuSecond: number;
  unit: 'GFLOP/s' | 'GMAC/s';
  /** Which probe(s) gave it. */
  source: string;
}

/**
 * One probe kind on `threads` threads at once, best of `repeats` runs of `iters` iterations each.
 * Throws RangeError when the CPU lacks the instructions.
 */
export function probePeak(kind: PeakKind, threads: number, iters = 4_000_000, repeats = 3): PeakRate {
  let wall = 0, cpu = 0;
  for (let i = 0; i < repeats; i++) {
    const r = peakProbe(kind, iters, threads);
    wall = Math.max(wall, r.ops / r.wallSeconds / 1e9);
    cpu = Math.max(cpu, r.ops / r.cpuSeconds / 1e9);
  }
  return { kind, threads, wall, perCpuSecond: cpu, unit: kind.startsWith('fma') ? 'GFLOP/s' : 'GMAC/s', source: `peakProbe(${kind})` };
}

/**
 * The AVX-512 VNNI peak: the shared probe (16 chains, `threads` threads) and, on one thread, also
 * qgemm's own 24-chain probe (the GEMM tile's shape); the higher rate of each clock counts.
 * Null on a CPU without AVX-512 VNNI.
 */
export function vnniPeak(threads: number, iters = 4_000_000, repeats = 3): PeakRate | null {
  let best: PeakRate | null = null;
  try {
    best = probePeak('vnni512', threads, iters, repeats);
  } catch {
    /* not supported here */
  }
  if (threads === 1) {
    let wall = 0, cpu = 0;
    for (let i = 0; i < repeats; i++) {
      const r = qgemmPeakProbe(iters);
      if (r.macs === 0) break;
      wall = Math.max(wall, r.macs / r.seconds / 1e9);
      cpu = Math.max(cpu, r.macs / r.cpuSeconds / 1e9);
    }
    if (cpu > 0) {
      best = best
        ? { ...best, wall: Math.max(best.wall, wall), perCpuSecond: Math.max(best.perCpuSecond, cpu), source: `${best.source} + qgemmPeakProbe` }
        : { kind: 'vnni512', threads: 1, wall, perCpuSecond: cpu, unit: 'GMAC/s', source: 'qgemmPeakProbe' };
    }
  }
  return best;
}

/** The measured peak of an ISA for an arithmetic on `threads` threads, or null where there is none. */
export function isaPeak(isa: IsaName, arith: Arith, threads: number, iters = 4_000_000, repeats = 3): PeakRate | null {
  const kind = peakKindFor(isa, arith);
  if (kind === null) return null;
  if (kind === 'vnni512') return vnniPeak(threads, iters, repeats);
  try {
    return probePeak(kind, threads, iters, repeats);
  } catch {
    return null; // the CPU lacks it
  }
}
