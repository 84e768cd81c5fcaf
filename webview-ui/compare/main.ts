// The Compare runs webview (bundled by esbuild into dist/webview/compare.js). Charts are SVG built
// through the DOM and styled only by classes from compare.css (theme variables; no inline styles,
// which the CSP forbids); each run has a theme chart colour and a marker shape of its own, so runs
// stay apart without colour too. The numbers drawn are kept on the elements (data-x, data-y...)
// and read back for the 'state' message, so tests check what is on screen, not what was sent.
//
// Keyboard: the line charts take focus (Tab) and move a cursor with the arrow keys (Left/Right:
// the previous / next point, Up/Down: the other runs, Home/End), read out in a live region; the bar
// charts are one Tab stop each with the arrow keys moving between bars (roving tabindex).
//
// Flow: keep the source (from #met-compare[data-source]) in setState at once (a reload revives the
// panel from it), post 'ready', receive 'loading' / 'data' / 'error'; after each render post
// 'state'.

import './compare.css';
import { $, initialState, vscodeApi } from '../common/vscode';
import { niceTicks, svgEl as el, SVG_NS, xTicks, yTicks, type Margins } from '../common/svg';
import { renderEmbeddings, type EmbeddingsView } from '../common/embeddings';
import type {
  CompareData,
  CompareHostMessage,
  CompareRendered,
  CompareRun,
  CompareSource,
  CompareState,
  CompareTestAction,
  CompareWebviewMessage,
  EmbeddingSettings,
  RunEmbeddings,
} from './protocol';

const vscode = vscodeApi<CompareWebviewMessage, CompareState>();
const root = $('met-compare');
const source = JSON.parse(root.dataset.source ?? '{"runs":[]}') as CompareSource;
let state = initialState(
  vscode,
  { source, perExit: false },
  (saved) => JSON.stringify(saved.source) === JSON.stringify(source),
);

let data: CompareData | null = null;
let error: string | null = null;
let exported: { format: string; file: string | null } | null = null;
let embeddings: { status: string; runs: RunEmbeddings[] } | null = null;
let embeddingViews: EmbeddingsView[] = [];

// ---- Formatting ----

const isReg = () => data?.task === 'regression';
const pct = (v: number, d = 1) => `${(100 * v).toFixed(d)}%`;
/** An accuracy (fraction) or an MAE (target units), as the readouts print it. */
const metricText = (v: number) => (isReg() ? v.toPrecision(4) : pct(v));
const gfText = (v: number) => v.toPrecision(3);
const int = (n: number) => n.toLocaleString('en-US');
const compact = (n: number) =>
  n >= 1e6 ? `${(n / 1e6).toFixed(2)}M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)}k` : String(n);

/** Tick labels with as many decimals as the step needs (0.25 → 2), not a fixed count. */
function tickFormat(ticks: number[], scale = 1, suffix = ''): (v: number) => string {
  const step = ticks.length > 1 ? Math.abs(ticks[1] - ticks[0]) * scale : 1;
  // The decimals of the step itself (2.5 → 1, 0.25 → 2, 20 → 0).
  const d = Math.min(6, (String(Number(step.toPrecision(6))).split('.')[1] ?? '').length);
  return (v) => `${(v * scale).toFixed(d)}${suffix}`;
}

// ---- Runs: colour class and marker shape ----

/** Run i's classes: a series colour of chart-marks.css in Compare's order (blue, red, green, purple,
 *  yellow; the dashboard gives its exits the same five in another order), then dashed and dotted. */
const RUN_COLOURS = ['s0', 's4', 's2', 's3', 's1'];
const runClass = (i: number) => `${RUN_COLOURS[i % RUN_COLOURS.length]} d${Math.floor(i / RUN_COLOURS.length) % 3}`;
const SHAPES = ['circle', 'square', 'diamond', 'triangle', 'down', 'cross'] as const;

/** The run's marker shape at (x, y), size s (about the radius). */
function shape(i: number, x: number, y: number, s: number, parent: Element, attrs: Record<string, string | number>) {
  const f = (v: number) => v.toFixed(1);
  const kind = SHAPES[i % SHAPES.length];
  if (kind === 'circle') return el('circle', { cx: f(x), cy: f(y), r: s, ...attrs }, parent);
  if (kind === 'square')
    return el(
      'rect',
      { x: f(x - 0.85 * s), y: f(y - 0.85 * s), width: f(1.7 * s), height: f(1.7 * s), ...attrs },
      parent,
    );
  const k = 1.25 * s;
  const d =
    kind === 'diamond'
      ? `M${f(x)} ${f(y - k)}L${f(x + k)} ${f(y)}L${f(x)} ${f(y + k)}L${f(x - k)} ${f(y)}Z`
      : kind === 'triangle'
        ? `M${f(x)} ${f(y - k)}L${f(x + k)} ${f(y + 0.8 * k)}L${f(x - k)} ${f(y + 0.8 * k)}Z`
        : kind === 'down'
          ? `M${f(x)} ${f(y + k)}L${f(x + k)} ${f(y - 0.8 * k)}L${f(x - k)} ${f(y - 0.8 * k)}Z`
          : `M${f(x - k)} ${f(y - 0.35 * k)}H${f(x - 0.35 * k)}V${f(y - k)}H${f(x + 0.35 * k)}V${f(y - 0.35 * k)}H${f(x + k)}V${f(y + 0.35 * k)}H${f(x + 0.35 * k)}V${f(y + k)}H${f(x - 0.35 * k)}V${f(y + 0.35 * k)}H${f(x - k)}Z`;
  return el('path', { d, ...attrs }, parent);
}

function widthOf(svg: SVGSVGElement): number {
  return Math.max(260, Math.floor(svg.clientWidth || svg.parentElement?.clientWidth || 480));
}

function clear(svg: Element): void {
  while (svg.firstChild) svg.removeChild(svg.firstChild);
}

/** The y axis' title, turned to read upwards along the left edge, centred on the plot's height `ph`. */
function yTitle(grid: SVGGElement, m: Margins, ph: number, text: string): void {
  el(
    'text',
    {
      x: 12,
      y: m.t + ph / 2,
      'text-anchor': 'middle',
      transform: `rotate(-90 12 ${m.t + ph / 2})`,
      class: 'axis-label',
    },
    grid,
  ).textContent = text;
}

// ---- Line charts with a keyboard cursor ----

