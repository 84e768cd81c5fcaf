// 'inspect/score': every exit's confidence, class and top-k for image files, and the exit each
// takes under the run's chosen thresholds; the Inspect exits panel's numbers.
//
// The same RunPredictor as `met predict --run`, over the same slices of the file list, so the
// confidences are bit-identical to what `met predict --run RUN FILES --json` prints. The exit
// taken is derived from those (static) confidences and the run's chosen thresholds: the panel
// shows the confidences and marks the exit, and the mark must follow from the numbers shown.
// It is the same exit `met predict` finds by running budgeted inference (a row's confidences do
// not depend on the rows beside it), which the tests check.
//
// Regression runs (model/regression.ts): each exit's value, and as confidence the agreement with
// the previous exit (what their thresholds were fitted on), as `met predict --run` prints them;
// no classes, so no top-k.

import type { ScoreParams, ScoreResult } from './types';
import { agreementConfidence } from '../infer/exitScores';
import { DEFAULT_PREDICT_BATCH } from '../run/runPredictor';
import { isRegression } from '../model/regression';
import { UserError } from '../tensor';
import type { RunCache } from './runCache';

export const DEFAULT_TOP_K = 3;

export async function scoreImages(
  cache: RunCache,
  p: ScoreParams,
  batch = DEFAULT_PREDICT_BATCH,
): Promise<ScoreResult> {
  if (!p || typeof p.runDir !== 'string' || !p.runDir)
    throw new UserError('inspect/score: runDir (a run folder) is required');
  if (!Array.isArray(p.files) || p.files.some((f) => typeof f !== 'string'))
    throw new UserError('inspect/score: files must be a list of image paths');
  const topKAsked = p.topK ?? DEFAULT_TOP_K;
  if (!Number.isInteger(topKAsked) || topKAsked < 1)
    throw new UserError(`inspect/score: topK must be a positive integer, got ${String(p.topK)}`);
  return cache.with(p.runDir, async ({ predictor: rp }) => {
    const files = p.files;
    const n = files.length;
    const K = rp.K;
    const C = rp.C;
    const regression = isRegression(rp.met);
    const k = regression ? 0 : Math.min(topKAsked, C);
    const ok = new Uint8Array(n);
    // Skipped images keep NaN / -1: nothing in them can be mistaken for a score.
    const conf = new Float32Array(n * K).fill(NaN);
    const pred = new Int32Array(n * K).fill(-1);
    const topProb = new Float32Array(n * K * k).fill(NaN);
    const topClass = new Int32Array(n * K * k).fill(-1);
    const value = regression ? new Float32Array(n * K).fill(NaN) : undefined;
    const exitTaken = new Int32Array(n).fill(-1);
    const skipped: { file: string; reason: string }[] = [];
    const order = new Int32Array(C);
    for (let s = 0; s < n; s += batch) {
      const slice = files.slice(s, s + batch);
      const b = await rp.scoreBatch(slice);
      skipped.push(...b.failed);
      // Regression: C = 1, so the runner's "probabilities" are the values.
      const agree = regression ? agreementConfidence(b.probs) : null;
      // Each decoded file back to its index in the request: `ok` keeps input order, so a file
      // that is not the next decoded one failed.
      let row = 0;
      for (let i = 0; i < slice.length; i++) {
        if (row >= b.ok.length || b.ok[row] !== slice[i]) continue;
        const idx = s + i;
        ok[idx] = 1;
        for (let j = 0; j < K; j++) {
          if (agree) {
            conf[idx * K + j] = agree[j][row];
            value![idx * K + j] = b.probs[j][row];
            continue;
          }
          conf[idx * K + j] = b.conf[j][row];
          pred[idx * K + j] = b.pred[j][row];
          const probs = b.probs[j].subarray(row * C, (row + 1) * C);
          topK(probs, order, k);
          for (let t = 0; t < k; t++) {
            topProb[(idx * K + j) * k + t] = probs[order[t]];
            topClass[(idx * K + j) * k + t] = order[t];
          }
        }
        exitTaken[idx] = rp.exitTaken((j) => conf[idx * K + j]);
        row++;
      }
    }
    return {
      files: files.slice(),
      classes: rp.cf.classes.slice(),
      layers: rp.met.exits.slice(),
      gflops: rp.gflops.slice(),
      ok,
      conf,
      pred,
      ...(value ? { task: 'regression' as const, value } : {}),
      topProb,
      topClass,
      exitTaken,
      skipped,
      chosen: { p: rp.op.p, perExit: rp.op.perExit.slice(), source: rp.op.source },
    };
  });
}

/** The k most probable classes into order[0..k) (ties: the smaller class index, like argmax). */
function topK(probs: Float32Array, order: Int32Array, k: number): void {
  for (let c = 0; c < probs.length; c++) order[c] = c;
  // Partial selection: k is small (3), C may be 1000.
  for (let t = 0; t < k; t++) {
    let best = t;
    for (let c = t + 1; c < probs.length; c++) {
      const a = probs[order[c]];
      const b = probs[order[best]];
      if (a > b || (a === b && order[c] < order[best])) best = c;
    }
    const tmp = order[t];
    order[t] = order[best];
    order[best] = tmp;
  }
}
