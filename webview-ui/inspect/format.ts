// Number formats of the Inspect exits webview (grid, readouts, summary, snapshot). Pure: no DOM.

/** A fraction as a percentage ('–' when missing). */
export const pct = (x: number | null | undefined, d = 1) =>
  x === null || x === undefined || !Number.isFinite(x) ? '–' : `${(100 * x).toFixed(d)}%`;
/** GFLOPs: 3 significant digits, whole numbers from 100. */
export const gf = (x: number | null | undefined) =>
  x === null || x === undefined || !Number.isFinite(x) ? '–' : x >= 100 ? x.toFixed(0) : x.toPrecision(3);
export const int = (x: number) => x.toLocaleString('en-US');
/** A threshold as shown (±∞ for exits never / always taken). */
export const fmtT = (t: number) =>
  t === Infinity ? '∞' : t === -Infinity ? '−∞' : Number.isNaN(t) ? 'NaN' : t.toFixed(3);
/** A threshold for JSON (the snapshot): a number, or 'Infinity' / '-Infinity'. */
export const jsonT = (t: number): number | string =>
  Number.isFinite(t) ? t : t === -Infinity ? '-Infinity' : 'Infinity';
/** Heat bin 0..10 of a confidence in [0, 1] (inspect.css .h0 .. .h10); -1 when missing. */
export const heat = (c: number) => (Number.isFinite(c) ? Math.max(0, Math.min(10, Math.round(c * 10))) : -1);
/** Regression: a value in target units, as `met predict` prints them (4 significant digits). */
export const fmtV = (x: number) =>
  Number.isFinite(x)
    ? Math.abs(x) >= 1e4 || (x !== 0 && Math.abs(x) < 1e-3)
      ? x.toPrecision(3)
      : Number(x.toPrecision(4)).toString()
    : '–';
