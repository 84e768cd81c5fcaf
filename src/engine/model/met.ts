// Multiple-Exit Tuning (MET, arXiv 2409.13999) on a frozen pre-LN ViT, written to be read next to
// the method: docs/method.md (the paper's own equation numbers were not recovered). Each block
// below is headed by the docs/method.md section (§N) of the equation it implements.
//
//   §1.1  K exits after layers l_1 < .. < l_K; exit j predicts y_j = h_j(LN_f(c_j^{(l_j)}))
//         with its own linear head h_j and the backbone's frozen final LayerNorm LN_f
//         (or another exit branch, model/branches.ts: mlp, sl-vit, conv-*).
//   §1.2  K exit-specific class tokens c_1..c_K made from the pre-trained one; active set in
//         layer l: A_l = {j : l_j >= l}, k_l = |A_l|; an exit's token leaves after its layer.
//   §1.3  The layer with E-adapters (EA on the LayerNorm output, ARC's placement):
//           (Ĉ, X̂)     = EA_{2l-1}(LN1([C^{l-1}; X^{l-1}]))
//           [C'; X']   = [C^{l-1}; X^{l-1}] + MHA([Ĉ; X̂])      (-log k on the k exit-token keys)
//           (Ĉ', X̂')   = EA_{2l}(LN2([C'; X']))
//           [C^l; X^l] = [C'; X'] + MLP([Ĉ'; X̂'])
//   §1.4  The E-adapter: shared W_d [D, r], W_u [r, D]; per adapter i cores A_i, B_i [r, r];
//         per (adapter i, exit j) a diagonal Λ_ij = diag(λ_ij), λ_ij [r]:
//           g_ij(t) = σ(t W_d) A_i Λ_ij B_i W_u                       (act_position = after_down)
//           ĉ_j = c_j + g_ij(c_j);   X_j = X_{j-1} + g_ij(X_{j-1})    (feature_path = chain)
//   §2    Graph regularization (GR) on the head inputs z^j of the early exits (graphRegularization).
//   §1.1, §2  L = Σ_j CE_j + λ Σ_{j<K} L_GR^j (metLoss).
//
// The sequence at layer l is [c_j for j in A_l; patches]: A_l is always a suffix of the exits,
// and the token that leaves after layer l is the first one.

import type { Graph, Tensor } from '../graph/ir';
import type { HostTensor } from '../tensor';
import {
  branchDecays,
  branchDims,
  branchForward,
  branchParamShapes,
  branchReadsPatches,
  type BranchSettings,
  branchSpecs,
  initBranchValue,
} from './branches';
import type { VitConfig } from './config';
import { copycatTerms, type DistillSettings } from './distill';
import { layerNorm, VitParams, vitAttentionQ, vitEmbed, vitMlp } from './vit';
import { defaultsOf, MODEL_KEYS } from '../settings';
import type { ModelSettings, VARIANTS } from '../settings';

export type Variant = (typeof VARIANTS)[number];

/**
 * MET's settings; the exit branches (BranchSettings: `branch` absent = MET's linear heads). The
 * settings a user sets (rank, variant, adapterAct...) are the `model: true` rows of the settings
 * table (engine/settings.ts), under the same names (`branch` optional: runs from before exit
 * branches have none); the rest is resolved per run.
 */
export interface MetConfig extends Omit<ModelSettings, 'branch'>, BranchSettings, DistillSettings {
  /** 1-indexed layers after which an exit sits, ascending. */
  exits: number[];
  numClasses: number;
  /** Regression exits (model/regression.ts): absent = classification. With 'regression',
   *  numClasses is 1, each exit predicts a number, graph regularization is off. */
  task?: 'classification' | 'regression';
  regLoss?: 'mse' | 'l1';
  /** Regression target scale: value = output * targetStd + targetMean (standardisation). */
  targetMean?: number;
  targetStd?: number;
}

/** The defaults of the model's settings (the settings table's). */
export const MET_DEFAULTS: Omit<MetConfig, 'exits' | 'numClasses'> = defaultsOf(MODEL_KEYS);

/** The paper's placement: an exit after each of the last 7 layers, or after every layer. */
export function defaultExits(depth: number): number[] {
  const n = Math.min(7, depth);
  return Array.from({ length: n }, (_, i) => depth - n + 1 + i);
}

