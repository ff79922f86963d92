// Library API for fault campaigns. Trials run in a worker thread (the host's
// event loop stays free); this thread appends each finished trial to the
// results file as it arrives, so a killed run loses at most the trial in flight.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { readDeployed, type DeployedModel } from '../deploy/format';
import { Engine } from '../engine/engine';
import { loadDataset } from '../data/dataset';
import { FAULT_TYPES, type FaultType, type RateUnit, type Sampling } from './faults';
import { campaignJobCount, campaignJobs, FaultMapper, MAX_TRIALS, targetsOf, type TrialData, type TrialJob } from './runner';
import { maskKey, readMasks, writeMasks, type FaultMasks } from './masks';
import { checkOutputPath } from '../io/paths';
import { pidAlive, registerCleanup, unregisterCleanup } from '../io/cleanup';
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

const SAMPLINGS: readonly Sampling[] = ['exact', 'bernoulli'];
const RATE_UNITS: readonly RateUnit[] = ['bit', 'weight'];
const isObj = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);

/**
 * Checks campaign options the same way for the library and the CLI (the CLI
 * turns these errors into usage errors, exit 2). Throws TypeError / RangeError
 * naming the option.
 */
export function validateCampaignOptions(o: CampaignOptions): void {
  if (!isObj(o)) throw new TypeError(`campaign options must be an object, got ${o === null ? 'null' : typeof o}`);
  if (typeof o.model !== 'string' || o.model === '') throw new TypeError('model must be the path of a deployed model file (a non-empty string)');
  if (typeof o.out !== 'string' || o.out === '') throw new TypeError('out must be the path of the results file (a non-empty string)');
  if (!Array.isArray(o.faults) || o.faults.length === 0) throw new RangeError('at least one fault type is needed');
  for (const f of o.faults) if (!(FAULT_TYPES as readonly unknown[]).includes(f)) throw new RangeError(`unknown fault type '${String(f)}' (expected ${FAULT_TYPES.join(', ')})`);
  if (new Set(o.faults).size !== o.faults.length) throw new RangeError(`a fault type is listed twice (${o.faults.join(', ')})`);
  if (!Array.isArray(o.rates) || o.rates.length === 0) throw new RangeError('at least one rate is needed');
  for (const r of o.rates) {
    if (typeof r !== 'number' || !(r >= 0 && r <= 1)) throw new RangeError(`rate ${String(r)} is not a number in [0, 1]`);
    if (r > 0 && r < 2.2250738585072014e-308) throw new RangeError(`rate ${r} is below the smallest normal double (it would underflow)`);
  }
  if (new Set(o.rates).size !== o.rates.length) throw new RangeError(`a rate is listed twice (${o.rates.join(', ')})`);
  if (!Number.isInteger(o.trials) || o.trials < 1 || o.trials > MAX_TRIALS) throw new RangeError(`trials must be an integer in [1, ${MAX_TRIALS}] (trial indices are 32-bit), got ${String(o.trials)}`);
  if (o.shard !== undefined) {
    const sh = o.shard;
    if (!isObj(sh) || !Number.isSafeInteger(sh.count) || sh.count < 1 || sh.count > MAX_TRIALS || !Number.isSafeInteger(sh.index) || sh.index < 0 || sh.index >= sh.count) {
      throw new RangeError(`shard must be i/N with 0 <= i < N <= ${MAX_TRIALS}, got ${isObj(sh) ? `${String(sh.index)}/${String(sh.count)}` : String(sh)}`);
    }
  }
  if (o.seed !== undefined && (!Number.isSafeInteger(o.seed) || o.seed < 0)) throw new RangeError(`seed must be a non-negative safe integer, got ${String(o.seed)}`);
  if (o.sampling !== undefined && !SAMPLINGS.includes(o.sampling)) throw new RangeError(`sampling must be one of ${SAMPLINGS.join(', ')}, got '${String(o.sampling)}'`);
  if (o.rateUnit !== undefined && !RATE_UNITS.includes(o.rateUnit)) throw new RangeError(`rateUnit must be one of ${RATE_UNITS.join(', ')}, got '${String(o.rateUnit)}'`);
  if ((o.sampling ?? 'exact') === 'bernoulli' && (o.rateUnit ?? 'bit') !== 'bit') throw new RangeError('sampling bernoulli works with rateUnit bit only');
  if (o.targets !== undefined) {
    if (!Array.isArray(o.targets) || o.targets.length === 0) throw new RangeError('targets must be a non-empty array of target names');
    for (const t of o.targets) {
      if (typeof t !== 'string') throw new TypeError(`targets must be strings, got ${typeof t}`);
      targetsOf(t);
    }
    if (new Set(o.targets).size !== o.targets.length) throw new RangeError('a target is listed twice');
  }
  for (const k of ['byLayer', 'byBit', 'quiet'] as const) if (o[k] !== undefined && typeof o[k] !== 'boolean') throw new TypeError(`${k} must be a boolean, got ${typeof o[k]}`);
  if (o.byLayer && o.byBit) throw new RangeError('byLayer and byBit exclude each other');
  if (o.limit !== undefined && (!Number.isInteger(o.limit) || o.limit < 1)) throw new RangeError(`limit must be an integer >= 1, got ${String(o.limit)}`);
  if (o.dataDir !== undefined && (typeof o.dataDir !== 'string' || o.dataDir === '')) throw new TypeError('dataDir must be a non-empty string');
  if (o.onTrial !== undefined && typeof o.onTrial !== 'function') throw new TypeError('onTrial must be a function');
  if (o.signal !== undefined && !(o.signal instanceof AbortSignal)) throw new TypeError('signal must be an AbortSignal');
  if (o.saveMasks !== undefined && (typeof o.saveMasks !== 'string' || o.saveMasks === '')) throw new TypeError('saveMasks must be the path of a masks file to write (a non-empty string)');
  const jobs = campaignJobCount({ targets: o.targets ?? ['all'], trials: o.trials, faults: o.faults, rates: o.rates }, o.shard ?? { index: 0, count: 1 });
  if (!Number.isSafeInteger(jobs)) throw new RangeError(`the campaign has ${jobs} jobs, more than can be counted exactly`);
}

