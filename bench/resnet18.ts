// CIFAR ResNet-18 beside PyTorch (bench/torch_resnet18.py), with the same thread count:
//  - fake-quant training: flatenn's Trainer.trainStep (conventional 4-bit QAT step) vs the same
//    network and fake quantisation in PyTorch (4-bit weights per tensor, uint4 activations after
//    every ReLU, BatchNorm in float, SGD);
//  - inference: the deployed int4 Engine (the model after the timed training steps, exported), batch
//    after batch through one evaluate call (the weights are repacked once, in the untimed first batch),
//    vs PyTorch fp32 inference of the same architecture (eval mode, torch.no_grad), one batch per call.
// Random 3x32x32 images: the speed does not depend on the pixels. Width 1 and batch 128 unless
// asked otherwise; --quick: width 0.25 and a few steps.
//   node dist/bench/resnet18.js [--threads N] [--width W] [--batch N] [--steps N] [--warmup N] [--batches N] [--quick] [--no-torch] [--json]
// Goals (the issue), against PyTorch + OpenBLAS: training >= 1.2x on AVX2 (stretch 1.5x), >= 1.5x on
// AVX-512 VNNI; inference >= 2x on AVX2, >= 3x on AVX-512 VNNI.
import * as os from 'node:os';
import { deployModel } from '../src/deploy/export';
import { deployedFromFile } from '../src/deploy/format';
import { Engine } from '../src/engine/engine';
import { decodeSafetensors, encodeSafetensors } from '../src/io/safetensors';
import { checkWidth } from '../src/nn/graph';
import { bestIsa, getIsa, setThreads } from '../src/native/info';
import { defaultConfig } from '../src/train/config';
import { releaseStepBuffers, Trainer } from '../src/train/trainer';
import {
  field, loadWarning, median, messageOf, nonNegativeInt, nowSeconds, parseArgs, peerDetails, positiveInt, printRows, runTorchBuilds, timeCalls,
  TORCH_RESNET18_SCRIPT, type PeerRun, type Row,
} from './common';
import { randomImages } from './resnet18-cost';

export interface ResNet18BenchOptions {
  threads: number;
  /** Channel multiplier ([64,128,256,512] x width; default 1, quick 0.25). */
  width?: number;
  /** Images per training step and per inference call (default 128). */
  batch?: number;
  /** Timed training steps (default 5; quick 3). */
  steps?: number;
  /** Untimed training steps first (default 2; quick 1). */
  warmup?: number;
  /** Timed inference batches, after one untimed (default 10; quick 3). */
  batches?: number;
  quick?: boolean;
  /** The Python with torch (default /usr/bin/python3). */
  python?: string;
  /** Skip the PyTorch side. */
  noTorch?: boolean;
  log?: (s: string) => void;
}

/** Distinct random batches cycled through (both sides). */
const POOL = 4;
const IMAGE = 3 * 32 * 32;

/** A goal per kernel ISA flatenn runs (none at the scalar level); `stretch` is reported, not judged. */
interface Goal { min: number; stretch?: number; text: string }
export const TRAIN_GOALS: Record<string, Goal> = {
  avx512: { min: 1.5, text: '>= 1.5x PyTorch on AVX-512 VNNI' },
  avx2: { min: 1.2, stretch: 1.5, text: '>= 1.2x PyTorch on AVX2 (stretch 1.5x)' },
};
export const INFER_GOALS: Record<string, Goal> = {
  avx512: { min: 3, text: '>= 3x PyTorch fp32 on AVX-512 VNNI' },
  avx2: { min: 2, text: '>= 2x PyTorch fp32 on AVX2' },
};

interface Timing { medianS: number; minS: number; imagesPerS: number; samples: number }

function timing(samples: number[], batch: number): Timing {
  const med = median(samples);
  return { medianS: med, minS: Math.min(...samples), imagesPerS: batch / med, samples: samples.length };
}

