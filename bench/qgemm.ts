// Int4-weight GEMM throughput of the int4 engine's kernels (qgemm: uint8 activations x int4 weights,
// int32 accumulation, ReLU + requantise epilogue), per kernel ISA (avx2, avx512: each run where the
// CPU has it, "n/a" rows where not), reported as GMAC/s and as a fraction of that ISA's int8 peak:
// AVX-512 VNNI (vpdpbusd: 64 MAC per instruction; ~410 GMAC/s per core at 2 per cycle) or AVX2
// without VNNI (vpmaddubsw + vpmaddwd chains, peakProbe('int8avx2')).
// Two fractions are reported: the best wall-clock GEMM rate over threads x the best probe rate, and
// MACs per CPU-second (all threads) over the probe's CPU-time rate; the goal is judged on the latter,
// the per-core efficiency, which a busy shared machine does not distort.
// The per-trial repack of the packed int4 weights is timed separately, and one ResNet-18 conv
// layer (im2col included) is shown for context.
//   node dist/bench/qgemm.js [--quick] [--threads N]
import * as os from 'node:os';
import { availableIsas, getIsa, getThreads, setIsa, setThreads } from '../src/native/info';
import { packInt } from '../src/native/kernels-quant';
import { QWeights, qconv2d, qgemm, type Epilogue } from '../src/native/kernels-qengine';
import { median, nowSeconds, parseArgs, printRows, type Row } from './common';
// The peak probes are shared with `flatenn bench kernels`:
import { isaPeak, probePeak, vnniPeak } from '../src/benchkit/peak';

/** Nominal per-core VNNI peak the goal refers to (2 x 512-bit vpdpbusd per cycle at ~3.2 GHz). */
export const NOMINAL_VNNI_GMACS_PER_CORE = 410;

export interface QgemmBenchOptions { threads?: number; quick?: boolean; log?: (s: string) => void }

interface Peak { gmacs: number; cpuGmacs: number; source: string }

/**
 * Per-thread VNNI peak, best of 3 runs of each probe available (src/benchkit/peak.ts: the shared
 * `peakProbe('vnni512')` and qgemm's own 24-chain probe; the higher rate is the reference).
 * `cpuGmacs` divides by thread CPU time: on a shared machine it is the core's ceiling, `gmacs`
 * (wall clock) what was actually had.
 */
function measurePeak(): Peak | null {
  const p = vnniPeak(1, 4_000_000, 3);
  return p ? { gmacs: p.wall, cpuGmacs: p.perCpuSecond, source: p.source } : null;
}

function lcgBytes(n: number, seed: number, mod: number, offset = 0): Uint8Array {
  const out = new Uint8Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; out[i] = (s >>> 24) % mod + offset; }
  return out;
}

/**
 * Wall seconds (best and median) and median process CPU seconds (all threads) of `reps` calls
 * after a warm-up. The best wall time is what the kernel does when the (shared) machine lets it run.
 */
async function timeIt(reps: number, fn: () => void): Promise<{ best: number; wall: number; cpu: number }> {
  fn(); // warm-up (first touch of the buffers)
  const wall: number[] = [], cpu: number[] = [];
  for (let i = 0; i < reps; i++) {
    const c0 = process.cpuUsage();
    const t0 = nowSeconds();
    fn();
    wall.push(nowSeconds() - t0);
    const c = process.cpuUsage(c0);
    cpu.push((c.user + c.system) / 1e6);
    await new Promise((r) => setImmediate(r));
  }
  return { best: Math.min(...wall), wall: median(wall), cpu: median(cpu) };
}

/**
 * Per-thread AVX2 int8 peak without VNNI, best of 3 (src/benchkit/peak.ts: peakProbe('int8avx2'),
 * chains of vpmaddubsw + vpmaddwd + vpaddd, 32 MAC per step: the rate oneDNN's AVX2 int8 kernels
 * are built on). Null without AVX2 or without the probe in the addon.
 */
function measureAvx2Peak(): Peak | null {
  if (!availableIsas().includes('avx2')) return null;
  const p = isaPeak('avx2', 'int8', 1, 8_000_000, 3);
  return p ? { gmacs: p.wall, cpuGmacs: p.perCpuSecond, source: p.source } : null;
}

/**
 * The ceiling of the AVX2 int4 kernels' own inner step, best of 3 (peakProbe('int4avx2'): chains of
 * vpmaddubsw + vpaddw into int16 sums, 32 MAC per step). Above the int8 peak: the int4 x int4
 * kernels keep pair sums in int16 and widen once per run instead of every step. Null without AVX2.
 */
function measureInt4Ceiling(): Peak | null {
  if (!availableIsas().includes('avx2')) return null;
  const p = probePeak('int4avx2', 1, 8_000_000, 3);
  return { gmacs: p.wall, cpuGmacs: p.perCpuSecond, source: p.source };
}

