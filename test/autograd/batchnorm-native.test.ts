// The native BatchNorm2d kernels against the plain float64 loops they replace (written out here):
// bit-identical forward sums and outputs, backward sums and input gradients, in training and eval
// mode, on awkward shapes, with 1 and 2 threads.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { kernels } from '../../src/autograd/native-ops';
import { getThreads, setThreads } from '../../src/native/info';
import { xorshift } from '../helpers/tiny-model';

function rand(n: number, r: () => number, scale = 1, offset = 0): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = Math.fround(offset + scale * (2 * r() - 1));
  return a;
}

/** The reference: the loops in JavaScript doubles, as batchNorm2d computed them before the native kernels. */
function reference(x: Float32Array, dy: Float32Array, gamma: Float32Array, beta: Float32Array, N: number, C: number, hw: number, training: boolean, runMean: Float64Array, runVar: Float64Array) {
  const m = N * hw, eps = 1e-5;
  const sum = new Float64Array(C), sumsq = new Float64Array(C), mean = new Float64Array(C), invStd = new Float64Array(C);
  for (let c = 0; c < C; c++) {
    let s = 0, s2 = 0;
    for (let n = 0; n < N; n++) { const o = (n * C + c) * hw; for (let j = 0; j < hw; j++) { const v = x[o + j]!; s += v; s2 += v * v; } }
    sum[c] = s; sumsq[c] = s2;
    if (training) { const mu = s / m; mean[c] = mu; invStd[c] = 1 / Math.sqrt(Math.max(s2 / m - mu * mu, 0) + eps); }
    else { mean[c] = runMean[c]!; invStd[c] = 1 / Math.sqrt(runVar[c]! + eps); }
  }
  const y = new Float32Array(x.length), dx = new Float32Array(x.length);
  const sumDy = new Float64Array(C), sumDyXhat = new Float64Array(C);
  for (let n = 0; n < N; n++) for (let c = 0; c < C; c++) {
    const o = (n * C + c) * hw, mu = mean[c]!, is = invStd[c]!, g = gamma[c]!, b = beta[c]!;
    for (let j = 0; j < hw; j++) y[o + j] = (x[o + j]! - mu) * is * g + b;
    let a = 0, b2 = 0;
    for (let j = 0; j < hw; j++) { const gg = dy[o + j]!; a += gg; b2 += gg * (x[o + j]! - mu) * is; }
    sumDy[c]! += a; sumDyXhat[c]! += b2;
  }
  for (let n = 0; n < N; n++) for (let c = 0; c < C; c++) {
    const o = (n * C + c) * hw, mu = mean[c]!, is = invStd[c]!, g = gamma[c]!;
    const a = sumDy[c]! / m, b2 = sumDyXhat[c]! / m;
    for (let j = 0; j < hw; j++) dx[o + j] = training ? g * is * (dy[o + j]! - a - (x[o + j]! - mu) * is * b2) : g * is * dy[o + j]!;
  }
  return { sum, sumsq, mean, invStd, y, dx, sumDy, sumDyXhat };
}

test('native BatchNorm2d kernels equal the float64 loops bit for bit (training and eval, awkward shapes, 1 and 2 threads)', () => {
  const k = kernels(), prev = getThreads();
  try {
    for (const [N, C, hw] of [[1, 1, 1], [3, 5, 7], [2, 17, 33], [5, 3, 1024], [1, 64, 9]] as const) {
      const r = xorshift(N * 1000 + C * 10 + hw);
      const x = rand(N * C * hw, r, 3, 0.5), dy = rand(N * C * hw, r, 0.1), gamma = rand(C, r, 0.5, 1), beta = rand(C, r, 0.2);
      const runMean = Float64Array.from(rand(C, r, 0.3)), runVar = Float64Array.from(rand(C, r, 0.2, 1));
      for (const training of [true, false]) {
        const want = reference(x, dy, gamma, beta, N, C, hw, training, runMean, runVar);
        for (const threads of [1, 2]) {
          setThreads(threads);
          const what = `N=${N} C=${C} HW=${hw} ${training ? 'training' : 'eval'} ${threads} thread(s)`;
          const sum = new Float64Array(C), sumsq = new Float64Array(C);
          k.bn2dSums(x, N, C, hw, sum, sumsq);
          assert.deepEqual(sum, want.sum, `${what}: sums`);
          assert.deepEqual(sumsq, want.sumsq, `${what}: sums of squares`);
          const y = new Float32Array(x.length);
          k.bn2dApply(x, y, N, C, hw, want.mean, want.invStd, gamma, beta);
          assert.deepEqual(y, want.y, `${what}: y`);
          const sd = new Float64Array(C), sdx = new Float64Array(C);
          k.bn2dBackwardSums(x, dy, N, C, hw, want.mean, want.invStd, sd, sdx);
          assert.deepEqual(sd, want.sumDy, `${what}: sum of dy`);
          assert.deepEqual(sdx, want.sumDyXhat, `${what}: sum of dy * xhat`);
          const dx = new Float32Array(x.length).fill(NaN);
          k.bn2dBackwardDx(x, dy, dx, N, C, hw, want.mean, want.invStd, gamma, sd, sdx, training);
          assert.deepEqual(dx, want.dx, `${what}: dx`);
        }
      }
    }
  } finally {
    setThreads(prev);
  }
});

test('native BatchNorm2d kernels: short buffers and overlapping outputs are refused with the argument named', () => {
  const k = kernels();
  const x = new Float32Array(12), s = new Float64Array(3), q = new Float64Array(3);
  assert.throws(() => k.bn2dSums(x, 2, 3, 3, s, q), /x/);  // 18 elements needed
  assert.throws(() => k.bn2dSums(x, 2, 3, 2, new Float64Array(2), q), /sum/);
  assert.throws(() => k.bn2dApply(x, x, 2, 3, 2, s, q, new Float32Array(3), new Float32Array(3)), /overlap/);
  assert.throws(() => k.bn2dBackwardDx(x, x, new Float32Array(12), 2, 3, 2, s, q, new Float32Array(3), s, q, 1 as unknown as boolean), TypeError);
});
