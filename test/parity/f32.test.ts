// fp32 training kernels through JavaScript: every available ISA against float64 JS references
// (tolerances derived from the summation length), bit-identical results for 1 and 2 threads,
// finite-difference checks of the backward kernels, and the argument checks of every binding.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { nativeFn } from '../../src/native/binding';
import { availableIsas, getThreads, setThreads, withIsa } from '../../src/native/info';
import {
  col2im, conv2dBackward, conv2dForward, convOutputSize, im2col, maxpool2dBackward, maxpool2dForward, peakProbe, poolOutputSize, sgemm,
} from '../../src/native/kernels-f32';

const EPS = 2 ** -23;

function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; return s / 2 ** 32; };
}
const rand = (n: number, r: () => number, lo = -1, hi = 1) => Float32Array.from({ length: n }, () => lo + (hi - lo) * r());

function sameBits(x: Float32Array, y: Float32Array, what: string): void {
  assert.equal(x.length, y.length, what);
  const ux = new Uint32Array(x.buffer, x.byteOffset, x.length), uy = new Uint32Array(y.buffer, y.byteOffset, y.length);
  for (let i = 0; i < x.length; i++) if (ux[i] !== uy[i]) assert.fail(`${what}: element ${i}: ${x[i]} vs ${y[i]}`);
}

function withThreads<T>(n: number, fn: () => T): T {
  const prev = getThreads();
  setThreads(n);
  try { return fn(); } finally { setThreads(prev); }
}

// ------------------------------------------------------------------------------------ sgemm

interface Gemm { tA: boolean; tB: boolean; M: number; N: number; K: number; lda: number; ldb: number; ldc: number; alpha: number; beta: number }

function gemmCase(g: Gemm, seed: number) {
  const r = lcg(seed);
  const A = rand((g.tA ? g.K : g.M) * g.lda, r), B = rand((g.tB ? g.N : g.K) * g.ldb, r), C0 = rand(g.M * g.ldc, r);
  if (g.beta === 0) for (let i = 0; i < g.M; i++) for (let j = 0; j < g.N; j++) C0[i * g.ldc + j] = NaN;  // must be ignored
  const ref = new Float64Array(g.M * g.N), mag = new Float64Array(g.M * g.N);
  for (let i = 0; i < g.M; i++) for (let j = 0; j < g.N; j++) {
    let s = 0, m = 0;
    for (let k = 0; k < g.K; k++) {
      const p = (g.tA ? A[k * g.lda + i]! : A[i * g.lda + k]!) * (g.tB ? B[j * g.ldb + k]! : B[k * g.ldb + j]!);
      s += p; m += Math.abs(p);
    }
    s *= g.alpha; m *= Math.abs(g.alpha);
    if (g.beta !== 0) { s += g.beta * C0[i * g.ldc + j]!; m += Math.abs(g.beta * C0[i * g.ldc + j]!); }
    ref[i * g.N + j] = s; mag[i * g.N + j] = m;
  }
  return { A, B, C0, ref, mag };
}

function runGemm(g: Gemm, A: Float32Array, B: Float32Array, C0: Float32Array): Float32Array {
  const C = C0.slice();
  sgemm(g.tA, g.tB, g.M, g.N, g.K, g.alpha, A, g.lda, B, g.ldb, g.beta, C, g.ldc);
  return C;
}

