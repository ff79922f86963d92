import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { CIFAR10_FILES, loadCifar10From } from '../../src/data/cifar10';
import { classCounts, loadDataset, type ImageDataset } from '../../src/data/dataset';
import { BIN_BYTES, cifarBin, tar, tmpDir } from './fixtures';

const STAND_IN = '/work/shared/datasets/cifar10-jpeg';

/** Check a loaded split against the cifarBin() fixtures it was built from. */
function checkFixture(ds: ImageDataset, split: 'train' | 'test'): void {
  const nb = CIFAR10_FILES[split].length;
  assert.equal(ds.name, 'cifar10');
  assert.equal(ds.displayName, 'CIFAR-10', 'fixtures are not the CIFAR-10-JPEG stand-in');
  assert.equal(ds.split, split);
  assert.deepEqual([ds.count, ds.channels, ds.height, ds.width], [nb * 10000, 3, 32, 32]);
  assert.equal(ds.images.length, nb * 10000 * 3072);
  assert.equal(ds.classes[6], 'frog');
  for (let b = 0; b < nb; b++) {
    const batch = split === 'test' ? 5 : b; // cifarBin(b) seed used for each file
    for (const r of [0, 1, 15, 16, 9999]) {
      const i = b * 10000 + r;
      assert.equal(ds.labels[i], (r + batch) % 10, `label of record ${r} of file ${b}`);
      const img = ds.images.subarray(i * 3072, (i + 1) * 3072);
      for (const k of [0, 1023, 1024, 2048, 3071]) {
        assert.equal(img[k], r < 16 ? (r * 31 + batch * 7 + k) & 255 : 0, `pixel ${k} (plane ${k >> 10}) of record ${r} of file ${b}`);
      }
    }
  }
}

function writeFolder(dir: string, split: 'train' | 'test'): void {
  fs.mkdirSync(dir, { recursive: true });
  CIFAR10_FILES[split].forEach((f, b) => fs.writeFileSync(path.join(dir, f), cifarBin(split === 'test' ? 5 : b)));
}

test('CIFAR-10 loads from an extracted cifar-10-batches-bin folder (both splits)', async () => {
  const root = tmpDir('cifar');
  const dir = path.join(root, 'cifar-10-batches-bin');
  writeFolder(dir, 'test');
  const ds = await loadDataset('cifar10', 'test', { dataDir: root });
  checkFixture(ds, 'test');
  assert.equal(ds.source, path.join(dir, 'test_batch.bin'));
  // train: one data batch missing is reported as a partial find
  writeFolder(dir, 'train');
  fs.rmSync(path.join(dir, 'data_batch_3.bin'));
  await assert.rejects(loadDataset('cifar10', 'train', { dataDir: root }), /cifar-10-batches-bin: missing data_batch_3\.bin/);
  fs.writeFileSync(path.join(dir, 'data_batch_3.bin'), cifarBin(2));
  checkFixture(await loadDataset('cifar10', 'train', { dataDir: root }), 'train');
  fs.rmSync(root, { recursive: true });
});

test('CIFAR-10 loads from cifar-10-binary.tar.gz (archive built here, ustar)', async () => {
  const root = tmpDir('cifar');
  const entries = [
    { name: 'cifar-10-batches-bin/' },
    { name: 'cifar-10-batches-bin/batches.meta.txt', data: Buffer.from('airplane\nautomobile\n') },
    ...CIFAR10_FILES.train.map((f, b) => ({ name: `cifar-10-batches-bin/${f}`, data: cifarBin(b) })),
    { name: 'cifar-10-batches-bin/test_batch.bin', data: cifarBin(5) },
  ];
  fs.writeFileSync(path.join(root, 'cifar-10-binary.tar.gz'), zlib.gzipSync(tar(entries), { level: 1 }));
  const test = await loadDataset('cifar10', 'test', { dataDir: root });
  checkFixture(test, 'test');
  assert.equal(test.source, `${path.join(root, 'cifar-10-binary.tar.gz')}: member cifar-10-batches-bin/test_batch.bin`);
  checkFixture(await loadDataset('cifar10', 'train', { dataDir: root }), 'train');
  fs.rmSync(root, { recursive: true });
});

test('CIFAR-10 reads an archive made by GNU tar (pax format, a path longer than 100 characters)', async (t) => {
  const gnuTar = spawnSync('tar', ['--version']);
  if (gnuTar.status !== 0) {
    t.skip('no tar command to build the archive with');
    return;
  }
  const root = tmpDir('cifar');
  const long = path.join('x'.repeat(60), 'y'.repeat(60), 'cifar-10-batches-bin');
  writeFolder(path.join(root, 'src', long), 'test');
  const archive = path.join(root, 'cifar-10-binary.tar.gz');
  const r = spawnSync('tar', ['--format=pax', '-czf', archive, '-C', path.join(root, 'src'), long.split(path.sep)[0]]);
  assert.equal(r.status, 0, String(r.stderr));
  const ds = await loadCifar10From({ kind: 'archive', file: archive }, 'test');
  checkFixture(ds, 'test');
  assert.ok(ds.source.endsWith(`member ${long}/test_batch.bin`), ds.source);
  fs.rmSync(root, { recursive: true });
});

