// The training dashboard's webview script (bundled by esbuild into dist/webview/dashboard.js,
// platform 'browser'). It draws its charts itself as inline SVG built through the DOM: crisp at
// any zoom, styled only by classes from dashboard.css (so theme variables apply and the CSP
// needs no inline styles), and the points are real elements a test can count.
//
// Flow: read the run folder from #met-dashboard[data-run-dir] and keep it in setState at once
// (a reload can then revive the panel even before the first render), post 'ready', receive
// 'init' (history from metrics.jsonl), then live 'event's; after each render, post 'state'.

import './dashboard.css';
import { $, initialState, vscodeApi } from '../common/vscode';
import { niceTicks, svgEl as el, xTicks, yTicks } from '../common/svg';
import type {
  DashboardState,
  EpochEvent,
  History,
  HostMessage,
  RenderedSnapshot,
  RunMeta,
  RunStatus,
  StepEvent,
  SummaryLite,
  WebviewMessage,
} from './protocol';

const vscode = vscodeApi<WebviewMessage, DashboardState>();
const root = $('met-dashboard');
const runDir = root.dataset.runDir ?? '';
let state = initialState(vscode, { runDir }, (saved) => saved.runDir === runDir);

/** A growable float column (`stride` values per row). */
class Column {
  data = new Float64Array(256);
  n = 0;
  constructor(readonly stride = 1) {}
  static from(src: ArrayLike<number>, stride = 1): Column {
    const c = new Column(stride);
    c.data = Float64Array.from(src.length ? src : [0]);
    c.n = src.length / stride;
    return c;
  }
  push(v: ArrayLike<number>): void {
    if ((this.n + 1) * this.stride > this.data.length) {
      const d = new Float64Array(Math.max(2 * this.data.length, (this.n + 1) * this.stride));
      d.set(this.data.subarray(0, this.n * this.stride));
      this.data = d;
    }
    for (let j = 0; j < this.stride; j++) this.data[this.n * this.stride + j] = v[j] ?? NaN;
    this.n++;
  }
  at(i: number, j = 0): number {
    return this.data[i * this.stride + j];
  }
}

let meta: RunMeta | null = null;
let K = 0;
let steps = new Column();
let lossK = new Column();
let accK = new Column();
let epochs: EpochEvent[] = [];
let last: StepEvent | null = null;
let totalSteps = 0;
let summary: SummaryLite | null = null;
/** Throughput averaged over recent steps (one step's own img/s is noisy). */
let imgPerSec = 0;

function reset(h: History): void {
  K = h.K;
  steps = Column.from(h.step);
  lossK = Column.from(h.lossPerExit, Math.max(K, 1));
  accK = Column.from(h.accPerExit, Math.max(K, 1));
  epochs = h.epochs.slice();
  last = h.last;
  totalSteps = last?.totalSteps ?? 0;
  imgPerSec = last?.imgPerSec ?? 0;
}

function onStep(e: StepEvent): void {
  if (steps.n && e.step <= steps.at(steps.n - 1)) return; // already in the history
  if (!K) {
    K = e.lossPerExit.length;
    lossK = new Column(K);
    accK = new Column(K);
  }
  steps.push([e.step]);
  lossK.push(e.lossPerExit);
  accK.push(e.maePerExit ?? e.accPerExit);
  last = e;
  totalSteps = e.totalSteps;
  imgPerSec = imgPerSec ? 0.9 * imgPerSec + 0.1 * e.imgPerSec : e.imgPerSec;
}

function onEpoch(e: EpochEvent): void {
  const i = epochs.findIndex((x) => x.epoch === e.epoch);
  if (i >= 0) epochs[i] = e;
  else epochs.push(e);
  epochs.sort((a, b) => a.epoch - b.epoch);
}

function setStatus(s: RunStatus, reason?: string): void {
  if (!meta) return;
  meta.status = s;
  meta.reason = reason;
}

window.addEventListener('message', (ev: MessageEvent<HostMessage>) => {
  const m = ev.data;
  switch (m.type) {
    case 'init':
      meta = m.run;
      summary = m.summary;
      reset(m.history);
      break;
    case 'event': {
      const e = m.event;
      if (e.type === 'step') onStep(e);
      else if (e.type === 'epoch') onEpoch(e);
      else if (e.type === 'start') {
        totalSteps = e.totalSteps;
        if (meta) {
          if (!meta.exits.length) meta.exits = e.exits.slice();
          meta.epochs = e.epochs;
        }
        setStatus('running');
      } else if (e.type === 'stopped') setStatus('stopped', e.reason);
      break;
    }
    case 'status':
      setStatus(m.status, m.reason);
      break;
    case 'summary':
      summary = m.summary;
      break;
  }
  schedule();
});

