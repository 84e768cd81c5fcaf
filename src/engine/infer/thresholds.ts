// Budgeted early exiting (dynamic inference): the MSDNet threshold procedure, docs/method.md §4.2.
//
// Reference: kalviny/MSDNet-PyTorch, adaptive_inference.py, `dynamic_eval_find_threshold` and
// `dynamic_eval_with_threshold`. MET's dynamic mode follows "other dynamic neural networks" and
// G. Huang co-authored both papers, so we reproduce that procedure exactly, including its quirks
// (listed under findThresholds), rather than a "cleaner" quantile rule: otherwise our
// accuracy-vs-GFLOPs curves would not be comparable with the published ones.
//
// Everything here works on stored per-exit scores (no model in the loop), so a whole curve over
// 39 values of p costs a few sorts and linear scans.
//
// Conventions:
//  * "exit j" is an index into the *used* exits (0-based in arrays, 1-based in prose): a caller
//    evaluating head subset {1,4,7} passes just those three rows and their three costs.
//  * Confidence is generic: higher = more confident (max softmax probability for
//    classification; any monotone score for regression). NaN is never confident enough: a NaN
//    sample only leaves at the last exit.
//  * Accuracy is a fraction in [0, 1] (MSDNet prints percentages).

export interface ExitScores {
  /** Per used exit, [n]: the confidence (max softmax probability for classification). */
  conf: Float32Array[];
  /** Per used exit, [n]: the predicted class (argmax). */
  pred: Int32Array[];
  /** [n] ground-truth labels; without them (and without `quality`) accuracy is NaN. */
  labels?: Int32Array;
  /**
   * Optional per used exit, [n]: a per-sample quality to average instead of top-1 correctness
   * (e.g. -|error| for regression exits). When present it takes precedence over pred/labels.
   */
  quality?: Float32Array[];
}

export interface ThresholdResult {
  /** Mean top-1 correctness (or mean `quality`) of each sample's exit prediction, in [0, 1]. */
  accuracy: number;
  /** Expected cost Σ_j (fraction exiting at j) · cost_j, in the unit of `cost` (GFLOPs). */
  gflops: number;
  /** Samples leaving at each used exit. */
  exitCounts: number[];
  /** [n]: the used-exit index (0-based) each sample leaves at. */
  exitOf: Int32Array;
}

export interface BudgetPoint {
  /** The geometric parameter: q_j ∝ p^j. */
  p: number;
  /** Thresholds found on the validation scores; the last one is -Infinity. */
  thresholds: number[];
  /** Test accuracy, expected test cost and test exit counts under those thresholds. */
  accuracy: number;
  gflops: number;
  exitCounts: number[];
  /** The same on the validation scores (what MSDNet prints as "valid acc"). */
  valAccuracy: number;
  valGflops: number;
}

/** MSDNet's sweep: p = k/20 for k = 1..39 (`for p in range(1, 40)`). */
export const DEFAULT_PS: readonly number[] = Array.from({ length: 39 }, (_, i) => (i + 1) / 20);

/**
 * The target exit distribution q_j = p^j / Σ_i p^i over M exits (j = 1..M). p < 1 puts more
 * mass on early exits, p > 1 on late ones, p = 1 is uniform.
 */
export function exitDistribution(p: number, M: number): number[] {
  if (!(p > 0) || !Number.isFinite(p)) throw new Error(`p must be a positive finite number, got ${p}`);
  if (!Number.isInteger(M) || M < 1) throw new Error(`need at least one exit, got ${M}`);
  // Powers relative to the largest term so that neither tiny nor huge p under/overflows.
  const ref = p >= 1 ? M : 1;
  const w = Array.from({ length: M }, (_, i) => Math.pow(p, i + 1 - ref));
  const s = w.reduce((a, b) => a + b, 0);
  return w.map((v) => v / s);
}

/**
 * ⌊n·q⌋ as MSDNet's `math.floor(n_sample * p[k])`. MSDNet computes it in float32, which we
 * cannot reproduce bit for bit; we compute in float64 and add a tiny relative slack so that
 * products that are integers mathematically (n = 100, q = 0.29 → 29) are not floored to the
 * integer below by binary rounding (100 * 0.29 = 28.999999999999996 in float64).
 */
export function exitQuota(n: number, q: number): number {
  const x = n * q;
  return Math.floor(x + 1e-9 * Math.max(1, x));
}

