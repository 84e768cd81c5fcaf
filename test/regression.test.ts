// Regression exits (issue 6, item 3): target files, loss, metrics, the agreement confidence with
// MSDNet threshold fitting, and a run end to end on generated counting images with the tiny ViT.

import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { Graph } from '../src/engine/graph/ir';
import { compile } from '../src/engine/graph/onnx';
import { renderCounting, writeCountingFolder } from '../src/engine/demo/shapes';
import { scanRegression } from '../src/engine/data/targets';
import { joinTargets, parseTargets } from '../src/engine/data/targetsFile';
import { agreementConfidence } from '../src/engine/infer/exitScores';
import { regressionExitLoss, regressionMetrics, targetStats } from '../src/engine/model/regression';
import { applyThresholds, findThresholds } from '../src/engine/infer/thresholds';
import { exitScores } from '../src/engine/infer/exitScores';
import type { RunSummary, SplitPredictions } from '../src/engine/run/runFolder';
import { Session } from '../src/engine/runtime/session';
import { RunCache } from '../src/engine/explore/runCache';
import { scoreImages } from '../src/engine/explore/score';
import { computeSimilarity } from '../src/engine/explore/similarity';
import { countingRun, met } from './tiny-run';

test('CSV targets: header, quotes, comments; bad values are entries with a problem', () => {
  const e = parseTargets('file,value\n# note\n\na.png,1.5\n"b,c.png",2\n./sub\\d.png,\ne.png,abc\n', 'targets.csv');
  assert.deepEqual(
    e.map((x) => x.key),
    ['a.png', 'b,c.png', 'sub/d.png', 'e.png'],
  );
  assert.equal(e[0].value, 1.5);
  assert.equal(e[1].value, 2);
  assert.equal(e[2].problem, 'no value');
  assert.equal(e[2].where, 'targets.csv line 6');
  assert.match(e[3].problem!, /"abc" is not a number/);
  assert.equal(e[3].where, 'targets.csv line 7');
});

test('target file errors name the file and the line or key', () => {
  assert.throws(
    () => parseTargets('file,value\na.png,1\nb.png,2,3\n', 'targets.csv'),
    /targets\.csv line 3: expected 2 fields \(file,value\), found 3/,
  );
  assert.throws(
    () => parseTargets('a.png,1\nb.png,2\na.png,3\n', 'labels.csv'),
    /labels\.csv line 3: 'a\.png' is listed twice \(first at labels\.csv line 1\)/,
  );
  assert.throws(() => parseTargets('{"a.png": 1,', 'targets.json'), /targets\.json: not valid JSON/);
  assert.throws(() => parseTargets('[1, 2]', 'targets.json'), /targets\.json: expected an object/);
  const j = parseTargets('{"a.png": 3, "b.png": "4.5", "c.png": null, "d.png": true}', 'targets.json');
  assert.deepEqual(j.map((x) => x.value).slice(0, 2), [3, 4.5]);
  assert.equal(j[2].problem, 'no value');
  assert.match(j[3].where, /targets\.json key "d\.png"/);
});

test('joining targets to images: missing and bad values are skipped with the reason, unknown names warned', () => {
  const root = '/data';
  const imgs = ['/data/x/a.png', '/data/b.png', '/data/c.png', '/data/d.png'];
  const e = parseTargets('a.png,1\nb.png,2\nc.png,zz\nnope.png,3\n', 'targets.csv');
  const r = joinTargets(root, imgs, e, 'targets.csv');
  assert.deepEqual(
    r.samples.map((s) => [s.file, s.value]),
    [
      ['/data/x/a.png', 1],
      ['/data/b.png', 2],
    ],
  );
  assert.deepEqual(
    r.skipped.map((s) => s.file),
    ['/data/c.png', '/data/d.png'],
  );
  assert.match(r.skipped[0].reason, /targets\.csv line 3: value "zz" is not a number/);
  assert.equal(r.skipped[1].reason, 'no value in targets.csv');
  assert.match(r.warnings[0], /nope\.png \(targets\.csv line 4\)/);
});