interface XYPoint {
  x: number;
  y: number;
  /** What the readout says about the point (after the series' name). */
  text: string;
  /** 'static': an exit (big marker); 'dyn' / 'pt': a point of a line (small dot, or none). */
  kind: 'static' | 'dyn' | 'pt';
  attrs?: Record<string, string | number>;
}

interface XYSeries {
  run: number;
  name: string;
  /** Points in the order the arrow keys visit them (by x). */
  points: XYPoint[];
  /** The line through the points of these kinds, in x order (none: markers only). */
  line: XYPoint['kind'][];
  /** Extra classes of the line (the exit's dash in the per-exit validation curves). */
  lineClass?: string;
  attrs?: Record<string, string | number>;
}

interface XYOptions {
  height: number;
  xLabel: string;
  yLabel: string;
  xFmt?: (ticks: number[]) => (v: number) => string;
  yFmt: (ticks: number[]) => (v: number) => string;
  xInteger?: boolean;
  yZero?: boolean;
  empty: string;
  /** Dashed vertical lines (the table's budgets). */
  vlines?: { x: number; text: string }[];
}

class XYChart {
  private series: XYSeries[] = [];
  private pos: { px: number; py: number }[][] = [];
  cursor: { s: number; i: number } | null = null;
  private hovered: { s: number; i: number } | null = null;

  constructor(
    readonly svg: SVGSVGElement,
    private readonly readout: HTMLElement,
    private readonly label: string,
    private readonly onCursor?: (c: { s: number; i: number }) => void,
  ) {
    svg.addEventListener('keydown', (e) => this.key(e));
    svg.addEventListener('focus', () => {
      if (!this.cursor && this.series.some((s) => s.points.length)) this.setCursor({ s: 0, i: 0 });
      else this.paint();
    });
    svg.addEventListener('blur', () => this.paint());
    svg.addEventListener('mousemove', (e) => this.hover(e));
    svg.addEventListener('mouseleave', () => {
      this.hovered = null;
      this.paint();
    });
  }

  draw(series: XYSeries[], o: XYOptions): void {
    const svg = this.svg;
    clear(svg);
    this.series = series;
    const W = widthOf(svg);
    const H = o.height;
    svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
    svg.setAttribute('height', String(H));
    svg.setAttribute(
      'aria-label',
      `${this.label}. ${series.length > 1 ? 'Left and Right arrows move along a run, Up and Down switch runs.' : 'Left and Right arrows move between points.'}`,
    );
    const m = { l: 56, r: 14, t: 10, b: 40 };
    const pw = W - m.l - m.r;
    const ph = H - m.t - m.b;
    const all = series.flatMap((s) => s.points);
    this.pos = series.map(() => []);
    if (!all.length) {
      el('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle', class: 'empty' }, svg).textContent = o.empty;
      this.cursor = null;
      this.paint();
      return;
    }
    let x0 = Math.min(...all.map((p) => p.x));
    let x1 = Math.max(...all.map((p) => p.x));
    const xpad = x1 > x0 ? 0.04 * (x1 - x0) : Math.max(1e-9, Math.abs(x0) * 0.1) || 1;
    if (o.xInteger && x1 === x0) ((x0 -= 1), (x1 += 1));
    else ((x0 -= xpad), (x1 += xpad));
    let y0 = o.yZero ? 0 : Math.min(...all.map((p) => p.y));
    let y1 = Math.max(...all.map((p) => p.y));
    const ypad = y1 > y0 ? 0.06 * (y1 - y0) : Math.max(1e-9, Math.abs(y1) * 0.1) || 1;
    if (!o.yZero) y0 -= ypad;
    y1 += ypad;
    const X = (x: number) => m.l + ((x - x0) / (x1 - x0)) * pw;
    const Y = (y: number) => m.t + ph - ((y - y0) / (y1 - y0)) * ph;
    const grid = el('g', { class: 'grid' }, svg);
    const yt = niceTicks(y0, y1, o.height >= 280 ? 6 : 4);
    const yf = o.yFmt(yt);
    yTicks(grid, m, pw, Y, yt, yf);
    const xt = niceTicks(x0, x1, Math.max(2, Math.floor(pw / 90))).filter((t) => !o.xInteger || Number.isInteger(t));
    const xf = o.xFmt ? o.xFmt(xt) : (v: number) => String(v);
    xTicks(grid, m, ph, X, xt, xf);
    el('line', { x1: m.l, x2: m.l + pw, y1: m.t + ph, y2: m.t + ph, class: 'axis' }, grid);
    el('line', { x1: m.l, x2: m.l, y1: m.t, y2: m.t + ph, class: 'axis' }, grid);
    el('text', { x: m.l + pw / 2, y: H - 4, 'text-anchor': 'middle', class: 'axis-label' }, grid).textContent =
      o.xLabel;
    yTitle(grid, m, ph, o.yLabel);
    for (const v of o.vlines ?? []) {
      if (v.x < x0 || v.x > x1) continue;
      const g = el('g', { class: 'budget' }, svg);
      el('line', { x1: X(v.x), x2: X(v.x), y1: m.t, y2: m.t + ph }, g);
      el('text', { x: X(v.x) + 3, y: m.t + 9, class: 'budget-label' }, g).textContent = v.text;
    }
    series.forEach((s, si) => {
      const g = el('g', { class: `series ${runClass(s.run)}`, 'data-run': s.run, ...(s.attrs ?? {}) }, svg);
      const onLine = s.points.filter((p) => s.line.includes(p.kind)).sort((a, b) => a.x - b.x);
      if (onLine.length > 1)
        el(
          'polyline',
          {
            points: onLine.map((p) => `${X(p.x).toFixed(1)},${Y(p.y).toFixed(1)}`).join(' '),
            class: `line ${s.lineClass ?? ''}`,
          },
          g,
        );
      s.points.forEach((p) => {
        const px = X(p.x);
        const py = Y(p.y);
        this.pos[si].push({ px, py });
        const attrs = { class: `pt ${p.kind}`, 'data-kind': p.kind, 'data-x': p.x, 'data-y': p.y, ...(p.attrs ?? {}) };
        if (p.kind === 'static') shape(s.run, px, py, 4.5, g, attrs);
        else if (p.kind === 'dyn' || onLine.length <= 1)
          el('circle', { cx: px.toFixed(1), cy: py.toFixed(1), r: 2, ...attrs }, g);
        else el('circle', { cx: px.toFixed(1), cy: py.toFixed(1), r: 0, ...attrs }, g);
      });
    });
    // A cursor kept from before (state, or a redraw on resize) stays where it was when it still exists.
    if (this.cursor && !this.series[this.cursor.s]?.points[this.cursor.i]) this.cursor = null;
    this.paint();
  }

  /** The readout's text for a point. */
  describe(c: { s: number; i: number } | null): string | null {
    if (!c) return null;
    const s = this.series[c.s];
    const p = s?.points[c.i];
    return p ? `${s.name}: ${p.text}` : null;
  }

  get readoutText(): string | null {
    return this.describe(this.hovered ?? (document.activeElement === this.svg ? this.cursor : null) ?? this.cursor);
  }

  setCursor(c: { s: number; i: number }): void {
    if (!this.series[c.s]?.points[c.i]) return;
    this.cursor = c;
    this.onCursor?.(c);
    this.paint();
  }

  /** Rings at the cursor (when focused or set) and the hovered point, and the readout. */
  private paint(): void {
    this.svg.querySelectorAll('.ring').forEach((r) => r.remove());
    const ring = (c: { s: number; i: number } | null, cls: string) => {
      const p = c && this.pos[c.s]?.[c.i];
      if (p) el('circle', { cx: p.px.toFixed(1), cy: p.py.toFixed(1), r: 8, class: `ring ${cls}` }, this.svg);
    };
    ring(this.cursor, document.activeElement === this.svg ? 'cursor focused' : 'cursor');
    if (this.hovered) ring(this.hovered, 'hover');
    this.readout.textContent = this.readoutText ?? this.readout.dataset.hint ?? '';
  }

  private key(e: KeyboardEvent): void {
    const n = this.series.length;
    if (!n) return;
    let c = this.cursor ?? { s: 0, i: 0 };
    const len = (s: number) => this.series[s].points.length;
    const nearest = (s: number) => {
      const x = this.series[c.s].points[c.i]?.x ?? 0;
      let best = 0;
      this.series[s].points.forEach((p, i) => {
        if (Math.abs(p.x - x) < Math.abs(this.series[s].points[best].x - x)) best = i;
      });
      return best;
    };
    const nextSeries = (d: number) => {
      for (let k = 1; k <= n; k++) {
        const s = (((c.s + d * k) % n) + n) % n;
        if (len(s)) return { s, i: nearest(s) };
      }
      return c;
    };
    switch (e.key) {
      case 'ArrowRight':
        c = { s: c.s, i: Math.min(len(c.s) - 1, c.i + 1) };
        break;
      case 'ArrowLeft':
        c = { s: c.s, i: Math.max(0, c.i - 1) };
        break;
      case 'ArrowUp':
        c = nextSeries(-1);
        break;
      case 'ArrowDown':
        c = nextSeries(1);
        break;
      case 'Home':
        c = { s: c.s, i: 0 };
        break;
      case 'End':
        c = { s: c.s, i: len(c.s) - 1 };
        break;
      default:
        return;
    }
    e.preventDefault();
    this.hovered = null;
    this.setCursor(c);
  }

  private hover(e: MouseEvent): void {
    const r = this.svg.getBoundingClientRect();
    const vb = this.svg.viewBox.baseVal;
    const sx = vb && r.width ? vb.width / r.width : 1;
    const mx = (e.clientX - r.left) * sx;
    const my = (e.clientY - r.top) * sx;
    let best: { s: number; i: number; d: number } | null = null;
    this.pos.forEach((ps, s) =>
      ps.forEach((p, i) => {
        const d = Math.hypot(p.px - mx, p.py - my);
        if (d < 24 && (!best || d < best.d)) best = { s, i, d };
      }),
    );
    const b = best as { s: number; i: number; d: number } | null;
    const h = b ? { s: b.s, i: b.i } : null;
    if (JSON.stringify(h) === JSON.stringify(this.hovered)) return;
    this.hovered = h;
    this.paint();
  }
}

