// CIFAR ResNet-18 (issue 10) on the real topology at --width 0.25 with tiny budgets: the graph,
// the seeded crop + flip augmentation (the same crops and flips for any thread count), train
// --max-steps then --resume bit-identical to an uninterrupted run (library and CLI), and the
// evaluation batch that keeps `eval` of a full-width model under 1 GiB.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { inferShapes, resnet18, weightLayers } from '../../src/nn/graph';
import { getThreads, setThreads } from '../../src/native/info';
import { RESNET18_WEIGHTS } from '../../src/benchkit/shapes';
import { resumeTrainer, saveCheckpoint } from '../../src/train/checkpoint';
import { defaultConfig, type TrainConfig } from '../../src/train/config';
import { augmentCropFlip, createModel, EVAL_BATCH_BYTES, evalBatchSize, Trainer, type ImageSet } from '../../src/train/trainer';
import { tmpDir } from '../data/fixtures';

const CLI = path.resolve(__dirname, '../../src/cli/main.js');

function xorshift(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => { s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0; return s; };
}

/** n random 3x32x32 images (labels i % 10). */
function images(n: number, seed: number): ImageSet {
  const r = xorshift(seed), img = new Uint8Array(n * 3072);
  for (let i = 0; i < img.length; i++) img[i] = r() & 255;
  return { count: n, channels: 3, height: 32, width: 32, images: img, labels: Uint8Array.from({ length: n }, (_, i) => i % 10) };
}

function cfg(over: Partial<TrainConfig> = {}): TrainConfig {
  return { ...defaultConfig('resnet18'), width: 0.25, batchSize: 16, epochs: 2, valSize: 0, lr: 0.05, ...over };
}

test('CIFAR ResNet-18: 3x3 stem, no pool, [64,128,256,512] x width, 2 blocks each, 1x1 projections, GAP, fc', () => {
  const full = resnet18(), quarter = resnet18(3, 10, 0.25);
  for (const [g, w] of [[full, [64, 128, 256, 512]], [quarter, [16, 32, 64, 128]]] as const) {
    const layers = weightLayers(g);
    assert.equal(layers.length, 21); // stem + 16 block convs + 3 projections + fc
    const convs = layers.filter((n) => n.op === 'conv');
    assert.deepEqual([convs[0]!.kernel, convs[0]!.stride, convs[0]!.outChannels], [3, 1, w[0]]);
    const proj = convs.filter((n) => n.kernel === 1);
    assert.deepEqual(proj.map((n) => [n.inChannels, n.outChannels, n.stride]), [[w[0], w[1], 2], [w[1], w[2], 2], [w[2], w[3], 2]]);
    assert.equal(g.nodes.filter((n) => n.op === 'maxpool').length, 0);
    assert.equal(g.nodes.filter((n) => n.op === 'add').length, 8);
    assert.equal(g.nodes.filter((n) => n.op === 'bn').length, 20);
    const shapes = inferShapes(g);
    assert.deepEqual(shapes[g.nodes.findIndex((n) => n.op === 'gap')], [w[3]]);
    assert.deepEqual(shapes[g.output], [10]);
  }
  const count = (g: ReturnType<typeof resnet18>) => weightLayers(g).reduce((a, n) => a + (n.op === 'conv' ? n.inChannels * n.outChannels * n.kernel * n.kernel : n.inFeatures * n.outFeatures), 0);
  assert.equal(count(full), RESNET18_WEIGHTS);
  assert.throws(() => resnet18(3, 10, 0), /width must be a number in \(0, 8\]/);
  assert.throws(() => new Trainer({ ...defaultConfig('lenet5'), width: 0.5 }, images(1, 1)), /width applies to resnet18 only/);
});

