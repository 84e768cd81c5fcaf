// 'similarity/compute': the matrices graph regularization works with, on a class-balanced
// sample of a run's data, for the similarity panel.
//
// Graph regularization (docs/method.md §2; the formula is written out once, at
// graphRegularization in src/engine/model/met.ts) pulls together the head inputs z_j = LN_f(c_j)
// of an early exit for same-class pairs and pushes apart those of different-class pairs, each
// pair weighted by how similar the LAST exit finds the two images (cosine of its logits).
// grMatrices evaluates that formula on the host, in float64, with the run's flags, and returns
// the matrices and the regularization term they give; a unit test holds it to the graph's value
// through onnxruntime. (It stays a host loop rather than the graph function: the panel gets the
// whole sample's n x n matrices in float64, with an exact zero diagonal distance.)

import type { SimilarityExit, SimilarityParams, SimilarityResult } from './types';
import { scanDataset, type Sample } from '../data/folder';
import { hashInts, shuffled } from '../data/random';
import { loadBatch } from '../data/image';
import { Graph, type Tensor } from '../graph/ir';
import { compile } from '../graph/onnx';
import type { RunPredictor } from '../run/runPredictor';
import { GR_EPS, type MetConfig, metForward, MetTensors } from '../model/met';
import { VitParams } from '../model/vit';
import { Session, type SessionOptions } from '../runtime/session';
import { UserError } from '../tensor';
import type { LoadedRun, RunCache } from './runCache';

export const DEFAULT_PER_CLASS = 8;
/** Largest sample: three n x n float32 matrices per exit travel to the webview. */
export const MAX_SAMPLE = 2048;
const BATCH = 32;

export type GrFlags = Pick<MetConfig, 'simClamp' | 'grExcludeSelf' | 'grSquared' | 'grForm' | 'grNormalize'>;

export interface GrMatrices {
  /** n x n, row-major: S^w (same-class pairs), S^b (different-class pairs), and the distance
   *  graph regularization weighs them with (squared Euclidean by default; see the flags). */
  sw: Float32Array;
  sb: Float32Array;
  dist: Float32Array;
  /** intra - inter (grForm 'diff') or intra / inter ('ratio'), as the training loss adds it. */
  gr: number;
  /** The two terms: Σ S^w·dist / #(S^w ≠ 0) and Σ S^b·dist / #(S^b ≠ 0). */
  intra: number;
  inter: number;
}

/**
 * The matrices of graph regularization for head inputs `z` [n, D] and last-exit logits
 * `lastLogits` [n, C] (row-major) of samples with `labels` [n], under the run's flags: S^w, S^b,
 * the distance d_ab, L_intra, L_inter and L_GR exactly as graphRegularization (model/met.ts)
 * defines them, with the same flags and ε (GR_EPS). Computed in float64 (the graph runs in
 * float32), and the distance as a sum of squared differences, which is exact on the diagonal
 * where the graph's |a|² + |b|² - 2a·b leaves rounding noise (clamped at 0 by its relu).
 */
