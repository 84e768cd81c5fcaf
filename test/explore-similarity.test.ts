// The similarity panel's matrices (src/engine/explore/similarity.ts):
//  - grMatrices' regularization term equals the training graph's graphRegularization, run by
//    onnxruntime on the same head inputs, logits and labels, for every combination of the flags;
//  - the matrices on a 4-sample case worked out by hand;
//  - on a tiny trained run: the class-balanced sample (deterministic from the seed, fewer when a
//    class has fewer), and each exit's `gr` equal to graphRegularization inside the whole MET
//    network (metForward + the loss's own term) on the sampled images.

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { RunCache } from '../src/engine/explore/runCache';
import { computeSimilarity, grMatrices, type GrFlags, shuffledByClass } from '../src/engine/explore/similarity';
import { Graph } from '../src/engine/graph/ir';
import { compile } from '../src/engine/graph/onnx';
import { loadBatch } from '../src/engine/data/image';
import { graphRegularization, metForward, type MetConfig, MET_DEFAULTS, MetTensors } from '../src/engine/model/met';
import { VitParams } from '../src/engine/model/vit';
import { loadRun, preprocessOf } from '../src/engine/run/run';
import { Session } from '../src/engine/runtime/session';
import { rng } from './helpers';
import { tinyRun, TINY } from './tiny-run';

const FLAGS: GrFlags = {
  simClamp: MET_DEFAULTS.simClamp,
  grExcludeSelf: MET_DEFAULTS.grExcludeSelf,
  grSquared: MET_DEFAULTS.grSquared,
  grForm: MET_DEFAULTS.grForm,
  grNormalize: MET_DEFAULTS.grNormalize,
};

/** graphRegularization alone, as an ONNX model: z [B, D], logits [B, C], labels [B] -> gr. */
async function graphGr(
  flags: GrFlags,
  D: number,
  C: number,
): Promise<(z: Float32Array, o: Float32Array, labels: number[]) => Promise<number>> {
  const g = new Graph();
  const z = g.input('z', ['B', D]);
  const o = g.input('o', ['B', C]);
  const labels = g.input('labels', ['B'], 'int64');
  const gr = graphRegularization(
    g,
    { ...MET_DEFAULTS, exits: [1, 2], numClasses: C, ...flags } as MetConfig,
    z,
    o,
    labels,
  );
  const s = await Session.create(compile(g, { gr }), { threads: 1 });
  return async (zv, ov, lab) => {
    const B = lab.length;
    const r = await s.run({
      z: { dtype: 'float32', shape: [B, D], data: zv },
      o: { dtype: 'float32', shape: [B, C], data: ov },
      labels: { dtype: 'int64', shape: [B], data: BigInt64Array.from(lab.map(BigInt)) },
    });
    return (r.gr.data as Float32Array)[0];
  };
}

test("grMatrices' gr equals the graph's graphRegularization through onnxruntime, for every flag combination", async () => {
  const r = rng(7);
  const n = 12;
  const D = 6;
  const C = 4;
  const z = Float32Array.from({ length: n * D }, () => (r() - 0.5) * 3);
  const o = Float32Array.from({ length: n * C }, () => (r() - 0.5) * 4);
  const labels = Array.from({ length: n }, (_, i) => i % 3);
  let combos = 0;
  for (const simClamp of ['none', 'relu', 'affine'] as const)
    for (const grExcludeSelf of [true, false])
      for (const grSquared of [true, false])
        for (const grForm of ['diff', 'ratio'] as const)
          for (const grNormalize of [false, true]) {
            const flags: GrFlags = { simClamp, grExcludeSelf, grSquared, grForm, grNormalize };
            const want = await (await graphGr(flags, D, C))(z, o, labels);
            const got = grMatrices(z, o, labels, flags).gr;
            // float32 graph vs float64 host (~4e-7 apart). With self-pairs kept and Euclidean
            // distances, the graph's |a|²+|b|²-2a·b leaves ~1e-7 of rounding on the diagonal,
            // which sqrt turns into ~3e-4 where the host has exactly sqrt(1e-12).
            const tol = (!grSquared && !grExcludeSelf ? 5e-4 : 2e-6) * Math.max(1, Math.abs(want));
            assert.ok(Math.abs(got - want) <= tol, `${JSON.stringify(flags)}: host ${got}, graph ${want}`);
            combos++;
          }
  assert.equal(combos, 48);
  // Not vacuous: the flags change the value.
  const a = grMatrices(z, o, labels, FLAGS).gr;
  const b = grMatrices(z, o, labels, { ...FLAGS, simClamp: 'affine' }).gr;
  assert.ok(Math.abs(a - b) > 1e-3, `${a} vs ${b}`);
});

