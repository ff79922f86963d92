// Training reproduces recorded bits. A short run of each training mode (LeNet-5 conventional, SAQ and
// activation-sparse on FashionMNIST; a quarter-width ResNet-18 conventional and SAQ on fixed synthetic
// images) must give the same weights and losses as when the constants below were recorded. A change
// that alters training numerics (an op's summation order, a fused multiply-add, a float64 loop moved
// to float32) fails here; speed work must not. Each ISA has its own set of weight bits: the scalar
// GEMM sums in another order than the SIMD ones, and on AVX-512 small convolutions' backward runs 16
// images per vector (native/kernels/conv2d_lanes.cc). The losses agree on every ISA (the forward
// of quantised layers is exact integer arithmetic). To re-record after a deliberate numerics
// change: run this file with FLATENN_GOLDEN_PRINT=1 (it prints each run's hashes, asserting nothing) and say so in the commit, with the
// study figures it invalidates.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomImages } from '../../bench/resnet18-cost';
import { loadDataset, type ImageDataset } from '../../src/data/dataset';
import { DEBIAN_FASHION_MNIST } from '../../src/data/dirs';
import { availableIsas, getIsa, getThreads, setThreads, withIsa } from '../../src/native/info';
import { defaultConfig, type TrainConfig } from '../../src/train/config';
import { gatherBatch, Trainer } from '../../src/train/trainer';
import { permutation } from '../../src/util/rng';

const haveData = fs.existsSync(path.join(DEBIAN_FASHION_MNIST, 'train-images-idx3-ubyte.gz'));
const skip = !haveData && process.env.CI !== 'true' ? 'FashionMNIST not installed (apt-get install dataset-fashion-mnist)' : false;

/** sha256 of the bytes, first 16 hex digits. */
const h = (a: Float32Array | Float64Array) => createHash('sha256').update(Buffer.from(a.buffer, a.byteOffset, a.byteLength)).digest('hex').slice(0, 16);

// Recorded when the forward of quantised layers became integer (DESIGN §1 "Training forward"; before it, at 4b43fc1
// and the speed work after it, the float forward gave other bits). The losses now agree between the SIMD and scalar
// kernels: the forward is exact integer arithmetic on either, and the backward's differences did not move a code.
const AVX2: Record<string, string> = {
  'lenet-conv': 'e5e4652595f16344 8c41163c94839b05',
  'lenet-saq': 'af5c33fdc6b5841a 3eba9ab47e0b5bfe',
  'lenet-as': 'a37cf7df609380d5 4263a0a02ad9b0b2',
  'r18-conv': '6ae4075203e8d206 c52f5b315efc82c8',
  'r18-saq': 'de4954d03525c229 0ba08b4ecb9ac322',
};
// Recorded when AVX-512's backward of small convolutions became direct (conv2d_lanes.cc): the weights
// moved, the losses of these 12 steps did not.
const AVX512: Record<string, string> = {
  'lenet-conv': 'e4b3db734111bd65 8c41163c94839b05',
  'lenet-saq': '5db0f65290ff0921 3eba9ab47e0b5bfe',
  'lenet-as': 'b65b1c2af21679dc 4263a0a02ad9b0b2',
  'r18-conv': '05b3c898e2d4ea36 c52f5b315efc82c8',
  'r18-saq': 'a6ec1c7774d9d4c3 0ba08b4ecb9ac322',
};
const SCALAR: Record<string, string> = {
  'lenet-conv': 'aaee2eeb022cb0f5 8c41163c94839b05',
  'lenet-saq': '338b252939a900b4 d1d29ec8ef3d382b',
  'lenet-as': '37c39a377c488a95 4263a0a02ad9b0b2',
  'r18-conv': 'b25b17d270679991 c52f5b315efc82c8',
  'r18-saq': 'af1385572ed26e2d 0ba08b4ecb9ac322',
};

/** "<weights hash> <losses hash>" of each run (synchronous: run it inside withIsa). */
function hashes(train: ImageDataset): Record<string, string> {
  const out: Record<string, string> = {};
  const lenet: [string, Partial<TrainConfig>][] = [['lenet-conv', {}], ['lenet-saq', { saqRho: 0.1 }], ['lenet-as', { actL1: [1e-4] }]];
  for (const [name, extra] of lenet) {
    const cfg = { ...defaultConfig('lenet5'), epochs: 1, ...extra };
    const tr = new Trainer(cfg, train);
    const B = 128, perm = permutation(cfg.seed, 0, train.count), buf = { images: new Uint8Array(B * 784), labels: new Uint8Array(B) };
    const losses: number[] = [];
    for (let i = 0; i < 12; i++) {
      const n = gatherBatch(train, perm, i * B, (i + 1) * B, buf);
      losses.push(tr.trainStep(buf.images, buf.labels, n).loss);
    }
    out[name] = `${h(tr.model.params.data)} ${h(Float64Array.from(losses))}`;
  }
  for (const [name, extra] of [['r18-conv', {}], ['r18-saq', { saqRho: 0.1 }]] as [string, Partial<TrainConfig>][]) {
    const B = 16, set = randomImages(B * 3, 1);
    const tr = new Trainer({ ...defaultConfig('resnet18'), width: 0.25, batchSize: B, ...extra }, set);
    const losses: number[] = [];
    for (let i = 0; i < 3; i++) losses.push(tr.trainStep(set.images.slice(i * B * 3072, (i + 1) * B * 3072), set.labels.subarray(i * B, (i + 1) * B), B).loss);
    out[name] = `${h(tr.model.params.data)} ${h(Float64Array.from(losses))}`;
  }
  return out;
}

test('training reproduces the recorded weights and losses bit for bit (every ISA, 1 and 2 threads)', { skip }, async () => {
  const prev = getThreads();
  const train = await loadDataset('fashion-mnist', 'train', {});
  try {
    for (const isa of availableIsas()) {
      for (const threads of isa === getIsa() ? [1, 2] : [2]) {
        setThreads(threads);
        const got = withIsa(isa, () => hashes(train));
        if (process.env.FLATENN_GOLDEN_PRINT) { console.log(`${isa} ${threads} thread(s): ${JSON.stringify(got, null, 1)}`); continue; }
        const want = isa === 'scalar' ? SCALAR : isa === 'avx2' ? AVX2 : AVX512;
        for (const k of Object.keys(want)) assert.equal(got[k], want[k], `${k} (${isa}, ${threads} thread(s))`);
      }
    }
  } finally {
    setThreads(prev);
  }
});
