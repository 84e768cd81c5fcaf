// What the IR keeps in one place: the reachability walk (Graph.ancestors) that gradients, ONNX
// emission and the MAC count share; MACs declared by the ops; ONNX attribute types declared by
// the emitters.

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { grad } from '../src/engine/graph/grad';
import { Graph, opDef, registeredOps } from '../src/engine/graph/ir';
import { compile } from '../src/engine/graph/onnx';
import { countMacs } from '../src/engine/infer/flops';
import { Session } from '../src/engine/runtime/session';

test('ancestors: the nodes an output needs, in creation order, and the tensors they read', () => {
  const g = new Graph();
  const x = g.input('x', [2, 3]);
  const w = g.tensor([3, 3], new Array(9).fill(0.5));
  const unused = g.input('unused', [2, 3]);
  const h = g.matmul(x, w); // node 0
  g.relu(unused); // node 1: not needed
  const y = g.exp(h); // node 2
  const z = g.add(y, h); // node 3
  const { nodes, tensors } = g.ancestors([z]);
  assert.deepEqual(
    nodes.map((n) => n.op),
    ['MatMul', 'Exp', 'Add'],
  );
  for (const t of [x, w, h, y, z]) assert.ok(tensors.has(t), `${t} read`);
  assert.ok(!tensors.has(unused));
  // A computed node is neither listed nor walked through.
  const rest = g.ancestors([z], new Set([h.node!]));
  assert.deepEqual(
    rest.nodes.map((n) => n.op),
    ['Exp', 'Add'],
  );
  assert.ok(!rest.tensors.has(x));
  // The compiled model holds exactly the needed nodes and initializers.
  const m = compile(g, { z });
  assert.equal(m.nodeCount, 3);
  assert.deepEqual(
    m.inputs.map((i) => i.name),
    ['x'],
  );
  const other = new Graph();
  assert.throws(() => other.ancestors([z]), /belongs to another graph/);
});

test('gradients are built only for the nodes between the requested tensors and the loss', () => {
  const g = new Graph();
  const a = g.input('a', [3]);
  const b = g.input('b', [3]);
  const side = g.exp(b); // not on the loss
  const loss = g.sumAll(g.mul(a, a));
  const before = g.nodes.length;
  const [da, db] = grad(loss, [a, b]);
  assert.ok(
    g.nodes.slice(before).every((n) => n.inputs.every((t) => t !== side)),
    'no rule reads the unused branch',
  );
  assert.equal(db.node!.op, 'ZerosLike');
  assert.notEqual(da.node!.op, 'ZerosLike');
});

test('a broadcast operand gets its gradient summed back to its shape once, where gradients accumulate', () => {
  const g = new Graph();
  const a = g.input('a', [4, 3]);
  const b = g.input('b', [3]);
  // b is broadcast by two ops: each contribution is reduced, then the two are added.
  const loss = g.sumAll(g.add(g.mul(a, b), g.where(g.greater(a, g.scalar(0)), b, g.scalar(0))));
  const [db] = grad(loss, [b]);
  assert.deepEqual(db.shape, [3]);
  const sums = g.ancestors([db]).nodes.filter((n) => n.op === 'ReduceSum');
  assert.equal(sums.length, 2, 'one reduction per broadcast use of b');
});

test('MACs are declared by the ops: matrix products (and LayerNorm on request), nothing else', () => {
  const withMacs = registeredOps().filter((op) => opDef(op).macs);
  assert.deepEqual(withMacs.sort(), ['LayerNorm', 'MatMul', 'MatMulNT']);
  const g = new Graph();
  const x = g.input('x', ['B', 4, 8]);
  const w = g.input('w', [8, 5]);
  const y = g.layerNorm(
    g.clamp(g.maximum(g.matmul(x, w), g.scalar(0)), -1, 1),
    g.input('gm', [5]),
    g.input('bt', [5]),
    1e-5,
  );
  assert.equal(countMacs([y], 3), 3 * 4 * 8 * 5);
  assert.equal(countMacs([y], 3, undefined, { layerNorm: true }), 3 * 4 * 8 * 5 + 5 * 3 * 4 * 5);
});

test('ONNX attribute types are declared: an integral LayerNorm epsilon is still a float', async () => {
  // onnxruntime rejects an INT epsilon; the writer once guessed the type from the value.
  const g = new Graph('float32');
  const x = g.input('x', [2, 4]);
  const y = g.layerNorm(x, g.tensor([4], [1, 1, 1, 1]), g.tensor([4], [0, 0, 0, 0]), 1);
  const s = await Session.create(compile(g, { y }), { threads: 1 });
  const xs = [1, 2, 3, 4, -1, 0, 1, 2];
  const r = await s.run({ x: { dtype: 'float32', shape: [2, 4], data: Float32Array.from(xs) } });
  for (let row = 0; row < 2; row++) {
    const v = xs.slice(4 * row, 4 * row + 4);
    const mean = v.reduce((p, q) => p + q, 0) / 4;
    const variance = v.reduce((p, q) => p + (q - mean) ** 2, 0) / 4;
    v.forEach((q, i) =>
      assert.ok(Math.abs((r.y.data as Float32Array)[4 * row + i] - (q - mean) / Math.sqrt(variance + 1)) < 1e-6),
    );
  }
  await s.release();
});
