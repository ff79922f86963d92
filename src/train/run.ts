// High-level training and evaluation runs (used by the CLI and the library).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadDataset } from '../data/dataset';
import { checkOutputPath } from '../io/paths';
import type { TrainConfig } from './config';
import { validateConfig } from './config';
import { type EpochRecord, loadCheckpoint, resumeTrainer, saveCheckpoint } from './checkpoint';
import { evaluate, evalBatchSize, type EvalResult, type EpochStats, type ImageSet, Trainer } from './trainer';
import { type CollapseFlag, detectCollapse } from './collapse';

/** A progress event of {@link trainModel} (the library prints nothing; the CLI draws these as bars/lines). */
export type TrainProgress =
  /** After each training batch: images done in this epoch and running means. */
  | { kind: 'batch'; epoch: number; epochs: number; done: number; total: number; loss: number; accuracy: number; sparsity: number }
  /** During the end-of-epoch validation / final test evaluation: images evaluated so far. */
  | { kind: 'eval'; split: 'val' | 'test'; epoch: number; epochs: number; done: number; total: number }
  /** An epoch ended and its checkpoint was written; `stats.val` is the validation result (when valSize > 0). */
  | { kind: 'epoch'; epoch: number; epochs: number; stats: EpochStats & { val?: EvalResult } }
  /** `maxSteps` reached: a checkpoint at optimiser step `step` was written (resume continues from it). */
  | { kind: 'stopped'; epoch: number; epochs: number; step: number; maxSteps: number }
  /** Something the user should see (e.g. collapse detection flagged an epoch); the CLI prints it as a warning. */
  | { kind: 'warning'; epoch: number; epochs: number; message: string };

export interface TrainRunOptions {
  /** Checkpoint path (.safetensors), rewritten atomically after every epoch; the epoch log goes beside it (.log.jsonl). */
  out: string;
  /** Dataset folder (default: the standard search, see `flatenn data info`). */
  dataDir?: string;
  /** Continue the checkpoint at `out` with its own settings (default false). */
  resume?: boolean;
  /**
   * With `resume`: extend a FINISHED run to this many epochs (more than it has). The added epochs run a fresh
   * schedule segment (see Trainer.learningRate); the config records it in `extendedFrom`, each added epoch's
   * history record carries `extension`. Default: the checkpoint's own epoch count (a plain resume).
   */
  epochs?: number;
  /** @deprecated The library never prints; kept so old callers compile. Progress goes to `onProgress`. */
  quiet?: boolean;
  /** Progress events (default: none). Called on the event-loop thread between work slices. */
  onProgress?: (p: TrainProgress) => void;
  /** Called after each epoch with its stats (after the checkpoint is written). */
  onEpoch?: (s: EpochStats & { val?: EvalResult }) => void;
  /** Evaluate on the test set at the end (default true). */
  testAtEnd?: boolean;
  /** Overwrite an existing checkpoint at `out` when not resuming (default false: refused). */
  force?: boolean;
  /**
   * Cancels the run: it stops between two batches (or evaluation slices) and rejects with the signal's reason.
   * The checkpoint keeps the last completed epoch (it is only ever replaced atomically); an already-aborted
   * signal rejects before anything is read or written.
   */
  signal?: AbortSignal;
  /** Longest stretch of work (ms) between two yields to the event loop (default 50). One batch is never split. */
  sliceMs?: number;
  /**
   * Stop once this many optimiser steps are done, counted from the start of the run (resumed steps
   * included), with a checkpoint that --resume continues bit for bit. The schedule still spans
   * the configured epochs. Default: no limit.
   */
  maxSteps?: number;
}

