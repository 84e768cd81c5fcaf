// MAC counting over the IR: hand-made graphs with known products, and whole ViTs built with
// the engine's own vitForward against the DyT/fvcore block formula 12·n·D² + 2·n²·D.

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { Graph, type Node } from '../src/engine/graph/ir';
import { type VitConfig, canonicalShapes } from '../src/engine/model/config';
import { VitParams, vitBlock, vitEmbed, layerNorm } from '../src/engine/model/vit';
import type { HostTensor } from '../src/engine/tensor';
import { countMacs, evalDim, macsOfNode, macsOfNodes, neededNodes } from '../src/engine/infer/flops';

test('evalDim: numbers, the batch symbol, products, named symbols', () => {
  assert.equal(evalDim(7), 7);
  assert.equal(evalDim('B'), 1);
  assert.equal(evalDim('B', 8), 8);
  assert.equal(evalDim('B*197', 4), 788);
  assert.equal(evalDim('197*B', 4), 788);
  assert.equal(evalDim('B * 3 * 2', 5), 30);
  assert.equal(evalDim('B*H', { B: 2, H: 12 }), 24);
  assert.throws(() => evalDim('T', 2), /no value for 'T'/);
  assert.throws(() => evalDim('B*H', { B: 2 }), /no value for 'H'/);
});

test('matmul MACs: plain, batched, broadcast, symbolic products; other ops are free', () => {
  const g = new Graph();
  const x = g.input('x', ['B', 3, 4]);
  const w = g.input('w', [4, 5]);
  const y = g.matmul(x, w); // B·3·4·5
  assert.equal(countMacs([y]), 60);
  assert.equal(countMacs([y], 2), 120);

  // Broadcast batch dims [2,1] x [5] → [2,5]: 10 · 3·4·6.
  const a = g.input('a', [2, 1, 3, 4]);
  const b = g.input('b', [5, 4, 6]);
  const ab = g.matmul(a, b);
  assert.deepEqual(ab.shape, [2, 5, 3, 6]);
  assert.equal(countMacs([ab]), 720);

  // A reshape to a symbolic product: ['B*3', 4] @ [4, 5] is 3B·4·5, plus the first matmul.
  const flat = g.reshape(x, [-1, 4]);
  assert.equal(flat.shape[0], 'B*3');
  const z = g.matmul(flat, w);
  assert.equal(countMacs([z], 2), 120);
  // Elementwise ops, softmax, layer norm, transposes are not counted; their matmul inputs are.
  const gamma = g.input('gamma', [5]);
  const s = g.softmax(g.layerNorm(g.relu(g.add(y, g.mT(g.mT(y)))), gamma, gamma, 1e-6), -1);
  assert.equal(countMacs([s], 2), 120);
  // ... unless fvcore's LayerNorm charge is asked for: 5 per input element.
  assert.equal(countMacs([s], 2, undefined, { layerNorm: true }), 120 + 5 * 2 * 3 * 5);

  // Two outputs sharing a subgraph count it once; unused branches are not counted.
  const y2 = g.matmul(y, g.input('v', [5, 2])); // B·3·5·2 = 30B
  g.matmul(g.input('unused', [100, 100]), g.input('unused2', [100, 100]));
  assert.equal(countMacs([y, y2]), 60 + 30);
  assert.equal(countMacs([y2, y, y2]), 90);
  assert.equal(countMacs([x]), 0); // a graph input has no producer
});

test('exclude: the incremental cost of a segment', () => {
  const g = new Graph();
  const x = g.input('x', ['B', 10, 8]);
  const h1 = g.matmul(x, g.input('w1', [8, 8])); // 640
  const h2 = g.matmul(g.relu(h1), g.input('w2', [8, 8])); // 640
  const e1 = g.matmul(h1, g.input('e1', [8, 3])); // exit after h1: 240
  const e2 = g.matmul(h2, g.input('e2', [8, 3])); // exit after h2: 240
  const seg1 = neededNodes([h1]);
  assert.equal(countMacs([e1]), 880);
  assert.equal(countMacs([e2]), 1520);
  // Given h1 already computed, reaching exit 2 costs layer 2 + its head.
  assert.equal(countMacs([e2], 1, new Set(seg1)), 880);
  assert.equal(countMacs([e1, e2], 3), 3 * (640 + 640 + 240 + 240));
  const nodes = neededNodes([e2]);
  assert.ok(
    nodes.every((n, i) => i === 0 || n.id > nodes[i - 1].id),
    'topological order',
  );
  assert.equal(macsOfNodes(nodes), 1520);
  assert.equal(macsOfNode(e1.node!), 240);
  // Excluding a node stops the walk there: its producers are not needed for it.
  const exclH2 = new Set<Node>([h2.node!]);
  assert.equal(countMacs([e2], 1, exclH2), 240);
});

