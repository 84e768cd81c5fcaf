// The MET training loop: onnxruntime computes the loss and the gradients of MET's small
// trainable set (the backbone is frozen: its weights are initializers and get no gradients),
// AdamW updates them in TypeScript, and the loop checkpoints atomically so that an interrupted
// run resumes to the same weights as an uninterrupted one.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { grad } from '../graph/grad';
import { Graph, type Tensor } from '../graph/ir';
import { compile } from '../graph/onnx';
import type { VitConfig } from '../model/config';
import { decays, type MetConfig, type MetForward, metForward, metLoss, MetTensors } from '../model/met';
import { isRegression, regressionLoss, regressionMetrics, targetBatch, targetScale } from '../model/regression';
import { gridSize, VitParams } from '../model/vit';
import { cpuOnly, type DeviceTensor, Session, type SessionOptions } from '../runtime/session';
import { type HostTensor, UserError } from '../tensor';
import { readSafetensorsFile, writeSafetensors } from '../weights/safetensors';
import { AdamW, warmupCosine } from './adamw';

export interface Sample {
  file: string;
  label: number;
  /** Regression runs: the target (data/targets.ts); label is then 0. */
  value?: number;
}

/** What the loop needs from the data pipeline (decoded, cached images). */
export interface TrainData {
  train: Sample[];
  val: Sample[];
  /** Images [B, C, S, S] and labels [B]; `rng` drives augmentation when it is on. */
  batch(samples: Sample[], rng?: () => number): { images: Float32Array; labels: BigInt64Array };
  /** The training order of an epoch (a pure function of seed and epoch). */
  epochOrder(samples: Sample[], seed: number, epoch: number): Sample[];
  /** Augmentation randomness of one step (a pure function of seed, epoch and step). */
  stepRng(seed: number, epoch: number, step: number): () => number;
  augment: boolean;
}

export interface Schedule {
  epochs: number;
  batch: number;
  lr: number;
  minLr: number;
  weightDecay: number;
  warmupEpochs: number;
  seed: number;
}

export type TrainEvent =
  | {
      type: 'start';
      epochs: number;
      stepsPerEpoch: number;
      totalSteps: number;
      startStep: number;
      train: number;
      val: number;
      exits: number[];
      trainable: number;
      /** What one full-batch step moves between host and device: the batch up and the loss,
       *  metrics and logits down, plus (not resident) the trainables up and their gradients down. */
      transfer?: { resident: boolean; upBytes: number; downBytes: number };
    }
  | {
      type: 'step';
      epoch: number;
      step: number;
      totalSteps: number;
      loss: number;
      lossPerExit: number[];
      gr: number[];
      accPerExit: number[];
      lr: number;
      imgPerSec: number;
      etaSec: number;
      /** Copycat distillation loss KD_j per early exit (unweighted; only when `distill` > 0). */
      distill?: number[];
      /** Regression runs: the batch's MAE per exit in target units (accPerExit is empty). */
      maePerExit?: number[];
      /** Milliseconds of this step spent on the host, outside the session's run (the batch, AdamW when not resident, metrics). */
      hostMs?: number;
    }
  | {
      type: 'epoch';
      epoch: number;
      step: number;
      valAccPerExit: number[];
      trainLoss: number;
      seconds: number;
      /** Regression runs: validation MAE and RMSE per exit, in target units (valAccPerExit is empty). */
      valMaePerExit?: number[];
      valRmsePerExit?: number[];
    }
  | { type: 'checkpoint'; step: number; file: string }
  | { type: 'stopped'; step: number; reason: string }
  | { type: 'done'; step: number; seconds: number };