/** Checks trainModel's options (TypeError / RangeError naming the option). */
export function validateTrainOptions(config: TrainConfig | null, o: TrainRunOptions): void {
  if (typeof o !== 'object' || o === null || Array.isArray(o)) throw new TypeError(`train options must be an object, got ${o === null ? 'null' : typeof o}`);
  if (typeof o.out !== 'string' || o.out === '') throw new TypeError('out must be the checkpoint path (a non-empty string ending in .safetensors)');
  if (!o.out.endsWith('.safetensors')) throw new RangeError(`out must end in .safetensors, got '${o.out}'`);
  for (const k of ['resume', 'quiet', 'testAtEnd', 'force'] as const) if (o[k] !== undefined && typeof o[k] !== 'boolean') throw new TypeError(`${k} must be a boolean, got ${typeof o[k]}`);
  if (o.dataDir !== undefined && (typeof o.dataDir !== 'string' || o.dataDir === '')) throw new TypeError('dataDir must be a non-empty string');
  if (o.onEpoch !== undefined && typeof o.onEpoch !== 'function') throw new TypeError('onEpoch must be a function');
  if (o.maxSteps !== undefined && !(Number.isSafeInteger(o.maxSteps) && o.maxSteps >= 0)) throw new RangeError(`maxSteps must be an integer >= 0, got ${String(o.maxSteps)}`);
  if (o.onProgress !== undefined && typeof o.onProgress !== 'function') throw new TypeError('onProgress must be a function');
  if (o.signal !== undefined && !(o.signal instanceof AbortSignal)) throw new TypeError('signal must be an AbortSignal');
  if (o.sliceMs !== undefined && !(typeof o.sliceMs === 'number' && o.sliceMs >= 0 && Number.isFinite(o.sliceMs))) throw new RangeError(`sliceMs must be a finite number >= 0, got ${String(o.sliceMs)}`);
  if (o.epochs !== undefined) {
    if (!o.resume) throw new RangeError('epochs extends a finished run: it goes with resume (a new run takes its epochs from the config)');
    if (!(Number.isSafeInteger(o.epochs) && o.epochs >= 1)) throw new RangeError(`epochs must be an integer >= 1, got ${String(o.epochs)}`);
  }
  if (o.resume) {
    if (config !== null && config !== undefined) throw new RangeError('resume continues with the checkpoint\'s config; pass null as the config');
  } else {
    validateConfig(config as TrainConfig);
  }
}

export interface TrainRunResult {
  config: TrainConfig;
  checkpoint: string;
  history: EpochRecord[];
  epochs: (EpochStats & { val?: EvalResult })[];
  test?: EvalResult;
  /** Epochs flagged by collapse detection (DESIGN §3), this run and any earlier part of it; empty when none. */
  collapse: CollapseFlag[];
  seconds: number;
  /** The optimiser steps done when maxSteps stopped the run before its last epoch ended. */
  stoppedAtStep?: number;
}

function splitTrainVal(full: ImageSet, valSize: number): { train: ImageSet; val: ImageSet | null } {
  if (valSize <= 0) return { train: full, val: null };
  if (valSize >= full.count) throw new RangeError(`valSize ${valSize} leaves no training images (the set has ${full.count})`);
  const per = full.channels * full.height * full.width, n = full.count - valSize;
  const part = (a: number, b: number): ImageSet => ({ ...full, count: b - a, images: full.images.subarray(a * per, b * per), labels: full.labels.subarray(a, b) });
  return { train: part(0, n), val: part(n, full.count) };
}

/**
 * Evaluates in slices of `chunk` images, yielding to the event loop between slices (at most every `sliceMs`).
 * Same figures as `evaluate()` over the whole set (counts exact; means merged weighted by slice size).
 */
