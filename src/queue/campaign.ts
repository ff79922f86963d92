// Queue mode of a campaign: enqueue it in Redis as chunks of trials (BullMQ jobs), collect the records the
// workers return into the same results file a local run writes, follow it up (status) or drop it (cancel).
//
// The results file is the source of truth: whenever the collector (re)connects, or finds the campaign
// missing from Redis (a restart without persistence), it restores the campaign and enqueues every trial
// that is neither in the file nor in a job. Trials are deterministic, so a trial delivered twice must be
// identical: it is stored once and counted.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import type { Job, Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { lockResults, openResults, prepareCampaign, type CampaignOptions, type PreparedCampaign } from '../campaign/campaign';
import { readResults, ResultsWriter, summaryRows, trialKey, type CampaignSettings, type CleanRecord, type ResultsHeader, type SummaryRow, type TrialRecord } from '../campaign/results';
import { campaignJobCount, campaignJobs, type TrialJob } from '../campaign/runner';
import { Engine } from '../engine/engine';
import { formatDuration } from '../util/progress';
import { bullOptions, connectRedis, loadBullMQ, parseRedisUrl, PREFIX, sleep, withTimeout, type QueueConnection } from './connection';
import {
  CAMPAIGNS_KEY, campaignId, campaignKey, canonical, chunk, describeTrials, modelKey, queueName, recordKey, WORKER_PATTERN,
  type CampaignMeta, type ChunkData, type ChunkResult, type WorkerBeat,
} from './protocol';

/** Seconds a job should take when the chunk size is chosen automatically. */
export const TARGET_JOB_SECONDS = 5;

export interface EnqueueOptions extends Omit<CampaignOptions, 'out' | 'onTrial' | 'signal'> {
  /** redis://host:port/db */
  queue: string;
  /** Trials per job (default: sized from a timed evaluation so that a job takes about 5 s). */
  chunk?: number;
  /** Tries per job before the campaign fails (default 3). */
  attempts?: number;
  /** Trials already done (their keys): not enqueued. */
  done?: Iterable<string>;
  /**
   * Results file: an existing one must hold this campaign (its trials are not enqueued); a new one is
   * created with the header, so `collectCampaign` can later fill it.
   */
  out?: string;
  connectTimeoutMs?: number;
}

export interface EnqueueResult {
  id: string;
  header: ResultsHeader;
  /** Trials of the campaign (its shard). */
  total: number;
  /** Trials put in new jobs now. */
  enqueued: number;
  jobs: number;
  chunk: number;
  /** The campaign was already in Redis (a resumed run): only missing trials were added. */
  existing: boolean;
}

export interface CollectOptions {
  queue: string;
  /** Results file (.jsonl): created with the campaign's header, or resumed. */
  out: string;
  /** Campaign id (default: the one of the results file's header). */
  id?: string;
  /** Model file to upload again if Redis lost the campaign (default: the path in the header). */
  model?: string;
  /** No messages (the `write` sink is not called). */
  quiet?: boolean;
  /**
   * Where progress lines and messages go (default: nowhere; the library prints nothing). The CLI passes
   * stderr's writer.
   */
  write?: (text: string) => void;
  /** Redraw one progress line (a terminal) instead of a line every 10 s. Default false. */
  tty?: boolean;
  /** Called about once a second while waiting. */
  onProgress?: (s: CollectProgress) => void;
  /** Aborting stops collecting; the campaign stays in Redis and `collect` resumes it. */
  signal?: AbortSignal;
  /** Give up when Redis stays unreachable this long (default 300000 ms). */
  reconnectTimeoutMs?: number;
  connectTimeoutMs?: number;
  /** Poll period (default 250 ms). */
  pollMs?: number;
}

export interface CollectProgress {
  id: string;
  done: number;
  total: number;
  trialsPerSecond: number;
  etaSeconds: number;
  workersAlive: number;
  workersOnCampaign: number;
}

