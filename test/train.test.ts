// Training runs on a small generated folder with a tiny random backbone: resume reproduces an
// uninterrupted run exactly, SIGINT saves and exits cleanly, a non-finite loss names the step
// and the exit, and bad inputs give errors that name the problem.

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import { canonicalShapes, type VitConfig } from '../src/engine/model/config';
import { TRAIN_DEFAULTS, type TrainConfig } from '../src/engine/run/config';
import { runTraining } from '../src/engine/run/run';
import type { RunConfigFile, RunReportFile } from '../src/engine/run/runFolder';
import { readSafetensors, writeSafetensors } from '../src/engine/weights/safetensors';
import type { HostTensor } from '../src/engine/tensor';
import { rng } from './helpers';

const ROOT = path.resolve(__dirname, '..');

const TINY: VitConfig = {
  imageSize: 16,
  channels: 3,
  patchSize: 4,
  dim: 16,
  depth: 3,
  heads: 2,
  headDim: 8,
  mlpDim: 32,
  act: 'gelu',
  qkvBias: true,
  lnEps: 1e-6,
  numClasses: 0,
  posGrid: 4,
  mean: [0.5, 0.5, 0.5],
  std: [0.5, 0.5, 0.5],
};

let fixture: { dir: string; data: string; weights: string } | null = null;

/** A 3-class folder of coloured squares (12 images each) and a random timm-layout backbone. */
async function tinySetup(): Promise<{ dir: string; data: string; weights: string }> {
  if (fixture) return fixture;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'met-train-'));
  const data = path.join(dir, 'data');
  const r = rng(42);
  const colours = [
    [220, 40, 40],
    [40, 200, 60],
    [50, 60, 230],
  ];
  for (let c = 0; c < 3; c++) {
    fs.mkdirSync(path.join(data, `class${c}`), { recursive: true });
    for (let i = 0; i < 12; i++) {
      const px = Buffer.alloc(16 * 16 * 3);
      const x0 = Math.floor(r() * 8);
      const y0 = Math.floor(r() * 8);
      for (let y = 0; y < 16; y++)
        for (let x = 0; x < 16; x++)
          for (let k = 0; k < 3; k++) {
            const inside = x >= x0 && x < x0 + 8 && y >= y0 && y < y0 + 8;
            px[(y * 16 + x) * 3 + k] = inside ? colours[c][k] : Math.floor(r() * 60);
          }
      await sharp(px, { raw: { width: 16, height: 16, channels: 3 } })
        .png()
        .toFile(path.join(data, `class${c}`, `${i}.png`));
    }
  }
  const w = new Map<string, HostTensor>();
  for (const [name, shape] of canonicalShapes(TINY)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const isNormW = /norm\d?\.weight$/.test(name);
    w.set(name, {
      dtype: 'float32',
      shape,
      data: Float32Array.from({ length: n }, () => (isNormW ? 1 : 0) + (isNormW ? 0.1 : 0.3) * (r() - 0.5)),
    });
  }
  const weights = path.join(dir, 'tiny.safetensors');
  writeSafetensors(weights, w);
  fixture = { dir, data, weights };
  return fixture;
}

function config(over: Partial<TrainConfig>): TrainConfig {
  return {
    ...TRAIN_DEFAULTS,
    data: '',
    weights: '',
    heads: 2,
    epochs: 2,
    batch: 8,
    split: [60, 20, 20],
    lr: 5e-3,
    warmupEpochs: 1,
    threads: 1,
    ...over,
  } as TrainConfig;
}

test('an interrupted run resumed with --resume ends with the same weights as an uninterrupted one', async () => {
  const { dir, data, weights } = await tinySetup();
  const full = path.join(dir, 'full');
  await runTraining(config({ data, weights, out: full }));
  const part = path.join(dir, 'part');
  let steps = 0;
  const s1 = await runTraining(config({ data, weights, out: part }), {
    onEvent: (e) => {
      if (e.type === 'step') steps = e.step;
    },
    shouldStop: () => (steps >= 4 ? 'test interrupt' : null),
  });
  assert.equal(s1.stopped, 'test interrupt');
  // The interrupted run stopped mid-epoch 2 (3 steps per epoch here) and saved its position.
  const s2 = await runTraining(config({ data, weights, out: part }), {}, part);
  assert.equal(s2.stopped, null);
  const a = readSafetensors(path.join(full, 'trainable.safetensors'));
  const b = readSafetensors(path.join(part, 'trainable.safetensors'));
  for (const [k, t] of a)
    assert.deepEqual(
      Array.from(b.get(k)!.data as Float32Array),
      Array.from(t.data as Float32Array),
      `tensor ${k} differs`,
    );
  // metrics.jsonl has each step once.
  const stepsLogged = fs
    .readFileSync(path.join(part, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l))
    .filter((e) => e.type === 'step')
    .map((e) => e.step);
  assert.deepEqual(
    stepsLogged,
    [...new Set(stepsLogged)].sort((x, y) => x - y),
  );
  // The run folder holds what the panels and the CLI read.
  for (const f of [
    'config.json',
    'report.json',
    'metrics.jsonl',
    'checkpoint.safetensors',
    'trainable.safetensors',
    'predictions.json',
    'thresholds.json',
    'summary.json',
  ])
    assert.ok(fs.existsSync(path.join(part, f)), f);
});

