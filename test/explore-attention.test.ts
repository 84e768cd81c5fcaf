// "Explain an exit" (src/engine/explore/attention.ts): each exit token's attention over the patch
// grid, at its exit layer and as an attention rollout, computed by the engine's own graph through
// onnxruntime, against an independent PyTorch computation on the MET fixtures' weights
// (test/fixtures/met_attention.*, scripts/make_attention_fixtures.py: the reference network's
// recorded softmax outputs, the rollout carried over the full token-id space). Also: every row
// sums to 1 before it is cut to the patches, the masks show in the maps, the attention hook leaves
// the model's graph byte-identical, and inspect/attention on a trained run answers for an image
// and names a missing file, in process and over the engine's IPC (needs dist/cli.js: node esbuild.mjs).

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { AttentionModel, exitMaps, type ExitAttentionFull } from '../src/engine/explore/attention';
import { RunCache } from '../src/engine/explore/runCache';
import { computeAttention } from '../src/engine/explore/attention';
import { listImageFiles } from '../src/engine/data/files';
import { loadBatch } from '../src/engine/data/image';
import { Graph, type Tensor } from '../src/engine/graph/ir';
import { compile } from '../src/engine/graph/onnx';
import type { VitConfig } from '../src/engine/model/config';
import { MET_DEFAULTS, type MetConfig, metForward, MetTensors, metParamShapes } from '../src/engine/model/met';
import { prepareWeights, VitParams } from '../src/engine/model/vit';
import { loadRun, preprocessOf } from '../src/engine/run/run';
import { upgradeMetConfig } from '../src/engine/run/config';
import type { HostTensor } from '../src/engine/tensor';
import { loadBackbone } from '../src/engine/weights';
import { readSafetensors } from '../src/engine/weights/safetensors';
import { Engine } from './engine-ipc';
import { maxAbsDiff } from './helpers';
import { tinyRun } from './tiny-run';

const FIX = path.join(__dirname, 'fixtures');
const GOLDEN = path.join(FIX, 'met_attention.safetensors');

interface Sidecar {
  images: number[];
  grid: [number, number];
  cases: Record<string, { fixture: string; met: Partial<MetConfig> & { act?: MetConfig['adapterAct'] } }>;
}

function backbone(): { cfg: VitConfig; w: Map<string, HostTensor> } {
  const { tensors, config } = loadBackbone(path.join(FIX, 'tv_b.pth'), { overrides: { heads: 4 } });
  return { cfg: config, w: prepareWeights(config, tensors) };
}

/** Images `idx` of met_default.safetensors' input [6, 3, 24, 24], as one batch. */
function images(idx: number[]): HostTensor {
  const x = readSafetensors(path.join(FIX, 'met_default.safetensors')).get('input')!;
  const per = x.shape.slice(1).reduce((a, b) => a * b, 1);
  const data = new Float32Array(idx.length * per);
  idx.forEach((i, b) => data.set((x.data as Float32Array).subarray(i * per, (i + 1) * per), b * per));
  return { dtype: 'float32', shape: [idx.length, ...x.shape.slice(1)], data };
}

function metParams(cfg: VitConfig, m: MetConfig, fixture: string): Map<string, HostTensor> {
  const gold = readSafetensors(path.join(FIX, `${fixture}.safetensors`));
  const values = new Map<string, HostTensor>();
  for (const [n, shape] of metParamShapes(cfg, m)) {
    const v = gold.get(n);
    assert.ok(v, `${fixture}.safetensors lacks '${n}'`);
    assert.deepEqual(v.shape, shape, `shape of ${n}`);
    values.set(n, v);
  }
  return values;
}

const sum = (a: Float32Array) => a.reduce((s, v) => s + v, 0);