export interface CollectResult {
  id: string;
  settings: CampaignSettings;
  records: TrialRecord[];
  rows: SummaryRow[];
  /** Trials written to the file by this collector. */
  ran: number;
  /** Trials already in the file when it started. */
  skipped: number;
  seconds: number;
  /** Trials delivered more than once (identical; stored once). */
  duplicates: number;
  /** Trials enqueued again because Redis no longer had them (after a restart). */
  reenqueued: number;
  /** Trials per worker among those written now. */
  byWorker: Record<string, number>;
  /** Each job collected now: who ran it, its trials, seconds computing them, and BullMQ's start/end times (ms). */
  jobs: { id: string; worker: string; trials: number; seconds: number; processedOn: number; finishedOn: number }[];
  /** False when stopped by the signal before the campaign finished. */
  complete: boolean;
}

export interface CampaignStatus {
  id: string;
  state: 'running' | 'failed' | 'finished, not collected';
  total: number;
  /** Trials written to the results file by a collector. */
  collected: number;
  /** Trials finished by workers and waiting for a collector. */
  uncollected: number;
  running: number;
  waiting: number;
  failed: number;
  failures: { job: string; trials: string; reason: string }[];
  trialsPerSecond: number;
  etaSeconds: number | null;
  collector: { id: string; out: string } | null;
  workers: WorkerBeat[];
  settings: CampaignSettings;
  shard: { index: number; count: number };
}

/** The campaign cannot finish (a job failed all its attempts, or two deliveries of a trial disagree). */
export class CampaignFailed extends Error {
  override name = 'CampaignFailed';
}

interface Ctx {
  conn: QueueConnection;
  redis: Redis;
  bull: ReturnType<typeof loadBullMQ>;
}

async function open(url: string, timeoutMs?: number): Promise<Ctx> {
  const conn = parseRedisUrl(url);
  const bull = loadBullMQ();
  const redis = await connectRedis(conn, timeoutMs ?? 10_000);
  return { conn, redis, bull };
}

function newQueue(ctx: Ctx, id: string): Queue {
  const q = new ctx.bull.Queue(queueName(id), { connection: bullOptions(ctx.conn), prefix: PREFIX });
  q.on('error', () => { /* connection trouble: the caller's commands fail and are retried */ });
  return q;
}

/** Trials per job so that one takes about TARGET_JOB_SECONDS (timed on this machine), and at least ~32 jobs. */
function autoChunk(p: PreparedCampaign, total: number): number {
  const engine = new Engine(p.model);
  const n = Math.min(p.data.count, 256);
  engine.evaluateSync({ memory: p.model.memory, images: p.data.images, labels: p.data.labels, count: Math.min(n, 16) }); // warm up
  const t0 = process.hrtime.bigint();
  engine.evaluateSync({ memory: p.model.memory, images: p.data.images, labels: p.data.labels, count: n });
  const perTrial = (Number(process.hrtime.bigint() - t0) / 1e9) * (p.data.count / n);
  let size = Math.max(1, Math.round(TARGET_JOB_SECONDS / Math.max(perTrial, 1e-6)));
  size = Math.min(size, 1000, Math.max(1, Math.ceil(total / 32)));
  return size;
}

function readMeta(raw: string | null): CampaignMeta | null {
  return raw ? (JSON.parse(raw) as CampaignMeta) : null;
}

async function addChunks(q: Queue, id: string, gen: number, trials: TrialJob[], size: number, attempts: number): Promise<number> {
  const chunks = chunk(trials, size);
  const jobs = chunks.map((c, i) => ({
    name: 'trials',
    data: { campaign: id, trials: c } satisfies ChunkData,
    opts: { jobId: `${gen}-${i}`, attempts, backoff: { type: 'fixed', delay: 500 }, removeOnComplete: false, removeOnFail: false },
  }));
  for (let i = 0; i < jobs.length; i += 500) await q.addBulk(jobs.slice(i, i + 500));
  return chunks.length;
}

/**
 * The queue's jobs, as a local run computes them: every trial at a non-zero rate, plus one rate-0 probe per
 * target (the first trial of the shard, the first fault type) whose result becomes that target's clean record
 * (rate 0 leaves the memory unchanged, so a local run evaluates the clean model once instead of trials).
 */
