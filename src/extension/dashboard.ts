// The training dashboard: a webview panel per run with live loss and accuracy per exit, epoch,
// step, throughput and ETA, and the per-exit table (val accuracy of the last epoch, test accuracy
// and GFLOPs from summary.json).
//
// Stable element ids inside the webview (for UI tests; webview-ui/dashboard/main.ts fills them):
//   #met-dashboard      root; data-run-dir (run folder), data-status (starting|running|stopped|done|failed)
//   #run-name #run-meta #status
//   #epoch  #step  #throughput  #eta   the stats ("2 / 10", "34 / 120", "123.4 img/s", "1m05s" | "done")
//   #progress           <progress> 0..1
//   #loss-chart         <svg>: one <g data-exit="j"> per exit with a polyline (cross-entropy per step)
//   #acc-chart          <svg>: one <g data-exit="j"> per exit (val accuracy per epoch, circles; or
//                       training batch accuracy per step when there is no val split)
//   #acc-caption        says which of the two the accuracy chart shows
//   #legend li[data-exit]
//   #exit-table         tbody#exit-rows > tr[data-exit] > td.exit td.layer td.branch td.val td.test [td.rmse] td.gflops
//                       (regression runs: val / test are MAE in target units, td.rmse the test RMSE)
//
// History comes from the run folder (metrics.jsonl, summary.json), so the panel restores after a
// window reload (WebviewPanelSerializer; the webview keeps only the run folder in setState) and
// works for finished runs; live events come from trainingEvents.ts. Runs trained by another
// process (`met train` in a terminal) are followed by tailing metrics.jsonl.
//
// Security: CSP from default-src 'none'; one nonce'd script and one stylesheet, both from
// dist/webview (the only localResourceRoot); no inline styles.

import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { RunSummary } from '../engine/run/runFolder';
import type { TrainEvent } from '../engine/train/trainer';
import type {
  DashboardState,
  DashboardStateMessage,
  EpochEvent,
  History,
  HostMessage,
  RunMeta,
  StepEvent,
  SummaryLite,
  WebviewMessage,
} from '../../webview-ui/dashboard/protocol';
import { HostedPanel, PanelHost } from './panels/panelHost';
import { norm, type RunInfo } from './runFiles';
import { getRunIndex, type RunIndex } from './runIndex';
import { onDidTrainingUpdate } from './trainingEvents';
import { esc, webviewOptions, webviewPage } from './webviewPage';

export const DASHBOARD_VIEW_TYPE = 'met.dashboard';
/** Lines parsed between yields to the event loop when reading a long metrics.jsonl. */
const PARSE_CHUNK = 2000;
const TAIL_MS = 2000;

interface Columns {
  step: number[];
  epoch: number[];
  loss: number[];
  lossPerExit: number[];
  accPerExit: number[];
  epochs: EpochEvent[];
  last: StepEvent | null;
}

function emptyColumns(): Columns {
  return { step: [], epoch: [], loss: [], lossPerExit: [], accPerExit: [], epochs: [], last: null };
}

/** Adds metrics.jsonl lines (step and epoch events) to the columns. */
function addLines(cols: Columns, lines: string[], K: () => number): void {
  for (const line of lines) {
    if (!line) continue;
    let e: TrainEvent;
    try {
      e = JSON.parse(line) as TrainEvent;
    } catch {
      continue; // a line being written
    }
    if (e.type === 'step') {
      const k = K() || e.lossPerExit.length;
      // A run resumed after a crash repeats the steps after its last checkpoint: keep the later ones.
      while (cols.step.length && cols.step[cols.step.length - 1] >= e.step) {
        cols.step.pop();
        cols.epoch.pop();
        cols.loss.pop();
        cols.lossPerExit.length -= k;
        cols.accPerExit.length -= k;
      }
      cols.step.push(e.step);
      cols.epoch.push(e.epoch);
      cols.loss.push(e.loss);
      for (let j = 0; j < k; j++) {
        cols.lossPerExit.push(e.lossPerExit[j] ?? NaN);
        // Regression runs have no accuracy; the batch MAE takes its column (History.accPerExit).
        cols.accPerExit.push((e.maePerExit ?? e.accPerExit)[j] ?? NaN);
      }
      cols.last = e;
    } else if (e.type === 'epoch') cols.epochs.push(e);
  }
}

