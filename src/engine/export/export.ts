// `met export`: a run as a chain of self-contained ONNX files plus everything needed to use them
// for budgeted early exiting without this code base (examples/run-exported.mjs does so with
// onnxruntime-node and sharp alone).
//
//   segment_1.onnx   images [B, C, S, S] -> probs [B, classes], state [B, T_1, D]
//   segment_j.onnx   state_in [B, T_{j-1}, D] -> probs [B, classes], state [B, T_j, D]
//   thresholds.json  class names, preprocessing, per segment its exit, layers, cumulative
//                    GFLOPs and threshold (ExportManifest)
//   README.md        the same in words
//
// Regression runs (model/regression.ts) export `value` [B, 1] in the targets' units instead of
// `probs`, and their thresholds are on the agreement of consecutive exits, -|value_j - value_{j-1}|,
// not on a max probability: the manifest says so (`task`, `confidence`) and so does the README,
// since a reader applying the classification rule to a value would exit on nonsense.
//
// The segments are buildSegments(..., bake = true): MET's tensors and the frozen backbone are
// initializers, so each file needs nothing but its data input. Only the segments up to the last
// exit used for budgeted inference are written: later ones could never be reached.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { DEFAULT_CROP_PCT, type Preprocess } from '../data/image';
import { buildSegments, cumulativeGflops } from '../infer/segments';
import { isRegression } from '../model/regression';
import { loadRun } from '../run/run';
import { UserError } from '../tensor';
import { chosenOperatingPoint, encodeThreshold, type JsonThreshold, readThresholds } from '../run/runFolder';

export const EXPORT_FORMAT = 'met-export';
export const EXPORT_VERSION = 1;
export const MANIFEST = 'thresholds.json';

export interface ExportedSegment {
  file: string;
  /** 1-based exit this segment ends with. */
  exit: number;
  /** Encoder layers it runs (1-based, inclusive). */
  layers: [number, number];
  input: { name: 'images' | 'state_in'; shape: (number | string)[] };
  outputs: { name: string; shape: (number | string)[] }[];
  /** GFLOPs of this segment per image, and from the image up to its exit (fvcore convention). */
  gflops: number;
  cumulativeGflops: number;
  /**
   * A sample leaves here when its confidence (max probability; regression: -|value - previous
   * segment's value|) >= threshold; "Infinity": never; "-Infinity": always (the last segment).
   */
  threshold: JsonThreshold;
  /** Whether the run's budgeted inference uses this exit (unused exits have threshold "Infinity"). */
  used: boolean;
}

export interface ExportManifest {
  format: typeof EXPORT_FORMAT;
  version: number;
  createdAt: string;
  /** The run folder it came from. */
  run: string;
  /** What the segments predict: class probabilities (`probs`) or a number (`value`, regression). */
  task: 'classification' | 'regression';
  /**
   * The score compared with the thresholds: `max-prob` (largest entry of `probs`) or `agreement`
   * (regression: -|value_j - value_{j-1}| with the previous segment's value; none at segment 1,
   * which therefore never lets a sample leave except as the last segment).
   */
  confidence: 'max-prob' | 'agreement';
  /** Class names in output order; empty for regression. */
  classes: string[];
  preprocess: Required<
    Pick<Preprocess, 'imageSize' | 'channels' | 'mean' | 'std' | 'resize' | 'cropPct' | 'interpolation'>
  > & { layout: 'NCHW'; scale: string };
  /** 1-based exits used for budgeted inference, their layers and the run's chosen thresholds. */
  exits: number[];
  layers: number[];
  thresholds: JsonThreshold[];
  /** Cumulative GFLOPs per exported exit (all exits up to the last used one). */
  gflops: number[];
  chosen: { p: number | null; source: string };
  segments: ExportedSegment[];
}

/** Four significant digits even for toy models (0.0001812), fixed decimals for real ones. */
export function fmtGflops(g: number): string {
  return g >= 0.1 ? g.toFixed(4) : g.toPrecision(4);
}

