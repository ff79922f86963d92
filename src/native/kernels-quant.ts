// Typed, validated wrappers over the quantisation and fault kernels
// (bindings/ops_quant.cc, native/kernels/{quant,faults}.cc; contracts in
// native/include/flatenn/quant.h and DESIGN §1-§2). Every wrapper checks its
// arguments and throws a TypeError (wrong type) or RangeError (wrong value or
// length) naming the argument before the native call.
import { nativeFn } from './binding';
import * as a from './argcheck';

export type WeightBits = 2 | 4 | 8;
export const WEIGHT_BITS: readonly WeightBits[] = [2, 4, 8];
export type Seed = number | bigint;
export type FaultType = 'bitflip' | 'sa0' | 'sa1';
export const FAULT_TYPES: readonly FaultType[] = ['bitflip', 'sa0', 'sa1'];
const MAX_CELLS = 2 ** 32;

type F32 = Float32Array;
type U8 = Uint8Array;
type U32 = Uint32Array;

interface QuantNative {
  fakeQuantWeight(w: F32, out: F32, codes: Int8Array | null, scales: F32, bits: number, channels: number): void;
  reluFakeQuant(x: F32, y: F32, mask: U8 | null, bits: number, r: number, codes: U8 | null): number;
  maskedGrad(dy: F32, mask: U8, dx: F32): void;
  countZeros(x: F32): number;
  packInt(codes: Int8Array, bits: number, out: U8): void;
  unpackInt(packed: U8, bits: number, n: number, out: Int8Array): void;
  faultMaskApply(src: U8, flip: U8 | null, sa0: U8 | null, sa1: U8 | null, dst: U8): void;
  faultOrder(seed: Seed, trial: number, cells: number, eligible: U8 | null, kmax: number, out: U32): number;
  faultSelectBernoulli(seed: Seed, trial: number, cells: number, eligible: U8 | null, p: number, out: U32): number;
  faultOrderWeights(seed: Seed, trial: number, layerWeightStart: U32, layerBits: U8, layerEligibleBits: U8 | null, kmax: number, out: U32): number;
  cellsToMask(cells: U32, count: number, layerCellStart: U32, layerByteStart: U32, mask: U8): void;
}

let cached: QuantNative | null = null;
function nat(): QuantNative {
  if (cached) return cached;
  const names: (keyof QuantNative)[] = ['fakeQuantWeight', 'reluFakeQuant', 'maskedGrad', 'countZeros', 'packInt', 'unpackInt',
    'faultMaskApply', 'faultOrder', 'faultSelectBernoulli', 'faultOrderWeights', 'cellsToMask'];
  const o: Record<string, unknown> = {};
  for (const n of names) o[n] = nativeFn(n);
  cached = o as unknown as QuantNative;
  return cached;
}

// ---------------------------------------------------------------- fake-quant

/**
 * Symmetric b-bit weight fake-quant (DESIGN §1): per tensor (channels = 1) or per output channel
 * (w viewed as [channels][w.length / channels]). s = max|w| / qmax (1 if that is 0),
 * q = clamp(roundHalfEven(w / s), -qmax-1, qmax), out = s * q; codes (optional) receive q, scales s.
 * `out` may be `w` itself. Throws RangeError if w holds Inf or NaN.
 */
export function fakeQuantWeight(w: F32, out: F32, codes: Int8Array | null, scales: F32, bits: WeightBits, channels = 1): void {
  a.f32('w', w);
  a.f32('out', out);
  a.optional(a.i8, 'codes', codes);
  a.f32('scales', scales);
  a.oneOf('bits', bits, WEIGHT_BITS);
  a.int('channels', channels, 1, Math.max(1, w.length));
  if (w.length % channels !== 0) throw new RangeError(`Expected channels to divide the weight count ${w.length} but received ${channels}`);
  a.length('out', out, w.length);
  if (codes) a.length('codes', codes, w.length);
  a.length('scales', scales, channels);
  nat().fakeQuantWeight(w, out, codes ?? null, scales, bits, channels);
}

export interface QuantizedWeights { out: F32; codes: Int8Array; scales: F32 }

