// The Inspect exits webview's model (webview-ui/inspect/model.ts, no DOM): stored and streamed
// scores in the protocol's image-major layout, the summary's groups, the static accuracy per
// exit, the slider's thresholds applied to the scored images, and the grid's keyboard moves.

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { applyThresholds } from '../src/engine/infer/thresholds';
import { clampCell, gridMove, InspectModel } from '../webview-ui/inspect/model';
import type { Curve, InitMessage, ScoresMessage } from '../webview-ui/inspect/protocol';

const K = 3;
/** Two curve points over the used exits 0 and 2: exit 0 never / at conf >= 0.6; exit 2 takes the rest. */
const curve: Curve = {
  p: Float64Array.from([1, 2]),
  thresholds: Float64Array.from([Infinity, -Infinity, 0.6, -Infinity]),
  accuracy: Float64Array.from([0.9, 0.8]),
  gflops: Float64Array.from([3, 2]),
};

/** [n * K] image-major from per-image rows. */
const rows = <T extends Float32Array | Int32Array>(make: (n: number) => T, r: number[][]): T => {
  const out = make(r.length * K);
  r.forEach((row, i) => row.forEach((v, j) => (out[i * K + j] = v)));
  return out;
};

// 4 images, classes 0 / 1; exit 0 is unsure of images 2 and 3, and wrong about image 1.
const confRows = [
  [0.9, 0.95, 0.99],
  [0.7, 0.8, 0.9],
  [0.3, 0.6, 0.8],
  [0.5, 0.7, 0.95],
];
const predRows = [
  [0, 0, 0],
  [0, 1, 1],
  [1, 1, 1],
  [1, 0, 0],
];
const labels = Int32Array.from([0, 1, 1, 0]);

function initMessage(o: Partial<InitMessage> = {}): InitMessage {
  return {
    type: 'init',
    runDir: '/runs/r',
    runName: 'r',
    runs: [],
    source: { kind: 'test', paths: [], label: 'test split' },
    classes: ['a', 'b'],
    layers: Int32Array.from([4, 8, 12]),
    gflops: Float64Array.from([1, 2, 3]),
    used: Int32Array.from([0, 2]),
    curve,
    chosen: 1,
    chosenSource: 'fitted',
    files: ['/i/0.png', '/i/1.png', '/i/2.png', '/i/3.png'],
    names: ['0.png', '1.png', '2.png', '3.png'],
    labels,
    skipped: 0,
    ...o,
  };
}

test('stored scores arrive image-major [n * K] and are kept per exit', () => {
  const m = new InspectModel();
  m.load(
    initMessage({
      conf: rows((n) => new Float32Array(n), confRows),
      pred: rows((n) => new Int32Array(n), predRows),
    }),
  );
  assert.equal(m.n, 4);
  assert.equal(m.scored, 4);
  for (let i = 0; i < 4; i++)
    for (let j = 0; j < K; j++) {
      assert.equal(m.conf[j][i], Math.fround(confRows[i][j]), `conf of image ${i} at exit ${j}`);
      assert.equal(m.pred[j][i], predRows[i][j], `pred of image ${i} at exit ${j}`);
    }
  // The saved point (no point in the state): exit 0 at conf >= 0.6 takes images 0 and 1.
  assert.equal(m.point, 1);
  assert.deepEqual(Array.from(m.dyn.exitOf), [0, 0, 1, 1]);
  const res = m.dyn.res!;
  assert.deepEqual(res.exitCounts, [2, 2]);
  // Right: image 0 at exit 0, images 2 and 3 at exit 2; wrong: image 1 at exit 0 (class a for b).
  assert.equal(res.accuracy, 0.75);
  assert.equal(res.gflops, (2 / 4) * 1 + (2 / 4) * 3);
  // The same as the engine's applyThresholds on the per-exit arrays.
  const engine = applyThresholds(
    {
      conf: [0, 2].map((j) => Float32Array.from(confRows, (r) => r[j])),
      pred: [0, 2].map((j) => Int32Array.from(predRows, (r) => r[j])),
      labels,
    },
    [0.6, -Infinity],
    [1, 3],
  );
  assert.deepEqual(res, engine);
  // Static accuracy per exit over all 4 labelled images: exit 1 gets 2 of 4 right, exits 2 and 3 all.
  assert.deepEqual(m.exitAcc, [0.5, 1, 1]);
  // Per class: class a (images 0, 3), class b (images 1, 2).
  assert.deepEqual(m.classStats, [
    { name: 'a', n: 2, exitCounts: [1, 1], accuracy: 1 },
    { name: 'b', n: 2, exitCounts: [1, 1], accuracy: 0.5 },
  ]);
  assert.deepEqual(m.classExitAcc, [
    [0.5, 1, 1],
    [0.5, 1, 1],
  ]);
  // A point restored from the webview's state, and the slider moved to the other point.
  const restored = new InspectModel();
  restored.load(
    initMessage({ conf: rows((n) => new Float32Array(n), confRows), pred: rows((n) => new Int32Array(n), predRows) }),
    0,
  );
  assert.equal(restored.point, 0);
  assert.deepEqual(Array.from(restored.dyn.exitOf), [1, 1, 1, 1], 'exit 0 never taken at point 0');
  m.setPoint(0);
  assert.deepEqual(m.dyn.res!.exitCounts, [0, 4]);
  assert.equal(m.dyn.res!.accuracy, 1);
  // A point off the curve falls back to the saved one.
  const off = new InspectModel();
  off.load(initMessage(), 7);
  assert.equal(off.point, 1);
});