// ---- Rendering ----

let timer: ReturnType<typeof setTimeout> | undefined;
/** Coalesce bursts of events into one render (not requestAnimationFrame: it pauses in hidden documents). */
function schedule(): void {
  timer ??= setTimeout(() => {
    timer = undefined;
    render();
  }, 60);
}

/** Series classes: five theme chart colours (chart-marks.css), then dashed and dotted variants. */
const seriesClass = (j: number) => `series s${j % 5} d${Math.floor(j / 5) % 3}`;

interface Line {
  exit: number;
  xs: number[];
  ys: number[];
  markers: boolean;
}

/** Averages consecutive points into at most `max` buckets (NaN skipped). */
function bucket(
  xs: ArrayLike<number>,
  ys: (i: number) => number,
  n: number,
  max: number,
): { xs: number[]; ys: number[] } {
  const size = Math.max(1, Math.ceil(n / max));
  const ox: number[] = [];
  const oy: number[] = [];
  for (let s = 0; s < n; s += size) {
    let sx = 0;
    let sy = 0;
    let c = 0;
    for (let i = s; i < Math.min(n, s + size); i++) {
      const y = ys(i);
      if (!Number.isFinite(y)) continue;
      sx += xs[i];
      sy += y;
      c++;
    }
    if (c) {
      ox.push(sx / c);
      oy.push(sy / c);
    }
  }
  return { xs: ox, ys: oy };
}

function drawChart(
  svg: SVGSVGElement,
  lines: Line[],
  o: { yMin?: number; yMax?: number; yFmt: (v: number) => string; xLabel: string; xInteger?: boolean; empty: string },
): number[] {
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const W = Math.max(240, Math.floor(svg.clientWidth || svg.parentElement?.clientWidth || 480));
  const H = 220;
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  svg.setAttribute('height', String(H));
  const m = { l: 48, r: 12, t: 10, b: 30 };
  const pw = W - m.l - m.r;
  const ph = H - m.t - m.b;
  const all = lines.flatMap((l) => l.xs.map((x, i) => [x, l.ys[i]]));
  if (!all.length) {
    el('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle', class: 'empty' }, svg).textContent = o.empty;
    return lines.map(() => 0);
  }
  let x0 = Math.min(...all.map((p) => p[0]));
  let x1 = Math.max(...all.map((p) => p[0]));
  if (x1 === x0) ((x0 -= 1), (x1 += 1));
  let y0 = o.yMin ?? Math.min(...all.map((p) => p[1]));
  let y1 = o.yMax ?? Math.max(...all.map((p) => p[1]));
  if (y1 === y0) ((y0 -= 0.5), (y1 += 0.5));
  const X = (x: number) => m.l + ((x - x0) / (x1 - x0)) * pw;
  const Y = (y: number) => m.t + ph - ((y - y0) / (y1 - y0)) * ph;
  const grid = el('g', { class: 'grid' }, svg);
  yTicks(grid, m, pw, Y, niceTicks(y0, y1, 4), o.yFmt);
  const xt = niceTicks(x0, x1, Math.max(2, Math.floor(pw / 90))).filter((t) => !o.xInteger || Number.isInteger(t));
  xTicks(grid, m, ph, X, xt, String);
  el('line', { x1: m.l, x2: m.l + pw, y1: m.t + ph, y2: m.t + ph, class: 'axis' }, grid);
  el('text', { x: m.l + pw, y: H - 2, 'text-anchor': 'end', class: 'axis-label' }, grid).textContent = o.xLabel;
  const counts: number[] = [];
  for (const l of lines) {
    const g = el('g', { 'data-exit': l.exit, class: seriesClass(l.exit - 1) }, svg);
    const pts = l.xs.map((x, i) => `${X(x).toFixed(1)},${Y(l.ys[i]).toFixed(1)}`);
    if (pts.length > 1) el('polyline', { points: pts.join(' '), class: 'line' }, g);
    if (l.markers || pts.length === 1)
      l.xs.forEach((x, i) =>
        el('circle', { cx: X(x).toFixed(1), cy: Y(l.ys[i]).toFixed(1), r: 3, class: 'marker' }, g),
      );
    counts.push(pts.length);
  }
  return counts;
}

