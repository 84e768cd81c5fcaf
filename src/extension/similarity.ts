// "MET: Show similarity matrices": for a finished run, a class-balanced sample and one or two
// exits, heatmaps of S^w, S^b and the pairwise distances of that exit's head inputs, exactly as
// graph regularization uses them in training (the engine's 'similarity/compute'). The webview
// (webview-ui/similarity/main.ts) draws them on <canvas>, with class-sorted axes and class bands;
// hovering a cell, or moving the keyboard cursor, shows both images, their labels and the values.
//
// Stable element ids inside the webview (for UI tests):
//   #met-similarity     root; data-run-dir, data-status (loading|computing|ready|error)
//   #run-name #run-meta #status-text
//   #exit-a #exit-b #per-class #split    the controls (exit B: '' = none)
//   #scales             one colour legend per matrix kind
//   #grid               figure.heatmap[data-exit][data-kind] > canvas.matrix (tabindex 0) + canvas.overlay
//   #readout            the hovered / focused cell: img.row-img img.col-img, #readout-values
//
// Thumbnails: the engine's 'inspect/thumbs' (made with sharp, cached in the extension's global
// storage); when that fails, the image files themselves. The webview may load only from
// dist/webview, the run's data folder and the thumbnail cache (localResourceRoots).
//
// The matrices are not kept in the webview's state (a few hundred KB each): after a reload the
// serializer revives the panel with the settings the webview saved, and the engine recomputes
// them (the sample is seeded, so it is the same sample).

import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { SimilarityResult } from '../engine/explore/types';
import type {
  SimHostMessage,
  SimRunMeta,
  SimSettings,
  SimState,
  SimStateMessage,
  SimWebviewMessage,
  Split,
} from '../../webview-ui/similarity/protocol';
import { getEngines } from './engineClient';
import { recordMessage } from './log';
import { HostedPanel, PanelHost } from './panels/panelHost';
import { norm, type RunInfo } from './runFiles';
import { getRunIndex, type RunIndex } from './runIndex';
import { esc, webviewOptions, webviewPage } from './webviewPage';

export const SIMILARITY_VIEW_TYPE = 'met.similarity';
/** Default and largest images per class (n grows as classes x perClass; n^2 cells per heatmap). */
export const DEFAULT_PER_CLASS = 8;
const MAX_PER_CLASS = 64;
/** Largest sample: 600 images are 360,000 cells per heatmap, still drawn in a few ms. */
const MAX_SAMPLE = 600;
const THUMB_SIZE = 96;
const SPLITS: Split[] = ['val', 'test', 'train'];

export interface SimilarityArgs {
  runDir: string;
  exits?: number[];
  perClass?: number;
  split?: Split;
}

function runMeta(info: RunInfo): SimRunMeta {
  const c = info.config;
  return {
    dir: info.dir,
    name: info.name,
    layers: c.met.exits,
    classes: c.classes,
    counts: c.dataset.counts,
    simClamp: c.met.simClamp,
    variant: c.met.variant,
  };
}

/** Settings checked against the run: a message names the field that is wrong. */
export function checkSettings(meta: SimRunMeta, s: Partial<SimSettings>): SimSettings {
  const K = meta.layers.length;
  const exits = Array.isArray(s.exits) ? [...s.exits] : s.exits === undefined ? (K > 1 ? [0, K - 1] : [0]) : s.exits;
  if (!Array.isArray(exits) || exits.length < 1 || exits.length > 2)
    throw new Error(`exits: give one exit or two to compare (got ${JSON.stringify(exits)})`);
  for (const e of exits)
    if (!Number.isInteger(e) || e < 0 || e >= K)
      throw new Error(`exits: ${e} is not an exit of ${meta.name} (0..${K - 1}, layers ${meta.layers.join(', ')})`);
  if (exits.length === 2 && exits[0] === exits[1]) exits.pop();
  const C = Math.max(1, meta.classes.length);
  const maxPer = Math.max(1, Math.min(MAX_PER_CLASS, Math.floor(MAX_SAMPLE / C)));
  const perClass = s.perClass ?? Math.min(DEFAULT_PER_CLASS, maxPer);
  if (!Number.isInteger(perClass) || perClass < 1 || perClass > maxPer)
    throw new Error(`perClass: images per class must be 1..${maxPer} for ${C} classes (got ${perClass})`);
  const split = s.split ?? SPLITS.find((x) => meta.counts[x] > 0) ?? 'val';
  if (!SPLITS.includes(split)) throw new Error(`split: one of ${SPLITS.join(', ')} (got ${JSON.stringify(split)})`);
  if (!(meta.counts[split] > 0)) throw new Error(`split: ${meta.name} has no ${split} images`);
  return { exits: [...exits], perClass, split };
}

