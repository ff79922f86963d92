// The report's inputs (campaign results, landscapes, an optional study summary)
// and the numbers it shows: accuracy per model/type/rate pooled over seeds, the
// spread across seeds beside the spread across fault maps, paired gains.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { readResults, mergeResults, semanticsMismatch, summaryRows, trialKey, type CampaignSettings, type CleanRecord, type TrialRecord } from '../campaign/results';
import { readLandscape, type LandscapeFile } from '../landscape/landscape';
import { summarize, type Summary } from '../stats/t';

export const STUDY_FORMAT = 'flatenn.study';

/** A fault rate as a percentage ('0.5%'). */
export const rateTxt = (r: number) => `${+(100 * r).toPrecision(4)}%`;

/** One campaign of one model (all shards of it merged). */
export interface Campaign {
  files: string[];
  settings: CampaignSettings;
  records: TrialRecord[];
  /** The model's name: its file name without .safetensors (e.g. 'saq-s2'). */
  label: string;
  /** The label without a trailing '-s<seed>' (e.g. 'saq'): one model across training seeds. */
  group: string;
  /** Training seed from the label, 1 when it has none. */
  seed: number;
  /** 'all' (whole memory), 'layer' (--by-layer) or 'bit' (--by-bit). */
  kind: 'all' | 'layer' | 'bit' | 'other';
}

export interface StudyRun {
  name: string;
  group: string;
  seed: number;
  epochs: number;
  /** resnet18 channel multiplier (absent in older study files: 1). */
  width?: number;
  actL1: number;
  saqRho: number;
  saqWarmup: number;
  testAccuracy: number | null;
  testSparsity: number | null;
  valAccuracy: number | null;
  collapsed: boolean;
  collapse: string[];
  role: 'final' | 'lambda-grid' | 'rho-grid';
}

/** What `flatenn reproduce` writes beside its results: the runs, the selections and the settings. */
export interface StudyFile {
  format: typeof STUDY_FORMAT;
  version: number;
  arch: string;
  /** The data's display name ('FashionMNIST', 'CIFAR-10', or 'CIFAR-10-JPEG' for the lossy stand-in); absent in older files. */
  dataset?: string;
  quick: boolean;
  seeds: number;
  lambda: { chosen: number | null; grid: number[]; rule: string; ineligible: { value: number; why: string }[] };
  rho: { chosen: number | null; grid: number[]; rule: string; ineligible: { value: number; why: string }[] };
  runs: StudyRun[];
  budget: Record<string, unknown>;
}

export interface ReportInputs {
  campaigns: Campaign[];
  landscapes: { file: string; data: LandscapeFile }[];
  study: StudyFile | null;
}

export const seedOf = (label: string): { group: string; seed: number } => {
  const m = /^(.*)-s(\d+)$/.exec(label);
  return m ? { group: m[1]!, seed: Number(m[2]) } : { group: label, seed: 1 };
};

export function labelOfModel(modelPath: string): string {
  return path.basename(modelPath).replace(/\.safetensors$/, '').replace(/\.deployed$/, '');
}

function kindOf(targets: string[]): Campaign['kind'] {
  if (targets.length === 1 && targets[0] === 'all') return 'all';
  if (targets.every((t) => t.startsWith('layer:'))) return 'layer';
  if (targets.every((t) => t.startsWith('bit:'))) return 'bit';
  return 'other';
}