const pct = (x: number | null | undefined, d = 1) =>
  x === null || x === undefined || !Number.isFinite(x) ? '–' : `${(100 * x).toFixed(d)}%`;
function fmtEta(s: number): string {
  if (!Number.isFinite(s) || s < 0) return '–';
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = Math.round(s % 60);
  return h ? `${h}h${String(m).padStart(2, '0')}m` : m ? `${m}m${String(sec).padStart(2, '0')}s` : `${sec}s`;
}
const exitsOf = () => meta?.exits ?? [];
const isReg = () => meta?.task === 'regression';
/** Regression errors (target units): 4 significant digits, as `met eval` prints them. */
const num = (x: number | null | undefined) =>
  x === null || x === undefined || !Number.isFinite(x) ? '–' : x.toPrecision(4);
/** The per-exit validation metric of an epoch: accuracy, or MAE for regression runs. */
const valOf = (e: EpochEvent) => (isReg() ? (e.valMaePerExit ?? []) : e.valAccPerExit);
const valEpochs = () => epochs.filter((e) => valOf(e).length);

function renderLegend(): void {
  const ul = $('legend');
  ul.replaceChildren(
    ...exitsOf().map((layer, j) => {
      const li = document.createElement('li');
      li.dataset.exit = String(j + 1);
      const sw = el('svg', { class: 'swatch', width: 22, height: 10, 'aria-hidden': 'true' });
      el('line', { x1: 1, x2: 21, y1: 5, y2: 5, class: `line ${seriesClass(j)}` }, sw);
      li.append(sw, document.createTextNode(`exit ${j + 1} · layer ${layer}`));
      return li;
    }),
  );
}

function renderTable(): RenderedSnapshot['exits'] {
  const lastVal = valEpochs().at(-1);
  const rows: RenderedSnapshot['exits'] = exitsOf().map((layer, j) => {
    const s = summary?.exits[j];
    const branch = s?.branch ?? meta?.branches[j] ?? 'linear';
    const gflops = s && Number.isFinite(s.gflops) ? s.gflops.toPrecision(3) : '–';
    if (isReg())
      return {
        exit: j + 1,
        layer: String(layer),
        branch,
        val: num(lastVal ? valOf(lastVal)[j] : undefined),
        test: num(s?.mae),
        rmse: num(s?.rmse),
        gflops,
      };
    return {
      exit: j + 1,
      layer: String(layer),
      branch,
      val: pct(lastVal?.valAccPerExit[j]),
      test: pct(s?.accuracy),
      gflops,
    };
  });
  const body = $('exit-rows');
  body.replaceChildren(
    ...rows.map((r) => {
      const tr = document.createElement('tr');
      tr.dataset.exit = String(r.exit);
      const cells: [string, string][] = [
        ['exit', String(r.exit)],
        ['layer', r.layer],
        ['branch', r.branch],
        ['val', r.val],
        ['test', r.test],
      ];
      if (r.rmse !== undefined) cells.push(['rmse', r.rmse]);
      cells.push(['gflops', r.gflops]);
      for (const [cls, text] of cells) {
        const td = document.createElement('td');
        td.className = cls;
        td.textContent = text;
        tr.appendChild(td);
      }
      return tr;
    }),
  );
  const what = isReg() ? 'MAE' : 'accuracy';
  $('val-head').textContent = lastVal ? `Val ${what} (epoch ${lastVal.epoch})` : `Val ${what}`;
  $('test-head').textContent = `Test ${what}`;
  $('rmse-head').hidden = !isReg();
  return rows;
}

