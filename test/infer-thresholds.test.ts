// MSDNet budgeted early exiting: a hand-worked case, MSDNet's code transliterated as an oracle,
// and the properties the sweep over p relies on.

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import {
  applyThresholds,
  budgetCurve,
  type BudgetPoint,
  DEFAULT_PS,
  exitDistribution,
  exitQuota,
  type ExitScores,
  findThresholds,
  pickForBudget,
} from '../src/engine/infer/thresholds';
import { rng } from './helpers';

const f32 = (xs: number[]) => Float32Array.from(xs);
const i32 = (xs: number[]) => Int32Array.from(xs);
const fr = Math.fround;

// ---------------------------------------------------------------- the hand-worked case
//
// n = 10 samples, M = 3 exits, p = 0.5.
//   p^j = 0.5, 0.25, 0.125; sum 0.875  →  q = 4/7, 2/7, 1/7 ≈ 0.5714, 0.2857, 0.1429
//   quotas ⌊n·q_j⌋ = ⌊5.714⌋ = 5 at exit 1, ⌊2.857⌋ = 2 at exit 2.
//
// sample      0    1    2    3    4    5    6    7    8    9
// conf1     .95  .40  .85  .30  .70  .20  .90  .50  .60  .10
// conf2     .99  .55  .97  .80  .45  .65  .98  .35  .75  .60
// conf3     .50  .50  .50  .50  .50  .50  .50  .50  .50  .50   (never looked at: T3 = -inf)
//
// Exit 1: sorted by conf1 desc: s0 .95, s6 .90, s2 .85, s4 .70, s8 .60 | s7 .50, s1 .40, ...
//   nobody has exited yet, so the 5th is s8 → T1 = .60; exited = {0, 6, 2, 4, 8}.
// Exit 2: sorted by conf2 desc: s0 .99(x), s6 .98(x), s2 .97(x), s3 .80, s8 .75(x), s5 .65, ...
//   counting only the not-exited: s3 (1st), s5 (2nd) → T2 = .65 (not .97, the 2nd overall,
//   and not .75, which belongs to an exited sample); s3 and s5 leave at exit 2.
// Exit 3: T3 = -inf; s1, s7, s9 leave there.
// T = [.60, .65, -inf]; exit counts [5, 2, 3].
//
// Predictions against labels = sample index:
//   exit 1 is right for s0, s6, s2, wrong for s4, s8           → 3
//   exit 2 is right for s3, wrong for s5                      → 1
//   exit 3 is right for s1, s7, wrong for s9                  → 2
//   (other entries are set to the opposite, to show they are never consulted)
//   accuracy = 6/10 = 0.6.
// With cumulative costs [1, 2, 4]: expected cost = (5·1 + 2·2 + 3·4)/10 = 21/10 = 2.1.
const W = -1; // a wrong prediction
const hand: ExitScores = {
  conf: [
    f32([0.95, 0.4, 0.85, 0.3, 0.7, 0.2, 0.9, 0.5, 0.6, 0.1]),
    f32([0.99, 0.55, 0.97, 0.8, 0.45, 0.65, 0.98, 0.35, 0.75, 0.6]),
    f32([0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]),
  ],
  pred: [i32([0, W, 2, W, W, W, 6, W, W, W]), i32([W, 1, W, 3, 4, W, W, 7, 8, 9]), i32([W, 1, W, W, 4, 5, W, 7, 8, W])],
  labels: i32([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]),
};

test('hand-worked: q, quotas, thresholds, exits, accuracy and cost', () => {
  const q = exitDistribution(0.5, 3);
  [4 / 7, 2 / 7, 1 / 7].forEach((v, i) => assert.ok(Math.abs(q[i] - v) < 1e-15));
  assert.deepEqual([exitQuota(10, q[0]), exitQuota(10, q[1])], [5, 2]);

  const T = findThresholds(hand, 0.5);
  assert.deepEqual(T, [fr(0.6), fr(0.65), -Infinity]);

  const r = applyThresholds(hand, T, [1, 2, 4]);
  assert.deepEqual(r.exitCounts, [5, 2, 3]);
  assert.deepEqual([...r.exitOf], [0, 2, 0, 1, 0, 1, 0, 2, 0, 2]);
  assert.equal(r.accuracy, 0.6);
  assert.ok(Math.abs(r.gflops - 2.1) < 1e-12);
});

