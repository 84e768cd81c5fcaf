// The palette commands: Fine-tune on folder, Cancel training, Open run, Create config, Check GPU.
//
// Fine-tune is a keyboard-only flow: at every step the first item is the sensible default and
// Enter accepts it (folder -> weights -> confirm -> start). It also takes arguments, so tests and
// other parts of the extension (the CodeLens, the runs view) can start a run without any UI:
//   executeCommand('met.fineTune', { folder, weights, overrides, confirm: false })
//   executeCommand('met.fineTune', { resume: runDir })
// All ML work goes to the engine processes (engineClient.ts); here is only UI and file lookups.

import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { CONFIG_FILE_NAME, configFilePaths, findConfigFile } from '../app/configFile';
import { findDatasets } from '../app/dataset';
import { PROVIDER_LABELS } from '../engine/settings';
import type { TrainConfig } from '../engine/run/config';
import type { GpuCheckResult, ResolveResult } from '../protocol';
import { configTemplate } from './configTemplate';
import {
  describeExit,
  EngineExitedError,
  EngineRequestError,
  type Engines,
  type Training,
  type TrainingOutcome,
} from './engineClient';
import { log, recordMessage, showErrorWithLog, showLog } from './log';
import { askWhenClosed } from './reattach';
import { type AblationArgs, type AblationUi, runAblation } from './ablate';
import { getRunIndex } from './runIndex';
import { writeFileAtomicAsync } from '../engine/io/atomic';
import { describeLock, heldByTraining } from '../engine/run/lock';
import { readLock, requestStop } from '../engine/run/runFolder';

export interface FineTuneArgs {
  /** Image folder with class sub-folders. */
  folder?: string | vscode.Uri;
  /** Backbone checkpoint. */
  weights?: string | vscode.Uri;
  /** met.config.json to start from (default: one in the folder, else in its workspace root). */
  configFile?: string | vscode.Uri;
  /** Same as configFile (the CodeLens passes { config: uri }). */
  config?: string | vscode.Uri;
  /** Settings that win over the config file. */
  overrides?: Partial<TrainConfig>;
  /** false: no pickers and no confirmation (folder and weights must be given or in the config). */
  confirm?: boolean;
  /** Resume this run folder from its checkpoint instead of starting a new run. */
  resume?: string | vscode.Uri;
  /** false: return as soon as the training has started, not when it has finished. */
  wait?: boolean;
  /** Start even if another training runs, without asking. */
  allowConcurrent?: boolean;
}

/** What met.fineTune returns (plain data: it may cross into other extension hosts). */
export interface FineTuneResult {
  runDir: string;
  status: 'started' | TrainingOutcome['status'];
  pid?: number;
  stopped?: string | null;
  error?: string;
  /** Test accuracy per exit of a finished run. */
  accuracy?: number[];
}

export const TINY_VIT = path.join('assets', 'tiny-vit', 'tiny-vit.safetensors');
const WEIGHT_GLOB = '**/*.{safetensors,pt,pth,npz}';
const IGNORE_GLOB = '{**/node_modules/**,**/.met/**,**/.git/**,**/.vscode-host/**,**/.vscode-test/**}';
const LAST_WEIGHTS_KEY = 'met.lastWeights';

const fsPathOf = (x: string | vscode.Uri | undefined): string | undefined =>
  x === undefined ? undefined : typeof x === 'string' ? x : x.fsPath;
const rel = (p: string) =>
  vscode.workspace.asRelativePath(
    p,
    vscode.workspace.workspaceFolders !== undefined && vscode.workspace.workspaceFolders.length > 1,
  );

function exists(p: string): Promise<boolean> {
  return fs.promises.access(p).then(
    () => true,
    () => false,
  );
}

function workspaceRootOf(p: string): string {
  return (
    vscode.workspace.getWorkspaceFolder(vscode.Uri.file(p))?.uri.fsPath ??
    vscode.workspace.workspaceFolders?.[0]?.uri.fsPath ??
    path.dirname(p)
  );
}

/** met.config.json in the folder, else in its workspace root (app/configFile.ts findConfigFile). */
function configFor(folder: string): string | undefined {
  return findConfigFile(undefined, [folder, workspaceRootOf(folder)]);
}

// ---- Pickers ----

type Pick<T> = vscode.QuickPickItem & { value?: T; browse?: boolean };

