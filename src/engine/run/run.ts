// A run: scan the data, fine-tune with MET, evaluate every exit, fit the budgeted-inference
// thresholds, and write it all into the run folder (its files and their types: runFolder.ts).

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ImageCache } from '../data/cache';
import { scanDataset, type Dataset, type Sample } from '../data/folder';
import { epochOrder, stepRng } from '../data/random';
import type { Preprocess } from '../data/image';
import { branchDims, branchTypes, validateBranches } from '../model/branches';
import type { VitConfig } from '../model/config';
import { validateDistill } from '../model/distill';
import { defaultExits, initMetParams, validateMetConfig } from '../model/met';
import { exitMetrics, isRegression, targetStats } from '../model/regression';
import { agreementConfidence, exitScores } from '../infer/exitScores';
import { prepareWeights } from '../model/vit';
import { type RegressionDataset, scanRegression } from '../data/targets';
import type { RegressionSample } from '../data/targetsFile';
import { confidences, buildSegments, cumulativeGflops, SegmentRunner } from '../infer/segments';
import { budgetCurve } from '../infer/thresholds';
import { resolveDevice } from '../runtime/device';
import { cpuOnly, type SessionOptions } from '../runtime/session';
import { type HostTensor, UserError } from '../tensor';
import { train, type TrainEvent } from '../train/trainer';
import { loadBackbone } from '../weights';
import { readSafetensors } from '../weights/safetensors';
import { metConfigOf, type TrainConfig } from './config';
import { RunStatusWriter } from './status';
import { assertUnlocked, claimNewRunDir, claimRunDir, type HeldLock, holdsRun, runExistsError } from './lock';
import {
  type PredictionsFile,
  readRunConfig,
  readThresholds,
  RUN_FILE,
  RUN_VERSION,
  type RunConfigFile,
  type RunReportFile,
  type RunPhase,
  type RunSummary,
  type SplitPredictions,
  type ThresholdsFile,
  writeJson,
} from './runFolder';

export interface RunHandlers {
  onEvent?: (e: TrainEvent) => void;
  log?: (msg: string) => void;
  shouldStop?: () => string | null;
  /** The config file the settings were read from; recorded in the run's config.json. */
  configFile?: string;
  /** Images per backbone chunk of the CPU train step (tests; default trainChunkRows). */
  chunkRows?: number;
  /** A new run's `out` that already holds a run is moved aside to `<out>.old-<time>` instead of
   *  refused (`met train --overwrite`). */
  overwrite?: boolean;
  /** Who owns the run folder while this trains, as run.lock names it (default 'met train'). */
  owner?: string;
  /** The run folder is this process's (its lock is held, status.json written): followers may attach. */
  onClaimed?: (runDir: string) => void;
  /** The run moved on to another phase (status.json). */
  onPhase?: (phase: RunPhase) => void;
}

