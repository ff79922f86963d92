import * as fs from 'node:fs';
import * as path from 'node:path';
import { usagePath } from './campaign';
import { ARCHS, MAX_WIDTH, type Arch } from '../nn/graph';
import { DATASETS, defaultConfig, type TrainConfig } from '../train/config';
import { trainModel, type TrainProgress } from '../train/run';
import { Progress } from '../util/progress';
import { choice, explicitOptions, flag, int, num, parseNumber, str, UsageError, type CommandSpec, type Values } from './args';

const TRAIN_FLAGS = ['arch', 'dataset', 'epochs', 'batch-size', 'lr', 'schedule', 'milestones', 'gamma', 'momentum', 'nesterov', 'weight-decay', 'weight-bits', 'act-bits', 'per-channel', 'first-last-bits', 'act-l1', 'saq-rho', 'saq-include-bn', 'saq-warmup', 'seed', 'val-size', 'augment', 'no-augment', 'limit-train', 'padding', 'width'];

function list(v: string, name: string, lo: number, hi: number): number[] {
  const parts = v.split(',').map((s) => s.trim());
  if (parts.some((p) => p === '')) throw new UsageError(`--${name} expects a number or a comma-separated list, got '${v}'`);
  return parts.map((p) => parseNumber(p, name, lo, hi));
}

/** Builds a TrainConfig from CLI values (defaults of DESIGN §3 for the architecture). */
export function configFromFlags(v: Values): TrainConfig {
  const arch = choice<Arch>(v, 'arch', ARCHS, 'lenet5');
  const d = defaultConfig(arch);
  const c: TrainConfig = {
    ...d,
    dataset: choice(v, 'dataset', DATASETS, d.dataset),
    epochs: int(v, 'epochs', 1, 100000, d.epochs),
    batchSize: int(v, 'batch-size', 1, 65536, d.batchSize),
    lr: num(v, 'lr', 0, 100, d.lr),
    schedule: choice(v, 'schedule', ['cosine', 'step', 'constant'] as const, d.schedule),
    milestones: str(v, 'milestones') !== undefined ? list(str(v, 'milestones')!, 'milestones', 1e-9, 1 - 1e-9) : d.milestones,
    gamma: num(v, 'gamma', 1e-9, 1, d.gamma),
    momentum: num(v, 'momentum', 0, 0.999999, d.momentum),
    nesterov: flag(v, 'nesterov'),
    weightDecay: num(v, 'weight-decay', 0, 1, d.weightDecay),
    weightBits: Number(choice(v, 'weight-bits', ['2', '4', '8', '32'] as const, String(d.weightBits) as '4')),
    actBits: Number(choice(v, 'act-bits', ['0', '2', '4', '8'] as const, String(d.actBits) as '4')),
    perChannel: flag(v, 'per-channel'),
    firstLastBits: str(v, 'first-last-bits') !== undefined ? Number(choice(v, 'first-last-bits', ['2', '4', '8'] as const)) : null,
    actL1: str(v, 'act-l1') !== undefined ? list(str(v, 'act-l1')!, 'act-l1', 0, 1e3) : d.actL1,
    saqRho: num(v, 'saq-rho', 0, 100, d.saqRho),
    saqIncludeBn: flag(v, 'saq-include-bn'),
    saqWarmup: int(v, 'saq-warmup', 0, 100000, d.saqWarmup),
    seed: int(v, 'seed', 0, Number.MAX_SAFE_INTEGER, d.seed),
    valSize: int(v, 'val-size', 0, 1e9, d.valSize),
    augment: flag(v, 'no-augment') ? false : flag(v, 'augment') ? true : d.augment,
    limitTrain: int(v, 'limit-train', 0, 1e9, 0),
    width: num(v, 'width', 1e-9, MAX_WIDTH, d.width),
    padding: choice(v, 'padding', ['normalized', 'raw'] as const, d.padding),
  };
  if (c.arch !== 'resnet18' && c.width !== 1) throw new UsageError(`--width applies to --arch resnet18 only`);
  if (c.nesterov && c.momentum === 0) throw new UsageError('--nesterov needs --momentum > 0');
  return c;
}

