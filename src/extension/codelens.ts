// CodeLens at the top of `met.config.json` and `*.met.json` (which get the committed JSON Schema,
// schemas/met.config.schema.json, through package.json `contributes.jsonValidation`):
//
//   ▶ Fine-tune | Inspect exits | 6,016 trainable params (1.96% of backbone) | GFLOPs per exit: 0.00455 · 0.00882 · …
//
// "Inspect exits" appears when a run of this config exists: the engine records the config file a
// run was started from as `configFile` in the run's config.json (src/engine/run/run.ts), and
// RunIndex matches on it. It opens the Inspect exits panel (inspect.ts) on that run's test split.
//
// The numbers are the engine's 'params/compute' for the file (app/params.ts: exactly what `met
// params --json` prints), asked of the utility engine (engineClient.ts) that the parameter-counts
// panel uses too, never computed on the extension host thread: the backbone's shape comes from
// its checkpoint, which is read whole (hundreds of MB for a ViT-B), and the class count from
// scanning the data folder. Unsaved edits send the buffer's text with the file's name
// (configText), so relative paths resolve against the real file as `met` resolves them;
// debounced; results are cached by the buffer's text. An answer for an older text is dropped.

import { createHash } from 'node:crypto';
import * as vscode from 'vscode';
import type { ParamsReport } from '../app/params';
import { getEngines } from './engineClient';
import { getRunIndex, type RunIndex } from './runIndex';
import { isConfigFileName } from '../app/configFile';

/** Which documents get lenses (the same files as jsonValidation in package.json). */
export const CONFIG_SELECTOR: vscode.DocumentSelector = [
  { scheme: 'file', pattern: '**/met.config.json' },
  { scheme: 'file', pattern: '**/*.met.json' },
];
const isConfigFile = (uri: vscode.Uri) => uri.scheme === 'file' && isConfigFileName(uri.fsPath);

const EDIT_DEBOUNCE_MS = 800;

const int = (n: number) => n.toLocaleString('en-US');
/** Percent of the backbone: two decimals, or two significant digits below 0.1 %. */
export const fmtPercent = (x: number) => (x >= 0.1 ? x.toFixed(2) : x.toPrecision(2));
/** GFLOPs: three significant digits (0.00455, 17.6), whole numbers from 100 on. */
export const fmtGflops = (x: number) => (x >= 100 ? x.toFixed(0) : x.toPrecision(3));

type Result =
  { key: string; report: ParamsReport; error?: undefined } | { key: string; error: string; report?: undefined };

/** `met params --json` for a config file (or its unsaved text), from the utility engine. */
function engineParams(configFile: string, configText: string | undefined): Promise<ParamsReport> {
  return getEngines().request('params/compute', { configFile, configText, ignoreWorkspaceConfig: true });
}

class ParamsCache implements vscode.Disposable {
  private readonly results = new Map<string, Result>();
  private readonly timers = new Map<string, ReturnType<typeof setTimeout>>();
  private readonly running = new Map<string, { key: string; abort: AbortController }>();
  private disposed = false;
  private readonly done = new vscode.EventEmitter<vscode.Uri>();
  readonly onDidCompute = this.done.event;

  static keyOf(doc: vscode.TextDocument): string {
    return createHash('sha1').update(doc.getText()).digest('hex');
  }

  /** The latest result for this document (possibly for an older text while a new one computes). */
  get(doc: vscode.TextDocument): Result | undefined {
    return this.results.get(doc.uri.toString());
  }

  isCurrent(doc: vscode.TextDocument): boolean {
    return this.results.get(doc.uri.toString())?.key === ParamsCache.keyOf(doc);
  }

  /** Computes this document's numbers after `delay` ms (restarting the wait on every call). */
  schedule(doc: vscode.TextDocument, delay: number): void {
    const u = doc.uri.toString();
    clearTimeout(this.timers.get(u));
    this.timers.set(
      u,
      setTimeout(() => {
        this.timers.delete(u);
        void this.compute(doc);
      }, delay),
    );
  }

  pending(doc: vscode.TextDocument): boolean {
    const u = doc.uri.toString();
    return this.timers.has(u) || this.running.get(u)?.key === ParamsCache.keyOf(doc);
  }

  private async compute(doc: vscode.TextDocument): Promise<void> {
    if (doc.isClosed) return;
    const u = doc.uri.toString();
    const key = ParamsCache.keyOf(doc);
    if (this.results.get(u)?.key === key) return;
    const prev = this.running.get(u);
    if (prev?.key === key) return;
    prev?.abort.abort(); // an older text: its answer is no longer wanted
    const abort = new AbortController();
    this.running.set(u, { key, abort });
    let result: Result;
    try {
      // A request cannot be taken back from the engine: a newer text aborts this one, whose answer is then dropped.
      result = { key, report: await engineParams(doc.uri.fsPath, doc.isDirty ? doc.getText() : undefined) };
    } catch (e) {
      result = { key, error: (e as Error).message };
    } finally {
      if (this.running.get(u)?.abort === abort) this.running.delete(u);
    }
    if (this.disposed) return;
    if (abort.signal.aborted) return;
    this.results.set(u, result);
    this.done.fire(doc.uri);
  }

  forget(uri: vscode.Uri): void {
    const u = uri.toString();
    clearTimeout(this.timers.get(u));
    this.timers.delete(u);
    this.running.get(u)?.abort.abort();
    this.running.delete(u);
    this.results.delete(u);
  }

