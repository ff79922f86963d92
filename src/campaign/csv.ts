// CSV forms of campaign results (`flatenn summary --csv`, `--records-only`), for
// spreadsheets and pandas: one header line, comma-separated, '.' decimals,
// fractions (not percentages), RFC 4180 quoting where a field needs it.
import type { PairedRow, SummaryRow, TrialRecord } from './results';

function field(v: string | number | undefined): string {
  if (v === undefined) return '';
  const s = typeof v === 'number' ? (Number.isFinite(v) ? String(v) : '') : v;
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

function csv(head: string[], rows: (string | number | undefined)[][]): string {
  return [head.join(','), ...rows.map((r) => r.map(field).join(','))].join('\n') + '\n';
}

/** The summary table as CSV: one row per (target, fault, rate); accuracies and sparsity as fractions; `source` is 'clean' for 0% rows taken from the clean record. */
export function summaryCsv(rows: SummaryRow[]): string {
  return csv(
    ['target', 'fault', 'rate', 'source', 'trials', 'acc_mean', 'acc_std', 'acc_ci95_low', 'acc_ci95_high', 'acc_min', 'acc_max', 'sparsity_mean', 'faulty_cells', 'changed_codes_mean'],
    rows.map((r) => [r.target, r.fault, r.rate, r.clean ? 'clean' : 'trials', r.accuracy.n, r.accuracy.mean, r.accuracy.std, r.accuracy.ciLow, r.accuracy.ciHigh, r.accuracy.min, r.accuracy.max, r.sparsity.mean, r.faultyCells, r.meanChangedCodes]),
  );
}

/** Paired differences (A - B) as CSV. */
export function pairedCsv(rows: PairedRow[]): string {
  return csv(
    ['target', 'fault', 'rate', 'pairs', 'acc_a_mean', 'acc_b_mean', 'diff_mean', 'diff_std', 'diff_ci95_low', 'diff_ci95_high'],
    rows.map((r) => [r.target, r.fault, r.rate, r.pairs, r.a, r.b, r.diff.mean, r.diff.std, r.diff.ciLow, r.diff.ciHigh]),
  );
}

/** Trial records as CSV, one row per trial, columns in the record's field order. */
export function recordsCsv(records: TrialRecord[]): string {
  const head = ['type', 'target', 'fault', 'rate', 'trial', 'accuracy', 'loss', 'sparsity', 'sparsityWeighted', 'faultyCells', 'changedCodes'] as const;
  return csv([...head], records.map((r) => head.map((k) => r[k])));
}
