// The embeddings view's engine (src/engine/explore/embeddings.ts):
//  - pca2 against numpy's SVD-based PCA (test/fixtures/pca2.json, scripts/make_pca_fixture.py):
//    coordinates up to the sign of each axis, explained variance ratios, and rows projected onto
//    the axes, for both matrices (Gram, covariance) and both solvers (Jacobi, Lanczos);
//  - the solvers themselves: eigen-residuals, a repeated top eigenvalue, a 150 x 150 matrix;
//  - the sign convention and degenerate samples (one sample, points on a line);
//  - embeddings/compute on a tiny trained run: per exit, the PCA of exactly the head inputs the
//    similarity panel's extraction returns, the similarity panel's class-balanced sample, the
//    variance it explains consistent with similarity/compute's distance matrix, and extra files
//    projected onto the sample's axes without moving them;
//  - a run whose exits' head inputs differ in width (mlp, linear, conv-add branches);
//  - the same request over IPC to the engine process (dist/cli.js: `node esbuild.mjs` first).

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  computeEmbeddings,
  jacobiTop,
  lanczosTop2,
  pca2,
  project2,
  tridiagEigen,
  type TopEigen,
} from '../src/engine/explore/embeddings';
import { RunCache } from '../src/engine/explore/runCache';
import { computeSimilarity, headInputsOf, sampleHeadInputs } from '../src/engine/explore/similarity';
import { loadBatch } from '../src/engine/data/image';
import { loadRun, preprocessOf } from '../src/engine/run/run';
import { Engine } from './engine-ipc';
import { rng } from './helpers';
import { tinyRun, TINY, trainBeside } from './tiny-run';

interface Case {
  name: string;
  n: number;
  D: number;
  X: number[];
  coords: number[];
  explained: number[];
  extra: number[];
  extraCoords: number[];
}
const FIXTURE = JSON.parse(fs.readFileSync(path.join(__dirname, 'fixtures', 'pca2.json'), 'utf8')) as {
  cases: Case[];
};

/** |a - b| <= tol * max(1, |b|) for every element, naming the first that is not. */
function close(a: ArrayLike<number>, b: ArrayLike<number>, tol: number, what: string): void {
  assert.equal(a.length, b.length, `${what}: lengths`);
  for (let i = 0; i < a.length; i++)
    assert.ok(Math.abs(a[i] - b[i]) <= tol * Math.max(1, Math.abs(b[i])), `${what}[${i}]: ${a[i]} vs ${b[i]}`);
}

/** Column c of an [m * 2] array. */
const col = (xs: ArrayLike<number>, c: number) => Array.from({ length: xs.length / 2 }, (_, i) => xs[i * 2 + c]);

/** The sign that maps `ours` onto `ref` (numpy's signs are arbitrary): +1 or -1, by their dot product. */
function signOf(ours: number[], ref: number[]): number {
  let d = 0;
  for (let i = 0; i < ours.length; i++) d += ours[i] * ref[i];
  return d < 0 ? -1 : 1;
}

test('pca2 equals numpy’s SVD PCA (up to the sign of each axis), on both matrices with both solvers', () => {
  assert.ok(FIXTURE.cases.length >= 4);
  for (const c of FIXTURE.cases) {
    const m = c.extra.length / c.D;
    for (const via of ['gram', 'cov'] as const)
      for (const solver of ['jacobi', 'lanczos'] as const) {
        const what = `${c.name}, ${via}, ${solver}`;
        const p = pca2(c.X, c.n, c.D, { via, solver });
        assert.equal(p.via, via);
        assert.equal(p.solver, solver);
        close(p.explained, c.explained, 1e-6, `${what}: explained`);
        const extra = project2(p, c.extra, m);
        for (const k of [0, 1]) {
          const s = signOf(col(p.coords, k), col(c.coords, k));
          close(
            col(p.coords, k).map((x) => s * x),
            col(c.coords, k),
            1e-6,
            `${what}: PC${k + 1}`,
          );
          close(
            col(extra, k).map((x) => s * x),
            col(c.extraCoords, k),
            1e-6,
            `${what}: extra rows on PC${k + 1}`,
          );
          // The sign convention: the largest-magnitude loading of each axis is positive.
          const v = p.axes[k];
          let big = 0;
          for (let i = 1; i < v.length; i++) if (Math.abs(v[i]) > Math.abs(v[big])) big = i;
          assert.ok(v[big] > 0, `${what}: PC${k + 1}'s largest loading is positive`);
          close([Math.hypot(...v)], [1], 1e-12, `${what}: |PC${k + 1}|`);
        }
      }
    // 'auto' takes the smaller matrix.
    assert.equal(pca2(c.X, c.n, c.D).via, c.n <= c.D ? 'gram' : 'cov');
  }
});

