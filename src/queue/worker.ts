// A queue worker: pulls chunks of trials from the campaigns in Redis (oldest campaign first), checks that
// the model (by sha256, fetched from Redis) and its own copy of the test data (by content hash) are the
// campaign's, runs the trials on the native engine in worker threads and returns the records as the job's
// result. Stalled jobs (a worker killed mid-job) go back to the queue through BullMQ's lock expiry.
import { createHash } from 'node:crypto';
import * as os from 'node:os';
import * as path from 'node:path';
import { Worker as Thread } from 'node:worker_threads';
import type { Job, Queue, Worker } from 'bullmq';
import { testDataHash } from '../campaign/campaign';
import { RESULTS_VERSION, type CampaignSettings } from '../campaign/results';
import { loadDataset, type DatasetName } from '../data/dataset';
import { getIsa, getThreads } from '../native/info';
import { bullOptions, connectRedis, loadBullMQ, parseRedisUrl, PREFIX, sleep } from './connection';
import { CAMPAIGNS_KEY, campaignKey, describeTrials, modelKey, queueName, workerKey, type CampaignMeta, type ChunkData, type ChunkResult, type WorkerBeat } from './protocol';
import { headerSemantics, SUPPORTED_SEMANTICS } from './semantics';
import type { RunMessage, ThreadReply } from './trial-thread';

export interface WorkerOptions {
  /** redis://host:port/db */
  queue: string;
  /** Jobs run at once (each in its own thread; default 1). */
  concurrency?: number;
  /** Where this machine keeps the datasets (default: the usual places, see src/data/dirs.ts). */
  dataDir?: string;
  /** A job whose worker stops renewing its lock for this long is given to another worker (default 30000 ms). */
  stallMs?: number;
  /** Stop after this many seconds without a job to run (default: never). */
  idleExitSeconds?: number;
  /** First contact with Redis must succeed within this (default 10000 ms). */
  connectTimeoutMs?: number;
  /** Aborting stops gracefully: no new jobs; the jobs in hand are finished and their results returned. */
  signal?: AbortSignal;
  /** One line per event (job start/end, refusals, connection trouble); default: none. */
  log?: (line: string) => void;
  /** Worker name in heartbeats and results (default host:pid). */
  id?: string;
}

export interface WorkerSummary {
  id: string;
  jobs: number;
  trials: number;
  /** Jobs refused (model or data hash differs, unsupported semantics). */
  refused: number;
  seconds: number;
}

/** Worker threads running chunks; each keeps its decoded models between jobs. */
class TrialPool {
  private readonly threads: { t: Thread; busy: boolean; models: Set<string> }[] = [];
  private readonly waiters: (() => void)[] = [];
  private readonly pending = new Map<number, { resolve: (r: ThreadReply) => void; reject: (e: Error) => void }>();
  private nextId = 1;

  constructor(n: number) {
    for (let i = 0; i < n; i++) {
      const t = new Thread(path.join(__dirname, 'trial-thread.js'));
      t.on('message', (r: ThreadReply) => { const p = this.pending.get(r.id); if (p) { this.pending.delete(r.id); p.resolve(r); } });
      t.on('error', (e) => { for (const p of this.pending.values()) p.reject(e); this.pending.clear(); });
      t.unref();
      this.threads.push({ t, busy: false, models: new Set() });
    }
  }

  async run(m: Omit<RunMessage, 'id' | 'kind' | 'modelBytes'>, modelBytes: Uint8Array): Promise<ThreadReply> {
    let slot = this.threads.find((s) => !s.busy);
    while (!slot) { await new Promise<void>((r) => this.waiters.push(r)); slot = this.threads.find((s) => !s.busy); }
    slot.busy = true;
    try {
      const send = (withBytes: boolean) => {
        const id = this.nextId++;
        const msg: RunMessage = { kind: 'run', id, ...m };
        if (withBytes) msg.modelBytes = modelBytes;
        return new Promise<ThreadReply>((resolve, reject) => { this.pending.set(id, { resolve, reject }); slot!.t.postMessage(msg); });
      };
      let reply = await send(!slot.models.has(m.modelSha));
      // the thread dropped the model since (it keeps two): send it again
      if (reply.kind === 'need-model') reply = await send(true);
      slot.models = new Set(reply.held);
      if (reply.kind === 'need-model') return { kind: 'error', id: reply.id, message: `model ${m.modelSha.slice(0, 12)} was sent but the trial thread did not keep it`, held: reply.held };
      return reply;
    } finally {
      slot.busy = false;
      this.waiters.shift()?.();
    }
  }

  async close(): Promise<void> { await Promise.all(this.threads.map((s) => s.t.terminate())); }
}

class Refusal extends Error {}

