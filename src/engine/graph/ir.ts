// The tensor IR: a graph of typed nodes with static shapes (string dims are symbolic, e.g. the
// batch 'B'). Computations are described once here; grad.ts differentiates them into more nodes
// of the same IR, and onnx.ts writes the whole thing as an ONNX model for onnxruntime.
//
// Frozen weights are constants (ONNX initializers); trainable tensors and data are graph inputs.

import { type HostTensor, numel, shapeStr } from '../tensor';

export type Dim = number | string;
export type Shape = Dim[];
export type GDType = 'float32' | 'float64' | 'int64' | 'bool';

/**
 * Each op's attributes, by op name: what Graph.apply takes and what an op's rules read, typed
 * (ops not listed take none). Axes are normalised (non-negative) by the builders.
 */
export type AttrMap = {
  ReduceSum: ReduceAttrs;
  ReduceMean: ReduceAttrs;
  ReduceMax: ReduceAttrs;
  Softmax: AxisAttrs;
  LogSoftmax: AxisAttrs;
  Concat: AxisAttrs;
  Gather: AxisAttrs;
  ScatterAdd: AxisAttrs;
  LayerNorm: { eps: number };
  Gelu: { approximate: 'none' | 'tanh' };
  Cast: { to: GDType };
  /** At most one entry non-numeric (-1 or a symbolic dim name), like ONNX's -1. */
  Reshape: { shape: Shape };
  Expand: { shape: Shape };
  Transpose: { perm: number[] };
  Slice: { axis: number; start: number; end: number };
  Pad: { axis: number; before: number; after: number };
  DimSize: { axes: number[]; dtype: GDType };
  /** Either bound may be absent (one-sided clamp). */
  Clamp: { min?: number; max?: number };
};
export type ReduceAttrs = { axes: number[]; keepdims: boolean };
export type AxisAttrs = { axis: number };
export type NoAttrs = Record<string, never>;
/** The attributes of op `K`. */
export type AttrsOf<K extends string> = K extends keyof AttrMap ? AttrMap[K] : NoAttrs;
/** Any op's attributes (a node seen without knowing its op). */
export type Attrs = Readonly<Record<string, unknown>>;

/**
 * An ONNX attribute with its declared type (AttributeProto.type): an emitter says which type
 * each attribute has rather than the writer guessing it from the value or the name.
 */
export type OnnxAttr =
  | { int: number }
  | { float: number }
  | { string: string }
  | { ints: readonly number[] }
  | { tensor: { dtype: GDType; value: number } };
export const onnxAttr = {
  int: (v: number | boolean): OnnxAttr => ({ int: Number(v) }),
  float: (v: number): OnnxAttr => ({ float: v }),
  string: (v: string): OnnxAttr => ({ string: v }),
  ints: (v: readonly number[]): OnnxAttr => ({ ints: v }),
  tensor: (dtype: GDType, value: number): OnnxAttr => ({ tensor: { dtype, value } }),
};

export class Tensor {
  constructor(
    readonly graph: Graph,
    readonly id: number,
    readonly shape: Shape,
    readonly dtype: GDType,
    /** Producing node; null for inputs and constants. */
    readonly node: Node | null,
    readonly outIndex: number,
    public name?: string,
  ) {}

  get rank(): number {
    return this.shape.length;
  }

  toString(): string {
    return `${this.name ?? 't' + this.id}:${this.dtype}${shapeStr(this.shape)}`;
  }
}

export interface Node<A extends Attrs = Attrs> {
  id: number;
  op: string;
  inputs: Tensor[];
  attrs: A;
  outputs: Tensor[];
}

export interface InferResult {
  shape: Shape;
  dtype: GDType;
}

/** What an op's ONNX emitter can do. */
export interface EmitCtx {
  name(t: Tensor): string;
  /** Adds an ONNX node; returns its first output name. Extra outputs may be named explicitly. */
  node(
    opType: string,
    inputs: string[],
    outputs: string[] | number,
    attrs?: Readonly<Record<string, OnnxAttr | undefined>>,
    domain?: string,
  ): string[];
  int64s(vals: readonly number[]): string;
  scalar(v: number, dtype: GDType): string;
  opset: number;
  /** CompileOptions.cpuContribOps: onnxruntime CPU contrib ops may be emitted. */
  cpuContrib: boolean;
}

