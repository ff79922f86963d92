// `flatenn data fetch`: download the official dataset files into the user cache folder, md5-checked,
// the way torchvision users expect (DESIGN §6). Each file is streamed into a partial file beside its
// destination (.<name>.part), fsynced, verified and only then renamed into place, so no half or
// unverified file is ever left under the real name. Files already present with the right md5 are not
// downloaded again. Network failures are retried; a partial file left by a failed attempt (or an
// earlier run) is continued with an HTTP Range request when the server supports it. HTTPS_PROXY /
// HTTP_PROXY / NO_PROXY (also lower case) are honoured: plain HTTP through the proxy, HTTPS through a
// CONNECT tunnel.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as http from 'node:http';
import * as https from 'node:https';
import * as path from 'node:path';
import * as tls from 'node:tls';
import { pipeline } from 'node:stream/promises';
import { commitTemp } from '../io/atomic';
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
  /** A failed attempt that will be retried (after `delayMs`), continuing from `resumeAt` bytes when possible. */
  | { type: 'retry'; name: string; attempt: number; error: string; delayMs: number; resumeAt: number }
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
  /** Attempts per file after the first one fails on the network or with HTTP 5xx (default 4). */
  retries?: number;
  /** Wait before retry k (1-based) is this times 2^(k-1) ms (default 1000). */
  retryDelayMs?: number;
  /** Proxy settings (default: HTTPS_PROXY, HTTP_PROXY and NO_PROXY from the environment, upper or lower case). */
  proxy?: ProxyEnv;
  /** Progress and status events (default: none; the library prints nothing, `flatenn data fetch` draws them). */
  onEvent?: (e: FetchEvent) => void;
}

export interface ProxyEnv { httpsProxy?: string; httpProxy?: string; noProxy?: string }

/** Proxy settings from the environment (lower-case names win, as in curl). */
export function proxyFromEnv(env: NodeJS.ProcessEnv = process.env): ProxyEnv {
  const pick = (n: string) => env[n.toLowerCase()] || env[n] || undefined;
  const o: ProxyEnv = {};
  const hs = pick('HTTPS_PROXY'), h = pick('HTTP_PROXY'), no = pick('NO_PROXY');
  if (hs) o.httpsProxy = hs;
  if (h) o.httpProxy = h;
  if (no) o.noProxy = no;
  return o;
}

