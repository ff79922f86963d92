// Loss landscape (DESIGN §4): filter normalisation, zero bias/BN directions,
// the same directions for models of one architecture, the deployed-model
// refusal, and the curve/sharpness bookkeeping on a tiny trained model.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { GraphBuilder } from '../../src/nn/graph';
import { Model } from '../../src/nn/model';
import { createModel, evaluate } from '../../src/train/trainer';
import { defaultConfig } from '../../src/train/config';
import { trainModel } from '../../src/train/run';
import { loadDataset } from '../../src/data/dataset';
import { DEBIAN_FASHION_MNIST } from '../../src/data/dirs';
import { computeLandscape, landscapeDirection, loadLandscapeModel, rawDirection, readLandscape, writeLandscape } from '../../src/landscape/landscape';
import { writeTinyModel } from '../helpers/tiny-model';
import { tmpDir } from '../data/fixtures';
import { getThreads, setThreads } from '../../src/native/info';

const haveData = fs.existsSync(path.join(DEBIAN_FASHION_MNIST, 't10k-images-idx3-ubyte.gz'));
const skip = !haveData && process.env.CI !== 'true' ? 'FashionMNIST not installed (apt-get install dataset-fashion-mnist)' : false;

/** conv (no bias) -> BN -> ReLU -> flatten -> linear (bias): every parameter kind. */
function bnModel(seed: number): Model {
  const g = new GraphBuilder('bn-tiny');
  let x = g.input(1, 8, 8);
  x = g.relu(g.bn(g.conv(x, 'conv', 1, 3, 3, 1, 1, false), 'bn', 3));
  x = g.linear(g.flatten(x), 'fc', 3 * 64, 5, true);
  const m = new Model(g.build(x, 5), { weightBits: 4, actBits: 4, perChannel: false, firstLastBits: null }, { mean: [72.93], std: 90 });
  m.init(seed);
  // BN affine parameters away from their defaults, so a zero direction there is meaningful.
  for (const e of m.params.entries) if (e.kind === 'bn_weight' || e.kind === 'bn_bias') for (let i = 0; i < e.size; i++) m.params.data[e.offset + i] = 0.5 + i;
  return m;
}

const filterNorms = (m: Model, v: Float32Array, name: string) => {
  const e = m.params.entries.find((x) => x.name === name)!;
  const F = e.shape[0]!, per = e.size / F;
  return Array.from({ length: F }, (_, f) => Math.hypot(...v.subarray(e.offset + f * per, e.offset + (f + 1) * per)));
};

test('filter-normalised directions: each filter has the weights\' norm; bias and BatchNorm directions are zero', () => {
  for (const m of [bnModel(3), createModel(defaultConfig('lenet5'), 1, 28)]) {
    if (m.graph.arch === 'lenet5') m.init(5);
    for (let k = 0; k < 2; k++) {
      const d = landscapeDirection(m, 1, k);
      for (const e of m.params.entries) {
        if (e.kind === 'weight') {
          const dn = filterNorms(m, d, e.name), wn = filterNorms(m, m.params.data, e.name);
          dn.forEach((x, f) => assert.ok(Math.abs(x - wn[f]!) <= 1e-5 * wn[f]!, `${e.name} filter ${f}: ${x} vs ${wn[f]}`));
        } else {
          assert.ok(d.subarray(e.offset, e.offset + e.size).every((x) => x === 0), `${e.name} (${e.kind}) direction is zero`);
        }
      }
    }
    // different direction indices are different directions
    assert.notDeepEqual(Array.from(landscapeDirection(m, 1, 0).subarray(0, 20)), Array.from(landscapeDirection(m, 1, 1).subarray(0, 20)));
  }
});

test('two models of one architecture get the same directions (up to each filter\'s norm); another seed does not', () => {
  const a = createModel(defaultConfig('lenet5'), 1, 28), b = createModel(defaultConfig('lenet5'), 1, 28);
  a.init(1); b.init(2);
  assert.notDeepEqual(Array.from(a.params.data.subarray(0, 10)), Array.from(b.params.data.subarray(0, 10)));
  for (const k of [0, 2]) {
    assert.deepEqual(rawDirection(a, 7, k), rawDirection(b, 7, k));
    const da = landscapeDirection(a, 7, k), db = landscapeDirection(b, 7, k);
    for (const e of a.params.entries.filter((x) => x.kind === 'weight')) {
      const wa = filterNorms(a, a.params.data, e.name), wb = filterNorms(b, b.params.data, e.name);
      const per = e.size / e.shape[0]!;
      for (let i = 0; i < e.size; i++) {
        const f = Math.floor(i / per);
        const x = da[e.offset + i]! / wa[f]!, y = db[e.offset + i]! / wb[f]!;
        assert.ok(Math.abs(x - y) <= 1e-5 * Math.max(1, Math.abs(x)), `${e.name}[${i}]`);
      }
    }
  }
  assert.notDeepEqual(Array.from(rawDirection(a, 8, 0).subarray(0, 20)), Array.from(rawDirection(a, 7, 0).subarray(0, 20)));
});

