// Typed, validated wrappers over the int4 inference kernels (bindings/ops_qengine.cc,
// native/kernels/{qgemm,qops}.cc; contracts in native/include/flatenn/qengine.h).
//
// GEMM: acc[m][n] = sum_k A[m][k] * W[n][k] (uint8 activation codes x signed weight codes, exact
// int32), then per element, in float64 (scale, bias and corr are Float64Arrays):
//   'int32' : acc
//   'float' : y = fl(fl(scale[n] * acc) + bias[n]), stored as float32
//   'codes' : q = min(roundHalfEven(max(fl(y * inv), 0)), 2^actBits - 1), inv = fl(1 / actScale),
//             actScale = fround(actRange / (2^actBits - 1)) (the model's activation scale)
// so the codes are those of exact arithmetic except within ~1e-15 of a rounding boundary.
// Weights are repacked once (per trial, after faults) into a QWeights buffer laid out for the ISA
// chosen at that moment; the GEMM then runs that ISA's kernel.
import { nativeFn, type IsaName } from './binding';
import * as a from './argcheck';

type F32 = Float32Array;
type F64 = Float64Array;
type U8 = Uint8Array;

export type QMode = 'int32' | 'float' | 'codes';
export type QLayout = 'mn' | 'nm';
/** The integer kernels' bound on K (C * kh * kw for a convolution; flatenn/qengine.h). */
export const QWEIGHTS_MAX_K = 65536;

interface QNative {
  qweightsBytes(N: number, K: number): number;
  qweightsRepack(packed: U8, bits: number, N: number, K: number, dst: U8): IsaName;
  qweightsFromCodes(codes: Int8Array, N: number, K: number, dst: U8): IsaName;
  qgemm(A: U8, M: number, K: number, lda: number, qw: U8, N: number, mode: QMode, out: Int32Array | F32 | U8, layout: QLayout,
    scale: F64 | null, bias: F64 | null, actBits: number, actRange: number, inBlocked: boolean, outBlocked: boolean): number;
  qconv2d(x: U8, B: number, C: number, H: number, W: number, qw: U8, O: number, kh: number, kw: number, stride: number, pad: number,
    mode: QMode, out: Int32Array | F32 | U8, scale: F64 | null, bias: F64 | null, actBits: number, actRange: number, inBlocked: boolean,
    outBlocked: boolean, corr?: F64 | null): number;
  qconv2dPool(x: U8, B: number, C: number, H: number, W: number, qw: U8, O: number, kh: number, kw: number, stride: number, pad: number,
    poolK: number, poolStride: number, out: U8, scale: F64, bias: F64, actBits: number, actRange: number, inBlocked: boolean,
    outBlocked: boolean, corr?: F64 | null): number;
  maxpool2dU8(x: U8, planes: number, H: number, W: number, k: number, stride: number, y: U8): void;
  maxpool2dU8Blocked(x: U8, B: number, C: number, H: number, W: number, k: number, stride: number, y: U8): void;
  globalSumU8(x: U8, planes: number, HW: number, sums: Int32Array): void;
  requantU8(y: F64, actBits: number, actRange: number, q: U8): number;
  addRequantU8(a: U8 | Int32Array, sa: number, aScale: F64 | null, aBias: F64 | null, b: U8 | Int32Array, sb: number, bScale: F64 | null,
    bBias: F64 | null, C: number, P: number, actBits: number, actRange: number, q: U8): number;
  qgroupsEpilogue(acc: Int32Array, G: number, B: number, O: number, P: number, gscale: F64, bias: F64, corr: F64 | null, mode: 'float' | 'codes',
    out: F32 | U8, actBits: number, actRange: number): number;
  qlinearI32(A: Int32Array, M: number, K: number, W: Int8Array, N: number, mode: 'float' | 'codes', out: F32 | U8, scale: F64, bias: F64,
    actBits: number, actRange: number): number;
  qgemmPeakProbe(iters: number): PeakProbe;
}

/** Result of the VNNI issue-rate probe: multiply-accumulates done, wall and thread CPU seconds. */
export interface PeakProbe { macs: number; seconds: number; cpuSeconds: number }

let cached: QNative | null = null;
function nat(): QNative {
  if (cached) return cached;
  const names: (keyof QNative)[] = ['qweightsBytes', 'qweightsRepack', 'qweightsFromCodes', 'qgemm', 'qconv2d', 'qconv2dPool', 'maxpool2dU8', 'maxpool2dU8Blocked',
    'globalSumU8', 'requantU8', 'addRequantU8', 'qgroupsEpilogue', 'qlinearI32', 'qgemmPeakProbe'];
  const o: Record<string, unknown> = {};
  for (const n of names) o[n] = nativeFn(n);
  cached = o as unknown as QNative;
  return cached;
}

