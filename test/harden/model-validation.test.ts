// Regression tests of issue #11, defects 6 and 9: deployed models (versions 1
// and 2) and checkpoints are validated completely on load, with one message
// naming the file, the tensor / layer / node and the rule; a negative output
// scale (BatchNorm with gamma < 0) and a collapsed activation range (r = 0 in a
// checkpoint) stay valid; export never writes a file that eval refuses.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { deployedFromFile } from '../../src/deploy/format';
import { Engine } from '../../src/engine/engine';
import { decodeSafetensors, encodeSafetensors, type SafetensorsFile, type Tensor } from '../../src/io/safetensors';
import { loadCheckpoint } from '../../src/train/checkpoint';
import { evaluate } from '../../src/train/trainer';
import { loadDataset } from '../../src/data/dataset';
import { defaultConfig } from '../../src/train/config';
import { trainModel } from '../../src/train/run';
import { writeTinyModel } from '../helpers/tiny-model';
import { tmpDir, writeMnist } from '../data/fixtures';

const CLI = path.resolve(__dirname, '../../src/cli/main.js');
type Meta = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

function variant(file: SafetensorsFile, edit: (meta: Meta, t: Record<string, Tensor>) => void): SafetensorsFile {
  const meta = JSON.parse(file.metadata.flatenn!) as Meta;
  const t: Record<string, Tensor> = {};
  for (const [k, v] of Object.entries(file.tensors)) t[k] = { ...v, shape: v.shape.slice(), data: v.data.slice() } as Tensor;
  edit(meta, t);
  return decodeSafetensors(encodeSafetensors(t, { flatenn: JSON.stringify(meta) }));
}

const f32 = (t: Tensor) => t.data as Float32Array;