/** The proxy URL to use for `target`, or null (direct): NO_PROXY entries are host names, domain suffixes (.x.org or x.org), host:port, or '*'. */
export function proxyFor(target: URL, p: ProxyEnv): URL | null {
  const raw = target.protocol === 'https:' ? p.httpsProxy ?? p.httpProxy : p.httpProxy;
  if (!raw) return null;
  const host = target.hostname.toLowerCase().replace(/^\[|\]$/g, '');
  const port = target.port || (target.protocol === 'https:' ? '443' : '80');
  for (let e of (p.noProxy ?? '').split(/[\s,]+/).filter(Boolean)) {
    e = e.toLowerCase();
    if (e === '*') return null;
    let ePort: string | undefined;
    const m = /^(.*):(\d+)$/.exec(e);
    if (m && !e.includes(']')) { e = m[1]!; ePort = m[2]; }
    if (ePort && ePort !== port) continue;
    e = e.replace(/^\*?\./, '');
    if (host === e || host.endsWith('.' + e)) return null;
  }
  try {
    return new URL(/^[a-z]+:\/\//i.test(raw) ? raw : `http://${raw}`);
  } catch {
    throw new FetchError(`invalid proxy URL '${raw}' (HTTPS_PROXY / HTTP_PROXY)`);
  }
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

const proxyAuth = (p: URL) => (p.username ? { 'proxy-authorization': 'Basic ' + Buffer.from(`${decodeURIComponent(p.username)}:${decodeURIComponent(p.password)}`).toString('base64') } : {});

/** Opens a CONNECT tunnel through `proxy` to host:port (for HTTPS through a proxy). */
function tunnel(proxy: URL, u: URL, timeoutMs: number): Promise<import('node:net').Socket> {
  return new Promise((resolve, reject) => {
    const target = `${u.hostname}:${u.port || 443}`;
    const req = http.request({ host: proxy.hostname, port: proxy.port || 80, method: 'CONNECT', path: target, timeout: timeoutMs, headers: { host: target, ...proxyAuth(proxy) } });
    req.on('connect', (res, socket) => {
      if (res.statusCode !== 200) {
        socket.destroy();
        reject(Object.assign(new Error(`proxy ${proxy.host} refused CONNECT ${target}: HTTP ${res.statusCode} ${res.statusMessage ?? ''}`.trim()), { code: 'EPROXY' }));
        return;
      }
      resolve(socket);
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error(`proxy ${proxy.host}: no response within ${timeoutMs / 1000} s`), { code: 'ETIMEDOUT' })));
    req.on('error', reject);
    req.end();
  });
}

/**
 * GET `url` (from byte `from` on with a Range request when from > 0), following up to 5 redirects.
 * Resolves with a 200 or (for a range) 206 response; rejects on any other status (code 'EHTTP', with `status`).
 */
function get(url: string, timeoutMs: number, proxies: ProxyEnv, from = 0, redirects = 5): Promise<http.IncomingMessage> {
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
    let proxy: URL | null;
    try {
      proxy = proxyFor(u, proxies);
    } catch (e) {
      reject(e);
      return;
    }
    const headers: http.OutgoingHttpHeaders = { 'user-agent': 'flatenn', ...(from > 0 ? { range: `bytes=${from}-` } : {}) };
    const onResponse = (res: http.IncomingMessage) => {
      const status = res.statusCode ?? 0;
      if ([301, 302, 303, 307, 308].includes(status) && res.headers.location) {
        res.resume();
        if (redirects === 0) {
          reject(new FetchError(`too many redirects at ${url}`));
          return;
        }
        get(new URL(res.headers.location, u).toString(), timeoutMs, proxies, from, redirects - 1).then(resolve, reject);
        return;
      }
      if (status !== 200 && !(status === 206 && from > 0)) {
        res.resume();
        reject(Object.assign(new Error(`HTTP ${status} ${res.statusMessage ?? ''}`.trim()), { code: 'EHTTP', status }));
        return;
      }
      resolve(res);
    };
    const send = (req: http.ClientRequest) => {
      // the socket timeout covers connecting and any silence while the body streams
      req.on('timeout', () => req.destroy(Object.assign(new Error(`no response within ${timeoutMs / 1000} s`), { code: 'ETIMEDOUT' })));
      req.on('error', reject);
    };
    if (!proxy) {
      send((u.protocol === 'https:' ? https : http).get(u, { timeout: timeoutMs, headers }, onResponse));
    } else if (u.protocol === 'http:') {
      // plain HTTP through the proxy: the absolute URL as the request target
      send(http.get({ host: proxy.hostname, port: proxy.port || 80, path: u.toString(), timeout: timeoutMs, headers: { ...headers, host: u.host, ...proxyAuth(proxy) } }, onResponse));
    } else {
      tunnel(proxy, u, timeoutMs).then((socket) => {
        send(https.get(u, { timeout: timeoutMs, headers, agent: false, createConnection: () => tls.connect({ socket, servername: u.hostname }) }, onResponse));
      }, reject);
    }
  });
}

