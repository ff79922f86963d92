// Shared pieces of flatenn's end-to-end benchmarks: the row type, timing
// statistics, the PyTorch side (bench/torch_lenet.py and bench/torch_resnet18.py
// under Debian's /usr/bin/python3), a small argument parser and markdown tables.
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
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
/** The ResNet-18 twin (bench/resnet18.ts); it imports torch_lenet.py's fake quantisation. */
export const TORCH_RESNET18_SCRIPT = path.join(ROOT, 'bench', 'torch_resnet18.py');
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

/** Runs bench/torch_lenet.py (or `opts.script`) with the given arguments; never throws. */
export function runTorch(args: string[], opts: { python?: string; script?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<TorchResult> {
  const python = opts.python ?? DEFAULT_PYTHON;
  const script = opts.script ?? TORCH_SCRIPT;
  const envNote = opts.env?.LD_LIBRARY_PATH ? `LD_LIBRARY_PATH=${opts.env.LD_LIBRARY_PATH} ` : '';
  const command = envNote + [python, path.relative(process.cwd(), script) || script, ...args].join(' ');
  if (!fs.existsSync(script)) return Promise.resolve({ ok: false, error: `${script} not found`, command });
  return new Promise((resolve) => {
    execFile(python, [script, ...args], { timeout: opts.timeoutMs ?? 30 * 60 * 1000, maxBuffer: 16 << 20, ...(opts.env ? { env: opts.env } : {}) }, (err, stdout, stderr) => {
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

// ---- the PyTorch peer's BLAS builds ----------------------------------------------
// Debian's torch links libblas.so.3, which the alternatives system points at one BLAS for the
// whole machine. The bench picks one per PyTorch process instead, by putting that BLAS's
// directory first on LD_LIBRARY_PATH (nothing system-wide changes): netlib's reference BLAS
// (libblas3, what PyTorch "as installed" ran before OpenBLAS was present) and OpenBLAS with
// OpenMP threads (libopenblas0-openmp, installed by scripts/setup.sh with FLATENN_SETUP_TORCH=1).

export interface TorchBuild { name: string; key: 'openblas' | 'netlib'; libDir: string }

export const TORCH_BUILDS: readonly TorchBuild[] = [
  { name: 'PyTorch + OpenBLAS', key: 'openblas', libDir: '/usr/lib/x86_64-linux-gnu/openblas-openmp' },
  { name: 'PyTorch + netlib BLAS', key: 'netlib', libDir: '/usr/lib/x86_64-linux-gnu/blas' },
];

/** The builds whose libblas.so.3 is on this machine (OpenBLAS first: the fair peer the goals are against). */
export function torchBuilds(): TorchBuild[] {
  return TORCH_BUILDS.filter((b) => fs.existsSync(path.join(b.libDir, 'libblas.so.3')));
}

/**
 * The environment of one PyTorch process: its BLAS first on LD_LIBRARY_PATH, OMP_NUM_THREADS =
 * threads, and a pre-set OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE removed together (a core type
 * forced without its cache size, or the reverse, misconfigures OpenBLAS). When flatenn runs
 * capped at AVX2 on an AVX-512 CPU (`capAvx2`), the peer is capped too: OPENBLAS_CORETYPE=Haswell
 * and ONEDNN_MAX_CPU_ISA=AVX2 (oneDNN runs PyTorch's convolutions).
 */
export function peerEnv(build: TorchBuild, threads: number, capAvx2: boolean): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.OPENBLAS_CORETYPE;
  delete env.OPENBLAS_L2_SIZE;
  delete env.ONEDNN_MAX_CPU_ISA;
  if (capAvx2) { env.OPENBLAS_CORETYPE = 'Haswell'; env.ONEDNN_MAX_CPU_ISA = 'AVX2'; }
  env.LD_LIBRARY_PATH = build.libDir + (process.env.LD_LIBRARY_PATH ? `:${process.env.LD_LIBRARY_PATH}` : '');
  env.OMP_NUM_THREADS = String(threads);
  return env;
}

export interface PeerRun { build: TorchBuild; result: TorchResult; load: number }

/**
 * Runs the twin once per BLAS build present (never throws; `log` gets failures). `script` picks the twin
 * (default bench/torch_lenet.py); `label` names the benchmark in log lines (default: the first argument).
 */
export async function runTorchBuilds(args: string[], o: { python?: string; script?: string; label?: string; threads: number; capAvx2: boolean; log: (s: string) => void }): Promise<PeerRun[]> {
  const out: PeerRun[] = [];
  const label = o.label ?? args[0];
  for (const build of torchBuilds()) {
    const load = os.loadavg()[0]!;
    o.log(`${label}: ${build.name}: ${args.join(' ')}`);
    const result = await runTorch(args, { ...(o.python ? { python: o.python } : {}), ...(o.script ? { script: o.script } : {}), env: peerEnv(build, o.threads, o.capAvx2) });
    if (!result.ok) o.log(`${label}: ${build.name}: ${result.error}`);
    out.push({ build, result, load });
  }
  return out;
}

/** What a peer run says about itself: BLAS library, OpenBLAS core, measured sgemm rate, CPU capability. */
export function peerDetails(r: PeerRun): Record<string, string | number> {
  const d = r.result.data ?? {};
  const blas = (d.blas ?? {}) as Record<string, unknown>;
  const build = (d.build ?? {}) as Record<string, unknown>;
  const out: Record<string, string | number> = { peerLoad: +r.load.toFixed(2) };
  if (typeof blas.libblas === 'string') out.peerLibblas = blas.libblas;
  if (typeof blas.openblas_core === 'string') out.peerBlasCore = blas.openblas_core;
  else if (typeof blas.blas_core === 'string') out.peerBlasCore = blas.blas_core;
  if (typeof blas.sgemm_gflops === 'number') out.peerSgemmGflops = +blas.sgemm_gflops.toFixed(1);
  if (typeof build.cpu_capability === 'string') out.peerIsa = build.cpu_capability;
  if (typeof blas.onednn_max_cpu_isa === 'string') out.peerOnednnCap = blas.onednn_max_cpu_isa;
  if (typeof blas.openblas_coretype === 'string') out.peerOpenblasCoretype = blas.openblas_coretype;
  return out;
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
/**
 * The usage of the benchmark script that is running: the comment at the top of its source
 * (bench/<name>.ts) and the options it takes.
 */
export function benchUsage(spec: ArgSpec, script = path.basename(process.argv[1] ?? 'bench', '.js')): string {
  let head = '';
  try {
    const lines = fs.readFileSync(path.join(ROOT, 'bench', `${script}.ts`), 'utf8').split('\n');
    const top: string[] = [];
    for (const l of lines) { if (!l.startsWith('//')) break; top.push(l.replace(/^\/\/ ?/, '')); }
    head = top.join('\n');
  } catch { /* no source beside the build: the options alone */ }
  const opts = Object.entries(spec).map(([k, v]) => `  --${k}${v === 'boolean' ? '' : ` <${v}>`}`);
  return `${head || `node dist/bench/${script}.js [options]`}\n\nOptions:\n${opts.join('\n')}\n  -h, --help`;
}

/** Parses `--name value` / `--name=value` / `--flag`; `--help` or `-h` prints the usage and exits 0. */
export function parseArgs(argv: readonly string[], spec: ArgSpec): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  if (argv.includes('--help') || argv.includes('-h')) {
    console.log(benchUsage(spec));
    process.exit(0);
  }
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
