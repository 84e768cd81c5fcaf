// ONNX writer: turns the IR (forward and gradient nodes alike) into an in-memory ModelProto.
// Only the nodes needed for the requested outputs are written; constants become initializers
// stored as raw little-endian data.

import type { HostTensor } from '../tensor';
import { type EmitCtx, type GDType, type Graph, hostFrom, type OnnxAttr, opDef, type Tensor } from './ir';
import './ops';
import { AttrType, OnnxType, PbWriter } from './proto';

export const DEFAULT_OPSET = 20;
/** IR version 9 goes with opset 19-20 (ONNX 1.14/1.15). */
const IR_VERSION = 9;

export interface CompiledModel {
  bytes: Uint8Array;
  inputs: { name: string; shape: (number | string)[]; dtype: GDType }[];
  outputs: { name: string; shape: (number | string)[]; dtype: GDType }[];
  nodeCount: number;
}

export interface CompileOptions {
  opset?: number;
  name?: string;
  /**
   * The model will run on onnxruntime's CPU provider only: ops may be emitted as onnxruntime's
   * CPU contrib ops (com.microsoft) where those are faster. Off for anything exported or run on
   * a GPU provider, which may not implement them.
   */
  cpuContribOps?: boolean;
}

function rawBytes(t: HostTensor): Uint8Array {
  return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
}

function tensorProto(name: string, t: HostTensor): PbWriter {
  const w = new PbWriter();
  for (const d of t.shape) w.int(1, d);
  w.int(2, OnnxType[t.dtype as keyof typeof OnnxType]);
  w.string(8, name);
  w.bytes(9, rawBytes(t));
  return w;
}

function valueInfo(name: string, shape: (number | string)[], dtype: GDType): PbWriter {
  const shp = new PbWriter();
  for (const d of shape) {
    const dim = new PbWriter();
    if (typeof d === 'number') dim.int(1, d);
    else dim.string(2, d);
    shp.message(1, dim);
  }
  const tt = new PbWriter().int(1, OnnxType[dtype]).message(2, shp);
  const type = new PbWriter().message(1, tt);
  return new PbWriter().string(1, name).message(2, type);
}

/** An AttributeProto of the type its emitter declared (onnxAttr.int, .float, ...). */
function attribute(name: string, a: OnnxAttr): PbWriter {
  const w = new PbWriter().string(1, name);
  if ('int' in a) {
    if (!Number.isInteger(a.int)) throw new Error(`attribute ${name}: ${a.int} is not an integer`);
    w.int(3, a.int).int(20, AttrType.INT);
  } else if ('float' in a) w.float(2, a.float).int(20, AttrType.FLOAT);
  else if ('string' in a) w.string(4, a.string).int(20, AttrType.STRING);
  else if ('ints' in a) w.packedInts(8, a.ints as number[]).int(20, AttrType.INTS);
  else w.message(5, tensorProto('', hostFrom([1], [a.tensor.value], a.tensor.dtype))).int(20, AttrType.TENSOR);
  return w;
}

/** Writes the subgraph needed for `outputs` as an ONNX model. */
export function compile(g: Graph, outputs: Record<string, Tensor>, opts: CompileOptions = {}): CompiledModel {
  const opset = opts.opset ?? DEFAULT_OPSET;
  // Nodes needed for the outputs, and the tensors (inputs, constants) they read.
  const { nodes, tensors: needed } = g.ancestors(Object.values(outputs));

  const names = new Map<Tensor, string>();
  const used = new Set<string>();
  const claim = (base: string): string => {
    let s = base;
    let i = 1;
    while (used.has(s)) s = `${base}__${i++}`;
    used.add(s);
    return s;
  };
  // Inputs and constants keep their names; requested outputs take their requested names.
  for (const t of g.inputs) names.set(t, claim(t.name!));
  for (const t of g.consts.keys()) if (needed.has(t)) names.set(t, claim(t.name!));
  const identities: [string, string][] = [];
  const outInfo: CompiledModel['outputs'] = [];
  for (const [oname, t] of Object.entries(outputs)) {
    if (used.has(oname) && names.get(t) !== oname)
      throw new Error(`output name '${oname}' clashes with another tensor`);
    if (t.node && !names.has(t)) names.set(t, claim(oname));
    else identities.push([names.get(t) ?? claim(`pre_${oname}`), claim(oname)]);
    outInfo.push({ name: oname, shape: t.shape, dtype: t.dtype });
  }

  const graphW = new PbWriter();
  let tmp = 0;
  let nodeCount = 0;
  const domains = new Set<string>();
  const smallConsts: PbWriter[] = [];
  const constCache = new Map<string, string>();
  const ctx: EmitCtx = {
    opset,
    cpuContrib: opts.cpuContribOps === true,
    name(t: Tensor): string {
      let s = names.get(t);
      if (!s) {
        s = claim(t.name ?? `t${t.id}`);
        names.set(t, s);
      }
      return s;
    },
    node(opType, inputs, outs, attrs = {}, domain) {
      const outNames =
        typeof outs === 'number' ? Array.from({ length: outs }, () => claim(`${opType.toLowerCase()}_${tmp++}`)) : outs;
      const n = new PbWriter();
      for (const i of inputs) n.string(1, i);
      for (const o of outNames) n.string(2, o);
      n.string(3, claim(`n_${opType}_${nodeCount++}`));
      n.string(4, opType);
      for (const [k, v] of Object.entries(attrs)) if (v !== undefined) n.message(5, attribute(k, v));
      if (domain) {
        n.string(7, domain);
        domains.add(domain);
      }
      graphW.message(1, n);
      return outNames;
    },
    int64s(vals) {
      const key = `i64:${vals.join(',')}`;
      let s = constCache.get(key);
      if (!s) {
        s = claim(`const_i64_${constCache.size}`);
        constCache.set(key, s);
        smallConsts.push(tensorProto(s, hostFrom([vals.length], vals, 'int64')));
      }
      return s;
    },
    scalar(v, dtype) {
      const key = `${dtype}:${v}`;
      let s = constCache.get(key);
      if (!s) {
        s = claim(`const_${dtype}_${constCache.size}`);
        constCache.set(key, s);
        smallConsts.push(tensorProto(s, hostFrom([], [v], dtype)));
      }
      return s;
    },
  };

  for (const n of nodes) opDef(n.op).emit(n, ctx);
  for (const [from, to] of identities) ctx.node('Identity', [from], [to]);

  graphW.string(2, opts.name ?? 'met_graph');
  for (const [t, data] of g.consts) if (needed.has(t)) graphW.message(5, tensorProto(names.get(t)!, data));
  for (const c of smallConsts) graphW.message(5, c);
  const inInfo: CompiledModel['inputs'] = [];
  for (const t of g.inputs) {
    if (!needed.has(t)) continue;
    graphW.message(11, valueInfo(names.get(t)!, t.shape, t.dtype));
    inInfo.push({ name: names.get(t)!, shape: t.shape, dtype: t.dtype });
  }
  for (const o of outInfo) graphW.message(12, valueInfo(o.name, o.shape, o.dtype));

  const model = new PbWriter();
  model.int(1, IR_VERSION);
  model.string(2, 'met-vscode');
  model.string(3, '0.1.0');
  model.message(7, graphW);
  model.message(8, new PbWriter().string(1, '').int(2, opset));
  // onnxruntime's contrib ops (com.microsoft) are at version 1.
  for (const d of domains) model.message(8, new PbWriter().string(1, d).int(2, 1));
  return { bytes: model.finish(), inputs: inInfo, outputs: outInfo, nodeCount };
}
