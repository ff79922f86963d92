// Fault masks and common-random-number fault selection (DESIGN §2).
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { native, nativeFn } from '../../src/native/binding';
import { availableIsas, getThreads, setThreads, withIsa } from '../../src/native/info';
import {
  FAULT_TYPES, applyFault, cellsToMask, countEligible, eligibleWeights, faultCount, faultMaskApply, faultOrder,
  faultOrderWeights, faultSelectBernoulli, packInt, unpackInt, type FaultType,
} from '../../src/native/kernels-quant';

const FAULT_KEY = 1; // RngPurpose::FaultKey

function withThreads<T>(n: number, fn: () => T): T {
  const prev = getThreads();
  setThreads(n);
  try { return fn(); } finally { setThreads(prev); }
}

// Hand-worked: the memory holds the 4-bit codes [3, -6] in one byte (0xA3: low nibble 0011 = 3,
// high nibble 1010 = -6). Expected codes after one fault on (element, bit), by type.
const HAND: Record<FaultType, [number[], number[]]> = {
  //         element 0 (3 = 0011), bits 0..3     element 1 (-6 = 1010), bits 0..3
  bitflip: [[2, 1, 7, -5], [-5, -8, -2, 2]],
  sa0: [[2, 1, 3, 3], [-6, -8, -6, 2]],
  sa1: [[3, 3, 7, -5], [-5, -6, -2, -6]],
};

test('every fault type x bit 0..3 x both nibbles: exactly that bit changes as worked by hand', () => {
  const codes = new Int8Array([3, -6]);
  const mem = packInt(codes, 4);
  assert.deepEqual([...mem], [0xa3]);
  const layerCellStart = new Uint32Array([0, 8]);
  const layerByteStart = new Uint32Array([0]);
  for (const isa of availableIsas()) {
    withIsa(isa, () => {
      for (const type of FAULT_TYPES) {
        for (let el = 0; el < 2; el++) {
          for (let bit = 0; bit < 4; bit++) {
            const cell = 4 * el + bit; // DESIGN §2 cell numbering: code by code, bit 0 first
            const mask = new Uint8Array(1);
            cellsToMask(new Uint32Array([cell]), 1, layerCellStart, layerByteStart, mask);
            assert.equal(mask[0], 1 << (4 * el + bit), `mask for element ${el} bit ${bit}`);
            const out = applyFault(type, mem, mask);
            const want = type === 'bitflip' ? 0xa3 ^ mask[0]! : type === 'sa0' ? 0xa3 & ~mask[0]! : 0xa3 | mask[0]!;
            assert.equal(out[0], want & 0xff, `${isa} ${type} el ${el} bit ${bit}`);
            const got = unpackInt(out, 4, 2);
            assert.equal(got[el], HAND[type][el]![bit], `${isa} ${type} element ${el} bit ${bit}`);
            assert.equal(got[1 - el], codes[1 - el], `${isa} ${type}: the neighbouring nibble must not change`);
            // only bits of the chosen cell may differ
            assert.equal((out[0]! ^ 0xa3) & ~mask[0]!, 0);
          }
        }
      }
    });
  }
});

test('faultMaskApply: combined masks, null masks, in place, long buffers under every ISA', () => {
  const n = 1031;
  const src = new Uint8Array(n), f = new Uint8Array(n), s0 = new Uint8Array(n), s1 = new Uint8Array(n);
  for (let i = 0; i < n; i++) { src[i] = (i * 37) & 255; f[i] = (i * 11 + 3) & 255; s0[i] = (i * 5) & 255; s1[i] = (i * 101) & 0x11; }
  const want = src.map((b, i) => ((b ^ f[i]!) & ~s0[i]!) | s1[i]!);
  for (const isa of availableIsas()) {
    withIsa(isa, () => {
      assert.deepEqual(faultMaskApply(src, f, s0, s1), want, isa);
      assert.deepEqual(faultMaskApply(src, null, null, null), src, `${isa} no masks`);
      const inplace = src.slice();
      faultMaskApply(inplace, f, s0, s1, inplace);
      assert.deepEqual(inplace, want, `${isa} in place`);
    });
  }
});

