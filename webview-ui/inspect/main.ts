// The Inspect exits webview (bundled by esbuild into dist/webview/inspect.js, platform 'browser').
//
// A grid of images by exits: each cell is that exit's confidence as a heat colour (theme
// variables, see inspect.css) and its predicted class; the exit each image takes under the
// current thresholds is marked. Beside it the selected image with per-layer bars (confidence
// and top-3 classes at every exit), above it the budget slider, below it the per-class summary.
//
// The budget slider is computed HERE, in the webview, with the engine's own pure functions
// (src/engine/infer/thresholds.ts, bundled into this script): moving it re-applies the point's
// thresholds to the stored per-exit confidences (no inference, no round trip to the host), so
// accuracy, mean GFLOPs, the exit distribution, the marks in the grid and the per-class summary
// update in the same frame. For the run's test split that is exactly the computation that
// produced thresholds.json's curve, so the numbers are the engine's.
//
// The grid is virtualised: only the rows on screen (plus a few) exist in the DOM, recycled as
// the list scrolls; thumbnails and scores are asked of the host for the rows on screen first.
// Row geometry is set through the CSSOM (element.style), which the CSP allows; there are no
// style attributes or <style> elements.
//
// Flow: read the run and source from #met-inspect's data attributes and keep them in setState at
// once (a reload can then revive the panel even before the first render), post 'ready', receive
// 'init', then 'scores' / 'thumbs' / 'detail' as the engine answers; after each render post 'state'.

import './inspect.css';
import { $, vscodeApi } from '../common/vscode';
import { svgEl } from '../common/svg';
import { applyThresholds, type ExitScores, type ThresholdResult } from '../../src/engine/infer/thresholds';
import type {
  Curve,
  HostMessage,
  InitMessage,
  InspectState,
  Perf,
  RenderedSnapshot,
  ScoresMessage,
  SourceInfo,
  TestAction,
  WebviewMessage,
} from './protocol';

const vscode = vscodeApi<WebviewMessage, InspectState>();
const root = $('met-inspect');
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
let state: InspectState =
  saved && saved.runDir === runDir && sameSource(saved.source, sourceAttr) ? saved : { runDir, source: sourceAttr };
// Whether this document started from a saved state (after a reload or being hidden), for UI tests.
root.dataset.restored = state === saved ? 'yes' : saved ? 'other' : 'no';
vscode.setState(state);

/** Row height in CSS pixels (inspect.css .row has the same). */
const ROW_H = 36;
/** Rows rendered above and below the screen, so a fast wheel never shows a blank strip. */
const OVERSCAN = 8;

// ---- Data ----

let init: InitMessage | null = null;
let K = 0;
let M = 0;
let n = 0;
let used: Int32Array = new Int32Array(0);
let curve: Curve = {
  p: new Float64Array(0),
  thresholds: new Float64Array(0),
  accuracy: new Float64Array(0),
  gflops: new Float64Array(0),
};
let chosen = 0;
let chosenSource = '';
/** Per exit (all K), [n]: confidence (NaN until scored) and class (-1). */
let conf: Float32Array[] = [];
let pred: Int32Array[] = [];
// Regression runs (init.task): each exit's value (NaN until scored), the images' targets (NaN:
// unknown), and the colour scale of agreement and error (target units). `conf` then holds the
// agreement with the previous exit (NaN at exit 1), what the run's thresholds apply to.
let reg = false;
let val: Float32Array[] = [];
let target: Float64Array = new Float64Array(0);
let scale = 1;
/** Summary groups: the classes, or for regression the target values (or ranges of them). */
let groupNames: string[] = [];
/** [n] group of each image (-1: no label / no target). */
let groupOf: Int32Array = new Int32Array(0);
let scoredMask = new Uint8Array(0);
let scored = 0;
let thumbs: (string | null | undefined)[] = [];
/** Top-k per exit of images the host scored with top-k: index -> [K * k] classes / probabilities. */
const tops = new Map<number, { k: number; prob: Float32Array; cls: Int32Array }>();
let detail: { index: number; uri: string | null; error?: string } | null = null;
let statusText = '';
let statusError = false;
/** Bumped whenever scores change: rows re-fill their cells. */
let dataVersion = 0;

/** The current slider position (index into the curve). */
let point = 0;
/** applyThresholds over the scored images for the current point; exitOf[i] per image (-1: not scored). */
let dyn: { res: ThresholdResult | null; exitOf: Int32Array } = { res: null, exitOf: new Int32Array(0) };
let exitAcc: (number | null)[] = [];
let classStats: RenderedSnapshot['classes'] = [];
/** Per class and exit (all K): static accuracy; per class: right answers under the thresholds. */
let classExitAcc: (number | null)[][] = [];

function onInit(m: InitMessage): void {
  init = m;
  K = m.layers.length;
  M = m.used.length;
  n = m.files.length;
  used = m.used;
  curve = m.curve;
  chosen = m.chosen;
  chosenSource = m.chosenSource;
  conf = Array.from({ length: K }, () => new Float32Array(n).fill(NaN));
  pred = Array.from({ length: K }, () => new Int32Array(n).fill(-1));
  reg = m.task === 'regression';
  val = reg ? Array.from({ length: K }, () => new Float32Array(n).fill(NaN)) : [];
  target = reg && m.targets ? m.targets : new Float64Array(n).fill(NaN);
  scale = reg && m.targetScale && Number.isFinite(m.targetScale) && m.targetScale > 0 ? m.targetScale : 1;
  scoredMask = new Uint8Array(n);
  scored = 0;
  thumbs = new Array(n).fill(undefined);
  tops.clear();
  if (m.conf && m.pred) {
    // Regression: conf is the agreement the host computed from the values (exitScores' rule).
    for (let j = 0; j < K; j++) {
      conf[j].set(m.conf.subarray(j * n, (j + 1) * n));
      pred[j].set(m.pred.subarray(j * n, (j + 1) * n));
      if (reg && m.value) val[j].set(m.value.subarray(j * n, (j + 1) * n));
    }
    scoredMask.fill(1);
    scored = n;
  }
  buildGroups();
  const P = curve.p.length;
  point = state.point !== undefined && state.point >= 0 && state.point < P ? state.point : chosen;
  if (state.active !== undefined && state.active >= n) state.active = undefined;
  if (state.selected !== undefined && state.selected >= n) state.selected = undefined;
  dataVersion++;
  buildStatic();
  renderHeader();
  layoutGrid();
  recompute();
  renderAll();
  // Restore the scroll position once the spacer has its height.
  if (state.scrollTop) scroller.scrollTop = state.scrollTop;
  renderRows(true);
  if (state.selected !== undefined) select(state.selected, false);
}

function onScores(m: ScoresMessage): void {
  if (!init) return;
  const k = m.k;
  for (let r = 0; r < m.index.length; r++) {
    const i = m.index[r];
    if (i < 0 || i >= n) continue;
    if (!m.ok[r]) {
      scoredMask[i] = 2; // unreadable: never scored, shown as such
      continue;
    }
    for (let j = 0; j < K; j++) {
      conf[j][i] = m.conf[r * K + j];
      pred[j][i] = m.pred[r * K + j];
      if (reg && m.value) val[j][i] = m.value[r * K + j];
    }
    if (!scoredMask[i] || scoredMask[i] === 2) scored++;
    scoredMask[i] = 1;
    if (k > 0)
      tops.set(i, {
        k,
        prob: m.topProb.slice(r * K * k, (r + 1) * K * k),
        cls: m.topClass.slice(r * K * k, (r + 1) * K * k),
      });
  }
  dataVersion++;
  scheduleData();
}

