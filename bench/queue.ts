// Queue mode (BullMQ over Redis) on one machine: trials/s of 1 worker x 2 native threads against 2 workers x
// 1 thread, and the queue's overhead per trial against a local single-process campaign of the same trials.
// Starts its own redis-server (no persistence) on a free localhost port and its own worker processes.
//
//   node dist/bench/queue.js [--trials N] [--model deployed.safetensors] [--data-dir DIR] [--chunk N | --job-seconds S] [--json]
// Jobs hold about --job-seconds (default 5, as inject --queue sizes them) of trials unless --chunk is given.
//
// One trial = bit flips at 1% of the cells of a LeNet-5 + all 10,000 FashionMNIST test images (as in
// bench/campaign.ts). Without --model a LeNet-5 is trained for one short epoch (speed does not depend on it).
// Overhead: each setup runs a campaign of N and of 3N trials; the slope (seconds per extra trial) of the
// queue run minus the slope of the local run is the per-trial cost of the queue, the intercepts' difference
// its fixed cost per campaign (enqueue, model upload, polling). Goal: per-trial overhead <= 2% of a trial.
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { runCampaign } from '../src/campaign/campaign';
import { loadDataset } from '../src/data/dataset';
import { deployModel } from '../src/deploy/export';
import { writeSafetensors } from '../src/io/safetensors';
import { setThreads } from '../src/native/info';
import { collectCampaign, enqueueCampaign } from '../src/queue';
import { TARGET_JOB_SECONDS } from '../src/queue/campaign';
import { defaultConfig } from '../src/train/config';
import { Trainer } from '../src/train/trainer';
import { loadWarning, nowSeconds, parseArgs, positiveInt } from './common';

const CLI = path.resolve(__dirname, '../src/cli/main.js');

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => { const p = (s.address() as net.AddressInfo).port; s.close(() => resolve(p)); });
  });
}

async function startRedis(port: number): Promise<ChildProcess> {
  const p = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise<boolean>((resolve) => { const c = net.connect(port, '127.0.0.1', () => { c.destroy(); resolve(true); }); c.on('error', () => resolve(false)); });
    if (ok) return p;
    await new Promise((r) => setTimeout(r, 50));
  }
  p.kill('SIGKILL');
  throw new Error('redis-server did not start (install it: apt-get install redis-server)');
}

function startWorker(url: string, threads: number, dataDir: string | undefined): Promise<ChildProcess> {
  const args = [CLI, 'worker', '--queue', url, '--threads', String(threads), ...(dataDir ? ['--data-dir', dataDir] : [])];
  const w = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let text = '';
  return new Promise((resolve, reject) => {
    w.stderr!.on('data', (d: Buffer) => { text += d.toString(); if (/ready on/.test(text)) resolve(w); });
    w.on('exit', (c) => reject(new Error(`worker exited (${c}): ${text}`)));
  });
}

async function stopAll(ps: ChildProcess[]): Promise<void> {
  await Promise.all(ps.map((p) => new Promise<void>((r) => { if (p.exitCode !== null || p.signalCode !== null) { r(); return; } p.once('exit', () => r()); p.kill('SIGTERM'); setTimeout(() => p.kill('SIGKILL'), 15000).unref(); })));
}

interface Fit { perTrial: number; fixed: number; trialsPerS: number }
/** Least squares through two points (n, t): seconds per trial and fixed seconds; trials/s at the larger size. */
const fit = (n1: number, t1: number, n2: number, t2: number): Fit => {
  const perTrial = (t2 - t1) / (n2 - n1);
  return { perTrial, fixed: t1 - perTrial * n1, trialsPerS: n2 / t2 };
};

