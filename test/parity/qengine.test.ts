// Int4 engine kernels against a plain JavaScript reference under every ISA: int32 accumulators
// exact, the float64 epilogue and codes bit for bit (JavaScript numbers are float64 and never fuse
// a multiply into an add, so they reproduce native/kernels/qrequant.h exactly).
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { nativeFn } from '../../src/native/binding';
import { availableIsas, getThreads, setThreads, withIsa } from '../../src/native/info';
import { packInt } from '../../src/native/kernels-quant';
import {
  QWeights, addRequantU8, blockedItems, convOut, fromBlocked, globalSumU8, maxpool2dU8, maxpool2dU8Blocked, qconv2d, qconv2dPool,
  qgemm, qgroupsEpilogue, qlinearI32, requantU8, toBlocked, type Epilogue,
} from '../../src/native/kernels-qengine';

const f = Math.fround;

function rhe(v: number): number {
  const fl = Math.floor(v), d = v - fl;
  if (d > 0.5) return fl + 1;
  if (d < 0.5) return fl;
  return fl % 2 === 0 ? fl : fl + 1;
}
/** The spec (qrequant.h): min(rhe(max(fl(y * fl(1 / actScale)), 0)), levels), NaN -> 0. */
function requant(y: number, actScale: number, levels: number): number {
  const t = y * (1 / actScale);
  return Math.min(rhe(t > 0 ? t : 0), levels);
}
/** y = fl(fl(s * acc) + b) in float64. */
function affine(acc: number, s: number, b: number): number { return s * acc + b; }

function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; return s / 2 ** 32; };
}
const randU8 = (n: number, max: number, r: () => number) => Uint8Array.from({ length: n }, () => Math.floor(r() * (max + 1)));
const randCodes = (n: number, lo: number, hi: number, r: () => number) => Int8Array.from({ length: n }, () => lo + Math.floor(r() * (hi - lo + 1)));

function sameF32(x: Float32Array, y: Float32Array, what: string): void {
  const ux = new Uint32Array(x.buffer, x.byteOffset, x.length), uy = new Uint32Array(y.buffer, y.byteOffset, y.length);
  assert.equal(x.length, y.length, what);
  for (let i = 0; i < x.length; i++) if (ux[i] !== uy[i]) assert.fail(`${what}: element ${i}: ${x[i]} vs ${y[i]}`);
}

test('qgemm: int32, float and codes equal the JS reference under every ISA, both layouts', () => {
  const r = lcg(11);
  for (const [M, N, K] of [[1, 1, 1], [17, 9, 31], [49, 8, 64], [100, 19, 75], [5, 33, 129]] as const) {
    const A = randU8(M * K, 255, r);
    const W = randCodes(N * K, -8, 7, r);
    const scale = Float64Array.from({ length: N }, (_, n) => 0.0007 * (n + 1));
    const bias = Float64Array.from({ length: N }, () => r() - 0.5);
    const actRange = 6, levels = 15, actScale = f(actRange / levels);
    const acc = new Int32Array(M * N), yf = new Float32Array(M * N), q = new Uint8Array(M * N);
    for (let m = 0; m < M; m++) for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += A[m * K + k]! * W[n * K + k]!;
      acc[m * N + n] = s;
      const y = affine(s, scale[n]!, bias[n]!);
      yf[m * N + n] = y;  // float32 rounding of the float64 value, as the 'float' mode stores it
      q[m * N + n] = requant(y, actScale, levels);
    }
    const zeros = q.reduce((z, v) => z + (v === 0 ? 1 : 0), 0);
    for (const isa of availableIsas()) {
      withIsa(isa, () => {
        const w = QWeights.fromCodes(W, N, K);
        const what = `${isa} (${w.isa}) M=${M} N=${N} K=${K}`;
        assert.deepEqual(qgemm(A, M, w, { mode: 'int32' }).out, acc, what);
        sameF32(qgemm(A, M, w, { mode: 'float', scale, bias }).out as Float32Array, yf, what);
        const c = qgemm(A, M, w, { mode: 'codes', scale, bias, actBits: 4, actRange });
        assert.deepEqual(c.out, q, what);
        assert.equal(c.zeros, zeros, what);
        // [N][M] layout
        const t = qgemm(A, M, w, { mode: 'int32' }, { layout: 'nm' }).out;
        for (let m = 0; m < M; m++) for (let n = 0; n < N; n++) assert.equal(t[n * M + m], acc[m * N + n]);
      });
    }
  }
});

