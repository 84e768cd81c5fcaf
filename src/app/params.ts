// MET's parameter accounting (docs/method.md §3) and per-exit GFLOPs (docs/method.md §4.3) for a
// configuration, before training it: what `met params` prints, what the engine server answers
// params/compute with (the parameter-counts panel, the config file's CodeLens). Takes the same
// settings as `met train` (a config file and settings over it), plus a standard backbone by name
// instead of a checkpoint and the class count instead of a data folder.
//
// Not pure (reads checkpoints, scans the data folder); its types are what the extension imports.

import * as path from 'node:path';
import { scanDataset } from '../engine/data/folder';
import { cumulative, presetConfig, segmentAndBranchMacs } from '../engine/export/costs';
import {
  BACKBONE_PRESETS,
  type BackboneName,
  type BranchCount,
  metParams,
  type MetParamCounts,
  type ParamComponent,
  vitParamCount,
} from '../engine/infer/params';
import { branchDims, type BranchSettings, branchSpecs, validateBranches } from '../engine/model/branches';
import type { BranchType } from '../engine/settings';
import type { VitConfig } from '../engine/model/config';
import { defaultExits, metParamShapes, validateMetConfig } from '../engine/model/met';
import { metConfigOf, TRAIN_DEFAULTS, type TrainConfig } from '../engine/run/config';
import { validateConfig } from '../engine/run/schema';
import { UserError } from '../engine/tensor';
import { loadBackbone } from '../engine/weights';
import { findConfigFile, loadConfigFile, parseConfigText } from './configFile';
import { headsBesideWeights } from './settings';

export const PRESETS = Object.keys(BACKBONE_PRESETS) as BackboneName[];

export interface ParamsReport {
  model: {
    name: string;
    imageSize: number;
    channels: number;
    patchSize: number;
    dim: number;
    depth: number;
    heads: number;
    mlpDim: number;
  };
  config: {
    exits: number[];
    rank: number;
    classes: number;
    variant: string;
    eaPositions: string;
    featurePath: string;
    branch: BranchType | BranchType[];
  };
  /** Frozen backbone parameters (without its own classification head). */
  backbone: number;
  /** MET adapters + exit heads. */
  trainable: number;
  total: number;
  /** 100 · trainable / backbone. */
  trainable_percent: number;
  met_adapters: number;
  independent_adapters: number;
  /** null where there are no adapters (linear_probe). */
  reduction: number | null;
  reduction_limit: number | null;
  sum_k: number;
  shared_projections: number;
  cores: number;
  diagonals: number;
  /** Parameters of all exit branches (K(DC + C) for MET's linear heads). */
  heads: number;
  /** Per exit: branch type, parameters (by part) and the resolved widths. */
  branches: (BranchCount & { widths: Record<string, number> })[];
  /** Enabled E-adapters. */
  adapters: number;
  /** Values in trainable.safetensors: the stacks hold every layer's A_i, B_i, λ (used or not). */
  stored_trainable: number;
  components: ParamComponent[];
  /** Per exit: its layer and branch, GFLOPs per image to reach it (cumulative, its branch
   *  included), of its segment, and of its branch alone (part of the segment). */
  exits: {
    exit: number;
    layer: number;
    branch: BranchType;
    gflops: number;
    segment_gflops: number;
    branch_gflops: number;
  }[];
}

async function resolveBackbone(
  a: Record<string, unknown>,
  c: Partial<TrainConfig>,
): Promise<{ name: string; vit: VitConfig }> {
  if (a.backbone) {
    if (a.weights) throw new UserError('met params: give --backbone or --weights, not both');
    const p = BACKBONE_PRESETS[a.backbone as BackboneName];
    if (c.channels !== undefined && c.channels !== p.channels)
      throw new UserError(`met params: ${p.name} takes ${p.channels}-channel images, not ${c.channels}`);
    const size = c.imageSize ?? p.imageSize;
    if (size % p.patchSize)
      throw new UserError(`met params: image size ${size} is not a multiple of the patch size ${p.patchSize}`);
    const vit = presetConfig(p, size);
    if (c.heads) {
      if (vit.dim % c.heads)
        throw new UserError(`met params: ${p.name} has width ${vit.dim}, which ${c.heads} heads do not divide`);
      vit.heads = c.heads;
      vit.headDim = vit.dim / c.heads;
    }
    return { name: p.name, vit };
  }
  if (!c.weights)
    throw new UserError(
      `met params: give a backbone: --backbone ${PRESETS.join('|')}, or --weights FILE (or "weights" in the config file)`,
    );
  const overrides: Partial<VitConfig> = {};
  if (c.imageSize) overrides.imageSize = c.imageSize;
  if (c.heads) overrides.heads = c.heads;
  if (c.backboneAct) overrides.act = c.backboneAct;
  const { config } = loadBackbone(c.weights, { layout: c.layout ?? 'auto', overrides });
  if (config.imageSize % config.patchSize)
    throw new UserError(
      `met params: image size ${config.imageSize} is not a multiple of the patch size ${config.patchSize}`,
    );
  return { name: path.basename(c.weights), vit: config };
}

