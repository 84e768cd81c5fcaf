// The host side of the engine process. Every piece of ML work (training, GPU probing, parameter
// counting, reading checkpoints) runs in a child process forked from the CLI bundle
// (`dist/cli.js engine`, the engine server src/server/engine.ts) and spoken to with the typed protocol of
// src/protocol.ts, never on the extension host thread.
//
// - One "utility" engine answers the short requests (train/resolve, gpu/check, params/compute);
//   it is started on first use and again after it has died.
// - Each training gets an engine of its own, detached (see "Trainings" below), so that
//   cancelling, killing or crashing one never touches another training or the utility engine,
//   and a crashed engine's native state (onnxruntime sessions, GPU contexts) goes with it.
// - When an engine dies, every request still pending on it is rejected with EngineExitedError:
//   nothing in the editor waits on a process that is gone.
// - Cancel is stop.request in the run folder ('train/cancel' before the folder is claimed): the
//   trainer stops after the current step and writes a checkpoint; if it has not finished after
//   a grace period it is killed.

import { type ChildProcess, fork, type ForkOptions } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as readline from 'node:readline';
import * as vscode from 'vscode';
import { type FollowEnd, RunFollower, type FollowUpdate } from '../engine/run/follow';
import { pidAlive } from '../engine/run/lock';
import {
  readJsonOrNull,
  requestStop,
  RUN_FILE,
  type RunSummary,
  STOP_REQUEST_FILE,
  withdrawStopRequest,
} from '../engine/run/runFolder';
import {
  DETACHED_FLAG,
  ENGINE_COMMAND,
  type ErrorInfo,
  isNotification,
  isResponse,
  type NotificationMap,
  type NotificationMessage,
  type ParamsOf,
  PROTOCOL_VERSION,
  type RequestMethod,
  type ResultOf,
  type TrainStartParams,
  type TrainStartResult,
} from '../protocol';
import type { TrainEvent } from '../engine/train/trainer';
import { log } from './log';
import { fireTrainingState, fireTrainingUpdate, type TrainingState } from './trainingEvents';

/** An error the engine reported for a request (UserError: the user can fix it; shown without a stack). */
export class EngineRequestError extends Error {
  constructor(
    readonly method: string,
    readonly info: ErrorInfo,
  ) {
    super(info.message);
    this.name = info.name === 'UserError' ? 'UserError' : 'EngineRequestError';
  }
  get isUserError(): boolean {
    return this.info.name === 'UserError';
  }

  /** The user error's code (ErrorInfo.code): what callers branch on, never the message text. */
  get code(): ErrorInfo['code'] {
    return this.info.code;
  }
}

/** The engine process ended (crash, kill, exit) before answering. */
export class EngineExitedError extends Error {
  constructor(
    readonly pid: number | undefined,
    readonly code: number | null,
    readonly signal: NodeJS.Signals | null,
    readonly method?: string,
  ) {
    super(
      `the MET engine process${pid ? ` (pid ${pid})` : ''} ${describeExit(code, signal)}${method ? ` while answering ${method}` : ''}`,
    );
    this.name = 'EngineExitedError';
  }
}

export function describeExit(code: number | null, signal: NodeJS.Signals | null): string {
  if (signal) return `was killed (${signal})`;
  if (code === null) return 'could not be started';
  return code === 0 ? 'exited' : `exited with code ${code}`;
}

type ReadyInfo = NotificationMap['ready'];

export interface EngineOptions {
  /** dist/cli.js of this extension. */
  cliPath: string;
  cwd: string;
  /** Shown in the log next to every line of this engine. */
  label: string;
  /** Milliseconds to wait for 'ready' (loading onnxruntime and sharp). */
  readyTimeoutMs?: number;
  /** `met engine --detached` in a process group of its own: a training that outlives this window. */
  detached?: boolean;
}

