// The similarity-matrices webview (bundled by esbuild into dist/webview/similarity.js). Heatmaps
// are drawn on <canvas>: n up to a few hundred images gives n^2 cells per matrix, too many for
// DOM or SVG elements. Each matrix is coloured into an n x n ImageData through a 256-entry lookup
// table and scaled up with nearest-neighbour sampling, so a cell is a crisp square.
//
// Colour scales come from the theme: the stops are the theme's CSS variables (editor background,
// foreground, charts blue/red), read back as RGB through a 1x1 canvas (any CSS colour syntax, and
// translucent colours composited on the background) and re-read when the theme changes. Values
// that can be negative (S with simClamp 'none') get a diverging scale centred on 0; others a
// sequential one. A kind (S^w, S^b, distance) shares one domain across the exits shown, so two
// exits side by side compare by colour.
//
// Flow: keep the run folder in setState at once, post 'ready', receive 'init' (run, settings) and
// 'result's (typed arrays); after each render and cursor move, post 'state' (its setState contents
// and numbers read back from the arrays it drew, for tests).

import './similarity.css';
import { $, initialState, vscodeApi } from '../common/vscode';
import type {
  MatrixKind,
  RenderedMatrix,
  SimHostMessage,
  SimRendered,
  SimResultMessage,
  SimRunMeta,
  SimSettings,
  SimState,
  SimWebviewMessage,
  Split,
} from './protocol';

const vscode = vscodeApi<SimWebviewMessage, SimState>();
const root = $('met-similarity');
const runDir = root.dataset.runDir ?? '';
let state = initialState(vscode, { runDir }, (saved) => saved.runDir === runDir);

let run: SimRunMeta | null = null;
let data: SimResultMessage | null = null;
let error: string | null = null;
let lastSeq = 0;
let cursor: [number, number] = state.cursor ?? [0, 0];
/** The heatmap the cursor was last moved in (its value is emphasised in the readout). */
let activeKey = '';

const KINDS: MatrixKind[] = ['sw', 'sb', 'dist'];
const KIND_TITLE: Record<MatrixKind, string> = { sw: 'Sʷ', sb: 'Sᵇ', dist: 'distance' };
const KIND_SUB: Record<MatrixKind, string> = {
  sw: 'same-class similarity weights',
  sb: 'other-class similarity weights',
  dist: "head inputs' pairwise distance, as graph regularization uses it",
};

// ---- Numbers ----

/** Value text of the readout (tests format the engine's numbers the same way). */
export function fmtValue(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  if (v === 0) return '0';
  const a = Math.abs(v);
  return a >= 1e4 || a < 1e-3 ? v.toExponential(3) : v.toPrecision(4);
}

interface Domain {
  scale: 'diverging' | 'sequential';
  lo: number;
  hi: number;
}

