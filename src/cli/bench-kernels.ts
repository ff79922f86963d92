// `flatenn bench kernels`: kernel speed per ISA and thread count on benchmark.js, with % of the
// measured peak, JSON for dashboards and a regression check against a saved run.
// Exit codes: 0 done (no regression), 1 failure (a kernel failed), 2 bad usage (options, shapes
// file, base file), 3 --compare found a kernel slower beyond the margin of error.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { IsaName } from '../native/binding';
import { ISAS } from '../native/binding';
import { KERNEL_NAMES, KERNELS, type KernelName } from '../benchkit/kernels';
import { compareReports, compareTable, formatReport, readReport, ReportError, type CompareResult } from '../benchkit/report';
import { DEFAULT_TIMING, QUICK_TIMING, runKernelBench, type TimingSettings } from '../benchkit/run';
import { defaultShapes, describeShape, readShapesFile, ShapeError, type Shape } from '../benchkit/shapes';
import { flag, num, parseNumber, str, UsageError, type CommandSpec, type Values } from './args';

/** Exit code of a comparison that found a regression. */
export const EXIT_REGRESSION = 3;

function splitList(v: string, name: string): string[] {
  const parts = v.split(',').map((s) => s.trim());
  if (parts.length === 0 || parts.some((p) => p === '')) throw new UsageError(`--${name} expects a comma-separated list, got '${v}'`);
  return parts;
}

export function parseFilter(v: string | undefined): KernelName[] | undefined {
  if (v === undefined) return undefined;
  const names = splitList(v, 'filter');
  for (const n of names) if (!(KERNEL_NAMES as readonly string[]).includes(n)) throw new UsageError(`--filter: unknown kernel '${n}' (kernels: ${KERNEL_NAMES.join(', ')})`);
  return [...new Set(names)] as KernelName[];
}

export function parseIsas(v: string | undefined): IsaName[] | undefined {
  if (v === undefined || v === 'all') return undefined;
  const names = splitList(v, 'isa');
  for (const n of names) if (!(ISAS as readonly string[]).includes(n)) throw new UsageError(`--isa must be all or a list of ${ISAS.join(', ')}, got '${n}'`);
  return ISAS.filter((i) => names.includes(i));
}

export function parseThreads(v: string | undefined): number[] | undefined {
  if (v === undefined) return undefined;
  const out = splitList(v, 'threads').map((p) => {
    if (!/^\d+$/.test(p)) throw new UsageError(`--threads expects integers like 1,2, got '${p}'`);
    const n = Number(p);
    if (n < 1 || n > 1024) throw new UsageError(`--threads: each count must be in [1, 1024], got ${p}`);
    return n;
  });
  return [...new Set(out)];
}

function timingFrom(v: Values, quick: boolean): TimingSettings {
  const d = quick ? QUICK_TIMING : DEFAULT_TIMING;
  const ms = str(v, 'min-samples');
  return {
    minSamples: ms === undefined ? d.minSamples : Math.round(parseNumber(ms, 'min-samples', 2, 1000)),
    maxTime: num(v, 'max-time', 0.001, 3600, d.maxTime),
    minTime: d.minTime,
  };
}

function listing(shapes: Shape[]): string {
  const lines = ['Kernels (--filter):'];
  for (const k of KERNELS) lines.push(`  ${k.name.padEnd(10)} ${k.title}; ${k.shapeKind} shapes; ${k.rateUnit}${k.arith ? ', % of the ISA\'s measured peak' : ''}`);
  lines.push('', 'Built-in shapes (--quick keeps those marked *):');
  const quick = new Set(defaultShapes(true).map((s) => s.name));
  for (const s of shapes) lines.push(`  ${quick.has(s.name) ? '*' : ' '} ${s.kind.padEnd(12)} ${s.name.padEnd(24)} ${describeShape(s)}`);
  return lines.join('\n');
}

