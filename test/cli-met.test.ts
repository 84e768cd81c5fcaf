// `met params` and `met predict --run` as a user runs them (child processes): the parameter
// accounting against docs/method.md's worked numbers (§3, §4.3), GFLOPs per exit against what
// `met eval` reports for a trained run, and the JSON of predictions from a run.

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  decodeThreshold,
  type RunConfigFile,
  type SplitPredictions,
  type ThresholdsFile,
} from '../src/engine/run/runFolder';
import { readSafetensors } from '../src/engine/weights/safetensors';
import type { ParamsReport } from '../src/app/params';
import type { RunPrediction } from '../src/cli/predict';
import { met, TINY, tinyRun } from './tiny-run';

function params(args: string[]): ParamsReport {
  const r = met(['params', ...args, '--json']);
  assert.equal(r.code, 0, r.err);
  return JSON.parse(r.out) as ParamsReport;
}

test('met params reproduces docs/method.md §3: ViT-B/16, exits after 10, 11, 12, r = 8 (the 98.48% example)', () => {
  const p = params(['--backbone', 'vit-b16', '--exits', '10,11,12', '--rank', '8', '--classes', '100']);
  assert.equal(p.met_adapters, 15888);
  assert.equal(p.independent_adapters, 811008);
  assert.equal(p.sum_k, 66);
  assert.ok(Math.abs(p.reduction_limit! - 0.9848) < 5e-5, `limit ${p.reduction_limit}`);
  assert.equal(p.reduction_limit, 1 - 1 / 66);
  assert.ok(Math.abs(p.reduction! - 0.9804) < 5e-5, `reduction ${p.reduction}`);
  assert.equal(p.reduction, 1 - 15888 / 811008);
  // 2Dr + 24 adapters · 2r² + 66r, and three heads of D·C + C.
  assert.equal(p.shared_projections, 2 * 768 * 8);
  assert.equal(p.cores, 24 * 2 * 64);
  assert.equal(p.diagonals, 66 * 8);
  assert.equal(p.heads, 3 * (768 * 100 + 100));
  assert.equal(p.backbone, 85_798_656);
  assert.equal(p.trainable, 15888 + 230700);
  assert.equal(p.total, p.backbone + p.trainable);
  assert.ok(Math.abs(p.trainable_percent - (100 * 246588) / 85_798_656) < 1e-12);
  assert.deepEqual(
    p.components.map((c) => c.params),
    [85_798_656, 6144, 6144, 1536, 1536, 528, 230700],
  );
  assert.deepEqual(
    p.exits.map((e) => e.layer),
    [10, 11, 12],
  );
  assert.deepEqual(p.model, {
    name: 'vit-b16',
    imageSize: 224,
    channels: 3,
    patchSize: 16,
    dim: 768,
    depth: 12,
    heads: 12,
    mlpDim: 3072,
  });

  // The readable table says the same.
  const txt = met(['params', '--backbone', 'vit-b16', '--exits', '10,11,12', '--rank', '8', '--classes', '100']);
  assert.equal(txt.code, 0, txt.err);
  assert.match(txt.out, /98\.04% exact, 98\.48% in the D ≫ r limit/);
  assert.match(txt.out, /15,888/);
  assert.match(txt.out, /811,008/);
});

test("met params: docs/method.md §3's 7-exit table and GFLOPs per exit for ViT-B/16", () => {
  // docs/method.md §3: exits after layers 6..12 (the default), Σk = 126.
  for (const [r, ind, metN] of [
    [8, 1_548_288, 16_368],
    [16, 3_096_576, 38_880],
    [32, 6_193_152, 102_336],
    [64, 12_386_304, 302_976],
  ]) {
    const p = params(['--backbone', 'vit-b16', '--rank', String(r), '--classes', '100']);
    assert.deepEqual(p.config.exits, [6, 7, 8, 9, 10, 11, 12]);
    assert.equal(p.sum_k, 126);
    assert.equal(p.independent_adapters, ind);
    assert.equal(p.met_adapters, metN);
    assert.equal(p.heads, 7 * 76_900);
    if (r !== 8) continue;
    // docs/method.md §4.3's MET column (r = 8, C = 100) for exits 1-6. The last exit is cheaper
    // than the table's 18.02: its layer computes only the exit token's attention query and MLP.
    const spec = [9.15, 10.64, 12.13, 13.62, 15.09, 16.56];
    spec.forEach((g, j) =>
      assert.ok(Math.abs(p.exits[j].gflops - g) < 0.02, `exit ${j + 1}: ${p.exits[j].gflops} vs ${g}`),
    );
    assert.ok(p.exits[6].gflops > p.exits[5].gflops && p.exits[6].gflops < 17.56);
    p.exits.forEach((e, j) =>
      assert.ok(Math.abs(e.gflops - (j ? p.exits[j - 1].gflops : 0) - e.segment_gflops) < 1e-9),
    );
  }
});

