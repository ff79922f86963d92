// Fuzz driver (a child process of native.test.ts): calls every function of the
// addon with random arguments — typed arrays of the wrong type or length,
// detached and SharedArrayBuffer-backed arrays, huge numbers, NaN, wrong types,
// missing and extra arguments. Every call must return or throw a JS Error with a
// message (never crash the process). argv: seed cases. Prints the outcomes as JSON.
import * as fs from 'node:fs';
import { native } from '../../src/native/binding';
import { newOutcomes, record, rng } from './lib';

const seed = Number(process.argv[2] ?? 1), cases = Number(process.argv[3] ?? 1000);
const R = rng(seed);
// Functions whose cost is the size they are asked for (probes run `iters` loops;
// fault selection scans `cells`): their large counts are clamped to keep the run short.
const PROBES = new Set(['peakProbe', 'qgemmPeakProbe']);
const SCANS = new Set(['faultOrder', 'faultSelectBernoulli']);
const SKIP = new Set(['setThreads']); // exercised below with bounded values only

const NUMBERS = [0, 1, 2, 3, 4, 5, 7, 8, 16, 28, 64, -1, -0, 0.5, 1.5, NaN, Infinity, -Infinity, 2 ** 31, 2 ** 31 - 1, 2 ** 32, 2 ** 32 + 1, 2 ** 53, 2 ** 53 + 2, 1e300, -1e300, Number.MIN_VALUE, Number.MAX_VALUE];
const STRINGS = ['int32', 'float', 'codes', 'mn', 'nm', 'scalar', 'avx2', 'avx512', 'fma512', 'fma256', 'vnni512', '', 'x'.repeat(1000), '4'];
const CTORS = [Float32Array, Float64Array, Uint8Array, Int8Array, Int32Array, Uint32Array, Int16Array, Uint16Array, Uint8ClampedArray];
const LENGTHS = [0, 1, 2, 3, 7, 16, 25, 64, 100, 257, 784, 1024, 4096];

function typed(): ArrayBufferView {
  const C = R.pick(CTORS);
  const n = R.pick(LENGTHS);
  const kind = R.int(10);
  let a: ArrayBufferView & { length: number; [i: number]: number };
  if (kind === 0) {
    a = new C(new SharedArrayBuffer(n * C.BYTES_PER_ELEMENT) as unknown as ArrayBuffer) as never;
  } else if (kind === 1) {
    const buf = new ArrayBuffer(n * C.BYTES_PER_ELEMENT + 8 * C.BYTES_PER_ELEMENT);
    a = new C(buf, 3 * C.BYTES_PER_ELEMENT, n) as never; // a view into the middle of a buffer
  } else {
    a = new C(n) as never;
  }
  const fill = R.int(4);
  for (let i = 0; i < a.length; i++) a[i] = fill === 0 ? 0 : fill === 1 ? R.int(256) - 128 : fill === 2 ? (R.u() - 0.5) * 8 : R.pick([NaN, Infinity, -Infinity, 1e30, 0, 3]);
  if (kind === 2) {
    // detached: its buffer was transferred away
    structuredClone(a.buffer, { transfer: [a.buffer as ArrayBuffer] });
  }
  return a;
}

function value(): unknown {
  const k = R.int(20);
  if (k < 8) return typed();
  if (k < 14) return R.pick(NUMBERS);
  if (k < 15) return R.pick(STRINGS);
  if (k < 16) return R.pick([null, undefined]);
  if (k < 17) return R.pick([true, false]);
  if (k < 18) return R.pick([1n, 2n ** 64n, -1n]);
  if (k < 19) return R.pick([[1, 2, 3], {}, { length: 4 }, () => 1, new DataView(new ArrayBuffer(8)), Symbol('s')]);
  return new BigInt64Array(R.pick([0, 4, 16]));
}

