// Inspect exits: for a run and a set of images (the run's own test split, or folders / images
// from the explorer), a grid of images by exits with each exit's confidence and class, the exit
// each image takes under the thresholds, a per-class summary, the selected image with per-layer
// bars, and the budget slider (webview-ui/inspect/main.ts draws all of it).
//
// Where the numbers come from:
//   - the run's test split: predictions.json, written by the engine at evaluation (no inference;
//     panels/inspectRun.ts reads the run and the images);
//   - other images: the engine process ('inspect/score', the same predictor as `met predict
//     --run`), in chunks of 32, the rows on screen first, then the rest in the background
//     (kept in panels/scoreStore.ts);
//   - thumbnails: the engine ('inspect/thumbs', sharp; panels/thumbPump.ts) into <workspace>/.met/cache/thumbs, served
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
//   #explain > #explain-toggle (aria-expanded) #explain-body > input[name=explain-mode][value=last|rollout]
//     #explain-scale #explain-status #explain-note #explain-maps > li.explain-map[data-exit] > canvas.explain-canvas
//     (Explain: the selected image's attention maps, engine 'inspect/attention', asked when opened)
//   #summary-rows > tr[data-class] (first: tr.all)   #status
//   #embeddings (<details>: opening it asks for them) > summary #emb-status #emb-view > .emb (the shared
//     view, webview-ui/common/embeddings.ts: figure[data-exit] > svg.emb-plot per exit, .emb-legend,
//     .emb-readout); engine 'embeddings/compute', kept per run (panels/inspectEmbeddings.ts)
//
// State: the webview keeps its run, source, scroll position, active cell, selection and slider
// point with setState; a WebviewPanelSerializer revives the panel after a window reload (the
// panel host, panels/panelHost.ts, holds the lifecycle shared with the other panels).
// Test-only commands (not contributed): met.inspect.snapshot (what each webview last reported)
// and met.inspect.test (drive a webview: slider, keys, selection, save, a measured scroll). The
// webview's side of met.inspect.test is in a test build of its script only
// (dist/webview/inspect-test.js, loaded when the extension runs under the integration tests).

import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { RunConfigFile, ThresholdsFile } from '../engine/run/runFolder';
import { IMAGE_EXTENSIONS } from '../engine/data/files';
import { encodeThreshold, saveChosenThresholds } from '../engine/run/runFolder';
import type { ScoreResult } from '../engine/explore/types';
import type {
  HostMessage,
  InitMessage,
  InspectState,
  InspectStateMessage,
  RunChoice,
  SourceInfo,
  TestAction,
  WebviewMessage,
} from '../../webview-ui/inspect/protocol';
import { buildCurve } from './inspectCurve';
import { getEngines } from './engineClient';
import { log } from './log';
import {
  type Loaded,
  loadRun,
  pathsSource,
  readJsonFile,
  sourceKey,
  TEST_SOURCE,
  testPredictions,
} from './panels/inspectRun';
import { HostedPanel, PanelHost } from './panels/panelHost';
import { ScoreStore, TOP_K, type VisibleRows } from './panels/scoreStore';
import { ThumbPump } from './panels/thumbPump';
import { EmbeddingsCache } from './panels/inspectEmbeddings';
import { norm } from './runFiles';
import { getRunIndex, type RunIndex } from './runIndex';
import { esc, webviewOptions, webviewPage } from './webviewPage';

export const INSPECT_VIEW_TYPE = 'met.inspect';
/** dist/webview/inspect-test.js: the webview script with its test hooks (esbuild.mjs; not in the VSIX). */
const INSPECT_TEST_BUNDLE = 'inspect-test';
/** Images per 'inspect/score' request: one batch of the engine's predictor. */
const SCORE_CHUNK = 32;
const GRID_THUMB = 64;
const DETAIL_THUMB = 256;

// ---- One panel ----

const inspectPanels = new PanelHost<InspectPanel>(INSPECT_VIEW_TYPE);
/** Embeddings per exit, kept per run for every panel (engine 'embeddings/compute'). */
const embeddingsCache = new EmbeddingsCache((p) => getEngines().request('embeddings/compute', p));

