// `met predict --weights FILE ... IMAGES`: runs a backbone with its own head on images.
// `met predict --run RUN IMAGES`: runs a trained MET run: every exit's answer, and the exit
// budgeted inference takes under the run's chosen thresholds.

import * as path from 'node:path';
import { Graph } from '../engine/graph/ir';
import { compile } from '../engine/graph/onnx';
import type { Activation, VitConfig } from '../engine/model/config';
import { prepareWeights, VitParams, vitForward } from '../engine/model/vit';
import { resolveDevice } from '../engine/runtime/device';
import { Session } from '../engine/runtime/session';
import { listImageFiles } from '../engine/data/files';
import { loadBatch, type Preprocess } from '../engine/data/image';
import { UserError } from '../engine/tensor';
import { loadBackbone } from '../engine/weights';
import { fmtGflops } from '../engine/export/export';
import { DEFAULT_PREDICT_BATCH, RunPredictor } from '../engine/run/runPredictor';
import { agreementConfidence } from '../engine/infer/exitScores';
import { isRegression } from '../engine/model/regression';
import { type FlagSpec, parseArgs, type Parsed, usage } from './args';
import { SETTING_FLAGS } from './train';
import { headsBesideWeights } from '../app/settings';

const pick = (flags: Record<string, FlagSpec>, keys: string[]) => Object.fromEntries(keys.map((k) => [k, flags[k]]));

export const PREDICT_FLAGS: Record<string, FlagSpec> = {
  run: {
    kind: 'string',
    help: "a MET run folder: every exit's answer and the exit taken under the run's chosen thresholds (instead of --weights)",
  },
  weights: { kind: 'string', help: 'backbone checkpoint (.safetensors, .pth/.pt/.bin, .npz)' },
  // The backbone's settings as `met train` takes them (choices and help from the settings table).
  ...pick(SETTING_FLAGS, ['layout', 'image-size', 'channels', 'mean', 'std', 'heads', 'backbone-act', 'act', 'resize']),
  top: { kind: 'int', help: 'classes to print per image (default 5)' },
  batch: { kind: 'int', help: 'images per forward pass (default 32)' },
  ...pick(SETTING_FLAGS, ['device', 'threads']),
  json: {
    kind: 'bool',
    help: 'print [{"file", "topk": [{"class", "prob"}]}] (with --run: [{"file", "exits": [{"exit", "layer", "confidence", "class", "label"}], "exit", "class", "label", "confidence"}])',
  },
  eval: {
    kind: 'bool',
    help: "score images against class folder names (.../<class>/<image>: integer indices, or with --run the run's class names) and print accuracy",
  },
  help: { kind: 'bool', help: 'show this help' },
};

export interface PredictResult {
  file: string;
  topk: { class: number; prob: number }[];
}