test('sgemm: every ISA against a float64 reference (awkward sizes, transposes, lda > minimal, alpha/beta)', () => {
  const sizes = [1, 3, 7, 17, 33, 63];
  const alphas = [1, -0.5, 2], betas = [0, 1, -1.5, 0];
  let n = 0;
  for (const M of sizes) for (const N of sizes) for (const K of [1, 7, 31, 129, 300]) {
    for (let t = 0; t < 4; t++) {
      n++;
      const pad = n % 2 ? 2 : 0;
      const tA = (t & 1) === 1, tB = (t & 2) === 2;
      const g: Gemm = { tA, tB, M, N, K, lda: (tA ? M : K) + pad, ldb: (tB ? K : N) + pad, ldc: N + pad, alpha: alphas[n % 3]!, beta: betas[n % 4]! };
      const { A, B, C0, ref, mag } = gemmCase(g, n);
      for (const isa of availableIsas()) {
        const C = withIsa(isa, () => runGemm(g, A, B, C0));
        for (let i = 0; i < M; i++) for (let j = 0; j < g.ldc; j++) {
          const got = C[i * g.ldc + j]!;
          if (j >= N) { if (!Object.is(got, C0[i * g.ldc + j]!)) assert.fail(`sgemm[${isa}] wrote C padding (${i},${j}) ${JSON.stringify(g)}`); continue; }
          const tol = 2 * (K + 2) * EPS * mag[i * N + j]!;
          const want = ref[i * N + j]!;
          if (!(Math.abs(got - want) <= tol)) assert.fail(`sgemm[${isa}] ${JSON.stringify(g)} at (${i},${j}): got ${got} want ${want} tol ${tol} seed ${n}`);
        }
      }
    }
  }
});

test('sgemm: 1 and 2 threads give identical bits under every ISA (tiles and the K-split path)', () => {
  const cases: Gemm[] = [
    { tA: false, tB: false, M: 130, N: 200, K: 300, lda: 300, ldb: 200, ldc: 200, alpha: 1, beta: 0 },
    { tA: false, tB: true, M: 16, N: 150, K: 12800, lda: 12800, ldb: 12800, ldc: 150, alpha: 1, beta: 0 },  // K split
    { tA: true, tB: false, M: 6, N: 25, K: 9000, lda: 6, ldb: 25, ldc: 25, alpha: 0.5, beta: 1 },            // K split
    { tA: true, tB: true, M: 70, N: 90, K: 520, lda: 70, ldb: 520, ldc: 90, alpha: -1, beta: 0.25 },
  ];
  for (const g of cases) {
    const r = lcg(g.M * 7 + g.K);
    const A = rand((g.tA ? g.K : g.M) * g.lda, r), B = rand((g.tB ? g.N : g.K) * g.ldb, r), C0 = rand(g.M * g.ldc, r);
    for (const isa of availableIsas()) {
      const one = withIsa(isa, () => withThreads(1, () => runGemm(g, A, B, C0)));
      const two = withIsa(isa, () => withThreads(2, () => runGemm(g, A, B, C0)));
      sameBits(one, two, `sgemm[${isa}] ${JSON.stringify(g)} 1 vs 2 threads`);
    }
  }
});

// ----------------------------------------------------------------------------- conv2d

interface Conv { N: number; C: number; H: number; W: number; O: number; KH: number; KW: number; stride: number; pad: number }

function xAt(x: ArrayLike<number>, s: Conv, pv: ArrayLike<number> | null, n: number, c: number, ih: number, iw: number): number {
  if (ih < 0 || ih >= s.H || iw < 0 || iw >= s.W) return pv ? pv[c]! : 0;
  return x[((n * s.C + c) * s.H + ih) * s.W + iw]!;
}

/** float64 convolution: y and sum|terms| per output. */
function convRef(x: ArrayLike<number>, w: ArrayLike<number>, b: ArrayLike<number> | null, s: Conv, pv: ArrayLike<number> | null) {
  const { OH, OW } = convOutputSize(s.H, s.W, s.KH, s.KW, s.stride, s.pad);
  const y = new Float64Array(s.N * s.O * OH * OW), mag = new Float64Array(y.length);
  for (let n = 0; n < s.N; n++) for (let o = 0; o < s.O; o++) for (let oh = 0; oh < OH; oh++) for (let ow = 0; ow < OW; ow++) {
    let acc = b ? b[o]! : 0, m = Math.abs(acc);
    for (let c = 0; c < s.C; c++) for (let kh = 0; kh < s.KH; kh++) for (let kw = 0; kw < s.KW; kw++) {
      const t = w[((o * s.C + c) * s.KH + kh) * s.KW + kw]! * xAt(x, s, pv, n, c, oh * s.stride - s.pad + kh, ow * s.stride - s.pad + kw);
      acc += t; m += Math.abs(t);
    }
    y[((n * s.O + o) * OH + oh) * OW + ow] = acc; mag[((n * s.O + o) * OH + oh) * OW + ow] = m;
  }
  return { y, mag, OH, OW };
}

