// `met engine`: the engine process of the VS Code extension. Hidden from `met --help`: the
// extension forks dist/cli.js with this command and speaks src/protocol.ts over Node IPC, so
// training, GPU probing and parameter counting never run on the extension host thread, and a
// crash in a native library takes down this process only.
//
// One engine trains one run at a time (the extension forks one engine per training, so that
// cancelling or killing one never touches another). Requests that are not training (gpu/check,
// params/compute, the exploration panels' inspect/* and similarity/compute) are answered while a
// training runs: the trainer yields to the event loop between steps (onnxruntime-node runs
// sessions from setImmediate), which is also when a 'train/cancel' arrives.

import * as fs from 'node:fs';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import {
  ENGINE_COMMAND,
  errorInfo,
  isRequest,
  type NotificationMap,
  type NotificationMethod,
  type ParamsOf,
  PROTOCOL_VERSION,
  type RequestMessage,
  type RequestMethod,
  type ResolveParams,
  type ResolveResult,
  type ResponseMessage,
  type ResultOf,
  type TrainStartParams,
  type TrainStartResult,
} from '../protocol';
import { scanDataset } from '../engine/data/folder';
import { branchDims, validateBranches } from '../engine/model/branches';
import type { VitConfig } from '../engine/model/config';
import { defaultExits, validateMetConfig } from '../engine/model/met';
import { metConfigOf, type TrainConfig } from '../engine/run/config';
import { runTraining } from '../engine/run/run';
import { readJson, type RunConfigFile } from '../engine/run/runFolder';
import { resolveConfig, validateConfig } from '../engine/run/schema';
import { autoPick, formatDeviceReport, probeProviders } from '../engine/runtime/device';
import { UserError } from '../engine/tensor';
import { loadBackbone } from '../engine/weights';
import { RunCache } from '../engine/explore/runCache';
import { scoreImages } from '../engine/explore/score';
import { computeSimilarity } from '../engine/explore/similarity';
import { makeThumbs } from '../engine/explore/thumbs';
import { computeParams } from './params';
import { loadConfigFile } from './train';

type Handler<M extends RequestMethod> = (p: ParamsOf<M>) => Promise<ResultOf<M>>;

/** The training this engine runs, if any. */
let training: { runDir: string; stop: string | null; done: Promise<unknown> } | null = null;
let shuttingDown = false;

function send(msg: ResponseMessage | { method: string; params: unknown }): void {
  // After the host has gone (disconnect), there is nobody to tell; the run folder has it all.
  if (!process.connected || !process.send) return;
  try {
    process.send(msg);
  } catch {
    // ERR_IPC_CHANNEL_CLOSED between the check and the send: same as above.
  }
}

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

/**
 * Settings as they come over IPC: structured clone keeps keys whose value is undefined (an
 * unset optional field on the host), which the config validator would reject as wrong types.
 */
function defined<T extends object>(o: T | undefined): Partial<T> {
  return Object.fromEntries(Object.entries(o ?? {}).filter(([, v]) => v !== undefined)) as Partial<T>;
}

// ---- train/resolve ----

