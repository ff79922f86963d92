// What flatenn keeps in Redis for queue mode, and the shape of a job.
//
//   flatenn:campaigns               sorted set of campaign ids (score: time enqueued), oldest served first
//   flatenn:campaign:<id>           hash: header (JSON, as in the results file), total, chunk, attempts, created,
//                                   gen (re-enqueue generation), collector (who collects, with a heartbeat)
//   flatenn:model:<sha256>          the deployed model file's bytes (workers check the hash)
//   flatenn:worker:<id>             a live worker's heartbeat (JSON, expires)
//   flatenn:c-<id>:*                the campaign's BullMQ queue ('c-<id>'); a job = a chunk of trials,
//                                   its return value = the trials' records
import { createHash } from 'node:crypto';
import type { ResultsHeader, TrialRecord } from '../campaign/results';
import { trialKey } from '../campaign/results';
import type { TrialJob } from '../campaign/runner';
import { PREFIX } from './connection';

export const CAMPAIGNS_KEY = `${PREFIX}:campaigns`;
export const campaignKey = (id: string) => `${PREFIX}:campaign:${id}`;
export const modelKey = (sha: string) => `${PREFIX}:model:${sha}`;
export const workerKey = (id: string) => `${PREFIX}:worker:${id}`;
export const WORKER_PATTERN = `${PREFIX}:worker:*`;
/** BullMQ queue name of a campaign (BullMQ names may not contain ':'). */
export const queueName = (id: string) => `c-${id}`;

/** Data of one job. */
export interface ChunkData {
  campaign: string;
  trials: TrialJob[];
}

/** Return value of one job. */
export interface ChunkResult {
  worker: string;
  isa: string;
  seconds: number;
  records: TrialRecord[];
}

export interface CampaignMeta {
  id: string;
  header: ResultsHeader;
  total: number;
  chunk: number;
  attempts: number;
  created: number;
  gen: number;
}

/** Heartbeat of a worker process. */
export interface WorkerBeat {
  id: string;
  host: string;
  pid: number;
  isa: string;
  threads: number;
  concurrency: number;
  campaign: string | null;
  jobs: number;
  trials: number;
  refused: number;
  started: number;
  at: number;
}

function canonical(v: unknown): string {
  if (Array.isArray(v)) return '[' + v.map(canonical).join(',') + ']';
  if (v && typeof v === 'object') return '{' + Object.keys(v).sort().map((k) => JSON.stringify(k) + ':' + canonical((v as Record<string, unknown>)[k])).join(',') + '}';
  return JSON.stringify(v);
}
export { canonical };

/**
 * The campaign id: a hash of everything that determines its results (not the model's path) and the shard,
 * so enqueueing the same campaign again (a resumed run) finds the same campaign in Redis.
 */
export function campaignId(header: ResultsHeader): string {
  const { model: _path, ...rest } = header.settings;
  void _path;
  return createHash('sha256').update(canonical({ settings: rest, shard: header.shard, version: header.version })).digest('hex').slice(0, 16);
}

/** Splits trials (canonical order kept, so a chunk shares fault orders between its rates) into chunks. */
export function chunk<T>(items: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** Key of any record: a trial's (target, fault, rate, trial); another kind by its type and content. */
export function recordKey(r: { type: string } & Record<string, unknown>): string {
  if (r.type === 'trial') return trialKey(r as unknown as TrialRecord);
  return `${r.type}|${canonical(r)}`;
}

export const describeTrial = (t: TrialJob) => `${t.target} ${t.fault}@${+(100 * t.rate).toPrecision(6)}% trial ${t.trial}`;

/** Names a list of trials compactly for an error message. */
export function describeTrials(ts: TrialJob[], max = 6): string {
  const head = ts.slice(0, max).map(describeTrial).join('; ');
  return ts.length > max ? `${head}; and ${ts.length - max} more` : head;
}
