// Inspect exits, the summary view: per class (regression: per target value or range), the
// images, where they exit under the slider's thresholds, accuracy (MAE) under the thresholds and
// at every exit; the first row is all images.

import { $ } from '../../common/vscode';
import { svgEl } from '../../common/svg';
import { fmtV, int, pct } from '../format';
import { exitLabel, h, metricHeat, model, series } from '../context';

export function renderSummary(): void {
  if (!model.init) return;
  const head = $('summary-head');
  head.replaceChildren(
    ...[
      model.reg ? 'Target' : 'Class',
      'Images',
      'Where they exit',
      model.reg ? 'MAE (thresholds)' : 'Accuracy (thresholds)',
      ...Array.from({ length: model.K }, (_, j) => `Exit ${j + 1}`),
    ].map((t, c) => {
      const th = h('th', c === 0 || c === 2 ? 'left' : undefined, t);
      th.scope = 'col';
      if (c >= 4) th.title = `${model.reg ? 'MAE' : 'Accuracy'} of ${exitLabel(c - 4)} when every image runs to it`;
      return th;
    }),
  );
  const rows: HTMLTableRowElement[] = [];
  const total = model.dyn.res;
  const labelled = model.classStats.reduce((a, c) => a + c.n, 0);
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
      'aria-label': s.exitCounts.map((c, u) => `exit ${model.used[u] + 1}: ${c}`).join(', '),
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
        model.reg ? fmtV(-(s.accuracy ?? NaN)) : pct(s.accuracy),
      ),
    );
    accs.forEach((a) =>
      tr.appendChild(h('td', `acc ${a === null ? '' : `h${metricHeat(a)}`}`, model.reg ? fmtV(-(a ?? NaN)) : pct(a))),
    );
    return tr;
  };
  rows.push(mk(allRow, model.exitAcc, 'all'));
  model.classStats.forEach((s, c) => rows.push(mk(s, model.classExitAcc[c] ?? [], '')));
  $('summary-rows').replaceChildren(...rows);
  $('summary-note').textContent = model.reg
    ? labelled
      ? `${int(labelled)} ${model.init.source.kind === 'test' ? 'test ' : ''}images with a target${model.init.targetsFrom ? ` (${model.init.targetsFrom})` : ''}. MAE in target units; "Where they exit" and the thresholds' MAE follow the slider; the exit columns are each exit's MAE when every image runs to it. Δ: how far an exit's value is from the previous exit's, what the thresholds apply to.`
      : "No targets for these images (no targets file at the folder's root): values and exits only, no MAE."
    : labelled
      ? `${int(labelled)} labelled ${model.init.source.kind === 'test' ? 'test ' : ''}images. "Where they exit" and the thresholds' accuracy follow the slider; the exit columns are each exit's accuracy when every image runs to it.`
      : "No image of this source sits in a folder named like one of the run's classes: no accuracy (predictions and exits only).";
}
