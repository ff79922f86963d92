// Output of `flatenn bench kernels`: the machine header, one table with the ISAs and thread counts
// side by side, the peaks, and the comparison with a saved run (--compare base.json).
import * as fs from 'node:fs';
import { describeMachine, formatLoad } from './machine';
import { SCHEMA, type KernelBenchReport, type KernelRow } from './run';

export function markdownTable(head: readonly string[], body: readonly (readonly string[])[]): string {
  const esc = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
  const lines = [`| ${head.map(esc).join(' | ')} |`, `| ${head.map(() => '---').join(' | ')} |`];
  for (const r of body) lines.push(`| ${r.map(esc).join(' | ')} |`);
  return lines.join('\n');
}

/** A rate with about 3 significant digits. */
export function fmtRate(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  if (a >= 100) return v.toFixed(0);
  if (a >= 10) return v.toFixed(1);
  if (a >= 1) return v.toFixed(2);
  return v.toPrecision(3);
}

const pct = (v: number) => `${v.toFixed(v >= 10 ? 0 : 1)}%`;

/** The table cell of one row: "rate ±rme% (share of peak)", "n/a", "= avx2" or "failed". */
export function cell(r: KernelRow | undefined, arithKernel: boolean): string {
  if (!r) return '';
  switch (r.status) {
    case 'skipped': return 'n/a';
    case 'failed': return 'failed';
    case 'same': return `= ${r.sameAs ?? 'another ISA'}`;
    case 'ok': {
      const base = `${fmtRate(r.rate!)} ±${r.rme!.toFixed(1)}%`;
      if (!arithKernel) return base;
      return `${base} (${r.percentOfPeak === null ? 'n/a' : pct(r.percentOfPeak)})`;
    }
  }
}

/** The columns of the side-by-side table: each ISA asked for, each thread count. */
function columns(rep: KernelBenchReport): { isa: string; threads: number }[] {
  const out: { isa: string; threads: number }[] = [];
  for (const i of rep.isas) for (const t of rep.threads) out.push({ isa: i.isa, threads: t });
  return out;
}

/** One line per (kernel, shape), one column per (ISA, threads). */
export function sideBySideTable(rep: KernelBenchReport): string {
  const cols = columns(rep);
  const keys: { kernel: string; shape: string; size: string; unit: string; arith: boolean }[] = [];
  const seen = new Set<string>();
  for (const r of rep.rows) {
    const k = `${r.kernel}\u0000${r.shape}`;
    if (seen.has(k)) continue;
    seen.add(k);
    keys.push({ kernel: r.kernel, shape: r.shape, size: r.size, unit: r.rateUnit, arith: r.rateUnit === 'GFLOP/s' || r.rateUnit === 'GMAC/s' });
  }
  const head = ['kernel', 'shape', 'unit', ...cols.map((c) => `${c.isa} ×${c.threads}`)];
  const body = keys.map((k) => [k.kernel, `${k.shape} (${k.size})`, k.unit,
    ...cols.map((c) => cell(rep.rows.find((r) => r.kernel === k.kernel && r.shape === k.shape && r.isa === c.isa && r.threads === c.threads), k.arith))]);
  return markdownTable(head, body);
}

export function peaksTable(rep: KernelBenchReport): string {
  if (!rep.peaks.some((p) => p.rate !== null)) return '';
  const sorted = rep.peaks.slice().sort((a, b) => a.isa.localeCompare(b.isa) || a.arith.localeCompare(b.arith) || a.threads - b.threads);
  return markdownTable(['ISA', 'arithmetic', 'threads', 'peak (yardstick)', 'probe, wall clock (all threads)', 'probe, per CPU-second of a thread', 'probe'],
    sorted.filter((p) => p.rate !== null).map((p) => [p.isa, p.arith, String(p.threads), `${fmtRate(p.rate!)} ${p.unit}`,
      p.wall === null ? '' : `${fmtRate(p.wall)} ${p.unit}`, p.perCpuSecond === null ? '' : `${fmtRate(p.perCpuSecond)} ${p.unit}`, p.source ?? '']));
}

export function headerTable(rep: KernelBenchReport): string {
  const b = rep.benchmark;
  return markdownTable(['', ''], [
    ['date', rep.date],
    ['machine', describeMachine(rep.machine)],
    ['load average 1/5/15 min (before / after)', `${formatLoad(rep.load.before)} / ${formatLoad(rep.load.after)}`],
    ['node', rep.machine.node],
    ['flatenn', `${rep.flatenn.version}${rep.flatenn.commit ? ` (commit ${rep.flatenn.commit})` : ''}`],
    ['CPU ISAs', `best ${rep.cpu.bestIsa}; AVX-512 VNNI ${rep.cpu.avx512vnni ? 'yes' : 'no'}`],
    ['timing', `${b.library} ${b.version}: at least ${b.minSamples} samples of at least ${b.minTime} s each, sampling stops after ${b.maxTime} s; ±: relative margin of error (95%)`],
  ]);
}

