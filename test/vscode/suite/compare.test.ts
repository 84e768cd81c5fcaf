// The Compare runs panel in the real extension host, on two runs trained here with the bundled CLI
// (the shared tiny run: variant met, λ at its default; and one with variant no_gr, λ 0): opened with both
// run folders as the Runs view's multi-selection passes them, the points it drew on the
// accuracy-versus-GFLOPs chart and the table's per-exit cells equal `node dist/cli.js eval --run
// RUN --json` of each run; the settings diff names exactly the settings whose values differ in the
// runs' config.json; Export CSV and SVG write the table and a standalone SVG; a study folder opens
// on its finished runs, named by variant; hidden and shown again, the panel rebuilds. (After a
// window reload the serializer brings it back: test/vscode/host/panels-ui.mjs --only compare.)
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as vscode from 'vscode';
import {
  activate,
  extension,
  met,
  tinyRun,
  trainWithCli,
  waitFor,
  workspaceDir,
  writeConfig,
  type TinyRun,
} from '../fixtures';
import type { CompareRendered, CompareSource, CompareState } from '../../../webview-ui/compare/protocol';

interface Snapshot {
  key: string;
  source: CompareSource;
  loads: number;
  exports: { format: string; file: string }[];
  visible: boolean;
  readyCount: number;
  state?: CompareState;
  rendered?: CompareRendered | null;
  error?: string | null;
  exported?: { format: string; file: string | null } | null;
}

interface EvalJson {
  exits: { exit: number; layer: number; accuracy: number | null; gflops: number }[];
  dynamic: { p: number; accuracy: number | null; gflops: number }[];
}

const snapshots = () => vscode.commands.executeCommand<Snapshot[]>('met.compare.snapshot');

async function rendered(key: string, o: { after?: number; what?: string } = {}): Promise<Snapshot> {
  return waitFor(
    o.what ?? `the compare panel ${key} to render`,
    async () => {
      const s = (await snapshots()).find((x) => x.key === key);
      if (s?.error) throw new Error(`the panel shows an error: ${s.error}`);
      return s?.rendered && s.loads > (o.after ?? 0) && s.readyCount > 0 ? s : undefined;
    },
    60_000,
  );
}

async function evalJson(runDir: string): Promise<EvalJson> {
  const r = await met(['eval', '--run', runDir, '--json', '--threads', '1'], workspaceDir(), 120_000);
  if (r.code !== 0) throw new Error(`met eval --run ${runDir} failed (${r.code}):\n${r.stderr}`);
  return JSON.parse(r.stdout) as EvalJson;
}

/** The train settings whose values differ between two runs' config.json, read here by hand. */
function differingSettings(a: string, b: string): string[] {
  const read = (d: string) =>
    (JSON.parse(fs.readFileSync(path.join(d, 'config.json'), 'utf8')) as { train: Record<string, unknown> }).train;
  const x = read(a);
  const y = read(b);
  return [...new Set([...Object.keys(x), ...Object.keys(y)])]
    .filter((k) => k !== 'out' && JSON.stringify(x[k] ?? null) !== JSON.stringify(y[k] ?? null))
    .sort();
}

