// Models trained in PyTorch mean the same in flatenn (DESIGN §1 as revised): a 4-bit LeNet-5 written
// the flatenn way in PyTorch (PyTorch padding) and a torch.ao.quantization QAT LeNet-5 (4-bit,
// quant_min -8, quant_max 7) are imported, exported and run on the int4 engine: top-1 agreement and
// logits on the 10,000 test images, and accuracy per trial under the same saved fault masks.
// FLATENN_INTEROP_FULL=1 runs the acceptance sizes (5 trials x 1, 2, 5% x 3 fault types).
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import * as fs from 'node:fs';
import { spawnSync } from 'node:child_process';
import { importTorch } from '../../src/interop/torch-import';
import { exportCheckpoint } from '../../src/deploy/export';
import { readDeployed } from '../../src/deploy/format';
import { Engine } from '../../src/engine/engine';
import { runCampaign } from '../../src/campaign/campaign';
import { readSafetensors, tensorOf, writeSafetensors } from '../../src/io/safetensors';
import { loadDataset } from '../../src/data/dataset';
import { tmpDir } from '../data/fixtures';
import { peerEnv, torchBuilds } from '../../bench/common';

const PY = '/usr/bin/python3';
const TWIN = path.resolve(__dirname, '../../../test/python/torch_interop.py');
const FULL = process.env.FLATENN_INTEROP_FULL === '1';
// PyTorch's best BLAS here (scripts/setup.sh installs libopenblas0-openmp with torch), chosen for the twin's
// process only, as the benchmarks choose it (bench/common.ts); the reference BLAS makes its float64 evaluation
// several times slower
const blasEnv = (): NodeJS.ProcessEnv => {
  const openblas = torchBuilds().find((b) => b.key === 'openblas');
  return openblas ? peerEnv(openblas, Number(process.env.FLATENN_THREADS ?? 2), false) : process.env;
};

function torchAvailable(): boolean {
  const ok = spawnSync(PY, ['-c', 'import torch, numpy'], { encoding: 'utf8' }).status === 0;
  if (!ok && process.env.CI === 'true') assert.fail('PyTorch is needed under CI (scripts/setup.sh installs python3-torch when FLATENN_SETUP_TORCH=1)');
  return ok;
}

function py(args: string[], env: Record<string, string> = {}): string {
  const r = spawnSync(PY, [TWIN, ...args], { encoding: 'utf8', env: { ...blasEnv(), ...env }, maxBuffer: 1 << 26 });
  assert.equal(r.status, 0, `torch_interop.py ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** Index of the largest of the 10 logits of image i. */
function argmax(a: ArrayLike<number>, i: number): number {
  let k = 0;
  for (let j = 1; j < 10; j++) if (a[i * 10 + j]! > a[i * 10 + k]!) k = j;
  return k;
}

/**
 * Per image: top-1 of both sides and the largest |logit difference|. A top-1 disagreement must be explained by
 * that difference (a code at a rounding boundary): PyTorch's two leading logits are closer than the engines differ.
 * `onFar` sees each image beyond 1e-4 x max|logit|.
 */
function compareLogits(kind: string, want: ArrayLike<number>, got: ArrayLike<number>, n: number, onFar?: (i: number, d: number) => void) {
  let maxAbs = 0;
  for (let i = 0; i < n * 10; i++) maxAbs = Math.max(maxAbs, Math.abs(want[i]!));
  let agree = 0, close = 0;
  for (let i = 0; i < n; i++) {
    let aw = 0, ag = 0, d = 0;
    for (let j = 0; j < 10; j++) {
      if (want[i * 10 + j]! > want[i * 10 + aw]!) aw = j;
      if (got[i * 10 + j]! > got[i * 10 + ag]!) ag = j;
      d = Math.max(d, Math.abs(want[i * 10 + j]! - got[i * 10 + j]!));
    }
    if (d <= 1e-4 * maxAbs) close++;
    else onFar?.(i, d);
    if (aw === ag) { agree++; continue; }
    const gap = want[i * 10 + aw]! - want[i * 10 + ag]!;
    assert.ok(gap <= 2 * d, `${kind}: image ${i} disagrees (torch ${aw}, flatenn ${ag}) with torch's margin ${gap} > 2 x max |dlogit| ${d}`);
  }
  return { agree, close, maxAbs };
}

