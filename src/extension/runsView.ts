// "MET runs": a tree view (activity-bar container `met`, view `met.runs`) of the workspace's
// runs with their status and per-exit accuracy. The list comes from RunIndex (runIndex.ts):
// `.met/runs/*` of each workspace folder plus run folders this window trained elsewhere; it
// refreshes on file-system changes there and on training events.
//
// Context actions: Open (the training dashboard), Reveal in Explorer, Reveal in File Manager
// (desktop only), Delete (modal confirmation; refused while the run trains).

import * as path from 'node:path';
import * as vscode from 'vscode';
import { describeLock, ownerState } from '../engine/run/lock';
import { readLock, type RunLock } from '../engine/run/runFolder';
import { norm, type RunInfo } from './runFiles';
import { getRunIndex, type RunIndex } from './runIndex';

const pct = (x: number | null) => (x === null ? '–' : `${(100 * x).toFixed(1)}%`);
/** Regression errors (target units): 4 significant digits, as `met eval` prints them. */
export const num = (x: number | null | undefined) => (x === null || x === undefined ? '–' : x.toPrecision(4));

/** "linear" when every exit has the same branch type, else "mlp / sl-vit / linear". */
export function branchLabel(r: RunInfo): string {
  const b = r.accuracy.map((a) => a.branch);
  return b.every((x) => x === b[0]) ? (b[0] ?? 'linear') : b.join(' / ');
}

function eta(s: number): string {
  if (!Number.isFinite(s) || s < 0) return '?';
  const m = Math.floor(s / 60);
  return m ? `${m}m${String(Math.round(s % 60)).padStart(2, '0')}s` : `${Math.round(s)}s`;
}

const ICONS: Record<RunInfo['status'], vscode.ThemeIcon> = {
  starting: new vscode.ThemeIcon('loading~spin'),
  running: new vscode.ThemeIcon('sync~spin', new vscode.ThemeColor('charts.blue')),
  stopped: new vscode.ThemeIcon('debug-pause', new vscode.ThemeColor('charts.yellow')),
  done: new vscode.ThemeIcon('pass', new vscode.ThemeColor('charts.green')),
  failed: new vscode.ThemeIcon('error', new vscode.ThemeColor('charts.red')),
};

/** One line: "done · 62.1 / 70.3 / 78.0%" or "running · epoch 2/10 · 34% · ETA 1m05s". */
export function describe(r: RunInfo): string {
  const parts: string[] = [r.status];
  if (r.status === 'running' || r.status === 'starting') {
    if (r.epoch) parts.push(`epoch ${r.epoch}/${r.epochs}`);
    if (r.progress) parts.push(`${Math.round(100 * r.progress.fraction)}%`, `ETA ${eta(r.progress.etaSec)}`);
  } else if (r.status === 'stopped' && r.epoch) parts.push(`epoch ${r.epoch}/${r.epochs}`);
  if (r.task === 'regression') {
    const mae = r.accuracy.map((a) => a.mae ?? null);
    if (mae.some((a) => a !== null))
      parts.push(`${r.accuracySource === 'val' ? 'val ' : ''}MAE ${mae.map(num).join(' / ')}`);
    return parts.join(' · ');
  }
  const acc = r.accuracy.map((a) => a.accuracy);
  if (acc.some((a) => a !== null))
    parts.push(
      `${r.accuracySource === 'val' ? 'val ' : ''}acc ${acc.map((a) => (a === null ? '–' : (100 * a).toFixed(1))).join(' / ')}%`,
    );
  return parts.join(' · ');
}

/** The tooltip's line for the run folder's owner (run.lock), if a process holds it. */
export function lockLine(l: RunLock | null): string {
  if (!l) return '';
  return ownerState(l) === 'gone'
    ? `Its lock was left by ${describeLock(l)}, which no longer runs.\n\n`
    : `Held by ${describeLock(l)}.\n\n`;
}

