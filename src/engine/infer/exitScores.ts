// Per-exit scores of a stored split (predictions.json) as budgeted inference reads them, and the
// regression exits' agreement confidence. Pure functions with type-only imports: the extension
// host (inspectCurve.ts) and the Inspect exits webview bundle this file, and neither may pull in
// onnxruntime, sharp or the graph builder. model/regression.ts explains the agreement rule.

import type { ExitScores } from './thresholds';

/** A split's stored per-exit scores, as predictions.json holds them (run/runFolder.ts adds the files). */
export interface SplitScores {
  /** 'regression' (model/regression.ts): labels are the target values, pred[exit] the predicted
   *  values (target units), conf[exit] the agreement with the previous exit (exit 1: null, i.e.
   *  NaN: it never takes a sample). Absent: classification. */
  task?: 'regression';
  labels: number[];
  /** [exit][sample] */
  conf: number[][];
  pred: number[][];
}

/** The agreement confidence of every exit, -|y_j - y_(j-1)|: [exit][sample], exit 1 all NaN. */
export function agreementConfidence(values: ArrayLike<number>[]): Float32Array[] {
  return values.map((v, j) => {
    const c = new Float32Array(v.length);
    if (j === 0) c.fill(NaN);
    else for (let i = 0; i < v.length; i++) c[i] = -Math.abs(v[i] - values[j - 1][i]);
    return c;
  });
}

/** Per exit and sample, -|y - t|: the `quality` budget curves average (their accuracy = -MAE). */
export function negAbsError(values: ArrayLike<number>[], target: ArrayLike<number>): Float32Array[] {
  return values.map((v) => Float32Array.from({ length: target.length }, (_, i) => -Math.abs(v[i] - target[i])));
}

/** A stored split's scores over the used exits `exits` (default: all), ready for applyThresholds. */
export function exitScores(p: SplitScores, exits?: number[]): ExitScores {
  const use = exits ?? p.conf.map((_, j) => j);
  if (p.task === 'regression') {
    // Confidences recomputed from the values (JSON stores exit 1's NaN as null); quality -|error|
    // makes the curve's accuracy -MAE (model/regression.ts).
    const conf = agreementConfidence(p.pred);
    const quality = negAbsError(p.pred, p.labels);
    return {
      conf: use.map((j) => conf[j]),
      pred: use.map(() => new Int32Array(p.labels.length)),
      quality: use.map((j) => quality[j]),
    };
  }
  return {
    conf: use.map((j) => Float32Array.from(p.conf[j])),
    pred: use.map((j) => Int32Array.from(p.pred[j])),
    labels: Int32Array.from(p.labels),
  };
}
