// Checkpoint key layouts and their conversion to the canonical (timm) names of config.ts.
//
// Supported layouts, with what differs from timm:
//   timm         the canonical names themselves.
//   hf           Hugging Face transformers ViT: optional 'vit.' prefix, separate query/key/value
//                Linears (stacked into qkv), layernorm_before/after, intermediate/output.dense,
//                'classifier' head. LayerNorm eps 1e-12.
//   torchvision  vit_* models: class_token, conv_proj, encoder.pos_embedding, nn.MultiheadAttention's
//                packed in_proj (already [q;k;v] like timm), mlp.0/mlp.3 (older: mlp.linear_1/2),
//                encoder.ln, heads.head.
//   vit-pytorch  lucidrains' ViT: the patch embedding is a Linear on each patch flattened in
//                (p1 p2 c) order (reshaped here into the equivalent conv kernel), to_qkv has no
//                bias, dim_head defaults to 64 whatever the width. Two eras: PreNorm wrappers
//                (`.0.norm` + `.0.fn.to_qkv`, `.1.norm` + `.1.fn.net.0/.3`, `mlp_head.0` = final norm,
//                `mlp_head.1` = head) and the newer one with the norms inside the blocks (`.0.norm` +
//                `.0.to_qkv`, `.1.net.0` norm + `.1.net.1/.4`, `transformer.norm`, `mlp_head` Linear).
//                The newest releases also put LayerNorms around the patch Linear; the standard ViT
//                graph cannot express those, so such files are refused with an explanation.
//   npz          Google's JAX/Flax checkpoints: kernels are [in, out] (transposed), the patch kernel is
//                HWIO, attention kernels are per head ([D, H, dh] in, [H, dh, D] out), LayerNorm
//                weights are called 'scale'. A pre_logits layer is not supported: it is reported and
//                the head trained on top of it is dropped with it.
//
// toCanonical works in three steps: (1) each layout lists rules "canonical name <- source keys +
// transform"; (2) the VitConfig is inferred from the converted tensors' shapes (and overrides);
// (3) every tensor is checked against canonicalShapes(config) and the report is filled.

import { type HostTensor, UserError, type UserErrorCode, shapeStr, toFloat32 } from '../tensor';
import {
  HEADS_BY_DIM,
  IMAGENET_MEAN,
  IMAGENET_STD,
  INCEPTION_MEAN,
  INCEPTION_STD,
  type VitConfig,
  canonicalShapes,
} from '../model/config';
import { ShapeError, concat0, permute, reshape, transpose2d } from './ops';

export type Layout = 'timm' | 'hf' | 'torchvision' | 'vit-pytorch' | 'npz';
export const LAYOUTS: readonly Layout[] = ['timm', 'hf', 'torchvision', 'vit-pytorch', 'npz'];

export interface ShapeMismatch {
  /** Canonical name. */
  name: string;
  expected: number[];
  found: number[];
  /** The checkpoint key(s) it came from, when they differ from the canonical name. */
  source?: string;
  /** Why the layout conversion failed, when it did (`found` is then the checkpoint's own shape). */
  detail?: string;
}

export interface LoadReport {
  /** Canonical names the config needs but the checkpoint lacks. */
  missing: string[];
  /** Checkpoint keys (original names) that were not used. */
  unexpected: string[];
  mismatched: ShapeMismatch[];
  /** Explanations (dropped pre_logits, synthesised identity projections, ignored optimizer state...). */
  notes: string[];
  /** Canonical name -> checkpoint key(s) it is read from in this layout, for messages about missing tensors. */
  sources: Record<string, string[]>;
}

export interface CanonicalWeights {
  /** Canonical (timm) names, float32. */
  tensors: Map<string, HostTensor>;
  config: VitConfig;
  report: LoadReport;
}

/** One conversion step: canonical name <- source keys, through `convert` (default: the single source as is). */
interface Rule {
  name: string;
  sources: string[];
  convert?: (ts: HostTensor[]) => HostTensor;
}

/** What a layout's converter produces besides rules: shape facts only the raw layout knows. */
interface LayoutPlan {
  rules: Rule[];
  depth: number;
  /** Keys to drop without reporting them as unexpected (e.g. optimizer state next to the weights). */
  ignored: Set<string>;
  notes: string[];
  heads?: number;
  headDim?: number;
  /** Extra canonical tensors synthesised without a source (vit-pytorch's identity to_out). */
  synth?: (config: VitConfig) => Map<string, HostTensor>;
}

type State = Map<string, HostTensor>;

