// `flatenn bench kernels`: every selected kernel on every shape of its kind, for each ISA and
// thread count asked for, timed by benchmark.js (loaded only here: the rest of flatenn never needs
// it), with the rate of each row against the measured peak of the ISA that ran.
import * as path from 'node:path';
import { addonPath, ISAS, native, packageRoot, type IsaName } from '../native/binding';
import { availableIsas, getIsa, getThreads, setIsa, setThreads } from '../native/info';
import { KERNELS, type KernelDef, type KernelName } from './kernels';
import { gitCommit, loadAverage, machineInfo, type MachineInfo } from './machine';
import { ARITH_UNIT, isaPeak, noPeakReason, type Arith } from './peak';
import { defaultShapes, describeShape, shapeDims, type Shape } from './shapes';

export const SCHEMA = 'flatenn.bench.kernels/1';

/** benchmark.js settings of every row (README: "Benchmarking kernels"). */
export interface TimingSettings {
  /** Samples (cycles) at least, whatever the time. */
  minSamples: number;
  /** Seconds of sampling after which a row stops (once it has minSamples). */
  maxTime: number;
  /** Seconds one sample (a cycle of repeated calls) lasts at least. */
  minTime: number;
}

export const DEFAULT_TIMING: TimingSettings = { minSamples: 5, maxTime: 1, minTime: 0.05 };
export const QUICK_TIMING: TimingSettings = { minSamples: 5, maxTime: 0.25, minTime: 0.05 };

export interface KernelBenchOptions {
  /** Kernels to run (default: all). */
  kernels?: readonly KernelName[];
  /** ISAs to run (default: all three; those this CPU lacks give 'skipped' rows). */
  isas?: readonly IsaName[];
  /** Thread counts (default: 1 and the CPUs available, once each). */
  threads?: readonly number[];
  /** Shapes (default: the built-in list; `quick` shortens it). */
  shapes?: readonly Shape[];
  quick?: boolean;
  timing?: Partial<TimingSettings>;
  /** Measure the peaks (default true); without them every % of peak is n/a. */
  peaks?: boolean;
  /** The ISAs taken as supported (default: what this CPU has). For tests of the skip path. */
  cpuIsas?: readonly IsaName[];
  /** Progress lines (default: stderr). */
  log?: (s: string) => void;
}

export type RowStatus = 'ok' | 'skipped' | 'same' | 'failed';

export interface KernelRow {
  kernel: KernelName;
  shape: string;
  /** The shape's sizes in one line, and as numbers. */
  size: string;
  dims: Record<string, number>;
  /** The ISA asked for, and the ISA of the code that ran ('none': code with no ISA variants). */
  isa: IsaName;
  variant: IsaName | 'none' | null;
  threads: number;
  status: RowStatus;
  /** Why a row was skipped or failed, which row a 'same' row repeats, or a remark. */
  note?: string;
  /** Why percentOfPeak is null for a kernel that has one (no probe for that ISA). */
  peakNote?: string;
  /** 'same' rows: the ISA whose row measured the same code at the same thread count. */
  sameAs?: IsaName;
  /** benchmark.js: calls per second (mean over samples), relative margin of error (%, 95%), samples. */
  hz: number | null;
  rme: number | null;
  samples: number | null;
  /** Mean and standard deviation of the seconds per call. */
  meanSeconds: number | null;
  sdSeconds: number | null;
  /** Work of one call and the rate it gives (work x hz). */
  work: number;
  workUnit: KernelDef['workUnit'];
  rate: number | null;
  rateUnit: KernelDef['rateUnit'];
  /** The measured peak of the variant's ISA at this thread count (same unit), and the rate's share of it. */
  peak: number | null;
  percentOfPeak: number | null;
}

export interface PeakEntry {
  isa: IsaName;
  arith: Arith;
  threads: number;
  kind: string | null;
  unit: 'GFLOP/s' | 'GMAC/s';
  /**
   * The yardstick of the rows: the probe's rate per CPU-second of one thread x the threads (at most
   * the CPUs), i.e. what the cores can do, which a busy machine does not lower; or the probe's
   * wall-clock rate on all threads together where that is higher.
   */
  rate: number | null;
  /** The probe's wall-clock rate, all threads together, and its rate per CPU-second of one thread. */
  wall: number | null;
  perCpuSecond: number | null;
  source?: string;
  note?: string;
}

