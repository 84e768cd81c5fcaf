// MET parameter accounting against docs/method.md §3's table and backbone counts against the
// architecture (and the engine's canonical tensor list).

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { canonicalShapes, type VitConfig } from '../src/engine/model/config';
import {
  activeExits,
  adapterSlots,
  BACKBONE_PRESETS,
  defaultExits,
  type MetShape,
  metParams,
  vitParamCount,
} from '../src/engine/infer/params';

const VITB = BACKBONE_PRESETS['vit-b16'].params;
const base = (exits: number[], rank: number, over: Partial<MetShape> = {}): MetShape => ({
  dim: 768,
  depth: 12,
  exits,
  rank,
  classes: 100,
  eaPositions: 'both',
  variant: 'met',
  backboneParams: VITB,
  ...over,
});
const pct = (x: number) => Math.round(x * 10000) / 100;

test("docs/method.md §3 table: 3 exits after layers 10-12 (the paper's 98.48% example)", () => {
  const r8 = metParams(base([10, 11, 12], 8));
  assert.equal(r8.sum_k, 66); // 20 adapters × 3 + 2 × 2 + 2 × 1
  assert.equal(r8.independent_adapters, 811_008);
  assert.equal(r8.met_adapters, 15_888);
  assert.equal(r8.sharedProjections, 12_288); // 2·768·8
  assert.equal(r8.cores, 3_072); // 24 · 2 · 64
  assert.equal(r8.diagonals, 528); // 66 · 8
  assert.equal(pct(r8.reduction), 98.04);
  assert.equal(r8.reduction, 1 - 15_888 / 811_008);
  assert.equal(r8.reduction_limit, 1 - 1 / 66);
  assert.equal(pct(r8.reduction_limit), 98.48);
  assert.ok(Math.abs(r8.reduction_limit - 0.984848) < 1e-6);

  const r32 = metParams(base([10, 11, 12], 32));
  assert.equal(r32.independent_adapters, 3_244_032);
  assert.equal(r32.met_adapters, 100_416);
  assert.equal(pct(r32.reduction), 96.9);
});

test("docs/method.md §3 table: 7 exits after layers 6-12 (the paper's ViT-B setup)", () => {
  const rows: [number, number, number, number][] = [
    [8, 1_548_288, 16_368, 98.94],
    [16, 3_096_576, 38_880, 98.74],
    [32, 6_193_152, 102_336, 98.35],
    [64, 12_386_304, 302_976, 97.55],
  ];
  for (const [r, ind, met, red] of rows) {
    const c = metParams(base([6, 7, 8, 9, 10, 11, 12], r));
    assert.equal(c.sum_k, 126, `r=${r}`);
    assert.equal(c.independent_adapters, ind, `r=${r}`);
    assert.equal(c.met_adapters, met, `r=${r}`);
    assert.equal(pct(c.reduction), red, `r=${r}`);
    assert.equal(pct(c.reduction_limit), 99.21);
  }
});

test('heads, trainable and total; per-layer k and the adapter list', () => {
  const c = metParams(base(defaultExits(12), 8));
  assert.equal(c.heads, 7 * (768 * 100 + 100)); // 76,900 per head (docs/method.md §3: 538k for 7)
  assert.equal(c.heads, 538_300);
  assert.equal(c.trainable, 16_368 + 538_300);
  assert.equal(c.total, VITB + c.trainable);
  assert.equal(c.backbone, VITB);
  // k_l for the 7-exit ViT-B: 7 in layers 1-6, then 6, 5, 4, 3, 2, 1 (docs/method.md §1.2 table).
  assert.deepEqual(
    Array.from({ length: 12 }, (_, l) => activeExits([6, 7, 8, 9, 10, 11, 12], l + 1)),
    [7, 7, 7, 7, 7, 7, 6, 5, 4, 3, 2, 1],
  );
  assert.equal(c.adapters.length, 24);
  assert.deepEqual(c.adapters.slice(0, 4), [
    { index: 1, layer: 1, position: 'mha', k: 7 },
    { index: 2, layer: 1, position: 'mlp', k: 7 },
    { index: 3, layer: 2, position: 'mha', k: 7 },
    { index: 4, layer: 2, position: 'mlp', k: 7 },
  ]);
  assert.deepEqual(c.adapters[23], { index: 24, layer: 12, position: 'mlp', k: 1 });
  // The table rows add up.
  const sumTrain = c.components.filter((x) => x.trainable).reduce((a, b) => a + b.params, 0);
  assert.equal(sumTrain, c.trainable);
  for (const row of c.components) assert.equal(row.params, row.count * row.each, row.name);
});

