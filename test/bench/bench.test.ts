// The benchmark harness (bench/): argument parsing, statistics and tables, and
// the PyTorch twin (bench/torch_lenet.py) checked against flatenn itself: the
// same fake quantisation bit for bit, the same LeNet-5 forward, and bit flips
// on int4 codes. The PyTorch checks are skipped where /usr/bin/python3 has no torch.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { kernels } from '../../src/autograd/native-ops';
import { Tape } from '../../src/autograd/tape';
import { defaultConfig } from '../../src/train/config';
import { createModel } from '../../src/train/trainer';
import { DEFAULT_PYTHON, fmt, markdownTable, median, parseArgs, rowsTable, TORCH_SCRIPT } from '../../bench/common';
import { asRows } from '../../bench/run';
import { campaignBench } from '../../bench/campaign';
import { DEBIAN_FASHION_MNIST } from '../../src/data/dirs';
import { getThreads, setThreads } from '../../src/native/info';

test('parseArgs: values, flags, and refusals naming the option', () => {
  const spec = { threads: 'number', quick: 'boolean', model: 'string' } as const;
  assert.deepEqual(parseArgs(['--threads', '2', '--quick', '--model=a.safetensors'], spec), { threads: 2, quick: true, model: 'a.safetensors' });
  assert.throws(() => parseArgs(['--thread', '2'], spec), /unknown option --thread/);
  assert.throws(() => parseArgs(['--threads'], spec), /--threads needs a value/);
  assert.throws(() => parseArgs(['--threads', 'two'], spec), /--threads needs a number, got 'two'/);
  assert.throws(() => parseArgs(['--quick=1'], spec), /--quick takes no value/);
  assert.throws(() => parseArgs(['train'], spec), /unexpected argument 'train'/);
});

test('every benchmark script answers --help with its usage (exit 0) and a bad option with a one-line error (exit 2)', () => {
  const dist = path.join(__dirname, '..', '..', 'bench');
  for (const script of ['train', 'campaign', 'resnet18', 'resnet18-cost', 'gemm', 'qgemm', 'queue', 'run', 'trial-cost']) {
    const r = spawnSync(process.execPath, [path.join(dist, `${script}.js`), '--help'], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.status, 0, `${script} --help: exit ${r.status}, stderr ${r.stderr}`);
    assert.match(r.stdout, /usage|node dist\/bench\//i, `${script} --help prints its usage`);
    if (script !== 'trial-cost') assert.match(r.stdout, /Options:\n[^]*-h, --help/, `${script} --help lists its options`);
  }
  const bad = spawnSync(process.execPath, [path.join(dist, 'resnet18-cost.js'), '--bogus'], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /^unknown option --bogus/);
  assert.doesNotMatch(bad.stderr, /\n\s+at /, 'no stack trace');
});

test('median, number formatting and tables', () => {
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.throws(() => median([]), RangeError);
  assert.equal(fmt(12345.6), '12346');
  assert.equal(fmt(2.0349), '2.03');
  assert.equal(fmt(0.012345), '0.0123');
  assert.equal(fmt(true), 'yes');
  assert.equal(markdownTable(['a', 'b'], [['x|y', '1']]), '| a | b |\n| --- | --- |\n| x\\|y | 1 |');
  const t = rowsTable([{ bench: 'train', case: 'step', metric: 'images/s', flatenn: 6000, pytorch: 3000, ratio: 2, pass: true, stepMs: 21.5 }]).split('\n');
  assert.equal(t[0], '| case | metric | flatenn | PyTorch | flatenn/PyTorch | goal met | details |');
  assert.equal(t[2], '| step | images/s | 6000 | 3000 | 2 | yes | stepMs 21.50 |');
});

test('asRows: rows of other benchmark modules are kept, named and labelled', () => {
  const rows = asRows('gemm', [{ name: 'sgemm 256', unit: 'GFLOP/s', flatenn: 100 }, null, 3, { bench: 'x', case: 'c', metric: 'm' }]);
  assert.equal(rows.length, 2);
  assert.deepEqual(rows[0], { name: 'sgemm 256', unit: 'GFLOP/s', flatenn: 100, bench: 'gemm', case: 'sgemm 256', metric: 'GFLOP/s' });
  assert.equal(rows[1]!.bench, 'x');
  assert.deepEqual(asRows('gemm', { rows: [{ case: 'a', metric: 'b' }] }).map((r) => r.case), ['a']);
  assert.deepEqual(asRows('gemm', undefined), []);
});

const torchOk = spawnSync(DEFAULT_PYTHON, ['-c', 'import torch, numpy'], { stdio: 'ignore', timeout: 60000 }).status === 0;

/** Runs Python code with the twin imported as `tl`, the JSON input on stdin; returns its JSON output. */
function twin(code: string, input: unknown): Record<string, number[]> {
  const prelude = [
    'import importlib.util, json, sys',
    `spec = importlib.util.spec_from_file_location("torch_lenet", ${JSON.stringify(TORCH_SCRIPT)})`,
    'tl = importlib.util.module_from_spec(spec); spec.loader.exec_module(tl)',
    'import torch',
    'inp = json.load(sys.stdin)',
  ].join('\n');
  const r = spawnSync(DEFAULT_PYTHON, ['-c', `${prelude}\n${code}`], { input: JSON.stringify(input), encoding: 'utf8', maxBuffer: 64 << 20, timeout: 120000 });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as Record<string, number[]>;
}

function values(seed: number, n: number, scale: number): Float32Array {
  let s = seed >>> 0;
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; a[i] = ((s / 4294967296) * 2 - 1) * scale; }
  return a;
}

