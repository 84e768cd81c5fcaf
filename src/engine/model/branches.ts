// Exit branches: what turns the state at an exit into that exit's logits [B, C]. MET's exit is a
// linear head on LN_f(c_j); Bakhtiarnia et al. ("Multi-Exit Vision Transformer for Dynamic
// Inference", BMVC 2021; "Single-Layer Vision Transformers for More Accurate Early Exits with
// Less Overhead", Neural Networks 2022; docs/method.md §7) show that the branch itself
// is a trade-off knob. Every branch reads the token sequence after its exit's layer,
//   seq [B, k + N, D]: k exit tokens in front (its own, c_j, first), then the N = G·G patches,
// and ends with the same final classifier `exit.{j}.weight` [C, F] / `exit.{j}.bias` [C] on a
// feature of width F (the "head input" graph regularization acts on). A regression exit later is
// the same branch with C = 1.
//
//   linear        z = LN_f(c_j)                                                  F = D
//                 MET's head (default); LN_f is the backbone's frozen final LayerNorm.
//   mlp           z = GELU(LN_f(c_j) W_fc^T + b_fc)                               F = h (default D)
//                 the MLP-EE of the multi-exit ViT paper: one hidden layer on the class token.
//   sl-vit        one pre-LN transformer encoder layer over [c_j; X] (the exit's token and the
//                 patch tokens at that layer; other exits' tokens are left out), then
//                 z = LN(its output class token)                                  F = D
//                 x' = x + MHA(LN1(x)); x'' = x' + MLP(LN2(x')), MHA with `branchHeads` heads
//                 (default the backbone's) of width D / heads, MLP D -> round(ratio·D) -> D with
//                 exact GELU (ratio default: the backbone's mlpDim / D), its own LayerNorms.
//                 Only the class token's output is used, so only its query, its residual and its
//                 MLP are computed (the same function as the full layer, at the cost it has).
//                 The attention and MLP are the backbone's blocks (model/vit.ts: attention, mlp)
//                 on the branch's tensors.
//   conv-ignore   the patch tokens, each through LN_f, as a G x G map with D channels, one 3x3
//                 convolution (stride 1, zero padding 1) to c channels (default D/4), GELU, global
//                 average pool: z [B, c]                                          F = c
//   conv-add      as conv-ignore, with LN_f(c_j) added to every patch first.
//   conv-project  as conv-ignore, with LN_f(c_j) projected by a linear layer D -> G·G and
//                 concatenated to the map as one more channel (the conv sees D + 1 channels).
//
// What is assumed (the branch papers' full text and code could not be read here; see
// docs/method.md §7): the conv branches' depth (one conv), kernel (3x3), width (D/4: on ViT-B/16
// one such branch costs 0.26 GMACs, about what an sl-vit branch costs, 0.24), GELU, global average
// pool, and the reading of "project" as a projected extra channel; LN_f on the tokens a conv branch
// reads (the class-token branches read LN_f(c_j) too, as MET's); the sl-vit branch's own
// LayerNorms use the backbone's epsilon. The branch architectures are flags, not guesses baked in:
// `branchHidden`, `branchChannels`, `branchHeads`, `branchMlpRatio`.
//
// Initialisation (initBranchValue): LayerNorm weights 1 and biases 0; every other bias 0; the
// matrices of the mlp and sl-vit branches and the conv-project projection trunc-normal with
// std 0.02 cut at ±2 std (timm's ViT init); conv kernels He-style, trunc-normal with std
// sqrt(2 / (9 C_in)); the final classifier as MET's heads (`headInit`: trunc-normal 0.01 or zeros).
// The sl-vit branch thus starts close to the identity on c_j (its residual updates are small).
//
// Trainable names: `exit.{j}.weight`, `exit.{j}.bias` (the final classifier, every branch), and
//   mlp           exit.{j}.fc.weight [h, D], exit.{j}.fc.bias [h]
//   sl-vit        exit.{j}.norm1.*, exit.{j}.attn.qkv.weight [3D, D] / .bias [3D],
//                 exit.{j}.attn.proj.weight [D, D] / .bias, exit.{j}.norm2.*,
//                 exit.{j}.mlp.fc1.weight [M, D] / .bias [M], exit.{j}.mlp.fc2.weight [D, M] / .bias,
//                 exit.{j}.norm.weight / .bias [D]   (timm's block names under exit.{j})
//   conv-*        exit.{j}.conv.weight [c, C_in, 3, 3] (PyTorch's Conv2d layout), exit.{j}.conv.bias [c]
//   conv-project  exit.{j}.proj.weight [G·G, D], exit.{j}.proj.bias [G·G]
//
// The branch types themselves are declared in the settings table (engine/settings.ts), a leaf
// that the extension host and the webviews can import without any model code.