test('met params: bad settings are errors that say what is wrong', () => {
  const none = met(['params', '--classes', '10']);
  assert.notEqual(none.code, 0);
  assert.match(none.err, /--backbone/);
  const deep = met(['params', '--backbone', 'vit-s16', '--exits', '11,13', '--classes', '10']);
  assert.notEqual(deep.code, 0);
  assert.match(deep.err, /exit layer 13 is outside 1\.\.12/);
  const both = met(['params', '--backbone', 'vit-s16', '--weights', 'x.safetensors', '--classes', '10']);
  assert.notEqual(both.code, 0);
  assert.match(both.err, /not both/);
  const noClasses = met(['params', '--backbone', 'vit-s16']);
  assert.notEqual(noClasses.code, 0);
  assert.match(noClasses.err, /--classes/);
});

test('met params on a checkpoint gives the GFLOPs met eval reports for a run of that config, and its stored size', async () => {
  const t = await tinyRun();
  const p = params(['--weights', t.weights, '--heads', String(TINY.heads), '--classes', String(TINY.classes.length)]);
  const ev = met(['eval', '--run', t.run, '--json', '--threads', '1']);
  assert.equal(ev.code, 0, ev.err);
  const s = JSON.parse(ev.out) as { exits: { exit: number; layer: number; gflops: number }[] };
  assert.deepEqual(
    p.exits.map((e) => [e.exit, e.layer, e.gflops]),
    s.exits.map((e) => [e.exit, e.layer, e.gflops]),
  );
  // The same settings from the data folder instead of --classes.
  const q = params(['--weights', t.weights, '--heads', String(TINY.heads), '--data', t.data]);
  assert.equal(q.config.classes, TINY.classes.length);
  assert.deepEqual(q.exits, p.exits);
  // stored_trainable is what trainable.safetensors holds.
  let stored = 0;
  for (const v of readSafetensors(path.join(t.run, 'trainable.safetensors')).values())
    stored += v.shape.reduce((a, b) => a * b, 1);
  assert.equal(p.stored_trainable, stored);
  assert.equal(p.model.dim, TINY.dim);
  assert.equal(p.backbone, sumNumel(t.weights), 'the checkpoint has no head: every tensor is backbone');
});

function sumNumel(file: string): number {
  let n = 0;
  for (const v of readSafetensors(file).values()) n += v.shape.reduce((a, b) => a * b, 1);
  return n;
}

test('met predict --run: every exit, the exit taken under the chosen thresholds, as JSON', async () => {
  const t = await tinyRun();
  const cf = JSON.parse(fs.readFileSync(path.join(t.run, 'config.json'), 'utf8')) as RunConfigFile;
  const th = JSON.parse(fs.readFileSync(path.join(t.run, 'thresholds.json'), 'utf8')) as ThresholdsFile;
  const preds = JSON.parse(fs.readFileSync(path.join(t.run, 'predictions.json'), 'utf8')) as { test: SplitPredictions };
  const files = preds.test.files;
  const r = met(['predict', '--run', t.run, '--json', '--batch', '5', '--threads', '1', ...files]);
  assert.equal(r.code, 0, r.err);
  const res = JSON.parse(r.out) as RunPrediction[];
  assert.equal(res.length, files.length);
  const K = cf.met.exits.length;
  const T = new Array<number>(K).fill(Infinity);
  th.exits.forEach((j, i) => (T[j] = decodeThreshold(th.chosen.thresholds[i], i === th.exits.length - 1)));
  res.forEach((x, i) => {
    assert.deepEqual(Object.keys(x).sort(), ['class', 'confidence', 'exit', 'exits', 'file', 'label']);
    assert.equal(x.file, files[i]);
    assert.equal(x.exits.length, K);
    x.exits.forEach((e, j) => {
      assert.deepEqual(Object.keys(e).sort(), ['class', 'confidence', 'exit', 'label', 'layer']);
      assert.equal(e.exit, j + 1);
      assert.equal(e.layer, cf.met.exits[j]);
      assert.equal(e.label, cf.classes[e.class]);
      // The run's own scores of these files (computed in other batches: float noise only).
      assert.ok(Math.abs(e.confidence - preds.test.conf[j][i]) < 1e-5);
      assert.equal(e.class, preds.test.pred[j][i]);
    });
    assert.ok(Number.isInteger(x.exit) && x.exit >= 1 && x.exit <= K);
    assert.equal(x.label, cf.classes[x.class]);
    const taken = x.exits[x.exit - 1];
    assert.equal(x.class, taken.class);
    assert.ok(Math.abs(x.confidence - taken.confidence) < 1e-5);
    // The first exit whose confidence reaches its threshold (the last one accepts all).
    let j = 0;
    while (j < K - 1 && !(preds.test.conf[j][i] >= T[j])) j++;
    assert.equal(x.exit, j + 1);
  });

  // Flags that describe a backbone do not combine with --run.
  const bad = met(['predict', '--run', t.run, '--image-size', '32', files[0]]);
  assert.notEqual(bad.code, 0);
  assert.match(bad.err, /--image-size does not apply with --run/);
});