test('CIFAR-10 errors name the file or archive member and the problem', async () => {
  const root = tmpDir('cifar');
  const dir = path.join(root, 'cifar-10-batches-bin');
  const bin = path.join(dir, 'test_batch.bin');
  writeFolder(dir, 'test');
  const good = cifarBin(5);

  fs.writeFileSync(bin, good.subarray(0, BIN_BYTES - 1));
  await assert.rejects(loadDataset('cifar10', 'test', { dataDir: root }), new RegExp(`${bin} has 30729999 bytes, expected 30730000 \\(10000 records of 3073 bytes\\)`));
  fs.writeFileSync(bin, Buffer.concat([good, Buffer.from([0])]));
  await assert.rejects(loadDataset('cifar10', 'test', { dataDir: root }), /test_batch\.bin has 30730001 bytes/);
  const badLabel = Buffer.from(good);
  badLabel[5 * 3073] = 10;
  fs.writeFileSync(bin, badLabel);
  await assert.rejects(loadDataset('cifar10', 'test', { dataDir: root }), new RegExp(`${bin}: label 10 in record 5 is outside 0\\.\\.9`));
  fs.rmSync(dir, { recursive: true });

  const archive = path.join(root, 'cifar-10-binary.tar.gz');
  const load = () => loadDataset('cifar10', 'test', { dataDir: root });
  const put = (b: Buffer) => fs.writeFileSync(archive, b);
  const member = (name: string, data: Uint8Array) => [{ name: 'cifar-10-batches-bin/' }, { name: `cifar-10-batches-bin/${name}`, data }];

  put(zlib.gzipSync(tar(member('data_batch_1.bin', good))));
  await assert.rejects(load(), new RegExp(`${archive}: the archive has no member test_batch\\.bin \\(expected cifar-10-batches-bin/test_batch\\.bin\\)`));
  put(zlib.gzipSync(tar(member('test_batch.bin', good.subarray(0, 3073 * 10)))));
  await assert.rejects(load(), new RegExp(`${archive}: member cifar-10-batches-bin/test_batch\\.bin has 30730 bytes, expected 30730000`));
  put(zlib.gzipSync(tar(member('test_batch.bin', badLabel))));
  await assert.rejects(load(), /cifar-10-binary\.tar\.gz: member cifar-10-batches-bin\/test_batch\.bin: label 10 in record 5/);

  const goodTar = tar(member('test_batch.bin', good));
  const gz = zlib.gzipSync(goodTar);
  put(gz.subarray(0, gz.length >> 1));
  await assert.rejects(load(), new RegExp(`${archive}: corrupt gzip stream \\(unexpected end of file\\)`));
  const corrupt = Buffer.from(gz);
  corrupt.fill(0xaa, 10, 200);
  put(corrupt);
  await assert.rejects(load(), new RegExp(`${archive}: corrupt gzip stream`));
  put(zlib.gzipSync(goodTar.subarray(0, 512 * 2 + 1000)));
  await assert.rejects(load(), /truncated: member cifar-10-batches-bin\/test_batch\.bin needs 30730000 bytes but the archive ends after 1000/);
  const badSum = Buffer.from(goodTar);
  badSum[512 + 5] ^= 1; // a name byte of the second header
  put(zlib.gzipSync(badSum));
  await assert.rejects(load(), new RegExp(`${archive}: bad tar header checksum at byte 512`));
  put(zlib.gzipSync(Buffer.from('this is not a tar archive at all'.repeat(40))));
  await assert.rejects(load(), /bad tar header checksum at byte 0: corrupt or not a tar archive/);

  put(zlib.gzipSync(goodTar));
  checkFixture(await load(), 'test');
  fs.rmSync(root, { recursive: true });
  await assert.rejects(loadDataset('cifar10', 'test', { dataDir: root }), /cifar10 \(test split\) was not found[^]*flatenn data fetch cifar10/);
});

test('the CIFAR-10-JPEG stand-in (shared/datasets, not part of the project): 50000/10000, 5000/1000 per class', async (t) => {
  if (!fs.existsSync(path.join(STAND_IN, 'cifar-10-binary.tar.gz'))) {
    t.skip(`${STAND_IN} is absent (it lives outside the project)`);
    return;
  }
  const expectFirst = { train: [5, 1, 2, 5, 1, 8, 5, 4, 0, 9], test: [6, 9, 2, 4, 7, 4, 3, 3, 8, 5] };
  for (const [split, n] of [['train', 50000], ['test', 10000]] as const) {
    const ds = await loadDataset('cifar10', split, { dataDir: STAND_IN });
    assert.equal(ds.displayName, 'CIFAR-10-JPEG');
    assert.equal(ds.count, n);
    assert.deepEqual(classCounts(ds), new Array(10).fill(n / 10));
    assert.deepEqual([...ds.labels.subarray(0, 10)], expectFirst[split]);
  }
});
