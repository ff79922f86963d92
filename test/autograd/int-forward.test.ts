// The integer forward of quantised layers (ops.ts, DESIGN §1 "Training forward"): a conv or linear
// layer whose input comes from reluFakeQuant (or a max pool / flatten of it) and whose weights come
// from fakeQuantWeight runs on the int kernels and gives y = fl32(fl64(s_w * s_a) * acc + b) with the
// exact integer sum acc, on every ISA and thread count; the float path is kept for float inputs and
// for SAQ's perturbed weights.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as ops from '../../src/autograd/ops';
import { Tape, Var } from '../../src/autograd/tape';
import { kernels } from '../../src/autograd/native-ops';
import { availableIsas, getThreads, setThreads, withIsa } from '../../src/native/info';
import { xorshift } from '../helpers/tiny-model';

function randn(r: () => number, n: number, scale = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = (r() * 2 - 1) * scale;
  return a;
}

interface Case { N: number; C: number; H: number; W: number; O: number; k: number; stride: number; pad: number; actBits: number; wBits: number; perChannel: boolean; bias: boolean }
const CASES: Case[] = [
  { N: 3, C: 5, H: 9, W: 7, O: 6, k: 3, stride: 1, pad: 1, actBits: 4, wBits: 4, perChannel: false, bias: false },
  { N: 2, C: 17, H: 8, W: 8, O: 33, k: 3, stride: 2, pad: 1, actBits: 4, wBits: 4, perChannel: true, bias: true },
  { N: 5, C: 3, H: 12, W: 11, O: 7, k: 5, stride: 1, pad: 0, actBits: 8, wBits: 8, perChannel: true, bias: true },
  { N: 1, C: 64, H: 4, W: 4, O: 19, k: 1, stride: 2, pad: 0, actBits: 2, wBits: 2, perChannel: false, bias: false },
];

/** The reference: y = fl32(fl64(s_w * s_a) * sum q_w * q_a + b) from the codes, in float64 (exact sums). */
function refConv(c: Case, qa: Uint8Array, sa: number, qw: Int8Array, sw: Float32Array, b: Float32Array | null): Float32Array {
  const OH = Math.floor((c.H + 2 * c.pad - c.k) / c.stride) + 1, OW = Math.floor((c.W + 2 * c.pad - c.k) / c.stride) + 1;
  const y = new Float32Array(c.N * c.O * OH * OW);
  for (let n = 0; n < c.N; n++) for (let o = 0; o < c.O; o++) for (let oh = 0; oh < OH; oh++) for (let ow = 0; ow < OW; ow++) {
    let acc = 0;
    for (let ci = 0; ci < c.C; ci++) for (let i = 0; i < c.k; i++) for (let j = 0; j < c.k; j++) {
      const h = oh * c.stride - c.pad + i, w = ow * c.stride - c.pad + j;
      if (h < 0 || h >= c.H || w < 0 || w >= c.W) continue;
      acc += qw[((o * c.C + ci) * c.k + i) * c.k + j]! * qa[((n * c.C + ci) * c.H + h) * c.W + w]!;
    }
    const scale = sw[sw.length === 1 ? 0 : o]! * sa;
    y[((n * c.O + o) * OH + oh) * OW + ow] = scale * acc + (b ? b[o]! : 0);
  }
  return y;
}

function runConv(c: Case, seed: number, perturb: boolean) {
  const r = xorshift(seed);
  const t = new Tape(true);
  const pre = new Var(randn(r, c.N * c.C * c.H * c.W, 2), [c.N, c.C, c.H, c.W], true);
  const range = 1.7;
  const a = ops.reluFakeQuant(t, pre, c.actBits, range).y;
  const w = new Var(randn(r, c.O * c.C * c.k * c.k, 0.3), [c.O, c.C, c.k, c.k], true);
  const eps = perturb ? randn(r, w.numel, 0.01) : null;
  const fq = ops.fakeQuantWeight(t, w, c.wBits, c.perChannel, eps);
  const b = c.bias ? new Var(randn(r, c.O), [c.O], true) : null;
  const y = ops.conv2d(t, a, fq.q, b, { stride: c.stride, pad: c.pad });
  return { t, a, fq, b, y };
}

test('conv2d on fake-quantised input and weights: the exact integer sum, scaled once (float64), on every ISA and thread count', () => {
  const prev = getThreads();
  try {
    for (const c of CASES) {
      let first: Float32Array | null = null;
      for (const isa of availableIsas()) for (const threads of [1, 2]) {
        setThreads(threads);
        const { a, fq, b, y } = withIsa(isa, () => runConv(c, 11, false));
        const ac = ops.activationCodes(a)!;
        assert.ok(ac, 'reluFakeQuant records its codes');
        for (let i = 0; i < a.numel; i++) assert.equal(a.data[i], Math.fround(ac.scale * ac.codes[i]!), `a = s * q at ${i}`);
        const want = refConv(c, ac.codes, ac.scale, fq.codes, fq.scales, b ? b.data : null);
        assert.deepEqual(y.data, want, `${JSON.stringify(c)} ${isa} ${threads} thread(s)`);
        if (first) assert.deepEqual(y.data, first);
        else first = y.data.slice();
        // and within float rounding of the float path at the same values
        const f = new Float32Array(y.numel);
        const [N, C, H, W] = a.shape as [number, number, number, number];
        kernels().conv2dForward(a.data, fq.q.data, b ? b.data : null, f, N, C, H, W, c.O, c.k, c.k, c.stride, c.pad, null);
        for (let i = 0; i < f.length; i++) assert.ok(Math.abs(f[i]! - y.data[i]!) <= 1e-5 * (1 + Math.abs(y.data[i]!)), `float path ${f[i]} vs ${y.data[i]}`);
      }
    }
  } finally {
    setThreads(prev);
  }
});