async function pickFolder(): Promise<string | undefined> {
  const roots = (vscode.workspace.workspaceFolders ?? []).map((f) => f.uri.fsPath);
  const found = await findDatasets(roots);
  const items: Pick<string>[] = found.map((c) => ({
    label: `$(folder) ${rel(c.dir)}`,
    description: `${c.classes.length} classes, ${c.images}${c.layout === 'split-folders' ? ' training' : ''} images`,
    detail: c.classes.slice(0, 8).join(', ') + (c.classes.length > 8 ? ', …' : ''),
    value: c.dir,
  }));
  items.push({
    label: '$(folder-opened) Browse…',
    description: 'a folder with one sub-folder of images per class',
    browse: true,
  });
  const pick = await vscode.window.showQuickPick(items, {
    title: 'MET: Fine-tune (1/3) — image folder',
    placeHolder: found.length
      ? 'Folder with one sub-folder per class (Enter: the first)'
      : 'No image folder with class sub-folders found in the workspace: browse for one',
    ignoreFocusOut: true,
    matchOnDescription: true,
  });
  if (!pick) return undefined;
  if (!pick.browse) return pick.value;
  const uri = await vscode.window.showOpenDialog({
    canSelectFolders: true,
    canSelectFiles: false,
    canSelectMany: false,
    openLabel: 'Fine-tune on this folder',
    defaultUri: vscode.workspace.workspaceFolders?.[0]?.uri,
  });
  return uri?.[0]?.fsPath;
}

async function pickWeights(
  context: vscode.ExtensionContext,
  fromConfig: string | undefined,
  configFile: string | undefined,
): Promise<string | undefined> {
  const tiny = path.join(context.extensionPath, TINY_VIT);
  const items: Pick<string>[] = [];
  const seen = new Set<string>();
  const add = (p: Pick<string>) => {
    if (!p.value || seen.has(path.resolve(p.value))) return;
    seen.add(path.resolve(p.value));
    items.push(p);
  };
  if (fromConfig)
    add({
      label: `$(settings-gear) ${path.basename(fromConfig)}`,
      description: `from ${rel(configFile!)}`,
      detail: fromConfig,
      value: fromConfig,
    });
  const last = context.workspaceState.get<string>(LAST_WEIGHTS_KEY);
  if (last && (await exists(last)))
    add({
      label: `$(history) ${path.basename(last)}`,
      description: 'used last time',
      detail: last === tiny ? 'bundled demo backbone' : rel(last),
      value: last,
    });
  const files = await vscode.workspace.findFiles(WEIGHT_GLOB, IGNORE_GLOB, 200);
  for (const f of files.sort((a, b) => a.fsPath.localeCompare(b.fsPath))) {
    if (path.resolve(f.fsPath) === path.resolve(tiny)) continue; // listed below as what it is
    add({
      label: `$(file-binary) ${path.basename(f.fsPath)}`,
      description: rel(path.dirname(f.fsPath)),
      value: f.fsPath,
    });
  }
  add({
    label: '$(beaker) Tiny ViT (bundled demo backbone)',
    description: '6 layers, width 64, 32 px, pretrained on synthetic shapes',
    detail: 'For trying MET in a minute. Not a backbone for real photos: pick a pretrained ViT checkpoint for that.',
    value: tiny,
  });
  items.push({ label: '$(file-directory) Browse…', description: '.safetensors, .pth/.pt/.bin or .npz', browse: true });
  const pick = await vscode.window.showQuickPick(items, {
    title: 'MET: Fine-tune (2/3) — backbone weights',
    placeHolder: 'ViT checkpoint to fine-tune (Enter: the first)',
    ignoreFocusOut: true,
    matchOnDescription: true,
  });
  if (!pick) return undefined;
  if (!pick.browse) return pick.value;
  const uri = await vscode.window.showOpenDialog({
    canSelectFiles: true,
    canSelectMany: false,
    openLabel: 'Use these weights',
    filters: { 'ViT checkpoints': ['safetensors', 'pth', 'pt', 'bin', 'npz'], 'All files': ['*'] },
  });
  return uri?.[0]?.fsPath;
}