test('repacking int4 packed weights (odd sizes, rows starting mid-byte) equals packing the codes', () => {
  const r = lcg(5);
  const N = 7, K = 13;
  const W = randCodes(N * K, -8, 7, r);
  W[0] = -8; W[1] = 7;
  const packed = packInt(W, 4);
  const A = randU8(3 * K, 15, r);
  for (const isa of availableIsas()) {
    withIsa(isa, () => {
      const a = QWeights.fromPacked(packed, 4, N, K), b = QWeights.fromCodes(W, N, K);
      assert.deepEqual(a.buffer.subarray(64), b.buffer.subarray(64), isa); // the header records the source width
      assert.equal(a.isa, b.isa);
      assert.deepEqual(qgemm(A, 3, a, { mode: 'int32' }).out, qgemm(A, 3, b, { mode: 'int32' }).out);
    });
  }
  // 2-bit and 8-bit layers
  const W2 = randCodes(N * K, -2, 1, r), W8 = randCodes(N * K, -128, 127, r);
  assert.deepEqual(QWeights.fromPacked(packInt(W2, 2), 2, N, K).buffer.subarray(64), QWeights.fromCodes(W2, N, K).buffer.subarray(64));
  assert.deepEqual(QWeights.fromPacked(packInt(W8, 8), 8, N, K).buffer.subarray(64), QWeights.fromCodes(W8, N, K).buffer.subarray(64));
});

function convRef(x: Uint8Array, B: number, C: number, H: number, W: number, w: Int8Array, O: number, k: number, s: number, p: number): Int32Array {
  const OH = Math.floor((H + 2 * p - k) / s) + 1, OW = Math.floor((W + 2 * p - k) / s) + 1;
  const y = new Int32Array(B * O * OH * OW);
  for (let b = 0; b < B; b++) for (let o = 0; o < O; o++) for (let oh = 0; oh < OH; oh++) for (let ow = 0; ow < OW; ow++) {
    let acc = 0;
    for (let c = 0; c < C; c++) for (let i = 0; i < k; i++) {
      const ih = oh * s - p + i;
      if (ih < 0 || ih >= H) continue;
      for (let j = 0; j < k; j++) {
        const iw = ow * s - p + j;
        if (iw < 0 || iw >= W) continue;
        acc += x[((b * C + c) * H + ih) * W + iw]! * w[((o * C + c) * k + i) * k + j]!;
      }
    }
    y[((b * O + o) * OH + oh) * OW + ow] = acc;
  }
  return y;
}

test('qconv2d equals a direct convolution (LeNet and ResNet shapes, strides, padding) under every ISA', () => {
  const r = lcg(21);
  const cases = [
    { B: 2, C: 1, H: 28, W: 28, O: 6, k: 5, s: 1, p: 2, max: 255 }, // first layer on raw pixels
    { B: 3, C: 6, H: 14, W: 14, O: 16, k: 5, s: 1, p: 0, max: 15 },
    { B: 2, C: 8, H: 16, W: 16, O: 16, k: 3, s: 2, p: 1, max: 15 },
    { B: 9, C: 16, H: 4, W: 4, O: 12, k: 3, s: 1, p: 1, max: 15 },
    { B: 4, C: 8, H: 8, W: 8, O: 16, k: 1, s: 2, p: 0, max: 15 },
    { B: 1, C: 3, H: 5, W: 9, O: 5, k: 3, s: 2, p: 2, max: 255 },
    { B: 3, C: 4, H: 8, W: 8, O: 8, k: 3, s: 1, p: 1, max: 15 }, // 8-pixel output rows
    { B: 2, C: 3, H: 32, W: 32, O: 8, k: 3, s: 1, p: 1, max: 255 }, // 16-pixel chunks inside a row
  ];
  for (const t of cases) {
    const x = randU8(t.B * t.C * t.H * t.W, t.max, r);
    const w = randCodes(t.O * t.C * t.k * t.k, -8, 7, r);
    const ref = convRef(x, t.B, t.C, t.H, t.W, w, t.O, t.k, t.s, t.p);
    const scale = Float64Array.from({ length: t.O }, () => 0.002 + r() * 0.01);
    const bias = Float64Array.from({ length: t.O }, () => r() - 0.3);
    const qref = Uint8Array.from(ref, (acc, i) => {
      const o = Math.floor(i / (ref.length / t.B / t.O)) % t.O;
      return requant(affine(acc, scale[o]!, bias[o]!), f(2 / 15), 15);
    });
    for (const isa of availableIsas()) {
      withIsa(isa, () => {
        const qw = QWeights.fromCodes(w, t.O, t.C * t.k * t.k);
        const conv = { kh: t.k, kw: t.k, stride: t.s, pad: t.p };
        const shape = { B: t.B, C: t.C, H: t.H, W: t.W };
        const res = qconv2d(x, shape, qw, conv, { mode: 'int32' });
        assert.deepEqual(res.out, ref, `${isa} ${JSON.stringify(t)}`);
        assert.deepEqual({ OH: res.OH, OW: res.OW }, convOut(t.H, t.W, conv));
        const c = qconv2d(x, shape, qw, conv, { mode: 'codes', scale, bias, actBits: 4, actRange: 2 });
        assert.deepEqual(c.out, qref, `${isa} codes ${JSON.stringify(t)}`);
        assert.equal(c.zeros, qref.filter((v) => v === 0).length);
      });
    }
  }
});

