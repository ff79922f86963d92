// Checks of a results file against its own header (DESIGN §5): the header's
// settings are well formed, and every trial record lies inside them (target,
// fault type and rate listed in the header, trial index below the count and in
// the file's shard, figures in range). Two records of one trial must agree
// (then it counts once). Used on resume and by `summary`.
import { FAULT_TYPES } from './faults';
import type { ResultsHeader, TrialRecord } from './results';

const isObj = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);
const isNum = (x: unknown): x is number => typeof x === 'number' && Number.isFinite(x);

/** Throws `${path}: line 1 ...` when the header is not a complete, consistent header. */
export function checkHeader(path: string, h: ResultsHeader): void {
  const bad = (msg: string): never => { throw new Error(`${path}: line 1 (header): ${msg}`); };
  const s = h.settings as unknown;
  if (!isObj(s)) bad('settings is missing or not an object');
  const st = s as Record<string, unknown>;
  for (const k of ['model', 'modelSha256', 'layoutHash', 'arch', 'dataset'] as const) if (typeof st[k] !== 'string') bad(`settings.${k} must be a string`);
  if (!Number.isSafeInteger(st.images) || (st.images as number) < 1) bad(`settings.images must be an integer >= 1, got ${JSON.stringify(st.images)}`);
  if (!Number.isSafeInteger(st.trials) || (st.trials as number) < 1 || (st.trials as number) > 2 ** 32) bad(`settings.trials must be an integer in [1, 2^32], got ${JSON.stringify(st.trials)}`);
  if (!Number.isSafeInteger(st.seed) || (st.seed as number) < 0) bad(`settings.seed must be a non-negative integer, got ${JSON.stringify(st.seed)}`);
  if (!Array.isArray(st.faults) || st.faults.length === 0 || !st.faults.every((f) => (FAULT_TYPES as readonly unknown[]).includes(f))) bad(`settings.faults must list fault types (${FAULT_TYPES.join(', ')}), got ${JSON.stringify(st.faults)}`);
  if (new Set(st.faults as unknown[]).size !== (st.faults as unknown[]).length) bad('settings.faults lists a fault type twice');
  if (!Array.isArray(st.rates) || st.rates.length === 0 || !st.rates.every((r) => isNum(r) && r >= 0 && r <= 1)) bad(`settings.rates must list rates in [0, 1], got ${JSON.stringify(st.rates)}`);
  if (new Set(st.rates as unknown[]).size !== (st.rates as unknown[]).length) bad('settings.rates lists a rate twice');
  if (!Array.isArray(st.targets) || st.targets.length === 0 || !st.targets.every((t) => typeof t === 'string')) bad(`settings.targets must list target names, got ${JSON.stringify(st.targets)}`);
  if (st.sampling !== 'exact' && st.sampling !== 'bernoulli') bad(`settings.sampling must be exact or bernoulli, got ${JSON.stringify(st.sampling)}`);
  if (st.rateUnit !== 'bit' && st.rateUnit !== 'weight') bad(`settings.rateUnit must be bit or weight, got ${JSON.stringify(st.rateUnit)}`);
  const sh = h.shard as unknown;
  if (!isObj(sh) || !Number.isSafeInteger(sh.count) || (sh.count as number) < 1 || !Number.isSafeInteger(sh.index) || (sh.index as number) < 0 || (sh.index as number) >= (sh.count as number)) {
    bad(`shard must be {index, count} with 0 <= index < count, got ${JSON.stringify(sh)}`);
  }
}

function canonical(v: unknown): string {
  if (Array.isArray(v)) return '[' + v.map(canonical).join(',') + ']';
  if (v && typeof v === 'object') return '{' + Object.keys(v).sort().map((k) => JSON.stringify(k) + ':' + canonical((v as Record<string, unknown>)[k])).join(',') + '}';
  return JSON.stringify(v);
}

/**
 * Checks record i (file line `line`) against the header; returns its key.
 * Throws `${path}: line N: ...` naming the field and the rule.
 */
export function checkRecord(path: string, h: ResultsHeader, r: unknown, line: number): string {
  const bad = (msg: string): never => { throw new Error(`${path}: line ${line}: ${msg}`); };
  if (!isObj(r)) bad('not a trial record (not a JSON object)');
  const o = r as Record<string, unknown>;
  if (o.type !== 'trial') bad(`not a trial record (type ${JSON.stringify(o.type)})`);
  const s = h.settings;
  if (typeof o.target !== 'string' || !s.targets.includes(o.target)) bad(`target ${JSON.stringify(o.target)} is not one of the header's targets (${s.targets.join(', ')})`);
  if (typeof o.fault !== 'string' || !(s.faults as string[]).includes(o.fault)) bad(`fault ${JSON.stringify(o.fault)} is not one of the header's fault types (${s.faults.join(', ')})`);
  if (!isNum(o.rate) || !s.rates.includes(o.rate)) bad(`rate ${JSON.stringify(o.rate)} is not one of the header's rates (${s.rates.join(', ')})`);
  if (!Number.isSafeInteger(o.trial) || (o.trial as number) < 0 || (o.trial as number) >= s.trials) bad(`trial ${JSON.stringify(o.trial)} is not an index in [0, ${s.trials}) (the header's trial count)`);
  if ((o.trial as number) % h.shard.count !== h.shard.index) bad(`trial ${o.trial as number} does not belong to the file's shard ${h.shard.index}/${h.shard.count}`);
  for (const k of ['accuracy', 'sparsity', 'sparsityWeighted'] as const) if (!isNum(o[k]) || (o[k] as number) < 0 || (o[k] as number) > 1) bad(`${k} ${JSON.stringify(o[k])} is not a number in [0, 1]`);
  if (!isNum(o.loss) || (o.loss as number) < 0) bad(`loss ${JSON.stringify(o.loss)} is not a finite number >= 0`);
  for (const k of ['faultyCells', 'changedCodes'] as const) if (!Number.isSafeInteger(o[k]) || (o[k] as number) < 0) bad(`${k} ${JSON.stringify(o[k])} is not an integer >= 0`);
  return `${o.target as string}|${o.fault as string}|${o.rate as number}|${o.trial as number}`;
}

/**
 * Checks every record and drops exact duplicates (a record written twice);
 * two different records of one trial are refused.
 */
export function checkRecords(path: string, h: ResultsHeader, records: TrialRecord[], firstLine = 2, lines?: number[]): TrialRecord[] {
  checkHeader(path, h);
  const seen = new Map<string, { canon: string; line: number }>();
  const out: TrialRecord[] = [];
  records.forEach((r, i) => {
    const line = lines?.[i] ?? firstLine + i; // `lines`: the file lines of the records (clean lines in between)
    const k = checkRecord(path, h, r, line);
    const c = canonical(r);
    const prev = seen.get(k);
    if (prev) {
      if (prev.canon !== c) throw new Error(`${path}: line ${line}: trial ${k} has two different records (lines ${prev.line} and ${line}); the file is corrupt or was written by two campaigns`);
      return;
    }
    seen.set(k, { canon: c, line });
    out.push(r);
  });
  return out;
}