const CONV_SHAPES: Conv[] = [
  { N: 2, C: 1, H: 12, W: 12, O: 6, KH: 5, KW: 5, stride: 1, pad: 2 },
  { N: 3, C: 6, H: 9, W: 9, O: 16, KH: 5, KW: 5, stride: 1, pad: 0 },
  { N: 2, C: 3, H: 9, W: 7, O: 5, KH: 3, KW: 3, stride: 2, pad: 1 },
  { N: 2, C: 4, H: 5, W: 5, O: 3, KH: 1, KW: 1, stride: 1, pad: 0 },
  { N: 1, C: 2, H: 6, W: 5, O: 3, KH: 3, KW: 2, stride: 1, pad: 2 },
];

test('conv2dForward / conv2dBackward: every ISA against float64 references, with and without padValues and bias', () => {
  let seed = 50;
  for (const s of CONV_SHAPES) for (const withPv of [false, true]) {
    const r = lcg(++seed);
    const x = rand(s.N * s.C * s.H * s.W, r), w = rand(s.O * s.C * s.KH * s.KW, r), b = rand(s.O, r), pv = rand(s.C, r, -2, 2);
    const pvA = withPv ? pv : null, bA = withPv ? b : null;
    const { y: yref, mag, OH, OW } = convRef(x, w, bA, s, pvA);
    const dy = rand(s.N * s.O * OH * OW, r);
    // float64 gradients
    const dxr = new Float64Array(x.length), dwr = new Float64Array(w.length), dbr = new Float64Array(s.O);
    const dxm = new Float64Array(x.length), dwm = new Float64Array(w.length), dbm = new Float64Array(s.O);
    for (let n = 0; n < s.N; n++) for (let o = 0; o < s.O; o++) for (let oh = 0; oh < OH; oh++) for (let ow = 0; ow < OW; ow++) {
      const g = dy[((n * s.O + o) * OH + oh) * OW + ow]!;
      dbr[o] += g; dbm[o] += Math.abs(g);
      for (let c = 0; c < s.C; c++) for (let kh = 0; kh < s.KH; kh++) for (let kw = 0; kw < s.KW; kw++) {
        const ih = oh * s.stride - s.pad + kh, iw = ow * s.stride - s.pad + kw, wi = ((o * s.C + c) * s.KH + kh) * s.KW + kw;
        const xv = xAt(x, s, pvA, n, c, ih, iw);
        dwr[wi] += g * xv; dwm[wi] += Math.abs(g * xv);
        if (ih >= 0 && ih < s.H && iw >= 0 && iw < s.W) {
          const xi = ((n * s.C + c) * s.H + ih) * s.W + iw;
          dxr[xi] += g * w[wi]!; dxm[xi] += Math.abs(g * w[wi]!);
        }
      }
    }
    const check = (what: string, isa: string, got: Float32Array, ref: Float64Array, m: Float64Array, terms: number) => {
      for (let i = 0; i < ref.length; i++) {
        const tol = 2 * (terms + 2) * EPS * m[i]!;
        if (!(Math.abs(got[i]! - ref[i]!) <= tol)) assert.fail(`${what}[${isa}] ${JSON.stringify(s)} pv=${withPv} at ${i}: ${got[i]} vs ${ref[i]} tol ${tol}`);
      }
    };
    for (const isa of availableIsas()) {
      withIsa(isa, () => {
        const y = new Float32Array(yref.length).fill(NaN);
        conv2dForward(x, w, bA, y, s.N, s.C, s.H, s.W, s.O, s.KH, s.KW, s.stride, s.pad, pvA);
        check('conv2dForward', isa, y, yref, mag, s.C * s.KH * s.KW + 1);
        const dx = new Float32Array(x.length).fill(NaN), dw = new Float32Array(w.length).fill(NaN), db = new Float32Array(s.O).fill(NaN);
        conv2dBackward(x, w, dy, dx, dw, db, s.N, s.C, s.H, s.W, s.O, s.KH, s.KW, s.stride, s.pad, pvA);
        check('conv2dBackward.dx', isa, dx, dxr, dxm, s.O * s.KH * s.KW);
        check('conv2dBackward.dw', isa, dw, dwr, dwm, s.N * OH * OW);
        check('conv2dBackward.db', isa, db, dbr, dbm, s.N * OH * OW);
      });
    }
  }
});