function readme(m: ExportManifest): string {
  const pp = m.preprocess;
  const reg = m.task === 'regression';
  const out = reg ? 'value' : 'probs';
  const rows = m.segments.map(
    (s) =>
      `| ${s.file} | ${s.exit} | ${s.layers[0]}-${s.layers[1]} | \`${s.input.name}\` ${JSON.stringify(s.input.shape)} | ${s.outputs.map((o) => `\`${o.name}\` ${JSON.stringify(o.shape)}`).join(', ')} | ${fmtGflops(s.cumulativeGflops)} | ${s.threshold} |`,
  );
  return `# MET early-exit export

Exported by \`met export\` from \`${m.run}\` on ${m.createdAt}. ${reg ? "A regression run: each segment outputs `value` [B, 1], its exit's prediction in the units of the run's targets (the standardisation used in training is baked in)." : `Classes (index order): ${m.classes.map((c) => `\`${c}\``).join(', ')}.`}

| file | exit | layers | input | outputs | cumulative GFLOPs | threshold |
|---|---|---|---|---|---|---|
${rows.join('\n')}

Each file is a self-contained ONNX model (opset 20, float32, batch dimension \`B\` free).

## Budgeted early exit

1. Preprocess each image: decode to 8-bit ${pp.channels === 1 ? 'grey (ITU-R 601 luma of RGB)' : 'RGB'}, resize to ${pp.imageSize}x${pp.imageSize} (\`${pp.resize}\`${pp.resize === 'resize-center-crop' ? `: shorter side to floor(${pp.imageSize} / ${pp.cropPct}), then centre crop` : ''}; ${pp.interpolation}), scale to [0, 1], subtract \`mean\` ${JSON.stringify(pp.mean)} and divide by \`std\` ${JSON.stringify(pp.std)} per channel, lay out as [B, ${pp.channels}, ${pp.imageSize}, ${pp.imageSize}].
2. Run \`${m.segments[0]?.file}\` on the batch. ${
    reg
      ? "The confidence of a row at segment j is the agreement of consecutive exits, `-|value_j - value_{j-1}|` (computed in float32): 0 when exit j repeats exit j-1's prediction, more negative the more they disagree. A row whose confidence is >= the segment's threshold leaves with `value_j`. Segment 1 has no predecessor, so no row leaves there (unless it is the last segment); its `value` is kept as the reference for segment 2. Thresholds are therefore negative numbers (or the strings below), quantiles of the validation split's agreement."
      : `Each row whose largest probability in \`${out}\` is >= the segment's threshold leaves with that prediction.`
  }
3. Feed the remaining rows of \`state\` to the next segment as \`state_in\`${reg ? ' (and keep their `value` for the next agreement)' : ''}; repeat. The last segment takes every sample still running.

Expected cost = sum over exits of (fraction of samples leaving there) x cumulative GFLOPs.

Thresholds in \`${MANIFEST}\` are numbers, or the strings \`"Infinity"\` (nobody leaves at this exit) and \`"-Infinity"\` (everybody left leaves: the last segment), since JSON has no infinities; \`Number()\` in JavaScript and \`float()\` in Python read both. Exits the run's budgeted inference does not use have \`"Infinity"\`.

\`examples/run-exported.mjs\` in the MET repository does all of this with onnxruntime-node and sharp${reg ? ' (for a folder of images with a targets.csv or targets.json it reports the MAE, RMSE and expected GFLOPs)' : ''}. Its resize is sharp's; \`met\` resizes like Pillow, so results match \`met eval\` exactly only for images that already have the input size (or when you resize like the run).
`;
}

