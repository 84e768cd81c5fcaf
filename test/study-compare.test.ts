// src/engine/study/compare.ts on runs trained here with `met train` (the tiny run of tiny-run.ts:
// variant met, λ at its default; a second one beside it: no_gr with λ = 0; and a small counting run for
// regression): the table's per-exit accuracy and GFLOPs and the dynamic curve equal what
// `met eval --json` prints for each run, the best values are marked per column, the settings
// diff names exactly the settings given differently, the CSV reads back to the same numbers,
// atBudget picks what a hand-written scan of the curve picks, and a run without predictions.json
// is refused with that file named.

import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  atBudget,
  comparisonCsv,
  comparisonTable,
  formatTable,
  formatValue,
  readRunResult,
  runJson,
  settingsDiff,
  type RunResult,
} from '../src/engine/study/compare';
import { TRAIN_DEFAULTS } from '../src/engine/run/config';
import { countingRun, met, tinyRun, trainBeside } from './tiny-run';

interface EvalJson {
  exits: { exit: number; layer: number; accuracy: number | null; gflops: number; mae?: number }[];
  dynamic: { p: number; accuracy: number | null; gflops: number; mae?: number }[];
}

function evalJson(run: string): EvalJson {
  const r = met(['eval', '--run', run, '--json', '--threads', '1']);
  assert.equal(r.code, 0, r.err);
  return JSON.parse(r.out) as EvalJson;
}

/** The two classification runs: met (tiny-run.ts) and no_gr with λ = 0, same data, backbone and schedule. */
let pending: Promise<{ met: string; noGr: string }> | null = null;
function twoRuns(): Promise<{ met: string; noGr: string }> {
  pending ??= (async () => {
    const t = await tinyRun();
    const { run: noGr, r } = trainBeside(t, 'no_gr', ['--variant', 'no_gr', '--lambda', '0']);
    assert.equal(r.code, 0, r.err);
    return { met: t.run, noGr };
  })();
  return pending;
}

/** Minimal RFC 4180 reader: quoted cells with "" escapes and commas. */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let cell = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') ((cell += '"'), i++);
      else if (c === '"') quoted = false;
      else cell += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') (row.push(cell), (cell = ''));
    else if (c === '\n') (row.push(cell), rows.push(row), (row = []), (cell = ''));
    else cell += c;
  }
  if (cell || row.length) (row.push(cell), rows.push(row));
  return rows;
}

test('per-exit accuracy, GFLOPs and the dynamic curve equal `met eval --json` of each run', async () => {
  const runs = await twoRuns();
  for (const dir of [runs.met, runs.noGr]) {
    const ev = evalJson(dir); // rewrites predictions.json and thresholds.json, as a user's eval does
    const r = readRunResult(dir);
    assert.equal(r.task, 'classification');
    assert.deepEqual(
      r.exits.map((e) => [e.exit, e.layer, e.accuracy, e.gflops]),
      ev.exits.map((e) => [e.exit, e.layer, e.accuracy, e.gflops]),
    );
    assert.deepEqual(
      r.dynamic.map((d) => [d.p, d.accuracy, d.gflops]),
      ev.dynamic.map((d) => [d.p, d.accuracy, d.gflops]),
    );
    // runJson (what the panel's curves and `met ablate --json` show) carries the same numbers.
    const j = runJson(r);
    assert.deepEqual(
      j.exits.map((e) => [e.accuracy, e.gflops]),
      ev.exits.map((e) => [e.accuracy, e.gflops]),
    );
    assert.ok(r.trainable > 0);
    assert.ok(r.steps.length > 0 && r.epochs.length === 1, 'step losses and one epoch from metrics.jsonl');
    assert.equal(r.epochs[0].val.length, r.exits.length);
    assert.ok(r.trainSeconds > 0);
  }
  const results = [readRunResult(runs.met), readRunResult(runs.noGr)];
  const t = comparisonTable(results);
  const K = results[0].exits.length;
  // The per-exit columns are the runs' accuracies, in the runs' order.
  for (const [i, r] of results.entries())
    assert.deepEqual(
      t.rows[i].values.slice(0, K),
      r.exits.map((e) => e.accuracy),
    );
  assert.deepEqual(
    t.exitLabels,
    results[0].exits.map((e) => `L${e.layer}`),
  );
  // GFLOPs of the last exit, per row.
  const gi = t.columns.findIndex((c) => c.key === 'lastGflops');
  assert.deepEqual(
    t.rows.map((r) => r.values[gi]),
    results.map((r) => r.exits[K - 1].gflops),
  );
});