test('PyTorch twin: weight and activation fake quantisation equal flatenn bit for bit (ties to even, clip, STE masks)', { skip: !torchOk && 'no torch under ' + DEFAULT_PYTHON }, () => {
  // Exact ties (max|w| = 7 makes s = 1) beside random values.
  const w = Float32Array.from([7, 0.5, 1.5, 2.5, -0.5, -2.5, 3.5, -6.5, 0, ...values(1, 500, 7)]);
  const x = Float32Array.from([-1, 0, 0.5, 1.5, 2.5, 14.5, 15, 15.5, 100, ...values(2, 500, 20)]);
  const r = 15;
  const k = kernels();
  const wq = new Float32Array(w.length), codes = new Int8Array(w.length), scales = new Float32Array(1);
  k.fakeQuantWeight(w, wq, codes, scales, 4, 1);
  const y = new Float32Array(x.length), mask = new Uint8Array(x.length);
  k.reluFakeQuant(x, y, mask, 4, r, null);
  const py = twin([
    'w = torch.tensor(inp["w"], dtype=torch.float32, requires_grad=True)',
    'q = tl.FakeQuantWeight.apply(w); q.backward(torch.ones_like(q))',
    'x = torch.tensor(inp["x"], dtype=torch.float32, requires_grad=True)',
    'y = tl.ReluFakeQuant.apply(x, torch.tensor(inp["r"], dtype=torch.float32)); y.backward(torch.ones_like(y))',
    's = tl.weight_scale(w)',
    'm = tl.QLeNet5().eval(); m.act_range[0] = inp["r"]',
    'with torch.no_grad(): y_infer = m.act(x.detach(), 0)  # the inference path (no mask kept)',
    'print(json.dumps({"wq": q.tolist(), "codes": torch.round(w.detach() / s).tolist(), "wgrad": w.grad.tolist(), "y": y.tolist(), "yInfer": y_infer.tolist(), "mask": x.grad.tolist()}))',
  ].join('\n'), { w: Array.from(w), x: Array.from(x), r });
  assert.deepEqual(Float32Array.from(py.wq!), wq);
  assert.deepEqual(Int8Array.from(py.codes!), codes);
  assert.deepEqual(py.wgrad, new Array(w.length).fill(1)); // straight through
  assert.deepEqual(Float32Array.from(py.y!), y);
  assert.deepEqual(Float32Array.from(py.yInfer!), y);
  assert.deepEqual(Uint8Array.from(py.mask!), mask);
  assert.deepEqual(Array.from(mask.subarray(0, 9)), [0, 0, 1, 1, 1, 1, 1, 0, 0]); // 0 < x <= r
});

