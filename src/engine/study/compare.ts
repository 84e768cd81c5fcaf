// Runs side by side: what `met ablate` tabulates and the Compare runs panel draws. Everything is
// read from the run folders (pure Node: no onnxruntime, no sharp), so the extension host and the
// CLI share it:
//   - per-exit test accuracy (regression: MAE) from predictions.json and GFLOPs per exit from
//     thresholds.json, the two files `met eval` rewrites: the table equals `met eval --json`;
//   - the dynamic (budgeted) curve from thresholds.json, and its accuracy at fixed budgets;
//   - trainable parameters counted from trainable.safetensors' header (what was trained, heads
//     included), training time and curves from metrics.jsonl;
//   - the settings from config.json, and which of them differ between runs.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { exitMetrics } from '../model/regression';
import { pickForBudget, type BudgetPoint } from '../infer/thresholds';
import { RUN_FILE, readJson, readRunConfig, type PredictionsFile, type ThresholdsFile } from '../run/runFolder';
import type { TrainConfig } from '../run/config';
import { UserError } from '../tensor';

export interface ExitResult {
  exit: number;
  layer: number;
  branch: string;
  /** Test accuracy in [0, 1]; null for regression. */
  accuracy: number | null;
  /** Regression: mean absolute error in the targets' units. */
  mae?: number;
  /** Cumulative GFLOPs per image to reach this exit. */
  gflops: number;
}

export interface CurvePoint {
  p: number;
  /** Classification: accuracy in [0, 1]; regression: null (see mae). */
  accuracy: number | null;
  mae?: number;
  gflops: number;
}

export interface EpochPoint {
  epoch: number;
  trainLoss: number;
  /** Per exit: validation accuracy (classification) or MAE (regression). */
  val: number[];
}

export interface RunResult {
  runDir: string;
  /** The run's name in tables: its folder's name. */
  name: string;
  variant: string;
  task: 'classification' | 'regression';
  classes: string[];
  exits: ExitResult[];
  /** Mean over exits of the accuracy (or MAE). */
  mean: number;
  dynamic: CurvePoint[];
  trainable: number;
  /** Seconds spent in training epochs (all of them, across resumes), from metrics.jsonl. */
  trainSeconds: number;
  epochs: EpochPoint[];
  /** Training loss per step, at most ~200 points (evenly thinned). */
  steps: { step: number; loss: number }[];
  /** The run's settings (config.json's `train`, without the run folder itself). */
  settings: Partial<TrainConfig> & Record<string, unknown>;
}

/** Budgets as fractions of the costliest last exit among the compared runs. */
export const DEFAULT_BUDGETS = [0.6, 0.75, 0.9] as const;

/** Sum of the element counts in a safetensors header (the file's first 8 + n bytes only). */
export function safetensorsElementCount(file: string): number {
  const fd = fs.openSync(file, 'r');
  try {
    const lenBuf = Buffer.alloc(8);
    if (fs.readSync(fd, lenBuf, 0, 8, 0) !== 8) throw new UserError(`${file}: not a safetensors file (too short)`);
    const n = Number(lenBuf.readBigUInt64LE(0));
    if (!(n > 1 && n < 64 * 1024 * 1024)) throw new UserError(`${file}: safetensors header length ${n} out of range`);
    const hdr = Buffer.alloc(n);
    fs.readSync(fd, hdr, 0, n, 8);
    let h: Record<string, { shape?: number[] }>;
    try {
      h = JSON.parse(hdr.toString('utf8')) as typeof h;
    } catch {
      throw new UserError(`${file}: safetensors header is not JSON`);
    }
    let total = 0;
    for (const [k, v] of Object.entries(h)) {
      if (k === '__metadata__') continue;
      if (!v || !Array.isArray(v.shape)) throw new UserError(`${file}: tensor ${k} has no shape`);
      total += v.shape.reduce((a, b) => a * b, 1);
    }
    return total;
  } finally {
    fs.closeSync(fd);
  }
}

/** A number from JSON: NaN was written as null (JSON has no NaN), and Number(null) would be 0. */
const num = (v: unknown): number => (typeof v === 'number' ? v : NaN);

/** A result file of the run, read by runFolder's readJson; its absence explained (results come at the end). */
function readResultFile<T>(file: string): T {
  if (!fs.existsSync(file))
    throw new UserError(`${file} does not exist: is the run finished? (met eval --run writes it)`);
  return readJson<T>(file);
}

