// Op definitions: shape inference, ONNX emission and the reverse-mode gradient rule of every op,
// side by side so that each rule can be read against its forward.

import { shapeStr } from '../tensor';
import {
  broadcastShapes,
  type Dim,
  type EmitCtx,
  type GDType,
  type Graph,
  type InferResult,
  type Node,
  onnxAttr,
  type ReduceAttrs,
  registerOp,
  sameShape,
  type Shape,
  swapLastTwo,
  type Tensor,
} from './ir';

const FLOATS: GDType[] = ['float32', 'float64'];

function sameDtype(inputs: Tensor[]): GDType {
  const d = inputs[0].dtype;
  for (const t of inputs)
    if (t.dtype !== d) throw new Error(`dtype mismatch: ${inputs.map((x) => x.dtype).join(' vs ')}`);
  return d;
}

function requireFloat(t: Tensor): void {
  if (!FLOATS.includes(t.dtype)) throw new Error(`expects a float tensor, got ${t}`);
}

/**
 * Sums `dy` over the axes that broadcasting expanded, so it matches `shape` again. grad() applies
 * it to every rule's result where gradients accumulate; rules need not.
 */
export function unbroadcast(g: Graph, dy: Tensor, shape: Shape): Tensor {
  if (sameShape(dy.shape, shape)) return dy;
  const r = dy.rank;
  const lead = r - shape.length;
  const axes: number[] = [];
  for (let i = 0; i < r; i++) {
    if (i < lead) axes.push(i);
    else if (shape[i - lead] === 1 && dy.shape[i] !== 1) axes.push(i);
  }
  const red = axes.length ? g.sum(dy, axes, true) : dy;
  return sameShape(red.shape, shape) ? red : reshapeTo(g, red, shape);
}

/** Reshape to a shape that may carry symbolic dims: statically when at most one is symbolic. */
function reshapeTo(g: Graph, x: Tensor, shape: Shape, like?: Tensor): Tensor {
  const sym = shape.filter((d) => typeof d !== 'number').length;
  if (sym <= 1) return g.reshape(x, shape);
  if (!like) throw new Error(`reshape to ${shapeStr(shape)} needs a run-time shape`);
  return g.apply1('ReshapeLike', [x, like]);
}

/** Broadcasts `x` to the run-time shape of `like`. */
function expandLike(g: Graph, x: Tensor, like: Tensor): Tensor {
  if (sameShape(x.shape, like.shape)) return x;
  return g.apply1('ExpandLike', [x, like]);
}

// ---------------------------------------------------------------- elementwise binary

function binary(
  op: string,
  grad: (g: Graph, a: Tensor, b: Tensor, y: Tensor, dy: Tensor, needs: boolean[]) => (Tensor | null)[],
  onnxOp = op,
): void {
  registerOp(op, {
    infer: (ins) => [{ shape: broadcastShapes(ins[0].shape, ins[1].shape), dtype: sameDtype(ins) }],
    emit: (n, c) =>
      void c.node(
        onnxOp,
        n.inputs.map((t) => c.name(t)),
        [c.name(n.outputs[0])],
      ),
    // Gradients in the output's broadcast shape; grad() sums them back to each input's.
    grad: (g, n, [dy], needs) => grad(g, n.inputs[0], n.inputs[1], n.outputs[0], dy!, needs),
  });
}

binary('Add', (_g, _a, _b, _y, dy, nd) => [nd[0] ? dy : null, nd[1] ? dy : null]);
binary('Sub', (g, _a, _b, _y, dy, nd) => [nd[0] ? dy : null, nd[1] ? g.neg(dy) : null]);
binary('Mul', (g, a, b, _y, dy, nd) => [nd[0] ? g.mul(dy, b) : null, nd[1] ? g.mul(dy, a) : null]);
// d(a/b)/db = -a/b^2 = -y/b
binary('Div', (g, _a, b, y, dy, nd) => [nd[0] ? g.div(dy, b) : null, nd[1] ? g.neg(g.div(g.mul(dy, y), b)) : null]);
// torch.maximum's convention: where a == b each side gets half of dy.
binary(
  'Maximum',
  (g, a, b, _y, dy, nd) => {
    const zero = g.scalar(0, dy.dtype);
    const tie = g.equal(a, b);
    const half = g.mulScalar(dy, 0.5);
    return [
      nd[0] ? g.where(tie, half, g.where(g.greater(a, b), dy, zero)) : null,
      nd[1] ? g.where(tie, half, g.where(g.less(a, b), dy, zero)) : null,
    ];
  },
  'Max',
);

// ---------------------------------------------------------------- elementwise unary