const keyOf = (s: SimSettings) => JSON.stringify([s.exits, s.perClass, s.split]);

const similarityPanels = new PanelHost<SimilarityPanel>(SIMILARITY_VIEW_TYPE);

class SimilarityPanel extends HostedPanel<SimHostMessage, SimWebviewMessage, SimStateMessage> {
  private seq = 0;
  /** The last computation, kept so that a webview rebuilt after being hidden shows it at once. */
  private cache: { key: string; msg: Extract<SimHostMessage, { type: 'result' }> } | undefined;
  settings: SimSettings;
  /** Computations started and their engine times (for tests and the log). */
  computations: { settings: SimSettings; ms: number; error?: string }[] = [];

  static async show(
    context: vscode.ExtensionContext,
    info: RunInfo,
    settings: Partial<SimSettings>,
  ): Promise<SimilarityPanel> {
    const meta = runMeta(info);
    const given = Object.fromEntries(
      Object.entries(settings).filter(([, v]) => v !== undefined),
    ) as Partial<SimSettings>;
    const open = similarityPanels.get(info.dir);
    if (open) {
      // Reopened without settings (runs view, palette): keep what the panel shows.
      const s = checkSettings(meta, { ...open.settings, ...given });
      open.panel.reveal();
      if (keyOf(open.settings) !== keyOf(s)) open.compute(s);
      return open;
    }
    const s = checkSettings(meta, given);
    return similarityPanels.open({
      key: info.dir,
      title: `Similarity: ${info.name}`,
      options: SimilarityPanel.options(context, info),
      create: (panel) => new SimilarityPanel(context, panel, info, s),
    });
  }

  static thumbsDir(context: vscode.ExtensionContext): vscode.Uri {
    return vscode.Uri.joinPath(context.globalStorageUri, 'thumbs');
  }

  static options(context: vscode.ExtensionContext, info: RunInfo): vscode.WebviewPanelOptions & vscode.WebviewOptions {
    const data = SimilarityPanel.dataRoot(info);
    return webviewOptions(context, [
      vscode.Uri.file(info.dir),
      SimilarityPanel.thumbsDir(context),
      ...(data ? [vscode.Uri.file(data)] : []),
    ]);
  }

  /**
   * The run's image folder when the webview may read it: only inside a workspace folder. A run's
   * config.json names any path as dataset.root ('/' included); localResourceRoots only ever holds
   * the workspace, the run and the extension (its thumbnail cache), so a folder outside shows
   * engine-made thumbnails only.
   */
  static dataRoot(info: RunInfo): string | undefined {
    const root = norm(path.resolve(info.config.dataset.root));
    const inside = (vscode.workspace.workspaceFolders ?? []).some((f) => {
      if (f.uri.scheme !== 'file') return false;
      const ws = norm(f.uri.fsPath);
      return root === ws || root.startsWith(ws.endsWith(path.sep) ? ws : ws + path.sep);
    });
    return inside ? root : undefined;
  }

  constructor(
    context: vscode.ExtensionContext,
    panel: vscode.WebviewPanel,
    private readonly info: RunInfo,
    settings: SimSettings,
  ) {
    super(similarityPanels, context, panel, info.dir);
    this.settings = settings;
    this.start(SimilarityPanel.options(context, info), this.html());
  }

  get dir(): string {
    return this.info.dir;
  }

  protected onReady(): void {
    this.post({ type: 'init', run: runMeta(this.info), settings: this.settings });
    if (this.cache && this.cache.key === keyOf(this.settings)) this.post(this.cache.msg);
    else this.compute(this.settings);
  }

  protected override onMessage(m: SimWebviewMessage): void {
    if (m.type !== 'compute') return;
    try {
      this.compute(checkSettings(runMeta(this.info), m.settings));
    } catch (e) {
      this.post({ type: 'error', seq: ++this.seq, message: (e as Error).message });
    }
  }