test('faultOrder equals sorting every eligible cell by its key (ties by index)', () => {
  const cells = 5000;
  const u = new Float64Array(cells);
  native.rngUniform(1234, FAULT_KEY, 7, 0, u);
  const idx = Array.from({ length: cells }, (_, i) => i).sort((x, y) => u[x]! - u[y]! || x - y);
  assert.deepEqual([...faultOrder(1234, 7, cells, null, cells)], idx);
  assert.deepEqual([...faultOrder(1234, 7, cells, null, 40)], idx.slice(0, 40));
  assert.notDeepEqual([...faultOrder(1234, 8, cells, null, 40)], idx.slice(0, 40), 'another trial, another order');
});

test('exact count: rate p fails exactly round(p * eligible) distinct eligible cells', () => {
  const cells = 4 * 6000;
  const order = faultOrder(42, 0, cells, null, cells);
  for (const p of [0, 1e-4, 0.001, 0.0125, 0.05, 0.1, 0.5, 1]) {
    const k = faultCount(p, cells);
    assert.equal(k, Math.round(p * cells));
    const set = new Set(order.subarray(0, k));
    assert.equal(set.size, k, `p=${p}: distinct`);
    for (const c of set) assert.ok(c < cells);
  }
  assert.equal(faultCount(0.5, 5), 2, 'ties round to even');
  assert.equal(faultCount(0.5, 7), 4, 'ties round to even');
});

test('nested across rates: the cells of a lower rate are a prefix of those of a higher one', () => {
  const cells = 20000;
  const big = faultOrder(9, 3, cells, null, 2000);
  let prev = new Set<number>();
  for (const p of [0.001, 0.01, 0.05, 0.1]) {
    const k = faultCount(p, cells);
    const small = faultOrder(9, 3, cells, null, k); // computed alone with kmax = k
    assert.deepEqual([...small], [...big.subarray(0, k)], `p=${p}`);
    const set = new Set(small);
    for (const c of prev) assert.ok(set.has(c), `p=${p} must contain the lower rate's cells`);
    prev = set;
  }
});

test('identical cell sets across fault types: types only decide what happens to the chosen cells', () => {
  // one 4-bit layer of 3001 codes (odd count), random codes
  const n = 3001;
  const codes = new Int8Array(n);
  for (let i = 0; i < n; i++) codes[i] = ((i * 7919) % 15) - 7;
  const mem = packInt(codes, 4);
  const cells = 4 * n;
  const k = faultCount(0.02, cells);
  const chosen = faultOrder(77, 1, cells, null, k);
  const mask = new Uint8Array(mem.length);
  cellsToMask(chosen, chosen.length, new Uint32Array([0, cells]), new Uint32Array([0]), mask);
  let bits = 0;
  for (const b of mask) for (let x = b; x; x &= x - 1) bits++;
  assert.equal(bits, k, 'every chosen cell sets a distinct mask bit');
  const changed: Record<FaultType, Uint8Array> = { bitflip: new Uint8Array(0), sa0: new Uint8Array(0), sa1: new Uint8Array(0) };
  for (const t of FAULT_TYPES) {
    const out = applyFault(t, mem, mask);
    changed[t] = out.map((b, i) => b ^ mem[i]!);
    for (let i = 0; i < mem.length; i++) assert.equal(changed[t][i]! & ~mask[i]!, 0, `${t}: a bit outside the chosen cells changed`);
  }
  assert.deepEqual(changed.bitflip, mask, 'bitflip changes every chosen cell');
  // every chosen cell held 0 or 1: exactly one of sa0 / sa1 changes it
  for (let i = 0; i < mem.length; i++) {
    assert.equal(changed.sa0[i]! & changed.sa1[i]!, 0);
    assert.equal(changed.sa0[i]! | changed.sa1[i]!, mask[i]);
  }
});

test('eligible cells confine the faults to chosen layers and bit positions', () => {
  // three 4-bit layers of 1000, 500, 700 codes; only layer 1 and bit positions 2 and 3 are eligible
  const sizes = [1000, 500, 700];
  const cells = 4 * sizes.reduce((x, y) => x + y, 0);
  const eligible = new Uint8Array(cells);
  const start1 = 4 * 1000, end1 = 4 * 1500;
  for (let c = start1; c < end1; c++) if ((c - start1) % 4 >= 2) eligible[c] = 1;
  const e = countEligible(eligible, cells);
  assert.equal(e, 1000);
  const all = faultOrder(5, 2, cells, eligible, cells);
  assert.equal(all.length, e);
  for (const c of all) {
    assert.ok(c >= start1 && c < end1, `cell ${c} outside layer 1`);
    assert.ok((c - start1) % 4 >= 2, `cell ${c} at bit ${(c - start1) % 4}`);
  }
  const k = faultCount(0.1, e);
  assert.equal(faultOrder(5, 2, cells, eligible, k).length, 100);
  // Bernoulli is confined the same way
  for (const c of faultSelectBernoulli(5, 2, cells, eligible, 0.3)) assert.equal(eligible[c], 1);
  // the order of eligible cells is the order of all cells with the ineligible ones removed
  const full = faultOrder(5, 2, cells, null, cells);
  assert.deepEqual([...all], [...full].filter((c) => eligible[c] === 1));
});