export async function evaluateAsync(model: Trainer['model'], set: ImageSet, o: { sliceMs?: number; chunk?: number; signal?: AbortSignal; onSlice?: (done: number, total: number) => void } = {}): Promise<EvalResult> {
  const chunk = o.chunk ?? Math.min(100, evalBatchSize(model.graph)), sliceMs = o.sliceMs ?? 50;
  const n = set.count;
  const predictions = new Uint8Array(n);
  let correct = 0, lossSum = 0, spSum = 0, spwSum = 0;
  let perLayer: number[] = [];
  let last = Date.now();
  for (let b = 0; b < n; b += chunk) {
    o.signal?.throwIfAborted();
    const e = Math.min(n, b + chunk), m = e - b;
    const r = evaluate(model, set, { start: b, end: e, batchSize: chunk });
    correct += Math.round(r.accuracy * m); lossSum += r.loss * m; spSum += r.sparsity * m; spwSum += r.sparsityWeighted * m;
    if (perLayer.length === 0) perLayer = r.perLayerSparsity.map(() => 0);
    r.perLayerSparsity.forEach((v, i) => { perLayer[i]! += v * m; });
    predictions.set(r.predictions, b);
    o.onSlice?.(e, n);
    if (Date.now() - last >= sliceMs) { await new Promise((res) => setImmediate(res)); last = Date.now(); }
  }
  return {
    accuracy: correct / n, loss: lossSum / n, sparsity: spSum / n, sparsityWeighted: spwSum / n,
    perLayerSparsity: perLayer.map((v) => v / n), count: n, predictions,
  };
}

/**
 * Trains (or resumes) and writes a checkpoint after every epoch. Runs on the calling thread but yields to the
 * event loop between batches and evaluation slices (see `sliceMs`); prints nothing (see `onProgress`).
 */
