// Reverse-mode differentiation over the IR. Only nodes that lie on a path from a requested
// tensor to the loss are differentiated, and each rule is told which of its inputs need a
// gradient, so frozen matrices never get weight gradients (only activation gradients flow).

import { Graph, opDef, type Tensor } from './ir';
import { unbroadcast } from './ops';

/**
 * Returns d(loss)/d(wrt[i]) for each requested tensor, as new tensors of the same graph.
 * `loss` must be a scalar unless `seed` (the gradient of the output) is given.
 * A requested tensor that the loss does not depend on gets zeros.
 */
export function grad(loss: Tensor, wrt: Tensor[], seed?: Tensor): Tensor[] {
  const g = loss.graph;
  if (!seed && loss.rank !== 0) throw new Error(`grad: loss must be a scalar, got ${loss}`);

  // The nodes the loss depends on (backward reachability), and of those the ones that depend on
  // a requested tensor through differentiable inputs (forward reachability).
  const { nodes, tensors: needed } = g.ancestors([loss]);
  const live = new Set<Tensor>(wrt);
  for (const n of nodes) {
    const def = opDef(n.op);
    if (n.inputs.some((t, i) => live.has(t) && !def.nondiff?.includes(i))) for (const o of n.outputs) live.add(o);
  }

  const grads = new Map<Tensor, Tensor>();
  grads.set(loss, seed ?? g.scalar(1, loss.dtype));
  // Rules append nodes; `nodes` holds only the forward ones.
  for (let k = nodes.length - 1; k >= 0; k--) {
    const n = nodes[k];
    const dOut = n.outputs.map((o) => grads.get(o) ?? null);
    if (dOut.every((d) => d === null)) continue;
    const def = opDef(n.op);
    const needs = n.inputs.map((t, i) => live.has(t) && needed.has(t) && !def.nondiff?.includes(i));
    if (!needs.some(Boolean)) continue;
    if (!def.grad) throw new Error(`no gradient rule for ${n.op}`);
    const dIn = def.grad(g, n, dOut, needs);
    n.inputs.forEach((t, i) => {
      let d = dIn[i];
      if (!needs[i] || !d) return;
      // A rule's gradient may have its output's broadcast shape: summed back here, once.
      d = unbroadcast(g, d, t.shape);
      const prev = grads.get(t);
      grads.set(t, prev ? g.add(prev, d) : d);
    });
  }
  return wrt.map((t) => grads.get(t) ?? g.zerosLike(t));
}

export { Graph };
