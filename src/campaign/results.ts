// Campaign result files (DESIGN §5): JSON Lines, a header line with the
// settings and model hash, then one line per finished trial, appended and
// flushed as each trial ends. Summaries per (target, fault type, rate).
import * as fs from 'node:fs';
import { summarize, type Summary } from '../stats/t';
import type { FaultType, RateUnit, Sampling } from './faults';

export const RESULTS_FORMAT = 'flatenn.campaign';
export const RESULTS_VERSION = 1;
/**
 * What a trial computes (DESIGN §1-§2). 1: the input layer's mean term taken from the clean codes, raw-0
 * padding only (results written before the field existed). 2: derived from the codes in memory, so a
 * faulty first-layer code means what it means in PyTorch; normalised-zero padding where the model says so.
 */
export const SEMANTICS = 2;

/** Everything that determines the trials' results (a resumed or merged file must match it exactly). */
export interface CampaignSettings {
  model: string;
  modelSha256: string;
  layoutHash: string;
  arch: string;
  dataset: string;
  split: 'test';
  images: number;
  faults: FaultType[];
  rates: number[];
  trials: number;
  seed: number;
  sampling: Sampling;
  rateUnit: RateUnit;
  /** Target sets: 'all', 'layer:<name>', 'bit:<b>', or a --fault-targets spec. */
  targets: string[];
  /** The semantics version of the trials (SEMANTICS; 1 when a file predates the field). */
  semantics: number;
  /** sha256 of the masks file replayed (inject --masks); absent when the faults were drawn. */
  masksSha256?: string;
}

export interface ResultsHeader {
  type: 'header';
  format: typeof RESULTS_FORMAT;
  version: number;
  settings: CampaignSettings;
  shard: { index: number; count: number };
}

export interface TrialRecord {
  type: 'trial';
  target: string;
  fault: FaultType;
  rate: number;
  trial: number;
  accuracy: number;
  loss: number;
  sparsity: number;
  sparsityWeighted: number;
  faultyCells: number;
  changedCodes: number;
}

export const trialKey = (r: Pick<TrialRecord, 'target' | 'fault' | 'rate' | 'trial'>) => `${r.target}|${r.fault}|${r.rate}|${r.trial}`;

function canonical(v: unknown): string {
  if (Array.isArray(v)) return '[' + v.map(canonical).join(',') + ']';
  if (v && typeof v === 'object') return '{' + Object.keys(v).sort().map((k) => JSON.stringify(k) + ':' + canonical((v as Record<string, unknown>)[k])).join(',') + '}';
  return JSON.stringify(v);
}

/** A message when two campaigns were computed under different semantics versions, else ''. */
export function semanticsMismatch(a: CampaignSettings, b: CampaignSettings): string {
  const sa = a.semantics ?? 1, sb = b.semantics ?? 1;
  if (sa === sb) return '';
  return `semantics version ${sa} vs ${sb}: the trials were computed under different rules (DESIGN §1-§2: from version 2 on, the input layer's mean term follows the codes in memory and padding follows the model), so they cannot be resumed, merged or paired; re-run the older campaign with this version`;
}

/** Names the first setting that differs ('' when equal). The model path may differ if its hash is the same. */
export function settingsDiff(a: CampaignSettings, b: CampaignSettings): string {
  const sem = semanticsMismatch(a, b);
  if (sem) return sem;
  for (const k of Object.keys({ ...a, ...b }) as (keyof CampaignSettings)[]) {
    if (k === 'model') continue;
    if (canonical(a[k]) !== canonical(b[k])) return `${k}: ${canonical(a[k])} vs ${canonical(b[k])}`;
  }
  return '';
}

export interface ResultsFile {
  header: ResultsHeader;
  records: TrialRecord[];
  /** Bytes of complete lines (a torn last line after a kill is beyond this). */
  validBytes: number;
  tornTail: boolean;
}