// Argument kinds of each function (from the signatures in bindings/*.cc), so that
// most calls get past the type checks and reach the size checks and the kernels.
const T: Record<string, string[]> = {
  sgemm: ['B', 'B', 'd', 'd', 'd', 'n', 'F32', 'd', 'F32', 'd', 'n', 'F32', 'd'],
  im2col: ['F32', 'F32', 'd', 'd', 'd', 'd', 'k', 'k', 'k', 'p', '?F32'],
  col2im: ['F32', 'F32', 'd', 'd', 'd', 'd', 'k', 'k', 'k', 'p'],
  conv2dForward: ['F32', 'F32', '?F32', 'F32', 'd', 'd', 'd', 'd', 'd', 'k', 'k', 'k', 'p', '?F32'],
  conv2dBackward: ['F32', 'F32', 'F32', '?F32', '?F32', '?F32', 'd', 'd', 'd', 'd', 'd', 'k', 'k', 'k', 'p', '?F32'],
  maxpool2dForward: ['F32', 'F32', 'I32|U32', 'd', 'd', 'd', 'd', 'k', 'k'],
  maxpool2dBackward: ['F32', 'I32|U32', 'F32', 'd', 'd', 'd', 'd', 'k', 'k'],
  qweightsBytes: ['d', 'd'],
  qweightsRepack: ['U8', 'b', 'd', 'd', 'U8'],
  qweightsFromCodes: ['I8', 'd', 'd', 'U8'],
  qgemm: ['U8', 'd', 'd', 'd', 'U8', 'd', 's:int32|float|codes', 'I32|F32|U8', 's:mn|nm', '?F32', '?F32', 'a', 'n', '?B', '?B'],
  qconv2d: ['U8', 'd', 'd', 'd', 'd', 'U8', 'd', 'k', 'k', 'k', 'p', 's:int32|float|codes', 'I32|F32|U8', '?F32', '?F32', 'a', 'n', '?B', '?B'],
  qconv2dPool: ['U8', 'd', 'd', 'd', 'd', 'U8', 'd', 'k', 'k', 'k', 'p', 'k', 'k', 'U8', 'F32', 'F32', 'a', 'n', '?B', '?B'],
  maxpool2dU8: ['U8', 'd', 'd', 'd', 'k', 'k', 'U8'],
  maxpool2dU8Blocked: ['U8', 'd', 'd', 'd', 'd', 'k', 'k', 'U8'],
  globalSumU8: ['U8', 'd', 'd', 'I32'],
  globalAvgPoolU8: ['U8', 'd', 'd', 'n', 'F32|U8', 'a', 'n'],
  requantU8: ['F32', 'a', 'n', 'U8'],
  addRequantU8: ['U8|F32', 'n', 'U8|F32', 'n', 'a', 'n', 'U8'],
  qlinearI32: ['I32', 'd', 'd', 'I8', 'd', 's:float|codes', 'F32|U8', 'F32', 'F32', 'a', 'n'],
  fakeQuantWeight: ['F32', 'F32', '?I8', 'F32', 'b', 'd'],
  reluFakeQuant: ['F32', 'F32', '?U8', 'a', 'n', '?U8'],
  maskedGrad: ['F32', 'U8', 'F32'],
  countZeros: ['F32'],
  packInt: ['I8', 'b', 'U8'],
  unpackInt: ['U8', 'b', 'd', 'I8'],
  faultMaskApply: ['U8', '?U8', '?U8', '?U8', 'U8'],
  faultOrder: ['seed', 'd', 'c', '?U8', 'd', 'U32'],
  faultSelectBernoulli: ['seed', 'd', 'c', '?U8', 'p01', 'U32'],
  faultOrderWeights: ['seed', 'd', 'U32s', 'U8', '?U8', 'd', 'U32'],
  cellsToMask: ['U32', 'd', 'U32s', 'U32s', 'U8'],
  rngUniform: ['seed', 'd', 'd', 'd', 'F64'],
  peakProbe: ['s:fma512|fma256|vnni512|int8avx2|int4avx2', 'small', 'small'],
  qgemmPeakProbe: ['small'],
  setIsa: ['s:scalar|avx2|avx512|sse'],
};
const ARR: Record<string, new (n: number) => ArrayBufferView & { length: number; [i: number]: number }> = { F32: Float32Array, F64: Float64Array, U8: Uint8Array, I8: Int8Array, I32: Int32Array, U32: Uint32Array, U32s: Uint32Array };

