// Float32 buffers reused from one training step to the next.
//
// A training step allocates the same tensors every time (activations, their gradients, quantised
// weights): hundreds of MiB for a CIFAR ResNet-18 at batch 128. Fresh typed arrays are zero-filled
// by the runtime, and large ones come from new pages that the kernel must fault in and clear, so
// every step paid for memory it then overwrote (about a tenth of a step, measured). Inside
// withPool(pool, fn), the ops' outputs and gradient buffers (alloc()) come from the pool instead;
// the trainer hands them all back (release) once nothing of the step is read any more.
//
// Contract: a buffer from alloc() or allocU8() holds stale values; every op overwrites its output
// entirely before reading it (ops.ts, tape.ts). Outside withPool, they are new zero-filled arrays.

/** A set of reusable Float32 buffers; take() gives the smallest free one that holds n floats (a view of n). */
export class BufferPool {
  /** Free buffers, by length ascending. */
  private free: Float32Array[] = [];
  /** Buffers handed out since the last release, in order. */
  private used: Float32Array[] = [];

  take(n: number): Float32Array {
    const f = this.free;
    let lo = 0, hi = f.length;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (f[mid]!.length < n) lo = mid + 1; else hi = mid; }
    const buf = lo < f.length ? f.splice(lo, 1)[0]! : new Float32Array(n);
    this.used.push(buf);
    return buf.length === n ? buf : buf.subarray(0, n);
  }

  /** Marks the buffers handed out so far: release(mark) frees only those taken after it. */
  mark(): number { return this.used.length; }

  /** The buffers taken after `mark` (default: all) are free again; nothing may read them after this. */
  release(mark = 0): void {
    for (const b of this.used.splice(mark)) {
      const f = this.free;
      let lo = 0, hi = f.length;
      while (lo < hi) { const mid = (lo + hi) >> 1; if (f[mid]!.length < b.length) lo = mid + 1; else hi = mid; }
      f.splice(lo, 0, b);
    }
  }

  /** Fills every free buffer with v (tests fill NaN to show that no op reads a stale value). */
  fill(v: number): void { for (const b of this.free) b.fill(v); }

  /** Drops every free buffer (handed-out ones stay with their holders). */
  clear(): void { this.free = []; }

  /** Bytes held: free and handed out. */
  get bytes(): number {
    let s = 0;
    for (const b of this.free) s += b.byteLength;
    for (const b of this.used) s += b.byteLength;
    return s;
  }
}

let active: BufferPool | null = null;

/** n floats for an op's output or a gradient: from the active pool (stale contents), else zero-filled and new. */
export function alloc(n: number): Float32Array {
  return active ? active.take(n) : new Float32Array(n);
}

/** n bytes (activation codes, straight-through masks): a byte view of a pooled buffer (stale contents), else zero-filled and new. */
export function allocU8(n: number): Uint8Array {
  if (!active) return new Uint8Array(n);
  const f = active.take(Math.ceil(n / 4));
  return new Uint8Array(f.buffer, f.byteOffset, n);
}

/** Runs fn with `pool` serving alloc() (nested calls restore the previous pool). */
export function withPool<T>(pool: BufferPool, fn: () => T): T {
  const prev = active;
  active = pool;
  try {
    return fn();
  } finally {
    active = prev;
  }
}