function stamp(d = new Date()): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}-${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}`;
}

/** `.met/runs/<time>-<variant>` like `met train`, with a suffix if two runs start in the same second. */
function newRunDir(root: string, variant: string): string {
  const base = path.join(root, '.met', 'runs', `${stamp()}-${variant}`);
  let dir = base;
  for (let i = 2; fs.existsSync(dir); i++) dir = `${base}-${i}`;
  return dir;
}

/**
 * The head count of a backbone whose width is not a standard ViT's cannot be read off its
 * tensors. A config.json next to the weights often says it: the project's own format
 * (assets/tiny-vit/config.json: {"config": {"heads": 4}}) or Hugging Face's (num_attention_heads).
 */
function headsBesideWeights(weights: string): { heads: number; file: string } | null {
  const file = path.join(path.dirname(weights), 'config.json');
  try {
    const j = JSON.parse(fs.readFileSync(file, 'utf8')) as {
      config?: { heads?: unknown };
      num_attention_heads?: unknown;
    };
    const h = j.config?.heads ?? j.num_attention_heads;
    return Number.isInteger(h) && (h as number) > 0 ? { heads: h as number, file } : null;
  } catch {
    return null;
  }
}

const resolve: Handler<'train/resolve'> = async (p: ResolveParams): Promise<ResolveResult> => {
  const notes: string[] = [];
  const file = p.configFile ? loadConfigFile(p.configFile) : {};
  if (p.configFile) notes.push(`settings start from ${p.configFile}`);
  // What the user picked in the editor wins over the file; explicit overrides win over both.
  const picked: Record<string, unknown> = {};
  if (p.data) picked.data = p.data;
  if (p.weights) picked.weights = p.weights;
  const merged = {
    ...file,
    ...validateConfig(picked, 'the folder and weights picked'),
    ...validateConfig(defined(p.overrides), 'overrides'),
  };
  if (merged.heads === undefined && merged.weights) {
    const h = headsBesideWeights(merged.weights);
    if (h) {
      merged.heads = h.heads;
      const rel = path.relative(p.workspaceRoot, h.file);
      notes.push(`heads ${h.heads} from ${rel.startsWith('..') || path.isAbsolute(rel) ? h.file : rel}`);
    }
  }
  const c = resolveConfig(merged, {});
  for (const k of ['data', 'weights'] as const) c[k] = path.resolve(p.workspaceRoot, c[k]);
  const overrides: Partial<VitConfig> = {};
  if (c.imageSize) overrides.imageSize = c.imageSize;
  if (c.heads) overrides.heads = c.heads;
  if (c.backboneAct) overrides.act = c.backboneAct;
  const bb = loadBackbone(c.weights, { layout: c.layout, overrides });
  const vit = bb.config;
  const ds = await scanDataset({ root: c.data, split: c.split, seed: c.seed });
  notes.push(...ds.warnings.map((w) => `warning: ${w}`));
  const exits = c.exits ?? defaultExits(vit.depth);
  try {
    validateMetConfig(metConfigOf(c, exits, ds.classes.length), vit.depth);
  } catch (e) {
    throw new UserError(`exits: ${(e as Error).message}`);
  }
  try {
    validateBranches(branchDims(vit), c, exits.length);
  } catch (e) {
    throw new UserError((e as Error).message);
  }
  c.out = c.out ? path.resolve(p.workspaceRoot, c.out) : newRunDir(p.workspaceRoot, c.variant);
  return {
    config: c,
    exits,
    backbone: {
      file: c.weights,
      layout: bb.layout,
      depth: vit.depth,
      dim: vit.dim,
      heads: vit.heads,
      imageSize: vit.imageSize,
      channels: vit.channels,
    },
    classes: ds.classes,
    counts: { train: ds.train.length, val: ds.val.length, test: ds.test.length },
    notes,
  };
};

// ---- train/start, train/cancel ----

const trainStart: Handler<'train/start'> = async (p: TrainStartParams): Promise<TrainStartResult> => {
  if (training) throw new UserError(`this engine is already training ${training.runDir}`);
  if (shuttingDown) throw new UserError('the engine is shutting down');
  let c: TrainConfig;
  let resumeDir: string | undefined;
  if (p.resumeDir) {
    resumeDir = path.resolve(p.resumeDir);
    const cf = readJson<RunConfigFile>(path.join(resumeDir, 'config.json'));
    c = { ...cf.train, ...validateConfig(defined(p.resumeOverrides), 'resume settings') };
  } else {
    if (!p.config) throw new UserError('train/start needs config or resumeDir');
    c = resolveConfig(validateConfig(defined(p.config), 'settings'), {});
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
  notify('train/started', { runDir, resumed: !!resumeDir, config: c });
  log(`${resumeDir ? 'resuming' : 'training'} ${runDir} (pid ${process.pid})`);
  const run = runTraining(
    c,
    {
      log: logLine,
      onEvent: (event) => notify('train/event', { runDir, event }),
      shouldStop: () => t.stop,
      configFile: p.configFile,
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
    settings: defined(p.settings) as Record<string, unknown>,
    backbone: p.backbone,
    classes: p.classes,
    ignoreWorkspaceConfig: p.ignoreWorkspaceConfig,
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

const similarityCompute: Handler<'similarity/compute'> = async (p) => computeSimilarity(runs, p);

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

const HANDLERS: { [M in RequestMethod]: Handler<M> } = {
  'train/resolve': resolve,
  'train/start': trainStart,
  'train/cancel': trainCancel,
  'gpu/check': gpuCheck,
  'params/compute': paramsCompute,
  'inspect/score': inspectScore,
  'inspect/thumbs': inspectThumbs,
  'similarity/compute': similarityCompute,
  'engine/shutdown': shutdown,
};

async function dispatch(m: RequestMessage): Promise<void> {
  const h = HANDLERS[m.method] as Handler<RequestMethod> | undefined;
  if (!h) {
    send({ id: m.id, error: { name: 'Error', message: `unknown method '${String(m.method)}'` } });
    return;
  }
  try {
    const result = await h(m.params);
    send({ id: m.id, result });
  } catch (e) {
    // UserErrors (bad folder, bad config...) go back as they are; anything else carries its
    // stack, which the host writes to the log.
    if (!(e instanceof UserError))
      process.stderr.write(`engine: ${m.method} failed: ${e instanceof Error ? e.stack : String(e)}\n`);
    send({ id: m.id, error: errorInfo(e) });
  }
}

export async function engineCommand(argv: string[]): Promise<number> {
  if (argv.length) throw new UserError(`met ${ENGINE_COMMAND}: takes no arguments`);
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
  // The extension host went away (window closed, crash): stop a training with a checkpoint, so
  // the run can be resumed, then leave. Nobody is listening any more.
  process.on('disconnect', () => {
    shuttingDown = true;
    if (!training) return resolveExit(0);
    training.stop ??= 'VS Code closed the engine';
    void training.done.then(() => resolveExit(0));
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
