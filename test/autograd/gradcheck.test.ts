// Finite-difference gradient checks of every differentiable op against float64
// reference forwards, and exact checks of the straight-through rules.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as ops from '../../src/autograd/ops';
import { Tape, Var } from '../../src/autograd/tape';

// Small deterministic generator (xorshift) for test inputs.
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => { s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0; return s / 4294967296; };
}
function randn(r: () => number, n: number, scale = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = (r() * 2 - 1) * scale;
  return a;
}
/** Round half to even (the project's rounding everywhere). */
function rhe(v: number): number {
  const f = Math.floor(v), d = v - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}
const numel = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

type F64Fn = (inputs: Float64Array[]) => Float64Array;

/**
 * Checks d(sum(y * dy))/d(input) from the tape against central differences of a
 * float64 reference forward. Also checks the op's forward against the reference.
 */
function gradcheck(name: string, shapes: number[][], build: (t: Tape, vs: Var[]) => Var, ref: F64Fn, opts: { seed?: number; scale?: number; h?: number; rtol?: number; atol?: number; samples?: number; check?: boolean[] } = {}): void {
  const r = rng(opts.seed ?? 7);
  const xs = shapes.map((s) => randn(r, numel(s), opts.scale ?? 1));
  const vs = xs.map((x, i) => new Var(x.slice(), shapes[i]!, opts.check ? opts.check[i]! : true));
  const t = new Tape(true);
  const y = build(t, vs);
  const dy = randn(r, y.numel);
  const x64 = xs.map((x) => Float64Array.from(x));
  const y64 = ref(x64);
  assert.equal(y64.length, y.numel, `${name}: reference output size`);
  for (let i = 0; i < y.numel; i++) {
    const tol = 1e-4 + 1e-4 * Math.abs(y64[i]!);
    assert.ok(Math.abs(y.data[i]! - y64[i]!) <= tol, `${name}: forward[${i}] ${y.data[i]} vs float64 ${y64[i]}`);
  }
  t.backwardFrom(y, dy);
  const h = opts.h ?? 1e-3;
  const f = (inp: Float64Array[]) => { const o = ref(inp); let s = 0; for (let i = 0; i < o.length; i++) s += o[i]! * dy[i]!; return s; };
  vs.forEach((v, k) => {
    if (!v.requiresGrad) return;
    assert.ok(v.grad, `${name}: input ${k} got no gradient`);
    const n = v.numel, samples = Math.min(n, opts.samples ?? 40);
    for (let s = 0; s < samples; s++) {
      const i = samples === n ? s : Math.floor(r() * n);
      const p = x64.map((a) => a.slice()), m = x64.map((a) => a.slice());
      p[k]![i]! += h; m[k]![i]! -= h;
      const num = (f(p) - f(m)) / (2 * h);
      const ana = v.grad![i]!;
      const tol = (opts.atol ?? 2e-3) + (opts.rtol ?? 2e-3) * Math.abs(num);
      assert.ok(Math.abs(ana - num) <= tol, `${name}: d/dx${k}[${i}] analytic ${ana} vs numeric ${num} (shapes ${JSON.stringify(shapes)})`);
    }
  });
}

function conv64(x: Float64Array, w: Float64Array, b: Float64Array | null, N: number, C: number, H: number, W: number, O: number, K: number, stride: number, pad: number, padValues: number[] | null): Float64Array {
  const OH = Math.floor((H + 2 * pad - K) / stride) + 1, OW = Math.floor((W + 2 * pad - K) / stride) + 1;
  const y = new Float64Array(N * O * OH * OW);
  for (let n = 0; n < N; n++) for (let o = 0; o < O; o++) for (let oh = 0; oh < OH; oh++) for (let ow = 0; ow < OW; ow++) {
    let s = b ? b[o]! : 0;
    for (let c = 0; c < C; c++) for (let kh = 0; kh < K; kh++) for (let kw = 0; kw < K; kw++) {
      const ih = oh * stride - pad + kh, iw = ow * stride - pad + kw;
      const v = ih >= 0 && ih < H && iw >= 0 && iw < W ? x[((n * C + c) * H + ih) * W + iw]! : padValues ? padValues[c]! : 0;
      s += v * w[((o * C + c) * K + kh) * K + kw]!;
    }
    y[((n * O + o) * OH + oh) * OW + ow] = s;
  }
  return y;
}

