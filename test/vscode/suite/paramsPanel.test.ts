// The parameter-counts panel in the real extension host: for a config file (opened from the
// CodeLens, as a user clicks it) and for the run trained from it, the numbers the webview
// received and the texts it shows equal `node dist/cli.js params --config FILE --json`; a saved
// edit of the file recomputes them; hidden and shown again, the panel rebuilds itself.
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { activate, met, tinyRun, waitFor, writeConfig } from '../fixtures';
import type { ParamsReport } from '../../../src/app/params';
import type { ParamsRendered } from '../../../webview-ui/params/protocol';

type Report = ParamsReport;
type Rendered = ParamsRendered;
interface Snapshot {
  source: { kind: 'config' | 'run'; path: string; name: string };
  visible: boolean;
  readyCount: number;
  computed: number;
  state?: { source: { kind: string; path: string } };
  rendered?: Rendered | null;
  error?: string | null;
}

const snapshotOf = async (p: string) =>
  (await vscode.commands.executeCommand<Snapshot[]>('met.params.snapshot')).find((s) => s.source.path === p);
const int = (n: number) => n.toLocaleString('en-US');
const fmtPercent = (x: number) => (x >= 0.1 ? x.toFixed(2) : x.toPrecision(2));
const fmtGflops = (x: number) => (x >= 100 ? x.toFixed(0) : x.toPrecision(3));

async function cliParams(configFile: string): Promise<Report> {
  const r = await met(['params', '--config', configFile, '--json'], path.dirname(configFile), 120_000);
  if (r.code !== 0) throw new Error(`met params --config ${configFile} failed (${r.code}):\n${r.stderr}`);
  return JSON.parse(r.stdout) as Report;
}

async function rendered(p: string, after = -1): Promise<Snapshot> {
  return waitFor(
    `the parameter panel of ${p} to render`,
    async () => {
      const s = await snapshotOf(p);
      if (s?.error) throw new Error(`the panel shows an error: ${s.error}`);
      // The webview shows the host's latest computation, newer than `after`.
      return s?.rendered && s.computed > after && s.rendered.seq === s.computed ? s : undefined;
    },
    60_000,
  );
}

/** Every number and text of the panel against the CLI's report. */
function assertMatches(r: Rendered, cli: Report): void {
  assert.equal(r.raw.trainable, cli.trainable);
  assert.equal(r.raw.backbone, cli.backbone);
  assert.equal(r.raw.total, cli.total);
  assert.equal(r.raw.trainablePercent, cli.trainable_percent);
  assert.equal(r.raw.metAdapters, cli.met_adapters);
  assert.equal(r.raw.independentAdapters, cli.independent_adapters);
  assert.deepEqual(r.raw.groups, [cli.backbone, cli.shared_projections, cli.cores, cli.diagonals, cli.heads]);
  assert.deepEqual(
    r.raw.gflops,
    cli.exits.map((e) => e.gflops),
  );
  // What the user reads.
  assert.equal(r.cards.trainable, int(cli.trainable));
  assert.equal(r.cards.percent, `${fmtPercent(cli.trainable_percent)}%`);
  assert.equal(r.cards.backbone, int(cli.backbone));
  assert.equal(r.cards.total, int(cli.total));
  assert.equal(r.cards.reduction, cli.reduction === null ? 'n/a' : `${(100 * cli.reduction).toFixed(1)}%`);
  assert.deepEqual(
    r.groups.map((g) => g.params),
    [cli.backbone, cli.shared_projections, cli.cores, cli.diagonals, cli.heads].map(int),
  );
  assert.deepEqual(
    r.components.map((c) => [c.name, c.shape, c.count, c.params, c.trainable]),
    cli.components.map((c) => [c.name, c.shape, int(c.count), int(c.params), c.trainable ? 'yes' : 'frozen']),
  );
  assert.deepEqual(
    r.exits,
    // Each exit's branch type and its parameters, as `met params` reports them.
    cli.exits.map((e) => ({
      exit: String(e.exit),
      layer: String(e.layer),
      branch: e.branch,
      branchParams: int(cli.branches[e.exit - 1].params),
      gflops: fmtGflops(e.gflops),
      segment: fmtGflops(e.segment_gflops),
    })),
  );
}

