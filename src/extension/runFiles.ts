// Reading one run folder: its status, per-exit accuracy and progress, from the files the engine
// writes (names and types: src/engine/run/runFolder.ts) plus the live state of this window's engine. No `vscode` here
// (type imports only), so the node:test suite checks it on real run folders
// (test/run-files.test.ts); RunIndex (runIndex.ts) does discovery, caching and watching.
//
// All file access is async (fs.promises): the extension host thread only waits on I/O.

import * as fs from 'node:fs';
import * as path from 'node:path';
import type { TrainEvent } from '../engine/train/trainer';
import { branchTypes } from '../engine/model/branches';
import { ownerState } from '../engine/run/lock';
import {
  FINAL_PHASES,
  isRunConfig,
  readJsonOrNull,
  readLockAsync,
  RUN_FILE,
  RUN_LOCK_FILE,
  RUN_STATUS_FILE,
  type RunConfigFile,
  type RunLock,
  type RunStatusFile,
  type RunSummary,
} from '../engine/run/runFolder';
import type { TrainingState } from './trainingEvents';

export type RunStatus = 'starting' | 'running' | 'stopped' | 'done' | 'failed';

/** A run's name in lists: its folder's, with its study's for a run of `met ablate` (.met/studies/STUDY/VARIANT). */
export function runName(dir: string): string {
  const study = path.dirname(dir);
  const studies = path.dirname(study);
  return path.basename(studies) === 'studies' && path.basename(path.dirname(studies)) === '.met'
    ? `${path.basename(study)} / ${path.basename(dir)}`
    : path.basename(dir);
}

export interface RunInfo {
  /** Absolute run folder. */
  dir: string;
  name: string;
  status: RunStatus;
  /** Why it failed, or why it stopped, when known. */
  reason?: string;
  /** Stopped or failed with a checkpoint left: Resume continues it. */
  resumable: boolean;
  config: RunConfigFile;
  summary: RunSummary | null;
  /** Per exit (exits in config order): accuracy and which split it was measured on. */
  /** Regression runs: mae / rmse (target units) instead of accuracy (which is then null). */
  accuracy: {
    exit: number;
    layer: number;
    branch: string;
    accuracy: number | null;
    gflops: number | null;
    mae?: number | null;
    rmse?: number | null;
  }[];
  /** 'regression' for runs that predict a value (config.met.task); absent for classification. */
  task?: 'regression';
  accuracySource: 'test' | 'val' | null;
  /** Last epoch reached (from metrics.jsonl or live events) out of config epochs. */
  epoch: number;
  epochs: number;
  /** Live progress of a running run: 0..1, img/s, seconds left. */
  progress?: { fraction: number; imgPerSec: number; etaSec: number };
  createdAt: string;
  /** Newest modification time of the run's files we look at (ms). */
  mtime: number;
}

/** The files readRun looks at (their mtimes make RunIndex's cache key). */
export const RUN_FILES = [
  RUN_FILE.config,
  RUN_FILE.summary,
  RUN_FILE.checkpoint,
  RUN_FILE.metrics,
  RUN_LOCK_FILE,
  RUN_STATUS_FILE,
] as const;

/** Is run.lock's holder a training (not `met eval`, which only re-evaluates a finished run)? */
const trains = (lock: RunLock | null) => !!lock && (!lock.pid || lock.command.startsWith('met train'));
/** A run whose metrics.jsonl changed this recently, with no engine of ours behind it, is taken to
 *  be trained by another process (`met train` in a terminal). One step can take long on a big
 *  backbone, hence the generous window. */
export const EXTERNAL_RUNNING_MS = 120_000;

export const norm = (p: string) => path.resolve(p);

export async function stat(file: string): Promise<fs.Stats | null> {
  try {
    return await fs.promises.stat(file);
  } catch {
    return null;
  }
}

type EpochEvent = Extract<TrainEvent, { type: 'epoch' }>;

/** The last epoch line of each metrics.jsonl seen so far, and how far (bytes) it was read. */
const epochScan = new Map<string, { end: number; event: EpochEvent | null }>();