function unary(
  op: string,
  grad: ((g: Graph, x: Tensor, y: Tensor, dy: Tensor) => Tensor) | null,
  onnxOp = op,
  floatOnly = true,
): void {
  registerOp(op, {
    infer: (ins) => {
      if (floatOnly) requireFloat(ins[0]);
      return [{ shape: ins[0].shape.slice(), dtype: ins[0].dtype }];
    },
    emit: (n, c) => void c.node(onnxOp, [c.name(n.inputs[0])], [c.name(n.outputs[0])]),
    grad: grad ? (g, n, [dy]) => [grad(g, n.inputs[0], n.outputs[0], dy!)] : undefined,
  });
}

unary('Neg', (g, _x, _y, dy) => g.neg(dy), 'Neg', false);
unary('Exp', (g, _x, y, dy) => g.mul(dy, y));
unary('Log', (g, x, _y, dy) => g.div(dy, x));
unary('Sqrt', (g, _x, y, dy) => g.div(g.mulScalar(dy, 0.5), y));
unary('Tanh', (g, _x, y, dy) => g.mul(dy, g.sub(g.scalar(1, y.dtype), g.mul(y, y))));
// d erf(x)/dx = 2/sqrt(pi) * exp(-x^2)
unary('Erf', (g, x, _y, dy) => g.mul(dy, g.mulScalar(g.exp(g.neg(g.mul(x, x))), 2 / Math.sqrt(Math.PI))));
unary('Sigmoid', (g, _x, y, dy) => g.mul(dy, g.mul(y, g.sub(g.scalar(1, y.dtype), y))));
unary('Relu', (g, x, _y, dy) => g.where(g.greater(x, g.scalar(0, x.dtype)), dy, g.scalar(0, dy.dtype)));
unary('Abs', (g, x, _y, dy) => g.mul(dy, g.apply1('Sign', [x])), 'Abs', false);
unary('Sign', null);

// Clamp to [min, max] (either bound optional), as ONNX Clip with the bounds as scalar inputs.
// The gradient passes where min <= x <= max (torch.clamp's convention at the bounds).
registerOp('Clamp', {
  infer: ([x]) => {
    requireFloat(x);
    return [{ shape: x.shape.slice(), dtype: x.dtype }];
  },
  emit: (n, c) => {
    const x = n.inputs[0];
    const { min, max } = n.attrs;
    const ins = [c.name(x), min === undefined ? '' : c.scalar(min, x.dtype)];
    if (max !== undefined) ins.push(c.scalar(max, x.dtype));
    c.node('Clip', ins, [c.name(n.outputs[0])]);
  },
  grad: (g, n, [dy]) => {
    const x = n.inputs[0];
    const { min, max } = n.attrs;
    let pass: Tensor | null = null;
    if (min !== undefined) pass = g.not(g.less(x, g.scalar(min, x.dtype)));
    if (max !== undefined) {
      const below = g.not(g.greater(x, g.scalar(max, x.dtype)));
      pass = pass ? g.and(pass, below) : below;
    }
    return [g.where(pass!, dy!, g.scalar(0, dy!.dtype))];
  },
});

// GELU. Exact: y = x * Phi(x), dy/dx = Phi(x) + x * phi(x).
// Tanh form: y = 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3),
//            dy/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2).
const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);
registerOp('Gelu', {
  infer: (ins) => {
    requireFloat(ins[0]);
    return [{ shape: ins[0].shape.slice(), dtype: ins[0].dtype }];
  },
  emit: (n, c) => {
    const x = c.name(n.inputs[0]);
    const y = c.name(n.outputs[0]);
    const approx = n.attrs.approximate;
    if (c.opset >= 20) {
      c.node('Gelu', [x], [y], { approximate: onnxAttr.string(approx) });
      return;
    }
    const dt = n.inputs[0].dtype;
    if (approx === 'tanh') {
      const x3 = c.node('Mul', [x, c.node('Mul', [x, x], 1)[0]], 1)[0];
      const inner = c.node(
        'Mul',
        [c.node('Add', [x, c.node('Mul', [x3, c.scalar(0.044715, dt)], 1)[0]], 1)[0], c.scalar(SQRT_2_OVER_PI, dt)],
        1,
      )[0];
      const t1 = c.node('Add', [c.node('Tanh', [inner], 1)[0], c.scalar(1, dt)], 1)[0];
      c.node('Mul', [c.node('Mul', [x, c.scalar(0.5, dt)], 1)[0], t1], [y]);
    } else {
      const e = c.node('Erf', [c.node('Div', [x, c.scalar(Math.SQRT2, dt)], 1)[0]], 1)[0];
      const t1 = c.node('Add', [e, c.scalar(1, dt)], 1)[0];
      c.node('Mul', [c.node('Mul', [x, c.scalar(0.5, dt)], 1)[0], t1], [y]);
    }
  },
  grad: (g, n, [dy]) => {
    const x = n.inputs[0];
    const dt = x.dtype;
    if (n.attrs.approximate === 'tanh') {
      const x2 = g.mul(x, x);
      const u = g.mulScalar(g.mul(x, g.addScalar(g.mulScalar(x2, 0.044715), 1)), SQRT_2_OVER_PI);
      const t = g.tanh(u);
      const du = g.mulScalar(g.addScalar(g.mulScalar(x2, 3 * 0.044715), 1), SQRT_2_OVER_PI);
      const left = g.mulScalar(g.addScalar(t, 1), 0.5);
      const right = g.mul(g.mulScalar(x, 0.5), g.mul(g.sub(g.scalar(1, dt), g.mul(t, t)), du));
      return [g.mul(dy!, g.add(left, right))];
    }
    return [g.apply1('GeluGradExact', [x, dy!])];
  },
});