test('hand-worked thresholds applied to other (test) samples: >= and the catch-all last exit', () => {
  // T = [.60, .65, -inf]
  const T = findThresholds(hand, 0.5);
  const testSet: ExitScores = {
    conf: [
      f32([0.6, 0.59, 0.59, 0.1, NaN]), // s0 exactly at T1 → exits 1 (>=)
      f32([0.1, 0.65, 0.64, 0.1, NaN]), // s1 exactly at T2 → exits 2; s2 just below → exit 3
      f32([0, 0, 0, -Infinity, NaN]), //   the last exit accepts anything, even -inf and NaN
    ],
    pred: [i32([1, 0, 0, 0, 0]), i32([0, 1, 0, 0, 0]), i32([0, 0, 2, 3, 9])],
    labels: i32([1, 1, 2, 3, 4]),
  };
  const r = applyThresholds(testSet, T, [10, 20, 30]);
  assert.deepEqual([...r.exitOf], [0, 1, 2, 2, 2]);
  assert.deepEqual(r.exitCounts, [1, 1, 3]);
  assert.equal(r.accuracy, 4 / 5);
  assert.ok(Math.abs(r.gflops - (10 + 20 + 90) / 5) < 1e-12);
});

// ---------------------------------------------------------------- MSDNet, transliterated

/** adaptive_inference.py's dynamic_eval_find_threshold, loop for loop (thresholds only). */
function msdnetThresholds(conf: Float32Array[], p: number): number[] {
  const m = conf.length;
  const n = conf[0].length;
  const probs = exitDistribution(p, m);
  // max_preds.sort(dim=1, descending=True); order among ties does not change the result.
  const sortedIdx = conf.map((c) => Array.from(c.keys()).sort((a, b) => c[b] - c[a]));
  const filtered = new Float64Array(n);
  const T = new Array<number>(m).fill(1e8);
  for (let k = 0; k < m - 1; k++) {
    let count = 0;
    const outN = exitQuota(n, probs[k]);
    for (let i = 0; i < n; i++) {
      const ori = sortedIdx[k][i];
      if (filtered[ori] === 0) {
        count += 1;
        if (count === outN) {
          T[k] = conf[k][ori];
          break;
        }
      }
    }
    for (let i = 0; i < n; i++) filtered[i] += conf[k][i] >= T[k] ? 1 : 0;
  }
  T[m - 1] = -1e8;
  return T;
}

/** Random confidences on a coarse grid, so that ties are frequent. */
function randomScores(r: () => number, M: number, n: number, levels: number, classes = 5): ExitScores {
  const grid = (x: number) => (levels ? Math.round(x * levels) / levels : x);
  const labels = i32(Array.from({ length: n }, () => Math.floor(r() * classes)));
  return {
    conf: Array.from({ length: M }, (_, j) =>
      f32(Array.from({ length: n }, () => grid(Math.min(1, r() * 0.6 + 0.1 * j)))),
    ),
    pred: Array.from({ length: M }, (_, j) =>
      i32(Array.from(labels, (y) => (r() < 0.4 + 0.1 * j ? y : (y + 1) % classes))),
    ),
    labels,
  };
}

test('findThresholds equals MSDNet transliterated, with and without ties, for every p of the sweep', () => {
  const r = rng(7);
  for (const [M, n, levels] of [
    [1, 20, 0],
    [2, 13, 0],
    [3, 50, 10],
    [4, 97, 0],
    [7, 200, 20],
    [7, 31, 3],
  ] as const) {
    const s = randomScores(r, M, n, levels);
    for (const p of [...DEFAULT_PS, 1e-3, 7, 1e3]) {
      const ours = findThresholds(s, p);
      const ref = msdnetThresholds(s.conf, p).map((t) => (t === 1e8 ? Infinity : t === -1e8 ? -Infinity : t));
      assert.deepEqual(ours, ref, `M=${M} n=${n} levels=${levels} p=${p}`);
    }
  }
});

// ---------------------------------------------------------------- properties

test('without ties, exactly ⌊n·q_j⌋ validation samples leave at each early exit', () => {
  const r = rng(11);
  const n = 101;
  const s = randomScores(r, 5, n, 0); // continuous confidences: no ties
  for (const p of DEFAULT_PS) {
    const q = exitDistribution(p, 5);
    const res = applyThresholds(s, findThresholds(s, p), [1, 2, 3, 4, 5]);
    const quota = q.slice(0, 4).map((x) => exitQuota(n, x));
    assert.deepEqual(res.exitCounts.slice(0, 4), quota, `p=${p}`);
    assert.equal(res.exitCounts[4], n - quota.reduce((a, b) => a + b, 0));
  }
});

test('exit quota is exact for products that are integers mathematically', () => {
  assert.equal(100 * 0.29, 28.999999999999996); // why exitQuota has a slack
  assert.equal(exitQuota(100, 0.29), 29);
  assert.equal(exitQuota(10, 0.5714), 5);
  assert.equal(exitQuota(10, 0.0999), 0);
  assert.equal(exitQuota(3, 1 / 3), 1);
});

