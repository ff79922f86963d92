// Autograd-lite: a tape of backward closures over float32 variables.
// Ops are recorded in execution order, so running the tape backwards visits
// every node after all of its consumers (a valid reverse topological order).

import { kernels } from './native-ops';
import { alloc } from './pool';

export type GradState = 'none' | 'zero' | 'live';

export class Var {
  readonly data: Float32Array;
  readonly shape: readonly number[];
  grad: Float32Array | null = null;
  /** 'zero': grad holds zeros (an op may overwrite it); 'live': holds values (ops add into it). */
  gradState: GradState = 'none';
  readonly requiresGrad: boolean;
  readonly name?: string;

  constructor(data: Float32Array, shape: readonly number[], requiresGrad = false, name?: string) {
    let n = 1;
    for (const d of shape) n *= d;
    if (n !== data.length) throw new RangeError(`Var data of length ${data.length} does not match shape [${shape.join(', ')}]`);
    this.data = data;
    this.shape = shape;
    this.requiresGrad = requiresGrad;
    if (name !== undefined) this.name = name;
  }

  get numel(): number { return this.data.length; }

  /** A leaf whose gradient lives in a caller-owned buffer (parameters: views into a flat arena). */
  static param(data: Float32Array, grad: Float32Array, shape: readonly number[], name: string): Var {
    const v = new Var(data, shape, true, name);
    v.grad = grad;
    v.gradState = 'zero';
    return v;
  }
}

/**
 * Hands `write` a buffer to fill with this op's contribution to v's gradient:
 * v's own grad buffer when it holds nothing yet (no copy), else a scratch buffer
 * that is then added (gradient accumulation).
 */
export function contributeGrad(v: Var, write: (out: Float32Array) => void): void {
  if (!v.requiresGrad) return;
  if (v.gradState === 'none' || v.grad === null) {
    v.grad = alloc(v.numel);
    write(v.grad);
  } else if (v.gradState === 'zero') {
    write(v.grad);
  } else {
    const tmp = alloc(v.numel);
    write(tmp);
    kernels().addF32(v.grad, tmp, v.grad);
  }
  v.gradState = 'live';
}

/**
 * A buffer for an op that writes v's gradient contribution in place (several
 * outputs from one native call): v's own grad when it holds nothing yet, else
 * a scratch buffer; `commit()` adds the scratch in. Null when v needs no grad.
 */
export function gradSink(v: Var | null): { buf: Float32Array; commit(): void } | null {
  if (!v || !v.requiresGrad) return null;
  if (v.gradState === 'none' || v.grad === null) {
    v.grad = alloc(v.numel);
    v.gradState = 'live';
    return { buf: v.grad, commit() {} };
  }
  if (v.gradState === 'zero') {
    v.gradState = 'live';
    return { buf: v.grad, commit() {} };
  }
  const tmp = alloc(v.numel);
  return { buf: tmp, commit: () => addGrad(v, tmp) };
}

/** Adds g into v's gradient. */
export function addGrad(v: Var, g: Float32Array): void {
  if (!v.requiresGrad) return;
  if (v.gradState === 'none' || v.grad === null) {
    v.grad = alloc(g.length);
    v.grad.set(g);
  } else if (v.gradState === 'zero') {
    v.grad.set(g);
  } else {
    kernels().addF32(v.grad, g, v.grad);
  }
  v.gradState = 'live';
}

export class Tape {
  private nodes: Array<() => void> = [];
  /** false: ops run forward only (eval / no-grad). */
  recording: boolean;

  constructor(recording = true) {
    this.recording = recording;
  }

  record(backward: () => void): void {
    if (this.recording) this.nodes.push(backward);
  }

  get length(): number { return this.nodes.length; }

  /** Seeds d(loss)/d(loss) = 1 and runs every recorded backward in reverse; clears the tape. */
  backward(loss: Var): void {
    if (loss.numel !== 1) throw new RangeError(`backward() needs a scalar loss but received shape [${loss.shape.join(', ')}]`);
    if (!this.recording) throw new Error('backward() on a tape that did not record (eval / no-grad mode)');
    addGrad(loss, new Float32Array([1]));
    for (let i = this.nodes.length - 1; i >= 0; i--) this.nodes[i]!();
    this.nodes = [];
  }

  /** Backward from a non-scalar output with a given upstream gradient (gradient checks). */
  backwardFrom(y: Var, dy: Float32Array): void {
    if (dy.length !== y.numel) throw new RangeError(`upstream gradient has ${dy.length} elements, output has ${y.numel}`);
    addGrad(y, dy);
    for (let i = this.nodes.length - 1; i >= 0; i--) this.nodes[i]!();
    this.nodes = [];
  }

  clear(): void { this.nodes = []; }
}

/** Whether any input needs a gradient: ops skip recording otherwise. */
export function anyRequiresGrad(...vs: (Var | null | undefined)[]): boolean {
  for (const v of vs) if (v && v.requiresGrad) return true;
  return false;
}
