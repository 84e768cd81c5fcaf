// Regression runs (issue 6) in the real extension host: a tiny regression run trained with the CLI
// on generated counting images, then the training dashboard and the runs view on it. Both must
// show MAE / RMSE per exit (not accuracy, which is NaN for such runs) equal to summary.json's,
// and the branch type of each exit. Inspect exits shows values instead of classes: per-exit MAE
// = met eval's, every slider point = the engine's MAE and GFLOPs for its thresholds, and images
// picked from disk get met predict's values, the targets of the folder's targets.csv and the
// exit met predict takes. The similarity panel refuses such a run with the reason.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { writeCountingFolder } from '../../../src/engine/demo/shapes';
import { exitScores } from '../../../src/engine/infer/exitScores';
import { applyThresholds } from '../../../src/engine/infer/thresholds';
import type { SplitPredictions, ThresholdsFile } from '../../../src/engine/run/runFolder';
import type { MetApi } from '../../../src/extension';
import type { RenderedSnapshot } from '../../../webview-ui/inspect/protocol';
import { activate, backbone, EXTENSION_ID, met, waitFor, workspaceDir } from '../fixtures';

interface Summary {
  task?: string;
  exits: {
    exit: number;
    layer: number;
    branch: string;
    accuracy: number | null;
    gflops: number;
    mae: number;
    rmse: number;
  }[];
}
interface DashSnapshot {
  runDir: string;
  rendered?: {
    accPoints: number[];
    exits: { exit: number; layer: string; branch: string; val: string; test: string; rmse?: string; gflops: string }[];
  };
}
interface RunsItem {
  dir: string;
  description: string;
  tooltip: string;
  status: string;
}

/** As the panels print target-unit errors (4 significant digits, like `met eval`). */
const num = (x: number) => x.toPrecision(4);
const readJson = <T>(f: string) => JSON.parse(fs.readFileSync(f, 'utf8')) as T;
interface InspectSnap {
  runDir: string;
  source: { kind: string; paths: string[] };
  rendered?: RenderedSnapshot;
}
const inspectOf = async (dir: string, kind = 'test') =>
  (await vscode.commands.executeCommand<InspectSnap[]>('met.inspect.snapshot')).find(
    (s) => s.runDir === dir && s.source.kind === kind,
  );
const act = (action: unknown, dir: string, kind?: 'test' | 'paths') =>
  vscode.commands.executeCommand<boolean>('met.inspect.test', action, dir, kind);
/** As thresholds.json and the snapshot hold thresholds (null / strings for the infinities). */
const decode = (v: number | string | null, last: boolean) =>
  last ? -Infinity : typeof v === 'number' ? v : v === '-Infinity' ? -Infinity : Infinity;
interface RegPrediction {
  file: string;
  exits: { exit: number; layer: number; value: number; confidence: number | null }[];
  exit: number;
  value: number;
}

