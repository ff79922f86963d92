// Output-path checks shared by the CLI and the library: an output must not be
// one of the command's inputs (same path after realpath, or a hard link to it:
// same device and inode), and must be somewhere a regular file can be written
// (checked before any work, so a long run does not fail at its end).
import * as fs from 'node:fs';
import * as path from 'node:path';

export class OutputPathError extends Error {
  override name = 'OutputPathError';
}

function statOrNull(p: string): fs.Stats | null {
  try { return fs.statSync(p); } catch { return null; }
}

/** True when a and b name the same existing file (realpath or dev+ino). */
export function sameFile(a: string, b: string): boolean {
  const sa = statOrNull(a), sb = statOrNull(b);
  if (!sa || !sb) return false;
  if (sa.dev === sb.dev && sa.ino === sb.ino) return true;
  try { return fs.realpathSync(a) === fs.realpathSync(b); } catch { return false; }
}

/**
 * Throws OutputPathError when `out` resolves to one of `inputs`, is an existing
 * non-regular file (a folder, /dev/null, a FIFO), or its folder cannot be written.
 */
export function checkOutputPath(out: string, inputs: readonly (string | undefined)[], option = '--out'): void {
  for (const inp of inputs) {
    if (inp === undefined) continue;
    if (path.resolve(out) === path.resolve(inp) || sameFile(out, inp)) {
      throw new OutputPathError(`${option} ${out} is the same file as the input ${inp}; writing it would destroy the input (choose another ${option})`);
    }
  }
  const st = statOrNull(out);
  if (st && !st.isFile()) throw new OutputPathError(`${option} ${out} is not a regular file (${st.isDirectory() ? 'a folder' : 'a device, FIFO or socket'}); give a file path`);
  // The nearest existing ancestor folder must be writable (missing folders are created).
  let dir = path.dirname(path.resolve(out));
  while (!fs.existsSync(dir)) {
    const up = path.dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  const ds = statOrNull(dir);
  if (!ds || !ds.isDirectory()) throw new OutputPathError(`${option} ${out}: ${dir} is not a folder`);
  try { fs.accessSync(dir, fs.constants.W_OK); } catch { throw new OutputPathError(`${option} ${out}: the folder ${dir} is not writable`); }
  if (st) { try { fs.accessSync(out, fs.constants.W_OK); } catch { throw new OutputPathError(`${option} ${out} is not writable`); } }
}