/** Options of the multiply-accumulate count (infer/flops.ts). */
export interface MacOptions {
  /** Charge fvcore's 5 FLOPs per LayerNorm input element (affine). Default false. */
  layerNorm?: boolean;
}

export interface OpDef<A extends Attrs = Attrs> {
  infer(inputs: Tensor[], attrs: A): InferResult[];
  emit(node: Node<A>, ctx: EmitCtx): void;
  /**
   * Reverse-mode rule: given the gradients of the outputs (null where none flows), returns the
   * gradients of the inputs for which needs[i] is true (null elsewhere). Rules build their
   * result with the same IR, so gradients are graphs themselves. A gradient may keep the
   * broadcast shape of the output: grad() sums it back to its input's shape (unbroadcast) where
   * it accumulates the gradients, once for every rule.
   */
  grad?(g: Graph, node: Node<A>, dOut: (Tensor | null)[], needs: boolean[]): (Tensor | null)[];
  /** Inputs that never carry gradients (indices, labels, masks). */
  nondiff?: number[];
  /**
   * Multiply-accumulates of one run of the node (infer/flops.ts; docs/method.md §4.3: matrix
   * products only, so absent = 0). `dim` gives a dim's value at the batch size being counted.
   */
  macs?(node: Node<A>, dim: (d: Dim) => number, opts: MacOptions): number;
}

const OPS = new Map<string, OpDef>();

export function registerOp<K extends string>(name: K, def: OpDef<AttrsOf<K>>): void {
  OPS.set(name, def as unknown as OpDef);
}

export function opDef(name: string): OpDef {
  const d = OPS.get(name);
  if (!d) throw new Error(`unknown op '${name}'`);
  return d;
}

export function registeredOps(): string[] {
  return [...OPS.keys()];
}

export class Graph {
  readonly nodes: Node[] = [];
  readonly inputs: Tensor[] = [];
  /** Constant tensors (initializers) and their host data. */
  readonly consts = new Map<Tensor, HostTensor>();
  private nextId = 0;
  private names = new Set<string>();

  constructor(readonly dtype: GDType = 'float32') {}

  private uniqueName(base: string): string {
    let n = base;
    let k = 1;
    while (this.names.has(n)) n = `${base}_${k++}`;
    this.names.add(n);
    return n;
  }

  /** A graph input fed at run time (data, labels, trainable tensors). */
  input(name: string, shape: Shape, dtype: GDType = this.dtype): Tensor {
    if (this.names.has(name)) throw new Error(`duplicate tensor name '${name}'`);
    this.names.add(name);
    const t = new Tensor(this, this.nextId++, shape.slice(), dtype, null, 0, name);
    this.inputs.push(t);
    return t;
  }

  /** A constant tensor stored in the model (frozen weights). */
  constant(data: HostTensor, name?: string): Tensor {
    const dtype = data.dtype as GDType;
    if (!['float32', 'float64', 'int64', 'bool'].includes(dtype))
      throw new Error(`constant: unsupported dtype ${data.dtype}`);
    if (data.data.length !== numel(data.shape))
      throw new Error(`constant ${name ?? ''}: ${data.data.length} values for shape ${shapeStr(data.shape)}`);
    const t = new Tensor(
      this,
      this.nextId++,
      data.shape.slice(),
      dtype,
      null,
      0,
      this.uniqueName(name ?? `c${this.nextId}`),
    );
    this.consts.set(t, data);
    return t;
  }

  scalar(v: number, dtype: GDType = this.dtype): Tensor {
    return this.constant(hostScalar(v, dtype));
  }

  /** A constant filled from numbers in the graph's float dtype (or int64 when asked). */
  tensor(shape: number[], values: ArrayLike<number>, dtype: GDType = this.dtype): Tensor {
    return this.constant(hostFrom(shape, values, dtype));
  }

  isConst(t: Tensor): boolean {
    return this.consts.has(t);
  }

  apply<K extends string>(op: K, inputs: Tensor[], ...a: AttrArg<K>): Tensor[] {
    const attrs: Attrs = a[0] ?? {};
    const def = opDef(op);
    for (const x of inputs) if (x.graph !== this) throw new Error(`${op}: input ${x} belongs to another graph`);
    let res: InferResult[];
    try {
      res = def.infer(inputs, attrs);
    } catch (e) {
      throw new Error(`${op}(${inputs.map(String).join(', ')}): ${(e as Error).message}`);
    }
    const node: Node = { id: this.nodes.length, op, inputs, attrs, outputs: [] };
    node.outputs = res.map((r, i) => new Tensor(this, this.nextId++, r.shape, r.dtype, node, i));
    this.nodes.push(node);
    return node.outputs;
  }