test('large p sends everything to the last exit, small p almost everything to the first', () => {
  const s = randomScores(rng(3), 3, 40, 0);
  const big = applyThresholds(s, findThresholds(s, 1e3), [1, 2, 3]);
  assert.deepEqual(findThresholds(s, 1e3), [Infinity, Infinity, -Infinity]); // ⌊n·q_j⌋ = 0
  assert.deepEqual(big.exitCounts, [0, 0, 40]);
  assert.equal(big.gflops, 3);
  const small = applyThresholds(s, findThresholds(s, 1e-3), [1, 2, 3]);
  // q_1 = 1/(1 + 1e-3 + 1e-6) → ⌊40·q_1⌋ = 39; q_2 ≈ 1e-3 → 0, so the last one goes to exit 3.
  assert.deepEqual(small.exitCounts, [39, 0, 1]);
});

test('as p grows the first exit keeps fewer samples and the validation cost does not fall', () => {
  const s = randomScores(rng(5), 4, 300, 25); // with ties
  let prevFirst = Infinity;
  let prevT1 = -Infinity;
  for (const p of DEFAULT_PS) {
    const T = findThresholds(s, p);
    const res = applyThresholds(s, T, [1, 2, 3, 4]);
    assert.ok(T[0] >= prevT1, `T1 non-decreasing in p (p=${p})`);
    assert.ok(res.exitCounts[0] <= prevFirst, `exit-1 count non-increasing in p (p=${p})`);
    prevT1 = T[0];
    prevFirst = res.exitCounts[0];
  }
});

test('each sample leaves at its first passing exit; the exited set only grows', () => {
  const s = randomScores(rng(9), 5, 120, 8);
  for (const p of [0.2, 0.9, 1.4]) {
    const T = findThresholds(s, p);
    assert.equal(T[4], -Infinity);
    const { exitOf } = applyThresholds(s, T, [1, 2, 3, 4, 5]);
    for (let i = 0; i < 120; i++) {
      const j = exitOf[i];
      if (j < 4) assert.ok(s.conf[j][i] >= T[j]);
      for (let k = 0; k < j; k++) assert.ok(!(s.conf[k][i] >= T[k]));
    }
  }
});

test('ties: every sample at the threshold leaves, and a starved later exit gets +inf', () => {
  // Exit 1: quota 5 but conf1 = .9 .8 .7 .6 .6 .6 .5 ... → T1 = .6 and 6 leave (ties included).
  const tie: ExitScores = {
    conf: [
      f32([0.9, 0.8, 0.7, 0.6, 0.6, 0.6, 0.5, 0.4, 0.3, 0.2]),
      f32(new Array(10).fill(0.5)),
      f32(new Array(10).fill(0)),
    ],
    pred: [i32(new Array(10).fill(0)), i32(new Array(10).fill(0)), i32(new Array(10).fill(0))],
    labels: i32(new Array(10).fill(0)),
  };
  const T = findThresholds(tie, 0.5);
  assert.equal(T[0], fr(0.6));
  // Exit 2: quota 2 among the 4 left, all at .5 → T2 = .5 and all 4 leave.
  assert.equal(T[1], 0.5);
  assert.deepEqual(applyThresholds(tie, T, [1, 2, 3]).exitCounts, [6, 4, 0]);

  // All confidences equal at exit 1: T1 = that value and all 10 leave; at exit 2 the quota of 2
  // cannot be met (0 left), so MSDNet leaves T2 at its initial value (here +inf).
  const flat: ExitScores = { ...tie, conf: [f32(new Array(10).fill(0.3)), tie.conf[1], tie.conf[2]] };
  const T2 = findThresholds(flat, 0.5);
  assert.deepEqual(T2, [fr(0.3), Infinity, -Infinity]);
  assert.deepEqual(applyThresholds(flat, T2, [1, 2, 3]).exitCounts, [10, 0, 0]);
});