// ---------------------------------------------------------------------------------------------
// Layout detection

/** Key patterns characteristic of each layout; the layout with most matching keys wins. */
const SIGNATURES: [Layout, RegExp][] = [
  ['npz', /(^|\/)embedding\/kernel$|(^|\/)Transformer\/encoderblock_\d+\//],
  [
    'hf',
    /(^|\.)embeddings\.patch_embeddings\.projection\.weight$|(^|\.)encoder\.layer\.\d+\.attention\.attention\.(query|key|value)\.weight$/,
  ],
  ['torchvision', /^conv_proj\.weight$|^class_token$|^encoder\.pos_embedding$|^encoder\.layers\.encoder_layer_\d+\./],
  ['vit-pytorch', /^to_patch_embedding\.\d+\.weight$|^pos_embedding$|^transformer\.layers\.\d+\.\d+\./],
  ['timm', /^patch_embed\.proj\.weight$|^pos_embed$|^blocks\.\d+\.(attn|mlp|norm1|norm2)\./],
];

/** Chooses the layout from the checkpoint's keys. Throws a UserError listing a few keys when nothing matches. */
export function detectLayout(keys: Iterable<string>, name = 'checkpoint'): Layout {
  const list = [...keys];
  let best: Layout | undefined;
  let bestScore = 0;
  for (const [layout, re] of SIGNATURES) {
    const score = list.filter((k) => re.test(k)).length;
    if (score > bestScore) {
      best = layout;
      bestScore = score;
    }
  }
  if (!best) {
    const sample = list
      .slice(0, 6)
      .map((k) => `'${k}'`)
      .join(', ');
    throw new UserError(
      `${name}: cannot tell the checkpoint layout from its keys (${list.length} keys: ${sample}${list.length > 6 ? ', ...' : ''}); ` +
        `supported layouts: ${LAYOUTS.join(', ')}. Pass the layout explicitly if the names are merely prefixed.`,
    );
  }
  return best;
}

// ---------------------------------------------------------------------------------------------
// Helpers for the converters

/** Highest block index + 1 among keys matching `re` (whose first group is the index). */
function countBlocks(keys: Iterable<string>, re: RegExp): number {
  let depth = 0;
  for (const k of keys) {
    const m = re.exec(k);
    if (m) depth = Math.max(depth, Number(m[1]) + 1);
  }
  return depth;
}

/** Canonical names of a model of `depth` blocks, including every optional tensor. */
function allCanonicalNames(depth: number): string[] {
  const shapes = canonicalShapes({
    imageSize: 1,
    channels: 1,
    patchSize: 1,
    dim: 1,
    depth,
    heads: 1,
    headDim: 1,
    mlpDim: 1,
    act: 'gelu',
    qkvBias: true,
    lnEps: 1e-6,
    numClasses: 1,
    posGrid: 1,
    mean: [0],
    std: [1],
  });
  return [...shapes.keys()];
}

/** Rules weight/bias for an affine layer (Linear or LayerNorm) whose parameters are renamed only. */
function affine(rules: Rule[], canonical: string, source: string): void {
  rules.push({ name: `${canonical}.weight`, sources: [`${source}.weight`] });
  rules.push({ name: `${canonical}.bias`, sources: [`${source}.bias`] });
}

function firstPresent(state: State, candidates: string[]): string {
  return candidates.find((k) => state.has(k)) ?? candidates[0];
}

// ---------------------------------------------------------------------------------------------
// Per-layout plans

function planTimm(state: State): LayoutPlan {
  const depth = countBlocks(state.keys(), /^blocks\.(\d+)\./);
  const rules = allCanonicalNames(depth).map((n) => ({ name: n, sources: [n] }));
  return { rules, depth, ignored: new Set(), notes: [] };
}

function planHf(state: State): LayoutPlan {
  // The prefix is whatever precedes 'embeddings.'/'encoder.': 'vit.' for ViTForImageClassification, '' for ViTModel.
  let prefix = '';
  for (const k of state.keys()) {
    const m =
      /^(.*?)(embeddings\.patch_embeddings\.projection\.weight|encoder\.layer\.\d+\.attention\.attention\.query\.weight)$/.exec(
        k,
      );
    if (m) {
      prefix = m[1];
      break;
    }
  }
  const esc = prefix.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const depth = countBlocks(state.keys(), new RegExp(`^${esc}encoder\\.layer\\.(\\d+)\\.`));
  const p = prefix;
  const rules: Rule[] = [];
  affine(rules, 'patch_embed.proj', `${p}embeddings.patch_embeddings.projection`);
  rules.push({ name: 'cls_token', sources: [`${p}embeddings.cls_token`] });
  rules.push({ name: 'pos_embed', sources: [`${p}embeddings.position_embeddings`] });
  for (let i = 0; i < depth; i++) {
    const b = `blocks.${i}.`;
    const L = `${p}encoder.layer.${i}.`;
    const A = `${L}attention.attention.`;
    affine(rules, b + 'norm1', L + 'layernorm_before');
    // Stacked rows [q; k; v] match timm's qkv, whose output is split as (3, heads, head_dim).
    rules.push({
      name: b + 'attn.qkv.weight',
      sources: ['query', 'key', 'value'].map((x) => `${A}${x}.weight`),
      convert: concat0,
    });
    rules.push({
      name: b + 'attn.qkv.bias',
      sources: ['query', 'key', 'value'].map((x) => `${A}${x}.bias`),
      convert: concat0,
    });
    affine(rules, b + 'attn.proj', L + 'attention.output.dense');
    affine(rules, b + 'norm2', L + 'layernorm_after');
    affine(rules, b + 'mlp.fc1', L + 'intermediate.dense');
    affine(rules, b + 'mlp.fc2', L + 'output.dense');
  }
  affine(rules, 'norm', `${p}layernorm`);
  affine(rules, 'head', 'classifier');
  return { rules, depth, ignored: new Set(), notes: [] };
}

function planTorchvision(state: State): LayoutPlan {
  const depth = countBlocks(state.keys(), /^encoder\.layers\.encoder_layer_(\d+)\./);
  const notes: string[] = [];
  const rules: Rule[] = [];
  affine(rules, 'patch_embed.proj', 'conv_proj');
  rules.push({ name: 'cls_token', sources: ['class_token'] });
  rules.push({ name: 'pos_embed', sources: ['encoder.pos_embedding'] });
  for (let i = 0; i < depth; i++) {
    const b = `blocks.${i}.`;
    const L = `encoder.layers.encoder_layer_${i}.`;
    affine(rules, b + 'norm1', L + 'ln_1');
    // nn.MultiheadAttention packs [q; k; v] in in_proj exactly like timm's qkv.
    rules.push({ name: b + 'attn.qkv.weight', sources: [L + 'self_attention.in_proj_weight'] });
    rules.push({ name: b + 'attn.qkv.bias', sources: [L + 'self_attention.in_proj_bias'] });
    affine(rules, b + 'attn.proj', L + 'self_attention.out_proj');
    affine(rules, b + 'norm2', L + 'ln_2');
    // MLPBlock was Sequential(Linear, GELU, Dropout, Linear, Dropout) -> mlp.0 / mlp.3 since
    // torchvision 0.14; earlier releases named them linear_1 / linear_2.
    affine(
      rules,
      b + 'mlp.fc1',
      firstPresent(state, [L + 'mlp.0.weight', L + 'mlp.linear_1.weight']).replace(/\.weight$/, ''),
    );
    affine(
      rules,
      b + 'mlp.fc2',
      firstPresent(state, [L + 'mlp.3.weight', L + 'mlp.linear_2.weight']).replace(/\.weight$/, ''),
    );
  }
  affine(rules, 'norm', 'encoder.ln');
  if ([...state.keys()].some((k) => k.startsWith('heads.pre_logits.'))) {
    notes.push(
      'heads.pre_logits (a representation layer with tanh before the head) is not supported: it and the head trained on top of it were dropped, so the model has no classifier head (numClasses 0)',
    );
  } else {
    affine(rules, 'head', 'heads.head');
  }
  return { rules, depth, ignored: new Set(), notes };
}

/** Splits lucidrains' patch Linear input width p*p*C into (channels, patch) ; the overrides win. */
function vitPytorchPatch(
  patchDim: number,
  overrides: Partial<VitConfig>,
  name: string,
): { channels: number; patch: number } {
  const fromChannels = (c: number): number | undefined => {
    const p = Math.round(Math.sqrt(patchDim / c));
    return p * p * c === patchDim ? p : undefined;
  };
  if (overrides.channels !== undefined) {
    const p = overrides.patchSize ?? fromChannels(overrides.channels);
    if (p !== undefined && p * p * overrides.channels === patchDim) return { channels: overrides.channels, patch: p };
  } else if (overrides.patchSize !== undefined) {
    const c = patchDim / (overrides.patchSize * overrides.patchSize);
    if (Number.isInteger(c)) return { channels: c, patch: overrides.patchSize };
  } else {
    // p*p*3 and q*q*1 can never be equal (sqrt(3) is irrational), so trying RGB then grayscale is unambiguous.
    for (const c of [3, 1]) {
      const p = fromChannels(c);
      if (p !== undefined) return { channels: c, patch: p };
    }
  }
  throw new UserError(
    `${name}: the patch embedding takes ${patchDim} inputs per patch (patch*patch*channels), which does not ` +
      'split into a square patch of 1 or 3 channels' +
      (overrides.channels !== undefined || overrides.patchSize !== undefined
        ? ' matching the given channels/patchSize'
        : '') +
      '; pass overrides.channels and overrides.patchSize',
  );
}

function planVitPytorch(state: State, overrides: Partial<VitConfig>, name: string): LayoutPlan {
  const keys = [...state.keys()];
  const depth = countBlocks(keys, /^transformer\.layers\.(\d+)\./);
  const notes: string[] = [];
  const rules: Rule[] = [];

  // to_patch_embedding = Sequential(Rearrange, Linear) in the classic releases: the Linear is the
  // only module with a 2-D weight. Newer releases wrap it as Sequential(Rearrange, LayerNorm,
  // Linear, LayerNorm): LayerNorm over the raw patch is not linear, so no conv kernel can stand in for it.
  const patchKeys = keys.filter((k) => k.startsWith('to_patch_embedding.'));
  const linear = patchKeys.find((k) => k.endsWith('.weight') && state.get(k)!.shape.length === 2);
  const others = patchKeys.filter((k) => linear === undefined || !k.startsWith(linear.replace(/weight$/, '')));
  if (others.length > 0) {
    throw new UserError(
      `${name}: this vit-pytorch checkpoint has LayerNorms around the patch embedding (${others.join(', ')}); ` +
        'the standard ViT graph (a strided convolution) cannot represent them. Only the classic vit-pytorch layout with a single patch Linear is supported',
    );
  }
  if (linear) {
    const lin = linear.replace(/\.weight$/, '');
    const [D, patchDim] = state.get(linear)!.shape;
    const { channels: C, patch: p } = vitPytorchPatch(patchDim, overrides, name);
    // Input index (i*p + j)*C + c (the (p1 p2 c) flattening) -> kernel [D, C, p, p] at [d, c, i, j].
    rules.push({
      name: 'patch_embed.proj.weight',
      sources: [linear],
      convert: ([w]) => permute(reshape(w, [D, p, p, C]), [0, 3, 1, 2]),
    });
    rules.push({ name: 'patch_embed.proj.bias', sources: [`${lin}.bias`] });
  } else {
    rules.push({ name: 'patch_embed.proj.weight', sources: ['to_patch_embedding.1.weight'] });
    rules.push({ name: 'patch_embed.proj.bias', sources: ['to_patch_embedding.1.bias'] });
  }
  rules.push({ name: 'cls_token', sources: ['cls_token'] });
  rules.push({ name: 'pos_embed', sources: ['pos_embedding'] });

  // PreNorm era: norms in the wrappers, modules under `.fn`. Newer: norms inside Attention/FeedForward.
  const preNorm = keys.some((k) => /^transformer\.layers\.\d+\.\d+\.fn\./.test(k));
  const hasToOut = keys.some((k) => /^transformer\.layers\.\d+\.0\.(fn\.)?to_out\./.test(k));
  for (let i = 0; i < depth; i++) {
    const b = `blocks.${i}.`;
    const L = `transformer.layers.${i}.`;
    const attn = preNorm ? `${L}0.fn.` : `${L}0.`;
    affine(rules, b + 'norm1', `${L}0.norm`);
    rules.push({ name: b + 'attn.qkv.weight', sources: [`${attn}to_qkv.weight`] });
    rules.push({ name: b + 'attn.qkv.bias', sources: [`${attn}to_qkv.bias`] });
    if (hasToOut) affine(rules, b + 'attn.proj', `${attn}to_out.0`);
    if (preNorm) {
      affine(rules, b + 'norm2', `${L}1.norm`);
      affine(rules, b + 'mlp.fc1', `${L}1.fn.net.0`);
      affine(rules, b + 'mlp.fc2', `${L}1.fn.net.3`);
    } else {
      affine(rules, b + 'norm2', `${L}1.net.0`);
      affine(rules, b + 'mlp.fc1', `${L}1.net.1`);
      affine(rules, b + 'mlp.fc2', `${L}1.net.4`);
    }
  }
  // Final norm: mlp_head.0 (PreNorm era: mlp_head = Sequential(LayerNorm, Linear)) or transformer.norm.
  affine(rules, 'norm', state.has('transformer.norm.weight') ? 'transformer.norm' : 'mlp_head.0');
  affine(rules, 'head', state.has('mlp_head.weight') ? 'mlp_head' : 'mlp_head.1');

  const plan: LayoutPlan = { rules, depth, ignored: new Set(), notes, headDim: 64 };
  if (!hasToOut && depth > 0) {
    // Attention(project_out=False) when heads == 1 and dim_head == dim: to_out is nn.Identity.
    // Only then is an identity right; otherwise the projections are reported missing.
    plan.synth = (c) => {
      const out = new Map<string, HostTensor>();
      if (c.heads !== 1 || c.headDim !== c.dim) return out;
      notes.push(
        'to_out is an identity in this checkpoint (1 head as wide as the model); identity projections were synthesised',
      );
      for (let i = 0; i < c.depth; i++) {
        const w = new Float32Array(c.dim * c.dim);
        for (let r = 0; r < c.dim; r++) w[r * c.dim + r] = 1;
        out.set(`blocks.${i}.attn.proj.weight`, { dtype: 'float32', shape: [c.dim, c.dim], data: w });
        out.set(`blocks.${i}.attn.proj.bias`, { dtype: 'float32', shape: [c.dim], data: new Float32Array(c.dim) });
      }
      return out;
    };
  }
  return plan;
}

function planNpz(state: State): LayoutPlan {
  const keys = [...state.keys()];
  // big_vision / training checkpoints nest the weights under 'opt/target/' or 'params/' next to optimizer state.
  // The weights' prefix is what precedes 'embedding/kernel'; the shortest wins over optimizer mirrors of the same names.
  const prefixes = keys.map((k) => /^(.*?)embedding\/kernel$/.exec(k)?.[1]).filter((x): x is string => x !== undefined);
  const prefix = prefixes.sort((a, b) => a.length - b.length)[0] ?? '';
  const ignored = new Set(prefix ? keys.filter((k) => !k.startsWith(prefix)) : []);
  const notes: string[] = [];
  if (ignored.size > 0) notes.push(`${ignored.size} keys outside '${prefix}' (optimizer state) were ignored`);
  const P = prefix;
  const esc = P.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const depth = countBlocks(keys, new RegExp(`^${esc}Transformer/encoderblock_(\\d+)/`));
  const rules: Rule[] = [];
  const ln = (canonical: string, src: string): void => {
    rules.push({ name: `${canonical}.weight`, sources: [`${src}/scale`] });
    rules.push({ name: `${canonical}.bias`, sources: [`${src}/bias`] });
  };
  const dense = (canonical: string, src: string): void => {
    // Flax Dense kernels are [in, out]; torch Linear weights are [out, in].
    rules.push({ name: `${canonical}.weight`, sources: [`${src}/kernel`], convert: ([k]) => transpose2d(k) });
    rules.push({ name: `${canonical}.bias`, sources: [`${src}/bias`] });
  };
  // Patch kernel HWIO [p, p, C, D] -> OIHW [D, C, p, p].
  rules.push({
    name: 'patch_embed.proj.weight',
    sources: [`${P}embedding/kernel`],
    convert: ([k]) => {
      if (k.shape.length !== 4) throw new ShapeError(k.shape, 'patch kernel must be 4-D');
      return permute(k, [3, 2, 0, 1]);
    },
  });
  rules.push({ name: 'patch_embed.proj.bias', sources: [`${P}embedding/bias`] });
  rules.push({ name: 'cls_token', sources: [`${P}cls`] });
  rules.push({ name: 'pos_embed', sources: [`${P}Transformer/posembed_input/pos_embedding`] });

  // Per-head kernels: q/k/v [D, H, dh] -> rows [H*dh, D]; out [H, dh, D] -> [D, H*dh].
  const qkvIn = (k: HostTensor): HostTensor => {
    if (k.shape.length !== 3) throw new ShapeError(k.shape, 'attention kernel must be [D, heads, head_dim]');
    return transpose2d(reshape(k, [k.shape[0], k.shape[1] * k.shape[2]]));
  };
  const flatBias = (b: HostTensor): HostTensor => reshape(b, [b.data.length]);
  for (let i = 0; i < depth; i++) {
    const b = `blocks.${i}.`;
    const E = `${P}Transformer/encoderblock_${i}/`;
    const A = `${E}MultiHeadDotProductAttention_1/`;
    ln(b + 'norm1', `${E}LayerNorm_0`);
    rules.push({
      name: b + 'attn.qkv.weight',
      sources: ['query', 'key', 'value'].map((x) => `${A}${x}/kernel`),
      convert: (ks) => concat0(ks.map(qkvIn)),
    });
    rules.push({
      name: b + 'attn.qkv.bias',
      sources: ['query', 'key', 'value'].map((x) => `${A}${x}/bias`),
      convert: (bs) => concat0(bs.map(flatBias)),
    });
    rules.push({
      name: b + 'attn.proj.weight',
      sources: [`${A}out/kernel`],
      convert: ([k]) => {
        if (k.shape.length !== 3) throw new ShapeError(k.shape, 'attention output kernel must be [heads, head_dim, D]');
        return transpose2d(reshape(k, [k.shape[0] * k.shape[1], k.shape[2]]));
      },
    });
    rules.push({ name: b + 'attn.proj.bias', sources: [`${A}out/bias`] });
    ln(b + 'norm2', `${E}LayerNorm_2`);
    dense(b + 'mlp.fc1', `${E}MlpBlock_3/Dense_0`);
    dense(b + 'mlp.fc2', `${E}MlpBlock_3/Dense_1`);
  }
  ln('norm', `${P}Transformer/encoder_norm`);
  if (keys.some((k) => k.startsWith(`${P}pre_logits/`))) {
    notes.push(
      'pre_logits (a representation layer with tanh before the head) is not supported: it and the head trained on top of it were dropped, so the model has no classifier head (numClasses 0)',
    );
  } else {
    dense('head', `${P}head`);
  }
  const plan: LayoutPlan = { rules, depth, ignored, notes };
  const q = state.get(`${P}Transformer/encoderblock_0/MultiHeadDotProductAttention_1/query/kernel`);
  if (q && q.shape.length === 3) {
    plan.heads = q.shape[1];
    plan.headDim = q.shape[2];
  }
  return plan;
}

// ---------------------------------------------------------------------------------------------
// Config inference and validation

const DEFAULT_LN_EPS: Record<Layout, number> = {
  timm: 1e-6,
  hf: 1e-12,
  torchvision: 1e-6,
  'vit-pytorch': 1e-5,
  npz: 1e-6,
};

function defaultNorm(layout: Layout, channels: number): { mean: number[]; std: number[] } {
  const fit = (v: number[]): number[] => {
    if (channels === v.length) return v.slice();
    // Grayscale (or any other channel count): the average of the RGB statistics for every channel.
    const avg = v.reduce((a, b) => a + b, 0) / v.length;
    return new Array<number>(channels).fill(avg);
  };
  if (layout === 'torchvision') return { mean: fit(IMAGENET_MEAN), std: fit(IMAGENET_STD) };
  return { mean: fit(INCEPTION_MEAN), std: fit(INCEPTION_STD) };
}

/**
 * `t` holds the converted tensors; `attempted` the canonical names for which the checkpoint has
 * at least one source key (converted or not), so that a damaged tensor still counts as present.
 */
function inferConfig(
  t: Map<string, HostTensor>,
  attempted: Set<string>,
  layout: Layout,
  plan: LayoutPlan,
  o: Partial<VitConfig>,
  name: string,
): VitConfig {
  const fail = (msg: string, code?: UserErrorCode, details?: Record<string, number>): never => {
    throw new UserError(`${name}: ${msg}`, code, details);
  };
  const dimOf = (key: string, axis: number): number | undefined => {
    const s = t.get(key)?.shape;
    return s && s.length > axis ? s[axis] : undefined;
  };
  const patchW = t.get('patch_embed.proj.weight')?.shape;
  const patch4 = patchW && patchW.length === 4 ? patchW : undefined;

  const dim =
    o.dim ??
    patch4?.[0] ??
    dimOf('cls_token', 2) ??
    dimOf('pos_embed', 2) ??
    dimOf('norm.weight', 0) ??
    fail(
      `cannot infer the model width: no patch embedding, cls token, position embedding or final norm found (layout ${layout})`,
    );
  if (patch4 && patch4[2] !== patch4[3] && o.patchSize === undefined)
    fail(`non-square patches ${shapeStr(patch4.slice(2))} are not supported`);
  // Fallbacks below keep inference going when a tensor is missing, so the report can name it.
  const channels = o.channels ?? patch4?.[1] ?? 3;
  const patchSize = o.patchSize ?? patch4?.[2] ?? 16;
  const depth = o.depth ?? plan.depth;
  const inner = (() => {
    const rows = dimOf('blocks.0.attn.qkv.weight', 0);
    if (rows !== undefined && rows % 3 === 0) return rows / 3;
    return (
      dimOf('blocks.0.attn.proj.weight', 1) ??
      (o.heads !== undefined && o.headDim !== undefined ? o.heads * o.headDim : dim)
    );
  })();

  let heads: number;
  let headDim: number;
  const split = (h: number, why: string): number => {
    if (!Number.isInteger(h) || h <= 0 || inner % h !== 0)
      fail(`${why}: attention width ${inner} is not divisible into ${h} heads`);
    return inner / h;
  };
  if (o.heads !== undefined) {
    heads = o.heads;
    headDim = o.headDim ?? split(o.heads, 'heads (--heads / "heads" in met.config.json)');
  } else if (o.headDim !== undefined) {
    if (inner % o.headDim !== 0) fail(`head width ${o.headDim} does not divide the attention width ${inner}`);
    headDim = o.headDim;
    heads = inner / o.headDim;
  } else if (plan.heads !== undefined && plan.headDim !== undefined) {
    heads = plan.heads;
    headDim = plan.headDim;
  } else if (plan.headDim !== undefined) {
    // vit-pytorch: dim_head is 64 unless the model was built otherwise.
    if (inner % plan.headDim !== 0) {
      fail(
        `the attention width ${inner} is not a multiple of vit-pytorch's default head width ${plan.headDim}; pass the number of heads (--heads N, or "heads" in met.config.json)`,
        'heads-unknown',
        { width: inner },
      );
    }
    headDim = plan.headDim;
    heads = inner / headDim;
  } else {
    const h = HEADS_BY_DIM[dim];
    if (h === undefined) {
      fail(
        `cannot infer the number of attention heads for width ${dim} (the ${layout} layout does not record it, and ${dim} is not a standard ` +
          `ViT width: ${Object.keys(HEADS_BY_DIM).join(', ')}); pass the number of heads (--heads N, or "heads" in met.config.json)`,
        'heads-unknown',
        { width: dim },
      );
    }
    heads = h;
    headDim = split(h, `standard head count ${h} for width ${dim}`);
  }

  const posLen = dimOf('pos_embed', 1);
  let posGrid = o.posGrid;
  if (posGrid === undefined) {
    if (posLen === undefined) posGrid = o.imageSize !== undefined ? Math.floor(o.imageSize / patchSize) : 14;
    else {
      const g = Math.round(Math.sqrt(posLen - 1));
      if (g * g !== posLen - 1) {
        fail(
          `the position embedding has ${posLen} positions; expected 1 + G*G (a class token and a square patch grid)`,
        );
      }
      posGrid = g;
    }
  }
  const norm = defaultNorm(layout, channels);
  const config: VitConfig = {
    imageSize: o.imageSize ?? posGrid * patchSize,
    channels,
    patchSize,
    dim,
    depth,
    heads,
    headDim,
    mlpDim: o.mlpDim ?? dimOf('blocks.0.mlp.fc1.weight', 0) ?? dimOf('blocks.0.mlp.fc2.weight', 1) ?? 4 * dim,
    act: o.act ?? 'gelu',
    qkvBias: o.qkvBias ?? [...attempted].some((n) => /^blocks\.\d+\.attn\.qkv\.bias$/.test(n)),
    lnEps: o.lnEps ?? DEFAULT_LN_EPS[layout],
    numClasses: o.numClasses ?? dimOf('head.weight', 0) ?? dimOf('head.bias', 0) ?? 0,
    posGrid,
    mean: o.mean ?? norm.mean,
    std: o.std ?? norm.std,
  };
  if (config.mean.length !== channels || config.std.length !== channels) {
    fail(`mean/std have ${config.mean.length}/${config.std.length} values for ${channels} channels`);
  }
  return config;
}

/**
 * Converts a checkpoint's tensors from `layout` to canonical names (float32), infers the
 * VitConfig from their shapes (overrides win), and reports missing, unexpected and mis-shaped
 * tensors. Does not throw for an incomplete checkpoint: callers decide (see loadBackbone).
 * Throws UserError when the layout cannot be converted at all (e.g. heads cannot be inferred).
 */
export function toCanonical(
  state: Map<string, HostTensor>,
  layout: Layout,
  overrides: Partial<VitConfig> = {},
  name = 'checkpoint',
): CanonicalWeights {
  let plan: LayoutPlan;
  switch (layout) {
    case 'timm':
      plan = planTimm(state);
      break;
    case 'hf':
      plan = planHf(state);
      break;
    case 'torchvision':
      plan = planTorchvision(state);
      break;
    case 'vit-pytorch':
      plan = planVitPytorch(state, overrides, name);
      break;
    case 'npz':
      plan = planNpz(state);
      break;
    default:
      throw new UserError(`${name}: unknown layout '${String(layout)}' (supported: ${LAYOUTS.join(', ')})`);
  }

  const tensors = new Map<string, HostTensor>();
  const consumed = new Set<string>();
  const failed = new Map<string, { found: number[]; detail: string }>();
  const partial: string[] = [];
  const attempted = new Set<string>();
  const sources: Record<string, string[]> = {};
  for (const rule of plan.rules) {
    sources[rule.name] = rule.sources;
    const present = rule.sources.filter((s) => state.has(s));
    if (present.length === 0) continue;
    attempted.add(rule.name);
    present.forEach((s) => consumed.add(s));
    if (present.length < rule.sources.length) {
      // E.g. HF query/value found but not key: the canonical tensor cannot be built.
      partial.push(rule.name);
      continue;
    }
    const inputs = rule.sources.map((s) => toFloat32(state.get(s)!));
    try {
      tensors.set(rule.name, rule.convert ? rule.convert(inputs) : inputs[0]);
    } catch (e) {
      if (!(e instanceof ShapeError)) throw e;
      failed.set(rule.name, { found: e.found, detail: e.message });
    }
  }

  const config = inferConfig(tensors, attempted, layout, plan, overrides, name);
  if (plan.synth) for (const [k, v] of plan.synth(config)) if (!tensors.has(k)) tensors.set(k, v);

  const expected = canonicalShapes(config);
  const report: LoadReport = { missing: [], unexpected: [], mismatched: [], notes: plan.notes.slice(), sources };
  const sourceLabel = (n: string): string | undefined => {
    const s = sources[n];
    return s && !(s.length === 1 && s[0] === n) ? s.join(' + ') : undefined;
  };
  for (const [n, shape] of expected) {
    const f = failed.get(n);
    const t = tensors.get(n);
    if (f)
      report.mismatched.push({ name: n, expected: shape, found: f.found, source: sourceLabel(n), detail: f.detail });
    else if (!t) report.missing.push(n);
    else if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      report.mismatched.push({ name: n, expected: shape, found: t.shape, source: sourceLabel(n) });
    }
  }
  for (const n of partial) {
    if (expected.has(n) && !report.missing.includes(n)) report.missing.push(n);
    const absent = (sources[n] ?? []).filter((s) => !state.has(s));
    report.notes.push(`${n}: incomplete in the checkpoint (no ${absent.map((s) => `'${s}'`).join(', ')})`);
  }
  // Converted tensors the config does not use (e.g. a qkv bias with overrides.qkvBias=false) go back to their original names.
  for (const n of tensors.keys()) {
    if (!expected.has(n)) {
      for (const s of sources[n] ?? [n]) if (state.has(s)) consumed.delete(s);
      tensors.delete(n);
    }
  }
  for (const n of failed.keys()) if (!expected.has(n)) for (const s of sources[n] ?? []) consumed.delete(s);
  for (const k of state.keys()) if (!consumed.has(k) && !plan.ignored.has(k)) report.unexpected.push(k);
  return { tensors, config, report };
}

