// `flatenn data fetch`: download the official dataset files into the user cache folder, md5-checked,
// the way torchvision users expect (DESIGN §6). Each file is streamed into a temporary file beside its
// destination, fsynced, verified and only then renamed into place, so no half or unverified file is
// ever left under the real name. Files already present with the right md5 are not downloaded again.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as http from 'node:http';
import * as https from 'node:https';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { commitTemp, tempPathFor } from '../io/atomic';
import type { DatasetName } from './dataset';
import { DEBIAN_FASHION_MNIST, userCacheDir } from './dirs';

export interface RemoteFile {
  name: string;
  md5: string;
}

/** The official download locations and md5s (DESIGN §6). */
export const OFFICIAL_FILES: Record<DatasetName, { base: string; files: readonly RemoteFile[] }> = {
  'fashion-mnist': {
    base: 'http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/',
    files: [
      { name: 'train-images-idx3-ubyte.gz', md5: '8d4fb7e6c68d591d4c3dfef9ec88bf0d' },
      { name: 'train-labels-idx1-ubyte.gz', md5: '25c81989df183df01b3e8a0aad5dffbe' },
      { name: 't10k-images-idx3-ubyte.gz', md5: 'bef4ecab320f06d8554ea6380940ec79' },
      { name: 't10k-labels-idx1-ubyte.gz', md5: 'bb300cfdad3c16e7a12a480ee83cd310' },
    ],
  },
  cifar10: {
    base: 'https://www.cs.toronto.edu/~kriz/',
    files: [{ name: 'cifar-10-binary.tar.gz', md5: 'c32a1d4ab5d03f1284b67883e8d87530' }],
  },
};

export type FetchEvent =
  | { type: 'present'; name: string; path: string }
  | { type: 'stale'; name: string; path: string; md5: string }
  | { type: 'start'; name: string; url: string }
  | { type: 'progress'; name: string; received: number; total?: number }
  | { type: 'done'; name: string; path: string; bytes: number };

export interface FetchOptions {
  /** Destination folder (default: the user cache folder, src/data/dirs.ts). */
  out?: string;
  /** Base URL holding the files under their official names (default: FLATENN_DATA_MIRROR, else the official host). */
  mirror?: string;
  /** A file of "md5  name" lines (md5sum format) whose md5s replace the official ones for the names it lists. */
  checksums?: string;
  /** Give up when connecting or when the server stays silent this long (default 30 s). */
  timeoutMs?: number;
  onEvent?: (e: FetchEvent) => void;
}

export interface FetchResult {
  dir: string;
  files: { name: string; path: string; md5: string; status: 'downloaded' | 'present' }[];
}

export class FetchError extends Error {
  override name = 'FetchError';
}

/** Parse md5sum-style lines ("<32 hex>  name" or "<32 hex> *name"); '#' lines and blank lines are skipped. */
export function parseChecksums(text: string, file: string): Map<string, string> {
  const out = new Map<string, string>();
  text.split(/\r?\n/).forEach((line, i) => {
    const t = line.trim();
    if (t === '' || t.startsWith('#')) return;
    const m = /^([0-9a-fA-F]{32})\s+\*?(.+)$/.exec(t);
    if (!m) throw new FetchError(`${file}:${i + 1}: expected "<md5>  <name>", got '${t}'`);
    out.set(path.posix.basename(m[2].trim()), m[1].toLowerCase());
  });
  return out;
}

async function md5Of(file: string): Promise<string> {
  const h = createHash('md5');
  await pipeline(fs.createReadStream(file), h);
  return h.digest('hex');
}

function howElse(name: DatasetName, dir: string): string {
  const files = OFFICIAL_FILES[name].files.map((f) => f.name).join(', ');
  return [
    'To get the files another way (for example without network access):',
    ...(name === 'fashion-mnist' ? [`  - on Debian/Ubuntu: apt-get install dataset-fashion-mnist (installs to ${DEBIAN_FASHION_MNIST}; no fetch needed)`] : []),
    `  - copy ${files} from a machine that has them into ${dir}, or into any folder and pass --data-dir <folder> (or set FLATENN_DATA)`,
    '  - or download from a reachable mirror: --mirror <base-url> (or FLATENN_DATA_MIRROR)',
  ].join('\n');
}

