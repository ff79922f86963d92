// Processes for the queue tests: a real redis-server on a free localhost port, flatenn workers and
// collectors as child processes. Every process started here is stopped by stopAll() (call it in after()).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as net from 'node:net';
import * as path from 'node:path';

export const CLI = path.resolve(__dirname, '../../src/cli/main.js');

const started = new Set<ChildProcess>();

export function haveRedis(): boolean {
  return spawnSync('redis-server', ['--version'], { encoding: 'utf8' }).status === 0;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => { const p = (s.address() as net.AddressInfo).port; s.close(() => resolve(p)); });
  });
}

function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect(port, '127.0.0.1');
    let buf = '';
    c.setTimeout(500, () => { c.destroy(); resolve(false); });
    c.on('connect', () => c.write('PING\r\n'));
    c.on('data', (d) => { buf += d.toString(); if (buf.includes('PONG')) { c.destroy(); resolve(true); } });
    c.on('error', () => resolve(false));
  });
}

export interface Proc {
  child: ChildProcess;
  /** stdout and stderr so far. */
  out(): string;
  /** Resolves when the output matches (rejects after timeoutMs or when the process exits first). */
  waitFor(re: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  exited: Promise<number | null>;
}

export function start(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): Proc {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, FLATENN_PROGRESS: 'plain', ...env } });
  started.add(child);
  let text = '';
  const listeners = new Set<() => void>();
  const onData = (d: Buffer) => { text += d.toString(); for (const l of listeners) l(); };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code, sig) => { started.delete(child); for (const l of listeners) l(); resolve(code ?? (sig ? -1 : null)); }));
  return {
    child, exited, out: () => text,
    waitFor(re, timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const m = text.match(re);
          if (m) { done(); resolve(m); return; }
          if (child.exitCode !== null || child.signalCode !== null) { done(); reject(new Error(`process exited before ${re}: ${text.slice(-2000)}`)); }
        };
        const t = setTimeout(() => { done(); reject(new Error(`timed out waiting for ${re}: ${text.slice(-2000)}`)); }, timeoutMs);
        const done = () => { clearTimeout(t); listeners.delete(check); };
        listeners.add(check);
        check();
      });
    },
  };
}

export interface RedisServer { port: number; url(db?: number): string; stop(): Promise<void>; restart(): Promise<void> }

/** A redis-server without persistence on a free localhost port. */
export async function startRedis(): Promise<RedisServer> {
  const port = await freePort();
  let p: Proc;
  const up = async () => {
    p = start('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'yes']);
    for (let i = 0; i < 100; i++) { if (await ping(port)) return; await new Promise((r) => setTimeout(r, 50)); }
    throw new Error(`redis-server did not start on port ${port}: ${p.out()}`);
  };
  await up();
  const stop = async () => { if (p.child.exitCode === null && p.child.signalCode === null) { p.child.kill('SIGTERM'); await p.exited; } };
  return { port, url: (db = 0) => `redis://127.0.0.1:${port}/${db}`, stop, restart: async () => { await stop(); await up(); } };
}

export function worker(url: string, dataDir: string, extra: string[] = []): Proc {
  return start(process.execPath, [CLI, 'worker', '--queue', url, '--data-dir', dataDir, '--threads', '1', '--stall-timeout', '2', ...extra]);
}

/** SIGTERM (graceful) then SIGKILL after a grace period; resolves with the exit code. */
export async function stop(p: Proc, graceMs = 10_000): Promise<number | null> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return p.exited;
  p.child.kill('SIGTERM');
  const t = setTimeout(() => p.child.kill('SIGKILL'), graceMs);
  const code = await p.exited;
  clearTimeout(t);
  return code;
}

/** Kills whatever is still running (after a failure). */
export async function stopAll(): Promise<void> {
  const waits = [...started].map((c) => new Promise<void>((r) => { c.once('exit', () => r()); c.kill('SIGKILL'); }));
  await Promise.all(waits);
}
