// Training: determinism (seed, threads, resume), checkpoints readable by an
// independent reader, learning on real FashionMNIST with a small budget, SAQ
// and AS wiring, CLI refusals.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { defaultConfig, type TrainConfig } from '../../src/train/config';
import { trainModel } from '../../src/train/run';
import { loadCheckpoint } from '../../src/train/checkpoint';
import { evaluate, Trainer } from '../../src/train/trainer';
import { getThreads, setThreads } from '../../src/native/info';
import { loadDataset } from '../../src/data/dataset';
import { DEBIAN_FASHION_MNIST } from '../../src/data/dirs';
import { tmpDir } from '../data/fixtures';

const CLI = path.resolve(__dirname, '../../src/cli/main.js');
const haveData = fs.existsSync(path.join(DEBIAN_FASHION_MNIST, 't10k-images-idx3-ubyte.gz'));
const skip = !haveData && process.env.CI !== 'true' ? 'FashionMNIST not installed (apt-get install dataset-fashion-mnist)' : false;

function cfg(over: Partial<TrainConfig> = {}): TrainConfig {
  return { ...defaultConfig('lenet5'), epochs: 2, limitTrain: 1024, valSize: 5000, ...over };
}

const bytes = (p: string) => fs.readFileSync(p);

test('same seed and settings give bit-identical checkpoints, with 1 or 2 threads, and after a resume', { skip }, async () => {
  const dir = tmpDir('train-det');
  const prev = getThreads();
  const c = cfg({ saqRho: 0.1, actL1: [1e-5] });
  setThreads(1);
  await trainModel(c, { out: path.join(dir, 'a.safetensors'), quiet: true, testAtEnd: false });
  setThreads(2);
  await trainModel(c, { out: path.join(dir, 'b.safetensors'), quiet: true, testAtEnd: false });
  // interrupted after epoch 1, then resumed
  await trainModel({ ...c, epochs: 2 }, { out: path.join(dir, 'c.safetensors'), quiet: true, testAtEnd: false, onEpoch: (s) => { if (s.epoch === 1) throw new Error('stop'); } }).catch((e: Error) => assert.equal(e.message, 'stop'));
  const mid = await loadCheckpoint(path.join(dir, 'c.safetensors'));
  assert.equal(mid.meta.epoch, 1);
  await trainModel(null, { out: path.join(dir, 'c.safetensors'), resume: true, quiet: true, testAtEnd: false });
  setThreads(prev);
  assert.ok(bytes(path.join(dir, 'a.safetensors')).equals(bytes(path.join(dir, 'b.safetensors'))), '1 vs 2 threads');
  assert.ok(bytes(path.join(dir, 'a.safetensors')).equals(bytes(path.join(dir, 'c.safetensors'))), 'resumed vs uninterrupted');
  const other = cfg({ seed: 2, epochs: 1, saqRho: 0.1, actL1: [1e-5] });
  await trainModel(other, { out: path.join(dir, 'd.safetensors'), quiet: true, testAtEnd: false });
  const a = await loadCheckpoint(path.join(dir, 'a.safetensors')), d = await loadCheckpoint(path.join(dir, 'd.safetensors'));
  assert.notDeepEqual(Array.from(a.model.params.data.subarray(0, 50)), Array.from(d.model.params.data.subarray(0, 50)), 'another seed differs');
  fs.rmSync(dir, { recursive: true });
});