test('the best value of every ranked column is marked (ties included), unranked columns are not', async () => {
  const runs = await twoRuns();
  const results = [readRunResult(runs.met), readRunResult(runs.noGr)];
  const t = comparisonTable(results);
  for (const [ci, c] of t.columns.entries()) {
    const vals = t.rows.map((r) => r.values[ci]);
    if (!c.better) {
      assert.deepEqual(t.best[ci], [], `${c.key} is not ranked`);
      continue;
    }
    const finite = vals.filter((v): v is number => v !== null && Number.isFinite(v));
    const b = c.better === 'higher' ? Math.max(...finite) : Math.min(...finite);
    const want = finite.length ? vals.flatMap((v, i) => (v === b ? [i] : [])) : [];
    assert.deepEqual(t.best[ci], want, `${c.key} (${c.better} is better): ${JSON.stringify(vals)}`);
  }
  // The text table marks exactly those cells.
  // (Its first line says what the numbers are, the second is the header, one line per run follows.)
  const lines = formatTable(t).split('\n').slice(2);
  for (const [i, row] of t.rows.entries()) {
    const line = lines[i];
    assert.ok(line.startsWith(row.name), line);
    const marked = t.columns.filter((_, ci) => t.best[ci].includes(i)).length;
    assert.equal((line.match(/\*/g) ?? []).length, marked, line);
  }
  // One run alone has nothing to be best against.
  assert.ok(comparisonTable([results[0]]).best.every((b) => b.length === 0));
});

test('settingsDiff lists exactly the settings given differently (variant and lambda), not the run folder', async () => {
  const runs = await twoRuns();
  const results = [readRunResult(runs.met), readRunResult(runs.noGr)];
  const d = settingsDiff(results);
  assert.deepEqual(
    d.map((x) => x.key),
    ['lambda', 'variant'],
  );
  assert.deepEqual(d.find((x) => x.key === 'variant')!.values, ['met', 'no_gr']);
  assert.deepEqual(d.find((x) => x.key === 'lambda')!.values, [TRAIN_DEFAULTS.lambda, 0]);
  assert.ok(!('out' in results[0].settings));
  // A run against itself differs in nothing.
  assert.deepEqual(settingsDiff([results[0], readRunResult(runs.met, 'again')]), []);
});

test('the CSV reads back to the table: header, names, folders and every number exactly', async () => {
  const runs = await twoRuns();
  const t = comparisonTable([readRunResult(runs.met), readRunResult(runs.noGr, 'no_gr, λ=0 "b"')]);
  const csv = comparisonCsv(t);
  const rows = parseCsv(csv);
  assert.equal(rows.length, 1 + t.rows.length);
  assert.deepEqual(rows[0], ['run', 'variant', 'run_folder', ...t.columns.map((c) => c.title)]);
  // Column names are unique (budget columns included).
  assert.equal(new Set(rows[0]).size, rows[0].length);
  for (const [i, r] of t.rows.entries()) {
    assert.deepEqual(rows[i + 1].slice(0, 3), [r.name, r.variant, r.runDir]);
    assert.deepEqual(
      rows[i + 1].slice(3).map((s) => (s === '' ? null : Number(s))),
      r.values,
    );
  }
  // Every value also prints (no NaN / undefined text).
  for (const r of t.rows)
    for (const [ci, v] of r.values.entries()) assert.match(formatValue(v, t.columns[ci]), /^[–\d]/);
});

