// The ResNet-18 benchmark (bench/resnet18.ts): its rows at a tiny budget without PyTorch,
// its place in `npm run bench` (--only resnet18), and the PyTorch twin (bench/torch_resnet18.py)
// checked against flatenn's own ResNet-18: the same parameters, BatchNorm statistics and
// activation ranges give the same logits, in float and with 4-bit fake quantisation. The
// PyTorch checks are skipped where /usr/bin/python3 has no torch.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { Tape } from '../../src/autograd/tape';
import { getIsa } from '../../src/native/info';
import { defaultConfig } from '../../src/train/config';
import { createModel } from '../../src/train/trainer';
import { DEFAULT_PYTHON, TORCH_RESNET18_SCRIPT } from '../../bench/common';
import { INFER_GOALS, resnet18Bench, TRAIN_GOALS } from '../../bench/resnet18';
import { MODULE_NAMES } from '../../bench/run';

test('resnet18 bench at a tiny budget (--no-torch): a training row and an inference row, flatenn side only', async () => {
  const rows = await resnet18Bench({ threads: 1, width: 0.125, batch: 8, steps: 1, warmup: 0, batches: 1, noTorch: true });
  assert.equal(rows.length, 2);
  const [train, infer] = rows;
  assert.match(train!.case, /^ResNet-18 fake-quant training \(conventional 4-bit QAT step\), width 0\.125, batch 8$/);
  assert.match(infer!.case, /^ResNet-18 inference \(int4 engine vs PyTorch fp32, eval, no_grad\), width 0\.125, batch 8$/);
  const isa = getIsa();
  for (const [r, goals] of [[train!, TRAIN_GOALS], [infer!, INFER_GOALS]] as const) {
    assert.equal(r.bench, 'resnet18');
    assert.equal(r.metric, 'images/s');
    assert.ok(typeof r.flatenn === 'number' && Number.isFinite(r.flatenn) && r.flatenn > 0, `flatenn ${String(r.flatenn)}`);
    assert.equal(r.pytorch, undefined);
    assert.equal(r.ratio, undefined);
    assert.equal(r.pass, undefined); // nothing to judge without the peer
    assert.equal(r.goal, goals[isa]?.text);
    assert.equal(r.threads, 1);
    assert.equal(r.isa, isa);
    assert.equal(r.width, 0.125);
    assert.equal(r.batch, 8);
    assert.equal(typeof r.cpu, 'string');
    assert.equal(typeof r.loadFlatenn, 'number');
    assert.match(String(r.notes), /PyTorch skipped/);
    assert.doesNotMatch(String(r.notes), /failed/);
  }
  assert.ok(Number.isFinite(train!.flatennStepMs as number) && Number.isFinite(infer!.flatennBatchMs as number));
  assert.equal(infer!.backend, 'native');
});

test('npm run bench knows the resnet18 module (--only resnet18)', () => {
  assert.ok((MODULE_NAMES as readonly string[]).includes('resnet18'));
  const run = path.resolve(__dirname, '../../bench/run.js');
  const r = spawnSync(process.execPath, [run, '--only', 'resnet18,nosuch'], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /--only: unknown benchmark 'nosuch' \(known: gemm, qgemm, train, campaign, resnet18\)/);
});

const torchOk = spawnSync(DEFAULT_PYTHON, ['-c', 'import torch, numpy'], { stdio: 'ignore', timeout: 60000 }).status === 0;