test('streamed scores: image-major rows of the images in `index`, unreadable ones never counted', () => {
  const m = new InspectModel();
  m.load(initMessage({ source: { kind: 'paths', paths: ['/i'], label: 'i' } }));
  assert.equal(m.scored, 0);
  assert.equal(m.dyn.res, null, 'nothing scored: no result');
  const scores: ScoresMessage = {
    type: 'scores',
    index: Int32Array.from([3, 1, 2]),
    ok: Uint8Array.from([1, 1, 0]),
    conf: rows((n) => new Float32Array(n), [confRows[3], confRows[1], [0, 0, 0]]),
    pred: rows((n) => new Int32Array(n), [predRows[3], predRows[1], [0, 0, 0]]),
    k: 2,
    // [m * K * k]: image r, exit j, rank t at (r * K + j) * k + t.
    topProb: Float32Array.from({ length: 3 * K * 2 }, (_, x) => x / 100),
    topClass: Int32Array.from({ length: 3 * K * 2 }, (_, x) => x % 2),
    scored: 2,
    total: 4,
  };
  const v0 = m.dataVersion;
  m.addScores(scores);
  assert.ok(m.dataVersion > v0);
  assert.equal(m.scored, 2);
  assert.deepEqual(Array.from(m.scoredMask), [0, 1, 2, 1]);
  assert.equal(m.conf[1][3], Math.fround(confRows[3][1]));
  assert.equal(m.pred[2][1], predRows[1][2]);
  assert.ok(Number.isNaN(m.conf[0][0]), 'image 0 not scored yet');
  // Top-k of image 1 (row 1 of the message): [K * k].
  const top = m.tops.get(1)!;
  assert.equal(top.k, 2);
  assert.deepEqual(
    Array.from(top.prob),
    [6, 7, 8, 9, 10, 11].map((x) => Math.fround(x / 100)),
  );
  assert.equal(m.tops.has(2), false, 'no top-k for an unreadable image');
  m.recompute();
  // Thresholds over the 2 scored images only: image 1 (conf 0.7) leaves at exit 0, image 3 (0.5) at exit 2.
  assert.deepEqual(Array.from(m.dyn.exitOf), [-1, 0, -1, 1]);
  assert.equal(m.dyn.res!.exitOf.length, 2);
  // Image 2 readable after all (scored again): counted once.
  m.addScores({
    ...scores,
    index: Int32Array.from([2]),
    ok: Uint8Array.from([1]),
    conf: rows((n) => new Float32Array(n), [confRows[2]]),
    pred: rows((n) => new Int32Array(n), [predRows[2]]),
    k: 0,
  });
  assert.equal(m.scored, 3);
});

test('a partly labelled folder has no overall accuracy under the thresholds, only per class', () => {
  const m = new InspectModel();
  m.load(
    initMessage({
      source: { kind: 'paths', paths: ['/i'], label: 'i' },
      labels: Int32Array.from([0, -1, 1, 0]),
      conf: rows((n) => new Float32Array(n), confRows),
      pred: rows((n) => new Int32Array(n), predRows),
    }),
  );
  assert.ok(Number.isNaN(m.dyn.res!.accuracy));
  assert.equal(m.classStats[0].n + m.classStats[1].n, 3, 'the unlabelled image is in no class');
  assert.deepEqual(m.exitAcc, [2 / 3, 1, 1]);
});

