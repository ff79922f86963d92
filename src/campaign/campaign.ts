// Library API for fault campaigns. Trials run in a worker thread (the host's
// event loop stays free); this thread appends each finished trial to the
// results file as it arrives, so a killed run loses at most the trial in flight.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { readDeployed } from '../deploy/format';
import { Engine } from '../engine/engine';
import { loadDataset } from '../data/dataset';
import { FAULT_TYPES, type FaultType, type RateUnit, type Sampling } from './faults';
import { campaignJobs, FaultMapper, targetsOf, type TrialJob } from './runner';
import { maskKey, readMasks, writeMasks, type FaultMasks } from './masks';
import {
  readResults, RESULTS_FORMAT, RESULTS_VERSION, SEMANTICS, ResultsWriter, settingsDiff, summaryRows, trialKey,
  type CampaignSettings, type CleanRecord, type ResultsHeader, type SummaryRow, type TrialRecord,
} from './results';

export interface CampaignOptions {
  /** Deployed model file (.safetensors from `flatenn export`). */
  model: string;
  /** Fault types to inject (FAULT_TYPES), each at every rate. */
  faults: FaultType[];
  /** Fractions of eligible cells, in [0, 1]. */
  rates: number[];
  /** Trials (independent fault maps) per (target, fault type, rate), >= 1. */
  trials: number;
  /** Results file (.jsonl): created with a header, or resumed when it holds the same campaign. */
  out: string;
  /** Fault-map seed (default 1): common random numbers across fault types, rates and models of one layout. */
  seed?: number;
  /** 'exact' (default): exactly round(rate x cells) faulty cells, nested across rates; 'bernoulli': each cell faulty with probability rate. */
  sampling?: Sampling;
  /** What a rate counts (default 'bit'): a fraction of stored bits, or of weights ('weight': one random bit per faulty weight). */
  rateUnit?: RateUnit;
  /** Target sets (default ['all']); see targetsOf(). byLayer / byBit expand to one target per layer / bit. */
  targets?: string[];
  /** One target per weight layer (default false): a per-layer vulnerability table. */
  byLayer?: boolean;
  /** One target per bit position, 0 = LSB (default false). */
  byBit?: boolean;
  /** Run only trials t with t % count == index (default 0/1); merge the shards' files with mergeResults / `flatenn summary`. */
  shard?: { index: number; count: number };
  /** Dataset folder (default: the standard search, see `flatenn data info`). */
  dataDir?: string;
  /** Evaluate only the first n test images (quick runs); recorded in the settings. */
  limit?: number;
  /** @deprecated The library never prints; kept so old callers compile. Progress goes to `onTrial`. */
  quiet?: boolean;
  /** Called after each finished trial (already appended to `out`): `done` counts trials in the file, of `total`. */
  onTrial?: (r: TrialRecord, done: number, total: number) => void;
  /** Cancels the campaign: the worker stops, finished trials stay in `out`; an already-aborted signal runs nothing. */
  signal?: AbortSignal;
  /** Write each trial's faulty cells of this run's trials (one target only) to this masks file (see masks.ts). */
  saveMasks?: string;
  /** Replay the masks in this file instead of drawing: faults, rates and trials come from it (the options' are ignored). */
  masks?: string;
}

/** What runCampaign returns: the settings, every record in the file (also those of earlier runs) and the summary. */
export interface CampaignResult {
  settings: CampaignSettings;
  /** Trial records (file order); rate-0 trials are not run: see `clean`. */
  records: TrialRecord[];
  /** The clean model's record per target (evaluated once per run, or read back on resume). */
  clean: CleanRecord[];
  rows: SummaryRow[];
  ran: number;
  skipped: number;
  seconds: number;
}

function validate(o: CampaignOptions): void {
  if (!Array.isArray(o.faults) || o.faults.length === 0) throw new RangeError('at least one fault type is needed');
  for (const f of o.faults) if (!(FAULT_TYPES as readonly string[]).includes(f)) throw new RangeError(`unknown fault type '${f}' (expected ${FAULT_TYPES.join(', ')})`);
  if (new Set(o.faults).size !== o.faults.length) throw new RangeError('a fault type is listed twice');
  if (!Array.isArray(o.rates) || o.rates.length === 0) throw new RangeError('at least one rate is needed');
  for (const r of o.rates) if (typeof r !== 'number' || !(r >= 0 && r <= 1)) throw new RangeError(`rate ${r} is outside [0, 1]`);
  if (new Set(o.rates).size !== o.rates.length) throw new RangeError('a rate is listed twice');
  if (!Number.isInteger(o.trials) || o.trials < 1) throw new RangeError(`trials must be an integer >= 1, got ${o.trials}`);
  const sh = o.shard ?? { index: 0, count: 1 };
  if (!Number.isInteger(sh.count) || sh.count < 1 || !Number.isInteger(sh.index) || sh.index < 0 || sh.index >= sh.count) throw new RangeError(`shard must be i/N with 0 <= i < N, got ${sh.index}/${sh.count}`);
  if (o.seed !== undefined && (!Number.isSafeInteger(o.seed) || o.seed < 0)) throw new RangeError(`seed must be a non-negative integer, got ${o.seed}`);
  if (o.limit !== undefined && (!Number.isInteger(o.limit) || o.limit < 1)) throw new RangeError(`limit must be an integer >= 1, got ${o.limit}`);
}

