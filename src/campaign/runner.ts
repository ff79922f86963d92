// Campaign execution: trials of (target, fault type, rate, trial index), each a
// fresh fault map applied to a copy of the clean weight memory and a pass over
// the test images on the int4 engine.
import type { DeployedModel } from '../deploy/format';
import { Engine } from '../engine/engine';
import { FaultSpace, type FaultTargets, type FaultType } from './faults';
import type { CampaignSettings, TrialRecord } from './results';
import { maskKey } from './masks';

/** Target names: 'all', 'layer:<name>', 'bit:<b>', or 'targets:<layers>/<bits>' for --fault-targets. */
export function targetsOf(name: string): FaultTargets {
  if (name === 'all') return { layers: null, bits: null };
  if (name.startsWith('layer:')) return { layers: [name.slice(6)], bits: null };
  if (name.startsWith('bit:')) return { layers: null, bits: [Number(name.slice(4))] };
  if (name.startsWith('targets:')) {
    const [l, b] = name.slice(8).split('/');
    return { layers: l && l !== '*' ? l.split('+') : null, bits: b && b !== '*' ? b.split('+').map(Number) : null };
  }
  throw new RangeError(`unknown fault target '${name}'`);
}

export interface TrialJob { target: string; trial: number; fault: FaultType; rate: number }

/**
 * The largest trial count a campaign may have: the fault-map RNG indexes trials
 * with 32 bits (DESIGN §2), so trial t and t + 2^32 would share a fault map.
 */
export const MAX_TRIALS = 2 ** 32;

/** Number of jobs of the campaign in this shard (without generating them). */
export function campaignJobCount(s: Pick<CampaignSettings, 'targets' | 'trials' | 'faults' | 'rates'>, shard: { index: number; count: number }): number {
  const trialsInShard = shard.index < s.trials ? Math.floor((s.trials - 1 - shard.index) / shard.count) + 1 : 0;
  return s.targets.length * trialsInShard * s.faults.length * s.rates.length;
}

/**
 * Every job of the campaign in canonical order, generated lazily (memory does
 * not grow with the trial count); shard i/N takes the trials t with t % N == i.
 */
export function* campaignJobs(s: Pick<CampaignSettings, 'targets' | 'trials' | 'faults' | 'rates'>, shard: { index: number; count: number }): Generator<TrialJob> {
  for (const target of s.targets) {
    for (let t = shard.index; t < s.trials; t += shard.count) {
      for (const fault of s.faults) for (const rate of s.rates) yield { target, trial: t, fault, rate };
    }
  }
}

/** Codes that differ between two memories (per layer width). */
export function changedCodes(model: DeployedModel, a: Uint8Array, b: Uint8Array): number {
  let n = 0;
  for (const l of model.meta.layers) {
    const end = l.byteOffset + l.byteLength;
    const fieldMask = (1 << l.bits) - 1;
    for (let i = l.byteOffset; i < end; i++) {
      const d = a[i]! ^ b[i]!;
      if (d === 0) continue;
      for (let sh = 0; sh < 8; sh += l.bits) if ((d >> sh) & fieldMask) n++;
    }
  }
  return n;
}

export interface TrialData { images: Uint8Array; labels: Uint8Array; count: number }

/**
 * The faulty cells of each job: drawn by the common-random-number rule of DESIGN §2 (nested across
 * rates, shared across fault types and models of one layout), or replayed from saved masks.
 */
export class FaultMapper {
  private readonly spaces = new Map<string, FaultSpace>();
  private orderCache: { key: string; order: Uint32Array } | null = null;

  constructor(private readonly meta: DeployedModel['meta'], private readonly settings: CampaignSettings, private readonly masks: Map<string, Uint32Array> | null = null) {}

  space(target: string): FaultSpace {
    let s = this.spaces.get(target);
    if (!s) this.spaces.set(target, (s = new FaultSpace(this.meta, targetsOf(target), this.settings.rateUnit)));
    return s;
  }

  cellsOf(job: TrialJob): Uint32Array {
    if (this.masks) {
      const c = this.masks.get(maskKey(job.fault, job.rate, job.trial));
      if (!c) throw new Error(`the masks file has no cells for ${maskKey(job.fault, job.rate, job.trial)}`);
      return c;
    }
    const s = this.settings, space = this.space(job.target);
    if (s.sampling === 'bernoulli') return space.bernoulli(s.seed, job.trial, job.rate);
    const key = `${job.target}|${job.trial}`;
    if (!this.orderCache || this.orderCache.key !== key) {
      const kmax = Math.max(...s.rates.map((r) => space.count(r)));
      this.orderCache = { key, order: space.order(s.seed, job.trial, kmax) };
    }
    return this.orderCache.order.subarray(0, space.count(job.rate));
  }
}

/** Runs jobs in order, calling onRecord after each (the caller writes it out). */
export class CampaignExecutor {
  private readonly mapper: FaultMapper;
  private readonly engine: Engine;
  private readonly faulty: Uint8Array;
  private readonly mask: Uint8Array;
  private cleanResult: { accuracy: number; loss: number; sparsity: number; sparsityWeighted: number } | null = null;
  constructor(private readonly model: DeployedModel, settings: CampaignSettings, private readonly data: TrialData, masks: Map<string, Uint32Array> | null = null) {
    this.mapper = new FaultMapper(model.meta, settings, masks);
    this.engine = new Engine(model);
    this.faulty = new Uint8Array(model.memory.length);
    this.mask = new Uint8Array(model.memory.length);
  }

  private evaluate(memory: Uint8Array) {
    const r = this.engine.evaluateSync({ memory, images: this.data.images, labels: this.data.labels, count: this.data.count });
    return { accuracy: r.accuracy, loss: r.loss, sparsity: r.sparsity, sparsityWeighted: r.sparsityWeighted };
  }

  /** The faulty cells of a job (nested across rates, shared across fault types; or replayed). */
  cellsOf(job: TrialJob): Uint32Array { return this.mapper.cellsOf(job); }

  run(job: TrialJob): TrialRecord {
    const cells = this.cellsOf(job);
    this.mapper.space(job.target).apply(this.model.memory, cells, job.fault, this.faulty, this.mask);
    const changed = changedCodes(this.model, this.model.memory, this.faulty);
    let r;
    if (changed === 0) {
      // Same memory as the clean model: same result (computed once).
      r = this.cleanResult ??= this.evaluate(this.model.memory);
    } else {
      r = this.evaluate(this.faulty);
    }
    return { type: 'trial', target: job.target, fault: job.fault, rate: job.rate, trial: job.trial, ...r, faultyCells: cells.length, changedCodes: changed };
  }
}
