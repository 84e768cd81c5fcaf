// Saving the budget slider's thresholds (src/engine/run/runFolder.ts): after saveChosenThresholds,
// `met predict --run` takes the exits those thresholds imply and `met export` writes them; bad
// points are refused with errors naming the file; the module stays free of native packages (the
// extension host imports it).

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as esbuild from 'esbuild';
import type { RunPrediction } from '../src/cli/predict';
import type { ExportManifest } from '../src/engine/export/export';
import {
  decodeThreshold,
  encodeThreshold,
  saveChosenThresholds,
  type SplitPredictions,
  type ThresholdsFile,
} from '../src/engine/run/runFolder';
import { met, ROOT, tinyRun } from './tiny-run';

const readTh = (run: string) =>
  JSON.parse(fs.readFileSync(path.join(run, 'thresholds.json'), 'utf8')) as ThresholdsFile;

/** The 1-based exit each sample takes under per-used-exit thresholds, from stored confidences. */
function impliedExits(p: SplitPredictions, used: number[], T: number[]): number[] {
  return p.files.map((_, i) => {
    let u = 0;
    while (u < used.length - 1 && !(p.conf[used[u]][i] >= T[u])) u++;
    return used[u] + 1;
  });
}

test('saved thresholds are what met predict --run and met export use', async () => {
  const t = await tinyRun();
  const run = path.join(t.root, 'run-save');
  fs.cpSync(t.run, run, { recursive: true });
  const th0 = readTh(run);
  const preds = JSON.parse(fs.readFileSync(path.join(run, 'predictions.json'), 'utf8')) as { test: SplitPredictions };
  const files = preds.test.files;
  const decode = (T: unknown[]) => T.map((v, i) => decodeThreshold(v, i === T.length - 1));
  const now = impliedExits(preds.test, th0.exits, decode(th0.chosen.thresholds));
  // The curve point that moves the most test images to another exit than the current choice.
  const moved = (pt: ThresholdsFile['curve'][number]) =>
    impliedExits(preds.test, th0.exits, decode(pt.thresholds)).filter((e, i) => e !== now[i]).length;
  const pt = [...th0.curve].sort((a, b) => moved(b) - moved(a))[0];
  assert.ok(moved(pt) > 0, 'some curve point changes where images exit');

  const chosen = saveChosenThresholds(run, { p: pt.p, thresholds: pt.thresholds });
  assert.deepEqual(chosen, { p: pt.p, thresholds: pt.thresholds, source: 'slider' });
  const th1 = readTh(run);
  assert.deepEqual(th1.chosen, chosen);
  // Nothing else in the file changed, and no temporary file is left behind.
  assert.deepEqual({ ...th1, chosen: null }, { ...th0, chosen: null });
  assert.deepEqual(
    fs.readdirSync(run).filter((f) => f.includes('.tmp')),
    [],
  );

  const want = impliedExits(preds.test, th0.exits, decode(pt.thresholds));
  const r = met(['predict', '--run', run, '--json', ...files]);
  assert.equal(r.code, 0, r.err);
  assert.deepEqual(
    (JSON.parse(r.out) as RunPrediction[]).map((x) => x.exit),
    want,
  );

  const out = path.join(t.root, 'export-saved');
  const ex = met(['export', '--run', run, '--out', out]);
  assert.equal(ex.code, 0, ex.err);
  const m = JSON.parse(fs.readFileSync(path.join(out, 'thresholds.json'), 'utf8')) as ExportManifest;
  assert.deepEqual(m.thresholds, decode(pt.thresholds).map(encodeThreshold));
  assert.deepEqual(m.chosen, { p: pt.p, source: 'slider' });

  // Thresholds off the curve (p = null): everybody leaves at exit 1. -Infinity before the last
  // exit must survive JSON (null would read back as +Infinity: nobody leaves).
  saveChosenThresholds(run, { p: null, thresholds: [-Infinity, 'Infinity', null], source: 'hand-made' });
  assert.deepEqual(readTh(run).chosen, {
    p: null,
    thresholds: ['-Infinity', null, null],
    source: 'hand-made',
  } as unknown as ThresholdsFile['chosen']);
  const r2 = met(['predict', '--run', run, '--json', ...files]);
  assert.equal(r2.code, 0, r2.err);
  assert.deepEqual(
    (JSON.parse(r2.out) as RunPrediction[]).map((x) => x.exit),
    files.map(() => 1),
  );
  const ex2 = met(['export', '--run', run, '--out', out]);
  assert.equal(ex2.code, 0, ex2.err);
  const m2 = JSON.parse(fs.readFileSync(path.join(out, 'thresholds.json'), 'utf8')) as ExportManifest;
  assert.deepEqual(
    m2.segments.map((s) => s.threshold),
    ['-Infinity', 'Infinity', '-Infinity'],
  );
});

test('saveChosenThresholds refuses points that do not fit the run, naming the file', async () => {
  const t = await tinyRun();
  const run = path.join(t.root, 'run-refuse');
  fs.cpSync(t.run, run, { recursive: true });
  const th = readTh(run);
  const file = path.join(run, 'thresholds.json');
  const before = fs.readFileSync(file, 'utf8');
  const pt = th.curve[0];
  const other = th.curve.find((c) => JSON.stringify(c.thresholds) !== JSON.stringify(pt.thresholds))!;
  const cases: [Parameters<typeof saveChosenThresholds>[1], RegExp][] = [
    [{ p: null, thresholds: [0.5, null] }, /2 thresholds given for the run's 3 used exits \(1, 2, 3\)/],
    [{ p: 123, thresholds: pt.thresholds }, /p = 123 is not a point of the run's curve/],
    [{ p: pt.p, thresholds: other.thresholds }, new RegExp(`not those of the curve point p = ${pt.p}`)],
    [
      { p: null, thresholds: [0.5, 'abc' as never, null] },
      /threshold 2 must be a number, null, "Infinity" or "-Infinity", got "abc"/,
    ],
    [{ p: null, thresholds: [NaN, 0.5, null] }, /threshold 1 must be/],
  ];
  for (const [point, re] of cases) {
    assert.throws(
      () => saveChosenThresholds(run, point),
      (e: Error) => e.name === 'UserError' && e.message.includes(file) && re.test(e.message),
      JSON.stringify(point),
    );
  }
  assert.equal(fs.readFileSync(file, 'utf8'), before, 'a refused point leaves the file as it was');
  const empty = fs.mkdtempSync(path.join(t.root, 'no-run-'));
  assert.throws(
    () => saveChosenThresholds(empty, { p: null, thresholds: [null] }),
    /thresholds\.json does not exist \(the run has not been evaluated yet\)/,
  );
});

test('runFolder.ts bundles without onnxruntime or sharp (the extension host imports it)', async () => {
  const r = await esbuild.build({
    entryPoints: [path.join(ROOT, 'src/engine/run/runFolder.ts')],
    bundle: true,
    platform: 'node',
    format: 'cjs',
    write: false,
    logLevel: 'silent',
  });
  const js = r.outputFiles[0].text;
  assert.ok(!/onnxruntime|require\("sharp"\)/.test(js), 'no native package in the bundle');
  // ~22 KB with the lock and stop-request readers (issue 11); the engine proper is megabytes.
  assert.ok(js.length < 26_000, `small bundle (${js.length} bytes)`);
});