/** Checks exits, rank and classes (the exit branches: validateBranches in branches.ts). */
export function validateMetConfig(m: MetConfig, depth: number): void {
  if (!m.exits.length) throw new Error('at least one exit is needed');
  m.exits.forEach((l, i) => {
    if (!Number.isInteger(l) || l < 1 || l > depth) throw new Error(`exit layer ${l} is outside 1..${depth}`);
    if (i && l <= m.exits[i - 1]) throw new Error(`exit layers must be strictly ascending, got ${m.exits.join(',')}`);
  });
  if (!Number.isInteger(m.rank) || m.rank < 1) throw new Error(`rank must be a positive integer, got ${m.rank}`);
  if (m.task === 'regression') {
    if (m.numClasses !== 1) throw new Error(`a regression run has one output per exit, got numClasses ${m.numClasses}`);
  } else if (!Number.isInteger(m.numClasses) || m.numClasses < 2)
    throw new Error(`need at least 2 classes, got ${m.numClasses}`);
}

/**
 * E-adapter index i - 1 (0-based) of layer l (1-based): i = 2l - 1 before MHA, 2l before the MLP
 * (docs/method.md §1.3).
 */
export const adapterIndex = (l: number, beforeMlp: boolean): number => 2 * (l - 1) + (beforeMlp ? 1 : 0);

/** k_l = |A_l| = |{j : l_j >= l}|: exit tokens alive in layer l (docs/method.md §1.2). */
export function activeAt(exits: number[], l: number): number {
  return exits.filter((e) => e >= l).length;
}

export function hasAdapters(m: MetConfig): boolean {
  return m.variant !== 'linear_probe';
}

export function adapterAt(m: MetConfig, beforeMlp: boolean): boolean {
  if (!hasAdapters(m)) return false;
  return m.eaPositions === 'both' || (beforeMlp ? m.eaPositions === 'mlp' : m.eaPositions === 'mha');
}

// ------------------------------------------------------------------ trainable tensors

/**
 * Shapes of MET's trainable tensors (stored names; docs/method.md §1.4 "Trainable parameters"):
 * ea.down W_d [D, r], ea.up W_u [r, D], ea.A / ea.B the stacked A_i / B_i [2L, r, r], ea.diag the
 * stacked λ_ij [2L, K, r] (one row per exit; [2L, 1, r] for shared_cls), then each exit's branch.
 */
export function metParamShapes(cfg: VitConfig, m: MetConfig): Map<string, number[]> {
  const D = cfg.dim;
  const r = m.rank;
  const nA = 2 * cfg.depth;
  const K = m.exits.length;
  const s = new Map<string, number[]>();
  if (hasAdapters(m)) {
    s.set('ea.down', [D, r]);
    s.set('ea.up', [r, D]);
    s.set('ea.A', [nA, r, r]);
    s.set('ea.B', [nA, r, r]);
    if (m.featurePath !== 'shared' || K > 0) s.set('ea.diag', [nA, m.variant === 'shared_cls' ? 1 : K, r]);
  }
  // Per exit its branch's tensors, the final classifier exit.{j}.weight/bias last (for MET's
  // linear head that is all there is: [C, D] and [C]).
  branchSpecs(branchDims(cfg), m).forEach((b, j) => {
    for (const [name, shape] of branchParamShapes(b, j + 1)) s.set(name, shape);
  });
  return s;
}

/**
 * Weight decay applies to the projections, head matrices and branch matrices, not to cores,
 * diagonals, LayerNorm weights or biases.
 */
export function decays(name: string): boolean {
  return name === 'ea.down' || name === 'ea.up' || branchDecays(name);
}

/**
 * Initial values (docs/method.md §1.4, ARC-style): W_d, W_u Xavier-uniform, A_i = B_i = I, λ = 0, so the
 * untrained model equals the backbone on every exit token; heads (the final classifier of every
 * branch) trunc-normal(0.01) or zeros; the other branch tensors as model/branches.ts says.
 */
