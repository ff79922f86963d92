// Regression tests of issue #11 for campaigns: memory flat in the trial count
// (jobs streamed lazily), AbortSignal honoured, counts beyond 32-bit trial
// indices refused, one option validator for CLI and library, results records
// checked against their header, output paths that are inputs or not files.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { runCampaign, validateCampaignOptions, type CampaignOptions } from '../../src/campaign/campaign';
import { campaignJobCount, campaignJobs, MAX_TRIALS } from '../../src/campaign/runner';
import { readResults } from '../../src/campaign/results';
import { parseRate } from '../../src/campaign/faults';
import { writeTinyModel } from '../helpers/tiny-model';
import { tmpDir, writeMnist } from '../data/fixtures';

const CLI = path.resolve(__dirname, '../../src/cli/main.js');

async function setup(tag: string) {
  const dir = tmpDir(tag);
  writeMnist(dir, 'test', 20, false);
  const model = path.join(dir, 'tiny.safetensors');
  await writeTinyModel(model);
  return { dir, model };
}

test('jobs are generated lazily: the first of 2^32 trials comes at once, counts are exact', () => {
  const s = { targets: ['all'], trials: MAX_TRIALS, faults: ['bitflip', 'sa0'] as ('bitflip' | 'sa0')[], rates: [0, 0.01, 0.02] };
  const it = campaignJobs(s, { index: 0, count: 1 });
  assert.deepEqual(it.next().value, { target: 'all', trial: 0, fault: 'bitflip', rate: 0 });
  assert.equal(campaignJobCount(s, { index: 0, count: 1 }), MAX_TRIALS * 6);
  // shard counts agree with the generator on a small case
  const small = { ...s, trials: 11 };
  for (const count of [1, 2, 3, 7, 11, 20]) {
    let sum = 0;
    for (let i = 0; i < count; i++) {
      const n = [...campaignJobs(small, { index: i, count })].length;
      assert.equal(n, campaignJobCount(small, { index: i, count }), `shard ${i}/${count}`);
      sum += n;
    }
    assert.equal(sum, 66);
  }
});

test('a campaign of 2^32 trials starts at once with flat memory and stops on abort', { timeout: 120_000 }, async () => {
  const { dir, model } = await setup('huge');
  const out = path.join(dir, 'huge.jsonl');
  const ac = new AbortController();
  const heap0 = process.memoryUsage().heapUsed;
  const t0 = Date.now();
  let first = -1, n = 0;
  await assert.rejects(runCampaign({
    model, out, dataDir: dir, faults: ['bitflip'], rates: [0.01], trials: MAX_TRIALS, limit: 5, quiet: true, signal: ac.signal,
    onTrial: () => { if (first < 0) first = Date.now() - t0; if (++n === 20) ac.abort(); },
  }), /campaign aborted/);
  assert.ok(first >= 0 && first < 30_000, `first trial after ${first} ms`);
  const grew = process.memoryUsage().heapUsed - heap0;
  assert.ok(grew < 64 * 2 ** 20, `heap grew by ${(grew / 2 ** 20).toFixed(1)} MiB`);
  const f = readResults(out);
  assert.ok(f.records.length >= 20, `${f.records.length} records written before the abort`);
  assert.equal(fs.existsSync(out + '.lock'), false, 'lock removed after the abort');
  // an already-aborted signal: nothing is written
  const out2 = path.join(dir, 'never.jsonl');
  await assert.rejects(runCampaign({ model, out: out2, dataDir: dir, faults: ['bitflip'], rates: [0], trials: 1, quiet: true, signal: AbortSignal.abort('stop') }), /campaign aborted \(stop\)/);
  assert.equal(fs.existsSync(out2), false);
  fs.rmSync(dir, { recursive: true });
});