test('pca2: the picture does not depend on the order of the samples, and degenerate samples give zero axes', () => {
  const r = rng(3);
  const n = 20;
  const D = 7;
  const X = Array.from({ length: n * D }, () => r() * 4 - 2);
  const perm = Array.from({ length: n }, (_, i) => (i * 7) % n);
  const Xp = perm.flatMap((i) => X.slice(i * D, (i + 1) * D));
  const a = pca2(X, n, D);
  const b = pca2(Xp, n, D);
  perm.forEach((i, at) =>
    close([b.coords[at * 2], b.coords[at * 2 + 1]], [a.coords[i * 2], a.coords[i * 2 + 1]], 1e-9, `sample ${i}`),
  );

  // One sample: nothing varies.
  const one = pca2([1, 2, 3], 1, 3);
  assert.deepEqual([...one.coords], [0, 0]);
  assert.deepEqual(one.explained, [0, 0]);
  // Points on a line: one axis, along the line; the second is zero.
  const dir = [3, -4, 0, 12].map((x) => x / 13);
  const line = [-2, -1, 0.5, 3, 4].flatMap((t) => dir.map((d, k) => 1 + k + t * d));
  for (const via of ['gram', 'cov'] as const) {
    const p = pca2(line, 5, 4, { via });
    close(p.explained, [1, 0], 1e-9, `${via}: explained on a line`);
    close(p.axes[0], dir, 1e-9, `${via}: the axis is the line (largest loading 12/13 positive)`);
    assert.deepEqual([...p.axes[1]], [0, 0, 0, 0]);
    close(col(p.coords, 1), [0, 0, 0, 0, 0], 0, `${via}: PC2`);
    // t along the line, centred (mean t = 0.9).
    close(col(p.coords, 0), [-2.9, -1.9, -0.4, 2.1, 3.1], 1e-9, `${via}: PC1`);
  }
});

/** max |A v - λ v| over the returned pairs, and their orthonormality. */
function checkEigen(A: Float64Array, m: number, e: TopEigen, tol: number, what: string): void {
  e.vectors.forEach((v, c) => {
    let worst = 0;
    for (let i = 0; i < m; i++) {
      let s = 0;
      for (let j = 0; j < m; j++) s += A[i * m + j] * v[j];
      worst = Math.max(worst, Math.abs(s - e.values[c] * v[i]));
    }
    assert.ok(worst <= tol, `${what}: residual of pair ${c} is ${worst}`);
    e.vectors.forEach((w, d) => {
      let dot = 0;
      for (let i = 0; i < m; i++) dot += v[i] * w[i];
      assert.ok(Math.abs(dot - (c === d ? 1 : 0)) <= 1e-10, `${what}: v${c}·v${d} = ${dot}`);
    });
  });
  for (let c = 1; c < e.values.length; c++) assert.ok(e.values[c] <= e.values[c - 1], `${what}: descending`);
}

