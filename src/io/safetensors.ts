// safetensors reader and writer (https://github.com/huggingface/safetensors).
//
// Layout: an 8-byte little-endian u64 N, then N bytes of UTF-8 JSON
//   {"__metadata__": {string: string}, "<name>": {"dtype": D, "shape": [...], "data_offsets": [begin, end]}, ...}
// padded with spaces to a multiple of 8 bytes, then the data buffer. Offsets are relative to the
// buffer start; the tensors are contiguous, never overlap and cover the buffer exactly. Data is
// little-endian, row-major.
//
// The writer is deterministic: tensors are laid out in sorted name order (UTF-16 code unit order,
// JavaScript's default sort), the JSON header lists "__metadata__" first (only when non-empty, keys
// sorted) and then the tensors in that same order. The same input always gives the same bytes.
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import { writeFileAtomic } from './atomic';

interface DtypeArrays {
  F64: Float64Array;
  F32: Float32Array;
  I64: BigInt64Array;
  I32: Int32Array;
  U32: Uint32Array;
  I16: Int16Array;
  U16: Uint16Array;
  I8: Int8Array;
  U8: Uint8Array;
}
export type SafetensorsDtype = keyof DtypeArrays;
export type TensorData = DtypeArrays[SafetensorsDtype];

/** One tensor; a union discriminated by dtype, so checking `dtype` narrows `data`. */
export type Tensor = { [D in SafetensorsDtype]: { dtype: D; shape: number[]; data: DtypeArrays[D] } }[SafetensorsDtype];

export interface SafetensorsFile {
  tensors: Record<string, Tensor>;
  metadata: Record<string, string>;
}

interface ArrayCtor {
  new (buffer: ArrayBufferLike, byteOffset: number, length: number): TensorData;
  readonly BYTES_PER_ELEMENT: number;
  readonly name: string;
}

const CTORS: { [D in SafetensorsDtype]: ArrayCtor } = {
  F64: Float64Array,
  F32: Float32Array,
  I64: BigInt64Array,
  I32: Int32Array,
  U32: Uint32Array,
  I16: Int16Array,
  U16: Uint16Array,
  I8: Int8Array,
  U8: Uint8Array,
};
export const SAFETENSORS_DTYPES = Object.keys(CTORS) as SafetensorsDtype[];

/** Largest header accepted on reading (the reference implementation's limit). */
const MAX_HEADER = 100_000_000;
const LITTLE_ENDIAN_HOST = os.endianness() === 'LE';

export class SafetensorsError extends Error {
  override name = 'SafetensorsError';
}

function isDtype(d: unknown): d is SafetensorsDtype {
  return typeof d === 'string' && Object.prototype.hasOwnProperty.call(CTORS, d);
}

function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function isShape(s: unknown): s is number[] {
  return Array.isArray(s) && s.every((d) => Number.isSafeInteger(d) && d >= 0) && Number.isSafeInteger(numel(s));
}

/** obj[key] = value as an own data property, even for keys such as '__proto__' that a file may hold. */
function setOwn<T>(obj: Record<string, T>, key: string, value: T): void {
  Object.defineProperty(obj, key, { value, writable: true, enumerable: true, configurable: true });
}

/** Byte-swap a copy of `bytes` in `size`-byte groups (only used on big-endian hosts). */
function swapped(bytes: Uint8Array, size: number): Uint8Array {
  const b = Buffer.from(bytes);
  if (size === 2) b.swap16();
  else if (size === 4) b.swap32();
  else if (size === 8) b.swap64();
  return b;
}

