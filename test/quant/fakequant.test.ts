// Fake-quant kernels against a JavaScript reference (Math.fround gives the exact float32
// results of division and multiplication), the straight-through rule checked exactly,
// and int packing.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { availableIsas, withIsa } from '../../src/native/info';
import {
  countZeros, fakeQuantWeight, maskedGrad, packInt, packedBytes, quantizeWeights, reluFakeQuant, unpackInt, type WeightBits,
} from '../../src/native/kernels-quant';

const f = Math.fround;

/** nearbyint under the default rounding mode: round half to even, keeping the sign of zero. */
function roundHalfEven(x: number): number {
  let r = Math.round(x); // halves go up
  if (r - x === 0.5 && r % 2 !== 0) r -= 1;
  return r;
}

function refFakeQuant(w: Float32Array, bits: number, channels: number) {
  const qmax = 2 ** (bits - 1) - 1;
  const per = w.length / channels;
  const out = new Float32Array(w.length), codes = new Int8Array(w.length), scales = new Float32Array(channels);
  for (let c = 0; c < channels; c++) {
    let m = 0;
    for (let i = 0; i < per; i++) m = Math.max(m, Math.abs(w[c * per + i]!));
    let s = f(m / qmax);
    if (s === 0) s = 1;
    scales[c] = s;
    for (let i = 0; i < per; i++) {
      let q = roundHalfEven(f(w[c * per + i]! / s));
      q = Math.min(Math.max(q, -qmax - 1), qmax);
      codes[c * per + i] = q;
      out[c * per + i] = f(s * q);
    }
  }
  return { out, codes, scales };
}

function sameBits(a: Float32Array, b: Float32Array, what: string): void {
  assert.equal(a.length, b.length, what);
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length), ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < a.length; i++) if (ua[i] !== ub[i]) assert.fail(`${what}: element ${i}: ${a[i]} vs ${b[i]}`);
}

function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; return s / 2 ** 32; };
}

test('round half to even at exact ties (scale 1 and scale 0.5)', () => {
  // max|w| = 7 -> s = 1: w / s are the ties themselves
  const w = new Float32Array([7, 0.5, 1.5, 2.5, 3.5, -0.5, -1.5, -2.5, -3.5, 4.5, -6.5, 6.5]);
  const r = quantizeWeights(w, 4);
  assert.equal(r.scales[0], 1);
  assert.deepEqual([...r.codes], [7, 0, 2, 2, 4, 0, -2, -2, -4, 4, -6, 6]);
  assert.ok(Object.is(r.out[5], -0), 'nearbyint(-0.5) = -0');
  // max|w| = 3.5 -> s = 0.5: w = 1.25 -> 2.5 -> 2; w = 1.75 -> 3.5 -> 4
  const r2 = quantizeWeights(new Float32Array([3.5, 1.25, 1.75, -0.25, -0.75]), 4);
  assert.equal(r2.scales[0], 0.5);
  assert.deepEqual([...r2.codes], [7, 2, 4, 0, -2]);
  assert.deepEqual([...r2.out], [3.5, 1, 2, -0, -1]);
});

test('weight codes from training lie in [-qmax, qmax]; per-channel scales are max|row| / qmax', () => {
  const rnd = lcg(1);
  for (const bits of [2, 4, 8] as WeightBits[]) {
    const qmax = 2 ** (bits - 1) - 1;
    for (const channels of [1, 3, 16]) {
      const per = 37;
      const w = new Float32Array(channels * per).map(() => f((rnd() - 0.5) * 4 * (1 + rnd())));
      const r = quantizeWeights(w, bits, channels);
      for (const q of r.codes) assert.ok(q >= -qmax && q <= qmax, `bits=${bits}: code ${q}`);
      let extremes = 0;
      for (const q of r.codes) if (Math.abs(q) === qmax) extremes++;
      assert.ok(extremes >= channels, 'each channel reaches +-qmax at its max|w|');
      for (let c = 0; c < channels; c++) {
        let m = 0;
        for (let i = 0; i < per; i++) m = Math.max(m, Math.abs(w[c * per + i]!));
        assert.equal(r.scales[c], f(m / qmax), `bits=${bits} channel ${c}`);
      }
    }
  }
  // an all-zero channel gets scale 1 and zero codes
  const z = quantizeWeights(new Float32Array([0, 0, 1, -1]), 4, 2);
  assert.deepEqual([...z.scales], [1, f(1 / 7)]);
  assert.deepEqual([...z.codes], [0, 0, 7, -7]);
});

