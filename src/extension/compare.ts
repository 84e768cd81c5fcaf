// "MET: Compare runs": two or more finished runs side by side, or all finished runs of a study
// (a folder with study.json, written by `met ablate`). Everything shown is read from the run
// folders by the pure src/engine/study/compare.ts (readRunResult, comparisonTable, settingsDiff),
// the functions `met ablate` prints its table with, so the panel and the CLI cannot differ; the
// numbers per exit are those of `met eval --json`. Only the embeddings need the engine process.
//
// Opened from: the Runs view's context menu on a multi-selection (met.runs.compare: VS Code
// passes the clicked item and all selected items), the palette (met.compareRuns: a multi-select
// quick pick of finished runs and of the studies under .met/studies/), the explorer's context
// menu on a study folder (met.compareStudy), or with run folders / a study folder as arguments.
//
// Stable element ids inside the webview (webview-ui/compare/main.ts fills them):
//   #met-compare        root; data-source (JSON CompareSource), data-status (loading|ready|error)
//   #title #subtitle #status-text #refresh #export-csv #export-svg
//   #legend             li[data-run] (colour swatch, marker shape, name, variant)
//   #skipped            runs that could not be read, with why
//   #curve-chart        <svg>: g.run[data-run] > polyline.line (dynamic) + .pt.static[data-exit] + .pt.dyn[data-p]
//   #curve-readout      the point under the mouse or the keyboard cursor
//   #bars-chart         <svg>: g.bar[data-exit][data-run]
//   #params-chart       <svg>: g.bar[data-run]
//   #loss-chart #val-chart #per-exit   training curves; the checkbox switches mean / per exit
//                       (#val-exit-key: the exits' dash patterns then)
//   #diff-table         thead th per run, tbody tr[data-key]
//   #table              the comparison table: td.best cells carry a visually hidden "(best)"
//   #embeddings         the embeddings section: #embeddings-compute, #embeddings-status,
//                       #embeddings-grid > .emb-col[data-run] (one view of common/embeddings.ts per run)
//
// Restored after a window reload by the serializer from the source the webview keeps with
// setState (it sets it from data-source before anything else, so a reload right after opening
// restores too). Run folders are watched: `met eval` rewriting predictions.json / thresholds.json,
// or `met ablate` finishing another variant of the study, redraws the panel.

import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import {
  comparisonCsv,
  comparisonTable,
  formatValue,
  readRunResult,
  settingsDiff,
  type RunResult,
} from '../engine/study/compare';
import { readStudy, STUDY_FILE } from '../engine/study/study';
import type {
  CompareData,
  CompareHostMessage,
  CompareRun,
  CompareSource,
  CompareState,
  CompareStateMessage,
  CompareTestAction,
  CompareWebviewMessage,
  EmbeddingSettings,
  RunEmbeddings,
} from '../../webview-ui/compare/protocol';
import { getEngines } from './engineClient';
import { log } from './log';
import { HostedPanel, PanelHost } from './panels/panelHost';
import { norm, type RunInfo } from './runFiles';
import { getRunIndex, type RunIndex } from './runIndex';
import { esc, webviewOptions, webviewPage } from './webviewPage';

export const COMPARE_VIEW_TYPE = 'met.compare';
/** Studies are looked for here in each workspace folder (`met ablate`'s default --out). */
const STUDIES_DIR = path.join('.met', 'studies');
/** The context key the explorer's "Compare study runs" item checks (resourcePath in it). */
const STUDY_FOLDERS_KEY = 'met.studyFolders';

const rel = (p: string) => vscode.workspace.asRelativePath(p, (vscode.workspace.workspaceFolders?.length ?? 0) > 1);

/** A setting's value as the diff table shows it: strings bare, the rest as JSON, unset as '–'. */
function settingText(v: unknown): string {
  if (v === undefined || v === null) return '–';
  return typeof v === 'string' ? v : JSON.stringify(v);
}

/** The panel's map key: the study folder, or the set of run folders (any order). */
function keyOf(s: CompareSource): string {
  return s.study ? `study:${norm(s.study)}` : [...new Set(s.runs.map(norm))].sort().join('\n');
}

