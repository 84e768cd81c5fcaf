// "MET: Run ablation study": `met ablate` for the workspace, with progress per run and Cancel.
//
// The study runs in the bundled CLI as a child process (`dist/cli.js ablate --progress json`),
// exactly what a terminal user runs: its runs are ordinary run folders, and a study that is
// cancelled (SIGTERM: the current run stops after its step with a checkpoint) or cut off with
// the window continues where it stopped when the command is run again on the same settings
// (the study folder is derived from them, engine/study/study.ts defaultStudyDir).
//
//   executeCommand('met.runAblation', { folder, weights, variants: ['met', 'no_gr'], overrides, confirm: false })

import { fork, type ChildProcess, type ForkOptions } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { TrainConfig } from '../engine/run/config';
import { FIELDS, flagOf } from '../engine/settings';
import { BUILTIN_VARIANTS, DEFAULT_VARIANTS, defaultStudyDir } from '../engine/study/study';
import type { ResolveResult } from '../protocol';
import type { Engines } from './engineClient';
import { log, showLog } from './log';

export interface AblationArgs {
  folder?: string | vscode.Uri;
  weights?: string | vscode.Uri;
  configFile?: string | vscode.Uri;
  /** Variant specs as `met ablate --variants` takes them (default: the paper's six). */
  variants?: string[];
  /** Study folder (default: derived from the shared settings, so a re-run continues it). */
  out?: string;
  /** Settings over the config file, shared by every run. */
  overrides?: Partial<TrainConfig>;
  /** false: no pickers, no notification buttons (tests, other commands). */
  confirm?: boolean;
}

/** What met.runAblation returns (plain data). */
export interface AblationResult {
  study: string;
  status: 'done' | 'stopped' | 'failed';
  /** `met ablate --json`'s object, when the study printed it. */
  result?: { runs: { variant: string; run: string; mean: number }[]; table: unknown } & Record<string, unknown>;
  error?: string;
}

/** Pickers and the resolve step are the fine-tune flow's (commands.ts). */
export interface AblationUi {
  pickFolder(): Promise<string | undefined>;
  pickWeights(configWeights: string | undefined, configFile: string | undefined): Promise<string | undefined>;
  resolve(p: {
    data?: string;
    weights?: string;
    configFile?: string;
    overrides?: Partial<TrainConfig>;
    workspaceRoot: string;
  }): Promise<ResolveResult | undefined>;
  configFor(folder: string): string | undefined;
  workspaceRootOf(p: string): string;
}

const fsPathOf = (x: string | vscode.Uri | undefined): string | undefined =>
  x === undefined ? undefined : typeof x === 'string' ? x : x.fsPath;

/** The shared settings as `met ablate` flags (every setting explicit: the CLI resolves nothing else). */
export function settingsFlags(c: Partial<TrainConfig>): string[] {
  const out: string[] = [];
  for (const f of FIELDS) {
    if (f.key === 'out' || f.key === 'variant') continue;
    const v = (c as Record<string, unknown>)[f.key];
    if (v === undefined || v === null) continue;
    const flag = `--${flagOf(f)}`;
    if (typeof v === 'boolean') out.push(`${flag}=${v}`);
    else if (Array.isArray(v)) out.push(flag, v.join(','));
    else out.push(flag, String(v));
  }
  return out;
}

async function pickVariants(): Promise<string[] | undefined> {
  const items = DEFAULT_VARIANTS.map((v) => ({ label: v, description: BUILTIN_VARIANTS[v].help, picked: true }));
  const picks = await vscode.window.showQuickPick(items, {
    title: 'MET: Run ablation study — variants (one run each, same data, split and seed)',
    placeHolder: 'Space toggles a variant; Enter starts',
    canPickMany: true,
    ignoreFocusOut: true,
  });
  return picks?.length ? picks.map((p) => p.label) : undefined;
}

type Progress = {
  type: 'run';
  index: number;
  total: number;
  variant: string;
  run: string;
  state: string;
  message?: string;
};
type EventLine = {
  type: 'event';
  variant: string;
  event: { type: string; epoch?: number; step?: number; totalSteps?: number };
};

const STATE_TEXT: Record<string, string> = {
  done: 'finished earlier, kept',
  resumable: 'resuming from its checkpoint',
  new: 'starting',
  finished: 'done',
  stopped: 'stopped',
  failed: 'failed',
};