  apply1<K extends string>(op: K, inputs: Tensor[], ...a: AttrArg<K>): Tensor {
    return this.apply(op, inputs, ...a)[0];
  }

  /**
   * The nodes needed to compute `outputs`, each once, in creation (topological) order, and the
   * tensors they read (with `outputs` themselves). Nodes in `computed` count as already
   * computed: they are left out and the walk does not go through them. The one backward
   * reachability walk of the IR: gradients, ONNX emission and the MAC count all use it.
   */
  ancestors(outputs: readonly Tensor[], computed?: ReadonlySet<Node>): { nodes: Node[]; tensors: Set<Tensor> } {
    const tensors = new Set<Tensor>(outputs);
    const seen = new Array<boolean>(this.nodes.length).fill(false);
    const stack: Node[] = [];
    const push = (t: Tensor) => {
      const n = t.node;
      if (n && !seen[n.id] && !computed?.has(n)) {
        if (n.outputs[0]?.graph !== this) throw new Error(`ancestors: ${t} belongs to another graph`);
        seen[n.id] = true;
        stack.push(n);
      }
    };
    outputs.forEach(push);
    // Iterative, since backward graphs are deep enough to make recursion fragile.
    while (stack.length)
      for (const t of stack.pop()!.inputs) {
        tensors.add(t);
        push(t);
      }
    // Node ids are positions in `nodes`, given when a node is created after its inputs.
    return { nodes: this.nodes.filter((n) => seen[n.id]), tensors };
  }

  // ---- elementwise (numpy broadcasting) ----
  add(a: Tensor, b: Tensor): Tensor {
    return this.apply1('Add', [a, b]);
  }
  sub(a: Tensor, b: Tensor): Tensor {
    return this.apply1('Sub', [a, b]);
  }
  mul(a: Tensor, b: Tensor): Tensor {
    return this.apply1('Mul', [a, b]);
  }
  div(a: Tensor, b: Tensor): Tensor {
    return this.apply1('Div', [a, b]);
  }
  neg(a: Tensor): Tensor {
    return this.apply1('Neg', [a]);
  }
  exp(a: Tensor): Tensor {
    return this.apply1('Exp', [a]);
  }
  log(a: Tensor): Tensor {
    return this.apply1('Log', [a]);
  }
  sqrt(a: Tensor): Tensor {
    return this.apply1('Sqrt', [a]);
  }
  tanh(a: Tensor): Tensor {
    return this.apply1('Tanh', [a]);
  }
  erf(a: Tensor): Tensor {
    return this.apply1('Erf', [a]);
  }
  sigmoid(a: Tensor): Tensor {
    return this.apply1('Sigmoid', [a]);
  }
  relu(a: Tensor): Tensor {
    return this.apply1('Relu', [a]);
  }
  abs(a: Tensor): Tensor {
    return this.apply1('Abs', [a]);
  }
  /** Elementwise max(a, b) with broadcasting (torch.maximum: a tie splits the gradient in half). */
  maximum(a: Tensor, b: Tensor): Tensor {
    return this.apply1('Maximum', [a, b]);
  }
  /** min(max(a, lo), hi), either bound optional (torch.clamp: the gradient passes where lo <= a <= hi). */
  clamp(a: Tensor, lo?: number, hi?: number): Tensor {
    if (lo === undefined && hi === undefined) return a;
    if (lo !== undefined && hi !== undefined && lo > hi) throw new Error(`clamp: min ${lo} > max ${hi}`);
    return this.apply1('Clamp', [a], { min: lo, max: hi });
  }
  /** GELU; approximate 'none' is the exact erf form, 'tanh' the tanh approximation. */
  gelu(a: Tensor, approximate: 'none' | 'tanh' = 'none'): Tensor {
    return this.apply1('Gelu', [a], { approximate });
  }
  square(a: Tensor): Tensor {
    return this.mul(a, a);
  }
  addScalar(a: Tensor, v: number): Tensor {
    return this.add(a, this.scalar(v, a.dtype));
  }
  mulScalar(a: Tensor, v: number): Tensor {
    return this.mul(a, this.scalar(v, a.dtype));
  }

