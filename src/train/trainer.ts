// Training: standard QAT, activation-sparse (L1 on activations) and SAQ, on
// the flat parameter arena with SGD (momentum / Nesterov, weight decay).
import * as ops from '../autograd/ops';
import { Tape, type Var } from '../autograd/tape';
import { kernels } from '../autograd/native-ops';
import { BufferPool, withPool } from '../autograd/pool';
import { buildGraph, inferShapes, type Graph } from '../nn/graph';
import { Model } from '../nn/model';
import { permutation, uniforms, RngPurpose } from '../util/rng';
import type { TrainConfig } from './config';
import type { ImageDataset } from '../data/dataset';
import { validateConfig } from './config';
import { TrainingDivergedError } from './collapse';

/** Raw images (uint8, N x C x H x W) with labels: what the trainer consumes. */
export type ImageSet = Pick<ImageDataset, 'count' | 'channels' | 'height' | 'width' | 'images' | 'labels'>;

export const NORMALISATION: Record<string, { mean: number[]; std: number }> = {
  'fashion-mnist': { mean: [72.93], std: 90.0 },
  cifar10: { mean: [125.3, 123.0, 113.9], std: 64.0 },
};

/** A fresh (uninitialised) Model of `cfg.arch` for `channels` x `size` x `size` inputs and `numClasses` classes (default 10). */
export function createModel(cfg: TrainConfig, channels: number, size: number, numClasses = 10): Model {
  const graph = buildGraph(cfg.arch, channels, size, numClasses, cfg.width ?? 1);
  const norm = cfg.inputNorm ?? NORMALISATION[cfg.dataset]!;
  return new Model(graph, { weightBits: cfg.weightBits, actBits: cfg.actBits, perChannel: cfg.perChannel, firstLastBits: cfg.firstLastBits }, norm, cfg.padding);
}

/**
 * The buffers of training steps (autograd/pool.ts), shared by every Trainer of this thread (steps never
 * overlap: JavaScript runs one at a time), so that two trainers used in turn hold one step's memory, not two.
 * Emptied at the end of each epoch and by releaseStepBuffers().
 */
const stepPool = new BufferPool();

/** Gives the training steps' reusable buffers back to the runtime (the next step allocates them again). */
export function releaseStepBuffers(): void {
  stepPool.clear();
}

export interface StepStats { loss: number; correct: number; count: number; zeros: Float64Array; elems: Float64Array }

export interface EpochStats {
  epoch: number;
  loss: number;
  accuracy: number;
  /** Mean over ReLU sites of the fraction of zeros (DESIGN §4), on training batches. */
  sparsity: number;
  sparsityWeighted: number;
  /** Fraction of zeros per ReLU site on the epoch's training batches. */
  perLayerSparsity: number[];
  images: number;
  seconds: number;
  imagesPerSecond: number;
}

/**
 * The running figures of an epoch stopped part way (train --max-steps), kept in the checkpoint so a
 * resumed run ends the epoch with the same loss, accuracy and sparsity as an uninterrupted one.
 */
export interface PartialEpoch {
  lossSum: number;
  correct: number;
  seen: number;
  zeros: number[];
  elems: number[];
}

export interface EvalResult {
  accuracy: number;
  loss: number;
  /** Mean over ReLU sites of the fraction of exact zeros (the paper's definition). */
  sparsity: number;
  /** Zeros over all activation elements. */
  sparsityWeighted: number;
  perLayerSparsity: number[];
  count: number;
  predictions: Uint8Array;
}

/** Copies images idx[start..end) into a contiguous batch buffer. */
export function gatherBatch(set: ImageSet, idx: ArrayLike<number>, start: number, end: number, out: { images: Uint8Array; labels: Uint8Array }): number {
  const per = set.channels * set.height * set.width;
  const n = end - start;
  for (let i = 0; i < n; i++) {
    const j = idx[start + i]!;
    out.images.set(set.images.subarray(j * per, (j + 1) * per), i * per);
    out.labels[i] = set.labels[j]!;
  }
  return n;
}