suite('Compare runs panel', () => {
  let a: TinyRun;
  let b: TinyRun;
  const evals = new Map<string, EvalJson>();

  suiteSetup(async function () {
    this.timeout(600_000);
    await activate();
    a = await tinyRun();
    b = await trainWithCli(writeConfig('compare-no-gr', 'met.config.json', { variant: 'no_gr', lambda: 0 }));
    // Before any panel opens: `met eval` rewrites predictions.json and thresholds.json (with the
    // same numbers), which an open panel would re-read.
    for (const r of [a, b]) evals.set(r.runDir, await evalJson(r.runDir));
  });

  suiteTeardown(() => vscode.commands.executeCommand('workbench.action.closeAllEditors'));

  test("opened on the Runs view's multi-selection, its curves and table equal `met eval --json`; the diff names what differs", async function () {
    this.timeout(120_000);
    const ua = vscode.Uri.file(a.runDir);
    const ub = vscode.Uri.file(b.runDir);
    // A context-menu command of a tree with canSelectMany gets (clicked item, all selected items).
    const key = await vscode.commands.executeCommand<string>('met.runs.compare', ua, [ua, ub]);
    assert.ok(key, 'the command returns the panel');
    const snap = await rendered(key);
    const r = snap.rendered!;
    assert.deepEqual(snap.state?.source.runs, [a.runDir, b.runDir], 'the runs are kept with setState');
    assert.equal(r.task, 'classification');
    assert.deepEqual(r.legend, [path.basename(a.runDir), path.basename(b.runDir)]);
    assert.deepEqual(r.skipped, []);
    for (const [i, run] of [a, b].entries()) {
      const ev = evals.get(run.runDir)!;
      const drawn = r.curve[i];
      // The exits' markers: accuracy and GFLOPs per exit, exactly.
      assert.deepEqual(
        drawn.static.map((p) => [p.exit, p.x, p.y]),
        ev.exits.filter((e) => e.accuracy !== null).map((e) => [e.exit, e.gflops, e.accuracy]),
      );
      // The budgeted curve: every point of `met eval`'s dynamic list.
      assert.deepEqual(
        drawn.dynamic.map((p) => [p.p, p.x, p.y]),
        ev.dynamic
          .filter((d) => d.accuracy !== null)
          .sort((x, y) => x.p - y.p)
          .map((d) => [d.p, d.gflops, d.accuracy]),
      );
      // The bars and the table's per-exit cells say the same numbers.
      assert.deepEqual(
        r.bars.map((g) => g.values[i]),
        ev.exits.map((e) => e.accuracy),
      );
      assert.deepEqual(
        r.table.rows[i].cells.slice(0, ev.exits.length),
        ev.exits.map((e) => (100 * e.accuracy!).toFixed(1)),
      );
      // The last-exit GFLOPs column.
      const gi = r.table.header.indexOf('GF last') - 1;
      assert.equal(r.table.rows[i].cells[gi], ev.exits[ev.exits.length - 1].gflops.toPrecision(3));
    }
    // Best per exit column: the higher accuracy, marked on both rows when equal.
    for (let j = 0; j < evals.get(a.runDir)!.exits.length; j++) {
      const acc = [a, b].map((run) => evals.get(run.runDir)!.exits[j].accuracy!);
      const best = Math.max(...acc);
      assert.deepEqual(
        r.table.rows.map((row) => row.best[j]),
        acc.map((x) => x === best),
        `exit ${j + 1}: ${acc}`,
      );
    }
    // The settings diff: exactly the keys whose values differ in the two config.json files.
    const keys = differingSettings(a.runDir, b.runDir);
    assert.deepEqual(keys, ['lambda', 'variant']);
    assert.deepEqual(r.diff.keys, keys);
    // The tiny run's lambda is the default (0.001 since issue 13), as its config.json says.
    const lambdaA = (
      JSON.parse(fs.readFileSync(path.join(a.runDir, 'config.json'), 'utf8')) as { train: { lambda: number } }
    ).train.lambda;
    assert.deepEqual(r.diff.values, [
      [String(lambdaA), '0'],
      ['met', 'no_gr'],
    ]);
    // Axes say what is drawn.
    assert.equal(r.axes.curveY, 'test accuracy (%)');
    assert.equal(r.axes.curveX, 'GFLOPs per image');
    // Training curves: step losses and the validation epoch of each run.
    assert.ok(r.training.every((t) => t.steps > 0 && t.epochs === 1 && t.valLines === 1));
  });

  test('the keyboard cursor reads a point out; per-exit validation curves on demand', async function () {
    this.timeout(60_000);
    const key = await vscode.commands.executeCommand<string>('met.compareRuns', a.runDir, b.runDir);
    const before = await rendered(key);
    await vscode.commands.executeCommand('met.compare.test', { kind: 'focusPoint', run: 1, point: 0 }, key);
    const ev = evals.get(b.runDir)!;
    const first = [...ev.exits, ...ev.dynamic].sort((x, y) => x.gflops - y.gflops)[0];
    const s = await waitFor('the readout of the first point of the second run', async () => {
      const x = (await snapshots()).find((y) => y.key === key);
      return x?.rendered?.readout?.startsWith(`${path.basename(b.runDir)}: `) ? x : undefined;
    });
    assert.match(s.rendered!.readout!, new RegExp(`at ${first.gflops.toPrecision(3).replace('.', '\\.')} GFLOPs$`));
    assert.deepEqual(s.state?.cursor, { run: 1, point: 0 }, 'the cursor is kept with setState');
    await vscode.commands.executeCommand('met.compare.test', { kind: 'perExit', on: true }, key);
    const K = ev.exits.length;
    const per = await waitFor('one validation line per run and exit', async () => {
      const x = (await snapshots()).find((y) => y.key === key);
      return x?.rendered?.perExit && x.rendered.training.every((t) => t.valLines === K) ? x : undefined;
    });
    assert.equal(per.state?.perExit, true);
    assert.ok(before.readyCount >= 1);
  });

  test('Export CSV writes the comparison table; Export SVG one standalone file with concrete colours', async function () {
    this.timeout(60_000);
    const key = await vscode.commands.executeCommand<string>('met.compareRuns', a.runDir, b.runDir);
    await rendered(key);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'met-compare-export-'));
    try {
      const csvFile = path.join(dir, 'table.csv');
      await vscode.commands.executeCommand('met.compare.test', { kind: 'export', format: 'csv', target: csvFile }, key);
      await waitFor('the CSV file', () => fs.existsSync(csvFile));
      const lines = fs.readFileSync(csvFile, 'utf8').trim().split('\n');
      assert.equal(lines.length, 3);
      assert.match(lines[0], /^run,variant,run_folder,/);
      for (const [i, run] of [a, b].entries()) {
        const cells = lines[i + 1].split(',');
        assert.deepEqual(cells.slice(0, 3), [path.basename(run.runDir), i ? 'no_gr' : 'met', run.runDir]);
        const ev = evals.get(run.runDir)!;
        assert.deepEqual(
          cells.slice(3, 3 + ev.exits.length).map(Number),
          ev.exits.map((e) => e.accuracy),
        );
      }
      const svgFile = path.join(dir, 'charts.svg');
      await vscode.commands.executeCommand('met.compare.test', { kind: 'export', format: 'svg', target: svgFile }, key);
      await waitFor('the SVG file', () => fs.existsSync(svgFile));
      const svg = fs.readFileSync(svgFile, 'utf8');
      // Kept to look at (test-artifacts/compare-export.svg).
      const artifacts = path.join(extension().extensionPath, 'test-artifacts');
      fs.mkdirSync(artifacts, { recursive: true });
      fs.copyFileSync(svgFile, path.join(artifacts, 'compare-export.svg'));
      assert.match(svg, /^<\?xml[^>]*>\n<svg [^>]*xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
      assert.doesNotMatch(svg, /var\(--/, 'theme variables are resolved');
      assert.doesNotMatch(svg, /class="/, 'no classes: the styles are inline');
      assert.match(svg, /fill="rgba?\(\d/);
      // Five charts, each a nested <svg> (plus the legend's swatches).
      assert.ok((svg.match(/<svg /g) ?? []).length >= 1 + 5 + 2);
      assert.ok(svg.includes('Accuracy versus GFLOPs'));
      const s = (await snapshots()).find((x) => x.key === key)!;
      assert.deepEqual(
        s.exports.map((e) => [e.format, e.file]),
        [
          ['csv', csvFile],
          ['svg', svgFile],
        ],
      );
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('Embeddings: every run on the same sample, each point drawn where the engine put it', async function () {
    this.timeout(240_000);
    const key = await vscode.commands.executeCommand<string>('met.compareRuns', a.runDir, b.runDir);
    await rendered(key);
    await vscode.commands.executeCommand('met.compare.test', { kind: 'embeddings' }, key);
    const s = await waitFor(
      "both runs' embeddings",
      async () => {
        const x = (await snapshots()).find((y) => y.key === key);
        if (x?.rendered?.embeddings?.status === 'error') throw new Error('the embeddings failed');
        return x?.rendered?.embeddings?.status === 'ready' ? x : undefined;
      },
      200_000,
    );
    const e = s.rendered!.embeddings!;
    assert.deepEqual(e.runs, [path.basename(a.runDir), path.basename(b.runDir)]);
    assert.ok(e.sameSample, 'the same images for both runs');
    assert.deepEqual(s.state?.embeddings, { perClass: 8, split: 'test' }, 'the settings are kept with setState');
    // The engine's own answer, asked directly through the extension's engines, for the same sample.
    const api = (await activate()).exports as {
      engines: { request(method: string, params: unknown): Promise<unknown> };
    };
    const seed = (
      JSON.parse(fs.readFileSync(path.join(a.runDir, 'config.json'), 'utf8')) as { train: { seed: number } }
    ).train.seed;
    for (const [i, run] of [a, b].entries()) {
      const res = (await api.engines.request('embeddings/compute', {
        runDir: run.runDir,
        perClass: 8,
        split: 'test',
        seed,
      })) as { sample: { file: string }[]; exits: { coords: number[] }[] };
      const view = e.views[i];
      assert.deepEqual(
        view.files,
        res.sample.map((x) => x.file),
      );
      assert.equal(view.exits.length, res.exits.length);
      for (const [j, ex] of view.exits.entries()) {
        assert.equal(ex.points, res.sample.length);
        const tol = 2e-3 * ex.halfRange;
        ex.drawn.forEach((v, k) =>
          assert.ok(
            Math.abs(v - res.exits[j].coords[k]) <= tol,
            `${run.runDir} exit ${j + 1} value ${k}: ${v} vs ${res.exits[j].coords[k]}`,
          ),
        );
      }
    }
  });

  test('a study folder opens on its finished runs, named by variant; an unfinished one is listed as not compared', async function () {
    this.timeout(60_000);
    const study = path.join(workspaceDir(), '.met', 'studies', `compare-test-${Date.now()}`);
    fs.mkdirSync(study, { recursive: true });
    for (const [run, name] of [
      [a, 'met'],
      [b, 'no_gr'],
    ] as const)
      fs.cpSync(run.runDir, path.join(study, name), {
        recursive: true,
        filter: (f) => path.basename(f) !== 'run.lock',
      });
    fs.writeFileSync(
      path.join(study, 'study.json'),
      JSON.stringify({
        version: 1,
        createdAt: new Date().toISOString(),
        base: {},
        variants: [
          { name: 'met', overrides: { variant: 'met' }, run: 'met' },
          { name: 'no_gr', overrides: { variant: 'no_gr', lambda: 0 }, run: 'no_gr' },
          { name: 'shared_cls', overrides: { variant: 'shared_cls' }, run: 'shared_cls' },
        ],
      }),
    );
    const key = await vscode.commands.executeCommand<string>('met.compareStudy', vscode.Uri.file(study));
    const snap = await rendered(key);
    const r = snap.rendered!;
    assert.equal(snap.state?.source.study, study);
    assert.deepEqual(r.legend, ['met', 'no_gr']);
    assert.equal(r.skipped.length, 1);
    assert.match(r.skipped[0], /^shared_cls \(not a run folder/);
    assert.deepEqual(
      r.table.rows.map((x) => x.name),
      ['met', 'no_gr'],
    );
    // The copies hold the same files: the same numbers.
    for (const [i, run] of [a, b].entries())
      assert.deepEqual(
        r.curve[i].static.map((p) => p.y),
        evals.get(run.runDir)!.exits.map((e) => e.accuracy),
      );
  });

  test('hidden behind an editor and shown again, the webview rebuilds with the same numbers', async function () {
    this.timeout(60_000);
    const key = await vscode.commands.executeCommand<string>('met.compareRuns', a.runDir, b.runDir);
    const first = await rendered(key);
    await vscode.window.showTextDocument(vscode.Uri.file(path.join(a.runDir, 'config.json')), { preview: false });
    await waitFor(
      'the panel to be hidden',
      async () => (await snapshots()).find((s) => s.key === key)?.visible === false,
    );
    await vscode.commands.executeCommand('met.compareRuns', a.runDir, b.runDir);
    const again = await waitFor('a rebuilt webview to render', async () => {
      const s = (await snapshots()).find((x) => x.key === key);
      return s && s.readyCount > first.readyCount && s.rendered ? s : undefined;
    });
    assert.deepEqual(again.rendered!.curve, first.rendered!.curve);
    assert.deepEqual(again.rendered!.table, first.rendered!.table);
  });
});