function abortError(signal: AbortSignal): Error {
  const r: unknown = signal.reason;
  return new Error(`campaign aborted${r instanceof Error ? ` (${r.message})` : typeof r === 'string' ? ` (${r})` : ''}`);
}
function checkAborted(o: CampaignOptions): void {
  if (o.signal?.aborted) throw abortError(o.signal);
}

/** Everything a campaign needs before its trials run: settings, header, the model and the test images. */
export interface PreparedCampaign {
  settings: CampaignSettings;
  header: ResultsHeader;
  shard: { index: number; count: number };
  model: DeployedModel;
  data: TrialData;
  /** Where the test images came from (for messages). */
  dataSource: string;
  /** The options after a masks replay set faults, rates and trials. */
  options: CampaignOptions;
}

/**
 * sha256 (hex) of the test data a campaign evaluates: the first `count` images and labels and their shape.
 * Two copies with the same layout but other pixels (CIFAR-10 and its JPEG-derived stand-in) differ.
 */
export function testDataHash(ds: { channels: number; height: number; width: number; images: Uint8Array; labels: Uint8Array }, count: number): string {
  const per = ds.channels * ds.height * ds.width;
  const h = createHash('sha256');
  h.update(`flatenn.testdata ${count}x${ds.channels}x${ds.height}x${ds.width}\n`);
  h.update(ds.labels.subarray(0, count));
  h.update(ds.images.subarray(0, count * per));
  return h.digest('hex');
}

/**
 * Validates the options, reads the model and the test images, and builds the settings and header (saving
 * masks if asked). With `withOut: false` (queue mode without a results file yet) `o.out` is not needed.
 */