// dx = dy * gelu'(x) for the exact GELU, as one IR op so that its ONNX form can be the shortest
// chain of whole-tensor passes (the MLP's [B, T, 4D] activations make each pass expensive):
//   a = x / sqrt2,  gelu'(x) = Phi(x) + x phi(x) = 0.5 (1 + erf(a) + a p),  p = (2 / sqrt(pi)) exp(-a^2)
// where exp(-a^2) scaled by 2/sqrt(pi) is exp(ln(2/sqrt(pi)) - a^2): the constant costs no pass.
// 9 passes + a scalar multiply that onnxruntime folds into the consumer MatMul (was 11 passes).
// Not differentiable again (no second-order use).
const LN_2_OVER_SQRT_PI = Math.log(2 / Math.sqrt(Math.PI));
registerOp('GeluGradExact', {
  infer: ([x, dy]) => {
    requireFloat(x);
    sameDtype([x, dy]);
    return [{ shape: broadcastShapes(x.shape, dy.shape), dtype: x.dtype }];
  },
  emit: (n, c) => {
    const dt = n.inputs[0].dtype;
    const x = c.name(n.inputs[0]);
    const dy = c.name(n.inputs[1]);
    const a = c.node('Mul', [x, c.scalar(Math.SQRT1_2, dt)], 1)[0];
    const e = c.node('Erf', [a], 1)[0];
    const a2 = c.node('Mul', [a, a], 1)[0];
    const p = c.node('Exp', [c.node('Sub', [c.scalar(LN_2_OVER_SQRT_PI, dt), a2], 1)[0]], 1)[0];
    // Two Adds rather than one 3-input Sum: onnxruntime's Sum goes through its generic broadcast
    // loop and measured slower than Add + scalar Add on [16, 203, 3072].
    const w = c.node('Add', [c.node('Add', [e, c.node('Mul', [a, p], 1)[0]], 1)[0], c.scalar(1, dt)], 1)[0];
    c.node('Mul', [c.node('Mul', [dy, w], 1)[0], c.scalar(0.5, dt)], [c.name(n.outputs[0])]);
  },
  nondiff: [0, 1],
});

// ---------------------------------------------------------------- comparisons, masks, casts

function compare(op: string): void {
  registerOp(op, {
    infer: (ins) => {
      sameDtype(ins);
      return [{ shape: broadcastShapes(ins[0].shape, ins[1].shape), dtype: 'bool' }];
    },
    emit: (n, c) =>
      void c.node(
        op,
        n.inputs.map((t) => c.name(t)),
        [c.name(n.outputs[0])],
      ),
    nondiff: [0, 1],
  });
}
compare('Equal');
compare('Less');
compare('Greater');

registerOp('And', {
  infer: (ins) => {
    if (ins.some((t) => t.dtype !== 'bool')) throw new Error('And expects bool');
    return [{ shape: broadcastShapes(ins[0].shape, ins[1].shape), dtype: 'bool' }];
  },
  emit: (n, c) =>
    void c.node(
      'And',
      n.inputs.map((t) => c.name(t)),
      [c.name(n.outputs[0])],
    ),
  nondiff: [0, 1],
});

registerOp('Not', {
  infer: (ins) => {
    if (ins[0].dtype !== 'bool') throw new Error('Not expects bool');
    return [{ shape: ins[0].shape.slice(), dtype: 'bool' }];
  },
  emit: (n, c) => void c.node('Not', [c.name(n.inputs[0])], [c.name(n.outputs[0])]),
  nondiff: [0],
});

registerOp('Where', {
  infer: ([c, a, b]) => {
    if (c.dtype !== 'bool') throw new Error('Where condition must be bool');
    sameDtype([a, b]);
    return [{ shape: broadcastShapes(c.shape, broadcastShapes(a.shape, b.shape)), dtype: a.dtype }];
  },
  emit: (n, c) =>
    void c.node(
      'Where',
      n.inputs.map((t) => c.name(t)),
      [c.name(n.outputs[0])],
    ),
  nondiff: [0],
  grad: (g, n, [dy], needs) => {
    const cond = n.inputs[0];
    const zero = g.scalar(0, dy!.dtype);
    return [null, needs[1] ? g.where(cond, dy!, zero) : null, needs[2] ? g.where(cond, zero, dy!) : null];
  },
});