import type { Graph, Tensor } from '../graph/ir';
import type { VitConfig } from './config';
import { attention, mlp, type VitParams } from './vit';
import { BRANCH_TYPES, type BranchType } from '../settings';

/** Branch settings as a run holds them (MetConfig and TrainConfig); 0 or absent = the default. */
export interface BranchSettings {
  /** One type for every exit, or one per exit (as many as there are exits). Absent: linear. */
  branch?: BranchType | BranchType[];
  /** mlp: hidden width h (default D). */
  branchHidden?: number;
  /** conv-*: output channels c of the 3x3 conv (default max(1, round(D / 4))). */
  branchChannels?: number;
  /** sl-vit: attention heads (default the backbone's); must divide D. */
  branchHeads?: number;
  /** sl-vit: MLP width / D (default the backbone's mlpDim / D). */
  branchMlpRatio?: number;
}

/** The backbone facts a branch's shape depends on. */
export interface BranchDims {
  dim: number;
  /** Patch grid side G (N = G·G patch tokens). */
  grid: number;
  /** Backbone attention heads and MLP width (sl-vit defaults). */
  heads: number;
  mlpDim: number;
}

/** One exit's branch, resolved: every width a number. */
export interface BranchSpec {
  type: BranchType;
  D: number;
  /** Outputs of the final classifier (classes; 1 for a regression exit). */
  C: number;
  /** Width of the final classifier's input (the feature graph regularization acts on). */
  F: number;
  G: number;
  /** mlp hidden width. */
  hidden: number;
  /** sl-vit heads, per-head width (D / heads) and MLP width. */
  heads: number;
  headDim: number;
  mlpDim: number;
  /** conv output channels, and input channels (D, or D + 1 for conv-project). */
  channels: number;
  inChannels: number;
}

export function isBranchType(v: unknown): v is BranchType {
  return typeof v === 'string' && (BRANCH_TYPES as readonly string[]).includes(v);
}

/** Whether a branch reads the patch tokens (then the last exit's layer must compute them). */
export function branchReadsPatches(t: BranchType): boolean {
  return t === 'sl-vit' || t.startsWith('conv-');
}

/** The branch type of each of K exits. */
export function branchTypes(s: BranchSettings, K: number): BranchType[] {
  const b = s.branch ?? 'linear';
  if (Array.isArray(b)) {
    if (b.length !== K)
      throw new Error(`branch: ${b.length} branch types given for ${K} exits (give one type, or one per exit)`);
    return b.slice();
  }
  return Array.from({ length: K }, () => b);
}

/** Default conv width: a quarter of D (see the header for why). */
export const defaultConvChannels = (D: number): number => Math.max(1, Math.round(D / 4));

/** Checks the branch settings against the backbone; errors name the field. */
export function validateBranches(d: BranchDims, s: BranchSettings, K: number): void {
  const list = Array.isArray(s.branch) ? s.branch : [s.branch ?? 'linear'];
  for (const t of list)
    if (!isBranchType(t))
      throw new Error(`branch: unknown branch type '${String(t)}' (one of ${BRANCH_TYPES.join(', ')})`);
  branchTypes(s, K);
  const posIntOr0 = (k: keyof BranchSettings) => {
    const v = s[k];
    if (v !== undefined && (typeof v !== 'number' || !Number.isInteger(v) || v < 0))
      throw new Error(`${k} must be a non-negative integer (0 = default), got ${JSON.stringify(v)}`);
  };
  posIntOr0('branchHidden');
  posIntOr0('branchChannels');
  posIntOr0('branchHeads');
  if (s.branchMlpRatio !== undefined && !(Number.isFinite(s.branchMlpRatio) && s.branchMlpRatio >= 0))
    throw new Error(`branchMlpRatio must be a non-negative number (0 = default), got ${s.branchMlpRatio}`);
  const heads = s.branchHeads || d.heads;
  if (list.includes('sl-vit')) {
    if (d.dim % heads) throw new Error(`branchHeads: ${heads} heads do not divide the width D = ${d.dim}`);
    if (s.branchMlpRatio && Math.round(s.branchMlpRatio * d.dim) < 1)
      throw new Error(`branchMlpRatio ${s.branchMlpRatio} gives an empty MLP for D = ${d.dim}`);
  }
}