/**
 * Runs (or resumes) a Monte Carlo fault-injection campaign into `o.out` (JSON Lines, DESIGN §5): trials in a worker
 * thread, each appended as it ends; the clean model evaluated once per run. Prints nothing (see `onTrial`).
 */
export async function runCampaign(o: CampaignOptions): Promise<CampaignResult> {
  o.signal?.throwIfAborted();
  const t0 = Date.now();
  let replay: FaultMasks | null = null;
  if (o.masks !== undefined) {
    if (o.saveMasks !== undefined || o.byLayer || o.byBit || (o.targets && o.targets.join() !== 'all')) throw new RangeError('masks replay one target: not with saveMasks, byLayer, byBit or targets');
    const m = await readDeployed(o.model);
    replay = await readMasks(o.masks, m.meta);
    o = { ...o, faults: replay.meta.faults, rates: replay.meta.rates, trials: replay.meta.trials, seed: replay.meta.source?.seed ?? 0, sampling: 'exact', rateUnit: 'bit', targets: ['all'] };
  }
  validate(o);
  const model = await readDeployed(o.model);
  const shard = o.shard ?? { index: 0, count: 1 };
  let targets = o.targets ?? ['all'];
  if (o.byLayer) targets = model.meta.layers.map((l) => `layer:${l.name}`);
  if (o.byBit) targets = Array.from({ length: Math.max(...model.meta.layers.map((l) => l.bits)) }, (_, b) => `bit:${b}`);
  for (const t of targets) targetsOf(t);
  const ds = await loadDataset(model.meta.dataset as 'fashion-mnist', 'test', o.dataDir ? { dataDir: o.dataDir } : {});
  const images = o.limit ? Math.min(o.limit, ds.count) : ds.count;
  const settings: CampaignSettings = {
    model: path.resolve(o.model), modelSha256: model.hash, layoutHash: model.meta.layoutHash, arch: model.meta.arch,
    dataset: model.meta.dataset, split: 'test', images, faults: o.faults, rates: o.rates, trials: o.trials,
    seed: o.seed ?? 1, sampling: o.sampling ?? 'exact', rateUnit: o.rateUnit ?? 'bit', targets,
    semantics: SEMANTICS,
    ...(replay ? { masksSha256: replay.sha256 } : {}),
  };
  if (o.saveMasks !== undefined) {
    if (targets.length !== 1) throw new RangeError('saveMasks saves one target: not with byLayer or byBit');
    const mapper = new FaultMapper(model.meta, settings);
    const jobs = new Map(campaignJobs(settings, { index: 0, count: 1 }).map((j) => [maskKey(j.fault, j.rate, j.trial), j]));
    await writeMasks(o.saveMasks, {
      layoutHash: model.meta.layoutHash, cells: model.meta.cells, faults: settings.faults, rates: settings.rates, trials: settings.trials,
      layers: model.meta.layers.map((l) => ({ name: l.name, count: l.count, bits: l.bits, cellOffset: l.cellOffset })),
      source: { seed: settings.seed, sampling: settings.sampling, rateUnit: settings.rateUnit, target: targets[0]! },
    }, (f, r, t) => mapper.cellsOf(jobs.get(maskKey(f, r, t))!).slice());
  }
  const header: ResultsHeader = { type: 'header', format: RESULTS_FORMAT, version: RESULTS_VERSION, settings, shard };
  const unlock = lockResults(o.out);
  try {
    return await runLocked(o, settings, header, shard, t0, { model, images: ds.images, labels: ds.labels });
  } finally {
    unlock();
  }
}

/**
 * One writer per results file: a lock file beside it (created exclusively,
 * holding the pid). A lock whose process is gone (killed run) is taken over.
 */
