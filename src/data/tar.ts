// A small streaming reader for gzip-compressed tar archives: enough for dataset archives such as
// cifar-10-binary.tar.gz. It understands ustar headers (name + prefix), the header checksum, octal
// and base-256 sizes, pax 'x' headers (path, size) and GNU 'L' long names. Only regular files are
// returned, and only those the caller selects, so memory holds just the wanted members.
import * as fs from 'node:fs';
import { pipeline } from 'node:stream/promises';
import * as zlib from 'node:zlib';

const BLOCK = 512;

export class TarError extends Error {
  override name = 'TarError';
}

function cstring(b: Buffer, start: number, len: number): string {
  const end = b.indexOf(0, start);
  return b.toString('utf8', start, end < 0 || end > start + len ? start + len : end);
}

/** A numeric header field: octal text, or base-256 (GNU) when the top bit of the first byte is set. */
function numField(b: Buffer, start: number, len: number): number {
  if (b[start] & 0x80) {
    let v = b[start] & 0x7f;
    for (let i = 1; i < len; i++) v = v * 256 + b[start + i];
    return v;
  }
  const t = cstring(b, start, len).trim();
  if (t === '') return 0;
  if (!/^[0-7]+$/.test(t)) return NaN;
  return parseInt(t, 8);
}

const MAX_META_BODY = 1 << 20;
const MAX_MEMBER = 2 ** 31 - 1;

/** Parse the records of a pax extended header ("<len> key=value\n" ...). */
function paxRecords(body: Buffer): Map<string, string> {
  const out = new Map<string, string>();
  let at = 0;
  while (at < body.length) {
    const sp = body.indexOf(0x20, at);
    const len = sp < 0 ? NaN : Number(body.toString('ascii', at, sp));
    if (!Number.isInteger(len) || len <= 0 || at + len > body.length) break;
    const rec = body.toString('utf8', sp + 1, at + len - 1);
    const eq = rec.indexOf('=');
    if (eq > 0) out.set(rec.slice(0, eq), rec.slice(eq + 1));
    at += len;
  }
  return out;
}

interface Entry {
  name: string;
  size: number;
  type: string;
  /** Where the body is collected (wanted members and pax/long-name bodies), else skipped. */
  out?: Buffer;
  done: number;
}

/**
 * Stream the gzip-compressed tar archive `file` and return the bodies of the regular files for
 * which `select(name, size)` returns true, keyed by member name. `select` may throw to reject a member
 * (for example one of the wrong size) before its body is read. Errors name the archive.
 */
export async function readTarGzMembers(file: string, select: (name: string, size: number) => boolean): Promise<Map<string, Buffer>> {
  const members = new Map<string, Buffer>();
  const header = Buffer.alloc(BLOCK);
  let headerFill = 0;
  let entry: Entry | undefined;
  let ended = false;
  let offset = 0; // archive offset of the current header, for messages
  let pax: Map<string, string> | undefined;
  let longName: string | undefined;
  const fail = (msg: string): never => {
    throw new TarError(`${file}: ${msg}`);
  };

  const onHeader = (): Entry | undefined => {
    if (header.every((x) => x === 0)) {
      ended = true; // end-of-archive marker
      return undefined;
    }
    const stored = numField(header, 148, 8);
    let unsigned = 0;
    let signed = 0;
    for (let i = 0; i < BLOCK; i++) {
      const x = i >= 148 && i < 156 ? 0x20 : header[i];
      unsigned += x;
      signed += x > 127 ? x - 256 : x;
    }
    if (stored !== unsigned && stored !== signed) fail(`bad tar header checksum at byte ${offset}: corrupt or not a tar archive`);
    const typeByte = header[156];
    const type = typeByte === 0 ? '0' : String.fromCharCode(typeByte);
    let name = cstring(header, 0, 100);
    if (header.toString('ascii', 257, 262) === 'ustar') {
      const prefix = cstring(header, 345, 155);
      if (prefix) name = `${prefix}/${name}`;
    }
    let size = numField(header, 124, 12);
    if (!Number.isSafeInteger(size)) fail(`bad size field in the tar header at byte ${offset}`);
    if (type !== 'x' && type !== 'g' && type !== 'L') {
      if (longName !== undefined) name = longName;
      if (pax?.has('path')) name = pax.get('path')!;
      if (pax?.has('size')) size = Number(pax.get('size'));
      if (!Number.isSafeInteger(size) || size < 0) fail(`bad pax size for member ${name}`);
      longName = undefined;
      pax = undefined;
    }
    const e: Entry = { name, size, type, done: 0 };
    if (type === 'x' || type === 'L') {
      // pax records and long names are a few hundred bytes; a huge claimed size is a corrupt header
      if (size > MAX_META_BODY) fail(`${type === 'x' ? 'pax extended header' : 'GNU long-name entry'} at byte ${offset} claims ${size} bytes (more than ${MAX_META_BODY}): corrupt archive`);
      e.out = Buffer.alloc(size);
    } else if ((type === '0' || type === '7') && select(name, size)) {
      if (size > MAX_MEMBER) fail(`member ${name} claims ${size} bytes (more than ${MAX_MEMBER}): corrupt archive`);
      e.out = Buffer.alloc(size);
    }
    return e;
  };

  const onBody = (e: Entry): void => {
    if (e.type === 'x') pax = paxRecords(e.out!);
    else if (e.type === 'L') longName = cstring(e.out!, 0, e.out!.length);
    else if (e.out) members.set(e.name, e.out);
  };

  let ownError: unknown; // pipeline() may report the stream's abort instead of the error the parser saw
  const consume = async (source: AsyncIterable<Buffer>): Promise<void> => {
    try {
      await parse(source);
    } catch (e) {
      ownError = e;
      throw e;
    }
  };
  const parse = async (source: AsyncIterable<Buffer>): Promise<void> => {
    for await (const chunk of source) {
      let at = 0;
      while (at < chunk.length && !ended) {
        if (!entry) {
          const n = Math.min(BLOCK - headerFill, chunk.length - at);
          chunk.copy(header, headerFill, at, at + n);
          headerFill += n;
          at += n;
          if (headerFill < BLOCK) break;
          headerFill = 0;
          entry = onHeader();
          offset += BLOCK;
          if (entry && entry.size === 0) {
            onBody(entry);
            entry = undefined;
          }
        } else {
          const padded = Math.ceil(entry.size / BLOCK) * BLOCK;
          const n = Math.min(padded - entry.done, chunk.length - at);
          if (entry.out && entry.done < entry.size) chunk.copy(entry.out, entry.done, at, at + Math.min(n, entry.size - entry.done));
          entry.done += n;
          at += n;
          if (entry.done === padded) {
            offset += padded;
            onBody(entry);
            entry = undefined;
          }
        }
      }
      // after the end marker the rest is padding: keep draining so the stream finishes cleanly
    }
  };

  try {
    await pipeline(fs.createReadStream(file), zlib.createGunzip(), consume);
  } catch (e) {
    const err = (ownError ?? e) as NodeJS.ErrnoException;
    if (err.code?.startsWith('Z_') || err.code === 'ERR_ZLIB_INITIALIZATION_FAILED') throw new TarError(`${file}: corrupt gzip stream (${err.message})`);
    throw err;
  }
  if (entry) fail(`truncated: member ${entry.name} needs ${entry.size} bytes but the archive ends after ${Math.min(entry.done, entry.size)}`);
  if (headerFill > 0) fail('truncated: the archive ends inside a tar header');
  return members;
}