export function grMatrices(
  z: Float32Array | Float64Array,
  lastLogits: Float32Array | Float64Array,
  labels: ArrayLike<number>,
  met: GrFlags,
): GrMatrices {
  const n = labels.length;
  if (!n) throw new Error('grMatrices: no samples');
  if (z.length % n || lastLogits.length % n)
    throw new Error(`grMatrices: ${z.length} feature and ${lastLogits.length} logit values for ${n} samples`);
  const D = z.length / n;
  const C = lastLogits.length / n;
  // Unit rows of the logits: o / sqrt(|o|² + ε), as the graph normalises them.
  const on = new Float64Array(n * C);
  for (let a = 0; a < n; a++) {
    let s = 0;
    for (let c = 0; c < C; c++) s += lastLogits[a * C + c] ** 2;
    const norm = Math.sqrt(s + GR_EPS);
    for (let c = 0; c < C; c++) on[a * C + c] = lastLogits[a * C + c] / norm;
  }
  const sw = new Float32Array(n * n);
  const sb = new Float32Array(n * n);
  const dist = new Float32Array(n * n);
  let sumW = 0;
  let sumB = 0;
  let nzW = 0;
  let nzB = 0;
  for (let a = 0; a < n; a++) {
    for (let b = 0; b < n; b++) {
      let S = 0;
      for (let c = 0; c < C; c++) S += on[a * C + c] * on[b * C + c];
      if (met.simClamp === 'relu') S = Math.max(S, 0);
      else if (met.simClamp === 'affine') S = (S + 1) * 0.5;
      let d2 = 0;
      for (let k = 0; k < D; k++) d2 += (z[a * D + k] - z[b * D + k]) ** 2;
      let d = met.grSquared ? d2 : Math.sqrt(d2 + GR_EPS);
      if (met.grNormalize) d /= D;
      const same = labels[a] === labels[b];
      const w = same && !(met.grExcludeSelf && a === b) ? S : 0;
      const bt = same ? 0 : S;
      sw[a * n + b] = w;
      sb[a * n + b] = bt;
      dist[a * n + b] = d;
      sumW += w * d;
      sumB += bt * d;
      if (w !== 0) nzW++;
      if (bt !== 0) nzB++;
    }
  }
  const intra = sumW / Math.max(nzW, 1);
  const inter = sumB / Math.max(nzB, 1);
  return { sw, sb, dist, intra, inter, gr: met.grForm === 'ratio' ? intra / (inter + GR_EPS) : intra - inter };
}

/**
 * `perClass` samples of each class from `samples` (fewer when a class has fewer): each class's
 * files shuffled with a seed derived from (seed, class), so the sample is a pure function of the
 * split and the seed and one class's choice does not move when another class changes. Returned
 * per class, each class's candidates in that shuffled order (callers take the first ones that
 * decode).
 */
export function shuffledByClass(samples: readonly Sample[], numClasses: number, seed: number): Sample[][] {
  const by: Sample[][] = Array.from({ length: numClasses }, () => []);
  for (const s of samples) if (s.label >= 0 && s.label < numClasses) by[s.label].push(s);
  return by.map((list, c) => shuffled(list, hashInts(seed, c)));
}

interface FeatureModel {
  session: Session;
  /** Output names: z_1..z_K (head inputs), logits_K (last exit). */
  K: number;
}

/** The whole network once, with every exit's head input and the last exit's logits as outputs. */
async function featureModel(rp: RunPredictor, so: SessionOptions): Promise<FeatureModel> {
  const vit = rp.vit;
  const g = new Graph();
  const P = new VitParams(g, rp.backbone);
  const T = new MetTensors(g, rp.params, false);
  const images = g.input('images', ['B', vit.channels, vit.imageSize, vit.imageSize]);
  const f = metForward(g, P, T, vit, rp.met, images);
  const outs: Record<string, Tensor> = {};
  f.features.forEach((z, j) => (outs[`z_${j + 1}`] = z));
  outs.logits_last = f.logits[f.logits.length - 1];
  const session = await Session.create(compile(g, outs, { name: 'met_features' }), so);
  return { session, K: f.features.length };
}

/** The sample's settings, checked (errors named after `method`), with the defaults filled in. */
export function checkSampleParams(
  p: { runDir?: unknown; perClass?: unknown; split?: unknown },
  method: string,
  defaultSplit: Split,
): { split: Split; perClass: number } {
  if (!p || typeof p.runDir !== 'string' || !p.runDir)
    throw new UserError(`${method}: runDir (a run folder) is required`);
  const split = (p.split ?? defaultSplit) as Split;
  if (!['train', 'val', 'test'].includes(split))
    throw new UserError(`${method}: split must be train, val or test, got '${String(split)}'`);
  const perClass = (p.perClass ?? DEFAULT_PER_CLASS) as number;
  if (!Number.isInteger(perClass) || perClass < 1)
    throw new UserError(`${method}: perClass must be a positive integer, got ${String(p.perClass)}`);
  return { split, perClass };
}

export type Split = 'train' | 'val' | 'test';

