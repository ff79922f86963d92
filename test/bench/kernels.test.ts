// `flatenn bench kernels` (src/benchkit/): the JSON schema and margins of error of a real run on
// tiny shapes with the scalar kernels, ISAs the CPU lacks, shapes-file validation, and the
// --compare verdicts and exit code. Structure only: no assertion depends on a speed.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { compareReports, formatReport, sideBySideTable, validateReport } from '../../src/benchkit/report';
import { runKernelBench, SCHEMA, type KernelBenchReport, type KernelRow } from '../../src/benchkit/run';
import { defaultShapes, ShapeError, validateShapes, type Shape } from '../../src/benchkit/shapes';
import { parseFilter, parseIsas, parseThreads } from '../../src/cli/bench-kernels';
import { UsageError } from '../../src/cli/args';
import { availableIsas } from '../../src/native/info';

const CLI = path.resolve(__dirname, '..', '..', 'src', 'cli', 'main.js');
const TINY: Shape[] = [
  { name: 'tiny-gemm', kind: 'gemm', M: 20, N: 9, K: 35 },
  { name: 'tiny-conv', kind: 'conv', N: 2, C: 3, H: 7, W: 7, O: 5, k: 3, stride: 1, pad: 1 },
];
const FAST = ['--max-time', '0.01', '--min-samples', '2'];

function tmpdir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'flatenn-benchk-'));
}