/** Epilogue of a layer: per-output-channel scale and bias, and for 'codes' the activation quantiser. */
export interface Epilogue {
  mode: QMode;
  /** [N] float64 (folded BN and input normalisation included); not read in 'int32' mode. */
  scale?: F64;
  bias?: F64;
  /** 'codes' only: activation width in [1, 8] (default 4) and clip range r > 0. */
  actBits?: number;
  actRange?: number;
  /**
   * Convolutions, 'float' / 'codes': a per-position term [N][OH*OW] added after the affine,
   * y = fl(fl(fl(scale * acc) + bias) + corr[n][p]) (the input layer's border correction), float64.
   */
  corr?: F64;
}

function checkEpilogue(e: Epilogue, N: number): void {
  if (typeof e !== 'object' || e === null) throw new TypeError(`Expected an object for epilogue but received ${a.describe(e)}`);
  a.oneOf('epilogue.mode', e.mode, ['int32', 'float', 'codes'] as const);
  if (e.mode === 'int32') return;
  a.length('epilogue.scale', a.f64('epilogue.scale', e.scale), N);
  a.length('epilogue.bias', a.f64('epilogue.bias', e.bias), N);
  if (e.mode === 'codes') {
    a.int('epilogue.actBits', e.actBits ?? 4, 1, 8);
    const r = a.finite('epilogue.actRange', e.actRange);
    if (!(r > 0)) throw new RangeError(`Expected a positive number for epilogue.actRange but received ${r}`);
  }
}

function corrOf(e: Epilogue, n: number): F64 | null {
  if (e.corr === undefined) return null;
  if (e.mode === 'int32') throw new RangeError("Expected the 'float' or 'codes' epilogue with epilogue.corr but received 'int32'");
  const c = a.f64('epilogue.corr', e.corr);
  a.length('epilogue.corr', c, n);
  return c;
}

function outFor(mode: QMode, n: number, out: unknown): Int32Array | F32 | U8 {
  if (out === undefined) return mode === 'int32' ? new Int32Array(n) : mode === 'float' ? new Float32Array(n) : new Uint8Array(n);
  const o = mode === 'int32' ? a.i32('out', out) : mode === 'float' ? a.f32('out', out) : a.u8('out', out);
  a.length('out', o, n);
  return o;
}

/** Repacked weights [N][K] for the GEMM of one ISA (decided when packed). */
export class QWeights {
  readonly N: number;
  readonly K: number;
  /** Header + layout bytes; reused by repack(). */
  readonly buffer: U8;
  private isaName: IsaName | null = null;

  constructor(N: number, K: number) {
    this.N = a.int('N', N, 1, 2 ** 30);
    this.K = a.int('K', K, 1, QWEIGHTS_MAX_K);
    this.buffer = new Uint8Array(nat().qweightsBytes(N, K));
  }

  /** The ISA whose layout the buffer holds (null before the first repack). */
  get isa(): IsaName | null { return this.isaName; }

  /** Repacks b-bit packed codes [N][K] (DESIGN §2 layout, e.g. a layer's slice of the faulty weight memory). */
  repack(packed: U8, bits: 2 | 4 | 8): this {
    a.u8('packed', packed);
    a.oneOf('bits', bits, [2, 4, 8] as const);
    a.atLeast('packed', packed, Math.ceil((this.N * this.K * bits) / 8));
    this.isaName = nat().qweightsRepack(packed, bits, this.N, this.K, this.buffer);
    return this;
  }

  /** Packs plain int8 codes [N][K] (any int8 value; tests and 8-bit layers). */
  setCodes(codes: Int8Array): this {
    a.i8('codes', codes);
    a.length('codes', codes, this.N * this.K);
    this.isaName = nat().qweightsFromCodes(codes, this.N, this.K, this.buffer);
    return this;
  }

  static fromPacked(packed: U8, bits: 2 | 4 | 8, N: number, K: number): QWeights { return new QWeights(N, K).repack(packed, bits); }
  static fromCodes(codes: Int8Array, N: number, K: number): QWeights { return new QWeights(N, K).setCodes(codes); }
}