const ONNX_TYPE: Record<GDType, number> = { float32: 1, float64: 11, int64: 7, bool: 9 };

registerOp('Cast', {
  infer: (ins, a) => [{ shape: ins[0].shape.slice(), dtype: a.to }],
  emit: (n, c) =>
    void c.node('Cast', [c.name(n.inputs[0])], [c.name(n.outputs[0])], { to: onnxAttr.int(ONNX_TYPE[n.attrs.to]) }),
  grad: (g, n, [dy]) => [
    FLOATS.includes(n.inputs[0].dtype) && FLOATS.includes(dy!.dtype) ? g.cast(dy!, n.inputs[0].dtype) : null,
  ],
});

registerOp('StopGradient', {
  infer: (ins) => [{ shape: ins[0].shape.slice(), dtype: ins[0].dtype }],
  emit: (n, c) => void c.node('Identity', [c.name(n.inputs[0])], [c.name(n.outputs[0])]),
  nondiff: [0],
});

// ---------------------------------------------------------------- matmul

/** [..., M, K] @ [..., K, N] (or b [..., N, K] with transB) -> [..., M, N], batch dims broadcast. */
function matmulInfer(op: string, [a, b]: Tensor[], transB: boolean): InferResult[] {
  requireFloat(a);
  sameDtype([a, b]);
  if (a.rank < 2 || b.rank < 2) throw new Error(`${op} needs rank >= 2 operands`);
  const [m, k1] = a.shape.slice(-2);
  const [k2, n] = transB ? b.shape.slice(-2).reverse() : b.shape.slice(-2);
  if (k1 !== k2) throw new Error(`inner dims differ: ${shapeStr(a.shape)} @ ${shapeStr(b.shape)}${transB ? '^T' : ''}`);
  const batch = broadcastShapes(a.shape.slice(0, -2), b.shape.slice(0, -2));
  return [{ shape: [...batch, m, n], dtype: a.dtype }];
}

/** MACs of [..., M, K] @ [..., K, N] (or b^T): numel(output)·K, with K a's last axis. */
function matmulMacs(n: Node, dim: (d: Dim) => number): number {
  const a = n.inputs[0];
  return n.outputs[0].shape.reduce<number>((p, d) => p * dim(d), 1) * dim(a.shape[a.rank - 1]);
}

registerOp('MatMul', {
  infer: (ins) => matmulInfer('MatMul', ins, false),
  macs: matmulMacs,
  emit: (n, c) =>
    void c.node(
      'MatMul',
      n.inputs.map((t) => c.name(t)),
      [c.name(n.outputs[0])],
    ),
  grad: (g, n, [dy], needs) => {
    const [a, b] = n.inputs;
    let da: Tensor | null = null;
    let db: Tensor | null = null;
    if (needs[0]) da = g.matmul(dy!, g.mT(b));
    if (needs[1]) {
      if (b.rank === 2 && a.rank > 2) {
        // A weight shared over the batch: one GEMM over the flattened rows, [K, R] @ [R, N].
        const K = a.shape[a.rank - 1];
        const N = b.shape[1];
        db = g.matmul(g.mT(g.reshape(a, [-1, K])), g.reshape(dy!, [-1, N]));
      } else {
        db = g.matmul(g.mT(a), dy!);
      }
    }
    return [da, db];
  },
});

// a @ b^T over the last two axes, b [..., n, k]: attention's Q K^T. For the CPU provider it is
// onnxruntime's FusedMatMul with transB, so no Transpose node sits between K and the matmul.
// As Transpose + MatMul, onnxruntime's transpose optimizer merges K's (B, T, H, dh) ->
// (B, H, T, dh) transpose with the last-two-axes swap into one physical (B, T, H, dh) ->
// (B, H, dh, T) transpose, about 3x slower: 35 of them took 150 ms of a 10.4 s MET step at
// batch 32 (ViT-B/16), and the step ran 2.4% faster without them (measured A/B in one process).
registerOp('MatMulNT', {
  infer: (ins) => matmulInfer('MatMulNT', ins, true),
  macs: matmulMacs,
  emit: (n, c) => {
    const [a, b] = n.inputs;
    const y = c.name(n.outputs[0]);
    // FusedMatMul has a float kernel only.
    if (c.cpuContrib && a.dtype === 'float32')
      return void c.node('FusedMatMul', [c.name(a), c.name(b)], [y], { transB: onnxAttr.int(1) }, 'com.microsoft');
    c.node(
      'MatMul',
      [c.name(a), c.node('Transpose', [c.name(b)], 1, { perm: onnxAttr.ints(swapLastTwo(b.rank)) })[0]],
      [y],
    );
  },
  grad: (g, n, [dy], needs) => {
    const [a, b] = n.inputs;
    // y = a b^T: da = dy b, db = dy^T a.
    return [needs[0] ? g.matmul(dy!, b) : null, needs[1] ? g.matmul(g.mT(dy!), a) : null];
  },
});

