// Typed, validated wrappers over the fp32 training kernels (bindings/ops_f32.cc,
// native/kernels/{sgemm,im2col,conv2d,maxpool,peak}.cc; contracts in native/include/flatenn/f32.h).
// Each wrapper checks its arguments first and throws a TypeError (wrong type) or RangeError (bad
// value, short buffer, empty output, size overflow) naming the argument; the addon checks them
// again (and that no output shares memory with another buffer of the call).
//
// Determinism: every kernel splits its work by problem shape only; results are bit-identical for
// any thread count (setThreads). Batch sums (conv2dBackward dw/db, sgemm's K split) are reduced in
// fixed blocks in block order.
import { nativeFn } from './binding';
import * as a from './argcheck';

type F32 = Float32Array;
const DIM_MAX = 2147483647;
const ELEM_MAX = 2 ** 50;

export type PeakKind = 'fma512' | 'fma256' | 'vnni512' | 'int8avx2' | 'int4avx2';
export const PEAK_KINDS: readonly PeakKind[] = ['fma512', 'fma256', 'vnni512', 'int8avx2', 'int4avx2'];
export interface PeakResult {
  /** Operations done by all threads together: FLOPs for the FMA probes (2 per lane), MACs for VNNI. */
  ops: number;
  /** From the common start to the last thread's end. */
  wallSeconds: number;
  /** Sum of the threads' CLOCK_THREAD_CPUTIME_ID times (ops / cpuSeconds = rate per core). */
  cpuSeconds: number;
}

interface F32Native {
  sgemm(transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number, A: F32, lda: number, B: F32, ldb: number, beta: number, C: F32, ldc: number): void;
  im2col(x: F32, col: F32, N: number, C: number, H: number, W: number, KH: number, KW: number, stride: number, pad: number, padValues: F32 | null): void;
  col2im(col: F32, x: F32, N: number, C: number, H: number, W: number, KH: number, KW: number, stride: number, pad: number): void;
  conv2dForward(x: F32, w: F32, bias: F32 | null, y: F32, N: number, C: number, H: number, W: number, O: number, KH: number, KW: number, stride: number, pad: number, padValues: F32 | null): void;
  conv2dBackward(x: F32, w: F32, dy: F32, dx: F32 | null, dw: F32 | null, db: F32 | null, N: number, C: number, H: number, W: number, O: number, KH: number, KW: number, stride: number, pad: number, padValues: F32 | null): void;
  maxpool2dForward(x: F32, y: F32, argmax: Int32Array, N: number, C: number, H: number, W: number, k: number, stride: number): void;
  maxpool2dBackward(dy: F32, argmax: Int32Array, dx: F32, N: number, C: number, H: number, W: number, k: number, stride: number): void;
  peakProbe(kind: PeakKind, iters: number, threads: number): PeakResult;
}

let cached: F32Native | null = null;
function nat(): F32Native {
  if (cached) return cached;
  const names: (keyof F32Native)[] = ['sgemm', 'im2col', 'col2im', 'conv2dForward', 'conv2dBackward', 'maxpool2dForward', 'maxpool2dBackward', 'peakProbe'];
  const o: Record<string, unknown> = {};
  for (const n of names) o[n] = nativeFn(n);
  cached = o as unknown as F32Native;
  return cached;
}

const dim = (name: string, v: unknown): number => a.int(name, v, 1, DIM_MAX);
function bool(name: string, v: unknown): boolean {
  if (typeof v !== 'boolean') throw new TypeError(`Expected a boolean for ${name} but received ${a.describe(v)}`);
  return v;
}
/** Product of element counts; RangeError when it leaves the addressable range. */
function count(what: string, ...factors: number[]): number {
  let n = 1;
  for (const f of factors) {
    n *= f;
    if (n > ELEM_MAX) throw new RangeError(`${what} is too large (size overflow)`);
  }
  return n;
}

// ------------------------------------------------------------------------------- sgemm

/**
 * C[M x N] = alpha * op(A)[M x K] * op(B)[K x N] + beta * C, row-major with leading dimensions.
 * op(A) = A (M x K, lda >= K) or, with transA, A stored K x M (lda >= M); likewise B (ldb >= N, or
 * ldb >= K with transB); ldc >= N. beta = 0 ignores C's previous contents (NaN-safe).
 */