test('fakeQuantWeight equals the JS reference bit for bit under every ISA (awkward sizes)', () => {
  const rnd = lcg(7);
  for (const n of [1, 3, 7, 15, 17, 31, 33, 63, 129, 1000]) {
    for (const channels of [1, n % 3 === 0 ? 3 : 1]) {
      const w = new Float32Array(n).map((_, i) => (i % 4 === 0 ? f((Math.floor(rnd() * 15) - 7) + 0.5) : f((rnd() - 0.5) * 3)));
      for (const bits of [2, 4, 8] as WeightBits[]) {
        const ref = refFakeQuant(w, bits, channels);
        for (const isa of availableIsas()) {
          withIsa(isa, () => {
            const out = new Float32Array(n), codes = new Int8Array(n), scales = new Float32Array(channels);
            fakeQuantWeight(w, out, codes, scales, bits, channels);
            sameBits(out, ref.out, `${isa} n=${n} bits=${bits} channels=${channels}`);
            assert.deepEqual(codes, ref.codes);
            assert.deepEqual(scales, ref.scales);
            const inplace = w.slice();
            fakeQuantWeight(inplace, inplace, null, scales, bits, channels);
            sameBits(inplace, ref.out, `${isa} in place`);
          });
        }
      }
    }
  }
});

function refReluFq(x: Float32Array, bits: number, r: number) {
  const y = new Float32Array(x.length), mask = new Uint8Array(x.length);
  const levels = 2 ** bits - 1, s = f(r / levels);
  for (let i = 0; i < x.length; i++) {
    const v = x[i]!;
    const a = v > 0 ? v : 0;
    if (bits === 0) { y[i] = a; mask[i] = v > 0 ? 1 : 0; continue; }
    y[i] = f(s * Math.min(roundHalfEven(f(a / s)), levels));
    mask[i] = v > 0 && v <= f(r) ? 1 : 0;
  }
  return { y, mask };
}

test('reluFakeQuant: straight-through mask exactly 1 on (0, r], values and max equal the JS reference', () => {
  // r = 15, 4 bits -> s = 1
  const x = new Float32Array([-2, -0, 0, 0.25, 0.5, 1.5, 2.5, 14.5, 15, 15.000001, 15.5, 40]);
  const y = new Float32Array(x.length), mask = new Uint8Array(x.length);
  const max = reluFakeQuant(x, y, mask, 4, 15);
  assert.equal(max, 40, 'batch max before clipping');
  assert.deepEqual([...mask], [0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0]);
  assert.deepEqual([...y], [0, 0, 0, 0, 0, 2, 2, 14, 15, 15, 15, 15]);
  // plain ReLU (bits = 0): mask = x > 0, no clip
  const y0 = new Float32Array(x.length), m0 = new Uint8Array(x.length);
  reluFakeQuant(x, y0, m0, 0, 1);
  assert.deepEqual([...m0], [0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1]);
  assert.deepEqual([...y0], [...x].map((v) => (v > 0 ? v : 0)));
  // the gradient is dy times the mask, exactly
  const dy = new Float32Array(x.length).map((_, i) => i - 5.5);
  const dx = new Float32Array(x.length);
  maskedGrad(dy, mask, dx);
  assert.deepEqual([...dx], [...dy].map((g, i) => (mask[i] ? g : 0)));

  const rnd = lcg(3);
  for (const n of [1, 3, 7, 15, 17, 31, 33, 63, 129, 1000]) {
    for (const [bits, r] of [[4, 6], [4, 2.7], [1, 1], [8, 3.3], [0, 1]] as const) {
      const s = f(r / (2 ** bits - 1));
      const xs = new Float32Array(n).map((_, i) => (i % 3 === 0 ? f((Math.floor(rnd() * 20) + 0.5) * s) : f((rnd() - 0.3) * 2 * r)));
      const ref = refReluFq(xs, bits, r);
      const refMax = Math.max(...xs);
      for (const isa of availableIsas()) {
        withIsa(isa, () => {
          const yy = new Float32Array(n), mm = new Uint8Array(n);
          const mx = reluFakeQuant(xs, yy, mm, bits, r);
          sameBits(yy, ref.y, `${isa} n=${n} bits=${bits} r=${r}`);
          assert.deepEqual(mm, ref.mask, `${isa} mask n=${n} bits=${bits}`);
          assert.equal(mx, refMax);
          const g = new Float32Array(n).map(() => rnd() - 0.5), gx = new Float32Array(n);
          maskedGrad(g, mm, gx);
          for (let i = 0; i < n; i++) assert.equal(gx[i], mm[i] ? g[i] : 0);
        });
      }
    }
  }
});

