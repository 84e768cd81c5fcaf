// `met train` and `met eval`.

import * as path from 'node:path';
import { findConfigFile } from '../app/configFile';
import { resolveRun } from '../app/resolve';
import { resolveSettings } from '../app/settings';
import { evaluateRun, runTraining } from '../engine/run/run';
import { readJson, type RunConfigFile, type RunSummary } from '../engine/run/runFolder';
import { validateConfig } from '../engine/run/schema';
import { DEVICES, FIELDS, flagOf } from '../engine/settings';
import type { TrainConfig } from '../engine/run/config';
import type { TrainEvent } from '../engine/train/trainer';
import { UserError } from '../engine/tensor';
import { type FlagKind, type FlagSpec, parseArgs, usage } from './args';
import { stopOnSignals } from './signals';

const KIND: Record<string, FlagKind> = {
  string: 'string',
  path: 'string',
  enum: 'string',
  enumList: 'string',
  int: 'int',
  number: 'number',
  bool: 'bool',
  ints: 'ints',
  numbers: 'numbers',
};

/** A setting as a flag; a list of choices (--branch mlp or --branch linear,mlp) is checked by the schema. */
function flagSpec(f: (typeof FIELDS)[number]): FlagSpec {
  if (f.kind === 'enumList') return { kind: 'string', help: f.help };
  return { kind: KIND[f.kind], choices: f.choices, help: f.help };
}

/** Every setting's flag (and its older names, e.g. --act for --backbone-act), from the settings table. */
export const SETTING_FLAGS: Record<string, FlagSpec> = Object.fromEntries(
  FIELDS.flatMap((f) => [
    [flagOf(f), flagSpec(f)],
    ...(f.flagAliases ?? []).map((a) => [a, { ...flagSpec(f), aliasOf: flagOf(f) }]),
  ]),
);

export const TRAIN_FLAGS: Record<string, FlagSpec> = {
  config: {
    kind: 'string',
    help: 'met.config.json to start from (default ./met.config.json when present; flags override it)',
  },
  resume: { kind: 'string', help: 'continue an interrupted run folder' },
  overwrite: {
    kind: 'bool',
    help: '--out may name a folder that holds a run: it is moved aside to <out>.old-<time> (never deleted) and a new run starts there',
  },
  progress: { kind: 'string', choices: ['text', 'json'], help: 'progress on stdout as text (default) or JSON lines' },
  'dry-run': {
    kind: 'bool',
    help: 'resolve the settings, read the backbone and scan the data, print them as JSON and stop (nothing is trained or written)',
  },
  ...SETTING_FLAGS,
  help: { kind: 'bool', help: 'show this help' },
};

/** The settings given as flags, by config key (raw: validated where they are merged). */
export function settingsOfFlags(a: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const f of FIELDS) {
    const v = a[flagOf(f)];
    if (v !== undefined) out[f.key] = v;
  }
  return out;
}

function flagsToConfig(a: Record<string, unknown>): Partial<TrainConfig> {
  return validateConfig(settingsOfFlags(a), 'command line');
}

function fmtEta(s: number): string {
  if (!Number.isFinite(s)) return '?';
  const m = Math.floor(s / 60);
  return m ? `${m}m${String(Math.round(s % 60)).padStart(2, '0')}s` : `${Math.round(s)}s`;
}

