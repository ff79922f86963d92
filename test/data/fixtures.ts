// Small dataset fixtures written by the tests into temporary folders.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';

export function tmpDir(tag: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `flatenn-${tag}-`));
}

/** An IDX uint8 file: big-endian magic, dims, then the payload. */
export function idx(magic: number, dims: number[], payload: Uint8Array): Buffer {
  const head = Buffer.alloc(4 + 4 * dims.length);
  head.writeUInt32BE(magic, 0);
  dims.forEach((d, i) => head.writeUInt32BE(d, 4 + 4 * i));
  return Buffer.concat([head, payload]);
}

/** n FashionMNIST-like images whose pixel k of image i is (i * 7 + k) & 255, and labels i % 10. */
export function mnistArrays(n: number): { images: Uint8Array; labels: Uint8Array } {
  const images = new Uint8Array(n * 784);
  for (let i = 0; i < images.length; i++) images[i] = (Math.floor(i / 784) * 7 + (i % 784)) & 255;
  const labels = Uint8Array.from({ length: n }, (_, i) => i % 10);
  return { images, labels };
}

/** Write the IDX pair of a split into `dir`, gzip-compressed or raw. */
export function writeMnist(dir: string, split: 'train' | 'test', n: number, gz: boolean): { images: Uint8Array; labels: Uint8Array } {
  const a = mnistArrays(n);
  const pre = split === 'train' ? 'train' : 't10k';
  fs.mkdirSync(dir, { recursive: true });
  const put = (name: string, b: Buffer) => fs.writeFileSync(path.join(dir, name + (gz ? '.gz' : '')), gz ? zlib.gzipSync(b) : b);
  put(`${pre}-images-idx3-ubyte`, idx(0x803, [n, 28, 28], a.images));
  put(`${pre}-labels-idx1-ubyte`, idx(0x801, [n], a.labels));
  return a;
}

export const BIN_BYTES = 10000 * 3073;

/**
 * A CIFAR-10 .bin file (exactly 10000 records): record r of batch b has label (r + b) % 10 and, in its
 * first 16 records, pixels (r * 31 + b * 7 + k) & 255; the rest of the pixels are 0 (compresses well).
 */
export function cifarBin(b: number): Buffer {
  const buf = Buffer.alloc(BIN_BYTES);
  for (let r = 0; r < 10000; r++) {
    buf[r * 3073] = (r + b) % 10;
    if (r < 16) for (let k = 0; k < 3072; k++) buf[r * 3073 + 1 + k] = (r * 31 + b * 7 + k) & 255;
  }
  return buf;
}

/** A ustar archive of regular files (and folders for names ending in '/'), as tar would write it. */
export function tar(entries: { name: string; data?: Uint8Array; size?: number }[]): Buffer {
  const blocks: Buffer[] = [];
  for (const e of entries) {
    const h = Buffer.alloc(512);
    const dir = e.name.endsWith('/');
    const data = e.data ?? new Uint8Array(0);
    h.write(e.name, 0, 100, 'utf8');
    h.write(dir ? '0000755\0' : '0000644\0', 100);
    h.write('0000000\0', 108);
    h.write('0000000\0', 116);
    h.write((e.size ?? data.length).toString(8).padStart(11, '0') + '\0', 124);
    h.write('00000000000\0', 136);
    h.write('        ', 148);
    h.write(dir ? '5' : '0', 156);
    h.write('ustar\u000000', 257);
    let sum = 0;
    for (const x of h) sum += x;
    h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148);
    blocks.push(h, Buffer.from(data), Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}