// ---------------------------------------------------------------- whole ViTs

/** Zero weights sharing one buffer per shape; every tensor a graph input, so nothing is copied. */
function shapeOnlyParams(g: Graph, cfg: VitConfig): VitParams {
  const bufs = new Map<string, Float32Array>();
  const tensors = new Map<string, HostTensor>();
  for (const [name, shape] of canonicalShapes(cfg)) {
    const key = shape.join('x');
    let data = bufs.get(key);
    if (!data) bufs.set(key, (data = new Float32Array(shape.reduce((a, b) => a * b, 1))));
    tensors.set(name, { dtype: 'float32', shape, data });
  }
  return new VitParams(g, tensors, new Set(tensors.keys()));
}

function vitCfg(dim: number, depth: number, heads: number, classes: number): VitConfig {
  return {
    imageSize: 224,
    channels: 3,
    patchSize: 16,
    dim,
    depth,
    heads,
    headDim: dim / heads,
    mlpDim: 4 * dim,
    act: 'gelu',
    qkvBias: true,
    lnEps: 1e-6,
    numClasses: classes,
    posGrid: 14,
    mean: [0, 0, 0],
    std: [1, 1, 1],
  };
}

/** Builds the ViT block by block and returns the cost of each segment (embed, blocks, head). */
function vitSegments(cfg: VitConfig, batch: number) {
  const g = new Graph();
  const P = shapeOnlyParams(g, cfg);
  let x = vitEmbed(P, cfg, g.input('images', ['B', 3, 224, 224]));
  const done = new Set<Node>(neededNodes([x]));
  const embed = countMacs([x], batch);
  const blocks: number[] = [];
  for (let i = 0; i < cfg.depth; i++) {
    x = vitBlock(P, cfg, i, x);
    blocks.push(countMacs([x], batch, done));
    for (const n of neededNodes([x], done)) done.add(n);
  }
  const feats = layerNorm(P, cfg, g.reshape(g.slice(x, 1, 0, 1), ['B', cfg.dim]), 'norm');
  const logits = P.linear(feats, 'head.weight', 'head.bias');
  return {
    embed,
    blocks,
    head: countMacs([logits], batch, done),
    total: countMacs([logits], batch),
    totalLn: countMacs([logits], batch, undefined, { layerNorm: true }),
  };
}

const blockFormula = (n: number, D: number) => 12 * n * D * D + 2 * n * n * D;

test('ViT-Ti/16 graph: 12nD² + 2n²D per block, 196·768·D patch embedding, D·C head', () => {
  const D = 192;
  const C = 10;
  const s = vitSegments(vitCfg(D, 12, 3, C), 1);
  assert.equal(s.embed, 196 * 768 * D);
  for (const b of s.blocks) assert.equal(b, blockFormula(197, D));
  assert.equal(blockFormula(197, D), 102_049_152);
  assert.equal(s.head, D * C);
  assert.equal(s.total, 196 * 768 * D + 12 * blockFormula(197, D) + D * C);
  assert.equal(s.total, 1_253_493_120); // fvcore's ~1.26 G for ViT-Ti (with its LayerNorm charge)
  // 25 LayerNorms (2 per block on [197, D], the final one on the class token).
  assert.equal(s.totalLn - s.total, 5 * (24 * 197 * D + D));
  assert.equal(vitSegments(vitCfg(D, 2, 3, C), 3).total, 3 * (196 * 768 * D + 2 * blockFormula(197, D) + D * C));
});

test('ViT-B/16 graph: 1.454 GMACs per block, 17.56 G in all (17.58 G with fvcore LayerNorms)', () => {
  const s = vitSegments(vitCfg(768, 12, 12, 1000), 1);
  assert.equal(blockFormula(197, 768), 1_453_954_560);
  for (const b of s.blocks) assert.equal(b, 1_453_954_560);
  assert.equal(s.embed, 115_605_504); // docs/method.md §4.3: 0.116 G
  assert.equal(s.head, 768_000);
  assert.equal(s.total, 17_563_828_224);
  assert.equal(Math.round(s.total / 1e7) / 100, 17.56);
  assert.equal(Math.round(s.totalLn / 1e7) / 100, 17.58);
  // Cumulative cost to the end of layer 6 (exit 1 of the 7-exit setup, head excluded): 8.84 G.
  const toLayer6 = s.embed + s.blocks.slice(0, 6).reduce((a, b) => a + b, 0);
  assert.equal(Math.round(toLayer6 / 1e7) / 100, 8.84);
});