export interface TrainerOptions {
  runDir: string;
  /** Names of the files it writes in runDir (the run folder's schema, run/runFolder.ts, owns them):
   *  the checkpoint (parameters, AdamW moments, loop position), MET's trained tensors, and
   *  metrics.jsonl (one step or epoch event per line). */
  files: { checkpoint: string; trainable: string; metrics: string };
  cfg: VitConfig;
  backbone: Map<string, HostTensor>;
  met: MetConfig;
  init: Map<string, HostTensor>;
  schedule: Schedule;
  data: TrainData;
  session?: SessionOptions;
  /** Per-epoch validation accuracy per exit (the caller owns the eval sessions). */
  validate?: (params: Map<string, HostTensor>) => Promise<number[] | { mae: number[]; rmse: number[] }>;
  onEvent?: (e: TrainEvent) => void;
  /** Polled between steps: true stops after a checkpoint (SIGINT/SIGTERM, cancel). */
  shouldStop?: () => string | null;
  resume?: boolean;
  /** Checkpoint at least this often (ms) besides every epoch end. */
  checkpointEveryMs?: number;
  /** Images per backbone chunk of the CPU train step (default trainChunkRows). */
  chunkRows?: number;
  /** false: on a GPU provider too, gradients come back and AdamW runs on the host (for comparison). */
  residentStep?: boolean;
}

interface LoopState {
  epoch: number;
  stepInEpoch: number;
  globalStep: number;
  adamStep: number;
}

export interface TrainStepOptions {
  /** The session runs on onnxruntime's CPU provider alone (CompileOptions.cpuContribOps). */
  cpuOnly?: boolean;
  /**
   * Compile for exactly this many images, with the backbone split into chunks of about
   * `chunkRows` images (default trainChunkRows) when that gives more than one chunk; otherwise
   * the batch stays symbolic.
   */
  batch?: number;
  chunkRows?: number;
  /**
   * AdamW inside the graph (a GPU-resident step): the step takes the AdamW moments and the step
   * size as inputs and returns the updated parameters and moments (`new.<name>`, `new.m.<name>`,
   * `new.v.<name>`) instead of the gradients, all or nothing: `ok` is 0 and the old values come
   * back when any updated value is not finite. Float32 throughout (AdamW.apply computes in
   * float64 and stores float32: the two agree to float32 rounding).
   */
  adamW?: { beta1: number; beta2: number; eps: number; weightDecay: number; decay: (name: string) => boolean };
}

/**
 * Images per backbone chunk of a CPU train step: about 5M floats in the largest activation,
 * [rows, tokens, mlpDim] (8 images for ViT-B/16 with 7 exits). onnxruntime's CPU kernels lose
 * throughput as those tensors grow: in one warm session, 32 images as four steps of 8 ran 7%
 * faster than one step of 32 (MET step, ViT-B/16), and four chunks of 8 inside one step of 32
 * 3.9% faster (measured A/B in one process). Tiny models stay in one chunk.
 */
export function trainChunkRows(
  cfg: Pick<VitConfig, 'imageSize' | 'patchSize' | 'mlpDim'>,
  met: Pick<MetConfig, 'exits'>,
): number {
  const tokens = gridSize(cfg) ** 2 + Math.max(1, met.exits.length);
  return Math.max(1, Math.round(5e6 / (tokens * cfg.mlpDim)));
}

/** Near-equal chunk sizes that sum to `batch`, none above `rows`. */
export function chunkSizes(batch: number, rows: number): number[] {
  const n = Math.ceil(batch / Math.max(1, rows));
  return Array.from({ length: n }, (_, i) => Math.floor(batch / n) + (i < batch % n ? 1 : 0));
}

/**
 * The train-step model: loss, per-exit losses and logits, and the gradients of the trainables.
 * With a static batch split into chunks, each chunk runs the backbone and the exits on its own
 * images; their logits and head inputs are concatenated, so the losses (graph regularization
 * pairs every sample of the batch with every other) are those of the whole batch, and the
 * gradients of the shared trainables are summed over the chunks by autodiff.
 */
