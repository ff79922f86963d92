// The image datasets flatenn trains and evaluates on, in one in-memory form (uint8 NCHW).
import { CIFAR10_CLASSES, loadCifar10 } from './cifar10';
import { FASHION_MNIST_CLASSES, loadFashionMnist } from './mnist';

export type DatasetName = 'fashion-mnist' | 'cifar10';
export type Split = 'train' | 'test';
export const DATASET_NAMES: readonly DatasetName[] = ['fashion-mnist', 'cifar10'];
export const SPLITS: readonly Split[] = ['train', 'test'];

export interface ImageDataset {
  name: DatasetName;
  /**
   * What to call the data in results and reports: 'FashionMNIST', 'CIFAR-10', or 'CIFAR-10-JPEG' for the
   * known lossy stand-in (recognised by the sha256 of its .bin files), whose accuracies are not comparable
   * with published CIFAR-10 figures.
   */
  displayName: string;
  split: Split;
  count: number;
  channels: number;
  height: number;
  width: number;
  /** count * channels * height * width raw pixels, NCHW (channel planes R, G, B for CIFAR-10). */
  images: Uint8Array;
  labels: Uint8Array;
  classes: string[];
  /** The files (or archive members) read. */
  source: string;
}

export interface DatasetInfo {
  channels: number;
  height: number;
  width: number;
  classes: readonly string[];
  /** Input normalisation (DESIGN §1): (x - mean[c]) / std, in raw 0..255 pixel units. */
  mean: readonly number[];
  std: number;
  trainCount: number;
  testCount: number;
  /** The validation split: the last this-many training images. */
  validationCount: number;
}

/** Per dataset: image shape, class names, split sizes and the validation hold-out used by training. */
export const datasetInfo: Record<DatasetName, DatasetInfo> = {
  'fashion-mnist': {
    channels: 1, height: 28, width: 28, classes: FASHION_MNIST_CLASSES,
    mean: [72.93], std: 90.0, trainCount: 60000, testCount: 10000, validationCount: 5000,
  },
  cifar10: {
    channels: 3, height: 32, width: 32, classes: CIFAR10_CLASSES,
    mean: [125.3, 123.0, 113.9], std: 64.0, trainCount: 50000, testCount: 10000, validationCount: 5000,
  },
};

export interface LoadOptions {
  /** Look only in this folder (and its usual subfolders); see src/data/dirs.ts. */
  dataDir?: string;
}

/** Load one split; see src/data/dirs.ts for where it is looked for. Errors name the file and the problem. */
export async function loadDataset(name: DatasetName, split: Split, opts: LoadOptions = {}): Promise<ImageDataset> {
  if (!SPLITS.includes(split)) throw new RangeError(`split must be one of ${SPLITS.join(', ')}, got '${String(split)}'`);
  if (name === 'fashion-mnist') return loadFashionMnist(split, opts);
  if (name === 'cifar10') return loadCifar10(split, opts);
  throw new RangeError(`dataset must be one of ${DATASET_NAMES.join(', ')}, got '${String(name)}'`);
}

/** Images [start, end) of `ds` as views (no copy). */
export function subset(ds: ImageDataset, start: number, end: number): ImageDataset {
  if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || start > end || end > ds.count) {
    throw new RangeError(`subset [${start}, ${end}) is not a range within 0..${ds.count}`);
  }
  const per = ds.channels * ds.height * ds.width;
  return {
    ...ds,
    count: end - start,
    images: ds.images.subarray(start * per, end * per),
    labels: ds.labels.subarray(start, end),
    source: `${ds.source} [images ${start}..${end})`,
  };
}

/** Split a training set into training and validation parts (the last `validationCount` images), as views. */
export function splitValidation(ds: ImageDataset, validationCount = datasetInfo[ds.name].validationCount): { train: ImageDataset; validation: ImageDataset } {
  if (!Number.isInteger(validationCount) || validationCount < 0 || validationCount > ds.count) {
    throw new RangeError(`validationCount must be an integer in [0, ${ds.count}], got ${validationCount}`);
  }
  const cut = ds.count - validationCount;
  return { train: subset(ds, 0, cut), validation: subset(ds, cut, ds.count) };
}

/** Images per class, for checks and reports. */
export function classCounts(ds: ImageDataset): number[] {
  const counts = new Array<number>(ds.classes.length).fill(0);
  for (const l of ds.labels) counts[l]++;
  return counts;
}