test('conv2d: gradients vs float64 finite differences (stride, pad, pad values)', () => {
  for (const [N, C, H, W, O, K, stride, pad, pv] of [[2, 3, 7, 6, 4, 3, 1, 1, null], [1, 2, 9, 9, 3, 5, 2, 2, [0.7, -1.3]], [3, 1, 5, 5, 2, 5, 1, 2, [-0.81]]] as const) {
    const pvArr = pv ? Float32Array.from(pv) : null;
    gradcheck(`conv2d ${[N, C, H, W, O, K, stride, pad]}`, [[N, C, H, W], [O, C, K, K], [O]],
      (t, [x, w, b]) => ops.conv2d(t, x!, w!, b!, { stride, pad, padValues: pvArr }),
      ([x, w, b]) => conv64(x!, w!, b!, N, C, H, W, O, K, stride, pad, pvArr ? Array.from(pvArr) : null));
  }
});

test('linear: gradients vs float64 finite differences', () => {
  const [B, I, O] = [5, 7, 3];
  gradcheck('linear', [[B, I], [O, I], [O]], (t, [x, w, b]) => ops.linear(t, x!, w!, b!), ([x, w, b]) => {
    const y = new Float64Array(B * O);
    for (let i = 0; i < B; i++) for (let o = 0; o < O; o++) { let s = b![o]!; for (let k = 0; k < I; k++) s += x![i * I + k]! * w![o * I + k]!; y[i * O + o] = s; }
    return y;
  });
});

test('maxpool2d: gradients vs float64 finite differences', () => {
  const [N, C, H, W, k, s] = [2, 3, 6, 7, 2, 2];
  const OH = Math.floor((H - k) / s) + 1, OW = Math.floor((W - k) / s) + 1;
  gradcheck('maxpool2d', [[N, C, H, W]], (t, [x]) => ops.maxpool2d(t, x!, k, s), ([x]) => {
    const y = new Float64Array(N * C * OH * OW);
    for (let nc = 0; nc < N * C; nc++) for (let i = 0; i < OH; i++) for (let j = 0; j < OW; j++) {
      let m = -Infinity;
      for (let a = 0; a < k; a++) for (let b = 0; b < k; b++) m = Math.max(m, x![nc * H * W + (i * s + a) * W + j * s + b]!);
      y[(nc * OH + i) * OW + j] = m;
    }
    return y;
  }, { h: 1e-4 });
});

test('batchNorm2d (training and eval): gradients vs float64 finite differences', () => {
  const [N, C, H, W] = [3, 2, 3, 4];
  for (const training of [true, false]) {
    const st = { runningMean: Float32Array.from([0.1, -0.2]), runningVar: Float32Array.from([0.9, 1.3]), momentum: 0.1, eps: 1e-5 };
    const rm = Array.from(st.runningMean), rv = Array.from(st.runningVar);
    gradcheck(`batchNorm2d training=${training}`, [[N, C, H, W], [C], [C]], (t, [x, g, b]) => ops.batchNorm2d(t, x!, g!, b!, st, training, false), ([x, g, b]) => {
      const y = new Float64Array(N * C * H * W), hw = H * W;
      for (let c = 0; c < C; c++) {
        let mu = rm[c]!, v = rv[c]!;
        if (training) {
          let s = 0, s2 = 0;
          for (let n = 0; n < N; n++) for (let j = 0; j < hw; j++) { const q = x![(n * C + c) * hw + j]!; s += q; s2 += q * q; }
          mu = s / (N * hw); v = s2 / (N * hw) - mu * mu;
        }
        for (let n = 0; n < N; n++) for (let j = 0; j < hw; j++) { const i = (n * C + c) * hw + j; y[i] = ((x![i]! - mu) / Math.sqrt(v + 1e-5)) * g![c]! + b![c]!; }
      }
      return y;
    });
  }
});