// ---- Computation ----

/** The thresholds of curve point `i` over the used exits. */
const thresholdsOf = (i: number) => Array.from(curve.thresholds.subarray(i * M, (i + 1) * M));
const cost = () => Array.from(used, (j) => init!.gflops[j]);

/**
 * The summary's groups: the classes (each image's label), or for a regression run its target
 * values: one group per value when there are at most 12 (counts, ratings), else 8 equal ranges.
 */
function buildGroups(): void {
  if (!init) return;
  if (!reg) {
    groupNames = init.classes;
    groupOf = init.labels;
    return;
  }
  groupOf = new Int32Array(n).fill(-1);
  const vals = [...new Set(Array.from(target).filter((t) => Number.isFinite(t)))].sort((a, b) => a - b);
  if (!vals.length) {
    groupNames = [];
    return;
  }
  if (vals.length <= 12) {
    groupNames = vals.map((v) => `= ${fmtV(v)}`);
    const at = new Map(vals.map((v, g) => [v, g]));
    for (let i = 0; i < n; i++) if (Number.isFinite(target[i])) groupOf[i] = at.get(target[i])!;
    return;
  }
  const lo = vals[0];
  const hi = vals[vals.length - 1];
  const B = 8;
  const w = (hi - lo) / B;
  // Half-open ranges [a, b), the last one closed so that the largest target is in it.
  groupNames = Array.from(
    { length: B },
    (_, g) => `[${fmtV(lo + g * w)}, ${fmtV(g === B - 1 ? hi : lo + (g + 1) * w)}${g === B - 1 ? ']' : ')'}`,
  );
  for (let i = 0; i < n; i++)
    if (Number.isFinite(target[i])) groupOf[i] = Math.min(B - 1, Math.floor((target[i] - lo) / w));
}

/**
 * How good exit j's answer for image i is: 1 / 0 (right class), or regression -|value - target|,
 * in float32 as exitScores gives it to the budget curve (`f32`), or exact as `met eval`'s MAE.
 */
function quality(j: number, i: number, f32 = true): number {
  if (!reg) return pred[j][i] === init!.labels[i] ? 1 : 0;
  const q = -Math.abs(val[j][i] - target[i]);
  return f32 ? Math.fround(q) : q;
}

/**
 * Static (every exit runs) accuracy per exit, overall and per group, over labelled scored images.
 * Regression: -MAE (higher is better, as the budget curve's `accuracy`); shown as MAE.
 */
function buildStatic(): void {
  if (!init) return;
  const C = groupNames.length;
  const right = Array.from({ length: C + 1 }, () => new Float64Array(K));
  const count = new Float64Array(C + 1);
  for (let i = 0; i < n; i++) {
    const y = groupOf[i];
    if (scoredMask[i] !== 1 || y < 0) continue;
    count[y]++;
    count[C]++;
    for (let j = 0; j < K; j++) {
      const q = quality(j, i, false);
      right[y][j] += q;
      right[C][j] += q;
    }
  }
  exitAcc = Array.from({ length: K }, (_, j) => (count[C] ? right[C][j] / count[C] : null));
  classExitAcc = Array.from({ length: C }, (_, c) =>
    Array.from({ length: K }, (_, j) => (count[c] ? right[c][j] / count[c] : null)),
  );
}

/** Applies the current point's thresholds to the scored images (the engine's applyThresholds). */
function recompute(): void {
  if (!init || !curve.p.length) return;
  const idx: number[] = [];
  for (let i = 0; i < n; i++) if (scoredMask[i] === 1) idx.push(i);
  const m = idx.length;
  const exitOf = new Int32Array(n).fill(-1);
  // Labels only when every scored image has one (accuracy over a partly labelled folder would
  // count unlabelled images as wrong); otherwise accuracy is shown per labelled class below.
  const allLabelled = m > 0 && idx.every((i) => groupOf[i] >= 0);
  const s: ExitScores = {
    conf: Array.from(used, (j) => Float32Array.from(idx, (i) => conf[j][i])),
    pred: Array.from(used, (j) => Int32Array.from(idx, (i) => pred[j][i])),
    // Regression: the mean of -|error| (applyThresholds' quality), so accuracy = -MAE.
    ...(allLabelled
      ? reg
        ? { quality: Array.from(used, (j) => Float32Array.from(idx, (i) => quality(j, i))) }
        : { labels: Int32Array.from(idx, (i) => init!.labels[i]) }
      : {}),
  };
  let res: ThresholdResult | null = null;
  if (m > 0) {
    res = applyThresholds(s, thresholdsOf(point), cost());
    idx.forEach((i, r) => (exitOf[i] = res!.exitOf[r]));
  }
  dyn = { res, exitOf };
  // Per class: where its images exit and how many the taken exit gets right.
  const C = groupNames.length;
  const counts = Array.from({ length: C }, () => new Array<number>(M).fill(0));
  const right = new Array<number>(C).fill(0);
  const total = new Array<number>(C).fill(0);
  for (const i of idx) {
    const y = groupOf[i];
    if (y < 0) continue;
    const e = exitOf[i];
    counts[y][e]++;
    total[y]++;
    right[y] += quality(used[e], i);
  }
  classStats = groupNames.map((name, c) => ({
    name,
    n: total[c],
    exitCounts: counts[c],
    accuracy: total[c] ? right[c] / total[c] : null,
  }));
}

// ---- Formatting ----

const pct = (x: number | null | undefined, d = 1) =>
  x === null || x === undefined || !Number.isFinite(x) ? '–' : `${(100 * x).toFixed(d)}%`;
const gf = (x: number | null | undefined) =>
  x === null || x === undefined || !Number.isFinite(x) ? '–' : x >= 100 ? x.toFixed(0) : x.toPrecision(3);
const int = (x: number) => x.toLocaleString('en-US');
const fmtT = (t: number) => (t === Infinity ? '∞' : t === -Infinity ? '−∞' : Number.isNaN(t) ? 'NaN' : t.toFixed(3));
const jsonT = (t: number): number | string => (Number.isFinite(t) ? t : t === -Infinity ? '-Infinity' : 'Infinity');
/** Heat bin 0..10 of a confidence in [0, 1] (inspect.css .h0 .. .h10). */
const heat = (c: number) => (Number.isFinite(c) ? Math.max(0, Math.min(10, Math.round(c * 10))) : -1);
/** Regression: a value in target units, as `met predict` prints them (4 significant digits). */
const fmtV = (x: number) =>
  Number.isFinite(x)
    ? Math.abs(x) >= 1e4 || (x !== 0 && Math.abs(x) < 1e-3)
      ? x.toPrecision(3)
      : Number(x.toPrecision(4)).toString()
    : '–';
/** Regression: a distance in target units (agreement, error) to [0, 1], 1 = none: 1 - d / σ of the targets. */
const closeness = (d: number) => (Number.isFinite(d) ? Math.max(0, 1 - Math.abs(d) / scale) : NaN);
/** The accuracy-like metric as shown: accuracy, or for regression MAE (the metric is -MAE). */
const metricText = (x: number | null | undefined, d = 1) =>
  reg ? (x === null || x === undefined || !Number.isFinite(x) ? '–' : `MAE ${fmtV(-x)}`) : pct(x, d);