/** Regression runs (model/regression.ts): MAE / RMSE per exit and the MAE-vs-GFLOPs curve. */
function printRegressionSummary(s: RunSummary, json: boolean): void {
  if (json) {
    console.log(
      JSON.stringify({
        task: 'regression',
        exits: s.exits,
        dynamic: s.dynamic.map((d) => ({
          mae: d.mae,
          gflops: d.gflops,
          thresholds: d.thresholds,
          p: d.p,
          exitCounts: d.exitCounts,
        })),
      }),
    );
    return;
  }
  const f = (x: number | undefined) => (x === undefined || !Number.isFinite(x) ? 'n/a' : x.toPrecision(4)).padStart(9);
  console.log('\nexit  layer  branch              MAE       RMSE   GFLOPs');
  for (const e of s.exits)
    console.log(
      `${String(e.exit).padStart(4)}  ${String(e.layer).padStart(5)}  ${(e.branch ?? 'linear').padEnd(12)}  ${f(e.mae)}  ${f(e.rmse)}  ${e.gflops.toFixed(4).padStart(7)}`,
    );
  if (s.dynamic.length) {
    console.log('\ndynamic (agreement of consecutive exits, thresholds fitted on val, MSDNet):');
    console.log('     p        MAE  GFLOPs  exits taken');
    const seen = new Set<string>();
    for (const d of s.dynamic) {
      const key = `${(d.mae ?? NaN).toFixed(5)}/${d.gflops.toFixed(4)}`;
      if (seen.has(key)) continue;
      seen.add(key);
      console.log(
        `${d.p.toFixed(2).padStart(6)}  ${f(d.mae)}  ${d.gflops.toFixed(4).padStart(6)}  ${d.exitCounts.join('/')}`,
      );
    }
  }
  if (s.trainImgPerSec)
    console.log(`\ntraining throughput ${s.trainImgPerSec.toFixed(1)} img/s; run folder ${s.runDir}`);
}

export function printSummary(s: RunSummary, json: boolean): void {
  if (s.task === 'regression') return printRegressionSummary(s, json);
  if (json) {
    console.log(
      JSON.stringify({
        exits: s.exits,
        dynamic: s.dynamic.map((d) => ({
          accuracy: d.accuracy,
          gflops: d.gflops,
          thresholds: d.thresholds,
          p: d.p,
          exitCounts: d.exitCounts,
        })),
      }),
    );
    return;
  }
  console.log('\nexit  layer  branch        accuracy  GFLOPs');
  for (const e of s.exits)
    console.log(
      `${String(e.exit).padStart(4)}  ${String(e.layer).padStart(5)}  ${(e.branch ?? 'linear').padEnd(12)}  ${(100 * e.accuracy).toFixed(2).padStart(7)}%  ${e.gflops.toFixed(4).padStart(7)}`,
    );
  if (s.dynamic.length) {
    console.log('\ndynamic (thresholds fitted on val, MSDNet):');
    console.log('     p  accuracy  GFLOPs  exits taken');
    const seen = new Set<string>();
    for (const d of s.dynamic) {
      const key = `${d.accuracy.toFixed(4)}/${d.gflops.toFixed(4)}`;
      if (seen.has(key)) continue;
      seen.add(key);
      console.log(
        `${d.p.toFixed(2).padStart(6)}  ${(100 * d.accuracy).toFixed(2).padStart(7)}%  ${d.gflops.toFixed(4).padStart(6)}  ${d.exitCounts.join('/')}`,
      );
    }
  }
  if (s.trainImgPerSec)
    console.log(`\ntraining throughput ${s.trainImgPerSec.toFixed(1)} img/s; run folder ${s.runDir}`);
}