export function buildTrainStep(
  cfg: VitConfig,
  backbone: Map<string, HostTensor>,
  met: MetConfig,
  init: Map<string, HostTensor>,
  o: TrainStepOptions = {},
) {
  const g = new Graph();
  const P = new VitParams(g, backbone);
  const T = new MetTensors(g, init, true);
  const chunks = o.batch ? chunkSizes(o.batch, o.chunkRows ?? trainChunkRows(cfg, met)) : [];
  const bdim = chunks.length > 1 ? o.batch! : 'B';
  const images = g.input('images', [bdim, cfg.channels, cfg.imageSize, cfg.imageSize]);
  let f: MetForward;
  if (chunks.length > 1) {
    let start = 0;
    const parts = chunks.map((n) => metForward(g, P, T, cfg, met, g.slice(images, 0, start, (start += n))));
    const cat = (k: 'logits' | 'features' | 'exitTokens') =>
      parts[0][k].map((_, j) =>
        g.concat(
          parts.map((x) => x[k][j]),
          0,
        ),
      );
    f = { logits: cat('logits'), features: cat('features'), exitTokens: cat('exitTokens') };
  } else f = metForward(g, P, T, cfg, met, images);
  // Regression runs (model/regression.ts) feed float targets [B, 1] instead of class labels.
  const L = isRegression(met)
    ? regressionLoss(g, met, f, g.input('targets', [bdim, 1]))
    : metLoss(g, met, f, g.input('labels', [bdim], 'int64'));
  const names = [...init.keys()];
  const params = names.map((n) => T.get(n));
  const grads = grad(L.loss, params);
  const outs: Record<string, Tensor> = { loss: L.loss };
  L.ce.forEach((t, j) => (outs[`ce.${j}`] = t));
  L.gr.forEach((t, j) => (outs[`gr.${j}`] = t));
  L.kd.forEach((t, j) => (outs[`kd.${j}`] = t));
  f.logits.forEach((t, j) => (outs[`logits.${j}`] = t));
  if (o.adamW) Object.assign(outs, fusedAdamW(g, names, params, grads, L.loss, o.adamW));
  else names.forEach((n, i) => (outs[`grad.${n}`] = grads[i]));
  return {
    model: compile(g, outs, { name: 'met_train_step', cpuContribOps: o.cpuOnly === true }),
    names,
    K: f.logits.length,
    G: L.gr.length,
    D: L.kd.length,
    chunks: Math.max(1, chunks.length),
  };
}

/**
 * AdamW as graph ops after the gradients (TrainStepOptions.adamW): inputs `m.<name>`,
 * `v.<name>` (the moments), `lr`, `step_size` (lr / (1 - beta1^t)) and `sqrt_bc2`
 * (sqrt(1 - beta2^t)), each scalar as [1]; outputs the new parameters and moments and `ok`.
 */
function fusedAdamW(
  g: Graph,
  names: string[],
  params: Tensor[],
  grads: Tensor[],
  loss: Tensor,
  a: NonNullable<TrainStepOptions['adamW']>,
): Record<string, Tensor> {
  const lr = g.input('lr', [1]);
  const stepSize = g.input('step_size', [1]);
  const sqrtBc2 = g.input('sqrt_bc2', [1]);
  const decayed = g.addScalar(g.mulScalar(lr, -a.weightDecay), 1); // 1 - lr * wd
  const outs: Record<string, Tensor> = {};
  const news: [string, Tensor, Tensor][] = []; // [output name, new value, old value]
  // x * 0 is 0 for every finite x and NaN otherwise: one sum says whether all are finite.
  let notFinite = g.mulScalar(loss, 0);
  names.forEach((n, i) => {
    const p = params[i];
    const gr = grads[i];
    const mIn = g.input(`m.${n}`, p.shape);
    const vIn = g.input(`v.${n}`, p.shape);
    const m = g.add(g.mulScalar(mIn, a.beta1), g.mulScalar(gr, 1 - a.beta1));
    const v = g.add(g.mulScalar(vIn, a.beta2), g.mulScalar(g.mul(gr, gr), 1 - a.beta2));
    const denom = g.addScalar(g.div(g.sqrt(v), sqrtBc2), a.eps);
    const kept = a.decay(n) ? g.mul(p, decayed) : p;
    const np = g.sub(kept, g.div(g.mul(stepSize, m), denom));
    for (const x of [np, m, v]) notFinite = g.add(notFinite, g.sumAll(g.mulScalar(x, 0)));
    news.push([n, np, p], [`m.${n}`, m, mIn], [`v.${n}`, v, vIn]);
  });
  const ok = g.equal(notFinite, g.scalar(0));
  for (const [n, x, old] of news) outs[`new.${n}`] = g.where(ok, x, old);
  outs.ok = g.cast(ok, 'float32');
  return outs;
}

