// Training throughput of LeNet-5 (4-bit QAT, batch 128, real FashionMNIST
// batches): flatenn's Trainer.trainStep beside the same network in PyTorch
// (bench/torch_lenet.py train), with the same thread count.
//   node dist/bench/train.js [--threads N] [--steps N] [--warmup N] [--quick] [--json]
// Goals (the issue): >= 2x PyTorch images/s; a SAQ step <= 2.1x a conventional step.
import * as os from 'node:os';
import { loadDataset, type ImageDataset } from '../src/data/dataset';
import { bestIsa, getIsa, setThreads } from '../src/native/info';
import { defaultConfig } from '../src/train/config';
import { gatherBatch, Trainer } from '../src/train/trainer';
import { permutation } from '../src/util/rng';
import {
  field, loadWarning, median, messageOf, nonNegativeInt, parseArgs, peerDetails, positiveInt, printRows, runTorchBuilds, timeCalls,
  type PeerRun, type Row,
} from './common';

export interface TrainBenchOptions {
  threads: number;
  /** Timed steps per mode (default 40; quick 5). */
  steps?: number;
  /**
   * Untimed steps first (default 40; quick 2), on both sides. A fresh process's early LeNet-5 steps
   * run slower while V8 tiers the autograd code up, and a training run is thousands of steps:
   * `node dist/bench/train.js --threads 2 --no-torch --warmup 5` gave a median step of 5.66 ms and
   * `--warmup 40` 4.52 ms on the 2-vCPU EPYC (AVX-512).
   */
  warmup?: number;
  quick?: boolean;
  /** SAQ neighbourhood size (the timing does not depend on it). */
  rho?: number;
  dataDir?: string;
  /** The Python with torch (default /usr/bin/python3). */
  python?: string;
  /** Skip the PyTorch side. */
  noTorch?: boolean;
  log?: (s: string) => void;
}

const BATCH = 128;

interface ModeTiming { medianS: number; minS: number; imagesPerS: number; samples: number[] }

/** Times Trainer.trainStep on consecutive shuffled batches (batch gathering included, as in the PyTorch twin). */
async function timeFlatenn(train: ImageDataset, rho: number, warmup: number, steps: number): Promise<ModeTiming> {
  const cfg = { ...defaultConfig('lenet5'), saqRho: rho, epochs: 1 };
  const trainer = new Trainer(cfg, train);
  const per = train.channels * train.height * train.width;
  const perm = permutation(cfg.seed, 0, train.count);
  const buf = { images: new Uint8Array(BATCH * per), labels: new Uint8Array(BATCH) };
  const batches = Math.floor(train.count / BATCH);
  const samples = await timeCalls(warmup, steps, (i) => {
    const b = i % batches;
    const n = gatherBatch(train, perm, b * BATCH, (b + 1) * BATCH, buf);
    const s = trainer.trainStep(buf.images, buf.labels, n);
    if (!Number.isFinite(s.loss)) throw new Error(`training diverged (loss ${s.loss}) at step ${i}`);
  });
  const med = median(samples);
  return { medianS: med, minS: Math.min(...samples), imagesPerS: BATCH / med, samples };
}

