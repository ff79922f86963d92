// fp32 training-kernel throughput: the FMA peak per core (peak probes), then sgemm GFLOP/s per ISA
// for 512^3 on 1 and 2 threads, the weight-gradient shape that takes sgemm's K-split path, and the
// LeNet-5 / ResNet-18 sized convolutions (forward, and backward dx+dw+db), each as a fraction of
// the peak. Timing is min-of-N wall clock (what the kernel does when the shared machine lets it
// run) beside the CPU time of the same best call; the machine load is printed before and after.
//   node dist/bench/gemm.js [--quick] [--threads N] [--json]
import * as os from 'node:os';
import { availableIsas, bestIsa, getIsa, getThreads, setIsa, setThreads } from '../src/native/info';
import { type IsaName } from '../src/native/binding';
import { formatLoad, loadAverage } from '../src/benchkit/machine';
import { probePeak } from '../src/benchkit/peak';
import { conv2dBackward, conv2dForward, convOutputSize, sgemm, type PeakKind } from '../src/native/kernels-f32';
import { fmt, markdownTable, nowSeconds, parseArgs, positiveInt, type Row } from './common';

export interface GemmRow extends Row {
  bench: 'gemm';
  isa?: IsaName;
  threads?: number;
  /** GFLOP/s from the best (minimum) wall time of the timed calls. */
  flatenn?: number;
  /** GFLOP/s per CPU-second: FLOPs / CPU time of all threads, for the call with the minimum wall time. */
  cpuGflops?: number;
  /** flatenn / (per-core peak x threads); the peak is the probe's rate per CPU-second. */
  fractionOfPeak?: number;
  /** seconds of the best call */
  bestSeconds?: number;
  reps?: number;
  loadBefore?: string;
}

export interface GemmBenchOptions {
  quick?: boolean;
  /** The multi-thread count (default 2). */
  threads?: number;
  log?: (s: string) => void;
}

function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; return s / 2 ** 32 - 0.5; };
}
const randF32 = (n: number, seed: number) => { const r = lcg(seed); return Float32Array.from({ length: n }, r); };

function cpuSeconds(): number {
  const c = process.cpuUsage();
  return (c.user + c.system) / 1e6;
}

/** Best wall time (and the CPU time of that call) of `reps` calls after one warm-up call. */
function bestOf(reps: number, fn: () => void): { wall: number; cpu: number } {
  fn();
  let wall = Infinity, cpu = Infinity;
  for (let i = 0; i < reps; i++) {
    const c0 = cpuSeconds(), t0 = nowSeconds();
    fn();
    const w = nowSeconds() - t0, c = cpuSeconds() - c0;
    if (w < wall) { wall = w; cpu = c; }
  }
  return { wall, cpu };
}

/** Repetitions so that all of them take about `budget` seconds (at least 3), from one probe call. */
function repsFor(budget: number, fn: () => void): number {
  const t0 = nowSeconds();
  fn();
  const t = Math.max(1e-6, nowSeconds() - t0);
  return Math.max(3, Math.min(200, Math.round(budget / t)));
}

interface Peak { kind: PeakKind; perCore: number; perCoreCpu: number; twoThreads: number }

/** Per-core FMA peak of one probe kind: best of 3 (wall and CPU-time rates), and 2 threads at once (src/benchkit/peak.ts). */
function measurePeak(kind: PeakKind, iters: number): Peak {
  const one = probePeak(kind, 1, iters, 3), two = probePeak(kind, 2, iters, 3);
  return { kind, perCore: one.wall, perCoreCpu: one.perCpuSecond, twoThreads: two.wall };
}

const loadString = () => formatLoad(loadAverage());

