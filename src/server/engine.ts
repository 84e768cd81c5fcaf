// The engine server, `met engine`: the engine process of the VS Code extension (the CLI's hidden
// `engine` sub-command calls engineCommand). Hidden from `met --help`: the
// extension forks dist/cli.js with this command and speaks src/protocol.ts over Node IPC, so
// training, GPU probing and parameter counting never run on the extension host thread, and a
// crash in a native library takes down this process only.
//
// One engine trains one run at a time (the extension forks one engine per training, so that
// cancelling or killing one never touches another). Requests that are not training (gpu/check,
// params/compute, the exploration panels' inspect/*, similarity/compute and embeddings/compute) are answered while a
// training runs: the trainer yields to the event loop between steps (onnxruntime-node runs
// sessions from setImmediate), which is also when a 'train/cancel' arrives.

import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { computeParams } from '../app/params';
import { resolveRun } from '../app/resolve';
import { definedOnly } from '../app/settings';
import { runTraining } from '../engine/run/run';
import { readJson, type RunConfigFile } from '../engine/run/runFolder';
import type { TrainConfig } from '../engine/run/config';
import { resolveConfig, validateConfig } from '../engine/run/schema';
import { autoPick, formatDeviceReport, probeProviders } from '../engine/runtime/device';
import { UserError } from '../engine/tensor';
import { RunCache } from '../engine/explore/runCache';
import { scoreImages } from '../engine/explore/score';
import { computeAttention } from '../engine/explore/attention';
import { computeSimilarity } from '../engine/explore/similarity';
import { computeEmbeddings } from '../engine/explore/embeddings';
import { makeThumbs } from '../engine/explore/thumbs';
import { isMethod, validateParams } from './validate';
import {
  DETACHED_FLAG,
  ENGINE_COMMAND,
  errorInfo,
  isRequest,
  type NotificationMap,
  type NotificationMethod,
  type ParamsOf,
  PROTOCOL_VERSION,
  ProtocolError,
  type RequestMessage,
  type RequestMethod,
  type ResponseMessage,
  type ResultOf,
  type TrainStartParams,
  type TrainStartResult,
} from '../protocol';

type Handler<M extends RequestMethod> = (p: ParamsOf<M>) => Promise<ResultOf<M>>;

/** The training this engine runs, if any. */
let training: { runDir: string; stop: string | null; done: Promise<unknown> } | null = null;
let shuttingDown = false;
/** `met engine --detached`: the training goes on when the host goes; the engine ends with it. */
let detached = false;
/** Detached, and the host has disconnected: exit once the training has ended. */
let hostGone = false;

/**
 * Sends one message to the host; never throws and never crashes the engine. process.send reports
 * a broken channel (EPIPE when the host died, ERR_IPC_CHANNEL_CLOSED after a disconnect)
 * asynchronously: to its callback, or, without one, as an 'error' event on process, which with no
 * listener is an uncaught exception that would end a training without a checkpoint. So every send
 * has a callback, and a failed send means the host is gone: stop like a disconnect.
 */