async function interop(kind: 'lenet-plain' | 'lenet-qat', steps: number, log: (s: string) => void): Promise<void> {
  const dir = tmpDir(`interop-${kind}`);
  const twin = JSON.parse(py([kind, dir], { TWIN_STEPS: String(steps) })) as { accuracy: number };
  const ck = path.join(dir, 'ck.safetensors'), dep = path.join(dir, 'm.int4.safetensors');
  const rep = await importTorch({ file: path.join(dir, 'torch.safetensors'), arch: 'lenet5', out: ck });
  if (kind === 'lenet-qat') {
    assert.deepEqual(Object.values(rep.weightScales), ['file', 'file', 'file', 'file', 'file'], 'torch.ao weight scales travel');
    assert.match(rep.actRanges, /activation_post_process/);
  } else {
    assert.deepEqual(Object.values(rep.weightScales), ['design', 'design', 'design', 'design', 'design']);
    assert.match(rep.actRanges, /act\.range/);
  }
  await exportCheckpoint(ck, dep);
  const m = await readDeployed(dep);
  assert.equal(m.meta.input.padding, 'normalized');
  const test = await loadDataset('fashion-mnist', 'test');
  const r = await new Engine(m).evaluate({ images: test.images, labels: test.labels, logits: true });
  const want = tensorOf(await readSafetensors(path.join(dir, 'logits.safetensors')), 'logits', 'F32', [test.count, 10]).data;
  const got = r.logits!;
  const { agree, close, maxAbs } = compareLogits(kind, want, got, test.count);
  assert.ok(agree >= 0.999 * test.count, `${kind}: top-1 agreement ${agree} of ${test.count}`);
  assert.ok(close >= 0.999 * test.count, `${kind}: ${close} of ${test.count} images within 1e-4 x max|logit|`);
  assert.ok(Math.abs(r.accuracy - twin.accuracy) <= 0.001, `${kind}: accuracy ${r.accuracy} vs torch ${twin.accuracy}`);
  // the same saved fault masks on both sides
  const masks = path.join(dir, 'masks.safetensors');
  const rates = FULL ? [0.01, 0.02, 0.05] : [0.01, 0.05];
  const trials = FULL ? 5 : kind === 'lenet-plain' ? 2 : 1;
  const c = await runCampaign({ model: dep, faults: ['bitflip', 'sa0', 'sa1'], rates, trials, out: path.join(dir, 'r.jsonl'), saveMasks: masks, quiet: true });
  const torchAcc = JSON.parse(py(['masks', dir, kind, masks])) as Record<string, number>;
  assert.equal(Object.keys(torchAcc).length, c.records.length);
  let worst = 0;
  for (const rec of c.records) {
    const k = `${rec.fault}/${rec.rate}/${rec.trial}`;
    worst = Math.max(worst, Math.abs(100 * (torchAcc[k]! - rec.accuracy)));
    assert.ok(Math.abs(100 * (torchAcc[k]! - rec.accuracy)) <= 0.05, `${kind} ${k}: flatenn ${rec.accuracy} vs torch ${torchAcc[k]}`);
  }
  log(`${kind}: torch accuracy ${(100 * twin.accuracy).toFixed(2)}%, flatenn ${(100 * r.accuracy).toFixed(2)}%; top-1 agreement ${agree}/${test.count}; ` +
    `${close}/${test.count} images with max |dlogit| <= 1e-4 x max|logit| (${maxAbs.toFixed(3)}); ${c.records.length} masked trials, worst |dacc| ${worst.toFixed(4)} points`);
  fs.rmSync(dir, { recursive: true });
}

test('a 4-bit LeNet-5 trained in PyTorch (PyTorch padding, flatenn fake quant): same logits and same faulty accuracies', async (t) => {
  if (!torchAvailable()) { t.skip('PyTorch (python3-torch) not installed'); return; }
  await interop('lenet-plain', 100, (m) => t.diagnostic(m));
});

test('a torch.ao.quantization QAT LeNet-5 (4-bit, -8..7): its scales travel; same logits and same faulty accuracies', async (t) => {
  if (!torchAvailable()) { t.skip('PyTorch (python3-torch) not installed'); return; }
  await interop('lenet-qat', 60, (m) => t.diagnostic(m));
});

const CIFAR_DIR = path.resolve(__dirname, '../../../../shared/datasets/cifar10-jpeg');