function checkScores(s: ExitScores, what: string): { M: number; n: number } {
  const M = s.conf.length;
  if (M < 1) throw new Error(`${what}: no exits`);
  if (s.pred.length !== M) throw new Error(`${what}: ${M} confidence rows but ${s.pred.length} prediction rows`);
  if (s.quality && s.quality.length !== M)
    throw new Error(`${what}: ${M} confidence rows but ${s.quality.length} quality rows`);
  const n = s.conf[0].length;
  for (let j = 0; j < M; j++) {
    if (s.conf[j].length !== n || s.pred[j].length !== n || (s.quality && s.quality[j].length !== n))
      throw new Error(`${what}: exit ${j + 1} has a different number of samples than exit 1 (${n})`);
  }
  if (s.labels && s.labels.length !== n) throw new Error(`${what}: ${s.labels.length} labels for ${n} samples`);
  return { M, n };
}

/** Sample indices by confidence, descending; NaN last (it can never pass a threshold). */
function sortDescending(conf: Float32Array): Int32Array {
  const idx = Array.from({ length: conf.length }, (_, i) => i);
  // Ties are broken by index only for determinism: the threshold below is the *value* of the
  // ⌊n·q⌋-th unexited sample, which is the same whatever the order among equal confidences.
  idx.sort((a, b) => {
    const x = conf[a];
    const y = conf[b];
    if (x !== y) {
      if (Number.isNaN(x)) return Number.isNaN(y) ? a - b : 1;
      if (Number.isNaN(y)) return -1;
      return y > x ? 1 : -1;
    }
    return a - b;
  });
  return Int32Array.from(idx);
}

/** findThresholds with the per-exit sort orders precomputed (they do not depend on p). */
function thresholdsFromOrder(conf: Float32Array[], order: Int32Array[], n: number, q: number[]): number[] {
  const M = conf.length;
  const T = new Array<number>(M).fill(Infinity);
  const exited = new Uint8Array(n);
  for (let k = 0; k < M - 1; k++) {
    const outN = exitQuota(n, q[k]);
    const c = conf[k];
    const ord = order[k];
    let count = 0;
    // Walk all samples in descending conf_k order, counting only those still in the network;
    // the outN-th of them sets T_k. When outN is 0, or fewer than outN samples remain, the
    // walk never reaches it and T_k keeps its initial value (MSDNet: 1e8; here +Infinity).
    if (outN > 0) {
      for (let i = 0; i < n; i++) {
        const s = ord[i];
        if (!exited[s] && ++count === outN) {
          T[k] = c[s];
          break;
        }
      }
    }
    // Every sample at least as confident leaves here, ties included (MSDNet's `ge`), so with
    // tied confidences more than outN samples can leave at exit k.
    const t = T[k];
    if (t !== Infinity) for (let s = 0; s < n; s++) if (c[s] >= t) exited[s] = 1;
  }
  T[M - 1] = -Infinity;
  return T;
}

/**
 * MSDNet's `dynamic_eval_find_threshold` on validation scores, for one p.
 *
 * With M used exits and q = exitDistribution(p, M): for exits j = 1..M-1 in order, sort all n
 * samples by conf_j descending, walk that list counting only samples that have not exited yet,
 * and stop at the ⌊n·q_j⌋-th: T_j is its confidence. Then every sample with conf_j ≥ T_j is
 * marked as exited. T_M = -Infinity (the last exit takes everything left).
 *
 * Edge cases, all decided as in MSDNet:
 *  * ⌊n·q_j⌋ = 0 (few samples, or large p making q_j tiny) → T_j = +Infinity: nobody leaves at
 *    exit j. (MSDNet keeps its initial 1e8; +Infinity is the same for probabilities and stays
 *    correct for confidences of any scale.)
 *  * Ties: everyone with conf_j ≥ T_j leaves, so more than ⌊n·q_j⌋ samples may leave at j.
 *  * If (because of such ties) fewer than ⌊n·q_j⌋ samples remain at exit j, T_j = +Infinity
 *    too: nobody leaves there, rather than "everyone left". Without ties this cannot happen,
 *    since Σ_{j<M} ⌊n·q_j⌋ < n.
 *  * A NaN confidence never passes a threshold; if the ⌊n·q_j⌋-th remaining sample has NaN
 *    confidence (only NaNs are left at the cut), T_j = NaN and nobody leaves at j.
 *  * M = 1: T = [-Infinity].
 * Without ties and NaNs, exactly ⌊n·q_j⌋ validation samples leave at each exit j < M.
 */
