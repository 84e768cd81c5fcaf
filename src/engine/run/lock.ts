// A run folder has one owner. Training (and `met eval`, which writes predictions.json and
// thresholds.json into the run) holds run.lock for as long as it writes there; a second trainer,
// a resume or an eval of the same folder is refused with the owner named, instead of two
// processes interleaving metrics.jsonl and replacing each other's weights.
//
// The lock is a small JSON file (RunLock: pid, host, start time, command) created with O_EXCL, so
// of two processes racing for it exactly one succeeds. It is released when the owner ends (done,
// cancelled, failed, or process exit). One left by a killed process is stale: it is broken only
// when it names this host and its pid is gone. A lock from another host is never broken
// automatically (its pid means nothing here); the error says which file to remove.
//
// Pure Node (fs, os, path): the extension host may use it.

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { UserError } from '../tensor';
import { readLock, RUN_FILE, RUN_LOCK_FILE, type RunLock } from './runFolder';

/** A lock holder in words, for messages and tooltips: "met train (pid 123 on host, since …)". */
export function describeLock(l: RunLock): string {
  return l.pid ? `${l.command} (pid ${l.pid} on ${l.host}, since ${l.since})` : l.command;
}

/** Is a process with this pid alive on this machine? (EPERM: alive, owned by someone else.) */
export function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * The owner of a run folder by its run.lock: none; alive (a live pid on this machine, or a lock
 * being written this instant); remote (another machine's: taken at its word); or gone (a pid on
 * this machine that no longer runs: killed, crashed).
 */
export function ownerState(lock: RunLock | null): 'none' | 'alive' | 'remote' | 'gone' {
  if (!lock) return 'none';
  if (!lock.pid) return 'alive';
  if (lock.host !== os.hostname()) return 'remote';
  return pidAlive(lock.pid) ? 'alive' : 'gone';
}

/** An unreadable lock older than this is taken as left by a process killed while writing it. */
const UNREADABLE_STALE_MS = 30_000;

/**
 * readLock, waiting out the instant between another process creating run.lock ('wx') and writing
 * its owner into it: an unreadable lock younger than a second is read again for up to ~200 ms, so
 * that a refusal names the owner rather than "unreadable run.lock". A lock still unreadable
 * after that (damaged, or its writer was killed in that instant) is returned as it is.
 */
function readSettledLock(runDir: string): RunLock | null {
  const file = path.join(runDir, RUN_LOCK_FILE);
  for (let i = 0; ; i++) {
    const l = readLock(runDir);
    if (!l || l.pid || i >= 20) return l;
    try {
      if (Date.now() - fs.statSync(file).mtimeMs > 1000) return l;
    } catch {
      return readLock(runDir);
    }
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10);
  }
}

/** Why the lock at `file` may be broken, or null when its owner may still be alive. */
function staleReason(file: string, l: RunLock): string | null {
  if (!l.pid) {
    try {
      const age = Date.now() - fs.statSync(file).mtimeMs;
      return age > UNREADABLE_STALE_MS ? `unreadable and ${Math.round(age / 1000)} s old` : null;
    } catch {
      return 'gone';
    }
  }
  // Another host's lock is never stale here; this process's own pid is alive.
  return ownerState(l) === 'gone' ? `pid ${l.pid} is gone` : null;
}

/** A live training (`met train`, from a terminal or VS Code) holds the folder: stop.request reaches it. */
export function heldByTraining(l: RunLock | null): l is RunLock {
  return !!l && l.command.startsWith('met train') && ownerState(l) !== 'gone';
}

function lockedError(runDir: string, l: RunLock, what: string): UserError {
  const file = path.join(runDir, RUN_LOCK_FILE);
  const how =
    l.pid && l.host !== os.hostname()
      ? `it is held from another machine; if that process is gone, remove ${file}`
      : `wait for it to finish or stop it; a lock left by a process that is gone is removed automatically (else remove ${file})`;
  return new UserError(`${what}: the run folder ${runDir} is in use by ${describeLock(l)}: ${how}`, 'run-locked');
}

/** A held lock; release() is idempotent and also runs at process exit. */
export interface HeldLock {
  runDir: string;
  lock: RunLock;
  release(): void;
}

/**
 * Takes run.lock in `runDir` (which must exist) for `command`, breaking a stale one; throws a
 * 'run-locked' UserError naming the owner when a live process holds it.
 */
