// The paper's claims, checked against a study's results point by point: which hold,
// which do not, with the numbers and 95% intervals behind each verdict, per rate unit.
// Nothing here is tuned: a verdict follows from the sign of an interval.
import { summarize, type Summary } from '../stats/t';
import { gainRows, groupName, orderGroups, rateTxt, seedOf, type GainRow, type ReportInputs } from './data';

/** 'holds': the interval lies on the claimed side of 0; 'opposite': on the other side; 'inconclusive': it spans 0. */
export type Verdict = 'holds' | 'opposite' | 'inconclusive' | 'n/a';

export interface ClaimCheck {
  id: string;
  /** The claim as the paper states it. */
  claim: string;
  /** 'bit', 'weight', or '' where the rate unit plays no part (clean sparsity, sharpness). */
  unit: string;
  /** One verdict per fault type (or one, keyed '', for unit-free claims). */
  parts: { fault: string; verdict: Verdict; text: string }[];
  /** holds / opposite / inconclusive on every part, 'mixed' otherwise. */
  verdict: Verdict | 'mixed';
}

const pts = (x: number) => (Number.isFinite(x) ? (100 * x).toFixed(2) : 'n/a');
const signed = (x: number) => (x >= 0 ? '+' : '') + pts(x);

function verdictOf(s: Summary, sign: 1 | -1): Verdict {
  if (!(s.n >= 2)) return 'n/a';
  const lo = sign * (sign > 0 ? s.ciLow : s.ciHigh), hi = sign * (sign > 0 ? s.ciHigh : s.ciLow);
  if (lo > 0) return 'holds';
  if (hi < 0) return 'opposite';
  return 'inconclusive';
}

function overall(parts: ClaimCheck['parts']): ClaimCheck['verdict'] {
  const v = [...new Set(parts.map((p) => p.verdict))];
  if (!v.length) return 'n/a';
  return v.length === 1 ? v[0]! : 'mixed';
}

/** A paired gain A - B at the top non-zero rate, per fault type; sign +1 if the claim is A > B, -1 if A < B. */
function gainClaim(rows: GainRow[], a: string, b: string, unit: string, sign: 1 | -1, id: string, claim: string): ClaimCheck | null {
  const row = rows.find((r) => r.a === a && r.b === b && r.unit === unit);
  if (!row) return null;
  const parts = row.cells.map((c) => {
    const nz = c.rates.filter((r) => r.rate > 0);
    if (!nz.length) return { fault: c.fault, verdict: 'n/a' as Verdict, text: 'no faulty trials' };
    const top = nz[nz.length - 1]!;
    const v = verdictOf(top.diff, sign);
    const range = nz.length > 1 ? `; over ${nz.map((r) => rateTxt(r.rate)).join(', ')}: ${nz.map((r) => signed(r.diff.mean)).join(', ')}` : '';
    return { fault: c.fault, verdict: v, text: `${signed(top.diff.mean)} pts [${signed(top.diff.ciLow)}, ${signed(top.diff.ciHigh)}] at ${rateTxt(top.rate)} (${top.pairs} paired trials, seeds ${row.seeds.join(',')})${range}` };
  });
  return { id, claim, unit, parts, verdict: overall(parts) };
}

/** Sharpness per model group and training seed, from the 1D landscapes. */
function sharpnessBySeed(inp: ReportInputs): Map<string, Map<number, number>> {
  const out = new Map<string, Map<number, number>>();
  for (const l of inp.landscapes) {
    if (l.data.dim !== 1) continue;
    for (const m of l.data.models) {
      const { group, seed } = seedOf(m.label);
      if (!out.has(group)) out.set(group, new Map());
      out.get(group)!.set(seed, m.sharpness);
    }
  }
  return out;
}

/** Per-seed values of a clean-model quantity (from the campaigns' clean records, bit unit). */
function cleanBySeed(inp: ReportInputs, what: 'sparsity' | 'accuracy'): Map<string, Map<number, number>> {
  const out = new Map<string, Map<number, number>>();
  for (const c of inp.campaigns) {
    if (c.kind !== 'all' || c.settings.rateUnit !== 'bit') continue;
    const z = c.records.filter((r) => r.rate === 0);
    if (!z.length) continue;
    if (!out.has(c.group)) out.set(c.group, new Map());
    out.get(c.group)!.set(c.seed, z.reduce((s, r) => s + r[what], 0) / z.length);
  }
  return out;
}