function tooltip(r: RunInfo): vscode.MarkdownString {
  const md = new vscode.MarkdownString(undefined, true);
  const t = r.config.train;
  md.appendMarkdown(`**${r.name}** — ${r.status}${r.reason ? ` (${r.reason})` : ''}\n\n`);
  // Who owns the folder (a training or an eval, in this window or elsewhere): a small file,
  // read as the item is made.
  md.appendText(lockLine(readLock(r.dir)));
  md.appendMarkdown(
    `${r.task === 'regression' ? 'regression' : `${r.config.classes.length} classes`} · branch \`${branchLabel(r)}\` · variant \`${t.variant}\` · r = ${t.rank} · ${r.epochs} epochs · backbone \`${path.basename(r.config.backbone.file)}\`\n\n`,
  );
  if (r.accuracySource && r.task === 'regression') {
    md.appendMarkdown(
      `| exit | layer | ${r.accuracySource} MAE | ${r.accuracySource} RMSE | GFLOPs | branch |\n|---:|---:|---:|---:|---:|---|\n`,
    );
    for (const a of r.accuracy)
      md.appendMarkdown(
        `| ${a.exit} | ${a.layer} | ${num(a.mae)} | ${num(a.rmse)} | ${a.gflops === null ? '–' : a.gflops.toPrecision(3)} | ${a.branch} |\n`,
      );
  } else if (r.accuracySource) {
    md.appendMarkdown(`| exit | layer | ${r.accuracySource} accuracy | GFLOPs | branch |\n|---:|---:|---:|---:|---|\n`);
    for (const a of r.accuracy)
      md.appendMarkdown(
        `| ${a.exit} | ${a.layer} | ${pct(a.accuracy)} | ${a.gflops === null ? '–' : a.gflops.toPrecision(3)} | ${a.branch} |\n`,
      );
  } else
    md.appendMarkdown(
      r.task === 'regression' ? 'No MAE yet (no finished epoch).\n' : 'No accuracy yet (no finished epoch).\n',
    );
  md.appendMarkdown(`\n\n\`${r.dir}\``);
  return md;
}

export class RunItem extends vscode.TreeItem {
  constructor(readonly run: RunInfo) {
    super(run.name, vscode.TreeItemCollapsibleState.None);
    this.id = run.dir;
    this.resourceUri = vscode.Uri.file(run.dir);
    this.description = describe(run);
    this.tooltip = tooltip(run);
    this.iconPath = ICONS[run.status];
    // 'metRunRunning' hides Delete in the context menu and shows Stop; 'metRunResumable' (stopped or
    // failed with a checkpoint) shows Resume (package.json menus); the commands check too.
    this.contextValue =
      run.status === 'running' || run.status === 'starting'
        ? 'metRunRunning'
        : run.resumable
          ? 'metRunResumable'
          : 'metRun';
    this.command = { command: 'met.runs.open', title: 'Open', arguments: [this] };
  }
}

class RunsProvider implements vscode.TreeDataProvider<RunItem> {
  private readonly changed = new vscode.EventEmitter<RunItem | undefined>();
  readonly onDidChangeTreeData = this.changed.event;
  constructor(private readonly index: RunIndex) {}
  fire(): void {
    this.changed.fire(undefined);
  }
  getTreeItem(e: RunItem): vscode.TreeItem {
    return e;
  }
  async getChildren(e?: RunItem): Promise<RunItem[]> {
    if (e) return [];
    return (await this.index.runs()).map((r) => new RunItem(r));
  }
  dispose(): void {
    this.changed.dispose();
  }
}

/** A run folder from a command argument: a tree item, a Uri, or a path. */
function dirOf(arg: unknown): string | undefined {
  if (arg instanceof RunItem) return arg.run.dir;
  if (arg instanceof vscode.Uri) return arg.fsPath;
  if (typeof arg === 'string') return arg;
  if (arg && typeof arg === 'object' && 'run' in arg) return (arg as RunItem).run?.dir;
  return undefined;
}

