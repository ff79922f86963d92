// Regression test of issue #11, defect 5: `eval --compare-int4 --split val` on
// CIFAR-10 (3x32x32 images) ran the int4 engine on images offset by
// 784 * channels per image instead of 3 * 32 * 32. The int4 figures the CLI
// reports must be those of the int4 engine on the validation images themselves.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { defaultConfig } from '../../src/train/config';
import { trainModel } from '../../src/train/run';
import { loadCheckpoint } from '../../src/train/checkpoint';
import { deployModel } from '../../src/deploy/export';
import { deployedFromFile } from '../../src/deploy/format';
import { decodeSafetensors, encodeSafetensors } from '../../src/io/safetensors';
import { Engine } from '../../src/engine/engine';
import { loadDataset } from '../../src/data/dataset';
import { tmpDir } from '../data/fixtures';

const CLI = path.resolve(__dirname, '../../src/cli/main.js');

test('eval --compare-int4 --split val on 3x32x32 images evaluates the validation images', { timeout: 300_000 }, async () => {
  const dir = tmpDir('cmp4');
  // Five training batches; only the first 200 records of batch 1 and the last 16 of batch 5 (the
  // validation split below) have patterned pixels, so a wrong offset lands on blank images.
  const REC = 3073;
  for (let b = 1; b <= 5; b++) {
    const buf = Buffer.alloc(10000 * REC);
    for (let r = 0; r < 10000; r++) {
      buf[r * REC] = (r * 7 + b) % 10;
      if ((b === 1 && r < 200) || (b === 5 && r >= 10000 - 16)) for (let k = 0; k < 3072; k++) buf[r * REC + 1 + k] = (r * 31 + b * 7 + k * 13 + ((k * k) >> 5)) & 255;
    }
    fs.writeFileSync(path.join(dir, `data_batch_${b}.bin`), buf);
  }
  const ck = path.join(dir, 'c.safetensors');
  await trainModel({ ...defaultConfig('lenet5'), dataset: 'cifar10', augment: false, epochs: 1, limitTrain: 128, valSize: 16, batchSize: 32 }, { out: ck, quiet: true, dataDir: dir, testAtEnd: false });
  const r = spawnSync(process.execPath, [CLI, 'eval', '--model', ck, '--split', 'val', '--compare-int4', '--json', '--data-dir', dir], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const j = JSON.parse(r.stdout) as { count: number; int4: { sparsity: number; accuracy: number } };
  assert.equal(j.count, 16);
  // the int4 engine run here, on the validation images [49984, 50000)
  const { model, meta } = await loadCheckpoint(ck);
  const d = deployModel(model, meta.dataset);
  const dm = deployedFromFile(decodeSafetensors(encodeSafetensors(d.tensors, { flatenn: JSON.stringify(d.meta) })), 'exported', '');
  const ds = await loadDataset('cifar10', 'train', { dataDir: dir });
  const per = 3 * 32 * 32, start = ds.count - 16;
  const e = new Engine(dm).evaluateSync({ images: ds.images.subarray(start * per, ds.count * per), labels: ds.labels.subarray(start), count: 16 });
  assert.equal(j.int4.sparsity, e.sparsity);
  assert.equal(j.int4.accuracy, e.accuracy);
  // and the blank images a 784-per-channel offset would read give other figures (the check can fail)
  const wrong = start * 784 * 3;
  const w = new Engine(dm).evaluateSync({ images: ds.images.subarray(wrong, wrong + 16 * per), labels: ds.labels.subarray(start), count: 16 });
  assert.notEqual(w.sparsity, e.sparsity);
  fs.rmSync(dir, { recursive: true });
});