test('regression losses (MSE, L1) in the graph equal a direct computation', async () => {
  const y = Float32Array.from([0.5, -1, 2, 0.25]);
  const t = Float32Array.from([1, -1, 0, 3]);
  for (const kind of ['mse', 'l1'] as const) {
    const g = new Graph();
    const yi = g.input('y', ['B', 1]);
    const ti = g.input('t', ['B', 1]);
    const s = await Session.create(compile(g, { loss: regressionExitLoss(g, kind, yi, ti) }, { name: 'regloss' }));
    const r = await s.run({
      y: { dtype: 'float32', shape: [4, 1], data: y },
      t: { dtype: 'float32', shape: [4, 1], data: t },
    });
    await s.release();
    const want = kind === 'mse' ? (0.25 + 0 + 4 + 7.5625) / 4 : (0.5 + 0 + 2 + 2.75) / 4;
    assert.ok(Math.abs(Number(r.loss.data[0]) - want) < 1e-6, `${kind}: ${r.loss.data[0]} vs ${want}`);
  }
});

test('MAE, RMSE, target statistics and the agreement confidence by hand', () => {
  const m = regressionMetrics([1, 2, 4], [1, 3, 1]);
  assert.equal(m.mae, 4 / 3);
  assert.ok(Math.abs(m.rmse - Math.sqrt(10 / 3)) < 1e-12);
  assert.ok(Number.isNaN(regressionMetrics([], []).mae));
  assert.deepEqual(targetStats([2, 4]), { mean: 3, std: 1 });
  assert.deepEqual(targetStats([5, 5]), { mean: 5, std: 1 }); // constant: no division by zero
  const c = agreementConfidence([
    [1, 2, 3],
    [1.5, 2, 1],
    [1.5, 2.25, 2],
  ]);
  assert.ok(c[0].every(Number.isNaN));
  assert.deepEqual(Array.from(c[1]), [-0.5, -0, -2]);
  assert.deepEqual(Array.from(c[2]), [-0, -0.25, -1]);
});

test('threshold fitting on agreement confidences: a hand-worked case', () => {
  // 3 exits, 4 val samples. values[exit][sample]; targets t.
  const pred = [
    [0, 0, 0, 0],
    [1, 2, 3, 4], // agreement with exit 1: -1, -2, -3, -4
    [1.5, 2, 3, 8], // agreement with exit 2: -0.5, 0, 0, -4
  ];
  const t = [1, 2, 3, 5];
  const p: SplitPredictions = { task: 'regression', files: ['a', 'b', 'c', 'd'], labels: t, conf: [[], [], []], pred };
  const s = exitScores(p);
  // p = 1: q = 1/3 each; quota ⌊4/3⌋ = 1 per early exit. Exit 1: NaN confidences -> T1 = NaN, nobody.
  // Exit 2: the most confident is sample a (-1) -> T2 = -1, a leaves. Exit 3 takes b, c, d.
  const T = findThresholds(s, 1);
  assert.ok(Number.isNaN(T[0]));
  assert.equal(T[1], -1);
  assert.equal(T[2], -Infinity);
  const r = applyThresholds(s, T, [1, 2, 3]);
  assert.deepEqual(Array.from(r.exitOf), [1, 2, 2, 2]);
  // quality -|error|: a at exit 2 (0), b (0), c (0), d (3) -> accuracy = -MAE = -0.75
  assert.equal(r.accuracy, -0.75);
  assert.equal(r.gflops, (2 + 3 * 3) / 4);
});

test('counting images: the count is the number of shapes, placed without overlap; the folder reads back', async () => {
  for (let i = 0; i < 20; i++) {
    const r = renderCounting(3, i, { size: 32, maxCount: 5 });
    assert.ok(r.count >= 1 && r.count <= 5);
  }
  const a = renderCounting(3, 7);
  assert.deepEqual(a.pixels, renderCounting(3, 7).pixels); // deterministic
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'met-count-'));
  const w = await writeCountingFolder({ out: path.join(dir, 'c'), n: 30, seed: 2, maxCount: 3, targets: 'json' });
  const ds = await scanRegression({ root: path.join(dir, 'c'), seed: 0 });
  assert.equal(ds.train.length + ds.val.length + ds.test.length, 30);
  assert.equal(ds.skipped.length, 0);
  for (const s of [...ds.train, ...ds.val, ...ds.test])
    assert.equal(s.value, w.counts[w.files.indexOf(path.basename(s.file))]);
  const again = await scanRegression({ root: path.join(dir, 'c'), seed: 0 });
  assert.deepEqual(
    again.test.map((s) => s.file),
    ds.test.map((s) => s.file),
  );
});