function cli(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, 'bench', 'kernels', ...args], { encoding: 'utf8', timeout: 120_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const isNum = (v: unknown) => typeof v === 'number' && Number.isFinite(v);

test('bench kernels --filter qgemm --isa scalar --json: the schema, and every row carries its margin of error', () => {
  const dir = tmpdir();
  try {
    const shapes = path.join(dir, 'shapes.json');
    fs.writeFileSync(shapes, JSON.stringify(TINY));
    const r = cli(['--filter', 'qgemm', '--isa', 'scalar', '--threads', '1,2', '--shapes', shapes, '--json', '-q', ...FAST]);
    assert.equal(r.status, 0, r.stderr);
    const rep = JSON.parse(r.stdout) as KernelBenchReport;
    assert.equal(rep.schema, SCHEMA);
    assert.doesNotThrow(() => validateReport(rep));
    assert.ok(!Number.isNaN(Date.parse(rep.date)));
    for (const k of ['cpu', 'os', 'arch', 'node'] as const) assert.equal(typeof rep.machine[k], 'string', k);
    assert.ok(isNum(rep.machine.nproc) && rep.machine.nproc >= 1);
    assert.equal(rep.load.before.length, 3);
    assert.equal(rep.load.after.length, 3);
    assert.equal(rep.benchmark.library, 'benchmark.js');
    assert.equal(typeof rep.benchmark.version, 'string');
    assert.deepEqual([rep.benchmark.minSamples, rep.benchmark.maxTime], [2, 0.01]);
    assert.deepEqual(rep.isas, [{ isa: 'scalar', available: true }]);
    assert.deepEqual(rep.threads, [1, 2]);
    assert.deepEqual(rep.kernels.map((k) => k.name), ['qgemm']);
    // qgemm runs on the gemm shape only, once per thread count
    assert.equal(rep.rows.length, 2);
    for (const row of rep.rows) {
      assert.equal(row.kernel, 'qgemm');
      assert.equal(row.shape, 'tiny-gemm');
      assert.deepEqual(row.dims, { M: 20, N: 9, K: 35 });
      assert.equal(row.isa, 'scalar');
      assert.equal(row.variant, 'scalar');
      assert.equal(row.status, 'ok');
      assert.ok(isNum(row.hz) && row.hz! > 0);
      assert.ok(isNum(row.rme) && row.rme! >= 0, `rme ${row.rme}`);
      assert.ok(isNum(row.samples) && row.samples! >= 2);
      assert.ok(isNum(row.meanSeconds) && Math.abs(row.meanSeconds! * row.hz! - 1) < 1e-9);
      assert.ok(isNum(row.sdSeconds));
      assert.equal(row.workUnit, 'GMAC');
      assert.equal(row.work, (20 * 9 * 35) / 1e9);
      assert.equal(row.rateUnit, 'GMAC/s');
      assert.ok(Math.abs(row.rate! - row.work * row.hz!) <= 1e-12 * row.rate!);
      // the scalar kernels have no peak probe: n/a with the reason, never a made-up share
      assert.equal(row.percentOfPeak, null);
      assert.equal(row.peak, null);
      assert.match(row.peakNote ?? '', /scalar/);
    }
    assert.deepEqual(rep.rows.map((x) => x.threads), [1, 2]);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('an ISA the CPU lacks gives n/a rows with a note, never a crash; code without ISA variants runs once', async () => {
  const rep = await runKernelBench({
    kernels: ['sgemm', 'faultmap'], isas: ['scalar', 'avx2', 'avx512'], threads: [1], peaks: false, cpuIsas: ['scalar'],
    shapes: [TINY[0]!, { name: 'tiny-map', kind: 'faultmap', cells: 1000, rate: 0.02 }], timing: { maxTime: 0.01, minSamples: 2 }, log: () => {},
  });
  assert.deepEqual(rep.isas.map((i) => i.available), [true, false, false]);
  const skipped = rep.rows.filter((r) => r.status === 'skipped');
  assert.equal(skipped.length, 4);
  for (const r of skipped) {
    assert.match(r.note!, /lacks/);
    assert.equal(r.hz, null);
    assert.equal(r.rme, null);
  }
  const table = sideBySideTable(rep);
  assert.match(table, /\| kernel \| shape \| unit \| scalar ×1 \| avx2 ×1 \| avx512 ×1 \|/);
  assert.match(table, /\| sgemm \| tiny-gemm \(M=20 N=9 K=35\) \| GFLOP\/s \| [\d.]+ ±[\d.]+% \(n\/a\) \| n\/a \| n\/a \|/);
  assert.match(formatReport(rep), /this CPU lacks avx2/);

  // faultmap has no ISA variants: measured under the first ISA, 'same' under the others
  if (availableIsas().includes('avx2')) {
    const rep2 = await runKernelBench({
      kernels: ['faultmap'], isas: ['scalar', 'avx2'], threads: [1], peaks: false,
      shapes: [{ name: 'tiny-map', kind: 'faultmap', cells: 1000, rate: 0.02 }], timing: { maxTime: 0.01, minSamples: 2 }, log: () => {},
    });
    assert.deepEqual(rep2.rows.map((r) => [r.isa, r.status, r.variant]), [['scalar', 'ok', 'none'], ['avx2', 'same', 'none']]);
    assert.equal(rep2.rows[1]!.sameAs, 'scalar');
    assert.match(sideBySideTable(rep2), /\| = scalar \|/);
  }
});

test('shapes files: the built-in list is valid, mistakes are named', () => {
  assert.equal(validateShapes(defaultShapes()).length, defaultShapes().length);
  assert.ok(defaultShapes(true).length < defaultShapes().length);
  const bad: [unknown, RegExp][] = [
    [{}, /expected a JSON array/],
    [[], /empty/],
    [[{ name: 'a', kind: 'gemm', M: 4, N: 4 }], /shape 0 \('a'\): missing "K"/],
    [[{ name: 'a', kind: 'gemm', M: 4, N: 4, K: 4, k: 3 }], /unknown key "k" for a gemm shape/],
    [[{ name: 'a', kind: 'matmul', M: 4 }], /"kind" must be one of gemm, conv, elementwise, faultmap/],
    [[{ name: 'a', kind: 'gemm', M: 4, N: 4, K: 2.5 }], /"K" must be an integer/],
    [[{ name: 'a', kind: 'gemm', M: 0, N: 4, K: 4 }], /"M" must be an integer in \[1,/],
    [[{ name: 'a', kind: 'gemm', M: 4, N: 4, K: 70000 }], /above the int4 GEMM's limit/],
    [[{ name: 'a', kind: 'conv', N: 1, C: 1, H: 2, W: 2, O: 1, k: 5 }], /5x5 kernel is larger than the padded input 2x2/],
    [[{ name: 'a', kind: 'faultmap', cells: 100, rate: 2 }], /"rate" must be a number in \[0, 1\]/],
    [[{ name: 'a', kind: 'elementwise', n: 2 ** 40 }], /must be an integer in|at most/],
    [[{ name: 'a', kind: 'elementwise', n: 5 }, { name: 'a', kind: 'elementwise', n: 6 }], /two shapes are named 'a'/],
    [[{ kind: 'elementwise', n: 5 }], /"name" must be a non-empty string/],
  ];
  for (const [doc, re] of bad) assert.throws(() => validateShapes(doc), (e: unknown) => e instanceof ShapeError && re.test((e as Error).message), JSON.stringify(doc));
  // defaults filled in
  assert.deepEqual(validateShapes({ shapes: [{ name: 'c', kind: 'conv', N: 1, C: 1, H: 4, W: 4, O: 1, k: 3 }] })[0], { name: 'c', kind: 'conv', N: 1, C: 1, H: 4, W: 4, O: 1, k: 3, stride: 1, pad: 0 });
});

test('option lists: --filter, --isa, --threads', () => {
  assert.deepEqual(parseFilter('qgemm,sgemm,qgemm'), ['qgemm', 'sgemm']);
  assert.throws(() => parseFilter('qgemm,gemm'), (e: unknown) => e instanceof UsageError && /unknown kernel 'gemm'/.test((e as Error).message));
  assert.equal(parseIsas('all'), undefined);
  assert.deepEqual(parseIsas('avx512,scalar'), ['scalar', 'avx512']);
  assert.throws(() => parseIsas('sse'), UsageError);
  assert.deepEqual(parseThreads('1,2,2'), [1, 2]);
  assert.throws(() => parseThreads('1,,2'), UsageError);
  assert.throws(() => parseThreads('0'), UsageError);
  assert.throws(() => parseThreads('1.5'), UsageError);
});

function row(over: Partial<KernelRow>): KernelRow {
  return {
    kernel: 'qgemm', shape: 's', size: 'M=N=K=8', dims: { M: 8, N: 8, K: 8 }, isa: 'avx2', variant: 'avx2', threads: 1, status: 'ok',
    hz: 1000, rme: 1, samples: 10, meanSeconds: 1e-3, sdSeconds: 1e-5, work: 1, workUnit: 'GMAC', rate: 1000, rateUnit: 'GMAC/s', peak: null, percentOfPeak: null, ...over,
  };
}
function report(rows: KernelRow[]): KernelBenchReport {
  return {
    schema: SCHEMA, date: '2026-12-01T00:00:00Z', flatenn: { version: '0', commit: null, addon: '' },
    machine: { cpu: 'X', nproc: 2, cpus: 2, memoryGiB: 1, os: 'L', arch: 'x64', node: 'v20' }, load: { before: [0, 0, 0], after: [0, 0, 0] },
    cpu: { bestIsa: 'avx2', avx2: true, fma: true, avx512f: false, avx512vnni: false },
    benchmark: { library: 'benchmark.js', version: '2.1.4', minSamples: 5, maxTime: 1, minTime: 0.05, initCount: 1 },
    isas: [{ isa: 'avx2', available: true }], threads: [1], kernels: [], peaks: [], rows, seconds: 1,
  };
}

test('compareReports: a change counts only beyond both margins of error (and --min-change)', () => {
  const base = report([
    row({ shape: 'same', hz: 1000, rme: 2 }),
    row({ shape: 'slower', hz: 1000, rme: 1 }),
    row({ shape: 'faster', hz: 1000, rme: 1 }),
    row({ shape: 'noisy', hz: 1000, rme: 10 }),
    row({ shape: 'small', hz: 1000, rme: 0.1 }),
    row({ shape: 'gone', hz: 1000 }),
    row({ shape: 'resized', hz: 1000 }),
    row({ shape: 'skipped', status: 'skipped', hz: null, rme: null, rate: null }),
  ]);
  const cur = report([
    row({ shape: 'same', hz: 1010, rme: 2 }),
    row({ shape: 'slower', hz: 900, rme: 1 }), // 100 apart, margins 10 + 9
    row({ shape: 'faster', hz: 1100, rme: 1 }),
    row({ shape: 'noisy', hz: 900, rme: 10 }), // 100 apart, margins 100 + 90
    row({ shape: 'small', hz: 1020, rme: 0.1 }), // beyond the margins, under a 5% minimum
    row({ shape: 'new', hz: 5 }),
    row({ shape: 'resized', hz: 1000, dims: { M: 16, N: 8, K: 8 }, size: 'M=16 N=8 K=8' }),
  ]);
  const verdicts = (c: ReturnType<typeof compareReports>) => Object.fromEntries(c.rows.map((r) => [r.shape, r.verdict]));
  const c = compareReports(base, cur);
  assert.deepEqual(verdicts(c), { same: 'within noise', slower: 'slower', faster: 'faster', noisy: 'within noise', small: 'faster', new: 'new', resized: 'not comparable', gone: 'missing' });
  assert.equal(c.regressions, 1);
  assert.equal(c.improvements, 2);
  const slower = c.rows.find((r) => r.shape === 'slower')!;
  assert.ok(Math.abs(slower.change! + 0.1) < 1e-12);
  assert.ok(Math.abs(slower.margin! - 0.019) < 1e-12);
  assert.equal(verdicts(compareReports(base, cur, 0.05)).small, 'within noise');
  assert.deepEqual(c.warnings, []);
  assert.match(compareReports({ ...base, machine: { ...base.machine, cpu: 'Y' } }, cur).warnings.join(), /different CPUs/);
});

test('bench kernels --compare: exit 3 on a kernel slower beyond the margin of error, 0 otherwise, 2 on a bad base', () => {
  const dir = tmpdir();
  try {
    const shapes = path.join(dir, 'shapes.json'), base = path.join(dir, 'base.json');
    fs.writeFileSync(shapes, JSON.stringify([TINY[0]]));
    const args = ['--filter', 'sgemm', '--isa', 'scalar', '--threads', '1', '--shapes', shapes, '-q', ...FAST];
    const r0 = cli([...args, '--out', base]);
    assert.equal(r0.status, 0, r0.stderr);
    const saved = JSON.parse(fs.readFileSync(base, 'utf8')) as KernelBenchReport;
    // a base 1000 times faster with a 1% margin: this run is a regression whatever the machine does
    const fast = { ...saved, rows: saved.rows.map((x) => ({ ...x, hz: x.hz! * 1000, rate: x.rate! * 1000, rme: 1 })) };
    fs.writeFileSync(base, JSON.stringify(fast));
    const r1 = cli([...args, '--compare', base]);
    assert.equal(r1.status, 3, r1.stderr);
    assert.match(r1.stdout, /\| sgemm \| tiny-gemm \| scalar \| 1 \|.*\| SLOWER \|/);
    assert.match(r1.stdout, /1 slower and 0 faster beyond the margin of error/);
    // two saved reports, nothing timed: the saved run against the faster base, and the other way round
    const savedFile = path.join(dir, 'saved.json');
    fs.writeFileSync(savedFile, JSON.stringify(saved));
    const a1 = cli(['--compare', base, '--against', savedFile, '--json']);
    assert.equal(a1.status, 3, a1.stderr);
    assert.deepEqual((JSON.parse(a1.stdout) as { compare: { rows: { verdict: string }[] } }).compare.rows.map((x) => x.verdict), ['slower']);
    const a2 = cli(['--compare', savedFile, '--against', base]);
    assert.equal(a2.status, 0, a2.stderr);
    assert.match(a2.stdout, /0 slower and 1 faster beyond the margin of error/);
    const a3 = cli(['--against', savedFile]);
    assert.equal(a3.status, 2);
    assert.match(a3.stderr, /--against needs --compare/);
    const a4 = cli(['--compare', base, '--against', savedFile, '--filter', 'sgemm']);
    assert.equal(a4.status, 2);
    assert.match(a4.stderr, /--filter would not be used/);
    // 1000 times slower: no regression, exit 0 (an improvement unless this run's own margin passes 100%)
    const slow = { ...saved, rows: saved.rows.map((x) => ({ ...x, hz: x.hz! / 1000, rate: x.rate! / 1000, rme: 1 })) };
    fs.writeFileSync(base, JSON.stringify(slow));
    const r2 = cli([...args, '--compare', base, '--json']);
    assert.equal(r2.status, 0, r2.stderr);
    const out = JSON.parse(r2.stdout) as KernelBenchReport & { compare: { regressions: number; improvements: number; rows: { verdict: string }[] } };
    assert.equal(out.compare.regressions, 0);
    assert.equal(out.compare.rows.length, 1);
    assert.ok(['faster', 'within noise'].includes(out.compare.rows[0]!.verdict));
    fs.writeFileSync(base, JSON.stringify({ schema: 'other/1', rows: [] }));
    const r3 = cli([...args, '--compare', base]);
    assert.equal(r3.status, 2);
    assert.match(r3.stderr, /--compare: .*schema "other\/1"/);
    const r4 = cli([...args.filter((a) => a !== shapes && a !== '--shapes'), '--shapes', path.join(dir, 'missing.json')]);
    assert.equal(r4.status, 2);
    assert.match(r4.stderr, /--shapes: cannot read .*missing\.json: no such file/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