function templated(kinds: string[]): unknown[] {
  const dims: number[] = [];
  const args: unknown[] = kinds.map((k0) => {
    let k = k0;
    if (k.startsWith('?')) { if (R.chance(0.3)) return null; k = k.slice(1); }
    if (k.startsWith('s:')) return R.pick(k.slice(2).split('|'));
    if (k.includes('|')) k = R.pick(k.split('|'));
    switch (k) {
      case 'd': { const v = R.pick([0, 1, 1, 2, 3, 4, 5, 8, 9, 16, 28, 33]); dims.push(v); return v; }
      case 'k': return R.pick([1, 1, 2, 3, 5, 0, 7]);
      case 'p': return R.pick([0, 0, 1, 2, 3]);
      case 'b': return R.pick([2, 4, 8, 8, 4, 3]);
      case 'a': return R.pick([2, 4, 8, 1, 0, 9]);
      case 'n': return R.pick([1, 0.5, 3, 0, -1, 1e-30, 100]);
      case 'p01': return R.pick([0, 0.01, 0.5, 1]);
      case 'c': return R.pick([0, 1, 100, 4096, 65537, 2 ** 20]);
      case 'seed': return R.pick([0, 1, 12345, 2 ** 53 - 1]);
      case 'small': return R.pick([0, 1, 2]);
      case 'B': return R.chance(0.5);
      default: return undefined; // arrays: below, once the dims are known
    }
  });
  kinds.forEach((k0, i) => {
    if (args[i] !== undefined || (k0.startsWith('?') && args[i] === null)) return;
    let k = k0.replace(/^\?/, '');
    if (k.includes('|')) k = R.pick(k.split('|'));
    const C = ARR[k];
    if (!C) return;
    let n = R.pick(LENGTHS);
    if (R.chance(0.5) && dims.length) { n = 1; for (let j = 0, m = 1 + R.int(4); j < m; j++) n *= R.pick(dims); if (n > 1 << 20) n = 4096; }
    const a = new C(n);
    if (k === 'U32s') { let v = 0; for (let j = 0; j < n; j++) { v += R.int(40); a[j] = j === 0 ? 0 : v; } }
    else for (let j = 0; j < n; j++) a[j] = k === 'U8' ? R.int(256) : k === 'I8' ? R.int(16) - 8 : k === 'U32' || k === 'I32' ? R.int(1000) : (R.u() - 0.3) * 4;
    args[i] = a;
  });
  // one argument replaced by anything, or one dropped or added
  const m = R.int(10);
  if (m < 3 && args.length) args[R.int(args.length)] = value();
  else if (m === 3 && args.length) args.pop();
  else if (m === 4) args.push(value());
  return args;
}

const names = Object.keys(native).filter((k) => typeof native[k] === 'function' && !SKIP.has(k)).sort();
const outcomes = newOutcomes();
const perFunction: Record<string, number> = {};
const w = (s: string) => fs.writeSync(2, s + '\n');
const describe = (a: unknown) => (ArrayBuffer.isView(a) ? `${a.constructor.name}(${(a as unknown as { length?: number }).length ?? a.byteLength}${a.buffer instanceof SharedArrayBuffer ? ',shared' : ''})` : typeof a === 'bigint' ? `${a}n` : typeof a === 'symbol' ? 'symbol' : typeof a === 'function' ? 'fn' : JSON.stringify(a) ?? String(a));

for (let i = 0; i < cases; i++) {
  const name = names[i % names.length]!;
  const fn = native[name] as (...a: unknown[]) => unknown;
  const args = T[name] && R.chance(0.75) ? templated(T[name]!) : Array.from({ length: R.int(22) }, value);
  if (PROBES.has(name)) for (let j = 0; j < args.length; j++) if (typeof args[j] === 'number' && (args[j] as number) > 8) args[j] = 1;
  if (SCANS.has(name) && typeof args[2] === 'number' && (args[2] as number) > 2 ** 20) args[2] = R.chance(0.5) ? 2 ** 20 : -1;
  w(`CASE ${i} ${name}(${args.map(describe).join(', ')})`);
  perFunction[name] = (perFunction[name] ?? 0) + 1;
  try { fn(...args); record(outcomes, name); } catch (e) { record(outcomes, `${name}(${args.map(describe).join(', ')})`, e); }
}
// threads: bounded values plus invalid ones, then restored
for (const t of [1, 2, 3, 0, -1, NaN, 2 ** 40, 'x', null]) {
  w(`CASE setThreads(${String(t)})`);
  try { (native.setThreads as (n: unknown) => void)(t); record(outcomes, 'setThreads'); } catch (e) { record(outcomes, `setThreads(${String(t)})`, e); }
}
native.setThreads(2);
process.stdout.write(JSON.stringify({ ...outcomes, functions: names.length, perFunction }) + '\n');