export async function trainCommand(argv: string[]): Promise<number> {
  const a = parseArgs(argv, TRAIN_FLAGS, 'train');
  if (a.help) {
    console.log(usage('train', '[--config met.config.json] [options]', TRAIN_FLAGS));
    return 0;
  }
  let c: TrainConfig;
  let resumeDir: string | undefined;
  let configFile: string | undefined;
  if (a.resume && a.overwrite)
    throw new UserError('met train: --overwrite starts a new run in --out; it does not go with --resume');
  if (a.resume && a['dry-run'])
    throw new UserError('met train: --dry-run resolves the settings of a new run; it does not go with --resume');
  if (a.resume) {
    resumeDir = path.resolve(a.resume as string);
    const cf = readJson<RunConfigFile>(path.join(resumeDir, 'config.json'));
    c = { ...cf.train, ...flagsToConfig(a) };
  } else {
    // The application layer's resolution, the engine server's train/resolve's: the config file,
    // the flags over it, the head count beside the weights when nothing sets it.
    configFile = findConfigFile(a.config as string | undefined, ['.']);
    const input = { configFile, layers: [{ where: 'command line', values: settingsOfFlags(a) }], workspaceRoot: '.' };
    if (a['dry-run']) {
      const plan = await resolveRun({ ...input, workspaceRoot: path.resolve('.') });
      for (const n of plan.notes) console.error(n);
      console.log(JSON.stringify(plan, null, 2));
      return 0;
    }
    const r = resolveSettings({ ...input, workspaceRoot: path.resolve('.') });
    for (const n of r.notes) console.error(n);
    c = r.config;
  }
  const json = a.progress === 'json';
  const signals = stopOnSignals((sig) => `${sig}: saving a checkpoint after this step (press again to quit at once)`);
  let lastPrint = 0;
  try {
    const s = await runTraining(
      c,
      {
        log: (m) => console.error(m),
        shouldStop: signals.reason,
        configFile,
        overwrite: !!a.overwrite,
        onEvent: (e: TrainEvent) => {
          if (json) return void console.log(JSON.stringify(e));
          if (e.type === 'step' && (Date.now() - lastPrint > 2000 || e.step === e.totalSteps)) {
            lastPrint = Date.now();
            console.error(
              `epoch ${e.epoch} step ${e.step}/${e.totalSteps}  loss ${e.loss.toFixed(4)}${e.distill ? `  kd ${e.distill.map((x) => x.toFixed(3)).join('/')}` : ''}  ${e.maePerExit ? `mae ${e.maePerExit.map((x) => x.toPrecision(3)).join('/')}` : `acc ${e.accPerExit.map((x) => (100 * x).toFixed(0)).join('/')}`}  ${e.imgPerSec.toFixed(1)} img/s  eta ${fmtEta(e.etaSec)}`,
            );
          } else if (e.type === 'epoch') {
            if (e.valMaePerExit)
              console.error(
                `epoch ${e.epoch}: train loss ${e.trainLoss.toFixed(4)}, val MAE per exit ${e.valMaePerExit.map((x) => x.toPrecision(4)).join(' / ')}, RMSE ${(e.valRmsePerExit ?? []).map((x) => x.toPrecision(4)).join(' / ')} (${e.seconds.toFixed(1)} s)`,
              );
            else
              console.error(
                `epoch ${e.epoch}: train loss ${e.trainLoss.toFixed(4)}, val accuracy per exit ${e.valAccPerExit.map((x) => (100 * x).toFixed(1)).join(' / ')} (${e.seconds.toFixed(1)} s)`,
              );
          } else if (e.type === 'stopped')
            console.error(`stopped at step ${e.step}: ${e.reason}. Continue with: met train --resume <run folder>`);
        },
      },
      resumeDir,
    );
    if (s.stopped) {
      console.error(`run folder: ${s.runDir}`);
      return 130;
    }
    printSummary(s, json);
    return 0;
  } finally {
    signals.dispose();
  }
}

export const EVAL_FLAGS: Record<string, FlagSpec> = {
  run: { kind: 'string', help: 'run folder' },
  data: {
    kind: 'string',
    help: "another image folder (class folders named like the run's classes); default the run's test split",
  },
  device: { kind: 'string', choices: DEVICES, help: 'execution provider' },
  threads: { kind: 'int', help: 'CPU threads' },
  json: { kind: 'bool', help: 'print {"exits": [...], "dynamic": [...]}' },
  help: { kind: 'bool', help: 'show this help' },
};

export async function evalCommand(argv: string[]): Promise<number> {
  const a = parseArgs(argv, EVAL_FLAGS, 'eval');
  if (a.help) {
    console.log(usage('eval', '--run RUN [--data DIR] [--json]', EVAL_FLAGS));
    return 0;
  }
  if (!a.run) throw new UserError('met eval: --run RUN is required');
  const s = await evaluateRun(path.resolve(a.run as string), {
    data: a.data as string | undefined,
    device: a.device as never,
    threads: a.threads as number | undefined,
  });
  printSummary(s, !!a.json);
  return 0;
}