test('a non-finite loss stops training with a message naming the step and the exit', async () => {
  const { dir, data, weights } = await tinySetup();
  await assert.rejects(
    runTraining(config({ data, weights, out: path.join(dir, 'nan'), lr: 1e30, epochs: 1, variant: 'no_gr' })),
    (e: Error) => /not finite at step \d+ \(epoch 1\): exit \d+ \(after layer \d+\) cross-entropy/.test(e.message),
  );
});

test('met train: SIGINT saves a checkpoint and exits cleanly; --resume completes the run', async () => {
  const { dir, data, weights } = await tinySetup();
  const out = path.join(dir, 'sig');
  const child = spawn(
    process.execPath,
    [
      path.join(ROOT, 'bin', 'met.js'),
      'train',
      '--data',
      data,
      '--weights',
      weights,
      '--heads',
      '2',
      '--epochs',
      '30',
      '--batch',
      '4',
      '--split',
      '60,20,20',
      '--threads',
      '1',
      '--progress',
      'json',
      '--out',
      out,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let buf = '';
  let sent = false;
  child.stdout.on('data', (d: Buffer) => {
    buf += d.toString();
    if (!sent && /"type":"step","epoch":1,"step":3,/.test(buf)) {
      sent = true;
      child.kill('SIGINT');
    }
  });
  const code = await new Promise<number | null>((res) => child.on('exit', (c) => res(c)));
  assert.ok(sent, 'no progress seen');
  assert.equal(code, 130);
  assert.match(buf, /"type":"stopped"/);
  assert.ok(fs.existsSync(path.join(out, 'checkpoint.safetensors')));
  const r = spawnSync(process.execPath, [path.join(ROOT, 'bin', 'met.js'), 'train', '--resume', out, '--epochs', '2'], {
    encoding: 'utf8',
    timeout: 120_000,
  });
  assert.equal(r.status, 0, r.stderr);
  assert.ok(fs.existsSync(path.join(out, 'thresholds.json')));
});

test('bad input: empty folder, one class, unwritable output, bad config field', async () => {
  const { dir, weights } = await tinySetup();
  const empty = path.join(dir, 'empty');
  fs.mkdirSync(empty, { recursive: true });
  await assert.rejects(runTraining(config({ data: empty, weights, out: path.join(dir, 'o1') })), /empty|no image/i);
  const one = path.join(dir, 'one', 'cats');
  fs.mkdirSync(one, { recursive: true });
  fs.copyFileSync(path.join(dir, 'data', 'class0', '0.png'), path.join(one, 'a.png'));
  fs.copyFileSync(path.join(dir, 'data', 'class0', '1.png'), path.join(one, 'b.png'));
  await assert.rejects(
    runTraining(config({ data: path.dirname(one), weights, out: path.join(dir, 'o2') })),
    /at least 2/,
  );
  if (process.getuid?.() !== 0) {
    const ro = path.join(dir, 'ro');
    fs.mkdirSync(ro);
    fs.chmodSync(ro, 0o500);
    await assert.rejects(
      runTraining(config({ data: path.join(dir, 'data'), weights, out: path.join(ro, 'run') })),
      /cannot write the run folder/,
    );
  } else {
    // root ignores permissions: a path under a regular file cannot be created either.
    const file = path.join(dir, 'a-file');
    fs.writeFileSync(file, '');
    await assert.rejects(
      runTraining(config({ data: path.join(dir, 'data'), weights, out: path.join(file, 'run') })),
      /cannot write the run folder/,
    );
  }
  const bad = path.join(dir, 'bad.json');
  fs.writeFileSync(bad, JSON.stringify({ data: 'x', weights: 'y', rnak: 8 }));
  const r = spawnSync(process.execPath, [path.join(ROOT, 'bin', 'met.js'), 'train', '--config', bad], {
    encoding: 'utf8',
  });
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /'rnak'/);
  fs.writeFileSync(bad, JSON.stringify({ data: 'x', weights: 'y', rank: 'eight' }));
  const r2 = spawnSync(process.execPath, [path.join(ROOT, 'bin', 'met.js'), 'train', '--config', bad], {
    encoding: 'utf8',
  });
  assert.notEqual(r2.status, 0);
  assert.match(r2.stderr, /'rank' must be an integer/);
});

test('a run whose train step is split into backbone chunks (epoch remainders included) ends with the one-chunk weights', async () => {
  const { dir, data, weights } = await tinySetup();
  // 24 training images (6 val, 6 test), batch 7: steps of 7, 7, 7 and 3 per epoch. The full batches
  // run in chunks of 3, 2 and 2 images; the last one goes through the symbolic-batch step.
  const one = path.join(dir, 'one-chunk');
  const chunked = path.join(dir, 'chunked');
  const c = config({ data, weights, batch: 7, epochs: 2 });
  const s1 = await runTraining({ ...c, out: one });
  const s2 = await runTraining({ ...c, out: chunked }, { chunkRows: 3 });
  const a = readSafetensors(path.join(one, 'trainable.safetensors'));
  const b = readSafetensors(path.join(chunked, 'trainable.safetensors'));
  let worst = 0;
  for (const [k, t] of a) {
    const x = t.data as Float32Array;
    const y = b.get(k)!.data as Float32Array;
    for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(x[i] - y[i]) / (1e-3 + Math.abs(x[i])));
  }
  assert.ok(worst < 1e-3, `chunked training drifted from one-chunk training: worst relative difference ${worst}`);
  const steps = fs
    .readFileSync(path.join(chunked, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l))
    .filter((e) => e.type === 'step');
  assert.equal(steps.length, 8, 'four steps per epoch, the last one smaller');
  const split = JSON.parse(fs.readFileSync(path.join(chunked, 'predictions.json'), 'utf8')) as {
    val: { files: string[] };
    test: { files: string[] };
  };
  assert.equal(36 - split.val.files.length - split.test.files.length, 24);
  assert.deepEqual(
    s2.exits.map((e) => e.exit),
    s1.exits.map((e) => e.exit),
  );
});

