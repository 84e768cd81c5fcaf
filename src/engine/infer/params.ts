// Parameter accounting of MET (docs/method.md §3) and of the plain ViT backbones it is applied to.
//
// Counts follow docs/method.md §3's reconstruction, which reproduces the paper's "reduced by
// approximately 98.48%" exactly: one shared W_d (D×r) and W_u (r×D); per E-adapter i an r×r pair
// A_i, B_i; per (E-adapter i, exit token j active there) a diagonal λ_{i,j} ∈ R^r; per exit a
// linear head D·C + C. No adapter biases (the paper's count has none).
//
// E-adapters are numbered i = 1..2L: i = 2l-1 sits before the MHA of layer l, i = 2l before its
// MLP. k_i is the number of exit tokens flowing through E-adapter i: the exits at or after its
// layer, k_l = |{j : l_j ≥ l}|. The first E-adapter takes one class token in but emits K, and it
// carries K diagonals, so k = K there too (which the formula already gives, as every l_j ≥ 1).
//
// The exits' branches (model/branches.ts) are counted by their own formulas: a linear head is
// D·C + C as in docs/method.md §3; mlp, sl-vit and conv branches add their layers
// (branchParamCount).

import {
  branchParamCount,
  type BranchParamPart,
  type BranchSettings,
  branchSpec,
  branchTypes,
  validateBranches,
} from '../model/branches';
import type { BranchType } from '../settings';

export type EaPositions = 'both' | 'mha' | 'mlp';
/**
 * met: the full method. no_gr: MET without graph regularisation (same parameters: GR is a loss).
 * shared_cls: "MET with shared representations", one diagonal per E-adapter (k_i = 1 everywhere).
 * linear_probe: frozen backbone, only the exit heads train.
 */
export type MetVariant = 'met' | 'no_gr' | 'shared_cls' | 'linear_probe';

export interface MetShape extends BranchSettings {
  /** Residual width D. */
  dim: number;
  /** Encoder layers L. */
  depth: number;
  /** 1-indexed layers followed by an exit, ascending (e.g. [6..12] for ViT-B). */
  exits: number[];
  /** Bottleneck r. */
  rank: number;
  /** Classes C per head (1 for a scalar regression head). */
  classes: number;
  eaPositions: EaPositions;
  variant: MetVariant;
  /** Parameters of the frozen backbone (see BACKBONE_PRESETS / vitParamCount). */
  backboneParams: number;
  /** Backbone facts the sl-vit and conv branches depend on: patch grid side G, attention heads,
   *  MLP width (needed only when such a branch is used). */
  grid?: number;
  heads?: number;
  mlpDim?: number;
}

/** One exit's branch in the parameter report. */
export interface BranchCount {
  exit: number;
  layer: number;
  type: BranchType;
  params: number;
  /** The count in symbols (D width, C classes, h hidden, M MLP width, c channels, G grid side). */
  formula: string;
  parts: BranchParamPart[];
}

/** One E-adapter location and the number of exit tokens (and diagonals) it carries. */
export interface AdapterSlot {
  /** 1..2L as in docs/method.md §1.3: 2l-1 before MHA, 2l before MLP. */
  index: number;
  /** 1-indexed encoder layer. */
  layer: number;
  position: 'mha' | 'mlp';
  /** Exit tokens flowing through it (its diagonals; 1 for shared_cls). */
  k: number;
}

/** A row of a parameter table. */
export interface ParamComponent {
  name: string;
  /** Shape of one instance, in symbols and in numbers, e.g. 'D×r = 768×8'. */
  shape: string;
  /** How many instances. */
  count: number;
  /** Parameters of one instance. */
  each: number;
  /** count · each. */
  params: number;
  trainable: boolean;
}

export interface MetParamCounts {
  /** Frozen backbone parameters. */
  backbone: number;
  /** Everything that trains: met_adapters + heads. */
  trainable: number;
  /** backbone + trainable. */
  total: number;
  /** 2Dr: W_d and W_u. */
  sharedProjections: number;
  /** Σ_i 2r²: A_i and B_i of every enabled E-adapter. */
  cores: number;
  /** Σ_i k_i·r: the λ_{i,j} (shared_cls: one per E-adapter). */
  diagonals: number;
  /** The exit branches: K(DC + C) for MET's linear heads; Σ_j of `branches[j].params`. */
  heads: number;
  /** Per exit its branch type and parameters. */
  branches: BranchCount[];
  /** P_MET = sharedProjections + cores + diagonals (heads excluded). */
  met_adapters: number;
  /** P_ind = Σ_i k_i · 2Dr: one independent vanilla adapter per exit token per location. */
  independent_adapters: number;
  /** 1 - P_MET / P_ind, exact (NaN for linear_probe, which has no adapters). */
  reduction: number;
  /** 1 - 1/Σk_i: the D ≫ r limit of `reduction`, the figure the paper quotes (98.48% for Σk = 66). */
  reduction_limit: number;
  /** Σ_i k_i over the enabled E-adapters. */
  sum_k: number;
  /** The enabled E-adapters in order (empty for linear_probe). */
  adapters: AdapterSlot[];
  /** Rows for tables: backbone, W_d, W_u, A, B, λ, heads (trainable ones only when non-empty). */
  components: ParamComponent[];
}