/** Training time, validation per epoch and the step losses from metrics.jsonl. */
function readMetrics(runDir: string): { trainSeconds: number; epochs: EpochPoint[]; steps: RunResult['steps'] } {
  const file = path.join(runDir, RUN_FILE.metrics);
  const epochs = new Map<number, EpochPoint & { seconds: number }>();
  const steps = new Map<number, number>();
  let text = '';
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return { trainSeconds: 0, epochs: [], steps: [] };
  }
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    let e: Record<string, unknown>;
    try {
      e = JSON.parse(line) as Record<string, unknown>;
    } catch {
      continue; // a line cut by a crash: the next epoch rewrites what matters
    }
    // A resumed run repeats steps and epochs after its checkpoint: the later line wins.
    // Regression epochs carry valMaePerExit beside an empty valAccPerExit (train/trainer.ts).
    if (e.type === 'epoch' && typeof e.epoch === 'number')
      epochs.set(e.epoch, {
        epoch: e.epoch,
        trainLoss: num(e.trainLoss),
        val:
          ((Array.isArray(e.valMaePerExit) ? e.valMaePerExit : e.valAccPerExit) as unknown[] | undefined)?.map(num) ??
          [],
        seconds: Number(e.seconds) || 0,
      });
    else if (e.type === 'step' && typeof e.step === 'number') steps.set(e.step, num(e.loss));
  }
  const ep = [...epochs.values()].sort((a, b) => a.epoch - b.epoch);
  const all = [...steps.entries()].sort((a, b) => a[0] - b[0]);
  const stride = Math.max(1, Math.ceil(all.length / 200));
  return {
    trainSeconds: ep.reduce((s, x) => s + x.seconds, 0),
    epochs: ep.map(({ seconds: _s, ...rest }) => rest),
    steps: all.filter((_, i) => i % stride === 0 || i === all.length - 1).map(([step, loss]) => ({ step, loss })),
  };
}

/** A finished run's results, read from its folder; a run without results is a UserError naming the file. */
export function readRunResult(runDir: string, name = path.basename(runDir)): RunResult {
  const cf = readRunConfig(runDir);
  const pred = readResultFile<PredictionsFile>(path.join(runDir, RUN_FILE.predictions));
  const th = readResultFile<ThresholdsFile>(path.join(runDir, RUN_FILE.thresholds));
  const regression = pred.task === 'regression';
  const test = pred.test;
  const branches = Array.isArray(cf.met.branch)
    ? cf.met.branch
    : cf.met.exits.map(() => (cf.met.branch as string | undefined) ?? 'linear');
  const reg = regression ? exitMetrics(test.pred, test.labels) : null;
  const exits: ExitResult[] = cf.met.exits.map((layer, j) => {
    const row = test.pred[j] ?? [];
    const acc = regression || !row.length ? null : row.filter((c, i) => c === test.labels[i]).length / row.length;
    return {
      exit: j + 1,
      layer,
      branch: branches[j] ?? 'linear',
      accuracy: acc,
      ...(reg ? { mae: reg.mae[j] } : {}),
      gflops: th.gflops[j],
    };
  });
  const per = exits.map((e) => (regression ? (e.mae ?? NaN) : (e.accuracy ?? NaN)));
  // A point no test image reached has accuracy NaN, written as null: -null would read as MAE 0.
  const dynamic: CurvePoint[] = th.curve.map((p) => ({
    p: p.p,
    accuracy: regression ? null : p.accuracy,
    ...(regression ? { mae: -num(p.accuracy) } : {}),
    gflops: p.gflops,
  }));
  const trainableFile = path.join(runDir, RUN_FILE.trainable);
  if (!fs.existsSync(trainableFile)) throw new UserError(`${trainableFile} does not exist: is the run finished?`);
  const { out: _out, ...settings } = cf.train as TrainConfig & { out?: string };
  return {
    runDir,
    name,
    variant: cf.train.variant,
    task: regression ? 'regression' : 'classification',
    classes: cf.classes,
    exits,
    mean: per.reduce((a, b) => a + b, 0) / per.length,
    dynamic,
    trainable: safetensorsElementCount(trainableFile),
    ...readMetrics(runDir),
    settings,
  };
}

/** Best accuracy (regression: lowest MAE) of the run's dynamic curve within `gflops`; null if none fits. */
export function atBudget(r: RunResult, gflops: number): number | null {
  // The thresholds file's curve with accuracy = -MAE for regression: pickForBudget maximises it.
  const curve = r.dynamic.map((d) => ({
    p: d.p,
    accuracy: r.task === 'regression' ? -(d.mae ?? NaN) : (d.accuracy ?? NaN),
    gflops: d.gflops,
  })) as BudgetPoint[];
  const best = pickForBudget(curve, gflops);
  if (!best || Number.isNaN(best.accuracy)) return null;
  return r.task === 'regression' ? -best.accuracy : best.accuracy;
}

/**
 * The cheapest dynamic point that is as good as the run's own last exit (accuracy at least, MAE
 * at most): "dynamic inference saves GFLOPs at equal accuracy". null when none is.
 */
