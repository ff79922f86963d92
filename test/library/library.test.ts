// flatenn inside another tool: silent unless asked (progress via callbacks), the
// event loop keeps turning during training and its evaluations, AbortSignal cancels
// cleanly (an already-aborted signal runs nothing), and the process-wide ISA and
// thread count cannot be changed from a worker_thread.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { defaultConfig, type TrainConfig } from '../../src/train/config';
import { trainModel, type TrainProgress } from '../../src/train/run';
import { loadCheckpoint } from '../../src/train/checkpoint';
import { runCampaign } from '../../src/campaign/campaign';
import { readResults } from '../../src/campaign/results';
import { availableIsas, getIsa, getThreads, setIsa } from '../../src/native/info';
import { writeTinyModel } from '../helpers/tiny-model';
import { readDeployed } from '../../src/deploy/format';
import { Engine } from '../../src/engine/engine';
import { tmpDir, writeMnist } from '../data/fixtures';

function data(tag: string): string {
  const dir = tmpDir(tag);
  writeMnist(dir, 'train', 600, true);
  writeMnist(dir, 'test', 300, true);
  return dir;
}
const cfg = (over: Partial<TrainConfig> = {}): TrainConfig => ({ ...defaultConfig('lenet5'), epochs: 2, batchSize: 32, valSize: 200, ...over });

/** Captures the text written to stdout/stderr while fn runs (binary chunks, the test runner's own protocol, pass through). */
async function captured<T>(fn: () => Promise<T>): Promise<{ value: T; text: string }> {
  let text = '';
  const o = process.stdout.write.bind(process.stdout), e = process.stderr.write.bind(process.stderr);
  process.stdout.write = ((c: string | Uint8Array, ...rest: never[]) => { if (typeof c !== 'string') return o(c, ...rest); text += c; return true; }) as typeof process.stdout.write;
  process.stderr.write = ((c: string | Uint8Array, ...rest: never[]) => { if (typeof c !== 'string') return e(c, ...rest); text += c; return true; }) as typeof process.stderr.write;
  try {
    return { value: await fn(), text };
  } finally {
    process.stdout.write = o; process.stderr.write = e;
  }
}

test('trainModel prints nothing, reports progress through onProgress, and the event loop turns in every phase', async () => {
  const dir = data('lib-train');
  const events: (TrainProgress & { ticks: number })[] = [];
  let ticks = 0, running = true;
  const spin = () => { ticks++; if (running) setImmediate(spin); };
  setImmediate(spin);
  const { value: r, text } = await captured(() => trainModel(cfg(), { out: path.join(dir, 'm.safetensors'), dataDir: dir, sliceMs: 0, onProgress: (p) => events.push({ ...p, ticks }) }));
  running = false;
  assert.equal(text, '', 'nothing printed');
  assert.equal(r.history.length, 2);
  assert.ok(r.test && r.test.count === 300);
  const batches = events.filter((e) => e.kind === 'batch'), evals = events.filter((e) => e.kind === 'eval'), ends = events.filter((e) => e.kind === 'epoch');
  assert.equal(ends.length, 2);
  assert.deepEqual(ends.map((e) => e.kind === 'epoch' && e.stats.val?.accuracy), r.history.map((h) => h.valAccuracy), 'epoch events carry the validation accuracy');
  assert.equal(batches.at(-1)!.kind === 'batch' && batches.at(-1)!.done, 400);
  const valEvals = evals.filter((e) => e.kind === 'eval' && e.split === 'val'), testEvals = evals.filter((e) => e.kind === 'eval' && e.split === 'test');
  assert.equal(valEvals.length, 2 * 2, '200 validation images in slices of 100, per epoch');
  assert.equal(testEvals.length, 3);
  // the loop turned between consecutive batches and between evaluation slices (training AND its evaluations yield)
  for (const seq of [batches.filter((b) => b.epoch === 1), valEvals.slice(0, 2), testEvals]) {
    for (let i = 1; i < seq.length; i++) assert.ok(seq[i]!.ticks > seq[i - 1]!.ticks, `event loop turned between ${seq[i]!.kind} events ${i - 1} and ${i}`);
  }
  fs.rmSync(dir, { recursive: true, force: true });
});

test('AbortSignal: an aborted signal trains nothing; aborting mid-run keeps the last whole epoch, which resumes', async () => {
  const dir = data('lib-abort');
  const out = path.join(dir, 'a.safetensors');
  const pre = new AbortController();
  pre.abort();
  await assert.rejects(trainModel(cfg(), { out, dataDir: dir, signal: pre.signal }), { name: 'AbortError' });
  assert.ok(!fs.existsSync(out), 'nothing written');

  const ac = new AbortController();
  await assert.rejects(trainModel(cfg({ epochs: 3 }), {
    out, dataDir: dir, testAtEnd: false, signal: ac.signal,
    onProgress: (p) => { if (p.kind === 'batch' && p.epoch === 2 && p.done >= 160) ac.abort(); },
  }), { name: 'AbortError' });
  const mid = await loadCheckpoint(out);
  assert.equal(mid.meta.epoch, 1, 'the checkpoint holds epoch 1, intact');
  assert.equal(mid.meta.history.length, 1);
  const r = await trainModel(null, { out, dataDir: dir, resume: true, testAtEnd: false });
  assert.equal(r.history.length, 3);
  fs.rmSync(dir, { recursive: true, force: true });
});

