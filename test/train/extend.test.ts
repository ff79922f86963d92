// `train --resume --epochs N` on a finished run: a new schedule segment for the
// added epochs, recorded in the config (extendedFrom) and in the history, and a
// different setting from an uninterrupted run of the same length.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { defaultConfig, type TrainConfig } from '../../src/train/config';
import { trainModel } from '../../src/train/run';
import { loadCheckpoint } from '../../src/train/checkpoint';
import { Trainer } from '../../src/train/trainer';
import { loadDataset } from '../../src/data/dataset';
import { tmpDir, writeMnist } from '../data/fixtures';

const CLI = path.resolve(__dirname, '../../src/cli/main.js');
const cfg = (over: Partial<TrainConfig> = {}): TrainConfig => ({ ...defaultConfig('lenet5'), epochs: 2, batchSize: 50, valSize: 100, ...over });

test('the learning rate of an extended run restarts its schedule at each extension', async () => {
  const dir = tmpDir('ext-lr');
  writeMnist(dir, 'train', 300, true);
  const ds = await loadDataset('fashion-mnist', 'train', { dataDir: dir });
  const plain = new Trainer(cfg({ epochs: 2 }), ds), ext = new Trainer(cfg({ epochs: 5, extendedFrom: [2, 4] }), ds);
  const spe = plain.stepsPerEpoch; // 6
  for (let s = 0; s < 2 * spe; s++) assert.equal(ext.learningRate(s), plain.learningRate(s), 'the original epochs keep their schedule');
  assert.equal(ext.learningRate(2 * spe), cfg().lr, 'cosine restarts at lr');
  const seg2 = new Trainer(cfg({ epochs: 2 }), ds); // a 2-epoch segment has the same shape
  for (let s = 0; s < 2 * spe; s++) assert.equal(ext.learningRate(2 * spe + s), seg2.learningRate(s));
  const seg3 = new Trainer(cfg({ epochs: 1 }), ds);
  for (let s = 0; s < spe; s++) assert.equal(ext.learningRate(4 * spe + s), seg3.learningRate(s));
  const step = new Trainer(cfg({ epochs: 4, schedule: 'step', milestones: [0.5], extendedFrom: [2] }), ds);
  assert.equal(step.learningRate(2 * spe), cfg().lr, 'step schedule: the extension starts again at lr');
  assert.equal(step.learningRate(3 * spe), cfg().lr * cfg().gamma, 'milestones are fractions of the segment');
  assert.throws(() => new Trainer(cfg({ epochs: 3, extendedFrom: [3] }), ds), /extendedFrom must ascend within \[1, epochs\)/);
  fs.rmSync(dir, { recursive: true, force: true });
});

test('train --resume --epochs N extends a finished run; refuses to extend an unfinished one or to shorten', async () => {
  const dir = tmpDir('ext-run');
  writeMnist(dir, 'train', 300, true);
  writeMnist(dir, 'test', 50, true);
  const a = path.join(dir, 'a.safetensors'), b = path.join(dir, 'b.safetensors');
  const two = await trainModel(cfg(), { out: a, dataDir: dir, testAtEnd: false });
  const r = await trainModel(null, { out: a, dataDir: dir, resume: true, epochs: 3, testAtEnd: false });
  assert.equal(r.history.length, 3);
  assert.deepEqual(r.history.slice(0, 2), two.history, 'the first epochs are the finished run');
  assert.equal(r.history[2]!.extension, 1);
  assert.equal(r.history[0]!.extension, undefined);
  const m = await loadCheckpoint(a);
  assert.equal(m.meta.epoch, 3);
  assert.equal(m.meta.config.epochs, 3);
  assert.deepEqual(m.meta.config.extendedFrom, [2]);
  assert.equal(m.meta.history[2]!.extension, 1, 'recorded in the checkpoint history');
  // an uninterrupted 3-epoch run is a different setting (and different weights)
  await trainModel(cfg({ epochs: 3 }), { out: b, dataDir: dir, testAtEnd: false });
  const u = await loadCheckpoint(b);
  assert.equal(u.meta.config.extendedFrom, undefined);
  assert.notDeepEqual(u.meta.config, m.meta.config);
  assert.notDeepEqual(Array.from(u.model.params.data), Array.from(m.model.params.data));
  // a plain resume of the extended run does nothing more; extending again adds a second extension
  const same = await trainModel(null, { out: a, dataDir: dir, resume: true, testAtEnd: false });
  assert.equal(same.epochs.length, 0);
  const again = await trainModel(null, { out: a, dataDir: dir, resume: true, epochs: 4, testAtEnd: false });
  assert.deepEqual(again.config.extendedFrom, [2, 3]);
  assert.equal(again.history[3]!.extension, 2);
  await assert.rejects(trainModel(null, { out: a, dataDir: dir, resume: true, epochs: 2 }), /already has 4 epochs; --epochs 2 would shorten it/);
  // an unfinished run: finish it first
  const c = path.join(dir, 'c.safetensors');
  await trainModel(cfg({ epochs: 3 }), { out: c, dataDir: dir, testAtEnd: false, onEpoch: (s) => { if (s.epoch === 1) throw new Error('stop'); } }).catch(() => undefined);
  await assert.rejects(trainModel(null, { out: c, dataDir: dir, resume: true, epochs: 5 }), /is not finished \(epoch 1 of 3\): resume it without --epochs first/);
  // CLI: --epochs is the one training flag --resume takes
  const bad = spawnSync(process.execPath, [CLI, 'train', '--resume', '--epochs', '5', '--lr', '0.1', '--out', a, '--data-dir', dir], { encoding: 'utf8' });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /do not give --lr \(only --epochs/);
  const ok = spawnSync(process.execPath, [CLI, 'train', '--resume', '--epochs', '5', '--out', a, '--data-dir', dir, '--quiet'], { encoding: 'utf8' });
  assert.equal(ok.status, 0, ok.stderr);
  assert.deepEqual((await loadCheckpoint(a)).meta.config.extendedFrom, [2, 3, 4]);
  fs.rmSync(dir, { recursive: true, force: true });
});
