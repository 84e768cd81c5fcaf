// The CPU train step with its backbone split into chunks of the batch (buildTrainStep's static
// batch) against the one-chunk step: the same losses (graph regularization still pairs every
// sample with every other) and the same gradients, for even and uneven chunks; plus the chunk
// rules themselves.

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { Session } from '../src/engine/runtime/session';
import { prepareWeights } from '../src/engine/model/vit';
import { initMetParams, MET_DEFAULTS, type MetConfig } from '../src/engine/model/met';
import { buildTrainStep, chunkSizes, trainChunkRows } from '../src/engine/train/trainer';
import { BACKBONE_PRESETS } from '../src/engine/infer/params';
import { loadBackbone } from '../src/engine/weights';
import { type HostTensor, numel } from '../src/engine/tensor';
import { rng } from './helpers';

const FIX = path.join(__dirname, 'fixtures');

test('chunk sizes: near-equal, none above the rows asked for, summing to the batch', () => {
  assert.deepEqual(chunkSizes(32, 8), [8, 8, 8, 8]);
  assert.deepEqual(chunkSizes(30, 8), [8, 8, 7, 7]);
  assert.deepEqual(chunkSizes(5, 2), [2, 2, 1]);
  assert.deepEqual(chunkSizes(7, 100), [7]);
  for (let b = 1; b < 40; b++)
    for (const r of [1, 3, 8]) {
      const c = chunkSizes(b, r);
      assert.equal(
        c.reduce((a, x) => a + x, 0),
        b,
      );
      assert.ok(Math.max(...c) <= r && Math.max(...c) - Math.min(...c) <= 1);
    }
});

test('chunk rows: 8 images for ViT-B/16 with 7 exits; one chunk for small models', () => {
  const met: MetConfig = { ...MET_DEFAULTS, exits: [6, 7, 8, 9, 10, 11, 12], numClasses: 100 };
  assert.equal(trainChunkRows(BACKBONE_PRESETS['vit-b16'], met), 8);
  const { config } = loadBackbone(path.join(FIX, 'tv_b.safetensors'), { overrides: { heads: 4 } });
  assert.ok(
    trainChunkRows(config, { ...met, exits: [1, 2] }) >= 64,
    'a tiny backbone is not split at usual batch sizes',
  );
});

for (const [batch, rows, variant] of [
  [6, 2, 'met'],
  [5, 2, 'met'],
  [5, 3, 'shared_cls'],
] as const) {
  test(`a step of ${batch} in chunks of at most ${rows} (${variant}) gives the one-chunk step's losses and gradients`, async () => {
    const { tensors, config: cfg } = loadBackbone(path.join(FIX, 'tv_b.safetensors'), { overrides: { heads: 4 } });
    const w = prepareWeights(cfg, tensors);
    const met: MetConfig = { ...MET_DEFAULTS, variant, exits: [1, 2, cfg.depth], rank: 4, lambda: 0.5, numClasses: 3 };
    const init = initMetParams(cfg, met, 3);
    // Move the trainables off their identity initialisation so every gradient path is live.
    const r = rng(batch * 31 + rows);
    for (const [, t] of init)
      for (let i = 0; i < t.data.length; i++) (t.data as Float32Array)[i] += 0.05 * (r() * 2 - 1);
    const feeds: Record<string, HostTensor> = {
      images: {
        dtype: 'float32',
        shape: [batch, cfg.channels, cfg.imageSize, cfg.imageSize],
        data: Float32Array.from({ length: batch * cfg.channels * cfg.imageSize ** 2 }, () => r() * 2 - 1),
      },
      labels: { dtype: 'int64', shape: [batch], data: BigInt64Array.from({ length: batch }, (_, i) => BigInt(i % 3)) },
    };
    for (const [n, t] of init) feeds[n] = t;
    const run = async (o: Parameters<typeof buildTrainStep>[4]) => {
      const step = buildTrainStep(cfg, w, met, init, o);
      const s = await Session.create(step.model, { threads: 1 });
      const out = await s.run(feeds);
      await s.release();
      return { out, chunks: step.chunks };
    };
    const one = await run({ cpuOnly: true });
    const split = await run({ cpuOnly: true, batch, chunkRows: rows });
    assert.equal(one.chunks, 1);
    assert.equal(split.chunks, Math.ceil(batch / rows));
    assert.deepEqual(Object.keys(split.out).sort(), Object.keys(one.out).sort());
    assert.ok(
      Object.keys(one.out).some((k) => k.startsWith('gr.')),
      'graph regularization is part of the loss',
    );
    for (const [k, a] of Object.entries(one.out)) {
      const b = split.out[k];
      assert.deepEqual(b.shape, a.shape, k);
      const x = a.data as Float32Array;
      const y = b.data as Float32Array;
      let scale = 0;
      for (let i = 0; i < x.length; i++) scale = Math.max(scale, Math.abs(x[i]));
      for (let i = 0; i < x.length; i++)
        assert.ok(
          Math.abs(x[i] - y[i]) <= 1e-5 + 1e-4 * scale,
          `${k}[${i}] of ${numel(a.shape)}: ${y[i]} chunked vs ${x[i]}`,
        );
    }
  });
}