test('one exit, no labels, quality instead of top-1, and input checks', () => {
  const one: ExitScores = { conf: [f32([0.1, 0.9])], pred: [i32([1, 1])], labels: i32([1, 0]) };
  assert.deepEqual(findThresholds(one, 0.5), [-Infinity]);
  const r = applyThresholds(one, [-Infinity], [3.5]);
  assert.deepEqual(r.exitCounts, [2]);
  assert.equal(r.accuracy, 0.5);
  assert.equal(r.gflops, 3.5);

  const noLabels: ExitScores = { conf: one.conf, pred: one.pred };
  assert.ok(Number.isNaN(applyThresholds(noLabels, [-Infinity], [1]).accuracy));

  // Regression-style: confidence is any score, quality the per-sample metric to average.
  const reg: ExitScores = {
    conf: [f32([-5, 3, 10]), f32([0, 0, 0])],
    pred: [i32([0, 0, 0]), i32([0, 0, 0])],
    quality: [f32([-1, -2, -3]), f32([-0.5, -0.5, -0.5])],
  };
  const rr = applyThresholds(reg, [2, -Infinity], [1, 2]);
  assert.deepEqual([...rr.exitOf], [1, 0, 0]);
  assert.equal(rr.accuracy, (-0.5 - 2 - 3) / 3);

  assert.throws(() => applyThresholds(hand, [0, 0], [1, 2, 3]), /2 thresholds for 3 exits/);
  assert.throws(() => applyThresholds(hand, [0, 0, 0], [1, 2]), /2 costs for 3 exits/);
  assert.throws(
    () => findThresholds({ conf: [f32([1, 2]), f32([1])], pred: [i32([0, 0]), i32([0])] }, 1),
    /different number of samples/,
  );
  assert.throws(() => findThresholds(hand, 0), /positive/);
});

test('an exit subset is just fewer rows: exits {1, 3} of the hand case', () => {
  const sub: ExitScores = {
    conf: [hand.conf[0], hand.conf[2]],
    pred: [hand.pred[0], hand.pred[2]],
    labels: hand.labels,
  };
  // M = 2, p = 0.5: q = [2/3, 1/3] → quota ⌊6.67⌋ = 6 → the 6th by conf1 is s7 (.50): T1 = .5.
  const T = findThresholds(sub, 0.5);
  assert.deepEqual(T, [fr(0.5), -Infinity]);
  const r = applyThresholds(sub, T, [1, 4]);
  assert.deepEqual(r.exitCounts, [6, 4]);
  // Exit 1 takes s0 s6 s2 s4 s8 s7 and is right for s0, s2, s6 (3); exit 3 takes s1 s3 s5 s9
  // and its predictions are right for s1 and s5 (2): accuracy (3 + 2)/10.
  assert.equal(r.accuracy, 0.5);
  assert.ok(Math.abs(r.gflops - (6 * 1 + 4 * 4) / 10) < 1e-12);
});

test('budgetCurve: one point per p, sorted by cost, validation figures kept', () => {
  const r = rng(21);
  const val = randomScores(r, 3, 200, 0);
  const tst = randomScores(r, 3, 150, 0);
  const cost = [8.84, 13.2, 17.56];
  const curve = budgetCurve(val, tst, cost);
  assert.equal(curve.length, 39);
  assert.deepEqual(
    curve.map((c) => c.p).sort((a, b) => a - b),
    [...DEFAULT_PS],
  );
  for (let i = 1; i < curve.length; i++) assert.ok(curve[i].gflops >= curve[i - 1].gflops);
  for (const pt of curve) {
    const T = findThresholds(val, pt.p);
    assert.deepEqual(pt.thresholds, T);
    const t = applyThresholds(tst, T, cost);
    const v = applyThresholds(val, T, cost);
    assert.equal(pt.accuracy, t.accuracy);
    assert.equal(pt.gflops, t.gflops);
    assert.deepEqual(pt.exitCounts, t.exitCounts);
    assert.equal(pt.valAccuracy, v.accuracy);
    assert.equal(pt.valGflops, v.gflops);
    assert.ok(pt.gflops >= cost[0] - 1e-12 && pt.gflops <= cost[2] + 1e-12);
  }
  assert.throws(() => budgetCurve(val, randomScores(r, 2, 10, 0), cost), /3 exits in validation but 2 in test/);
});

test('pickForBudget: best accuracy within the budget; ties go to the cheaper point', () => {
  const pt = (p: number, gflops: number, accuracy: number): BudgetPoint => ({
    p,
    gflops,
    accuracy,
    thresholds: [],
    exitCounts: [],
    valAccuracy: NaN,
    valGflops: NaN,
  });
  const curve = [pt(0.1, 9, 0.7), pt(0.2, 10, 0.75), pt(0.3, 11, 0.74), pt(0.4, 12, 0.75), pt(0.5, 13, 0.8)];
  assert.equal(pickForBudget(curve, 8.99), undefined);
  assert.equal(pickForBudget(curve, 9)!.p, 0.1);
  assert.equal(pickForBudget(curve, 11.5)!.p, 0.2);
  assert.equal(pickForBudget(curve, 12.5)!.p, 0.2); // 0.75 at 10 beats 0.75 at 12
  assert.equal(pickForBudget(curve, 100)!.p, 0.5);
  assert.equal(pickForBudget([pt(1, 5, NaN), pt(2, 6, 0.1)], 10)!.p, 2);
});