/** The report for resolved settings: counts from metParams, GFLOPs from the segment graphs. */
export function paramsReport(name: string, vit: VitConfig, c: TrainConfig, classes: number): ParamsReport {
  const exits = c.exits ?? defaultExits(vit.depth);
  const met = metConfigOf(c, exits, classes);
  const dims = branchDims(vit);
  try {
    validateMetConfig(met, vit.depth);
    validateBranches(dims, met, exits.length);
  } catch (e) {
    throw new UserError(`met params: ${(e as Error).message}`);
  }
  const bs: BranchSettings = {
    branch: met.branch,
    branchHidden: met.branchHidden,
    branchChannels: met.branchChannels,
    branchHeads: met.branchHeads,
    branchMlpRatio: met.branchMlpRatio,
  };
  const backbone = vitParamCount({
    imageSize: vit.imageSize,
    channels: vit.channels,
    patchSize: vit.patchSize,
    dim: vit.dim,
    depth: vit.depth,
    heads: vit.heads,
    headDim: vit.headDim,
    mlpDim: vit.mlpDim,
    qkvBias: vit.qkvBias,
  });
  const n: MetParamCounts = metParams({
    dim: vit.dim,
    depth: vit.depth,
    exits,
    rank: c.rank,
    classes,
    eaPositions: c.eaPositions,
    variant: c.variant,
    backboneParams: backbone,
    ...bs,
    grid: dims.grid,
    heads: dims.heads,
    mlpDim: dims.mlpDim,
  });
  const specs = branchSpecs(dims, met);
  const { segments: macs, branches: bmacs } = segmentAndBranchMacs(vit, met);
  const cum = cumulative(macs);
  let stored = 0;
  for (const s of metParamShapes(vit, met).values()) stored += s.reduce((x, y) => x * y, 1);
  const orNull = (x: number) => (Number.isFinite(x) ? x : null);
  return {
    model: {
      name,
      imageSize: vit.imageSize,
      channels: vit.channels,
      patchSize: vit.patchSize,
      dim: vit.dim,
      depth: vit.depth,
      heads: vit.heads,
      mlpDim: vit.mlpDim,
    },
    config: {
      exits,
      rank: c.rank,
      classes,
      variant: c.variant,
      eaPositions: c.eaPositions,
      featurePath: c.featurePath,
      branch: met.branch ?? 'linear',
    },
    backbone: n.backbone,
    trainable: n.trainable,
    total: n.total,
    trainable_percent: (100 * n.trainable) / n.backbone,
    met_adapters: n.met_adapters,
    independent_adapters: n.independent_adapters,
    reduction: orNull(n.reduction),
    reduction_limit: orNull(n.reduction_limit),
    sum_k: n.sum_k,
    shared_projections: n.sharedProjections,
    cores: n.cores,
    diagonals: n.diagonals,
    heads: n.heads,
    branches: n.branches.map((b, j) => ({ ...b, widths: branchWidths(specs[j]) })),
    adapters: n.adapters.length,
    stored_trainable: stored,
    components: n.components,
    exits: exits.map((layer, j) => ({
      exit: j + 1,
      layer,
      branch: specs[j].type,
      gflops: cum[j],
      segment_gflops: macs[j] / 1e9,
      branch_gflops: bmacs[j] / 1e9,
    })),
  };
}

/** The widths that define a branch (the defaults resolved), for reports. */
function branchWidths(b: ReturnType<typeof branchSpecs>[number]): Record<string, number> {
  switch (b.type) {
    case 'linear':
      return { in: b.F, out: b.C };
    case 'mlp':
      return { in: b.D, hidden: b.hidden, out: b.C };
    case 'sl-vit':
      return { dim: b.D, heads: b.heads, headDim: b.headDim, mlp: b.mlpDim, tokens: 1 + b.G * b.G, out: b.C };
    default:
      return { grid: b.G, inChannels: b.inChannels, channels: b.channels, out: b.C };
  }
}

/**
 * `met params` without the command line: the engine process answers the extension's
 * 'params/compute' with this, so the editor shows exactly what `met params --json` prints.
 * `settings` are raw flag values by config key (validated here); without `config`,
 * ./met.config.json is read when present.
 */
export async function computeParams(o: {
  config?: string;
  settings?: Record<string, unknown>;
  backbone?: string;
  classes?: number;
  ignoreWorkspaceConfig?: boolean;
  /** The text of `config` (an editor's unsaved buffer), read instead of the file. */
  configText?: string;
}): Promise<ParamsReport> {
  if (o.backbone !== undefined && !PRESETS.includes(o.backbone as BackboneName))
    throw new UserError(`met params: unknown backbone '${o.backbone}' (one of ${PRESETS.join(', ')})`);
  // A run's recorded settings are complete: a met.config.json in the working folder must not fill gaps.
  const configFile = findConfigFile(o.config, o.ignoreWorkspaceConfig ? [] : ['.']);
  const file =
    configFile && o.configText !== undefined
      ? parseConfigText(o.configText, configFile)
      : configFile
        ? loadConfigFile(configFile)
        : {};
  const flags = validateConfig(o.settings ?? {}, 'command line');
  // --backbone on the command line wins over a checkpoint named in the config file.
  const merged = { ...file, ...flags };
  if (o.backbone && !flags.weights) delete merged.weights;
  const c = { ...TRAIN_DEFAULTS, ...merged } as TrainConfig;
  // The head count beside the weights, as train/resolve and `met train` take it (app/settings.ts).
  if (c.heads === undefined && c.weights && !o.backbone) c.heads = headsBesideWeights(c.weights)?.heads;
  const { name, vit } = await resolveBackbone({ backbone: o.backbone, weights: flags.weights }, c);
  let classes = o.classes;
  if (classes === undefined) {
    if (!c.data) throw new UserError('met params: --classes C is required (or --data with class folders)');
    classes = (await scanDataset({ root: c.data, split: c.split, seed: c.seed })).classes.length;
  }
  return paramsReport(name, vit, c, classes);
}