function lockResults(out: string): () => void {
  const lock = out + '.lock';
  fs.mkdirSync(path.dirname(path.resolve(out)), { recursive: true });
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      fs.writeFileSync(lock, String(process.pid), { flag: 'wx' });
      return () => { try { fs.unlinkSync(lock); } catch { /* already gone */ } };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const pid = Number(fs.readFileSync(lock, 'utf8'));
      let alive = false;
      if (Number.isInteger(pid) && pid > 0) { try { process.kill(pid, 0); alive = true; } catch (k) { alive = (k as NodeJS.ErrnoException).code === 'EPERM'; } }
      if (alive) throw new Error(`${out} is being written by another campaign (pid ${pid}, lock ${lock}); wait for it or use another --out`);
      fs.unlinkSync(lock); // stale: its process is gone
    }
  }
  throw new Error(`cannot lock ${out}`);
}

async function runLocked(o: CampaignOptions, settings: CampaignSettings, header: ResultsHeader, shard: { index: number; count: number }, t0: number,
  data: { model: Awaited<ReturnType<typeof readDeployed>>; images: Uint8Array; labels: Uint8Array }): Promise<CampaignResult> {
  let existing: TrialRecord[] = [];
  let clean: CleanRecord[] = [];
  if (fs.existsSync(o.out) && fs.statSync(o.out).size > 0) {
    const f = readResults(o.out);
    const d = settingsDiff(f.header.settings, settings);
    if (d) throw new Error(`${o.out} holds results of a different campaign (${d}); choose another --out or remove the file`);
    if (f.header.shard.index !== shard.index || f.header.shard.count !== shard.count) throw new Error(`${o.out} holds shard ${f.header.shard.index}/${f.header.shard.count}, not ${shard.index}/${shard.count}`);
    if (f.tornTail) fs.truncateSync(o.out, f.validBytes); // drop the line a killed run left half-written
    existing = f.records;
    clean = f.clean;
  } else {
    fs.mkdirSync(path.dirname(path.resolve(o.out)), { recursive: true });
    fs.writeFileSync(o.out, JSON.stringify(header) + '\n');
  }
  const done = new Set(existing.map(trialKey));
  // Rate 0 leaves the memory unchanged: the clean record below stands for those trials (older files may
  // hold rate-0 trial records; they are kept and not re-run).
  const all = campaignJobs(settings, shard).filter((j) => j.rate !== 0 || done.has(trialKey(j)));
  const jobs = all.filter((j) => !done.has(trialKey(j)));
  const records = existing.slice();
  const missingClean = settings.targets.filter((t) => !clean.some((c) => c.target === t));
  if (jobs.length > 0 || missingClean.length > 0) {
    const writer = new ResultsWriter(o.out);
    try {
      if (missingClean.length > 0) {
        // one evaluation of the clean model (the same memory for every target), yielding between batches
        const r = await new Engine(data.model).evaluate({ images: data.images, labels: data.labels, count: settings.images, ...(o.signal ? { signal: o.signal } : {}) });
        for (const target of missingClean) {
          const c: CleanRecord = { type: 'clean', target, accuracy: r.accuracy, loss: r.loss, sparsity: r.sparsity, sparsityWeighted: r.sparsityWeighted, images: settings.images };
          writer.write(c);
          clean.push(c);
        }
      }
      if (jobs.length > 0) {
        await runInWorker(o, settings, jobs, (r) => {
          writer.write(r);
          records.push(r);
          o.onTrial?.(r, records.length, all.length);
        });
      }
      writer.sync();
    } finally {
      writer.close();
    }
  }
  return { settings, records, clean, rows: summaryRows(settings, records, clean), ran: jobs.length, skipped: all.length - jobs.length, seconds: (Date.now() - t0) / 1000 };
}

function runInWorker(o: CampaignOptions, settings: CampaignSettings, jobs: TrialJob[], onRecord: (r: TrialRecord) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const w = new Worker(path.join(__dirname, 'worker.js'), { workerData: { settings, jobs, dataDir: o.dataDir ?? null, masks: o.masks ?? null } });
    let settled = false;
    const finish = (e?: Error) => { if (settled) return; settled = true; o.signal?.removeEventListener('abort', onAbort); if (e) reject(e); else resolve(); };
    const onAbort = () => { void w.terminate(); finish(new Error('campaign aborted')); };
    if (o.signal?.aborted) { onAbort(); return; }
    o.signal?.addEventListener('abort', onAbort);
    w.on('message', (m: { kind: 'record'; record: TrialRecord } | { kind: 'done' } | { kind: 'error'; message: string }) => {
      if (settled) return;
      if (m.kind === 'record') {
        try { onRecord(m.record); } catch (e) { void w.terminate(); finish(e as Error); }
      } else if (m.kind === 'done') finish();
      else finish(new Error(m.message));
    });
    w.on('error', (e) => finish(e));
    w.on('exit', (code) => finish(code === 0 ? undefined : new Error(`campaign worker exited with code ${code}`)));
  });
}