test('conv2dForward / conv2dBackward: 1 and 2 threads give identical bits under every ISA', () => {
  const shapes: Conv[] = [
    { N: 40, C: 6, H: 14, W: 14, O: 16, KH: 5, KW: 5, stride: 1, pad: 0 },  // LeNet conv2, many dw blocks
    { N: 19, C: 1, H: 28, W: 28, O: 6, KH: 5, KW: 5, stride: 1, pad: 2 },   // LeNet conv1 with pad values
    { N: 2, C: 16, H: 16, W: 16, O: 32, KH: 3, KW: 3, stride: 1, pad: 1 },
  ];
  for (const s of shapes) {
    const r = lcg(s.N + s.C);
    const x = rand(s.N * s.C * s.H * s.W, r), w = rand(s.O * s.C * s.KH * s.KW, r), b = rand(s.O, r), pv = rand(s.C, r);
    const { OH, OW } = convOutputSize(s.H, s.W, s.KH, s.KW, s.stride, s.pad);
    const dy = rand(s.N * s.O * OH * OW, r);
    for (const isa of availableIsas()) {
      const run = (threads: number) => withIsa(isa, () => withThreads(threads, () => {
        const y = new Float32Array(dy.length), dx = new Float32Array(x.length), dw = new Float32Array(w.length), db = new Float32Array(s.O);
        conv2dForward(x, w, b, y, s.N, s.C, s.H, s.W, s.O, s.KH, s.KW, s.stride, s.pad, pv);
        conv2dBackward(x, w, dy, dx, dw, db, s.N, s.C, s.H, s.W, s.O, s.KH, s.KW, s.stride, s.pad, pv);
        return { y, dx, dw, db };
      }));
      const one = run(1), two = run(2);
      for (const k of ['y', 'dx', 'dw', 'db'] as const) sameBits(one[k], two[k], `conv ${k} [${isa}] ${JSON.stringify(s)} 1 vs 2 threads`);
    }
  }
});

test('conv2dBackward equals float64 central differences of the convolution (tiny shapes, every ISA)', () => {
  // L = sum(R * conv(x, w) + ...) ; dL/dx, dL/dw, dL/db from conv2dBackward with dy = R against
  // (L(v + h) - L(v - h)) / 2h evaluated in float64 on the float32 inputs.
  const shapes: Conv[] = [
    { N: 2, C: 2, H: 5, W: 4, O: 3, KH: 3, KW: 3, stride: 1, pad: 1 },
    { N: 1, C: 3, H: 6, W: 6, O: 2, KH: 2, KW: 3, stride: 2, pad: 2 },
  ];
  for (const s of shapes) {
    const r = lcg(1234 + s.C);
    const x = rand(s.N * s.C * s.H * s.W, r), w = rand(s.O * s.C * s.KH * s.KW, r), b = rand(s.O, r), pv = rand(s.C, r);
    const { OH, OW } = convOutputSize(s.H, s.W, s.KH, s.KW, s.stride, s.pad);
    const R = rand(s.N * s.O * OH * OW, r);
    const loss = (xx: ArrayLike<number>, ww: ArrayLike<number>, bb: ArrayLike<number>) => {
      const { y } = convRef(xx, ww, bb, s, pv);
      let l = 0;
      for (let i = 0; i < y.length; i++) l += R[i]! * y[i]!;
      return l;
    };
    const h = 1e-3;
    const numeric = (v: Float32Array, which: 'x' | 'w' | 'b') => Array.from(v, (_, i) => {
      const p = Float64Array.from(v), m = Float64Array.from(v);
      p[i] += h; m[i] -= h;
      const at = (arr: Float64Array) => which === 'x' ? loss(arr, w, b) : which === 'w' ? loss(x, arr, b) : loss(x, w, arr);
      return (at(p) - at(m)) / (2 * h);
    });
    const nx = numeric(x, 'x'), nw = numeric(w, 'w'), nb = numeric(b, 'b');
    for (const isa of availableIsas()) {
      withIsa(isa, () => {
        const dx = new Float32Array(x.length), dw = new Float32Array(w.length), db = new Float32Array(s.O);
        conv2dBackward(x, w, R, dx, dw, db, s.N, s.C, s.H, s.W, s.O, s.KH, s.KW, s.stride, s.pad, pv);
        for (const [what, got, want] of [['dx', dx, nx], ['dw', dw, nw], ['db', db, nb]] as const) {
          for (let i = 0; i < got.length; i++) {
            if (!(Math.abs(got[i]! - want[i]!) <= 1e-5 * (1 + Math.abs(want[i]!)))) {
              assert.fail(`conv2dBackward.${what}[${isa}] ${JSON.stringify(s)} at ${i}: ${got[i]} vs numeric ${want[i]}`);
            }
          }
        }
      });
    }
  }
});

