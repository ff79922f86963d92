import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { locate, searchPlaces, userCacheDir, userCacheRoot } from '../../src/data/dirs';
import { tmpDir } from './fixtures';

test('user cache folder: $XDG_CACHE_HOME/flatenn when absolute, else ~/.cache/flatenn', () => {
  assert.equal(userCacheRoot({ XDG_CACHE_HOME: '/x/cache' }), '/x/cache/flatenn');
  assert.equal(userCacheRoot({ XDG_CACHE_HOME: 'relative/ignored' }), path.join(os.homedir(), '.cache', 'flatenn'));
  assert.equal(userCacheRoot({}), path.join(os.homedir(), '.cache', 'flatenn'));
  assert.equal(userCacheDir('cifar10', { XDG_CACHE_HOME: '/c' }), '/c/flatenn/cifar10');
});

test('search order: --data-dir alone; else FLATENN_DATA, then Debian (FashionMNIST only), then the user cache', () => {
  const env = { FLATENN_DATA: '/data', XDG_CACHE_HOME: '/c' };
  assert.deepEqual(searchPlaces('fashion-mnist', { dataDir: 'rel' }, env).map((p) => p.dir), [path.resolve('rel')]);
  assert.deepEqual(searchPlaces('fashion-mnist', {}, env).map((p) => p.dir), ['/data', '/usr/share/datasets/fashion-mnist', '/c/flatenn/fashion-mnist']);
  assert.deepEqual(searchPlaces('cifar10', {}, env).map((p) => p.dir), ['/data', '/c/flatenn/cifar10']);
  assert.deepEqual(searchPlaces('cifar10', {}, { XDG_CACHE_HOME: '/c' }).map((p) => p.dir), ['/c/flatenn/cifar10']);
});

test('locate tries each place and its subfolders in order and returns the first hit', async () => {
  const root = tmpDir('dirs');
  fs.mkdirSync(path.join(root, 'cifar-10-batches-bin'));
  fs.mkdirSync(path.join(root, 'cifar10'));
  const seen: string[] = [];
  const r = await locate('cifar10', 'test', { dataDir: root }, async (dir) => {
    seen.push(path.relative(root, dir));
    return dir.endsWith('cifar10') ? { found: 'yes' } : undefined;
  });
  assert.deepEqual(seen, ['', 'cifar-10-batches-bin', 'cifar10']);
  assert.deepEqual(r, { dir: path.join(root, 'cifar10'), why: 'the given data folder, --data-dir', found: 'yes' });
  fs.rmSync(root, { recursive: true });
});