/** A class-balanced sample of a run's split and its head inputs at some exits (sampleHeadInputs). */
export interface HeadInputSample {
  /** Class-sorted (by file name within a class), absolute files; labels [n]. */
  files: string[];
  labels: Int32Array;
  classes: string[];
  /** First index of each class in the sample, plus n at the end. */
  classStarts: number[];
  /** Sampled files that could not be decoded (replaced by other files of their class). */
  skipped: { file: string; reason: string }[];
  split: Split;
  seed: number;
  /** Per exit asked for, in that order: the width F_j of its head input (D, the backbone's
   *  width, for MET's linear head; exits with other branches may differ), and the head inputs
   *  z_j [n * F_j], row-major over `files`. */
  F: number[];
  z: Float32Array[];
  /** The last exit's logits [n * C] (graph regularization's similarities), when asked for. */
  lastLogits?: Float32Array;
}

/**
 * The class-balanced sample of `split` (perClass per class, fewer when a class has fewer; seed:
 * the run's by default) and every listed exit's head input z_j on it, through one forward of the
 * whole network per batch. What the similarity panel and the embeddings view both start from, so
 * the two show the same images with the same seed. The caller has checked `exits` against the run
 * and that it has classes; errors are named after `method`.
 */
export async function sampleHeadInputs(
  run: LoadedRun,
  s: { split: Split; perClass: number; seed?: number },
  exits: number[],
  so: SessionOptions,
  method: string,
  withLogits = false,
): Promise<HeadInputSample> {
  const { predictor: rp, extra } = run;
  const { cf } = rp;
  const { split, perClass } = s;
  const seed = s.seed ?? cf.train.seed;
  if (!Number.isSafeInteger(seed)) throw new UserError(`${method}: seed must be an integer, got ${String(s.seed)}`);
  const classes = cf.classes;
  if (perClass * classes.length > MAX_SAMPLE)
    throw new UserError(
      `${method}: ${perClass} per class x ${classes.length} classes is more than ${MAX_SAMPLE} images; lower perClass`,
    );

  // The run's own split of its data folder (as `met eval` makes it). Scanning checks every
  // file's header, seconds on a large dataset: done once while the run stays loaded.
  const ds = await extra(
    'dataset',
    () => scanDataset({ root: cf.dataset.root, split: cf.train.split, seed: cf.train.seed }),
    async () => undefined,
  );
  if (ds.classes.join('\n') !== classes.join('\n'))
    throw new UserError(
      `${cf.dataset.root}: its class folders (${ds.classes.join(', ')}) are no longer the run's classes (${classes.join(', ')})`,
    );
  const candidates = shuffledByClass(ds[split], classes.length, seed);

  // Decode the first perClass candidates of each class that can be read.
  const files: string[] = [];
  const labels: number[] = [];
  const skipped: { file: string; reason: string }[] = [];
  const chunks: Float32Array[] = [];
  const per = rp.vit.channels * rp.vit.imageSize * rp.vit.imageSize;
  for (let c = 0; c < classes.length; c++) {
    const chosen: { file: string; data: Float32Array }[] = [];
    for (let at = 0; chosen.length < perClass && at < candidates[c].length;) {
      const want = candidates[c].slice(at, at + perClass - chosen.length).map((x) => x.file);
      at += want.length;
      const b = await loadBatch(want, rp.pre);
      skipped.push(...b.failed);
      b.ok.forEach((file, i) => chosen.push({ file, data: b.data.subarray(i * per, (i + 1) * per) }));
    }
    // Within a class by file name: a stable, readable axis.
    chosen.sort((x, y) => (x.file < y.file ? -1 : x.file > y.file ? 1 : 0));
    for (const x of chosen) {
      files.push(x.file);
      labels.push(c);
      chunks.push(x.data);
    }
  }
  const n = files.length;
  if (!n) throw new UserError(`${cf.dataset.root}: the ${split} split has no readable image to sample`);
  const classStarts: number[] = [];
  for (let c = 0, i = 0; c <= classes.length; c++) {
    while (i < n && labels[i] < c) i++;
    classStarts.push(i);
  }
  const h = await headInputsOf(run, chunks, exits, so, withLogits);
  return {
    files,
    labels: Int32Array.from(labels),
    classes: classes.slice(),
    classStarts,
    skipped,
    split,
    seed,
    ...h,
  };
}

