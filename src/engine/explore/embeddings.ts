// 'embeddings/compute': where a class-balanced sample of a run's images lies at every exit, as a
// 2-D projection of each exit's head inputs z_j = LN_f(c_j) (the features graph regularization
// pulls together within a class and pushes apart across classes, docs/method.md §2). The same
// images at every exit, so one sees classes separate with depth, and a run trained with graph
// regularization tighten them against one without (`--variant no_gr`).
//
// The sample and the features come from the similarity panel's extraction (similarity.ts
// sampleHeadInputs: the same images for the same split, perClass and seed); the projection is a
// plain PCA per exit, here in float64:
//
//   X [n, F] the head inputs, mean μ [F], X_c = X - μ
//   axes v_1, v_2 [F]: the top two eigenvectors of X_c^T X_c (unit length)
//   coords t_ik = X_c[i] · v_k             explained_k = λ_k / Σ_all λ = λ_k / ||X_c||_F²
//
// Extra images (an image selected elsewhere) are placed with the sample's μ and axes, so they
// never move the sample's picture.

import * as path from 'node:path';
import type { EmbeddingsExit, EmbeddingsParams, EmbeddingsResult } from './types';
import { loadBatch } from '../data/image';
import { mulberry32 } from '../data/random';
import type { SessionOptions } from '../runtime/session';
import { UserError } from '../tensor';
import type { RunCache } from './runCache';
import { checkSampleParams, headInputsOf, MAX_SAMPLE, sampleHeadInputs } from './similarity';

// ------------------------------------------------------------------ PCA

/** A 2-D PCA of n samples of F features (pca2). */
export interface Pca2 {
  n: number;
  F: number;
  /** Mean of the samples [F]. */
  mean: Float64Array;
  /** Unit principal axes [F] each (PC1, PC2). An axis with no variance (fewer than 3 distinct
   *  samples, or identical ones) is the zero vector, and its coordinates are 0. */
  axes: [Float64Array, Float64Array];
  /** [n * 2] row-major: sample i at (coords[2i], coords[2i + 1]). */
  coords: Float64Array;
  /** Variance along each axis over the total, λ_k / Σλ (0 when the total is 0). */
  explained: [number, number];
  /** Which matrix was decomposed (the smaller one) and how. */
  via: 'gram' | 'cov';
  solver: 'jacobi' | 'lanczos';
}

export interface PcaOptions {
  /** 'gram': the n x n X_c X_c^T; 'cov': the F x F X_c^T X_c; 'auto' (default): the smaller. */
  via?: 'auto' | 'gram' | 'cov';
  /** 'jacobi': all eigenpairs (cyclic Jacobi); 'lanczos': the top two by Lanczos with full
   *  reorthogonalisation; 'auto' (default): Jacobi up to 64 x 64, Lanczos above. */
  solver?: 'auto' | 'jacobi' | 'lanczos';
}

/** Matrices up to this size are decomposed whole by Jacobi; larger ones by Lanczos. */
const JACOBI_MAX = 64;
/** Eigenvalues below this share of the total are no variance (rounding of a rank-deficient X_c). */
const RANK_EPS = 1e-12;

/**
 * PCA of the rows of `X` [n * F] (row-major), onto its first two principal axes, in float64.
 *
 * It decomposes whichever of X_c X_c^T (n x n) and X_c^T X_c (F x F) is smaller: they share
 * their non-zero eigenvalues, and an eigenvector u of the Gram matrix gives the axis
 * v = X_c^T u / |X_c^T u|.
 *
 * Sign: an eigenvector's sign is arbitrary (SVD implementations differ), so each axis is flipped
 * to make its largest-magnitude loading positive (the first such feature on a tie). The picture
 * is then a pure function of the data, the same for every solver and path.
 */