export function queueJobs(settings: CampaignSettings, shard: { index: number; count: number }): TrialJob[] {
  const out: TrialJob[] = [];
  if (shard.index < settings.trials) for (const target of settings.targets) out.push(probeOf(settings, shard, target));
  for (const j of campaignJobs(settings, shard)) if (j.rate !== 0) out.push(j);
  return out;
}
function probeOf(settings: CampaignSettings, shard: { index: number }, target: string): TrialJob {
  return { target, trial: shard.index, fault: settings.faults[0]!, rate: 0 };
}
/** The probe keys already answered by clean records in a results file. */
function cleanProbeKeys(settings: CampaignSettings, shard: { index: number }, clean: CleanRecord[]): string[] {
  return clean.map((c) => trialKey(probeOf(settings, shard, c.target)));
}

/**
 * Puts the campaign (meta, model) in Redis and enqueues each trial that is neither done nor in a job.
 * Failed jobs are dropped first, so their trials get fresh attempts.
 */
async function reconcile(ctx: Ctx, q: Queue, meta: CampaignMeta, modelBytes: Buffer | null, done: Set<string>): Promise<{ meta: CampaignMeta; enqueued: number; jobs: number }> {
  const r = ctx.redis;
  const sha = meta.header.settings.modelSha256;
  if (!(await r.exists(modelKey(sha)))) {
    if (!modelBytes) throw new Error(`the model ${sha.slice(0, 12)} is no longer in Redis and its file is not available here`);
    await r.set(modelKey(sha), modelBytes);
  }
  for (const j of await q.getJobs(['failed'], 0, -1)) await j.remove();
  const jobs = await q.getJobs(['wait', 'active', 'delayed', 'prioritized', 'waiting-children', 'completed'], 0, -1);
  const covered = new Set<string>();
  for (const j of jobs) for (const t of (j?.data as ChunkData | undefined)?.trials ?? []) covered.add(trialKey(t));
  const all = queueJobs(meta.header.settings, meta.header.shard);
  const missing = all.filter((t) => !done.has(trialKey(t)) && !covered.has(trialKey(t)));
  const stored = readMeta(await r.hget(campaignKey(meta.id), 'meta'));
  const next: CampaignMeta = { ...meta, gen: Math.max(meta.gen, stored?.gen ?? 0) + (missing.length > 0 ? 1 : 0) };
  await r.hset(campaignKey(meta.id), 'meta', JSON.stringify(next));
  await r.zadd(CAMPAIGNS_KEY, 'NX', String(meta.created), meta.id);
  const n = missing.length > 0 ? await addChunks(q, meta.id, next.gen, missing, meta.chunk, meta.attempts) : 0;
  return { meta: next, enqueued: missing.length, jobs: n };
}

async function enqueuePrepared(ctx: Ctx, p: PreparedCampaign, modelBytes: Buffer, done: Set<string>, o: { chunk?: number; attempts?: number }): Promise<EnqueueResult & { meta: CampaignMeta }> {
  const id = campaignId(p.header);
  const total = queueJobs(p.settings, p.shard).length;
  const attempts = o.attempts ?? 3;
  if (!Number.isInteger(attempts) || attempts < 1 || attempts > 100) throw new RangeError(`attempts must be an integer in [1, 100], got ${attempts}`);
  if (o.chunk !== undefined && (!Number.isInteger(o.chunk) || o.chunk < 1)) throw new RangeError(`chunk must be an integer >= 1, got ${o.chunk}`);
  const stored = readMeta(await ctx.redis.hget(campaignKey(id), 'meta'));
  const meta: CampaignMeta = stored
    ? { ...stored, attempts, ...(o.chunk ? { chunk: o.chunk } : {}) }
    : { id, header: p.header, total, chunk: o.chunk ?? autoChunk(p, total), attempts, created: Date.now(), gen: 0 };
  const q = newQueue(ctx, id);
  try {
    const r = await reconcile(ctx, q, meta, modelBytes, done);
    return { id, header: p.header, total, enqueued: r.enqueued, jobs: r.jobs, chunk: meta.chunk, existing: stored !== null, meta: r.meta };
  } finally {
    await q.close();
  }
}

