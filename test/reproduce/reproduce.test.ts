// flatenn reproduce on a tiny budget: killed with SIGKILL part-way, re-run to
// completion (finished stages skipped, no duplicated trials), a third run skips
// everything, other settings in the same folder are refused; collapsed lambda
// and rho are ineligible and reported, never selected.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { readResults, trialKey } from '../../src/campaign/results';
import type { StudyFile } from '../../src/report/data';
import { DEBIAN_FASHION_MNIST } from '../../src/data/dirs';
import { tmpDir } from '../data/fixtures';
import { baseBudget, checkBudget, defaultSeeds, FULL_BUDGET } from '../../src/reproduce/pipeline';

const CLI = path.resolve(__dirname, '../../src/cli/main.js');
const haveData = fs.existsSync(path.join(DEBIAN_FASHION_MNIST, 't10k-images-idx3-ubyte.gz'));
const skip = !haveData && process.env.CI !== 'true' ? 'FashionMNIST not installed (apt-get install dataset-fashion-mnist)' : false;

// lambda 1 kills every activation and rho 50 leaves SAQ at chance: both must be flagged and ineligible.
const TINY = {
  epochs: 1, limitTrain: 2000, batchSize: 32, lambdas: [3e-5, 1], rhos: [0.02, 50], rates: [0, 0.05], trials: 2, weightTrials: 2, byTrials: 1,
  testImages: 300, landscapeImages: 200, landscapePoints1d: 5, landscapeDirections: 1, landscapePoints2d: 3,
};

function runCli(args: string[]) {
  return spawnSync(process.execPath, [CLI, 'reproduce', 'lenet5', ...args, '--threads', '2'], { encoding: 'utf8' });
}