/** Notes of the rows that were skipped, failed, or have no peak, once each. */
export function notes(rep: KernelBenchReport): string[] {
  const out = new Set<string>();
  for (const i of rep.isas) if (i.note) out.add(`${i.isa}: ${i.note}; its columns are n/a`);
  for (const r of rep.rows) {
    if (r.status === 'failed') out.add(`${r.kernel} ${r.shape} ${r.isa} ×${r.threads} failed: ${r.note ?? ''}`);
    if (r.status === 'ok' && r.note) out.add(`${r.kernel} on ${r.isa}: ${r.note}`);
  }
  for (const p of rep.peaks) if (p.rate === null && p.note) out.add(`${p.isa} ${p.arith} peak: n/a (${p.note}), so is the % of peak of its rows`);
  return [...out];
}

/** The whole human-readable report. */
export function formatReport(rep: KernelBenchReport): string {
  const parts = [`## flatenn bench kernels\n`, headerTable(rep), '', 'Rate ±margin of error (% of the measured peak of the ISA that ran at that thread count):', '', sideBySideTable(rep)];
  const pt = peaksTable(rep);
  if (pt) parts.push('', 'Measured peaks (yardstick: the per-CPU-second rate x threads, or the wall-clock rate if higher):', '', pt);
  const n = notes(rep);
  if (n.length) parts.push('', 'Notes:', ...n.map((s) => `- ${s}`));
  return parts.join('\n');
}

// ---- --compare --------------------------------------------------------------------------------

/** A saved report that cannot be compared with (bad usage: exit 2). */
export class ReportError extends Error {
  override name = 'ReportError';
}

/** Checks a parsed report (a `--json` output of this or another flatenn version of the same schema). */
export function validateReport(doc: unknown, what = 'the report'): KernelBenchReport {
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) throw new ReportError(`${what} is not a JSON object`);
  const d = doc as Record<string, unknown>;
  if (d.schema !== SCHEMA) throw new ReportError(`${what} has schema ${JSON.stringify(d.schema)}; expected "${SCHEMA}" (the output of 'flatenn bench kernels --json')`);
  for (const k of ['flatenn', 'machine', 'load', 'cpu', 'benchmark']) {
    if (d[k] === null || typeof d[k] !== 'object' || Array.isArray(d[k])) throw new ReportError(`${what} has no "${k}" object`);
  }
  for (const k of ['isas', 'threads', 'peaks', 'rows']) if (!Array.isArray(d[k])) throw new ReportError(`${what} has no "${k}" array`);
  const load = d.load as Record<string, unknown>;
  if (!Array.isArray(load.before) || !Array.isArray(load.after)) throw new ReportError(`${what}: "load" needs "before" and "after" arrays`);
  if (typeof (d.machine as Record<string, unknown>).cpu !== 'string') throw new ReportError(`${what}: "machine.cpu" must be a string`);
  (d.rows as unknown[]).forEach((r: unknown, i: number) => {
    const row = r as Record<string, unknown>;
    if (row === null || typeof row !== 'object') throw new ReportError(`${what}: rows[${i}] is not an object`);
    for (const k of ['kernel', 'shape', 'isa', 'status']) if (typeof row[k] !== 'string') throw new ReportError(`${what}: rows[${i}].${k} must be a string`);
    if (typeof row.threads !== 'number') throw new ReportError(`${what}: rows[${i}].threads must be a number`);
    if (row.status === 'ok') {
      for (const k of ['hz', 'rme', 'rate']) if (typeof row[k] !== 'number' || !Number.isFinite(row[k] as number)) throw new ReportError(`${what}: rows[${i}].${k} must be a finite number`);
    }
  });
  return doc as KernelBenchReport;
}

export function readReport(file: string): KernelBenchReport {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new ReportError(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw new ReportError(`${file} is not valid JSON: ${(e as Error).message}`);
  }
  return validateReport(doc, file);
}

export type Verdict = 'faster' | 'slower' | 'within noise' | 'new' | 'missing' | 'not comparable';