  /** Asks the engine for the matrices; a newer request makes older answers stale (seq). */
  compute(settings: SimSettings): void {
    this.settings = settings;
    const seq = ++this.seq;
    this.post({ type: 'computing', seq, settings });
    const t0 = Date.now();
    void (async () => {
      let res: SimilarityResult;
      try {
        res = await getEngines().request('similarity/compute', {
          runDir: this.dir,
          exits: settings.exits,
          perClass: settings.perClass,
          split: settings.split,
        });
      } catch (e) {
        const message = `similarity/compute for ${this.info.name} (${settings.split}, ${settings.perClass} per class, exits ${settings.exits.map((x) => x + 1).join(' and ')}): ${(e as Error).message}`;
        this.computations.push({ settings, ms: Date.now() - t0, error: message });
        if (seq === this.seq) this.post({ type: 'error', seq, message });
        return;
      }
      const ms = Date.now() - t0;
      this.computations.push({ settings, ms });
      if (seq !== this.seq) return;
      const thumbs = await this.thumbs(res.files);
      if (seq !== this.seq) return;
      const msg: Extract<SimHostMessage, { type: 'result' }> = {
        type: 'result',
        seq,
        settings,
        files: res.files,
        thumbs,
        labels: Int32Array.from(res.labels),
        classes: res.classes,
        classStarts: Int32Array.from(res.classStarts),
        exits: res.exits.map((e) => ({ exit: e.exit, layer: e.layer, gr: e.gr, sw: e.sw, sb: e.sb, dist: e.dist })),
        ms,
      };
      this.cache = { key: keyOf(settings), msg };
      this.post(msg);
    })();
  }

  /** Webview URIs of thumbnails made by the engine, or of the image files when it cannot make them. */
  private async thumbs(files: string[]): Promise<(string | null)[]> {
    const w = this.panel.webview;
    const root = SimilarityPanel.dataRoot(this.info);
    const direct = (f: string) =>
      root && norm(f).startsWith(root + path.sep) && fs.existsSync(f)
        ? w.asWebviewUri(vscode.Uri.file(f)).toString()
        : null;
    try {
      const cacheDir = SimilarityPanel.thumbsDir(this.context).fsPath;
      const r = await getEngines().request('inspect/thumbs', { files, size: THUMB_SIZE, cacheDir });
      return r.thumbs.map((t, i) => (t ? w.asWebviewUri(vscode.Uri.file(t)).toString() : direct(files[i])));
    } catch {
      // An engine without 'inspect/thumbs' (or sharp failing): the originals, scaled by the webview.
      return files.map(direct);
    }
  }

  focusCell(i: number, j: number): void {
    this.post({ type: 'focusCell', i, j });
  }

  private html(): string {
    const name = esc(this.info.name);
    return webviewPage(this.panel.webview, this.context.extensionUri, {
      bundle: 'similarity',
      title: `Similarity: ${this.info.name}`,
      images: true,
      body: `<main id="met-similarity" data-run-dir="${esc(this.dir)}" data-status="loading">
  <header>
    <h1 id="run-name">${name}</h1><span id="run-meta"></span>
  </header>
  <form id="controls" aria-label="Sample and exits">
    <label>Exit <select id="exit-a"></select></label>
    <label>compare with <select id="exit-b"></select></label>
    <label>images per class <input id="per-class" type="number" min="1" step="1"></label>
    <label>split <select id="split"></select></label>
    <span id="status-text" role="status" aria-live="polite">loading…</span>
  </form>
  <section id="scales" aria-label="Colour scales"></section>
  <div id="layout">
    <section id="grid" aria-label="Heatmaps"></section>
    <aside id="readout" aria-live="polite" aria-label="Cell under the cursor">
      <p class="hint">Hover a cell, or focus a heatmap (Tab) and move with the arrow keys (PageUp/PageDown: next class).</p>
    </aside>
  </div>
</main>`,
    });
  }
}

/** The run folder (and settings) from a command argument: a path, a Uri, a runs-view item, or SimilarityArgs. */
function argsOf(arg: unknown): Partial<SimilarityArgs> {
  if (typeof arg === 'string' && arg) return { runDir: arg };
  if (arg instanceof vscode.Uri) return { runDir: arg.fsPath };
  if (arg && typeof arg === 'object') {
    const o = arg as Partial<SimilarityArgs> & { run?: { dir?: string }; fsPath?: string };
    return { ...o, runDir: o.runDir ?? o.run?.dir ?? o.fsPath };
  }
  return {};
}

/** Why a run has no similarity matrices: graph regularization is defined over classes. */
const REGRESSION_NOTE =
  'similarity matrices show graph regularization, which works on classes; it is off for regression runs (no classes to pull together or push apart)';