/** A per-seed comparison A - B of a model quantity (seeds both have); the interval is over seeds. */
function seedClaim(by: Map<string, Map<number, number>>, a: string, b: string, id: string, claim: string, what: string, fmt: (x: number) => string): ClaimCheck | null {
  const A = by.get(a), B = by.get(b);
  if (!A || !B) return null;
  const seeds = [...A.keys()].filter((s) => B.has(s)).sort((x, y) => x - y);
  if (!seeds.length) return null;
  const d = seeds.map((s) => A.get(s)! - B.get(s)!);
  const s = summarize(d);
  // with one seed there is no interval: the verdict is the sign on that seed, and the text says so
  const v: Verdict = seeds.length >= 2 ? verdictOf(s, 1) : d[0]! > 0 ? 'holds' : d[0]! < 0 ? 'opposite' : 'inconclusive';
  const per = seeds.map((k) => `seed ${k}: ${fmt(A.get(k)!)} vs ${fmt(B.get(k)!)}`).join('; ');
  const ci = seeds.length >= 2 ? ` [${fmt(s.ciLow)}, ${fmt(s.ciHigh)}] over ${seeds.length} seeds` : ' (one seed: no interval)';
  return { id, claim, unit: '', parts: [{ fault: '', verdict: v, text: `${groupName(a)} − ${groupName(b)} ${what}: mean ${fmt(s.mean)}${ci}; ${per}` }], verdict: v };
}

/**
 * The paper's claims against the results: sparsity rise; AS less fault-tolerant than standard; SAQ gains for
 * standard and for AS; SAQ-AS above conventional standard at the top rate; AS has the sharper minimum; SAQ against
 * the equal-schedule controls. Fault-rate claims use the paired gain at the top non-zero rate of each rate unit.
 */
export function claimChecks(inp: ReportInputs): ClaimCheck[] {
  const out: ClaimCheck[] = [];
  const push = (c: ClaimCheck | null) => { if (c) out.push(c); };
  push(seedClaim(cleanBySeed(inp, 'sparsity'), 'as', 'standard', 'sparsity-rise', 'AS training raises activation sparsity (clean model)', 'clean sparsity (pts)', pts));
  push(seedClaim(sharpnessBySeed(inp), 'as', 'standard', 'as-sharper', 'AS models sit in a sharper minimum than standard ones', 'sharpness', (x) => x.toFixed(4)));
  const rows = gainRows(inp.campaigns);
  for (const unit of ['bit', 'weight']) {
    push(gainClaim(rows, 'as', 'standard', unit, -1, 'as-less-tolerant', 'AS models are less fault-tolerant than standard ones (AS − standard < 0 under faults)'));
    push(gainClaim(rows, 'saq', 'standard', unit, 1, 'saq-standard', 'SAQ improves the fault tolerance of standard models (SAQ − standard > 0)'));
    push(gainClaim(rows, 'saq-as', 'as', unit, 1, 'saq-as', 'SAQ improves the fault tolerance of AS models (SAQ-AS − AS > 0)'));
    push(gainClaim(rows, 'saq-as', 'standard', unit, 1, 'saq-as-vs-standard', 'SAQ-AS is above the conventional standard model at the top fault rate'));
    push(gainClaim(rows, 'saq', 'control', unit, 1, 'saq-vs-control', 'SAQ beats a conventional model on the same (shorter) schedule (not in the paper: the equal-schedule control)'));
    push(gainClaim(rows, 'saq-as', 'control-as', unit, 1, 'saq-as-vs-control', 'SAQ-AS beats a conventional AS model on the same schedule (equal-schedule control)'));
  }
  return out;
}