export function initMetParams(cfg: VitConfig, m: MetConfig, seed: number): Map<string, HostTensor> {
  let s = (seed * 2654435761 + 0x9e3779b9) >>> 0;
  const uniform = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const normal = () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
  const truncated = () => {
    let z = normal();
    while (Math.abs(z) > 2) z = normal();
    return z;
  };
  const out = new Map<string, HostTensor>();
  for (const [name, shape] of metParamShapes(cfg, m)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const d = new Float32Array(n);
    if (name === 'ea.down' || name === 'ea.up') {
      const a = Math.sqrt(6 / (cfg.dim + m.rank));
      for (let i = 0; i < n; i++) d[i] = (2 * uniform() - 1) * a;
    } else if (name === 'ea.A' || name === 'ea.B') {
      const r = m.rank;
      for (let i = 0; i < shape[0]; i++) for (let k = 0; k < r; k++) d[i * r * r + k * r + k] = 1;
    } else if (/^exit\.\d+\.weight$/.test(name)) {
      if (m.headInit === 'trunc_normal') for (let i = 0; i < n; i++) d[i] = 0.01 * truncated();
    } else if (/^exit\.\d+\.bias$/.test(name)) {
      // zeros
    } else if (name.startsWith('exit.')) {
      out.set(name, { dtype: 'float32', shape, data: initBranchValue(name, shape, truncated) });
      continue;
    }
    out.set(name, { dtype: 'float32', shape, data: d });
  }
  return out;
}

/**
 * MET's trainable tensors (E-adapters and exit branches) as graph tensors: all graph inputs when
 * training, all constants when exporting. The same parameter store as the backbone's
 * (VitParams), with the views of the stacked adapter tensors an E-adapter reads.
 */
export class MetTensors extends VitParams {
  constructor(
    g: Graph,
    readonly values: Map<string, HostTensor>,
    readonly asInputs: boolean,
  ) {
    super(g, values, asInputs ? new Set(values.keys()) : new Set());
  }

  protected override get kind(): string {
    return 'MET tensor';
  }

  /** [r, r] slice i of a stacked [2L, r, r] tensor (A_i or B_i). */
  core(name: 'ea.A' | 'ea.B', i: number): Tensor {
    return this.memo(`${name}[${i}]`, () => {
      const full = this.get(name);
      const r = full.shape[1] as number;
      return this.g.reshape(this.g.slice(full, 0, i, i + 1), [r, r]);
    });
  }

  /** Diagonals λ_ij of adapter i for exits [j0, j1) (0-based): [j1 - j0, r]. */
  diag(i: number, j0: number, j1: number, shared: boolean): Tensor {
    return this.memo(`diag[${i}][${shared ? 's' : `${j0}:${j1}`}]`, () => {
      const full = this.get('ea.diag'); // [2L, K or 1, r]
      const r = full.shape[2] as number;
      const row = this.g.reshape(this.g.slice(full, 0, i, i + 1), [full.shape[1] as number, r]);
      return shared ? row : this.g.slice(row, 0, j0, j1);
    });
  }

  /** W_u W_d [r, r]: maps an up-projected update back into the down-projected space. */
  upDown(): Tensor {
    return this.memo('W_u W_d', () => this.g.matmul(this.get('ea.up'), this.get('ea.down')));
  }
}

// ------------------------------------------------------------------ the E-adapter

function sigma(g: Graph, m: MetConfig, x: Tensor): Tensor {
  return m.adapterAct === 'gelu' ? g.gelu(x) : g.relu(x);
}

/**
 * The sub-adapter g_ij of docs/method.md §1.4 without its projections, in the r-dim space:
 * z = t W_d [.., r] -> σ(z) A_i Λ_ij B_i (act_position after_down) or σ(z A_i Λ_ij) B_i
 * (after_diag); Λ absent for the shared feature path. The caller multiplies by W_u.
 */
function core(g: Graph, m: MetConfig, z: Tensor, A: Tensor, lam: Tensor | null, B: Tensor): Tensor {
  if (m.actPosition === 'after_down' && (!lam || lam.shape[0] === 1)) {
    // One diagonal for every token: compose the r x r cores first, A diag(λ) B = (A * λ) B, so
    // the [B, N, r] activations go through one matmul instead of matmul, scale, matmul. The
    // chain runs this once per (adapter, exit) pair over all patch tokens, and these small ops
    // are launch-bound: fewer of them is most of what there is to gain.
    const M = g.matmul(lam ? g.mul(A, lam) : A, B); // (r, r)
    return g.matmul(sigma(g, m, z), M);
  }
  if (m.actPosition === 'after_diag') {
    let h = g.matmul(z, A);
    if (lam) h = g.mul(h, lam);
    return g.matmul(sigma(g, m, h), B);
  }
  let h = g.matmul(sigma(g, m, z), A);
  if (lam) h = g.mul(h, lam);
  return g.matmul(h, B);
}