/** Heat bin of the metric (regression: of the MAE's closeness). */
const metricHeat = (x: number) => (reg ? heat(closeness(-x)) : heat(x));
/** The metric as the snapshot reports it: accuracy, or the MAE (positive). */
const metricOut = (x: number | null | undefined) =>
  x === null || x === undefined || !Number.isFinite(x) ? null : reg ? -x : x;
const className = (c: number) =>
  init && c >= 0 && c < init.classes.length ? init.classes[c] : c < 0 ? '–' : String(c);
const exitLabel = (j: number) => `exit ${j + 1} · layer ${init?.layers[j] ?? '?'}`;

// ---- DOM: header, slider, curve ----

function h<T extends keyof HTMLElementTagNameMap>(tag: T, cls?: string, text?: string): HTMLElementTagNameMap[T] {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}
/** Series colours of the used exits (inspect.css .s0 .. .s7: the dashboard's five, then three more). */
const series = (u: number) => `s${u % 8}`;

const slider = $<HTMLInputElement>('budget-slider');
const saveBtn = $<HTMLButtonElement>('save');
const runSelect = $<HTMLSelectElement>('run-select');

function renderHeader(): void {
  if (!init) return;
  $('run-name').textContent = init.runName;
  root.dataset.runDir = init.runDir;
  runSelect.replaceChildren(
    ...init.runs.map((r) => {
      const o = h('option', undefined, `${r.name}${r.detail ? ` (${r.detail})` : ''}`);
      o.value = r.dir;
      o.selected = r.dir === init!.runDir;
      return o;
    }),
  );
  $('source').textContent = init.source.label;
  // Regression runs: values and MAE instead of classes and accuracy.
  $('acc-label').textContent = reg ? 'MAE' : 'Accuracy';
  $('budget-title').textContent = reg
    ? "Budget: thresholds along the run's MAE / GFLOPs curve"
    : "Budget: thresholds along the run's accuracy / GFLOPs curve";
  $('curve').setAttribute(
    'aria-label',
    reg
      ? 'MAE (lower is higher up) versus mean GFLOPs of the budget curve'
      : 'Accuracy versus mean GFLOPs of the budget curve',
  );
  $('summary-title').textContent = reg ? (groupNames.length ? 'Per target value' : 'Summary') : 'Per class';
  grid.setAttribute(
    'aria-label',
    reg
      ? 'Images by exits: predicted value and agreement with the previous exit; arrows move, Enter selects'
      : 'Images by exits: confidence and predicted class; arrows move, Enter selects',
  );
  $('source').title = init.source.paths.join('\n') || 'the test split stored in predictions.json (no inference)';
  slider.max = String(Math.max(0, curve.p.length - 1));
  slider.disabled = curve.p.length < 2;
  // The grid's columns: #, image, file, then one per exit.
  const head = $('grid-head');
  head.replaceChildren(
    cellEl('cell num', '#'),
    cellEl('cell thumb', ''),
    cellEl('cell name', reg ? 'Image · target' : 'Image · label'),
    ...Array.from({ length: K }, (_, j) => {
      const c = cellEl(`cell exit-head ${used.includes(j) ? '' : 'unused'}`, `Exit ${j + 1}`);
      c.title = `${exitLabel(j)}: ${gf(init!.gflops[j])} GFLOPs to reach${used.includes(j) ? '' : ' (not used by budgeted inference)'}`;
      c.appendChild(h('span', 'sub', `L${init!.layers[j]}`));
      return c;
    }),
  );
  head.setAttribute('role', 'row');
  for (const c of head.children) c.setAttribute('role', 'columnheader');
}

function cellEl(cls: string, text: string): HTMLDivElement {
  const d = h('div', cls, text);
  return d;
}

function renderBudget(): void {
  if (!init) return;
  const P = curve.p.length;
  slider.value = String(point);
  const res = dyn.res;
  const p = curve.p[point];
  const th = thresholdsOf(point);
  $('acc').textContent = res ? (reg ? fmtV(-res.accuracy) : pct(res.accuracy, 2)) : '–';
  $('gflops').textContent = res ? gf(res.gflops) : '–';
  $('point-p').textContent = Number.isFinite(p) ? `p = ${p.toFixed(2)}` : 'custom';
  // What each threshold means for an image reaching that exit.
  // Regression thresholds are on -|Δ|: conf ≥ T reads as "within |T| of the previous exit".
  $('thresholds').textContent =
    `Leaves at ${th.map((t, u) => (u === M - 1 ? `exit ${used[u] + 1}: the rest` : t === Infinity || Number.isNaN(t) ? `exit ${used[u] + 1}: never` : reg ? `exit ${used[u] + 1}: |Δ| ≤ ${fmtV(-t)}` : `exit ${used[u] + 1}: conf ≥ ${fmtT(t)}`)).join(' · ')}`;
  const isSaved = point === chosen;
  $('saved-badge').textContent = isSaved ? 'saved' : 'not saved';
  $('saved-badge').className = `badge ${isSaved ? 'saved' : 'unsaved'}`;
  $('saved-badge').title = isSaved
    ? `The run's saved thresholds (${chosenSource}): met predict and met export use them`
    : 'Save thresholds to make met predict and met export use this point';
  saveBtn.disabled = isSaved || P === 0;
  const ref =
    init.source.kind === 'test'
      ? ''
      : ` (run's test split: ${metricText(curve.accuracy[point], 2)}, ${gf(curve.gflops[point])} GFLOPs)`;
  const noMetric = res && !Number.isFinite(res.accuracy) ? (reg ? '; no MAE: not every image has a target' : '') : '';
  $('budget-note').textContent = res
    ? `over ${int(res.exitOf.length)} ${init.source.kind === 'test' ? 'test' : 'scored'} images${ref}${noMetric}`
    : 'no scored image yet';
  slider.setAttribute(
    'aria-valuetext',
    `${Number.isFinite(p) ? `p ${p.toFixed(2)}` : 'saved thresholds'}: ${reg ? metricText(res?.accuracy) : `accuracy ${pct(res?.accuracy, 1)}`}, ${gf(res?.gflops)} GFLOPs per image`,
  );
  renderDistribution();
  renderCurve();
}

/** The exit distribution: one stacked bar, a segment per used exit, and its counts. */
function renderDistribution(): void {
  const svg = $<SVGSVGElement>('dist');
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const W = 320;
  const H = 14;
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  const counts = dyn.res?.exitCounts ?? new Array<number>(M).fill(0);
  const total = counts.reduce((a, b) => a + b, 0);
  let x = 0;
  counts.forEach((c, u) => {
    if (!total || !c) return;
    const w = (c / total) * W;
    const r = svgEl('rect', { x: x.toFixed(2), y: 0, width: w.toFixed(2), height: H, class: `seg ${series(u)}` }, svg);
    svgEl('title', {}, r).textContent = `${exitLabel(used[u])}: ${c} images (${pct(c / total)})`;
    x += w;
  });
  const legend = $('dist-legend');
  legend.replaceChildren(
    ...counts.map((c, u) => {
      const li = h('li');
      const sw = svgEl('svg', { width: 10, height: 10, class: 'swatch', 'aria-hidden': 'true' });
      svgEl('rect', { width: 10, height: 10, class: series(u) }, sw);
      li.append(sw, document.createTextNode(`exit ${used[u] + 1}: ${int(c)}${total ? ` (${pct(c / total, 0)})` : ''}`));
      return li;
    }),
  );
}