/** Newest finished classification run first; no question when there is only one. */
async function pickRun(index: RunIndex, title: string): Promise<RunInfo | undefined> {
  const finished = (await index.runs()).filter((r) => r.status === 'done');
  const done = finished.filter((r) => r.task !== 'regression');
  if (!done.length && finished.length) {
    const msg = `MET: the finished runs of this workspace are regression runs: ${REGRESSION_NOTE}.`;
    recordMessage('info', msg);
    void vscode.window.showInformationMessage(msg);
    return undefined;
  }
  if (!done.length) {
    void vscode.window.showInformationMessage(
      'MET: no finished run in this workspace yet (similarity matrices need a trained run). Fine-tune a folder first (MET: Fine-tune on folder).',
    );
    return undefined;
  }
  if (done.length === 1) return done[0];
  const pct = (x: number | null) => (x === null ? '–' : (100 * x).toFixed(1));
  const pick = await vscode.window.showQuickPick(
    done.map((r, i) => ({
      label: r.name,
      description: i === 0 ? 'newest' : undefined,
      detail: `${r.config.met.exits.length} exits (layers ${r.config.met.exits.join(', ')}) · ${r.config.classes.length} classes${r.accuracySource ? ` · ${r.accuracySource} accuracy ${r.accuracy.map((a) => pct(a.accuracy)).join(' / ')}%` : ''}`,
      run: r,
    })),
    { title, placeHolder: 'Run (newest first)' },
  );
  return pick?.run;
}

export function registerSimilarity(context: vscode.ExtensionContext): void {
  const index = getRunIndex(context);
  const runOf = async (dir: string): Promise<RunInfo | undefined> => {
    const info = await index.info(dir);
    if (!info) {
      void vscode.window.showErrorMessage(`MET: ${dir} is not a run folder (no readable config.json).`);
      return undefined;
    }
    if (info.status !== 'done') {
      void vscode.window.showErrorMessage(
        `MET: ${info.name} is ${info.status}; similarity matrices need a finished run (its trainable.safetensors).`,
      );
      return undefined;
    }
    if (info.task === 'regression') {
      const msg = `MET: ${info.name} is a regression run: ${REGRESSION_NOTE}.`;
      recordMessage('info', msg);
      void vscode.window.showInformationMessage(msg);
      return undefined;
    }
    return info;
  };
  context.subscriptions.push(
    vscode.commands.registerCommand('met.showSimilarity', async (arg?: unknown) => {
      // Like fine-tuning (Workspace Trust, package.json capabilities): this runs the model on the
      // workspace's checkpoint and images in an engine process.
      if (!vscode.workspace.isTrusted) {
        void vscode.window.showInformationMessage(
          "MET: similarity matrices run the model on the workspace's checkpoint and images, which is disabled in Restricted Mode. Trust the workspace to use them.",
        );
        return undefined;
      }
      const a = argsOf(arg);
      const info = a.runDir ? await runOf(a.runDir) : await pickRun(index, 'MET: Show similarity matrices');
      if (!info) return undefined;
      try {
        const p = await SimilarityPanel.show(context, info, { exits: a.exits, perClass: a.perClass, split: a.split });
        return p.dir;
      } catch (e) {
        void vscode.window.showErrorMessage(`MET: similarity matrices for ${info.name}: ${(e as Error).message}`);
        return undefined;
      }
    }),
    // Not contributed (tests only): move a panel's cursor to a cell, as the arrow keys do.
    vscode.commands.registerCommand('met.similarity.focusCell', (runDir: string, i: number, j: number) => {
      const p = similarityPanels.get(norm(runDir));
      if (!p) throw new Error(`no similarity panel is open for ${runDir}`);
      p.focusCell(i, j);
    }),
  );
  // met.similarity.snapshot (not contributed, tests only): what each panel's webview last reported
  // (setState contents and the numbers it read back from the matrices it drew).
  similarityPanels.register(context, {
    snapshotCommand: 'met.similarity.snapshot',
    snapshotFields: (p) => ({
      runDir: p.dir,
      settings: p.settings,
      computations: p.computations,
    }),
    async restore(panel, saved) {
      const state = saved as SimState | undefined;
      // As the dashboard: a reload right after opening may come before the state was persisted;
      // the title names the run then.
      const dir = state?.runDir ?? (await index.dirOfName(panel.title.replace(/^Similarity: /, '')));
      const info = dir && vscode.workspace.isTrusted ? await index.info(dir) : null;
      // The run is gone (or shown already): no blank panel.
      if (!info || info.status !== 'done' || similarityPanels.has(info.dir)) return undefined;
      let settings: SimSettings;
      try {
        settings = checkSettings(runMeta(info), state?.settings ?? {});
      } catch {
        settings = checkSettings(runMeta(info), {});
      }
      return new SimilarityPanel(context, panel, info, settings);
    },
  });
}
