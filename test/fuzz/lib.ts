// Shared pieces of the fuzz suite: a seeded generator, the outcome rules of
// issue #11 and a runner for the driver processes (a case that kills its
// process with a signal, hangs, or throws a JS-internal error fails the test).
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';

/** Deterministic 32-bit generator (mulberry32). */
export function rng(seed: number): { u(): number; int(n: number): number; pick<T>(a: readonly T[]): T; chance(p: number): boolean } {
  let s = seed >>> 0;
  const u = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return { u, int: (n) => Math.floor(u() * n), pick: (a) => a[Math.floor(u() * a.length)]!, chance: (p) => u() < p };
}

/** Error texts that reveal an unchecked input reaching JS internals. */
export const INTERNAL = /Cannot read propert|is not a function|is not iterable|Cannot convert undefined|Cannot destructure|Maximum call stack|Invalid typed array length|Array buffer allocation failed|A native exception was thrown/;

export interface Outcomes { cases: number; ok: number; errors: Record<string, number>; bad: string[] }

export function newOutcomes(): Outcomes { return { cases: 0, ok: 0, errors: {}, bad: [] }; }

/** Records one case's outcome: a returned value or an Error with a message that is not a JS internal. */
export function record(o: Outcomes, label: string, e?: unknown): void {
  o.cases++;
  if (e === undefined) { o.ok++; return; }
  if (!(e instanceof Error)) { o.bad.push(`${label}: threw a non-Error ${String(e)}`); return; }
  if (!e.message || INTERNAL.test(e.message)) { o.bad.push(`${label}: ${e.name}: ${e.message}`); return; }
  o.errors[e.name] = (o.errors[e.name] ?? 0) + 1;
}

/** Number of cases: FLATENN_FUZZ_CASES scales the default (a longer run), FLATENN_FUZZ_SEED picks another seed. */
export function fuzzCases(def: number): number {
  const v = Number(process.env.FLATENN_FUZZ_CASES);
  return Number.isInteger(v) && v > 0 ? v : def;
}
export function fuzzSeed(): number {
  const v = Number(process.env.FLATENN_FUZZ_SEED);
  return Number.isInteger(v) && v >= 0 ? v : 20261201;
}

/**
 * Runs a driver (dist/test/fuzz/<name>.js) in a child process with a heap cap;
 * returns its outcome summary (last stdout line, JSON). Fails on a signal, a
 * hang past `timeoutMs`, or a non-zero exit, quoting the case it was in.
 */
export function runDriver(name: string, args: string[], timeoutMs: number, heapMb = 1024): Outcomes & Record<string, unknown> {
  const r = spawnSync(process.execPath, [`--max-old-space-size=${heapMb}`, path.join(__dirname, `${name}.js`), ...args], {
    encoding: 'utf8', timeout: timeoutMs, maxBuffer: 1 << 26, env: { ...process.env, FLATENN_PROGRESS: 'plain' },
  });
  const lastCase = (r.stderr ?? '').split('\n').filter((l) => l.startsWith('CASE ')).pop() ?? '(none)';
  if (r.error && (r.error as NodeJS.ErrnoException).code === 'ETIMEDOUT') throw new Error(`${name}: hang (over ${timeoutMs / 1000} s); last ${lastCase}`);
  if (r.signal) throw new Error(`${name}: killed by ${r.signal}; last ${lastCase}\n${(r.stderr ?? '').split('\n').filter((l) => !l.startsWith('CASE ')).slice(-30).join('\n')}`);
  if (r.status !== 0) throw new Error(`${name}: exit ${r.status}; last ${lastCase}\n${(r.stderr ?? '').split('\n').filter((l) => !l.startsWith('CASE ')).slice(-30).join('\n')}`);
  const lines = r.stdout.trim().split('\n');
  return JSON.parse(lines[lines.length - 1]!) as Outcomes & Record<string, unknown>;
}
