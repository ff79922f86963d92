// Files that must not outlive an interrupted run (temporary files of atomic
// writes, results-file locks): registered while they exist, removed on
// SIGINT / SIGTERM by the CLI's handler. Stale ones left by kill -9 are removed
// by the next run (see atomic.ts and the campaign lock).
import * as fs from 'node:fs';

const live = new Set<string>();

export function registerCleanup(p: string): void { live.add(p); }
export function unregisterCleanup(p: string): void { live.delete(p); }

/** Removes every registered file now (synchronously; safe inside a signal handler). */
export function cleanupNow(): void {
  for (const p of live) { try { fs.unlinkSync(p); } catch { /* already gone */ } }
  live.clear();
}

let installed = false;
/** CLI only: on SIGINT / SIGTERM remove the registered files and exit 130 / 143. */
export function installSignalCleanup(): void {
  if (installed) return;
  installed = true;
  for (const [sig, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
    process.on(sig, () => {
      cleanupNow();
      process.stderr.write(`\nflatenn: interrupted (${sig}); temporary files and locks removed\n`);
      process.exit(code);
    });
  }
}

/** True when the process with this pid is running (EPERM counts as running). */
export function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try { process.kill(pid, 0); return true; } catch (k) { return (k as NodeJS.ErrnoException).code === 'EPERM'; }
}