test(
  'a regression run end to end on counting images (tiny ViT): MAE per exit finite, later exits beat the mean',
  { timeout: 600_000 },
  async () => {
    const { run, r } = await countingRun('met-reg-', { n: 200, seed: 1, epochs: 5 });
    assert.equal(r.code, 0, r.err);
    const s = JSON.parse(fs.readFileSync(path.join(run, 'summary.json'), 'utf8')) as RunSummary;
    const preds = JSON.parse(fs.readFileSync(path.join(run, 'predictions.json'), 'utf8')) as {
      val: SplitPredictions;
      test: SplitPredictions;
    };
    const t = preds.test.labels;
    const trainMean = JSON.parse(fs.readFileSync(path.join(run, 'config.json'), 'utf8')).met.targetMean as number;
    const baseline = regressionMetrics(
      t.map(() => trainMean),
      t,
    ).mae;
    assert.equal(s.task, 'regression');
    for (const e of s.exits) assert.ok(Number.isFinite(e.mae) && Number.isFinite(e.rmse), JSON.stringify(e));
    // The summary's metrics are those of the stored predictions.
    s.exits.forEach((e, j) => assert.ok(Math.abs(e.mae! - regressionMetrics(preds.test.pred[j], t).mae) < 1e-9));
    assert.ok(
      s.exits[1].mae! < baseline && s.exits[2].mae! < baseline,
      `MAE ${s.exits.map((e) => e.mae)} vs mean predictor ${baseline}`,
    );
    // met eval prints MAE / RMSE / GFLOPs and the dynamic curve.
    const ev = met(['eval', '--run', run, '--threads', '1']);
    assert.equal(ev.code, 0, ev.err);
    assert.match(ev.out, /MAE\s+RMSE\s+GFLOPs/);
    assert.match(ev.out, /dynamic \(agreement of consecutive exits/);

    // The Inspect exits panel's engine request on a regression run: each exit's value and the
    // agreement confidence, bit-identical to met predict --run (same predictor, same batching), and
    // the exit met predict takes; no classes, so no top-k.
    const files = preds.test.files.slice(0, 6);
    const cache = new RunCache();
    try {
      const sc = await scoreImages(cache, { runDir: run, files });
      const cli = met(['predict', '--run', run, '--json', ...files]);
      assert.equal(cli.code, 0, cli.err);
      const p = JSON.parse(cli.out) as {
        file: string;
        exits: { value: number; confidence: number | null }[];
        exit: number;
      }[];
      const K = 3;
      assert.equal(sc.task, 'regression');
      assert.equal(sc.topProb.length, 0);
      files.forEach((f, i) => {
        assert.equal(p[i].file, f);
        for (let j = 0; j < K; j++) {
          assert.equal(sc.value![i * K + j], p[i].exits[j].value, `${f} exit ${j + 1}: value`);
          const c = sc.conf[i * K + j];
          assert.equal(Number.isNaN(c) ? null : c, p[i].exits[j].confidence, `${f} exit ${j + 1}: agreement`);
          assert.equal(sc.pred[i * K + j], -1);
        }
        assert.equal(sc.exitTaken[i] + 1, p[i].exit, `${f}: exit taken`);
        // And the values are the stored test predictions (scored in batches of 64, not 32: equal up
        // to float rounding).
        for (let j = 0; j < K; j++)
          assert.ok(
            Math.abs(sc.value![i * K + j] - preds.test.pred[j][i]) <=
              1e-4 * Math.max(1, Math.abs(preds.test.pred[j][i])),
            `${f} exit ${j + 1}: ${sc.value![i * K + j]} vs stored ${preds.test.pred[j][i]}`,
          );
      });
      // Graph regularization (and so the similarity panel) needs classes: refused with the reason.
      await assert.rejects(computeSimilarity(cache, { runDir: run, exits: [0, 1] }), /regression run has no classes/);
    } finally {
      await cache.clear();
    }
  },
);