test('countZeros counts exact zeros of either sign', () => {
  const x = new Float32Array(1001).map((_, i) => (i % 3 === 0 ? 0 : i % 5 === 0 ? -0 : i));
  const want = [...x].filter((v) => v === 0).length;
  for (const isa of availableIsas()) withIsa(isa, () => assert.equal(countZeros(x), want, isa));
});

test('pack / unpack round trip incl. -8 and 7 and odd lengths; DESIGN §2 nibble order', () => {
  assert.deepEqual([...packInt(new Int8Array([-8, 7, 1]), 4)], [0x78, 0x01]);
  assert.deepEqual([...packInt(new Int8Array([-1, 0, 1, -2, 1]), 2)], [0b10010011, 0b01]);
  assert.deepEqual([...unpackInt(new Uint8Array([0x8f]), 4, 2)], [-1, -8]);
  for (const bits of [2, 4, 8] as WeightBits[]) {
    const lo = -(2 ** (bits - 1)), hi = 2 ** (bits - 1) - 1;
    for (const n of [0, 1, 2, 3, 7, 15, 17, 31, 33, 63, 65, 129, 1001]) {
      const codes = new Int8Array(n).map((_, i) => lo + ((i * 7 + 3) % (hi - lo + 1)));
      if (n > 0) codes[0] = lo;
      if (n > 1) codes[n - 1] = hi;
      for (const isa of availableIsas()) {
        withIsa(isa, () => {
          const p = packInt(codes, bits);
          assert.equal(p.length, packedBytes(n, bits));
          assert.deepEqual(unpackInt(p, bits, n), codes, `${isa} bits=${bits} n=${n}`);
          if (bits === 4) for (let i = 0; i < n; i++) assert.equal((p[i >> 1]! >> ((i & 1) * 4)) & 15, codes[i]! & 15);
          if ((n * bits) % 8) assert.equal(p[p.length - 1]! >> ((n * bits) % 8), 0, 'unused high bits are zero');
        });
      }
    }
  }
});

test('invalid arguments throw TypeError / RangeError naming the argument', () => {
  const w = new Float32Array(6);
  assert.throws(() => fakeQuantWeight([1] as unknown as Float32Array, w, null, new Float32Array(1), 4), { name: 'TypeError', message: /for w/ });
  assert.throws(() => fakeQuantWeight(w, w, null, new Float32Array(1), 3 as WeightBits), { name: 'RangeError', message: /bits/ });
  assert.throws(() => fakeQuantWeight(w, w, null, new Float32Array(4), 4, 4), { name: 'RangeError', message: /channels/ });
  assert.throws(() => fakeQuantWeight(w, w, null, new Float32Array(2), 4, 3), { name: 'RangeError', message: /scales/ });
  assert.throws(() => fakeQuantWeight(w, new Float32Array(5), null, new Float32Array(1), 4), { name: 'RangeError', message: /out/ });
  assert.throws(() => fakeQuantWeight(w, w, new Int8Array(2), new Float32Array(1), 4), { name: 'RangeError', message: /codes/ });
  assert.throws(() => quantizeWeights(new Float32Array([1, NaN]), 4), { name: 'RangeError', message: /finite/ });
  assert.throws(() => reluFakeQuant(w, w, null, 4, 0), { name: 'RangeError', message: /r/ });
  assert.throws(() => reluFakeQuant(w, w, null, 4, Infinity), { name: 'RangeError', message: /r/ });
  assert.throws(() => reluFakeQuant(w, w, null, 17, 1), { name: 'RangeError', message: /bits/ });
  assert.throws(() => reluFakeQuant(w, w, new Uint8Array(5), 4, 1), { name: 'RangeError', message: /mask/ });
  assert.throws(() => maskedGrad(w, new Uint8Array(6), new Float32Array(7)), { name: 'RangeError', message: /dx/ });
  assert.throws(() => countZeros(new Float64Array(2) as unknown as Float32Array), { name: 'TypeError', message: /x/ });
  assert.throws(() => packInt(new Int8Array([8]), 4), { name: 'RangeError', message: /codes\[0\] = 8/ });
  assert.throws(() => packInt(new Int8Array([0, -3]), 2), { name: 'RangeError', message: /codes\[1\] = -3/ });
  assert.throws(() => packInt(new Int8Array(3), 4, new Uint8Array(3)), { name: 'RangeError', message: /out/ });
  assert.throws(() => unpackInt(new Uint8Array(1), 4, 3), { name: 'RangeError', message: /packed/ });
  assert.throws(() => unpackInt(new Uint8Array(2), 4, 3, new Int8Array(4)), { name: 'RangeError', message: /out/ });
});