/** Allocating form of fakeQuantWeight. */
export function quantizeWeights(w: F32, bits: WeightBits, channels = 1): QuantizedWeights {
  a.f32('w', w);
  const r: QuantizedWeights = { out: new Float32Array(w.length), codes: new Int8Array(w.length), scales: new Float32Array(channels) };
  fakeQuantWeight(w, r.out, r.codes, r.scales, bits, channels);
  return r;
}

/**
 * ReLU + unsigned b-bit fake-quant (b in [1, 16]; b = 0: plain ReLU) with clip range r > 0:
 * s = r / (2^b - 1), y = s * min(roundHalfEven(max(x, 0) / s), 2^b - 1); mask[i] = 1 where the
 * straight-through gradient passes (0 < x <= r; b = 0: x > 0), else 0. `y` may be `x`. `codes` (b in [1, 8]):
 * the codes q of y = s * q.
 * Returns the batch maximum of x before clipping (NaN if x holds a NaN; -Infinity if empty).
 */
export function reluFakeQuant(x: F32, y: F32, mask: U8 | null, bits: number, r: number, codes: U8 | null = null): number {
  a.f32('x', x);
  a.f32('y', y);
  a.optional(a.u8, 'mask', mask);
  a.optional(a.u8, 'codes', codes);
  a.int('bits', bits, 0, 16);
  a.finite('r', r);
  if (!(r > 0) || !Number.isFinite(Math.fround(r))) throw new RangeError(`Expected a positive finite float32 for r but received ${r}`);
  a.length('y', y, x.length);
  if (mask) a.length('mask', mask, x.length);
  if (codes) {
    if (bits < 1 || bits > 8) throw new RangeError(`Expected bits in [1, 8] with codes but received ${bits}`);
    a.length('codes', codes, x.length);
  }
  return nat().reluFakeQuant(x, y, mask ?? null, bits, r, codes ?? null);
}

/** dx[i] = mask[i] ? dy[i] : 0 (the straight-through rule). dx may be dy. */
export function maskedGrad(dy: F32, mask: U8, dx: F32): void {
  a.f32('dy', dy);
  a.u8('mask', mask);
  a.f32('dx', dx);
  a.length('mask', mask, dy.length);
  a.length('dx', dx, dy.length);
  nat().maskedGrad(dy, mask, dx);
}

/** Number of exact zeros (either sign) in x. */
export function countZeros(x: F32): number {
  a.f32('x', x);
  return nat().countZeros(x);
}

// ------------------------------------------------------------------- packing

/** Bytes holding n b-bit codes: ceil(n * b / 8). */
export function packedBytes(n: number, bits: WeightBits): number {
  a.int('n', n, 0, Number.MAX_SAFE_INTEGER / 8);
  a.oneOf('bits', bits, WEIGHT_BITS);
  return Math.ceil((n * bits) / 8);
}

/**
 * Packs b-bit two's-complement codes, 8/b per byte, lowest bits first (DESIGN §2: 4-bit element i
 * at byte i >> 1, low nibble for even i). Codes outside [-2^(b-1), 2^(b-1) - 1] throw a RangeError.
 */
export function packInt(codes: Int8Array, bits: WeightBits, out?: U8): U8 {
  a.i8('codes', codes);
  const nb = packedBytes(codes.length, bits);
  const o = out === undefined ? new Uint8Array(nb) : a.u8('out', out);
  a.length('out', o, nb);
  nat().packInt(codes, bits, o);
  return o;
}

/** Unpacks n sign-extended b-bit codes from the start of `packed`. */
export function unpackInt(packed: U8, bits: WeightBits, n: number, out?: Int8Array): Int8Array {
  a.u8('packed', packed);
  const nb = packedBytes(n, bits);
  a.atLeast('packed', packed, nb);
  const o = out === undefined ? new Int8Array(n) : a.i8('out', out);
  a.length('out', o, n);
  nat().unpackInt(packed, bits, n, o);
  return o;
}

// ---------------------------------------------------------------- fault masks

