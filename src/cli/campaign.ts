import * as fs from 'node:fs';
import { runCampaign, validateCampaignOptions, type CampaignOptions } from '../campaign/campaign';
import { MAX_TRIALS } from '../campaign/runner';
import { checkOutputPath, OutputPathError } from '../io/paths';
import { FAULT_TYPES, parseRate, type FaultType } from '../campaign/faults';
import { formatPaired, formatSummary, mergeResults, pairedRows, readResults, summaryRows } from '../campaign/results';
import { exportCheckpoint } from '../deploy/export';
import { choice, explicitOptions, flag, int, requireStr, str, UsageError, type CommandSpec } from './args';
import type { TrialRecord } from '../campaign/results';
import { pairedCsv, recordsCsv, summaryCsv } from '../campaign/csv';
import { Progress } from '../util/progress';
import { QUEUE_INJECT_OPTIONS } from './queue';

export const exportCommand: CommandSpec = {
  name: 'export',
  summary: 'Turn a training checkpoint into a deployed int4 model (weight memory, folded scales/biases, ranges, topology).',
  usage: 'flatenn export --model checkpoint.safetensors --out deployed.safetensors',
  examples: ['flatenn export --model runs/as.safetensors --out runs/as.int4.safetensors'],
  options: {
    model: { type: 'string', arg: '<file>', description: 'training checkpoint', required: true },
    out: { type: 'string', arg: '<file>', description: 'deployed model to write (.safetensors)', required: true },
    json: { type: 'boolean', description: 'print the layout as JSON' },
  },
  async run(v) {
    const model = requireStr(v, 'model'), out = requireStr(v, 'out');
    usagePath(out, [model]);
    const meta = await exportCheckpoint(model, out);
    if (flag(v, 'json')) process.stdout.write(JSON.stringify(meta, null, 2) + '\n');
    else {
      process.stdout.write(`${out}: ${meta.arch}, ${meta.layers.length} weight layers, ${meta.memoryBytes} bytes of weight memory, ${meta.cells} cells, layout ${meta.layoutHash}\n`);
      for (const l of meta.layers) process.stdout.write(`  ${l.name.padEnd(24)} ${l.op.padEnd(6)} [${l.shape.join('x')}] ${l.bits}-bit  bytes ${l.byteOffset}+${l.byteLength}\n`);
    }
    return 0;
  },
};

/** The output-path checks of io/paths as usage errors (exit 2). */
export function usagePath(out: string, inputs: (string | undefined)[], option = '--out'): void {
  try { checkOutputPath(out, inputs, option); } catch (e) { if (e instanceof OutputPathError) throw new UsageError(e.message); throw e; }
}

function parseList<T>(s: string, name: string, f: (x: string) => T): T[] {
  const parts = s.split(',').map((x) => x.trim());
  if (parts.some((p) => p === '')) throw new UsageError(`--${name}: empty item in '${s}'`);
  return parts.map((p) => { try { return f(p); } catch (e) { throw new UsageError(`--${name}: ${(e as Error).message}`); } });
}

function parseShard(sh: string): { index: number; count: number } {
  const m = /^(\d+)\/(\d+)$/.exec(sh);
  if (!m || !Number.isSafeInteger(Number(m[1])) || !Number.isSafeInteger(Number(m[2])) || Number(m[2]) < 1 || Number(m[2]) > MAX_TRIALS || Number(m[1]) >= Number(m[2])) throw new UsageError(`--shard expects i/N with 0 <= i < N <= ${MAX_TRIALS}, got '${sh}'`);
  return { index: Number(m[1]), count: Number(m[2]) };
}

