// `npm run demo`: Multiple-Exit Tuning end to end in a few minutes on a laptop CPU, with
// nothing downloaded.
//
//  1. draws a shapes dataset (8 classes x 250 images, half easy and half hard;
//     src/engine/demo/shapes.ts) into .met/demo/data, once (later runs reuse it);
//  2. writes the run's settings as .met/demo/met.config.json and runs `met train` on it, in this
//     process but through the CLI's own entry (trainCommand), so the demo is exactly the command
//     it prints. The backbone is the committed tiny ViT (assets/tiny-vit/), pretrained by
//     scripts/pretrain-tiny.ts on other shapes: MET fine-tunes it with an exit after every layer;
//  3. prints `met train`'s per-exit table and dynamic (budgeted early-exit) curve, then each
//     exit's accuracy on easy and on hard test images and where each kind leaves under the
//     fitted thresholds: easy images early, hard ones late, which is what early exits are for.
//
// Options: --fresh (redraw the data), --epochs N, --per-class N, --threads N.
//
// `npm run demo -- --counting`: the regression variant (issue 6). Draws counting images (1..5
// shapes each, src/engine/demo/shapes.ts writeCountingFolder) with a targets.csv into
// .met/demo/counting, fine-tunes the same tiny ViT as a regression run (`--task regression`: one
// output per exit, MSE per exit), and prints `met train`'s per-exit MAE / RMSE / GFLOPs table and
// the dynamic curve (early exit on the agreement of consecutive exits), then the MAE per true
// count at every exit. Options: --fresh, --epochs N, --images N, --threads N.

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { trainCommand } from '../src/cli/train';
import { DEMO_CLASSES, type Manifest, writeCountingFolder, writeShapeFolder } from '../src/engine/demo/shapes';
import { exitScores } from '../src/engine/infer/exitScores';
import { staticAccuracy } from '../src/engine/run/run';
import { applyThresholds, pickForBudget } from '../src/engine/infer/thresholds';
import {
  chosenOperatingPoint,
  decodeThreshold,
  type SplitPredictions,
  type ThresholdsFile,
} from '../src/engine/run/runFolder';

const ROOT = path.resolve(__dirname, '..');
const DEMO_DIR = path.join(ROOT, '.met', 'demo');
const DATA_DIR = path.join(DEMO_DIR, 'data');
const COUNTING_DIR = path.join(DEMO_DIR, 'counting');
const COUNTING_SEED = 0;
const MAX_COUNT = 5;
const BACKBONE = path.join(ROOT, 'assets', 'tiny-vit', 'tiny-vit.safetensors');
const BACKBONE_INFO = path.join(ROOT, 'assets', 'tiny-vit', 'config.json');

function option(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return def;
  const v = Number(process.argv[i + 1]);
  if (!Number.isInteger(v) || v < 1) throw new Error(`--${name} needs a positive integer`);
  return v;
}

const rel = (p: string) => path.relative(process.cwd(), p) || '.';
const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

async function main(): Promise<number> {
  if (process.argv.includes('--counting')) return counting();
  const t0 = Date.now();
  const perClass = option('per-class', 250);
  const epochs = option('epochs', 10);
  const threads = process.argv.includes('--threads') ? option('threads', 1) : undefined;
  console.log(`MET demo on ${os.cpus().length} CPU cores (load ${os.loadavg()[0].toFixed(1)})\n`);

  // 1. Data.
  if (process.argv.includes('--fresh')) fs.rmSync(DATA_DIR, { recursive: true, force: true });
  const { manifest, reused } = await writeShapeFolder({ out: DATA_DIR, classes: DEMO_CLASSES, perClass, seed: 0 });
  const nHard = manifest.samples.filter((s) => s.hard).length;
  console.log(
    `data: ${manifest.samples.length} images of ${DEMO_CLASSES.join(', ')} (${manifest.samples.length - nHard} easy, ${nHard} hard) ` +
      `${reused ? 'already in' : 'drawn into'} ${rel(DATA_DIR)} (${((Date.now() - t0) / 1000).toFixed(1)} s)`,
  );

  // 2. Settings, as a user would write them. The tiny backbone's head count cannot be read off
  // its tensor shapes (64 is not a standard ViT width), so it comes from assets/tiny-vit/config.json.
  if (!fs.existsSync(BACKBONE)) throw new Error(`${rel(BACKBONE)} is missing (make it with npm run pretrain-tiny)`);
  const bb = JSON.parse(fs.readFileSync(BACKBONE_INFO, 'utf8')) as {
    config: { heads: number; depth: number };
    pretraining: { heldOut: { accuracy: number } };
  };
  const settings = {
    data: 'data',
    weights: path.relative(DEMO_DIR, BACKBONE).split(path.sep).join('/'),
    heads: bb.config.heads,
    exits: Array.from({ length: bb.config.depth }, (_, i) => i + 1),
    rank: 8,
    epochs,
    batch: 32,
    lr: 5e-3,
    warmupEpochs: 1,
    split: [60, 20, 20],
    seed: 0,
    ...(threads ? { threads } : {}),
  };
  fs.mkdirSync(DEMO_DIR, { recursive: true });
  const configFile = path.join(DEMO_DIR, 'met.config.json');
  const notes = [
    '// Written by npm run demo (scripts/demo.ts); paths are relative to this file.',
    '// Short schedule at a higher lr than the defaults (20 epochs, 1e-3) so the demo takes a minute or two.',
    '// Graph regularization at its defaults (simClamp relu, lambda 0.001): docs/method.md §2.1.',
  ];
  fs.writeFileSync(configFile, `${notes.join('\n')}\n${JSON.stringify(settings, null, 2)}\n`);
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  const runDir = path.join(ROOT, '.met', 'runs', `demo-${stamp}`);
  const args = ['--config', rel(configFile), '--out', rel(runDir)];
  console.log(
    `backbone: ${rel(BACKBONE)} (tiny ViT, ${bb.config.depth} layers, pretrained on 45 other shape classes: ${pct(bb.pretraining.heldOut.accuracy)} held-out accuracy there)`,
  );
  console.log(`settings: ${rel(configFile)}\n\n$ npx met train ${args.join(' ')}`);

  // 3. `met train`, exactly as the CLI runs it.
  const rc = await trainCommand(args);
  if (rc !== 0) return rc;

  // 4. Where the easy and the hard test images leave under budgeted inference.
  const preds = JSON.parse(fs.readFileSync(path.join(runDir, 'predictions.json'), 'utf8')) as {
    exits: number[];
    test: SplitPredictions;
  };
  const th = JSON.parse(fs.readFileSync(path.join(runDir, 'thresholds.json'), 'utf8')) as ThresholdsFile;
  explainExits(preds.test, preds.exits, th, manifest, DATA_DIR);

  console.log(
    `\ndemo finished in ${((Date.now() - t0) / 1000).toFixed(0)} s. Run folder: ${rel(runDir)}; explore it with: npx met eval --run ${rel(runDir)}`,
  );
  return 0;
}