export function sgemm(transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number, A: F32, lda: number,
  B: F32, ldb: number, beta: number, C: F32, ldc: number): void {
  bool('transA', transA);
  bool('transB', transB);
  dim('M', M); dim('N', N); dim('K', K);
  a.finite('alpha', alpha);
  a.f32('A', A);
  dim('lda', lda);
  a.f32('B', B);
  dim('ldb', ldb);
  a.finite('beta', beta);
  a.f32('C', C);
  dim('ldc', ldc);
  const [arows, acols] = transA ? [K, M] : [M, K];
  const [brows, bcols] = transB ? [N, K] : [K, N];
  if (lda < acols) throw new RangeError(`Expected lda >= ${acols} (${transA ? 'M, A transposed' : 'K'}) but received ${lda}`);
  if (ldb < bcols) throw new RangeError(`Expected ldb >= ${bcols} (${transB ? 'K, B transposed' : 'N'}) but received ${ldb}`);
  if (ldc < N) throw new RangeError(`Expected ldc >= ${N} (N) but received ${ldc}`);
  a.atLeast('A', A, count('A', arows - 1, lda) + acols);
  a.atLeast('B', B, count('B', brows - 1, ldb) + bcols);
  a.atLeast('C', C, count('C', M - 1, ldc) + N);
  count('M*N*K', M, N, K);
  nat().sgemm(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

// ------------------------------------------------------------------ convolution geometry

export interface ConvGeometry { OH: number; OW: number }

/** Output size of a convolution: OH = floor((H + 2 pad - KH) / stride) + 1 (likewise OW). */
export function convOutputSize(H: number, W: number, KH: number, KW: number, stride: number, pad: number): ConvGeometry {
  dim('H', H); dim('W', W); dim('KH', KH); dim('KW', KW);
  a.int('stride', stride, 1, DIM_MAX);
  a.int('pad', pad, 0, DIM_MAX);
  if (KH > H + 2 * pad) throw new RangeError(`Expected KH <= H + 2*pad (${H + 2 * pad}) but received KH ${KH}: the output would be empty`);
  if (KW > W + 2 * pad) throw new RangeError(`Expected KW <= W + 2*pad (${W + 2 * pad}) but received KW ${KW}: the output would be empty`);
  return { OH: Math.floor((H + 2 * pad - KH) / stride) + 1, OW: Math.floor((W + 2 * pad - KW) / stride) + 1 };
}

interface Sizes { nx: number; nw: number; ny: number; ncol: number }
function convSizes(N: number, C: number, H: number, W: number, O: number, KH: number, KW: number, stride: number, pad: number): Sizes {
  dim('N', N); dim('C', C); dim('H', H); dim('W', W); dim('O', O); dim('KH', KH); dim('KW', KW);
  const { OH, OW } = convOutputSize(H, W, KH, KW, stride, pad);
  const ckk = count('w', C, KH, KW);
  count('C*KH*KW*OH*OW', ckk, OH, OW);
  return { nx: count('x', N, C, H, W), nw: count('w', O, ckk), ny: count('y', N, O, OH, OW), ncol: count('col', N, ckk, OH, OW) };
}

function padValuesArg(v: unknown, C: number): F32 | null {
  const pv = a.optional(a.f32, 'padValues', v);
  if (pv) a.length('padValues', pv, C);
  return pv;
}

/**
 * x (N, C, H, W) -> col (N, C*KH*KW, OH*OW): col[n][(c*KH + kh)*KW + kw][oh*OW + ow] =
 * x[n][c][oh*stride - pad + kh][ow*stride - pad + kw], or padValues[c] (0 if null) outside the image.
 */
export function im2col(x: F32, col: F32, N: number, C: number, H: number, W: number, KH: number, KW: number, stride: number, pad: number,
  padValues: F32 | null = null): void {
  a.f32('x', x);
  a.f32('col', col);
  const s = convSizes(N, C, H, W, 1, KH, KW, stride, pad);
  a.atLeast('x', x, s.nx);
  a.atLeast('col', col, s.ncol);
  nat().im2col(x, col, N, C, H, W, KH, KW, stride, pad, padValuesArg(padValues, C));
}

/** The adjoint of im2col: x (N, C, H, W) is overwritten with the sum of the col entries copied from each position. */
export function col2im(col: F32, x: F32, N: number, C: number, H: number, W: number, KH: number, KW: number, stride: number, pad: number): void {
  a.f32('col', col);
  a.f32('x', x);
  const s = convSizes(N, C, H, W, 1, KH, KW, stride, pad);
  a.atLeast('col', col, s.ncol);
  a.atLeast('x', x, s.nx);
  nat().col2im(col, x, N, C, H, W, KH, KW, stride, pad);
}

// --------------------------------------------------------------------------- conv2d

/**
 * y (N, O, OH, OW) = conv(x (N, C, H, W), w (O, C, KH, KW)) + bias (O, optional); padded input
 * positions hold padValues[c] (null: 0), so a first layer can pad in raw pixel space.
 */
export function conv2dForward(x: F32, w: F32, bias: F32 | null, y: F32, N: number, C: number, H: number, W: number, O: number,
  KH: number, KW: number, stride: number, pad: number, padValues: F32 | null = null): void {
  a.f32('x', x);
  a.f32('w', w);
  a.optional(a.f32, 'bias', bias);
  a.f32('y', y);
  const s = convSizes(N, C, H, W, O, KH, KW, stride, pad);
  a.atLeast('x', x, s.nx);
  a.atLeast('w', w, s.nw);
  if (bias) a.atLeast('bias', bias, O);
  a.atLeast('y', y, s.ny);
  nat().conv2dForward(x, w, bias ?? null, y, N, C, H, W, O, KH, KW, stride, pad, padValuesArg(padValues, C));
}

/**
 * Gradients of conv2dForward given dy (N, O, OH, OW). Each of dx (N, C, H, W), dw (O, C, KH, KW)
 * and db (O) may be null; the others are overwritten (not accumulated). dw and db are batch sums,
 * reduced in fixed image blocks in block order: bit-identical for any thread count.
 */
export function conv2dBackward(x: F32, w: F32, dy: F32, dx: F32 | null, dw: F32 | null, db: F32 | null, N: number, C: number, H: number,
  W: number, O: number, KH: number, KW: number, stride: number, pad: number, padValues: F32 | null = null): void {
  a.f32('x', x);
  a.f32('w', w);
  a.f32('dy', dy);
  a.optional(a.f32, 'dx', dx);
  a.optional(a.f32, 'dw', dw);
  a.optional(a.f32, 'db', db);
  const s = convSizes(N, C, H, W, O, KH, KW, stride, pad);
  a.atLeast('x', x, s.nx);
  a.atLeast('w', w, s.nw);
  a.atLeast('dy', dy, s.ny);
  if (dx) a.atLeast('dx', dx, s.nx);
  if (dw) a.atLeast('dw', dw, s.nw);
  if (db) a.atLeast('db', db, O);
  nat().conv2dBackward(x, w, dy, dx ?? null, dw ?? null, db ?? null, N, C, H, W, O, KH, KW, stride, pad, padValuesArg(padValues, C));
}

// -------------------------------------------------------------------------- max pooling

/** Output size of max pooling without padding: OH = floor((H - k) / stride) + 1 (likewise OW). */
export function poolOutputSize(H: number, W: number, k: number, stride: number): ConvGeometry {
  dim('H', H); dim('W', W); dim('k', k);
  a.int('stride', stride, 1, DIM_MAX);
  if (k > H || k > W) throw new RangeError(`Expected k <= H and k <= W (no padding) but received k ${k} for ${H}x${W}: the output would be empty`);
  if (H * W > DIM_MAX) throw new RangeError(`H*W must be below 2^31 (argmax indices are Int32) but is ${H * W}`);
  return { OH: Math.floor((H - k) / stride) + 1, OW: Math.floor((W - k) / stride) + 1 };
}

function poolSizes(N: number, C: number, H: number, W: number, k: number, stride: number): { nx: number; ny: number } {
  dim('N', N); dim('C', C);
  const { OH, OW } = poolOutputSize(H, W, k, stride);
  return { nx: count('x', N, C, H, W), ny: count('y', N, C, OH, OW) };
}

/**
 * Max pooling k x k, stride, no padding: y (N, C, OH, OW) and argmax = h*W + w inside each (n, c)
 * plane. Ties keep the first maximum in row-major window order; a NaN wins (as in PyTorch).
 */
export function maxpool2dForward(x: F32, y: F32, argmax: Int32Array, N: number, C: number, H: number, W: number, k: number, stride: number): void {
  a.f32('x', x);
  a.f32('y', y);
  a.i32('argmax', argmax);
  const s = poolSizes(N, C, H, W, k, stride);
  a.atLeast('x', x, s.nx);
  a.atLeast('y', y, s.ny);
  a.atLeast('argmax', argmax, s.ny);
  nat().maxpool2dForward(x, y, argmax, N, C, H, W, k, stride);
}

/** dx (N, C, H, W) is overwritten: zero, then dy scatter-added at argmax (entries must lie in [0, H*W)). */
export function maxpool2dBackward(dy: F32, argmax: Int32Array, dx: F32, N: number, C: number, H: number, W: number, k: number, stride: number): void {
  a.f32('dy', dy);
  a.i32('argmax', argmax);
  a.f32('dx', dx);
  const s = poolSizes(N, C, H, W, k, stride);
  a.atLeast('dy', dy, s.ny);
  a.atLeast('argmax', argmax, s.ny);
  a.atLeast('dx', dx, s.nx);
  nat().maxpool2dBackward(dy, argmax, dx, N, C, H, W, k, stride);
}

// -------------------------------------------------------------------------- peak probes

/**
 * Runs a peak-throughput probe (independent FMA / vpdpbusd chains, no memory traffic) on `threads`
 * threads at once, `iters` iterations each. Throws RangeError if the CPU lacks the instructions.
 */
export function peakProbe(kind: PeakKind, iters: number, threads = 1): PeakResult {
  a.oneOf('kind', kind, PEAK_KINDS);
  a.int('iters', iters, 1, 2 ** 40);
  a.int('threads', threads, 1, 256);
  return nat().peakProbe(kind, iters, threads);
}
