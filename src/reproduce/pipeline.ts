// flatenn reproduce lenet5|resnet18: the paper's pipeline end to end (DESIGN §3-§5).
// Seed-1 grids for lambda (AS) and rho (SAQ), chosen on the validation split;
// the four paper models and two equal-schedule controls over every seed; export;
// campaigns (bitflip/sa0/sa1 x rates, the same fault maps for every model) in the
// bit unit, plus the weight unit and --by-layer / --by-bit on seed 1;
// landscapes; the study summary; the report.
//
// Every stage's outputs are written atomically (or, for campaigns, trial by trial
// and resumable), and a stage records its settings and result in stages/<id>.json
// when it ends: a re-run with the same settings skips it, so a killed run resumes
// where it stopped; a stage run earlier with other settings is refused.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { runCampaign } from '../campaign/campaign';
import { readResults } from '../campaign/results';
import { FAULT_TYPES, type FaultType } from '../campaign/faults';
import { exportCheckpoint } from '../deploy/export';
import { writeFileAtomic } from '../io/atomic';
import { loadDataset } from '../data/dataset';
import { computeLandscape, writeLandscape } from '../landscape/landscape';
import { buildReport } from '../report/report';
import { STUDY_FORMAT, type StudyFile, type StudyRun } from '../report/data';
import { loadCheckpoint } from '../train/checkpoint';
import { TrainingDivergedError } from '../train/collapse';
import { defaultConfig, validateConfig, type TrainConfig } from '../train/config';
import { trainModel } from '../train/run';

export interface Budget {
  /** resnet18: channel multiplier of the final models (lenet5: 1). */
  width: number;
  /** resnet18: channel multiplier of the seed-1 lambda and rho grids (lenet5: 1); a grid at another width than the finals trains its own standard reference. */
  gridWidth: number;
  /** Epochs of the conventional models; SAQ models and the controls get half (rounded, at least 1). */
  epochs: number;
  /** Training images used (0 = all but the validation split). */
  limitTrain: number;
  batchSize: number;
  valSize: number;
  lambdas: number[];
  rhos: number[];
  /** SAQ: ramp rho over the first E epochs (0 = off). */
  saqWarmup: number;
  faults: FaultType[];
  rates: number[];
  /** Trials per (type, rate) per seed, bit unit. */
  trials: number;
  /** Trials per (type, rate) on seed 1, weight unit (0 = skip). */
  weightTrials: number;
  /** --by-layer and --by-bit campaigns on seed 1: rate and trials per (target, type) (0 trials = skip). */
  byRate: number;
  byTrials: number;
  /** Test images per trial (0 = the whole test set). */
  testImages: number;
  faultSeed: number;
  landscapeImages: number;
  landscapePoints1d: number;
  landscapeDirections: number;
  /** Points per axis of the 2D landscape on seed 1 (0 = skip). */
  landscapePoints2d: number;
}

/** The budget of a full LeNet-5 reproduction run (epochs, trials, landscape points); `--quick` uses a smaller one. */
export const FULL_BUDGET: Budget = {
  width: 1, gridWidth: 1, epochs: 20, limitTrain: 0, batchSize: 128, valSize: 5000, lambdas: [1e-5, 3e-5, 1e-4], rhos: [0.05, 0.1, 0.2, 0.5], saqWarmup: 0,
  faults: ['bitflip', 'sa0', 'sa1'], rates: [0, 0.01, 0.02, 0.03, 0.04, 0.05], trials: 50, weightTrials: 100, byRate: 0.01, byTrials: 50,
  testImages: 0, faultSeed: 1, landscapeImages: 5000, landscapePoints1d: 51, landscapeDirections: 3, landscapePoints2d: 25,
};

/** Every stage on a small budget: a smoke run whose numbers are not the study's. */
export const QUICK_BUDGET: Budget = {
  width: 1, gridWidth: 1, epochs: 4, limitTrain: 8000, batchSize: 128, valSize: 5000, lambdas: [1e-5, 3e-5], rhos: [0.05, 0.1], saqWarmup: 0,
  faults: ['bitflip', 'sa0', 'sa1'], rates: [0, 0.01, 0.02, 0.03, 0.04, 0.05], trials: 10, weightTrials: 10, byRate: 0.01, byTrials: 5,
  testImages: 2000, faultSeed: 1, landscapeImages: 1000, landscapePoints1d: 21, landscapeDirections: 2, landscapePoints2d: 11,
};