/** Exit j's (0-based) branch with every default resolved. */
export function branchSpec(d: BranchDims, s: BranchSettings, numClasses: number, type: BranchType): BranchSpec {
  const D = d.dim;
  const heads = s.branchHeads || d.heads;
  const channels = s.branchChannels || defaultConvChannels(D);
  const hidden = s.branchHidden || D;
  const mlpDim = s.branchMlpRatio ? Math.round(s.branchMlpRatio * D) : d.mlpDim;
  const F = type === 'mlp' ? hidden : type.startsWith('conv-') ? channels : D;
  return {
    type,
    D,
    C: numClasses,
    F,
    G: d.grid,
    hidden,
    heads,
    headDim: D / heads,
    mlpDim,
    channels,
    inChannels: type === 'conv-project' ? D + 1 : D,
  };
}

/** The branch dims of a backbone configuration. */
export function branchDims(cfg: Pick<VitConfig, 'dim' | 'heads' | 'mlpDim' | 'imageSize' | 'patchSize'>): BranchDims {
  return { dim: cfg.dim, grid: Math.floor(cfg.imageSize / cfg.patchSize), heads: cfg.heads, mlpDim: cfg.mlpDim };
}

/** Every exit's resolved branch. */
export function branchSpecs(d: BranchDims, s: BranchSettings & { exits: number[]; numClasses: number }): BranchSpec[] {
  return branchTypes(s, s.exits.length).map((t) => branchSpec(d, s, s.numClasses, t));
}

/** Trainable tensors of exit j (1-based) in storage order, the final classifier last. */
export function branchParamShapes(b: BranchSpec, j: number): [string, number[]][] {
  const p = `exit.${j}.`;
  const { D, C, F } = b;
  const out: [string, number[]][] = [];
  if (b.type === 'mlp') out.push([p + 'fc.weight', [b.hidden, D]], [p + 'fc.bias', [b.hidden]]);
  else if (b.type === 'sl-vit') {
    const M = b.mlpDim;
    out.push(
      [p + 'norm1.weight', [D]],
      [p + 'norm1.bias', [D]],
      [p + 'attn.qkv.weight', [3 * D, D]],
      [p + 'attn.qkv.bias', [3 * D]],
      [p + 'attn.proj.weight', [D, D]],
      [p + 'attn.proj.bias', [D]],
      [p + 'norm2.weight', [D]],
      [p + 'norm2.bias', [D]],
      [p + 'mlp.fc1.weight', [M, D]],
      [p + 'mlp.fc1.bias', [M]],
      [p + 'mlp.fc2.weight', [D, M]],
      [p + 'mlp.fc2.bias', [D]],
      [p + 'norm.weight', [D]],
      [p + 'norm.bias', [D]],
    );
  } else if (b.type !== 'linear') {
    if (b.type === 'conv-project') out.push([p + 'proj.weight', [b.G * b.G, D]], [p + 'proj.bias', [b.G * b.G]]);
    out.push([p + 'conv.weight', [b.channels, b.inChannels, 3, 3]], [p + 'conv.bias', [b.channels]]);
  }
  out.push([p + 'weight', [C, F]], [p + 'bias', [C]]);
  return out;
}

export interface BranchParamPart {
  /** What it is, e.g. 'attention q, k, v'. */
  name: string;
  /** In symbols and numbers, e.g. '3D² + 3D = 3·32² + 3·32'. */
  formula: string;
  params: number;
}

/**
 * Parameters of one branch by formula (not from the shapes: the tests check the two agree),
 * split into parts for tables.
 */