// ----------------------------------------------------------------------------- im2col / col2im

test('im2col copies patches (pad values included) and col2im is its adjoint', () => {
  const s: Conv = { N: 2, C: 3, H: 7, W: 6, O: 1, KH: 3, KW: 2, stride: 2, pad: 1 };
  const r = lcg(5);
  const x = rand(s.N * s.C * s.H * s.W, r), pv = Float32Array.of(10, 20, 30);
  const { OH, OW } = convOutputSize(s.H, s.W, s.KH, s.KW, s.stride, s.pad);
  const CKK = s.C * s.KH * s.KW, P = OH * OW;
  const col = new Float32Array(s.N * CKK * P);
  im2col(x, col, s.N, s.C, s.H, s.W, s.KH, s.KW, s.stride, s.pad, pv);
  for (let n = 0; n < s.N; n++) for (let rr = 0; rr < CKK; rr++) for (let p = 0; p < P; p++) {
    const c = Math.floor(rr / (s.KH * s.KW)), kh = Math.floor(rr / s.KW) % s.KH, kw = rr % s.KW;
    const want = xAt(x, s, pv, n, c, Math.floor(p / OW) * s.stride - s.pad + kh, (p % OW) * s.stride - s.pad + kw);
    assert.equal(col[(n * CKK + rr) * P + p], Math.fround(want), `im2col n=${n} r=${rr} p=${p}`);
  }
  // <col2im(c), x> == <c, im2col(x)> with zero padding
  const c = rand(col.length, r), back = new Float32Array(x.length).fill(NaN), col0 = new Float32Array(col.length);
  col2im(c, back, s.N, s.C, s.H, s.W, s.KH, s.KW, s.stride, s.pad);
  im2col(x, col0, s.N, s.C, s.H, s.W, s.KH, s.KW, s.stride, s.pad, null);
  let lhs = 0, rhs = 0, mag = 0;
  for (let i = 0; i < x.length; i++) { lhs += back[i]! * x[i]!; mag += Math.abs(back[i]! * x[i]!); }
  for (let i = 0; i < c.length; i++) rhs += c[i]! * col0[i]!;
  assert.ok(Math.abs(lhs - rhs) <= 1e-5 * (1 + mag), `col2im adjoint: ${lhs} vs ${rhs}`);
});

// ----------------------------------------------------------------------------- max pooling

