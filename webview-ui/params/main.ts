// The parameter-counts webview (bundled by esbuild into dist/webview/params.js). Bars are SVG
// built through the DOM and styled only by classes from params.css (theme variables, no inline
// styles); every bar is focusable with its numbers in a <title> and aria-label.
//
// Flow: keep the source in setState at once (a reload revives the panel from it), post 'ready',
// receive 'computing' / 'report' / 'error'; after each render, post 'state' with the texts shown.

import './params.css';
import { $, vscodeApi } from '../common/vscode';
import { svgEl as el } from '../common/svg';
import type {
  ParamsHostMessage,
  ParamsNumbers,
  ParamsRendered,
  ParamsSource,
  ParamsState,
  ParamsWebviewMessage,
} from './protocol';

const vscode = vscodeApi<ParamsWebviewMessage, ParamsState>();
const root = $('met-params');
const source: ParamsSource = {
  kind: root.dataset.kind === 'run' ? 'run' : 'config',
  path: root.dataset.source ?? '',
  name: root.dataset.name ?? '',
};
const state: ParamsState = { source };
vscode.setState(state);

let numbers: ParamsNumbers | null = null;
let seq = 0;
let error: string | null = null;

// ---- Formatting (the CodeLens and `met params` print the same) ----
export const int = (n: number) => n.toLocaleString('en-US');
/** Percent: two decimals, or two significant digits below 0.1 %. */
export const fmtPercent = (x: number) => (x >= 0.1 ? x.toFixed(2) : x.toPrecision(2));
/** GFLOPs: three significant digits, whole numbers from 100 on. */
export const fmtGflops = (x: number) => (x >= 100 ? x.toFixed(0) : x.toPrecision(3));
const share = (x: number, of: number) => (of > 0 ? `${fmtPercent((100 * x) / of)}%` : '–');
/** Compact counts on the bars: 1.23k, 4.5M. */
function compact(n: number): string {
  if (n < 1000) return String(n);
  for (const [d, s] of [
    [1e9, 'G'],
    [1e6, 'M'],
    [1e3, 'k'],
  ] as const)
    // Trailing zeros after the decimal point only ('100' stays, '1.50' -> '1.5', '2.00' -> '2').
    if (n >= d)
      return `${(n / d)
        .toPrecision(3)
        .replace(/(\.\d*?)0+$/, '$1')
        .replace(/\.$/, '')}${s}`;
  return String(n);
}

function clear(svg: Element): void {
  while (svg.firstChild) svg.removeChild(svg.firstChild);
}
const widthOf = (svg: SVGSVGElement) =>
  Math.max(280, Math.floor(svg.clientWidth || svg.parentElement?.clientWidth || 560));

/** A focusable bar group: the numbers are in its <title> (hover) and aria-label (screen readers). */
function barGroup(parent: Element, label: string, attrs: Record<string, string | number>): SVGGElement {
  const g = el('g', { class: 'bar', tabindex: 0, role: 'img', 'aria-label': label, ...attrs }, parent);
  el('title', {}, g).textContent = label;
  return g;
}

// ---- Renderers ----

const GROUP_CLASS = ['frozen', 'g1', 'g2', 'g3', 'g4'];

function renderCards(n: ParamsNumbers): Record<string, string> {
  const cards: [string, string, string, string][] = [
    [
      'trainable',
      'Trainable',
      int(n.trainable),
      `MET adapters ${int(n.metAdapters)} + heads ${int(n.groups.params[4])}`,
    ],
    ['percent', 'Of the backbone', `${fmtPercent(n.trainablePercent)}%`, 'trainable / frozen backbone'],
    ['backbone', 'Frozen backbone', int(n.backbone), `${n.model.name}, without its own head`],
    ['total', 'Total', int(n.total), `stored trainable values: ${int(n.storedTrainable)}`],
    [
      'reduction',
      'Saved vs independent adapters',
      n.reduction === null ? 'n/a' : `${(100 * n.reduction).toFixed(1)}%`,
      n.reductionLimit === null
        ? 'no adapters (linear probe)'
        : `limit ${(100 * n.reductionLimit).toFixed(1)}% (D ≫ r)`,
    ],
  ];
  $('cards').replaceChildren(
    ...cards.map(([key, label, value, sub]) => {
      const d = document.createElement('div');
      d.className = 'card';
      d.dataset.key = key;
      const l = document.createElement('span');
      l.className = 'label';
      l.textContent = label;
      const v = document.createElement('span');
      v.className = 'value';
      v.textContent = value;
      const s = document.createElement('span');
      s.className = 'sub';
      s.textContent = sub;
      d.append(l, v, s);
      return d;
    }),
  );
  return Object.fromEntries(cards.map(([k, , v]) => [k, v]));
}

