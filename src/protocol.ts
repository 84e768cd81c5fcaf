// The one protocol between the extension host and the engine process (`met engine`, forked from
// dist/cli.js and spoken over Node IPC). Host and engine both import this file, so a method's
// params and result types cannot drift apart. Shaped like GitLens' webview protocol:
//
//   request       host -> engine   { id, method, params }
//   response      engine -> host   { id, result } | { id, error }
//   notification  either way       { method, params }            (no id, no answer)
//
// The engine sends the 'ready' notification once it has loaded and installed its message
// handler; the host sends nothing before it (a message sent earlier would reach a process that
// might still crash while loading its native modules, and the host could not tell why).
//
// The channel uses Node's 'advanced' serialization (structured clone), so NaN and Infinity in
// accuracies and thresholds survive (JSON would turn them into null).
//
// Type-only imports: this file must stay free of runtime dependencies (no vscode, no engine code).

import type { ParamsReport } from './cli/params';
import type { TrainConfig } from './engine/run/config';
import type { RunSummary } from './engine/run/run';
import type { Provider, ProviderStatus } from './engine/runtime/device';
import type { TrainEvent } from './engine/train/trainer';

/** Bumped when a message changes shape; the host refuses an engine that speaks another version. */
export const PROTOCOL_VERSION = 1;

/** The CLI sub-command that runs the engine (hidden from `met --help`). */
export const ENGINE_COMMAND = 'engine';

// ---- Requests (host -> engine) ----

export interface ResolveParams {
  /** Image folder (absolute). Undefined: the config file must name it. */
  data?: string;
  /** Backbone checkpoint (absolute). Undefined: the config file must name it. */
  weights?: string;
  /** met.config.json to start from (its relative paths are relative to it). */
  configFile?: string;
  /** Settings that win over the config file (validated like met.config.json). */
  overrides?: Partial<TrainConfig>;
  /** Where `.met/runs/<time>-<variant>` goes when the settings name no `out`. */
  workspaceRoot: string;
}

export interface ResolveResult {
  /** Complete settings, `out` set to the run folder that train/start will create. */
  config: TrainConfig;
  /** The exits the run will have (the config's, or the default placement for this backbone). */
  exits: number[];
  backbone: {
    file: string;
    layout: string;
    depth: number;
    dim: number;
    heads: number;
    imageSize: number;
    channels: number;
  };
  classes: string[];
  counts: { train: number; val: number; test: number };
  /** Things the user should know before starting (where a setting came from, dataset warnings). */
  notes: string[];
}

export interface TrainStartParams {
  /** Resolved settings (from train/resolve). Ignored when resuming. */
  config?: TrainConfig;
  /** Continue this run folder from its checkpoint instead (as `met train --resume`). */
  resumeDir?: string;
  /** Settings that win over the resumed run's (e.g. more epochs, another device). */
  resumeOverrides?: Partial<TrainConfig>;
  /** The met.config.json the settings came from; recorded in the run's config.json. */
  configFile?: string;
}

export interface TrainStartResult {
  runDir: string;
  /** null when the run finished; the reason when it stopped early (cancel), resumable. */
  stopped: string | null;
  summary: RunSummary;
}

export interface GpuCheckResult {
  statuses: ProviderStatus[];
  /** What `device: "auto"` uses on this machine. */
  auto: Provider;
  /** The same plain-text table `met` prints. */
  report: string;
}

export interface ParamsComputeParams {
  /** met.config.json to read (as `met params --config FILE`). */
  configFile?: string;
  /** Settings on top of the file (as `met params` flags). */
  settings?: Partial<TrainConfig>;
  /** A standard backbone by name instead of weights (as `--backbone`). */
  backbone?: string;
  /** Classes per exit head (default: the class folders of `data`). */
  classes?: number;
  /** `settings` are complete (a run's recorded settings): do not also read ./met.config.json. */
  ignoreWorkspaceConfig?: boolean;
}