export function branchParamCount(b: BranchSpec): { params: number; parts: BranchParamPart[]; formula: string } {
  const { D, C, F, G } = b;
  const parts: BranchParamPart[] = [];
  if (b.type === 'mlp')
    parts.push({
      name: 'hidden layer',
      formula: `D·h + h = ${D}·${b.hidden} + ${b.hidden}`,
      params: D * b.hidden + b.hidden,
    });
  if (b.type === 'sl-vit') {
    const M = b.mlpDim;
    parts.push(
      { name: 'LayerNorms (norm1, norm2, norm)', formula: `3·2D = 6·${D}`, params: 6 * D },
      { name: 'attention q, k, v', formula: `3D² + 3D = 3·${D}² + 3·${D}`, params: 3 * D * D + 3 * D },
      { name: 'attention output projection', formula: `D² + D = ${D}² + ${D}`, params: D * D + D },
      { name: 'MLP', formula: `2DM + M + D = 2·${D}·${M} + ${M} + ${D}`, params: 2 * D * M + M + D },
    );
  }
  if (b.type === 'conv-project')
    parts.push({
      name: 'class-token projection',
      formula: `D·G² + G² = ${D}·${G * G} + ${G * G}`,
      params: D * G * G + G * G,
    });
  if (b.type.startsWith('conv-')) {
    const ci = b.inChannels;
    parts.push({
      name: '3x3 conv',
      formula: `9·${ci === D ? 'D' : '(D+1)'}·c + c = 9·${ci}·${b.channels} + ${b.channels}`,
      params: 9 * ci * b.channels + b.channels,
    });
  }
  parts.push({
    name: 'classifier',
    formula: `${F === D ? 'D' : b.type === 'mlp' ? 'h' : 'c'}·C + C = ${F}·${C} + ${C}`,
    params: F * C + C,
  });
  const formula = {
    linear: 'DC + C',
    mlp: 'Dh + h + hC + C',
    'sl-vit': '4D² + 2DM + 11D + M + DC + C',
    'conv-ignore': '9Dc + c + cC + C',
    'conv-add': '9Dc + c + cC + C',
    'conv-project': 'DG² + G² + 9(D+1)c + c + cC + C',
  }[b.type];
  return { params: parts.reduce((a, p) => a + p.params, 0), parts, formula };
}

/**
 * Multiply-adds of one branch per image, by formula (fvcore convention, matrix products only;
 * the tests check it against the graph's count). The sl-vit branch attends over T = 1 + N tokens
 * with one query. A conv is charged as fvcore does: C_out·C_in·9 per output position, padding
 * included.
 */
export function branchMacs(b: BranchSpec): number {
  const { D, C, F, G } = b;
  const N = G * G;
  switch (b.type) {
    case 'linear':
      return D * C;
    case 'mlp':
      return D * b.hidden + b.hidden * C;
    case 'sl-vit': {
      const T = 1 + N;
      // q of one token, k and v of T tokens, proj of one token; q·k over T keys and a·v per head.
      return D * D + 2 * T * D * D + 2 * T * D + D * D + 2 * D * b.mlpDim + D * C;
    }
    default:
      return (b.type === 'conv-project' ? D * N : 0) + N * 9 * b.inChannels * b.channels + F * C;
  }
}

/** Weight decay: every matrix of a branch (conv kernels included), no LayerNorm weights or biases. */
export function branchDecays(name: string): boolean {
  return /^exit\.\d+\.(?:(?:fc|attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2|conv|proj)\.)?weight$/.test(name);
}

/**
 * Initial value of a branch tensor other than the final classifier (see the header).
 * `normal` draws N(0, 1); `truncated` draws N(0, 1) cut at ±2.
 */
export function initBranchValue(name: string, shape: number[], truncated: () => number): Float32Array {
  const n = shape.reduce((a, b) => a * b, 1);
  const d = new Float32Array(n);
  if (/\.norm\d?\.weight$/.test(name)) d.fill(1);
  else if (name.endsWith('.weight')) {
    // conv kernels [c, C_in, 3, 3]: He (fan-in 9·C_in); matrices: timm's 0.02.
    const std = shape.length === 4 ? Math.sqrt(2 / (shape[1] * shape[2] * shape[3])) : 0.02;
    for (let i = 0; i < n; i++) d[i] = std * truncated();
  }
  return d;
}

// ------------------------------------------------------------------ forward

export interface BranchOutput {
  logits: Tensor;
  /** The final classifier's input [B, F]. */
  feature: Tensor;
}

function ln(g: Graph, x: Tensor, T: VitParams, name: string, eps: number): Tensor {
  return g.layerNorm(x, T.get(`${name}.weight`), T.get(`${name}.bias`), eps);
}

/** x @ W^T + b for a stored [out, in] W, with only W's rows [r0, r1) when given. */
function lin(g: Graph, x: Tensor, T: VitParams, name: string): Tensor {
  return g.add(g.matmul(x, g.mT(T.get(`${name}.weight`))), T.get(`${name}.bias`));
}

/**
 * 3x3 convolution, stride 1, zero padding 1, channels last: x [B, G, G, C_in] with a PyTorch
 * kernel w [c, C_in, 3, 3] -> [B, G, G, c]. im2col from Pad, Slice and Concat (ops with gradient
 * rules already) and one MatMul, so the MAC counter charges G²·9·C_in·c, fvcore's conv count.
 */