/** Horizontal bars on a log10 axis: the backbone (millions) and a diagonal (tens) on one chart. */
function renderGroupBars(n: ParamsNumbers): ParamsRendered['groups'] {
  const svg = $<SVGSVGElement>('group-bars');
  clear(svg);
  const W = widthOf(svg);
  const rowH = 26;
  const m = { l: 150, r: 150, t: 6, b: 24 };
  const names = n.groups.names;
  const H = m.t + names.length * rowH + m.b;
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  svg.setAttribute('height', String(H));
  const vals = Array.from(n.groups.params);
  const maxExp = Math.ceil(Math.log10(Math.max(10, ...vals)));
  const pw = W - m.l - m.r;
  const X = (v: number) => m.l + (v <= 1 ? 0 : (Math.log10(v) / maxExp) * pw);
  const grid = el('g', { class: 'grid' }, svg);
  for (let e = 0; e <= maxExp; e++) {
    el('line', { x1: X(10 ** e), x2: X(10 ** e), y1: m.t, y2: H - m.b + 4 }, grid);
    el('text', { x: X(10 ** e), y: H - 6, 'text-anchor': 'middle', class: 'tick' }, grid).textContent = compact(
      10 ** e,
    );
  }
  const trainable = n.trainable;
  const out: ParamsRendered['groups'] = [];
  names.forEach((name, i) => {
    const v = vals[i];
    const y = m.t + i * rowH;
    const shareText = n.groups.trainable[i] ? share(v, trainable) : `${fmtPercent((100 * v) / n.total)}% of all`;
    const g = barGroup(
      svg,
      `${name}: ${int(v)} parameters${n.groups.trainable[i] ? ` (${shareText} of the trainable)` : ' (frozen)'}`,
      { 'data-group': i },
    );
    el(
      'text',
      { x: m.l - 8, y: y + rowH / 2, 'text-anchor': 'end', 'dominant-baseline': 'middle', class: 'name' },
      g,
    ).textContent = name;
    el(
      'rect',
      {
        x: m.l,
        y: y + 4,
        width: Math.max(v > 0 ? 2 : 0, X(v) - m.l),
        height: rowH - 8,
        class: `fill ${GROUP_CLASS[i]}`,
      },
      g,
    );
    el('text', { x: X(v) + 6, y: y + rowH / 2, 'dominant-baseline': 'middle', class: 'value' }, g).textContent =
      `${int(v)}${n.groups.trainable[i] ? ` · ${shareText}` : ' · frozen'}`;
    out.push({ name, params: int(v), share: shareText });
  });
  return out;
}

/** One 100 % bar split by the trainable groups (linear: what the trainable budget is spent on). */
function renderShareBar(n: ParamsNumbers): void {
  const svg = $<SVGSVGElement>('share-bar');
  clear(svg);
  const W = widthOf(svg);
  const H = 26;
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  svg.setAttribute('height', String(H));
  let x = 0;
  const legend: HTMLLIElement[] = [];
  for (let i = 1; i < n.groups.names.length; i++) {
    const v = n.groups.params[i];
    if (!v) continue;
    const w = (v / n.trainable) * W;
    const label = `${n.groups.names[i]}: ${int(v)} (${share(v, n.trainable)} of the trainable)`;
    const g = barGroup(svg, label, { 'data-group': i });
    el('rect', { x, y: 2, width: Math.max(1, w), height: H - 4, class: `fill ${GROUP_CLASS[i]}`, 'data-group': i }, g);
    if (w > 44)
      el(
        'text',
        { x: x + w / 2, y: H / 2, 'text-anchor': 'middle', 'dominant-baseline': 'middle', class: 'inbar' },
        g,
      ).textContent = share(v, n.trainable);
    x += w;
    const li = document.createElement('li');
    const sw = el('svg', { width: 12, height: 12, 'aria-hidden': 'true' });
    el('rect', { x: 0, y: 0, width: 12, height: 12, class: `fill ${GROUP_CLASS[i]}` }, sw);
    li.append(sw, document.createTextNode(`${n.groups.names[i]} ${share(v, n.trainable)}`));
    legend.push(li);
  }
  $('share-legend').replaceChildren(...legend);
}