test('library and CLI refuse the same options (trial counts past 2^32, unknown sampling, NaN, bad shards)', async () => {
  const { dir, model } = await setup('opts');
  const ok: CampaignOptions = { model, out: path.join(dir, 'o.jsonl'), faults: ['bitflip'], rates: [0.01], trials: 2 };
  const bad: [Partial<CampaignOptions> | Record<string, unknown>, RegExp][] = [
    [{ trials: 1e12 }, /trials must be an integer in \[1, 4294967296\]/],
    [{ trials: MAX_TRIALS + 1 }, /trials must be/],
    [{ trials: 2.5 }, /trials must be/],
    [{ sampling: 'poisson' }, /sampling must be one of exact, bernoulli/],
    [{ rateUnit: 'byte' }, /rateUnit must be one of bit, weight/],
    [{ sampling: 'bernoulli', rateUnit: 'weight' }, /bernoulli works with rateUnit bit/],
    [{ rates: [NaN] }, /rate NaN is not a number in \[0, 1\]/],
    [{ rates: [1e-320] }, /underflow/],
    [{ rates: [0.01, 0.01] }, /listed twice/],
    [{ faults: ['bitflip', 'bitflip'] }, /listed twice/],
    [{ shard: { index: 0, count: 1e20 } }, /shard must be/],
    [{ shard: { index: 2, count: 2 } }, /shard must be/],
    [{ targets: ['everything'] }, /unknown fault target/],
    [{ model: 5 }, /model must be the path/],
    [{ signal: {} }, /signal must be an AbortSignal/],
  ];
  for (const [patch, re] of bad) {
    assert.throws(() => validateCampaignOptions({ ...ok, ...patch } as CampaignOptions), re, JSON.stringify(patch));
    await assert.rejects(runCampaign({ ...ok, ...patch } as CampaignOptions), re);
  }
  assert.equal(fs.existsSync(ok.out), false, 'nothing written for refused options');
  assert.throws(() => validateCampaignOptions(null as unknown as CampaignOptions), /must be an object/);
  assert.throws(() => parseRate(5 as unknown as string), /parseRate expects a string/);
  assert.throws(() => parseRate('1e-400'), /underflows/);
  assert.throws(() => parseRate('1e-310'), /underflows/);
  assert.equal(parseRate('0e-400'), 0);
  const cli = (...a: string[]) => spawnSync(process.execPath, [CLI, 'inject', '--model', model, '--data-dir', dir, '--out', path.join(dir, 'c.jsonl'), '--trials', '2', ...a], { encoding: 'utf8' });
  for (const [args, re] of [
    [['--trials', '4294967297'], /--trials must be an integer in \[1, 4294967296\]/],
    [['--rates', '1e-400'], /underflows/],
    [['--rates', '1%,0.01'], /listed twice/],
    [['--faults', 'sa0,sa0'], /listed twice/],
    [['--shard', '0/99999999999999999999'], /--shard expects/],
    [['--sampling', 'bernoulli', '--rate-unit', 'weight'], /bernoulli works with rateUnit bit/],
  ] as [string[], RegExp][]) {
    const r = cli(...args);
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, re);
  }
  fs.rmSync(dir, { recursive: true });
});