test('a quarter-width CIFAR ResNet-18 with BatchNorm and a per-channel std trained in PyTorch: same logits and faulty accuracies on 1,000 images', async (t) => {
  if (!torchAvailable()) { t.skip('PyTorch (python3-torch) not installed'); return; }
  const tar = path.join(CIFAR_DIR, 'cifar-10-binary.tar.gz');
  if (!fs.existsSync(tar)) { if (process.env.CI === 'true') assert.fail(`${tar} is missing`); t.skip('CIFAR-10 copy not found'); return; }
  const dir = tmpDir('interop-resnet');
  const env = { FLATENN_CIFAR_TAR: tar, TWIN_STEPS: FULL ? '25' : '10' };  // the acceptance run trains the twin a little further
  const twin = JSON.parse(py(['resnet-plain', dir], env)) as { accuracy: number };
  const ck = path.join(dir, 'ck.safetensors'), dep = path.join(dir, 'm.int4.safetensors');
  const std = [62.99, 61.97, 66.56];
  await importTorch({ file: path.join(dir, 'torch.safetensors'), arch: 'resnet18', out: ck, config: { width: 0.25 }, norm: { mean: [125.3, 123.0, 113.9], std } });
  await exportCheckpoint(ck, dep);
  const m = await readDeployed(dep);
  assert.deepEqual(m.meta.input.std, std);
  const N = 1000;
  const test = await loadDataset('cifar10', 'test', { dataDir: CIFAR_DIR });
  const r = await new Engine(m).evaluate({ images: test.images, labels: test.labels, count: N, logits: true });
  const lf = await readSafetensors(path.join(dir, 'logits.safetensors'));
  const want = tensorOf(lf, 'logits', 'F32', [N, 10]).data;
  // per image, PyTorch's least distance of an activation code to a rounding boundary (in code steps)
  const boundary = tensorOf(lf, 'boundary', 'F32', [N]).data;
  const got = r.logits!;
  let explained = 0;
  const { agree, close, maxAbs } = compareLogits('resnet', want, got, N, (i, d) => {
    // beyond float rounding only where a code sits at a rounding boundary (float32 vs integer sums)
    assert.ok(boundary[i]! < 1e-4, `resnet: image ${i} differs by ${d} but its closest code is ${boundary[i]} steps from a rounding boundary`);
    explained++;
  });
  assert.ok(agree >= 0.999 * N, `resnet: top-1 agreement ${agree} of ${N}`);
  // against the same model in float64 (its float32 constants, exact arithmetic up to ~1e-16): the engine's
  // float64 epilogue is held to it; PyTorch's own float32 evaluation is reported beside it
  const exact = tensorOf(lf, 'logits64', 'F64', [N, 10]).data;
  const within = (a: ArrayLike<number>) => { let k = 0; for (let i = 0; i < N; i++) { let d = 0; for (let j = 0; j < 10; j++) d = Math.max(d, Math.abs(a[i * 10 + j]! - exact[i * 10 + j]!)); if (d <= 1e-4 * maxAbs) k++; } return k; };
  const [closeF, closeT] = [within(got), within(want)];
  let agree64 = 0;
  for (let i = 0; i < N; i++) if (argmax(got, i) === argmax(exact, i)) agree64++;
  assert.ok(closeF >= 0.999 * N, `resnet: ${closeF} of ${N} images within 1e-4 x max|logit| of PyTorch float64`);
  assert.ok(agree64 >= 0.999 * N, `resnet: top-1 agreement with PyTorch float64 ${agree64} of ${N}`);
  const masks = path.join(dir, 'masks.safetensors');
  const c = await runCampaign({ model: dep, faults: ['bitflip', 'sa0', 'sa1'], rates: FULL ? [0.01, 0.02, 0.05] : [0.01], trials: FULL ? 5 : 1, out: path.join(dir, 'r.jsonl'), saveMasks: masks, limit: N, dataDir: CIFAR_DIR, quiet: true });
  const torchAcc = JSON.parse(py(['masks', dir, 'resnet-plain', masks], env)) as { f32: Record<string, number>; f64: Record<string, number> };
  const compare = (ref: Record<string, number>) => {
    let worst = 0;
    const off: string[] = [];
    for (const rec of c.records) {
      const k = `${rec.fault}/${rec.rate}/${rec.trial}`;
      const d = Math.abs(100 * (ref[k]! - rec.accuracy));
      worst = Math.max(worst, d);
      if (d > 0.05) off.push(`${k}: flatenn ${rec.accuracy} vs torch ${ref[k]}`);
    }
    return { worst, off };
  };
  const t64 = compare(torchAcc.f64), t32 = compare(torchAcc.f32);
  t.diagnostic(`resnet masked trials beyond 0.05 points of PyTorch float64: ${t64.off.length} of ${c.records.length}${t64.off.length ? ` (${t64.off.join('; ')})` : ''}; of PyTorch float32: ${t32.off.length}${t32.off.length ? ` (${t32.off.join('; ')})` : ''}`);
  assert.equal(t64.off.length, 0, `resnet: trials beyond 0.05 points of PyTorch float64: ${t64.off.join('; ')}`);
  t.diagnostic(`resnet18 x0.25: torch accuracy ${(100 * twin.accuracy).toFixed(1)}%, flatenn ${(100 * r.accuracy).toFixed(1)}% on ${N}; ` +
    `PyTorch float64: top-1 agreement ${agree64}/${N}, ${closeF}/${N} within 1e-4 x max|logit| (PyTorch float32: ${closeT}/${N}); ` +
    `PyTorch float32: agreement ${agree}/${N}, ${close}/${N} within, ${explained} beyond it with a code < 1e-4 steps from a rounding boundary; ` +
    `${c.records.length} masked trials, worst |dacc| ${t64.worst.toFixed(4)} points vs float64, ${t32.worst.toFixed(4)} vs float32`);
  fs.rmSync(dir, { recursive: true });
});