export function pca2(X: ArrayLike<number>, n: number, F: number, o: PcaOptions = {}): Pca2 {
  if (!(n >= 1) || !(F >= 1) || X.length !== n * F)
    throw new Error(`pca2: ${X.length} values are not ${n} samples x ${F} features`);
  const mean = new Float64Array(F);
  for (let i = 0; i < n; i++) for (let k = 0; k < F; k++) mean[k] += X[i * F + k];
  for (let k = 0; k < F; k++) mean[k] /= n;
  const Xc = new Float64Array(n * F);
  for (let i = 0; i < n; i++) for (let k = 0; k < F; k++) Xc[i * F + k] = X[i * F + k] - mean[k];

  const via = o.via && o.via !== 'auto' ? o.via : n <= F ? 'gram' : 'cov';
  const m = via === 'gram' ? n : F;
  const S = new Float64Array(m * m);
  if (via === 'gram')
    for (let a = 0; a < n; a++)
      for (let b = a; b < n; b++) {
        let s = 0;
        for (let k = 0; k < F; k++) s += Xc[a * F + k] * Xc[b * F + k];
        S[a * m + b] = S[b * m + a] = s;
      }
  else
    for (let i = 0; i < n; i++)
      for (let k = 0; k < F; k++) {
        const x = Xc[i * F + k];
        if (x === 0) continue;
        for (let l = k; l < F; l++) S[k * m + l] += x * Xc[i * F + l];
      }
  if (via === 'cov') for (let k = 0; k < F; k++) for (let l = k + 1; l < F; l++) S[l * m + k] = S[k * m + l];
  let total = 0;
  for (let i = 0; i < m; i++) total += S[i * m + i];

  const solver = o.solver && o.solver !== 'auto' ? o.solver : m <= JACOBI_MAX ? 'jacobi' : 'lanczos';
  const top = solver === 'jacobi' ? jacobiTop(S, m, 2) : lanczosTop2(S, m);

  const axes: [Float64Array, Float64Array] = [new Float64Array(F), new Float64Array(F)];
  const explained: [number, number] = [0, 0];
  for (let c = 0; c < 2 && c < top.values.length; c++) {
    const lambda = top.values[c];
    if (!(total > 0) || !(lambda > RANK_EPS * total)) continue;
    const v = axes[c];
    const u = top.vectors[c];
    if (via === 'cov') v.set(u);
    else for (let a = 0; a < n; a++) for (let k = 0; k < F; k++) v[k] += u[a] * Xc[a * F + k];
    // Unit length, and the sign convention: the largest |loading| positive.
    let norm = 0;
    let big = 0;
    for (let k = 0; k < F; k++) {
      norm += v[k] * v[k];
      if (Math.abs(v[k]) > Math.abs(v[big])) big = k;
    }
    const scale = (v[big] < 0 ? -1 : 1) / Math.sqrt(norm);
    for (let k = 0; k < F; k++) v[k] *= scale;
    explained[c] = lambda / total;
  }
  const coords = new Float64Array(n * 2);
  for (let i = 0; i < n; i++)
    for (let c = 0; c < 2; c++) {
      let s = 0;
      for (let k = 0; k < F; k++) s += Xc[i * F + k] * axes[c][k];
      coords[i * 2 + c] = s;
    }
  return { n, F, mean, axes, coords, explained, via, solver };
}

/** Rows of `Y` [m * F] on the axes of `p` (its mean subtracted): [m * 2]. The axes do not move. */
export function project2(p: Pca2, Y: ArrayLike<number>, m: number): Float64Array {
  const F = p.F;
  if (Y.length !== m * F) throw new Error(`project2: ${Y.length} values are not ${m} rows of ${F}`);
  const out = new Float64Array(m * 2);
  for (let i = 0; i < m; i++)
    for (let c = 0; c < 2; c++) {
      let s = 0;
      for (let k = 0; k < F; k++) s += (Y[i * F + k] - p.mean[k]) * p.axes[c][k];
      out[i * 2 + c] = s;
    }
  return out;
}

/** The largest eigenvalues (descending) of a symmetric matrix and their unit eigenvectors. */
export interface TopEigen {
  values: number[];
  vectors: Float64Array[];
}

/**
 * Every eigenpair of the symmetric m x m `A` (row-major, not modified) by cyclic Jacobi
 * rotations, returned largest first; the `count` largest are kept. Each rotation zeroes one
 * off-diagonal pair exactly; sweeps go on until the off-diagonal mass is at rounding level or
 * stops shrinking (quadratic convergence: ~6-10 sweeps). O(m³) per sweep: for small matrices.
 */