// ---- Bar charts: one Tab stop, arrow keys between bars ----

/** Which bar of `svg` has the Tab stop (and whether it has focus), to be kept across a redraw. */
function barStop(svg: SVGSVGElement): { key: string; focused: boolean } | null {
  const b = svg.querySelector<SVGGElement>('g.bar[tabindex="0"]');
  return b ? { key: `${b.dataset.exit}/${b.dataset.run}`, focused: document.activeElement === b } : null;
}

/** One Tab stop among the redrawn bars: the one that had it before (`stop`), else the first. */
function rovingBars(svg: SVGSVGElement, stop: ReturnType<typeof barStop>): void {
  const bars = [...svg.querySelectorAll<SVGGElement>('g.bar')];
  const current = Math.max(
    0,
    bars.findIndex((b) => `${b.dataset.exit}/${b.dataset.run}` === stop?.key),
  );
  bars.forEach((b, i) => b.setAttribute('tabindex', i === current ? '0' : '-1'));
  if (stop?.focused) bars[current]?.focus();
}

function barKeys(svg: SVGSVGElement): void {
  svg.addEventListener('keydown', (e) => {
    const bars = [...svg.querySelectorAll<SVGGElement>('g.bar')];
    const i = bars.indexOf(document.activeElement as SVGGElement);
    if (i < 0) return;
    const next =
      e.key === 'ArrowRight' || e.key === 'ArrowDown'
        ? Math.min(bars.length - 1, i + 1)
        : e.key === 'ArrowLeft' || e.key === 'ArrowUp'
          ? Math.max(0, i - 1)
          : e.key === 'Home'
            ? 0
            : e.key === 'End'
              ? bars.length - 1
              : -1;
    if (next < 0) return;
    e.preventDefault();
    bars.forEach((b, k) => b.setAttribute('tabindex', k === next ? '0' : '-1'));
    bars[next].focus();
  });
}

function barGroup(svg: Element, label: string, attrs: Record<string, string | number>): SVGGElement {
  const g = el('g', { class: 'bar', tabindex: -1, role: 'img', 'aria-label': label, ...attrs }, svg);
  el('title', {}, g).textContent = label;
  return g;
}

// ---- The sections ----