// ---------------------------------------------------------------- reductions

function reduceInfer(ins: Tensor[], { axes, keepdims }: ReduceAttrs): InferResult[] {
  const shape: Shape = [];
  ins[0].shape.forEach((d, i) => {
    if (!axes.includes(i)) shape.push(d);
    else if (keepdims) shape.push(1);
  });
  return [{ shape, dtype: ins[0].dtype }];
}

function emitReduce(onnxOp: string) {
  return (n: Node<ReduceAttrs>, c: EmitCtx) => {
    const { axes } = n.attrs;
    const keepdims = onnxAttr.int(n.attrs.keepdims);
    // ReduceSum takes axes as an input since opset 13, the others since opset 18.
    const axesAsInput = onnxOp === 'ReduceSum' || c.opset >= 18;
    if (axesAsInput) c.node(onnxOp, [c.name(n.inputs[0]), c.int64s(axes)], [c.name(n.outputs[0])], { keepdims });
    else c.node(onnxOp, [c.name(n.inputs[0])], [c.name(n.outputs[0])], { axes: onnxAttr.ints(axes), keepdims });
  };
}

/** The reduced gradient reshaped with kept dims, ready to broadcast against the input. */
function keepDimsGrad(g: Graph, n: Node<ReduceAttrs>, dy: Tensor): Tensor {
  if (n.attrs.keepdims) return dy;
  const { axes } = n.attrs;
  const shape: Shape = n.inputs[0].shape.map((d, i) => (axes.includes(i) ? 1 : d));
  return reshapeTo(g, dy, shape);
}

/** Number of elements reduced, as a scalar (a constant when static). */
function reducedCount(g: Graph, x: Tensor, axes: number[]): Tensor {
  let k = 1;
  for (const a of axes) {
    const d = x.shape[a];
    if (typeof d !== 'number') return g.apply1('DimSize', [x], { axes, dtype: x.dtype });
    k *= d;
  }
  return g.scalar(k, x.dtype);
}

registerOp('ReduceSum', {
  infer: reduceInfer,
  emit: emitReduce('ReduceSum'),
  grad: (g, n, [dy]) => [expandLike(g, keepDimsGrad(g, n, dy!), n.inputs[0])],
});
registerOp('ReduceMean', {
  infer: reduceInfer,
  emit: emitReduce('ReduceMean'),
  grad: (g, n, [dy]) => {
    const x = n.inputs[0];
    const scaled = g.div(keepDimsGrad(g, n, dy!), reducedCount(g, x, n.attrs.axes));
    return [expandLike(g, scaled, x)];
  },
});
registerOp('ReduceMax', {
  infer: reduceInfer,
  emit: emitReduce('ReduceMax'),
  // Ties share the gradient equally (PyTorch's amax convention).
  grad: (g, n, [dy]) => {
    const x = n.inputs[0];
    const { axes } = n.attrs;
    const m = keepDimsGrad(g, n, n.outputs[0]);
    const mask = g.cast(g.equal(x, m), x.dtype);
    const cnt = g.sum(mask, axes, true);
    return [g.mul(mask, g.div(keepDimsGrad(g, n, dy!), cnt))];
  },
});

registerOp('DimSize', {
  infer: (_ins, a) => [{ shape: [], dtype: a.dtype }],
  emit: (n, c) => {
    const shp = c.node('Shape', [c.name(n.inputs[0])], 1)[0];
    const dims = c.node('Gather', [shp, c.int64s(n.attrs.axes)], 1, { axis: onnxAttr.int(0) })[0];
    const prod = c.node('ReduceProd', [dims], 1, { keepdims: onnxAttr.int(0) })[0];
    c.node('Cast', [prod], [c.name(n.outputs[0])], { to: onnxAttr.int(ONNX_TYPE[n.attrs.dtype]) });
  },
  nondiff: [0],
});

// ---------------------------------------------------------------- softmax family and LayerNorm

registerOp('Softmax', {
  infer: (ins) => {
    requireFloat(ins[0]);
    return [{ shape: ins[0].shape.slice(), dtype: ins[0].dtype }];
  },
  emit: (n, c) =>
    void c.node('Softmax', [c.name(n.inputs[0])], [c.name(n.outputs[0])], { axis: onnxAttr.int(n.attrs.axis) }),
  // dx = y * (dy - sum(dy * y))
  grad: (g, n, [dy]) => {
    const y = n.outputs[0];
    return [g.mul(y, g.sub(dy!, g.sum(g.mul(dy!, y), [n.attrs.axis], true)))];
  },
});