suite('regression runs in the panels', () => {
  let runDir = '';
  let data = '';
  let summary: Summary;
  let valMae: number[] = [];

  suiteSetup(async function () {
    this.timeout(300_000);
    await activate();
    const ws = workspaceDir();
    data = path.join(ws, 'counting-data');
    if (!fs.existsSync(path.join(data, 'targets.csv')))
      await writeCountingFolder({ out: data, n: 120, seed: 1, maxCount: 4 });
    // Under .met/runs so that the runs view lists it (RunIndex discovers runs there).
    runDir = path.join(ws, '.met', 'runs', `regression-${Date.now()}`);
    const r = await met(
      [
        'train',
        '--task',
        'regression',
        '--data',
        data,
        '--weights',
        backbone(),
        '--heads',
        '4',
        '--exits',
        '2,4,6',
        '--epochs',
        '2',
        '--batch',
        '16',
        '--lr',
        '0.003',
        '--warmup-epochs',
        '0',
        '--threads',
        '1',
        '--out',
        runDir,
      ],
      ws,
    );
    assert.equal(r.code, 0, r.stderr);
    summary = JSON.parse(fs.readFileSync(path.join(runDir, 'summary.json'), 'utf8')) as Summary;
    assert.equal(summary.task, 'regression');
    const epochs = fs
      .readFileSync(path.join(runDir, 'metrics.jsonl'), 'utf8')
      .split('\n')
      .filter((l) => l.includes('"type":"epoch"'))
      .map((l) => JSON.parse(l) as { valMaePerExit: number[] });
    valMae = epochs.at(-1)!.valMaePerExit;
    assert.equal(epochs.length, 2);
  });

  suiteTeardown(() => vscode.commands.executeCommand('workbench.action.closeAllEditors'));

  test("the dashboard's table shows summary.json's test MAE / RMSE, the last epoch's val MAE and the branch", async function () {
    this.timeout(60_000);
    await vscode.commands.executeCommand('met.showDashboard', vscode.Uri.file(runDir));
    const snap = await waitFor(
      'the dashboard to render the summary',
      async () => {
        const s = (await vscode.commands.executeCommand<DashSnapshot[]>('met.dashboard.snapshot')).find(
          (x) => x.runDir === runDir,
        );
        return s?.rendered?.exits.length && s.rendered.exits[0].test !== '–' ? s : undefined;
      },
      30_000,
    );
    const r = snap.rendered!;
    assert.deepEqual(
      r.exits.map((e) => e.test),
      summary.exits.map((e) => num(e.mae)),
    );
    assert.deepEqual(
      r.exits.map((e) => e.rmse),
      summary.exits.map((e) => num(e.rmse)),
    );
    assert.deepEqual(
      r.exits.map((e) => e.val),
      valMae.map(num),
    );
    assert.deepEqual(
      r.exits.map((e) => e.branch),
      summary.exits.map((e) => e.branch),
    );
    for (const e of r.exits) assert.ok(!/NaN/.test(JSON.stringify(e)), `no NaN in ${JSON.stringify(e)}`);
    // The val-MAE chart has one point per epoch and exit (it would be empty if it read accuracy).
    assert.deepEqual(
      r.accPoints,
      summary.exits.map(() => 2),
    );
  });

  test('the runs view lists the run with its test MAE per exit and the branch', async function () {
    this.timeout(60_000);
    await vscode.commands.executeCommand('met.runs.refresh');
    const item = await waitFor(
      'the run in the runs view',
      async () => {
        const items = await vscode.commands.executeCommand<RunsItem[]>('met.runs.snapshot');
        return items.find((i) => i.dir === runDir && i.status === 'done');
      },
      30_000,
    );
    assert.ok(item.description.includes(`MAE ${summary.exits.map((e) => num(e.mae)).join(' / ')}`), item.description);
    assert.ok(!/NaN|acc/.test(item.description), item.description);
    for (const e of summary.exits) {
      const row = `| ${e.exit} | ${e.layer} | ${num(e.mae)} | ${num(e.rmse)} | ${e.gflops.toPrecision(3)} | ${e.branch} |`;
      assert.ok(item.tooltip.includes(row), `tooltip has the row ${row}:\n${item.tooltip}`);
    }
    assert.match(item.tooltip, /regression · branch `linear`/);
  });

  test("Inspect exits shows values per exit; the MAE per exit equals met eval; every slider point is the engine's MAE and GFLOPs", async function () {
    this.timeout(180_000);
    const ev = await met(['eval', '--run', runDir, '--json'], workspaceDir());
    assert.equal(ev.code, 0, ev.stderr);
    const evaluated = JSON.parse(ev.stdout) as { exits: { exit: number; mae: number }[] };
    const test = readJson<{ test: SplitPredictions }>(path.join(runDir, 'predictions.json')).test;
    assert.equal(test.task, 'regression');
    const opened = await vscode.commands.executeCommand<string>('met.inspectExits', runDir);
    assert.equal(opened, runDir, 'the panel opens (regression runs are no longer refused)');
    const r = (await waitFor(
      'the panel to render the regression test split',
      async () => {
        const x = (await inspectOf(runDir))?.rendered;
        return x && x.n === test.files.length && x.applied === x.n ? x : undefined;
      },
      60_000,
    ))!;
    assert.equal(r.task, 'regression');
    // MAE per exit: summed in float64 over the stored values, as met eval computes it.
    r.exitAccuracy.forEach((m, j) =>
      assert.ok(
        m !== null && Math.abs(m - evaluated.exits[j].mae) <= 1e-9 * Math.max(1, evaluated.exits[j].mae),
        `exit ${j + 1}: MAE ${m} vs met eval ${evaluated.exits[j].mae}`,
      ),
    );
    assert.deepEqual(
      r.exitAccuracyText.map(Number),
      evaluated.exits.map((e) => Number(num(e.mae))),
    );
    assert.equal(r.markedCells, r.domRows, 'one exit marked per row');
    assert.equal(
      r.classes.reduce((a, c) => a + c.n, 0),
      r.n,
      'the per-target summary covers every image',
    );
    assert.ok(
      r.classes.every((c) => /^= \d+$/.test(c.name)),
      `counts group by value: ${r.classes.map((c) => c.name).join(', ')}`,
    );

    const th = readJson<ThresholdsFile>(path.join(runDir, 'thresholds.json'));
    const M = th.exits.length;
    const cost = th.exits.map((j) => th.gflops[j]);
    const scores = exitScores(test, th.exits);
    assert.ok(r.slider.count >= 2, `the MAE curve has several distinct points (${r.slider.count})`);
    for (let i = r.slider.count - 1; i >= 0; i--) {
      assert.ok(await act({ kind: 'slider', index: i }, runDir));
      const s = (
        await waitFor(`slider point ${i}`, async () => {
          const x = (await inspectOf(runDir))?.rendered;
          return x?.slider.index === i ? x : undefined;
        })
      ).slider;
      const T = s.thresholds.map((v, u) => decode(v, u === M - 1));
      const want = applyThresholds(scores, T, cost);
      assert.equal(s.accuracy, -want.accuracy, `MAE at point ${i} = -(the engine's accuracy)`);
      assert.deepEqual(s.exitCounts, want.exitCounts, `exit counts at point ${i}`);
      assert.ok(Math.abs(s.gflops! - want.gflops) <= 1e-12 * want.gflops, `GFLOPs at point ${i}`);
      const pt = th.curve.find(
        (c) => c.p === s.p && c.thresholds.every((v, u) => decode(v as number | null, u === M - 1) === T[u]),
      );
      if (s.p !== null) {
        assert.ok(pt, `point ${i} (p ${s.p}) is a point of thresholds.json's curve`);
        assert.equal(s.accuracy, -pt!.accuracy, 'the curve records -MAE as its accuracy');
      }
      assert.ok(!/%|NaN/.test(s.accuracyText), `the readout is a MAE, not a percentage: ${s.accuracyText}`);
    }
    // Selecting an image shows its values per exit and its target.
    await act({ kind: 'select', row: 0 }, runDir, 'test');
    const sel = (await waitFor(
      'image 0 selected',
      async () => (await inspectOf(runDir))?.rendered?.selected ?? undefined,
    )) as NonNullable<RenderedSnapshot['selected']>;
    assert.deepEqual(
      sel.bars.map((b) => b.value),
      test.pred.map((v) => v[0]),
      'values per exit = predictions.json',
    );
    assert.equal(sel.target, test.labels[0]);
  });

  test("Inspect exits on images from disk: met predict's values, the targets of the folder's targets.csv, met predict's exit", async function () {
    this.timeout(180_000);
    const csv = fs
      .readFileSync(path.join(data, 'targets.csv'), 'utf8')
      .trim()
      .split('\n')
      .slice(1)
      .map((l) => l.split(','));
    const images = csv.slice(0, 5).map(([f]) => path.join(data, f));
    const targetOf = new Map(csv.map(([f, v]) => [path.join(data, f), Number(v)]));
    const pr = await met(['predict', '--run', runDir, '--json', ...images], workspaceDir());
    assert.equal(pr.code, 0, pr.stderr);
    const predicted = JSON.parse(pr.stdout) as RegPrediction[];
    // The first selection goes out right after the command, before the panel has its images.
    const opened = await vscode.commands.executeCommand<string>(
      'met.inspectExits',
      vscode.Uri.file(images[0]),
      images.map((f) => vscode.Uri.file(f)),
    );
    assert.equal(opened, runDir);
    for (let row = 0; row < images.length; row++) {
      await act({ kind: 'select', row }, runDir, 'paths');
      const s = await waitFor(
        `image ${row} scored and selected`,
        async () => {
          const x = (await inspectOf(runDir, 'paths'))?.rendered;
          return x && x.task === 'regression' && x.applied === images.length && x.selected?.index === row
            ? x
            : undefined;
        },
        60_000,
      );
      const sel = s.selected!;
      const p = predicted.find((x) => x.file === sel.file)!;
      assert.ok(p, `met predict scored ${sel.file}`);
      assert.deepEqual(
        sel.bars.map((b) => b.value),
        p.exits.map((e) => e.value),
        'values per exit = met predict --run',
      );
      // Exit 1 has no agreement (NaN; null in JSON), the others -|Δ|, as met predict prints them.
      assert.deepEqual(
        sel.bars.map((b) => (b.conf === null || Number.isNaN(b.conf) ? null : b.conf)),
        p.exits.map((e) => e.confidence),
      );
      assert.equal(sel.exit, p.exit, 'the exit marked = the exit met predict takes under the saved thresholds');
      assert.equal(sel.target, targetOf.get(sel.file), "the target from the folder's targets.csv");
    }
  });

  test('the similarity panel refuses a regression run with the reason (graph regularization needs classes)', async function () {
    const api = await vscode.extensions.getExtension<MetApi>(EXTENSION_ID)!.activate();
    assert.equal(await vscode.commands.executeCommand('met.showSimilarity', runDir), undefined);
    assert.ok(
      api
        .messages()
        .some((m) => m.text.includes(`${path.basename(runDir)} is a regression run`) && m.text.includes('classes')),
      JSON.stringify(api.messages().slice(-2)),
    );
  });
});
