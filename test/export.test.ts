// `met export` end to end: a tiny run trained in the test, exported, and run by
// examples/run-exported.mjs (onnxruntime-node + sharp, none of our code) as a child process.
// Budgeted early exit through the exported files must reproduce, to the sample, the dynamic
// point `met eval` reports for the same thresholds.

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ExportManifest } from '../src/engine/export/export';
import { exitScores } from '../src/engine/infer/exitScores';
import { applyThresholds } from '../src/engine/infer/thresholds';
import {
  chosenOperatingPoint,
  decodeThreshold,
  encodeThreshold,
  type JsonThreshold,
  type SplitPredictions,
  type ThresholdsFile,
} from '../src/engine/run/runFolder';
import { countingRun, met, ROOT, tinyRun } from './tiny-run';

const EXAMPLE = path.join(ROOT, 'examples', 'run-exported.mjs');

interface ExampleResult {
  images: number;
  correct: number;
  accuracy: number;
  gflops: number;
  exitCounts: number[];
}

function runExample(exportDir: string, dataDir: string, extra: string[] = []): ExampleResult {
  const r = spawnSync(process.execPath, [EXAMPLE, exportDir, dataDir, '--json', ...extra], {
    encoding: 'utf8',
    timeout: 120_000,
  });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as ExampleResult;
}

/** The test split as a folder of class sub-folders (symlinks to the run's own files). */
function testSplitFolder(root: string, p: SplitPredictions, classes: string[]): string {
  const dir = path.join(root, 'test-split');
  fs.rmSync(dir, { recursive: true, force: true });
  p.files.forEach((f, i) => {
    const d = path.join(dir, classes[p.labels[i]]);
    fs.mkdirSync(d, { recursive: true });
    fs.symlinkSync(f, path.join(d, path.basename(f)));
  });
  return dir;
}

/** A copy of an export whose segment thresholds are replaced. */
function withThresholds(src: string, dst: string, T: JsonThreshold[]): string {
  fs.rmSync(dst, { recursive: true, force: true });
  fs.cpSync(src, dst, { recursive: true });
  const m = JSON.parse(fs.readFileSync(path.join(dst, 'thresholds.json'), 'utf8')) as ExportManifest;
  m.segments.forEach((s, j) => (s.threshold = T[j]));
  fs.writeFileSync(path.join(dst, 'thresholds.json'), JSON.stringify(m));
  return dst;
}

test('thresholds through JSON: null, strings and numbers decode by position', () => {
  assert.equal(decodeThreshold(null, false), Infinity);
  assert.equal(decodeThreshold(null, true), -Infinity);
  assert.equal(decodeThreshold('Infinity', false), Infinity);
  assert.equal(decodeThreshold('-Infinity', false), -Infinity);
  assert.equal(decodeThreshold(0.25, false), 0.25);
  assert.equal(decodeThreshold(0.25, true), -Infinity, 'the last exit accepts everything');
  assert.equal(decodeThreshold('NaN', false), Infinity, 'NaN lets nobody through');
  assert.deepEqual([0.5, Infinity, -Infinity, NaN].map(encodeThreshold), [0.5, 'Infinity', '-Infinity', 'Infinity']);
  // What JSON.stringify makes of a run's thresholds, spread over the network's exits.
  const th = JSON.parse(
    JSON.stringify({
      exits: [0, 3, 4],
      gflops: [],
      curve: [],
      chosen: { p: 0.5, thresholds: [0.7, Infinity, -Infinity], source: 's' },
    }),
  ) as ThresholdsFile;
  const op = chosenOperatingPoint(th, 7);
  assert.deepEqual(op.perExit, [0.7, Infinity, Infinity, Infinity, -Infinity, Infinity, Infinity]);
  assert.deepEqual(op.used, [0, 3, 4]);
  // No thresholds.json: everyone to the last exit.
  assert.deepEqual(chosenOperatingPoint(null, 3).perExit, [Infinity, Infinity, -Infinity]);
  assert.throws(() => chosenOperatingPoint({ ...th, exits: [0, 9, 10] }, 7), /do not fit/);
});