test('grMatrices on a hand-checked 4-sample case', () => {
  // Head inputs (2-D) and last-exit logits; classes 0, 0, 1, 1.
  const z = Float32Array.from([0, 0, 1, 0, 0, 2, 3, 4]);
  const o = Float32Array.from([1, 0, 1, 0, 0, 1, 1, 1]);
  const labels = [0, 0, 1, 1];
  const s = Math.SQRT1_2; // cos 45°: o_3 against every other o
  // Squared distances: d01 = 1, d02 = 4, d03 = 25, d12 = 5, d13 = 20, d23 = 13.
  const d2 = [
    [0, 1, 4, 25],
    [1, 0, 5, 20],
    [4, 5, 0, 13],
    [25, 20, 13, 0],
  ];
  // Cosines: o0 = o1, o0 ⟂ o2, o1 ⟂ o2, o3 at 45° to all.
  const S = [
    [1, 1, 0, s],
    [1, 1, 0, s],
    [0, 0, 1, s],
    [s, s, s, 1],
  ];
  const close = (x: number, y: number, what: string) => assert.ok(Math.abs(x - y) < 1e-6, `${what}: ${x} vs ${y}`);
  const m = grMatrices(z, o, labels, FLAGS);
  for (let a = 0; a < 4; a++)
    for (let b = 0; b < 4; b++) {
      const same = labels[a] === labels[b];
      close(m.sw[a * 4 + b], same && a !== b ? S[a][b] : 0, `sw[${a},${b}]`);
      close(m.sb[a * 4 + b], same ? 0 : S[a][b], `sb[${a},${b}]`);
      close(m.dist[a * 4 + b], d2[a][b], `dist[${a},${b}]`);
    }
  // intra: pairs (0,1) twice with S 1, d 1, and (2,3) twice with S s, d 13: 4 non-zero weights.
  // inter: (0,3) and (1,3) twice each with S s, d 25 and 20; (0,2), (1,2) have S = 0 and do
  // not count: 4 non-zero weights.
  close(m.intra, (2 + 26 * s) / 4, 'intra');
  close(m.inter, (90 * s) / 4, 'inter');
  close(m.gr, 0.5 - 16 * s, 'gr');

  // The diagonal counts when self-pairs are kept: its S = 1 weights are non-zero (distance 0).
  close(grMatrices(z, o, labels, { ...FLAGS, grExcludeSelf: false }).intra, (2 + 26 * s) / 8, 'intra with self-pairs');
  // Affine similarities make the orthogonal pairs 1/2: now 8 non-zero inter weights.
  const aff = grMatrices(z, o, labels, { ...FLAGS, simClamp: 'affine' });
  close(aff.sb[0 * 4 + 2], 0.5, 'affine S of an orthogonal pair');
  close(aff.inter, (2 * 0.5 * 4 + 2 * 0.5 * 5 + ((1 + s) / 2) * 90) / 8, 'affine inter');
  // Euclidean instead of squared, divided by D = 2, ratio form.
  const e = grMatrices(z, o, labels, { ...FLAGS, grSquared: false, grNormalize: true, grForm: 'ratio' });
  close(e.dist[0 * 4 + 3], Math.sqrt(25 + 1e-12) / 2, 'euclidean, normalised');
  close(e.gr, e.intra / (e.inter + 1e-12), 'ratio');
});

test('the class-balanced sample: per class, deterministic from the seed, independent across classes', () => {
  const samples = [0, 1, 2].flatMap((c) =>
    Array.from({ length: c === 2 ? 3 : 10 }, (_, i) => ({ file: `/d/${c}/${i}.png`, label: c })),
  );
  const a = shuffledByClass(samples, 3, 5);
  assert.deepEqual(a, shuffledByClass(samples, 3, 5));
  assert.deepEqual(
    a.map((l) => l.length),
    [10, 10, 3],
  );
  assert.ok(a.every((l, c) => l.every((s) => s.label === c)));
  assert.notDeepEqual(
    a.map((l) => l.map((s) => s.file)),
    shuffledByClass(samples, 3, 6).map((l) => l.map((s) => s.file)),
  );
  // Removing class 1's files leaves class 0's order alone.
  const without = shuffledByClass(
    samples.filter((s) => s.label !== 1),
    3,
    5,
  );
  assert.deepEqual(without[0], a[0]);
});

