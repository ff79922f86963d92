// Crash-safe file replacement: write a temporary file in the destination's folder,
// fsync it, rename it over the destination, then fsync the folder. A reader (or a
// crash at any moment) sees either the old file or the complete new one, never a part.
import { randomBytes } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pidAlive, registerCleanup, unregisterCleanup } from './cleanup';

/** A fresh temporary name beside `dest` (same folder, so rename is atomic). */
export function tempPathFor(dest: string): string {
  return path.join(path.dirname(dest), `.${path.basename(dest)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
}

/**
 * Removes temporary files of `dest` left by a killed process (kill -9 skips every
 * handler): `.<name>.<pid>.<hex>.tmp` whose pid is no longer running.
 */
export function removeStaleTemps(dest: string): number {
  const dir = path.dirname(dest), base = path.basename(dest);
  let names: string[];
  try { names = fs.readdirSync(dir); } catch { return 0; }
  let n = 0;
  const prefix = `.${base}.`;
  for (const f of names) {
    if (!f.startsWith(prefix) || !f.endsWith('.tmp')) continue;
    const m = /^(\d+)\.[0-9a-f]{8}\.tmp$/.exec(f.slice(prefix.length));
    if (!m || Number(m[1]) === process.pid || pidAlive(Number(m[1]))) continue;
    try { fs.unlinkSync(path.join(dir, f)); n++; } catch { /* raced with another cleaner */ }
  }
  return n;
}

/** fsync a folder so that a rename inside it is durable (best effort: some file systems refuse). */
export async function syncDir(dir: string): Promise<void> {
  let h: fsp.FileHandle | undefined;
  try {
    h = await fsp.open(dir, 'r');
    await h.sync();
  } catch {
    // not supported here (e.g. some network file systems); the rename itself is still atomic
  } finally {
    await h?.close();
  }
}

/**
 * Move a finished temporary file (already fsynced) onto `dest` and make the rename durable.
 * The temporary file is removed if the rename fails.
 */
export async function commitTemp(tmp: string, dest: string): Promise<void> {
  try {
    await fsp.rename(tmp, dest);
  } catch (e) {
    await fsp.rm(tmp, { force: true });
    throw e;
  } finally {
    unregisterCleanup(tmp);
  }
  await syncDir(path.dirname(dest));
}

/** Write `data` to `dest` atomically (see the file comment). */
export async function writeFileAtomic(dest: string, data: Uint8Array): Promise<void> {
  removeStaleTemps(dest);
  const tmp = tempPathFor(dest);
  const h = await fsp.open(tmp, 'wx', 0o644);
  registerCleanup(tmp);
  try {
    try {
      await h.writeFile(data);
      await h.sync();
    } finally {
      await h.close();
    }
  } catch (e) {
    await fsp.rm(tmp, { force: true });
    unregisterCleanup(tmp);
    throw e;
  }
  await commitTemp(tmp, dest);
}