function titleOf(s: CompareSource): string {
  if (s.study) return `Compare: ${path.basename(s.study)}`;
  return s.runs.length === 2
    ? `Compare: ${path.basename(s.runs[0])} vs ${path.basename(s.runs[1])}`
    : `Compare: ${s.runs.length} runs`;
}

interface Loaded {
  results: RunResult[];
  skipped: CompareData['skipped'];
  study?: CompareData['study'];
}

/**
 * The runs of a source, read with readRunResult. Runs that are not finished (the run index says
 * so: a training still writing would be read half-way) or cannot be read are listed with why.
 * A study's runs are named by their variant; other runs by their folder, with the parent folder
 * added where two share a name.
 */
async function load(source: CompareSource, index: RunIndex): Promise<Loaded> {
  let wanted: { dir: string; name?: string }[];
  let study: Loaded['study'];
  if (source.study) {
    const s = readStudy(source.study);
    if (!s) throw new Error(`${path.join(source.study, STUDY_FILE)} does not exist (is this a study folder?)`);
    wanted = s.variants.map((v) => ({ dir: path.resolve(source.study!, v.run), name: v.name }));
    study = { name: path.basename(source.study), dir: source.study, createdAt: s.createdAt };
  } else wanted = source.runs.map((dir) => ({ dir }));
  const base = wanted.map((w) => w.name ?? path.basename(w.dir));
  const names = wanted.map((w, i) =>
    w.name || base.filter((b) => b === base[i]).length === 1
      ? base[i]
      : `${path.basename(path.dirname(w.dir))}/${base[i]}`,
  );
  const results: RunResult[] = [];
  const skipped: Loaded['skipped'] = [];
  for (const [i, w] of wanted.entries()) {
    const info = await index.info(w.dir).catch(() => null);
    if (!info) {
      skipped.push({ dir: w.dir, name: names[i], reason: 'not a run folder (no readable config.json)' });
      continue;
    }
    if (info.status !== 'done') {
      skipped.push({ dir: w.dir, name: names[i], reason: `${info.status}: not finished` });
      continue;
    }
    try {
      results.push(readRunResult(w.dir, names[i]));
    } catch (e) {
      skipped.push({ dir: w.dir, name: names[i], reason: (e as Error).message });
    }
  }
  return { results, skipped, study };
}

function toData(seq: number, source: CompareSource, l: Loaded, ms: number): CompareData {
  const table = comparisonTable(l.results);
  const runs: CompareRun[] = l.results.map((r) => ({
    name: r.name,
    runDir: r.runDir,
    variant: r.variant,
    exits: r.exits,
    dynamic: r.dynamic,
    mean: r.mean,
    trainable: r.trainable,
    trainSeconds: r.trainSeconds,
    epochs: r.epochs,
    steps: r.steps,
  }));
  return {
    seq,
    source,
    task: table.task,
    study: l.study,
    runs,
    table: { ...table, cells: table.rows.map((r) => r.values.map((v, ci) => formatValue(v, table.columns[ci]))) },
    diff: settingsDiff(l.results).map((d) => ({ key: d.key, values: d.values.map(settingText) })),
    skipped: l.skipped,
    embeddings: embeddingsAvailability(table.task),
    at: new Date().toISOString(),
    ms,
  };
}

/** Whether this window can compute embeddings for runs of `task`, and why not. */
function embeddingsAvailability(task: CompareData['task']): CompareData['embeddings'] {
  if (task === 'regression') return { available: false, why: 'regression runs have no classes to sample by' };
  // Like the similarity panel (Workspace Trust, package.json capabilities): it runs the runs'
  // models on the workspace's checkpoint and images in an engine process.
  if (!vscode.workspace.isTrusted)
    return { available: false, why: "computing embeddings runs the runs' models, which Restricted Mode disables" };
  return { available: true };
}

const embeddingsKey = (runs: string[], s: EmbeddingSettings, seed: number) =>
  JSON.stringify([runs, s.perClass, s.split, seed]);

const comparePanels = new PanelHost<ComparePanel>(COMPARE_VIEW_TYPE);