export async function prepareCampaign(o: CampaignOptions, { withOut = true }: { withOut?: boolean } = {}): Promise<PreparedCampaign> {
  let replay: FaultMasks | null = null;
  if (isObj(o) && o.masks !== undefined) {
    if (typeof o.masks !== 'string' || o.masks === '') throw new TypeError('masks must be the path of a masks file (a non-empty string)');
    if (o.saveMasks !== undefined || o.byLayer || o.byBit || (o.targets && o.targets.join() !== 'all')) throw new RangeError('masks replay one target: not with saveMasks, byLayer, byBit or targets');
    if (typeof o.model !== 'string' || o.model === '') throw new TypeError('model must be the path of a deployed model file (a non-empty string)');
    checkAborted(o);
    const m = await readDeployed(o.model);
    replay = await readMasks(o.masks, m.meta);
    o = { ...o, faults: replay.meta.faults, rates: replay.meta.rates, trials: replay.meta.trials, seed: replay.meta.source?.seed ?? 0, sampling: 'exact', rateUnit: 'bit', targets: ['all'] };
  }
  validateCampaignOptions(withOut ? o : { ...o, out: '(no results file)' });
  checkAborted(o);
  if (withOut) checkOutputPath(o.out, [o.model, o.masks]);
  if (o.saveMasks !== undefined) checkOutputPath(o.saveMasks, [o.model, o.out], 'saveMasks');
  const model = await readDeployed(o.model);
  checkAborted(o);
  const shard = o.shard ?? { index: 0, count: 1 };
  let targets = o.targets ?? ['all'];
  if (o.byLayer) targets = model.meta.layers.map((l) => `layer:${l.name}`);
  if (o.byBit) targets = Array.from({ length: Math.max(...model.meta.layers.map((l) => l.bits)) }, (_, b) => `bit:${b}`);
  for (const t of targets) targetsOf(t);
  const ds = await loadDataset(model.meta.dataset as 'fashion-mnist', 'test', o.dataDir ? { dataDir: o.dataDir } : {});
  checkAborted(o);
  if (ds.count === 0) throw new Error(`the ${model.meta.dataset} test split holds no images`);
  const images = o.limit ? Math.min(o.limit, ds.count) : ds.count;
  const settings: CampaignSettings = {
    model: path.resolve(o.model), modelSha256: model.hash, layoutHash: model.meta.layoutHash, arch: model.meta.arch,
    dataset: model.meta.dataset, split: 'test', images, dataSha256: testDataHash(ds, images), faults: o.faults, rates: o.rates, trials: o.trials,
    seed: o.seed ?? 1, sampling: o.sampling ?? 'exact', rateUnit: o.rateUnit ?? 'bit', targets,
    semantics: SEMANTICS,
    ...(replay ? { masksSha256: replay.sha256 } : {}),
  };
  if (o.saveMasks !== undefined) {
    if (targets.length !== 1) throw new RangeError('saveMasks saves one target: not with byLayer or byBit');
    const mapper = new FaultMapper(model.meta, settings);
    const jobs = new Map(Array.from(campaignJobs(settings, { index: 0, count: 1 })).map((j) => [maskKey(j.fault, j.rate, j.trial), j]));
    await writeMasks(o.saveMasks, {
      layoutHash: model.meta.layoutHash, cells: model.meta.cells, faults: settings.faults, rates: settings.rates, trials: settings.trials,
      layers: model.meta.layers.map((l) => ({ name: l.name, count: l.count, bits: l.bits, cellOffset: l.cellOffset })),
      source: { seed: settings.seed, sampling: settings.sampling, rateUnit: settings.rateUnit, target: targets[0]! },
    }, (f, r, t) => mapper.cellsOf(jobs.get(maskKey(f, r, t))!).slice());
  }
  const header: ResultsHeader = { type: 'header', format: RESULTS_FORMAT, version: RESULTS_VERSION, settings, shard };
  return { settings, header, shard, model, data: { images: ds.images, labels: ds.labels, count: images }, dataSource: ds.source, options: o };
}

/**
 * Opens (or creates) a results file for a campaign: checks that an existing file holds the same campaign and
 * shard, drops a torn last line, writes the header to a new file. Returns the records already there.
 */
export function openResults(out: string, header: ResultsHeader): TrialRecord[] {
  const { settings, shard } = header;
  if (fs.existsSync(out) && fs.statSync(out).size > 0) {
    const f = readResults(out);
    const d = settingsDiff(f.header.settings, settings);
    if (d) throw new Error(`${out} holds results of a different campaign (${d}); choose another --out or remove the file`);
    if (f.header.shard.index !== shard.index || f.header.shard.count !== shard.count) throw new Error(`${out} holds shard ${f.header.shard.index}/${f.header.shard.count}, not ${shard.index}/${shard.count}`);
    if (f.tornTail) fs.truncateSync(out, f.validBytes); // drop the line a killed run left half-written
    return f.records;
  }
  fs.mkdirSync(path.dirname(path.resolve(out)), { recursive: true });
  fs.writeFileSync(out, JSON.stringify(header) + '\n');
  return [];
}

/**
 * Runs (or resumes) a Monte Carlo fault-injection campaign into `o.out` (JSON Lines, DESIGN §5): trials in a worker
 * thread, each appended as it ends; the clean model evaluated once per run. Prints nothing (see `onTrial`).
 */
export async function runCampaign(o: CampaignOptions): Promise<CampaignResult> {
  const t0 = Date.now();
  const p = await prepareCampaign(o);
  const unlock = lockResults(o.out);
  try {
    return await runLocked(p.options, p.settings, p.header, p.shard, t0, { model: p.model, images: p.data.images, labels: p.data.labels });
  } finally {
    unlock();
  }
}

