// Checkpoints as safetensors (DESIGN §5): latent weights, BN state, activation
// ranges, momentum buffers; step, epoch and config in the 'flatenn' metadata
// JSON. Nothing that varies between identical runs goes in.
import { readSafetensors, tensorOf, writeSafetensors, type Tensor, type SafetensorsFile } from '../io/safetensors';
import type { Model } from '../nn/model';
import type { TrainConfig } from './config';
import { validateConfig } from './config';
import { createModel, Trainer, type ImageSet, type PartialEpoch } from './trainer';
import type { CollapseFlag } from './collapse';

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
  /** Set when collapse detection flagged this epoch (DESIGN §3). */
  collapse?: CollapseFlag;
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
  if (meta === null || typeof meta !== 'object' || Array.isArray(meta)) throw new Error(`${source}: the 'flatenn' metadata is ${meta === null ? 'null' : Array.isArray(meta) ? 'an array' : `a ${typeof meta}`}, not an object`);
  if (meta.format !== CHECKPOINT_FORMAT) throw new Error(`${source}: format '${String(meta.format)}' is not a flatenn checkpoint`);
  if (meta.version !== CHECKPOINT_VERSION) throw new Error(`${source}: checkpoint version ${JSON.stringify(meta.version)} is not supported (this flatenn reads version ${CHECKPOINT_VERSION})`);
  // Checkpoints written before DESIGN §1's padding change carry neither field: raw-0 padding, the dataset's normalisation.
  if (meta.config && typeof meta.config === 'object') {
    if (meta.config.padding === undefined) meta.config.padding = 'raw';
    if (meta.config.inputNorm === undefined) meta.config.inputNorm = null;
  }
  checkMetaFields(meta, source);
  return meta;
}

/** The checkpoint metadata's fields, each checked (one message naming the file, the field and the rule). */
function checkMetaFields(meta: CheckpointMeta, source: string): void {
  const bad = (msg: string): never => { throw new Error(`${source}: metadata ${msg}`); };
  const int = (v: unknown, lo: number, hi: number) => typeof v === 'number' && Number.isSafeInteger(v) && v >= lo && v <= hi;
  if (typeof meta.arch !== 'string') bad('arch must be a string');
  if (typeof meta.dataset !== 'string') bad('dataset must be a string');
  const inp = meta.input as unknown as Record<string, unknown> | null;
  if (!inp || typeof inp !== 'object' || !int(inp.channels, 1, 4096) || !int(inp.height, 1, 65536) || !int(inp.width, 1, 65536)) bad(`input must be {channels, height, width} with positive integers, got ${JSON.stringify(meta.input)}`);
  if (!int(meta.numClasses, 2, 256)) bad(`numClasses must be an integer in [2, 256], got ${JSON.stringify(meta.numClasses)}`);
  let cfg: TrainConfig;
  try { cfg = validateConfig(meta.config); } catch (e) { return bad(`config: ${(e as Error).message}`); }
  if (cfg.arch !== meta.arch || cfg.dataset !== meta.dataset) bad(`config (${cfg.arch}, ${cfg.dataset}) disagrees with arch/dataset (${meta.arch}, ${meta.dataset})`);
  // 0: never trained by flatenn (an imported checkpoint)
  if (!int(meta.trainImages, 0, 2 ** 32)) bad(`trainImages must be an integer >= 0, got ${JSON.stringify(meta.trainImages)}`);
  if (!int(meta.epoch, 0, cfg.epochs)) bad(`epoch must be an integer in [0, ${cfg.epochs}] (the run's epochs), got ${JSON.stringify(meta.epoch)}`);
  const spe = Math.ceil(meta.trainImages / cfg.batchSize), steps = meta.epoch * spe;
  const pe = meta.partialEpoch as unknown;
  if (pe === undefined || pe === null) {
    if (meta.step !== steps) bad(`step ${JSON.stringify(meta.step)} does not match epoch ${meta.epoch} (${meta.epoch} x ${spe} steps per epoch = ${steps})`);
  } else {
    // stopped part way through epoch `epoch` (train --max-steps)
    if (!int(meta.step, steps + 1, steps + spe - 1) || meta.epoch >= cfg.epochs) bad(`step ${JSON.stringify(meta.step)} is not part way through epoch ${meta.epoch + 1} (steps ${steps + 1}..${steps + spe - 1}) as partialEpoch says`);
    const p = pe as Record<string, unknown>;
    if (typeof p !== 'object' || typeof p.lossSum !== 'number' || !Number.isFinite(p.lossSum) || !int(p.seen, 1, meta.trainImages) || !int(p.correct, 0, p.seen as number) || !Array.isArray(p.zeros) || !Array.isArray(p.elems) || ![p.zeros, p.elems].every((a) => (a as unknown[]).every((x) => typeof x === 'number' && x >= 0))) {
      bad(`partialEpoch must be {lossSum, correct <= seen, seen, zeros[], elems[]} with finite counts, got ${JSON.stringify(pe).slice(0, 200)}`);
    }
  }
  if (typeof meta.momentumStarted !== 'boolean') bad('momentumStarted must be a boolean');
  if (!Array.isArray(meta.history)) bad('history must be an array of epoch records');
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
  checkModelValues(model, source);
}

/**
 * Values a checkpoint may hold: finite weights and BatchNorm state (variance >= 0), activation
 * ranges finite and >= 0 (0 is a collapsed site: every code 0), 'initialized' flags 0 or 1 (a site
 * never observed has flag 0, whatever its range).
 */
function checkModelValues(model: Model, source: string): void {
  const bad = (msg: string): never => { throw new Error(`${source}: ${msg}`); };
  for (const e of model.params.entries) {
    const d = model.params.data.subarray(e.offset, e.offset + e.size);
    const i = d.findIndex((v) => !Number.isFinite(v));
    if (i >= 0) bad(`tensor ${e.name}[${i}] = ${d[i]}: weights must be finite`);
  }
  for (const [name, b] of model.bn) {
    let i = b.runningMean.findIndex((v) => !Number.isFinite(v));
    if (i >= 0) bad(`tensor ${name}.running_mean[${i}] = ${b.runningMean[i]}: must be finite`);
    i = b.runningVar.findIndex((v) => !(v >= 0) || !Number.isFinite(v));
    if (i >= 0) bad(`tensor ${name}.running_var[${i}] = ${b.runningVar[i]}: a variance must be finite and >= 0`);
  }
  for (let i = 0; i < model.actRange.length; i++) {
    const f = model.actRangeInit[i]!, r = model.actRange[i]!;
    if (f !== 0 && f !== 1) bad(`tensor act.range_initialized[${i}] = ${f}: must be 0 (never observed) or 1`);
    if (!(r >= 0) || !Number.isFinite(r)) bad(`tensor act.range[${i}] = ${r}: an activation range must be finite and >= 0 (0: a collapsed site)`);
    if (f === 1 && r > 0 && model.quant.actBits > 0 && !(Math.fround(r / (2 ** model.quant.actBits - 1)) >= 1.1754943508222875e-38)) bad(`tensor act.range[${i}] = ${r}: the activation scale r / (2^${model.quant.actBits} - 1) is below the smallest normal float32 (a denormal range)`);
  }
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