function withThreads<T>(n: number, fn: () => T): T {
  const prev = getThreads();
  setThreads(n);
  try { return fn(); } finally { setThreads(prev); }
}

test('qconv2dPool equals the JS reference of conv + requant + max pool under every ISA and thread count', () => {
  const r = lcg(27);
  // batches that are not multiples of 16 (the direct kernel puts 16 images in the vector lanes),
  // pools that tile the output (fused) and that do not (conv, then pool), > 32 channels (GEMM path)
  const cases = [
    { B: 35, C: 1, H: 28, W: 28, O: 6, k: 5, s: 1, p: 2, pk: 2, ps: 2, max: 255 },
    { B: 17, C: 6, H: 14, W: 14, O: 16, k: 5, s: 1, p: 0, pk: 2, ps: 2, max: 15 },
    { B: 3, C: 5, H: 9, W: 11, O: 7, k: 3, s: 1, p: 1, pk: 3, ps: 2, max: 15 },
    { B: 20, C: 3, H: 12, W: 12, O: 9, k: 3, s: 2, p: 1, pk: 2, ps: 1, max: 255 },
    { B: 5, C: 2, H: 9, W: 7, O: 33, k: 2, s: 1, p: 0, pk: 2, ps: 2, max: 15 },
    { B: 1, C: 4, H: 6, W: 6, O: 3, k: 3, s: 1, p: 1, pk: 3, ps: 3, max: 15 },
  ];
  for (const t of cases) {
    const x = randU8(t.B * t.C * t.H * t.W, t.max, r);
    const w = randCodes(t.O * t.C * t.k * t.k, -8, 7, r);
    const acc = convRef(x, t.B, t.C, t.H, t.W, w, t.O, t.k, t.s, t.p);
    // both requant directions (negative scales reverse the order of the codes), a NaN bias
    const scale = Float64Array.from({ length: t.O }, (_, o) => (o % 3 === 1 ? -1 : 1) * (0.002 + r() * 0.01));
    const bias = Float64Array.from({ length: t.O }, (_, o) => (o === 4 ? NaN : r() - 0.3));
    const { OH, OW } = convOut(t.H, t.W, { kh: t.k, kw: t.k, stride: t.s, pad: t.p });
    const PH = Math.floor((OH - t.pk) / t.ps) + 1, PW = Math.floor((OW - t.pk) / t.ps) + 1;
    const codes = Uint8Array.from(acc, (a, i) => requant(affine(a, scale[Math.floor(i / (OH * OW)) % t.O]!, bias[Math.floor(i / (OH * OW)) % t.O]!), f(2 / 15), 15));
    const want = new Uint8Array(t.B * t.O * PH * PW);
    for (let pl = 0; pl < t.B * t.O; pl++) for (let a = 0; a < PH; a++) for (let b = 0; b < PW; b++) {
      let m = 0;
      for (let i = 0; i < t.pk; i++) for (let j = 0; j < t.pk; j++) m = Math.max(m, codes[(pl * OH + a * t.ps + i) * OW + b * t.ps + j]!);
      want[(pl * PH + a) * PW + b] = m;
    }
    const wantZeros = codes.filter((v) => v === 0).length;
    assert.ok(wantZeros > 0 && wantZeros < codes.length, `a mix of zero and non-zero codes in ${JSON.stringify(t)}`);
    for (const isa of availableIsas()) {
      withIsa(isa, () => {
        const qw = QWeights.fromCodes(w, t.O, t.C * t.k * t.k);
        for (const threads of [1, 2]) {
          const res = withThreads(threads, () => qconv2dPool(x, { B: t.B, C: t.C, H: t.H, W: t.W }, qw, { kh: t.k, kw: t.k, stride: t.s, pad: t.p },
            { k: t.pk, stride: t.ps }, { mode: 'codes', scale, bias, actBits: 4, actRange: 2 }));
          const what = `${isa} threads=${threads} ${JSON.stringify(t)}`;
          assert.deepEqual({ PH: res.PH, PW: res.PW }, { PH, PW }, what);
          assert.deepEqual(res.out, want, what);
          assert.equal(res.zeros, wantZeros, `${what}: zeros before pooling`);
        }
      });
    }
  }
});

