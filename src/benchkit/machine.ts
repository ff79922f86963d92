// The machine a benchmark ran on, and how busy it was: the header every flatenn benchmark
// (`flatenn bench kernels`, `npm run bench`) prints and saves beside its rows.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export interface MachineInfo {
  /** CPU model name (os.cpus()[0].model). */
  cpu: string;
  /** CPUs this process may use (os.availableParallelism()). */
  nproc: number;
  /** CPUs the OS reports. */
  cpus: number;
  memoryGiB: number;
  os: string;
  arch: string;
  node: string;
}

export function machineInfo(): MachineInfo {
  return {
    cpu: os.cpus()[0]?.model?.trim() || 'unknown', nproc: os.availableParallelism(), cpus: os.cpus().length,
    memoryGiB: +(os.totalmem() / 2 ** 30).toFixed(1), os: `${os.type()} ${os.release()}`, arch: os.arch(), node: process.version,
  };
}

/** The 1, 5 and 15 minute load averages, rounded to 2 decimals. */
export function loadAverage(): number[] {
  return os.loadavg().map((v) => +v.toFixed(2));
}

export function formatLoad(xs: readonly number[]): string {
  return xs.map((x) => x.toFixed(2)).join(' ');
}

/**
 * A warning when the machine was busy before a timing (1-minute load average above 3/4 of the CPUs),
 * else ''. Timings taken then are slow and noisy, and a multi-threaded OpenMP program (PyTorch) can
 * slow down far more than flatenn's pool when its threads have to share cores.
 */
export function loadWarning(loads: readonly (number | undefined)[], threads: number): string {
  const cpus = os.availableParallelism();
  const worst = Math.max(...loads.filter((l): l is number => l !== undefined));
  if (!(worst > 0.75 * cpus)) return '';
  return `busy machine (load ${worst.toFixed(1)} on ${cpus} CPUs): timings unreliable` + (threads > 1 ? `, PyTorch's ${threads} OpenMP threads especially` : '');
}

/**
 * The short commit of the git checkout whose root is `dir`, or null: an installed package has none
 * (and the repository of a project that installed it is not flatenn's).
 */
export function gitCommit(dir: string): string | null {
  if (!fs.existsSync(path.join(dir, '.git'))) return null;
  try {
    return execFileSync('git', ['rev-parse', '--short=12', 'HEAD'], { cwd: dir, stdio: ['ignore', 'pipe', 'ignore'], timeout: 10_000 }).toString().trim() || null;
  } catch {
    return null;
  }
}

/** "CPU, N CPUs, M GiB, OS" in one line. */
export function describeMachine(m: MachineInfo): string {
  return `${m.cpu}, ${m.nproc} CPUs, ${m.memoryGiB} GiB, ${m.os}`;
}