export function registerRunsView(context: vscode.ExtensionContext): void {
  const index = getRunIndex(context);
  const provider = new RunsProvider(index);
  // canSelectMany: several runs selected go to Compare runs together (met.runs.compare, compare.ts);
  // the other item commands act on the item clicked.
  const view = vscode.window.createTreeView('met.runs', {
    treeDataProvider: provider,
    showCollapseAll: false,
    canSelectMany: true,
  });
  const setMessage = async () => {
    const n = (await index.runs()).length;
    view.message = n
      ? undefined
      : 'No runs yet. Fine-tune a folder (MET: Fine-tune on folder) or run `met train`; runs appear from .met/runs.';
  };
  void setMessage();

  context.subscriptions.push(
    provider,
    view,
    index.onDidChange(() => {
      provider.fire();
      void setMessage();
    }),
    vscode.commands.registerCommand('met.runs.refresh', () => index.refresh()),
    // Not in the command palette (not contributed): the items the view shows now, through the
    // provider the tree uses. For the integration tests, which cannot read another extension's tree.
    vscode.commands.registerCommand('met.runs.snapshot', async () =>
      (await provider.getChildren()).map((i) => ({
        dir: i.run.dir,
        label: i.label,
        description: i.description,
        tooltip: (i.tooltip as vscode.MarkdownString).value,
        contextValue: i.contextValue,
        icon: (i.iconPath as vscode.ThemeIcon).id,
        status: i.run.status,
      })),
    ),
    vscode.commands.registerCommand('met.runs.resume', (arg: unknown) => {
      const dir = dirOf(arg);
      if (dir) return vscode.commands.executeCommand('met.fineTune', { resume: dir });
    }),
    vscode.commands.registerCommand('met.runs.stop', (arg: unknown) => {
      const dir = dirOf(arg);
      if (dir) return vscode.commands.executeCommand('met.cancelTraining', dir);
    }),
    vscode.commands.registerCommand('met.runs.open', (arg: unknown) => {
      const dir = dirOf(arg);
      return vscode.commands.executeCommand('met.showDashboard', dir);
    }),
    vscode.commands.registerCommand('met.runs.reveal', async (arg: unknown) => {
      const dir = dirOf(arg);
      if (!dir) return;
      const uri = vscode.Uri.file(dir);
      // The Explorer only shows workspace files; a run folder elsewhere goes to the OS file manager.
      if (vscode.workspace.getWorkspaceFolder(uri)) await vscode.commands.executeCommand('revealInExplorer', uri);
      else await vscode.commands.executeCommand('revealFileInOS', uri);
    }),
    vscode.commands.registerCommand('met.runs.revealInOS', (arg: unknown) => {
      const dir = dirOf(arg);
      if (dir) return vscode.commands.executeCommand('revealFileInOS', vscode.Uri.file(dir));
    }),
    // `options.confirm === false` skips the dialog: for tests and scripted callers only; the
    // running-run check still applies.
    vscode.commands.registerCommand('met.runs.delete', async (arg: unknown, options?: { confirm?: boolean }) => {
      const dir = dirOf(arg);
      if (!dir) return false;
      const run = await index.find(dir);
      if (!run) {
        void vscode.window.showErrorMessage(
          `MET: ${dir} is not a MET run folder (no config.json written by MET), so it was not deleted.`,
        );
        return false;
      }
      if (run.status === 'running' || run.status === 'starting' || index.activeRun() === norm(dir)) {
        void vscode.window.showWarningMessage(
          `MET: ${run.name} is training. Cancel it first (MET: Cancel training), then delete it.`,
        );
        return false;
      }
      // A remote or web host has no trash to move the folder to.
      const trash = vscode.env.remoteName === undefined && vscode.env.uiKind === vscode.UIKind.Desktop;
      if (options?.confirm !== false) {
        const pick = await vscode.window.showWarningMessage(
          `Delete the run ${run.name}?`,
          {
            modal: true,
            detail: `${run.dir}\n\nThe folder and everything in it (weights, predictions, metrics) ${trash ? 'is moved to the trash' : 'is deleted permanently'}.`,
          },
          'Delete',
        );
        if (pick !== 'Delete') return false;
      }
      await vscode.workspace.fs.delete(vscode.Uri.file(run.dir), { recursive: true, useTrash: trash });
      index.forget(run.dir);
      return true;
    }),
  );
}