/**
 * E-adapter EA_{i+1} (docs/method.md §1.4) on a sequence u [B, k + N, D] whose first k tokens are
 * the exit tokens of exits [K - k, K) (0-based), or on exit tokens only (patches = false: the last
 * layer's MLP input, the "last E-adapter" of docs/method.md §1.4):
 *   ĉ_j = c_j + g_ij(c_j) for each exit token;   X̂ = X_k with X_j = X_{j-1} + g_ij(X_{j-1}) (chain),
 *   X̂ = X + g_iK(X) (deepest) or X̂ = X + σ(X W_d) A_i B_i W_u (shared).
 *
 * All work happens in the rank-r space: one down-projection of the whole sequence, the per-exit
 * cores, one up-projection. The `chain` feature path (patches pass through the k sub-adapters in
 * turn, X_j = X_{j-1} + g_j(X_{j-1})) stays exact in that space because
 *   X_j W_d = X_{j-1} W_d + h_j (W_u W_d),   h_j = core_j(X_{j-1} W_d),
 * so X_k = X_0 + (Σ_j h_j) W_u: the cost of one adapter instead of k.
 */
export function eAdapter(
  g: Graph,
  m: MetConfig,
  T: MetTensors,
  i: number,
  u: Tensor,
  k: number,
  K: number,
  patches = true,
): Tensor {
  const L = u.shape[1] as number;
  const shared = m.variant === 'shared_cls';
  const A = T.core('ea.A', i);
  const B = T.core('ea.B', i);
  const z = g.matmul(u, T.get('ea.down')); // (B, L, r)
  const parts: Tensor[] = [];
  if (k > 0) {
    // Exit tokens: c_j + g_ij(c_j), all k at once with their diagonals as rows [k, r].
    const zc = k === L ? z : g.slice(z, 1, 0, k);
    parts.push(core(g, m, zc, A, T.diag(i, K - k, K, shared), B));
  }
  if (patches && L > k) {
    let zx = k === 0 ? z : g.slice(z, 1, k, L); // (B, N, r)
    let acc: Tensor;
    if (m.featurePath === 'shared' || k === 0) {
      acc = core(g, m, zx, A, null, B);
    } else if (m.featurePath === 'deepest') {
      acc = core(g, m, zx, A, T.diag(i, K - 1, K, shared), B);
    } else {
      acc = null as unknown as Tensor;
      for (let j = K - k; j < K; j++) {
        const h = core(g, m, zx, A, T.diag(i, j, j + 1, shared), B);
        acc = acc ? g.add(acc, h) : h;
        if (j < K - 1) zx = g.add(zx, g.matmul(h, T.upDown()));
      }
    }
    parts.push(acc);
  }
  const delta = parts.length === 1 ? parts[0] : g.concat(parts, 1); // (B, L, r)
  return g.add(u, g.matmul(delta, T.get('ea.up')));
}

// ------------------------------------------------------------------ attention bias for exit tokens

/**
 * Additive attention bias [Tq, T] for k exit tokens at the front of a length-T sequence, for the
 * queries [q0, q0 + Tq) (docs/method.md §1.3): -log k on the k exit-token keys (exit_key_bias
 * log_k: while the k copies are equal they hold the one class token's attention mass), or the
 * masks of cls_isolated / fully_isolated. null when no bias is needed (k <= 1 with no masking).
 */
export function exitAttentionBias(m: MetConfig, k: number, T: number, q0 = 0, Tq = T): HostTensor | null {
  if (k <= 1 && m.attnMask !== 'fully_isolated') return null;
  if (k <= 1 && m.exitKeyBias === 'none') return null;
  const NEG = -1e9;
  const logk = m.exitKeyBias === 'log_k' ? Math.log(k) : 0;
  const d = new Float32Array(Tq * T);
  let any = false;
  for (let qi = 0; qi < Tq; qi++) {
    const q = q0 + qi;
    const isExit = q < k;
    for (let c = 0; c < k; c++) {
      let v: number;
      if (m.attnMask === 'none') v = -logk;
      else if (m.attnMask === 'cls_isolated') v = isExit ? (c === q ? 0 : NEG) : -logk;
      else v = isExit ? (c === q ? 0 : NEG) : c === k - 1 ? 0 : NEG; // fully isolated: patches see the deepest exit's token
      d[qi * T + c] = v;
      if (v !== 0) any = true;
    }
  }
  return any ? { dtype: 'float32', shape: [Tq, T], data: d } : null;
}