function send(msg: ResponseMessage | { method: string; params: unknown }): void {
  // After the host has gone (disconnect), there is nobody to tell; the run folder has it all.
  if (!process.connected || !process.send) return;
  try {
    process.send(msg, undefined, undefined, (e: Error | null) => {
      if (e) lostHost(`the channel to VS Code broke (${(e as NodeJS.ErrnoException).code ?? e.message})`);
    });
  } catch (e) {
    // ERR_IPC_CHANNEL_CLOSED between the check and the send, or a message that cannot be cloned.
    lostHost(`the channel to VS Code broke (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
  }
}

/** Set by engineCommand: stop a training after this step with a checkpoint, then exit. */
let lostHost: (reason: string) => void = () => undefined;

function notify<N extends NotificationMethod>(method: N, params: NotificationMap[N]): void {
  send({ method, params });
}

function log(message: string, level: NotificationMap['log']['level'] = 'info'): void {
  notify('log', { level, message });
}

/** run.ts and the data scanner log plain lines; those starting with 'warning:' are warnings. */
function logLine(m: string): void {
  log(m, /^warning\b/i.test(m) ? 'warn' : 'info');
}

// ---- train/resolve: the application layer's resolveRun, as `met train --dry-run` prints it ----

/** Where the folder and weights picked in the editor sit: over the config file, under the overrides. */
const resolve: Handler<'train/resolve'> = async (p) =>
  resolveRun({
    configFile: p.configFile,
    layers: [
      {
        where: 'the folder and weights picked',
        values: { data: p.data || undefined, weights: p.weights || undefined },
      },
      { where: 'overrides', values: p.overrides ?? {} },
    ],
    workspaceRoot: p.workspaceRoot,
  });

// ---- train/start, train/cancel ----

const trainStart: Handler<'train/start'> = async (p: TrainStartParams): Promise<TrainStartResult> => {
  if (training) throw new UserError(`this engine is already training ${training.runDir}`);
  if (shuttingDown) throw new UserError('the engine is shutting down');
  let c: TrainConfig;
  let resumeDir: string | undefined;
  if (p.resumeDir) {
    resumeDir = path.resolve(p.resumeDir);
    const cf = readJson<RunConfigFile>(path.join(resumeDir, 'config.json'));
    c = { ...cf.train, ...validateConfig(definedOnly(p.resumeOverrides), 'resume settings') };
  } else {
    if (!p.config) throw new UserError('train/start needs config or resumeDir');
    c = resolveConfig(validateConfig(definedOnly(p.config), 'settings'), {});
    if (!c.out)
      throw new UserError('train/start: settings without a run folder (out); resolve them with train/resolve first');
    c.out = path.resolve(c.out);
  }
  const runDir = resumeDir ?? c.out!;
  const t: { runDir: string; stop: string | null; done: Promise<unknown> } = {
    runDir,
    stop: null,
    done: Promise.resolve(),
  };
  training = t;
  log(`${resumeDir ? 'resuming' : 'training'} ${runDir} (pid ${process.pid})`);
  const run = runTraining(
    c,
    {
      log: logLine,
      onEvent: (event) => notify('train/event', { runDir, event }),
      // The host's cancel; a stop.request in the folder (any window, `met stop`) is run.ts's.
      shouldStop: () => t.stop,
      configFile: p.configFile,
      owner: detached ? 'met train (VS Code)' : 'met train',
      onClaimed: (dir) => notify('train/started', { runDir: dir, resumed: !!resumeDir, config: c, pid: process.pid }),
    },
    resumeDir,
  );
  t.done = run.catch(() => undefined);
  try {
    const summary = await run;
    log(summary.stopped ? `stopped: ${summary.stopped}; ${runDir} can be resumed` : `finished ${runDir}`);
    return { runDir, stopped: summary.stopped, summary };
  } finally {
    training = null;
    // A detached engine trains once: with the host gone (as it is once the run was claimed),
    // nobody is left to ask it anything.
    if (detached && hostGone) setImmediate(() => resolveExit(0));
  }
};

const trainCancel: Handler<'train/cancel'> = async (p) => {
  if (!training) return { wasRunning: false };
  training.stop ??= p.reason ?? 'cancelled in VS Code';
  log(`cancel requested (${training.stop}): stopping after this step with a checkpoint`);
  return { wasRunning: true };
};

// ---- the rest ----

const gpuCheck: Handler<'gpu/check'> = async (p) => {
  const statuses = await probeProviders({ refresh: p.refresh });
  return { statuses, auto: autoPick(statuses), report: formatDeviceReport(statuses) };
};

const paramsCompute: Handler<'params/compute'> = async (p) =>
  computeParams({
    config: p.configFile,
    settings: definedOnly(p.settings) as Record<string, unknown>,
    backbone: p.backbone,
    classes: p.classes,
    ignoreWorkspaceConfig: p.ignoreWorkspaceConfig,
    configText: p.configText,
  });

// ---- exploration panels (issue 5) ----

/**
 * Runs loaded for the panels, kept between requests (the Inspect exits grid scores a screenful
 * at a time as the user scrolls) and reloaded when their files change. CPU, like `met predict`'s
 * default, so the panels show exactly the numbers the CLI prints.
 */
const runs = new RunCache();

const inspectScore: Handler<'inspect/score'> = async (p) => scoreImages(runs, p);

const inspectThumbs: Handler<'inspect/thumbs'> = async (p) => makeThumbs(p);

const inspectAttention: Handler<'inspect/attention'> = async (p) => computeAttention(runs, p);

const similarityCompute: Handler<'similarity/compute'> = async (p) => computeSimilarity(runs, p);

const embeddingsCompute: Handler<'embeddings/compute'> = async (p) => computeEmbeddings(runs, p);

let resolveExit: (code: number) => void = () => undefined;

const shutdown: Handler<'engine/shutdown'> = async () => {
  shuttingDown = true;
  if (training) {
    training.stop ??= 'the engine was asked to shut down';
    await training.done;
  }
  await runs.clear();
  // Answer first, then let the process end once the answer is written.
  setImmediate(() => resolveExit(0));
  return { ok: true };
};

// A null-prototype table: 'toString', 'constructor' or '__proto__' is no method (isMethod checks
// own keys of the validators' table as well).
const HANDLERS: { [M in RequestMethod]: Handler<M> } = Object.assign(Object.create(null) as object, {
  'train/resolve': resolve,
  'train/start': trainStart,
  'train/cancel': trainCancel,
  'gpu/check': gpuCheck,
  'params/compute': paramsCompute,
  'inspect/score': inspectScore,
  'inspect/thumbs': inspectThumbs,
  'inspect/attention': inspectAttention,
  'similarity/compute': similarityCompute,
  'embeddings/compute': embeddingsCompute,
  'engine/shutdown': shutdown,
} satisfies { [M in RequestMethod]: Handler<M> });

async function dispatch(m: RequestMessage): Promise<void> {
  if (!isMethod(m.method) || !Object.prototype.hasOwnProperty.call(HANDLERS, m.method)) {
    const e = new ProtocolError('method-unknown', `unknown method '${String(m.method)}'`);
    send({ id: m.id, error: errorInfo(e) });
    return;
  }
  const h = HANDLERS[m.method] as Handler<RequestMethod>;
  try {
    validateParams(m.method, m.params);
    const result = await h((m.params ?? {}) as never);
    send({ id: m.id, result });
  } catch (e) {
    // UserErrors (bad folder, bad config...) go back as they are; anything else carries its
    // stack, which the host writes to the log.
    if (!(e instanceof UserError) && !(e instanceof ProtocolError))
      process.stderr.write(`engine: ${m.method} failed: ${e instanceof Error ? e.stack : String(e)}\n`);
    send({ id: m.id, error: errorInfo(e) });
  }
}

export async function engineCommand(argv: string[]): Promise<number> {
  detached = argv.length === 1 && argv[0] === DETACHED_FLAG;
  if (argv.length && !detached)
    throw new UserError(
      `met ${ENGINE_COMMAND}: takes no arguments but ${DETACHED_FLAG} (the VS Code extension's training process)`,
    );
  if (!process.send) {
    throw new UserError(
      `met ${ENGINE_COMMAND} is the engine process of the VS Code extension and only runs forked with an IPC channel; use 'met train' on the command line`,
    );
  }
  // A bug must not leave the extension waiting on a half-dead process: log it where the host
  // reads it (stderr and a log notification) and exit non-zero; the host rejects what is pending.
  const die = (what: string, e: unknown) => {
    const text = e instanceof Error ? (e.stack ?? e.message) : String(e);
    process.stderr.write(`engine: ${what}: ${text}\n`);
    log(`engine ${what}: ${e instanceof Error ? e.message : String(e)}`, 'error');
    process.exit(1);
  };
  process.on('uncaughtException', (e) => die('uncaught exception', e));
  process.on('unhandledRejection', (e) => die('unhandled rejection', e));

  const exited = new Promise<number>((r) => (resolveExit = r));
  process.on('message', (m: unknown) => {
    if (isRequest(m)) void dispatch(m);
    else process.stderr.write(`engine: ignored a message that is not a request: ${JSON.stringify(m).slice(0, 200)}\n`);
  });
  // The extension host went away (window closed, crash, a failed send) or the process was asked
  // to end (SIGTERM, SIGHUP when its terminal closed, SIGINT): stop a training after the current
  // step with a checkpoint, so the run can be resumed, then leave. A second signal quits at once
  // (the last checkpoint stays; its write is atomic).
  let stopping = false;
  const stopWithCheckpoint = (reason: string) => {
    if (stopping) return;
    stopping = true;
    shuttingDown = true;
    if (!training) return resolveExit(0);
    training.stop ??= reason;
    process.stderr.write(`engine: ${reason}: stopping ${training.runDir} after this step with a checkpoint\n`);
    void training.done.then(() => resolveExit(0));
  };
  // A detached training outlives its host: the window that started it disconnects as soon as
  // the run folder is claimed, and any window follows it from the folder. Only a signal (or a
  // stop.request) stops it.
  lostHost = (reason) => {
    if (!detached) return stopWithCheckpoint(reason);
    if (hostGone) return;
    hostGone = true;
    if (!training) return resolveExit(0);
    process.stderr.write(`engine: ${reason}; ${training.runDir} goes on training (detached)\n`);
  };
  // The host reads stdout and stderr through pipes that die with it: a write after that fails
  // with EPIPE as an 'error' event, which must not end the training before its checkpoint.
  process.stdout.on('error', () => undefined);
  process.stderr.on('error', () => undefined);
  // Without a listener a late send error would be an uncaught exception.
  process.on('error', (e) =>
    lostHost(`the channel to VS Code broke (${(e as NodeJS.ErrnoException).code ?? e.message})`),
  );
  process.on('disconnect', () => lostHost('VS Code closed the engine'));
  for (const sig of ['SIGTERM', 'SIGHUP', 'SIGINT'] as const)
    process.on(sig, () => {
      if (stopping && training) {
        process.stderr.write(`engine: ${sig} again: quitting at once\n`);
        process.exit(130);
      }
      stopWithCheckpoint(`${sig} received`);
    });
  notify('ready', {
    protocol: PROTOCOL_VERSION,
    pid: process.pid,
    node: process.version,
    versions: { onnxruntime: ortVersion() },
  });
  const code = await exited;
  if (process.connected) process.disconnect();
  return code;
}

function ortVersion(): string | null {
  try {
    return ort.env.versions.node ?? ort.env.versions.common ?? null;
  } catch {
    return null;
  }
}
