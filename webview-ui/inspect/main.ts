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
import { $ } from '../common/vscode';
import { fmtV, gf, heat, int, jsonT, pct } from './format';
import { className, closeness, exitLabel, h, metricOut, model, root, state, view, vscode } from './context';
import { clampCell, gridMove } from './model';
import { renderBudget } from './views/budget';
import { renderDetail } from './views/detail';
import { explainSnapshot, initExplain, onAttention, resetExplain } from './views/explain';
import {
  embeddingsAfterInit,
  embeddingsSelected,
  embeddingsSnapshot,
  initEmbeddings,
  onEmbeddings,
} from './views/embeddings';
import { renderSummary } from './views/summary';
import { installTestHooks, type TestHooks } from './test-hooks';
import type { HostMessage, InitMessage, Perf, RenderedSnapshot, ScoresMessage } from './protocol';

/** Row height in CSS pixels (inspect.css .row has the same). */
const ROW_H = 36;
/** Rows rendered above and below the screen, so a fast wheel never shows a blank strip. */
const OVERSCAN = 8;

function onInit(m: InitMessage): void {
  model.load(m, state.point);
  resetExplain();
  view.thumbs = new Array(model.n).fill(undefined);
  if (state.active !== undefined && state.active >= model.n) state.active = undefined;
  if (state.selected !== undefined && state.selected >= model.n) state.selected = undefined;
  renderHeader();
  layoutGrid();
  renderAll();
  // Restore the scroll position once the spacer has its height.
  if (state.scrollTop) scroller.scrollTop = state.scrollTop;
  renderRows(true);
  if (state.selected !== undefined) select(state.selected, false);
  embeddingsAfterInit();
}

function onScores(m: ScoresMessage): void {
  if (!model.init) return;
  model.addScores(m);
  scheduleData();
}

// ---- DOM: header, slider, curve ----

const slider = $<HTMLInputElement>('budget-slider');
const saveBtn = $<HTMLButtonElement>('save');
const runSelect = $<HTMLSelectElement>('run-select');

