import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { loadDataset } from '../../src/data/dataset';
import { fetchDataset, OFFICIAL_FILES, parseChecksums, type FetchEvent } from '../../src/data/fetch';
import { idx, mnistArrays, tmpDir } from './fixtures';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const CLI = path.join(ROOT, 'dist', 'src', 'cli', 'main.js');
const md5 = (b: Uint8Array) => createHash('md5').update(b).digest('hex');

// ---- fixtures: four small FashionMNIST .gz files served under /fm/ ----
const { images, labels } = mnistArrays(20);
const FILES: Record<string, Buffer> = {
  'train-images-idx3-ubyte.gz': zlib.gzipSync(idx(0x803, [20, 28, 28], images)),
  'train-labels-idx1-ubyte.gz': zlib.gzipSync(idx(0x801, [20], labels)),
  't10k-images-idx3-ubyte.gz': zlib.gzipSync(idx(0x803, [10, 28, 28], images.subarray(0, 10 * 784))),
  't10k-labels-idx1-ubyte.gz': zlib.gzipSync(idx(0x801, [10], labels.subarray(0, 10))),
};
const work = tmpDir('fetch');
const checksums = path.join(work, 'fixtures.md5');
fs.writeFileSync(checksums, '# md5sum format\n' + Object.entries(FILES).map(([n, b]) => `${md5(b)}  ${n}`).join('\n') + '\n');

