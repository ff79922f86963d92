// CIFAR-10, binary version: an extracted cifar-10-batches-bin/ folder (data_batch_1..5.bin,
// test_batch.bin) or the cifar-10-binary.tar.gz archive itself. Each .bin file holds exactly 10000
// records of 1 label byte + 3072 pixel bytes (R plane, then G, then B, each 32x32 row-major), so a
// record's pixels are already CHW.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import type { ImageDataset, Split } from './dataset';
import { locate, type ProbeResult } from './dirs';
import { readTarGzMembers } from './tar';

export const CIFAR10_CLASSES: readonly string[] = [
  'airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck',
];
export const CIFAR10_ARCHIVE = 'cifar-10-binary.tar.gz';
export const CIFAR10_FILES: Record<Split, readonly string[]> = {
  train: ['data_batch_1.bin', 'data_batch_2.bin', 'data_batch_3.bin', 'data_batch_4.bin', 'data_batch_5.bin'],
  test: ['test_batch.bin'],
};
const RECORDS = 10000;
const PIXELS = 3 * 32 * 32;
const RECORD = 1 + PIXELS;
const BIN_BYTES = RECORDS * RECORD; // 30,730,000

/**
 * sha256 of the .bin files of the lossy CIFAR-10-JPEG stand-in (shared/datasets/README.md). Data whose
 * files all match is reported as 'CIFAR-10-JPEG': its accuracies are not comparable with CIFAR-10's.
 */
const CIFAR10_JPEG_SHA256: Record<string, string> = {
  'data_batch_1.bin': '95bc40a96c189b4ae973b8e377256610c0b0865f59a76bf2e7b5f5d3b6a9cd51',
  'data_batch_2.bin': '5bb5b7448ab13050c953f52e49624887d937f2dbc737ba8308b771b88b6f5ced',
  'data_batch_3.bin': 'ecc5c793ff8d4a06b657d4f9dfc1eb1e29f15f7e75fed9b9c34eb4df9459108d',
  'data_batch_4.bin': '9e28b99d5925a27d404ec940d84ec491ea1cd48e3ceb0e9db193afd19c93e65b',
  'data_batch_5.bin': '887c29d30b4a78aa9e3c200efd2298570173503aa557ab013e8e62afb37a242a',
  'test_batch.bin': '27510dceb090e887f9424124a1302375eea207f1debd1501081084547e6b732a',
};

export class CifarError extends Error {
  override name = 'CifarError';
}

export type CifarSource = { kind: 'folder'; dir: string } | { kind: 'archive'; file: string };

async function isFile(f: string): Promise<boolean> {
  return fs.stat(f).then((s) => s.isFile(), () => false);
}

/** An extracted folder holding the split's .bin files, else the archive in that folder, for locate(). */
export async function probeCifar10(dir: string, split: Split): Promise<ProbeResult<CifarSource>> {
  const present = await Promise.all(CIFAR10_FILES[split].map((f) => isFile(path.join(dir, f))));
  if (present.every(Boolean)) return { found: { kind: 'folder', dir } };
  const archive = path.join(dir, CIFAR10_ARCHIVE);
  if (await isFile(archive)) return { found: { kind: 'archive', file: archive } };
  if (present.some(Boolean)) return { partial: `missing ${CIFAR10_FILES[split].filter((_, i) => !present[i]).join(', ')}` };
  return undefined;
}

function wrongSize(where: string, size: number): CifarError {
  return new CifarError(`${where} has ${size} bytes, expected ${BIN_BYTES} (${RECORDS} records of ${RECORD} bytes)`);
}

/** Load a split from an extracted folder or from the .tar.gz. Errors name the file or archive member. */
export async function loadCifar10From(src: CifarSource, split: Split): Promise<ImageDataset> {
  const names = CIFAR10_FILES[split];
  const count = names.length * RECORDS;
  const images = new Uint8Array(count * PIXELS);
  const labels = new Uint8Array(count);
  const sources: string[] = [];
  let standIn = true;
  /** Check and copy in the b-th .bin file of the split. */
  const take = (b: number, where: string, bytes: Buffer): void => {
    if (bytes.length !== BIN_BYTES) throw wrongSize(where, bytes.length);
    for (let r = 0; r < RECORDS; r++) {
      const at = r * RECORD;
      const label = bytes[at];
      if (label >= CIFAR10_CLASSES.length) throw new CifarError(`${where}: label ${label} in record ${r} is outside 0..9`);
      labels[b * RECORDS + r] = label;
      images.set(bytes.subarray(at + 1, at + RECORD), (b * RECORDS + r) * PIXELS);
    }
    standIn &&= createHash('sha256').update(bytes).digest('hex') === CIFAR10_JPEG_SHA256[names[b]];
    sources.push(where);
  };
  if (src.kind === 'folder') {
    for (const [b, base] of names.entries()) {
      const f = path.join(src.dir, base);
      const { size } = await fs.stat(f);
      if (size !== BIN_BYTES) throw wrongSize(f, size); // before reading 30 MB of the wrong thing
      take(b, f, await fs.readFile(f));
    }
  } else {
    const chosen = new Map<string, string>(); // base name -> member name
    const members = await readTarGzMembers(src.file, (name, size) => {
      const base = path.posix.basename(name);
      if (!names.includes(base) || chosen.has(base)) return false;
      if (size !== BIN_BYTES) throw wrongSize(`${src.file}: member ${name}`, size);
      chosen.set(base, name);
      return true;
    });
    for (const [b, base] of names.entries()) {
      const member = chosen.get(base);
      if (member === undefined) throw new CifarError(`${src.file}: the archive has no member ${base} (expected cifar-10-batches-bin/${base})`);
      take(b, `${src.file}: member ${member}`, members.get(member)!);
    }
  }
  return {
    name: 'cifar10',
    displayName: standIn ? 'CIFAR-10-JPEG' : 'CIFAR-10',
    split,
    count,
    channels: 3,
    height: 32,
    width: 32,
    images,
    labels,
    classes: [...CIFAR10_CLASSES],
    source: sources.join(', '),
  };
}

/** Find (src/data/dirs.ts) and load CIFAR-10 `split`. */
export async function loadCifar10(split: Split, opts: { dataDir?: string } = {}): Promise<ImageDataset> {
  const { found } = await locate('cifar10', split, opts, (dir) => probeCifar10(dir, split));
  return loadCifar10From(found, split);
}