/** k_l: exits at or after layer l (the exit tokens still alive in layer l). */
export function activeExits(exits: readonly number[], layer: number): number {
  let k = 0;
  for (const e of exits) if (e >= layer) k++;
  return k;
}

function checkExits(depth: number, exits: readonly number[]): void {
  if (!Number.isInteger(depth) || depth < 1) throw new Error(`depth must be a positive integer, got ${depth}`);
  if (!exits.length) throw new Error('at least one exit is needed');
  exits.forEach((e, i) => {
    if (!Number.isInteger(e) || e < 1 || e > depth) throw new Error(`exit layer ${e} is outside 1..${depth}`);
    if (i > 0 && e <= exits[i - 1])
      throw new Error(`exit layers must be strictly ascending, got [${exits.join(', ')}]`);
  });
}

/** The enabled E-adapters of a depth-L encoder with the given exits, in index order. */
export function adapterSlots(depth: number, exits: readonly number[], positions: EaPositions = 'both'): AdapterSlot[] {
  checkExits(depth, exits);
  const out: AdapterSlot[] = [];
  for (let l = 1; l <= depth; l++) {
    const k = activeExits(exits, l);
    // Layers after the deepest exit are never run, so they hold no adapters.
    if (k === 0) continue;
    if (positions !== 'mlp') out.push({ index: 2 * l - 1, layer: l, position: 'mha', k });
    if (positions !== 'mha') out.push({ index: 2 * l, layer: l, position: 'mlp', k });
  }
  return out;
}

function posInt(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 1) throw new Error(`${name} must be a positive integer, got ${v}`);
}

/** MET's parameter counts for one configuration (docs/method.md §3). */
export function metParams(s: MetShape): MetParamCounts {
  posInt('dim', s.dim);
  posInt('rank', s.rank);
  posInt('classes', s.classes);
  if (!Number.isFinite(s.backboneParams) || s.backboneParams < 0)
    throw new Error(`bad backbone parameter count ${s.backboneParams}`);
  const D = s.dim;
  const r = s.rank;
  const C = s.classes;
  const K = s.exits.length;
  const probe = s.variant === 'linear_probe';
  let adapters = adapterSlots(s.depth, s.exits, s.eaPositions);
  if (probe) adapters = [];
  else if (s.variant === 'shared_cls') adapters = adapters.map((a) => ({ ...a, k: 1 }));

  const nAd = adapters.length;
  const sum_k = adapters.reduce((a, b) => a + b.k, 0);
  const sharedProjections = probe ? 0 : 2 * D * r;
  const cores = nAd * 2 * r * r;
  const diagonals = sum_k * r;
  const types = branchTypes(s, K);
  const dims = { dim: D, grid: s.grid ?? 0, heads: s.heads ?? 0, mlpDim: s.mlpDim ?? 0 };
  if (types.some((t) => t !== 'linear' && t !== 'mlp')) {
    for (const k of ['grid', 'heads', 'mlpDim'] as const) posInt(k, s[k] as number);
    validateBranches(dims, s, K);
  }
  const branches: BranchCount[] = types.map((type, j) => ({
    exit: j + 1,
    layer: s.exits[j],
    type,
    ...branchParamCount(branchSpec(dims, s, C, type)),
  }));
  const heads = branches.reduce((a, b) => a + b.params, 0);
  const met_adapters = sharedProjections + cores + diagonals;
  const independent_adapters = sum_k * 2 * D * r;
  const trainable = met_adapters + heads;

  const components: ParamComponent[] = [
    {
      name: 'backbone (frozen)',
      shape: '-',
      count: 1,
      each: s.backboneParams,
      params: s.backboneParams,
      trainable: false,
    },
  ];
  if (!probe) {
    components.push(
      {
        name: 'W_d (shared down-projection)',
        shape: `D×r = ${D}×${r}`,
        count: 1,
        each: D * r,
        params: D * r,
        trainable: true,
      },
      {
        name: 'W_u (shared up-projection)',
        shape: `r×D = ${r}×${D}`,
        count: 1,
        each: D * r,
        params: D * r,
        trainable: true,
      },
      {
        name: 'A_i (per E-adapter)',
        shape: `r×r = ${r}×${r}`,
        count: nAd,
        each: r * r,
        params: nAd * r * r,
        trainable: true,
      },
      {
        name: 'B_i (per E-adapter)',
        shape: `r×r = ${r}×${r}`,
        count: nAd,
        each: r * r,
        params: nAd * r * r,
        trainable: true,
      },
      {
        name:
          s.variant === 'shared_cls' ? 'λ_i (one diagonal per E-adapter)' : 'λ_{i,j} (per E-adapter and exit token)',
        shape: `r = ${r}`,
        count: sum_k,
        each: r,
        params: diagonals,
        trainable: true,
      },
    );
  }
  // One row per branch type (every exit of a type has the same branch).
  for (const type of [...new Set(types)]) {
    const of = branches.filter((b) => b.type === type);
    const each = of[0].params;
    if (type === 'linear')
      components.push({
        name: 'heads h_j',
        shape: `D×C + C = ${D}×${C} + ${C}`,
        count: of.length,
        each,
        params: of.length * each,
        trainable: true,
      });
    else
      components.push({
        name: `${type} branches`,
        shape: of[0].formula,
        count: of.length,
        each,
        params: of.length * each,
        trainable: true,
      });
  }

  return {
    backbone: s.backboneParams,
    trainable,
    total: s.backboneParams + trainable,
    sharedProjections,
    cores,
    diagonals,
    heads,
    branches,
    met_adapters,
    independent_adapters,
    reduction: independent_adapters ? 1 - met_adapters / independent_adapters : NaN,
    reduction_limit: sum_k ? 1 - 1 / sum_k : NaN,
    sum_k,
    adapters,
    components,
  };
}