export async function predictCommand(argv: string[]): Promise<number> {
  const a = parseArgs(argv, PREDICT_FLAGS, 'predict');
  if (a.help) {
    console.log(usage('predict', '(--weights FILE | --run RUN) [options] IMAGE_OR_FOLDER...', PREDICT_FLAGS));
    return 0;
  }
  if (a.run) return predictRun(a);
  if (!a.weights) throw new UserError('met predict: --weights FILE or --run RUN is required');
  if (!a._.length) throw new UserError('met predict: give at least one image or folder');
  const overrides: Partial<VitConfig> = {};
  if (a['image-size'] !== undefined) overrides.imageSize = a['image-size'] as number;
  // The head count beside the weights when not given, as `met train` and the engine take it.
  const heads = (a.heads as number | undefined) ?? headsBesideWeights(a.weights as string)?.heads;
  if (heads !== undefined) overrides.heads = heads;
  if (a['backbone-act'] !== undefined) overrides.act = a['backbone-act'] as Activation;
  if (a.mean) overrides.mean = a.mean as number[];
  if (a.std) overrides.std = a.std as number[];
  const { tensors, config, report } = await loadBackbone(a.weights as string, {
    layout: (a.layout as never) ?? 'auto',
    overrides,
  });
  if (report.unexpected.length)
    console.error(
      `warning: ignoring ${report.unexpected.length} unexpected tensors: ${report.unexpected.slice(0, 5).join(', ')}`,
    );
  const channels = (a.channels as number | undefined) ?? config.channels;
  if (channels !== config.channels)
    throw new UserError(
      `met predict: --channels ${channels} but ${path.basename(a.weights as string)} expects ${config.channels}-channel images`,
    );
  if (!config.numClasses)
    throw new UserError(`met predict: ${path.basename(a.weights as string)} has no classification head`);
  for (const [k, v] of [
    ['mean', config.mean],
    ['std', config.std],
  ] as const)
    if (v.length !== 1 && v.length !== channels)
      throw new UserError(`met predict: --${k} needs 1 or ${channels} values, got ${v.length}`);

  const choice = await resolveDevice(((a.device as string) ?? 'cpu') as never, { purpose: 'infer' });
  for (const n of choice.notes) if (a.device === 'auto') console.error(n);

  const g = new Graph();
  const P = new VitParams(g, prepareWeights(config, tensors));
  const images = g.input('images', ['B', channels, config.imageSize, config.imageSize]);
  const { logits } = vitForward(P, config, images);
  const probs = g.softmax(logits!, -1);
  const session = await Session.create(compile(g, { probs }), {
    providers: choice.providers,
    threads: a.threads as number | undefined,
  });

  const { files, skipped } = await listImageFiles(a._);
  const pre: Preprocess = {
    imageSize: config.imageSize,
    channels: channels as 1 | 3,
    mean: config.mean,
    std: config.std,
    resize: ((a.resize as string) ?? 'direct') as Preprocess['resize'],
  };
  const top = Math.min((a.top as number) ?? 5, config.numClasses);
  const B = (a.batch as number) ?? 32;
  const results: PredictResult[] = [];
  const failed: { file: string; reason: string }[] = [...skipped];
  const per = channels * config.imageSize * config.imageSize;
  for (let s = 0; s < files.length; s += B) {
    const batch = await loadBatch(files.slice(s, s + B), pre);
    failed.push(...batch.failed);
    if (!batch.ok.length) continue;
    const out = await session.run({
      images: {
        dtype: 'float32',
        shape: [batch.ok.length, channels, config.imageSize, config.imageSize],
        data: batch.data.subarray(0, batch.ok.length * per),
      },
    });
    const p = out.probs.data as Float32Array;
    const C = config.numClasses;
    batch.ok.forEach((file, i) => {
      const row = Array.from(p.subarray(i * C, (i + 1) * C), (prob, c) => ({ class: c, prob }));
      row.sort((x, y) => y.prob - x.prob);
      const r = { file, topk: row.slice(0, top) };
      results.push(r);
      if (!a.json && !a.eval)
        console.log(`${file}: ${r.topk.map((t) => `${t.class} (${t.prob.toFixed(4)})`).join(', ')}`);
    });
  }
  await session.release();
  if (a.json) console.log(JSON.stringify(results));
  if (a.eval) {
    let right = 0;
    let scored = 0;
    for (const r of results) {
      const label = Number(path.basename(path.dirname(r.file)));
      if (!Number.isInteger(label)) continue;
      scored++;
      if (r.topk[0].class === label) right++;
    }
    if (!scored) throw new UserError('met predict --eval: no image sits in a folder named by an integer class index');
    console.log(`accuracy ${(right / scored).toFixed(4)} (${right}/${scored} images)`);
  }
  for (const f of failed) console.error(`skipped ${f.file}: ${f.reason}`);
  return failed.length ? 1 : 0;
}

// ---------------------------------------------------------------- --run

/** Flags that describe a backbone or its preprocessing: a run fixes all of them. */
const RUN_FIXED = [
  'weights',
  'layout',
  'image-size',
  'channels',
  'mean',
  'std',
  'heads',
  'backbone-act',
  'resize',
  'top',
];

export interface ExitAnswer {
  /** 1-based exit number and the layer it follows. */
  exit: number;
  layer: number;
  /** Max softmax probability, the argmax class index and its name. */
  confidence: number;
  class: number;
  label: string;
}

export interface RunPrediction {
  file: string;
  /** Every exit's answer (static mode: all exits run). */
  exits: ExitAnswer[];
  /** The exit budgeted inference takes (1-based) and its answer. */
  exit: number;
  class: number;
  label: string;
  confidence: number;
}