/** Reads a results file; a torn final line (killed mid-write) is reported, not parsed. */
export function readResults(path: string): ResultsFile {
  let text: string;
  try { text = fs.readFileSync(path, 'utf8'); } catch (e) { throw new Error(`${path}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`); }
  const lastNl = text.lastIndexOf('\n');
  const complete = lastNl >= 0 ? text.slice(0, lastNl + 1) : '';
  const tornTail = complete.length < text.length;
  const lines = complete.split('\n').filter((l) => l.length > 0);
  if (lines.length === 0) throw new Error(`${path}: no header line (empty or torn file)`);
  let header: ResultsHeader;
  try { header = JSON.parse(lines[0]!) as ResultsHeader; } catch { throw new Error(`${path}: line 1 is not JSON`); }
  if (header.type !== 'header' || header.format !== RESULTS_FORMAT) throw new Error(`${path}: not a flatenn campaign results file (line 1 is not a ${RESULTS_FORMAT} header)`);
  if (header.version !== RESULTS_VERSION) throw new Error(`${path}: results version ${header.version} is not supported`);
  if (header.settings && typeof header.settings === 'object' && header.settings.semantics === undefined) header.settings.semantics = 1;
  const records: TrialRecord[] = [];
  for (let i = 1; i < lines.length; i++) {
    let r: TrialRecord;
    try { r = JSON.parse(lines[i]!) as TrialRecord; } catch { throw new Error(`${path}: line ${i + 1} is not valid JSON`); }
    if (r.type !== 'trial') throw new Error(`${path}: line ${i + 1} is not a trial record`);
    records.push(r);
  }
  return { header, records, validBytes: Buffer.byteLength(complete), tornTail };
}

/** Appends lines with one write each (no buffering in this process). */
export class ResultsWriter {
  private fd: number;
  constructor(path: string) { this.fd = fs.openSync(path, 'a'); }
  write(obj: unknown): void { fs.writeSync(this.fd, JSON.stringify(obj) + '\n'); }
  sync(): void { fs.fsyncSync(this.fd); }
  close(): void { if (this.fd >= 0) { fs.closeSync(this.fd); this.fd = -1; } }
}

export interface SummaryRow {
  target: string;
  fault: FaultType;
  rate: number;
  accuracy: Summary;
  sparsity: Summary;
  faultyCells: number;
  meanChangedCodes: number;
}

const cmpRows = (settings: CampaignSettings) => (a: { target: string; fault: FaultType; rate: number }, b: { target: string; fault: FaultType; rate: number }) =>
  settings.targets.indexOf(a.target) - settings.targets.indexOf(b.target) || settings.faults.indexOf(a.fault) - settings.faults.indexOf(b.fault) || a.rate - b.rate;

/**
 * Merges result files (shards) after checking that their settings agree;
 * a trial present twice must be identical (then it counts once).
 */
export function mergeResults(files: { path: string; file: ResultsFile }[]): { settings: CampaignSettings; records: TrialRecord[] } {
  if (files.length === 0) throw new Error('no results files');
  const settings = files[0]!.file.header.settings;
  const byKey = new Map<string, TrialRecord>();
  for (const { path, file } of files) {
    const d = settingsDiff(settings, file.header.settings);
    if (d) throw new Error(`${path}: settings differ from ${files[0]!.path} (${d})`);
    for (const r of file.records) {
      const k = trialKey(r);
      const prev = byKey.get(k);
      if (prev && canonical(prev) !== canonical(r)) throw new Error(`${path}: trial ${k} disagrees with another file's record of it`);
      byKey.set(k, r);
    }
  }
  return { settings, records: [...byKey.values()] };
}