registerOp('LogSoftmax', {
  infer: (ins) => {
    requireFloat(ins[0]);
    return [{ shape: ins[0].shape.slice(), dtype: ins[0].dtype }];
  },
  emit: (n, c) =>
    void c.node('LogSoftmax', [c.name(n.inputs[0])], [c.name(n.outputs[0])], { axis: onnxAttr.int(n.attrs.axis) }),
  // dx = dy - softmax(x) * sum(dy)
  grad: (g, n, [dy]) => {
    const y = n.outputs[0];
    return [g.sub(dy!, g.mul(g.exp(y), g.sum(dy!, [n.attrs.axis], true)))];
  },
});

// Outputs: y, mean [.., 1], inverse std [.., 1] (the latter two feed the gradient).
registerOp('LayerNorm', {
  macs: (n, dim, o) => (o.layerNorm ? 5 * n.inputs[0].shape.reduce<number>((p, d) => p * dim(d), 1) : 0),
  infer: ([x, gamma, beta]) => {
    requireFloat(x);
    const D = x.shape[x.rank - 1];
    if (gamma.rank !== 1 || gamma.shape[0] !== D || beta.rank !== 1 || beta.shape[0] !== D)
      throw new Error(`gamma/beta must be [${D}], got ${shapeStr(gamma.shape)} / ${shapeStr(beta.shape)}`);
    const stat = [...x.shape.slice(0, -1), 1];
    return [
      { shape: x.shape.slice(), dtype: x.dtype },
      { shape: stat, dtype: x.dtype },
      { shape: stat.slice(), dtype: x.dtype },
    ];
  },
  emit: (n, c) =>
    void c.node(
      'LayerNormalization',
      n.inputs.map((t) => c.name(t)),
      n.outputs.map((t) => c.name(t)),
      {
        axis: onnxAttr.int(-1),
        epsilon: onnxAttr.float(n.attrs.eps),
        // The mean / inverse-std outputs have the stash type; keep them in the input's precision.
        stash_type: onnxAttr.int(n.inputs[0].dtype === 'float64' ? 11 : 1),
      },
    ),
  grad: (g, n, [dy], needs) => {
    if (!dy) return [null, null, null];
    const [x, gamma] = n.inputs;
    const [, mean, invstd] = n.outputs;
    const xhat = g.mul(g.sub(x, mean), invstd);
    const lead = x.shape.slice(0, -1).map((_, i) => i);
    let dx: Tensor | null = null;
    if (needs[0]) {
      // dx = invstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), dxhat = dy * gamma
      const dxhat = g.mul(dy, gamma);
      const m1 = g.mean(dxhat, [-1], true);
      const m2 = g.mean(g.mul(dxhat, xhat), [-1], true);
      dx = g.mul(invstd, g.sub(g.sub(dxhat, m1), g.mul(xhat, m2)));
    }
    const dgamma = needs[1] ? g.sum(g.mul(dy, xhat), lead) : null;
    const dbeta = needs[2] ? g.sum(dy, lead) : null;
    return [dx, dgamma, dbeta];
  },
});

// ---------------------------------------------------------------- shape ops

function numericProduct(s: Shape): { p: number; syms: string[] } {
  let p = 1;
  const syms: string[] = [];
  for (const d of s) {
    if (typeof d === 'number') p *= d;
    else syms.push(d);
  }
  return { p, syms };
}

registerOp('Reshape', {
  infer: ([x], a) => {
    const target = a.shape;
    const free = target.filter((d) => typeof d !== 'number' || d === -1);
    if (free.length > 1) throw new Error(`reshape target ${shapeStr(target)} has more than one free dim`);
    const fixed = target.filter((d): d is number => typeof d === 'number' && d !== -1);
    if (fixed.some((d) => d <= 0)) throw new Error(`bad reshape target ${shapeStr(target)}`);
    const tp = fixed.reduce((u, v) => u * v, 1);
    const { p, syms } = numericProduct(x.shape);
    if (free.length === 0) {
      if (syms.length) throw new Error(`cannot reshape symbolic ${shapeStr(x.shape)} to static ${shapeStr(target)}`);
      if (p !== tp) throw new Error(`cannot reshape ${shapeStr(x.shape)} (${p} values) to ${shapeStr(target)}`);
      return [{ shape: target.slice(), dtype: x.dtype }];
    }
    let freeDim: Dim;
    if (typeof free[0] === 'string') freeDim = free[0];
    else if (!syms.length) {
      if (p % tp) throw new Error(`cannot reshape ${shapeStr(x.shape)} to ${shapeStr(target)}`);
      freeDim = p / tp;
    } else if (p % tp === 0) {
      freeDim = p / tp === 1 && syms.length === 1 ? syms[0] : [...syms, p / tp].filter((v) => v !== 1).join('*');
    } else throw new Error(`cannot infer the free dim of ${shapeStr(target)} from ${shapeStr(x.shape)}`);
    return [{ shape: target.map((d) => (typeof d === 'number' && d !== -1 ? d : freeDim)), dtype: x.dtype }];
  },
  emit: (n, c) => {
    const target = n.attrs.shape.map((d) => (typeof d === 'number' ? d : -1));
    c.node('Reshape', [c.name(n.inputs[0]), c.int64s(target)], [c.name(n.outputs[0])]);
  },
  grad: (g, n, [dy]) => [reshapeTo(g, dy!, n.inputs[0].shape, n.inputs[0])],
});