test('the eigen-solvers: Jacobi, tridiagonal QL and Lanczos agree, with small residuals', () => {
  const r = rng(11);
  // A symmetric positive semi-definite matrix B B^T, 150 x 150 of rank 150 (Lanczos territory).
  const m = 150;
  const B = Float64Array.from({ length: m * m }, () => r() - 0.5);
  const A = new Float64Array(m * m);
  for (let i = 0; i < m; i++)
    for (let j = 0; j <= i; j++) {
      let s = 0;
      for (let k = 0; k < m; k++) s += B[i * m + k] * B[j * m + k];
      A[i * m + j] = A[j * m + i] = s;
    }
  const jac = jacobiTop(A, m, 2);
  const lan = lanczosTop2(A, m);
  checkEigen(A, m, jac, 1e-9, 'jacobi 150');
  checkEigen(A, m, lan, 1e-9, 'lanczos 150');
  close(lan.values, jac.values, 1e-10, 'top-2 eigenvalues, Lanczos vs Jacobi');
  jac.vectors.forEach((v, c) => {
    const s = signOf(Array.from(lan.vectors[c]), Array.from(v));
    close(
      Array.from(lan.vectors[c], (x) => s * x),
      v,
      1e-8,
      `eigenvector ${c}`,
    );
  });

  // Tridiagonal QL against Jacobi on a random tridiagonal matrix.
  const k = 30;
  const d = Array.from({ length: k }, () => r() * 4 - 2);
  const e = Array.from({ length: k - 1 }, () => r() - 0.5);
  const T = new Float64Array(k * k);
  d.forEach((x, i) => (T[i * k + i] = x));
  e.forEach((x, i) => (T[i * k + i + 1] = T[(i + 1) * k + i] = x));
  const ql = tridiagEigen(d, e);
  checkEigen(T, k, ql, 1e-12, 'tridiagEigen');
  close(ql.values, jacobiTop(T, k).values, 1e-12, 'tridiagonal eigenvalues, QL vs Jacobi');

  // A repeated top eigenvalue (a Krylov space holds one direction of it): Q diag(5, 5, 2/3, 2/4, ...) Q^T.
  const n = 80;
  // An orthonormal basis of R^n: Gram-Schmidt on random vectors.
  const basis: Float64Array[] = [];
  while (basis.length < n) {
    const q0 = Float64Array.from({ length: n }, () => r() - 0.5);
    const v = Float64Array.from(q0);
    for (let pass = 0; pass < 2; pass++)
      for (const b of basis) {
        let c = 0;
        for (let i = 0; i < n; i++) c += b[i] * v[i];
        for (let i = 0; i < n; i++) v[i] -= c * b[i];
      }
    const nv = Math.hypot(...v);
    if (nv > 1e-6) basis.push(v.map((x) => x / nv));
  }
  const lam = Array.from({ length: n }, (_, i) => (i < 2 ? 5 : 2 / (i + 1)));
  const R = new Float64Array(n * n);
  for (let i = 0; i < n; i++)
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let t = 0; t < n; t++) s += basis[t][i] * lam[t] * basis[t][j];
      R[i * n + j] = s;
    }
  const rep = lanczosTop2(R, n);
  close(rep.values, [5, 5], 1e-9, 'a repeated top eigenvalue');
  checkEigen(R, n, rep, 1e-9, 'lanczos, repeated eigenvalue');
});

