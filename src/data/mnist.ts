// FashionMNIST from the official IDX files (gzip-compressed or raw).
// IDX: big-endian u32 magic 0x00000803 (uint8, 3 dims) for images, 0x00000801 (uint8, 1 dim) for labels,
// then one big-endian u32 per dimension, then the uint8 payload, row-major. Images are N x 28 x 28.
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { promisify } from 'node:util';
import * as zlib from 'node:zlib';
import type { ImageDataset, Split } from './dataset';
import { locate, type ProbeResult } from './dirs';

export const FASHION_MNIST_CLASSES: readonly string[] = [
  'T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot',
];

/** The base names of the official files (each as `<base>.gz` or raw `<base>`). */
export const FASHION_MNIST_FILES: Record<Split, { images: string; labels: string }> = {
  train: { images: 'train-images-idx3-ubyte', labels: 'train-labels-idx1-ubyte' },
  test: { images: 't10k-images-idx3-ubyte', labels: 't10k-labels-idx1-ubyte' },
};

const IMAGES_MAGIC = 0x803;
const LABELS_MAGIC = 0x801;
const SIDE = 28;
/** Far above the largest official file (47 MB): a guard against gzip bombs. */
const MAX_DECOMPRESSED = 512 * 1024 * 1024;
const gunzip = promisify(zlib.gunzip);

export class IdxError extends Error {
  override name = 'IdxError';
}

async function exists(file: string): Promise<boolean> {
  return fs.stat(file).then((s) => s.isFile(), () => false);
}

/** `<dir>/<base>` raw if present, else `<dir>/<base>.gz`, else undefined. */
async function findFile(dir: string, base: string): Promise<string | undefined> {
  for (const f of [path.join(dir, base), path.join(dir, base + '.gz')]) if (await exists(f)) return f;
  return undefined;
}

/** The files of `split` in `dir`, for locate(). */
export async function probeFashionMnist(dir: string, split: Split): Promise<ProbeResult<{ images: string; labels: string }>> {
  const names = FASHION_MNIST_FILES[split];
  const images = await findFile(dir, names.images);
  const labels = await findFile(dir, names.labels);
  if (images && labels) return { found: { images, labels } };
  if (images || labels) return { partial: `has ${path.basename((images ?? labels)!)} but no ${images ? names.labels : names.images}[.gz]` };
  return undefined;
}

/** A file's bytes, gunzipped if they start with the gzip magic; errors name the file. */
async function readMaybeGzip(file: string): Promise<Buffer> {
  const raw = await fs.readFile(file);
  if (raw.length < 2 || raw[0] !== 0x1f || raw[1] !== 0x8b) return raw;
  try {
    return await gunzip(raw, { maxOutputLength: MAX_DECOMPRESSED });
  } catch (e) {
    throw new IdxError(`${file}: corrupt gzip stream (${(e as Error).message})`);
  }
}

/**
 * Check an IDX uint8 file: magic, dimensions (`inner` are the dims after the count), and that the payload
 * holds exactly count * prod(inner) bytes. Returns the count and a view of the payload.
 */
export function parseIdx(buf: Uint8Array, file: string, magic: number, inner: readonly number[]): { count: number; data: Uint8Array } {
  const ndim = inner.length + 1;
  const headerLen = 4 + 4 * ndim;
  const truncated = () => new IdxError(`${file}: truncated: ${buf.length} bytes, shorter than the ${headerLen}-byte IDX header`);
  if (buf.length < 4) throw truncated();
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const got = v.getUint32(0, false);
  if (got !== magic) {
    const hex = (x: number) => '0x' + x.toString(16).padStart(8, '0');
    throw new IdxError(`${file}: wrong magic ${hex(got)}, expected ${hex(magic)} (IDX uint8, ${ndim} dimension${ndim > 1 ? 's' : ''}): not a ${magic === IMAGES_MAGIC ? 'image' : 'label'} file`);
  }
  if (buf.length < headerLen) throw truncated();
  const count = v.getUint32(4, false);
  const dims = inner.map((_, i) => v.getUint32(8 + 4 * i, false));
  if (dims.some((d, i) => d !== inner[i])) throw new IdxError(`${file}: items are ${dims.join('x')}, expected ${inner.join('x')}`);
  const per = inner.reduce((a, b) => a * b, 1);
  const want = count * per;
  const have = buf.length - headerLen;
  if (have < want) throw new IdxError(`${file}: truncated: the header says ${count} items (${want} bytes) but only ${have} bytes follow`);
  if (have > want) throw new IdxError(`${file}: ${have - want} extra bytes after the ${count} items the header announces`);
  return { count, data: new Uint8Array(buf.buffer, buf.byteOffset + headerLen, want) };
}

/** Load FashionMNIST `split` from the two given files (gzip or raw). */
export async function loadFashionMnistFiles(split: Split, files: { images: string; labels: string }): Promise<ImageDataset> {
  const [ib, lb] = await Promise.all([readMaybeGzip(files.images), readMaybeGzip(files.labels)]);
  const images = parseIdx(ib, files.images, IMAGES_MAGIC, [SIDE, SIDE]);
  const labels = parseIdx(lb, files.labels, LABELS_MAGIC, []);
  if (images.count !== labels.count) {
    throw new IdxError(`${files.images} holds ${images.count} images but ${files.labels} holds ${labels.count} labels`);
  }
  const bad = labels.data.findIndex((l) => l >= FASHION_MNIST_CLASSES.length);
  if (bad >= 0) throw new IdxError(`${files.labels}: label ${labels.data[bad]} at index ${bad} is outside 0..9`);
  return {
    name: 'fashion-mnist',
    displayName: 'FashionMNIST',
    split,
    count: images.count,
    channels: 1,
    height: SIDE,
    width: SIDE,
    images: images.data,
    labels: labels.data,
    classes: [...FASHION_MNIST_CLASSES],
    source: `${files.images}, ${files.labels}`,
  };
}

/** Find (src/data/dirs.ts) and load FashionMNIST `split`. */
export async function loadFashionMnist(split: Split, opts: { dataDir?: string } = {}): Promise<ImageDataset> {
  const { found } = await locate('fashion-mnist', split, opts, (dir) => probeFashionMnist(dir, split));
  return loadFashionMnistFiles(split, found);
}