function lastEpochIn(text: string): EpochEvent | null {
  const lines = text.split('\n');
  for (let i = lines.length - 1; i >= 0; i--) {
    if (!lines[i].includes('"type":"epoch"')) continue;
    try {
      return JSON.parse(lines[i]) as EpochEvent;
    } catch {
      /* not a whole line */
    }
  }
  return null;
}

/**
 * The last `epoch` event in metrics.jsonl (one line per step, so it can be large). Reads the
 * file's tail the first time, growing the window until an epoch line shows up, and afterwards
 * only what was appended since: a running training's file is never read twice.
 */
export async function lastEpochEvent(file: string, size: number): Promise<EpochEvent | null> {
  let h: fs.promises.FileHandle | undefined;
  try {
    h = await fs.promises.open(file, 'r');
    const read = async (from: number, to: number) => {
      const buf = Buffer.alloc(to - from);
      await h!.read(buf, 0, buf.length, from);
      return buf;
    };
    const known = epochScan.get(file);
    if (known && size >= known.end) {
      if (size === known.end) return known.event;
      const buf = await read(known.end, size);
      const cut = buf.lastIndexOf(0x0a) + 1; // whole lines only; the rest is read next time
      const event = lastEpochIn(buf.subarray(0, cut).toString('utf8')) ?? known.event;
      epochScan.set(file, { end: known.end + cut, event });
      return event;
    }
    let event: EpochEvent | null = null;
    let end = 0;
    for (let win = 64 << 10; ; win *= 4) {
      const from = Math.max(0, size - win);
      const buf = await read(from, size);
      const cut = buf.lastIndexOf(0x0a) + 1;
      end ||= from + cut;
      // From the first newline on when the window starts mid-file (a partial first line).
      const first = from > 0 ? buf.indexOf(0x0a) + 1 : 0;
      event = cut > first ? lastEpochIn(buf.subarray(first, cut).toString('utf8')) : null;
      if (event || from === 0 || win > 64 << 20) break;
    }
    epochScan.set(file, { end, event });
    return event;
  } catch {
    return null;
  } finally {
    await h?.close();
  }
}

export interface Live {
  state?: TrainingState;
  lastStep?: Extract<TrainEvent, { type: 'step' }>;
  lastEpoch?: EpochEvent;
}

const finite = (x: number | null | undefined): number | null =>
  x === null || x === undefined || !Number.isFinite(x) ? null : x;