  // ---- comparisons and masks (no gradients) ----
  equal(a: Tensor, b: Tensor): Tensor {
    return this.apply1('Equal', [a, b]);
  }
  less(a: Tensor, b: Tensor): Tensor {
    return this.apply1('Less', [a, b]);
  }
  greater(a: Tensor, b: Tensor): Tensor {
    return this.apply1('Greater', [a, b]);
  }
  not(a: Tensor): Tensor {
    return this.apply1('Not', [a]);
  }
  and(a: Tensor, b: Tensor): Tensor {
    return this.apply1('And', [a, b]);
  }
  where(cond: Tensor, a: Tensor, b: Tensor): Tensor {
    return this.apply1('Where', [cond, a, b]);
  }
  cast(a: Tensor, to: GDType): Tensor {
    return a.dtype === to ? a : this.apply1('Cast', [a], { to });
  }
  /** Cuts the gradient path: the value passes, no gradient flows back (torch's .detach()). */
  stopGradient(a: Tensor): Tensor {
    return this.apply1('StopGradient', [a]);
  }

  // ---- linear algebra ----
  /** Batched matmul with numpy broadcasting over leading dims: [..., M, K] @ [..., K, N]. */
  matmul(a: Tensor, b: Tensor): Tensor {
    return this.apply1('MatMul', [a, b]);
  }
  /** a @ b^T (last two axes of b swapped), without a Transpose node. */
  matmulNT(a: Tensor, b: Tensor): Tensor {
    return this.apply1('MatMulNT', [a, b]);
  }

  // ---- reductions ----
  sum(a: Tensor, axes: number[], keepdims = false): Tensor {
    return this.apply1('ReduceSum', [a], { axes: normAxes(axes, a.rank), keepdims });
  }
  mean(a: Tensor, axes: number[], keepdims = false): Tensor {
    return this.apply1('ReduceMean', [a], { axes: normAxes(axes, a.rank), keepdims });
  }
  max(a: Tensor, axes: number[], keepdims = false): Tensor {
    return this.apply1('ReduceMax', [a], { axes: normAxes(axes, a.rank), keepdims });
  }
  sumAll(a: Tensor): Tensor {
    return this.sum(
      a,
      a.shape.map((_, i) => i),
    );
  }
  meanAll(a: Tensor): Tensor {
    return this.mean(
      a,
      a.shape.map((_, i) => i),
    );
  }

  // ---- normalisation and activations over an axis ----
  softmax(a: Tensor, axis = -1): Tensor {
    return this.apply1('Softmax', [a], { axis: normAxis(axis, a.rank) });
  }
  logSoftmax(a: Tensor, axis = -1): Tensor {
    return this.apply1('LogSoftmax', [a], { axis: normAxis(axis, a.rank) });
  }
  /** LayerNorm over the last axis with affine gamma/beta [D]. */
  layerNorm(x: Tensor, gamma: Tensor, beta: Tensor, eps: number): Tensor {
    return this.apply('LayerNorm', [x, gamma, beta], { eps })[0];
  }

  // ---- shape ----
  /** Reshape; at most one entry may be non-numeric (-1 or a symbolic dim name), like ONNX -1. */
  reshape(a: Tensor, shape: Shape): Tensor {
    return this.apply1('Reshape', [a], { shape: shape.slice() });
  }
  transpose(a: Tensor, perm: number[]): Tensor {
    return this.apply1('Transpose', [a], { perm });
  }
  /** Swaps the last two axes. */
  mT(a: Tensor): Tensor {
    return this.transpose(a, swapLastTwo(a.rank));
  }
  concat(xs: Tensor[], axis: number): Tensor {
    return this.apply1('Concat', xs, { axis: normAxis(axis, xs[0].rank) });
  }
  slice(a: Tensor, axis: number, start: number, end: number): Tensor {
    const ax = normAxis(axis, a.rank);
    const n = a.shape[ax];
    if (typeof n !== 'number') throw new Error(`slice: axis ${ax} of ${a} is symbolic`);
    if (start < 0) start += n;
    if (end < 0) end += n;
    return this.apply1('Slice', [a], { axis: ax, start, end: Math.min(end, n) });
  }
  /** Gathers along `axis` with a 1-D int64 index tensor (constant or computed). */
  gather(a: Tensor, axis: number, indices: Tensor): Tensor {
    return this.apply1('Gather', [a, indices], { axis: normAxis(axis, a.rank) });
  }
  /** Broadcasts to `shape` (numpy rules). */
  expand(a: Tensor, shape: Shape): Tensor {
    return this.apply1('Expand', [a], { shape: shape.slice() });
  }
  unsqueeze(a: Tensor, axis: number): Tensor {
    const s = a.shape.slice();
    s.splice(axis < 0 ? axis + a.rank + 1 : axis, 0, 1);
    return this.reshape(a, s);
  }
  /** Zero padding along one axis (the gradient of slice). */
  pad(a: Tensor, axis: number, before: number, after: number): Tensor {
    return this.apply1('Pad', [a], { axis: normAxis(axis, a.rank), before, after });
  }
  /** out = zeros(shape of `like`) with `upd` scatter-added at `indices` along `axis` (gradient of gather). */
  scatterAdd(like: Tensor, axis: number, indices: Tensor, upd: Tensor): Tensor {
    return this.apply1('ScatterAdd', [like, indices, upd], { axis });
  }
  /** Zeros with the (run-time) shape of `like`. */
  zerosLike(like: Tensor): Tensor {
    return this.apply1('ZerosLike', [like]);
  }