// ---- Exploration panels (issue 5): numbers travel as typed arrays (structured clone keeps them) ----

export interface ScoreParams {
  /** A finished run folder (its config.json, trainable.safetensors, thresholds.json). */
  runDir: string;
  /** Absolute image files, in the order the results come back. An empty list only loads the
   *  run (a panel can warm the engine up) and returns its classes, layers and GFLOPs. */
  files: string[];
  /** Classes kept per exit, most probable first (default 3). */
  topK?: number;
}

/** Per image and exit of a run: n = files.length, K = exits, k = topK. */
export interface ScoreResult {
  files: string[];
  /** Class names of the run (index = class id). */
  classes: string[];
  /** 1-based layer of each exit. */
  layers: number[];
  /** Cumulative GFLOPs per image to reach each exit. */
  gflops: number[];
  /** 1 where the image was decoded and scored; 0 where it was skipped (see `skipped`). */
  ok: Uint8Array; // [n]
  /** Confidence (max softmax probability) and predicted class: [n * K], image-major. Regression
   *  runs: the agreement with the previous exit, -|y_j - y_(j-1)| (NaN at exit 1), and -1. */
  conf: Float32Array;
  pred: Int32Array;
  /** 'regression': the run predicts a number; `value` holds it per exit. */
  task?: 'regression';
  /** Regression runs: the predicted value (target units) per exit, [n * K] image-major. */
  value?: Float32Array;
  /** Top-k probabilities and classes: [n * K * k] (k = 0 for regression runs). */
  topProb: Float32Array;
  topClass: Int32Array;
  /** The 0-based exit each image takes under the run's chosen thresholds ([n]; -1 when skipped). */
  exitTaken: Int32Array;
  /** Unreadable files with the reason (a bad file never fails the request). */
  skipped: { file: string; reason: string }[];
  /** The operating point `exitTaken` follows (thresholds.json `chosen`): one threshold per exit
   *  of the network (unused exits +Infinity, the last used -Infinity). */
  chosen?: { p: number | null; perExit: number[]; source: string };
}

export interface ThumbsParams {
  files: string[];
  /** Longest side in pixels (default 96). */
  size?: number;
  /** Folder for the cached thumbnails (created); names derive from path, size and mtime. */
  cacheDir: string;
  /** Thumbnail format (default 'webp'; 'png' is lossless, larger and slower to make). */
  format?: 'webp' | 'png';
}

export interface ThumbsResult {
  /** Thumbnail file per input (null: unreadable, reason in `skipped`). */
  thumbs: (string | null)[];
  skipped: { file: string; reason: string }[];
}

export interface SimilarityParams {
  runDir: string;
  /** 0-based exits to compute (e.g. two for side-by-side). */
  exits: number[];
  /** Images per class in the class-balanced sample (default 8). */
  perClass?: number;
  /** Split of the run's data to sample from (default 'val'). */
  split?: 'train' | 'val' | 'test';
  /** Seed of the sample (default the run's seed). */
  seed?: number;
}

export interface SimilarityExit {
  /** 0-based exit (as requested) and the 1-based layer it follows. */
  exit: number;
  layer: number;
  /** n x n row-major matrices over the sample, in the order of `files` (class-sorted):
   *  S^w (intra-class similarity weights), S^b (inter-class), and the squared distances of this
   *  exit's head inputs z_j = LN_f(c_j), exactly as graph regularization uses them in training
   *  (src/engine/explore/similarity.ts grMatrices, with the run's flags: `dist` is Euclidean
   *  rather than squared when the run has grSquared off, and divided by D with grNormalize). */
  sw: Float32Array;
  sb: Float32Array;
  dist: Float32Array;
  /** The graph-regularization term these matrices give (what training adds, times lambda). */
  gr: number;
}