export function jacobiTop(A: Float64Array, m: number, count = m): TopEigen {
  const a = Float64Array.from(A);
  const V = new Float64Array(m * m);
  for (let i = 0; i < m; i++) V[i * m + i] = 1;
  let prevOff = Infinity;
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    let diag = 0;
    for (let p = 0; p < m; p++) {
      diag += a[p * m + p] ** 2;
      for (let q = p + 1; q < m; q++) off += a[p * m + q] ** 2;
    }
    if (off === 0 || off <= 1e-32 * (diag + 2 * off) || (off >= prevOff && off <= 1e-24 * (diag + 2 * off))) break;
    prevOff = off;
    for (let p = 0; p < m - 1; p++)
      for (let q = p + 1; q < m; q++) {
        const apq = a[p * m + q];
        if (apq === 0) continue;
        // The rotation in the (p, q) plane that zeroes a_pq (Rutishauser's stable form).
        const theta = (a[q * m + q] - a[p * m + p]) / (2 * apq);
        const t = (theta >= 0 ? 1 : -1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < m; k++) {
          const akp = a[k * m + p];
          const akq = a[k * m + q];
          a[k * m + p] = c * akp - s * akq;
          a[k * m + q] = s * akp + c * akq;
        }
        for (let k = 0; k < m; k++) {
          const apk = a[p * m + k];
          const aqk = a[q * m + k];
          a[p * m + k] = c * apk - s * aqk;
          a[q * m + k] = s * apk + c * aqk;
        }
        a[p * m + q] = a[q * m + p] = 0;
        for (let k = 0; k < m; k++) {
          const vkp = V[k * m + p];
          const vkq = V[k * m + q];
          V[k * m + p] = c * vkp - s * vkq;
          V[k * m + q] = s * vkp + c * vkq;
        }
      }
  }
  const order = Array.from({ length: m }, (_, i) => i).sort((x, y) => a[y * m + y] - a[x * m + x] || x - y);
  const keep = order.slice(0, Math.min(count, m));
  return {
    values: keep.map((i) => a[i * m + i]),
    vectors: keep.map((i) => Float64Array.from({ length: m }, (_, k) => V[k * m + i])),
  };
}

/**
 * Every eigenpair of the symmetric tridiagonal matrix with diagonal `d` [k] and off-diagonal `e`
 * [k - 1] (e[i] couples i and i + 1), largest first: the implicit QL algorithm with Wilkinson-like
 * shifts (EISPACK tql2, as JAMA has it). Used for the Lanczos matrix T, whose size grows until the
 * top two Ritz pairs have converged.
 */
export function tridiagEigen(dIn: ArrayLike<number>, eIn: ArrayLike<number>): TopEigen {
  const n = dIn.length;
  const d = Float64Array.from(dIn);
  const e = new Float64Array(n);
  for (let i = 0; i < n - 1; i++) e[i] = eIn[i];
  const V = new Float64Array(n * n); // V[k * n + i]: component k of eigenvector i
  for (let i = 0; i < n; i++) V[i * n + i] = 1;
  let f = 0;
  let tst1 = 0;
  const eps = 2 ** -52;
  for (let l = 0; l < n; l++) {
    tst1 = Math.max(tst1, Math.abs(d[l]) + Math.abs(e[l]));
    let m = l;
    while (m < n - 1 && Math.abs(e[m]) > eps * tst1) m++;
    if (m > l) {
      let iter = 0;
      do {
        if (++iter > 60 * n) throw new Error('tridiagEigen: no convergence');
        // The implicit shift.
        let g = d[l];
        let p = (d[l + 1] - g) / (2 * e[l]);
        let r = Math.hypot(p, 1);
        if (p < 0) r = -r;
        d[l] = e[l] / (p + r);
        d[l + 1] = e[l] * (p + r);
        const dl1 = d[l + 1];
        let h = g - d[l];
        for (let i = l + 2; i < n; i++) d[i] -= h;
        f += h;
        // The implicit QL transformation, accumulated into V.
        p = d[m];
        let c = 1;
        let c2 = c;
        let c3 = c;
        const el1 = e[l + 1];
        let s = 0;
        let s2 = 0;
        for (let i = m - 1; i >= l; i--) {
          c3 = c2;
          c2 = c;
          s2 = s;
          g = c * e[i];
          h = c * p;
          r = Math.hypot(p, e[i]);
          e[i + 1] = s * r;
          s = e[i] / r;
          c = p / r;
          p = c * d[i] - s * g;
          d[i + 1] = h + s * (c * g + s * d[i]);
          for (let k = 0; k < n; k++) {
            h = V[k * n + i + 1];
            V[k * n + i + 1] = s * V[k * n + i] + c * h;
            V[k * n + i] = c * V[k * n + i] - s * h;
          }
        }
        p = (-s * s2 * c3 * el1 * e[l]) / dl1;
        e[l] = s * p;
        d[l] = c * p;
      } while (Math.abs(e[l]) > eps * tst1);
    }
    d[l] += f;
    e[l] = 0;
  }
  const order = Array.from({ length: n }, (_, i) => i).sort((x, y) => d[y] - d[x] || x - y);
  return {
    values: order.map((i) => d[i]),
    vectors: order.map((i) => Float64Array.from({ length: n }, (_, k) => V[k * n + i])),
  };
}

