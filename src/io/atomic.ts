// Crash-safe file replacement: write a temporary file in the destination's folder,
// fsync it, rename it over the destination, then fsync the folder. A reader (or a
// crash at any moment) sees either the old file or the complete new one, never a part.
import { randomBytes } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';

/** A fresh temporary name beside `dest` (same folder, so rename is atomic). */
export function tempPathFor(dest: string): string {
  return path.join(path.dirname(dest), `.${path.basename(dest)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
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
  }
  await syncDir(path.dirname(dest));
}

/** Write `data` to `dest` atomically (see the file comment). */
export async function writeFileAtomic(dest: string, data: Uint8Array): Promise<void> {
  const tmp = tempPathFor(dest);
  const h = await fsp.open(tmp, 'wx', 0o644);
  try {
    try {
      await h.writeFile(data);
      await h.sync();
    } finally {
      await h.close();
    }
  } catch (e) {
    await fsp.rm(tmp, { force: true });
    throw e;
  }
  await commitTemp(tmp, dest);
}