/** Runs a worker until the signal aborts (or it has been idle for idleExitSeconds). */
export async function runWorker(o: WorkerOptions): Promise<WorkerSummary> {
  const conn = parseRedisUrl(o.queue);
  const concurrency = o.concurrency ?? 1;
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 256) throw new RangeError(`concurrency must be an integer in [1, 256], got ${concurrency}`);
  const stallMs = o.stallMs ?? 30_000;
  if (!Number.isFinite(stallMs) || stallMs < 200) throw new RangeError(`stallMs must be at least 200, got ${stallMs}`);
  const log = o.log ?? (() => {});
  const bull = loadBullMQ();
  const redis = await connectRedis(conn, o.connectTimeoutMs ?? 10_000);
  const id = o.id ?? `${os.hostname()}:${process.pid}`;
  const t0 = Date.now();
  const stats = { jobs: 0, trials: 0, refused: 0 };
  let current: string | null = null;
  let lastWork = Date.now();
  const pool = new TrialPool(concurrency);
  const metas = new Map<string, CampaignMeta>();
  const models = new Map<string, Buffer>();
  const datasets = new Map<string, { hash: string; images: SharedArrayBuffer; labels: SharedArrayBuffer; count: number; source: string }>();
  const queues = new Map<string, Queue>();
  let lastTrouble = 0;
  const trouble = (msg: string) => { const now = Date.now(); if (now - lastTrouble > 5000) { lastTrouble = now; log(`worker ${id}: ${msg}`); } };
  redis.on('error', (e: Error) => trouble(`Redis: ${(e as NodeJS.ErrnoException).code ?? e.message} (reconnecting)`));

  const beat = async () => {
    const b: WorkerBeat = { id, host: os.hostname(), pid: process.pid, isa: getIsa(), threads: getThreads(), concurrency, campaign: current, ...stats, started: t0, at: Date.now() };
    await redis.set(workerKey(id), JSON.stringify(b), 'PX', Math.max(6000, 3 * 2000));
  };
  const beatTimer = setInterval(() => { beat().catch(() => {}); }, 2000);
  await beat().catch(() => {});

  const metaOf = async (cid: string): Promise<CampaignMeta> => {
    const raw = await redis.hget(campaignKey(cid), 'meta');
    if (!raw) throw new Error(`campaign ${cid} has no metadata in Redis (cancelled, or Redis lost it and the collector has not restored it yet)`);
    const meta = JSON.parse(raw) as CampaignMeta;
    metas.set(cid, meta);
    return meta;
  };

  const modelOf = async (sha: string): Promise<Buffer> => {
    const have = models.get(sha);
    if (have) return have;
    const buf = await redis.getBuffer(modelKey(sha));
    if (!buf) throw new Error(`model ${sha.slice(0, 12)} is not in Redis (the collector uploads it again after a Redis restart)`);
    const got = createHash('sha256').update(buf).digest('hex');
    if (got !== sha) throw new Refusal(`refused: the model in Redis hashes to ${got.slice(0, 12)}, the campaign wants ${sha.slice(0, 12)}`);
    if (models.size >= 2) models.delete(models.keys().next().value!);
    models.set(sha, buf);
    return buf;
  };

  const dataOf = async (s: CampaignSettings) => {
    const key = `${s.dataset}|${s.images}`;
    let d = datasets.get(key);
    if (!d) {
      const ds = await loadDataset(s.dataset as DatasetName, 'test', o.dataDir ? { dataDir: o.dataDir } : {});
      if (ds.count < s.images) throw new Refusal(`refused: this worker's ${s.dataset} test set (${ds.source}) has ${ds.count} images, the campaign evaluates ${s.images}`);
      const per = ds.channels * ds.height * ds.width;
      const images = new SharedArrayBuffer(s.images * per), labels = new SharedArrayBuffer(s.images);
      new Uint8Array(images).set(ds.images.subarray(0, s.images * per));
      new Uint8Array(labels).set(ds.labels.subarray(0, s.images));
      d = { hash: testDataHash(ds, s.images), images, labels, count: s.images, source: ds.source };
      datasets.set(key, d);
    }
    if (s.dataSha256 !== undefined && d.hash !== s.dataSha256) throw new Refusal(`refused: this worker's ${s.dataset} test data (${d.source}, first ${s.images} images) hashes to ${d.hash.slice(0, 12)}, the campaign's to ${s.dataSha256.slice(0, 12)}; give the worker the same data (--data-dir)`);
    return { key, ...d };
  };

  const processor = async (job: Job): Promise<ChunkResult> => {
    const data = job.data as ChunkData;
    lastWork = Date.now();
    log(`worker ${id}: job ${job.id} started (${data.trials.length} trials, attempt ${job.attemptsMade + 1})`);
    try {
      const meta = metas.get(data.campaign) ?? await metaOf(data.campaign);
      const h = meta.header;
      if (h.version !== RESULTS_VERSION) throw new Refusal(`refused: results version ${h.version} (this worker writes ${RESULTS_VERSION}); update flatenn on one side`);
      const sem = headerSemantics(h);
      if (sem !== SUPPORTED_SEMANTICS) throw new Refusal(`refused: the campaign uses semantics ${sem}, this worker's engine computes semantics ${SUPPORTED_SEMANTICS}; update flatenn on one side`);
      const s = h.settings;
      const bytes = await modelOf(s.modelSha256);
      const d = await dataOf(s);
      const t1 = Date.now();
      const reply = await pool.run({ campaign: data.campaign, settings: s, modelSha: s.modelSha256, data: { key: d.key, images: d.images, labels: d.labels, count: d.count }, trials: data.trials }, bytes);
      if (reply.kind === 'error') throw new Error(`trials ${describeTrials(data.trials)}: ${reply.message}`);
      if (reply.kind !== 'done') throw new Error(`trials ${describeTrials(data.trials)}: the trial thread answered ${reply.kind}`);
      const seconds = (Date.now() - t1) / 1000;
      stats.jobs++;
      stats.trials += reply.records.length;
      lastWork = Date.now();
      log(`worker ${id}: job ${job.id} done (${reply.records.length} trials in ${seconds.toFixed(2)} s)`);
      return { worker: id, isa: getIsa(), seconds, records: reply.records };
    } catch (e) {
      if (e instanceof Refusal) stats.refused++;
      lastWork = Date.now();
      log(`worker ${id}: job ${job.id} failed: ${(e as Error).message}`);
      throw e;
    }
  };

  const queueOf = (cid: string): Queue => {
    let q = queues.get(cid);
    if (!q) {
      q = new bull.Queue(queueName(cid), { connection: bullOptions(conn), prefix: PREFIX });
      q.on('error', (e: Error) => trouble(`Redis: ${e.message}`));
      queues.set(cid, q);
    }
    return q;
  };

  /** The oldest campaign with waiting jobs; else the oldest with active ones (to watch for stalls). */
  const pick = async (): Promise<{ cid: string; waiting: boolean } | null> => {
    const ids = await redis.zrange(CAMPAIGNS_KEY, 0, -1);
    for (const [cid, q] of queues) if (!ids.includes(cid)) { queues.delete(cid); metas.delete(cid); await q.close().catch(() => {}); }
    let busy: string | null = null;
    for (const cid of ids) {
      const c = await queueOf(cid).getJobCounts('wait', 'active', 'delayed', 'prioritized');
      if ((c.wait ?? 0) + (c.prioritized ?? 0) > 0) return { cid, waiting: true };
      if (busy === null && (c.active ?? 0) + (c.delayed ?? 0) > 0) busy = cid;
    }
    return busy ? { cid: busy, waiting: false } : null;
  };

  log(`worker ${id}: ready on ${conn.display} (isa ${getIsa()}, ${getThreads()} native threads, concurrency ${concurrency})`);
  try {
    while (!o.signal?.aborted) {
      let p: { cid: string; waiting: boolean } | null = null;
      try { p = await pick(); } catch (e) { trouble(`cannot read the campaign list: ${(e as Error).message}`); }
      if (!p) {
        current = null;
        if (o.idleExitSeconds !== undefined && Date.now() - lastWork > o.idleExitSeconds * 1000) { log(`worker ${id}: idle for ${o.idleExitSeconds} s, stopping`); break; }
        await sleep(500, o.signal);
        continue;
      }
      current = p.cid;
      log(`worker ${id}: on campaign ${p.cid}`);
      const w: Worker = new bull.Worker(queueName(p.cid), processor, {
        connection: bullOptions(conn), prefix: PREFIX, concurrency, lockDuration: stallMs, stalledInterval: stallMs, maxStalledCount: 3, drainDelay: 1,
      });
      w.on('error', (e: Error) => trouble(`queue ${p!.cid}: ${e.message}`));
      // Stay on this campaign while it has work; leave when it has none (or only running jobs while an
      // older-or-newer campaign waits), so a worker serves one campaign at a time.
      while (!o.signal?.aborted) {
        await sleep(500, o.signal);
        if (o.signal?.aborted) break;
        try {
          const c = await queueOf(p.cid).getJobCounts('wait', 'active', 'delayed', 'prioritized');
          const exists = await redis.zscore(CAMPAIGNS_KEY, p.cid);
          if (exists === null) break;
          const waiting = (c.wait ?? 0) + (c.prioritized ?? 0), running = (c.active ?? 0) + (c.delayed ?? 0);
          if (waiting === 0 && running === 0) break;
          if (waiting === 0) {
            const next = await pick();
            if (next && next.waiting && next.cid !== p.cid) break;
          }
        } catch (e) {
          trouble(`cannot read queue ${p.cid}: ${(e as Error).message}`);
        }
      }
      await w.close();
    }
  } finally {
    clearInterval(beatTimer);
    await Promise.all([...queues.values()].map((q) => q.close().catch(() => {})));
    await pool.close();
    await redis.del(workerKey(id)).catch(() => {});
    redis.disconnect();
  }
  const summary = { id, ...stats, seconds: (Date.now() - t0) / 1000 };
  log(`worker ${id}: stopped after ${summary.jobs} jobs, ${summary.trials} trials${summary.refused ? `, ${summary.refused} refused` : ''}`);
  return summary;
}