/** Accuracy versus mean GFLOPs of the curve points, the current one and the saved one marked. */
function renderCurve(): void {
  const svg = $<SVGSVGElement>('curve');
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const W = 300;
  const H = 130;
  const m = { l: 40, r: 8, t: 8, b: 22 };
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  const P = curve.p.length;
  const pts: [number, number, number][] = [];
  for (let i = 0; i < P; i++)
    if (Number.isFinite(curve.gflops[i]) && Number.isFinite(curve.accuracy[i]))
      pts.push([curve.gflops[i], curve.accuracy[i], i]);
  if (!pts.length) {
    svgEl('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle', class: 'empty' }, svg).textContent = 'no curve';
    return;
  }
  let x0 = Math.min(...pts.map((q) => q[0]));
  let x1 = Math.max(...pts.map((q) => q[0]));
  let y0 = Math.min(...pts.map((q) => q[1]));
  let y1 = Math.max(...pts.map((q) => q[1]));
  if (x1 === x0) ((x0 -= x0 * 0.05 || 1), (x1 += x1 * 0.05 || 1));
  if (y1 === y0) ((y0 -= 0.05), (y1 += 0.05));
  const X = (x: number) => m.l + ((x - x0) / (x1 - x0)) * (W - m.l - m.r);
  const Y = (y: number) => m.t + (1 - (y - y0) / (y1 - y0)) * (H - m.t - m.b);
  const g = svgEl('g', { class: 'grid' }, svg);
  svgEl('line', { x1: m.l, x2: W - m.r, y1: H - m.b, y2: H - m.b, class: 'axis' }, g);
  svgEl('line', { x1: m.l, x2: m.l, y1: m.t, y2: H - m.b, class: 'axis' }, g);
  // Regression: the curve's accuracy is -MAE (up is better); ticks show the MAE.
  const tick = (y: number) => (reg ? fmtV(-y) : pct(y, 0));
  svgEl(
    'text',
    { x: m.l - 4, y: Y(y1), 'text-anchor': 'end', 'dominant-baseline': 'middle', class: 'tick' },
    g,
  ).textContent = tick(y1);
  svgEl(
    'text',
    { x: m.l - 4, y: Y(y0), 'text-anchor': 'end', 'dominant-baseline': 'middle', class: 'tick' },
    g,
  ).textContent = tick(y0);
  svgEl('text', { x: m.l, y: H - 6, 'text-anchor': 'start', class: 'tick' }, g).textContent = gf(x0);
  svgEl('text', { x: W - m.r, y: H - 6, 'text-anchor': 'end', class: 'tick' }, g).textContent = `${gf(x1)} GFLOPs`;
  svgEl(
    'polyline',
    { points: pts.map((q) => `${X(q[0]).toFixed(1)},${Y(q[1]).toFixed(1)}`).join(' '), class: 'curve-line' },
    svg,
  );
  for (const q of pts) {
    const c = svgEl(
      'circle',
      {
        cx: X(q[0]).toFixed(1),
        cy: Y(q[1]).toFixed(1),
        r: q[2] === point ? 5 : 2.5,
        class: q[2] === point ? 'pt current' : 'pt',
      },
      svg,
    );
    svgEl('title', {}, c).textContent =
      `${Number.isFinite(curve.p[q[2]]) ? `p ${curve.p[q[2]].toFixed(2)}` : 'saved'}: ${metricText(q[1], 2)}, ${gf(q[0])} GFLOPs`;
  }
  const s = pts.find((q) => q[2] === chosen);
  if (s)
    svgEl(
      'rect',
      {
        x: (X(s[0]) - 4).toFixed(1),
        y: (Y(s[1]) - 4).toFixed(1),
        width: 8,
        height: 8,
        transform: `rotate(45 ${X(s[0]).toFixed(1)} ${Y(s[1]).toFixed(1)})`,
        class: 'pt saved',
      },
      svg,
    );
}

// ---- DOM: the virtualised grid ----

const grid = $('grid');
const scroller = $('grid-scroll');
const spacer = $('grid-spacer');
const rowsLayer = $('grid-rows');
/** Recycled row elements: pool[r] shows image shown[r]. */
const pool: HTMLDivElement[] = [];
const shown: number[] = [];
const filled: number[] = [];
let rendered = { first: 0, last: -1 };
let sentVisible = { first: -1, last: -1 };

function layoutGrid(): void {
  // Column template through a custom property (CSSOM; inspect.css uses var(--exits)).
  grid.style.setProperty('--exits', String(K));
  spacer.style.height = `${n * ROW_H}px`;
  grid.setAttribute('aria-rowcount', String(n + 1));
  grid.setAttribute('aria-colcount', String(K + 3));
  pool.forEach((r) => r.remove());
  pool.length = 0;
  shown.length = 0;
  filled.length = 0;
}

function makeRow(): HTMLDivElement {
  const row = h('div', 'row');
  row.setAttribute('role', 'row');
  const num = h('div', 'cell num');
  const th = h('div', 'cell thumb');
  const img = h('img');
  img.alt = '';
  img.width = 32;
  img.height = 32;
  img.decoding = 'async';
  th.appendChild(img);
  const name = h('div', 'cell name');
  name.append(h('span', 'file'), h('span', 'label'));
  row.append(num, th, name);
  for (let j = 0; j < K; j++) {
    const c = h('div', 'cell exit');
    c.setAttribute('role', 'gridcell');
    c.append(h('span', 'cls'), h('span', 'conf'));
    row.appendChild(c);
  }
  for (const c of [num, th, name]) c.setAttribute('role', 'gridcell');
  row.addEventListener('click', (e) => {
    const i = Number(row.dataset.index);
    const cell = (e.target as HTMLElement).closest('.cell');
    const col = cell ? Array.prototype.indexOf.call(row.children, cell) - 2 : (state.col ?? 0);
    setActive(i, Math.max(0, col));
    select(i);
    grid.focus({ preventScroll: true });
  });
  rowsLayer.appendChild(row);
  return row;
}

/** Fills a pooled row with image i (cells, heat classes, marks). */
function fillRow(row: HTMLDivElement, i: number): void {
  row.dataset.index = String(i);
  row.setAttribute('aria-rowindex', String(i + 2));
  row.style.transform = `translateY(${i * ROW_H}px)`;
  const cells = row.children;
  const y = init!.labels[i];
  const taken = dyn.exitOf[i];
  const takenExit = taken >= 0 ? used[taken] : -1;
  row.classList.toggle('selected', state.selected === i);
  row.classList.toggle('active', state.active === i);
  row.setAttribute('aria-selected', String(state.selected === i));
  (cells[0] as HTMLElement).textContent = String(i + 1);
  const img = cells[1].firstChild as HTMLImageElement;
  const t = thumbs[i];
  if (t) {
    if (img.getAttribute('src') !== t) img.src = t;
    img.classList.remove('pending');
  } else {
    img.removeAttribute('src');
    img.classList.add('pending');
  }
  const name = cells[2] as HTMLElement;
  (name.firstChild as HTMLElement).textContent = init!.names[i];
  (name.lastChild as HTMLElement).textContent = reg
    ? Number.isFinite(target[i])
      ? `target ${fmtV(target[i])}`
      : scoredMask[i] === 2
        ? 'unreadable'
        : ''
    : y >= 0
      ? className(y)
      : scoredMask[i] === 2
        ? 'unreadable'
        : '';
  name.title = init!.files[i];
  name.id = `c-${i}-0`;
  if (reg) return fillValueCells(cells, i, takenExit);
  for (let j = 0; j < K; j++) {
    const c = cells[3 + j] as HTMLElement;
    c.id = `c-${i}-${j + 1}`;
    const v = conf[j][i];
    const p = pred[j][i];
    const b = heat(v);
    const wrong = y >= 0 && p >= 0 && p !== y;
    c.className = `cell exit ${b >= 0 ? `h${b}` : 'unscored'}${j === takenExit ? ' taken' : ''}${wrong ? ' wrong' : ''}${state.active === i && state.col === j + 1 ? ' active-cell' : ''}`;
    (c.firstChild as HTMLElement).textContent = b >= 0 ? className(p) : scoredMask[i] === 2 ? '✕' : '…';
    (c.lastChild as HTMLElement).textContent = b >= 0 ? pct(v, 0) : '';
    c.setAttribute(
      'aria-label',
      b >= 0
        ? `${exitLabel(j)}: ${className(p)}, confidence ${pct(v)}${j === takenExit ? ', exit taken' : ''}${wrong ? ', wrong' : ''}`
        : `${exitLabel(j)}: not scored yet`,
    );
  }
}

