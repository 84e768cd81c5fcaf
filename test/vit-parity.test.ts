// The engine's ViT against PyTorch/torchvision on committed golden fixtures
// (made by scripts/make_fixtures.py; see test/fixtures/README.md).

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { grad } from '../src/engine/graph/grad';
import { Graph, type Tensor } from '../src/engine/graph/ir';
import { compile } from '../src/engine/graph/onnx';
import { Session } from '../src/engine/runtime/session';
import type { VitConfig } from '../src/engine/model/config';
import { prepareWeights, resamplePosEmbed, VitParams, vitForward } from '../src/engine/model/vit';
import { loadBackbone } from '../src/engine/weights';
import { readSafetensors } from '../src/engine/weights/safetensors';
import type { HostTensor } from '../src/engine/tensor';
import { maxAbsDiff } from './helpers';

const FIX = path.join(__dirname, 'fixtures');

interface Sidecar {
  config: { heads: number; act: string };
}

function sidecar(name: string): Sidecar {
  return JSON.parse(fs.readFileSync(path.join(FIX, `${name}.json`), 'utf8'));
}

async function forward(cfg: VitConfig, tensors: Map<string, HostTensor>, input: HostTensor): Promise<Float32Array> {
  const g = new Graph();
  const P = new VitParams(g, prepareWeights(cfg, tensors));
  const x = g.input('images', ['B', cfg.channels, cfg.imageSize, cfg.imageSize]);
  const { logits } = vitForward(P, cfg, x);
  const s = await Session.create(compile(g, { logits: logits! }), { threads: 2 });
  const out = await s.run({ images: input });
  await s.release();
  return out.logits.data as Float32Array;
}

const CASES: { name: string; files: string[] }[] = [
  { name: 'tv_a', files: ['tv_a.pth', 'tv_a.safetensors'] },
  { name: 'tv_b', files: ['tv_b.pth', 'tv_b.safetensors'] },
  { name: 'vit_pytorch_style', files: ['vit_pytorch_style.pth'] },
  { name: 'vit_pytorch_style_rgb', files: ['vit_pytorch_style_rgb.pth'] },
];

for (const c of CASES) {
  for (const file of c.files) {
    test(`forward parity: ${file} matches PyTorch logits within 1e-4`, async () => {
      // Committed fixtures: a missing one is a failure, not a skip.
      const fixture = path.join(FIX, file);
      assert.ok(
        fs.existsSync(fixture),
        `${fixture} is missing (regenerate: /usr/bin/python3 scripts/make_fixtures.py)`,
      );
      const side = sidecar(c.name);
      const golden = readSafetensors(path.join(FIX, `${c.name}.golden.safetensors`));
      const { tensors, config } = await loadBackbone(path.join(FIX, file), {
        overrides: { heads: side.config.heads, act: side.config.act as VitConfig['act'] },
      });
      const logits = await forward(config, tensors, golden.get('input')!);
      const err = maxAbsDiff(logits, golden.get('logits')!.data as Float32Array);
      assert.ok(err <= 1e-4, `max |diff| ${err}`);
    });
  }
}

