// The owner's side of following a training from outside its process: status.json (the phase),
// train.log (the log lines) and stop.request (a stop asked for by a window, `met stop`, or a
// closing window). runTraining (run.ts) makes one RunStatusWriter as soon as it holds the run
// folder's lock; run/follow.ts is the other side.
//
// Pure Node (fs, os, path): nothing here may slow a step down. The stop request is one stat()
// per step at most every STOP_CHECK_MS; the log is appended with one write per line.

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { UserError } from '../tensor';
import type { TrainEvent } from '../train/trainer';
import {
  FINAL_PHASES,
  readStopRequest,
  RUN_STATUS_FILE,
  type RunPhase,
  type RunStatusFile,
  STOP_REQUEST_FILE,
  TRAIN_LOG_FILE,
  writeJson,
} from './runFolder';

/** How often the trainer looks for stop.request (a stat); steps of a small model take ~10 ms. */
const STOP_CHECK_MS = 200;

export class RunStatusWriter {
  private readonly status: RunStatusFile;
  private logFd: number | null = null;
  private lastStopCheck = 0;
  /** The stop.request seen last: its mtime, its reason, and when it applies (ms since epoch). */
  private stop: { mtimeMs: number; reason: string | null; due: number } | null = null;

  constructor(
    readonly runDir: string,
    command: string,
  ) {
    const now = new Date().toISOString();
    this.status = { pid: process.pid, host: os.hostname(), command, phase: 'starting', since: now, updatedAt: now };
    // A request left from before this owner took the folder (a cancel that came after the last
    // process had ended) is not for this one: a resume would stop at its first step.
    fs.rmSync(path.join(runDir, STOP_REQUEST_FILE), { force: true });
    try {
      this.logFd = fs.openSync(path.join(runDir, TRAIN_LOG_FILE), 'a');
    } catch {
      this.logFd = null; // the log is a convenience; the run goes on without it
    }
    this.log(`${command}: pid ${process.pid} on ${this.status.host} owns ${runDir}`);
    this.write();
  }

  get phase(): RunPhase {
    return this.status.phase;
  }

  private write(): void {
    this.status.updatedAt = new Date().toISOString();
    try {
      writeJson(path.join(this.runDir, RUN_STATUS_FILE), this.status);
    } catch {
      // A full disk must not end a training that can still write its checkpoint; followers
      // then see the last phase written, and the lock tells whether the owner lives.
    }
  }

  /** One line of the training's log, time-stamped. */
  log(line: string): void {
    if (this.logFd === null) return;
    try {
      fs.writeSync(this.logFd, `${new Date().toISOString()} ${line}\n`);
    } catch {
      /* as above */
    }
  }

  setPhase(phase: RunPhase): void {
    if (FINAL_PHASES.includes(this.status.phase) || this.status.phase === phase) return;
    this.status.phase = phase;
    this.write();
  }

  /** The trainer's events that change the status: its start, each checkpoint, the stop. */
  event(e: TrainEvent): void {
    if (e.type === 'start') {
      this.status.start = e;
      this.status.phase = 'training';
      this.write();
    } else if (e.type === 'checkpoint' || e.type === 'epoch') {
      // The trainer writes a checkpoint at every epoch end, before the epoch event.
      this.status.checkpoint = { step: e.step, at: new Date().toISOString() };
      this.write();
    }
  }

  /**
   * The reason of a stop.request that applies now, or null. A conditional one (graceMs, from a
   * closing window) applies once its grace has passed with the file still there.
   */
  stopRequested(): string | null {
    const now = Date.now();
    if (now - this.lastStopCheck >= STOP_CHECK_MS) {
      this.lastStopCheck = now;
      this.checkStopFile(now);
    }
    return this.stop?.reason && now >= this.stop.due ? this.stop.reason : null;
  }

  /** Re-reads stop.request when it appeared or changed (its mtime), forgets it when it is gone. */
  private checkStopFile(now: number): void {
    let st: fs.Stats | undefined;
    try {
      st = fs.statSync(path.join(this.runDir, STOP_REQUEST_FILE), { throwIfNoEntry: false });
    } catch {
      st = undefined;
    }
    if (!st) {
      this.stop = null; // withdrawn (a window attached), or never asked
      return;
    }
    if (this.stop?.mtimeMs === st.mtimeMs) return;
    const r = readStopRequest(this.runDir);
    const at = r ? Date.parse(r.at) : NaN;
    const due = r?.graceMs !== undefined && Number.isFinite(at) ? at + r.graceMs : 0;
    this.stop = { mtimeMs: st.mtimeMs, reason: r ? `${r.reason} (${r.by})` : null, due };
    if (r && due > now)
      this.log(
        `stop requested by ${r.by}: ${r.reason}; stopping in ${Math.round((due - now) / 1000)} s unless a window attaches`,
      );
  }

  /** The final phase, written before the lock is released. */
  end(phase: 'done' | 'stopped' | 'failed', detail?: { stopped?: string | null; error?: unknown }): void {
    this.status.phase = phase;
    if (detail?.stopped) this.status.stopped = detail.stopped;
    if (detail?.error !== undefined) {
      const e = detail.error;
      this.status.error = {
        message: e instanceof Error ? e.message : String(e),
        ...(e instanceof UserError && e.code ? { code: e.code } : {}),
      };
    }
    this.log(
      phase === 'done'
        ? 'finished'
        : phase === 'stopped'
          ? `stopped: ${detail?.stopped ?? ''}`
          : `failed: ${this.status.error?.message ?? ''}`,
    );
    this.write();
    if (this.logFd !== null) {
      try {
        fs.closeSync(this.logFd);
      } catch {
        /* closed already */
      }
      this.logFd = null;
    }
  }
}
