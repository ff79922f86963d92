// The int4 engine against the fake-quant float model it was exported from.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { decodeSafetensors, encodeSafetensors } from '../../src/io/safetensors';
import { deployModel } from '../../src/deploy/export';
import { deployedFromFile } from '../../src/deploy/format';
import { Engine } from '../../src/engine/engine';
import { GraphBuilder } from '../../src/nn/graph';
import { Model } from '../../src/nn/model';
import { defaultConfig } from '../../src/train/config';
import { evaluate, Trainer, type ImageSet } from '../../src/train/trainer';
import { loadDataset } from '../../src/data/dataset';
import { DEBIAN_FASHION_MNIST } from '../../src/data/dirs';
import { xorshift } from '../helpers/tiny-model';

const haveData = fs.existsSync(path.join(DEBIAN_FASHION_MNIST, 't10k-images-idx3-ubyte.gz'));
const skip = !haveData && process.env.CI !== 'true' ? 'FashionMNIST not installed' : false;

function deploy(model: Model, dataset: string) {
  const d = deployModel(model, dataset);
  return deployedFromFile(decodeSafetensors(encodeSafetensors(d.tensors, { flatenn: JSON.stringify(d.meta) })), 'exported', '');
}

test('LeNet-5: int4 engine predictions agree with the fake-quant model', { skip, timeout: 600_000 }, async () => {
  const train = await loadDataset('fashion-mnist', 'train');
  const testSet = await loadDataset('fashion-mnist', 'test');
  const tr = new Trainer({ ...defaultConfig('lenet5'), epochs: 1, limitTrain: 4000 }, train);
  tr.runEpoch();
  const n = 2000;
  const f = evaluate(tr.model, testSet, { end: n });
  const dm = deploy(tr.model, 'fashion-mnist');
  for (const backend of ['native', 'reference'] as const) {
    const e = new Engine(dm, { backend }).evaluateSync({ memory: dm.memory, images: testSet.images, labels: testSet.labels, count: backend === 'reference' ? 300 : n });
    let same = 0;
    for (let i = 0; i < e.count; i++) if (e.predictions[i] === f.predictions[i]) same++;
    assert.ok(same / e.count >= 0.995, `${backend}: ${same}/${e.count} predictions agree`);
    if (e.count === n) {
      assert.ok(Math.abs(e.accuracy - f.accuracy) <= 0.005, `accuracy int4 ${e.accuracy} vs fake-quant ${f.accuracy}`);
      assert.ok(Math.abs(e.sparsity - f.sparsity) <= 0.01, `sparsity int4 ${e.sparsity} vs fake-quant ${f.sparsity}`);
    }
  }
});

test('a residual net with BatchNorm, 1x1 shortcut and global pooling: BN folding and residual adds agree', { timeout: 300_000 }, () => {
  const g = new GraphBuilder('mini-res');
  let x = g.input(3, 8, 8);
  x = g.relu(g.bn(g.conv(x, 'stem', 3, 8, 3, 1, 1, false), 'stem_bn', 8));
  let y = g.relu(g.bn(g.conv(x, 'b.conv1', 8, 16, 3, 2, 1, false), 'b.bn1', 16));
  y = g.bn(g.conv(y, 'b.conv2', 16, 16, 3, 1, 1, false), 'b.bn2', 16);
  const sc = g.bn(g.conv(x, 'b.down', 8, 16, 1, 2, 0, false), 'b.down_bn', 16);
  x = g.relu(g.add(y, sc));
  x = g.linear(g.flatten(g.gap(x)), 'fc', 16, 10);
  const graph = g.build(x, 10);
  const model = new Model(graph, { weightBits: 4, actBits: 4, perChannel: true, firstLastBits: null }, { mean: [125.3, 123.0, 113.9], std: 64 });
  model.init(3);
  const r = xorshift(9);
  const N = 400;
  const set: ImageSet = { count: N, channels: 3, height: 8, width: 8, images: Uint8Array.from({ length: N * 192 }, () => Math.floor(r() * 256)), labels: Uint8Array.from({ length: N }, () => Math.floor(r() * 10)) };
  const tr = new Trainer({ ...defaultConfig('resnet18'), epochs: 2, batchSize: 50, lr: 0.05, augment: false, valSize: 0 }, set, model);
  tr.runEpoch(); tr.runEpoch();
  const f = evaluate(model, set);
  const dm = deploy(model, 'cifar10');
  for (const backend of ['native', 'reference'] as const) {
    const e = new Engine(dm, { backend }).evaluateSync({ memory: dm.memory, images: set.images, labels: set.labels, count: N });
    let same = 0;
    for (let i = 0; i < N; i++) if (e.predictions[i] === f.predictions[i]) same++;
    assert.ok(same / N >= 0.97, `${backend}: ${same}/${N} predictions agree`);
    assert.ok(Math.abs(e.sparsity - f.sparsity) <= 0.02, `${backend}: sparsity ${e.sparsity} vs ${f.sparsity}`);
  }
});