test('PyTorch twin: the same LeNet-5 as flatenn (same weights and ranges give the same logits)', { skip: !torchOk && 'no torch under ' + DEFAULT_PYTHON }, () => {
  const model = createModel(defaultConfig('lenet5'), 1, 28);
  model.init(7);
  const n = 16;
  const raw = new Uint8Array(n * 28 * 28);
  let s = 12345;
  for (let i = 0; i < raw.length; i++) { s = (Math.imul(s, 1103515245) + 12345) >>> 0; raw[i] = (s >>> 16) & 1 ? (s >>> 8) & 255 : 0; }
  // One statistics pass sets the activation ranges; then the eval forward.
  model.forward(model.normalize(raw, n), { tape: new Tape(false), training: true, updateStats: true });
  const logits = model.forward(model.normalize(raw, n), { tape: new Tape(false), training: false, updateStats: false }).logits.data;
  const params: Record<string, number[]> = {};
  for (const e of model.params.entries) params[e.name] = Array.from(model.params.v(e.name).data);
  const py = twin([
    'm = tl.QLeNet5().eval()',
    'with torch.no_grad():',
    '    for name, v in inp["params"].items():',
    '        p = m.get_parameter(name); p.copy_(torch.tensor(v, dtype=torch.float32).view_as(p))',
    '    m.act_range.copy_(torch.tensor(inp["ranges"], dtype=torch.float32))',
    '    raw = torch.tensor(inp["raw"], dtype=torch.uint8).view(-1, 1, 28, 28)',
    '    print(json.dumps({"logits": m(raw).flatten().tolist()}))',
  ].join('\n'), { params, ranges: Array.from(model.actRange), raw: Array.from(raw) });
  const t = py.logits!;
  assert.equal(t.length, logits.length);
  // Float summation order differs, so an activation exactly at a rounding boundary may land
  // one level apart; the architectures must agree everywhere else.
  let close = 0, agree = 0;
  for (let i = 0; i < t.length; i++) if (Math.abs(t[i]! - logits[i]!) <= 1e-4 * (1 + Math.abs(logits[i]!))) close++;
  const argmax = (a: ArrayLike<number>, i: number) => { let b = 0; for (let j = 1; j < 10; j++) if (a[i * 10 + j]! > a[i * 10 + b]!) b = j; return b; };
  for (let i = 0; i < n; i++) if (argmax(t, i) === argmax(logits, i)) agree++;
  assert.ok(close >= 0.9 * t.length, `${close} of ${t.length} logits agree`);
  assert.ok(agree >= n - 1, `${agree} of ${n} predictions agree`);
});

test('PyTorch twin: bit flips on int4 codes (k distinct cells, two\'s complement nibbles)', { skip: !torchOk && 'no torch under ' + DEFAULT_PYTHON }, () => {
  const codes = Array.from({ length: 64 }, (_, i) => (i % 16) - 8);
  const py = twin([
    'c = torch.tensor(inp["codes"], dtype=torch.int32); g = torch.Generator().manual_seed(3)',
    'none = tl.apply_bitflips(c, 4 * len(c), 0, g)',
    'every = tl.apply_bitflips(c, 4 * len(c), 4 * len(c), g)',
    'half = tl.apply_bitflips(c, 4 * len(c), 100, g)',
    'diff = torch.bitwise_xor(torch.bitwise_and(half, 15), torch.bitwise_and(c, 15))',
    'bits = sum(((diff >> b) & 1).sum().item() for b in range(4))',
    'print(json.dumps({"none": none.tolist(), "every": every.tolist(), "half": half.tolist(), "bits": [bits]}))',
  ].join('\n'), { codes });
  assert.deepEqual(py.none, codes);
  assert.deepEqual(py.every, codes.map((c) => -1 - c)); // all four bits flipped: ~c
  assert.deepEqual(py.bits, [100]); // distinct cells: exactly k bits differ
  for (const v of py.half!) assert.ok(Number.isInteger(v) && v >= -8 && v <= 7);
});

test('campaign bench: the trial rows and the 1 -> N thread scaling row (a short run without PyTorch)', {
  skip: !fs.existsSync(path.join(DEBIAN_FASHION_MNIST, 't10k-images-idx3-ubyte.gz')) && process.env.CI !== 'true' ? 'FashionMNIST not installed' : false,
}, async () => {
  const prev = getThreads();
  try {
    const rows = await campaignBench({ threads: 2, quick: true, noTorch: true, rssTrials: 0, trainImages: 1000 });
    const trial = rows.find((r) => String(r.case).startsWith('trial: fresh bit-flip map'));
    assert.ok(trial && typeof trial.flatenn === 'number' && trial.flatenn > 0, JSON.stringify(rows));
    const sc = rows.find((r) => String(r.case).startsWith('trial scaling, 1 -> 2 threads'));
    assert.ok(sc, 'scaling row present');
    assert.equal(sc.metric, 'speed-up');
    assert.ok(typeof sc.flatenn === 'number' && sc.flatenn > 0 && Number.isFinite(sc.flatenn));
    assert.equal(sc.flatenn, (sc.flatennOneThreadMs as number) / (sc.flatennManyThreadsMs as number));
    assert.equal(sc.pass, (sc.flatenn as number) >= 1.8);
    assert.equal(getThreads(), 2, 'the thread count is restored');
    // one thread: no scaling row
    const one = await campaignBench({ threads: 1, quick: true, noTorch: true, rssTrials: 0, trainImages: 1000 });
    assert.ok(!one.some((r) => String(r.case).startsWith('trial scaling')));
  } finally {
    setThreads(prev);
  }
});
