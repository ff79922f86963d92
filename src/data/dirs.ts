// Where datasets are looked for (DESIGN §6):
//   1. an explicit `dataDir` (the --data-dir flag): only there, nothing else is tried;
//   2. the FLATENN_DATA environment variable, then
//   3. the standard places: Debian's /usr/share/datasets/fashion-mnist (package dataset-fashion-mnist)
//      and the user cache folder ($XDG_CACHE_HOME/flatenn/<name>, else ~/.cache/flatenn/<name>),
//      which is where `flatenn data fetch` puts the files.
// FLATENN_DATA is a preferred place, not an exclusive one, because one variable serves both
// datasets (a folder that holds only CIFAR-10 still lets FashionMNIST come from Debian).
// In every place, the folder itself and the usual subfolders (`fashion-mnist`, `FashionMNIST/raw`,
// `cifar-10-batches-bin`, ...) are accepted.
import * as os from 'node:os';
import * as path from 'node:path';
import type { DatasetName, Split } from './dataset';

export const DEBIAN_FASHION_MNIST = '/usr/share/datasets/fashion-mnist';

/** Subfolders of a place that may hold the files, in the order they are tried ('' = the place itself). */
export const SUBFOLDERS: Record<DatasetName, readonly string[]> = {
  'fashion-mnist': ['', 'fashion-mnist', 'FashionMNIST/raw', 'FashionMNIST', 'fashion_mnist'],
  cifar10: ['', 'cifar-10-batches-bin', 'cifar10', 'cifar10/cifar-10-batches-bin', 'cifar-10'],
};

/** The user cache root: $XDG_CACHE_HOME/flatenn (an absolute XDG_CACHE_HOME only, per the XDG spec), else ~/.cache/flatenn. */
export function userCacheRoot(env: NodeJS.ProcessEnv = process.env): string {
  const xdg = env.XDG_CACHE_HOME;
  return path.join(xdg && path.isAbsolute(xdg) ? xdg : path.join(os.homedir(), '.cache'), 'flatenn');
}

/** The folder `flatenn data fetch <name>` downloads into by default. */
export function userCacheDir(name: DatasetName, env: NodeJS.ProcessEnv = process.env): string {
  return path.join(userCacheRoot(env), name);
}

export interface Place {
  dir: string;
  /** Why this place is searched, for messages. */
  why: string;
}

/** The places searched for `name`, in order (each with its SUBFOLDERS). */
export function searchPlaces(name: DatasetName, opts: { dataDir?: string } = {}, env: NodeJS.ProcessEnv = process.env): Place[] {
  if (opts.dataDir !== undefined) return [{ dir: path.resolve(opts.dataDir), why: 'the given data folder, --data-dir' }];
  const places: Place[] = [];
  if (env.FLATENN_DATA) places.push({ dir: path.resolve(env.FLATENN_DATA), why: 'FLATENN_DATA' });
  if (name === 'fashion-mnist') places.push({ dir: DEBIAN_FASHION_MNIST, why: "Debian's dataset-fashion-mnist" });
  places.push({ dir: userCacheDir(name, env), why: 'user cache, where flatenn data fetch puts files' });
  return places;
}

/** What a probe says about one folder: the files are there, some are missing, or nothing relevant. */
export type ProbeResult<T> = { found: T } | { partial: string } | undefined;

export class DatasetNotFoundError extends Error {
  override name = 'DatasetNotFoundError';
}

const HOW_TO_GET: Record<DatasetName, string[]> = {
  'fashion-mnist': [
    'on Debian/Ubuntu: apt-get install dataset-fashion-mnist (installs to ' + DEBIAN_FASHION_MNIST + ')',
    'flatenn data fetch fashion-mnist (downloads the official files into the user cache, md5-checked)',
    'or put train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz ' +
      '(gzip or not) in a folder and pass --data-dir <folder> (or set FLATENN_DATA)',
  ],
  cifar10: [
    'flatenn data fetch cifar10 (downloads the official cifar-10-binary.tar.gz into the user cache, md5-checked)',
    'or put cifar-10-binary.tar.gz, or its extracted cifar-10-batches-bin folder, in a folder and pass --data-dir <folder> ' +
      '(or set FLATENN_DATA)',
  ],
};

/**
 * Search the places for `name` and return the first folder where `probe` finds the files of `split`.
 * Throws DatasetNotFoundError listing every place tried (with partial finds) and how to get the files.
 */
export async function locate<T>(
  name: DatasetName,
  split: Split,
  opts: { dataDir?: string },
  probe: (dir: string) => Promise<ProbeResult<T>>,
): Promise<{ dir: string; why: string; found: T }> {
  const places = searchPlaces(name, opts);
  const tried: string[] = [];
  for (const p of places) {
    const notes: string[] = [];
    for (const sub of SUBFOLDERS[name]) {
      const dir = path.join(p.dir, sub);
      const r = await probe(dir);
      if (r && 'found' in r) return { dir, why: p.why, found: r.found };
      if (r) notes.push(`    ${dir}: ${r.partial}`);
    }
    tried.push(`  ${p.dir} (${p.why}; also its subfolders ${SUBFOLDERS[name].filter((s) => s).map((s) => s + '/').join(', ')})`, ...notes);
  }
  throw new DatasetNotFoundError(
    [`${name} (${split} split) was not found. Looked in:`, ...tried, 'To get it:', ...HOW_TO_GET[name].map((h) => `  - ${h}`)].join('\n'),
  );
}