export interface KernelBenchReport {
  schema: typeof SCHEMA;
  date: string;
  flatenn: { version: string; commit: string | null; addon: string };
  machine: MachineInfo;
  load: { before: number[]; after: number[] };
  cpu: { bestIsa: IsaName; avx2: boolean; fma: boolean; avx512f: boolean; avx512vnni: boolean };
  benchmark: { library: 'benchmark.js'; version: string } & TimingSettings & { initCount: number };
  isas: { isa: IsaName; available: boolean; note?: string }[];
  threads: number[];
  kernels: { name: KernelName; title: string; rateUnit: string }[];
  peaks: PeakEntry[];
  rows: KernelRow[];
  seconds: number;
}

/** The slice of benchmark.js this file uses (its own types are not a dependency of flatenn's API). */
interface BenchmarkCtor {
  new (name: string, fn: () => void, options: Record<string, unknown>): BenchmarkRun;
  version: string;
}
interface BenchmarkRun {
  run(options: { async: boolean }): BenchmarkRun;
  hz: number;
  error?: unknown;
  stats: { rme: number; mean: number; deviation: number; sample: number[] };
}

let benchmarkLib: BenchmarkCtor | null = null;
/** benchmark.js, loaded on first use. */
export function loadBenchmark(): BenchmarkCtor {
  if (benchmarkLib) return benchmarkLib;
  try {
    benchmarkLib = require('benchmark') as BenchmarkCtor;
  } catch (e) {
    throw new Error(`'bench kernels' needs the benchmark package (benchmark.js), which is not installed here: ${(e as Error).message.split('\n')[0]}. Install it with 'npm install benchmark'`);
  }
  return benchmarkLib;
}

