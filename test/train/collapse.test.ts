// Collapse detection (DESIGN §3): a non-finite loss stops the run with the
// epoch/step; a run forced to collapse is flagged on stderr, in the JSON output,
// in the checkpoint and in the log; --saq-warmup ramps rho and is recorded.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { detectCollapse, TrainingDivergedError } from '../../src/train/collapse';
import { defaultConfig } from '../../src/train/config';
import { Trainer } from '../../src/train/trainer';
import { loadCheckpoint } from '../../src/train/checkpoint';
import { loadDataset } from '../../src/data/dataset';
import { DEBIAN_FASHION_MNIST } from '../../src/data/dirs';
import { tmpDir } from '../data/fixtures';

const CLI = path.resolve(__dirname, '../../src/cli/main.js');
const haveData = fs.existsSync(path.join(DEBIAN_FASHION_MNIST, 't10k-images-idx3-ubyte.gz'));
const skip = !haveData && process.env.CI !== 'true' ? 'FashionMNIST not installed (apt-get install dataset-fashion-mnist)' : false;

test('detectCollapse: chance with loss near ln(classes), dead layers, healthy runs', () => {
  const ln10 = Math.log(10);
  const base = { epoch: 3, numClasses: 10, on: 'validation' as const, perLayerSparsity: [0.5, 0.6] };
  assert.deepEqual(detectCollapse({ ...base, accuracy: 0.1, loss: ln10 })?.kinds, ['chance']);
  assert.equal(detectCollapse({ ...base, accuracy: 0.1, loss: 5 }), null, 'at chance but the loss is far from ln(10): not this pattern');
  assert.equal(detectCollapse({ ...base, accuracy: 0.6, loss: ln10 }), null);
  const d = detectCollapse({ ...base, accuracy: 0.8, loss: 0.5, perLayerSparsity: [0.4, 1] })!;
  assert.deepEqual(d.kinds, ['dead-layer']);
  assert.deepEqual(d.deadLayers, [1]);
  assert.match(d.message, /epoch 3.*ReLU layer 2 is zero/);
  assert.equal(detectCollapse({ ...base, accuracy: 0.9, loss: 0.3 }), null);
});

test('a non-finite loss stops training with the epoch, the step and a hint', { skip }, async () => {
  const train = await loadDataset('fashion-mnist', 'train');
  const tr = new Trainer({ ...defaultConfig('lenet5'), epochs: 1, limitTrain: 256, valSize: 0 }, train);
  const f = tr.model.forward.bind(tr.model);
  tr.model.forward = (x, o) => { const r = f(x, o); r.logits.data[0] = Infinity; return r; };
  assert.throws(() => tr.runEpoch(), (e: unknown) => e instanceof TrainingDivergedError && /non-finite loss at epoch 1, step 1 \(batch 1 of the epoch\).*Hint: lower --lr/.test(e.message));
  // an absurd learning rate: the weights blow up in the first step; stopped at step 1 with the hint, not a kernel error
  const tr2 = new Trainer({ ...defaultConfig('lenet5'), epochs: 1, limitTrain: 256, valSize: 0, lr: 1e38 }, train);
  assert.throws(() => tr2.runEpoch(), (e: unknown) => e instanceof TrainingDivergedError && /non-finite \w+ at epoch 1, step [12] .*Hint/.test(e.message));
});

test('--saq-warmup ramps rho linearly over the first E epochs and is recorded', { skip }, async () => {
  const train = await loadDataset('fashion-mnist', 'train');
  const tr = new Trainer({ ...defaultConfig('lenet5'), epochs: 3, limitTrain: 1280, valSize: 0, saqRho: 0.2, saqWarmup: 2 }, train);
  assert.equal(tr.stepsPerEpoch, 10);
  assert.equal(tr.rhoAt(0), 0);
  assert.ok(Math.abs(tr.rhoAt(5) - 0.05) < 1e-12);
  assert.ok(Math.abs(tr.rhoAt(10) - 0.1) < 1e-12);
  assert.equal(tr.rhoAt(20), 0.2);
  assert.equal(tr.rhoAt(25), 0.2);
  const off = new Trainer({ ...defaultConfig('lenet5'), epochs: 1, limitTrain: 128, valSize: 0, saqRho: 0.2 }, train);
  assert.equal(off.rhoAt(0), 0.2);
  const dir = tmpDir('warm');
  const out = path.join(dir, 'w.safetensors');
  const r = spawnSync(process.execPath, [CLI, 'train', '--epochs', '1', '--limit-train', '256', '--saq-rho', '0.1', '--saq-warmup', '1', '--val-size', '0', '--out', out, '-q'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.equal((await loadCheckpoint(out)).meta.config.saqWarmup, 1);
  fs.rmSync(dir, { recursive: true });
});

test('a tiny run forced to collapse (huge AS penalty) is flagged on stderr, in --json, in the checkpoint and in the log', { skip }, async () => {
  const dir = tmpDir('collapse');
  const out = path.join(dir, 'dead.safetensors');
  const r = spawnSync(process.execPath, [CLI, 'train', '--epochs', '1', '--limit-train', '1000', '--act-l1', '1', '--out', out, '--json', '-q'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /warning: .*collapse flagged at epoch 1: .*every activation of ReLU layers? [\d, ]+ is zero/);
  const j = JSON.parse(r.stdout) as { collapsed: boolean; collapse: { epoch: number; kinds: string[] }[] };
  assert.equal(j.collapsed, true);
  assert.ok(j.collapse[0]!.kinds.includes('dead-layer'));
  const log = fs.readFileSync(path.join(dir, 'dead.log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { collapse?: unknown });
  assert.ok(log[0]!.collapse, 'flag in the log');
  // in the checkpoint (deterministic metadata)
  const ck = await loadCheckpoint(out);
  assert.ok(ck.meta.history[0]!.collapse!.kinds.includes('dead-layer'));
  // a healthy run of the same budget is not flagged
  const ok = spawnSync(process.execPath, [CLI, 'train', '--epochs', '1', '--limit-train', '4000', '--out', path.join(dir, 'ok.safetensors'), '--json', '-q'], { encoding: 'utf8' });
  assert.equal(ok.status, 0, ok.stderr);
  assert.equal((JSON.parse(ok.stdout) as { collapsed: boolean }).collapsed, false, ok.stderr);
  fs.rmSync(dir, { recursive: true });
});