class ComparePanel extends HostedPanel<CompareHostMessage, CompareWebviewMessage, CompareStateMessage> {
  private seq = 0;
  private last: CompareHostMessage | undefined;
  private loaded: Loaded | undefined;
  private reloadTimer: ReturnType<typeof setTimeout> | undefined;
  private watched = '';
  private watchers: vscode.Disposable[] = [];
  /** Targets the host's own test command asked for (the webview may only echo these). */
  private readonly testTargets = new Set<string>();
  private embeddingsSeq = 0;
  private embeddingsLast: { key: string; msg: CompareHostMessage } | undefined;
  /** Completed loads (tests: wait for a newer one) and exports written. */
  loads = 0;
  exports: { format: 'csv' | 'svg'; file: string }[] = [];

  static show(context: vscode.ExtensionContext, index: RunIndex, source: CompareSource): ComparePanel {
    return comparePanels.open({
      key: keyOf(source),
      title: titleOf(source),
      options: webviewOptions(context),
      create: (panel) => new ComparePanel(context, panel, index, source),
    });
  }

  constructor(
    context: vscode.ExtensionContext,
    panel: vscode.WebviewPanel,
    private readonly index: RunIndex,
    readonly source: CompareSource,
  ) {
    super(comparePanels, context, panel, keyOf(source));
    this.start(webviewOptions(context), this.html());
    this.disposables.push({ dispose: () => this.unwatch() });
    this.reload();
  }

  /** The last answer (or 'loading' while the first read is under way: its answer follows). */
  protected onReady(): void {
    if (this.last) this.post(this.last);
  }

  protected override async onMessage(m: CompareWebviewMessage): Promise<void> {
    if (m.type === 'refresh') this.reload();
    else if (m.type === 'export') {
      const target = m.target && this.testTargets.delete(m.target) ? m.target : undefined;
      if (m.format === 'csv') {
        if (!this.loaded?.results.length) return;
        await this.export('csv', comparisonCsv(comparisonTable(this.loaded.results)), target);
      } else await this.export('svg', m.svg, target);
    } else if (m.type === 'embeddings') await this.embeddings(m.settings);
  }

  /** Reads the run folders again (off the current call stack: the files are read synchronously). */
  reload(): void {
    const seq = ++this.seq;
    if (!this.last || this.last.type !== 'data') {
      this.last = { type: 'loading', source: this.source };
      this.post(this.last);
    }
    const t0 = Date.now();
    void (async () => {
      let msg: CompareHostMessage;
      try {
        const l = await load(this.source, this.index);
        if (seq !== this.seq) return;
        this.watch(l);
        if (l.results.length < 1)
          throw new Error(
            `no finished run to compare${l.skipped.length ? `: ${l.skipped.map((s) => `${s.name} (${s.reason})`).join('; ')}` : ''}`,
          );
        this.loaded = l;
        msg = { type: 'data', data: toData(seq, this.source, l, Date.now() - t0) };
      } catch (e) {
        msg = { type: 'error', source: this.source, message: (e as Error).message };
      }
      if (seq !== this.seq) return;
      this.loads++;
      this.last = msg;
      this.post(msg);
    })();
  }

  /**
   * Watches what changes the numbers: each run's predictions.json and thresholds.json (met eval
   * rewrites them), and a study's study.json and its runs' files (met ablate adds variants).
   */
  private watch(l: Loaded): void {
    const dirs = [...l.results.map((r) => r.runDir), ...l.skipped.map((s) => s.dir)];
    const sig = [this.source.study ?? '', ...dirs].join('\n');
    if (sig === this.watched) return;
    this.unwatch();
    this.watched = sig;
    const changed = () => {
      clearTimeout(this.reloadTimer);
      // A finishing run writes several files in a row: one reload after they settle.
      this.reloadTimer = setTimeout(() => this.reload(), 700);
    };
    const patterns = this.source.study
      ? [
          new vscode.RelativePattern(
            vscode.Uri.file(this.source.study),
            `{${STUDY_FILE},*/predictions.json,*/thresholds.json,*/status.json}`,
          ),
        ]
      : dirs.map(
          (d) => new vscode.RelativePattern(vscode.Uri.file(d), '{predictions.json,thresholds.json,status.json}'),
        );
    for (const p of patterns) {
      const w = vscode.workspace.createFileSystemWatcher(p);
      this.watchers.push(w, w.onDidChange(changed), w.onDidCreate(changed), w.onDidDelete(changed));
    }
  }

