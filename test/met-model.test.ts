// MET model: identity at initialisation, graph regularization against a brute-force loop,
// shapes of the variants.

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { Graph, type Tensor } from '../src/engine/graph/ir';
import { compile } from '../src/engine/graph/onnx';
import { Session } from '../src/engine/runtime/session';
import type { VitConfig } from '../src/engine/model/config';
import { layerNorm, prepareWeights, VitParams, vitBlock, vitEmbed } from '../src/engine/model/vit';
import {
  graphRegularization,
  initMetParams,
  MET_DEFAULTS,
  type MetConfig,
  metForward,
  metLoss,
  MetTensors,
} from '../src/engine/model/met';
import { loadBackbone } from '../src/engine/weights';
import { readSafetensors } from '../src/engine/weights/safetensors';
import type { HostTensor } from '../src/engine/tensor';
import { maxAbsDiff, rng } from './helpers';

const FIX = path.join(__dirname, 'fixtures');

function backbone(): { cfg: VitConfig; w: Map<string, HostTensor>; input: HostTensor } {
  const { tensors, config } = loadBackbone(path.join(FIX, 'tv_b.safetensors'), { overrides: { heads: 4 } });
  const golden = readSafetensors(path.join(FIX, 'tv_b.golden.safetensors'));
  return { cfg: config, w: prepareWeights(config, tensors), input: golden.get('input')! };
}

/** Head inputs LN_f(cls) after each layer of the plain backbone (full computation, vit.ts). */
async function referenceFeatures(
  cfg: VitConfig,
  w: Map<string, HostTensor>,
  input: HostTensor,
): Promise<Float32Array[]> {
  const g = new Graph();
  const P = new VitParams(g, w);
  const x0 = g.input('images', ['B', cfg.channels, cfg.imageSize, cfg.imageSize]);
  let x = vitEmbed(P, cfg, x0);
  const outs: Record<string, Tensor> = {};
  for (let i = 0; i < cfg.depth; i++) {
    x = vitBlock(P, cfg, i, x);
    outs[`f${i + 1}`] = layerNorm(P, cfg, g.reshape(g.slice(x, 1, 0, 1), ['B', cfg.dim]), 'norm');
  }
  const s = await Session.create(compile(g, outs), { threads: 1 });
  const r = await s.run({ images: input });
  return Array.from({ length: cfg.depth }, (_, i) => r[`f${i + 1}`].data as Float32Array);
}

async function metFeatures(
  cfg: VitConfig,
  w: Map<string, HostTensor>,
  input: HostTensor,
  m: MetConfig,
): Promise<Float32Array[]> {
  const g = new Graph();
  const P = new VitParams(g, w);
  const T = new MetTensors(g, initMetParams(cfg, m, 3), true);
  const x = g.input('images', ['B', cfg.channels, cfg.imageSize, cfg.imageSize]);
  const f = metForward(g, P, T, cfg, m, x);
  const outs: Record<string, Tensor> = {};
  f.features.forEach((z, j) => (outs[`z${j}`] = z));
  const s = await Session.create(compile(g, outs), { threads: 1 });
  const feeds: Record<string, HostTensor> = { images: input };
  for (const n of T.inputs.keys()) feeds[n] = T.values.get(n)!;

  const r = await s.run(feeds);
  return f.features.map((_, j) => r[`z${j}`].data as Float32Array);
}

function metCfg(over: Partial<MetConfig>): MetConfig {
  return { ...MET_DEFAULTS, exits: [1, 2, 3], numClasses: 7, ...over };
}

test('identity at initialisation: every exit token equals the backbone class-token path', async () => {
  const { cfg, w, input } = backbone();
  const ref = await referenceFeatures(cfg, w, input);
  for (const over of [
    {},
    { exits: [2, 3] },
    { attnMask: 'fully_isolated' as const },
    { attnMask: 'cls_isolated' as const },
    { eaPositions: 'mlp' as const },
    { featurePath: 'deepest' as const },
    { actPosition: 'after_diag' as const },
    { eaPosition: 'pre_ln' as const },
    { variant: 'linear_probe' as const },
  ]) {
    const m = metCfg(over);
    const z = await metFeatures(cfg, w, input, m);
    m.exits.forEach((l, j) => {
      const err = maxAbsDiff(z[j], ref[l - 1]);
      assert.ok(err < 2e-5, `${JSON.stringify(over)}: exit after layer ${l} differs from the backbone by ${err}`);
    });
  }
});