export const injectCommand: CommandSpec = {
  name: 'inject',
  summary: 'Monte Carlo fault-injection campaign on a deployed model: one JSON line per finished trial; re-running resumes.',
  usage: 'flatenn inject --model M.safetensors --faults bitflip,sa0,sa1 --rates 0,1%,2%,3%,4%,5% --trials N --out results.jsonl [--queue redis://host:6379/0 [--detach]]\n\n' +
    'With --queue the trials run on `flatenn worker`s (any number of machines) and are gathered into the same --out as a local run.',
  examples: [
    'flatenn inject --model runs/as.int4.safetensors --trials 100 --out runs/as.jsonl',
    'flatenn inject --model m.int4.safetensors --faults bitflip --rates 1%,5% --trials 50 --by-layer --out layers.jsonl',
    'flatenn inject --model m.int4.safetensors --trials 100 --shard 0/4 --out part0.jsonl   # one of 4 machines',
  ],
  options: {
    model: { type: 'string', arg: '<file>', description: 'deployed model (flatenn export)', required: true },
    faults: { type: 'string', arg: '<types>', description: `fault types: ${FAULT_TYPES.join(', ')}`, default: 'bitflip,sa0,sa1' },
    rates: { type: 'string', arg: '<rates>', description: 'fault rates: fractions (0.01) or percentages (1%)', default: '0,1%,2%,3%,4%,5%' },
    trials: { type: 'string', arg: '<n>', description: 'trials per (fault type, rate)', required: true },
    seed: { type: 'string', arg: '<n>', description: 'fault-map seed (common random numbers across types, rates and models)', default: '1' },
    sampling: { type: 'string', arg: '<s>', description: 'exact (k = round(p * cells) distinct cells) or bernoulli', default: 'exact' },
    'rate-unit': { type: 'string', arg: '<u>', description: 'bit (rate over cells) or weight (rate over weights, one bit each)', default: 'bit' },
    'fault-targets': { type: 'string', arg: '<spec>', description: "confine faults: 'layers=conv1+fc1', 'bits=3', or 'layers=conv1;bits=0+1'" },
    'by-layer': { type: 'boolean', description: 'one sub-campaign per layer (faults confined to it): a vulnerability table' },
    'by-bit': { type: 'boolean', description: 'one sub-campaign per bit position (0 = LSB)' },
    shard: { type: 'string', arg: '<i/N>', description: 'run only trials t with t % N == i (merge with flatenn summary)' },
    limit: { type: 'string', arg: '<n>', description: 'evaluate only the first n test images (quick runs)' },
    'data-dir': { type: 'string', arg: '<dir>', description: 'dataset folder' },
    out: { type: 'string', arg: '<file>', description: 'results file (.jsonl); appended, resumable', required: true },
    'save-masks': { type: 'string', arg: '<file>', description: "also write each trial's faulty cells (safetensors, <fault>/<rate>/<trial> uint32 cell indices)" },
    masks: { type: 'string', arg: '<file>', description: 'replay saved masks instead of drawing (faults, rates and trials come from the file)' },
    json: { type: 'boolean', description: 'print the summary as JSON' },
    quiet: { type: 'boolean', short: 'q', description: 'no progress output' },
    ...QUEUE_INJECT_OPTIONS,
  },
  async run(v) {
    const queued = str(v, 'queue') !== undefined;
    if (!queued) for (const k of ['detach', 'chunk'] as const) if (v[k] !== undefined) throw new UsageError(`--${k} needs --queue`);
    const model = requireStr(v, 'model');
    const out = queued && flag(v, 'detach') ? (str(v, 'out') ?? '') : requireStr(v, 'out');
    const masks = str(v, 'masks'), saveMasks = str(v, 'save-masks');
    if (queued && (masks !== undefined || saveMasks !== undefined)) throw new UsageError('--masks and --save-masks work in local runs only, not with --queue');
    if (masks !== undefined) {
      const clash = ['faults', 'rates', 'trials', 'seed', 'sampling', 'rate-unit', 'fault-targets', 'by-layer', 'by-bit', 'save-masks'].filter((k) => explicitOptions(v).includes(k));
      if (clash.length) throw new UsageError(`--masks replays the file's faults, rates and trials: drop ${clash.map((k) => '--' + k).join(', ')}`);
      let shard = { index: 0, count: 1 };
      const sh = str(v, 'shard');
      if (sh !== undefined) shard = parseShard(sh);
      const limit = v.limit !== undefined ? int(v, 'limit', 1, 1e9) : undefined;
      const dataDir = str(v, 'data-dir');
      usagePath(out, [model, masks]);
      const r = await runCampaign({ model, masks, faults: [], rates: [], trials: 0, out, shard, onTrial: trialBar(flag(v, 'quiet')), ...(limit ? { limit } : {}), ...(dataDir ? { dataDir } : {}) });
      if (flag(v, 'json')) process.stdout.write(JSON.stringify({ settings: r.settings, ran: r.ran, skipped: r.skipped, summary: r.rows }, null, 2) + '\n');
      else process.stdout.write(`${r.ran} trials run, ${r.skipped} already in ${out} (${r.seconds.toFixed(1)} s)\n${formatSummary(r.rows)}\n`);
      return 0;
    }
    const faults = parseList(str(v, 'faults')!, 'faults', (x) => {
      if (!(FAULT_TYPES as readonly string[]).includes(x)) throw new Error(`unknown fault type '${x}' (expected ${FAULT_TYPES.join(', ')})`);
      return x as FaultType;
    });
    const rates = parseList(str(v, 'rates')!, 'rates', parseRate);
    if (v.trials === undefined) throw new UsageError('--trials is required');
    const trials = int(v, 'trials', 1, MAX_TRIALS);
    const seed = int(v, 'seed', 0, Number.MAX_SAFE_INTEGER);
    const sampling = choice(v, 'sampling', ['exact', 'bernoulli'] as const);
    const rateUnit = choice(v, 'rate-unit', ['bit', 'weight'] as const);
    let shard = { index: 0, count: 1 };
    const sh = str(v, 'shard');
    if (sh !== undefined) shard = parseShard(sh);
    let targets = ['all'];
    const ft = str(v, 'fault-targets');
    if (ft !== undefined) {
      let layers = '*', bits = '*';
      for (const part of ft.split(';')) {
        const [k, val] = part.split('=');
        if (k === 'layers' && val) layers = val;
        else if (k === 'bits' && val) {
          if (!/^\d+(\+\d+)*$/.test(val)) throw new UsageError(`--fault-targets: bits must be like 3 or 0+1, got '${val}'`);
          bits = val;
        } else throw new UsageError(`--fault-targets expects 'layers=a+b' and/or 'bits=0+1', got '${ft}'`);
      }
      targets = [`targets:${layers}/${bits}`];
    }
    const byLayer = flag(v, 'by-layer'), byBit = flag(v, 'by-bit');
    if ([byLayer, byBit, ft !== undefined].filter(Boolean).length > 1) throw new UsageError('--by-layer, --by-bit and --fault-targets exclude each other');
    const limit = v.limit !== undefined ? int(v, 'limit', 1, 1e9) : undefined;
    const dataDir = str(v, 'data-dir');
    if (saveMasks !== undefined && (byLayer || byBit)) throw new UsageError('--save-masks saves one target: not with --by-layer or --by-bit');
    const opts: CampaignOptions = { model, faults, rates, trials, out, seed, sampling, rateUnit, targets, byLayer, byBit, shard, ...(saveMasks !== undefined ? { saveMasks } : {}), onTrial: trialBar(flag(v, 'quiet')), ...(limit ? { limit } : {}), ...(dataDir ? { dataDir } : {}) };
    try { validateCampaignOptions(out === '' ? { ...opts, out: '(no results file)' } : opts); } catch (e) { throw new UsageError((e as Error).message); }
    if (out !== '') usagePath(out, [model]);
    if (saveMasks !== undefined) usagePath(saveMasks, [model, out], '--save-masks');
    if (queued) return (require('./queue') as typeof import('./queue')).injectQueued(v, opts);
    const r = await runCampaign(opts);
    if (flag(v, 'json')) process.stdout.write(JSON.stringify({ settings: r.settings, ran: r.ran, skipped: r.skipped, summary: r.rows }, null, 2) + '\n');
    else process.stdout.write(`${r.ran} trials run, ${r.skipped} already in ${out} (${r.seconds.toFixed(1)} s)\n${formatSummary(r.rows)}\n`);
    return 0;
  },
};