function stamp(): string {
  const d = new Date();
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}-${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}`;
}

/** A new run's folder: `out`, or a fresh `.met/runs/<time>-<variant>`. */
function newRunDirOf(out: string | undefined, variant: string): string {
  return path.resolve(out ?? path.join('.met', 'runs', `${stamp()}-${variant}`));
}

/** The run's preprocessing (eval: no augmentation), as training, `met eval` and `met predict` use it. */
export function preprocessOf(c: TrainConfig, vit: VitConfig): Preprocess {
  return { imageSize: vit.imageSize, channels: vit.channels as 1 | 3, mean: vit.mean, std: vit.std, resize: c.resize };
}

function backboneOf(c: TrainConfig) {
  const overrides: Partial<VitConfig> = {};
  if (c.imageSize) overrides.imageSize = c.imageSize;
  if (c.heads) overrides.heads = c.heads;
  if (c.backboneAct) overrides.act = c.backboneAct;
  if (c.mean) overrides.mean = c.mean;
  if (c.std) overrides.std = c.std;
  const b = loadBackbone(c.weights, { layout: c.layout, overrides });
  if (c.channels && c.channels !== b.config.channels)
    throw new UserError(
      `channels: ${c.channels} requested but ${path.basename(c.weights)} expects ${b.config.channels}-channel images`,
    );
  // The patch grid needs whole patches (gridSize would otherwise throw a bare Error deep in
  // prepareWeights).
  const { imageSize, patchSize } = b.config;
  if (imageSize < patchSize || imageSize % patchSize)
    throw new UserError(
      `imageSize: ${imageSize} is not a positive multiple of the patch size ${patchSize} of ${path.basename(c.weights)} (e.g. ${Math.max(1, Math.round(imageSize / patchSize)) * patchSize})`,
    );
  return { ...b, tensors: prepareWeights(b.config, b.tensors) };
}

async function sessionOptions(
  c: TrainConfig,
  purpose: 'train' | 'infer',
  log?: (m: string) => void,
): Promise<SessionOptions> {
  const choice = await resolveDevice(c.device, { purpose });
  if (c.device === 'auto') for (const n of choice.notes) log?.(n);
  return { providers: choice.providers, threads: c.threads };
}

/** Per-exit scores of a split, running every exit (static mode). */
async function scoreSplit(
  runner: SegmentRunner,
  cache: ImageCache,
  samples: Sample[],
  vit: VitConfig,
  batch = 64,
): Promise<SplitPredictions> {
  const K = runner.segments.length;
  const regression = runner.confidence === 'agreement';
  const out: SplitPredictions = {
    ...(regression ? { task: 'regression' as const } : {}),
    files: samples.map((s) => s.file),
    labels: samples.map((s) => (regression ? ((s as { value?: number }).value ?? NaN) : s.label)),
    conf: Array.from({ length: K }, () => []),
    pred: Array.from({ length: K }, () => []),
  };
  for (let s = 0; s < samples.length; s += batch) {
    const part = samples.slice(s, s + batch);
    const b = cache.batch(part);
    const r = await runner.allExits({
      dtype: 'float32',
      shape: [part.length, vit.channels, vit.imageSize, vit.imageSize],
      data: b.images,
    });
    if (regression) {
      const conf = agreementConfidence(r.probs);
      r.probs.forEach((v, j) => {
        out.conf[j].push(...conf[j]);
        out.pred[j].push(...v);
      });
      continue;
    }
    r.probs.forEach((p, j) => {
      const { conf, pred } = confidences(p, runner.numClasses);
      out.conf[j].push(...conf);
      out.pred[j].push(...pred);
    });
  }
  return out;
}

/** Regression: MAE and RMSE per exit (target units). */
export function staticRegression(p: SplitPredictions): { mae: number[]; rmse: number[] } {
  return exitMetrics(p.pred, p.labels);
}

export function staticAccuracy(p: SplitPredictions): number[] {
  if (p.task === 'regression') return p.pred.map(() => NaN);
  return p.pred.map((row) => (row.length ? row.filter((c, i) => c === p.labels[i]).length / row.length : NaN));
}

/**
 * Thresholds for budgeted inference: the curve fitted on val and evaluated on test, and a
 * default operating point chosen on val alone: the cheapest p whose val accuracy is within
 * 0.5 points of the last exit's.
 */
export function fitThresholds(
  val: SplitPredictions,
  test: SplitPredictions,
  gflops: number[],
  exits: number[],
): ThresholdsFile {
  const cost = exits.map((j) => gflops[j]);
  const curve = budgetCurve(exitScores(val, exits), exitScores(test, exits), cost);
  const valCurve = budgetCurve(exitScores(val, exits), exitScores(val, exits), cost);
  const regression = val.task === 'regression';
  // Regression: the curve's accuracy is -MAE; the default point is the cheapest p whose val MAE
  // is within 2% of the last used exit's.
  const lastAcc = regression
    ? -staticRegression(val).mae[exits[exits.length - 1]]
    : staticAccuracy(val)[exits[exits.length - 1]];
  const ok = valCurve
    .filter((pt) => (regression ? pt.accuracy >= lastAcc * 1.02 : pt.accuracy >= lastAcc - 0.005))
    .sort((a, b) => a.gflops - b.gflops);
  const pick = ok[0] ?? valCurve[valCurve.length - 1];
  return {
    exits,
    gflops,
    curve,
    chosen: pick
      ? {
          p: pick.p,
          thresholds: pick.thresholds,
          source: regression
            ? "cheapest p whose val MAE is within 2% of the last exit's"
            : 'cheapest p within 0.5 points of the last exit on val',
        }
      : {
          p: null,
          thresholds: exits.map((_, i) => (i === exits.length - 1 ? -Infinity : Infinity)),
          source: 'no val data: every sample runs to the last exit',
        },
  };
}

/**
 * A run needs validation images (per-epoch accuracy, the thresholds are fitted on val) and
 * test images (the accuracy it reports); an empty one would train and then print NaN%.
 */
function refuseEmptySplits(
  ds: { root: string; layout: string },
  n: { val: number; test: number },
  split: TrainConfig['split'],
): void {
  for (const name of ['val', 'test'] as const) {
    if (n[name]) continue;
    const pct = split ? split[name === 'val' ? 1 : 2] : undefined;
    const why =
      pct === 0
        ? `split ${split!.join(',')} gives it 0%; give it a share (e.g. --split 70,10,20)`
        : ds.layout === 'split-folders'
          ? `${ds.root} has no usable ${name === 'val' ? 'val/ images (and none could be set aside from train/)' : 'test/ images'}; add a ${name}/ folder or give it a share of a class-folders dataset`
          : `no usable image fell into it; add images or give it a larger share with --split`;
    throw new UserError(`split: the ${name === 'val' ? 'validation' : 'test'} split would be empty: ${why}`);
  }
}

/**
 * `met train`: scan the folder, fine-tune with MET, evaluate, fit thresholds. The run folder is
 * locked for the whole run (run/lock.ts): a resume takes the lock before anything else; a new
 * run refuses an `out` that holds a run (unless h.overwrite) or that another process owns, here
 * at once and again when the folder is made, with the lock held.
 */
export async function runTraining(c: TrainConfig, h: RunHandlers = {}, resumeDir?: string): Promise<RunSummary> {
  const owner = h.owner ?? 'met train';
  const locks: HeldLock[] = [];
  // From the moment the folder is ours: status.json, train.log and stop.request (run/status.ts),
  // so that a window can follow (or stop) this training from outside the process.
  let status: RunStatusWriter | null = null;
  const claimed = (held: HeldLock): string => {
    locks.push(held);
    status = new RunStatusWriter(held.runDir, owner);
    h.onClaimed?.(held.runDir);
    return held.runDir;
  };
  let newRunDir = (): string => {
    throw new Error('runTraining: a resumed run makes no new folder');
  };
  if (resumeDir) {
    claimed(claimRunDir(path.resolve(resumeDir), owner, h.log));
  } else {
    const dir = newRunDirOf(c.out, c.variant);
    // Before the backbone and the data are read: refuse a taken folder without the wait.
    assertUnlocked(dir, owner);
    if (!h.overwrite && holdsRun(dir)) throw runExistsError(dir);
    newRunDir = () => claimed(claimNewRunDir(dir, owner, { overwrite: h.overwrite, log: h.log }));
  }
  const st = (): RunStatusWriter | null => status;
  const handlers: RunHandlers = {
    ...h,
    log: (m) => {
      st()?.log(m);
      h.log?.(m);
    },
    onEvent: (e) => {
      st()?.event(e);
      h.onEvent?.(e);
    },
    shouldStop: () => h.shouldStop?.() ?? st()?.stopRequested() ?? null,
    onPhase: (p) => st()?.setPhase(p),
  };
  try {
    const summary = await trainLocked(c, handlers, resumeDir && path.resolve(resumeDir), newRunDir);
    st()?.end(summary.stopped ? 'stopped' : 'done', { stopped: summary.stopped });
    return summary;
  } catch (e) {
    st()?.end('failed', { error: e });
    throw e;
  } finally {
    for (const l of locks) l.release();
  }
}

async function trainLocked(
  c: TrainConfig,
  h: RunHandlers,
  resumeDir: string | undefined,
  newRunDir: () => string,
): Promise<RunSummary> {
  const log = h.log ?? (() => {});
  const bb = backboneOf(c);
  const vit = bb.config;
  const regression = c.task === 'regression';
  const ds: Dataset | RegressionDataset = regression
    ? await scanRegression({ root: c.data, targets: c.targets, split: c.split, seed: c.seed })
    : await scanDataset({ root: c.data, split: c.split, seed: c.seed });
  // Before the run folder exists; checked again below on the images that decode.
  refuseEmptySplits(ds, { val: ds.val.length, test: ds.test.length }, c.split);
  const exits = c.exits ?? defaultExits(vit.depth);
  const met = metConfigOf(c, exits, regression ? 1 : ds.classes.length);
  if (regression && c.distill)
    throw new UserError(
      'distill: copycat distillation matches class probabilities; it is not available for regression runs (task "regression")',
    );
  try {
    validateMetConfig(met, vit.depth);
  } catch (e) {
    throw new UserError(`exits: ${(e as Error).message}`);
  }
  try {
    validateBranches(branchDims(vit), met, exits.length);
    if (!regression) validateDistill(met, met.numClasses);
  } catch (e) {
    throw new UserError((e as Error).message);
  }
  const runDir = resumeDir ?? newRunDir();
  const pre = preprocessOf(c, vit);
  const evalCache = new ImageCache({ pre });
  const trainCache = c.augment ? new ImageCache({ pre, augment: { randomResizedCrop: {}, hflip: true } }) : evalCache;
  log(
    `data: ${regression ? 'regression targets' : `${ds.classes.length} classes`}, ${ds.train.length} train / ${ds.val.length} val / ${ds.test.length} test images (${ds.layout})`,
  );
  for (const w of ds.warnings) log(`warning: ${w}`);
  const prepTrain = await trainCache.prepare(ds.train);
  const prepVal = await evalCache.prepare(ds.val);
  const prepTest = await evalCache.prepare(ds.test);
  const failed = [...prepTrain.failed, ...prepVal.failed, ...prepTest.failed];
  const skipped = [...ds.skipped, ...failed];
  if (skipped.length) log(`skipped ${skipped.length} files (listed in ${path.join(runDir, RUN_FILE.report)})`);
  const train_ = prepTrain.ok;
  const val = prepVal.ok;
  const test = prepTest.ok;
  if (!train_.length) throw new UserError(`${c.data}: no training image could be read`);
  refuseEmptySplits(ds, { val: val.length, test: test.length }, c.split);
  if (regression) {
    // Standardisation from the training split only (model/regression.ts); written into the
    // run's MetConfig so that inference graphs map outputs back to the targets' units.
    const st =
      c.standardize === false ? { mean: 0, std: 1 } : targetStats(train_.map((s) => (s as RegressionSample).value));
    met.targetMean = st.mean;
    met.targetStd = st.std;
    ds.notes.push(
      c.standardize === false
        ? 'regression: targets used as they are (standardize: false)'
        : `regression: targets standardised with the training split's mean ${st.mean.toPrecision(6)} and std ${st.std.toPrecision(6)}`,
      `regression: ${met.regLoss ?? 'mse'} loss per exit; graph regularization is off (it needs classes), so lambda is ignored; early exiting uses the agreement between consecutive exits, -|y_j - y_(j-1)|`,
    );
  }

  const cfgFile: RunConfigFile = {
    version: RUN_VERSION,
    createdAt: new Date().toISOString(),
    train: {
      ...c,
      data: path.resolve(c.data),
      weights: path.resolve(c.weights),
      out: runDir,
      exits,
      ...(c.targets ? { targets: path.resolve(c.targets) } : {}),
    },
    backbone: { file: path.resolve(c.weights), layout: bb.layout, config: vit },
    met,
    classes: ds.classes,
    dataset: {
      root: ds.root,
      layout: ds.layout,
      counts: { train: train_.length, val: val.length, test: test.length },
      notes: ds.notes,
    },
    ...(h.configFile ? { configFile: path.resolve(h.configFile) } : {}),
  };
  if (!resumeDir) {
    writeJson(path.join(runDir, RUN_FILE.config), cfgFile);
    const external = 'external' in ds ? ds.external : [];
    const report: RunReportFile = {
      skipped,
      warnings: ds.warnings,
      notes: ds.notes,
      ...(external.length ? { external } : {}),
    };
    if (external.length)
      log(
        `${external.length} symbolic link${external.length === 1 ? ' leads' : 's lead'} out of ${ds.root} (listed in ${path.join(runDir, RUN_FILE.report)})`,
      );
    writeJson(path.join(runDir, RUN_FILE.report), report);
  }

  const so = await sessionOptions(c, 'train', log);
  const segsTrainable = buildSegments(vit, met, bb.tensors, initMetParams(vit, met, c.seed), false, cpuOnly(so));
  let valRunner: SegmentRunner | null = null;
  const validate = async (params: Map<string, HostTensor>) => {
    if (!val.length) return [];
    valRunner ??= await SegmentRunner.create(segsTrainable, met.numClasses, params, so);
    for (const [k, v] of params) valRunner.feeds[k] = v;
    const p = await scoreSplit(valRunner, evalCache, val, vit);
    return regression ? staticRegression(p) : staticAccuracy(p);
  };
  let imgPerSec = 0;
  const { params, stopped } = await train({
    runDir,
    files: { checkpoint: RUN_FILE.checkpoint, trainable: RUN_FILE.trainable, metrics: RUN_FILE.metrics },
    cfg: vit,
    backbone: bb.tensors,
    met,
    init: initMetParams(vit, met, c.seed),
    schedule: {
      epochs: c.epochs,
      batch: c.batch,
      lr: c.lr,
      minLr: c.minLr,
      weightDecay: c.weightDecay,
      warmupEpochs: c.warmupEpochs,
      seed: c.seed,
    },
    data: {
      train: train_,
      val,
      batch: (s, rng) => trainCache.batch(s, rng),
      epochOrder: (s, seed, epoch) => epochOrder(s, seed, epoch),
      stepRng: (seed, epoch, step) => stepRng(seed, epoch, step),
      augment: c.augment,
    },
    session: so,
    validate,
    onEvent: (e) => {
      if (e.type === 'start' && e.transfer)
        log(
          `${e.transfer.resident ? 'device-resident step (parameters and AdamW moments stay on the GPU)' : 'step'}: ${(e.transfer.upBytes / 1024).toFixed(1)} KiB to the device and ${(e.transfer.downBytes / 1024).toFixed(1)} KiB back per step of ${c.batch}`,
        );
      if (e.type === 'step') imgPerSec = imgPerSec ? 0.9 * imgPerSec + 0.1 * e.imgPerSec : e.imgPerSec;
      h.onEvent?.(e);
    },
    shouldStop: h.shouldStop,
    resume: !!resumeDir,
    chunkRows: h.chunkRows,
  });
  await (valRunner as SegmentRunner | null)?.release();
  if (stopped) return { runDir, exits: [], dynamic: [], trainImgPerSec: imgPerSec, stopped };

  h.onPhase?.('evaluating');
  const summary = await evaluateAndWrite(
    runDir,
    cfgFile,
    bb.tensors,
    params,
    evalCache,
    { val, test },
    so,
    c.dynamicExits,
  );
  summary.trainImgPerSec = imgPerSec;
  writeJson(path.join(runDir, RUN_FILE.summary), summary);
  return summary;
}