registerOp('ReshapeLike', {
  infer: ([x, like]) => [{ shape: like.shape.slice(), dtype: x.dtype }],
  emit: (n, c) => {
    const shp = c.node('Shape', [c.name(n.inputs[1])], 1)[0];
    c.node('Reshape', [c.name(n.inputs[0]), shp], [c.name(n.outputs[0])]);
  },
  nondiff: [1],
  grad: (g, n, [dy]) => [reshapeTo(g, dy!, n.inputs[0].shape, n.inputs[0]), null],
});

registerOp('Transpose', {
  infer: ([x], { perm }) => {
    if (perm.length !== x.rank || [...perm].sort((u, v) => u - v).some((p, i) => p !== i))
      throw new Error(`bad perm [${perm}] for rank ${x.rank}`);
    return [{ shape: perm.map((p) => x.shape[p]), dtype: x.dtype }];
  },
  emit: (n, c) =>
    void c.node('Transpose', [c.name(n.inputs[0])], [c.name(n.outputs[0])], { perm: onnxAttr.ints(n.attrs.perm) }),
  grad: (g, n, [dy]) => {
    const { perm } = n.attrs;
    const inv = new Array<number>(perm.length);
    perm.forEach((p, i) => (inv[p] = i));
    return [g.transpose(dy!, inv)];
  },
});

registerOp('Concat', {
  infer: (ins, { axis: ax }) => {
    sameDtype(ins);
    let total = 0;
    for (const t of ins) {
      if (t.rank !== ins[0].rank) throw new Error('rank mismatch');
      t.shape.forEach((d, i) => {
        if (i !== ax && d !== ins[0].shape[i])
          throw new Error(`shape mismatch ${shapeStr(t.shape)} vs ${shapeStr(ins[0].shape)}`);
      });
      const d = t.shape[ax];
      if (typeof d !== 'number') throw new Error('cannot concat along a symbolic axis');
      total += d;
    }
    const shape = ins[0].shape.slice();
    shape[ax] = total;
    return [{ shape, dtype: ins[0].dtype }];
  },
  emit: (n, c) =>
    void c.node(
      'Concat',
      n.inputs.map((t) => c.name(t)),
      [c.name(n.outputs[0])],
      { axis: onnxAttr.int(n.attrs.axis) },
    ),
  grad: (g, n, [dy], needs) => {
    const ax = n.attrs.axis;
    let off = 0;
    return n.inputs.map((t, i) => {
      const len = t.shape[ax] as number;
      const r = needs[i] ? g.slice(dy!, ax, off, off + len) : null;
      off += len;
      return r;
    });
  },
});

registerOp('Slice', {
  infer: ([x], { axis: ax, start, end }) => {
    if (!(start >= 0 && end > start && end <= (x.shape[ax] as number)))
      throw new Error(`bad slice ${start}:${end} of axis ${ax} in ${shapeStr(x.shape)}`);
    const shape = x.shape.slice();
    shape[ax] = end - start;
    return [{ shape, dtype: x.dtype }];
  },
  emit: (n, c) =>
    void c.node(
      'Slice',
      [c.name(n.inputs[0]), c.int64s([n.attrs.start]), c.int64s([n.attrs.end]), c.int64s([n.attrs.axis])],
      [c.name(n.outputs[0])],
    ),
  grad: (g, n, [dy]) => {
    const { axis, start, end } = n.attrs;
    const len = n.inputs[0].shape[axis] as number;
    return [g.pad(dy!, axis, start, len - end)];
  },
});

registerOp('Pad', {
  infer: ([x], { axis, before, after }) => {
    const d = x.shape[axis];
    if (typeof d !== 'number') throw new Error('cannot pad a symbolic axis');
    const shape = x.shape.slice();
    shape[axis] = d + before + after;
    return [{ shape, dtype: x.dtype }];
  },
  emit: (n, c) => {
    const r = n.inputs[0].rank;
    const { axis, before, after } = n.attrs;
    const pads = new Array<number>(2 * r).fill(0);
    pads[axis] = before;
    pads[r + axis] = after;
    c.node('Pad', [c.name(n.inputs[0]), c.int64s(pads)], [c.name(n.outputs[0])], { mode: onnxAttr.string('constant') });
  },
  grad: (g, n, [dy]) => {
    const { axis, before } = n.attrs;
    return [g.slice(dy!, axis, before, before + (n.inputs[0].shape[axis] as number))];
  },
});

