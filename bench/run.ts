// `npm run bench`: every benchmark module that exists (kernel benchmarks
// bench/gemm.ts `gemmBench`, bench/qgemm.ts `qgemmBench`, then LeNet-5 training
// and campaigns and ResNet-18 training and inference beside PyTorch), all rows
// written to bench/results/local/latest.json (git-ignored; --out writes elsewhere,
// e.g. the tracked bench/results/latest.json when results are to be published)
// with the machine they ran on, and printed as markdown tables. A heartbeat line
// every 10 s names the module running; goals that need CPU features this machine
// lacks are reported as "n/a on this CPU".
//   node dist/bench/run.js [--quick] [--threads N] [--only train,campaign,resnet18] [--out file.json] [--no-torch]
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { describeMachine, formatLoad, gitCommit, loadAverage, machineInfo, type MachineInfo } from '../src/benchkit/machine';
import { nativeEngineAvailable } from '../src/engine/native-engine';
import { engineInfo, setIsa, setThreads } from '../src/native/info';
import { campaignBench } from './campaign';
import { markdownTable, messageOf, parseArgs, positiveInt, printRows, ROOT, type Row } from './common';
import { resnet18Bench } from './resnet18';
import { trainBench } from './train';
import { startHeartbeat } from './heartbeat';

/** The benchmark modules, in the order they run (`--only` takes a comma-separated subset). */
export const MODULE_NAMES = ['gemm', 'qgemm', 'train', 'campaign', 'resnet18'] as const;

/** Where results go unless --out says otherwise: git-ignored, so a run never dirties tracked files. */
export const DEFAULT_OUT = path.join(ROOT, 'bench', 'results', 'local', 'latest.json');

/** CPU features a goal's wording refers to (a goal is judged only where the CPU has them). */
const GOAL_FEATURES: { re: RegExp; has: (c: Record<string, unknown>) => boolean; name: string }[] = [
  { re: /VNNI/i, has: (c) => !!c.avx512vnni, name: 'AVX-512 VNNI' },
  { re: /AVX-?512/i, has: (c) => !!c.avx512f, name: 'AVX-512' },
  { re: /AVX2|FMA peak/i, has: (c) => !!c.avx2, name: 'AVX2' },
];

/** Marks rows whose goal needs a feature this CPU lacks: no pass/fail, `goalStatus: 'n/a on this CPU'`. */
export function markGoalApplicability(rows: Row[], cpu: Record<string, unknown> | null): Row[] {
  for (const r of rows) {
    if (!r.goal || !cpu) continue;
    const missing = GOAL_FEATURES.find((f) => f.re.test(r.goal!) && !f.has(cpu));
    if (missing) {
      delete r.pass;
      r.goalStatus = 'n/a on this CPU';
      r.notes = `n/a on this CPU (no ${missing.name})${r.notes ? '; ' + r.notes : ''}`;
    }
  }
  return rows;
}

export interface RunOptions {
  quick?: boolean;
  threads?: number;
  /** Module names to run (default: all that exist). */
  only?: string[];
  out?: string;
  noTorch?: boolean;
  dataDir?: string;
  python?: string;
  log?: (s: string) => void;
}

export interface BenchReport {
  date: string;
  quick: boolean;
  machine: MachineInfo;
  loadAverage: { before: number[]; after: number[] };
  node: string;
  threads: number;
  isa: string | null;
  bestIsa: string | null;
  cpuFeatures: unknown;
  addon: string | null;
  int4Engine: 'native' | 'reference';
  commit: string | null;
  /** eventLoopMaxStallMs: the longest event-loop stall while the module ran (kernel timing loops block on purpose). */
  modules: { name: string; status: 'ran' | 'missing' | 'failed'; seconds?: number; eventLoopMaxStallMs?: number; error?: string }[];
  rows: Row[];
}

type BenchFn = (o: { threads: number; quick?: boolean; log?: (s: string) => void }) => Promise<unknown> | unknown;

/** A benchmark function written by someone else, loaded if its module exists (dist/bench/<file>.js). */
function optionalBench(file: string, fn: string): BenchFn | 'missing' | Error {
  const p = path.join(__dirname, `${file}.js`);
  if (!fs.existsSync(p)) return 'missing';
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const mod = require(p) as Record<string, unknown>;
    const f = mod[fn];
    return typeof f === 'function' ? (f as BenchFn) : new Error(`${file}.js does not export a function ${fn}`);
  } catch (e) {
    return new Error(`cannot load ${file}.js: ${messageOf(e)}`);
  }
}

/** Whatever a foreign benchmark returned, as rows of this report. */
export function asRows(bench: string, v: unknown): Row[] {
  const items = Array.isArray(v) ? v : v && typeof v === 'object' && Array.isArray((v as { rows?: unknown }).rows) ? (v as { rows: unknown[] }).rows : [];
  return items.filter((r): r is Record<string, unknown> => !!r && typeof r === 'object').map((r) => ({
    ...r, bench: typeof r.bench === 'string' ? r.bench : bench,
    case: typeof r.case === 'string' ? r.case : typeof r.name === 'string' ? r.name : '',
    metric: typeof r.metric === 'string' ? r.metric : typeof r.unit === 'string' ? r.unit : '',
  }));
}

