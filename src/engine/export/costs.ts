// Per-exit cost of a MET network without its weights: `met params` needs the GFLOPs per exit of
// configurations nobody has trained (ViT-B, ViT-L), and they must be the numbers `met eval`
// prints once such a run exists.
//
// Rather than a closed-form formula, which would have to mirror every branch of metLayers
// (feature paths, E-adapter positions, the last layer computing only its exit tokens, the
// W_u·W_d product of the chain path...), this builds the same segment graphs as buildSegments
// and counts their MACs with the same counter. The weights only have to *look* right: every
// backbone and MET tensor enters the graph as an input (VitParams "trainable", MetTensors
// asInputs), which needs shapes but no data, so ViT-L costs nothing to describe. Inputs instead
// of constants change no MatMul: a frozen weight is transposed on the host, a trainable one by a
// Transpose node, and the MAC counter charges MatMuls only (there is no constant folding).

import { Graph, type Tensor } from '../graph/ir';
import { canonicalShapes, type VitConfig } from '../model/config';
import { type MetConfig, metEmbed, metLayers, metParamShapes, MetTensors } from '../model/met';
import { gridSize, VitParams } from '../model/vit';
import { countMacs, neededNodes } from '../infer/flops';
import type { BackbonePreset } from '../infer/params';
import type { HostTensor } from '../tensor';

/** Tensors with the right shapes and no data: enough to build graphs that take them as inputs. */
function shapeOnly(shapes: Map<string, number[]>): Map<string, HostTensor> {
  const empty = new Float32Array(0);
  return new Map([...shapes].map(([k, shape]) => [k, { dtype: 'float32', shape, data: empty } as HostTensor]));
}

/**
 * Multiply-adds per image of each segment (segment j: after exit j-1 up to exit j, with exit j's
 * head), exactly as buildSegments counts them. cumulativeGflops of these is what a run reports.
 */
export function segmentMacs(cfg: VitConfig, m: MetConfig): number[] {
  return segmentAndBranchMacs(cfg, m).segments;
}

/**
 * segmentMacs, and per exit the multiply-adds of its branch alone: what computing the logits
 * costs once the sequence after the exit's layer is there (part of the segment's count).
 */
export function segmentAndBranchMacs(cfg: VitConfig, m: MetConfig): { segments: number[]; branches: number[] } {
  const backbone = shapeOnly(canonicalShapes({ ...cfg, numClasses: 0, posGrid: gridSize(cfg) }));
  const met = shapeOnly(metParamShapes(cfg, m));
  const out: number[] = [];
  const branches: number[] = [];
  let prev = 0;
  let tokens = 0;
  for (let j = 0; j < m.exits.length; j++) {
    const g = new Graph();
    const P = new VitParams(g, backbone, new Set(backbone.keys()));
    const T = new MetTensors(g, met, true);
    const state =
      j === 0
        ? metEmbed(g, P, cfg, m, g.input('images', ['B', cfg.channels, cfg.imageSize, cfg.imageSize]))
        : { seq: g.input('state_in', ['B', tokens, cfg.dim]), nextLayer: prev + 1 };
    const { state: next, out: o } = metLayers(g, P, T, cfg, m, state, m.exits[j]);
    const outs: Tensor[] = [g.softmax(o.logits[o.logits.length - 1], -1)];
    if (j < m.exits.length - 1) outs.push(next.seq);
    out.push(countMacs(outs, 1));
    const seq = o.exitTokens[o.exitTokens.length - 1];
    branches.push(countMacs([o.logits[o.logits.length - 1]], 1, new Set(neededNodes([seq]))));
    prev = m.exits[j];
    tokens = next.seq.shape[1] as number;
  }
  return { segments: out, branches };
}

/** Same accumulation as cumulativeGflops (infer/segments.ts), so the floats agree to the bit. */
export function cumulative(macs: number[]): number[] {
  let acc = 0;
  return macs.map((x) => (acc += x) / 1e9);
}

/** A VitConfig for a standard backbone (timm's ViTs: GELU, q/k/v biases, LayerNorm eps 1e-6). */
export function presetConfig(p: BackbonePreset, imageSize = p.imageSize): VitConfig {
  return {
    imageSize,
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
    posGrid: imageSize / p.patchSize,
    mean: [0.5, 0.5, 0.5],
    std: [0.5, 0.5, 0.5],
  };
}