const curveChart = new XYChart(
  $<SVGSVGElement>('curve-chart'),
  $('curve-readout'),
  'Accuracy versus GFLOPs per run: exits as markers, the budgeted (dynamic) curve as a line',
  (c) => {
    state = { ...state, cursor: { run: c.s, point: c.i } };
    // Only the report: redrawing every chart would take the focus from where Tab moves next.
    schedule();
  },
);
const lossChart = new XYChart(
  $<SVGSVGElement>('loss-chart'),
  $('loss-readout'),
  'Training loss per step, one line per run',
);
const valChart = new XYChart($<SVGSVGElement>('val-chart'), $('val-readout'), 'Validation per epoch, one line per run');
barKeys($<SVGSVGElement>('bars-chart'));
barKeys($<SVGSVGElement>('params-chart'));
$('curve-readout').dataset.hint = 'Hover a point, or focus the chart (Tab) and use the arrow keys.';
$('loss-readout').dataset.hint = 'Hover the lines, or focus the chart and use the arrow keys.';
$('val-readout').dataset.hint = 'Hover the lines, or focus the chart and use the arrow keys.';

function renderLegend(runs: CompareRun[]): string[] {
  $('legend').replaceChildren(
    ...runs.map((r, i) => {
      const li = document.createElement('li');
      li.dataset.run = String(i);
      const sw = el('svg', { class: `swatch ${runClass(i)}`, width: 30, height: 14, 'aria-hidden': 'true' });
      el('line', { x1: 1, x2: 29, y1: 7, y2: 7, class: 'line' }, sw);
      shape(i, 15, 7, 4.5, sw, { class: 'pt static' });
      const name = document.createElement('span');
      name.className = 'name';
      name.textContent = r.name;
      const sub = document.createElement('span');
      sub.className = 'sub';
      sub.textContent = r.variant;
      sub.title = r.runDir;
      li.append(sw, name, sub);
      return li;
    }),
  );
  return runs.map((r) => r.name);
}

function renderCurve(d: CompareData): CompareRendered['curve'] {
  const reg = d.task === 'regression';
  const yOf = (v: { accuracy: number | null; mae?: number }) => (reg ? (v.mae ?? NaN) : (v.accuracy ?? NaN));
  const series: XYSeries[] = d.runs.map((r, run) => {
    const pts: XYPoint[] = [];
    /** A point at (GFLOPs, metric), left out where either is not a number (no test result, no cost). */
    const add = (
      v: { gflops: number; accuracy: number | null; mae?: number },
      kind: 'static' | 'dyn',
      label: string,
      attrs: Record<string, number>,
    ) => {
      const y = yOf(v);
      if (Number.isFinite(y) && Number.isFinite(v.gflops))
        pts.push({ x: v.gflops, y, kind, text: `${label}: ${metricText(y)} at ${gfText(v.gflops)} GFLOPs`, attrs });
    };
    for (const e of r.exits)
      add(e, 'static', `exit ${e.exit} (layer ${e.layer}, ${e.branch})`, { 'data-exit': e.exit });
    for (const p of r.dynamic) add(p, 'dyn', `budgeted, p = ${p.p.toFixed(2)}`, { 'data-p': p.p });
    // Visit the points by cost; at equal cost the exit before the curve's points.
    pts.sort((a, b) => a.x - b.x || (a.kind === 'static' ? -1 : 1));
    return { run, name: r.name, points: pts, line: ['dyn'] };
  });
  if (state.cursor && !curveChart.cursor) curveChart.cursor = { s: state.cursor.run, i: state.cursor.point };
  curveChart.draw(series, {
    height: 300,
    xLabel: 'GFLOPs per image',
    yLabel: reg ? 'test MAE (lower is better)' : 'test accuracy (%)',
    xFmt: (t) => tickFormat(t),
    yFmt: (t) => (reg ? tickFormat(t) : tickFormat(t, 100)),
    empty: 'no exits to draw',
    vlines: d.table.budgets.map((b, i) => ({
      x: b,
      text: d.table.columns.find((c) => c.key === `budget${i + 1}`)?.label ?? '',
    })),
  });
  // What is drawn, read back from the elements.
  const svg = $<SVGSVGElement>('curve-chart');
  return d.runs.map((r, run) => {
    const g = svg.querySelector(`g.series[data-run="${run}"]`);
    const pts = [...(g?.querySelectorAll<SVGElement>('.pt') ?? [])];
    const num = (e: SVGElement, k: string) => Number(e.getAttribute(k));
    return {
      name: r.name,
      static: pts
        .filter((e) => e.dataset.kind === 'static')
        .map((e) => ({ exit: num(e, 'data-exit'), x: num(e, 'data-x'), y: num(e, 'data-y') }))
        .sort((a, b) => a.exit - b.exit),
      dynamic: pts
        .filter((e) => e.dataset.kind === 'dyn')
        .map((e) => ({ p: num(e, 'data-p'), x: num(e, 'data-x'), y: num(e, 'data-y') }))
        .sort((a, b) => a.p - b.p),
    };
  });
}

