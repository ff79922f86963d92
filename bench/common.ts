// Shared pieces of flatenn's end-to-end benchmarks: the row type, timing
// statistics, the PyTorch side (bench/torch_lenet.py under Debian's
// /usr/bin/python3), a small argument parser and markdown tables.
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { markdownTable } from '../src/benchkit/report';

// Shared with `flatenn bench kernels` (src/benchkit/): the machine and load header, tables.
export { loadWarning } from '../src/benchkit/machine';
export { markdownTable };

/** One measurement, flatenn beside PyTorch where both exist. */
export interface Row {
  /** The benchmark module: 'train', 'campaign', 'gemm', ... */
  bench: string;
  /** What was measured, e.g. 'conventional step'. */
  case: string;
  /** The unit of `flatenn` and `pytorch`, e.g. 'images/s'. */
  metric: string;
  flatenn?: number;
  pytorch?: number;
  /** flatenn / pytorch (for a rate: how many times faster flatenn is). */
  ratio?: number;
  /** The goal, in words ('>= 2x PyTorch'). */
  goal?: string;
  /** Whether the goal was met (absent when it could not be judged). */
  pass?: boolean;
  threads?: number;
  notes?: string;
  [extra: string]: unknown;
}

/** Repository root (this file runs from dist/bench/). */
export const ROOT = path.resolve(__dirname, '..', '..');
export const TORCH_SCRIPT = path.join(ROOT, 'bench', 'torch_lenet.py');
/** Debian's python3-torch imports only under the system interpreter. */
export const DEFAULT_PYTHON = process.env.FLATENN_BENCH_PYTHON ?? '/usr/bin/python3';

export function median(xs: readonly number[]): number {
  if (xs.length === 0) throw new RangeError('median of no samples');
  const s = xs.slice().sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export function nowSeconds(): number {
  return Number(process.hrtime.bigint()) / 1e9;
}

/** Runs fn `warmup` times untimed, then `n` times timed; returns the seconds of each timed call. */
export async function timeCalls(warmup: number, n: number, fn: (i: number) => unknown): Promise<number[]> {
  for (let i = 0; i < warmup; i++) await fn(i);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = nowSeconds();
    await fn(warmup + i);
    out.push(nowSeconds() - t0);
  }
  return out;
}

export interface TorchResult {
  ok: boolean;
  /** The parsed JSON object the script printed (when ok). */
  data?: Record<string, unknown>;
  /** Why there is no result (when not ok). */
  error?: string;
  command: string;
}

/** Runs bench/torch_lenet.py with the given arguments; never throws. */
export function runTorch(args: string[], opts: { python?: string; timeoutMs?: number } = {}): Promise<TorchResult> {
  const python = opts.python ?? DEFAULT_PYTHON;
  const command = [python, path.relative(process.cwd(), TORCH_SCRIPT) || TORCH_SCRIPT, ...args].join(' ');
  if (!fs.existsSync(TORCH_SCRIPT)) return Promise.resolve({ ok: false, error: `${TORCH_SCRIPT} not found`, command });
  return new Promise((resolve) => {
    execFile(python, [TORCH_SCRIPT, ...args], { timeout: opts.timeoutMs ?? 30 * 60 * 1000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err) {
        const why = (stderr.trim().split('\n').pop() ?? '') || err.message;
        resolve({ ok: false, error: `PyTorch run failed: ${why}`, command });
        return;
      }
      const line = stdout.trim().split('\n').pop() ?? '';
      try {
        resolve({ ok: true, data: JSON.parse(line) as Record<string, unknown>, command });
      } catch {
        resolve({ ok: false, error: `PyTorch run printed no JSON (got '${line.slice(0, 200)}')`, command });
      }
    });
  });
}

/** Reads a numeric field at a dotted path of a PyTorch result. */
export function field(data: Record<string, unknown> | undefined, dotted: string): number | undefined {
  let v: unknown = data;
  for (const k of dotted.split('.')) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<string, unknown>)[k];
  }
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