/** Sorts the given files by content: campaign results (.jsonl), landscapes, a study summary. */
export function loadInputs(files: string[]): ReportInputs {
  const results: string[] = [];
  const landscapes: { file: string; data: LandscapeFile }[] = [];
  let study: StudyFile | null = null;
  for (const f of files) {
    if (!fs.existsSync(f)) throw new Error(`${f}: no such file`);
    const head = fs.readFileSync(f, 'utf8').slice(0, 4096);
    if (/^\{"type":"header"/.test(head)) { results.push(f); continue; }
    let j: { format?: string };
    try { j = JSON.parse(fs.readFileSync(f, 'utf8')) as { format?: string }; } catch { throw new Error(`${f}: neither campaign results (JSON Lines with a header) nor a landscape or study JSON file`); }
    if (j.format === 'flatenn.landscape') landscapes.push({ file: f, data: readLandscape(f) });
    else if (j.format === STUDY_FORMAT) { if (study) throw new Error(`${f}: a second study file`); study = j as StudyFile; }
    else throw new Error(`${f}: not a flatenn campaign results, landscape or study file`);
  }
  // Merge shards of one campaign: same settings (model hash included) and the same model name = one campaign
  // (two names for one model file, as a 1-epoch control that equals the standard run, stay two models).
  const groups = new Map<string, string[]>();
  const parsed = new Map<string, ReturnType<typeof readResults>>();
  for (const f of results) {
    const r = readResults(f);
    parsed.set(f, r);
    const { model: _m, ...rest } = r.header.settings;
    const key = JSON.stringify([labelOfModel(r.header.settings.model), rest]);
    groups.set(key, [...(groups.get(key) ?? []), f]);
  }
  const campaigns: Campaign[] = [];
  for (const fs_ of groups.values()) {
    const m = mergeResults(fs_.map((p) => ({ path: p, file: parsed.get(p)! })));
    const label = labelOfModel(m.settings.model);
    campaigns.push({ files: fs_, settings: m.settings, records: withCleanRecords(m.settings, m.records, m.clean), label, ...seedOf(label), kind: kindOf(m.settings.targets) });
  }
  return { campaigns, landscapes, study };
}

/**
 * The 0% point from the clean record (a campaign evaluates the clean model once per target and runs no rate-0
 * trials): one rate-0 record per fault type, trial 0, as `summary` does; older files with rate-0 trials keep theirs.
 */
function withCleanRecords(settings: CampaignSettings, records: TrialRecord[], clean: CleanRecord[]): TrialRecord[] {
  if (!settings.rates.includes(0) || !clean.length) return records;
  const have = new Set(records.filter((r) => r.rate === 0).map((r) => `${r.target}|${r.fault}`));
  const extra: TrialRecord[] = [];
  for (const c of clean) for (const fault of settings.faults) {
    if (have.has(`${c.target}|${fault}`)) continue;
    extra.push({ type: 'trial', target: c.target, fault, rate: 0, trial: 0, accuracy: c.accuracy, loss: c.loss, sparsity: c.sparsity, sparsityWeighted: c.sparsityWeighted, faultyCells: 0, changedCodes: 0 });
  }
  return extra.length ? [...extra, ...records] : records;
}

/** Groups in a stable, meaningful order (the paper's models first, then the controls, then the rest). */
export const GROUP_ORDER = ['standard', 'as', 'saq', 'saq-as', 'control', 'control-as'];
/** Short names for legends; 'control' and 'control-AS' are conventional models trained on SAQ's (shorter) schedule. */
export const GROUP_NAMES: Record<string, string> = {
  standard: 'standard', as: 'AS', saq: 'SAQ', 'saq-as': 'SAQ-AS', control: 'control', 'control-as': 'control-AS',
};
export const groupName = (g: string) => GROUP_NAMES[g] ?? g;
export function orderGroups(gs: Iterable<string>): string[] {
  const u = [...new Set(gs)];
  const rank = (g: string) => { const i = GROUP_ORDER.indexOf(g); return i < 0 ? GROUP_ORDER.length : i; };
  return u.sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
}

export interface PointRow { group: string; unit: string; fault: string; rate: number; seeds: number; acc: Summary; sparsity: Summary }

/** Accuracy and sparsity per (model group, rate unit, type, rate): every trial of every seed pooled. */
export function pointRows(cs: Campaign[]): PointRow[] {
  const m = new Map<string, { group: string; unit: string; fault: string; rate: number; seeds: Set<number>; acc: number[]; sp: number[] }>();
  for (const c of cs) {
    if (c.kind !== 'all') continue;
    for (const r of c.records) {
      const k = `${c.group}|${c.settings.rateUnit}|${r.fault}|${r.rate}`;
      let e = m.get(k);
      if (!e) m.set(k, (e = { group: c.group, unit: c.settings.rateUnit, fault: r.fault, rate: r.rate, seeds: new Set(), acc: [], sp: [] }));
      e.seeds.add(c.seed); e.acc.push(r.accuracy); e.sp.push(r.sparsity);
    }
  }
  return [...m.values()].map((e) => ({ group: e.group, unit: e.unit, fault: e.fault, rate: e.rate, seeds: e.seeds.size, acc: summarize(e.acc), sparsity: summarize(e.sp) }));
}

export interface SpreadRow { group: string; unit: string; fault: string; rate: number; seeds: number; seedMeans: number[]; seedSd: number; faultMapSd: number; trialsPerSeed: number }

/** Spread across training seeds (sd of the per-seed means) beside spread across fault maps (sd over trials, mean over seeds). */
export function spreadRows(cs: Campaign[]): SpreadRow[] {
  const m = new Map<string, { c: Campaign; rows: ReturnType<typeof summaryRows> }[]>();
  for (const c of cs) {
    if (c.kind !== 'all') continue;
    const rows = summaryRows(c.settings, c.records);
    const k = `${c.group}|${c.settings.rateUnit}`;
    m.set(k, [...(m.get(k) ?? []), { c, rows }]);
  }
  const out: SpreadRow[] = [];
  for (const list of m.values()) {
    const keys = new Map<string, { fault: string; rate: number; means: number[]; sds: number[]; n: number[] }>();
    for (const { rows } of list) for (const r of rows) {
      const k = `${r.fault}|${r.rate}`;
      let e = keys.get(k);
      if (!e) keys.set(k, (e = { fault: r.fault, rate: r.rate, means: [], sds: [], n: [] }));
      e.means.push(r.accuracy.mean); e.sds.push(r.accuracy.std); e.n.push(r.accuracy.n);
    }
    for (const e of keys.values()) {
      out.push({
        group: list[0]!.c.group, unit: list[0]!.c.settings.rateUnit, fault: e.fault, rate: e.rate, seeds: e.means.length, seedMeans: e.means,
        seedSd: e.means.length > 1 ? summarize(e.means).std : NaN, faultMapSd: e.sds.reduce((a, b) => a + b, 0) / e.sds.length,
        trialsPerSeed: Math.min(...e.n),
      });
    }
  }
  return out;
}

export interface GainCell { fault: string; rates: { rate: number; pairs: number; diff: Summary }[]; min: { rate: number; diff: Summary } | null; max: { rate: number; diff: Summary } | null }
export interface GainRow { a: string; b: string; title: string; unit: string; seeds: number[]; cells: GainCell[] }

/** The paper's comparisons (and the equal-schedule controls): A - B accuracy. */
export const COMPARISONS: [string, string, string][] = [
  ['saq', 'standard', 'SAQ vs conventional (standard models)'],
  ['saq-as', 'as', 'SAQ vs conventional (AS models)'],
  ['as', 'standard', 'AS vs standard (conventional)'],
  ['saq-as', 'standard', 'SAQ-AS vs conventional standard'],
  ['saq', 'control', 'SAQ vs equal-schedule control (standard)'],
  ['saq-as', 'control-as', 'SAQ-AS vs equal-schedule control (AS)'],
];

/** Whether two campaigns share their fault maps (so their trials pair up). */
export function pairable(a: CampaignSettings, b: CampaignSettings): string {
  const sem = semanticsMismatch(a, b);
  if (sem) return sem;
  for (const k of ['layoutHash', 'seed', 'sampling', 'rateUnit', 'images', 'dataset', 'masksSha256'] as const) if (a[k] !== b[k]) return `${k} differs (${a[k]} vs ${b[k]})`;
  return '';
}

/**
 * Paired gains A - B per (type, rate): trial t of seed s of A against trial t of
 * seed s of B (the same fault map), pooled over the seeds both have; min and max
 * of the mean gain over the non-zero rates.
 */
export function gainRows(cs: Campaign[]): GainRow[] {
  const out: GainRow[] = [];
  const all = cs.filter((c) => c.kind === 'all');
  for (const unit of ['bit', 'weight']) {
    const byGroup = new Map<string, Map<number, Campaign>>();
    for (const c of all) {
      if (c.settings.rateUnit !== unit) continue;
      if (!byGroup.has(c.group)) byGroup.set(c.group, new Map());
      byGroup.get(c.group)!.set(c.seed, c);
    }
    for (const [a, b, title] of COMPARISONS) {
      const A = byGroup.get(a), B = byGroup.get(b);
      if (!A || !B) continue;
      const seeds = [...A.keys()].filter((s) => B.has(s)).sort((x, y) => x - y);
      if (!seeds.length) continue;
      const diffs = new Map<string, { fault: string; rate: number; d: number[] }>();
      for (const s of seeds) {
        const ca = A.get(s)!, cb = B.get(s)!;
        const why = pairable(ca.settings, cb.settings);
        if (why) throw new Error(`${ca.label} and ${cb.label} cannot be paired: ${why}`);
        const bm = new Map(cb.records.map((r) => [trialKey(r), r]));
        for (const ra of ca.records) {
          const rb = bm.get(trialKey(ra));
          if (!rb) continue;
          const k = `${ra.fault}|${ra.rate}`;
          let e = diffs.get(k);
          if (!e) diffs.set(k, (e = { fault: ra.fault, rate: ra.rate, d: [] }));
          e.d.push(ra.accuracy - rb.accuracy);
        }
      }
      const faults = [...new Set([...diffs.values()].map((e) => e.fault))];
      const cells: GainCell[] = faults.map((f) => {
        const rates = [...diffs.values()].filter((e) => e.fault === f).sort((x, y) => x.rate - y.rate).map((e) => ({ rate: e.rate, pairs: e.d.length, diff: summarize(e.d) }));
        const nz = rates.filter((r) => r.rate > 0);
        const min = nz.length ? nz.reduce((p, q) => (q.diff.mean < p.diff.mean ? q : p)) : null;
        const max = nz.length ? nz.reduce((p, q) => (q.diff.mean > p.diff.mean ? q : p)) : null;
        return { fault: f, rates, min: min && { rate: min.rate, diff: min.diff }, max: max && { rate: max.rate, diff: max.diff } };
      });
      out.push({ a, b, title, unit, seeds, cells });
    }
  }
  return out;
}

export interface HeatCell { group: string; fault: string; target: string; rate: number; acc: number; drop: number; trials: number }

/** By-layer / by-bit campaigns: mean accuracy per (model, type, target) and its drop from the model's clean accuracy. */
export function heatCells(cs: Campaign[], kind: 'layer' | 'bit'): HeatCell[] {
  const clean = new Map<string, number>();
  for (const c of cs) if (c.kind === 'all') {
    const z = c.records.filter((r) => r.rate === 0);
    if (z.length) clean.set(c.label, z.reduce((s, r) => s + r.accuracy, 0) / z.length);
  }
  const out: HeatCell[] = [];
  for (const c of cs) {
    if (c.kind !== kind) continue;
    for (const row of summaryRows(c.settings, c.records)) {
      if (row.rate === 0) continue;
      const base = clean.get(c.label);
      out.push({ group: c.seed === 1 ? c.group : c.label, fault: row.fault, target: row.target.replace(/^(layer|bit):/, ''), rate: row.rate, acc: row.accuracy.mean, drop: base !== undefined ? base - row.accuracy.mean : NaN, trials: row.accuracy.n });
    }
  }
  return out;
}