/**
 * Head inputs of decoded images (`images`: one [channels * size * size] array each, as loadBatch
 * makes them) at `exits`, batch by batch through the run's feature session (built once per loaded
 * run): per exit its width F_j and z_j [m * F_j], and the last exit's logits [m * C] with `withLogits`.
 */
export async function headInputsOf(
  run: LoadedRun,
  images: Float32Array[],
  exits: number[],
  so: SessionOptions,
  withLogits = false,
): Promise<{ F: number[]; z: Float32Array[]; lastLogits?: Float32Array }> {
  const { predictor: rp, extra } = run;
  const fm = await extra(
    'features',
    () => featureModel(rp, so),
    (m) => m.session.release(),
  );
  const vit = rp.vit;
  const per = vit.channels * vit.imageSize * vit.imageSize;
  const m = images.length;
  const C = rp.C;
  // F_j: each exit's head-input width (D for MET's linear head), read off the first batch's output.
  let F: number[] = exits.map(() => vit.dim);
  let z: Float32Array[] = exits.map(() => new Float32Array(0));
  const logits = withLogits ? new Float32Array(m * C) : undefined;
  const fetch = [...new Set(exits.map((j) => `z_${j + 1}`)), ...(withLogits ? ['logits_last'] : [])];
  for (let s = 0; s < m; s += BATCH) {
    const b = Math.min(BATCH, m - s);
    const x = new Float32Array(b * per);
    for (let i = 0; i < b; i++) x.set(images[s + i], i * per);
    const r = await fm.session.run(
      { images: { dtype: 'float32', shape: [b, vit.channels, vit.imageSize, vit.imageSize], data: x } },
      fetch,
    );
    if (s === 0) {
      F = exits.map((j) => r[`z_${j + 1}`].data.length / b);
      z = F.map((f) => new Float32Array(m * f));
    }
    exits.forEach((j, e) => z[e].set(r[`z_${j + 1}`].data as Float32Array, s * F[e]));
    logits?.set(r.logits_last.data as Float32Array, s * C);
  }
  return { F, z, ...(logits ? { lastLogits: logits } : {}) };
}

export async function computeSimilarity(
  cache: RunCache,
  p: SimilarityParams,
  so: SessionOptions = {},
): Promise<SimilarityResult> {
  const M = 'similarity/compute';
  const { split, perClass } = checkSampleParams(p, M, 'val');
  if (!Array.isArray(p.exits) || !p.exits.length)
    throw new UserError('similarity/compute: exits must list at least one 0-based exit');
  return cache.with(p.runDir, async (run) => {
    const { cf } = run.predictor;
    const K = run.predictor.K;
    for (const j of p.exits)
      if (!Number.isInteger(j) || j < 0 || j >= K)
        throw new UserError(`similarity/compute: exit ${String(j)} is not one of the run's exits (0..${K - 1})`);
    // Graph regularization is defined over classes, and off for regression runs (model/regression.ts).
    if (cf.met.task === 'regression')
      throw new UserError(
        `${p.runDir}: a regression run has no classes, so no graph-regularization similarity matrices`,
      );
    // Every exit's head input and the last exit's logits on the sample.
    const s = await sampleHeadInputs(run, { split, perClass, seed: p.seed }, p.exits, so, M, true);
    const exits: SimilarityExit[] = p.exits.map((j, e) => {
      const g = grMatrices(s.z[e], s.lastLogits!, s.labels, cf.met);
      return { exit: j, layer: cf.met.exits[j], sw: g.sw, sb: g.sb, dist: g.dist, gr: g.gr };
    });
    return {
      files: s.files,
      labels: s.labels,
      classes: s.classes,
      classStarts: s.classStarts,
      exits,
      skipped: s.skipped,
      split,
      seed: s.seed,
    };
  });
}