function domainOf(arrays: Float32Array[]): Domain {
  let lo = Infinity;
  let hi = -Infinity;
  for (const a of arrays)
    for (let i = 0; i < a.length; i++) {
      const v = a[i];
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
  if (!(hi >= lo)) return { scale: 'sequential', lo: 0, hi: 1 };
  if (lo < 0) {
    const m = Math.max(-lo, hi, 1e-12);
    return { scale: 'diverging', lo: -m, hi: m };
  }
  return { scale: 'sequential', lo: Math.min(0, lo), hi: hi > Math.min(0, lo) ? hi : Math.min(0, lo) + 1 };
}

// ---- Theme colours ----

type RGB = [number, number, number];
const probe = document.createElement('canvas');
probe.width = probe.height = 1;
const probeCtx = probe.getContext('2d', { willReadFrequently: true })!;
const cssVar = (name: string) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

/** A CSS colour as RGB, composited over `under` (theme colours may be translucent). */
function toRgb(css: string, under: string, fallback: string): RGB {
  probeCtx.globalCompositeOperation = 'copy';
  probeCtx.fillStyle = under || fallback;
  probeCtx.fillRect(0, 0, 1, 1);
  probeCtx.globalCompositeOperation = 'source-over';
  probeCtx.fillStyle = fallback;
  probeCtx.fillStyle = css || fallback; // an invalid value leaves the fallback in place
  probeCtx.fillRect(0, 0, 1, 1);
  const d = probeCtx.getImageData(0, 0, 1, 1).data;
  return [d[0], d[1], d[2]];
}

interface Theme {
  bg: RGB;
  fg: RGB;
  fgCss: string;
  bgCss: string;
  font: string;
  seq: Uint8ClampedArray;
  div: Uint8ClampedArray;
  bands: string[];
  key: string;
}

const lin = (c: number) => ((c /= 255) <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4);
const srgb = (c: number) => 255 * (c <= 0.0031308 ? 12.92 * c : 1.055 * c ** (1 / 2.4) - 0.055);
/** 256 RGB entries through the stops (position 0..1, colour), interpolated in linear light. */
function lut(stops: [number, RGB][]): Uint8ClampedArray {
  const out = new Uint8ClampedArray(256 * 3);
  for (let k = 0; k < 256; k++) {
    const t = k / 255;
    let s = 0;
    while (s < stops.length - 2 && t > stops[s + 1][0]) s++;
    const [t0, c0] = stops[s];
    const [t1, c1] = stops[s + 1];
    const u = Math.min(1, Math.max(0, (t - t0) / (t1 - t0 || 1)));
    for (let ch = 0; ch < 3; ch++) out[3 * k + ch] = srgb(lin(c0[ch]) + (lin(c1[ch]) - lin(c0[ch])) * u);
  }
  return out;
}

function readTheme(): Theme {
  const bgCss = cssVar('--vscode-editor-background') || '#ffffff';
  const fgCss = cssVar('--vscode-editor-foreground') || cssVar('--vscode-foreground') || '#000000';
  const bg = toRgb(bgCss, '#ffffff', '#ffffff');
  const fg = toRgb(fgCss, bgCss, '#000000');
  const blue = toRgb(cssVar('--vscode-charts-blue'), bgCss, '#3794ff');
  const red = toRgb(cssVar('--vscode-charts-red'), bgCss, '#f14c4c');
  // Class bands: the theme's chart colours (not orange: translucent or missing in some themes).
  const bands = [
    '--vscode-charts-blue',
    '--vscode-charts-yellow',
    '--vscode-charts-green',
    '--vscode-charts-purple',
    '--vscode-charts-red',
  ].map((v, i) => {
    const c = toRgb(cssVar(v), bgCss, ['#3794ff', '#cca700', '#388a34', '#652d90', '#f14c4c'][i]);
    return `rgb(${c.join(',')})`;
  });
  // Beyond five classes the same hues again, half-way to the background (bands alternate).
  const faded = bands.map((c) => {
    const rgb = toRgb(c, bgCss, '#808080');
    return `rgb(${rgb.map((x, i) => Math.round((x + bg[i]) / 2)).join(',')})`;
  });
  const font = `${cssVar('--vscode-font-size') || '13px'} ${cssVar('--vscode-font-family') || 'sans-serif'}`;
  return {
    bg,
    fg,
    bgCss,
    fgCss,
    font,
    // Sequential: background (low) through blue to the foreground (high): the most contrast a theme offers.
    seq: lut([
      [0, bg],
      [0.6, blue],
      [1, fg],
    ]),
    // Diverging: red (negative), background at 0, blue (positive).
    div: lut([
      [0, red],
      [0.5, bg],
      [1, blue],
    ]),
    bands: [...bands, ...faded],
    key: [bgCss, fgCss, cssVar('--vscode-charts-blue'), cssVar('--vscode-charts-red'), document.body.className].join(
      '|',
    ),
  };
}
let theme = readTheme();

function lutIndex(v: number, d: Domain): number {
  const t = d.scale === 'diverging' ? 0.5 + v / (2 * d.hi) : (v - d.lo) / (d.hi - d.lo);
  return Math.max(0, Math.min(255, Math.round(t * 255)));
}
const colourOf = (v: number, d: Domain): RGB => {
  const L = d.scale === 'diverging' ? theme.div : theme.seq;
  const k = 3 * lutIndex(v, d);
  return [L[k], L[k + 1], L[k + 2]];
};

// ---- Controls ----

const exitA = $<HTMLSelectElement>('exit-a');
const exitB = $<HTMLSelectElement>('exit-b');
const perClass = $<HTMLInputElement>('per-class');
const splitSel = $<HTMLSelectElement>('split');
const statusText = $('status-text');

function option(value: string, text: string, disabled = false): HTMLOptionElement {
  const o = document.createElement('option');
  o.value = value;
  o.textContent = text;
  o.disabled = disabled;
  return o;
}

function fillControls(r: SimRunMeta, s: SimSettings): void {
  const exitText = (j: number) => `${j + 1} · layer ${r.layers[j]}`;
  exitA.replaceChildren(...r.layers.map((_, j) => option(String(j), exitText(j))));
  exitB.replaceChildren(option('', 'none'), ...r.layers.map((_, j) => option(String(j), exitText(j))));
  splitSel.replaceChildren(
    ...(['val', 'test', 'train'] as Split[]).map((x) => option(x, `${x} (${r.counts[x]} images)`, !(r.counts[x] > 0))),
  );
  const maxPer = Math.max(1, Math.min(64, Math.floor(600 / Math.max(1, r.classes.length))));
  perClass.max = String(maxPer);
  showSettings(s);
}

function showSettings(s: SimSettings): void {
  exitA.value = String(s.exits[0]);
  exitB.value = s.exits.length > 1 ? String(s.exits[1]) : '';
  perClass.value = String(s.perClass);
  splitSel.value = s.split;
}

function readControls(): SimSettings {
  const exits = [Number(exitA.value)];
  if (exitB.value !== '' && Number(exitB.value) !== exits[0]) exits.push(Number(exitB.value));
  const per = Math.round(Number(perClass.value));
  return {
    exits,
    perClass: Number.isFinite(per) && per >= 1 ? Math.min(per, Number(perClass.max) || per) : 1,
    split: splitSel.value as Split,
  };
}

let controlTimer: ReturnType<typeof setTimeout> | undefined;
function onControls(): void {
  clearTimeout(controlTimer);
  // The number box fires on every keystroke and arrow click: wait for the user to settle.
  controlTimer = setTimeout(() => {
    const s = readControls();
    state = { ...state, settings: s };
    vscode.setState(state);
    vscode.postMessage({ type: 'compute', settings: s });
  }, 350);
}
for (const el of [exitA, exitB, splitSel]) el.addEventListener('change', onControls);
perClass.addEventListener('input', onControls);
$('controls').addEventListener('submit', (e) => e.preventDefault());

// ---- Heatmaps ----

interface Geometry {
  left: number;
  top: number;
  size: number;
  cell: number;
  width: number;
  height: number;
  dpr: number;
}

const BAND = 8;
const LABEL_W = 84;

class Heatmap {
  readonly fig = document.createElement('figure');
  readonly plot = document.createElement('div');
  readonly base = document.createElement('canvas');
  readonly over = document.createElement('canvas');
  g: Geometry | null = null;
  bandLabels: string[] = [];

  constructor(
    readonly slot: number,
    readonly kind: MatrixKind,
    /** S^w / S^b drawn once for all exits shown (they are the same matrices). */
    readonly shared = false,
  ) {
    this.fig.className = 'heatmap';
    this.fig.dataset.kind = kind;
    this.base.className = 'matrix';
    this.over.className = 'overlay';
    this.plot.className = 'plot';
    this.plot.tabIndex = 0;
    this.plot.setAttribute('role', 'application');
    this.plot.setAttribute('aria-roledescription', 'heatmap');
    this.plot.setAttribute('aria-describedby', 'readout');
    this.plot.append(this.base, this.over);
    const cap = document.createElement('figcaption');
    this.fig.append(cap, this.plot);
    this.plot.addEventListener('mousemove', (e) => this.hover(e));
    this.plot.addEventListener('keydown', (e) => this.key(e));
    this.plot.addEventListener('focus', () => {
      activeKey = this.key_;
      renderOverlays();
      renderReadout();
    });
  }

  get key_(): string {
    return `${this.slot}:${this.kind}`;
  }

  matrix(): Float32Array {
    return data!.exits[this.slot][this.kind];
  }

  caption(): void {
    const e = data!.exits[this.slot];
    this.fig.dataset.exit = String(e.exit);
    const cap = this.fig.querySelector('figcaption')!;
    const kind = document.createElement('span');
    kind.className = 'kind';
    kind.textContent = this.shared
      ? `${KIND_TITLE[this.kind]} · exits ${data!.exits.map((x) => x.exit + 1).join(' and ')}`
      : `${KIND_TITLE[this.kind]} · exit ${e.exit + 1} (layer ${e.layer})`;
    const sub = document.createElement('span');
    sub.className = 'sub';
    let extra = KIND_SUB[this.kind];
    // Training weighs every early exit's pairs by how similar the LAST exit finds them.
    if (this.kind !== 'dist')
      extra += this.shared ? ", from the last exit's logits: the same for every exit" : ", from the last exit's logits";
    if (this.kind === 'dist') {
      const { within, between } = blockMeans(this.matrix());
      extra += ` · mean within class ${fmtValue(within)}, between ${fmtValue(between)}`;
    }
    sub.textContent = ` — ${extra}`;
    cap.title = `${kind.textContent}${sub.textContent}`;
    cap.replaceChildren(kind, sub);
    this.plot.setAttribute(
      'aria-label',
      `${kind.textContent}: ${data!.labels.length} by ${data!.labels.length} heatmap. Arrow keys move the cell; the values show beside it.`,
    );
  }

  /** Sizes the canvases for a matrix of at most `room` CSS pixels. */
  layout(room: number): void {
    const n = data!.labels.length;
    const dpr = window.devicePixelRatio || 1;
    // Whole CSS pixels per cell when they fit (crisp squares); below one pixel a cell is averaged.
    const cell = n <= room ? Math.floor(room / n) : room / n;
    const size = cell * n;
    const left = LABEL_W + BAND + 4;
    const top = 18 + BAND + 4;
    const width = Math.ceil(left + size + 2);
    const height = Math.ceil(top + size + 2);
    this.g = { left, top, size, cell, width, height, dpr };
    // The geometry for UI tests (a cell's position to hover).
    Object.assign(this.plot.dataset, { left: String(left), top: String(top), cell: String(cell), n: String(n) });
    for (const c of [this.base, this.over]) {
      c.width = Math.round(width * dpr);
      c.height = Math.round(height * dpr);
      // CSSOM, not a style attribute: CSP style-src does not govern it (the backing store is
      // dpr times larger than the CSS size, for sharp text and cells on high-DPI screens).
      c.style.width = `${width}px`;
      c.style.height = `${height}px`;
    }
  }

  draw(domain: Domain): void {
    const g = this.g!;
    const d = data!;
    const n = d.labels.length;
    const ctx = this.base.getContext('2d', { willReadFrequently: true })!;
    ctx.setTransform(g.dpr, 0, 0, g.dpr, 0, 0);
    ctx.clearRect(0, 0, g.width, g.height);
    // The matrix, one pixel per cell, then scaled.
    const off = new OffscreenCanvas(n, n);
    const octx = off.getContext('2d')!;
    const img = octx.createImageData(n, n);
    const m = this.matrix();
    const L = domain.scale === 'diverging' ? theme.div : theme.seq;
    const px = img.data;
    for (let k = 0; k < n * n; k++) {
      const v = m[k];
      const q = Number.isFinite(v) ? 3 * lutIndex(v, domain) : -1;
      px[4 * k] = q < 0 ? theme.fg[0] : L[q];
      px[4 * k + 1] = q < 0 ? 0 : L[q + 1];
      px[4 * k + 2] = q < 0 ? theme.fg[2] : L[q + 2];
      px[4 * k + 3] = 255;
    }
    octx.putImageData(img, 0, 0);
    ctx.imageSmoothingEnabled = g.cell < 1;
    ctx.imageSmoothingQuality = 'high';
    ctx.drawImage(off, g.left, g.top, g.size, g.size);
    // Class blocks: separators in the background colour, bands and labels along both axes.
    const starts = d.classStarts;
    ctx.strokeStyle = theme.bgCss;
    ctx.lineWidth = 1;
    ctx.beginPath();
    for (let c = 1; c < starts.length - 1; c++) {
      const p = Math.round(g.cell * starts[c]) + 0.5;
      ctx.moveTo(g.left + p, g.top);
      ctx.lineTo(g.left + p, g.top + g.size);
      ctx.moveTo(g.left, g.top + p);
      ctx.lineTo(g.left + g.size, g.top + p);
    }
    ctx.stroke();
    ctx.font = `11px ${cssVar('--vscode-font-family') || 'sans-serif'}`;
    ctx.fillStyle = theme.fgCss;
    ctx.textBaseline = 'middle';
    this.bandLabels = [];
    for (let c = 0; c + 1 < starts.length; c++) {
      const a = g.cell * starts[c];
      const b = g.cell * starts[c + 1];
      if (b <= a) continue;
      const colour = theme.bands[d.labels[starts[c]] % theme.bands.length];
      ctx.fillStyle = colour;
      ctx.fillRect(g.left + a, g.top - BAND - 2, b - a, BAND); // top band
      ctx.fillRect(g.left - BAND - 2, g.top + a, BAND, b - a); // left band
      ctx.fillStyle = theme.fgCss;
      const name = d.classes[d.labels[starts[c]]] ?? String(c);
      const left = fit(ctx, name, LABEL_W - 6);
      const top = fit(ctx, name, b - a - 2);
      if (b - a >= 10 && left) {
        ctx.textAlign = 'right';
        ctx.fillText(left, g.left - BAND - 6, g.top + (a + b) / 2);
      }
      if (top) {
        ctx.textAlign = 'center';
        ctx.fillText(top, g.left + (a + b) / 2, g.top - BAND - 10);
      }
      this.bandLabels.push(left || top || '');
    }
    this.caption();
  }

  drawOverlay(): void {
    const g = this.g;
    if (!g || !data) return;
    const ctx = this.over.getContext('2d')!;
    ctx.setTransform(g.dpr, 0, 0, g.dpr, 0, 0);
    ctx.clearRect(0, 0, g.width, g.height);
    const [i, j] = cursor;
    const x = g.left + j * g.cell;
    const y = g.top + i * g.cell;
    const w = Math.max(g.cell, 1);
    // A faint crosshair along the row and column, and the cell outlined in the foreground colour.
    ctx.globalAlpha = 0.35;
    ctx.fillStyle = theme.fgCss;
    ctx.fillRect(g.left, y + w / 2 - 0.5, g.size, 1);
    ctx.fillRect(x + w / 2 - 0.5, g.top, 1, g.size);
    ctx.globalAlpha = 1;
    const active = activeKey === this.key_;
    ctx.strokeStyle = theme.fgCss;
    ctx.lineWidth = active ? 2 : 1;
    ctx.strokeRect(x - 1, y - 1, w + 2, w + 2);
    ctx.strokeStyle = theme.bgCss;
    ctx.lineWidth = 1;
    ctx.strokeRect(x - (active ? 2.5 : 2), y - (active ? 2.5 : 2), w + (active ? 5 : 4), w + (active ? 5 : 4));
  }

  private hover(e: MouseEvent): void {
    const g = this.g;
    if (!g || !data) return;
    const r = this.over.getBoundingClientRect();
    const x = e.clientX - r.left - g.left;
    const y = e.clientY - r.top - g.top;
    if (x < 0 || y < 0 || x >= g.size || y >= g.size) return;
    const n = data.labels.length;
    setCursor(Math.min(n - 1, Math.floor(y / g.cell)), Math.min(n - 1, Math.floor(x / g.cell)), this.key_);
  }

  private key(e: KeyboardEvent): void {
    if (!data) return;
    const n = data.labels.length;
    let [i, j] = cursor;
    const starts = Array.from(data.classStarts);
    // The start of the next / previous class block after index p.
    const nextBlock = (p: number) => starts.find((s) => s > p && s < n) ?? n - 1;
    const prevBlock = (p: number) => [...starts].reverse().find((s) => s < p) ?? 0;
    switch (e.key) {
      case 'ArrowUp':
        i = e.shiftKey ? prevBlock(i) : i - 1;
        break;
      case 'ArrowDown':
        i = e.shiftKey ? nextBlock(i) : i + 1;
        break;
      case 'ArrowLeft':
        j = e.shiftKey ? prevBlock(j) : j - 1;
        break;
      case 'ArrowRight':
        j = e.shiftKey ? nextBlock(j) : j + 1;
        break;
      case 'PageUp':
        i = prevBlock(i);
        break;
      case 'PageDown':
        i = nextBlock(i);
        break;
      case 'Home':
        if (e.ctrlKey) i = 0;
        j = 0;
        break;
      case 'End':
        if (e.ctrlKey) i = n - 1;
        j = n - 1;
        break;
      default:
        return;
    }
    e.preventDefault();
    setCursor(Math.max(0, Math.min(n - 1, i)), Math.max(0, Math.min(n - 1, j)), this.key_);
  }
}

/** The longest prefix of `s` (with an ellipsis when cut) that fits `w` pixels; '' when none does. */
function fit(ctx: CanvasRenderingContext2D, s: string, w: number): string {
  if (w <= 0) return '';
  if (ctx.measureText(s).width <= w) return s;
  for (let k = s.length - 1; k >= 2; k--) {
    const t = `${s.slice(0, k)}…`;
    if (ctx.measureText(t).width <= w) return t;
  }
  return '';
}

/** Mean over same-class pairs (off the diagonal) and over other-class pairs. */
function blockMeans(m: Float32Array): { within: number; between: number } {
  const lab = data!.labels;
  const n = lab.length;
  let sw = 0;
  let cw = 0;
  let sb = 0;
  let cb = 0;
  for (let i = 0; i < n; i++)
    for (let j = 0; j < n; j++) {
      if (i === j) continue;
      const v = m[i * n + j];
      if (lab[i] === lab[j]) ((sw += v), cw++);
      else ((sb += v), cb++);
    }
  return { within: cw ? sw / cw : NaN, between: cb ? sb / cb : NaN };
}

let maps: Heatmap[] = [];
let domains: Record<MatrixKind, Domain> | null = null;
const grid = $('grid');

/** Whether every exit has the same values in this kind of matrix. */
function sameForAll(kind: MatrixKind): boolean {
  const ex = data!.exits;
  for (let s = 1; s < ex.length; s++) {
    const a = ex[0][kind];
    const b = ex[s][kind];
    if (a.length !== b.length) return false;
    for (let k = 0; k < a.length; k++) if (a[k] !== b[k] && !(Number.isNaN(a[k]) && Number.isNaN(b[k]))) return false;
  }
  return true;
}

let cols = 3;
function build(): void {
  const d = data!;
  maps = [];
  // S^w and S^b come from the last exit's logits, so they are normally the same for every exit:
  // then they are drawn once, and the exits' distance matrices side by side after them.
  if (d.exits.length > 1 && sameForAll('sw') && sameForAll('sb')) {
    maps.push(new Heatmap(0, 'sw', true), new Heatmap(0, 'sb', true));
    for (let s = 0; s < d.exits.length; s++) maps.push(new Heatmap(s, 'dist'));
  } else for (let s = 0; s < d.exits.length; s++) for (const kind of KINDS) maps.push(new Heatmap(s, kind));
  grid.replaceChildren(...maps.map((m) => m.fig));
  domains = {
    sw: domainOf(d.exits.map((e) => e.sw)),
    sb: domainOf(d.exits.map((e) => e.sb)),
    dist: domainOf(d.exits.map((e) => e.dist)),
  };
}

const GAP = 20;
const MIN_ROOM = 150;
function drawAll(): void {
  if (!data || !domains) return;
  // Two columns for four heatmaps (2 x 2), three otherwise (one exit per row), fewer when narrow.
  const W = grid.clientWidth || 900;
  cols = maps.length === 4 ? 2 : 3;
  while (cols > 1 && (W - (cols - 1) * GAP) / cols < MIN_ROOM + LABEL_W + BAND + 12) cols--;
  grid.className = `cols-${cols}`;
  const rows = Math.ceil(maps.length / cols);
  const byWidth = (W - (cols - 1) * GAP) / cols - LABEL_W - BAND - 12;
  // Fit the panel's height too, so that every heatmap is on screen at once (down to MIN_ROOM).
  const byHeight = (window.innerHeight - grid.getBoundingClientRect().top - window.scrollY - 16) / rows - 60;
  const room = Math.max(MIN_ROOM, Math.min(440, byWidth, byHeight));
  for (const m of maps) {
    m.layout(room);
    m.draw(domains[m.kind]);
    m.drawOverlay();
  }
  renderScales();
}

function renderScales(): void {
  const box = $('scales');
  if (!domains) return box.replaceChildren();
  box.replaceChildren(
    ...KINDS.map((kind) => {
      const d = domains![kind];
      const div = document.createElement('div');
      div.className = 'scale';
      div.dataset.kind = kind;
      const name = document.createElement('span');
      name.textContent = KIND_TITLE[kind];
      const c = document.createElement('canvas');
      c.width = 160;
      c.height = 10;
      c.setAttribute('role', 'img');
      c.setAttribute(
        'aria-label',
        `${KIND_TITLE[kind]} colour scale, ${d.scale}, ${fmtValue(d.lo)} to ${fmtValue(d.hi)}`,
      );
      const ctx = c.getContext('2d')!;
      for (let x = 0; x < 160; x++) {
        const v = d.lo + ((d.hi - d.lo) * (x + 0.5)) / 160;
        ctx.fillStyle = `rgb(${colourOf(v, d).join(',')})`;
        ctx.fillRect(x, 0, 1, 10);
      }
      const lo = document.createElement('span');
      lo.className = 'ends';
      lo.textContent = fmtValue(d.lo);
      const hi = document.createElement('span');
      hi.className = 'ends';
      hi.textContent = fmtValue(d.hi);
      div.append(name, lo, c, hi);
      if (d.scale === 'diverging') {
        const mid = document.createElement('span');
        mid.className = 'ends';
        mid.textContent = '(0 at the centre)';
        div.append(mid);
      }
      return div;
    }),
  );
}

function renderOverlays(): void {
  for (const m of maps) m.drawOverlay();
}

function setCursor(i: number, j: number, from?: string): void {
  if (from) activeKey = from;
  if (cursor[0] === i && cursor[1] === j && !from) return;
  const changed = cursor[0] !== i || cursor[1] !== j;
  cursor = [i, j];
  renderOverlays();
  renderReadout();
  if (changed) {
    state = { ...state, cursor };
    vscode.setState(state);
    postState();
  }
}

// ---- Readout ----

interface ReadoutValue {
  exit: number;
  kind: MatrixKind;
  text: string;
}

function imageBox(cls: string, idx: number, role: string): HTMLElement {
  const d = data!;
  const box = document.createElement('div');
  box.className = 'img';
  const file = d.files[idx];
  const base = file.split(/[\\/]/).pop() ?? file;
  const src = d.thumbs[idx];
  if (src) {
    const img = document.createElement('img');
    img.className = cls;
    img.src = src;
    img.alt = `${role}: ${base}`;
    box.appendChild(img);
  } else {
    const none = document.createElement('span');
    none.className = `${cls} empty`;
    none.textContent = '(no image)';
    box.appendChild(none);
  }
  const label = document.createElement('span');
  label.className = 'label';
  label.textContent = `${role} ${idx + 1}: ${d.classes[d.labels[idx]]}`;
  const name = document.createElement('span');
  name.className = 'file';
  name.textContent = base;
  name.title = file;
  box.append(label, name);
  return box;
}

let readoutValues: ReadoutValue[] = [];
function renderReadout(): void {
  const box = $('readout');
  if (!data) return;
  const [i, j] = cursor;
  const n = data.labels.length;
  const pair = document.createElement('div');
  pair.className = 'pair';
  pair.append(imageBox('row-img', i, 'row'), imageBox('col-img', j, 'column'));
  const rel = document.createElement('p');
  rel.className = 'relation';
  rel.textContent = i === j ? 'the same image' : data.labels[i] === data.labels[j] ? 'same class' : 'different classes';
  const table = document.createElement('table');
  table.id = 'readout-values';
  const head = document.createElement('tr');
  head.append(th(''), ...data.exits.map((e) => th(`exit ${e.exit + 1}`)));
  table.appendChild(head);
  readoutValues = [];
  for (const kind of KINDS) {
    const tr = document.createElement('tr');
    tr.dataset.kind = kind;
    tr.append(th(KIND_TITLE[kind]));
    data.exits.forEach((e, s) => {
      const td = document.createElement('td');
      const text = fmtValue(e[kind][i * n + j]);
      td.textContent = text;
      td.dataset.exit = String(e.exit);
      if (activeKey === `${s}:${kind}`) td.className = 'active';
      readoutValues.push({ exit: e.exit, kind, text });
      tr.appendChild(td);
    });
    table.appendChild(tr);
  }
  const where = document.createElement('p');
  where.className = 'hint';
  where.textContent = `cell (${i + 1}, ${j + 1}) of ${n} × ${n}`;
  box.replaceChildren(pair, rel, table, where);
}

function th(text: string): HTMLTableCellElement {
  const e = document.createElement('th');
  e.textContent = text;
  return e;
}

// ---- State for the host ----

function matrixSnapshot(m: Heatmap): RenderedMatrix {
  const d = data!;
  const n = d.labels.length;
  const a = m.matrix();
  let sum = 0;
  let wsum = 0;
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < n; i++)
    for (let j = 0; j < n; j++) {
      const v = a[i * n + j];
      sum += v;
      wsum += v * (((31 * i + 17 * j) % 13) + 1);
      if (v < min) min = v;
      if (v > max) max = v;
    }
  const probes: [number, number][] = [
    [0, 0],
    [0, n - 1],
    [n - 1, 0],
    [n - 1, n - 1],
    [Math.floor(n / 2), Math.floor(n / 3)],
    cursor,
  ];
  const dom = domains![m.kind];
  let pixel: number[] = [];
  const g = m.g;
  if (g) {
    const ctx = m.base.getContext('2d', { willReadFrequently: true })!;
    const x = Math.floor((g.left + (cursor[1] + 0.5) * g.cell) * g.dpr);
    const y = Math.floor((g.top + (cursor[0] + 0.5) * g.cell) * g.dpr);
    pixel = Array.from(ctx.getImageData(x, y, 1, 1).data.slice(0, 3));
  }
  return {
    exit: d.exits[m.slot].exit,
    kind: m.kind,
    n,
    sum,
    weightedSum: wsum,
    min,
    max,
    scale: dom.scale,
    domain: [dom.lo, dom.hi],
    cells: probes.map(([i, j]) => [i, j, a[i * n + j]]),
    pixel,
    expectedPixel: colourOf(a[cursor[0] * n + cursor[1]], dom),
  };
}