/** GET `url`, following up to 5 redirects; resolves with a 200 response, rejects on any other status (code 'EHTTP'). */
function get(url: string, timeoutMs: number, redirects = 5): Promise<http.IncomingMessage> {
  return new Promise((resolve, reject) => {
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      reject(new FetchError(`invalid URL '${url}'`));
      return;
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') {
      reject(new FetchError(`unsupported URL scheme in '${url}' (http or https only)`));
      return;
    }
    const req = (u.protocol === 'https:' ? https : http).get(u, { timeout: timeoutMs, headers: { 'user-agent': 'flatenn' } }, (res) => {
      const status = res.statusCode ?? 0;
      if ([301, 302, 303, 307, 308].includes(status) && res.headers.location) {
        res.resume();
        if (redirects === 0) {
          reject(new FetchError(`too many redirects at ${url}`));
          return;
        }
        get(new URL(res.headers.location, u).toString(), timeoutMs, redirects - 1).then(resolve, reject);
        return;
      }
      if (status !== 200) {
        res.resume();
        reject(Object.assign(new Error(`HTTP ${status} ${res.statusMessage ?? ''}`.trim()), { code: 'EHTTP' }));
        return;
      }
      resolve(res);
    });
    // the socket timeout covers connecting and any silence while the body streams
    req.on('timeout', () => req.destroy(Object.assign(new Error(`no response within ${timeoutMs / 1000} s`), { code: 'ETIMEDOUT' })));
    req.on('error', reject);
  });
}

/** Download `url` into `dest` through a temporary file, checking its md5 before renaming it into place. */
async function download(url: string, dest: string, file: RemoteFile, timeoutMs: number, onEvent: (e: FetchEvent) => void): Promise<number> {
  const tmp = tempPathFor(dest);
  try {
    const res = await get(url, timeoutMs);
    const total = Number(res.headers['content-length']) || undefined;
    const hash = createHash('md5');
    let received = 0;
    await pipeline(
      res,
      async function* (source: AsyncIterable<Buffer>) {
        for await (const chunk of source) {
          hash.update(chunk);
          received += chunk.length;
          onEvent({ type: 'progress', name: file.name, received, total });
          yield chunk;
        }
      },
      fs.createWriteStream(tmp, { flags: 'wx', mode: 0o644 }),
    );
    if (total !== undefined && received !== total) throw new FetchError(`${url}: the connection closed after ${received} of ${total} bytes`);
    const got = hash.digest('hex');
    if (got !== file.md5) throw new FetchError(`${file.name}: md5 ${got} does not match the expected ${file.md5} (downloaded from ${url}); the file was discarded`);
    const h = await fsp.open(tmp, 'r+');
    try {
      await h.sync();
    } finally {
      await h.close();
    }
    await commitTemp(tmp, dest);
    return received;
  } catch (e) {
    await fsp.rm(tmp, { force: true });
    throw e;
  }
}

/**
 * Download the files of `name` (see OFFICIAL_FILES) into the user cache folder or `opts.out`.
 * Stops at the first failure; a network failure's message says how else to get the files.
 */
export async function fetchDataset(name: DatasetName, opts: FetchOptions = {}): Promise<FetchResult> {
  const spec = OFFICIAL_FILES[name];
  if (!spec) throw new RangeError(`dataset must be one of ${Object.keys(OFFICIAL_FILES).join(', ')}, got '${String(name)}'`);
  const dir = path.resolve(opts.out ?? userCacheDir(name));
  const base = opts.mirror ?? process.env.FLATENN_DATA_MIRROR ?? spec.base;
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const onEvent = opts.onEvent ?? (() => {});
  const sums = opts.checksums !== undefined ? parseChecksums(await fsp.readFile(opts.checksums, 'utf8'), opts.checksums) : new Map<string, string>();
  await fsp.mkdir(dir, { recursive: true });
  const result: FetchResult = { dir, files: [] };
  for (const official of spec.files) {
    const file = { name: official.name, md5: sums.get(official.name) ?? official.md5 };
    const dest = path.join(dir, file.name);
    if (fs.existsSync(dest)) {
      const have = await md5Of(dest);
      if (have === file.md5) {
        onEvent({ type: 'present', name: file.name, path: dest });
        result.files.push({ name: file.name, path: dest, md5: have, status: 'present' });
        continue;
      }
      onEvent({ type: 'stale', name: file.name, path: dest, md5: have });
    }
    const url = base.replace(/\/*$/, '/') + file.name;
    onEvent({ type: 'start', name: file.name, url });
    let bytes: number;
    try {
      bytes = await download(url, dest, file, timeoutMs, onEvent);
    } catch (e) {
      if (e instanceof FetchError) throw e;
      const err = e as NodeJS.ErrnoException; // network failures, timeouts and HTTP errors
      const code = err.code && err.code !== 'EHTTP' && !err.message.includes(err.code) ? `${err.code} ` : '';
      throw new FetchError(`could not download ${url}: ${code}${err.message}\n${howElse(name, dir)}`);
    }
    onEvent({ type: 'done', name: file.name, path: dest, bytes });
    result.files.push({ name: file.name, path: dest, md5: file.md5, status: 'downloaded' });
  }
  return result;
}