/** The head count of a checkpoint whose width (from the engine's 'heads-unknown' error) does not imply it. */
async function askHeads(width: number | undefined): Promise<number | undefined> {
  const v = await vscode.window.showInputBox({
    title: 'MET: attention heads of this backbone',
    prompt: `The checkpoint does not record its head count${width ? ` and ${width} is not a standard ViT width` : ''}. How many attention heads does it have?`,
    placeHolder: 'from the model card or its config; standard ViTs have heads of width 64 (ViT-B: 768 / 12)',
    ignoreFocusOut: true,
    validateInput: (s) => {
      const n = Number(s);
      if (!Number.isInteger(n) || n < 1) return 'a positive whole number';
      return width && width % n ? `${width} is not divisible by ${n}` : undefined;
    },
  });
  return v ? Number(v) : undefined;
}

function settingsRows(r: ResolveResult): [string, string][] {
  const c = r.config;
  return [
    ['exits', `after layers ${r.exits.join(', ')} of ${r.backbone.depth}`],
    ['rank', String(c.rank)],
    ['lambda', String(c.lambda)],
    ['epochs', String(c.epochs)],
    ['batch', String(c.batch)],
    ['device', c.device + (c.threads ? `, ${c.threads} threads` : '')],
    ['run folder', rel(c.out!)],
    [
      'data',
      `${rel(c.data)}: ${r.classes.length} classes, ${r.counts.train} train / ${r.counts.val} val / ${r.counts.test} test images`,
    ],
    [
      'backbone',
      `${rel(r.backbone.file)} (${r.backbone.layout}, ${r.backbone.depth} layers, width ${r.backbone.dim}, ${r.backbone.heads} heads, ${r.backbone.imageSize} px)`,
    ],
  ];
}

type ConfirmChoice = 'start' | 'edit' | undefined;

async function confirmSettings(r: ResolveResult): Promise<ConfirmChoice> {
  const rows = settingsRows(r);
  const short = rows
    .slice(0, 7)
    .map(([k, v]) => `${k} ${v}`)
    .join(' · ');
  const items: Pick<ConfirmChoice>[] = [
    {
      label: '$(play) Start fine-tuning',
      description: `${r.classes.length} classes, ${r.counts.train} training images`,
      detail: short,
      value: 'start',
    },
    { label: 'Settings', kind: vscode.QuickPickItemKind.Separator },
    ...rows.map(([k, v]) => ({ label: k, description: v, value: 'edit' as const })),
    ...r.notes.map((n) => ({ label: '$(info) note', description: n, value: 'edit' as const })),
    { label: '', kind: vscode.QuickPickItemKind.Separator },
    { label: '$(edit) Edit settings in met.config.json…', value: 'edit' },
  ];
  const pick = await vscode.window.showQuickPick(items, {
    title: 'MET: Fine-tune (3/3) — start with these settings?',
    placeHolder: 'Enter starts; pick a setting to edit it in met.config.json',
    ignoreFocusOut: true,
    matchOnDescription: true,
  });
  return pick?.value;
}

/** Opens the config the run would use, creating one with the picked folder and weights if there is none. */
async function editConfig(configFile: string | undefined, r: ResolveResult): Promise<void> {
  let file = configFile;
  if (!file) {
    file = path.join(workspaceRootOf(r.config.data), CONFIG_FILE_NAME);
    const dir = path.dirname(file);
    const relTo = (p: string) => path.relative(dir, p).split(path.sep).join('/') || '.';
    await writeFileAtomicAsync(
      file,
      configTemplate({
        data: relTo(r.config.data),
        weights: relTo(r.config.weights),
        values: r.config.heads ? { heads: r.config.heads } : {},
      }),
    );
  }
  await vscode.window.showTextDocument(vscode.Uri.file(file));
}

// ---- Reporting ----

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Shows what the engine said about a failed request; stack traces go to the log. */
async function showRequestError(what: string, e: unknown): Promise<void> {
  if (e instanceof EngineRequestError && !e.isUserError && e.info.stack) log().error(e.info.stack);
  if (e instanceof EngineRequestError && e.isUserError)
    void vscode.window.showErrorMessage(`MET: ${what}: ${e.message}`, 'Show log').then((p) => p && showLog());
  else void showErrorWithLog(`MET: ${what}: ${errorText(e)}`);
}

async function hasCheckpoint(runDir: string): Promise<boolean> {
  return exists(path.join(runDir, 'checkpoint.safetensors'));
}