  private unwatch(): void {
    clearTimeout(this.reloadTimer);
    this.watchers.forEach((w) => w.dispose());
    this.watchers = [];
    this.watched = '';
  }

  /** Where the save dialog starts: the study folder, else the workspace folder of the first run. */
  private exportDir(): string {
    if (this.source.study) return this.source.study;
    const first = this.source.runs[0];
    return vscode.workspace.getWorkspaceFolder(vscode.Uri.file(first))?.uri.fsPath ?? path.dirname(first);
  }

  private async export(format: 'csv' | 'svg', content: string, target?: string): Promise<void> {
    const name = this.source.study ? `${path.basename(this.source.study)}-comparison` : 'comparison';
    const uri = target
      ? vscode.Uri.file(target)
      : await vscode.window.showSaveDialog({
          title: format === 'csv' ? 'MET: export the comparison table (CSV)' : 'MET: export the charts (SVG)',
          defaultUri: vscode.Uri.file(path.join(this.exportDir(), `${name}.${format}`)),
          filters: format === 'csv' ? { CSV: ['csv'] } : { SVG: ['svg'] },
          saveLabel: 'Export',
        });
    if (!uri) {
      this.post({ type: 'exported', format, file: null });
      return;
    }
    try {
      await vscode.workspace.fs.writeFile(uri, Buffer.from(content, 'utf8'));
    } catch (e) {
      const error = `could not write ${uri.fsPath}: ${(e as Error).message}`;
      this.post({ type: 'exported', format, file: null, error });
      void vscode.window.showErrorMessage(`MET: ${error}`);
      return;
    }
    this.exports.push({ format, file: uri.fsPath });
    log().info(`compare: wrote ${uri.fsPath}`);
    this.post({ type: 'exported', format, file: uri.fsPath });
    if (!target)
      void vscode.window.showInformationMessage(`MET: wrote ${rel(uri.fsPath)}`, 'Open').then((pick) => {
        if (pick) void vscode.commands.executeCommand('vscode.open', uri);
      });
  }

  /**
   * Every run's embeddings for the same sample: the same split, images per class and seed (the
   * first run's), so runs trained on the same data and split show the same images side by side.
   * The last answer is kept: a rebuilt webview asking again gets it without the engine.
   */
  private async embeddings(settings: EmbeddingSettings): Promise<void> {
    const l = this.loaded;
    if (!l?.results.length) return;
    const why = embeddingsAvailability(l.results[0].task);
    if (!why.available) {
      this.post({ type: 'embeddings-error', message: why.why ?? 'not available' });
      return;
    }
    const runs = l.results.map((r) => r.runDir);
    const seed = Number(l.results[0].settings.seed ?? 0);
    const key = embeddingsKey(runs, settings, seed);
    if (this.embeddingsLast?.key === key) {
      this.post(this.embeddingsLast.msg);
      return;
    }
    const seq = ++this.embeddingsSeq;
    this.post({ type: 'embeddings-computing', settings });
    const t0 = Date.now();
    try {
      // One run after the other: the engine process computes one request at a time anyway, and
      // the first run's answer says early whether the settings work.
      const out: RunEmbeddings[] = [];
      for (const r of l.results)
        out.push({
          runDir: r.runDir,
          name: r.name,
          result: await getEngines().request('embeddings/compute', {
            runDir: r.runDir,
            perClass: settings.perClass,
            split: settings.split,
            seed,
          }),
        });
      if (seq !== this.embeddingsSeq) return;
      const msg: CompareHostMessage = { type: 'embeddings', settings, seed, runs: out, ms: Date.now() - t0 };
      this.embeddingsLast = { key, msg };
      this.post(msg);
    } catch (e) {
      if (seq !== this.embeddingsSeq) return;
      this.post({
        type: 'embeddings-error',
        message: `embeddings/compute (${settings.split}, ${settings.perClass} per class): ${(e as Error).message}`,
      });
    }
  }

  /** Test-only: drive the webview as a user would (the export's target skips the save dialog). */
  test(action: CompareTestAction): void {
    if (action.kind === 'export') this.testTargets.add(action.target);
    this.post({ type: 'test', action });
  }