test('reproduce: resume after kill -9, stages skipped on re-run, other settings refused, collapsed settings ineligible', { skip, timeout: 240_000 }, async () => {
  const dir = tmpDir('repro');
  const out = path.join(dir, 'run');
  const budget = path.join(dir, 'budget.json');
  fs.writeFileSync(budget, JSON.stringify(TINY));
  const args = ['--seeds', '1', '--budget', budget, '--out', out, '-q'];

  // 1. start, and kill -9 once some stages are done (training finished, campaigns under way)
  const stages = path.join(out, 'stages');
  const child = spawn(process.execPath, [CLI, 'reproduce', 'lenet5', ...args, '--threads', '2'], { stdio: 'ignore' });
  const exited = new Promise<void>((res) => child.on('exit', () => res()));
  let killedAt = -1;
  for (let i = 0; i < 1200 && child.exitCode === null; i++) {
    await new Promise((r) => setTimeout(r, 50));
    const n = fs.existsSync(stages) ? fs.readdirSync(stages).filter((f) => f.endsWith('.json')).length : 0;
    if (n >= 9) { child.kill('SIGKILL'); killedAt = n; break; }
  }
  await exited;
  assert.ok(killedAt >= 9, 'the run was killed part-way');
  assert.equal(fs.existsSync(path.join(out, 'report', 'index.html')), false, 'killed before the report');

  // 2. the same command resumes: finished stages are skipped
  const r2 = runCli(args);
  assert.equal(r2.status, 0, r2.stderr);
  const m = /(\d+) stages run, (\d+) already done/.exec(r2.stdout)!;
  assert.ok(Number(m[2]) >= killedAt, `${m[2]} stages skipped, ${killedAt} were done`);
  assert.match(r2.stdout, /report .*report\/index\.html/);
  for (const f of fs.readdirSync(path.join(out, 'campaigns'))) {
    const res = readResults(path.join(out, 'campaigns', f));
    const keys = res.records.map(trialKey);
    assert.equal(new Set(keys).size, keys.length, `${f}: no trial twice`);
    const s = res.header.settings;
    // rate 0 is not run as trials: one clean record per target stands for it
    assert.equal(res.records.length, s.targets.length * s.faults.length * s.rates.filter((r) => r !== 0).length * s.trials, `${f}: every trial`);
    assert.equal(res.clean.length, s.targets.length, `${f}: one clean record per target`);
    assert.equal(res.tornTail, false);
  }
  const study = JSON.parse(fs.readFileSync(path.join(out, 'study.json'), 'utf8')) as StudyFile;
  assert.equal(study.lambda.chosen, 3e-5);
  assert.deepEqual(study.lambda.ineligible.map((x) => x.value), [1]);
  assert.equal(study.rho.chosen, 0.02);
  assert.deepEqual(study.rho.ineligible.map((x) => x.value), [50]);
  assert.ok(study.runs.filter((r) => r.collapsed).length >= 2);
  assert.ok(study.runs.filter((r) => r.role === 'final').every((r) => !r.collapsed), 'no collapsed run among the final models');
  // every model group has its final run, also where one run serves two groups (1 epoch: the control is the standard run)
  assert.deepEqual([...new Set(study.runs.filter((r) => r.role === 'final').map((r) => r.group))].sort(), ['as', 'control', 'control-as', 'saq', 'saq-as', 'standard']);
  for (const f of ['claims.md', 'gains.md', 'models.md']) assert.ok(fs.existsSync(path.join(out, 'report', f)), f);
  assert.match(fs.readFileSync(path.join(out, 'report', 'models.md'), 'utf8'), /^\| standard \| 1 \| 1 \|/m);
  const deployed = fs.readdirSync(path.join(out, 'deployed')).sort();
  assert.deepEqual(deployed, ['as-s1.safetensors', 'control-as-s1.safetensors', 'control-s1.safetensors', 'saq-as-s1.safetensors', 'saq-s1.safetensors', 'standard-s1.safetensors']);
  const html = fs.readFileSync(path.join(out, 'report', 'index.html'), 'utf8');
  assert.match(html, /ineligible: 50 \(SAQ collapsed on seed 1/);
  for (const id of ['accuracy-bit', 'accuracy-weight', 'sparsity', 'landscape-1d', 'landscape-2d', 'by-layer', 'by-bit']) assert.ok(fs.existsSync(path.join(out, 'report', `${id}.png`)), id);

  // 3. a third run does nothing
  const r3 = runCli(args);
  assert.equal(r3.status, 0, r3.stderr);
  assert.match(r3.stdout, /^0 stages run, \d+ already done/);

  // 4. other settings in the same folder are refused with a clear error
  fs.writeFileSync(budget, JSON.stringify({ ...TINY, trials: 3 }));
  const r4 = runCli(args);
  assert.equal(r4.status, 1);
  assert.match(r4.stderr, /was run with other settings/);
  fs.rmSync(dir, { recursive: true });
});

test('reproduce resnet18: its own budgets (width, grid width, rates 0.5-3%, one seed) and their checks', () => {
  const full = baseBudget('resnet18', false), quick = baseBudget('resnet18', true);
  assert.equal(full.width, 1);
  assert.equal(full.gridWidth, 0.25);
  assert.equal(full.epochs, 60);
  assert.deepEqual(full.rates.filter((r) => r > 0), [0.005, 0.01, 0.015, 0.02, 0.03]);
  assert.ok(quick.width < 1 && quick.limitTrain > 0 && quick.testImages > 0);
  assert.equal(defaultSeeds('resnet18', false), 1);
  assert.equal(defaultSeeds('lenet5', false), 3);
  assert.deepEqual(baseBudget('lenet5', false), FULL_BUDGET);
  assert.throws(() => checkBudget({ ...FULL_BUDGET, width: 0.5 }, 'lenet5'), /width must be 1 for lenet5/);
  assert.throws(() => checkBudget({ ...full, gridWidth: 0 }, 'resnet18'), /gridWidth must be in \(0, 4\] for resnet18/);
  checkBudget(full, 'resnet18');
  checkBudget(quick, 'resnet18');
  const h = spawnSync(process.execPath, [CLI, 'reproduce', '--help'], { encoding: 'utf8' });
  assert.match(h.stdout, /reproduce resnet18 --quick/);
  const dir = tmpDir('repro-r18');
  const bad = path.join(dir, 'b.json');
  fs.writeFileSync(bad, '{"width":-1}');
  const b = spawnSync(process.execPath, [CLI, 'reproduce', 'resnet18', '--budget', bad, '--out', path.join(dir, 'o')], { encoding: 'utf8' });
  assert.equal(b.status, 2, b.stderr);
  assert.match(b.stderr, /budget width must be in \(0, 4\]/);
  fs.rmSync(dir, { recursive: true });
});

test('reproduce: usage errors exit 2', () => {
  assert.equal(spawnSync(process.execPath, [CLI, 'reproduce'], { encoding: 'utf8' }).status, 2);
  const r = spawnSync(process.execPath, [CLI, 'reproduce', 'vgg'], { encoding: 'utf8' });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /unknown architecture 'vgg'/);
  const h = spawnSync(process.execPath, [CLI, 'reproduce', '--help'], { encoding: 'utf8' });
  assert.equal(h.status, 0);
  assert.match(h.stdout, /--quick/);
  const dir = tmpDir('repro-bad');
  const bad = path.join(dir, 'b.json');
  for (const [body, msg] of [['{"lambdas":"x"}', /lambdas must be a non-empty list/], ['{"trials":0}', /trials must be an integer >= 1/], ['{"nope":1}', /unknown field 'nope'/], ['{"faults":["flip"]}', /faults must be/]] as const) {
    fs.writeFileSync(bad, body);
    const b = spawnSync(process.execPath, [CLI, 'reproduce', 'lenet5', '--budget', bad, '--out', path.join(dir, 'o')], { encoding: 'utf8' });
    assert.equal(b.status, 2, b.stderr);
    assert.match(b.stderr, msg);
  }
  fs.rmSync(dir, { recursive: true });
});