// ---- a local server on 127.0.0.1 (ephemeral port): /fm/<file>, /moved/<file> -> 302, /short/<file>
//      (announces more bytes than it sends), /silent/<file> (never answers); anything else 404 ----
const requests: string[] = [];
const server = http.createServer((req, res) => {
  const url = req.url ?? '';
  requests.push(url);
  const [, dir, name] = url.split('/');
  const body = FILES[name];
  if (dir === 'silent') return; // the client's timeout must end this
  if (body && dir === 'moved') {
    res.writeHead(302, { location: `/fm/${name}` }).end();
  } else if (body && dir === 'short') {
    res.writeHead(200, { 'content-length': String(body.length + 100) });
    res.write(body, () => res.destroy());
  } else if (body && dir === 'fm') {
    res.writeHead(200, { 'content-length': String(body.length) }).end(body);
  } else {
    res.writeHead(404).end('not here');
  }
});
server.keepAliveTimeout = 100;
const ready = new Promise<string>((resolve) => server.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`)));
after(() => {
  server.closeAllConnections();
  server.close();
  fs.rmSync(work, { recursive: true, force: true });
});

/** A port on 127.0.0.1 with nothing listening (bound, then closed). */
async function closedPort(): Promise<number> {
  const s = http.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

function freshDir(tag: string): string {
  const d = path.join(work, tag);
  fs.rmSync(d, { recursive: true, force: true });
  return d;
}

test('fetch downloads every file, verifies md5s, and the loader reads the result; a re-run skips verified files', async () => {
  const base = await ready;
  const out = freshDir('ok');
  const events: FetchEvent[] = [];
  requests.length = 0;
  const r = await fetchDataset('fashion-mnist', { out, mirror: `${base}/fm`, checksums, onEvent: (e) => events.push(e) });
  assert.equal(r.dir, out);
  assert.deepEqual(r.files.map((f) => [f.name, f.status]), OFFICIAL_FILES['fashion-mnist'].files.map((f) => [f.name, 'downloaded']));
  assert.deepEqual(requests, Object.keys(FILES).map((n) => `/fm/${n}`));
  for (const [n, b] of Object.entries(FILES)) assert.deepEqual(fs.readFileSync(path.join(out, n)), b, n);
  assert.deepEqual(fs.readdirSync(out).sort(), Object.keys(FILES).sort(), 'no temporary files left');
  const done = events.filter((e) => e.type === 'done');
  assert.equal(done.length, 4);
  const prog = events.filter((e) => e.type === 'progress' && e.name === 'train-images-idx3-ubyte.gz');
  assert.deepEqual(prog.at(-1), { type: 'progress', name: 'train-images-idx3-ubyte.gz', received: FILES['train-images-idx3-ubyte.gz'].length, total: FILES['train-images-idx3-ubyte.gz'].length });
  const ds = await loadDataset('fashion-mnist', 'train', { dataDir: out });
  assert.deepEqual(ds.labels, labels);

  // the second run finds every file verified and makes no request
  requests.length = 0;
  const again = await fetchDataset('fashion-mnist', { out, mirror: `${base}/fm`, checksums });
  assert.deepEqual(again.files.map((f) => f.status), ['present', 'present', 'present', 'present']);
  assert.deepEqual(requests, []);

  // a damaged file is downloaded again; redirects are followed
  fs.writeFileSync(path.join(out, 't10k-labels-idx1-ubyte.gz'), 'damaged');
  const seen: FetchEvent[] = [];
  const third = await fetchDataset('fashion-mnist', { out, mirror: `${base}/moved/`, checksums, onEvent: (e) => seen.push(e) });
  assert.deepEqual(third.files.map((f) => f.status), ['present', 'present', 'present', 'downloaded']);
  assert.deepEqual(requests, ['/moved/t10k-labels-idx1-ubyte.gz', '/fm/t10k-labels-idx1-ubyte.gz']);
  assert.ok(seen.some((e) => e.type === 'stale' && e.md5 === md5(Buffer.from('damaged'))));
  assert.deepEqual(fs.readFileSync(path.join(out, 't10k-labels-idx1-ubyte.gz')), FILES['t10k-labels-idx1-ubyte.gz']);
});

test('a wrong checksum is rejected and nothing is left behind', async () => {
  const base = await ready;
  const out = freshDir('badsum');
  // without --checksums the official md5s apply, which the fixtures do not have
  await assert.rejects(
    fetchDataset('fashion-mnist', { out, mirror: `${base}/fm` }),
    /train-images-idx3-ubyte\.gz: md5 [0-9a-f]{32} does not match the expected 8d4fb7e6c68d591d4c3dfef9ec88bf0d \(downloaded from http:\/\/127\.0\.0\.1:\d+\/fm\/train-images-idx3-ubyte\.gz\); the file was discarded/,
  );
  assert.deepEqual(fs.readdirSync(out), []);
  // a checksums file that disagrees for one file: the files before it stay, that one is not written
  const sums = path.join(work, 'one-wrong.md5');
  fs.writeFileSync(sums, fs.readFileSync(checksums, 'utf8').replace(md5(FILES['t10k-images-idx3-ubyte.gz']), '0'.repeat(32)));
  await assert.rejects(fetchDataset('fashion-mnist', { out, mirror: `${base}/fm`, checksums: sums }), /t10k-images-idx3-ubyte\.gz: md5 .* does not match the expected 0{32}/);
  assert.deepEqual(fs.readdirSync(out).sort(), ['train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz']);
});

test('HTTP errors, short bodies, silent servers and unreachable hosts fail fast with a helpful message', async () => {
  const base = await ready;
  const out = freshDir('errors');
  await assert.rejects(fetchDataset('fashion-mnist', { out, mirror: `${base}/missing`, checksums }), (e: Error) => {
    assert.match(e.message, /^could not download http:\/\/127\.0\.0\.1:\d+\/missing\/train-images-idx3-ubyte\.gz: HTTP 404 Not Found\n/);
    assert.match(e.message, /apt-get install dataset-fashion-mnist/);
    return true;
  });
  await assert.rejects(fetchDataset('fashion-mnist', { out, mirror: `${base}/short`, checksums, retries: 1, retryDelayMs: 10 }), /could not download .*\/short\/train-images-idx3-ubyte\.gz: .*(aborted|closed|ECONNRESET|after)/);
  const t0 = Date.now();
  await assert.rejects(fetchDataset('fashion-mnist', { out, mirror: `${base}/silent`, checksums, timeoutMs: 300, retries: 0 }), /could not download .*: ETIMEDOUT no response within 0\.3 s/);
  assert.ok(Date.now() - t0 < 5000, 'the timeout ends the wait');
  assert.deepEqual(fs.readdirSync(out).filter((f) => !f.startsWith('.')), [], 'nothing under a real name (a hidden .part file stays, to be continued)');

  const port = await closedPort();
  const t1 = Date.now();
  await assert.rejects(fetchDataset('cifar10', { out, mirror: `http://127.0.0.1:${port}` }), (e: Error) => {
    assert.match(e.message, new RegExp(`^could not download http://127\\.0\\.0\\.1:${port}/cifar-10-binary\\.tar\\.gz: .*ECONNREFUSED`));
    assert.match(e.message, /copy cifar-10-binary\.tar\.gz from a machine that has them into .*--data-dir <folder>/);
    assert.match(e.message, /--mirror <base-url>/);
    assert.doesNotMatch(e.message, /apt-get/, 'Debian has no CIFAR-10 package');
    return true;
  });
  assert.ok(Date.now() - t1 < 5000, 'a refused connection fails at once');
  assert.deepEqual(fs.readdirSync(out).filter((f) => !f.startsWith('.')), []);
});

