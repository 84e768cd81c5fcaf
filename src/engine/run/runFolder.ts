// The run folder's schema: what a run writes, under which names, and how it is read back. A run
// is a folder; everything the CLI and the panels show is read from it, nothing lives only in
// memory.
//
//   config.json            resolved settings, backbone config, classes, dataset summary (RunConfigFile)
//   report.json            skipped files with reasons, warnings, how the split was made (RunReportFile)
//   metrics.jsonl          one TrainEvent (train/trainer.ts) per line: every step and epoch
//   checkpoint.safetensors parameters + AdamW moments + loop position (for --resume)
//   trainable.safetensors  MET's trained tensors
//   predictions.json       per split: files, labels, per-exit confidence and prediction (PredictionsFile)
//   thresholds.json        exit costs, the accuracy-vs-GFLOPs curve, the chosen thresholds (ThresholdsFile)
//   summary.json           static accuracy/GFLOPs per exit, dynamic curve, throughput (RunSummary)
//   run.lock               while a process owns the folder (trains, evaluates): RunLock (RUN_LOCK_FILE; run/lock.ts)
//   status.json            what the training that owns (or owned) the folder is doing: RunStatusFile (run/status.ts)
//   train.log              the training's log lines, for a window that attaches to it later
//   stop.request           a request to the owner to stop after its step with a checkpoint: StopRequest
//
// Pure on purpose: node:fs, node:path and type imports only, so the extension host reads and
// writes run folders with it directly (no round trip to the engine process) without pulling
// onnxruntime or sharp into its bundle (test/explore-thresholds.test.ts bundles it to check).
// The writers are run/run.ts (config, report, predictions, thresholds, summary) and the trainer
// (metrics, checkpoint, trainable: run.ts hands it these names); every JSON write is atomic.

import * as fs from 'node:fs';
import * as path from 'node:path';
import type { SplitScores } from '../infer/exitScores';
import type { BudgetPoint } from '../infer/thresholds';
import { writeFileAtomic } from '../io/atomic';
import type { BranchType } from '../settings';
import type { VitConfig } from '../model/config';
import type { MetConfig } from '../model/met';
import type { TrainEvent } from '../train/trainer';
import { UserError } from '../tensor';
import { type TrainConfig, upgradeMetConfig } from './config';

/** config.json `version` this code writes and reads. */
export const RUN_VERSION = 1;

/** The files of a run folder, by role. */
export const RUN_FILE = {
  config: 'config.json',
  report: 'report.json',
  metrics: 'metrics.jsonl',
  checkpoint: 'checkpoint.safetensors',
  trainable: 'trainable.safetensors',
  predictions: 'predictions.json',
  thresholds: 'thresholds.json',
  summary: 'summary.json',
} as const;

/** The lock a run folder holds while a process owns it (run/lock.ts); not in RUN_FILE, which
 *  names what a finished run holds. */
export const RUN_LOCK_FILE = 'run.lock';

/** run.lock: who owns the run folder (run/lock.ts takes and releases it). */
export interface RunLock {
  pid: number;
  /** os.hostname() of the owner: a pid means nothing on another machine. */
  host: string;
  /** ISO time the lock was taken. */
  since: string;
  /** What holds it: 'met train', 'met eval'. */
  command: string;
}

/**
 * The run folder's lock holder, or null when nobody holds it (no run.lock). A lock file that is
 * there but unreadable or not a lock (being written this instant, or damaged) reads as pid 0, so
 * that callers still see that the folder is taken. Pure (fs only): the Runs view shows it.
 */
