// The embeddings view: where a class-balanced sample of a run's images lies at every exit, one
// scatter per exit (small multiples), from the engine's 'embeddings/compute' (EmbeddingsResult,
// src/engine/explore/embeddings.ts: each exit's head inputs z_j = LN_f(c_j) on their first two
// principal axes). Pure DOM + SVG, no VS Code API and no panel assumptions: Inspect exits shows
// it for its run with the selected image highlighted; a compare-runs panel can show two side by
// side (e.g. `met` and `no_gr`), each in its own container.
//
// API
//   const view = renderEmbeddings(container, result, {
//     highlightFile?: string,        // drawn larger with an outline at every exit (sample or extra)
//     title?: string,                // a heading above the plots (e.g. the run's name)
//     onPick?: (file) => void,       // Enter, Space or a click on a point (Inspect: select that image)
//     nameOf?: (file) => string,     // how the readout names a file (default: class folder/file)
//     onActive?: (file?) => void,    // the point under the keyboard or mouse changed (undefined: none)
//   });
//   view.setHighlight(file?)         // move the highlight without rebuilding
//   view.setActive(file?)            // put the cursor on a file's point (two views kept in step)
//   view.snapshot({ points? })       // what is drawn (EmbeddingsSnapshot), for tests
//   view.dispose()                   // removes the view and its listeners
// `container`'s children are replaced. The module imports its CSS (embeddings.css), so a panel
// that imports it gets the styles in its bundle.
//
// Drawing: each exit has its own scale (PCA units differ by exit) with the same units on both
// axes, so a wider spread along PC1 than PC2 shows as such; dashed lines mark the origin (the
// sample's mean). Axis titles say the share of variance each axis explains. Classes: colour
// k % 6 (the theme's chart colours) and shape (k + ⌊k/6⌋) % 4, distinct for 24 classes, with
// neighbouring classes differing in both. `extra` points (images placed on the sample's axes,
// not part of it) are drawn with an outline.
//
// Keyboard: each plot is focusable; the arrow keys move to the nearest point in that direction,
// Home / End to the first / last point, Enter or Space picks it, Escape clears. The point under
// the keyboard (or the mouse) is ringed at every exit, so one follows an image through the
// depths, and the readout (aria-live) names its file, class and coordinates.

import './embeddings.css';
import type { EmbeddingsResult } from '../../src/engine/explore/types';
import type { EmbeddingsSnapshot } from './embeddingsSnapshot';
import { svgEl } from './svg';

export type { EmbeddingsSnapshot };

export interface EmbeddingsOptions {
  highlightFile?: string;
  title?: string;
  onPick?: (file: string) => void;
  nameOf?: (file: string) => string;
  onActive?: (file: string | undefined) => void;
}

export interface EmbeddingsView {
  readonly root: HTMLElement;
  setHighlight(file?: string): void;
  setActive(file?: string): void;
  /** `points: false` leaves `drawn` empty (it holds 2 numbers per point and exit). */
  snapshot(o?: { points?: boolean }): EmbeddingsSnapshot;
  dispose(): void;
}

// Plot geometry in SVG user units (the SVG scales to its column's width).
const L = 22; // room for the rotated PC2 title
const T = 6;
const P = 208; // the square plot area
const W = L + P + 6;
const H = T + P + 22; // room for the PC1 title

const SHAPES = ['circle', 'square', 'triangle', 'diamond'] as const;
/** Colour and shape class of class k (-1: none). */
const colourOf = (k: number) => (k < 0 ? 'kx' : `k${k % 6}`);
const shapeOf = (k: number) => (k < 0 ? 0 : (k + Math.floor(k / 6)) % 4);

/** A marker centred on the origin, `r` its radius (the shapes have about equal area). */
function markerPath(shape: number, r: number): string {
  const f = (x: number) => +x.toFixed(2);
  switch (SHAPES[shape]) {
    case 'square':
      return `M${f(-0.88 * r)} ${f(-0.88 * r)}H${f(0.88 * r)}V${f(0.88 * r)}H${f(-0.88 * r)}Z`;
    case 'triangle':
      return `M0 ${f(-1.25 * r)}L${f(1.15 * r)} ${f(0.8 * r)}H${f(-1.15 * r)}Z`;
    case 'diamond':
      return `M0 ${f(-1.2 * r)}L${f(1.2 * r)} 0L0 ${f(1.2 * r)}L${f(-1.2 * r)} 0Z`;
    default:
      return `M${f(-r)} 0a${f(r)} ${f(r)} 0 1 0 ${f(2 * r)} 0a${f(r)} ${f(r)} 0 1 0 ${f(-2 * r)} 0Z`;
  }
}

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
const num = (x: number) => (Math.abs(x) >= 100 ? x.toFixed(0) : Math.abs(x) >= 10 ? x.toFixed(1) : x.toFixed(2));
const defaultName = (f: string) => f.split(/[\\/]/).slice(-2).join('/');

