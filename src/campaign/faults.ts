// Fault maps (DESIGN §2): common random numbers over the cells of the weight
// memory, exact-count or Bernoulli sampling, bit or weight rate unit, optional
// confinement to layers / bit positions; applied as vectorised masks on the
// packed bytes. The clean memory is never modified.
import { nativeFn } from '../native/binding';
import type { DeployedMeta } from '../deploy/format';

/** Fault types in stored int4 weight codes: bit flip, stuck-at-0, stuck-at-1 (DESIGN §2). */
export const FAULT_TYPES = ['bitflip', 'sa0', 'sa1'] as const;
export type FaultType = (typeof FAULT_TYPES)[number];
export type Sampling = 'exact' | 'bernoulli';
export type RateUnit = 'bit' | 'weight';

export interface FaultTargets {
  /** Layer names whose cells may fail (null: all). */
  layers: string[] | null;
  /** Bit positions within a code that may fail, 0 = LSB (null: all). */
  bits: number[] | null;
}

type FaultOrderFn = (seed: number, trial: number, cells: number, eligible: Uint8Array | null, kmax: number, out: Uint32Array) => number;
type BernoulliFn = (seed: number, trial: number, cells: number, eligible: Uint8Array | null, p: number, out: Uint32Array) => number;
type OrderWeightsFn = (seed: number, trial: number, layerWeightStart: Uint32Array, layerBits: Uint8Array, layerEligibleBits: Uint8Array | null, kmax: number, out: Uint32Array) => number;
type CellsToMaskFn = (cells: Uint32Array, count: number, layerCellStart: Uint32Array, layerByteStart: Uint32Array, mask: Uint8Array) => void;
type MaskApplyFn = (src: Uint8Array, flip: Uint8Array | null, sa0: Uint8Array | null, sa1: Uint8Array | null, dst: Uint8Array) => void;

/** Parses a rate written as a fraction ('0.01') or a percentage ('1%'); a bare number above 1 is refused. */
export function parseRate(s: string): number {
  if (typeof s !== 'string') throw new TypeError(`parseRate expects a string like '0.01' or '1%', got ${s === null ? 'null' : typeof s}${typeof s === 'number' ? ` ${s} (pass numbers directly as rates)` : ''}`);
  const t = s.trim();
  const pct = t.endsWith('%');
  const body = pct ? t.slice(0, -1).trim() : t;
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(body)) throw new RangeError(`'${s}' is not a rate (write a fraction like 0.01 or a percentage like 1%)`);
  const v = pct ? Number(body) / 100 : Number(body);
  if (!pct && v > 1) throw new RangeError(`rate ${s} is above 1: rates are fractions of cells; did you mean ${s}%?`);
  if (!(v >= 0 && v <= 1)) throw new RangeError(`rate ${s} is outside [0, 1]`);
  // '1e-400' parses as 0 and '1e-310' as a denormal: refuse instead of silently changing the rate.
  if (v < 2.2250738585072014e-308 && /[1-9]/.test(body.replace(/[eE].*$/, ''))) throw new RangeError(`rate ${s} underflows (below the smallest normal double, 2.2e-308); write 0 for no faults`);
  return v;
}

/** The cells a campaign may hit (all, or confined to layers / bit positions) and the seeded draw of faulty cells (DESIGN §2). */
export class FaultSpace {
  readonly meta: DeployedMeta;
  readonly targets: FaultTargets;
  readonly unit: RateUnit;
  /** Per-cell eligibility (bit unit; null = every cell). */
  readonly eligible: Uint8Array | null;
  /** Eligible cells (bit unit) or eligible weights (weight unit). */
  readonly eligibleCount: number;
  private readonly layerCellStart: Uint32Array;
  private readonly layerByteStart: Uint32Array;
  private readonly layerWeightStart: Uint32Array;
  private readonly layerBits: Uint8Array;
  private readonly layerEligibleBits: Uint8Array | null;