/** Per-exit accuracy (MAE) bars, grouped by exit, one bar per run. */
function renderBars(d: CompareData): CompareRendered['bars'] {
  const svg = $<SVGSVGElement>('bars-chart');
  const stop = barStop(svg);
  clear(svg);
  const reg = d.task === 'regression';
  const W = widthOf(svg);
  const H = 300;
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  svg.setAttribute('height', String(H));
  const m = { l: 56, r: 10, t: 14, b: 40 };
  const pw = W - m.l - m.r;
  const ph = H - m.t - m.b;
  const labels = d.table.exitLabels;
  const K = labels.length;
  const n = d.runs.length;
  const val = (r: CompareRun, j: number) => {
    const e = r.exits[j];
    return e ? (reg ? (e.mae ?? NaN) : (e.accuracy ?? NaN)) : NaN;
  };
  const vals = d.runs.flatMap((r) => labels.map((_, j) => val(r, j))).filter(Number.isFinite);
  const top = Math.max(reg ? 1e-9 : 0.01, ...vals) * 1.08;
  const Y = (v: number) => m.t + ph - (v / top) * ph;
  const grid = el('g', { class: 'grid' }, svg);
  const yt = niceTicks(0, top, 5);
  const yf = reg ? tickFormat(yt) : tickFormat(yt, 100);
  yTicks(grid, m, pw, Y, yt, yf);
  el('line', { x1: m.l, x2: m.l + pw, y1: m.t + ph, y2: m.t + ph, class: 'axis' }, grid);
  yTitle(grid, m, ph, reg ? 'test MAE (lower is better)' : 'test accuracy (%)');
  el('text', { x: m.l + pw / 2, y: H - 4, 'text-anchor': 'middle', class: 'axis-label' }, grid).textContent =
    d.table.exitLabels[0]?.startsWith('L') ? 'exit (backbone layer)' : 'exit';
  const gw = pw / Math.max(1, K);
  const bw = Math.max(3, Math.min(40, (gw * 0.8) / Math.max(1, n)));
  const out: CompareRendered['bars'] = [];
  for (let j = 0; j < K; j++) {
    const gx = m.l + j * gw + (gw - bw * n) / 2;
    el(
      'text',
      { x: m.l + (j + 0.5) * gw, y: m.t + ph + 16, 'text-anchor': 'middle', class: 'tick' },
      grid,
    ).textContent = labels[j];
    const values: number[] = [];
    d.runs.forEach((r, i) => {
      const v = val(r, j);
      values.push(v);
      if (!Number.isFinite(v)) return;
      const g = barGroup(svg, `${labels[j]}, ${r.name}: ${reg ? `MAE ${v.toPrecision(4)}` : `${pct(v)} accuracy`}`, {
        'data-exit': j + 1,
        'data-run': i,
        'data-value': v,
      });
      const x = gx + i * bw;
      el(
        'rect',
        {
          x: x.toFixed(1),
          y: Y(v).toFixed(1),
          width: (bw - 1).toFixed(1),
          height: (m.t + ph - Y(v)).toFixed(1),
          class: `fill ${runClass(i)}`,
        },
        g,
      );
      if (bw >= 30)
        el(
          'text',
          { x: (x + bw / 2).toFixed(1), y: (Y(v) - 4).toFixed(1), 'text-anchor': 'middle', class: 'value' },
          g,
        ).textContent = reg ? v.toPrecision(3) : (100 * v).toFixed(1);
    });
    out.push({ exit: labels[j], values });
  }
  rovingBars(svg, stop);
  return out;
}

function renderParams(d: CompareData): CompareRendered['params'] {
  const svg = $<SVGSVGElement>('params-chart');
  const stop = barStop(svg);
  clear(svg);
  const W = widthOf(svg);
  const rowH = 26;
  const names = d.runs.map((r) => r.name);
  const longest = Math.max(...names.map((s) => s.length));
  const m = { l: Math.min(200, 16 + 7 * longest), r: 110, t: 4, b: 4 };
  const H = m.t + d.runs.length * rowH + m.b;
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  svg.setAttribute('height', String(H));
  const max = Math.max(1, ...d.runs.map((r) => r.trainable));
  const pw = W - m.l - m.r;
  const out: CompareRendered['params'] = [];
  d.runs.forEach((r, i) => {
    const y = m.t + i * rowH;
    const text = `${int(r.trainable)} (${compact(r.trainable)})`;
    const g = barGroup(svg, `${r.name}: ${int(r.trainable)} trainable parameters`, {
      'data-run': i,
      'data-value': r.trainable,
    });
    el(
      'text',
      { x: m.l - 8, y: y + rowH / 2, 'text-anchor': 'end', 'dominant-baseline': 'middle', class: 'name' },
      g,
    ).textContent = r.name;
    const w = Math.max(2, (r.trainable / max) * pw);
    el('rect', { x: m.l, y: y + 4, width: w.toFixed(1), height: rowH - 8, class: `fill ${runClass(i)}` }, g);
    el('text', { x: m.l + w + 6, y: y + rowH / 2, 'dominant-baseline': 'middle', class: 'value' }, g).textContent =
      text;
    out.push({ name: r.name, trainable: r.trainable, text });
  });
  rovingBars(svg, stop);
  return out;
}

/** Dash patterns of the per-exit validation lines (exit 1 solid, then dashed, dotted, dash-dot). */
const exitDash = (j: number) => `e${j % 4}`;

function renderTraining(d: CompareData): CompareRendered['training'] {
  const reg = d.task === 'regression';
  lossChart.draw(
    d.runs.map((r, run) => ({
      run,
      name: r.name,
      points: r.steps
        .filter((s) => Number.isFinite(s.loss))
        .map((s) => ({
          x: s.step,
          y: s.loss,
          kind: 'pt' as const,
          text: `step ${s.step}: loss ${s.loss.toPrecision(4)}`,
        })),
      line: ['pt'],
    })),
    {
      height: 240,
      xLabel: 'training step',
      yLabel: 'training loss',
      yFmt: (t) => tickFormat(t),
      xInteger: true,
      yZero: true,
      empty: 'no training steps in metrics.jsonl',
    },
  );
  const perExit = state.perExit;
  const K = d.table.exitLabels.length;
  const mean = (v: number[]) => {
    const f = v.filter(Number.isFinite);
    return f.length ? f.reduce((a, b) => a + b, 0) / f.length : NaN;
  };
  const fmt = (v: number) => (reg ? `MAE ${v.toPrecision(4)}` : `${pct(v)} accuracy`);
  const valSeries: XYSeries[] = [];
  d.runs.forEach((r, run) => {
    if (!perExit) {
      valSeries.push({
        run,
        name: r.name,
        points: r.epochs
          .map((e) => ({ e, y: mean(e.val) }))
          .filter(({ y }) => Number.isFinite(y))
          .map(({ e, y }) => ({
            x: e.epoch,
            y,
            kind: 'static' as const,
            text: `epoch ${e.epoch}: mean over exits ${fmt(y)}`,
          })),
        line: ['static'],
      });
      return;
    }
    for (let j = 0; j < K; j++)
      valSeries.push({
        run,
        name: `${r.name}, ${d.table.exitLabels[j]}`,
        points: r.epochs
          .filter((e) => Number.isFinite(e.val[j]))
          .map((e) => ({
            x: e.epoch,
            y: e.val[j],
            kind: 'static' as const,
            text: `epoch ${e.epoch}: ${fmt(e.val[j])}`,
          })),
        line: ['static'],
        lineClass: exitDash(j),
        attrs: { 'data-exit': j + 1 },
      });
  });
  valChart.draw(valSeries, {
    height: 240,
    xLabel: 'epoch',
    yLabel: reg ? 'validation MAE (lower is better)' : 'validation accuracy (%)',
    yFmt: (t) => (reg ? tickFormat(t) : tickFormat(t, 100)),
    xInteger: true,
    empty: 'no validation epochs in metrics.jsonl',
  });
  $('val-caption').textContent =
    `Validation ${reg ? 'MAE' : 'accuracy'} per epoch${perExit ? ', per exit' : ', mean over exits'}`;
  $<HTMLInputElement>('per-exit').checked = perExit;
  // The exits' dash patterns, under the chart when they are drawn.
  const key = $('val-exit-key');
  key.hidden = !perExit;
  key.replaceChildren(
    ...(perExit
      ? d.table.exitLabels.map((l, j) => {
          const li = document.createElement('li');
          const sw = el('svg', { class: 'swatch', width: 30, height: 10, 'aria-hidden': 'true' });
          el('line', { x1: 1, x2: 29, y1: 5, y2: 5, class: `line plain ${exitDash(j)}` }, sw);
          li.append(sw, document.createTextNode(l));
          return li;
        })
      : []),
  );
  return d.runs.map((r, run) => ({
    name: r.name,
    steps: r.steps.length,
    epochs: r.epochs.length,
    valLines: valSeries.filter((s) => s.run === run && s.points.length).length,
  }));
}

