// CLI output for other tools: summary --csv / --records-only, an empty --baseline
// pairing is an error, and --help (examples, required options marked, no options
// that mean nothing for the command).
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { runCampaign } from '../../src/campaign/campaign';
import { readResults } from '../../src/campaign/results';
import { writeTinyModel } from '../helpers/tiny-model';
import { tmpDir, writeMnist } from '../data/fixtures';

const CLI = path.resolve(__dirname, '../../src/cli/main.js');
const cli = (...args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });

test('summary --csv, --records-only (JSON lines or CSV), and an empty --baseline pairing', async () => {
  const dir = tmpDir('sum-csv');
  writeMnist(dir, 'test', 40, true);
  const model = path.join(dir, 'tiny.safetensors');
  await writeTinyModel(model);
  const a = path.join(dir, 'a.jsonl'), b = path.join(dir, 'b.jsonl');
  await runCampaign({ model, faults: ['bitflip', 'sa1'], rates: [0, 0.02], trials: 3, out: a, dataDir: dir });
  await runCampaign({ model, faults: ['sa0'], rates: [0, 0.02], trials: 3, out: b, dataDir: dir });

  const csv = cli('summary', a, '--csv');
  assert.equal(csv.status, 0, csv.stderr);
  const lines = csv.stdout.trim().split('\n');
  assert.equal(lines[0], 'target,fault,rate,source,trials,acc_mean,acc_std,acc_ci95_low,acc_ci95_high,acc_min,acc_max,sparsity_mean,faulty_cells,changed_codes_mean');
  assert.equal(lines.length, 1 + 4, 'a row per (fault, rate)');
  assert.match(lines[1]!, /^all,bitflip,0,clean,1,/);
  assert.match(lines[2]!, /^all,bitflip,0\.02,trials,3,0\.\d+/);

  const file = readResults(a);
  const rec = cli('summary', a, '--records-only');
  assert.equal(rec.status, 0, rec.stderr);
  const objs = rec.stdout.trim().split('\n').map((l) => JSON.parse(l) as { type: string });
  assert.equal(objs.length, file.records.length);
  assert.ok(objs.every((o) => o.type === 'trial'), 'trial records only: no header, no clean line');
  const rcsv = cli('summary', a, '--records-only', '--csv').stdout.trim().split('\n');
  assert.equal(rcsv[0], 'type,target,fault,rate,trial,accuracy,loss,sparsity,sparsityWeighted,faultyCells,changedCodes');
  assert.equal(rcsv.length, 1 + file.records.length);
  assert.match(fs.readFileSync(a, 'utf8').split('\n')[0]!, /"type":"header"/, 'the JSONL keeps its header');

  // no trial of A has a partner in B (different fault types): an error, not an empty table
  const empty = cli('summary', a, '--baseline', b);
  assert.equal(empty.status, 1);
  assert.match(empty.stderr, /no trial of .*a\.jsonl has a partner in .*b\.jsonl .*nothing to pair/);
  const paired = cli('summary', a, '--baseline', a, '--csv');
  assert.equal(paired.status, 0, paired.stderr);
  assert.match(paired.stdout.split('\n')[0]!, /^target,fault,rate,pairs,acc_a_mean,acc_b_mean,diff_mean,/);

  for (const bad of [['--json', '--csv'], ['--records-only', '--baseline', b], ['--records-only', '--json'], ['--threads', '2']]) {
    const r = cli('summary', a, ...bad);
    assert.equal(r.status, 2, `${bad.join(' ')}: ${r.stderr}`);
  }
  fs.rmSync(dir, { recursive: true, force: true });
});

test('--help: examples, required options marked first, --threads/--isa only where they apply', () => {
  const inj = cli('inject', '--help');
  assert.equal(inj.status, 0);
  const opts = inj.stdout.split('Options:\n')[1]!.split('\n\n')[0]!.split('\n');
  assert.deepEqual(opts.slice(0, 3).map((l) => /--(\S+)/.exec(l)![1]), ['model', 'trials', 'out']);
  assert.ok(opts.slice(0, 3).every((l) => l.includes('(required)')));
  assert.equal(opts.filter((l) => l.includes('(required)')).length, 3);
  assert.match(inj.stdout, /\nExamples:\n {2}flatenn inject /);
  assert.match(inj.stdout, /--threads/);
  for (const cmd of [['summary'], ['data', 'fetch'], ['data', 'info']]) {
    const h = cli(...cmd, '--help');
    assert.equal(h.status, 0);
    assert.doesNotMatch(h.stdout, /--threads|--isa/, `${cmd.join(' ')} --help`);
    assert.match(h.stdout, /Examples:/);
  }
  const tr = cli('train', '--help');
  assert.match(tr.stdout, /--out <file> +\(required\)/);
  assert.match(tr.stdout, /flatenn train --resume --epochs 30/);
});