/**
 * Regression rows: each exit's value, and under it the agreement with the previous exit (Δ, what
 * the thresholds apply to); the colour is that agreement's closeness (exit 1 has none: neutral).
 */
function fillValueCells(cells: HTMLCollection, i: number, takenExit: number): void {
  const ok = scoredMask[i] === 1;
  const t = target[i];
  for (let j = 0; j < K; j++) {
    const c = cells[3 + j] as HTMLElement;
    c.id = `c-${i}-${j + 1}`;
    const v = val[j][i];
    const d = -conf[j][i];
    const b = ok && j > 0 ? heat(closeness(d)) : -1;
    c.className = `cell exit ${!ok ? 'unscored' : b >= 0 ? `h${b}` : 'noconf'}${j === takenExit ? ' taken' : ''}${state.active === i && state.col === j + 1 ? ' active-cell' : ''}`;
    (c.firstChild as HTMLElement).textContent = ok ? fmtV(v) : scoredMask[i] === 2 ? '✕' : '…';
    (c.lastChild as HTMLElement).textContent = ok && j > 0 ? `Δ ${fmtV(d)}` : '';
    const err = Number.isFinite(t) && ok ? `, error ${fmtV(v - t)}` : '';
    c.setAttribute(
      'aria-label',
      ok
        ? `${exitLabel(j)}: value ${fmtV(v)}${j > 0 ? `, ${fmtV(d)} from exit ${j}` : ''}${err}${j === takenExit ? ', exit taken' : ''}`
        : `${exitLabel(j)}: not scored yet`,
    );
  }
}

let fillVersion = -1;
/** Longest time spent in one of our own renders (rows, or everything after new scores), ms. */
let worstRender = 0;
function timed(f: () => void): void {
  const t = performance.now();
  f();
  worstRender = Math.max(worstRender, performance.now() - t);
}

/** Puts the rows on screen into the DOM (recycling), and asks the host for what they lack. */
function renderRows(force = false): void {
  if (!init) return;
  const top = scroller.scrollTop;
  const hgt = scroller.clientHeight || 400;
  const first = Math.max(0, Math.floor(top / ROW_H) - OVERSCAN);
  const last = Math.min(n - 1, Math.ceil((top + hgt) / ROW_H) + OVERSCAN);
  const count = Math.max(0, last - first + 1);
  const refill = force || fillVersion !== dataVersion;
  fillVersion = dataVersion;
  while (pool.length < count) {
    pool.push(makeRow());
    shown.push(-1);
    filled.push(-1);
  }
  // Keep rows that still show an image on screen where they are; reuse the others.
  const want = new Set<number>();
  for (let i = first; i <= last; i++) want.add(i);
  const free: number[] = [];
  const have = new Set<number>();
  for (let r = 0; r < pool.length; r++) {
    if (r >= count || !want.has(shown[r]) || have.has(shown[r])) free.push(r);
    else have.add(shown[r]);
  }
  for (let i = first; i <= last; i++) {
    if (have.has(i)) continue;
    const r = free.shift()!;
    shown[r] = i;
    filled[r] = -1;
  }
  for (let r = 0; r < pool.length; r++) {
    const row = pool[r];
    if (r >= count) {
      row.hidden = true;
      shown[r] = -1;
      continue;
    }
    row.hidden = false;
    if (refill || filled[r] !== shown[r]) {
      fillRow(row, shown[r]);
      filled[r] = shown[r];
    }
  }
  rendered = { first, last };
  const vf = Math.max(0, Math.floor(top / ROW_H));
  const vl = Math.min(n - 1, Math.ceil((top + hgt) / ROW_H));
  if (vf !== sentVisible.first || vl !== sentVisible.last) queueVisible(vf, vl);
  updateActiveDescendant();
  if (firstPaint === undefined && count > 0) {
    firstPaint = -1;
    requestAnimationFrame(() => {
      firstPaint = performance.now();
      vscode.postMessage({ type: 'painted', ms: firstPaint });
    });
    // A hidden document draws no frames: the paint time then waits until it is shown.
  }
}

let visibleTimer: ReturnType<typeof setTimeout> | undefined;
/** Tells the host which rows are on screen (debounced while scrolling: it fetches for the final position). */
function queueVisible(first: number, last: number): void {
  sentVisible = { first, last };
  clearTimeout(visibleTimer);
  visibleTimer = setTimeout(() => vscode.postMessage({ type: 'visible', first, last }), sentVisible.first < 0 ? 0 : 50);
}

let scrollFrame = 0;
scroller.addEventListener('scroll', () => {
  lastScroll = performance.now();
  if (scrollFrame) return;
  scrollFrame = requestAnimationFrame(() => {
    scrollFrame = 0;
    timed(() => renderRows());
    state.scrollTop = scroller.scrollTop;
    scheduleState();
  });
});
new ResizeObserver(() => renderRows()).observe(scroller);

// ---- Keyboard: arrows move the active cell, Enter selects ----

function setActive(i: number, col: number): void {
  if (!init || !n) return;
  state.active = Math.max(0, Math.min(n - 1, i));
  state.col = Math.max(0, Math.min(K, col));
  ensureVisible(state.active);
  renderRows(true);
  scheduleState();
}

function ensureVisible(i: number): void {
  const top = i * ROW_H;
  const hgt = scroller.clientHeight || 400;
  if (top < scroller.scrollTop) scroller.scrollTop = top;
  else if (top + ROW_H > scroller.scrollTop + hgt) scroller.scrollTop = top + ROW_H - hgt;
}

function updateActiveDescendant(): void {
  if (state.active === undefined) return grid.removeAttribute('aria-activedescendant');
  const id = `c-${state.active}-${state.col ?? 0}`;
  if (document.getElementById(id)) grid.setAttribute('aria-activedescendant', id);
}