  private html(): string {
    const s = this.source;
    return webviewPage(this.panel.webview, this.context.extensionUri, {
      bundle: 'compare',
      title: titleOf(s),
      body: `<main id="met-compare" data-source="${esc(JSON.stringify(s))}" data-status="loading">
  <header>
    <h1 id="title">${esc(titleOf(s).replace(/^Compare: /, ''))}</h1>
    <span id="subtitle"></span>
    <span class="actions">
      <button id="refresh" type="button" title="Read the run folders again">Refresh</button>
      <button id="export-csv" type="button" title="Save the comparison table as CSV (raw numbers)">Export CSV</button>
      <button id="export-svg" type="button" title="Save the charts as one SVG file">Export SVG</button>
    </span>
    <span id="status-text" role="status" aria-live="polite">reading the run folders…</span>
  </header>
  <ul id="legend" class="legend" aria-label="Runs"></ul>
  <p id="skipped" class="note" hidden></p>
  <section class="row two">
    <figure id="curve-figure">
      <figcaption id="curve-caption">Accuracy versus GFLOPs</figcaption>
      <svg id="curve-chart" class="chart" tabindex="0" role="application" aria-roledescription="chart" aria-describedby="curve-readout"></svg>
      <p id="curve-readout" class="readout" aria-live="polite"></p>
    </figure>
    <figure id="bars-figure">
      <figcaption id="bars-caption">Accuracy per exit</figcaption>
      <svg id="bars-chart" class="chart" role="group" aria-label="Accuracy per exit, grouped by exit"></svg>
    </figure>
  </section>
  <section class="row two">
    <figure id="loss-figure">
      <figcaption>Training loss per step</figcaption>
      <svg id="loss-chart" class="chart" tabindex="0" role="application" aria-roledescription="chart" aria-describedby="loss-readout"></svg>
      <p id="loss-readout" class="readout" aria-live="polite"></p>
    </figure>
    <figure id="val-figure">
      <figcaption><span id="val-caption">Validation per epoch</span> <label class="toggle"><input id="per-exit" type="checkbox"> per exit</label></figcaption>
      <svg id="val-chart" class="chart" tabindex="0" role="application" aria-roledescription="chart" aria-describedby="val-readout"></svg>
      <ul id="val-exit-key" class="legend" aria-label="Line style per exit" hidden></ul>
      <p id="val-readout" class="readout" aria-live="polite"></p>
    </figure>
  </section>
  <section class="row two">
    <figure id="params-figure">
      <figcaption>Trainable parameters <span class="sub">(trainable.safetensors: adapters, exit tokens and heads)</span></figcaption>
      <svg id="params-chart" class="chart" role="group" aria-label="Trainable parameters per run"></svg>
    </figure>
    <div id="diff-wrap">
      <table id="diff-table">
        <caption>Settings that differ <span class="sub">(all others are the same)</span></caption>
        <thead></thead>
        <tbody></tbody>
      </table>
    </div>
  </section>
  <section class="row" id="table-wrap">
    <table id="table">
      <caption id="table-caption">Comparison</caption>
      <thead></thead>
      <tbody></tbody>
    </table>
  </section>
  <section class="row" id="embeddings" aria-labelledby="embeddings-title">
    <h2 id="embeddings-title">Embeddings</h2>
    <p id="embeddings-note" class="note"></p>
    <div class="controls">
      <label>images per class <input id="embeddings-per-class" type="number" min="1" max="64" step="1" value="8"></label>
      <label>split <select id="embeddings-split"><option value="test">test</option><option value="val">val</option><option value="train">train</option></select></label>
      <button id="embeddings-compute" type="button">Compute embeddings</button>
      <span id="embeddings-status" role="status" aria-live="polite"></span>
    </div>
    <div id="embeddings-grid"></div>
  </section>
</main>`,
    });
  }
}

/** Run folders from command arguments: Uris, paths, runs-view items ({ run: { dir } }), or arrays of them. */
function dirsOf(...args: unknown[]): string[] {
  const one = (a: unknown): string | undefined => {
    if (a instanceof vscode.Uri) return a.fsPath;
    if (typeof a === 'string' && a) return a;
    if (a && typeof a === 'object') {
      const o = a as { run?: { dir?: string }; runDir?: string; fsPath?: string };
      return o.run?.dir ?? o.runDir ?? o.fsPath;
    }
    return undefined;
  };
  // The runs view passes (clicked item, all selected items): the selection when there is one.
  const list = args.find((a) => Array.isArray(a) && a.length) as unknown[] | undefined;
  const dirs = (list ?? args).map(one).filter((d): d is string => !!d);
  return [...new Map(dirs.map((d) => [norm(path.resolve(d)), norm(path.resolve(d))])).values()];
}