/** Human-readable summary of a report, one problem per line, each prefixed with `name` (the file). */
export function formatReport(report: LoadReport, name = 'checkpoint'): string {
  const lines: string[] = [];
  const from = (n: string): string => {
    const s = report.sources[n];
    return s && !(s.length === 1 && s[0] === n) ? ` (checkpoint key ${s.map((x) => `'${x}'`).join(' + ')})` : '';
  };
  for (const m of report.mismatched) {
    const src = m.source ? ` (checkpoint key '${m.source}')` : '';
    lines.push(
      `${name}: tensor '${m.name}' expected ${shapeStr(m.expected)}, found ${shapeStr(m.found)}${src}${m.detail ? `: ${m.detail}` : ''}`,
    );
  }
  for (const n of report.missing) lines.push(`${name}: tensor '${n}' is missing${from(n)}`);
  if (report.unexpected.length > 0) {
    const shown = report.unexpected
      .slice(0, 20)
      .map((k) => `'${k}'`)
      .join(', ');
    lines.push(
      `${name}: ${report.unexpected.length} unexpected key(s), ignored: ${shown}${report.unexpected.length > 20 ? ', ...' : ''}`,
    );
  }
  for (const note of report.notes) lines.push(`${name}: note: ${note}`);
  return lines.join('\n');
}
