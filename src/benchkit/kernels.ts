// The kernels `flatenn bench kernels` times: each prepares its buffers for one shape under the ISA
// selected at that moment (the int4 weights are laid out for it) and returns the call to time,
// with the work one call does (FLOPs, MACs, bytes or cells) to turn calls/s into a rate.
import type { IsaName } from '../native/binding';
import { native } from '../native/binding';
import { conv2dBackward, conv2dForward, sgemm } from '../native/kernels-f32';
import { QWeights, qconv2d, qgemm, requantU8, type Epilogue } from '../native/kernels-qengine';
import { cellsToMask, faultCount, faultMaskApply, faultOrder, packInt } from '../native/kernels-quant';
import type { Arith } from './peak';
import type { ConvShape, ElementwiseShape, FaultmapShape, GemmShape, Shape, ShapeKind } from './shapes';

export type KernelName = 'sgemm' | 'conv-fwd' | 'conv-bwd' | 'qgemm' | 'qconv' | 'requant' | 'faultmask' | 'faultmap';
export const KERNEL_NAMES: readonly KernelName[] = ['sgemm', 'conv-fwd', 'conv-bwd', 'qgemm', 'qconv', 'requant', 'faultmask', 'faultmap'];

export interface Prepared {
  /** One call of the kernel (benchmark.js times it). */
  fn: () => void;
  /** The ISA of the code that runs ('none' for code with no ISA variants). */
  variant: IsaName | 'none';
}

export interface KernelDef {
  name: KernelName;
  title: string;
  shapeKind: ShapeKind;
  /** The arithmetic its work is counted in (null: a memory-bound kernel, rated in GB/s or Mcell/s, no peak). */
  arith: Arith | null;
  /** Work of one call, in `workUnit`; the rate is work x calls/s in `rateUnit`. */
  work(s: Shape): number;
  workUnit: 'GFLOP' | 'GMAC' | 'GB' | 'Mcell';
  rateUnit: 'GFLOP/s' | 'GMAC/s' | 'GB/s' | 'Mcell/s';
  /** Native kernel registry entries whose variant decides the ISA that runs (empty: ISA-independent code). */
  registry: readonly string[];
  prepare(s: Shape, isa: IsaName): Prepared;
}

// ---- deterministic inputs ------------------------------------------------------------------------

function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; return s / 2 ** 32; };
}
function randF32(n: number, seed: number): Float32Array {
  const r = lcg(seed), a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = r() - 0.5;
  return a;
}
function randBytes(n: number, seed: number, mod: number, offset = 0): Uint8Array {
  const r = lcg(seed), a = new Uint8Array(n);
  for (let i = 0; i < n; i++) a[i] = Math.floor(r() * mod) + offset;
  return a;
}
/** Packed int4 weight codes in [-7, 7] for [N][K]. */
function int4Weights(N: number, K: number, seed: number): QWeights {
  const r = lcg(seed), codes = new Int8Array(N * K);
  for (let i = 0; i < codes.length; i++) codes[i] = Math.floor(r() * 15) - 7;
  return QWeights.fromPacked(packInt(codes, 4), 4, N, K);
}
/** A 'codes' epilogue (ReLU + 4-bit requantisation) whose outputs spread over the code range. */
function codesEpilogue(N: number, K: number): Epilogue {
  return { mode: 'codes', scale: new Float64Array(N).fill(1 / (4 * Math.sqrt(K) * 7)), bias: new Float64Array(N).fill(0.05), actBits: 4, actRange: 1 };
}

const rank: Record<IsaName, number> = { scalar: 0, avx2: 1, avx512: 2 };

/** The variant a registry kernel runs at `isa`: its best variant not above it. */
export function registryVariant(names: readonly string[], isa: IsaName): IsaName | 'none' {
  if (names.length === 0) return 'none';
  const reg = native.kernels();
  let best: IsaName | 'none' = 'none';
  for (const n of names) {
    const k = reg.find((r) => r.name === n);
    if (!k) continue;
    for (const v of k.variants) if (rank[v] <= rank[isa] && (best === 'none' || rank[v] > rank[best])) best = v;
  }
  return best;
}

const convOut = (s: ConvShape) => ({ OH: Math.floor((s.H + 2 * s.pad - s.k) / s.stride) + 1, OW: Math.floor((s.W + 2 * s.pad - s.k) / s.stride) + 1 });
const convMacs = (s: ConvShape) => { const { OH, OW } = convOut(s); return s.N * s.O * OH * OW * s.C * s.k * s.k; };

// ---- the kernels -------------------------------------------------------------------------------