test('maxpool2dForward: every ISA equals the documented rule exactly (ties, NaN); backward equals central differences', () => {
  const shapes = [[2, 3, 8, 9, 2, 2], [1, 2, 7, 7, 3, 2], [1, 1, 6, 35, 2, 2], [1, 2, 5, 5, 2, 1]] as const;
  let seed = 80;
  for (const [N, C, H, W, k, st] of shapes) {
    const r = lcg(++seed);
    const { OH, OW } = poolOutputSize(H, W, k, st);
    for (const data of ['random', 'ties', 'nan'] as const) {
      const x = Float32Array.from({ length: N * C * H * W }, () => data === 'random' ? r() * 2 - 1 : Math.floor(r() * 5) - 2);
      if (data === 'nan') for (let i = 0; i < x.length; i += 5) x[i] = NaN;
      const yref = new Float32Array(N * C * OH * OW), aref = new Int32Array(yref.length);
      for (let pl = 0; pl < N * C; pl++) for (let oh = 0; oh < OH; oh++) for (let ow = 0; ow < OW; ow++) {
        let best = 0, bi = -1;
        for (let kh = 0; kh < k; kh++) for (let kw = 0; kw < k; kw++) {
          const idx = (oh * st + kh) * W + ow * st + kw, v = x[pl * H * W + idx]!;
          if (bi < 0 || v > best || Number.isNaN(v)) { best = v; bi = idx; }
        }
        yref[(pl * OH + oh) * OW + ow] = best; aref[(pl * OH + oh) * OW + ow] = bi;
      }
      for (const isa of availableIsas()) {
        withIsa(isa, () => {
          const y = new Float32Array(yref.length), am = new Int32Array(yref.length);
          maxpool2dForward(x, y, am, N, C, H, W, k, st);
          sameBits(y, yref, `maxpool2dForward[${isa}] ${[N, C, H, W, k, st]} ${data} values`);
          assert.deepEqual(am, aref, `maxpool2dForward[${isa}] ${[N, C, H, W, k, st]} ${data} argmax`);
        });
      }
    }
    // central differences of L = sum(R * maxpool(x)) on distinct values (no ties within h)
    const x = Float32Array.from({ length: N * C * H * W }, (_, i) => ((i * 7919) % 1009) / 100 - 5);
    const R = rand(N * C * OH * OW, r);
    const y = new Float32Array(R.length), am = new Int32Array(R.length), dx = new Float32Array(x.length).fill(NaN);
    maxpool2dForward(x, y, am, N, C, H, W, k, st);
    maxpool2dBackward(R, am, dx, N, C, H, W, k, st);
    const loss = (xx: Float64Array) => {
      let l = 0;
      for (let pl = 0; pl < N * C; pl++) for (let oh = 0; oh < OH; oh++) for (let ow = 0; ow < OW; ow++) {
        let best = -Infinity;
        for (let kh = 0; kh < k; kh++) for (let kw = 0; kw < k; kw++) best = Math.max(best, xx[pl * H * W + (oh * st + kh) * W + ow * st + kw]!);
        l += R[(pl * OH + oh) * OW + ow]! * best;
      }
      return l;
    };
    const h = 1e-4;
    for (let i = 0; i < x.length; i++) {
      const p = Float64Array.from(x), m = Float64Array.from(x);
      p[i] += h; m[i] -= h;
      const num = (loss(p) - loss(m)) / (2 * h);
      assert.ok(Math.abs(dx[i]! - num) <= 1e-6 * (1 + Math.abs(num)), `maxpool2dBackward ${[N, C, H, W, k, st]} at ${i}: ${dx[i]} vs numeric ${num}`);
    }
  }
});

test('peakProbe counts operations and reports both clocks', () => {
  const r = peakProbe('fma256', 1000, 2);
  assert.equal(r.ops, 2 * 1000 * 12 * 8 * 2);
  assert.ok(r.wallSeconds > 0 && r.cpuSeconds > 0);
  if (availableIsas().includes('avx512')) assert.equal(peakProbe('fma512', 10, 1).ops, 10 * 16 * 16 * 2);
  // the AVX2 int8 rate and the int4 kernels' ceiling: 8 chains of 32 MAC per iteration
  for (const k of ['int8avx2', 'int4avx2'] as const) assert.equal(peakProbe(k, 100, 1).ops, 100 * 8 * 32, k);
});