/**
 * The two largest eigenpairs of the symmetric m x m `S`, by Lanczos twice: the largest, then the
 * largest in the orthogonal complement of the first eigenvector (deflation). One Krylov space
 * holds a single direction of a repeated eigenvalue, so a single run for both pairs would miss
 * the second copy of a repeated top eigenvalue; the deflated run finds it.
 */
export function lanczosTop2(S: Float64Array, m: number): TopEigen {
  const first = lanczosTop1(S, m, []);
  if (m < 2) return { values: [first.value], vectors: [first.vector] };
  const second = lanczosTop1(S, m, [first.vector]);
  // Equal values can come out one rounding error the wrong way round: largest first.
  const [a, b] = second.value > first.value ? [second, first] : [first, second];
  return { values: [a.value, b.value], vectors: [a.vector, b.vector] };
}

/**
 * The largest eigenpair of the symmetric m x m `S` restricted to the orthogonal complement of
 * the unit vectors `locked` (deflation: each Lanczos vector is kept orthogonal to them), by
 * Lanczos with full reorthogonalisation (twice, classical Gram-Schmidt) from a fixed
 * pseudo-random start. Every few steps the Ritz pairs of the tridiagonal T are computed
 * (tridiagEigen); it stops when the top one's residual |β_k y_k| is below 1e-12 of ||S||, or
 * when the Krylov vectors span the whole complement, where T holds its whole spectrum. When the
 * Krylov space closes early (β ≈ 0), it goes on from a new vector orthogonal to it.
 */
function lanczosTop1(S: Float64Array, m: number, locked: Float64Array[]): { value: number; vector: Float64Array } {
  let normS = 0; // the largest absolute row sum: a bound on ||S||
  for (let i = 0; i < m; i++) {
    let r = 0;
    for (let j = 0; j < m; j++) r += Math.abs(S[i * m + j]);
    normS = Math.max(normS, r);
  }
  const dim = m - locked.length;
  const rand = mulberry32(0x5eed + locked.length);
  const Q: Float64Array[] = [];
  const alpha: number[] = [];
  const beta: number[] = [];
  /** w minus its components along the locked and Lanczos vectors; returns the norm left. */
  const orthogonalise = (w: Float64Array): number => {
    for (let pass = 0; pass < 2; pass++)
      for (const q of locked.concat(Q)) {
        let c = 0;
        for (let k = 0; k < m; k++) c += q[k] * w[k];
        for (let k = 0; k < m; k++) w[k] -= c * q[k];
      }
    let nw = 0;
    for (let k = 0; k < m; k++) nw += w[k] * w[k];
    return Math.sqrt(nw);
  };
  const fresh = (): Float64Array => {
    for (let tries = 0; ; tries++) {
      const w = Float64Array.from({ length: m }, () => rand() - 0.5);
      const nw = orthogonalise(w);
      if (nw > 1e-6 || tries > 100) return w.map((x) => x / nw);
    }
  };
  if (dim <= 0 || normS === 0) return { value: 0, vector: dim > 0 ? fresh() : new Float64Array(m) };
  let q = fresh();
  let nextCheck = 8;
  const tiny = 1e-13 * normS;
  for (let k = 0; k < dim; k++) {
    Q.push(q);
    const w = new Float64Array(m);
    for (let i = 0; i < m; i++) {
      let s = 0;
      for (let j = 0; j < m; j++) s += S[i * m + j] * q[j];
      w[i] = s;
    }
    let a = 0;
    for (let i = 0; i < m; i++) a += q[i] * w[i];
    alpha.push(a);
    const b = orthogonalise(w);
    const last = k + 1 === dim;
    if (last || (k + 1 >= nextCheck && b > tiny)) {
      nextCheck = Math.ceil((k + 1) * 1.25) + 4;
      const T = tridiagEigen(alpha, beta);
      const y = T.vectors[0];
      if (last || Math.abs(b * y[k]) <= 1e-12 * normS) {
        const x = new Float64Array(m);
        Q.forEach((qj, j) => {
          for (let i = 0; i < m; i++) x[i] += y[j] * qj[i];
        });
        let nx = 0;
        for (let i = 0; i < m; i++) nx += x[i] * x[i];
        return { value: T.values[0], vector: x.map((v) => v / Math.sqrt(nx)) };
      }
    }
    if (b > tiny) {
      beta.push(b);
      q = w.map((x) => x / b);
    } else {
      // The Krylov space closed: T splits here (β = 0); go on from a new direction.
      beta.push(0);
      q = fresh();
    }
  }
  throw new Error('lanczosTop1: unreachable');
}