  constructor(meta: DeployedMeta, targets: FaultTargets, unit: RateUnit) {
    this.meta = meta;
    this.targets = targets;
    this.unit = unit;
    const L = meta.layers.length;
    this.layerCellStart = new Uint32Array(L + 1);
    this.layerByteStart = new Uint32Array(L);
    this.layerWeightStart = new Uint32Array(L + 1);
    this.layerBits = new Uint8Array(L);
    meta.layers.forEach((l, i) => {
      this.layerCellStart[i] = l.cellOffset;
      this.layerByteStart[i] = l.byteOffset;
      this.layerWeightStart[i + 1] = this.layerWeightStart[i]! + l.count;
      this.layerBits[i] = l.bits;
    });
    this.layerCellStart[L] = meta.cells;
    if (meta.cells > 0xffffffff) throw new RangeError(`the weight memory has ${meta.cells} cells; cell indices are 32-bit`);
    const names = meta.layers.map((l) => l.name);
    for (const n of targets.layers ?? []) if (!names.includes(n)) throw new RangeError(`--fault-targets: no layer '${n}' (layers: ${names.join(', ')})`);
    const maxBits = Math.max(...meta.layers.map((l) => l.bits));
    for (const b of targets.bits ?? []) if (!Number.isInteger(b) || b < 0 || b >= maxBits) throw new RangeError(`--fault-targets: bit ${b} is not a bit position of these codes (0..${maxBits - 1})`);
    const restricted = targets.layers !== null || targets.bits !== null;
    const layerOk = (i: number) => targets.layers === null || targets.layers.includes(names[i]!);
    const bitMaskOf = (i: number) => {
      if (!layerOk(i)) return 0;
      let m = 0;
      for (let b = 0; b < meta.layers[i]!.bits; b++) if (targets.bits === null || targets.bits.includes(b)) m |= 1 << b;
      return m;
    };
    this.layerEligibleBits = restricted ? Uint8Array.from(meta.layers.map((_, i) => bitMaskOf(i))) : null;
    if (unit === 'bit') {
      if (restricted) {
        const e = new Uint8Array(meta.cells);
        meta.layers.forEach((l, i) => {
          const m = bitMaskOf(i);
          if (m === 0) return;
          for (let w = 0; w < l.count; w++) for (let b = 0; b < l.bits; b++) if (m & (1 << b)) e[l.cellOffset + w * l.bits + b] = 1;
        });
        this.eligible = e;
        let c = 0;
        for (let i = 0; i < e.length; i++) c += e[i]!;
        this.eligibleCount = c;
      } else {
        this.eligible = null;
        this.eligibleCount = meta.cells;
      }
    } else {
      this.eligible = null;
      let c = 0;
      meta.layers.forEach((l, i) => { if (bitMaskOf(i) !== 0) c += l.count; });
      this.eligibleCount = c;
    }
    if (this.eligibleCount === 0) throw new RangeError('--fault-targets leaves no eligible cell');
  }

  /** k = round(p * eligible): the exact number of faulty cells (or weights) at rate p. */
  count(p: number): number {
    return Math.round(p * this.eligibleCount);
  }

  /** The trial's cells in common-random-number order; rate p takes the first count(p). */
  order(seed: number, trial: number, kmax: number): Uint32Array {
    const out = new Uint32Array(kmax);
    let n: number;
    if (this.unit === 'bit') n = nativeFn<FaultOrderFn>('faultOrder')(seed, trial, this.meta.cells, this.eligible, kmax, out);
    else n = nativeFn<OrderWeightsFn>('faultOrderWeights')(seed, trial, this.layerWeightStart, this.layerBits, this.layerEligibleBits, kmax, out);
    return out.subarray(0, n);
  }

  /** Bernoulli sampling: every eligible cell with u < p (bit unit only). */
  bernoulli(seed: number, trial: number, p: number): Uint32Array {
    if (this.unit !== 'bit') throw new RangeError('--sampling bernoulli works with --rate-unit bit');
    const fn = nativeFn<BernoulliFn>('faultSelectBernoulli');
    const cap = Math.min(this.eligibleCount, Math.ceil(p * this.eligibleCount + 10 * Math.sqrt(p * this.eligibleCount + 1) + 16));
    let out = new Uint32Array(cap);
    let n = fn(seed, trial, this.meta.cells, this.eligible, p, out);
    if (n > out.length) { out = new Uint32Array(n); n = fn(seed, trial, this.meta.cells, this.eligible, p, out); }
    return out.subarray(0, n);
  }

  /** dst = clean memory with `cells` faulty under `type`; mask is scratch of the memory's size. */
  apply(clean: Uint8Array, cells: Uint32Array, type: FaultType, dst: Uint8Array, mask: Uint8Array): void {
    mask.fill(0);
    if (cells.length > 0) nativeFn<CellsToMaskFn>('cellsToMask')(cells, cells.length, this.layerCellStart, this.layerByteStart, mask);
    const apply = nativeFn<MaskApplyFn>('faultMaskApply');
    if (type === 'bitflip') apply(clean, mask, null, null, dst);
    else if (type === 'sa0') apply(clean, null, mask, null, dst);
    else apply(clean, null, null, mask, dst);
  }
}
