// `data fetch` on real networks: retries after a cut connection, continues a partial
// file with an HTTP Range request (within a run and across runs), starts over when
// the server ignores ranges, and goes through HTTP_PROXY / HTTPS_PROXY (CONNECT)
// unless NO_PROXY names the host. All against servers on 127.0.0.1.
import { test, after } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { fetchDataset, partPathFor, proxyFor, proxyFromEnv, type FetchEvent } from '../../src/data/fetch';

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'flatenn-fetch2-'));
const body = Buffer.from(Array.from({ length: 200_000 }, (_, i) => (i * 131 + (i >> 8)) & 255));
const NAME = 'cifar-10-binary.tar.gz';
const sums = path.join(work, 'sums.md5');
fs.writeFileSync(sums, `${createHash('md5').update(body).digest('hex')}  ${NAME}\n`);

// /flaky/: the first request of each test tag is cut after half the body; later ones honour Range.
// /norange/: always the whole body with 200 (ignores Range).  /cut/: always cut after half, no ranges.
const seen: { url: string; range?: string }[] = [];
const cutOnce = new Set<string>();
const origin = http.createServer((req, res) => {
  const url = req.url ?? '';
  seen.push({ url, ...(req.headers.range ? { range: req.headers.range } : {}) });
  const [, mode, tag] = url.split('/');
  const half = body.length / 2;
  const cut = () => { res.writeHead(200, { 'content-length': String(body.length) }); res.write(body.subarray(0, half), () => setTimeout(() => res.destroy(), 150)); }; // the first half arrives, then the line drops
  if (mode === 'cut') return cut();
  if (mode === 'flaky' && !cutOnce.has(tag!)) { cutOnce.add(tag!); return cut(); }
  const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
  if (m && mode === 'flaky') {
    const from = Number(m[1]);
    res.writeHead(206, { 'content-range': `bytes ${from}-${body.length - 1}/${body.length}`, 'content-length': String(body.length - from) }).end(body.subarray(from));
    return;
  }
  res.writeHead(200, { 'content-length': String(body.length) }).end(body);
});

// a forward proxy: absolute-URL GETs are relayed to the origin; CONNECT is refused with 403 (no TLS here)
const proxied: string[] = [];
const proxy = http.createServer((req, res) => {
  proxied.push(`${req.method} ${req.url}`);
  const u = new URL(req.url!);
  http.get(u, { headers: req.headers }, (up) => { res.writeHead(up.statusCode!, up.headers); up.pipe(res); }).on('error', () => res.destroy());
});
proxy.on('connect', (req, socket) => { proxied.push(`CONNECT ${req.url}`); socket.end('HTTP/1.1 403 Forbidden\r\n\r\n'); });

const listen = (s: http.Server) => new Promise<number>((r) => s.listen(0, '127.0.0.1', () => r((s.address() as AddressInfo).port)));
const ports = Promise.all([listen(origin), listen(proxy)]);
after(() => {
  for (const s of [origin, proxy]) { s.closeAllConnections(); s.close(); }
  fs.rmSync(work, { recursive: true, force: true });
});
const noProxy = { proxy: {} };

test('a cut connection is retried and continued with a Range request', async () => {
  const [op] = await ports;
  const out = path.join(work, 'a');
  const events: FetchEvent[] = [];
  seen.length = 0;
  const r = await fetchDataset('cifar10', { out, mirror: `http://127.0.0.1:${op}/flaky/a`, checksums: sums, retryDelayMs: 10, onEvent: (e) => events.push(e), ...noProxy });
  assert.equal(r.files[0]!.status, 'downloaded');
  assert.deepEqual(fs.readFileSync(path.join(out, NAME)), body);
  const retry = events.find((e) => e.type === 'retry');
  assert.ok(retry && retry.type === 'retry' && retry.attempt === 2 && retry.resumeAt > 0 && retry.resumeAt <= body.length / 2, JSON.stringify(retry));
  assert.deepEqual(seen.map((s) => s.range), [undefined, `bytes=${retry.resumeAt}-`], 'the second request asks only for the rest');
  assert.deepEqual(fs.readdirSync(out), [NAME], 'the partial file became the real one');
});