test('embeddings/compute on a tiny run: the PCA of the similarity extraction’s head inputs, per exit', async () => {
  const t = await tinyRun();
  const cache = new RunCache({ threads: 1 });
  const t0 = Date.now();
  const res = await computeEmbeddings(cache, { runDir: t.run, perClass: 8, split: 'train' });
  const ms = Date.now() - t0;
  const n = res.sample.length;
  const C = TINY.classes.length;
  assert.equal(n, 8 * C);
  assert.deepEqual(res.classes, TINY.classes);
  assert.equal(res.split, 'train');
  assert.equal(res.perClass, 8);
  assert.deepEqual(res.extra, []);
  assert.deepEqual(res.skipped, []);
  // Class-balanced and class-sorted; each label is the image's class folder.
  assert.deepEqual(
    res.sample.map((x) => x.label),
    Array.from({ length: n }, (_, i) => Math.floor(i / 8)),
  );
  for (const x of res.sample) assert.equal(TINY.classes[x.label], path.basename(path.dirname(x.file)));
  // One scatter per exit of the run, with its layer.
  assert.deepEqual(
    res.exits.map((e) => [e.exit, e.layer]),
    [
      [0, 1],
      [1, 2],
      [2, 3],
    ],
  );

  // The similarity panel's sample for the same split, perClass and seed.
  const sim = await computeSimilarity(cache, { runDir: t.run, exits: [0, 1, 2], perClass: 8, split: 'train' });
  assert.deepEqual(
    res.sample.map((x) => x.file),
    sim.files,
  );
  // Per exit: the PCA of exactly the features the shared extraction returns.
  const feats = await cache.with(t.run, (run) =>
    sampleHeadInputs(run, { split: 'train', perClass: 8 }, [0, 1, 2], {}, 'test'),
  );
  assert.deepEqual(feats.files, sim.files);
  assert.deepEqual(feats.F, [TINY.dim, TINY.dim, TINY.dim]);
  res.exits.forEach((e, j) => {
    const p = pca2(feats.z[j], n, feats.F[j]);
    assert.equal(p.via, 'cov', '24 samples of 16 features: the 16 x 16 covariance');
    close(e.coords, p.coords, 1e-9, `exit ${j + 1} coords`);
    close(e.explained, p.explained, 1e-9, `exit ${j + 1} explained`);
    assert.ok(e.explained[0] >= e.explained[1] && e.explained[1] > 0 && e.explained[0] + e.explained[1] <= 1 + 1e-12);
    // Tied to similarity/compute's squared distances: Σ_ab d_ab = 2n Σ_i |z_i - μ|², the total
    // variance, of which PC1 and PC2 hold (explained_1 + explained_2): Σ_i |t_i|².
    let dsum = 0;
    for (const d of sim.exits[j].dist) dsum += d;
    const total = dsum / (2 * n);
    let tsum = 0;
    for (const x of e.coords) tsum += x * x;
    close(
      [tsum],
      [(e.explained[0] + e.explained[1]) * total],
      1e-5,
      `exit ${j + 1}: variance on PC1-2 vs the distances`,
    );
  });
  // The exits see the images differently.
  assert.notDeepEqual(res.exits[0].coords, res.exits[2].coords);

  // The default split (test: 4 images per class here): fewer samples than features, the Gram path.
  const def = await computeEmbeddings(cache, { runDir: t.run });
  assert.equal(def.split, 'test');
  assert.equal(def.sample.length, 4 * C);
  const featsTest = await cache.with(t.run, (run) =>
    sampleHeadInputs(run, { split: 'test', perClass: 8 }, [0, 1, 2], {}, 'test'),
  );
  def.exits.forEach((e, j) => {
    const p = pca2(featsTest.z[j], def.sample.length, featsTest.F[j]);
    assert.equal(p.via, 'gram');
    close(e.coords, p.coords, 1e-9, `test split, exit ${j + 1}`);
  });

  // Extra files: projected onto the sample's axes, which do not move. A training image (not in
  // the test sample), an image of the sample (nothing to add), a duplicate, a missing file.
  const other = res.sample[0].file;
  const inSample = def.sample[C].file;
  const missing = path.join(t.root, 'no-such-image.png');
  const withExtra = await computeEmbeddings(cache, { runDir: t.run, files: [other, inSample, other, missing] });
  assert.deepEqual(
    withExtra.sample.map((x) => x.file),
    def.sample.map((x) => x.file),
  );
  assert.deepEqual(withExtra.extra, [{ file: other, label: res.sample[0].label }]);
  assert.deepEqual(
    withExtra.skipped.map((s) => s.file),
    [missing],
  );
  const img = await loadBatch([other], preprocessOf(loadRun(t.run).cf.train, loadRun(t.run).vit));
  const z = await cache.with(t.run, (run) => headInputsOf(run, [img.data], [0, 1, 2], {}));
  withExtra.exits.forEach((e, j) => {
    assert.deepEqual(e.coords, def.exits[j].coords, `exit ${j + 1}: the sample's coordinates do not move`);
    assert.deepEqual(e.explained, def.exits[j].explained);
    const p = pca2(featsTest.z[j], def.sample.length, featsTest.F[j]);
    close(e.extraCoords, project2(p, z.z[j], 1), 1e-9, `exit ${j + 1}: the extra image's coordinates`);
  });
  // An extra file from outside the class folders has no label.
  const outside = path.join(t.root, 'outside.png');
  fs.copyFileSync(other, outside);
  const unl = await computeEmbeddings(cache, { runDir: t.run, files: [outside] });
  assert.deepEqual(unl.extra, [{ file: outside, label: -1 }]);
  close(unl.exits[1].extraCoords, withExtra.exits[1].extraCoords, 1e-12, 'the same image elsewhere, the same place');

  assert.equal(cache.loads, 1, 'the run stays loaded between requests');
  await assert.rejects(
    computeEmbeddings(cache, { runDir: t.run, split: 'dev' as never }),
    /embeddings\/compute: split must be train, val or test/,
  );
  await assert.rejects(computeEmbeddings(cache, { runDir: t.run, perClass: 0 }), /perClass must be a positive integer/);
  await assert.rejects(
    computeEmbeddings(cache, { runDir: t.run, files: [3] as never }),
    /files must be a list of image paths/,
  );
  console.log(`embeddings/compute, perClass 8 (24 images, 3 exits), first request incl. loading the run: ${ms} ms`);
  await cache.clear();
});

