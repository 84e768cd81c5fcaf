// Following a training from outside its process, by its run folder alone: the window that
// started it, a window reloaded or opened later, or any other reader. What the owner writes
// (run/status.ts, the trainer): metrics.jsonl (every step and epoch), status.json (phase, the
// 'start' event, checkpoints, the outcome), train.log (its log lines) and run.lock (who owns the
// folder). poll() reports what is new since the last poll and, once the owner is gone, how it
// ended: from status.json when the owner wrote its final phase, else (killed, crashed, power
// cut) as stopped when a checkpoint is left to resume from, failed when none is.
//
// Pure Node (fs.promises, os, path): the extension host polls it a few times a second, and the
// node:test suite drives it against real `met train` processes.

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { TrainEvent } from '../train/trainer';
import { ownerState } from './lock';
import { FINAL_PHASES, readLock, RUN_FILE, RUN_STATUS_FILE, type RunStatusFile, TRAIN_LOG_FILE } from './runFolder';

/** The complete lines appended to a file since the last read. */
class LineTail {
  private offset: number | null;
  private partial = '';

  constructor(
    readonly file: string,
    fromStart: boolean,
  ) {
    this.offset = fromStart ? 0 : null;
  }

  /** Skips what the file holds now (a follower that attaches late reads only what comes next). */
  async skipToEnd(): Promise<void> {
    this.offset = (await fs.promises.stat(this.file).catch(() => null))?.size ?? 0;
  }

  /** The last whole line (of the file's last 64 KiB) that `pred` accepts, then skips to the end. */
  async lastLineThenSkip(pred: (line: string) => boolean): Promise<string | null> {
    const st = await fs.promises.stat(this.file).catch(() => null);
    this.offset = st?.size ?? 0;
    if (!st?.size) return null;
    const h = await fs.promises.open(this.file, 'r');
    try {
      const from = Math.max(0, st.size - (64 << 10));
      const buf = Buffer.alloc(st.size - from);
      await h.read(buf, 0, buf.length, from);
      const lines = buf.toString('utf8').split('\n');
      if (from > 0) lines.shift(); // a partial first line
      for (let i = lines.length - 1; i >= 0; i--) if (pred(lines[i])) return lines[i];
      return null;
    } finally {
      await h.close();
    }
  }

  async read(): Promise<string[]> {
    if (this.offset === null) await this.skipToEnd();
    const st = await fs.promises.stat(this.file).catch(() => null);
    if (!st) return [];
    // A resume trims metrics.jsonl to its checkpoint's step: what is left was read before.
    if (st.size < this.offset!) {
      this.offset = st.size;
      this.partial = '';
      return [];
    }
    if (st.size === this.offset) return [];
    const h = await fs.promises.open(this.file, 'r');
    try {
      const buf = Buffer.alloc(Math.min(st.size - this.offset!, 16 << 20));
      const { bytesRead } = await h.read(buf, 0, buf.length, this.offset!);
      this.offset! += bytesRead;
      const text = this.partial + buf.subarray(0, bytesRead).toString('utf8');
      const lines = text.split('\n');
      this.partial = lines.pop() ?? '';
      return lines.filter((l) => l.trim());
    } finally {
      await h.close();
    }
  }
}

export interface FollowEnd {
  phase: 'done' | 'stopped' | 'failed';
  /** Why it stopped or failed. */
  reason?: string;
  /** The UserError code of a failure, when the owner reported one. */
  code?: string;
  /** The owner ended without writing its outcome (killed, crashed). */
  unexpected?: boolean;
}

export interface FollowUpdate {
  /** New events: 'start' and 'checkpoint' (from status.json), 'step' and 'epoch' (metrics.jsonl). */
  events: TrainEvent[];
  /** New lines of train.log, without their time stamps. */
  log: string[];
  /** status.json of this owner, when it changed since the last poll. */
  status: RunStatusFile | null;
  /** Set once: the owner is gone, and this is how the run ended. */
  end: FollowEnd | null;
}

export interface FollowOptions {
  /** The owner's pid (the process that was started); default: run.lock's at the first poll. */
  pid?: number;
  /** Read metrics.jsonl and train.log from their start (default: only what is appended from now). */
  fromStart?: boolean;
  /** Not from the start: report the newest step already written first (progress at once). */
  lastStep?: boolean;
}

/** Follows the training that owns `runDir` now (or the process `pid`). */
export class RunFollower {
  private pid: number | undefined;
  private host = os.hostname();
  private readonly metrics: LineTail;
  private readonly logTail: LineTail;
  private statusMtime = -1;
  private startSent = false;
  private checkpointStep: number | undefined;
  private ended: FollowEnd | null = null;
  private lastStatus: RunStatusFile | null = null;
  private wantLastStep: boolean;