export function gflopsAtLastExitQuality(r: RunResult): number | null {
  const last = r.exits[r.exits.length - 1];
  let best: number | null = null;
  for (const d of r.dynamic) {
    const ok =
      r.task === 'regression'
        ? (d.mae ?? Infinity) <= (last.mae ?? -Infinity) + 1e-12
        : (d.accuracy ?? -1) >= (last.accuracy ?? Infinity) - 1e-12;
    if (ok && (best === null || d.gflops < best)) best = d.gflops;
  }
  return best;
}

/** Settings whose values differ between the runs (JSON-equal values are the same), in key order. */
export function settingsDiff(runs: readonly Pick<RunResult, 'settings'>[]): { key: string; values: unknown[] }[] {
  const keys = new Set<string>();
  for (const r of runs) for (const k of Object.keys(r.settings)) keys.add(k);
  const out: { key: string; values: unknown[] }[] = [];
  for (const key of [...keys].sort()) {
    const values = runs.map((r) => r.settings[key]);
    const enc = values.map((v) => JSON.stringify(v ?? null));
    if (enc.some((e) => e !== enc[0])) out.push({ key, values });
  }
  return out;
}

export type Better = 'higher' | 'lower';

export interface TableColumn {
  key: string;
  /** Short, for the text table's header; `title` says it in full (CSV, the panel's tooltips). */
  label: string;
  title: string;
  /** How the best value is found (none: not ranked, e.g. GFLOPs of the same exit). */
  better?: Better;
  unit?: '%' | 'count' | 's' | 'GFLOPs' | '';
}

export interface ComparisonTable {
  task: 'classification' | 'regression';
  columns: TableColumn[];
  /** `gflops`: cumulative GFLOPs per image at each of the run's exits. */
  rows: { name: string; runDir: string; variant: string; values: (number | null)[]; gflops: number[] }[];
  /** Per column, the row indices holding the best value (ties all marked); empty when unranked. */
  best: number[][];
  /** The absolute budgets (GFLOPs per image) of the budget columns. */
  budgets: number[];
  /** Exit layers when all runs share them (the per-exit columns are then "L6", …), else exit numbers. */
  exitLabels: string[];
}

/**
 * The paper's table: per-exit accuracy, the mean over exits, trainable parameters, the dynamic
 * curve's accuracy at fixed budgets (fractions of the costliest last exit), GFLOPs for last-exit
 * accuracy, and training time.
 */
export function comparisonTable(
  runs: readonly RunResult[],
  budgetFractions: readonly number[] = DEFAULT_BUDGETS,
): ComparisonTable {
  if (!runs.length) throw new UserError('no runs to compare');
  const task = runs[0].task;
  const mixed = runs.find((r) => r.task !== task);
  if (mixed) throw new UserError(`${mixed.runDir}: a ${mixed.task} run cannot be compared with ${task} runs`);
  const reg = task === 'regression';
  const q: Better = reg ? 'lower' : 'higher';
  const K = Math.max(...runs.map((r) => r.exits.length));
  const layers = runs[0].exits.map((e) => e.layer).join(',');
  const sameLayers = runs.every((r) => r.exits.map((e) => e.layer).join(',') === layers);
  const exitLabels = Array.from({ length: K }, (_, j) => (sameLayers ? `L${runs[0].exits[j].layer}` : `exit ${j + 1}`));
  const full = Math.max(...runs.map((r) => r.exits[r.exits.length - 1].gflops));
  const budgets = budgetFractions.map((f) => f * full);
  const metric = reg ? 'MAE' : 'accuracy';
  const pct = (f: number) => `${Math.round(100 * f)}%`;
  const columns: TableColumn[] = [
    ...exitLabels.map(
      (l, j) =>
        ({ key: `exit${j + 1}`, label: l, title: `${l} ${metric}`, better: q, unit: reg ? '' : '%' }) as TableColumn,
    ),
    { key: 'mean', label: 'mean', title: `mean ${metric} over exits`, better: q, unit: reg ? '' : '%' },
    { key: 'trainable', label: 'params', title: 'trainable parameters', better: 'lower', unit: 'count' },
    ...budgets.map(
      (b, i) =>
        ({
          key: `budget${i + 1}`,
          label: `@${pct(budgetFractions[i])}`,
          title: `dynamic ${metric} within ${b.toPrecision(3)} GFLOPs (${pct(budgetFractions[i])} of the costliest last exit)`,
          better: q,
          unit: reg ? '' : '%',
        }) as TableColumn,
    ),
    {
      key: 'gflopsAtLast',
      label: 'GF=last',
      title: `dynamic GFLOPs for the last exit's ${metric}`,
      better: 'lower',
      unit: 'GFLOPs',
    },
    { key: 'lastGflops', label: 'GF last', title: 'GFLOPs of the last exit', unit: 'GFLOPs' },
    { key: 'trainSeconds', label: 'time', title: 'training time', better: 'lower', unit: 's' },
  ];
  const rows = runs.map((r) => {
    const per = Array.from({ length: K }, (_, j) => {
      const e = r.exits[j];
      if (!e) return null;
      return reg ? (e.mae ?? null) : e.accuracy;
    });
    const values: (number | null)[] = [
      ...per,
      r.mean,
      r.trainable,
      ...budgets.map((b) => atBudget(r, b)),
      gflopsAtLastExitQuality(r),
      r.exits[r.exits.length - 1].gflops,
      r.trainSeconds || null,
    ];
    return { name: r.name, runDir: r.runDir, variant: r.variant, values, gflops: r.exits.map((e) => e.gflops) };
  });
  const best = columns.map((c, ci) => {
    if (!c.better || rows.length < 2) return [];
    const vals = rows.map((r) => r.values[ci]).filter((v): v is number => v !== null && Number.isFinite(v));
    if (!vals.length) return [];
    const b = c.better === 'higher' ? Math.max(...vals) : Math.min(...vals);
    return rows.flatMap((r, i) =>
      r.values[ci] !== null && Math.abs((r.values[ci] as number) - b) <= 1e-12 ? [i] : [],
    );
  });
  return { task, columns, rows, best, budgets, exitLabels };
}