/** Writes the export of `runDir` into `outDir`; returns the manifest it wrote. */
export function exportRun(runDir: string, outDir: string, log: (m: string) => void = () => {}): ExportManifest {
  const run = path.resolve(runDir);
  const { cf, params, backbone, vit } = loadRun(run);
  const K = cf.met.exits.length;
  const th = readThresholds(run);
  if (!th) log(`warning: ${run} has no thresholds.json; the export sends every sample to the last exit`);
  let op;
  try {
    op = chosenOperatingPoint(th, K);
  } catch (e) {
    throw new UserError(`${run}: ${(e as Error).message}`);
  }
  const lastUsed = op.used[op.used.length - 1];

  const dir = path.resolve(outDir);
  prepareOutDir(dir);

  const segs = buildSegments(vit, cf.met, backbone, params, true).slice(0, lastUsed + 1);
  const cum = cumulativeGflops(segs);
  if (th && th.gflops.slice(0, cum.length).some((g, j) => Math.abs(g - cum[j]) > 1e-12 * Math.max(1, cum[j])))
    log(
      `warning: the run's thresholds.json lists other GFLOPs (${th.gflops.join(', ')}) than the exported segments (${cum.join(', ')})`,
    );

  const segments: ExportedSegment[] = segs.map((s, j) => {
    const file = `segment_${j + 1}.onnx`;
    fs.writeFileSync(path.join(dir, file), s.model.bytes);
    const inp = s.model.inputs;
    if (inp.length !== 1)
      throw new Error(
        `segment ${j + 1} has inputs ${inp.map((i) => i.name).join(', ')}; a baked segment takes only its data`,
      );
    const last = j === segs.length - 1;
    return {
      file,
      exit: j + 1,
      layers: s.layers,
      input: { name: inp[0].name as 'images' | 'state_in', shape: inp[0].shape },
      outputs: s.model.outputs.map((o) => ({ name: o.name, shape: o.shape })),
      gflops: s.macs / 1e9,
      cumulativeGflops: cum[j],
      threshold: encodeThreshold(last ? -Infinity : op.perExit[j]),
      used: op.used.includes(j),
    };
  });

  const manifest: ExportManifest = {
    format: EXPORT_FORMAT,
    version: EXPORT_VERSION,
    createdAt: new Date().toISOString(),
    run,
    task: isRegression(cf.met) ? 'regression' : 'classification',
    confidence: isRegression(cf.met) ? 'agreement' : 'max-prob',
    classes: isRegression(cf.met) ? [] : cf.classes,
    preprocess: {
      imageSize: vit.imageSize,
      channels: vit.channels as 1 | 3,
      mean: vit.mean,
      std: vit.std,
      resize: cf.train.resize,
      cropPct: DEFAULT_CROP_PCT,
      interpolation: 'bilinear',
      layout: 'NCHW',
      scale: 'pixel / 255',
    },
    exits: op.used.map((j) => j + 1),
    layers: op.used.map((j) => cf.met.exits[j]),
    thresholds: op.thresholds.map(encodeThreshold),
    gflops: cum,
    chosen: { p: op.p, source: op.source },
    segments,
  };
  fs.writeFileSync(path.join(dir, MANIFEST), JSON.stringify(manifest, null, 1) + '\n');
  fs.writeFileSync(path.join(dir, 'README.md'), readme(manifest));
  return manifest;
}

/**
 * The output folder may be new, empty, or an earlier export (whose segment files are removed
 * first, so a shorter chain leaves no stale segment behind). Anything else is refused rather
 * than mixed with our files.
 */
function prepareOutDir(dir: string): void {
  if (fs.existsSync(dir)) {
    if (!fs.statSync(dir).isDirectory()) throw new UserError(`${dir} exists and is not a folder`);
    const entries = fs.readdirSync(dir);
    if (entries.length) {
      let prev: { format?: string } | null = null;
      try {
        prev = JSON.parse(fs.readFileSync(path.join(dir, MANIFEST), 'utf8')) as { format?: string };
      } catch {
        prev = null;
      }
      if (prev?.format !== EXPORT_FORMAT)
        throw new UserError(`${dir} is not empty and holds no earlier MET export; choose a new or empty folder`);
      for (const e of entries) if (/^segment_\d+\.onnx$/.test(e)) fs.rmSync(path.join(dir, e));
    }
  }
  try {
    fs.mkdirSync(dir, { recursive: true });
  } catch (e) {
    throw new UserError(`cannot create ${dir}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}