export async function runAblation(
  engines: Engines,
  ui: AblationUi,
  args: AblationArgs = {},
): Promise<AblationResult | undefined> {
  if (!vscode.workspace.isTrusted) {
    void vscode.window.showErrorMessage(
      'MET: ablation studies are disabled in Restricted Mode: they read checkpoints and images and train on them. Trust the workspace to run one.',
    );
    return undefined;
  }
  const interactive = args.confirm !== false;
  let configFile = fsPathOf(args.configFile);
  let folder = fsPathOf(args.folder);
  if (!folder && !configFile) {
    if (!interactive) throw new Error('met.runAblation needs a folder or a config file');
    folder = await ui.pickFolder();
    if (!folder) return undefined;
  }
  if (!configFile && folder) configFile = ui.configFor(folder);
  let weights = fsPathOf(args.weights);
  if (!weights && interactive) {
    weights = await ui.pickWeights(undefined, configFile);
    if (!weights) return undefined;
  }
  const root = ui.workspaceRootOf(folder ?? configFile!);
  const r = await ui.resolve({ data: folder, weights, configFile, overrides: args.overrides, workspaceRoot: root });
  if (!r) return undefined;
  const variants = args.variants ?? (interactive ? await pickVariants() : DEFAULT_VARIANTS);
  if (!variants) return undefined;
  const { out: _out, variant: _v, ...base } = r.config as TrainConfig & { out?: string };
  const study = args.out ?? defaultStudyDir(root, base);
  const argv = [
    'ablate',
    ...settingsFlags(base),
    '--variants',
    variants.join(','),
    '--out',
    study,
    '--progress',
    'json',
  ];
  log().info(`ablation study ${study}: ${variants.join(', ')}`);
  return vscode.window.withProgress(
    {
      location: vscode.ProgressLocation.Notification,
      title: `MET: ablation study (${variants.length} runs)`,
      cancellable: true,
    },
    (progress, token) => follow(engines.cliPath, root, argv, study, variants.length, progress, token, interactive),
  );
}

function follow(
  cliPath: string,
  cwd: string,
  argv: string[],
  study: string,
  total: number,
  progress: vscode.Progress<{ message?: string; increment?: number }>,
  token: vscode.CancellationToken,
  interactive: boolean,
): Promise<AblationResult> {
  return new Promise((resolve) => {
    const child: ChildProcess = fork(cliPath, argv, {
      cwd,
      env: { ...process.env, ELECTRON_RUN_AS_NODE: '1' },
      execArgv: [],
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      windowsHide: true,
    } as ForkOptions);
    let result: AblationResult['result'];
    let current = '';
    let done = 0; // progress reported so far, in percent
    let stderrTail = '';
    const bump = (to: number) => {
      if (to > done) (progress.report({ increment: to - done }), (done = to));
    };
    const cancel = token.onCancellationRequested(() => {
      progress.report({ message: `${current}: stopping after this step (a checkpoint is saved)…` });
      child.kill('SIGTERM');
    });
    let buf = '';
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        let m: Progress | EventLine | ({ type: 'result' } & AblationResult['result']);
        try {
          m = JSON.parse(line) as typeof m;
        } catch {
          continue;
        }
        if (m.type === 'run') {
          current = `[${m.index}/${m.total}] ${m.variant}`;
          log().info(`ablation ${current}: ${STATE_TEXT[m.state] ?? m.state}${m.message ? `: ${m.message}` : ''}`);
          progress.report({ message: `${current}: ${STATE_TEXT[m.state] ?? m.state}` });
          if (m.state === 'finished' || m.state === 'failed' || m.state === 'done') bump((100 * m.index) / m.total);
        } else if (m.type === 'event' && m.event.type === 'step' && m.event.step && m.event.totalSteps) {
          const e = m.event;
          const i = Number(/^\[(\d+)\//.exec(current)?.[1] ?? 1);
          bump((100 * (i - 1 + e.step! / e.totalSteps!)) / total);
          progress.report({ message: `${current}: epoch ${e.epoch}, step ${e.step}/${e.totalSteps}` });
        } else if (m.type === 'result') {
          const { type: _t, ...rest } = m;
          result = rest as AblationResult['result'];
        }
      }
    });
    child.stderr!.on('data', (d: Buffer) => {
      const s = d.toString();
      stderrTail = (stderrTail + s).slice(-4000);
      for (const l of s.split('\n')) if (l.trim()) log().info(`[ablate] ${l}`);
    });
    child.on('exit', (code, signal) => {
      cancel.dispose();
      const status: AblationResult['status'] =
        code === 0 ? 'done' : code === 130 || token.isCancellationRequested ? 'stopped' : 'failed';
      const lastErr = stderrTail.trim().split('\n').pop() ?? '';
      const out: AblationResult = {
        study,
        status,
        ...(result ? { result } : {}),
        ...(status === 'failed' ? { error: lastErr || `exit ${code ?? signal}` } : {}),
      };
      resolve(out);
      if (interactive) void report(out);
    });
  });
}

async function report(o: AblationResult): Promise<void> {
  const name = path.basename(o.study);
  if (o.status === 'done') {
    const best = [...(o.result?.runs ?? [])].sort((a, b) => b.mean - a.mean)[0];
    const pick = await vscode.window.showInformationMessage(
      `MET: ablation study ${name} finished${best ? `; best mean over exits: ${best.variant} (${(100 * best.mean).toFixed(1)}%)` : ''}.`,
      'Compare runs',
      'Open table',
    );
    if (pick === 'Compare runs') void vscode.commands.executeCommand('met.compareStudy', vscode.Uri.file(o.study));
    if (pick === 'Open table') {
      const f = path.join(o.study, 'comparison.txt');
      if (fs.existsSync(f)) void vscode.window.showTextDocument(vscode.Uri.file(f));
    }
  } else if (o.status === 'stopped') {
    void vscode.window.showInformationMessage(
      `MET: ablation study ${name} stopped. Run "MET: Run ablation study" again with the same settings to continue it: finished runs are kept, the stopped one resumes from its checkpoint.`,
    );
  } else {
    const pick = await vscode.window.showErrorMessage(`MET: ablation study ${name} failed: ${o.error}`, 'Show log');
    if (pick) showLog();
  }
}
