// Named problem shapes for `flatenn bench kernels`: the built-in list (LeNet-5 and CIFAR ResNet-18
// layers, square GEMMs, the weight memory of the two models) and the user's own from a JSON file.
//
// Shapes file: a JSON array of shape objects (or {"shapes": [...]}); every kernel runs on every
// shape of its kind:
//   {"name": "sq-128", "kind": "gemm", "M": 128, "N": 128, "K": 128}                  sgemm, qgemm
//   {"name": "c3", "kind": "conv", "N": 32, "C": 64, "H": 32, "W": 32, "O": 64,
//    "k": 3, "stride": 1, "pad": 1}                                                 conv-fwd, conv-bwd, qconv
//   {"name": "act-1m", "kind": "elementwise", "n": 1048576}                         requant, faultmask
//   {"name": "r18", "kind": "faultmap", "cells": 44696320, "rate": 0.01}             faultmap
// Unknown keys, missing or non-integer sizes, duplicate names and oversized buffers are refused.
import * as fs from 'node:fs';

export type ShapeKind = 'gemm' | 'conv' | 'elementwise' | 'faultmap';
export const SHAPE_KINDS: readonly ShapeKind[] = ['gemm', 'conv', 'elementwise', 'faultmap'];

export interface GemmShape { name: string; kind: 'gemm'; M: number; N: number; K: number }
export interface ConvShape { name: string; kind: 'conv'; N: number; C: number; H: number; W: number; O: number; k: number; stride: number; pad: number }
export interface ElementwiseShape { name: string; kind: 'elementwise'; n: number }
export interface FaultmapShape { name: string; kind: 'faultmap'; cells: number; rate: number }
export type Shape = GemmShape | ConvShape | ElementwiseShape | FaultmapShape;

/** A shapes file that cannot be used (the CLI reports it as bad usage, exit 2). */
export class ShapeError extends Error {
  override name = 'ShapeError';
}

/** The int4 weight count of the CIFAR ResNet-18 (convolutions and fc, no BN): 11,164,352 weights. */
export const RESNET18_WEIGHTS = 11_164_352;
/** LeNet-5's weights (conv 150 + 2,400, fc 48,000 + 10,080 + 840). */
export const LENET5_WEIGHTS = 61_470;

const conv = (name: string, N: number, C: number, H: number, O: number, k: number, stride: number, pad: number): ConvShape =>
  ({ name, kind: 'conv', N, C, H, W: H, O, k, stride, pad });

/** The built-in shapes; `quick` keeps one or two of each kind (the smaller ones). */
export function defaultShapes(quick = false): Shape[] {
  const all: (Shape & { quick?: boolean })[] = [
    { name: 'square-256', kind: 'gemm', M: 256, N: 256, K: 256, quick: true },
    { name: 'square-512', kind: 'gemm', M: 512, N: 512, K: 512 },
    { name: 'square-1024', kind: 'gemm', M: 1024, N: 1024, K: 1024 },
    { ...conv('lenet-conv1 b128', 128, 1, 28, 6, 5, 1, 2), quick: true },
    conv('lenet-conv2 b128', 128, 6, 14, 16, 5, 1, 0),
    conv('resnet-stem b32', 32, 3, 32, 64, 3, 1, 1),
    { ...conv('resnet-l1 b32', 32, 64, 32, 64, 3, 1, 1), quick: true },
    conv('resnet-l2-down b32', 32, 64, 32, 128, 3, 2, 1),
    conv('resnet-l2-proj b32', 32, 64, 32, 128, 1, 2, 0),
    conv('resnet-l3 b32', 32, 256, 8, 256, 3, 1, 1),
    conv('resnet-l4 b32', 32, 512, 4, 512, 3, 1, 1),
    { name: 'resnet-l1-act b32', kind: 'elementwise', n: 32 * 64 * 32 * 32, quick: true },
    { name: 'resnet18-int4-weights', kind: 'elementwise', n: RESNET18_WEIGHTS / 2 },
    { name: 'lenet5 1%', kind: 'faultmap', cells: LENET5_WEIGHTS * 4, rate: 0.01, quick: true },
    { name: 'resnet18 1%', kind: 'faultmap', cells: RESNET18_WEIGHTS * 4, rate: 0.01 },
  ];
  return all.filter((s) => !quick || s.quick).map(({ quick: _q, ...s }) => s as Shape);
}

const KEYS: Record<ShapeKind, readonly string[]> = {
  gemm: ['M', 'N', 'K'],
  conv: ['N', 'C', 'H', 'W', 'O', 'k', 'stride', 'pad'],
  elementwise: ['n'],
  faultmap: ['cells', 'rate'],
};
const OPTIONAL: Partial<Record<string, number>> = { stride: 1, pad: 0 };
/** The largest buffer one shape may ask for (elements of 4 bytes). */
const MAX_ELEMENTS = 2 ** 28;

function where(i: number, name: unknown): string {
  return typeof name === 'string' ? `shape ${i} ('${name}')` : `shape ${i}`;
}

function positiveInt(v: unknown, what: string, lo = 1, hi = 2 ** 31 - 1): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi) {
    throw new ShapeError(`${what} must be an integer in [${lo}, ${hi}], got ${JSON.stringify(v)}`);
  }
  return v;
}

