// Campaign result files (DESIGN §5): JSON Lines, a header line with the
// settings and model hash, then one line per finished trial, appended and
// flushed as each trial ends. Summaries per (target, fault type, rate).
import * as fs from 'node:fs';
import { summarize, type Summary } from '../stats/t';
import type { FaultType, RateUnit, Sampling } from './faults';
import { checkHeader, checkRecords } from './results-check';

export const RESULTS_FORMAT = 'flatenn.campaign';
export const RESULTS_VERSION = 1;
/**
 * What a trial computes (DESIGN §1-§2). 1: the input layer's mean term taken from the clean codes, raw-0
 * padding only (results written before the field existed). 2: derived from the codes in memory, so a
 * faulty first-layer code means what it means in PyTorch; normalised-zero padding where the model says so.
 */
/** 2: DESIGN §1's input rule (mean term from the codes in memory, padding by the model); 3: float64 epilogues. */
export const SEMANTICS = 3;

/** Everything that determines the trials' results (a resumed or merged file must match it exactly). */
export interface CampaignSettings {
  model: string;
  modelSha256: string;
  layoutHash: string;
  arch: string;
  dataset: string;
  split: 'test';
  images: number;
  /** sha256 of the test images and labels evaluated (testDataHash); absent in files written before it existed. */
  dataSha256?: string;
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

/**
 * The clean (fault-free) model's result on the campaign's images: written once per target by each run
 * (shard) before its trials, instead of evaluating the unchanged model once per trial at rate 0. Summaries
 * take their 0% rows from it. Fields as in a trial record, plus the number of images.
 */
export interface CleanRecord {
  type: 'clean';
  target: string;
  accuracy: number;
  loss: number;
  sparsity: number;
  sparsityWeighted: number;
  images: number;
}

/** Checks a clean record against the header (target listed, figures in range, the header's image count; one per target). */
function checkClean(path: string, h: ResultsHeader, c: CleanRecord, line: number, seen: CleanRecord[]): CleanRecord {
  checkHeader(path, h);
  const bad = (msg: string): never => { throw new Error(`${path}: line ${line}: clean record: ${msg}`); };
  const num = (x: unknown) => typeof x === 'number' && Number.isFinite(x);
  if (typeof c.target !== 'string' || !h.settings.targets.includes(c.target)) bad(`target ${JSON.stringify(c.target)} is not one of the header's targets (${h.settings.targets.join(', ')})`);
  for (const k of ['accuracy', 'sparsity', 'sparsityWeighted'] as const) if (!num(c[k]) || c[k] < 0 || c[k] > 1) bad(`${k} ${JSON.stringify(c[k])} is not a number in [0, 1]`);
  if (!num(c.loss) || c.loss < 0) bad(`loss ${JSON.stringify(c.loss)} is not a finite number >= 0`);
  if (c.images !== h.settings.images) bad(`images ${JSON.stringify(c.images)} differs from the header's ${h.settings.images}`);
  const prev = seen.find((p) => p.target === c.target);
  if (prev && JSON.stringify(prev) !== JSON.stringify(c)) bad(`a second, different clean record of target ${c.target}`);
  return c;
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
  return `semantics version ${sa} vs ${sb}: the trials were computed under different rules (DESIGN §1-§2: from version 2 on, the input layer's mean term follows the codes in memory and padding follows the model; from version 3 on, the engine's epilogues are float64), so they cannot be resumed, merged or paired; re-run the older campaign with this version`;
}

/** Names the first setting that differs ('' when equal). The model path may differ if its hash is the same. */
export function settingsDiff(a: CampaignSettings, b: CampaignSettings): string {
  const sem = semanticsMismatch(a, b);
  if (sem) return sem;
  for (const k of Object.keys({ ...a, ...b }) as (keyof CampaignSettings)[]) {
    if (k === 'model') continue;
    if (k === 'dataSha256' && (a[k] === undefined || b[k] === undefined)) continue; // older files lack it
    if (canonical(a[k]) !== canonical(b[k])) return `${k}: ${canonical(a[k])} vs ${canonical(b[k])}`;
  }
  return '';
}

export interface ResultsFile {
  header: ResultsHeader;
  /** The trial records (type 'trial'). */
  records: TrialRecord[];
  /** The clean-model records (type 'clean'), one per target; none in files written before they existed. */
  clean: CleanRecord[];
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
  if (header === null || typeof header !== 'object' || header.type !== 'header' || header.format !== RESULTS_FORMAT) throw new Error(`${path}: not a flatenn campaign results file (line 1 is not a ${RESULTS_FORMAT} header)`);
  if (header.version !== RESULTS_VERSION) throw new Error(`${path}: results version ${header.version} is not supported`);
  if (header.settings && typeof header.settings === 'object' && header.settings.semantics === undefined) header.settings.semantics = 1;
  let records: TrialRecord[] = [];
  const recordLines: number[] = [];
  const clean: CleanRecord[] = [];
  for (let i = 1; i < lines.length; i++) {
    let r: TrialRecord | CleanRecord;
    try { r = JSON.parse(lines[i]!) as TrialRecord | CleanRecord; } catch { throw new Error(`${path}: line ${i + 1} is not valid JSON`); }
    if (r && typeof r === 'object' && (r as { type?: unknown }).type === 'clean') {
      const c = checkClean(path, header, r as CleanRecord, i + 1, clean);
      if (!clean.some((p) => p.target === c.target)) clean.push(c);
    }
    else {
      records.push(r as TrialRecord);
      recordLines.push(i + 1);
    }
  }
  records = checkRecords(path, header, records, 2, recordLines);
  return { header, records, clean, validBytes: Buffer.byteLength(complete), tornTail };
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
  /** True for a 0% row taken from the clean record (accuracy.n is then 1: one evaluation, no trials). */
  clean?: boolean;
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
export function mergeResults(files: { path: string; file: ResultsFile }[]): { settings: CampaignSettings; records: TrialRecord[]; clean: CleanRecord[] } {
  if (files.length === 0) throw new Error('no results files');
  const settings = files[0]!.file.header.settings;
  const byKey = new Map<string, TrialRecord>();
  const clean = new Map<string, CleanRecord>();
  for (const { path, file } of files) {
    const d = settingsDiff(settings, file.header.settings);
    if (d) throw new Error(`${path}: settings differ from ${files[0]!.path} (${d})`);
    for (const r of file.records) {
      const k = trialKey(r);
      const prev = byKey.get(k);
      if (prev && canonical(prev) !== canonical(r)) throw new Error(`${path}: trial ${k} disagrees with another file's record of it`);
      byKey.set(k, r);
    }
    for (const c of file.clean ?? []) {
      const prev = clean.get(c.target);
      if (prev && canonical(prev) !== canonical(c)) throw new Error(`${path}: the clean record of target ${c.target} disagrees with another file's`);
      clean.set(c.target, c);
    }
  }
  return { settings, records: [...byKey.values()], clean: [...clean.values()] };
}

/** Rows per (target, fault type, rate); a 0% rate without trial records gets its row from the clean record. */
export function summaryRows(settings: CampaignSettings, records: TrialRecord[], clean: CleanRecord[] = []): SummaryRow[] {
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
  if (settings.rates.includes(0)) {
    for (const c of clean) {
      for (const fault of settings.faults) {
        if (groups.has(`${c.target}|${fault}|0`)) continue; // an older file: trials at rate 0
        rows.push({ target: c.target, fault, rate: 0, clean: true, accuracy: summarize([c.accuracy]), sparsity: summarize([c.sparsity]), faultyCells: 0, meanChangedCodes: 0 });
      }
    }
  }
  return rows.sort(cmpRows(settings));
}

export interface PairedRow { target: string; fault: FaultType; rate: number; pairs: number; diff: Summary; a: number; b: number }

/** Paired differences a - b of accuracy per (target, type, rate) over the trials both files have. */
export function pairedRows(a: { settings: CampaignSettings; records: TrialRecord[]; clean?: CleanRecord[] }, b: { settings: CampaignSettings; records: TrialRecord[]; clean?: CleanRecord[] }): PairedRow[] {
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
  // the 0% rows of campaigns with clean records: the two clean models, one "pair"
  if (a.settings.rates.includes(0) && b.settings.rates.includes(0)) {
    const bc = new Map((b.clean ?? []).map((c) => [c.target, c]));
    for (const ca of a.clean ?? []) {
      const cb = bc.get(ca.target);
      if (!cb) continue;
      for (const fault of a.settings.faults) {
        if (groups.has(`${ca.target}|${fault}|0`) || !b.settings.faults.includes(fault)) continue;
        rows.push({ target: ca.target, fault, rate: 0, pairs: 1, diff: summarize([ca.accuracy - cb.accuracy]), a: ca.accuracy, b: cb.accuracy });
      }
    }
  }
  return rows.sort(cmpRows(a.settings));
}

const pct = (x: number, d = 2) => (Number.isFinite(x) ? (100 * x).toFixed(d) : 'n/a');
export const fmtRate = (r: number) => `${+(100 * r).toPrecision(6)}%`;

/** The summary table `flatenn summary` / `inject` print (Markdown-style; percentages; 0% rows from clean records say 'clean'). */
export function formatSummary(rows: SummaryRow[]): string {
  const head = ['target', 'fault', 'rate', 'trials', 'acc mean %', 'std', '95% CI', 'min', 'max', 'sparsity %', 'faulty cells', 'changed codes'];
  const body = rows.map((r) => [r.target, r.fault, fmtRate(r.rate), r.clean ? 'clean' : String(r.accuracy.n), pct(r.accuracy.mean), pct(r.accuracy.std), `[${pct(r.accuracy.ciLow)}, ${pct(r.accuracy.ciHigh)}]`, pct(r.accuracy.min), pct(r.accuracy.max), pct(r.sparsity.mean), r.faultyCells.toFixed(0), r.meanChangedCodes.toFixed(1)]);
  return table(head, body);
}

/** The paired-difference table `flatenn summary --baseline` prints (Markdown-style; percentages). */
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
