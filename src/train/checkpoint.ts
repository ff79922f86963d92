// Checkpoints as safetensors (DESIGN §5): latent weights, BN state, activation
// ranges, momentum buffers; step, epoch and config in the 'flatenn' metadata
// JSON. Nothing that varies between identical runs goes in.
import { readSafetensors, tensorOf, writeSafetensors, type Tensor, type SafetensorsFile } from '../io/safetensors';
import type { Model } from '../nn/model';
import type { TrainConfig } from './config';
import { validateConfig } from './config';
import { createModel, Trainer, type ImageSet, type PartialEpoch } from './trainer';

export const CHECKPOINT_FORMAT = 'flatenn.checkpoint';
export const CHECKPOINT_VERSION = 1;

/** Deterministic per-epoch figures kept in the checkpoint (no timings). */
export interface EpochRecord {
  epoch: number;
  trainLoss: number;
  trainAccuracy: number;
  trainSparsity: number;
  valAccuracy?: number;
  valLoss?: number;
  valSparsity?: number;
  /** On epochs trained after the run was extended: which extension (1 = the first `--resume --epochs N`). */
  extension?: number;
}

export interface CheckpointMeta {
  format: typeof CHECKPOINT_FORMAT;
  version: number;
  arch: string;
  dataset: string;
  input: { channels: number; height: number; width: number };
  numClasses: number;
  config: TrainConfig;
  epoch: number;
  step: number;
  momentumStarted: boolean;
  /** Training images seen per epoch (the data-order position is epoch * this). */
  trainImages: number;
  history: EpochRecord[];
  /** Present when the run stopped part way through an epoch (train --max-steps). */
  partialEpoch?: PartialEpoch;
}

function f32(shape: number[], data: Float32Array): Tensor {
  return { dtype: 'F32', shape, data };
}

/** Model tensors (weights, BN state, activation ranges) under their documented names. */
export function modelTensors(model: Model): Record<string, Tensor> {
  const out: Record<string, Tensor> = {};
  for (const e of model.params.entries) out[e.name] = f32(e.shape, model.params.data.subarray(e.offset, e.offset + e.size));
  for (const [name, b] of model.bn) {
    out[`${name}.running_mean`] = f32([b.runningMean.length], b.runningMean);
    out[`${name}.running_var`] = f32([b.runningVar.length], b.runningVar);
  }
  for (const [name, s] of model.weightScales) out[`${name}.weight_scale`] = f32([s.length], s);
  out['act.range'] = f32([model.actRange.length], model.actRange);
  out['act.range_initialized'] = { dtype: 'U8', shape: [model.actRangeInit.length], data: model.actRangeInit };
  return out;
}

/** Writes the trainer's full state (weights, BN, ranges, momentum, step/epoch, config, history) atomically to `path`. */
export async function saveCheckpoint(path: string, tr: Trainer, history: EpochRecord[]): Promise<void> {
  const m = tr.model;
  const tensors = modelTensors(m);
  for (const e of m.params.entries) tensors[`optimizer.momentum.${e.name}`] = f32(e.shape, tr.momentum.subarray(e.offset, e.offset + e.size));
  const [channels, height, width] = m.inputShape;
  const meta: CheckpointMeta = {
    format: CHECKPOINT_FORMAT, version: CHECKPOINT_VERSION, arch: tr.cfg.arch, dataset: tr.cfg.dataset,
    input: { channels, height, width }, numClasses: m.graph.numClasses, config: tr.cfg,
    epoch: tr.epoch, step: tr.step, momentumStarted: tr.momentumStarted, trainImages: tr.trainIndex.length, history,
    ...(tr.partialEpoch ? { partialEpoch: tr.partialEpoch } : {}),
  };
  await writeSafetensors(path, tensors, { flatenn: JSON.stringify(meta) });
}

export function checkpointMeta(file: SafetensorsFile, source: string): CheckpointMeta {
  const raw = file.metadata.flatenn;
  if (raw === undefined) throw new Error(`${source}: not a flatenn file (no 'flatenn' metadata key)`);
  let meta: CheckpointMeta;
  try { meta = JSON.parse(raw) as CheckpointMeta; } catch (e) { throw new Error(`${source}: the 'flatenn' metadata is not valid JSON (${(e as Error).message})`); }
  if (meta.format !== CHECKPOINT_FORMAT) throw new Error(`${source}: format '${String(meta.format)}' is not a flatenn checkpoint`);
  if (meta.version !== CHECKPOINT_VERSION) throw new Error(`${source}: checkpoint version ${meta.version} is not supported (expected ${CHECKPOINT_VERSION})`);
  // Checkpoints written before DESIGN §1's padding change carry neither field: raw-0 padding, the dataset's normalisation.
  if (meta.config && typeof meta.config === 'object') {
    if (meta.config.padding === undefined) meta.config.padding = 'raw';
    if (meta.config.inputNorm === undefined) meta.config.inputNorm = null;
  }
  return meta;
}