/** Reads one run folder; null when it is not (or no longer) a MET run. */
export async function readRun(dir: string, live?: Live): Promise<RunInfo | null> {
  const stats = await Promise.all(RUN_FILES.map((f) => stat(path.join(dir, f))));
  const [cfgSt, sumSt, ckSt, metSt] = stats;
  if (!cfgSt) return null;
  const config = await readJsonOrNull<RunConfigFile>(path.join(dir, RUN_FILE.config));
  if (!isRunConfig(config)) return null;
  const summary = sumSt ? await readJsonOrNull<RunSummary>(path.join(dir, RUN_FILE.summary)) : null;
  const mtime = Math.max(...stats.map((s) => s?.mtimeMs ?? 0));
  const exits = config.met.exits;
  const epochs = config.train.epochs;

  let status: RunStatus;
  let reason: string | undefined;
  const ls = live?.state?.status;
  // Who owns the folder (run.lock) and what its last owner said (status.json): a training that
  // is gone (killed, crashed, its machine rebooted) shows as stopped at the next read, not after
  // a timeout.
  const lock = stats[4] ? await readLockAsync(dir) : null;
  const owner = ownerState(lock);
  const phase = stats[5] ? await readJsonOrNull<RunStatusFile>(path.join(dir, RUN_STATUS_FILE)) : null;
  if (ls) {
    // The engine of this window knows best, but a finished run's summary only appears after
    // evaluation, so 'done' without summary.json is still running (evaluating).
    status = ls === 'done' && !summary ? 'running' : ls;
    reason = live?.state?.error;
  } else if ((owner === 'alive' || owner === 'remote') && trains(lock)) {
    status = metSt || phase?.phase === 'training' || phase?.phase === 'evaluating' ? 'running' : 'starting';
  } else if (summary && !summary.stopped) status = 'done';
  else if (phase && FINAL_PHASES.includes(phase.phase) && owner !== 'gone') {
    status = phase.phase === 'done' ? (ckSt ? 'stopped' : 'failed') : (phase.phase as 'stopped' | 'failed');
    reason =
      phase.phase === 'stopped'
        ? phase.stopped
        : phase.phase === 'failed'
          ? phase.error?.message
          : 'finished training but its evaluation was not written';
  } else if (owner === 'gone' || phase) {
    const who = lock?.pid ? `the training process (pid ${lock.pid})` : 'the training process';
    status = ckSt ? 'stopped' : 'failed';
    reason = ckSt
      ? `${who} ended without finishing (killed or crashed); Resume continues from its last checkpoint`
      : `${who} ended before its first checkpoint`;
  } else if (metSt && Date.now() - metSt.mtimeMs < EXTERNAL_RUNNING_MS) status = 'running';
  // Runs written before run.lock and status.json existed: guessed from how recent the files are.
  // config.json is written before the images are decoded and the model compiled, metrics.jsonl
  // only when training starts: a young run without metrics is getting ready, not dead.
  else if (!metSt && Date.now() - cfgSt.mtimeMs < EXTERNAL_RUNNING_MS) status = 'starting';
  else if (ckSt) {
    status = 'stopped';
    reason = 'interrupted; resume with met train --resume';
  } else {
    status = 'failed';
    reason = 'ended before its first checkpoint';
  }
  const resumable = (status === 'stopped' || status === 'failed') && !!ckSt;

  let accuracySource: RunInfo['accuracySource'] = null;
  let acc: (number | null)[] = exits.map(() => null);
  const regression = config.met.task === 'regression';
  let mae: (number | null)[] = exits.map(() => null);
  let rmse: (number | null)[] = exits.map(() => null);
  // Runs made before exit branches existed have no `branch`: linear, the only head then.
  let branches: string[];
  try {
    branches = branchTypes(config.met, exits.length);
  } catch {
    branches = exits.map(() => '?');
  }
  let epoch = 0;
  const lastEpoch =
    live?.lastEpoch ?? (metSt ? await lastEpochEvent(path.join(dir, RUN_FILE.metrics), metSt.size) : null);
  if (lastEpoch) epoch = lastEpoch.epoch;
  if (summary?.exits?.length) {
    accuracySource = 'test';
    acc = exits.map((_, j) => summary.exits[j]?.accuracy ?? null);
    mae = exits.map((_, j) => summary.exits[j]?.mae ?? null);
    rmse = exits.map((_, j) => summary.exits[j]?.rmse ?? null);
    epoch = epochs;
  } else if (regression && lastEpoch?.valMaePerExit?.length) {
    accuracySource = 'val';
    mae = exits.map((_, j) => lastEpoch.valMaePerExit?.[j] ?? null);
    rmse = exits.map((_, j) => lastEpoch.valRmsePerExit?.[j] ?? null);
  } else if (lastEpoch?.valAccPerExit?.length) {
    accuracySource = 'val';
    acc = exits.map((_, j) => lastEpoch.valAccPerExit[j] ?? null);
  }
  if (live?.lastStep && (status === 'running' || status === 'starting')) epoch = Math.max(epoch, live.lastStep.epoch);
  const progress =
    live?.lastStep && (status === 'running' || status === 'starting')
      ? {
          fraction: live.lastStep.step / live.lastStep.totalSteps,
          imgPerSec: live.lastStep.imgPerSec,
          etaSec: live.lastStep.etaSec,
        }
      : undefined;
  return {
    dir,
    name: runName(dir),
    status,
    reason,
    resumable,
    config,
    summary,
    ...(regression ? { task: 'regression' as const } : {}),
    accuracy: exits.map((layer, j) => ({
      exit: j + 1,
      layer,
      branch: summary?.exits?.[j]?.branch ?? branches[j],
      accuracy: finite(acc[j]),
      gflops: summary?.exits?.[j]?.gflops ?? null,
      ...(regression ? { mae: finite(mae[j]), rmse: finite(rmse[j]) } : {}),
    })),
    accuracySource,
    epoch,
    epochs,
    progress,
    createdAt: config.createdAt,
    mtime,
  };
}