test('per-position term (input layer border correction): conv float / codes and conv + pool equal the JS reference, every ISA and thread count', () => {
  const r = lcg(41);
  const cases = [
    { B: 19, C: 1, H: 28, W: 28, O: 6, k: 5, s: 1, p: 2, pk: 2, ps: 2 },
    { B: 4, C: 3, H: 9, W: 10, O: 7, k: 3, s: 2, p: 2, pk: 2, ps: 1 },
  ];
  for (const t of cases) {
    const x = randU8(t.B * t.C * t.H * t.W, 255, r);
    const w = randCodes(t.O * t.C * t.k * t.k, -8, 7, r);
    const acc = convRef(x, t.B, t.C, t.H, t.W, w, t.O, t.k, t.s, t.p);
    const scale = Float64Array.from({ length: t.O }, (_, o) => (o % 3 === 1 ? -1 : 1) * (0.0005 + r() * 0.002));
    const bias = Float64Array.from({ length: t.O }, () => r() - 0.3);
    const { OH, OW } = convOut(t.H, t.W, { kh: t.k, kw: t.k, stride: t.s, pad: t.p });
    const P = OH * OW;
    const corr = Float64Array.from({ length: t.O * P }, () => (r() - 0.5) * 0.8);
    const y = Float64Array.from(acc, (v, i) => { const o = Math.floor(i / P) % t.O; return affine(v, scale[o]!, bias[o]!) + corr[o * P + (i % P)]!; });
    const codes = Uint8Array.from(y, (v) => requant(v, f(2 / 15), 15));
    const PH = Math.floor((OH - t.pk) / t.ps) + 1, PW = Math.floor((OW - t.pk) / t.ps) + 1;
    const pooled = new Uint8Array(t.B * t.O * PH * PW);
    for (let pl = 0; pl < t.B * t.O; pl++) for (let a = 0; a < PH; a++) for (let b = 0; b < PW; b++) {
      let m = 0;
      for (let i = 0; i < t.pk; i++) for (let j = 0; j < t.pk; j++) m = Math.max(m, codes[(pl * OH + a * t.ps + i) * OW + b * t.ps + j]!);
      pooled[(pl * PH + a) * PW + b] = m;
    }
    const zeros = codes.filter((v) => v === 0).length;
    assert.ok(zeros > 0 && zeros < codes.length, 'a mix of zero and non-zero codes');
    for (const isa of availableIsas()) {
      withIsa(isa, () => {
        const qw = QWeights.fromCodes(w, t.O, t.C * t.k * t.k);
        const shape = { B: t.B, C: t.C, H: t.H, W: t.W }, conv = { kh: t.k, kw: t.k, stride: t.s, pad: t.p };
        for (const threads of [1, 2]) {
          withThreads(threads, () => {
            const what = `${isa} threads=${threads} ${JSON.stringify(t)}`;
            sameF32(qconv2d(x, shape, qw, conv, { mode: 'float', scale, bias, corr }).out as Float32Array, Float32Array.from(y), `${what} float`);
            const c = qconv2d(x, shape, qw, conv, { mode: 'codes', scale, bias, actBits: 4, actRange: 2, corr });
            assert.deepEqual(c.out, codes, `${what} codes`);
            assert.equal(c.zeros, zeros, `${what} zeros`);
            const pr = qconv2dPool(x, shape, qw, conv, { k: t.pk, stride: t.ps }, { mode: 'codes', scale, bias, actBits: 4, actRange: 2, corr });
            assert.deepEqual(pr.out, pooled, `${what} pooled`);
            assert.equal(pr.zeros, zeros, `${what} pooled zeros`);
          });
        }
        assert.throws(() => qconv2d(x, shape, qw, conv, { mode: 'float', scale, bias, corr: corr.subarray(1) }), /epilogue\.corr/);
        assert.throws(() => qconv2d(x, shape, qw, conv, { mode: 'int32', corr }), RangeError);
      });
    }
  }
});