test('AbortSignal: an aborted signal runs no campaign trial and writes no results file', async () => {
  const dir = tmpDir('lib-camp');
  writeMnist(dir, 'test', 40, true);
  const model = path.join(dir, 'tiny.safetensors');
  await writeTinyModel(model);
  const out = path.join(dir, 'r.jsonl');
  const ac = new AbortController();
  ac.abort();
  let trials = 0;
  await assert.rejects(runCampaign({ model, faults: ['bitflip'], rates: [0.01], trials: 2, out, dataDir: dir, signal: ac.signal, onTrial: () => { trials++; } }), /campaign aborted/);
  assert.equal(trials, 0);
  assert.ok(!fs.existsSync(out), 'no results file');
  // aborted mid-run: the finished trials stay, the file is whole, and a re-run completes it without duplicates
  const mid = new AbortController();
  const out2 = path.join(dir, 'r2.jsonl');
  const opts = { model, faults: ['bitflip' as const, 'sa0' as const], rates: [0.01, 0.05], trials: 40, out: out2, dataDir: dir };
  await assert.rejects(runCampaign({ ...opts, signal: mid.signal, onTrial: (_r, done) => { if (done === 5) mid.abort(); } }), /aborted/);
  const part = readResults(out2);
  assert.equal(part.tornTail, false);
  assert.ok(part.records.length >= 5 && part.records.length < 160, `${part.records.length} trials kept`);
  assert.ok(!fs.existsSync(out2 + '.lock'), 'lock released');
  const rest = await runCampaign(opts);
  assert.equal(rest.records.length, 160);
  assert.equal(new Set(rest.records.map((r) => `${r.fault}|${r.rate}|${r.trial}`)).size, 160);

  // silent by default: a whole campaign prints nothing
  const { text } = await captured(() => runCampaign({ model, faults: ['bitflip'], rates: [0.01], trials: 2, out, dataDir: dir }));
  assert.equal(text, '');
  fs.rmSync(dir, { recursive: true, force: true });
});

test('ISA and threads are process-wide: a worker_thread cannot change them (it gets an error), the main thread keeps its choice', async () => {
  const isas = availableIsas();
  const mine = isas[0]!; // scalar
  const before = getIsa();
  setIsa(mine);
  try {
    const info = path.resolve(__dirname, '../../src/native/info.js');
    const code = `const { parentPort } = require('node:worker_threads'); const i = require(${JSON.stringify(info)});
      const res = { seen: i.getIsa(), threads: i.getThreads() };
      for (const [k, f] of [['setIsa', () => i.setIsa(${JSON.stringify(isas.at(-1))})], ['setThreads', () => i.setThreads(1)], ['withIsa', () => i.withIsa('scalar', () => 0)]]) {
        try { f(); res[k] = 'accepted'; } catch (e) { res[k] = e.message; }
      }
      parentPort.postMessage(res);`;
    const res = await new Promise<Record<string, string | number>>((resolve, reject) => {
      const w = new Worker(code, { eval: true });
      w.once('message', resolve); w.once('error', reject);
    });
    assert.equal(res.seen, mine, 'the worker sees the process-wide ISA');
    assert.equal(res.threads, getThreads());
    for (const k of ['setIsa', 'setThreads', 'withIsa']) assert.match(String(res[k]), /process-wide .* main thread/, `${k} from a worker is refused`);
    assert.equal(getIsa(), mine, 'the main thread keeps its ISA');
  } finally {
    setIsa(before);
  }
});

test('Engine.evaluate lets the event loop turn between batches, reports progress, and an aborted signal evaluates nothing', async () => {
  const dir = tmpDir('lib-engine');
  const file = path.join(dir, 'tiny.safetensors');
  await writeTinyModel(file);
  const m = await readDeployed(file);
  const n = 400;
  const images = Uint8Array.from({ length: n * 784 }, (_, i) => (i * 31) & 255), labels = Uint8Array.from({ length: n }, (_, i) => i % 10);
  const engine = new Engine(m);
  let ticks = 0, running = true;
  const spin = () => { ticks++; if (running) setImmediate(spin); };
  setImmediate(spin);
  const seen: number[] = [];
  const r = await engine.evaluate({ images, labels, count: n, batchSize: 50, onProgress: () => seen.push(ticks) });
  running = false;
  assert.equal(r.count, n);
  assert.ok(seen.length >= 7, `${seen.length} progress calls for 8 batches`);
  for (let i = 1; i < seen.length; i++) assert.ok(seen[i]! > seen[i - 1]!, `the event loop turned between batches ${i - 1} and ${i}`);
  assert.deepEqual(r.predictions, engine.evaluateSync({ images, labels, count: n }).predictions, 'same answer as the synchronous call');
  const ac = new AbortController();
  ac.abort();
  let batches = 0;
  await assert.rejects(engine.evaluate({ images, labels, count: n, batchSize: 50, signal: ac.signal, onProgress: () => { batches++; } }), { name: 'AbortError' });
  assert.equal(batches, 0);
  fs.rmSync(dir, { recursive: true, force: true });
});

test('no library module writes to the console: only the CLI (src/cli, src/benchkit) and its progress drawer do', () => {
  const src = path.resolve(__dirname, '../../src');
  const offenders: string[] = [];
  (function walk(d: string) {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name), rel = path.relative(src, p);
      // src/cli and src/benchkit (the engine of the `bench kernels` command, not exported by the library) draw for the CLI
      if (e.isDirectory()) { if (!['cli', 'benchkit'].includes(rel)) walk(p); continue; }
      // util/progress: the CLI's drawer; io/cleanup: writes only from the signal handler that src/cli/main installs
      if (!e.name.endsWith('.js') || rel === path.join('util', 'progress.js') || rel === path.join('io', 'cleanup.js')) continue;
      const text = fs.readFileSync(p, 'utf8');
      if (/\bconsole\.(log|error|warn|info)\b|process\.(stdout|stderr)\b/.test(text)) offenders.push(rel);
    }
  })(src);
  assert.deepEqual(offenders, []);
});