/** A value as the table prints it. */
export function formatValue(v: number | null, c: TableColumn): string {
  if (v === null || !Number.isFinite(v)) return '–';
  switch (c.unit) {
    case '%':
      return (100 * v).toFixed(1);
    case 'count':
      return v >= 1e6 ? `${(v / 1e6).toFixed(2)}M` : v >= 1e3 ? `${(v / 1e3).toFixed(1)}k` : String(v);
    case 's':
      return v >= 60 ? `${Math.floor(v / 60)}m${String(Math.round(v % 60)).padStart(2, '0')}s` : `${v.toFixed(0)}s`;
    case 'GFLOPs':
      return v.toPrecision(3);
    default:
      return v.toPrecision(4);
  }
}

/** The table as text, the best value per column marked with '*'. */
export function formatTable(t: ComparisonTable): string {
  const header = ['run', ...t.columns.map((c) => c.label)];
  const body = t.rows.map((r, i) => [
    r.name,
    ...r.values.map((v, ci) => formatValue(v, t.columns[ci]) + (t.best[ci].includes(i) ? '*' : '')),
  ]);
  const widths = header.map((h, ci) => Math.max(h.length, ...body.map((b) => b[ci].length)));
  const line = (cells: string[]) =>
    cells.map((c, ci) => (ci ? c.padStart(widths[ci]) : c.padEnd(widths[ci]))).join('  ');
  const legend = t.columns
    .filter((c, i) => c.label !== t.columns[i].title && !/^(L\d+|exit \d+)$/.test(c.label))
    .map((c) => `  ${c.label}: ${c.title}`);
  const what = t.task === 'regression' ? 'test MAE per exit (lower is better)' : 'test accuracy % per exit';
  // GFLOPs per image at each exit: one line when the runs share them, else one per run.
  const fl = (g: number[]) => g.map((x) => x.toPrecision(3)).join(' / ');
  const distinct = [...new Set(t.rows.map((r) => fl(r.gflops)))];
  const gflops =
    distinct.length === 1
      ? [`GFLOPs per image at each exit: ${distinct[0]}`]
      : ['GFLOPs per image at each exit:', ...t.rows.map((r) => `  ${r.name}: ${fl(r.gflops)}`)];
  return [`${what}; * best in its column`, line(header), ...body.map(line), '', ...gflops, '', ...legend].join('\n');
}

function csvCell(s: string): string {
  return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** The table as CSV: raw numbers (accuracy in [0, 1], parameters as counts), one row per run. */
export function comparisonCsv(t: ComparisonTable): string {
  const header = ['run', 'variant', 'run_folder', ...t.columns.map((c) => c.title)];
  const rows = t.rows.map((r) => [r.name, r.variant, r.runDir, ...r.values.map((v) => (v === null ? '' : String(v)))]);
  return [header, ...rows].map((r) => r.map(csvCell).join(',')).join('\n') + '\n';
}

/** What `met ablate --json` prints per run (and the compare panel's curve points). */
export function runJson(r: RunResult, variant = r.variant) {
  return {
    variant,
    run: r.runDir,
    task: r.task,
    exits: r.exits.map((e) => ({
      exit: e.exit,
      layer: e.layer,
      branch: e.branch,
      accuracy: e.accuracy,
      ...(e.mae !== undefined ? { mae: e.mae } : {}),
      gflops: e.gflops,
    })),
    mean: r.mean,
    trainable: r.trainable,
    dynamic: r.dynamic,
    trainSeconds: r.trainSeconds,
  };
}