/** Serialise tensors (and optional string metadata) to safetensors bytes. Throws TypeError/RangeError on bad input. */
export function encodeSafetensors(tensors: Record<string, Tensor>, metadata?: Record<string, string>): Buffer {
  const names = Object.keys(tensors).sort();
  const entries: string[] = [];
  if (metadata !== undefined) {
    if (metadata === null || typeof metadata !== 'object' || Array.isArray(metadata)) throw new TypeError('safetensors metadata must be an object of strings');
    const keys = Object.keys(metadata).sort();
    for (const k of keys) {
      if (typeof metadata[k] !== 'string') throw new TypeError(`safetensors metadata '${k}' must be a string, got ${typeof metadata[k]}`);
    }
    if (keys.length > 0) entries.push(`"__metadata__":{${keys.map((k) => `${JSON.stringify(k)}:${JSON.stringify(metadata[k])}`).join(',')}}`);
  }
  const parts: Uint8Array[] = [];
  let offset = 0;
  for (const name of names) {
    const t = tensors[name];
    if (name === '__metadata__') throw new RangeError("'__metadata__' is reserved and cannot name a tensor");
    if (t === null || typeof t !== 'object') throw new TypeError(`tensor '${name}' must be an object {dtype, shape, data}`);
    if (!isDtype(t.dtype)) throw new RangeError(`tensor '${name}': unsupported dtype '${String(t.dtype)}' (supported: ${SAFETENSORS_DTYPES.join(', ')})`);
    if (!isShape(t.shape)) throw new RangeError(`tensor '${name}': shape must be an array of non-negative integers, got ${JSON.stringify(t.shape)}`);
    const ctor = CTORS[t.dtype];
    if (!(t.data instanceof ctor)) {
      throw new TypeError(`tensor '${name}': dtype ${t.dtype} needs a ${ctor.name}, got ${(t.data as object)?.constructor?.name ?? typeof t.data}`);
    }
    const n = numel(t.shape);
    if (t.data.length !== n) {
      throw new RangeError(`tensor '${name}': shape [${t.shape.join(', ')}] holds ${n} elements but data has ${t.data.length}`);
    }
    const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    parts.push(LITTLE_ENDIAN_HOST ? bytes : swapped(bytes, ctor.BYTES_PER_ELEMENT));
    const info = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes.byteLength] };
    entries.push(`${JSON.stringify(name)}:${JSON.stringify(info)}`);
    offset += bytes.byteLength;
  }
  const json = Buffer.from(`{${entries.join(',')}}`, 'utf8');
  const headerLen = Math.ceil(json.length / 8) * 8;
  const out = Buffer.alloc(8 + headerLen + offset);
  out.writeBigUInt64LE(BigInt(headerLen), 0);
  json.copy(out, 8);
  out.fill(0x20, 8 + json.length, 8 + headerLen);
  let at = 8 + headerLen;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

/**
 * Parse safetensors bytes. `source` names the file in error messages. Each tensor's data is a view
 * on `buf` where its offset is aligned for the element type, else a copy; copy the result if it must
 * not share memory with `buf`.
 */
