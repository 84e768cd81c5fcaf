// Regression exits (issue 6, item 3): every exit's branch ends in a head with one output
// (numClasses = 1, any branch type), read as a number instead of class logits.
//
// Losses. L = Σ_j loss_j with loss_j = mean_b (y_jb - t_b)² (mse) or mean_b |y_jb - t_b| (l1),
// uniform exit weights as MET's CE. Targets enter the graph standardised when the run's
// `standardize` is on (the default): t = (value - mean) / std with mean and std of the
// *training* split, stored in the run's MetConfig (targetMean / targetStd). The heads then learn
// numbers on the scale their trunc-normal(0.01) initialisation and learning rate were made for,
// whatever the unit of the target (counts, years, millimetres). Every number a user sees
// (predictions, MAE, RMSE, the exported segments' outputs) is mapped back: value = y * std + mean,
// baked into the inference graphs. With standardisation off, mean = 0 and std = 1.
//
// Graph regularization is OFF for regression runs. MET's GR pulls together head inputs of
// samples of the same class and pushes apart those of different classes; a regression target
// has no classes, and a surrogate (e.g. similarity from target distances) would be a different
// method with its own weight to tune. `lambda` is therefore ignored and the run's report says
// so, rather than applying something the paper did not define.
//
// Confidence for early exiting: agreement between consecutive exits,
//     conf_j = -|y_j - y_{j-1}|   (j >= 2, in target units);   conf_1 = NaN (never exits).
// Why this one:
//  - it is a score where higher means "more sure", which is all MSDNet's threshold fitting
//    (infer/thresholds.ts) needs: thresholds are then quantiles of the validation agreement, and
//    the geometric exit distribution q_j ∝ p^j sets how many leave where, exactly as with the
//    max probability for classes; -|Δ| is negated so that the same `conf >= T` rule applies;
//  - it needs no extra training target or head (a variance head would change the loss the issue
//    asks for: MSE or L1), and costs nothing at inference: exit j-1's value is computed on the
//    way to exit j anyway;
//  - when two successive exits agree, later ones tend to agree as well (the prediction has
//    settled), the same intuition as patience-based early exiting (PABEE, Zhou et al. 2020);
//  - the first exit has no predecessor, so it cannot be judged: its confidence is NaN, which
//    thresholds.ts already treats as "never confident enough". Its output still serves as the
//    reference for exit 2.
// Budget curves report `accuracy` = -MAE (higher is better) so budgetCurve / pickForBudget stay
// unchanged; the CLI and the run files also give MAE itself.

import type { Graph, Tensor } from '../graph/ir';
import type { MetConfig, MetForward, MetLoss } from './met';

export type Task = 'classification' | 'regression';
export type RegLoss = 'mse' | 'l1';

export function isRegression(m: Pick<MetConfig, 'task'> | { task?: string }): boolean {
  return m.task === 'regression';
}

/** The run's target scale: value = y * std + mean (mean 0, std 1 without standardisation). */
export function targetScale(m: Pick<MetConfig, 'targetMean' | 'targetStd'>): { mean: number; std: number } {
  return { mean: m.targetMean ?? 0, std: m.targetStd ?? 1 };
}

/**
 * Mean and standard deviation (population) of the training targets; std falls back to 1 when the
 * targets are constant (or there is one), so standardising never divides by zero.
 */
export function targetStats(values: ArrayLike<number>): { mean: number; std: number } {
  const n = values.length;
  if (!n) return { mean: 0, std: 1 };
  let s = 0;
  for (let i = 0; i < n; i++) s += values[i];
  const mean = s / n;
  let v = 0;
  for (let i = 0; i < n; i++) v += (values[i] - mean) ** 2;
  const std = Math.sqrt(v / n);
  return { mean, std: std > 1e-12 ? std : 1 };
}

/** Targets of a batch as the train graph wants them: [B, 1], standardised with the run's scale. */
export function targetBatch(m: MetConfig, samples: readonly { value?: number; file: string }[]): Float32Array {
  const { mean, std } = targetScale(m);
  return Float32Array.from(samples, (s) => {
    if (typeof s.value !== 'number') throw new Error(`regression sample ${s.file} has no value`);
    return (s.value - mean) / std;
  });
}

/** One exit's loss on [B, 1] outputs and [B, 1] targets. */
export function regressionExitLoss(g: Graph, kind: RegLoss, y: Tensor, t: Tensor): Tensor {
  const d = g.sub(y, t);
  return g.meanAll(kind === 'l1' ? g.abs(d) : g.square(d));
}

/**
 * L = Σ_j loss_j over the exits (no graph regularization, see the header). The per-exit terms are
 * returned in `ce` so the train step reports them where classification reports its CEs.
 */
export function regressionLoss(g: Graph, m: MetConfig, f: MetForward, targets: Tensor): MetLoss {
  const kind = m.regLoss ?? 'mse';
  const ce = f.logits.map((y) => regressionExitLoss(g, kind, y, targets));
  return { loss: ce.reduce((a, b) => g.add(a, b)), ce, gr: [], kd: [] };
}

/** An exit's value in target units from its raw [B, 1] output (baked into inference graphs). */
export function toTargetUnits(g: Graph, m: MetConfig, y: Tensor): Tensor {
  const { mean, std } = targetScale(m);
  let v = y;
  if (std !== 1) v = g.mulScalar(v, std);
  if (mean !== 0) v = g.addScalar(v, mean);
  return v;
}

// ------------------------------------------------------------------ metrics and confidence

/** MAE and RMSE of predictions against targets (NaN for no samples). */
export function regressionMetrics(pred: ArrayLike<number>, target: ArrayLike<number>): { mae: number; rmse: number } {
  const n = target.length;
  if (pred.length !== n) throw new Error(`regressionMetrics: ${pred.length} predictions for ${n} targets`);
  if (!n) return { mae: NaN, rmse: NaN };
  let a = 0;
  let s = 0;
  for (let i = 0; i < n; i++) {
    const d = pred[i] - target[i];
    a += Math.abs(d);
    s += d * d;
  }
  return { mae: a / n, rmse: Math.sqrt(s / n) };
}

/** Per exit MAE and RMSE: values[exit][sample] against targets[sample]. */
export function exitMetrics(values: ArrayLike<number>[], target: ArrayLike<number>): { mae: number[]; rmse: number[] } {
  const r = values.map((v) => regressionMetrics(v, target));
  return { mae: r.map((x) => x.mae), rmse: r.map((x) => x.rmse) };
}