let views = 0;

interface Plot {
  fig: HTMLElement;
  svg: SVGSVGElement;
  /** Highlight and cursor layers, redrawn on their own. */
  over: SVGGElement;
  /** [N] pixel (user-unit) positions of every point. */
  px: Float64Array;
  py: Float64Array;
  cx: number;
  cy: number;
  half: number;
  axes: [string, string];
}

export function renderEmbeddings(
  container: HTMLElement,
  result: EmbeddingsResult,
  o: EmbeddingsOptions = {},
): EmbeddingsView {
  const id = `emb-${++views}`;
  const nameOf = o.nameOf ?? defaultName;
  const n = result.sample.length;
  const points = [...result.sample, ...result.extra];
  const N = points.length;
  const C = result.classes.length;
  const className = (k: number) => (k >= 0 && k < C ? result.classes[k] : 'no class');
  let highlight = -1;
  let active = -1;

  const root = document.createElement('div');
  root.className = 'emb';
  root.id = id;
  if (o.title) {
    const h = document.createElement('h3');
    h.className = 'emb-title';
    h.textContent = o.title;
    root.appendChild(h);
  }
  const note = document.createElement('p');
  note.className = 'emb-note';
  note.textContent = `${n} images of the ${result.split} split (up to ${result.perClass} per class, seed ${result.seed}), the same at every exit; each exit's head inputs on their first two principal axes.`;
  root.appendChild(note);

  // Legend: marker, class, images in the sample.
  const legend = document.createElement('ul');
  legend.className = 'emb-legend';
  legend.setAttribute('aria-label', 'Classes');
  const counts = new Array<number>(C).fill(0);
  for (const s of result.sample) if (s.label >= 0 && s.label < C) counts[s.label]++;
  result.classes.forEach((name, k) => {
    const li = document.createElement('li');
    li.dataset.class = name;
    const sw = svgEl('svg', { viewBox: '-6 -6 12 12', 'aria-hidden': 'true' }, li);
    svgEl('path', { class: `pt ${colourOf(k)}`, d: markerPath(shapeOf(k), 4.2) }, sw);
    const t = document.createElement('span');
    t.textContent = name;
    const c = document.createElement('span');
    c.className = 'count';
    c.textContent = String(counts[k]);
    li.append(t, c);
    legend.appendChild(li);
  });
  root.appendChild(legend);

  const grid = document.createElement('div');
  grid.className = 'emb-grid';
  root.appendChild(grid);
  const readout = document.createElement('div');
  readout.className = 'emb-readout';
  readout.id = `${id}-readout`;
  readout.setAttribute('role', 'status');
  readout.setAttribute('aria-live', 'polite');
  root.appendChild(readout);

  const r0 = Math.max(2, Math.min(4, 4 * Math.sqrt(120 / Math.max(1, N))));
  const plots: Plot[] = result.exits.map((e) => {
    const xs = [...e.coords, ...e.extraCoords];
    let x0 = Infinity;
    let x1 = -Infinity;
    let y0 = Infinity;
    let y1 = -Infinity;
    for (let i = 0; i < N; i++) {
      x0 = Math.min(x0, xs[2 * i]);
      x1 = Math.max(x1, xs[2 * i]);
      y0 = Math.min(y0, xs[2 * i + 1]);
      y1 = Math.max(y1, xs[2 * i + 1]);
    }
    const cx = N ? (x0 + x1) / 2 : 0;
    const cy = N ? (y0 + y1) / 2 : 0;
    const half = Math.max(x1 - x0, y1 - y0, 1e-12) * 0.54;
    const sx = (x: number) => L + P / 2 + ((x - cx) / half) * (P / 2);
    const sy = (y: number) => T + P / 2 - ((y - cy) / half) * (P / 2);
    const fig = document.createElement('figure');
    fig.dataset.exit = String(e.exit);
    const cap = document.createElement('figcaption');
    const ex = document.createElement('span');
    ex.className = 'exit';
    ex.textContent = `Exit ${e.exit + 1}`;
    const sub = document.createElement('span');
    sub.className = 'sub';
    sub.textContent = ` · layer ${e.layer}`;
    cap.append(ex, sub);
    cap.title = `Exit ${e.exit + 1} (layer ${e.layer}): PC1 and PC2 hold ${pct(e.explained[0] + e.explained[1])} of the head inputs' variance`;
    const axes: [string, string] = [`PC1 (${pct(e.explained[0])})`, `PC2 (${pct(e.explained[1])})`];
    const svg = svgEl('svg', {
      class: 'emb-plot',
      viewBox: `0 0 ${W} ${H}`,
      tabindex: 0,
      role: 'application',
      'aria-roledescription': 'scatter plot',
      'aria-label': `Exit ${e.exit + 1}, layer ${e.layer}: ${n} images on ${axes[0]} and ${axes[1]}. Arrow keys move between points${o.onPick ? ', Enter selects the image' : ''}.`,
      'aria-describedby': readout.id,
    });
    // The origin (the sample's mean) when it is in view.
    const origin = svgEl('g', { class: 'emb-origin', 'aria-hidden': 'true' }, svg);
    if (sx(0) >= L && sx(0) <= L + P)
      svgEl('line', { x1: sx(0).toFixed(2), x2: sx(0).toFixed(2), y1: T, y2: T + P }, origin);
    if (sy(0) >= T && sy(0) <= T + P)
      svgEl('line', { x1: L, x2: L + P, y1: sy(0).toFixed(2), y2: sy(0).toFixed(2) }, origin);
    svgEl('text', { class: 'emb-axis', x: L + P / 2, y: T + P + 16, 'text-anchor': 'middle' }, svg).textContent =
      axes[0];
    svgEl(
      'text',
      { class: 'emb-axis', x: 0, y: 0, 'text-anchor': 'middle', transform: `translate(14 ${T + P / 2}) rotate(-90)` },
      svg,
    ).textContent = axes[1];
    const px = new Float64Array(N);
    const py = new Float64Array(N);
    const layer = svgEl('g', { class: 'emb-points', 'aria-hidden': 'true' }, svg);
    // Classes interleaved by sample order would hide the last class under the others: draw in
    // sample order (class-sorted), then the extra points on top.
    for (let i = 0; i < N; i++) {
      px[i] = +sx(xs[2 * i]).toFixed(2);
      py[i] = +sy(xs[2 * i + 1]).toFixed(2);
      const k = points[i].label;
      svgEl(
        'path',
        {
          class: `pt ${colourOf(k)}${i >= n ? ' extra' : ''}`,
          d: markerPath(shapeOf(k), i >= n ? r0 * 1.4 : r0),
          transform: `translate(${px[i]} ${py[i]})`,
        },
        layer,
      );
    }
    const over = svgEl('g', { class: 'emb-over', 'aria-hidden': 'true' }, svg);
    fig.append(cap, svg);
    grid.appendChild(fig);
    return { fig, svg, over, px, py, cx, cy, half, axes };
  });

  /** Highlight and cursor, at every exit. */
  function drawOver(): void {
    for (const p of plots) {
      p.over.replaceChildren();
      if (highlight >= 0) {
        const k = points[highlight].label;
        svgEl(
          'path',
          {
            class: `pt hl ${colourOf(k)}`,
            d: markerPath(shapeOf(k), 6),
            transform: `translate(${p.px[highlight]} ${p.py[highlight]})`,
          },
          p.over,
        );
        svgEl('circle', { class: 'hl-ring', cx: p.px[highlight], cy: p.py[highlight], r: 10.5 }, p.over);
      }
      if (active >= 0)
        svgEl(
          'circle',
          { class: 'cursor', cx: p.px[active], cy: p.py[active], r: active === highlight ? 14 : 7.5 },
          p.over,
        );
    }
  }

  let focusedPlot = 0;
  function readoutText(): string {
    if (active < 0)
      return `Hover a point, or focus a plot and use the arrow keys${o.onPick ? '; Enter selects the image' : ''}.`;
    const pt = points[active];
    const e = result.exits[focusedPlot];
    const xy = active < n ? e.coords : e.extraCoords;
    const j = active < n ? active : active - n;
    const tags = [active >= n ? 'not in the sample, placed on its axes' : '', active === highlight ? 'selected' : '']
      .filter(Boolean)
      .join(', ');
    return `${nameOf(pt.file)} · ${className(pt.label)} · exit ${e.exit + 1}: PC1 ${num(xy[2 * j])}, PC2 ${num(xy[2 * j + 1])}${tags ? ` (${tags})` : ''}`;
  }
  function renderReadout(): void {
    readout.replaceChildren();
    if (active < 0) {
      readout.textContent = readoutText();
      return;
    }
    // The class in bold; the same text as readoutText otherwise.
    const text = readoutText();
    const cls = className(points[active].label);
    const at = text.indexOf(` · ${cls} · `);
    if (at < 0) {
      readout.textContent = text;
      return;
    }
    const b = document.createElement('span');
    b.className = 'cls';
    b.textContent = cls;
    readout.append(text.slice(0, at + 3), b, text.slice(at + 3 + cls.length));
  }
  function setActive(i: number, notify = true): void {
    active = i;
    drawOver();
    renderReadout();
    if (notify) o.onActive?.(i >= 0 ? points[i].file : undefined);
  }

  /** The nearest point from `from` in the direction of an arrow key (screen coordinates of plot p). */
  function step(p: Plot, from: number, key: string): number {
    const dir = { ArrowRight: [1, 0], ArrowLeft: [-1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] }[key];
    if (!dir) return from;
    let best = from;
    let bestScore = Infinity;
    for (let i = 0; i < N; i++) {
      if (i === from) continue;
      const dx = p.px[i] - p.px[from];
      const dy = p.py[i] - p.py[from];
      const along = dx * dir[0] + dy * dir[1];
      const across = Math.abs(dx * dir[1] - dy * dir[0]);
      // Ahead only; off-axis points cost twice their offset (a cone, softly).
      if (along <= 0 && !(along === 0 && across === 0 && i > from)) continue;
      const score = along + 2 * across;
      if (score < bestScore) ((bestScore = score), (best = i));
    }
    return best;
  }

  const listeners: (() => void)[] = [];
  const on = <K extends keyof SVGElementEventMap>(
    el: SVGSVGElement,
    type: K,
    f: (ev: SVGElementEventMap[K]) => void,
  ): void => {
    el.addEventListener(type, f as EventListener);
    listeners.push(() => el.removeEventListener(type, f as EventListener));
  };
  /** The point nearest the mouse within 12 user units, or -1. */
  function hit(p: Plot, ev: MouseEvent): number {
    const m = p.svg.getScreenCTM();
    if (!m) return -1;
    const pt = new DOMPoint(ev.clientX, ev.clientY).matrixTransform(m.inverse());
    let best = -1;
    let bd = 144;
    for (let i = 0; i < N; i++) {
      const d = (p.px[i] - pt.x) ** 2 + (p.py[i] - pt.y) ** 2;
      if (d < bd) ((bd = d), (best = i));
    }
    return best;
  }
  plots.forEach((p, at) => {
    on(p.svg, 'keydown', (ev) => {
      if (!N) return;
      focusedPlot = at;
      let next = active;
      if (ev.key === 'Home') next = 0;
      else if (ev.key === 'End') next = N - 1;
      else if (ev.key === 'Escape') next = -1;
      else if (ev.key === 'Enter' || ev.key === ' ') {
        if (active >= 0 && o.onPick) o.onPick(points[active].file);
        ev.preventDefault();
        return;
      } else if (ev.key.startsWith('Arrow'))
        next = active < 0 ? (highlight >= 0 ? highlight : 0) : step(p, active, ev.key);
      else return;
      ev.preventDefault();
      setActive(next);
    });
    on(p.svg, 'focus', () => {
      focusedPlot = at;
      renderReadout();
    });
    on(p.svg, 'mousemove', (ev) => {
      const i = hit(p, ev);
      focusedPlot = at;
      if (i >= 0 && i !== active) setActive(i);
    });
    on(p.svg, 'click', (ev) => {
      const i = hit(p, ev);
      if (i >= 0 && o.onPick) o.onPick(points[i].file);
    });
  });

  function setHighlight(file?: string): void {
    highlight = file === undefined ? -1 : points.findIndex((x) => x.file === file);
    drawOver();
    renderReadout();
  }

  function snapshot(so: { points?: boolean } = {}): EmbeddingsSnapshot {
    return {
      n,
      extra: N - n,
      files: points.map((x) => x.file),
      exits: plots.map((p, j) => {
        const drawn: number[] = [];
        const els = p.svg.querySelectorAll('g.emb-points path.pt');
        if (so.points !== false)
          els.forEach((el) => {
            const m = /translate\(([-\d.e]+) ([-\d.e]+)\)/.exec(el.getAttribute('transform') ?? '');
            const x = m ? Number(m[1]) : NaN;
            const y = m ? Number(m[2]) : NaN;
            drawn.push(p.cx + ((x - L - P / 2) / (P / 2)) * p.half, p.cy - ((y - T - P / 2) / (P / 2)) * p.half);
          });
        return {
          exit: result.exits[j].exit,
          layer: result.exits[j].layer,
          axes: p.axes,
          points: els.length,
          drawn,
          halfRange: p.half,
        };
      }),
      highlight: highlight >= 0 ? { file: points[highlight].file, index: highlight, extra: highlight >= n } : null,
      active,
      readout: readout.textContent ?? '',
    };
  }

  container.replaceChildren(root);
  setHighlight(o.highlightFile);
  return {
    root,
    setHighlight,
    setActive: (file?: string) => setActive(file === undefined ? -1 : points.findIndex((x) => x.file === file), false),
    snapshot,
    dispose() {
      listeners.splice(0).forEach((f) => f());
      root.remove();
    },
  };
}
