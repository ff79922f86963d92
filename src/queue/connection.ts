// Redis connections for queue mode: URL parsing, a bounded first contact (a clear error instead of a hang),
// and lazy loading of BullMQ and ioredis so the core library never pays for them.
import type * as BullMQ from 'bullmq';
import type { Redis as IORedis, RedisOptions } from 'ioredis';

export type BullMQModule = typeof BullMQ;

/** Key prefix of everything flatenn keeps in Redis (BullMQ queues included). */
export const PREFIX = 'flatenn';

export interface QueueConnection {
  /** The URL as given, with any password masked (for messages). */
  display: string;
  /** ioredis options (host, port, db, credentials, TLS). */
  options: RedisOptions;
}

/** Parses redis://[user:password@]host[:port][/db] (rediss:// for TLS). Throws RangeError naming the problem. */
export function parseRedisUrl(url: string): QueueConnection {
  let u: URL;
  try { u = new URL(url); } catch { throw new RangeError(`'${url}' is not a Redis URL (expected redis://host:port/db)`); }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw new RangeError(`'${url}': the scheme must be redis:// or rediss://, not ${u.protocol}//`);
  if (!u.hostname) throw new RangeError(`'${url}' names no host (expected redis://host:port/db)`);
  const port = u.port ? Number(u.port) : 6379;
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new RangeError(`'${url}': port ${u.port} is not a TCP port`);
  let db = 0;
  const p = u.pathname.replace(/^\//, '');
  if (p !== '') {
    if (!/^\d+$/.test(p) || Number(p) > 1000) throw new RangeError(`'${url}': the database must be a number like /0, got '/${p}'`);
    db = Number(p);
  }
  if (u.search || u.hash) throw new RangeError(`'${url}': query strings and fragments are not supported`);
  const host = u.hostname.replace(/^\[(.*)\]$/, '$1');
  const options: RedisOptions = { host, port, db };
  if (u.username) options.username = decodeURIComponent(u.username);
  if (u.password) options.password = decodeURIComponent(u.password);
  if (u.protocol === 'rediss:') options.tls = {};
  const display = `${u.protocol}//${u.username ? decodeURIComponent(u.username) + (u.password ? ':***' : '') + '@' : u.password ? ':***@' : ''}${u.host}/${db}`;
  return { display, options };
}

let bullmq: BullMQModule | undefined;
/** BullMQ, loaded on first use. */
export function loadBullMQ(): BullMQModule {
  if (!bullmq) {
    try {
      bullmq = require('bullmq') as BullMQModule;
    } catch (e) {
      throw new Error(`queue mode needs the 'bullmq' and 'ioredis' packages (npm install bullmq ioredis): ${(e as Error).message}`);
    }
  }
  return bullmq;
}

function loadIORedis(): typeof import('ioredis').default {
  try {
    const m = require('ioredis') as typeof import('ioredis');
    return (m as unknown as { default?: typeof import('ioredis').default }).default ?? (m as unknown as typeof import('ioredis').default);
  } catch (e) {
    throw new Error(`queue mode needs the 'ioredis' package (npm install ioredis): ${(e as Error).message}`);
  }
}

/** Reconnect delays: quick at first, at most 2 s (a restarted Redis is found again within seconds). */
export const retryStrategy = (times: number): number => Math.min(100 * times, 2000);

/** Options for BullMQ's own connections (it reconnects forever; blocking commands wait across restarts). */
export function bullOptions(c: QueueConnection): BullMQ.ConnectionOptions {
  const { retryStrategy: _r, ...rest } = c.options;
  void _r;
  return { ...rest, retryStrategy, connectTimeout: 10_000, enableReadyCheck: true } as BullMQ.ConnectionOptions;
}

/**
 * A plain client for flatenn's own keys. The first contact is bounded by `timeoutMs`: an unreachable or
 * refusing server gives a clear error, never a hang. Later outages are retried by ioredis; commands issued
 * meanwhile fail after a few retries (the caller decides how long to keep trying).
 */
export async function connectRedis(c: QueueConnection, timeoutMs = 10_000): Promise<IORedis> {
  const Redis = loadIORedis();
  const client = new Redis({ ...c.options, lazyConnect: true, connectTimeout: Math.min(timeoutMs, 10_000), maxRetriesPerRequest: 3, retryStrategy, enableOfflineQueue: true });
  let lastError = '';
  client.on('error', (e: Error) => { lastError = (e as NodeJS.ErrnoException).code ?? e.message; });
  const fail = (why: string) => new Error(`cannot reach Redis at ${c.display} (${why}); is redis-server running there and reachable from this machine?`);
  try {
    await withTimeout((async () => { await client.connect(); await client.ping(); })(), timeoutMs, () => fail(lastError || `no answer within ${(timeoutMs / 1000).toFixed(0)} s`));
  } catch (e) {
    client.disconnect();
    const msg = (e as Error).message;
    if (/NOAUTH|WRONGPASS|invalid password|invalid username/i.test(msg)) throw new Error(`Redis at ${c.display} refused the credentials (${msg})`);
    if (msg.startsWith('cannot reach Redis')) throw e;
    throw fail(lastError || msg);
  }
  return client;
}

export function withTimeout<T>(p: Promise<T>, ms: number, err: () => Error): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(err()), ms);
    p.then((v) => { clearTimeout(t); resolve(v); }, (e) => { clearTimeout(t); reject(e); });
  });
}

export const sleep = (ms: number, signal?: AbortSignal) => new Promise<void>((resolve) => {
  if (signal?.aborted) { resolve(); return; }
  const t = setTimeout(done, ms);
  function done() { clearTimeout(t); signal?.removeEventListener('abort', done); resolve(); }
  signal?.addEventListener('abort', done);
});