test('results records are checked against their header on resume and in summary', async () => {
  const { dir, model } = await setup('records');
  const out = path.join(dir, 'r.jsonl');
  await runCampaign({ model, out, dataDir: dir, faults: ['bitflip'], rates: [0, 0.01], trials: 3, limit: 4, quiet: true });
  const lines = fs.readFileSync(out, 'utf8').trim().split('\n');
  // line 2 is the clean model's record; the trial records follow (rate 0 runs no trials)
  const first = lines.findIndex((l) => (JSON.parse(l) as { type: string }).type === 'trial');
  const rec = JSON.parse(lines[first]!) as Record<string, unknown>;
  const added = lines.length + 1; // the line number of a line appended below
  const variants: [string, Record<string, unknown> | string, RegExp][] = [
    ['trial past the count', { ...rec, trial: 3 }, /trial 3 is not an index in \[0, 3\)/],
    ['fault not in the header', { ...rec, fault: 'sa1' }, /fault "sa1" is not one of the header's fault types/],
    ['rate not in the header', { ...rec, rate: 0.5 }, /rate 0.5 is not one of the header's rates/],
    ['bare type', '{"type":"trial"}', new RegExp(`line ${added}: target undefined is not one of the header's targets`)],
    ['accuracy above 1', { ...rec, accuracy: 7 }, /accuracy 7 is not a number in \[0, 1\]/],
    ['a second, different record of one trial', { ...rec, accuracy: (rec.accuracy as number) === 0 ? 0.25 : 0 }, new RegExp(`two different records \\(lines ${first + 1} and ${added}\\)`)],
    ['not an object', 'null', /not a trial record/],
  ];
  for (const [what, v, re] of variants) {
    const f = path.join(dir, 'bad.jsonl');
    fs.writeFileSync(f, [...lines, typeof v === 'string' ? v : JSON.stringify(v)].join('\n') + '\n');
    assert.throws(() => readResults(f), re, what);
    const s = spawnSync(process.execPath, [CLI, 'summary', f], { encoding: 'utf8' });
    assert.equal(s.status, 1, what);
    assert.match(s.stderr, re, what);
    // resuming onto it is refused the same way
    await assert.rejects(runCampaign({ model, out: f, dataDir: dir, faults: ['bitflip'], rates: [0, 0.01], trials: 3, limit: 4, quiet: true }), re, what);
  }
  // the same record written twice counts once
  const dup = path.join(dir, 'dup.jsonl');
  fs.writeFileSync(dup, [...lines, lines[first]].join('\n') + '\n');
  assert.equal(readResults(dup).records.length, 3);
  const s = spawnSync(process.execPath, [CLI, 'summary', dup], { encoding: 'utf8' });
  assert.equal(s.status, 0, s.stderr);
  assert.match(s.stdout, /3 of 3 trials/);
  // a header whose settings are broken
  const h = JSON.parse(lines[0]!) as { settings: Record<string, unknown> };
  fs.writeFileSync(dup, JSON.stringify({ ...h, settings: { ...h.settings, rates: 'all' } }) + '\n');
  assert.throws(() => readResults(dup), /line 1 \(header\): settings.rates must list rates/);
  fs.rmSync(dir, { recursive: true });
});

test('outputs that are inputs or not regular files are refused before any work', async () => {
  const { dir, model } = await setup('paths');
  const before = fs.readFileSync(model);
  const run = (...a: string[]) => spawnSync(process.execPath, [CLI, ...a], { encoding: 'utf8' });
  // inject onto the model itself, through a symlink, through a hard link
  fs.symlinkSync(model, path.join(dir, 'sym.jsonl'));
  fs.linkSync(model, path.join(dir, 'hard.jsonl'));
  for (const out of [model, path.join(dir, 'sym.jsonl'), path.join(dir, 'hard.jsonl'), path.join(dir, '.', 'tiny.safetensors')]) {
    const r = run('inject', '--model', model, '--data-dir', dir, '--trials', '1', '--out', out);
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /is the same file as the input/);
  }
  const e = run('export', '--model', model, '--out', path.join(dir, 'hard.jsonl'));
  assert.equal(e.status, 2, e.stderr);
  assert.match(e.stderr, /same file as the input/);
  assert.deepEqual(fs.readFileSync(model), before, 'the model is untouched');
  const devnull = run('inject', '--model', model, '--data-dir', dir, '--trials', '1', '--out', '/dev/null');
  assert.equal(devnull.status, 2);
  assert.match(devnull.stderr, /not a regular file/);
  const folder = run('inject', '--model', model, '--data-dir', dir, '--trials', '1', '--out', dir);
  assert.equal(folder.status, 2);
  assert.match(folder.stderr, /not a regular file \(a folder\)/);
  // train --out onto an existing file needs --resume or --force (checked before loading any data)
  const ck = path.join(dir, 'run.safetensors');
  fs.writeFileSync(ck, 'existing');
  const t = run('train', '--out', ck, '--data-dir', dir);
  assert.equal(t.status, 2, t.stderr);
  assert.match(t.stderr, /already exists: continue that run with --resume, or overwrite it with --force/);
  assert.equal(fs.readFileSync(ck, 'utf8'), 'existing');
  const both = run('train', '--out', ck, '--resume', '--force');
  assert.equal(both.status, 2);
  assert.match(both.stderr, /give one of them/);
  fs.rmSync(dir, { recursive: true });
});