test('met export writes self-contained segments whose early exit reproduces met eval', async () => {
  const t = await tinyRun();
  // met eval first: it re-scores the run and rewrites predictions.json and thresholds.json.
  const ev = met(['eval', '--run', t.run, '--json', '--threads', '1']);
  assert.equal(ev.code, 0, ev.err);
  const summary = JSON.parse(ev.out) as {
    exits: { exit: number; layer: number; gflops: number }[];
    dynamic: { p: number; accuracy: number; gflops: number; exitCounts: number[] }[];
  };

  const out = path.join(t.root, 'export');
  const ex = met(['export', '--run', t.run, '--out', out]);
  assert.equal(ex.code, 0, ex.err);
  const files = fs.readdirSync(out).sort();
  assert.deepEqual(files, ['README.md', 'segment_1.onnx', 'segment_2.onnx', 'segment_3.onnx', 'thresholds.json']);
  const m = JSON.parse(fs.readFileSync(path.join(out, 'thresholds.json'), 'utf8')) as ExportManifest;
  const run = JSON.parse(fs.readFileSync(path.join(t.run, 'thresholds.json'), 'utf8')) as ThresholdsFile;
  const preds = JSON.parse(fs.readFileSync(path.join(t.run, 'predictions.json'), 'utf8')) as {
    classes: string[];
    test: SplitPredictions;
  };

  // The manifest: classes, preprocessing, costs equal to met eval's, thresholds without nulls.
  assert.deepEqual(m.classes, preds.classes);
  assert.deepEqual(
    { ...m.preprocess },
    {
      imageSize: 16,
      channels: 3,
      mean: [0.5, 0.5, 0.5],
      std: [0.5, 0.5, 0.5],
      resize: 'direct',
      cropPct: 0.875,
      interpolation: 'bilinear',
      layout: 'NCHW',
      scale: 'pixel / 255',
    },
  );
  assert.deepEqual(
    m.exits,
    run.exits.map((j) => j + 1),
  );
  assert.deepEqual(
    m.gflops,
    summary.exits.map((e) => e.gflops),
  );
  assert.deepEqual(
    m.segments.map((s) => s.cumulativeGflops),
    summary.exits.map((e) => e.gflops),
  );
  assert.deepEqual(
    m.segments.map((s) => s.layers),
    [
      [1, 1],
      [2, 2],
      [3, 3],
    ],
  );
  assert.deepEqual(
    m.segments.map((s) => s.input.name),
    ['images', 'state_in', 'state_in'],
  );
  assert.equal(m.segments[2].threshold, '-Infinity');
  assert.ok(
    m.segments.every((s) => s.threshold !== null),
    'exported thresholds are never null',
  );
  assert.equal(m.chosen.p, run.chosen.p);
  // Each segment is one ONNX file with its weights inside: no external-data references.
  for (const s of m.segments) assert.ok(!fs.readFileSync(path.join(out, s.file)).includes('external_data'));

  // The example on the run's own test split, at the run's chosen thresholds.
  const data = testSplitFolder(t.root, preds.test, preds.classes);
  const op = chosenOperatingPoint(run, m.segments.length);
  const expected = applyThresholds(
    exitScores(preds.test, op.used),
    op.thresholds,
    op.used.map((j) => run.gflops[j]),
  );
  const got = runExample(out, data);
  assert.equal(got.images, preds.test.files.length);
  assert.equal(got.accuracy, expected.accuracy);
  assert.ok(Math.abs(got.gflops - expected.gflops) <= 1e-12 * expected.gflops, `${got.gflops} vs ${expected.gflops}`);
  const counts = new Array<number>(m.segments.length).fill(0);
  op.used.forEach((j, i) => (counts[j] = expected.exitCounts[i]));
  assert.deepEqual(got.exitCounts, counts);
  // ... which is the point met eval lists for that p.
  const point = summary.dynamic.find((d) => d.p === run.chosen.p);
  assert.ok(point, `met eval lists p = ${run.chosen.p}`);
  assert.equal(point.accuracy, expected.accuracy);
  assert.equal(point.gflops, expected.gflops);

  // Other operating points of the curve, where samples leave at every exit (state is gathered
  // and handed on), with a small batch so that rows leave mid-batch across several batches.
  const spread = [...run.curve].sort(
    (a, b) => b.exitCounts.filter((k) => k > 0).length - a.exitCounts.filter((k) => k > 0).length,
  )[0];
  for (const [name, T] of [
    ['spread', spread.thresholds.map((x, j) => decodeThreshold(x, j === spread.thresholds.length - 1))],
    ['nobody leaves early', [Infinity, Infinity, -Infinity]],
    ['everybody leaves at exit 1', [-Infinity, Infinity, -Infinity]],
  ] as const) {
    const dir = withThresholds(out, path.join(t.root, `export-${name.replace(/\W+/g, '-')}`), T.map(encodeThreshold));
    const want = applyThresholds(
      exitScores(preds.test),
      [...T],
      summary.exits.map((e) => e.gflops),
    );
    const res = runExample(dir, data, ['--batch', '5']);
    assert.equal(res.accuracy, want.accuracy, name);
    assert.deepEqual(res.exitCounts, want.exitCounts, name);
    assert.ok(Math.abs(res.gflops - want.gflops) <= 1e-12 * want.gflops, name);
  }

  // A manifest with nulls (as JSON.stringify writes infinities) reads like the strings.
  const nulls = withThresholds(out, path.join(t.root, 'export-nulls'), [null, null, null]);
  assert.deepEqual(runExample(nulls, data).exitCounts, [0, 0, preds.test.files.length]);
});