/** The regression demo: counting shapes (see the header). */
async function counting(): Promise<number> {
  const t0 = Date.now();
  const n = option('images', 2000);
  const epochs = option('epochs', 20);
  const threads = process.argv.includes('--threads') ? option('threads', 1) : undefined;
  console.log(
    `MET counting demo (regression exits) on ${os.cpus().length} CPU cores (load ${os.loadavg()[0].toFixed(1)})\n`,
  );

  // 1. Data, reused when the folder holds the same number of images (the generator is deterministic).
  const targets = path.join(COUNTING_DIR, 'targets.csv');
  const have = fs.existsSync(targets) ? fs.readFileSync(targets, 'utf8').trim().split('\n').length - 1 : -1;
  const reuse = have === n && !process.argv.includes('--fresh');
  if (!reuse) await writeCountingFolder({ out: COUNTING_DIR, n, seed: COUNTING_SEED, maxCount: MAX_COUNT });
  console.log(
    `data: ${n} images with 1..${MAX_COUNT} shapes each and their counts in ${rel(targets)}, ${reuse ? 'already there' : 'drawn'} (${((Date.now() - t0) / 1000).toFixed(1)} s)`,
  );

  if (!fs.existsSync(BACKBONE)) throw new Error(`${rel(BACKBONE)} is missing (make it with npm run pretrain-tiny)`);
  const bb = JSON.parse(fs.readFileSync(BACKBONE_INFO, 'utf8')) as { config: { heads: number; depth: number } };
  const settings = {
    task: 'regression',
    data: 'counting',
    weights: path.relative(DEMO_DIR, BACKBONE).split(path.sep).join('/'),
    heads: bb.config.heads,
    exits: Array.from({ length: bb.config.depth }, (_, i) => i + 1),
    regLoss: 'mse',
    rank: 8,
    epochs,
    batch: 32,
    lr: 3e-3,
    warmupEpochs: 1,
    split: [60, 20, 20],
    seed: 0,
    ...(threads ? { threads } : {}),
  };
  fs.mkdirSync(DEMO_DIR, { recursive: true });
  const configFile = path.join(DEMO_DIR, 'counting.met.json');
  const notes = [
    '// Written by npm run demo -- --counting (scripts/demo.ts); paths are relative to this file.',
    "// A regression run: targets from counting/targets.csv, standardised with the training split's mean and std; MSE per exit.",
    '// Short schedule at a higher lr than the defaults so the demo takes a minute or two.',
  ];
  fs.writeFileSync(configFile, `${notes.join('\n')}\n${JSON.stringify(settings, null, 2)}\n`);
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  const runDir = path.join(ROOT, '.met', 'runs', `counting-${stamp}`);
  const args = ['--config', rel(configFile), '--out', rel(runDir)];
  console.log(
    `backbone: ${rel(BACKBONE)} (tiny ViT, ${bb.config.depth} layers, pretrained to classify shapes, never to count them)`,
  );
  console.log(`settings: ${rel(configFile)}\n\n$ npx met train ${args.join(' ')}`);
  const rc = await trainCommand(args);
  if (rc !== 0) return rc;

  // MAE per true count: where each exit is good (few shapes) and where it is not.
  const preds = JSON.parse(fs.readFileSync(path.join(runDir, 'predictions.json'), 'utf8')) as {
    exits: number[];
    test: SplitPredictions;
  };
  const t = preds.test.labels;
  const counts = [...new Set(t)].sort((a, b) => a - b);
  console.log('\ntest MAE per true count (and how many test images have it):');
  console.log(`exit  layer  ${counts.map((c) => `${c} (${t.filter((x) => x === c).length})`.padStart(9)).join('')}`);
  preds.exits.forEach((l, j) => {
    const cells = counts.map((c) => {
      const idx = t.map((x, i) => (x === c ? i : -1)).filter((i) => i >= 0);
      return (idx.reduce((a, i) => a + Math.abs(preds.test.pred[j][i] - c), 0) / idx.length).toFixed(3).padStart(9);
    });
    console.log(`${String(j + 1).padStart(4)}  ${String(l).padStart(5)}  ${cells.join('')}`);
  });
  console.log(
    `\ndemo finished in ${((Date.now() - t0) / 1000).toFixed(0)} s. Run folder: ${rel(runDir)}; explore it with: npx met eval --run ${rel(runDir)}`,
  );
  return 0;
}

