// The host side of the engine process. Every piece of ML work (training, GPU probing, parameter
// counting, reading checkpoints) runs in a child process forked from the CLI bundle
// (`dist/cli.js engine`, the engine server src/server/engine.ts) and spoken to with the typed protocol of
// src/protocol.ts, never on the extension host thread.
//
// - One "utility" engine answers the short requests (train/resolve, gpu/check, params/compute);
//   it is started on first use and again after it has died.
// - Each training gets an engine of its own, so that cancelling, killing or crashing one never
//   touches another training or the utility engine, and a crashed engine's native state
//   (onnxruntime sessions, GPU contexts) goes with it.
// - When an engine dies, every request still pending on it is rejected with EngineExitedError:
//   nothing in the editor waits on a process that is gone.
// - Cancel is the 'train/cancel' message (the trainer stops after the current step and writes a
//   checkpoint); if the engine has not finished after a grace period it is killed.

import { type ChildProcess, fork } from 'node:child_process';
import * as path from 'node:path';
import * as readline from 'node:readline';
import * as vscode from 'vscode';
import {
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
  /** Set when the host ended the process on purpose (shutdown, cancel grace, dispose). */
  killedByHost = false;

  constructor(readonly options: EngineOptions) {
    const env: NodeJS.ProcessEnv = { ...process.env, ELECTRON_RUN_AS_NODE: '1' };
    // The extension host may run with --inspect or other flags; the engine must not inherit
    // them (a second debugger on the same port fails, and memory flags are not ours to copy).
    this.child = fork(options.cliPath, [ENGINE_COMMAND], {
      cwd: options.cwd,
      env,
      execArgv: [],
      serialization: 'advanced',
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    });
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

  /** Asks the engine to stop (it checkpoints a training first), and kills it after graceMs. */
  async shutdown(graceMs = 5000): Promise<void> {
    if (this.exited) return;
    this.killedByHost = true;
    const gone = new Promise<void>((r) => (this.exited ? r() : this.onExit(() => r())));
    const timer = setTimeout(() => this.kill(), graceMs);
    this.request('engine/shutdown', {}).catch(() => undefined);
    await gone;
    clearTimeout(timer);
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

export type TrainingStatus = TrainingState['status'];

export interface TrainingOutcome {
  runDir: string;
  status: 'done' | 'stopped' | 'failed';
  result?: TrainStartResult;
  error?: Error;
}

/** How long a cancelled training may take to write its checkpoint before its engine is killed. */
export const DEFAULT_CANCEL_GRACE_MS = 30_000;

/** One training in its own engine process. Live updates go out through trainingEvents.ts. */
export class Training {
  readonly state: TrainingState;
  readonly finished: Promise<TrainingOutcome>;
  /** Resolves at the first step event (compiling is over), or when the training ends before one. */
  readonly firstStep: Promise<void>;
  readonly startedAt = Date.now();
  cancelRequested: string | undefined;
  private firstStepResolve!: () => void;
  private readonly subs: vscode.Disposable[] = [];
  private killTimer: ReturnType<typeof setTimeout> | undefined;
  private readonly messages = new vscode.EventEmitter<string>();
  /** Short human-readable progress lines (engine log lines) for the start notification. */
  readonly onMessage = this.messages.event;

  constructor(
    readonly engine: EngineProcess,
    readonly runDir: string,
    params: TrainStartParams,
    private readonly graceMs: number,
  ) {
    this.state = { runDir, status: 'starting', last: {} };
    this.firstStep = new Promise<void>((r) => (this.firstStepResolve = r));
    fireTrainingState({ ...this.state });
    this.subs.push(
      engine.onNotification((m) => {
        if (m.method === 'train/event') this.onEvent((m.params as NotificationMap['train/event']).event);
        else if (m.method === 'log') this.messages.fire((m.params as NotificationMap['log']).message);
      }),
    );
    this.finished = this.run(params);
  }

  get pid(): number | undefined {
    return this.engine.pid;
  }

  get status(): TrainingStatus {
    return this.state.status;
  }

  get active(): boolean {
    return this.state.status === 'starting' || this.state.status === 'running';
  }

  private onEvent(event: TrainEvent): void {
    this.state.last[event.type] = event as never;
    if (this.state.status === 'starting') {
      this.state.status = 'running';
      fireTrainingState({ ...this.state, last: { ...this.state.last } });
    }
    if (event.type === 'step') this.firstStepResolve();
    fireTrainingUpdate({ runDir: this.runDir, event });
  }

  private async run(params: TrainStartParams): Promise<TrainingOutcome> {
    let outcome: TrainingOutcome;
    try {
      const result = await this.engine.request('train/start', params);
      outcome = { runDir: this.runDir, status: result.stopped ? 'stopped' : 'done', result };
      this.state.status = outcome.status;
      if (result.stopped) this.state.error = result.stopped;
    } catch (e) {
      const err = e as Error;
      // Killed by us after the cancel grace period: stopped (by force), not failed.
      const forced = e instanceof EngineExitedError && this.cancelRequested !== undefined && this.engine.killedByHost;
      outcome = { runDir: this.runDir, status: forced ? 'stopped' : 'failed', error: err };
      this.state.status = outcome.status;
      this.state.error = forced
        ? `${this.cancelRequested}; the engine did not stop within ${this.graceMs / 1000} s and was killed`
        : err.message;
    } finally {
      if (this.killTimer) clearTimeout(this.killTimer);
      this.firstStepResolve();
      this.subs.forEach((d) => d.dispose());
      this.messages.dispose();
      // The engine has nothing left to do; let it go (it exits after answering).
      void this.engine.shutdown(5000);
    }
    fireTrainingState({ ...this.state, last: { ...this.state.last } });
    return outcome;
  }

  /** Cancel: ask for a checkpointed stop, then kill the engine if it has not ended in time. */
  async cancel(reason = 'cancelled in VS Code'): Promise<void> {
    if (!this.active || this.cancelRequested !== undefined) return;
    this.cancelRequested = reason;
    log().info(`cancelling ${this.runDir}: ${reason}`);
    this.killTimer = setTimeout(() => {
      if (!this.active) return;
      log().warn(`${this.runDir}: the engine did not stop within ${this.graceMs / 1000} s of the cancel; killing it`);
      this.engine.kill();
    }, this.graceMs);
    try {
      await this.engine.request('train/cancel', { reason });
    } catch {
      // The engine died meanwhile: run() reports it.
    }
  }
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

  /** Starts a training in a new engine; runDir is the run folder (config.out, or the resumed run). */
  startTraining(params: TrainStartParams, runDir: string): Training {
    const cwd = params.config?.data
      ? (vscode.workspace.getWorkspaceFolder(vscode.Uri.file(params.config.data))?.uri.fsPath ?? this.cwd())
      : this.cwd();
    const engine = new EngineProcess({ cliPath: this.cliPath, cwd, label: `train ${path.basename(runDir)}` });
    const t = new Training(engine, runDir, params, this.cancelGraceMs);
    this.trainingsByDir.set(path.resolve(runDir), t);
    this.lastRunDir = runDir;
    this.changed.fire();
    void t.finished.then(() => {
      if (this.trainingsByDir.get(path.resolve(runDir)) === t) this.trainingsByDir.delete(path.resolve(runDir));
      this.changed.fire();
    });
    return t;
  }

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
    for (const t of this.trainingsByDir.values()) t.engine.dispose();
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