test('met export with a subset of exits (dynamicExits) stops at the last used one', async () => {
  const t = await tinyRun();
  // The run as `met train --dynamic-exits 1,2` would leave it: thresholds over exits 1 and 2
  // only, written by JSON.stringify (so the last one is null).
  const run = path.join(t.root, 'run-subset');
  fs.rmSync(run, { recursive: true, force: true });
  fs.cpSync(t.run, run, { recursive: true });
  const full = JSON.parse(fs.readFileSync(path.join(t.run, 'thresholds.json'), 'utf8')) as ThresholdsFile;
  const preds = JSON.parse(fs.readFileSync(path.join(t.run, 'predictions.json'), 'utf8')) as {
    classes: string[];
    test: SplitPredictions;
  };
  const conf0 = [...preds.test.conf[0]].sort((a, b) => a - b);
  const t0 = conf0[Math.floor(conf0.length / 2)]; // about half the test split leaves at exit 1
  fs.writeFileSync(
    path.join(run, 'thresholds.json'),
    JSON.stringify({ ...full, exits: [0, 1], chosen: { p: null, thresholds: [t0, -Infinity], source: 'test' } }),
  );

  const out = path.join(t.root, 'export-subset');
  const ex = met(['export', '--run', run, '--out', out, '--json']);
  assert.equal(ex.code, 0, ex.err);
  const m = JSON.parse(ex.out) as ExportManifest;
  assert.deepEqual(m.exits, [1, 2]);
  assert.deepEqual(m.thresholds, [t0, '-Infinity']);
  assert.deepEqual(
    m.segments.map((s) => s.file),
    ['segment_1.onnx', 'segment_2.onnx'],
  );
  assert.deepEqual(
    m.segments.map((s) => s.threshold),
    [t0, '-Infinity'],
  );
  // Segment 2 still hands on a state (exit 3's token and the patches), which nobody needs.
  assert.deepEqual(
    m.segments[1].outputs.map((o) => o.name),
    ['probs', 'state'],
  );
  assert.ok(!fs.existsSync(path.join(out, 'segment_3.onnx')));

  const want = applyThresholds(exitScores(preds.test, [0, 1]), [t0, -Infinity], [full.gflops[0], full.gflops[1]]);
  assert.ok(want.exitCounts[0] > 0 && want.exitCounts[1] > 0);
  const got = runExample(out, testSplitFolder(t.root, preds.test, preds.classes), ['--batch', '4']);
  assert.equal(got.accuracy, want.accuracy);
  assert.deepEqual(got.exitCounts, want.exitCounts);
  assert.ok(Math.abs(got.gflops - want.gflops) <= 1e-12 * want.gflops);

  // met predict --run on that run: nobody goes past exit 2.
  const pr = met(['predict', '--run', run, '--json', ...preds.test.files]);
  assert.equal(pr.code, 0, pr.err);
  const res = JSON.parse(pr.out) as { exit: number }[];
  assert.deepEqual(
    [1, 2].map((e) => res.filter((r) => r.exit === e).length),
    want.exitCounts,
  );
});