/** The goal of each kernel ISA (issue #8's table): fraction of that ISA's int8 peak per core. */
const GOALS: Record<'avx2' | 'avx512', { frac: number; peak: string }> = {
  avx2: { frac: 0.8, peak: 'AVX2 int8 peak (vpmaddubsw + vpmaddwd)' },
  avx512: { frac: 0.5, peak: 'VNNI peak' },
};

export async function qgemmBench(o: QgemmBenchOptions = {}): Promise<Row[]> {
  const log = o.log ?? ((s: string) => console.error(s));
  const prevThreads = getThreads(), prevIsa = getIsa();
  const threadCounts = [...new Set([1, o.threads ?? prevThreads])];
  const rows: Row[] = [];
  const cpuName = os.cpus()[0]?.model ?? '?';
  const load = () => os.loadavg().map((v) => v.toFixed(2)).join(' ');
  try {
    setThreads(1);
    const vnni = measurePeak();
    const avx2 = measureAvx2Peak();
    const int4 = measureInt4Ceiling();
    const peaks: Record<'avx2' | 'avx512', Peak | null> = { avx2, avx512: vnni };
    if (vnni) log(`qgemm: VNNI peak ${vnni.gmacs.toFixed(0)} GMAC/s per thread (wall), ${vnni.cpuGmacs.toFixed(0)} per CPU-second, ${vnni.source}`);
    else log('qgemm: no AVX-512 VNNI on this CPU: its goal is n/a');
    if (avx2) log(`qgemm: AVX2 int8 peak ${avx2.gmacs.toFixed(0)} GMAC/s per thread (wall), ${avx2.cpuGmacs.toFixed(0)} per CPU-second, ${avx2.source}`);
    else log('qgemm: no AVX2 int8 peak probe on this CPU / addon: its goal is n/a');
    rows.push({
      bench: 'qgemm', case: 'VNNI peak (1 thread)', metric: 'GMAC/s', flatenn: vnni ? +vnni.gmacs.toFixed(1) : undefined, threads: 1,
      gmacPerCpuSecond: vnni ? +vnni.cpuGmacs.toFixed(1) : undefined, cpu: cpuName, load: load(),
      notes: vnni ? `${vnni.source}; ${vnni.cpuGmacs.toFixed(0)} per CPU-second; nominal ${NOMINAL_VNNI_GMACS_PER_CORE}` : 'n/a: no AVX-512 VNNI',
    });
    rows.push({
      bench: 'qgemm', case: 'AVX2 int8 peak (1 thread)', metric: 'GMAC/s', flatenn: avx2 ? +avx2.gmacs.toFixed(1) : undefined, threads: 1,
      gmacPerCpuSecond: avx2 ? +avx2.cpuGmacs.toFixed(1) : undefined, cpu: cpuName, load: load(), isa: 'avx2',
      notes: avx2 ? `${avx2.source}; ${avx2.cpuGmacs.toFixed(0)} per CPU-second` : 'n/a: no AVX2',
    });
    rows.push({
      bench: 'qgemm', case: 'AVX2 int4 kernel ceiling: vpmaddubsw + vpaddw (1 thread)', metric: 'GMAC/s', flatenn: int4 ? +int4.gmacs.toFixed(1) : undefined, threads: 1,
      gmacPerCpuSecond: int4 ? +int4.cpuGmacs.toFixed(1) : undefined, cpu: cpuName, load: load(), isa: 'avx2',
      notes: int4 ? `${int4.source}; ${int4.cpuGmacs.toFixed(0)} per CPU-second; the AVX2 int4 kernels' inner step (pair sums kept in int16)` : 'n/a: no AVX2',
    });
    const have = availableIsas();
    const sizes = o.quick ? [1024] : [1024, 2048];
    for (const kisa of ['avx2', 'avx512'] as const) {
      const goal = `>= ${100 * GOALS[kisa].frac}% of the ${GOALS[kisa].peak} per core`;
      const peak = peaks[kisa];
      if (!have.includes(kisa) || !peak) {
        for (const S of sizes) rows.push({ bench: 'qgemm', case: `int4 GEMM M=N=K=${S} (${kisa} kernel)`, metric: 'GMAC/s', threads: 1, goal, cpu: cpuName, isa: kisa, notes: `n/a: no ${kisa === 'avx2' ? 'AVX2' : 'AVX-512 VNNI'} on this CPU` });
        continue;
      }
      setIsa(kisa);
      for (const S of sizes) {
        const M = S, N = S, K = S;
        const A = lcgBytes(M * K, 1 + S, 16); // 4-bit activation codes
        const codes = Int8Array.from(lcgBytes(N * K, 2 + S, 15), (v) => v - 7); // int4 weight codes [-7, 7]
        const packed = packInt(codes, 4);
        const w = new QWeights(N, K);
        const ep: Epilogue = {
          mode: 'codes', scale: new Float64Array(N).fill(1 / (8 * K)), bias: new Float64Array(N).fill(0.25), actBits: 4, actRange: 1,
        };
        const out = new Uint8Array(M * N);
        const macs = M * N * K;
        for (const th of threadCounts) {
          setThreads(th);
          const repack = (await timeIt(S >= 4096 ? 2 : 4, () => { w.repack(packed, 4); })).best;
          const reps = S >= 4096 ? 3 : S >= 2048 ? 5 : 10;
          const t = await timeIt(reps, () => { qgemm(A, M, w, ep, { layout: 'nm', out }); });
          const gmacs = macs / t.best / 1e9, gmacsMedian = macs / t.wall / 1e9;
          const perCore = macs / t.cpu / 1e9; // MACs per CPU-second of all threads
          const frac = gmacs / (th * peak.gmacs), fracCpu = perCore / peak.cpuGmacs;
          log(`qgemm: ${w.isa} kernel M=N=K=${S} ${th} thread(s): ${gmacs.toFixed(1)} GMAC/s best (${(t.best * 1e3).toFixed(2)} ms; median ${gmacsMedian.toFixed(1)}), ` +
            `${perCore.toFixed(0)} GMAC per CPU-second, repack ${(repack * 1e3).toFixed(2)} ms, ${(100 * frac).toFixed(0)}% of the ${GOALS[kisa].peak} ` +
            `(CPU-time basis ${(100 * fracCpu).toFixed(0)}%)`);
          rows.push({
            bench: 'qgemm', case: `int4 GEMM M=N=K=${S} (${kisa} kernel), ReLU+requant epilogue`, metric: 'GMAC/s', flatenn: +gmacs.toFixed(1), threads: th,
            // judged per core on CPU time: on a shared machine the wall-clock fraction mostly measures the neighbours
            goal, pass: fracCpu >= GOALS[kisa].frac,
            fractionOfPeak: +frac.toFixed(3), fractionOfPeakCpuTime: +fracCpu.toFixed(3),
            ...(kisa === 'avx2' && int4 ? { fractionOfInt4Ceiling: +(gmacs / (th * int4.gmacs)).toFixed(3) } : {}),
            medianGmacs: +gmacsMedian.toFixed(1), gmacPerCpuSecond: +perCore.toFixed(1),
            ms: +(t.best * 1e3).toFixed(3), repackMs: +(repack * 1e3).toFixed(3), isa: w.isa ?? kisa, cpu: cpuName, load: load(),
            notes: `best of ${reps} (shared machine); weights repacked from packed int4 in ${(repack * 1e3).toFixed(2)} ms (not in the GEMM time)`,
          });
        }
      }
      // one ResNet-18 (CIFAR) layer: 3x3 conv 64 -> 64 on 32x32, im2col included
      {
        const B = o.quick ? 8 : 32, C = 64, H = 32, W = 32, O = 64;
        const x = lcgBytes(B * C * H * W, 99, 16);
        const w = QWeights.fromPacked(packInt(Int8Array.from(lcgBytes(O * C * 9, 98, 15), (v) => v - 7), 4), 4, O, C * 9);
        const ep: Epilogue = { mode: 'codes', scale: new Float64Array(O).fill(1 / 4000), bias: new Float64Array(O).fill(0.1), actBits: 4, actRange: 1 };
        const out = new Uint8Array(B * O * H * W);
        const macs = B * O * H * W * C * 9;
        for (const th of threadCounts) {
          setThreads(th);
          const t = await timeIt(5, () => { qconv2d(x, { B, C, H, W }, w, { kh: 3, kw: 3, stride: 1, pad: 1 }, ep, out); });
          const gmacs = macs / t.best / 1e9, perCore = macs / t.cpu / 1e9;
          log(`qgemm: ${w.isa} conv3x3 64->64 32x32 batch ${B} ${th} thread(s): ${gmacs.toFixed(1)} GMAC/s best (${(t.best * 1e3).toFixed(2)} ms), ${perCore.toFixed(0)} GMAC per CPU-second`);
          rows.push({
            bench: 'qgemm', case: `int4 conv 3x3 64->64 on 32x32, batch ${B} (${kisa}; im2col included)`, metric: 'GMAC/s', flatenn: +gmacs.toFixed(1), threads: th,
            fractionOfPeak: +(gmacs / (th * peak.gmacs)).toFixed(3), gmacPerCpuSecond: +perCore.toFixed(1), ms: +(t.best * 1e3).toFixed(3),
            isa: w.isa ?? kisa, cpu: cpuName, load: load(), notes: 'best of 5',
          });
        }
      }
    }
  } finally {
    setThreads(prevThreads);
    setIsa(prevIsa);
  }
  return rows;
}

if (require.main === module) {
  const a = parseArgs(process.argv.slice(2), { quick: 'boolean', threads: 'number' });
  qgemmBench({ quick: !!a.quick, ...(a.threads !== undefined ? { threads: a.threads as number } : {}) })
    .then((rows) => printRows(rows, console.log))
    .catch((e: unknown) => { console.error(e instanceof Error ? e.message : String(e)); process.exitCode = 1; });
}
