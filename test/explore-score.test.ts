// The Inspect exits panel's scores (src/engine/explore/score.ts), in process, against
// `met predict --run RUN FILES --json` run as a user runs it: the same confidences to the bit,
// the same classes, the same exit taken; bad files skipped and listed; the loaded run kept
// between requests and reloaded when its weights or thresholds change.

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { RunPrediction } from '../src/cli/predict';
import { listImageFiles } from '../src/engine/data/files';
import { RunCache } from '../src/engine/explore/runCache';
import { scoreImages } from '../src/engine/explore/score';
import { saveChosenThresholds } from '../src/engine/run/runFolder';
import { readSafetensors, writeSafetensors } from '../src/engine/weights/safetensors';
import { assertSameAsPredict } from './explore-helpers';
import { met, tinyRun, TINY } from './tiny-run';

test('inspect/score equals met predict --run --json to the bit; a bad file is skipped and listed', async () => {
  const t = await tinyRun();
  const { files: all } = await listImageFiles([t.data]);
  assert.equal(all.length, TINY.classes.length * TINY.perClass);
  const bad = path.join(t.root, 'not-an-image.png');
  fs.writeFileSync(bad, 'this is not a PNG\n');
  // The bad file in the first slice of 32 shifts every later image to another batch position:
  // both sides must batch the same way for the numbers to agree bit for bit.
  const files = [...all.slice(0, 5), bad, ...all.slice(5)];

  const cache = new RunCache();
  const t0 = process.hrtime.bigint();
  const res = await scoreImages(cache, { runDir: t.run, files, topK: 2 });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  const t1 = process.hrtime.bigint();
  await scoreImages(cache, { runDir: t.run, files });
  const warmMs = Number(process.hrtime.bigint() - t1) / 1e6;
  console.log(
    `inspect/score in process: ${files.length} images in ${ms.toFixed(0)} ms with loading the run, ${warmMs.toFixed(0)} ms loaded (${((files.length / warmMs) * 1000).toFixed(0)} images/s)`,
  );

  const cli = met(['predict', '--run', t.run, '--json', ...files]);
  assert.equal(cli.code, 1, 'met predict exits 1 when it skipped a file');
  assert.match(cli.err, /not-an-image\.png/);
  const preds = JSON.parse(cli.out) as RunPrediction[];
  assert.equal(preds.length, all.length);

  assert.deepEqual(res.files, files);
  assert.deepEqual(res.classes, TINY.classes);
  assert.deepEqual(res.layers, [1, 2, 3]);
  assert.equal(res.gflops.length, 3);
  assert.ok(res.gflops[0] > 0 && res.gflops[1] > res.gflops[0] && res.gflops[2] > res.gflops[1]);
  assert.equal(res.topClass.length, files.length * 3 * 2);
  assertSameAsPredict(res, preds);
  // The bad file: listed with a reason, no numbers.
  assert.equal(res.ok[5], 0);
  assert.equal(res.exitTaken[5], -1);
  assert.ok(Number.isNaN(res.conf[5 * 3]));
  assert.equal(res.pred[5 * 3], -1);
  assert.deepEqual(
    res.skipped.map((s) => s.file),
    [bad],
  );
  assert.match(res.skipped[0].reason, /not an image/);
  // Not vacuous: images leave at more than one exit under the chosen thresholds.
  assert.ok(
    new Set(preds.map((p) => p.exit)).size >= 2,
    `exits taken: ${[...new Set(preds.map((p) => p.exit))].join(', ')}`,
  );
  assert.equal(cache.loads, 1);

  // Errors that name what is wrong; a missing file is only skipped.
  const missing = path.join(t.root, 'gone.png');
  const m = await scoreImages(cache, { runDir: t.run, files: [missing, all[0]] });
  assert.deepEqual([...m.ok], [0, 1]);
  assert.match(m.skipped[0].reason, /file not found/);
  await assert.rejects(
    scoreImages(cache, { runDir: t.run, files: [all[0]], topK: 0 }),
    /topK must be a positive integer/,
  );
  await assert.rejects(
    scoreImages(cache, { runDir: path.join(t.root, 'nope'), files: [all[0]] }),
    /nope.*config\.json does not exist/,
  );
  await cache.clear();
});

test('a loaded run follows its files: new thresholds re-read, new weights reloaded', async () => {
  const t = await tinyRun();
  const run = path.join(t.root, 'run-follow');
  fs.cpSync(t.run, run, { recursive: true });
  const { files } = await listImageFiles([t.data]);
  const cache = new RunCache({ threads: 1 });
  const before = await scoreImages(cache, { runDir: run, files });
  assert.equal(cache.loads, 1);

  // Everybody leaves at the first exit: the exits follow at once, without reloading the model.
  saveChosenThresholds(run, { p: null, thresholds: [-Infinity, Infinity, -Infinity], source: 'test' });
  const early = await scoreImages(cache, { runDir: run, files });
  assert.deepEqual(
    [...early.exitTaken],
    files.map(() => 0),
  );
  assert.deepEqual(early.chosen, { p: null, perExit: [-Infinity, Infinity, -Infinity], source: 'test' });
  assert.deepEqual(early.conf, before.conf);
  // Nobody leaves early.
  saveChosenThresholds(run, { p: null, thresholds: [Infinity, Infinity, null] });
  assert.deepEqual(
    [...(await scoreImages(cache, { runDir: run, files })).exitTaken],
    files.map(() => 2),
  );
  assert.equal(cache.loads, 1, 'thresholds alone do not reload the model');

  // Retrained weights (here: exit 1's head zeroed): the run is reloaded and scores change.
  const w = readSafetensors(path.join(run, 'trainable.safetensors'));
  for (const name of ['exit.1.weight', 'exit.1.bias']) (w.get(name)!.data as Float32Array).fill(0);
  writeSafetensors(path.join(run, 'trainable.safetensors'), w);
  const after = await scoreImages(cache, { runDir: run, files });
  assert.equal(cache.loads, 2);
  for (let i = 0; i < files.length; i++) {
    assert.equal(after.conf[i * 3], Math.fround(1 / 3), 'zero logits: uniform probabilities');
    assert.equal(after.conf[i * 3 + 2], before.conf[i * 3 + 2], 'the last exit does not use exit 1');
  }
  await cache.clear();
});