test('E-adapter positions: mha-only keeps the odd indices, mlp-only the even ones', () => {
  const mha = metParams(base([10, 11, 12], 8, { eaPositions: 'mha' }));
  assert.deepEqual(
    mha.adapters.map((a) => a.index),
    [1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23],
  );
  assert.equal(mha.sum_k, 33); // 10 × 3 + 2 + 1
  assert.equal(mha.met_adapters, 12_288 + 12 * 128 + 33 * 8);
  assert.equal(mha.independent_adapters, 33 * 2 * 768 * 8);
  const mlp = metParams(base([10, 11, 12], 8, { eaPositions: 'mlp' }));
  assert.deepEqual(
    mlp.adapters.map((a) => a.index),
    [2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24],
  );
  assert.equal(mlp.met_adapters, mha.met_adapters);
});

test('variants: no_gr = met, shared_cls keeps one diagonal per adapter, linear_probe trains heads only', () => {
  const met = metParams(base([10, 11, 12], 8));
  assert.deepEqual(metParams(base([10, 11, 12], 8, { variant: 'no_gr' })), met);

  const sh = metParams(base([10, 11, 12], 8, { variant: 'shared_cls' }));
  assert.equal(sh.diagonals, 24 * 8);
  assert.equal(sh.sum_k, 24);
  assert.equal(sh.met_adapters, 12_288 + 3_072 + 192);
  assert.equal(sh.heads, met.heads);

  const lp = metParams(base([10, 11, 12], 8, { variant: 'linear_probe' }));
  assert.equal(lp.trainable, 3 * 76_900);
  assert.equal(lp.met_adapters, 0);
  assert.equal(lp.sum_k, 0);
  assert.deepEqual(lp.adapters, []);
  assert.ok(Number.isNaN(lp.reduction) && Number.isNaN(lp.reduction_limit));
  assert.deepEqual(
    lp.components.map((c) => c.name),
    ['backbone (frozen)', 'heads h_j'],
  );
});

test('exit subsets: layers after the deepest exit hold no adapters', () => {
  const slots = adapterSlots(12, [2, 5]);
  assert.equal(slots.length, 10); // layers 1..5
  assert.deepEqual(
    slots.map((s) => s.k),
    [2, 2, 2, 2, 1, 1, 1, 1, 1, 1],
  );
  const c = metParams(base([2, 5], 4, { dim: 64, classes: 1 }));
  assert.equal(c.sum_k, 14);
  assert.equal(c.met_adapters, 2 * 64 * 4 + 10 * 2 * 16 + 14 * 4);
  assert.equal(c.heads, 2 * 65); // regression heads, C = 1
  assert.throws(() => adapterSlots(12, [5, 5]), /strictly ascending/);
  assert.throws(() => adapterSlots(12, [13]), /outside 1\.\.12/);
  assert.throws(() => adapterSlots(12, []), /at least one exit/);
  assert.throws(() => metParams(base([12], 0)), /rank/);
});

test('backbone presets: exact counts, equal to the canonical tensor list', () => {
  assert.equal(BACKBONE_PRESETS['vit-b16'].params, 85_798_656);
  // timm's counts with a 1000-class head are 5,717,416 / 22,050,664 / 86,567,656 / 304,326,632.
  const withHead = (n: keyof typeof BACKBONE_PRESETS) =>
    BACKBONE_PRESETS[n].params + BACKBONE_PRESETS[n].dim * 1000 + 1000;
  assert.equal(withHead('vit-ti16'), 5_717_416);
  assert.equal(withHead('vit-s16'), 22_050_664);
  assert.equal(withHead('vit-b16'), 86_567_656);
  assert.equal(withHead('vit-l16'), 304_326_632);
  for (const p of Object.values(BACKBONE_PRESETS)) {
    const cfg: VitConfig = {
      imageSize: p.imageSize,
      channels: p.channels,
      patchSize: p.patchSize,
      dim: p.dim,
      depth: p.depth,
      heads: p.heads,
      headDim: p.dim / p.heads,
      mlpDim: p.mlpDim,
      act: 'gelu',
      qkvBias: true,
      lnEps: 1e-6,
      numClasses: 0,
      posGrid: p.imageSize / p.patchSize,
      mean: [0, 0, 0],
      std: [1, 1, 1],
    };
    let n = 0;
    for (const s of canonicalShapes(cfg).values()) n += s.reduce((a, b) => a * b, 1);
    assert.equal(p.params, n, p.name);
  }
  assert.equal(vitParamCount({ ...BACKBONE_PRESETS['vit-b16'], qkvBias: false }), 85_798_656 - 12 * 3 * 768);
});

test('defaultExits: the last 7 layers, or every layer of a shallow backbone', () => {
  assert.deepEqual(defaultExits(12), [6, 7, 8, 9, 10, 11, 12]);
  assert.deepEqual(defaultExits(24), [18, 19, 20, 21, 22, 23, 24]);
  assert.deepEqual(defaultExits(7), [1, 2, 3, 4, 5, 6, 7]);
  assert.deepEqual(defaultExits(6), [1, 2, 3, 4, 5, 6]);
  assert.deepEqual(defaultExits(1), [1]);
});