/** Random crop with zero padding 4 (raw pixel space) and horizontal flip, in place. */
export function augmentCropFlip(images: Uint8Array, n: number, C: number, H: number, W: number, seed: number, step: number): void {
  const u = uniforms(seed, RngPurpose.Augment, step >>> 0, 3 * n);
  const tmp = new Uint8Array(C * H * W);
  const per = C * H * W;
  for (let i = 0; i < n; i++) {
    const dy = Math.floor(u[3 * i]! * 9) - 4, dx = Math.floor(u[3 * i + 1]! * 9) - 4, flip = u[3 * i + 2]! < 0.5;
    const img = images.subarray(i * per, (i + 1) * per);
    for (let c = 0; c < C; c++) {
      for (let y = 0; y < H; y++) {
        const sy = y + dy;
        for (let x = 0; x < W; x++) {
          const sx0 = flip ? W - 1 - x : x;
          const sx = sx0 + dx;
          tmp[(c * H + y) * W + x] = sy >= 0 && sy < H && sx >= 0 && sx < W ? img[(c * H + sy) * W + sx]! : 0;
        }
      }
    }
    img.set(tmp);
  }
}

/** SGD training of a Model on an image set: epochs, learning-rate schedule, QAT/AS/SAQ steps; deterministic for a seed. */
export class Trainer {
  readonly cfg: TrainConfig;
  readonly model: Model;
  readonly train: ImageSet;
  readonly trainIndex: Uint32Array;
  /** SGD momentum buffers over the parameter arena. */
  momentum: Float32Array;
  momentumStarted = false;
  /** Optimiser steps taken. */
  step = 0;
  /** Epochs completed (the next epoch to run). */
  epoch = 0;
  readonly stepsPerEpoch: number;
  /** The figures of the current epoch when it was stopped part way (null at an epoch boundary). */
  partialEpoch: PartialEpoch | null = null;
  private readonly l1: number[];

  constructor(cfg: TrainConfig, train: ImageSet, model?: Model) {
    this.cfg = validateConfig({ ...cfg });
    this.train = train;
    const n = cfg.limitTrain > 0 ? Math.min(cfg.limitTrain, train.count) : train.count;
    if (n < 1) throw new RangeError('no training images');
    this.trainIndex = new Uint32Array(n);
    for (let i = 0; i < n; i++) this.trainIndex[i] = i;
    this.model = model ?? createModel(this.cfg, train.channels, train.height);
    if (!model) this.model.init(cfg.seed);
    this.momentum = new Float32Array(this.model.params.size);
    this.stepsPerEpoch = Math.ceil(n / cfg.batchSize);
    const sites = this.model.graph.sites;
    if (cfg.actL1.length !== 1 && cfg.actL1.length !== sites) {
      throw new RangeError(`actL1 has ${cfg.actL1.length} values; ${cfg.arch} has ${sites} ReLU layers (give 1 or ${sites})`);
    }
    this.l1 = cfg.actL1.length === 1 ? new Array<number>(sites).fill(cfg.actL1[0]!) : cfg.actL1.slice();
  }

  get totalSteps(): number { return this.cfg.epochs * this.stepsPerEpoch; }

  /**
   * The learning rate at optimiser step `step`. A run extended after it finished (cfg.extendedFrom) has one
   * schedule segment per stage: [0, e1), [e1, e2), ..., [ek, epochs) epochs; each segment runs the configured
   * schedule afresh over its own length (cosine from lr down to 0; step milestones as fractions of the segment).
   */
  /** SAQ's rho at a step: ramped linearly from 0 over the first saqWarmup epochs (DESIGN §3). */
  rhoAt(step: number): number {
    const w = this.cfg.saqWarmup * this.stepsPerEpoch;
    return w > 0 ? this.cfg.saqRho * Math.min(1, step / w) : this.cfg.saqRho;
  }

  /** Stops the run on a non-finite loss or gradient (DESIGN §3 collapse detection). */
  private checkFinite(loss: number): void {
    if (!Number.isFinite(loss)) throw new TrainingDivergedError('loss', ...this.where());
    if (!kernels().allFinite(this.model.params.grad)) throw new TrainingDivergedError('gradient', ...this.where());
  }

  learningRate(step: number): number {
    const c = this.cfg;
    let T = this.totalSteps;
    if (c.extendedFrom?.length) {
      const bounds = [0, ...c.extendedFrom.map((e) => e * this.stepsPerEpoch), T];
      let k = 0;
      while (k + 2 < bounds.length && step >= bounds[k + 1]!) k++;
      step -= bounds[k]!;
      T = bounds[k + 1]! - bounds[k]!;
    }
    switch (c.schedule) {
      case 'constant': return c.lr;
      case 'cosine': return 0.5 * c.lr * (1 + Math.cos((Math.PI * Math.min(step, T)) / T));
      case 'step': {
        let lr = c.lr;
        for (const m of c.milestones) if (step >= Math.round(m * T)) lr *= c.gamma;
        return lr;
      }
    }
  }