/** The notification while the engine starts, reads the data and compiles (until the first step). */
function showStartProgress(t: Training): void {
  void vscode.window.withProgress(
    {
      location: vscode.ProgressLocation.Notification,
      title: `MET: fine-tuning ${path.basename(t.runDir)}`,
      cancellable: true,
    },
    async (progress, token) => {
      progress.report({ message: 'starting the engine…' });
      const subs = [
        token.onCancellationRequested(() => void t.cancel('cancelled while starting')),
        t.onMessage((m) => progress.report({ message: m.length > 120 ? `${m.slice(0, 117)}…` : m })),
      ];
      void t.ready.then(
        () => progress.report({ message: 'loading the backbone and the images…' }),
        () => undefined,
      );
      await Promise.race([t.firstStep, t.finished]);
      subs.forEach((d) => d.dispose());
    },
  );
}

async function reportOutcome(o: TrainingOutcome, t: Training): Promise<void> {
  const name = path.basename(o.runDir);
  if (o.status === 'done') {
    const exits = o.result?.summary.exits ?? [];
    const last = exits[exits.length - 1];
    const acc =
      last && Number.isFinite(last.accuracy) ? `: last exit ${(100 * last.accuracy).toFixed(1)}% test accuracy` : '';
    recordMessage('info', `MET: ${name} finished${acc}.`);
    const pick = await vscode.window.showInformationMessage(`MET: ${name} finished${acc}.`, 'Open dashboard');
    if (pick) await vscode.commands.executeCommand('met.openRun', o.runDir);
    return;
  }
  const resumable = await hasCheckpoint(o.runDir);
  const actions = resumable ? ['Resume'] : [];
  let message: string;
  if (o.status === 'stopped')
    message = `MET: ${name} stopped (${t.state.error ?? 'cancelled'}).${resumable ? ' Resume continues from its checkpoint.' : ''}`;
  else if (o.error instanceof EngineExitedError)
    message = `MET: the engine process training ${name} ${describeExit(o.error.code, o.error.signal)}.${resumable ? ' The run can be resumed from its last checkpoint.' : ''}`;
  else message = `MET: fine-tuning ${name} failed: ${errorText(o.error)}`;
  if (o.error instanceof EngineRequestError && o.error.info.stack && !o.error.isUserError)
    log().error(o.error.info.stack);
  if (o.status === 'stopped') recordMessage('info', message);
  const pick =
    o.status === 'stopped'
      ? await vscode.window.showInformationMessage(message, ...actions)
      : await showErrorWithLog(message, ...actions);
  if (pick === 'Resume') await vscode.commands.executeCommand('met.fineTune', { resume: o.runDir });
}

function toResult(o: TrainingOutcome): FineTuneResult {
  return {
    runDir: o.runDir,
    status: o.status,
    stopped: o.result?.stopped ?? null,
    error: o.error ? errorText(o.error) : undefined,
    accuracy: o.result?.summary.exits.map((e) => e.accuracy),
  };
}

// ---- Commands ----

export const RESTRICTED_MESSAGE =
  'MET: fine-tuning is disabled in Restricted Mode. It reads checkpoints and images from this workspace and runs the training engine on them; trust the workspace to enable it.';

function trustRefusal(): void {
  recordMessage('error', RESTRICTED_MESSAGE);
  void vscode.window
    .showErrorMessage(RESTRICTED_MESSAGE, 'Manage Workspace Trust')
    .then((p) => p && vscode.commands.executeCommand('workbench.trust.manage'));
}

/** One training at a time per window unless the user says otherwise. */
async function mayStartAnother(engines: Engines, args: FineTuneArgs): Promise<boolean> {
  const running = engines.active();
  if (!running.length || args.allowConcurrent) return true;
  const names = running.map((t) => path.basename(t.runDir)).join(', ');
  const go = await vscode.window.showWarningMessage(
    `MET: ${names} is still training. Start another training at the same time?`,
    { modal: true, detail: 'Both share the CPU (or GPU) and each will run slower.' },
    'Start another',
  );
  return go === 'Start another';
}