export async function resnet18Bench(o: ResNet18BenchOptions): Promise<Row[]> {
  const threads = positiveInt(o.threads, 'threads', 1);
  const width = checkWidth(o.width ?? (o.quick ? 0.25 : 1));
  const batch = positiveInt(o.batch, 'batch', 128);
  const steps = positiveInt(o.steps, 'steps', o.quick ? 3 : 5);
  const warmup = nonNegativeInt(o.warmup, 'warmup', o.quick ? 1 : 2);
  const batches = positiveInt(o.batches, 'batches', o.quick ? 3 : 10);
  const log = o.log ?? (() => {});

  let train: Timing | undefined, infer: Timing | undefined, backend = '?', flatennError: string | undefined;
  // The 1-minute load average before each side: on a shared machine, timings taken under load mislead.
  const loadFlatenn = os.loadavg()[0]!;
  try {
    setThreads(threads);
    const set = randomImages(POOL * batch, 1);
    const cfg = { ...defaultConfig('resnet18'), width, batchSize: batch };
    const tr = new Trainer(cfg, set);
    const buf = new Uint8Array(batch * IMAGE);
    log(`resnet18: flatenn training, width ${width}, batch ${batch}, ${threads} thread(s), ${warmup} warm-up + ${steps} timed steps`);
    train = timing(await timeCalls(warmup, steps, (i) => {
      const b = i % POOL;
      buf.set(set.images.subarray(b * batch * IMAGE, (b + 1) * batch * IMAGE));
      const s = tr.trainStep(buf, set.labels.subarray(b * batch, (b + 1) * batch), batch);
      if (!Number.isFinite(s.loss)) throw new Error(`training diverged (loss ${s.loss}) at step ${i}`);
    }), batch);
    // The deployed int4 model of the trained-a-few-steps network (activation ranges set), as `flatenn export` writes it.
    releaseStepBuffers();  // training is over: its step buffers go back (as at the end of an epoch)
    const d = deployModel(tr.model, 'cifar10');
    const dm = deployedFromFile(decodeSafetensors(encodeSafetensors(d.tensors, { flatenn: JSON.stringify(d.meta) })), 'resnet18-bench', '');
    const engine = new Engine(dm);
    backend = engine.backend;
    log(`resnet18: flatenn int4 inference (${backend} engine), 1 warm-up + ${batches} timed batches of ${batch}`);
    // Every evaluate call repacks the weight memory (a fault campaign's per-trial cost); a deployed model
    // serving batches does it once: one call over 1 + `batches` batches, timed from batch end to batch end.
    const inf = randomImages((1 + batches) * batch, 2);
    const ends: number[] = [];
    engine.evaluateSync({ images: inf.images, labels: inf.labels, count: inf.count, batchSize: batch, onProgress: () => ends.push(nowSeconds()) });
    ends.push(nowSeconds());
    infer = timing(ends.slice(1).map((t, i) => t - ends[i]!), batch);
  } catch (e) {
    flatennError = `flatenn side failed: ${messageOf(e)}`;
    log(`resnet18: ${flatennError}`);
  }

  // the peer: one PyTorch process per BLAS build (OpenBLAS first: the goals are against it)
  const isa = getIsa(), capAvx2 = isa === 'avx2' && bestIsa() === 'avx512';
  const cpu = os.cpus()[0]?.model ?? '?';
  const args = ['all', '--threads', String(threads), '--width', String(width), '--batch', String(batch), '--steps', String(steps),
    '--warmup', String(warmup), '--batches', String(batches), '--pool', String(POOL)];
  const peers = o.noTorch ? [] : await runTorchBuilds(args, { ...(o.python ? { python: o.python } : {}), script: TORCH_RESNET18_SCRIPT, label: 'resnet18', threads, capAvx2, log });

  const row = (kind: 'train' | 'infer', f: Timing | undefined, peer: PeerRun | undefined): Row => {
    const fair = !peer || peer.build.key === 'openblas';
    const goal = (kind === 'train' ? TRAIN_GOALS : INFER_GOALS)[isa];
    const r: Row = {
      bench: 'resnet18',
      case: (kind === 'train' ? 'ResNet-18 fake-quant training (conventional 4-bit QAT step)' : 'ResNet-18 inference (int4 engine vs PyTorch fp32, eval, no_grad)')
        + `, width ${width}, batch ${batch}` + (peer ? ` vs ${peer.build.name}` : ''),
      metric: 'images/s', threads, cpu, isa, width, batch,
    };
    if (!fair) r.goal = 'context (the goal is against OpenBLAS)';
    else if (goal) r.goal = goal.text;
    if (kind === 'infer') r.backend = backend;
    if (f) {
      r.flatenn = f.imagesPerS;
      r[kind === 'train' ? 'flatennStepMs' : 'flatennBatchMs'] = 1000 * f.medianS;
      r[kind === 'train' ? 'flatennMinStepMs' : 'flatennMinBatchMs'] = 1000 * f.minS;
    }
    const t = field(peer?.result.data, `${kind}.images_per_s`);
    if (t !== undefined) {
      r.pytorch = t;
      r[kind === 'train' ? 'pytorchStepMs' : 'pytorchBatchMs'] = (1000 * batch) / t;
      const tMin = field(peer?.result.data, `${kind}.min_s`);
      if (tMin !== undefined) r[kind === 'train' ? 'pytorchMinStepMs' : 'pytorchMinBatchMs'] = 1000 * tMin;
    }
    if (f && t !== undefined) {
      r.ratio = f.imagesPerS / t;
      if (fair && goal) {
        r.pass = r.ratio >= goal.min;
        if (goal.stretch !== undefined) r.stretchMet = r.ratio >= goal.stretch;
      }
    }
    if (peer) Object.assign(r, peerDetails(peer));
    const torchNote = !peer ? (o.noTorch ? 'PyTorch skipped' : 'no PyTorch BLAS build found') : peer.result.ok ? `torch ${String(peer.result.data?.torch)}` : peer.result.error;
    const notes = [flatennError, fair && !goal ? `no goal at ISA ${isa}` : '', torchNote, loadWarning([loadFlatenn, peer?.load], threads)].filter(Boolean).join('; ');
    if (notes) r.notes = notes;
    r.loadFlatenn = loadFlatenn;
    return r;
  };
  const rows: Row[] = [];
  for (const p of peers.length ? peers : [undefined]) rows.push(row('train', train, p));
  for (const p of peers.length ? peers : [undefined]) rows.push(row('infer', infer, p));
  return rows;
}

async function main(): Promise<void> {
  const a = parseArgs(process.argv.slice(2), {
    threads: 'number', width: 'number', batch: 'number', steps: 'number', warmup: 'number', batches: 'number', quick: 'boolean',
    python: 'string', 'no-torch': 'boolean', json: 'boolean',
  });
  const opt = <T>(k: string, name: string): Record<string, T> => (a[k] !== undefined ? { [name]: a[k] as T } : {});
  const rows = await resnet18Bench({
    threads: positiveInt(a.threads, '--threads', os.availableParallelism()),
    quick: !!a.quick, noTorch: !!a['no-torch'], log: (s) => console.error(s),
    ...opt<number>('width', 'width'), ...opt<number>('batch', 'batch'), ...opt<number>('steps', 'steps'), ...opt<number>('warmup', 'warmup'),
    ...opt<number>('batches', 'batches'), ...opt<string>('python', 'python'),
  });
  if (a.json) console.log(JSON.stringify(rows, null, 2));
  else printRows(rows);
}

if (require.main === module) {
  main().catch((e: unknown) => { console.error(messageOf(e)); process.exitCode = e instanceof RangeError ? 2 : 1; });
}