test('blocked layout (16 images in the lanes) in and out of conv, conv + pool, GEMM and max pool equals the plain layout', () => {
  const r = lcg(29);
  const B = 19, C = 2, H = 12, W = 12, O = 5, k = 3, N = 11;
  const x = randU8(B * C * H * W, 255, r), A = randU8(B * 50, 15, r);
  const wc = randCodes(O * C * k * k, -8, 7, r), wg = randCodes(N * 50, -8, 7, r);
  const ep = (n: number): Epilogue => ({ mode: 'codes', scale: Float64Array.from({ length: n }, () => 0.003 + r() * 0.01),
    bias: Float64Array.from({ length: n }, () => r() - 0.3), actBits: 4, actRange: 2 });
  const ec = ep(O), eg = ep(N);
  const conv = { kh: k, kw: k, stride: 1, pad: 1 }, shape = { B, C, H, W };
  // junk in the lanes past B of the blocked inputs: it must not reach real lanes
  const junk = (b: U8Like, E: number) => { for (let e = 0; e < E; e++) for (let i = B % 16; i < 16; i++) b[(Math.floor(B / 16) * E + e) * 16 + i] = 200 + (e % 50); return b; };
  type U8Like = Uint8Array;
  const xb = junk(toBlocked(x, B, C * H * W), C * H * W), Ab = junk(toBlocked(A, B, 50), 50);
  assert.deepEqual(fromBlocked(xb, B, C * H * W), x);
  for (const isa of availableIsas()) {
    withIsa(isa, () => {
      const qc = QWeights.fromCodes(wc, O, C * k * k), qg = QWeights.fromCodes(wg, N, 50);
      const c0 = qconv2d(x, shape, qc, conv, ec), p0 = qconv2dPool(x, shape, qc, conv, { k: 2, stride: 2 }, ec), g0 = qgemm(A, B, qg, eg);
      for (const [inBlocked, outBlocked] of [[true, false], [false, true], [true, true]] as const) {
        const bl = { inBlocked, outBlocked }, what = `${isa} ${JSON.stringify(bl)}`;
        const un = (v: U8Like, E: number) => (outBlocked ? fromBlocked(v, B, E) : v);
        const c1 = qconv2d(inBlocked ? xb : x, shape, qc, conv, ec, undefined, bl);
        assert.equal(c1.out.length, (outBlocked ? blockedItems(B) : B) * O * 144, what);
        assert.deepEqual(un(c1.out as U8Like, O * 144), c0.out, `conv ${what}`);
        assert.equal(c1.zeros, c0.zeros, `conv zeros ${what}`);
        const p1 = qconv2dPool(inBlocked ? xb : x, shape, qc, conv, { k: 2, stride: 2 }, ec, undefined, bl);
        assert.deepEqual(un(p1.out, O * 36), p0.out, `conv+pool ${what}`);
        assert.equal(p1.zeros, p0.zeros, `conv+pool zeros ${what}`);
        const g1 = qgemm(inBlocked ? Ab : A, B, qg, eg, bl);
        assert.deepEqual(un(g1.out as U8Like, N), g0.out, `gemm ${what}`);
        assert.equal(g1.zeros, g0.zeros, `gemm zeros ${what}`);
      }
      assert.deepEqual(fromBlocked(maxpool2dU8Blocked(xb, B, C, H, W, 2, 2), B, C * 36), maxpool2dU8(x, B * C, H, W, 2, 2), `${isa} maxpool`);
    });
  }
  assert.throws(() => qgemm(Ab, B, QWeights.fromCodes(wg, N, 50), eg, { inBlocked: true, lda: 51 }), { name: 'RangeError', message: /lda/ });
  assert.throws(() => qgemm(A, B, QWeights.fromCodes(wg, N, 50), eg, { outBlocked: true, layout: 'nm' }), { name: 'RangeError', message: /layout/ });
  assert.throws(() => qconv2d(x, shape, QWeights.fromCodes(wc, O, C * k * k), conv, ec, undefined, { inBlocked: true }), { name: 'RangeError', message: /x/ });
  assert.throws(() => qconv2d(x, shape, QWeights.fromCodes(wc, O, C * k * k), conv, ec, undefined, { inBlocked: 1 as unknown as boolean }), { name: 'TypeError', message: /inBlocked/ });
  const rawConv = nativeFn<(...x: unknown[]) => unknown>('qconv2d');
  assert.throws(() => rawConv(x, B, C, H, W, QWeights.fromCodes(wc, O, C * k * k).buffer, O, k, k, 1, 1, 'codes', new Uint8Array(B * O * 144), ec.scale, ec.bias, 4, 2, false, true), { name: 'RangeError', message: /out/ });
  assert.throws(() => rawConv(x, B, C, H, W, QWeights.fromCodes(wc, O, C * k * k).buffer, O, k, k, 1, 1, 'codes', new Uint8Array(B * O * 144), ec.scale, ec.bias, 4, 2, 'yes'), { name: 'TypeError', message: /inBlocked/ });
});

test('requantU8: ties to even, clipping, NaN and negative values to 0, equal to the spec under every ISA', () => {
  const r = lcg(8);
  const n = 4099;
  // actRange 3.75: actScale 0.25 (inv 4, exact), so (k + 0.5) * 0.25 sits exactly on a tie
  const y = Float64Array.from({ length: n }, (_, i) => (i % 5 === 0 ? (Math.floor(r() * 17) + 0.5) * 0.25 : i % 97 === 1 ? NaN : (r() - 0.3) * 4.5));
  const want = Uint8Array.from(y, (v) => requant(v, 0.25, 15));
  assert.equal(requant(2.5 * 0.25, 0.25, 15), 2);
  assert.equal(requant(3.5 * 0.25, 0.25, 15), 4);
  for (const isa of availableIsas()) {
    withIsa(isa, () => {
      const { out: q, zeros } = requantU8(y, 4, 3.75);
      assert.deepEqual(q, want, isa);
      assert.equal(zeros, want.filter((v) => v === 0).length);
    });
  }
});