test('crop (4-pixel raw-0 padding) + flip: each image is a shifted, maybe mirrored copy; seeded by (seed, step)', () => {
  const n = 32, set = images(n, 7);
  const run = (seed: number, step: number) => { const a = set.images.slice(); augmentCropFlip(a, n, 3, 32, 32, seed, step); return a; };
  const a = run(1, 5);
  assert.deepEqual(run(1, 5), a);
  assert.notDeepEqual(run(1, 6), a);
  assert.notDeepEqual(run(2, 5), a);
  const seenFlip = new Set<boolean>(), seenShift = new Set<string>();
  for (let i = 0; i < n; i++) {
    const src = set.images.subarray(i * 3072, (i + 1) * 3072), out = a.subarray(i * 3072, (i + 1) * 3072);
    const found: string[] = [];
    for (let dy = -4; dy <= 4; dy++) for (let dx = -4; dx <= 4; dx++) for (const flip of [false, true]) {
      let ok = true;
      for (let k = 0; k < 3072 && ok; k++) {
        const c = Math.floor(k / 1024), y = Math.floor(k / 32) % 32, x = k % 32;
        const sy = y + dy, sx = (flip ? 31 - x : x) + dx;
        ok = out[k] === (sy >= 0 && sy < 32 && sx >= 0 && sx < 32 ? src[c * 1024 + sy * 32 + sx] : 0);
      }
      if (ok) found.push(`${dy},${dx},${flip}`);
    }
    assert.equal(found.length, 1, `image ${i}: ${found.length} matching transforms`);
    const [dy, dx, flip] = found[0]!.split(',');
    seenFlip.add(flip === 'true');
    seenShift.add(`${dy},${dx}`);
  }
  assert.equal(seenFlip.size, 2);
  assert.ok(seenShift.size > 5, `${seenShift.size} distinct shifts in ${n} images`);
});

test('width 0.25: the same augmented batches and the same weights with 1 or 2 threads (same seed)', async () => {
  const set = images(48, 3);
  const prev = getThreads();
  const run = async (threads: number) => {
    setThreads(threads);
    const batches: string[] = [];
    class Recording extends Trainer {
      override trainStep(img: Uint8Array, labels: Uint8Array, n: number) {
        batches.push(createHash('sha256').update(img.subarray(0, n * 3072)).update(labels.subarray(0, n)).digest('hex'));
        return super.trainStep(img, labels, n);
      }
    }
    const tr = new Recording(cfg({ epochs: 1, limitTrain: 32 }), set);
    await tr.runEpochAsync();
    return { batches, params: Buffer.from(tr.model.params.data.buffer).toString('base64') };
  };
  try {
    const one = await run(1), two = await run(2);
    assert.equal(one.batches.length, 2);
    assert.deepEqual(two.batches, one.batches);
    assert.ok(one.params === two.params, 'weights after 2 steps differ between 1 and 2 threads');
    // the batches really are augmented: without augmentation they differ
    setThreads(1);
    const plain: string[] = [];
    class Plain extends Trainer {
      override trainStep(img: Uint8Array, labels: Uint8Array, n: number) {
        plain.push(createHash('sha256').update(img.subarray(0, n * 3072)).update(labels.subarray(0, n)).digest('hex'));
        return super.trainStep(img, labels, n);
      }
    }
    await new Plain(cfg({ epochs: 1, limitTrain: 32, augment: false }), set).runEpochAsync();
    assert.notDeepEqual(plain, one.batches);
  } finally {
    setThreads(prev);
  }
});

