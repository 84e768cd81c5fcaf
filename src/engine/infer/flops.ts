// Multiply-accumulate counting over the graph IR, in the convention of PETL papers
// (docs/method.md §4.3): one multiply-add = one "FLOP", and only matrix products are counted.
// That is what DyT's block_flops_dict.py formula 12·n·D² + 2·n²·D per block does (qkv 3nD², proj
// nD², MLP 8nD², QKᵀ and AV n²D each), giving 17.56 G for ViT-B/16 at 224 px. Elementwise ops,
// softmax, GELU and LayerNorm are free. Each op declares its count (OpDef.macs, graph/ops.ts).
//
// fvcore's FlopCountAnalysis by default additionally charges 5 per element of each LayerNorm
// input (norm_flop_counter, "a rough estimate"), which is where its 17.58 G for the same ViT-B
// comes from. `{ layerNorm: true }` adds that term, for comparison with fvcore tables.
//
// Only the nodes an output actually needs are counted, so an exit's cost is countMacs([logits_j])
// and the increment between two exits is countMacs([logits_j], B, nodesOfExit_{j-1}).

import { type Dim, type MacOptions, type Node, opDef, type Tensor } from '../graph/ir';
import '../graph/ops';

/** Values of symbolic dims: a number is the batch 'B'; a record names every symbol. */
export type DimEnv = number | Readonly<Record<string, number>>;

export type { MacOptions };

/**
 * The value of one dim: a number, a symbol ('B'), or a product of symbols and integers
 * ('B*197', '197*B', 'B*H'), which is how the IR writes symbolic dims after reshapes.
 */
export function evalDim(d: Dim, env: DimEnv = 1): number {
  if (typeof d === 'number') return d;
  let v = 1;
  for (const raw of d.split('*')) {
    const f = raw.trim();
    if (/^\d+$/.test(f)) v *= Number(f);
    else if (typeof env === 'number') {
      if (f !== 'B')
        throw new Error(
          `symbolic dim '${d}': no value for '${f}' (only the batch 'B' is known; pass a record of symbol values)`,
        );
      v *= env;
    } else {
      const x = env[f];
      if (x === undefined) throw new Error(`symbolic dim '${d}': no value for '${f}'`);
      v *= x;
    }
  }
  return v;
}

/**
 * MACs of one node, as its op declares them (OpDef.macs in graph/ops.ts). MatMul [..., M, K] @
 * [..., K, N] → [..., M, N] (or MatMulNT, with b [..., N, K]) costs
 * prod(broadcast batch dims)·M·K·N = numel(output)·K (counted on the broadcast output, so a
 * broadcast operand is charged for every batch it is applied to). Everything else is 0 unless
 * the options say otherwise (LayerNorm).
 */
export function macsOfNode(node: Node, env: DimEnv = 1, opts: MacOptions = {}): number {
  const macs = opDef(node.op).macs;
  return macs ? macs(node, (d) => evalDim(d, env), opts) : 0;
}

export function macsOfNodes(nodes: Iterable<Node>, env: DimEnv = 1, opts: MacOptions = {}): number {
  let s = 0;
  for (const n of nodes) s += macsOfNode(n, env, opts);
  return s;
}

/**
 * The nodes needed to compute `outputs`, each once, in topological (creation) order. Nodes in
 * `exclude` count as already computed: they are left out and the walk does not go through them,
 * so their producers are not needed on their account either.
 */
export function neededNodes(outputs: readonly Tensor[], exclude?: ReadonlySet<Node>): Node[] {
  return outputs.length ? outputs[0].graph.ancestors(outputs, exclude).nodes : [];
}

/**
 * MACs to compute `outputs` from the graph inputs and constants at batch size `batch` (or with
 * the given symbol values), skipping the nodes in `exclude` (already computed).
 */
export function countMacs(
  outputs: readonly Tensor[],
  batch: DimEnv = 1,
  exclude?: ReadonlySet<Node>,
  opts: MacOptions = {},
): number {
  return macsOfNodes(neededNodes(outputs, exclude), batch, opts);
}
