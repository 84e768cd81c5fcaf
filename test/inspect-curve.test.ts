// The Inspect exits budget slider's points (src/extension/inspectCurve.ts, no vscode), from a
// thresholds.json made by the engine's own fitThresholds and read back through JSON (so +Infinity
// and the last exit's -Infinity arrive as null, as in a run folder).

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { applyThresholds } from '../src/engine/infer/thresholds';
import { exitScores } from '../src/engine/infer/exitScores';
import { fitThresholds } from '../src/engine/run/run';
import type { SplitPredictions, ThresholdsFile } from '../src/engine/run/runFolder';
import { buildCurve } from '../src/extension/inspectCurve';

/** A split whose deeper exits are more confident and more often right (deterministic). */
function split(n: number, K: number, seed: number): SplitPredictions {
  let s = seed;
  const rnd = () => (s = (s * 1103515245 + 12345) % 2147483648) / 2147483648;
  const labels = Array.from({ length: n }, (_, i) => i % 4);
  const conf: number[][] = [];
  const pred: number[][] = [];
  for (let j = 0; j < K; j++) {
    conf.push(labels.map(() => Math.fround(0.3 + 0.6 * rnd() * ((j + 1) / K))));
    pred.push(labels.map((y) => (rnd() < 0.4 + 0.5 * (j / K) ? y : (y + 1) % 4)));
  }
  return { files: labels.map((_, i) => `/img/${i}.png`), labels, conf, pred };
}

const K = 3;
const gflops = [1, 2, 3];
const val = split(40, K, 1);
const testSplit = split(40, K, 2);
const asFile = (th: ThresholdsFile) => JSON.parse(JSON.stringify(th)) as ThresholdsFile;
const fitted = asFile(fitThresholds(val, testSplit, gflops, [0, 1, 2]));
const thresholdsAt = (c: ReturnType<typeof buildCurve>, i: number) =>
  Array.from(c.curve.thresholds.subarray(i * 3, i * 3 + 3));

test('one point per distinct set of thresholds, in order of cost, with the numbers of thresholds.json', () => {
  const c = buildCurve(fitted, K, null);
  const P = c.curve.p.length;
  const distinct = new Set(fitted.curve.map((pt) => JSON.stringify(pt.thresholds)));
  assert.equal(P, distinct.size, 'each set of thresholds once');
  assert.ok(P >= 3, `the synthetic curve has several points (${P})`);
  for (let i = 1; i < P; i++) assert.ok(c.curve.gflops[i] >= c.curve.gflops[i - 1], 'sorted by mean GFLOPs');
  for (let i = 0; i < P; i++) {
    const T = thresholdsAt(c, i);
    assert.equal(T[2], -Infinity, 'the last exit takes the rest');
    // The smallest p with these thresholds, and that curve point's test accuracy and cost.
    const same = fitted.curve.filter(
      (pt) =>
        JSON.stringify(pt.thresholds) === JSON.stringify(fitted.curve.find((q) => q.p === c.curve.p[i])!.thresholds),
    );
    assert.equal(c.curve.p[i], Math.min(...same.map((q) => q.p)));
    const r = applyThresholds(exitScores(testSplit), T, gflops);
    assert.equal(c.curve.accuracy[i], r.accuracy);
    assert.ok(Math.abs(c.curve.gflops[i] - r.gflops) < 1e-12);
  }
  // The saved point is on the curve: fitThresholds chose one of its p.
  const chosenT = fitted.chosen.thresholds.map((v, u) => (u === 2 ? -Infinity : v === null ? Infinity : v));
  assert.deepEqual(thresholdsAt(c, c.chosen), chosenT);
  assert.equal(c.curve.p[c.chosen] <= fitted.chosen.p!, true);
  assert.deepEqual(c.used, [0, 1, 2]);
});

test('saved thresholds that are on no curve point become a point of their own, where their cost puts them', () => {
  const custom = asFile({ ...fitted, chosen: { p: null, thresholds: [0.55, Infinity, -Infinity], source: 'by hand' } });
  const c = buildCurve(custom, K, testSplit);
  const base = buildCurve(fitted, K, null);
  assert.equal(c.curve.p.length, base.curve.p.length + 1);
  assert.deepEqual(thresholdsAt(c, c.chosen), [0.55, Infinity, -Infinity]);
  assert.ok(Number.isNaN(c.curve.p[c.chosen]), 'no p');
  const r = applyThresholds(exitScores(testSplit), [0.55, Infinity, -Infinity], gflops);
  assert.equal(c.curve.accuracy[c.chosen], r.accuracy, 'its accuracy from the stored test predictions');
  assert.equal(c.curve.gflops[c.chosen], r.gflops);
  for (let i = 1; i < c.curve.p.length; i++)
    assert.ok(c.curve.gflops[i] >= c.curve.gflops[i - 1], 'still sorted by cost');
  assert.equal(c.chosenSource, 'by hand');
});

test('a subset of exits (dynamicExits) keeps its own thresholds; no thresholds.json: everything to the last exit', () => {
  const sub = asFile(fitThresholds(val, testSplit, gflops, [0, 2]));
  const c = buildCurve(sub, K, null);
  assert.deepEqual(c.used, [0, 2]);
  assert.equal(c.curve.thresholds.length, 2 * c.curve.p.length);
  const none = buildCurve(null, K, null);
  assert.equal(none.curve.p.length, 1);
  assert.deepEqual(Array.from(none.curve.thresholds), [Infinity, Infinity, -Infinity]);
  assert.equal(none.chosen, 0);
  assert.match(none.chosenSource, /last exit/);
});