test('width 0.25: stopped part way (stopAtStep) and resumed from its checkpoint equals an uninterrupted run, bit for bit', async () => {
  const dir = tmpDir('r18-resume');
  try {
    const set = images(24, 5), c = cfg({ epochs: 2, limitTrain: 24, batchSize: 8, saqRho: 0.05, actL1: [1e-5] }); // 3 steps per epoch
    const full = new Trainer(c, set);
    const history: unknown[] = [];
    while (full.epoch < c.epochs) history.push((await full.runEpochAsync())!.loss);
    await saveCheckpoint(path.join(dir, 'full.safetensors'), full, []);
    for (const stop of [1, 3, 4]) {
      const a = new Trainer(c, set);
      const part = path.join(dir, `part${stop}.safetensors`);
      while (a.epoch < c.epochs && a.step < stop) {
        const st = await a.runEpochAsync(undefined, 50, stop);
        if (st === null) break;
      }
      assert.equal(a.step, stop);
      assert.equal(a.partialEpoch === null, stop % 3 === 0, `partial figures at step ${stop}`);
      await saveCheckpoint(part, a, []);
      const { trainer: b } = await resumeTrainer(part, set);
      assert.equal(b.step, stop);
      const losses: number[] = [];
      while (b.epoch < c.epochs) losses.push((await b.runEpochAsync())!.loss);
      // the epoch that was cut keeps its figures: the same loss as the uninterrupted epoch
      assert.deepEqual(losses, history.slice(history.length - losses.length), `stop at ${stop}`);
      await saveCheckpoint(path.join(dir, 'resumed.safetensors'), b, []);
      assert.ok(fs.readFileSync(path.join(dir, 'resumed.safetensors')).equals(fs.readFileSync(path.join(dir, 'full.safetensors'))), `stop at step ${stop}: resumed != uninterrupted`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

/** A CIFAR-10 binary folder: the first n records of every file random, the rest zero; train files share one file. */
function writeCifar(dir: string, n: number): void {
  const r = xorshift(11), buf = Buffer.alloc(10000 * 3073);
  for (let i = 0; i < 10000; i++) {
    buf[i * 3073] = i % 10;
    if (i < n) for (let k = 1; k <= 3072; k++) buf[i * 3073 + k] = r() & 255;
  }
  fs.writeFileSync(path.join(dir, 'data_batch_1.bin'), buf);
  for (let b = 2; b <= 5; b++) fs.symlinkSync(path.join(dir, 'data_batch_1.bin'), path.join(dir, `data_batch_${b}.bin`));
  fs.symlinkSync(path.join(dir, 'data_batch_1.bin'), path.join(dir, 'test_batch.bin'));
}

test('train --arch resnet18 --width 0.25 --max-steps then --resume: the same checkpoint as one uninterrupted run', () => {
  const dir = tmpDir('r18-cli');
  try {
    const data = path.join(dir, 'data');
    fs.mkdirSync(data);
    writeCifar(data, 48);
    const common = ['--arch', 'resnet18', '--width', '0.25', '--epochs', '2', '--batch-size', '16', '--limit-train', '32', '--val-size', '16', '--data-dir', data, '-q'];
    const train = (...a: string[]) => spawnSync(process.execPath, [CLI, 'train', ...a], { encoding: 'utf8', timeout: 300_000 });
    const u = train(...common, '--no-test', '--out', path.join(dir, 'u.safetensors'));
    assert.equal(u.status, 0, u.stderr);
    const s = train(...common, '--no-test', '--max-steps', '3', '--out', path.join(dir, 's.safetensors'));
    assert.equal(s.status, 0, s.stderr);
    assert.match(s.stdout, /stopped after 3 steps \(--max-steps\); continue with: flatenn train --resume/);
    const r = train('--resume', '--no-test', '-q', '--data-dir', data, '--out', path.join(dir, 's.safetensors'));
    assert.equal(r.status, 0, r.stderr);
    assert.ok(fs.readFileSync(path.join(dir, 's.safetensors')).equals(fs.readFileSync(path.join(dir, 'u.safetensors'))), 'resumed checkpoint differs');
    assert.equal(fs.existsSync(path.join(dir, 'u.log.jsonl')), true);
    const bad = train('--arch', 'lenet5', '--width', '0.5', '--out', path.join(dir, 'x.safetensors'));
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /--width applies to --arch resnet18 only/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('the eval batch keeps a full-width ResNet-18 forward pass within its activation budget', () => {
  const g = resnet18();
  const perImage = 4 * inferShapes(g).reduce((a, s) => a + s.reduce((p, q) => p * q, 1), 0);
  const bs = evalBatchSize(g);
  assert.ok(bs >= 1 && bs * perImage <= EVAL_BATCH_BYTES, `batch ${bs} x ${perImage} bytes`);
  assert.ok((bs + 1) * perImage > EVAL_BATCH_BYTES || bs === 500);
  assert.ok(EVAL_BATCH_BYTES <= 2 ** 29);
  assert.equal(evalBatchSize(resnet18(3, 10, 0.25)) > bs, true);
  assert.equal(evalBatchSize(createModel(defaultConfig('lenet5'), 1, 28).graph), 500);
});