// ------------------------------------------------------------------ the request

/** The sample's projection per exit, kept while the run stays loaded (extra files reuse it). */
interface SampleProjection {
  sample: { file: string; label: number }[];
  skipped: { file: string; reason: string }[];
  seed: number;
  pcas: Pca2[];
}

export async function computeEmbeddings(
  cache: RunCache,
  p: EmbeddingsParams,
  so: SessionOptions = {},
): Promise<EmbeddingsResult> {
  const M = 'embeddings/compute';
  const { split, perClass } = checkSampleParams(p, M, 'test');
  if (p.files !== undefined && (!Array.isArray(p.files) || !p.files.every((f) => typeof f === 'string' && f)))
    throw new UserError(`${M}: files must be a list of image paths`);
  if ((p.files?.length ?? 0) > MAX_SAMPLE)
    throw new UserError(`${M}: at most ${MAX_SAMPLE} extra files, got ${p.files!.length}`);
  return cache.with(p.runDir, async (run) => {
    const rp = run.predictor;
    const { cf } = rp;
    if (cf.met.task === 'regression')
      throw new UserError(`${p.runDir}: a regression run has no classes to colour its embeddings by`);
    const exits = Array.from({ length: rp.K }, (_, j) => j);
    const seed = p.seed ?? cf.train.seed;
    // The sample, its features and their PCA: once per (split, perClass, seed) while the run
    // stays loaded (its model files unchanged). Only the PCA is kept, not the features.
    const base = await run.extra<SampleProjection>(
      `embeddings:${split}:${perClass}:${String(seed)}`,
      async () => {
        const s = await sampleHeadInputs(run, { split, perClass, seed: p.seed }, exits, so, M);
        const n = s.files.length;
        return {
          sample: s.files.map((file, i) => ({ file, label: s.labels[i] })),
          skipped: s.skipped,
          seed: s.seed,
          pcas: s.z.map((z, j) => pca2(z, n, s.F[j])),
        };
      },
      async () => undefined,
    );

    // Extra files: those not in the sample (once each), decoded, forwarded, projected.
    const inSample = new Set(base.sample.map((x) => path.resolve(x.file)));
    const asked = [...new Set((p.files ?? []).map((f) => path.resolve(f)))].filter((f) => !inSample.has(f));
    const skipped = base.skipped.slice();
    let extra: { file: string; label: number }[] = [];
    let extraCoords: Float64Array[] = exits.map(() => new Float64Array(0));
    if (asked.length) {
      const b = await loadBatch(asked, rp.pre);
      skipped.push(...b.failed);
      const per = rp.vit.channels * rp.vit.imageSize * rp.vit.imageSize;
      const images = b.ok.map((_, i) => b.data.subarray(i * per, (i + 1) * per));
      if (images.length) {
        const h = await headInputsOf(run, images, exits, so);
        extraCoords = h.z.map((z, j) => project2(base.pcas[j], z, images.length));
        // The class its folder names, as the data folder's layout gives it (-1: none).
        extra = b.ok.map((file) => ({ file, label: cf.classes.indexOf(path.basename(path.dirname(file))) }));
      }
    }
    const out: EmbeddingsExit[] = exits.map((j) => ({
      exit: j,
      layer: cf.met.exits[j],
      coords: Array.from(base.pcas[j].coords),
      extraCoords: Array.from(extraCoords[j]),
      explained: [base.pcas[j].explained[0], base.pcas[j].explained[1]],
    }));
    return {
      classes: cf.classes.slice(),
      sample: base.sample.map((x) => ({ ...x })),
      extra,
      exits: out,
      skipped,
      split,
      perClass,
      seed: base.seed,
    };
  });
}