export async function runBenchmarks(o: RunOptions = {}): Promise<BenchReport> {
  const log = o.log ?? ((s: string) => console.error(s));
  const threads = positiveInt(o.threads, 'threads', os.availableParallelism());
  const quick = !!o.quick;
  let info: ReturnType<typeof engineInfo> | null = null;
  try { info = engineInfo(); } catch (e) { log(`bench: native addon unavailable (${messageOf(e)})`); }
  const report: BenchReport = {
    date: new Date().toISOString(), quick,
    machine: machineInfo(), loadAverage: { before: loadAverage(), after: [] }, node: process.version, threads,
    isa: info?.isa ?? null, bestIsa: info?.bestIsa ?? null, cpuFeatures: info?.cpu ?? null, addon: info?.addonPath ?? null,
    int4Engine: nativeEngineAvailable() ? 'native' : 'reference', commit: gitCommit(ROOT), modules: [], rows: [],
  };
  const want = (name: string) => !o.only || o.only.includes(name);
  const common = { threads, quick, log, ...(o.dataDir ? { dataDir: o.dataDir } : {}), ...(o.python ? { python: o.python } : {}), ...(o.noTorch ? { noTorch: true } : {}) };
  const modules: { name: string; run: BenchFn | 'missing' | Error }[] = [
    { name: 'gemm', run: optionalBench('gemm', 'gemmBench') },
    { name: 'qgemm', run: optionalBench('qgemm', 'qgemmBench') },
    { name: 'train', run: (x) => trainBench({ ...common, ...x }) },
    { name: 'campaign', run: (x) => campaignBench({ ...common, ...x }) },
    { name: 'resnet18', run: (x) => resnet18Bench({ ...common, ...x }) },
  ];
  const beat = startHeartbeat();
  try {
  for (const m of modules) {
    if (!want(m.name)) continue;
    if (m.run === 'missing') { report.modules.push({ name: m.name, status: 'missing' }); log(`bench: ${m.name}: no module, skipped`); continue; }
    if (m.run instanceof Error) { report.modules.push({ name: m.name, status: 'failed', error: m.run.message }); log(`bench: ${m.name}: ${m.run.message}`); continue; }
    log(`bench: ${m.name} ...`);
    beat.set(m.name);
    const t0 = Date.now();
    const stall = monitorEventLoopDelay({ resolution: 10 });
    stall.enable();
    const maxStall = () => { stall.disable(); return +(stall.max / 1e6).toFixed(1); };
    try {
      const rows = asRows(m.name, await m.run({ threads, quick, log }));
      report.rows.push(...rows);
      report.modules.push({ name: m.name, status: 'ran', seconds: (Date.now() - t0) / 1000, eventLoopMaxStallMs: maxStall() });
    } catch (e) {
      report.modules.push({ name: m.name, status: 'failed', seconds: (Date.now() - t0) / 1000, eventLoopMaxStallMs: maxStall(), error: messageOf(e) });
      log(`bench: ${m.name} failed: ${messageOf(e)}`);
    }
    // A module may leave another ISA or thread count selected: the next one starts from the same state.
    try { if (info) setIsa(info.isa); setThreads(threads); } catch { /* no addon: nothing to restore */ }
  }
  } finally {
    beat.stop();
  }
  markGoalApplicability(report.rows, (info?.cpu as unknown as Record<string, unknown>) ?? null);
  report.loadAverage.after = loadAverage();
  const out = o.out ?? DEFAULT_OUT;
  fs.mkdirSync(path.dirname(out), { recursive: true });
  const tmp = `${out}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(report, null, 2) + '\n');
  fs.renameSync(tmp, out);
  const rel = path.relative(process.cwd(), out);
  log(`bench: wrote ${rel && !rel.startsWith('..') ? rel : path.resolve(out)}`);
  return report;
}

export function printReport(r: BenchReport, print: (s: string) => void = console.log): void {
  print(`## flatenn benchmarks${r.quick ? ' (quick)' : ''}\n`);
  print(markdownTable(['', ''], [
    ['date', r.date],
    ['machine', describeMachine(r.machine)],
    ['load average (before / after)', `${formatLoad(r.loadAverage.before)} / ${formatLoad(r.loadAverage.after)}`],
    ['node', r.node],
    ['threads', String(r.threads)],
    ['ISA', r.isa ? `${r.isa} (best ${r.bestIsa})` : 'addon not loaded'],
    ['int4 engine backend', r.int4Engine],
    ['commit', r.commit ?? '?'],
    ['modules', r.modules.map((m) => `${m.name}: ${m.status}${m.seconds !== undefined ? ` (${m.seconds.toFixed(0)} s)` : ''}`).join(', ')],
    ['longest event-loop stall', r.modules.filter((m) => m.eventLoopMaxStallMs !== undefined).map((m) => `${m.name} ${m.eventLoopMaxStallMs} ms`).join(', ') || '-'],
  ]));
  printRows(r.rows, print);
  for (const m of r.modules) if (m.error) print(`- ${m.name}: ${m.error}`);
}

async function main(): Promise<void> {
  const a = parseArgs(process.argv.slice(2), { quick: 'boolean', threads: 'number', only: 'string', out: 'string', 'no-torch': 'boolean', 'data-dir': 'string', python: 'string' });
  const only = typeof a.only === 'string' ? a.only.split(',').map((s) => s.trim()).filter(Boolean) : undefined;
  const known: readonly string[] = MODULE_NAMES;
  for (const n of only ?? []) if (!known.includes(n)) throw new RangeError(`--only: unknown benchmark '${n}' (known: ${known.join(', ')})`);
  const r = await runBenchmarks({
    quick: !!a.quick, noTorch: !!a['no-torch'],
    ...(a.threads !== undefined ? { threads: a.threads as number } : {}),
    ...(only ? { only } : {}),
    ...(typeof a.out === 'string' ? { out: a.out } : {}),
    ...(typeof a['data-dir'] === 'string' ? { dataDir: a['data-dir'] } : {}),
    ...(typeof a.python === 'string' ? { python: a.python } : {}),
  });
  printReport(r);
}

if (require.main === module) {
  main().catch((e: unknown) => { console.error(messageOf(e)); process.exitCode = e instanceof RangeError ? 2 : 1; });
}