/** dst = ((src ^ flip) & ~sa0) | sa1 bytewise; a null mask reads as zeros. dst may be src. */
export function faultMaskApply(src: U8, flip: U8 | null, sa0: U8 | null, sa1: U8 | null, dst?: U8): U8 {
  a.u8('src', src);
  const m = { flip: a.optional(a.u8, 'flip', flip), sa0: a.optional(a.u8, 'sa0', sa0), sa1: a.optional(a.u8, 'sa1', sa1) };
  for (const [k, v] of Object.entries(m)) if (v) a.length(k, v, src.length);
  const o = dst === undefined ? new Uint8Array(src.length) : a.u8('dst', dst);
  a.length('dst', o, src.length);
  nat().faultMaskApply(src, m.flip, m.sa0, m.sa1, o);
  return o;
}

/** Applies one fault type with a cell mask (bit set = faulty cell): bitflip flips, sa0 clears, sa1 sets. */
export function applyFault(type: FaultType, src: U8, mask: U8, dst?: U8): U8 {
  a.oneOf('type', type, FAULT_TYPES);
  a.u8('mask', mask);
  return faultMaskApply(src, type === 'bitflip' ? mask : null, type === 'sa0' ? mask : null, type === 'sa1' ? mask : null, dst);
}

// ----------------------------------------------- common-random-number selection

/** Number of eligible cells: non-zero bytes of `eligible`, or `cells` when it is null. */
export function countEligible(eligible: U8 | null, cells: number): number {
  a.int('cells', cells, 0, MAX_CELLS);
  if (eligible === null) return cells;
  a.u8('eligible', eligible);
  a.length('eligible', eligible, cells);
  let c = 0;
  for (let i = 0; i < eligible.length; i++) if (eligible[i] !== 0) c++;
  return c;
}

/** k = round(p * eligible), ties to even (DESIGN §2: a trial draws exactly k distinct cells). */
export function faultCount(p: number, eligible: number): number {
  a.finite('p', p);
  if (p < 0 || p > 1) throw new RangeError(`Expected p in [0, 1] but received ${p}`);
  a.int('eligible', eligible, 0, MAX_CELLS);
  const x = p * eligible;
  const f = Math.floor(x);
  const d = x - f;
  return d > 0.5 || (d === 0.5 && f % 2 === 1) ? f + 1 : f;
}

function orderHead(seed: Seed, trial: number, cells: number, eligible: U8 | null): void {
  a.seed('seed', seed);
  a.int('trial', trial, 0, 2 ** 32 - 1);
  a.int('cells', cells, 0, MAX_CELLS);
  if (eligible !== null) {
    a.u8('eligible', eligible);
    a.length('eligible', eligible, cells);
  }
}

/**
 * The trial's fault order (DESIGN §2): the eligible cells sorted by the key
 * rng_bits64(seed, FaultKey, trial, cell) (ties by cell index), first min(kmax, eligible) of them.
 * Rate p uses the prefix of length faultCount(p, eligible). Returns a view of `out` (allocated when omitted).
 */
export function faultOrder(seed: Seed, trial: number, cells: number, eligible: U8 | null, kmax: number, out?: U32): U32 {
  orderHead(seed, trial, cells, eligible);
  a.int('kmax', kmax, 0, MAX_CELLS);
  const km = Math.min(kmax, cells);
  const o = out === undefined ? new Uint32Array(km) : a.u32('out', out);
  a.atLeast('out', o, km);
  const k = nat().faultOrder(seed, trial, cells, eligible, km, o);
  return o.subarray(0, k);
}

/** Bernoulli sampling: every eligible cell with rng_uniform(seed, FaultKey, trial, cell) < p, in increasing order. */
export function faultSelectBernoulli(seed: Seed, trial: number, cells: number, eligible: U8 | null, p: number): U32 {
  orderHead(seed, trial, cells, eligible);
  a.finite('p', p);
  if (p < 0 || p > 1) throw new RangeError(`Expected p in [0, 1] but received ${p}`);
  const e = countEligible(eligible, cells);
  // capacity: mean + 8 standard deviations + 64 (a second call covers the rare overflow)
  let cap = Math.min(e, Math.ceil(p * e + 8 * Math.sqrt(p * (1 - p) * e) + 64));
  for (;;) {
    const o = new Uint32Array(cap);
    const total = nat().faultSelectBernoulli(seed, trial, cells, eligible, p, o);
    if (total <= cap) return o.subarray(0, total);
    cap = total;
  }
}