export interface SimilarityResult {
  /** Class-sorted sample. */
  files: string[];
  labels: Int32Array; // [n]
  classes: string[];
  /** First index of each class in the sample, plus n at the end (class bands on the axes). */
  classStarts: number[];
  exits: SimilarityExit[];
  /** Sampled files that could not be decoded (replaced by other files of their class). */
  skipped?: { file: string; reason: string }[];
  /** The split and seed the sample was drawn with (the defaults filled in). */
  split?: 'train' | 'val' | 'test';
  seed?: number;
}

/** Request methods: name -> params and result. */
export interface RequestMap {
  'train/resolve': { params: ResolveParams; result: ResolveResult };
  /** Runs a whole training; answers when it has finished or stopped. */
  'train/start': { params: TrainStartParams; result: TrainStartResult };
  /** Asks the running training to stop after the current step and write a checkpoint. */
  'train/cancel': { params: { reason?: string }; result: { wasRunning: boolean } };
  'gpu/check': { params: { refresh?: boolean }; result: GpuCheckResult };
  /** The numbers of `met params --json`. */
  'params/compute': { params: ParamsComputeParams; result: ParamsReport };
  /** Every exit's confidence, class and top-k for images, and the exit each takes (Inspect exits). */
  'inspect/score': { params: ScoreParams; result: ScoreResult };
  /** Thumbnails made with sharp, cached on disk (the Inspect exits grid). */
  'inspect/thumbs': { params: ThumbsParams; result: ThumbsResult };
  /** S^w, S^b and head-input distances for a class-balanced sample (similarity matrices panel). */
  'similarity/compute': { params: SimilarityParams; result: SimilarityResult };
  /** Stops the engine (after stopping a training with a checkpoint). */
  'engine/shutdown': { params: Record<string, never>; result: { ok: true } };
}

export type RequestMethod = keyof RequestMap;
export type ParamsOf<M extends RequestMethod> = RequestMap[M]['params'];
export type ResultOf<M extends RequestMethod> = RequestMap[M]['result'];

// ---- Notifications (engine -> host) ----

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error';

export interface NotificationMap {
  ready: { protocol: number; pid: number; node: string; versions: { onnxruntime: string | null } };
  /** Training has a run folder (sent before anything slow: scanning, decoding, compiling). */
  'train/started': { runDir: string; resumed: boolean; config: TrainConfig };
  /** One engine event of the running training (what metrics.jsonl records, and more). */
  'train/event': { runDir: string; event: TrainEvent };
  log: { level: LogLevel; message: string };
}

export type NotificationMethod = keyof NotificationMap;

// ---- Wire messages ----

export interface RequestMessage<M extends RequestMethod = RequestMethod> {
  id: number;
  method: M;
  params: ParamsOf<M>;
}

export interface ErrorInfo {
  message: string;
  /** 'UserError' for errors a user can fix (bad folder, bad config): shown without a stack. */
  name: string;
  stack?: string;
}

export type ResponseMessage<M extends RequestMethod = RequestMethod> =
  { id: number; result: ResultOf<M> } | { id: number; error: ErrorInfo };

export interface NotificationMessage<N extends NotificationMethod = NotificationMethod> {
  method: N;
  params: NotificationMap[N];
}

export type Message = RequestMessage | ResponseMessage | NotificationMessage;

export function isRequest(m: unknown): m is RequestMessage {
  return isObj(m) && typeof m.id === 'number' && typeof m.method === 'string';
}

export function isResponse(m: unknown): m is ResponseMessage {
  return isObj(m) && typeof m.id === 'number' && m.method === undefined && ('result' in m || 'error' in m);
}

export function isNotification(m: unknown): m is NotificationMessage {
  return isObj(m) && m.id === undefined && typeof m.method === 'string';
}

function isObj(m: unknown): m is Record<string, unknown> {
  return typeof m === 'object' && m !== null && !Array.isArray(m);
}

export function errorInfo(e: unknown): ErrorInfo {
  if (e instanceof Error) return { message: e.message, name: e.name, stack: e.stack };
  return { message: String(e), name: 'Error' };
}