export function readLock(runDir: string): RunLock | null {
  let text: string;
  try {
    text = fs.readFileSync(path.join(runDir, RUN_LOCK_FILE), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    text = '';
  }
  return parseLock(text);
}

/** readLock without blocking (the extension host's readers). */
export async function readLockAsync(runDir: string): Promise<RunLock | null> {
  let text: string;
  try {
    text = await fs.promises.readFile(path.join(runDir, RUN_LOCK_FILE), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    text = '';
  }
  return parseLock(text);
}

/** A lock file's text as readLock reads it: a RunLock, or pid 0 when it is not one. */
function parseLock(text: string): RunLock {
  let l: Partial<RunLock> | null = null;
  try {
    l = JSON.parse(text) as Partial<RunLock>;
  } catch {
    /* being written, or damaged */
  }
  const ok =
    !!l && Number.isInteger(l.pid) && l.pid! > 0 && [l.host, l.since, l.command].every((x) => typeof x === 'string');
  return ok ? (l as RunLock) : { pid: 0, host: '?', since: '?', command: `unreadable ${RUN_LOCK_FILE}` };
}

/**
 * status.json: the phase of the training that owns (or last owned) the folder, for whoever follows
 * it from outside the process (a VS Code window, the one that started it or one opened later; the
 * Runs view). Written atomically by run/status.ts at every phase change and at the end, before
 * run.lock is released: a follower that finds the lock gone and no final phase knows the process
 * died.
 */
export const RUN_STATUS_FILE = 'status.json';
/** The training's log lines (what `met train` prints to stderr), appended as they come. */
export const TRAIN_LOG_FILE = 'train.log';
/** Written by whoever wants the owner to stop (Cancel in any window, `met stop`): the trainer
 *  checks it between steps, and a new owner removes it when it claims the folder. */
export const STOP_REQUEST_FILE = 'stop.request';

export type RunPhase = 'starting' | 'training' | 'evaluating' | 'done' | 'stopped' | 'failed';
export const FINAL_PHASES: readonly RunPhase[] = ['done', 'stopped', 'failed'];

export interface RunStatusFile {
  pid: number;
  host: string;
  /** The owner as run.lock names it ('met train', 'met train (VS Code)'). */
  command: string;
  phase: RunPhase;
  /** ISO times: when this process took the folder, and of this write. */
  since: string;
  updatedAt: string;
  /** The trainer's 'start' event (schedule, split sizes, exits), once training has begun. */
  start?: Extract<TrainEvent, { type: 'start' }>;
  /** The step of the newest checkpoint this process wrote. */
  checkpoint?: { step: number; at: string };
  /** Why it stopped (phase 'stopped'). */
  stopped?: string;
  /** Why it failed (phase 'failed'); code as UserError has it. */
  error?: { message: string; code?: string };
}

/** status.json, or null when missing or unreadable (then nothing is known about the phase). */
export function readRunStatus(runDir: string): RunStatusFile | null {
  try {
    const s = JSON.parse(fs.readFileSync(path.join(runDir, RUN_STATUS_FILE), 'utf8')) as RunStatusFile;
    return s && typeof s === 'object' && typeof s.phase === 'string' && Number.isInteger(s.pid) ? s : null;
  } catch {
    return null;
  }
}

export interface StopRequest {
  reason: string;
  /** ISO time of the request. */
  at: string;
  /** Who asked (for the log): 'VS Code (pid 123)', 'met stop'. */
  by: string;
  /**
   * A conditional request, made by a VS Code window that closes while set to stop its trainings:
   * the owner stops only if the request is still there this many ms after `at`. A window that
   * attaches to the run meanwhile (a reload, another window) withdraws it.
   */
  graceMs?: number;
}

/** stop.request, or null when there is none (an unreadable one counts as a plain request). */
export function readStopRequest(runDir: string): StopRequest | null {
  let text: string;
  try {
    text = fs.readFileSync(path.join(runDir, STOP_REQUEST_FILE), 'utf8');
  } catch {
    return null;
  }
  try {
    const r = JSON.parse(text) as StopRequest;
    if (r && typeof r.reason === 'string') return r;
  } catch {
    /* half-written by a writer without atomic writes, or hand-made */
  }
  return { reason: 'a stop was requested', at: new Date(0).toISOString(), by: STOP_REQUEST_FILE };
}

/** Asks the owner of `runDir` to stop after its current step with a checkpoint (`at`: now, unless given). */
export function requestStop(runDir: string, r: Omit<StopRequest, 'at'> & { at?: string }): void {
  writeFileAtomic(path.join(runDir, STOP_REQUEST_FILE), JSON.stringify({ ...r, at: r.at ?? new Date().toISOString() }));
}

/** Removes a stop request; `conditionalOnly`: only one with graceMs (a closing window's). */
export function withdrawStopRequest(runDir: string, conditionalOnly = false): boolean {
  const r = readStopRequest(runDir);
  if (!r || (conditionalOnly && r.graceMs === undefined)) return false;
  try {
    fs.unlinkSync(path.join(runDir, STOP_REQUEST_FILE));
    return true;
  } catch {
    return false;
  }
}

export interface RunConfigFile {
  version: number;
  createdAt: string;
  train: TrainConfig;
  backbone: { file: string; layout: string; config: VitConfig };
  met: MetConfig;
  classes: string[];
  dataset: { root: string; layout: string; counts: { train: number; val: number; test: number }; notes: string[] };
  /** Absolute path of the config file the settings came from (absent: flags only). It links a
   *  run to its met.config.json, e.g. for the editor's "Inspect exits" CodeLens. */
  configFile?: string;
}

export interface RunReportFile {
  skipped: { file: string; reason: string }[];
  warnings: string[];
  notes: string[];
  /** Symbolic links in the dataset that lead out of its root (data/folder.ts); absent when none. */
  external?: { link: string; target: string }[];
}

/** One split of predictions.json: the stored per-exit scores (infer/exitScores.ts) and its files. */
export interface SplitPredictions extends SplitScores {
  files: string[];
}

export interface PredictionsFile {
  classes: string[];
  /** Backbone layer of each exit (MetConfig.exits). */
  exits: number[];
  task?: 'regression';
  val: SplitPredictions;
  test: SplitPredictions;
}

export interface ThresholdsFile {
  /** 0-based exits used for budgeted inference. */
  exits: number[];
  /** Cumulative GFLOPs to reach each exit (all exits). */
  gflops: number[];
  /** Thresholds fitted on val, evaluated on test, per p. */
  curve: BudgetPoint[];
  /** The thresholds `met predict` and `met export` use, one per used exit. */
  chosen: { p: number | null; thresholds: number[]; source: string };
}

export interface RunSummary {
  runDir: string;
  /** `branch`: the exit's branch type (absent in runs made before exit branches existed). */
  /** Regression runs: accuracy is NaN (null in JSON) and mae / rmse (target units) are given. */
  exits: {
    exit: number;
    layer: number;
    branch: BranchType;
    accuracy: number;
    gflops: number;
    mae?: number;
    rmse?: number;
  }[];
  /** Regression runs: accuracy is -MAE (higher is better, as the threshold code wants) and mae is given. */
  dynamic: { p: number; accuracy: number; gflops: number; thresholds: number[]; exitCounts: number[]; mae?: number }[];
  task?: 'regression';
  trainImgPerSec: number;
  stopped: string | null;
}

/** A JSON file of the run folder; a missing or unparsable file is a UserError naming it. */
export function readJson<T>(file: string): T {
  if (!fs.existsSync(file)) throw new UserError(`${file} does not exist`);
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as T;
  } catch (e) {
    throw new UserError(`${file}: not valid JSON (${(e as Error).message})`);
  }
}

/** Writes a run file atomically (temporary file + rename): readers never see half a file. */
export function writeJson(file: string, v: unknown): void {
  writeFileAtomic(file, JSON.stringify(v, null, 1));
}

/** For readers that poll run folders (the extension host): the parsed file, or null when it is
 *  missing, half-written by a process without atomic writes, or not JSON. Never blocks the thread. */
export async function readJsonOrNull<T>(file: string): Promise<T | null> {
  try {
    return JSON.parse(await fs.promises.readFile(file, 'utf8')) as T;
  } catch {
    return null;
  }
}

/** Does a parsed config.json look like one the engine wrote (a MET run folder)? */
export function isRunConfig(c: unknown): c is RunConfigFile {
  const x = c as RunConfigFile;
  return (
    !!x && typeof x === 'object' && typeof x.version === 'number' && !!x.train && !!x.met && Array.isArray(x.met.exits)
  );
}

/** The run's config.json, checked to be of the format this code reads. */
export function readRunConfig(runDir: string): RunConfigFile {
  const cf = readJson<RunConfigFile>(path.join(runDir, RUN_FILE.config));
  if (cf.version !== RUN_VERSION)
    throw new UserError(`${runDir}: run format ${cf.version} is not supported (expected ${RUN_VERSION})`);
  // Runs written before MetConfig.act was renamed adapterAct keep their adapter activation.
  cf.met = upgradeMetConfig(cf.met);
  return cf;
}

/** The run's thresholds.json; null when the run has not been evaluated (no such file). */
export function readThresholds(runDir: string): ThresholdsFile | null {
  const f = path.join(runDir, RUN_FILE.thresholds);
  return fs.existsSync(f) ? readJson<ThresholdsFile>(f) : null;
}

// ---------------------------------------------------------------------------------------------
// Thresholds as they travel through JSON files.
//
// Budgeted inference uses +Infinity ("nobody leaves at this exit") and -Infinity ("everybody
// left leaves here", the last exit), and MSDNet's procedure can also produce NaN (nobody
// leaves). JSON has none of them: JSON.stringify writes all three as null, which is what a
// run's thresholds.json holds. null is still unambiguous once the position is known: at the last
// used exit every sample leaves whatever the threshold, and anywhere else an infinite or NaN
// threshold lets nobody through. Exported files are explicit instead: the strings "Infinity" and
// "-Infinity" (which JavaScript's Number() and Python's float() both parse).

export type JsonThreshold = number | 'Infinity' | '-Infinity' | null;

/** A threshold read from JSON; `last`: the last exit a sample can reach, which accepts all. */
export function decodeThreshold(v: unknown, last: boolean): number {
  if (last) return -Infinity;
  if (typeof v === 'number') return v;
  if (typeof v === 'string') {
    const n = Number(v);
    // "NaN" or junk: no sample can pass it, the same as +Infinity.
    return Number.isNaN(n) ? Infinity : n;
  }
  return Infinity; // null / missing: +Infinity or NaN written by JSON.stringify
}

/** A threshold for JSON: finite numbers as they are, infinities as strings, NaN as "Infinity". */
export function encodeThreshold(t: number): JsonThreshold {
  if (Number.isFinite(t)) return t;
  return t === -Infinity ? '-Infinity' : 'Infinity';
}

export interface ChosenOperatingPoint {
  /** 0-based exits used for budgeted inference, ascending. */
  used: number[];
  /** One threshold per exit of the network (length K): unused exits +Infinity, the last used -Infinity. */
  perExit: number[];
  /** The run's thresholds for the used exits, decoded. */
  thresholds: number[];
  p: number | null;
  source: string;
}

/**
 * The run's chosen thresholds spread over all K exits of the network, for a runner that
 * evaluates every exit in turn (SegmentRunner.dynamic, an exported chain). Without a
 * thresholds.json (a run that never got to evaluation) every sample runs to the last exit.
 */
export function chosenOperatingPoint(th: ThresholdsFile | null, K: number): ChosenOperatingPoint {
  const used = th ? th.exits.slice() : Array.from({ length: K }, (_, j) => j);
  if (!used.length || used.some((j, i) => !Number.isInteger(j) || j < 0 || j >= K || (i > 0 && j <= used[i - 1])))
    throw new Error(`thresholds.json: exits [${used.join(', ')}] do not fit a network with ${K} exits`);
  const raw: unknown[] = th ? th.chosen.thresholds : used.map(() => null);
  if (raw.length !== used.length)
    throw new Error(`thresholds.json: ${raw.length} chosen thresholds for ${used.length} exits`);
  const thresholds = raw.map((v, i) => decodeThreshold(v, i === used.length - 1));
  const perExit = new Array<number>(K).fill(Infinity);
  used.forEach((j, i) => (perExit[j] = thresholds[i]));
  return {
    used,
    perExit,
    thresholds,
    p: th ? th.chosen.p : null,
    source: th ? th.chosen.source : 'no thresholds.json in the run: every sample runs to the last exit',
  };
}

// ---------------------------------------------------------------------------------------------
// Saving a run's chosen operating point (thresholds.json `chosen`), e.g. from the budget slider.
// `met predict --run` and `met export` use whatever is chosen there.

/** A threshold as it may arrive: a number, or null / "Infinity" / "-Infinity" (JSON has no infinities). */
export type ThresholdValue = number | null | 'Infinity' | '-Infinity';

export interface ChosenPoint {
  /** The curve point's p, or null for thresholds that are not on the run's curve. */
  p: number | null;
  /** One per used exit (thresholds.json `exits`); the last one is ignored (that exit takes everyone). */
  thresholds: ThresholdValue[];
  /** Where the choice came from (default 'slider'). */
  source?: string;
}

function readThresholdsFile(file: string): ThresholdsFile {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new UserError(
      code === 'ENOENT'
        ? `${file} does not exist (the run has not been evaluated yet)`
        : `cannot read ${file} (${code ?? (e as Error).message})`,
    );
  }
  try {
    return JSON.parse(text) as ThresholdsFile;
  } catch (e) {
    throw new UserError(`${file}: not valid JSON (${(e as Error).message})`);
  }
}