test('whole-graph gradient (ViT + cross-entropy) matches PyTorch autograd', async () => {
  for (const name of ['tv_a', 'vit_pytorch_style']) {
    const side = sidecar(name);
    const golden = readSafetensors(path.join(FIX, `${name}.golden.safetensors`));
    const { tensors, config } = await loadBackbone(path.join(FIX, `${name}.pth`), {
      overrides: { heads: side.config.heads, act: side.config.act as VitConfig['act'] },
    });
    const wanted = [
      'head.weight',
      'head.bias',
      'pos_embed',
      'cls_token',
      'blocks.0.attn.qkv.weight',
      'blocks.0.norm1.weight',
      'blocks.1.mlp.fc1.weight',
      'blocks.1.attn.proj.bias',
      'norm.weight',
      'patch_embed.proj.weight',
    ].filter((n) => tensors.has(n) && golden.has(`grad.${n}`));
    const g = new Graph();
    const P = new VitParams(g, prepareWeights(config, tensors), new Set(wanted));
    const x = g.input('images', ['B', config.channels, config.imageSize, config.imageSize]);
    const labels = g.input('labels', ['B'], 'int64');
    const { logits } = vitForward(P, config, x);
    const loss = g.crossEntropy(logits!, labels);
    const wrt: Tensor[] = [...wanted.map((n) => P.get(n)), x];
    const grads = grad(loss, wrt);
    const outs: Record<string, Tensor> = { loss };
    wanted.forEach((n, i) => (outs[`grad.${n}`] = grads[i]));
    outs['grad.input'] = grads[grads.length - 1];
    const s = await Session.create(compile(g, outs), { threads: 2 });
    const feeds: Record<string, HostTensor> = { images: golden.get('input')!, labels: golden.get('labels')! };
    for (const n of wanted) feeds[n] = tensors.get(n)!;
    const res = await s.run(feeds);
    await s.release();
    assert.ok(Math.abs((res.loss.data[0] as number) - (golden.get('loss')!.data[0] as number)) < 1e-5, `${name}: loss`);
    for (const k of [...wanted.map((n) => `grad.${n}`), 'grad.input']) {
      const want = golden.get(k)!.data as Float32Array;
      const err = maxAbsDiff(res[k].data as Float32Array, want);
      const scale = Math.max(...Array.from(want, Math.abs));
      assert.ok(err <= 1e-5 + 1e-4 * scale, `${name} ${k}: max |diff| ${err} (max |grad| ${scale})`);
    }
  }
});

test('position embedding resampling matches torch bicubic, antialiased (timm) and plain, up and down', () => {
  const f = readSafetensors(path.join(FIX, 'posresample.safetensors'));
  const src = f.get('src')!;
  // [1, 1 + 4*4, 48] -> [1, 1 + G*G, 48]; the fixture names say which F.interpolate call made them.
  const cases: [key: string, G: number, antialias: boolean][] = [
    ['dst', 6, false],
    ['dst_3x3', 3, false],
    ['dst_antialias', 6, true],
    ['dst_3x3_antialias', 3, true],
  ];
  for (const [key, G, antialias] of cases) {
    const want = f.get(key);
    assert.ok(want, `posresample.safetensors has no '${key}'`);
    const got = resamplePosEmbed(src, 4, G, antialias);
    assert.deepEqual(got.shape, want.shape, key);
    const err = maxAbsDiff(got.data as Float32Array, want.data as Float32Array);
    assert.ok(err < 1e-6, `${key}: max |diff| ${err}`);
  }
  // The two kernels differ by more than the tolerance, so each comparison can tell them apart.
  assert.ok(maxAbsDiff(f.get('dst')!.data as Float32Array, f.get('dst_antialias')!.data as Float32Array) > 1e-4);
  assert.ok(
    maxAbsDiff(f.get('dst_3x3')!.data as Float32Array, f.get('dst_3x3_antialias')!.data as Float32Array) > 1e-4,
  );
  // Loading resamples like timm: antialiased by default.
  assert.deepEqual(resamplePosEmbed(src, 4, 3).data, resamplePosEmbed(src, 4, 3, true).data);
});

test('a different image size resamples the position embedding and still runs', async () => {
  const side = sidecar('tv_a');
  const { tensors, config } = await loadBackbone(path.join(FIX, 'tv_a.safetensors'), {
    overrides: { heads: side.config.heads, imageSize: 48 },
  });
  assert.equal(config.imageSize, 48);
  const input: HostTensor = {
    dtype: 'float32',
    shape: [2, 3, 48, 48],
    data: new Float32Array(2 * 3 * 48 * 48).fill(0.1),
  };
  const logits = await forward(config, tensors, input);
  assert.equal(logits.length, 2 * 5);
  assert.ok(logits.every(Number.isFinite));
});