  private lossOf(tape: Tape, x: Var, labels: Uint8Array, training: boolean, updateStats: boolean, perturb?: Map<string, Float32Array>) {
    const useL1 = this.l1.some((v) => v > 0);
    const r = this.model.forward(x, { tape, training, updateStats, keepActs: true, ...(perturb ? { perturb } : {}) });
    const ce = ops.crossEntropy(tape, r.logits, labels);
    let loss = ce.loss;
    if (useL1) {
      const terms = [ce.loss];
      r.acts.forEach((a, i) => { if (this.l1[i]! > 0) terms.push(ops.l1Penalty(tape, a, this.l1[i]!)); });
      loss = ops.sumScalars(tape, terms);
    }
    return { loss, ce, acts: r.acts };
  }

  /**
   * One optimiser step on a batch of raw images. A non-finite loss, gradient or
   * weight, or a non-finite value refused by a kernel, stops the run with a
   * TrainingDivergedError (DESIGN §3).
   */
  trainStep(images: Uint8Array, labels: Uint8Array, n: number): StepStats {
    try {
      return withPool(stepPool, () => {
        try {
          return this.trainStepUnchecked(images, labels, n);
        } finally {
          stepPool.release();
        }
      });
    } catch (e) {
      if (e instanceof RangeError && /finite/i.test(e.message)) throw new TrainingDivergedError('value', ...this.where(), e.message);
      throw e;
    }
  }

  private where(): [number, number, number] {
    return [this.epoch + 1, this.step + 1, this.step - this.epoch * this.stepsPerEpoch + 1];
  }

  private trainStepUnchecked(images: Uint8Array, labels: Uint8Array, n: number): StepStats {
    const m = this.model, p = m.params, cfg = this.cfg;
    const x = m.normalize(images, n);
    const passMark = stepPool.mark();
    const lab = labels.subarray(0, n);
    p.zeroGrad();
    let tape = new Tape(true);
    const first = this.lossOf(tape, x, lab, true, true);
    tape.backward(first.loss);
    const sites = m.graph.sites;
    const zeros = new Float64Array(sites), elems = new Float64Array(sites);
    const k = kernels();
    first.acts.forEach((a, i) => { zeros[i] = k.countZeros(a.data); elems[i] = a.numel; });
    const stats: StepStats = { loss: first.loss.data[0]!, correct: first.ce.correct, count: n, zeros, elems };
    this.checkFinite(stats.loss);
    // nothing of the first pass is read after this point except x (taken before the mark) and the gradients (arena)
    stepPool.release(passMark);

    if (cfg.saqRho > 0) {
      // SAQ (DESIGN §3): eps = rho * g / ||g|| from the gradient at Q(w), over all
      // conv/linear weights (and BN affine parameters with saqIncludeBn); second
      // pass at Q(w) + eps with BN statistics and range EMAs frozen.
      const perturb = new Map<string, Float32Array>();
      const names = m.weightNames();
      const bnEntries = cfg.saqIncludeBn ? p.entries.filter((e) => e.kind === 'bn_weight' || e.kind === 'bn_bias') : [];
      // native loops over the parameters (float64 arithmetic, one chain for the norm: the bits of
      // the JavaScript loops they replaced)
      let sq = 0;
      for (const name of names) sq = k.sumSquares(p.v(name).grad!, sq);
      for (const e of bnEntries) sq = k.sumSquares(p.v(e.name).grad!, sq);
      const scale = sq > 0 ? this.rhoAt(this.step) / Math.sqrt(sq) : 0;
      for (const name of names) {
        const g = p.v(name).grad!;
        // a fresh array, not from the step pool: the pool hands out its smallest free buffer that holds n,
        // often an activation buffer many times a weight's size, and the second pass's activations then
        // need new buffers (ResNet-18 at batch 128 peaked 450 MiB higher that way)
        const eps = new Float32Array(g.length);
        k.scaleToF32(g, scale, eps);
        perturb.set(name.slice(0, -'.weight'.length), eps);
      }
      const saved = bnEntries.map((e) => p.data.slice(e.offset, e.offset + e.size));
      for (const e of bnEntries) k.addScaledF32(p.v(e.name).data, p.v(e.name).grad!, scale);
      p.zeroGrad();
      tape = new Tape(true);
      const second = this.lossOf(tape, x, lab, true, false, perturb);
      tape.backward(second.loss);
      bnEntries.forEach((e, j) => p.data.set(saved[j]!, e.offset));
      this.checkFinite(second.loss.data[0]!);
    }
    if (!this.optimizerStep(this.learningRate(this.step))) throw new TrainingDivergedError('weights', ...this.where());
    this.step++;
    return stats;
  }

