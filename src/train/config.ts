// Training configuration: defaults of DESIGN §3 and validation of every field.
import type { Arch } from '../nn/graph';
import { ARCHS, MAX_WIDTH } from '../nn/graph';
import { INPUT_PADDINGS, type InputNorm, type InputPadding } from '../nn/model';

export type Schedule = 'cosine' | 'step' | 'constant';
export type DatasetName = 'fashion-mnist' | 'cifar10';
export const DATASETS: readonly DatasetName[] = ['fashion-mnist', 'cifar10'];

/** Training settings; `defaultConfig(arch)` fills every field (defaults below: lenet5 / resnet18). */
export interface TrainConfig {
  /** 'lenet5' or 'resnet18'. */
  arch: Arch;
  /** Default: 'fashion-mnist' for lenet5, 'cifar10' for resnet18. */
  dataset: DatasetName;
  /** Epochs (default 20 / 60). */
  epochs: number;
  /** Images per SGD step (default 128). */
  batchSize: number;
  /** Peak learning rate (default 0.05 / 0.1). */
  lr: number;
  /** Learning-rate schedule over the run (default 'cosine' to 0; 'step'; 'constant'). */
  schedule: Schedule;
  /** step schedule: fractions of the run at which lr *= gamma (default [0.5, 0.75]). */
  milestones: number[];
  /** step schedule factor (default 0.1). */
  gamma: number;
  /** SGD momentum (default 0.9). */
  momentum: number;
  /** Nesterov momentum (default false). */
  nesterov: boolean;
  /** L2 weight decay (default 5e-4). */
  weightDecay: number;
  /** Weight bits: 2, 4 or 8, or 32 for float (default 4). */
  weightBits: number;
  /** Activation bits: 2, 4 or 8, or 0 for none (default 4). */
  actBits: number;
  /** Per-output-channel weight scales (default false: per tensor). */
  perChannel: boolean;
  /** Bits of the first and last layer when they differ from weightBits (default null: the same). */
  firstLastBits: number | null;
  /** AS penalty: one value for all ReLU sites, or one per site (default [0]: none). */
  actL1: number[];
  /** SAQ neighbourhood size; 0 = conventional training (default 0). */
  saqRho: number;
  /** SAQ also perturbs batch-norm parameters (default false). */
  saqIncludeBn: boolean;
  /** Seed of initialisation, data order and augmentation (default 1). */
  /** SAQ: rho ramps linearly from 0 over the first this-many epochs (0 = off, the paper's recipe). */
  saqWarmup: number;
  seed: number;
  /** Images held out from the end of the training set for validation (default 5000). */
  valSize: number;
  /** Random crop (pad 4) + horizontal flip (default false / true: CIFAR-10). */
  augment: boolean;
  /** Stop after this many training images (a budget for tests); 0 = no limit. */
  limitTrain: number;
  /** Channel multiplier of resnet18 (1 = the paper's [64,128,256,512]); lenet5: 1 only. */
  width: number;
  /**
   * Padding of the first convolution's normalised input (DESIGN §1): 'normalized' (PyTorch's, the default) or
   * 'raw' (raw pixel 0; what checkpoints written before this field meant).
   */
  padding: InputPadding;
  /** Input normalisation; null = the dataset's (DESIGN §1). Imported models carry their own (per-channel std allowed). */
  inputNorm: InputNorm | null;
  /**
   * Set only on runs extended after they finished (`train --resume --epochs N`): the epoch counts at which the
   * run was extended, ascending. The learning-rate schedule restarts at each (README, "Extending a finished run"),
   * so an extended run is a different setting from an uninterrupted run of the same length.
   */
  extendedFrom?: number[];
}

/**
 * The defaults of DESIGN §3 for `arch` (default 'lenet5'): lenet5 = FashionMNIST, 20 epochs, lr 0.05, no augmentation;
 * resnet18 = CIFAR-10, 60 epochs, lr 0.1, crop+flip. Both: batch 128, cosine schedule, momentum 0.9, weight decay
 * 5e-4, 4-bit weights and activations, per-tensor scales, actL1 [0], saqRho 0, seed 1, valSize 5000.
 */
export function defaultConfig(arch: Arch = 'lenet5'): TrainConfig {
  const lenet = arch === 'lenet5';
  return {
    arch,
    dataset: lenet ? 'fashion-mnist' : 'cifar10',
    epochs: lenet ? 20 : 60,
    batchSize: 128,
    lr: lenet ? 0.05 : 0.1,
    schedule: 'cosine',
    milestones: [0.5, 0.75],
    gamma: 0.1,
    momentum: 0.9,
    nesterov: false,
    weightDecay: 5e-4,
    weightBits: 4,
    actBits: 4,
    perChannel: false,
    firstLastBits: null,
    actL1: [0],
    saqRho: 0,
    saqIncludeBn: false,
    saqWarmup: 0,
    seed: 1,
    valSize: 5000,
    augment: !lenet,
    limitTrain: 0,
    width: 1,
    padding: 'normalized',
    inputNorm: null,
  };
}

function fail(msg: string): never {
  throw new RangeError(msg);
}

