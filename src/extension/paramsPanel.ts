// "MET: Show parameter counts" (also the "N trainable params" CodeLens of a config file): a table
// and bars per component (frozen backbone, shared projections, cores, diagonals, heads), the
// trainable percentage, the comparison with independent adapters and GFLOPs per exit, for a
// config file or a run's settings. The numbers are the engine's 'params/compute', the same
// function `met params --json` prints (src/app/params.ts), so the panel and the CLI cannot differ.
//
// Stable element ids inside the webview (webview-ui/params/main.ts fills them):
//   #met-params        root; data-source (file or run folder), data-status (computing|ready|error)
//   #source-name #model #status-text #refresh
//   #cards             .card[data-key] > .value   (trainable, percent, backbone, total, reduction)
//   #group-bars        <svg>: g.bar[data-group] (log-scale bars per component group)
//   #share-bar         <svg>: rect[data-group] (share of the trainable parameters, linear)
//   #adapter-bars      <svg>: MET adapters vs independent adapters
//   #component-rows    tr > td.name td.shape td.count td.params td.trainable
//   #exit-rows         tr[data-exit] > td.exit td.layer td.branch td.branch-params td.gflops td.segment
//   #gflops-bars       <svg>: g.bar[data-exit]
//
// A config file's panel follows the file: saved changes recompute. Restored after a reload by
// the serializer from the source the webview keeps with setState.

import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { ParamsReport } from '../app/params';
import { RUN_FILE, type RunConfigFile } from '../engine/run/runFolder';
import type {
  ParamsHostMessage,
  ParamsNumbers,
  ParamsSource,
  ParamsState,
  ParamsStateMessage,
  ParamsWebviewMessage,
} from '../../webview-ui/params/protocol';
import { getEngines } from './engineClient';
import { HostedPanel, PanelHost } from './panels/panelHost';
import { norm } from './runFiles';
import { getRunIndex, type RunIndex } from './runIndex';
import { esc, webviewOptions, webviewPage } from './webviewPage';
import { isConfigFileName } from '../app/configFile';

export const PARAMS_VIEW_TYPE = 'met.params';

/** The report as the webview gets it: series as typed arrays. */
export function toNumbers(r: ParamsReport): ParamsNumbers {
  return {
    model: r.model,
    config: r.config,
    backbone: r.backbone,
    trainable: r.trainable,
    total: r.total,
    trainablePercent: r.trainable_percent,
    metAdapters: r.met_adapters,
    independentAdapters: r.independent_adapters,
    reduction: r.reduction,
    reductionLimit: r.reduction_limit,
    sumK: r.sum_k,
    adapters: r.adapters,
    storedTrainable: r.stored_trainable,
    groups: {
      names: ['frozen backbone', 'shared projections', 'cores', 'diagonals', 'heads'],
      params: Float64Array.from([r.backbone, r.shared_projections, r.cores, r.diagonals, r.heads]),
      trainable: Uint8Array.from([0, 1, 1, 1, 1]),
    },
    components: {
      names: r.components.map((c) => c.name),
      shapes: r.components.map((c) => c.shape),
      count: Float64Array.from(r.components.map((c) => c.count)),
      each: Float64Array.from(r.components.map((c) => c.each)),
      params: Float64Array.from(r.components.map((c) => c.params)),
      trainable: Uint8Array.from(r.components.map((c) => (c.trainable ? 1 : 0))),
    },
    exits: {
      layer: Int32Array.from(r.exits.map((e) => e.layer)),
      gflops: Float64Array.from(r.exits.map((e) => e.gflops)),
      segment: Float64Array.from(r.exits.map((e) => e.segment_gflops)),
      branch: r.exits.map((e) => e.branch),
      branchParams: Float64Array.from(r.exits.map((e) => r.branches[e.exit - 1]?.params ?? NaN)),
      branchGflops: Float64Array.from(r.exits.map((e) => e.branch_gflops)),
    },
  };
}

/** Settings of a run as `met params` flags: its recorded TrainConfig (without undefined / null values). */
function runSettings(cfg: RunConfigFile): Record<string, unknown> {
  return Object.fromEntries(Object.entries(cfg.train).filter(([, v]) => v !== undefined && v !== null));
}

const paramsPanels = new PanelHost<ParamsPanel>(PARAMS_VIEW_TYPE);

class ParamsPanel extends HostedPanel<ParamsHostMessage, ParamsWebviewMessage, ParamsStateMessage> {
  private seq = 0;
  private last: ParamsHostMessage | undefined;
  /** The number of the last completed computation (tests: a saved edit recomputes). */
  computed = 0;

  static show(context: vscode.ExtensionContext, source: ParamsSource): ParamsPanel {
    // An open panel's numbers follow the file already (watcher, saves): it is only revealed.
    return paramsPanels.open({
      key: source.path,
      title: `Params: ${source.name}`,
      options: ParamsPanel.options(context),
      create: (panel) => new ParamsPanel(context, panel, source),
    });
  }

