// Tensor: a shape over a contiguous typed array (f32, u8, i32). Views share memory.

export type DType = 'f32' | 'u8' | 'i32';
export type ArrayFor<D extends DType> = D extends 'f32' ? Float32Array : D extends 'u8' ? Uint8Array : Int32Array;

export function numelOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new RangeError(`Expected non-negative integer dimensions but received shape [${shape.join(', ')}]`);
    n *= d;
  }
  return n;
}

function alloc<D extends DType>(dtype: D, n: number): ArrayFor<D> {
  switch (dtype) {
    case 'f32': return new Float32Array(n) as ArrayFor<D>;
    case 'u8': return new Uint8Array(n) as ArrayFor<D>;
    case 'i32': return new Int32Array(n) as ArrayFor<D>;
    default: throw new TypeError(`Expected dtype f32, u8 or i32 but received ${String(dtype)}`);
  }
}

function dtypeOf(a: Float32Array | Uint8Array | Int32Array): DType {
  if (a instanceof Float32Array) return 'f32';
  if (a instanceof Uint8Array) return 'u8';
  if (a instanceof Int32Array) return 'i32';
  throw new TypeError('Expected a Float32Array, Uint8Array or Int32Array');
}

/** A typed n-dimensional array (shape + flat typed-array data, row-major). */
export class Tensor<D extends DType = DType> {
  readonly shape: readonly number[];
  readonly dtype: D;
  readonly data: ArrayFor<D>;

  constructor(data: ArrayFor<D>, shape: readonly number[]) {
    const n = numelOf(shape);
    if (data.length !== n) throw new RangeError(`Data of length ${data.length} does not match shape [${shape.join(', ')}] (${n} elements)`);
    this.data = data;
    this.shape = Object.freeze([...shape]);
    this.dtype = dtypeOf(data) as D;
  }

  static zeros<D extends DType>(shape: readonly number[], dtype: D): Tensor<D> {
    return new Tensor<D>(alloc(dtype, numelOf(shape)), shape);
  }
  static f32(shape: readonly number[], values?: ArrayLike<number>): Tensor<'f32'> {
    const t = Tensor.zeros(shape, 'f32');
    if (values) {
      if (values.length !== t.numel) throw new RangeError(`Expected ${t.numel} values for shape [${shape.join(', ')}] but received ${values.length}`);
      t.data.set(values);
    }
    return t;
  }

  get numel(): number { return this.data.length; }
  get ndim(): number { return this.shape.length; }

  /** Same memory, another shape with the same element count; one dimension may be -1. */
  view(shape: readonly number[]): Tensor<D> {
    const s = [...shape];
    const neg = s.indexOf(-1);
    if (neg >= 0) {
      const rest = s.reduce((a, d, i) => (i === neg ? a : a * d), 1);
      if (rest === 0 || this.numel % rest !== 0) throw new RangeError(`Cannot view [${this.shape.join(', ')}] as [${shape.join(', ')}]`);
      s[neg] = this.numel / rest;
    }
    if (numelOf(s) !== this.numel) throw new RangeError(`Cannot view [${this.shape.join(', ')}] as [${shape.join(', ')}]`);
    return new Tensor<D>(this.data, s);
  }

  /** Rows [start, end) of the first dimension, sharing memory. */
  slice(start: number, end: number): Tensor<D> {
    const n0 = this.shape[0] ?? 0;
    if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || end > n0 || start > end) {
      throw new RangeError(`Expected 0 <= start <= end <= ${n0} but received [${start}, ${end})`);
    }
    const row = n0 === 0 ? 0 : this.numel / n0;
    const sub = this.data.subarray(start * row, end * row) as ArrayFor<D>;
    return new Tensor<D>(sub, [end - start, ...this.shape.slice(1)]);
  }

  clone(): Tensor<D> {
    return new Tensor<D>(this.data.slice() as ArrayFor<D>, this.shape);
  }

  /** Element at a multi-index (bounds-checked; for tests and small tools, not hot loops). */
  get(...idx: number[]): number {
    if (idx.length !== this.shape.length) throw new RangeError(`Expected ${this.shape.length} indices but received ${idx.length}`);
    let off = 0;
    for (let i = 0; i < idx.length; i++) {
      const d = this.shape[i]!;
      const k = idx[i]!;
      if (!Number.isInteger(k) || k < 0 || k >= d) throw new RangeError(`Index ${k} out of range for dimension ${i} of size ${d}`);
      off = off * d + k;
    }
    return this.data[off]!;
  }

  toString(): string {
    return `Tensor<${this.dtype}>[${this.shape.join(', ')}]`;
  }
}
