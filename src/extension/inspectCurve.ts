// The budget slider's points for Inspect exits (inspect.ts), from a run's thresholds.json. No
// `vscode` here, so the node:test suite checks it (test/inspect-curve.test.ts).

import { exitScores } from '../engine/infer/exitScores';
import { applyThresholds } from '../engine/infer/thresholds';
import { decodeThreshold, type SplitPredictions, type ThresholdsFile } from '../engine/run/runFolder';
import type { Curve } from '../../webview-ui/inspect/protocol';

export interface CurveData {
  curve: Curve;
  chosen: number;
  chosenSource: string;
  used: number[];
  /** Key of the saved thresholds, to tell a real change of thresholds.json from our own save. */
  chosenKey: string;
}

const keyOf = (T: number[]) => T.map((t) => (Number.isNaN(t) ? 'NaN' : String(t))).join(',');

/**
 * The slider's points: thresholds.json's curve (sorted by mean test GFLOPs), each set of
 * thresholds once (MSDNet's p sweep gives the same thresholds for many p on small validation
 * sets; the smallest p is kept), and the saved thresholds, added as a point of their own when
 * they are on no curve point (saved by hand, or the run has no curve).
 */
export function buildCurve(th: ThresholdsFile | null, K: number, test: SplitPredictions | null): CurveData {
  const used =
    th && Array.isArray(th.exits) && th.exits.length ? th.exits.slice() : Array.from({ length: K }, (_, j) => j);
  const M = used.length;
  const num = (v: unknown) => (typeof v === 'number' ? v : NaN);
  const pts: { p: number; T: number[]; acc: number; gf: number }[] = [];
  const seen = new Set<string>();
  for (const pt of th?.curve ?? []) {
    const T = (pt.thresholds as unknown[]).map((v, i) => decodeThreshold(v, i === M - 1));
    const k = keyOf(T);
    if (seen.has(k)) continue;
    seen.add(k);
    pts.push({ p: num(pt.p), T, acc: num(pt.accuracy), gf: num(pt.gflops) });
  }
  const chosenT = th?.chosen?.thresholds
    ? (th.chosen.thresholds as unknown[]).map((v, i) => decodeThreshold(v, i === M - 1))
    : used.map((_, i) => (i === M - 1 ? -Infinity : Infinity));
  const chosenKey = keyOf(chosenT);
  let chosen = pts.findIndex((p) => keyOf(p.T) === chosenKey);
  if (chosen < 0) {
    let acc = NaN;
    let gf = NaN;
    if (test && test.labels.length && th) {
      // exitScores: class confidences, or a regression run's agreement and -|error| (accuracy = -MAE).
      const r = applyThresholds(
        exitScores(test, used),
        chosenT,
        used.map((j) => th.gflops[j]),
      );
      acc = r.accuracy;
      gf = r.gflops;
    }
    pts.push({ p: th?.chosen?.p ?? NaN, T: chosenT, acc, gf });
    // Keep the slider ordered by cost: the saved point goes where its GFLOPs put it.
    const saved = pts[pts.length - 1];
    pts.sort((a, b) => (Number.isFinite(a.gf) && Number.isFinite(b.gf) ? a.gf - b.gf : 0));
    chosen = pts.indexOf(saved);
  }
  const P = pts.length;
  const thresholds = new Float64Array(P * M);
  pts.forEach((p, i) => thresholds.set(p.T, i * M));
  return {
    curve: {
      p: Float64Array.from(pts, (p) => p.p),
      thresholds,
      accuracy: Float64Array.from(pts, (p) => p.acc),
      gflops: Float64Array.from(pts, (p) => p.gf),
    },
    chosen,
    chosenSource: th?.chosen?.source ?? 'no thresholds.json in the run: every image runs to the last exit',
    used,
    chosenKey,
  };
}