test('residual add + requant (codes and int32 accumulators with per-channel epilogues), channel groups, max pool, global sums, int32 linear equal the JS reference', () => {
  const r = lcg(33);
  const C = 3, P = 37, B = 5, n = B * C * P;
  const ca = randU8(n, 15, r), cb = randU8(n, 15, r);
  const accA = Int32Array.from({ length: n }, () => Math.floor(r() * 4000) - 2000), accB = Int32Array.from({ length: n }, () => Math.floor(r() * 4000) - 2000);
  const sc = (k: number) => Float64Array.from({ length: C }, (_, c) => (c === 1 ? -1 : 1) * (0.0007 + 0.0003 * c + k * 0.0001));
  const bi = () => Float64Array.from({ length: C }, () => r() - 0.5);
  const sa = f(0.21), sb = f(0.17), actScale = f(3 / 15);
  type In = { codes: Uint8Array; scale: number } | { acc: Int32Array; scale: Float64Array; bias: Float64Array };
  const a1: In = { codes: ca, scale: sa }, b1: In = { codes: cb, scale: sb };
  const a2: In = { acc: accA, scale: sc(1), bias: bi() }, b2: In = { acc: accB, scale: sc(2), bias: bi() };
  const deq = (v: In, i: number) => {
    if ('codes' in v) return v.codes[i]! * v.scale;
    const c = Math.floor(i / P) % C;
    return v.scale[c]! * v.acc[i]! + v.bias[c]!;
  };
  for (const isa of availableIsas()) {
    withIsa(isa, () => {
      for (const [x, y] of [[a1, b1], [a1, b2], [a2, b1], [a2, b2]] as const) {
        for (const threads of [1, 2]) {
          const { out, zeros } = withThreads(threads, () => addRequantU8(x, y, C, P, 4, 3));
          const want = Uint8Array.from({ length: n }, (_, i) => requant(deq(x, i) + deq(y, i), actScale, 15));
          assert.deepEqual(out, want, `${isa} threads=${threads}`);
          assert.equal(zeros, want.filter((v) => v === 0).length);
        }
      }
      // channel groups of the input layer: G accumulator arrays [B][O][P], a per-position term
      const G = 3, O = 4, PP = 11, BB = 2, tot = BB * O * PP;
      const acc = Int32Array.from({ length: G * tot }, () => Math.floor(r() * 30000) - 15000);
      const gs = Float64Array.from({ length: G * O }, () => 0.00004 + r() * 0.0001), gb = Float64Array.from({ length: O }, () => r() - 0.5);
      const corr = Float64Array.from({ length: O * PP }, () => (r() - 0.5) * 0.3);
      const yg = Float64Array.from({ length: tot }, (_, i) => {
        const o = Math.floor(i / PP) % O;
        let v = gs[o]! * acc[i]! + gb[o]!;
        for (let g = 1; g < G; g++) v = v + gs[g * O + o]! * acc[g * tot + i]!;
        return v + corr[o * PP + (i % PP)]!;
      });
      sameF32(qgroupsEpilogue(acc, G, BB, O, PP, gs, gb, corr, { mode: 'float' }).out as Float32Array, Float32Array.from(yg), `${isa} groups float`);
      assert.deepEqual(qgroupsEpilogue(acc, G, BB, O, PP, gs, gb, corr, { mode: 'codes', actBits: 4, actRange: 3 }).out,
        Uint8Array.from(yg, (v) => requant(v, actScale, 15)), `${isa} groups codes`);
      // max pool 2x2/2 on 6 planes of 28x28 and 3x3/2 on 10x11
      for (const [planes, H, W, k, s] of [[6, 28, 28, 2, 2], [2, 10, 11, 3, 2], [3, 7, 9, 2, 2]] as const) {
        const x = randU8(planes * H * W, 15, r);
        const OH = Math.floor((H - k) / s) + 1, OW = Math.floor((W - k) / s) + 1;
        const want = new Uint8Array(planes * OH * OW);
        for (let p = 0; p < planes; p++) for (let a = 0; a < OH; a++) for (let b = 0; b < OW; b++) {
          let m = 0;
          for (let i = 0; i < k; i++) for (let j = 0; j < k; j++) m = Math.max(m, x[(p * H + a * s + i) * W + b * s + j]!);
          want[(p * OH + a) * OW + b] = m;
        }
        assert.deepEqual(maxpool2dU8(x, planes, H, W, k, s), want, `${isa} maxpool ${H}x${W} k${k}`);
      }
    });
  }
  // global sums: [5 planes][16]
  const x = randU8(5 * 16, 15, r);
  const sums = globalSumU8(x, 5, 16);
  for (let p = 0; p < 5; p++) assert.equal(sums[p], x.subarray(p * 16, p * 16 + 16).reduce((s, v) => s + v, 0));
  // linear on int32 sums
  const W = randCodes(3 * 16, -8, 7, r);
  const A = Int32Array.from({ length: 2 * 16 }, () => Math.floor(r() * 240));
  const scale = Float64Array.of(0.01, 0.02, 0.03), bias = Float64Array.of(0.5, -0.5, 0);
  const y = qlinearI32(A, 2, W, 3, { mode: 'float', scale, bias }).out as Float32Array;
  const yc = qlinearI32(A, 2, W, 3, { mode: 'codes', scale, bias, actBits: 4, actRange: 3 }).out as Uint8Array;
  for (let m = 0; m < 2; m++) for (let n2 = 0; n2 < 3; n2++) {
    let acc = 0;
    for (let k = 0; k < 16; k++) acc += A[m * 16 + k]! * W[n2 * 16 + k]!;
    assert.equal(y[m * 3 + n2], f(affine(acc, scale[n2]!, bias[n2]!)));
    assert.equal(yc[m * 3 + n2], requant(affine(acc, scale[n2]!, bias[n2]!), actScale, 15));
  }
});