/** metrics.jsonl, parsed in chunks so a long run's history never blocks the host for long. */
async function readMetrics(file: string, K: number): Promise<{ cols: Columns; offset: number }> {
  const cols = emptyColumns();
  let buf: Buffer;
  try {
    buf = await fs.promises.readFile(file);
  } catch {
    return { cols, offset: 0 };
  }
  // Only complete lines; the engine may be half-way through writing the last one.
  const end = buf.lastIndexOf(0x0a) + 1;
  const lines = buf.subarray(0, end).toString('utf8').split('\n');
  let k = K;
  for (let i = 0; i < lines.length; i += PARSE_CHUNK) {
    addLines(cols, lines.slice(i, i + PARSE_CHUNK), () => k);
    if (!k && cols.last) k = cols.last.lossPerExit.length;
    if (i + PARSE_CHUNK < lines.length) await new Promise((r) => setImmediate(r));
  }
  return { cols, offset: end };
}

function toHistory(c: Columns, K: number): History {
  return {
    K,
    step: Float64Array.from(c.step),
    epoch: Float32Array.from(c.epoch),
    loss: Float32Array.from(c.loss),
    lossPerExit: Float32Array.from(c.lossPerExit),
    accPerExit: Float32Array.from(c.accPerExit),
    epochs: c.epochs,
    last: c.last,
  };
}

function summaryLite(s: RunSummary | null): SummaryLite | null {
  if (!s || !Array.isArray(s.exits) || !s.exits.length) return null;
  return {
    exits: s.exits.map((e) => ({
      exit: e.exit,
      layer: e.layer,
      accuracy: e.accuracy ?? NaN,
      gflops: e.gflops ?? NaN,
      branch: e.branch,
      ...(s.task === 'regression' ? { mae: e.mae ?? NaN, rmse: e.rmse ?? NaN } : {}),
    })),
    trainImgPerSec: s.trainImgPerSec,
  };
}

function metaOf(dir: string, info: RunInfo | null, index: RunIndex): RunMeta {
  const live = index.liveState(dir);
  if (!info) {
    // The engine has made the folder but not yet written config.json (it scans and decodes the
    // images first); the 'start' event fills the exits in.
    return {
      dir,
      name: path.basename(dir),
      status: live?.status ?? 'starting',
      reason: live?.error,
      exits: [],
      branches: [],
      epochs: 0,
      classes: 0,
      variant: '',
      backbone: '',
    };
  }
  return {
    dir,
    name: info.name,
    status: info.status,
    reason: info.reason,
    exits: info.config.met.exits,
    epochs: info.epochs,
    classes: info.config.classes.length,
    ...(info.task ? { task: info.task } : {}),
    branches: info.accuracy.map((a) => a.branch),
    variant: info.config.train.variant,
    backbone: path.basename(info.config.backbone.file),
  };
}

const dashboards = new PanelHost<DashboardPanel>(DASHBOARD_VIEW_TYPE);

class DashboardPanel extends HostedPanel<HostMessage, WebviewMessage, DashboardStateMessage> {
  private readonly index: RunIndex;
  private loading: Promise<void> | null = null;
  /** Live events that arrive while the history is being read: sent after 'init'. */
  private pendingEvents: TrainEvent[] = [];
  private offset = 0;
  private K = 0;
  private status: RunMeta['status'] | undefined;
  private summaryKey = '';
  private tail: ReturnType<typeof setInterval> | undefined;
  private lastLiveEvent = 0;

  static show(context: vscode.ExtensionContext, dir: string, column = vscode.ViewColumn.Active): DashboardPanel {
    const key = norm(dir);
    return dashboards.open({
      key,
      title: `MET: ${path.basename(key)}`,
      column,
      revealColumn: column,
      options: DashboardPanel.options(context),
      create: (panel) => new DashboardPanel(context, panel, key),
    });
  }

  static options(context: vscode.ExtensionContext): vscode.WebviewPanelOptions & vscode.WebviewOptions {
    return webviewOptions(context); // rebuilt from the run folder when shown again
  }

  constructor(
    context: vscode.ExtensionContext,
    panel: vscode.WebviewPanel,
    readonly dir: string,
  ) {
    super(dashboards, context, panel, dir);
    const index = getRunIndex(context);
    this.index = index;
    this.start(DashboardPanel.options(context), this.html());
    const watcher = vscode.workspace.createFileSystemWatcher(
      new vscode.RelativePattern(vscode.Uri.file(dir), '{config.json,summary.json,checkpoint.safetensors}'),
    );
    const sync = () => void this.sync(index);
    this.disposables.push(
      watcher,
      watcher.onDidCreate(sync),
      watcher.onDidChange(sync),
      index.onDidChange(sync),
      onDidTrainingUpdate((u) => {
        if (norm(u.runDir) !== dir) return;
        this.lastLiveEvent = Date.now();
        this.send({ type: 'event', event: u.event });
      }),
    );
  }