export const trainCommand: CommandSpec = {
  name: 'train',
  summary: 'Train a quantised model (standard QAT, activation-sparse with --act-l1, SAQ with --saq-rho); a checkpoint after every epoch.',
  usage: 'flatenn train [--arch lenet5|resnet18] [--width 0.25] [--dataset fashion-mnist] [--epochs 20] [--act-l1 3e-5] [--saq-rho 0.1] [--max-steps N] [--no-test] --out run.safetensors',
  examples: [
    'flatenn train --out runs/qat.safetensors',
    'flatenn train --act-l1 3e-5 --saq-rho 0.1 --out runs/saq.safetensors',
    'flatenn train --arch resnet18 --dataset cifar10 --epochs 60 --out runs/r18.safetensors',
    'flatenn train --resume --out runs/qat.safetensors   # continue an interrupted run',
    'flatenn train --resume --epochs 30 --out runs/qat.safetensors   # extend a finished 20-epoch run by 10 epochs',
  ],
  options: {
    arch: { type: 'string', arg: '<arch>', description: `architecture: ${ARCHS.join(', ')}`, default: 'lenet5' },
    dataset: { type: 'string', arg: '<name>', description: `dataset: ${DATASETS.join(', ')} (default: fashion-mnist for lenet5, cifar10 for resnet18)` },
    epochs: { type: 'string', arg: '<n>', description: 'epochs (default 20 for lenet5, 60 for resnet18)' },
    'batch-size': { type: 'string', arg: '<n>', description: 'batch size', default: '128' },
    lr: { type: 'string', arg: '<x>', description: 'peak learning rate (default 0.05 lenet5, 0.1 resnet18)' },
    schedule: { type: 'string', arg: '<s>', description: 'learning-rate schedule: cosine (per step, to 0), step, constant', default: 'cosine' },
    milestones: { type: 'string', arg: '<f,f>', description: 'step schedule: fractions of the run where lr *= gamma', default: '0.5,0.75' },
    gamma: { type: 'string', arg: '<x>', description: 'step schedule factor', default: '0.1' },
    momentum: { type: 'string', arg: '<x>', description: 'SGD momentum', default: '0.9' },
    padding: { type: 'string', arg: '<p>', description: "first conv's padding: normalized (zeros after normalisation, as PyTorch) or raw (raw pixel 0, the pre-v2 convention)", default: 'normalized' },
    nesterov: { type: 'boolean', description: 'Nesterov momentum' },
    'weight-decay': { type: 'string', arg: '<x>', description: 'weight decay', default: '5e-4' },
    'weight-bits': { type: 'string', arg: '<b>', description: 'weight bits: 2, 4, 8 (32 = float)', default: '4' },
    'act-bits': { type: 'string', arg: '<b>', description: 'activation bits after each ReLU: 2, 4, 8 (0 = none)', default: '4' },
    'per-channel': { type: 'boolean', description: 'one weight scale per output channel (default: per tensor)' },
    'first-last-bits': { type: 'string', arg: '<b>', description: 'bits of the first and last layer (e.g. 8)' },
    'act-l1': { type: 'string', arg: '<λ[,λ...]>', description: 'activation-sparse training: L1 coefficient, one value or one per ReLU layer', default: '0' },
    'saq-rho': { type: 'string', arg: '<ρ>', description: 'SAQ neighbourhood size (0 = conventional training)', default: '0' },
    'saq-include-bn': { type: 'boolean', description: 'SAQ: perturb BatchNorm affine parameters too' },
    'saq-warmup': { type: 'string', arg: '<E>', description: 'SAQ: ramp rho linearly from 0 over the first E epochs (0 = off, the paper\'s recipe; recorded in the config)', default: '0' },
    seed: { type: 'string', arg: '<n>', description: 'seed (initialisation, data order, augmentation)', default: '1' },
    'val-size': { type: 'string', arg: '<n>', description: 'images held out from the end of the training set for validation', default: '5000' },
    augment: { type: 'boolean', description: 'random crop + flip (default on for cifar10)' },
    'no-augment': { type: 'boolean', description: 'no augmentation' },
    'limit-train': { type: 'string', arg: '<n>', description: 'use only the first n training images (quick runs)' },
    width: { type: 'string', arg: '<x>', description: 'resnet18: channel multiplier, [64,128,256,512] x x (e.g. 0.25)', default: '1' },
    'max-steps': { type: 'string', arg: '<n>', description: 'stop after n optimiser steps in all (a checkpoint that --resume continues bit for bit; the schedule still spans --epochs)' },
    'no-test': { type: 'boolean', description: 'skip the final evaluation on the test set' },
    'data-dir': { type: 'string', arg: '<dir>', description: 'dataset folder (else FLATENN_DATA, then standard places)' },
    out: { type: 'string', arg: '<file>', description: 'checkpoint path (.safetensors); a JSON-lines log goes beside it', required: true },
    resume: { type: 'boolean', description: 'continue the run saved at --out (its settings are used; give no training flags except --epochs N, which extends a finished run to N epochs with a new schedule segment)' },
    force: { type: 'boolean', description: 'overwrite an existing checkpoint at --out (without it, an existing --out needs --resume)' },
    json: { type: 'boolean', description: 'print the final result as JSON' },
    quiet: { type: 'boolean', short: 'q', description: 'no progress output' },
  },
  async run(v) {
    const out = str(v, 'out');
    if (!out) throw new UsageError('--out <file.safetensors> is required');
    if (!out.endsWith('.safetensors')) throw new UsageError(`--out must end in .safetensors, got '${out}'`);
    const resume = flag(v, 'resume'), force = flag(v, 'force');
    if (resume && force) throw new UsageError('--resume continues the checkpoint at --out and --force overwrites it: give one of them');
    usagePath(out, []);
    if (!resume && !force && fs.existsSync(out)) throw new UsageError(`${out} already exists: continue that run with --resume, or overwrite it with --force`);
    let cfg: TrainConfig | null = null;
    let extendTo: number | undefined;
    if (resume) {
      const explicit = explicitOptions(v);
      const given = TRAIN_FLAGS.filter((f) => f !== 'epochs' && explicit.includes(f));
      if (given.length) throw new UsageError(`--resume continues with the checkpoint's settings; do not give --${given.join(', --')} (only --epochs, to extend a finished run)`);
      if (explicit.includes('epochs')) extendTo = int(v, 'epochs', 1, 100000);
    } else {
      cfg = configFromFlags(v);
    }
    const quiet = flag(v, 'quiet');
    const dataDir = str(v, 'data-dir');
    const maxSteps = v['max-steps'] !== undefined ? int(v, 'max-steps', 0, Number.MAX_SAFE_INTEGER) : undefined;
    const r = await trainModel(cfg, { out: path.resolve(out), resume, force, ...(extendTo !== undefined ? { epochs: extendTo } : {}), onProgress: trainBars(quiet), testAtEnd: !flag(v, 'no-test'), ...(dataDir ? { dataDir } : {}), ...(maxSteps !== undefined ? { maxSteps } : {}) });
    if (flag(v, 'json')) {
      process.stdout.write(JSON.stringify({ checkpoint: r.checkpoint, config: r.config, history: r.history, test: r.test && { accuracy: r.test.accuracy, loss: r.test.loss, sparsity: r.test.sparsity, sparsityWeighted: r.test.sparsityWeighted, perLayerSparsity: r.test.perLayerSparsity }, collapse: r.collapse, collapsed: r.collapse.length > 0, seconds: r.seconds, ...(r.stoppedAtStep !== undefined ? { stoppedAtStep: r.stoppedAtStep } : {}) }, null, 2) + '\n');
    } else {
      if (r.collapse.length) process.stdout.write(`COLLAPSE FLAGGED in ${r.collapse.length} epoch(s) (see the warnings above): do not select or average this run silently\n`);
      if (r.stoppedAtStep !== undefined) process.stdout.write(`stopped after ${r.stoppedAtStep} steps (--max-steps); continue with: flatenn train --resume --out ${out}\n`);
      if (r.test) process.stdout.write(`test accuracy ${(100 * r.test.accuracy).toFixed(2)}%  loss ${r.test.loss.toFixed(4)}  sparsity ${(100 * r.test.sparsity).toFixed(2)}% (element-weighted ${(100 * r.test.sparsityWeighted).toFixed(2)}%)  time ${r.seconds.toFixed(1)} s\n`);
      process.stdout.write(`checkpoint ${r.checkpoint}\n`);
    }
    return 0;
  },
};

