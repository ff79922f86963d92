import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  decodeSafetensors,
  encodeSafetensors,
  readSafetensors,
  SafetensorsError,
  tensorOf,
  writeSafetensors,
  type Tensor,
} from '../../src/io/safetensors';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const PY = '/usr/bin/python3';

function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'flatenn-st-'));
}

/** One tensor of every dtype with edge values, plus layouts that force unaligned data (odd-sized U8 first). */
function sample(): Record<string, Tensor> {
  return {
    a_u8_odd: { dtype: 'U8', shape: [3], data: new Uint8Array([0, 1, 255]) },
    b_f32: { dtype: 'F32', shape: [2, 4], data: new Float32Array([0, -0, 1.5, -2.25, Infinity, -Infinity, NaN, 1e-45]) },
    c_f64: { dtype: 'F64', shape: [5], data: new Float64Array([Math.PI, -0, Number.MAX_VALUE, 5e-324, NaN]) },
    d_i8: { dtype: 'I8', shape: [2, 2], data: new Int8Array([-128, -1, 0, 127]) },
    e_i16: { dtype: 'I16', shape: [3], data: new Int16Array([-32768, 7, 32767]) },
    f_u16: { dtype: 'U16', shape: [1, 3], data: new Uint16Array([0, 4242, 65535]) },
    g_i32: { dtype: 'I32', shape: [2], data: new Int32Array([-2147483648, 2147483647]) },
    h_u32: { dtype: 'U32', shape: [2], data: new Uint32Array([0, 4294967295]) },
    i_i64: { dtype: 'I64', shape: [3], data: new BigInt64Array([-(2n ** 63n), 2n ** 63n - 1n, 12345678901234567n]) },
    j_scalar: { dtype: 'F32', shape: [], data: new Float32Array([0.1]) },
    k_empty: { dtype: 'F64', shape: [0, 3], data: new Float64Array(0) },
  };
}

function assertSameTensors(got: Record<string, Tensor>, want: Record<string, Tensor>): void {
  assert.deepEqual(Object.keys(got).sort(), Object.keys(want).sort());
  for (const [name, w] of Object.entries(want)) {
    const g = got[name];
    assert.equal(g.dtype, w.dtype, name);
    assert.deepEqual(g.shape, w.shape, name);
    assert.equal(g.data.constructor, w.data.constructor, `${name}: array type`);
    // compare the bytes: NaN payloads and -0 must survive too
    assert.deepEqual(
      Buffer.from(g.data.buffer, g.data.byteOffset, g.data.byteLength),
      Buffer.from(w.data.buffer, w.data.byteOffset, w.data.byteLength),
      `${name}: data`,
    );
  }
}

test('round trip of every dtype through bytes and through a file', async () => {
  const t = sample();
  const meta = { flatenn: JSON.stringify({ arch: 'lenet5', bits: 4 }), 'ünïcode': 'välue ✓' };
  const dec = decodeSafetensors(encodeSafetensors(t, meta));
  assertSameTensors(dec.tensors, t);
  assert.deepEqual(dec.metadata, meta);

  const dir = tmpDir();
  const file = path.join(dir, 'm.safetensors');
  await writeSafetensors(file, t, meta);
  const r = await readSafetensors(file);
  assertSameTensors(r.tensors, t);
  assert.deepEqual(r.metadata, meta);
  assert.deepEqual(fs.readdirSync(dir), ['m.safetensors'], 'no temporary file is left behind');
  fs.rmSync(dir, { recursive: true });
});

test('data is a typed view where aligned and an aligned copy where not', () => {
  const bytes = encodeSafetensors({
    a: { dtype: 'U8', shape: [1], data: new Uint8Array([9]) },
    b: { dtype: 'F32', shape: [2], data: new Float32Array([1, 2]) },
  });
  const dec = decodeSafetensors(bytes);
  const b = tensorOf(dec, 'b', 'F32', [2]);
  assert.ok(b.data instanceof Float32Array);
  assert.deepEqual([...b.data], [1, 2]);
  assert.notEqual(b.data.buffer, bytes.buffer, 'unaligned F32 (offset 1) is copied');
  const a = tensorOf(dec, 'a', 'U8');
  assert.equal(a.data.buffer, bytes.buffer, 'U8 is always aligned, so it is a view');
});

