// DESIGN §1 as revised: normalised-zero padding, per-channel std, and the input layer's mean term
// derived from the codes in memory (faulty ones included), checked against float64 arithmetic
// written out here; version-1 files keep their meaning; native and reference engines agree bit for bit.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import * as fs from 'node:fs';
import { readDeployed, type DeployedModel } from '../../src/deploy/format';
import { Engine } from '../../src/engine/engine';
import { runReference, unpackLayers } from '../../src/engine/reference';
import { writeTinyModel, xorshift, pack4, type TinyModel } from '../helpers/tiny-model';
import { tmpDir } from '../data/fixtures';

function rhe(v: number): number {
  const f = Math.floor(v), d = v - f;
  return d > 0.5 ? f + 1 : d < 0.5 ? f : f % 2 === 0 ? f : f + 1;
}

/**
 * The float model the deployed file stands for, in float64: the first layer on the normalised image
 * (x - m_c) / s_c zero-padded after normalisation ('normalized') or before ('raw'), with the given codes.
 */
function floatLogits(tm: TinyModel, conv: Int8Array, img: Uint8Array, padding: 'normalized' | 'raw', std: number | number[], v1: boolean): Float64Array {
  const C = tm.meta.input.channels, mean = tm.meta.input.mean;
  const sd = (c: number) => (typeof std === 'number' ? std : std[c]!);
  const actS = Math.fround(tm.range / 15);
  const act = new Uint8Array(4 * 14 * 14);
  for (let o = 0; o < 4; o++) for (let y = 0; y < 14; y++) for (let x = 0; x < 14; x++) {
    let v = 0;
    for (let c = 0; c < C; c++) for (let a = 0; a < 5; a++) for (let b = 0; b < 5; b++) {
      const iy = 2 * y - 2 + a, ix = 2 * x - 2 + b;
      const inside = iy >= 0 && iy < 28 && ix >= 0 && ix < 28;
      const raw = inside ? img[(c * 28 + iy) * 28 + ix]! : padding === 'raw' ? 0 : mean[c]!;
      v += conv[((o * C + c) * 5 + a) * 5 + b]! * (raw - mean[c]!) / sd(c);
    }
    // version 1 stores S / std in out_scale; version 2 stores S
    const S = v1 ? tm.convScale[o]! * sd(0) : tm.convScale[o]!;
    const yv = S * v + tm.convBias[o]! + (v1 ? S * cleanMeanTerm(tm, o) / sd(0) : 0);
    act[(o * 14 + y) * 14 + x] = Math.min(15, Math.max(0, rhe(Math.max(yv, 0) / actS)));
  }
  const out = new Float64Array(10);
  for (let o = 0; o < 10; o++) {
    let acc = 0;
    for (let c = 0; c < 4; c++) for (let y = 0; y < 7; y++) for (let x = 0; x < 7; x++) {
      const p = (c * 14 + 2 * y) * 14 + 2 * x;
      acc += tm.fc[o * 196 + (c * 7 + y) * 7 + x]! * Math.max(act[p]!, act[p + 1]!, act[p + 14]!, act[p + 15]!);
    }
    out[o] = tm.fcScale[o]! * acc + tm.fcBias[o]!;
  }
  return out;
}

/** A version-1 file's out_bias is B - (S/std) * sum m_c T_c(clean); the float model's B adds it back. */
function cleanMeanTerm(tm: TinyModel, o: number): number {
  const C = tm.meta.input.channels;
  let t = 0;
  for (let c = 0; c < C; c++) for (let k = 0; k < 25; k++) t += tm.conv[(o * C + c) * 25 + k]! * tm.meta.input.mean[c]!;
  return t;
}

/** The model's memory with some first-layer codes replaced (faults), -8 included. */
function faulty(m: DeployedModel, tm: TinyModel, seed: number): { memory: Uint8Array; conv: Int8Array } {
  const r = xorshift(seed);
  const conv = tm.conv.slice();
  for (let i = 0; i < conv.length; i += 3) conv[i] = i % 2 ? -8 : Math.floor(r() * 16) - 8;
  const memory = m.memory.slice();
  memory.set(pack4(conv), m.meta.layers[0]!.byteOffset);
  return { memory, conv };
}

