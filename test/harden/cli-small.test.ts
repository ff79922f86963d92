// Regression tests of issue #11 outside campaigns: engine batch sizes, training
// options and resumed checkpoints, empty splits, `data --help`, EPIPE, signal
// and kill -9 cleanup of temporary files and locks.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { spawn, spawnSync } from 'node:child_process';
import { readDeployed } from '../../src/deploy/format';
import { Engine } from '../../src/engine/engine';
import { defaultConfig, type TrainConfig } from '../../src/train/config';
import { trainModel } from '../../src/train/run';
import { loadCheckpoint } from '../../src/train/checkpoint';
import { decodeSafetensors, encodeSafetensors } from '../../src/io/safetensors';
import { removeStaleTemps } from '../../src/io/atomic';
import { writeTinyModel } from '../helpers/tiny-model';
import { tar, tmpDir, writeMnist } from '../data/fixtures';
import { loadDataset } from '../../src/data/dataset';

const CLI = path.resolve(__dirname, '../../src/cli/main.js');
const cfg = (over: Partial<TrainConfig> = {}): TrainConfig => ({ ...defaultConfig('lenet5'), epochs: 1, limitTrain: 64, valSize: 16, batchSize: 32, ...over });

test('Engine.evaluate: batch sizes 0, negative, NaN, fractional are refused at once (no hang)', async () => {
  const dir = tmpDir('batch');
  const file = path.join(dir, 'tiny.safetensors');
  await writeTinyModel(file);
  const m = await readDeployed(file);
  const e = new Engine(m);
  const images = new Uint8Array(3 * 784), labels = Uint8Array.of(1, 2, 3);
  for (const b of [0, -1, NaN, 1.5, Infinity, '2']) {
    await assert.rejects(e.evaluate({ images, labels, batchSize: b as number }), (err: Error) => err instanceof RangeError && /batchSize must be an integer in \[1, /.test(err.message), String(b));
    assert.throws(() => e.evaluateSync({ images, labels, batchSize: b as number }), RangeError, String(b));
  }
  for (const n of [-3, 2.5, NaN, 4]) await assert.rejects(e.evaluate({ images, labels, count: n }), RangeError, String(n));
  await assert.rejects(e.evaluate({ images, labels: Uint8Array.of(1, 2, 10) }), /label 10 of image 2 is not a class of this model/);
  await assert.rejects(e.evaluate({ images, labels, memory: [] as unknown as Uint8Array }), /memory must be a Uint8Array/);
  await assert.rejects(e.evaluate(null as never), /evaluate expects an options object/);
  assert.equal((await e.evaluate({ images, labels, batchSize: 2 })).count, 3);
  fs.rmSync(dir, { recursive: true });
});

test('trainModel and validateConfig fail with messages, not JS internals', async () => {
  await assert.rejects(trainModel(cfg(), {} as never), /out must be the checkpoint path/);
  await assert.rejects(trainModel(null, { out: '/tmp/x.safetensors' }), /training config must be an object, got null/);
  await assert.rejects(trainModel({ ...cfg(), milestones: 'x' } as never, { out: '/tmp/x.safetensors' }), /milestones must be an array of numbers/);
  await assert.rejects(trainModel(cfg(), null as never), /train options must be an object/);
});

test('train --resume refuses a checkpoint whose epoch or step is not valid; empty splits are refused before training', async () => {
  const dir = tmpDir('resume');
  writeMnist(dir, 'train', 96, false);
  writeMnist(dir, 'test', 8, false);
  const ck = path.join(dir, 'run.safetensors');
  await trainModel(cfg(), { out: ck, quiet: true, dataDir: dir });
  const file = decodeSafetensors(fs.readFileSync(ck), ck);
  const meta = JSON.parse(file.metadata.flatenn!) as Record<string, unknown>;
  const bad = path.join(dir, 'bad.safetensors');
  for (const [patch, re] of [
    [{ epoch: 'x' }, /epoch must be an integer in \[0, 1\]/],
    [{ step: -5 }, /step -5 does not match epoch 1/],
    [{ step: 1e18 }, /step 1000000000000000000 does not match/],
    [{ epoch: 5 }, /epoch must be an integer in \[0, 1\]/],
    [{ config: null }, /config: the training config must be an object, got null/],
    [{ trainImages: -1 }, /trainImages must be an integer >= 0/],
    [{ trainImages: 0 }, /step 2 does not match epoch 1 \(1 x 0 steps per epoch = 0\)/],
  ] as [Record<string, unknown>, RegExp][]) {
    fs.writeFileSync(bad, encodeSafetensors(file.tensors, { flatenn: JSON.stringify({ ...meta, ...patch }) }));
    await assert.rejects(loadCheckpoint(bad), (e: Error) => re.test(e.message) && e.message.includes(bad), JSON.stringify(patch));
    const r = spawnSync(process.execPath, [CLI, 'train', '--resume', '--out', bad, '--data-dir', dir, '-q'], { encoding: 'utf8' });
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, re);
  }
  fs.writeFileSync(bad, encodeSafetensors(file.tensors, { flatenn: 'null' }));
  await assert.rejects(loadCheckpoint(bad), /the 'flatenn' metadata is null, not an object/);
  // an empty test split: eval fails (no "accuracy NaN%"), train fails before writing a checkpoint
  const empty = path.join(dir, 'empty');
  writeMnist(empty, 'train', 96, false);
  writeMnist(empty, 'test', 0, false);
  const ev = spawnSync(process.execPath, [CLI, 'eval', '--model', ck, '--data-dir', empty], { encoding: 'utf8' });
  assert.equal(ev.status, 1, ev.stdout + ev.stderr);
  assert.match(ev.stderr, /test split .*holds no images/);
  const out2 = path.join(empty, 'never.safetensors');
  const tr = spawnSync(process.execPath, [CLI, 'train', '--out', out2, '--data-dir', empty, '--limit-train', '32', '--val-size', '16', '--epochs', '1', '-q'], { encoding: 'utf8' });
  assert.equal(tr.status, 1, tr.stderr);
  assert.match(tr.stderr, /test split holds no images/);
  assert.equal(fs.existsSync(out2), false);
  fs.rmSync(dir, { recursive: true });
});