  /** (Re)created webview: the history is re-read, the old one is gone with its document. */
  protected onReady(): void {
    void this.init(this.index);
  }

  private html(): string {
    return webviewPage(this.panel.webview, this.context.extensionUri, {
      bundle: 'dashboard',
      title: `MET: ${path.basename(this.dir)}`,
      body: `<main id="met-dashboard" data-run-dir="${esc(this.dir)}" data-status="">
  <header><h1 id="run-name">${esc(path.basename(this.dir))}</h1><span id="status" class="badge">loading</span><span id="run-meta"></span></header>
  <section class="stats" aria-label="Progress">
    <div class="stat"><span class="label">Epoch</span><span class="value" id="epoch">–</span></div>
    <div class="stat"><span class="label">Step</span><span class="value" id="step">–</span></div>
    <div class="stat"><span class="label">Throughput</span><span class="value" id="throughput">–</span></div>
    <div class="stat"><span class="label">ETA</span><span class="value" id="eta">–</span></div>
  </section>
  <progress id="progress" max="1" value="0"></progress>
  <section id="charts">
    <figure><figcaption id="loss-caption">Cross-entropy per exit (training steps)</figcaption><svg id="loss-chart" class="chart" role="img" aria-label="Loss per exit"></svg></figure>
    <figure><figcaption id="acc-caption">Accuracy per exit</figcaption><svg id="acc-chart" class="chart" role="img" aria-label="Accuracy per exit"></svg></figure>
  </section>
  <ul id="legend" class="legend"></ul>
  <table id="exit-table">
    <thead><tr><th>Exit</th><th>Layer</th><th>Branch</th><th id="val-head">Val accuracy</th><th id="test-head">Test accuracy</th><th id="rmse-head" hidden>Test RMSE</th><th>GFLOPs</th></tr></thead>
    <tbody id="exit-rows"></tbody>
  </table>
</main>`,
    });
  }

  private send(m: HostMessage): void {
    if (!this.isReady) return; // the next 'ready' re-reads everything from the run folder
    if (this.loading && m.type === 'event') {
      this.pendingEvents.push(m.event);
      return;
    }
    this.post(m);
  }

  private async init(index: RunIndex): Promise<void> {
    const load = (async () => {
      const info = await index.info(this.dir);
      const meta = metaOf(this.dir, info, index);
      this.K = meta.exits.length;
      const { cols, offset } = await readMetrics(path.join(this.dir, 'metrics.jsonl'), this.K);
      this.offset = offset;
      this.K ||= cols.last?.lossPerExit.length ?? 0;
      const summary = summaryLite(info?.summary ?? null);
      this.status = meta.status;
      this.summaryKey = JSON.stringify(summary);
      this.panel.title = `MET: ${meta.name}`;
      await this.panel.webview.postMessage({
        type: 'init',
        run: meta,
        history: toHistory(cols, this.K),
        summary,
      } satisfies HostMessage);
    })();
    this.loading = load;
    try {
      await load;
    } finally {
      if (this.loading === load) this.loading = null;
      const events = this.pendingEvents;
      this.pendingEvents = [];
      // The webview drops steps it already has from metrics.jsonl.
      for (const event of events) this.send({ type: 'event', event });
      this.updateTail();
    }
  }

  /** Status or summary changed (files, live state): tell the webview. */
  private async sync(index: RunIndex): Promise<void> {
    if (!this.isReady || this.loading) return;
    const info = await index.info(this.dir);
    if (info && !this.K) return void this.init(index); // config.json just appeared
    const meta = metaOf(this.dir, info, index);
    if (meta.status !== this.status) {
      this.status = meta.status;
      this.send({ type: 'status', status: meta.status, reason: meta.reason });
    }
    const summary = summaryLite(info?.summary ?? null);
    const key = JSON.stringify(summary);
    if (summary && key !== this.summaryKey) {
      this.summaryKey = key;
      this.send({ type: 'summary', summary });
    }
    this.updateTail();
  }

  /** Follow metrics.jsonl while the run trains in a process that sends us no events. */
  private updateTail(): void {
    const want = (this.status === 'running' || this.status === 'starting') && this.isReady;
    if (want && !this.tail) this.tail = setInterval(() => void this.readTail(), TAIL_MS);
    else if (!want && this.tail) {
      clearInterval(this.tail);
      this.tail = undefined;
    }
  }