test('PyTorch twin: the same ResNet-18 as flatenn (same weights, BN statistics and ranges give the same logits)', { skip: !torchOk && 'no torch under ' + DEFAULT_PYTHON }, () => {
  const n = 8, width = 0.125;
  const raw = new Uint8Array(n * 3 * 32 * 32);
  let s = 12345;
  for (let i = 0; i < raw.length; i++) { s = (Math.imul(s, 1103515245) + 12345) >>> 0; raw[i] = (s >>> 8) & 255; }
  const logitsOf = (weightBits: number, actBits: number) => {
    const model = createModel({ ...defaultConfig('resnet18'), width, weightBits, actBits }, 3, 32);
    model.init(7);
    // BatchNorm's affine parameters away from 1 and 0, so that the twin must place them right.
    for (const e of model.params.entries) {
      const d = model.params.v(e.name).data;
      if (e.kind === 'bn_weight') for (let i = 0; i < d.length; i++) d[i] = 0.75 + ((i * 7) % 5) / 10;
      else if (e.kind === 'bn_bias') for (let i = 0; i < d.length; i++) d[i] = (((i * 3) % 7) - 3) / 20;
    }
    // One statistics pass sets BN's running statistics and the activation ranges; then the eval forward.
    model.forward(model.normalize(raw, n), { tape: new Tape(false), training: true, updateStats: true });
    const logits = model.forward(model.normalize(raw, n), { tape: new Tape(false), training: false, updateStats: false }).logits.data;
    const params: Record<string, number[]> = {}, buffers: Record<string, number[]> = {};
    for (const e of model.params.entries) params[e.name] = Array.from(model.params.v(e.name).data);
    for (const [name, b] of model.bn) { buffers[`${name}.running_mean`] = Array.from(b.runningMean); buffers[`${name}.running_var`] = Array.from(b.runningVar); }
    return { logits, params, buffers, ranges: Array.from(model.actRange) };
  };
  const float = logitsOf(32, 0), quant = logitsOf(4, 4);
  const code = [
    'import importlib.util, json, sys',
    `spec = importlib.util.spec_from_file_location("torch_resnet18", ${JSON.stringify(TORCH_RESNET18_SCRIPT)})`,
    'tr = importlib.util.module_from_spec(spec); spec.loader.exec_module(tr)',
    'import torch',
    'inp = json.load(sys.stdin)',
    'out = {}',
    'for key, quant in (("float", False), ("quant", True)):',
    '    m = tr.QResNet18(inp["width"], quant=quant).eval()',
    '    d = inp[key]',
    '    names = set(n for n, _ in m.named_parameters())',
    '    assert names == set(d["params"]), sorted(names ^ set(d["params"]))',
    '    with torch.no_grad():',
    '        for name, v in d["params"].items():',
    '            p = m.get_parameter(name); p.copy_(torch.tensor(v, dtype=torch.float32).view_as(p))',
    '        for name, v in d["buffers"].items():',
    '            b = m.get_buffer(name); b.copy_(torch.tensor(v, dtype=torch.float32))',
    '        m.act_range.copy_(torch.tensor(d["ranges"], dtype=torch.float32))',
    '        raw = torch.tensor(inp["raw"], dtype=torch.uint8).view(-1, 3, 32, 32)',
    '        out[key] = m(raw).flatten().tolist()',
    'out["sites"] = [m.sites]',
    'print(json.dumps(out))',
  ].join('\n');
  const strip = (x: ReturnType<typeof logitsOf>) => ({ params: x.params, buffers: x.buffers, ranges: x.ranges });
  const r = spawnSync(DEFAULT_PYTHON, ['-c', code], {
    input: JSON.stringify({ width, raw: Array.from(raw), float: strip(float), quant: strip(quant) }), encoding: 'utf8', maxBuffer: 64 << 20, timeout: 120000,
  });
  assert.equal(r.status, 0, r.stderr);
  const py = JSON.parse(r.stdout) as Record<string, number[]>;
  assert.deepEqual(py.sites, [quant.ranges.length]); // 17 ReLU sites, in flatenn's order
  // Float: the same architecture to rounding error (summation order differs).
  const f = py.float!;
  assert.equal(f.length, float.logits.length);
  for (let i = 0; i < f.length; i++) assert.ok(Math.abs(f[i]! - float.logits[i]!) <= 1e-3 * (1 + Math.abs(float.logits[i]!)), `float logit ${i}: ${f[i]} vs ${float.logits[i]}`);
  // 4-bit: an activation exactly at a rounding boundary may land one level apart and carry on
  // through the later layers; the networks must agree almost everywhere.
  const q = py.quant!;
  let close = 0;
  for (let i = 0; i < q.length; i++) if (Math.abs(q[i]! - quant.logits[i]!) <= 1e-3 * (1 + Math.abs(quant.logits[i]!))) close++;
  assert.ok(close >= 0.9 * q.length, `${close} of ${q.length} fake-quant logits agree`);
});

test('PyTorch twin: `all` mode at a tiny budget prints the training and inference rates', { skip: !torchOk && 'no torch under ' + DEFAULT_PYTHON }, () => {
  const r = spawnSync(DEFAULT_PYTHON, [TORCH_RESNET18_SCRIPT, 'all', '--width', '0.125', '--batch', '4', '--steps', '1', '--warmup', '0', '--batches', '1', '--infer-warmup', '0', '--pool', '1'],
    { encoding: 'utf8', timeout: 120000 });
  assert.equal(r.status, 0, r.stderr);
  const d = JSON.parse(r.stdout.trim().split('\n').pop()!) as { channels: number[]; batch: number; train: Record<string, number>; infer: Record<string, number>; blas: Record<string, unknown> };
  assert.deepEqual(d.channels, [8, 16, 32, 64]);
  assert.equal(d.batch, 4);
  for (const k of ['train', 'infer'] as const) {
    assert.ok(d[k].images_per_s! > 0 && Number.isFinite(d[k].images_per_s!), `${k}: ${JSON.stringify(d[k])}`);
    assert.equal(d[k].samples, 1);
  }
  assert.ok(Number.isFinite(d.train.first_loss!));
  assert.equal(typeof d.blas.sgemm_gflops, 'number');
});