test('add, globalAvgPool, flatten: gradients vs float64 finite differences', () => {
  gradcheck('add', [[2, 3, 2, 2], [2, 3, 2, 2]], (t, [a, b]) => ops.add(t, a!, b!), ([a, b]) => a!.map((v, i) => v + b![i]!));
  gradcheck('globalAvgPool', [[2, 3, 3, 2]], (t, [x]) => ops.globalAvgPool(t, x!), ([x]) => {
    const y = new Float64Array(6);
    for (let i = 0; i < 6; i++) { let s = 0; for (let j = 0; j < 6; j++) s += x![i * 6 + j]!; y[i] = s / 6; }
    return y;
  });
  gradcheck('flatten', [[2, 3, 2, 2]], (t, [x]) => ops.flatten(t, x!), ([x]) => x!.slice());
});

test('crossEntropy and l1Penalty: gradients vs float64 finite differences', () => {
  const labels = [2, 0, 3, 3];
  gradcheck('crossEntropy', [[4, 5]], (t, [x]) => ops.crossEntropy(t, x!, labels).loss, ([x]) => {
    let tot = 0;
    for (let i = 0; i < 4; i++) {
      let m = -Infinity; for (let j = 0; j < 5; j++) m = Math.max(m, x![i * 5 + j]!);
      let s = 0; for (let j = 0; j < 5; j++) s += Math.exp(x![i * 5 + j]! - m);
      tot += Math.log(s) + m - x![i * 5 + labels[i]!]!;
    }
    return Float64Array.of(tot / 4);
  }, { scale: 3 });
  gradcheck('l1Penalty', [[3, 4]], (t, [a]) => ops.l1Penalty(t, a!, 0.37), ([a]) => { let s = 0; for (const v of a!) s += Math.abs(v); return Float64Array.of((0.37 * s) / 3); });
  gradcheck('sumScalars', [[1], [1]], (t, [a, b]) => ops.sumScalars(t, [a!, b!]), ([a, b]) => Float64Array.of(a![0]! + b![0]!));
});

test('reluFakeQuant: straight-through rule exact (gradient = dy where 0 < x <= r, else 0)', () => {
  const r = rng(3);
  for (const bits of [0, 2, 4, 8]) {
    const n = 257, range = 1.5;
    const x = randn(r, n, 2.5);
    x[0] = 0; x[1] = range; x[2] = Math.fround(range + 1e-6); x[3] = -0;
    const v = new Var(x, [n], true);
    const t = new Tape(true);
    const { y, max } = ops.reluFakeQuant(t, v, bits, range);
    assert.equal(max, Math.max(...x));
    const dy = randn(r, n);
    t.backwardFrom(y, dy);
    const levels = bits ? 2 ** bits - 1 : 0;
    const s = Math.fround(range / levels);
    for (let i = 0; i < n; i++) {
      const pass = bits === 0 ? x[i]! > 0 : x[i]! > 0 && x[i]! <= range;
      assert.equal(v.grad![i], pass ? dy[i] : 0, `bits=${bits} i=${i} x=${x[i]}`);
      if (bits) {
        const q = Math.min(levels, Math.max(0, rhe(Math.fround(Math.max(x[i]!, 0) / s))));
        assert.equal(y.data[i], Math.fround(s * q), `bits=${bits} i=${i} x=${x[i]}`);
      } else {
        assert.equal(y.data[i], Math.max(x[i]!, 0));
      }
    }
  }
});

test('fakeQuantWeight: straight-through rule exact (gradient passes unchanged), perturbation added after rounding', () => {
  const r = rng(5);
  const w = new Var(randn(r, 6 * 25), [6, 1, 5, 5], true);
  const eps = randn(r, 150, 1e-3);
  const t = new Tape(true);
  const { q, scales, codes } = ops.fakeQuantWeight(t, w, 4, false, eps);
  const s = scales[0]!;
  for (let i = 0; i < 150; i++) {
    assert.ok(codes[i]! >= -7 && codes[i]! <= 7);
    assert.equal(q.data[i], Math.fround(Math.fround(s * codes[i]!) + eps[i]!));
  }
  const dy = randn(r, 150);
  t.backwardFrom(q, dy);
  assert.deepEqual(Array.from(w.grad!), Array.from(dy));
});

test('gradient accumulation: a Var used twice receives the sum', () => {
  const a = new Var(Float32Array.of(1, 2, 3), [3], true);
  const t = new Tape(true);
  const y = ops.add(t, a, a);
  t.backwardFrom(y, Float32Array.of(1, 10, 100));
  assert.deepEqual(Array.from(a.grad!), [2, 20, 200]);
});
