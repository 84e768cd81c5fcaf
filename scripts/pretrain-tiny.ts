// Pretrains the tiny ViT that `npm run demo` fine-tunes (assets/tiny-vit/), from scratch, with
// this project's own engine: the whole backbone is trainable (every canonical weight is a graph
// input), the graph is differentiated by src/engine/graph/grad.ts, onnxruntime runs the step and
// src/engine/train/adamw.ts updates the weights on the host.
//
// The task is PRETRAIN_CLASSES from src/engine/demo/shapes.ts: other shapes and textures than
// the demo's, drawn by the same renderer, so the backbone learns transferable features without
// ever seeing a demo class. Every step draws a fresh batch (the renderer is a pure function of
// (seed, class, index)), so the model never sees an image twice and cannot overfit a pool.
//
//   npm run pretrain-tiny                        # the committed settings
//   npm run pretrain-tiny -- --steps 300 --out /tmp/t.safetensors   # a quick trial
//
// The weights are written in timm's layout (patch_embed.proj.weight, blocks.N.attn.qkv.weight,
// ...) as F16 next to config.json, and the held-out accuracy is measured again on the F16
// weights as `met` will load them (loadBackbone, layout auto).

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { grad } from '../src/engine/graph/grad';
import { Graph, type Tensor } from '../src/engine/graph/ir';
import { compile } from '../src/engine/graph/onnx';
import { canonicalShapes, INCEPTION_MEAN, INCEPTION_STD, type VitConfig } from '../src/engine/model/config';
import { prepareWeights, VitParams, vitForward } from '../src/engine/model/vit';
import { PRETRAIN_CLASSES, renderSample } from '../src/engine/demo/shapes';
import { Session } from '../src/engine/runtime/session';
import type { HostTensor } from '../src/engine/tensor';
import { AdamW, warmupCosine } from '../src/engine/train/adamw';
import { mulberry32 } from '../src/engine/data/random';
import { loadBackbone } from '../src/engine/weights';
import { writeSafetensors } from '../src/engine/weights/safetensors';

interface Options {
  out: string;
  steps: number;
  batch: number;
  lr: number;
  minLr: number;
  weightDecay: number;
  warmup: number;
  seed: number;
  dim: number;
  depth: number;
  heads: number;
  headDim: number;
  mlpDim: number;
  evalPerClass: number;
  evalEvery: number;
  threads?: number;
}

const DEFAULTS: Options = {
  out: path.join(__dirname, '..', 'assets', 'tiny-vit', 'tiny-vit.safetensors'),
  steps: 6000,
  batch: 64,
  lr: 2e-3,
  minLr: 1e-5,
  weightDecay: 0.05,
  warmup: 300,
  seed: 0,
  dim: 64,
  depth: 6,
  heads: 4,
  headDim: 16,
  mlpDim: 256,
  evalPerClass: 80,
  evalEvery: 500,
};

/** The held-out images come from another seed than any training step can reach. */
const EVAL_SEED_OFFSET = 1_000_003;

function parseOptions(argv: string[]): Options {
  const o: Options = { ...DEFAULTS };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--help') {
      const flags = Object.entries(DEFAULTS).map(
        ([k, v]) =>
          `  --${k.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase())} (default ${k === 'out' ? path.relative(process.cwd(), v as string) : v})`,
      );
      console.log(
        [
          'usage: npm run pretrain-tiny -- [options]',
          ...flags,
          "  --threads N (default: onnxruntime's, one per core)",
        ].join('\n'),
      );
      process.exit(0);
    }
    if (!a.startsWith('--') || i + 1 >= argv.length) throw new Error(`unexpected argument '${a}' (try --help)`);
    const key = a.slice(2).replace(/-([a-z])/g, (_, c: string) => c.toUpperCase()) as keyof Options;
    if (!(key in DEFAULTS) && key !== 'threads') throw new Error(`unknown option ${a}`);
    const v = argv[++i];
    (o as unknown as Record<string, unknown>)[key] = key === 'out' ? path.resolve(v) : Number(v);
  }
  return o;
}

function vitConfig(o: Options, numClasses: number): VitConfig {
  return {
    imageSize: 32,
    channels: 3,
    patchSize: 4,
    dim: o.dim,
    depth: o.depth,
    heads: o.heads,
    headDim: o.headDim,
    mlpDim: o.mlpDim,
    act: 'gelu',
    qkvBias: true,
    lnEps: 1e-6,
    numClasses,
    posGrid: 8,
    // timm's default for its own ViTs (and what loadBackbone assumes for the timm layout).
    mean: INCEPTION_MEAN,
    std: INCEPTION_STD,
  };
}

