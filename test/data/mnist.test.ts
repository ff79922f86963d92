import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { classCounts, loadDataset, splitValidation, subset } from '../../src/data/dataset';
import { DEBIAN_FASHION_MNIST } from '../../src/data/dirs';
import { loadFashionMnistFiles } from '../../src/data/mnist';
import { idx, mnistArrays, tmpDir, writeMnist } from './fixtures';

test('FashionMNIST loads from gzip and raw IDX files, in place and in the usual subfolders', async () => {
  const root = tmpDir('mnist');
  for (const [sub, gz] of [['', true], ['fashion-mnist', false], ['FashionMNIST/raw', true]] as const) {
    const dir = path.join(root, sub);
    const want = writeMnist(dir, 'test', 23, gz);
    writeMnist(dir, 'train', 30, !gz);
    const ds = await loadDataset('fashion-mnist', 'test', { dataDir: root });
    assert.equal(ds.name, 'fashion-mnist');
    assert.equal(ds.displayName, 'FashionMNIST');
    assert.equal(ds.split, 'test');
    assert.deepEqual([ds.count, ds.channels, ds.height, ds.width], [23, 1, 28, 28]);
    assert.deepEqual(ds.images, want.images);
    assert.deepEqual(ds.labels, want.labels);
    assert.equal(ds.classes[9], 'Ankle boot');
    assert.ok(ds.source.includes(path.join(dir, 't10k-images-idx3-ubyte')), ds.source);
    assert.equal(ds.source.includes('.gz'), gz);
    const tr = await loadDataset('fashion-mnist', 'train', { dataDir: root });
    assert.equal(tr.count, 30);
    fs.rmSync(root, { recursive: true });
    fs.mkdirSync(root);
  }
  fs.rmSync(root, { recursive: true });
});

test('subset and splitValidation are views over the same memory', async () => {
  const dir = tmpDir('mnist');
  writeMnist(dir, 'train', 12, true);
  const ds = await loadDataset('fashion-mnist', 'train', { dataDir: dir });
  const s = subset(ds, 3, 7);
  assert.equal(s.count, 4);
  assert.equal(s.images.buffer, ds.images.buffer);
  assert.deepEqual(s.labels, ds.labels.subarray(3, 7));
  assert.deepEqual(s.images, ds.images.subarray(3 * 784, 7 * 784));
  const { train, validation } = splitValidation(ds, 5);
  assert.deepEqual([train.count, validation.count], [7, 5]);
  assert.deepEqual(validation.labels, Uint8Array.from([7, 8, 9, 0, 1]));
  assert.throws(() => subset(ds, 5, 13), /subset \[5, 13\) is not a range within 0\.\.12/);
  assert.throws(() => subset(ds, 4, 3), /not a range/);
  assert.throws(() => splitValidation(ds), /validationCount must be an integer in \[0, 12\], got 5000/);
  fs.rmSync(dir, { recursive: true });
});