/** The error message of anything thrown. */
export function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

// ---- command-line arguments -------------------------------------------------

export interface ArgSpec {
  [name: string]: 'boolean' | 'number' | 'string';
}

/** Parses `--name value`, `--name=value` and boolean `--flag`; throws RangeError on anything unknown. */
export function parseArgs(argv: readonly string[], spec: ArgSpec): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('--')) throw new RangeError(`unexpected argument '${a}'`);
    const eq = a.indexOf('=');
    const name = eq >= 0 ? a.slice(2, eq) : a.slice(2);
    const kind = spec[name];
    if (!kind) throw new RangeError(`unknown option --${name} (options: ${Object.keys(spec).map((k) => '--' + k).join(', ')})`);
    if (kind === 'boolean') {
      if (eq >= 0) throw new RangeError(`--${name} takes no value`);
      out[name] = true;
      continue;
    }
    let v: string | undefined = eq >= 0 ? a.slice(eq + 1) : argv[++i];
    if (v === undefined) throw new RangeError(`--${name} needs a value`);
    if (kind === 'number') {
      const n = Number(v);
      if (v.trim() === '' || !Number.isFinite(n)) throw new RangeError(`--${name} needs a number, got '${v}'`);
      out[name] = n;
    } else out[name] = v;
  }
  return out;
}

export function positiveInt(v: unknown, name: string, dflt: number): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw new RangeError(`${name} must be an integer >= 1, got ${String(v)}`);
  return v;
}

export function nonNegativeInt(v: unknown, name: string, dflt: number): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw new RangeError(`${name} must be an integer >= 0, got ${String(v)}`);
  return v;
}

// ---- output -----------------------------------------------------------------

/** A number with about 4 significant digits, no exponent for ordinary sizes. */
export function fmt(v: unknown): string {
  if (v === undefined || v === null) return '';
  if (typeof v === 'boolean') return v ? 'yes' : 'no';
  if (typeof v !== 'number') return String(v);
  if (!Number.isFinite(v)) return String(v);
  if (Number.isInteger(v)) return String(v);
  const a = Math.abs(v);
  if (a >= 1000) return v.toFixed(0);
  if (a >= 100) return v.toFixed(1);
  if (a >= 1) return v.toFixed(2);
  if (a === 0) return '0';
  return v.toPrecision(3);
}

const PREFERRED = ['case', 'metric', 'flatenn', 'pytorch', 'ratio', 'goal', 'pass', 'threads', 'notes'];

/** Rows as a markdown table: the usual columns, then every other scalar field of a row as 'name value' in one 'details' column. */
export function rowsTable(rows: readonly Record<string, unknown>[]): string {
  const keys = PREFERRED.filter((k) => rows.some((r) => r[k] !== undefined));
  const head = keys.map((k) => (k === 'pass' ? 'goal met' : k === 'ratio' ? 'flatenn/PyTorch' : k === 'pytorch' ? 'PyTorch' : k));
  const details = (r: Record<string, unknown>) => Object.keys(r)
    .filter((k) => k !== 'bench' && !PREFERRED.includes(k) && r[k] !== undefined && r[k] !== null && typeof r[k] !== 'object')
    .map((k) => `${k} ${fmt(r[k])}`).join(', ');
  const withDetails = rows.some((r) => details(r) !== '');
  return markdownTable(withDetails ? [...head, 'details'] : head, rows.map((r) => {
    const cells = keys.map((k) => fmt(r[k]));
    return withDetails ? [...cells, details(r)] : cells;
  }));
}

/** Prints rows grouped by bench, each group as a titled markdown table. */
export function printRows(rows: readonly Row[], log: (s: string) => void = console.log): void {
  const groups = new Map<string, Row[]>();
  for (const r of rows) {
    const g = groups.get(r.bench) ?? [];
    g.push(r);
    groups.set(r.bench, g);
  }
  for (const [name, g] of groups) log(`\n### ${name}\n\n${rowsTable(g)}\n`);
}