function postState(): void {
  let rendered: SimRendered | null = null;
  if (data) {
    const [i, j] = cursor;
    rendered = {
      seq: data.seq,
      settings: data.settings,
      n: data.labels.length,
      files: data.files,
      labels: Array.from(data.labels),
      classStarts: Array.from(data.classStarts),
      matrices: maps.map(matrixSnapshot),
      gr: data.exits.map((e) => e.gr),
      readout: {
        i,
        j,
        rowLabel: data.classes[data.labels[i]],
        colLabel: data.classes[data.labels[j]],
        rowImage:
          (document.querySelector('#readout img.row-img') as HTMLImageElement | null)?.getAttribute('src') ?? null,
        colImage:
          (document.querySelector('#readout img.col-img') as HTMLImageElement | null)?.getAttribute('src') ?? null,
        values: readoutValues,
      },
      bandLabels: maps[0]?.bandLabels ?? [],
    };
  }
  vscode.postMessage({ type: 'state', state, rendered, error });
}

function setStatus(status: string, text: string): void {
  root.dataset.status = status;
  statusText.textContent = text;
}

function render(): void {
  if (!data) return;
  const n = data.labels.length;
  cursor = [Math.min(cursor[0], n - 1), Math.min(cursor[1], n - 1)];
  build();
  drawAll();
  renderReadout();
  const s = data.settings;
  setStatus(
    'ready',
    `${n} images (${s.perClass} per class, ${s.split} split) · engine ${(data.ms / 1000).toFixed(1)} s`,
  );
  state = { runDir, settings: s, cursor };
  vscode.setState(state);
  postState();
}