test('the writer is deterministic: insertion order and metadata order do not matter', async () => {
  const t = sample();
  const reversed = Object.fromEntries(Object.entries(t).reverse());
  const m1 = { z: '1', a: '2', m: '3' };
  const m2 = { m: '3', a: '2', z: '1' };
  const x = encodeSafetensors(t, m1);
  const y = encodeSafetensors(reversed, m2);
  assert.ok(x.equals(y));
  const n = Number(x.readBigUInt64LE(0));
  assert.equal(n % 8, 0, 'header padded to a multiple of 8');
  assert.equal(encodeSafetensors(t, {}).equals(encodeSafetensors(t)), true, 'empty metadata is the same as none');

  const dir = tmpDir();
  await writeSafetensors(path.join(dir, '1.safetensors'), t, m1);
  await writeSafetensors(path.join(dir, '2.safetensors'), reversed, m2);
  assert.ok(fs.readFileSync(path.join(dir, '1.safetensors')).equals(fs.readFileSync(path.join(dir, '2.safetensors'))));
  fs.rmSync(dir, { recursive: true });
});

test('exact bytes of a small file (layout pinned: sorted names, metadata first, space padding)', () => {
  const bytes = encodeSafetensors(
    { w: { dtype: 'I16', shape: [2], data: new Int16Array([1, -2]) }, b: { dtype: 'U8', shape: [1], data: new Uint8Array([7]) } },
    { k: 'v' },
  );
  const json = '{"__metadata__":{"k":"v"},"b":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"w":{"dtype":"I16","shape":[2],"data_offsets":[1,5]}}';
  const padded = json + ' '.repeat((8 - (json.length % 8)) % 8);
  const head = Buffer.alloc(8);
  head.writeBigUInt64LE(BigInt(padded.length));
  assert.deepEqual(bytes, Buffer.concat([head, Buffer.from(padded), Buffer.from([7, 0x01, 0x00, 0xfe, 0xff])]));
});

test('the writer validates its input', () => {
  const bad = (t: Record<string, unknown>, re: RegExp, meta?: unknown) =>
    assert.throws(() => encodeSafetensors(t as Record<string, Tensor>, meta as Record<string, string>), re);
  bad({ x: { dtype: 'F32', shape: [3], data: new Float32Array(2) } }, /shape \[3\] holds 3 elements but data has 2/);
  bad({ x: { dtype: 'F32', shape: [2], data: new Float64Array(2) } }, /dtype F32 needs a Float32Array, got Float64Array/);
  bad({ x: { dtype: 'BF16', shape: [2], data: new Uint16Array(2) } }, /unsupported dtype 'BF16'/);
  bad({ x: { dtype: 'U8', shape: [-1], data: new Uint8Array(0) } }, /shape must be an array of non-negative integers/);
  bad({ x: { dtype: 'U8', shape: [1.5], data: new Uint8Array(0) } }, /shape must be/);
  bad({ __metadata__: { dtype: 'U8', shape: [0], data: new Uint8Array(0) } }, /reserved/);
  bad({}, /metadata 'n' must be a string/, { n: 3 });
});

test('atomic write: a failed write leaves no temporary file and keeps the old file', async () => {
  const dir = tmpDir();
  const file = path.join(dir, 'm.safetensors');
  await writeSafetensors(file, { a: { dtype: 'U8', shape: [1], data: new Uint8Array([1]) } });
  const before = fs.readFileSync(file);
  // bad input: nothing is written at all
  await assert.rejects(writeSafetensors(file, { a: { dtype: 'U8', shape: [2], data: new Uint8Array([1]) } }), /holds 2 elements/);
  assert.deepEqual(fs.readFileSync(file), before);
  // the rename fails (the destination is a non-empty folder): the temporary file is removed
  const blocked = path.join(dir, 'blocked');
  fs.mkdirSync(blocked);
  fs.writeFileSync(path.join(blocked, 'x'), 'x');
  await assert.rejects(writeSafetensors(blocked, { a: { dtype: 'U8', shape: [1], data: new Uint8Array([1]) } }));
  assert.deepEqual(fs.readdirSync(dir).sort(), ['blocked', 'm.safetensors']);
  // overwriting replaces the whole file
  await writeSafetensors(file, { b: { dtype: 'F64', shape: [1], data: new Float64Array([2]) } });
  assert.deepEqual(Object.keys((await readSafetensors(file)).tensors), ['b']);
  // a missing folder is an error, not a crash
  await assert.rejects(writeSafetensors(path.join(dir, 'nope', 'm.safetensors'), {}), /ENOENT/);
  fs.rmSync(dir, { recursive: true });
});