  constructor(
    readonly runDir: string,
    opts: FollowOptions = {},
  ) {
    this.pid = opts.pid;
    this.wantLastStep = !opts.fromStart && !!opts.lastStep;
    this.metrics = new LineTail(path.join(runDir, RUN_FILE.metrics), !!opts.fromStart);
    this.logTail = new LineTail(path.join(runDir, TRAIN_LOG_FILE), !!opts.fromStart);
  }

  /** The pid followed (known after the first poll when not given). */
  get ownerPid(): number | undefined {
    return this.pid;
  }

  /** The last status.json of this owner read so far. */
  get status(): RunStatusFile | null {
    return this.lastStatus;
  }

  /** Is the owner still alive, by run.lock? (A lock from another host is taken at its word.) */
  private ownerAlive(): boolean {
    const lock = readLock(this.runDir);
    if (this.pid === undefined) {
      if (!lock?.pid) return false;
      this.pid = lock.pid;
      this.host = lock.host;
    }
    if (!lock) return false;
    if (lock.pid === 0) return true; // being written this instant: ask again next poll
    // A later owner (the run was resumed) means ours is gone.
    return lock.pid === this.pid && ownerState(lock) !== 'gone';
  }

  private async readStatus(): Promise<RunStatusFile | null> {
    const file = path.join(this.runDir, RUN_STATUS_FILE);
    const st = await fs.promises.stat(file).catch(() => null);
    if (!st || st.mtimeMs === this.statusMtime) return null;
    let s: RunStatusFile;
    try {
      s = JSON.parse(await fs.promises.readFile(file, 'utf8')) as RunStatusFile;
    } catch {
      return null; // read again next time
    }
    // Another owner's status (the one before a resume) says nothing about ours.
    if (this.pid !== undefined && s.pid !== this.pid) return null;
    this.statusMtime = st.mtimeMs;
    this.lastStatus = s;
    return s;
  }

  async poll(): Promise<FollowUpdate> {
    const u: FollowUpdate = { events: [], log: [], status: null, end: null };
    if (this.ended) return u;
    // Liveness first: the owner writes its final status before it releases the lock, so a
    // status read after finding the lock gone is the last one.
    const alive = this.ownerAlive();
    u.status = await this.readStatus();
    const s = this.lastStatus;
    if (s?.start && !this.startSent) {
      this.startSent = true;
      u.events.push(s.start);
    }
    if (this.wantLastStep) {
      this.wantLastStep = false;
      const line = await this.metrics.lastLineThenSkip((l) => l.includes('"type":"step"'));
      if (line)
        try {
          u.events.push(JSON.parse(line) as TrainEvent);
        } catch {
          /* a torn line */
        }
    }
    for (const line of await this.metrics.read()) {
      try {
        u.events.push(JSON.parse(line) as TrainEvent);
      } catch {
        /* not a line the trainer wrote */
      }
    }
    if (s?.checkpoint && s.checkpoint.step !== this.checkpointStep) {
      this.checkpointStep = s.checkpoint.step;
      u.events.push({ type: 'checkpoint', step: s.checkpoint.step, file: path.join(this.runDir, RUN_FILE.checkpoint) });
    }
    u.log = (await this.logTail.read()).map((l) => l.replace(/^\d{4}-\d\d-\d\dT[\d:.]+Z /, ''));
    if (!alive) u.end = this.ended = await this.outcome(s);
    return u;
  }

  private async outcome(s: RunStatusFile | null): Promise<FollowEnd> {
    if (s && s.pid === this.pid && FINAL_PHASES.includes(s.phase)) {
      if (s.phase === 'done') return { phase: 'done' };
      if (s.phase === 'stopped') return { phase: 'stopped', reason: s.stopped };
      return { phase: 'failed', reason: s.error?.message, code: s.error?.code };
    }
    const who = this.pid
      ? `the training process (pid ${this.pid}${this.host !== os.hostname() ? ` on ${this.host}` : ''})`
      : 'the training process';
    const checkpoint = await fs.promises.stat(path.join(this.runDir, RUN_FILE.checkpoint)).catch(() => null);
    return checkpoint
      ? {
          phase: 'stopped',
          reason: `${who} ended without finishing (killed or crashed); its last checkpoint${s?.checkpoint ? ` (step ${s.checkpoint.step})` : ''} can be resumed`,
          unexpected: true,
        }
      : { phase: 'failed', reason: `${who} ended before its first checkpoint (killed or crashed)`, unexpected: true };
  }
}
