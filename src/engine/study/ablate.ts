// `met ablate`: trains a study's runs one after the other and tabulates them (study/compare.ts).
// Each run is an ordinary run folder with its own lock, checkpoints and status.json, so a study
// killed in the middle continues where it stopped: finished runs are skipped, the interrupted
// one resumes from its checkpoint, the others start.

import * as path from 'node:path';
import { runTraining } from '../run/run';
import type { TrainConfig } from '../run/config';
import { readRunConfig } from '../run/runFolder';
import type { TrainEvent } from '../train/trainer';
import { UserError } from '../tensor';
import { writeFileAtomic } from '../io/atomic';
import {
  comparisonCsv,
  comparisonTable,
  formatTable,
  readRunResult,
  runJson,
  settingsDiff,
  type ComparisonTable,
  type RunResult,
} from './compare';
import { openStudy, variantState, writeStudy, type StudyFile, type StudyVariant, type VariantState } from './study';

export type StudyProgress =
  | {
      type: 'run';
      index: number;
      total: number;
      variant: string;
      run: string;
      state: VariantState | 'finished' | 'stopped' | 'failed';
      message?: string;
    }
  | { type: 'event'; variant: string; event: TrainEvent };

export interface StudyHandlers {
  onProgress?: (p: StudyProgress) => void;
  log?: (m: string) => void;
  shouldStop?: () => string | null;
  /** Who owns the runs while they train (run.lock), default 'met ablate'. */
  owner?: string;
}

export interface StudyResult {
  study: string;
  /** Variants asked for in this call, in order, with their results when finished. */
  runs: { variant: StudyVariant; result: RunResult | null; error?: string }[];
  table: ComparisonTable | null;
  stopped: string | null;
}

/** The JSON `met ablate --json` prints and comparison.json holds. */
export function studyJson(r: StudyResult) {
  const done = r.runs.filter((x) => x.result);
  return {
    study: r.study,
    runs: done.map((x) => runJson(x.result!, x.variant.name)),
    failed: r.runs.filter((x) => x.error).map((x) => ({ variant: x.variant.name, error: x.error })),
    table: r.table,
    settingsDiff: settingsDiff(done.map((x) => x.result!)).map((d) => ({
      key: d.key,
      values: Object.fromEntries(done.map((x, i) => [x.variant.name, d.values[i]])),
    })),
    stopped: r.stopped,
  };
}

/**
 * Trains what is missing of the study in `dir` for `variants` over `base`, then writes and returns
 * the comparison of the variants that finished. A run that fails is reported and the next one
 * starts; a stop (shouldStop) ends the study after the current run's checkpoint.
 */
export async function runStudy(
  dir: string,
  base: TrainConfig,
  variants: StudyVariant[],
  h: StudyHandlers = {},
  budgets?: readonly number[],
): Promise<StudyResult> {
  const studyDir = path.resolve(dir);
  const { out: _out, ...shared } = base as TrainConfig & { out?: string };
  const study: StudyFile = openStudy(studyDir, shared, variants);
  writeStudy(studyDir, study);
  const runs: StudyResult['runs'] = [];
  let stopped: string | null = null;
  const total = variants.length;
  for (const [i, v] of variants.entries()) {
    const runDir = path.join(studyDir, v.run);
    const progress = (state: Extract<StudyProgress, { type: 'run' }>['state'], message?: string) =>
      h.onProgress?.({ type: 'run', index: i + 1, total, variant: v.name, run: runDir, state, message });
    if (stopped) {
      runs.push({ variant: v, result: null });
      continue;
    }
    const state = variantState(studyDir, v);
    progress(state);
    if (state !== 'done') {
      const handlers = {
        owner: h.owner ?? 'met ablate',
        log: h.log,
        shouldStop: h.shouldStop,
        onEvent: (event: TrainEvent) => h.onProgress?.({ type: 'event', variant: v.name, event }),
        // A folder left by a run killed before its first checkpoint holds nothing to resume:
        // it is moved aside (never deleted) and the run starts again.
        overwrite: state === 'new',
      };
      try {
        const s =
          state === 'resumable'
            ? await runTraining({ ...readRunConfig(runDir).train }, handlers, runDir)
            : await runTraining({ ...base, ...v.overrides, out: runDir } as TrainConfig, handlers);
        if (s.stopped) {
          stopped = s.stopped;
          progress('stopped', s.stopped);
          runs.push({ variant: v, result: null });
          continue;
        }
      } catch (e) {
        if (!(e instanceof UserError)) throw e;
        progress('failed', e.message);
        runs.push({ variant: v, result: null, error: e.message });
        continue;
      }
    }
    const result = readRunResult(runDir, v.name);
    progress('finished');
    runs.push({ variant: v, result });
  }
  const done = runs.filter((r) => r.result).map((r) => r.result!);
  const table = done.length ? comparisonTable(done, budgets) : null;
  const res: StudyResult = { study: studyDir, runs, table, stopped };
  if (table) {
    writeFileAtomic(path.join(studyDir, 'comparison.json'), JSON.stringify(studyJson(res), null, 1));
    writeFileAtomic(path.join(studyDir, 'comparison.csv'), comparisonCsv(table));
    writeFileAtomic(path.join(studyDir, 'comparison.txt'), formatTable(table) + '\n');
  }
  return res;
}