/** A file with a hand-made header (padded) and data buffer. */
function craft(header: unknown, data: Uint8Array | number = 0, rawHeader?: Buffer): Buffer {
  const json = rawHeader ?? Buffer.from(JSON.stringify(header));
  const head = Buffer.alloc(8);
  head.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([head, json, typeof data === 'number' ? Buffer.alloc(data) : data]);
}

test('every corruption is rejected with the file name and the problem', async () => {
  const good = encodeSafetensors(sample());
  const f32 = (off: [number, number], shape = [2]) => ({ dtype: 'F32', shape, data_offsets: off });
  const cases: [string, Buffer, RegExp][] = [
    ['empty file', Buffer.alloc(0), /truncated: 0 bytes/],
    ['7 bytes', Buffer.alloc(7), /truncated: 7 bytes/],
    ['header length beyond the file', (() => { const b = Buffer.from(good); b.writeBigUInt64LE(BigInt(good.length)); return b; })(), /header length \d+ goes beyond the end of the file/],
    ['huge header length', (() => { const b = Buffer.from(good); b.writeBigUInt64LE(2n ** 63n); return b; })(), /goes beyond the end of the file/],
    ['truncated data', good.subarray(0, good.length - 3), /go beyond the \d+-byte data buffer \(truncated file\?\)/],
    ['truncated header', good.subarray(0, 20), /goes beyond the end of the file/],
    ['bad JSON', craft(null, 0, Buffer.from('{"a": {"dtype": ')), /not valid UTF-8 JSON/],
    ['not starting with {', craft(null, 0, Buffer.from(' {}     ')), /does not start with '\{'/],
    ['invalid UTF-8', craft(null, 0, Buffer.from([0x7b, 0xff, 0xfe, 0x7d])), /not valid UTF-8 JSON/],
    ['JSON array', craft([1, 2]), /does not start with '\{'/],
    ['unknown dtype', craft({ a: { dtype: 'Q7', shape: [1], data_offsets: [0, 1] } }, 1), /tensor 'a' has unknown dtype "Q7"/],
    ['missing dtype', craft({ a: { shape: [1], data_offsets: [0, 1] } }, 1), /tensor 'a' has unknown dtype undefined/],
    ['bad shape', craft({ a: { dtype: 'U8', shape: [-1], data_offsets: [0, 1] } }, 1), /invalid shape \[-1\]/],
    ['bad offsets', craft({ a: { dtype: 'U8', shape: [1], data_offsets: [1, 0] } }, 1), /invalid data_offsets \[1,0\]/],
    ['offsets out of range', craft({ a: f32([0, 8]), b: f32([8, 16]) }, 12), /tensor 'b' data_offsets \[8, 16\] go beyond the 12-byte data buffer/],
    ['overlapping', craft({ a: f32([0, 8]), b: f32([4, 12]) }, 12), /tensor 'b' \[4, 12\] overlaps tensor 'a'/],
    ['gap', craft({ a: f32([0, 8]), b: f32([12, 20]) }, 20), /gap in the data buffer: bytes \[8, 12\) before tensor 'b'/],
    ['not covering', craft({ a: f32([0, 8]) }, 10), /cover 8 bytes but the data buffer has 10/],
    ['byte length vs shape', craft({ a: f32([0, 12]) }, 12), /tensor 'a' has 12 bytes but shape \[2\] x F32 needs 8/],
    ['metadata not strings', craft({ __metadata__: { n: 1 } }), /__metadata__ 'n' is not a string/],
    ['metadata not an object', craft({ __metadata__: 'x' }), /__metadata__ is not an object/],
  ];
  const dir = tmpDir();
  for (const [what, bytes, re] of cases) {
    assert.throws(() => decodeSafetensors(bytes, 'mem.safetensors'), (e: Error) => {
      assert.ok(e instanceof SafetensorsError, `${what}: ${e}`);
      assert.match(e.message, /^safetensors file mem\.safetensors: /, what);
      assert.match(e.message, re, what);
      return true;
    }, what);
    const file = path.join(dir, `${what.replace(/\W+/g, '_')}.safetensors`);
    fs.writeFileSync(file, bytes);
    await assert.rejects(readSafetensors(file), (e: Error) => e.message.includes(file) && re.test(e.message), what);
  }
  fs.rmSync(dir, { recursive: true });
  await assert.rejects(readSafetensors('/nonexistent/flatenn.safetensors'), /ENOENT.*nonexistent/);
  // a '__proto__' tensor name from a file stays an ordinary entry
  const proto = decodeSafetensors(craft(JSON.parse('{"__proto__": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}}'), 1));
  assert.deepEqual(Object.keys(proto.tensors), ['__proto__']);
  assert.equal(Object.getPrototypeOf(proto.tensors), Object.prototype);
});