async function evaluateAndWrite(
  runDir: string,
  cf: RunConfigFile,
  backbone: Map<string, HostTensor>,
  params: Map<string, HostTensor>,
  cache: ImageCache,
  splits: { val: Sample[]; test: Sample[] },
  so: SessionOptions,
  dynamicExits?: number[],
): Promise<RunSummary> {
  const vit = cf.backbone.config;
  const met = cf.met;
  const segs = buildSegments(vit, met, backbone, params, true, cpuOnly(so));
  const gflops = cumulativeGflops(segs);
  const runner = await SegmentRunner.create(segs, met.numClasses, null, so);
  const val = await scoreSplit(runner, cache, splits.val, vit);
  const test = await scoreSplit(runner, cache, splits.test, vit);
  await runner.release();
  const predictions: PredictionsFile = {
    classes: cf.classes,
    exits: met.exits,
    ...(isRegression(met) ? { task: 'regression' as const } : {}),
    val,
    test,
  };
  writeJson(path.join(runDir, RUN_FILE.predictions), predictions);
  const used = dynamicExits ? dynamicExits.map((e) => e - 1) : met.exits.map((_, j) => j);
  const th = fitThresholds(val, test, gflops, used);
  writeJson(path.join(runDir, RUN_FILE.thresholds), th);
  const acc = staticAccuracy(test);
  const reg = isRegression(met) ? staticRegression(test) : null;
  return {
    runDir,
    ...(reg ? { task: 'regression' as const } : {}),
    exits: met.exits.map((layer, j) => ({
      exit: j + 1,
      layer,
      branch: branchTypes(met, met.exits.length)[j],
      accuracy: acc[j],
      gflops: gflops[j],
      ...(reg ? { mae: reg.mae[j], rmse: reg.rmse[j] } : {}),
    })),
    dynamic: th.curve.map((p) => ({
      p: p.p,
      accuracy: p.accuracy,
      gflops: p.gflops,
      thresholds: p.thresholds,
      exitCounts: p.exitCounts,
      ...(reg ? { mae: -p.accuracy } : {}),
    })),
    trainImgPerSec: 0,
    stopped: null,
  };
}