/**
 * timm/JAX-style initialisation: Xavier-uniform linears, zero biases, unit LayerNorms,
 * N(0, 0.02) position embedding and class token, LeCun-normal patch embedding, zero head.
 */
function initWeights(cfg: VitConfig, seed: number): Map<string, HostTensor> {
  const rng = mulberry32(seed);
  const normal = () => Math.sqrt(-2 * Math.log(1 - rng())) * Math.cos(2 * Math.PI * rng());
  const out = new Map<string, HostTensor>();
  for (const [name, shape] of canonicalShapes(cfg)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const d = new Float32Array(n);
    if (name === 'pos_embed' || name === 'cls_token') for (let i = 0; i < n; i++) d[i] = 0.02 * normal();
    else if (name === 'patch_embed.proj.weight') {
      const fanIn = n / shape[0];
      for (let i = 0; i < n; i++) d[i] = normal() / Math.sqrt(fanIn);
    } else if (/norm\d?\.weight$/.test(name)) d.fill(1);
    else if (name.endsWith('.weight') && name !== 'head.weight') {
      const a = Math.sqrt(6 / (shape[0] + shape[1]));
      for (let i = 0; i < n; i++) d[i] = (2 * rng() - 1) * a;
    }
    out.set(name, { dtype: 'float32', shape, data: d });
  }
  return out;
}

/** Weight decay on the matrices only (not biases, norms, class token or position embedding). */
const decays = (name: string) => name.endsWith('.weight') && !/norm\d?\.weight$/.test(name);

/** Images [B, 3, 32, 32] normalised like the ImageCache does for the PNGs (exact same pixels). */
function renderBatch(
  cfg: VitConfig,
  seed: number,
  first: number,
  n: number,
): { images: Float32Array; labels: BigInt64Array; hard: boolean[] } {
  const C = PRETRAIN_CLASSES.length;
  const S = cfg.imageSize;
  const plane = S * S;
  const images = new Float32Array(n * 3 * plane);
  const labels = new BigInt64Array(n);
  const hard: boolean[] = [];
  for (let j = 0; j < n; j++) {
    const g = first + j;
    const label = g % C;
    const r = renderSample(PRETRAIN_CLASSES[label], seed, Math.floor(g / C), { size: S });
    labels[j] = BigInt(label);
    hard.push(r.info.hard);
    const px = r.pixels;
    const o = j * 3 * plane;
    for (let i = 0; i < plane; i++)
      for (let c = 0; c < 3; c++) images[o + c * plane + i] = (px[i * 3 + c] / 255 - cfg.mean[c]) / cfg.std[c];
  }
  return { images, labels, hard };
}

function argmaxRows(logits: Float32Array, C: number, n: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    let b = 0;
    for (let c = 1; c < C; c++) if (logits[i * C + c] > logits[i * C + b]) b = c;
    out.push(b);
  }
  return out;
}

/** Held-out accuracy (all, easy, hard) of an inference session over the eval images. */
async function evaluate(
  s: Session,
  cfg: VitConfig,
  feedsOf: (images: HostTensor) => Record<string, HostTensor>,
  o: Options,
) {
  const C = PRETRAIN_CLASSES.length;
  const total = o.evalPerClass * C;
  let right = 0,
    easyRight = 0,
    easyN = 0,
    hardRight = 0,
    hardN = 0;
  for (let s0 = 0; s0 < total; s0 += 128) {
    const n = Math.min(128, total - s0);
    const b = renderBatch(cfg, o.seed + EVAL_SEED_OFFSET, s0, n);
    const r = await s.run(feedsOf({ dtype: 'float32', shape: [n, 3, cfg.imageSize, cfg.imageSize], data: b.images }), [
      'logits',
    ]);
    const pred = argmaxRows(r.logits.data as Float32Array, C, n);
    pred.forEach((p, i) => {
      const ok = BigInt(p) === b.labels[i] ? 1 : 0;
      right += ok;
      if (b.hard[i]) {
        hardRight += ok;
        hardN++;
      } else {
        easyRight += ok;
        easyN++;
      }
    });
  }
  return { all: right / total, easy: easyRight / easyN, hard: hardRight / hardN, n: total };
}

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