test('import errors name missing, extra and mis-shaped keys; --map renames', async (t) => {
  if (!torchAvailable()) { t.skip('PyTorch (python3-torch) not installed'); return; }
  const dir = tmpDir('interop-keys');
  const f32 = (shape: number[]) => ({ dtype: 'F32' as const, shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(0.01) });
  const good: Record<string, ReturnType<typeof f32>> = {
    'features.0.weight': f32([6, 1, 5, 5]), 'features.0.bias': f32([6]), 'conv2.weight': f32([16, 6, 5, 5]), 'conv2.bias': f32([16]),
    'fc1.weight': f32([120, 400]), 'fc1.bias': f32([120]), 'fc2.weight': f32([84, 120]), 'fc2.bias': f32([84]), 'fc3.weight': f32([10, 84]), 'fc3.bias': f32([10]),
    'act.range': { dtype: 'F32', shape: [4], data: Float32Array.of(1, 2, 3, 4) },
  };
  const file = path.join(dir, 'sd.safetensors');
  await writeSafetensors(file, { ...good, 'fc2.bias': f32([85]), 'head.weight': f32([3]) });
  await assert.rejects(importTorch({ file, arch: 'lenet5', out: path.join(dir, 'o.safetensors') }), (e: Error) => {
    assert.match(e.message, /missing keys: conv1\.weight, conv1\.bias/);
    assert.match(e.message, /wrong shapes: fc2\.bias \[85\], expected \[84\]/);
    assert.match(e.message, /unexpected keys: features\.0\.bias, features\.0\.weight, head\.weight/);
    return true;
  });
  await writeSafetensors(file, good);
  const rep = await importTorch({ file, arch: 'lenet5', out: path.join(dir, 'o.safetensors'), map: { 'features.0': 'conv1' } });
  assert.equal(rep.actRanges, 'file (act.range)');
  const noRanges = { ...good } as Record<string, unknown>;
  delete noRanges['act.range'];
  await writeSafetensors(file, noRanges as typeof good);
  await assert.rejects(importTorch({ file, arch: 'lenet5', out: path.join(dir, 'o.safetensors'), map: { 'features.0': 'conv1' } }), /no activation ranges.*--calibrate N/);
  const cal = await importTorch({ file, arch: 'lenet5', out: path.join(dir, 'o.safetensors'), map: { 'features.0': 'conv1' }, calibrate: 64 });
  assert.equal(cal.actRanges, 'calibrated: max over the first 64 training images');
  const ranges = tensorOf(await readSafetensors(path.join(dir, 'o.safetensors')), 'act.range', 'F32', [4]).data;
  assert.ok(Array.from(ranges).every((r) => r > 0), `calibrated ranges ${Array.from(ranges)}`);
  await exportCheckpoint(path.join(dir, 'o.safetensors'), path.join(dir, 'o.int4.safetensors'));
  fs.rmSync(dir, { recursive: true });
});