// ------------------------------------------------------------------ the network

export interface MetForward {
  /** Per exit: logits [B, C]. */
  logits: Tensor[];
  /** Per exit: the input of its final classifier [B, F] (what graph regularization acts on):
   *  z_j = LN_f(c_j) [B, D] for MET's linear head. */
  features: Tensor[];
  /** Per exit: the sequence its branch read [B, k + N, D] (exit token first; for cost accounting). */
  exitTokens: Tensor[];
}

/**
 * Optional observers of the graph being built (explore/attention.ts): they see tensors, add
 * nothing to the graph, and a graph built without them is the same graph.
 */
export interface MetHooks {
  /** Layer l's (1-based) attention probabilities [B, H, nq, T] over its sequence [k_l exit
   *  tokens; N patches] (nq = k_l in a pruned last layer, else T), bias and masks applied. */
  attention?(layer: number, probs: Tensor): void;
}

export interface MetState {
  /** Tokens [B, k + N, D] entering layer `nextLayer` (k exit tokens first). */
  seq: Tensor;
  nextLayer: number;
}

/**
 * Patch embedding and the K exit tokens: the state entering layer 1 (docs/method.md §1.2: every
 * exit token starts as x_cls + E_pos[0]; the first E-adapter makes them differ, docs/method.md §1.4 Fig. (b)).
 */
export function metEmbed(g: Graph, P: VitParams, cfg: VitConfig, m: MetConfig, images: Tensor): MetState {
  const x = vitEmbed(P, cfg, images); // (B, 1 + N, D)
  const K = hasAdapters(m) ? m.exits.length : 1;
  if (K === 1) return { seq: x, nextLayer: 1 };
  const N = (x.shape[1] as number) - 1;
  const cls = g.expand(g.slice(x, 1, 0, 1), [x.shape[0], K, cfg.dim]); // K copies of x_cls + pos_0
  return { seq: g.concat([cls, g.slice(x, 1, 1, 1 + N)], 1), nextLayer: 1 };
}

/**
 * Runs layers state.nextLayer .. toLayer, each the layer equations of docs/method.md §1.3 (see the
 * header). Each exit whose layer is passed emits its logits (docs/method.md §1.1) and its token
 * leaves the sequence (docs/method.md §1.2). The last exit's layer only computes what its token
 * needs (its query in attention, its MLP) when its branch reads the class token alone: the patch
 * outputs there are then never used. A branch that reads the patches (sl-vit, conv-*) gets the full
 * last layer.
 */
