// What CIFAR ResNet-18 costs here: the seconds of one training step (conventional, and SAQ's two
// passes) at a batch size and of int4 inference per image, projected to one epoch (45,000 training
// images: 50,000 less the 5,000 held out) and one campaign trial (10,000 test images; the trial's
// fault map and repack are small beside it: `flatenn bench kernels --filter faultmap,faultmask`).
// The model is initialised and trained for a few steps (its activation ranges set), not trained
// to accuracy: the speed does not depend on it. Prints the machine load: figures from a busy
// machine are not final.
//   node dist/bench/resnet18-cost.js [--width 1] [--batch 128] [--steps 3] [--images 512] [--no-saq] [--threads N] [--json]
import * as os from 'node:os';
import { formatLoad, loadAverage, machineInfo } from '../src/benchkit/machine';
import { deployModel } from '../src/deploy/export';
import { deployedFromFile } from '../src/deploy/format';
import { Engine } from '../src/engine/engine';
import { decodeSafetensors, encodeSafetensors } from '../src/io/safetensors';
import { getIsa, getThreads, setThreads } from '../src/native/info';
import { defaultConfig } from '../src/train/config';
import { releaseStepBuffers, Trainer, type ImageSet } from '../src/train/trainer';
import { markdownTable, nowSeconds, parseArgs, positiveInt } from './common';

export interface CostOptions { width?: number; batch?: number; steps?: number; images?: number; saq?: boolean; threads?: number; log?: (s: string) => void }

export interface CostReport {
  date: string; machine: ReturnType<typeof machineInfo>; isa: string; threads: number; width: number; batch: number;
  load: { before: number[]; after: number[] };
  stepSeconds: number; saqStepSeconds: number | null; epochImages: number; epochSeconds: number; saqEpochSeconds: number | null;
  inferenceImages: number; inferenceSecondsPerImage: number; trialImages: number; trialSeconds: number; engine: string;
  /** Peak RSS of this process after the conventional training steps (MiB; random images, no dataset loaded). */
  trainPeakRssMiB: number;
  /** Peak RSS at the end (SAQ steps and inference included, MiB). */
  peakRssMiB: number;
}

/** Random 3x32x32 images (the speed does not depend on the pixels' meaning). */
export function randomImages(n: number, seed: number): ImageSet {
  let s = seed >>> 0 || 1;
  const img = new Uint8Array(n * 3072);
  for (let i = 0; i < img.length; i++) { s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0; img[i] = s & 255; }
  return { count: n, channels: 3, height: 32, width: 32, images: img, labels: Uint8Array.from({ length: n }, (_, i) => i % 10) };
}

/** Median seconds of `steps` training steps after one untimed step. */
function stepSeconds(tr: Trainer, set: ImageSet, batch: number, steps: number, log: (s: string) => void, what: string): number {
  const imgs = set.images.subarray(0, batch * 3072), labels = set.labels.subarray(0, batch);
  tr.trainStep(imgs.slice(), labels, batch);
  const t: number[] = [];
  for (let i = 0; i < steps; i++) {
    const t0 = nowSeconds();
    tr.trainStep(imgs.slice(), labels, batch);
    t.push(nowSeconds() - t0);
    log(`resnet18-cost: ${what} step ${i + 1}/${steps}: ${t[t.length - 1]!.toFixed(2)} s`);
  }
  t.sort((a, b) => a - b);
  return t[t.length >> 1]!;
}