test('refused before training: a split that leaves validation or test empty, an image size that is not whole patches', async () => {
  const { dir, data, weights } = await tinySetup();
  for (const [split, which] of [
    [[100, 0, 0], 'validation'],
    [[80, 20, 0], 'test'],
  ] as const) {
    const out = path.join(dir, `split-${split.join('-')}`);
    await assert.rejects(
      runTraining(config({ data, weights, out, split: [...split] })),
      (e: Error) =>
        e.name === 'UserError' && new RegExp(`the ${which} split would be empty: split ${split}`).test(e.message),
    );
    assert.ok(!fs.existsSync(out), 'no run folder is made for a refused split');
  }
  // A train/ folder without test/: nothing to report the accuracy on.
  const sf = path.join(dir, 'split-folders');
  fs.cpSync(data, path.join(sf, 'train'), { recursive: true });
  await assert.rejects(
    runTraining(config({ data: sf, weights, out: path.join(dir, 'sf') })),
    /the test split would be empty: .*test\//,
  );
  // The tiny backbone's patch is 4: 3 is smaller than one patch, 6 is one and a half.
  for (const size of ['3', '6']) {
    const r = spawnSync(
      process.execPath,
      [
        path.join(ROOT, 'bin', 'met.js'),
        'train',
        '--data',
        data,
        '--weights',
        weights,
        '--heads',
        '2',
        '--image-size',
        size,
        '--out',
        path.join(dir, `size${size}`),
      ],
      { encoding: 'utf8' },
    );
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, new RegExp(`imageSize: ${size} is not a positive multiple of the patch size 4`));
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
  }
});

test("report.json lists the dataset's links out of its root and the files skipped as reached under two classes", async () => {
  const { dir, data, weights } = await tinySetup();
  const linked = path.join(dir, 'linked');
  fs.mkdirSync(linked);
  fs.symlinkSync(path.join(data, 'class0'), path.join(linked, 'class0'));
  fs.cpSync(path.join(data, 'class1'), path.join(linked, 'class1'), { recursive: true });
  fs.cpSync(path.join(data, 'class2'), path.join(linked, 'class2'), { recursive: true });
  fs.symlinkSync('../class2', path.join(linked, 'class1', 'more'));
  const out = path.join(dir, 'linked-run');
  await runTraining(config({ data: linked, weights, out, epochs: 1 }));
  const report = JSON.parse(fs.readFileSync(path.join(out, 'report.json'), 'utf8')) as RunReportFile;
  assert.deepEqual(report.external, [
    { link: path.join(linked, 'class0'), target: fs.realpathSync(path.join(data, 'class0')) },
  ]);
  assert.equal(report.skipped.filter((s) => /same file as .*class 'class2'/.test(s.reason)).length, 12);
  const cf = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')) as RunConfigFile;
  assert.equal(cf.dataset.counts.train + cf.dataset.counts.val + cf.dataset.counts.test, 36);
});