// ------------------------------------------------------------------------- invalid arguments

type Raw = (...args: unknown[]) => unknown;
function rejects(fn: () => unknown, cls: typeof TypeError | typeof RangeError, name: string, what: string): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof cls, `${what}: expected ${cls.name}, got ${(e as Error)?.constructor?.name}: ${(e as Error)?.message}`);
    assert.ok((e as Error).message.includes(name), `${what}: message should name '${name}': ${(e as Error).message}`);
    return true;
  }, what);
}

/** Each case: the argument list with one argument replaced, the expected class and the name in the message. */
function invalidCases(fname: string, good: unknown[], cases: [index: number, value: unknown, cls: typeof TypeError | typeof RangeError, name: string][],
  wrapper: Raw): void {
  const raw = nativeFn<Raw>(fname);
  raw(...good);       // the good call works through both paths
  wrapper(...good);
  for (const [i, v, cls, name] of cases) {
    const args = good.slice();
    args[i] = v;
    rejects(() => raw(...args), cls, name, `native ${fname} arg ${i} = ${String(v)}`);
    rejects(() => wrapper(...args), cls, name, `wrapper ${fname} arg ${i} = ${String(v)}`);
  }
}

const F = (n: number) => new Float32Array(n);

test('sgemm rejects bad arguments with TypeError/RangeError naming the argument', () => {
  const good = [false, true, 2, 3, 4, 1, F(8), 4, F(12), 4, 0, F(6), 3];
  invalidCases('sgemm', good, [
    [0, 1, TypeError, 'transA'], [1, 'yes', TypeError, 'transB'],
    [2, 0, RangeError, 'M'], [3, -1, RangeError, 'N'], [4, 2.5, TypeError, 'K'],
    [5, NaN, RangeError, 'alpha'], [5, '1', TypeError, 'alpha'], [10, Infinity, RangeError, 'beta'],
    [6, new Float64Array(8), TypeError, 'A'], [6, F(7), RangeError, 'A'], [7, 3, RangeError, 'lda'],
    [8, [1, 2], TypeError, 'B'], [8, F(11), RangeError, 'B'], [9, 0, RangeError, 'ldb'], [9, 3, RangeError, 'ldb'],
    [11, null, TypeError, 'C'], [11, F(5), RangeError, 'C'], [12, 2, RangeError, 'ldc'],
    [2, 2 ** 31, RangeError, 'M'],
  ], sgemm as Raw);
  // C sharing memory with A is refused by the addon
  const buf = F(20);
  rejects(() => sgemm(false, false, 2, 2, 2, 1, buf.subarray(0, 4), 2, F(4), 2, 0, buf.subarray(2, 6), 2), RangeError, 'C', 'C overlaps A');
  // size overflow
  rejects(() => sgemm(false, false, 2 ** 30, 2 ** 30, 2 ** 30, 1, F(4), 2 ** 30, F(4), 2 ** 30, 0, F(4), 2 ** 30), RangeError, 'A', 'overflow');
});