/** Study folders under each workspace folder's .met/studies/, plus any other study.json seen created. */
async function findStudies(extra: Iterable<string>): Promise<string[]> {
  const out = new Set<string>();
  for (const f of vscode.workspace.workspaceFolders ?? []) {
    if (f.uri.scheme !== 'file') continue;
    const root = path.join(f.uri.fsPath, STUDIES_DIR);
    const entries = await fs.promises.readdir(root, { withFileTypes: true }).catch(() => []);
    for (const e of entries) if (e.isDirectory()) out.add(path.join(root, e.name));
  }
  for (const d of extra) out.add(d);
  const ok = await Promise.all(
    [...out].map(async (d) =>
      (await fs.promises.stat(path.join(d, STUDY_FILE)).catch(() => null))?.isFile() ? d : null,
    ),
  );
  return ok.filter((d): d is string => !!d).sort();
}

type Item = vscode.QuickPickItem & { runDir?: string; study?: string };

/** The palette's multi-select: studies (all their finished runs) and finished runs; `pre` are ticked. */
async function pickSource(index: RunIndex, studies: string[], pre: string[] = []): Promise<CompareSource | undefined> {
  const done = (await index.runs()).filter((r) => r.status === 'done');
  const studyItems: Item[] = [];
  for (const dir of studies) {
    let s: ReturnType<typeof readStudy>;
    try {
      s = readStudy(dir);
    } catch {
      continue;
    }
    if (!s) continue;
    studyItems.push({
      label: `$(beaker) ${path.basename(dir)}`,
      description: `study · ${s.variants.map((v) => v.name).join(', ')}`,
      detail: rel(dir),
      study: dir,
    });
  }
  const fmt = (r: RunInfo) =>
    r.task === 'regression'
      ? `MAE ${r.accuracy.map((a) => (a.mae == null ? '–' : a.mae.toPrecision(3))).join(' / ')}`
      : `${r.accuracy.map((a) => (a.accuracy === null ? '–' : (100 * a.accuracy).toFixed(1))).join(' / ')}%`;
  const runItems: Item[] = done.map((r) => ({
    label: r.name,
    description: `${r.config.train.variant}${r.task === 'regression' ? ' · regression' : ''} · ${fmt(r)}`,
    detail: rel(r.dir),
    runDir: r.dir,
    picked: pre.includes(norm(r.dir)),
  }));
  if (studyItems.length + runItems.length === 0 || (!studyItems.length && runItems.length < 2)) {
    void vscode.window.showInformationMessage(
      `MET: comparing needs two finished runs (or a study made by met ablate); this workspace has ${runItems.length === 1 ? 'one' : 'none'}.`,
    );
    return undefined;
  }
  const items: Item[] = [
    ...(studyItems.length
      ? [{ label: 'Studies', kind: vscode.QuickPickItemKind.Separator } as Item, ...studyItems]
      : []),
    ...(runItems.length
      ? [{ label: 'Finished runs', kind: vscode.QuickPickItemKind.Separator } as Item, ...runItems]
      : []),
  ];
  const picks = await vscode.window.showQuickPick(items, {
    title: 'MET: Compare runs',
    placeHolder: 'Tick two or more runs, or a study (Space ticks, Enter compares)',
    canPickMany: true,
    matchOnDescription: true,
  });
  if (!picks?.length) return undefined;
  const studiesPicked = picks.filter((p) => p.study).map((p) => p.study!);
  const runsPicked = picks.filter((p) => p.runDir).map((p) => p.runDir!);
  if (studiesPicked.length === 1 && !runsPicked.length) return { runs: [], study: studiesPicked[0] };
  // Several studies, or a study and runs: their finished runs together.
  const runs = [...runsPicked];
  for (const st of studiesPicked) {
    const s = readStudy(st);
    for (const v of s?.variants ?? []) runs.push(path.resolve(st, v.run));
  }
  const unique = [...new Set(runs.map(norm))];
  if (unique.length < 2) {
    void vscode.window.showInformationMessage('MET: tick two or more runs to compare (or a study).');
    return undefined;
  }
  return { runs: unique };
}