function renderAdapterBars(n: ParamsNumbers): void {
  const svg = $<SVGSVGElement>('adapter-bars');
  clear(svg);
  const W = widthOf(svg);
  const rowH = 28;
  const m = { l: 100, r: 90 };
  const H = 2 * rowH + 4;
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  svg.setAttribute('height', String(H));
  const max = Math.max(1, n.metAdapters, n.independentAdapters);
  const pw = W - m.l - m.r;
  const rows: [string, number, string][] = [
    ['MET', n.metAdapters, 'g2'],
    ['independent', n.independentAdapters, 'frozen'],
  ];
  rows.forEach(([name, v, cls], i) => {
    const y = i * rowH + 2;
    const g = barGroup(svg, `${name} adapters: ${int(v)} parameters`, { 'data-row': name });
    el(
      'text',
      { x: m.l - 8, y: y + rowH / 2, 'text-anchor': 'end', 'dominant-baseline': 'middle', class: 'name' },
      g,
    ).textContent = name;
    el(
      'rect',
      { x: m.l, y: y + 4, width: Math.max(v ? 2 : 0, (v / max) * pw), height: rowH - 8, class: `fill ${cls}` },
      g,
    );
    el(
      'text',
      { x: m.l + (v / max) * pw + 6, y: y + rowH / 2, 'dominant-baseline': 'middle', class: 'value' },
      g,
    ).textContent = int(v);
  });
  $('adapter-note').textContent =
    n.reduction === null
      ? 'No adapters in this variant (linear probe): only the heads are trained.'
      : `${n.adapters} E-adapters, Σk = ${n.sumK} exit tokens over the adapted locations. Sharing W_d and W_u saves ${(100 * n.reduction).toFixed(2)}% (${(100 * (n.reductionLimit ?? NaN)).toFixed(2)}% in the D ≫ r limit, 1 − 1/Σk).`;
}

function renderGflops(n: ParamsNumbers): ParamsRendered['exits'] {
  const svg = $<SVGSVGElement>('gflops-bars');
  clear(svg);
  const W = widthOf(svg);
  const K = n.exits.layer.length;
  const rowH = 24;
  const m = { l: 110, r: 80 };
  const H = K * rowH + 4;
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  svg.setAttribute('height', String(H));
  const max = Math.max(1e-12, ...Array.from(n.exits.gflops));
  const pw = W - m.l - m.r;
  const rows: ParamsRendered['exits'] = [];
  for (let j = 0; j < K; j++) {
    const cum = n.exits.gflops[j];
    const seg = n.exits.segment[j];
    const y = j * rowH + 2;
    const g = barGroup(
      svg,
      `exit ${j + 1} (layer ${n.exits.layer[j]}): ${fmtGflops(cum)} GFLOPs per image, of which ${fmtGflops(seg)} in its segment`,
      { 'data-exit': j + 1 },
    );
    el(
      'text',
      { x: m.l - 8, y: y + rowH / 2, 'text-anchor': 'end', 'dominant-baseline': 'middle', class: 'name' },
      g,
    ).textContent = `exit ${j + 1} · layer ${n.exits.layer[j]} · ${n.exits.branch[j] ?? 'linear'}`;
    const wc = (cum / max) * pw;
    const ws = (seg / max) * pw;
    el('rect', { x: m.l, y: y + 4, width: Math.max(0, wc - ws), height: rowH - 8, class: 'fill frozen' }, g);
    el(
      'rect',
      { x: m.l + Math.max(0, wc - ws), y: y + 4, width: Math.max(1, ws), height: rowH - 8, class: `fill g1` },
      g,
    );
    el('text', { x: m.l + wc + 6, y: y + rowH / 2, 'dominant-baseline': 'middle', class: 'value' }, g).textContent =
      fmtGflops(cum);
    rows.push({
      exit: String(j + 1),
      layer: String(n.exits.layer[j]),
      branch: n.exits.branch[j] ?? 'linear',
      branchParams: Number.isFinite(n.exits.branchParams[j]) ? int(n.exits.branchParams[j]) : '–',
      gflops: fmtGflops(cum),
      segment: fmtGflops(seg),
    });
  }
  $('exit-rows').replaceChildren(
    ...rows.map((r) => {
      const tr = document.createElement('tr');
      tr.dataset.exit = r.exit;
      for (const [cls, text] of [
        ['exit', r.exit],
        ['layer', r.layer],
        ['branch', r.branch],
        ['branch-params', r.branchParams],
        ['gflops', r.gflops],
        ['segment', r.segment],
      ] as const)
        tr.appendChild(td(cls, text));
      return tr;
    }),
  );
  return rows;
}

