// The one way the project writes a file that must never be seen half-written (checkpoints, run
// JSON, thresholds, thumbnails, configs): the bytes go to a temporary file beside the target
// (same directory, so the rename cannot cross file systems), are flushed to disk, and the
// temporary file is renamed over the target. A crash or a full disk leaves either the old file or
// the new one, never a torn one, and the temporary file is removed on failure.
//
// Pure Node (fs only): the extension host uses it too.

import * as fs from 'node:fs';
import * as path from 'node:path';

let counter = 0;

/** A temporary name beside `file`, unique within this process and across processes. */
function tempName(file: string): string {
  return `${file}.tmp-${process.pid}-${++counter}`;
}

function toBytes(data: string | Uint8Array): Uint8Array {
  return typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
}

function removeQuietly(file: string): void {
  try {
    fs.unlinkSync(file);
  } catch {
    /* never created, or already gone */
  }
}

/** Writes `data` to `file` atomically (temporary file, fsync, rename); synchronous. */
export function writeFileAtomic(file: string, data: string | Uint8Array): void {
  const bytes = toBytes(data);
  const tmp = tempName(file);
  let fd: number | undefined;
  try {
    fd = fs.openSync(tmp, 'w');
    let pos = 0;
    while (pos < bytes.length) pos += fs.writeSync(fd, bytes, pos, bytes.length - pos);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = undefined;
    fs.renameSync(tmp, file);
  } catch (e) {
    if (fd !== undefined) {
      try {
        fs.closeSync(fd);
      } catch {
        /* already failing; report the original error */
      }
    }
    removeQuietly(tmp);
    throw e;
  }
}

/** The asynchronous form of writeFileAtomic, for callers on an event loop that must not block
 *  (the extension host, the engine while it serves other requests). */
export async function writeFileAtomicAsync(file: string, data: string | Uint8Array): Promise<void> {
  const bytes = toBytes(data);
  const tmp = tempName(file);
  let handle: fs.promises.FileHandle | undefined;
  try {
    handle = await fs.promises.open(tmp, 'w');
    await handle.writeFile(bytes);
    await handle.sync();
    await handle.close();
    handle = undefined;
    await fs.promises.rename(tmp, file);
  } catch (e) {
    if (handle !== undefined) await handle.close().catch(() => undefined);
    await fs.promises.unlink(tmp).catch(() => undefined);
    throw e;
  }
}

/** A fresh temporary directory beside `dir`, to fill and then publish with replaceDirAtomic. */
export function tempDirBeside(dir: string): string {
  const abs = path.resolve(dir);
  fs.mkdirSync(path.dirname(abs), { recursive: true });
  return fs.mkdtempSync(`${abs}.tmp-${process.pid}-`);
}

/**
 * Publishes a fully written directory `tmp` under the name `dir`, replacing what was there: a
 * reader sees the old directory or the complete new one. (Two renames are not one atomic step;
 * between them `dir` is briefly absent, never partial.)
 */
export function replaceDirAtomic(tmp: string, dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(path.dirname(path.resolve(dir)), { recursive: true });
  fs.renameSync(tmp, dir);
}