test('weight rate unit: one eligible bit per chosen weight, confined to chosen layers and bits', () => {
  const layout = { weightStart: new Uint32Array([0, 1000, 1500, 2200]), bits: new Uint8Array([4, 4, 8]), eligibleBits: new Uint8Array([0x0, 0xc, 0x81]) };
  const e = eligibleWeights(layout);
  assert.equal(e, 1200);
  const cellStart = [0, 4000, 6000, 11600];
  const cells = faultOrderWeights(11, 4, layout, e);
  assert.equal(cells.length, e);
  const weights = new Set<number>();
  for (const c of cells) {
    const l = cellStart.findIndex((s, i) => c >= s && c < cellStart[i + 1]!);
    assert.ok(l === 1 || l === 2, `cell ${c} in excluded layer ${l}`);
    const b = layout.bits[l]!;
    const rel = c - cellStart[l]!;
    assert.ok((layout.eligibleBits[l]! >> (rel % b)) & 1, `cell ${c}: bit ${rel % b} not eligible`);
    weights.add(layout.weightStart[l]! + Math.floor(rel / b));
  }
  assert.equal(weights.size, e, 'distinct weights');
  const k = faultCount(0.05, e);
  assert.deepEqual([...faultOrderWeights(11, 4, layout, k)], [...cells.subarray(0, k)], 'nested');
  // both eligible bits of layer 1 are used
  const seen = new Set([...cells].filter((c) => c < 6000).map((c) => (c - 4000) % 4));
  assert.deepEqual([...seen].sort(), [2, 3]);
});

test('same fault sets for 1 and 2 threads', () => {
  const cells = 300_007;
  const eligible = new Uint8Array(cells).map((_, i) => (i % 3 ? 1 : 0));
  const layout = { weightStart: new Uint32Array([0, 70000, 75001]), bits: new Uint8Array([4, 2]) };
  const run = () => ({
    order: [...faultOrder(3, 9, cells, eligible, 5000)],
    bern: [...faultSelectBernoulli(3, 9, cells, null, 0.01)],
    w: [...faultOrderWeights(3, 9, layout, 3000)],
  });
  const one = withThreads(1, run);
  const two = withThreads(2, run);
  assert.deepEqual(two, one);
});

test('Bernoulli: u < p semantics and a count within the binomial bound', () => {
  const cells = 200_000;
  const u = new Float64Array(cells);
  native.rngUniform(2024, FAULT_KEY, 5, 0, u);
  for (const p of [0.001, 0.01, 0.2]) {
    const got = faultSelectBernoulli(2024, 5, cells, null, p);
    const want: number[] = [];
    for (let i = 0; i < cells; i++) if (u[i]! < p) want.push(i);
    assert.deepEqual([...got], want, `p=${p}`);
    const sd = Math.sqrt(cells * p * (1 - p));
    assert.ok(Math.abs(got.length - cells * p) <= 5 * sd, `p=${p}: count ${got.length} vs mean ${cells * p} (sd ${sd.toFixed(1)})`);
  }
  // p = u(j) exactly excludes j; the next double above includes it
  const j = 123;
  const at = faultSelectBernoulli(2024, 5, 1000, null, u[j]!);
  assert.ok(!at.includes(j));
  assert.equal(faultSelectBernoulli(2024, 5, 0, null, 0.5).length, 0);
  assert.equal(faultSelectBernoulli(2024, 5, 100, null, 1).length, 100);
  assert.equal(faultSelectBernoulli(2024, 5, 100, null, 0).length, 0);
});