/** Copies a checkpoint's model tensors into a model built from its config. */
export function loadModelTensors(model: Model, file: SafetensorsFile, source: string): void {
  const wrap = <T>(f: () => T): T => { try { return f(); } catch (e) { throw new Error(`${source}: ${(e as Error).message}`); } };
  for (const e of model.params.entries) model.params.data.set(wrap(() => tensorOf(file, e.name, 'F32', e.shape)).data, e.offset);
  for (const [name, b] of model.bn) {
    b.runningMean.set(wrap(() => tensorOf(file, `${name}.running_mean`, 'F32', [b.runningMean.length])).data);
    b.runningVar.set(wrap(() => tensorOf(file, `${name}.running_var`, 'F32', [b.runningVar.length])).data);
  }
  model.weightScales.clear();
  for (const name of model.weightNames().map((n) => n.slice(0, -'.weight'.length))) {
    const t = file.tensors[`${name}.weight_scale`];
    if (!t) continue;
    const O = model.params.v(`${name}.weight`).shape[0]!;
    const s = wrap(() => tensorOf(file, `${name}.weight_scale`, 'F32')).data;
    if (s.length !== 1 && s.length !== O) throw new Error(`${source}: ${name}.weight_scale has ${s.length} values; expected 1 or ${O} (one per output channel)`);
    for (const v of s) if (!(v > 0) || !Number.isFinite(v)) throw new Error(`${source}: ${name}.weight_scale holds ${v}, not a positive finite scale`);
    model.weightScales.set(name, s.slice());
  }
  model.actRange.set(wrap(() => tensorOf(file, 'act.range', 'F32', [model.actRange.length])).data);
  model.actRangeInit.set(wrap(() => tensorOf(file, 'act.range_initialized', 'U8', [model.actRangeInit.length])).data);
}

export interface LoadedCheckpoint { meta: CheckpointMeta; model: Model; file: SafetensorsFile }

/** Reads a training checkpoint (meta, model with its weights, the raw file); throws naming the file on any mismatch. */
export async function loadCheckpoint(path: string): Promise<LoadedCheckpoint> {
  const file = await readSafetensors(path);
  const meta = checkpointMeta(file, path);
  const cfg = validateConfig(meta.config);
  const model = createModel(cfg, meta.input.channels, meta.input.height, meta.numClasses);
  loadModelTensors(model, file, path);
  return { meta, model, file };
}

/** A trainer positioned exactly where the checkpoint left off (resumed runs equal uninterrupted ones bit for bit). */
export async function resumeTrainer(path: string, train: ImageSet, extendTo?: number): Promise<{ trainer: Trainer; history: EpochRecord[] }> {
  const { meta, model, file } = await loadCheckpoint(path);
  let cfg = meta.config;
  if (extendTo !== undefined && extendTo !== cfg.epochs) {
    // a finished run extended: the schedule gets a new segment from here (TrainConfig.extendedFrom)
    cfg = validateConfig({ ...cfg, epochs: extendTo, extendedFrom: [...(cfg.extendedFrom ?? []), cfg.epochs] });
  }
  const tr = new Trainer(cfg, train, model);
  if (tr.trainIndex.length !== meta.trainImages) throw new Error(`${path}: the checkpoint trained on ${meta.trainImages} images per epoch but the data gives ${tr.trainIndex.length}`);
  for (const e of model.params.entries) {
    tr.momentum.set(tensorOf(file, `optimizer.momentum.${e.name}`, 'F32', e.shape).data, e.offset);
  }
  tr.step = meta.step;
  tr.epoch = meta.epoch;
  tr.momentumStarted = meta.momentumStarted;
  tr.partialEpoch = meta.partialEpoch ?? null;
  if (tr.step !== tr.epoch * tr.stepsPerEpoch && !tr.partialEpoch) throw new Error(`${path}: stopped at step ${tr.step}, part way through epoch ${tr.epoch + 1}, but holds no partial-epoch figures`);
  return { trainer: tr, history: meta.history };
}
