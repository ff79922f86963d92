// The int4 engine against the fake-quant float model on the real CIFAR ResNet-18 topology at
// --width 0.25 (strided convs, 1x1 projection shortcuts, residual adds with requantisation, BN
// folded, GAP), trained for a few steps on a small synthetic set it can learn (class colours +
// noise): top-1 agreement on held-out images, both engine backends.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { decodeSafetensors, encodeSafetensors } from '../../src/io/safetensors';
import { deployModel } from '../../src/deploy/export';
import { deployedFromFile } from '../../src/deploy/format';
import { Engine } from '../../src/engine/engine';
import { defaultConfig } from '../../src/train/config';
import { evaluate, Trainer, type ImageSet } from '../../src/train/trainer';
import { xorshift } from '../helpers/tiny-model';

/** n images: class c has its own colour per channel and a stripe, plus uniform noise; labels i % 10. */
function synthetic(n: number, seed: number): ImageSet {
  const r = xorshift(seed), images = new Uint8Array(n * 3072), labels = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const c = i % 10;
    labels[i] = c;
    for (let ch = 0; ch < 3; ch++) {
      const base = 30 + 190 * ((c >> ch) & 1) - 40 * (c >> 3) * ch;
      for (let y = 0; y < 32; y++) for (let x = 0; x < 32; x++) {
        const stripe = (c >= 8 ? y : x) % 4 < 2 ? 30 : 0;
        images[i * 3072 + ch * 1024 + y * 32 + x] = Math.max(0, Math.min(255, base + stripe + Math.floor((r() - 0.5) * 40)));
      }
    }
  }
  return { count: n, channels: 3, height: 32, width: 32, images, labels };
}

test('ResNet-18 width 0.25: int4 engine predictions agree with the fake-quant model (both backends)', { timeout: 600_000 }, () => {
  const train = synthetic(320, 1), held = synthetic(400, 2);
  const tr = new Trainer({ ...defaultConfig('resnet18'), width: 0.25, epochs: 1, batchSize: 32, lr: 0.05, valSize: 0 }, train);
  tr.runEpoch();
  const f = evaluate(tr.model, held);
  assert.ok(f.accuracy > 0.3, `the model learnt something: fake-quant accuracy ${f.accuracy}`);
  const d = deployModel(tr.model, 'cifar10');
  const dm = deployedFromFile(decodeSafetensors(encodeSafetensors(d.tensors, { flatenn: JSON.stringify(d.meta) })), 'exported', '');
  for (const backend of ['native', 'reference'] as const) {
    const n = backend === 'native' ? held.count : 60;
    const e = new Engine(dm, { backend }).evaluateSync({ images: held.images, labels: held.labels, count: n });
    let same = 0;
    for (let i = 0; i < n; i++) if (e.predictions[i] === f.predictions[i]) same++;
    assert.ok(same / n >= 0.99, `${backend}: ${same}/${n} predictions agree`);
    if (n === held.count) assert.ok(Math.abs(e.sparsity - f.sparsity) <= 0.01, `${backend}: sparsity ${e.sparsity} vs ${f.sparsity}`);
  }
});