function render(): void {
  if (!meta) return;
  const status = meta.status;
  root.dataset.status = status;
  $('run-name').textContent = meta.name;
  const br =
    meta.branches.length && meta.branches.every((b) => b === meta!.branches[0])
      ? meta.branches[0]
      : meta.branches.join(' / ');
  $('run-meta').textContent =
    `${meta.backbone} · ${isReg() ? 'regression' : `${meta.classes} classes`} · ${meta.variant} · ${meta.exits.length} exits${br ? ` · ${br} branch${meta.branches.length > 1 && br.includes('/') ? 'es' : ''}` : ''}`;
  $('loss-caption').textContent = isReg()
    ? 'Regression loss per exit (training steps)'
    : 'Cross-entropy per exit (training steps)';
  const badge = $('status');
  badge.textContent = meta.reason ? `${status}: ${meta.reason}` : status;
  badge.className = `badge ${status}`;
  const live = status === 'running' || status === 'starting';
  const epochNow = live
    ? (last?.epoch ?? 0)
    : summary
      ? meta.epochs
      : Math.max(epochs.at(-1)?.epoch ?? 0, last?.epoch ?? 0);
  $('epoch').textContent = `${epochNow} / ${meta.epochs}`;
  $('step').textContent = totalSteps ? `${last?.step ?? 0} / ${totalSteps}` : '–';
  const tput = !live && summary?.trainImgPerSec ? summary.trainImgPerSec : imgPerSec;
  $('throughput').textContent = tput ? `${tput.toFixed(1)} img/s` : '–';
  $('eta').textContent = live ? (last ? fmtEta(last.etaSec) : '–') : status === 'done' ? 'done' : '–';
  const prog = $<HTMLProgressElement>('progress');
  prog.value = summary ? 1 : totalSteps && last ? last.step / totalSteps : 0;

  // Loss: each exit's cross-entropy per training step.
  const lossLines: Line[] = [];
  const maxPts = Math.max(60, Math.floor(($('loss-chart').clientWidth || 480) / 5));
  for (let j = 0; j < K; j++) {
    const b = bucket(steps.data, (i) => lossK.at(i, j), steps.n, maxPts);
    lossLines.push({ exit: j + 1, ...b, markers: false });
  }
  const lossPoints = drawChart($<SVGSVGElement>('loss-chart'), lossLines, {
    yMin: 0,
    yFmt: (v) => v.toFixed(v < 1 ? 2 : 1),
    xLabel: 'step',
    xInteger: true,
    empty: 'no training step yet',
  });

  // Accuracy: validation per epoch when there is a val split, else training batches per step.
  const ve = valEpochs();
  const accLines: Line[] = [];
  const reg = isReg();
  if (ve.length) {
    $('acc-caption').textContent = reg
      ? 'Validation MAE per exit (each epoch, target units)'
      : 'Validation accuracy per exit (each epoch)';
    for (let j = 0; j < exitsOf().length; j++)
      accLines.push({
        exit: j + 1,
        xs: ve.map((e) => e.epoch),
        ys: ve.map((e) => valOf(e)[j]).map((v) => (Number.isFinite(v) ? v : NaN)),
        markers: true,
      });
    for (const l of accLines) {
      const keep = l.ys.map((y) => Number.isFinite(y));
      l.xs = l.xs.filter((_, i) => keep[i]);
      l.ys = l.ys.filter((_, i) => keep[i]);
    }
  } else {
    $('acc-caption').textContent = reg
      ? 'Training batch MAE per exit (no validation split yet)'
      : 'Training batch accuracy per exit (no validation split yet)';
    for (let j = 0; j < K; j++)
      accLines.push({ exit: j + 1, ...bucket(steps.data, (i) => accK.at(i, j), steps.n, maxPts), markers: false });
  }
  const accPoints = reg
    ? drawChart($<SVGSVGElement>('acc-chart'), accLines, {
        yMin: 0,
        yFmt: (v) => String(Number(v.toPrecision(3))),
        xLabel: ve.length ? 'epoch' : 'step',
        xInteger: true,
        empty: 'no MAE yet',
      })
    : drawChart($<SVGSVGElement>('acc-chart'), accLines, {
        yMin: 0,
        yMax: 1,
        yFmt: (v) => `${Math.round(100 * v)}%`,
        xLabel: ve.length ? 'epoch' : 'step',
        xInteger: true,
        empty: 'no accuracy yet',
      });

  renderLegend();
  const exits = renderTable();

  state = {
    runDir,
    status,
    summaryAccuracy: summary ? summary.exits.map((e) => (Number.isFinite(e.accuracy) ? e.accuracy : null)) : undefined,
  };
  vscode.setState(state);
  const rendered: RenderedSnapshot = {
    epoch: $('epoch').textContent ?? '',
    step: $('step').textContent ?? '',
    throughput: $('throughput').textContent ?? '',
    eta: $('eta').textContent ?? '',
    status: badge.textContent ?? '',
    lossPoints,
    accPoints,
    exits,
  };
  vscode.postMessage({ type: 'state', state, rendered });
}

new ResizeObserver(() => schedule()).observe($('charts'));
vscode.postMessage({ type: 'ready' });