/** The CLI's drawing of trainModel's progress: a bar per epoch (a line every ~10 s off a terminal) ending with the validation accuracy. */
export function trainBars(quiet: boolean, stream?: NodeJS.WriteStream): (p: TrainProgress) => void {
  let bar: Progress | null = null;
  let barEpoch = 0;
  const pct = (x: number) => `${(100 * x).toFixed(2)}%`;
  return (p) => {
    if (quiet && p.kind !== 'warning') return;
    if (p.kind === 'batch') {
      if (!bar || barEpoch !== p.epoch) {
        // created at the first batch's end: the rate counts from there (that batch's own time is unknown)
        bar = new Progress({ label: `epoch ${p.epoch}/${p.epochs}`, total: p.total, unit: 'img', initial: p.done, ...(stream ? { stream } : {}) });
        barEpoch = p.epoch;
      }
      bar.update(p.done, `loss ${p.loss.toFixed(4)} acc ${pct(p.accuracy)} sparsity ${(100 * p.sparsity).toFixed(1)}%`);
    } else if (p.kind === 'warning') {
      (stream ?? process.stderr).write(`flatenn: warning: ${p.message}\n`); // also with --quiet
    } else if (p.kind === 'stopped') {
      const msg = `stopped after step ${p.step} (--max-steps ${p.maxSteps}); continue with --resume`;
      const out = stream ?? process.stderr;
      out.write((bar && out.isTTY ? '\n' : '') + msg + '\n'); // not the bar's 100% line: the epoch is unfinished
      bar = null;
    } else if (p.kind === 'epoch') {
      const st = p.stats;
      bar?.finish(`loss ${st.loss.toFixed(4)} acc ${pct(st.accuracy)} sparsity ${(100 * st.sparsity).toFixed(1)}%` + (st.val ? ` | val acc ${pct(st.val.accuracy)}` : ''));
      bar = null;
    }
  };
}