/**
 * The budget of a full ResNet-18 run: this project's choice, since the paper gives no ResNet epochs, trial counts or
 * grids (README, "Reproducing the ResNet-18 study"): the paper's width, 60 conventional / 30 SAQ epochs, lambda and
 * rho grids on a quarter-width model, rates 0.5-3%, 50 trials per point on the whole test set.
 */
export const RESNET18_FULL_BUDGET: Budget = {
  width: 1, gridWidth: 0.25, epochs: 60, limitTrain: 0, batchSize: 128, valSize: 5000, lambdas: [3e-6, 1e-5, 3e-5], rhos: [0.05, 0.1, 0.2, 0.5], saqWarmup: 0,
  faults: ['bitflip', 'sa0', 'sa1'], rates: [0, 0.005, 0.01, 0.015, 0.02, 0.03], trials: 50, weightTrials: 50, byRate: 0.01, byTrials: 20,
  testImages: 0, faultSeed: 1, landscapeImages: 2000, landscapePoints1d: 41, landscapeDirections: 2, landscapePoints2d: 15,
};

/** ResNet-18 on a small budget (1/8 width, 2,000 training images, 500 test images): every stage, made to finish within 15 minutes on 2 cores. */
export const RESNET18_QUICK_BUDGET: Budget = {
  width: 0.125, gridWidth: 0.125, epochs: 4, limitTrain: 2000, batchSize: 64, valSize: 500, lambdas: [1e-6, 1e-5], rhos: [0.05, 0.1], saqWarmup: 0,
  faults: ['bitflip', 'sa0', 'sa1'], rates: [0, 0.005, 0.01, 0.02, 0.03], trials: 4, weightTrials: 4, byRate: 0.01, byTrials: 2,
  testImages: 500, faultSeed: 1, landscapeImages: 200, landscapePoints1d: 11, landscapeDirections: 1, landscapePoints2d: 5,
};

export type ReproduceArch = 'lenet5' | 'resnet18';

/** The budget `reproduce` starts from for an architecture (before `--budget` overrides). */
export function baseBudget(arch: ReproduceArch, quick: boolean): Budget {
  if (arch === 'resnet18') return { ...(quick ? RESNET18_QUICK_BUDGET : RESNET18_FULL_BUDGET) };
  return { ...(quick ? QUICK_BUDGET : FULL_BUDGET) };
}

/** Training seeds per model when `--seeds` is not given: lenet5 3 (2 with --quick), resnet18 1 (each seed of the full study costs days here). */
export function defaultSeeds(arch: ReproduceArch, quick: boolean): number {
  if (arch === 'resnet18') return 1;
  return quick ? 2 : 3;
}

export interface ReproduceOptions {
  arch: ReproduceArch;
  out: string;
  seeds: number;
  quick: boolean;
  /** Overrides of the budget's fields. */
  budget?: Partial<Budget>;
  dataDir?: string;
  /**
   * redis://host:port/db: the campaign stages run as queued campaigns on `flatenn worker`s (any number of machines)
   * and are gathered into the same results files; training, landscapes and the report stay in this process.
   */
  queue?: string;
  quiet?: boolean;
  /** Progress lines (default: stderr). */
  log?: (line: string) => void;
}

export interface ReproduceResult {
  report: string;
  study: StudyFile;
  stagesRun: string[];
  stagesSkipped: string[];
  seconds: number;
}

export const LAMBDA_RULE = 'the highest validation sparsity among the non-collapsed lambdas whose validation sparsity is >= 4 points above the standard model\'s and whose validation accuracy is within 1.5 points of it; if none qualifies, the non-collapsed lambda with the highest validation sparsity (reported)';
export const RHO_RULE = 'clean: the best validation accuracy of SAQ on seed 1 among the rhos that collapse on no seed (DESIGN §3 --rho-select clean; ties to the smaller rho)';