/** One forked engine process and its pending requests. */
export class EngineProcess implements vscode.Disposable {
  readonly ready: Promise<ReadyInfo>;
  private readonly child: ChildProcess;
  private readonly pending = new Map<
    number,
    { method: string; resolve: (v: unknown) => void; reject: (e: Error) => void }
  >();
  private nextId = 1;
  private readonly notifications = new vscode.EventEmitter<NotificationMessage>();
  private readonly exits = new vscode.EventEmitter<EngineExitedError>();
  /** Every notification the engine sends ('log' is also written to the MET channel here). */
  readonly onNotification = this.notifications.event;
  /** Fires once when the process is gone, with why. */
  readonly onExit = this.exits.event;
  exited: EngineExitedError | undefined;
  /** Set when the host ended the process on purpose (cancel grace, dispose). */
  killedByHost = false;

  constructor(readonly options: EngineOptions) {
    const env: NodeJS.ProcessEnv = { ...process.env, ELECTRON_RUN_AS_NODE: '1' };
    // The extension host may run with --inspect or other flags; the engine must not inherit
    // them (a second debugger on the same port fails, and memory flags are not ours to copy).
    this.child = fork(options.cliPath, options.detached ? [ENGINE_COMMAND, DETACHED_FLAG] : [ENGINE_COMMAND], {
      cwd: options.cwd,
      env,
      execArgv: [],
      serialization: 'advanced',
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      // A process group (POSIX: a session) of its own, so that nothing sent to the extension
      // host's group (a terminal's SIGHUP, a kill of the host's tree) reaches the training.
      detached: !!options.detached,
      windowsHide: true,
    } as ForkOptions);
    const tag = () => `[${options.label}${this.child.pid ? ` ${this.child.pid}` : ''}]`;
    // Raw output: native libraries, stack traces of a crash. Line by line into the channel.
    readline.createInterface({ input: this.child.stdout! }).on('line', (l) => log().info(`${tag()} ${l}`));
    readline.createInterface({ input: this.child.stderr! }).on('line', (l) => log().warn(`${tag()} ${l}`));

    let readyResolve!: (r: ReadyInfo) => void;
    let readyReject!: (e: Error) => void;
    this.ready = new Promise<ReadyInfo>((res, rej) => {
      readyResolve = res;
      readyReject = rej;
    });
    // A rejected ready is also seen through request(); do not report it as unhandled.
    this.ready.catch(() => undefined);
    const readyTimer = setTimeout(() => {
      log().error(`${tag()} did not report ready within ${(options.readyTimeoutMs ?? 60_000) / 1000} s; killing it`);
      this.kill();
    }, options.readyTimeoutMs ?? 60_000);

    this.child.on('message', (m: unknown) => {
      if (isResponse(m)) {
        const p = this.pending.get(m.id);
        if (!p) return;
        this.pending.delete(m.id);
        if ('error' in m) p.reject(new EngineRequestError(p.method, m.error));
        else p.resolve(m.result);
      } else if (isNotification(m)) {
        if (m.method === 'ready') {
          clearTimeout(readyTimer);
          const r = m.params as ReadyInfo;
          if (r.protocol !== PROTOCOL_VERSION) {
            readyReject(
              new Error(
                `the engine speaks protocol ${r.protocol}, this extension ${PROTOCOL_VERSION} (a stale dist/cli.js? rebuild with npm run build)`,
              ),
            );
            this.kill();
            return;
          }
          log().info(`${tag()} engine ready (node ${r.node}, onnxruntime ${r.versions.onnxruntime ?? '?'})`);
          readyResolve(r);
        } else if (m.method === 'log') {
          const { level, message } = m.params as NotificationMap['log'];
          log()[level](`${tag()} ${message}`);
        }
        this.notifications.fire(m);
      }
    });
    let gone = false;
    const onGone = (code: number | null, signal: NodeJS.Signals | null, why?: string) => {
      if (gone) return;
      gone = true;
      clearTimeout(readyTimer);
      const err = new EngineExitedError(this.child.pid, code, signal);
      if (why) err.message += `: ${why}`;
      this.exited = err;
      const line = `${tag()} ${err.message.replace(/^the MET engine process( \(pid \d+\))? /, 'engine ')}`;
      if (this.killedByHost || (code === 0 && !signal)) log().info(line);
      else log().error(line);
      readyReject(err);
      for (const [, p] of this.pending) p.reject(new EngineExitedError(this.child.pid, code, signal, p.method));
      this.pending.clear();
      this.exits.fire(err);
      this.notifications.dispose();
      this.exits.dispose();
    };
    // 'exit' can come before the stdio pipes are drained; the reason is the same either way.
    this.child.on('exit', (code, signal) => onGone(code, signal));
    this.child.on('error', (e) => {
      // No pid: fork itself failed (ENOENT, EACCES) and no 'exit' will follow. Otherwise a send
      // or kill failed; the 'exit' that goes with it reports the end.
      if (this.child.pid === undefined) onGone(null, null, e.message);
      else log().warn(`${tag()} ${e.message}`);
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get alive(): boolean {
    // A killed engine's IPC channel closes before its 'exit' event arrives: in that gap it is
    // already gone for requests (a retry must not pick the same dead process again).
    return !this.exited && !this.sendFailed && this.child.connected;
  }

  /** A send to this engine failed (its channel is closing): it is not used for new requests. */
  private sendFailed = false;

  /** Sends a request once the engine is ready; rejects if it errs or the engine dies first. */
  async request<M extends RequestMethod>(method: M, params: ParamsOf<M>): Promise<ResultOf<M>> {
    await this.ready;
    if (!this.alive)
      throw new EngineExitedError(this.pid, this.exited?.code ?? null, this.exited?.signal ?? null, method);
    return new Promise<ResultOf<M>>((resolve, reject) => {
      const id = this.nextId++;
      this.pending.set(id, { method, resolve: resolve as (v: unknown) => void, reject });
      this.child.send({ id, method, params }, (err) => {
        if (!err) return;
        this.sendFailed = true;
        this.pending.delete(id);
        reject(this.exited ?? new EngineExitedError(this.pid, null, null, method));
      });
    });
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    this.killedByHost = true;
    if (!this.exited) this.child.kill(signal);
  }

  /**
   * Lets go of a detached engine: the IPC channel is closed (the engine goes on; it exits when its
   * training ends), and neither it nor its pipes keep this process alive. Its stderr is still
   * written to the log while this window lives.
   */
  release(): void {
    if (this.exited) return;
    try {
      if (this.child.connected) this.child.disconnect();
    } catch {
      // already disconnected
    }
    this.child.unref();
    (this.child.stdout as unknown as { unref?: () => void } | null)?.unref?.();
    (this.child.stderr as unknown as { unref?: () => void } | null)?.unref?.();
  }

  dispose(): void {
    // Synchronous: deactivate may not wait. A training stops with a checkpoint on disconnect
    // (src/server/engine.ts); the kill after the grace period is only for a stuck engine.
    if (this.exited) return;
    this.killedByHost = true;
    try {
      this.child.disconnect();
    } catch {
      // already disconnected
    }
    const t = setTimeout(() => this.kill(), 10_000);
    t.unref();
  }
}

// ---- Trainings ----
//
// A training is a process of its own (`met engine --detached`, in a process group of its own),
// not a child that dies with the extension host: it owns its run folder (run.lock) and writes
// everything a window needs to follow it there (engine/run/follow.ts). The window that starts it
// speaks to it over IPC only until it has claimed the folder ('train/started') (errors in the settings, the data or
// the lock come back as request errors, as before); then it disconnects and follows the folder,
// exactly as a window reloaded or opened later does when it finds the run's lock (attach).
// Cancel writes stop.request (the trainer stops after its step with a checkpoint), and kills the
// process if it has not ended after the grace period.

export type TrainingStatus = TrainingState['status'];

export interface TrainingOutcome {
  runDir: string;
  status: 'done' | 'stopped' | 'failed';
  result?: TrainStartResult;
  error?: Error;
}

/** How long a cancelled training may take to write its checkpoint before its process is killed. */
export const DEFAULT_CANCEL_GRACE_MS = 30_000;
/** How often a followed run folder is read (a few small reads: new metrics lines, status, lock). */
export const FOLLOW_POLL_MS = 250;
/** A window closing while set to stop its trainings gives a reload (or another window) this long
 *  to attach before the training stops (StopRequest.graceMs). */
export const CLOSE_STOP_GRACE_MS = 20_000;
/** The owner name (run.lock) of trainings started by the extension; windows re-attach to these. */
export const VSCODE_OWNER = 'met train (VS Code)';

/** A training followed from its run folder: started by this window, or found by its lock. */
export class Training {
  readonly state: TrainingState;
  readonly finished: Promise<TrainingOutcome>;
  /** Resolves at the first step event (compiling is over), or when the training ends before one. */
  readonly firstStep: Promise<void>;
  readonly startedAt = Date.now();
  cancelRequested: string | undefined;
  /** The training process (the detached engine): known at once when launched, from run.lock when attached. */
  pid: number | undefined;
  /** The folder is claimed (run.lock taken): from now on it is followed through the folder. */
  claimed = false;
  /** Found by its lock in a reloaded or other window, not started here. */
  readonly attached: boolean;
  /** Resolves when the engine of a launched training is up (attached: at once). */
  readonly ready: Promise<unknown>;
  private firstStepResolve!: () => void;
  private killTimer: ReturnType<typeof setTimeout> | undefined;
  private forcedKill = false;
  private disposed = false;
  private readonly messages = new vscode.EventEmitter<string>();
  /** Short human-readable progress lines (the training's log) for the start notification. */
  readonly onMessage = this.messages.event;

  private constructor(
    readonly runDir: string,
    private readonly graceMs: number,
    private readonly engine: EngineProcess | undefined,
    params: TrainStartParams | undefined,
    attachPid: number | undefined,
  ) {
    this.attached = !engine;
    this.pid = engine?.pid ?? attachPid;
    this.ready = engine ? engine.ready : Promise.resolve();
    this.state = { runDir, status: attachPid ? 'running' : 'starting', last: {} };
    this.firstStep = new Promise<void>((r) => (this.firstStepResolve = r));
    fireTrainingState({ ...this.state });
    this.finished = (engine ? this.launch(engine, params!) : this.follow(attachPid!, false)).then((o) => {
      this.finish(o);
      return o;
    });
  }

  /** Starts a training in a detached engine; runDir is config.out or the resumed run. */
  static launch(opts: EngineOptions, runDir: string, params: TrainStartParams, graceMs: number): Training {
    return new Training(runDir, graceMs, new EngineProcess({ ...opts, detached: true }), params, undefined);
  }

  /** Follows a training some other window (or this one before a reload) started. */
  static attach(runDir: string, pid: number, graceMs: number): Training {
    return new Training(runDir, graceMs, undefined, undefined, pid);
  }

  get status(): TrainingStatus {
    return this.state.status;
  }

  get active(): boolean {
    return this.state.status === 'starting' || this.state.status === 'running';
  }

  private onEvent(event: TrainEvent): void {
    this.state.last[event.type] = event as never;
    if (this.state.status === 'starting' && event.type !== 'checkpoint') {
      this.state.status = 'running';
      fireTrainingState({ ...this.state, last: { ...this.state.last } });
    }
    if (event.type === 'step') this.firstStepResolve();
    fireTrainingUpdate({ runDir: this.runDir, event });
  }

  /** Until the folder is claimed: the engine answers over IPC. Then: the folder. */
  private async launch(engine: EngineProcess, params: TrainStartParams): Promise<TrainingOutcome> {
    let claimedResolve!: (c: { runDir: string; pid: number }) => void;
    const claimed = new Promise<{ runDir: string; pid: number }>((r) => (claimedResolve = r));
    const sub = engine.onNotification((m) => {
      if (m.method === 'train/started') claimedResolve(m.params as NotificationMap['train/started']);
      else if (m.method === 'log') this.messages.fire((m.params as NotificationMap['log']).message);
    });
    const request = engine.request('train/start', params);
    // Settled after the folder is claimed only when the run ends before the host lets go.
    request.catch(() => undefined);
    try {
      const first = await Promise.race([claimed, request.then(() => null)]);
      if (!first) {
        // The whole run ended before the claim was seen (cannot happen: claim comes first).
        const result = await request;
        return { runDir: this.runDir, status: result.stopped ? 'stopped' : 'done', result };
      }
      this.claimed = true;
      this.pid = first.pid;
      if (path.resolve(first.runDir) !== path.resolve(this.runDir))
        log().warn(`training claimed ${first.runDir}, expected ${this.runDir}`);
      // A cancel that came while the engine was starting went over IPC; the trainer has it.
    } catch (e) {
      const err = e as Error;
      const forced = e instanceof EngineExitedError && this.cancelRequested !== undefined && engine.killedByHost;
      this.state.error = forced
        ? `${this.cancelRequested}; the engine did not stop within ${this.graceMs / 1000} s and was killed`
        : err.message;
      return { runDir: this.runDir, status: forced ? 'stopped' : 'failed', error: err };
    } finally {
      sub.dispose();
    }
    // The training goes on without this window from here: let go of it.
    engine.release();
    return this.follow(this.pid!, true);
  }

  /** Follows the run folder until its owner is gone; reports every event on the way. */
  private async follow(pid: number, fromStart: boolean): Promise<TrainingOutcome> {
    const f = new RunFollower(this.runDir, { pid, fromStart, lastStep: !fromStart });
    const tag = `[train ${path.basename(this.runDir)} ${pid}]`;
    for (;;) {
      let u: FollowUpdate;
      try {
        u = await f.poll();
      } catch (e) {
        log().warn(`${tag} reading the run folder: ${(e as Error).message}`);
        u = { events: [], log: [], status: null, end: null };
      }
      for (const line of u.log) {
        log()[/^warning\b/i.test(line) ? 'warn' : 'info'](`${tag} ${line}`);
        this.messages.fire(line);
      }
      for (const e of u.events) this.onEvent(e);
      if (u.end) return await this.outcomeOf(u.end);
      // A window that closed while set to stop this training asked for a stop unless someone
      // follows it: this window does.
      if (!this.disposed && withdrawStopRequest(this.runDir, true))
        log().info(`${tag} a closing window asked this training to stop; this window follows it, so it goes on`);
      if (this.disposed) return new Promise<never>(() => undefined);
      await new Promise((r) => setTimeout(r, FOLLOW_POLL_MS));
    }
  }

  private async outcomeOf(end: FollowEnd): Promise<TrainingOutcome> {
    const runDir = this.runDir;
    if (end.phase === 'done') {
      const summary = await readJsonOrNull<RunSummary>(path.join(runDir, RUN_FILE.summary));
      return { runDir, status: 'done', result: summary ? { runDir, stopped: null, summary } : undefined };
    }
    if (end.phase === 'stopped') {
      const reason =
        this.forcedKill && this.cancelRequested
          ? `${this.cancelRequested}; the training did not stop within ${this.graceMs / 1000} s and was killed`
          : (end.reason ?? 'stopped');
      this.state.error = reason;
      return { runDir, status: 'stopped', result: { runDir, stopped: reason, summary: emptySummary(runDir, reason) } };
    }
    this.state.error = end.reason ?? 'failed';
    const error = new Error(this.state.error);
    return { runDir, status: 'failed', error };
  }

  private finish(o: TrainingOutcome): void {
    if (this.killTimer) clearTimeout(this.killTimer);
    this.state.status = o.status;
    if (o.status === 'stopped' && o.result?.stopped) this.state.error = o.result.stopped;
    this.firstStepResolve();
    this.messages.dispose();
    fireTrainingState({ ...this.state, last: { ...this.state.last } });
  }

  /** Cancel: ask for a checkpointed stop, then kill the process if it has not ended in time. */
  async cancel(reason = 'cancelled in VS Code'): Promise<void> {
    if (!this.active || this.cancelRequested !== undefined) return;
    this.cancelRequested = reason;
    log().info(`cancelling ${this.runDir}: ${reason}`);
    this.killTimer = setTimeout(() => {
      if (!this.active) return;
      log().warn(`${this.runDir}: the training did not stop within ${this.graceMs / 1000} s of the cancel; killing it`);
      this.forcedKill = true;
      if (!this.claimed && this.engine) this.engine.kill();
      else if (this.pid && pidAlive(this.pid)) {
        try {
          process.kill(this.pid, 'SIGKILL');
        } catch {
          /* gone meanwhile */
        }
      }
    }, this.graceMs);
    if (!this.claimed && this.engine) {
      try {
        await this.engine.request('train/cancel', { reason });
      } catch {
        // The engine died meanwhile: launch() reports it.
      }
    }
    // Also (or, once claimed, only) through the folder: the trainer reads stop.request between
    // steps, whichever process or window asked.
    if (this.claimed || fs.existsSync(this.runDir))
      try {
        requestStop(this.runDir, { reason, by: `VS Code (pid ${process.pid})` });
      } catch (e) {
        log().warn(`${this.runDir}: cannot write ${STOP_REQUEST_FILE}: ${(e as Error).message}`);
      }
  }

  /**
   * The window is closing (deactivate): stop following. whenClosed 'stop' asks the training to
   * stop unless a window attaches within CLOSE_STOP_GRACE_MS (a reload does); 'keep' leaves it.
   */
  detach(whenClosed: 'keep' | 'stop'): void {
    if (this.disposed) return;
    this.disposed = true;
    if (!this.active) return;
    if (whenClosed === 'stop') {
      if (!this.claimed && this.engine)
        void this.engine.request('train/cancel', { reason: 'VS Code was closed' }).catch(() => undefined);
      else
        try {
          requestStop(this.runDir, {
            reason: 'VS Code was closed (met.training.whenWindowCloses: stop)',
            by: `VS Code (pid ${process.pid})`,
            graceMs: CLOSE_STOP_GRACE_MS,
          });
        } catch {
          /* a folder gone or read-only: the training goes on */
        }
    }
    // Not claimed yet: the engine runs on detached and claims the folder without us.
    this.engine?.release();
  }
}

function emptySummary(runDir: string, stopped: string): RunSummary {
  return { runDir, exits: [], dynamic: [], trainImgPerSec: 0, stopped };
}

// ---- The manager ----

export class Engines implements vscode.Disposable {
  private utilityEngine: EngineProcess | undefined;
  private readonly trainingsByDir = new Map<string, Training>();
  private readonly changed = new vscode.EventEmitter<void>();
  /** A training started or ended. */
  readonly onDidChangeTrainings = this.changed.event;
  cancelGraceMs = DEFAULT_CANCEL_GRACE_MS;
  /** The last run folder a training was started in (for tests and "Open run"). */
  lastRunDir: string | undefined;

  constructor(private readonly extensionPath: string) {}

  get cliPath(): string {
    return path.join(this.extensionPath, 'dist', 'cli.js');
  }

  private cwd(): string {
    return vscode.workspace.workspaceFolders?.[0]?.uri.fsPath ?? this.extensionPath;
  }

  /** The shared engine for short requests; a dead one is replaced on the next use. */
  utility(): EngineProcess {
    if (!this.utilityEngine || !this.utilityEngine.alive) {
      this.utilityEngine = new EngineProcess({ cliPath: this.cliPath, cwd: this.cwd(), label: 'engine' });
    }
    return this.utilityEngine;
  }

  /**
   * A short request on the utility engine. These requests only read (files, probes), so one that
   * was lost because the engine died (killed, crashed on an earlier request) is sent once more
   * to a fresh engine; a second death is reported.
   */
  async request<M extends RequestMethod>(method: M, params: ParamsOf<M>): Promise<ResultOf<M>> {
    // Two retries: a request can reach a killed engine before its exit is known, and the retry
    // can still find that engine looking alive for a moment (its channel closing, not closed).
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.utility().request(method, params);
      } catch (e) {
        if (!(e instanceof EngineExitedError) || attempt >= 2) throw e;
        log().warn(`${method}: ${e.message}; retrying on a new engine`);
      }
    }
  }

  /** Starts a training in a detached engine; runDir is the run folder (config.out, or the resumed run). */
  startTraining(params: TrainStartParams, runDir: string): Training {
    const cwd = params.config?.data
      ? (vscode.workspace.getWorkspaceFolder(vscode.Uri.file(params.config.data))?.uri.fsPath ?? this.cwd())
      : this.cwd();
    const t = Training.launch(
      { cliPath: this.cliPath, cwd, label: `train ${path.basename(runDir)}` },
      runDir,
      params,
      this.cancelGraceMs,
    );
    this.track(t);
    this.lastRunDir = runDir;
    return t;
  }

  /**
   * Follows a training this window did not start (found by run.lock: started before a reload,
   * or by another window). Nothing happens when this window already follows that run.
   */
  attach(runDir: string, pid: number): Training | undefined {
    const have = this.trainingsByDir.get(path.resolve(runDir));
    if (have?.active) return undefined;
    log().info(`attaching to the training of ${runDir} (pid ${pid})`);
    const t = Training.attach(runDir, pid, this.cancelGraceMs);
    this.track(t);
    return t;
  }

  private track(t: Training): void {
    const k = path.resolve(t.runDir);
    this.trainingsByDir.set(k, t);
    this.changed.fire();
    void t.finished.then(() => {
      if (this.trainingsByDir.get(k) === t) this.trainingsByDir.delete(k);
      this.changed.fire();
    });
  }

  /** What a closing window does with a training (met.training.whenWindowCloses, or this run's answer). */
  whenClosed: (runDir: string) => 'keep' | 'stop' = () => 'keep';

  /** Trainings still starting or running, oldest first. */
  active(): Training[] {
    return [...this.trainingsByDir.values()].filter((t) => t.active);
  }

  training(runDir: string): Training | undefined {
    return this.trainingsByDir.get(path.resolve(runDir));
  }

  /** Pids of the live engine processes (for tests and the log). */
  pids(): { utility?: number; trainings: { runDir: string; pid?: number }[] } {
    return {
      utility: this.utilityEngine?.alive ? this.utilityEngine.pid : undefined,
      trainings: this.active().map((t) => ({ runDir: t.runDir, pid: t.pid })),
    };
  }

  dispose(): void {
    this.utilityEngine?.dispose();
    // Trainings are processes of their own: they go on (or stop with a checkpoint, if this
    // window was set to stop them) and a reloaded window attaches to them again.
    for (const t of this.trainingsByDir.values()) t.detach(this.whenClosed(t.runDir));
    this.changed.dispose();
  }
}

let engines: Engines | undefined;

export function initEngines(context: vscode.ExtensionContext): Engines {
  engines = new Engines(context.extensionPath);
  context.subscriptions.push(engines, { dispose: () => (engines = undefined) });
  return engines;
}

/** The extension's engines (after activate). Other modules (CodeLens...) send requests through it. */
export function getEngines(): Engines {
  if (!engines) throw new Error('MET: the engine client is not initialised (extension not activated)');
  return engines;
}