/** Loads what a run needs for inference. */
export function loadRun(runDir: string) {
  const cf = readRunConfig(runDir);
  const wfile = path.join(runDir, RUN_FILE.trainable);
  if (!fs.existsSync(wfile))
    throw new UserError(`${runDir}: no ${RUN_FILE.trainable} yet (has the run finished an epoch?)`);
  const params = readSafetensors(wfile);
  if (!fs.existsSync(cf.backbone.file))
    throw new UserError(`${runDir}: the backbone weights ${cf.backbone.file} are gone`);
  const bb = backboneOf(cf.train);
  return { cf, params, backbone: bb.tensors, vit: bb.config };
}

/**
 * `met eval`: per-exit accuracy and GFLOPs on the run's test split (or another folder), and the
 * dynamic curve. It holds the run's lock while it reads and writes: a run still training (or
 * evaluated by another process) is refused with its owner named, rather than given
 * predictions.json and thresholds.json from whatever epoch it is at.
 */
export async function evaluateRun(
  runDir: string,
  opts: { data?: string; device?: TrainConfig['device']; threads?: number } = {},
): Promise<RunSummary> {
  const held = claimRunDir(path.resolve(runDir), 'met eval');
  try {
    return await evaluateLocked(held.runDir, opts);
  } finally {
    held.release();
  }
}