export function acquireRunLock(runDir: string, command: string): HeldLock {
  const file = path.join(runDir, RUN_LOCK_FILE);
  const mine: RunLock = { pid: process.pid, host: os.hostname(), since: new Date().toISOString(), command };
  for (let attempt = 0; ; attempt++) {
    try {
      const fd = fs.openSync(file, 'wx');
      try {
        fs.writeSync(fd, JSON.stringify(mine));
      } finally {
        fs.closeSync(fd);
      }
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST')
        throw new UserError(
          `cannot write the run folder ${runDir} (its lock ${RUN_LOCK_FILE}): ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
        );
    }
    const held = readSettledLock(runDir);
    if (!held) continue; // released between our open and read: try again
    if (attempt >= 3 || !staleReason(file, held)) throw lockedError(runDir, held, command);
    breakStale(file, held);
  }
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    process.off('exit', release);
    const now = readLock(runDir);
    // Only our own lock: a folder moved aside and replaced must not lose its new owner's lock.
    if (now && now.pid === mine.pid && now.host === mine.host && now.since === mine.since)
      fs.rmSync(file, { force: true });
  };
  process.on('exit', release);
  return { runDir, lock: mine, release };
}

/**
 * Removes a stale lock. Renamed aside first and checked: of two processes breaking the same stale
 * lock, only one renames that file; the other finds a different (live) lock and puts it back.
 */
function breakStale(file: string, seen: RunLock): void {
  const aside = `${file}.stale-${process.pid}`;
  try {
    fs.renameSync(file, aside);
  } catch {
    return; // already gone: the next attempt creates it
  }
  let got: unknown = null;
  try {
    got = JSON.parse(fs.readFileSync(aside, 'utf8'));
  } catch {
    /* unreadable: it is the unreadable stale one */
  }
  const same = !seen.pid || (got as RunLock | null)?.pid === seen.pid;
  if (same) fs.rmSync(aside, { force: true });
  else {
    // Someone took the lock in between; give it back (link fails if yet another owner exists).
    try {
      fs.linkSync(aside, file);
    } catch {
      /* a newer lock is in place */
    }
    fs.rmSync(aside, { force: true });
  }
}

/** Throws 'run-locked' when a live process other than this one holds the run folder's lock. */
export function assertUnlocked(runDir: string, what: string): void {
  const l = readSettledLock(runDir);
  if (l && !staleReason(path.join(runDir, RUN_LOCK_FILE), l)) throw lockedError(runDir, l, what);
}

/**
 * Temporary files a killed process left in the run folder (`<file>.tmp-<pid>-<n>` from
 * io/atomic.ts, e.g. a 300 MB checkpoint.safetensors.tmp-<pid>-3): removed when their pid is gone
 * on this host. Called with the lock held, so no live writer of this folder is missed. Returns
 * the names removed.
 */
export function removeStaleTemps(runDir: string): string[] {
  const removed: string[] = [];
  let names: string[];
  try {
    names = fs.readdirSync(runDir);
  } catch {
    return removed;
  }
  for (const name of names) {
    const m = /\.(?:tmp|stale)-(\d+)(?:-[^/]*)?$/.exec(name);
    if (!m) continue;
    const pid = Number(m[1]);
    if (pid === process.pid || pidAlive(pid)) continue;
    fs.rmSync(path.join(runDir, name), { recursive: true, force: true });
    removed.push(name);
  }
  return removed;
}

/** Does `dir` hold a run (any file a run writes)? An empty or missing folder does not. */
export function holdsRun(dir: string): boolean {
  return Object.values(RUN_FILE).some((f) => fs.existsSync(path.join(dir, f)));
}

/** The refusal of a new run's folder that holds a run. */
export function runExistsError(dir: string): UserError {
  return new UserError(
    `${dir} already holds a run: continue it with --resume ${dir}, choose another --out, or give --overwrite to move it aside (to ${path.basename(dir)}.old-<time>) and start afresh`,
    'run-exists',
  );
}

/** `<dir>.old-<time>` not yet taken: where --overwrite moves the previous run. */
export function asideName(dir: string, now = new Date()): string {
  const t = now.toISOString().replace(/[:.]/g, '-');
  let name = `${dir}.old-${t}`;
  for (let i = 2; fs.existsSync(name); i++) name = `${dir}.old-${t}-${i}`;
  return name;
}

/**
 * Makes `dir` (a new run's folder) and takes its lock. A folder that already holds a run is
 * refused ('run-exists') unless `overwrite`, which moves the old run aside to `<dir>.old-<time>`
 * (never deletes it) and starts an empty folder. The check is made with the lock held, so of two
 * trainers racing for one folder the second is refused even when the first has finished.
 */
export function claimNewRunDir(
  dir: string,
  command: string,
  opts: { overwrite?: boolean; log?: (m: string) => void } = {},
): HeldLock {
  try {
    fs.mkdirSync(dir, { recursive: true });
  } catch (e) {
    throw new UserError(
      `cannot write the run folder ${dir}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
    );
  }
  const held = acquireRunLock(dir, command);
  try {
    if (!holdsRun(dir)) {
      removeStaleTemps(dir);
      return held;
    }
    if (!opts.overwrite) throw runExistsError(dir);
    const aside = asideName(dir);
    fs.renameSync(dir, aside);
    // Our lock went with the folder; the old run keeps no lock.
    fs.rmSync(path.join(aside, RUN_LOCK_FILE), { force: true });
    held.release();
    opts.log?.(`--overwrite: the previous run in ${dir} was moved to ${aside}`);
  } catch (e) {
    held.release();
    throw e;
  }
  fs.mkdirSync(dir, { recursive: true });
  return acquireRunLock(dir, command);
}

/** Takes the lock of an existing run folder (resume, eval) and removes temporaries killed runs left. */
export function claimRunDir(dir: string, command: string, log?: (m: string) => void): HeldLock {
  if (!fs.existsSync(dir)) throw new UserError(`${dir}: no such run folder`);
  const held = acquireRunLock(dir, command);
  const gone = removeStaleTemps(dir);
  if (gone.length) log?.(`removed ${gone.length} temporary files left by stopped runs: ${gone.join(', ')}`);
  return held;
}