function checkWeights(w: QWeights): void {
  if (!(w instanceof QWeights)) throw new TypeError(`Expected QWeights for w but received ${a.describe(w)}`);
  if (w.isa === null) throw new RangeError('Expected packed QWeights for w (call repack() or setCodes() first)');
}

export interface QResult<T> { out: T; zeros: number }

/**
 * Blocked layout ("images in lanes", flatenn/qengine.h): a batch of B items of E elements each as
 * [ceil(B/16)][E][16], element e of item b at ((b >> 4) * E + e) * 16 + (b & 15); arrays hold
 * ceil(B/16)*16 items. The direct AVX-512 VNNI kernels read and write it without transposing
 * (other ISAs convert), so chains of layers can keep their activations blocked.
 */
export interface Blocked { inBlocked?: boolean; outBlocked?: boolean }
/** Items a batch of `B` occupies in the blocked layout. */
export function blockedItems(B: number): number { return Math.ceil(B / 16) * 16; }
/** Rows [B][E] into the blocked layout (lanes past B zero). */
export function toBlocked<T extends U8 | F32 | Int32Array>(rows: T, B: number, E: number): T {
  const out = new (rows.constructor as new (n: number) => T)(blockedItems(B) * E);
  for (let b = 0; b < B; b++) for (let e = 0; e < E; e++) out[((b >> 4) * E + e) * 16 + (b & 15)] = rows[b * E + e]!;
  return out;
}
/** The blocked layout back into rows [B][E]. */
export function fromBlocked<T extends U8 | F32 | Int32Array>(blocked: T, B: number, E: number): T {
  const out = new (blocked.constructor as new (n: number) => T)(B * E);
  for (let b = 0; b < B; b++) for (let e = 0; e < E; e++) out[b * E + e] = blocked[((b >> 4) * E + e) * 16 + (b & 15)]!;
  return out;
}
const items = (B: number, blocked: boolean | undefined) => (blocked ? blockedItems(B) : B);
function bool(name: string, v: unknown): boolean {
  if (typeof v !== 'boolean') throw new TypeError(`Expected a boolean for ${name} but received ${a.describe(v)}`);
  return v;
}

/**
 * GEMM of uint8 activations A [M][lda] (first K columns used) with the weights, output [M][N]
 * ('mn', default) or [N][M] ('nm'). Returns the output and, in 'codes' mode, the number of zero codes.
 */
export function qgemm(A: U8, M: number, w: QWeights, epilogue: Epilogue, opts: { lda?: number; layout?: QLayout; out?: Int32Array | F32 | U8 } & Blocked = {}): QResult<Int32Array | F32 | U8> {
  a.u8('A', A);
  checkWeights(w);
  a.int('M', M, 0, 2 ** 30);
  const inB = bool('opts.inBlocked', opts.inBlocked ?? false), outB = bool('opts.outBlocked', opts.outBlocked ?? false);
  const lda = a.int('lda', opts.lda ?? w.K, w.K, inB ? w.K : 2 ** 30);
  if (inB) a.length('A', A, blockedItems(M) * w.K);
  else if (M > 0) a.atLeast('A', A, (M - 1) * lda + w.K);
  checkEpilogue(epilogue, w.N);
  const layout = a.oneOf('layout', opts.layout ?? 'mn', outB ? ['mn'] as const : ['mn', 'nm'] as const);
  const out = outFor(epilogue.mode, items(M, outB) * w.N, opts.out);
  const zeros = nat().qgemm(A, M, w.K, lda, w.buffer, w.N, epilogue.mode, out, layout, epilogue.scale ?? null, epilogue.bias ?? null,
    epilogue.actBits ?? 4, epilogue.actRange ?? 1, inB, outB);
  return { out, zeros };
}

export interface ConvShape { B: number; C: number; H: number; W: number }
export interface ConvParams { kh: number; kw: number; stride: number; pad: number }

/** Output height/width of a convolution. */
export function convOut(H: number, W: number, p: ConvParams): { OH: number; OW: number } {
  return { OH: Math.floor((H + 2 * p.pad - p.kh) / p.stride) + 1, OW: Math.floor((W + 2 * p.pad - p.kw) / p.stride) + 1 };
}

/**
 * Convolution of uint8 codes x [B][C][H][W] (zero padding = code 0 / raw pixel 0) with weights
 * [O][C][kh][kw] packed as QWeights(O, C*kh*kw); output [B][O][OH][OW] in the epilogue's mode.
 */