test('data --help lists the subcommands; a closed pipe ends output quietly', async () => {
  const h = spawnSync(process.execPath, [CLI, 'data', '--help'], { encoding: 'utf8' });
  assert.equal(h.status, 0, h.stderr);
  assert.match(h.stdout, /data fetch/);
  assert.match(h.stdout, /data info/);
  const u = spawnSync(process.execPath, [CLI, 'data', 'frob'], { encoding: 'utf8' });
  assert.equal(u.status, 2);
  assert.match(u.stderr, /unknown subcommand 'frob'/);
  // the reader goes away before the command writes (like `| head` after its first lines)
  const child = spawn(process.execPath, [CLI, 'train', '--help'], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.destroy();
  let err = '';
  child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
  const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
  assert.equal(code, 0, err);
  assert.doesNotMatch(err, /EPIPE|at |Error/);
});

test('SIGINT and SIGTERM remove the results lock; stale temporary files of a killed writer are removed', { timeout: 120_000 }, async () => {
  const dir = tmpDir('sig');
  writeMnist(dir, 'test', 20, false);
  const model = path.join(dir, 'tiny.safetensors');
  await writeTinyModel(model);
  for (const [sig, want] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
    const out = path.join(dir, `r-${sig}.jsonl`);
    const child = spawn(process.execPath, [CLI, 'inject', '--model', model, '--data-dir', dir, '--trials', '100000', '--rates', '0.01', '--faults', 'bitflip', '--out', out, '-q'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
    const t0 = Date.now();
    while (!(fs.existsSync(out + '.lock') && fs.existsSync(out) && fs.readFileSync(out, 'utf8').split('\n').length > 3)) {
      if (Date.now() - t0 > 60_000) throw new Error(`no trial within 60 s: ${err}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    child.kill(sig);
    const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
    assert.equal(code, want, err);
    assert.equal(fs.existsSync(out + '.lock'), false, `lock removed on ${sig}`);
  }
  // a temporary file of a writer killed with -9 (its pid is gone) is removed by the next write
  const dead = Number(spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout);
  const dest = path.join(dir, 'd.safetensors');
  const stale = path.join(dir, `.d.safetensors.${dead}.0123abcd.tmp`);
  const mine = path.join(dir, `.d.safetensors.${process.pid}.0123abcd.tmp`);
  const other = path.join(dir, `.e.safetensors.${dead}.0123abcd.tmp`);
  for (const f of [stale, mine, other]) fs.writeFileSync(f, 'partial');
  assert.equal(removeStaleTemps(dest), 1);
  assert.equal(fs.existsSync(stale), false);
  assert.equal(fs.existsSync(mine), true, 'a live process\'s temporary file is kept');
  assert.equal(fs.existsSync(other), true, 'another destination\'s temporary file is kept');
  fs.rmSync(dir, { recursive: true });
});

test('a CIFAR-10 archive whose pax header claims 8 GiB is refused naming the archive (no allocation)', async () => {
  const dir = tmpDir('pax');
  const t = tar([{ name: 'cifar-10-batches-bin/test_batch.bin', data: new Uint8Array(16) }]);
  // turn the first header into a pax extended header ('x') that claims 8 GiB
  t[156] = 'x'.charCodeAt(0);
  t.write((8 * 2 ** 30).toString(8).padStart(11, '0') + '\0', 124);
  t.write('        ', 148);
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += t[i]!;
  t.write(sum.toString(8).padStart(6, '0') + '\0 ', 148);
  const archive = path.join(dir, 'cifar-10-binary.tar.gz');
  fs.writeFileSync(archive, zlib.gzipSync(t));
  await assert.rejects(loadDataset('cifar10', 'test', { dataDir: dir }), (e: Error) => e.message.includes(archive) && /pax extended header at byte 0 claims 8589934592 bytes/.test(e.message));
  fs.rmSync(dir, { recursive: true });
});