  static options(context: vscode.ExtensionContext): vscode.WebviewPanelOptions & vscode.WebviewOptions {
    return webviewOptions(context);
  }

  constructor(
    context: vscode.ExtensionContext,
    panel: vscode.WebviewPanel,
    readonly source: ParamsSource,
  ) {
    super(paramsPanels, context, panel, source.path);
    this.start(ParamsPanel.options(context), this.html());
    // A config file's saved edits (or a run's config.json being rewritten) recompute.
    const file = source.kind === 'config' ? source.path : path.join(source.path, RUN_FILE.config);
    const watcher = vscode.workspace.createFileSystemWatcher(
      new vscode.RelativePattern(vscode.Uri.file(path.dirname(file)), path.basename(file)),
    );
    const changed = () => this.compute();
    this.disposables.push(
      watcher,
      watcher.onDidChange(changed),
      watcher.onDidCreate(changed),
      vscode.workspace.onDidSaveTextDocument((d) => {
        if (norm(d.uri.fsPath) === norm(file)) this.compute();
      }),
    );
  }

  /** The last answer (or 'computing' while one is under way: its answer follows). */
  protected onReady(): void {
    if (this.last) this.post(this.last);
    else this.compute();
  }

  protected override onMessage(m: ParamsWebviewMessage): void {
    if (m.type === 'refresh') this.compute();
  }

  compute(): void {
    const seq = ++this.seq;
    const source = this.source;
    this.last = { type: 'computing', source };
    this.post(this.last);
    const t0 = Date.now();
    void (async () => {
      let msg: ParamsHostMessage;
      try {
        let report: ParamsReport;
        if (source.kind === 'config') {
          report = await getEngines().request('params/compute', { configFile: source.path });
        } else {
          const file = path.join(source.path, RUN_FILE.config);
          let cfg: RunConfigFile;
          try {
            cfg = JSON.parse(await fs.promises.readFile(file, 'utf8')) as RunConfigFile;
          } catch (e) {
            throw new Error(`${file}: ${(e as Error).message}`);
          }
          // The run's own settings and class count (no data folder scan: the classes are recorded).
          report = await getEngines().request('params/compute', {
            settings: runSettings(cfg),
            classes: cfg.classes.length,
            ignoreWorkspaceConfig: true,
          });
        }
        msg = {
          type: 'report',
          seq,
          source,
          numbers: toNumbers(report),
          ms: Date.now() - t0,
          at: new Date().toISOString(),
        };
      } catch (e) {
        msg = {
          type: 'error',
          source,
          message: `met params for ${source.kind === 'config' ? source.path : `run ${source.name}`}: ${(e as Error).message}`,
        };
      }
      if (seq !== this.seq) return; // a newer computation is under way
      this.computed = seq;
      this.last = msg;
      this.post(msg);
    })();
  }

  private html(): string {
    const s = this.source;
    return webviewPage(this.panel.webview, this.context.extensionUri, {
      bundle: 'params',
      title: `Params: ${s.name}`,
      body: `<main id="met-params" data-source="${esc(s.path)}" data-kind="${s.kind}" data-name="${esc(s.name)}" data-status="computing">
  <header>
    <h1 id="source-name">${esc(s.name)}</h1>
    <span id="source-kind">${s.kind === 'config' ? 'config file' : 'run'}</span>
    <button id="refresh" type="button" title="Recompute (met params)">Recompute</button>
    <span id="status-text" role="status" aria-live="polite">computing…</span>
  </header>
  <p id="model"></p>
  <section id="cards" aria-label="Totals"></section>
  <section class="panel-row">
    <figure class="wide"><figcaption>Parameters per component <span class="sub">(log scale: the frozen backbone is orders of magnitude larger)</span></figcaption><svg id="group-bars" class="chart" role="img" aria-label="Parameters per component"></svg></figure>
  </section>
  <section class="panel-row">
    <figure class="wide"><figcaption>Share of the trainable parameters</figcaption><svg id="share-bar" class="chart" role="img" aria-label="Share of the trainable parameters"></svg><ul id="share-legend" class="legend"></ul></figure>
  </section>
  <section class="panel-row two">
    <figure><figcaption>MET adapters vs independent adapters <span class="sub">(one adapter per exit token and location)</span></figcaption><svg id="adapter-bars" class="chart" role="img" aria-label="MET adapters versus independent adapters"></svg><p id="adapter-note" class="note"></p></figure>
    <figure><figcaption>GFLOPs per image to reach each exit <span class="sub">(fvcore convention: 1 multiply-add = 1 FLOP)</span></figcaption><svg id="gflops-bars" class="chart" role="img" aria-label="GFLOPs per exit"></svg></figure>
  </section>
  <section class="panel-row two">
    <table id="component-table">
      <caption>Components (as <code>met params</code> lists them)</caption>
      <thead><tr><th class="name">Component</th><th class="shape">Shape</th><th>Count</th><th>Parameters</th><th>Trained</th></tr></thead>
      <tbody id="component-rows"></tbody>
    </table>
    <table id="exit-table">
      <caption>Exits</caption>
      <thead><tr><th>Exit</th><th>Layer</th><th>Branch</th><th>Branch params</th><th>GFLOPs</th><th>Segment</th></tr></thead>
      <tbody id="exit-rows"></tbody>
    </table>
  </section>
</main>`,
    });
  }
}