export async function resnet18Cost(o: CostOptions = {}): Promise<CostReport> {
  const log = o.log ?? ((s: string) => console.error(s));
  const width = o.width ?? 1, batch = o.batch ?? 128, steps = o.steps ?? 3, images = o.images ?? 512;
  const prev = getThreads();
  if (o.threads) setThreads(o.threads);
  const before = loadAverage();
  try {
    const set = randomImages(Math.max(batch, images), 1);
    const cfg = { ...defaultConfig('resnet18'), width, batchSize: batch };
    const tr = new Trainer(cfg, set);
    const step = stepSeconds(tr, set, batch, steps, log, 'conventional');
    const trainPeakRssMiB = process.resourceUsage().maxRSS / 1024;
    let saq: number | null = null;
    if (o.saq !== false) saq = stepSeconds(new Trainer({ ...cfg, saqRho: 0.1 }, set, tr.model), set, batch, steps, log, 'SAQ');
    releaseStepBuffers();  // training is over: its step buffers go back (as at the end of an epoch)
    const d = deployModel(tr.model, 'cifar10');
    const dm = deployedFromFile(decodeSafetensors(encodeSafetensors(d.tensors, { flatenn: JSON.stringify(d.meta) })), 'resnet18-cost', '');
    const engine = new Engine(dm);
    engine.evaluateSync({ images: set.images, labels: set.labels, count: Math.min(32, images) }); // warm-up
    const t0 = nowSeconds();
    engine.evaluateSync({ images: set.images, labels: set.labels, count: images });
    const perImage = (nowSeconds() - t0) / images;
    log(`resnet18-cost: int4 inference (${engine.backend}): ${(1 / perImage).toFixed(1)} images/s`);
    const epochImages = 45000;
    return {
      date: new Date().toISOString(), machine: machineInfo(), isa: getIsa(), threads: getThreads(), width, batch, load: { before, after: loadAverage() },
      stepSeconds: step, saqStepSeconds: saq, epochImages, epochSeconds: step * Math.ceil(epochImages / batch),
      saqEpochSeconds: saq === null ? null : saq * Math.ceil(epochImages / batch),
      inferenceImages: images, inferenceSecondsPerImage: perImage, trialImages: 10000, trialSeconds: perImage * 10000, engine: engine.backend,
      trainPeakRssMiB, peakRssMiB: process.resourceUsage().maxRSS / 1024,
    };
  } finally {
    setThreads(prev);
  }
}

function table(r: CostReport): string {
  const min = (s: number) => `${(s / 60).toFixed(1)} min`;
  return markdownTable(['', ''], [
    ['machine', `${r.machine.cpu}, ${r.machine.nproc} CPUs; ISA ${r.isa}, ${r.threads} threads; load ${formatLoad(r.load.before)} / ${formatLoad(r.load.after)}`],
    ['model', `CIFAR ResNet-18, width ${r.width}, batch ${r.batch}`],
    ['training step (conventional)', `${r.stepSeconds.toFixed(2)} s (${(r.batch / r.stepSeconds).toFixed(1)} images/s)`],
    ['training epoch (conventional)', `${min(r.epochSeconds)} (${Math.ceil(r.epochImages / r.batch)} steps)`],
    ...(r.saqStepSeconds !== null ? [['training step / epoch (SAQ)', `${r.saqStepSeconds.toFixed(2)} s / ${min(r.saqEpochSeconds!)}`]] : []),
    ['int4 inference', `${(1000 * r.inferenceSecondsPerImage).toFixed(2)} ms per image (${r.engine} engine, ${r.inferenceImages} images)`],
    ['campaign trial (10,000 test images)', `${r.trialSeconds.toFixed(1)} s`],
    ['peak RSS', `${r.trainPeakRssMiB.toFixed(0)} MiB after the conventional steps, ${r.peakRssMiB.toFixed(0)} MiB at the end`],
  ]);
}

async function main(): Promise<void> {
  const a = parseArgs(process.argv.slice(2), { width: 'number', batch: 'number', steps: 'number', images: 'number', 'no-saq': 'boolean', threads: 'number', json: 'boolean' });
  const threads = a.threads !== undefined ? positiveInt(a.threads, '--threads', os.availableParallelism()) : undefined;
  const r = await resnet18Cost({
    ...(a.width !== undefined ? { width: a.width as number } : {}), batch: positiveInt(a.batch, '--batch', 128), steps: positiveInt(a.steps, '--steps', 3),
    images: positiveInt(a.images, '--images', 512), saq: !a['no-saq'], ...(threads ? { threads } : {}),
  });
  console.log(a.json ? JSON.stringify(r, null, 2) : table(r));
}

if (require.main === module) {
  main().catch((e: unknown) => { console.error(e instanceof Error ? e.message : String(e)); process.exitCode = e instanceof RangeError ? 2 : 1; });
}
