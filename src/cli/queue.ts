// Queue-mode commands: `inject --queue` (enqueue, wait, gather), `worker`, `campaign status|collect|cancel`.
// The queue library (and through it BullMQ) is loaded only when one of them runs.
import * as fs from 'node:fs';
import { formatSummary } from '../campaign/results';
import type { CampaignOptions } from '../campaign/campaign';
import { flag, int, num, requireStr, str, UsageError, type CommandSpec, type Values } from './args';

const lib = () => require('../queue/campaign') as typeof import('../queue/campaign');

function queueUrl(v: Values): string {
  const url = requireStr(v, 'queue');
  try {
    (require('../queue/connection') as typeof import('../queue/connection')).parseRedisUrl(url);
  } catch (e) {
    throw new UsageError(`--queue: ${(e as Error).message}`);
  }
  return url;
}

function connectTimeout(v: Values): number {
  return num(v, 'connect-timeout', 0.1, 3600, 10) * 1000;
}

/**
 * Stops on the first SIGINT/SIGTERM through the returned signal; a second one removes temporary files and locks
 * and exits at once. The CLI's exit-at-once handlers (io/cleanup) are set aside meanwhile and restored after.
 */
function stopSignal(onFirst: () => void): { signal: AbortSignal; dispose: () => void } {
  const ac = new AbortController();
  const sigs = ['SIGINT', 'SIGTERM'] as const;
  const saved = sigs.map((sig) => [sig, process.listeners(sig)] as const);
  for (const sig of sigs) process.removeAllListeners(sig);
  const handler = (sig: NodeJS.Signals) => {
    if (ac.signal.aborted) {
      (require('../io/cleanup') as typeof import('../io/cleanup')).cleanupNow();
      process.stderr.write(`flatenn: second ${sig}, exiting now\n`);
      process.exit(sig === 'SIGTERM' ? 143 : 130);
    }
    onFirst();
    ac.abort();
  };
  for (const sig of sigs) process.on(sig, handler);
  return {
    signal: ac.signal,
    dispose: () => {
      for (const sig of sigs) process.off(sig, handler);
      for (const [sig, ls] of saved) for (const l of ls) process.on(sig, l as (s: NodeJS.Signals) => void);
    },
  };
}

export const QUEUE_INJECT_OPTIONS = {
  queue: { type: 'string', arg: '<url>', description: 'queue mode: enqueue the trials in Redis (redis://host:port/db) for `flatenn worker`s, wait and gather them into --out' },
  detach: { type: 'boolean', description: 'with --queue: only enqueue, print the campaign id and return (follow up with flatenn campaign status|collect)' },
  chunk: { type: 'string', arg: '<n>', description: 'with --queue: trials per job (default: about 5 s of work, timed here)' },
  attempts: { type: 'string', arg: '<n>', description: 'with --queue: tries per job before the campaign fails', default: '3' },
  'connect-timeout': { type: 'string', arg: '<s>', description: 'with --queue: seconds to reach Redis before giving up', default: '10' },
  'reconnect-timeout': { type: 'string', arg: '<s>', description: 'with --queue: give up waiting when Redis stays unreachable this long (rerun to resume)', default: '300' },
} as const;

/** `flatenn inject ... --queue URL`: the campaign options are already parsed by the inject command. */
export async function injectQueued(v: Values, o: CampaignOptions): Promise<number> {
  const queue = queueUrl(v);
  const chunk = v.chunk !== undefined ? int(v, 'chunk', 1, 1e6) : undefined;
  const attempts = int(v, 'attempts', 1, 100);
  num(v, 'reconnect-timeout', 1, 1e7); // checked before any work
  const detach = flag(v, 'detach');
  const l = lib();
  const { out, onTrial: _t, signal: _s, ...rest } = o;
  void _t; void _s;
  const e = await l.enqueueCampaign({ ...rest, queue, attempts, connectTimeoutMs: connectTimeout(v), ...(chunk ? { chunk } : {}), ...(out ? { out } : {}) });
  const what = `campaign ${e.id}: ${e.total} trials, ${e.enqueued} enqueued now in ${e.jobs} jobs of up to ${e.chunk} trials${e.existing ? ' (it was already in Redis: only missing trials were added)' : ''}`;
  if (detach) {
    if (flag(v, 'json')) process.stdout.write(JSON.stringify({ id: e.id, total: e.total, enqueued: e.enqueued, jobs: e.jobs, chunk: e.chunk, existing: e.existing }) + '\n');
    else {
      process.stderr.write(what + '\n');
      process.stdout.write(e.id + '\n');
    }
    return 0;
  }
  if (!o.quiet) process.stderr.write(what + '\n');
  return collectAndPrint(v, { queue, out, id: e.id, quiet: !!o.quiet });
}