export interface CompareRow {
  kernel: string;
  shape: string;
  isa: string;
  threads: number;
  unit: string;
  baseRate: number | null;
  rate: number | null;
  /** rate / baseRate - 1 */
  change: number | null;
  /** The two margins of error together, as a fraction of the base rate: a change beyond it is flagged. */
  margin: number | null;
  verdict: Verdict;
  note?: string;
}

export interface CompareResult {
  rows: CompareRow[];
  regressions: number;
  improvements: number;
  warnings: string[];
}

const rowKey = (r: { kernel: string; shape: string; isa: string; threads: number }) => `${r.kernel}\u0000${r.shape}\u0000${r.isa}\u0000${r.threads}`;

/**
 * Each measured row of `cur` against the row of `base` with the same kernel, shape, ISA and thread
 * count. A change counts (faster / slower) when the two rates differ by more than the sum of their
 * margins of error (95% intervals that do not overlap) and by at least `minChange` (a fraction).
 */
export function compareReports(base: KernelBenchReport, cur: KernelBenchReport, minChange = 0): CompareResult {
  const warnings: string[] = [];
  if (base.machine?.cpu !== cur.machine.cpu) warnings.push(`different CPUs: base '${base.machine?.cpu ?? '?'}', now '${cur.machine.cpu}'`);
  if (base.machine?.nproc !== undefined && base.machine.nproc !== cur.machine.nproc) warnings.push(`different CPU counts: base ${base.machine.nproc}, now ${cur.machine.nproc}`);
  const busy = (l: number[] | undefined, n: number | undefined) => !!l && l.length > 0 && n !== undefined && l[0]! > 0.75 * n;
  if (busy(base.load?.before, base.machine?.nproc)) warnings.push(`the base run started on a busy machine (load ${base.load.before[0]})`);
  if (busy(cur.load.before, cur.machine.nproc)) warnings.push(`this run started on a busy machine (load ${cur.load.before[0]})`);
  const baseRows = new Map<string, KernelRow>();
  for (const r of base.rows) if (r.status === 'ok') baseRows.set(rowKey(r), r);
  const rows: CompareRow[] = [];
  const matched = new Set<string>();
  for (const r of cur.rows) {
    if (r.status !== 'ok') continue;
    const key = rowKey(r), b = baseRows.get(key);
    const head = { kernel: r.kernel, shape: r.shape, isa: r.isa, threads: r.threads, unit: r.rateUnit };
    if (!b) { rows.push({ ...head, baseRate: null, rate: r.rate, change: null, margin: null, verdict: 'new' }); continue; }
    matched.add(key);
    if (JSON.stringify(b.dims) !== JSON.stringify(r.dims) || b.rateUnit !== r.rateUnit) {
      rows.push({ ...head, baseRate: b.rate, rate: r.rate, change: null, margin: null, verdict: 'not comparable', note: `the shape differs (base ${b.size}, now ${r.size})` });
      continue;
    }
    const moe = (r.hz! * r.rme!) / 100 + (b.hz! * b.rme!) / 100;
    const diff = r.hz! - b.hz!;
    const change = r.hz! / b.hz! - 1, margin = moe / b.hz!;
    const verdict: Verdict = Math.abs(diff) > moe && Math.abs(change) >= minChange ? (diff > 0 ? 'faster' : 'slower') : 'within noise';
    rows.push({ ...head, baseRate: b.rate, rate: r.rate, change, margin, verdict });
  }
  for (const [key, b] of baseRows) {
    if (!matched.has(key)) rows.push({ kernel: b.kernel, shape: b.shape, isa: b.isa, threads: b.threads, unit: b.rateUnit, baseRate: b.rate, rate: null, change: null, margin: null, verdict: 'missing' });
  }
  return { rows, regressions: rows.filter((r) => r.verdict === 'slower').length, improvements: rows.filter((r) => r.verdict === 'faster').length, warnings };
}

export function compareTable(c: CompareResult): string {
  const signed = (v: number) => `${v >= 0 ? '+' : ''}${(100 * v).toFixed(1)}%`;
  return markdownTable(['kernel', 'shape', 'ISA', 'threads', 'base', 'now', 'change', '± margin', 'verdict'],
    c.rows.map((r) => [r.kernel, r.shape, r.isa, String(r.threads), r.baseRate === null ? '' : `${fmtRate(r.baseRate)} ${r.unit}`,
      r.rate === null ? '' : `${fmtRate(r.rate)} ${r.unit}`, r.change === null ? '' : signed(r.change), r.margin === null ? '' : `${(100 * r.margin).toFixed(1)}%`,
      r.verdict === 'slower' ? 'SLOWER' : r.verdict + (r.note ? ` (${r.note})` : '')]));
}