test('conv2d: perturbed weights (SAQ) and float inputs keep the float path; the backward pass is the float one', () => {
  for (const c of CASES.slice(0, 2)) {
    const { a, fq, b, y } = runConv(c, 5, true);
    const f = new Float32Array(y.numel);
    const [N, C, H, W] = a.shape as [number, number, number, number];
    kernels().conv2dForward(a.data, fq.q.data, b ? b.data : null, f, N, C, H, W, c.O, c.k, c.k, c.stride, c.pad, null);
    assert.deepEqual(y.data, f, 'perturbed weights: the float conv, bit for bit');
  }
  // float input (no codes): the float path
  const r = xorshift(2);
  const t = new Tape(true);
  const x = new Var(randn(r, 2 * 3 * 6 * 6), [2, 3, 6, 6], true);
  const w = new Var(randn(r, 4 * 3 * 9, 0.3), [4, 3, 3, 3], true);
  const fq = ops.fakeQuantWeight(t, w, 4, true);
  const y = ops.conv2d(t, x, fq.q, null, { stride: 1, pad: 1 });
  const f = new Float32Array(y.numel);
  kernels().conv2dForward(x.data, fq.q.data, null, f, 2, 3, 6, 6, 4, 3, 3, 1, 1, null);
  assert.deepEqual(y.data, f);
  // the gradients of the integer forward equal those of the float forward at the same values
  const c = CASES[1]!;
  const run = (intPath: boolean) => {
    const rr = xorshift(9);
    const tt = new Tape(true);
    const pre = new Var(randn(rr, c.N * c.C * c.H * c.W, 2), [c.N, c.C, c.H, c.W], true);
    const a = ops.reluFakeQuant(tt, pre, c.actBits, 1.7).y;
    const ww = new Var(randn(rr, c.O * c.C * c.k * c.k, 0.3), [c.O, c.C, c.k, c.k], true);
    // a zero perturbation: the same values, but no codes (the float path)
    const q = ops.fakeQuantWeight(tt, ww, c.wBits, c.perChannel, intPath ? null : new Float32Array(ww.numel)).q;
    const yy = ops.conv2d(tt, a, q, null, { stride: c.stride, pad: c.pad });
    const dy = randn(rr, yy.numel);
    tt.backwardFrom(yy, dy);
    return { dx: pre.grad!.slice(), dw: ww.grad!.slice() };
  };
  const i = run(true), fl = run(false);
  assert.deepEqual(i.dx, fl.dx);
  assert.deepEqual(i.dw, fl.dw);
});

test('linear, max pool and flatten carry the codes: an integer fc layer after a pooled conv activation', () => {
  const r = xorshift(4);
  const t = new Tape(true);
  const pre = new Var(randn(r, 3 * 4 * 6 * 6, 2), [3, 4, 6, 6], true);
  const a = ops.reluFakeQuant(t, pre, 4, 2.1).y;
  const p = ops.maxpool2d(t, a, 2, 2);
  const pc = ops.activationCodes(p)!;
  assert.ok(pc, 'the pooled activation carries codes');
  for (let i = 0; i < p.numel; i++) assert.equal(p.data[i], Math.fround(pc.scale * pc.codes[i]!));
  const f = ops.flatten(t, p);
  const IN = f.shape[1]!, OUT = 13;
  const w = new Var(randn(r, OUT * IN, 0.3), [OUT, IN], true);
  const fq = ops.fakeQuantWeight(t, w, 4, true);
  const b = new Var(randn(r, OUT), [OUT], true);
  const y = ops.linear(t, f, fq.q, b);
  for (let n = 0; n < 3; n++) for (let o = 0; o < OUT; o++) {
    let acc = 0;
    for (let k = 0; k < IN; k++) acc += fq.codes[o * IN + k]! * pc.codes[n * IN + k]!;
    assert.equal(y.data[n * OUT + o], Math.fround(fq.scales[o]! * pc.scale * acc + b.data[o]!), `y[${n}][${o}]`);
  }
  // a plain ReLU (bits 0) and an add carry no codes
  const plain = ops.reluFakeQuant(t, pre, 0, 1).y;
  assert.equal(ops.activationCodes(plain), undefined);
  assert.equal(ops.activationCodes(ops.add(t, a, a)), undefined);
});