test('conv2dForward / conv2dBackward / im2col / col2im reject bad arguments naming the argument', () => {
  // N=2, C=1, H=W=4, O=2, K=3, stride 1, pad 0 -> OH=OW=2
  const fwd = [F(32), F(18), null, F(16), 2, 1, 4, 4, 2, 3, 3, 1, 0, null];
  invalidCases('conv2dForward', fwd, [
    [0, new Uint8Array(32), TypeError, 'x'], [0, F(31), RangeError, 'x'], [1, F(17), RangeError, 'w'],
    [2, 'b', TypeError, 'bias'], [2, F(1), RangeError, 'bias'], [3, F(15), RangeError, 'y'], [3, undefined, TypeError, 'y'],
    [4, 0, RangeError, 'N'], [5, 1.5, TypeError, 'C'], [6, -4, RangeError, 'H'], [8, 0, RangeError, 'O'],
    [9, 5, RangeError, 'KH'], [10, 0, RangeError, 'KW'], [11, 0, RangeError, 'stride'], [12, -1, RangeError, 'pad'],
    [13, F(2), RangeError, 'padValues'], [13, [0], TypeError, 'padValues'],
  ], conv2dForward as Raw);
  const bwd = [F(32), F(18), F(16), F(32), F(18), F(2), 2, 1, 4, 4, 2, 3, 3, 1, 0, null];
  invalidCases('conv2dBackward', bwd, [
    [2, F(15), RangeError, 'dy'], [2, null, TypeError, 'dy'], [3, F(31), RangeError, 'dx'], [4, new Int32Array(18), TypeError, 'dw'],
    [5, F(1), RangeError, 'db'], [6, 0, RangeError, 'N'], [13, -2, RangeError, 'stride'], [14, 'x', TypeError, 'pad'],
    [15, F(3), RangeError, 'padValues'],
  ], conv2dBackward as Raw);
  // dx sharing memory with dy
  const shared = F(64);
  rejects(() => conv2dBackward(F(32), F(18), shared.subarray(0, 16), shared.subarray(8, 40), null, null, 2, 1, 4, 4, 2, 3, 3, 1, 0, null), RangeError, 'dx', 'dx overlaps dy');
  const i2c = [F(32), F(72), 2, 1, 4, 4, 3, 3, 1, 0, null];  // col: N * C*KH*KW * OH*OW = 2 * 9 * 4
  invalidCases('im2col', i2c, [
    [0, F(31), RangeError, 'x'], [1, F(71), RangeError, 'col'], [1, 7, TypeError, 'col'], [6, 9, RangeError, 'KH'],
    [8, 0, RangeError, 'stride'], [9, -1, RangeError, 'pad'], [10, F(2), RangeError, 'padValues'],
  ], im2col as Raw);
  const c2i = [F(72), F(32), 2, 1, 4, 4, 3, 3, 1, 0];
  invalidCases('col2im', c2i, [
    [0, F(71), RangeError, 'col'], [1, F(31), RangeError, 'x'], [1, new Float64Array(32), TypeError, 'x'], [7, 0, RangeError, 'KW'],
  ], col2im as Raw);
});

test('maxpool2d and peakProbe reject bad arguments naming the argument', () => {
  // N=1, C=2, H=W=4, k=2, stride 2 -> 2x2
  const fwd = [F(32), F(8), new Int32Array(8), 1, 2, 4, 4, 2, 2];
  invalidCases('maxpool2dForward', fwd, [
    [0, F(31), RangeError, 'x'], [1, F(7), RangeError, 'y'], [2, new Uint32Array(8), TypeError, 'argmax'], [2, new Int32Array(7), RangeError, 'argmax'],
    [3, 0, RangeError, 'N'], [7, 5, RangeError, 'k'], [8, 0, RangeError, 'stride'], [7, 'two', TypeError, 'k'],
  ], maxpool2dForward as Raw);
  const bwd = [F(8), new Int32Array(8), F(32), 1, 2, 4, 4, 2, 2];
  invalidCases('maxpool2dBackward', bwd, [
    [0, F(7), RangeError, 'dy'], [1, new Int32Array([0, 1, 2, 3, 4, 5, 6, 16]), RangeError, 'argmax'], [1, new Int32Array([-1, 0, 0, 0, 0, 0, 0, 0]), RangeError, 'argmax'],
    [2, F(31), RangeError, 'dx'], [2, null, TypeError, 'dx'], [6, 0, RangeError, 'W'],
  ], maxpool2dBackward as Raw);
  const raw = nativeFn<Raw>('peakProbe');
  for (const call of [raw, peakProbe as Raw]) {
    rejects(() => call('fma1024', 10, 1), RangeError, 'kind', 'unknown kind');
    rejects(() => call(3, 10, 1), TypeError, 'kind', 'kind type');
    rejects(() => call('fma256', 0, 1), RangeError, 'iters', 'iters 0');
    rejects(() => call('fma256', 10, 0), RangeError, 'threads', 'threads 0');
    rejects(() => call('fma256', 1.5, 1), TypeError, 'iters', 'iters fraction');
  }
});