function onGridKey(e: KeyboardEvent): void {
  if (!init || !n) return;
  const a = state.active ?? -1;
  const col = state.col ?? 0;
  const page = Math.max(1, Math.floor((scroller.clientHeight || 400) / ROW_H) - 1);
  const moves: Record<string, () => void> = {
    ArrowDown: () => setActive(a + 1, col),
    ArrowUp: () => setActive(Math.max(0, a - 1), col),
    ArrowRight: () => setActive(Math.max(0, a), col + 1),
    ArrowLeft: () => setActive(Math.max(0, a), col - 1),
    PageDown: () => setActive(a + page, col),
    PageUp: () => setActive(a - page, col),
    Home: () => setActive(0, col),
    End: () => setActive(n - 1, col),
    Enter: () => select(Math.max(0, a)),
    ' ': () => select(Math.max(0, a)),
  };
  const f = moves[e.key];
  if (!f) return;
  e.preventDefault();
  f();
}
grid.addEventListener('keydown', onGridKey);
grid.addEventListener('focus', () => {
  if (state.active === undefined && n) setActive(Math.floor(scroller.scrollTop / ROW_H), state.col ?? 0);
});

// ---- Detail: the selected image, per-layer bars ----

function select(i: number, ask = true): void {
  if (!init || i < 0 || i >= n) return;
  state.selected = i;
  if (state.active === undefined) state.active = i;
  if (ask) {
    detail = { index: i, uri: null };
    vscode.postMessage({ type: 'detail', index: i });
  } else if (!detail || detail.index !== i) {
    detail = { index: i, uri: null };
    vscode.postMessage({ type: 'detail', index: i });
  }
  renderRows(true);
  renderDetail();
  scheduleState();
}

function renderDetail(): void {
  const box = $('detail');
  const i = state.selected;
  if (!init || i === undefined) {
    box.dataset.index = '';
    $('detail-name').textContent = 'Select an image (click, or arrows and Enter in the grid)';
    $('detail-label').textContent = '';
    $<HTMLImageElement>('detail-img').removeAttribute('src');
    $('detail-bars').replaceChildren();
    return;
  }
  box.dataset.index = String(i);
  $('detail-name').textContent = init.names[i];
  $('detail-name').title = init.files[i];
  const y = init.labels[i];
  const taken = dyn.exitOf[i];
  if (reg)
    $('detail-label').textContent =
      `${Number.isFinite(target[i]) ? `target ${fmtV(target[i])}` : 'no target'}${taken >= 0 ? ` · takes exit ${used[taken] + 1} (layer ${init.layers[used[taken]]}): ${fmtV(val[used[taken]][i])}` : ''}`;
  else
    $('detail-label').textContent =
      `${y >= 0 ? `label ${className(y)}` : 'no label'}${taken >= 0 ? ` · takes exit ${used[taken] + 1} (layer ${init.layers[used[taken]]}): ${className(pred[used[taken]][i])}` : ''}`;
  const img = $<HTMLImageElement>('detail-img');
  const uri = detail?.index === i ? detail.uri : null;
  if (uri) img.src = uri;
  else if (thumbs[i]) img.src = thumbs[i]!;
  else img.removeAttribute('src');
  img.alt = init.names[i];
  const bars = $('detail-bars');
  if (reg) return renderValueBars(i, taken);
  const top = tops.get(i);
  bars.replaceChildren(
    ...Array.from({ length: K }, (_, j) => {
      const li = h('li', `bar-row${taken >= 0 && used[taken] === j ? ' taken' : ''}`);
      li.dataset.exit = String(j + 1);
      const head = h('div', 'bar-head');
      head.append(
        h('span', 'bar-exit', exitLabel(j)),
        h(
          'span',
          'bar-conf',
          Number.isFinite(conf[j][i]) ? `${className(pred[j][i])} ${pct(conf[j][i])}` : 'not scored',
        ),
      );
      li.appendChild(head);
      li.appendChild(bar(conf[j][i], `h${Math.max(0, heat(conf[j][i]))}`));
      const list = h('ol', 'top3');
      if (top) {
        for (let t = 0; t < top.k; t++) {
          const c = top.cls[j * top.k + t];
          const p = top.prob[j * top.k + t];
          if (c < 0) continue;
          const item = h('li', c === y ? 'right' : '');
          item.append(h('span', 'top-cls', className(c)), bar(p, 'mini'), h('span', 'top-p', pct(p)));
          list.appendChild(item);
        }
      } else list.appendChild(h('li', 'pending', detail?.error ? `top-3: ${detail.error}` : 'top-3 classes: scoring…'));
      li.appendChild(list);
      return li;
    }),
  );
}

/**
 * Regression detail: per exit, the value on one axis shared by every exit and the target (marked),
 * the agreement with the previous exit, and the error when the target is known.
 */
function renderValueBars(i: number, taken: number): void {
  const t = target[i];
  const ok = scoredMask[i] === 1;
  const vs = ok ? val.map((v) => v[i]).filter((v) => Number.isFinite(v)) : [];
  if (Number.isFinite(t)) vs.push(t);
  let lo = Math.min(0, ...vs);
  let hi = Math.max(...vs, lo + 1e-9);
  if (hi - lo < 1e-6) ((lo -= 0.5), (hi += 0.5));
  $('detail-bars').replaceChildren(
    ...Array.from({ length: K }, (_, j) => {
      const li = h('li', `bar-row${taken >= 0 && used[taken] === j ? ' taken' : ''}`);
      li.dataset.exit = String(j + 1);
      const head = h('div', 'bar-head');
      const v = val[j][i];
      const d = -conf[j][i];
      head.append(
        h('span', 'bar-exit', exitLabel(j)),
        h(
          'span',
          'bar-conf',
          ok ? `${fmtV(v)}${j > 0 ? ` · Δ ${fmtV(d)}` : ''}` : detail?.error ? detail.error : 'scoring…',
        ),
      );
      li.appendChild(head);
      const s = svgEl('svg', {
        class: 'bar',
        viewBox: '0 0 100 8',
        preserveAspectRatio: 'none',
        'aria-hidden': 'true',
      });
      svgEl('rect', { x: 0, y: 0, width: 100, height: 8, class: 'bar-bg' }, s);
      const x = (u: number) => (100 * (u - lo)) / (hi - lo);
      const b = ok && j > 0 ? heat(closeness(d)) : -1;
      if (ok && Number.isFinite(v))
        svgEl(
          'rect',
          { x: 0, y: 0, width: x(v).toFixed(2), height: 8, class: `bar-fg ${b >= 0 ? `h${b}` : 'noconf'}` },
          s,
        );
      if (Number.isFinite(t))
        svgEl('rect', { x: Math.max(0, x(t) - 0.6).toFixed(2), y: 0, width: 1.2, height: 8, class: 'target-mark' }, s);
      li.appendChild(s);
      const note = h('div', 'value-note');
      note.textContent = ok && Number.isFinite(t) ? `error ${v - t >= 0 ? '+' : ''}${fmtV(v - t)}` : '';
      li.appendChild(note);
      return li;
    }),
  );
}

/** A horizontal bar (SVG: widths as attributes, no inline style) for a value in [0, 1]. */
function bar(v: number, cls: string): SVGSVGElement {
  const s = svgEl('svg', { class: 'bar', viewBox: '0 0 100 8', preserveAspectRatio: 'none', 'aria-hidden': 'true' });
  svgEl('rect', { x: 0, y: 0, width: 100, height: 8, class: 'bar-bg' }, s);
  svgEl(
    'rect',
    {
      x: 0,
      y: 0,
      width: Number.isFinite(v) ? (100 * Math.max(0, Math.min(1, v))).toFixed(2) : 0,
      height: 8,
      class: `bar-fg ${cls}`,
    },
    s,
  );
  return s;
}

// ---- Summary per class ----