/** A source from a command argument: a config file or run folder (path or Uri), a runs-view item, or a ParamsSource. */
async function sourceOf(arg: unknown, index: RunIndex): Promise<ParamsSource | undefined> {
  let p: string | undefined;
  if (typeof arg === 'string' && arg) p = arg;
  else if (arg instanceof vscode.Uri) p = arg.fsPath;
  else if (arg && typeof arg === 'object') {
    const o = arg as { run?: { dir?: string }; runDir?: string; configFile?: string; fsPath?: string; path?: string };
    p = o.configFile ?? o.runDir ?? o.run?.dir ?? o.fsPath ?? o.path;
  }
  if (!p) return undefined;
  p = norm(p);
  const st = await fs.promises.stat(p).catch(() => null);
  if (st?.isDirectory()) {
    const info = await index.info(p);
    if (!info) throw new Error(`${p} is neither a config file nor a run folder (no readable config.json)`);
    return { kind: 'run', path: p, name: info.name };
  }
  if (st?.isFile()) {
    // A run's own config.json names the run; any other JSON file is a met config.
    if (path.basename(p) === RUN_FILE.config && (await index.info(path.dirname(p))))
      return { kind: 'run', path: path.dirname(p), name: path.basename(path.dirname(p)) };
    return { kind: 'config', path: p, name: path.basename(p) };
  }
  throw new Error(`${p} does not exist`);
}

/** The active editor's config file, else a pick among the workspace's config files and runs. */
async function pickSource(index: RunIndex): Promise<ParamsSource | undefined> {
  const active = vscode.window.activeTextEditor?.document.uri;
  if (active?.scheme === 'file' && isConfigFileName(active.fsPath))
    return { kind: 'config', path: norm(active.fsPath), name: path.basename(active.fsPath) };
  const files = await vscode.workspace.findFiles('**/{met.config.json,*.met.json}', '**/{node_modules,.git}/**', 200);
  const runs = await index.runs();
  type Item = vscode.QuickPickItem & { source?: ParamsSource };
  const items: Item[] = [
    ...(files.length ? [{ label: 'Config files', kind: vscode.QuickPickItemKind.Separator } as Item] : []),
    ...files.map((f) => ({
      label: path.basename(f.fsPath),
      description: vscode.workspace.asRelativePath(path.dirname(f.fsPath)),
      source: { kind: 'config', path: norm(f.fsPath), name: path.basename(f.fsPath) } as ParamsSource,
    })),
    ...(runs.length ? [{ label: 'Runs', kind: vscode.QuickPickItemKind.Separator } as Item] : []),
    ...runs.map((r) => ({
      label: r.name,
      description: r.status,
      source: { kind: 'run', path: r.dir, name: r.name } as ParamsSource,
    })),
  ];
  if (!items.length) {
    void vscode.window.showInformationMessage(
      'MET: no met.config.json, *.met.json or run in this workspace (MET: Create config makes one).',
    );
    return undefined;
  }
  const pick = await vscode.window.showQuickPick(items, {
    title: 'MET: Show parameter counts',
    placeHolder: 'Config file or run',
  });
  return pick?.source;
}

export function registerParamsPanel(context: vscode.ExtensionContext): void {
  const index = getRunIndex(context);
  context.subscriptions.push(
    vscode.commands.registerCommand('met.showParams', async (arg?: unknown) => {
      let source: ParamsSource | undefined;
      try {
        source = arg === undefined ? await pickSource(index) : await sourceOf(arg, index);
      } catch (e) {
        void vscode.window.showErrorMessage(`MET: parameter counts: ${(e as Error).message}`);
        return undefined;
      }
      if (!source) return undefined;
      ParamsPanel.show(context, source);
      return source.path;
    }),
  );
  // met.params.snapshot (not contributed, tests only): what each panel's webview last reported.
  paramsPanels.register(context, {
    snapshotCommand: 'met.params.snapshot',
    snapshotFields: (p) => ({ source: p.source, computed: p.computed }),
    async restore(panel, saved) {
      const s = (saved as ParamsState | undefined)?.source;
      // The file or run is gone: no blank panel.
      if (!s || !fs.existsSync(s.path) || paramsPanels.has(s.path)) return undefined;
      return new ParamsPanel(context, panel, s);
    },
  });
}