test('cellsToMask: positions across layers of different widths and byte starts', () => {
  // layer 0: 3 4-bit codes (12 cells, bytes 0..1); layer 1: 5 2-bit codes (10 cells) from byte 2
  const mask = new Uint8Array(5);
  cellsToMask(new Uint32Array([0, 5, 11, 12, 13, 21, 99]), 6, new Uint32Array([0, 12, 22]), new Uint32Array([0, 2]), mask);
  assert.deepEqual([...mask], [0x21, 0x08, 0x03, 0x02, 0]);
});

test('invalid arguments throw TypeError / RangeError naming the argument (TS wrapper and native)', () => {
  const m = new Uint8Array(4);
  assert.throws(() => faultMaskApply([1, 2] as unknown as Uint8Array, null, null, null), { name: 'TypeError', message: /src/ });
  assert.throws(() => faultMaskApply(m, new Uint8Array(3), null, null), { name: 'RangeError', message: /flip/ });
  assert.throws(() => applyFault('stuck' as FaultType, m, m), { name: 'RangeError', message: /type/ });
  assert.throws(() => faultOrder(-1, 0, 10, null, 1), { name: 'RangeError', message: /seed/ });
  assert.throws(() => faultOrder(1, 0.5, 10, null, 1), { name: 'TypeError', message: /trial/ });
  assert.throws(() => faultOrder(1, 0, 10, new Uint8Array(9), 1), { name: 'RangeError', message: /eligible/ });
  assert.throws(() => faultOrder(1, 0, 2 ** 32 + 1, null, 1), { name: 'RangeError', message: /cells/ });
  assert.throws(() => faultOrder(1, 0, 10, null, 5, new Uint32Array(2)), { name: 'RangeError', message: /out/ });
  assert.throws(() => faultSelectBernoulli(1, 0, 10, null, 1.5), { name: 'RangeError', message: /p/ });
  assert.throws(() => faultSelectBernoulli(1, 0, 10, null, NaN), { name: 'RangeError', message: /p/ });
  assert.throws(() => faultCount(2, 10), { name: 'RangeError', message: /p/ });
  assert.throws(() => faultOrderWeights(1, 0, { weightStart: new Uint32Array([0, 5]), bits: new Uint8Array([3]) }, 1), { name: 'RangeError', message: /bits/ });
  assert.throws(() => faultOrderWeights(1, 0, { weightStart: new Uint32Array([1, 5]), bits: new Uint8Array([4]) }, 1), { name: 'RangeError', message: /weightStart/ });
  assert.throws(() => faultOrderWeights(1, 0, { weightStart: new Uint32Array([0, 5, 4]), bits: new Uint8Array([4, 4]) }, 1), { name: 'RangeError', message: /non-decreasing/ });
  assert.throws(() => cellsToMask(new Uint32Array([20]), 1, new Uint32Array([0, 12]), new Uint32Array([0]), new Uint8Array(2)), { name: 'RangeError', message: /cells\[0\]/ });
  assert.throws(() => cellsToMask(new Uint32Array([1]), 2, new Uint32Array([0, 12]), new Uint32Array([0]), new Uint8Array(2)), { name: 'RangeError', message: /count/ });
  assert.throws(() => cellsToMask(new Uint32Array([1]), 1, new Uint32Array([0, 12]), new Uint32Array([1]), new Uint8Array(2)), { name: 'RangeError', message: /layer 0/ });
  // the addon validates on its own too (callers that bypass the TS layer)
  const raw = nativeFn<(...args: unknown[]) => unknown>('faultOrder');
  assert.throws(() => raw(1, 0, 10, null, 20, new Uint32Array(5)), { name: 'RangeError', message: /out/ });
  assert.throws(() => raw(1, 0, 10, 'x', 1, new Uint32Array(1)), { name: 'TypeError', message: /eligible/ });
  const rawMask = nativeFn<(...args: unknown[]) => unknown>('faultMaskApply');
  assert.throws(() => rawMask(m, null, new Uint8Array(5), null, m), { name: 'RangeError', message: /sa0/ });
  assert.throws(() => rawMask(m, null, null, null, new Int8Array(4)), { name: 'TypeError', message: /dst/ });
  const rawW = nativeFn<(...args: unknown[]) => unknown>('faultOrderWeights');
  assert.throws(() => rawW(1, 0, new Uint32Array([0, 2 ** 31, 2 ** 32 - 1]), new Uint8Array([4, 4]), null, 0, new Uint32Array(0)), { name: 'RangeError', message: /2\^32/ });
});
