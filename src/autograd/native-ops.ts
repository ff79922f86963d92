// Binding-level signatures of the native kernels the autograd ops call.
import { nativeFn } from '../native/binding';

type F32 = Float32Array;
type Nullable<T> = T | null;

export interface NativeKernels {
  sgemm(transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number, A: F32, lda: number, B: F32, ldb: number, beta: number, C: F32, ldc: number): void;
  conv2dForward(x: F32, w: F32, bias: Nullable<F32>, y: F32, N: number, C: number, H: number, W: number, O: number, KH: number, KW: number, stride: number, pad: number, padValues: Nullable<F32>): void;
  conv2dBackward(x: F32, w: F32, dy: F32, dx: Nullable<F32>, dw: Nullable<F32>, db: Nullable<F32>, N: number, C: number, H: number, W: number, O: number, KH: number, KW: number, stride: number, pad: number, padValues: Nullable<F32>): void;
  maxpool2dForward(x: F32, y: F32, argmax: Int32Array, N: number, C: number, H: number, W: number, k: number, stride: number): void;
  maxpool2dBackward(dy: F32, argmax: Int32Array, dx: F32, N: number, C: number, H: number, W: number, k: number, stride: number): void;
  fakeQuantWeight(w: F32, out: F32, codes: Nullable<Int8Array>, scales: F32, bits: number, channels: number): void;
  reluFakeQuant(x: F32, y: F32, mask: Uint8Array, bits: number, range: number, codes: Nullable<Uint8Array>): number;
  maskedGrad(dy: F32, mask: Uint8Array, dx: F32): void;
  countZeros(x: F32): number;
  bn2dSums(x: F32, N: number, C: number, HW: number, sum: Float64Array, sumsq: Float64Array): void;
  bn2dApply(x: F32, y: F32, N: number, C: number, HW: number, mean: Float64Array, invstd: Float64Array, gamma: F32, beta: F32): void;
  bn2dBackwardSums(x: F32, dy: F32, N: number, C: number, HW: number, mean: Float64Array, invstd: Float64Array, sumdy: Float64Array, sumdyxhat: Float64Array): void;
  bn2dBackwardDx(x: F32, dy: F32, dx: F32, N: number, C: number, HW: number, mean: Float64Array, invstd: Float64Array, gamma: F32, sumdy: Float64Array, sumdyxhat: Float64Array, training: boolean): void;
  /** SGD with momentum and weight decay over the parameter arena (flatenn/f32.h); false: some updated weight is not finite. */
  sgdStep(w: F32, g: F32, buf: Nullable<F32>, lr: number, wd: number, mu: number, started: boolean, nesterov: boolean): boolean;
  /** start + the sum of x[i]^2 in float64, one chain in index order (SAQ's gradient norm). */
  sumSquares(x: F32, start: number): number;
  /** out[i] = float32(s * x[i]) (float64 product). */
  scaleToF32(g: F32, s: number, out: F32): void;
  /** d[i] = float32(d[i] + s * g[i]) (float64 arithmetic). */
  addScaledF32(d: F32, g: F32, s: number): void;
  /** out[i] = a[i] + b[i] in float32 (out may be a or b). */
  addF32(a: F32, b: F32, out: F32): void;
  /** The largest value ignoring NaN (-0 < +0); -Infinity when there is none. */
  maxF32(x: F32): number;
  /** true if no element is Inf or NaN. */
  allFinite(x: F32): boolean;
  /** y = float((raw - mean[c]) * inv[c]) in float64, raw images [B, C, HW]. */
  normalizeU8(raw: Uint8Array, y: F32, B: number, C: number, HW: number, mean: Float64Array, inv: Float64Array): void;
}

let cached: NativeKernels | null = null;

/** Resolved lazily so that modules load even before every kernel is present. */
export function kernels(): NativeKernels {
  if (cached) return cached;
  const names: (keyof NativeKernels)[] = ['sgemm', 'conv2dForward', 'conv2dBackward', 'maxpool2dForward', 'maxpool2dBackward', 'fakeQuantWeight', 'reluFakeQuant', 'maskedGrad', 'countZeros', 'bn2dSums', 'bn2dApply', 'bn2dBackwardSums', 'bn2dBackwardDx', 'sgdStep', 'maxF32', 'allFinite', 'normalizeU8', 'sumSquares', 'scaleToF32', 'addScaledF32', 'addF32'];
  const k: Partial<NativeKernels> = {};
  for (const n of names) (k as Record<string, unknown>)[n] = nativeFn(n);
  cached = k as NativeKernels;
  return cached;
}
