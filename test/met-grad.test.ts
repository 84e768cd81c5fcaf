// The full MET loss and its gradients against PyTorch autograd of an independent, literal
// implementation of docs/method.md (scripts/met_reference.py; fixtures by
// scripts/make_met_fixtures.py), with MET's linear heads and with every exit branch type (met_branch_*: the branch's own tensors
// and their gradients too; the reference builds the branches from torch modules), and with copycat
// distillation (met_distill*: the KD terms per early exit, together with graph regularization and alone).

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { grad } from '../src/engine/graph/grad';
import { Graph, type Tensor } from '../src/engine/graph/ir';
import { compile } from '../src/engine/graph/onnx';
import { Session } from '../src/engine/runtime/session';
import { MET_DEFAULTS, type MetConfig, metForward, metLoss, MetTensors, metParamShapes } from '../src/engine/model/met';
import { upgradeMetConfig } from '../src/engine/run/config';
import { prepareWeights, VitParams } from '../src/engine/model/vit';
import { loadBackbone } from '../src/engine/weights';
import { readSafetensors } from '../src/engine/weights/safetensors';
import type { HostTensor } from '../src/engine/tensor';
import { maxAbsDiff } from './helpers';

const FIX = path.join(__dirname, 'fixtures');
const CASES = [
  'met_default',
  'met_mixed',
  'met_shared_cls',
  'met_linear_probe',
  'met_branch_mlp',
  'met_branch_slvit',
  'met_branch_conv_ignore',
  'met_branch_conv_add',
  'met_branch_conv_project',
  'met_branch_mixed',
  'met_branch_probe',
  'met_distill',
  'met_distill_alone',
];

for (const name of CASES) {
  test(`MET loss and gradients match PyTorch autograd: ${name}`, async () => {
    const file = path.join(FIX, `${name}.safetensors`);
    // Committed fixtures: a missing one is a failure, not a skip.
    assert.ok(fs.existsSync(file), `${file} is missing (regenerate: /usr/bin/python3 scripts/make_met_fixtures.py)`);
    const side = JSON.parse(fs.readFileSync(path.join(FIX, `${name}.json`), 'utf8')) as { met: Partial<MetConfig> };
    const m: MetConfig = { ...MET_DEFAULTS, exits: [], numClasses: 0, ...upgradeMetConfig(side.met) } as MetConfig;
    const gold = readSafetensors(file);
    // The branch fixtures share met_default's input and labels rather than storing them again.
    const shared = gold.has('input') ? gold : readSafetensors(path.join(FIX, 'met_default.safetensors'));
    const { tensors, config } = loadBackbone(path.join(FIX, 'tv_b.pth'), { overrides: { heads: 4 } });
    const g = new Graph();
    const P = new VitParams(g, prepareWeights(config, tensors));
    const values = new Map<string, HostTensor>();
    for (const [n, shape] of metParamShapes(config, m)) {
      const v = gold.get(n);
      assert.ok(v, `fixture lacks '${n}'`);
      assert.deepEqual(v.shape, shape, `shape of ${n}`);
      values.set(n, v);
    }
    const T = new MetTensors(g, values, true);
    const x = g.input('images', ['B', config.channels, config.imageSize, config.imageSize]);
    const y = g.input('labels', ['B'], 'int64');
    const f = metForward(g, P, T, config, m, x);
    const L = metLoss(g, m, f, y);
    const names = [...values.keys()];
    const grads = grad(
      L.loss,
      names.map((n) => T.get(n)),
    );
    const outs: Record<string, Tensor> = { loss: L.loss };
    L.ce.forEach((c, j) => (outs[`ce.${j}`] = c));
    L.gr.forEach((c, j) => (outs[`gr.${j}`] = c));
    L.kd.forEach((c, j) => (outs[`kd.${j}`] = c));
    f.logits.forEach((c, j) => (outs[`logits.${j}`] = c));
    names.forEach((n, i) => (outs[`grad.${n}`] = grads[i]));
    const s = await Session.create(compile(g, outs), { threads: 2 });
    const feeds: Record<string, HostTensor> = { images: shared.get('input')!, labels: shared.get('labels')! };
    for (const n of names) feeds[n] = values.get(n)!;
    const r = await s.run(feeds);
    await s.release();
    assert.deepEqual(r['logits.0'].shape, [6, m.numClasses]);
    for (const k of Object.keys(outs)) {
      const want = gold.get(k);
      assert.ok(want, `fixture lacks '${k}'`);
      const w = want.data as Float32Array;
      const err = maxAbsDiff(r[k].data as Float32Array, w);
      const scale = Math.max(1e-3, ...Array.from(w, Math.abs));
      assert.ok(err <= 2e-5 + 2e-4 * scale, `${name} ${k}: max |diff| ${err} (max |value| ${scale})`);
    }
  });
}