test('FashionMNIST errors name the file and the problem', async () => {
  const dir = tmpDir('mnist');
  const { images, labels } = mnistArrays(5);
  const img = path.join(dir, 'train-images-idx3-ubyte');
  const lab = path.join(dir, 'train-labels-idx1-ubyte');
  const files = { images: img, labels: lab };
  const goodImages = idx(0x803, [5, 28, 28], images);
  const goodLabels = idx(0x801, [5], labels);
  const cases: [string, Buffer, Buffer, RegExp][] = [
    ['truncated images', goodImages.subarray(0, goodImages.length - 1), goodLabels, /train-images-idx3-ubyte: truncated: the header says 5 items \(3920 bytes\) but only 3919 bytes follow/],
    ['extra bytes', Buffer.concat([goodImages, Buffer.from([1, 2])]), goodLabels, /train-images-idx3-ubyte: 2 extra bytes after the 5 items/],
    ['header cut short', goodImages.subarray(0, 10), goodLabels, /train-images-idx3-ubyte: truncated: 10 bytes, shorter than the 16-byte IDX header/],
    ['empty file', Buffer.alloc(0), goodLabels, /train-images-idx3-ubyte: truncated: 0 bytes/],
    ['labels given as images', goodLabels, goodLabels, /train-images-idx3-ubyte: wrong magic 0x00000801, expected 0x00000803/],
    ['images given as labels', goodImages, goodImages, /train-labels-idx1-ubyte: wrong magic 0x00000803, expected 0x00000801/],
    ['32x32 images', idx(0x803, [5, 32, 32], new Uint8Array(5 * 1024)), goodLabels, /train-images-idx3-ubyte: items are 32x32, expected 28x28/],
    ['count mismatch', goodImages, idx(0x801, [4], labels.subarray(0, 4)), /holds 5 images but .*train-labels-idx1-ubyte holds 4 labels/],
    ['bad label', goodImages, idx(0x801, [5], Uint8Array.from([0, 1, 2, 10, 4])), /train-labels-idx1-ubyte: label 10 at index 3 is outside 0\.\.9/],
  ];
  for (const [what, ib, lb, re] of cases) {
    fs.writeFileSync(img, ib);
    fs.writeFileSync(lab, lb);
    await assert.rejects(loadFashionMnistFiles('train', files), re, what);
    await assert.rejects(loadDataset('fashion-mnist', 'train', { dataDir: dir }), re, `${what} (via loadDataset)`);
  }
  // gzip problems: a corrupt stream and a truncated one
  fs.rmSync(img);
  fs.writeFileSync(lab, goodLabels);
  const gz = zlib.gzipSync(goodImages);
  const corrupt = Buffer.from(gz);
  corrupt.fill(0x55, 12, 40);
  for (const [what, bytes] of [['corrupt gzip', corrupt], ['truncated gzip', gz.subarray(0, gz.length - 30)]] as const) {
    fs.writeFileSync(img + '.gz', bytes);
    await assert.rejects(
      loadDataset('fashion-mnist', 'train', { dataDir: dir }),
      new RegExp(`${img}\\.gz: corrupt gzip stream \\(`),
      what,
    );
  }
  fs.writeFileSync(img + '.gz', gz);
  assert.equal((await loadDataset('fashion-mnist', 'train', { dataDir: dir })).count, 5, 'the good .gz loads');
  fs.rmSync(dir, { recursive: true });
});

test('a missing dataset lists every place tried and how to get the files', async () => {
  const dir = tmpDir('mnist');
  await assert.rejects(loadDataset('fashion-mnist', 'test', { dataDir: dir }), (e: Error) => {
    assert.equal(e.name, 'DatasetNotFoundError');
    assert.match(e.message, /^fashion-mnist \(test split\) was not found/);
    assert.ok(e.message.includes(`${dir} (the given data folder, --data-dir; also its subfolders fashion-mnist/, FashionMNIST/raw/`), e.message);
    assert.match(e.message, /apt-get install dataset-fashion-mnist/);
    assert.match(e.message, /flatenn data fetch fashion-mnist/);
    assert.match(e.message, /--data-dir/);
    const looked = e.message.split('To get it:')[0];
    assert.doesNotMatch(looked, /\/usr\/share\/datasets|\.cache/, '--data-dir is the only place searched');
    return true;
  });
  // half a split: the message says what is there and what is missing
  writeMnist(dir, 'test', 3, true);
  fs.rmSync(path.join(dir, 't10k-labels-idx1-ubyte.gz'));
  await assert.rejects(loadDataset('fashion-mnist', 'test', { dataDir: dir }), /has t10k-images-idx3-ubyte\.gz but no t10k-labels-idx1-ubyte\[\.gz\]/);
  fs.rmSync(dir, { recursive: true });
  await assert.rejects(loadDataset('fashion-mnist', 'validation' as 'test'), /split must be one of train, test/);
  await assert.rejects(loadDataset('mnist' as 'cifar10', 'test'), /dataset must be one of fashion-mnist, cifar10/);
});

test('the real FashionMNIST from Debian: 60000/10000 images, 6000/1000 per class', async (t) => {
  if (!fs.existsSync(path.join(DEBIAN_FASHION_MNIST, 't10k-labels-idx1-ubyte.gz'))) {
    t.skip(`${DEBIAN_FASHION_MNIST} is absent (apt-get install dataset-fashion-mnist)`);
    return;
  }
  for (const [split, n] of [['train', 60000], ['test', 10000]] as const) {
    const ds = await loadDataset('fashion-mnist', split, { dataDir: DEBIAN_FASHION_MNIST });
    assert.equal(ds.count, n);
    assert.equal(ds.images.length, n * 784);
    assert.deepEqual(classCounts(ds), new Array(10).fill(n / 10));
    let sum = 0;
    for (const p of ds.images) sum += p;
    const mean = sum / ds.images.length;
    assert.ok(Math.abs(mean - (split === 'train' ? 72.94 : 73.15)) < 0.01, `mean pixel ${mean}`);
  }
});
