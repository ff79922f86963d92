// The scheduler recipes under examples/: the Kubernetes Indexed Job manifest is parsed and checked, and its
// container command is run once per completion index (as the pods would); the Slurm array script is run once
// per array task id (an array that does not start at 0). Either way the parts, merged by `flatenn summary`,
// must be exactly the campaign a single local run gives.
import { before, after, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { parseAllDocuments } from 'yaml';
import { runCampaign } from '../../src/campaign/campaign';
import { readResults, trialKey } from '../../src/campaign/results';
import { writeTinyModel } from '../helpers/tiny-model';
import { tmpDir, writeMnist } from '../data/fixtures';
import { CLI } from './helpers';

const ROOT = path.resolve(__dirname, '../../..');
const MANIFEST = path.join(ROOT, 'examples/kubernetes/campaign-indexed-job.yaml');
const SUMMARY_MANIFEST = path.join(ROOT, 'examples/kubernetes/campaign-summary-job.yaml');
const SLURM = path.join(ROOT, 'examples/slurm/campaign-array.sh');
const TRIALS = 5;

let dir = '', data = '', model = '', bin = '', localSummary: unknown;

interface Container { command: string[]; args: string[]; env: { name: string; value: string }[] }

before(async () => {
  dir = tmpDir('recipes');
  data = path.join(dir, 'data');
  writeMnist(data, 'test', 60, true);
  model = path.join(dir, 'tiny.safetensors');
  await writeTinyModel(model);
  // `flatenn` on PATH, as in the images and on the cluster nodes
  bin = path.join(dir, 'bin');
  fs.mkdirSync(bin);
  fs.writeFileSync(path.join(bin, 'flatenn'), `#!/bin/sh\nexec "${process.execPath}" "${CLI}" "$@"\n`, { mode: 0o755 });
  const ref = path.join(dir, 'local.jsonl');
  await runCampaign({ model, faults: ['bitflip', 'sa0', 'sa1'], rates: [0, 0.01, 0.02, 0.03, 0.04, 0.05], trials: TRIALS, out: ref, dataDir: data, quiet: true });
  localSummary = summaryJson([ref]);
});

after(() => { if (dir) fs.rmSync(dir, { recursive: true, force: true }); });

function summaryJson(files: string[]): { trials: number; expected: number; summary: unknown } {
  const r = spawnSync(process.execPath, [CLI, 'summary', ...files, '--json'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const j = JSON.parse(r.stdout) as { trials: number; expected: number; summary: unknown };
  return { trials: j.trials, expected: j.expected, summary: j.summary };
}

function checkParts(outDir: string, n: number): void {
  const parts = Array.from({ length: n }, (_, i) => path.join(outDir, `part${i}.jsonl`));
  const keys: string[] = [];
  parts.forEach((p, i) => {
    const f = readResults(p);
    assert.deepEqual(f.header.shard, { index: i, count: n }, `${p} holds share ${i}/${n}`);
    for (const r of f.records) { assert.equal(r.trial % n, i); keys.push(trialKey(r)); }
  });
  assert.equal(new Set(keys).size, keys.length, 'no trial in two parts');
  assert.deepEqual(summaryJson(parts), localSummary, 'the merged parts equal a local run');
}

test('Kubernetes Indexed Job manifest: valid shape, and completion index k runs share k/N', () => {
  const docs = parseAllDocuments(fs.readFileSync(MANIFEST, 'utf8'));
  assert.equal(docs.length, 1);
  assert.deepEqual(docs[0]!.errors, []);
  const job = docs[0]!.toJS() as { apiVersion: string; kind: string; spec: { completionMode: string; completions: number; parallelism: number; template: { spec: { restartPolicy: string; containers: Container[] } } } };
  assert.equal(job.apiVersion, 'batch/v1');
  assert.equal(job.kind, 'Job');
  assert.equal(job.spec.completionMode, 'Indexed');
  assert.equal(job.spec.template.spec.restartPolicy, 'Never');
  const c = job.spec.template.spec.containers[0]!;
  const env = Object.fromEntries(c.env.map((e) => [e.name, e.value]));
  const n = Number(env.SHARDS);
  assert.ok(Number.isInteger(n) && n >= 1, 'SHARDS is a count');
  assert.equal(job.spec.completions, n, 'completions == SHARDS');
  assert.equal(job.spec.parallelism, n, 'parallelism == SHARDS');
  assert.deepEqual(c.command, ['/bin/sh', '-c']);
  assert.match(c.args[0]!, /--shard "\$JOB_COMPLETION_INDEX\/\$SHARDS"/);
  const summary = parseAllDocuments(fs.readFileSync(SUMMARY_MANIFEST, 'utf8'))[0]!.toJS() as { spec: { template: { spec: { containers: Container[] } } } };
  assert.match(summary.spec.template.spec.containers[0]!.args[0]!, /^flatenn summary \/results\/part\*\.jsonl$/);
  // run each pod's command as Kubernetes would (JOB_COMPLETION_INDEX set per pod)
  const outDir = path.join(dir, 'k8s');
  fs.mkdirSync(outDir);
  for (let k = 0; k < n; k++) {
    const r = spawnSync(c.command[0]!, [...c.command.slice(1), c.args[0]!], {
      encoding: 'utf8',
      env: { ...process.env, ...env, MODEL: model, OUT_DIR: outDir, TRIALS: String(TRIALS), THREADS: '1', DATA_DIR: data, JOB_COMPLETION_INDEX: String(k), PATH: `${bin}:${process.env.PATH}` },
    });
    assert.equal(r.status, 0, r.stderr);
  }
  checkParts(outDir, n);
});

test('Slurm array script: task ids 3..5 of an array run shares 0/3..2/3', () => {
  const outDir = path.join(dir, 'slurm');
  for (let id = 3; id <= 5; id++) {
    const r = spawnSync('bash', [SLURM], {
      encoding: 'utf8',
      env: { ...process.env, MODEL: model, OUT_DIR: outDir, TRIALS: String(TRIALS), DATA_DIR: data, SLURM_ARRAY_TASK_ID: String(id), SLURM_ARRAY_TASK_MIN: '3', SLURM_ARRAY_TASK_MAX: '5', SLURM_ARRAY_TASK_COUNT: '3', SLURM_CPUS_PER_TASK: '1', PATH: `${bin}:${process.env.PATH}` },
    });
    assert.equal(r.status, 0, r.stderr);
  }
  checkParts(outDir, 3);
  const r = spawnSync('bash', [SLURM], { encoding: 'utf8', env: { ...process.env, MODEL: model } });
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /run this script with sbatch --array/);
});