function renderHeader(): void {
  if (!model.init) return;
  $('run-name').textContent = model.init.runName;
  root.dataset.runDir = model.init.runDir;
  runSelect.replaceChildren(
    ...model.init.runs.map((r) => {
      const o = h('option', undefined, `${r.name}${r.detail ? ` (${r.detail})` : ''}`);
      o.value = r.dir;
      o.selected = r.dir === model.init!.runDir;
      return o;
    }),
  );
  $('source').textContent = model.init.source.label;
  // Regression runs: values and MAE instead of classes and accuracy.
  $('acc-label').textContent = model.reg ? 'MAE' : 'Accuracy';
  $('budget-title').textContent = model.reg
    ? "Budget: thresholds along the run's MAE / GFLOPs curve"
    : "Budget: thresholds along the run's accuracy / GFLOPs curve";
  $('curve').setAttribute(
    'aria-label',
    model.reg
      ? 'MAE (lower is higher up) versus mean GFLOPs of the budget curve'
      : 'Accuracy versus mean GFLOPs of the budget curve',
  );
  $('summary-title').textContent = model.reg ? (model.groupNames.length ? 'Per target value' : 'Summary') : 'Per class';
  grid.setAttribute(
    'aria-label',
    model.reg
      ? 'Images by exits: predicted value and agreement with the previous exit; arrows move, Enter selects'
      : 'Images by exits: confidence and predicted class; arrows move, Enter selects',
  );
  $('source').title = model.init.source.paths.join('\n') || 'the test split stored in predictions.json (no inference)';
  slider.max = String(Math.max(0, model.curve.p.length - 1));
  slider.disabled = model.curve.p.length < 2;
  // The grid's columns: #, image, file, then one per exit.
  const head = $('grid-head');
  head.replaceChildren(
    cellEl('cell num', '#'),
    cellEl('cell thumb', ''),
    cellEl('cell name', model.reg ? 'Image · target' : 'Image · label'),
    ...Array.from({ length: model.K }, (_, j) => {
      const c = cellEl(`cell exit-head ${model.used.includes(j) ? '' : 'unused'}`, `Exit ${j + 1}`);
      c.title = `${exitLabel(j)}: ${gf(model.init!.gflops[j])} GFLOPs to reach${model.used.includes(j) ? '' : ' (not used by budgeted inference)'}`;
      c.appendChild(h('span', 'sub', `L${model.init!.layers[j]}`));
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
  grid.style.setProperty('--exits', String(model.K));
  spacer.style.height = `${model.n * ROW_H}px`;
  grid.setAttribute('aria-rowcount', String(model.n + 1));
  grid.setAttribute('aria-colcount', String(model.K + 3));
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
  for (let j = 0; j < model.K; j++) {
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
  const y = model.init!.labels[i];
  const taken = model.dyn.exitOf[i];
  const takenExit = taken >= 0 ? model.used[taken] : -1;
  row.classList.toggle('selected', state.selected === i);
  row.classList.toggle('active', state.active === i);
  row.setAttribute('aria-selected', String(state.selected === i));
  (cells[0] as HTMLElement).textContent = String(i + 1);
  const img = cells[1].firstChild as HTMLImageElement;
  const t = view.thumbs[i];
  if (t) {
    if (img.getAttribute('src') !== t) img.src = t;
    img.classList.remove('pending');
  } else {
    img.removeAttribute('src');
    img.classList.add('pending');
  }
  const name = cells[2] as HTMLElement;
  (name.firstChild as HTMLElement).textContent = model.init!.names[i];
  (name.lastChild as HTMLElement).textContent = model.reg
    ? Number.isFinite(model.target[i])
      ? `target ${fmtV(model.target[i])}`
      : model.scoredMask[i] === 2
        ? 'unreadable'
        : ''
    : y >= 0
      ? className(y)
      : model.scoredMask[i] === 2
        ? 'unreadable'
        : '';
  name.title = model.init!.files[i];
  name.id = `c-${i}-0`;
  if (model.reg) return fillValueCells(cells, i, takenExit);
  for (let j = 0; j < model.K; j++) {
    const c = cells[3 + j] as HTMLElement;
    c.id = `c-${i}-${j + 1}`;
    const v = model.conf[j][i];
    const p = model.pred[j][i];
    const b = heat(v);
    const wrong = y >= 0 && p >= 0 && p !== y;
    c.className = `cell exit ${b >= 0 ? `h${b}` : 'unscored'}${j === takenExit ? ' taken' : ''}${wrong ? ' wrong' : ''}${state.active === i && state.col === j + 1 ? ' active-cell' : ''}`;
    (c.firstChild as HTMLElement).textContent = b >= 0 ? className(p) : model.scoredMask[i] === 2 ? '✕' : '…';
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
  const ok = model.scoredMask[i] === 1;
  const t = model.target[i];
  for (let j = 0; j < model.K; j++) {
    const c = cells[3 + j] as HTMLElement;
    c.id = `c-${i}-${j + 1}`;
    const v = model.val[j][i];
    const d = -model.conf[j][i];
    const b = ok && j > 0 ? heat(closeness(d)) : -1;
    c.className = `cell exit ${!ok ? 'unscored' : b >= 0 ? `h${b}` : 'noconf'}${j === takenExit ? ' taken' : ''}${state.active === i && state.col === j + 1 ? ' active-cell' : ''}`;
    (c.firstChild as HTMLElement).textContent = ok ? fmtV(v) : model.scoredMask[i] === 2 ? '✕' : '…';
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
  if (!model.init) return;
  const top = scroller.scrollTop;
  const hgt = scroller.clientHeight || 400;
  const first = Math.max(0, Math.floor(top / ROW_H) - OVERSCAN);
  const last = Math.min(model.n - 1, Math.ceil((top + hgt) / ROW_H) + OVERSCAN);
  const count = Math.max(0, last - first + 1);
  const refill = force || fillVersion !== model.dataVersion;
  fillVersion = model.dataVersion;
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
  const vl = Math.min(model.n - 1, Math.ceil((top + hgt) / ROW_H));
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
  if (!model.init || !model.n) return;
  const c = clampCell(i, col, model.n, model.K);
  state.active = c.row;
  state.col = c.col;
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
  if (!model.init || !model.n) return;
  const a = state.active ?? -1;
  const col = state.col ?? 0;
  const page = Math.max(1, Math.floor((scroller.clientHeight || 400) / ROW_H) - 1);
  const move = gridMove(e.key, a, col, page, model.n);
  if (!move) return;
  e.preventDefault();
  if (move.kind === 'select') select(move.row);
  else setActive(move.row, move.col);
}
grid.addEventListener('keydown', onGridKey);
grid.addEventListener('focus', () => {
  if (state.active === undefined && model.n) setActive(Math.floor(scroller.scrollTop / ROW_H), state.col ?? 0);
});

// ---- Detail: the selected image, per-layer bars ----

function select(i: number, ask = true): void {
  if (!model.init || i < 0 || i >= model.n) return;
  state.selected = i;
  if (state.active === undefined) state.active = i;
  if (ask) {
    view.detail = { index: i, uri: null };
    vscode.postMessage({ type: 'detail', index: i });
  } else if (!view.detail || view.detail.index !== i) {
    view.detail = { index: i, uri: null };
    vscode.postMessage({ type: 'detail', index: i });
  }
  renderRows(true);
  renderDetail();
  embeddingsSelected();
  scheduleState();
}

// ---- Summary per class ----

function renderStatus(): void {
  const s = $('status');
  const parts: string[] = [];
  if (model.init) {
    if (model.init.source.kind === 'test') parts.push(`${int(model.n)} test images, stored predictions (no inference)`);
    else parts.push(`${int(model.scored)} / ${int(model.n)} images scored by the engine`);
    if (model.init.skipped) parts.push(`${model.init.skipped} files skipped`);
  }
  if (view.statusText) parts.push(view.statusText);
  s.textContent = parts.join(' · ');
  s.classList.toggle('error', view.statusError);
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
      model.buildStatic();
      model.recompute();
      renderAll();
    });
  }, 100);
}

// ---- The slider and buttons ----

slider.addEventListener('input', () => {
  model.setPoint(Number(slider.value));
  state.point = model.point;
  renderAll();
});
saveBtn.addEventListener('click', () => {
  if (!model.init) return;
  saveBtn.disabled = true;
  $('saved-badge').textContent = 'saving…';
  vscode.postMessage({ type: 'save', point: model.point });
});
runSelect.addEventListener('change', () => {
  if (runSelect.value && runSelect.value !== model.init?.runDir)
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
  const res = model.dyn.res;
  const P = model.curve.p.length;
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
  const top = i !== undefined ? model.tops.get(i) : undefined;
  return {
    n: model.n,
    scored: model.scored,
    applied: res ? res.exitOf.length : 0,
    domRows,
    firstRow: rendered.first,
    lastRow: rendered.last,
    thumbsShown,
    markedCells: marked,
    active: state.active ?? -1,
    col: state.col ?? 0,
    ...(model.reg ? { task: 'regression' as const } : {}),
    exitAccuracy: model.exitAcc.map(metricOut),
    exitAccuracyText: model.exitAcc.map((a) => (model.reg ? fmtV(-(a ?? NaN)) : pct(a))),
    slider: {
      index: model.point,
      count: P,
      p: P && Number.isFinite(model.curve.p[model.point]) ? model.curve.p[model.point] : null,
      thresholds: P ? model.thresholdsOf(model.point).map(jsonT) : [],
      accuracy: metricOut(res?.accuracy),
      gflops: res && Number.isFinite(res.gflops) ? res.gflops : null,
      exitCounts: res?.exitCounts ?? [],
      accuracyText: $('acc').textContent ?? '',
      gflopsText: $('gflops').textContent ?? '',
      saved: model.point === model.chosen,
    },
    classes: model.classStats.map((c) => ({ ...c, accuracy: metricOut(c.accuracy) })),
    selected:
      i === undefined || !model.init
        ? null
        : {
            index: i,
            file: model.init.files[i],
            exit: model.dyn.exitOf[i] >= 0 ? model.used[model.dyn.exitOf[i]] + 1 : 0,
            ...(model.reg ? { target: Number.isFinite(model.target[i]) ? model.target[i] : null } : {}),
            bars: Array.from({ length: model.K }, (_, j) => ({
              exit: j + 1,
              conf: model.conf[j][i],
              cls: model.reg ? fmtV(model.val[j][i]) : className(model.pred[j][i]),
              ...(model.reg ? { value: model.val[j][i] } : {}),
              top: top
                ? Array.from({ length: top.k }, (_, t) => ({
                    cls: className(top.cls[j * top.k + t]),
                    prob: top.prob[j * top.k + t],
                  }))
                : [],
            })),
          },
    status: $('status').textContent ?? '',
    explain: explainSnapshot(),
    embeddings: embeddingsSnapshot(),
  };
}

function postState(): void {
  state.savedAt = Date.now();
  vscode.setState(state);
  vscode.postMessage({ type: 'state', state, rendered: snapshot(), perf });
}

// ---- Test-only actions (met.inspect.test) ----

// Defined by esbuild.mjs: true only in the test build (dist/webview/inspect-test.js). In the
// production build the branch below is dead code and test-hooks.ts is left out of the bundle.
declare const MET_TEST_HOOKS: boolean;
let testHooks: TestHooks | undefined;
if (MET_TEST_HOOKS)
  testHooks = installTestHooks({
    slider,
    grid,
    saveBtn,
    scroller,
    rowHeight: ROW_H,
    state: () => state,
    setActive,
    select,
    resetWorstRender: () => (worstRender = 0),
    worstRender: () => worstRender,
    perf,
    postState,
  });

// ---- Explain: the selected image's attention maps (views/explain.ts) ----

initExplain(scheduleState);

// ---- Embeddings per exit: the run's sample at every exit (views/embeddings.ts) ----

initEmbeddings((i) => {
  setActive(i, state.col ?? 0);
  select(i);
}, scheduleState);

// ---- Messages ----

window.addEventListener('message', (ev: MessageEvent<HostMessage>) => {
  const m = ev.data;
  switch (m.type) {
    case 'init':
      onInit(m);
      if (MET_TEST_HOOKS) testHooks?.afterInit();
      break;
    case 'scores':
      onScores(m);
      break;
    case 'thumbs':
      m.index.forEach((i, r) => {
        if (i >= 0 && i < model.n) view.thumbs[i] = m.uris[r];
      });
      // Only the rows on screen change: refill them, nothing else.
      for (let r = 0; r < pool.length; r++) if (!pool[r].hidden && shown[r] >= 0) fillRow(pool[r], shown[r]);
      if (state.selected !== undefined && m.index.includes(state.selected)) renderDetail();
      scheduleState();
      break;
    case 'detail':
      if (m.index !== state.selected) break;
      view.detail = { index: m.index, uri: m.uri, error: m.error };
      // New scores for the grid (an image scored for the detail before its chunk): statistics follow.
      if (model.addDetail(m)) scheduleData();
      renderDetail();
      scheduleState();
      break;
    case 'chosen': {
      // Saved from this slider: the point stays where it is (indices are rebuilt on the host).
      model.setChosen(m);
      state.point = model.point;
      slider.max = String(Math.max(0, model.curve.p.length - 1));
      if (m.message) {
        view.statusText = m.message;
        view.statusError = false;
      }
      renderAll();
      break;
    }
    case 'attention':
      onAttention(m);
      break;
    case 'embeddings':
      onEmbeddings(m);
      break;
    case 'status':
      view.statusText = m.text;
      view.statusError = !!m.error;
      renderStatus();
      scheduleState();
      break;
    case 'test':
      // Only the test build acts on these (the production build has no hooks).
      if (MET_TEST_HOOKS) testHooks?.onTest(m.action, !!model.init);
      break;
  }
});

vscode.postMessage({ type: 'ready' });
