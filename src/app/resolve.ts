// A run checked before it starts: the resolved settings (app/settings.ts), the backbone read
// from its checkpoint, the dataset scanned, the exits and branches validated against both, and
// the run folder chosen. The engine server answers train/resolve with it and `met train
// --dry-run` prints it, so the editor's confirmation and the command line show the same run.
//
// Not pure: reads the checkpoint and sniffs every image's header (sharp).

import * as fs from 'node:fs';
import * as path from 'node:path';
import { scanDataset } from '../engine/data/folder';
import { branchDims, validateBranches } from '../engine/model/branches';
import type { VitConfig } from '../engine/model/config';
import { defaultExits, validateMetConfig } from '../engine/model/met';
import { metConfigOf, type TrainConfig } from '../engine/run/config';
import { UserError } from '../engine/tensor';
import { loadBackbone } from '../engine/weights';
import { resolveSettings, type SettingsInput } from './settings';

export interface RunPlan {
  /** Complete settings, `out` set to the run folder that training will create. */
  config: TrainConfig;
  /** The exits the run will have (the config's, or the default placement for this backbone). */
  exits: number[];
  backbone: {
    file: string;
    layout: string;
    depth: number;
    dim: number;
    heads: number;
    imageSize: number;
    channels: number;
  };
  classes: string[];
  counts: { train: number; val: number; test: number };
  /** Things the user should know before starting (where a setting came from, dataset warnings). */
  notes: string[];
}

function stamp(d = new Date()): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}-${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}`;
}

/** `.met/runs/<time>-<variant>` like `met train`, with a suffix if two runs start in the same second. */
export function newRunDir(root: string, variant: string): string {
  const base = path.join(root, '.met', 'runs', `${stamp()}-${variant}`);
  let dir = base;
  for (let i = 2; fs.existsSync(dir); i++) dir = `${base}-${i}`;
  return dir;
}

/** Resolves the settings and checks them against the backbone and the data (nothing is written). */
export async function resolveRun(input: SettingsInput): Promise<RunPlan> {
  const { config: c, notes } = resolveSettings(input);
  const overrides: Partial<VitConfig> = {};
  if (c.imageSize) overrides.imageSize = c.imageSize;
  if (c.heads) overrides.heads = c.heads;
  if (c.backboneAct) overrides.act = c.backboneAct;
  const bb = loadBackbone(c.weights, { layout: c.layout, overrides });
  const vit = bb.config;
  const ds = await scanDataset({ root: c.data, split: c.split, seed: c.seed });
  notes.push(...ds.warnings.map((w) => `warning: ${w}`));
  const exits = c.exits ?? defaultExits(vit.depth);
  try {
    validateMetConfig(metConfigOf(c, exits, ds.classes.length), vit.depth);
  } catch (e) {
    throw new UserError(`exits: ${(e as Error).message}`, 'config-invalid');
  }
  try {
    validateBranches(branchDims(vit), c, exits.length);
  } catch (e) {
    throw new UserError((e as Error).message, 'config-invalid');
  }
  c.out = c.out ? path.resolve(input.workspaceRoot, c.out) : newRunDir(input.workspaceRoot, c.variant);
  return {
    config: c,
    exits,
    backbone: {
      file: c.weights,
      layout: bb.layout,
      depth: vit.depth,
      dim: vit.dim,
      heads: vit.heads,
      imageSize: vit.imageSize,
      channels: vit.channels,
    },
    classes: ds.classes,
    counts: { train: ds.train.length, val: ds.val.length, test: ds.test.length },
    notes,
  };
}