export const KERNELS: readonly KernelDef[] = [
  {
    name: 'sgemm', title: 'fp32 GEMM C = A B', shapeKind: 'gemm', arith: 'f32', workUnit: 'GFLOP', rateUnit: 'GFLOP/s', registry: ['sgemm'],
    work: (s) => { const g = s as GemmShape; return (2 * g.M * g.N * g.K) / 1e9; },
    prepare(s, isa) {
      const { M, N, K } = s as GemmShape;
      const A = randF32(M * K, 1), B = randF32(K * N, 2), C = new Float32Array(M * N);
      return { fn: () => sgemm(false, false, M, N, K, 1, A, K, B, N, 0, C, N), variant: registryVariant(['sgemm'], isa) };
    },
  },
  {
    name: 'conv-fwd', title: 'fp32 convolution forward (+bias)', shapeKind: 'conv', arith: 'f32', workUnit: 'GFLOP', rateUnit: 'GFLOP/s', registry: ['conv2d_forward'],
    work: (s) => (2 * convMacs(s as ConvShape)) / 1e9,
    prepare(s, isa) {
      const c = s as ConvShape, { OH, OW } = convOut(c);
      const x = randF32(c.N * c.C * c.H * c.W, 3), w = randF32(c.O * c.C * c.k * c.k, 4), b = randF32(c.O, 5), y = new Float32Array(c.N * c.O * OH * OW);
      return { fn: () => conv2dForward(x, w, b, y, c.N, c.C, c.H, c.W, c.O, c.k, c.k, c.stride, c.pad), variant: registryVariant(['conv2d_forward'], isa) };
    },
  },
  {
    name: 'conv-bwd', title: 'fp32 convolution backward (dx + dw + db)', shapeKind: 'conv', arith: 'f32', workUnit: 'GFLOP', rateUnit: 'GFLOP/s', registry: ['conv2d_backward'],
    work: (s) => (4 * convMacs(s as ConvShape)) / 1e9,
    prepare(s, isa) {
      const c = s as ConvShape, { OH, OW } = convOut(c);
      const x = randF32(c.N * c.C * c.H * c.W, 6), w = randF32(c.O * c.C * c.k * c.k, 7), dy = randF32(c.N * c.O * OH * OW, 8);
      const dx = new Float32Array(x.length), dw = new Float32Array(w.length), db = new Float32Array(c.O);
      return { fn: () => conv2dBackward(x, w, dy, dx, dw, db, c.N, c.C, c.H, c.W, c.O, c.k, c.k, c.stride, c.pad), variant: registryVariant(['conv2d_backward'], isa) };
    },
  },
  {
    name: 'qgemm', title: 'int4-weight GEMM (uint8 codes x int4, ReLU + requantise epilogue)', shapeKind: 'gemm', arith: 'int8', workUnit: 'GMAC', rateUnit: 'GMAC/s',
    registry: ['u8s8_qgemm_panel'],
    work: (s) => { const g = s as GemmShape; return (g.M * g.N * g.K) / 1e9; },
    prepare(s) {
      const { M, N, K } = s as GemmShape;
      const A = randBytes(M * K, 9, 16), w = int4Weights(N, K, 10), ep = codesEpilogue(N, K), out = new Uint8Array(M * N);
      // Output [N][M] (layout 'nm', as a convolution writes its channels): the packed-panel GEMM on every ISA.
      return { fn: () => { qgemm(A, M, w, ep, { layout: 'nm', out }); }, variant: w.isa! };
    },
  },
  {
    name: 'qconv', title: 'int4 convolution (ReLU + requantise epilogue; the engine\'s path)', shapeKind: 'conv', arith: 'int8', workUnit: 'GMAC', rateUnit: 'GMAC/s',
    registry: ['u8s8_qgemm_panel'],
    work: (s) => convMacs(s as ConvShape) / 1e9,
    prepare(s) {
      const c = s as ConvShape, { OH, OW } = convOut(c), K = c.C * c.k * c.k;
      const x = randBytes(c.N * c.C * c.H * c.W, 11, 16), w = int4Weights(c.O, K, 12), ep = codesEpilogue(c.O, K);
      const out = new Uint8Array(c.N * c.O * OH * OW);
      // The engine's own choice: the direct kernel on AVX-512 VNNI where it applies, else im2col + GEMM.
      return { fn: () => { qconv2d(x, { B: c.N, C: c.C, H: c.H, W: c.W }, w, { kh: c.k, kw: c.k, stride: c.stride, pad: c.pad }, ep, out); }, variant: w.isa! };
    },
  },
  {
    name: 'requant', title: 'ReLU + requantise fp64 to 4-bit codes (8 B in, 1 B out per element)', shapeKind: 'elementwise', arith: null, workUnit: 'GB', rateUnit: 'GB/s',
    registry: ['f64_u8_requant'],
    work: (s) => (9 * (s as ElementwiseShape).n) / 1e9,
    prepare(s, isa) {
      const { n } = s as ElementwiseShape;
      const y = Float64Array.from(randF32(n, 13)), q = new Uint8Array(n);
      return { fn: () => { requantU8(y, 4, 0.4, q); }, variant: registryVariant(['f64_u8_requant'], isa) };
    },
  },
  {
    name: 'faultmask', title: 'fault-mask apply: bit flips on packed codes (code, mask in; code out)', shapeKind: 'elementwise', arith: null, workUnit: 'GB', rateUnit: 'GB/s',
    registry: ['u8_fault_mask_apply'],
    work: (s) => (3 * (s as ElementwiseShape).n) / 1e9,
    prepare(s, isa) {
      const { n } = s as ElementwiseShape;
      const src = randBytes(n, 14, 256), flip = randBytes(n, 15, 2), dst = new Uint8Array(n);
      return { fn: () => { faultMaskApply(src, flip, null, null, dst); }, variant: registryVariant(['u8_fault_mask_apply'], isa) };
    },
  },
  {
    name: 'faultmap', title: 'fault-map drawing: a trial\'s fault order (exact k) + its bit mask', shapeKind: 'faultmap', arith: null, workUnit: 'Mcell', rateUnit: 'Mcell/s',
    registry: [],
    work: (s) => (s as FaultmapShape).cells / 1e6,
    prepare(s) {
      const { cells, rate } = s as FaultmapShape;
      const k = faultCount(rate, cells), order = new Uint32Array(k), mask = new Uint8Array(Math.ceil(cells / 8));
      const cellStart = Uint32Array.of(0, cells), byteStart = Uint32Array.of(0);
      let trial = 0;
      return {
        fn: () => {
          const o = faultOrder(1, trial, cells, null, k, order);
          trial = (trial + 1) >>> 0;
          mask.fill(0);
          cellsToMask(o, o.length, cellStart, byteStart, mask);
        },
        variant: 'none',
      };
    },
  },
];

export function kernelDef(name: string): KernelDef | undefined {
  return KERNELS.find((k) => k.name === name);
}