async function collectAndPrint(v: Values, c: { queue: string; out: string; id?: string; model?: string; quiet: boolean }): Promise<number> {
  const l = lib();
  let id = c.id ?? '?';
  const stop = stopSignal(() => process.stderr.write(`flatenn: stopping the collector (the campaign goes on in Redis; resume with: flatenn campaign collect ${id} --queue ${c.queue} --out ${c.out})\n`));
  try {
    const reconnectTimeoutMs = num(v, 'reconnect-timeout', 1, 1e7) * 1000;
    const r = await l.collectCampaign({ queue: c.queue, out: c.out, ...(c.id ? { id: c.id } : {}), ...(c.model ? { model: c.model } : {}), quiet: c.quiet, write: (t: string) => process.stderr.write(t), tty: !!process.stderr.isTTY && process.env.FLATENN_PROGRESS !== 'plain', signal: stop.signal, connectTimeoutMs: connectTimeout(v), reconnectTimeoutMs });
    id = r.id;
    if (!r.complete) return 130;
    if (flag(v, 'json')) process.stdout.write(JSON.stringify({ id: r.id, settings: r.settings, ran: r.ran, skipped: r.skipped, duplicates: r.duplicates, reenqueued: r.reenqueued, byWorker: r.byWorker, summary: r.rows }, null, 2) + '\n');
    else {
      const extra = [r.duplicates ? `${r.duplicates} duplicate deliveries stored once` : '', r.reenqueued ? `${r.reenqueued} trials enqueued again` : ''].filter(Boolean).join(', ');
      const workers = Object.entries(r.byWorker).map(([w, n]) => `${w} ${n}`).join(', ');
      process.stdout.write(`${r.ran} trials run, ${r.skipped} already in ${c.out} (${r.seconds.toFixed(1)} s)\n${formatSummary(r.rows)}\n`);
      if (!c.quiet) process.stderr.write(`campaign ${r.id}: collected${workers ? ` (trials by worker: ${workers})` : ''}${extra ? `; ${extra}` : ''}\n`);
    }
    return 0;
  } finally {
    stop.dispose();
  }
}

export const workerCommand: CommandSpec = {
  name: 'worker',
  summary: 'Run campaign trials from a Redis queue (queue mode): start one on every machine; stops on SIGTERM/SIGINT after its current jobs.',
  usage: 'flatenn worker --queue redis://host:6379/0 [--threads N] [--concurrency K] [--isa avx2] [--data-dir DIR]\n\n' +
    'Example: flatenn worker --queue redis://head-node:6379/0 --threads 8\n' +
    'Each machine needs its own copy of the test data (checked by content hash); models come through Redis (checked by sha256).',
  options: {
    queue: { type: 'string', arg: '<url>', description: 'Redis URL (required)' },
    concurrency: { type: 'string', arg: '<k>', description: 'jobs run at once, each in its own thread', default: '1' },
    'data-dir': { type: 'string', arg: '<dir>', description: 'dataset folder on this machine' },
    'stall-timeout': { type: 'string', arg: '<s>', description: 'a job whose worker goes silent this long is given to another worker', default: '30' },
    'idle-exit': { type: 'string', arg: '<s>', description: 'stop after this many seconds without a job (default: run until stopped)' },
    'connect-timeout': { type: 'string', arg: '<s>', description: 'seconds to reach Redis at start before giving up', default: '10' },
    json: { type: 'boolean', description: 'print the final tally as JSON' },
    quiet: { type: 'boolean', short: 'q', description: 'no line per job' },
  },
  async run(v) {
    const queue = queueUrl(v);
    const concurrency = int(v, 'concurrency', 1, 256);
    const stallMs = num(v, 'stall-timeout', 0.2, 86400) * 1000;
    const idle = v['idle-exit'] !== undefined ? num(v, 'idle-exit', 0, 1e7) : undefined;
    const dataDir = str(v, 'data-dir');
    if (dataDir !== undefined && !fs.existsSync(dataDir)) throw new UsageError(`--data-dir ${dataDir}: no such folder`);
    const { runWorker } = require('../queue/worker') as typeof import('../queue/worker');
    const quiet = flag(v, 'quiet');
    const stop = stopSignal(() => process.stderr.write('flatenn worker: stopping after the jobs in hand (signal again to exit now; those jobs then go to other workers)\n'));
    try {
      const r = await runWorker({
        queue, concurrency, stallMs, connectTimeoutMs: connectTimeout(v), signal: stop.signal,
        ...(idle !== undefined ? { idleExitSeconds: idle } : {}), ...(dataDir ? { dataDir } : {}),
        log: (line) => { if (!quiet || !/: job /.test(line)) process.stderr.write(line + '\n'); },
      });
      if (flag(v, 'json')) process.stdout.write(JSON.stringify(r) + '\n');
      return 0;
    } finally {
      stop.dispose();
    }
  },
};