async function check(opts: { version: 1 | 2; padding: 'normalized' | 'raw'; channels: number; std: number | number[] }, name: string): Promise<void> {
  const dir = tmpDir('sem');
  const file = path.join(dir, 'm.safetensors');
  const tm = await writeTinyModel(file, 5, opts.version === 1 ? { channels: opts.channels, std: opts.std } : opts);
  const m = await readDeployed(file);
  const C = opts.channels, per = C * 784, n = 9;
  const r = xorshift(17);
  const images = Uint8Array.from({ length: n * per }, () => Math.floor(r() * 256));
  const labels = Uint8Array.from({ length: n }, (_, i) => i % 10);
  for (const [label, mem, conv] of [['clean', m.memory, tm.conv], ['faulty', ...Object.values(faulty(m, tm, 3))]] as [string, Uint8Array, Int8Array][]) {
    const ref = runReference(m, unpackLayers(m, mem), images, n);
    let worst = 0, scale = 0;
    for (let i = 0; i < n; i++) {
      const want = floatLogits(tm, conv, images.subarray(i * per, (i + 1) * per), opts.padding, opts.std, opts.version === 1);
      for (let j = 0; j < 10; j++) { worst = Math.max(worst, Math.abs(ref.logits[i * 10 + j]! - want[j]!)); scale = Math.max(scale, Math.abs(want[j]!)); }
    }
    assert.ok(worst <= 1e-4 * scale, `${name} ${label}: reference logits differ from float64 arithmetic by ${worst} (max |logit| ${scale})`);
    const native = new Engine(m, { backend: 'native' });
    const res = native.evaluateSync({ memory: mem, images: images, labels: labels, count: n });
    const refRes = new Engine(m, { backend: 'reference' }).evaluateSync({ memory: mem, images: images, labels: labels, count: n });
    assert.deepEqual(Array.from(res.predictions), Array.from(refRes.predictions), `${name} ${label}: native vs reference predictions`);
    assert.equal(res.loss, refRes.loss, `${name} ${label}: native vs reference loss (same bits)`);
    assert.deepEqual(res.perLayerSparsity, refRes.perLayerSparsity, `${name} ${label}: sparsity`);
  }
  fs.rmSync(dir, { recursive: true });
}

test('version 2, normalised padding, one std: engine = float model on the normalised image, clean and with faulty first-layer codes', async () => {
  await check({ version: 2, padding: 'normalized', channels: 1, std: 90 }, 'v2 normalized');
});

test('version 2, raw padding: the same with raw-0 padding', async () => {
  await check({ version: 2, padding: 'raw', channels: 1, std: 90 }, 'v2 raw');
});

test('version 2, per-channel std (3 channels), normalised padding', async () => {
  await check({ version: 2, padding: 'normalized', channels: 3, std: [63.0, 62.1, 66.7] }, 'v2 per-channel std');
});

test('version 1 files: clean memory computes exactly what it did; a faulty first layer re-derives the mean term from the codes', async () => {
  await check({ version: 1, padding: 'raw', channels: 1, std: 90 }, 'v1');
  // one std with 3 channels in a version-1 file
  await check({ version: 1, padding: 'raw', channels: 3, std: 64 }, 'v1 rgb');
});

test('a faulty first layer changes the engine result only through the codes: re-evaluating the clean memory afterwards gives the clean result', async () => {
  const dir = tmpDir('sem-refold');
  const file = path.join(dir, 'm.safetensors');
  const tm = await writeTinyModel(file, 8, { version: 2, padding: 'normalized' });
  const m = await readDeployed(file);
  const n = 16, r = xorshift(2);
  const images = Uint8Array.from({ length: n * 784 }, () => Math.floor(r() * 256));
  const labels = Uint8Array.from({ length: n }, (_, i) => i % 10);
  const e = new Engine(m);
  const a = e.evaluateSync({ memory: m.memory, images: images, labels: labels, count: n });
  const f = e.evaluateSync({ memory: faulty(m, tm, 9).memory, images, labels, count: n });
  const b = e.evaluateSync({ memory: m.memory, images: images, labels: labels, count: n });
  assert.notEqual(f.loss, a.loss);
  assert.equal(b.loss, a.loss);
  assert.deepEqual(Array.from(b.predictions), Array.from(a.predictions));
  fs.rmSync(dir, { recursive: true });
});

test('deployed-format version 2 input fields are validated', async () => {
  const dir = tmpDir('sem-bad');
  const bad = async (opts: Parameters<typeof writeTinyModel>[2], re: RegExp) => {
    const file = path.join(dir, 'b.safetensors');
    await writeTinyModel(file, 1, opts);
    await assert.rejects(readDeployed(file), re);
  };
  await bad({ version: 2, padding: 'zero' as 'raw' }, /input\.padding must be "normalized" or "raw"/);
  await bad({ version: 2, std: -3 }, /input\.std: -3 is not a positive finite number/);
  await bad({ version: 2, channels: 3, std: [60, 61] }, /input\.std must be a number or one number per channel \(3\)/);
  await bad({ version: 1, channels: 3, std: [60, 61, 62] }, /version-1 file/);
  await bad({ version: 2, mean: [1, 2] }, /input\.mean must hold one number per channel \(1\)/);
  fs.rmSync(dir, { recursive: true });
});