function td(cls: string, text: string): HTMLTableCellElement {
  const e = document.createElement('td');
  e.className = cls;
  e.textContent = text;
  return e;
}

function renderComponents(n: ParamsNumbers): ParamsRendered['components'] {
  const c = n.components;
  const rows = c.names.map((name, i) => ({
    name,
    shape: c.shapes[i],
    count: int(c.count[i]),
    params: int(c.params[i]),
    trainable: c.trainable[i] ? 'yes' : 'frozen',
  }));
  $('component-rows').replaceChildren(
    ...rows.map((r) => {
      const tr = document.createElement('tr');
      if (r.trainable === 'frozen') tr.className = 'frozen-row';
      for (const k of ['name', 'shape', 'count', 'params', 'trainable'] as const) tr.appendChild(td(k, r[k]));
      return tr;
    }),
  );
  return rows;
}

function render(): void {
  let rendered: ParamsRendered | null = null;
  if (numbers) {
    const n = numbers;
    const m = n.model;
    const cfg = n.config;
    $('model').textContent =
      `${m.name}: ${m.depth} layers, D = ${m.dim}, ${m.heads} heads, MLP ${m.mlpDim}, ${m.imageSize} px / patch ${m.patchSize} · exits after layers ${cfg.exits.join(', ')} · r = ${cfg.rank} · ${cfg.classes} classes · variant ${cfg.variant} · E-adapters ${cfg.eaPositions}`;
    const cards = renderCards(n);
    const groups = renderGroupBars(n);
    renderShareBar(n);
    renderAdapterBars(n);
    const exits = renderGflops(n);
    const components = renderComponents(n);
    rendered = {
      seq,
      cards,
      groups,
      components,
      exits,
      raw: {
        trainable: n.trainable,
        backbone: n.backbone,
        total: n.total,
        trainablePercent: n.trainablePercent,
        groups: Array.from(n.groups.params),
        gflops: Array.from(n.exits.gflops),
        independentAdapters: n.independentAdapters,
        metAdapters: n.metAdapters,
      },
    };
  }
  vscode.setState(state);
  vscode.postMessage({ type: 'state', state, rendered, error });
}

function setStatus(status: string, text: string): void {
  root.dataset.status = status;
  $('status-text').textContent = text;
}

window.addEventListener('message', (ev: MessageEvent<ParamsHostMessage>) => {
  const m = ev.data;
  if (m.type === 'computing') setStatus('computing', 'computing…');
  else if (m.type === 'report') {
    numbers = m.numbers;
    seq = m.seq;
    error = null;
    setStatus('ready', `met params · ${new Date(m.at).toLocaleTimeString()} · ${m.ms} ms`);
    render();
  } else if (m.type === 'error') {
    error = m.message;
    setStatus('error', m.message);
    render();
  }
});

$('refresh').addEventListener('click', () => vscode.postMessage({ type: 'refresh' }));
let resizeTimer: ReturnType<typeof setTimeout> | undefined;
new ResizeObserver(() => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(() => numbers && render(), 80);
}).observe(document.body);
vscode.postMessage({ type: 'ready' });
