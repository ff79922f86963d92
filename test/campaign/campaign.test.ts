// Campaigns end to end on a hand-built model and fixture data: resume after a
// kill, shards, thread counts, nesting, summaries and every refusal.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import * as fs from 'node:fs';
import { spawn, spawnSync } from 'node:child_process';
import { runCampaign } from '../../src/campaign/campaign';
import { mergeResults, readResults, summaryRows, trialKey } from '../../src/campaign/results';
import { FaultSpace, parseRate } from '../../src/campaign/faults';
import { readDeployed } from '../../src/deploy/format';
import { Engine } from '../../src/engine/engine';
import { loadDataset } from '../../src/data/dataset';
import { setThreads, getThreads } from '../../src/native/info';
import { writeTinyModel } from '../helpers/tiny-model';
import { tmpDir, writeMnist } from '../data/fixtures';

const CLI = path.resolve(__dirname, '../../src/cli/main.js');
const base = { faults: ['bitflip', 'sa0', 'sa1'] as ('bitflip' | 'sa0' | 'sa1')[], rates: [0, 0.01, 0.05], trials: 4, quiet: true };

async function setup(tag: string) {
  const dir = tmpDir(tag);
  writeMnist(dir, 'test', 60, true);
  const model = path.join(dir, 'tiny.safetensors');
  await writeTinyModel(model);
  return { dir, model };
}

const strip = (f: string) => readResults(f).records.map((r) => JSON.stringify(r)).sort();

test('rates: fractions and percentages; a bare number above 1 is refused', () => {
  assert.equal(parseRate('0.01'), 0.01);
  assert.equal(parseRate('1%'), 0.01);
  assert.equal(parseRate('0'), 0);
  assert.throws(() => parseRate('5'), /did you mean 5%/);
  assert.throws(() => parseRate('150%'), /outside/);
  assert.throws(() => parseRate('-0.1'), /outside/);
  assert.throws(() => parseRate('abc'), /not a rate/);
});

test('fault spaces: exact counts, nesting across rates, confinement to layers and bits', async () => {
  const { dir, model } = await setup('space');
  const m = await readDeployed(model);
  const all = new FaultSpace(m.meta, { layers: null, bits: null }, 'bit');
  assert.equal(all.eligibleCount, m.meta.cells);
  const order = all.order(5, 2, all.count(0.05));
  assert.equal(order.length, Math.round(0.05 * m.meta.cells));
  assert.equal(new Set(order).size, order.length, 'distinct cells');
  const again = all.order(5, 2, all.count(0.01));
  assert.deepEqual(Array.from(again), Array.from(order.subarray(0, all.count(0.01))), 'nested: the 1% set is a prefix of the 5% set');
  const conv = new FaultSpace(m.meta, { layers: ['conv'], bits: [3] }, 'bit');
  assert.equal(conv.eligibleCount, 100);
  for (const c of conv.order(5, 0, 60)) { assert.ok(c < 400, 'inside conv'); assert.equal(c % 4, 3, 'MSB only'); }
  const wu = new FaultSpace(m.meta, { layers: null, bits: null }, 'weight');
  const wc = wu.order(5, 1, wu.count(0.1));
  assert.equal(wc.length, Math.round(0.1 * 2060));
  assert.equal(new Set(Array.from(wc, (c) => Math.floor(c / 4))).size, wc.length, 'one cell per weight');
  fs.rmSync(dir, { recursive: true });
});