export function decodeSafetensors(buf: Uint8Array, source = '<buffer>'): SafetensorsFile {
  const fail = (problem: string): never => {
    throw new SafetensorsError(`safetensors file ${source}: ${problem}`);
  };
  if (buf.byteLength < 8) fail(`truncated: ${buf.byteLength} bytes, too short for the 8-byte header length`);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const n64 = view.getBigUint64(0, true);
  if (n64 > BigInt(buf.byteLength - 8)) fail(`header length ${n64} goes beyond the end of the file (${buf.byteLength} bytes): truncated or not a safetensors file`);
  const n = Number(n64);
  if (n > MAX_HEADER) fail(`header length ${n} exceeds the ${MAX_HEADER}-byte limit`);
  let header: unknown;
  try {
    const text = new TextDecoder('utf-8', { fatal: true }).decode(buf.subarray(8, 8 + n));
    if (!text.startsWith('{')) fail("header does not start with '{'");
    header = JSON.parse(text);
  } catch (e) {
    if (e instanceof SafetensorsError) throw e;
    fail(`header is not valid UTF-8 JSON (${(e as Error).message})`);
  }
  if (header === null || typeof header !== 'object' || Array.isArray(header)) fail('header is not a JSON object');
  const dataStart = 8 + n;
  const dataLen = buf.byteLength - dataStart;
  const metadata: Record<string, string> = {};
  const infos: { name: string; dtype: SafetensorsDtype; shape: number[]; begin: number; end: number }[] = [];
  for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) fail('__metadata__ is not an object');
      for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
        if (typeof v !== 'string') fail(`__metadata__ '${k}' is not a string`);
        setOwn(metadata, k, v as string);
      }
      continue;
    }
    const t = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown } | null;
    if (t === null || typeof t !== 'object' || Array.isArray(t)) fail(`tensor '${name}' is not an object`);
    const { dtype, shape, data_offsets: off } = t as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (!isDtype(dtype)) fail(`tensor '${name}' has unknown dtype ${JSON.stringify(dtype)} (supported: ${SAFETENSORS_DTYPES.join(', ')})`);
    if (!isShape(shape)) fail(`tensor '${name}' has an invalid shape ${JSON.stringify(shape)}`);
    if (!Array.isArray(off) || off.length !== 2 || !off.every((x) => Number.isSafeInteger(x) && x >= 0) || off[0] > off[1]) {
      fail(`tensor '${name}' has invalid data_offsets ${JSON.stringify(off)}`);
    }
    const [begin, end] = off as [number, number];
    if (end > dataLen) fail(`tensor '${name}' data_offsets [${begin}, ${end}] go beyond the ${dataLen}-byte data buffer (truncated file?)`);
    const d = dtype as SafetensorsDtype;
    const s = shape as number[];
    const want = numel(s) * CTORS[d].BYTES_PER_ELEMENT;
    if (end - begin !== want) fail(`tensor '${name}' has ${end - begin} bytes but shape [${s.join(', ')}] x ${d} needs ${want}`);
    infos.push({ name, dtype: d, shape: s, begin, end });
  }
  const sorted = [...infos].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let expected = 0;
  let prev = '';
  for (const t of sorted) {
    if (t.begin < expected) fail(`tensor '${t.name}' [${t.begin}, ${t.end}] overlaps tensor '${prev}' (which ends at ${expected})`);
    if (t.begin > expected) fail(`gap in the data buffer: bytes [${expected}, ${t.begin}) before tensor '${t.name}' belong to no tensor`);
    expected = t.end;
    prev = t.name;
  }
  if (expected !== dataLen) fail(`the tensors cover ${expected} bytes but the data buffer has ${dataLen}: trailing bytes belong to no tensor`);

  const tensors: Record<string, Tensor> = {};
  for (const t of infos) {
    const ctor = CTORS[t.dtype];
    const size = ctor.BYTES_PER_ELEMENT;
    const abs = buf.byteOffset + dataStart + t.begin;
    const count = (t.end - t.begin) / size;
    let data: TensorData;
    if (!LITTLE_ENDIAN_HOST) {
      const copy = swapped(buf.subarray(dataStart + t.begin, dataStart + t.end), size);
      data = new ctor(copy.buffer, copy.byteOffset, count);
    } else if (abs % size === 0) {
      data = new ctor(buf.buffer, abs, count);
    } else {
      const copy = new Uint8Array(buf.subarray(dataStart + t.begin, dataStart + t.end)); // fresh, aligned buffer
      data = new ctor(copy.buffer, copy.byteOffset, count);
    }
    setOwn(tensors, t.name, { dtype: t.dtype, shape: t.shape, data } as Tensor);
  }
  return { tensors, metadata };
}

/** Write a safetensors file atomically (temporary file in the same folder, fsync, rename). */
export async function writeSafetensors(path: string, tensors: Record<string, Tensor>, metadata?: Record<string, string>): Promise<void> {
  await writeFileAtomic(path, encodeSafetensors(tensors, metadata));
}

/** Read and validate a safetensors file; errors name the file and the problem. */
export async function readSafetensors(path: string): Promise<SafetensorsFile> {
  return decodeSafetensors(await fsp.readFile(path), path);
}

/** The tensor `name` of `file`, checked to have `dtype` (and `shape`, if given); throws a clear error otherwise. */
export function tensorOf<D extends SafetensorsDtype>(
  file: SafetensorsFile,
  name: string,
  dtype: D,
  shape?: readonly number[],
): { dtype: D; shape: number[]; data: DtypeArrays[D] } {
  const t = Object.prototype.hasOwnProperty.call(file.tensors, name) ? file.tensors[name] : undefined;
  if (t === undefined) throw new SafetensorsError(`tensor '${name}' is missing`);
  if (t.dtype !== dtype) throw new SafetensorsError(`tensor '${name}' is ${t.dtype}, expected ${dtype}`);
  if (shape !== undefined && (shape.length !== t.shape.length || shape.some((d, i) => d !== t.shape[i]))) {
    throw new SafetensorsError(`tensor '${name}' has shape [${t.shape.join(', ')}], expected [${shape.join(', ')}]`);
  }
  return t as { dtype: D; shape: number[]; data: DtypeArrays[D] };
}