test('a deployed model is refused: it has no latent weights', async () => {
  const dir = tmpDir('land-dep');
  const f = path.join(dir, 'dep.safetensors');
  await writeTinyModel(f);
  await assert.rejects(loadLandscapeModel(f), /deployed model: it has no latent weights/);
  await assert.rejects(computeLandscape([f], { dim: 1, quiet: true }), /deployed model/);
  fs.rmSync(dir, { recursive: true });
});

test('1D and 2D landscapes of a checkpoint: curve through L(0), sharpness from L(+-0.5), same directions in one file', { skip, timeout: 120_000 }, async () => {
  const dir = tmpDir('land');
  const ck = path.join(dir, 'm.safetensors'), ck2 = path.join(dir, 'n.safetensors');
  const c = { ...defaultConfig('lenet5'), epochs: 1, limitTrain: 1000, valSize: 0 };
  await trainModel(c, { out: ck, quiet: true, testAtEnd: false });
  await trainModel({ ...c, seed: 2 }, { out: ck2, quiet: true, testAtEnd: false });
  const l = await computeLandscape([ck, ck2], { dim: 1, points: 5, directions: 2, images: 300, quiet: true });
  assert.deepEqual(l.alphas, [-1, -0.5, 0, 0.5, 1]);
  assert.equal(l.models.length, 2);
  const m = l.models[0]!;
  assert.equal(m.curves!.length, 2);
  for (const cu of m.curves!) { assert.equal(cu.length, 5); assert.equal(cu[2], m.loss0); }
  // alpha = +-0.5 are grid points here: the sharpness must be built from them exactly
  const sh = m.curves!.map((cu) => (cu[1]! + cu[3]!) / 2 - m.loss0);
  sh.forEach((s, k) => assert.ok(Math.abs(s - m.sharpnessPerDirection[k]!) < 1e-9, `direction ${k}`));
  assert.ok(Math.abs(m.sharpness - (sh[0]! + sh[1]!) / 2) < 1e-9);
  // loss0 is the eval-mode training loss on the first 300 training images, independently
  const { model } = await loadLandscapeModel(ck);
  const train = await loadDataset('fashion-mnist', 'train');
  assert.ok(Math.abs(evaluate(model, train, { start: 0, end: 300 }).loss - m.loss0) < 1e-6);
  // a point off the trained weights, recomputed by hand
  const d = landscapeDirection(model, 1, 1), w0 = model.params.data.slice();
  for (let i = 0; i < w0.length; i++) model.params.data[i] = w0[i]! + -1 * d[i]!;
  assert.ok(Math.abs(evaluate(model, train, { start: 0, end: 300 }).loss - m.curves![1]![0]!) < 1e-6);
  // file round trip; 2D grid
  const f = path.join(dir, 'l.json');
  await writeLandscape(f, l);
  assert.deepEqual(readLandscape(f), JSON.parse(JSON.stringify(l)));
  const l2 = await computeLandscape([ck], { dim: 2, points: 3, images: 200, quiet: true, labels: ['std-s1'] });
  assert.equal(l2.models[0]!.label, 'std-s1');
  assert.equal(l2.models[0]!.grids![0]!.length, 3);
  assert.equal(l2.models[0]!.grids![0]![1]![1], l2.models[0]!.loss0);
  assert.equal(l2.models[0]!.sharpnessPerDirection.length, 2);
  // the thread count changes nothing
  const prev = getThreads();
  setThreads(1);
  const one = await computeLandscape([ck], { dim: 1, points: 3, directions: 1, images: 200, quiet: true });
  setThreads(2);
  const two = await computeLandscape([ck], { dim: 1, points: 3, directions: 1, images: 200, quiet: true });
  setThreads(prev);
  assert.deepEqual(one.models[0]!.curves, two.models[0]!.curves);
  assert.equal(one.models[0]!.sharpness, two.models[0]!.sharpness);
  fs.rmSync(dir, { recursive: true });
});