test('met export refuses a non-empty folder that is not an earlier export, and re-exports into one', async () => {
  const t = await tinyRun();
  const busy = path.join(t.root, 'busy');
  fs.mkdirSync(busy, { recursive: true });
  fs.writeFileSync(path.join(busy, 'notes.txt'), 'mine\n');
  const r = met(['export', '--run', t.run, '--out', busy]);
  assert.notEqual(r.code, 0);
  assert.match(r.err, /not empty/);
  assert.deepEqual(fs.readdirSync(busy), ['notes.txt']);

  const again = path.join(t.root, 'again');
  assert.equal(met(['export', '--run', t.run, '--out', again]).code, 0);
  fs.writeFileSync(path.join(again, 'segment_9.onnx'), 'stale');
  const r2 = met(['export', '--run', t.run, '--out', again, '--json']);
  assert.equal(r2.code, 0, r2.err);
  assert.ok(!fs.existsSync(path.join(again, 'segment_9.onnx')), 'stale segments of an earlier export are removed');
  assert.equal((JSON.parse(r2.out) as ExportManifest).segments.length, 3);

  const missing = met(['export', '--run', path.join(t.root, 'no-such-run'), '--out', path.join(t.root, 'x')]);
  assert.notEqual(missing.code, 0);
  assert.match(missing.err, /no-such-run/);
});

interface RegressionExampleResult {
  images: number;
  mae: number;
  rmse: number;
  gflops: number;
  exitCounts: number[];
}

