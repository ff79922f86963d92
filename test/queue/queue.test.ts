// Queue mode end to end on a real redis-server: worker processes with different ISAs, a worker killed with
// kill -9 mid-job, Redis restarted (no persistence) mid-campaign, duplicate deliveries, a job failing all its
// attempts, and the CLI's follow-up commands and errors. Each collected file must equal, trial for trial, a
// local single-process run of the same campaign.
import { after, before, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { spawnSync } from 'node:child_process';
import { runCampaign } from '../../src/campaign/campaign';
import { readResults, SEMANTICS, trialKey } from '../../src/campaign/results';
import { CampaignFailed, collectCampaign, enqueueCampaign, campaignId, parseRedisUrl } from '../../src/queue';
import { loadBullMQ, PREFIX } from '../../src/queue/connection';
import { campaignKey as campaignKeyOf, modelKey as modelKeyOf, queueName } from '../../src/queue/protocol';
import { writeTinyModel } from '../helpers/tiny-model';
import { idx, mnistArrays, tmpDir, writeMnist } from '../data/fixtures';
import { CLI, haveRedis, start, startRedis, stop, stopAll, worker, type Proc, type RedisServer } from './helpers';

const skip = haveRedis() ? false : 'redis-server is not installed (scripts/setup.sh installs it)';
const IMAGES = 2000;
const camp = { faults: ['bitflip', 'sa0', 'sa1'] as ('bitflip' | 'sa0' | 'sa1')[], rates: [0, 0.01, 0.03, 0.05], trials: 15 };
// trial records of a local run: rate 0 is not run as trials (one clean record per target stands for it)
const TOTAL = 3 * 3 * 15;
// the queue's jobs: those trials plus one rate-0 probe per target, whose result becomes the clean record
const JOBS = TOTAL + 1;

let dir = '', data = '', badData = '', model = '', ref = '';
let redis: RedisServer;

const lines = (f: string) => readResults(f).records.map((r) => JSON.stringify(r)).sort();
const injectArgs = (url: string, out: string, extra: string[] = []) => [
  CLI, 'inject', '--model', model, '--faults', camp.faults.join(','), '--rates', camp.rates.join(','), '--trials', String(camp.trials),
  '--data-dir', data, '--out', out, '--queue', url, ...extra,
];

function checkAgainstLocal(out: string): void {
  const f = readResults(out);
  const keys = f.records.map(trialKey);
  assert.equal(keys.length, TOTAL, 'one line per trial');
  assert.equal(new Set(keys).size, TOTAL, 'no trial twice');
  assert.equal(f.tornTail, false);
  assert.deepEqual(f.header, readResults(ref).header, 'same header as a local run');
  assert.deepEqual(lines(out), lines(ref), 'same records (accuracy, sparsity, changed codes) as a local run');
  assert.deepEqual(f.clean, readResults(ref).clean, 'the same clean record as a local run');
}

before(async () => {
  if (skip) return;
  dir = tmpDir('queue');
  data = path.join(dir, 'data');
  writeMnist(data, 'test', IMAGES, true);
  // Same layout and count, other pixels: its content hash differs.
  badData = path.join(dir, 'bad');
  fs.mkdirSync(badData);
  const a = mnistArrays(IMAGES);
  a.images[12345] ^= 0xff;
  fs.writeFileSync(path.join(badData, 't10k-images-idx3-ubyte.gz'), zlib.gzipSync(idx(0x803, [IMAGES, 28, 28], a.images)));
  fs.writeFileSync(path.join(badData, 't10k-labels-idx1-ubyte.gz'), zlib.gzipSync(idx(0x801, [IMAGES], a.labels)));
  model = path.join(dir, 'tiny.safetensors');
  await writeTinyModel(model);
  ref = path.join(dir, 'local.jsonl');
  await runCampaign({ ...camp, model, out: ref, dataDir: data, quiet: true });
  redis = await startRedis();
});

after(async () => {
  await stopAll();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

test('3 workers (scalar, avx2, default ISA with 2 jobs at once) gather the same results file as a local run', { skip }, async () => {
  const url = redis.url(0);
  const ws = [worker(url, data, ['--isa', 'scalar']), worker(url, data, ['--isa', 'avx2']), worker(url, data, ['--concurrency', '2'])];
  await Promise.all(ws.map((w) => w.waitFor(/ready on/)));
  const out = path.join(dir, 'q3.jsonl');
  const d = spawnSync(process.execPath, injectArgs(url, out, ['--chunk', '4', '--detach']), { encoding: 'utf8' });
  assert.equal(d.status, 0, d.stderr);
  const id = d.stdout.trim();
  // hold the jobs until all three workers are on the campaign, so that each gets some
  const { Queue } = loadBullMQ();
  const q = new Queue(queueName(id), { connection: { host: '127.0.0.1', port: redis.port, db: 0 }, prefix: PREFIX });
  await q.pause();
  await Promise.all(ws.map((w) => w.waitFor(new RegExp(`on campaign ${id}`))));
  await q.resume();
  await q.close();
  const c = start(process.execPath, [CLI, 'campaign', 'collect', id, '--queue', url, '--out', out, '--json']);
  assert.equal(await c.exited, 0, c.out());
  checkAgainstLocal(out);
  const res = JSON.parse(c.out().slice(c.out().indexOf('{\n'))) as { byWorker: Record<string, number>; duplicates: number };
  for (const w of ws) assert.ok((res.byWorker[`${os.hostname()}:${w.child.pid}`] ?? 0) > 0, `every worker ran trials: ${JSON.stringify(res.byWorker)}`);
  assert.match(ws[0]!.out(), /isa scalar/);
  assert.match(ws[1]!.out(), /isa avx2/);
  // graceful stop: SIGTERM ends each worker with code 0
  for (const w of ws) assert.equal(await stop(w), 0, w.out());
  for (const w of ws) assert.match(w.out(), /stopped after \d+ jobs/);
  // the finished campaign is gone from Redis; running it again finds everything in the file
  const again = spawnSync(process.execPath, injectArgs(url, out, ['--chunk', '4']), { encoding: 'utf8' });
  assert.equal(again.status, 0, again.stderr);
  assert.match(again.stdout, new RegExp(`^0 trials run, ${JOBS} already in`));
});

test('a worker killed with kill -9 mid-job: its job is retried by another worker, nothing lost or duplicated', { skip }, async () => {
  const url = redis.url(1);
  const victim = worker(url, data, ['--isa', 'scalar']);
  await victim.waitFor(/ready on/);
  const out = path.join(dir, 'kill.jsonl');
  const c = start(process.execPath, injectArgs(url, out, ['--chunk', '6']));
  const m = await victim.waitFor(/job (\S+) started/);
  victim.child.kill('SIGKILL');
  await victim.exited;
  // the other worker starts only now (started together, on a loaded machine it could take every
  // job before the victim started one) and finds the killed job stalled
  const other = worker(url, data);
  assert.doesNotMatch(victim.out(), new RegExp(`job ${m[1]} done`), 'killed mid-job');
  assert.equal(await c.exited, 0, c.out());
  checkAgainstLocal(out);
  assert.match(other.out(), new RegExp(`job ${m[1]} done`), 'the killed job was run again by the other worker');
  assert.equal(await stop(other), 0);
});

test('Redis restarted without persistence mid-campaign: workers and collector reconnect, missing trials are enqueued again', { skip }, async () => {
  const r2 = await startRedis();
  try {
    const url = r2.url(0);
    const ws = [worker(url, data, ['--isa', 'scalar']), worker(url, data, ['--isa', 'scalar'])]; // slow enough to restart Redis mid-way
    await Promise.all(ws.map((w) => w.waitFor(/ready on/)));
    const out = path.join(dir, 'restart.jsonl');
    const e = await enqueueCampaign({ ...camp, model, dataDir: data, queue: url, chunk: 4, out });
    assert.equal(e.enqueued, JOBS);
    let restarted: Promise<void> | null = null;
    const r = await collectCampaign({
      queue: url, out, quiet: true, pollMs: 100,
      onProgress: (p) => { if (!restarted && p.done >= 4) restarted = r2.restart(); },
    });
    assert.ok(restarted, 'Redis was restarted during the campaign');
    assert.ok(r.complete);
    assert.ok(r.reenqueued > 0 && r.reenqueued < JOBS, `re-enqueued ${r.reenqueued}`);
    checkAgainstLocal(out);
    for (const w of ws) assert.equal(await stop(w), 0, w.out());
  } finally {
    await r2.stop();
  }
});

test('a trial delivered twice is stored once and counted', { skip }, async () => {
  const url = redis.url(2);
  const out = path.join(dir, 'dup.jsonl');
  const e = await enqueueCampaign({ ...camp, model, dataDir: data, queue: url, chunk: 10, out });
  // the same trials as the first job, delivered again by a second job
  const { Queue } = loadBullMQ();
  const q = new Queue(queueName(e.id), { connection: { host: '127.0.0.1', port: redis.port, db: 2 }, prefix: PREFIX });
  const first = (await q.getJobs(['wait'], 0, -1)).find((j) => j.id === '1-0')!;
  await q.add('trials', first.data, { jobId: 'dup-0' });
  const w = worker(url, data);
  // let the worker finish every job first, so both deliveries are waiting for the collector
  for (let i = 0; i < 300 && (await q.getJobCounts('completed')).completed < e.jobs + 1; i++) await new Promise((res) => setTimeout(res, 100));
  await q.close();
  const r = await collectCampaign({ queue: url, out, quiet: true, pollMs: 100 });
  assert.equal(r.duplicates, 10);
  checkAgainstLocal(out);
  assert.equal(await stop(w), 0);
});

test('a job that fails all its attempts ends the campaign with an error naming its trials; a worker with other data refuses', { skip }, async () => {
  const url = redis.url(3);
  const w = worker(url, badData);
  const out = path.join(dir, 'fail.jsonl');
  await enqueueCampaign({ ...camp, model, dataDir: data, queue: url, chunk: 5, attempts: 2, out });
  const err = await collectCampaign({ queue: url, out, quiet: true, pollMs: 100 }).then(() => null, (e: Error) => e);
  assert.ok(err instanceof CampaignFailed, String(err));
  assert.match(err.message, /\d+ job\(s\) failed 2 times; \d+ trials not run: all (bitflip|sa0|sa1)@\d+% trial \d+; /);
  assert.match(err.message, /test data .* hashes to [0-9a-f]{12}, the campaign's to [0-9a-f]{12}/);
  assert.match(w.out(), /refused: this worker's fashion-mnist test data/);
  // a good worker and a second run: failed jobs get fresh attempts and the campaign completes
  const good = worker(url, data);
  await stop(w);
  const r = spawnSync(process.execPath, injectArgs(url, out), { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  checkAgainstLocal(out);
  assert.equal(await stop(good), 0);
});

test('a worker refuses a model whose bytes do not hash to the campaign\'s model sha256', { skip }, async () => {
  const url = redis.url(5);
  const out = path.join(dir, 'tamper.jsonl');
  const e = await enqueueCampaign({ ...camp, trials: 1, model, dataDir: data, queue: url, chunk: 12, attempts: 1, out });
  const { Redis } = await import('ioredis');
  const r = new Redis({ host: '127.0.0.1', port: redis.port, db: 5, lazyConnect: true });
  await r.connect();
  const sha = readResults(out).header.settings.modelSha256;
  const bytes = fs.readFileSync(model);
  bytes[bytes.length - 1] ^= 1; // one bit of a bias
  await r.set(modelKeyOf(sha), bytes);
  r.disconnect();
  const w = worker(url, data);
  const err = await collectCampaign({ queue: url, out, quiet: true, pollMs: 100 }).then(() => null, (x: Error) => x);
  assert.ok(err instanceof CampaignFailed, String(err));
  assert.match(err.message, /refused: the model in Redis hashes to [0-9a-f]{12}, the campaign wants [0-9a-f]{12}/);
  assert.equal(readResults(out).records.length, 0, 'no trial ran on the wrong model');
  assert.equal(e.total, 3 * 3 + 1, 'the trials at non-zero rates and one clean probe');
  assert.equal(await stop(w), 0);
});

test('one worker through campaigns on models A, B, C and then A again (its trial thread keeps two models): the same results as local runs', { skip }, async () => {
  const url = redis.url(7);
  const w = worker(url, data);
  const small = { faults: ['bitflip'] as 'bitflip'[], rates: [0.05], trials: 2 };
  const models = [11, 12, 13].map((seed) => path.join(dir, `m${seed}.safetensors`));
  for (const [i, m] of models.entries()) await writeTinyModel(m, 11 + i);
  // A, B, C, then A under another fault seed (another campaign): the thread dropped A after C arrived
  for (const [k, [m, seed]] of ([[models[0]!, 1], [models[1]!, 1], [models[2]!, 1], [models[0]!, 2]] as const).entries()) {
    const out = path.join(dir, `abca-${k}.jsonl`), local = path.join(dir, `abca-${k}-local.jsonl`);
    await runCampaign({ ...small, seed, model: m, out: local, dataDir: data, quiet: true });
    await enqueueCampaign({ ...small, seed, model: m, dataDir: data, queue: url, chunk: 1, attempts: 1, out });
    await collectCampaign({ queue: url, out, quiet: true, pollMs: 100 });
    assert.deepEqual(lines(out), lines(local), `campaign ${k}`);
  }
  assert.equal(await stop(w), 0);
});

test('a worker refuses a campaign of another semantics version', { skip }, async () => {
  const url = redis.url(6);
  const out = path.join(dir, 'sem.jsonl');
  const e = await enqueueCampaign({ ...camp, trials: 1, model, dataDir: data, queue: url, chunk: 12, attempts: 1, out });
  const { Redis } = await import('ioredis');
  const r = new Redis({ host: '127.0.0.1', port: redis.port, db: 6, lazyConnect: true });
  await r.connect();
  const meta = JSON.parse((await r.hget(campaignKeyOf(e.id), 'meta'))!);
  meta.header.settings.semantics = 1; // as written by an older flatenn
  await r.hset(campaignKeyOf(e.id), 'meta', JSON.stringify(meta));
  r.disconnect();
  const w = worker(url, data);
  const err = await collectCampaign({ queue: url, out, quiet: true, pollMs: 100 }).then(() => null, (x: Error) => x);
  assert.ok(err instanceof CampaignFailed, String(err));
  assert.match(err.message, new RegExp(`refused: the campaign uses semantics 1, this worker's engine computes semantics ${SEMANTICS}`));
  assert.equal(await stop(w), 0);
});

test('Redis URLs: parsed, or refused with the reason', () => {
  assert.deepEqual(parseRedisUrl('redis://h:7000/3').options, { host: 'h', port: 7000, db: 3 });
  const a = parseRedisUrl('redis://:p%40ss@h/0');
  assert.equal(a.options.password, 'p@ss');
  assert.equal(a.options.port, 6379);
  assert.doesNotMatch(a.display, /p@ss/, 'the password is not shown');
  assert.deepEqual(parseRedisUrl('rediss://u:pw@[::1]:6380/1').options, { host: '::1', port: 6380, db: 1, username: 'u', password: 'pw', tls: {} });
  assert.throws(() => parseRedisUrl('localhost:6379'), /scheme must be redis/);
  assert.throws(() => parseRedisUrl('redis://h:6379/x'), /database must be a number/);
  assert.throws(() => parseRedisUrl('not a url'), /not a Redis URL/);
});

test('CLI: --detach, campaign status --json, collect, cancel; bad URL and unreachable Redis fail fast and clearly', { skip }, async () => {
  const url = redis.url(4);
  const out = path.join(dir, 'detach.jsonl');
  const d = spawnSync(process.execPath, injectArgs(url, out, ['--detach', '--chunk', '30']), { encoding: 'utf8' });
  assert.equal(d.status, 0, d.stderr);
  const id = d.stdout.trim();
  assert.equal(id, campaignId(readResults(out).header));
  const st = spawnSync(process.execPath, [CLI, 'campaign', 'status', id, '--queue', url, '--json'], { encoding: 'utf8' });
  assert.equal(st.status, 0, st.stderr);
  const s = JSON.parse(st.stdout);
  assert.equal(s.total, JOBS);
  assert.equal(s.waiting, JOBS);
  assert.equal(s.state, 'running');
  assert.ok(Array.isArray(s.workers));
  const list = spawnSync(process.execPath, [CLI, 'campaign', 'status', '--queue', url], { encoding: 'utf8' });
  assert.equal(list.stdout.trim(), id);
  const w = worker(url, data);
  await w.waitFor(/ready on/);
  const col = spawnSync(process.execPath, [CLI, 'campaign', 'collect', id, '--queue', url, '--out', out], { encoding: 'utf8' });
  assert.equal(col.status, 0, col.stderr);
  assert.match(col.stdout, /\| all +\| bitflip \| 0%/);
  assert.match(col.stderr, /\d+\/136 trials \(\d+%\), [\d.]+ trials\/s, ETA [\d:-]+, workers alive 1/);
  checkAgainstLocal(out);
  assert.equal(await stop(w), 0);
  // cancel
  const out2 = path.join(dir, 'cancel.jsonl');
  const d2 = spawnSync(process.execPath, injectArgs(url, out2, ['--detach', '--trials', '3']), { encoding: 'utf8' });
  const id2 = d2.stdout.trim();
  const cancel = spawnSync(process.execPath, [CLI, 'campaign', 'cancel', id2, '--queue', url], { encoding: 'utf8' });
  assert.equal(cancel.status, 0, cancel.stderr);
  assert.match(cancel.stdout, /cancelled/);
  const gone = spawnSync(process.execPath, [CLI, 'campaign', 'status', id2, '--queue', url], { encoding: 'utf8' });
  assert.equal(gone.status, 1);
  assert.match(gone.stderr, /not in Redis/);
  // errors
  const bad = spawnSync(process.execPath, [CLI, 'worker', '--queue', 'http://x:1/0'], { encoding: 'utf8' });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /scheme must be redis/);
  const t0 = Date.now();
  const dead = spawnSync(process.execPath, [CLI, 'worker', '--queue', 'redis://127.0.0.1:1/0', '--connect-timeout', '3'], { encoding: 'utf8', timeout: 20_000 });
  assert.equal(dead.status, 1, dead.stderr);
  assert.match(dead.stderr, /cannot reach Redis at redis:\/\/127\.0\.0\.1:1\/0 \(ECONNREFUSED\)/);
  assert.ok(Date.now() - t0 < 15_000);
  const noQ = spawnSync(process.execPath, [CLI, 'inject', '--model', model, '--trials', '2', '--detach', '--out', out2], { encoding: 'utf8' });
  assert.equal(noQ.status, 2);
  assert.match(noQ.stderr, /--detach needs --queue/);
  const help = spawnSync(process.execPath, [CLI, 'campaign', 'collect', '--help'], { encoding: 'utf8' });
  assert.equal(help.status, 0);
  assert.match(help.stdout, /Usage: flatenn campaign collect <id>/);
});

export type { Proc };