test('atBudget equals a hand-written scan of the dynamic curve with pickForBudget’s rule', async () => {
  const runs = await twoRuns();
  for (const dir of [runs.met, runs.noGr]) {
    const r = readRunResult(dir);
    const costs = [...new Set(r.dynamic.map((d) => d.gflops))].sort((a, b) => a - b);
    const budgets = [costs[0] / 2, ...costs, (costs[0] + costs[costs.length - 1]) / 2, costs[costs.length - 1] * 2];
    for (const b of budgets) {
      // By hand: the most accurate point that costs at most b (ties: any of them has that accuracy).
      let best: number | null = null;
      for (const d of r.dynamic) if (d.gflops <= b && (best === null || d.accuracy! > best)) best = d.accuracy;
      assert.equal(atBudget(r, b), best, `budget ${b}`);
    }
    assert.equal(atBudget(r, costs[0] / 2), null, 'below the cheapest point nothing fits');
  }
  // The table's budget columns are atBudget at fractions of the costliest last exit.
  const results = [readRunResult(runs.met), readRunResult(runs.noGr)];
  const t = comparisonTable(results, [0.5, 1]);
  const full = Math.max(...results.map((r) => r.exits[r.exits.length - 1].gflops));
  assert.deepEqual(t.budgets, [0.5 * full, full]);
  for (const [i, r] of results.entries())
    for (const [k, b] of t.budgets.entries())
      assert.equal(t.rows[i].values[t.columns.findIndex((c) => c.key === `budget${k + 1}`)], atBudget(r, b));
});

test('a run without predictions.json is refused with that file named', async () => {
  const runs = await twoRuns();
  const copy = fs.mkdtempSync(path.join(os.tmpdir(), 'met-compare-unfinished-'));
  try {
    fs.cpSync(runs.met, copy, { recursive: true });
    fs.rmSync(path.join(copy, 'predictions.json'));
    assert.throws(
      () => readRunResult(copy),
      (e: Error) =>
        e.name === 'UserError' && e.message.includes(path.join(copy, 'predictions.json')) && /finished/.test(e.message),
    );
    assert.throws(() => comparisonTable([]), /no runs to compare/);
  } finally {
    fs.rmSync(copy, { recursive: true, force: true });
  }
});

test('regression runs compare MAE: lower is better, per-exit MAE and the curve equal `met eval --json`', async () => {
  const { dir, run, r } = await countingRun('met-compare-reg-', { n: 40, seed: 5, epochs: 1 });
  try {
    assert.equal(r.code, 0, r.err);
    const ev = evalJson(run);
    const reg = readRunResult(run);
    assert.equal(reg.task, 'regression');
    assert.deepEqual(
      reg.exits.map((e) => [e.accuracy, e.mae, e.gflops]),
      ev.exits.map((e) => [null, e.mae, e.gflops]),
    );
    assert.deepEqual(
      reg.dynamic.map((d) => [d.p, d.mae, d.gflops]),
      ev.dynamic.map((d) => [d.p, d.mae, d.gflops]),
    );
    // Validation per epoch is MAE per exit (the epoch line's valMaePerExit), not an empty list.
    assert.equal(reg.epochs[0].val.length, reg.exits.length);
    assert.ok(reg.epochs[0].val.every((v) => Number.isFinite(v) && v >= 0));
    // Against a copy whose last exit is made worse: the lower MAE wins.
    const worse: RunResult = {
      ...reg,
      name: 'worse',
      exits: reg.exits.map((e) => ({ ...e, mae: e.mae! + 1 })),
      mean: reg.mean + 1,
    };
    const t = comparisonTable([reg, worse]);
    assert.equal(t.task, 'regression');
    for (let j = 0; j < reg.exits.length; j++) assert.deepEqual(t.best[j], [0], `exit ${j + 1}`);
    assert.deepEqual(t.best[reg.exits.length], [0], 'mean MAE');
    assert.ok(t.columns.slice(0, reg.exits.length).every((c) => c.better === 'lower'));
    // Regression and classification runs do not share a table.
    const cls = readRunResult((await twoRuns()).met);
    assert.throws(() => comparisonTable([reg, cls]), /cannot be compared/);
    // Budgets: the lowest MAE within each budget.
    for (const b of [...new Set(reg.dynamic.map((d) => d.gflops))]) {
      const fits = reg.dynamic.filter((d) => d.gflops <= b).map((d) => d.mae!);
      assert.equal(atBudget(reg, b), Math.min(...fits));
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