/** Checks every field; throws RangeError naming the field. */
export function validateConfig(c: TrainConfig): TrainConfig {
  if (typeof c !== 'object' || c === null || Array.isArray(c)) fail(`the training config must be an object, got ${c === null ? 'null' : Array.isArray(c) ? 'an array' : typeof c}`);
  const num = (k: keyof TrainConfig) => { if (typeof c[k] !== 'number') fail(`${k} must be a number, got ${c[k] === null ? 'null' : typeof c[k]}`); };
  for (const k of ['epochs', 'batchSize', 'lr', 'gamma', 'momentum', 'weightDecay', 'weightBits', 'actBits', 'saqRho', 'seed', 'valSize', 'limitTrain'] as const) num(k);
  for (const k of ['nesterov', 'perChannel', 'saqIncludeBn', 'augment'] as const) if (typeof c[k] !== 'boolean') fail(`${k} must be a boolean, got ${c[k] === null ? 'null' : typeof c[k]}`);
  for (const k of ['milestones', 'actL1'] as const) if (!Array.isArray(c[k]) || !(c[k] as unknown[]).every((x) => typeof x === 'number')) fail(`${k} must be an array of numbers`);
  if (c.firstLastBits !== null && typeof c.firstLastBits !== 'number') fail(`firstLastBits must be a number or null, got ${typeof c.firstLastBits}`);
  if (!(ARCHS as readonly string[]).includes(c.arch)) fail(`arch must be one of ${ARCHS.join(', ')}, got '${c.arch}'`);
  if (!DATASETS.includes(c.dataset)) fail(`dataset must be one of ${DATASETS.join(', ')}, got '${c.dataset}'`);
  const posInt = (k: keyof TrainConfig, v: number, max = 1e9) => { if (!Number.isInteger(v) || v < 1 || v > max) fail(`${k} must be an integer in [1, ${max}], got ${v}`); };
  posInt('epochs', c.epochs, 100000);
  posInt('batchSize', c.batchSize, 65536);
  const nonneg = (k: string, v: number) => { if (!Number.isFinite(v) || v < 0) fail(`${k} must be a finite number >= 0, got ${v}`); };
  nonneg('lr', c.lr);
  nonneg('weightDecay', c.weightDecay);
  nonneg('saqRho', c.saqRho);
  if (c.saqWarmup === undefined) c.saqWarmup = 0; // checkpoints written before the option existed
  nonneg('saqWarmup', c.saqWarmup);
  if (!(c.momentum >= 0 && c.momentum < 1)) fail(`momentum must be in [0, 1), got ${c.momentum}`);
  if (!(c.gamma > 0 && c.gamma <= 1)) fail(`gamma must be in (0, 1], got ${c.gamma}`);
  if (!['cosine', 'step', 'constant'].includes(c.schedule)) fail(`schedule must be cosine, step or constant, got '${c.schedule}'`);
  for (const m of c.milestones) if (!(m > 0 && m < 1)) fail(`milestones must be fractions in (0, 1), got ${m}`);
  if (![2, 4, 8, 32].includes(c.weightBits)) fail(`weightBits must be 2, 4, 8 (or 32 for float), got ${c.weightBits}`);
  if (![0, 2, 4, 8].includes(c.actBits)) fail(`actBits must be 2, 4, 8 (or 0 for none), got ${c.actBits}`);
  if (c.firstLastBits !== null && ![2, 4, 8].includes(c.firstLastBits)) fail(`firstLastBits must be 2, 4 or 8, got ${c.firstLastBits}`);
  if (c.actL1.length === 0) fail('actL1 needs at least one value');
  for (const v of c.actL1) nonneg('actL1', v);
  if (c.nesterov && c.momentum === 0) fail('nesterov needs momentum > 0');
  if (!Number.isSafeInteger(c.seed) || c.seed < 0) fail(`seed must be a non-negative integer, got ${c.seed}`);
  if (!Number.isInteger(c.valSize) || c.valSize < 0) fail(`valSize must be an integer >= 0, got ${c.valSize}`);
  if (!Number.isInteger(c.limitTrain) || c.limitTrain < 0) fail(`limitTrain must be an integer >= 0, got ${c.limitTrain}`);
  if (c.width === undefined) c.width = 1; // checkpoints written before --width existed
  if (!(typeof c.width === 'number' && Number.isFinite(c.width) && c.width > 0 && c.width <= MAX_WIDTH)) fail(`width must be a number in (0, ${MAX_WIDTH}], got ${c.width}`);
  if (c.arch === 'lenet5' && c.width !== 1) fail(`width applies to resnet18 only, got ${c.width} for lenet5`);
  if (!INPUT_PADDINGS.includes(c.padding)) fail(`padding must be 'normalized' or 'raw', got '${String(c.padding)}'`);
  if (c.inputNorm !== null && (typeof c.inputNorm !== 'object' || !Array.isArray(c.inputNorm.mean))) fail('inputNorm must be null or { mean: number[], std: number | number[] }');
  if (c.extendedFrom !== undefined) {
    if (!Array.isArray(c.extendedFrom) || c.extendedFrom.length === 0) fail('extendedFrom must be a non-empty list of epoch counts (or absent)');
    c.extendedFrom.forEach((e, i) => {
      if (!Number.isInteger(e) || e < 1 || e >= c.epochs || (i > 0 && e <= c.extendedFrom![i - 1]!)) fail(`extendedFrom must ascend within [1, epochs), got ${JSON.stringify(c.extendedFrom)}`);
    });
  }
  return c;
}