  // ---- composites ----
  /** y = x @ W^T + b with W stored [out, in] like PyTorch's nn.Linear. */
  linear(x: Tensor, w: Tensor, b?: Tensor): Tensor {
    const y = this.matmul(x, this.mT(w));
    return b ? this.add(y, b) : y;
  }

  /** Mean cross-entropy of logits [B, C] against int64 labels [B]. */
  crossEntropy(logits: Tensor, labels: Tensor): Tensor {
    const C = logits.shape[logits.rank - 1] as number;
    const logp = this.logSoftmax(logits, -1);
    const classes = this.tensor(
      [C],
      Array.from({ length: C }, (_, i) => i),
      'int64',
    );
    const onehot = this.cast(this.equal(this.unsqueeze(labels, -1), classes), logits.dtype);
    return this.neg(this.meanAll(this.sum(this.mul(onehot, logp), [-1])));
  }

  /** Output tensors are marked by the caller when compiling; this just names a tensor. */
  named(t: Tensor, name: string): Tensor {
    if (t.name === name) return t;
    if (t.name) throw new Error(`tensor already named '${t.name}'`);
    t.name = this.uniqueName(name);
    return t;
  }
}

type AttrArg<K extends string> = NoAttrs extends AttrsOf<K> ? [AttrsOf<K>?] : [AttrsOf<K>];

/** The permutation of `rank` axes that swaps the last two (a matrix transpose per batch). */
export function swapLastTwo(rank: number): number[] {
  const p = Array.from({ length: rank }, (_, i) => i);
  [p[rank - 1], p[rank - 2]] = [p[rank - 2], p[rank - 1]];
  return p;
}

export function normAxis(axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank) throw new Error(`axis ${axis} out of range for rank ${rank}`);
  return a;
}

export function normAxes(axes: number[], rank: number): number[] {
  return [...new Set(axes.map((a) => normAxis(a, rank)))].sort((x, y) => x - y);
}

export function hostScalar(v: number, dtype: GDType): HostTensor {
  return hostFrom([], [v], dtype);
}

export function hostFrom(shape: number[], values: ArrayLike<number>, dtype: GDType): HostTensor {
  const n = numel(shape);
  if (values.length !== n) throw new Error(`${values.length} values for shape ${shapeStr(shape)}`);
  switch (dtype) {
    case 'float32':
      return { dtype, shape, data: Float32Array.from(values) };
    case 'float64':
      return { dtype, shape, data: Float64Array.from(values) };
    case 'int64':
      return { dtype, shape, data: BigInt64Array.from(Array.from(values, (v) => BigInt(Math.trunc(v)))) };
    case 'bool':
      return { dtype, shape, data: Uint8Array.from(values, (v) => (v ? 1 : 0)) };
  }
}

/** Numpy broadcasting of two static/symbolic shapes. */
export function broadcastShapes(a: Shape, b: Shape): Shape {
  const r = Math.max(a.length, b.length);
  const out: Shape = [];
  for (let i = 0; i < r; i++) {
    const x = i - (r - a.length) >= 0 ? a[i - (r - a.length)] : 1;
    const y = i - (r - b.length) >= 0 ? b[i - (r - b.length)] : 1;
    if (x === y || y === 1) out.push(x);
    else if (x === 1) out.push(y);
    else throw new Error(`cannot broadcast ${shapeStr(a)} with ${shapeStr(b)}`);
  }
  return out;
}

export function sameShape(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}