export async function trainBench(o: TrainBenchOptions): Promise<Row[]> {
  const threads = positiveInt(o.threads, 'threads', 1);
  const steps = positiveInt(o.steps, 'steps', o.quick ? 5 : 40);
  const warmup = nonNegativeInt(o.warmup, 'warmup', o.quick ? 2 : 40);
  const rho = o.rho ?? 0.1;
  const log = o.log ?? (() => {});

  let conv: ModeTiming | undefined, saq: ModeTiming | undefined, flatennError: string | undefined;
  // The 1-minute load average before each side: on a shared machine, timings taken under load mislead.
  const loadFlatenn = os.loadavg()[0]!;
  try {
    setThreads(threads);
    const train = await loadDataset('fashion-mnist', 'train', o.dataDir ? { dataDir: o.dataDir } : {});
    log(`train: flatenn, ${threads} thread(s), ${warmup} warm-up + ${steps} timed steps per mode`);
    conv = await timeFlatenn(train, 0, warmup, steps);
    saq = await timeFlatenn(train, rho, warmup, steps);
  } catch (e) {
    flatennError = `flatenn side failed: ${messageOf(e)}`;
    log(`train: ${flatennError}`);
  }

  // the peer: one PyTorch process per BLAS build (OpenBLAS first: the goal is against it)
  const isa = getIsa(), capAvx2 = isa === 'avx2' && bestIsa() === 'avx512';
  const cpu = os.cpus()[0]?.model ?? '?';
  const args = ['train', '--threads', String(threads), '--steps', String(steps), '--warmup', String(warmup), '--rho', String(rho)];
  if (o.dataDir) args.push('--data-dir', o.dataDir);
  const peers = o.noTorch ? [] : await runTorchBuilds(args, { ...(o.python ? { python: o.python } : {}), threads, capAvx2, log });
  const noteOf = (peer: PeerRun | undefined) => {
    const torchNote = !peer ? (o.noTorch ? 'PyTorch skipped' : 'no PyTorch BLAS build found') : peer.result.ok ? `torch ${String(peer.result.data?.torch)}` : peer.result.error;
    return [flatennError, torchNote, loadWarning([loadFlatenn, peer?.load], threads)].filter(Boolean).join('; ');
  };

  const speedRow = (name: string, key: 'conventional' | 'saq', f: ModeTiming | undefined, peer: PeerRun | undefined): Row => {
    const fair = !peer || peer.build.key === 'openblas';
    const r: Row = {
      bench: 'train', case: `LeNet-5 ${name} step, batch ${BATCH}` + (peer ? ` vs ${peer.build.name}` : ''), metric: 'images/s', threads,
      goal: fair ? '>= 2x PyTorch' : 'context (the goal is against OpenBLAS)', cpu, isa,
    };
    if (f) { r.flatenn = f.imagesPerS; r.flatennStepMs = 1000 * f.medianS; r.flatennMinStepMs = 1000 * f.minS; }
    const t = field(peer?.result.data, `${key}.images_per_s`);
    if (t !== undefined) {
      r.pytorch = t;
      r.pytorchStepMs = (1000 * BATCH) / t;
      const tMin = field(peer?.result.data, `${key}.min_s`);
      if (tMin !== undefined) r.pytorchMinStepMs = 1000 * tMin;
    }
    if (f && t !== undefined) { r.ratio = f.imagesPerS / t; if (fair) r.pass = r.ratio >= 2; }
    if (peer) Object.assign(r, peerDetails(peer));
    const notes = noteOf(peer);
    if (notes) r.notes = notes;
    r.loadFlatenn = loadFlatenn;
    return r;
  };
  const ratioRow: Row = { bench: 'train', case: 'SAQ step time / conventional step time', metric: 'ratio', threads, goal: 'flatenn <= 2.1', cpu, isa };
  if (conv && saq) { ratioRow.flatenn = saq.medianS / conv.medianS; ratioRow.pass = ratioRow.flatenn <= 2.1; }
  const first = peers[0];
  const tStepRatio = field(first?.result.data, 'saq_over_conventional');
  if (tStepRatio !== undefined) { ratioRow.pytorch = tStepRatio; ratioRow.pytorchBuild = first!.build.name; }
  const notes = noteOf(first);
  if (notes) ratioRow.notes = notes;
  const rows: Row[] = [];
  for (const p of peers.length ? peers : [undefined]) {
    rows.push(speedRow('conventional', 'conventional', conv, p), speedRow(`SAQ (rho ${rho})`, 'saq', saq, p));
  }
  rows.push(ratioRow);
  return rows;
}

async function main(): Promise<void> {
  const a = parseArgs(process.argv.slice(2), { threads: 'number', steps: 'number', warmup: 'number', quick: 'boolean', rho: 'number', 'data-dir': 'string', python: 'string', 'no-torch': 'boolean', json: 'boolean' });
  const threads = positiveInt(a.threads, '--threads', os.availableParallelism());
  const rows = await trainBench({
    threads, quick: !!a.quick, noTorch: !!a['no-torch'], log: (s) => console.error(s),
    ...(a.steps !== undefined ? { steps: a.steps as number } : {}),
    ...(a.warmup !== undefined ? { warmup: a.warmup as number } : {}),
    ...(a.rho !== undefined ? { rho: a.rho as number } : {}),
    ...(a['data-dir'] !== undefined ? { dataDir: a['data-dir'] as string } : {}),
    ...(a.python !== undefined ? { python: a.python as string } : {}),
  });
  if (a.json) console.log(JSON.stringify(rows, null, 2));
  else printRows(rows);
}

if (require.main === module) {
  main().catch((e: unknown) => { console.error(messageOf(e)); process.exitCode = e instanceof RangeError ? 2 : 1; });
}