function canonical(v: unknown): string {
  if (Array.isArray(v)) return '[' + v.map(canonical).join(',') + ']';
  if (v && typeof v === 'object') return '{' + Object.keys(v).sort().map((k) => JSON.stringify(k) + ':' + canonical((v as Record<string, unknown>)[k])).join(',') + '}';
  return JSON.stringify(v);
}

/** Stage bookkeeping: stages/<id>.json holds the settings and the result of a finished stage. */
class Stages {
  readonly ran: string[] = [];
  readonly skipped: string[] = [];
  constructor(private readonly dir: string, private readonly log: (s: string) => void, private readonly t0: number) { fs.mkdirSync(dir, { recursive: true }); }
  private file(id: string) { return path.join(this.dir, id.replace(/[^A-Za-z0-9._-]/g, '_') + '.json'); }
  /** Runs fn unless the stage is done with these settings; `derived` stages (landscapes, report) are redone when their inputs changed, others are refused. */
  async run<T>(id: string, settings: unknown, fn: () => Promise<T>, derived = false): Promise<T> {
    const f = this.file(id);
    if (fs.existsSync(f)) {
      const prev = JSON.parse(fs.readFileSync(f, 'utf8')) as { settings: unknown; result: T };
      if (canonical(prev.settings) === canonical(settings)) { this.skipped.push(id); this.log(`skip ${id} (done)`); return prev.result; }
      if (derived) this.log(`redo ${id} (its inputs changed)`);
      else throw new Error(`stage ${id} in ${path.dirname(this.dir)} was run with other settings (${f}); use another --out, or remove that folder to start over`);
    }
    this.log(`run  ${id} (elapsed ${((Date.now() - this.t0) / 1000).toFixed(0)} s)`);
    const r = await fn();
    await writeFileAtomic(f, Buffer.from(JSON.stringify({ id, settings, result: r }, null, 1) + '\n'));
    this.ran.push(id);
    return r;
  }
}

interface TrainOutcome {
  checkpoint: string;
  collapsed: boolean;
  collapse: string[];
  valAccuracy: number | null;
  valSparsity: number | null;
  testAccuracy: number | null;
  testSparsity: number | null;
}

const num = (x: number) => String(+x.toPrecision(6));

