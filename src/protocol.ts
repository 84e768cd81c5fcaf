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
// Type-only imports (of engine and application-layer types): this file must stay free of runtime
// dependencies (no vscode, no engine code).

import type { ParamsReport } from './app/params';
import type { RunPlan } from './app/resolve';
import type { TrainConfig } from './engine/run/config';
import type { RunSummary } from './engine/run/runFolder';
import type { Provider, ProviderStatus } from './engine/runtime/device';
import type { UserErrorCode } from './engine/tensor';
import type { TrainEvent } from './engine/train/trainer';
import type {
  AttentionParams,
  AttentionResult,
  EmbeddingsParams,
  EmbeddingsResult,
  ScoreParams,
  ScoreResult,
  SimilarityParams,
  SimilarityResult,
  ThumbsParams,
  ThumbsResult,
} from './engine/explore/types';

/** Bumped when a message changes shape; the host refuses an engine that speaks another version. */
export const PROTOCOL_VERSION = 1;

/** The CLI sub-command that runs the engine (hidden from `met --help`). */
export const ENGINE_COMMAND = 'engine';
/**
 * `met engine --detached`: an engine that trains one run and outlives the window that started it.
 * It is spawned in a process group of its own; once its train/start has claimed the run folder it
 * sends 'train/started', the host disconnects, and from then on windows follow it through the run
 * folder (engine/run/follow.ts). Losing the host never stops it; SIGTERM, SIGHUP or SIGINT stop
 * it after the current step with a checkpoint, as a stop.request does.
 */
export const DETACHED_FLAG = '--detached';

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

/** Complete settings (`out` set to the run folder train/start will create), backbone, classes, counts, notes. */
export type ResolveResult = RunPlan;

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
  /** The text of `configFile` as an editor holds it (unsaved edits), read instead of the file. */
  configText?: string;
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
  /** Where each exit's token attends over the patch grid for one image (Explain, Inspect exits). */
  'inspect/attention': { params: AttentionParams; result: AttentionResult };
  /** S^w, S^b and head-input distances for a class-balanced sample (similarity matrices panel). */
  'similarity/compute': { params: SimilarityParams; result: SimilarityResult };
  /** Each exit's head inputs on a class-balanced sample, projected on their first two principal axes (embeddings view). */
  'embeddings/compute': { params: EmbeddingsParams; result: EmbeddingsResult };
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
  /**
   * The training owns its run folder now (run.lock taken, status.json written): from here it can
   * be followed through the folder. Not sent when the folder is refused (taken, holds a run).
   */
  'train/started': { runDir: string; resumed: boolean; config: TrainConfig; pid: number };
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

/**
 * Errors in a request itself, named by the engine before any handler runs (name 'ProtocolError'):
 *   method-unknown   no such request method (prototype keys such as 'toString' included)
 *   params-invalid   a field is missing or has the wrong type (ErrorInfo.field names it)
 */
export type ProtocolErrorCode = 'method-unknown' | 'params-invalid';

export class ProtocolError extends Error {
  constructor(
    readonly code: ProtocolErrorCode,
    message: string,
    /** The params field at fault ('params' for the params object itself). */
    readonly field?: string,
  ) {
    super(message);
    this.name = 'ProtocolError';
  }
}

export interface ErrorInfo {
  message: string;
  /**
   * 'UserError' for errors a user can fix (bad folder, bad config), 'ProtocolError' for a bad
   * request: both shown without a stack.
   */
  name: string;
  /** What kind of user or protocol error: what code branches on, never the message text. */
  code?: UserErrorCode | ProtocolErrorCode;
  /** The params field a ProtocolError 'params-invalid' names. */
  field?: string;
  /** Numbers the message states (UserError.details), e.g. heads-unknown's width. */
  details?: Record<string, number>;
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
  if (e instanceof Error) {
    const { code, details } = e as { code?: unknown; details?: Record<string, number> };
    // Only a UserError's code is one of ours (a Node error's code is 'ENOENT' and the like).
    return {
      message: e.message,
      name: e.name,
      ...(e.name === 'UserError' && typeof code === 'string' ? { code: code as UserErrorCode } : {}),
      ...(e.name === 'UserError' && details ? { details } : {}),
      ...(e instanceof ProtocolError ? { code: e.code, ...(e.field ? { field: e.field } : {}) } : {}),
      // A bad request or a user's mistake is named by its message; a stack is for bugs only.
      ...(e.name === 'UserError' || e instanceof ProtocolError ? {} : { stack: e.stack }),
    };
  }
  return { message: String(e), name: 'Error' };
}