// ---------------------------------------------------------------- backbones

export interface VitArch {
  imageSize: number;
  channels: number;
  patchSize: number;
  dim: number;
  depth: number;
  heads: number;
  /** Per-head width; defaults to dim / heads. */
  headDim?: number;
  mlpDim: number;
  /** timm's ViTs have q/k/v biases (default true). */
  qkvBias?: boolean;
}

/**
 * Parameters of a timm-style ViT without its classification head: patch conv (weights + bias),
 * class token, position embedding (1 + G² tokens), `depth` pre-LN blocks, final LayerNorm.
 * Matches model/config.ts canonicalShapes with numClasses = 0.
 */
export function vitParamCount(a: VitArch): number {
  if (a.imageSize % a.patchSize)
    throw new Error(`image size ${a.imageSize} is not a multiple of the patch size ${a.patchSize}`);
  const D = a.dim;
  const inner = a.heads * (a.headDim ?? D / a.heads);
  const G = a.imageSize / a.patchSize;
  const embed = D * a.channels * a.patchSize * a.patchSize + D + D + (1 + G * G) * D;
  const block =
    2 * D + // norm1
    3 * inner * D +
    (a.qkvBias === false ? 0 : 3 * inner) + // qkv
    D * inner +
    D + // attn proj
    2 * D + // norm2
    a.mlpDim * D +
    a.mlpDim + // fc1
    D * a.mlpDim +
    D; // fc2
  return embed + a.depth * block + 2 * D;
}

export type BackboneName = 'vit-ti16' | 'vit-s16' | 'vit-b16' | 'vit-l16';

export interface BackbonePreset extends Required<Omit<VitArch, 'headDim' | 'qkvBias'>> {
  name: BackboneName;
  /** Parameters without the classification head (vitParamCount). */
  params: number;
}

function preset(name: BackboneName, dim: number, depth: number, heads: number, mlpDim: number): BackbonePreset {
  const arch = { imageSize: 224, channels: 3, patchSize: 16, dim, depth, heads, mlpDim };
  return { name, ...arch, params: vitParamCount(arch) };
}

/** The standard ViT family at 224 px, RGB, patch 16. ViT-B/16: 85,798,656 without a head. */
export const BACKBONE_PRESETS: Readonly<Record<BackboneName, BackbonePreset>> = {
  'vit-ti16': preset('vit-ti16', 192, 12, 3, 768),
  'vit-s16': preset('vit-s16', 384, 12, 6, 1536),
  'vit-b16': preset('vit-b16', 768, 12, 12, 3072),
  'vit-l16': preset('vit-l16', 1024, 24, 16, 4096),
};

/**
 * MET's default exits: after each of the last 7 layers (paper: "each of the last 7 encoder
 * layers"; exits 6..12 for ViT-B), or after every layer when the backbone has fewer than 7.
 */
export function defaultExits(depth: number): number[] {
  posInt('depth', depth);
  const first = Math.max(1, depth - 6);
  return Array.from({ length: depth - first + 1 }, (_, i) => first + i);
}