/** Runs the paper-reproduction pipeline (train, export, campaigns, landscape, report) with a budget. */
export async function reproduce(o: ReproduceOptions): Promise<ReproduceResult> {
  const t0 = Date.now();
  if (o.arch !== 'lenet5' && o.arch !== 'resnet18') throw new RangeError(`reproduce supports lenet5 and resnet18, got '${String(o.arch)}'`);
  if (!Number.isInteger(o.seeds) || o.seeds < 1 || o.seeds > 100) throw new RangeError(`seeds must be an integer in [1, 100], got ${o.seeds}`);
  const b: Budget = { ...baseBudget(o.arch, o.quick), ...(o.budget ?? {}) };
  checkBudget(b, o.arch);
  const out = path.resolve(o.out);
  if (fs.existsSync(out) && !fs.statSync(out).isDirectory()) throw new Error(`--out ${o.out} exists and is not a folder`);
  fs.mkdirSync(out, { recursive: true });
  const log = o.log ?? (() => {});  // silent by default; the CLI passes stderr
  const st = new Stages(path.join(out, 'stages'), log, t0);
  const quiet = o.quiet ?? false;
  const half = Math.max(1, Math.round(b.epochs / 2));
  const seeds = Array.from({ length: o.seeds }, (_, i) => i + 1);
  const dd = o.dataDir ? { dataDir: o.dataDir } : {};

  const configOf = (epochs: number, l1: number, rho: number, seed: number, width = b.width): TrainConfig => validateConfig({
    ...defaultConfig(o.arch), epochs, actL1: [l1], saqRho: rho, saqWarmup: rho > 0 ? b.saqWarmup : 0, seed, limitTrain: b.limitTrain, batchSize: b.batchSize, valSize: b.valSize, width,
  });
  const runName = (c: TrainConfig) => `e${c.epochs}_l${num(c.actL1[0]!)}_r${num(c.saqRho)}${c.saqWarmup ? `_w${c.saqWarmup}` : ''}${c.width !== 1 ? `_x${num(c.width)}` : ''}_s${c.seed}`;

  const train = (c: TrainConfig): Promise<TrainOutcome> => st.run(`train-${runName(c)}`, c, async () => {
    const ckpt = path.join(out, 'train', `${runName(c)}.safetensors`);
    let resume = false;
    if (fs.existsSync(ckpt)) {
      const { meta } = await loadCheckpoint(ckpt);
      if (canonical(validateConfig(meta.config)) !== canonical(c)) throw new Error(`${ckpt} holds a run with other settings; remove it or use another --out`);
      resume = true;
    }
    try {
      const r = await trainModel(resume ? null : c, { out: ckpt, resume, quiet, ...dd });
      const last = r.history[r.history.length - 1];
      // Collapsed = its final epoch is flagged (the model as delivered); flags of earlier epochs are reported too.
      return {
        checkpoint: ckpt, collapsed: !!last?.collapse, collapse: r.collapse.map((f) => f.message),
        valAccuracy: last?.valAccuracy ?? null, valSparsity: last?.valSparsity ?? null,
        testAccuracy: r.test?.accuracy ?? null, testSparsity: r.test?.sparsity ?? null,
      };
    } catch (e) {
      if (!(e instanceof TrainingDivergedError)) throw e;
      log(`${runName(c)}: ${e.message}`);
      return { checkpoint: ckpt, collapsed: true, collapse: [e.message], valAccuracy: null, valSparsity: null, testAccuracy: null, testSparsity: null };
    }
  });

  // Every training run, by name; a run used as a final model is recorded with that role.
  const runMap = new Map<string, StudyRun>();
  // keyed by run and group: one run can serve two groups (with a 1-epoch budget the control is the standard run)
  const record = (name: string, group: string, role: StudyRun['role'], c: TrainConfig, r: TrainOutcome) => {
    const key = `${name}|${group}`;
    if (runMap.get(key)?.role === 'final' && role !== 'final') return;
    runMap.set(key, toRun(name, group, role, c, r));
  };

  // 1. Seed-1 grids (at the grid width; a grid narrower than the finals has its own standard reference).
  const stdCfg1 = configOf(b.epochs, 0, 0, 1, b.gridWidth);
  const std1 = await train(stdCfg1);
  record(runName(stdCfg1), 'standard', b.gridWidth === b.width ? 'final' : 'lambda-grid', stdCfg1, std1);
  const lamRuns: { l: number; r: TrainOutcome; c: TrainConfig }[] = [];
  for (const l of b.lambdas) { const c = configOf(b.epochs, l, 0, 1, b.gridWidth); lamRuns.push({ l, r: await train(c), c }); }
  const rhoRuns: { rho: number; r: TrainOutcome; c: TrainConfig }[] = [];
  for (const rho of b.rhos) { const c = configOf(half, 0, rho, 1, b.gridWidth); rhoRuns.push({ rho, r: await train(c), c }); }
  for (const x of lamRuns) record(runName(x.c), 'as', 'lambda-grid', x.c, x.r);
  for (const x of rhoRuns) record(runName(x.c), 'saq', 'rho-grid', x.c, x.r);

  // 2. Lambda: on the validation split.
  const lamIneligible = lamRuns.filter((x) => x.r.collapsed).map((x) => ({ value: x.l, why: `collapsed on seed 1: ${x.r.collapse[0] ?? ''}` }));
  const lamOk = lamRuns.filter((x) => !x.r.collapsed && x.r.valSparsity !== null && x.r.valAccuracy !== null);
  const stdVA = std1.valAccuracy ?? NaN, stdVS = std1.valSparsity ?? NaN;
  const meets = lamOk.filter((x) => x.r.valSparsity! >= stdVS + 0.04 && x.r.valAccuracy! >= stdVA - 0.015);
  const pool = meets.length ? meets : lamOk;
  const lambda = pool.length ? pool.reduce((p, q) => (q.r.valSparsity! > p.r.valSparsity! ? q : p)).l : null;
  if (lambda !== null && !meets.length) log(`no lambda met the rule; the sparsest non-collapsed one is taken (${lambda})`);

  // 3. Rho: best validation accuracy among rhos that collapse on no seed; the
  //    SAQ and SAQ-AS models of every seed are trained with it, and a rho that
  //    collapses on any of them becomes ineligible and the next one is tried.
  const rhoIneligible: { value: number; why: string }[] = rhoRuns.filter((x) => x.r.collapsed).map((x) => ({ value: x.rho, why: `SAQ collapsed on seed 1: ${x.r.collapse[0] ?? ''}` }));
  let rho: number | null = null;
  const saqFinal = new Map<number, { saq: [TrainConfig, TrainOutcome]; saqAs: [TrainConfig, TrainOutcome] | null }>();
  const candidates = rhoRuns.filter((x) => !x.r.collapsed && x.r.valAccuracy !== null).sort((p, q) => q.r.valAccuracy! - p.r.valAccuracy! || p.rho - q.rho);
  for (const cand of candidates) {
    const tried = new Map<number, { saq: [TrainConfig, TrainOutcome]; saqAs: [TrainConfig, TrainOutcome] | null }>();
    let bad = '';
    for (const s of seeds) {
      const c1 = configOf(half, 0, cand.rho, s), r1 = await train(c1);
      let pair: [TrainConfig, TrainOutcome] | null = null;
      if (lambda !== null) { const c2 = configOf(half, lambda, cand.rho, s); pair = [c2, await train(c2)]; }
      tried.set(s, { saq: [c1, r1], saqAs: pair });
      if (r1.collapsed) { bad = `SAQ collapsed on seed ${s}: ${r1.collapse[0] ?? ''}`; break; }
      if (pair?.[1].collapsed) { bad = `SAQ-AS collapsed on seed ${s}: ${pair[1].collapse[0] ?? ''}`; break; }
    }
    for (const [, v] of tried) {
      record(runName(v.saq[0]), 'saq', bad ? 'rho-grid' : 'final', v.saq[0], v.saq[1]);
      if (v.saqAs) record(runName(v.saqAs[0]), 'saq-as', bad ? 'rho-grid' : 'final', v.saqAs[0], v.saqAs[1]);
    }
    if (bad) { rhoIneligible.push({ value: cand.rho, why: bad }); log(`rho ${cand.rho} is ineligible: ${bad}`); continue; }
    rho = cand.rho;
    for (const [s, v] of tried) saqFinal.set(s, v);
    break;
  }

  // 4. The other final models of every seed.
  const finals: { group: string; seed: number; c: TrainConfig; r: TrainOutcome }[] = [];
  for (const s of seeds) {
    const add = async (group: string, c: TrainConfig) => { const r = await train(c); finals.push({ group, seed: s, c, r }); record(runName(c), group, 'final', c, r); };
    await add('standard', configOf(b.epochs, 0, 0, s));
    if (lambda !== null) await add('as', configOf(b.epochs, lambda, 0, s));
    const sq = saqFinal.get(s);
    if (sq) {
      finals.push({ group: 'saq', seed: s, c: sq.saq[0], r: sq.saq[1] });
      if (sq.saqAs) finals.push({ group: 'saq-as', seed: s, c: sq.saqAs[0], r: sq.saqAs[1] });
    }
    await add('control', configOf(half, 0, 0, s));
    if (lambda !== null) await add('control-as', configOf(half, lambda, 0, s));
  }
  // A flagged final run (standard, AS or a control) is never used silently: it is left out and reported.
  const usable = finals.filter((f) => {
    if (f.r.collapsed) log(`${f.group} seed ${f.seed} (${runName(f.c)}) is flagged as collapsed and left out of the campaigns`);
    return !f.r.collapsed;
  });

  // 5. Export, campaigns.
  const rates = b.rates;
  const campaignFiles: string[] = [];
  const byRate = [b.byRate];
  for (const f of usable) {
    const label = `${f.group}-s${f.seed}`;
    const deployed = path.join(out, 'deployed', `${label}.safetensors`);
    await st.run(`export-${label}`, { checkpoint: runName(f.c) }, async () => {
      fs.mkdirSync(path.dirname(deployed), { recursive: true });
      const m = await exportCheckpoint(f.r.checkpoint, deployed);
      return { deployed, layoutHash: m.layoutHash };
    });
    const camp = async (suffix: string, extra: { trials: number; rateUnit?: 'bit' | 'weight'; byLayer?: boolean; byBit?: boolean; rates: number[] }) => {
      const file = path.join(out, 'campaigns', `${label}.${suffix}.jsonl`);
      const settings = { checkpoint: runName(f.c), faults: b.faults, seed: b.faultSeed, testImages: b.testImages, ...extra };
      await st.run(`campaign-${label}-${suffix}`, settings, async () => {
        const co = {
          model: deployed, faults: b.faults, rates: extra.rates, trials: extra.trials, seed: b.faultSeed, rateUnit: extra.rateUnit ?? 'bit',
          byLayer: !!extra.byLayer, byBit: !!extra.byBit, quiet, ...(b.testImages > 0 ? { limit: b.testImages } : {}), ...dd,
        } as const;
        if (o.queue) {
          // on `flatenn worker`s: the same results file as a local run (loaded only in queue mode)
          const q = require('../queue') as typeof import('../queue');
          const e = await q.enqueueCampaign({ ...co, queue: o.queue, out: file });
          log(`campaign-${label}-${suffix}: ${e.total} trials in ${e.jobs} jobs on ${o.queue} (campaign ${e.id})`);
          const r = await q.collectCampaign({ queue: o.queue, out: file, id: e.id, quiet, write: (t) => log(t.replace(/\s+$/, '')) });
          if (!r.complete) throw new Error(`campaign ${e.id} was not collected completely; re-run the same command to resume`);
          return { file, trials: r.records.length };
        }
        const r = await runCampaign({ ...co, out: file });
        return { file, trials: r.records.length };
      });
      campaignFiles.push(file);
    };
    await camp('bit', { trials: b.trials, rates });
    if (f.seed === 1) {
      if (b.weightTrials > 0) await camp('weight', { trials: b.weightTrials, rateUnit: 'weight', rates });
      if (b.byTrials > 0) {
        await camp('by-layer', { trials: b.byTrials, byLayer: true, rates: byRate });
        await camp('by-bit', { trials: b.byTrials, byBit: true, rates: byRate });
      }
    }
  }

  // 6. Landscapes: 1D for every seed's models (same directions), 2D on seed 1.
  const landscapeFiles: string[] = [];
  for (const s of seeds) {
    const ms = usable.filter((f) => f.seed === s);
    if (!ms.length) continue;
    const files = ms.map((f) => f.r.checkpoint), labels = ms.map((f) => `${f.group}-s${s}`);
    const lands: [string, 1 | 2, number][] = [[`landscape-1d-s${s}`, 1, b.landscapePoints1d]];
    if (s === 1 && b.landscapePoints2d > 0) lands.push([`landscape-2d-s${s}`, 2, b.landscapePoints2d]);
    for (const [id, dim, points] of lands) {
      const file = path.join(out, 'landscapes', `${id}.json`);
      await st.run(id, { models: ms.map((f) => runName(f.c)), labels, dim, points, images: b.landscapeImages, directions: dim === 1 ? b.landscapeDirections : 1 }, async () => {
        const l = await computeLandscape(files, { dim, points, images: b.landscapeImages, directions: dim === 1 ? b.landscapeDirections : 1, labels, quiet, ...dd });
        await writeLandscape(file, l);
        return { file };
      }, true);
      landscapeFiles.push(file);
    }
  }

  // 7. Study summary and report.
  const dataset = (await loadDataset(o.arch === 'lenet5' ? 'fashion-mnist' : 'cifar10', 'test', dd)).displayName;
  const study: StudyFile = {
    format: STUDY_FORMAT, version: 1, arch: o.arch, dataset, quick: o.quick, seeds: o.seeds,
    lambda: { chosen: lambda, grid: b.lambdas, rule: LAMBDA_RULE, ineligible: lamIneligible },
    rho: { chosen: rho, grid: b.rhos, rule: RHO_RULE, ineligible: rhoIneligible },
    runs: [...runMap.values()].sort((p, q) => p.seed - q.seed || p.name.localeCompare(q.name) || p.group.localeCompare(q.group)),
    budget: b as unknown as Record<string, unknown>,
  };
  const studyFile = path.join(out, 'study.json');
  await writeFileAtomic(studyFile, Buffer.from(JSON.stringify(study, null, 1) + '\n'));
  const reportDir = path.join(out, 'report');
  const inputs = [...campaignFiles, ...landscapeFiles, studyFile];
  const trialsIn = campaignFiles.map((f) => readResults(f).records.length);
  const rep = await st.run('report', { inputs: inputs.map((f) => path.relative(out, f)), trials: trialsIn, study: canonical(study) }, async () => {
    const r = await buildReport(inputs, { out: reportDir, title: `flatenn reproduce ${o.arch}${o.quick ? ' --quick' : ''}: ${o.arch === 'lenet5' ? 'LeNet-5' : 'ResNet-18'} on ${dataset}, ${o.seeds} seed(s)`, quiet });
    return { html: r.html };
  }, true);
  return { report: rep.html, study, stagesRun: st.ran, stagesSkipped: st.skipped, seconds: (Date.now() - t0) / 1000 };
}