window.addEventListener('message', (ev: MessageEvent<SimHostMessage>) => {
  const m = ev.data;
  switch (m.type) {
    case 'init':
      run = m.run;
      $('run-name').textContent = m.run.name;
      $('run-meta').textContent =
        `${m.run.classes.length} classes · exits after layers ${m.run.layers.join(', ')} · ${m.run.variant} · similarity clamp ${m.run.simClamp}`;
      fillControls(m.run, m.settings);
      state = { ...state, settings: m.settings };
      vscode.setState(state);
      break;
    case 'computing':
      lastSeq = Math.max(lastSeq, m.seq);
      showSettings(m.settings);
      setStatus('computing', `computing ${m.settings.perClass} per class from the ${m.settings.split} split…`);
      break;
    case 'result':
      if (m.seq < lastSeq) return;
      lastSeq = m.seq;
      data = m;
      error = null;
      if (run) showSettings(m.settings);
      render();
      break;
    case 'error':
      if (m.seq < lastSeq) return;
      lastSeq = m.seq;
      error = m.message;
      setStatus('error', m.message);
      postState();
      break;
    case 'focusCell':
      if (data)
        setCursor(
          Math.max(0, Math.min(data.labels.length - 1, m.i)),
          Math.max(0, Math.min(data.labels.length - 1, m.j)),
          activeKey || '0:sw',
        );
      postState();
      break;
  }
});

// Redraw on resize, and with new colours when the theme changes (VS Code rewrites the <html>
// style's variables and the body's theme class).
let resizeTimer: ReturnType<typeof setTimeout> | undefined;
new ResizeObserver(() => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(() => drawAll(), 80);
}).observe(grid);
new MutationObserver(() => {
  const t = readTheme();
  if (t.key === theme.key) return;
  theme = t;
  drawAll();
  if (data) postState();
}).observe(document.documentElement, { attributes: true, attributeFilter: ['style', 'class'], subtree: false });
new MutationObserver(() => {
  const t = readTheme();
  if (t.key === theme.key) return;
  theme = t;
  drawAll();
}).observe(document.body, { attributes: true, attributeFilter: ['class'] });

vscode.postMessage({ type: 'ready' });
