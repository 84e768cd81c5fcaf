// Inspect exits, the detail view: the selected image (large thumbnail, label or target, the exit
// it takes under the slider's thresholds) and its per-exit bars (confidence and top-k classes;
// regression: each exit's value against the target and the agreement with the previous exit),
// and under them Explain, its exits' attention maps (explain.ts).

import { $ } from '../../common/vscode';
import { svgEl } from '../../common/svg';
import { fmtV, heat, pct } from '../format';
import { className, closeness, exitLabel, h, model, state, view } from '../context';
import { renderExplain } from './explain';

export function renderDetail(): void {
  renderSelected();
  renderExplain();
}

function renderSelected(): void {
  const box = $('detail');
  const i = state.selected;
  if (!model.init || i === undefined) {
    box.dataset.index = '';
    $('detail-name').textContent = 'Select an image (click, or arrows and Enter in the grid)';
    $('detail-label').textContent = '';
    $<HTMLImageElement>('detail-img').removeAttribute('src');
    $('detail-bars').replaceChildren();
    return;
  }
  box.dataset.index = String(i);
  $('detail-name').textContent = model.init.names[i];
  $('detail-name').title = model.init.files[i];
  const y = model.init.labels[i];
  const taken = model.dyn.exitOf[i];
  if (model.reg)
    $('detail-label').textContent =
      `${Number.isFinite(model.target[i]) ? `target ${fmtV(model.target[i])}` : 'no target'}${taken >= 0 ? ` · takes exit ${model.used[taken] + 1} (layer ${model.init.layers[model.used[taken]]}): ${fmtV(model.val[model.used[taken]][i])}` : ''}`;
  else
    $('detail-label').textContent =
      `${y >= 0 ? `label ${className(y)}` : 'no label'}${taken >= 0 ? ` · takes exit ${model.used[taken] + 1} (layer ${model.init.layers[model.used[taken]]}): ${className(model.pred[model.used[taken]][i])}` : ''}`;
  const img = $<HTMLImageElement>('detail-img');
  const uri = view.detail?.index === i ? view.detail.uri : null;
  if (uri) img.src = uri;
  else if (view.thumbs[i]) img.src = view.thumbs[i]!;
  else img.removeAttribute('src');
  img.alt = model.init.names[i];
  const bars = $('detail-bars');
  if (model.reg) return renderValueBars(i, taken);
  const top = model.tops.get(i);
  bars.replaceChildren(
    ...Array.from({ length: model.K }, (_, j) => {
      const li = h('li', `bar-row${taken >= 0 && model.used[taken] === j ? ' taken' : ''}`);
      li.dataset.exit = String(j + 1);
      const head = h('div', 'bar-head');
      head.append(
        h('span', 'bar-exit', exitLabel(j)),
        h(
          'span',
          'bar-conf',
          Number.isFinite(model.conf[j][i]) ? `${className(model.pred[j][i])} ${pct(model.conf[j][i])}` : 'not scored',
        ),
      );
      li.appendChild(head);
      li.appendChild(bar(model.conf[j][i], `h${Math.max(0, heat(model.conf[j][i]))}`));
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
      } else
        list.appendChild(
          h('li', 'pending', view.detail?.error ? `top-3: ${view.detail.error}` : 'top-3 classes: scoring…'),
        );
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
  const t = model.target[i];
  const ok = model.scoredMask[i] === 1;
  const vs = ok ? model.val.map((v) => v[i]).filter((v) => Number.isFinite(v)) : [];
  if (Number.isFinite(t)) vs.push(t);
  let lo = Math.min(0, ...vs);
  let hi = Math.max(...vs, lo + 1e-9);
  if (hi - lo < 1e-6) ((lo -= 0.5), (hi += 0.5));
  $('detail-bars').replaceChildren(
    ...Array.from({ length: model.K }, (_, j) => {
      const li = h('li', `bar-row${taken >= 0 && model.used[taken] === j ? ' taken' : ''}`);
      li.dataset.exit = String(j + 1);
      const head = h('div', 'bar-head');
      const v = model.val[j][i];
      const d = -model.conf[j][i];
      head.append(
        h('span', 'bar-exit', exitLabel(j)),
        h(
          'span',
          'bar-conf',
          ok ? `${fmtV(v)}${j > 0 ? ` · Δ ${fmtV(d)}` : ''}` : view.detail?.error ? view.detail.error : 'scoring…',
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