function toRun(name: string, group: string, role: StudyRun['role'], c: TrainConfig, r: TrainOutcome): StudyRun {
  return { name, group, seed: c.seed, epochs: c.epochs, width: c.width, actL1: c.actL1[0]!, saqRho: c.saqRho, saqWarmup: c.saqWarmup, testAccuracy: r.testAccuracy, testSparsity: r.testSparsity, valAccuracy: r.valAccuracy, collapsed: r.collapsed, collapse: r.collapse, role };
}

/** Throws RangeError naming the first bad budget field. */
export function checkBudget(b: Budget, arch: ReproduceArch = 'lenet5'): void {
  for (const k of ['width', 'gridWidth'] as const) {
    const v = b[k];
    if (arch === 'lenet5' ? v !== 1 : !(typeof v === 'number' && v > 0 && v <= 4 && Number.isFinite(v))) throw new RangeError(`budget ${k} must be ${arch === 'lenet5' ? '1 for lenet5' : 'in (0, 4] for resnet18'}, got ${String(v)}`);
  }
  const int = (k: keyof Budget, lo: number) => { const v = b[k] as number; if (!Number.isInteger(v) || v < lo) throw new RangeError(`budget ${k} must be an integer >= ${lo}, got ${String(v)}`); };
  int('epochs', 1); int('limitTrain', 0); int('batchSize', 1); int('valSize', 1); int('trials', 1); int('weightTrials', 0); int('byTrials', 0); int('testImages', 0);
  int('faultSeed', 0); int('landscapeImages', 1); int('landscapePoints1d', 3); int('landscapeDirections', 1); int('landscapePoints2d', 0);
  if (b.landscapePoints2d > 0 && b.landscapePoints2d < 3) throw new RangeError('budget landscapePoints2d must be 0 or >= 3');
  const list = (k: 'lambdas' | 'rhos' | 'rates', ok: (x: number) => boolean, what: string) => {
    const v = b[k] as unknown;
    if (!Array.isArray(v) || v.length === 0 || v.some((x) => typeof x !== 'number' || !ok(x))) throw new RangeError(`budget ${k} must be a non-empty list of ${what}, got ${JSON.stringify(v)}`);
    if (new Set(v).size !== v.length) throw new RangeError(`budget ${k} lists a value twice`);
  };
  list('lambdas', (l) => l > 0 && Number.isFinite(l), 'positive numbers');
  list('rhos', (r) => r > 0 && Number.isFinite(r), 'positive numbers');
  list('rates', (r) => r >= 0 && r <= 1, 'fractions in [0, 1]');
  const faults = b.faults as unknown;
  if (!Array.isArray(faults) || faults.length === 0 || faults.some((f) => !(FAULT_TYPES as readonly unknown[]).includes(f))) throw new RangeError(`budget faults must be a non-empty list of ${FAULT_TYPES.join(', ')}`);
  if (!(b.byRate > 0 && b.byRate <= 1)) throw new RangeError('budget byRate must be in (0, 1]');
  if (!Number.isFinite(b.saqWarmup) || b.saqWarmup < 0) throw new RangeError('budget saqWarmup must be >= 0');
}