/** What a resident step takes and returns for each trainable: itself and its two moments. */
export function residentStateKeys(names: string[]): string[] {
  return names.flatMap((n) => [n, `m.${n}`, `v.${n}`]);
}

/** The resident state on the host: the trainables and their moments (zeros where none yet). */
export function residentHostState(
  init: Map<string, HostTensor>,
  params: Map<string, Float32Array>,
  m: Map<string, Float32Array> = new Map(),
  v: Map<string, Float32Array> = new Map(),
): Record<string, HostTensor> {
  const st: Record<string, HostTensor> = {};
  for (const [n, t] of init) {
    const f32 = (data: Float32Array): HostTensor => ({ dtype: 'float32', shape: t.shape, data });
    st[n] = f32(params.get(n)!);
    st[`m.${n}`] = f32(m.get(n) ?? new Float32Array(t.data.length));
    st[`v.${n}`] = f32(v.get(n) ?? new Float32Array(t.data.length));
  }
  return st;
}

/** The scalar inputs of fusedAdamW for step t (1-based) at learning rate lr, as AdamW.apply computes them. */
export function fusedAdamWScalars(
  lr: number,
  t: number,
  a: { beta1: number; beta2: number },
): Record<string, HostTensor> {
  const one = (x: number): HostTensor => ({ dtype: 'float32', shape: [1], data: Float32Array.of(x) });
  return { lr: one(lr), step_size: one(lr / (1 - a.beta1 ** t)), sqrt_bc2: one(Math.sqrt(1 - a.beta2 ** t)) };
}

/** A regression step's MAE per exit, in target units, from the step's raw outputs. */
function trainMae(
  met: MetConfig,
  r: Record<string, HostTensor>,
  K: number,
  samples: readonly { file: string; value?: number }[],
): number[] {
  const { mean, std } = targetScale(met);
  const t = samples.map((s) => s.value as number);
  return Array.from(
    { length: K },
    (_, j) =>
      regressionMetrics(
        Array.from(r[`logits.${j}`].data as Float32Array, (y) => y * std + mean),
        t,
      ).mae,
  );
}

function writeCheckpoint(
  runDir: string,
  name: string,
  params: Map<string, Float32Array>,
  shapes: Map<string, number[]>,
  opt: AdamW,
  st: LoopState,
): string {
  const t: Record<string, HostTensor> = {};
  for (const [n, p] of params) {
    const shape = shapes.get(n)!;
    t[`p.${n}`] = { dtype: 'float32', shape, data: p };
    const m = opt.state.m.get(n);
    const v = opt.state.v.get(n);
    if (m && v) {
      t[`m.${n}`] = { dtype: 'float32', shape, data: m };
      t[`v.${n}`] = { dtype: 'float32', shape, data: v };
    }
  }
  const file = path.join(runDir, name);
  // One file, renamed into place: parameters, moments and loop position always agree.
  writeSafetensors(file, t, { state: JSON.stringify(st) });
  return file;
}