/** Static accuracy per exit, and the exits easy and hard images take under budgeted inference. */
export function explainExits(
  test: SplitPredictions,
  layers: number[],
  th: ThresholdsFile,
  manifest: Manifest,
  dataDir: string,
): void {
  const hardOf = new Map(manifest.samples.map((s) => [path.join(dataDir, s.file), s.hard]));
  const groups = { easy: [] as number[], hard: [] as number[] };
  test.files.forEach((f, i) => {
    const hard = hardOf.get(path.resolve(f));
    if (hard !== undefined) groups[hard ? 'hard' : 'easy'].push(i);
  });
  const subset = (idx: number[]): SplitPredictions => ({
    files: idx.map((i) => test.files[i]),
    labels: idx.map((i) => test.labels[i]),
    conf: test.conf.map((row) => idx.map((i) => row[i])),
    pred: test.pred.map((row) => idx.map((i) => row[i])),
  });
  const easy = subset(groups.easy);
  const hard = subset(groups.hard);
  const accE = staticAccuracy(easy);
  const accH = staticAccuracy(hard);
  console.log(`\ntest accuracy per exit, easy (${groups.easy.length}) vs hard (${groups.hard.length}) images:`);
  console.log('exit  layer    easy    hard');
  layers.forEach((l, j) =>
    console.log(
      `${String(j + 1).padStart(4)}  ${String(l).padStart(5)}  ${pct(accE[j]).padStart(6)}  ${pct(accH[j]).padStart(6)}`,
    ),
  );

  // Two operating points: the run's chosen one (`met predict --run`; the cheapest within 0.5 points of
  // the last exit on val) and the most accurate one within half the full network's GFLOPs.
  const cost = th.exits.map((j) => th.gflops[j]);
  const full = th.gflops[th.gflops.length - 1];
  const half = pickForBudget(th.curve, full / 2);
  // thresholds.json holds ±Infinity as null: decoded as the CLI does it.
  const points = [
    {
      label: `p=${th.chosen.p ?? '-'} (the run's chosen point)`,
      T: chosenOperatingPoint(th, layers.length).thresholds,
    },
  ];
  if (half)
    points.push({
      label: `p=${half.p} (at most half the GFLOPs)`,
      T: half.thresholds.map((t, j, all) => decodeThreshold(t, j === all.length - 1)),
    });
  console.log(
    '\nearly exits on the test images (thresholds fitted on val; "layer": mean layer at which images leave):',
  );
  console.log(`  ${'operating point'.padEnd(36)}  easy: acc  layer  hard: acc  layer   all: acc  GFLOPs`);
  for (const pt of points) {
    const cols = [easy, hard, test].map((s) => {
      const r = applyThresholds(exitScores(s, th.exits), pt.T, cost);
      const layer = Array.from(r.exitOf).reduce((a, j) => a + layers[th.exits[j]], 0) / Math.max(1, r.exitOf.length);
      return { r, layer };
    });
    const [e, h, a] = cols;
    console.log(
      `  ${pt.label.padEnd(36)}  ${pct(e.r.accuracy).padStart(9)}  ${e.layer.toFixed(2).padStart(5)}  ${pct(h.r.accuracy).padStart(9)}  ${h.layer.toFixed(2).padStart(5)}  ${pct(a.r.accuracy).padStart(9)}  ${a.r.gflops.toFixed(4)} (${Math.round((100 * a.r.gflops) / full)}% of all layers)`,
    );
  }
}

if (require.main === module)
  main().then(
    (rc) => process.exit(rc),
    (e) => {
      console.error(e instanceof Error ? e.message : e);
      process.exit(1);
    },
  );