/** The claims as a Markdown table (the report writes it to claims.md for READMEs and notes). */
export function claimsMarkdown(cs: ClaimCheck[]): string {
  const lines = ['| claim | rate unit | verdict | evidence (95% intervals) |', '|---|---|---|---|'];
  for (const c of cs) {
    const ev = c.parts.map((p) => `${p.fault ? `**${p.fault}** ${p.verdict}: ` : ''}${p.text}`).join('<br>');
    lines.push(`| ${c.claim} | ${c.unit || '—'} | **${c.verdict}** | ${ev} |`);
  }
  return lines.join('\n') + '\n\nVerdicts: *holds* = the 95% interval lies on the claimed side of 0; *opposite* = on the other side; *inconclusive* = it spans 0; *mixed* = the fault types disagree. Fault-rate claims: paired gain (same fault maps, seed by seed) at the top rate, in percentage points; sparsity and sharpness: per seed, interval over seeds.\n';
}

/** The table of gains (paper's table) as Markdown: min ... max over the non-zero rates, per rate unit and fault type. */
export function gainsMarkdown(rows: GainRow[]): string {
  const out: string[] = [];
  for (const unit of ['bit', 'weight']) {
    const rs = rows.filter((r) => r.unit === unit);
    if (!rs.length) continue;
    const faults = [...new Set(rs.flatMap((r) => r.cells.map((c) => c.fault)))];
    out.push(`Rate unit: **${unit}**`, '', `| comparison (A − B) | seeds | ${faults.map((f) => `${f}: min … max (pts) [95% CI]`).join(' | ')} |`, `|---|---|${faults.map(() => '---').join('|')}|`);
    for (const r of rs) {
      const cell = (f: string) => {
        const c = r.cells.find((x) => x.fault === f);
        if (!c?.min || !c.max) return 'n/a';
        return `${signed(c.min.diff.mean)} [${signed(c.min.diff.ciLow)}, ${signed(c.min.diff.ciHigh)}] @${rateTxt(c.min.rate)} … ${signed(c.max.diff.mean)} [${signed(c.max.diff.ciLow)}, ${signed(c.max.diff.ciHigh)}] @${rateTxt(c.max.rate)}`;
      };
      out.push(`| ${r.title} | ${r.seeds.join(',')} | ${faults.map(cell).join(' | ')} |`);
    }
    out.push('');
  }
  return out.join('\n');
}

/** The final models of a study as a Markdown table: per model, its seeds, schedule, test accuracy and sparsity (mean ± sd over seeds) and sharpness. */
export function modelsMarkdown(inp: ReportInputs): string {
  const s = inp.study;
  if (!s) return '';
  const sharp = sharpnessBySeed(inp);
  const finals = s.runs.filter((r) => r.role === 'final' && !r.collapsed);
  const groups = orderGroups(finals.map((r) => r.group));
  const ms = (xs: number[], f: (x: number) => string) => {
    if (!xs.length) return 'n/a';
    const m = summarize(xs);
    return xs.length > 1 ? `${f(m.mean)} ± ${f(m.std)}` : f(m.mean);
  };
  const lines = [`| model | seeds | epochs | λ | ρ | test accuracy % | activation sparsity % | sharpness |`, '|---|---|---|---|---|---|---|---|'];
  for (const g of groups) {
    const rs = finals.filter((r) => r.group === g).sort((a, b) => a.seed - b.seed);
    const acc = rs.map((r) => r.testAccuracy).filter((x): x is number => x !== null), sp = rs.map((r) => r.testSparsity).filter((x): x is number => x !== null);
    lines.push(`| ${groupName(g)} | ${rs.map((r) => r.seed).join(',')} | ${[...new Set(rs.map((r) => r.epochs))].join('/')} | ${rs[0]!.actL1} | ${rs[0]!.saqRho} | ${ms(acc, (x) => (100 * x).toFixed(2))} | ${ms(sp, (x) => (100 * x).toFixed(2))} | ${ms([...(sharp.get(g)?.values() ?? [])], (x) => x.toFixed(4))} |`);
  }
  return lines.join('\n') + '\n\nTest accuracy and activation sparsity (zero 4-bit activation codes, mean over the ReLU layers) of the fake-quant float models on the test set, mean ± sd over seeds; sharpness from the 1D landscapes (DESIGN §4). Collapsed runs are left out.\n';
}
