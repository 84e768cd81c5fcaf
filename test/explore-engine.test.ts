// The exploration panels' requests to the engine process over real IPC (dist/cli.js engine,
// forked as the extension forks it): inspect/score equal to `met predict --run --json` with its
// numbers arriving as typed arrays, inspect/thumbs, similarity/compute equal to the in-process
// engine's, a saved threshold choice picked up by the running engine, errors as error responses.
// Needs dist/cli.js (npm test builds it first).

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { RunPrediction } from '../src/cli/predict';
import { listImageFiles } from '../src/engine/data/files';
import { RunCache } from '../src/engine/explore/runCache';
import { computeSimilarity } from '../src/engine/explore/similarity';
import { saveChosenThresholds } from '../src/engine/run/runFolder';
import { Engine } from './engine-ipc';
import { assertSameAsPredict } from './explore-helpers';
import { met, tinyRun, TINY } from './tiny-run';

const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;

test('engine: inspect/score, inspect/thumbs and similarity/compute over IPC', async () => {
  const t = await tinyRun();
  const run = path.join(t.root, 'run-engine');
  fs.cpSync(t.run, run, { recursive: true });
  const { files: all } = await listImageFiles([t.data]);
  const bad = path.join(t.root, 'broken.jpg');
  fs.writeFileSync(bad, Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0, 16]));
  const files = [...all.slice(0, 40), bad, ...all.slice(40)];

  const e = new Engine(t.root);
  await e.ready;
  try {
    // ---- inspect/score: the first request loads the run, later ones reuse it.
    let t0 = process.hrtime.bigint();
    const res = await e.request('inspect/score', { runDir: run, files });
    const coldMs = ms(t0);
    t0 = process.hrtime.bigint();
    const warm = await e.request('inspect/score', { runDir: run, files });
    const warmMs = ms(t0);
    for (const [k, T] of [
      ['ok', Uint8Array],
      ['conf', Float32Array],
      ['pred', Int32Array],
      ['topProb', Float32Array],
      ['topClass', Int32Array],
      ['exitTaken', Int32Array],
    ] as const)
      assert.ok(res[k] instanceof T, `${k} arrives as ${T.name}`);
    assert.deepEqual(warm, res);
    const cli = met(['predict', '--run', run, '--json', ...files]);
    assert.equal(cli.code, 1);
    const preds = JSON.parse(cli.out) as RunPrediction[];
    assertSameAsPredict(res, preds);
    assert.equal(res.ok[40], 0);
    assert.deepEqual(
      res.skipped.map((s) => s.file),
      [bad],
    );
    assert.equal(res.topClass.length, files.length * 3 * 3, 'top-3 by default');

    // ---- a choice saved on the slider is used by the running engine's next answer.
    saveChosenThresholds(run, { p: null, thresholds: [-Infinity, Infinity, null] });
    const early = await e.request('inspect/score', { runDir: run, files: all });
    assert.deepEqual(
      [...early.exitTaken],
      all.map(() => 0),
    );
    const cliEarly = met(['predict', '--run', run, '--json', ...all]);
    assert.equal(cliEarly.code, 0, cliEarly.err);
    assert.deepEqual(
      (JSON.parse(cliEarly.out) as RunPrediction[]).map((x) => x.exit),
      all.map(() => 1),
    );

    // ---- inspect/thumbs, sent while a score request is in flight.
    const cacheDir = path.join(t.root, 'thumbs');
    t0 = process.hrtime.bigint();
    const [th, again] = await Promise.all([
      e.request('inspect/thumbs', { files, cacheDir, size: 48 }),
      e.request('inspect/score', { runDir: run, files: all.slice(0, 8) }),
    ]);
    const thumbsMs = ms(t0);
    assert.equal(again.files.length, 8);
    assert.equal(th.thumbs.filter((x) => x !== null).length, all.length);
    assert.equal(th.thumbs[40], null);
    assert.deepEqual(
      th.skipped.map((s) => s.file),
      [bad],
    );
    for (const f of th.thumbs) if (f) assert.ok(f.startsWith(cacheDir) && fs.statSync(f).size > 0);

    // ---- similarity/compute: the engine's matrices are the in-process engine's.
    t0 = process.hrtime.bigint();
    const sim = await e.request('similarity/compute', { runDir: run, exits: [0, 2], perClass: 8, split: 'train' });
    const simMs = ms(t0);
    const cache = new RunCache();
    const local = await computeSimilarity(cache, { runDir: run, exits: [0, 2], perClass: 8, split: 'train' });
    await cache.clear();
    assert.ok(sim.exits[0].sw instanceof Float32Array && sim.labels instanceof Int32Array);
    assert.deepEqual(sim.files, local.files);
    assert.deepEqual(sim.classStarts, [0, 8, 16, 24]);
    sim.exits.forEach((x, i) => {
      assert.equal(x.exit, local.exits[i].exit);
      for (const k of ['sw', 'sb', 'dist'] as const) {
        let worst = 0;
        for (let j = 0; j < x[k].length; j++) worst = Math.max(worst, Math.abs(x[k][j] - local.exits[i][k][j]));
        assert.ok(worst <= 1e-5, `${k} of exit ${x.exit}: ${worst}`);
      }
      assert.ok(Math.abs(x.gr - local.exits[i].gr) <= 1e-5 * Math.max(1, Math.abs(x.gr)));
    });

    // ---- errors name what is wrong; the engine stays up.
    await assert.rejects(
      e.request('inspect/score', { runDir: path.join(t.root, 'nope'), files: all }),
      (err: Error) => err.name === 'UserError' && /nope/.test(err.message),
    );
    await assert.rejects(
      e.request('similarity/compute', { runDir: run, exits: [5] }),
      /exit 5 is not one of the run's exits/,
    );
    await assert.rejects(e.request('inspect/thumbs', { files: all, cacheDir: '' }), /cacheDir is required/);

    console.log(
      `engine over IPC (tiny run, ${TINY.classes.length} classes, 3 exits): inspect/score ${files.length} images ${coldMs.toFixed(0)} ms with loading the run, ${warmMs.toFixed(0)} ms loaded (${((files.length / warmMs) * 1000).toFixed(0)} images/s); ` +
        `inspect/thumbs ${files.length} images ${thumbsMs.toFixed(0)} ms (beside a score request); similarity/compute perClass 8 (24 images, 2 exits) ${simMs.toFixed(0)} ms`,
    );
    assert.deepEqual(await e.request('engine/shutdown', {}), { ok: true });
    assert.deepEqual(await e.exit, { code: 0, signal: null });
  } finally {
    if (e.child.exitCode === null) e.child.kill();
  }
});
