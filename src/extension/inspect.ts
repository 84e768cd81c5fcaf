// Inspect exits: for a run and a set of images (the run's own test split, or folders / images
// from the explorer), a grid of images by exits with each exit's confidence and class, the exit
// each image takes under the thresholds, a per-class summary, the selected image with per-layer
// bars, and the budget slider (webview-ui/inspect/main.ts draws all of it).
//
// Where the numbers come from:
//   - the run's test split: predictions.json, written by the engine at evaluation (no inference);
//   - other images: the engine process ('inspect/score', the same predictor as `met predict
//     --run`), in chunks of 32, the rows on screen first, then the rest in the background;
//   - thumbnails: the engine ('inspect/thumbs', sharp) into <workspace>/.met/cache/thumbs, served
//     to the webview with asWebviewUri (that folder and dist/webview are the only
//     localResourceRoots: the image folders themselves are never exposed to the webview);
//   - the budget slider's curve and saved point: thresholds.json. The slider itself is computed
//     in the webview with the engine's applyThresholds (bundled there), and "Save thresholds"
//     writes thresholds.json `chosen` here, with saveChosenThresholds (src/engine/run/runFolder.ts);
//     `met predict --run` and `met export` then use it.
//
// Stable element ids inside the webview (for UI tests; webview-ui/inspect/main.ts fills them):
//   #met-inspect         root; data-run-dir, data-source (JSON SourceInfo)
//   #run-select #source  #src-test #src-folder #src-files
//   #budget-slider (input range over the curve points)  #acc #gflops #point-p #thresholds #saved-badge #save
//   #dist (SVG exit distribution)  #dist-legend  #curve (SVG accuracy vs GFLOPs)
//   #grid (role=grid, focusable: arrows, PageUp/Down, Home/End, Enter)  #grid-head  #grid-scroll
//     .row[data-index] > .cell.num .cell.thumb>img .cell.name .cell.exit(.hN heat bin, .taken, .wrong)
//   #detail[data-index] > #detail-img #detail-name #detail-label #detail-bars > li.bar-row[data-exit]
//   #summary-rows > tr[data-class] (first: tr.all)   #status
//
// State: the webview keeps its run, source, scroll position, active cell, selection and slider
// point with setState; a WebviewPanelSerializer revives the panel after a window reload.
// Test-only commands (not contributed): met.inspect.snapshot (what each webview last reported)
// and met.inspect.test (drive a webview: slider, keys, selection, save, a measured scroll).

import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { RunConfigFile, SplitPredictions, ThresholdsFile } from '../engine/run/runFolder';
import { IMAGE_EXTENSIONS, listImageFiles } from '../engine/data/files';
import { findTargetsFile, joinTargets, parseTargets, TARGET_FILE_NAMES } from '../engine/data/targetsFile';
import { agreementConfidence } from '../engine/infer/exitScores';
import { encodeThreshold, saveChosenThresholds } from '../engine/run/runFolder';
import type { ScoreResult } from '../engine/explore/types';
import type {
  HostMessage,
  InitMessage,
  InspectState,
  Perf,
  RenderedSnapshot,
  RunChoice,
  SourceInfo,
  TestAction,
  WebviewMessage,
} from '../../webview-ui/inspect/protocol';
import { buildCurve, type CurveData } from './inspectCurve';
import { getEngines } from './engineClient';
import { log } from './log';
import { norm } from './runFiles';
import { getRunIndex, type RunIndex } from './runIndex';
import { esc, webviewOptions, webviewPage } from './webviewPage';

export const INSPECT_VIEW_TYPE = 'met.inspect';
/** Images per 'inspect/score' request: one batch of the engine's predictor. */
const SCORE_CHUNK = 32;
/** Thumbnails per request, and how far beyond the screen they are fetched ahead. */
const THUMB_CHUNK = 48;
const THUMB_AHEAD = 40;
const GRID_THUMB = 64;
const DETAIL_THUMB = 256;
const TOP_K = 3;

const TEST_SOURCE: SourceInfo = { kind: 'test', paths: [], label: 'test split' };

const sourceKey = (s: SourceInfo) => (s.kind === 'test' ? 'test' : `paths:${s.paths.map(norm).join('\n')}`);