registerOp('Gather', {
  infer: ([x, idx], { axis: ax }) => {
    if (idx.dtype !== 'int64') throw new Error('Gather indices must be int64');
    if (idx.rank > 1) throw new Error('Gather indices must be a scalar or 1-D');
    const shape = x.shape.slice();
    if (idx.rank === 0) shape.splice(ax, 1);
    else shape[ax] = idx.shape[0];
    return [{ shape, dtype: x.dtype }];
  },
  emit: (n, c) =>
    void c.node(
      'Gather',
      n.inputs.map((t) => c.name(t)),
      [c.name(n.outputs[0])],
      { axis: onnxAttr.int(n.attrs.axis) },
    ),
  nondiff: [1],
  grad: (g, n, [dy]) => {
    const [x, idx] = n.inputs;
    const ax = n.attrs.axis;
    let upd = dy!;
    let ix = idx;
    if (idx.rank === 0) {
      upd = g.unsqueeze(dy!, ax);
      ix = g.reshape(idx, [1]);
    }
    return [g.scatterAdd(x, ax, ix, upd), null];
  },
});

// zeros(shape of like); out[..., idx[j], ...] += upd[..., j, ...] along axis.
registerOp('ScatterAdd', {
  infer: ([like, idx, upd], { axis: ax }) => {
    if (idx.rank !== 1 || upd.rank !== like.rank || upd.shape[ax] !== idx.shape[0])
      throw new Error('ScatterAdd shapes');
    return [{ shape: like.shape.slice(), dtype: upd.dtype }];
  },
  emit: (n, c) => {
    const [like, idx, upd] = n.inputs;
    const ax = n.attrs.axis;
    const zeros = emitZeros(c, like, upd.dtype);
    const ishape = upd.shape.map((_, i) => (i === ax ? -1 : 1));
    const ir = c.node('Reshape', [c.name(idx), c.int64s(ishape)], 1)[0];
    const ie = c.node('Expand', [ir, c.node('Shape', [c.name(upd)], 1)[0]], 1)[0];
    c.node('ScatterElements', [zeros, ie, c.name(upd)], [c.name(n.outputs[0])], {
      axis: onnxAttr.int(ax),
      reduction: onnxAttr.string('add'),
    });
  },
  nondiff: [0, 1],
  grad: (g, n, [dy]) => [null, null, g.gather(dy!, n.attrs.axis, n.inputs[1])],
});

function emitZeros(c: EmitCtx, like: Tensor, dtype: GDType, out?: string): string {
  const shp = c.node('Shape', [c.name(like)], 1)[0];
  return c.node('ConstantOfShape', [shp], out ? [out] : 1, { value: onnxAttr.tensor(dtype, 0) })[0];
}

registerOp('ZerosLike', {
  infer: ([x]) => [{ shape: x.shape.slice(), dtype: x.dtype }],
  emit: (n, c) => void emitZeros(c, n.inputs[0], n.inputs[0].dtype, c.name(n.outputs[0])),
  nondiff: [0],
});

registerOp('Expand', {
  infer: ([x], a) => [{ shape: broadcastShapes(x.shape, a.shape), dtype: x.dtype }],
  emit: (n, c) => {
    const x = n.inputs[0];
    const target = n.attrs.shape;
    const lead = target.length - x.rank;
    const dims = target.map((d, i) => {
      if (typeof d === 'number') return d;
      // A symbolic dim the input already has: 1 broadcasts to it.
      if (i >= lead && x.shape[i - lead] === d) return 1;
      throw new Error(`Expand to symbolic dim '${d}' that the input lacks; use expandLike`);
    });
    c.node('Expand', [c.name(x), c.int64s(dims)], [c.name(n.outputs[0])]);
  },
  grad: (_g, _n, [dy]) => [dy], // summed back to the input's shape by grad()
});

registerOp('ExpandLike', {
  infer: ([x, like]) => [{ shape: broadcastShapes(x.shape, like.shape), dtype: x.dtype }],
  emit: (n, c) => {
    const shp = c.node('Shape', [c.name(n.inputs[1])], 1)[0];
    c.node('Expand', [c.name(n.inputs[0]), shp], [c.name(n.outputs[0])]);
  },
  nondiff: [1],
  grad: (_g, _n, [dy]) => [dy, null], // summed back to the input's shape by grad()
});

// Identity matrix shaped like a run-time [n, n] tensor (masks over a symbolic batch).
registerOp('EyeLike', {
  infer: ([x]) => {
    if (x.rank !== 2) throw new Error('EyeLike needs a matrix');
    return [{ shape: x.shape.slice(), dtype: x.dtype }];
  },
  emit: (n, c) => void c.node('EyeLike', [c.name(n.inputs[0])], [c.name(n.outputs[0])]),
  nondiff: [0],
});

export const OPS_LOADED = true;