export function qconv2d(x: U8, shape: ConvShape, w: QWeights, conv: ConvParams, epilogue: Epilogue, out?: Int32Array | F32 | U8,
  blocked: Blocked = {}): QResult<Int32Array | F32 | U8> & { OH: number; OW: number } {
  a.u8('x', x);
  checkWeights(w);
  const B = a.int('shape.B', shape.B, 0, 2 ** 30), C = a.int('shape.C', shape.C, 1, 2 ** 30);
  const H = a.int('shape.H', shape.H, 1, 2 ** 30), W = a.int('shape.W', shape.W, 1, 2 ** 30);
  const kh = a.int('conv.kh', conv.kh, 1, 64), kw = a.int('conv.kw', conv.kw, 1, 64);
  const stride = a.int('conv.stride', conv.stride, 1, 64), pad = a.int('conv.pad', conv.pad, 0, 64);
  if (C * kh * kw !== w.K) throw new RangeError(`Expected weights with K = C*kh*kw = ${C * kh * kw} but w has K = ${w.K}`);
  if (H + 2 * pad < kh || W + 2 * pad < kw) throw new RangeError(`The kernel ${kh}x${kw} is larger than the padded input ${H + 2 * pad}x${W + 2 * pad}`);
  const inB = bool('blocked.inBlocked', blocked.inBlocked ?? false), outB = bool('blocked.outBlocked', blocked.outBlocked ?? false);
  a.length('x', x, items(B, inB) * C * H * W);
  checkEpilogue(epilogue, w.N);
  const { OH, OW } = convOut(H, W, { kh, kw, stride, pad });
  const o = outFor(epilogue.mode, items(B, outB) * w.N * OH * OW, out);
  const corr = corrOf(epilogue, w.N * OH * OW);
  const zeros = nat().qconv2d(x, B, C, H, W, w.buffer, w.N, kh, kw, stride, pad, epilogue.mode, o, epilogue.scale ?? null,
    epilogue.bias ?? null, epilogue.actBits ?? 4, epilogue.actRange ?? 1, inB, outB, corr);
  return { out: o, zeros, OH, OW };
}

/**
 * Convolution + ReLU/requantise ('codes' epilogue only) + max pool over poolK x poolK windows
 * with stride poolStride (no padding): output [B][O][PH][PW], equal to qconv2d then maxpool2dU8;
 * `zeros` counts the zero codes of the convolution output before pooling.
 */
export function qconv2dPool(x: U8, shape: ConvShape, w: QWeights, conv: ConvParams, pool: { k: number; stride: number }, epilogue: Epilogue,
  out?: U8, blocked: Blocked = {}): QResult<U8> & { PH: number; PW: number } {
  a.u8('x', x);
  checkWeights(w);
  const B = a.int('shape.B', shape.B, 0, 2 ** 30), C = a.int('shape.C', shape.C, 1, 2 ** 30);
  const H = a.int('shape.H', shape.H, 1, 2 ** 30), W = a.int('shape.W', shape.W, 1, 2 ** 30);
  const kh = a.int('conv.kh', conv.kh, 1, 64), kw = a.int('conv.kw', conv.kw, 1, 64);
  const stride = a.int('conv.stride', conv.stride, 1, 64), pad = a.int('conv.pad', conv.pad, 0, 64);
  if (C * kh * kw !== w.K) throw new RangeError(`Expected weights with K = C*kh*kw = ${C * kh * kw} but w has K = ${w.K}`);
  if (H + 2 * pad < kh || W + 2 * pad < kw) throw new RangeError(`The kernel ${kh}x${kw} is larger than the padded input ${H + 2 * pad}x${W + 2 * pad}`);
  const inB = bool('blocked.inBlocked', blocked.inBlocked ?? false), outB = bool('blocked.outBlocked', blocked.outBlocked ?? false);
  a.length('x', x, items(B, inB) * C * H * W);
  checkEpilogue(epilogue, w.N);
  if (epilogue.mode !== 'codes') throw new RangeError(`Expected the 'codes' epilogue for a pooled convolution but received '${epilogue.mode}'`);
  const { OH, OW } = convOut(H, W, { kh, kw, stride, pad });
  const pk = a.int('pool.k', pool.k, 1, Math.min(64, OH, OW)), ps = a.int('pool.stride', pool.stride, 1, 64);
  const PH = Math.floor((OH - pk) / ps) + 1, PW = Math.floor((OW - pk) / ps) + 1;
  const o = outFor('codes', items(B, outB) * w.N * PH * PW, out) as U8;
  const corr = corrOf(epilogue, w.N * OH * OW);
  const zeros = nat().qconv2dPool(x, B, C, H, W, w.buffer, w.N, kh, kw, stride, pad, pk, ps, o, epilogue.scale!, epilogue.bias!,
    epilogue.actBits ?? 4, epilogue.actRange!, inB, outB, corr);
  return { out: o, zeros, PH, PW };
}