suite('parameter counts panel', () => {
  suiteSetup(async function () {
    this.timeout(240_000);
    await activate();
    await tinyRun();
  });

  suiteTeardown(() => vscode.commands.executeCommand('workbench.action.closeAllEditors'));

  test('the CodeLens opens it for the config file; its numbers equal `met params --config FILE --json`', async function () {
    this.timeout(120_000);
    const run = await tinyRun();
    const uri = vscode.Uri.file(run.configFile);
    await vscode.window.showTextDocument(uri);
    const lens = await waitFor(
      'the trainable-params lens',
      async () => {
        const ls =
          (await vscode.commands.executeCommand<vscode.CodeLens[]>('vscode.executeCodeLensProvider', uri)) ?? [];
        return ls.find((l) => /trainable params/.test(l.command?.title ?? ''));
      },
      60_000,
    );
    assert.equal(lens.command!.command, 'met.showParams');
    await vscode.commands.executeCommand(lens.command!.command, ...(lens.command!.arguments ?? []));
    const snap = await rendered(run.configFile);
    assert.equal(snap.source.kind, 'config');
    assert.equal(snap.state?.source.path, run.configFile, 'the source is kept with setState');
    assertMatches(snap.rendered!, await cliParams(run.configFile));
  });

  test('for a run it shows the numbers of the settings the run was trained with', async function () {
    this.timeout(120_000);
    const run = await tinyRun();
    const opened = await vscode.commands.executeCommand<string>('met.showParams', vscode.Uri.file(run.runDir));
    assert.equal(opened, run.runDir);
    const snap = await rendered(run.runDir);
    assert.equal(snap.source.kind, 'run');
    // The run was trained from this config file: the same model, exits, rank and classes.
    assertMatches(snap.rendered!, await cliParams(run.configFile));
  });

  test('a saved edit of the config file recomputes; hidden and shown again it rebuilds', async function () {
    this.timeout(180_000);
    const file = writeConfig(`params-panel-${Date.now()}`, 'met.config.json', { rank: 4, exits: [3, 6] });
    await vscode.commands.executeCommand('met.showParams', file);
    const first = await rendered(file);
    assertMatches(first.rendered!, await cliParams(file));
    // Edit in the editor and save, as a user does.
    const doc = await vscode.workspace.openTextDocument(file);
    const editor = await vscode.window.showTextDocument(doc, { preview: false });
    const text = doc.getText();
    await editor.edit((e) =>
      e.replace(
        new vscode.Range(doc.positionAt(0), doc.positionAt(text.length)),
        text.replace('"rank": 4', '"rank": 16'),
      ),
    );
    assert.ok(await doc.save());
    // The editor hides the panel (same group); the host recomputes on the save meanwhile.
    await waitFor('the panel to be hidden', async () => (await snapshotOf(file))?.visible === false);
    await waitFor(
      'a recomputation after the save',
      async () => ((await snapshotOf(file))?.computed ?? 0) > first.computed,
      60_000,
    );
    const cli = await cliParams(file);
    assert.equal(cli.config.rank, 16);
    // Shown again, the rebuilt webview shows the new numbers.
    const before = (await snapshotOf(file))!;
    await vscode.commands.executeCommand('met.showParams', file);
    const again = await waitFor(
      'a rebuilt webview to render the new numbers',
      async () => {
        const s = await snapshotOf(file);
        return s && s.readyCount > before.readyCount && s.rendered && s.rendered.seq === s.computed ? s : undefined;
      },
      60_000,
    );
    assert.notEqual(again.rendered!.raw.trainable, first.rendered!.raw.trainable);
    assertMatches(again.rendered!, cli);
  });
});