test('attention maps equal PyTorch on the MET fixtures (last layer and rollout, every exit, masks, shared_cls, linear probe)', async () => {
  // Committed fixtures: a missing one is a failure, not a skip.
  assert.ok(
    fs.existsSync(GOLDEN),
    `${GOLDEN} is missing (regenerate: /usr/bin/python3 scripts/make_attention_fixtures.py)`,
  );
  const side = JSON.parse(fs.readFileSync(path.join(FIX, 'met_attention.json'), 'utf8')) as Sidecar;
  const gold = readSafetensors(GOLDEN);
  const { cfg, w } = backbone();
  const N = side.grid[0] * side.grid[1];
  assert.equal(N, (cfg.imageSize / cfg.patchSize) ** 2);
  const x = images(side.images);
  const names = Object.keys(side.cases);
  assert.ok(names.includes('default') && names.includes('shared_cls') && names.includes('cls_isolated'));
  let worst = 0;
  let compared = 0;
  for (const name of names) {
    const c = side.cases[name];
    const m: MetConfig = { ...MET_DEFAULTS, exits: [], numClasses: 0, ...upgradeMetConfig(c.met) } as MetConfig;
    const model = await AttentionModel.create(cfg, m, w, metParams(cfg, m, c.fixture), { threads: 1 });
    const layers = await model.run(x);
    await model.release();
    // The last exit's layer is pruned to its exit token's query (the engine's forward); the
    // others hold every query.
    assert.equal(layers.length, m.exits[m.exits.length - 1]);
    side.images.forEach((img, b) => {
      const maps: ExitAttentionFull[] = exitMaps(m, layers, N, b);
      assert.deepEqual(
        maps.map((e) => e.layer),
        m.exits,
        `${name}: one map per exit`,
      );
      for (const e of maps) {
        const at = `${name}, image ${img}, exit ${e.exit + 1} (layer ${e.layer})`;
        for (const key of ['last', 'rollout', 'lastTokens', 'rolloutTokens'] as const) {
          const ref = gold.get(`${name}.${img}.${e.exit}.${key.replace('Tokens', '_tokens')}`);
          assert.ok(ref, `golden lacks ${name}.${img}.${e.exit}.${key}`);
          const d = maxAbsDiff(e[key], ref.data as Float32Array);
          worst = Math.max(worst, d);
          compared += ref.data.length;
          assert.ok(d < 1e-5, `${at}: ${key} differs from PyTorch by ${d}`);
        }
        // Each row is a distribution over all its columns before it is cut to the patches.
        assert.ok(Math.abs(sum(e.last) + sum(e.lastTokens) - 1) < 1e-5, `${at}: last-layer row sums to 1`);
        assert.ok(Math.abs(sum(e.rollout) + sum(e.rolloutTokens) - 1) < 1e-5, `${at}: rollout row sums to 1`);
        assert.ok(
          [...e.last, ...e.rollout].every((v) => v >= 0 && v <= 1),
          `${at}: values in [0, 1]`,
        );
        // Not a flat map: the test would pass trivially on uniform attention.
        assert.ok(Math.max(...e.last) - Math.min(...e.last) > 1e-3, `${at}: the last-layer map varies`);
        // The masks are in the probabilities: an isolated exit token attends to no other exit token.
        if (m.attnMask !== 'none')
          assert.ok(
            e.lastTokens.subarray(1).every((v) => v === 0),
            `${at}: ${m.attnMask} exit token attends to other exit tokens (${[...e.lastTokens]})`,
          );
        // The exit tokens that entered layer 1: K of them (1 for a linear probe).
        assert.equal(e.rolloutTokens.length, m.variant === 'linear_probe' ? 1 : m.exits.length);
      }
    });
  }
  console.log(
    `attention maps vs PyTorch: ${compared} values of ${names.length} cases, max |diff| ${worst.toExponential(1)}`,
  );
});

test('the attention hook leaves the model graph byte-identical', () => {
  const { cfg, w } = backbone();
  const side = JSON.parse(fs.readFileSync(path.join(FIX, 'met_attention.json'), 'utf8')) as Sidecar;
  const c = side.cases.default;
  const m: MetConfig = { ...MET_DEFAULTS, exits: [], numClasses: 0, ...upgradeMetConfig(c.met) } as MetConfig;
  const params = metParams(cfg, m, c.fixture);
  const build = (hook: boolean) => {
    const g = new Graph();
    const P = new VitParams(g, w);
    const T = new MetTensors(g, params, false);
    const x = g.input('images', ['B', cfg.channels, cfg.imageSize, cfg.imageSize]);
    let seen = 0;
    const f = metForward(g, P, T, cfg, m, x, hook ? { attention: () => void seen++ } : undefined);
    const outs: Record<string, Tensor> = {};
    f.logits.forEach((l, j) => (outs[`logits_${j}`] = l));
    return { bytes: compile(g, outs, { name: 'met' }).bytes, seen };
  };
  const plain = build(false);
  const hooked = build(true);
  assert.equal(hooked.seen, m.exits[m.exits.length - 1], 'the hook sees every layer run');
  assert.ok(Buffer.from(plain.bytes).equals(Buffer.from(hooked.bytes)), 'same ONNX bytes with and without the hook');
});