test('checksum files are parsed in md5sum format', () => {
  const m = parseChecksums(`# comment\n\nD41D8CD98F00B204E9800998ECF8427E  a.gz\nd41d8cd98f00b204e9800998ecf8427e *dir/b.gz\r\n`, 'x.md5');
  assert.deepEqual([...m], [['a.gz', 'd41d8cd98f00b204e9800998ecf8427e'], ['b.gz', 'd41d8cd98f00b204e9800998ecf8427e']]);
  assert.throws(() => parseChecksums('abc  a.gz\n', 'x.md5'), /x\.md5:1: expected "<md5>  <name>", got 'abc  a\.gz'/);
});

/** Run the CLI without blocking this process's event loop (the test server must keep answering). */
function cli(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

test('CLI: flatenn data fetch / data info exit codes 0, 1 and 2', async () => {
  const base = await ready;
  const cache = freshDir('xdg');
  const env = { XDG_CACHE_HOME: cache, FLATENN_DATA_MIRROR: `${base}/fm` };
  // default folder: $XDG_CACHE_HOME/flatenn/fashion-mnist; the mirror comes from FLATENN_DATA_MIRROR
  const ok = await cli(['data', 'fetch', 'fashion-mnist', '--checksums', checksums], env);
  assert.equal(ok.code, 0, ok.stderr);
  const dir = path.join(cache, 'flatenn', 'fashion-mnist');
  assert.match(ok.stdout, new RegExp(`fashion-mnist: 4 files ready in ${dir}`));
  assert.match(ok.stderr, /train-images-idx3-ubyte\.gz: downloading http:\/\/127\.0\.0\.1:\d+\/fm\/train-images-idx3-ubyte\.gz/);
  assert.match(ok.stderr, /md5 verified, saved as/);
  assert.deepEqual(fs.readdirSync(dir).sort(), Object.keys(FILES).sort());
  const rerun = await cli(['data', 'fetch', 'fashion-mnist', '--checksums', checksums, '--json'], env);
  assert.equal(rerun.code, 0, rerun.stderr);
  assert.deepEqual((JSON.parse(rerun.stdout) as { files: { status: string }[] }).files.map((f) => f.status), ['present', 'present', 'present', 'present']);

  const info = await cli(['data', 'info', 'fashion-mnist', '--data-dir', dir]);
  assert.equal(info.code, 0, info.stderr);
  assert.match(info.stdout, /fashion-mnist train: +20 images \(FashionMNIST\), per class 2 2 2 2 2 2 2 2 2 2/);
  assert.match(info.stdout, /fashion-mnist test: +10 images/);
  const missing = await cli(['data', 'info', 'cifar10', '--data-dir', dir]);
  assert.equal(missing.code, 1, 'a dataset asked for by name and not found');
  assert.match(missing.stdout, /cifar10 \(train split\) was not found/);

  const bad = await cli(['data', 'fetch', 'fashion-mnist', '--out', path.join(cache, 'x')], env);
  assert.equal(bad.code, 1, 'official md5s do not match the fixtures');
  assert.match(bad.stderr, /flatenn data fetch: train-images-idx3-ubyte\.gz: md5 .* does not match/);
  const port = await closedPort();
  const down = await cli(['data', 'fetch', 'cifar10', '--mirror', `http://127.0.0.1:${port}/`, '--out', path.join(cache, 'y')]);
  assert.equal(down.code, 1);
  assert.match(down.stderr, /could not download .*ECONNREFUSED[^]*--data-dir/);

  for (const args of [['data', 'fetch'], ['data', 'fetch', 'mnist'], ['data', 'fetch', 'cifar10', 'fashion-mnist'], ['data', 'fetch', 'cifar10', '--mirror', 'ftp://x'], ['data', 'fetch', 'cifar10', '--timeout', 'soon'], ['data', 'fetch', 'cifar10', '--bogus']]) {
    const u = await cli(args);
    assert.equal(u.code, 2, `${args.join(' ')}: ${u.stderr}`);
    assert.match(u.stderr, /Run 'flatenn data fetch --help' for usage/);
  }
  const help = await cli(['data', 'fetch', '--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /--checksums <file>/);
});