function renderSummary(): void {
  if (!init) return;
  const head = $('summary-head');
  head.replaceChildren(
    ...[
      reg ? 'Target' : 'Class',
      'Images',
      'Where they exit',
      reg ? 'MAE (thresholds)' : 'Accuracy (thresholds)',
      ...Array.from({ length: K }, (_, j) => `Exit ${j + 1}`),
    ].map((t, c) => {
      const th = h('th', c === 0 || c === 2 ? 'left' : undefined, t);
      th.scope = 'col';
      if (c >= 4) th.title = `${reg ? 'MAE' : 'Accuracy'} of ${exitLabel(c - 4)} when every image runs to it`;
      return th;
    }),
  );
  const rows: HTMLTableRowElement[] = [];
  const total = dyn.res;
  const labelled = classStats.reduce((a, c) => a + c.n, 0);
  const allRow = {
    name: 'All images',
    n: total ? total.exitOf.length : 0,
    exitCounts: total?.exitCounts ?? [],
    accuracy: total && Number.isFinite(total.accuracy) ? total.accuracy : null,
  };
  const mk = (
    s: { name: string; n: number; exitCounts: number[]; accuracy: number | null },
    accs: (number | null)[],
    cls: string,
  ) => {
    const tr = h('tr', cls);
    tr.dataset.class = s.name;
    const th = h('th', 'cls', s.name);
    th.scope = 'row';
    tr.appendChild(th);
    tr.appendChild(h('td', 'num', int(s.n)));
    const dist = h('td', 'dist');
    const svg = svgEl('svg', {
      class: 'dist-mini',
      viewBox: '0 0 100 10',
      preserveAspectRatio: 'none',
      role: 'img',
      'aria-label': s.exitCounts.map((c, u) => `exit ${used[u] + 1}: ${c}`).join(', '),
    });
    const tot = s.exitCounts.reduce((a, b) => a + b, 0);
    let x = 0;
    s.exitCounts.forEach((c, u) => {
      if (!tot || !c) return;
      const w = (100 * c) / tot;
      svgEl('rect', { x: x.toFixed(2), y: 0, width: w.toFixed(2), height: 10, class: `seg ${series(u)}` }, svg);
      x += w;
    });
    dist.append(svg, h('span', 'counts', s.exitCounts.join(' / ')));
    tr.appendChild(dist);
    tr.appendChild(
      h(
        'td',
        `acc dyn ${s.accuracy === null ? '' : `h${metricHeat(s.accuracy)}`}`,
        reg ? fmtV(-(s.accuracy ?? NaN)) : pct(s.accuracy),
      ),
    );
    accs.forEach((a) =>
      tr.appendChild(h('td', `acc ${a === null ? '' : `h${metricHeat(a)}`}`, reg ? fmtV(-(a ?? NaN)) : pct(a))),
    );
    return tr;
  };
  rows.push(mk(allRow, exitAcc, 'all'));
  classStats.forEach((s, c) => rows.push(mk(s, classExitAcc[c] ?? [], '')));
  $('summary-rows').replaceChildren(...rows);
  $('summary-note').textContent = reg
    ? labelled
      ? `${int(labelled)} ${init.source.kind === 'test' ? 'test ' : ''}images with a target${init.targetsFrom ? ` (${init.targetsFrom})` : ''}. MAE in target units; "Where they exit" and the thresholds' MAE follow the slider; the exit columns are each exit's MAE when every image runs to it. Δ: how far an exit's value is from the previous exit's, what the thresholds apply to.`
      : "No targets for these images (no targets file at the folder's root): values and exits only, no MAE."
    : labelled
      ? `${int(labelled)} labelled ${init.source.kind === 'test' ? 'test ' : ''}images. "Where they exit" and the thresholds' accuracy follow the slider; the exit columns are each exit's accuracy when every image runs to it.`
      : "No image of this source sits in a folder named like one of the run's classes: no accuracy (predictions and exits only).";
}

function renderStatus(): void {
  const s = $('status');
  const parts: string[] = [];
  if (init) {
    if (init.source.kind === 'test') parts.push(`${int(n)} test images, stored predictions (no inference)`);
    else parts.push(`${int(scored)} / ${int(n)} images scored by the engine`);
    if (init.skipped) parts.push(`${init.skipped} files skipped`);
  }
  if (statusText) parts.push(statusText);
  s.textContent = parts.join(' · ');
  s.classList.toggle('error', statusError);
}

function renderAll(): void {
  renderBudget();
  renderSummary();
  renderDetail();
  renderStatus();
  renderRows(true);
  scheduleState();
}

let dataTimer: ReturnType<typeof setTimeout> | undefined;
/** When the grid last scrolled (performance.now()). */
let lastScroll = -Infinity;
/**
 * Scores arriving in bursts: one recomputation and render per 100 ms (setTimeout: rAF pauses in
 * hidden documents), and none while the user scrolls: the rows on screen still show new scores
 * as they scroll in (renderRows refills them), the marks, summary and slider readouts follow
 * when the scrolling pauses.
 */
function scheduleData(): void {
  dataTimer ??= setTimeout(() => {
    dataTimer = undefined;
    if (performance.now() - lastScroll < 250) return scheduleData();
    timed(() => {
      buildStatic();
      recompute();
      renderAll();
    });
  }, 100);
}

// ---- The slider and buttons ----

slider.addEventListener('input', () => {
  point = Number(slider.value);
  state.point = point;
  recompute();
  renderAll();
});
saveBtn.addEventListener('click', () => {
  if (!init) return;
  saveBtn.disabled = true;
  $('saved-badge').textContent = 'saving…';
  vscode.postMessage({ type: 'save', point });
});
runSelect.addEventListener('change', () => {
  if (runSelect.value && runSelect.value !== init?.runDir)
    vscode.postMessage({ type: 'pickRun', dir: runSelect.value });
});
for (const [id, kind] of [
  ['src-test', 'test'],
  ['src-folder', 'folder'],
  ['src-files', 'files'],
] as const) {
  $(id).addEventListener('click', () => vscode.postMessage({ type: 'pickSource', kind }));
}

// ---- State and snapshots ----

let stateTimer: ReturnType<typeof setTimeout> | undefined;
function scheduleState(): void {
  stateTimer ??= setTimeout(() => {
    stateTimer = undefined;
    postState();
  }, 80);
}

let firstPaint: number | undefined;
const perf: Perf = {};