export async function fineTune(
  context: vscode.ExtensionContext,
  engines: Engines,
  args: FineTuneArgs = {},
): Promise<FineTuneResult | undefined> {
  if (!vscode.workspace.isTrusted) {
    trustRefusal();
    return undefined;
  }
  const ui = args.confirm !== false;
  const resumeDir = fsPathOf(args.resume);
  if (resumeDir) {
    if (!(await hasCheckpoint(resumeDir))) {
      void vscode.window.showErrorMessage(`MET: ${rel(resumeDir)} has no checkpoint to resume from.`);
      return undefined;
    }
    if (engines.training(resumeDir)?.active) {
      void vscode.window.showInformationMessage(`MET: ${path.basename(resumeDir)} is already training.`);
      return undefined;
    }
    if (!(await mayStartAnother(engines, args))) return undefined;
    return start(context, engines, { resumeDir, resumeOverrides: args.overrides }, resumeDir, args);
  }

  let configFile = fsPathOf(args.configFile ?? args.config);
  const explicitConfig = !!configFile;
  let peek = configFile ? await configFilePaths(configFile) : {};
  let folder = fsPathOf(args.folder);
  if (!folder && !(explicitConfig && peek.data)) {
    if (!ui) {
      void vscode.window.showErrorMessage('MET: met.fineTune needs a folder (or a config file that names one).');
      return undefined;
    }
    folder = await pickFolder();
    if (!folder) return undefined;
  }
  if (!configFile && folder) {
    configFile = configFor(folder);
    if (configFile) peek = await configFilePaths(configFile);
  }
  let weights = fsPathOf(args.weights);
  if (!weights && !(explicitConfig && peek.weights)) {
    if (ui) {
      weights = await pickWeights(context, peek.weights, configFile);
      if (!weights) return undefined;
    } else if (!peek.weights) {
      void vscode.window.showErrorMessage('MET: met.fineTune needs weights (or a config file that names them).');
      return undefined;
    }
  }

  let r: ResolveResult;
  const params = {
    data: folder,
    weights,
    configFile,
    overrides: args.overrides,
    workspaceRoot: workspaceRootOf(folder ?? configFile!),
  };
  for (;;) {
    try {
      r = await vscode.window.withProgress(
        { location: vscode.ProgressLocation.Window, title: 'MET: reading the backbone and the image folder…' },
        () => engines.request('train/resolve', params),
      );
      break;
    } catch (e) {
      // A checkpoint of a non-standard width does not say its head count: ask, rather than
      // send the user off to write a config file for one number.
      const heads =
        ui && e instanceof EngineRequestError && e.code === 'heads-unknown' && !params.overrides?.heads
          ? await askHeads(e.info.details?.width)
          : undefined;
      if (heads) {
        params.overrides = { ...params.overrides, heads };
        continue;
      }
      await showRequestError('cannot fine-tune with these settings', e);
      return undefined;
    }
  }
  for (const n of r.notes) log().info(`fine-tune ${path.basename(r.config.out!)}: ${n}`);
  if (ui) {
    const choice = await confirmSettings(r);
    if (choice === 'edit') await editConfig(configFile, r);
    if (choice !== 'start') return undefined;
  }
  if (!(await mayStartAnother(engines, args))) return undefined;
  if (weights) await context.workspaceState.update(LAST_WEIGHTS_KEY, weights);
  return start(context, engines, { config: r.config, configFile }, r.config.out!, args);
}

async function start(
  context: vscode.ExtensionContext,
  engines: Engines,
  params: Parameters<Engines['startTraining']>[0],
  runDir: string,
  args: FineTuneArgs,
): Promise<FineTuneResult> {
  const t = engines.startTraining(params, runDir);
  log().info(`${params.resumeDir ? 'resuming' : 'fine-tuning'} ${runDir}`);
  showStartProgress(t);
  void askWhenClosed(context, t);
  const finished = t.finished.then(async (o) => {
    void reportOutcome(o, t);
    return o;
  });
  if (args.wait === false) {
    await t.ready.catch(() => undefined);
    return { runDir, status: 'started', pid: t.pid };
  }
  return toResult(await finished);
}