test('the checkpoint is valid safetensors for an independent json+numpy reader', { skip }, async () => {
  const dir = tmpDir('train-py');
  const out = path.join(dir, 'm.safetensors');
  await trainModel(cfg({ epochs: 1, limitTrain: 256 }), { out, quiet: true, testAtEnd: false });
  const py = spawnSync('/usr/bin/python3', [path.resolve(__dirname, '../../../scripts/read_safetensors.py'), out, '--values'], { encoding: 'utf8', maxBuffer: 1 << 28 });
  if (py.error || (py.status !== 0 && /No module named 'numpy'/.test(py.stderr) && process.env.CI !== 'true')) return;
  assert.equal(py.status, 0, py.stderr);
  const js = JSON.parse(py.stdout) as { metadata: Record<string, string>; tensors: Record<string, { dtype: string; shape: number[]; values: number[] }> };
  const ck = await loadCheckpoint(out);
  for (const name of ['conv1.weight', 'conv1.bias', 'fc3.weight', 'act.range', 'optimizer.momentum.fc1.weight']) assert.ok(js.tensors[name], `${name} present`);
  assert.deepEqual(js.tensors['conv1.weight']!.shape, [6, 1, 5, 5]);
  assert.equal(js.tensors['conv1.weight']!.dtype, '<f4');
  const e = ck.model.params.entries.find((x) => x.name === 'fc2.weight')!;
  assert.deepEqual((js.tensors['fc2.weight']!.values.flat(Infinity as 1) as unknown[]).map((x) => Math.fround(Number(x))), Array.from(ck.model.params.data.subarray(e.offset, e.offset + e.size)));
  assert.equal(JSON.parse(js.metadata.flatenn!).format, 'flatenn.checkpoint');
  // the json + numpy snippet in the README, run as written (with this file's path)
  const readme = fs.readFileSync(path.resolve(__dirname, '../../../README.md'), 'utf8');
  const snippet = [...readme.matchAll(/```python\n([\s\S]*?)```/g)].map((m) => m[1]!).find((c) => c.includes('import json, struct, numpy'));
  assert.ok(snippet, 'README has the json + numpy snippet');
  const run = spawnSync('/usr/bin/python3', ['-c', snippet.replace(/runs\/std\.safetensors/g, out)], { encoding: 'utf8' });
  assert.equal(run.status, 0, run.stderr);
  assert.equal(run.stdout.trim(), 'lenet5 (6, 1, 5, 5)');
  fs.rmSync(dir, { recursive: true });
});

test('a small budget learns FashionMNIST; AS raises sparsity; SAQ trains', { skip, timeout: 600_000 }, async () => {
  const train = await loadDataset('fashion-mnist', 'train');
  const testSet = await loadDataset('fashion-mnist', 'test');
  const run = (over: Partial<TrainConfig>) => {
    const tr = new Trainer(cfg({ epochs: 1, limitTrain: 0, ...over }), train);
    while (tr.epoch < tr.cfg.epochs) tr.runEpoch();
    return evaluate(tr.model, testSet, { end: 2000 });
  };
  const std = run({});
  assert.ok(std.accuracy > 0.8, `standard 4-bit LeNet-5 after one epoch: ${std.accuracy}`);
  const as = run({ actL1: [1e-4] });
  assert.ok(as.sparsity > std.sparsity, `AS sparsity ${as.sparsity} vs standard ${std.sparsity}`);
  const saq = run({ saqRho: 0.1 });
  assert.ok(saq.accuracy > 0.75, `SAQ accuracy after one epoch: ${saq.accuracy}`);
});

test('train CLI refuses bad flags with exit code 2 and a clear message', () => {
  const run = (...a: string[]) => spawnSync(process.execPath, [CLI, 'train', '--out', '/tmp/flatenn-never.safetensors', ...a], { encoding: 'utf8' });
  const cases: [string[], RegExp][] = [
    [['--arch', 'vgg'], /--arch must be one of lenet5, resnet18/],
    [['--lr', '-0.1'], /--lr must be in \[0, 100\]/],
    [['--epochs', 'ten'], /--epochs expects an integer/],
    [['--saq-rho', 'x'], /--saq-rho expects a number/],
    [['--act-l1', '1e-5,,2'], /--act-l1/],
    [['--weight-bits', '3'], /--weight-bits must be one of/],
    [['--bogus'], /Unknown option '--bogus'/],
  ];
  for (const [args, re] of cases) {
    const r = run(...args);
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, re);
  }
  const h = spawnSync(process.execPath, [CLI, 'train', '--help'], { encoding: 'utf8' });
  assert.equal(h.status, 0);
  assert.match(h.stdout, /--saq-rho/);
  const nores = spawnSync(process.execPath, [CLI, 'train', '--resume', '--out', '/tmp/flatenn-none-here.safetensors'], { encoding: 'utf8' });
  assert.equal(nores.status, 1);
  assert.match(nores.stderr, /no checkpoint/);
});

test('trainModel keeps the host event loop turning (yields between steps)', { skip }, async () => {
  const dir = tmpDir('train-loop');
  let last = Date.now(), worst = 0, ticks = 0;
  const iv = setInterval(() => { const now = Date.now(); worst = Math.max(worst, now - last); last = now; ticks++; }, 5);
  await trainModel(cfg({ epochs: 1, limitTrain: 3000, valSize: 0 }), { out: path.join(dir, 'm.safetensors'), quiet: true, testAtEnd: false });
  clearInterval(iv);
  assert.ok(ticks > 5, `timer ran ${ticks} times`);
  assert.ok(worst < 1000, `longest event-loop stall during training: ${worst} ms`);
  fs.rmSync(dir, { recursive: true });
});
