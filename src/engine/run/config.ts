// The resolved settings of a fine-tuning run: what `met.config.json` holds and what `met train`
// flags override. Names follow what users know (timm's mean/std, PEFT's rank `r` is `rank`).

import type { BranchType } from '../model/branches';
import type { Activation } from '../model/config';
import { DISTILL_DEFAULT_TEMPERATURE } from '../model/distill';
import type { MetConfig } from '../model/met';

export interface TrainConfig {
  /** Image folder: class sub-folders, or train/ val/ test/ holding class sub-folders. */
  data: string;
  /** Backbone checkpoint (.safetensors, .pth/.pt/.bin, .npz). */
  weights: string;
  layout: 'auto' | 'timm' | 'hf' | 'torchvision' | 'vit-pytorch' | 'npz';
  /** Backbone overrides (undefined: from the checkpoint). */
  imageSize?: number;
  channels?: 1 | 3;
  mean?: number[];
  std?: number[];
  heads?: number;
  backboneAct?: Activation;
  /** MET settings (see MetConfig); exits undefined = the paper's placement. */
  exits?: number[];
  rank: number;
  lambda: number;
  variant: MetConfig['variant'];
  eaPositions: MetConfig['eaPositions'];
  featurePath: MetConfig['featurePath'];
  adapterAct: MetConfig['act'];
  actPosition: MetConfig['actPosition'];
  eaPosition: MetConfig['eaPosition'];
  attnMask: MetConfig['attnMask'];
  exitKeyBias: MetConfig['exitKeyBias'];
  grForm: MetConfig['grForm'];
  grSquared: boolean;
  simClamp: MetConfig['simClamp'];
  grExcludeSelf: boolean;
  grNormalize: boolean;
  headInit: MetConfig['headInit'];
  /** Exit branches (model/branches.ts): one type for all exits or one per exit; widths 0 = default. */
  branch: BranchType | BranchType[];
  branchHidden: number;
  branchChannels: number;
  branchHeads: number;
  branchMlpRatio: number;
  /** Copycat distillation from the final exit (model/distill.ts): weight (0 = off) and temperature. */
  distill: number;
  distillTemperature: number;
  /** Regression exits (model/regression.ts, data/targets.ts): the task, the targets file
   *  (default: targets.csv / targets.json / labels.* / values.* at the data folder's root), the
   *  per-exit loss and whether targets are standardised with the training split's mean and std. */
  task: 'classification' | 'regression';
  targets?: string;
  regLoss: 'mse' | 'l1';
  standardize: boolean;
  /** Optimisation (NOAH / DyT defaults for VTAB, fewer epochs). */
  epochs: number;
  batch: number;
  lr: number;
  minLr: number;
  weightDecay: number;
  warmupEpochs: number;
  seed: number;
  /** Train / val / test percentages when the folder has no split folders. */
  split: [number, number, number];
  resize: 'direct' | 'resize-center-crop';
  augment: boolean;
  /** Exit subset for budgeted inference (1-based exit numbers; undefined = all exits). */
  dynamicExits?: number[];
  device: 'cpu' | 'webgpu' | 'cuda' | 'auto';
  threads?: number;
  /** Run folder (default .met/runs/<timestamp> next to the data's parent workspace). */
  out?: string;
}

export const TRAIN_DEFAULTS: Omit<TrainConfig, 'data' | 'weights'> = {
  layout: 'auto',
  rank: 8,
  lambda: 0.01,
  variant: 'met',
  eaPositions: 'both',
  featurePath: 'chain',
  adapterAct: 'relu',
  actPosition: 'after_down',
  eaPosition: 'post_ln',
  attnMask: 'none',
  exitKeyBias: 'log_k',
  grForm: 'diff',
  grSquared: true,
  simClamp: 'none',
  grExcludeSelf: true,
  grNormalize: false,
  headInit: 'trunc_normal',
  branch: 'linear',
  branchHidden: 0,
  branchChannels: 0,
  branchHeads: 0,
  branchMlpRatio: 0,
  distill: 0,
  distillTemperature: DISTILL_DEFAULT_TEMPERATURE,
  task: 'classification',
  regLoss: 'mse',
  standardize: true,
  epochs: 20,
  batch: 32,
  lr: 1e-3,
  minLr: 1e-5,
  weightDecay: 1e-4,
  warmupEpochs: 2,
  seed: 0,
  split: [70, 10, 20],
  resize: 'direct',
  augment: false,
  device: 'cpu',
};

/** The MetConfig of a run. Branch widths left at 0 (the defaults) are not written into it. */
export function metConfigOf(c: TrainConfig, exits: number[], numClasses: number): MetConfig {
  return {
    exits,
    rank: c.rank,
    numClasses,
    variant: c.variant,
    eaPositions: c.eaPositions,
    featurePath: c.featurePath,
    act: c.adapterAct,
    actPosition: c.actPosition,
    eaPosition: c.eaPosition,
    attnMask: c.attnMask,
    exitKeyBias: c.exitKeyBias,
    lambda: c.lambda,
    grForm: c.grForm,
    grSquared: c.grSquared,
    simClamp: c.simClamp,
    grExcludeSelf: c.grExcludeSelf,
    grNormalize: c.grNormalize,
    headInit: c.headInit,
    // Runs made before exit branches existed have none of these: linear heads.
    branch: c.branch ?? 'linear',
    ...(c.branchHidden ? { branchHidden: c.branchHidden } : {}),
    ...(c.branchChannels ? { branchChannels: c.branchChannels } : {}),
    ...(c.branchHeads ? { branchHeads: c.branchHeads } : {}),
    ...(c.branchMlpRatio ? { branchMlpRatio: c.branchMlpRatio } : {}),
    // Regression only when asked for: classification runs keep the config they always had.
    ...(c.task === 'regression' ? { task: 'regression' as const, regLoss: c.regLoss ?? 'mse' } : {}),
    // Copycat only when on (runs made before it existed, and runs without it, have neither).
    ...(c.distill
      ? { distill: c.distill, distillTemperature: c.distillTemperature ?? DISTILL_DEFAULT_TEMPERATURE }
      : {}),
  };
}