test('inspect/attention on a trained run: the maps of one image, and a missing file named in the error', async () => {
  const t = await tinyRun();
  const { files } = await listImageFiles([t.data]);
  const cache = new RunCache();
  try {
    const r = await computeAttention(cache, { runDir: t.run, file: files[0] }, { threads: 1 });
    const { cf, vit, backbone: bb, params } = loadRun(t.run);
    const G = vit.imageSize / vit.patchSize;
    assert.deepEqual(r.grid, [G, G]);
    assert.equal(r.size, vit.imageSize);
    assert.equal(r.image.length, vit.imageSize ** 2 * 4);
    assert.deepEqual(
      r.exits.map((e) => [e.exit, e.layer]),
      cf.met.exits.map((l, j) => [j, l]),
    );
    // The same numbers as the engine module run directly on the preprocessed image.
    const b = await loadBatch([files[0]], preprocessOf(cf.train, vit));
    const model = await AttentionModel.create(vit, cf.met, bb, params, { threads: 1 });
    const direct = await model.maps({
      dtype: 'float32',
      shape: [1, vit.channels, vit.imageSize, vit.imageSize],
      data: b.data,
    });
    await model.release();
    r.exits.forEach((e, j) => {
      assert.equal(e.last.length, G * G);
      assert.deepEqual([...e.last], [...direct[j].last], `exit ${j + 1}: last`);
      assert.deepEqual([...e.rollout], [...direct[j].rollout], `exit ${j + 1}: rollout`);
      // Patch columns only: at most 1, the rest is on the exit tokens.
      assert.ok(sum(e.last) <= 1 + 1e-5 && sum(e.rollout) <= 1 + 1e-5 && sum(e.rollout) > 0);
    });
    const missing = path.join(t.root, 'no-such-image.png');
    await assert.rejects(
      computeAttention(cache, { runDir: t.run, file: missing }),
      (e: Error) => e.name === 'UserError' && e.message.includes(missing) && /not found/.test(e.message),
    );
    await assert.rejects(
      computeAttention(cache, { runDir: t.run, file: '' }),
      (e: Error) => e.name === 'UserError' && /file/.test(e.message),
    );
    const noRun = path.join(t.root, 'no-such-run');
    await assert.rejects(computeAttention(cache, { runDir: noRun, file: files[0] }), (e: Error) =>
      e.message.includes(noRun),
    );
  } finally {
    await cache.clear();
  }
});

test('inspect/attention over IPC: typed arrays, the in-process numbers, errors that name the file or field', async () => {
  const t = await tinyRun();
  const { files } = await listImageFiles([t.data]);
  const cache = new RunCache();
  const local = await computeAttention(cache, { runDir: t.run, file: files[1] });
  await cache.clear();
  const e = new Engine(t.root);
  await e.ready;
  try {
    const r = await e.request('inspect/attention', { runDir: t.run, file: files[1] });
    assert.ok(r.image instanceof Uint8Array, 'image arrives as a Uint8Array');
    assert.deepEqual(r.grid, local.grid);
    r.exits.forEach((x, j) => {
      assert.ok(x.last instanceof Float32Array && x.rollout instanceof Float32Array);
      assert.ok(maxAbsDiff(x.last, local.exits[j].last) <= 1e-6, `exit ${j + 1}: last`);
      assert.ok(maxAbsDiff(x.rollout, local.exits[j].rollout) <= 1e-6, `exit ${j + 1}: rollout`);
    });
    const missing = path.join(t.root, 'gone.png');
    await assert.rejects(
      e.request('inspect/attention', { runDir: t.run, file: missing }),
      (err: Error & { stack?: string }) => err.name === 'UserError' && err.message === `${missing}: file not found`,
    );
    await assert.rejects(
      e.request('inspect/attention', { runDir: t.run } as never),
      (err: Error & { field?: string }) => err.name === 'ProtocolError' && err.field === 'file',
    );
    assert.deepEqual(await e.request('engine/shutdown', {}), { ok: true });
  } finally {
    if (e.child.exitCode === null) e.child.kill();
  }
});