/** Enqueues a campaign in Redis (only the trials not in `done`); workers run it, `collectCampaign` gathers it. */
export async function enqueueCampaign(o: EnqueueOptions): Promise<EnqueueResult> {
  const p = await prepareCampaign({ ...o, out: o.out ?? '' }, { withOut: o.out !== undefined });
  const bytes = fs.readFileSync(o.model);
  if (createHash('sha256').update(bytes).digest('hex') !== p.model.hash) throw new Error(`${o.model} changed while the campaign was being enqueued`);
  const ctx = await open(o.queue, o.connectTimeoutMs);
  try {
    const done = new Set(o.done ?? []);
    if (o.out !== undefined) {
      const unlock = lockResults(o.out);
      try {
        for (const r of openResults(o.out, p.header)) done.add(trialKey(r));
        for (const k of cleanProbeKeys(p.settings, p.shard, readResults(o.out).clean)) done.add(k);
      } finally { unlock(); }
    }
    const { meta: _m, ...r } = await enqueuePrepared(ctx, p, bytes, done, o);
    void _m;
    return r;
  } finally {
    ctx.redis.disconnect();
  }
}

function modelFileBytes(file: string, sha: string): Buffer | null {
  try {
    const b = fs.readFileSync(file);
    return createHash('sha256').update(b).digest('hex') === sha ? b : null;
  } catch { return null; }
}

const COLLECTOR_TTL_MS = 15_000;
const collectorKey = (id: string) => `${campaignKey(id)}:collector`;

async function liveWorkers(r: Redis): Promise<WorkerBeat[]> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [c, ks] = await r.scan(cursor, 'MATCH', WORKER_PATTERN, 'COUNT', 200);
    cursor = c;
    keys.push(...ks);
  } while (cursor !== '0');
  if (keys.length === 0) return [];
  const vals = await r.mget(...keys);
  return vals.filter((v): v is string => !!v).map((v) => JSON.parse(v) as WorkerBeat).sort((a, b) => a.id.localeCompare(b.id));
}

/** Removes a finished or cancelled campaign from Redis (its model too, unless another campaign uses it). */
async function dropCampaign(ctx: Ctx, id: string, q: Queue, sha: string | null): Promise<void> {
  await q.obliterate({ force: true }).catch(async () => { await q.drain(true).catch(() => {}); });
  await ctx.redis.zrem(CAMPAIGNS_KEY, id);
  await ctx.redis.del(campaignKey(id), collectorKey(id));
  if (sha) {
    const others = await ctx.redis.zrange(CAMPAIGNS_KEY, 0, -1);
    let used = false;
    for (const c of others) if (readMeta(await ctx.redis.hget(campaignKey(c), 'meta'))?.header.settings.modelSha256 === sha) used = true;
    if (!used) await ctx.redis.del(modelKey(sha));
  }
}

/**
 * Waits for a campaign's trials and writes them to `out` as they arrive (one line each, the same file a
 * local run writes). Survives Redis restarts and collector restarts; ends with an error naming the trials
 * of any job that failed all its attempts.
 */
