// A tiny trained MET run made from scratch, shared by the CLI and export tests: an image folder
// of coloured shapes, a random ViT backbone in canonical (timm) layout, and `met train` run as a
// user runs it. Built once per test process (each test file is its own process) in os.tmpdir().
//
// The images get random positions, sizes and noise so that no two are alike: budgeted-inference
// parity tests compare confidences against thresholds taken from other images, and duplicates
// would put a test image exactly on a threshold, where float noise decides.

import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import { writeCountingFolder } from '../src/engine/demo/shapes';
import { canonicalShapes, type VitConfig } from '../src/engine/model/config';
import type { HostTensor } from '../src/engine/tensor';
import { writeSafetensors } from '../src/engine/weights/safetensors';
import { rng } from './helpers';

export const ROOT = path.resolve(__dirname, '..');
export const MET = path.join(ROOT, 'bin', 'met.js');

export const TINY = {
  imageSize: 16,
  patchSize: 4,
  dim: 16,
  depth: 3,
  heads: 2,
  mlpDim: 32,
  classes: ['bar', 'disc', 'square'],
  perClass: 20,
};

export interface TinyRun {
  root: string;
  data: string;
  weights: string;
  run: string;
  /** The flags the run was trained with besides --data/--weights/--out. */
  trainFlags: string[];
}

export function met(args: string[], timeout = 300_000): { code: number; out: string; err: string } {
  const r = spawnSync(process.execPath, [MET, ...args], { encoding: 'utf8', timeout, maxBuffer: 64 << 20 });
  return { code: r.status ?? -1, out: r.stdout, err: r.stderr };
}

/** 16x16 RGB: a red horizontal bar, a green disc or a blue square, placed at random, on noise. */
async function writeImage(file: string, cls: number, r: () => number): Promise<void> {
  const S = TINY.imageSize;
  const px = Buffer.alloc(S * S * 3);
  const cx = 4 + r() * 8;
  const cy = 4 + r() * 8;
  const size = 2.5 + r() * 2;
  for (let y = 0; y < S; y++)
    for (let x = 0; x < S; x++) {
      let inside: boolean;
      if (cls === 0) inside = Math.abs(y - cy) < size / 2 && Math.abs(x - cx) < size * 1.6;
      else if (cls === 1) inside = (x - cx) ** 2 + (y - cy) ** 2 < size * size;
      else inside = Math.abs(x - cx) < size && Math.abs(y - cy) < size;
      for (let c = 0; c < 3; c++) {
        const base = inside ? (c === cls ? 220 : 40) : 90;
        px[(y * S + x) * 3 + c] = Math.max(0, Math.min(255, Math.round(base + (r() - 0.5) * 60)));
      }
    }
  await sharp(px, { raw: { width: S, height: S, channels: 3 } })
    .png()
    .toFile(file);
}

/** Random canonical weights: matrices ~ N(0, 0.2²) (large enough for confident, varied outputs), LayerNorms identity. */
function writeBackbone(file: string): void {
  const cfg: VitConfig = {
    imageSize: TINY.imageSize,
    channels: 3,
    patchSize: TINY.patchSize,
    dim: TINY.dim,
    depth: TINY.depth,
    heads: TINY.heads,
    headDim: TINY.dim / TINY.heads,
    mlpDim: TINY.mlpDim,
    act: 'gelu',
    qkvBias: true,
    lnEps: 1e-6,
    numClasses: 0,
    posGrid: TINY.imageSize / TINY.patchSize,
    mean: [0.5],
    std: [0.5],
  };
  const r = rng(1234);
  const normal = () => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
  const tensors = new Map<string, HostTensor>();
  for (const [name, shape] of canonicalShapes(cfg)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const d = new Float32Array(n);
    if (/norm\d?\.weight$/.test(name)) d.fill(1);
    else if (!/norm\d?\.bias$/.test(name)) for (let i = 0; i < n; i++) d[i] = 0.2 * normal();
    tensors.set(name, { dtype: 'float32', shape, data: d });
  }
  writeSafetensors(file, tensors);
}

let pending: Promise<TinyRun> | null = null;

/** The tiny run (built on first use in this process). */
export function tinyRun(): Promise<TinyRun> {
  pending ??= build();
  return pending;
}

async function build(): Promise<TinyRun> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'met-tiny-'));
  // Everything the tests make lives under root; it goes with the test process.
  process.on('exit', () => fs.rmSync(root, { recursive: true, force: true }));
  const data = path.join(root, 'data');
  const r = rng(42);
  for (const [k, name] of TINY.classes.entries()) {
    fs.mkdirSync(path.join(data, name), { recursive: true });
    for (let i = 0; i < TINY.perClass; i++)
      await writeImage(path.join(data, name, `${name}${String(i).padStart(2, '0')}.png`), k, r);
  }
  const weights = path.join(root, 'vit-tiny.safetensors');
  writeBackbone(weights);
  const run = path.join(root, 'run');
  // One thread: the test machine's cores are shared; the answers do not depend on it.
  const trainFlags = [
    '--heads',
    String(TINY.heads),
    '--epochs',
    '1',
    '--batch',
    '8',
    '--lr',
    '0.01',
    '--warmup-epochs',
    '0',
    '--threads',
    '1',
  ];
  const t = met(['train', '--data', data, '--weights', weights, ...trainFlags, '--out', run]);
  if (t.code !== 0) throw new Error(`met train failed (${t.code}):\n${t.err}\n${t.out}`);
  return { root, data, weights, run, trainFlags };
}

/**
 * Another run next to the tiny one (`<t.root>/<name>`), trained on the same data and backbone with
 * the same flags plus `extra` (a variant, branches...), so that it differs from the tiny run only
 * in those. Returns the run folder and met's result (the caller asserts on it).
 */
export function trainBeside(t: TinyRun, name: string, extra: string[]): { run: string; r: ReturnType<typeof met> } {
  const run = path.join(t.root, name);
  const r = met(['train', '--data', t.data, '--weights', t.weights, ...t.trainFlags, ...extra, '--out', run]);
  return { run, r };
}

/**
 * A regression run on generated counting images (`n` images, 1..4 shapes each), trained with
 * `met train --task regression` and the committed tiny ViT, as the regression and export tests
 * use it. Returns the folder holding both, the data folder, the run folder and met's result (the caller
 * asserts on it).
 */
export async function countingRun(
  prefix: string,
  o: { n: number; seed: number; epochs: number },
  timeout = 300_000,
): Promise<{ dir: string; data: string; run: string; r: ReturnType<typeof met> }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  const data = path.join(dir, 'count');
  await writeCountingFolder({ out: data, n: o.n, seed: o.seed, maxCount: 4 });
  const run = path.join(dir, 'run');
  const r = met(
    [
      'train',
      '--task',
      'regression',
      '--data',
      data,
      '--weights',
      path.join(ROOT, 'assets', 'tiny-vit', 'tiny-vit.safetensors'),
      '--heads',
      '4',
      '--exits',
      '2,4,6',
      '--epochs',
      String(o.epochs),
      '--batch',
      '16',
      '--lr',
      '0.003',
      '--warmup-epochs',
      '0',
      '--threads',
      '1',
      '--out',
      run,
    ],
    timeout,
  );
  return { dir, data, run, r };
}
