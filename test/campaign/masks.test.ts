// Replayable fault masks: inject --save-masks writes each trial's cells; --masks replays them (same
// records as the drawn campaign, shards split them, the file's hash is in the header); the README's
// numpy-only snippet (examples/apply_masks.py) applies a saved mask exactly as the engine does.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import * as fs from 'node:fs';
import { spawnSync } from 'node:child_process';
import { runCampaign } from '../../src/campaign/campaign';
import { readResults, mergeResults, SEMANTICS } from '../../src/campaign/results';
import { FaultSpace } from '../../src/campaign/faults';
import { readMasks, maskKey } from '../../src/campaign/masks';
import { readDeployed } from '../../src/deploy/format';
import { unpackLayers } from '../../src/engine/reference';
import { writeTinyModel } from '../helpers/tiny-model';
import { tmpDir, writeMnist } from '../data/fixtures';

const CLI = path.resolve(__dirname, '../../src/cli/main.js');
const ROOT = path.resolve(__dirname, '../../..');
const strip = (f: string) => readResults(f).records.map((r) => JSON.stringify(r)).sort();

test('save-masks then replay: identical trials; shards split the replay; the masks hash is in the header', async () => {
  const dir = tmpDir('masks');
  writeMnist(dir, 'test', 40, true);
  const model = path.join(dir, 'tiny.safetensors');
  await writeTinyModel(model, 11, { version: 2, padding: 'normalized' });
  const masks = path.join(dir, 'm.safetensors');
  const drawn = path.join(dir, 'drawn.jsonl');
  await runCampaign({ model, faults: ['bitflip', 'sa0', 'sa1'], rates: [0.01, 0.05], trials: 3, seed: 7, out: drawn, saveMasks: masks, dataDir: dir, quiet: true });
  const m = await readDeployed(model);
  const saved = await readMasks(masks, m.meta);
  assert.equal(saved.cells.size, 3 * 2 * 3);
  assert.deepEqual(saved.meta.faults, ['bitflip', 'sa0', 'sa1']);
  assert.equal(saved.cells.get(maskKey('sa0', 0.05, 2))!.length, Math.round(0.05 * m.meta.cells));
  // cells are those the campaign drew (common random numbers: the same for every fault type)
  const space = new FaultSpace(m.meta, { layers: null, bits: null }, 'bit');
  assert.deepEqual(Array.from(saved.cells.get(maskKey('bitflip', 0.01, 1))!), Array.from(space.order(7, 1, space.count(0.05)).subarray(0, space.count(0.01))));
  // replay, in two shards through the CLI
  const parts = [0, 1].map((i) => path.join(dir, `replay${i}.jsonl`));
  for (const [i, p] of parts.entries()) {
    const r = spawnSync(process.execPath, [CLI, 'inject', '--model', model, '--masks', masks, '--shard', `${i}/2`, '--out', p, '--data-dir', dir, '-q'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
  }
  const merged = mergeResults(parts.map((p) => ({ path: p, file: readResults(p) })));
  assert.equal(merged.records.length, 18);
  assert.equal(merged.settings.masksSha256, saved.sha256);
  assert.deepEqual(merged.records.map((r) => JSON.stringify(r)).sort(), strip(drawn));
  // options that the file decides are refused with --masks
  const bad = spawnSync(process.execPath, [CLI, 'inject', '--model', model, '--masks', masks, '--trials', '5', '--out', path.join(dir, 'x.jsonl'), '--data-dir', dir], { encoding: 'utf8' });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /--masks replays the file's faults, rates and trials: drop --trials/);
  // a masks file of another layout is refused
  const other = path.join(dir, 'other.safetensors');
  await writeTinyModel(other, 3, { version: 2, channels: 3 });
  await assert.rejects(readMasks(masks, (await readDeployed(other)).meta), /layout/);
  fs.rmSync(dir, { recursive: true });
});

test("the README's numpy snippet applies a saved mask exactly as the engine does", async (t) => {
  const py = '/usr/bin/python3';
  if (spawnSync(py, ['-c', 'import numpy'], { encoding: 'utf8' }).status !== 0) {
    if (process.env.CI === 'true') assert.fail('python3 with numpy is needed (scripts/setup.sh installs python3-numpy)');
    t.skip('python3 numpy missing');
    return;
  }
  const snippet = fs.readFileSync(path.join(ROOT, 'examples/apply_masks.py'), 'utf8');
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const fn = snippet.slice(snippet.indexOf('def apply_mask'), snippet.indexOf('\n\n\ndef codes_of_deployed'));
  assert.ok(fn.length > 200 && readme.includes(fn), 'README shows apply_mask of examples/apply_masks.py verbatim');
  const dir = tmpDir('masks-py');
  writeMnist(dir, 'test', 20, true);
  const model = path.join(dir, 'tiny.safetensors');
  await writeTinyModel(model, 4, { version: 2 });
  const masks = path.join(dir, 'm.safetensors');
  await runCampaign({ model, faults: ['bitflip', 'sa0', 'sa1'], rates: [0.02, 0.2], trials: 2, seed: 3, out: path.join(dir, 'r.jsonl'), saveMasks: masks, dataDir: dir, quiet: true });
  const m = await readDeployed(model);
  const saved = await readMasks(masks, m.meta);
  const space = new FaultSpace(m.meta, { layers: null, bits: null }, 'bit');
  for (const fault of ['bitflip', 'sa0', 'sa1'] as const) {
    const key = maskKey(fault, 0.2, 1);
    const r = spawnSync(py, [path.join(ROOT, 'examples/apply_masks.py'), masks, model, key], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const got = JSON.parse(r.stdout) as Record<string, number[]>;
    const faulty = new Uint8Array(m.memory.length);
    space.apply(m.memory, saved.cells.get(key)!, fault, faulty, new Uint8Array(m.memory.length));
    const want = unpackLayers(m, faulty);
    m.meta.layers.forEach((l, i) => assert.deepEqual(got[l.name], Array.from(want[i]!), `${fault} ${l.name}`));
  }
  fs.rmSync(dir, { recursive: true });
});

test('results of an older semantics version (version 1: written before DESIGN §1 changed) are neither resumed nor paired with the current one', async () => {
  const dir = tmpDir('semver');
  writeMnist(dir, 'test', 20, true);
  const model = path.join(dir, 'tiny.safetensors');
  await writeTinyModel(model, 2, { version: 2 });
  const out = path.join(dir, 'r.jsonl');
  const opts = { model, faults: ['bitflip'] as 'bitflip'[], rates: [0.01], trials: 2, out, dataDir: dir, quiet: true };
  await runCampaign(opts);
  assert.equal(readResults(out).header.settings.semantics, SEMANTICS);
  // the same file as an older build wrote it: no semantics field
  const lines = fs.readFileSync(out, 'utf8').trim().split('\n');
  const h = JSON.parse(lines[0]!) as { settings: Record<string, unknown> };
  delete h.settings.semantics;
  const old = path.join(dir, 'old.jsonl');
  fs.writeFileSync(old, [JSON.stringify(h), lines[1]].join('\n') + '\n');
  assert.equal(readResults(old).header.settings.semantics, 1);
  await assert.rejects(runCampaign({ ...opts, out: old }), new RegExp(`semantics version 1 vs ${SEMANTICS}`));
  const r = spawnSync(process.execPath, [CLI, 'summary', out, '--baseline', old], { encoding: 'utf8' });
  assert.equal(r.status, 1);
  assert.match(r.stderr, new RegExp(`semantics version ${SEMANTICS} vs 1`));
  assert.throws(() => mergeResults([{ path: out, file: readResults(out) }, { path: old, file: readResults(old) }]), new RegExp(`semantics version ${SEMANTICS} vs 1`));
  fs.rmSync(dir, { recursive: true });
});
