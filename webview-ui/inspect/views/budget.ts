// Inspect exits, the budget view: the slider's readouts (accuracy or MAE, mean GFLOPs, the
// point's thresholds, saved or not), the exit distribution and the accuracy / GFLOPs curve with
// the current and the saved point. Reads the model; main.ts calls renderBudget after each change.

import { $ } from '../../common/vscode';
import { svgEl } from '../../common/svg';
import { fmtT, fmtV, gf, int, pct } from '../format';
import { exitLabel, h, metricText, model, series } from '../context';

export function renderBudget(): void {
  const slider = $<HTMLInputElement>('budget-slider');
  const saveBtn = $<HTMLButtonElement>('save');
  if (!model.init) return;
  const P = model.curve.p.length;
  slider.value = String(model.point);
  const res = model.dyn.res;
  const p = model.curve.p[model.point];
  const th = model.thresholdsOf(model.point);
  $('acc').textContent = res ? (model.reg ? fmtV(-res.accuracy) : pct(res.accuracy, 2)) : '–';
  $('gflops').textContent = res ? gf(res.gflops) : '–';
  $('point-p').textContent = Number.isFinite(p) ? `p = ${p.toFixed(2)}` : 'custom';
  // What each threshold means for an image reaching that exit.
  // Regression thresholds are on -|Δ|: conf ≥ T reads as "within |T| of the previous exit".
  $('thresholds').textContent =
    `Leaves at ${th.map((t, u) => (u === model.M - 1 ? `exit ${model.used[u] + 1}: the rest` : t === Infinity || Number.isNaN(t) ? `exit ${model.used[u] + 1}: never` : model.reg ? `exit ${model.used[u] + 1}: |Δ| ≤ ${fmtV(-t)}` : `exit ${model.used[u] + 1}: conf ≥ ${fmtT(t)}`)).join(' · ')}`;
  const isSaved = model.point === model.chosen;
  $('saved-badge').textContent = isSaved ? 'saved' : 'not saved';
  $('saved-badge').className = `badge ${isSaved ? 'saved' : 'unsaved'}`;
  $('saved-badge').title = isSaved
    ? `The run's saved thresholds (${model.chosenSource}): met predict and met export use them`
    : 'Save thresholds to make met predict and met export use this point';
  saveBtn.disabled = isSaved || P === 0;
  const ref =
    model.init.source.kind === 'test'
      ? ''
      : ` (run's test split: ${metricText(model.curve.accuracy[model.point], 2)}, ${gf(model.curve.gflops[model.point])} GFLOPs)`;
  const noMetric =
    res && !Number.isFinite(res.accuracy) ? (model.reg ? '; no MAE: not every image has a target' : '') : '';
  $('budget-note').textContent = res
    ? `over ${int(res.exitOf.length)} ${model.init.source.kind === 'test' ? 'test' : 'scored'} images${ref}${noMetric}`
    : 'no scored image yet';
  slider.setAttribute(
    'aria-valuetext',
    `${Number.isFinite(p) ? `p ${p.toFixed(2)}` : 'saved thresholds'}: ${model.reg ? metricText(res?.accuracy) : `accuracy ${pct(res?.accuracy, 1)}`}, ${gf(res?.gflops)} GFLOPs per image`,
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
  const counts = model.dyn.res?.exitCounts ?? new Array<number>(model.M).fill(0);
  const total = counts.reduce((a, b) => a + b, 0);
  let x = 0;
  counts.forEach((c, u) => {
    if (!total || !c) return;
    const w = (c / total) * W;
    const r = svgEl('rect', { x: x.toFixed(2), y: 0, width: w.toFixed(2), height: H, class: `seg ${series(u)}` }, svg);
    svgEl('title', {}, r).textContent = `${exitLabel(model.used[u])}: ${c} images (${pct(c / total)})`;
    x += w;
  });
  const legend = $('dist-legend');
  legend.replaceChildren(
    ...counts.map((c, u) => {
      const li = h('li');
      const sw = svgEl('svg', { width: 10, height: 10, class: 'swatch', 'aria-hidden': 'true' });
      svgEl('rect', { width: 10, height: 10, class: series(u) }, sw);
      li.append(
        sw,
        document.createTextNode(`exit ${model.used[u] + 1}: ${int(c)}${total ? ` (${pct(c / total, 0)})` : ''}`),
      );
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
  const P = model.curve.p.length;
  const pts: [number, number, number][] = [];
  for (let i = 0; i < P; i++)
    if (Number.isFinite(model.curve.gflops[i]) && Number.isFinite(model.curve.accuracy[i]))
      pts.push([model.curve.gflops[i], model.curve.accuracy[i], i]);
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
  const tick = (y: number) => (model.reg ? fmtV(-y) : pct(y, 0));
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
        r: q[2] === model.point ? 5 : 2.5,
        class: q[2] === model.point ? 'pt current' : 'pt',
      },
      svg,
    );
    svgEl('title', {}, c).textContent =
      `${Number.isFinite(model.curve.p[q[2]]) ? `p ${model.curve.p[q[2]].toFixed(2)}` : 'saved'}: ${metricText(q[1], 2)}, ${gf(q[0])} GFLOPs`;
  }
  const s = pts.find((q) => q[2] === model.chosen);
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