export function registerCompare(context: vscode.ExtensionContext): void {
  const index = getRunIndex(context);
  // Study folders the explorer offers "Compare study runs" on (a context key: menus cannot look
  // into folders themselves). Those under .met/studies/, and any study.json created meanwhile.
  const seen = new Set<string>();
  let studies: string[] = [];
  const refreshStudies = async () => {
    studies = await findStudies(seen);
    await vscode.commands.executeCommand(
      'setContext',
      STUDY_FOLDERS_KEY,
      studies.map((d) => vscode.Uri.file(d).path),
    );
  };
  const studyWatcher = vscode.workspace.createFileSystemWatcher(`**/${STUDY_FILE}`);
  const onStudyFile = (u: vscode.Uri) => {
    if (u.scheme === 'file') seen.add(path.dirname(u.fsPath));
    void refreshStudies();
  };
  void refreshStudies();

  const open = async (source: CompareSource): Promise<string | undefined> => {
    const p = ComparePanel.show(context, index, source);
    return p.key;
  };
  const compareRuns = async (...args: unknown[]): Promise<string | undefined> => {
    const dirs = dirsOf(...args);
    if (dirs.length === 1 && (await fs.promises.stat(path.join(dirs[0], STUDY_FILE)).catch(() => null)))
      return open({ runs: [], study: dirs[0] });
    if (dirs.length >= 2) return open({ runs: dirs });
    await refreshStudies();
    const source = await pickSource(index, studies, dirs);
    return source ? open(source) : undefined;
  };
  const fail = (e: unknown) => {
    void vscode.window.showErrorMessage(`MET: Compare runs: ${(e as Error).message}`);
    return undefined;
  };
  context.subscriptions.push(
    studyWatcher,
    studyWatcher.onDidCreate(onStudyFile),
    studyWatcher.onDidDelete(onStudyFile),
    vscode.workspace.onDidChangeWorkspaceFolders(() => void refreshStudies()),
    // The palette (no arguments: the quick pick), or run folders as arguments (Uris, paths).
    vscode.commands.registerCommand('met.compareRuns', (...args: unknown[]) => compareRuns(...args).catch(fail)),
    // The Runs view's context menu: (clicked item, selected items). One run alone: the quick pick
    // with it ticked, to add the others.
    vscode.commands.registerCommand('met.runs.compare', (...args: unknown[]) => compareRuns(...args).catch(fail)),
    vscode.commands.registerCommand('met.compareStudy', async (arg?: unknown) => {
      try {
        const dir = dirsOf(arg)[0];
        if (!dir) return compareRuns();
        if (!fs.existsSync(path.join(dir, STUDY_FILE))) {
          void vscode.window.showErrorMessage(`MET: ${rel(dir)} holds no ${STUDY_FILE} (met ablate writes one).`);
          return undefined;
        }
        return await open({ runs: [], study: dir });
      } catch (e) {
        return fail(e);
      }
    }),
    // Not contributed (tests only): drive a panel's webview as a user would.
    vscode.commands.registerCommand('met.compare.test', (action: CompareTestAction, key?: string) => {
      const p = key ? comparePanels.get(key) : comparePanels.all()[comparePanels.all().length - 1];
      if (!p) throw new Error(`no compare panel is open${key ? ` for ${key}` : ''}`);
      p.test(action);
    }),
  );
  // met.compare.snapshot (not contributed, tests only): what each panel's webview last reported.
  comparePanels.register(context, {
    snapshotCommand: 'met.compare.snapshot',
    snapshotFields: (p) => ({ key: p.key, source: p.source, loads: p.loads, exports: p.exports }),
    async restore(panel, saved) {
      const s = (saved as CompareState | undefined)?.source;
      if (!s || !Array.isArray(s.runs)) return undefined;
      // Gone (the study folder, or every run), or shown already: no blank panel.
      const exists = s.study ? fs.existsSync(path.join(s.study, STUDY_FILE)) : s.runs.some((d) => fs.existsSync(d));
      if (!exists || comparePanels.has(keyOf(s))) return undefined;
      return new ComparePanel(context, panel, index, s);
    },
  });
}