/**
 * One writer per results file: a lock file beside it (created exclusively,
 * holding the pid). A lock whose process is gone (killed run) is taken over.
 */
export function lockResults(out: string): () => void {
  const lock = out + '.lock';
  fs.mkdirSync(path.dirname(path.resolve(out)), { recursive: true });
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      fs.writeFileSync(lock, String(process.pid), { flag: 'wx' });
      registerCleanup(lock);
      return () => { unregisterCleanup(lock); try { fs.unlinkSync(lock); } catch { /* already gone */ } };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw new Error(`cannot create the lock ${lock} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
      let text = '';
      try { text = fs.readFileSync(lock, 'utf8'); } catch { continue; /* removed meanwhile: try again */ }
      const pid = Number(text);
      if (pidAlive(pid)) throw new Error(`${out} is being written by another campaign (pid ${pid}, lock ${lock}); wait for it or use another --out`);
      try { fs.unlinkSync(lock); } catch { /* removed meanwhile */ } // stale: its process is gone (or the lock is unreadable)
    }
  }
  throw new Error(`cannot lock ${out}: ${lock} keeps reappearing`);
}

async function runLocked(o: CampaignOptions, settings: CampaignSettings, header: ResultsHeader, shard: { index: number; count: number }, t0: number,
  data: { model: DeployedModel; images: Uint8Array; labels: Uint8Array }): Promise<CampaignResult> {
  const existing = openResults(o.out, header);
  const clean: CleanRecord[] = readResults(o.out).clean;
  const done = new Set(existing.map(trialKey));
  // Rate 0 leaves the memory unchanged: the clean record below stands for those trials (older files may
  // hold rate-0 trial records; they are kept and not re-run).
  const zeroDone = existing.filter((r) => r.rate === 0).length;
  const total = campaignJobCount({ ...settings, rates: settings.rates.filter((r) => r !== 0) }, shard) + zeroDone;
  const pending = (function* () { for (const j of campaignJobs(settings, shard)) if (j.rate !== 0 && !done.has(trialKey(j))) yield j; })();
  const records = existing.slice();
  let ran = 0;
  checkAborted(o);
  const missingClean = settings.targets.filter((t) => !clean.some((c) => c.target === t));
  if (records.length < total || missingClean.length > 0) {
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
      if (records.length < total) {
        await runInWorker(o, settings, pending, (r) => {
          writer.write(r);
          records.push(r);
          ran++;
          o.onTrial?.(r, records.length, total);
        });
      }
      writer.sync();
    } finally {
      writer.close();
    }
  }
  return { settings, records, clean, rows: summaryRows(settings, records, clean), ran, skipped: total - ran, seconds: (Date.now() - t0) / 1000 };
}

/** Jobs are sent to the worker in chunks as it asks for them (the job list is never built whole). */
const CHUNK = 64;

function runInWorker(o: CampaignOptions, settings: CampaignSettings, jobs: Iterator<TrialJob>, onRecord: (r: TrialRecord) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const w = new Worker(path.join(__dirname, 'worker.js'), { workerData: { settings, dataDir: o.dataDir ?? null, masks: o.masks ?? null } });
    let settled = false;
    const finish = (e?: Error) => { if (settled) return; settled = true; o.signal?.removeEventListener('abort', onAbort); if (e) { void w.terminate(); reject(e); } else resolve(); };
    const onAbort = () => finish(abortError(o.signal!));
    o.signal?.addEventListener('abort', onAbort);
    if (o.signal?.aborted) { onAbort(); return; }
    const nextChunk = (): TrialJob[] => {
      const out: TrialJob[] = [];
      while (out.length < CHUNK) {
        const n = jobs.next();
        if (n.done) break;
        out.push(n.value);
      }
      return out;
    };
    w.on('message', (m: { kind: 'record'; record: TrialRecord } | { kind: 'need' } | { kind: 'done' } | { kind: 'error'; message: string }) => {
      if (settled) return;
      try {
        if (m.kind === 'record') onRecord(m.record);
        else if (m.kind === 'need') {
          const chunk = nextChunk();
          w.postMessage({ kind: 'jobs', jobs: chunk, end: chunk.length === 0 });
        } else if (m.kind === 'done') finish();
        else finish(new Error(m.message));
      } catch (e) {
        finish(e as Error);
      }
    });
    w.on('error', (e) => finish(e));
    w.on('exit', (code) => finish(code === 0 ? undefined : new Error(`campaign worker exited with code ${code}`)));
  });
}