/** Checks one shape object and returns it complete (stride and pad defaulted). */
export function validateShape(raw: unknown, i = 0): Shape {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new ShapeError(`shape ${i} must be an object, got ${JSON.stringify(raw)}`);
  const o = raw as Record<string, unknown>;
  const at = where(i, o.name);
  if (typeof o.name !== 'string' || o.name.trim() === '') throw new ShapeError(`${at}: "name" must be a non-empty string`);
  if (o.name.length > 80) throw new ShapeError(`${at}: "name" is longer than 80 characters`);
  if (typeof o.kind !== 'string' || !(SHAPE_KINDS as readonly string[]).includes(o.kind)) {
    throw new ShapeError(`${at}: "kind" must be one of ${SHAPE_KINDS.join(', ')}, got ${JSON.stringify(o.kind)}`);
  }
  const kind = o.kind as ShapeKind;
  const allowed = new Set(['name', 'kind', ...KEYS[kind]]);
  for (const k of Object.keys(o)) if (!allowed.has(k)) throw new ShapeError(`${at}: unknown key "${k}" for a ${kind} shape (keys: ${[...allowed].join(', ')})`);
  const out: Record<string, unknown> = { name: o.name, kind };
  for (const k of KEYS[kind]) {
    let v = o[k];
    if (v === undefined && OPTIONAL[k] !== undefined) v = OPTIONAL[k];
    if (v === undefined) throw new ShapeError(`${at}: missing "${k}" (a ${kind} shape needs ${KEYS[kind].join(', ')})`);
    if (kind === 'faultmap' && k === 'rate') {
      if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > 1) throw new ShapeError(`${at}: "rate" must be a number in [0, 1], got ${JSON.stringify(v)}`);
      out[k] = v;
    } else if (k === 'pad') out[k] = positiveInt(v, `${at}: "pad"`, 0, 64);
    else if (k === 'k' || k === 'stride') out[k] = positiveInt(v, `${at}: "${k}"`, 1, 64);
    else if (kind === 'faultmap') out[k] = positiveInt(v, `${at}: "${k}"`, 1, 2 ** 32 - 1);
    else out[k] = positiveInt(v, `${at}: "${k}"`);
  }
  const s = out as unknown as Shape;
  const big = (n: number, what: string) => {
    if (n > MAX_ELEMENTS) throw new ShapeError(`${at}: ${what} would hold ${n} elements; at most ${MAX_ELEMENTS} per buffer`);
  };
  if (s.kind === 'gemm') {
    if (s.K > 65536) throw new ShapeError(`${at}: K = ${s.K} is above the int4 GEMM's limit of 65536`);
    big(s.M * s.K, 'A (M x K)'); big(s.N * s.K, 'B (N x K)'); big(s.M * s.N, 'C (M x N)');
  } else if (s.kind === 'conv') {
    if (s.H + 2 * s.pad < s.k || s.W + 2 * s.pad < s.k) throw new ShapeError(`${at}: the ${s.k}x${s.k} kernel is larger than the padded input ${s.H + 2 * s.pad}x${s.W + 2 * s.pad}`);
    const OH = Math.floor((s.H + 2 * s.pad - s.k) / s.stride) + 1, OW = Math.floor((s.W + 2 * s.pad - s.k) / s.stride) + 1;
    if (s.C * s.k * s.k > 65536) throw new ShapeError(`${at}: C x k x k = ${s.C * s.k * s.k} is above the int4 GEMM's limit of 65536`);
    big(s.N * s.C * s.H * s.W, 'the input (N x C x H x W)'); big(s.N * s.O * OH * OW, 'the output (N x O x OH x OW)');
    big(s.N * OH * OW * s.C * s.k * s.k, 'the im2col matrix');
  } else if (s.kind === 'elementwise') big(s.n, 'the buffer');
  else big(Math.ceil(s.cells / 8), 'the fault mask (bytes)');
  return s;
}

/** Checks a parsed shapes document: an array of shapes or {"shapes": [...]}, names unique. */
export function validateShapes(doc: unknown): Shape[] {
  const list = Array.isArray(doc) ? doc : doc !== null && typeof doc === 'object' && Array.isArray((doc as { shapes?: unknown }).shapes) ? (doc as { shapes: unknown[] }).shapes : null;
  if (list === null) throw new ShapeError('expected a JSON array of shapes or an object {"shapes": [...]}');
  if (list.length === 0) throw new ShapeError('the shape list is empty');
  const shapes = list.map((s, i) => validateShape(s, i));
  const seen = new Set<string>();
  for (const s of shapes) {
    if (seen.has(s.name)) throw new ShapeError(`two shapes are named '${s.name}'`);
    seen.add(s.name);
  }
  return shapes;
}

/** Reads and checks a shapes file; every problem is a ShapeError naming the file. */
export function readShapesFile(file: string): Shape[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new ShapeError(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw new ShapeError(`${file} is not valid JSON: ${(e as Error).message}`);
  }
  try {
    return validateShapes(doc);
  } catch (e) {
    if (e instanceof ShapeError) throw new ShapeError(`${file}: ${e.message}`);
    throw e;
  }
}

/** The sizes of a shape in one line, e.g. "M=N=K=256" or "32x64x32x32 -> 64@3x3 s1 p1". */
export function describeShape(s: Shape): string {
  switch (s.kind) {
    case 'gemm': return s.M === s.N && s.N === s.K ? `M=N=K=${s.M}` : `M=${s.M} N=${s.N} K=${s.K}`;
    case 'conv': return `${s.N}x${s.C}x${s.H}x${s.W} -> ${s.O}@${s.k}x${s.k} s${s.stride} p${s.pad}`;
    case 'elementwise': return `n=${s.n}`;
    case 'faultmap': return `${s.cells} cells at ${s.rate}`;
  }
}

/** The dimensions of a shape as a plain object (for JSON rows). */
export function shapeDims(s: Shape): Record<string, number> {
  const { name: _n, kind: _k, ...dims } = s;
  return dims as Record<string, number>;
}