export function metLayers(
  g: Graph,
  P: VitParams,
  T: MetTensors | null,
  cfg: VitConfig,
  m: MetConfig,
  state: MetState,
  toLayer: number,
  hooks?: MetHooks,
): { state: MetState; out: MetForward } {
  const out: MetForward = { logits: [], features: [], exitTokens: [] };
  const K = m.exits.length;
  const lastExit = m.exits[K - 1];
  const adapters = hasAdapters(m);
  const branches = branchSpecs(branchDims(cfg), m);
  const pruneLast = !branchReadsPatches(branches[K - 1].type);
  let seq = state.seq;
  for (let l = state.nextLayer; l <= Math.min(toLayer, lastExit); l++) {
    const k = adapters ? activeAt(m.exits, l) : 1; // tokens in front of the patches
    const Tn = seq.shape[1] as number;
    const final = l === lastExit && pruneLast;
    const nq = final ? k : Tn; // queries computed
    const pre = `blocks.${l - 1}.`;
    // ---- attention: [C'; X'] = [C; X] + MHA(EA_{2l-1}(LN1([C; X])))
    if (adapters && m.eaPosition === 'pre_ln' && adapterAt(m, false))
      seq = eAdapter(g, m, T!, adapterIndex(l, false), seq, k, K);
    let h = layerNorm(P, cfg, seq, pre + 'norm1');
    if (adapters && m.eaPosition === 'post_ln' && adapterAt(m, false))
      h = eAdapter(g, m, T!, adapterIndex(l, false), h, k, K);
    const biasHost = adapters ? exitAttentionBias(m, k, Tn, 0, nq) : null;
    const bias = biasHost ? g.constant(biasHost, `attn_bias.${l}`) : undefined;
    const onProbs = hooks?.attention ? (p: Tensor) => hooks.attention!(l, p) : undefined;
    const a = vitAttentionQ(P, cfg, l - 1, h, nq, bias, onProbs); // (B, nq, D)
    let x = final ? g.add(g.slice(seq, 1, 0, nq), a) : g.add(seq, a);
    // ---- MLP: [C^l; X^l] = [C'; X'] + MLP(EA_{2l}(LN2([C'; X'])))
    if (adapters && m.eaPosition === 'pre_ln' && adapterAt(m, true))
      x = eAdapter(g, m, T!, adapterIndex(l, true), x, k, K, !final);
    let h2 = layerNorm(P, cfg, x, pre + 'norm2');
    if (adapters && m.eaPosition === 'post_ln' && adapterAt(m, true))
      h2 = eAdapter(g, m, T!, adapterIndex(l, true), h2, k, K, !final);
    seq = g.add(x, vitMlp(P, cfg, l - 1, h2));
    // ---- exit j after this layer: logits_j = h_j(LN_f(c_j^l)) (docs/method.md §1.1), then c_j
    //      leaves (docs/method.md §1.2)
    const j = m.exits.indexOf(l);
    if (j >= 0) {
      if (!T) throw new Error('exit heads need MET tensors');
      const b = branchForward(g, P, T, cfg, branches[j], j, seq, k);
      out.features.push(b.feature);
      out.logits.push(b.logits);
      out.exitTokens.push(seq);
      // The exit token leaves (linear probe: the single class token stays until the last exit).
      if (adapters && l !== lastExit) seq = g.slice(seq, 1, 1, seq.shape[1] as number);
    }
  }
  return { state: { seq, nextLayer: Math.min(toLayer, lastExit) + 1 }, out };
}

/** The whole multi-exit network: images [B, C, S, S] -> per-exit logits and head inputs. */
export function metForward(
  g: Graph,
  P: VitParams,
  T: MetTensors,
  cfg: VitConfig,
  m: MetConfig,
  images: Tensor,
  hooks?: MetHooks,
): MetForward {
  const s0 = metEmbed(g, P, cfg, m, images);
  return metLayers(g, P, T, cfg, m, s0, cfg.depth, hooks).out;
}

// ------------------------------------------------------------------ losses

/** The ε of graph regularization's norms, square roots and ratio: graph and host (explore/similarity.ts). */
export const GR_EPS = 1e-12;

/**
 * Graph regularization L_GR^j for one early exit j < K (docs/method.md §2), on a batch of n images
 * with head inputs z_a = z_a^j [n, F] (LN_f(c_j) for MET's linear head), the last exit's logits
 * o_a = o_a^K [n, C] (detached: no gradient reaches exit K or the similarities) and labels y_a:
 *
 *   S_ab   = cos(o_a, o_b)                     (simClamp: max(0, S) or (1 + S) / 2)
 *   S^w_ab = S_ab if y_a = y_b (a ≠ b unless !grExcludeSelf), else 0      intra-class graph
 *   S^b_ab = S_ab if y_a ≠ y_b, else 0                                    inter-class graph
 *   d_ab   = ||z_a − z_b||²                    (or sqrt(d + 1e-12) with !grSquared; / F with grNormalize)
 *   L_intra = (1/n_w) Σ_ab S^w_ab d_ab,   L_inter = (1/n_b) Σ_ab S^b_ab d_ab
 *   n_w, n_b = max(#{S ≠ 0}, 1)             (the non-zero entries of S^w, S^b)
 *   L_GR^j = L_intra − L_inter             (grForm diff; ratio: L_intra / (L_inter + 1e-12))
 *
 * In trace form (S symmetric, Laplacian L_S = diag(S 1) − S): Σ_ab S_ab ||z_a − z_b||² =
 * 2 tr(Zᵀ L_S Z), so L_GR pulls same-class pairs together (compactness) and pushes different-class
 * pairs apart (separability), each pair weighted by how alike the last exit finds the two images.
 * The squared distances are computed as |z_a|² + |z_b|² − 2 z_a·z_b: one [n, n] matmul.
 * explore/similarity.ts (grMatrices) evaluates the same formula on the host, in float64.
 */