  private async readTail(): Promise<void> {
    if (Date.now() - this.lastLiveEvent < 3 * TAIL_MS || this.loading) return; // our engine reports live
    const file = path.join(this.dir, 'metrics.jsonl');
    let h: fs.promises.FileHandle | undefined;
    try {
      const st = await fs.promises.stat(file);
      if (st.size <= this.offset) return;
      h = await fs.promises.open(file, 'r');
      const buf = Buffer.alloc(st.size - this.offset);
      await h.read(buf, 0, buf.length, this.offset);
      const end = buf.lastIndexOf(0x0a) + 1;
      if (!end) return;
      this.offset += end;
      const lines = buf.subarray(0, end).toString('utf8').split('\n');
      for (const line of lines) {
        if (!line) continue;
        try {
          this.send({ type: 'event', event: JSON.parse(line) as TrainEvent });
        } catch {
          /* partial */
        }
      }
    } catch {
      /* the file is gone or not there yet */
    } finally {
      await h?.close();
    }
  }

  protected override onDispose(): void {
    if (this.tail) clearInterval(this.tail);
  }
}

/** The run folder from a command argument: a path, a Uri, or a runs-view item ({run: {dir}}). */
function dirOf(arg: unknown): string | undefined {
  if (typeof arg === 'string' && arg) return arg;
  if (arg instanceof vscode.Uri) return arg.fsPath;
  if (arg && typeof arg === 'object') {
    const o = arg as { run?: { dir?: string }; runDir?: string; fsPath?: string };
    return o.run?.dir ?? o.runDir ?? o.fsPath;
  }
  return undefined;
}

async function pickRun(index: RunIndex): Promise<string | undefined> {
  const active = index.activeRun();
  if (active) return active;
  const runs = await index.runs();
  if (!runs.length) {
    void vscode.window.showInformationMessage(
      'MET: no runs in this workspace yet (.met/runs is empty). Fine-tune a folder first (MET: Fine-tune on folder).',
    );
    return undefined;
  }
  if (runs.length === 1) return runs[0].dir;
  const pick = await vscode.window.showQuickPick(
    runs.map((r) => ({
      label: r.name,
      description: r.status,
      detail: !r.accuracySource
        ? r.dir
        : r.task === 'regression'
          ? `${r.accuracySource} MAE per exit: ${r.accuracy.map((a) => (a.mae == null ? '–' : a.mae.toPrecision(4))).join(' / ')}`
          : `${r.accuracySource} accuracy per exit: ${r.accuracy.map((a) => (a.accuracy === null ? '–' : (100 * a.accuracy).toFixed(1))).join(' / ')}%`,
      dir: r.dir,
    })),
    { title: 'MET: Show training dashboard', placeHolder: 'Run to show' },
  );
  return pick?.dir;
}

export function registerDashboard(context: vscode.ExtensionContext): void {
  const index = getRunIndex(context);
  context.subscriptions.push(
    vscode.commands.registerCommand('met.showDashboard', async (arg?: unknown) => {
      const dir = dirOf(arg) ?? (await pickRun(index));
      if (!dir) return undefined;
      // A training that has just started may not have made its folder yet.
      if (!fs.existsSync(dir) && !index.liveState(dir)) {
        void vscode.window.showErrorMessage(`MET: the run folder ${dir} does not exist.`);
        return undefined;
      }
      DashboardPanel.show(context, dir);
      return norm(dir);
    }),
  );
  // met.dashboard.snapshot (not contributed): what each open dashboard's webview last reported,
  // i.e. its setState contents and rendered values. Used by the integration tests.
  dashboards.register(context, {
    snapshotCommand: 'met.dashboard.snapshot',
    snapshotFields: (p) => ({ runDir: p.dir }),
    async restore(panel, saved) {
      const state = saved as DashboardState | undefined;
      // The webview stores its run folder with setState as soon as its script runs, but a reload
      // right after opening can come before the workbench has persisted that state (seen in
      // code-server). The title names the run folder then: restore it when the name is unique.
      const dir = state?.runDir ?? (await index.dirOfName(panel.title.replace(/^MET: /, '')));
      // Nothing to restore (the run was deleted): the empty panel is closed rather than shown blank.
      if (!dir || !fs.existsSync(dir) || dashboards.has(norm(dir))) return undefined;
      return new DashboardPanel(context, panel, norm(dir));
    },
  });
}