export const campaignStatusCommand: CommandSpec = {
  name: 'campaign status',
  summary: 'State of a queued campaign: trials done/total, trials/s, ETA, failures, workers alive (no id: list the campaigns).',
  usage: 'flatenn campaign status [<id>] --queue redis://host:6379/0 [--json]\n\nExample: flatenn campaign status 3f2a9c0d1e4b5a67 --queue redis://head:6379/0 --json',
  positionals: true,
  options: {
    queue: { type: 'string', arg: '<url>', description: 'Redis URL (required)' },
    json: { type: 'boolean', description: 'print as JSON' },
    'connect-timeout': { type: 'string', arg: '<s>', description: 'seconds to reach Redis before giving up', default: '10' },
  },
  async run(v, pos) {
    const queue = queueUrl(v);
    if (pos.length > 1) throw new UsageError(`give one campaign id, got ${pos.length}`);
    const l = lib();
    if (pos.length === 0) {
      const ids = await l.listCampaigns({ queue, connectTimeoutMs: connectTimeout(v) });
      if (flag(v, 'json')) process.stdout.write(JSON.stringify({ campaigns: ids }) + '\n');
      else process.stdout.write(ids.length ? ids.join('\n') + '\n' : 'no campaigns in the queue\n');
      return 0;
    }
    const s = await l.campaignStatus({ queue, id: pos[0]!, connectTimeoutMs: connectTimeout(v) });
    if (flag(v, 'json')) { process.stdout.write(JSON.stringify(s, null, 2) + '\n'); return 0; }
    const done = s.collected + s.uncollected;
    const { formatDuration } = require('../util/progress') as typeof import('../util/progress');
    const lines = [
      `campaign ${s.id}: ${s.state}`,
      `  ${s.settings.arch} ${s.settings.model} (sha256 ${s.settings.modelSha256.slice(0, 12)}), shard ${s.shard.index}/${s.shard.count}`,
      `  trials: ${done}/${s.total} done (${s.collected} collected, ${s.uncollected} waiting for a collector), ${s.running} running, ${s.waiting} queued, ${s.failed} failed`,
      `  ${s.trialsPerSecond.toFixed(2)} trials/s, ETA ${s.etaSeconds === null ? '--:--' : formatDuration(s.etaSeconds)}`,
      `  collector: ${s.collector ? `${s.collector.id} -> ${s.collector.out}` : 'none (run flatenn campaign collect)'}`,
      `  workers alive: ${s.workers.length}${s.workers.length ? ' (' + s.workers.map((w) => `${w.id} ${w.isa} x${w.threads}${w.campaign === s.id ? ' on this campaign' : ''}`).join('; ') + ')' : ''}`,
      ...s.failures.map((f) => `  failed job ${f.job}: ${f.reason} (trials ${f.trials})`),
    ];
    process.stdout.write(lines.join('\n') + '\n');
    return 0;
  },
};

export const campaignCollectCommand: CommandSpec = {
  name: 'campaign collect',
  summary: 'Wait for a queued campaign and gather its trials into a results file (resumable; the same file a local run writes).',
  usage: 'flatenn campaign collect <id> --queue redis://host:6379/0 --out results.jsonl [--model M.safetensors]\n\n' +
    'Example: id=$(flatenn inject --model M.int4.safetensors --trials 1000 --queue redis://head:6379/0 --detach); flatenn campaign collect $id --queue redis://head:6379/0 --out R.jsonl',
  positionals: true,
  options: {
    queue: { type: 'string', arg: '<url>', description: 'Redis URL (required)' },
    out: { type: 'string', arg: '<file>', description: 'results file (.jsonl) (required)' },
    model: { type: 'string', arg: '<file>', description: 'the model file, to upload again if Redis lost the campaign (default: the path in the header)' },
    'reconnect-timeout': { type: 'string', arg: '<s>', description: 'give up when Redis stays unreachable this long (rerun to resume)', default: '300' },
    json: { type: 'boolean', description: 'print the summary as JSON' },
    quiet: { type: 'boolean', short: 'q', description: 'no progress output' },
    'connect-timeout': { type: 'string', arg: '<s>', description: 'seconds to reach Redis before giving up', default: '10' },
  },
  async run(v, pos) {
    const queue = queueUrl(v);
    const out = requireStr(v, 'out');
    if (pos.length > 1) throw new UsageError(`give one campaign id, got ${pos.length}`);
    if (pos.length === 0 && !fs.existsSync(out)) throw new UsageError('give the campaign id (or --out of a results file that holds its header)');
    const model = str(v, 'model');
    return collectAndPrint(v, { queue, out, ...(pos[0] ? { id: pos[0] } : {}), ...(model ? { model } : {}), quiet: flag(v, 'quiet') });
  },
};

export const campaignCancelCommand: CommandSpec = {
  name: 'campaign cancel',
  summary: "Remove a queued campaign's jobs from Redis (workers move on; results files are kept).",
  usage: 'flatenn campaign cancel <id> --queue redis://host:6379/0\n\nExample: flatenn campaign cancel 3f2a9c0d1e4b5a67 --queue redis://head:6379/0',
  positionals: true,
  options: {
    queue: { type: 'string', arg: '<url>', description: 'Redis URL (required)' },
    'connect-timeout': { type: 'string', arg: '<s>', description: 'seconds to reach Redis before giving up', default: '10' },
  },
  async run(v, pos) {
    const queue = queueUrl(v);
    if (pos.length !== 1) throw new UsageError('give one campaign id');
    const r = await lib().cancelCampaign({ queue, id: pos[0]!, connectTimeoutMs: connectTimeout(v) });
    process.stdout.write(`campaign ${r.id}: cancelled (${r.jobs} jobs removed)\n`);
    return 0;
  },
};