function readCheckpoint(
  runDir: string,
  name: string,
  shapes: Map<string, number[]>,
): { params: Map<string, Float32Array>; m: Map<string, Float32Array>; v: Map<string, Float32Array>; st: LoopState } {
  const file = path.join(runDir, name);
  if (!fs.existsSync(file)) throw new UserError(`${runDir}: no ${name} to resume from`);
  const ck = readSafetensorsFile(file);
  const st = JSON.parse(ck.metadata?.state ?? 'null') as LoopState | null;
  if (!st) throw new UserError(`${file}: missing loop state`);
  const params = new Map<string, Float32Array>();
  const m = new Map<string, Float32Array>();
  const v = new Map<string, Float32Array>();
  for (const [n, shape] of shapes) {
    const p = ck.tensors.get(`p.${n}`);
    if (!p) throw new UserError(`${file}: tensor 'p.${n}' is missing`);
    if (p.shape.join() !== shape.join())
      throw new UserError(`${file}: tensor '${n}' expected [${shape}], found [${p.shape}]`);
    params.set(n, p.data as Float32Array);
    const mm = ck.tensors.get(`m.${n}`);
    const vv = ck.tensors.get(`v.${n}`);
    // Checkpoints from before non-finite steps were refused may hold Inf moments: every resume
    // would diverge at the same step again.
    for (const [k, t] of [
      ['p', p],
      ['m', mm],
      ['v', vv],
    ] as const)
      if (t && !(t.data as Float32Array).every(Number.isFinite))
        throw new UserError(
          `${file}: tensor '${k}.${n}' holds values that are not finite (saved by a diverged run); it cannot be resumed: start the run again with a lower --lr`,
        );
    if (mm && vv) {
      m.set(n, mm.data as Float32Array);
      v.set(n, vv.data as Float32Array);
    }
  }
  return { params, m, v, st };
}