export async function gemmBench(opts: GemmBenchOptions = {}): Promise<GemmRow[]> {
  const log = opts.log ?? ((s: string) => console.error(s));
  const quick = opts.quick ?? false;
  const multi = opts.threads && opts.threads > 1 ? opts.threads : 2;
  const budget = quick ? 0.15 : 0.6;
  const prevIsa = getIsa(), prevThreads = getThreads();
  const rows: GemmRow[] = [];
  const loadBefore = loadString();
  log(`gemm bench: load average (1/5/15 min) before: ${loadBefore}; ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'})`);
  try {
    // ---- peak ------------------------------------------------------------------------------
    const isas = availableIsas();
    const peaks: Partial<Record<IsaName, Peak>> = {};
    const iters = quick ? 2_000_000 : 10_000_000;
    if (isas.includes('avx2')) peaks.avx2 = measurePeak('fma256', iters);
    if (isas.includes('avx512')) peaks.avx512 = measurePeak('fma512', iters);
    const best = bestIsa();
    const ref = peaks[best === 'scalar' ? 'avx2' : best] ?? peaks.avx2;
    // The reference peak per core: the best ISA's probe rate per CPU-second (the core's ceiling; on a
    // busy machine its wall-clock rate drops with the share of the core it gets, and so would every
    // fraction computed from it).
    const peakPerCore = ref ? Math.max(ref.perCore, ref.perCoreCpu) : NaN;
    for (const [isa, p] of Object.entries(peaks) as [IsaName, Peak][]) {
      rows.push({ bench: 'gemm', case: `FMA peak (${p.kind}, ${p.kind === 'fma512' ? '16 zmm' : '12 ymm'} chains)`, metric: 'GFLOP/s', flatenn: p.perCore,
        cpuGflops: p.perCoreCpu, isa, threads: 1, notes: `2 threads at once: ${fmt(p.twoThreads)} GFLOP/s${p === ref ? '; the reference peak' : ''}` });
    }

    // ---- sgemm 512^3 per ISA, 1 and `multi` threads -------------------------------------------
    const n = 512;
    const A = randF32(n * n, 1), B = randF32(n * n, 2), C = new Float32Array(n * n);
    const flops512 = 2 * n * n * n;
    const single: Partial<Record<IsaName, number>> = {};
    for (const isa of isas) {
      setIsa(isa);
      for (const threads of [1, multi]) {
        setThreads(threads);
        const call = () => sgemm(false, false, n, n, n, 1, A, n, B, n, 0, C, n);
        const reps = isa === 'scalar' ? 3 : repsFor(budget, call);
        const t = bestOf(reps, call);
        const gflops = flops512 / t.wall / 1e9;
        const row: GemmRow = { bench: 'gemm', case: `sgemm ${n}x${n}x${n}`, metric: 'GFLOP/s', flatenn: gflops, cpuGflops: flops512 / t.cpu / 1e9,
          isa, threads, fractionOfPeak: gflops / (peakPerCore * threads), bestSeconds: t.wall, reps };
        if (threads === 1) {
          single[isa] = gflops;
          if (isa === best && best === 'avx512') { row.goal = '>= 60% of the AVX-512 FMA peak'; row.pass = gflops >= 0.6 * peakPerCore; }
        } else {
          const s = single[isa]!;
          row.notes = `${fmt(gflops / s)}x one thread`;
          if (isa === best) { row.goal = `>= 1.7x one thread`; row.pass = gflops >= 1.7 * s; }
        }
        rows.push(row);
      }
    }

    // ---- the weight-gradient GEMM (K split) and the conv layers, best ISA --------------------------
    setIsa(best);
    const kM = 16, kN = 150, kK = 12800;
    const dyM = randF32(kM * kK, 3), colT = randF32(kN * kK, 4), dW = new Float32Array(kM * kN);
    for (const threads of [1, multi]) {
      setThreads(threads);
      const call = () => sgemm(false, true, kM, kN, kK, 1, dyM, kK, colT, kK, 0, dW, kN);
      const t = bestOf(repsFor(budget, call), call);
      const f = 2 * kM * kN * kK;
      rows.push({ bench: 'gemm', case: `sgemm ${kM}x${kN}x${kK} (B^T, K split)`, metric: 'GFLOP/s', flatenn: f / t.wall / 1e9, cpuGflops: f / t.cpu / 1e9,
        isa: best, threads, fractionOfPeak: f / t.wall / 1e9 / (peakPerCore * threads), bestSeconds: t.wall });
    }

    interface ConvCase { name: string; N: number; C: number; H: number; W: number; O: number; K: number; stride: number; pad: number }
    const convs: ConvCase[] = [
      { name: 'LeNet conv2 [128,6,14,14] -> 16@5x5', N: 128, C: 6, H: 14, W: 14, O: 16, K: 5, stride: 1, pad: 0 },
      { name: 'LeNet conv1 [128,1,28,28] -> 6@5x5 pad 2', N: 128, C: 1, H: 28, W: 28, O: 6, K: 5, stride: 1, pad: 2 },
      { name: 'ResNet [32,64,32,32] -> 64@3x3 pad 1', N: 32, C: 64, H: 32, W: 32, O: 64, K: 3, stride: 1, pad: 1 },
    ];
    for (const c of convs) {
      const { OH, OW } = convOutputSize(c.H, c.W, c.K, c.K, c.stride, c.pad);
      const x = randF32(c.N * c.C * c.H * c.W, 5), w = randF32(c.O * c.C * c.K * c.K, 6), b = randF32(c.O, 7);
      const y = new Float32Array(c.N * c.O * OH * OW), dy = randF32(y.length, 8);
      const dx = new Float32Array(x.length), dw = new Float32Array(w.length), db = new Float32Array(c.O);
      const macs = c.N * c.O * OH * OW * c.C * c.K * c.K;
      const convIsas: IsaName[] = quick ? [best] : isas.filter((i) => i !== 'scalar');
      for (const isa of convIsas) {
        setIsa(isa);
        for (const threads of [1, multi]) {
          setThreads(threads);
          const fwd = () => conv2dForward(x, w, b, y, c.N, c.C, c.H, c.W, c.O, c.K, c.K, c.stride, c.pad, null);
          const tf = bestOf(repsFor(budget, fwd), fwd);
          rows.push({ bench: 'gemm', case: `conv2dForward ${c.name}`, metric: 'GFLOP/s', flatenn: 2 * macs / tf.wall / 1e9, cpuGflops: 2 * macs / tf.cpu / 1e9,
            isa, threads, fractionOfPeak: 2 * macs / tf.wall / 1e9 / (peakPerCore * threads), bestSeconds: tf.wall });
          // backward: dx (c.C > 1 only; a first layer needs none) + dw + db = 2 (or 1) x the forward MACs
          const needDx = c.C > 1;
          const bwd = () => conv2dBackward(x, w, dy, needDx ? dx : null, dw, db, c.N, c.C, c.H, c.W, c.O, c.K, c.K, c.stride, c.pad, null);
          const tb = bestOf(repsFor(budget, bwd), bwd);
          const bflops = (needDx ? 4 : 2) * macs;
          rows.push({ bench: 'gemm', case: `conv2dBackward ${needDx ? 'dx+' : ''}dw+db ${c.name}`, metric: 'GFLOP/s', flatenn: bflops / tb.wall / 1e9,
            cpuGflops: bflops / tb.cpu / 1e9, isa, threads, fractionOfPeak: bflops / tb.wall / 1e9 / (peakPerCore * threads), bestSeconds: tb.wall });
        }
      }
    }
  } finally {
    setIsa(prevIsa);
    setThreads(prevThreads);
  }
  const loadAfter = loadString();
  log(`gemm bench: load average after: ${loadAfter}`);
  for (const r of rows) { r.loadBefore = loadBefore; }
  const busy = Math.max(...os.loadavg().slice(0, 1), Number(loadBefore.split(' ')[0])) > os.cpus().length / 2;
  rows.push({ bench: 'gemm', case: 'machine load (os.loadavg 1/5/15 min)', metric: 'load',
    notes: `before ${loadBefore}; after ${loadAfter}${busy ? ' (busy machine: wall-clock rates and thread scaling are unreliable; per-CPU-second rates still hold)' : ''}` });
  return rows;
}

function table(rows: readonly GemmRow[]): string {
  const head = ['case', 'ISA', 'threads', 'GFLOP/s (min wall)', 'GFLOP/s per CPU-s', 'of peak x threads', 'goal', 'met', 'notes'];
  return markdownTable(head, rows.map((r) => [r.case, r.isa ?? '', r.threads === undefined ? '' : String(r.threads), fmt(r.flatenn), fmt(r.cpuGflops),
    r.fractionOfPeak === undefined ? '' : `${(100 * r.fractionOfPeak).toFixed(1)}%`, r.goal ?? '', r.pass === undefined ? '' : r.pass ? 'yes' : 'NO', r.notes ?? '']));
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2), { quick: 'boolean', threads: 'number', json: 'boolean' });
  const rows = await gemmBench({ quick: args.quick === true, threads: positiveInt(args.threads, '--threads', 2) });
  if (args.json) console.log(JSON.stringify(rows, null, 2));
  else console.log(`\n${table(rows)}\n`);
}

if (require.main === module) {
  main().catch((e: unknown) => { console.error(e instanceof Error ? e.message : String(e)); process.exit(1); });
}