test('invalid arguments throw TypeError / RangeError naming the argument', () => {
  const w = QWeights.fromCodes(new Int8Array(6), 2, 3);
  const ep: Epilogue = { mode: 'float', scale: new Float64Array(2), bias: new Float64Array(2) };
  assert.throws(() => qgemm(new Uint8Array(5), 2, w, ep), { name: 'RangeError', message: /A/ });
  assert.throws(() => qgemm(new Int8Array(6) as unknown as Uint8Array, 2, w, ep), { name: 'TypeError', message: /A/ });
  assert.throws(() => qgemm(new Uint8Array(6), 2, w, { mode: 'float', scale: new Float64Array(3), bias: new Float64Array(2) }), { name: 'RangeError', message: /scale/ });
  assert.throws(() => qgemm(new Uint8Array(6), 2, w, { mode: 'codes', scale: new Float64Array(2), bias: new Float64Array(2), actRange: 0 }), { name: 'RangeError', message: /actRange/ });
  assert.throws(() => qgemm(new Uint8Array(6), 2, w, { mode: 'codes', scale: new Float64Array(2), bias: new Float64Array(2), actBits: 9, actRange: 1 }), { name: 'RangeError', message: /actBits/ });
  assert.throws(() => qgemm(new Uint8Array(6), 2, w, { mode: 'x' as 'int32' }), { name: 'RangeError', message: /mode/ });
  assert.throws(() => qgemm(new Uint8Array(6), 2, w, ep, { out: new Float32Array(3) }), { name: 'RangeError', message: /out/ });
  assert.throws(() => qgemm(new Uint8Array(6), 2, w, { mode: 'int32' }, { out: new Float32Array(4) }), { name: 'TypeError', message: /out/ });
  assert.throws(() => qgemm(new Uint8Array(6), 2, w, ep, { layout: 'km' as 'mn' }), { name: 'RangeError', message: /layout/ });
  assert.throws(() => qgemm(new Uint8Array(6), 2, new QWeights(2, 3), ep), { name: 'RangeError', message: /repack/ });
  assert.throws(() => new QWeights(2, 70000), { name: 'RangeError', message: /K/ });
  assert.throws(() => new QWeights(2, 3).repack(new Uint8Array(2), 4), { name: 'RangeError', message: /packed/ });
  assert.throws(() => qconv2d(new Uint8Array(9), { B: 1, C: 1, H: 3, W: 3 }, w, { kh: 3, kw: 3, stride: 1, pad: 0 }, { mode: 'int32' }), { name: 'RangeError', message: /K/ });
  assert.throws(() => maxpool2dU8(new Uint8Array(4), 1, 2, 2, 3, 1), { name: 'RangeError', message: /k/ });
  const w9 = QWeights.fromCodes(new Int8Array(18), 2, 9);
  const ep9: Epilogue = { mode: 'codes', scale: new Float64Array(2), bias: new Float64Array(2), actRange: 1 };
  const conv3 = { kh: 3, kw: 3, stride: 1, pad: 0 };
  assert.throws(() => qconv2dPool(new Uint8Array(16), { B: 1, C: 1, H: 4, W: 4 }, w9, conv3, { k: 3, stride: 1 }, ep9), { name: 'RangeError', message: /pool.k/ });
  assert.throws(() => qconv2dPool(new Uint8Array(16), { B: 1, C: 1, H: 4, W: 4 }, w9, conv3, { k: 2, stride: 0 }, ep9), { name: 'RangeError', message: /pool.stride/ });
  assert.throws(() => qconv2dPool(new Uint8Array(16), { B: 1, C: 1, H: 4, W: 4 }, w9, conv3, { k: 2, stride: 2 }, { mode: 'float', scale: new Float64Array(2), bias: new Float64Array(2) }), { name: 'RangeError', message: /codes/ });
  assert.throws(() => qconv2dPool(new Uint8Array(15), { B: 1, C: 1, H: 4, W: 4 }, w9, conv3, { k: 2, stride: 2 }, ep9), { name: 'RangeError', message: /x/ });
  assert.throws(() => qconv2dPool(new Uint8Array(16), { B: 1, C: 1, H: 4, W: 4 }, w9, conv3, { k: 2, stride: 2 }, ep9, new Uint8Array(3)), { name: 'RangeError', message: /out/ });
  const rawPool = nativeFn<(...x: unknown[]) => unknown>('qconv2dPool');
  assert.throws(() => rawPool(new Uint8Array(16), 1, 1, 4, 4, w9.buffer, 2, 3, 3, 1, 0, 3, 1, new Uint8Array(2), new Float64Array(2), new Float64Array(2), 4, 1), { name: 'RangeError', message: /poolK/ });
  assert.throws(() => rawPool(new Uint8Array(16), 1, 1, 4, 4, w9.buffer, 2, 3, 3, 1, 0, 2, 2, new Uint8Array(3), new Float64Array(2), new Float64Array(2), 4, 1), { name: 'RangeError', message: /out/ });
  assert.throws(() => rawPool(new Uint8Array(16), 1, 1, 4, 4, w9.buffer, 2, 3, 3, 1, 0, 2, 2, new Uint8Array(2), new Float64Array(2), new Float64Array(2), 4, 0), { name: 'RangeError', message: /actRange/ });
  assert.throws(() => addRequantU8({ codes: new Uint8Array(3), scale: 1 }, { codes: new Uint8Array(4), scale: 1 }, 1, 3, 4, 1), { name: 'RangeError', message: /b/ });
  assert.throws(() => addRequantU8({ codes: new Uint8Array(4), scale: 1 }, { codes: new Uint8Array(4), scale: 1 }, 1, 3, 4, 1), { name: 'RangeError', message: /planes/ });
  assert.throws(() => addRequantU8({ acc: new Int32Array(4), scale: new Float64Array(1), bias: new Float64Array(1) }, { codes: new Uint8Array(4), scale: 1 }, 2, 2, 4, 1), { name: 'RangeError', message: /a\.scale/ });
  assert.throws(() => requantU8(new Float64Array(3), 4, -1), { name: 'RangeError', message: /actRange/ });
  assert.throws(() => requantU8(new Float32Array(3) as unknown as Float64Array, 4, 1), { name: 'TypeError', message: /y/ });
  const rawAdd = nativeFn<(...x: unknown[]) => unknown>('addRequantU8');
  assert.throws(() => rawAdd(new Float32Array(4), 1, null, null, new Uint8Array(4), 1, null, null, 1, 4, 4, 1, new Uint8Array(4)), { name: 'TypeError', message: /a/ });
  // the addon checks on its own (callers that bypass the TS layer), including a corrupted buffer
  const raw = nativeFn<(...x: unknown[]) => unknown>('qgemm');
  const bad = w.buffer.slice();
  bad[0] = 0;
  assert.throws(() => raw(new Uint8Array(6), 2, 3, 3, bad, 2, 'int32', new Int32Array(4), 'mn', null, null, 4, 1), { name: 'RangeError', message: /qw/ });
  assert.throws(() => raw(new Uint8Array(6), 2, 3, 3, w.buffer, 3, 'int32', new Int32Array(6), 'mn', null, null, 4, 1), { name: 'RangeError', message: /shape/ });
  assert.throws(() => raw(new Uint8Array(6), 2, 3, 2, w.buffer, 2, 'int32', new Int32Array(4), 'mn', null, null, 4, 1), { name: 'RangeError', message: /lda/ });
  const rawConv = nativeFn<(...x: unknown[]) => unknown>('qconv2d');
  assert.throws(() => rawConv(new Uint8Array(4), 1, 1, 2, 2, QWeights.fromCodes(new Int8Array(9), 1, 9).buffer, 1, 3, 3, 1, 0, 'int32', new Int32Array(1), null, null, 4, 1), { name: 'RangeError', message: /kernel/ });
});