export function conv3x3(g: Graph, x: Tensor, w: Tensor, bias: Tensor): Tensor {
  const G = x.shape[1] as number;
  const W = x.shape[2] as number;
  const ci = x.shape[3] as number;
  const c = w.shape[0] as number;
  const p = g.pad(g.pad(x, 1, 1, 1), 2, 1, 1); // [B, G+2, W+2, C_in]
  const cols: Tensor[] = [];
  for (let dy = 0; dy < 3; dy++) {
    const rows = g.slice(p, 1, dy, dy + G);
    for (let dx = 0; dx < 3; dx++) cols.push(g.slice(rows, 2, dx, dx + W));
  }
  const im = g.concat(cols, 3); // [B, G, W, 9·C_in], column (dy·3 + dx)·C_in + ci
  // Kernel [c, C_in, 3, 3] -> [c, 3, 3, C_in] -> [c, 9·C_in] -> [9·C_in, c], in the graph so that
  // the gradient comes back in PyTorch's layout.
  const wt = g.mT(g.reshape(g.transpose(w, [0, 2, 3, 1]), [c, 9 * ci]));
  return g.add(g.matmul(im, wt), bias);
}

/**
 * Exit j's (0-based) branch on the sequence after its layer: seq [B, k + N', D] with exit j's
 * token first and k tokens in front of the patches (N' = 0 when the patches were not computed:
 * only for branches that do not read them). P supplies LN_f (`norm`), T the branch's tensors.
 */
export function branchForward(
  g: Graph,
  P: VitParams,
  T: VitParams,
  cfg: VitConfig,
  b: BranchSpec,
  j: number,
  seq: Tensor,
  k: number,
): BranchOutput {
  const D = b.D;
  const p = `exit.${j + 1}`;
  const eps = cfg.lnEps;
  const classifier = (z: Tensor) => g.add(g.matmul(z, g.mT(T.get(`${p}.weight`))), T.get(`${p}.bias`));
  const cls = () => g.reshape(g.slice(seq, 1, 0, 1), [-1, D]);
  const L = seq.shape[1] as number;
  if (branchReadsPatches(b.type) && L !== k + b.G * b.G)
    throw new Error(`exit ${j + 1} (${b.type}) needs the ${b.G * b.G} patch tokens, the sequence has ${L - k}`);
  const patches = () => g.slice(seq, 1, k, L);
  switch (b.type) {
    case 'linear': {
      const z = ln(g, cls(), P, 'norm', eps);
      return { feature: z, logits: classifier(z) };
    }
    case 'mlp': {
      const z = g.gelu(lin(g, ln(g, cls(), P, 'norm', eps), T, `${p}.fc`));
      return { feature: z, logits: classifier(z) };
    }
    case 'sl-vit': {
      const x = k === 1 ? seq : g.concat([g.slice(seq, 1, 0, 1), patches()], 1); // [B, 1 + N, D]
      // The backbone's blocks on the branch's tensors, the class token's query only.
      const h = ln(g, x, T, `${p}.norm1`, eps);
      const c1 = g.add(g.slice(x, 1, 0, 1), attention(T, `${p}.attn.`, b.heads, b.headDim, h, 1)); // [B, 1, D]
      const c2 = g.reshape(g.add(c1, mlp(T, `${p}.mlp.`, 'gelu', ln(g, c1, T, `${p}.norm2`, eps))), [-1, D]);
      const z = ln(g, c2, T, `${p}.norm`, eps);
      return { feature: z, logits: classifier(z) };
    }
    default: {
      const G = b.G;
      let grid = g.reshape(ln(g, patches(), P, 'norm', eps), [-1, G, G, D]); // row-major patches: [B, y, x, D]
      if (b.type === 'conv-add') grid = g.add(grid, g.reshape(ln(g, cls(), P, 'norm', eps), [-1, 1, 1, D]));
      else if (b.type === 'conv-project') {
        const proj = lin(g, ln(g, cls(), P, 'norm', eps), T, `${p}.proj`); // [B, G²]
        grid = g.concat([grid, g.reshape(proj, [-1, G, G, 1])], 3); // the extra channel is the last one
      }
      const y = g.gelu(conv3x3(g, grid, T.get(`${p}.conv.weight`), T.get(`${p}.conv.bias`))); // [B, G, G, c]
      const z = g.mean(y, [1, 2]); // global average pool [B, c]
      return { feature: z, logits: classifier(z) };
    }
  }
}