test('regression: groups per target value (at most 12) or 8 ranges, MAE as -quality', () => {
  const reg = (targets: number[]) => {
    const n = targets.length;
    const values = targets.map((t, i) => [t + 1, t + 0.5, t + (i % 2 ? 0.25 : -0.25)]);
    const m = new InspectModel();
    m.load(
      initMessage({
        task: 'regression',
        files: targets.map((_, i) => `/i/${i}.png`),
        names: targets.map((_, i) => `${i}.png`),
        labels: new Int32Array(n).fill(-1),
        targets: Float64Array.from(targets),
        targetScale: 2,
        // Agreement with the previous exit (NaN at exit 1).
        conf: rows(
          (x) => new Float32Array(x),
          values.map((v) => [NaN, -Math.abs(v[1] - v[0]), -Math.abs(v[2] - v[1])]),
        ),
        pred: new Int32Array(n * K).fill(-1),
        value: rows((x) => new Float32Array(x), values),
      }),
    );
    return m;
  };
  const few = reg([1, 2, 2, 3]);
  assert.equal(few.scale, 2);
  assert.deepEqual(few.groupNames, ['= 1', '= 2', '= 3']);
  assert.deepEqual(Array.from(few.groupOf), [0, 1, 1, 2]);
  // Static "accuracy" is -MAE per exit: errors 1, 0.5, 0.25.
  assert.deepEqual(few.exitAcc, [-1, -0.5, -0.25]);
  assert.equal(few.val[2][1], Math.fround(2.25));

  const many = reg(Array.from({ length: 20 }, (_, i) => i));
  assert.equal(many.groupNames.length, 8);
  assert.equal(many.groupNames[7], '[16.63, 19]', 'the last range is closed');
  assert.equal(many.groupOf[0], 0);
  assert.equal(many.groupOf[19], 7, 'the largest target is in the last range');
  assert.equal(
    many.classStats.reduce((a, c) => a + c.n, 0),
    20,
  );
});

test('detail scores: a regression image scored before its chunk counts; top-k of a stored image keeps its scores', () => {
  const m = new InspectModel();
  m.load(
    initMessage({ conf: rows((n) => new Float32Array(n), confRows), pred: rows((n) => new Int32Array(n), predRows) }),
  );
  const detail = {
    type: 'detail' as const,
    index: 2,
    uri: null,
    k: 2,
    conf: Float32Array.from([0.1, 0.1, 0.1]),
    pred: Int32Array.from([0, 0, 0]),
    topProb: new Float32Array(K * 2).fill(0.5),
    topClass: new Int32Array(K * 2),
  };
  assert.equal(m.addDetail(detail), false, 'stored test-split scores stay');
  assert.equal(m.conf[0][2], Math.fround(0.3));
  assert.equal(m.tops.get(2)!.k, 2);

  const r = new InspectModel();
  r.load(
    initMessage({
      task: 'regression',
      source: { kind: 'paths', paths: ['/i'], label: 'i' },
      labels: new Int32Array(4).fill(-1),
      targets: Float64Array.from([1, 2, 3, 4]),
    }),
  );
  const changed = r.addDetail({
    ...detail,
    k: 0,
    topProb: new Float32Array(0),
    topClass: new Int32Array(0),
    conf: Float32Array.from([NaN, -0.5, -0.25]),
    value: Float32Array.from([3.5, 3, 3.25]),
  });
  assert.equal(changed, true);
  assert.equal(r.scored, 1);
  assert.equal(r.val[1][2], 3);
  assert.equal(r.conf[2][2], -0.25);
});

test('grid keys: arrows, pages, Home / End move the active cell; Enter and Space select; cells are clamped', () => {
  const n = 10;
  assert.deepEqual(gridMove('ArrowDown', -1, 0, 5, n), { kind: 'active', row: 0, col: 0 });
  assert.deepEqual(gridMove('ArrowUp', 0, 2, 5, n), { kind: 'active', row: 0, col: 2 });
  assert.deepEqual(gridMove('ArrowRight', -1, 0, 5, n), { kind: 'active', row: 0, col: 1 });
  assert.deepEqual(gridMove('ArrowLeft', 4, 1, 5, n), { kind: 'active', row: 4, col: 0 });
  assert.deepEqual(gridMove('PageDown', 4, 1, 5, n), { kind: 'active', row: 9, col: 1 });
  assert.deepEqual(gridMove('PageUp', 4, 1, 5, n), { kind: 'active', row: -1, col: 1 });
  assert.deepEqual(gridMove('Home', 4, 3, 5, n), { kind: 'active', row: 0, col: 3 });
  assert.deepEqual(gridMove('End', 4, 3, 5, n), { kind: 'active', row: 9, col: 3 });
  assert.deepEqual(gridMove('Enter', -1, 0, 5, n), { kind: 'select', row: 0 });
  assert.deepEqual(gridMove(' ', 6, 0, 5, n), { kind: 'select', row: 6 });
  assert.equal(gridMove('a', 6, 0, 5, n), null);
  assert.equal(gridMove('toString', 6, 0, 5, n), null);
  assert.deepEqual(clampCell(-1, 9, n, K), { row: 0, col: K });
  assert.deepEqual(clampCell(12, -1, n, K), { row: n - 1, col: 0 });
});