export function summaryRows(settings: CampaignSettings, records: TrialRecord[]): SummaryRow[] {
  const groups = new Map<string, TrialRecord[]>();
  for (const r of records) {
    const k = `${r.target}|${r.fault}|${r.rate}`;
    let g = groups.get(k);
    if (!g) groups.set(k, (g = []));
    g.push(r);
  }
  const rows: SummaryRow[] = [];
  for (const g of groups.values()) {
    g.sort((a, b) => a.trial - b.trial);
    const f = g[0]!;
    rows.push({
      target: f.target, fault: f.fault, rate: f.rate,
      accuracy: summarize(g.map((r) => r.accuracy)), sparsity: summarize(g.map((r) => r.sparsity)),
      faultyCells: g.reduce((a, r) => a + r.faultyCells, 0) / g.length,
      meanChangedCodes: g.reduce((a, r) => a + r.changedCodes, 0) / g.length,
    });
  }
  return rows.sort(cmpRows(settings));
}

export interface PairedRow { target: string; fault: FaultType; rate: number; pairs: number; diff: Summary; a: number; b: number }

/** Paired differences a - b of accuracy per (target, type, rate) over the trials both files have. */
export function pairedRows(a: { settings: CampaignSettings; records: TrialRecord[] }, b: { settings: CampaignSettings; records: TrialRecord[] }): PairedRow[] {
  const sem = semanticsMismatch(a.settings, b.settings);
  if (sem) throw new Error(sem);
  const bm = new Map(b.records.map((r) => [trialKey(r), r]));
  const groups = new Map<string, { ra: TrialRecord; rb: TrialRecord }[]>();
  for (const ra of a.records) {
    const rb = bm.get(trialKey(ra));
    if (!rb) continue;
    const k = `${ra.target}|${ra.fault}|${ra.rate}`;
    let g = groups.get(k);
    if (!g) groups.set(k, (g = []));
    g.push({ ra, rb });
  }
  const rows: PairedRow[] = [];
  for (const g of groups.values()) {
    const f = g[0]!.ra;
    rows.push({
      target: f.target, fault: f.fault, rate: f.rate, pairs: g.length,
      diff: summarize(g.map((p) => p.ra.accuracy - p.rb.accuracy)),
      a: g.reduce((s, p) => s + p.ra.accuracy, 0) / g.length, b: g.reduce((s, p) => s + p.rb.accuracy, 0) / g.length,
    });
  }
  return rows.sort(cmpRows(a.settings));
}

const pct = (x: number, d = 2) => (Number.isFinite(x) ? (100 * x).toFixed(d) : 'n/a');
export const fmtRate = (r: number) => `${+(100 * r).toPrecision(6)}%`;

export function formatSummary(rows: SummaryRow[]): string {
  const head = ['target', 'fault', 'rate', 'trials', 'acc mean %', 'std', '95% CI', 'min', 'max', 'sparsity %', 'faulty cells', 'changed codes'];
  const body = rows.map((r) => [r.target, r.fault, fmtRate(r.rate), String(r.accuracy.n), pct(r.accuracy.mean), pct(r.accuracy.std), `[${pct(r.accuracy.ciLow)}, ${pct(r.accuracy.ciHigh)}]`, pct(r.accuracy.min), pct(r.accuracy.max), pct(r.sparsity.mean), r.faultyCells.toFixed(0), r.meanChangedCodes.toFixed(1)]);
  return table(head, body);
}

export function formatPaired(rows: PairedRow[]): string {
  const head = ['target', 'fault', 'rate', 'pairs', 'acc A %', 'acc B %', 'A-B (pts)', '95% CI (pts)', 'std'];
  const body = rows.map((r) => [r.target, r.fault, fmtRate(r.rate), String(r.pairs), pct(r.a), pct(r.b), pct(r.diff.mean), `[${pct(r.diff.ciLow)}, ${pct(r.diff.ciHigh)}]`, pct(r.diff.std)]);
  return table(head, body);
}

export function table(head: string[], body: string[][]): string {
  const w = head.map((h, i) => Math.max(h.length, ...body.map((r) => r[i]!.length)));
  const line = (r: string[]) => '| ' + r.map((c, i) => c.padEnd(w[i]!)).join(' | ') + ' |';
  return [line(head), '|' + w.map((x) => '-'.repeat(x + 2)).join('|') + '|', ...body.map(line)].join('\n');
}
