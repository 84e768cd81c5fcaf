// The resolved settings of a fine-tuning run: what `met.config.json` holds and what `met train`
// flags override. The settings themselves (names, types, defaults, help) are one table,
// engine/settings.ts; this file derives the run's config and the model's part of it from it.

import type { MetConfig } from '../model/met';
import { defaultsOf, FIELDS, MODEL_KEYS, type SettingKey, type TrainSettings } from '../settings';

export type TrainConfig = TrainSettings;

export const TRAIN_DEFAULTS: Omit<TrainConfig, 'data' | 'weights'> = defaultsOf(
  FIELDS.map((f) => f.key).filter((k): k is Exclude<SettingKey, 'data' | 'weights'> => k !== 'data' && k !== 'weights'),
);

/** The MetConfig of a run. Branch widths left at 0 (the defaults) are not written into it. */
export function metConfigOf(c: TrainConfig, exits: number[], numClasses: number): MetConfig {
  const model = Object.fromEntries(MODEL_KEYS.map((k) => [k, c[k]])) as Pick<TrainConfig, (typeof MODEL_KEYS)[number]>;
  return {
    exits,
    numClasses,
    ...model,
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
      ? { distill: c.distill, distillTemperature: c.distillTemperature ?? TRAIN_DEFAULTS.distillTemperature }
      : {}),
  };
}

/**
 * A run folder's model config as written by any version: runs made before the adapter
 * activation was renamed hold it as `act` (MetConfig.adapterAct since). Partial configs (test
 * fixtures of the reference implementation) are upgraded the same way.
 */
export function upgradeMetConfig<M extends Partial<MetConfig>>(m: M & { act?: MetConfig['adapterAct'] }): M {
  if (m.adapterAct !== undefined || m.act === undefined) return m;
  const { act, ...rest } = m;
  return { ...rest, adapterAct: act } as unknown as M;
}