test('campaign: one line per trial, same results for 1 and 2 threads and for any sharding', async () => {
  const { dir, model } = await setup('camp');
  const prev = getThreads();
  setThreads(1);
  const a = await runCampaign({ ...base, model, out: path.join(dir, 'a.jsonl'), dataDir: dir });
  setThreads(2);
  const b = await runCampaign({ ...base, model, out: path.join(dir, 'b.jsonl'), dataDir: dir });
  setThreads(prev);
  assert.equal(a.records.length, 3 * 2 * 4, 'rate 0 runs no trials: the clean record stands for them');
  assert.deepEqual(strip(path.join(dir, 'a.jsonl')), strip(path.join(dir, 'b.jsonl')));
  for (let i = 0; i < 3; i++) await runCampaign({ ...base, model, out: path.join(dir, `s${i}.jsonl`), dataDir: dir, shard: { index: i, count: 3 } });
  const merged = mergeResults([0, 1, 2].map((i) => ({ path: `s${i}`, file: readResults(path.join(dir, `s${i}.jsonl`)) })));
  assert.deepEqual(JSON.stringify(summaryRows(merged.settings, merged.records, merged.clean)), JSON.stringify(a.rows));
  // CRN: identical fault cells across types; stuck-at changes no more codes than there are faulty cells
  const recs = a.records.filter((r) => r.rate === 0.05 && r.trial === 1);
  assert.equal(new Set(recs.map((r) => r.faultyCells)).size, 1);
  for (const r of recs) assert.ok(r.changedCodes <= r.faultyCells && r.changedCodes > 0);
  // the clean model: evaluated once, one record of its own kind, the source of the 0% rows
  assert.equal(a.records.filter((r) => r.rate === 0).length, 0);
  assert.equal(a.clean.length, 1);
  const file = readResults(path.join(dir, 'a.jsonl'));
  assert.deepEqual(file.clean, a.clean);
  const m = await readDeployed(model);
  const ds = await loadDataset('fashion-mnist', 'test', { dataDir: dir });
  const ref = new Engine(m).evaluateSync({ images: ds.images, labels: ds.labels, count: a.settings.images });
  assert.deepEqual(a.clean[0], { type: 'clean', target: 'all', accuracy: ref.accuracy, loss: ref.loss, sparsity: ref.sparsity, sparsityWeighted: ref.sparsityWeighted, images: a.settings.images });
  const zeroRows = a.rows.filter((r) => r.rate === 0);
  assert.equal(zeroRows.length, 3, 'a 0% row per fault type');
  assert.ok(zeroRows.every((r) => r.clean === true && r.accuracy.mean === ref.accuracy && r.accuracy.n === 1 && r.faultyCells === 0));
  // re-running the finished campaign runs nothing and duplicates nothing
  const again = await runCampaign({ ...base, model, out: path.join(dir, 'a.jsonl'), dataDir: dir });
  assert.equal(again.ran, 0);
  assert.equal(readResults(path.join(dir, 'a.jsonl')).records.length, 24);
  assert.equal(readResults(path.join(dir, 'a.jsonl')).clean.length, 1, 'the clean record is not written again');
  // a header that differs is refused
  await assert.rejects(runCampaign({ ...base, trials: 5, model, out: path.join(dir, 'a.jsonl'), dataDir: dir }), /different campaign \(trials/);
  fs.rmSync(dir, { recursive: true });
});

test('campaign: resume after kill -9 loses and duplicates nothing', async () => {
  const { dir, model } = await setup('kill');
  const out = path.join(dir, 'k.jsonl');
  const args = [CLI, 'inject', '--model', model, '--faults', 'bitflip,sa1', '--rates', '0,2%,5%', '--trials', '45', '--out', out, '--data-dir', dir, '--quiet'];
  const child = spawn(process.execPath, args, { stdio: 'ignore' });
  // wait until some trials are written, then kill hard
  await new Promise<void>((resolve) => {
    const iv = setInterval(() => {
      const n = fs.existsSync(out) ? fs.readFileSync(out, 'utf8').split('\n').length : 0;
      if (n > 20) { clearInterval(iv); child.kill('SIGKILL'); resolve(); }
    }, 20);
  });
  await new Promise((r) => child.on('exit', r));
  // simulate a torn final line as well
  fs.appendFileSync(out, '{"type":"trial","target":"all","fau');
  const before = readResults(out).records.length;
  assert.ok(before > 0 && before < 180, `killed run left ${before} trials`);
  const r = spawnSync(process.execPath, args, { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const f = readResults(out);
  assert.equal(f.tornTail, false);
  const keys = f.records.map(trialKey);
  assert.equal(keys.length, 180, '2 faults x 2 non-zero rates x 45 trials');
  assert.equal(new Set(keys).size, 180, 'no duplicates');
  assert.equal(f.clean.length, 1, 'one clean record');
  const ref = path.join(dir, 'ref.jsonl');
  const r2 = spawnSync(process.execPath, [...args.slice(0, args.indexOf('--out') + 1), ref, '--data-dir', dir, '--quiet'], { encoding: 'utf8' });
  assert.equal(r2.status, 0, r2.stderr);
  assert.deepEqual(strip(out), strip(ref), 'resumed run equals an uninterrupted one');
  fs.rmSync(dir, { recursive: true });
});

test('inject refuses bad input with exit code 2 (usage) or 1 (failure) and a clear message', async () => {
  const { dir, model } = await setup('bad');
  const run = (...a: string[]) => spawnSync(process.execPath, [CLI, 'inject', '--data-dir', dir, '--out', path.join(dir, 'x.jsonl'), ...a], { encoding: 'utf8' });
  let r = run('--model', model, '--faults', 'bitflop', '--trials', '2');
  assert.equal(r.status, 2); assert.match(r.stderr, /unknown fault type 'bitflop'/);
  r = run('--model', model, '--rates', '5', '--trials', '2');
  assert.equal(r.status, 2); assert.match(r.stderr, /did you mean 5%/);
  r = run('--model', model, '--rates', '1.5%,200%', '--trials', '2');
  assert.equal(r.status, 2); assert.match(r.stderr, /outside \[0, 1\]/);
  r = run('--model', model, '--trials', '0');
  assert.equal(r.status, 2); assert.match(r.stderr, /--trials must be an integer in \[1/);
  r = run('--model', model);
  assert.equal(r.status, 2); assert.match(r.stderr, /--trials is required/);
  fs.writeFileSync(path.join(dir, 'corrupt.safetensors'), Buffer.from('not a model at all'));
  r = run('--model', path.join(dir, 'corrupt.safetensors'), '--trials', '2');
  assert.equal(r.status, 1); assert.match(r.stderr, /corrupt\.safetensors/);
  r = run('--model', model, '--trials', '2', '--shard', '3/3');
  assert.equal(r.status, 2); assert.match(r.stderr, /--shard/);
  r = run('--model', model, '--trials', '1', '--fault-targets', 'layers=nope');
  assert.equal(r.status, 1); assert.match(r.stderr, /no layer 'nope'/);
  fs.rmSync(dir, { recursive: true });
});

test('summary: merges shards, refuses mismatched headers, paired baseline', async () => {
  const { dir, model } = await setup('sum');
  const o = { ...base, model, dataDir: dir };
  await runCampaign({ ...o, out: path.join(dir, 'p0.jsonl'), shard: { index: 0, count: 2 } });
  await runCampaign({ ...o, out: path.join(dir, 'p1.jsonl'), shard: { index: 1, count: 2 } });
  const r = spawnSync(process.execPath, [CLI, 'summary', path.join(dir, 'p0.jsonl'), path.join(dir, 'p1.jsonl'), '--json'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const js = JSON.parse(r.stdout) as { trials: number; expected: number; clean: { accuracy: number }[]; summary: { rate: number; clean?: boolean; accuracy: { n: number; mean: number } }[] };
  assert.equal(js.trials, 24);
  assert.equal(js.expected, 24);
  assert.ok(js.summary.every((row) => (row.rate === 0 ? row.clean === true && row.accuracy.n === 1 && row.accuracy.mean === js.clean[0]!.accuracy : row.accuracy.n === 4)));
  assert.equal(js.summary.filter((row) => row.rate === 0).length, 3, 'the 0% rows come from the clean record');
  const text = spawnSync(process.execPath, [CLI, 'summary', path.join(dir, 'p0.jsonl'), path.join(dir, 'p1.jsonl')], { encoding: 'utf8' });
  assert.match(text.stdout, /24 of 24 trials; clean model \d+\.\d\d% \(the 0% rows\)/);
  assert.match(text.stdout, /\| all +\| bitflip +\| 0% +\| clean +\|/);
  await runCampaign({ ...o, seed: 9, out: path.join(dir, 'other.jsonl') });
  const bad = spawnSync(process.execPath, [CLI, 'summary', path.join(dir, 'p0.jsonl'), path.join(dir, 'other.jsonl')], { encoding: 'utf8' });
  assert.equal(bad.status, 1); assert.match(bad.stderr, /settings differ .*seed/);
  const paired = spawnSync(process.execPath, [CLI, 'summary', path.join(dir, 'p0.jsonl'), path.join(dir, 'p1.jsonl'), '--baseline', path.join(dir, 'p0.jsonl'), '--json'], { encoding: 'utf8' });
  assert.equal(paired.status, 0, paired.stderr);
  const pj = JSON.parse(paired.stdout) as { paired: { pairs: number; diff: { mean: number } }[] };
  assert.ok(pj.paired.every((p) => (p.pairs === 2 || (p.pairs === 1 && (p as unknown as { rate: number }).rate === 0)) && p.diff.mean === 0));
  assert.equal(pj.paired.filter((p) => (p as unknown as { rate: number }).rate === 0).length, 3, 'the 0% rows pair the clean records');
  fs.rmSync(dir, { recursive: true });
});

test('one writer per results file: a concurrent run is refused, a stale lock is taken over', async () => {
  const { dir, model } = await setup('lock');
  const out = path.join(dir, 'l.jsonl');
  // two runs at once on one file: whichever locks first runs, the other is refused
  const both = await Promise.allSettled([runCampaign({ ...base, model, out, dataDir: dir }), runCampaign({ ...base, model, out, dataDir: dir })]);
  assert.equal(both.filter((r) => r.status === 'fulfilled').length, 1);
  const refused = both.find((r) => r.status === 'rejected') as PromiseRejectedResult;
  assert.match(String(refused.reason), /being written by another campaign/);
  assert.equal(fs.existsSync(out + '.lock'), false, 'lock removed after the run');
  // a lock left by a process that no longer exists
  const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout;
  fs.writeFileSync(out + '.lock', dead);
  const again = await runCampaign({ ...base, model, out, dataDir: dir });
  assert.equal(again.ran, 0);
  assert.equal(readResults(out).records.length, 24);
  fs.rmSync(dir, { recursive: true });
});