function decoded(v: unknown, last: boolean, file: string, i: number): number {
  const ok = v === null || v === 'Infinity' || v === '-Infinity' || (typeof v === 'number' && !Number.isNaN(v));
  if (!ok)
    throw new UserError(
      `${file}: threshold ${i + 1} must be a number, null, "Infinity" or "-Infinity", got ${JSON.stringify(v)}`,
    );
  return decodeThreshold(v, last);
}

/**
 * As the run's own thresholds.json holds them: numbers, with +Infinity (nobody leaves) and the
 * last exit written as null by JSON.stringify. -Infinity before the last exit (everybody left
 * leaves there) would read back as +Infinity from null, so it is written as "-Infinity".
 */
function stored(t: number, last: boolean): number {
  if (last || t === Infinity) return -Infinity; // JSON.stringify: null
  return t === -Infinity ? ('-Infinity' as unknown as number) : t;
}

/**
 * Makes `point` the run's chosen operating point: validates it against the run's
 * thresholds.json (one threshold per used exit; a point with a p must be that curve point) and
 * rewrites the file atomically (temporary file + rename), leaving everything else as it was.
 * Returns the `chosen` it wrote.
 */
export function saveChosenThresholds(runDir: string, point: ChosenPoint): ThresholdsFile['chosen'] {
  const file = path.join(path.resolve(runDir), RUN_FILE.thresholds);
  const th = readThresholdsFile(file);
  if (!Array.isArray(th.exits) || !th.exits.length) throw new UserError(`${file}: no used exits`);
  const M = th.exits.length;
  if (!point || !Array.isArray(point.thresholds)) throw new UserError(`${file}: the point to save has no thresholds`);
  if (point.thresholds.length !== M)
    throw new UserError(
      `${file}: ${point.thresholds.length} thresholds given for the run's ${M} used exits (${th.exits.map((j) => j + 1).join(', ')})`,
    );
  const T = point.thresholds.map((v, i) => decoded(v, i === M - 1, file, i));
  if (point.p !== null) {
    if (typeof point.p !== 'number' || !Number.isFinite(point.p))
      throw new UserError(`${file}: p must be a number or null, got ${JSON.stringify(point.p)}`);
    const onCurve = (th.curve ?? []).find((c) => c.p === point.p);
    if (!onCurve)
      throw new UserError(
        `${file}: p = ${point.p} is not a point of the run's curve (${(th.curve ?? []).map((c) => c.p).join(', ')})`,
      );
    const curveT = onCurve.thresholds.map((v, i) => decodeThreshold(v, i === M - 1));
    if (curveT.some((t, i) => t !== T[i]))
      throw new UserError(
        `${file}: the thresholds given are not those of the curve point p = ${point.p}; save other thresholds with p = null`,
      );
  }
  const chosen: ThresholdsFile['chosen'] = {
    p: point.p,
    thresholds: T.map((t, i) => stored(t, i === M - 1)),
    source: point.source ?? 'slider',
  };
  writeJson(file, { ...th, chosen });
  return JSON.parse(JSON.stringify(chosen)) as ThresholdsFile['chosen'];
}