export function findThresholds(val: ExitScores, p: number): number[] {
  const { M, n } = checkScores(val, 'findThresholds');
  const q = exitDistribution(p, M);
  const order = val.conf.slice(0, M - 1).map(sortDescending);
  return thresholdsFromOrder(val.conf, order, n, q);
}

/**
 * MSDNet's `dynamic_eval_with_threshold`: each sample leaves at the first used exit j with
 * conf_j ≥ T_j (the last exit accepts everything, whatever its threshold or a NaN confidence).
 * `cost[j]` is the cumulative cost of reaching and evaluating exit j (every layer and every head
 * evaluated on the way), so a sample leaving at j costs exactly cost[j].
 */
export function applyThresholds(test: ExitScores, T: number[], cost: number[]): ThresholdResult {
  const { M, n } = checkScores(test, 'applyThresholds');
  if (T.length !== M) throw new Error(`applyThresholds: ${T.length} thresholds for ${M} exits`);
  if (cost.length !== M) throw new Error(`applyThresholds: ${cost.length} costs for ${M} exits`);
  const exitOf = new Int32Array(n);
  const exitCounts = new Array<number>(M).fill(0);
  const hasMetric = !!(test.quality || test.labels);
  let good = 0;
  for (let s = 0; s < n; s++) {
    let j = 0;
    while (j < M - 1 && !(test.conf[j][s] >= T[j])) j++;
    exitOf[s] = j;
    exitCounts[j]++;
    if (test.quality) good += test.quality[j][s];
    else if (test.labels && test.pred[j][s] === test.labels[s]) good++;
  }
  let gflops = 0;
  for (let j = 0; j < M; j++) if (exitCounts[j]) gflops += (exitCounts[j] / n) * cost[j];
  const accuracy = hasMetric && n > 0 ? good / n : NaN;
  return { accuracy, gflops: n > 0 ? gflops : NaN, exitCounts, exitOf };
}

/**
 * The accuracy-versus-cost curve of budgeted early exiting: for each p, thresholds from the
 * validation scores, applied to the test scores. Points are sorted by expected test cost
 * (ascending; ties by p). Validation and test must carry the same used exits.
 */
export function budgetCurve(
  val: ExitScores,
  test: ExitScores,
  cost: number[],
  ps: readonly number[] = DEFAULT_PS,
): BudgetPoint[] {
  const { M, n } = checkScores(val, 'budgetCurve (validation)');
  const mt = checkScores(test, 'budgetCurve (test)').M;
  if (mt !== M) throw new Error(`budgetCurve: ${M} exits in validation but ${mt} in test`);
  if (cost.length !== M) throw new Error(`budgetCurve: ${cost.length} costs for ${M} exits`);
  // The sort orders do not depend on p: sort once for the whole sweep (as MSDNet does).
  const order = val.conf.slice(0, M - 1).map(sortDescending);
  const pts: BudgetPoint[] = ps.map((p) => {
    const thresholds = thresholdsFromOrder(val.conf, order, n, exitDistribution(p, M));
    const t = applyThresholds(test, thresholds, cost);
    const v = applyThresholds(val, thresholds, cost);
    return {
      p,
      thresholds,
      accuracy: t.accuracy,
      gflops: t.gflops,
      exitCounts: t.exitCounts,
      valAccuracy: v.accuracy,
      valGflops: v.gflops,
    };
  });
  return pts.sort((a, b) => a.gflops - b.gflops || a.p - b.p);
}

/**
 * The most accurate curve point whose expected cost fits the budget (ties: the cheaper one,
 * then the smaller p); undefined when even the cheapest point exceeds the budget. Points
 * without an accuracy (NaN) are only chosen when no point has one.
 */
export function pickForBudget(curve: readonly BudgetPoint[], gflopsBudget: number): BudgetPoint | undefined {
  // Relative slack so that a budget copied from a printed cost still admits that point.
  const limit = gflopsBudget + 1e-12 * Math.abs(gflopsBudget);
  let best: BudgetPoint | undefined;
  const acc = (x: BudgetPoint) => (Number.isNaN(x.accuracy) ? -Infinity : x.accuracy);
  for (const pt of curve) {
    if (!(pt.gflops <= limit)) continue;
    if (
      !best ||
      acc(pt) > acc(best) ||
      (acc(pt) === acc(best) && (pt.gflops < best.gflops || (pt.gflops === best.gflops && pt.p < best.p)))
    )
      best = pt;
  }
  return best;
}