async function evaluateLocked(
  runDir: string,
  opts: { data?: string; device?: TrainConfig['device']; threads?: number },
): Promise<RunSummary> {
  const { cf, params, backbone, vit } = loadRun(runDir);
  const c = { ...cf.train, device: opts.device ?? cf.train.device, threads: opts.threads ?? cf.train.threads };
  const so = await sessionOptions(c, 'infer');
  const cache = new ImageCache({ pre: preprocessOf(c, vit) });
  const regression = isRegression(cf.met);
  const ds = regression
    ? await scanRegression({ root: cf.dataset.root, targets: c.targets, split: c.split, seed: c.seed })
    : await scanDataset({ root: cf.dataset.root, split: c.split, seed: c.seed });
  let test: Sample[] = ds.test;
  if (opts.data && regression) {
    // Another folder: every image in it with a value in its own targets file.
    const other = await scanRegression({ root: opts.data, split: [0, 0, 100], seed: 0 });
    test = [...other.train, ...other.val, ...other.test];
  } else if (opts.data) {
    // Another folder: every image in it, labelled by class folder names of the run.
    const other = await scanDataset({ root: opts.data, split: [0, 0, 100], seed: 0 });
    test = [...other.train, ...other.val, ...other.test].flatMap((s) => {
      const name = other.classes[s.label];
      const label = cf.classes.indexOf(name);
      return label >= 0 ? [{ file: s.file, label }] : [];
    });
    if (!test.length)
      throw new UserError(`${opts.data}: none of its class folders match the run's classes (${cf.classes.join(', ')})`);
  }
  const val = (await cache.prepare(ds.val)).ok;
  test = (await cache.prepare(test)).ok;
  const th = readThresholds(runDir);
  return evaluateAndWrite(
    opts.data ? fs.mkdtempSync(path.join(os.tmpdir(), 'met-eval-')) : runDir,
    cf,
    backbone,
    params,
    cache,
    { val, test },
    so,
    th ? th.exits.map((j) => j + 1) : undefined,
  );
}