function th(text: string, scope: 'col' | 'row', cls?: string): HTMLTableCellElement {
  const e = document.createElement('th');
  e.scope = scope;
  e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

/** A column head naming a run: its colour and marker, then its name. */
function runHead(r: CompareRun, i: number): HTMLTableCellElement {
  const e = th('', 'col', 'run-head');
  const sw = el('svg', { class: `swatch ${runClass(i)}`, width: 12, height: 12, 'aria-hidden': 'true' });
  shape(i, 6, 6, 4, sw, { class: 'pt static' });
  e.append(sw, document.createTextNode(r.name));
  return e;
}

function renderDiff(d: CompareData): CompareRendered['diff'] {
  const table = $<HTMLTableElement>('diff-table');
  const head = document.createElement('tr');
  head.append(th('setting', 'col'), ...d.runs.map(runHead));
  table.tHead!.replaceChildren(head);
  const body = table.tBodies[0];
  if (!d.diff.length) {
    const tr = document.createElement('tr');
    const td = document.createElement('td');
    td.colSpan = d.runs.length + 1;
    td.className = 'note';
    td.textContent = 'No setting differs: the runs were trained with the same settings.';
    tr.append(td);
    body.replaceChildren(tr);
  } else
    body.replaceChildren(
      ...d.diff.map((x) => {
        const tr = document.createElement('tr');
        tr.dataset.key = x.key;
        tr.append(th(x.key, 'row', 'key'));
        for (const v of x.values) {
          const td = document.createElement('td');
          td.textContent = v;
          td.title = v;
          tr.append(td);
        }
        return tr;
      }),
    );
  return { keys: d.diff.map((x) => x.key), values: d.diff.map((x) => x.values) };
}

/** The paper-style table; the best value per column bold, with "(best)" for screen readers. */
function renderTable(d: CompareData): CompareRendered['table'] {
  const t = d.table;
  const table = $<HTMLTableElement>('table');
  const reg = d.task === 'regression';
  $('table-caption').textContent = reg
    ? 'Comparison: test MAE per exit in target units (lower is better); bold: the best in its column'
    : 'Comparison: test accuracy per exit in %; bold: the best in its column';
  const head = document.createElement('tr');
  const header = ['run', ...t.columns.map((c) => c.label)];
  head.append(th('run', 'col'));
  for (const c of t.columns) {
    const e = th('', 'col', 'num');
    e.title = c.title;
    const shown = document.createElement('span');
    shown.setAttribute('aria-hidden', 'true');
    shown.textContent = c.label;
    const full = document.createElement('span');
    full.className = 'sr-only';
    full.textContent = c.title;
    e.append(shown, full);
    head.append(e);
  }
  table.tHead!.replaceChildren(head);
  const rows: CompareRendered['table']['rows'] = [];
  table.tBodies[0].replaceChildren(
    ...t.rows.map((r, i) => {
      const tr = document.createElement('tr');
      tr.dataset.run = String(i);
      const name = th('', 'row', 'name');
      const sw = el('svg', { class: `swatch ${runClass(i)}`, width: 12, height: 12, 'aria-hidden': 'true' });
      shape(i, 6, 6, 4, sw, { class: 'pt static' });
      name.append(sw, document.createTextNode(r.name));
      name.title = r.runDir;
      tr.append(name);
      const best = t.columns.map((_, ci) => t.best[ci].includes(i));
      t.cells[i].forEach((text, ci) => {
        const td = document.createElement('td');
        td.className = 'num';
        td.dataset.col = t.columns[ci].key;
        if (best[ci]) {
          td.classList.add('best');
          const b = document.createElement('strong');
          b.textContent = text;
          const sr = document.createElement('span');
          sr.className = 'sr-only';
          sr.textContent = ' (best)';
          td.append(b, sr);
        } else td.textContent = text;
        tr.append(td);
      });
      rows.push({ name: r.name, cells: t.cells[i], best });
      return tr;
    }),
  );
  return { header, rows };
}

function renderSkipped(d: CompareData): void {
  const p = $('skipped');
  p.hidden = !d.skipped.length;
  p.textContent = d.skipped.length
    ? `Not compared: ${d.skipped.map((s) => `${s.name} (${s.reason})`).join('; ')}.`
    : '';
}

// ---- Embeddings (the engine's 'embeddings/compute', drawn by the shared renderer) ----

function renderEmbeddingsSection(d: CompareData): void {
  const btn = $<HTMLButtonElement>('embeddings-compute');
  btn.disabled = !d.embeddings.available;
  $('embeddings-note').textContent = d.embeddings.available
    ? `Per-exit 2-D PCA of each run's head inputs for the same class-balanced sample, side by side.`
    : `Not available: ${d.embeddings.why ?? 'unknown reason'}.`;
  const s = state.embeddings ?? { perClass: 8, split: 'test' };
  $<HTMLInputElement>('embeddings-per-class').value = String(s.perClass);
  $<HTMLSelectElement>('embeddings-split').value = s.split;
}

/**
 * One embeddings view per run, side by side in equal columns (so exit j sits at the same place in
 * each); picking a point (Enter, Space, a click) highlights that image in every run.
 */
function showEmbeddings(runs: RunEmbeddings[]): void {
  embeddingViews.forEach((v) => v.dispose());
  const grid = $('embeddings-grid');
  grid.replaceChildren();
  const pick = (file: string) => embeddingViews.forEach((v) => v.setHighlight(file));
  embeddingViews = runs.map((r, i) => {
    const col = document.createElement('div');
    col.className = 'emb-col';
    col.dataset.run = String(i);
    grid.appendChild(col);
    return renderEmbeddings(col, r.result, { title: r.name, onPick: pick });
  });
  const files = runs.map((r) => r.result.sample.map((s) => s.file).join('\n'));
  const same = files.every((f) => f === files[0]);
  const n = runs[0]?.result.sample.length ?? 0;
  $('embeddings-status').textContent = same
    ? `the same ${n} images in every run (${runs[0]?.result.split}, seed ${runs[0]?.result.seed}); Enter or a click on a point marks that image in every run`
    : 'the runs drew different images (different data or splits): the plots are not of the same sample';
}

function requestEmbeddings(): void {
  const perClass = Math.max(
    1,
    Math.min(64, Math.round(Number($<HTMLInputElement>('embeddings-per-class').value) || 8)),
  );
  const split = $<HTMLSelectElement>('embeddings-split').value as EmbeddingSettings['split'];
  const settings: EmbeddingSettings = { perClass, split };
  state = { ...state, embeddings: settings };
  vscode.setState(state);
  vscode.postMessage({ type: 'embeddings', settings });
}

// ---- Rendering ----

let timer: ReturnType<typeof setTimeout> | undefined;
/** A report soon (bursts of cursor moves coalesce into one). */
function schedule(): void {
  timer ??= setTimeout(() => {
    timer = undefined;
    report();
  }, 40);
}

/** What render() drew last (the parts that change without a redraw are refreshed by report()). */
let rendered: CompareRendered | null = null;

/** Setstate, and 'state' to the host with what is on screen now. */
function report(): void {
  if (rendered) {
    rendered.readout = curveChart.readoutText;
    rendered.perExit = state.perExit;
    rendered.embeddings = embeddings
      ? {
          status: embeddings.status,
          runs: embeddings.runs.map((r) => r.name),
          sameSample: embeddings.runs.every(
            (r) => JSON.stringify(r.result.sample) === JSON.stringify(embeddings!.runs[0].result.sample),
          ),
          views: embeddingViews.map((v) => v.snapshot({ points: true })),
        }
      : null;
  }
  vscode.setState(state);
  vscode.postMessage({ type: 'state', state, rendered, error, exported });
}

/** Draws everything from `data`, then reports. */
function render(): void {
  rendered = null;
  if (data) {
    const d = data;
    const reg = d.task === 'regression';
    $('title').textContent = d.study ? `study ${d.study.name}` : d.runs.map((r) => r.name).join(' vs ');
    $('subtitle').textContent =
      `${d.runs.length} runs · ${reg ? 'regression (MAE, lower is better)' : 'classification'}${d.study ? ` · created ${new Date(d.study.createdAt).toLocaleString()}` : ''}`;
    $('curve-caption').textContent = reg ? 'MAE versus GFLOPs (lower is better)' : 'Accuracy versus GFLOPs';
    $('bars-caption').textContent = reg ? 'MAE per exit (lower is better)' : 'Accuracy per exit';
    const legend = renderLegend(d.runs);
    renderSkipped(d);
    const curve = renderCurve(d);
    const bars = renderBars(d);
    const params = renderParams(d);
    const training = renderTraining(d);
    const diff = renderDiff(d);
    const table = renderTable(d);
    renderEmbeddingsSection(d);
    rendered = {
      seq: d.seq,
      task: d.task,
      legend,
      skipped: d.skipped.map((s) => `${s.name} (${s.reason})`),
      curve,
      bars,
      params,
      training,
      diff,
      table,
      axes: {
        curveX: 'GFLOPs per image',
        curveY: reg ? 'test MAE (lower is better)' : 'test accuracy (%)',
        bars: reg ? 'test MAE (lower is better)' : 'test accuracy (%)',
        val: reg ? 'validation MAE (lower is better)' : 'validation accuracy (%)',
      },
      readout: null,
      perExit: state.perExit,
      embeddings: null,
    };
  }
  report();
}

function setStatus(status: string, text: string): void {
  root.dataset.status = status;
  $('status-text').textContent = text;
}

// ---- Export: the charts as one standalone SVG ----

/** Presentation attributes copied from the computed style (CSS variables resolved to colours). */
const STYLE_PROPS = [
  'fill',
  'fill-opacity',
  'stroke',
  'stroke-width',
  'stroke-dasharray',
  'stroke-opacity',
  'stroke-linejoin',
  'stroke-linecap',
  'opacity',
  'font-size',
  'font-family',
  'font-weight',
  'font-style',
  'shape-rendering',
] as const;

/** Every chart where it is on screen, with its caption and the legend, styles resolved. */
function exportSvg(): string {
  const base = root.getBoundingClientRect();
  const figures = ['curve-figure', 'bars-figure', 'loss-figure', 'val-figure', 'params-figure'].map((id) => $(id));
  const W = Math.ceil(Math.max(...figures.map((f) => f.getBoundingClientRect().right)) - base.left + 8);
  const H = Math.ceil(Math.max(...figures.map((f) => f.getBoundingClientRect().bottom)) - base.top + 8);
  const doc = document.implementation.createDocument(SVG_NS, 'svg', null);
  const out = doc.documentElement;
  const body = getComputedStyle(document.body);
  // A margin around what was on screen (the panel's own padding is outside the root).
  const pad = 16;
  out.setAttribute('width', String(W + 2 * pad));
  out.setAttribute('height', String(H + 2 * pad));
  out.setAttribute('viewBox', `${-pad} ${-pad} ${W + 2 * pad} ${H + 2 * pad}`);
  out.setAttribute('font-family', body.fontFamily);
  const bg = doc.createElementNS(SVG_NS, 'rect');
  for (const [k, v] of Object.entries({
    x: -pad,
    y: -pad,
    width: W + 2 * pad,
    height: H + 2 * pad,
    fill: body.backgroundColor,
  }))
    bg.setAttribute(k, String(v));
  out.appendChild(bg);
  const text = (s: string, x: number, y: number, color: string, size: string, weight = 'normal') => {
    const t = doc.createElementNS(SVG_NS, 'text');
    for (const [k, v] of Object.entries({ x, y, fill: color, 'font-size': size, 'font-weight': weight }))
      t.setAttribute(k, String(v));
    t.textContent = s;
    out.appendChild(t);
  };
  const title = $('title');
  const tr = title.getBoundingClientRect();
  text(
    title.textContent ?? '',
    tr.left - base.left,
    tr.bottom - base.top - 4,
    getComputedStyle(title).color,
    getComputedStyle(title).fontSize,
    '600',
  );
  // The legend: swatches and names where they are.
  for (const li of $('legend').querySelectorAll('li')) {
    const sw = li.querySelector('svg')!;
    const r = sw.getBoundingClientRect();
    const copy = sw.cloneNode(true) as SVGSVGElement;
    inlineStyles(sw, copy);
    copy.setAttribute('x', String(r.left - base.left));
    copy.setAttribute('y', String(r.top - base.top));
    out.appendChild(doc.importNode(copy, true));
    const name = li.querySelector('.name')!;
    const nr = name.getBoundingClientRect();
    text(
      `${name.textContent} (${li.querySelector('.sub')?.textContent ?? ''})`,
      nr.left - base.left,
      nr.bottom - base.top - 3,
      getComputedStyle(name).color,
      getComputedStyle(name).fontSize,
    );
  }
  for (const f of figures) {
    const cap = f.querySelector('figcaption')!;
    const cr = cap.getBoundingClientRect();
    const capText = [...cap.childNodes]
      .filter((n) => !(n instanceof HTMLLabelElement))
      .map((n) => n.textContent ?? '')
      .join('')
      .trim();
    text(
      capText,
      cr.left - base.left,
      cr.bottom - base.top - 4,
      getComputedStyle(cap).color,
      getComputedStyle(cap).fontSize,
    );
    const svg = f.querySelector('svg.chart') as SVGSVGElement;
    const r = svg.getBoundingClientRect();
    const copy = svg.cloneNode(true) as SVGSVGElement;
    // No cursor rings or tooltips in a figure; inlineStyles skips them in the original as well.
    copy.querySelectorAll('.ring, title').forEach((x) => x.remove());
    inlineStyles(svg, copy);
    copy.setAttribute('x', String(r.left - base.left));
    copy.setAttribute('y', String(r.top - base.top));
    copy.setAttribute('width', String(r.width));
    copy.setAttribute('height', String(r.height));
    copy.removeAttribute('id');
    out.appendChild(doc.importNode(copy, true));
  }
  return `<?xml version="1.0" encoding="UTF-8"?>\n${new XMLSerializer().serializeToString(doc)}\n`;
}

/**
 * Copies the computed style of `orig` and its descendants onto `copy` (a clone without rings and
 * titles: the walk skips those in the original to stay in step) as presentation attributes, and
 * drops classes and ARIA attributes, which mean nothing outside the panel.
 */
function inlineStyles(orig: Element, copy: Element): void {
  const keep = (e: Element) => !e.classList.contains('ring') && e.tagName !== 'title';
  const cs = getComputedStyle(orig);
  for (const p of STYLE_PROPS) {
    let v = cs.getPropertyValue(p);
    if (!v) continue;
    if (p === 'stroke-dasharray') v = v.replace(/px/g, '');
    copy.setAttribute(p, v);
  }
  for (const a of [
    'class',
    'tabindex',
    'role',
    'aria-label',
    'aria-hidden',
    'aria-roledescription',
    'aria-describedby',
  ])
    copy.removeAttribute(a);
  const o = [...orig.children].filter(keep);
  const c = [...copy.children];
  o.forEach((child, i) => {
    if (c[i]) inlineStyles(child, c[i]);
  });
}

function doExport(format: 'csv' | 'svg', target?: string): void {
  if (!data) return;
  setStatus('ready', `exporting ${format.toUpperCase()}…`);
  if (format === 'csv') vscode.postMessage({ type: 'export', format: 'csv', target });
  else vscode.postMessage({ type: 'export', format: 'svg', svg: exportSvg(), target });
}

// ---- Messages ----

function runTest(a: CompareTestAction): void {
  if (a.kind === 'export') doExport(a.format, a.target);
  else if (a.kind === 'focusPoint') {
    curveChart.setCursor({ s: a.run, i: a.point });
    report();
  } else if (a.kind === 'perExit') {
    state = { ...state, perExit: a.on };
    render();
  } else if (a.kind === 'embeddings') requestEmbeddings();
}

window.addEventListener('message', (ev: MessageEvent<CompareHostMessage>) => {
  const m = ev.data;
  switch (m.type) {
    case 'loading':
      setStatus('loading', 'reading the run folders…');
      break;
    case 'data':
      data = m.data;
      error = null;
      setStatus(
        'ready',
        `read ${m.data.runs.length} runs · ${new Date(m.data.at).toLocaleTimeString()} · ${m.data.ms} ms`,
      );
      render();
      // Embeddings asked for before (a reload, a rebuilt webview): again, for the same settings
      // (the host answers from what it kept when it can).
      if (state.embeddings && !embeddings && m.data.embeddings.available) requestEmbeddings();
      break;
    case 'error':
      error = m.message;
      setStatus('error', m.message);
      render();
      break;
    case 'exported':
      exported = { format: m.format, file: m.file };
      setStatus(
        m.error ? 'error' : 'ready',
        m.file ? `wrote ${m.file}` : (m.error ?? `${m.format.toUpperCase()} export cancelled`),
      );
      report();
      break;
    case 'embeddings-computing':
      embeddings = { status: 'computing', runs: [] };
      $('embeddings-status').textContent = 'computing…';
      report();
      break;
    case 'embeddings':
      embeddings = { status: 'ready', runs: m.runs };
      showEmbeddings(m.runs);
      report();
      break;
    case 'embeddings-error':
      embeddings = { status: 'error', runs: [] };
      $('embeddings-status').textContent = m.message;
      report();
      break;
    case 'test':
      runTest(m.action);
      break;
  }
});

$('refresh').addEventListener('click', () => vscode.postMessage({ type: 'refresh' }));
$('export-csv').addEventListener('click', () => doExport('csv'));
$('export-svg').addEventListener('click', () => doExport('svg'));
$('embeddings-compute').addEventListener('click', requestEmbeddings);
$<HTMLInputElement>('per-exit').addEventListener('change', (e) => {
  state = { ...state, perExit: (e.target as HTMLInputElement).checked };
  render();
});
let resizeTimer: ReturnType<typeof setTimeout> | undefined;
let lastWidth = 0;
new ResizeObserver(() => {
  // Only width changes redraw (the charts' own heights change the body's).
  const w = document.body.clientWidth;
  if (w === lastWidth) return;
  lastWidth = w;
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(() => data && render(), 80);
}).observe(document.body);
vscode.postMessage({ type: 'ready' });