export async function collectCampaign(o: CollectOptions): Promise<CollectResult> {
  const t0 = Date.now();
  const ctx = await open(o.queue, o.connectTimeoutMs);
  const r = ctx.redis;
  let q: Queue | null = null;
  let unlock: (() => void) | null = null;
  let writer: ResultsWriter | null = null;
  let heartbeat: NodeJS.Timeout | null = null;
  const me = `${os.hostname()}:${process.pid}`;
  let release: (() => Promise<void>) | null = null;
  try {
    // The campaign: from the results file's header, else from Redis.
    let header: ResultsHeader;
    let meta: CampaignMeta | null = null;
    const fileHeader = fs.existsSync(o.out) && fs.statSync(o.out).size > 0 ? readResults(o.out).header : null;
    if (fileHeader) {
      header = fileHeader;
      const id = campaignId(header);
      if (o.id !== undefined && o.id !== id) throw new Error(`${o.out} holds campaign ${id}, not ${o.id}; choose another --out`);
      meta = readMeta(await r.hget(campaignKey(id), 'meta'));
    } else {
      if (!o.id) throw new Error(`${o.out} does not exist yet: give the campaign id`);
      meta = readMeta(await r.hget(campaignKey(o.id), 'meta'));
      if (!meta) throw new Error(`campaign ${o.id} is not in Redis at ${ctx.conn.display} (finished and collected, cancelled, or lost with a Redis restart and no results file to resume from: enqueue it again with flatenn inject ... --queue)`);
      header = meta.header;
    }
    const id = campaignId(header);
    const settings = header.settings;
    const sha = settings.modelSha256;
    const modelPath = o.model ?? settings.model;
    let modelBytes: Buffer | null = null;
    const needModel = (): Buffer | null => (modelBytes ??= modelFileBytes(modelPath, sha));
    const all = queueJobs(settings, header.shard);
    const total = all.length;
    meta ??= { id, header, total, chunk: Math.max(1, Math.ceil(total / 64)), attempts: 3, created: Date.now(), gen: 0 };

    // One collector per campaign and per results file.
    const claim = async (first: boolean) => {
      const mine = JSON.stringify({ id: me, out: fs.realpathSync(o.out) });
      const ok = await r.set(collectorKey(id), mine, 'PX', COLLECTOR_TTL_MS, 'NX');
      if (ok) return;
      const cur = await r.get(collectorKey(id));
      if (cur === mine) { await r.pexpire(collectorKey(id), COLLECTOR_TTL_MS); return; }
      if (cur && first) { const c = JSON.parse(cur) as { id: string; out: string }; throw new Error(`campaign ${id} is being collected by ${c.id} into ${c.out}; stop that collector first`); }
      if (cur === null) await r.set(collectorKey(id), mine, 'PX', COLLECTOR_TTL_MS);
    };
    unlock = lockResults(o.out);
    const existing = openResults(o.out, header);
    const done = new Map<string, string>();
    for (const rec of existing) done.set(recordKey(rec as unknown as { type: string } & Record<string, unknown>), canonical(rec));
    const records: TrialRecord[] = existing.slice();
    const clean: CleanRecord[] = fs.existsSync(o.out) ? readResults(o.out).clean : [];
    for (const k of cleanProbeKeys(settings, header.shard, clean)) done.set(k, 'clean');
    const allKeys = new Set(all.map(trialKey));
    const skipped = [...done.keys()].filter((k) => allKeys.has(k)).length;
    let trialsDone = skipped;
    await claim(true);
    release = async () => { const cur = await r.get(collectorKey(id)); if (cur && (JSON.parse(cur) as { id: string }).id === me) await r.del(collectorKey(id)); };
    heartbeat = setInterval(() => { claim(false).catch(() => {}); }, COLLECTOR_TTL_MS / 3);
    q = newQueue(ctx, id);
    writer = new ResultsWriter(o.out);
    const doneKeys = () => new Set(done.keys());
    const ttyErr = !!o.tty;
    const write = (text: string) => { if (!o.quiet) o.write?.(text); };

    let duplicates = 0, reenqueued = 0, ran = 0;
    const byWorker: Record<string, number> = {};
    const jobTimes: CollectResult['jobs'] = [];
    let complete = false;

    const restore = async (why: string, first: boolean) => {
      const res = await reconcile(ctx, q!, meta!, needModel(), doneKeys());
      meta = res.meta;
      if (!first && res.enqueued > 0) {
        reenqueued += res.enqueued;
        write(`${ttyErr ? '\n' : ''}campaign ${id}: ${why}; enqueued again the ${res.enqueued} trials missing from ${o.out} (${res.jobs} jobs)\n`);
      }
    };
    if (trialsDone < total) await restore('resumed', true);

    const pollMs = o.pollMs ?? 250;
    const reconnectMs = o.reconnectTimeoutMs ?? 300_000;
    let troubleSince = 0;
    let lastReport = 0;
    const rateStart = { t: Date.now(), n: trialsDone };
    // a redrawn line on a terminal (every second), else a line every 10 s
    const tty = ttyErr;
    let lastPrinted = 0;
    let noWorkersSince = 0, hinted = false;
    const report = async (now: number) => {
      lastReport = now;
      const workers = await liveWorkers(r);
      const dt = (now - rateStart.t) / 1000, rate = dt > 0 ? (trialsDone - rateStart.n) / dt : 0;
      const prog: CollectProgress = {
        id, done: trialsDone, total, trialsPerSecond: rate, etaSeconds: rate > 0 ? (total - trialsDone) / rate : NaN,
        workersAlive: workers.length, workersOnCampaign: workers.filter((w) => w.campaign === id).length,
      };
      await r.hset(campaignKey(id), 'progress', JSON.stringify({ done: trialsDone, rate, at: now }));
      if (workers.length > 0) noWorkersSince = 0;
      else if (!noWorkersSince) noWorkersSince = now;
      else if (now - noWorkersSince > 15_000 && !hinted && !o.quiet) {
        hinted = true;
        write(`${tty ? '\n' : ''}campaign ${id}: no worker is alive; start some with: flatenn worker --queue ${o.queue.replace(/:[^:@/]*@/, ':***@')}\n`);
      }
      o.onProgress?.(prog);
      if (!o.quiet && (tty || now - lastPrinted >= 10_000 || prog.done >= total)) {
        lastPrinted = now;
        write(tty ? `\r${formatProgress(prog)}\x1b[K${prog.done >= total ? '\n' : ''}` : `${formatProgress(prog)}\n`);
      }
    };
    while (trialsDone < total) {
      if (o.signal?.aborted) break;
      try {
        // Redis restarted without its data: restore the campaign from what this collector has.
        const present = await r.exists(campaignKey(id), modelKey(sha));
        if (present < 2) await restore('the campaign was missing from Redis (restarted?)', false);
        else if (troubleSince) await restore('Redis was unreachable for a while', false);
        troubleSince = 0;
        await claim(false);

        const completed: Job[] = await q.getCompleted(0, 499);
        for (const job of completed) {
          const res = job.returnvalue as ChunkResult | null;
          if (!res || !Array.isArray(res.records)) continue;
          jobTimes.push({ id: String(job.id), worker: res.worker, trials: res.records.length, seconds: res.seconds, processedOn: job.processedOn ?? 0, finishedOn: job.finishedOn ?? 0 });
          for (const rec of res.records) {
            if (rec.type === 'trial' && rec.rate === 0) {
              // a probe: its result is the target's clean record (written once, as a local run does)
              const pk = trialKey(rec);
              if (done.has(pk)) { duplicates++; continue; }
              const c: CleanRecord = { type: 'clean', target: rec.target, accuracy: rec.accuracy, loss: rec.loss, sparsity: rec.sparsity, sparsityWeighted: rec.sparsityWeighted, images: settings.images };
              writer.write(c);
              done.set(pk, 'clean');
              clean.push(c);
              trialsDone++;
              continue;
            }
            const key = recordKey(rec as unknown as { type: string } & Record<string, unknown>);
            const c = canonical(rec);
            const prev = done.get(key);
            if (prev !== undefined) {
              if (prev !== c) throw new CampaignFailed(`trial ${key} was delivered twice with different results (${prev} vs ${c} from ${res.worker}); trials are deterministic, so a worker computes differently: check its flatenn version`);
              duplicates++;
              continue;
            }
            writer.write(rec);
            done.set(key, c);
            records.push(rec);
            if (rec.type === 'trial') { trialsDone++; ran++; byWorker[res.worker] = (byWorker[res.worker] ?? 0) + 1; }
          }
        }
        if (completed.length > 0) {
          writer.sync();
          await Promise.all(completed.map((j) => j.remove().catch(() => {})));
        }

        const failed: Job[] = await q.getFailed(0, 99);
        const final = failed.filter((j) => j.attemptsMade >= (j.opts.attempts ?? 1));
        if (final.length > 0) {
          const order = new Map(all.map((t, i) => [trialKey(t), i]));
          const trials = final.flatMap((j) => (j.data as ChunkData).trials).filter((t) => !done.has(trialKey(t)))
            .sort((a, b) => (order.get(trialKey(a)) ?? 0) - (order.get(trialKey(b)) ?? 0));
          const reasons = [...new Set(final.map((j) => j.failedReason))].slice(0, 3).join(' | ');
          throw new CampaignFailed(`campaign ${id}: ${final.length} job(s) failed ${final[0]!.attemptsMade} times; ${trials.length} trials not run: ${describeTrials(trials)}. Error: ${reasons}. ` +
            `${trialsDone} of ${total} trials are in ${o.out}; fix the cause and run the same command again to retry them (or flatenn campaign cancel ${id}).`);
        }

        if (trialsDone >= total) break;
        const counts = await q.getJobCounts('wait', 'active', 'delayed', 'prioritized', 'completed', 'failed');
        const pending = Object.values(counts).reduce((a, b) => a + b, 0);
        if (pending === 0) await restore('no job in Redis holds the missing trials', false);

        const now = Date.now();
        if (now - lastReport >= 1000) await report(now);
      } catch (e) {
        if (e instanceof CampaignFailed) throw e;
        const msg = (e as Error).message;
        if (!troubleSince) {
          troubleSince = Date.now();
          write(`${ttyErr ? '\n' : ''}campaign ${id}: lost Redis at ${ctx.conn.display} (${msg}); reconnecting (giving up after ${Math.round(reconnectMs / 1000)} s)\n`);
        } else if (Date.now() - troubleSince > reconnectMs) {
          throw new Error(`Redis at ${ctx.conn.display} has been unreachable for ${Math.round((Date.now() - troubleSince) / 1000)} s (${msg}); ${trialsDone} of ${total} trials are in ${o.out}; run the same command again to resume`);
        }
      }
      await sleep(pollMs, o.signal);
    }
    if (trialsDone >= total) {
      complete = true;
      writer.sync();
      if (ran > 0) await report(Date.now()).catch(() => {});
      await dropCampaign(ctx, id, q, sha).catch(() => {});
    }
    const trials = records.filter((x) => x.type === 'trial');
    return { id, settings, records, rows: summaryRows(settings, trials, clean), ran, skipped, seconds: (Date.now() - t0) / 1000, duplicates, reenqueued, byWorker, jobs: jobTimes, complete };
  } finally {
    if (heartbeat) clearInterval(heartbeat);
    if (release) await withTimeout(release(), 2000, () => new Error('timeout')).catch(() => {});
    writer?.close();
    unlock?.();
    if (q) await q.close().catch(() => {});
    r.disconnect();
  }
}