/** Drops metrics lines written after the checkpoint, so a resumed log has no duplicates. */
function trimMetrics(f: string, step: number): void {
  if (!fs.existsSync(f)) return;
  const keep = fs
    .readFileSync(f, 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .filter((l) => {
      try {
        const e = JSON.parse(l) as { step?: number };
        return e.step === undefined || e.step <= step;
      } catch {
        return false;
      }
    });
  fs.writeFileSync(f, keep.map((l) => l + '\n').join(''));
}

export async function train(o: TrainerOptions): Promise<{ params: Map<string, HostTensor>; stopped: string | null }> {
  const { cfg, met, schedule: S, data } = o;
  const shapes = new Map([...o.init].map(([n, t]) => [n, t.shape]));
  // The full batch gets a static, chunked step on the CPU; a last, smaller batch of an epoch a
  // symbolic one, made when first needed (both are kept: one compile each per run).
  const cpu = cpuOnly(o.session);
  const opt = new AdamW({ lr: S.lr, weightDecay: S.weightDecay }, decays);
  // On a GPU provider the step is resident: AdamW runs inside the step's graph, and the
  // parameters and moments stay in the provider's memory between steps (deviceOutputs). Per
  // step only the batch goes up and the loss and metrics come back; the host copy is refreshed
  // (syncHost) only for checkpoints, validation and the trained tensors.
  // MET_RESIDENT_STEP=0 turns it off (for measuring the difference).
  const resident = !cpu && (o.residentStep ?? process.env.MET_RESIDENT_STEP !== '0');
  const adamW = resident
    ? { beta1: opt.beta1, beta2: opt.beta2, eps: opt.eps, weightDecay: opt.weightDecay, decay: decays }
    : undefined;
  const { model, names, K, G, D, chunks } = buildTrainStep(cfg, o.backbone, met, o.init, {
    cpuOnly: cpu,
    batch: cpu ? S.batch : undefined,
    chunkRows: o.chunkRows,
    adamW,
  });
  const stateKeys = resident ? residentStateKeys(names) : [];
  const so = resident ? { ...o.session, deviceOutputs: stateKeys.map((k) => `new.${k}`) } : o.session;
  const session = await Session.create(model, so);
  let anyBatch: Session | null = chunks > 1 ? null : session;
  const sessionFor = async (B: number): Promise<Session> => {
    if (B === S.batch) return session;
    anyBatch ??= await Session.create(buildTrainStep(cfg, o.backbone, met, o.init, { cpuOnly: cpu, adamW }).model, so);
    return anyBatch;
  };
  let params: Map<string, Float32Array> = new Map(
    [...o.init].map(([n, t]) => [n, Float32Array.from(t.data as Float32Array)]),
  );
  let st: LoopState = { epoch: 0, stepInEpoch: 0, globalStep: 0, adamStep: 0 };
  if (o.resume) {
    const ck = readCheckpoint(o.runDir, o.files.checkpoint, shapes);
    params = ck.params;
    opt.state = { step: ck.st.adamStep, m: ck.m, v: ck.v };
    st = ck.st;
    trimMetrics(path.join(o.runDir, o.files.metrics), st.globalStep);
  }
  // The step of the checkpoint on disk that this run can resume from (null: none written yet),
  // so that a divergence says truthfully what is left.
  let checkpointStep: number | null = o.resume ? st.globalStep : null;
  // Resident step: the parameters and moments as the next step takes them (host tensors until
  // the first step, then the provider's), and a session that copies them to the host.
  let dev: Record<string, HostTensor | DeviceTensor> | null = null;
  let hostStale = false;
  let download: Session | null = null;
  const deviceState = (): Record<string, HostTensor | DeviceTensor> =>
    (dev ??= residentHostState(o.init, params, opt.state.m, opt.state.v));
  const syncHost = async (): Promise<void> => {
    if (!hostStale || !dev) return;
    if (!download) {
      const g = new Graph();
      const outs: Record<string, Tensor> = {};
      for (const k of stateKeys) outs[`host.${k}`] = g.mulScalar(g.input(k, shapes.get(k.replace(/^[mv]\./, ''))!), 1);
      download = await Session.create(compile(g, outs, { name: 'met_download_state' }), o.session);
    }
    const { host } = await download.runMixed(dev);
    params = new Map(names.map((n) => [n, host[`host.${n}`].data as Float32Array]));
    opt.state.m = new Map(names.map((n) => [n, host[`host.m.${n}`].data as Float32Array]));
    opt.state.v = new Map(names.map((n) => [n, host[`host.v.${n}`].data as Float32Array]));
    hostStale = false;
  };
  const checkpoint = (): string => {
    const file = writeCheckpoint(o.runDir, o.files.checkpoint, params, shapes, opt, st);
    checkpointStep = st.globalStep;
    return file;
  };
  const diverged = (at: number, epoch: number, what: string, where: string, advice: string): UserError =>
    new UserError(
      `training stopped: ${what} at step ${at} (epoch ${epoch}): ${where}. The step was not applied. ${advice}; ` +
        (checkpointStep === null
          ? `no checkpoint was written before it (one is written at each epoch end and every minute), so start again with lower values`
          : `the checkpoint of step ${checkpointStep} (written before the failure) is in ${path.join(o.runDir, o.files.checkpoint)}: continue with met train --resume ${o.runDir} --lr <lower>`),
    );
  const stepsPerEpoch = Math.ceil(data.train.length / S.batch);
  const totalSteps = stepsPerEpoch * S.epochs;
  const warmup = Math.round(S.warmupEpochs * stepsPerEpoch);
  const metrics = fs.openSync(path.join(o.runDir, o.files.metrics), 'a');
  const emit = (e: TrainEvent) => {
    if (e.type === 'step' || e.type === 'epoch') fs.writeSync(metrics, JSON.stringify(e) + '\n');
    o.onEvent?.(e);
  };
  const hostParams = () =>
    new Map(
      [...params].map(([n, p]) => [n, { dtype: 'float32' as const, shape: shapes.get(n)!, data: p } as HostTensor]),
    );
  const trainable = [...params.values()].reduce((a, p) => a + p.length, 0);
  const Bf = S.batch;
  const outsDown = 4 * (1 + K + G + D) + 4 * K * Bf * (isRegression(met) ? 1 : met.numClasses);
  const transfer = {
    resident,
    upBytes:
      4 * Bf * cfg.channels * cfg.imageSize ** 2 + Bf * (isRegression(met) ? 4 : 8) + (resident ? 12 : 4 * trainable),
    downBytes: outsDown + (resident ? 4 : 4 * trainable),
  };
  emit({
    type: 'start',
    // Only a GPU provider moves anything: on the CPU the feeds are the host's own memory.
    ...(cpu ? {} : { transfer }),
    epochs: S.epochs,
    stepsPerEpoch,
    totalSteps,
    startStep: st.globalStep,
    train: data.train.length,
    val: data.val.length,
    exits: met.exits,
    trainable,
  });

  const t0 = Date.now();
  let lastCk = Date.now();
  let stepsDone = 0;
  let stopped: string | null = null;
  try {
    outer: for (let epoch = st.epoch; epoch < S.epochs; epoch++) {
      const order = data.epochOrder(data.train, S.seed, epoch);
      const epochStart = Date.now();
      let lossSum = 0;
      let lossN = 0;
      for (let s = epoch === st.epoch ? st.stepInEpoch : 0; s < stepsPerEpoch; s++) {
        const reason = o.shouldStop?.() ?? null;
        if (reason) {
          stopped = reason;
          break outer;
        }
        const stepT0 = Date.now();
        const samples = order.slice(s * S.batch, (s + 1) * S.batch);
        const B = samples.length;
        const b = data.batch(samples, data.augment ? data.stepRng(S.seed, epoch, s) : undefined);
        const feeds: Record<string, HostTensor> = {
          images: { dtype: 'float32', shape: [B, cfg.channels, cfg.imageSize, cfg.imageSize], data: b.images },
        };
        if (isRegression(met)) feeds.targets = { dtype: 'float32', shape: [B, 1], data: targetBatch(met, samples) };
        else feeds.labels = { dtype: 'int64', shape: [B], data: b.labels };
        for (const n of names) feeds[n] = { dtype: 'float32', shape: shapes.get(n)!, data: params.get(n)! };
        // Made before the clock starts: a first smaller batch compiles its step here.
        const step = await sessionFor(B);
        const lr = warmupCosine(st.globalStep, totalSteps, warmup, S.lr, S.minLr);
        const ts = Date.now();
        let runMs = 0;
        let r: Record<string, HostTensor>;
        let newState: Record<string, DeviceTensor> = {};
        if (resident) {
          for (const n of names) delete feeds[n];
          const out = await step.runMixed({
            ...feeds,
            ...deviceState(),
            ...fusedAdamWScalars(lr, opt.state.step + 1, opt),
          });
          r = out.host;
          newState = out.device;
        } else r = await step.run(feeds);
        runMs = Date.now() - ts;
        const loss = Number(r.loss.data[0]);
        const ce = Array.from({ length: K }, (_, j) => Number(r[`ce.${j}`].data[0]));
        const gr = Array.from({ length: G }, (_, j) => Number(r[`gr.${j}`].data[0]));
        const kd = Array.from({ length: D }, (_, j) => Number(r[`kd.${j}`].data[0]));
        if (!Number.isFinite(loss)) {
          const bad = ce.findIndex((x) => !Number.isFinite(x));
          const badGr = gr.findIndex((x) => !Number.isFinite(x));
          const badKd = kd.findIndex((x) => !Number.isFinite(x));
          const where =
            bad >= 0
              ? `exit ${bad + 1} (after layer ${met.exits[bad]}) cross-entropy = ${ce[bad]}`
              : badGr >= 0
                ? `exit ${badGr + 1} graph regularization = ${gr[badGr]}`
                : badKd >= 0
                  ? `exit ${badKd + 1} copycat distillation = ${kd[badKd]}`
                  : `total = ${loss}`;
          throw diverged(
            st.globalStep + 1,
            epoch + 1,
            'the loss is not finite',
            where,
            'Lower --lr, --lambda or --distill',
          );
        }
        if (resident) {
          // The graph kept the old values when anything was not finite (fusedAdamW's ok).
          if (Number(r.ok.data[0]) !== 1) {
            for (const t of Object.values(newState)) t.device.dispose();
            throw diverged(
              st.globalStep + 1,
              epoch + 1,
              'the update is not finite',
              'a gradient, an AdamW moment or an updated parameter (computed on the GPU)',
              'Lower --lr',
            );
          }
          const cur = deviceState();
          for (const k of stateKeys) {
            const old = cur[k];
            cur[k] = newState[`new.${k}`];
            if ('device' in old) old.device.dispose();
          }
          opt.state.step++;
          hostStale = true;
        } else {
          const grads = new Map(names.map((n) => [n, r[`grad.${n}`].data as Float32Array]));
          // Nothing of a non-finite step reaches the parameters or the moments (AdamW.step is all
          // or nothing), so every checkpoint written stays resumable.
          const bad = opt.step(params, grads, lr);
          if (bad) throw diverged(st.globalStep + 1, epoch + 1, `the update is not finite`, bad, 'Lower --lr');
        }
        st = { epoch, stepInEpoch: s + 1, globalStep: st.globalStep + 1, adamStep: opt.state.step };
        stepsDone++;
        lossSum += loss;
        lossN++;
        const labels = b.labels;
        const acc = isRegression(met)
          ? []
          : Array.from({ length: K }, (_, j) => {
              const lg = r[`logits.${j}`].data as Float32Array;
              const C = met.numClasses;
              let right = 0;
              for (let i = 0; i < B; i++) {
                let best = 0;
                for (let c = 1; c < C; c++) if (lg[i * C + c] > lg[i * C + best]) best = c;
                if (BigInt(best) === labels[i]) right++;
              }
              return right / B;
            });
        const elapsed = (Date.now() - t0) / 1000;
        const perStep = elapsed / stepsDone;
        emit({
          type: 'step',
          epoch: epoch + 1,
          step: st.globalStep,
          totalSteps,
          loss,
          lossPerExit: ce,
          gr,
          accPerExit: acc,
          lr,
          imgPerSec: B / ((Date.now() - ts) / 1000),
          hostMs: Date.now() - stepT0 - runMs,
          etaSec: perStep * (totalSteps - st.globalStep),
          ...(D ? { distill: kd } : {}),
          ...(isRegression(met) ? { maePerExit: trainMae(met, r, K, samples) } : {}),
        });
        if (Date.now() - lastCk > (o.checkpointEveryMs ?? 60_000)) {
          await syncHost();
          emit({ type: 'checkpoint', step: st.globalStep, file: checkpoint() });
          lastCk = Date.now();
        }
      }
      // Epoch end: the position is the start of the next epoch.
      st = { ...st, epoch: epoch + 1, stepInEpoch: 0 };
      await syncHost();
      checkpoint();
      writeSafetensors(path.join(o.runDir, o.files.trainable), hostParams());
      lastCk = Date.now();
      const v = o.validate ? await o.validate(hostParams()) : [];
      // Regression validation reports MAE / RMSE per exit instead of accuracies.
      const valAcc = Array.isArray(v) ? v : [];
      const valReg = Array.isArray(v) ? {} : { valMaePerExit: v.mae, valRmsePerExit: v.rmse };
      emit({
        type: 'epoch',
        epoch: epoch + 1,
        step: st.globalStep,
        valAccPerExit: valAcc,
        ...valReg,
        trainLoss: lossN ? lossSum / lossN : NaN,
        seconds: (Date.now() - epochStart) / 1000,
      });
    }
    if (stopped) {
      await syncHost();
      emit({ type: 'checkpoint', step: st.globalStep, file: checkpoint() });
      writeSafetensors(path.join(o.runDir, o.files.trainable), hostParams());
      emit({ type: 'stopped', step: st.globalStep, reason: stopped });
    } else emit({ type: 'done', step: st.globalStep, seconds: (Date.now() - t0) / 1000 });
    await syncHost();
  } finally {
    fs.closeSync(metrics);
    await session.release();
    if (anyBatch && anyBatch !== session) await anyBatch.release();
    await (download as Session | null)?.release();
    const left: (HostTensor | DeviceTensor)[] = Object.values(
      (dev as Record<string, HostTensor | DeviceTensor> | null) ?? {},
    );
    for (const t of left) if ('device' in t) t.device.dispose();
  }
  return { params: hostParams(), stopped };
}