/** Layer layout of the weight memory for the weight rate unit. */
export interface WeightLayout {
  /** [layers + 1] prefix sums of the layers' weight counts (weightStart[0] = 0). */
  weightStart: U32;
  /** [layers] code width of each layer (2, 4 or 8). */
  bits: U8;
  /** [layers] bitmask of the bit positions that may fail (0 excludes a layer); null = every bit. */
  eligibleBits?: U8 | null;
}

/**
 * Weight rate unit (--rate-unit weight): eligible weights (those with an eligible bit) ordered by
 * rng_bits64(seed, FaultKey, trial, weight), the first min(kmax, eligible weights) of them, each
 * mapped to one of its eligible bits drawn with rng_uniform(seed, FaultCell, trial, weight);
 * returns the global cell indices (layer by layer, code by code, bit 0 first) in that order.
 */
export function faultOrderWeights(seed: Seed, trial: number, layout: WeightLayout, kmax: number, out?: U32): U32 {
  a.seed('seed', seed);
  a.int('trial', trial, 0, 2 ** 32 - 1);
  checkLayout(layout);
  a.int('kmax', kmax, 0, MAX_CELLS);
  const want = Math.min(kmax, eligibleWeights(layout));
  const o = out === undefined ? new Uint32Array(want) : a.u32('out', out);
  a.atLeast('out', o, want);
  const k = nat().faultOrderWeights(seed, trial, layout.weightStart, layout.bits, layout.eligibleBits ?? null, want, o);
  return o.subarray(0, k);
}

function checkLayout(layout: WeightLayout): void {
  if (typeof layout !== 'object' || layout === null) throw new TypeError(`Expected an object for layout but received ${a.describe(layout)}`);
  const ws = a.u32('layout.weightStart', layout.weightStart);
  if (ws.length < 1) throw new RangeError('Expected layout.weightStart to hold at least 1 element (layers + 1)');
  const layers = ws.length - 1;
  a.u8('layout.bits', layout.bits);
  a.length('layout.bits', layout.bits, layers);
  const eb = a.optional(a.u8, 'layout.eligibleBits', layout.eligibleBits);
  if (eb) a.length('layout.eligibleBits', eb, layers);
  if (ws[0] !== 0) throw new RangeError(`Expected layout.weightStart[0] = 0 but received ${ws[0]}`);
  let cells = 0;
  for (let l = 0; l < layers; l++) {
    if (ws[l + 1]! < ws[l]!) throw new RangeError(`Expected layout.weightStart to be non-decreasing but it decreases at index ${l + 1}`);
    a.oneOf(`layout.bits[${l}]`, layout.bits[l], WEIGHT_BITS);
    cells += layout.bits[l]! * (ws[l + 1]! - ws[l]!);
  }
  if (cells > MAX_CELLS) throw new RangeError(`The layout holds ${cells} cells; at most 2^32 are supported`);
}

/** Number of weights with at least one eligible bit. */
export function eligibleWeights(layout: WeightLayout): number {
  checkLayout(layout);
  let e = 0;
  for (let l = 0; l + 1 < layout.weightStart.length; l++) {
    const all = (1 << layout.bits[l]!) - 1;
    const eb = layout.eligibleBits ? layout.eligibleBits[l]! & all : all;
    if (eb) e += layout.weightStart[l + 1]! - layout.weightStart[l]!;
  }
  return e;
}

/**
 * OR-s into `mask` (the weight memory's byte layout) the bit of each cell cells[0..count):
 * bit 8 * layerByteStart[l] + (cell - layerCellStart[l]) for the layer l holding the cell.
 * Each layer's packed codes start at a byte boundary. The caller zeroes `mask`.
 */
export function cellsToMask(cells: U32, count: number, layerCellStart: U32, layerByteStart: U32, mask: U8): void {
  a.u32('cells', cells);
  a.int('count', count, 0, cells.length);
  a.u32('layerCellStart', layerCellStart);
  if (layerCellStart.length < 1) throw new RangeError('Expected layerCellStart to hold at least 1 element (layers + 1)');
  a.u32('layerByteStart', layerByteStart);
  a.length('layerByteStart', layerByteStart, layerCellStart.length - 1);
  a.u8('mask', mask);
  nat().cellsToMask(cells, count, layerCellStart, layerByteStart, mask);
}