test('embeddings/compute over IPC (dist/cli.js engine): the in-process result, and named errors', async () => {
  const t = await tinyRun();
  const e = new Engine(t.root);
  await e.ready;
  try {
    // An image outside the data folder: never in the sample, no class.
    const extra = path.join(t.root, 'ipc-extra.png');
    fs.copyFileSync(path.join(t.data, TINY.classes[1], fs.readdirSync(path.join(t.data, TINY.classes[1]))[0]), extra);
    const got = await e.request('embeddings/compute', { runDir: t.run, perClass: 3, split: 'train', files: [extra] });
    const cache = new RunCache({ threads: 1 });
    const local = await computeEmbeddings(cache, { runDir: t.run, perClass: 3, split: 'train', files: [extra] });
    await cache.clear();
    assert.deepEqual(
      got.sample.map((x) => x.file),
      local.sample.map((x) => x.file),
    );
    assert.deepEqual(got.extra, [{ file: extra, label: -1 }]);
    assert.deepEqual(got.extra, local.extra);
    got.exits.forEach((x, j) => {
      close(x.coords, local.exits[j].coords, 1e-5, `exit ${j + 1} coords`);
      close(x.extraCoords, local.exits[j].extraCoords, 1e-5, `exit ${j + 1} extra`);
      close(x.explained, local.exits[j].explained, 1e-6, `exit ${j + 1} explained`);
    });
    await assert.rejects(
      e.request('embeddings/compute', { runDir: t.run, files: 'a.png' } as never),
      /embeddings\/compute: field 'files' must be a list of file paths/,
    );
    await assert.rejects(
      e.request('embeddings/compute', { runDir: t.run, exits: [0] } as never),
      /unknown field 'exits'/,
    );
    assert.deepEqual(await e.request('engine/shutdown', {}), { ok: true });
  } finally {
    if (e.child.exitCode === null) e.child.kill();
  }
});

test('embeddings/compute and similarity/compute on a run whose exits have head inputs of different widths', async () => {
  const t = await tinyRun();
  // An mlp branch (head input: its hidden layer, 8 wide), a linear one (D = 16), a conv-add one.
  const { run, r } = trainBeside(t, 'run-mixed', ['--branch', 'mlp,linear,conv-add', '--branch-hidden', '8']);
  assert.equal(r.code, 0, r.err);
  const cache = new RunCache({ threads: 1 });
  const feats = await cache.with(run, (x) =>
    sampleHeadInputs(x, { split: 'train', perClass: 4 }, [0, 1, 2], {}, 'test'),
  );
  assert.equal(feats.F[0], 8, 'the mlp exit: its hidden width');
  assert.equal(feats.F[1], TINY.dim);
  const n = feats.files.length;
  feats.z.forEach((z, j) => assert.equal(z.length, n * feats.F[j]));
  const res = await computeEmbeddings(cache, { runDir: run, perClass: 4, split: 'train' });
  res.exits.forEach((e, j) => close(e.coords, pca2(feats.z[j], n, feats.F[j]).coords, 1e-9, `exit ${j + 1}`));
  // The similarity panel's distances use each exit's own width too.
  const sim = await computeSimilarity(cache, { runDir: run, exits: [0, 1, 2], perClass: 4, split: 'train' });
  sim.exits.forEach((e, j) => {
    let dsum = 0;
    for (const d of e.dist) dsum += d;
    let tsum = 0;
    for (const x of res.exits[j].coords) tsum += x * x;
    const total = dsum / (2 * n);
    close([tsum], [(res.exits[j].explained[0] + res.exits[j].explained[1]) * total], 1e-5, `exit ${j + 1}`);
  });
  await cache.clear();
});