/** float32 -> IEEE half bits, rounding to nearest even (what torch's .half() does). */
function floatToHalf(f: number): number {
  const buf = new Float32Array([f]);
  const x = new Uint32Array(buf.buffer)[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    return sign | (half + (rem > mid || (rem === mid && half & 1) ? 1 : 0));
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half++;
  return sign | half; // a carry into the exponent is the correct rounding (up to inf)
}

function toF16(t: HostTensor): HostTensor {
  const src = t.data as Float32Array;
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = floatToHalf(src[i]);
  return { dtype: 'float16', shape: t.shape.slice(), data: out };
}

async function main(): Promise<void> {
  const o = parseOptions(process.argv.slice(2));
  const C = PRETRAIN_CLASSES.length;
  const cfg = vitConfig(o, C);
  const weights = initWeights(cfg, o.seed);
  const names = [...weights.keys()];
  const nParams = [...weights.values()].reduce((a, t) => a + t.data.length, 0);
  console.log(
    `tiny ViT: dim ${cfg.dim}, depth ${cfg.depth}, heads ${cfg.heads}x${cfg.headDim}, mlp ${cfg.mlpDim}, patch ${cfg.patchSize} @ ${cfg.imageSize}px; ${nParams} weights, all trainable`,
  );
  console.log(
    `task: ${C} classes (${PRETRAIN_CLASSES.join(', ')}); ${o.steps} steps x ${o.batch} fresh images; ${os.cpus().length} cores, load ${os.loadavg()[0].toFixed(2)}`,
  );

  // The train step: loss, logits and the gradient of every weight.
  const g = new Graph();
  const P = new VitParams(g, weights, new Set(names));
  const images = g.input('images', ['B', 3, cfg.imageSize, cfg.imageSize]);
  const labels = g.input('labels', ['B'], 'int64');
  const { logits } = vitForward(P, cfg, images);
  const loss = g.crossEntropy(logits!, labels);
  const wrt = names.map((n) => P.get(n));
  const grads = grad(loss, wrt);
  const outs: Record<string, Tensor> = { loss, logits: logits! };
  names.forEach((n, i) => (outs[`grad.${n}`] = grads[i]));
  const step = await Session.create(compile(g, outs, { name: 'tiny_vit_pretrain_step' }), { threads: o.threads });

  const params = new Map(names.map((n) => [n, weights.get(n)!.data as Float32Array]));
  const feedsOf = (imgs: HostTensor): Record<string, HostTensor> => {
    const f: Record<string, HostTensor> = { images: imgs };
    for (const n of names) f[n] = { dtype: 'float32', shape: weights.get(n)!.shape, data: params.get(n)! };
    return f;
  };
  const opt = new AdamW({ lr: o.lr, weightDecay: o.weightDecay }, decays);
  const t0 = Date.now();
  let next = renderBatch(cfg, o.seed, 0, o.batch);
  let lossAvg = NaN,
    accAvg = NaN;
  for (let s = 0; s < o.steps; s++) {
    const b = next;
    const feeds = feedsOf({ dtype: 'float32', shape: [o.batch, 3, cfg.imageSize, cfg.imageSize], data: b.images });
    feeds.labels = { dtype: 'int64', shape: [o.batch], data: b.labels };
    const running = step.run(feeds);
    // onnxruntime runs the step off the main thread: draw the next batch meanwhile.
    if (s + 1 < o.steps) next = renderBatch(cfg, o.seed, (s + 1) * o.batch, o.batch);
    const r = await running;
    const l = Number(r.loss.data[0]);
    if (!Number.isFinite(l)) throw new Error(`loss is ${l} at step ${s + 1}; lower --lr`);
    const acc =
      argmaxRows(r.logits.data as Float32Array, C, o.batch).filter((p, i) => BigInt(p) === b.labels[i]).length /
      o.batch;
    lossAvg = Number.isNaN(lossAvg) ? l : 0.98 * lossAvg + 0.02 * l;
    accAvg = Number.isNaN(accAvg) ? acc : 0.98 * accAvg + 0.02 * acc;
    opt.step(
      params,
      new Map(names.map((n) => [n, r[`grad.${n}`].data as Float32Array])),
      warmupCosine(s, o.steps, o.warmup, o.lr, o.minLr),
    );
    if ((s + 1) % 50 === 0 || s + 1 === o.steps) {
      const sec = (Date.now() - t0) / 1000;
      console.log(
        `step ${s + 1}/${o.steps}  loss ${lossAvg.toFixed(3)}  train acc ${pct(accAvg)}  ${(((s + 1) * o.batch) / sec).toFixed(0)} img/s  ${sec.toFixed(0)} s`,
      );
    }
    if ((s + 1) % o.evalEvery === 0 && s + 1 < o.steps) {
      const e = await evaluate(
        step,
        cfg,
        (imgs) => ({
          ...feedsOf(imgs),
          labels: { dtype: 'int64', shape: [imgs.shape[0]], data: new BigInt64Array(imgs.shape[0]) },
        }),
        o,
      );
      console.log(`  held-out accuracy ${pct(e.all)} (easy ${pct(e.easy)}, hard ${pct(e.hard)})`);
    }
  }
  const trainSec = (Date.now() - t0) / 1000;
  const e32 = await evaluate(
    step,
    cfg,
    (imgs) => ({
      ...feedsOf(imgs),
      labels: { dtype: 'int64', shape: [imgs.shape[0]], data: new BigInt64Array(imgs.shape[0]) },
    }),
    o,
  );
  console.log(`held-out accuracy with the F32 weights: ${pct(e32.all)} (easy ${pct(e32.easy)}, hard ${pct(e32.hard)})`);
  await step.release();

  // Save as F16 in timm's layout, then measure what `met` will actually load.
  fs.mkdirSync(path.dirname(o.out), { recursive: true });
  const f16 = new Map(
    names.map((n) => [n, toF16({ dtype: 'float32', shape: weights.get(n)!.shape, data: params.get(n)! })]),
  );
  writeSafetensors(o.out, f16, { format: 'pt', source: 'scripts/pretrain-tiny.ts', config: JSON.stringify(cfg) });
  const loaded = loadBackbone(o.out, { overrides: { heads: cfg.heads } });
  if (loaded.layout !== 'timm') throw new Error(`layout detected as ${loaded.layout}, expected timm`);
  const lc = loaded.config;
  for (const k of [
    'imageSize',
    'patchSize',
    'dim',
    'depth',
    'heads',
    'headDim',
    'mlpDim',
    'qkvBias',
    'lnEps',
    'numClasses',
  ] as const)
    if (lc[k] !== cfg[k]) throw new Error(`loadBackbone infers ${k} = ${lc[k]}, trained with ${cfg[k]}`);
  const lw = prepareWeights(lc, loaded.tensors);
  const ge = new Graph();
  const Pe = new VitParams(ge, lw);
  const ie = ge.input('images', ['B', 3, lc.imageSize, lc.imageSize]);
  const inf = await Session.create(compile(ge, { logits: vitForward(Pe, lc, ie).logits! }), { threads: o.threads });
  const e = await evaluate(inf, lc, (imgs) => ({ images: imgs }), o);
  await inf.release();
  const bytes = fs.statSync(o.out).size;
  console.log(
    `\nheld-out accuracy with the F16 weights (${e.n} images, seed ${o.seed + EVAL_SEED_OFFSET}): ${pct(e.all)} (easy ${pct(e.easy)}, hard ${pct(e.hard)})`,
  );
  console.log(`training took ${trainSec.toFixed(0)} s; wrote ${o.out} (${(bytes / 1024).toFixed(0)} KiB)`);

  const info = {
    config: cfg,
    pretraining: {
      command: `npm run pretrain-tiny${process.argv.length > 2 ? ' -- ' + process.argv.slice(2).join(' ') : ''}`,
      classes: [...PRETRAIN_CLASSES],
      steps: o.steps,
      batch: o.batch,
      images: o.steps * o.batch,
      lr: o.lr,
      minLr: o.minLr,
      weightDecay: o.weightDecay,
      warmupSteps: o.warmup,
      seed: o.seed,
      trainSeconds: Math.round(trainSec),
      cores: os.cpus().length,
      node: process.version,
      heldOut: {
        images: e.n,
        seed: o.seed + EVAL_SEED_OFFSET,
        accuracy: +e.all.toFixed(4),
        easy: +e.easy.toFixed(4),
        hard: +e.hard.toFixed(4),
        weights: 'F16 as loaded by loadBackbone',
        accuracyF32: +e32.all.toFixed(4),
      },
    },
  };
  fs.writeFileSync(path.join(path.dirname(o.out), 'config.json'), JSON.stringify(info, null, 2) + '\n');
}

main().catch((e) => {
  console.error(e instanceof Error ? (e.stack ?? e.message) : e);
  process.exit(1);
});