export const benchKernelsCommand: CommandSpec = {
  name: 'bench kernels',
  summary: 'Kernel speed per ISA and thread count (benchmark.js) with % of the measured peak; --compare checks a saved run for regressions.\n' +
    'Kernels: fp32 GEMM and convolution forward/backward, int4 GEMM and convolution, requantisation, fault-mask apply, fault-map drawing.\n' +
    'Exit codes: 0 done, 1 a kernel failed, 2 bad usage or input file, 3 --compare found a kernel slower beyond the margin of error.',
  usage: 'flatenn bench kernels [--filter sgemm,qgemm,...] [--isa all|scalar|avx2|avx512] [--threads 1,2] [--shapes file.json] [--json] [--out run.json] [--compare base.json]',
  ownThreadsIsa: true,
  options: {
    filter: { type: 'string', arg: '<list>', description: `kernels to run: ${KERNEL_NAMES.join(', ')} (default: all)` },
    isa: { type: 'string', arg: '<isa>', description: 'all, or a list of scalar, avx2, avx512; an ISA this CPU lacks gives n/a rows', default: 'all' },
    threads: { type: 'string', arg: '<list>', description: 'thread counts, e.g. 1,2 (default: 1 and all CPUs)' },
    shapes: { type: 'string', arg: '<file.json>', description: 'shapes to run instead of the built-in ones (README: "Benchmarking kernels")' },
    quick: { type: 'boolean', description: `fewer shapes, ${QUICK_TIMING.maxTime} s of sampling per row` },
    'max-time': { type: 'string', arg: '<s>', description: `seconds of sampling per row, after min-samples (default ${DEFAULT_TIMING.maxTime}, --quick ${QUICK_TIMING.maxTime})` },
    'min-samples': { type: 'string', arg: '<n>', description: `benchmark.js samples per row at least (>= 2; default ${DEFAULT_TIMING.minSamples})` },
    json: { type: 'boolean', description: 'print the report as JSON (schema in README) instead of tables' },
    out: { type: 'string', arg: '<file>', description: 'also write the JSON report to this file (a base for --compare)' },
    compare: { type: 'string', arg: '<base.json>', description: 'compare with a saved report; exit 3 if a kernel is slower beyond the margin of error' },
    'min-change': { type: 'string', arg: '<pct>', description: 'with --compare: flag only changes of at least this many percent too', default: '0' },
    against: { type: 'string', arg: '<run.json>', description: 'with --compare: compare this saved report instead of running the kernels' },
    list: { type: 'boolean', description: 'list the kernels and built-in shapes, run nothing' },
    quiet: { type: 'boolean', short: 'q', description: 'no progress lines on stderr' },
  },
  examples: [
    'flatenn bench kernels --quick',
    'flatenn bench kernels --filter sgemm,qgemm --isa avx2,avx512 --threads 1,2',
    'flatenn bench kernels --out base.json          # later, on another commit or machine:',
    'flatenn bench kernels --compare base.json --min-change 5',
    'flatenn bench kernels --compare base.json --against new.json   # two saved runs, nothing timed',
    'flatenn bench kernels --filter qgemm --shapes my-shapes.json --json > run.json',
  ],
  async run(v) {
    const quick = flag(v, 'quick');
    if (flag(v, 'list')) {
      process.stdout.write(listing(defaultShapes(false)) + '\n');
      return 0;
    }
    const kernels = parseFilter(str(v, 'filter'));
    const isas = parseIsas(str(v, 'isa'));
    const threads = parseThreads(str(v, 'threads'));
    const timing = timingFrom(v, quick);
    const minChange = num(v, 'min-change', 0, 1000, 0) / 100;
    let shapes: Shape[] | undefined;
    const shapesFile = str(v, 'shapes');
    try {
      if (shapesFile !== undefined) shapes = readShapesFile(shapesFile);
    } catch (e) {
      if (e instanceof ShapeError) throw new UsageError(`--shapes: ${e.message}`);
      throw e;
    }
    const compareFile = str(v, 'compare');
    let base;
    try {
      if (compareFile !== undefined) base = readReport(compareFile);
    } catch (e) {
      if (e instanceof ReportError) throw new UsageError(`--compare: ${e.message}`);
      throw e;
    }
    const againstFile = str(v, 'against');
    if (againstFile !== undefined) {
      if (!base) throw new UsageError('--against needs --compare <base.json>');
      const runOptions = ['filter', 'threads', 'shapes', 'quick', 'max-time', 'min-samples', 'out'].filter((k) => v[k] !== undefined && v[k] !== false);
      if (v.isa !== undefined && v.isa !== 'all') runOptions.push('isa');
      if (runOptions.length) throw new UsageError(`--against compares two saved reports: --${runOptions.join(', --')} would not be used`);
    }
    let against;
    try {
      if (againstFile !== undefined) against = readReport(againstFile);
    } catch (e) {
      if (e instanceof ReportError) throw new UsageError(`--against: ${e.message}`);
      throw e;
    }
    const out = str(v, 'out');
    if (out !== undefined && out === '') throw new UsageError('--out expects a file name');
    if (shapes && kernels && !shapes.some((s) => kernels.some((k) => KERNELS.find((d) => d.name === k)!.shapeKind === s.kind))) {
      throw new UsageError(`--shapes: none of its shapes is of a kind the chosen kernels run on (${kernels.map((k) => `${k}: ${KERNELS.find((d) => d.name === k)!.shapeKind}`).join(', ')})`);
    }
    const quiet = flag(v, 'quiet');
    const report = against ?? await runKernelBench({
      quick, timing, ...(kernels ? { kernels } : {}), ...(isas ? { isas } : {}), ...(threads ? { threads } : {}), ...(shapes ? { shapes } : {}),
      log: quiet ? () => {} : (s) => process.stderr.write(s + '\n'),
    });
    if (report.rows.length === 0) throw new UsageError('no kernel has a shape of its kind in the shape list (see --list)');
    let cmp: CompareResult | undefined;
    if (base) cmp = compareReports(base, report, minChange);
    if (out !== undefined) {
      fs.mkdirSync(path.dirname(path.resolve(out)), { recursive: true });
      const tmp = `${out}.${process.pid}.tmp`;
      fs.writeFileSync(tmp, JSON.stringify(report, null, 2) + '\n');
      fs.renameSync(tmp, out);
      if (!quiet) process.stderr.write(`bench kernels: wrote ${out}\n`);
    }
    if (flag(v, 'json')) {
      process.stdout.write(JSON.stringify(cmp ? { ...report, compare: { base: compareFile, ...(againstFile ? { against: againstFile } : {}), minChange, ...cmp } } : report, null, 2) + '\n');
    } else {
      process.stdout.write(formatReport(report) + '\n');
      if (cmp) {
        process.stdout.write(`\n## Compared with ${compareFile}\n\n${compareTable(cmp)}\n`);
        for (const w of cmp.warnings) process.stdout.write(`- warning: ${w}\n`);
        process.stdout.write(`\n${cmp.regressions} slower and ${cmp.improvements} faster beyond the margin of error${minChange > 0 ? ` and ${(100 * minChange).toFixed(1)}%` : ''}.\n`);
      }
    }
    if (report.rows.some((r) => r.status === 'failed')) return 1;
    return cmp && cmp.regressions > 0 ? EXIT_REGRESSION : 0;
  },
};
