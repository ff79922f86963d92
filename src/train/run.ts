// High-level training and evaluation runs (used by the CLI and the library).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadDataset } from '../data/dataset';
import { Progress } from '../util/progress';
import { checkOutputPath } from '../io/paths';
import type { TrainConfig } from './config';
import { validateConfig } from './config';
import { type EpochRecord, loadCheckpoint, resumeTrainer, saveCheckpoint } from './checkpoint';
import { evaluate, type EvalResult, type EpochStats, type ImageSet, Trainer } from './trainer';
import { type CollapseFlag, detectCollapse } from './collapse';

export interface TrainRunOptions {
  out: string;
  dataDir?: string;
  resume?: boolean;
  quiet?: boolean;
  /** Called after each epoch with its stats (after the checkpoint is written). */
  onEpoch?: (s: EpochStats & { val?: EvalResult }) => void;
  /** Evaluate on the test set at the end (default true). */
  testAtEnd?: boolean;
  /** Overwrite an existing checkpoint at `out` when not resuming (default false: refused). */
  force?: boolean;
  /**
   * Stop once this many optimiser steps are done, counted from the start of the run (resumed steps
   * included), with a checkpoint that --resume continues bit for bit. The schedule still spans
   * the configured epochs.
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

/** Trains (or resumes) and writes a checkpoint after every epoch. */
export async function trainModel(config: TrainConfig | null, o: TrainRunOptions): Promise<TrainRunResult> {
  validateTrainOptions(config, o);
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
    const full = await loadDataset(cfg.dataset, 'train', o.dataDir ? { dataDir: o.dataDir } : {});
    const s = splitTrainVal(full, cfg.valSize);
    val = s.val;
    ({ trainer, history } = await resumeTrainer(o.out, s.train));
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
  const maxSteps = o.maxSteps;
  if (maxSteps !== undefined && !(Number.isInteger(maxSteps) && maxSteps >= 0)) throw new RangeError(`maxSteps must be an integer >= 0, got ${maxSteps}`);
  let stoppedAtStep: number | undefined;
  while (trainer.epoch < cfg.epochs) {
    if (maxSteps !== undefined && trainer.step >= maxSteps) {
      stoppedAtStep = trainer.step;
      await saveCheckpoint(o.out, trainer, history); // the same bytes as the last one, or the first (--max-steps 0)
      break;
    }
    const bar = new Progress({ label: `epoch ${trainer.epoch + 1}/${cfg.epochs}`, total: trainer.trainIndex.length, unit: 'img', quiet: !!o.quiet });
    const st = await trainer.runEpochAsync((done, _total, s) => bar.update(done, `loss ${s.loss.toFixed(4)} acc ${(100 * s.acc).toFixed(2)}% sparsity ${(100 * s.sparsity).toFixed(1)}%`),
      50, maxSteps ?? null);
    if (st === null) {
      stoppedAtStep = trainer.step;
      bar.finish(`stopped after step ${trainer.step} (--max-steps ${maxSteps}); continue with --resume`);
      await saveCheckpoint(o.out, trainer, history);
      break;
    }
    const v = val ? evaluate(trainer.model, val) : undefined;
    bar.finish(`loss ${st.loss.toFixed(4)} acc ${(100 * st.accuracy).toFixed(2)}% sparsity ${(100 * st.sparsity).toFixed(1)}%` + (v ? ` | val acc ${(100 * v.accuracy).toFixed(2)}%` : ''));
    const rec: EpochRecord = { epoch: st.epoch, trainLoss: st.loss, trainAccuracy: st.accuracy, trainSparsity: st.sparsity };
    if (v) { rec.valAccuracy = v.accuracy; rec.valLoss = v.loss; rec.valSparsity = v.sparsity; }
    const flagged = detectCollapse(v
      ? { epoch: st.epoch, accuracy: v.accuracy, loss: v.loss, perLayerSparsity: v.perLayerSparsity, numClasses: trainer.model.graph.numClasses, on: 'validation' }
      : { epoch: st.epoch, accuracy: st.accuracy, loss: st.loss, perLayerSparsity: st.perLayerSparsity, numClasses: trainer.model.graph.numClasses, on: 'training' });
    if (flagged) {
      rec.collapse = flagged;
      process.stderr.write(`flatenn: warning: ${o.out}: ${flagged.message}\n`);
    }
    history.push(rec);
    await saveCheckpoint(o.out, trainer, history);
    fs.appendFileSync(logPath, JSON.stringify({ ...rec, seconds: st.seconds, imagesPerSecond: st.imagesPerSecond, time: new Date().toISOString() }) + '\n');
    const full = v ? { ...st, val: v } : st;
    epochs.push(full);
    o.onEpoch?.(full);
  }
  let test: EvalResult | undefined;
  if (testSet) test = evaluate(trainer.model, testSet);
  const collapse = history.flatMap((h) => (h.collapse ? [h.collapse] : []));
  return { config: cfg, checkpoint: o.out, history, epochs, ...(test ? { test } : {}), collapse, seconds: (Date.now() - t0) / 1000, ...(stoppedAtStep !== undefined ? { stoppedAtStep } : {}) };
}