class InspectPanel extends HostedPanel<HostMessage, WebviewMessage, InspectStateMessage> {
  private watcher: vscode.Disposable[] = [];
  /** Bumped on every (re)load: answers for an older load are dropped. */
  private generation = 0;
  private loaded: Loaded | null = null;
  private loadError: string | undefined;
  // Engine results kept here, so a rebuilt webview (hidden and shown) gets them without asking again.
  private readonly scores = new ScoreStore();
  private scoring = false;
  private scoreFailedAt = 0;
  private thumbs: ThumbPump | null = null;
  private visible: VisibleRows = { first: 0, last: -1 };
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
    return inspectPanels.open({
      key: InspectPanel.key(runDir, source),
      title: InspectPanel.title(runDir, source),
      options: InspectPanel.options(context),
      create: (panel) => new InspectPanel(context, panel, norm(runDir), source, openedAt),
    });
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
    context: vscode.ExtensionContext,
    panel: vscode.WebviewPanel,
    public runDir: string,
    public source: SourceInfo,
    private openedAt: number,
    /** After a window reload: the state the host kept for this panel (see states). */
    private restoredState?: InspectState,
  ) {
    super(inspectPanels, context, panel, InspectPanel.key(runDir, source));
    this.start(InspectPanel.options(context, runDir), this.html());
    this.watch();
  }

  get thumbsDir(): string {
    return InspectPanel.thumbsDir(this.context, this.runDir);
  }

  private html(): string {
    const src = esc(JSON.stringify(this.source));
    const kept = this.restoredState ? ` data-state="${esc(JSON.stringify(this.restoredState))}"` : '';
    return webviewPage(this.panel.webview, this.context.extensionUri, {
      bundle: 'inspect',
      // Under the integration tests: the build of the script with the test hooks (met.inspect.test).
      ...(this.context.extensionMode === vscode.ExtensionMode.Test ? { script: INSPECT_TEST_BUNDLE } : {}),
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
      <section id="explain" aria-label="Explain: attention maps of the selected image" aria-live="off">
        <button id="explain-toggle" class="secondary" aria-expanded="false" aria-controls="explain-body">Explain: where each exit looks</button>
        <div id="explain-body" hidden>
          <fieldset id="explain-mode">
            <legend>Map</legend>
            <label title="Each exit token's attention at its own exit layer, mean over heads"><input type="radio" name="explain-mode" value="last" checked> Last layer</label>
            <label title="Attention rollout (Abnar &amp; Zuidema 2020) through layers 1 to the exit's layer"><input type="radio" name="explain-mode" value="rollout"> Rollout</label>
          </fieldset>
          <div id="explain-legend"><span>0</span><canvas id="explain-scale" aria-hidden="true"></canvas><span>each map's peak</span></div>
          <div id="explain-status" role="status"></div>
          <div id="explain-note"></div>
          <ol id="explain-maps" aria-label="Attention map of each exit"></ol>
        </div>
      </section>
    </aside>
  </section>
  <section id="summary" aria-label="Per-class summary">
    <h2 id="summary-title">Per class</h2>
    <table id="class-table"><thead><tr id="summary-head"></tr></thead><tbody id="summary-rows"></tbody></table>
    <div id="summary-note"></div>
  </section>
  <details id="embeddings">
    <summary><h2>Embeddings per exit</h2> <span class="muted">the run's test sample at every exit, PCA of the head inputs</span></summary>
    <div id="emb-status" role="status"></div>
    <div id="emb-view"></div>
  </details>
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
    if (!this.loaded || !this.isReady) return;
    if (name === 'predictions.json' && this.source.kind === 'test') return void this.load();
    if (name !== 'thresholds.json') return;
    try {
      const th = await readJsonFile<ThresholdsFile>(
        path.join(this.runDir, 'thresholds.json'),
        'the run has not been evaluated',
      );
      const c = buildCurve(th, this.loaded.K, await testPredictions(this.runDir).catch(() => null));
      if (c.chosenKey === this.loaded.curve.chosenKey && c.curve.p.length === this.loaded.curve.curve.p.length) return; // our own save
      this.loaded.curve = c;
      this.post({
        type: 'chosen',
        curve: c.curve,
        chosen: c.chosen,
        chosenSource: c.chosenSource,
        message: 'thresholds.json changed on disk: curve and saved point re-read',
      });
    } catch (e) {
      this.post({ type: 'status', text: (e as Error).message, error: true });
    }
  }

  protected async onReady(): Promise<void> {
    if (this.loaded && !this.loadError) this.sendAll();
    else await this.load();
  }

  protected override onState(m: InspectStateMessage): void {
    if (m.state.runDir === this.runDir) this.rememberState(m.state);
  }

  protected override async onMessage(m: WebviewMessage): Promise<void> {
    switch (m.type) {
      case 'visible':
        this.visible = { first: Math.max(0, m.first), last: m.last };
        if (this.thumbs) {
          this.thumbs.visible = this.visible;
          void this.thumbs.pump();
        }
        if (Date.now() - this.scoreFailedAt > 5000) void this.pumpScores();
        break;
      case 'detail':
        void this.detail(m.index);
        break;
      case 'attention':
        void this.attention(m.index);
        break;
      case 'embeddings':
        void this.embeddings(m.index);
        break;
      case 'save':
        await this.save(m.point);
        break;
      case 'pickRun':
        // The webview is not trusted with paths: it may only pick a run the host listed to it
        // (runChoices in 'init'), never retarget the panel to a folder it names.
        if (typeof m.dir !== 'string' || !this.listedRuns.has(norm(m.dir))) {
          log().warn(`Inspect exits: ignored a pick of a run that was not offered: ${String(m.dir).slice(0, 300)}`);
          this.post({ type: 'status', text: 'That run was not offered here; pick one from the list.', error: true });
          break;
        }
        await this.retarget(m.dir, this.source);
        break;
      case 'pickSource':
        await this.pickSource(m.kind);
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

  /** Reads the run and the images, resets the engine caches, and sends 'init'. */
  private async load(): Promise<void> {
    const gen = ++this.generation;
    this.loaded = null;
    this.loadError = undefined;
    try {
      const loaded = await loadRun(this.runDir, this.source);
      if (gen !== this.generation) return;
      this.loaded = loaded;
      this.resetCaches(loaded, gen);
      this.panel.title = InspectPanel.title(this.runDir, this.source);
      this.sendAll();
    } catch (e) {
      if (gen !== this.generation) return;
      this.loadError = (e as Error).message;
      log().error(`Inspect exits: ${this.loadError}`);
      this.post({ type: 'status', text: this.loadError, error: true });
    }
  }

  private resetCaches(l: Loaded, gen: number): void {
    this.scores.reset(l.files.length, l.K, !!l.conf, l.task === 'regression');
    const alive = () => !this.isDisposed && gen === this.generation;
    this.thumbs = new ThumbPump(l.files, {
      fetch: async (files) =>
        (await getEngines().request('inspect/thumbs', { files, size: GRID_THUMB, cacheDir: this.thumbsDir })).thumbs,
      deliver: (index) => this.sendThumbs(index),
      fail: (text) => this.post({ type: 'status', text, error: true }),
      alive,
      ready: () => this.isReady,
    });
    this.visible = { first: 0, last: -1 };
    this.allScoredMs = undefined;
  }

  /** The runs the last 'init' offered the webview: the only ones its 'pickRun' may name. */
  private listedRuns = new Set<string>();

  /** Tests: a message as if the webview had posted it (met.inspect.receive). */
  receiveForTest(m: WebviewMessage): Promise<void> {
    return this.onMessage(m);
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
      this.listedRuns = new Set(runs.map((r) => norm(r.dir)));
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
      this.post(init);
      if (!l.conf) {
        const done = this.scores.doneIndices();
        if (done.length) this.post(this.scores.message(done));
      }
      const th = this.thumbs?.doneIndices() ?? [];
      if (th.length) this.sendThumbs(th);
    });
  }

  private sendThumbs(index: number[]): void {
    const w = this.panel.webview;
    const t = this.thumbs;
    this.post({
      type: 'thumbs',
      index: Int32Array.from(index),
      uris: index.map((i) => {
        const p = t?.pathOf(i);
        return p ? w.asWebviewUri(vscode.Uri.file(p)).toString() : null;
      }),
    });
  }

  /**
   * Scores images in chunks, one request at a time, so other requests to the engine (a
   * thumbnail, another panel) get their turn between chunks. Continues in the background until
   * every image has scores (the slider and the summary need them all), while the panel is open.
   */
  private async pumpScores(): Promise<void> {
    const l = this.loaded;
    if (this.scoring || !l || l.conf || this.isDisposed) return;
    this.scoring = true;
    const gen = this.generation;
    try {
      for (;;) {
        if (this.isDisposed || gen !== this.generation) return;
        const chunk = this.scores.take(this.visible, SCORE_CHUNK);
        if (!chunk.length) break;
        let r: ScoreResult;
        try {
          r = await getEngines().request('inspect/score', {
            runDir: this.runDir,
            files: chunk.map((i) => l.files[i]),
            topK: TOP_K,
          });
        } catch (e) {
          this.scores.release(chunk);
          this.scoreFailedAt = Date.now();
          this.post({ type: 'status', text: `scoring failed: ${(e as Error).message}`, error: true });
          log().error(`Inspect exits: inspect/score on ${this.runDir} failed: ${(e as Error).message}`);
          return;
        }
        if (gen !== this.generation) return;
        this.scores.put(chunk, r);
        this.post(this.scores.message(chunk));
        if (r.skipped.length)
          this.post({
            type: 'status',
            text: `${r.skipped.length} unreadable: ${r.skipped[0].file}: ${r.skipped[0].reason}`,
          });
      }
      if (this.allScoredMs === undefined && this.scores.allDone()) {
        this.allScoredMs = Date.now() - this.openedAt;
        log().info(
          `Inspect exits: scored all ${l.files.length} images of ${this.source.label} with ${path.basename(this.runDir)} in ${(this.allScoredMs / 1000).toFixed(1)} s after opening`,
        );
      }
    } finally {
      this.scoring = false;
      // Another run or source was loaded while a chunk was in flight: start on the new images.
      if (gen !== this.generation && !this.isDisposed) void this.pumpScores();
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
    let conf: Float32Array = new Float32Array(K).fill(NaN);
    let pred: Int32Array = new Int32Array(K).fill(-1);
    let tp: Float32Array = new Float32Array(0);
    let tc: Int32Array = new Int32Array(0);
    let k = 0;
    let value: Float32Array | undefined;
    let error: string | undefined;
    const kept = this.scores.scoresOf(index);
    if (kept) ({ conf, pred, topProb: tp, topClass: tc, k, value } = kept);
    else {
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
    this.post({
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

  /** Explain: the attention maps of image `index` (engine 'inspect/attention'), or why there are none. */
  private async attention(index: number): Promise<void> {
    const l = this.loaded;
    if (!l || !Number.isInteger(index) || index < 0 || index >= l.files.length) return;
    const file = l.files[index];
    let m: HostMessage;
    try {
      const { file: _f, ...r } = await getEngines().request('inspect/attention', { runDir: this.runDir, file });
      m = { type: 'attention', index, ...r };
    } catch (e) {
      log().warn(`Inspect exits: inspect/attention on ${file} failed: ${(e as Error).message}`);
      m = { type: 'attention', index, error: (e as Error).message };
    }
    if (this.loaded === l) this.post(m);
  }

  /** Embeddings per exit of this run, with image `index` placed on them when it is not in the sample. */
  private async embeddings(index?: number): Promise<void> {
    const l = this.loaded;
    if (!l) return;
    const file = Number.isInteger(index) && index! >= 0 && index! < l.files.length ? l.files[index!] : undefined;
    let m: HostMessage;
    try {
      m = { type: 'embeddings', index: file ? index : undefined, result: await embeddingsCache.get(this.runDir, file) };
    } catch (e) {
      log().warn(`Inspect exits: embeddings/compute on ${this.runDir} failed: ${(e as Error).message}`);
      m = { type: 'embeddings', index: file ? index : undefined, error: (e as Error).message };
    }
    if (this.loaded === l) this.post(m);
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
      l.curve = buildCurve(th, l.K, await testPredictions(this.runDir).catch(() => null));
      const msg = `Saved thresholds${chosen.p !== null ? ` (p = ${chosen.p})` : ''} to ${path.join(path.basename(this.runDir), 'thresholds.json')}: met predict and met export use them now`;
      log().info(`Inspect exits: ${msg}`);
      this.post({
        type: 'chosen',
        curve: l.curve.curve,
        chosen: l.curve.chosen,
        chosenSource: l.curve.chosenSource,
        message: msg,
      });
    } catch (e) {
      const msg = `Saving thresholds failed: ${(e as Error).message}`;
      log().error(`Inspect exits: ${msg}`);
      this.post({ type: 'status', text: msg, error: true });
      void vscode.window.showErrorMessage(`MET: ${msg}`);
    }
  }

  /** Another run or other images in this panel: a fresh webview document for them. */
  private async retarget(runDir: string, source: SourceInfo): Promise<void> {
    runDir = norm(runDir);
    const key = InspectPanel.key(runDir, source);
    const other = inspectPanels.get(key);
    if (other && other !== this) {
      other.panel.reveal();
      return;
    }
    this.runDir = runDir;
    this.source = source;
    this.rekey(key);
    this.generation++;
    this.loaded = null;
    this.openedAt = Date.now();
    this.firstPaintMs = undefined;
    this.webviewFirstPaintMs = undefined;
    this.panel.title = InspectPanel.title(runDir, source);
    this.watch();
    this.restoredState = undefined;
    this.start(InspectPanel.options(this.context, runDir), this.html());
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

  protected override onDispose(): void {
    this.generation++;
    this.watcher.forEach((d) => d.dispose());
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
    // Not contributed (tests): drive a panel's webview through the same code paths as a user.
    // kind ('test' or 'paths') picks between a run's panels when more than one is open. The
    // webview acts on it only in the test build of its script (see INSPECT_TEST_BUNDLE).
    vscode.commands.registerCommand(
      'met.inspect.test',
      async (action: TestAction, runDir?: string, kind?: SourceInfo['kind']) => {
        const panels = inspectPanels
          .all()
          .filter((p) => (!runDir || p.runDir === norm(runDir)) && (!kind || p.source.kind === kind));
        const p = panels.find((x) => x.panel.active) ?? panels[panels.length - 1];
        if (!p) return false;
        // A message posted before the webview's script listens could be lost; the webview itself
        // holds actions that come before its data.
        await p.whenReady(30_000);
        return p.panel.webview.postMessage({ type: 'test', action } satisfies HostMessage);
      },
    ),
  );
  // Not contributed (tests): a message to a run's panel as if its webview had posted it (a
  // hostile webview's 'pickRun' of a folder it was never offered).
  context.subscriptions.push(
    vscode.commands.registerCommand('met.inspect.receive', async (runDir: string, m: WebviewMessage) => {
      const p = inspectPanels.all().find((x) => x.runDir === norm(runDir));
      if (!p) return false;
      await p.receiveForTest(m);
      return true;
    }),
  );
  // met.inspect.snapshot (not contributed, tests): what each open panel's webview last reported, and timings.
  inspectPanels.register(context, {
    snapshotCommand: 'met.inspect.snapshot',
    snapshotFields: (p) => ({
      runDir: p.runDir,
      source: p.source,
      firstPaintMs: p.firstPaintMs,
      webviewFirstPaintMs: p.webviewFirstPaintMs,
      allScoredMs: p.allScoredMs,
      thumbsDir: p.thumbsDir,
    }),
    async restore(panel, saved) {
      const state = saved as InspectState | undefined;
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
        inspectPanels.has(InspectPanel.key(dir, source))
      )
        return undefined;
      return new InspectPanel(
        context,
        panel,
        norm(dir),
        source,
        Date.now(),
        InspectPanel.loadStates(context).get(InspectPanel.key(dir, source)),
      );
    },
  });
}