export const summaryCommand: CommandSpec = {
  name: 'summary',
  summary: 'Summarise campaign results (merging shards): per (fault type, rate) mean, std, 95% t-interval, min, max; --baseline gives paired differences.',
  usage: 'flatenn summary results.jsonl [more.jsonl ...] [--baseline other.jsonl] [--json | --csv] [--records-only]',
  common: [],
  examples: [
    'flatenn summary runs/as.jsonl',
    'flatenn summary part0.jsonl part1.jsonl part2.jsonl part3.jsonl --csv > summary.csv',
    'flatenn summary runs/saq.jsonl --baseline runs/qat.jsonl   # paired differences',
    'flatenn summary runs/as.jsonl --records-only --csv > trials.csv   # pandas.read_csv',
  ],
  positionals: true,
  options: {
    baseline: { type: 'string', arg: '<file>', description: 'paired comparison against another campaign with the same fault maps' },
    json: { type: 'boolean', description: 'print as JSON' },
    csv: { type: 'boolean', description: 'print as CSV (fractions, one header line)' },
    'records-only': { type: 'boolean', description: 'print the trial records of all files without the header line: JSON lines, or CSV with --csv (e.g. for pandas)' },
  },
  run(v, files) {
    if (files.length === 0) throw new UsageError('give at least one results file');
    if (flag(v, 'json') && flag(v, 'csv')) throw new UsageError('--json and --csv exclude each other');
    for (const f of files) if (!fs.existsSync(f)) throw new Error(`${f}: no such file`);
    const a = mergeResults(files.map((p) => ({ path: p, file: readResults(p) })));
    const base = str(v, 'baseline');
    if (flag(v, 'records-only')) {
      if (base !== undefined) throw new UsageError('--records-only prints records; it takes no --baseline');
      if (flag(v, 'json')) throw new UsageError('--records-only prints JSON lines already; drop --json');
      process.stdout.write(flag(v, 'csv') ? recordsCsv(a.records) : a.records.map((r) => JSON.stringify(r) + '\n').join(''));
      return 0;
    }
    if (base !== undefined) {
      const b = mergeResults([{ path: base, file: readResults(base) }]);
      if (a.settings.layoutHash !== b.settings.layoutHash) throw new Error(`${base}: layout ${b.settings.layoutHash} differs from ${a.settings.layoutHash}: the fault maps are not shared, so trials cannot be paired`);
      for (const k of ['seed', 'sampling', 'rateUnit', 'images'] as const) if (a.settings[k] !== b.settings[k]) throw new Error(`${base}: ${k} differs (${a.settings[k]} vs ${b.settings[k]}): trials cannot be paired`);
      const rows = pairedRows(a, b);
      if (rows.length === 0) throw new Error(`no trial of ${files.join(', ')} has a partner in ${base} (same target, fault type, rate and trial): nothing to pair`);
      if (flag(v, 'csv')) process.stdout.write(pairedCsv(rows));
      else if (flag(v, 'json')) process.stdout.write(JSON.stringify({ a: files, b: base, paired: rows }, null, 2) + '\n');
      else process.stdout.write(`A = ${files.join(', ')} (${a.settings.model})\nB = ${base} (${b.settings.model})\n${formatPaired(rows)}\n`);
      return 0;
    }
    const rows = summaryRows(a.settings, a.records, a.clean);
    // rate-0 trials are not run when the file has clean records (older files hold them as trials)
    const zeroTrials = a.records.filter((r) => r.rate === 0).length;
    const ratesRun = a.settings.rates.filter((r) => r !== 0).length;
    const expected = a.settings.targets.length * a.settings.faults.length * ratesRun * a.settings.trials + zeroTrials;
    if (flag(v, 'csv')) process.stdout.write(summaryCsv(rows));
    else if (flag(v, 'json')) process.stdout.write(JSON.stringify({ settings: a.settings, trials: a.records.length, expected, clean: a.clean, summary: rows }, null, 2) + '\n');
    else process.stdout.write(`${a.settings.arch} ${a.settings.model}\n${a.records.length} of ${expected} trials${a.clean.length ? `; clean model ${(100 * a.clean[0]!.accuracy).toFixed(2)}% (the 0% rows)` : ''}\n${formatSummary(rows)}\n`);
    return 0;
  },
};

/** The CLI's drawing of runCampaign's progress; the rate counts only trials run now (not those a resumed file held). */
export function trialBar(quiet: boolean, stream?: NodeJS.WriteStream): (r: TrialRecord, done: number, total: number) => void {
  let bar: Progress | null = null;
  return (r, done, total) => {
    if (quiet) return;
    bar ??= new Progress({ label: 'trials', total, unit: 'trial', initial: done, ...(stream ? { stream } : {}) });
    const info = `last ${r.fault}@${+(100 * r.rate).toPrecision(4)}% acc ${(100 * r.accuracy).toFixed(2)}%`;
    if (done >= total) bar.finish(info);
    else bar.update(done, info);
  };
}
