// SVG elements for the webviews' charts (dashboard, parameter counts, Inspect exits, Compare runs):
// attributes set as attributes (the CSP allows no inline styles), appended to `parent` when given;
// and the tick marks and labels of the axes the dashboard's and Compare runs' charts draw alike.

export const SVG_NS = 'http://www.w3.org/2000/svg';

export function svgEl<K extends keyof SVGElementTagNameMap>(
  tag: K,
  attrs: Record<string, string | number>,
  parent?: Element,
): SVGElementTagNameMap[K] {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  parent?.appendChild(e);
  return e;
}

/**
 * About `n` round tick values (steps of 1, 2, 2.5 or 5 times a power of ten) from `lo` to `hi`.
 * The first tick is found with a tolerance: lo / step computed as 3.0000000000000004 must still
 * give the tick at 3 steps, not 4.
 */
export function niceTicks(lo: number, hi: number, n: number): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? raw;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step - 1e-9) * step; v <= hi + 1e-9 * step; v += step)
    out.push(Number(v.toPrecision(12)));
  return out;
}

/** A chart's left and top margins (user units): where its plot area starts. */
export interface Margins {
  l: number;
  t: number;
}

/** The y axis: a grid line across the plot (`pw` wide) at each tick, its label left of the plot. */
export function yTicks(
  grid: SVGGElement,
  m: Margins,
  pw: number,
  Y: (v: number) => number,
  ticks: number[],
  fmt: (v: number) => string,
): void {
  for (const t of ticks) {
    svgEl('line', { x1: m.l, x2: m.l + pw, y1: Y(t), y2: Y(t) }, grid);
    svgEl(
      'text',
      { x: m.l - 6, y: Y(t), 'text-anchor': 'end', 'dominant-baseline': 'middle', class: 'tick' },
      grid,
    ).textContent = fmt(t);
  }
}

/** The x axis: a short tick mark below the plot (`ph` high) at each tick, its label under it. */
export function xTicks(
  grid: SVGGElement,
  m: Margins,
  ph: number,
  X: (v: number) => number,
  ticks: number[],
  fmt: (v: number) => string,
): void {
  for (const t of ticks) {
    svgEl('line', { x1: X(t), x2: X(t), y1: m.t + ph, y2: m.t + ph + 4, class: 'tickmark' }, grid);
    svgEl('text', { x: X(t), y: m.t + ph + 16, 'text-anchor': 'middle', class: 'tick' }, grid).textContent = fmt(t);
  }
}