  dispose(): void {
    for (const t of this.timers.values()) clearTimeout(t);
    for (const r of this.running.values()) r.abort.abort();
    this.disposed = true;
    this.done.dispose();
  }
}

function paramsTooltip(r: ParamsReport): string {
  const m = r.model;
  return [
    `met params for this file: ${m.name} (${m.depth} layers, D = ${m.dim}, ${m.imageSize} px), ${r.config.classes} classes, variant ${r.config.variant}, r = ${r.config.rank}.`,
    `Trainable ${int(r.trainable)} of ${int(r.backbone)} backbone parameters: MET adapters ${int(r.met_adapters)}, exit heads ${int(r.heads)}.`,
    r.reduction === null
      ? ''
      : `Independent adapters per exit token would need ${int(r.independent_adapters)} (MET saves ${(100 * r.reduction).toFixed(1)}%).`,
  ]
    .filter(Boolean)
    .join('\n');
}

class MetCodeLensProvider implements vscode.CodeLensProvider {
  private readonly changed = new vscode.EventEmitter<void>();
  readonly onDidChangeCodeLenses = this.changed.event;

  constructor(
    private readonly cache: ParamsCache,
    private readonly index: RunIndex,
  ) {}

  refresh(): void {
    this.changed.fire();
  }

  async provideCodeLenses(doc: vscode.TextDocument): Promise<vscode.CodeLens[]> {
    if (!vscode.workspace.getConfiguration('met').get<boolean>('codeLens.enabled', true)) return [];
    const top = new vscode.Range(0, 0, 0, 0);
    const lens = (title: string, command = '', args: unknown[] = [], tooltip?: string) =>
      new vscode.CodeLens(top, { title, command, arguments: args, tooltip });
    const lenses = [
      lens(
        '$(play) Fine-tune',
        'met.fineTune',
        [{ config: doc.uri }],
        'Fine-tune with these settings (MET: Fine-tune on folder)',
      ),
    ];

    const runs = await this.index.runsOfConfig(doc.uri.fsPath);
    if (runs.length) {
      // The newest run that can be inspected (finished: it has predictions), else the newest.
      const latest = runs.find((r) => r.status === 'done') ?? runs[0];
      lenses.push(
        lens(
          '$(graph-line) Inspect exits',
          'met.inspectExits',
          [latest.dir],
          `Inspect the exits of the latest run of this config (${latest.name}, ${latest.status}; ${runs.length} run${runs.length === 1 ? '' : 's'} in all): confidences per image and exit, and the budget slider.`,
        ),
      );
    }

    // First sight of this document: compute now. Edits schedule their own (debounced) compute.
    if (!this.cache.get(doc) && !this.cache.pending(doc)) this.cache.schedule(doc, 0);
    const r = this.cache.get(doc);
    const stale = r && !this.cache.isCurrent(doc) ? ' (updating…)' : '';
    if (!r)
      lenses.push(lens('$(loading~spin) counting parameters…', '', [], 'met params --json runs in the engine process'));
    else if (r.error !== undefined)
      lenses.push(
        lens(`$(warning) met params: ${r.error.length > 120 ? r.error.slice(0, 117) + '…' : r.error}`, '', [], r.error),
      );
    else {
      const p = r.report;
      // Opens the parameter-counts panel (paramsPanel.ts) for this file.
      lenses.push(
        lens(
          `${int(p.trainable)} trainable params (${fmtPercent(p.trainable_percent)}% of backbone)${stale}`,
          'met.showParams',
          [doc.uri],
          `${paramsTooltip(p)}\nClick: MET: Show parameter counts.`,
        ),
      );
      lenses.push(
        lens(
          `GFLOPs per exit: ${p.exits.map((e) => fmtGflops(e.gflops)).join(' · ')}${stale}`,
          '',
          [],
          `GFLOPs per image to reach each exit (after layers ${p.config.exits.join(', ')}; fvcore convention, 1 multiply-add = 1 FLOP).\n` +
            p.exits
              .map((e) => `exit ${e.exit} (layer ${e.layer}): ${e.gflops} GFLOPs, segment ${e.segment_gflops}`)
              .join('\n'),
        ),
      );
    }
    return lenses;
  }

  dispose(): void {
    this.changed.dispose();
  }
}

export function registerCodeLens(context: vscode.ExtensionContext): void {
  const index = getRunIndex(context);
  const cache = new ParamsCache();
  const provider = new MetCodeLensProvider(cache, index);
  context.subscriptions.push(
    cache,
    provider,
    vscode.languages.registerCodeLensProvider(CONFIG_SELECTOR, provider),
    cache.onDidCompute(() => provider.refresh()),
    index.onDidChange(() => provider.refresh()),
    vscode.workspace.onDidChangeTextDocument((e) => {
      if (isConfigFile(e.document.uri) && e.contentChanges.length) cache.schedule(e.document, EDIT_DEBOUNCE_MS);
    }),
    vscode.workspace.onDidCloseTextDocument((d) => {
      if (isConfigFile(d.uri)) cache.forget(d.uri);
    }),
    vscode.workspace.onDidChangeConfiguration((e) => {
      if (e.affectsConfiguration('met.codeLens.enabled')) provider.refresh();
    }),
  );
}