/** Max pooling of codes [planes][H][W] over k x k windows with a stride, no padding. */
export function maxpool2dU8(x: U8, planes: number, H: number, W: number, k: number, stride: number, out?: U8): U8 {
  a.u8('x', x);
  a.int('planes', planes, 0, 2 ** 30);
  a.int('H', H, 1, 2 ** 30);
  a.int('W', W, 1, 2 ** 30);
  a.int('k', k, 1, Math.min(64, H, W));
  a.int('stride', stride, 1, 64);
  a.length('x', x, planes * H * W);
  const n = planes * (Math.floor((H - k) / stride) + 1) * (Math.floor((W - k) / stride) + 1);
  const y = out === undefined ? new Uint8Array(n) : a.u8('out', out);
  a.length('out', y, n);
  nat().maxpool2dU8(x, planes, H, W, k, stride, y);
  return y;
}

/** Max pooling of blocked codes [B][C][H][W] (k x k windows, a stride, no padding) into blocked [B][C][OH][OW]. */
export function maxpool2dU8Blocked(x: U8, B: number, C: number, H: number, W: number, k: number, stride: number, out?: U8): U8 {
  a.u8('x', x);
  a.int('B', B, 0, 2 ** 30);
  a.int('C', C, 1, 2 ** 30);
  a.int('H', H, 1, 2 ** 30);
  a.int('W', W, 1, 2 ** 30);
  a.int('k', k, 1, Math.min(64, H, W));
  a.int('stride', stride, 1, 64);
  a.length('x', x, blockedItems(B) * C * H * W);
  const n = blockedItems(B) * C * (Math.floor((H - k) / stride) + 1) * (Math.floor((W - k) / stride) + 1);
  const y = out === undefined ? new Uint8Array(n) : a.u8('out', out);
  a.length('out', y, n);
  nat().maxpool2dU8Blocked(x, B, C, H, W, k, stride, y);
  return y;
}

/** Exact integer sums of each plane of codes [planes][HW]. */
export function globalSumU8(x: U8, planes: number, HW: number, out?: Int32Array): Int32Array {
  a.u8('x', x);
  a.int('planes', planes, 0, 2 ** 30);
  a.int('HW', HW, 1, 2 ** 23);
  a.length('x', x, planes * HW);
  const s = out === undefined ? new Int32Array(planes) : a.i32('out', out);
  a.length('out', s, planes);
  nat().globalSumU8(x, planes, HW, s);
  return s;
}

function checkAct(actBits: number, actRange: number): void {
  a.int('actBits', actBits, 1, 8);
  const r = a.finite('actRange', actRange);
  if (!(r > 0)) throw new RangeError(`Expected a positive number for actRange but received ${r}`);
}

/** ReLU + requantise float64 values to codes. Returns the codes and the zero count. */
export function requantU8(y: F64, actBits: number, actRange: number, out?: U8): QResult<U8> {
  a.f64('y', y);
  checkAct(actBits, actRange);
  const q = out === undefined ? new Uint8Array(y.length) : a.u8('out', out);
  a.length('out', q, y.length);
  return { out: q, zeros: nat().requantU8(y, actBits, actRange, q) };
}

/**
 * A residual input over planes [n][C][P]: codes with their scale (dequantised as fl(code * scale)),
 * or a layer's int32 accumulators with its per-channel epilogue (y = fl(fl(scale[c] * acc) + bias[c])).
 */
export type ResidualInput = { codes: U8; scale: number } | { acc: Int32Array; scale: F64; bias: F64 };