export function formatProgress(p: CollectProgress): string {
  const pct = p.total > 0 ? (100 * p.done) / p.total : 100;
  return `campaign ${p.id}: ${p.done}/${p.total} trials (${pct.toFixed(0)}%), ${p.trialsPerSecond.toFixed(p.trialsPerSecond >= 100 ? 0 : 2)} trials/s, ETA ${formatDuration(p.etaSeconds)}, workers alive ${p.workersAlive} (${p.workersOnCampaign} on this campaign)`;
}

/** The state of a campaign in Redis: trials collected, finished, running, waiting, failed; workers alive. */
export async function campaignStatus(o: { queue: string; id: string; connectTimeoutMs?: number }): Promise<CampaignStatus> {
  const ctx = await open(o.queue, o.connectTimeoutMs);
  const q = newQueue(ctx, o.id);
  try {
    const meta = readMeta(await ctx.redis.hget(campaignKey(o.id), 'meta'));
    if (!meta) throw new Error(`campaign ${o.id} is not in Redis at ${ctx.conn.display} (finished and collected, cancelled, or lost with a Redis restart)`);
    const trialsIn = async (types: Parameters<Queue['getJobs']>[0]) => {
      const jobs = await q.getJobs(types, 0, -1);
      return { jobs, trials: jobs.reduce((a, j) => a + ((j?.data as ChunkData | undefined)?.trials.length ?? 0), 0) };
    };
    const completed = await trialsIn(['completed']);
    const active = await trialsIn(['active']);
    const waiting = await trialsIn(['wait', 'delayed', 'prioritized']);
    const failedJobs = await q.getJobs(['failed'], 0, -1);
    const finalFailed = failedJobs.filter((j) => j && j.attemptsMade >= (j.opts.attempts ?? 1));
    const failedTrials = finalFailed.reduce((a, j) => a + (j.data as ChunkData).trials.length, 0);
    const prog = JSON.parse((await ctx.redis.hget(campaignKey(o.id), 'progress')) ?? 'null') as { done: number; rate: number; at: number } | null;
    const collRaw = await ctx.redis.get(collectorKey(o.id));
    const collector = collRaw ? (JSON.parse(collRaw) as { id: string; out: string }) : null;
    const collected = prog?.done ?? 0;
    let rate = collector && prog ? prog.rate : 0;
    if (!collector && completed.jobs.length > 0) {
      const ts = completed.jobs.filter(Boolean).map((j) => ({ start: j.processedOn ?? j.timestamp, end: j.finishedOn ?? Date.now() }));
      const span = (Math.max(...ts.map((t) => t.end)) - Math.min(...ts.map((t) => t.start))) / 1000;
      rate = span > 0 ? completed.trials / span : 0;
    }
    const remaining = meta.total - collected - completed.trials;
    const workers = await liveWorkers(ctx.redis);
    return {
      id: o.id, state: finalFailed.length > 0 ? 'failed' : remaining <= 0 ? 'finished, not collected' : 'running',
      total: meta.total, collected, uncollected: completed.trials, running: active.trials, waiting: waiting.trials, failed: failedTrials,
      failures: finalFailed.slice(0, 10).map((j) => ({ job: String(j.id), trials: describeTrials((j.data as ChunkData).trials), reason: j.failedReason })),
      trialsPerSecond: rate, etaSeconds: rate > 0 && remaining > 0 ? remaining / rate : remaining <= 0 ? 0 : null,
      collector, workers, settings: meta.header.settings, shard: meta.header.shard,
    };
  } finally {
    await q.close().catch(() => {});
    ctx.redis.disconnect();
  }
}