test('deployed models v1 and v2: every invalid value refused with the file, the place and the rule', async () => {
  const dir = tmpDir('dval');
  for (const version of [1, 2] as const) {
    const p = path.join(dir, `tiny${version}.safetensors`);
    await writeTinyModel(p, 11, { version });
    const file = decodeSafetensors(fs.readFileSync(p), p);
    const ok = deployedFromFile(file, p, '');
    const cases: [string, (m: Meta, t: Record<string, Tensor>) => void, RegExp][] = [
      ['out_scale NaN', (_, t) => { f32(t['conv.out_scale']!)[1] = NaN; }, /tensor conv\.out_scale\[1\] = NaN: an output scale must be finite and non-zero/],
      ['out_scale Inf', (_, t) => { f32(t['fc.out_scale']!)[0] = Infinity; }, /tensor fc\.out_scale\[0\] = Infinity/],
      ['out_scale 0', (_, t) => { f32(t['fc.out_scale']!)[9] = 0; }, /tensor fc\.out_scale\[9\] = 0: an output scale must be finite and non-zero/],
      ['out_bias -Inf', (_, t) => { f32(t['fc.out_bias']!)[2] = -Infinity; }, /tensor fc\.out_bias\[2\] = -Infinity: an output bias must be finite/],
      ['out_bias NaN', (_, t) => { f32(t['conv.out_bias']!)[0] = NaN; }, /tensor conv\.out_bias\[0\] = NaN/],
      ['numClasses vs last layer', (m) => { m.numClasses = 11; m.topology.numClasses = 11; }, /output node 5 gives \[10\] values per image, not numClasses \(11\)/],
      ['numClasses 2^53', (m) => { m.topology.numClasses = 2 ** 53; }, /topology\.numClasses 9007199254740992 differs from numClasses 10/],
      ['layout shape vs topology (same count)', (m) => { m.layers[0].shape = [4, 1, 25, 1]; }, /layer 'conv': layout shape \[4, 1, 25, 1\] disagrees with the topology's \[4, 1, 5, 5\]/],
      ['bias: false with a bias', (m) => { m.topology.nodes[5].bias = false; }, /tensor fc\.out_bias\[0\] = .*layer 'fc' has bias: false and no BatchNorm folded into it/],
      ['negative std', (m) => { m.input.std = -90; }, /input\.std: -90 is not a positive finite number/],
      ['mean count', (m) => { m.input.mean = [1, 2]; }, /input\.mean must hold one number per channel \(1\)/],
      ['act.range 0', (_, t) => { f32(t['act.range']!)[0] = 0; }, /tensor act\.range\[0\] = 0: a ReLU site's range must be a positive finite number/],
      ['act.range denormal', (_, t) => { f32(t['act.range']!)[0] = 1e-40; }, /act\.range\[0\] = .*below the smallest normal float32/],
      ['unknown dataset', (m) => { m.dataset = 'imagenet'; }, /dataset must be one of fashion-mnist, cifar10, got 'imagenet'/],
      ['metadata null', (m) => { for (const k of Object.keys(m)) delete m[k]; Object.assign(m, { __null: true }); }, /format 'undefined' is not a deployed model/],
      ['unknown op', (m) => { m.topology.nodes[3].op = 'softmax'; }, /topology node 3 \(softmax\): unknown op 'softmax'/],
      ['null node', (m) => { m.topology.nodes[2] = null; }, /topology node 2 is null, not an object/],
      ['non-array add inputs', (m) => { m.topology.nodes[4] = { op: 'add', id: 4, inputs: 3 }; }, /topology node 4 \(add\): inputs must be an array of two node ids, got 3/],
      ['kernel inconsistent with the layout', (m) => { m.topology.nodes[1].kernel = 3; m.topology.nodes[1].pad = 1; }, /layer 'conv': layout shape \[4, 1, 5, 5\] disagrees with the topology's \[4, 1, 3, 3\]/],
      ['stride 0', (m) => { m.topology.nodes[1].stride = 0; }, /topology node 1 \(conv\): stride must be an integer in \[1, 64\], got 0/],
      ['negative pad', (m) => { m.topology.nodes[1].pad = -1; }, /topology node 1 \(conv\): pad must be an integer in \[0, kernel\/2\]/],
      ['pool larger than its input', (m) => { m.topology.nodes[3].kernel = 64; }, /topology node 3 \(maxpool\): output shape .* is empty/],
      ['version as a string', (m) => { m.version = String(version); }, new RegExp(`deployed-model version "${version}" is not supported`)],
      ['huge input', (m) => { m.input.height = 1e9; m.topology.nodes[0].height = 1e9; }, /input\.height must be an integer in \[1, 4096\]/],
      ['cells off by one', (m) => { m.cells += 1; }, /cells 8241 disagrees with the layers, which hold 8240 cells/],
    ];
    for (const [what, edit, re] of cases) {
      assert.throws(() => deployedFromFile(variant(file, edit), p, ''), (e: Error) => re.test(e.message) && e.message.startsWith(p + ':'), `v${version} ${what}: ${(() => { try { deployedFromFile(variant(file, edit), p, ''); return 'accepted'; } catch (e) { return (e as Error).message; } })()}`);
    }
    for (const [raw, re] of [['null', /the 'flatenn' metadata is null, not an object/], ['[1]', /metadata is an array/], ['{"format"', /the 'flatenn' metadata is not valid JSON/]] as [string, RegExp][]) {
      const f = decodeSafetensors(encodeSafetensors(file.tensors, { flatenn: raw }));
      assert.throws(() => deployedFromFile(f, p, ''), (e: Error) => re.test(e.message) && e.message.startsWith(p + ':'), raw);
    }
    // A negative scale is valid (BatchNorm with gamma < 0 folds into one): it loads and both engines agree.
    const neg = deployedFromFile(variant(file, (_, t) => { const s = f32(t['fc.out_scale']!); for (let i = 0; i < s.length; i += 2) s[i] = -s[i]!; }), p, '');
    const images = new Uint8Array(6 * 784).map((_, i) => (i * 29) & 255), labels = Uint8Array.of(0, 1, 2, 3, 4, 5);
    const a = new Engine(neg).evaluateSync({ images, labels }), b = new Engine(neg, { backend: 'reference' }).evaluateSync({ images, labels });
    assert.deepEqual(Array.from(a.predictions), Array.from(b.predictions));
    const c = new Engine(ok).evaluateSync({ images, labels });
    assert.notDeepEqual(Array.from(a.predictions), Array.from(c.predictions), 'the negative scale is applied');
  }
  fs.rmSync(dir, { recursive: true });
});

test('checkpoints: act.range NaN/Inf/negative refused; r = 0 is a collapsed site, distinct from never observed; export writes only loadable models', async () => {
  const dir = tmpDir('ckval');
  writeMnist(dir, 'train', 96, false);
  writeMnist(dir, 'test', 8, false);
  const ck = path.join(dir, 'run.safetensors');
  await trainModel({ ...defaultConfig('lenet5'), epochs: 1, limitTrain: 64, valSize: 16, batchSize: 32 }, { out: ck, quiet: true, dataDir: dir, testAtEnd: false });
  const file = decodeSafetensors(fs.readFileSync(ck), ck);
  const bad = path.join(dir, 'bad.safetensors');
  const write = (edit: (m: Meta, t: Record<string, Tensor>) => void) => fs.writeFileSync(bad, encodeSafetensors(variant(file, edit).tensors, variant(file, edit).metadata));
  for (const [v, re] of [[NaN, /act\.range\[1\] = NaN: an activation range must be finite and >= 0/], [Infinity, /act\.range\[1\] = Infinity/], [-1, /act\.range\[1\] = -1/], [1e-40, /below the smallest normal float32/]] as [number, RegExp][]) {
    write((_, t) => { f32(t['act.range']!)[1] = v; });
    await assert.rejects(loadCheckpoint(bad), (e: Error) => re.test(e.message) && e.message.startsWith(bad), String(v));
    const ev = spawnSync(process.execPath, [CLI, 'eval', '--model', bad, '--data-dir', dir], { encoding: 'utf8' });
    assert.equal(ev.status, 1, ev.stderr);
    assert.match(ev.stderr, re);
  }
  write((_, t) => { f32(t['conv1.weight']!)[3] = NaN; });
  await assert.rejects(loadCheckpoint(bad), /tensor conv1\.weight\[3\] = NaN: weights must be finite/);
  // r = 0: a collapsed site, every code 0 there; it loads and evaluates, and export says why it cannot deploy it
  write((_, t) => { f32(t['act.range']!)[3] = 0; });
  const collapsed = await loadCheckpoint(bad);
  const ds = await loadDataset('fashion-mnist', 'test', { dataDir: dir });
  const r = evaluate(collapsed.model, ds);
  assert.equal(r.perLayerSparsity[3], 1, 'every activation of the collapsed site is 0');
  const out = path.join(dir, 'dep.safetensors');
  let ex = spawnSync(process.execPath, [CLI, 'export', '--model', bad, '--out', out], { encoding: 'utf8' });
  assert.equal(ex.status, 1);
  assert.match(ex.stderr, /ReLU site 3 collapsed \(activation range 0/);
  assert.equal(fs.existsSync(out), false);
  // never observed: a different message
  write((_, t) => { (t['act.range_initialized']!.data as Uint8Array)[2] = 0; });
  ex = spawnSync(process.execPath, [CLI, 'export', '--model', bad, '--out', out], { encoding: 'utf8' });
  assert.equal(ex.status, 1);
  assert.match(ex.stderr, /site 2 was never observed/);
  write((_, t) => { (t['act.range_initialized']!.data as Uint8Array)[2] = 7; });
  await assert.rejects(loadCheckpoint(bad), /act\.range_initialized\[2\] = 7: must be 0 \(never observed\) or 1/);
  // the valid checkpoint exports to a model that loads
  ex = spawnSync(process.execPath, [CLI, 'export', '--model', ck, '--out', out], { encoding: 'utf8' });
  assert.equal(ex.status, 0, ex.stderr);
  const ev = spawnSync(process.execPath, [CLI, 'eval', '--model', out, '--data-dir', dir], { encoding: 'utf8' });
  assert.equal(ev.status, 0, ev.stderr);
  fs.rmSync(dir, { recursive: true });
});