export async function cancelTraining(engines: Engines, runDir?: string | vscode.Uri): Promise<string[]> {
  const running = engines.active();
  const dir = fsPathOf(runDir);
  let chosen: Training[];
  if (dir) chosen = running.filter((t) => path.resolve(t.runDir) === path.resolve(dir));
  else if (running.length <= 1) chosen = running;
  else {
    const pick = await vscode.window.showQuickPick(
      [
        { label: 'All trainings', value: running },
        ...running.map((t) => ({ label: path.basename(t.runDir), description: t.status, value: [t] })),
      ],
      { title: 'MET: Cancel which training?' },
    );
    chosen = pick?.value ?? [];
  }
  if (!chosen.length && dir) {
    // Not followed by this window: a `met train` in a terminal, say. Its run.lock names it, and
    // it reads stop.request between steps like any training.
    const lock = readLock(dir);
    if (heldByTraining(lock)) {
      requestStop(dir, {
        reason: 'stopped in VS Code',
        by: `VS Code (pid ${process.pid})`,
      });
      void vscode.window.showInformationMessage(
        `MET: asked ${describeLock(lock)} to stop ${path.basename(dir)} after its current step, with a checkpoint.`,
      );
      return [dir];
    }
  }
  if (!chosen.length) {
    if (!running.length) void vscode.window.showInformationMessage('MET: no training is running.');
    return [];
  }
  await Promise.all(chosen.map((t) => t.cancel('cancelled in VS Code')));
  return chosen.map((t) => t.runDir);
}

async function openRun(context: vscode.ExtensionContext, runDir?: string | vscode.Uri): Promise<string | undefined> {
  let dir = fsPathOf(runDir);
  if (!dir) {
    const runs = await getRunIndex(context).runs();
    const items: Pick<string>[] = runs.map((r) => {
      const last = r.accuracy[r.accuracy.length - 1];
      const acc =
        last?.accuracy != null ? ` · last exit ${(100 * last.accuracy).toFixed(1)}% (${r.accuracySource})` : '';
      return {
        label: `$(graph-line) ${r.name}`,
        description: `${r.status} · epoch ${r.epoch}/${r.epochs}${acc}`,
        detail: rel(r.dir),
        value: r.dir,
      };
    });
    items.push({ label: '$(folder-opened) Browse…', description: 'a run folder (.met/runs/…)', browse: true });
    const pick = await vscode.window.showQuickPick(items, {
      title: 'MET: Open run',
      placeHolder: runs.length ? 'Run folder (newest first)' : 'No runs in this workspace yet',
      matchOnDescription: true,
    });
    if (!pick) return undefined;
    dir = pick.browse
      ? (
          await vscode.window.showOpenDialog({ canSelectFolders: true, canSelectFiles: false, openLabel: 'Open run' })
        )?.[0]?.fsPath
      : pick.value;
    if (!dir) return undefined;
  }
  if (!(await exists(path.join(dir, 'config.json')))) {
    void vscode.window.showErrorMessage(`MET: ${dir} is not a run folder (no config.json).`);
    return undefined;
  }
  // The dashboard is its own module; without it, the run's summary is the next best thing.
  if ((await vscode.commands.getCommands(true)).includes('met.showDashboard'))
    await vscode.commands.executeCommand('met.showDashboard', dir);
  else {
    const f = (await exists(path.join(dir, 'summary.json'))) ? 'summary.json' : 'config.json';
    await vscode.window.showTextDocument(vscode.Uri.file(path.join(dir, f)));
  }
  return dir;
}

async function createConfig(
  context: vscode.ExtensionContext,
  target?: string | vscode.Uri,
  opts: { open?: boolean; overwrite?: boolean } = {},
): Promise<string | undefined> {
  let dir = fsPathOf(target);
  if (dir && (await fs.promises.stat(dir).catch(() => null))?.isFile()) dir = path.dirname(dir);
  if (!dir) {
    const folders = vscode.workspace.workspaceFolders ?? [];
    if (!folders.length) {
      void vscode.window.showErrorMessage('MET: open a folder first; met.config.json goes into it.');
      return undefined;
    }
    dir =
      folders.length === 1
        ? folders[0].uri.fsPath
        : (await vscode.window.showWorkspaceFolderPick({ placeHolder: 'Where to write met.config.json' }))?.uri.fsPath;
    if (!dir) return undefined;
  }
  const file = path.join(dir, CONFIG_FILE_NAME);
  if ((await exists(file)) && !opts.overwrite) {
    const pick = await vscode.window.showWarningMessage(
      `MET: ${rel(file)} already exists.`,
      'Open it',
      'Replace with defaults',
    );
    if (pick === 'Open it') await vscode.window.showTextDocument(vscode.Uri.file(file));
    if (pick !== 'Replace with defaults') return pick === 'Open it' ? file : undefined;
  }
  // Prefill the two required paths with what the workspace has, relative to the file.
  const relTo = (p: string) => path.relative(dir!, p).split(path.sep).join('/') || '.';
  const folders = await findDatasets([dir], 3, 1000);
  const weights = (await vscode.workspace.findFiles(new vscode.RelativePattern(dir, WEIGHT_GLOB), IGNORE_GLOB, 1))[0]
    ?.fsPath;
  await writeFileAtomicAsync(
    file,
    configTemplate({
      data: folders[0] ? relTo(folders[0].dir) : undefined,
      weights: weights ? relTo(weights) : undefined,
    }),
  );
  log().info(`wrote ${file}`);
  if (opts.open !== false) await vscode.window.showTextDocument(vscode.Uri.file(file));
  void context;
  return file;
}