export async function trainModel(config: TrainConfig | null, o: TrainRunOptions): Promise<TrainRunResult> {
  validateTrainOptions(config, o);
  o.signal?.throwIfAborted(); // an aborted signal: nothing read or written
  checkOutputPath(o.out, []);
  if (!o.resume && !o.force && fs.existsSync(o.out)) throw new Error(`${o.out} already exists; continue it with --resume, or overwrite it with --force`);
  const t0 = Date.now();
  let cfg: TrainConfig;
  let trainer: Trainer;
  let history: EpochRecord[] = [];
  let val: ImageSet | null;
  const logPath = o.out.replace(/\.safetensors$/, '') + '.log.jsonl';
  if (o.resume) {
    if (!fs.existsSync(o.out)) throw new Error(`--resume: no checkpoint at ${o.out}`);
    const { meta } = await loadCheckpoint(o.out);
    cfg = meta.config;
    let extendTo: number | null = null;
    if (o.epochs !== undefined && o.epochs !== cfg.epochs) {
      if (!Number.isInteger(o.epochs) || o.epochs < 1) throw new RangeError(`epochs must be a positive integer, got ${o.epochs}`);
      if (meta.epoch < cfg.epochs) throw new RangeError(`${o.out} is not finished (epoch ${meta.epoch} of ${cfg.epochs}): resume it without --epochs first, then extend it`);
      if (o.epochs < cfg.epochs) throw new RangeError(`${o.out} already has ${cfg.epochs} epochs; --epochs ${o.epochs} would shorten it`);
      extendTo = o.epochs;
    }
    const full = await loadDataset(cfg.dataset, 'train', o.dataDir ? { dataDir: o.dataDir } : {});
    const s = splitTrainVal(full, cfg.valSize);
    val = s.val;
    ({ trainer, history } = await resumeTrainer(o.out, s.train, extendTo ?? undefined));
    cfg = trainer.cfg;
  } else {
    cfg = validateConfig({ ...config! });
    const full = await loadDataset(cfg.dataset, 'train', o.dataDir ? { dataDir: o.dataDir } : {});
    const s = splitTrainVal(full, cfg.valSize);
    val = s.val;
    trainer = new Trainer(cfg, s.train);
  }
  if (trainer.trainIndex.length === 0) throw new Error(`the ${cfg.dataset} training split holds no images`);
  // The test split is loaded before training: an empty or missing one fails now, not after the last epoch.
  const testSet = o.testAtEnd !== false ? await loadDataset(cfg.dataset, 'test', o.dataDir ? { dataDir: o.dataDir } : {}) : null;
  if (testSet && testSet.count === 0) throw new Error(`the ${cfg.dataset} test split holds no images (${testSet.source})`);
  fs.mkdirSync(path.dirname(path.resolve(o.out)), { recursive: true });
  const epochs: (EpochStats & { val?: EvalResult })[] = [];
  const sliceMs = o.sliceMs ?? 50;
  const maxSteps = o.maxSteps;
  if (maxSteps !== undefined && !(Number.isInteger(maxSteps) && maxSteps >= 0)) throw new RangeError(`maxSteps must be an integer >= 0, got ${maxSteps}`);
  let stoppedAtStep: number | undefined;
  while (trainer.epoch < cfg.epochs) {
    o.signal?.throwIfAborted();
    const epoch = trainer.epoch + 1;
    if (maxSteps !== undefined && trainer.step >= maxSteps) {
      stoppedAtStep = trainer.step;
      await saveCheckpoint(o.out, trainer, history); // the same bytes as the last one, or the first (--max-steps 0)
      o.onProgress?.({ kind: 'stopped', epoch, epochs: cfg.epochs, step: trainer.step, maxSteps });
      break;
    }
    const st = await trainer.runEpochAsync((done, total, s) => {
      o.signal?.throwIfAborted(); // unwinds out of the epoch: nothing of it is saved
      o.onProgress?.({ kind: 'batch', epoch, epochs: cfg.epochs, done, total, loss: s.loss, accuracy: s.acc, sparsity: s.sparsity });
    }, sliceMs, maxSteps ?? null);
    if (st === null) {
      stoppedAtStep = trainer.step;
      await saveCheckpoint(o.out, trainer, history);
      o.onProgress?.({ kind: 'stopped', epoch, epochs: cfg.epochs, step: trainer.step, maxSteps: maxSteps! });
      break;
    }
    const v = val
      ? await evaluateAsync(trainer.model, val, { sliceMs, ...(o.signal ? { signal: o.signal } : {}), onSlice: (done, total) => o.onProgress?.({ kind: 'eval', split: 'val', epoch, epochs: cfg.epochs, done, total }) })
      : undefined;
    const rec: EpochRecord = { epoch: st.epoch, trainLoss: st.loss, trainAccuracy: st.accuracy, trainSparsity: st.sparsity };
    if (v) { rec.valAccuracy = v.accuracy; rec.valLoss = v.loss; rec.valSparsity = v.sparsity; }
    if (cfg.extendedFrom?.length) {
      const k = cfg.extendedFrom.filter((e) => st.epoch > e).length;
      if (k > 0) rec.extension = k;
    }
    const flagged = detectCollapse(v
      ? { epoch: st.epoch, accuracy: v.accuracy, loss: v.loss, perLayerSparsity: v.perLayerSparsity, numClasses: trainer.model.graph.numClasses, on: 'validation' }
      : { epoch: st.epoch, accuracy: st.accuracy, loss: st.loss, perLayerSparsity: st.perLayerSparsity, numClasses: trainer.model.graph.numClasses, on: 'training' });
    if (flagged) {
      rec.collapse = flagged;
      o.onProgress?.({ kind: 'warning', epoch: st.epoch, epochs: cfg.epochs, message: `${o.out}: ${flagged.message}` });
    }
    history.push(rec);
    await saveCheckpoint(o.out, trainer, history);
    fs.appendFileSync(logPath, JSON.stringify({ ...rec, seconds: st.seconds, imagesPerSecond: st.imagesPerSecond, time: new Date().toISOString() }) + '\n');
    const full = v ? { ...st, val: v } : st;
    epochs.push(full);
    o.onProgress?.({ kind: 'epoch', epoch, epochs: cfg.epochs, stats: full });
    o.onEpoch?.(full);
  }
  let test: EvalResult | undefined;
  if (testSet) test = await evaluateAsync(trainer.model, testSet, { sliceMs, ...(o.signal ? { signal: o.signal } : {}), onSlice: (done, total) => o.onProgress?.({ kind: 'eval', split: 'test', epoch: trainer.epoch, epochs: cfg.epochs, done, total }) });
  const collapse = history.flatMap((h) => (h.collapse ? [h.collapse] : []));
  return { config: cfg, checkpoint: o.out, history, epochs, ...(test ? { test } : {}), collapse, seconds: (Date.now() - t0) / 1000, ...(stoppedAtStep !== undefined ? { stoppedAtStep } : {}) };
}