  /**
   * SGD with momentum (PyTorch semantics: the first step's buffer is the gradient) and weight decay,
   * one native call over the parameter arena (float64 arithmetic per element, flatenn/f32.h).
   * Returns false if some updated weight is Inf or NaN.
   */
  private optimizerStep(lr: number): boolean {
    const { momentum: mu, weightDecay: wd, nesterov } = this.cfg;
    const p = this.model.params;
    const finite = kernels().sgdStep(p.data, p.grad, mu > 0 ? this.momentum : null, lr, wd, mu, this.momentumStarted, nesterov);
    this.momentumStarted = true;
    return finite;
  }

  /** Runs the next epoch (or the rest of it, after a stop part way); calls onBatch after each step. */
  runEpoch(onBatch?: (done: number, total: number, s: { loss: number; acc: number; sparsity: number }) => void): EpochStats {
    const it = this.epochSteps(onBatch, null);
    let r = it.next();
    while (!r.done) r = it.next();
    return r.value!;
  }

  /**
   * The same epoch, yielding to the event loop between steps (at most every
   * `sliceMs`), so a host application stays responsive while it trains.
   * With `stopAtStep`, stops before the optimiser step of that number (counted from the start of
   * the run) and returns null, the epoch's figures so far in `partialEpoch`.
   */
  async runEpochAsync(onBatch?: (done: number, total: number, s: { loss: number; acc: number; sparsity: number }) => void, sliceMs = 50,
    stopAtStep: number | null = null): Promise<EpochStats | null> {
    const it = this.epochSteps(onBatch, stopAtStep);
    let last = Date.now();
    let r = it.next();
    while (!r.done) {
      if (Date.now() - last >= sliceMs) { await new Promise((res) => setImmediate(res)); last = Date.now(); }
      r = it.next();
    }
    return r.value;
  }

  private *epochSteps(onBatch: ((done: number, total: number, s: { loss: number; acc: number; sparsity: number }) => void) | undefined,
    stopAtStep: number | null): Generator<void, EpochStats | null, void> {
    const cfg = this.cfg, set = this.train;
    const n = this.trainIndex.length;
    const perm = permutation(cfg.seed, this.epoch, n);
    const per = set.channels * set.height * set.width;
    const buf = { images: new Uint8Array(cfg.batchSize * per), labels: new Uint8Array(cfg.batchSize) };
    const t0 = process.hrtime.bigint();
    let lossSum = 0, correct = 0, seen = 0;
    const sites = this.model.graph.sites;
    const zeros = new Float64Array(sites), elems = new Float64Array(sites);
    // batches of this epoch already done (a run stopped part way and resumed)
    const b0 = this.step - this.epoch * this.stepsPerEpoch;
    if (b0 < 0 || b0 >= this.stepsPerEpoch) throw new RangeError(`step ${this.step} is not within epoch ${this.epoch + 1} (${this.stepsPerEpoch} steps per epoch)`);
    if (b0 > 0) {
      const p = this.partialEpoch;
      if (!p || p.zeros.length !== sites || p.elems.length !== sites) throw new RangeError(`step ${this.step} is part way through epoch ${this.epoch + 1} but the epoch's figures so far are missing`);
      ({ lossSum, correct, seen } = p);
      zeros.set(p.zeros);
      elems.set(p.elems);
    }
    for (let b = b0; b < this.stepsPerEpoch; b++) {
      if (stopAtStep !== null && this.step >= stopAtStep) {
        this.partialEpoch = { lossSum, correct, seen, zeros: Array.from(zeros), elems: Array.from(elems) };
        return null;
      }
      const start = b * cfg.batchSize, end = Math.min(n, start + cfg.batchSize);
      const cnt = gatherBatch(set, perm, start, end, buf);
      if (cfg.augment) augmentCropFlip(buf.images, cnt, set.channels, set.height, set.width, cfg.seed, this.step);
      const s = this.trainStep(buf.images, buf.labels, cnt);
      lossSum += s.loss * cnt; correct += s.correct; seen += cnt;
      for (let i = 0; i < sites; i++) { zeros[i]! += s.zeros[i]!; elems[i]! += s.elems[i]!; }
      if (onBatch) {
        let sp = 0;
        for (let i = 0; i < sites; i++) sp += elems[i]! > 0 ? zeros[i]! / elems[i]! : 0;
        onBatch(seen, n, { loss: lossSum / seen, acc: correct / seen, sparsity: sites ? sp / sites : 0 });
      }
      yield;
    }
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    stepPool.clear();  // the step buffers go back to the runtime between epochs (validation runs without them)
    this.epoch++;
    this.partialEpoch = null;
    let zs = 0, es = 0, mean = 0;
    for (let i = 0; i < sites; i++) { zs += zeros[i]!; es += elems[i]!; mean += zeros[i]! / elems[i]!; }
    return {
      epoch: this.epoch, loss: lossSum / seen, accuracy: correct / seen,
      sparsity: sites ? mean / sites : 0, sparsityWeighted: es ? zs / es : 0,
      perLayerSparsity: Array.from(zeros, (z, i) => z / elems[i]!), images: seen, seconds, imagesPerSecond: seen / seconds,
    };
  }
}

