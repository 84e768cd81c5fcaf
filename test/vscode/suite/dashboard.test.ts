// The training dashboard in the real extension host: it opens on a finished run and its webview
// renders (and keeps in its state) the per-exit accuracies of summary.json; it follows a live
// training started through the extension (steps advance, then the summary arrives); hidden and
// shown again, it rebuilds itself from the run folder.
//
// What the webview reports comes back through the hidden command met.dashboard.snapshot: the
// object the webview passed to setState and the text of its stable elements, posted by the
// webview itself after each render (so it proves the script ran and drew).
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { activate, tinyRun, waitFor, writeConfig } from '../fixtures';
import type { RenderedSnapshot } from '../../../webview-ui/dashboard/protocol';

interface Snapshot {
  runDir: string;
  visible: boolean;
  readyCount: number;
  state?: { runDir: string; status?: string; summaryAccuracy?: (number | null)[] };
  rendered?: RenderedSnapshot;
}

const snapshots = () => vscode.commands.executeCommand<Snapshot[]>('met.dashboard.snapshot');
const snapshotOf = async (dir: string) => (await snapshots()).find((s) => s.runDir === dir);
const pct = (x: number | null) => (x === null ? '–' : `${(100 * x).toFixed(1)}%`);

interface Api {
  fineTune(args: Record<string, unknown>): Promise<{ runDir: string; status: string; error?: string } | undefined>;
}

suite('training dashboard', () => {
  suiteSetup(async function () {
    this.timeout(240_000);
    await activate();
    await tinyRun();
  });

  suiteTeardown(() => vscode.commands.executeCommand('workbench.action.closeAllEditors'));

  test("opens on a finished run; the webview's state holds summary.json's per-exit accuracies", async function () {
    this.timeout(60_000);
    const run = await tinyRun();
    const opened = await vscode.commands.executeCommand<string>('met.showDashboard', vscode.Uri.file(run.runDir));
    assert.equal(opened, run.runDir);
    const snap = await waitFor(
      'the dashboard to render the summary',
      async () => {
        const s = await snapshotOf(run.runDir);
        return s?.state?.summaryAccuracy ? s : undefined;
      },
      30_000,
    );
    const expected = run.summary.exits.map((e) =>
      e.accuracy === null || !Number.isFinite(e.accuracy) ? null : e.accuracy,
    );
    assert.deepEqual(snap.state!.summaryAccuracy, expected);
    assert.equal(snap.state!.runDir, run.runDir);
    assert.equal(snap.state!.status, 'done');
    const r = snap.rendered!;
    assert.deepEqual(
      r.exits.map((e) => e.test),
      expected.map(pct),
      'the table shows the test accuracy per exit',
    );
    assert.deepEqual(
      r.exits.map((e) => e.layer),
      run.summary.exits.map((e) => String(e.layer)),
    );
    assert.deepEqual(
      r.exits.map((e) => e.gflops),
      run.summary.exits.map((e) => e.gflops.toPrecision(3)),
    );
    assert.equal(r.epoch, '1 / 1');
    assert.equal(r.eta, 'done');
    assert.match(r.throughput, /^\d+\.\d img\/s$/);
    assert.equal(r.status, 'done');
    // metrics.jsonl: every step of the epoch is a point of each exit's loss line.
    const steps = fs
      .readFileSync(path.join(run.runDir, 'metrics.jsonl'), 'utf8')
      .split('\n')
      .filter((l) => l.includes('"type":"step"')).length;
    assert.ok(steps >= 1);
    assert.deepEqual(
      r.lossPoints,
      expected.map(() => steps),
      'one loss point per step and exit',
    );
    assert.deepEqual(
      r.accPoints,
      expected.map(() => 1),
      'one validation point per epoch and exit',
    );
    assert.equal(r.step, `${steps} / ${steps}`);
  });

  test('hidden and shown again, the webview rebuilds itself from the run folder', async function () {
    this.timeout(60_000);
    const run = await tinyRun();
    const before = (await snapshotOf(run.runDir))!;
    // Another editor in the same group hides the panel (its webview document is destroyed).
    await vscode.window.showTextDocument(vscode.Uri.file(path.join(run.runDir, 'config.json')), { preview: false });
    await waitFor('the panel to be hidden', async () => (await snapshotOf(run.runDir))?.visible === false);
    await vscode.commands.executeCommand('met.showDashboard', run.runDir);
    const again = await waitFor(
      'a rebuilt webview to render',
      async () => {
        const s = await snapshotOf(run.runDir);
        return s && s.readyCount > before.readyCount && s.state?.summaryAccuracy ? s : undefined;
      },
      30_000,
    );
    assert.deepEqual(again.state, before.state);
    assert.deepEqual(again.rendered, before.rendered);
  });

  test('follows a live training started in VS Code: steps advance, then the summary arrives', async function () {
    this.timeout(300_000);
    const api = (await activate()).exports as Api;
    // Long enough to be watched while it runs (tens of steps), small enough for CI.
    const config = writeConfig(`dashboard-live-${Date.now()}`, 'met.config.json', { epochs: 12, batch: 8 });
    const started = await api.fineTune({
      config: vscode.Uri.file(config),
      confirm: false,
      wait: false,
      allowConcurrent: true,
    });
    assert.ok(started && started.runDir, `fine-tune started (${JSON.stringify(started)})`);
    const runDir = started.runDir;
    await vscode.commands.executeCommand('met.showDashboard', runDir);
    const seen = new Set<string>();
    const done = await waitFor(
      'the live run to finish in the dashboard',
      async () => {
        const s = await snapshotOf(runDir);
        if (s?.rendered && s.state?.status === 'running') seen.add(s.rendered.step);
        return s?.state?.summaryAccuracy ? s : undefined;
      },
      280_000,
      100,
    );
    const steps = [...seen].filter((x) => /^\d+ \/ \d+$/.test(x) && !x.startsWith('0 '));
    assert.ok(steps.length >= 2, `saw the step counter advance while running (${[...seen].join(', ')})`);
    const summary = JSON.parse(fs.readFileSync(path.join(runDir, 'summary.json'), 'utf8')) as {
      exits: { accuracy: number | null }[];
    };
    assert.deepEqual(
      done.state!.summaryAccuracy,
      summary.exits.map((e) => e.accuracy),
    );
    assert.equal(done.rendered!.epoch, '12 / 12');
  });
});