export function graphRegularization(g: Graph, m: MetConfig, z: Tensor, lastLogits: Tensor, labels: Tensor): Tensor {
  const dt = z.dtype;
  // S_ab = cos(o_a, o_b) on detached logits: o / sqrt(|o|² + ε) row-wise, then o oᵀ [n, n].
  const o = g.stopGradient(lastLogits);
  const norm = g.sqrt(g.addScalar(g.sum(g.mul(o, o), [1], true), GR_EPS));
  const on = g.div(o, norm);
  let S = g.matmul(on, g.mT(on)); // (B, B)
  if (m.simClamp === 'relu') S = g.relu(S);
  else if (m.simClamp === 'affine') S = g.mulScalar(g.addScalar(S, 1), 0.5);
  // S^w and S^b: S on same-class / different-class pairs.
  const same = g.equal(g.unsqueeze(labels, 1), g.unsqueeze(labels, 0)); // (B, B) bool
  let sameF = g.cast(same, dt);
  if (m.grExcludeSelf) sameF = g.mul(sameF, g.sub(g.scalar(1, dt), eyeLike(g, S)));
  const diffF = g.cast(g.not(same), dt);
  const Sw = g.stopGradient(g.mul(S, sameF));
  const Sb = g.stopGradient(g.mul(S, diffF));
  // d_ab = ||z_a - z_b||^2 = |z_a|^2 + |z_b|^2 - 2 z_a.z_b
  const sq = g.sum(g.mul(z, z), [1], true); // (B, 1)
  let d2 = g.sub(g.add(sq, g.mT(sq)), g.mulScalar(g.matmul(z, g.mT(z)), 2));
  d2 = g.relu(d2); // rounding can make tiny negatives
  let dist = m.grSquared ? d2 : g.sqrt(g.addScalar(d2, GR_EPS));
  if (m.grNormalize) dist = g.mulScalar(dist, 1 / (z.shape[1] as number));
  const nonzero = (s: Tensor) => g.cast(g.not(g.equal(s, g.scalar(0, dt))), dt);
  const count = (s: Tensor) => g.stopGradient(g.maximum(g.sumAll(nonzero(s)), g.scalar(1, dt))); // max(n, 1)
  // L_intra = Σ S^w d / n_w,  L_inter = Σ S^b d / n_b
  const intra = g.div(g.sumAll(g.mul(Sw, dist)), count(Sw));
  const inter = g.div(g.sumAll(g.mul(Sb, dist)), count(Sb));
  return m.grForm === 'ratio' ? g.div(intra, g.addScalar(inter, GR_EPS)) : g.sub(intra, inter);
}

/** Identity matrix with the run-time batch size: (i == j) from two index ranges. */
function eyeLike(g: Graph, S: Tensor): Tensor {
  return g.apply1('EyeLike', [S]);
}

export interface MetLoss {
  loss: Tensor;
  ce: Tensor[];
  gr: Tensor[];
  /** Copycat distillation per early exit (model/distill.ts; empty when `distill` is 0). */
  kd: Tensor[];
}

/**
 * The training objective (docs/method.md §1.1 and §2, uniform exit weights):
 *   L = Σ_{j=1..K} CE_j + λ Σ_{j=1..K-1} L_GR^j   (+ w Σ_{j<K} KD_j, copycat distillation, distill.ts)
 */
export function metLoss(g: Graph, m: MetConfig, f: MetForward, labels: Tensor): MetLoss {
  const ce = f.logits.map((l) => g.crossEntropy(l, labels));
  let loss = ce.reduce((a, b) => g.add(a, b));
  const gr: Tensor[] = [];
  const lambda = m.variant === 'no_gr' || m.variant === 'linear_probe' ? 0 : m.lambda;
  const K = f.logits.length;
  if (lambda !== 0 && K > 1) {
    for (let j = 0; j < K - 1; j++) gr.push(graphRegularization(g, m, f.features[j], f.logits[K - 1], labels));
    loss = g.add(
      loss,
      g.mulScalar(
        gr.reduce((a, b) => g.add(a, b)),
        lambda,
      ),
    );
  }
  const kd = copycatTerms(g, m, f.logits);
  if (kd.length)
    loss = g.add(
      loss,
      g.mulScalar(
        kd.reduce((a, b) => g.add(a, b)),
        m.distill!,
      ),
    );
  return { loss, ce, gr, kd };
}
