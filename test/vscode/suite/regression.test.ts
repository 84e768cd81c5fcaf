// Regression runs (issue 6) in the real extension host: a tiny regression run trained with the CLI
// on generated counting images, then the training dashboard and the runs view on it. Both must
// show MAE / RMSE per exit (not accuracy, which is NaN for such runs) equal to summary.json's,
// and the branch type of each exit.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { writeCountingFolder } from '../../../src/engine/demo/shapes';
import { activate, backbone, met, waitFor, workspaceDir } from '../fixtures';

interface Summary {
  task?: string;
  exits: { exit: number; layer: number; branch: string; accuracy: number | null; gflops: number; mae: number; rmse: number }[];
}
interface DashSnapshot {
  runDir: string;
  rendered?: { accPoints: number[]; exits: { exit: number; layer: string; branch: string; val: string; test: string; rmse?: string; gflops: string }[] };
}
interface RunsItem {
  dir: string;
  description: string;
  tooltip: string;
  status: string;
}

/** As the panels print target-unit errors (4 significant digits, like `met eval`). */
const num = (x: number) => x.toPrecision(4);

suite('regression runs in the panels', () => {
  let runDir = '';
  let summary: Summary;
  let valMae: number[] = [];

  suiteSetup(async function () {
    this.timeout(300_000);
    await activate();
    const ws = workspaceDir();
    const data = path.join(ws, 'counting-data');
    if (!fs.existsSync(path.join(data, 'targets.csv'))) await writeCountingFolder({ out: data, n: 120, seed: 1, maxCount: 4 });
    // Under .met/runs so that the runs view lists it (RunIndex discovers runs there).
    runDir = path.join(ws, '.met', 'runs', `regression-${Date.now()}`);
    const r = await met(['train', '--task', 'regression', '--data', data, '--weights', backbone(), '--heads', '4', '--exits', '2,4,6', '--epochs', '2', '--batch', '16', '--lr', '0.003', '--warmup-epochs', '0', '--threads', '1', '--out', runDir], ws);
    assert.equal(r.code, 0, r.stderr);
    summary = JSON.parse(fs.readFileSync(path.join(runDir, 'summary.json'), 'utf8')) as Summary;
    assert.equal(summary.task, 'regression');
    const epochs = fs.readFileSync(path.join(runDir, 'metrics.jsonl'), 'utf8').split('\n').filter((l) => l.includes('"type":"epoch"')).map((l) => JSON.parse(l) as { valMaePerExit: number[] });
    valMae = epochs.at(-1)!.valMaePerExit;
    assert.equal(epochs.length, 2);
  });

  suiteTeardown(() => vscode.commands.executeCommand('workbench.action.closeAllEditors'));

  test("the dashboard's table shows summary.json's test MAE / RMSE, the last epoch's val MAE and the branch", async function () {
    this.timeout(60_000);
    await vscode.commands.executeCommand('met.showDashboard', vscode.Uri.file(runDir));
    const snap = await waitFor('the dashboard to render the summary', async () => {
      const s = (await vscode.commands.executeCommand<DashSnapshot[]>('met.dashboard.snapshot')).find((x) => x.runDir === runDir);
      return s?.rendered?.exits.length && s.rendered.exits[0].test !== '–' ? s : undefined;
    }, 30_000);
    const r = snap.rendered!;
    assert.deepEqual(r.exits.map((e) => e.test), summary.exits.map((e) => num(e.mae)));
    assert.deepEqual(r.exits.map((e) => e.rmse), summary.exits.map((e) => num(e.rmse)));
    assert.deepEqual(r.exits.map((e) => e.val), valMae.map(num));
    assert.deepEqual(r.exits.map((e) => e.branch), summary.exits.map((e) => e.branch));
    for (const e of r.exits) assert.ok(!/NaN/.test(JSON.stringify(e)), `no NaN in ${JSON.stringify(e)}`);
    // The val-MAE chart has one point per epoch and exit (it would be empty if it read accuracy).
    assert.deepEqual(r.accPoints, summary.exits.map(() => 2));
  });

  test('the runs view lists the run with its test MAE per exit and the branch', async function () {
    this.timeout(60_000);
    await vscode.commands.executeCommand('met.runs.refresh');
    const item = await waitFor('the run in the runs view', async () => {
      const items = await vscode.commands.executeCommand<RunsItem[]>('met.runs.snapshot');
      return items.find((i) => i.dir === runDir && i.status === 'done');
    }, 30_000);
    assert.ok(item.description.includes(`MAE ${summary.exits.map((e) => num(e.mae)).join(' / ')}`), item.description);
    assert.ok(!/NaN|acc/.test(item.description), item.description);
    for (const e of summary.exits) {
      const row = `| ${e.exit} | ${e.layer} | ${num(e.mae)} | ${num(e.rmse)} | ${e.gflops.toPrecision(3)} | ${e.branch} |`;
      assert.ok(item.tooltip.includes(row), `tooltip has the row ${row}:\n${item.tooltip}`);
    }
    assert.match(item.tooltip, /regression · branch `linear`/);
  });
});