/** Residual join y = fl(a + b) in float64 over planes [n][C][P], then ReLU + requantise. */
export function addRequantU8(x: ResidualInput, y: ResidualInput, C: number, P: number, actBits: number, actRange: number, out?: U8): QResult<U8> {
  a.int('C', C, 1, 2 ** 30);
  a.int('P', P, 1, 2 ** 30);
  const unpack = (v: ResidualInput, name: string): [U8 | Int32Array, number, F64 | null, F64 | null] => {
    if (typeof v !== 'object' || v === null) throw new TypeError(`Expected {codes, scale} or {acc, scale, bias} for ${name} but received ${a.describe(v)}`);
    if ('acc' in v) {
      const s = a.f64(`${name}.scale`, v.scale), b = a.f64(`${name}.bias`, v.bias);
      a.length(`${name}.scale`, s, C);
      a.length(`${name}.bias`, b, C);
      return [a.i32(`${name}.acc`, v.acc), 1, s, b];
    }
    return [a.u8(`${name}.codes`, v.codes), a.finite(`${name}.scale`, v.scale), null, null];
  };
  const [xa, sa, xs, xb] = unpack(x, 'a'), [yb, sb, ys, yB] = unpack(y, 'b');
  a.length('b', yb, xa.length);
  if (xa.length % (C * P) !== 0) throw new RangeError(`Expected whole planes of C * P = ${C * P} elements but received ${xa.length}`);
  checkAct(actBits, actRange);
  const q = out === undefined ? new Uint8Array(xa.length) : a.u8('out', out);
  a.length('out', q, xa.length);
  return { out: q, zeros: nat().addRequantU8(xa, sa, xs, xb, yb, sb, ys, yB, C, P, actBits, actRange, q) };
}

/**
 * The input layer with one accumulator per channel group (a per-channel std): acc holds G arrays
 * [B][O][P] one after another; y = fl(fl(gscale[0][o] * acc_0) + bias[o]), then y = fl(y +
 * fl(gscale[g][o] * acc_g)) in order, then y = fl(y + corr[o][p]); float32 or codes [B][O][P].
 */
export function qgroupsEpilogue(acc: Int32Array, G: number, B: number, O: number, P: number, gscale: F64, bias: F64, corr: F64 | null,
  epilogue: { mode: 'float' | 'codes'; actBits?: number; actRange?: number }, out?: F32 | U8): QResult<F32 | U8> {
  a.i32('acc', acc);
  a.int('G', G, 1, 4096); a.int('B', B, 0, 2 ** 30); a.int('O', O, 1, 2 ** 30); a.int('P', P, 1, 2 ** 30);
  a.length('acc', acc, G * B * O * P);
  a.length('gscale', a.f64('gscale', gscale), G * O);
  a.length('bias', a.f64('bias', bias), O);
  if (corr !== null) a.length('corr', a.f64('corr', corr), O * P);
  a.oneOf('epilogue.mode', epilogue.mode, ['float', 'codes'] as const);
  if (epilogue.mode === 'codes') checkAct(epilogue.actBits ?? 4, epilogue.actRange ?? NaN);
  const o = outFor(epilogue.mode, B * O * P, out) as F32 | U8;
  const zeros = nat().qgroupsEpilogue(acc, G, B, O, P, gscale, bias, corr, epilogue.mode, o, epilogue.actBits ?? 4, epilogue.actRange ?? 1);
  return { out: o, zeros };
}

/** Linear layer on int32 activations A [M][K] (e.g. global sums) with int8 codes W [N][K]; output [M][N]. */
export function qlinearI32(A: Int32Array, M: number, W: Int8Array, N: number, epilogue: Epilogue & { mode: 'float' | 'codes' }): QResult<F32 | U8> {
  a.i32('A', A);
  a.i8('W', W);
  a.int('M', M, 0, 2 ** 30);
  a.int('N', N, 1, 2 ** 30);
  if (M > 0 && A.length % M !== 0) throw new RangeError(`Expected A.length to be a multiple of M = ${M} but it is ${A.length}`);
  const K = M > 0 ? A.length / M : W.length / N;
  a.length('W', W, N * K);
  a.oneOf('epilogue.mode', epilogue.mode, ['float', 'codes'] as const);
  checkEpilogue(epilogue, N);
  const out = epilogue.mode === 'float' ? new Float32Array(M * N) : new Uint8Array(M * N);
  const zeros = nat().qlinearI32(A, M, K, W, N, epilogue.mode, out, epilogue.scale!, epilogue.bias!, epilogue.actBits ?? 4, epilogue.actRange ?? 1);
  return { out, zeros };
}

/**
 * Single-thread AVX-512 VNNI issue-rate probe (24 independent vpdpbusd chains, the GEMM tile's
 * shape, no memory traffic). macs = 0 on a CPU without AVX-512 VNNI.
 */
export function qgemmPeakProbe(iters: number): PeakProbe {
  a.int('iters', iters, 1, 2 ** 40);
  return nat().qgemmPeakProbe(iters);
}