test('tensorOf checks presence, dtype and shape', () => {
  const f = decodeSafetensors(encodeSafetensors(sample()));
  assert.equal(tensorOf(f, 'g_i32', 'I32', [2]).data[1], 2147483647);
  assert.throws(() => tensorOf(f, 'nope', 'F32'), /tensor 'nope' is missing/);
  assert.throws(() => tensorOf(f, 'g_i32', 'F32'), /tensor 'g_i32' is I32, expected F32/);
  assert.throws(() => tensorOf(f, 'g_i32', 'I32', [1, 2]), /has shape \[2\], expected \[1, 2\]/);
  assert.throws(() => tensorOf(f, 'toString', 'F32'), /is missing/);
});

// ---- an independent reader: Python's json + numpy (scripts/read_safetensors.py) ----

const NUMPY_DTYPE: Record<string, string> = {
  F64: '<f8', F32: '<f4', I64: '<i8', I32: '<i4', U32: '<u4', I16: '<i2', U16: '<u2', I8: '|i1', U8: '|u1',
};

function numpyProblem(): string | undefined {
  if (!fs.existsSync(PY)) return `${PY} does not exist`;
  const r = spawnSync(PY, ['-c', 'import numpy'], { encoding: 'utf8' });
  return r.status === 0 ? undefined : `${PY} cannot import numpy (Debian: apt-get install python3-numpy): ${r.stderr.trim().split('\n').pop()}`;
}

test('a file written by TypeScript reads back identically in Python (json + numpy)', async (t) => {
  const problem = numpyProblem();
  if (problem !== undefined) {
    if (process.env.CI === 'true') assert.fail(`the independent reader must run under CI: ${problem}`);
    t.skip(`independent Python reader skipped: ${problem}`);
    return;
  }
  const dir = tmpDir();
  const file = path.join(dir, 'py.safetensors');
  const tensors = sample();
  const meta = { flatenn: '{"arch":"lenet5"}', note: 'ünïcode ✓' };
  await writeSafetensors(file, tensors, meta);
  const r = spawnSync(PY, [path.join(ROOT, 'scripts', 'read_safetensors.py'), file, '--values'], { encoding: 'utf8' });
  fs.rmSync(dir, { recursive: true });
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { metadata: Record<string, string>; tensors: Record<string, { dtype: string; shape: number[]; values: string[] }> };
  assert.deepEqual(out.metadata, meta);
  assert.deepEqual(Object.keys(out.tensors).sort(), Object.keys(tensors).sort());
  for (const [name, want] of Object.entries(tensors)) {
    const got = out.tensors[name];
    assert.equal(got.dtype, NUMPY_DTYPE[want.dtype], `${name}: dtype`);
    assert.deepEqual(got.shape, want.shape, `${name}: shape`);
    const expected = want.data instanceof BigInt64Array ? [...want.data].map(String) : [...want.data];
    const actual = want.data instanceof BigInt64Array ? got.values : got.values.map(Number);
    assert.deepEqual(actual, expected, `${name}: values`); // deepEqual: NaN equals NaN, -0 differs from 0
  }
});