/** Memory the eval-mode forward pass may hold per batch (every node's fp32 output is kept until the batch ends). */
export const EVAL_BATCH_BYTES = 192 * 2 ** 20;

/**
 * The evaluation batch: as many images as fit EVAL_BATCH_BYTES of fp32 node outputs (at most 500).
 * LeNet-5 gets 500; a full-width CIFAR ResNet-18 (7.8 MiB of node outputs per image) 24: `eval` then peaks
 * near 0.75 GiB (measured on CIFAR-10 read from its .tar.gz, which alone takes about 0.4 GiB).
 */
export function evalBatchSize(graph: Graph, budgetBytes = EVAL_BATCH_BYTES): number {
  const perImage = 4 * inferShapes(graph).reduce((a, s) => a + s.reduce((p, q) => p * q, 1), 0);
  return Math.max(1, Math.min(500, Math.floor(budgetBytes / perImage)));
}

/** Accuracy, loss and activation sparsity of a model in eval mode (batch: evalBatchSize unless given). */
export function evaluate(model: Model, set: ImageSet, opts: { batchSize?: number; start?: number; end?: number } = {}): EvalResult {
  const bs = opts.batchSize ?? evalBatchSize(model.graph);
  const start = opts.start ?? 0, end = opts.end ?? set.count;
  const per = set.channels * set.height * set.width;
  const sites = model.graph.sites;
  const zeros = new Float64Array(sites), elems = new Float64Array(sites);
  const predictions = new Uint8Array(end - start);
  const k = kernels();
  let lossSum = 0, correct = 0;
  for (let b = start; b < end; b += bs) {
    const e = Math.min(end, b + bs), n = e - b;
    const x = model.normalize(set.images.subarray(b * per, e * per), n);
    const tape = new Tape(false);
    const r = model.forward(x, { tape, training: false, updateStats: false, keepActs: true });
    const ce = ops.crossEntropy(tape, r.logits, set.labels.subarray(b, e));
    lossSum += ce.loss.data[0]! * n;
    correct += ce.correct;
    predictions.set(ce.predictions, b - start);
    r.acts.forEach((a, i) => { zeros[i]! += k.countZeros(a.data); elems[i]! += a.numel; });
  }
  const count = end - start;
  const perLayer = Array.from(zeros, (z, i) => z / elems[i]!);
  const zs = zeros.reduce((a, b) => a + b, 0), es = elems.reduce((a, b) => a + b, 0);
  return {
    accuracy: correct / count, loss: lossSum / count,
    sparsity: sites ? perLayer.reduce((a, b) => a + b, 0) / sites : 0,
    sparsityWeighted: es ? zs / es : 0, perLayerSparsity: perLayer, count, predictions,
  };
}