test("without the exit-key bias, several identical exit tokens shift the model (docs/method.md §1.3's caveat)", async () => {
  const { cfg, w, input } = backbone();
  const ref = await referenceFeatures(cfg, w, input);
  const z = await metFeatures(cfg, w, input, metCfg({ exitKeyBias: 'none' }));
  assert.ok(maxAbsDiff(z[0], ref[0]) > 1e-3);
});

test('graph regularization equals a brute-force double loop', async () => {
  const r = rng(5);
  const B = 7;
  const D = 5;
  const C = 4;
  const labels = [0, 1, 0, 2, 1, 0, 3];
  for (const over of [
    {},
    { simClamp: 'relu' as const },
    { simClamp: 'affine' as const },
    { grSquared: false },
    { grExcludeSelf: false },
    { grForm: 'ratio' as const },
  ]) {
    const m = metCfg(over);
    const z = Float32Array.from({ length: B * D }, () => r() * 2 - 1);
    const o = Float32Array.from({ length: B * C }, () => r() * 2 - 1);
    const g = new Graph();
    const zt = g.input('z', ['B', D]);
    const ot = g.input('o', ['B', C]);
    const yt = g.input('y', ['B'], 'int64');
    const gr = graphRegularization(g, m, zt, ot, yt);
    const s = await Session.create(compile(g, { gr }), { threads: 1 });
    const res = await s.run({
      z: { dtype: 'float32', shape: [B, D], data: z },
      o: { dtype: 'float32', shape: [B, C], data: o },
      y: { dtype: 'int64', shape: [B], data: BigInt64Array.from(labels.map(BigInt)) },
    });
    // Brute force.
    const cos = (a: number, b: number) => {
      let ab = 0,
        aa = 0,
        bb = 0;
      for (let c = 0; c < C; c++) {
        ab += o[a * C + c] * o[b * C + c];
        aa += o[a * C + c] ** 2;
        bb += o[b * C + c] ** 2;
      }
      let v = ab / Math.sqrt(aa * bb);
      if (m.simClamp === 'relu') v = Math.max(0, v);
      if (m.simClamp === 'affine') v = (1 + v) / 2;
      return v;
    };
    let sw = 0,
      nw = 0,
      sb = 0,
      nb = 0;
    for (let a = 0; a < B; a++)
      for (let b = 0; b < B; b++) {
        let d2 = 0;
        for (let k = 0; k < D; k++) d2 += (z[a * D + k] - z[b * D + k]) ** 2;
        const d = m.grSquared ? d2 : Math.sqrt(d2);
        const s = cos(a, b);
        if (labels[a] === labels[b]) {
          if (a === b && m.grExcludeSelf) continue;
          sw += s * d;
          if (s !== 0) nw++;
        } else {
          sb += s * d;
          if (s !== 0) nb++;
        }
      }
    const want =
      m.grForm === 'ratio'
        ? sw / Math.max(nw, 1) / (sb / Math.max(nb, 1))
        : sw / Math.max(nw, 1) - sb / Math.max(nb, 1);
    const got = Number(res.gr.data[0]);
    assert.ok(
      Math.abs(got - want) <= 1e-4 * Math.max(1, Math.abs(want)),
      `${JSON.stringify(over)}: ${got} vs brute force ${want}`,
    );
  }
});

test('MET loss graph has the expected outputs for every variant', async () => {
  const { cfg, w, input } = backbone();
  for (const variant of ['met', 'no_gr', 'shared_cls', 'linear_probe'] as const) {
    const m = metCfg({ variant });
    const g = new Graph();
    const P = new VitParams(g, w);
    const T = new MetTensors(g, initMetParams(cfg, m, 1), true);
    const x = g.input('images', ['B', cfg.channels, cfg.imageSize, cfg.imageSize]);
    const y = g.input('labels', ['B'], 'int64');
    const f = metForward(g, P, T, cfg, m, x);
    const L = metLoss(g, m, f, y);
    assert.equal(f.logits.length, 3);
    assert.equal(L.gr.length, variant === 'met' || variant === 'shared_cls' ? 2 : 0);
    const s = await Session.create(compile(g, { loss: L.loss, l0: f.logits[0] }), { threads: 1 });
    const feeds: Record<string, HostTensor> = {
      images: input,
      labels: { dtype: 'int64', shape: [4], data: BigInt64Array.from([0n, 1n, 2n, 1n]) },
    };
    for (const n of T.inputs.keys()) feeds[n] = T.values.get(n)!;
    const r = await s.run(feeds);
    assert.deepEqual(r.l0.shape, [4, 7]);
    assert.ok(Number.isFinite(Number(r.loss.data[0])), variant);
  }
});
