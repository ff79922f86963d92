// Argument checks for the typed native wrappers (kernels-quant.ts, kernels-qengine.ts).
// Messages follow one format: "Expected <what> for <name> but received <value>".

type TypedCtor = Float32ArrayConstructor | Float64ArrayConstructor | Uint8ArrayConstructor | Int8ArrayConstructor | Int32ArrayConstructor | Uint32ArrayConstructor;

export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (v === undefined) return 'undefined';
  if (ArrayBuffer.isView(v)) return `${v.constructor.name}(${(v as unknown as { length: number }).length})`;
  if (Array.isArray(v)) return 'Array';
  if (typeof v === 'number' || typeof v === 'bigint') return `${typeof v} ${String(v)}`;
  if (typeof v === 'string') return `string '${v}'`;
  return typeof v;
}

export function typed<T>(ctor: TypedCtor, name: string, v: unknown): T {
  if (!(v instanceof ctor)) throw new TypeError(`Expected ${ctor.name} for ${name} but received ${describe(v)}`);
  return v as T;
}
export const f32 = (name: string, v: unknown): Float32Array => typed<Float32Array>(Float32Array, name, v);
export const f64 = (name: string, v: unknown): Float64Array => typed<Float64Array>(Float64Array, name, v);
export const u8 = (name: string, v: unknown): Uint8Array => typed<Uint8Array>(Uint8Array, name, v);
export const i8 = (name: string, v: unknown): Int8Array => typed<Int8Array>(Int8Array, name, v);
export const i32 = (name: string, v: unknown): Int32Array => typed<Int32Array>(Int32Array, name, v);
export const u32 = (name: string, v: unknown): Uint32Array => typed<Uint32Array>(Uint32Array, name, v);

/** null/undefined -> null, else the typed array. */
export function optional<T>(check: (name: string, v: unknown) => T, name: string, v: unknown): T | null {
  return v === null || v === undefined ? null : check(name, v);
}

export function int(name: string, v: unknown, lo: number, hi: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v)) throw new TypeError(`Expected an integer for ${name} but received ${describe(v)}`);
  if (v < lo || v > hi) throw new RangeError(`Expected ${name} in [${lo}, ${hi}] but received ${v}`);
  return v;
}

export function finite(name: string, v: unknown): number {
  if (typeof v !== 'number') throw new TypeError(`Expected a number for ${name} but received ${describe(v)}`);
  if (!Number.isFinite(v)) throw new RangeError(`Expected a finite number for ${name} but received ${v}`);
  return v;
}

export function oneOf<T extends number | string>(name: string, v: unknown, allowed: readonly T[]): T {
  if (!(allowed as readonly unknown[]).includes(v)) {
    const list = allowed.map((a) => (typeof a === 'string' ? `'${a}'` : String(a))).join(', ');
    if (typeof v !== typeof allowed[0]) throw new TypeError(`Expected one of ${list} for ${name} but received ${describe(v)}`);
    throw new RangeError(`Expected one of ${list} for ${name} but received ${describe(v)}`);
  }
  return v as T;
}

export function seed(name: string, v: unknown): number | bigint {
  if (typeof v === 'bigint') {
    if (v < 0n || v >= 1n << 64n) throw new RangeError(`Expected ${name} in [0, 2^64) but received ${v}`);
    return v;
  }
  return int(name, v, 0, Number.MAX_SAFE_INTEGER);
}

export function length(name: string, a: { length: number }, n: number): void {
  if (a.length !== n) throw new RangeError(`Expected ${name} to hold exactly ${n} elements but it has ${a.length}`);
}
export function atLeast(name: string, a: { length: number }, n: number): void {
  if (a.length < n) throw new RangeError(`Expected ${name} to hold at least ${n} elements but it has ${a.length}`);
}