test('similarity/compute on a tiny run: class-sorted sample, and gr equal to the training graph on those images', async () => {
  const t = await tinyRun();
  const cache = new RunCache({ threads: 1 });
  const t0 = Date.now();
  const res = await computeSimilarity(cache, { runDir: t.run, exits: [0, 1], perClass: 8, split: 'train' });
  const ms = Date.now() - t0;
  const n = res.files.length;
  assert.equal(n, 8 * TINY.classes.length);
  assert.deepEqual(res.classes, TINY.classes);
  assert.deepEqual(res.classStarts, [0, 8, 16, 24]);
  assert.deepEqual(
    [...res.labels],
    res.files.map((f) => TINY.classes.indexOf(path.basename(path.dirname(f)))),
  );
  assert.equal(res.split, 'train');
  assert.deepEqual(res.skipped, []);
  for (const e of res.exits) {
    assert.equal(e.sw.length, n * n);
    for (let a = 0; a < n; a++) {
      assert.equal(e.dist[a * n + a], 0);
      for (let b = 0; b < n; b++) {
        assert.equal(e.dist[a * n + b], e.dist[b * n + a]);
        if (res.labels[a] === res.labels[b]) assert.equal(e.sb[a * n + b], 0);
        else assert.equal(e.sw[a * n + b], 0);
      }
    }
  }
  assert.deepEqual(
    res.exits.map((e) => [e.exit, e.layer]),
    [
      [0, 1],
      [1, 2],
    ],
  );
  // The two exits' head inputs differ, their similarities (from the last exit) do not.
  assert.deepEqual(res.exits[0].sw, res.exits[1].sw);
  assert.notDeepEqual(res.exits[0].dist, res.exits[1].dist);

  // The whole network with the loss's own graphRegularization on the same images, one batch.
  const { cf, params, backbone, vit } = loadRun(t.run);
  const g = new Graph();
  const images = g.input('images', ['B', vit.channels, vit.imageSize, vit.imageSize]);
  const labels = g.input('labels', ['B'], 'int64');
  const f = metForward(g, new VitParams(g, backbone), new MetTensors(g, params, false), vit, cf.met, images);
  const K = f.logits.length;
  const outs = Object.fromEntries(
    res.exits.map((e) => [`gr${e.exit}`, graphRegularization(g, cf.met, f.features[e.exit], f.logits[K - 1], labels)]),
  );
  const s = await Session.create(compile(g, outs), { threads: 1 });
  const b = await loadBatch(res.files, preprocessOf(cf.train, vit));
  assert.equal(b.ok.length, n);
  const r = await s.run({
    images: { dtype: 'float32', shape: [n, vit.channels, vit.imageSize, vit.imageSize], data: b.data },
    labels: { dtype: 'int64', shape: [n], data: BigInt64Array.from([...res.labels].map(BigInt)) },
  });
  for (const e of res.exits) {
    const want = (r[`gr${e.exit}`].data as Float32Array)[0];
    assert.ok(Math.abs(e.gr - want) <= 1e-4 * Math.max(1, Math.abs(want)), `exit ${e.exit}: ${e.gr} vs graph ${want}`);
  }

  // Deterministic: the same request gives the same sample; another seed another one. The val
  // split has 2 images per class: fewer than asked.
  const again = await computeSimilarity(cache, { runDir: t.run, exits: [0, 1], perClass: 8, split: 'train' });
  assert.deepEqual(again.files, res.files);
  assert.deepEqual(again.exits[0].dist, res.exits[0].dist);
  const other = await computeSimilarity(cache, { runDir: t.run, exits: [0], perClass: 8, split: 'train', seed: 99 });
  assert.notDeepEqual(other.files, res.files);
  const val = await computeSimilarity(cache, { runDir: t.run, exits: [2], split: 'val' });
  assert.equal(val.files.length, 6);
  assert.deepEqual(val.classStarts, [0, 2, 4, 6]);
  assert.equal(cache.loads, 1, 'the run stays loaded between requests');
  await assert.rejects(
    computeSimilarity(cache, { runDir: t.run, exits: [3] }),
    /exit 3 is not one of the run's exits \(0\.\.2\)/,
  );
  await assert.rejects(
    computeSimilarity(cache, { runDir: t.run, exits: [0], split: 'dev' as never }),
    /split must be train, val or test/,
  );
  console.log(`similarity/compute, perClass 8 (24 images, 2 exits), first request incl. loading the run: ${ms} ms`);
  await cache.clear();
});