async function checkGpu(engines: Engines): Promise<GpuCheckResult | undefined> {
  let r: GpuCheckResult;
  try {
    r = await vscode.window.withProgress(
      {
        location: vscode.ProgressLocation.Notification,
        title: 'MET: checking execution providers (a test session on each)…',
      },
      () => engines.request('gpu/check', { refresh: true }),
    );
  } catch (e) {
    await showRequestError('GPU check failed', e);
    return undefined;
  }
  log().info(`GPU check:\n${r.report}`);
  const label = PROVIDER_LABELS;
  // Providers this platform's build does not have at all are in the log, not in the toast.
  const gpus = r.statuses.filter((s) => s.provider !== 'cpu' && !s.absent);
  // The toast gets the first clause of each reason; the log (Show details) has all of it.
  const short = (r: string) => r.replace(/\s*\(.*$/s, '');
  const parts = gpus.map(
    (s) =>
      `${label[s.provider]}: ${s.available ? (s.software ? 'works, on a software driver' : 'available') : `not available — ${short(s.reason)}`}`,
  );
  const msg = `MET: device "auto" uses ${label[r.auto]}. ${parts.join(' · ')}`;
  void vscode.window.showInformationMessage(msg, 'Show details').then((p) => p && showLog());
  return r;
}

export function registerCommands(context: vscode.ExtensionContext, engines: Engines): void {
  context.subscriptions.push(
    // From the explorer context menu the first argument is the folder's Uri (the second, all selected Uris).
    vscode.commands.registerCommand('met.fineTune', (arg?: FineTuneArgs | vscode.Uri) =>
      fineTune(context, engines, arg instanceof vscode.Uri ? { folder: arg } : (arg ?? {})).catch(async (e) => {
        await showErrorWithLog(`MET: fine-tuning failed: ${errorText(e)}`);
        return undefined;
      }),
    ),
    vscode.commands.registerCommand('met.cancelTraining', (runDir?: string | vscode.Uri) =>
      cancelTraining(engines, runDir),
    ),
    vscode.commands.registerCommand('met.openRun', (runDir?: string | vscode.Uri) => openRun(context, runDir)),
    vscode.commands.registerCommand(
      'met.createConfig',
      (target?: string | vscode.Uri, opts?: { open?: boolean; overwrite?: boolean }) =>
        // From the explorer context menu the second argument is the list of selected Uris, not options.
        createConfig(context, target, opts && !Array.isArray(opts) ? opts : {}),
    ),
    vscode.commands.registerCommand('met.checkGpu', () => checkGpu(engines)),
    vscode.commands.registerCommand('met.runAblation', (arg?: AblationArgs | vscode.Uri) =>
      runAblation(engines, ablationUi(context, engines), arg instanceof vscode.Uri ? { folder: arg } : (arg ?? {})),
    ),
  );
}

/** The fine-tune flow's pickers and settings check, for "MET: Run ablation study" (ablate.ts). */
function ablationUi(context: vscode.ExtensionContext, engines: Engines): AblationUi {
  return {
    pickFolder,
    pickWeights: (w, cf) => pickWeights(context, w, cf),
    configFor,
    workspaceRootOf,
    resolve: async (p) => {
      try {
        return await vscode.window.withProgress(
          { location: vscode.ProgressLocation.Window, title: 'MET: reading the backbone and the image folder…' },
          () => engines.request('train/resolve', p),
        );
      } catch (e) {
        await showRequestError('cannot run the ablation study with these settings', e);
        return undefined;
      }
    },
  };
}