test('a partial file left by a failed run is continued by the next run; a server without ranges restarts it', async () => {
  const [op] = await ports;
  const out = path.join(work, 'b');
  await assert.rejects(fetchDataset('cifar10', { out, mirror: `http://127.0.0.1:${op}/cut/b`, checksums: sums, retries: 0, ...noProxy }), /could not download .*(aborted|closed after 100000 of 200000 bytes)/);
  const kept = fs.statSync(partPathFor(path.join(out, NAME))).size;
  assert.ok(kept > 0 && kept <= body.length / 2, `part of it kept (${kept} bytes), under a hidden name`);
  assert.ok(!fs.existsSync(path.join(out, NAME)));
  seen.length = 0;
  cutOnce.add('b2'); // this server run answers ranges at once
  await fetchDataset('cifar10', { out, mirror: `http://127.0.0.1:${op}/flaky/b2`, checksums: sums, ...noProxy });
  assert.deepEqual(seen.map((s) => s.range), [`bytes=${kept}-`]);
  assert.deepEqual(fs.readFileSync(path.join(out, NAME)), body);

  const out2 = path.join(work, 'c');
  await assert.rejects(fetchDataset('cifar10', { out: out2, mirror: `http://127.0.0.1:${op}/cut/c`, checksums: sums, retries: 0, ...noProxy }));
  await fetchDataset('cifar10', { out: out2, mirror: `http://127.0.0.1:${op}/norange/c`, checksums: sums, ...noProxy });
  assert.deepEqual(fs.readFileSync(path.join(out2, NAME)), body, 'a 200 answer to a range request replaces the partial file');
});

test('HTTP_PROXY carries plain HTTP; NO_PROXY bypasses it; HTTPS goes through a CONNECT tunnel', async () => {
  const [op, pp] = await ports;
  const p = `http://127.0.0.1:${pp}`;
  proxied.length = 0;
  const out = path.join(work, 'd');
  await fetchDataset('cifar10', { out, mirror: `http://127.0.0.1:${op}/norange/d`, checksums: sums, proxy: { httpProxy: p } });
  assert.deepEqual(proxied, [`GET http://127.0.0.1:${op}/norange/d/${NAME}`]);
  assert.deepEqual(fs.readFileSync(path.join(out, NAME)), body);

  proxied.length = 0;
  fs.rmSync(out, { recursive: true });
  await fetchDataset('cifar10', { out, mirror: `http://127.0.0.1:${op}/norange/d`, checksums: sums, proxy: { httpProxy: p, noProxy: 'example.org, 127.0.0.1' } });
  assert.deepEqual(proxied, [], 'NO_PROXY host: direct');

  await assert.rejects(fetchDataset('cifar10', { out: path.join(work, 'e'), mirror: 'https://files.example.org/x', checksums: sums, proxy: { httpsProxy: p }, retries: 0 }),
    /could not download https:\/\/files\.example\.org\/x\/cifar-10-binary\.tar\.gz: (EPROXY )?proxy 127\.0\.0\.1:\d+ refused CONNECT files\.example\.org:443: HTTP 403/);
  assert.deepEqual(proxied, ['CONNECT files.example.org:443']);
});

test('proxy settings: environment names (lower case first) and NO_PROXY matching', () => {
  assert.deepEqual(proxyFromEnv({ HTTPS_PROXY: 'http://a:1', https_proxy: 'http://b:2', HTTP_PROXY: 'c:3', no_proxy: 'x.org' }), { httpsProxy: 'http://b:2', httpProxy: 'c:3', noProxy: 'x.org' });
  const env = { httpsProxy: 'http://p:8080', httpProxy: 'http://q:3128', noProxy: '.internal.net,localhost,10.0.0.1:8443' };
  assert.equal(proxyFor(new URL('https://www.cs.toronto.edu/x'), env)?.host, 'p:8080');
  assert.equal(proxyFor(new URL('http://fashion-mnist.s3.amazonaws.com/x'), env)?.host, 'q:3128');
  assert.equal(proxyFor(new URL('http://a.internal.net/x'), env), null);
  assert.equal(proxyFor(new URL('http://localhost:9/x'), env), null);
  assert.equal(proxyFor(new URL('https://10.0.0.1:8443/x'), env), null);
  assert.equal(proxyFor(new URL('https://10.0.0.1/x'), env)?.host, 'p:8080', 'another port of a host:port entry');
  assert.equal(proxyFor(new URL('https://x.org/'), { httpsProxy: 'p:1', noProxy: '*' }), null);
  assert.equal(proxyFor(new URL('https://x.org/'), { httpProxy: 'http://q:1' })?.host, 'q:1', 'HTTP_PROXY serves https too when HTTPS_PROXY is unset');
});