async function predictRun(a: Parsed): Promise<number> {
  for (const f of RUN_FIXED)
    if (a[f] !== undefined)
      throw new UserError(
        `met predict: --${f} does not apply with --run (the run fixes the backbone and its preprocessing)`,
      );
  if (!a._.length) throw new UserError('met predict: give at least one image or folder');
  const choice = await resolveDevice(((a.device as string) ?? 'cpu') as never, { purpose: 'infer' });
  for (const n of choice.notes) if (a.device === 'auto') console.error(n);
  // Shared with the extension's Inspect exits panel (src/engine/explore/score.ts): the same
  // segments, preprocessing, thresholds and batching, so the panel shows these numbers.
  const rp = await RunPredictor.open(a.run as string, {
    providers: choice.providers,
    threads: a.threads as number | undefined,
  });
  const { cf, gflops, op } = rp;
  if (op.p === null && !a.json) console.error(`note: ${op.source}`);

  const { files, skipped } = await listImageFiles(a._);
  const B = (a.batch as number) ?? DEFAULT_PREDICT_BATCH;
  const results: RunPrediction[] = [];
  const regression = isRegression(cf.met);
  if (regression && a.eval)
    throw new UserError(
      'met predict --eval scores class folders; for a regression run use met eval --run RUN [--data FOLDER]',
    );
  const regResults: {
    file: string;
    exits: { exit: number; layer: number; value: number; confidence: number | null }[];
    exit: number;
    value: number;
  }[] = [];
  const failed: { file: string; reason: string }[] = [...skipped];
  try {
    for (let s = 0; s < files.length; s += B) {
      // Budgeted inference for real (rows leave the batch at their exit), besides every exit.
      const b = await rp.scoreBatch(files.slice(s, s + B), { dynamic: true });
      failed.push(...b.failed);
      const dyn = b.dynamic;
      if (!dyn) continue;
      if (regression) {
        // Regression runs (model/regression.ts): C = 1, so the runner's "probabilities" are the
        // values (target units); the confidence is the agreement with the previous exit.
        const agree = agreementConfidence(b.probs);
        b.ok.forEach((file, i) => {
          const r = {
            file,
            exits: b.probs.map((v, j) => ({
              exit: j + 1,
              layer: cf.met.exits[j],
              value: v[i],
              confidence: Number.isNaN(agree[j][i]) ? null : agree[j][i],
            })),
            exit: dyn.exitOf[i] + 1,
            value: dyn.conf[i],
          };
          regResults.push(r);
          if (!a.json)
            console.log(
              `${file}: ${r.value.toPrecision(5)} at exit ${r.exit} (layer ${cf.met.exits[r.exit - 1]})  |  ${r.exits.map((e) => `${e.exit}: ${e.value.toPrecision(4)}${e.confidence === null ? '' : ` (Δ ${(-e.confidence).toPrecision(2)})`}`).join(', ')}`,
            );
        });
        continue;
      }
      b.ok.forEach((file, i) => {
        const r: RunPrediction = {
          file,
          exits: b.conf.map((conf, j) => ({
            exit: j + 1,
            layer: cf.met.exits[j],
            confidence: conf[i],
            class: b.pred[j][i],
            label: cf.classes[b.pred[j][i]],
          })),
          exit: dyn.exitOf[i] + 1,
          class: dyn.pred[i],
          label: cf.classes[dyn.pred[i]],
          confidence: dyn.conf[i],
        };
        results.push(r);
        if (!a.json && !a.eval)
          console.log(
            `${file}: ${r.label} (${r.confidence.toFixed(4)}) at exit ${r.exit} (layer ${cf.met.exits[r.exit - 1]})  |  ${r.exits.map((e) => `${e.exit}: ${e.label} ${e.confidence.toFixed(3)}`).join(', ')}`,
          );
      });
    }
  } finally {
    await rp.release();
  }
  if (a.json) console.log(JSON.stringify(regression ? regResults : results));
  if (a.eval) {
    let right = 0;
    let scored = 0;
    let cost = 0;
    for (const r of results) {
      const label = cf.classes.indexOf(path.basename(path.dirname(r.file)));
      if (label < 0) continue;
      scored++;
      cost += gflops[r.exit - 1];
      if (r.class === label) right++;
    }
    if (!scored)
      throw new UserError(
        `met predict --eval: no image sits in a folder named like one of the run's classes (${cf.classes.join(', ')})`,
      );
    console.log(
      `accuracy ${(right / scored).toFixed(4)} (${right}/${scored} images), ${fmtGflops(cost / scored)} GFLOPs per image on average`,
    );
  }
  for (const f of failed) console.error(`skipped ${f.file}: ${f.reason}`);
  return failed.length ? 1 : 0;
}