async function readJsonFile<T>(file: string, what: string): Promise<T> {
  let text: string;
  try {
    text = await fs.promises.readFile(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new Error(
      code === 'ENOENT' ? `${file} does not exist (${what})` : `cannot read ${file} (${code ?? (e as Error).message})`,
    );
  }
  try {
    return JSON.parse(text) as T;
  } catch (e) {
    throw new Error(`${file}: not valid JSON (${(e as Error).message})`);
  }
}

/** A source of explicit files or folders, labelled for the header. */
export function pathsSource(paths: string[]): SourceInfo {
  const abs = paths.map((p) => path.resolve(p));
  const rel = (p: string) => {
    const ws = vscode.workspace.getWorkspaceFolder(vscode.Uri.file(p));
    return ws ? path.relative(ws.uri.fsPath, p) || path.basename(p) : p;
  };
  const label =
    abs.length === 1
      ? rel(abs[0])
      : `${abs.length} selected: ${abs
          .slice(0, 3)
          .map((p) => path.basename(p))
          .join(', ')}${abs.length > 3 ? ', …' : ''}`;
  return { kind: 'paths', paths: abs, label };
}

/**
 * Regression targets of images picked from disk: the targets file (TARGET_FILE_NAMES, the order
 * met train looks in) at the root of a picked folder (or of the folder of picked files), or of
 * the nearest folder above it, joined as met train joins them. Images without an entry get NaN (shown without error).
 */
export async function folderTargets(
  paths: string[],
  files: string[],
): Promise<{ targets: Float64Array; from: string }> {
  const targets = new Float64Array(files.length).fill(NaN);
  const found = new Map<string, string | null>(); // folder -> its targets file (null: none)
  const fileOf = (dir: string): string | null => {
    if (!found.has(dir)) {
      let f: string | null = null;
      try {
        f = findTargetsFile(dir);
      } catch {
        f = null;
      }
      found.set(dir, f);
    }
    return found.get(dir)!;
  };
  // The picked folder, or the folder of picked files, or the nearest one above (3 levels at most)
  // with a targets file: a subfolder of a regression data folder finds the folder's targets.
  const roots = new Set<string>();
  for (const p of paths) {
    let dir = fs.statSync(p).isDirectory() ? p : path.dirname(p);
    for (let up = 0; up < 3 && !fileOf(dir); up++) {
      const parent = path.dirname(dir);
      if (parent === dir) break;
      dir = parent;
    }
    if (fileOf(dir)) roots.add(dir);
  }
  const used: string[] = [];
  const index = new Map(files.map((f, i) => [f, i]));
  for (const root of roots) {
    const tf = fileOf(root)!;
    const under = files.filter((f) => !path.relative(root, f).startsWith('..'));
    let joined;
    try {
      joined = joinTargets(
        root,
        under,
        parseTargets(await fs.promises.readFile(tf, 'utf8'), path.basename(tf)),
        path.basename(tf),
      );
    } catch (e) {
      log().warn(`Inspect exits: ${tf}: ${(e as Error).message}`);
      continue;
    }
    for (const s of joined.samples) {
      const i = index.get(s.file);
      if (i !== undefined) targets[i] = s.value;
    }
    used.push(vscode.workspace.asRelativePath(tf));
  }
  return { targets, from: used.length ? used.join(', ') : `no targets file (${TARGET_FILE_NAMES.join(', ')})` };
}

// ---- One panel ----

/** What the 'init' message says about the images: files, labels or targets, stored scores (test split). */
type LoadedImages = Pick<
  InitMessage,
  | 'files'
  | 'names'
  | 'labels'
  | 'conf'
  | 'pred'
  | 'skipped'
  | 'task'
  | 'targets'
  | 'value'
  | 'targetScale'
  | 'targetsFrom'
>;

/** A loaded run and source: the run's settings and curve, and the images as the webview gets them. */
interface Loaded extends LoadedImages {
  cf: RunConfigFile;
  K: number;
  curve: CurveData;
  gflops: number[];
}

class InspectPanel implements vscode.Disposable {
  static readonly panels = new Map<string, InspectPanel>();

  private readonly disposables: vscode.Disposable[] = [];
  private watcher: vscode.Disposable[] = [];
  private ready = false;
  private disposed = false;
  /** Bumped on every (re)load: answers for an older load are dropped. */
  private generation = 0;
  private loaded: Loaded | null = null;
  private loadError: string | undefined;
  // Engine results kept here, so a rebuilt webview (hidden and shown) gets them without asking again.
  private scoreState = new Uint8Array(0); // 0 to do, 1 in flight, 2 done (ok or unreadable)
  private scoreOk = new Uint8Array(0);
  private scoreConf = new Float32Array(0); // [n * K] image-major
  private scorePred = new Int32Array(0);
  private scoreValue = new Float32Array(0); // regression: [n * K] image-major
  private topProb = new Float32Array(0); // [n * K * TOP_K]
  private topClass = new Int32Array(0);
  private scoredCount = 0;
  private scoring = false;
  private scoreFailedAt = 0;
  private cursor = 0;
  private thumbState = new Uint8Array(0); // 0 none, 1 in flight, 2 done
  private thumbPaths: (string | null)[] = [];
  private thumbing = false;
  private visible = { first: 0, last: -1 };
  /** What the webview last reported (setState contents + rendered values + timings). */
  snapshot: { state: InspectState; rendered: RenderedSnapshot; perf: Perf } | undefined;
  readyCount = 0;
  get isReady(): boolean {
    return this.ready;
  }
  get isDisposed(): boolean {
    return this.disposed;
  }
  /** ms from the command (or the panel's revival) to the webview's first frame with rows, measured here. */
  firstPaintMs: number | undefined;
  /** The same, measured in the webview from its document's start. */
  webviewFirstPaintMs: number | undefined;
  /** When every image of a scored source had its scores (ms after opening), for the log and tests. */
  allScoredMs: number | undefined;

  static key(runDir: string, source: SourceInfo): string {
    return `${norm(runDir)}\n${sourceKey(source)}`;
  }

  /**
   * The last state each panel's webview posted, kept in a file of the extension's workspace
   * storage (written by the extension host, so a window reload cannot lose it): the serializer
   * hands it to the revived webview next to the state VS Code kept, and the newer one wins.
   */
  static states: Map<string, InspectState> | undefined;
  private static statesTimer: ReturnType<typeof setTimeout> | undefined;

  static statesFile(context: vscode.ExtensionContext): string {
    return path.join((context.storageUri ?? context.globalStorageUri).fsPath, 'inspect-states.json');
  }

  static loadStates(context: vscode.ExtensionContext): Map<string, InspectState> {
    if (!InspectPanel.states) {
      try {
        InspectPanel.states = new Map(
          Object.entries(
            JSON.parse(fs.readFileSync(InspectPanel.statesFile(context), 'utf8')) as Record<string, InspectState>,
          ),
        );
      } catch {
        InspectPanel.states = new Map();
      }
    }
    return InspectPanel.states;
  }

  private rememberState(s: InspectState): void {
    const states = InspectPanel.loadStates(this.context);
    const key = InspectPanel.key(this.runDir, this.source);
    states.delete(key);
    states.set(key, s);
    // The 20 most recent panels are plenty.
    while (states.size > 20) states.delete(states.keys().next().value!);
    clearTimeout(InspectPanel.statesTimer);
    const file = InspectPanel.statesFile(this.context);
    InspectPanel.statesTimer = setTimeout(() => {
      fs.promises
        .mkdir(path.dirname(file), { recursive: true })
        .then(() => fs.promises.writeFile(file, JSON.stringify(Object.fromEntries(states))))
        .catch((e: Error) => log().warn(`Inspect exits: cannot keep the panel state in ${file}: ${e.message}`));
    }, 200);
  }

  static show(context: vscode.ExtensionContext, runDir: string, source: SourceInfo, openedAt: number): InspectPanel {
    const open = InspectPanel.panels.get(InspectPanel.key(runDir, source));
    if (open) {
      open.panel.reveal();
      return open;
    }
    const panel = vscode.window.createWebviewPanel(
      INSPECT_VIEW_TYPE,
      InspectPanel.title(runDir, source),
      vscode.ViewColumn.Active,
      InspectPanel.options(context),
    );
    return new InspectPanel(context, panel, norm(runDir), source, openedAt);
  }

  static title(runDir: string, source: SourceInfo): string {
    return `Inspect: ${path.basename(runDir)}${source.kind === 'test' ? '' : ` · ${source.label}`}`;
  }

  /** The thumbnail cache: <workspace folder of the run, or the first one>/.met/cache/thumbs. */
  static thumbsDir(context: vscode.ExtensionContext, runDir?: string): string {
    const ws =
      (runDir && vscode.workspace.getWorkspaceFolder(vscode.Uri.file(runDir))) ||
      vscode.workspace.workspaceFolders?.find((f) => f.uri.scheme === 'file');
    return ws
      ? path.join(ws.uri.fsPath, '.met', 'cache', 'thumbs')
      : path.join(context.globalStorageUri.fsPath, 'thumbs');
  }

  static options(
    context: vscode.ExtensionContext,
    runDir?: string,
  ): vscode.WebviewPanelOptions & vscode.WebviewOptions {
    return webviewOptions(context, [vscode.Uri.file(InspectPanel.thumbsDir(context, runDir))]);
  }

  constructor(
    private readonly context: vscode.ExtensionContext,
    readonly panel: vscode.WebviewPanel,
    public runDir: string,
    public source: SourceInfo,
    private openedAt: number,
    /** After a window reload: the state the host kept for this panel (see states). */
    private restoredState?: InspectState,
  ) {
    InspectPanel.panels.set(InspectPanel.key(runDir, source), this);
    panel.iconPath = vscode.Uri.joinPath(context.extensionUri, 'media', 'icon.svg');
    panel.webview.options = InspectPanel.options(context, runDir);
    panel.webview.html = this.html();
    this.watch();
    this.disposables.push(
      panel.onDidDispose(() => this.dispose()),
      panel.webview.onDidReceiveMessage((m: WebviewMessage) => void this.onMessage(m)),
      panel.onDidChangeViewState(() => {
        // A hidden webview is destroyed (no retainContextWhenHidden); it says 'ready' again when shown.
        if (!panel.visible) this.ready = false;
      }),
    );
  }

  get thumbsDir(): string {
    return InspectPanel.thumbsDir(this.context, this.runDir);
  }

  private html(): string {
    const src = esc(JSON.stringify(this.source));
    const kept = this.restoredState ? ` data-state="${esc(JSON.stringify(this.restoredState))}"` : '';
    return webviewPage(this.panel.webview, this.context.extensionUri, {
      bundle: 'inspect',
      title: `Inspect exits: ${path.basename(this.runDir)}`,
      images: true,
      body: `<main id="met-inspect" data-run-dir="${esc(this.runDir)}" data-source="${src}"${kept}>
  <header>
    <h1>Inspect exits</h1>
    <label class="muted" for="run-select">Run</label>
    <select id="run-select" aria-label="Run"><option>${esc(path.basename(this.runDir))}</option></select>
    <span id="run-name" hidden>${esc(path.basename(this.runDir))}</span>
    <span class="muted">Images:</span> <strong id="source">${esc(this.source.label)}</strong>
    <button id="src-test" class="secondary" title="The run's test split, from its stored predictions (no inference)">Test split</button>
    <button id="src-folder" class="secondary" title="Score the images of a folder with this run">Folder…</button>
    <button id="src-files" class="secondary" title="Score chosen images with this run">Images…</button>
  </header>
  <section id="budget" aria-label="Budget">
    <div class="budget-controls">
      <h2 id="budget-title">Budget: thresholds along the run's accuracy / GFLOPs curve</h2>
      <div class="slider-row">
        <span class="muted">cheaper</span>
        <input type="range" id="budget-slider" min="0" max="0" step="1" value="0" aria-label="Budget: point of the accuracy versus GFLOPs curve">
        <span class="muted">more accurate</span>
      </div>
      <div class="readouts">
        <div class="readout"><span class="muted" id="acc-label">Accuracy</span><span class="value" id="acc">–</span></div>
        <div class="readout"><span class="muted">Mean GFLOPs / image</span><span class="value" id="gflops">–</span></div>
        <div class="readout"><span class="muted">Point</span><span class="value" id="point-p">–</span></div>
        <span id="saved-badge" class="badge">–</span>
        <button id="save" disabled title="Write these thresholds to the run's thresholds.json (chosen): met predict and met export use them">Save thresholds</button>
      </div>
      <div id="thresholds" aria-label="Thresholds per exit"></div>
      <svg id="dist" role="img" aria-label="Where images exit"></svg>
      <ul id="dist-legend"></ul>
      <div id="budget-note"></div>
    </div>
    <svg id="curve" role="img" aria-label="Accuracy versus mean GFLOPs of the budget curve"></svg>
  </section>
  <section id="main">
    <div id="grid" role="grid" tabindex="0" aria-label="Images by exits: confidence and predicted class; arrows move, Enter selects">
      <div id="grid-head"></div>
      <div id="grid-scroll"><div id="grid-spacer"></div><div id="grid-rows" role="rowgroup"></div></div>
    </div>
    <aside id="detail" aria-label="Selected image" aria-live="polite">
      <img id="detail-img" alt="" width="192" height="192">
      <div id="detail-name"></div>
      <div id="detail-label"></div>
      <ol id="detail-bars"></ol>
    </aside>
  </section>
  <section id="summary" aria-label="Per-class summary">
    <h2 id="summary-title">Per class</h2>
    <table id="class-table"><thead><tr id="summary-head"></tr></thead><tbody id="summary-rows"></tbody></table>
    <div id="summary-note"></div>
  </section>
  <div id="status" role="status"></div>
</main>`,
    });
  }

  /** Watches the run's thresholds.json (saved elsewhere, refitted by met eval) and predictions.json. */
  private watch(): void {
    this.watcher.forEach((d) => d.dispose());
    const w = vscode.workspace.createFileSystemWatcher(
      new vscode.RelativePattern(vscode.Uri.file(this.runDir), '{thresholds,predictions}.json'),
    );
    const on = (u: vscode.Uri) => void this.onRunFileChanged(path.basename(u.fsPath));
    this.watcher = [w, w.onDidChange(on), w.onDidCreate(on)];
  }

  private async onRunFileChanged(name: string): Promise<void> {
    if (!this.loaded || !this.ready) return;
    if (name === 'predictions.json' && this.source.kind === 'test') return void this.load();
    if (name !== 'thresholds.json') return;
    try {
      const th = await readJsonFile<ThresholdsFile>(
        path.join(this.runDir, 'thresholds.json'),
        'the run has not been evaluated',
      );
      const c = buildCurve(th, this.loaded.K, await this.testPredictions().catch(() => null));
      if (c.chosenKey === this.loaded.curve.chosenKey && c.curve.p.length === this.loaded.curve.curve.p.length) return; // our own save
      this.loaded.curve = c;
      this.send({
        type: 'chosen',
        curve: c.curve,
        chosen: c.chosen,
        chosenSource: c.chosenSource,
        message: 'thresholds.json changed on disk: curve and saved point re-read',
      });
    } catch (e) {
      this.send({ type: 'status', text: (e as Error).message, error: true });
    }
  }

  private send(m: HostMessage): void {
    if (!this.ready || this.disposed) return; // the next 'ready' gets everything again
    void this.panel.webview.postMessage(m);
  }

  private async onMessage(m: WebviewMessage): Promise<void> {
    switch (m.type) {
      case 'ready':
        this.ready = true;
        this.readyCount++;
        this.snapshot = undefined;
        if (this.loaded && !this.loadError) this.sendAll();
        else await this.load();
        break;
      case 'visible':
        this.visible = { first: Math.max(0, m.first), last: m.last };
        void this.pumpThumbs();
        if (Date.now() - this.scoreFailedAt > 5000) void this.pumpScores();
        break;
      case 'detail':
        void this.detail(m.index);
        break;
      case 'save':
        await this.save(m.point);
        break;
      case 'pickRun':
        await this.retarget(m.dir, this.source);
        break;
      case 'pickSource':
        await this.pickSource(m.kind);
        break;
      case 'state':
        this.snapshot = { state: m.state, rendered: m.rendered, perf: m.perf };
        if (m.state.runDir === this.runDir) this.rememberState(m.state);
        break;
      case 'painted':
        this.webviewFirstPaintMs ??= m.ms;
        if (this.firstPaintMs === undefined) {
          this.firstPaintMs = Date.now() - this.openedAt;
          log().info(
            `Inspect exits: first paint of ${path.basename(this.runDir)} (${this.source.label}, ${this.loaded?.files.length ?? 0} images) ${this.firstPaintMs} ms after opening (webview: ${Math.round(m.ms)} ms after its document started)`,
          );
        }
        break;
    }
  }

  private testPredictions(): Promise<SplitPredictions | null> {
    return readJsonFile<{ test: SplitPredictions }>(
      path.join(this.runDir, 'predictions.json'),
      'the run has not been evaluated yet',
    ).then((p) => p.test ?? null);
  }

  /** Reads the run and the images, resets the engine caches, and sends 'init'. */
  private async load(): Promise<void> {
    const gen = ++this.generation;
    this.loaded = null;
    this.loadError = undefined;
    try {
      const cf = await readJsonFile<RunConfigFile>(path.join(this.runDir, 'config.json'), 'not a MET run folder');
      const K = cf.met.exits.length;
      const thFile = path.join(this.runDir, 'thresholds.json');
      const th = fs.existsSync(thFile) ? await readJsonFile<ThresholdsFile>(thFile, '') : null;
      const test = this.source.kind === 'test' || (th && !th.curve?.length) ? await this.testPredictions() : null;
      if (this.source.kind === 'test' && !test) throw new Error(`${this.runDir}: predictions.json has no test split`);
      const curve = buildCurve(th, K, test);
      const regression = cf.met?.task === 'regression';
      // Regression runs: the colour scale of agreement and error (the training targets' std).
      const reg = regression
        ? {
            task: 'regression' as const,
            targetScale: typeof cf.met.targetStd === 'number' && cf.met.targetStd > 0 ? cf.met.targetStd : 1,
          }
        : {};
      const gflops =
        th?.gflops?.length === K
          ? th.gflops
          : ((
              await readJsonFile<{ exits: { gflops: number }[] }>(
                path.join(this.runDir, 'summary.json'),
                'the run has not finished',
              ).catch(() => null)
            )?.exits.map((e) => e.gflops) ?? new Array<number>(K).fill(NaN));
      let loaded: Loaded;
      if (this.source.kind === 'test') {
        const t = test!;
        const n = t.files.length;
        const root = cf.dataset?.root ?? '';
        const names = t.files.map((f) => (root ? path.relative(root, f) : path.basename(f)));
        // Regression (predictions.json: pred = values, labels = targets): the agreement is
        // recomputed from the values as exitScores does (JSON stores exit 1's NaN as null).
        const agree = regression ? agreementConfidence(t.pred) : null;
        const conf = new Float32Array(K * n);
        const pred = new Int32Array(K * n).fill(-1);
        const value = regression ? new Float32Array(K * n) : undefined;
        for (let j = 0; j < K; j++) {
          conf.set(agree ? agree[j] : t.conf[j], j * n);
          if (value) value.set(t.pred[j], j * n);
          else pred.set(t.pred[j], j * n);
        }
        loaded = regression
          ? {
              cf,
              K,
              curve,
              gflops,
              files: t.files,
              names,
              labels: new Int32Array(n).fill(-1),
              conf,
              pred,
              skipped: 0,
              ...reg,
              targets: Float64Array.from(t.labels, (v) => (typeof v === 'number' ? v : NaN)),
              targetsFrom: 'the targets met train read',
              value,
            }
          : { cf, K, curve, gflops, files: t.files, names, labels: Int32Array.from(t.labels), conf, pred, skipped: 0 };
      } else {
        const listed = await listImageFiles(this.source.paths);
        const files = listed.files.map((f) => path.resolve(f));
        const base =
          this.source.paths.length === 1 && fs.statSync(this.source.paths[0]).isDirectory()
            ? this.source.paths[0]
            : undefined;
        const names = files.map((f) => {
          if (base) return path.relative(base, f);
          const ws = vscode.workspace.getWorkspaceFolder(vscode.Uri.file(f));
          return ws ? path.relative(ws.uri.fsPath, f) : path.basename(f);
        });
        // A class folder named like one of the run's classes gives the label (as met predict --eval and met eval --data).
        const labels = regression
          ? new Int32Array(files.length).fill(-1)
          : Int32Array.from(files, (f) => cf.classes.indexOf(path.basename(path.dirname(f))));
        // Regression: targets from a targets file next to the images (as met train finds one), when there is one.
        const t = regression ? await folderTargets(this.source.paths, files) : null;
        loaded = {
          cf,
          K,
          curve,
          gflops,
          files,
          names,
          labels,
          skipped: listed.skipped.length,
          ...reg,
          ...(t ? { targets: t.targets, targetsFrom: t.from } : {}),
        };
        if (!files.length)
          throw new Error(
            `no image files in ${this.source.paths.join(', ')}${listed.skipped.length ? ` (${listed.skipped.length} other files skipped)` : ''}`,
          );
      }
      if (gen !== this.generation) return;
      this.loaded = loaded;
      this.resetCaches(loaded);
      this.panel.title = InspectPanel.title(this.runDir, this.source);
      this.sendAll();
    } catch (e) {
      if (gen !== this.generation) return;
      this.loadError = (e as Error).message;
      log().error(`Inspect exits: ${this.loadError}`);
      this.send({ type: 'status', text: this.loadError, error: true });
    }
  }

  private resetCaches(l: Loaded): void {
    const n = l.files.length;
    const K = l.K;
    const stored = !!l.conf;
    this.scoreState = new Uint8Array(n).fill(stored ? 2 : 0);
    this.scoreOk = new Uint8Array(n).fill(stored ? 1 : 0);
    this.scoreConf = new Float32Array(stored ? 0 : n * K).fill(NaN);
    this.scorePred = new Int32Array(stored ? 0 : n * K).fill(-1);
    this.scoreValue = new Float32Array(stored || l.task !== 'regression' ? 0 : n * K).fill(NaN);
    this.topProb = new Float32Array(stored ? 0 : n * K * TOP_K).fill(NaN);
    this.topClass = new Int32Array(stored ? 0 : n * K * TOP_K).fill(-1);
    this.scoredCount = stored ? n : 0;
    this.cursor = 0;
    this.thumbState = new Uint8Array(n);
    this.thumbPaths = new Array<string | null>(n).fill(null);
    this.visible = { first: 0, last: -1 };
    this.allScoredMs = undefined;
  }

  private async runChoices(): Promise<RunChoice[]> {
    const runs = await getRunIndex(this.context).runs();
    const out: RunChoice[] = runs
      .filter((r) => r.status === 'done' || norm(r.dir) === this.runDir)
      .map((r) => {
        const last = r.accuracy[r.accuracy.length - 1];
        const detail =
          r.task === 'regression'
            ? last && last.mae != null
              ? `last exit MAE ${last.mae.toPrecision(4)}`
              : r.status
            : last && last.accuracy !== null
              ? `last exit ${(100 * last.accuracy).toFixed(1)}%`
              : r.status;
        return { dir: norm(r.dir), name: r.name, detail };
      });
    if (!out.some((r) => r.dir === this.runDir))
      out.unshift({ dir: this.runDir, name: path.basename(this.runDir), detail: '' });
    return out;
  }

  /** Everything the webview needs: 'init', then what the engine has answered so far. */
  private sendAll(): void {
    const l = this.loaded;
    if (!l) return;
    void this.runChoices().then((runs) => {
      if (this.loaded !== l) return;
      const { cf, K: _K, curve, gflops, ...images } = l;
      const init: InitMessage = {
        type: 'init',
        runDir: this.runDir,
        runName: path.basename(this.runDir),
        runs,
        source: this.source,
        classes: cf.classes,
        layers: Int32Array.from(cf.met.exits),
        gflops: Float64Array.from(gflops),
        used: Int32Array.from(curve.used),
        curve: curve.curve,
        chosen: curve.chosen,
        chosenSource: curve.chosenSource,
        ...images,
      };
      this.send(init);
      if (!l.conf) {
        const done: number[] = [];
        for (let i = 0; i < l.files.length; i++) if (this.scoreState[i] === 2) done.push(i);
        if (done.length) this.sendScores(done);
      }
      const th: number[] = [];
      for (let i = 0; i < l.files.length; i++) if (this.thumbState[i] === 2) th.push(i);
      if (th.length) this.sendThumbs(th);
    });
  }

  private sendScores(index: number[]): void {
    const l = this.loaded!;
    const K = l.K;
    const m = index.length;
    const conf = new Float32Array(m * K);
    const pred = new Int32Array(m * K);
    const tp = new Float32Array(m * K * TOP_K);
    const tc = new Int32Array(m * K * TOP_K);
    const value = l.task === 'regression' ? new Float32Array(m * K) : undefined;
    index.forEach((i, r) => {
      value?.set(this.scoreValue.subarray(i * K, (i + 1) * K), r * K);
      conf.set(this.scoreConf.subarray(i * K, (i + 1) * K), r * K);
      pred.set(this.scorePred.subarray(i * K, (i + 1) * K), r * K);
      tp.set(this.topProb.subarray(i * K * TOP_K, (i + 1) * K * TOP_K), r * K * TOP_K);
      tc.set(this.topClass.subarray(i * K * TOP_K, (i + 1) * K * TOP_K), r * K * TOP_K);
    });
    this.send({
      type: 'scores',
      index: Int32Array.from(index),
      ok: Uint8Array.from(index, (i) => this.scoreOk[i]),
      conf,
      pred,
      k: l.task === 'regression' ? 0 : TOP_K,
      topProb: tp,
      topClass: tc,
      ...(value ? { value } : {}),
      scored: this.scoredCount,
      total: l.files.length,
    });
  }

  private sendThumbs(index: number[]): void {
    const w = this.panel.webview;
    this.send({
      type: 'thumbs',
      index: Int32Array.from(index),
      uris: index.map((i) =>
        this.thumbPaths[i] ? w.asWebviewUri(vscode.Uri.file(this.thumbPaths[i]!)).toString() : null,
      ),
    });
  }

  /** The next images to score: those on screen first, then the rest in order (background). */
  private nextScoreChunk(): number[] {
    const n = this.scoreState.length;
    const out: number[] = [];
    for (let i = this.visible.first; i <= Math.min(n - 1, this.visible.last) && out.length < SCORE_CHUNK; i++)
      if (!this.scoreState[i]) out.push(i);
    if (out.length) return out;
    while (this.cursor < n && this.scoreState[this.cursor]) this.cursor++;
    for (let i = this.cursor; i < n && out.length < SCORE_CHUNK; i++) if (!this.scoreState[i]) out.push(i);
    return out;
  }

  /**
   * Scores images in chunks, one request at a time, so other requests to the engine (a
   * thumbnail, another panel) get their turn between chunks. Continues in the background until
   * every image has scores (the slider and the summary need them all), while the panel is open.
   */
  private async pumpScores(): Promise<void> {
    const l = this.loaded;
    if (this.scoring || !l || l.conf || this.disposed) return;
    this.scoring = true;
    const gen = this.generation;
    try {
      for (;;) {
        if (this.disposed || gen !== this.generation) return;
        const chunk = this.nextScoreChunk();
        if (!chunk.length) break;
        chunk.forEach((i) => (this.scoreState[i] = 1));
        let r: ScoreResult;
        try {
          r = await getEngines().request('inspect/score', {
            runDir: this.runDir,
            files: chunk.map((i) => l.files[i]),
            topK: TOP_K,
          });
        } catch (e) {
          chunk.forEach((i) => (this.scoreState[i] = 0));
          this.scoreFailedAt = Date.now();
          this.send({ type: 'status', text: `scoring failed: ${(e as Error).message}`, error: true });
          log().error(`Inspect exits: inspect/score on ${this.runDir} failed: ${(e as Error).message}`);
          return;
        }
        if (gen !== this.generation) return;
        const K = l.K;
        const k = r.topProb.length / Math.max(1, chunk.length * K);
        chunk.forEach((i, row) => {
          this.scoreState[i] = 2;
          this.scoreOk[i] = r.ok[row];
          if (!r.ok[row]) return;
          this.scoredCount++;
          this.scoreConf.set(r.conf.subarray(row * K, (row + 1) * K), i * K);
          this.scorePred.set(r.pred.subarray(row * K, (row + 1) * K), i * K);
          if (r.value && this.scoreValue.length) this.scoreValue.set(r.value.subarray(row * K, (row + 1) * K), i * K);
          for (let j = 0; j < K; j++)
            for (let t = 0; t < Math.min(k, TOP_K); t++) {
              this.topProb[(i * K + j) * TOP_K + t] = r.topProb[(row * K + j) * k + t];
              this.topClass[(i * K + j) * TOP_K + t] = r.topClass[(row * K + j) * k + t];
            }
        });
        this.sendScores(chunk);
        if (r.skipped.length)
          this.send({
            type: 'status',
            text: `${r.skipped.length} unreadable: ${r.skipped[0].file}: ${r.skipped[0].reason}`,
          });
      }
      if (this.allScoredMs === undefined && this.scoreState.every((s) => s === 2)) {
        this.allScoredMs = Date.now() - this.openedAt;
        log().info(
          `Inspect exits: scored all ${l.files.length} images of ${this.source.label} with ${path.basename(this.runDir)} in ${(this.allScoredMs / 1000).toFixed(1)} s after opening`,
        );
      }
    } finally {
      this.scoring = false;
      // Another run or source was loaded while a chunk was in flight: start on the new images.
      if (gen !== this.generation && !this.disposed) void this.pumpScores();
    }
  }

  /** Thumbnails for the rows on screen, then a little ahead; never the whole folder. */
  private async pumpThumbs(): Promise<void> {
    const l = this.loaded;
    if (this.thumbing || !l || this.disposed) return;
    this.thumbing = true;
    const gen = this.generation;
    try {
      for (;;) {
        if (this.disposed || gen !== this.generation || !this.ready) return;
        const n = l.files.length;
        const { first, last } = this.visible;
        const out: number[] = [];
        const take = (a: number, b: number) => {
          for (let i = Math.max(0, a); i <= Math.min(n - 1, b) && out.length < THUMB_CHUNK; i++)
            if (!this.thumbState[i]) out.push(i);
        };
        take(first, last);
        if (!out.length) take(last + 1, last + THUMB_AHEAD);
        if (!out.length) take(first - THUMB_AHEAD, first - 1);
        if (!out.length) return;
        out.forEach((i) => (this.thumbState[i] = 1));
        try {
          const r = await getEngines().request('inspect/thumbs', {
            files: out.map((i) => l.files[i]),
            size: GRID_THUMB,
            cacheDir: this.thumbsDir,
          });
          if (gen !== this.generation) return;
          out.forEach((i, row) => {
            this.thumbState[i] = 2;
            this.thumbPaths[i] = r.thumbs[row];
          });
          this.sendThumbs(out);
        } catch (e) {
          out.forEach((i) => (this.thumbState[i] = 0));
          this.send({ type: 'status', text: `thumbnails failed: ${(e as Error).message}`, error: true });
          return;
        }
      }
    } finally {
      this.thumbing = false;
      if (gen !== this.generation && !this.disposed) void this.pumpThumbs();
    }
  }

  /** The selected image: top-k at every exit (scored now unless already known) and a large thumbnail. */
  private async detail(index: number): Promise<void> {
    const l = this.loaded;
    if (!l || index < 0 || index >= l.files.length) return;
    const K = l.K;
    const file = l.files[index];
    const big = getEngines()
      .request('inspect/thumbs', { files: [file], size: DETAIL_THUMB, cacheDir: this.thumbsDir })
      .then((r) => (r.thumbs[0] ? this.panel.webview.asWebviewUri(vscode.Uri.file(r.thumbs[0])).toString() : null))
      .catch(() => null);
    let conf = new Float32Array(K).fill(NaN);
    let pred = new Int32Array(K).fill(-1);
    let tp = new Float32Array(0);
    let tc = new Int32Array(0);
    let k = 0;
    let value: Float32Array | undefined;
    let error: string | undefined;
    if (!l.conf && this.scoreState[index] === 2 && this.scoreOk[index]) {
      conf = this.scoreConf.slice(index * K, (index + 1) * K);
      pred = this.scorePred.slice(index * K, (index + 1) * K);
      tp = this.topProb.slice(index * K * TOP_K, (index + 1) * K * TOP_K);
      tc = this.topClass.slice(index * K * TOP_K, (index + 1) * K * TOP_K);
      k = l.task === 'regression' ? 0 : TOP_K;
      if (l.task === 'regression') value = this.scoreValue.slice(index * K, (index + 1) * K);
    } else {
      try {
        const r = await getEngines().request('inspect/score', { runDir: this.runDir, files: [file], topK: TOP_K });
        if (r.ok[0]) {
          k = r.topProb.length / K;
          conf = r.conf.slice(0, K);
          pred = r.pred.slice(0, K);
          tp = r.topProb.slice();
          tc = r.topClass.slice();
          value = r.value?.slice(0, K);
        } else error = r.skipped[0]?.reason ?? 'unreadable';
      } catch (e) {
        error = (e as Error).message;
      }
    }
    if (this.loaded !== l) return;
    this.send({
      type: 'detail',
      index,
      uri: await big,
      k,
      conf,
      pred,
      topProb: tp,
      topClass: tc,
      ...(value ? { value } : {}),
      error,
    });
  }

  private async save(point: number): Promise<void> {
    const l = this.loaded;
    if (!l) return;
    const c = l.curve;
    const M = c.used.length;
    if (!(point >= 0 && point < c.curve.p.length)) return;
    const T = Array.from(c.curve.thresholds.subarray(point * M, (point + 1) * M));
    const p = c.curve.p[point];
    try {
      const chosen = saveChosenThresholds(this.runDir, {
        p: Number.isFinite(p) ? p : null,
        thresholds: T.map((t) => encodeThreshold(t)),
        source: 'Inspect exits budget slider',
      });
      // Re-read: the curve is the same, the saved point is the one just written.
      const th = await readJsonFile<ThresholdsFile>(path.join(this.runDir, 'thresholds.json'), 'just written');
      l.curve = buildCurve(th, l.K, await this.testPredictions().catch(() => null));
      const msg = `Saved thresholds${chosen.p !== null ? ` (p = ${chosen.p})` : ''} to ${path.join(path.basename(this.runDir), 'thresholds.json')}: met predict and met export use them now`;
      log().info(`Inspect exits: ${msg}`);
      this.send({
        type: 'chosen',
        curve: l.curve.curve,
        chosen: l.curve.chosen,
        chosenSource: l.curve.chosenSource,
        message: msg,
      });
    } catch (e) {
      const msg = `Saving thresholds failed: ${(e as Error).message}`;
      log().error(`Inspect exits: ${msg}`);
      this.send({ type: 'status', text: msg, error: true });
      void vscode.window.showErrorMessage(`MET: ${msg}`);
    }
  }

  /** Another run or other images in this panel: a fresh webview document for them. */
  private async retarget(runDir: string, source: SourceInfo): Promise<void> {
    runDir = norm(runDir);
    const key = InspectPanel.key(runDir, source);
    const other = InspectPanel.panels.get(key);
    if (other && other !== this) {
      other.panel.reveal();
      return;
    }
    InspectPanel.panels.delete(InspectPanel.key(this.runDir, this.source));
    this.runDir = runDir;
    this.source = source;
    InspectPanel.panels.set(key, this);
    this.generation++;
    this.loaded = null;
    this.ready = false;
    this.openedAt = Date.now();
    this.firstPaintMs = undefined;
    this.webviewFirstPaintMs = undefined;
    this.panel.title = InspectPanel.title(runDir, source);
    this.panel.webview.options = InspectPanel.options(this.context, runDir);
    this.watch();
    this.restoredState = undefined;
    this.panel.webview.html = this.html();
  }

  private async pickSource(kind: 'test' | 'folder' | 'files'): Promise<void> {
    if (kind === 'test') return this.retarget(this.runDir, TEST_SOURCE);
    const defaultUri = this.source.paths[0]
      ? vscode.Uri.file(this.source.paths[0])
      : vscode.workspace.workspaceFolders?.[0]?.uri;
    const picked = await vscode.window.showOpenDialog(
      kind === 'folder'
        ? {
            canSelectFolders: true,
            canSelectFiles: false,
            canSelectMany: false,
            openLabel: 'Inspect this folder',
            defaultUri,
          }
        : {
            canSelectFolders: false,
            canSelectFiles: true,
            canSelectMany: true,
            openLabel: 'Inspect these images',
            defaultUri,
            filters: { Images: [...IMAGE_EXTENSIONS] },
          },
    );
    if (picked?.length) await this.retarget(this.runDir, pathsSource(picked.map((u) => u.fsPath)));
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.generation++;
    if (InspectPanel.panels.get(InspectPanel.key(this.runDir, this.source)) === this)
      InspectPanel.panels.delete(InspectPanel.key(this.runDir, this.source));
    this.watcher.forEach((d) => d.dispose());
    this.disposables.forEach((d) => d.dispose());
    this.disposables.length = 0;
    this.panel.dispose();
  }
}

// ---- The command ----

async function isRunFolder(dir: string): Promise<boolean> {
  try {
    const cf = JSON.parse(await fs.promises.readFile(path.join(dir, 'config.json'), 'utf8')) as RunConfigFile;
    return !!cf && typeof cf.version === 'number' && !!cf.met && Array.isArray(cf.met.exits);
  } catch {
    return false;
  }
}

/** Runs that can be inspected (evaluated: predictions.json), newest first. */
async function doneRuns(index: RunIndex): Promise<{ dir: string; name: string; detail: string }[]> {
  const runs = (await index.runs()).filter(
    (r) => r.status === 'done' && fs.existsSync(path.join(r.dir, 'predictions.json')),
  );
  return runs.map((r) => ({
    dir: r.dir,
    name: r.name,
    detail: !r.accuracySource
      ? r.dir
      : r.task === 'regression'
        ? `regression · test MAE per exit: ${r.accuracy.map((a) => (a.mae == null ? '–' : a.mae.toPrecision(4))).join(' / ')}`
        : `test accuracy per exit: ${r.accuracy.map((a) => (a.accuracy === null ? '–' : (100 * a.accuracy).toFixed(1))).join(' / ')}%`,
  }));
}

/** The newest finished run; with `ask`, a quick pick when there are several (newest first, so Enter takes it). */
async function pickRun(index: RunIndex, ask: boolean): Promise<string | undefined> {
  const runs = await doneRuns(index);
  if (!runs.length) {
    void vscode.window.showInformationMessage(
      'MET: no finished run in this workspace to inspect (.met/runs). Fine-tune a folder first (MET: Fine-tune on folder).',
    );
    return undefined;
  }
  if (runs.length === 1 || !ask) return runs[0].dir;
  const pick = await vscode.window.showQuickPick(
    runs.map((r, i) => ({ label: r.name, description: i === 0 ? 'newest' : '', detail: r.detail, dir: r.dir })),
    { title: 'MET: Inspect exits', placeHolder: 'Run to inspect (Enter: the newest)' },
  );
  return pick?.dir;
}

export interface InspectArgs {
  runDir?: string;
  /** Images or folders to score (absolute paths or Uris); absent: the run's test split. */
  paths?: (string | vscode.Uri)[];
}

/**
 * met.inspectExits. Arguments, by caller:
 *   command palette: none (a quick pick of finished runs when there are several; the test split);
 *   explorer context menu: (Uri, Uri[]) of the images / folders (the newest finished run; a run
 *     folder itself opens that run's test split);
 *   config CodeLens, runs view, tests: a run folder (string), {run: {dir}} or InspectArgs.
 * Returns the run folder shown, or undefined.
 */
async function inspectExits(
  context: vscode.ExtensionContext,
  arg?: unknown,
  arg2?: unknown,
): Promise<string | undefined> {
  const openedAt = Date.now();
  const index = getRunIndex(context);
  let runDir: string | undefined;
  let source: SourceInfo | undefined;
  if (arg instanceof vscode.Uri) {
    const uris =
      Array.isArray(arg2) && arg2.length && arg2.every((u) => u instanceof vscode.Uri) ? (arg2 as vscode.Uri[]) : [arg];
    if (uris.length === 1 && (await isRunFolder(arg.fsPath))) runDir = arg.fsPath;
    else source = pathsSource(uris.map((u) => u.fsPath));
  } else if (typeof arg === 'string' && arg) runDir = arg;
  else if (arg && typeof arg === 'object') {
    const o = arg as InspectArgs & { run?: { dir?: string } };
    runDir = o.runDir ?? o.run?.dir;
    if (o.paths?.length) source = pathsSource(o.paths.map((p) => (p instanceof vscode.Uri ? p.fsPath : p)));
  }
  runDir ??= await pickRun(index, arg === undefined);
  if (!runDir) return undefined;
  if (!(await isRunFolder(runDir))) {
    void vscode.window.showErrorMessage(
      `MET: ${runDir} is not a MET run folder (no config.json written by met train).`,
    );
    return undefined;
  }
  if (!fs.existsSync(path.join(runDir, 'predictions.json'))) {
    void vscode.window.showErrorMessage(
      `MET: ${path.basename(runDir)} has not finished (no predictions.json yet): nothing to inspect.`,
    );
    return undefined;
  }
  InspectPanel.show(context, runDir, source ?? TEST_SOURCE, openedAt);
  return norm(runDir);
}

export function registerInspect(context: vscode.ExtensionContext): void {
  const index = getRunIndex(context);
  context.subscriptions.push(
    vscode.commands.registerCommand('met.inspectExits', (arg?: unknown, arg2?: unknown) =>
      inspectExits(context, arg, arg2).catch((e) => {
        void vscode.window.showErrorMessage(`MET: Inspect exits failed: ${(e as Error).message}`);
        return undefined;
      }),
    ),
    // Not contributed (tests): what each open panel's webview last reported, and timings.
    vscode.commands.registerCommand('met.inspect.snapshot', () =>
      [...InspectPanel.panels.values()].map((p) => ({
        runDir: p.runDir,
        source: p.source,
        visible: p.panel.visible,
        readyCount: p.readyCount,
        firstPaintMs: p.firstPaintMs,
        webviewFirstPaintMs: p.webviewFirstPaintMs,
        allScoredMs: p.allScoredMs,
        thumbsDir: p.thumbsDir,
        ...p.snapshot,
      })),
    ),
    // Not contributed (tests): drive a panel's webview through the same code paths as a user.
    // kind ('test' or 'paths') picks between a run's panels when more than one is open.
    vscode.commands.registerCommand(
      'met.inspect.test',
      async (action: TestAction, runDir?: string, kind?: SourceInfo['kind']) => {
        const panels = [...InspectPanel.panels.values()].filter(
          (p) => (!runDir || p.runDir === norm(runDir)) && (!kind || p.source.kind === kind),
        );
        const p = panels.find((x) => x.panel.active) ?? panels[panels.length - 1];
        if (!p) return false;
        // A message posted before the webview's script listens could be lost; the webview itself
        // holds actions that come before its data.
        for (const t0 = Date.now(); !p.isReady && !p.isDisposed && Date.now() - t0 < 30_000;)
          await new Promise((r) => setTimeout(r, 50));
        return p.panel.webview.postMessage({ type: 'test', action } satisfies HostMessage);
      },
    ),
    vscode.window.registerWebviewPanelSerializer(INSPECT_VIEW_TYPE, {
      async deserializeWebviewPanel(panel: vscode.WebviewPanel, state: InspectState | undefined) {
        // A reload right after opening may come before the workbench persisted the state: the title names the run.
        const dir = state?.runDir ?? (await index.dirOfName(panel.title.replace(/^Inspect: /, '').split(' · ')[0]));
        const source =
          state?.source && (state.source.kind === 'test' || state.source.paths?.length) ? state.source : TEST_SOURCE;
        log().info(
          `Inspect exits: restoring ${dir ?? '(unknown run)'} after a reload (${state ? `saved state: point ${state.point ?? '-'}, selected ${state.selected ?? '-'}` : 'no saved state; run found by the title'})`,
        );
        if (
          !dir ||
          !fs.existsSync(path.join(dir, 'predictions.json')) ||
          InspectPanel.panels.has(InspectPanel.key(dir, source))
        ) {
          panel.dispose();
          return;
        }
        new InspectPanel(
          context,
          panel,
          norm(dir),
          source,
          Date.now(),
          InspectPanel.loadStates(context).get(InspectPanel.key(dir, source)),
        );
      },
    }),
    { dispose: () => [...InspectPanel.panels.values()].forEach((p) => p.dispose()) },
  );
}
