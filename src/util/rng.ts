// Counter-based RNG purposes (must match native/include/flatenn/rng.h).
import { nativeFn } from '../native/binding';

export const RngPurpose = {
  FaultKey: 1,
  FaultCell: 2,
  Shuffle: 3,
  Init: 4,
  Augment: 5,
  Direction: 6,
  Split: 7,
  User: 100,
} as const;

type RngFn = (seed: number | bigint, purpose: number, stream: number, start: number, out: Float64Array) => void;

/** n uniforms in [0, 1): U(seed, purpose, stream, start + i). */
export function uniforms(seed: number, purpose: number, stream: number, n: number, start = 0): Float64Array {
  const out = new Float64Array(n);
  nativeFn<RngFn>('rngUniform')(seed, purpose, stream, start, out);
  return out;
}

/** A seeded permutation of [0, n): Fisher-Yates driven by U(seed, Shuffle, stream, i). */
export function permutation(seed: number, stream: number, n: number): Uint32Array {
  const p = new Uint32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  const u = uniforms(seed, RngPurpose.Shuffle, stream, n);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(u[i]! * (i + 1));
    const t = p[i]!; p[i] = p[j]!; p[j] = t;
  }
  return p;
}

/** Standard normal deviates by Box-Muller over pairs of uniforms. */
export function normals(seed: number, purpose: number, stream: number, n: number): Float64Array {
  const u = uniforms(seed, purpose, stream, 2 * n);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const u1 = 1 - u[2 * i]!; // (0, 1]
    out[i] = Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u[2 * i + 1]!);
  }
  return out;
}