async function main(): Promise<void> {
  const values = parseArgs(process.argv.slice(2), { trials: 'number', model: 'string', 'data-dir': 'string', chunk: 'number', 'job-seconds': 'number', json: 'boolean' });
  const n = positiveInt(values.trials, 'trials', 30);
  const dataDir = values['data-dir'] as string | undefined;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flatenn-bench-queue-'));
  const log = (s: string) => process.stderr.write(s + '\n');
  const loadBefore = os.loadavg();
  let model = values.model as string | undefined;
  if (!model) {
    model = path.join(dir, 'lenet5.safetensors');
    const train = await loadDataset('fashion-mnist', 'train', dataDir ? { dataDir } : {});
    const trainer = new Trainer({ ...defaultConfig('lenet5'), epochs: 1, limitTrain: 3000 }, train);
    trainer.runEpoch();
    const d = deployModel(trainer.model, 'fashion-mnist', { epoch: 1 });
    await writeSafetensors(model, d.tensors, { flatenn: JSON.stringify(d.meta) });
    log('bench queue: trained a LeNet-5 for one short epoch');
  }
  const camp = (trials: number) => ({ model: model!, faults: ['bitflip' as const], rates: [0.01], trials, seed: 3, quiet: true, ...(dataDir ? { dataDir } : {}) });
  const sizes = [n, 3 * n];
  let runId = 0;

  // local: one process, 2 native threads
  setThreads(2);
  const local: number[] = [];
  for (const t of sizes) {
    const t0 = nowSeconds();
    await runCampaign({ ...camp(t), out: path.join(dir, `local-${runId++}.jsonl`) });
    local.push(nowSeconds() - t0);
    log(`bench queue: local 1 process x 2 threads, ${t} trials: ${local.at(-1)!.toFixed(2)} s`);
  }
  const localFit = fit(sizes[0]!, local[0]!, sizes[1]!, local[1]!);
  const jobSeconds = values['job-seconds'] !== undefined ? Number(values['job-seconds']) : TARGET_JOB_SECONDS;
  const chunk = values.chunk !== undefined ? positiveInt(values.chunk, 'chunk', 1) : Math.max(1, Math.round(jobSeconds / (local[1]! / sizes[1]!))); // as inject --queue sizes jobs

  const port = await freePort();
  const redis = await startRedis(port);
  const results: Record<string, { seconds: number[]; fit: Fit }> = {};
  let steady = { perTrial: NaN, computePerTrial: NaN, jobs: 0, perJob: NaN };
  try {
    for (const [name, workers, threads] of [['1 worker x 2 threads', 1, 2], ['2 workers x 1 thread', 2, 1]] as const) {
      const seconds: number[] = [];
      for (const t of sizes) {
        const db = runId++ % 16;
        const url = `redis://127.0.0.1:${port}/${db}`;
        const ws = await Promise.all(Array.from({ length: workers }, () => startWorker(url, threads, dataDir)));
        try {
          const out = path.join(dir, `queue-${db}-${t}.jsonl`);
          const t0 = nowSeconds();
          await enqueueCampaign({ ...camp(t), queue: url, chunk, out });
          const r = await collectCampaign({ queue: url, out, quiet: true, pollMs: 100 });
          seconds.push(nowSeconds() - t0);
          if (r.ran !== t) throw new Error(`queue run collected ${r.ran} of ${t} trials`);
          // in the worker's own timeline: time between its first job's start and last job's end not spent computing
          if (workers === 1 && t === sizes[1]) {
            const js = r.jobs.slice().sort((a, b) => a.processedOn - b.processedOn);
            const span = (js.at(-1)!.finishedOn - js[0]!.processedOn) / 1000, compute = js.reduce((a, j) => a + j.seconds, 0);
            steady = { perTrial: (span - compute) / t, computePerTrial: compute / t, jobs: js.length, perJob: (span - compute) / js.length };
          }
        } finally {
          await stopAll(ws);
        }
        log(`bench queue: ${name}, ${t} trials (chunk ${chunk}): ${seconds.at(-1)!.toFixed(2)} s`);
      }
      results[name] = { seconds, fit: fit(sizes[0]!, seconds[0]!, sizes[1]!, seconds[1]!) };
    }
  } finally {
    redis.kill('SIGTERM');
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const loadAfter = os.loadavg();
  const q = results['1 worker x 2 threads']!.fit;
  const overhead = q.perTrial - localFit.perTrial;
  const report = {
    date: new Date().toISOString(), cpus: os.availableParallelism(), loadAverage: { before: loadBefore, after: loadAfter },
    trialsPerCampaign: sizes, chunk, localSecondsPerTrial: localFit.perTrial, localTrialsPerS: localFit.trialsPerS,
    setups: Object.fromEntries(Object.entries(results).map(([k, v]) => [k, { seconds: v.seconds, trialsPerS: v.fit.trialsPerS, secondsPerTrial: v.fit.perTrial, fixedSeconds: v.fit.fixed }])),
    queueOverheadPerTrialSeconds: overhead, queueOverheadPercentOfTrial: (100 * overhead) / localFit.perTrial,
    queueFixedSecondsPerCampaign: q.fixed - localFit.fixed,
    workerTimeline: { jobs: steady.jobs, queueSecondsPerJob: steady.perJob, computeSecondsPerTrial: steady.computePerTrial, queueSecondsPerTrial: steady.perTrial, percentOfTrial: (100 * steady.perTrial) / steady.computePerTrial },
    warning: loadWarning([...loadBefore, ...loadAfter], 1),
  };
  if (values.json) { process.stdout.write(JSON.stringify(report, null, 2) + '\n'); return; }
  const f = (x: number, d = 2) => x.toFixed(d);
  const lines = [
    `| setup (${sizes[1]} trials) | trials/s | s per extra trial | fixed s per campaign |`,
    '|---|---|---|---|',
    `| local, 1 process x 2 threads | ${f(localFit.trialsPerS)} | ${f(localFit.perTrial, 4)} | ${f(localFit.fixed)} |`,
    ...Object.entries(results).map(([k, v]) => `| queue, ${k} | ${f(v.fit.trialsPerS)} | ${f(v.fit.perTrial, 4)} | ${f(v.fit.fixed)} |`),
    '',
    `end to end (1 worker x 2 threads vs local, slope over ${sizes[0]} and ${sizes[1]} trials): ${(overhead * 1000).toFixed(2)} ms per trial = ${f(report.queueOverheadPercentOfTrial, 1)}% of a trial; fixed cost per campaign ${f(report.queueFixedSecondsPerCampaign)} s`,
    `worker timeline (1 worker x 2 threads, ${sizes[1]} trials in ${steady.jobs} jobs of ${chunk}): ${(steady.perJob * 1000).toFixed(1)} ms per job outside the trials = ${(steady.perTrial * 1000).toFixed(2)} ms per trial = ${f(report.workerTimeline.percentOfTrial, 2)}% of the ${(steady.computePerTrial * 1000).toFixed(1)} ms a trial computes (goal <= 2%)`,
    `load average before ${loadBefore.map((l) => l.toFixed(2)).join(' ')}, after ${loadAfter.map((l) => l.toFixed(2)).join(' ')} on ${report.cpus} CPUs${report.warning ? ` — ${report.warning}` : ''}`,
  ];
  process.stdout.write(lines.join('\n') + '\n');
}

if (require.main === module) {
  main().catch((e) => { process.stderr.write(`bench queue: ${(e as Error).message}\n`); process.exitCode = 1; });
}
