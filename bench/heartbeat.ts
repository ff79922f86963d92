// Progress for long benchmark runs: a worker thread writes a line to stderr at a
// fixed interval (default 10 s) naming the module that is running and for how
// long. It writes with fs.writeSync on fd 2 from its own thread, so the line
// appears even while a benchmark keeps the main thread busy (timing loops).
import { Worker } from 'node:worker_threads';

const CODE = `
const { parentPort, workerData } = require('node:worker_threads');
const fs = require('node:fs');
let current = null, since = Date.now();
const t0 = Date.now();
parentPort.on('message', (m) => { if (m === null) process.exit(0); current = m; since = Date.now(); });
setInterval(() => {
  if (!current) return;
  const now = Date.now();
  fs.writeSync(2, new Date(now).toISOString().slice(11, 19) + ' bench: ' + current + ' running for ' + Math.round((now - since) / 1000) + ' s (total ' + Math.round((now - t0) / 1000) + ' s)\\n');
}, workerData.intervalMs);
`;

export interface Heartbeat {
  /** What is running now (shown in the lines); null = nothing (no lines). */
  set(what: string | null): void;
  stop(): void;
}

/** Starts the heartbeat (interval: `intervalMs`, default FLATENN_PROGRESS_INTERVAL seconds or 10 s). */
export function startHeartbeat(intervalMs?: number): Heartbeat {
  const env = Number(process.env.FLATENN_PROGRESS_INTERVAL);
  const ms = intervalMs ?? (Number.isFinite(env) && env > 0 ? env * 1000 : 10_000);
  const w = new Worker(CODE, { eval: true, workerData: { intervalMs: ms } });
  w.unref();
  return {
    set: (what) => { w.postMessage(what ?? ''); },
    stop: () => { w.postMessage(null); },
  };
}