test(
  "met export of a regression run: `value` outputs, agreement thresholds, and the example reproduces met eval's dynamic MAE and GFLOPs",
  { timeout: 600_000 },
  async () => {
    // A tiny counting run, with regression.test.ts's fast settings (fewer images and epochs: the
    // test is about the export reproducing met eval, not about the model being good).
    const { dir, run, r: tr } = await countingRun('met-reg-export-', { n: 120, seed: 3, epochs: 2 }, 600_000);
    assert.equal(tr.code, 0, tr.err);
    const ev = met(['eval', '--run', run, '--json', '--threads', '1']);
    assert.equal(ev.code, 0, ev.err);
    const summary = JSON.parse(ev.out) as {
      task: string;
      exits: { gflops: number; mae: number }[];
      dynamic: { p: number; mae: number; gflops: number; exitCounts: number[] }[];
    };
    assert.equal(summary.task, 'regression');

    const out = path.join(dir, 'export');
    const ex = met(['export', '--run', run, '--out', out]);
    assert.equal(ex.code, 0, ex.err);
    assert.match(ex.out, /agreement of consecutive exits/);
    const m = JSON.parse(fs.readFileSync(path.join(out, 'thresholds.json'), 'utf8')) as ExportManifest;
    const th = JSON.parse(fs.readFileSync(path.join(run, 'thresholds.json'), 'utf8')) as ThresholdsFile;
    const preds = JSON.parse(fs.readFileSync(path.join(run, 'predictions.json'), 'utf8')) as { test: SplitPredictions };
    assert.equal(m.task, 'regression');
    assert.equal(m.confidence, 'agreement');
    assert.deepEqual(m.classes, []);
    assert.deepEqual(
      m.segments.map((s) => s.outputs.map((o) => o.name)),
      [['value', 'state'], ['value', 'state'], ['value']],
    );
    assert.deepEqual(
      m.segments.map((s) => s.cumulativeGflops),
      summary.exits.map((e) => e.gflops),
    );
    // Segment 1 has no predecessor to agree with: its threshold lets nobody through.
    assert.equal(m.segments[0].threshold, 'Infinity');
    for (const s of m.segments.slice(1, -1))
      assert.ok(
        s.threshold === 'Infinity' || (typeof s.threshold === 'number' && s.threshold <= 0),
        `agreement thresholds are <= 0: ${s.threshold}`,
      );
    const readme = fs.readFileSync(path.join(out, 'README.md'), 'utf8');
    assert.match(readme, /-\|value_j - value_\{j-1\}\|/);
    assert.doesNotMatch(readme, /largest probability/);

    // The run's test split as a regression folder: the images (symlinks) and a targets.csv.
    const split = path.join(dir, 'test-split');
    fs.mkdirSync(split);
    const lines = ['file,value'];
    preds.test.files.forEach((f, i) => {
      fs.symlinkSync(f, path.join(split, path.basename(f)));
      lines.push(`${path.basename(f)},${preds.test.labels[i]}`);
    });
    fs.writeFileSync(path.join(split, 'targets.csv'), lines.join('\n') + '\n');

    const runReg = (exportDir: string, extra: string[] = []): RegressionExampleResult => {
      const r = spawnSync(process.execPath, [EXAMPLE, exportDir, split, '--json', ...extra], {
        encoding: 'utf8',
        timeout: 120_000,
      });
      assert.equal(r.status, 0, r.stderr);
      return JSON.parse(r.stdout) as RegressionExampleResult;
    };
    const close = (a: number, b: number, what: string) =>
      assert.ok(Math.abs(a - b) <= 1e-6 * Math.max(1, Math.abs(b)), `${what}: ${a} vs ${b}`);

    // At the chosen thresholds: met eval's point for that p, to the sample (exit counts) and in MAE and GFLOPs.
    const point = summary.dynamic.find((d) => d.p === th.chosen.p);
    assert.ok(point, `met eval lists p = ${th.chosen.p}`);
    const got = runReg(out);
    assert.equal(got.images, preds.test.files.length);
    const counts = new Array<number>(m.segments.length).fill(0);
    th.exits.forEach((j, i) => (counts[j] = point.exitCounts[i]));
    assert.deepEqual(got.exitCounts, counts);
    close(got.mae, point.mae, 'MAE');
    close(got.gflops, point.gflops, 'GFLOPs');

    // Every operating point of met eval's curve, with a small batch so that rows leave mid-batch
    // (the previous exit's values must follow the rows that go on).
    const seen = new Set<string>();
    for (const d of th.curve) {
      const key = d.exitCounts.join('/');
      if (seen.has(key)) continue;
      seen.add(key);
      const T = d.thresholds.map((x, j) => encodeThreshold(decodeThreshold(x, j === d.thresholds.length - 1)));
      assert.equal(T.length, m.segments.length, 'the run uses every exit');
      const e = withThresholds(out, path.join(dir, `export-${key.replace(/\//g, '-')}`), T);
      const want = applyThresholds(
        exitScores(preds.test),
        d.thresholds.map((x, j) => decodeThreshold(x, j === d.thresholds.length - 1)),
        summary.exits.map((x) => x.gflops),
      );
      const r = runReg(e, ['--batch', '5']);
      assert.deepEqual(r.exitCounts, want.exitCounts, key);
      close(r.mae, -want.accuracy, `MAE at ${key}`);
      close(r.gflops, want.gflops, `GFLOPs at ${key}`);
    }
    assert.ok(seen.size >= 2, `the curve has several distinct operating points: ${[...seen].join(', ')}`);
    // Nobody leaves early: the last exit's static MAE.
    const late = runReg(withThresholds(out, path.join(dir, 'export-late'), ['Infinity', 'Infinity', '-Infinity']));
    close(late.mae, summary.exits[2].mae, 'last exit MAE');
  },
);