/** Failures worth another attempt: the network, timeouts, a cut body, HTTP 5xx / 408 / 429. */
function transient(e: unknown): boolean {
  if (e instanceof FetchError) return false;
  const err = e as NodeJS.ErrnoException & { status?: number; cut?: boolean };
  if (err.code === 'EHTTP') return err.status !== undefined && (err.status >= 500 || err.status === 408 || err.status === 429);
  if (err.code === 'EPROXY') return /HTTP 5\d\d/.test(err.message);
  // nothing listening / no such host: another attempt would fail the same way, at once
  return !['ECONNREFUSED', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EACCES', 'ERR_TLS_CERT_ALTNAME_INVALID', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'SELF_SIGNED_CERT_IN_CHAIN', 'CERT_HAS_EXPIRED'].includes(String(err.code));
}

/** The partial file of `dest` (kept across failed attempts and runs so a download can continue). */
export const partPathFor = (dest: string) => path.join(path.dirname(dest), `.${path.basename(dest)}.part`);

/** One attempt: continue `part` from its current size (Range) or start over, then check the md5 and rename into place. */
async function attempt(url: string, dest: string, file: RemoteFile, timeoutMs: number, proxies: ProxyEnv, onEvent: (e: FetchEvent) => void): Promise<number> {
  try {
    return await attemptInner(url, dest, file, timeoutMs, proxies, onEvent);
  } catch (e) {
    // an empty partial file holds nothing worth continuing
    const part = partPathFor(dest);
    try { if ((await fsp.stat(part)).size === 0) await fsp.rm(part, { force: true }); } catch { /* none */ }
    throw e;
  }
}

async function attemptInner(url: string, dest: string, file: RemoteFile, timeoutMs: number, proxies: ProxyEnv, onEvent: (e: FetchEvent) => void): Promise<number> {
  const part = partPathFor(dest);
  let have = 0;
  try { have = (await fsp.stat(part)).size; } catch { /* no partial file */ }
  const res = await get(url, timeoutMs, proxies, have);
  const hash = createHash('md5');
  let received = 0, total: number | undefined;
  if (res.statusCode === 206) {
    // continue: hash what is already there, append the rest
    const m = /^bytes (\d+)-\d+\/(\d+|\*)$/.exec(String(res.headers['content-range'] ?? ''));
    if (!m || Number(m[1]) !== have) {
      res.resume();
      await fsp.rm(part, { force: true });
      throw Object.assign(new Error(`the server answered the range request with '${String(res.headers['content-range'])}'`), { code: 'ERANGE' });
    }
    if (m[2] !== '*') total = Number(m[2]);
    for await (const chunk of fs.createReadStream(part)) hash.update(chunk as Buffer); // (piping would end the hash)
    received = have;
  } else {
    const len = Number(res.headers['content-length']);
    if (Number.isFinite(len) && len >= 0 && res.headers['content-length'] !== undefined) total = len;
  }
  const startedAt = received;
  const ws = fs.createWriteStream(part, { flags: startedAt > 0 ? 'a' : 'w', mode: 0o644 });
  try {
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
      ws,
    );
  } catch (e) {
    // let writes in flight land before anyone (the next attempt) looks at the partial file
    if (!ws.closed) await new Promise<void>((r) => ws.once('close', () => r()));
    throw e;
  }
  if (total !== undefined && received !== total) throw Object.assign(new Error(`the connection closed after ${received} of ${total} bytes`), { code: 'ECUT' });
  const got = hash.digest('hex');
  if (got !== file.md5) {
    await fsp.rm(part, { force: true });
    throw new FetchError(`${file.name}: md5 ${got} does not match the expected ${file.md5} (downloaded from ${url}); the file was discarded`);
  }
  const h = await fsp.open(part, 'r+');
  try {
    await h.sync();
  } finally {
    await h.close();
  }
  await commitTemp(part, dest);
  return received;
}

/** Download `url` into `dest` (through the partial file), retrying transient failures with exponential back-off. */
async function download(url: string, dest: string, file: RemoteFile, o: { timeoutMs: number; retries: number; retryDelayMs: number; proxies: ProxyEnv }, onEvent: (e: FetchEvent) => void): Promise<number> {
  for (let k = 0; ; k++) {
    try {
      return await attempt(url, dest, file, o.timeoutMs, o.proxies, onEvent);
    } catch (e) {
      if (k >= o.retries || !transient(e)) throw e;
      const delayMs = o.retryDelayMs * 2 ** k;
      let resumeAt = 0;
      try { resumeAt = (await fsp.stat(partPathFor(dest))).size; } catch { /* none */ }
      onEvent({ type: 'retry', name: file.name, attempt: k + 2, error: (e as Error).message, delayMs, resumeAt });
      await new Promise((r) => setTimeout(r, delayMs));
    }
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
  const retries = opts.retries ?? 4, retryDelayMs = opts.retryDelayMs ?? 1000;
  const proxies = opts.proxy ?? proxyFromEnv();
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
      bytes = await download(url, dest, file, { timeoutMs, retries, retryDelayMs, proxies }, onEvent);
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