function snapshot(): RenderedSnapshot {
  const res = dyn.res;
  const P = curve.p.length;
  let thumbsShown = 0;
  let marked = 0;
  let domRows = 0;
  for (let r = 0; r < pool.length; r++) {
    if (pool[r].hidden) continue;
    domRows++;
    const img = pool[r].children[1].firstChild as HTMLImageElement;
    if (img.getAttribute('src') && img.complete && img.naturalWidth > 0) thumbsShown++;
    marked += pool[r].querySelectorAll('.cell.exit.taken').length;
  }
  const i = state.selected;
  const top = i !== undefined ? tops.get(i) : undefined;
  return {
    n,
    scored,
    applied: res ? res.exitOf.length : 0,
    domRows,
    firstRow: rendered.first,
    lastRow: rendered.last,
    thumbsShown,
    markedCells: marked,
    active: state.active ?? -1,
    col: state.col ?? 0,
    ...(reg ? { task: 'regression' as const } : {}),
    exitAccuracy: exitAcc.map(metricOut),
    exitAccuracyText: exitAcc.map((a) => (reg ? fmtV(-(a ?? NaN)) : pct(a))),
    slider: {
      index: point,
      count: P,
      p: P && Number.isFinite(curve.p[point]) ? curve.p[point] : null,
      thresholds: P ? thresholdsOf(point).map(jsonT) : [],
      accuracy: metricOut(res?.accuracy),
      gflops: res && Number.isFinite(res.gflops) ? res.gflops : null,
      exitCounts: res?.exitCounts ?? [],
      accuracyText: $('acc').textContent ?? '',
      gflopsText: $('gflops').textContent ?? '',
      saved: point === chosen,
    },
    classes: classStats.map((c) => ({ ...c, accuracy: metricOut(c.accuracy) })),
    selected:
      i === undefined || !init
        ? null
        : {
            index: i,
            file: init.files[i],
            exit: dyn.exitOf[i] >= 0 ? used[dyn.exitOf[i]] + 1 : 0,
            ...(reg ? { target: Number.isFinite(target[i]) ? target[i] : null } : {}),
            bars: Array.from({ length: K }, (_, j) => ({
              exit: j + 1,
              conf: conf[j][i],
              cls: reg ? fmtV(val[j][i]) : className(pred[j][i]),
              ...(reg ? { value: val[j][i] } : {}),
              top: top
                ? Array.from({ length: top.k }, (_, t) => ({
                    cls: className(top.cls[j * top.k + t]),
                    prob: top.prob[j * top.k + t],
                  }))
                : [],
            })),
          },
    status: $('status').textContent ?? '',
  };
}

function postState(): void {
  state.savedAt = Date.now();
  vscode.setState(state);
  vscode.postMessage({ type: 'state', state, rendered: snapshot(), perf });
}

// ---- Test-only actions (met.inspect.test): the same paths as a user's input ----

/** Test actions that came before the init message, run right after it. */
const pendingTests: TestAction[] = [];

function runTest(a: TestAction): void {
  switch (a.kind) {
    case 'slider':
      slider.value = String(a.index);
      slider.dispatchEvent(new Event('input'));
      break;
    case 'key':
      grid.focus();
      grid.dispatchEvent(new KeyboardEvent('keydown', { key: a.key, bubbles: true, cancelable: true }));
      break;
    case 'select':
      setActive(a.row, state.col ?? 0);
      select(a.row);
      break;
    case 'save':
      saveBtn.click();
      break;
    case 'scroll':
      void scrollTest(a.ms, a.rowsPerFrame);
      break;
  }
}

/**
 * Scrolls the grid by rowsPerFrame rows each animation frame (back to the top at the end) for
 * `ms`, and measures what a user would feel: the longest gap between animation frames, and the
 * longest lateness of a 10 ms interval timer (event-loop stalls: long tasks block both).
 */
async function scrollTest(ms: number, rowsPerFrame: number): Promise<void> {
  const t0 = performance.now();
  let last = t0;
  let frames = 0;
  let worstFrame = 0;
  let worstLag = 0;
  let moved = 0;
  let expected = t0 + 10;
  worstRender = 0;
  // Long tasks of this document (ours: rendering, message handling), as Chromium reports them.
  const long: number[] = [];
  let obs: PerformanceObserver | undefined;
  try {
    obs = new PerformanceObserver((l) => l.getEntries().forEach((e) => long.push(e.duration)));
    obs.observe({ type: 'longtask' });
  } catch {
    /* not supported */
  }
  const iv = setInterval(() => {
    const now = performance.now();
    worstLag = Math.max(worstLag, now - expected);
    expected = now + 10;
  }, 10);
  await new Promise<void>((resolve) => {
    // A hidden document draws no frames: give up rather than hang.
    const guard = setTimeout(resolve, ms + 5000);
    const frame = (now: number) => {
      frames++;
      worstFrame = Math.max(worstFrame, now - last);
      last = now;
      const max = scroller.scrollHeight - scroller.clientHeight;
      const next = scroller.scrollTop + rowsPerFrame * ROW_H;
      scroller.scrollTop = next > max ? 0 : next;
      moved += rowsPerFrame;
      if (now - t0 < ms) requestAnimationFrame(frame);
      else {
        clearTimeout(guard);
        resolve();
      }
    };
    requestAnimationFrame(frame);
  });
  clearInterval(iv);
  obs?.disconnect();
  const total = performance.now() - t0;
  perf.scroll = {
    ms: total,
    frames,
    worstFrameMs: worstFrame,
    worstLagMs: worstLag,
    meanFrameMs: frames ? total / frames : 0,
    rowsMoved: moved,
    finalTop: scroller.scrollTop,
    worstRenderMs: worstRender,
    longTasks: long.length,
    worstLongTaskMs: long.length ? Math.max(...long) : 0,
  };
  postState();
}

// ---- Messages ----

window.addEventListener('message', (ev: MessageEvent<HostMessage>) => {
  const m = ev.data;
  switch (m.type) {
    case 'init':
      onInit(m);
      pendingTests.splice(0).forEach(runTest);
      break;
    case 'scores':
      onScores(m);
      break;
    case 'thumbs':
      m.index.forEach((i, r) => {
        if (i >= 0 && i < n) thumbs[i] = m.uris[r];
      });
      // Only the rows on screen change: refill them, nothing else.
      for (let r = 0; r < pool.length; r++) if (!pool[r].hidden && shown[r] >= 0) fillRow(pool[r], shown[r]);
      if (state.selected !== undefined && m.index.includes(state.selected)) renderDetail();
      scheduleState();
      break;
    case 'detail':
      if (m.index !== state.selected) break;
      detail = { index: m.index, uri: m.uri, error: m.error };
      if (reg && m.value && scoredMask[m.index] !== 1 && !m.error) {
        // A regression image scored for the detail before its chunk: its values and agreement.
        for (let j = 0; j < K; j++) {
          val[j][m.index] = m.value[j];
          conf[j][m.index] = m.conf[j];
        }
        scoredMask[m.index] = 1;
        scored++;
        dataVersion++;
        scheduleData();
      }
      if (m.k > 0 && m.topProb.length) {
        tops.set(m.index, { k: m.k, prob: m.topProb, cls: m.topClass });
        // A test-split image is scored again for its top-k: keep the stored conf/pred (the grid's).
        if (scoredMask[m.index] !== 1) {
          for (let j = 0; j < K; j++) {
            conf[j][m.index] = m.conf[j];
            pred[j][m.index] = m.pred[j];
          }
          scoredMask[m.index] = 1;
          scored++;
          dataVersion++;
          scheduleData();
        }
      }
      renderDetail();
      scheduleState();
      break;
    case 'chosen': {
      curve = m.curve;
      chosen = m.chosen;
      chosenSource = m.chosenSource;
      // Saved from this slider: the point stays where it is (indices are rebuilt on the host).
      point = m.chosen;
      state.point = point;
      slider.max = String(Math.max(0, curve.p.length - 1));
      if (m.message) {
        statusText = m.message;
        statusError = false;
      }
      recompute();
      renderAll();
      break;
    }
    case 'status':
      statusText = m.text;
      statusError = !!m.error;
      renderStatus();
      scheduleState();
      break;
    case 'test':
      // A test may act as soon as the panel opens: before the images arrive there is nothing to select.
      if (init) runTest(m.action);
      else pendingTests.push(m.action);
      break;
  }
});

vscode.postMessage({ type: 'ready' });
