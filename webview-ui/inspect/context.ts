// What the Inspect exits webview's modules share: the VS Code API, the run and source this
// document shows and its saved state, the model (model.ts), what the host sent besides scores
// (thumbnails, the detail, the status line), and the formats that depend on the run's task.

import { $, vscodeApi } from '../common/vscode';
import { fmtV, heat, pct } from './format';
import { InspectModel } from './model';
import type { InspectState, SourceInfo, WebviewMessage } from './protocol';

export const vscode = vscodeApi<WebviewMessage, InspectState>();
export const root = $('met-inspect');
const runDir = root.dataset.runDir ?? '';
const sourceAttr = JSON.parse(root.dataset.source ?? '{"kind":"test","paths":[],"label":"test split"}') as SourceInfo;
const sameSource = (a: SourceInfo | undefined, b: SourceInfo) =>
  !!a && a.kind === b.kind && a.paths.join('\n') === b.paths.join('\n');
// The state VS Code kept for this webview, or the copy the host kept (data-state, after a window
// reload): code-server persists webview state lazily, so the last seconds before a reload can be
// missing from VS Code's copy, while the host has every state the webview posted. Newer wins.
const kept = vscode.getState() as InspectState | undefined;
const fromHost = root.dataset.state ? (JSON.parse(root.dataset.state) as InspectState) : undefined;
const saved = fromHost && (!kept || (fromHost.savedAt ?? 0) > (kept.savedAt ?? 0)) ? fromHost : kept;
export const state: InspectState =
  saved && saved.runDir === runDir && sameSource(saved.source, sourceAttr) ? saved : { runDir, source: sourceAttr };
// Whether this document started from a saved state (after a reload or being hidden), for UI tests.
root.dataset.restored = state === saved ? 'yes' : saved ? 'other' : 'no';
vscode.setState(state);

/** The images' scores, the slider's point and what it gives (model.ts: no DOM, unit-tested). */
export const model = new InspectModel();

/** What the host sent besides scores: thumbnail URIs, the selected image's detail, the status line. */
export const view: {
  thumbs: (string | null | undefined)[];
  detail: { index: number; uri: string | null; error?: string } | null;
  statusText: string;
  statusError: boolean;
} = { thumbs: [], detail: null, statusText: '', statusError: false };

/** Regression: a distance in target units (agreement, error) to [0, 1], 1 = none: 1 - d / σ of the targets. */
export const closeness = (d: number) => (Number.isFinite(d) ? Math.max(0, 1 - Math.abs(d) / model.scale) : NaN);
/** The accuracy-like metric as shown: accuracy, or for regression MAE (the metric is -MAE). */
export const metricText = (x: number | null | undefined, d = 1) =>
  model.reg ? (x === null || x === undefined || !Number.isFinite(x) ? '–' : `MAE ${fmtV(-x)}`) : pct(x, d);
/** Heat bin of the metric (regression: of the MAE's closeness). */
export const metricHeat = (x: number) => (model.reg ? heat(closeness(-x)) : heat(x));
/** The metric as the snapshot reports it: accuracy, or the MAE (positive). */
export const metricOut = (x: number | null | undefined) =>
  x === null || x === undefined || !Number.isFinite(x) ? null : model.reg ? -x : x;
export const className = (c: number) =>
  model.init && c >= 0 && c < model.init.classes.length ? model.init.classes[c] : c < 0 ? '–' : String(c);
export const exitLabel = (j: number) => `exit ${j + 1} · layer ${model.init?.layers[j] ?? '?'}`;

export function h<T extends keyof HTMLElementTagNameMap>(
  tag: T,
  cls?: string,
  text?: string,
): HTMLElementTagNameMap[T] {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}
/** Series colours of the used exits (inspect.css .s0 .. .s7: the dashboard's five, then three more). */
export const series = (u: number) => `s${u % 8}`;