/** Removes a campaign's jobs and records from Redis (results files are not touched). */
export async function cancelCampaign(o: { queue: string; id: string; connectTimeoutMs?: number }): Promise<{ id: string; jobs: number }> {
  const ctx = await open(o.queue, o.connectTimeoutMs);
  const q = newQueue(ctx, o.id);
  try {
    const meta = readMeta(await ctx.redis.hget(campaignKey(o.id), 'meta'));
    const inRegistry = (await ctx.redis.zscore(CAMPAIGNS_KEY, o.id)) !== null;
    if (!meta && !inRegistry) throw new Error(`campaign ${o.id} is not in Redis at ${ctx.conn.display}`);
    const counts = await q.getJobCounts();
    const jobs = Object.values(counts).reduce((a, b) => a + b, 0);
    await dropCampaign(ctx, o.id, q, meta?.header.settings.modelSha256 ?? null);
    return { id: o.id, jobs };
  } finally {
    await q.close().catch(() => {});
    ctx.redis.disconnect();
  }
}

/** The ids of the campaigns in Redis, oldest first. */
export async function listCampaigns(o: { queue: string; connectTimeoutMs?: number }): Promise<string[]> {
  const ctx = await open(o.queue, o.connectTimeoutMs);
  try { return await ctx.redis.zrange(CAMPAIGNS_KEY, 0, -1); } finally { ctx.redis.disconnect(); }
}