function packageVersion(): string {
  try {
    return (require(path.join(packageRoot, 'package.json')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

const fmtRate = (v: number) => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toPrecision(3));

export async function runKernelBench(o: KernelBenchOptions = {}): Promise<KernelBenchReport> {
  const log = o.log ?? ((s: string) => process.stderr.write(s + '\n'));
  const B = loadBenchmark();
  const t0 = Date.now();
  const quick = !!o.quick;
  const timing: TimingSettings = { ...(quick ? QUICK_TIMING : DEFAULT_TIMING), ...o.timing };
  const kernels = (o.kernels ?? KERNELS.map((k) => k.name)).map((n) => KERNELS.find((k) => k.name === n)!);
  const isas = [...new Set(o.isas ?? ISAS)];
  const nproc = machineInfo().nproc;
  const threads = [...new Set(o.threads ?? [1, nproc])];
  const shapes = o.shapes ?? defaultShapes(quick);
  const cpuIsas = o.cpuIsas ?? availableIsas();
  const features = native.cpuFeatures();
  const report: KernelBenchReport = {
    schema: SCHEMA, date: new Date().toISOString(),
    flatenn: { version: packageVersion(), commit: gitCommit(packageRoot), addon: path.relative(packageRoot, addonPath) },
    machine: machineInfo(), load: { before: loadAverage(), after: [] },
    cpu: { bestIsa: native.bestIsa(), avx2: features.avx2, fma: features.fma, avx512f: features.avx512f, avx512vnni: features.avx512vnni },
    benchmark: { library: 'benchmark.js', version: B.version, ...timing, initCount: 1 },
    isas: isas.map((isa) => cpuIsas.includes(isa) ? { isa, available: true } : { isa, available: false, note: `this CPU lacks ${isa} (best: ${native.bestIsa()})` }),
    threads, kernels: kernels.map((k) => ({ name: k.name, title: k.title, rateUnit: k.rateUnit })), peaks: [], rows: [], seconds: 0,
  };
  for (const t of threads) if (t > nproc) log(`bench kernels: note: ${t} threads on ${nproc} CPUs (threads share cores)`);

  const peakCache = new Map<string, PeakEntry>();
  const peakFor = (isa: IsaName, arith: Arith, t: number): PeakEntry => {
    const key = `${isa}/${arith}/${t}`;
    let p = peakCache.get(key);
    if (!p) {
      const r = o.peaks === false ? null : isaPeak(isa, arith, t);
      p = r
        ? { isa, arith, threads: t, kind: r.kind, unit: r.unit, rate: Math.max(r.wall, r.perCpuSecond * Math.min(t, nproc)), wall: r.wall, perCpuSecond: r.perCpuSecond, source: r.source }
        : { isa, arith, threads: t, kind: null, unit: ARITH_UNIT[arith], rate: null, wall: null, perCpuSecond: null, note: o.peaks === false ? 'peaks not measured' : noPeakReason(isa, arith) };
      if (r) log(`bench kernels: ${isa} ${arith} peak on ${t} thread(s): ${fmtRate(p.rate!)} ${r.unit} (probe: ${fmtRate(r.wall)} wall clock, ${fmtRate(r.perCpuSecond)} per CPU-second of a thread; ${r.source})`);
      peakCache.set(key, p);
      report.peaks.push(p);
    }
    return p;
  };

  const plan: { k: KernelDef; s: Shape }[] = [];
  for (const k of kernels) for (const s of shapes) if (s.kind === k.shapeKind) plan.push({ k, s });
  const total = plan.length * isas.length * threads.length;
  let done = 0;
  const prevIsa = getIsa(), prevThreads = getThreads();
  try {
    for (const { k, s } of plan) {
      const base = { kernel: k.name, shape: s.name, size: describeShape(s), dims: shapeDims(s), work: k.work(s), workUnit: k.workUnit, rateUnit: k.rateUnit };
      const empty = { hz: null, rme: null, samples: null, meanSeconds: null, sdSeconds: null, rate: null, peak: null, percentOfPeak: null };
      const ran = new Map<string, IsaName>(); // `${variant}/${threads}` -> the ISA whose row measured it
      for (const isa of isas) {
        if (!cpuIsas.includes(isa)) {
          for (const t of threads) report.rows.push({ ...base, ...empty, isa, variant: null, threads: t, status: 'skipped', note: `n/a: this CPU lacks ${isa}` });
          done += threads.length;
          continue;
        }
        let prepared;
        try {
          setIsa(isa);
          prepared = k.prepare(s, isa);
        } catch (e) {
          const msg = (e as Error).message;
          for (const t of threads) report.rows.push({ ...base, ...empty, isa, variant: null, threads: t, status: 'failed', note: `preparing: ${msg}` });
          done += threads.length;
          log(`bench kernels: ${k.name} ${s.name} ${isa}: failed to prepare: ${msg}`);
          continue;
        }
        const variant = prepared.variant;
        for (const t of threads) {
          done++;
          const id = `${variant}/${t}`;
          const row: KernelRow = { ...base, ...empty, isa, variant, threads: t, status: 'ok' };
          const sameAs = ran.get(id);
          if (sameAs !== undefined) {
            row.status = 'same';
            row.sameAs = sameAs;
            row.note = variant === 'none' ? `the same code as ${sameAs} (no ISA variants)` : `the same ${variant} code as the ${sameAs} row`;
            report.rows.push(row);
            continue;
          }
          if (variant !== isa && variant !== 'none') row.note = `runs the ${variant} code (no ${isa} variant)`;
          setThreads(t);
          const bench = new B(`${k.name} ${s.name} ${isa} x${t}`, prepared.fn, { ...timing, initCount: 1, delay: 0 });
          bench.run({ async: false });
          if (bench.error !== undefined && bench.error !== null) {
            row.status = 'failed';
            row.note = `benchmark.js: ${bench.error instanceof Error ? bench.error.message : String(bench.error)}`;
            log(`bench kernels: [${done}/${total}] ${k.name} ${s.name} ${isa} x${t}: failed: ${row.note}`);
            report.rows.push(row);
            continue;
          }
          ran.set(id, isa);
          row.hz = bench.hz;
          row.rme = bench.stats.rme;
          row.samples = bench.stats.sample.length;
          row.meanSeconds = bench.stats.mean;
          row.sdSeconds = bench.stats.deviation;
          row.rate = row.work * bench.hz;
          if (k.arith !== null) {
            const pk = peakFor(variant === 'none' ? isa : variant, k.arith, t);
            row.peak = pk.rate;
            if (pk.rate !== null) row.percentOfPeak = (100 * row.rate) / pk.rate;
            else row.peakNote = pk.note ?? 'no peak';
          }
          log(`bench kernels: [${done}/${total}] ${k.name} ${s.name} ${isa} x${t}: ${fmtRate(row.rate)} ${k.rateUnit} ±${row.rme.toFixed(1)}% ` +
            `(${row.samples} samples)${row.percentOfPeak !== null ? `, ${row.percentOfPeak.toFixed(0)}% of peak` : ''}`);
          report.rows.push(row);
        }
      }
    }
  } finally {
    setIsa(prevIsa);
    setThreads(prevThreads);
  }
  report.load.after = loadAverage();
  report.seconds = +((Date.now() - t0) / 1000).toFixed(1);
  return report;
}
