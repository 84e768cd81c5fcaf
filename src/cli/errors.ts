// What `met` prints when a command fails: one line naming the problem, never a stack trace.
// A UserError is its message. A system error (a full disk, a folder where a file should be, a
// permission) names the file, what was being done and the reason: Node's own message for these
// ("ENOSPC: no space left on device, write") names neither clearly. Anything else is a bug: its
// message (most are bad input the engine checks late, e.g. an image size the patch size does
// not divide), and the stack only when MET_DEBUG is set.

import { UserError } from '../engine/tensor';

/** Reasons of the system errors a user can meet, in words. */
const REASONS: Record<string, string> = {
  ENOSPC: 'no space left on the device',
  EDQUOT: 'disk quota exceeded',
  EROFS: 'the file system is read-only',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EISDIR: 'it is a folder, not a file',
  ENOTDIR: 'a part of the path is not a folder',
  ENOENT: 'no such file or folder',
  EEXIST: 'it already exists',
  EMFILE: 'too many open files',
  ENAMETOOLONG: 'the name is too long',
  EIO: 'an input/output error',
};

const ACTIONS: Record<string, string> = {
  open: 'open',
  write: 'write',
  read: 'read',
  rename: 'replace',
  mkdir: 'create the folder',
  unlink: 'remove',
  copyfile: 'copy',
  scandir: 'list the folder',
  stat: 'read',
  fsync: 'write',
  close: 'write',
};

/** The line(s) to print for an error that ended a command; `debug` adds the stack of a bug. */
export function formatError(e: unknown, debug = !!process.env.MET_DEBUG): string {
  if (e instanceof UserError) return `error: ${e.message}`;
  const sys = e as NodeJS.ErrnoException & { dest?: string };
  if (e instanceof Error && typeof sys.code === 'string' && typeof sys.syscall === 'string') {
    const reason = REASONS[sys.code] ?? sys.message.replace(/^[A-Z]+: /, '').replace(/,.*$/, '');
    const what = ACTIONS[sys.syscall] ?? sys.syscall;
    const file = sys.path ? ` ${sys.path}${sys.dest ? ` -> ${sys.dest}` : ''}` : '';
    return `error: cannot ${what}${file}: ${reason} (${sys.code})`;
  }
  const msg = e instanceof Error ? e.message : String(e);
  if (debug && e instanceof Error && e.stack) return `error: ${e.stack}`;
  return `error: ${msg} (MET_DEBUG=1 shows where it failed)`;
}
